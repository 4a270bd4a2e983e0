/* LoRA adapters on GPT-2 (model_add_lora, model_set_adapters).
 *
 * Gradients: every adapter of a 2-layer model (all four linears adapted, B
 * made non-zero) under sum_i w_i log p(tgt_i) with a left-padded row,
 * against central differences (h = 1e-5) of a double-precision transcription
 * of the forward pass (tests/trainer/gpt2_double.h: GPT-2 with the adapters, from
 * docs/engine.md's equations: tanh GELU, LayerNorm eps 1e-5, 1/sqrt(d)
 * attention over the row's real keys, positions counted from the first real
 * token, the tied LM head), so the reference shares no code with the
 * engine. The transcription's objective also checks the engine's forward
 * (1e-4 relative: float32 against double). Per tensor, the relative L2
 * error |g - fd| / (|g| + |fd|) must be under 1e-3 (float32 gradients of a
 * tiny model; a wrong term is off by O(1)).
 *
 * Then: with B = 0 the outputs equal the base model's bit for bit; with the
 * adapters off after AdamW steps they still do (the base is frozen and one
 * copy serves as the reference); AdamW sees and moves only the adapters;
 * decoding applies the adapters as the forward pass does; errors.
 *
 * Checkpoints: a model with adapters saved and loaded gives the same
 * adapter tensors and logits bit for bit (adapters on and off); an AdamW
 * step after a resume equals the uninterrupted run's step bit for bit; a
 * damaged adapter section is refused with a message that says so.
 * model_copy_params copies the adapters with the base (a best checkpoint
 * restored into a LoRA policy) and refuses models whose adapters differ.
 * model_adapter_view (NLPO's mask model): the policy bit for bit at the
 * adapters' bytes, refreshed by model_copy_params. */
#include "tests/support/support.h"
#include "tests/trainer/gpt2_testutil.h"
#include "tests/trainer/train_testutil.h"
#include "trainer/optim.h"

#include <math.h>
#include <string.h>
#include <sys/stat.h>

/* the models here have no value head (gpt2_double.h reads it with one) */
static float vwgt(int i) {
  (void)i;
  return 0.0f;
}

#include "tests/trainer/gpt2_double.h"

/* ----------------------------------------------------------- helpers */

static double engine_objective(model_t *m, int backward) {
  dfpo_err err;
  dfpo_err_clear(&err);
  float logp[B * T], dl[B * T];
  cr_assert_eq(model_forward_rows(m, toks, kst, B, T, &err), 0, "%s", err.msg);
  cr_assert_eq(model_lm_logprobs(m, tgts, logp, NULL, &err), 0, "%s", err.msg);
  double s = 0;
  for (int i = 0; i < B * T; i++) {
    s += (double)wgt(i) * logp[i];
    dl[i] = wgt(i);
  }
  if (backward)
    cr_assert_eq(model_lm_backward(m, dl, NULL, &err), 0, "%s", err.msg);
  return s;
}

static model_t *base_model(uint64_t seed) {
  gpt2_config cfg = tu_config(V, L, NH, C, P);
  model_t *m = tu_model(&cfg, seed);
  tu_perturb(m, seed + 1, 3.0f);
  return m;
}

static void add_lora(model_t *m, const char *targets, uint64_t seed) {
  dfpo_err err;
  dfpo_err_clear(&err);
  model_lora_config lc = {R, ALPHA, targets};
  cr_assert_eq(model_add_lora(m, &lc, seed, &err), 0, "%s", err.msg);
}

/* Sets every adapter element (B included) to a seeded normal of sd s. */
static void randomise_adapters(model_t *m, uint64_t seed, float s) {
  dfpo_rng r;
  dfpo_rng_init(&r, seed, 91);
  for (int i = 0; i < model_num_tensors(m); i++) {
    model_tensor t;
    cr_assert_eq(model_tensor_at(m, i, &t, NULL), 0);
    for (int k = 0; k < t.rows * t.cols; k++)
      t.param[k] = s * (float)dfpo_rng_normal(&r);
  }
}

static void logits_of(model_t *m, float *out) {
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(model_forward_rows(m, toks, kst, B, T, &err), 0, "%s", err.msg);
  cr_assert_eq(model_lm_logprobs(m, tgts, NULL, NULL, &err), 0, "%s", err.msg);
  memcpy(out, model_lm_logits(m), sizeof(float) * B * T * V);
}

/* model_decode_begin over the test prompts: a's and b's first logits bit
 * for bit. */
static void expect_same_first_decode(model_t *a, model_t *b, const char *what) {
  dfpo_err err;
  dfpo_err_clear(&err);
  float da[B * V];
  const float *d = model_decode_begin(a, toks, kst, B, T, T + 1, &err);
  cr_assert_not_null(d, "%s", err.msg);
  memcpy(da, d, sizeof da);
  d = model_decode_begin(b, toks, kst, B, T, T + 1, &err);
  cr_assert_not_null(d, "%s", err.msg);
  cr_expect_eq(memcmp(da, d, sizeof da), 0, "%s", what);
}

/* ------------------------------------------------------------- tests */

Test(gpt2_lora, adapter_gradients_against_a_double_transcription) {
  model_t *m = base_model(1);
  add_lora(m, NULL, 5);
  randomise_adapters(m, 6, 0.3f);
  cr_assert_eq(model_num_tensors(m), 2 * 4 * L);
  ref_model rm;
  ref_bind(&rm, m);
  model_zero_grad(m);
  ref_check_gradients(m, &rm, engine_objective(m, 1));
  model_free(m);
}

Test(gpt2_lora, zero_b_equals_the_base_bit_for_bit) {
  model_t *base = base_model(11), *m = NULL;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(model_clone(&m, base, &err), 0, "%s", err.msg);
  add_lora(m, "attn.c_attn,mlp.c_proj", 12);
  cr_assert_eq(model_num_tensors(m), 2 * 2 * L);
  /* A is drawn (non-zero), B is zero */
  model_tensor a, bt;
  cr_assert_eq(model_tensor_at(m, 0, &a, NULL), 0);
  cr_assert_eq(model_tensor_at(m, 1, &bt, NULL), 0);
  cr_expect_str_eq(a.name, "h.0.attn.c_attn.lora_A.weight");
  cr_expect(a.rows == R && a.cols == C && bt.rows == R && bt.cols == 3 * C);
  double bound = 1.0 / sqrt((double)C), amax = 0;
  for (int k = 0; k < R * C; k++)
    amax = fabs(a.param[k]) > amax ? fabs(a.param[k]) : amax;
  cr_expect(amax > 0.5 * bound && amax <= bound, "A's range %g against the bound %g", amax, bound);
  for (int k = 0; k < R * 3 * C; k++)
    cr_assert_eq(bt.param[k], 0.0f);
  static float lb[B * T * V], lm[B * T * V];
  logits_of(base, lb);
  logits_of(m, lm);
  cr_expect_eq(memcmp(lb, lm, sizeof lb), 0, "B = 0: logits differ from the base's");
  /* decoding too */
  const float *db = model_decode_begin(base, toks, kst, B, T, T + 2, &err);
  cr_assert_not_null(db, "%s", err.msg);
  float first[B * V];
  memcpy(first, db, sizeof first);
  const float *dm = model_decode_begin(m, toks, kst, B, T, T + 2, &err);
  cr_assert_not_null(dm, "%s", err.msg);
  cr_expect_eq(memcmp(first, dm, sizeof first), 0, "B = 0: decoding logits differ");
  model_free(m);
  model_free(base);
}

