/* ppl_ref and ppl_gen over the CPU engine: a hand computation (a model with
 * all parameters zero predicts the uniform distribution, so the perplexity is
 * exactly the vocabulary size and the NLL is tokens * ln V), and PyTorch 1.13
 * (tests/metrics/ppl_reference.py, Debian's python3-torch) on a random tiny
 * model, one unpadded sequence at a time, against dfpo's batched, left-padded
 * and windowed passes. Tolerance: 1e-4 relative on each item's summed NLL
 * (float32 forward passes against a float64 log-softmax). */
#include "metrics/metrics.h"
#include "tests/support/support.h"
#include "trainer/gpt2.h" /* the models under test */

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static model_t *model(int V, int ctx, int zero, uint64_t seed) {
  gpt2_config cfg = {2, 2, 16, V, ctx, MODEL_HEAD_NONE, 0};
  model_t *m = NULL;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(gpt2_new(&m, &cfg, &err), 0, "%s", err.msg);
  if (!zero) {
    model_init_random(m, seed);
    /* larger weights than GPT-2's init, so the distribution is far from flat */
    dfpo_rng r;
    dfpo_rng_init(&r, seed, 9);
    int nt = gpt2_num_tensors(m);
    for (int i = 0; i < nt; i++) {
      int rows, cols;
      float *p;
      gpt2_tensor_info(m, i, NULL, &rows, &cols, &p, NULL);
      for (int k = 0; k < rows * cols; k++)
        p[k] = p[k] * 10.0f + 0.05f * (float)dfpo_rng_normal(&r);
    }
  }
  return m;
}

static tok_ids seq(const int *v, size_t n) {
  tok_ids t = {0};
  t.ids = malloc((n ? n : 1) * sizeof *t.ids);
  for (size_t i = 0; i < n; i++)
    t.ids[i] = v[i];
  t.n = t.cap = n;
  return t;
}

static tok_ids rand_seq(size_t n, int V, uint64_t seed) {
  tok_ids t = {0};
  t.ids = malloc((n ? n : 1) * sizeof *t.ids);
  dfpo_rng r;
  dfpo_rng_init(&r, seed, 3);
  for (size_t i = 0; i < n; i++)
    t.ids[i] = (int32_t)dfpo_rng_below(&r, (uint32_t)V);
  t.n = t.cap = n;
  return t;
}

/* Zero model: every token has probability 1/V. ppl_ref with bos scores every
 * text token (3 + 5 = 8 tokens); without bos the first token of each text is
 * context only (2 + 4 = 6). ppl_gen scores the continuations (2 + 1 = 3). */
Test(ppl_engine, uniform_model_hand_computation) {
  const int V = 50;
  model_t *m = model(V, 8, 1, 0);
  int a[] = {1, 2, 3}, b[] = {4, 5, 6, 7, 8};
  tok_ids texts[2] = {seq(a, 3), seq(b, 5)};
  met_ppl_opts o = met_ppl_opts_default();
  o.bos = 0;
  met_ppl p;
  double per[3];
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(met_ppl_ref_ids(m, texts, 2, &o, &p, per, &err), 0, "%s", err.msg);
  cr_expect_eq(p.tokens, 8);
  cr_expect_float_eq(p.nll, 8 * log(50.0), 1e-4);
  cr_expect_float_eq(p.ppl, 50.0, 1e-4);
  cr_expect_float_eq(per[0], 50.0, 1e-4);
  o.bos = -1;
  cr_assert_eq(met_ppl_ref_ids(m, texts, 2, &o, &p, NULL, &err), 0, "%s", err.msg);
  cr_expect_eq(p.tokens, 6);

  int c1[] = {9, 10}, c2[] = {11}, c3[] = {0};
  tok_ids conts[3] = {seq(c1, 2), seq(c2, 1), seq(c3, 0)};
  tok_ids prompts[3] = {seq(a, 3), seq(b, 5), seq(a, 1)};
  o.bos = 0;
  cr_assert_eq(met_ppl_gen_ids(m, prompts, conts, 3, &o, &p, per, &err), 0, "%s", err.msg);
  cr_expect_eq(p.tokens, 3);
  cr_expect_float_eq(p.ppl, 50.0, 1e-4);
  cr_expect(isnan(per[2]), "an empty continuation has no perplexity");
  for (int i = 0; i < 3; i++) {
    tok_ids_free(&conts[i]);
    tok_ids_free(&prompts[i]);
  }
  tok_ids_free(&texts[0]);
  tok_ids_free(&texts[1]);
  model_free(m);
}

