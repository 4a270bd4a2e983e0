/* Internal to trainer/: what an architecture implements to be a model_t.
 *
 * An implementation's struct starts with a `struct model` (so a model_t *
 * is a pointer to it) and fills the table below; model.c dispatches the
 * public model_* calls through it and keeps the state every architecture
 * shares (the backend, the config view, the step count) in the base. The
 * contract of each entry is the public function's of the same name in
 * trainer/model.h; an entry for a part the model lacks (a head, an LM
 * head, decoding) answers DFPO_EUSAGE. docs/model-interface.md says what a
 * new architecture adds. */
#ifndef DFPO_TRAINER_MODEL_INTERNAL_H
#define DFPO_TRAINER_MODEL_INTERNAL_H

#include "trainer/model.h"
#include "trainer/ops.h"

/* What a safetensors export writes (model_export_safetensors,
 * model_export_hf). */
typedef struct model_export_opts {
  int write_config; /* config.json beside the file */
  int eot_id;       /* config.json's eos_token_id (the tokenizer's end-of-text);
                       -1: unknown, written as null (transformers' GPT2Config
                       would otherwise take GPT-2's 50256) */
  int bos_id;       /* config.json's bos_token_id: the tokenizer's own start
                       (Llama's <s>), else its end-of-text as GPT-2's; -1:
                       unknown, null */
  int lm_only;      /* transformers' LM class (GPT2LMHeadModel): its names
                       ("transformer." prefix), an extra head left out */
  int adapters;     /* the LoRA adapters alone, as peft's adapter_model.safetensors
                       (the path) and adapter_config.json beside it (model.c
                       asks it of models with adapters only) */
} model_export_opts;

/* A tensor of a model that keeps some weights in 16 bits (GPT-2, the
 * rotary decoders) as model_repack_weights moves it: its element count,
 * its offset (floats into the fp32 block, or uint16_t into the 16-bit
 * block when w16; both updated) and whether it is to be kept in 16 bits. */
typedef struct model_w16_tensor {
  size_t n, off;
  int w16, half;
} model_w16_tensor;
/* The offset of the next tensor of n values in the precision layout: in
 * the 16-bit block (*n16) when half, else the fp32 one (*n32), each count
 * advanced by n (the layout model_repack_weights and the 16-bit imports
 * share). */
static inline size_t model_w16_place(size_t n, int half, size_t *n32, size_t *n16) {
  size_t *at = half ? n16 : n32, off = *at;
  *at += n;
  return off;
}
/* A model's weight blocks: fp32 params, 16-bit params16 (NULL: none), their
 * element counts and the 16-bit type. */
typedef struct model_w16_store {
  float **params;
  uint16_t **params16;
  size_t *n32, *n16;
  ops_dtype *wdtype;
} model_w16_store;
/* model_set_weight_dtype for those models: DFPO_EUSAGE (`who` names the
 * model) for an unknown d, a view's borrowed weights, a model with base
 * views alive (nviews) or with training state of its own (training; a LoRA
 * model's adapters keep theirs: they are not moved); else
 * new blocks laid out for d (fp32 tensors compacted into one, the half
 * ones into the other), each tensor taken through the host (widened to
 * fp32, rounded to d: ops_f32_to_w16, round to nearest even), the old
 * blocks freed and s updated. *changed is set when anything moved (the
 * caller then drops what came from the old weights: its last logits and
 * decoding cache). */
int model_repack_weights(const model_t *m, const char *who, int borrowed, int nviews, int training,
                         ops_dtype d, model_w16_tensor *t, int nt, const model_w16_store *s,
                         int *changed, dfpo_err *err);

/* The end of an exported config.json that every decoder's shares:
 * bos_token_id and eos_token_id as o says (null where unknown) and
 * torch_dtype float32. */
struct cJSON;
void model_hf_config_tail(struct cJSON *cfg, const model_export_opts *o);

/* The narrowed LM head (model_batch.head_from = h, trainer/model.h): column
 * t >= h of row b of the [B, T] grid is row b (T - h) + t - h of the
 * head's compact grid. model_head_targets fills tg[B (T - h)] with the
 * targets at the head's columns (-1 for negative ones or NULL targets) and
 * answers DFPO_EUSAGE for a target >= V, or >= 0 before column h (who
 * names the model). model_head_rows copies backend rows of C floats between the grids: the
 * head's rows of src [B T, C] into dst [B (T - h), C], or with to_full
 * compact src into those rows of dst (its other rows untouched). */