Test(gpt2_lora, adamw_moves_only_the_adapters_and_off_is_the_base) {
  model_t *base = base_model(21), *m = NULL;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(model_clone(&m, base, &err), 0, "%s", err.msg);
  add_lora(m, NULL, 22);
  size_t np_base = model_num_params(base);
  cr_expect_eq(model_num_params(m), (size_t)L * R * (4 * C + 2 * C + 5 * C + 5 * C),
               "the tensor list is the adapters' (P_a = L r 16 C)");
  for (int i = 0; i < model_num_tensors(m); i++) {
    model_tensor t;
    cr_assert_eq(model_tensor_at(m, i, &t, NULL), 0);
    cr_expect(strstr(t.name, ".lora_") != NULL, "%s is trainable", t.name);
  }
  /* memory before any pass: the base's fp32 weights (one copy) and the
   * adapters with gradients and two moments (docs/memory.md: 4P + 16P_a),
   * no training state of the base */
  cr_assert_eq(model_ensure_train(m, &err), 0, "%s", err.msg);
  cr_expect_eq(model_arena_bytes(m), 4 * np_base + 16 * model_num_params(m), "arena %zu bytes",
               model_arena_bytes(m));
  /* snapshot the adapters, then AdamW steps on the LM loss */
  static float before[4096];
  size_t nb = 0;
  for (int i = 0; i < model_num_tensors(m); i++) {
    model_tensor t;
    model_tensor_at(m, i, &t, NULL);
    memcpy(before + nb, t.param, sizeof(float) * t.rows * t.cols);
    nb += (size_t)t.rows * t.cols;
  }
  cr_assert_leq(nb, sizeof before / sizeof before[0]);
  opt_adamw o = opt_adamw_default();
  for (int s = 0; s < 3; s++) {
    model_zero_grad(m);
    engine_objective(m, 1);
    float norm;
    cr_assert_eq(opt_adamw_step(m, &o, 1e-2f, &norm, &err), 0, "%s", err.msg);
    cr_expect_gt(norm, 0.0f);
  }
  /* the base's parameters are untouched and it has no training state */
  int nt = gpt2_num_tensors(m);
  cr_assert_eq(nt, gpt2_num_tensors(base));
  for (int t = 0; t < nt; t++) {
    const char *name;
    int rows, cols;
    float *pa, *pb, *g;
    gpt2_tensor_info(base, t, NULL, NULL, NULL, &pa, NULL);
    gpt2_tensor_info(m, t, &name, &rows, &cols, &pb, &g);
    cr_expect_eq(memcmp(pa, pb, sizeof(float) * rows * cols), 0, "base tensor %s moved", name);
    cr_expect_null(g, "base tensor %s has gradients", name);
  }
  /* every adapter tensor moved (B from zero, A from its draw) and has moments */
  nb = 0;
  for (int i = 0; i < model_num_tensors(m); i++) {
    model_tensor t;
    model_tensor_at(m, i, &t, NULL);
    cr_expect_not_null(t.m1);
    cr_expect(memcmp(before + nb, t.param, sizeof(float) * t.rows * t.cols) != 0, "%s unchanged",
              t.name);
    nb += (size_t)t.rows * t.cols;
  }
  /* on: the outputs moved; off: the base's, bit for bit */
  static float lb[B * T * V], lm[B * T * V];
  logits_of(base, lb);
  logits_of(m, lm);
  cr_expect_neq(memcmp(lb, lm, sizeof lb), 0, "trained adapters leave the logits unchanged");
  cr_assert_eq(model_set_adapters(m, 0, &err), 0, "%s", err.msg);
  logits_of(m, lm);
  cr_expect_eq(memcmp(lb, lm, sizeof lb), 0, "adapters off: logits differ from the base's");
  expect_same_first_decode(base, m, "adapters off: decoding differs from the base's");
  cr_assert_eq(model_set_adapters(m, 1, &err), 0, "%s", err.msg);
  model_free(m);
  model_free(base);
}

Test(gpt2_lora, decoding_applies_the_adapters) {
  model_t *m = base_model(31);
  dfpo_err err;
  dfpo_err_clear(&err);
  add_lora(m, NULL, 32);
  randomise_adapters(m, 33, 0.3f);
  static float lf[B * T * V];
  logits_of(m, lf);
  /* the cached pass over the prompts gives each row's last-position logits
   * of the forward pass */
  const float *d = model_decode_begin(m, toks, kst, B, T, T + 1, &err);
  cr_assert_not_null(d, "%s", err.msg);
  for (int b = 0; b < B; b++)
    for (int v = 0; v < V; v++) {
      float want = lf[((size_t)b * T + T - 1) * V + v];
      cr_expect_float_eq(d[b * V + v], want, 1e-5f * (1.0f + fabsf(want)), "row %d token %d", b, v);
    }
  model_free(m);
}

