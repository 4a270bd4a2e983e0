/* Internal to trainer/: T5's layout, shared by t5.c (the tensors, loading,
 * the forward pass, the model_t table), t5_train.c (backward passes, the
 * value head, the training state) and t5_decode.c (decoding with caches). */
#ifndef DFPO_TRAINER_T5_INTERNAL_H
#define DFPO_TRAINER_T5_INTERNAL_H

#include "trainer/model_internal.h"
#include "trainer/t5.h"

/* The tensors of one layer, in memory order; q, k and v follow each other
 * (the fused [3I, C] product of self-attention; cross-attention's k and v
 * the fused [2I, C] product over the encoder output). */
enum { SA_Q, SA_K, SA_V, SA_O, SA_LN, SA_N }; /* self-attention, encoder and decoder */
enum { CA_Q, CA_K, CA_V, CA_O, CA_LN, CA_N }; /* decoder cross-attention */
enum { FF_WI0, FF_WI1, FF_WO, FF_LN, FF_N };  /* FF_WI1 only when gated */

typedef struct t5_tensor {
  char name[96];
  size_t off;
  int rows, cols; /* vectors: rows 1 */
  int vec;        /* a norm's weight or a bias: no weight decay */
} t5_tensor;

typedef struct t5_layer {
  int sa, ca, ff; /* index of the first tensor of each part (ca -1 in the encoder) */
} t5_layer;

/* What a forward pass keeps of one layer for the backward pass (N rows:
 * B Ts in the encoder, B Ld in the decoder). */
typedef struct t5_lacts {
  float *x;                          /* [N,C] the layer's input, the residual stream */
  float *n1, *qkv, *ctx, *xm1;       /* self-attention: norm [N,C], q|k|v [N,3I], context [N,I],
                                        the stream after it [N,C] */
  float *n2, *q2, *ctx2, *ekv, *xm2; /* decoder cross-attention: norm, q [N,I], context [N,I], k|v
                                        of the encoder output [B Ts, 2I], the stream after it */
  float *nf, *f0, *g, *f1, *h; /* feed-forward: norm [N,C], wi(_0) x [N,F], gelu of it and wi_1 x
                                  (gated), the product or ReLU [N,F] */
} t5_lacts;

typedef struct t5_model {
  struct model base;
  t5_config cfg;
  t5_tensor *tensors;
  int ntensors;
  int shared, enc_bias, dec_bias, enc_ln, dec_ln, lm_head; /* lm_head -1 when tied */
  int v_head;                                              /* v_head.summary.weight, -1: none */
  t5_layer *enc, *dec;
  float *params;
  size_t nparams;
  float *train_block, *grads, *m1, *m2; /* NULL until training */
  /* the activations of a forward pass, laid out for (aB, aTs, aLd, aT) */
  void *act_block;
  size_t act_bytes;
  int aB, aTs, aLd, aT;
  t5_lacts *ea, *da;   /* n_layer, n_dec_layer */
  float *xe, *eo;      /* [B Ts, C] the encoder's last stream, its final norm */
  float *xd, *hn, *hg; /* [B Ld, C] the decoder's last stream, its final norm; [B T, C] the
                          head's input on the column grid (scaled when tied, 0 off the outputs) */
  float *benc, *bdec;  /* [NH, Ts, Ts], [NH, Ld, Ld] position biases */
  float *logits;       /* [B T, V] on the column grid */
  float *lse, *lp, *ent, *dlp, *dent; /* [B T] */
  float *vals, *dvals;                /* [B Ld] the value head */
  float *zero;                        /* [C] zeros: the embedding lookup's position table */
  /* backward scratch */
  float *gx, *geo, *gn, *gqkv, *gctx, *gekv, *gh, *gf1, *gbe, *gbd, *ghn, *gpos;
  int *etok, *dtok, *zeros, *ks, *tgt; /* [B Ts], [B Ld], [max(B Ts, B Ld)], [B], [B T] */
  int fB, fT, fTs, fLd, fnp;           /* the last forward pass (fB 0: none) */
  int fh;                              /* its LM head's first column (model_batch.head_from) */
  int have_lm;                         /* logits of the last forward are valid */
  /* decoding (t5_decode.c) */
  void *gen_block;
  size_t gen_bytes;
  int gB, gTs, gD, gn_pos; /* rows, source columns, decoder positions room, filled */
  float **kc, **vc, **ckv; /* per decoder layer: [B, gD, I] self-attention cache; [B, Ts, 2I]
                              the cross-attention's keys and values */
  float *g_x, *g_n, *g_qkv, *g_ctx, *g_tmp, *g_f0, *g_f1, *g_logits, *g_bias, *g_zc;
  int *g_tok, *g_zero, *g_ks;
  float *g_tab; /* host copy of the decoder's bias table [buckets, NH] */
} t5_model;

extern const model_vtable t5_vtable;

