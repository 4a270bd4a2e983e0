#define _XOPEN_SOURCE 700 /* nftw */
#include "harness/suite.h"
#include "harness/algo.h"
#include "harness/rundir.h"
#include "harness/task.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void suite_fmt(char *buf, size_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, n, fmt, ap);
  va_end(ap);
}

/* The "key=value" words of p (space separated) into sets[*n] (heap
 * copies); what and def name the entry in errors. */
static int parse_sets(const char *p, const char *what, const char *def, char **sets, int *n,
                      dfpo_err *err) {
  while (*p) {
    while (*p == ' ')
      p++;
    if (!*p)
      break;
    size_t len = strcspn(p, " ");
    if (*n == SUITE_MAX_SETS)
      return dfpo_err_set(err, DFPO_EUSAGE, "%s: '%s': more than %d overrides", what, def,
                          SUITE_MAX_SETS);
    if (!memchr(p, '=', len))
      return dfpo_err_set(err, DFPO_EUSAGE, "%s: '%s': override '%.*s' is not key=value", what, def,
                          (int)len, p);
    char *s = malloc(len + 1);
    if (!s)
      return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    memcpy(s, p, len);
    s[len] = '\0';
    sets[(*n)++] = s;
    p += len;
  }
  return DFPO_OK;
}

/* "TASK[/ALGO] key=value ..." into t; the algorithm is checked. */
static int parse_task_sets(const char *def, suite_task_sets *t, dfpo_err *err) {
  memset(t, 0, sizeof *t);
  size_t len = strcspn(def, " "), tlen = strcspn(def, "/");
  if (tlen > len)
    tlen = len;
  if (tlen == 0 || tlen >= sizeof t->task || (tlen < len && len - tlen - 1 >= sizeof t->algo))
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "suite.task_settings: '%s' is not \"TASK[/ALGO] key=value ...\"", def);
  memcpy(t->task, def, tlen);
  if (tlen < len) {
    memcpy(t->algo, def + tlen + 1, len - tlen - 1);
    alg_id a;
    if (alg_parse(t->algo, &a))
      return dfpo_err_set(err, DFPO_EUSAGE,
                          "suite.task_settings: '%s': unknown algorithm '%s' (" ALG_CHOICES ")",
                          def, t->algo);
  }
  return parse_sets(def + len, "suite.task_settings", def, t->sets, &t->n_sets, err);
}

/* "NAME=ALGO key=value ..." into v; the name and algorithm are checked. */
static int parse_variant(const char *def, suite_variant *v, dfpo_err *err) {
  memset(v, 0, sizeof *v);
  const char *eq = strchr(def, '=');
  size_t nlen = eq ? (size_t)(eq - def) : 0;
  if (!eq || nlen == 0 || nlen >= sizeof v->name)
    return dfpo_err_set(err, DFPO_EUSAGE, "suite.variants: '%s' is not \"NAME=ALGO key=value ...\"",
                        def);
  memcpy(v->name, def, nlen);
  for (size_t i = 0; i < nlen; i++)
    if (!(v->name[i] == '-' || v->name[i] == '_' || v->name[i] == '.' ||
          (v->name[i] >= 'a' && v->name[i] <= 'z') || (v->name[i] >= 'A' && v->name[i] <= 'Z') ||
          (v->name[i] >= '0' && v->name[i] <= '9')))
      return dfpo_err_set(err, DFPO_EUSAGE,
                          "suite.variants: name '%s' may hold only letters, digits, '-', '_', '.'",
                          v->name);
  const char *p = eq + 1;
  while (*p == ' ')
    p++;
  size_t len = strcspn(p, " ");
  if (len == 0)
    return dfpo_err_set(err, DFPO_EUSAGE, "suite.variants: '%s' names no algorithm", def);
  if (len >= sizeof v->algo)
    return dfpo_err_set(err, DFPO_EUSAGE, "suite.variants: '%s': unknown algorithm", def);
  memcpy(v->algo, p, len);
  alg_id a;
  if (alg_parse(v->algo, &a))
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "suite.variants: '%s': unknown algorithm '%s' (" ALG_CHOICES ")", v->name,
                        v->algo);
  return parse_sets(p + len, "suite.variants", v->name, v->sets, &v->n_sets, err);
}

static void sets_free(char **sets, int *n) {
  for (int i = 0; i < *n; i++)
    free(sets[i]);
  *n = 0;
}

