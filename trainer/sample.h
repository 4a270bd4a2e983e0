/* trainer/sample.h: sampling from any model_t (prefix smp_): the settings,
 * the per-step mask and allowed-set callbacks, one-token sampling and
 * batched generation over model_decode_begin/model_decode_step. Depends on
 * trainer/model.h. Output arrays are the caller's. */
#ifndef DFPO_TRAINER_SAMPLE_H
#define DFPO_TRAINER_SAMPLE_H

#include "trainer/model.h"

/* A per-step logit mask: may set entries of logits[B, V] (after temperature)
 * to -INFINITY to forbid tokens. seqs is the output array [B, max_new]:
 * seqs[b * max_new + i] for i < step are the tokens drawn so far (-1 after a
 * row ended). A callback that needs another model's distribution at the same
 * step (the reference policy, NLPO's mask model) keeps that model in ctx,
 * starts it with model_decode_begin on the same prompts and feeds it the
 * previous step's tokens with model_decode_step. Returns 0, or nonzero to
 * stop generation with an error. */
typedef int (*smp_mask_fn)(void *ctx, int step, int B, int V, const int *seqs, float *logits);
/* A per-step allowed set that does not need the policy's own logits (NLPO's
 * mask model): fills allow[B, V] (1 = may be drawn, 0 = banned; seqs as
 * for smp_mask_fn). The set goes to the backend with the sampler, so the
 * logits stay where they are (on CUDA: no [B, V] logits download per step,
 * as with smp_mask_fn). Returns 0, or nonzero to stop with an error. */
typedef int (*smp_allow_fn)(void *ctx, int step, int B, int V, const int *seqs,
                            unsigned char *allow);

typedef struct smp_settings {
  int max_new, min_new; /* new tokens: at most, and before end-of-text may be drawn */
  float temperature;    /* 0: greedy */
  int top_k;            /* 0: off */
  float top_p;          /* 1: off */
  int eos;              /* end-of-text id (50256 for GPT-2); < 0: none */
  smp_mask_fn mask;     /* may be NULL; with it the logits come to the host each step */
  void *mask_ctx;
  smp_allow_fn allow; /* may be NULL; applied after mask */
  void *allow_ctx;
} smp_settings;
/* 48 new tokens, temperature 1, no top-k or top-p, eos 50256, no masks. */
smp_settings smp_settings_default(void);

/* Draws one token from logits[V] (modified in place) under s; uses one
 * uniform draw from rng (none when greedy). *logp (optional) receives the
 * token's log-probability under the distribution it was drawn from (after
 * temperature, masks, top-k and top-p). */
int smp_sample_token(float *logits, int V, const smp_settings *s, dfpo_rng *rng, float *logp);

/* Batched sampling from the prompts[B, T] (left-padded by kstart, NULL:
 * none): out[B, max_new] (-1 after a row ended), lens[B] new tokens per row
 * (the end-of-text token included when drawn), logps[B, max_new]
 * (optional) as in smp_sample_token. Each step draws one uniform per live
 * row (in row order) on the host and samples with the backend's sample op
 * where the logits are (on the device with CUDA, unless an smp_mask_fn
 * needs them on the host; then the CPU's op samples there): the same tokens
 * on every backend from the same logits and seed. The model's last logits
 * are spent (model_lm_logits gives NULL after). */
int smp_generate(model_t *m, const int *prompts, const int *kstart, int B, int T,
                 const smp_settings *s, dfpo_rng *rng, int *out, int *lens, float *logps,
                 dfpo_err *err);

#endif