static inline t5_model *t5_of(model_t *m) {
  return (t5_model *)m;
}
static inline const t5_model *t5_of_const(const model_t *m) {
  return (const t5_model *)m;
}
static inline float *t5_P(const t5_model *m, int i) {
  return m->params + m->tensors[i].off;
}
static inline float *t5_G(const t5_model *m, int i) {
  return m->grads + m->tensors[i].off;
}
/* the feed-forward's tensor index by slot (FF_WI1 only when gated) */
static inline int t5_ff(const t5_model *m, const t5_layer *l, int slot) {
  if (!m->cfg.gated && slot > FF_WI0)
    slot--;
  return l->ff + slot;
}

/* t5.c */
/* A T5 of config c (unchecked) and head (MODEL_HEAD_NONE or
 * MODEL_HEAD_VALUE) on the default backend, its parameters uninitialised;
 * t5_destroy frees one (NULL: nothing). */
int t5_create(t5_model **out, const t5_config *c, int head, dfpo_err *err);
void t5_destroy(t5_model *m);
/* DFPO_EUSAGE naming what the backend lacks of T5's forward (training: its
 * backward too) ops. */
int t5_missing_ops(const ops_backend *o, int training, dfpo_err *err);
/* Lays the activations out for B rows of Ts source and Ld decoder tokens on
 * a grid of T columns (Ld = T = 0: the encoder alone); forgets the last
 * forward pass. */
int t5_layout(t5_model *m, int B, int Ts, int Ld, int T, dfpo_err *err);
/* The position bias [NH, T, T] of a stack from its table, into dst. */
int t5_position_bias(t5_model *m, float *dst, int tab, int T, int bidir, dfpo_err *err);
/* The encoder over m->etok (uploaded) with padding m->ks and bias m->benc:
 * leaves m->eo. */
void t5_encode(t5_model *m, int B, int Ts);
/* y[N, C] += the feed-forward of rmsnorm(x) with the scratch of a (nf, f0,
 * g, f1, h; forward only callers pass one layer's acts as scratch). */
void t5_feed_forward(t5_model *m, const t5_layer *l, const t5_lacts *a, const float *x, float *y,
                     int N);

/* t5_train.c */
int t5_ensure_train(t5_model *m, dfpo_err *err);
/* The backward pass from m->ghn, the gradient of the decoder's final norm
 * output hn [B Ld, C] (consumed), into the gradients. */
void t5_trunk_backward(t5_model *m);
int t5_lm_backward(t5_model *m, const float *dlogp, const float *dent, dfpo_err *err);
/* The decoder's output columns [*c0, *c1) that the last forward's LM head
 * covers (from its head_from on; empty when *c0 >= *c1). */
void t5_head_columns(const t5_model *m, int *c0, int *c1);
/* The LM head's input x [n floats] times d_model^-0.5 where the model
 * scales it (t5_scales_head), in place: the forward passes, decoding and the
 * head's backward (the gradient takes the same factor). */
void t5_head_scale(const t5_model *m, float *x, size_t n);
/* The LM head's weight tensor: shared.weight when tied, else lm_head. */
static inline int t5_head_tensor(const t5_model *m) {
  return m->cfg.tied ? m->shared : m->lm_head;
}
int t5_lm_backward_logits(t5_model *m, const float *dlogits, dfpo_err *err);
int t5_value_forward(t5_model *m, float *values, dfpo_err *err);
int t5_value_backward(t5_model *m, const float *dvalues, dfpo_err *err);
void t5_zero_grad(t5_model *m);
float t5_grad_norm(t5_model *m);

/* t5_decode.c */
const float *t5_decode_begin(t5_model *m, const int *tokens, const int *kstart, int B, int T,
                             int max_len, dfpo_err *err);
const float *t5_decode_step(t5_model *m, const int *next, dfpo_err *err);
/* model_decode_reorder: row i of every decoding cache (self-attention,
 * cross-attention keys and values, encoder padding) becomes row
 * src_rows[i]. */
int t5_decode_reorder(t5_model *m, const int *src_rows, dfpo_err *err);
void t5_decode_free(t5_model *m);

/* t5_ckpt.c: the native checkpoint (docs/engine.md: a 96-byte header with
 * the config, the head, the step count, flag 1 for AdamW's moments and 2
 * for a head scale that is not the tie's,
 * then the parameters in the tensor table's order, then the moments) and
 * the Hugging Face export (T5ForConditionalGeneration's names; the
 * stacks' embed_tokens aliases and a tied lm_head are not stored, as
 * transformers' save_pretrained leaves them out; config.json with every
 * field t5_import_safetensors reads). model_load reaches t5_load_native by
 * the magic. */
#define T5_NATIVE_MAGIC "DFPOT5\0\0"
int t5_save(t5_model *m, const char *path, int with_optimizer, dfpo_err *err);
struct ckpt_dest; /* where (trainer/ckpt_internal.h); T5 reads in fp32 only */
int t5_load_native(model_t **out, const char *path, FILE *fp, const struct ckpt_dest *to,
                   dfpo_err *err);
int t5_export_safetensors(const t5_model *m, const char *path, const model_export_opts *o,
                          dfpo_err *err);

#endif
