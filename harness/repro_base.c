#define _XOPEN_SOURCE 700
/* `dfpo reproduce`'s base models (docs/suites.md): cache keys, the
 * pretraining child (`dfpo pretrain --config`), tokenizer training, the
 * synthetic language's base and a text task's (data, tokenizer, base model,
 * judge), the imported GPT-2 124M, and repro_prepare_base, which picks one
 * as model.init and the task's registry row say. */
#include "datasets/datasets.h"
#include "harness/cli.h"
#include "harness/repro_internal.h"
#include "harness/task_internal.h"
#include "trainer/model.h"
#include "trainer/rdec.h"
#include "trainer/t5.h"
#include "trainer/tok.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The config keys of the base models: a synthetic base depends on the
 * language and documents (synth_keys), then on the vocabulary (tok_keys),
 * then on the shape and the pretraining (model_keys). */
static const char *const synth_keys[] = {"task.synthetic.language_seed",
                                         "task.synthetic.data_seed",
                                         "task.synthetic.lambda",
                                         "task.synthetic.n_train",
                                         "task.synthetic.n_validation",
                                         "task.synthetic.min_words",
                                         NULL};
static const char *const tok_keys[] = {"tokenizer.vocab_size", NULL};
static const char *const model_keys[] = {
    "model.n_layer",          "model.n_head",          "model.n_embd",
    "model.block_size",       "pretrain.steps",        "pretrain.batch_size",
    "pretrain.seq_len",       "pretrain.lr",           "pretrain.min_lr",
    "pretrain.lr_schedule",   "pretrain.warmup_steps", "pretrain.weight_decay",
    "pretrain.max_grad_norm", "pretrain.seed",         NULL};

/* A cache key as JSON text: the values of the keys of each NULL-terminated
 * list in lists[] (NULL-terminated), then the strings name=value of
 * extra[] (pairs, NULL-terminated; may be NULL), then the recipe. Its
 * SHA-256 names a cache folder, and the folder's stamp records it. */
static char *key_json(const cfg *c, const char *const *const *lists, const char *const *extra,
                      const char *recipe) {
  cJSON *o = cJSON_CreateObject();
  dfpo_err e;
  for (int l = 0; lists[l]; l++)
    for (int i = 0; lists[l][i]; i++) {
      const char *k = lists[l][i];
      double d;
      const char *str;
      if (cfg_get_num(c, k, &d, &e) == DFPO_OK) {
        cJSON_AddNumberToObject(o, k, d);
      } else {
        int64_t v = 0;
        if (cfg_get_int(c, k, &v, &e) != DFPO_OK && cfg_get_str(c, k, &str, &e) == DFPO_OK)
          cJSON_AddStringToObject(o, k, str); /* pretrain.lr_schedule */
        else
          cJSON_AddNumberToObject(o, k, (double)v);
      }
    }
  for (int i = 0; extra && extra[i]; i += 2)
    cJSON_AddStringToObject(o, extra[i], extra[i + 1]);
  cJSON_AddStringToObject(o, "recipe", recipe);
  char *s = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  return s;
}

/* The first 16 hex digits of the SHA-256 of text. */
static void key_hex(const char *text, char hex[65]) {
  ds_sha256_buf(text, strlen(text), hex);
  hex[16] = '\0';
}

/* The lock of a cache entry about to be built (its folder's parent,
 * bases/ or judges/, made first); none when its stamp is there: an entry
 * is whole once its stamp is written (last), so reading one needs no lock
 * and processes that only reuse it (Slurm array tasks) never contend. The
 * caller checks the stamp again under the lock. */
static int cache_lock(dfpo_lock *l, const char *dir, const char *stamp, dfpo_err *err) {
  if (repro_exists(stamp))
    return DFPO_OK;
  char parent[1600];
  suite_fmt(parent, sizeof parent, "%s", dir);
  char *slash = strrchr(parent, '/');
  if (slash)
    *slash = '\0';
  int rc = dfpo_mkdirs(parent, err);
  return rc ? rc : dfpo_lock_take(l, dir, err);
}

static char *base_key_json(const cfg *c) {
  const char *const *lists[] = {synth_keys, tok_keys, model_keys, NULL};
  return key_json(c, lists, NULL, "synthetic-base-1");
}

/* Each document of a split as a line of token ids ending in end-of-text. */
static int write_ids(const task *t, int split, tok_tokenizer *tok, const char *path,
                     dfpo_err *err) {
  dfpo_atomic a;
  int rc = dfpo_atomic_open(&a, path, err);
  if (rc)
    return rc;
  for (size_t i = 0; !rc && i < t->n[split]; i++) {
    tok_ids v = {0};
    const char *s = t->items[split][i].reference;
    if ((rc = tok_encode(tok, s, strlen(s), 0, &v, err)))
      break;
    for (size_t k = 0; k < v.n; k++)
      fprintf(a.fp, "%d ", (int)v.ids[k]);
    fprintf(a.fp, "%d\n", (int)tok_eot_id(tok));
    tok_ids_free(&v);
  }
  if (rc) {
    dfpo_atomic_abort(&a);
    return rc;
  }
  return dfpo_atomic_commit(&a, err);
}

/* The last val_loss in pretrain/train.jsonl (NaN when none). */
static double last_val_loss(const char *path) {
  FILE *fp = fopen(path, "r");
  double v = NAN;
  if (!fp)
    return v;
  char *line = NULL;
  size_t cap = 0;
  while (getline(&line, &cap, fp) != -1) {
    cJSON *o = cJSON_Parse(line);
    const cJSON *x = cJSON_GetObjectItem(o, "val_loss");
    if (cJSON_IsNumber(x))
      v = x->valuedouble;
    cJSON_Delete(o);
  }
  free(line);
  fclose(fp);
  return v;
}

static int reference_scores(const cfg *c, cJSON *o, dfpo_err *err);

/* What a running pretraining child is at: its last train.jsonl line. */
typedef struct pt_watch {
  const char *log; /* pretrain/train.jsonl */
  const char *what;
  double steps, last;
  double step0, t_step0; /* the first step seen and when (a resumed run starts late) */
} pt_watch;

static void pt_progress(void *ctx) {
  pt_watch *w = ctx;
  double now = dfpo_now();
  if (now - w->last < 30)
    return;
  w->last = now;
  FILE *fp = fopen(w->log, "r");
  if (!fp)
    return;
  char *line = NULL, *keep = NULL;
  size_t cap = 0;
  while (getline(&line, &cap, fp) != -1) {
    free(keep);
    keep = strdup(line);
  }
  free(line);
  fclose(fp);
  cJSON *o = keep ? cJSON_Parse(keep) : NULL;
  free(keep);
  const cJSON *st = cJSON_GetObjectItem(o, "step"), *loss = cJSON_GetObjectItem(o, "loss");
  if (cJSON_IsNumber(st) && cJSON_IsNumber(loss)) {
    double done = st->valuedouble;
    if (w->step0 < 0) {
      w->step0 = done;
      w->t_step0 = now;
    }
    char eta[64] = "";
    if (done > w->step0)
      suite_fmt(eta, sizeof eta, ", about %.0f s left",
                (w->steps - done) * (now - w->t_step0) / (done - w->step0));
    dfpo_info("reproduce: %s: pretraining step %.0f of %.0f, loss %.3f%s", w->what, done, w->steps,
              loss->valuedouble, eta);
  }
  cJSON_Delete(o);
}

