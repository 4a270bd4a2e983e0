/* Internal to trainer/: the GPT-2 model's layout, shared by gpt2.c (forward,
 * backward, the model_t table), gpt2_decode.c (decoding) and gpt2_ckpt.c
 * (formats). */
#ifndef DFPO_TRAINER_GPT2_INTERNAL_H
#define DFPO_TRAINER_GPT2_INTERNAL_H

#include "trainer/gpt2.h"
#include "trainer/model_internal.h"
#include "trainer/ops.h"

/* Parameter tensors of one layer, in arena order. */
enum {
  GP_LN1W,
  GP_LN1B,
  GP_QKVW,
  GP_QKVB,
  GP_PROJW,
  GP_PROJB,
  GP_LN2W,
  GP_LN2B,
  GP_FCW,
  GP_FCB,
  GP_FCPW,
  GP_FCPB,
  GP_PER_LAYER
};

typedef struct gpt2_tensor {
  char name[64];  /* Hugging Face name without "transformer." */
  size_t off;     /* floats from the start of the parameter block */
  int rows, cols; /* ours: linear weights [out, in]; vectors rows = 1 */
  int conv1d;     /* Hugging Face stores it transposed ([in, out]) */
  int decay;      /* AdamW weight decay applies (matrices) */
  int w16;        /* kept in 16 bits (model_set_weight_dtype): off counts uint16s of
                     params16, not floats of params */
} gpt2_tensor;

/* Activations of one layer for a forward pass at (B, T). */
typedef struct gpt2_layer_acts {
  float *ln1, *ln1_mean, *ln1_rstd; /* [BT,C], [BT], [BT] */
  float *qkv;                       /* [BT,3C] */
  float *att;                       /* [B,NH,T,T] */
  float *atty;                      /* [BT,C] */
  float *res2;                      /* [BT,C] residual after attention */
  float *ln2, *ln2_mean, *ln2_rstd;
  float *fch, *fch_gelu; /* [BT,4C] */
  float *res3;           /* [BT,C] the layer's output */
} gpt2_layer_acts;

/* LoRA (Hu et al. 2021) on the block's linear layers: W x + (alpha/r) B(A x)
 * with W frozen. The adapted layers, in the order of their index k. */
enum { GPT2_LORA_QKV, GPT2_LORA_PROJ, GPT2_LORA_FC, GPT2_LORA_FCP, GPT2_LORA_N };

typedef struct gpt2_lora {
  int r;            /* rank; 0: no adapters */
  float alpha;      /* the scale is alpha / r */
  unsigned targets; /* bit k: layer kind GPT2_LORA_* k adapted */
  int on;           /* adapters applied by forward passes and decoding */
  int fwd_on;       /* they were applied by the last forward pass */
  int ntensors;     /* two per adapted linear: A [r, in], then B stored [r, out] (peft's
                       lora_B.weight [out, r] transposed, so the conv1d flag is set); on
                       a model with a value head, then the head's weight and bias */
  int head;         /* index of the value head's weight in tensors (-1: none): with a
                       value head the frozen base's head is not used, this trainable
                       copy is (the value head on a LoRA policy's trunk) */
  gpt2_tensor *tensors;
  int *first; /* [n_layer * GPT2_LORA_N]: index of A in tensors, -1 when not adapted */
  size_t nparams;
  float *params;      /* nparams, its own allocation */
  float *train_block; /* grads | m | v of the adapters only */
  float *grads, *m, *v;
  float **u; /* [n_layer * GPT2_LORA_N] in the activations: (alpha/r) A x [BT, r] */
  float *du; /* [BT, r] backward scratch */
} gpt2_lora;
/* The adapted layers' names, by index k ("attn.c_attn", ...), as
 * model_lora_config's targets spell them. */
extern const char *const gpt2_lora_names[GPT2_LORA_N];
/* The layers of target bits (GPT2_LORA_* k at bit k) as model_lora_config's
 * comma-separated targets, into buf[n] (96 bytes hold all four). */
void gpt2_lora_target_list(unsigned bits, char *buf, size_t n);

/* A GPT-2 is a model_t: the base comes first, so (model_t *)m and
 * gpt2_of() convert between the two. */
