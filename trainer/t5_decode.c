/* T5 decoding (model_decode_begin/step, trainer/t5.h): the encoder once
 * over the prompts, each decoder layer's cross-attention keys and values
 * computed once from its output, then the decoder one token per step
 * through a self-attention cache. Every cache is laid out by row ([B, ...]
 * per layer), so that t5_decode_reorder (beam search's) gathers rows. */
#include "trainer/t5_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void t5_decode_free(t5_model *m) {
  if (m->gen_block)
    m->base.ops->free(m->gen_block);
  m->gen_block = NULL;
  m->gen_bytes = 0;
  m->gB = m->gTs = m->gD = m->gn_pos = 0;
  free(m->g_tab);
  m->g_tab = NULL;
}

static void lay_gen(t5_model *m, bump *bp, int B, int Ts, int D) {
  const t5_config *c = &m->cfg;
  size_t C = (size_t)c->d_model, I = (size_t)c->n_head * c->d_kv, F = (size_t)c->d_ff;
  size_t b = (size_t)B;
  for (int l = 0; l < c->n_dec_layer; l++) {
    m->kc[l] = TAKEF(bp, b * D * I);
    m->vc[l] = TAKEF(bp, b * D * I);
    m->ckv[l] = TAKEF(bp, b * Ts * 2 * I);
  }
  m->g_x = TAKEF(bp, b * C);
  m->g_n = TAKEF(bp, b * C);
  m->g_qkv = TAKEF(bp, b * 3 * I);
  m->g_ctx = TAKEF(bp, b * I);
  m->g_tmp = TAKEF(bp, b * C);
  m->g_f0 = TAKEF(bp, b * F);
  m->g_f1 = TAKEF(bp, b * F);
  m->g_logits = TAKEF(bp, b * c->vocab_size);
  m->g_bias = TAKEF(bp, (size_t)c->n_head * D);
  m->g_zc = TAKEF(bp, C);
  m->g_tok = take(bp, b * sizeof(int));
  m->g_zero = take(bp, b * sizeof(int));
  m->g_ks = take(bp, b * sizeof(int));
}

/* One decoder position for every row: tok[B] (host) at position gn_pos;
 * leaves the next-token logits in g_logits. */