/* `dfpo pretrain --config <pre>.json` in a child process (its log in
 * <pre>.log) on token-id files into pre/, resuming from pre/checkpoint.bin
 * when there is one; then the weights alone are saved as model. The config
 * file is the suite's, resolved, with the corpus, the tokenizer and the
 * output folder set; written whole before the child starts. */
static int pretrain_child(const cfg *c, const char *what, const char *tokdir, const char *train_ids,
                          const char *val_ids, const char *pre, const char *model, dfpo_err *err) {
  int64_t steps;
  int rc = cfg_get_int(c, "pretrain.steps", &steps, err);
  if (rc)
    return rc;
  char *json = cfg_to_json(c);
  cJSON *o = json ? cJSON_Parse(json) : NULL;
  free(json);
  cJSON *pt = cJSON_GetObjectItemCaseSensitive(o, "pretrain");
  cJSON *tk = cJSON_GetObjectItemCaseSensitive(o, "tokenizer");
  if (!cJSON_IsObject(pt) || !cJSON_IsObject(tk)) {
    cJSON_Delete(o);
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  }
  const char *tr[1] = {train_ids}, *va[1] = {val_ids};
  cJSON_ReplaceItemInObjectCaseSensitive(pt, "train", cJSON_CreateStringArray(tr, 1));
  cJSON_ReplaceItemInObjectCaseSensitive(pt, "validation", cJSON_CreateStringArray(va, 1));
  cJSON_ReplaceItemInObjectCaseSensitive(pt, "out", cJSON_CreateString(pre));
  cJSON_ReplaceItemInObjectCaseSensitive(tk, "path", cJSON_CreateString(tokdir));
  char conf[1700], log[1700], jsonl[1700];
  suite_fmt(conf, sizeof conf, "%s.json", pre);
  suite_fmt(log, sizeof log, "%s.log", pre);
  suite_fmt(jsonl, sizeof jsonl, "%s/train.jsonl", pre);
  rc = cfg_json_write(conf, o, err);
  cJSON_Delete(o);
  if (rc)
    return rc;
  char *argv[] = {"dfpo", "pretrain", "--config", conf, NULL};
  pt_watch w = {jsonl, what, (double)steps, dfpo_now(), -1, 0};
  dfpo_info("reproduce: %s: pretraining %lld steps (config: %s, log: %s, progress: %s)", what,
            (long long)steps, conf, log, jsonl);
  int st = repro_run_child_watch(argv, log, pt_progress, &w);
  if (st != 0) {
    char why[512];
    repro_last_error(log, why, sizeof why);
    const char *msg = strncmp(why, "dfpo: error: ", 13) ? why : why + 13;
    return dfpo_err_set(err, st == 130 ? DFPO_EINTR : DFPO_ERUNTIME,
                        "base model: pretraining %s (exit %d): %s (log: %s)",
                        st == 130 ? "interrupted" : "failed", st, msg, log);
  }
  model_t *m = NULL;
  char path[1800];
  suite_fmt(path, sizeof path, "%s/checkpoint.bin", pre);
  if (!(rc = model_load(&m, path, err)))
    rc = model_save(m, model, 0, err);
  model_free(m);
  return rc;
}

/* Trains a BPE of vocab entries on the corpus files into dir/tok (through
 * dir/tok.tmp, so that dir/tok is whole or absent). */
static int train_tokenizer(const char *dir, const char *const *files, size_t n, int64_t vocab,
                           dfpo_err *err) {
  char tmp[1600], path[1600];
  suite_fmt(tmp, sizeof tmp, "%s/tok.tmp", dir);
  suite_fmt(path, sizeof path, "%s/tok", dir);
  int rc;
  if ((rc = suite_rmtree(tmp, err)) || (rc = tok_train(files, n, (size_t)vocab, tmp, NULL, err)) ||
      (rc = suite_rmtree(path, err)))
    return rc;
  if (rename(tmp, path) != 0)
    return dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot rename", tmp);
  return DFPO_OK;
}

int repro_base_synthetic(const task_def *d, task_base *b, dfpo_err *err) {
  (void)d;
  const cfg *c = b->conf;
  int rc;
  char cache[1024], dir[1400], path[1600], stamp[1600];
  if ((rc = dfpo_cache_dir(cache, sizeof cache, err)))
    return rc;
  char *key = base_key_json(c);
  if (!key)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  char hex[65];
  key_hex(key, hex);
  suite_fmt(dir, sizeof dir, "%s/bases/synthetic-%s", cache, hex);
  suite_fmt(b->model, sizeof b->model, "%s/base.ckpt", dir);
  suite_fmt(b->tok, sizeof b->tok, "%s/tok", dir);
  suite_fmt(stamp, sizeof stamp, "%s/base.json", dir);
  /* one process builds a cache entry; another stops (DFPO_ELOCKED) */
  dfpo_lock lk = {0};
  if ((rc = cache_lock(&lk, dir, stamp, err))) {
    free(key);
    return rc;
  }
  if (repro_exists(stamp)) {
    free(key);
    dfpo_info("reproduce: base model for synthetic: reusing %s", dir);
    goto link;
  }
  dfpo_info("reproduce: base model for synthetic: preparing %s", dir);
  double t0 = dfpo_now();
  if ((rc = dfpo_mkdirs(dir, err))) {
    free(key);
    dfpo_lock_release(&lk);
    return rc;
  }
  task t;
  task_synth_params p;
  memset(&t, 0, sizeof t);
  if ((rc = task_synth_params_from_cfg(c, &p, err)) || (rc = task_synth_init(&t, &p, err))) {
    free(key);
    dfpo_lock_release(&lk);
    return rc;
  }
  char corpus[1600], tokdone[1600], train_ids[1600], val_ids[1600];
  suite_fmt(corpus, sizeof corpus, "%s/corpus.txt", dir);
  suite_fmt(tokdone, sizeof tokdone, "%s/tok/vocab.bpe", dir);
  suite_fmt(train_ids, sizeof train_ids, "%s/train.ids", dir);
  suite_fmt(val_ids, sizeof val_ids, "%s/val.ids", dir);
  int64_t vocab;
  if ((rc = cfg_get_int(c, "tokenizer.vocab_size", &vocab, err)))
    goto done;
  if (!repro_exists(corpus) && (rc = task_write_corpus(&t, TASK_TRAIN, corpus, err)))
    goto done;
  if (!repro_exists(tokdone)) {
    const char *files[1] = {corpus};
    if ((rc = train_tokenizer(dir, files, 1, vocab, err)))
      goto done;
  }
  tok_tokenizer *tok = NULL;
  if ((rc = tok_load(&tok, b->tok, err)))
    goto done;
  size_t V = tok_vocab_size(tok);
  if ((!repro_exists(train_ids) && (rc = write_ids(&t, TASK_TRAIN, tok, train_ids, err))) ||
      (!repro_exists(val_ids) && (rc = write_ids(&t, TASK_VALIDATION, tok, val_ids, err)))) {
    tok_free(tok);
    goto done;
  }
  tok_free(tok);
  {
    char pre[1600];
    suite_fmt(pre, sizeof pre, "%s/pretrain", dir);
    if ((rc = pretrain_child(c, "base model for synthetic", b->tok, train_ids, val_ids, pre,
                             b->model, err)))
      goto done;
    suite_fmt(path, sizeof path, "%s/train.jsonl", pre);
    double vl = last_val_loss(path);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "config", cJSON_Parse(key));
    cJSON_AddNumberToObject(o, "vocab", (double)V);
    cJSON_AddNumberToObject(o, "corpus_documents", (double)t.n[TASK_TRAIN]);
    if (isfinite(vl))
      cJSON_AddNumberToObject(o, "val_loss_per_token", vl);
    cJSON_AddNumberToObject(o, "seconds", dfpo_now() - t0);
    rc = cfg_json_write(stamp, o, err);
    cJSON_Delete(o);
  }
