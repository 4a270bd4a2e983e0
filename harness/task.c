#define _XOPEN_SOURCE 700 /* realpath */
/* The task registry (one row per task; task_open) and what the tasks
 * share: split files, judges, prompts and diversity. The tasks themselves:
 * task_synthetic.c, task_imdb.c, task_rtp.c, task_commongen.c. */
#include "harness/task.h"
#include "datasets/datasets.h"
#include "harness/cli.h"
#include "harness/task_internal.h"
#include "metrics/metrics.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void free_strv(char **v, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(v[i]);
  free(v);
}

void task_free(task *t) {
  for (int s = 0; s < TASK_SPLITS; s++) {
    for (size_t i = 0; i < t->n[s]; i++) {
      task_item *it = &t->items[s][i];
      free(it->prompt);
      free(it->reference);
      free_strv(it->refs, it->n_refs);
      free_strv(it->concepts, it->n_concepts);
    }
    free(t->items[s]);
  }
  if (t->impl_free)
    t->impl_free(t->impl);
  cJSON_Delete(t->judges);
  cJSON_Delete(t->deviations);
  memset(t, 0, sizeof *t);
}

static int is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

size_t task_prompt_len(const char *t, double fraction) {
  size_t len = strlen(t), words = 0;
  for (size_t i = 0; i < len; i++)
    words += !is_space(t[i]) && (i == 0 || is_space(t[i - 1]));
  if (!words)
    return 0;
  size_t k = (size_t)floor((double)words * fraction), seen = 0;
  if (k < 1)
    k = 1;
  if (k > words)
    k = words;
  for (size_t i = 0; i < len; i++) {
    if (!is_space(t[i]) && (i == 0 || is_space(t[i - 1])))
      seen++;
    if (seen == k && !is_space(t[i]) && (i + 1 == len || is_space(t[i + 1])))
      return i + 1;
  }
  return len;
}

char *task_commongen_prompt(char *const *concepts, size_t n) {
  static const char head[] = "generate a sentence with:";
  size_t len = sizeof head + 2;
  for (size_t i = 0; i < n; i++)
    len += strlen(concepts[i]) + 1;
  char *s = malloc(len);
  if (!s)
    return NULL;
  size_t o = (size_t)snprintf(s, len, "%s", head);
  for (size_t i = 0; i < n; i++)
    o += (size_t)snprintf(s + o, len - o, " %s", concepts[i]);
  snprintf(s + o, len - o, ".");
  return s;
}

/* Whether needle (lower-case) occurs in text lower-cased (ASCII). */
static int contains_lower(const char *text, const char *needle, size_t nl) {
  if (!nl)
    return 1;
  for (const char *p = text; *p; p++) {
    size_t i = 0;
    while (i < nl && p[i] && (char)tolower((unsigned char)p[i]) == needle[i])
      i++;
    if (i == nl)
      return 1;
  }
  return 0;
}

int task_commongen_repeats(char *const *concepts, size_t n, const char *text) {
  static const char *const words[] = {"generate a sentence with: ", "generate", "sentence"};
  for (size_t w = 0; w < sizeof words / sizeof words[0]; w++)
    if (contains_lower(text, words[w], strlen(words[w])))
      return 1;
  size_t len = 0;
  for (size_t i = 0; i < n; i++)
    len += strlen(concepts[i]) + 1;
  char *joined = malloc(len + 1);
  if (!joined)
    return -1;
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    if (i)
      joined[o++] = ' ';
    for (const char *c = concepts[i]; *c; c++)
      joined[o++] = (char)tolower((unsigned char)*c);
  }
  joined[o] = '\0';
  int r = contains_lower(text, joined, o);
  free(joined);
  return r;
}

/* ----------------------------------------------------------- split files */

static int str_array(const cJSON *a, char ***out, size_t *n) {
  *out = NULL;
  *n = 0;
  if (!cJSON_IsArray(a))
    return 0;
  int m = cJSON_GetArraySize(a);
  *out = calloc((size_t)(m ? m : 1), sizeof(char *));
  if (!*out)
    return -1;
  for (int i = 0; i < m; i++) {
    const cJSON *e = cJSON_GetArrayItem(a, i);
    if (!cJSON_IsString(e))
      return 1;
    if (!((*out)[i] = strdup(e->valuestring)))
      return -1;
    *n = (size_t)i + 1;
  }
  return 0;
}