static const float *step(t5_model *m, const int *tok, dfpo_err *err) {
  const t5_config *c = &m->cfg;
  const ops_backend *o = m->base.ops;
  int B = m->gB, Ts = m->gTs, D = m->gD, pos = m->gn_pos;
  int C = c->d_model, NH = c->n_head, HS = c->d_kv, I = NH * HS, NB = c->num_buckets;
  if (pos >= D) {
    dfpo_err_set(err, DFPO_EUSAGE, "t5: the decoding cache is full (%d decoder positions)", D);
    return NULL;
  }
  for (int b = 0; b < B; b++)
    if (tok[b] < 0 || tok[b] >= c->vocab_size) {
      dfpo_err_set(err, DFPO_EUSAGE, "t5: decoding token %d of row %d outside the vocabulary",
                   tok[b], b);
      return NULL;
    }
  /* the self-attention's position bias of this query: [NH, 1, pos + 1] */
  float *bias = malloc((size_t)NH * (pos + 1) * sizeof(float));
  if (!bias) {
    dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    return NULL;
  }
  for (int j = 0; j <= pos; j++) {
    int k = t5_bucket(j - pos, 0, NB, c->max_distance);
    for (int h = 0; h < NH; h++)
      bias[(size_t)h * (pos + 1) + j] = m->g_tab[(size_t)k * NH + h];
  }
  o->upload(m->g_bias, bias, (size_t)NH * (pos + 1) * sizeof(float));
  free(bias);
  o->upload(m->g_tok, tok, (size_t)B * sizeof(int));
  o->encoder_fwd(m->g_x, m->g_tok, m->g_zero, t5_P(m, m->shared), m->g_zc, B, C);
  t5_lacts ff = {0};
  ff.nf = m->g_n, ff.f0 = ff.g = ff.h = m->g_f0, ff.f1 = m->g_f1;
  for (int l = 0; l < c->n_dec_layer; l++) {
    const t5_layer *L = &m->dec[l];
    o->rmsnorm_fwd(m->g_n, m->g_x, t5_P(m, L->sa + SA_LN), B, C, c->eps);
    o->matmul_fwd(m->g_qkv, m->g_n, t5_P(m, L->sa + SA_Q), NULL, B, C, 3 * I);
    o->kv_write(m->kc[l], m->vc[l], m->g_qkv, B, 1, pos, D, I, I);
    /* each row against its own cache rows 0..pos */
    for (int b = 0; b < B; b++)
      o->attention_rel_fwd(m->g_ctx + (size_t)b * I, m->g_qkv + (size_t)b * 3 * I, 3 * I,
                           m->kc[l] + (size_t)b * D * I, m->vc[l] + (size_t)b * D * I, I, m->g_bias,
                           NULL, 0, 1, 1, pos + 1, NH, HS);
    o->matmul_fwd(m->g_tmp, m->g_ctx, t5_P(m, L->sa + SA_O), NULL, B, I, C);
    o->add(m->g_x, m->g_x, m->g_tmp, (size_t)B * C);
    o->rmsnorm_fwd(m->g_n, m->g_x, t5_P(m, L->ca + CA_LN), B, C, c->eps);
    o->matmul_fwd(m->g_qkv, m->g_n, t5_P(m, L->ca + CA_Q), NULL, B, C, I);
    o->attention_rel_fwd(m->g_ctx, m->g_qkv, I, m->ckv[l], m->ckv[l] + I, 2 * I, NULL, m->g_ks, 0,
                         B, 1, Ts, NH, HS);
    o->matmul_fwd(m->g_tmp, m->g_ctx, t5_P(m, L->ca + CA_O), NULL, B, I, C);
    o->add(m->g_x, m->g_x, m->g_tmp, (size_t)B * C);
    t5_feed_forward(m, L, &ff, m->g_x, m->g_tmp, B);
    o->add(m->g_x, m->g_x, m->g_tmp, (size_t)B * C);
  }
  o->rmsnorm_fwd(m->g_n, m->g_x, t5_P(m, m->dec_ln), B, C, c->eps);
  t5_head_scale(m, m->g_n, (size_t)B * C);
  o->matmul_fwd(m->g_logits, m->g_n, t5_P(m, t5_head_tensor(m)), NULL, B, C, c->vocab_size);
  m->gn_pos++;
  m->base.last_logits = m->g_logits;
  return m->g_logits;
}

const float *t5_decode_begin(t5_model *m, const int *tokens, const int *kstart, int B, int T,
                             int max_len, dfpo_err *err) {
  const t5_config *c = &m->cfg;
  const ops_backend *o = m->base.ops;
  m->gn_pos = 0;
  if (t5_missing_ops(o, 0, err))
    return NULL;
  if (B < 1 || T < 1 || max_len < T) {
    dfpo_err_set(err, DFPO_EUSAGE, "t5_decode_begin: bad sizes B=%d T=%d max_len=%d", B, T,
                 max_len);
    return NULL;
  }
  int D = max_len - T + 1; /* the decoder start and max_len - T new tokens */
  if (D > c->n_pos) {
    dfpo_err_set(err, DFPO_EUSAGE, "t5_decode_begin: %d decoder positions (%d fit)", D, c->n_pos);
    return NULL;
  }
  size_t BS = (size_t)B * T;
  int *h = malloc((BS + 2 * (size_t)B) * sizeof(int));
  if (!h) {
    dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    return NULL;
  }
  int *etok = h, *ks = h + BS, *start = ks + B, rc = DFPO_OK;
  for (int b = 0; b < B && !rc; b++) {
    ks[b] = kstart ? kstart[b] : 0;
    start[b] = c->start_id;
    if (ks[b] < 0 || ks[b] >= T)
      rc = dfpo_err_set(err, DFPO_EUSAGE, "t5_decode_begin: row %d: padding %d leaves no token", b,
                        ks[b]);
    for (int t = 0; t < T && !rc; t++) {
      int id = t < ks[b] ? 0 : tokens[(size_t)b * T + t];
      if (id < 0 || id >= c->vocab_size)
        rc = dfpo_err_set(err, DFPO_EUSAGE, "t5: token %d at [%d,%d] outside the vocabulary", id, b,
                          t);
      etok[(size_t)b * T + t] = id;
    }
  }
  /* the encoder in the forward pass's activations (a forward pass after
   * this one lays them out again) */
  if (!rc)
    rc = t5_layout(m, B, T, 0, 0, err);
  if (!rc)
    rc = t5_position_bias(m, m->benc, m->enc_bias, T, 1, err);
  if (!rc && !m->g_tab && !(m->g_tab = malloc((size_t)c->num_buckets * c->n_head * sizeof(float))))
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  if (!rc && (!m->gen_block || m->gB != B || m->gTs != T || m->gD != D)) {
    bump sz = {NULL, 0};
    lay_gen(m, &sz, B, T, D);
    if (m->gen_block && sz.off > m->gen_bytes) {
      o->free(m->gen_block);
      m->gen_block = NULL;
      m->gen_bytes = 0;
    }
    if (!m->gen_block && (m->gen_block = o->alloc(sz.off)))
      m->gen_bytes = sz.off;
    m->gB = 0;
    if (!m->gen_block)
      rc = dfpo_err_set(err, DFPO_ERUNTIME, "t5: out of memory for the decoding caches (%zu MiB)",
                        sz.off >> 20);
    if (!rc) {
      bump real = {m->gen_block, 0};
      lay_gen(m, &real, B, T, D);
    }
  }
  if (rc) {
    free(h);
    return NULL;
  }
  m->gB = B, m->gTs = T, m->gD = D;
  o->upload(m->etok, etok, BS * sizeof(int));
  o->upload(m->ks, ks, (size_t)B * sizeof(int));
  o->upload(m->g_ks, ks, (size_t)B * sizeof(int));
  o->zero(m->g_zero, (size_t)B * sizeof(int));
  o->zero(m->g_zc, (size_t)c->d_model * sizeof(float));
  o->download(m->g_tab, t5_P(m, m->dec_bias), (size_t)c->num_buckets * c->n_head * sizeof(float));
  t5_encode(m, B, T);
  int I = c->n_head * c->d_kv;
  for (int l = 0; l < c->n_dec_layer; l++)
    o->matmul_fwd(m->ckv[l], m->eo, t5_P(m, m->dec[l].ca + CA_K), NULL, (int)BS, c->d_model, 2 * I);
  const float *z = step(m, start, err);
  free(h);
  return z;
}