int model_head_targets(int *tg, const int *targets, int B, int T, int h, int V, const char *who,
                       dfpo_err *err);
void model_head_rows(const ops_backend *o, float *dst, const float *src, int B, int T, int h,
                     size_t C, int to_full);
/* The head's per-column floats between the grids and the backend:
 * model_head_download writes host out[B T] from backend src[B (T - h)] (0
 * before column h), model_head_upload backend dst[B (T - h)] from host
 * in[B T]; buf is B (T - h) host floats, used when h > 0. */
void model_head_download(const ops_backend *o, float *out, const float *src, float *buf, int B,
                         int T, int h);
void model_head_upload(const ops_backend *o, float *dst, const float *in, float *buf, int B, int T,
                       int h);

/* Beam search's reorder (model_decode_reorder) for the architectures:
 * model_reorder_check answers DFPO_EUSAGE (who names the caller) for a
 * source row outside [0, B) and sets *identity when src[i] = i for all i;
 * model_rows_reorder makes row i of a backend tensor of B rows of `row`
 * floats old row src[i]'s (its first `used` bytes; the rest of each row
 * is left as the scratch had it), through scratch (B row floats, backend
 * memory), with the backend's copy. */
int model_reorder_check(const int *src, int B, const char *who, int *identity, dfpo_err *err);
void model_rows_reorder(const ops_backend *o, float *t, float *scratch, const int *src, int B,
                        size_t row, size_t used);
/* The rows' per-row ints (their left padding) moved the same way:
 * host[i] becomes old host[src[i]], and the result is uploaded into dev
 * (B ints of backend memory). */
void model_ints_reorder(const ops_backend *o, int *dev, int *host, const int *src, int B);

typedef struct model_vtable {
  const char *arch;
  void (*free)(model_t *m);
  void (*init_random)(model_t *m, uint64_t seed);
  size_t (*arena_bytes)(const model_t *m);
  int (*new_like)(model_t **out, const model_t *src, int head, int n_classes, dfpo_err *err);
  int (*copy_params)(model_t *dst, const model_t *src, dfpo_err *err);
  int (*copy_shared_params)(model_t *dst, const model_t *src, int *copied, dfpo_err *err);
  int (*num_tensors)(const model_t *m);
  int (*tensor_at)(const model_t *m, int i, model_tensor *t);
  int (*ensure_train)(model_t *m, dfpo_err *err);
  int (*reserve)(model_t *m, int B, int T, dfpo_err *err);
  int (*forward)(model_t *m, const model_batch *b, dfpo_err *err);
  int (*lm_logprobs)(model_t *m, const int *targets, float *logp, float *ent, dfpo_err *err);
  int (*lm_backward)(model_t *m, const float *dlogp, const float *dent, dfpo_err *err);
  int (*lm_backward_logits)(model_t *m, const float *dlogits, dfpo_err *err);
  int (*lm_loss)(model_t *m, const model_batch *b, const int *targets, int backward, float *loss,
                 dfpo_err *err);
  int (*score_tokens)(model_t *m, const int *tokens, size_t n, double *nll_sum, size_t *scored,
                      dfpo_err *err);
  int (*value_forward)(model_t *m, float *values, dfpo_err *err);
  int (*value_backward)(model_t *m, const float *dvalues, dfpo_err *err);
  int (*class_forward)(model_t *m, const int *at, float *logits, dfpo_err *err);
  int (*class_backward)(model_t *m, const float *dlogits, dfpo_err *err);
  void (*zero_grad)(model_t *m);
  float (*grad_norm)(model_t *m);
  const float *(*decode_begin)(model_t *m, const int *tokens, const int *kstart, int B, int T,
                               int max_len, dfpo_err *err);
  const float *(*decode_step)(model_t *m, const int *next, dfpo_err *err);
  /* may be NULL: model_decode_reorder answers DFPO_EUSAGE naming the arch */
  int (*decode_reorder)(model_t *m, const int *src_rows, dfpo_err *err);
  /* the parameters changed under the last forward pass, its logits and a
   * decoding's cache: all spent (a backward pass or a decoding step then
   * asks for a new forward pass or model_decode_begin). NULL: nothing kept */
  void (*forget)(model_t *m);
  int (*save)(model_t *m, const char *path, int with_optimizer, dfpo_err *err);
  int (*export_safetensors)(const model_t *m, const char *path, const model_export_opts *o,
                            dfpo_err *err);
  /* LoRA (NULL: the architecture has none; model.c answers DFPO_EUSAGE) */
  int (*add_lora)(model_t *m, const model_lora_config *c, uint64_t seed, dfpo_err *err);
  int (*lora_rank)(const model_t *m);
  int (*set_adapters)(model_t *m, int on, dfpo_err *err);
  /* model_load_peft_adapters (NULL: not read for this architecture) */
  int (*import_adapters)(model_t *m, const char *dir, dfpo_err *err);
  /* adapters: 1 for model_adapter_view (src has adapters), 0 for model_base_view */
  int (*base_view)(model_t **out, const model_t *src, int adapters, dfpo_err *err);
  /* the value head on the policy's trunk (NULL: not implemented) */
  int (*add_value_head)(model_t *m, uint64_t seed, dfpo_err *err);
  int (*lm_value_backward)(model_t *m, const float *dlogp, const float *dent, const float *dlogits,
                           const float *dvalues, dfpo_err *err);
  /* activation checkpointing (NULL: not implemented) */
  int (*set_checkpointing)(model_t *m, int on, dfpo_err *err);
  int (*checkpointing)(const model_t *m);
  /* weights in 16 bits (NULL: fp32 only; model.c answers DFPO_EUSAGE and
   * checks the training state before calling) */
  int (*set_weight_dtype)(model_t *m, ops_dtype d, dfpo_err *err);
  ops_dtype (*weight_dtype)(const model_t *m);
} model_vtable;

