/* `dfpo pretrain` on token ids: a tiny model learns a repeating corpus
 * (validation loss falls), and a run stopped mid-way and resumed from its
 * checkpoint ends bit-identical to an uninterrupted one. */
#include "common/common.h"
#include "harness/cli.h"
#include "tests/support/support.h"
#include "trainer/model.h"
#include "trainer/t5.h"
#include "trainer/tok.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void corpus(const char *path, int lines, int shift) {
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  for (int l = 0; l < lines; l++) {
    for (int t = 0; t < 40; t++)
      fprintf(f, "%d ", (l * 3 + t * 7 + shift) % 23 + (t % 5 == 0 ? 23 : 0));
    fputc('\n', f);
  }
  fclose(f);
}

/* dfpo pretrain with the shape and schedule every test here uses; r's
 * status and stderr are the caller's to look at and free. */
static void run_r(ts_run *r, const char *train, const char *val, const char *out,
                  const char *stop) {
  ts_dfpo(r, "pretrain", "--train", train, "--val", val, "--out", out, "--vocab", "50", "--n-layer",
          "1", "--n-head", "2", "--n-embd", "32", "--n-ctx", "32", "--steps", "40", "--batch", "4",
          "--seq", "16", "--lr", "3e-3", "--warmup", "5", "--eval-every", "20", "--ckpt-every",
          "20", "--seed", "5", stop ? "--stop-after" : NULL, stop, NULL);
}

static void run(const char *train, const char *val, const char *out, const char *stop) {
  ts_run r;
  run_r(&r, train, val, out, stop);
  cr_assert_eq(r.status, 0, "dfpo pretrain failed: %s", r.err);
  ts_run_free(&r);
}

Test(pretrain, learns_and_resumes_bit_identically) {
  char dir[256], train[300], val[300], a[300], b[300], ca[320], cb[320], la[320], lb[320];
  ts_tmpdir(dir, sizeof dir);
  snprintf(train, sizeof train, "%s/train.txt", dir);
  snprintf(val, sizeof val, "%s/val.txt", dir);
  snprintf(a, sizeof a, "%s/a", dir);
  snprintf(b, sizeof b, "%s/b", dir);
  corpus(train, 50, 0);
  corpus(val, 10, 1);
  run(train, val, a, NULL);
  run(train, val, b, "27"); /* stops after step 27: checkpoint at 20, log to 27 */
  run(train, val, b, NULL); /* resumes at 20 */
  snprintf(ca, sizeof ca, "%s/checkpoint.bin", a);
  snprintf(cb, sizeof cb, "%s/checkpoint.bin", b);
  snprintf(la, sizeof la, "%s/train.jsonl", a);
  snprintf(lb, sizeof lb, "%s/train.jsonl", b);
  char *da, *db, *ta, *tb;
  size_t na, nb;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(dfpo_read_file(ca, &da, &na, &err), 0, "%s", err.msg);
  cr_assert_eq(dfpo_read_file(cb, &db, &nb, &err), 0, "%s", err.msg);
  cr_expect(na == nb && memcmp(da, db, na) == 0, "resumed checkpoint differs");
  cr_assert_eq(dfpo_read_file(la, &ta, NULL, &err), 0);
  cr_assert_eq(dfpo_read_file(lb, &tb, NULL, &err), 0);
  cr_expect_str_eq(ta, tb, "the resumed log should equal the uninterrupted one");
  /* validation loss at step 20 and 40 (lines 20 and 40), below ln(50) = 3.91 */
  int line = 0;
  double v[2] = {0, 0};
  for (char *p = ta; *p; line++) {
    char *nl = strchr(p, '\n');
    cJSON *o = cJSON_ParseWithLength(p, (size_t)(nl - p));
    const cJSON *vl = cJSON_GetObjectItem(o, "val_loss");
    if (line == 19 || line == 39) {
      cr_assert(cJSON_IsNumber(vl), "line %d lacks val_loss", line + 1);
      v[line == 39] = vl->valuedouble;
    }
    cJSON_Delete(o);
    p = nl + 1;
  }
  cr_expect_eq(line, 40);
  cr_expect_lt(v[1], v[0], "validation loss %.3f -> %.3f should fall", v[0], v[1]);
  cr_expect_lt(v[0], 3.0);
  free(da), free(db), free(ta), free(tb);
  ts_rmtree(dir);
}

