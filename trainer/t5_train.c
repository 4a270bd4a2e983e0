/* T5's backward passes (trainer/t5.h): the LM head (tied with its
 * d_model^-0.5 scale, or lm_head), the value head on the decoder's final
 * hidden states, the decoder (self-attention with its position bias,
 * cross-attention, feed-forward), the encoder through the cross-attention's
 * keys and values, the shared embedding and the two bias tables; the
 * training state AdamW walks. */
#include "trainer/t5_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int t5_ensure_train(t5_model *m, dfpo_err *err) {
  return model_alloc_train(&m->base, m->nparams, &m->train_block, &m->grads, &m->m1, &m->m2, err);
}

void t5_zero_grad(t5_model *m) {
  if (t5_ensure_train(m, NULL) == DFPO_OK && !m->base.grads_zero)
    m->base.ops->zero(m->grads, m->nparams * sizeof(float));
  m->base.grads_zero = 1;
}

float t5_grad_norm(t5_model *m) {
  return m->grads ? (float)sqrt(m->base.ops->sumsq(m->grads, m->nparams)) : 0.0f;
}

/* gx[N, C] (the gradient of y = x + ff(x)) += the gradient through the
 * feed-forward to x. */
static void ff_backward(t5_model *m, const t5_layer *l, const t5_lacts *a, const float *x,
                        float *gx, int N) {
  const t5_config *c = &m->cfg;
  const ops_backend *o = m->base.ops;
  int C = c->d_model, F = c->d_ff;
  size_t NF = (size_t)N * F;
  int wi0 = t5_ff(m, l, FF_WI0), wo = t5_ff(m, l, FF_WO), ln = t5_ff(m, l, FF_LN);
  o->zero(m->gh, NF * sizeof(float));
  o->matmul_bwd(m->gh, t5_G(m, wo), NULL, gx, a->h, t5_P(m, wo), N, F, C);
  o->zero(m->gn, (size_t)N * C * sizeof(float));
  if (c->gated) { /* h = gelu(f0) * f1 */
    int wi1 = t5_ff(m, l, FF_WI1);
    o->mul_bwd(m->gh, m->gf1, m->gh, a->g, a->f1, NF);
    o->gelu_bwd(m->gh, a->f0, m->gh, NF);
    o->matmul_bwd(m->gn, t5_G(m, wi1), NULL, m->gf1, a->nf, t5_P(m, wi1), N, C, F);
  } else {
    o->act_bwd(m->gh, a->f0, m->gh, NF, OPS_ACT_RELU);
  }
  o->matmul_bwd(m->gn, t5_G(m, wi0), NULL, m->gh, a->nf, t5_P(m, wi0), N, C, F);
  o->rmsnorm_bwd(gx, t5_G(m, ln), m->gn, x, t5_P(m, ln), N, C, c->eps);
}

/* gx[N, C] (the gradient of y = x + attn(x)) += the gradient through the
 * self-attention to x; gbias += the scores' gradient. */
static void self_attention_backward(t5_model *m, const t5_layer *l, const t5_lacts *a,
                                    const float *bias, float *gbias, const int *ks, int causal,
                                    float *gx, int B, int T) {
  const t5_config *c = &m->cfg;
  const ops_backend *o = m->base.ops;
  int C = c->d_model, NH = c->n_head, HS = c->d_kv, I = NH * HS, N = B * T;
  o->zero(m->gctx, (size_t)N * I * sizeof(float));
  o->matmul_bwd(m->gctx, t5_G(m, l->sa + SA_O), NULL, gx, a->ctx, t5_P(m, l->sa + SA_O), N, I, C);
  o->zero(m->gqkv, (size_t)N * 3 * I * sizeof(float));
  o->attention_rel_bwd(m->gqkv, m->gqkv + I, m->gqkv + 2 * I, gbias, m->gctx, a->qkv, 3 * I,
                       a->qkv + I, a->qkv + 2 * I, 3 * I, bias, ks, causal, B, T, T, NH, HS);
  o->zero(m->gn, (size_t)N * C * sizeof(float));
  o->matmul_bwd(m->gn, t5_G(m, l->sa + SA_Q), NULL, m->gqkv, a->n1, t5_P(m, l->sa + SA_Q), N, C,
                3 * I);
  o->rmsnorm_bwd(gx, t5_G(m, l->sa + SA_LN), m->gn, a->x, t5_P(m, l->sa + SA_LN), N, C, c->eps);
}