done:
  task_free(&t);
  free(key);
  if (rc) {
    dfpo_lock_release(&lk);
    return rc;
  }
link:
  dfpo_lock_release(&lk);
  /* the suite folder records which base its cells used */
  if ((rc = dfpo_path_fmt(path, sizeof path, err, "%s/base-%s.json", b->root, b->task)))
    return rc;
  {
    cJSON *o;
    if ((rc = cfg_json_read(stamp, &o, err)))
      return rc;
    cJSON_AddStringToObject(o, "model", b->model);
    cJSON_AddStringToObject(o, "tokenizer", b->tok);
    if ((rc = reference_scores(c, o, err))) {
      cJSON_Delete(o);
      return rc;
    }
    rc = cfg_json_write(path, o, err);
    cJSON_Delete(o);
  }
  return rc;
}

/* ------------------------------------------------------- text task bases */

/* Step 1, the data: task.data_dir when set; else the prepared dataset of
 * the task in the cache, prepared from its import when only imported,
 * imported from the local copy of its archive (the row's shared_archive
 * under the shared-data folder) when not in the cache at all. */
static int text_splits(const task_def *d, const task_base *b, char *dir, size_t n, int *from_cache,
                       dfpo_err *err) {
  const cfg *c = b->conf;
  const char *dd;
  int rc = cfg_get_str(c, "task.data_dir", &dd, err);
  if (rc)
    return rc;
  *from_cache = !dd[0];
  if (dd[0]) {
    if ((rc = dfpo_path_fmt(dir, n, err, "%s", dd)))
      return rc;
    dfpo_info("reproduce: %s data: the split files in %s (task.data_dir)", d->name, dir);
    return DFPO_OK;
  }
  ds_manifest m;
  if ((rc = ds_manifest_load(&m, NULL, err)))
    return rc;
  const ds_entry *e = ds_manifest_find(&m, d->dataset);
  ds_prepared p;
  ds_stamp st;
  dfpo_err e2;
  if (!e) {
    rc = dfpo_err_set(err, DFPO_EDATA, "dataset %s is not in the manifest", d->dataset);
  } else if (ds_prepared_read(e, &p, &e2) == DFPO_OK) {
    dfpo_info("reproduce: %s data: reusing the prepared splits in %s%s", d->name, p.dir,
              p.verified ? "" : " (UNVERIFIED import)");
  } else {
    if (ds_stamp_read(e, &st, &e2) != DFPO_OK) {
      char src[4200] = "";
      if (d->shared_archive && b->shared_data && b->shared_data[0])
        suite_fmt(src, sizeof src, "%s/%s", b->shared_data, d->shared_archive);
      if (!src[0] || !repro_exists(src)) {
        rc = dfpo_err_set(err, DFPO_EDATA,
                          "%s data: not in the cache and no local archive%s%s; run `dfpo "
                          "fetch %s` (or `dfpo datasets import %s FILE`), or set "
                          "task.data_dir",
                          d->name, src[0] ? " at " : "", src, d->dataset, d->dataset);
      } else {
        dfpo_info("reproduce: %s data: importing %s", d->name, src);
        rc = ds_import(e, src, 0, &st, err);
      }
    }
    if (!rc) {
      dfpo_info("reproduce: %s data: preparing the splits", d->name);
      rc = ds_prepare(e, DS_DEFAULT_SEED, &p, err);
    }
    if (rc)
      dfpo_err_prefix(err, "%s data", d->name);
  }
  if (!rc)
    suite_fmt(dir, n, "%s", p.dir);
  ds_manifest_free(&m);
  return rc;
}

/* The SHA-256 of "<name> <sha256 of dir/name>\n" over the files that exist
 * (unsup.jsonl may be absent from a task.data_dir): what the tokenizer, the
 * base and the judge were made from. */
static int splits_digest(const char *dir, const char *const *names, char hex[65], dfpo_err *err) {
  char text[1024] = "", path[4400], h[65];
  for (int i = 0; names[i]; i++) {
    suite_fmt(path, sizeof path, "%s/%s", dir, names[i]);
    if (!repro_exists(path))
      continue;
    int rc = ds_sha256_file(path, h, err);
    if (rc)
      return rc;
    size_t l = strlen(text);
    suite_fmt(text + l, sizeof text - l, "%s %s\n", names[i], h);
  }
  ds_sha256_buf(text, strlen(text), hex);
  return DFPO_OK;
}

/* The documents of a split file: a record's "text" (unsup.jsonl), else its
 * first reference (the whole review). Calls fn on batches of up to 4096. */
typedef int (*docs_fn)(char *const *docs, const size_t *lens, size_t n, void *ctx, dfpo_err *err);

static int each_doc_batch(const char *path, docs_fn fn, void *ctx, size_t *count, dfpo_err *err) {
  enum { BATCH = 4096 };
  ds_jsonl j;
  int rc = ds_jsonl_open(&j, path, err);
  if (rc)
    return rc;
  char **docs = calloc(BATCH, sizeof *docs);
  size_t *lens = calloc(BATCH, sizeof *lens), n = 0;
  if (!docs || !lens)
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  cJSON *rec = NULL;
  while (!rc && !(rc = ds_jsonl_next(&j, &rec, err)) && rec) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(rec, "text");
    if (!cJSON_IsString(t))
      t = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(rec, "references"), 0);
    if (cJSON_IsString(t) && t->valuestring[0]) {
      if (!(docs[n] = strdup(t->valuestring)))
        rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
      else
        lens[n] = strlen(docs[n]), n++;
    }
    cJSON_Delete(rec);
    if (!rc && n == BATCH) {
      rc = fn(docs, lens, n, ctx, err);
      for (size_t i = 0; i < n; i++)
        free(docs[i]);
      *count += n;
      n = 0;
    }
  }
  if (!rc && n)
    rc = fn(docs, lens, n, ctx, err);
  *count += n;
  for (size_t i = 0; docs && i < n; i++)
    free(docs[i]);
  free(docs);
  free(lens);
  ds_jsonl_close(&j);
  return rc;
}

/* The documents one per line, their own line ends kept (the tokenizer
 * reads the file whole). */
