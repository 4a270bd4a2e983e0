#include "harness/cli.h"
#include "harness/config.h"
#include "harness/rundir.h"
#include "trainer/gpt2.h"
#include "trainer/model.h"
#include "trainer/optim.h"
#include "trainer/tok.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char pretrain_usage[] =
    "Usage: dfpo pretrain --config FILE [--set key=value]...\n"
    "       dfpo pretrain --tokenizer DIR --train FILE... --val FILE... --out DIR [options]\n"
    "       dfpo pretrain --train FILE --val FILE --out DIR [options]\n"
    "\n"
    "Trains a GPT-2 from scratch on a corpus. With a tokenizer the corpus is text:\n"
    "a .jsonl file gives each record's \"text\" (or, for task records, its first\n"
    "\"references\" entry) as one document, as the prepared IMDB splits hold them\n"
    "(unsup.jsonl, train.jsonl); any other file gives each line (without its\n"
    "end) as one document. Without a tokenizer, or for a file named *.ids, each\n"
    "line of FILE is a document of whitespace-separated token ids. Documents are joined by "
    "<|endoftext|> when\n"
    "the vocabulary has it; empty ones are skipped. Every step draws --batch\n"
    "windows of --seq + 1 tokens at offsets from the data stream of (seed, step),\n"
    "so a run resumed from its checkpoint repeats an uninterrupted one bit for bit.\n"
    "\n"
    "With --config (and --set overrides, docs/configs.md) the run is described by\n"
    "the pretrain.* keys, the shape by model.n_layer, model.n_head, model.n_embd and\n"
    "model.block_size, the tokenizer by tokenizer.path (required); the vocabulary\n"
    "is the tokenizer's, the device by device, the CPU threads by threads.\n"
    "--config and --set exclude the other options but --stop-after and --device\n"
    "(which wins over the key).\n"
    "\n"
    "Writes into DIR: checkpoint.bin (native, with the AdamW state; every\n"
    "--ckpt-every steps and at the end), train.jsonl (one line per step: step,\n"
    "loss, lr, grad_norm, and val_loss every --eval-every steps), and with\n"
    "--config config.json (the resolved config). When DIR holds a checkpoint,\n"
    "training resumes from it (its shape wins over the options). Ctrl-C or\n"
    "SIGTERM stops it after the step under way, with a checkpoint (exit 130).\n"
    "\n"
    "Options:\n"
    "  --config FILE       a run config (JSON)\n"
    "  --set KEY=VALUE     overrides one config key (repeatable)\n"
    "  --tokenizer DIR     GPT-2 BPE files: the corpus is text, the vocabulary\n"
    "                      (unless --vocab) the tokenizer's\n"
    "  --train FILE        training corpus (repeatable)\n"
    "  --val FILE          validation corpus (repeatable)\n"
    "  --out DIR           where the checkpoint and the log go\n"
    "  --shape NAME        gpt2-tiny (default), gpt2-124M, ...; or set the sizes:\n"
    "  --n-layer N --n-head N --n-embd N --n-ctx N --vocab N\n"
    "  --steps N           optimiser steps in all (default 100)\n"
    "  --batch B --seq T   rows and tokens per step (default 8 x 64)\n"
    "  --lr X --min-lr X   peak and final learning rate (default 6e-4, 6e-5)\n"
    "  --schedule S        constant|linear|cosine (default cosine)\n"
    "  --warmup N          warmup steps (default 10)\n"
    "  --weight-decay X    AdamW decay on matrices (default 0.1)\n"
    "  --clip X            global grad-norm clip, 0 for none (default 1)\n"
    "  --eval-every N      validation every N steps (default 50)\n"
    "  --eval-batches N    validation batches (default 4)\n"
    "  --ckpt-every N      checkpoint every N steps (default 50)\n"
    "  --seed N            seed of the weights and the data order (default 0)\n"
    "  --stop-after N      stop after step N without a final checkpoint, as a kill\n"
    "                      would (for resume tests and time-boxed runs)\n"
    "  --device D          cpu (default; with --config the device key, default\n"
    "                      auto), cuda, or auto: CUDA when a device is usable,\n"
    "                      else the CPU with a warning that says why; cuda fails\n"
    "                      with the driver's reason when none is; the CUDA\n"
    "                      backend has not yet run on a real GPU (docs/cuda.md)\n"
    "  -h, --help          show this help\n"
    "\n"
    "DIR is locked (flock on DIR.lock) while the run lasts: a second process on\n"
    "it exits 5 at once, naming the holder (pid, host, start time, command).\n";