int suite_load(suite *s, const char *file, const char *const *sets, int nsets, dfpo_err *err) {
  memset(s, 0, sizeof *s);
  int rc = cfg_load(&s->conf, cfg_schema, file, sets, nsets, err);
  if (rc)
    return rc;
  int nv = 0, ndef = 0;
  if ((rc = cfg_get_str(&s->conf, "suite.name", &s->name, err)) ||
      (rc = cfg_get_list_len(&s->conf, "suite.tasks", &s->n_tasks, err)) ||
      (rc = cfg_get_list_len(&s->conf, "suite.algos", &nv, err)) ||
      (rc = cfg_get_list_len(&s->conf, "suite.seeds", &s->n_seeds, err)) ||
      (rc = cfg_get_list_len(&s->conf, "suite.variants", &ndef, err)))
    goto fail;
  /* the dry run's overrides are checked on every load, not only when used */
  int nd = 0;
  if ((rc = cfg_get_list_len(&s->conf, "suite.dry_run", &nd, err)))
    goto fail;
  for (int i = 0; i < nd; i++) {
    const char *it;
    if ((rc = cfg_get_list_str(&s->conf, "suite.dry_run", i, &it, err)))
      goto fail;
    if (!strchr(it, '=') || it[0] == '=') {
      rc = dfpo_err_set(err, DFPO_EUSAGE, "suite.dry_run: '%s' is not key=value", it);
      goto fail;
    }
  }
  if (!s->name[0] || strchr(s->name, '/') || !strcmp(s->name, ".") || !strcmp(s->name, "..")) {
    rc = dfpo_err_set(err, DFPO_EUSAGE, "suite.name '%s' is not a folder name", s->name);
    goto fail;
  }
  s->tasks = calloc((size_t)s->n_tasks + 1, sizeof *s->tasks);
  s->variants = calloc((size_t)nv + 1, sizeof *s->variants);
  s->seeds = calloc((size_t)s->n_seeds + 1, sizeof *s->seeds);
  if (!s->tasks || !s->variants || !s->seeds) {
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    goto fail;
  }
  for (int i = 0; i < s->n_tasks; i++) {
    if ((rc = cfg_get_list_str(&s->conf, "suite.tasks", i, &s->tasks[i], err)))
      goto fail;
    /* a folder name in every cell path: bounded like a variant's, so that
     * those paths provably fit their buffers */
    if (strlen(s->tasks[i]) >= sizeof s->variants[0].name) {
      rc =
          dfpo_err_set(err, DFPO_EUSAGE, "suite.tasks: '%.40s...' is too long a name", s->tasks[i]);
      goto fail;
    }
  }
  for (int i = 0; i < s->n_seeds; i++)
    if ((rc = cfg_get_list_int(&s->conf, "suite.seeds", i, &s->seeds[i], err)))
      goto fail;
  for (int i = 0; i < nv; i++) {
    const char *name;
    if ((rc = cfg_get_list_str(&s->conf, "suite.algos", i, &name, err)))
      goto fail;
    for (int k = 0; k < s->n_variants; k++)
      if (!strcmp(s->variants[k].name, name)) {
        rc = dfpo_err_set(err, DFPO_EUSAGE, "suite.algos names '%s' twice", name);
        goto fail;
      }
    suite_variant *v = &s->variants[s->n_variants];
    int found = 0;
    for (int k = 0; k < ndef && !found; k++) {
      const char *def;
      if ((rc = cfg_get_list_str(&s->conf, "suite.variants", k, &def, err)))
        goto fail;
      size_t nl = strlen(name);
      if (!strncmp(def, name, nl) && def[nl] == '=') {
        if ((rc = parse_variant(def, v, err)))
          goto fail;
        found = 1;
      }
    }
    if (!found) {
      alg_id a;
      if (alg_parse(name, &a)) {
        rc = dfpo_err_set(err, DFPO_EUSAGE,
                          "suite.algos: '%s' is neither an algorithm (" ALG_CHOICES
                          ") nor defined in suite.variants",
                          name);
        goto fail;
      }
      memset(v, 0, sizeof *v);
      suite_fmt(v->name, sizeof v->name, "%s", name);
      suite_fmt(v->algo, sizeof v->algo, "%s", name);
    }
    s->n_variants++;
  }
  /* suite.deviations: sentences for dfpo report, none of them empty */
  int ndev = 0;
  if ((rc = cfg_get_list_len(&s->conf, "suite.deviations", &ndev, err)))
    goto fail;
  for (int i = 0; i < ndev; i++) {
    const char *line;
    if ((rc = cfg_get_list_str(&s->conf, "suite.deviations", i, &line, err)))
      goto fail;
    if (!line[0]) {
      rc = dfpo_err_set(err, DFPO_EUSAGE, "suite.deviations: item %d is empty", i);
      goto fail;
    }
  }
  int nts = 0;
  if ((rc = cfg_get_list_len(&s->conf, "suite.task_settings", &nts, err)))
    goto fail;
  if (!(s->task_sets = calloc((size_t)nts + 1, sizeof *s->task_sets))) {
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    goto fail;
  }
  for (; s->n_task_sets < nts; s->n_task_sets++) {
    const char *def;
    if ((rc = cfg_get_list_str(&s->conf, "suite.task_settings", s->n_task_sets, &def, err)) ||
        (rc = parse_task_sets(def, &s->task_sets[s->n_task_sets], err)))
      goto fail;
  }
  for (int ti = 0; ti < s->n_tasks; ti++)
    for (int vi = 0; vi < s->n_variants; vi++) {
      const char *cell[4 * SUITE_MAX_SETS];
      if (suite_cell_sets(s, ti, vi, cell, 4 * SUITE_MAX_SETS) < 0) {
        rc = dfpo_err_set(err, DFPO_EUSAGE, "%s/%s: more than %d overrides", s->tasks[ti],
                          s->variants[vi].name, 4 * SUITE_MAX_SETS);
        goto fail;
      }
    }
  if (s->n_tasks == 0 || s->n_variants == 0 || s->n_seeds == 0) {
    rc = dfpo_err_set(err, DFPO_EUSAGE, "the suite has no cells (tasks, algos and seeds needed)");
    goto fail;
  }
  return DFPO_OK;
fail:
  suite_free(s);
  return rc;
}

void suite_free(suite *s) {
  for (int i = 0; s->variants && i < s->n_variants + 1; i++)
    sets_free(s->variants[i].sets, &s->variants[i].n_sets);
  for (int i = 0; s->task_sets && i < s->n_task_sets + 1; i++)
    sets_free(s->task_sets[i].sets, &s->task_sets[i].n_sets);
  sets_free(s->last, &s->n_last);
  free(s->last);
  free(s->variants);
  free(s->task_sets);
  free(s->tasks);
  free(s->seeds);
  cfg_free(&s->conf);
  memset(s, 0, sizeof *s);
}

