#define _XOPEN_SOURCE 700 /* realpath */
/* dfpo reproduce: a whole suite (docs/suites.md). Data and base model first
 * (cached under a key of their config), then every (task, variant, seed)
 * cell, then the report.
 *
 * Each cell runs `dfpo train` as a child process of /proc/self/exe rather
 * than in this process: a cell that fails (an algorithm not built yet, a
 * non-finite loss, an abort, running out of memory) is recorded and the rest
 * go on; every cell starts with fresh process state (getopt, the engine's
 * arenas, the interrupt flag) and gives its memory back; its messages go to
 * its own log; and the command line is the same one a Slurm array task
 * runs. Starting a process costs milliseconds against seconds to hours of
 * training. */
#include "datasets/datasets.h"
#include "harness/cli.h"
#include "harness/suite.h"
#include "harness/task.h"
#include "trainer/device.h"
#include "trainer/gpt2.h"
#include "trainer/model.h"
#include "trainer/optim.h"
#include "trainer/rl.h"
#include "trainer/sample.h"
#include "trainer/tok.h"
#include <stdlib.h>

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char reproduce_usage[] =
    "Usage: dfpo reproduce [--suite NAME | --config FILE] [--out DIR] [--set k=v]...\n"
    "                      [--emit slurm] [--max-cells N] [--cell I] [--prepare-only]\n"
    "                      [--device D]\n"
    "\n"
    "Runs a suite end to end into DIR/<suite.name>/: the task data and the base\n"
    "model (model.init pretrain: the task corpus, a BPE tokenizer trained on it\n"
    "and a GPT-2 pretrained on it, cached in $DFPO_HOME/bases/ under a key of\n"
    "their config and reused), then every (task, algorithm, seed) cell with\n"
    "`dfpo train` in a child process, then `dfpo report`. It is resumable: cells\n"
    "with DONE are skipped, an interrupted cell goes on from its last resumable\n"
    "checkpoint (`dfpo train` writes one every train.eval_every iterations),\n"
    "the base model's pretraining from its checkpoint. A cell that fails (for\n"
    "example an algorithm not built yet) is recorded with its reason and the\n"
    "others go on; the report lists it as missing and the exit status is 3.\n"
    "\n"
    "Options:\n"
    "  --suite NAME      configs/NAME.json (smoke, imdb-small, paper; looked up in\n"
    "                    ./configs, then in the source tree's configs/)\n"
    "  --config FILE     a suite config file instead\n"
    "  --out DIR         root of the suite folders (default: out)\n"
    "  -s, --set k=v     override a config key (repeatable)\n"
    "  --device D        the device key: auto (the default), cpu or cuda, for the\n"
    "                    base model's pretraining and every cell. auto runs on\n"
    "                    CUDA when a device is usable, else on the CPU with a\n"
    "                    warning that says why; cuda fails at once with the\n"
    "                    driver's reason when none is. The CUDA backend has not\n"
    "                    yet run on a real GPU (docs/cuda.md): cpu is the\n"
    "                    tested path. Slurm scripts ask for a GPU when it is cuda\n"
    "  --emit slurm      write DIR/<suite>/slurm/ (a preparation job, a job array\n"
    "                    with one task per cell, a report job, submit.sh) and run\n"
    "                    nothing\n"
    "  --max-cells N     run at most N cells this time, then stop (exit 130)\n"
    "  --cell I          run only cell I (0-based, tasks outermost, seeds\n"
    "                    innermost), as a Slurm array task does; no report\n"
    "  --prepare-only    prepare the data and base models, run no cell\n"
    "  -h, --help        show this help\n"
    "\n"
    "The children (pretraining, cells) run with OMP_WAIT_POLICY=PASSIVE unless\n"
    "it is set: OpenMP threads that spin at barriers while their partner waits\n"
    "for a core made a niced cell beside one busy process 5.5 times slower\n"
    "(docs/suites.md).\n";

typedef struct repro {
  suite s;
  char root[2048];   /* DIR/<suite> */
  char out[2048];    /* DIR */
  char config[2100]; /* root/suite.json */
  char exe[PATH_MAX];
  char (*model)[2300]; /* per task: base model and tokenizer, "" when unprepared */
  char (*tok)[2300];
  char (*judge)[2300];   /* per task: the judge folder the cells get ("" for their own) */
  char (*base_err)[512]; /* per task: why no base model */
  char *status;          /* per cell: '.', 'D' done, 'F' failed, 'R' running, 'S' skipped */
  double t0;
} repro;

static int exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

/* Runs argv[] (argv[0] ignored: /proc/self/exe) with stdout and stderr into
 * log (truncated); returns its exit status (128 + signal when killed). With
 * watch, calls watch(ctx) about once a second while the child runs (to show
 * its progress). */
