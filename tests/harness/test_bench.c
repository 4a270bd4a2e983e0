/* `dfpo bench`: its JSON line on a tiny shape (the numbers are not checked:
 * timings are never tested), --help, and usage errors. */
#include "tests/support/support.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <string.h>

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

Test(bench, help_and_usage_errors) {
  ts_run r;
  ts_dfpo(&r, "bench", "--help", NULL);
  cr_expect_eq(r.status, 0);
  cr_expect(strstr(r.out, "--shape") && strstr(r.out, "gpt2_torch.py"));
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