static int docs_to_text(char *const *docs, const size_t *lens, size_t n, void *ctx, dfpo_err *err) {
  (void)err;
  for (size_t i = 0; i < n; i++) {
    fwrite(docs[i], 1, lens[i], ctx);
    fputc('\n', ctx);
  }
  return DFPO_OK;
}

typedef struct ids_out {
  tok_tokenizer *tok;
  FILE *fp;
} ids_out;

/* Each document as a line of token ids ending in end-of-text. */
static int docs_to_ids(char *const *docs, const size_t *lens, size_t n, void *ctx, dfpo_err *err) {
  ids_out *o = ctx;
  tok_ids *v = calloc(n, sizeof *v);
  if (!v)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  int rc = tok_encode_many(o->tok, (const char *const *)docs, lens, n, 0, v, err);
  for (size_t i = 0; i < n; i++) {
    for (size_t k = 0; !rc && k < v[i].n; k++)
      fprintf(o->fp, "%d ", (int)v[i].ids[k]);
    if (!rc)
      fprintf(o->fp, "%d\n", (int)tok_eot_id(o->tok));
    tok_ids_free(&v[i]);
  }
  free(v);
  return rc;
}

/* Writes path atomically from the documents of the split files in dir
 * (names NULL-terminated; absent ones skipped) through fn. */
static int write_docs(const char *dir, const char *const *names, const char *path, docs_fn fn,
                      tok_tokenizer *tok, size_t *count, dfpo_err *err) {
  dfpo_atomic a;
  int rc = dfpo_atomic_open(&a, path, err);
  if (rc)
    return rc;
  ids_out o = {tok, a.fp};
  char src[4400];
  *count = 0;
  for (int i = 0; !rc && names[i]; i++) {
    suite_fmt(src, sizeof src, "%s/%s", dir, names[i]);
    if (repro_exists(src) || i == 0) /* the first file is required */
      rc = each_doc_batch(src, fn, tok ? (void *)&o : (void *)a.fp, count, err);
  }
  if (rc) {
    dfpo_atomic_abort(&a);
    return rc;
  }
  return dfpo_atomic_commit(&a, err);
}

/* The start of a tokenizer step: its key (the config's keys, the data
 * digest, the recipe <task>-<kind>-1) into *key and tokkey, its folder
 * bases/<task>-<kind>-<key> into dir, b->tok and the stamp path; its lock
 * taken. *reused when the stamp is there (said; the lock is then released
 * and *key freed, as on failure). */
static int tok_step_open(const task_def *d, task_base *b, const char *cache,
                         const char *const *keys, const char *digest, const char *kind, char *dir,
                         size_t ndir, char *tokkey, char *stamp, size_t nstamp, char **key,
                         dfpo_lock *lk, int *reused, dfpo_err *err) {
  const char *const *lists[] = {keys, NULL};
  const char *extra[] = {"data_sha256", digest, NULL};
  char recipe[64];
  suite_fmt(recipe, sizeof recipe, "%s-%s-1", d->name, kind);
  *reused = 0;
  if (!(*key = key_json(b->conf, lists, extra, recipe)))
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  key_hex(*key, tokkey);
  suite_fmt(dir, ndir, "%s/bases/%s-%s-%s", cache, d->name, kind, tokkey);
  suite_fmt(b->tok, sizeof b->tok, "%s/tok", dir);
  suite_fmt(stamp, nstamp, "%s/tok.json", dir);
  int rc = cache_lock(lk, dir, stamp, err);
  *reused = !rc && repro_exists(stamp);
  if (*reused)
    dfpo_info("reproduce: %s tokenizer: reusing %s", d->name, dir);
  if (rc || *reused) {
    dfpo_lock_release(lk);
    free(*key);
    *key = NULL;
  }
  return rc;
}

/* Step 2: the tokenizer, trained on the training documents, and the
 * pretraining corpus as token ids (unsup.jsonl and train.jsonl;
 * validation.jsonl for validation), in bases/<task>-tok-<key of the data and
 * the vocabulary>/. */
static int text_tokenizer(const task_def *d, task_base *b, const char *cache, const char *splits,
                          const char *digest, char *dir, size_t ndir, char *tokkey, dfpo_err *err) {
  const cfg *c = b->conf;
  char stamp[1600], corpus[1600], tokdone[1600], train_ids[1600], val_ids[1600], *key;
  dfpo_lock lk = {0};
  int reused, rc = tok_step_open(d, b, cache, tok_keys, digest, "tok", dir, ndir, tokkey, stamp,
                                 sizeof stamp, &key, &lk, &reused, err);
  if (rc || reused)
    return rc;
  double t0 = dfpo_now();
  int64_t vocab;
  if ((rc = cfg_get_int(c, "tokenizer.vocab_size", &vocab, err)) || (rc = dfpo_mkdirs(dir, err))) {
    dfpo_lock_release(&lk);
    free(key);
    return rc;
  }
  suite_fmt(corpus, sizeof corpus, "%s/corpus.txt", dir);
  suite_fmt(tokdone, sizeof tokdone, "%s/tok/vocab.bpe", dir);
  suite_fmt(train_ids, sizeof train_ids, "%s/train.ids", dir);
  suite_fmt(val_ids, sizeof val_ids, "%s/val.ids", dir);
  static const char *const tr[] = {"train.jsonl", NULL};
  static const char *const pre[] = {"train.jsonl", "unsup.jsonl", NULL};
  static const char *const va[] = {"validation.jsonl", NULL};
  size_t n_tok = 0, n_train = 0, n_val = 0;
  tok_tokenizer *tok = NULL;
  if (!repro_exists(corpus)) {
    dfpo_info("reproduce: %s tokenizer: writing the training documents to %s", d->name, corpus);
    rc = write_docs(splits, tr, corpus, docs_to_text, NULL, &n_tok, err);
  }
  if (!rc && !repro_exists(tokdone)) {
    dfpo_info("reproduce: %s tokenizer: training a %lld-token BPE on %s", d->name, (long long)vocab,
              corpus);
    const char *files[1] = {corpus};
    rc = train_tokenizer(dir, files, 1, vocab, err);
  }
  if (!rc)
    rc = tok_load(&tok, b->tok, err);
  if (!rc && !repro_exists(train_ids)) {
    dfpo_info("reproduce: %s tokenizer: encoding the pretraining corpus (train, unsup)", d->name);
    rc = write_docs(splits, pre, train_ids, docs_to_ids, tok, &n_train, err);
  }
  if (!rc && !repro_exists(val_ids))
    rc = write_docs(splits, va, val_ids, docs_to_ids, tok, &n_val, err);
  if (!rc) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "config", cJSON_Parse(key));
    cJSON_AddNumberToObject(o, "vocab", (double)tok_vocab_size(tok));
    cJSON_AddStringToObject(o, "splits", splits);
    if (n_train)
      cJSON_AddNumberToObject(o, "pretrain_documents", (double)n_train);
    if (n_val)
      cJSON_AddNumberToObject(o, "validation_documents", (double)n_val);
    cJSON_AddNumberToObject(o, "seconds", dfpo_now() - t0);
    rc = cfg_json_write(stamp, o, err);
    cJSON_Delete(o);
  }
  tok_free(tok);
  free(key);
  dfpo_lock_release(&lk);
  return rc;
}