/* The number of lines of a file (0 when it cannot be read). */
static int count_lines(const char *path) {
  char *t;
  dfpo_err err;
  if (dfpo_read_file(path, &t, NULL, &err))
    return 0;
  int n = 0;
  for (char *p = t; (p = strchr(p, '\n')); p++)
    n++;
  free(t);
  return n;
}

/* Issue 23, "a log that cannot rot unseen", for pretraining: a resumed run
 * keeps the log's lines before its checkpoint only when they are whole
 * (here a damaged line 6 and a log cut to 12 lines are refused, exit 2,
 * naming the file and the line), and a new run in a folder that holds an
 * old log (no checkpoint) starts a new log instead of appending to it.
 * Before, the damaged line was dropped silently, the short log resumed with
 * steps 12..19 missing, and the new run appended steps 0..39 to the old. */
Test(pretrain, a_damaged_log_is_refused_on_resume) {
  char dir[256], train[300], val[300], b[300], lb[320], ck[320];
  ts_tmpdir(dir, sizeof dir);
  snprintf(train, sizeof train, "%s/train.txt", dir);
  snprintf(val, sizeof val, "%s/val.txt", dir);
  snprintf(b, sizeof b, "%s/b", dir);
  snprintf(lb, sizeof lb, "%s/train.jsonl", b);
  snprintf(ck, sizeof ck, "%s/checkpoint.bin", b);
  corpus(train, 50, 0);
  corpus(val, 10, 1);
  run(train, val, b, "27"); /* checkpoint at 20, log to 27 */
  cr_assert_eq(count_lines(lb), 27);
  char *t;
  size_t n;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(dfpo_read_file(lb, &t, &n, &err), 0, "%s", err.msg);
  /* line 6 (step 5): its loss becomes NaN, as a bad disk or hand might */
  char *l6 = t;
  for (int i = 0; i < 5; i++)
    l6 = strchr(l6, '\n') + 1;
  char *loss = strstr(l6, "\"loss\": ");
  cr_assert_not_null(loss);
  loss += 8;
  memcpy(loss, "NaN     ", 8);
  FILE *f = fopen(lb, "w");
  fwrite(t, 1, n, f);
  fclose(f);
  ts_run r;
  run_r(&r, train, val, b, NULL);
  cr_expect_eq(r.status, 2, "%s", r.err);
  cr_expect(strstr(r.err, "train.jsonl:6") != NULL, "%s", r.err);
  ts_run_free(&r);
  /* cut to 12 whole lines: steps 12..19 lost */
  char *l13 = t;
  for (int i = 0; i < 12; i++)
    l13 = strchr(l13, '\n') + 1;
  memcpy(loss, "1.0     ", 8);
  f = fopen(lb, "w");
  fwrite(t, 1, (size_t)(l13 - t), f);
  fclose(f);
  run_r(&r, train, val, b, NULL);
  cr_expect_eq(r.status, 2, "%s", r.err);
  cr_expect(strstr(r.err, "lost lines") != NULL, "%s", r.err);
  ts_run_free(&r);
  free(t);
  /* no checkpoint, an old log: a new run writes a new one, 40 lines */
  cr_assert_eq(unlink(ck), 0);
  run(train, val, b, NULL);
  cr_expect_eq(count_lines(lb), 40);
  ts_rmtree(dir);
}

/* Text documents over a small alphabet: a corpus a byte-level BPE and a tiny
 * model learn quickly. */
static void text_corpus(const char *path, int docs, int shift, int jsonl) {
  static const char *words[] = {"the", "cat", "sat", "on", "mat", "and", "dog", "ran"};
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  for (int d = 0; d < docs; d++) {
    fputs(jsonl ? "{\"id\": \"x\", \"text\": \"" : "", f);
    for (int w = 0; w < 30; w++)
      fprintf(f, "%s%s", w ? " " : "", words[(d + shift + w * 3) % 8]);
    fputs(jsonl ? "\"}\n" : "\n", f);
  }
  fclose(f);
}

static void run_config(const char *config, const char *out, const char *stop) {
  char set[400];
  snprintf(set, sizeof set, "pretrain.out=%s", out);
  ts_run r;
  ts_dfpo(&r, "pretrain", "--config", config, "--set", set, stop ? "--stop-after" : NULL, stop,
          NULL);
  cr_assert_eq(r.status, 0, "dfpo pretrain --config failed: %s", r.err);
  ts_run_free(&r);
}

/* Runs conf into a uninterrupted and into b stopped after step 17 then
 * resumed (from the checkpoint of step 10): the two checkpoints and logs
 * must be the same bytes. Returns a's log and its checkpoint's first 8
 * bytes in magic (the caller frees the log). */