int suite_cell_sets(const suite *s, int ti, int vi, const char **out, int max) {
  const suite_variant *v = &s->variants[vi];
  int n = 0;
  for (int i = 0; i < s->n_task_sets; i++) {
    const suite_task_sets *t = &s->task_sets[i];
    if ((strcmp(t->task, "*") && strcmp(t->task, s->tasks[ti])) ||
        (t->algo[0] && strcmp(t->algo, v->algo)))
      continue;
    for (int k = 0; k < t->n_sets; k++, n++)
      if (n < max)
        out[n] = t->sets[k];
  }
  for (int k = 0; k < v->n_sets; k++, n++)
    if (n < max)
      out[n] = v->sets[k];
  for (int k = 0; k < s->n_last; k++, n++)
    if (n < max)
      out[n] = s->last[k];
  return n <= max ? n : -1;
}

int suite_set_last(suite *s, const char *const *sets, int n, dfpo_err *err) {
  sets_free(s->last, &s->n_last);
  free(s->last);
  if (!(s->last = calloc((size_t)n + 1, sizeof *s->last)))
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  for (; s->n_last < n; s->n_last++)
    if (!(s->last[s->n_last] = strdup(sets[s->n_last])))
      return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  return DFPO_OK;
}

int suite_n_cells(const suite *s) {
  return s->n_tasks * s->n_variants * s->n_seeds;
}

