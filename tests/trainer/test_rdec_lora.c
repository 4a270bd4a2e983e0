/* LoRA adapters and the value head on the policy's trunk for the rotary
 * decoders (trainer/rdec.h; model_add_lora, model_set_adapters,
 * model_base_view, model_adapter_view, model_lm_value_backward).
 *
 * Gradients: tiny models of each family (GPT-J: parallel residual, shared
 * norm, interleaved rotary, tanh GELU; GPT-NeoX: sequential residual,
 * biases, exact GELU, partial rotary; Llama: RMSNorm, SwiGLU, grouped-query
 * attention with 2 key/value heads for 4 query heads), every linear layer
 * adapted (rank 2, B made non-zero), under sum_i w_i log p(tgt_i) over a
 * left-padded batch, against central differences (h = 4e-3 in float32,
 * the objective summed in double) of the engine's own forward pass, at
 * most 48 elements of each tensor. The differences' error is O(h^2) plus
 * float32 rounding over h; per tensor the relative L2 error
 * |g - fd| / (|g| + |fd|) must be under 1e-2 (a missing or wrong term is
 * off by O(1)); measured (2026-12-03, Debug) at most 1.3e-3 over every
 * family and case. The same for a subset of the targets (q_proj
 * alone: its rows of the fused q | k | v matrix only; Llama's gate_proj
 * alone: its half of gate | up), and for the value head on the trunk
 * (model_lm_value_backward: the LM objective plus sum_i u_i value_i), with
 * and without adapters.
 *
 * Then: adapters off give the base bit for bit (forward and decoding),
 * AdamW sees and moves the adapters only; a base view and an adapter view
 * share the base (their bytes written out below); checkpoints keep the
 * adapters and their moments, a resumed step equals the uninterrupted one
 * bit for bit, and a cut adapter section or trailing data are refused.
 *
 * Export: a model without adapters written as Hugging Face safetensors
 * with its config.json and read back (model_load of the folder) gives the
 * same log-probs bit for bit (the layouts: q_proj, k_proj, v_proj and
 * gate_proj, up_proj apart, GPT-NeoX's per-head query_key_value); with
 * adapters it is written merged (W + (alpha/r) B A, each element summed in
 * double and rounded once) and read back gives the adapted model's
 * log-probs within 1e-5; the peft adapter file holds peft's names and
 * shapes for the family (lora_A [r, in], lora_B [out, r]), and each base
 * weight of the plain export plus (alpha/r) lora_B lora_A from that file is
 * the merged export's weight (1e-5): GPT-NeoX's B in query_key_value's own
 * row order. */
#include "tests/support/support.h"
#include "tests/trainer/gpt2_testutil.h"
#include "tests/trainer/rdec_testutil.h"
#include "trainer/gpt2.h"
#include "trainer/model.h"
#include "trainer/optim.h"
#include "trainer/rdec.h"
#include "trainer/st_internal.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

enum { B = 2, T = 6, V = 8 };
static const int toks[B * T] = {1, 2, 3, 4, 5, 6, 0, 0, 7, 1, 2, 3};
static const int kst[B] = {0, 2};
static const int tgts[B * T] = {2, 3, 4, 5, 6, -1, -1, -1, 1, 2, 3, 5};
static float wgt(int i) {
  return 0.3f + 0.1f * (float)(i % 5);
}
static float vwgt(int i) {
  return 0.5f - 0.15f * (float)(i % 4);
}

/* larger weights than the init's 0.02, so that every term matters */
static model_t *base_model(int family, uint64_t seed) {
  return rt_perturbed(family, V, seed, 0.3f);
}

static void add_lora(model_t *m, const char *targets, uint64_t seed) {
  dfpo_err err;
  dfpo_err_clear(&err);
  model_lora_config lc = {2, 4.0f, targets};
  cr_assert_eq(model_add_lora(m, &lc, seed, &err), DFPO_OK, "%s", err.msg);
}

/* Every trainable element (B included) a seeded normal of sd s. */
static void randomise(model_t *m, uint64_t seed, float s) {
  dfpo_rng r;
  dfpo_rng_init(&r, seed, 91);
  for (int i = 0; i < model_num_tensors(m); i++) {
    model_tensor t;
    cr_assert_eq(model_tensor_at(m, i, &t, NULL), 0);
    for (int k = 0; k < t.rows * t.cols; k++)
      t.param[k] = s * (float)dfpo_rng_normal(&r);
  }
}

/* sum_i w_i log p(tgt_i) (+ sum_i u_i value_i with values), its gradient
 * accumulated with backward. */
static double objective(model_t *m, int values, int backward) {
  dfpo_err err;
  dfpo_err_clear(&err);
  float logp[B * T], dl[B * T], val[B * T], dv[B * T];
  cr_assert_eq(model_forward_rows(m, toks, kst, B, T, &err), 0, "%s", err.msg);
  cr_assert_eq(model_lm_logprobs(m, tgts, logp, NULL, &err), 0, "%s", err.msg);
  if (values)
    cr_assert_eq(model_value_forward(m, val, &err), 0, "%s", err.msg);
  double s = 0;
  for (int i = 0; i < B * T; i++) {
    s += (double)wgt(i) * logp[i];
    dl[i] = wgt(i);
    dv[i] = vwgt(i);
    if (values)
      s += (double)vwgt(i) * val[i];
  }
  if (backward)
    cr_assert_eq(model_lm_value_backward(m, dl, NULL, NULL, values ? dv : NULL, &err), 0, "%s",
                 err.msg);
  return s;
}

