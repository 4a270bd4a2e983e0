/* What the architectures with LoRA adapters share (trainer/model_internal.h):
 * the target lists, the checks of a config, the initialisation of A and the
 * low-rank products of the forward and backward passes. */
#include "trainer/model_internal.h"

#include <math.h>
#include <string.h>

int model_lora_targets(const char *list, const char *const *names, int n, const char *arch,
                       unsigned *bits, dfpo_err *err) {
  *bits = 0;
  if (!list || !*list) {
    *bits = n >= 32 ? ~0u : (1u << n) - 1;
    return DFPO_OK;
  }
  const char *p = list;
  while (*p) {
    const char *e = strchr(p, ',');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    int k = 0;
    while (k < n && !(strlen(names[k]) == len && strncmp(p, names[k], len) == 0))
      k++;
    if (k == n) {
      char known[512];
      model_lora_target_list(n >= 32 ? ~0u : (1u << n) - 1, names, n, known, sizeof known);
      return dfpo_err_set(err, DFPO_EUSAGE, "LoRA target '%.*s' unknown (%s's: %s)", (int)len, p,
                          arch, known);
    }
    *bits |= 1u << k;
    p += len + (e ? 1 : 0);
  }
  return DFPO_OK;
}

void model_lora_target_list(unsigned bits, const char *const *names, int n, char *buf, size_t len) {
  size_t at = 0;
  buf[0] = '\0';
  for (int k = 0; k < n && at < len; k++)
    if ((bits >> k) & 1)
      at += (size_t)snprintf(buf + at, len - at, "%s%s", at ? "," : "", names[k]);
}

int model_lora_check(const model_lora_config *c, int max_rank, const char *arch, dfpo_err *err) {
  if (c->rank < 1 || c->rank > max_rank)
    return dfpo_err_set(err, DFPO_EUSAGE, "%s: LoRA rank %d outside [1, n_embd %d]", arch, c->rank,
                        max_rank);
  if (!(c->alpha > 0.0f) || !isfinite(c->alpha))
    return dfpo_err_set(err, DFPO_EUSAGE, "%s: LoRA alpha %g must be positive", arch,
                        (double)c->alpha);
  return DFPO_OK;
}

void model_lora_init_a(float *a, int r, int nin, dfpo_rng *rng) {
  double bound = 1.0 / sqrt((double)nin);
  for (size_t j = 0; j < (size_t)r * nin; j++)
    a[j] = (float)((2.0 * dfpo_rng_uniform(rng) - 1.0) * bound);
}

void model_lora_fwd(const ops_backend *o, float *out, const float *x, const float *A,
                    const float *Bt, float *u, int rows, int nin, int nout, int r, float s) {
  o->matmul_fwd(u, x, A, NULL, rows, nin, r);
  o->scale(u, s, (size_t)rows * r);
  /* out[rows, nout] += u Bt: the accumulating product of matmul_bwd */
  o->matmul_bwd(out, NULL, NULL, u, u, Bt, rows, nout, r);
}

void model_lora_bwd(const ops_backend *o, float *dx, float *dA, float *dBt, float *du,
                    const float *dout, const float *x, const float *u, const float *A,
                    const float *Bt, int rows, int nin, int nout, int r, float s) {
  if (dBt)
    o->matmul_bwd(NULL, dBt, NULL, u, dout, Bt, rows, nout, r);
  o->matmul_fwd(du, dout, Bt, NULL, rows, nout, r);
  o->scale(du, s, (size_t)rows * r);
  o->matmul_bwd(dx, dA, NULL, du, x, A, rows, nin, r);
}