#define PT_MAX_FILES 64

/* What a run needs, from the options or from a config. */
typedef struct pt_opts {
  const char *train[PT_MAX_FILES], *val[PT_MAX_FILES];
  int ntrain, nval;
  const char *out, *shape, *tokdir;
  double nl, nh, ne, nc, nv, steps, B, T, lr, minlr, warm, wd, clip, eval_every, eval_b, ckpt, seed,
      stop;
  int kind;
} pt_opts;

typedef struct stream {
  int *ids;
  size_t n, cap;
} stream;

static int read_stream(const char *path, int vocab, stream *s, dfpo_err *err) {
  FILE *fp = fopen(path, "r");
  if (!fp)
    return dfpo_err_errno(err, DFPO_EDATA, errno, "%s", path);
  char *line = NULL;
  size_t lcap = 0;
  long lineno = 0;
  int rc = DFPO_OK;
  while (!rc && getline(&line, &lcap, fp) != -1) {
    lineno++;
    char *p = line, *end;
    size_t before = s->n;
    for (;;) {
      while (isspace((unsigned char)*p))
        p++;
      if (!*p)
        break;
      errno = 0;
      long v = strtol(p, &end, 10);
      if (end == p || errno || v < 0 || v >= vocab || (*end && !isspace((unsigned char)*end))) {
        rc = dfpo_err_set(err, DFPO_EDATA, "%s:%ld:%ld: not a token id below %d", path, lineno,
                          (long)(p - line) + 1, vocab);
        break;
      }
      if ((rc = dfpo_grow(&s->ids, &s->cap, s->n + 2, sizeof *s->ids, 4096, DFPO_NOCAP, err)))
        break;
      s->ids[s->n++] = (int)v;
      p = end;
    }
    if (!rc && s->n > before && vocab > 50256)
      s->ids[s->n++] = 50256;
  }
  free(line);
  fclose(fp);
  return rc;
}

static int stream_push(stream *s, int id, dfpo_err *err) {
  int rc = dfpo_grow(&s->ids, &s->cap, s->n + 1, sizeof *s->ids, 4096, DFPO_NOCAP, err);
  if (rc)
    return rc;
  s->ids[s->n++] = id;
  return DFPO_OK;
}

/* A batch of documents waiting to be encoded together. */
typedef struct doc_batch {
  char **text;
  size_t *len;
  size_t n;
} doc_batch;

#define PT_DOC_BATCH 4096

/* Encodes the waiting documents on all threads and appends them to s, each
 * followed by end-of-text (eot >= 0). */
static int flush_docs(doc_batch *d, tok_tokenizer *tok, int eot, stream *s, const char *path,
                      dfpo_err *err) {
  if (!d->n)
    return DFPO_OK;
  tok_ids *outs = calloc(d->n, sizeof *outs);
  int rc = outs ? tok_encode_many(tok, (const char *const *)d->text, d->len, d->n, 0, outs, err)
                : dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  if (rc)
    dfpo_err_prefix(err, "%s", path);
  for (size_t i = 0; i < d->n; i++) {
    for (size_t k = 0; !rc && k < outs[i].n; k++)
      rc = stream_push(s, outs[i].ids[k], err);
    if (!rc && outs[i].n && eot >= 0)
      rc = stream_push(s, eot, err);
    if (outs)
      tok_ids_free(&outs[i]);
    free(d->text[i]);
  }
  free(outs);
  d->n = 0;
  return rc;
}

