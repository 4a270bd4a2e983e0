/* Sampling from any model_t: one token from a logit row, and batched
 * generation over model_decode_begin/model_decode_step with the backend's
 * sample op (temperature, logit masks, allowed sets, top-k, top-p, minimum
 * length). */
#include "trainer/sample.h"
#include "trainer/model_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

smp_settings smp_settings_default(void) {
  smp_settings s;
  memset(&s, 0, sizeof s);
  s.max_new = 48;
  s.temperature = 1.0f;
  s.top_p = 1.0f;
  s.eos = 50256;
  return s;
}

int smp_sample_token(float *logits, int V, const smp_settings *s, dfpo_rng *rng, float *logp) {
  int greedy = s->temperature <= 0.0f;
  if (!greedy && s->temperature != 1.0f)
    for (int i = 0; i < V; i++)
      logits[i] /= s->temperature;
  double u = greedy ? 0.0 : dfpo_rng_uniform(rng);
  return ops_sample_row(logits, V, s->top_k, s->top_p, greedy, u, logp);
}

int smp_generate(model_t *m, const int *prompts, const int *kstart, int B, int T,
                 const smp_settings *s, dfpo_rng *rng, int *out, int *lens, float *logps,
                 dfpo_err *err) {
  int V = m->cfg.vocab_size, N = s->max_new;
  if (N < 1)
    return dfpo_err_set(err, DFPO_EUSAGE, "smp_generate: max_new must be at least 1");
  if (s->eos >= V)
    return dfpo_err_set(err, DFPO_EUSAGE, "smp_generate: eos %d outside the vocabulary", s->eos);
  const float *logits =
      model_decode_begin(m, prompts, kstart, B, T, T + N - 1 > T ? T + N - 1 : T, err);
  if (!logits)
    return err ? err->code : DFPO_ERUNTIME;
  /* Where the sampler runs: the model's backend, on its logits in place;
   * with a host mask callback, the CPU's op on a host copy. */
  const ops_backend *o = m->ops;
  int on_host = s->mask != NULL;
  /* the backend sampler's inputs and outputs: tokens [B], their
   * log-probabilities [B], uniforms [B], allowed sets [B, V] */
  size_t dev_bytes = (size_t)B * (sizeof(int) + sizeof(float) + sizeof(double)) +
                     (s->allow ? (size_t)B * V : 0) + 8; /* + 8: never 0 */
  char *dev = on_host ? NULL : o->alloc(dev_bytes);
  double *d_u = dev ? (double *)dev : NULL;
  int *d_tok = dev ? (int *)(dev + (size_t)B * sizeof(double)) : NULL;
  float *d_lp = dev ? (float *)(dev + (size_t)B * (sizeof(double) + sizeof(int))) : NULL;
  unsigned char *d_allow =
      dev && s->allow
          ? (unsigned char *)(dev + (size_t)B * (sizeof(double) + sizeof(int) + sizeof(float)))
          : NULL;
  float *z = on_host ? malloc((size_t)B * V * sizeof(float)) : NULL;
  unsigned char *allow = s->allow ? malloc((size_t)B * V) : NULL;
  int *done = calloc((size_t)B, sizeof(int)), *next = calloc((size_t)B, sizeof(int));
  double *u = calloc((size_t)B, sizeof(double));
  int *tok = calloc((size_t)B, sizeof(int));
  float *lp = calloc((size_t)B, sizeof(float));
  int rc = DFPO_OK;
  if ((on_host && !z) || (!on_host && !dev) || (s->allow && !allow) || !done || !next || !u ||
      !tok || !lp) {
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    goto out;
  }
  for (int i = 0; i < B * N; i++) {
    out[i] = -1;
    if (logps)
      logps[i] = 0.0f;
  }
  for (int b = 0; b < B; b++)
    lens[b] = 0;
  int greedy = s->temperature <= 0.0f;
  for (int step = 0; step < N; step++) {
    float temperature = s->temperature;
    if (on_host) {
      o->download(z, logits, (size_t)B * V * sizeof(float));
      if (!greedy && s->temperature != 1.0f)
        for (size_t i = 0; i < (size_t)B * V; i++)
          z[i] /= s->temperature;
      temperature = greedy ? 0.0f : 1.0f; /* applied */
      if (s->mask(s->mask_ctx, step, B, V, out, z) != 0) {
        rc = dfpo_err_set(err, DFPO_ERUNTIME, "smp_generate: the logit mask failed at step %d",
                          step);
        goto out;
      }
    }
    if (s->allow && s->allow(s->allow_ctx, step, B, V, out, allow) != 0) {
      rc =
          dfpo_err_set(err, DFPO_ERUNTIME, "smp_generate: the allowed set failed at step %d", step);
      goto out;
    }
    /* one uniform per live row, drawn in row order (-1: the row ended) */
    for (int b = 0; b < B; b++)
      u[b] = done[b] ? -1.0 : greedy ? 0.0 : dfpo_rng_uniform(rng);
    int ban = step < s->min_new ? s->eos : -1;
    if (on_host) {
      ops_cpu.sample(tok, lp, z, allow, u, B, V, temperature, s->top_k, s->top_p, ban);
    } else {
      o->upload(d_u, u, (size_t)B * sizeof(double));
      if (allow)
        o->upload(d_allow, allow, (size_t)B * V);
      /* in place on the model's decoding logits, which the model hands out
       * read-only; spending them is this sampler's privilege
       * (model_internal.h) */
      o->sample(d_tok, d_lp, (float *)logits, allow ? d_allow : NULL, d_u, B, V, temperature,
                s->top_k, s->top_p, ban);
      o->download(tok, d_tok, (size_t)B * sizeof(int));
      o->download(lp, d_lp, (size_t)B * sizeof(float));
    }
    int live = 0;
    for (int b = 0; b < B; b++) {
      if (done[b]) {
        next[b] = s->eos >= 0 ? s->eos : 0;
        continue;
      }
      if (tok[b] < 0) {
        rc = dfpo_err_set(err, DFPO_EDATA,
                          "smp_generate: every token of row %d is masked at step %d", b, step);
        goto out;
      }
      out[(size_t)b * N + step] = tok[b];
      if (logps)
        logps[(size_t)b * N + step] = lp[b];
      lens[b]++;
      next[b] = tok[b];
      if (tok[b] == s->eos)
        done[b] = 1;
      else
        live++;
    }
    if (!live || step == N - 1)
      break;
    if (!(logits = model_decode_step(m, next, err))) {
      rc = err ? err->code : DFPO_ERUNTIME;
      goto out;
    }
  }
out:
  m->last_logits = NULL; /* spent by the in-place sampler (documented so in every case) */
  if (dev)
    o->free(dev);
  free(z);
  free(allow);
  free(done);
  free(next);
  free(u);
  free(tok);
  free(lp);
  return rc;
}