Test(gpt2_lora, refusals) {
  dfpo_err err;
  dfpo_err_clear(&err);
  model_t *m = base_model(41);
  cr_expect_eq(model_lora_rank(m), 0);
  cr_expect_eq(model_set_adapters(m, 0, &err), DFPO_EUSAGE);
  model_t *none = NULL;
  cr_expect_eq(model_adapter_view(&none, m, &err), DFPO_EUSAGE);
  cr_expect_null(none);
  cr_expect_eq(model_export_adapters(m, "/nonexistent", &err), DFPO_EUSAGE);
  cr_expect(strstr(err.msg, "no LoRA adapters") != NULL, "%s", err.msg);
  model_lora_config bad = {R, ALPHA, "attn.c_attn,mlp.c_gate"};
  cr_expect_eq(model_add_lora(m, &bad, 1, &err), DFPO_EUSAGE);
  cr_expect(strstr(err.msg, "mlp.c_gate") != NULL, "%s", err.msg);
  model_lora_config r0 = {0, ALPHA, NULL}, big = {C + 1, ALPHA, NULL}, a0 = {R, 0.0f, NULL};
  cr_expect_eq(model_add_lora(m, &r0, 1, &err), DFPO_EUSAGE);
  cr_expect_eq(model_add_lora(m, &big, 1, &err), DFPO_EUSAGE);
  cr_expect_eq(model_add_lora(m, &a0, 1, &err), DFPO_EUSAGE);
  cr_expect_eq(model_lora_rank(m), 0, "a refused call leaves no adapters");
  add_lora(m, "mlp.c_fc", 2);
  cr_expect_eq(model_lora_rank(m), R);
  model_lora_config again = {R, ALPHA, NULL};
  cr_expect_eq(model_add_lora(m, &again, 1, &err), DFPO_EUSAGE);
  model_free(m);
  /* a class head is refused (a value head trains with the adapters:
   * test_gpt2_shared.c) */
  gpt2_config vc = tu_config(V, 1, NH, C, P);
  vc.head = MODEL_HEAD_CLASS;
  vc.n_classes = 2;
  model_t *v = tu_model(&vc, 3);
  model_lora_config ok = {R, ALPHA, NULL};
  cr_expect_eq(model_add_lora(v, &ok, 1, &err), DFPO_EUSAGE);
  cr_expect(strstr(err.msg, "class head") != NULL, "%s", err.msg);
  model_free(v);
}

Test(gpt2_lora, a_base_view_is_the_reference_without_a_copy) {
  model_t *base = base_model(51), *m = NULL, *view = NULL;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(model_clone(&m, base, &err), 0, "%s", err.msg);
  add_lora(m, NULL, 52);
  cr_assert_eq(model_base_view(&view, m, &err), 0, "%s", err.msg);
  cr_expect_eq(model_arena_bytes(view), 0, "a fresh view holds no weights of its own");
  cr_expect_eq(model_lora_rank(view), 0);
  cr_expect_eq(model_ensure_train(view, &err), DFPO_EUSAGE);
  cr_expect_eq(model_copy_params(view, base, &err), DFPO_EUSAGE);
  /* train the adapters a little, then decode policy and view in lock step:
   * the view gives the base's logits bit for bit, the policy its own */
  opt_adamw o = opt_adamw_default();
  for (int s = 0; s < 2; s++) {
    model_zero_grad(m);
    engine_objective(m, 1);
    cr_assert_eq(opt_adamw_step(m, &o, 1e-2f, NULL, &err), 0, "%s", err.msg);
  }
  float want[B * V], pol[B * V];
  const float *d = model_decode_begin(base, toks, kst, B, T, T + 2, &err);
  cr_assert_not_null(d, "%s", err.msg);
  memcpy(want, d, sizeof want);
  d = model_decode_begin(m, toks, kst, B, T, T + 2, &err);
  cr_assert_not_null(d, "%s", err.msg);
  memcpy(pol, d, sizeof pol);
  d = model_decode_begin(view, toks, kst, B, T, T + 2, &err);
  cr_assert_not_null(d, "%s", err.msg);
  cr_expect_eq(memcmp(want, d, sizeof want), 0, "the view's first logits differ from the base's");
  cr_expect_neq(memcmp(want, pol, sizeof want), 0, "the policy's adapters did nothing");
  int next[B] = {4, 6};
  d = model_decode_step(base, next, &err);
  cr_assert_not_null(d, "%s", err.msg);
  memcpy(want, d, sizeof want);
  cr_assert_not_null(model_decode_step(m, next, &err), "%s", err.msg);
  d = model_decode_step(view, next, &err);
  cr_assert_not_null(d, "%s", err.msg);
  cr_expect_eq(memcmp(want, d, sizeof want), 0, "the view's step logits differ from the base's");
  model_free(view);
  model_free(m);
  model_free(base);
}

/* ------------------------------------------------------- checkpoints */

/* Two AdamW steps on the test batch (so that the moments are non-zero). */
static void train_steps(model_t *m, int n) {
  dfpo_err err;
  dfpo_err_clear(&err);
  opt_adamw o = opt_adamw_default();
  for (int s = 0; s < n; s++) {
    model_zero_grad(m);
    engine_objective(m, 1);
    cr_assert_eq(opt_adamw_step(m, &o, 1e-2f, NULL, &err), 0, "%s", err.msg);
  }
}

/* model_adapter_view (NLPO's mask model of a LoRA policy): the policy's
 * base shared and a copy of its adapters, so it holds exactly the adapters'
 * bytes (4 bytes x L 2 x R 2 x (C + 3C + C + C + C + 4C + 4C + C = 16 C,
 * C 8) = 2,048 here) and computes the policy's logits bit for bit, in a forward
 * pass and decoding; it does not train; once the policy's adapters move,
 * model_copy_params brings the view level again, from the policy or from a
 * loaded copy of it (another base in memory, the same values); a model
 * whose base differs is refused. */