void suite_cell(const suite *s, int i, int *ti, int *variant, int *seed) {
  *seed = i % s->n_seeds;
  *variant = (i / s->n_seeds) % s->n_variants;
  *ti = i / (s->n_seeds * s->n_variants);
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

int suite_rmtree(const char *path, dfpo_err *err) {
  struct stat st;
  if (lstat(path, &st) != 0)
    return DFPO_OK;
  if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
    return dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot remove", path);
  return DFPO_OK;
}

/* ------------------------------------------------------------- results */

const char *const res_curve_names[RES_CURVES] = {"reward", "val_reward", "val_nll_word", "kl_seq",
                                                 "val_ppl_ref"};

int res_metric_direction(const char *m) {
  const met_metric_info *i = task_metric_find(m);
  return i ? i->better : 0;
}

const char *res_metric_label(const char *m) {
  const met_metric_info *i = task_metric_find(m);
  return i ? i->label : m;
}

int res_metric_index(const res_task *t, const char *name) {
  for (int i = 0; i < t->n_metrics; i++)
    if (!strcmp(t->metrics[i], name))
      return i;
  return -1;
}

int res_variant_index(const res_task *t, const char *name) {
  for (int i = 0; i < t->n_variants; i++)
    if (!strcmp(t->variants[i].name, name))
      return i;
  return -1;
}

int res_values(const res_variant *v, int metric, double *out) {
  int n = 0;
  for (int s = 0; s < v->n_done; s++)
    if (isfinite(v->vals[s][metric]))
      out[n++] = v->vals[s][metric];
  return n;
}

static res_task *task_get(res_suite *r, const char *name, dfpo_err *err) {
  for (int i = 0; i < r->n_tasks; i++)
    if (!strcmp(r->tasks[i].name, name))
      return &r->tasks[i];
  if (dfpo_grow(&r->tasks, &r->cap_tasks, (size_t)r->n_tasks + 1, sizeof *r->tasks, 8, INT_MAX,
                err))
    return NULL;
  res_task *t = &r->tasks[r->n_tasks++];
  memset(t, 0, sizeof *t);
  suite_fmt(t->name, sizeof t->name, "%s", name);
  return t;
}

static res_variant *variant_get(res_task *t, const char *name, dfpo_err *err) {
  int i = res_variant_index(t, name);
  if (i >= 0)
    return &t->variants[i];
  if (dfpo_grow(&t->variants, &t->cap_variants, (size_t)t->n_variants + 1, sizeof *t->variants, 8,
                INT_MAX, err))
    return NULL;
  res_variant *v = &t->variants[t->n_variants++];
  memset(v, 0, sizeof *v);
  suite_fmt(v->name, sizeof v->name, "%s", name);
  v->beta = NAN;
  return v;
}

/* The column of a metric, added when new; -1 (err set) past
 * RES_MAX_METRICS or for a name too long. */
static int metric_get(res_task *t, const char *name, dfpo_err *err) {
  int i = res_metric_index(t, name);
  if (i >= 0)
    return i;
  if (t->n_metrics == RES_MAX_METRICS || strlen(name) >= sizeof t->metrics[0]) {
    dfpo_err_set(err, DFPO_EDATA,
                 "task %s: metric '%s' is one too many (at most %d metrics of up to %zu "
                 "characters; RES_MAX_METRICS in harness/suite.h)",
                 t->name, name, RES_MAX_METRICS, sizeof t->metrics[0] - 1);
    return -1;
  }
  suite_fmt(t->metrics[t->n_metrics], sizeof t->metrics[0], "%s", name);
  return t->n_metrics++;
}

typedef struct curve_read {
  res_curve *c;
  size_t cap;
  int keep; /* store the points (else only check the lines) */
} curve_read;

static int curve_line(void *ctx, int64_t index, const cJSON *o, dfpo_err *err) {
  curve_read *cr = ctx;
  res_curve *c = cr->c;
  if (!cr->keep)
    return DFPO_OK;
  /* one capacity per array, as a failure part-way leaves them apart */
  size_t need = (size_t)c->n + 1, cx = cr->cap, cy[RES_CURVES];
  int bad = dfpo_grow(&c->x, &cx, need, sizeof *c->x, 64, INT_MAX, NULL);
  for (int k = 0; k < RES_CURVES; k++) {
    cy[k] = cr->cap;
    bad = bad || dfpo_grow(&c->y[k], &cy[k], need, sizeof *c->y[k], 64, INT_MAX, NULL);
  }
  if (bad)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory reading the curves");
  cr->cap = cx;
  c->x[c->n] = (double)index;
  for (int k = 0; k < RES_CURVES; k++) {
    const cJSON *v = cJSON_GetObjectItem(o, res_curve_names[k]);
    c->y[k][c->n] = cJSON_IsNumber(v) ? v->valuedouble : NAN;
  }
  c->n++;
  return DFPO_OK;
}

/* A cell's train.jsonl, checked line by line (rundir_log_read); its points
 * into c when keep. A cell without one (zero-shot) has no curve. */
static int read_curve(res_curve *c, const char *path, int keep, dfpo_err *err) {
  struct stat st;
  if (stat(path, &st) != 0)
    return DFPO_OK;
  curve_read cr = {c, 0, keep};
  return rundir_log_read(path, -1, curve_line, &cr, NULL, err);
}

/* The 1-based line of the first "key" in a JSON file (0 when not found),
 * for messages about a value that parses but is wrong. */
static int key_line(const char *path, const char *key) {
  char *text, pat[128];
  if (dfpo_read_file(path, &text, NULL, NULL))
    return 0;
  suite_fmt(pat, sizeof pat, "\"%s\"", key);
  const char *at = strstr(text, pat);
  int line = 0, col;
  if (at)
    dfpo_text_position(text, (size_t)(at - text), &line, &col);
  free(text);
  return line;
}

static const char *jstr(const cJSON *o, const char *key, const char *dflt) {
  const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
  return v ? v : dflt;
}

void res_judge_line(const cJSON *j, char *buf, size_t n, int *trained) {
  /* an entry without a kind is a fixed metric (CommonGen's METEOR, the
   * synthetic task's exact posterior): no model, nothing trained */
  const char *kind = jstr(j, "kind", ""), *role = jstr(j, "role", "judge");
  *trained = 0;
  if (!strcmp(kind, "huggingface")) {
    const char *rev = jstr(j, "revision", "local folder");
    const cJSON *hub = cJSON_GetObjectItemCaseSensitive(j, "hub");
    char where[400];
    if (!strcmp(rev, "local folder"))
      suite_fmt(where, sizeof where, "a local folder, no hub revision");
    else
      suite_fmt(where, sizeof where, "hub %.120s at revision %.120s", jstr(hub, "repo", "?"), rev);
    suite_fmt(buf, n,
              "Hugging Face classifier %.300s (%.20s, label %.60s, %.40s; model.safetensors "
              "sha256 %.64s, config.json sha256 %.64s; %s); scores the %.300s",
              jstr(j, "dir", "?"), jstr(j, "model_type", "?"), jstr(j, "label", "?"),
              jstr(j, "probability", "?"), jstr(j, "model_sha256", "?"),
              jstr(j, "config_sha256", "?"), where, role);
  } else if (!strcmp(kind, "perspective")) {
    suite_fmt(buf, n, "the Perspective API (%.300s, %.60s); scores the %.400s", jstr(j, "url", "?"),
              jstr(j, "attribute", "?"), role);
  } else if (!kind[0]) {
    suite_fmt(buf, n, "%.500s; scores the %.400s", jstr(j, "id", "?"), role);
  } else {
    *trained = !strcmp(kind, "trained");
    suite_fmt(buf, n, "%s %.200s (%.300s); scores the %.400s",
              *trained ? "trained by the harness," : kind, jstr(j, "id", "?"), jstr(j, "dir", "?"),
              role);
  }
}

/* The judges of an eval.json not yet listed for the task. */
static void add_judges(res_task *t, const cJSON *eval) {
  const cJSON *j;
  cJSON_ArrayForEach(j, cJSON_GetObjectItemCaseSensitive(eval, "judges")) {
    char line[1024];
    int trained, seen = 0;
    res_judge_line(j, line, sizeof line, &trained);
    t->trained_judge |= trained;
    for (int k = 0; k < t->n_judges && !seen; k++)
      seen = !strcmp(t->judges[k], line);
    if (!seen && t->n_judges < RES_MAX_JUDGES)
      suite_fmt(t->judges[t->n_judges++], sizeof t->judges[0], "%s", line);
  }
}

/* A run's PPO settings from its config.json (the display name of a PPO
 * variant with a fixed beta). */
static void ppo_settings(res_variant *v, const cJSON *c) {
  const cJSON *ppo = cJSON_GetObjectItem(c, "ppo");
  const cJSON *b = cJSON_GetObjectItem(ppo, "beta"), *mode = cJSON_GetObjectItem(ppo, "kl_mode");
  if (cJSON_IsNumber(b))
    v->beta = b->valuedouble;
  v->kl_fixed = cJSON_IsString(mode) && !strcmp(mode->valuestring, "fixed");
}

/* The memory switches of an eval.json's "memory" object (dfpo train's
 * trn_memory_json) in words into v->memory, unless a cell read before
 * used some. */
static void memory_switches(res_variant *v, const cJSON *eval) {
  const cJSON *m = cJSON_GetObjectItem(eval, "memory");
  if (v->memory[0] || !cJSON_IsObject(m))
    return;
  const cJSON *rank = cJSON_GetObjectItem(m, "lora_rank"),
              *vm = cJSON_GetObjectItem(m, "value_model");
  char buf[sizeof v->memory] = "";
  size_t n = 0;
  if (cJSON_IsNumber(rank) && rank->valuedouble > 0)
    n += (size_t)snprintf(buf + n, sizeof buf - n, "LoRA rank %g", rank->valuedouble);
  if (n < sizeof buf && cJSON_IsString(vm) && !strcmp(vm->valuestring, "shared"))
    n += (size_t)snprintf(buf + n, sizeof buf - n, "%svalue head on the policy's trunk",
                          n ? ", " : "");
  if (n < sizeof buf && cJSON_IsTrue(cJSON_GetObjectItem(m, "activation_checkpointing")))
    n += (size_t)snprintf(buf + n, sizeof buf - n, "%sactivation checkpointing", n ? ", " : "");
  const cJSON *rd = cJSON_GetObjectItem(m, "reference_dtype");
  if (n < sizeof buf && cJSON_IsString(rd) && strcmp(rd->valuestring, "f32") != 0)
    snprintf(buf + n, sizeof buf - n, "%s%s in %s", n ? ", " : "",
             cJSON_IsNumber(rank) && rank->valuedouble > 0 ? "base and reference" : "reference",
             rd->valuestring);
  suite_fmt(v->memory, sizeof v->memory, "%s", buf);
}

/* Reads one finished cell's eval.json (and config.json, train.jsonl). */
static int read_cell(res_task *t, res_variant *v, int64_t seed, const char *cell, int curves,
                     dfpo_err *err) {
  char path[4200];
  cJSON *o;
  int rc;
  if ((rc = dfpo_path_fmt(path, sizeof path, err, "%s/eval.json", cell)) ||
      (rc = cfg_json_read(path, &o, err)))
    return rc;
  int s = v->n_done;
  if (s == RES_MAX_SEEDS) {
    cJSON_Delete(o);
    return dfpo_err_set(err, DFPO_EUSAGE, "%s: more than %d seeds", cell, RES_MAX_SEEDS);
  }
  for (int m = 0; m < RES_MAX_METRICS; m++)
    v->vals[s][m] = NAN;
  const cJSON *ms = cJSON_GetObjectItem(o, "metrics"), *it;
  const cJSON *algo = cJSON_GetObjectItem(o, "algo");
  if (cJSON_IsString(algo) && !v->algo[0])
    suite_fmt(v->algo, sizeof v->algo, "%s", algo->valuestring);
  cJSON_ArrayForEach(it, ms) {
    /* null: a metric that could not be computed (NaN is written so); an
     * object: a group of metrics the tables do not show (diversity) */
    if (cJSON_IsNull(it) || cJSON_IsObject(it))
      continue;
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble)) {
      rc =
          dfpo_err_set(err, DFPO_EDATA, "%s:%d: metric \"%s\" is not a finite number", path,
                       key_line(path, it->string ? it->string : ""), it->string ? it->string : "?");
      cJSON_Delete(o);
      return rc;
    }
    int m = metric_get(t, it->string, err);
    if (m < 0) {
      cJSON_Delete(o);
      return dfpo_err_prefix(err, "%s", path);
    }
    v->vals[s][m] = it->valuedouble;
  }
  add_judges(t, o);
  memory_switches(v, o);
  cJSON_Delete(o);
  if ((rc = dfpo_path_fmt(path, sizeof path, err, "%s/config.json", cell)))
    return rc;
  dfpo_err e2;
  cJSON *c;
  if (cfg_json_read(path, &c, &e2) == DFPO_OK) {
    ppo_settings(v, c);
    cJSON_Delete(c);
  }
  /* the log is checked whether or not its curves are wanted: a damaged one
   * is refused, naming its line */
  if ((rc = dfpo_path_fmt(path, sizeof path, err, "%s/train.jsonl", cell)) ||
      (rc = read_curve(&v->curves[s], path, curves, err)))
    return rc;
  v->seeds[s] = seed;
  v->n_done++;
  return DFPO_OK;
}

