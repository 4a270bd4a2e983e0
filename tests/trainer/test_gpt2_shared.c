/* The memory switches of GPT-2's training (docs/memory.md): the value head
 * on the policy's trunk (model_lm_value_backward) and activation
 * checkpointing (model_set_checkpointing).
 *
 * Shared value head: on a 2-layer model with a value head, the gradient of
 * J = sum_i w_i log p(tgt_i) + sum_i u_i value_i (value_i the head's output
 * at every position, u_i weights like a PPO value loss's) that one
 * model_lm_value_backward accumulates, every tensor (the trunk, the tied
 * LM head and the value head), against central differences of the
 * double-precision transcription tests/trainer/gpt2_double.h (shares no
 * code with the engine; also checks the forward's J to 1e-4 relative);
 * per tensor the relative L2 error |g - fd| / (|g| + |fd|) must be under
 * 1e-3, as test_gpt2_lora.c's adapters. The logits form (dlogits, NLPO's)
 * with the logits' gradient of the same J gives the same gradients to float
 * rounding; a checkpoint with the AdamW state resumes bit for bit; misuse
 * is refused.
 *
 * With LoRA on a model with a value head the adapters and a trainable copy
 * of the head are the tensors, checked the same way, and a checkpoint with
 * them resumes bit for bit.
 *
 * Checkpointing: the gradients of the LM loss, the shared loss, a LoRA
 * model's and a value model's are bit-identical with and without it (the
 * backward pass recomputes each block with the same operations on the same
 * inputs, so every float is the same), and the activation block shrinks by
 * exactly the bytes of (L - 1) blocks' activations other than their
 * outputs, the hand calculation written out in activation_bytes. */
#include "tests/support/support.h"
#include "tests/trainer/gpt2_testutil.h"
#include "trainer/optim.h"

#include <math.h>
#include <string.h>

/* the value loss's weights: every position, padding included (its value
 * is the padding query's, which attends to itself only) */
static float vwgt(int i) {
  return 0.3f - 0.07f * (float)(i % 7);
}

#include "tests/trainer/gpt2_double.h"

static model_t *value_model(uint64_t seed) {
  gpt2_config cfg = tu_config(V, L, NH, C, P);
  cfg.head = MODEL_HEAD_VALUE;
  model_t *m = tu_model(&cfg, seed);
  tu_perturb(m, seed + 1, 3.0f);
  return m;
}

/* J of the engine; with backward, its gradient accumulated by one shared
 * backward pass (logits form: dlogits of the same J). */
static double shared_objective(model_t *m, int backward, int logits_form) {
  dfpo_err err;
  dfpo_err_clear(&err);
  float logp[B * T], dl[B * T], val[B * T], dv[B * T];
  cr_assert_eq(model_forward_rows(m, toks, kst, B, T, &err), 0, "%s", err.msg);
  cr_assert_eq(model_lm_logprobs(m, tgts, logp, NULL, &err), 0, "%s", err.msg);
  cr_assert_eq(model_value_forward(m, val, &err), 0, "%s", err.msg);
  double s = 0;
  for (int i = 0; i < B * T; i++) {
    s += (double)wgt(i) * logp[i] + (double)vwgt(i) * val[i];
    dl[i] = wgt(i);
    dv[i] = vwgt(i);
  }
  if (!backward)
    return s;
  if (!logits_form) {
    cr_assert_eq(model_lm_value_backward(m, dl, NULL, NULL, dv, &err), 0, "%s", err.msg);
    return s;
  }
  /* d/dz_v of w log softmax(z)_tgt = w (1[v = tgt] - softmax(z)_v) */
  static float dz[B * T * V];
  const float *z = model_lm_logits(m);
  for (int i = 0; i < B * T; i++) {
    double mx = -1e300, sum = 0;
    for (int v = 0; v < V; v++)
      mx = z[i * V + v] > mx ? z[i * V + v] : mx;
    for (int v = 0; v < V; v++)
      sum += exp(z[i * V + v] - mx);
    for (int v = 0; v < V; v++)
      dz[i * V + v] =
          tgts[i] < 0 ? 0.0f : (float)(wgt(i) * ((v == tgts[i]) - exp(z[i * V + v] - mx) / sum));
  }
  cr_assert_eq(model_lm_value_backward(m, NULL, NULL, dz, dv, &err), 0, "%s", err.msg);
  return s;
}