Test(ppl_engine, bad_input_is_refused) {
  model_t *m = model(20, 4, 1, 0);
  int bad[] = {1, 25}, longc[] = {1, 2, 3, 4, 5}, ok[] = {1};
  tok_ids t = seq(bad, 2), c = seq(longc, 5), p = seq(ok, 1);
  met_ppl out;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_expect_eq(met_ppl_ref_ids(m, &t, 1, NULL, &out, NULL, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "id 25"), "%s", err.msg);
  dfpo_err_clear(&err);
  cr_expect_eq(met_ppl_gen_ids(m, &p, &c, 1, NULL, &out, NULL, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "context is 4"), "%s", err.msg);
  tok_ids_free(&t);
  tok_ids_free(&c);
  tok_ids_free(&p);
  model_free(m);
}

static int have_torch(void) {
  if (access("/usr/bin/python3", X_OK) != 0)
    return 0;
  ts_run r;
  char *argv[] = {"/usr/bin/python3", "-c", "import torch", NULL};
  ts_run_cmd(&r, argv, NULL, NULL);
  int ok = r.status == 0;
  ts_run_free(&r);
  return ok;
}

enum { NT = 5, NG = 4, V = 61, CTX = 12 };

Test(ppl_engine, matches_pytorch) {
  if (!have_torch())
    cr_skip_test("/usr/bin/python3 has no torch module (Debian package python3-torch): the "
                 "PyTorch perplexity reference cannot run");
  char dir[256], path[300], input[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  snprintf(input, sizeof input, "%s/input.json", dir);
  model_t *m = model(V, CTX, 0, 7);
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(model_export_safetensors(m, path, 0, &err), 0, "%s", err.msg);

  /* texts: shorter than, equal to and far longer than the context (windows) */
  const size_t tl[NT] = {1, 5, 12, 30, 47};
  /* prompts and continuations: short, truncated prompt, a continuation that
   * fills the context, an empty prompt */
  const size_t pl[NG] = {4, 20, 3, 0}, cl[NG] = {6, 5, 12, 3};
  tok_ids texts[NT], prompts[NG], conts[NG];
  cJSON *in = cJSON_CreateObject();
  cJSON_AddNumberToObject(in, "stride", 5);
  cJSON_AddNumberToObject(in, "bos", 60);
  cJSON *jt = cJSON_AddArrayToObject(in, "texts");
  cJSON *jp = cJSON_AddArrayToObject(in, "prompts"), *jc = cJSON_AddArrayToObject(in, "conts");
  for (int i = 0; i < NT; i++) {
    texts[i] = rand_seq(tl[i], V - 1, 100 + (uint64_t)i);
    cJSON_AddItemToArray(jt, cJSON_CreateIntArray((const int *)texts[i].ids, (int)texts[i].n));
  }
  for (int i = 0; i < NG; i++) {
    prompts[i] = rand_seq(pl[i], V - 1, 200 + (uint64_t)i);
    conts[i] = rand_seq(cl[i], V - 1, 300 + (uint64_t)i);
    cJSON_AddItemToArray(jp, cJSON_CreateIntArray((const int *)prompts[i].ids, (int)pl[i]));
    cJSON_AddItemToArray(jc, cJSON_CreateIntArray((const int *)conts[i].ids, (int)cl[i]));
  }
  char *text = cJSON_Print(in);
  cJSON_Delete(in);
  cr_assert_eq(dfpo_atomic_write_file(input, text, strlen(text), &err), 0, "%s", err.msg);
  free(text);
  ts_run r;
  char *argv[] = {"/usr/bin/python3", DFPO_SOURCE_DIR "/tests/metrics/ppl_reference.py", path,
                  input, NULL};
  ts_run_cmd(&r, argv, NULL, NULL);
  cr_assert_eq(r.status, 0, "ppl_reference.py failed: %s", r.err);
  cJSON *ref = cJSON_Parse(r.out);
  ts_run_free(&r);
  cr_assert_not_null(ref);

  met_ppl_opts o = met_ppl_opts_default();
  o.stride = 5;
  o.bos = 60;
  o.batch = 3; /* several batches with mixed lengths */
  double per[NT];
  met_ppl p;
  cr_assert_eq(met_ppl_ref_ids(m, texts, NT, &o, &p, per, &err), 0, "%s", err.msg);
  double tot = 0;
  size_t cnt = 0;
  for (int i = 0; i < NT; i++) {
    const cJSON *e = cJSON_GetArrayItem(cJSON_GetObjectItem(ref, "ref"), i);
    double nll = cJSON_GetArrayItem(e, 0)->valuedouble;
    int c = cJSON_GetArrayItem(e, 1)->valueint;
    cr_expect_eq(c, (int)tl[i], "text %d scores every token once", i);
    cr_expect(fabs(log(per[i]) * c - nll) <= 1e-4 * fabs(nll), "text %d: %.8f vs PyTorch %.8f", i,
              log(per[i]) * c, nll);
    tot += nll;
    cnt += (size_t)c;
  }
  cr_expect_eq(p.tokens, cnt);
  cr_expect(fabs(p.nll - tot) <= 1e-4 * tot, "total %.8f vs %.8f", p.nll, tot);

  double pg[NG];
  cr_assert_eq(met_ppl_gen_ids(m, prompts, conts, NG, &o, &p, pg, &err), 0, "%s", err.msg);
  for (int i = 0; i < NG; i++) {
    const cJSON *e = cJSON_GetArrayItem(cJSON_GetObjectItem(ref, "gen"), i);
    double nll = cJSON_GetArrayItem(e, 0)->valuedouble;
    int c = cJSON_GetArrayItem(e, 1)->valueint;
    cr_expect_eq(c, (int)cl[i]);
    cr_expect(fabs(log(pg[i]) * c - nll) <= 1e-4 * fabs(nll), "item %d: %.8f vs PyTorch %.8f", i,
              log(pg[i]) * c, nll);
  }
  cJSON_Delete(ref);
  for (int i = 0; i < NT; i++)
    tok_ids_free(&texts[i]);
  for (int i = 0; i < NG; i++) {
    tok_ids_free(&prompts[i]);
    tok_ids_free(&conts[i]);
  }
  model_free(m);
  ts_rmtree(dir);
}

/* The text functions are the id functions on the GPT-2 tokenizer's ids with
 * <|endoftext|> as bos. */
Test(ppl_engine, text_api_uses_the_tokenizer) {
  const char *data = ts_shared_data();
  if (!data)
    cr_skip_test("../shared/data is absent: the GPT-2 tokenizer files are not here");
  char tdir[1024];
  snprintf(tdir, sizeof tdir, "%s/gpt2", data);
  tok_tokenizer *tok = NULL;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(tok_load(&tok, tdir, &err), 0, "%s", err.msg);
  gpt2_config cfg;
  cr_assert_eq(gpt2_config_named(&cfg, "gpt2-tiny", &err), 0);
  model_t *m = NULL;
  cr_assert_eq(gpt2_new(&m, &cfg, &err), 0);
  model_init_random(m, 3);
  const char *texts[] = {"This movie was great.", "I did not like it at all, sadly!"};
  const char *conts[] = {" It was", " fun."};
  met_ppl a, b;
  cr_assert_eq(met_ppl_ref(m, tok, texts, 2, NULL, &a, NULL, &err), 0, "%s", err.msg);
  tok_ids ids[2] = {{0}, {0}}, cids[2] = {{0}, {0}};
  for (int i = 0; i < 2; i++) {
    cr_assert_eq(tok_encode(tok, texts[i], strlen(texts[i]), 0, &ids[i], &err), 0);
    cr_assert_eq(tok_encode(tok, conts[i], strlen(conts[i]), 0, &cids[i], &err), 0);
  }
  met_ppl_opts o = met_ppl_opts_default();
  o.bos = 50256;
  cr_assert_eq(met_ppl_ref_ids(m, ids, 2, &o, &b, NULL, &err), 0, "%s", err.msg);
  cr_expect_eq(a.tokens, ids[0].n + ids[1].n);
  cr_expect_eq(a.nll, b.nll);
  cr_assert_eq(met_ppl_gen(m, tok, texts, conts, 2, NULL, &a, NULL, &err), 0, "%s", err.msg);
  cr_assert_eq(met_ppl_gen_ids(m, ids, cids, 2, &o, &b, NULL, &err), 0, "%s", err.msg);
  cr_expect_eq(a.tokens, cids[0].n + cids[1].n);
  cr_expect_eq(a.nll, b.nll);
  for (int i = 0; i < 2; i++) {
    tok_ids_free(&ids[i]);
    tok_ids_free(&cids[i]);
  }
  model_free(m);
  tok_free(tok);
}
