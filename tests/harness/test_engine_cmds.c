/* `dfpo perplexity` and `dfpo generate` over token ids, against the engine's
 * library calls on the same model (model_score_tokens, smp_generate,
 * beam_search). */
#include "tests/support/support.h"
#include "trainer/beam.h"
#include "trainer/gpt2.h"
#include "trainer/model.h"
#include "trainer/rdec.h"
#include "trainer/sample.h"
#include "trainer/tok.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static model_t *tiny(const char *path) {
  gpt2_config cfg;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(gpt2_config_named(&cfg, "gpt2-tiny", &err), 0);
  model_t *m;
  cr_assert_eq(gpt2_new(&m, &cfg, &err), 0);
  model_init_random(m, 3);
  cr_assert_eq(model_save(m, path, 0, &err), 0, "%s", err.msg);
  return m;
}

Test(engine_cmds, perplexity_matches_the_library) {
  char dir[256], model[300], toks[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(model, sizeof model, "%s/m.ckpt", dir);
  snprintf(toks, sizeof toks, "%s/t.txt", dir);
  model_t *m = tiny(model);
  ts_write_text(toks, "464 2068 7586 21831\n\n318 257 1332 13 50256 40\n");
  int d1[5] = {50256, 464, 2068, 7586, 21831}, d2[7] = {50256, 318, 257, 1332, 13, 50256, 40};
  double n1, n2;
  size_t k1, k2;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(model_score_tokens(m, d1, 5, &n1, &k1, &err), 0);
  cr_assert_eq(model_score_tokens(m, d2, 7, &n2, &k2, &err), 0);
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
  /* --per-doc: each document's line first (the empty line 2 is skipped),
   * each the library's score of that document alone */
  ts_dfpo(&r, "perplexity", "--model", model, "--tokens", toks, "--json", "--per-doc", NULL);
  cr_assert_eq(r.status, 0, "%s", r.err);
  char *save = NULL, *l1 = strtok_r(r.out, "\n", &save), *l2 = strtok_r(NULL, "\n", &save);
  char *l3 = strtok_r(NULL, "\n", &save);
  cr_assert(l1 && l2 && l3 && !strtok_r(NULL, "\n", &save), "three lines expected");
  static const int lines[2] = {1, 3}, ntok[2] = {4, 6};
  double want[2] = {n1, n2};
  char *per[2] = {l1, l2};
  for (int d = 0; d < 2; d++) {
    o = cJSON_Parse(per[d]);
    cr_assert_not_null(o, "%s", per[d]);
    cr_expect_eq(cJSON_GetObjectItem(o, "doc")->valueint, d);
    cr_expect_eq(cJSON_GetObjectItem(o, "line")->valueint, lines[d]);
    cr_expect_eq(cJSON_GetObjectItem(o, "tokens")->valueint, ntok[d]);
    cr_expect_lt(fabs(cJSON_GetObjectItem(o, "nll_sum")->valuedouble - want[d]), 1e-5, "%s",
                 per[d]);
    cJSON_Delete(o);
  }
  o = cJSON_Parse(l3);
  cr_expect_eq(cJSON_GetObjectItem(o, "documents")->valueint, 2);
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
  ts_write_text(toks, "1 2\n3 x4\n");
  ts_dfpo(&r, "perplexity", "--model", model, "--tokens", toks, NULL);
  cr_expect_eq(r.status, 2);
  cr_expect(strstr(r.err, ":2:3") != NULL, "%s", r.err);
  ts_run_free(&r);
  model_free(m);
  ts_rmtree(dir);
}

/* --dtype bf16 and f16 on a rotary decoder (a random tiny grouped-query
 * Llama, weights N(0, 0.5) so that the rounding shows): as above, the
 * command's perplexity and greedy tokens are the library's over the model
 * in that precision, and differ from the fp32 model's perplexity. */
Test(engine_cmds, perplexity_and_generate_with_16_bit_weights_on_a_llama) {
  char dir[256], model[300], toks[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(model, sizeof model, "%s/llama.ckpt", dir);
  snprintf(toks, sizeof toks, "%s/t.txt", dir);
  rdec_config c = {.family = RDEC_LLAMA,
                   .vocab_size = 64,
                   .n_embd = 16,
                   .n_layer = 2,
                   .n_head = 4,
                   .n_kv_head = 2,
                   .head_dim = 4,
                   .d_ff = 32,
                   .n_ctx = 32,
                   .rot = 4,
                   .rope_base = 10000.0f,
                   .eps = 1e-5f,
                   .rmsnorm = 1,
                   .act = RDEC_ACT_SWIGLU,
                   .tied = 1};
  dfpo_err err;
  dfpo_err_clear(&err);
  model_t *m32;
  cr_assert_eq(rdec_new(&m32, &c, &err), 0, "%s", err.msg);
  model_init_random(m32, 4);
  dfpo_rng r0;
  dfpo_rng_init(&r0, 5, 3);
  for (int i = 0; i < model_num_tensors(m32); i++) {
    model_tensor t;
    cr_assert_eq(model_tensor_at(m32, i, &t, &err), 0);
    for (int k = 0; k < t.rows * t.cols; k++)
      t.param[k] += 0.5f * (float)dfpo_rng_normal(&r0);
  }
  cr_assert_eq(model_save(m32, model, 0, &err), 0, "%s", err.msg);
  ts_write_text(toks, "5 9 17 3 40\n");
  int d1[5] = {5, 9, 17, 3, 40};
  double n32;
  size_t k;
  cr_assert_eq(model_score_tokens(m32, d1, 5, &n32, &k, &err), 0);
  for (int dt = OPS_DTYPE_BF16; dt <= OPS_DTYPE_F16; dt++) {
    const char *name = ops_dtype_name(dt);
    model_t *m;
    cr_assert_eq(model_load(&m, model, &err), 0, "%s", err.msg);
    cr_assert_eq(model_set_weight_dtype(m, dt, &err), 0, "%s", err.msg);
    double n1;
    cr_assert_eq(model_score_tokens(m, d1, 5, &n1, &k, &err), 0);
    ts_run r;
    ts_dfpo(&r, "perplexity", "--model", model, "--tokens", toks, "--json", "--no-bos", "--dtype",
            name, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cJSON *o = cJSON_Parse(r.out);
    cr_assert_not_null(o, "%s", r.out);
    double nll = cJSON_GetObjectItem(o, "nll_sum")->valuedouble;
    cr_expect_lt(fabs(nll - n1), 1e-5, "%s: %.9f vs the library's %.9f", name, nll, n1);
    cr_expect_gt(fabs(nll - n32), 1e-5, "%s %.9f, fp32 %.9f", name, nll, n32);
    cJSON_Delete(o);
    ts_run_free(&r);
    ts_dfpo(&r, "generate", "--model", model, "--tokens", toks, "--temperature", "0", "--max-new",
            "6", "--eos", "-1", "--dtype", name, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    smp_settings s = smp_settings_default();
    s.temperature = 0;
    s.max_new = 6;
    s.eos = -1;
    dfpo_rng rng;
    dfpo_rng_init(&rng, 0, DFPO_STREAM_SAMPLING);
    int out[6], n;
    cr_assert_eq(smp_generate(m, d1, NULL, 1, 5, &s, &rng, out, &n, NULL, &err), 0);
    o = cJSON_Parse(r.out);
    cr_assert_not_null(o, "%s", r.out);
    cJSON *t = cJSON_GetObjectItem(o, "tokens");
    cr_assert_eq(cJSON_GetArraySize(t), 6);
    for (int i = 0; i < 6; i++)
      cr_expect_eq(cJSON_GetArrayItem(t, i)->valueint, out[i], "%s token %d", name, i);
    cJSON_Delete(o);
    ts_run_free(&r);
    model_free(m);
  }
  model_free(m32);
  ts_rmtree(dir);
}

/* --dtype bf16 and f16: the library's model with its weights in that
 * precision (model_set_weight_dtype after model_load), its perplexity and
 * its greedy tokens; the bf16 perplexity differs from the fp32 model's */
Test(engine_cmds, perplexity_and_generate_with_16_bit_weights) {
  char dir[256], model[300], toks[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(model, sizeof model, "%s/m.ckpt", dir);
  snprintf(toks, sizeof toks, "%s/t.txt", dir);
  model_t *m32 = tiny(model);
  ts_write_text(toks, "464 2068 7586 21831\n");
  int d1[5] = {50256, 464, 2068, 7586, 21831};
  dfpo_err err;
  dfpo_err_clear(&err);
  double n32;
  size_t k;
  cr_assert_eq(model_score_tokens(m32, d1, 5, &n32, &k, &err), 0);
  for (int dt = OPS_DTYPE_BF16; dt <= OPS_DTYPE_F16; dt++) {
    const char *name = ops_dtype_name(dt);
    model_t *m;
    cr_assert_eq(model_load(&m, model, &err), 0, "%s", err.msg);
    cr_assert_eq(model_set_weight_dtype(m, dt, &err), 0, "%s", err.msg);
    double n1;
    cr_assert_eq(model_score_tokens(m, d1, 5, &n1, &k, &err), 0);
    ts_run r;
    ts_dfpo(&r, "perplexity", "--model", model, "--tokens", toks, "--json", "--dtype", name, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cJSON *o = cJSON_Parse(r.out);
    cr_assert_not_null(o, "%s", r.out);
    double nll = cJSON_GetObjectItem(o, "nll_sum")->valuedouble;
    cr_expect_lt(fabs(nll - n1), 1e-5, "%s: %.9f vs the library's %.9f", name, nll, n1);
    if (dt == OPS_DTYPE_BF16) /* bf16's rounding moves it, fp16's barely */
      cr_expect_gt(fabs(nll - n32), 1e-5, "bf16 %.9f, fp32 %.9f", nll, n32);
    cJSON_Delete(o);
    ts_run_free(&r);
    ts_dfpo(&r, "generate", "--model", model, "--tokens", toks, "--temperature", "0", "--max-new",
            "6", "--eos", "-1", "--dtype", name, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    smp_settings s = smp_settings_default();
    s.temperature = 0;
    s.max_new = 6;
    s.eos = -1;
    dfpo_rng rng;
    dfpo_rng_init(&rng, 0, DFPO_STREAM_SAMPLING);
    int out[6], n;
    cr_assert_eq(smp_generate(m, d1 + 1, NULL, 1, 4, &s, &rng, out, &n, NULL, &err), 0);
    o = cJSON_Parse(r.out);
    cr_assert_not_null(o, "%s", r.out);
    cJSON *t = cJSON_GetObjectItem(o, "tokens");
    cr_assert_eq(cJSON_GetArraySize(t), 6);
    for (int i = 0; i < 6; i++)
      cr_expect_eq(cJSON_GetArrayItem(t, i)->valueint, out[i], "%s token %d", name, i);
    cJSON_Delete(o);
    ts_run_free(&r);
    model_free(m);
  }
  ts_run r;
  ts_dfpo(&r, "perplexity", "--model", model, "--tokens", toks, "--dtype", "f8", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "f32, bf16 or f16"), "%s", r.err);
  ts_run_free(&r);
  model_free(m32);
  ts_rmtree(dir);
}

/* --beams: the library's beam search over the same left-padded batch, every
 * hypothesis --num-return asks for; the options beam search does not take */
Test(engine_cmds, beam_generate_matches_the_library) {
  char dir[256], model[300], toks[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(model, sizeof model, "%s/m.ckpt", dir);
  snprintf(toks, sizeof toks, "%s/t.txt", dir);
  model_t *m = tiny(model);
  ts_write_text(toks, "464 2068 7586\n318\n40 1101\n");
  ts_run r;
  ts_dfpo(&r, "generate", "--model", model, "--tokens", toks, "--beams", "3", "--num-return", "2",
          "--max-new", "4", "--length-penalty", "0.6", "--early-stopping", "never", "--eos", "13",
          NULL);
  cr_assert_eq(r.status, 0, "%s", r.err);
  enum { NB = 3, T = 3, N = 4, NR = 2 };
  const int in[NB * T] = {464, 2068, 7586, 0, 0, 318, 0, 40, 1101}, ks[NB] = {0, 2, 1};
  beam_settings s = beam_settings_default();
  s.num_beams = 3;
  s.num_return = NR;
  s.max_new = N;
  s.length_penalty = 0.6f;
  s.early_stopping = BEAM_EARLY_NEVER;
  s.eos = 13;
  int out[NB * NR * N], lens[NB * NR];
  double scores[NB * NR];
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(beam_search(m, in, ks, NB, T, &s, out, lens, scores, &err), 0, "%s", err.msg);
  char *save = NULL, *line = strtok_r(r.out, "\n", &save);
  for (int b = 0; b < NB; b++, line = strtok_r(NULL, "\n", &save)) {
    cr_assert_not_null(line, "line %d missing", b + 1);
    cJSON *o = cJSON_Parse(line);
    cr_assert_not_null(o, "%s", line);
    cr_expect_null(cJSON_GetObjectItem(o, "logprobs"));
    const cJSON *hs = cJSON_GetObjectItem(o, "beams");
    cr_assert_eq(cJSON_GetArraySize(hs), NR, "%s", line);
    for (int h = 0; h < NR; h++) {
      /* the best hypothesis also at the top level */
      const cJSON *hy = h ? cJSON_GetArrayItem(hs, h) : o;
      for (int rep = 0; rep < (h ? 1 : 2); rep++, hy = cJSON_GetArrayItem(hs, 0)) {
        const cJSON *t = cJSON_GetObjectItem(hy, "tokens");
        cr_assert_eq(cJSON_GetArraySize(t), lens[b * NR + h], "%s", line);
        for (int k = 0; k < lens[b * NR + h]; k++)
          cr_expect_eq(cJSON_GetArrayItem(t, k)->valueint, out[(b * NR + h) * N + k],
                       "prompt %d hypothesis %d token %d", b, h, k);
        cr_expect_lt(fabs(cJSON_GetObjectItem(hy, "score")->valuedouble - scores[b * NR + h]), 1e-5,
                     "%s", line);
      }
    }
    cJSON_Delete(o);
  }
  ts_run_free(&r);
  static const char *const bad[][3] = {{"--temperature", "0", "sampling's"},
                                       {"--num-return", "2", "give --beams"},
                                       {"--early-stopping", "maybe", "true, false or never"}};
  for (int i = 0; i < 3; i++) {
    ts_dfpo(&r, "generate", "--model", model, "--tokens", toks, i == 1 ? "--max-new" : "--beams",
            "2", bad[i][0], bad[i][1], NULL);
    cr_expect_eq(r.status, 1, "%s %s: %s", bad[i][0], bad[i][1], r.err);
    cr_expect(strstr(r.err, bad[i][2]) != NULL, "%s", r.err);
    ts_run_free(&r);
  }
  model_free(m);
  ts_rmtree(dir);
}

Test(engine_cmds, greedy_generate_matches_prompts_run_alone) {
  char dir[256], model[300], toks[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(model, sizeof model, "%s/m.ckpt", dir);
  snprintf(toks, sizeof toks, "%s/t.txt", dir);
  model_t *m = tiny(model);
  ts_write_text(toks, "464 2068 7586\n318\n");
  ts_run r;
  ts_dfpo(&r, "generate", "--model", model, "--tokens", toks, "--temperature", "0", "--max-new",
          "5", "--eos", "-1", NULL);
  cr_assert_eq(r.status, 0, "%s", r.err);
  /* the library, one prompt at a time (no padding) */
  const int p1[3] = {464, 2068, 7586}, p2[1] = {318};
  const int *ps[2] = {p1, p2};
  int lens[2] = {3, 1};
  smp_settings s = smp_settings_default();
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
    cr_assert_eq(smp_generate(m, ps[i], NULL, 1, lens[i], &s, &rng, out, &n, NULL, &err), 0);
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
  model_free(m);
  ts_rmtree(dir);
}

/* A checkpoint with a NaN weight: `dfpo perplexity` printed "nll_sum": nan
 * (not JSON) and exited 0, `generate` said "every token of row 0 is
 * masked". Both now exit 2 naming the tensor, and print nothing on stdout. */
Test(engine_cmds, non_finite_weights_exit_2) {
  char dir[256], model[300], toks[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(model, sizeof model, "%s/m.ckpt", dir);
  snprintf(toks, sizeof toks, "%s/t.txt", dir);
  model_t *m = tiny(model);
  for (int i = 0; i < gpt2_num_tensors(m); i++) {
    const char *name;
    float *p;
    gpt2_tensor_info(m, i, &name, NULL, NULL, &p, NULL);
    if (strcmp(name, "h.0.mlp.c_fc.bias") == 0)
      p[3] = NAN;
  }
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(model_save(m, model, 0, &err), 0, "%s", err.msg);
  ts_write_text(toks, "464 2068 7586\n");
  static const char *const cmds[][12] = {
      {"perplexity", "--model", NULL, "--tokens", NULL, "--json", NULL},
      {"generate", "--model", NULL, "--tokens", NULL, "--max-new", "3", NULL}};
  for (int c = 0; c < 2; c++) {
    char *argv[12];
    for (int k = 0; k < 12; k++)
      argv[k] = (char *)cmds[c][k];
    argv[2] = model;
    argv[4] = toks;
    ts_run r;
    ts_dfpo_home(&r, dir, argv, NULL);
    cr_expect_eq(r.status, 2, "%s: status %d, %s", cmds[c][0], r.status, r.err);
    cr_expect(strstr(r.err, "tensor 'h.0.mlp.c_fc.bias' has NaN at element 3") != NULL, "%s: %s",
              cmds[c][0], r.err);
    cr_expect_str_eq(r.out, "", "%s printed %s", cmds[c][0], r.out);
    ts_run_free(&r);
  }
  model_free(m);
  ts_rmtree(dir);
}

/* Finite weights whose perplexity is past DBL_MAX (embeddings of +-1e4:
 * logits of about 1e4 apart, so nll per token far above log(DBL_MAX) =
 * 709.8): `--json` printed "ppl": inf, which is not JSON; now null. */
Test(engine_cmds, perplexity_overflow_is_json_null) {
  char dir[256], model[300], toks[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(model, sizeof model, "%s/m.ckpt", dir);
  snprintf(toks, sizeof toks, "%s/t.txt", dir);
  model_t *m = tiny(model);
  for (int i = 0; i < gpt2_num_tensors(m); i++) {
    const char *name;
    int rows, cols;
    float *p;
    gpt2_tensor_info(m, i, &name, &rows, &cols, &p, NULL);
    if (strcmp(name, "wte.weight") == 0)
      for (int k = 0; k < rows * cols; k++)
        p[k] = (k * 2654435761u) >> 31 ? 1e4f : -1e4f;
  }
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(model_save(m, model, 0, &err), 0, "%s", err.msg);
  ts_write_text(toks, "464 2068 7586 21831 13\n");
  ts_run r;
  ts_dfpo(&r, "perplexity", "--model", model, "--tokens", toks, "--json", NULL);
  cr_assert_eq(r.status, 0, "%s", r.err);
  cJSON *o = cJSON_Parse(r.out);
  cr_assert_not_null(o, "not JSON: %s", r.out);
  cr_expect_gt(cJSON_GetObjectItem(o, "nll_per_token")->valuedouble, 710.0, "%s", r.out);
  cr_expect(cJSON_IsNull(cJSON_GetObjectItem(o, "ppl")), "%s", r.out);
  cJSON_Delete(o);
  ts_run_free(&r);
  model_free(m);
  ts_rmtree(dir);
}

/* ------------------------------------------------------ text front ends */

#define REF_TOK DFPO_SOURCE_DIR "/bench/gpt2_ref.py"
#define REF_TORCH DFPO_SOURCE_DIR "/bench/gpt2_torch.py"

/* Whether `python3 -c code` succeeds. */
static int python_has(const char *code) {
  if (access("/usr/bin/python3", X_OK) != 0)
    return 0;
  char *argv[] = {"/usr/bin/python3", "-c", (char *)code, NULL};
  ts_run r;
  ts_run_cmd(&r, argv, NULL, NULL);
  int ok = r.status == 0;
  ts_run_free(&r);
  return ok;
}

/* Runs a shell command line; asserts success; returns its stdout (heap). */
static char *sh(const char *cmd) {
  char *argv[] = {"/bin/sh", "-c", (char *)cmd, NULL};
  ts_run r;
  ts_run_cmd(&r, argv, NULL, NULL);
  cr_assert_eq(r.status, 0, "%s failed (%d): %s", cmd, r.status, r.err);
  char *out = r.out;
  r.out = NULL;
  ts_run_free(&r);
  return out;
}

static cJSON *run_json(ts_run *r) {
  cr_assert_eq(r->status, 0, "%s", r->err);
  cJSON *o = cJSON_Parse(r->out);
  cr_assert_not_null(o, "%s", r->out);
  return o;
}

/* Documents with ASCII, accents, CJK, an emoji, a literal "<|endoftext|>"
 * (ordinary text without --allow-special) and an empty line (skipped). */
static const char docs_text[] = "The quick brown fox jumps over the lazy dog.\n"
                                "Caf\xc3\xa9 na\xc3\xafve \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e "
                                "\xf0\x9f\x98\x80 isn't it?\n"
                                "\n"
                                "  two  spaces <|endoftext|> and\ttabs\r\n";

/* GPT-2's tokenizer: `dfpo perplexity --input` scores exactly the ids the
 * reference encoder (bench/gpt2_ref.py) gives the same lines, and its total
 * equals PyTorch's (bench/gpt2_torch.py nll) on the same weights. */
Test(engine_cmds, perplexity_of_text_is_that_of_its_reference_ids) {
  const char *data = ts_shared_data();
  if (!data)
    cr_skip_test("../shared/data is absent: GPT-2's tokenizer files are needed");
  if (!python_has("import regex"))
    cr_skip_test("/usr/bin/python3 with `regex` is missing: the reference encoder cannot run");
  char dir[256], model[300], st[300], text[300], ids[300], tokdir[300], cmd[2048];
  ts_tmpdir(dir, sizeof dir);
  snprintf(model, sizeof model, "%s/m.ckpt", dir);
  snprintf(st, sizeof st, "%s/m.safetensors", dir);
  snprintf(text, sizeof text, "%s/docs.txt", dir);
  snprintf(ids, sizeof ids, "%s/docs.ids", dir);
  snprintf(tokdir, sizeof tokdir, "%s/gpt2", data);
  model_t *m = tiny(model);
  ts_write_text(text, docs_text);
  /* the reference ids of each line without its line end (empty lines kept) */
  snprintf(cmd, sizeof cmd,
           "sed 's/\\r$//' '%s' | /usr/bin/python3 '%s' '%s' --lines > '%s' && cat '%s'", text,
           REF_TOK, tokdir, ids, ids);
  free(sh(cmd));
  for (int bos = 1; bos >= 0; bos--) {
    ts_run r;
    ts_dfpo(&r, "perplexity", "--model", model, "--tokenizer", tokdir, "--input", text, "--json",
            bos ? NULL : "--no-bos", NULL);
    cJSON *a = run_json(&r);
    ts_run_free(&r);
    ts_dfpo(&r, "perplexity", "--model", model, "--tokens", ids, "--json", bos ? NULL : "--no-bos",
            NULL);
    cJSON *b = run_json(&r);
    ts_run_free(&r);
    cr_expect_eq(cJSON_GetObjectItem(a, "documents")->valueint, 3);
    cr_expect_eq(cJSON_GetObjectItem(a, "tokens")->valueint,
                 cJSON_GetObjectItem(b, "tokens")->valueint);
    /* the same ids through the same code: identical */
    cr_expect_eq(cJSON_GetObjectItem(a, "nll_sum")->valuedouble,
                 cJSON_GetObjectItem(b, "nll_sum")->valuedouble);
    cr_expect_eq(cJSON_GetObjectItem(a, "ppl")->valuedouble,
                 cJSON_GetObjectItem(b, "ppl")->valuedouble);
    if (python_has("import torch")) {
      dfpo_err err;
      dfpo_err_clear(&err);
      cr_assert_eq(model_export_safetensors(m, st, 1, &err), 0, "%s", err.msg);
      snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' nll '%s' '%s' %s", REF_TORCH, st, ids,
               bos ? "" : "--no-bos");
      char *out = sh(cmd);
      cJSON *t = cJSON_Parse(out);
      cr_assert_not_null(t, "%s", out);
      cr_expect_eq(cJSON_GetObjectItem(t, "tokens")->valueint,
                   cJSON_GetObjectItem(a, "tokens")->valueint);
      /* fp32 forward passes of ~10 nats per token over ~40 tokens: 1e-3 */
      double x = cJSON_GetObjectItem(a, "nll_sum")->valuedouble,
             y = cJSON_GetObjectItem(t, "nll_sum")->valuedouble;
      cr_expect_lt(fabs(x - y), 1e-3, "dfpo %.6f vs PyTorch %.6f", x, y);
      cJSON_Delete(t);
      free(out);
    } else {
      cr_log_warn("/usr/bin/python3 has no torch: the PyTorch comparison is skipped");
    }
    cJSON_Delete(a);
    cJSON_Delete(b);
  }
  model_free(m);
  ts_rmtree(dir);
}

/* `dfpo generate` with text prompts samples what the equivalent token-id
 * prompts sample, and its text is the decoded continuation. */
Test(engine_cmds, generate_text_prompts_equal_their_token_ids) {
  const char *data = ts_shared_data();
  if (!data)
    cr_skip_test("../shared/data is absent: GPT-2's tokenizer files are needed");
  char dir[256], model[300], text[300], ids[300], tokdir[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(model, sizeof model, "%s/m.ckpt", dir);
  snprintf(text, sizeof text, "%s/p.txt", dir);
  snprintf(ids, sizeof ids, "%s/p.ids", dir);
  snprintf(tokdir, sizeof tokdir, "%s/gpt2", data);
  model_t *m = tiny(model);
  /* the ids as `dfpo tokenizer encode` would give them, checked against
   * bench/gpt2_ref.py by tests/trainer/test_tok_reference.c */
  dfpo_err err;
  dfpo_err_clear(&err);
  tok_tokenizer *tok;
  cr_assert_eq(tok_load(&tok, tokdir, &err), 0, "%s", err.msg);
  const char *prompts[3] = {"Hello world, this is", "Caf\xc3\xa9 \xf0\x9f\x98\x80", "A"};
  FILE *ft = fopen(text, "w"), *fi = fopen(ids, "w");
  cr_assert(ft && fi);
  for (int i = 0; i < 3; i++) {
    tok_ids v = {0};
    cr_assert_eq(tok_encode(tok, prompts[i], strlen(prompts[i]), 0, &v, &err), 0);
    fprintf(ft, "%s\n", prompts[i]);
    for (size_t k = 0; k < v.n; k++)
      fprintf(fi, "%s%d", k ? " " : "", v.ids[k]);
    fputc('\n', fi);
    tok_ids_free(&v);
  }
  fclose(ft);
  fclose(fi);
  const char *common[] = {"--max-new", "6", "--top-k", "50", "--seed", "9", "--eos", "-1"};
  ts_run r1, r2;
  ts_dfpo(&r1, "generate", "--model", model, "--tokenizer", tokdir, "--input", text, common[0],
          common[1], common[2], common[3], common[4], common[5], common[6], common[7], NULL);
  ts_dfpo(&r2, "generate", "--model", model, "--tokens", ids, common[0], common[1], common[2],
          common[3], common[4], common[5], common[6], common[7], NULL);
  cr_assert_eq(r1.status, 0, "%s", r1.err);
  cr_assert_eq(r2.status, 0, "%s", r2.err);
  char *l1 = r1.out, *l2 = r2.out;
  for (int i = 0; i < 3; i++) {
    char *n1 = strchr(l1, '\n'), *n2 = strchr(l2, '\n');
    cr_assert(n1 && n2);
    *n1 = *n2 = 0;
    cJSON *a = cJSON_Parse(l1), *b = cJSON_Parse(l2);
    cr_assert(a && b, "%s / %s", l1, l2);
    cr_expect_str_eq(cJSON_GetObjectItem(a, "prompt")->valuestring, prompts[i]);
    char *ta = cJSON_PrintUnformatted(cJSON_GetObjectItem(a, "tokens")),
         *tb = cJSON_PrintUnformatted(cJSON_GetObjectItem(b, "tokens")),
         *pa = cJSON_PrintUnformatted(cJSON_GetObjectItem(a, "prompt_tokens")),
         *pb = cJSON_PrintUnformatted(cJSON_GetObjectItem(b, "prompt")),
         *la = cJSON_PrintUnformatted(cJSON_GetObjectItem(a, "logprobs")),
         *lb = cJSON_PrintUnformatted(cJSON_GetObjectItem(b, "logprobs"));
    cr_expect_str_eq(ta, tb, "prompt %d", i);
    cr_expect_str_eq(pa, pb, "prompt %d", i);
    cr_expect_str_eq(la, lb, "prompt %d", i);
    /* the text is the decoding of the tokens */
    const cJSON *t = cJSON_GetObjectItem(a, "tokens");
    int32_t gen[6];
    int n = cJSON_GetArraySize(t);
    cr_assert_eq(n, 6);
    for (int k = 0; k < n; k++)
      gen[k] = cJSON_GetArrayItem(t, k)->valueint;
    char *dec = NULL;
    size_t dlen = 0, dcap = 0;
    cr_assert_eq(tok_decode(tok, gen, 6, &dec, &dlen, &dcap, &err), 0);
    if (memchr(dec, 0, dlen) == NULL && cJSON_GetObjectItem(a, "text")->valuestring[0] &&
        strlen(dec) == dlen) {
      /* valid UTF-8 continuations come back byte for byte */
      const char *got = cJSON_GetObjectItem(a, "text")->valuestring;
      int valid = 1;
      for (size_t k = 0; k < dlen; k++)
        valid &= (unsigned char)dec[k] < 0x80;
      if (valid)
        cr_expect_str_eq(got, dec, "prompt %d", i);
    }
    free(dec);
    free(ta), free(tb), free(pa), free(pb), free(la), free(lb);
    cJSON_Delete(a);
    cJSON_Delete(b);
    l1 = n1 + 1;
    l2 = n2 + 1;
  }
  ts_run_free(&r1);
  ts_run_free(&r2);
  /* --prompt samples what its ids given alone sample */
  FILE *f1 = fopen(ids, "w");
  cr_assert_not_null(f1);
  fputs("15496 995 11 428 318\n", f1); /* "Hello world, this is" (printed above) */
  fclose(f1);
  ts_dfpo(&r1, "generate", "--model", model, "--tokenizer", tokdir, "--prompt",
          "Hello world, this is", common[0], common[1], common[2], common[3], common[4], common[5],
          common[6], common[7], NULL);
  ts_dfpo(&r2, "generate", "--model", model, "--tokens", ids, common[0], common[1], common[2],
          common[3], common[4], common[5], common[6], common[7], NULL);
  cJSON *a = run_json(&r1), *b = run_json(&r2);
  char *ta = cJSON_PrintUnformatted(cJSON_GetObjectItem(a, "tokens")),
       *tb = cJSON_PrintUnformatted(cJSON_GetObjectItem(b, "tokens")),
       *pa = cJSON_PrintUnformatted(cJSON_GetObjectItem(a, "prompt_tokens")),
       *pb = cJSON_PrintUnformatted(cJSON_GetObjectItem(b, "prompt"));
  cr_expect_str_eq(ta, tb);
  cr_expect_str_eq(pa, pb);
  free(ta), free(tb), free(pa), free(pb);
  cJSON_Delete(a);
  cJSON_Delete(b);
  ts_run_free(&r1);
  ts_run_free(&r2);
  /* bytes that are not UTF-8 come back as U+FFFD, quotes and newlines
   * escaped */
  ts_dfpo(&r1, "generate", "--model", model, "--tokenizer", tokdir, "--prompt", "a\xff\"b\n",
          "--max-new", "2", NULL);
  cJSON *o = run_json(&r1);
  cr_expect_str_eq(cJSON_GetObjectItem(o, "prompt")->valuestring, "a\xef\xbf\xbd\"b\n");
  cJSON_Delete(o);
  ts_run_free(&r1);
  /* an empty prompt starts from <|endoftext|> */
  ts_dfpo(&r1, "generate", "--model", model, "--tokenizer", tokdir, "--prompt", "", "--max-new",
          "2", NULL);
  o = run_json(&r1);
  const cJSON *pt = cJSON_GetObjectItem(o, "prompt_tokens");
  cr_expect_eq(cJSON_GetArraySize(pt), 1);
  cr_expect_eq(cJSON_GetArrayItem(pt, 0)->valueint, 50256);
  cJSON_Delete(o);
  ts_run_free(&r1);
  tok_free(tok);
  model_free(m);
  ts_rmtree(dir);
}

/* Bad input to the text front ends: usage errors exit 1, data errors 2,
 * with messages that say what is wrong. */
Test(engine_cmds, text_front_end_errors) {
  char dir[256], model[300], text[300], tokdir[300], small[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(model, sizeof model, "%s/m.ckpt", dir);
  snprintf(text, sizeof text, "%s/p.txt", dir);
  snprintf(tokdir, sizeof tokdir, "%s/tok", dir);
  snprintf(small, sizeof small, "%s/small.ckpt", dir);
  model_t *m = tiny(model);
  ts_write_text(text, "abc abd abe abc abd abe\n");
  dfpo_err err;
  dfpo_err_clear(&err);
  const char *files[1] = {text};
  cr_assert_eq(tok_train(files, 1, 262, tokdir, NULL, &err), 0, "%s", err.msg);
  /* a model whose vocabulary (100) is smaller than the tokenizer's (262) */
  gpt2_config cfg;
  cr_assert_eq(gpt2_config_named(&cfg, "gpt2-tiny", &err), 0);
  cfg.vocab_size = 100;
  model_t *s;
  cr_assert_eq(gpt2_new(&s, &cfg, &err), 0);
  cr_assert_eq(model_save(s, small, 0, &err), 0);
  model_free(s);
  struct {
    int status;
    const char *needle;
    const char *argv[10];
  } cases[] = {
      {1, "--tokenizer", {"generate", "--model", model, "--prompt", "hi", NULL}},
      {1, "exactly one", {"generate", "--model", model, "--prompt", "hi", "--tokens", text, NULL}},
      {1, "--tokenizer", {"perplexity", "--model", model, "--input", text, NULL}},
      {1, "one of", {"perplexity", "--model", model, "--input", text, "--tokens", text, NULL}},
      {2, "nope", {"perplexity", "--model", model, "--tokenizer", tokdir, "--input", "nope", NULL}},
      {2, "nodir", {"generate", "--model", model, "--tokenizer", "nodir", "--prompt", "x", NULL}},
      {1, "262", {"perplexity", "--model", small, "--tokenizer", tokdir, "--input", text, NULL}},
      {1, "262", {"generate", "--model", small, "--tokenizer", tokdir, "--prompt", "x", NULL}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char **a = cases[i].argv;
    ts_run r;
    ts_dfpo(&r, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], NULL);
    cr_expect_eq(r.status, cases[i].status, "case %zu: status %d: %s", i, r.status, r.err);
    cr_expect(strstr(r.err, cases[i].needle) != NULL, "case %zu: %s", i, r.err);
    ts_run_free(&r);
  }
  /* a tokenizer of its own (end-of-text id 261) with a model of its size:
   * the text's perplexity is the library's on the encoded ids */
  tok_tokenizer *tok;
  cr_assert_eq(tok_load(&tok, tokdir, &err), 0, "%s", err.msg);
  cr_assert_eq(tok_eot_id(tok), 261);
  cfg.vocab_size = 262;
  cr_assert_eq(gpt2_new(&s, &cfg, &err), 0);
  model_init_random(s, 5);
  cr_assert_eq(model_save(s, small, 0, &err), 0);
  tok_ids v = {0};
  cr_assert_eq(tok_encode(tok, "abc abd abe abc abd abe", 23, 0, &v, &err), 0);
  int ids[64];
  ids[0] = 261;
  for (size_t k = 0; k < v.n; k++)
    ids[k + 1] = v.ids[k];
  double nll;
  size_t scored;
  cr_assert_eq(model_score_tokens(s, ids, v.n + 1, &nll, &scored, &err), 0);
  ts_run r;
  ts_dfpo(&r, "perplexity", "--model", small, "--tokenizer", tokdir, "--input", text, "--json",
          NULL);
  cJSON *o = run_json(&r);
  cr_expect_eq((size_t)cJSON_GetObjectItem(o, "tokens")->valueint, scored);
  cr_expect_lt(fabs(cJSON_GetObjectItem(o, "nll_sum")->valuedouble - nll), 1e-5);
  cJSON_Delete(o);
  ts_run_free(&r);
  tok_ids_free(&v);
  tok_free(tok);
  model_free(s);
  model_free(m);
  ts_rmtree(dir);
}
