/* Helpers of the tests that train an architecture through the model
 * interface (tests/trainer/test_t5.c, tests/trainer/test_rdec.c): flat
 * arrays from a PyTorch reference's JSON arrays (of numbers, or of rows of
 * numbers, concatenated; the caller's, free), a tensor's error relative to
 * its largest reference entry, every tensor's gradient against a
 * reference model holding the gradients as its parameters, and rl_iterate
 * over a policy on a toy copying task, greedy KV-cache decoding of two
 * fixed prompts, and the check of a model kept in 16 bits. Criterion tests
 * only. */
#ifndef DFPO_TESTS_TRAIN_TESTUTIL_H
#define DFPO_TESTS_TRAIN_TESTUTIL_H

#include "trainer/model.h"
#include "trainer/ops.h"
#include "trainer/rl.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static inline int *json_ints(const cJSON *a, int *n) {
  int k = cJSON_GetArraySize(a), total = 0;
  for (int i = 0; i < k; i++) {
    const cJSON *row = cJSON_GetArrayItem(a, i);
    total += cJSON_IsArray(row) ? cJSON_GetArraySize(row) : 1;
  }
  int *v = malloc((size_t)(total ? total : 1) * sizeof *v), w = 0;
  for (int i = 0; i < k; i++) {
    const cJSON *row = cJSON_GetArrayItem(a, i), *x;
    if (cJSON_IsArray(row)) {
      cJSON_ArrayForEach(x, row) v[w++] = x->valueint;
    } else {
      v[w++] = row->valueint;
    }
  }
  *n = total;
  return v;
}
static inline float *json_floats(const cJSON *a, int *n) {
  int k = cJSON_GetArraySize(a), total = 0;
  for (int i = 0; i < k; i++) {
    const cJSON *row = cJSON_GetArrayItem(a, i);
    total += cJSON_IsArray(row) ? cJSON_GetArraySize(row) : 1;
  }
  float *v = malloc((size_t)(total ? total : 1) * sizeof *v);
  int w = 0;
  for (int i = 0; i < k; i++) {
    const cJSON *row = cJSON_GetArrayItem(a, i), *x;
    if (cJSON_IsArray(row)) {
      cJSON_ArrayForEach(x, row) v[w++] = (float)x->valuedouble;
    } else {
      v[w++] = (float)row->valuedouble;
    }
  }
  *n = total;
  return v;
}

/* The largest |got - want| of a tensor over its largest |want| (absolute
 * when the reference is all zero). */
static inline double tensor_err(const float *got, const float *want, size_t n) {
  double md = 0, mx = 0;
  for (size_t i = 0; i < n; i++) {
    md = fmax(md, fabs((double)got[i] - want[i]));
    mx = fmax(mx, fabs((double)want[i]));
  }
  return mx > 0 ? md / mx : md;
}

/* Every tensor's gradient of m against the same tensor of ref (a model of
 * the same config whose parameters are the reference's gradients), each
 * within tol of the tensor's largest reference entry; the tensors m has
 * beyond ref's (a value head) are skipped. Returns the largest error. */
static inline double check_grads(model_t *m, model_t *ref, double tol, const char *what) {
  double worst = 0;
  int n = model_num_tensors(ref);
  for (int i = 0; i < n; i++) {
    model_tensor g, r;
    dfpo_err err;
    cr_assert_eq(model_tensor_at(m, i, &g, &err), DFPO_OK, "%s", err.msg);
    cr_assert_eq(model_tensor_at(ref, i, &r, &err), DFPO_OK, "%s", err.msg);
    cr_assert_str_eq(g.name, r.name);
    cr_assert_not_null(g.grad, "%s: no gradient", g.name);
    double e = tensor_err(g.grad, r.param, (size_t)g.rows * g.cols);
    cr_expect_leq(e, tol, "%s: %s gradient off by %.3g of its largest entry", what, g.name, e);
    worst = fmax(worst, e);
  }
  return worst;
}

/* The copying task's reward: the share of a row's new tokens equal to its
 * prompt's first real token, which only a policy that reads its prompt (an
 * encoder-decoder: through the cross-attention) can raise. */