static char *resume_equals_uninterrupted(const char *conf, const char *a, const char *b,
                                         char magic[8]) {
  char p[400];
  dfpo_err err;
  dfpo_err_clear(&err);
  run_config(conf, a, NULL);
  run_config(conf, b, "17");
  run_config(conf, b, NULL);
  char *da, *db, *ta, *tb;
  size_t na, nb;
  snprintf(p, sizeof p, "%s/checkpoint.bin", a);
  cr_assert_eq(dfpo_read_file(p, &da, &na, &err), 0, "%s", err.msg);
  snprintf(p, sizeof p, "%s/checkpoint.bin", b);
  cr_assert_eq(dfpo_read_file(p, &db, &nb, &err), 0, "%s", err.msg);
  cr_expect(na == nb && memcmp(da, db, na) == 0, "resumed checkpoint differs");
  cr_assert_gt(na, 8);
  memcpy(magic, da, 8);
  snprintf(p, sizeof p, "%s/train.jsonl", a);
  cr_assert_eq(dfpo_read_file(p, &ta, NULL, &err), 0);
  snprintf(p, sizeof p, "%s/train.jsonl", b);
  cr_assert_eq(dfpo_read_file(p, &tb, NULL, &err), 0);
  cr_expect_str_eq(ta, tb, "the resumed log should equal the uninterrupted one");
  free(da), free(db), free(tb);
  return ta;
}

/* `dfpo pretrain --config` on text (a .jsonl and a plain file) with a BPE
 * trained on it: the vocabulary is the tokenizer's, validation loss falls,
 * the resolved config is kept, and a stopped run resumes bit-identically. */
Test(pretrain, config_on_text_learns_and_resumes) {
  char dir[256], tr1[300], tr2[300], va[300], tok[300], conf[300], a[300], b[300], p[400];
  ts_tmpdir(dir, sizeof dir);
  snprintf(tr1, sizeof tr1, "%s/unsup.jsonl", dir);
  snprintf(tr2, sizeof tr2, "%s/more.txt", dir);
  snprintf(va, sizeof va, "%s/val.txt", dir);
  snprintf(tok, sizeof tok, "%s/tok", dir);
  snprintf(conf, sizeof conf, "%s/pre.json", dir);
  snprintf(a, sizeof a, "%s/a", dir);
  snprintf(b, sizeof b, "%s/b", dir);
  text_corpus(tr1, 30, 0, 1);
  text_corpus(tr2, 20, 3, 0);
  text_corpus(va, 10, 5, 0);
  dfpo_err err;
  dfpo_err_clear(&err);
  const char *files[1] = {tr2};
  cr_assert_eq(tok_train(files, 1, 270, tok, NULL, &err), 0, "%s", err.msg);
  FILE *f = fopen(conf, "w");
  cr_assert_not_null(f);
  fprintf(
      f,
      "{\"tokenizer\": {\"path\": \"%s\"},\n"
      " \"model\": {\"n_layer\": 1, \"n_head\": 2, \"n_embd\": 32, \"block_size\": 32},\n"
      " \"pretrain\": {\"train\": [\"%s\", \"%s\"], \"validation\": [\"%s\"],\n"
      "  \"steps\": 30, \"batch_size\": 4, \"seq_len\": 16, \"lr\": 3e-3, \"warmup_steps\": 5,\n"
      "  \"eval_every\": 10, \"ckpt_every\": 10, \"seed\": 2}}\n",
      tok, tr1, tr2, va);
  fclose(f);
  char magic[8];
  char *ta = resume_equals_uninterrupted(conf, a, b, magic);
  /* the model's vocabulary is the tokenizer's 270 */
  snprintf(p, sizeof p, "%s/checkpoint.bin", a);
  model_t *m;
  cr_assert_eq(model_load(&m, p, &err), 0, "%s", err.msg);
  cr_expect_eq(model_get_config(m)->vocab_size, 270);
  cr_expect_eq(model_step_count(m), 30);
  model_free(m);
  /* validation loss at steps 10 and 30 falls, below ln(270) = 5.60 */
  double v[2] = {0, 0};
  int line = 0;
  for (char *q = ta; *q; line++) {
    char *nl = strchr(q, '\n');
    cJSON *o = cJSON_ParseWithLength(q, (size_t)(nl - q));
    const cJSON *vl = cJSON_GetObjectItem(o, "val_loss");
    if (line == 9 || line == 29) {
      cr_assert(cJSON_IsNumber(vl), "line %d lacks val_loss", line + 1);
      v[line == 29] = vl->valuedouble;
    }
    cJSON_Delete(o);
    q = nl + 1;
  }
  cr_expect_eq(line, 30);
  cr_expect_lt(v[1], v[0], "validation loss %.3f -> %.3f should fall", v[0], v[1]);
  cr_expect_lt(v[1], 5.0);
  /* the resolved config is kept beside the checkpoint */
  snprintf(p, sizeof p, "%s/config.json", a);
  char *cj;
  cr_assert_eq(dfpo_read_file(p, &cj, NULL, &err), 0, "%s", err.msg);
  cJSON *c = cJSON_Parse(cj);
  cr_assert_not_null(c);
  cr_expect_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(c, "pretrain"), "steps")->valueint, 30);
  cJSON_Delete(c);
  free(cj);
  free(ta);
  /* bad input */
  ts_run r;
  ts_dfpo(&r, "pretrain", "--config", conf, "--steps", "3", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "exclude") != NULL, "%s", r.err);
  ts_run_free(&r);
  ts_dfpo(&r, "pretrain", "--set", "pretrain.stepz=3", NULL);
  cr_expect_eq(r.status, 1, "%s", r.err);
  cr_expect(strstr(r.err, "pretrain.stepz") != NULL, "%s", r.err);
  ts_run_free(&r);
  ts_dfpo(&r, "pretrain", "--set", "pretrain.steps=3", NULL);
  cr_expect_neq(r.status, 0);
  cr_expect(strstr(r.err, "tokenizer.path") != NULL, "%s", r.err);
  ts_run_free(&r);
  f = fopen(tr1, "a");
  fputs("{\"id\": 3}\n", f);
  fclose(f);
  snprintf(p, sizeof p, "%s/c", dir);
  char set[420];
  snprintf(set, sizeof set, "pretrain.out=%s", p);
  ts_dfpo(&r, "pretrain", "--config", conf, "--set", set, NULL);
  cr_expect_eq(r.status, 2, "%s", r.err);
  cr_expect(strstr(r.err, "unsup.jsonl:31") != NULL, "%s", r.err);
  ts_run_free(&r);
  ts_rmtree(dir);
}