struct model {
  const model_vtable *vt;
  const ops_backend *ops; /* the backend the model's memory belongs to */
  model_config cfg;       /* the architecture fills it at construction */
  int step;               /* optimiser steps taken (opt_adamw_step counts them) */
  int grads_zero;         /* the gradients are known to be all zero */
  /* What model_lm_logits returns (NULL: none valid). The buffers the
   * decoding calls return may be overwritten by smp_generate's in-place
   * sampler, which then sets this to NULL. */
  const float *last_logits;
};

/* Helpers for an architecture's table (bert.c, t5.c). */
/* Copies n floats at sp (src's backend memory) to dp (dst's), through the
 * host when the backends differ. */
int model_copy_floats(const model_t *dst, float *dp, const model_t *src, const float *sp, size_t n,
                      dfpo_err *err);
/* A value head's weight [C] (the normals z_first.. of seed's init stream,
 * sd 0.02, round_first as model_fill_normal) and bias 0 appended to a
 * model's fp32 block (*params, n floats of backend memory): a new block of
 * n + C + 1 floats with the old contents first, the old one freed
 * (model_add_value_head's common part). */
int model_grow_value_head(const model_t *m, float **params, size_t n, int C, uint64_t seed,
                          uint64_t first, int round_first, dfpo_err *err);
/* An adapter view's check that a source's base is its own: a's blocks
 * (n32 floats at a32, n16 16-bit weights at a16) against b's, DFPO_EUSAGE
 * naming a's architecture when they differ. */
int model_same_base(const model_t *a, const float *a32, const uint16_t *a16, const model_t *b,
                    const float *b32, const uint16_t *b16, size_t n32, size_t n16, dfpo_err *err);
/* the same for bytes of any element type (16-bit weights) */
int model_copy_bytes(const model_t *dst, void *dp, const model_t *src, const void *sp, size_t bytes,
                     dfpo_err *err);
/* tensor_at's answer for a tensor of rows x cols floats at offset off of
 * the parameter block params and of the gradient and AdamW moment blocks
 * laid out as it (each may be NULL: no training state yet). */
int model_tensor_fill(model_tensor *t, const char *name, int rows, int cols, int decay, size_t off,
                      float *params, float *grads, float *m1, float *m2);
/* copy_shared_params through the tensor lists: every tensor of dst whose
 * name and shape a tensor of src has. */
int model_copy_shared_by_name(model_t *dst, const model_t *src, int *copied, dfpo_err *err);

/* The path of the config.json beside the weights file path (in the same
 * folder), into buf[n]; DFPO_EUSAGE when it does not fit. */
int model_config_beside(const char *path, char *buf, size_t n, dfpo_err *err);