/* Step 4: the judge the task scores with (its row's judge; none: done).
 * task.judge.<judge> when set; else judges/<judge>-<key of the data and
 * judge.max_texts> in the cache, trained as `dfpo judge train <judge>` does
 * when absent. The cells get its folder as task.judge.<judge>. None when
 * a Hugging Face classifier or the Perspective API replaces it
 * (task_judge_replaced; the cells score with that). */
static int text_judge(const task_def *d, task_base *b, const char *cache, const char *splits,
                      int from_cache, const char *digest, dfpo_err *err) {
  const cfg *c = b->conf;
  if (!d->judge)
    return DFPO_OK;
  const char *jn = d->judge->name, *given;
  char jkey[96], recipe[128];
  suite_fmt(jkey, sizeof jkey, "task.judge.%s", jn);
  int64_t limit;
  int rc;
  int hf;
  if ((rc = cfg_get_str(c, jkey, &given, err)) ||
      (rc = cfg_get_int(c, "judge.max_texts", &limit, err)) ||
      (rc = task_judge_replaced(c, jn, &hf, err)))
    return rc;
  if (hf) { /* the cells score with it: no trained judge to make */
    b->judge[0] = '\0';
    dfpo_info("reproduce: %s judge: %s_model or the API replaces the trained %s judge", d->name,
              jkey, jn);
    return DFPO_OK;
  }
  if (given[0]) {
    if ((rc = dfpo_path_fmt(b->judge, sizeof b->judge, err, "%s", given)))
      return rc;
    dfpo_info("reproduce: %s judge: %s (%s)", d->name, given, jkey);
    return DFPO_OK;
  }
  static const char *const max_keys[] = {"judge.max_texts", NULL};
  const char *const *lists[] = {max_keys, NULL};
  const char *extra[] = {"data_sha256", digest, NULL};
  suite_fmt(recipe, sizeof recipe, "%s-judge-1 (dfpo judge train defaults)", jn);
  char *key = key_json(c, lists, extra, recipe);
  if (!key)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  char hex[65], card[2400];
  key_hex(key, hex);
  free(key);
  suite_fmt(b->judge, sizeof b->judge, "%s/judges/%s-%s", cache, jn, hex);
  suite_fmt(card, sizeof card, "%s/card.json", b->judge);
  dfpo_lock lk = {0};
  if ((rc = cache_lock(&lk, b->judge, card, err)))
    return rc;
  if (repro_exists(card)) { /* written last */
    dfpo_info("reproduce: %s judge: reusing %s", d->name, b->judge);
  } else {
    dfpo_info("reproduce: %s judge: training the %s judge into %s", d->name, jn, b->judge);
    fflush(NULL);
    /* from the cache: the judge's card gets the dataset's version and verdict */
    rc = cmd_judge_train(jn, from_cache ? NULL : splits, b->judge, (size_t)limit, err);
  }
  dfpo_lock_release(&lk);
  return rc;
}

/* model.init pretrain on a task on text (imdb): the data, a BPE trained on
 * the training documents, a GPT-2 pretrained on the unlabelled and training
 * documents (bases/<task>-<key of the tokenizer, the shape and the
 * pretraining>/), and the task's judge; each step kept in the cache and
 * reused, and each resumable (files written whole; the pretraining from
 * its checkpoint). */
/* The suite folder records the base, the tokenizer and the judge its
 * cells used: o (taken over) with them, as <root>/base-<task>.json. */
static int record_base(const task_base *b, cJSON *o, dfpo_err *err) {
  char path[2500];
  cJSON_AddStringToObject(o, "model", b->model);
  cJSON_AddStringToObject(o, "tokenizer", b->tok);
  cJSON_AddStringToObject(o, "judge", b->judge);
  int rc = dfpo_path_fmt(path, sizeof path, err, "%s/base-%s.json", b->root, b->task);
  if (!rc)
    rc = cfg_json_write(path, o, err);
  cJSON_Delete(o);
  return rc;
}

/* The split files a text task's base and judge are keyed on. */
static const char *const split_files[] = {"train.jsonl", "validation.jsonl", "unsup.jsonl", NULL};

/* The splits and the judge of a task on a dataset, for bases that are not
 * pretrained on them (repro_base_text does the same in its own order). */
static int data_and_judge(const task_def *d, task_base *b, dfpo_err *err) {
  if (!d || !d->dataset)
    return DFPO_OK;
  char cache[1024], splits[4096], digest[65];
  int rc, from_cache = 0;
  if ((rc = dfpo_cache_dir(cache, sizeof cache, err)) ||
      (rc = text_splits(d, b, splits, sizeof splits, &from_cache, err)) ||
      (rc = splits_digest(splits, split_files, digest, err)))
    return rc;
  return text_judge(d, b, cache, splits, from_cache, digest, err);
}

/* Step 3 of a text task's base, and the judge: `dfpo pretrain --config` on
 * the tokenizer folder's corpus files train and val (in tokdir) with the
 * config's model keys (lists), in bases/<task>-<kind><key of the
 * tokenizer's key and those keys>/ (recipe <task>-<kind>base-1); arch
 * (may be NULL) is recorded in the stamp. Then the suite folder's
 * base-<task>.json. */
static int pretrained_base(const task_def *d, task_base *b, const char *cache, const char *splits,
                           const char *digest, int from_cache, const char *tokdir,
                           const char *tokkey, const char *const *const *lists, const char *kind,
                           const char *train, const char *val, const char *arch, dfpo_err *err) {
  const cfg *c = b->conf;
  const char *extra[] = {"tokenizer_key", tokkey, NULL};
  char recipe[64], what[96], dir[1400], stamp[1600], path[1600];
  int rc;
  suite_fmt(recipe, sizeof recipe, "%s-%sbase-1", d->name, kind);
  suite_fmt(what, sizeof what, "%s base model", d->name);
  char *key = key_json(c, lists, extra, recipe);
  if (!key)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  char hex[65];
  key_hex(key, hex);
  suite_fmt(dir, sizeof dir, "%s/bases/%s-%s%s", cache, d->name, kind, hex);
  suite_fmt(b->model, sizeof b->model, "%s/base.ckpt", dir);
  suite_fmt(stamp, sizeof stamp, "%s/base.json", dir);
  dfpo_lock lk = {0};
  if ((rc = cache_lock(&lk, dir, stamp, err))) {
    /* nothing to release */
  } else if (repro_exists(stamp)) {
    dfpo_info("reproduce: %s: reusing %s", what, dir);
  } else if (!(rc = dfpo_mkdirs(dir, err))) {
    dfpo_info("reproduce: %s: preparing %s", what, dir);
    double t0 = dfpo_now();
    char train_path[1600], val_path[1600], pre[1600];
    suite_fmt(train_path, sizeof train_path, "%s/%s", tokdir, train);
    suite_fmt(val_path, sizeof val_path, "%s/%s", tokdir, val);
    suite_fmt(pre, sizeof pre, "%s/pretrain", dir);
    tok_tokenizer *tok = NULL;
    size_t V = 0;
    if (!(rc = tok_load(&tok, b->tok, err)))
      V = tok_vocab_size(tok);
    tok_free(tok);
    if (!rc)
      rc = pretrain_child(c, what, b->tok, train_path, val_path, pre, b->model, err);
    if (!rc) {
      suite_fmt(path, sizeof path, "%s/train.jsonl", pre);
      double vl = last_val_loss(path);
      cJSON *o = cJSON_CreateObject();
      cJSON_AddItemToObject(o, "config", cJSON_Parse(key));
      if (arch)
        cJSON_AddStringToObject(o, "arch", arch);
      cJSON_AddNumberToObject(o, "vocab", (double)V);
      cJSON_AddStringToObject(o, "data_sha256", digest);
      cJSON_AddStringToObject(o, "splits", splits);
      if (isfinite(vl))
        cJSON_AddNumberToObject(o, "val_loss_per_token", vl);
      cJSON_AddNumberToObject(o, "seconds", dfpo_now() - t0);
      rc = cfg_json_write(stamp, o, err);
      cJSON_Delete(o);
    }
  }
  free(key);
  dfpo_lock_release(&lk);
  if (rc || (rc = text_judge(d, b, cache, splits, from_cache, digest, err)))
    return rc;
  cJSON *o;
  if ((rc = cfg_json_read(stamp, &o, err)))
    return rc;
  return record_base(b, o, err);
}