/* The validation losses of the log's lines a and b (1-based). */
static void val_losses(const char *log, int a, int b, double v[2], int *lines) {
  int line = 0;
  for (const char *q = log; *q; line++) {
    const char *nl = strchr(q, '\n');
    cJSON *o = cJSON_ParseWithLength(q, (size_t)(nl - q));
    const cJSON *vl = cJSON_GetObjectItem(o, "val_loss");
    if (line + 1 == a || line + 1 == b) {
      cr_assert(cJSON_IsNumber(vl), "line %d lacks val_loss", line + 1);
      v[line + 1 == b] = vl->valuedouble;
    }
    cJSON_Delete(o);
    q = nl + 1;
  }
  *lines = line;
}

/* `dfpo pretrain --config` with model.arch t5 on text pairs (a copy task:
 * the target is the source's words after "copy:") with a SentencePiece
 * model tok_train_spm trains, half the rows span corruption: the model is
 * a T5 of the config's shape and the tokenizer's vocabulary, validation
 * loss falls, a stopped run resumes bit-identically (the log checked as
 * GPT-2's is), and a GPT-2 config on the T5's folder is refused. */
Test(pretrain, t5_on_pairs_learns_and_resumes) {
  static const char *words[] = {"red", "blue", "cat", "dog", "sun", "moon", "tree", "river"};
  char dir[256], tr[300], va[300], corpus[300], tok[300], conf[300], a[300], b[300], p[400];
  ts_tmpdir(dir, sizeof dir);
  snprintf(tr, sizeof tr, "%s/train.tsv", dir);
  snprintf(va, sizeof va, "%s/val.tsv", dir);
  snprintf(corpus, sizeof corpus, "%s/corpus.txt", dir);
  snprintf(tok, sizeof tok, "%s/tok", dir);
  snprintf(conf, sizeof conf, "%s/pre.json", dir);
  snprintf(a, sizeof a, "%s/a", dir);
  snprintf(b, sizeof b, "%s/b", dir);
  FILE *ft = fopen(tr, "w"), *fv = fopen(va, "w"), *fc = fopen(corpus, "w");
  cr_assert(ft && fv && fc);
  for (int i = 0; i < 240; i++) {
    FILE *f = i % 6 == 5 ? fv : ft;
    char line[200] = "";
    size_t n = 0;
    for (int w = 0; w < 3 + i % 4; w++)
      n += (size_t)snprintf(line + n, sizeof line - n, "%s%s", w ? " " : "",
                            words[(i * 5 + w * 3 + i / 8) % 8]);
    fprintf(f, "copy: %s\t%s\n", line, line);
    fprintf(fc, "copy: %s\n", line);
  }
  fclose(ft), fclose(fv), fclose(fc);
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(tok_train_spm(corpus, 40, 10, tok, &err), 0, "%s", err.msg);
  tok_tokenizer *t;
  cr_assert_eq(tok_load(&t, tok, &err), 0, "%s", err.msg);
  int V = (int)tok_vocab_size(t);
  tok_free(t);
  FILE *f = fopen(conf, "w");
  cr_assert_not_null(f);
  fprintf(
      f,
      "{\"tokenizer\": {\"path\": \"%s\"},\n"
      " \"model\": {\"arch\": \"t5\", \"n_layer\": 1, \"n_head\": 2, \"n_embd\": 32,\n"
      "  \"block_size\": 16, \"t5\": {\"d_ff\": 48, \"num_buckets\": 8, \"max_distance\": 16}},\n"
      " \"pretrain\": {\"train\": [\"%s\"], \"validation\": [\"%s\"], \"span_fraction\": 0.5,\n"
      "  \"steps\": 40, \"batch_size\": 8, \"seq_len\": 16, \"lr\": 1e-2, \"warmup_steps\": 5,\n"
      "  \"eval_every\": 10, \"ckpt_every\": 10, \"seed\": 3}}\n",
      tok, tr, va);
  fclose(f);
  char magic[8];
  char *ta = resume_equals_uninterrupted(conf, a, b, magic);
  cr_expect(!memcmp(magic, "DFPOT5", 6), "not T5's native checkpoint");
  snprintf(p, sizeof p, "%s/checkpoint.bin", a);
  model_t *m;
  cr_assert_eq(model_load(&m, p, &err), 0, "%s", err.msg);
  cr_expect_str_eq(model_get_config(m)->arch, "t5");
  const t5_config *c5 = t5_get_config(m);
  cr_assert_not_null(c5);
  cr_expect(c5->vocab_size == V && c5->d_model == 32 && c5->d_kv == 16 && c5->d_ff == 48 &&
                c5->n_head == 2 && c5->n_layer == 1 && c5->n_dec_layer == 1 &&
                c5->num_buckets == 8 && c5->max_distance == 16 && c5->n_pos == 16 && c5->tied &&
                !c5->gated,
            "the T5's config is not the pretrain config's");
  cr_expect_eq(model_step_count(m), 40);
  model_free(m);
  /* validation loss at steps 10 and 40 falls, well below ln(V) */
  double v[2] = {0, 0};
  int lines;
  val_losses(ta, 10, 40, v, &lines);
  cr_expect_eq(lines, 40);
  cr_log_info("T5 pretraining on pairs: %d ids, validation loss %.3f at step 10, %.3f at 40", V,
              v[0], v[1]);
  cr_expect_lt(v[1], v[0], "validation loss %.3f -> %.3f should fall", v[0], v[1]);
  cr_expect_lt(v[1], 0.6 * log((double)V));
  free(ta);
  /* a GPT-2 config on the T5's folder */
  ts_run r;
  snprintf(p, sizeof p, "pretrain.out=%s", a);
  ts_dfpo(&r, "pretrain", "--config", conf, "--set", p, "--set", "model.arch=gpt2", "--set",
          "pretrain.steps=50", NULL);
  cr_expect_eq(r.status, 1, "%s", r.err);
  cr_expect(strstr(r.err, "holds a t5 but model.arch") != NULL, "%s", r.err);
  ts_run_free(&r);
  /* a line without a tab */
  f = fopen(tr, "a");
  fputs("copy: red\n", f);
  fclose(f);
  snprintf(p, sizeof p, "pretrain.out=%s/c", dir);
  ts_dfpo(&r, "pretrain", "--config", conf, "--set", p, NULL);
  cr_expect_eq(r.status, 2, "%s", r.err);
  cr_expect(strstr(r.err, "train.tsv:201: not SOURCE<TAB>TARGET") != NULL, "%s", r.err);
  ts_run_free(&r);
  ts_rmtree(dir);
}

