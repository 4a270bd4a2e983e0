/* `dfpo bench`: its JSON line on a tiny shape (the numbers are not checked:
 * timings are never tested), on a loaded T5 folder (--model; its first
 * step's loss against the perplexities' pair scoring of the same rows),
 * --help, and usage errors. */
#include "metrics/metrics.h"
#include "tests/support/support.h"
#include "tests/trainer/t5_testutil.h"
#include "trainer/model.h"
#include "trainer/t5.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static cJSON *bench_json(ts_run *r) {
  cr_assert_eq(r->status, 0, "dfpo bench failed: %s", r->err);
  cJSON *o = cJSON_Parse(r->out);
  cr_assert_not_null(o, "not JSON: %s", r->out);
  return o;
}

Test(bench, train_and_generate_on_a_tiny_shape) {
  ts_run r;
  ts_dfpo(&r, "bench", "--shape", "gpt2-tiny", "--batch", "2", "--seq", "8", "--steps", "1", NULL);
  cJSON *o = bench_json(&r);
  cr_expect_str_eq(cJSON_GetObjectItem(o, "shape")->valuestring, "gpt2-tiny");
  cr_expect_gt(cJSON_GetObjectItem(o, "step_s")->valuedouble, 0.0);
  cr_expect_eq(cJSON_GetObjectItem(o, "params")->valuedouble, 3349312.0); /* 50257*64+512*64+... */
  cr_expect_gt(cJSON_GetObjectItem(o, "peak_rss_mib")->valuedouble, 0.0);
  cJSON_Delete(o);
  ts_run_free(&r);
  ts_dfpo(&r, "bench", "--shape", "gpt2-tiny", "--what", "generate", "--prompts", "2",
          "--prompt-len", "4", "--new", "3", NULL);
  o = bench_json(&r);
  cr_expect_gt(cJSON_GetObjectItem(o, "gen_s")->valuedouble, 0.0);
  cr_expect_eq(cJSON_GetObjectItem(o, "new")->valueint, 3);
  cJSON_Delete(o);
  ts_run_free(&r);
}

/* --lora-rank: the step trains the adapters alone. Their parameters at
 * gpt2-tiny (2 layers, C 64) and rank 4, each A [4, in] + B [out, 4]:
 * c_attn 4*64 + 192*4 = 1024, attn.c_proj 4*64 + 64*4 = 512, c_fc
 * 4*64 + 256*4 = 1280, mlp.c_proj 4*256 + 64*4 = 1280; 4096 a layer, 8192
 * in all. Generation has nothing to train: refused. */
Test(bench, lora_trains_the_adapters_alone) {
  ts_run r;
  ts_dfpo(&r, "bench", "--shape", "gpt2-tiny", "--batch", "2", "--seq", "8", "--steps", "1",
          "--lora-rank", "4", "--lora-alpha", "8", NULL);
  cJSON *o = bench_json(&r);
  cr_expect_eq(cJSON_GetObjectItem(o, "lora_rank")->valueint, 4);
  cr_expect_eq(cJSON_GetObjectItem(o, "params")->valuedouble, 8192.0);
  cJSON_Delete(o);
  ts_run_free(&r);
  ts_dfpo(&r, "bench", "--shape", "gpt2-tiny", "--what", "generate", "--lora-rank", "4", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "needs --what train") != NULL, "%s", r.err);
  ts_run_free(&r);
  ts_dfpo(&r, "bench", "--lora-alpha", "0", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "--lora-alpha must be a number") != NULL, "%s", r.err);
  ts_run_free(&r);
}

/* --base-dtype: the LoRA step over a base whose matrices are in bf16 (the
 * same adapters train: their count as above), the arena smaller than over
 * the fp32 base; without --lora-rank, or with an unknown type, refused. */
Test(bench, lora_over_a_bf16_base) {
  ts_run r;
  double arena[2];
  const char *dts[2] = {"f32", "bf16"};
  for (int d = 0; d < 2; d++) {
    ts_dfpo(&r, "bench", "--shape", "gpt2-tiny", "--batch", "2", "--seq", "8", "--steps", "1",
            "--lora-rank", "4", "--base-dtype", dts[d], NULL);
    cJSON *o = bench_json(&r);
    cr_expect_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(o, "base_dtype")), dts[d]);
    cr_expect_eq(cJSON_GetObjectItem(o, "params")->valuedouble, 8192.0);
    arena[d] = cJSON_GetObjectItem(o, "arena_mib")->valuedouble;
    cJSON_Delete(o);
    ts_run_free(&r);
  }
  cr_expect_lt(arena[1], arena[0], "bf16 base %g MiB, fp32 %g MiB", arena[1], arena[0]);
  ts_dfpo(&r, "bench", "--base-dtype", "bf16", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "--base-dtype is the frozen base") != NULL, "%s", r.err);
  ts_run_free(&r);
  ts_dfpo(&r, "bench", "--lora-rank", "4", "--base-dtype", "f8", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "--base-dtype must be") != NULL, "%s", r.err);
  ts_run_free(&r);
}

/* --what rl: one RL iteration per algorithm on a tiny shape, split into its
 * parts (the parts are within the whole; the numbers are not checked). */