/* The bias table's gradient from the scores' gradient gb [NH, T, T]
 * summed by bucket (host work, as the forward's bias). */
static int bias_table_backward(t5_model *m, const float *gb, int tab, int T, int bidir,
                               dfpo_err *err) {
  const t5_config *c = &m->cfg;
  const ops_backend *o = m->base.ops;
  int NH = c->n_head, NB = c->num_buckets;
  size_t nb = (size_t)NH * T * T;
  float *h = malloc(nb * sizeof(float)), *g = malloc((size_t)NB * NH * sizeof(float));
  if (!h || !g) {
    free(h), free(g);
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  }
  o->download(h, gb, nb * sizeof(float));
  o->download(g, t5_G(m, tab), (size_t)NB * NH * sizeof(float));
  for (int i = 0; i < T; i++)
    for (int j = 0; j < T; j++) {
      int k = t5_bucket(j - i, bidir, NB, c->max_distance);
      for (int hd = 0; hd < NH; hd++)
        g[(size_t)k * NH + hd] += h[((size_t)hd * T + i) * T + j];
    }
  o->upload(t5_G(m, tab), g, (size_t)NB * NH * sizeof(float));
  free(h), free(g);
  return DFPO_OK;
}

/* The backward pass from m->ghn, the gradient of hn (the decoder's final
 * norm), through the decoder and the encoder into the gradients. */
static int trunk_backward(t5_model *m, dfpo_err *err) {
  const t5_config *c = &m->cfg;
  const ops_backend *o = m->base.ops;
  int B = m->fB, Ts = m->fTs, Ld = m->fLd, BS = B * Ts, BD = B * Ld;
  int C = c->d_model, NH = c->n_head, HS = c->d_kv, I = NH * HS;
  m->base.grads_zero = 0;
  m->have_lm = 0;
  m->base.last_logits = NULL;
  o->zero(m->gx, (size_t)BD * C * sizeof(float));
  o->rmsnorm_bwd(m->gx, t5_G(m, m->dec_ln), m->ghn, m->xd, t5_P(m, m->dec_ln), BD, C, c->eps);
  o->zero(m->geo, (size_t)BS * C * sizeof(float));
  o->zero(m->gbd, (size_t)NH * Ld * Ld * sizeof(float));
  o->zero(m->gbe, (size_t)NH * Ts * Ts * sizeof(float));
  for (int l = c->n_dec_layer - 1; l >= 0; l--) {
    const t5_layer *L = &m->dec[l];
    const t5_lacts *a = &m->da[l];
    ff_backward(m, L, a, a->xm2, m->gx, BD);
    /* xm2 = xm1 + o(attention(q(n2), k|v(eo))) */
    o->zero(m->gctx, (size_t)BD * I * sizeof(float));
    o->matmul_bwd(m->gctx, t5_G(m, L->ca + CA_O), NULL, m->gx, a->ctx2, t5_P(m, L->ca + CA_O), BD,
                  I, C);
    o->zero(m->gqkv, (size_t)BD * I * sizeof(float));
    o->zero(m->gekv, (size_t)BS * 2 * I * sizeof(float));
    o->attention_rel_bwd(m->gqkv, m->gekv, m->gekv + I, NULL, m->gctx, a->q2, I, a->ekv, a->ekv + I,
                         2 * I, NULL, m->ks, 0, B, Ld, Ts, NH, HS);
    o->matmul_bwd(m->geo, t5_G(m, L->ca + CA_K), NULL, m->gekv, m->eo, t5_P(m, L->ca + CA_K), BS, C,
                  2 * I);
    o->zero(m->gn, (size_t)BD * C * sizeof(float));
    o->matmul_bwd(m->gn, t5_G(m, L->ca + CA_Q), NULL, m->gqkv, a->n2, t5_P(m, L->ca + CA_Q), BD, C,
                  I);
    o->rmsnorm_bwd(m->gx, t5_G(m, L->ca + CA_LN), m->gn, a->xm1, t5_P(m, L->ca + CA_LN), BD, C,
                   c->eps);
    self_attention_backward(m, L, a, m->bdec, m->gbd, NULL, 1, m->gx, B, Ld);
  }
  o->encoder_bwd(t5_G(m, m->shared), m->gpos, m->gx, m->dtok, m->zeros, BD, C);
  /* the encoder, from the cross-attentions' gradient of its output */
  o->zero(m->gx, (size_t)BS * C * sizeof(float));
  o->rmsnorm_bwd(m->gx, t5_G(m, m->enc_ln), m->geo, m->xe, t5_P(m, m->enc_ln), BS, C, c->eps);
  for (int l = c->n_layer - 1; l >= 0; l--) {
    const t5_layer *L = &m->enc[l];
    const t5_lacts *a = &m->ea[l];
    ff_backward(m, L, a, a->xm1, m->gx, BS);
    self_attention_backward(m, L, a, m->benc, m->gbe, m->ks, 0, m->gx, B, Ts);
  }
  o->encoder_bwd(t5_G(m, m->shared), m->gpos, m->gx, m->etok, m->zeros, BS, C);
  int rc = bias_table_backward(m, m->gbd, m->dec_bias, Ld, 0, err);
  return rc ? rc : bias_table_backward(m, m->gbe, m->enc_bias, Ts, 1, err);
}