typedef struct gpt2_model {
  struct model base;
  gpt2_config cfg;
  int ntensors;
  gpt2_tensor *tensors;
  size_t nparams;
  /* the arena: three regions, each one allocation of the backend */
  float *params;    /* nparams32 (nparams unless weights are kept in 16 bits) */
  size_t nparams32; /* floats in params */
  /* weights in 16 bits (model_set_weight_dtype): the embedding (tied LM
   * head) and the blocks' four matrices in params16 (n16 values of type
   * wdtype, its own allocation), everything else compacted into params;
   * wdtype OPS_DTYPE_F32: none (params16 NULL) */
  ops_dtype wdtype;
  uint16_t *params16;
  size_t n16;
  float *train_block; /* grads | m | v (3 nparams), NULL until training */
  float *grads, *m, *v;
  void *act_block; /* activations of the current (B, T) */
  size_t act_bytes;
  int ab, at;  /* (B, T) the activations are laid out for */
  int fb, ft;  /* (B, T) of the last forward (0: none) */
  int fh;      /* its LM head's first column (model_batch.head_from) */
  int have_lm; /* logits of the last forward are valid */
  int *d_tok, *d_pos, *d_kstart, *d_tgt;
  float *encoded;         /* [BT,C] */
  gpt2_layer_acts *layer; /* n_layer */
  float *lnf, *lnf_mean, *lnf_rstd;
  float *lnh;    /* [B (T - fh), C]: lnf at a narrowed head's columns (in dfch's block) */
  float *logits; /* [BT,V]; [B (T - fh), V] used with a narrowed head */
  float *lse, *logp, *ent, *dlogp, *dent;
  float *head_out, *dhead;   /* [BT,K] value or class outputs and their grads */
  float *head_in, *dhead_in; /* [B,C] gathered rows for the class head */
  /* backward scratch (one layer's worth, reused) */
  float *dres, *dln, *dqkv, *datty, *dfch;
  int *cls_at; /* host copy of the class positions [B] */
  /* decoding state */
  void *gen_block;
  size_t gen_bytes;
  int gb, gt, gmax, gn; /* rows, prompt length, capacity (positions), filled positions */
  float **kc, **vc;     /* per layer [B,gmax,C] */
  float *g_x, *g_ln, *g_qkv, *g_atty, *g_fch, *g_logits;
  int *g_tok, *g_pos, *g_kstart;
  int *g_kstart_host; /* [g_kstart_cap] host copy of the rows' first key */
  int g_kstart_cap;
  /* model_decode_reorder's scratch, one layer's k or v cache [gb,gmax,C]
   * (its own allocation, made on the first reorder and kept while big
   * enough) */
  float *g_spare;
  size_t g_spare_bytes;
  int params_borrowed;        /* params are another model's (model_base_view): never freed,
                                 written or trained here */
  struct gpt2_model *view_of; /* a base view: the model whose params it borrows */
  int nviews;                 /* base views of this model alive (its weights stay as
                                 they are while any is) */
  int ckpt;                   /* activation checkpointing: the layers' activations other than
                                 their outputs (res3) share layer 0's buffers, and the backward
                                 pass recomputes each layer from its input */
  int ckpt_layer;             /* with ckpt: the layer whose activations the shared buffers hold
                                 (-1: none) */
  gpt2_lora lora;             /* LoRA adapters (lora.r 0: none); when present, the tensor list
                                 (model_tensor_at) is the adapters' and the base has no training
                                 state */
} gpt2_model;

extern const model_vtable gpt2_vtable;
static inline gpt2_model *gpt2_of(model_t *m) {
  return (gpt2_model *)m;
}
static inline const gpt2_model *gpt2_of_const(const model_t *m) {
  return (const gpt2_model *)m;
}

/* The constructor and destructor on the concrete type (gpt2_new and
 * model_free wrap them). */
int gpt2_create(gpt2_model **out, const gpt2_config *cfg, dfpo_err *err);
/* The same with the blocks laid out for weights in wd (bf16, f16: the
 * 16-bit tensors in params16, unfilled) for an import in 16 bits. */
int gpt2_create_as(gpt2_model **out, const gpt2_config *cfg, ops_dtype wd, dfpo_err *err);
void gpt2_destroy(gpt2_model *m);

/* GPT-2's LayerNorm epsilon (layer_norm_epsilon). */
#define GPT2_LN_EPS 1e-5f

/* gpt2_decode.c: decoding with the KV cache (model_decode_begin/step). */
const float *gpt2_decode_begin(gpt2_model *m, const int *tokens, const int *kstart, int B, int T,
                               int max_len, dfpo_err *err);
const float *gpt2_decode_step(gpt2_model *m, const int *next, dfpo_err *err);
int gpt2_decode_reorder(gpt2_model *m, const int *src_rows, dfpo_err *err);