/* A run folder with train.jsonl and no DONE: a cell under way. Its curve to
 * the last whole line (a running `dfpo train` may be writing the next), the
 * iterations logged and planned (config.json's train.iterations) and
 * whether a process holds the folder's lock; the reason it is not done into
 * why. 0 when run has no train.jsonl (nothing of it to show). */
static int exists(const char *path);

static int read_partial(res_variant *v, int64_t seed, const char *run, int curves, char *why,
                        size_t nwhy) {
  char path[4400], holder[512];
  if (v->n_partial == RES_MAX_SEEDS ||
      dfpo_path_fmt(path, sizeof path, NULL, "%s/train.jsonl", run) || !exists(path))
    return 0;
  int k = v->n_partial;
  char *text;
  size_t len;
  int64_t lines = 0, limit = 0;
  dfpo_err e;
  if (dfpo_read_file(path, &text, &len, &e) == DFPO_OK) {
    while (len && text[len - 1] != '\n')
      len--;
    limit = (int64_t)len;
    free(text);
  }
  curve_read cr = {&v->partial_curves[k], 0, curves};
  if (rundir_log_read(path, limit, curve_line, &cr, &lines, &e) != DFPO_OK)
    dfpo_warn("report: a cell under way: %s", e.msg); /* its curve stops there */
  v->partial_seeds[k] = seed;
  v->partial_done[k] = lines ? lines : v->partial_curves[k].n;
  v->partial_of[k] = 0;
  cJSON *c;
  if (dfpo_path_fmt(path, sizeof path, NULL, "%s/config.json", run) == DFPO_OK &&
      cfg_json_read(path, &c, &e) == DFPO_OK) {
    const cJSON *it = cJSON_GetObjectItem(cJSON_GetObjectItem(c, "train"), "iterations");
    const cJSON *algo = cJSON_GetObjectItem(c, "algo");
    if (cJSON_IsNumber(it))
      v->partial_of[k] = (int64_t)it->valuedouble;
    if (cJSON_IsString(algo) && !v->algo[0])
      suite_fmt(v->algo, sizeof v->algo, "%s", algo->valuestring);
    if (!v->n_done) /* a finished seed's config says it otherwise */
      ppo_settings(v, c);
    cJSON_Delete(c);
  }
  v->partial_live[k] = dfpo_lock_holder(run, holder, sizeof holder) == 0;
  char of[32] = "";
  if (v->partial_of[k] > 0)
    suite_fmt(of, sizeof of, " of %lld", (long long)v->partial_of[k]);
  if (v->partial_live[k])
    suite_fmt(why, nwhy, "running, iteration %lld%s", (long long)v->partial_done[k], of);
  else
    suite_fmt(why, nwhy,
              "stopped at iteration %lld%s (no process holds it; dfpo reproduce resumes it)",
              (long long)v->partial_done[k], of);
  v->n_partial++;
  return 1;
}