/* From m->logits holding dL/dlogits on the head's grid [B (T - fh), V]:
 * the head, then the trunk. */
static int head_backward(t5_model *m, dfpo_err *err) {
  const t5_config *c = &m->cfg;
  const ops_backend *o = m->base.ops;
  int B = m->fB, H = m->fT - m->fh, Ld = m->fLd, np = m->fnp, C = c->d_model, V = c->vocab_size;
  size_t BH = (size_t)B * H;
  int w = t5_head_tensor(m), c0, c1;
  o->zero(m->gn, BH * C * sizeof(float));
  o->matmul_bwd(m->gn, t5_G(m, w), NULL, m->logits, m->hg, t5_P(m, w), (int)BH, C, V);
  t5_head_columns(m, &c0, &c1);
  if (c0 > np - 1 || c0 >= c1) /* outputs before the head: no gradient there */
    o->zero(m->ghn, (size_t)B * Ld * C * sizeof(float));
  for (int b = 0; b < B && c0 < c1; b++)
    o->copy(m->ghn + ((size_t)b * Ld + c0 - (np - 1)) * C, m->gn + ((size_t)b * H + c0 - m->fh) * C,
            (size_t)(c1 - c0) * C * sizeof(float));
  t5_head_scale(m, m->ghn, (size_t)B * Ld * C);
  return trunk_backward(m, err);
}

static int need_lm(t5_model *m, const char *what, dfpo_err *err) {
  int rc = t5_missing_ops(m->base.ops, 1, err);
  if (rc)
    return rc;
  if (!m->have_lm)
    return dfpo_err_set(err, DFPO_EUSAGE, "t5: %s needs model_lm_logprobs after the forward pass",
                        what);
  return t5_ensure_train(m, err);
}