const float *t5_decode_step(t5_model *m, const int *next, dfpo_err *err) {
  if (!m->gen_block || !m->gB || !m->gn_pos) {
    dfpo_err_set(err, DFPO_EUSAGE, "t5_decode_step: call model_decode_begin first");
    return NULL;
  }
  return step(m, next, err);
}

int t5_decode_reorder(t5_model *m, const int *src_rows, dfpo_err *err) {
  if (!m->gen_block || m->gB == 0 || m->gn_pos == 0)
    return dfpo_err_set(err, DFPO_EUSAGE, "t5_decode_reorder: call model_decode_begin first");
  int B = m->gB, identity;
  int rc = model_reorder_check(src_rows, B, "t5_decode_reorder", &identity, err);
  if (rc)
    return rc;
  m->base.last_logits = NULL; /* the logits' rows no longer match the caches' */
  if (identity)
    return DFPO_OK;
  const ops_backend *o = m->base.ops;
  const t5_config *c = &m->cfg;
  size_t I = (size_t)c->n_head * c->d_kv, self_row = (size_t)m->gD * I,
         cross_row = (size_t)m->gTs * 2 * I, row = self_row > cross_row ? self_row : cross_row;
  float *tmp = o->alloc((size_t)B * row * sizeof(float));
  int *ks = malloc((size_t)B * sizeof(int));
  if (!tmp || !ks) {
    if (tmp)
      o->free(tmp);
    free(ks);
    return dfpo_err_set(err, DFPO_ERUNTIME, "t5_decode_reorder: out of memory");
  }
  /* per layer: each row's filled self-attention positions and its whole
   * cross-attention keys and values, gathered from the source rows into
   * the scratch, then copied back in one block */
  size_t used = (size_t)m->gn_pos * I * sizeof(float);
  for (int l = 0; l < c->n_dec_layer; l++) {
    for (int kv = 0; kv < 2; kv++)
      model_rows_reorder(o, kv ? m->vc[l] : m->kc[l], tmp, src_rows, B, self_row, used);
    model_rows_reorder(o, m->ckv[l], tmp, src_rows, B, cross_row, cross_row * sizeof(float));
  }
  o->free(tmp);
  /* each row's encoder padding moves with it */
  o->download(ks, m->g_ks, (size_t)B * sizeof(int));
  model_ints_reorder(o, m->g_ks, ks, src_rows, B);
  free(ks);
  return DFPO_OK;
}