/* Whether name is "seed-<n>", n decimal digits of a seed as suite.seeds
 * takes it ([0, 4294967295]; sscanf's %lld would be undefined past
 * LLONG_MAX, and took "seed-1x" for seed 1). */
static int seed_folder(const char *name, int64_t *seed) {
  if (strncmp(name, "seed-", 5) != 0 || !name[5] || strlen(name + 5) > 10)
    return 0;
  int64_t v = 0;
  for (const char *p = name + 5; *p; p++) {
    if (*p < '0' || *p > '9')
      return 0;
    v = v * 10 + (*p - '0');
  }
  if (v > 4294967295LL)
    return 0;
  *seed = v;
  return 1;
}

static int exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

/* The reason a cell failed, from failed/<task>/<variant>/seed-<n>.txt. */
static void failure_reason(const char *dir, const char *tname, const char *variant, int64_t seed,
                           char *buf, size_t n) {
  char path[4200];
  suite_fmt(buf, n, "not run");
  /* a reason that cannot be named cannot have been written either */
  if (dfpo_path_fmt(path, sizeof path, NULL, "%s/failed/%s/%s/seed-%lld.txt", dir, tname, variant,
                    (long long)seed))
    return;
  FILE *fp = fopen(path, "r");
  if (!fp)
    return;
  if (fgets(buf, (int)n, fp))
    buf[strcspn(buf, "\n")] = '\0';
  fclose(fp);
}

static int add_expected(res_suite *r, const char *dir, int curves, dfpo_err *err) {
  dfpo_err e;
  suite s;
  char path[4200];
  int rc = dfpo_path_fmt(path, sizeof path, err, "%s/suite.json", dir);
  if (rc)
    return rc;
  if ((rc = suite_load(&s, path, NULL, 0, &e))) {
    *err = e;
    return rc;
  }
  suite_fmt(r->name, sizeof r->name, "%s", s.name);
  for (int ti = 0; !rc && ti < s.n_tasks; ti++) {
    res_task *t = task_get(r, s.tasks[ti], err);
    if (!t) {
      rc = err->code;
      break;
    }
    for (int vi = 0; !rc && vi < s.n_variants; vi++) {
      res_variant *v = variant_get(t, s.variants[vi].name, err);
      if (!v) {
        rc = err->code;
        break;
      }
      suite_fmt(v->algo, sizeof v->algo, "%s", s.variants[vi].algo);
      v->n_expected = s.n_seeds;
      for (int si = 0; !rc && si < s.n_seeds; si++) {
        char cell[4200];
        if ((rc = dfpo_path_fmt(cell, sizeof cell, err, "%s/%s/%s/seed-%lld", dir, t->name, v->name,
                                (long long)s.seeds[si])) ||
            (rc = dfpo_path_fmt(path, sizeof path, err, "%s/DONE", cell)))
          break;
        dfpo_err whole;
        dfpo_err_clear(&whole);
        int done = exists(path);
        if (done && rundir_done_check(cell, &whole) != DFPO_OK) {
          dfpo_warn("report: %s", whole.msg);
          done = 0;
        }
        if (done) {
          rc = read_cell(t, v, s.seeds[si], cell, curves, err);
        } else if (v->n_missing < RES_MAX_SEEDS) {
          char why[200], run[4400];
          failure_reason(dir, t->name, v->name, s.seeds[si], why, sizeof why);
          if (whole.code) /* finished once, changed since */
            suite_fmt(why, sizeof why, "not whole: %s", whole.msg);
          /* under way in its staging folder (cmd_reproduce.c's cell_paths;
           * dfpo train puts its run folder under <suite>/<task>/<algo>/):
           * running, or stopped without a failure on record */
          else if (dfpo_path_fmt(run, sizeof run, NULL,
                                 "%s/.staging/%s/%s/seed-%lld/%s/%s/%s/seed-%lld", dir, t->name,
                                 v->name, (long long)s.seeds[si], s.name, t->name, v->algo,
                                 (long long)s.seeds[si]) == DFPO_OK &&
                   (dfpo_lock_holder(run, path, sizeof path) == 0 || !strcmp(why, "not run")))
            read_partial(v, s.seeds[si], run, curves, why, sizeof why);
          suite_fmt(v->missing[v->n_missing++], sizeof v->missing[0], "seed %lld: %s",
                    (long long)s.seeds[si], why);
        }
      }
    }
  }
  suite_free(&s);
  return rc;
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of the subfolders of dir (NULL-terminated; free each). */
static char **subdirs(const char *dir) {
  DIR *d = opendir(dir);
  if (!d)
    return NULL;
  int fd = dirfd(d);
  char **names = NULL;
  size_t n = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.')
      continue;
    /* relative to the open folder: no path to build, none to cut */
    struct stat st;
    if (fstatat(fd, e->d_name, &st, 0) || !S_ISDIR(st.st_mode))
      continue;
    if (dfpo_grow(&names, &cap, n + 2, sizeof *names, 16, DFPO_NOCAP, NULL))
      break;
    names[n++] = strdup(e->d_name);
    names[n] = NULL;
  }
  closedir(d);
  if (names)
    qsort(names, n, sizeof *names, by_name);
  return names;
}

