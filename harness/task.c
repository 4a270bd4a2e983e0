/* The task registry (task_open) and what the tasks share: split files,
 * judges, prompts, UTF-8 repair and diversity. The tasks themselves:
 * task_synthetic.c and task_text.c. */
#include "harness/task.h"
#include "datasets/datasets.h"
#include "harness/task_internal.h"
#include "metrics/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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
    if (t->n[split] == cap) {
      size_t nc = cap ? cap * 2 : 256;
      task_item *ni = realloc(t->items[split], nc * sizeof *ni);
      if (!ni) {
        cJSON_Delete(rec);
        rc = dfpo_err_set(err, DFPO_ERUNTIME, "%s: out of memory", path);
        break;
      }
      t->items[split] = ni;
      cap = nc;
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
    snprintf(t->data_dir, sizeof t->data_dir, "%s", dd);
    t->data_verified = -1;
    return DFPO_OK;
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
  if (d[0])
    snprintf(dir, sizeof dir, "%s", d);
  else if ((rc = met_judge_dir(name, dir, sizeof dir, err)))
    return rc;
  cJSON *card = NULL;
  if ((rc = met_judge_load(out, dir, &card, err)))
    return dfpo_err_prefix(err,
                           "%s task: no usable %s judge in %s (train one with `dfpo judge "
                           "train %s`, or set %s)",
                           t->name, name, dir, name, key);
  cJSON *o = task_add_judge(t, role, met_judge_id(*out));
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
  if (!rc && !(rc = met_diversity_compute(&c, &d, err))) {
    cJSON *o = cJSON_AddObjectToObject(metrics, "diversity");
    if (isfinite(d.msttr100))
      cJSON_AddNumberToObject(o, "msttr100", d.msttr100);
    else
      cJSON_AddNullToObject(o, "msttr100");
    cJSON_AddNumberToObject(o, "distinct1", d.distinct[0]);
    cJSON_AddNumberToObject(o, "distinct2", d.distinct[1]);
    cJSON_AddNumberToObject(o, "vocab_size1", (double)d.vocab_size[0]);
    cJSON_AddNumberToObject(o, "vocab_size2", (double)d.vocab_size[1]);
    cJSON_AddNumberToObject(o, "unique1", (double)d.unique[0]);
    cJSON_AddNumberToObject(o, "unique2", (double)d.unique[1]);
    cJSON_AddNumberToObject(o, "entropy1", d.entropy[0]);
    cJSON_AddNumberToObject(o, "entropy2", d.entropy[1]);
    cJSON_AddNumberToObject(o, "mean_length", d.mean_length);
  }
  met_corpus_free(&c);
  return rc;
}

/* -------------------------------------------------------------- registry */

int task_synth_params_from_cfg(const cfg *conf, task_synth_params *p, dfpo_err *err) {
  task_synth_params tp = task_synth_defaults();
  int64_t v;
  int rc;
#define SGET(kind, path, dst)                                                                      \
  do {                                                                                             \
    if ((rc = cfg_get_##kind(conf, path, dst, err)))                                               \
      return rc;                                                                                   \
  } while (0)
  SGET(int, "task.synthetic.language_seed", &v);
  tp.language_seed = (uint64_t)v;
  SGET(int, "task.synthetic.data_seed", &v);
  tp.data_seed = (uint64_t)v;
  SGET(num, "task.synthetic.lambda", &tp.lambda);
  SGET(int, "task.synthetic.n_train", &v);
  tp.n[TASK_TRAIN] = (size_t)v;
  SGET(int, "task.synthetic.n_validation", &v);
  tp.n[TASK_VALIDATION] = (size_t)v;
  SGET(int, "task.synthetic.n_test", &v);
  tp.n[TASK_TEST] = (size_t)v;
  SGET(int, "task.synthetic.min_words", &v);
  tp.min_words = (int)v;
  SGET(num, "task.prompt_fraction", &tp.prompt_fraction);
#undef SGET
  *p = tp;
  return DFPO_OK;
}

static int open_synthetic(const cfg *conf, task *t, dfpo_err *err) {
  task_synth_params tp;
  int rc = task_synth_params_from_cfg(conf, &tp, err);
  if (rc)
    return rc;
  if ((rc = task_synth_init(t, &tp, err)))
    return rc;
  task_add_judge(t, "reward",
                 "synthetic: the exact posterior and likelihood of the true language (no "
                 "trained judge)");
  task_deviation(t, "not a task of the paper: the project's offline stand-in, a known language "
                    "with exact rewards and likelihoods (docs/synthetic.md)");
  return DFPO_OK;
}

int task_open(const char *name, const cfg *conf, task *t, dfpo_err *err) {
  memset(t, 0, sizeof *t);
  int rc;
  if (!strcmp(name, "synthetic"))
    rc = open_synthetic(conf, t, err);
  else if (!strcmp(name, "imdb") || !strcmp(name, "rtp") || !strcmp(name, "commongen"))
    rc = task_text_open(name, conf, t, err);
  else
    return dfpo_err_set(err, DFPO_EUSAGE, "unknown task '%s' (synthetic, imdb, rtp or commongen)",
                        name);
  if (rc)
    task_free(t);
  return rc;
}