static inline int copy_first_reward(void *ctx, int nb, const int *prompts, const int *kstart,
                                    int Tp, const int *cont, const int *lens, int max_new,
                                    float *rewards, dfpo_err *err) {
  (void)ctx, (void)err;
  for (int b = 0; b < nb; b++) {
    int want = prompts[(size_t)b * Tp + (kstart ? kstart[b] : 0)], good = 0;
    for (int i = 0; i < lens[b]; i++)
      good += cont[(size_t)b * max_new + i] == want;
    rewards[b] = lens[b] ? (float)good / lens[b] : 0;
  }
  return 0;
}

/* rl_iterate with algo over policy (vocabulary 8 or more; its parameters
 * drawn), a clone as the reference and a value model (model_new_like + the
 * policy's trunk) on the copying task: 16 prompts of 3 tokens below 8, 5
 * new tokens, lr 1e-2, fixed beta 0.01, 4 epochs of minibatches of 8, seed
 * 5. Frees policy. *r0 receives the first iteration's mean reward, *r1 the
 * mean of the last 5, *blind the best a policy that ignores the prompt can
 * have (the share of the most frequent first token). */
static inline void rl_copy_task(model_t *policy, int algo, int iters, double *r0, double *r1,
                                double *blind) {
  dfpo_err err;
  dfpo_err_clear(&err);
  model_t *ref, *value;
  cr_assert_eq(model_clone(&ref, policy, &err), DFPO_OK, "%s", err.msg);
  cr_assert_eq(model_new_like(&value, policy, MODEL_HEAD_VALUE, 0, &err), DFPO_OK, "%s", err.msg);
  cr_assert_eq(model_copy_shared_params(value, policy, NULL, &err), DFPO_OK, "%s", err.msg);
  rl_config cfg = rl_config_default();
  cfg.algo = algo;
  cfg.lr = 1e-2f;
  cfg.kl_adaptive = 0;
  cfg.beta = 0.01f;
  cfg.epochs = 4;
  cfg.minibatch = 8;
  cfg.sampling.max_new = cfg.sampling.min_new = 5;
  cfg.sampling.eos = -1;
  rl_trainer *t;
  cr_assert_eq(rl_trainer_new(&t, policy, ref, value, &cfg, 5, &err), DFPO_OK, "%s", err.msg);
  enum { NB = 16, TP = 3 };
  int prompts[NB * TP];
  dfpo_rng r;
  dfpo_rng_init(&r, 9, 1);
  for (int i = 0; i < NB * TP; i++)
    prompts[i] = (int)dfpo_rng_below(&r, 8);
  int count[8] = {0};
  *blind = 0;
  for (int b = 0; b < NB; b++)
    if (++count[prompts[b * TP]] > *blind * NB)
      *blind = (double)count[prompts[b * TP]] / NB;
  *r0 = *r1 = 0;
  for (int it = 0; it < iters; it++) {
    rl_stats st;
    cr_assert_eq(rl_iterate(t, prompts, NULL, NB, TP, copy_first_reward, NULL, &st, &err), DFPO_OK,
                 "%s", err.msg);
    if (it == 0)
      *r0 = st.reward;
    if (it >= iters - 5)
      *r1 += st.reward / 5;
  }
  rl_trainer_free(t);
  model_free(policy), model_free(ref), model_free(value);
}

/* steps greedy tokens (the largest logit, the first of equals) of two
 * left-padded prompts of 4 positions (5 9 17 3, and 40 41 42 after one
 * pad) into toks[2 * steps], by KV-cache decoding (model_decode_begin,
 * model_decode_step) over a vocabulary of V. */
static inline void greedy_tokens(model_t *m, int V, int steps, int *toks) {
  dfpo_err err;
  dfpo_err_clear(&err);
  int prompts[2 * 4] = {5, 9, 17, 3, 0, 40, 41, 42}, ks[2] = {0, 1};
  float *buf = malloc(2 * (size_t)V * sizeof(float));
  cr_assert_not_null(buf);
  const float *z = model_decode_begin(m, prompts, ks, 2, 4, steps + 4, &err);
  cr_assert_not_null(z, "%s", err.msg);
  for (int s = 0; s < steps; s++) {
    const float *h = model_host_view(m, z, 2 * (size_t)V, buf);
    int next[2];
    for (int b = 0; b < 2; b++) {
      int best = 0;
      for (int v = 1; v < V; v++)
        if (h[b * V + v] > h[b * V + best])
          best = v;
      next[b] = toks[b * steps + s] = best;
    }
    if (s < steps - 1)
      cr_assert_not_null(z = model_decode_step(m, next, &err), "%s", err.msg);
  }
  free(buf);
}