int task_load_split(task *t, int split, const char *file, task_keep_fn keep, void *ctx,
                    size_t max_items, dfpo_err *err) {
  char path[4400];
  snprintf(path, sizeof path, "%s/%s", t->data_dir, file);
  ds_jsonl j;
  int rc = ds_jsonl_open(&j, path, err);
  if (rc)
    return dfpo_err_prefix(err, "%s task", t->name);
  size_t cap = 0, idx = 0;
  cJSON *rec = NULL;
  while (!(rc = ds_jsonl_next(&j, &rec, err)) && rec) {
    size_t this = idx++;
    if (max_items && t->n[split] >= max_items) {
      cJSON_Delete(rec);
      break;
    }
    if (keep && !keep(rec, this, ctx)) {
      cJSON_Delete(rec);
      continue;
    }
    if ((rc = dfpo_grow(&t->items[split], &cap, t->n[split] + 1, sizeof *t->items[split], 256,
                        DFPO_NOCAP, err))) {
      cJSON_Delete(rec);
      dfpo_err_prefix(err, "%s", path);
      break;
    }
    task_item *it = &t->items[split][t->n[split]++];
    memset(it, 0, sizeof *it);
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(rec, "prompt");
    const cJSON *lab = cJSON_GetObjectItemCaseSensitive(rec, "label");
    it->label = cJSON_IsNumber(lab) ? lab->valueint : -1;
    int bad =
        str_array(cJSON_GetObjectItemCaseSensitive(rec, "references"), &it->refs, &it->n_refs);
    if (!bad)
      bad = str_array(cJSON_GetObjectItemCaseSensitive(rec, "concepts"), &it->concepts,
                      &it->n_concepts);
    if (!bad && cJSON_IsString(p)) {
      it->prompt = strdup(p->valuestring);
      it->reference = strdup(it->n_refs ? it->refs[0] : "");
      if (!it->prompt || !it->reference)
        bad = -1;
    } else if (!bad) {
      bad = 1;
    }
    cJSON_Delete(rec);
    if (bad) {
      rc = bad < 0 ? dfpo_err_set(err, DFPO_ERUNTIME, "%s: out of memory", path)
                   : dfpo_err_set(err, DFPO_EDATA,
                                  "%s:%zu: needs a string 'prompt' and lists of strings as "
                                  "'references' and 'concepts'",
                                  path, j.lineno);
      break;
    }
  }
  ds_jsonl_close(&j);
  if (!rc && t->n[split] == 0)
    rc = dfpo_err_set(err, DFPO_EDATA, "%s task: %s has no usable record", t->name, path);
  return rc;
}

int task_find_data(task *t, const cfg *conf, const char *dataset, dfpo_err *err) {
  const char *dd;
  int rc = cfg_get_str(conf, "task.data_dir", &dd, err);
  if (rc)
    return rc;
  if (dd[0]) {
    t->data_verified = -1;
    return dfpo_path_fmt(t->data_dir, sizeof t->data_dir, err, "%s", dd);
  }
  ds_manifest m;
  if ((rc = ds_manifest_load(&m, NULL, err)))
    return rc;
  const ds_entry *e = ds_manifest_find(&m, dataset);
  ds_prepared p;
  if (!e)
    rc = dfpo_err_set(err, DFPO_EDATA, "dataset %s is not in the manifest", dataset);
  else if ((rc = ds_prepared_read(e, &p, err)))
    dfpo_err_prefix(err,
                    "%s task: dataset %s is not prepared (run `dfpo datasets import %s FILE` "
                    "and `dfpo datasets prepare %s`, or set task.data_dir)",
                    t->name, dataset, dataset, dataset);
  else {
    snprintf(t->data_dir, sizeof t->data_dir, "%s", p.dir);
    t->data_verified = p.verified;
  }
  ds_manifest_free(&m);
  return rc;
}