/* Every trainable tensor's gradient against central differences (at most
 * 48 elements of each, evenly spread). */
static void check_gradients(model_t *m, int values, const char *what) {
  model_zero_grad(m);
  objective(m, values, 1);
  const float h = 4e-3f;
  double worst = 0;
  for (int i = 0; i < model_num_tensors(m); i++) {
    model_tensor t;
    cr_assert_eq(model_tensor_at(m, i, &t, NULL), 0);
    int n = t.rows * t.cols, step = n > 48 ? n / 48 : 1;
    double num = 0, den = 0;
    for (int k = 0; k < n; k += step) {
      float keep = t.param[k];
      t.param[k] = keep + h;
      double fp = objective(m, values, 0);
      t.param[k] = keep - h;
      double fm = objective(m, values, 0);
      t.param[k] = keep;
      double fd = (fp - fm) / (2.0 * h), g = t.grad[k];
      num += (g - fd) * (g - fd);
      den += g * g + fd * fd;
    }
    double rel = sqrt(num) / (sqrt(den) + 1e-12);
    worst = fmax(worst, rel);
    cr_expect_lt(rel, 1e-2, "%s: %s: relative error %.2e", what, t.name, rel);
    cr_expect_gt(den, 1e-10, "%s: %s: no gradient at all", what, t.name);
  }
  cr_log_info("%s%s: worst relative error against central differences %.2e", what,
              values ? " (value head on the trunk)" : "", worst);
}

static const int families[3] = {RDEC_GPTJ, RDEC_NEOX, RDEC_LLAMA};
static const char *const fam_names[3] = {"GPT-J", "GPT-NeoX", "Llama"};
/* the tensors (A and B) of all targets of a 2-layer model */
static const int all_tensors[3] = {2 * 6 * 2, 2 * 4 * 2, 2 * 7 * 2};

Test(rdec_lora, adapter_gradients_against_central_differences, .timeout = 120) {
  for (int f = 0; f < 3; f++) {
    model_t *m = base_model(families[f], 10 + f);
    add_lora(m, NULL, 20 + f);
    cr_expect_eq(model_num_tensors(m), all_tensors[f], "%s: every target adapted by default",
                 fam_names[f]);
    randomise(m, 30 + f, 0.3f);
    check_gradients(m, 0, fam_names[f]);
    model_free(m);
  }
  /* part of a fused matrix: q_proj's rows of q | k | v; gate_proj's half */
  static const char *const some[3] = {"attn.q_proj,mlp.fc_out", "attention.dense",
                                      "self_attn.k_proj,mlp.gate_proj"};
  for (int f = 0; f < 3; f++) {
    model_t *m = base_model(families[f], 40 + f);
    add_lora(m, some[f], 50 + f);
    randomise(m, 60 + f, 0.3f);
    check_gradients(m, 0, some[f]);
    model_free(m);
  }
}

/* A value model (model_new_like with MODEL_HEAD_VALUE) of the policy's
 * trunk, the trunk's parameters copied. */
static model_t *value_model(int family, uint64_t seed) {
  model_t *p = base_model(family, seed), *v;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(model_new_like(&v, p, MODEL_HEAD_VALUE, 0, &err), DFPO_OK, "%s", err.msg);
  model_init_random(v, seed + 1);
  int copied = 0;
  cr_assert_eq(model_copy_shared_params(v, p, &copied, &err), DFPO_OK, "%s", err.msg);
  cr_expect_eq(copied, model_num_tensors(p), "the whole trunk and LM head copied");
  model_free(p);
  return v;
}

Test(rdec_lora, shared_value_head_gradients_against_central_differences, .timeout = 120) {
  for (int f = 0; f < 3; f++) {
    model_t *v = value_model(families[f], 70 + f);
    cr_expect(model_can_share_value(v));
    /* the head's weights larger than the init's, so that its term counts */
    model_tensor t;
    int nt = model_num_tensors(v);
    cr_assert_eq(model_tensor_at(v, nt - 2, &t, NULL), 0);
    cr_expect_str_eq(t.name, "v_head.summary.weight");
    for (int k = 0; k < t.cols; k++)
      t.param[k] = 0.5f * sinf((float)k);
    check_gradients(v, 1, fam_names[f]);
    /* with LoRA: the adapters and a trainable copy of the head */
    add_lora(v, NULL, 80 + f);
    randomise(v, 90 + f, 0.3f);
    cr_assert_eq(model_tensor_at(v, model_num_tensors(v) - 2, &t, NULL), 0);
    cr_expect_str_eq(t.name, "v_head.summary.weight");
    cr_expect_eq(model_num_tensors(v), all_tensors[f] + 2);
    check_gradients(v, 1, fam_names[f]);
    model_free(v);
  }
}

