#include "harness/cli.h"
#include "harness/config.h"
#include "harness/rundir.h"
#include "trainer/gpt2.h"
#include "trainer/model.h"
#include "trainer/optim.h"
#include "trainer/t5.h"
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
    "Trains a GPT-2 (or, with --arch t5 / model.arch t5, a T5: below) from scratch\n"
    "on a corpus. With a tokenizer the corpus is text:\n"
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
    "A T5 (v1.0: ReLU feed-forward, head tied to the embeddings; v1.1 with\n"
    "model.t5.feed_forward gated-gelu) trains on source/target pairs: each line of\n"
    "a corpus file is SOURCE<TAB>TARGET, text with a tokenizer (T5's spiece.model\n"
    "folder), else (or in a file named *.ids) token ids; each side is cut to\n"
    "--seq - 1 tokens (the source) or --n-ctx - 1 (the target, the decoder's\n"
    "positions) and ended with </s>. Every step draws --batch pairs from the data\n"
    "stream of (seed, step); with --span-fraction X a share X of the rows is T5's\n"
    "span corruption of the pair's target instead (15% of its tokens in spans of\n"
    "mean length 3, each span replaced by a sentinel <extra_id_N> in the source;\n"
    "the target the sentinels and their spans), else the pair itself. The loss is\n"
    "the mean cross-entropy of the target tokens and </s>. --n-embd is d_model,\n"
    "--n-head the heads, --n-layer the encoder's and decoder's layers; d_kv is\n"
    "d_model / heads, d_ff 4 d_model, 32 relative buckets up to distance 128\n"
    "(with --config: model.t5.*). Defaults: 2 layers, 4 heads, d_model 128, 64\n"
    "decoder positions.\n"
    "\n"
    "With --config (and --set overrides, docs/configs.md) the run is described by\n"
    "the pretrain.* keys, the architecture by model.arch, the shape by model.n_layer,\n"
    "model.n_head, model.n_embd and model.block_size (and model.t5.* for a T5), the\n"
    "tokenizer by tokenizer.path (required); the vocabulary\n"
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
    "  --tokenizer DIR     GPT-2 BPE files (a T5: spiece.model): the corpus is text,\n"
    "                      the vocabulary (unless --vocab) the tokenizer's\n"
    "  --arch A            gpt2 (default) or t5\n"
    "  --span-fraction X   T5: the share of rows that are span corruption (default 0)\n"
    "  --train FILE        training corpus (repeatable)\n"
    "  --val FILE          validation corpus (repeatable)\n"
    "  --out DIR           where the checkpoint and the log go\n"
    "  --shape NAME        GPT-2: gpt2-tiny (default), gpt2-124M, ...; or set the sizes:\n"
    "  --n-layer N --n-head N --n-embd N --n-ctx N --vocab N\n"
    "  --steps N           optimiser steps in all (default 100)\n"
    "  --batch B --seq T   rows and tokens per step (default 8 x 64; a T5: the\n"
    "                      source's tokens with </s>)\n"
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
    "                      with the driver's reason when none is (the CUDA\n"
    "                      backend's checks on a GPU: docs/cuda.md)\n"
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
  int t5; /* model.arch t5: an encoder-decoder on source/target pairs */
  double dkv, dff, ndl, buckets, maxdist, span; /* T5's shape (0: derived) and span_fraction */
  int gated;
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

/* Whether a corpus file is token ids whatever the tokenizer (a name ending
 * in .ids, as `dfpo reproduce` writes its pretraining corpora). */
static int is_ids(const char *path) {
  size_t n = strlen(path);
  return n >= 4 && !strcmp(path + n - 4, ".ids");
}

/* ------------------------------------------------------------- T5 pairs */

/* A T5 corpus: source/target pairs, each side's ids in ids[] (without
 * </s>). */
typedef struct pairs {
  int *ids;
  size_t n_ids, cap;
  size_t *at; /* per pair: source offset, source length, target offset, target length */
  size_t n, at_cap;
} pairs;

