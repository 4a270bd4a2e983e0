/* Finite-difference checks of the whole model's gradients: every parameter
 * of a tiny GPT-2 (2 layers, 2 heads, 8 wide, 11 tokens) under the LM loss
 * with a left-padded row, the value head, the classification head and the
 * entropy term. Reference: central differences of the model's own forward
 * pass (h = 1e-3 in float32); the check is per tensor,
 * |g - fd| / (|g| + |fd|) < 2e-2 in the L2 norm, which a wrong term in any
 * backward op exceeds by orders of magnitude. */
#include "tests/trainer/gpt2_testutil.h"
#include "trainer/rl.h"

#include <string.h>

typedef double (*objective_fn)(model_t *m, int backward, void *ctx);

typedef struct lm_ctx {
  const int *tok, *tgt, *ks;
  int B, T;
  int use_entropy;
} lm_ctx;

/* sum_i w_i logp_i + 0.3 sum_i ent_i over rows with targets */
static double lm_objective(model_t *m, int backward, void *vctx) {
  lm_ctx *c = vctx;
  dfpo_err err;
  dfpo_err_clear(&err);
  int n = c->B * c->T;
  float logp[64], ent[64], dl[64], de[64];
  cr_assert_eq(model_forward_rows(m, c->tok, c->ks, c->B, c->T, &err), 0, "%s", err.msg);
  cr_assert_eq(model_lm_logprobs(m, c->tgt, logp, ent, &err), 0, "%s", err.msg);
  double s = 0.0;
  for (int i = 0; i < n; i++) {
    float w = c->tgt[i] >= 0 ? 0.5f + 0.1f * (float)(i % 5) : 0.0f;
    float we = c->use_entropy && c->tgt[i] >= 0 ? 0.3f : 0.0f;
    s += (double)w * logp[i] + (double)we * ent[i];
    dl[i] = w;
    de[i] = we;
  }
  if (backward)
    cr_assert_eq(model_lm_backward(m, dl, c->use_entropy ? de : NULL, &err), 0, "%s", err.msg);
  return s;
}

static double value_objective(model_t *m, int backward, void *vctx) {
  lm_ctx *c = vctx;
  dfpo_err err;
  dfpo_err_clear(&err);
  int n = c->B * c->T;
  float v[64], dv[64];
  cr_assert_eq(model_forward_rows(m, c->tok, c->ks, c->B, c->T, &err), 0, "%s", err.msg);
  cr_assert_eq(model_value_forward(m, v, &err), 0, "%s", err.msg);
  double s = 0.0;
  for (int i = 0; i < n; i++) {
    /* 0.5 (v - target)^2 with target i/10 */
    double d = v[i] - 0.1 * i;
    s += 0.5 * d * d;
    dv[i] = (float)d;
  }
  if (backward)
    cr_assert_eq(model_value_backward(m, dv, &err), 0, "%s", err.msg);
  return s;
}

static double class_objective(model_t *m, int backward, void *vctx) {
  lm_ctx *c = vctx;
  dfpo_err err;
  dfpo_err_clear(&err);
  float lg[2 * 3], dlg[2 * 3];
  int at[2] = {c->T - 1, c->T - 2};
  cr_assert_eq(model_forward_rows(m, c->tok, c->ks, c->B, c->T, &err), 0, "%s", err.msg);
  cr_assert_eq(model_class_forward(m, at, lg, &err), 0, "%s", err.msg);
  double s = 0.0;
  for (int i = 0; i < 6; i++) {
    s += (double)(i + 1) * lg[i] * lg[i] * 0.5;
    dlg[i] = (float)(i + 1) * lg[i];
  }
  if (backward)
    cr_assert_eq(model_class_backward(m, dlg, &err), 0, "%s", err.msg);
  return s;
}

/* sum_i w_i log pi_M(tgt_i): the target's log-probability under the softmax
 * renormalised over a per-position mask (NLPO's ratio), backward through
 * model_lm_backward_logits with rl_masked_logit_grad's logit gradients. */