int task_open_judge(task *t, const cfg *conf, const char *name, const char *role, met_judge **out,
                    dfpo_err *err) {
  char key[64], dir[4096];
  const char *d;
  snprintf(key, sizeof key, "task.judge.%s", name);
  int rc = cfg_get_str(conf, key, &d, err);
  if (rc)
    return rc;
  if ((rc = d[0] ? task_judge_path(d, dir, sizeof dir, err)
                 : met_judge_dir(name, dir, sizeof dir, err)))
    return rc;
  cJSON *card = NULL;
  if ((rc = met_judge_load(out, dir, &card, err)))
    return dfpo_err_prefix(err,
                           "%s task: no usable %s judge in %s (train one with `dfpo judge "
                           "train %s`, or set %s)",
                           t->name, name, dir, name, key);
  cJSON *o = task_add_judge(t, role, met_judge_id(*out));
  cJSON_AddStringToObject(o, "kind", "trained");
  cJSON_AddStringToObject(o, "name", met_judge_name(*out));
  const char *keep[] = {"version", "model_sha256", "training_data", "test", "validation"};
  for (size_t i = 0; i < sizeof keep / sizeof *keep; i++) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(card, keep[i]);
    if (v)
      cJSON_AddItemToObject(o, !strcmp(keep[i], "model_sha256") ? "sha256" : keep[i],
                            cJSON_Duplicate(v, 1));
  }
  cJSON_AddStringToObject(o, "dir", dir);
  cJSON_Delete(card);
  return DFPO_OK;
}

int task_judge_path(const char *value, char *buf, size_t n, dfpo_err *err) {
  return dfpo_path_fmt(buf, n, err, "%s", value);
}

int task_judge_replaced(const cfg *conf, const char *name, int *set, dfpo_err *err) {
  char key[64];
  const char *v;
  snprintf(key, sizeof key, "task.judge.%s_model", name);
  int rc = cfg_get_str(conf, key, &v, err);
  *set = !rc && v[0];
  if (!rc && !*set && !strcmp(name, task_rtp_judge.name) &&
      !(rc = cfg_get_str(conf, "task.judge.toxicity_api", &v, err)))
    *set = !strcmp(v, "perspective");
  return rc;
}

/* The hub snapshot a folder is, into o ("hub": {...}, "revision"): the
 * record dfpo's hub cache keeps in each model folder (dfpo-hub.json: its
 * "name", "revision" as asked and "commit"; ds_hub_fetch writes it), else a
 * Hugging Face cache path .../models--OWNER--NAME/snapshots/<commit>;
 * "revision": "local folder" when neither. The repository goes into hub. */
static void hub_identity(const char *folder, cJSON *o, char *hub, size_t hub_n) {
  char path[4200], *text = NULL;
  hub[0] = '\0';
  cJSON *m = NULL;
  if (!dfpo_path_fmt(path, sizeof path, NULL, "%s/dfpo-hub.json", folder) &&
      dfpo_read_file(path, &text, NULL, NULL) == DFPO_OK) {
    m = cJSON_Parse(text);
    free(text);
  }
  const cJSON *repo = cJSON_GetObjectItemCaseSensitive(m, "name");
  const cJSON *commit = cJSON_GetObjectItemCaseSensitive(m, "commit");
  const cJSON *asked = cJSON_GetObjectItemCaseSensitive(m, "revision");
  if (cJSON_IsObject(m) && cJSON_IsString(repo) && cJSON_IsString(commit)) {
    snprintf(hub, hub_n, "%s", repo->valuestring);
    cJSON *h = cJSON_AddObjectToObject(o, "hub");
    cJSON_AddStringToObject(h, "repo", repo->valuestring);
    if (cJSON_IsString(asked))
      cJSON_AddStringToObject(h, "revision", asked->valuestring);
    cJSON_AddStringToObject(h, "commit", commit->valuestring);
    cJSON_AddStringToObject(o, "revision", commit->valuestring);
    cJSON_Delete(m);
    return;
  }
  cJSON_Delete(m);
  /* the hub cache's layout: models--OWNER--NAME/snapshots/<40 hex> */
  char *real = realpath(folder, NULL);
  const char *p = real ? strstr(real, "/models--") : NULL;
  const char *snap = p ? strstr(p, "/snapshots/") : NULL;
  if (snap && strspn(snap + 11, "0123456789abcdef") == 40 &&
      (snap[51] == '\0' || snap[51] == '/')) {
    char repo_s[512];
    size_t o2 = 0;
    for (const char *c = p + 9; c < snap && o2 + 1 < sizeof repo_s; c++) {
      if (c[0] == '-' && c[1] == '-') { /* the cache writes "/" as "--" */
        repo_s[o2++] = '/';
        c++;
      } else {
        repo_s[o2++] = *c;
      }
    }
    repo_s[o2] = '\0';
    char snap_commit[41];
    memcpy(snap_commit, snap + 11, 40);
    snap_commit[40] = '\0';
    snprintf(hub, hub_n, "%s", repo_s);
    cJSON *h = cJSON_AddObjectToObject(o, "hub");
    cJSON_AddStringToObject(h, "repo", repo_s);
    cJSON_AddStringToObject(h, "commit", snap_commit);
    cJSON_AddStringToObject(o, "revision", snap_commit);
  } else {
    cJSON_AddStringToObject(o, "revision", "local folder");
  }
  free(real);
}

