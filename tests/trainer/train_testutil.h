/* Helpers of the tests that train an architecture through the model
 * interface (tests/trainer/test_t5.c, tests/trainer/test_rdec.c): flat
 * arrays from a PyTorch reference's JSON arrays (of numbers, or of rows of
 * numbers, concatenated; the caller's, free), a tensor's error relative to
 * its largest reference entry, every tensor's gradient against a
 * reference model holding the gradients as its parameters, and rl_iterate
 * over a policy on a toy copying task. Criterion tests only. */
#ifndef DFPO_TESTS_TRAIN_TESTUTIL_H
#define DFPO_TESTS_TRAIN_TESTUTIL_H

#include "trainer/model.h"
#include "trainer/rl.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

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

#endif