Test(bench, rl_iteration_on_a_tiny_shape) {
  const char *algos[] = {"ppo", "nlpo", "dfpo"};
  for (int i = 0; i < 3; i++) {
    ts_run r;
    ts_dfpo(&r, "bench", "--shape", "gpt2-tiny", "--what", "rl", "--algo", algos[i], "--prompts",
            "2", "--prompt-len", "4", "--new", "3", NULL);
    cJSON *o = bench_json(&r);
    cr_expect_str_eq(cJSON_GetObjectItem(o, "algo")->valuestring, algos[i]);
    double whole = cJSON_GetObjectItem(o, "iteration_s")->valuedouble, parts = 0;
    const char *keys[] = {"generate_s", "passes_s", "scoring_s", "update_s"};
    for (int k = 0; k < 4; k++) {
      double v = cJSON_GetObjectItem(o, keys[k])->valuedouble;
      cr_expect_gt(v, 0.0, "%s", keys[k]);
      parts += v;
    }
    cr_expect_leq(parts, whole * 1.01 + 1e-3, "parts %g, whole %g", parts, whole);
    cJSON_Delete(o);
    ts_run_free(&r);
  }
}

/* --model on a tiny random T5 folder: a training step over 2 rows of 3
 * source and 4 target tokens, and greedy decoding. The rows are the bench's
 * draws (seed 0's DFPO_STREAM_DATA, ids below the vocabulary, row-major),
 * drawn again here: the first step's loss (before any update) must be the
 * mean NLL met_ppl_gen_ids gives the same pairs (itself held to PyTorch,
 * tests/trainer/test_t5.c). */
Test(bench, a_t5_folder_with_model) {
  char dir[256], w[400];
  ts_tmpdir(dir, sizeof dir);
  t5_config c = tt_tiny(40, 0, 1); /* v1.0; an MLP of 24, 16 positions, </s> 1 */
  c.d_ff = 24;
  c.n_pos = 16;
  c.eos_id = 1;
  model_t *m;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(t5_new(&m, &c, &err), DFPO_OK, "%s", err.msg);
  model_init_random(m, 3);
  snprintf(w, sizeof w, "%s/model.safetensors", dir);
  cr_assert_eq(model_export_safetensors(m, w, 1, &err), DFPO_OK, "%s", err.msg);
  ts_run r;
  ts_dfpo(&r, "bench", "--model", dir, "--batch", "2", "--prompt-len", "3", "--seq", "4", "--steps",
          "1", NULL);
  cJSON *o = bench_json(&r);
  cr_expect_str_eq(cJSON_GetObjectItem(o, "arch")->valuestring, "t5");
  cr_expect_gt(cJSON_GetObjectItem(o, "step_s")->valuedouble, 0.0);
  cr_expect_eq(cJSON_GetObjectItem(o, "params")->valuedouble, (double)model_num_params(m));
  double loss = cJSON_GetObjectItem(o, "loss")->valuedouble;
  cJSON_Delete(o);
  ts_run_free(&r);
  dfpo_rng rng;
  dfpo_rng_init(&rng, 0, DFPO_STREAM_DATA);
  int32_t ids[2][7];
  tok_ids src[2], tgt[2];
  for (int b = 0; b < 2; b++) {
    for (int i = 0; i < 7; i++)
      ids[b][i] = (int32_t)dfpo_rng_below(&rng, 40);
    src[b] = (tok_ids){ids[b], 3, 0};
    tgt[b] = (tok_ids){ids[b] + 3, 4, 0};
  }
  met_ppl p;
  cr_assert_eq(met_ppl_gen_ids(m, src, tgt, 2, NULL, &p, NULL, &err), DFPO_OK, "%s", err.msg);
  cr_expect_eq(p.tokens, 8);
  double want = p.nll / 8.0;
  cr_expect_leq(fabs(loss - want), 1e-5 * want, "bench's first loss %.8g, the pairs' %.8g", loss,
                want);
  ts_dfpo(&r, "bench", "--model", dir, "--what", "generate", "--prompts", "3", "--prompt-len", "5",
          "--new", "6", "--greedy", NULL);
  o = bench_json(&r);
  cr_expect_gt(cJSON_GetObjectItem(o, "gen_s")->valuedouble, 0.0);
  cr_expect(cJSON_IsTrue(cJSON_GetObjectItem(o, "greedy")));
  cJSON_Delete(o);
  ts_run_free(&r);
  /* the decoder's 16 positions: 16 new tokens and the start do not fit */
  ts_dfpo(&r, "bench", "--model", dir, "--what", "generate", "--new", "16", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "positions") != NULL, "%s", r.err);
  ts_run_free(&r);
  ts_dfpo(&r, "bench", "--model", dir, "--shape", "gpt2-tiny", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "--model") != NULL, "%s", r.err);
  ts_run_free(&r);
  ts_dfpo(&r, "bench", "--model", dir, "--what", "rl", NULL);
  cr_expect_eq(r.status, 1);
  ts_run_free(&r);
  model_free(m);
  ts_rmtree(dir);
}

Test(bench, help_and_usage_errors) {
  ts_run r;
  ts_dfpo(&r, "bench", "--help", NULL);
  cr_expect_eq(r.status, 0);
  cr_expect(strstr(r.out, "--shape") && strstr(r.out, "gpt2_torch.py") &&
            strstr(r.out, "--model") && strstr(r.out, "t5_torch.py"));
  ts_run_free(&r);
  ts_dfpo(&r, "bench", "--shape", "gpt2-huge", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "gpt2-huge") != NULL, "%s", r.err);
  ts_run_free(&r);
  ts_dfpo(&r, "bench", "--batch", "0", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "--batch") != NULL, "%s", r.err);
  ts_run_free(&r);
  ts_dfpo(&r, "bench", "--what", "fly", NULL);
  cr_expect_eq(r.status, 1);
  ts_run_free(&r);
  ts_dfpo(&r, "bench", "--what", "rl", "--algo", "a2c", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "--algo") != NULL, "%s", r.err);
  ts_run_free(&r);
}