static void logits_of(model_t *m, float *out) {
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(model_forward_rows(m, toks, kst, B, T, &err), 0, "%s", err.msg);
  cr_assert_eq(model_lm_logprobs(m, tgts, NULL, NULL, &err), 0, "%s", err.msg);
  memcpy(out, model_lm_logits(m), sizeof(float) * B * T * V);
}

/* the first decoding logits of m over the test prompts, into out[B * V] */
static void decode_of(model_t *m, float *out) {
  dfpo_err err;
  dfpo_err_clear(&err);
  const float *d = model_decode_begin(m, toks, kst, B, T, T + 2, &err);
  cr_assert_not_null(d, "%s", err.msg);
  memcpy(out, d, sizeof(float) * B * V);
  int next[B] = {3, 5};
  d = model_decode_step(m, next, &err);
  cr_assert_not_null(d, "%s", err.msg);
  memcpy(out + B * V, d, sizeof(float) * B * V);
}

/* One AdamW step of the LM objective. */
static void step(model_t *m) {
  dfpo_err err;
  dfpo_err_clear(&err);
  opt_adamw o = opt_adamw_default();
  model_zero_grad(m);
  objective(m, 0, 1);
  cr_assert_eq(opt_adamw_step(m, &o, 1e-2f, NULL, &err), DFPO_OK, "%s", err.msg);
}

Test(rdec_lora, adapters_off_is_the_base_bit_for_bit_and_only_adapters_train, .timeout = 60) {
  for (int f = 0; f < 3; f++) {
    dfpo_err err;
    dfpo_err_clear(&err);
    model_t *base = base_model(families[f], 100 + f), *m;
    cr_assert_eq(model_clone(&m, base, &err), DFPO_OK, "%s", err.msg);
    add_lora(m, NULL, 110 + f);
    float want[B * T * V], got[B * T * V], dw[2 * B * V], dg[2 * B * V];
    logits_of(base, want);
    decode_of(base, dw);
    /* B = 0: the adapters add exact zeros */
    logits_of(m, got);
    cr_expect_eq(memcmp(want, got, sizeof want), 0, "%s: B = 0 changes the outputs", fam_names[f]);
    /* trained adapters: on, the outputs move; off, the base's bit for bit */
    for (int s = 0; s < 3; s++)
      step(m);
    logits_of(m, got);
    cr_expect_neq(memcmp(want, got, sizeof want), 0, "%s: the adapters did nothing", fam_names[f]);
    cr_assert_eq(model_set_adapters(m, 0, &err), DFPO_OK, "%s", err.msg);
    logits_of(m, got);
    cr_expect_eq(memcmp(want, got, sizeof want), 0, "%s: adapters off is not the base",
                 fam_names[f]);
    decode_of(m, dg);
    cr_expect_eq(memcmp(dw, dg, sizeof dw), 0, "%s: decoding with adapters off", fam_names[f]);
    /* the base itself did not move: the tensors AdamW saw are adapters */
    for (int i = 0; i < model_num_tensors(m); i++) {
      model_tensor t;
      cr_assert_eq(model_tensor_at(m, i, &t, NULL), 0);
      cr_expect(strstr(t.name, ".lora_A.weight") || strstr(t.name, ".lora_B.weight"), "%s", t.name);
    }
    cr_assert_eq(model_set_adapters(m, 1, &err), DFPO_OK, "%s", err.msg);
    decode_of(m, dg);
    cr_expect_neq(memcmp(dw, dg, sizeof dw), 0, "%s: decoding ignores the adapters", fam_names[f]);
    model_free(m);
    model_free(base);
  }
}

/* The bytes of views, counted by hand for the tiny Llama (width 16, 4
 * heads and 2 key/value heads of 4, MLP 32, 2 layers, vocabulary 8,
 * tied): per layer input_layernorm 16, q | k | v (16 + 8 + 8) x 16 = 512,
 * o_proj 16 x 16 = 256, post_attention_layernorm 16, gate | up 64 x 16 =
 * 1024, down_proj 16 x 32 = 512: 2,336; two layers 4,672, the embedding
 * 128, the final norm 16: 4,816 parameters. Rank-2 adapters on all seven
 * layers, A [2, in] and B [out, 2]: q 32 + 32, k 32 + 16, v 32 + 16, o 32 +
 * 32, gate 32 + 64, up 32 + 64, down 64 + 32 = 512 per layer, 1,024 in
 * all. Every model also holds the [16] zero position table (64 bytes). A
 * fresh model: 4 x 4,816 + 64 = 19,328 bytes; with the adapters 19,328 + 4
 * x 1,024 = 23,424; its base view 64 (no weights of its own); its adapter
 * view 4,096 + 64 = 4,160. */