static int pairs_add(pairs *p, const int *src, size_t ns, const int *tgt, size_t nt,
                     dfpo_err *err) {
  int rc = dfpo_grow(&p->ids, &p->cap, p->n_ids + ns + nt, sizeof *p->ids, 4096, DFPO_NOCAP, err);
  if (!rc)
    rc = dfpo_grow(&p->at, &p->at_cap, 4 * (p->n + 1), sizeof *p->at, 4096, DFPO_NOCAP, err);
  if (rc)
    return rc;
  size_t *a = p->at + 4 * p->n++;
  a[0] = p->n_ids, a[1] = ns;
  memcpy(p->ids + p->n_ids, src, ns * sizeof *src);
  p->n_ids += ns;
  a[2] = p->n_ids, a[3] = nt;
  memcpy(p->ids + p->n_ids, tgt, nt * sizeof *tgt);
  p->n_ids += nt;
  return DFPO_OK;
}

/* Whitespace-separated ids of s[0..len) below vocab into *v. */
static int parse_ids(const char *s, size_t len, int vocab, stream *v, const char *path, long lineno,
                     dfpo_err *err) {
  char *copy = strndup(s, len), *p = copy, *end;
  int rc = copy ? DFPO_OK : dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  v->n = 0;
  while (!rc) {
    while (isspace((unsigned char)*p))
      p++;
    if (!*p)
      break;
    errno = 0;
    long x = strtol(p, &end, 10);
    if (end == p || errno || x < 0 || x >= vocab || (*end && !isspace((unsigned char)*end))) {
      rc = dfpo_err_set(err, DFPO_EDATA, "%s:%ld: not a token id below %d", path, lineno, vocab);
      break;
    }
    rc = stream_push(v, (int)x, err);
    p = end;
  }
  free(copy);
  return rc;
}

/* Appends the pairs of a T5 corpus file: each line SOURCE<TAB>TARGET, text
 * encoded with tok, or token ids (no tokenizer, or a name ending in .ids).
 * Blank lines are skipped; a pair with an empty side is an error. */
static int read_pairs(const char *path, tok_tokenizer *tok, int vocab, pairs *ps, dfpo_err *err) {
  FILE *fp = fopen(path, "r");
  if (!fp)
    return dfpo_err_errno(err, DFPO_EDATA, errno, "%s", path);
  char *line = NULL;
  size_t lcap = 0;
  ssize_t got;
  long lineno = 0;
  int rc = DFPO_OK, text = tok && !is_ids(path);
  stream sv = {0}, tv = {0};
  while (!rc && (got = getline(&line, &lcap, fp)) != -1) {
    lineno++;
    size_t len = (size_t)got;
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
      len--;
    if (!len)
      continue;
    char *tab = memchr(line, '\t', len);
    if (!tab) {
      rc = dfpo_err_set(err, DFPO_EDATA, "%s:%ld: not SOURCE<TAB>TARGET", path, lineno);
      break;
    }
    size_t ls = (size_t)(tab - line), lt = len - ls - 1;
    if (text) {
      tok_ids a = {0}, b = {0};
      if (!(rc = tok_encode(tok, line, ls, 0, &a, err)) &&
          !(rc = tok_encode(tok, tab + 1, lt, 0, &b, err))) {
        if (!a.n || !b.n)
          rc = dfpo_err_set(err, DFPO_EDATA, "%s:%ld: the %s encodes to nothing", path, lineno,
                            a.n ? "target" : "source");
        else
          rc = pairs_add(ps, a.ids, a.n, b.ids, b.n, err);
      }
      tok_ids_free(&a);
      tok_ids_free(&b);
      if (rc)
        dfpo_err_prefix(err, "%s:%ld", path, lineno);
    } else if (!(rc = parse_ids(line, ls, vocab, &sv, path, lineno, err)) &&
               !(rc = parse_ids(tab + 1, lt, vocab, &tv, path, lineno, err))) {
      rc = !sv.n || !tv.n ? dfpo_err_set(err, DFPO_EDATA, "%s:%ld: an empty %s", path, lineno,
                                         sv.n ? "target" : "source")
                          : pairs_add(ps, sv.ids, sv.n, tv.ids, tv.n, err);
    }
  }
  free(sv.ids);
  free(tv.ids);
  free(line);
  fclose(fp);
  return rc;
}