static double masked_objective(model_t *m, int backward, void *vctx) {
  lm_ctx *c = vctx;
  dfpo_err err;
  dfpo_err_clear(&err);
  int n = c->B * c->T, V = model_get_config(m)->vocab_size;
  float logp[64], dz[64 * 11];
  unsigned char mask[11];
  cr_assert_eq(model_forward_rows(m, c->tok, c->ks, c->B, c->T, &err), 0, "%s", err.msg);
  cr_assert_eq(model_lm_logprobs(m, c->tgt, logp, NULL, &err), 0, "%s", err.msg);
  const float *z = model_lm_logits(m);
  double s = 0.0;
  for (int i = 0; i < n; i++) {
    float *d = dz + (size_t)i * V;
    if (c->tgt[i] < 0) {
      memset(d, 0, sizeof(float) * V);
      continue;
    }
    /* a mask of about two thirds of the vocabulary that holds the target */
    for (int a = 0; a < V; a++)
      mask[a] = a == c->tgt[i] || (a + i) % 3 != 0;
    float w = 0.5f + 0.1f * (float)(i % 5);
    s += w * rl_masked_logit_grad(z + (size_t)i * V, mask, V, c->tgt[i], w, d);
  }
  if (backward)
    cr_assert_eq(model_lm_backward_logits(m, dz, &err), 0, "%s", err.msg);
  return s;
}

static void check_all(model_t *m, objective_fn f, void *ctx) {
  model_zero_grad(m);
  f(m, 1, ctx);
  int nt = gpt2_num_tensors(m);
  const float h = 1e-3f;
  for (int t = 0; t < nt; t++) {
    const char *name;
    int rows, cols;
    float *p, *g;
    gpt2_tensor_info(m, t, &name, &rows, &cols, &p, &g);
    double num = 0.0, den_g = 0.0, den_f = 0.0;
    int n = rows * cols;
    /* every element of small tensors, a stride through big ones */
    int stride = n > 400 ? n / 200 + 1 : 1;
    for (int k = 0; k < n; k += stride) {
      float old = p[k];
      p[k] = old + h;
      double fp = f(m, 0, ctx);
      p[k] = old - h;
      double fm = f(m, 0, ctx);
      p[k] = old;
      double fd = (fp - fm) / (2.0 * h);
      num += (g[k] - fd) * (g[k] - fd);
      den_g += (double)g[k] * g[k];
      den_f += fd * fd;
    }
    double rel = sqrt(num) / (sqrt(den_g) + sqrt(den_f) + 1e-12);
    if (sqrt(den_g) + sqrt(den_f) < 1e-7)
      continue; /* a tensor the objective does not depend on */
    cr_expect_lt(rel, 2e-2, "tensor %s: relative error %.3g (|g| %.3g, |fd| %.3g)", name, rel,
                 sqrt(den_g), sqrt(den_f));
  }
}

static const int toks[2 * 5] = {3, 7, 1, 9, 4, 0, 0, 5, 2, 10};
static const int tgts[2 * 5] = {7, 1, 9, 4, 6, -1, -1, 2, 10, 8};
static const int kst[2] = {0, 2};

Test(gpt2_grad, lm_loss_every_parameter) {
  gpt2_config cfg = tu_config(11, 2, 2, 8, 8);
  model_t *m = tu_model(&cfg, 1);
  tu_perturb(m, 2, 3.0f);
  lm_ctx c = {toks, tgts, kst, 2, 5, 0};
  check_all(m, lm_objective, &c);
  model_free(m);
}

Test(gpt2_grad, lm_entropy_term) {
  gpt2_config cfg = tu_config(11, 1, 2, 8, 8);
  model_t *m = tu_model(&cfg, 3);
  tu_perturb(m, 4, 3.0f);
  lm_ctx c = {toks, tgts, kst, 2, 5, 1};
  check_all(m, lm_objective, &c);
  model_free(m);
}

Test(gpt2_grad, value_head) {
  gpt2_config cfg = tu_config(11, 1, 2, 8, 8);
  cfg.head = MODEL_HEAD_VALUE;
  model_t *m = tu_model(&cfg, 5);
  tu_perturb(m, 6, 3.0f);
  lm_ctx c = {toks, tgts, kst, 2, 5, 0};
  check_all(m, value_objective, &c);
  model_free(m);
}

Test(gpt2_grad, classification_head) {
  gpt2_config cfg = tu_config(11, 1, 2, 8, 8);
  cfg.head = MODEL_HEAD_CLASS;
  cfg.n_classes = 3;
  model_t *m = tu_model(&cfg, 7);
  tu_perturb(m, 8, 3.0f);
  lm_ctx c = {toks, tgts, kst, 2, 5, 0};
  check_all(m, class_objective, &c);
  model_free(m);
}

Test(gpt2_grad, lm_backward_from_logits_of_a_masked_softmax) {
  gpt2_config cfg = tu_config(11, 2, 2, 8, 8);
  model_t *m = tu_model(&cfg, 9);
  tu_perturb(m, 10, 3.0f);
  lm_ctx c = {toks, tgts, kst, 2, 5, 0};
  check_all(m, masked_objective, &c);
  model_free(m);
}
