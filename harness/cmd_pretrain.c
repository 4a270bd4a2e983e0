#include "harness/cli.h"
#include "trainer/trainer.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char pretrain_usage[] =
    "Usage: dfpo pretrain --train FILE --val FILE --out DIR [options]\n"
    "\n"
    "Trains a GPT-2 from scratch on token ids (whitespace-separated; each line a\n"
    "document, joined by <|endoftext|> when the vocabulary has it). Text corpora\n"
    "and --config arrive with the tokenizer. Every step draws --batch windows of\n"
    "--seq + 1 tokens at offsets from the data stream of (seed, step), so a run\n"
    "resumed from its checkpoint repeats an uninterrupted one bit for bit.\n"
    "\n"
    "Writes into DIR: checkpoint.bin (native, with the AdamW state; every\n"
    "--ckpt-every steps and at the end), train.jsonl (one line per step: step,\n"
    "loss, lr, grad_norm, and val_loss every --eval-every steps). When DIR holds a\n"
    "checkpoint, training resumes from it (its shape wins over the options).\n"
    "\n"
    "Options:\n"
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
    "  -h, --help          show this help\n";

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
      if (s->n + 2 > s->cap) {
        s->cap = s->cap ? 2 * s->cap : 4096;
        int *g = realloc(s->ids, s->cap * sizeof(int));
        if (!g) {
          rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
          break;
        }
        s->ids = g;
      }
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

/* Keeps the lines of train.jsonl for steps before `step` (a resumed run
 * rewrites the steps after its checkpoint). */
