/* T5's checkpoints (trainer/t5_ckpt.c): the native format's round trip
 * (parameters, AdamW's moments, the step count and the value head
 * bit-identical), a resumed AdamW step equal bit for bit to an
 * uninterrupted one, damaged files refused with messages naming the file
 * (and the tensor where there is one); and the Hugging Face export through
 * `dfpo export`: the folder read back by `dfpo perplexity` gives the
 * native checkpoint's nll_sum exactly, and tests/trainer/t5_reference.py's
 * PyTorch T5 reads the exported model.safetensors and config.json (names
 * and shapes exactly transformers' T5ForConditionalGeneration's) to the
 * same numbers within 1e-4 relative (float32 on both sides). The export
 * test skips, saying why, when /usr/bin/python3 lacks torch or
 * sentencepiece. */
#include "tests/support/support.h"
#include "tests/trainer/gpt2_testutil.h"
#include "tests/trainer/t5_testutil.h"
#include "trainer/model.h"
#include "trainer/optim.h"
#include "trainer/t5.h"
#include "trainer/tok.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HEADER 96

/* tt_tiny's T5 with an MLP of 24, two encoder layers and </s> 1 */
static t5_config tiny(int gated, int vocab) {
  t5_config c = tt_tiny(vocab, gated, !gated);
  c.d_ff = 24;
  c.n_layer = 2;
  c.eos_id = 1;
  return c;
}

/* A random T5 (v1.0 tied ReLU, or v1.1 gated untied), its norms' weights
 * moved off 1 so that a norm read into another's place shows; with value,
 * the value model of it (model_new_like, its trunk copied, a random head). */
static model_t *random_t5(int gated, int vocab, int value, uint64_t seed) {
  t5_config c = tiny(gated, vocab);
  dfpo_err err;
  dfpo_err_clear(&err);
  model_t *m;
  cr_assert_eq(t5_new(&m, &c, &err), DFPO_OK, "%s", err.msg);
  model_init_random(m, seed);
  if (value) {
    model_t *v;
    cr_assert_eq(model_new_like(&v, m, MODEL_HEAD_VALUE, 0, &err), DFPO_OK, "%s", err.msg);
    model_init_random(v, seed + 1);
    cr_assert_eq(model_copy_shared_params(v, m, NULL, &err), DFPO_OK, "%s", err.msg);
    model_free(m);
    m = v;
  }
  dfpo_rng r;
  dfpo_rng_init(&r, seed + 7, 3);
  for (int i = 0; i < model_num_tensors(m); i++) {
    model_tensor t;
    cr_assert_eq(model_tensor_at(m, i, &t, &err), DFPO_OK);
    if (!t.decay) /* CPU: the parameters are host memory */
      for (int k = 0; k < t.rows * t.cols; k++)
        t.param[k] = 1.0f + 0.2f * (float)dfpo_rng_normal(&r);
  }
  return m;
}

enum { B = 2, TS = 3, TC = 4, T = TS + TC };

/* One AdamW step on a fixed batch: the LM loss for a policy, the squared
 * values' sum for a value model. */
static void train_step(model_t *m) {
  int tok[B * T], tgt[B * T];
  for (int i = 0; i < B * T; i++)
    tok[i] = 2 + (i * 7) % 9;
  for (int b = 0; b < B; b++)
    for (int c = 0; c < T; c++)
      tgt[b * T + c] = c >= TS - 1 && c < T - 1 ? tok[b * T + c + 1] : -1;
  model_batch batch = {tok, NULL, B, T, TS, 0};
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(model_ensure_train(m, &err), DFPO_OK, "%s", err.msg);
  if (model_get_config(m)->head == MODEL_HEAD_VALUE) {
    float v[B * T], dv[B * T];
    cr_assert_eq(model_forward(m, &batch, &err), DFPO_OK, "%s", err.msg);
    cr_assert_eq(model_value_forward(m, v, &err), DFPO_OK, "%s", err.msg);
    for (int i = 0; i < B * T; i++)
      dv[i] = tgt[i] >= 0 ? 2 * (v[i] - 0.5f) : 0.0f;
    cr_assert_eq(model_value_backward(m, dv, &err), DFPO_OK, "%s", err.msg);
  } else {
    float loss;
    cr_assert_eq(model_lm_loss(m, &batch, tgt, 1, &loss, &err), DFPO_OK, "%s", err.msg);
  }
  opt_adamw o = opt_adamw_default();
  cr_assert_eq(opt_adamw_step(m, &o, 1e-2f, NULL, &err), DFPO_OK, "%s", err.msg);
}