/* Every listed tensor's gradient of J against central differences of the
 * transcription (the trunk and heads, or with LoRA the adapters and the
 * value head's trainable copy). */
static void gradients_match(model_t *m) {
  ref_model rm;
  ref_bind(&rm, m);
  cr_assert_not_null(rm.vw);
  model_zero_grad(m);
  ref_check_gradients(m, &rm, shared_objective(m, 1, 0));
}

Test(gpt2_shared, gradients_against_a_double_transcription) {
  model_t *m = value_model(1);
  cr_assert_eq(model_num_tensors(m), 2 + 12 * L + 4, "the trunk, ln_f and the value head");
  gradients_match(m);
  model_free(m);
}

/* LoRA on a model with a value head: the adapters and a trainable copy of
 * the head are the tensors (the base, head included, frozen); the value
 * loss's gradient reaches the trunk's adapters. The copy starts as the
 * head, so the values are the base model's until it trains. */
static void add_lora_all(model_t *m, uint64_t seed) {
  dfpo_err err;
  dfpo_err_clear(&err);
  model_lora_config lc = {R, ALPHA, NULL};
  cr_assert_eq(model_add_lora(m, &lc, seed, &err), 0, "%s", err.msg);
  /* B non-zero (A is already drawn), so that every adapter matters */
  for (int i = 0; i < model_num_tensors(m); i++) {
    model_tensor t;
    cr_assert_eq(model_tensor_at(m, i, &t, NULL), 0);
    if (strstr(t.name, ".lora_B."))
      for (int k = 0; k < t.rows * t.cols; k++)
        t.param[k] = 0.3f * sinf((float)(3 * k + i));
  }
}

Test(gpt2_shared, lora_with_the_value_head) {
  model_t *m = value_model(41);
  dfpo_err err;
  dfpo_err_clear(&err);
  float before[B * T], after[B * T];
  cr_assert_eq(model_forward_rows(m, toks, kst, B, T, &err), 0, "%s", err.msg);
  cr_assert_eq(model_value_forward(m, before, &err), 0, "%s", err.msg);
  model_lora_config lc = {R, ALPHA, NULL};
  cr_assert_eq(model_add_lora(m, &lc, 42, &err), 0, "%s", err.msg);
  cr_assert_eq(model_num_tensors(m), 2 * 4 * L + 2, "the adapters and the head's copy");
  model_tensor h;
  cr_assert_eq(model_tensor_at(m, 2 * 4 * L, &h, NULL), 0);
  cr_expect_str_eq(h.name, "v_head.summary.weight");
  cr_assert_eq(model_forward_rows(m, toks, kst, B, T, &err), 0, "%s", err.msg);
  cr_assert_eq(model_value_forward(m, after, &err), 0, "%s", err.msg);
  cr_expect_eq(memcmp(before, after, sizeof before), 0,
               "B = 0 and the head's copy: the same values");
  model_free(m);
  m = value_model(43);
  add_lora_all(m, 44);
  gradients_match(m);
  model_free(m);
}
/* Every gradient of a and b (models of one shape) within tol of each
 * other relative to the tensor's norm; tol 0: bit for bit. */