/* Appends the text documents of path (see the usage) to s. */
static int read_text_stream(const char *path, tok_tokenizer *tok, stream *s, dfpo_err *err) {
  FILE *fp = fopen(path, "r");
  if (!fp)
    return dfpo_err_errno(err, DFPO_EDATA, errno, "%s", path);
  size_t pl = strlen(path);
  int jsonl = pl >= 6 && strcmp(path + pl - 6, ".jsonl") == 0, eot = (int)tok_eot_id(tok);
  doc_batch d = {malloc(PT_DOC_BATCH * sizeof(char *)), malloc(PT_DOC_BATCH * sizeof(size_t)), 0};
  char *line = NULL;
  size_t lcap = 0;
  ssize_t got;
  long lineno = 0;
  int rc = d.text && d.len ? DFPO_OK : dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  while (!rc && (got = getline(&line, &lcap, fp)) != -1) {
    lineno++;
    const char *text = line;
    size_t len = (size_t)got;
    cJSON *o = NULL;
    if (jsonl) {
      o = cJSON_ParseWithLength(line, len);
      const cJSON *t = cJSON_GetObjectItem(o, "text");
      if (!cJSON_IsString(t))
        t = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "references"), 0);
      if (!cJSON_IsString(t)) {
        /* a blank line is no record */
        int blank = 1;
        for (ssize_t k = 0; k < got; k++)
          blank &= isspace((unsigned char)line[k]) != 0;
        cJSON_Delete(o);
        if (blank)
          continue;
        rc = dfpo_err_set(err, DFPO_EDATA,
                          "%s:%ld: not a JSON object with a string \"text\" or \"references\"",
                          path, lineno);
        break;
      }
      text = t->valuestring;
      len = strlen(text);
    } else {
      if (len && line[len - 1] == '\n')
        len--;
      if (len && line[len - 1] == '\r')
        len--;
    }
    if (len) {
      char *copy = malloc(len + 1);
      if (!copy) {
        rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
      } else {
        memcpy(copy, text, len);
        copy[len] = 0;
        d.text[d.n] = copy;
        d.len[d.n++] = len;
      }
    }
    cJSON_Delete(o);
    if (!rc && d.n == PT_DOC_BATCH)
      rc = flush_docs(&d, tok, eot, s, path, err);
  }
  if (!rc)
    rc = flush_docs(&d, tok, eot, s, path, err);
  for (size_t i = 0; i < d.n; i++)
    free(d.text[i]);
  free(d.text);
  free(d.len);
  free(line);
  fclose(fp);
  return rc;
}

/* B windows of T+1 tokens at offsets drawn from (seed, key). */
static void draw_batch(const stream *s, int B, int T, uint64_t seed, uint64_t key, int *tok,
                       int *tgt) {
  dfpo_rng r;
  dfpo_rng_init(&r, seed * 0x9E3779B97F4A7C15ull + key, DFPO_STREAM_DATA);
  uint32_t span = (uint32_t)(s->n - (size_t)T);
  for (int b = 0; b < B; b++) {
    size_t off = dfpo_rng_below(&r, span);
    for (int t = 0; t < T; t++) {
      tok[b * T + t] = s->ids[off + t];
      tgt[b * T + t] = s->ids[off + t + 1];
    }
  }
}