int task_open_hf_judge(task *t, const cfg *conf, const char *name, const char *role_fmt,
                       const char *dflt_name, met_hf_judge **out, int *label, char *hub,
                       size_t hub_n, dfpo_err *err) {
  char mkey[64], lkey[64], dir[4096];
  const char *model, *lab;
  *out = NULL;
  *label = -1;
  hub[0] = '\0';
  snprintf(mkey, sizeof mkey, "task.judge.%s_model", name);
  snprintf(lkey, sizeof lkey, "task.judge.%s_label", name);
  int rc;
  if ((rc = cfg_get_str(conf, mkey, &model, err)) || (rc = cfg_get_str(conf, lkey, &lab, err)))
    return rc;
  if (!model[0]) {
    if (lab[0])
      return dfpo_err_set(err, DFPO_EUSAGE, "%s task: %s is set but %s is not", t->name, lkey,
                          mkey);
    return DFPO_OK;
  }
  /* a folder, or a hub name (owner/name[@revision]) resolved to its cache
   * folder, fetched when absent */
  if ((rc = cli_model_path(model, dir, sizeof dir, err)))
    return dfpo_err_prefix(err, "%s task: %s", t->name, mkey);
  if ((rc = met_hf_judge_open(out, dir, err)))
    return dfpo_err_prefix(err, "%s task: %s (%s)", t->name, mkey, dir);
  met_hf_judge *j = *out;
  int K = met_hf_judge_labels(j);
  char names[1024] = "";
  for (int k = 0, o = 0; k < K && o < (int)sizeof names; k++)
    o += snprintf(names + o, sizeof names - (size_t)o, "%s%s", k ? ", " : "",
                  met_hf_judge_label(j, k));
  if (lab[0]) {
    if ((*label = met_hf_judge_label_index(j, lab)) < 0)
      return dfpo_err_set(err, DFPO_EUSAGE, "%s task: %s '%s' is not a label of %s (id2label: %s)",
                          t->name, lkey, lab, dir, names);
  } else if ((*label = met_hf_judge_label_index(j, dflt_name)) < 0) {
    if (K > 2)
      return dfpo_err_set(err, DFPO_EUSAGE,
                          "%s task: %s has %d labels (%s) and none is called %s: set %s", t->name,
                          dir, K, names, dflt_name, lkey);
    *label = K - 1; /* one label: it; two: label 1, as RL4LMs' learned reward */
  }
  char path[4200], msha[65], csha[65], id[600];
  /* the weights bert_load read: model.safetensors, else pytorch_model.bin */
  if ((rc = dfpo_path_fmt(path, sizeof path, err, "%s/model.safetensors", dir)) ||
      (access(path, F_OK) != 0 &&
       (rc = dfpo_path_fmt(path, sizeof path, err, "%s/pytorch_model.bin", dir))) ||
      (rc = ds_sha256_file(path, msha, err)) ||
      (rc = dfpo_path_fmt(path, sizeof path, err, "%s/config.json", dir)) ||
      (rc = ds_sha256_file(path, csha, err)))
    return dfpo_err_prefix(err, "%s task: %s", t->name, mkey);
  const char *base = strrchr(dir, '/');
  base = base && base[1] ? base + 1 : dir;
  snprintf(id, sizeof id, "%.40s %.200s [%.200s] sha256:%.16s", met_hf_judge_model_type(j), base,
           met_hf_judge_label(j, *label), msha);
  char role[512];
  snprintf(role, sizeof role, role_fmt, met_hf_judge_label(j, *label));
  cJSON *o = task_add_judge(t, role, id);
  cJSON_AddStringToObject(o, "kind", "huggingface");
  cJSON_AddStringToObject(o, "dir", dir);
  cJSON_AddStringToObject(o, "model_type", met_hf_judge_model_type(j));
  cJSON_AddStringToObject(o, "label", met_hf_judge_label(j, *label));
  cJSON_AddNumberToObject(o, "label_index", *label);
  cJSON *ls = cJSON_AddArrayToObject(o, "labels");
  for (int k = 0; k < K; k++)
    cJSON_AddItemToArray(ls, cJSON_CreateString(met_hf_judge_label(j, k)));
  cJSON_AddStringToObject(o, "probability",
                          met_hf_judge_multi_label(j) ? "sigmoid" : "softmax over the labels");
  cJSON_AddNumberToObject(o, "max_tokens", met_hf_judge_max_tokens(j));
  cJSON_AddStringToObject(o, "model_sha256", msha);
  cJSON_AddStringToObject(o, "config_sha256", csha);
  hub_identity(dir, o, hub, hub_n);
  return DFPO_OK;
}