Test(rdec_lora, views_share_the_base_and_their_bytes) {
  dfpo_err err;
  dfpo_err_clear(&err);
  model_t *m = base_model(RDEC_LLAMA, 120), *bv, *av;
  cr_expect_eq(model_arena_bytes(m), 19328);
  add_lora(m, NULL, 121);
  cr_expect_eq(model_num_params(m), 1024);
  cr_expect_eq(model_arena_bytes(m), 23424);
  cr_assert_eq(model_base_view(&bv, m, &err), DFPO_OK, "%s", err.msg);
  cr_assert_eq(model_adapter_view(&av, m, &err), DFPO_OK, "%s", err.msg);
  cr_expect_eq(model_arena_bytes(bv), 64);
  cr_expect_eq(model_arena_bytes(av), 4160);
  cr_expect_eq(model_lora_rank(bv), 0);
  cr_expect_eq(model_lora_rank(av), 2);
  cr_expect_eq(model_ensure_train(bv, &err), DFPO_EUSAGE);
  cr_expect_eq(model_ensure_train(av, &err), DFPO_EUSAGE);
  /* train the policy: the base view stays its base, the adapter view
   * follows after model_copy_params */
  float base_l[B * T * V], pol[B * T * V], got[B * T * V], dpol[2 * B * V], dgot[2 * B * V];
  logits_of(bv, base_l);
  for (int s = 0; s < 2; s++)
    step(m);
  logits_of(m, pol);
  logits_of(bv, got);
  cr_expect_eq(memcmp(base_l, got, sizeof got), 0, "the base view moved");
  cr_expect_neq(memcmp(base_l, pol, sizeof got), 0, "the policy did not");
  cr_assert_eq(model_copy_params(av, m, &err), DFPO_OK, "%s", err.msg);
  logits_of(av, got);
  cr_expect_eq(memcmp(pol, got, sizeof got), 0, "the adapter view is not the policy");
  decode_of(m, dpol);
  decode_of(av, dgot);
  cr_expect_eq(memcmp(dpol, dgot, sizeof dpol), 0, "the adapter view decodes otherwise");
  cr_expect_eq(model_copy_params(bv, m, &err), DFPO_EUSAGE);
  model_free(av);
  model_free(bv);
  model_free(m);
}

Test(rdec_lora, checkpoints_keep_the_adapters_and_a_resumed_step_is_the_same) {
  char dir[512], path[600];
  ts_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/m.ckpt", dir);
  for (int f = 0; f < 3; f++) {
    dfpo_err err;
    dfpo_err_clear(&err);
    model_t *m = value_model(families[f], 130 + f), *l;
    add_lora(m, f == 2 ? "self_attn.v_proj,mlp.up_proj" : NULL, 131 + f);
    step(m);
    cr_assert_eq(model_save(m, path, 1, &err), DFPO_OK, "%s", err.msg);
    cr_assert_eq(model_load(&l, path, &err), DFPO_OK, "%s", err.msg);
    cr_expect_eq(model_lora_rank(l), 2);
    cr_assert_eq(model_num_tensors(l), model_num_tensors(m));
    for (int pass = 0; pass < 2; pass++) {
      for (int i = 0; i < model_num_tensors(m); i++) {
        model_tensor a, b;
        cr_assert_eq(model_tensor_at(m, i, &a, NULL), 0);
        cr_assert_eq(model_tensor_at(l, i, &b, NULL), 0);
        cr_expect_str_eq(a.name, b.name);
        size_t n = (size_t)a.rows * a.cols * sizeof(float);
        cr_expect(!memcmp(a.param, b.param, n) && !memcmp(a.m1, b.m1, n) && !memcmp(a.m2, b.m2, n),
                  "%s: %s differs (pass %d)", fam_names[f], a.name, pass);
      }
      float x[B * T * V], y[B * T * V];
      logits_of(m, x);
      logits_of(l, y);
      cr_expect_eq(memcmp(x, y, sizeof x), 0, "%s: the loaded model computes otherwise",
                   fam_names[f]);
      step(m);
      step(l);
    }
    model_free(l);
    if (f == 2) {
      /* a cut adapter section, then trailing data, are refused */
      cr_assert_eq(model_save(m, path, 0, &err), DFPO_OK, "%s", err.msg);
      char *data;
      size_t n;
      cr_assert_eq(dfpo_read_file(path, &data, &n, &err), DFPO_OK, "%s", err.msg);
      FILE *fp = fopen(path, "wb");
      fwrite(data, 1, n - 4, fp);
      fclose(fp);
      cr_expect_eq(model_load(&l, path, &err), DFPO_EDATA);
      cr_expect(strstr(err.msg, "LoRA adapters") != NULL, "%s", err.msg);
      fp = fopen(path, "wb");
      fwrite(data, 1, n, fp);
      fputc(0, fp);
      fclose(fp);
      cr_expect_eq(model_load(&l, path, &err), DFPO_EDATA);
      cr_expect(strstr(err.msg, "trailing data") != NULL, "%s", err.msg);
      free(data);
    }
    model_free(m);
  }
}

