/* trainer/optim.h: optimisation of any model_t (prefix opt_): AdamW over
 * the model's parameter tensors and the learning-rate schedules. Depends on
 * trainer/model.h. The AdamW moments live in the model (model_tensor m1,
 * m2), so checkpoints carry them; the settings here are plain values. */
#ifndef DFPO_TRAINER_OPTIM_H
#define DFPO_TRAINER_OPTIM_H

#include "trainer/model.h"

typedef struct opt_adamw {
  float beta1, beta2, eps;
  float weight_decay; /* applied to matrices (2-D tensors) only, as nanoGPT */
  float clip;         /* global grad-norm clip (<= 0: none) */
} opt_adamw;
/* PyTorch's defaults: 0.9, 0.999, 1e-8, weight decay 0.01, no clipping. */
opt_adamw opt_adamw_default(void);
/* One AdamW step at learning rate lr (clipping first when asked) over every
 * parameter tensor of m; counts the step in the model (model_step_count)
 * and leaves the gradients zeroed. *norm (optional) receives the gradient
 * norm before clipping; a NaN or infinite norm is DFPO_ERUNTIME and no
 * step. */
int opt_adamw_step(model_t *m, const opt_adamw *opt, float lr, float *norm, dfpo_err *err);

enum { OPT_LR_CONSTANT = 0, OPT_LR_LINEAR = 1, OPT_LR_COSINE = 2 };
typedef struct opt_lr_schedule {
  int kind;         /* OPT_LR_*: after warmup, constant, linear to min_lr, or cosine to min_lr */
  float lr, min_lr; /* peak and final rate */
  int warmup;       /* linear warmup steps from lr/warmup */
  int total;        /* steps of the whole schedule */
} opt_lr_schedule;
/* The rate for step (0-based). */
float opt_lr_at(const opt_lr_schedule *s, int step);

#endif