int repro_base_text(const task_def *d, task_base *b, dfpo_err *err) {
  char cache[1024], splits[4096], digest[65], tokdir[1400], tokkey[65];
  int rc, from_cache = 0;
  if ((rc = dfpo_cache_dir(cache, sizeof cache, err)) ||
      (rc = text_splits(d, b, splits, sizeof splits, &from_cache, err)) ||
      (rc = splits_digest(splits, split_files, digest, err)) ||
      (rc = text_tokenizer(d, b, cache, splits, digest, tokdir, sizeof tokdir, tokkey, err)))
    return rc;
  const char *const *lists[] = {model_keys, NULL};
  return pretrained_base(d, b, cache, splits, digest, from_cache, tokdir, tokkey, lists, "",
                         "train.ids", "val.ids", NULL, err);
}

/* ----------------------------------------------------- the T5 (commongen) */

/* What a T5 base depends on besides the tokenizer: the shape, the
 * architecture and the pretraining (model_keys and T5's own). */
static const char *const t5_keys[] = {"model.arch",
                                      "model.t5.d_kv",
                                      "model.t5.d_ff",
                                      "model.t5.decoder_layers",
                                      "model.t5.num_buckets",
                                      "model.t5.max_distance",
                                      "model.t5.feed_forward",
                                      "pretrain.span_fraction",
                                      "pretrain.eval_batches",
                                      NULL};
/* The task items a T5 base is made from (task.max_items caps them). */
static const char *const t5_tok_keys[] = {"tokenizer.vocab_size", "task.max_items", NULL};

/* s on one line: tabs and line ends as spaces (a pairs file's fields). */
static void put_field(FILE *fp, const char *s) {
  for (; *s; s++)
    fputc(*s == '\t' || *s == '\n' || *s == '\r' ? ' ' : *s, fp);
}

/* The pairs of a split, "prompt<TAB>reference" for each of an item's
 * references (its one reference where it has no list), atomically into
 * path; the references alone, one a line, when refs_only (the tokenizer's
 * corpus). *count gets the lines. */
static int write_pairs(const task *t, int split, int refs_only, const char *path, size_t *count,
                       dfpo_err *err) {
  dfpo_atomic a;
  int rc = dfpo_atomic_open(&a, path, err);
  if (rc)
    return rc;
  *count = 0;
  for (size_t i = 0; i < t->n[split]; i++) {
    const task_item *it = &t->items[split][i];
    size_t nr = it->n_refs ? it->n_refs : 1;
    for (size_t k = 0; k < nr; k++) {
      const char *ref = it->n_refs ? it->refs[k] : it->reference;
      if (!ref || !ref[0])
        continue;
      if (!refs_only) {
        put_field(a.fp, it->prompt);
        fputc('\t', a.fp);
      }
      put_field(a.fp, ref);
      fputc('\n', a.fp);
      ++*count;
    }
  }
  return dfpo_atomic_commit(&a, err);
}

/* Step 2 of a T5 base: a SentencePiece model (T5's ids and 100 extra ids)
 * trained on the training references, and the pretraining pairs (the
 * training split's, the validation split's for validation) as text in
 * bases/<task>-spm-<key of the data, the vocabulary and task.max_items>/. */
static int t5_tokenizer(const task_def *d, task_base *b, const char *cache, const char *digest,
                        char *dir, size_t ndir, char *tokkey, dfpo_err *err) {
  const cfg *c = b->conf;
  char stamp[1600], corpus[1600], tmp[1600], train[1600], val[1600], *key;
  dfpo_lock lk = {0};
  int reused, rc = tok_step_open(d, b, cache, t5_tok_keys, digest, "spm", dir, ndir, tokkey, stamp,
                                 sizeof stamp, &key, &lk, &reused, err);
  if (rc || reused)
    return rc;
  double t0 = dfpo_now();
  int64_t vocab;
  task t;
  memset(&t, 0, sizeof t);
  size_t n_corpus = 0, n_train = 0, n_val = 0;
  tok_tokenizer *tok = NULL;
  suite_fmt(corpus, sizeof corpus, "%s/corpus.txt", dir);
  suite_fmt(tmp, sizeof tmp, "%s/tok.tmp", dir);
  suite_fmt(train, sizeof train, "%s/train.tsv", dir);
  suite_fmt(val, sizeof val, "%s/val.tsv", dir);
  if (!(rc = cfg_get_int(c, "tokenizer.vocab_size", &vocab, err)) &&
      !(rc = dfpo_mkdirs(dir, err)) && !(rc = task_open(d->name, c, &t, err)) &&
      !(rc = write_pairs(&t, TASK_TRAIN, 1, corpus, &n_corpus, err)) &&
      !(rc = write_pairs(&t, TASK_TRAIN, 0, train, &n_train, err)) &&
      !(rc = write_pairs(&t, TASK_VALIDATION, 0, val, &n_val, err))) {
    dfpo_info("reproduce: %s tokenizer: training a %lld-piece SentencePiece model on %zu "
              "training references (%s)",
              d->name, (long long)vocab, n_corpus, corpus);
    if (!(rc = suite_rmtree(tmp, err)) &&
        !(rc = tok_train_spm(corpus, (size_t)vocab, 100, tmp, err)) &&
        !(rc = suite_rmtree(b->tok, err)) && rename(tmp, b->tok) != 0)
      rc = dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot rename", tmp);
  }
  task_free(&t);
  if (!rc)
    rc = tok_load(&tok, b->tok, err);
  if (!rc) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "config", cJSON_Parse(key));
    cJSON_AddNumberToObject(o, "vocab", (double)tok_vocab_size(tok));
    cJSON_AddNumberToObject(o, "pretrain_pairs", (double)n_train);
    cJSON_AddNumberToObject(o, "validation_pairs", (double)n_val);
    cJSON_AddNumberToObject(o, "seconds", dfpo_now() - t0);
    rc = cfg_json_write(stamp, o, err);
    cJSON_Delete(o);
  }
  tok_free(tok);
  free(key);
  dfpo_lock_release(&lk);
  return rc;
}