/* The check of a model kept in 16 bits that GPT-2's and the rotary
 * decoders' tests make: h, a copy of a with weights in dtype, and u, the
 * fp32 engine over the same rounded weights widened back, score 24 seeded
 * tokens below V (stream (11, 3), into seq[24]); h at every CPU width
 * (512, 256, 0) within 1e-5 (relative) of u, and apart from a by more
 * than that (the rounding shows); then `steps` greedy tokens of h equal
 * u's (greedy_tokens). `what` names the case. Returns h's NLL (the last
 * width's) and a's in *fp32. */
static inline double half_matches_widened(model_t *a, int dtype, int V, int steps, int *seq,
                                          double *fp32, const char *what) {
  dfpo_err err;
  dfpo_err_clear(&err);
  model_t *h = NULL, *u = NULL;
  cr_assert_eq(model_clone(&h, a, &err), 0, "%s", err.msg);
  cr_assert_eq(model_clone(&u, a, &err), 0, "%s", err.msg);
  cr_assert_eq(model_set_weight_dtype(h, (ops_dtype)dtype, &err), 0, "%s", err.msg);
  cr_expect_eq((int)model_weight_dtype(h), dtype);
  cr_assert_eq(model_set_weight_dtype(u, (ops_dtype)dtype, &err), 0, "%s", err.msg);
  cr_assert_eq(model_set_weight_dtype(u, OPS_DTYPE_F32, &err), 0, "%s", err.msg);
  cr_expect_eq(model_weight_dtype(u), OPS_DTYPE_F32);
  dfpo_rng r;
  dfpo_rng_init(&r, 11, 3);
  for (int i = 0; i < 24; i++)
    seq[i] = (int)dfpo_rng_below(&r, (uint32_t)V);
  double nh = 0, nu, na;
  size_t sc;
  cr_assert_eq(model_score_tokens(u, seq, 24, &nu, &sc, &err), 0, "%s", err.msg);
  cr_assert_eq(model_score_tokens(a, seq, 24, &na, &sc, &err), 0, "%s", err.msg);
  int isa0 = ops_cpu_isa();
  for (int isa = 512; isa >= 0; isa -= 256) {
    ops_cpu_set_isa(isa);
    cr_assert_eq(model_score_tokens(h, seq, 24, &nh, &sc, &err), 0, "%s", err.msg);
    cr_expect_eq(sc, 23u);
    cr_expect(fabs(nh - nu) <= 1e-5 * fabs(nu), "%s isa %d: NLL %.9g, fp32 over the widened %.9g",
              what, ops_cpu_isa(), nh, nu);
  }
  ops_cpu_set_isa(isa0);
  cr_log_info("%s: NLL %.9g (fp32 over the widened weights %.9g, the fp32 model %.9g)", what, nh,
              nu, na);
  cr_expect(fabs(nh - na) > 1e-5 * fabs(na), "%s: no different from fp32", what);
  int *th = malloc(sizeof(int) * 4 * (size_t)steps), *tu = th + 2 * steps;
  cr_assert_not_null(th);
  greedy_tokens(h, V, steps, th);
  greedy_tokens(u, V, steps, tu);
  for (int i = 0; i < 2 * steps; i++)
    cr_expect_eq(th[i], tu[i], "%s: greedy token %d: %d, fp32 over the widened %d", what, i, th[i],
                 tu[i]);
  free(th);
  model_free(h);
  model_free(u);
  *fp32 = na;
  return nh;
}

/* Every tensor of a and b stored alike (fp32 or 16 bits) and bit for bit
 * the same, the arenas equal, and the NLL of 12 fixed tokens below 64
 * equal; returns how many tensors are in 16 bits. `what` names the case. */