Test(rdec_lora, refusals) {
  dfpo_err err;
  dfpo_err_clear(&err);
  model_t *m = base_model(RDEC_GPTJ, 140), *v;
  model_lora_config bad = {2, 4.0f, "self_attn.q_proj"};
  cr_expect_eq(model_add_lora(m, &bad, 1, &err), DFPO_EUSAGE);
  cr_expect(strstr(err.msg, "attn.q_proj") != NULL, "the message lists GPT-J's: %s", err.msg);
  bad.targets = NULL, bad.rank = 17;
  cr_expect_eq(model_add_lora(m, &bad, 1, &err), DFPO_EUSAGE);
  cr_expect_eq(model_set_adapters(m, 0, &err), DFPO_EUSAGE);
  cr_expect_eq(model_adapter_view(&v, m, &err), DFPO_EUSAGE);
  cr_expect_eq(model_lm_value_backward(m, NULL, NULL, NULL, NULL, &err), DFPO_EUSAGE);
  add_lora(m, NULL, 141);
  cr_expect_eq(model_add_lora(m, &(model_lora_config){2, 4.0f, NULL}, 1, &err), DFPO_EUSAGE);
  cr_expect_eq(model_clone(&v, m, &err), DFPO_EUSAGE);
  model_free(m);
}

/* ------------------------------------------------------------ export */

static void logp_of(model_t *m, float *out) {
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(model_forward_rows(m, toks, kst, B, T, &err), 0, "%s", err.msg);
  cr_assert_eq(model_lm_logprobs(m, tgts, out, NULL, &err), 0, "%s", err.msg);
}

/* The floats of tensor name of the safetensors file path (*n of them,
 * malloc'd), its shape into shape[2] (ndim 2) or shape[0] (ndim 1). */
static float *st_tensor(const char *path, const char *name, int64_t *shape, size_t *n) {
  st_file f;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(st_open(&f, path, &err), DFPO_OK, "%s", err.msg);
  const st_entry *e = st_find(&f, name);
  cr_assert_not_null(e, "%s: no %s", path, name);
  *n = 1;
  for (int d = 0; d < e->ndim; d++)
    *n *= (size_t)e->shape[d], shape[d] = e->shape[d];
  float *v = malloc(*n * sizeof(float));
  cr_assert_eq(st_read_f32(&f, e, name, v, &err), DFPO_OK, "%s", err.msg);
  st_close(&f);
  return v;
}

static int tensor_count(const char *path) {
  st_file f;
  dfpo_err err;
  cr_assert_eq(st_open(&f, path, &err), DFPO_OK, "%s", err.msg);
  int n = f.n;
  st_close(&f);
  return n;
}