int repro_base_t5(const task_def *d, task_base *b, dfpo_err *err) {
  char cache[1024], splits[4096], digest[65], tokdir[1400], tokkey[65];
  const char *arch;
  int rc, from_cache = 0;
  if ((rc = cfg_get_str(b->conf, "model.arch", &arch, err)))
    return rc;
  if (strcmp(arch, "t5"))
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "base model: the %s task's pretrained base is a T5 (source/target "
                        "pairs): set model.arch=t5",
                        d->name);
  if ((rc = dfpo_cache_dir(cache, sizeof cache, err)) ||
      (rc = text_splits(d, b, splits, sizeof splits, &from_cache, err)) ||
      (rc = splits_digest(splits, split_files, digest, err)) ||
      (rc = t5_tokenizer(d, b, cache, digest, tokdir, sizeof tokdir, tokkey, err)))
    return rc;
  const char *const *lists[] = {model_keys, t5_keys, NULL};
  return pretrained_base(d, b, cache, splits, digest, from_cache, tokdir, tokkey, lists, "t5-",
                         "train.tsv", "val.tsv", "t5", err);
}

/* ------------------------------------------------------ imported bases */

/* The asset folder `folder` (<cache>/assets/<folder>, docs/datasets.md)
 * into dir, after verifying every manifest entry that fills it: each must
 * be in the cache and unchanged since its import (ds_verify), and is placed
 * in the folder again (ds_asset_place: cheap, and it mends a folder made by
 * hand or before folders existed). A missing entry names the `dfpo fetch`
 * to run, or, when the manifest does not pin it, what to do instead. */
static int asset_folder(const char *folder, char *dir, size_t n, dfpo_err *err) {
  ds_manifest m;
  int rc = ds_manifest_load(&m, NULL, err);
  if (rc)
    return rc;
  char names[512] = "";
  for (size_t i = 0; i < m.n; i++)
    if (m.entries[i].folder && !strcmp(m.entries[i].folder, folder)) {
      size_t l = strlen(names);
      suite_fmt(names + l, sizeof names - l, "%s%s", l ? " " : "", m.entries[i].name);
    }
  if (!names[0])
    rc = dfpo_err_set(err, DFPO_EUSAGE, "no manifest entry fills the asset folder '%s'", folder);
  for (size_t i = 0; !rc && i < m.n; i++) {
    const ds_entry *e = &m.entries[i];
    if (!e->folder || strcmp(e->folder, folder))
      continue;
    ds_stamp st;
    dfpo_err e2;
    if (ds_verify(e, &st, &e2) != DFPO_OK) {
      if (!e->pinned)
        rc = dfpo_err_set(err, DFPO_EDATA, "%s: %s", e->name, e->note);
      else
        rc = dfpo_err_set(err, DFPO_EDATA, "%s (the asset folder %s needs `dfpo fetch %s`)", e2.msg,
                          folder, names);
    } else {
      if (!st.verified)
        dfpo_warn("reproduce: %s %s in the cache is UNVERIFIED (imported with --unverified)",
                  e->name, e->version);
      rc = ds_asset_place(e, err);
    }
  }
  ds_manifest_free(&m);
  return rc ? rc : ds_asset_dir(folder, dir, n, err);
}

/* A policy in Hugging Face layout: path is a folder holding config.json
 * and its weights (model_hf_weights: model.safetensors, its shards, or
 * pytorch_model.bin, read as torch.save's zip format by trainer/pt_read.c),
 * or a weights file itself (model.path's older form). config.json names a
 * policy architecture the engine has: gpt2 (also when it names none, with
 * n_layer, n_head and n_embd), t5 (the encoder-decoder, RL4LMs' CommonGen
 * policy), or a rotary decoder (gptj, gpt_neox, llama). model receives the
 * weights file, arch the model_type ("" for a weights file given alone). */
static int hf_policy(const char *path, char *model, size_t n, char arch[32], dfpo_err *err) {
  struct stat st;
  if (stat(path, &st) != 0)
    return dfpo_err_errno(err, DFPO_EDATA, errno, "base model: %s", path);
  if (!S_ISDIR(st.st_mode))
    return dfpo_path_fmt(model, n, err, "%s", path);
  char cpath[2400];
  int rc;
  if ((rc = dfpo_path_fmt(cpath, sizeof cpath, err, "%s/config.json", path)))
    return rc;
  if (model_hf_weights(path, model, n, err))
    return dfpo_err_prefix(err, "base model (a policy in Hugging Face layout is config.json and "
                                "its weights; docs/datasets.md)");
  cJSON *o = NULL;
  if ((rc = cfg_json_read(cpath, &o, err)))
    return dfpo_err_prefix(err, "base model: %s is not a Hugging Face model folder", path);
  const cJSON *mt = cJSON_GetObjectItemCaseSensitive(o, "model_type");
  const char *type = cJSON_IsString(mt) ? mt->valuestring : NULL;
  if (mt && !type)
    rc = dfpo_err_set(err, DFPO_EDATA, "base model: %s: model_type is not a string", cpath);
  else if (type && strcmp(type, "gpt2") && !t5_handles(type) && !rdec_handles(type))
    rc = dfpo_err_set(err, DFPO_EDATA,
                      "base model: %s: model_type \"%s\" is not a policy the engine trains "
                      "(gpt2, t5, gptj, gpt_neox, llama)",
                      cpath, type);
  if (!rc)
    suite_fmt(arch, 32, "%s", type ? type : "gpt2");
  const char *need[] = {"n_layer", "n_head", "n_embd"};
  for (int i = 0; !rc && (!type || !strcmp(type, "gpt2")) && i < 3; i++)
    if (!cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(o, need[i])))
      rc = dfpo_err_set(err, DFPO_EDATA, "base model: %s: no %s (not a GPT-2 config)", cpath,
                        need[i]);
  cJSON_Delete(o);
  return rc;
}

/* The config.json of an asset folder that the manifest pins only the
 * weights of (gpt2-124m): written from the suite's model.* shape with GPT-2's
 * vocabulary; the import checks every tensor's shape against it. */
static int shape_config(const cfg *c, const char *dir, dfpo_err *err) {
  char path[2400];
  int rc = dfpo_path_fmt(path, sizeof path, err, "%s/config.json", dir);
  if (rc || repro_exists(path))
    return rc;
  int64_t L, H, E, T;
  if ((rc = cfg_get_int(c, "model.n_layer", &L, err)) ||
      (rc = cfg_get_int(c, "model.n_head", &H, err)) ||
      (rc = cfg_get_int(c, "model.n_embd", &E, err)) ||
      (rc = cfg_get_int(c, "model.block_size", &T, err)))
    return rc;
  char text[512];
  suite_fmt(text, sizeof text,
            "{\"model_type\": \"gpt2\", \"n_layer\": %lld, \"n_head\": %lld, \"n_embd\": %lld, "
            "\"n_positions\": %lld, \"vocab_size\": 50257}\n",
            (long long)L, (long long)H, (long long)E, (long long)T);
  dfpo_info("reproduce: %s: written from the suite's model.* (the manifest pins the weights only)",
            path);
  return dfpo_atomic_write_file(path, text, strlen(text), err);
}