static void same_grads(model_t *a, model_t *b, double tol, const char *what) {
  cr_assert_eq(model_num_tensors(a), model_num_tensors(b));
  for (int i = 0; i < model_num_tensors(a); i++) {
    model_tensor ta, tb;
    cr_assert_eq(model_tensor_at(a, i, &ta, NULL), 0);
    cr_assert_eq(model_tensor_at(b, i, &tb, NULL), 0);
    size_t n = (size_t)ta.rows * ta.cols;
    if (tol == 0) {
      cr_expect_eq(memcmp(ta.grad, tb.grad, n * sizeof(float)), 0, "%s: %s's gradient differs",
                   what, ta.name);
      continue;
    }
    double d = 0, s = 0;
    for (size_t k = 0; k < n; k++) {
      d += ((double)ta.grad[k] - tb.grad[k]) * ((double)ta.grad[k] - tb.grad[k]);
      s += (double)ta.grad[k] * ta.grad[k];
    }
    cr_expect_leq(sqrt(d), tol * sqrt(s) + 1e-12, "%s: %s differs by %.3g (norm %.3g)", what,
                  ta.name, sqrt(d), sqrt(s));
  }
}

Test(gpt2_shared, the_logits_form_gives_the_same_gradients) {
  model_t *a = value_model(3), *b = NULL;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(model_clone(&b, a, &err), 0, "%s", err.msg);
  model_zero_grad(a);
  model_zero_grad(b);
  shared_objective(a, 1, 0);
  shared_objective(b, 1, 1);
  /* the softmax here in double against logits_bwd's in float */
  same_grads(a, b, 1e-5, "logits form");
  model_free(a);
  model_free(b);
}

/* Two AdamW steps on J (maximised: its negative as the loss). */
static void shared_steps(model_t *m, int n) {
  dfpo_err err;
  dfpo_err_clear(&err);
  opt_adamw opt = opt_adamw_default();
  for (int s = 0; s < n; s++) {
    model_zero_grad(m);
    shared_objective(m, 1, 0);
    cr_assert_eq(opt_adamw_step(m, &opt, 1e-2f, NULL, &err), 0, "%s", err.msg);
  }
}

/* m after two steps saved with its AdamW state and loaded: one more step
 * of each gives the same tensors (model_tensor_at's: with LoRA the
 * adapters and the head's copy) bit for bit. */
static void a_resumed_step_is_the_same(model_t *m) {
  char dir[256], path[512];
  ts_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/shared.ckpt", dir);
  dfpo_err err;
  dfpo_err_clear(&err);
  model_t *r = NULL;
  shared_steps(m, 2);
  cr_assert_eq(model_save(m, path, 1, &err), 0, "%s", err.msg);
  cr_assert_eq(model_load(&r, path, &err), 0, "%s", err.msg);
  cr_expect_eq(model_get_config(r)->head, MODEL_HEAD_VALUE, "the value head is kept");
  cr_expect_eq(model_lora_rank(r), model_lora_rank(m));
  cr_expect_eq(model_step_count(r), 2);
  shared_steps(m, 1);
  shared_steps(r, 1);
  cr_assert_eq(model_num_tensors(m), model_num_tensors(r));
  for (int i = 0; i < model_num_tensors(m); i++) {
    model_tensor a, b;
    cr_assert_eq(model_tensor_at(m, i, &a, NULL), 0);
    cr_assert_eq(model_tensor_at(r, i, &b, NULL), 0);
    cr_expect_str_eq(a.name, b.name);
    cr_expect_eq(memcmp(a.param, b.param, sizeof(float) * a.rows * a.cols), 0, "%s differs",
                 a.name);
  }
  model_free(r);
  ts_rmtree(dir);
}

Test(gpt2_shared, a_resumed_step_equals_the_uninterrupted_one) {
  model_t *m = value_model(5);
  a_resumed_step_is_the_same(m);
  model_free(m);
}

/* The same with LoRA: the checkpoint's LoRA section carries the head's
 * copy and its moments. */
Test(gpt2_shared, a_resumed_lora_step_equals_the_uninterrupted_one) {
  model_t *m = value_model(45);
  add_lora_all(m, 46);
  a_resumed_step_is_the_same(m);
  model_free(m);
}