Test(rdec_lora, exports_merged_and_as_peft_adapters, .timeout = 60) {
  char dir[512], plain[600], merged[600], peft[600], f1[700], f2[700], f3[700];
  ts_tmpdir(dir, sizeof dir);
  /* a layer per family: its HF module, the adapter's in and out */
  static const char *const module[3] = {"transformer.h.1.attn.q_proj",
                                        "gpt_neox.layers.0.attention.query_key_value",
                                        "model.layers.1.self_attn.k_proj"};
  static const int ins[3] = {16, 16, 16}, outs[3] = {16, 48, 8};
  static const char *const second[3] = {"transformer.h.0.mlp.fc_out",
                                        "gpt_neox.layers.1.mlp.dense_4h_to_h",
                                        "model.layers.0.mlp.up_proj"};
  static const int ins2[3] = {32, 32, 16}, outs2[3] = {16, 16, 32};
  for (int f = 0; f < 3; f++) {
    dfpo_err err;
    dfpo_err_clear(&err);
    snprintf(plain, sizeof plain, "%s/plain%d", dir, f);
    snprintf(merged, sizeof merged, "%s/merged%d", dir, f);
    snprintf(peft, sizeof peft, "%s/peft%d", dir, f);
    cr_assert_eq(dfpo_mkdirs(plain, &err), 0, "%s", err.msg);
    cr_assert_eq(dfpo_mkdirs(merged, &err), 0, "%s", err.msg);
    cr_assert_eq(dfpo_mkdirs(peft, &err), 0, "%s", err.msg);
    model_t *m = base_model(families[f], 150 + f), *back;
    float want[B * T], got[B * T];
    /* without adapters: bit for bit */
    snprintf(f1, sizeof f1, "%s/model.safetensors", plain);
    cr_assert_eq(model_export_safetensors(m, f1, 1, &err), DFPO_OK, "%s", err.msg);
    cr_assert_eq(model_load(&back, plain, &err), DFPO_OK, "%s", err.msg);
    cr_expect_eq(memcmp(rdec_get_config(back), rdec_get_config(m), sizeof(rdec_config)), 0,
                 "%s: config.json reads back as the config", fam_names[f]);
    logp_of(m, want);
    logp_of(back, got);
    cr_expect_eq(memcmp(want, got, sizeof want), 0, "%s: the plain export computes otherwise",
                 fam_names[f]);
    model_free(back);
    /* merged */
    add_lora(m, NULL, 160 + f);
    randomise(m, 170 + f, 0.3f);
    snprintf(f2, sizeof f2, "%s/model.safetensors", merged);
    cr_assert_eq(model_export_safetensors(m, f2, 1, &err), DFPO_OK, "%s", err.msg);
    cr_assert_eq(model_load(&back, merged, &err), DFPO_OK, "%s", err.msg);
    cr_expect_eq(model_lora_rank(back), 0);
    logp_of(m, want);
    logp_of(back, got);
    double worst = 0;
    for (int i = 0; i < B * T; i++)
      worst = fmax(worst, fabs((double)want[i] - got[i]));
    cr_log_info("%s: merged export against the adapted model: max |dlogp| %.2e", fam_names[f],
                worst);
    cr_expect_lt(worst, 1e-5, "%s: merged export off by %g", fam_names[f], worst);
    model_free(back);
    /* peft's files */
    cr_assert_eq(model_export_adapters(m, peft, &err), DFPO_OK, "%s", err.msg);
    snprintf(f3, sizeof f3, "%s/adapter_model.safetensors", peft);
    cr_expect_eq(tensor_count(f3), all_tensors[f]);
    const char *const mods[2] = {module[f], second[f]};
    const int in[2] = {ins[f], ins2[f]}, out[2] = {outs[f], outs2[f]};
    for (int k = 0; k < 2; k++) {
      char na[300], nb[300], nw[300];
      snprintf(na, sizeof na, "base_model.model.%s.lora_A.weight", mods[k]);
      snprintf(nb, sizeof nb, "base_model.model.%s.lora_B.weight", mods[k]);
      snprintf(nw, sizeof nw, "%s.weight", mods[k]);
      int64_t sa[4], sb[4], sw[4], sm[4];
      size_t n;
      float *a = st_tensor(f3, na, sa, &n), *b = st_tensor(f3, nb, sb, &n);
      cr_expect(sa[0] == 2 && sa[1] == in[k], "%s: A [%lld, %lld]", na, (long long)sa[0],
                (long long)sa[1]);
      cr_expect(sb[0] == out[k] && sb[1] == 2, "%s: B [%lld, %lld]", nb, (long long)sb[0],
                (long long)sb[1]);
      float *w = st_tensor(f1, nw, sw, &n), *wm = st_tensor(f2, nw, sm, &n);
      cr_assert(sw[0] == out[k] && sw[1] == in[k] && sm[0] == out[k], "%s", nw);
      double bad = 0;
      for (int i = 0; i < out[k]; i++)
        for (int j = 0; j < in[k]; j++) {
          double d = w[i * in[k] + j];
          for (int q = 0; q < 2; q++)
            d += 2.0 * b[i * 2 + q] * a[q * in[k] + j]; /* alpha / r = 4 / 2 */
          bad = fmax(bad, fabs(d - wm[i * in[k] + j]));
        }
      cr_expect_lt(bad, 1e-5, "%s: base + (alpha/r) B A from peft's file is off by %g", nw, bad);
      free(a), free(b), free(w), free(wm);
    }
    snprintf(f3, sizeof f3, "%s/adapter_config.json", peft);
    char *text = ts_slurp(f3);
    static const char *const target[3] = {"\"attn.q_proj\"", "\"attention.query_key_value\"",
                                          "\"self_attn.k_proj\""};
    cr_expect(strstr(text, "LORA") && strstr(text, "CAUSAL_LM") && strstr(text, target[f]), "%s",
              text);
    free(text);
    model_free(m);
  }
}

/* The largest |a - b| over the largest |b| of n floats. */
static double rel_err(const float *a, const float *b, size_t n) {
  double md = 0, mx = 0;
  for (size_t i = 0; i < n; i++) {
    md = fmax(md, fabs((double)a[i] - b[i]));
    mx = fmax(mx, fabs((double)b[i]));
  }
  return mx > 0 ? md / mx : md;
}

/* A LoRA policy of each family over a base kept in bf16 (Llama in f16
 * too): the base frozen in 16 bits, the adapters fp32 and trained. Against
 * the same policy over the base widened back to fp32: the objective and
 * every adapter's gradient, two AdamW steps, the logits and decoding within
 * 1e-6 (the same kernels over the same widened panels: measured bit for
 * bit); the reference (a base view, in 16 bits without a copy) too. Its
 * checkpoint holds the base widened: loaded, the base is the widened one
 * bit for bit, and model_load_as puts it back into 16 bits; the merged
 * export (GPT-NeoX's qkv reordered from a widened copy) computes as the
 * widened policy's. */