/* The source of task tname's base in model.bases ("TASK=SOURCE"), or NULL. Every
 * item is checked: "TASK=SOURCE" with a task of the registry. */
static int bases_entry(const cfg *c, const char *tname, const char **src, dfpo_err *err) {
  int n, rc = cfg_get_list_len(c, "model.bases", &n, err);
  *src = NULL;
  for (int i = 0; !rc && i < n; i++) {
    const char *it;
    if ((rc = cfg_get_list_str(c, "model.bases", i, &it, err)))
      break;
    const char *eq = strchr(it, '=');
    char name[64];
    suite_fmt(name, sizeof name, "%.*s", eq ? (int)(eq - it) : 0, it);
    if (!eq || !eq[1] || !task_find(name))
      return dfpo_err_set(err, DFPO_EUSAGE,
                          "model.bases: '%s' is not \"TASK=SOURCE\" with a task and an asset "
                          "folder or a folder",
                          it);
    if (!strcmp(name, tname))
      *src = eq + 1;
  }
  return rc;
}

/* model.init import: the base policy of the task is model.bases' source for
 * it, else model.path, else the asset folder gpt2-124m; a source without '/'
 * names an asset folder the cache fills (`dfpo fetch`), one with '/' is a
 * folder of the user's or a hub name (cli_model_path; hf_policy checks the
 * folder). The tokenizer is tokenizer.path,
 * else the base's folder when it holds tokenizer files, else the asset
 * folder gpt2-tokenizer. Then the task's data and judge. */
static int imported_base(task_base *b, const char *model, const char *tok, dfpo_err *err) {
  const cfg *c = b->conf;
  const task_def *d = task_find(b->task);
  const char *src;
  char dir[2400] = "";
  int rc = bases_entry(c, b->task, &src, err);
  if (rc)
    return rc;
  if (!src)
    src = model[0] ? model : "gpt2-124m";
  if (strchr(src, '/')) {
    rc = cli_model_path(src, dir, sizeof dir, err); /* a folder, or a hub name */
  } else if (!(rc = asset_folder(src, dir, sizeof dir, err))) {
    rc = shape_config(c, dir, err);
  }
  char arch[32] = "";
  if (rc || (rc = hf_policy(dir, b->model, sizeof b->model, arch, err)))
    return rc;
  dfpo_info("reproduce: %s base model: %s", b->task, b->model);
  tok_tokenizer *t = NULL;
  dfpo_err e2;
  struct stat st;
  if (tok[0]) {
    rc = dfpo_path_fmt(b->tok, sizeof b->tok, err, "%s", tok);
  } else if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode) && tok_load(&t, dir, &e2) == DFPO_OK) {
    rc = dfpo_path_fmt(b->tok, sizeof b->tok, err, "%s", dir); /* the model's own */
  } else {
    rc = asset_folder("gpt2-tokenizer", b->tok, sizeof b->tok, err);
  }
  tok_free(t);
  if (rc || (rc = data_and_judge(d, b, err)))
    return rc;
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "init", "import");
  if (arch[0])
    cJSON_AddStringToObject(o, "arch", arch);
  return record_base(b, o, err);
}

/* What the language's own continuations of the test prompts (the rest of
 * each document) score: the scale against which the policies' fluency is
 * read. Added to o as "reference_continuations". */
static int reference_scores(const cfg *c, cJSON *o, dfpo_err *err) {
  task t;
  task_synth_params p;
  int64_t maxp;
  memset(&t, 0, sizeof t);
  int rc = task_synth_params_from_cfg(c, &p, err);
  if (rc || (rc = cfg_get_int(c, "eval.max_prompts", &maxp, err)))
    return rc;
  p.n[TASK_TRAIN] = 0; /* only the test documents are needed */
  if ((rc = task_synth_init(&t, &p, err)))
    return rc;
  size_t n = t.n[TASK_TEST];
  if (maxp > 0 && (size_t)maxp < n)
    n = (size_t)maxp;
  double sum[TASK_MAX_METRICS] = {0};
  for (size_t i = 0; !rc && i < n; i++) {
    const task_item *it = &t.items[TASK_TEST][i];
    size_t np = strlen(it->prompt);
    const char *cont = it->reference + np;
    if (strncmp(it->reference, it->prompt, np) != 0) {
      rc = dfpo_err_set(err, DFPO_ERUNTIME, "synthetic: a prompt is not a prefix of its document");
      break;
    }
    double v[TASK_MAX_METRICS];
    /* the continuation keeps its leading space, as a policy's does: the
     * score joins prompt and continuation as they are */
    if ((rc = t.score(&t, it, cont, v, err)))
      break;
    for (int m = 0; m < t.n_metrics; m++)
      sum[m] += v[m] / (double)n;
  }
  if (!rc) {
    cJSON *ref = cJSON_AddObjectToObject(o, "reference_continuations");
    cJSON_AddNumberToObject(ref, "prompts", (double)n);
    for (int m = 0; m < t.n_metrics; m++)
      cJSON_AddNumberToObject(ref, t.metric_names[m], sum[m]);
  }
  task_free(&t);
  return rc;
}

/* The base model and tokenizer of task ti, prepared or reused. A failure is
 * kept per task: that task's cells fail with it, the others go on. */
int repro_prepare_base(task_base *b, dfpo_err *err) {
  const char *init, *model, *tok;
  int rc;
  if ((rc = cfg_get_str(&*b->conf, "model.init", &init, err)) ||
      (rc = cfg_get_str(&*b->conf, "model.path", &model, err)) ||
      (rc = cfg_get_str(&*b->conf, "tokenizer.path", &tok, err)))
    return rc;
  const char *given;
  if ((rc = bases_entry(b->conf, b->task, &given, err))) /* checked whatever model.init is */
    return rc;
  if (!strcmp(init, "import"))
    return imported_base(b, model, tok, err);
  if (strcmp(init, "pretrain")) {
    if (!model[0] || !tok[0])
      return dfpo_err_set(err, DFPO_EUSAGE,
                          "model.init %s needs model.path and tokenizer.path (for GPT-2 124M: "
                          "its model.safetensors and the folder of its tokenizer files)",
                          init);
    if ((rc = cli_model_path(model, b->model, sizeof b->model, err)))
      return dfpo_err_prefix(err, "base model");
    if (!repro_exists(tok))
      return dfpo_err_set(err, DFPO_EDATA, "base model: %s does not exist", tok);
    return dfpo_path_fmt(b->tok, sizeof b->tok, err, "%s", tok);
  }
  const task_def *d = task_find(b->task);
  if (d && d->base)
    return d->base(d, b, err);
  char built[256] = "";
  for (int i = 0; task_def_at(i); i++)
    if (task_def_at(i)->base) {
      size_t l = strlen(built);
      suite_fmt(built + l, sizeof built - l, "%s%s", l ? ", " : "", task_def_at(i)->name);
    }
  return dfpo_err_set(err, DFPO_EUSAGE,
                      "base model: pretraining on the corpus of task '%s' is not built yet "
                      "(%s are); set model.init to import or checkpoint",
                      b->task, built);
}