static int trim_log(const char *path, int step, dfpo_err *err) {
  char *text;
  size_t len;
  if (dfpo_read_file(path, &text, &len, NULL) != DFPO_OK)
    return DFPO_OK;
  char *out = malloc(len + 1);
  size_t ol = 0;
  for (char *line = text; *line;) {
    char *nl = strchr(line, '\n');
    size_t ll = nl ? (size_t)(nl - line) + 1 : strlen(line);
    cJSON *o = cJSON_ParseWithLength(line, ll);
    const cJSON *st = cJSON_GetObjectItem(o, "step");
    if (cJSON_IsNumber(st) && st->valueint < step) {
      memcpy(out + ol, line, ll);
      ol += ll;
    }
    cJSON_Delete(o);
    line += ll;
  }
  int rc = dfpo_atomic_write_file(path, out, ol, err);
  free(out);
  free(text);
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
  O_STOP
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
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *train = NULL, *val = NULL, *out = NULL, *shape = "gpt2-tiny";
  double nl = 0, nh = 0, ne = 0, nc = 0, nv = 0, steps = 100, B = 8, T = 64, lr = 6e-4,
         minlr = 6e-5, warm = 10, wd = 0.1, clip = 1, eval_every = 50, eval_b = 4, ckpt = 50,
         seed = 0, stop = 0;
  int kind = GPT2_LR_COSINE, c, rc = DFPO_OK;
  cli_reset_getopt();
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    switch (c) {
    case O_TRAIN:
      train = optarg;
      break;
    case O_VAL:
      val = optarg;
      break;
    case O_OUT:
      out = optarg;
      break;
    case O_SHAPE:
      shape = optarg;
      break;
    case O_NL:
      rc = cli_number("pretrain", optarg, 1, 1024, "--n-layer", &nl);
      break;
    case O_NH:
      rc = cli_number("pretrain", optarg, 1, 1024, "--n-head", &nh);
      break;
    case O_NE:
      rc = cli_number("pretrain", optarg, 1, 65536, "--n-embd", &ne);
      break;
    case O_NC:
      rc = cli_number("pretrain", optarg, 1, 1 << 20, "--n-ctx", &nc);
      break;
    case O_V:
      rc = cli_number("pretrain", optarg, 1, 1 << 24, "--vocab", &nv);
      break;
    case O_STEPS:
      rc = cli_number("pretrain", optarg, 0, 1 << 30, "--steps", &steps);
      break;
    case O_BATCH:
      rc = cli_number("pretrain", optarg, 1, 1 << 16, "--batch", &B);
      break;
    case O_SEQ:
      rc = cli_number("pretrain", optarg, 1, 1 << 20, "--seq", &T);
      break;
    case O_LR:
      rc = cli_number("pretrain", optarg, 0, 10, "--lr", &lr);
      break;
    case O_MINLR:
      rc = cli_number("pretrain", optarg, 0, 10, "--min-lr", &minlr);
      break;
    case O_SCHED:
      if (!strcmp(optarg, "constant"))
        kind = GPT2_LR_CONSTANT;
      else if (!strcmp(optarg, "linear"))
        kind = GPT2_LR_LINEAR;
      else if (!strcmp(optarg, "cosine"))
        kind = GPT2_LR_COSINE;
      else
        rc = cli_usage_error("pretrain", "--schedule must be constant, linear or cosine");
      break;
    case O_WARM:
      rc = cli_number("pretrain", optarg, 0, 1 << 30, "--warmup", &warm);
      break;
    case O_WD:
      rc = cli_number("pretrain", optarg, 0, 10, "--weight-decay", &wd);
      break;
    case O_CLIP:
      rc = cli_number("pretrain", optarg, 0, 1e9, "--clip", &clip);
      break;
    case O_EVAL:
      rc = cli_number("pretrain", optarg, 1, 1 << 30, "--eval-every", &eval_every);
      break;
    case O_EVALB:
      rc = cli_number("pretrain", optarg, 1, 1 << 20, "--eval-batches", &eval_b);
      break;
    case O_CKPT:
      rc = cli_number("pretrain", optarg, 1, 1 << 30, "--ckpt-every", &ckpt);
      break;
    case O_SEED:
      rc = cli_number("pretrain", optarg, 0, 4294967295.0, "--seed", &seed);
      break;
    case O_STOP:
      rc = cli_number("pretrain", optarg, 1, 1 << 30, "--stop-after", &stop);
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
  if (!train || !val || !out)
    return cli_usage_error("pretrain", "--train, --val and --out are required");

  dfpo_err err;
  dfpo_err_clear(&err);
  char ckpt_path[4096], log_path[4096];
  snprintf(ckpt_path, sizeof ckpt_path, "%s/checkpoint.bin", out);
  snprintf(log_path, sizeof log_path, "%s/train.jsonl", out);
  if ((rc = dfpo_mkdirs(out, &err)))
    return cli_fail(&err);
  gpt2_model *m = NULL;
  struct stat st;
  int resumed = stat(ckpt_path, &st) == 0;
  if (resumed) {
    if ((rc = gpt2_load(&m, ckpt_path, &err)))
      return cli_fail(&err);
    dfpo_info("pretrain: resuming from %s at step %d", ckpt_path, gpt2_step_count(m));
  } else {
    gpt2_config cfg;
    if ((rc = gpt2_config_named(&cfg, shape, &err)))
      return cli_fail(&err);
    if (nl)
      cfg.n_layer = (int)nl;
    if (nh)
      cfg.n_head = (int)nh;
    if (ne)
      cfg.n_embd = (int)ne;
    if (nc)
      cfg.n_ctx = (int)nc;
    if (nv)
      cfg.vocab_size = (int)nv;
    if ((rc = gpt2_new(&m, &cfg, &err)))
      return cli_fail(&err);
    gpt2_init_random(m, (uint64_t)seed);
  }
  const gpt2_config *cfg = gpt2_get_config(m);
  stream tr = {0}, va = {0};
  int Bi = (int)B, Ti = (int)T;
  if (Ti > cfg->n_ctx)
    rc = dfpo_err_set(&err, DFPO_EUSAGE, "--seq %d exceeds the model's n_ctx %d", Ti, cfg->n_ctx);
  if (!rc)
    rc = read_stream(train, cfg->vocab_size, &tr, &err);
  if (!rc)
    rc = read_stream(val, cfg->vocab_size, &va, &err);
  if (!rc && (tr.n <= (size_t)Ti || va.n <= (size_t)Ti))
    rc = dfpo_err_set(&err, DFPO_EDATA, "%s: fewer than --seq + 1 = %d tokens",
                      tr.n <= (size_t)Ti ? train : val, Ti + 1);
  if (!rc && resumed)
    rc = trim_log(log_path, gpt2_step_count(m), &err);
  FILE *log = rc ? NULL : fopen(log_path, "a");
  if (!rc && !log)
    rc = dfpo_err_errno(&err, DFPO_ERUNTIME, errno, "%s", log_path);
  int *tok = malloc(sizeof(int) * Bi * Ti), *tgt = malloc(sizeof(int) * Bi * Ti);
  gpt2_adamw opt = gpt2_adamw_default();
  opt.weight_decay = (float)wd;
  opt.clip = (float)clip;
  gpt2_lr_schedule sch = {kind, (float)lr, (float)minlr, (int)warm, (int)steps};
  int total = (int)steps;
  for (int step = gpt2_step_count(m); !rc && step < total; step++) {
    float loss, norm, lrs = gpt2_lr_at(&sch, step);
    draw_batch(&tr, Bi, Ti, (uint64_t)seed, (uint64_t)step, tok, tgt);
    gpt2_zero_grad(m);
    if ((rc = gpt2_lm_loss(m, tok, tgt, NULL, Bi, Ti, 1, &loss, &err)))
      break;
    if (!isfinite(loss)) {
      rc =
          dfpo_err_set(&err, DFPO_ERUNTIME, "loss is %g at step %d; the last good checkpoint is %s",
                       (double)loss, step, ckpt_path);
      break;
    }
    if ((rc = gpt2_adamw_step(m, &opt, lrs, &norm, &err)))
      break;
    fprintf(log, "{\"step\": %d, \"loss\": %.6f, \"lr\": %.8g, \"grad_norm\": %.6f", step,
            (double)loss, (double)lrs, (double)norm);
    int done = step + 1;
    if (done % (int)eval_every == 0 || done == total) {
      double vs = 0;
      for (int k = 0; !rc && k < (int)eval_b; k++) {
        float vl;
        /* the validation windows are the same at every evaluation */
        draw_batch(&va, Bi, Ti, (uint64_t)seed, 0xFFFFFFFFull + (uint64_t)k, tok, tgt);
        rc = gpt2_lm_loss(m, tok, tgt, NULL, Bi, Ti, 0, &vl, &err);
        vs += vl;
      }
      fprintf(log, ", \"val_loss\": %.6f", vs / eval_b);
      dfpo_info("pretrain: step %d/%d: loss %.4f, validation loss %.4f", done, total, (double)loss,
                vs / eval_b);
    }
    fprintf(log, "}\n");
    fflush(log);
    if (stop && done >= (int)stop && done < total && done % (int)ckpt != 0) {
      dfpo_info("pretrain: stopping after step %d as asked", done);
      break;
    }
    if (!rc && (done % (int)ckpt == 0 || done == total))
      rc = gpt2_save(m, ckpt_path, 1, &err);
    if (stop && done >= (int)stop)
      break;
  }
  if (log)
    fclose(log);
  free(tok);
  free(tgt);
  free(tr.ids);
  free(va.ids);
  gpt2_free(m);
  return rc ? cli_fail(&err) : DFPO_OK;
}
