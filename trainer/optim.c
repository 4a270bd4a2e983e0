/* AdamW and the learning-rate schedules over any model_t: the update runs
 * the backend's adamw op over the model's parameter tensors, so it needs
 * nothing of an architecture but its tensor list. */
#include "trainer/optim.h"
#include "trainer/model_internal.h"

#include <math.h>

opt_adamw opt_adamw_default(void) {
  opt_adamw a = {0.9f, 0.999f, 1e-8f, 0.01f, 0.0f};
  return a;
}

/* Runs of tensors that follow each other in memory and share the decay flag
 * (or, with by_decay 0, only follow each other) are handed to fn in one
 * call: fewer launches on a device, and the same elementwise result. */
typedef void (*run_fn)(const ops_backend *o, const model_tensor *first, size_t n, void *ctx);

static int for_runs(const model_t *m, int by_decay, run_fn fn, void *ctx, dfpo_err *err) {
  int nt = model_num_tensors(m), rc;
  model_tensor first, last, next;
  if (nt < 1)
    return DFPO_OK;
  if ((rc = model_tensor_at(m, 0, &first, err)))
    return rc;
  last = first;
  for (int i = 1; i <= nt; i++) {
    size_t n_last = (size_t)last.rows * last.cols;
    int joined = 0;
    if (i < nt) {
      if ((rc = model_tensor_at(m, i, &next, err)))
        return rc;
      joined = next.param == last.param + n_last && next.grad == last.grad + n_last &&
               next.m1 == last.m1 + n_last && next.m2 == last.m2 + n_last &&
               (!by_decay || next.decay == first.decay);
    }
    if (!joined) {
      fn(m->ops, &first, (size_t)(last.param + n_last - first.param), ctx);
      if (i < nt)
        first = next;
    }
    if (i < nt)
      last = next;
  }
  return DFPO_OK;
}

static void scale_run(const ops_backend *o, const model_tensor *t, size_t n, void *ctx) {
  o->scale(t->grad, *(const float *)ctx, n);
}

typedef struct adamw_ctx {
  const opt_adamw *opt;
  float lr;
  int step;
} adamw_ctx;

static void adamw_run(const ops_backend *o, const model_tensor *t, size_t n, void *ctx) {
  const adamw_ctx *c = ctx;
  o->adamw(t->param, t->grad, t->m1, t->m2, n, c->lr, c->opt->beta1, c->opt->beta2, c->opt->eps,
           t->decay ? c->opt->weight_decay : 0.0f, c->step);
}

int opt_adamw_step(model_t *m, const opt_adamw *opt, float lr, float *norm, dfpo_err *err) {
  int rc = model_ensure_train(m, err);
  if (rc)
    return rc;
  float n = model_grad_norm(m);
  if (norm)
    *norm = n;
  if (!isfinite(n))
    return dfpo_err_set(err, DFPO_ERUNTIME, "%s: gradient norm is %g (NaN or Inf) at step %d",
                        m->cfg.arch, (double)n, m->step + 1);
  if (opt->clip > 0.0f && n > opt->clip) {
    float s = opt->clip / (n + 1e-6f);
    if ((rc = for_runs(m, 0, scale_run, &s, err)))
      return rc;
  }
  m->step++;
  adamw_ctx c = {opt, lr, m->step};
  if ((rc = for_runs(m, 1, adamw_run, &c, err)))
    return rc;
  m->grads_zero = 1; /* the update consumed (and zeroed) the gradients */
  return DFPO_OK;
}

float opt_lr_at(const opt_lr_schedule *s, int step) {
  if (s->warmup > 0 && step < s->warmup)
    return s->lr * (float)(step + 1) / (float)s->warmup;
  if (s->kind == OPT_LR_CONSTANT || s->total <= s->warmup)
    return s->lr;
  float frac = (float)(step - s->warmup) / (float)(s->total - s->warmup);
  if (frac > 1.0f)
    frac = 1.0f;
  if (s->kind == OPT_LR_LINEAR)
    return s->lr + (s->min_lr - s->lr) * frac;
  return s->min_lr + 0.5f * (s->lr - s->min_lr) * (1.0f + cosf(3.14159265358979f * frac));
}
