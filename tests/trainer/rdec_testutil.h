/* Helpers shared by the rotary decoders' tests (tests/trainer/test_rdec*.c,
 * test_head_from.c). Prefix: rt_. */
#ifndef DFPO_TESTS_TRAINER_RDEC_TESTUTIL_H
#define DFPO_TESTS_TRAINER_RDEC_TESTUTIL_H

#include "common/common.h"
#include "trainer/model.h"
#include "trainer/rdec.h"

#include <criterion/criterion.h>

/* A tiny model of the family (vocabulary V, width 16, 2 layers, 4 heads of
 * 4, Llama's grouped into 2 key/value heads, MLP 32, 32 positions): GPT-J
 * parallel with one shared LayerNorm and an untied head with a bias,
 * GPT-NeoX with biases everywhere and an untied head, Llama RMSNorm,
 * SwiGLU and tied. */
static inline rdec_config rt_tiny(int family, int V) {
  rdec_config c = {.family = family,
                   .vocab_size = V,
                   .n_embd = 16,
                   .n_layer = 2,
                   .n_head = 4,
                   .n_kv_head = family == RDEC_LLAMA ? 2 : 4,
                   .head_dim = 4,
                   .d_ff = 32,
                   .n_ctx = 32,
                   .rot = family == RDEC_LLAMA ? 4 : 2,
                   .rope_base = 10000.0f,
                   .eps = 1e-5f};
  if (family == RDEC_LLAMA) {
    c.rmsnorm = 1, c.act = RDEC_ACT_SWIGLU, c.tied = 1;
  } else if (family == RDEC_GPTJ) {
    c.interleaved = 1, c.parallel = 1, c.shared_ln = 1, c.act = RDEC_ACT_GELU_TANH;
    c.mlp_bias = 1, c.head_bias = 1;
  } else {
    c.act = RDEC_ACT_GELU_ERF, c.bias = c.mlp_bias = 1;
  }
  return c;
}

/* rt_tiny's model with random weights far from the init's 0.02 (each
 * parameter plus a normal of sd `sd`, stream (seed + 7, 3)), so that every
 * term matters. The caller frees it. */
static inline model_t *rt_perturbed(int family, int V, uint64_t seed, float sd) {
  rdec_config c = rt_tiny(family, V);
  dfpo_err err;
  dfpo_err_clear(&err);
  model_t *m;
  cr_assert_eq(rdec_new(&m, &c, &err), DFPO_OK, "%s", err.msg);
  model_init_random(m, seed);
  dfpo_rng r;
  dfpo_rng_init(&r, seed + 7, 3);
  for (int i = 0; i < model_num_tensors(m); i++) {
    model_tensor t;
    cr_assert_eq(model_tensor_at(m, i, &t, &err), DFPO_OK);
    for (int k = 0; k < t.rows * t.cols; k++)
      t.param[k] += sd * (float)dfpo_rng_normal(&r);
  }
  return m;
}

#endif