/* The pretrain.* keys (and model.*, tokenizer.path) of a config into o. */
static int opts_from_config(pt_opts *o, const cfg *c, dfpo_err *err) {
  int64_t v;
  double x;
  const char *str;
  int n, rc = DFPO_OK;
#define INT(key, field)                                                                            \
  if (!rc && !(rc = cfg_get_int(c, key, &v, err)))                                                 \
  o->field = (double)v
#define NUM(key, field)                                                                            \
  if (!rc && !(rc = cfg_get_num(c, key, &x, err)))                                                 \
  o->field = x
  INT("model.n_layer", nl);
  INT("model.n_head", nh);
  INT("model.n_embd", ne);
  INT("model.block_size", nc);
  INT("pretrain.steps", steps);
  INT("pretrain.batch_size", B);
  INT("pretrain.seq_len", T);
  NUM("pretrain.lr", lr);
  NUM("pretrain.min_lr", minlr);
  INT("pretrain.warmup_steps", warm);
  NUM("pretrain.weight_decay", wd);
  NUM("pretrain.max_grad_norm", clip);
  INT("pretrain.eval_every", eval_every);
  INT("pretrain.eval_batches", eval_b);
  INT("pretrain.ckpt_every", ckpt);
  INT("pretrain.seed", seed);
#undef INT
#undef NUM
  if (!rc && !(rc = cfg_get_str(c, "pretrain.lr_schedule", &str, err)))
    o->kind = !strcmp(str, "constant") ? OPT_LR_CONSTANT
              : !strcmp(str, "linear") ? OPT_LR_LINEAR
                                       : OPT_LR_COSINE;
  if (!rc && !(rc = cfg_get_str(c, "pretrain.out", &str, err)))
    o->out = str;
  if (!rc && !(rc = cfg_get_str(c, "tokenizer.path", &str, err)))
    o->tokdir = str;
  if (!rc && !(rc = cfg_get_list_len(c, "pretrain.train", &n, err)))
    for (int i = 0; !rc && i < n && i < PT_MAX_FILES; i++)
      rc = cfg_get_list_str(c, "pretrain.train", i, &o->train[o->ntrain++], err);
  if (!rc && n > PT_MAX_FILES)
    rc = dfpo_err_set(err, DFPO_EUSAGE, "pretrain.train: more than %d files", PT_MAX_FILES);
  if (!rc && !(rc = cfg_get_list_len(c, "pretrain.validation", &n, err)))
    for (int i = 0; !rc && i < n && i < PT_MAX_FILES; i++)
      rc = cfg_get_list_str(c, "pretrain.validation", i, &o->val[o->nval++], err);
  if (!rc && n > PT_MAX_FILES)
    rc = dfpo_err_set(err, DFPO_EUSAGE, "pretrain.validation: more than %d files", PT_MAX_FILES);
  if (rc)
    return rc;
  if (!o->tokdir[0])
    return dfpo_err_set(err, DFPO_EUSAGE, "pretrain: the config needs tokenizer.path");
  if (!o->ntrain || !o->nval)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "pretrain: the config needs pretrain.train and pretrain.validation");
  if (!o->out[0])
    return dfpo_err_set(err, DFPO_EUSAGE, "pretrain: pretrain.out is empty");
  return DFPO_OK;
}

/* Whether a corpus file is token ids whatever the tokenizer (a name ending
 * in .ids, as `dfpo reproduce` writes its pretraining corpora). */
static int is_ids(const char *path) {
  size_t n = strlen(path);
  return n >= 4 && !strcmp(path + n - 4, ".ids");
}

/* Reads the corpus files of one split into s. */
static int read_split(const char *const *files, int n, tok_tokenizer *tok, int vocab, stream *s,
                      dfpo_err *err) {
  int rc = DFPO_OK;
  for (int i = 0; !rc && i < n; i++)
    rc = tok && !is_ids(files[i]) ? read_text_stream(files[i], tok, s, err)
                                  : read_stream(files[i], vocab, s, err);
  return rc;
}

static int pt_run_locked(const pt_opts *o, const char *conf_json, dfpo_err *err);

/* Trains as o says; conf_json (may be NULL) is written to DIR/config.json.
 * DIR is locked throughout: a second process on it stops (DFPO_ELOCKED). */
static int pt_run(const pt_opts *o, const char *conf_json, dfpo_err *err) {
  dfpo_lock l = {0};
  int rc = dfpo_mkdirs(o->out, err);
  if (!rc && !(rc = dfpo_lock_take(&l, o->out, err)))
    rc = pt_run_locked(o, conf_json, err);
  dfpo_lock_release(&l);
  return rc;
}

/* The resumable checkpoint, after the log lines of the steps it holds are
 * on disk (a resumed run requires them: rundir_log_keep). */
static int save_checkpoint(model_t *m, const char *ckpt_path, FILE *log, const char *log_path,
                           dfpo_err *err) {
  if (rundir_log_sync(log) != 0)
    return dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot sync", log_path);
  return model_save(m, ckpt_path, 1, err);
}