/* What a T5 step needs besides the pairs. */
typedef struct t5_rows {
  int eos, pad;
  int sentinel0, n_sentinels; /* <extra_id_0>'s id; the ids below it are <extra_id_1>, ... */
  int max_src, max_tgt;       /* the source's tokens and </s> (pretrain.seq_len); the decoder's */
  double span;                /* the share of rows that are span corruption */
  int *src, *tgt;             /* one row's source and target while it is built */
} t5_rows;

/* harness/cli.h says what this draws. */
void cmd_pretrain_span_corrupt(const int *doc, int n, dfpo_rng *r, int sentinel0, int n_sentinels,
                               int *src, int *ns, int *tgt, int *nt) {
  int noise = (int)lround(n * 0.15);
  if (noise < 1)
    noise = 1;
  if (noise > n - 1)
    noise = n - 1;
  int spans = (int)lround(noise / 3.0);
  if (spans < 1)
    spans = 1;
  if (spans > n_sentinels)
    spans = n_sentinels;
  if (spans > n - noise)
    spans = n - noise;
  /* k segments of m items: k - 1 distinct cuts among 1..m-1 */
  int cut_noise[128], cut_keep[128];
  for (int which = 0; which < 2; which++) {
    int m = which ? n - noise : noise, *cut = which ? cut_keep : cut_noise, pool[512];
    int np = m - 1 < 512 ? m - 1 : 511;
    for (int i = 0; i < np; i++)
      pool[i] = i + 1;
    for (int i = 0; i < spans - 1; i++) {
      int j = i + (int)dfpo_rng_below(r, (uint32_t)(np - i));
      int t = pool[i];
      pool[i] = pool[j], pool[j] = t;
    }
    /* sorted: an insertion sort of at most 127 */
    for (int i = 1; i < spans - 1; i++)
      for (int j = i; j > 0 && pool[j - 1] > pool[j]; j--) {
        int t = pool[j];
        pool[j] = pool[j - 1], pool[j - 1] = t;
      }
    cut[0] = 0;
    for (int i = 0; i < spans - 1; i++)
      cut[i + 1] = pool[i];
    cut[spans] = m;
  }
  int at = 0;
  *ns = *nt = 0;
  for (int k = 0; k < spans; k++) {
    for (int i = cut_keep[k]; i < cut_keep[k + 1]; i++)
      src[(*ns)++] = doc[at++];
    src[(*ns)++] = sentinel0 - k;
    tgt[(*nt)++] = sentinel0 - k;
    for (int i = cut_noise[k]; i < cut_noise[k + 1]; i++)
      tgt[(*nt)++] = doc[at++];
  }
}

/* B pairs drawn from (seed, key) as T5 rows [source, left-padded | target
 * </s>, right-padded]: *tok [B, *T] with *Tp source columns, *ks the
 * padding, *tg the targets on the model's grid (-1 where none). Each row is
 * a span corruption of the pair's target with probability w->span, else the
 * pair itself; the source is cut to w->max_src - 1 tokens and the target
 * to w->max_tgt - 1, each then ended with </s>. The buffers grow as
 * needed (caller frees). */