static void free_names(char **names) {
  for (size_t i = 0; names && names[i]; i++)
    free(names[i]);
  free(names);
}

/* Without suite.json: <task>/<variant>/seed-<n>/DONE as found. */
static int add_found(res_suite *r, const char *dir, int curves, dfpo_err *err) {
  int rc = DFPO_OK;
  char **tasks = subdirs(dir);
  for (size_t ti = 0; !rc && tasks && tasks[ti]; ti++) {
    char tdir[4200];
    if ((rc = dfpo_path_fmt(tdir, sizeof tdir, err, "%s/%s", dir, tasks[ti])))
      break;
    char **vars = subdirs(tdir);
    for (size_t vi = 0; !rc && vars && vars[vi]; vi++) {
      char vdir[4300];
      if ((rc = dfpo_path_fmt(vdir, sizeof vdir, err, "%s/%s", tdir, vars[vi])))
        break;
      char **seeds = subdirs(vdir);
      for (size_t si = 0; !rc && seeds && seeds[si]; si++) {
        int64_t seed;
        char cell[4400], done[4500];
        if (!seed_folder(seeds[si], &seed))
          continue;
        if ((rc = dfpo_path_fmt(cell, sizeof cell, err, "%s/%s", vdir, seeds[si])) ||
            (rc = dfpo_path_fmt(done, sizeof done, err, "%s/DONE", cell)))
          break;
        if (!exists(done)) {
          /* a run under way (a folder `dfpo train --out` writes) */
          char why[200], log[4600];
          if ((rc = dfpo_path_fmt(log, sizeof log, err, "%s/train.jsonl", cell)))
            break;
          if (!exists(log))
            continue;
          res_task *t = task_get(r, tasks[ti], err);
          res_variant *v = t ? variant_get(t, vars[vi], err) : NULL;
          if (!v) {
            rc = err->code;
            break;
          }
          if (read_partial(v, seed, cell, curves, why, sizeof why) && v->n_missing < RES_MAX_SEEDS)
            suite_fmt(v->missing[v->n_missing++], sizeof v->missing[0], "seed %lld: %s",
                      (long long)seed, why);
          continue;
        }
        dfpo_err whole;
        if (rundir_done_check(cell, &whole) != DFPO_OK) {
          dfpo_warn("report: left out: %s", whole.msg);
          continue;
        }
        res_task *t = task_get(r, tasks[ti], err);
        res_variant *v = t ? variant_get(t, vars[vi], err) : NULL;
        rc = v ? read_cell(t, v, seed, cell, curves, err) : err->code;
      }
      free_names(seeds);
    }
    free_names(vars);
  }
  free_names(tasks);
  return rc;
}

int res_collect(res_suite *r, const char *dir, int curves, dfpo_err *err) {
  memset(r, 0, sizeof *r);
  char path[4200];
  struct stat st;
  if (stat(dir, &st) || !S_ISDIR(st.st_mode))
    return dfpo_err_set(err, DFPO_EUSAGE, "%s: not a folder", dir);
  int rc;
  if ((rc = dfpo_path_fmt(path, sizeof path, err, "%s/suite.json", dir)))
    return rc;
  if (exists(path)) {
    size_t len;
    if ((rc = dfpo_read_file(path, &r->config_json, &len, err)))
      return rc;
    rc = add_expected(r, dir, curves, err);
  } else {
    const char *base = strrchr(dir, '/');
    suite_fmt(r->name, sizeof r->name, "%s", base && base[1] ? base + 1 : dir);
    rc = add_found(r, dir, curves, err);
  }
  if (rc)
    res_free(r);
  return rc;
}

void res_free(res_suite *r) {
  for (int t = 0; t < r->n_tasks; t++) {
    for (int v = 0; v < r->tasks[t].n_variants; v++)
      for (int s = 0; s < RES_MAX_SEEDS; s++) {
        for (int part = 0; part < 2; part++) {
          res_variant *rv = &r->tasks[t].variants[v];
          res_curve *c = part ? &rv->partial_curves[s] : &rv->curves[s];
          free(c->x);
          for (int k = 0; k < RES_CURVES; k++)
            free(c->y[k]);
        }
      }
    free(r->tasks[t].variants);
  }
  free(r->tasks);
  free(r->config_json);
  memset(r, 0, sizeof *r);
}

int res_write_json(const res_suite *r, const char *path, dfpo_err *err) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "suite", r->name);
  cJSON *tasks = cJSON_AddArrayToObject(o, "tasks");
  for (int ti = 0; ti < r->n_tasks; ti++) {
    const res_task *t = &r->tasks[ti];
    cJSON *to = cJSON_CreateObject();
    cJSON_AddItemToArray(tasks, to);
    cJSON_AddStringToObject(to, "task", t->name);
    cJSON *vs = cJSON_AddArrayToObject(to, "variants");
    for (int vi = 0; vi < t->n_variants; vi++) {
      const res_variant *v = &t->variants[vi];
      cJSON *vo = cJSON_CreateObject();
      cJSON_AddItemToArray(vs, vo);
      cJSON_AddStringToObject(vo, "variant", v->name);
      cJSON_AddStringToObject(vo, "algo", v->algo);
      cJSON *seeds = cJSON_AddArrayToObject(vo, "seeds");
      for (int s = 0; s < v->n_done; s++)
        cJSON_AddItemToArray(seeds, cJSON_CreateNumber((double)v->seeds[s]));
      cJSON *ms = cJSON_AddObjectToObject(vo, "metrics");
      for (int m = 0; m < t->n_metrics; m++) {
        cJSON *a = cJSON_AddArrayToObject(ms, t->metrics[m]);
        for (int s = 0; s < v->n_done; s++)
          cJSON_AddItemToArray(a, isfinite(v->vals[s][m]) ? cJSON_CreateNumber(v->vals[s][m])
                                                          : cJSON_CreateNull());
      }
      cJSON *miss = cJSON_AddArrayToObject(vo, "missing");
      for (int k = 0; k < v->n_missing; k++)
        cJSON_AddItemToArray(miss, cJSON_CreateString(v->missing[k]));
    }
  }
  int rc = cfg_json_write(path, o, err);
  cJSON_Delete(o);
  return rc;
}