Test(gpt2_shared, refusals) {
  dfpo_err err;
  dfpo_err_clear(&err);
  gpt2_config cfg = tu_config(V, L, NH, C, P);
  model_t *plain = tu_model(&cfg, 7), *m = value_model(8);
  float dl[B * T] = {0}, dv[B * T] = {0}, logp[B * T];
  static float dz[B * T * V];
  cr_expect(model_can_share_value(m));
  cr_expect_eq(model_lm_value_backward(m, dl, NULL, NULL, dv, &err), DFPO_EUSAGE,
               "before a forward pass");
  cr_assert_eq(model_forward_rows(plain, toks, kst, B, T, &err), 0, "%s", err.msg);
  cr_assert_eq(model_lm_logprobs(plain, tgts, logp, NULL, &err), 0, "%s", err.msg);
  cr_expect_eq(model_lm_value_backward(plain, dl, NULL, NULL, dv, &err), DFPO_EUSAGE);
  cr_expect(strstr(err.msg, "no value head") != NULL, "%s", err.msg);
  cr_expect_eq(model_lm_value_backward(plain, dl, NULL, dz, NULL, &err), DFPO_EUSAGE);
  cr_expect(strstr(err.msg, "one form or the other") != NULL, "%s", err.msg);
  /* without dvalues it is the LM backward pass alone, head or none */
  cr_expect_eq(model_lm_value_backward(plain, dl, NULL, NULL, NULL, &err), 0, "%s", err.msg);
  model_free(plain);
  model_free(m);
}

/* ------------------------------------------------ activation checkpointing */

typedef enum { LM, SHARED, VALUE } pass_kind;

/* One backward pass of kind k on m from zeroed gradients. */
static void one_pass(model_t *m, pass_kind k) {
  dfpo_err err;
  dfpo_err_clear(&err);
  model_zero_grad(m);
  if (k == SHARED) {
    shared_objective(m, 1, 0);
    return;
  }
  float logp[B * T], d[B * T];
  cr_assert_eq(model_forward_rows(m, toks, kst, B, T, &err), 0, "%s", err.msg);
  if (k == LM) {
    cr_assert_eq(model_lm_logprobs(m, tgts, logp, NULL, &err), 0, "%s", err.msg);
    for (int i = 0; i < B * T; i++)
      d[i] = wgt(i);
    cr_assert_eq(model_lm_backward(m, d, NULL, &err), 0, "%s", err.msg);
  } else {
    cr_assert_eq(model_value_forward(m, logp, &err), 0, "%s", err.msg);
    for (int i = 0; i < B * T; i++)
      d[i] = vwgt(i);
    cr_assert_eq(model_value_backward(m, d, &err), 0, "%s", err.msg);
  }
}

static void checkpointed_equals_plain(model_t *a, pass_kind k, const char *what) {
  dfpo_err err;
  dfpo_err_clear(&err);
  model_t *b = NULL;
  cr_assert_eq(model_clone(&b, a, &err), 0, "%s", err.msg);
  cr_assert_eq(model_set_checkpointing(b, 1, &err), 0, "%s", err.msg);
  cr_expect_eq(model_checkpointing(b), 1);
  cr_expect_eq(model_checkpointing(a), 0);
  one_pass(a, k);
  one_pass(b, k);
  same_grads(a, b, 0, what);
  /* a second backward pass of the same forward pass: the shared buffers
   * hold layer 0's activations after the first, so layer L - 1 is
   * recomputed too */
  if (k == VALUE) {
    float d[B * T];
    for (int i = 0; i < B * T; i++)
      d[i] = vwgt(i);
    cr_assert_eq(model_value_backward(a, d, &err), 0, "%s", err.msg);
    cr_assert_eq(model_value_backward(b, d, &err), 0, "%s", err.msg);
    same_grads(a, b, 0, "a second backward pass");
  }
  model_free(b);
}