static int draw_pairs(const pairs *ps, int B, uint64_t seed, uint64_t key, t5_rows *w, int **tok,
                      int **tg, int **ks, size_t *cap, int *T, int *Tp, dfpo_err *err) {
  dfpo_rng r;
  dfpo_rng_init(&r, seed * 0x9E3779B97F4A7C15ull + key, DFPO_STREAM_DATA);
  int Ls = w->max_src, Lt = w->max_tgt;
  int *rows = malloc(sizeof(int) * (size_t)B * (size_t)(Ls + Lt)),
      *len = malloc(sizeof(int) * 2 * B);
  if (!rows || !len) {
    free(rows), free(len);
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  }
  int ms = 1, mt = 1;
  for (int b = 0; b < B; b++) {
    const size_t *a = ps->at + 4 * dfpo_rng_below(&r, (uint32_t)ps->n);
    const int *s = ps->ids + a[0], *t = ps->ids + a[2];
    int n_s = (int)a[1], n_t = (int)a[3], *src = rows + (size_t)b * (Ls + Lt), *tgt = src + Ls;
    int draw = w->span > 0 && dfpo_rng_uniform(&r) < w->span;
    if (draw && n_t >= 2 && w->n_sentinels > 0) {
      /* the document: the target, cut so that it and its sentinels fit */
      int n = n_t < Ls - 1 ? n_t : Ls - 1;
      if (n > Lt - 1)
        n = Lt - 1;
      if (n >= 2) {
        cmd_pretrain_span_corrupt(t, n, &r, w->sentinel0, w->n_sentinels, w->src, &n_s, w->tgt,
                                  &n_t);
        s = w->src, t = w->tgt;
      }
    }
    if (n_s > Ls - 1)
      n_s = Ls - 1;
    if (n_t > Lt - 1)
      n_t = Lt - 1;
    memcpy(src, s, sizeof(int) * (size_t)n_s);
    src[n_s++] = w->eos;
    memcpy(tgt, t, sizeof(int) * (size_t)n_t);
    tgt[n_t++] = w->eos;
    len[2 * b] = n_s, len[2 * b + 1] = n_t;
    ms = n_s > ms ? n_s : ms;
    mt = n_t > mt ? n_t : mt;
  }
  *Tp = ms;
  *T = ms + mt;
  int rc = DFPO_OK;
  size_t need = (size_t)B * (size_t)*T;
  if (need > *cap) {
    int *a = realloc(*tok, need * sizeof(int)), *c = a ? realloc(*tg, need * sizeof(int)) : NULL;
    if (a)
      *tok = a;
    if (c)
      *tg = c;
    if (!a || !c)
      rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    else
      *cap = need;
  }
  for (int b = 0; !rc && b < B; b++) {
    const int *src = rows + (size_t)b * (Ls + Lt), *tgt = src + Ls;
    int n_s = len[2 * b], n_t = len[2 * b + 1];
    (*ks)[b] = ms - n_s;
    for (int c = 0; c < *T; c++) {
      int j = c - ms;
      (*tok)[b * *T + c] = c < ms    ? (c < ms - n_s ? w->pad : src[c - (ms - n_s)])
                           : j < n_t ? tgt[j]
                                     : w->pad;
      j = c - (ms - 1);
      (*tg)[b * *T + c] = j >= 0 && j < n_t ? tgt[j] : -1;
    }
  }
  free(rows), free(len);
  return rc;
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
  NUM("pretrain.span_fraction", span);
  INT("model.t5.d_kv", dkv);
  INT("model.t5.d_ff", dff);
  INT("model.t5.decoder_layers", ndl);
  INT("model.t5.num_buckets", buckets);
  INT("model.t5.max_distance", maxdist);
#undef INT
#undef NUM
  if (!rc && !(rc = cfg_get_str(c, "pretrain.lr_schedule", &str, err)))
    o->kind = !strcmp(str, "constant") ? OPT_LR_CONSTANT
              : !strcmp(str, "linear") ? OPT_LR_LINEAR
                                       : OPT_LR_COSINE;
  if (!rc && !(rc = cfg_get_str(c, "model.arch", &str, err)))
    o->t5 = !strcmp(str, "t5");
  if (!rc && !(rc = cfg_get_str(c, "model.t5.feed_forward", &str, err)))
    o->gated = !strcmp(str, "gated-gelu");
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
  } else if (o->t5) {
    /* T5 v1.0 (relu, tied head) or v1.1 (gated-gelu, untied), T5's ids */
    int ne = o->ne ? (int)o->ne : 128, nh = o->nh ? (int)o->nh : 4;
    t5_config tc = {.vocab_size = tok ? (int)tok_vocab_size(tok) : 0,
                    .d_model = ne,
                    .d_kv = o->dkv ? (int)o->dkv : (ne / nh > 0 ? ne / nh : 1),
                    .d_ff = o->dff ? (int)o->dff : 4 * ne,
                    .n_head = nh,
                    .n_layer = o->nl ? (int)o->nl : 2,
                    .n_dec_layer = o->ndl ? (int)o->ndl : (o->nl ? (int)o->nl : 2),
                    .num_buckets = o->buckets ? (int)o->buckets : 32,
                    .max_distance = o->maxdist ? (int)o->maxdist : 128,
                    .eps = 1e-6f,
                    .gated = o->gated,
                    .tied = !o->gated,
                    .n_pos = o->nc ? (int)o->nc : 64,
                    .start_id = 0,
                    .eos_id = 1};
    if (o->nv)
      tc.vocab_size = (int)o->nv;
    if (!tc.vocab_size)
      rc = dfpo_err_set(err, DFPO_EUSAGE, "pretrain: a T5 needs --vocab or a tokenizer");
    if (!rc && !(rc = t5_config_check(&tc, "pretrain", err)))
      rc = t5_new(&m, &tc, err);
    if (!rc)
      model_init_random(m, (uint64_t)o->seed);
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
  int is_t5 = t5_get_config(m) != NULL;
  stream tr = {0}, va = {0};
  pairs ptr = {0}, pva = {0};
  t5_rows w = {.eos = 1, .pad = 0, .span = o->span};
  int Bi = (int)o->B, Ti = (int)o->T;
  if (is_t5 != o->t5)
    rc = dfpo_err_set(err, DFPO_EUSAGE, "%s holds a %s but model.arch (--arch) is %s", ckpt_path,
                      mc->arch, o->t5 ? "t5" : "gpt2");
  if (!rc && tok && tok_vocab_size(tok) > (size_t)mc->vocab_size)
    rc = dfpo_err_set(err, DFPO_EUSAGE,
                      "the tokenizer %s has %zu ids but the model's vocabulary is %d", o->tokdir,
                      tok_vocab_size(tok), mc->vocab_size);
  if (!rc && !is_t5 && Ti > mc->n_ctx)
    rc = dfpo_err_set(err, DFPO_EUSAGE, "--seq %d exceeds the model's n_ctx %d", Ti, mc->n_ctx);
  if (!rc && is_t5) {
    /* </s> ends each side; the sentinels are the extra ids from
     * <extra_id_0> down (a tokenizer's, else the vocabulary's top 100) */
    w.max_src = Ti;
    w.max_tgt = mc->n_ctx;
    w.eos = t5_get_config(m)->eos_id >= 0 ? t5_get_config(m)->eos_id : 1;
    w.sentinel0 = mc->vocab_size - 1;
    w.n_sentinels = 100;
    if (tok) {
      w.eos = (int)tok_eot_id(tok);
      w.sentinel0 = (int)tok_token_id(tok, "<extra_id_0>", 12);
      w.n_sentinels = 0;
      for (char name[32]; w.sentinel0 >= 0 && w.n_sentinels < 100; w.n_sentinels++) {
        int k = snprintf(name, sizeof name, "<extra_id_%d>", w.n_sentinels);
        if (tok_token_id(tok, name, (size_t)k) != w.sentinel0 - w.n_sentinels)
          break;
      }
    }
    if (w.eos < 0)
      rc = dfpo_err_set(err, DFPO_EUSAGE, "the tokenizer %s has no </s> to end a T5's sequences",
                        o->tokdir);
    else if (o->span > 0 && w.n_sentinels == 0)
      rc = dfpo_err_set(err, DFPO_EUSAGE,
                        "pretrain.span_fraction (--span-fraction) needs the tokenizer's "
                        "<extra_id_N> sentinels; %s has none",
                        o->tokdir);
    else if (Ti < 2)
      rc = dfpo_err_set(err, DFPO_EUSAGE, "--seq %d leaves a T5 source no token before </s>", Ti);
    w.src = malloc(sizeof(int) * (size_t)(Ti + mc->n_ctx + 2));
    w.tgt = malloc(sizeof(int) * (size_t)(Ti + mc->n_ctx + 2));
    if (!rc && (!w.src || !w.tgt))
      rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    for (int i = 0; !rc && i < o->ntrain; i++)
      rc = read_pairs(o->train[i], tok, mc->vocab_size, &ptr, err);
    for (int i = 0; !rc && i < o->nval; i++)
      rc = read_pairs(o->val[i], tok, mc->vocab_size, &pva, err);
    if (!rc && (!ptr.n || !pva.n))
      rc = dfpo_err_set(err, DFPO_EDATA, "%s: no source/target pairs",
                        !ptr.n ? o->train[0] : o->val[0]);
    if (!rc)
      dfpo_info("pretrain: %zu training and %zu validation pairs (T5, %.0f%% of the rows span "
                "corruption)",
                ptr.n, pva.n, 100 * o->span);
  } else if (!rc) {
    if (!rc)
      rc = read_split(o->train, o->ntrain, tok, mc->vocab_size, &tr, err);
    if (!rc)
      rc = read_split(o->val, o->nval, tok, mc->vocab_size, &va, err);
    if (!rc && (tr.n <= (size_t)Ti || va.n <= (size_t)Ti))
      rc = dfpo_err_set(err, DFPO_EDATA, "%s: fewer than --seq + 1 = %d tokens",
                        tr.n <= (size_t)Ti ? o->train[0] : o->val[0], Ti + 1);
    if (!rc)
      dfpo_info("pretrain: %zu training and %zu validation tokens", tr.n, va.n);
  }
  tok_free(tok);
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
  int *ks = malloc(sizeof(int) * Bi), Tb = Ti, Tp = 0;
  size_t cap = (size_t)Bi * (size_t)Ti;
  if (!rc && (!toks || !tgt || !ks))
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
    model_zero_grad(m);
    if (is_t5) {
      if ((rc = draw_pairs(&ptr, Bi, seed, (uint64_t)step, &w, &toks, &tgt, &ks, &cap, &Tb, &Tp,
                           err)))
        break;
      model_batch mb = {toks, ks, Bi, Tb, Tp, Tp - 1}; /* the head at the decoder's outputs */
      if ((rc = model_lm_loss(m, &mb, tgt, 1, &loss, err)))
        break;
    } else {
      draw_batch(&tr, Bi, Ti, seed, (uint64_t)step, toks, tgt);
      if ((rc = model_lm_loss_rows(m, toks, tgt, NULL, Bi, Ti, 1, &loss, err)))
        break;
    }
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
        /* the validation windows (rows) are the same at every evaluation */
        if (is_t5) {
          if (!(rc = draw_pairs(&pva, Bi, seed, 0xFFFFFFFFull + (uint64_t)k, &w, &toks, &tgt, &ks,
                                &cap, &Tb, &Tp, err))) {
            model_batch mb = {toks, ks, Bi, Tb, Tp, Tp - 1}; /* the head at the decoder's outputs */
            rc = model_lm_loss(m, &mb, tgt, 0, &vl, err);
          }
        } else {
          draw_batch(&va, Bi, Ti, seed, 0xFFFFFFFFull + (uint64_t)k, toks, tgt);
          rc = model_lm_loss_rows(m, toks, tgt, NULL, Bi, Ti, 0, &vl, err);
        }
        vs += rc ? 0 : vl;
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
  free(ks);
  free(w.src);
  free(w.tgt);
  free(tr.ids);
  free(va.ids);
  free(ptr.ids), free(ptr.at);
  free(pva.ids), free(pva.at);
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
  O_DEVICE,
  O_ARCH,
  O_SPAN
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
                                       {"arch", required_argument, NULL, O_ARCH},
                                       {"span-fraction", required_argument, NULL, O_SPAN},
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
    other += ((c >= O_TRAIN && c <= O_TOK) || c == O_ARCH || c == O_SPAN) && c != O_CONFIG &&
             c != O_SET && c != O_STOP;
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
    case O_ARCH:
      if (!strcmp(optarg, "t5") || !strcmp(optarg, "gpt2"))
        o.t5 = !strcmp(optarg, "t5");
      else
        rc = cli_usage_error("pretrain", "--arch must be gpt2 or t5");
      break;
    case O_SPAN:
      rc = cli_number("pretrain", optarg, 0, 1, "--span-fraction", &o.span);
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