/* gpt2_ckpt.c: the native checkpoint (magic GPT2_NATIVE_MAGIC) and
 * safetensors export (model_save, model_load, model_export_safetensors). */
#define GPT2_NATIVE_MAGIC "DFPOGPT2"
int gpt2_save(gpt2_model *m, const char *path, int with_optimizer, dfpo_err *err);
/* Reads a native checkpoint from fp (at its start) where `to` says
 * (ckpt_internal.h: a new model, or in place); path is for messages.
 * With the weights in bf16 or f16 (to->wd, or the model read into) each
 * matrix is rounded as it is read (model_load_as: no fp32 copy); a full
 * model's AdamW moments are then not read (a 16-bit model is frozen), a
 * LoRA section's are. */
struct ckpt_dest;
int gpt2_load_native(model_t **out, const char *path, FILE *fp, const struct ckpt_dest *to,
                     dfpo_err *err);
int gpt2_export_safetensors(const gpt2_model *m, const char *path, const model_export_opts *o,
                            dfpo_err *err);
/* model_load_peft_adapters: peft's adapter folder (the files
 * model_export_adapters writes, names base_model.model.transformer.h.<l>.
 * <module>.lora_A/B.weight) added to m as its adapters. */
int gpt2_import_adapters(gpt2_model *m, const char *dir, dfpo_err *err);

/* Parameter pointers of layer l, tensor k (GP_*). */
static inline float *gpt2_lp(const gpt2_model *m, float *base, int l, int k) {
  return base + m->tensors[2 + l * GP_PER_LAYER + k].off;
}
/* The non-layer tensors: 0 wte, 1 wpe, then layers, then lnf w, lnf b, head w, head b. */
static inline int gpt2_tidx_lnfw(const gpt2_model *m) {
  return 2 + m->cfg.n_layer * GP_PER_LAYER;
}

/* out[M,N] = x[M,K] @ W^T + bias, W the base tensor i (tensors[i]) in
 * whichever precision the model keeps it (matmul_fwd or matmul_fwd_w16). */
static inline void gpt2_linear(const gpt2_model *m, float *out, const float *x, int i,
                               const float *bias, int M, int K, int N) {
  const gpt2_tensor *t = &m->tensors[i];
  if (t->w16)
    m->base.ops->matmul_fwd_w16(out, x, m->params16 + t->off, bias, M, K, N, (int)m->wdtype);
  else
    m->base.ops->matmul_fwd(out, x, m->params + t->off, bias, M, K, N);
}
/* Layer l's linear of kind k (GP_QKVW, GP_PROJW, GP_FCW, GP_FCPW) with its
 * bias (the tensor after it) on x[M,K] into out[M,N]. */
static inline void gpt2_layer_linear(const gpt2_model *m, int l, int k, float *out, const float *x,
                                     int M, int K, int N) {
  gpt2_linear(m, out, x, 2 + l * GP_PER_LAYER + k, gpt2_lp(m, m->params, l, k + 1), M, K, N);
}
/* The embeddings out[N,C] = wte[tok[n]] + wpe[pos[n]] (wte in whichever
 * precision the model keeps it). */
static inline void gpt2_embed(const gpt2_model *m, float *out, const int *tok, const int *pos,
                              int N) {
  const gpt2_tensor *te = &m->tensors[0];
  const float *wpe = m->params + m->tensors[1].off;
  if (te->w16)
    m->base.ops->encoder_fwd_w16(out, tok, pos, m->params16 + te->off, wpe, N, m->cfg.n_embd,
                                 (int)m->wdtype);
  else
    m->base.ops->encoder_fwd(out, tok, pos, m->params + te->off, wpe, N, m->cfg.n_embd);
}

/* LoRA on layer l's linear of kind k (GPT2_LORA_*), when adapted and on:
 * out[rows, n_out] += (alpha/r) (x A^T) B, with u [rows, r] scratch that
 * receives (alpha/r) x A^T (the training forward keeps it for backward;
 * decoding passes any free buffer of rows * r floats). */
void gpt2_lora_fwd(const gpt2_model *m, int l, int k, float *out, const float *x, float *u,
                   int rows);

/* Rows of the extra head (0 none, 1 value, K classes). */
int gpt2_head_rows(const gpt2_config *cfg);
/* Allocates the training state (gradients, moments) when missing. */
int gpt2_ensure_train(gpt2_model *m, dfpo_err *err);

#endif