int task_text_judge_scores(const task *t, const char *const *texts, const size_t *lens, size_t n,
                           double *out, dfpo_err *err) {
  const task_text_impl *x = t->impl;
  if (!x->hf && !x->api) {
    for (size_t i = 0; i < n; i++)
      if (isnan(out[i] = met_judge_score(x->judge, texts[i], lens ? lens[i] : strlen(texts[i]))))
        return dfpo_err_set(err, DFPO_ERUNTIME, "%s task: out of memory", t->name);
    return DFPO_OK;
  }
  int K = x->hf ? met_hf_judge_labels(x->hf) : 1, rc = DFPO_OK;
  char **fixed = calloc(n ? n : 1, sizeof *fixed);
  double *p = malloc((n ? n : 1) * (size_t)K * sizeof *p);
  if (!fixed || !p)
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "%s task: out of memory", t->name);
  for (size_t i = 0; !rc && i < n; i++)
    if (!(fixed[i] = dfpo_utf8_fix(texts[i], lens ? lens[i] : strlen(texts[i]))))
      rc = dfpo_err_set(err, DFPO_ERUNTIME, "%s task: out of memory", t->name);
  if (x->api) /* the client's cache answers the texts it has seen */
    for (size_t i = 0; !rc && i < n; i++)
      rc = met_perspective_score(x->api, fixed[i], &out[i], err);
  else if (!rc && !(rc = met_hf_judge_score(x->hf, (const char *const *)fixed, NULL, n, 0, p, err)))
    for (size_t i = 0; i < n; i++)
      out[i] = p[i * (size_t)K + (size_t)x->hf_label];
  for (size_t i = 0; fixed && i < n; i++)
    free(fixed[i]);
  free(fixed);
  free(p);
  return rc ? dfpo_err_prefix(err, "%s task: scoring with the judge", t->name) : DFPO_OK;
}

int task_score_many(const task *t, const task_item *const *items, const char *const *conts,
                    size_t n, double *values, dfpo_err *err) {
  if (t->score_batch)
    return t->score_batch(t, items, conts, n, values, err);
  for (size_t i = 0; i < n; i++) {
    int rc = t->score(t, items[i], conts[i], values + i * (size_t)t->n_metrics, err);
    if (rc)
      return rc;
  }
  return DFPO_OK;
}

cJSON *task_add_judge(task *t, const char *role, const char *id) {
  if (!t->judges)
    t->judges = cJSON_CreateArray();
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "role", role);
  cJSON_AddStringToObject(o, "id", id);
  cJSON_AddItemToArray(t->judges, o);
  return o;
}

void task_deviation(task *t, const char *text) {
  if (!t->deviations)
    t->deviations = cJSON_CreateArray();
  cJSON_AddItemToArray(t->deviations, cJSON_CreateString(text));
}

int task_diversity(char *const *texts, size_t n, cJSON *metrics, dfpo_err *err) {
  met_corpus c;
  int rc = met_corpus_init(&c, MET_TOK_DEFAULT, err);
  if (rc)
    return rc;
  for (size_t i = 0; !rc && i < n; i++)
    rc = met_corpus_add(&c, texts[i], NULL, 0, NULL, 0, err);
  met_diversity d;
  if (!rc && !(rc = met_diversity_compute(&c, &d, err)))
    met_diversity_json(&d, cJSON_AddObjectToObject(metrics, "diversity"));
  met_corpus_free(&c);
  return rc;
}