Test(gpt2_checkpointing, gradients_are_bit_identical) {
  gpt2_config cfg = tu_config(V, 3, NH, C, P);
  model_t *m = tu_model(&cfg, 21);
  tu_perturb(m, 22, 3.0f);
  checkpointed_equals_plain(m, LM, "LM loss");
  model_free(m);
  model_t *v = value_model(23);
  checkpointed_equals_plain(v, SHARED, "shared value head");
  checkpointed_equals_plain(v, VALUE, "value model");
  model_free(v);
  /* LoRA: the recomputation applies the adapters as the forward pass did */
  dfpo_err err;
  dfpo_err_clear(&err);
  model_t *a = tu_model(&cfg, 24), *b = NULL;
  tu_perturb(a, 25, 3.0f);
  cr_assert_eq(model_clone(&b, a, &err), 0, "%s", err.msg);
  model_lora_config lc = {R, ALPHA, NULL};
  cr_assert_eq(model_add_lora(a, &lc, 26, &err), 0, "%s", err.msg);
  cr_assert_eq(model_add_lora(b, &lc, 26, &err), 0, "%s", err.msg);
  cr_assert_eq(model_set_checkpointing(b, 1, &err), 0, "%s", err.msg);
  /* B non-zero, the same in both */
  for (int i = 0; i < model_num_tensors(a); i++) {
    model_tensor ta, tb;
    cr_assert_eq(model_tensor_at(a, i, &ta, NULL), 0);
    cr_assert_eq(model_tensor_at(b, i, &tb, NULL), 0);
    for (int k = 0; k < ta.rows * ta.cols; k++)
      ta.param[k] = tb.param[k] = 0.2f * sinf((float)(k + 7 * i));
  }
  one_pass(a, LM);
  one_pass(b, LM);
  same_grads(a, b, 0, "LoRA");
  model_free(a);
  model_free(b);
}

/* The activation block's bytes at (Bx, Tx) with and without checkpointing:
 * it keeps one block's activations instead of L, so it shrinks by (L - 1)
 * times what a block holds besides its output res3, each buffer rounded up
 * to 64 bytes as the engine's bump allocator lays them out: ln1, atty,
 * res2, ln2 (BTC floats each), qkv (3 BTC), fch and its GELU (4 BTC each),
 * the two LayerNorms' mean and rstd (BT each) and the attention
 * probabilities (NH B T^2). */
static size_t up64(size_t floats) {
  return (floats * 4 + 63) / 64 * 64;
}

Test(gpt2_checkpointing, activation_bytes) {
  enum { LL = 4, CC = 64, HH = 4, VV = 100, PP = 64, BX = 4, TX = 64 };
  gpt2_config cfg = tu_config(VV, LL, HH, CC, PP);
  model_t *m = tu_model(&cfg, 31);
  dfpo_err err;
  dfpo_err_clear(&err);
  size_t base = model_arena_bytes(m);
  cr_assert_eq(model_reserve(m, BX, TX, &err), 0, "%s", err.msg);
  size_t plain = model_arena_bytes(m) - base;
  cr_assert_eq(model_set_checkpointing(m, 1, &err), 0, "%s", err.msg);
  cr_expect_eq(model_arena_bytes(m), base, "the setting drops the old layout");
  cr_assert_eq(model_reserve(m, BX, TX, &err), 0, "%s", err.msg);
  size_t ckpt = model_arena_bytes(m) - base;
  size_t BT = (size_t)BX * TX, BTC = BT * CC;
  size_t block = 4 * up64(BTC) + up64(3 * BTC) + 2 * up64(4 * BTC) + 4 * up64(BT) +
                 up64((size_t)HH * BX * TX * TX);
  cr_expect_eq(plain - ckpt, (size_t)(LL - 1) * block,
               "activations %zu bytes plain, %zu checkpointed: saved %zu, expected %zu", plain,
               ckpt, plain - ckpt, (size_t)(LL - 1) * block);
  /* the figures docs/memory.md quotes */
  cr_log_info("activation block at B=%d T=%d, %d layers of width %d: %zu bytes plain, %zu "
              "checkpointed",
              BX, TX, LL, CC, plain, ckpt);
  /* a pass runs in the checkpointed layout */
  int tk[BX * TX];
  tu_tokens(tk, BX * TX, VV, 3);
  cr_expect_eq(model_forward_rows(m, tk, NULL, BX, TX, &err), 0, "%s", err.msg);
  model_free(m);
}
