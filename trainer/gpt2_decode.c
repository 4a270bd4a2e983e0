/* GPT-2 decoding: prompts through a KV cache, then one token per step
 * (model_decode_begin/step; trainer/sample.c samples from the logits). */
#include "trainer/gpt2_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void layout_gen(gpt2_model *m, bump *bp, int B, int T, int max_len) {
  size_t C = (size_t)m->cfg.n_embd, BT = (size_t)B * T;
  for (int l = 0; l < m->cfg.n_layer; l++) {
    m->kc[l] = TAKEF(bp, (size_t)B * max_len * C);
    m->vc[l] = TAKEF(bp, (size_t)B * max_len * C);
  }
  m->g_x = TAKEF(bp, BT * C);
  m->g_ln = TAKEF(bp, BT * C);
  m->g_qkv = TAKEF(bp, BT * 3 * C);
  m->g_atty = TAKEF(bp, BT * C);
  m->g_fch = TAKEF(bp, BT * 4 * C);
  /* the prompt pass's attention probabilities reuse the MLP buffer when it
   * is big enough, else get their own */
  size_t att = BT * T * (size_t)m->cfg.n_head;
  if (att > BT * 4 * C)
    m->g_fch = TAKEF(bp, att);
  m->g_logits = TAKEF(bp, (size_t)B * m->cfg.vocab_size);
  m->g_tok = take(bp, BT * sizeof(int));
  m->g_pos = take(bp, BT * sizeof(int));
  m->g_kstart = take(bp, (size_t)B * sizeof(int));
}

/* Runs the blocks over g_x [B,T,C] for positions t0..t0+T-1 of the cache and
 * leaves the next-token logits of each row's last position in g_logits. */
static void run_blocks(gpt2_model *m, int B, int T, int t0) {
  const ops_backend *o = m->base.ops;
  int C = m->cfg.n_embd, NH = m->cfg.n_head, BT = B * T, V = m->cfg.vocab_size;
  float *P = m->params;
  for (int l = 0; l < m->cfg.n_layer; l++) {
    o->layernorm_fwd(m->g_ln, NULL, NULL, m->g_x, gpt2_lp(m, P, l, GP_LN1W),
                     gpt2_lp(m, P, l, GP_LN1B), BT, C, GPT2_LN_EPS);
    gpt2_layer_linear(m, l, GP_QKVW, m->g_qkv, m->g_ln, BT, C, 3 * C);
    /* LoRA's scratch (BT x r <= BT x C floats): a buffer free at that point */
    gpt2_lora_fwd(m, l, GPT2_LORA_QKV, m->g_qkv, m->g_ln, m->g_fch, BT);
    o->kv_write(m->kc[l], m->vc[l], m->g_qkv, B, T, t0, m->gmax, C, C);
    if (T == 1)
      o->attention_step(m->g_atty, m->g_qkv, m->kc[l], m->vc[l], m->g_kstart, B, t0 + 1, m->gmax, C,
                        NH, NH);
    else
      o->attention_fwd(m->g_atty, m->g_fch, m->g_qkv, m->g_kstart, B, T, C, NH);
    gpt2_layer_linear(m, l, GP_PROJW, m->g_ln, m->g_atty, BT, C, C);
    gpt2_lora_fwd(m, l, GPT2_LORA_PROJ, m->g_ln, m->g_atty, m->g_qkv, BT);
    o->add(m->g_x, m->g_x, m->g_ln, (size_t)BT * C);
    o->layernorm_fwd(m->g_ln, NULL, NULL, m->g_x, gpt2_lp(m, P, l, GP_LN2W),
                     gpt2_lp(m, P, l, GP_LN2B), BT, C, GPT2_LN_EPS);
    gpt2_layer_linear(m, l, GP_FCW, m->g_fch, m->g_ln, BT, C, 4 * C);
    gpt2_lora_fwd(m, l, GPT2_LORA_FC, m->g_fch, m->g_ln, m->g_qkv, BT);
    o->gelu_fwd(m->g_fch, m->g_fch, (size_t)BT * 4 * C);
    gpt2_layer_linear(m, l, GP_FCPW, m->g_ln, m->g_fch, BT, 4 * C, C);
    gpt2_lora_fwd(m, l, GPT2_LORA_FCP, m->g_ln, m->g_fch, m->g_qkv, BT);
    o->add(m->g_x, m->g_x, m->g_ln, (size_t)BT * C);
  }
  /* only the last position of each row needs the head */
  if (T > 1)
    for (int b = 0; b < B; b++)
      o->copy(m->g_atty + (size_t)b * C, m->g_x + ((size_t)b * T + T - 1) * C,
              (size_t)C * sizeof(float));
  const float *last = T > 1 ? m->g_atty : m->g_x;
  int f = gpt2_tidx_lnfw(m);
  o->layernorm_fwd(m->g_ln, NULL, NULL, last, P + m->tensors[f].off, P + m->tensors[f + 1].off, B,
                   C, GPT2_LN_EPS);
  gpt2_linear(m, m->g_logits, m->g_ln, 0, NULL, B, C, V);
}