static int pt_run_locked(const pt_opts *o, const char *conf_json, dfpo_err *err) {
  const char *out = o->out;
  char ckpt_path[4096], log_path[4096], conf_path[4096];
  int rc;
  if ((rc = dfpo_path_fmt(ckpt_path, sizeof ckpt_path, err, "%s/checkpoint.bin", out)) ||
      (rc = dfpo_path_fmt(log_path, sizeof log_path, err, "%s/train.jsonl", out)) ||
      (rc = dfpo_path_fmt(conf_path, sizeof conf_path, err, "%s/config.json", out)))
    return rc;
  tok_tokenizer *tok = NULL;
  if (o->tokdir && (rc = tok_load(&tok, o->tokdir, err)))
    return rc;
  model_t *m = NULL;
  struct stat st;
  int resumed = stat(ckpt_path, &st) == 0;
  if (resumed) {
    if (!(rc = model_load(&m, ckpt_path, err)))
      dfpo_info("pretrain: resuming from %s at step %d", ckpt_path, model_step_count(m));
  } else {
    gpt2_config gc;
    if (!(rc = gpt2_config_named(&gc, o->shape ? o->shape : "gpt2-tiny", err))) {
      if (o->nl)
        gc.n_layer = (int)o->nl;
      if (o->nh)
        gc.n_head = (int)o->nh;
      if (o->ne)
        gc.n_embd = (int)o->ne;
      if (o->nc)
        gc.n_ctx = (int)o->nc;
      if (tok)
        gc.vocab_size = (int)tok_vocab_size(tok);
      if (o->nv)
        gc.vocab_size = (int)o->nv;
      rc = gpt2_new(&m, &gc, err);
    }
    if (!rc)
      model_init_random(m, (uint64_t)o->seed);
  }
  if (rc) {
    tok_free(tok);
    return rc;
  }
  const model_config *mc = model_get_config(m);
  stream tr = {0}, va = {0};
  int Bi = (int)o->B, Ti = (int)o->T;
  if (tok && tok_vocab_size(tok) > (size_t)mc->vocab_size)
    rc = dfpo_err_set(err, DFPO_EUSAGE,
                      "the tokenizer %s has %zu ids but the model's vocabulary is %d", o->tokdir,
                      tok_vocab_size(tok), mc->vocab_size);
  if (!rc && Ti > mc->n_ctx)
    rc = dfpo_err_set(err, DFPO_EUSAGE, "--seq %d exceeds the model's n_ctx %d", Ti, mc->n_ctx);
  if (!rc)
    rc = read_split(o->train, o->ntrain, tok, mc->vocab_size, &tr, err);
  if (!rc)
    rc = read_split(o->val, o->nval, tok, mc->vocab_size, &va, err);
  tok_free(tok);
  if (!rc && (tr.n <= (size_t)Ti || va.n <= (size_t)Ti))
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: fewer than --seq + 1 = %d tokens",
                      tr.n <= (size_t)Ti ? o->train[0] : o->val[0], Ti + 1);
  if (!rc)
    dfpo_info("pretrain: %zu training and %zu validation tokens", tr.n, va.n);
  if (!rc && conf_json)
    rc = dfpo_atomic_write_file(conf_path, conf_json, strlen(conf_json), err);
  /* A resumed run keeps the log's lines for the steps before its checkpoint
   * (checked: whole, finite, one per step in order) and rewrites the rest;
   * a new run starts a new log. */
  if (!rc && resumed)
    rc = rundir_log_keep(log_path, "step", model_step_count(m), err);
  FILE *log = rc ? NULL : fopen(log_path, resumed ? "a" : "w");
  if (!rc && !log)
    rc = dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s", log_path);
  int *toks = malloc(sizeof(int) * Bi * Ti), *tgt = malloc(sizeof(int) * Bi * Ti);
  if (!rc && (!toks || !tgt))
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  opt_adamw opt = opt_adamw_default();
  opt.weight_decay = (float)o->wd;
  opt.clip = (float)o->clip;
  opt_lr_schedule sch = {o->kind, (float)o->lr, (float)o->minlr, (int)o->warm, (int)o->steps};
  int total = (int)o->steps, eval_every = (int)o->eval_every, eval_b = (int)o->eval_b,
      ckpt = (int)o->ckpt, stop = (int)o->stop;
  uint64_t seed = (uint64_t)o->seed;
  for (int step = model_step_count(m); !rc && step < total; step++) {
    float loss, norm, lrs = opt_lr_at(&sch, step);
    draw_batch(&tr, Bi, Ti, seed, (uint64_t)step, toks, tgt);
    model_zero_grad(m);
    if ((rc = model_lm_loss_rows(m, toks, tgt, NULL, Bi, Ti, 1, &loss, err)))
      break;
    if (!isfinite(loss)) {
      rc = dfpo_err_set(err, DFPO_ERUNTIME, "loss is %g at step %d; the last good checkpoint is %s",
                        (double)loss, step, ckpt_path);
      break;
    }
    if ((rc = opt_adamw_step(m, &opt, lrs, &norm, err)))
      break;
    fprintf(log, "{\"step\": %d, \"loss\": %.6f, \"lr\": %.8g, \"grad_norm\": %.6f", step,
            (double)loss, (double)lrs, (double)norm);
    int done = step + 1;
    if (done % eval_every == 0 || done == total) {
      double vs = 0;
      for (int k = 0; !rc && k < eval_b; k++) {
        float vl;
        /* the validation windows are the same at every evaluation */
        draw_batch(&va, Bi, Ti, seed, 0xFFFFFFFFull + (uint64_t)k, toks, tgt);
        rc = model_lm_loss_rows(m, toks, tgt, NULL, Bi, Ti, 0, &vl, err);
        vs += vl;
      }
      fprintf(log, ", \"val_loss\": %.6f", vs / eval_b);
      dfpo_info("pretrain: step %d/%d: loss %.4f, validation loss %.4f", done, total, (double)loss,
                vs / eval_b);
    }
    if (fprintf(log, "}\n") < 0 || fflush(log) != 0) {
      rc = dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot write", log_path);
      break;
    }
    if (stop && done >= stop && done < total && done % ckpt != 0) {
      dfpo_info("pretrain: stopping after step %d as asked", done);
      break;
    }
    if (!rc && (done % ckpt == 0 || done == total))
      rc = save_checkpoint(m, ckpt_path, log, log_path, err);
    if (stop && done >= stop)
      break;
    if (!rc && dfpo_interrupted() && done < total) {
      /* Ctrl-C or SIGTERM (dfpo reproduce forwards it): a checkpoint of
       * this step, from which a rerun goes on bit for bit */
      if (done % ckpt != 0)
        rc = save_checkpoint(m, ckpt_path, log, log_path, err);
      if (!rc)
        rc = dfpo_err_set(err, DFPO_EINTR,
                          "pretrain: interrupted after step %d; run it again to resume from %s",
                          done, ckpt_path);
    }
  }
  if (log)
    fclose(log);
  free(toks);
  free(tgt);
  free(tr.ids);
  free(va.ids);
  model_free(m);
  return rc;
}