/* -------------------------------------------------------------- registry */

/* One row per task; docs/tasks.md says what a new one needs. */
static const task_def registry[] = {
    {.name = "synthetic",
     .open = task_synthetic_open,
     .base = repro_base_synthetic,
     .metrics = task_synthetic_metrics,
     .report_note = task_synthetic_note},
    {.name = "imdb",
     .dataset = "imdb",
     .shared_archive = "imdb/aclImdb.tar.gz",
     .open = task_imdb_open,
     .base = repro_base_text,
     .metrics = task_imdb_metrics,
     .judge = &task_imdb_judge,
     .paper = 1},
    {.name = "rtp",
     .dataset = "rtp",
     .open = task_rtp_open,
     .metrics = task_rtp_metrics,
     .judge = &task_rtp_judge,
     .paper = 1},
    {.name = "commongen",
     .dataset = "commongen",
     .shared_archive = "commongen",
     .open = task_commongen_open,
     .base = repro_base_t5,
     .metrics = task_commongen_metrics,
     .library = task_commongen_library,
     .paper = 1},
};
enum { N_TASKS = (int)(sizeof registry / sizeof registry[0]) };

const task_def *task_def_at(int i) {
  return i >= 0 && i < N_TASKS ? &registry[i] : NULL;
}

const task_def *task_find(const char *name) {
  for (int i = 0; name && i < N_TASKS; i++)
    if (!strcmp(registry[i].name, name))
      return &registry[i];
  return NULL;
}

const task_def *task_find_judge(const char *name) {
  for (int i = 0; name && i < N_TASKS; i++)
    if (registry[i].judge && !strcmp(registry[i].judge->name, name))
      return &registry[i];
  return NULL;
}

const met_metric_info *task_metric_find(const char *key) {
  for (int i = 0; key && i < N_TASKS; i++)
    for (const met_metric_info *m = registry[i].metrics; m && m->key; m++)
      if (!strcmp(m->key, key))
        return m;
  return met_metric_find(key);
}

void task_names(char *buf, size_t n) {
  size_t o = 0;
  buf[0] = '\0';
  for (int i = 0; i < N_TASKS && o < n; i++)
    o += (size_t)snprintf(buf + o, n - o, "%s%s",
                          i == 0             ? ""
                          : i + 1 == N_TASKS ? (N_TASKS > 2 ? ", or " : " or ")
                                             : ", ",
                          registry[i].name);
}

void task_set_metrics(task *t, const met_metric_info *m, int n) {
  for (int i = 0; i < n && i < TASK_MAX_METRICS; i++)
    t->metric_names[i] = m[i].key;
  t->n_metrics = n;
}

static void text_free(void *p) {
  task_text_impl *x = p;
  if (!x)
    return;
  met_judge_free(x->judge);
  met_hf_judge_free(x->hf);
  met_perspective_free(x->api);
  met_wordnet_free(x->wn);
  free(x);
}

const char task_dev_splits[] =
    "splits made by the harness with its own seeded shuffle (Hugging Face's shuffles cannot be "
    "replayed in C)";

int task_text_begin(task *t, const cfg *conf, size_t *cap, dfpo_err *err) {
  t->data_verified = -1;
  t->samples_per_prompt = 1;
  task_text_impl *x = calloc(1, sizeof *x);
  if (!x)
    return dfpo_err_set(err, DFPO_ERUNTIME, "%s task: out of memory", t->name);
  t->impl = x;
  t->impl_free = text_free;
  int64_t max_items;
  int rc = cfg_get_int(conf, "task.max_items", &max_items, err);
  if (rc)
    return rc;
  *cap = (size_t)max_items;
  return DFPO_OK;
}

void task_text_end(task *t) {
  if (t->data_verified == 0)
    task_deviation(t, "the dataset was imported unverified (prepared.json says verified: false)");
}

int task_open(const char *name, const cfg *conf, task *t, dfpo_err *err) {
  memset(t, 0, sizeof *t);
  const task_def *d = task_find(name);
  if (!d) {
    char names[256];
    task_names(names, sizeof names);
    return dfpo_err_set(err, DFPO_EUSAGE, "unknown task '%s' (%s)", name, names);
  }
  snprintf(t->name, sizeof t->name, "%s", d->name);
  int rc = d->open(conf, t, err);
  if (rc)
    task_free(t);
  return rc;
}