Test(gpt2_lora, an_adapter_view_is_the_policy_at_the_adapters_cost) {
  model_t *base = base_model(61), *m = NULL, *view = NULL, *copy = NULL, *other = NULL;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(model_clone(&m, base, &err), 0, "%s", err.msg);
  add_lora(m, NULL, 62);
  randomise_adapters(m, 63, 0.3f);
  cr_assert_eq(model_adapter_view(&view, m, &err), 0, "%s", err.msg);
  cr_expect_eq(model_lora_rank(view), R);
  cr_expect_eq(model_arena_bytes(view), (size_t)4 * L * R * 16 * C);
  cr_expect_eq(model_arena_bytes(view), model_num_params(m) * sizeof(float));
  cr_expect_eq(model_ensure_train(view, &err), DFPO_EUSAGE);
  static float lm[B * T * V], lv[B * T * V];
  logits_of(m, lm);
  logits_of(view, lv);
  cr_expect_eq(memcmp(lm, lv, sizeof lm), 0, "the view's logits differ from the policy's");
  expect_same_first_decode(m, view, "the view decodes otherwise");
  /* the policy trains on; the view stays behind until copied again */
  train_steps(m, 2);
  logits_of(m, lm);
  logits_of(view, lv);
  cr_expect_neq(memcmp(lm, lv, sizeof lm), 0, "the view followed the policy by itself");
  cr_assert_eq(model_copy_params(view, m, &err), 0, "%s", err.msg);
  logits_of(view, lv);
  cr_expect_eq(memcmp(lm, lv, sizeof lm), 0, "model_copy_params did not bring the view level");
  /* from a loaded copy: another base in memory with the same values */
  char dir[256], path[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/m.ckpt", dir);
  train_steps(m, 2);
  cr_assert_eq(model_save(m, path, 0, &err), 0, "%s", err.msg);
  cr_assert_eq(model_load(&copy, path, &err), 0, "%s", err.msg);
  cr_assert_eq(model_copy_params(view, copy, &err), 0, "%s", err.msg);
  logits_of(m, lm);
  logits_of(view, lv);
  cr_expect_eq(memcmp(lm, lv, sizeof lm), 0, "copied from a loaded copy: differs");
  /* another base */
  cr_assert_eq(model_clone(&other, base, &err), 0, "%s", err.msg);
  tu_perturb(other, 64, 1.0f);
  add_lora(other, NULL, 65);
  cr_expect_eq(model_copy_params(view, other, &err), DFPO_EUSAGE);
  cr_expect(strstr(err.msg, "base weights differ") != NULL, "%s", err.msg);
  model_free(other);
  model_free(copy);
  model_free(view);
  model_free(m);
  model_free(base);
  ts_rmtree(dir);
}

/* Every adapter tensor of a and b, parameters and (when both have them)
 * AdamW moments, bit for bit. */
static void same_adapters(model_t *a, model_t *b, int moments) {
  cr_assert_eq(model_num_tensors(a), model_num_tensors(b));
  for (int i = 0; i < model_num_tensors(a); i++) {
    model_tensor x, y;
    cr_assert_eq(model_tensor_at(a, i, &x, NULL), 0);
    cr_assert_eq(model_tensor_at(b, i, &y, NULL), 0);
    cr_expect_str_eq(x.name, y.name);
    size_t n = (size_t)x.rows * x.cols * sizeof(float);
    cr_assert_eq(x.rows * x.cols, y.rows * y.cols, "%s", x.name);
    cr_expect_eq(memcmp(x.param, y.param, n), 0, "%s differs", x.name);
    if (moments) {
      cr_assert(x.m1 && y.m1 && x.m2 && y.m2, "%s: no AdamW moments", x.name);
      cr_expect_eq(memcmp(x.m1, y.m1, n), 0, "%s: first moment differs", x.name);
      cr_expect_eq(memcmp(x.m2, y.m2, n), 0, "%s: second moment differs", x.name);
    }
  }
}

static size_t adapter_floats(model_t *m) {
  size_t n = 0;
  for (int i = 0; i < model_num_tensors(m); i++) {
    model_tensor t;
    cr_assert_eq(model_tensor_at(m, i, &t, NULL), 0);
    n += (size_t)t.rows * t.cols;
  }
  return n;
}

Test(gpt2_lora, checkpoint_round_trip_keeps_the_adapters) {
  char dir[256], path[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/lora.ckpt", dir);
  dfpo_err err;
  dfpo_err_clear(&err);
  model_t *m = base_model(61), *b = NULL;
  add_lora(m, "attn.c_attn,mlp.c_proj", 62);
  train_steps(m, 2);
  cr_assert_eq(model_save(m, path, 1, &err), 0, "%s", err.msg);
  cr_assert_eq(model_load(&b, path, &err), 0, "%s", err.msg);
  cr_expect_eq(model_lora_rank(b), R);
  cr_expect_eq(model_step_count(b), 2);
  same_adapters(m, b, 1);
  float la[B * T * V], lb[B * T * V];
  logits_of(m, la);
  logits_of(b, lb);
  cr_expect_eq(memcmp(la, lb, sizeof la), 0, "logits with the adapters differ after a round trip");
  cr_assert_eq(model_set_adapters(m, 0, &err), 0, "%s", err.msg);
  cr_assert_eq(model_set_adapters(b, 0, &err), 0, "%s", err.msg);
  logits_of(m, la);
  logits_of(b, lb);
  cr_expect_eq(memcmp(la, lb, sizeof la), 0, "the base's logits differ after a round trip");
  model_free(b);
  /* without the optimizer state: the adapters, no moments */
  cr_assert_eq(model_save(m, path, 0, &err), 0, "%s", err.msg);
  cr_assert_eq(model_load(&b, path, &err), 0, "%s", err.msg);
  same_adapters(m, b, 0);
  model_tensor t;
  cr_assert_eq(model_tensor_at(b, 0, &t, NULL), 0);
  cr_expect_null(t.m1, "a file without the optimizer state gave moments");
  model_free(b);
  model_free(m);
  ts_rmtree(dir);
}

Test(gpt2_lora, a_resumed_adamw_step_equals_the_uninterrupted_one) {
  char dir[256], path[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/resume.ckpt", dir);
  dfpo_err err;
  dfpo_err_clear(&err);
  model_t *m = base_model(71), *r = NULL;
  add_lora(m, NULL, 72);
  train_steps(m, 3);
  cr_assert_eq(model_save(m, path, 1, &err), 0, "%s", err.msg);
  train_steps(m, 2);
  cr_assert_eq(model_load(&r, path, &err), 0, "%s", err.msg);
  train_steps(r, 2);
  cr_expect_eq(model_step_count(r), 5);
  same_adapters(m, r, 1);
  model_free(r);
  model_free(m);
  ts_rmtree(dir);
}

Test(gpt2_lora, a_damaged_adapter_section_is_refused) {
  char dir[256], path[300], bad[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/good.ckpt", dir);
  snprintf(bad, sizeof bad, "%s/bad.ckpt", dir);
  dfpo_err err;
  dfpo_err_clear(&err);
  model_t *m = base_model(81);
  add_lora(m, "attn.c_proj,mlp.c_fc", 82);
  train_steps(m, 1);
  cr_assert_eq(model_save(m, path, 1, &err), 0, "%s", err.msg);
  size_t na = adapter_floats(m);
  model_free(m);
  char *data;
  size_t len;
  cr_assert_eq(dfpo_read_file(path, &data, &len, &err), 0, "%s", err.msg);
  /* the section: 32 header bytes, then parameters and two moments */
  size_t sec = len - 32 - 3 * na * sizeof(float);
  cr_assert_eq(memcmp(data + sec, "DFPOLORA", 8), 0, "the section is not where it should be");
  char *copy = malloc(len + 4);
  cr_assert_not_null(copy);
#define DAMAGED(n, must)                                                                           \
  do {                                                                                             \
    FILE *f = fopen(bad, "wb");                                                                    \
    cr_assert_not_null(f);                                                                         \
    cr_assert_eq(fwrite(copy, 1, (n), f), (n));                                                    \
    fclose(f);                                                                                     \
    tu_expect_load_fails(bad, bad, must);                                                          \
    memcpy(copy, data, len);                                                                       \
  } while (0)
  memcpy(copy, data, len);
  DAMAGED(sec + 20, "LoRA adapter section truncated"); /* in its header */
  DAMAGED(sec, "LoRA adapter section truncated");      /* without it */
  DAMAGED(len - 4, "second AdamW moment");
  memset(copy + len, 0, 4);
  DAMAGED(len + 4, "trailing data after the LoRA adapter section");
  copy[sec] = 'X';
  DAMAGED(len, "LoRA adapter section damaged (bad magic)");
  int32_t rank = C + 1;
  memcpy(copy + sec + 8, &rank, 4);
  DAMAGED(len, "rank 9");
  float alpha = -1.0f;
  memcpy(copy + sec + 12, &alpha, 4);
  DAMAGED(len, "alpha -1");
  uint32_t bits = 1u << 4;
  memcpy(copy + sec + 16, &bits, 4);
  DAMAGED(len, "target bits 0x10");
  bits = 1u; /* attn.c_attn alone: the sizes no longer match */
  memcpy(copy + sec + 16, &bits, 4);
  DAMAGED(len, "parameters, rank 2 on attn.c_attn has");
  float nan = NAN;
  memcpy(copy + sec + 32 + 3 * sizeof(float), &nan, 4);
  DAMAGED(len, "adapter 'h.0.attn.c_proj.lora_A.weight' has NaN at element 3");
  /* version 2 without the LoRA flag, version 1 with it */
  copy[48] &= ~2; /* the header's flags word */
  DAMAGED(len, "corrupt header");
  copy[8] = 1;
  DAMAGED(len, "corrupt header");
#undef DAMAGED
  free(copy);
  free(data);
  ts_rmtree(dir);
}

Test(gpt2_lora, copy_params_copies_the_adapters) {
  dfpo_err err;
  dfpo_err_clear(&err);
  model_t *a = base_model(91), *b = base_model(93), *plain = base_model(91);
  add_lora(a, "attn.c_attn", 92);
  train_steps(a, 2);
  cr_expect_eq(model_copy_params(b, a, &err), DFPO_EUSAGE, "no adapters on b: refused");
  cr_expect(strstr(err.msg, "LoRA") != NULL, "%s", err.msg);
  add_lora(b, "attn.c_attn", 94);
  cr_assert_eq(model_copy_params(b, a, &err), 0, "%s", err.msg);
  same_adapters(a, b, 0);
  float la[B * T * V], lb[B * T * V];
  logits_of(a, la);
  logits_of(b, lb);
  cr_expect_eq(memcmp(la, lb, sizeof la), 0, "the copy's logits differ");
  model_t *c = base_model(95);
  add_lora(c, "mlp.c_fc", 96);
  cr_expect_eq(model_copy_params(c, a, &err), DFPO_EUSAGE, "other targets: refused");
  cr_expect_eq(model_copy_params(plain, a, &err), DFPO_EUSAGE);
  model_free(c);
  model_free(plain);
  model_free(b);
  model_free(a);
}

/* model_save_tensors / model_load_tensors: a view's adapters alone (NLPO's
 * mask model in a resume checkpoint). The file holds exactly the adapters'
 * floats after its header; read into a fresh view of the same policy it
 * gives the saved adapters bit for bit (and the saved view's logits); a
 * view of a model whose adapters sit on other layers is refused naming the
 * missing tensor, and a file with a NaN naming it. */
Test(gpt2_lora, a_view_saves_and_loads_its_adapters_alone) {
  char dir[256], path[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/mask.safetensors", dir);
  dfpo_err err;
  dfpo_err_clear(&err);
  model_t *m = base_model(61), *view = NULL, *back = NULL, *other = NULL, *oview = NULL;
  add_lora(m, NULL, 62);
  randomise_adapters(m, 63, 0.3f);
  cr_assert_eq(model_adapter_view(&view, m, &err), 0, "%s", err.msg);
  cr_assert_eq(model_save_tensors(view, path, &err), 0, "%s", err.msg);
  struct stat st;
  cr_assert_eq(stat(path, &st), 0);
  size_t floats = adapter_floats(view);
  cr_expect(st.st_size > (off_t)(floats * 4) && st.st_size < (off_t)(floats * 4 + 8192),
            "%lld bytes for %zu adapter floats", (long long)st.st_size, floats);
  /* the policy trains on; a fresh view of it gets the saved adapters back */
  train_steps(m, 2);
  cr_assert_eq(model_adapter_view(&back, m, &err), 0, "%s", err.msg);
  cr_assert_eq(model_load_tensors(back, path, &err), 0, "%s", err.msg);
  same_adapters(view, back, 0);
  static float lv[B * T * V], lb[B * T * V];
  logits_of(view, lv);
  logits_of(back, lb);
  cr_expect_eq(memcmp(lv, lb, sizeof lv), 0, "the loaded view's logits differ from the saved");
  /* adapters on other layers: refused, naming a tensor the file lacks */
  other = base_model(61);
  add_lora(other, "attn.c_attn", 64);
  cr_assert_eq(model_adapter_view(&oview, other, &err), 0, "%s", err.msg);
  cr_expect_eq(model_load_tensors(oview, path, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "tensors where the gpt2 model has") != NULL, "%s", err.msg);
  /* a NaN in the file */
  model_tensor t;
  cr_assert_eq(model_tensor_at(view, 0, &t, NULL), 0);
  t.param[1] = NAN;
  cr_assert_eq(model_save_tensors(view, path, &err), 0, "%s", err.msg);
  cr_expect_eq(model_load_tensors(back, path, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, t.name) != NULL, "%s", err.msg);
  model_free(oview);
  model_free(other);
  model_free(back);
  model_free(view);
  model_free(m);
  ts_rmtree(dir);
}

/* a's and b's logits bit for bit with their adapters off (their bases) */
static void same_base_logits(model_t *a, model_t *b, int dtype, const char *what) {
  dfpo_err err;
  dfpo_err_clear(&err);
  static float la[B * T * V], lb[B * T * V];
  cr_assert_eq(model_set_adapters(a, 0, &err), 0, "%s", err.msg);
  cr_assert_eq(model_set_adapters(b, 0, &err), 0, "%s", err.msg);
  logits_of(a, la);
  logits_of(b, lb);
  cr_expect_eq(memcmp(la, lb, sizeof la), 0, "%s: %s", ops_dtype_name(dtype), what);
  cr_assert_eq(model_set_adapters(a, 1, &err), 0, "%s", err.msg);
  cr_assert_eq(model_set_adapters(b, 1, &err), 0, "%s", err.msg);
}

/* A LoRA policy over a base kept in 16 bits (model_set_weight_dtype after
 * model_add_lora, or before it): the base frozen in bf16 or f16, the
 * adapters fp32 and trained. Against the same policy over the base widened
 * back to fp32 (the values a 16-bit base holds): the objective, every
 * adapter's gradient and three AdamW steps within 1e-6 (the products run
 * the same kernels over the same widened panels: measured bit for bit),
 * the reference (its base view, in 16 bits without a copy) and decoding
 * too. The arena holds the 1,624 matrix weights (wte 11 x 8; per layer
 * 24 x 8 + 8 x 8 + 32 x 8 + 8 x 32 = 768, two layers) in 2 bytes instead
 * of 4: 3,248 bytes fewer. A checkpoint holds the base widened (the fp32
 * file of those values) with the adapters and their moments: loaded, it is
 * the widened policy bit for bit, and model_load_as puts it back into 16
 * bits with the same bits. */
Test(gpt2_lora, a_16_bit_base_trains_as_its_widened_fp32_base) {
  dfpo_err err;
  dfpo_err_clear(&err);
  char dir[256], path[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/lora16.ckpt", dir);
  for (int dtype = OPS_DTYPE_BF16; dtype <= OPS_DTYPE_F16; dtype++) {
    model_t *h = base_model(71), *f = base_model(71), *hv = NULL, *fv = NULL, *b = NULL;
    /* h: the 16-bit base, LoRA added after; f: widened back to fp32 */
    cr_assert_eq(model_set_weight_dtype(h, dtype, &err), 0, "%s", err.msg);
    cr_assert_eq(model_set_weight_dtype(f, dtype, &err), 0, "%s", err.msg);
    cr_assert_eq(model_set_weight_dtype(f, OPS_DTYPE_F32, &err), 0, "%s", err.msg);
    add_lora(h, NULL, 72);
    add_lora(f, NULL, 72);
    cr_expect_eq(model_arena_bytes(f) - model_arena_bytes(h), (size_t)3248);
    randomise_adapters(h, 73, 0.3f);
    randomise_adapters(f, 73, 0.3f);
    cr_assert_eq(model_ensure_train(h, &err), 0, "%s", err.msg);
    cr_assert_eq(model_ensure_train(f, &err), 0, "%s", err.msg);
    model_zero_grad(h);
    model_zero_grad(f);
    double oh = engine_objective(h, 1), of = engine_objective(f, 1);
    cr_expect(fabs(oh - of) <= 1e-6 * fabs(of), "%s: objective %.9g, widened %.9g",
              ops_dtype_name(dtype), oh, of);
    double worst = 0;
    for (int i = 0; i < model_num_tensors(h); i++) {
      model_tensor x, y;
      cr_assert_eq(model_tensor_at(h, i, &x, NULL), 0);
      cr_assert_eq(model_tensor_at(f, i, &y, NULL), 0);
      worst = fmax(worst, tensor_err(x.grad, y.grad, (size_t)x.rows * x.cols));
    }
    cr_log_info("%s: adapter gradients' largest error %.3g", ops_dtype_name(dtype), worst);
    cr_expect(worst <= 1e-6, "%s: adapter gradients off by %.3g", ops_dtype_name(dtype), worst);
    train_steps(h, 3);
    train_steps(f, 3);
    for (int i = 0; i < model_num_tensors(h); i++) {
      model_tensor x, y;
      cr_assert_eq(model_tensor_at(h, i, &x, NULL), 0);
      cr_assert_eq(model_tensor_at(f, i, &y, NULL), 0);
      double e = tensor_err(x.param, y.param, (size_t)x.rows * x.cols);
      cr_expect(e <= 1e-6, "%s: %s after 3 steps off by %.3g", ops_dtype_name(dtype), x.name, e);
    }
    static float lh[B * T * V], lf[B * T * V], lw[B * T * V];
    logits_of(h, lh);
    logits_of(f, lf);
    cr_expect(tensor_err(lh, lf, sizeof lh / sizeof lh[0]) <= 1e-6, "%s: trained logits differ",
              ops_dtype_name(dtype));
    expect_same_first_decode(h, f, "a 16-bit LoRA base decodes otherwise than its widened base");
    /* the reference: the base view, in the base's precision */
    cr_assert_eq(model_base_view(&hv, h, &err), 0, "%s", err.msg);
    cr_assert_eq(model_base_view(&fv, f, &err), 0, "%s", err.msg);
    cr_expect_eq((int)model_weight_dtype(hv), dtype);
    cr_expect_eq(model_arena_bytes(hv), (size_t)0);
    logits_of(hv, lh);
    logits_of(fv, lf);
    cr_expect(tensor_err(lh, lf, sizeof lh / sizeof lh[0]) <= 1e-6, "%s: the references differ",
              ops_dtype_name(dtype));
    model_free(hv);
    model_free(fv);
    /* the checkpoint: the widened base, the adapters and their moments */
    cr_assert_eq(model_save(h, path, 1, &err), 0, "%s", err.msg);
    cr_assert_eq(model_load(&b, path, &err), 0, "%s", err.msg);
    cr_expect_eq((int)model_weight_dtype(b), (int)OPS_DTYPE_F32);
    same_adapters(h, b, 1);
    same_base_logits(b, f, dtype, "the saved base is not the widened one");
    model_free(b);
    cr_assert_eq(model_load_as(&b, path, dtype, &err), 0, "%s", err.msg);
    cr_expect_eq(model_lora_rank(b), R);
    cr_expect_eq((int)model_weight_dtype(b), dtype);
    same_adapters(h, b, 1);
    same_base_logits(b, h, dtype, "loaded back into 16 bits, the base differs");
    /* NLPO's mask model: an adapter view of the 16-bit base, at the
     * adapters' bytes; refreshed from another copy of the same base (b),
     * refused from another base */
    model_t *mv = NULL, *o = base_model(99);
    cr_assert_eq(model_adapter_view(&mv, h, &err), 0, "%s", err.msg);
    cr_expect_eq(model_arena_bytes(mv), model_num_params(h) * sizeof(float));
    cr_assert_eq(model_copy_params(mv, b, &err), 0, "%s", err.msg);
    logits_of(mv, lh);
    logits_of(h, lw);
    cr_expect_eq(memcmp(lh, lw, sizeof lh), 0, "%s: the adapter view computes otherwise",
                 ops_dtype_name(dtype));
    cr_assert_eq(model_set_weight_dtype(o, dtype, &err), 0, "%s", err.msg);
    add_lora(o, NULL, 72);
    cr_expect_eq(model_copy_params(mv, o, &err), DFPO_EUSAGE);
    cr_expect(strstr(err.msg, "base weights differ"), "%s", err.msg);
    model_free(o);
    model_free(mv);
    model_free(b);
    model_free(h);
    model_free(f);
  }
  ts_rmtree(dir);
}

/* model_load_adapters: the adapters of a saved LoRA checkpoint (with and
 * without its AdamW moments) read back into the policy that trained on
 * after it, its base not read: the policy then computes as the checkpoint
 * loaded whole, bit for bit; a model without adapters, another rank and a
 * damaged adapter are refused. */
Test(gpt2_lora, adapters_alone_come_back_from_a_checkpoint) {
  char dir[256], path[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/best.ckpt", dir);
  dfpo_err err;
  dfpo_err_clear(&err);
  static float la[B * T * V], lb[B * T * V];
  for (int moments = 0; moments < 2; moments++) {
    model_t *m = base_model(81), *whole = NULL;
    add_lora(m, NULL, 82);
    train_steps(m, 2);
    cr_assert_eq(model_save(m, path, moments, &err), 0, "%s", err.msg);
    train_steps(m, 2);
    cr_assert_eq(model_load_adapters(m, path, &err), 0, "%s", err.msg);
    cr_assert_eq(model_load(&whole, path, &err), 0, "%s", err.msg);
    logits_of(m, la);
    logits_of(whole, lb);
    cr_expect_eq(memcmp(la, lb, sizeof la), 0, "moments %d: the adapters did not come back",
                 moments);
    model_free(whole);
    model_free(m);
  }
  model_t *plain = base_model(83), *other = base_model(83);
  cr_expect_eq(model_load_adapters(plain, path, &err), DFPO_EUSAGE);
  model_lora_config lc = {R + 1, ALPHA, NULL};
  cr_assert_eq(model_add_lora(other, &lc, 1, &err), 0, "%s", err.msg);
  cr_expect_eq(model_load_adapters(other, path, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "the model's are rank 3"), "%s", err.msg);
  /* a NaN in the last adapter element (the file's last float) */
  model_t *m = base_model(84);
  add_lora(m, NULL, 85);
  cr_assert_eq(model_save(m, path, 0, &err), 0, "%s", err.msg);
  FILE *fp = fopen(path, "r+b");
  cr_assert_not_null(fp);
  cr_assert_eq(fseek(fp, -(long)sizeof(float), SEEK_END), 0);
  float nan = NAN;
  cr_assert_eq(fwrite(&nan, sizeof nan, 1, fp), 1u);
  fclose(fp);
  cr_expect_eq(model_load_adapters(m, path, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "NaN"), "%s", err.msg);
  model_free(m);
  model_free(plain);
  model_free(other);
  ts_rmtree(dir);
}

/* model_load_into: a checkpoint saved with its AdamW moments read back into
 * the model that trained two more steps after it, in place (its parameter
 * block not moved): two further steps then equal two steps of the
 * checkpoint loaded anew bit for bit (parameters, moments, logits), for a
 * model without adapters and for a LoRA policy, whose base view (the
 * reference) is not made again and still computes the base, and a decoding
 * begun before the read is spent. Refusals,
 * before anything is read: another config, a LoRA file into a model without
 * adapters and the reverse, other adapters, an adapter view read whole (its
 * base is the policy's; its adapters alone are read), a file that is not a
 * checkpoint. */
Test(gpt2_lora, a_checkpoint_reads_into_the_model_in_place) {
  char dir[256], path[300], plain_path[300], junk[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/lora.ckpt", dir);
  snprintf(plain_path, sizeof plain_path, "%s/plain.ckpt", dir);
  snprintf(junk, sizeof junk, "%s/junk.ckpt", dir);
  dfpo_err err;
  dfpo_err_clear(&err);
  static float la[B * T * V], lb[B * T * V];
  for (int lora = 0; lora < 2; lora++) {
    model_t *m = base_model(91), *fresh = NULL, *view = NULL;
    if (lora)
      add_lora(m, NULL, 92);
    train_steps(m, 2);
    const char *at = lora ? path : plain_path;
    cr_assert_eq(model_save(m, at, 1, &err), 0, "%s", err.msg);
    if (lora)
      cr_assert_eq(model_base_view(&view, m, &err), 0, "%s", err.msg);
    model_tensor t0;
    cr_assert_eq(model_tensor_at(m, 0, &t0, &err), 0, "%s", err.msg);
    train_steps(m, 2);
    logits_of(m, la);
    tu_decode_begun(m);
    cr_assert_eq(model_load_into(m, at, &err), 0, "%s", err.msg);
    cr_expect_null(model_lm_logits(m), "lora %d: the old parameters' logits are still given", lora);
    tu_decode_spent(m, lora ? "LoRA" : "full");
    cr_expect_eq(model_step_count(m), 2);
    model_tensor t1;
    cr_assert_eq(model_tensor_at(m, 0, &t1, &err), 0, "%s", err.msg);
    cr_expect_eq(t1.param, t0.param, "lora %d: the parameters moved", lora);
    cr_assert_eq(model_load(&fresh, at, &err), 0, "%s", err.msg);
    train_steps(m, 2);
    train_steps(fresh, 2);
    same_adapters(m, fresh, 1);
    logits_of(m, la);
    logits_of(fresh, lb);
    cr_expect_eq(memcmp(la, lb, sizeof la), 0, "lora %d: the steps after the read differ", lora);
    if (lora) {
      cr_assert_eq(model_set_adapters(fresh, 0, &err), 0, "%s", err.msg);
      logits_of(view, la);
      logits_of(fresh, lb);
      cr_expect_eq(memcmp(la, lb, sizeof la), 0, "the reference view lost the base");
      model_free(view);
    }
    model_free(fresh);
    model_free(m);
  }
  /* refusals */
  gpt2_config wide = tu_config(V, L, NH, 2 * C, P);
  model_t *other = tu_model(&wide, 93), *plain = base_model(94), *lm = base_model(95), *av = NULL;
  add_lora(lm, NULL, 96);
  cr_expect_eq(model_load_into(other, plain_path, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "another gpt2 model"), "%s", err.msg);
  cr_expect_eq(model_load_into(plain, path, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "has none"), "%s", err.msg);
  cr_expect_eq(model_load_into(lm, plain_path, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "has them"), "%s", err.msg);
  model_t *r1 = base_model(97);
  model_lora_config lc = {R + 1, ALPHA, NULL};
  cr_assert_eq(model_add_lora(r1, &lc, 1, &err), 0, "%s", err.msg);
  cr_expect_eq(model_load_into(r1, path, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "LoRA adapters of rank 2"), "%s", err.msg);
  cr_assert_eq(model_adapter_view(&av, lm, &err), 0, "%s", err.msg);
  cr_expect_eq(model_load_into(av, path, &err), DFPO_EUSAGE);
  cr_expect(strstr(err.msg, "a view"), "%s", err.msg);
  cr_expect_eq(model_load_adapters(av, path, &err), 0, "%s", err.msg);
  FILE *fp = fopen(junk, "wb");
  cr_assert_not_null(fp);
  fputs("not a checkpoint at all", fp);
  fclose(fp);
  cr_expect_eq(model_load_into(plain, junk, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "not a dfpo checkpoint"), "%s", err.msg);
  model_free(av);
  model_free(r1);
  model_free(lm);
  model_free(plain);
  model_free(other);
  ts_rmtree(dir);
}

/* adapter_config.json at dir with lora_alpha alpha, target_modules tm
 * (JSON) and, when extra is not NULL, one more key and value (JSON; a
 * "bias" there replaces the default "none") */
static void peft_config_alpha(const char *dir, double alpha, const char *tm, const char *extra) {
  char path[400];
  snprintf(path, sizeof path, "%s/adapter_config.json", dir);
  FILE *fp = fopen(path, "w");
  cr_assert_not_null(fp);
  fprintf(fp,
          "{\"peft_type\": \"LORA\", \"task_type\": \"CAUSAL_LM\", \"r\": %d, \"lora_alpha\": "
          "%.17g, \"lora_dropout\": 0.05, %s\"fan_in_fan_out\": true, "
          "\"target_modules\": %s%s%s}",
          R, alpha, extra && strstr(extra, "\"bias\"") ? "" : "\"bias\": \"none\", ", tm,
          extra ? ", " : "", extra ? extra : "");
  fclose(fp);
}
static void peft_config(const char *dir, const char *tm, const char *extra) {
  peft_config_alpha(dir, ALPHA, tm, extra);
}

/* model_load_peft_adapters: peft's files of a LoRA policy (its
 * model_export_adapters) read onto a fresh copy of its base give the
 * policy again, its logits bit for bit; target_modules matched as peft
 * matches them (a bare "c_proj" takes attn.c_proj and mlp.c_proj, a regex
 * the whole name); with use_rslora (peft's scale lora_alpha / sqrt(r)) and
 * lora_alpha = ALPHA sqrt(R) / R, whose scale is the policy's ALPHA / R,
 * the same logits bit for bit, and with lora_alpha = ALPHA other ones;
 * refusals naming what is wrong: targets on one layer only, use_dora, a
 * tensor the config does not name, one it names that the file lacks, a
 * model with adapters, a folder without a config. */
Test(gpt2_lora, peft_adapter_files_read_back_onto_the_base) {
  char dir[256], peft[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(peft, sizeof peft, "%s/peft", dir);
  cr_assert_eq(mkdir(peft, 0755), 0);
  dfpo_err err;
  dfpo_err_clear(&err);
  static float la[B * T * V], lb[B * T * V];
  static const char *const targets[3] = {NULL, "attn.c_proj,mlp.c_proj", "attn.c_attn"};
  static const char *const tm[3] = {NULL, "[\"c_proj\"]",
                                    "\"transformer\\\\.h\\\\.\\\\d+\\\\.attn\\\\.c_attn\""};
  for (int c = 0; c < 3; c++) {
    model_t *m = base_model(101), *back = base_model(101);
    add_lora(m, targets[c], 102 + c);
    randomise_adapters(m, 105 + c, 0.2f);
    cr_assert_eq(model_export_adapters(m, peft, &err), 0, "%s", err.msg);
    if (tm[c])
      peft_config(peft, tm[c], NULL);
    cr_assert_eq(model_load_peft_adapters(back, peft, &err), 0, "case %d: %s", c, err.msg);
    cr_expect_eq(model_lora_rank(back), R);
    cr_expect_eq(adapter_floats(back), adapter_floats(m), "case %d", c);
    logits_of(m, la);
    logits_of(back, lb);
    cr_expect_eq(memcmp(la, lb, sizeof la), 0, "case %d: the adapters read back differ", c);
    cr_expect_eq(model_load_peft_adapters(back, peft, &err), DFPO_EUSAGE);
    model_free(back);
    model_free(m);
  }
  /* peft holds attn.c_attn's adapters now: as rsLoRA with lora_alpha
   * ALPHA / sqrt(R), whose scale (3 / sqrt(2)) / sqrt(2) rounds to the
   * policy's ALPHA / R = 1.5, then with ALPHA itself (the scale 3 / sqrt(2)) */
  {
    model_t *m = base_model(101);
    add_lora(m, targets[2], 104);
    randomise_adapters(m, 107, 0.2f);
    logits_of(m, la);
    for (int k = 0; k < 2; k++) {
      model_t *back = base_model(101);
      peft_config_alpha(peft, k ? (double)ALPHA : (double)ALPHA / sqrt((double)R), "[\"c_attn\"]",
                        "\"use_rslora\": true");
      cr_assert_eq(model_load_peft_adapters(back, peft, &err), 0, "rsLoRA: %s", err.msg);
      logits_of(back, lb);
      int same = memcmp(la, lb, sizeof la) == 0;
      cr_expect_eq(same, !k, "rsLoRA, lora_alpha %g: the logits %s the policy's",
                   k ? (double)ALPHA : (double)ALPHA / sqrt((double)R),
                   same ? "equal" : "differ from");
      model_free(back);
    }
    model_free(m);
  }
  struct {
    const char *tm, *extra, *msg;
  } bad[] = {
      {"[\"h.0.attn.c_attn\"]", NULL, "some layers only"},
      {"[\"c_attn\"]", "\"use_dora\": true", "use_dora is set"},
      {"[\"c_attn\", \"c_fc\"]", NULL, "no tensor base_model.model.transformer.h.0.mlp.c_fc"},
      {"[\"nothing\"]", NULL, "match none"},
      {"[\"c_attn\"]", "\"bias\": \"all\"", "bias \"all\""},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    peft_config(peft, bad[i].tm, bad[i].extra);
    model_t *back = base_model(101);
    cr_expect_eq(model_load_peft_adapters(back, peft, &err), DFPO_EDATA, "%s %s", bad[i].tm,
                 bad[i].extra ? bad[i].extra : "");
    cr_expect(strstr(err.msg, bad[i].msg), "%s %s: %s", bad[i].tm, bad[i].extra ? bad[i].extra : "",
              err.msg);
    model_free(back);
  }
  /* a file with more adapters than its config names */
  model_t *m = base_model(101), *back = base_model(101);
  add_lora(m, NULL, 110);
  cr_assert_eq(model_export_adapters(m, peft, &err), 0, "%s", err.msg);
  peft_config(peft, "[\"c_attn\"]", NULL);
  cr_expect_eq(model_load_peft_adapters(back, peft, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "does not name"), "%s", err.msg);
  model_free(back);
  model_free(m);
  back = base_model(101);
  cr_expect_eq(model_load_peft_adapters(back, dir, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "adapter_config.json"), "%s", err.msg);
  model_free(back);
  ts_rmtree(dir);
}