const float *gpt2_decode_begin(gpt2_model *m, const int *tokens, const int *kstart, int B, int T,
                               int max_len, dfpo_err *err) {
  if (B < 1 || T < 1 || max_len < T) {
    dfpo_err_set(err, DFPO_EUSAGE, "gpt2_decode_begin: bad sizes B=%d T=%d max_len=%d", B, T,
                 max_len);
    return NULL;
  }
  int maxks = 0;
  for (int b = 0; b < B; b++) {
    int ks = kstart ? kstart[b] : 0;
    if (ks < 0 || ks >= T) {
      dfpo_err_set(err, DFPO_EUSAGE, "gpt2_decode_begin: row %d: padding %d leaves no token", b,
                   ks);
      return NULL;
    }
    if (ks > maxks)
      maxks = ks;
    for (int t = 0; t < T; t++) {
      int v = tokens[(size_t)b * T + t];
      if (v < 0 || v >= m->cfg.vocab_size) {
        dfpo_err_set(err, DFPO_EUSAGE, "gpt2: token %d at [%d,%d] outside the vocabulary", v, b, t);
        return NULL;
      }
    }
  }
  if (max_len - maxks > m->cfg.n_ctx && max_len > m->cfg.n_ctx) {
    int worst = 0;
    for (int b = 0; b < B; b++)
      if (max_len - (kstart ? kstart[b] : 0) > worst)
        worst = max_len - (kstart ? kstart[b] : 0);
    if (worst > m->cfg.n_ctx) {
      dfpo_err_set(err, DFPO_EUSAGE, "gpt2_decode_begin: %d positions exceed n_ctx %d", worst,
                   m->cfg.n_ctx);
      return NULL;
    }
  }
  const ops_backend *o = m->base.ops;
  if (!m->gen_block || m->gb != B || m->gmax != max_len || m->gt != T) {
    /* the block is kept while it is big enough (evaluation decodes batches
     * of every prompt length), replaced when it is not */
    m->base.last_logits = NULL;
    m->gn = 0;
    if (B > m->g_kstart_cap) { /* kept while the batch does not grow */
      free(m->g_kstart_host);
      m->g_kstart_host = calloc((size_t)B, sizeof(int));
      m->g_kstart_cap = m->g_kstart_host ? B : 0;
    }
    bump sz = {NULL, 0};
    layout_gen(m, &sz, B, T, max_len);
    if (m->gen_block && sz.off > m->gen_bytes) {
      o->free(m->gen_block);
      m->gen_block = NULL;
      m->gen_bytes = 0;
    }
    if (!m->gen_block) {
      m->gen_block = o->alloc(sz.off);
      m->gen_bytes = m->gen_block ? sz.off : 0;
    }
    if (!m->gen_block || !m->g_kstart_host) {
      m->gb = 0; /* nothing laid out: the next call starts again */
      dfpo_err_set(err, DFPO_ERUNTIME, "out of memory for the KV cache (%zu MiB)", sz.off >> 20);
      return NULL;
    }
    bump real = {m->gen_block, 0};
    layout_gen(m, &real, B, T, max_len);
  }
  m->gb = B;
  m->gt = T;
  m->gmax = max_len;
  int BT = B * T;
  int *pos = malloc((size_t)BT * sizeof(int));
  if (!pos) {
    dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    return NULL;
  }
  for (int b = 0; b < B; b++) {
    int ks = kstart ? kstart[b] : 0;
    m->g_kstart_host[b] = ks;
    for (int t = 0; t < T; t++)
      pos[b * T + t] = t < ks ? 0 : t - ks;
  }
  o->upload(m->g_tok, tokens, (size_t)BT * sizeof(int));
  o->upload(m->g_pos, pos, (size_t)BT * sizeof(int));
  o->upload(m->g_kstart, m->g_kstart_host, (size_t)B * sizeof(int));
  free(pos);
  gpt2_embed(m, m->g_x, m->g_tok, m->g_pos, BT);
  run_blocks(m, B, T, 0);
  m->gn = T;
  m->have_lm = 0;
  m->base.last_logits = m->g_logits;
  return m->g_logits;
}