enum {
  O_TRAIN = 256,
  O_VAL,
  O_OUT,
  O_SHAPE,
  O_NL,
  O_NH,
  O_NE,
  O_NC,
  O_V,
  O_STEPS,
  O_BATCH,
  O_SEQ,
  O_LR,
  O_MINLR,
  O_SCHED,
  O_WARM,
  O_WD,
  O_CLIP,
  O_EVAL,
  O_EVALB,
  O_CKPT,
  O_SEED,
  O_STOP,
  O_CONFIG,
  O_SET,
  O_TOK,
  O_DEVICE
};

int cmd_pretrain(int argc, char **argv) {
  static const struct option opts[] = {{"train", required_argument, NULL, O_TRAIN},
                                       {"val", required_argument, NULL, O_VAL},
                                       {"out", required_argument, NULL, O_OUT},
                                       {"shape", required_argument, NULL, O_SHAPE},
                                       {"n-layer", required_argument, NULL, O_NL},
                                       {"n-head", required_argument, NULL, O_NH},
                                       {"n-embd", required_argument, NULL, O_NE},
                                       {"n-ctx", required_argument, NULL, O_NC},
                                       {"vocab", required_argument, NULL, O_V},
                                       {"steps", required_argument, NULL, O_STEPS},
                                       {"batch", required_argument, NULL, O_BATCH},
                                       {"seq", required_argument, NULL, O_SEQ},
                                       {"lr", required_argument, NULL, O_LR},
                                       {"min-lr", required_argument, NULL, O_MINLR},
                                       {"schedule", required_argument, NULL, O_SCHED},
                                       {"warmup", required_argument, NULL, O_WARM},
                                       {"weight-decay", required_argument, NULL, O_WD},
                                       {"clip", required_argument, NULL, O_CLIP},
                                       {"eval-every", required_argument, NULL, O_EVAL},
                                       {"eval-batches", required_argument, NULL, O_EVALB},
                                       {"ckpt-every", required_argument, NULL, O_CKPT},
                                       {"seed", required_argument, NULL, O_SEED},
                                       {"stop-after", required_argument, NULL, O_STOP},
                                       {"config", required_argument, NULL, O_CONFIG},
                                       {"set", required_argument, NULL, O_SET},
                                       {"tokenizer", required_argument, NULL, O_TOK},
                                       {"device", required_argument, NULL, O_DEVICE},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  pt_opts o = {.shape = "gpt2-tiny",
               .steps = 100,
               .B = 8,
               .T = 64,
               .lr = 6e-4,
               .minlr = 6e-5,
               .warm = 10,
               .wd = 0.1,
               .clip = 1,
               .eval_every = 50,
               .eval_b = 4,
               .ckpt = 50,
               .kind = OPT_LR_COSINE};
  const char *config = NULL, *sets[256], *device = NULL;
  int nsets = 0, other = 0, c, rc = DFPO_OK;
  cli_reset_getopt();
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    other += c >= O_TRAIN && c <= O_TOK && c != O_CONFIG && c != O_SET && c != O_STOP;
    switch (c) {
    case O_CONFIG:
      config = optarg;
      break;
    case O_SET:
      if (nsets == (int)(sizeof sets / sizeof sets[0]))
        return cli_usage_error("pretrain", "too many --set");
      sets[nsets++] = optarg;
      break;
    case O_TOK:
      o.tokdir = optarg;
      break;
    case O_DEVICE:
      device = optarg;
      break;
    case O_TRAIN:
    case O_VAL: {
      int *n = c == O_TRAIN ? &o.ntrain : &o.nval;
      if (*n == PT_MAX_FILES)
        return cli_usage_error("pretrain", "more than %d %s files", PT_MAX_FILES,
                               c == O_TRAIN ? "--train" : "--val");
      (c == O_TRAIN ? o.train : o.val)[(*n)++] = optarg;
      break;
    }
    case O_OUT:
      o.out = optarg;
      break;
    case O_SHAPE:
      o.shape = optarg;
      break;
    case O_NL:
      rc = cli_number("pretrain", optarg, 1, 1024, "--n-layer", &o.nl);
      break;
    case O_NH:
      rc = cli_number("pretrain", optarg, 1, 1024, "--n-head", &o.nh);
      break;
    case O_NE:
      rc = cli_number("pretrain", optarg, 1, 65536, "--n-embd", &o.ne);
      break;
    case O_NC:
      rc = cli_number("pretrain", optarg, 1, 1 << 20, "--n-ctx", &o.nc);
      break;
    case O_V:
      rc = cli_number("pretrain", optarg, 1, 1 << 24, "--vocab", &o.nv);
      break;
    case O_STEPS:
      rc = cli_number("pretrain", optarg, 0, 1 << 30, "--steps", &o.steps);
      break;
    case O_BATCH:
      rc = cli_number("pretrain", optarg, 1, 1 << 16, "--batch", &o.B);
      break;
    case O_SEQ:
      rc = cli_number("pretrain", optarg, 1, 1 << 20, "--seq", &o.T);
      break;
    case O_LR:
      rc = cli_number("pretrain", optarg, 0, 10, "--lr", &o.lr);
      break;
    case O_MINLR:
      rc = cli_number("pretrain", optarg, 0, 10, "--min-lr", &o.minlr);
      break;
    case O_SCHED:
      if (!strcmp(optarg, "constant"))
        o.kind = OPT_LR_CONSTANT;
      else if (!strcmp(optarg, "linear"))
        o.kind = OPT_LR_LINEAR;
      else if (!strcmp(optarg, "cosine"))
        o.kind = OPT_LR_COSINE;
      else
        rc = cli_usage_error("pretrain", "--schedule must be constant, linear or cosine");
      break;
    case O_WARM:
      rc = cli_number("pretrain", optarg, 0, 1 << 30, "--warmup", &o.warm);
      break;
    case O_WD:
      rc = cli_number("pretrain", optarg, 0, 10, "--weight-decay", &o.wd);
      break;
    case O_CLIP:
      rc = cli_number("pretrain", optarg, 0, 1e9, "--clip", &o.clip);
      break;
    case O_EVAL:
      rc = cli_number("pretrain", optarg, 1, 1 << 30, "--eval-every", &o.eval_every);
      break;
    case O_EVALB:
      rc = cli_number("pretrain", optarg, 1, 1 << 20, "--eval-batches", &o.eval_b);
      break;
    case O_CKPT:
      rc = cli_number("pretrain", optarg, 1, 1 << 30, "--ckpt-every", &o.ckpt);
      break;
    case O_SEED:
      rc = cli_number("pretrain", optarg, 0, 4294967295.0, "--seed", &o.seed);
      break;
    case O_STOP:
      rc = cli_number("pretrain", optarg, 1, 1 << 30, "--stop-after", &o.stop);
      break;
    case 'h':
      fputs(pretrain_usage, stdout);
      return DFPO_OK;
    default:
      return cli_bad_option("pretrain", argc, argv, c);
    }
    if (rc)
      return rc;
  }
  if (optind < argc)
    return cli_usage_error("pretrain", "unexpected argument '%s'", argv[optind]);
  dfpo_err err;
  dfpo_err_clear(&err);
  if (config || nsets) {
    if (other)
      return cli_usage_error("pretrain", "--config and --set exclude the other options "
                                         "(but --stop-after and --device): set pretrain.* keys "
                                         "instead");
    cfg conf;
    double stop = o.stop;
    memset(&o, 0, sizeof o);
    o.stop = stop;
    if ((rc = cfg_load(&conf, cfg_schema, config, sets, nsets, &err)))
      return cli_fail(&err);
    if (!device && (rc = cfg_get_str(&conf, "device", &device, &err))) {
      cfg_free(&conf);
      return cli_fail(&err);
    }
    if ((rc = cli_device("pretrain", device))) {
      cfg_free(&conf);
      return rc;
    }
    int64_t threads;
    if ((rc = cfg_get_int(&conf, "threads", &threads, &err))) {
      cfg_free(&conf);
      return cli_fail(&err);
    }
    cli_use_threads(threads);
    char *json = NULL;
    if (!(rc = opts_from_config(&o, &conf, &err))) {
      json = cfg_to_json(&conf);
      rc = json ? pt_run(&o, json, &err) : dfpo_err_set(&err, DFPO_ERUNTIME, "out of memory");
    }
    free(json);
    cfg_free(&conf);
    return rc ? cli_fail(&err) : DFPO_OK;
  }
  if (!o.ntrain || !o.nval || !o.out)
    return cli_usage_error("pretrain", "--train, --val and --out are required (or --config)");
  if ((rc = cli_device("pretrain", device ? device : "cpu")))
    return rc;
  rc = pt_run(&o, NULL, &err);
  return rc ? cli_fail(&err) : DFPO_OK;
}