static inline int expect_same_weights(model_t *a, model_t *b, const char *what) {
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_expect_eq(model_arena_bytes(a), model_arena_bytes(b), "%s: %zu bytes, %zu", what,
               model_arena_bytes(a), model_arena_bytes(b));
  cr_assert_eq(model_num_tensors(a), model_num_tensors(b), "%s", what);
  int halves = 0;
  for (int i = 0; i < model_num_tensors(a); i++) {
    model_tensor x, y;
    cr_assert_eq(model_tensor_at(a, i, &x, &err), 0, "%s", err.msg);
    cr_assert_eq(model_tensor_at(b, i, &y, &err), 0, "%s", err.msg);
    size_t n = (size_t)x.rows * x.cols;
    cr_assert_eq(!x.param16, !y.param16, "%s: %s kept otherwise", what, x.name);
    halves += x.param16 != NULL;
    cr_expect_eq(x.param16 ? memcmp(x.param16, y.param16, n * 2) : memcmp(x.param, y.param, n * 4),
                 0, "%s: %s differs", what, x.name);
  }
  int seq[12] = {3, 9, 27, 17, 44, 5, 60, 2, 31, 8, 12, 50};
  double na, nb;
  size_t sc;
  cr_assert_eq(model_score_tokens(a, seq, 12, &na, &sc, &err), 0, "%s", err.msg);
  cr_assert_eq(model_score_tokens(b, seq, 12, &nb, &sc, &err), 0, "%s", err.msg);
  cr_expect_eq(na, nb, "%s: NLL %.17g and %.17g", what, na, nb);
  return halves;
}

/* model_add_value_head in place against the value model made the long way
 * (model_new_like, model_init_random(seed), model_copy_shared_params from
 * base), both in dtype (f32, or a 16-bit trunk: the in-place model gets
 * the head after its conversion, the other is converted whole): every
 * tensor's bits (fp32 or 16-bit), the arena, and the values and logits of
 * a forward pass over four tokens, bit for bit. base is left as it was. */
static inline void expect_value_head_in_place(model_t *base, uint64_t seed, int dtype,
                                              const char *what) {
  dfpo_err err;
  dfpo_err_clear(&err);
  model_t *a = NULL, *v = NULL;
  cr_assert_eq(model_clone(&a, base, &err), 0, "%s", err.msg);
  cr_assert_eq(model_set_weight_dtype(a, (ops_dtype)dtype, &err), 0, "%s", err.msg);
  cr_assert_eq(model_add_value_head(a, seed, &err), 0, "%s: %s", what, err.msg);
  cr_expect_eq(model_add_value_head(a, seed, &err), DFPO_EUSAGE, "%s: a second head", what);
  cr_assert_eq(model_new_like(&v, base, MODEL_HEAD_VALUE, 0, &err), 0, "%s", err.msg);
  model_init_random(v, seed);
  cr_assert_eq(model_copy_shared_params(v, base, NULL, &err), 0, "%s", err.msg);
  cr_assert_eq(model_set_weight_dtype(v, (ops_dtype)dtype, &err), 0, "%s", err.msg);
  cr_expect_eq(model_get_config(a)->head, MODEL_HEAD_VALUE, "%s", what);
  cr_expect_eq(model_arena_bytes(a), model_arena_bytes(v), "%s: %zu bytes, the long way %zu", what,
               model_arena_bytes(a), model_arena_bytes(v));
  cr_assert_eq(model_num_tensors(a), model_num_tensors(v), "%s", what);
  for (int i = 0; i < model_num_tensors(a); i++) {
    model_tensor x, y;
    cr_assert_eq(model_tensor_at(a, i, &x, &err), 0, "%s", err.msg);
    cr_assert_eq(model_tensor_at(v, i, &y, &err), 0, "%s", err.msg);
    cr_expect_str_eq(x.name, y.name, "%s", what);
    size_t n = (size_t)x.rows * x.cols;
    cr_assert_eq(!x.param16, !y.param16, "%s: %s kept otherwise", what, x.name);
    cr_expect_eq(x.param16 ? memcmp(x.param16, y.param16, n * 2) : memcmp(x.param, y.param, n * 4),
                 0, "%s: %s differs", what, x.name);
  }
  int tok[4] = {1, 2, 3, 4};
  float va[4], vv[4];
  model_t *ms[2] = {a, v};
  float *vals[2] = {va, vv};
  for (int k = 0; k < 2; k++) {
    cr_assert_eq(model_forward_rows(ms[k], tok, NULL, 1, 4, &err), 0, "%s", err.msg);
    cr_assert_eq(model_value_forward(ms[k], vals[k], &err), 0, "%s", err.msg);
  }
  cr_expect_eq(memcmp(va, vv, sizeof va), 0, "%s: the values differ (%g, the long way %g)", what,
               (double)va[0], (double)vv[0]);
  model_free(a);
  model_free(v);
}

#endif