Test(rdec_lora, a_16_bit_base_trains_as_its_widened_fp32_base, .timeout = 120) {
  char dir[256], path[300], fa[300], fb[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/lora16.ckpt", dir);
  for (int c = 0; c < 4; c++) {
    int f = c < 3 ? c : 2, dtype = c < 3 ? OPS_DTYPE_BF16 : OPS_DTYPE_F16;
    char what[64];
    snprintf(what, sizeof what, "%s in %s", fam_names[f], ops_dtype_name(dtype));
    dfpo_err err;
    dfpo_err_clear(&err);
    model_t *h = base_model(families[f], 170 + f), *w = base_model(families[f], 170 + f);
    model_t *hv = NULL, *wv = NULL, *b = NULL;
    cr_assert_eq(model_set_weight_dtype(h, dtype, &err), 0, "%s", err.msg);
    cr_assert_eq(model_set_weight_dtype(w, dtype, &err), 0, "%s", err.msg);
    cr_assert_eq(model_set_weight_dtype(w, OPS_DTYPE_F32, &err), 0, "%s", err.msg);
    add_lora(h, NULL, 180 + f);
    add_lora(w, NULL, 180 + f);
    randomise(h, 190 + f, 0.3f);
    randomise(w, 190 + f, 0.3f);
    cr_assert_eq(model_ensure_train(h, &err), 0, "%s", err.msg);
    cr_assert_eq(model_ensure_train(w, &err), 0, "%s", err.msg);
    model_zero_grad(h);
    model_zero_grad(w);
    double oh = objective(h, 0, 1), ow = objective(w, 0, 1), worst = 0;
    cr_expect(fabs(oh - ow) <= 1e-6 * fabs(ow), "%s: objective %.9g, widened %.9g", what, oh, ow);
    for (int i = 0; i < model_num_tensors(h); i++) {
      model_tensor x, y;
      cr_assert_eq(model_tensor_at(h, i, &x, NULL), 0);
      cr_assert_eq(model_tensor_at(w, i, &y, NULL), 0);
      worst = fmax(worst, rel_err(x.grad, y.grad, (size_t)x.rows * x.cols));
    }
    cr_log_info("%s: adapter gradients' largest error %.3g", what, worst);
    cr_expect(worst <= 1e-6, "%s: adapter gradients off by %.3g", what, worst);
    step(h), step(h);
    step(w), step(w);
    static float lh[B * T * V], lw[B * T * V];
    logits_of(h, lh);
    logits_of(w, lw);
    cr_expect(rel_err(lh, lw, B * T * V) <= 1e-6, "%s: trained logits differ", what);
    decode_of(h, lh);
    decode_of(w, lw);
    cr_expect(rel_err(lh, lw, 2 * B * V) <= 1e-6, "%s: decoding differs", what);
    cr_assert_eq(model_base_view(&hv, h, &err), 0, "%s", err.msg);
    cr_assert_eq(model_base_view(&wv, w, &err), 0, "%s", err.msg);
    cr_expect_eq((int)model_weight_dtype(hv), dtype, "%s", what);
    logits_of(hv, lh);
    logits_of(wv, lw);
    cr_expect(rel_err(lh, lw, B * T * V) <= 1e-6, "%s: the references differ", what);
    model_free(hv);
    model_free(wv);
    /* the checkpoint: the widened base, then back into 16 bits */
    cr_assert_eq(model_save(h, path, 1, &err), 0, "%s", err.msg);
    for (int as = 0; as < 2; as++) {
      cr_assert_eq(as ? model_load_as(&b, path, dtype, &err) : model_load(&b, path, &err), 0, "%s",
                   err.msg);
      cr_expect_eq((int)model_weight_dtype(b), as ? dtype : (int)OPS_DTYPE_F32, "%s", what);
      model_t *same = as ? h : w;
      cr_assert_eq(model_set_adapters(b, 0, &err), 0, "%s", err.msg);
      cr_assert_eq(model_set_adapters(same, 0, &err), 0, "%s", err.msg);
      logits_of(b, lh);
      logits_of(same, lw);
      cr_expect_eq(memcmp(lh, lw, sizeof lh), 0, "%s: the checkpoint's base (%s) differs", what,
                   as ? "in 16 bits" : "fp32");
      cr_assert_eq(model_set_adapters(same, 1, &err), 0, "%s", err.msg);
      model_free(b);
      b = NULL;
    }
    /* the merged exports of the two compute alike */
    snprintf(fa, sizeof fa, "%s/h%d.safetensors", dir, c);
    snprintf(fb, sizeof fb, "%s/w%d.safetensors", dir, c);
    cr_assert_eq(model_export_safetensors(h, fa, 1, &err), 0, "%s", err.msg);
    cr_assert_eq(model_export_safetensors(w, fb, 1, &err), 0, "%s", err.msg);
    model_t *ea = NULL, *eb = NULL;
    cr_assert_eq(model_load(&ea, fa, &err), 0, "%s", err.msg);
    cr_assert_eq(model_load(&eb, fb, &err), 0, "%s", err.msg);
    logits_of(ea, lh);
    logits_of(eb, lw);
    cr_expect(rel_err(lh, lw, B * T * V) <= 1e-6, "%s: the merged exports differ", what);
    model_free(ea);
    model_free(eb);
    model_free(h);
    model_free(w);
  }
  ts_rmtree(dir);
}

/* model_load_adapters on a rotary decoder (test_gpt2_lora.c has the
 * refusals): a Llama's and a GPT-NeoX's adapters saved, trained on, read
 * back alone; the policy computes as the checkpoint loaded whole, bit for
 * bit. */
Test(rdec_lora, adapters_alone_come_back_from_a_checkpoint) {
  char dir[256], path[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/best.ckpt", dir);
  static float la[B * T * V], lb[B * T * V];
  for (int f = 1; f < 3; f++) {
    dfpo_err err;
    dfpo_err_clear(&err);
    model_t *m = base_model(families[f], 200 + f), *whole = NULL;
    add_lora(m, NULL, 210 + f);
    randomise(m, 220 + f, 0.3f);
    cr_assert_eq(model_save(m, path, 0, &err), 0, "%s", err.msg);
    step(m), step(m);
    cr_assert_eq(model_load_adapters(m, path, &err), 0, "%s", err.msg);
    cr_assert_eq(model_load(&whole, path, &err), 0, "%s", err.msg);
    logits_of(m, la);
    logits_of(whole, lb);
    cr_expect_eq(memcmp(la, lb, sizeof la), 0, "%s: the adapters did not come back", fam_names[f]);
    model_free(whole);
    model_free(m);
  }
  ts_rmtree(dir);
}

/* model_load_into on the rotary decoders (test_gpt2_lora.c has the
 * refusals): a GPT-NeoX and a Llama LoRA policy saved with their moments,
 * trained on, read back in place (a decoding begun before it spent), then
 * two more steps equal the checkpoint
 * loaded anew bit for bit; a Llama's file is refused by a GPT-NeoX model
 * (another config) and by a GPT-2 model (another architecture), before
 * anything is read. */
Test(rdec_lora, a_checkpoint_reads_into_the_model_in_place) {
  char dir[256], path[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/resume.ckpt", dir);
  static float la[B * T * V], lb[B * T * V];
  dfpo_err err;
  dfpo_err_clear(&err);
  for (int f = 1; f < 3; f++) {
    model_t *m = base_model(families[f], 300 + f), *fresh = NULL;
    add_lora(m, NULL, 310 + f);
    randomise(m, 320 + f, 0.3f);
    step(m), step(m);
    cr_assert_eq(model_save(m, path, 1, &err), 0, "%s", err.msg);
    step(m), step(m);
    tu_decode_begun(m);
    cr_assert_eq(model_load_into(m, path, &err), 0, "%s", err.msg);
    tu_decode_spent(m, fam_names[f]);
    cr_assert_eq(model_load(&fresh, path, &err), 0, "%s", err.msg);
    step(m), step(fresh);
    logits_of(m, la);
    logits_of(fresh, lb);
    cr_expect_eq(memcmp(la, lb, sizeof la), 0, "%s: the step after the read differs", fam_names[f]);
    model_free(fresh);
    model_free(m);
  }
  model_t *neox = base_model(families[1], 330);
  add_lora(neox, NULL, 331);
  cr_expect_eq(model_load_into(neox, path, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "another gpt_neox model"), "%s", err.msg);
  model_free(neox);
  gpt2_config gc = {.n_layer = 1, .n_head = 1, .n_embd = 4, .vocab_size = V, .n_ctx = 8};
  model_t *g = NULL;
  cr_assert_eq(gpt2_new(&g, &gc, &err), 0, "%s", err.msg);
  cr_expect_eq(model_load_into(g, path, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "a rotary decoder checkpoint, not one of the gpt2 model"), "%s",
            err.msg);
  model_free(g);
  ts_rmtree(dir);
}

/* model_load_peft_adapters on the rotary decoders (test_gpt2_lora.c has the
 * refusals): each family's peft files (model_export_adapters of a policy
 * whose adapters were moved off B = 0, GPT-NeoX's fused query_key_value
 * rows in its per-head order) read onto a fresh copy of the base give the
 * policy's logits bit for bit; a Llama's target_modules written bare
 * ("q_proj", "v_proj", as peft users write them) pick the same layers. */
Test(rdec_lora, peft_adapter_files_read_back_onto_the_base) {
  char dir[256], path[320];
  ts_tmpdir(dir, sizeof dir);
  static float la[B * T * V], lb[B * T * V];
  static const char *const targets[4] = {NULL, NULL, NULL, "self_attn.q_proj,self_attn.v_proj"};
  for (int c = 0; c < 4; c++) {
    int f = c < 3 ? c : 2;
    dfpo_err err;
    dfpo_err_clear(&err);
    char peft[300];
    snprintf(peft, sizeof peft, "%s/peft%d", dir, c);
    cr_assert_eq(mkdir(peft, 0755), 0);
    model_t *m = base_model(families[f], 400 + f), *back = base_model(families[f], 400 + f);
    add_lora(m, targets[c], 410 + c);
    randomise(m, 420 + c, 0.3f);
    cr_assert_eq(model_export_adapters(m, peft, &err), 0, "%s", err.msg);
    if (c == 3) {
      snprintf(path, sizeof path, "%s/adapter_config.json", peft);
      ts_json_set(path, "target_modules",
                  cJSON_CreateStringArray((const char *const[]){"q_proj", "v_proj"}, 2));
    }
    cr_assert_eq(model_load_peft_adapters(back, peft, &err), 0, "%s: %s", fam_names[f], err.msg);
    logits_of(m, la);
    logits_of(back, lb);
    cr_expect_eq(memcmp(la, lb, sizeof la), 0, "case %d (%s): the adapters read back differ", c,
                 fam_names[f]);
    model_free(back);
    model_free(m);
  }
  ts_rmtree(dir);
}