/* T5's span corruption as dfpo pretrain draws it: two cases worked by hand
 * (one span: no cut is drawn, so the result is fixed), then, for every
 * length from 3 to 200 and 5 seeds each, the invariants that make it T5's:
 * the noise and span counts of the documented rounding, kept run first,
 * sentinels in order and never adjacent, and the source with each
 * sentinel replaced by its target span giving the document back. */
Test(pretrain, span_corruption_by_hand_and_its_invariants) {
  enum { S0 = 999 };
  int doc[200], src[200], tgt[200], ns, nt;
  for (int i = 0; i < 200; i++)
    doc[i] = 100 + i;
  dfpo_rng r;
  dfpo_rng_init(&r, 1, DFPO_STREAM_DATA);
  /* n 20: noise round(3.0) = 3, spans round(1.0) = 1: 17 kept, then the
   * sentinel; the target the sentinel and the last 3 */
  cmd_pretrain_span_corrupt(doc, 20, &r, S0, 100, src, &ns, tgt, &nt);
  cr_assert_eq(ns, 18);
  cr_assert_eq(nt, 4);
  for (int i = 0; i < 17; i++)
    cr_expect_eq(src[i], 100 + i);
  cr_expect_eq(src[17], S0);
  cr_expect(tgt[0] == S0 && tgt[1] == 117 && tgt[2] == 118 && tgt[3] == 119);
  /* n 2: noise round(0.3) = 0 -> 1, one span: [d0 s0] and [s0 d1] */
  cmd_pretrain_span_corrupt(doc, 2, &r, S0, 100, src, &ns, tgt, &nt);
  cr_expect(ns == 2 && src[0] == 100 && src[1] == S0, "n 2: source");
  cr_expect(nt == 2 && tgt[0] == S0 && tgt[1] == 101, "n 2: target");
  int varied = 0, first[200], nfirst = -1;
  for (int n = 3; n <= 200; n++)
    for (uint64_t seed = 0; seed < 5; seed++) {
      dfpo_rng_init(&r, seed, DFPO_STREAM_DATA);
      int cap = n == 100 ? 2 : 100; /* the sentinels there are */
      cmd_pretrain_span_corrupt(doc, n, &r, S0, cap, src, &ns, tgt, &nt);
      int noise = (int)lround(n * 0.15), spans;
      noise = noise < 1 ? 1 : noise > n - 1 ? n - 1 : noise;
      spans = (int)lround(noise / 3.0);
      spans = spans < 1 ? 1 : spans;
      spans = spans > cap ? cap : spans > n - noise ? n - noise : spans;
      cr_assert_eq(nt, noise + spans, "n %d seed %d: target length", n, (int)seed);
      cr_assert_eq(ns, n - noise + spans, "n %d seed %d: source length", n, (int)seed);
      cr_assert(src[0] < S0 - 99 && tgt[0] == S0 && src[ns - 1] == S0 - (spans - 1) &&
                    tgt[nt - 1] < S0 - 99,
                "n %d: kept run first, the source ends with a sentinel", n);
      /* the document again: the source with each sentinel replaced by the
       * target's tokens after that sentinel */
      int back[200], nb = 0, k = 0, t = 0;
      for (int i = 0; i < ns; i++) {
        if (src[i] < S0 - 99) {
          back[nb++] = src[i];
          continue;
        }
        cr_assert_eq(src[i], S0 - k, "n %d: sentinel %d out of order", n, k);
        cr_assert(i > 0 && src[i - 1] < S0 - 99, "n %d: an empty kept run", n);
        cr_assert_eq(tgt[t], S0 - k, "n %d: the target's sentinel %d", n, k);
        t++;
        cr_assert(t < nt && tgt[t] < S0 - 99, "n %d: an empty noise span", n);
        while (t < nt && tgt[t] < S0 - 99)
          back[nb++] = tgt[t++];
        k++;
      }
      cr_assert_eq(k, spans);
      cr_assert_eq(nb, n);
      cr_assert_eq(memcmp(back, doc, sizeof(int) * (size_t)n), 0, "n %d: not the document", n);
      if (n == 60) { /* noise 9 in 3 spans: the cuts differ with the seed */
        if (nfirst < 0) {
          memcpy(first, src, sizeof(int) * (size_t)ns);
          nfirst = ns;
        } else {
          varied += memcmp(first, src, sizeof(int) * (size_t)ns) != 0;
        }
      }
    }
  cr_expect_gt(varied, 0, "the spans never moved with the seed");
}
