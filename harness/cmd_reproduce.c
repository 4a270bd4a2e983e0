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
#include "trainer/trainer.h"
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
    "with DONE are skipped, an interrupted cell is run again (from its own\n"
    "checkpoint once `dfpo train` resumes; from its start today), the base\n"
    "model's pretraining resumes from its checkpoint. A cell that fails (for\n"
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
    "  -h, --help        show this help\n";

typedef struct repro {
  suite s;
  char root[2048];   /* DIR/<suite> */
  char out[2048];    /* DIR */
  char config[2100]; /* root/suite.json */
  char exe[PATH_MAX];
  char (*model)[2300]; /* per task: base model and tokenizer, "" when unprepared */
  char (*tok)[2300];
  char (*base_err)[512]; /* per task: why no base model */
  char *status;          /* per cell: '.', 'D' done, 'F' failed, 'R' running, 'S' skipped */
  double t0;
} repro;

static int exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

/* Runs argv[] (argv[0] ignored: /proc/self/exe) with stdout and stderr into
 * log (truncated); returns its exit status (128 + signal when killed). */
static int run_child(char *const argv[], const char *log) {
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
  while (waitpid(pid, &st, 0) < 0) {
    if (errno != EINTR)
      return -1;
    /* an interrupt sent to this process alone (not a terminal's Ctrl-C,
     * which reaches the whole group) still stops the cell */
    if (dfpo_interrupted() && !forwarded) {
      kill(pid, SIGINT);
      forwarded = 1;
    }
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
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

/* The config keys a synthetic base model depends on, as JSON text: its
 * SHA-256 names the cache folder, and base.json records it. */
static char *base_key_json(const cfg *c) {
  static const char *const keys[] = {"task.synthetic.language_seed",
                                     "task.synthetic.data_seed",
                                     "task.synthetic.lambda",
                                     "task.synthetic.n_train",
                                     "task.synthetic.n_validation",
                                     "task.synthetic.min_words",
                                     "tokenizer.vocab_size",
                                     "model.n_layer",
                                     "model.n_head",
                                     "model.n_embd",
                                     "model.block_size",
                                     "pretrain.steps",
                                     "pretrain.batch_size",
                                     "pretrain.seq_len",
                                     "pretrain.lr",
                                     "pretrain.min_lr",
                                     "pretrain.lr_schedule",
                                     "pretrain.warmup_steps",
                                     "pretrain.weight_decay",
                                     "pretrain.max_grad_norm",
                                     "pretrain.seed",
                                     NULL};
  cJSON *o = cJSON_CreateObject();
  dfpo_err e;
  for (int i = 0; keys[i]; i++) {
    double d;
    if (cfg_get_num(c, keys[i], &d, &e) == DFPO_OK) {
      cJSON_AddNumberToObject(o, keys[i], d);
    } else {
      int64_t v = 0;
      cfg_get_int(c, keys[i], &v, &e);
      cJSON_AddNumberToObject(o, keys[i], (double)v);
    }
  }
  cJSON_AddStringToObject(o, "recipe", "synthetic-base-1");
  char *s = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  return s;
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
  ds_sha256_buf(key, strlen(key), hex);
  hex[16] = '\0';
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
  int64_t vocab, nl, nh, ne, bs, steps, batch, seq, seed, warmup, eval_every, ckpt_every;
  double lr, min_lr, wd, clip;
  const char *schedule, *device;
  if ((rc = cfg_get_int(c, "tokenizer.vocab_size", &vocab, err)) ||
      (rc = cfg_get_str(c, "device", &device, err)) ||
      (rc = cfg_get_int(c, "model.n_layer", &nl, err)) ||
      (rc = cfg_get_int(c, "model.n_head", &nh, err)) ||
      (rc = cfg_get_int(c, "model.n_embd", &ne, err)) ||
      (rc = cfg_get_int(c, "model.block_size", &bs, err)) ||
      (rc = cfg_get_int(c, "pretrain.steps", &steps, err)) ||
      (rc = cfg_get_int(c, "pretrain.batch_size", &batch, err)) ||
      (rc = cfg_get_int(c, "pretrain.seq_len", &seq, err)) ||
      (rc = cfg_get_int(c, "pretrain.seed", &seed, err)) ||
      (rc = cfg_get_int(c, "pretrain.warmup_steps", &warmup, err)) ||
      (rc = cfg_get_int(c, "pretrain.eval_every", &eval_every, err)) ||
      (rc = cfg_get_int(c, "pretrain.ckpt_every", &ckpt_every, err)) ||
      (rc = cfg_get_num(c, "pretrain.lr", &lr, err)) ||
      (rc = cfg_get_num(c, "pretrain.min_lr", &min_lr, err)) ||
      (rc = cfg_get_num(c, "pretrain.weight_decay", &wd, err)) ||
      (rc = cfg_get_num(c, "pretrain.max_grad_norm", &clip, err)) ||
      (rc = cfg_get_str(c, "pretrain.lr_schedule", &schedule, err)))
    goto done;
  if (!exists(corpus) && (rc = task_write_corpus(&t, TASK_TRAIN, corpus, err)))
    goto done;
  if (!exists(tokdone)) {
    const char *files[1] = {corpus};
    char tmp[1600];
    suite_fmt(tmp, sizeof tmp, "%s/tok.tmp", dir);
    suite_fmt(path, sizeof path, "%s/tok", dir);
    if ((rc = suite_rmtree(tmp, err)) ||
        (rc = tok_train(files, 1, (size_t)vocab, tmp, NULL, err)) || (rc = suite_rmtree(path, err)))
      goto done;
    if (rename(tmp, path) != 0) {
      rc = dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot rename", tmp);
      goto done;
    }
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
    char a[18][64], pre[1600], log[1600];
    suite_fmt(pre, sizeof pre, "%s/pretrain", dir);
    suite_fmt(log, sizeof log, "%s/pretrain.log", dir);
    suite_fmt(a[0], 64, "%lld", (long long)nl);
    suite_fmt(a[1], 64, "%lld", (long long)nh);
    suite_fmt(a[2], 64, "%lld", (long long)ne);
    suite_fmt(a[3], 64, "%lld", (long long)bs);
    suite_fmt(a[4], 64, "%zu", V);
    suite_fmt(a[5], 64, "%lld", (long long)steps);
    suite_fmt(a[6], 64, "%lld", (long long)batch);
    suite_fmt(a[7], 64, "%lld", (long long)seq);
    suite_fmt(a[8], 64, "%.9g", lr);
    suite_fmt(a[9], 64, "%.9g", min_lr);
    suite_fmt(a[10], 64, "%lld", (long long)seed);
    suite_fmt(a[11], 64, "%lld", (long long)eval_every);
    suite_fmt(a[12], 64, "%lld", (long long)ckpt_every);
    suite_fmt(a[13], 64, "%lld", (long long)warmup);
    suite_fmt(a[14], 64, "%.9g", wd);
    suite_fmt(a[15], 64, "%.9g", clip);
    char *argv[] = {"dfpo",
                    "pretrain",
                    "--train",
                    train_ids,
                    "--val",
                    val_ids,
                    "--out",
                    pre,
                    "--n-layer",
                    a[0],
                    "--n-head",
                    a[1],
                    "--n-embd",
                    a[2],
                    "--n-ctx",
                    a[3],
                    "--vocab",
                    a[4],
                    "--steps",
                    a[5],
                    "--batch",
                    a[6],
                    "--seq",
                    a[7],
                    "--lr",
                    a[8],
                    "--min-lr",
                    a[9],
                    "--seed",
                    a[10],
                    "--eval-every",
                    a[11],
                    "--ckpt-every",
                    a[12],
                    "--warmup",
                    a[13],
                    "--weight-decay",
                    a[14],
                    "--clip",
                    a[15],
                    "--schedule",
                    (char *)schedule,
                    "--device",
                    (char *)device,
                    NULL};
    int st = run_child(argv, log);
    if (st != 0) {
      char why[512];
      last_error(log, why, sizeof why);
      rc = dfpo_err_set(err, st == 130 ? DFPO_EINTR : DFPO_ERUNTIME,
                        "base model: pretraining failed (exit %d): %s (log: %s)", st, why, log);
      goto done;
    }
    gpt2_model *m = NULL;
    suite_fmt(path, sizeof path, "%s/checkpoint.bin", pre);
    if ((rc = gpt2_load(&m, path, err)) || (rc = gpt2_save(m, r->model[ti], 0, err))) {
      gpt2_free(m);
      goto done;
    }
    gpt2_free(m);
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
  return dfpo_err_set(err, DFPO_EUSAGE,
                      "base model: pretraining on the corpus of task '%s' is not built yet "
                      "(synthetic is); set model.init to import or checkpoint",
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
  r->base_err = calloc((size_t)r->s.n_tasks, sizeof *r->base_err);
  r->status = calloc((size_t)n + 1, 1);
  if (!r->model || !r->tok || !r->base_err || !r->status)
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
  free(r.base_err);
  free(r.status);
  free(sets);
  return rc;
}