/* Every tensor of a and b bit-identical: parameters, and with moments
 * AdamW's first and second moments. */
static void same_tensors(const model_t *a, const model_t *b, int moments) {
  cr_assert_eq(model_num_tensors(a), model_num_tensors(b));
  dfpo_err err;
  for (int i = 0; i < model_num_tensors(a); i++) {
    model_tensor x, y;
    model_tensor_at(a, i, &x, &err);
    model_tensor_at(b, i, &y, &err);
    cr_assert_str_eq(x.name, y.name);
    size_t n = (size_t)x.rows * x.cols * sizeof(float);
    cr_assert_eq(x.rows * x.cols, y.rows * y.cols, "%s", x.name);
    cr_expect_eq(memcmp(x.param, y.param, n), 0, "%s: parameters differ", x.name);
    if (moments) {
      cr_assert(x.m1 && y.m1 && x.m2 && y.m2, "%s: no moments", x.name);
      cr_expect_eq(memcmp(x.m1, y.m1, n), 0, "%s: first moment differs", x.name);
      cr_expect_eq(memcmp(x.m2, y.m2, n), 0, "%s: second moment differs", x.name);
    }
  }
}

Test(t5_ckpt, round_trip_and_resume_are_bit_identical) {
  char dir[256], path[300], plain[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/t5.ckpt", dir);
  snprintf(plain, sizeof plain, "%s/plain.ckpt", dir);
  dfpo_err err;
  dfpo_err_clear(&err);
  for (int v = 0; v < 2; v++) { /* v1.0 policy; v1.1 value model */
    model_t *a = random_t5(v, 40, v, 10 + (uint64_t)v), *b = NULL, *c = NULL;
    train_step(a);
    cr_assert_eq(model_step_count(a), 1);
    cr_assert_eq(model_save(a, path, 1, &err), DFPO_OK, "%s", err.msg);
    cr_assert_eq(model_save(a, plain, 0, &err), DFPO_OK, "%s", err.msg);
    cr_assert_eq(model_load(&b, path, &err), DFPO_OK, "%s", err.msg);
    cr_assert_str_eq(model_get_config(b)->arch, "t5");
    cr_expect_eq(memcmp(t5_get_config(a), t5_get_config(b), sizeof(t5_config)), 0);
    cr_expect_eq(model_get_config(b)->head, v ? MODEL_HEAD_VALUE : MODEL_HEAD_NONE);
    cr_expect_eq(model_step_count(b), 1);
    same_tensors(a, b, 1);
    /* without the optimiser: the parameters and the step count, no moments */
    cr_assert_eq(model_load(&c, plain, &err), DFPO_OK, "%s", err.msg);
    same_tensors(a, c, 0);
    cr_expect_eq(model_step_count(c), 1);
    model_tensor t;
    model_tensor_at(c, 0, &t, &err);
    cr_expect_null(t.m1, "a checkpoint without the optimiser brought moments");
    model_free(c);
    /* the second step of the run resumed from the file equals the
     * uninterrupted run's */
    train_step(a);
    train_step(b);
    cr_expect_eq(model_step_count(b), 2);
    same_tensors(a, b, 1);
    model_free(a);
    model_free(b);
  }
  ts_rmtree(dir);
}

/* model_load_into on T5 (test_gpt2_lora.c has the other refusals): a
 * policy and a value model saved with their moments after one step, trained
 * two more, read back in place (the policy's decoding begun before it
 * spent): their next step equals the checkpoint
 * loaded anew's, parameters and moments bit for bit; a policy's file is
 * refused by the value model (another head) and by a T5 of another width. */
Test(t5_ckpt, a_checkpoint_reads_into_the_model_in_place) {
  char dir[256], path[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/t5.ckpt", dir);
  dfpo_err err;
  dfpo_err_clear(&err);
  for (int v = 0; v < 2; v++) {
    model_t *a = random_t5(v, 40, v, 20 + (uint64_t)v), *b = NULL;
    train_step(a);
    cr_assert_eq(model_save(a, path, 1, &err), DFPO_OK, "%s", err.msg);
    train_step(a), train_step(a);
    if (!v)
      tu_decode_begun(a);
    cr_assert_eq(model_load_into(a, path, &err), DFPO_OK, "%s", err.msg);
    if (!v)
      tu_decode_spent(a, "T5");
    cr_expect_eq(model_step_count(a), 1);
    cr_assert_eq(model_load(&b, path, &err), DFPO_OK, "%s", err.msg);
    train_step(a);
    train_step(b);
    same_tensors(a, b, 1);
    model_free(b);
    model_free(a);
  }
  /* path holds the value model's now */
  model_t *policy = random_t5(1, 40, 0, 30), *wide = NULL;
  cr_expect_eq(model_load_into(policy, path, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "another t5 model"), "%s", err.msg);
  t5_config c = tiny(1, 40);
  c.d_ff = 32;
  cr_assert_eq(t5_new(&wide, &c, &err), DFPO_OK, "%s", err.msg);
  cr_assert_eq(model_save(policy, path, 0, &err), DFPO_OK, "%s", err.msg);
  cr_expect_eq(model_load_into(wide, path, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "another t5 model"), "%s", err.msg);
  model_free(wide);
  model_free(policy);
  ts_rmtree(dir);
}

static void write_bytes(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f);
  cr_assert_eq(fwrite(data, 1, n, f), n);
  fclose(f);
}

static void put_i32(char *data, size_t at, int32_t v) {
  memcpy(data + at, &v, 4);
}

Test(t5_ckpt, damaged_checkpoints_are_refused) {
  char dir[256], path[300], bad[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/good.ckpt", dir);
  snprintf(bad, sizeof bad, "%s/bad.ckpt", dir);
  model_t *a = random_t5(1, 40, 0, 3);
  train_step(a);
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(model_save(a, path, 1, &err), DFPO_OK, "%s", err.msg);
  char *data;
  size_t len;
  cr_assert_eq(dfpo_read_file(path, &data, &len, &err), 0);
  /* the layout: 96 bytes of header, the parameters, two moments */
  size_t np = model_num_params(a);
  cr_assert_eq(len, HEADER + 3 * 4 * np);
  cr_assert_eq(memcmp(data, "DFPOT5\0\0", 8), 0);
  model_tensor t0, q;
  model_tensor_at(a, 0, &t0, &err);
  model_tensor_at(a, 1, &q, &err);
  cr_assert_str_eq(q.name, "encoder.block.0.layer.0.SelfAttention.q.weight");
  size_t q_at = (size_t)(q.param - t0.param);

  /* truncated: in the header, in the parameters (the tensor named), in the
   * second moment */
  write_bytes(bad, data, 40);
  tu_expect_load_fails(bad, bad, "truncated header");
  write_bytes(bad, data, HEADER + 4 * (q_at + 10));
  tu_expect_load_fails(bad, "truncated in the parameters",
                       "encoder.block.0.layer.0.SelfAttention.q.weight");
  write_bytes(bad, data, len - 4);
  tu_expect_load_fails(bad, bad, "second AdamW moment");
  /* trailing bytes */
  char *longer = malloc(len + 4);
  memcpy(longer, data, len);
  memset(longer + len, 0, 4);
  write_bytes(bad, longer, len + 4);
  tu_expect_load_fails(bad, bad, "trailing");
  free(longer);
  /* wrong magic: then it is no checkpoint model_load knows */
  data[4] = 'X';
  write_bytes(bad, data, len);
  tu_expect_load_fails(bad, bad, "neither a dfpo checkpoint");
  data[4] = 'T';
  /* a version from elsewhere */
  data[8] = 9;
  write_bytes(bad, data, len);
  tu_expect_load_fails(bad, bad, "version 9");
  data[8] = 1;
  /* header fields at 16 + 4 k: vocab, d_model, d_kv, d_ff, n_head, n_layer,
   * n_dec_layer, ...; a config that does not match the tensors (one
   * encoder layer more) */
  put_i32(data, 16 + 4 * 5, 3);
  write_bytes(bad, data, len);
  tu_expect_load_fails(bad, bad, "do not match");
  put_i32(data, 16 + 4 * 5, 2);
  /* a config that makes no sense */
  put_i32(data, 16 + 4 * 1, 0);
  write_bytes(bad, data, len);
  tu_expect_load_fails(bad, "header config", "d_model 0");
  put_i32(data, 16 + 4 * 1, 16);
  /* then epsilon (float) at 72, head 76, step 80, flags 84, nparams 88:
   * unknown flags (1 is the moments', 2 the head scale's), a head T5 has not */
  put_i32(data, 84, 4);
  write_bytes(bad, data, len);
  tu_expect_load_fails(bad, bad, "corrupt header");
  put_i32(data, 84, 1);
  put_i32(data, 76, MODEL_HEAD_CLASS);
  write_bytes(bad, data, len);
  tu_expect_load_fails(bad, bad, "corrupt header");
  put_i32(data, 76, MODEL_HEAD_NONE);
  /* a NaN in the parameters and an infinity in the first moment, named by
   * tensor and element */
  float nan = NAN, inf = INFINITY, keep;
  memcpy(&keep, data + HEADER + 4 * (q_at + 5), 4);
  memcpy(data + HEADER + 4 * (q_at + 5), &nan, 4);
  write_bytes(bad, data, len);
  tu_expect_load_fails(bad, bad,
                       "parameters of tensor 'encoder.block.0.layer.0.SelfAttention.q.weight' has "
                       "NaN at element 5");
  memcpy(data + HEADER + 4 * (q_at + 5), &keep, 4);
  memcpy(data + HEADER + 4 * (np + 3), &inf, 4);
  write_bytes(bad, data, len);
  tu_expect_load_fails(bad, bad,
                       "first AdamW moment of tensor 'shared.weight' has an infinity at "
                       "element 3");
  free(data);
  model_free(a);
  ts_rmtree(dir);
}

static int have_python(void) {
  return ts_python_has("torch, sentencepiece");
}

static char *run_ok(const char *home, char **args) {
  ts_run r;
  ts_dfpo_home(&r, home, args, NULL);
  cr_assert_eq(r.status, 0, "dfpo %s %s: %s", args[0], args[2], r.err);
  char *out = strdup(r.out);
  ts_run_free(&r);
  return out;
}

Test(t5_ckpt, export_reads_back_and_matches_pytorch, .timeout = 240) {
  if (!have_python())
    cr_skip_test("/usr/bin/python3 lacks torch or sentencepiece (Debian packages python3-torch, "
                 "python3-sentencepiece): the T5 reference cannot run");
  char dir[256], home[300], spm[300], pairs[300], ckpt[300], out[300], ref[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(home, sizeof home, "%s/home", dir);
  snprintf(spm, sizeof spm, "%s/spm", dir);
  snprintf(pairs, sizeof pairs, "%s/pairs.tsv", dir);
  ts_run r;
  char *sargv[] = {"/usr/bin/python3", DFPO_SOURCE_DIR "/tests/trainer/t5_reference.py", "--spm",
                   spm, NULL};
  ts_run_cmd(&r, sargv, NULL, NULL);
  cr_assert_eq(r.status, 0, "t5_reference.py --spm: %s", r.err);
  ts_run_free(&r);
  tok_tokenizer *tok;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(tok_load(&tok, spm, &err), DFPO_OK, "%s", err.msg);
  int V = (int)tok_vocab_size(tok); /* the pieces and T5's 100 extra ids */
  /* 9 pairs, sources 1-20 and targets 1-12 tokens */
  dfpo_rng rng;
  dfpo_rng_init(&rng, 21, 1);
  char text[4096];
  size_t at = 0;
  static const int ns[9] = {1, 3, 7, 12, 20, 5, 9, 2, 16}, nt[9] = {1, 4, 2, 12, 6, 9, 3, 7, 5};
  for (int p = 0; p < 9; p++) {
    for (int i = 0; i < ns[p]; i++)
      at += (size_t)snprintf(text + at, sizeof text - at, "%s%d", i ? " " : "",
                             (int)dfpo_rng_below(&rng, (uint64_t)V));
    at += (size_t)snprintf(text + at, sizeof text - at, "\t");
    for (int i = 0; i < nt[p]; i++)
      at += (size_t)snprintf(text + at, sizeof text - at, "%s%d", i ? " " : "",
                             (int)dfpo_rng_below(&rng, (uint64_t)V));
    at += (size_t)snprintf(text + at, sizeof text - at, "\n");
  }
  ts_write_text(pairs, text);
  for (int v = 0; v < 2; v++) {
    const char *name = v ? "v11" : "v10";
    /* v1.1's vocabulary passes the tokenizer's, as t5-base's does */
    model_t *m = random_t5(v, V + 8 * v, 0, 40 + (uint64_t)v);
    snprintf(ckpt, sizeof ckpt, "%s/%s.ckpt", dir, name);
    snprintf(out, sizeof out, "%s/%s", dir, name);
    snprintf(ref, sizeof ref, "%s/%s.json", dir, name);
    cr_assert_eq(model_save(m, ckpt, 0, &err), DFPO_OK, "%s", err.msg);
    model_free(m);
    char *eargs[] = {"export", "--model", ckpt, "--tokenizer", spm, "--out", out, NULL};
    free(run_ok(home, eargs));
    char *p1[] = {"perplexity", "--model", ckpt, "--tokens", pairs, "--per-doc", "--json", NULL};
    char *p2[] = {"perplexity", "--model", out, "--tokens", pairs, "--per-doc", "--json", NULL};
    char *a = run_ok(home, p1), *b = run_ok(home, p2);
    cr_expect_str_eq(a, b, "the export scores differently from its checkpoint");
    /* the folder's tokenizer is the one exported */
    tok_tokenizer *t2;
    cr_assert_eq(tok_load(&t2, out, &err), DFPO_OK, "%s", err.msg);
    cr_expect_eq(tok_vocab_size(t2), tok_vocab_size(tok));
    static const char s[] = "the dog runs in the park <extra_id_3> café";
    tok_ids x = {0}, y = {0};
    cr_assert_eq(tok_encode(tok, s, strlen(s), TOK_ALLOW_SPECIAL, &x, &err), DFPO_OK);
    cr_assert_eq(tok_encode(t2, s, strlen(s), TOK_ALLOW_SPECIAL, &y, &err), DFPO_OK);
    cr_expect(x.n == y.n && !memcmp(x.ids, y.ids, x.n * sizeof *x.ids), "ids differ");
    tok_ids_free(&x);
    tok_ids_free(&y);
    tok_free(t2);
    /* PyTorch's T5 over the exported files */
    char *pargv[] = {"/usr/bin/python3",
                     DFPO_SOURCE_DIR "/tests/trainer/t5_reference.py",
                     "--nll",
                     out,
                     pairs,
                     ref,
                     NULL};
    ts_run_cmd(&r, pargv, NULL, NULL);
    cr_assert_eq(r.status, 0, "t5_reference.py --nll %s: %s", out, r.err);
    ts_run_free(&r);
    cJSON *rj = ts_read_json(ref);
    const cJSON *want = cJSON_GetObjectItem(rj, "nll");
    double md = 0;
    int k = 0;
    char *save = NULL;
    for (char *line = strtok_r(b, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
      cJSON *j = cJSON_Parse(line);
      const cJSON *doc = cJSON_GetObjectItem(j, "doc");
      if (doc) {
        double got = cJSON_GetObjectItem(j, "nll_sum")->valuedouble;
        double w = cJSON_GetArrayItem(want, k)->valuedouble;
        double d = fabs(got - w) / fmax(fabs(w), 1e-12);
        cr_expect_leq(d, 1e-4, "%s pair %d: nll_sum %.9g, PyTorch %.9g", name, k, got, w);
        md = fmax(md, d);
        k++;
      }
      cJSON_Delete(j);
    }
    cr_expect_eq(k, 9, "%s: %d pairs scored", name, k);
    cJSON_Delete(rj);
    cr_log_info("%s export: dfpo perplexity identical to the checkpoint's; PyTorch over the "
                "exported files: max relative difference %.3g",
                name, md);
    free(a);
    free(b);
  }
  tok_free(tok);
  ts_rmtree(dir);
}