static int run_child_watch(char *const argv[], const char *log, void (*watch)(void *), void *ctx) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    execv("/proc/self/exe", argv); /* this very binary, even if rebuilt meanwhile */
    _exit(127);
  }
  int st, forwarded = 0;
  for (;;) {
    pid_t got = waitpid(pid, &st, watch ? WNOHANG : 0);
    if (got == pid)
      break;
    if (got < 0 && errno != EINTR)
      return -1;
    /* an interrupt sent to this process alone (not a terminal's Ctrl-C,
     * which reaches the whole group) still stops the cell */
    if (dfpo_interrupted() && !forwarded) {
      kill(pid, SIGINT);
      forwarded = 1;
    }
    if (watch && got == 0) {
      watch(ctx);
      struct timespec ts = {1, 0};
      nanosleep(&ts, NULL); /* an interrupt ends it early */
    }
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int run_child(char *const argv[], const char *log) {
  return run_child_watch(argv, log, NULL, NULL);
}

/* The last "dfpo: error:" line of a log, or its last line. */
static void last_error(const char *log, char *buf, size_t n) {
  FILE *fp = fopen(log, "r");
  buf[0] = '\0';
  if (!fp)
    return;
  char line[1024];
  while (fgets(line, sizeof line, fp)) {
    line[strcspn(line, "\n")] = '\0';
    if (strstr(line, "error:") || !strstr(buf, "error:"))
      suite_fmt(buf, n, "%s", line);
  }
  fclose(fp);
}

static int write_text(const char *path, const char *text, dfpo_err *err) {
  return dfpo_atomic_write_file(path, text, strlen(text), err);
}

/* ------------------------------------------------------------ base model */

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

/* The pretraining keys of the config, as `dfpo pretrain` options. */
typedef struct pt_args {
  char a[16][64];
  const char *schedule;
} pt_args;

static int pt_args_from_cfg(const cfg *c, size_t vocab, pt_args *p, dfpo_err *err) {
  static const char *const ints[] = {"model.n_layer",
                                     "model.n_head",
                                     "model.n_embd",
                                     "model.block_size",
                                     NULL,
                                     "pretrain.steps",
                                     "pretrain.batch_size",
                                     "pretrain.seq_len",
                                     NULL,
                                     NULL,
                                     "pretrain.seed",
                                     "pretrain.eval_every",
                                     "pretrain.ckpt_every",
                                     "pretrain.warmup_steps"};
  static const char *const nums[] = {[8] = "pretrain.lr",
                                     [9] = "pretrain.min_lr",
                                     [14] = "pretrain.weight_decay",
                                     [15] = "pretrain.max_grad_norm"};
  int rc;
  for (int i = 0; i < 16; i++) {
    if (i < 14 && ints[i]) {
      int64_t v;
      if ((rc = cfg_get_int(c, ints[i], &v, err)))
        return rc;
      suite_fmt(p->a[i], 64, "%lld", (long long)v);
    } else if (nums[i]) {
      double d;
      if ((rc = cfg_get_num(c, nums[i], &d, err)))
        return rc;
      suite_fmt(p->a[i], 64, "%.9g", d);
    }
  }
  suite_fmt(p->a[4], 64, "%zu", vocab);
  return cfg_get_str(c, "pretrain.lr_schedule", &p->schedule, err);
}

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

/* `dfpo pretrain` in a child process (its log in log) on token-id files into
 * pre/, resuming from pre/checkpoint.bin when there is one; then the
 * weights alone are saved as model. */
static int pretrain_child(const cfg *c, const char *what, const char *train_ids,
                          const char *val_ids, size_t V, const char *pre, const char *log,
                          const char *model, dfpo_err *err) {
  pt_args p;
  const char *device;
  int rc = pt_args_from_cfg(c, V, &p, err);
  if (rc || (rc = cfg_get_str(c, "device", &device, err)))
    return rc;
  char *argv[] = {"dfpo",
                  "pretrain",
                  "--train",
                  (char *)train_ids,
                  "--val",
                  (char *)val_ids,
                  "--out",
                  (char *)pre,
                  "--n-layer",
                  p.a[0],
                  "--n-head",
                  p.a[1],
                  "--n-embd",
                  p.a[2],
                  "--n-ctx",
                  p.a[3],
                  "--vocab",
                  p.a[4],
                  "--steps",
                  p.a[5],
                  "--batch",
                  p.a[6],
                  "--seq",
                  p.a[7],
                  "--lr",
                  p.a[8],
                  "--min-lr",
                  p.a[9],
                  "--seed",
                  p.a[10],
                  "--eval-every",
                  p.a[11],
                  "--ckpt-every",
                  p.a[12],
                  "--warmup",
                  p.a[13],
                  "--weight-decay",
                  p.a[14],
                  "--clip",
                  p.a[15],
                  "--schedule",
                  (char *)p.schedule,
                  "--device",
                  (char *)device,
                  NULL};
  char jsonl[1700];
  suite_fmt(jsonl, sizeof jsonl, "%s/train.jsonl", pre);
  pt_watch w = {jsonl, what, atof(p.a[5]), dfpo_now(), -1, 0};
  dfpo_info("reproduce: %s: pretraining %s steps (log: %s, progress: %s)", what, p.a[5], log,
            jsonl);
  int st = run_child_watch(argv, log, pt_progress, &w);
  if (st != 0) {
    char why[512];
    last_error(log, why, sizeof why);
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

static int synthetic_base(repro *r, int ti, dfpo_err *err) {
  const cfg *c = &r->s.conf;
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
  suite_fmt(r->model[ti], sizeof r->model[ti], "%s/base.ckpt", dir);
  suite_fmt(r->tok[ti], sizeof r->tok[ti], "%s/tok", dir);
  suite_fmt(stamp, sizeof stamp, "%s/base.json", dir);
  if (exists(stamp)) {
    free(key);
    dfpo_info("reproduce: base model for synthetic: reusing %s", dir);
    goto link;
  }
  dfpo_info("reproduce: base model for synthetic: preparing %s", dir);
  double t0 = dfpo_now();
  if ((rc = dfpo_mkdirs(dir, err))) {
    free(key);
    return rc;
  }
  task t;
  task_synth_params p;
  memset(&t, 0, sizeof t);
  if ((rc = task_synth_params_from_cfg(c, &p, err)) || (rc = task_synth_init(&t, &p, err))) {
    free(key);
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
  if (!exists(corpus) && (rc = task_write_corpus(&t, TASK_TRAIN, corpus, err)))
    goto done;
  if (!exists(tokdone)) {
    const char *files[1] = {corpus};
    if ((rc = train_tokenizer(dir, files, 1, vocab, err)))
      goto done;
  }
  tok_tokenizer *tok = NULL;
  if ((rc = tok_load(&tok, r->tok[ti], err)))
    goto done;
  size_t V = tok_vocab_size(tok);
  if ((!exists(train_ids) && (rc = write_ids(&t, TASK_TRAIN, tok, train_ids, err))) ||
      (!exists(val_ids) && (rc = write_ids(&t, TASK_VALIDATION, tok, val_ids, err)))) {
    tok_free(tok);
    goto done;
  }
  tok_free(tok);
  {
    char pre[1600], log[1600];
    suite_fmt(pre, sizeof pre, "%s/pretrain", dir);
    suite_fmt(log, sizeof log, "%s/pretrain.log", dir);
    if ((rc = pretrain_child(c, "base model for synthetic", train_ids, val_ids, V, pre, log,
                             r->model[ti], err)))
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
  if (rc)
    return rc;
link:
  /* the suite folder records which base its cells used */
  suite_fmt(path, sizeof path, "%s/base-%s.json", r->root, r->s.tasks[ti]);
  {
    cJSON *o;
    if ((rc = cfg_json_read(stamp, &o, err)))
      return rc;
    cJSON_AddStringToObject(o, "model", r->model[ti]);
    cJSON_AddStringToObject(o, "tokenizer", r->tok[ti]);
    if ((rc = reference_scores(c, o, err))) {
      cJSON_Delete(o);
      return rc;
    }
    rc = cfg_json_write(path, o, err);
    cJSON_Delete(o);
  }
  return rc;
}

/* ------------------------------------------------------------ imdb base */

/* Step 1, the data: task.data_dir when set; else the prepared imdb dataset
 * of the cache, prepared from its import when only imported, imported from
 * the local copy of the archive ($DFPO_SHARED_DATA or ../shared/data beside
 * the source tree: imdb/aclImdb.tar.gz) when not in the cache at all. */
static int imdb_splits(const cfg *c, char *dir, size_t n, int *from_cache, dfpo_err *err) {
  const char *dd;
  int rc = cfg_get_str(c, "task.data_dir", &dd, err);
  if (rc)
    return rc;
  *from_cache = !dd[0];
  if (dd[0]) {
    suite_fmt(dir, n, "%s", dd);
    dfpo_info("reproduce: imdb data: the split files in %s (task.data_dir)", dir);
    return DFPO_OK;
  }
  ds_manifest m;
  if ((rc = ds_manifest_load(&m, NULL, err)))
    return rc;
  const ds_entry *e = ds_manifest_find(&m, "imdb");
  ds_prepared p;
  ds_stamp st;
  dfpo_err e2;
  if (!e) {
    rc = dfpo_err_set(err, DFPO_EDATA, "dataset imdb is not in the manifest");
  } else if (ds_prepared_read(e, &p, &e2) == DFPO_OK) {
    dfpo_info("reproduce: imdb data: reusing the prepared splits in %s%s", p.dir,
              p.verified ? "" : " (UNVERIFIED import)");
  } else {
    if (ds_stamp_read(e, &st, &e2) != DFPO_OK) {
      char src[4200];
      const char *env = getenv("DFPO_SHARED_DATA");
      if (env && env[0])
        suite_fmt(src, sizeof src, "%s/imdb/aclImdb.tar.gz", env);
      else
        suite_fmt(src, sizeof src, "%s/../shared/data/imdb/aclImdb.tar.gz", DFPO_SOURCE_DIR);
      if (!exists(src)) {
        rc = dfpo_err_set(err, DFPO_EDATA,
                          "imdb data: not in the cache and no local archive at %s; run `dfpo "
                          "fetch imdb` (or `dfpo datasets import imdb FILE`), or set "
                          "task.data_dir",
                          src);
      } else {
        dfpo_info("reproduce: imdb data: importing %s", src);
        rc = ds_import(e, src, 0, &st, err);
      }
    }
    if (!rc) {
      dfpo_info("reproduce: imdb data: preparing the splits");
      rc = ds_prepare(e, DS_DEFAULT_SEED, &p, err);
    }
    if (rc)
      dfpo_err_prefix(err, "imdb data");
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
    if (!exists(path))
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
    if (exists(src) || i == 0) /* the first file is required */
      rc = each_doc_batch(src, fn, tok ? (void *)&o : (void *)a.fp, count, err);
  }
  if (rc) {
    dfpo_atomic_abort(&a);
    return rc;
  }
  return dfpo_atomic_commit(&a, err);
}

/* Step 2: the tokenizer, trained on the training reviews, and the pretraining
 * corpus as token ids (unsup.jsonl and train.jsonl; validation.jsonl for
 * validation), in bases/imdb-tok-<key of the data and the vocabulary>/. */
static int imdb_tokenizer(repro *r, int ti, const char *cache, const char *splits,
                          const char *digest, char *dir, size_t ndir, char *tokkey, dfpo_err *err) {
  const cfg *c = &r->s.conf;
  const char *const *lists[] = {tok_keys, NULL};
  const char *extra[] = {"data_sha256", digest, NULL};
  char *key = key_json(c, lists, extra, "imdb-tok-1");
  if (!key)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  key_hex(key, tokkey);
  suite_fmt(dir, ndir, "%s/bases/imdb-tok-%s", cache, tokkey);
  suite_fmt(r->tok[ti], sizeof r->tok[ti], "%s/tok", dir);
  char stamp[1600], corpus[1600], tokdone[1600], train_ids[1600], val_ids[1600];
  suite_fmt(stamp, sizeof stamp, "%s/tok.json", dir);
  if (exists(stamp)) {
    dfpo_info("reproduce: imdb tokenizer: reusing %s", dir);
    free(key);
    return DFPO_OK;
  }
  double t0 = dfpo_now();
  int64_t vocab;
  int rc;
  if ((rc = cfg_get_int(c, "tokenizer.vocab_size", &vocab, err)) || (rc = dfpo_mkdirs(dir, err))) {
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
  if (!exists(corpus)) {
    dfpo_info("reproduce: imdb tokenizer: writing the training reviews to %s", corpus);
    rc = write_docs(splits, tr, corpus, docs_to_text, NULL, &n_tok, err);
  }
  if (!rc && !exists(tokdone)) {
    dfpo_info("reproduce: imdb tokenizer: training a %lld-token BPE on %s", (long long)vocab,
              corpus);
    const char *files[1] = {corpus};
    rc = train_tokenizer(dir, files, 1, vocab, err);
  }
  if (!rc)
    rc = tok_load(&tok, r->tok[ti], err);
  if (!rc && !exists(train_ids)) {
    dfpo_info("reproduce: imdb tokenizer: encoding the pretraining corpus (train, unsup)");
    rc = write_docs(splits, pre, train_ids, docs_to_ids, tok, &n_train, err);
  }
  if (!rc && !exists(val_ids))
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
  return rc;
}

/* Step 4: the sentiment judge the imdb task scores with. task.judge.sentiment
 * when set; else judges/sentiment-<key of the data and judge.max_texts> in
 * the cache, trained as `dfpo judge train sentiment` does when absent. The
 * cells get its folder as task.judge.sentiment. */
static int imdb_judge(repro *r, int ti, const char *cache, const char *splits, int from_cache,
                      const char *digest, dfpo_err *err) {
  const cfg *c = &r->s.conf;
  const char *given;
  int64_t limit;
  int rc;
  if ((rc = cfg_get_str(c, "task.judge.sentiment", &given, err)) ||
      (rc = cfg_get_int(c, "judge.max_texts", &limit, err)))
    return rc;
  if (given[0]) {
    suite_fmt(r->judge[ti], sizeof r->judge[ti], "%s", given);
    dfpo_info("reproduce: imdb judge: %s (task.judge.sentiment)", given);
    return DFPO_OK;
  }
  static const char *const max_keys[] = {"judge.max_texts", NULL};
  const char *const *lists[] = {max_keys, NULL};
  const char *extra[] = {"data_sha256", digest, NULL};
  char *key = key_json(c, lists, extra, "sentiment-judge-1 (dfpo judge train defaults)");
  if (!key)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  char hex[65], card[2400];
  key_hex(key, hex);
  free(key);
  suite_fmt(r->judge[ti], sizeof r->judge[ti], "%s/judges/sentiment-%s", cache, hex);
  suite_fmt(card, sizeof card, "%s/card.json", r->judge[ti]);
  if (exists(card)) { /* written last */
    dfpo_info("reproduce: imdb judge: reusing %s", r->judge[ti]);
    return DFPO_OK;
  }
  dfpo_info("reproduce: imdb judge: training the sentiment judge into %s", r->judge[ti]);
  fflush(NULL);
  /* from the cache: the judge's card gets the dataset's version and verdict */
  return cmd_judge_train("sentiment", from_cache ? NULL : splits, r->judge[ti], (size_t)limit, err);
}

/* model.init pretrain on the imdb task: the data, a BPE trained on the
 * training reviews, a GPT-2 pretrained on the unlabelled and training
 * reviews (bases/imdb-<key of the tokenizer, the shape and the
 * pretraining>/), and the sentiment judge; each step kept in the cache and
 * reused, and each resumable (files written whole; the pretraining from
 * its checkpoint). */
static int imdb_base(repro *r, int ti, dfpo_err *err) {
  const cfg *c = &r->s.conf;
  char cache[1024], splits[4096], digest[65], tokdir[1400], tokkey[65], dir[1400];
  char stamp[1600], path[1600];
  int rc, from_cache = 0;
  static const char *const files[] = {"train.jsonl", "validation.jsonl", "unsup.jsonl", NULL};
  if ((rc = dfpo_cache_dir(cache, sizeof cache, err)) ||
      (rc = imdb_splits(c, splits, sizeof splits, &from_cache, err)) ||
      (rc = splits_digest(splits, files, digest, err)) ||
      (rc = imdb_tokenizer(r, ti, cache, splits, digest, tokdir, sizeof tokdir, tokkey, err)))
    return rc;
  const char *const *lists[] = {model_keys, NULL};
  const char *extra[] = {"tokenizer_key", tokkey, NULL};
  char *key = key_json(c, lists, extra, "imdb-base-1");
  if (!key)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  char hex[65];
  key_hex(key, hex);
  suite_fmt(dir, sizeof dir, "%s/bases/imdb-%s", cache, hex);
  suite_fmt(r->model[ti], sizeof r->model[ti], "%s/base.ckpt", dir);
  suite_fmt(stamp, sizeof stamp, "%s/base.json", dir);
  if (exists(stamp)) {
    dfpo_info("reproduce: imdb base model: reusing %s", dir);
  } else if (!(rc = dfpo_mkdirs(dir, err))) {
    dfpo_info("reproduce: imdb base model: preparing %s", dir);
    double t0 = dfpo_now();
    char train_ids[1600], val_ids[1600], pre[1600], log[1600];
    suite_fmt(train_ids, sizeof train_ids, "%s/train.ids", tokdir);
    suite_fmt(val_ids, sizeof val_ids, "%s/val.ids", tokdir);
    suite_fmt(pre, sizeof pre, "%s/pretrain", dir);
    suite_fmt(log, sizeof log, "%s/pretrain.log", dir);
    tok_tokenizer *tok = NULL;
    size_t V = 0;
    if (!(rc = tok_load(&tok, r->tok[ti], err)))
      V = tok_vocab_size(tok);
    tok_free(tok);
    if (!rc)
      rc = pretrain_child(c, "imdb base model", train_ids, val_ids, V, pre, log, r->model[ti], err);
    if (!rc) {
      suite_fmt(path, sizeof path, "%s/train.jsonl", pre);
      double vl = last_val_loss(path);
      cJSON *o = cJSON_CreateObject();
      cJSON_AddItemToObject(o, "config", cJSON_Parse(key));
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
  if (rc || (rc = imdb_judge(r, ti, cache, splits, from_cache, digest, err)))
    return rc;
  /* the suite folder records the base, the tokenizer and the judge its
   * cells used */
  cJSON *o;
  if ((rc = cfg_json_read(stamp, &o, err)))
    return rc;
  cJSON_AddStringToObject(o, "model", r->model[ti]);
  cJSON_AddStringToObject(o, "tokenizer", r->tok[ti]);
  cJSON_AddStringToObject(o, "judge", r->judge[ti]);
  suite_fmt(path, sizeof path, "%s/base-%s.json", r->root, r->s.tasks[ti]);
  rc = cfg_json_write(path, o, err);
  cJSON_Delete(o);
  return rc;
}

/* model.init import without paths: GPT-2 124M and its BPE files from the
 * cache (`dfpo fetch gpt2-124m gpt2-encoder gpt2-vocab`); the two BPE files
 * are copied into one tokenizer folder. */
static int imported_base(repro *r, int ti, const char *model, const char *tok, dfpo_err *err) {
  char cache[1024], dir[1200], src[1300], dst[1300];
  int rc = dfpo_cache_dir(cache, sizeof cache, err);
  if (rc)
    return rc;
  if (model[0])
    suite_fmt(r->model[ti], sizeof r->model[ti], "%s", model);
  else
    suite_fmt(r->model[ti], sizeof r->model[ti], "%s/datasets/gpt2-124m/607a30d/model.safetensors",
              cache);
  if (tok[0]) {
    suite_fmt(r->tok[ti], sizeof r->tok[ti], "%s", tok);
  } else {
    static const char *const files[2][2] = {{"gpt2-encoder/1", "encoder.json"},
                                            {"gpt2-vocab/1", "vocab.bpe"}};
    suite_fmt(dir, sizeof dir, "%s/bases/gpt2-bpe", cache);
    if ((rc = dfpo_mkdirs(dir, err)))
      return rc;
    for (int i = 0; i < 2; i++) {
      suite_fmt(src, sizeof src, "%s/datasets/%s/%s", cache, files[i][0], files[i][1]);
      suite_fmt(dst, sizeof dst, "%s/%s", dir, files[i][1]);
      if (exists(dst))
        continue;
      char *data = NULL;
      size_t len;
      dfpo_err e;
      if (dfpo_read_file(src, &data, &len, &e))
        return dfpo_err_set(err, DFPO_EDATA,
                            "base model: %s is missing; run `dfpo fetch gpt2-124m gpt2-encoder "
                            "gpt2-vocab` first (or set model.path and tokenizer.path)",
                            src);
      rc = dfpo_atomic_write_file(dst, data, len, err);
      free(data);
      if (rc)
        return rc;
    }
    suite_fmt(r->tok[ti], sizeof r->tok[ti], "%s", dir);
  }
  if (!exists(r->model[ti]))
    return dfpo_err_set(err, DFPO_EDATA,
                        "base model: %s is missing; run `dfpo fetch gpt2-124m gpt2-encoder "
                        "gpt2-vocab` first (or set model.path and tokenizer.path)",
                        r->model[ti]);
  return DFPO_OK;
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
static int prepare_base(repro *r, int ti, dfpo_err *err) {
  const char *init, *model, *tok;
  int rc;
  if ((rc = cfg_get_str(&r->s.conf, "model.init", &init, err)) ||
      (rc = cfg_get_str(&r->s.conf, "model.path", &model, err)) ||
      (rc = cfg_get_str(&r->s.conf, "tokenizer.path", &tok, err)))
    return rc;
  if (!strcmp(init, "import") && (!model[0] || !tok[0]))
    return imported_base(r, ti, model, tok, err);
  if (strcmp(init, "pretrain")) {
    if (!model[0] || !tok[0])
      return dfpo_err_set(err, DFPO_EUSAGE,
                          "model.init %s needs model.path and tokenizer.path (for GPT-2 124M: "
                          "its model.safetensors and the folder of its tokenizer files)",
                          init);
    if (!exists(model) || !exists(tok))
      return dfpo_err_set(err, DFPO_EDATA, "base model: %s or %s does not exist", model, tok);
    suite_fmt(r->model[ti], sizeof r->model[ti], "%s", model);
    suite_fmt(r->tok[ti], sizeof r->tok[ti], "%s", tok);
    return DFPO_OK;
  }
  if (!strcmp(r->s.tasks[ti], "synthetic"))
    return synthetic_base(r, ti, err);
  if (!strcmp(r->s.tasks[ti], "imdb"))
    return imdb_base(r, ti, err);
  return dfpo_err_set(err, DFPO_EUSAGE,
                      "base model: pretraining on the corpus of task '%s' is not built yet "
                      "(synthetic and imdb are); set model.init to import or checkpoint",
                      r->s.tasks[ti]);
}

/* ----------------------------------------------------------------- cells */

static void cell_paths(const repro *r, int i, char *final, size_t nf, char *staging, size_t ns) {
  int ti, vi, si;
  suite_cell(&r->s, i, &ti, &vi, &si);
  suite_fmt(final, nf, "%s/%s/%s/seed-%lld", r->root, r->s.tasks[ti], r->s.variants[vi].name,
            (long long)r->s.seeds[si]);
  suite_fmt(staging, ns, "%s/.staging/%s/%s/seed-%lld", r->root, r->s.tasks[ti],
            r->s.variants[vi].name, (long long)r->s.seeds[si]);
}

static void print_matrix(const repro *r, int current) {
  int n = suite_n_cells(&r->s), done = 0, failed = 0;
  for (int i = 0; i < n; i++) {
    done += r->status[i] == 'D' || r->status[i] == 'S';
    failed += r->status[i] == 'F';
  }
  double el = dfpo_now() - r->t0;
  fprintf(stderr, "reproduce %s: %d/%d cells done, %d failed, %.0f s", r->s.name, done, n, failed,
          el);
  if (current >= 0) {
    int ti, vi, si;
    suite_cell(&r->s, current, &ti, &vi, &si);
    fprintf(stderr, "; running %s/%s seed %lld", r->s.tasks[ti], r->s.variants[vi].name,
            (long long)r->s.seeds[si]);
  }
  fputc('\n', stderr);
  for (int ti = 0; ti < r->s.n_tasks; ti++)
    for (int vi = 0; vi < r->s.n_variants; vi++) {
      fprintf(stderr, "  %-12s %-14s", vi == 0 ? r->s.tasks[ti] : "", r->s.variants[vi].name);
      for (int si = 0; si < r->s.n_seeds; si++) {
        char c = r->status[(ti * r->s.n_variants + vi) * r->s.n_seeds + si];
        fprintf(stderr, " %c", c == 'S' ? 'D' : c);
      }
      fputc('\n', stderr);
    }
}

static int write_failure(const repro *r, int i, const char *why) {
  int ti, vi, si;
  suite_cell(&r->s, i, &ti, &vi, &si);
  char dir[2600], path[2700];
  suite_fmt(dir, sizeof dir, "%s/failed/%s/%s", r->root, r->s.tasks[ti], r->s.variants[vi].name);
  suite_fmt(path, sizeof path, "%s/seed-%lld.txt", dir, (long long)r->s.seeds[si]);
  dfpo_err e;
  char line[700];
  suite_fmt(line, sizeof line, "%s\n", why);
  if (dfpo_mkdirs(dir, &e) || write_text(path, line, &e))
    return DFPO_ERUNTIME;
  return DFPO_OK;
}

static void clear_failure(const repro *r, int i) {
  int ti, vi, si;
  suite_cell(&r->s, i, &ti, &vi, &si);
  char path[2700];
  suite_fmt(path, sizeof path, "%s/failed/%s/%s/seed-%lld.txt", r->root, r->s.tasks[ti],
            r->s.variants[vi].name, (long long)r->s.seeds[si]);
  remove(path);
}

/* Runs cell i unless done: `dfpo train` into its staging folder, then the
 * finished run folder is renamed into place (so a run folder under the
 * suite always has DONE). Returns DFPO_OK when done, DFPO_EINTR when
 * interrupted, another code when the cell failed (recorded). */
static int run_cell(repro *r, int i, dfpo_err *err) {
  char final[2600], staging[2600], path[2800], log[2800];
  cell_paths(r, i, final, sizeof final, staging, sizeof staging);
  suite_fmt(path, sizeof path, "%s/DONE", final);
  if (exists(path)) {
    r->status[i] = 'S';
    clear_failure(r, i);
    return DFPO_OK;
  }
  int ti, vi, si;
  suite_cell(&r->s, i, &ti, &vi, &si);
  const suite_variant *v = &r->s.variants[vi];
  if (!r->model[ti][0]) {
    r->status[i] = 'F';
    write_failure(r, i, r->base_err[ti]);
    return dfpo_err_set(err, DFPO_ERUNTIME, "%s", r->base_err[ti]);
  }
  r->status[i] = 'R';
  print_matrix(r, i);
  int rc;
  suite_fmt(path, sizeof path, "%s/logs", r->root);
  if ((rc = dfpo_mkdirs(staging, err)) || (rc = dfpo_mkdirs(path, err)))
    return rc;
  suite_fmt(log, sizeof log, "%s/logs/%s-%s-seed-%lld.log", r->root, r->s.tasks[ti], v->name,
            (long long)r->s.seeds[si]);
  char seed[32];
  suite_fmt(seed, sizeof seed, "%lld", (long long)r->s.seeds[si]);
  char *argv[24 + 2 * SUITE_MAX_SETS];
  int n = 0;
  argv[n++] = "dfpo";
  argv[n++] = "train";
  argv[n++] = "--config";
  argv[n++] = r->config;
  argv[n++] = "--task";
  argv[n++] = (char *)r->s.tasks[ti];
  argv[n++] = "--algo";
  argv[n++] = (char *)v->algo;
  argv[n++] = "--seed";
  argv[n++] = seed;
  argv[n++] = "--out";
  argv[n++] = staging;
  argv[n++] = "--model";
  argv[n++] = r->model[ti];
  argv[n++] = "--tokenizer";
  argv[n++] = r->tok[ti];
  char jset[2400];
  if (r->judge[ti][0]) { /* before the variant's own overrides, which may replace it */
    suite_fmt(jset, sizeof jset, "task.judge.sentiment=%s", r->judge[ti]);
    argv[n++] = "--set";
    argv[n++] = jset;
  }
  for (int k = 0; k < v->n_sets; k++) {
    argv[n++] = "--set";
    argv[n++] = v->sets[k];
  }
  argv[n] = NULL;
  double t0 = dfpo_now();
  int st = run_child(argv, log);
  double secs = dfpo_now() - t0;
  char run[2900];
  suite_fmt(run, sizeof run, "%s/%s/%s/%s/seed-%lld", staging, r->s.name, r->s.tasks[ti], v->algo,
            (long long)r->s.seeds[si]);
  suite_fmt(path, sizeof path, "%s/DONE", run);
  if (st == 0 && exists(path)) {
    /* what the folder name alone does not say: the variant and its cost */
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "variant", v->name);
    cJSON_AddStringToObject(o, "algo", v->algo);
    cJSON *sets = cJSON_AddArrayToObject(o, "overrides");
    for (int k = 0; k < v->n_sets; k++)
      cJSON_AddItemToArray(sets, cJSON_CreateString(v->sets[k]));
    cJSON_AddNumberToObject(o, "seconds", secs);
    suite_fmt(path, sizeof path, "%s/cell.json", run);
    rc = cfg_json_write(path, o, err);
    cJSON_Delete(o);
    char parent[2600];
    suite_fmt(parent, sizeof parent, "%s", final);
    *strrchr(parent, '/') = '\0';
    if (rc || (rc = suite_rmtree(final, err)) || (rc = dfpo_mkdirs(parent, err)))
      return rc;
    if (rename(run, final) != 0)
      return dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot rename to %s", run, final);
    suite_rmtree(staging, err);
    clear_failure(r, i);
    r->status[i] = 'D';
    dfpo_info("reproduce: %s/%s seed %lld done in %.1f s", r->s.tasks[ti], v->name,
              (long long)r->s.seeds[si], secs);
    return DFPO_OK;
  }
  r->status[i] = 'F';
  if (st == 130 || dfpo_interrupted()) {
    r->status[i] = '.';
    return dfpo_err_set(err, DFPO_EINTR, "reproduce: interrupted in %s/%s seed %lld",
                        r->s.tasks[ti], v->name, (long long)r->s.seeds[si]);
  }
  char why[512], msg[700];
  last_error(log, why, sizeof why);
  /* the same words for every seed that failed the same way, so that the
   * report can say it once; the log is logs/<task>-<variant>-seed-<n>.log */
  suite_fmt(msg, sizeof msg, "exit %d: %s", st, why[0] ? why : "no message");
  write_failure(r, i, msg);
  dfpo_warn("reproduce: %s/%s seed %lld failed: %s (log: %s)", r->s.tasks[ti], v->name,
            (long long)r->s.seeds[si], msg, log);
  return dfpo_err_set(err, DFPO_ERUNTIME, "%s", msg);
}

/* ----------------------------------------------------------------- slurm */

static int emit_slurm(repro *r, const char *suite_arg, dfpo_err *err) {
  char dir[2200], path[2400];
  suite_fmt(dir, sizeof dir, "%s/slurm", r->root);
  int rc = dfpo_mkdirs(dir, err);
  if (rc)
    return rc;
  const char *device;
  cfg_get_str(&r->s.conf, "device", &device, err);
  const char *gres = !strcmp(device, "cuda") ? "#SBATCH --gres=gpu:1\n" : "";
  int n = suite_n_cells(&r->s);
  char common[6000];
  suite_fmt(common, sizeof common,
            "#SBATCH --output=%s/slurm/%%x-%%A_%%a.out\n"
            "set -euo pipefail\n"
            "DFPO='%s'\n",
            r->root, r->exe);
  char text[16000];
  /* the preparation job: data and base models, once, before the cells */
  suite_fmt(text, sizeof text,
            "#!/bin/bash\n#SBATCH --job-name=%s-prepare\n%s%s"
            "\"$DFPO\" reproduce --config '%s' --out '%s' --prepare-only\n",
            r->s.name, gres, common, r->config, r->out);
  suite_fmt(path, sizeof path, "%s/prepare.sbatch", dir);
  if ((rc = write_text(path, text, err)))
    return rc;
  suite_fmt(text, sizeof text,
            "#!/bin/bash\n#SBATCH --job-name=%s-cells\n#SBATCH --array=0-%d\n%s%s"
            "# one array task per (task, algorithm, seed) cell, in the order of\n"
            "# `dfpo reproduce --help` (tasks outermost, seeds innermost)\n"
            "\"$DFPO\" reproduce --config '%s' --out '%s' --cell \"$SLURM_ARRAY_TASK_ID\"\n",
            r->s.name, n - 1, gres, common, r->config, r->out);
  suite_fmt(path, sizeof path, "%s/cells.sbatch", dir);
  if ((rc = write_text(path, text, err)))
    return rc;
  suite_fmt(text, sizeof text,
            "#!/bin/bash\n#SBATCH --job-name=%s-report\n%s"
            "\"$DFPO\" report '%s'\n",
            r->s.name, common, r->root);
  suite_fmt(path, sizeof path, "%s/report.sbatch", dir);
  if ((rc = write_text(path, text, err)))
    return rc;
  suite_fmt(text, sizeof text,
            "#!/bin/bash\n"
            "# Submits the suite %s (%d cells): preparation, then the cell array, then\n"
            "# the report (which runs even when some cells failed, and lists them).\n"
            "set -euo pipefail\n"
            "cd \"$(dirname \"$0\")\"\n"
            "prep=$(sbatch --parsable prepare.sbatch)\n"
            "cells=$(sbatch --parsable --dependency=afterok:$prep cells.sbatch)\n"
            "sbatch --dependency=afterany:$cells report.sbatch\n",
            suite_arg, n);
  suite_fmt(path, sizeof path, "%s/submit.sh", dir);
  if ((rc = write_text(path, text, err)))
    return rc;
  chmod(path, 0755);
  printf("%s\n", path);
  dfpo_info("reproduce: wrote %s/{prepare,cells,report}.sbatch and submit.sh (%d cells)", dir, n);
  return DFPO_OK;
}

/* --------------------------------------------------------------- command */

static int find_suite(const char *name, char *buf, size_t n) {
  if (strchr(name, '/'))
    return -1;
  suite_fmt(buf, n, "configs/%s.json", name);
  if (exists(buf))
    return 0;
#ifdef DFPO_SOURCE_DIR
  suite_fmt(buf, n, "%s/configs/%s.json", DFPO_SOURCE_DIR, name);
  if (exists(buf))
    return 0;
#endif
  return -1;
}

static int reproduce(repro *r, const char *file, const char *const *sets, int nsets, int emit,
                     int max_cells, int only_cell, int prepare_only, dfpo_err *err) {
  int rc = suite_load(&r->s, file, sets, nsets, err);
  if (rc)
    return rc;
  r->t0 = dfpo_now();
  ssize_t len = readlink("/proc/self/exe", r->exe, sizeof r->exe - 1);
  if (len <= 0)
    return dfpo_err_errno(err, DFPO_ERUNTIME, errno, "cannot find this program (/proc/self/exe)");
  r->exe[len] = '\0';
  /* absolute paths: the cells and the Slurm jobs may run elsewhere */
  if ((rc = dfpo_mkdirs(r->out, err)))
    return rc;
  char abs[PATH_MAX];
  if (!realpath(r->out, abs))
    return dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s", r->out);
  suite_fmt(r->out, sizeof r->out, "%s", abs);
  if (strlen(r->out) + strlen(r->s.name) + 200 >= sizeof r->root)
    return dfpo_err_set(err, DFPO_EUSAGE, "--out path too long");
  suite_fmt(r->root, sizeof r->root, "%s/%s", r->out, r->s.name);
  suite_fmt(r->config, sizeof r->config, "%s/suite.json", r->root);
  if ((rc = dfpo_mkdirs(r->root, err)))
    return rc;
  /* the resolved suite: what the cells, the Slurm jobs and the report read */
  char *json = cfg_to_json(&r->s.conf);
  if (!json)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  rc = write_text(r->config, json, err);
  free(json);
  if (rc)
    return rc;
  if (emit)
    return emit_slurm(r, file, err);
  /* the device, resolved here once so that cuda without a usable device
   * fails before any work (the children resolve the same key again) */
  const char *device;
  if ((rc = cfg_get_str(&r->s.conf, "device", &device, err)) || (rc = cli_use_device(device, err)))
    return rc;
  int n = suite_n_cells(&r->s);
  if (only_cell >= n)
    return dfpo_err_set(err, DFPO_EUSAGE, "--cell %d: the suite has %d cells (0..%d)", only_cell, n,
                        n - 1);
  r->model = calloc((size_t)r->s.n_tasks, sizeof *r->model);
  r->tok = calloc((size_t)r->s.n_tasks, sizeof *r->tok);
  r->judge = calloc((size_t)r->s.n_tasks, sizeof *r->judge);
  r->base_err = calloc((size_t)r->s.n_tasks, sizeof *r->base_err);
  r->status = calloc((size_t)n + 1, 1);
  if (!r->model || !r->tok || !r->judge || !r->base_err || !r->status)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  memset(r->status, '.', (size_t)n);
  for (int ti = 0; ti < r->s.n_tasks; ti++) {
    if (only_cell >= 0) {
      int ct, cv, cs;
      suite_cell(&r->s, only_cell, &ct, &cv, &cs);
      if (ct != ti)
        continue;
    }
    dfpo_err e;
    dfpo_err_clear(&e);
    rc = prepare_base(r, ti, &e);
    if (rc == DFPO_EINTR || dfpo_interrupted()) {
      if (rc == DFPO_OK) /* it came after the preparation had finished */
        return dfpo_err_set(err, DFPO_EINTR, "reproduce: interrupted; run it again to go on");
      *err = e;
      return DFPO_EINTR;
    }
    if (rc) {
      r->model[ti][0] = '\0';
      suite_fmt(r->base_err[ti], sizeof r->base_err[ti], "%s", e.msg);
      dfpo_warn("reproduce: task %s: %s", r->s.tasks[ti], e.msg);
      if (prepare_only) {
        *err = e;
        return rc;
      }
    }
  }
  if (prepare_only)
    return DFPO_OK;
  int ran = 0, failed = 0;
  rc = DFPO_OK;
  for (int i = 0; i < n; i++) {
    if (only_cell >= 0 && i != only_cell)
      continue;
    char final[2600], staging[2600], done[2700];
    cell_paths(r, i, final, sizeof final, staging, sizeof staging);
    suite_fmt(done, sizeof done, "%s/DONE", final);
    if (!exists(done) && max_cells >= 0 && ran >= max_cells) {
      dfpo_info("reproduce: stopping after %d cells (--max-cells)", ran);
      rc = dfpo_err_set(err, DFPO_EINTR,
                        "reproduce: stopped after %d cells (--max-cells); run "
                        "it again to go on",
                        ran);
      break;
    }
    dfpo_err e;
    dfpo_err_clear(&e);
    int was_done = exists(done);
    int crc = run_cell(r, i, &e);
    ran += !was_done;
    if (crc == DFPO_EINTR) {
      *err = e;
      rc = DFPO_EINTR;
      break;
    }
    failed += crc != DFPO_OK;
    if (dfpo_interrupted()) {
      rc = dfpo_err_set(err, DFPO_EINTR, "reproduce: interrupted; run it again to go on");
      break;
    }
  }
  print_matrix(r, -1);
  if (only_cell >= 0)
    return rc ? rc : failed ? dfpo_err_set(err, DFPO_ERUNTIME, "the cell failed") : DFPO_OK;
  if (rc)
    return rc;
  int rrc = res_report(r->root, 1, err);
  if (rrc)
    return rrc;
  if (failed)
    return dfpo_err_set(err, DFPO_ERUNTIME,
                        "%d of %d cells failed (reasons in %s/failed/ and the report)", failed, n,
                        r->root);
  return DFPO_OK;
}

int cmd_reproduce(int argc, char **argv) {
  /* read by the children's OpenMP at their start (this process's has read
   * its own already); a value the user set stays */
  setenv("OMP_WAIT_POLICY", "PASSIVE", 0);
  enum { O_SUITE = 256, O_CONFIG, O_OUT, O_EMIT, O_MAX, O_CELL, O_PREP, O_DEVICE };
  static const struct option opts[] = {{"suite", required_argument, NULL, O_SUITE},
                                       {"config", required_argument, NULL, O_CONFIG},
                                       {"out", required_argument, NULL, O_OUT},
                                       {"set", required_argument, NULL, 's'},
                                       {"emit", required_argument, NULL, O_EMIT},
                                       {"max-cells", required_argument, NULL, O_MAX},
                                       {"cell", required_argument, NULL, O_CELL},
                                       {"prepare-only", no_argument, NULL, O_PREP},
                                       {"device", required_argument, NULL, O_DEVICE},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *suite_name = NULL, *file = NULL, *out = "out";
  char device_set[64] = "";
  char **sets = calloc((size_t)argc + 1, sizeof *sets);
  if (!sets)
    return DFPO_ERUNTIME;
  int nsets = 0, emit = 0, max_cells = -1, only_cell = -1, prep = 0, c, rc = DFPO_OK;
  cli_reset_getopt();
  while (rc == DFPO_OK && (c = getopt_long(argc, argv, ":hs:", opts, NULL)) != -1) {
    switch (c) {
    case O_SUITE:
      suite_name = optarg;
      break;
    case O_CONFIG:
      file = optarg;
      break;
    case O_OUT:
      out = optarg;
      break;
    case 's':
      sets[nsets++] = optarg;
      break;
    case O_EMIT:
      if (strcmp(optarg, "slurm"))
        rc = cli_usage_error("reproduce", "--emit knows only 'slurm', got '%s'", optarg);
      emit = 1;
      break;
    case O_MAX:
      rc = cli_integer("reproduce", optarg, 0, INT_MAX, "--max-cells", &max_cells);
      break;
    case O_CELL:
      rc = cli_integer("reproduce", optarg, 0, INT_MAX, "--cell", &only_cell);
      break;
    case O_PREP:
      prep = 1;
      break;
    case O_DEVICE:
      /* the device key, over the config and the --set before it */
      snprintf(device_set, sizeof device_set, "device=%.50s", optarg);
      sets[nsets++] = device_set;
      break;
    case 'h':
      fputs(reproduce_usage, stdout);
      free(sets);
      return DFPO_OK;
    default:
      rc = cli_bad_option("reproduce", argc, argv, c);
    }
  }
  if (!rc && optind < argc)
    rc = cli_usage_error("reproduce", "unexpected argument '%s'", argv[optind]);
  if (!rc && suite_name && file)
    rc = cli_usage_error("reproduce", "give --suite or --config, not both");
  char path[4096];
  if (!rc && suite_name) {
    if (find_suite(suite_name, path, sizeof path))
      rc = cli_usage_error("reproduce", "no suite '%s' (configs/%s.json)", suite_name, suite_name);
    file = path;
  }
  if (rc) {
    free(sets);
    return rc;
  }
  repro r;
  memset(&r, 0, sizeof r);
  suite_fmt(r.out, sizeof r.out, "%s", out);
  dfpo_err err;
  dfpo_err_clear(&err);
  rc =
      reproduce(&r, file, (const char *const *)sets, nsets, emit, max_cells, only_cell, prep, &err);
  if (rc)
    rc = cli_fail(&err);
  suite_free(&r.s);
  free(r.model);
  free(r.tok);
  free(r.judge);
  free(r.base_err);
  free(r.status);
  free(sets);
  return rc;
}