const float *gpt2_decode_step(gpt2_model *m, const int *next, dfpo_err *err) {
  if (!m->gen_block || m->gn == 0) {
    dfpo_err_set(err, DFPO_EUSAGE, "gpt2_decode_step: call gpt2_decode_begin first");
    return NULL;
  }
  if (m->gn >= m->gmax) {
    dfpo_err_set(err, DFPO_EUSAGE, "gpt2_decode_step: the cache is full (%d positions)", m->gmax);
    return NULL;
  }
  int B = m->gb;
  int pos[B];
  for (int b = 0; b < B; b++) {
    if (next[b] < 0 || next[b] >= m->cfg.vocab_size) {
      dfpo_err_set(err, DFPO_EUSAGE, "gpt2_decode_step: token %d of row %d outside the vocabulary",
                   next[b], b);
      return NULL;
    }
    pos[b] = m->gn - m->g_kstart_host[b];
    if (pos[b] >= m->cfg.n_ctx) {
      dfpo_err_set(err, DFPO_EUSAGE, "gpt2_decode_step: row %d reached n_ctx %d", b, m->cfg.n_ctx);
      return NULL;
    }
  }
  const ops_backend *o = m->base.ops;
  o->upload(m->g_tok, next, (size_t)B * sizeof(int));
  o->upload(m->g_pos, pos, (size_t)B * sizeof(int));
  gpt2_embed(m, m->g_x, m->g_tok, m->g_pos, B);
  run_blocks(m, B, 1, m->gn);
  m->gn++;
  m->have_lm = 0;
  m->base.last_logits = m->g_logits;
  return m->g_logits;
}

int gpt2_decode_reorder(gpt2_model *m, const int *src_rows, dfpo_err *err) {
  if (!m->gen_block || m->gn == 0)
    return dfpo_err_set(err, DFPO_EUSAGE, "gpt2_decode_reorder: call gpt2_decode_begin first");
  int B = m->gb, identity;
  int rc = model_reorder_check(src_rows, B, "gpt2_decode_reorder", &identity, err);
  if (rc)
    return rc;
  m->base.last_logits = NULL; /* the logits' rows no longer match the cache's */
  m->have_lm = 0;
  if (identity)
    return DFPO_OK;
  const ops_backend *o = m->base.ops;
  size_t C = (size_t)m->cfg.n_embd, row = (size_t)m->gmax * C, bytes = (size_t)B * row * 4;
  if (m->g_spare_bytes < bytes) {
    if (m->g_spare)
      o->free(m->g_spare);
    m->g_spare = o->alloc(bytes);
    m->g_spare_bytes = m->g_spare ? bytes : 0;
    if (!m->g_spare)
      return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory for the reorder scratch (%zu MiB)",
                          bytes >> 20);
  }
  /* per cache tensor: gather the filled positions of each source row into
   * the scratch with the backend's copy, then the block back in one copy */
  size_t used = (size_t)m->gn * C * sizeof(float);
  for (int l = 0; l < m->cfg.n_layer; l++)
    for (int kv = 0; kv < 2; kv++)
      model_rows_reorder(o, kv ? m->vc[l] : m->kc[l], m->g_spare, src_rows, B, row, used);
  /* each row's first key moves with it */
  model_ints_reorder(o, m->g_kstart, m->g_kstart_host, src_rows, B);
  return DFPO_OK;
}