int t5_lm_backward(t5_model *m, const float *dlogp, const float *dent, dfpo_err *err) {
  int rc = need_lm(m, "lm_backward", err);
  if (rc)
    return rc;
  const ops_backend *o = m->base.ops;
  int B = m->fB, T = m->fT, h = m->fh, V = m->cfg.vocab_size;
  size_t BT = (size_t)B * T, BH = (size_t)B * (T - h);
  float *d = dent ? malloc(BT * sizeof(float)) : NULL, *dh = malloc(BH * sizeof(float));
  if ((dent && !d) || !dh) {
    free(d);
    free(dh);
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  }
  if (dlogp)
    model_head_upload(o, m->dlp, dlogp, dh, B, T, h);
  else
    o->zero(m->dlp, BH * sizeof(float));
  if (dent) { /* columns without an output have no entropy */
    for (size_t i = 0; i < BT; i++) {
      int col = (int)(i % (size_t)T);
      d[i] = col >= m->fnp - 1 && col < m->fnp - 1 + m->fLd ? dent[i] : 0.0f;
    }
    model_head_upload(o, m->dent, d, dh, B, T, h);
  }
  free(d);
  free(dh);
  o->logits_bwd(m->logits, m->lse, m->ent, m->tgt, m->dlp, dent ? m->dent : NULL, (int)BH, V, V);
  return head_backward(m, err);
}

int t5_lm_backward_logits(t5_model *m, const float *dlogits, dfpo_err *err) {
  int rc = need_lm(m, "lm_backward_logits", err);
  if (rc)
    return rc;
  /* the logits become their gradient; rows off the outputs meet zero
   * rows of the head's input and give nothing */
  m->base.ops->upload(m->logits, dlogits,
                      (size_t)m->fB * (m->fT - m->fh) * m->cfg.vocab_size * sizeof(float));
  return head_backward(m, err);
}

static int need_value(t5_model *m, int training, dfpo_err *err) {
  if (!m->fB)
    return dfpo_err_set(err, DFPO_EUSAGE, "t5: the value head before a forward pass");
  if (m->v_head < 0)
    return dfpo_err_set(err, DFPO_EUSAGE, "t5: the model has no value head");
  int rc = training ? t5_missing_ops(m->base.ops, 1, err) : DFPO_OK;
  return rc ? rc : training ? t5_ensure_train(m, err) : DFPO_OK;
}

/* The value of each decoder position from its final hidden state (the
 * decoder's final norm, before the tied head's scale), on the grid. */
int t5_value_forward(t5_model *m, float *values, dfpo_err *err) {
  int rc = need_value(m, 0, err);
  if (rc)
    return rc;
  int B = m->fB, T = m->fT, Ld = m->fLd, np = m->fnp;
  m->base.ops->matmul_fwd(m->vals, m->hn, t5_P(m, m->v_head), t5_P(m, m->v_head + 1), B * Ld,
                          m->cfg.d_model, 1);
  float *h = malloc((size_t)B * Ld * sizeof(float));
  if (!h)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  m->base.ops->download(h, m->vals, (size_t)B * Ld * sizeof(float));
  memset(values, 0, (size_t)B * T * sizeof(float));
  for (int b = 0; b < B; b++)
    memcpy(values + (size_t)b * T + np - 1, h + (size_t)b * Ld, (size_t)Ld * sizeof(float));
  free(h);
  return DFPO_OK;
}

int t5_value_backward(t5_model *m, const float *dvalues, dfpo_err *err) {
  int rc = need_value(m, 1, err);
  if (rc)
    return rc;
  const ops_backend *o = m->base.ops;
  int B = m->fB, T = m->fT, Ld = m->fLd, np = m->fnp, C = m->cfg.d_model;
  float *h = malloc((size_t)B * Ld * sizeof(float));
  if (!h)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  for (int b = 0; b < B; b++)
    memcpy(h + (size_t)b * Ld, dvalues + (size_t)b * T + np - 1, (size_t)Ld * sizeof(float));
  o->upload(m->dvals, h, (size_t)B * Ld * sizeof(float));
  free(h);
  o->zero(m->ghn, (size_t)B * Ld * C * sizeof(float));
  o->matmul_bwd(m->ghn, t5_G(m, m->v_head), t5_G(m, m->v_head + 1), m->dvals, m->hn,
                t5_P(m, m->v_head), B * Ld, C, 1);
  return trunk_backward(m, err);
}
