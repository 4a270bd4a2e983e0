/* Helpers shared by the GPT-2 engine tests (tests/trainer/test_gpt2_*.c and
 * test_ops_*.c). Prefix: tu_. */
#ifndef DFPO_TESTS_TRAINER_GPT2_TESTUTIL_H
#define DFPO_TESTS_TRAINER_GPT2_TESTUTIL_H

#include "trainer/gpt2.h"
#include "trainer/model.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A tiny config: V vocabulary, L layers, NH heads, C wide, P positions. */
static inline gpt2_config tu_config(int V, int L, int NH, int C, int P) {
  gpt2_config c = {L, NH, C, V, P, MODEL_HEAD_NONE, 0};
  return c;
}

static inline model_t *tu_model(const gpt2_config *cfg, uint64_t seed) {
  model_t *m = NULL;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(gpt2_new(&m, cfg, &err), 0, "%s", err.msg);
  model_init_random(m, seed);
  return m;
}

/* Every parameter of a and b (GPT-2s of one shape) equal, bit for bit. */
static inline void tu_same_params(const model_t *a, const model_t *b) {
  cr_assert_eq(model_num_params(a), model_num_params(b));
  int nt = gpt2_num_tensors(a);
  for (int t = 0; t < nt; t++) {
    const char *na, *nb;
    int r, c, r2, c2;
    float *pa, *pb;
    gpt2_tensor_info(a, t, &na, &r, &c, &pa, NULL);
    gpt2_tensor_info(b, t, &nb, &r2, &c2, &pb, NULL);
    cr_expect_str_eq(na, nb);
    cr_assert(r == r2 && c == c2, "%s", na);
    cr_expect_eq(memcmp(pa, pb, sizeof(float) * r * c), 0, "tensor %s differs", na);
  }
}

/* Scales every parameter by s and adds noise to the LayerNorm and bias
 * parameters, so that finite differences see a model far from its
 * (degenerate) initial point. */
static inline void tu_perturb(model_t *m, uint64_t seed, float s) {
  dfpo_rng r;
  dfpo_rng_init(&r, seed, 77);
  int n = gpt2_num_tensors(m);
  for (int i = 0; i < n; i++) {
    int rows, cols;
    float *p;
    gpt2_tensor_info(m, i, NULL, &rows, &cols, &p, NULL);
    for (int k = 0; k < rows * cols; k++)
      p[k] = p[k] * s + 0.1f * (float)dfpo_rng_normal(&r);
  }
}

/* An rl_reward_fn for tiny RL environments: the share of the generated
 * tokens equal to *(const int *)ctx (0 for an empty continuation). */
static inline int tu_share_of(void *ctx, int nb, const int *prompts, const int *kstart, int Tp,
                              const int *cont, const int *lens, int max_new, float *rewards,
                              dfpo_err *err) {
  (void)prompts, (void)kstart, (void)Tp, (void)err;
  int want = *(const int *)ctx;
  for (int b = 0; b < nb; b++) {
    int good = 0;
    for (int i = 0; i < lens[b]; i++)
      good += cont[(size_t)b * max_new + i] == want;
    rewards[b] = lens[b] ? (float)good / lens[b] : 0;
  }
  return 0;
}

/* Random tokens in [0, V). */
static inline void tu_tokens(int *t, size_t n, int V, uint64_t seed) {
  dfpo_rng r;
  dfpo_rng_init(&r, seed, 5);
  for (size_t i = 0; i < n; i++)
    t[i] = (int)dfpo_rng_below(&r, (uint32_t)V);
}

/* Loads path expecting failure; the message must contain each of the
 * NULL-terminated strings. */
static inline void tu_expect_load_fails(const char *path, const char *must1, const char *must2) {
  model_t *m = NULL;
  dfpo_err err;
  dfpo_err_clear(&err);
  int rc = model_load(&m, path, &err);
  cr_expect_eq(rc, DFPO_EDATA, "loading %s should fail with a data error (rc %d, %s)", path, rc,
               err.msg);
  cr_expect_null(m);
  if (must1)
    cr_expect(strstr(err.msg, must1) != NULL, "message lacks '%s': %s", must1, err.msg);
  if (must2)
    cr_expect(strstr(err.msg, must2) != NULL, "message lacks '%s': %s", must2, err.msg);
  model_free(m);
}

/* Begins a decoding of one row of two tokens (below vocab 3) on m, to be
 * left unfinished. */
static inline void tu_decode_begun(model_t *m) {
  dfpo_err err;
  dfpo_err_clear(&err);
  const int prompt[2] = {1, 2};
  cr_assert_not_null(model_decode_begin(m, prompt, NULL, 1, 2, 4, &err), "%s", err.msg);
}

/* After the parameters changed under it (model_load_into): the decoding
 * tu_decode_begun began is spent, a step refused. */
static inline void tu_decode_spent(model_t *m, const char *what) {
  dfpo_err err;
  dfpo_err_clear(&err);
  const int next = 0;
  cr_expect_null(model_decode_step(m, &next, &err), "%s: the old parameters' cache still decodes",
                 what);
  cr_expect_eq(err.code, DFPO_EUSAGE, "%s: %s", what, err.msg);
}

#endif