/* Passes over the table's forward and lm_logprobs that every decoder
 * shares: lm_loss without backward (the mean next-token cross-entropy
 * over targets >= 0; rdec.c's lm_loss without backward), and
 * score_tokens in the half-overlapping windows of n_ctx tokens that
 * model_score_tokens documents, one row of the sequence per window, no
 * padding (gpt2.c, rdec.c). */
int model_lm_loss_forward(model_t *m, const model_batch *b, const int *targets, float *loss,
                          dfpo_err *err);
int model_score_windows(model_t *m, const int *tokens, size_t n, double *nll_sum, size_t *scored,
                        dfpo_err *err);

/* The training state of a model of n parameters, once: one zeroed block
 * of the backend's memory holding the gradients, AdamW's first and second
 * moments (n floats each) into *block, *grads, *m1, *m2, and grads_zero
 * set. Nothing happens when *block is already set. */
int model_alloc_train(model_t *m, size_t n, float **block, float **grads, float **m1, float **m2,
                      dfpo_err *err);

/* dst[0..n) (host memory) = sd z_j for the normals z_first, z_first+1, ...
 * of the stream that *start begins (dfpo_rng_normal, four u32 draws each;
 * *start is not moved): (float)(sd z) in double, or with round_first
 * (float)z * (float)sd in float, GPT-2's form. Threads take chunks of dst,
 * each from its own start (dfpo_rng_advance): the same bits as drawing the
 * normals one after the other, whatever the thread count. The
 * architectures' random initialisations, which count the normals they
 * have drawn so far into first. */
void model_fill_normal(float *dst, size_t n, const dfpo_rng *start, uint64_t first, double sd,
                       int round_first);

/* LoRA (model.h's model_add_lora) pieces every architecture with adapters
 * shares (trainer/model_lora.c; gpt2.c, rdec.c). */
/* The comma-separated target list into bits (bit k: names[k], of n <= 32;
 * NULL or "": every one); an unknown name is DFPO_EUSAGE listing the
 * architecture's (arch names it in the message). */
int model_lora_targets(const char *list, const char *const *names, int n, const char *arch,
                       unsigned *bits, dfpo_err *err);
/* The names of target bits as a comma-separated list into buf[len]. */
void model_lora_target_list(unsigned bits, const char *const *names, int n, char *buf, size_t len);
/* Rank in [1, max_rank] and a finite positive alpha, else DFPO_EUSAGE. */
int model_lora_check(const model_lora_config *c, int max_rank, const char *arch, dfpo_err *err);
/* A [r, nin] (host memory) drawn as PyTorch's nn.Linear and peft draw it:
 * Kaiming-uniform with a = sqrt 5, U(-1/sqrt(nin), 1/sqrt(nin)). */
void model_lora_init_a(float *a, int r, int nin, dfpo_rng *rng);
/* out[rows, nout] += s (x A^T) Bt, x [rows, nin], A [r, nin], Bt [r, nout]
 * (B stored transposed), s = alpha / r; u [rows, r] receives s x A^T (the
 * backward pass reads it). Backend memory. */
void model_lora_fwd(const ops_backend *o, float *out, const float *x, const float *A,
                    const float *Bt, float *u, int rows, int nin, int nout, int r, float s);
/* Its backward pass: with u as model_lora_fwd left it and dout [rows, nout]
 * the output's gradient, dBt += u^T dout (dBt NULL: not wanted); du [rows,
 * r] = s dout Bt^T (scratch); dA += du^T x; dx [rows, nin] += du A (dx
 * NULL: not wanted). */
void model_lora_bwd(const ops_backend *o, float *dx, float *dA, float *dBt, float *du,
                    const float *dout, const float *x, const float *u, const float *A,
                    const float *Bt, int rows, int nin, int nout, int r, float s);

/* A bump allocator for laying out buffers inside an arena: a sizing pass
 * with base NULL counts the bytes, the real pass hands out pointers. Every
 * buffer is 64-byte aligned. */
typedef struct bump {
  char *base;
  size_t off;
} bump;
static inline void *take(bump *b, size_t bytes) {
  void *p = b->base ? b->base + b->off : NULL;
  b->off += (bytes + 63) & ~(size_t)63;
  return p;
}
#define TAKEF(b, n) ((float *)take(b, (size_t)(n) * sizeof(float)))

#endif
