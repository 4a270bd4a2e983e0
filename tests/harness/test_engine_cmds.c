/* `dfpo perplexity` and `dfpo generate` over token ids, against the engine's
 * library calls on the same model (gpt2_score_tokens, gpt2_generate). */
#include "tests/support/support.h"
#include "trainer/trainer.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static gpt2_model *tiny(const char *path) {
  gpt2_config cfg;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(gpt2_config_named(&cfg, "gpt2-tiny", &err), 0);
  gpt2_model *m;
  cr_assert_eq(gpt2_new(&m, &cfg, &err), 0);
  gpt2_init_random(m, 3);
  cr_assert_eq(gpt2_save(m, path, 0, &err), 0, "%s", err.msg);
  return m;
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fputs(text, f);
  fclose(f);
}

Test(engine_cmds, perplexity_matches_the_library) {
  char dir[256], model[300], toks[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(model, sizeof model, "%s/m.ckpt", dir);
  snprintf(toks, sizeof toks, "%s/t.txt", dir);
  gpt2_model *m = tiny(model);
  write_text(toks, "464 2068 7586 21831\n\n318 257 1332 13 50256 40\n");
  int d1[5] = {50256, 464, 2068, 7586, 21831}, d2[7] = {50256, 318, 257, 1332, 13, 50256, 40};
  double n1, n2;
  size_t k1, k2;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(gpt2_score_tokens(m, d1, 5, &n1, &k1, &err), 0);
  cr_assert_eq(gpt2_score_tokens(m, d2, 7, &n2, &k2, &err), 0);
  ts_run r;
  ts_dfpo(&r, "perplexity", "--model", model, "--tokens", toks, "--json", NULL);
  cr_assert_eq(r.status, 0, "%s", r.err);
  cJSON *o = cJSON_Parse(r.out);
  cr_assert_not_null(o, "%s", r.out);
  cr_expect_eq(cJSON_GetObjectItem(o, "tokens")->valueint, 10);
  cr_expect_eq(cJSON_GetObjectItem(o, "documents")->valueint, 2);
  double nll = cJSON_GetObjectItem(o, "nll_sum")->valuedouble;
  cr_expect_lt(fabs(nll - (n1 + n2)), 1e-4, "%f vs %f", nll, n1 + n2);
  cr_expect_lt(fabs(cJSON_GetObjectItem(o, "ppl")->valuedouble - exp((n1 + n2) / 10)), 1e-3);
  cJSON_Delete(o);
  ts_run_free(&r);
  /* --no-bos: the first token of each document is context only */
  ts_dfpo(&r, "perplexity", "--model", model, "--tokens", toks, "--json", "--no-bos", NULL);
  cr_assert_eq(r.status, 0, "%s", r.err);
  o = cJSON_Parse(r.out);
  cr_expect_eq(cJSON_GetObjectItem(o, "tokens")->valueint, 8);
  cJSON_Delete(o);
  ts_run_free(&r);
  /* a bad id names the file, line and column */
  write_text(toks, "1 2\n3 x4\n");
  ts_dfpo(&r, "perplexity", "--model", model, "--tokens", toks, NULL);
  cr_expect_eq(r.status, 2);
  cr_expect(strstr(r.err, ":2:3") != NULL, "%s", r.err);
  ts_run_free(&r);
  gpt2_free(m);
  ts_rmtree(dir);
}

Test(engine_cmds, greedy_generate_matches_prompts_run_alone) {
  char dir[256], model[300], toks[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(model, sizeof model, "%s/m.ckpt", dir);
  snprintf(toks, sizeof toks, "%s/t.txt", dir);
  gpt2_model *m = tiny(model);
  write_text(toks, "464 2068 7586\n318\n");
  ts_run r;
  ts_dfpo(&r, "generate", "--model", model, "--tokens", toks, "--temperature", "0", "--max-new",
          "5", "--eos", "-1", NULL);
  cr_assert_eq(r.status, 0, "%s", r.err);
  /* the library, one prompt at a time (no padding) */
  const int p1[3] = {464, 2068, 7586}, p2[1] = {318};
  const int *ps[2] = {p1, p2};
  int lens[2] = {3, 1};
  gpt2_sampling s = gpt2_sampling_default();
  s.temperature = 0;
  s.max_new = 5;
  s.eos = -1;
  dfpo_rng rng;
  dfpo_rng_init(&rng, 0, DFPO_STREAM_SAMPLING);
  dfpo_err err;
  dfpo_err_clear(&err);
  char *line = r.out;
  for (int i = 0; i < 2; i++) {
    int out[5], n;
    cr_assert_eq(gpt2_generate(m, ps[i], NULL, 1, lens[i], &s, &rng, out, &n, NULL, &err), 0);
    char *nl = strchr(line, '\n');
    cr_assert_not_null(nl);
    *nl = 0;
    cJSON *o = cJSON_Parse(line);
    cr_assert_not_null(o, "%s", line);
    cJSON *t = cJSON_GetObjectItem(o, "tokens");
    cr_assert_eq(cJSON_GetArraySize(t), 5);
    for (int k = 0; k < 5; k++)
      cr_expect_eq(cJSON_GetArrayItem(t, k)->valueint, out[k], "prompt %d token %d", i, k);
    cJSON_Delete(o);
    line = nl + 1;
  }
  ts_run_free(&r);
  ts_dfpo(&r, "generate", "--model", model, NULL);
  cr_expect_eq(r.status, 1);
  ts_run_free(&r);
  gpt2_free(m);
  ts_rmtree(dir);
}