int res_read_json(res_suite *r, const char *path, dfpo_err *err) {
  memset(r, 0, sizeof *r);
  cJSON *o;
  int rc = cfg_json_read(path, &o, err);
  if (rc)
    return rc;
  const cJSON *name = cJSON_GetObjectItem(o, "suite"), *tasks = cJSON_GetObjectItem(o, "tasks"),
              *to;
  if (!cJSON_IsString(name) || !cJSON_IsArray(tasks)) {
    cJSON_Delete(o);
    return dfpo_err_set(err, DFPO_EDATA, "%s: not a results file (needs \"suite\" and \"tasks\")",
                        path);
  }
  suite_fmt(r->name, sizeof r->name, "%s", name->valuestring);
  cJSON_ArrayForEach(to, tasks) {
    const cJSON *tn = cJSON_GetObjectItem(to, "task"), *vs = cJSON_GetObjectItem(to, "variants"),
                *vo;
    if (!cJSON_IsString(tn) || !cJSON_IsArray(vs)) {
      rc = dfpo_err_set(err, DFPO_EDATA, "%s: a task needs \"task\" and \"variants\"", path);
      break;
    }
    res_task *t = task_get(r, tn->valuestring, err);
    if (!t) {
      rc = err->code;
      break;
    }
    cJSON_ArrayForEach(vo, vs) {
      const cJSON *vn = cJSON_GetObjectItem(vo, "variant"), *al = cJSON_GetObjectItem(vo, "algo"),
                  *seeds = cJSON_GetObjectItem(vo, "seeds"),
                  *ms = cJSON_GetObjectItem(vo, "metrics"), *m;
      if (!cJSON_IsString(vn) || !cJSON_IsArray(seeds) || !cJSON_IsObject(ms) ||
          cJSON_GetArraySize(seeds) > RES_MAX_SEEDS) {
        rc = dfpo_err_set(err, DFPO_EDATA,
                          "%s: task %s: a variant needs \"variant\", \"seeds\" (at most %d) and "
                          "\"metrics\"",
                          path, t->name, RES_MAX_SEEDS);
        break;
      }
      res_variant *v = variant_get(t, vn->valuestring, err);
      if (!v) {
        rc = err->code;
        break;
      }
      if (cJSON_IsString(al))
        suite_fmt(v->algo, sizeof v->algo, "%s", al->valuestring);
      v->n_done = cJSON_GetArraySize(seeds);
      for (int s = 0; s < v->n_done; s++) {
        const cJSON *sd = cJSON_GetArrayItem(seeds, s);
        /* a seed as suite.seeds takes it (an integer in [0, 2^32)): a value
         * past int64_t's range must not reach the conversion below */
        if (!cJSON_IsNumber(sd) || !(sd->valuedouble >= 0 && sd->valuedouble <= 4294967295.0) ||
            sd->valuedouble != floor(sd->valuedouble)) {
          rc = dfpo_err_set(err, DFPO_EDATA,
                            "%s:%d: %s/%s: a seed is not an integer in [0, 4294967295]", path,
                            key_line(path, "seeds"), t->name, v->name);
          break;
        }
        v->seeds[s] = (int64_t)sd->valuedouble;
        for (int k = 0; k < RES_MAX_METRICS; k++)
          v->vals[s][k] = NAN;
      }
      if (rc)
        break;
      cJSON_ArrayForEach(m, ms) {
        int k = metric_get(t, m->string, err);
        if (k < 0) {
          rc = dfpo_err_prefix(err, "%s", path);
          break;
        }
        if (!cJSON_IsArray(m) || cJSON_GetArraySize(m) != v->n_done) {
          rc = dfpo_err_set(err, DFPO_EDATA, "%s: %s/%s: metric '%s' needs one value per seed",
                            path, t->name, v->name, m->string);
          break;
        }
        for (int s = 0; !rc && s < v->n_done; s++) {
          const cJSON *x = cJSON_GetArrayItem(m, s);
          /* null: absent (res_write_json writes NaN so); anything else that
           * is not a finite number is damage */
          if (!cJSON_IsNull(x) && (!cJSON_IsNumber(x) || !isfinite(x->valuedouble)))
            rc = dfpo_err_set(err, DFPO_EDATA,
                              "%s:%d: %s/%s: metric '%s' has a value that is "
                              "not a finite number",
                              path, key_line(path, m->string), t->name, v->name, m->string);
          else
            v->vals[s][k] = cJSON_IsNumber(x) ? x->valuedouble : NAN;
        }
        if (rc)
          break;
      }
      if (rc)
        break;
      /* the cells res_write_json listed as missing, with their reasons */
      const cJSON *miss = cJSON_GetObjectItem(vo, "missing"), *w;
      cJSON_ArrayForEach(w, miss) {
        if (cJSON_IsString(w) && v->n_missing < RES_MAX_SEEDS)
          suite_fmt(v->missing[v->n_missing++], sizeof v->missing[0], "%s", w->valuestring);
      }
    }
    if (rc)
      break;
  }
  cJSON_Delete(o);
  if (rc)
    res_free(r);
  return rc;
}
