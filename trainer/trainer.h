/* trainer: everything that turns text into a model and a model into a
 * policy: the compute backends (ops_), the tokenizer (tok_), the GPT-2 model
 * (gpt2_), sampling, optimisation, checkpoints and the RL algorithms (rl_).
 *
 * Depends on common/ only. Ownership: structs filled by a function belong to
 * the caller; strings the library returns in such structs point into the
 * struct itself unless a comment says otherwise.
 */
#ifndef DFPO_TRAINER_H
#define DFPO_TRAINER_H

#include "common/common.h"

/* ------------------------------------------------------ backends (ops_) */

/* What the compute backends of this build offer on this machine. */
typedef struct ops_env_info {
  int cpu_threads;       /* OpenMP threads the CPU backend uses */
  int online_cpus;       /* processors the OS reports online */
  int blas_threads;      /* threads OpenBLAS runs with in the CPU backend (1) */
  char blas[256];        /* OpenBLAS build configuration and core */
  int cpu_isa;           /* vector width of the own CPU kernels: 512, 256 or 0 */
  int cuda_compiled;     /* the CUDA backend is part of this build */
  int cuda_devices;      /* usable devices (0 when none) */
  char cuda_runtime[64]; /* CUDA runtime version, when compiled in */
  char cuda_device[256]; /* first device's name and memory, when usable */
  char cuda_reason[512]; /* why no device is usable, in the driver's words */
} ops_env_info;

/* Fills info; never fails: what cannot be learned is reported in the text
 * fields. Safe on machines without a GPU or driver. */
void ops_env_probe(ops_env_info *info);

/* Compute devices. AUTO is a request only: resolving it gives CPU or CUDA. */
typedef enum { OPS_DEVICE_CPU = 0, OPS_DEVICE_CUDA = 1, OPS_DEVICE_AUTO = 2 } ops_device;
/* "cpu", "cuda" or "auto" (anything else: DFPO_EUSAGE naming the text). */
int ops_device_parse(const char *s, ops_device *out, dfpo_err *err);
const char *ops_device_name(ops_device d);
/* Resolves a request to a usable device. CPU: always. CUDA: when this build
 * has the CUDA backend and device 0 can be set up (context and cuBLAS),
 * else DFPO_ERUNTIME with the driver's or runtime's reason. AUTO: CUDA when
 * usable, else CPU with the reason in note[n] (note[0] stays 0 when nothing
 * fell back; note may be NULL). */
int ops_device_resolve(ops_device want, ops_device *got, char *note, size_t n, dfpo_err *err);
/* The device on which gpt2_new (and so gpt2_load and the importers) puts
 * new models from now on; process-wide, default CPU. d must be resolved
 * (CPU, or CUDA after ops_device_resolve said it is usable). */
void ops_use_device(ops_device d);
ops_device ops_current_device(void);
/* TF32 tensor cores for the CUDA backend's matrix products (default off:
 * fp32 throughout); no effect on the CPU backend. */
void ops_set_tf32(int on);
int ops_tf32(void);
/* bf16 matrix products for the CUDA backend (default off): the fp32
 * matrices are rounded to bf16 inside cuBLAS for the tensor cores and the
 * products accumulate in fp32, so the weights, gradients and AdamW state
 * stay fp32 (the master copy); wins over TF32. No effect on the CPU. */
void ops_set_bf16(int on);
int ops_bf16(void);

/* ----------------------------------------------------- tokenizer (tok_) */

/* GPT-2's byte-level BPE (Radford et al. 2019; OpenAI's gpt-2/src/encoder.py),
 * exact to the reference: text is split by the GPT-2 pattern (PCRE2, UTF-8
 * and Unicode properties), each piece's bytes are mapped to byte tokens and
 * merged by rank. Bytes that are not valid UTF-8 split like a character that
 * is neither letter, number nor space (as Python's surrogateescape decoding
 * makes them) and encode to their own byte tokens, so every byte string
 * round-trips. docs/tokenizer.md describes the details.
 *
 * A tok_tokenizer is immutable after loading except for its encoder states
 * (word cache and scratch space, one per OpenMP thread, kept from call to
 * call): so tok_encode and tok_encode_many are one call at a time per object
 * (tok_encode_many itself runs on all threads). Loaded tokenizers are
 * cheap to have one per thread if more concurrency is needed. */
typedef struct tok_tokenizer tok_tokenizer;

/* A growable id vector; zero-initialise, free with tok_ids_free. */
typedef struct tok_ids {
  int32_t *ids;
  size_t n, cap;
} tok_ids;

void tok_ids_free(tok_ids *v);

/* Encode flags. Without TOK_ALLOW_SPECIAL a special token's text
 * ("<|endoftext|>") is encoded as ordinary text. */
enum { TOK_ALLOW_SPECIAL = 1 };

/* Loads a tokenizer from `path`: a folder holding encoder.json + vocab.bpe
 * (OpenAI's files), vocab.json + merges.txt (Hugging Face's slow form) or
 * tokenizer.json (Hugging Face's fast form), or a tokenizer.json file itself.
 * Errors name the file, and the line for merges files and malformed JSON.
 * *out is the caller's; free with tok_free. */
int tok_load(tok_tokenizer **out, const char *path, dfpo_err *err);
/* A vocabulary JSON object (token -> id) and a merges file. */
int tok_load_files(tok_tokenizer **out, const char *vocab_json, const char *merges, dfpo_err *err);
/* Hugging Face tokenizer.json with a "BPE" model. */
int tok_load_hf_json(tok_tokenizer **out, const char *path, dfpo_err *err);
void tok_free(tok_tokenizer *t);

/* One more than the largest id. */
size_t tok_vocab_size(const tok_tokenizer *t);
size_t tok_merge_count(const tok_tokenizer *t);
/* The id of "<|endoftext|>", or -1 when the vocabulary lacks it. */
int32_t tok_eot_id(const tok_tokenizer *t);
/* The bytes of token id (not NUL-terminated; points into t), or NULL for an
 * id outside the vocabulary. */
const char *tok_token_bytes(const tok_tokenizer *t, int32_t id, size_t *len);

/* Appends the ids of text[0..len) to out. */
int tok_encode(tok_tokenizer *t, const char *text, size_t len, int flags, tok_ids *out,
               dfpo_err *err);
/* Encodes n documents on all OpenMP threads, one word cache per thread
 * (kept in t for the next call); outs[i] (zero-initialised by the caller)
 * receives document i's ids. The result is the same as n calls to
 * tok_encode. */
int tok_encode_many(tok_tokenizer *t, const char *const *texts, const size_t *lens, size_t n,
                    int flags, tok_ids *outs, dfpo_err *err);
/* Appends the bytes of ids to *buf (heap, grown with realloc, caller frees;
 * *len and *cap describe it, zero-initialise both with *buf NULL). An id
 * outside the vocabulary is an error naming it and its position. */
int tok_decode(const tok_tokenizer *t, const int32_t *ids, size_t n, char **buf, size_t *len,
               size_t *cap, dfpo_err *err);

/* Trains a byte-level BPE on the files in `corpus` (each read whole and split
 * by the GPT-2 pattern) until the vocabulary has vocab_size entries: the 256
 * byte tokens (in GPT-2's order), one per merge, and "<|endoftext|>" last.
 * Each step merges the most frequent adjacent pair; ties go to the pair whose
 * (left bytes, right bytes) is smallest bytewise. Writes encoder.json and
 * vocab.bpe into out_dir (created; files written atomically). Deterministic.
 * A merge whose bytes are already a token reuses that token. Stops early,
 * with a warning, when no pair is left. *merges_done (optional) receives the
 * number of merges learned. */
int tok_train(const char *const *corpus, size_t n_corpus, size_t vocab_size, const char *out_dir,
              size_t *merges_done, dfpo_err *err);

/* Test hook: words of at least n symbols are merged with the heap-based
 * algorithm instead of the quadratic scan (default 48); both give the same
 * ids. */
void tok_set_heap_threshold(size_t n);

/* ---------------------------------------------------- GPT-2 (gpt2_) */

/* GPT-2 (Radford et al. 2019): pre-LayerNorm blocks, tanh-GELU MLP, learned
 * positions, the LM head tied to the token embedding. Any size. Optionally a
 * second head on the final hidden states: a scalar value head (value models)
 * or a K-way classification head (judges). docs/engine.md describes the
 * arena, the formats and the tolerances the tests hold it to. */

enum { GPT2_HEAD_NONE = 0, GPT2_HEAD_VALUE = 1, GPT2_HEAD_CLASS = 2 };

typedef struct gpt2_config {
  int n_layer, n_head, n_embd; /* n_embd % n_head == 0 */
  int vocab_size;              /* 50257 for the GPT-2 tokenizer */
  int n_ctx;                   /* positions (wpe rows) */
  int head;                    /* GPT2_HEAD_* (the LM head always exists) */
  int n_classes;               /* GPT2_HEAD_CLASS: K */
} gpt2_config;

/* Fills cfg for a named shape: gpt2-124M (alias gpt2), gpt2-350M
 * (gpt2-medium), gpt2-774M (gpt2-large), gpt2-1558M (gpt2-xl), gpt2-tiny
 * (2 layers, 2 heads, 64 wide, 512 tokens of context, GPT-2 vocabulary). */
int gpt2_config_named(gpt2_config *cfg, const char *name, dfpo_err *err);
/* Checks that a config is usable; the message names the bad field. */
int gpt2_config_check(const gpt2_config *cfg, dfpo_err *err);

typedef struct gpt2_model gpt2_model; /* opaque; gpt2_free releases it */

/* A model with zeroed parameters (LayerNorm gains 1) on the current device
 * (ops_use_device; the CPU unless a command chose otherwise). */
int gpt2_new(gpt2_model **out, const gpt2_config *cfg, dfpo_err *err);
/* The device the model's arena lives on. */
ops_device gpt2_device(const gpt2_model *m);
void gpt2_free(gpt2_model *m);
/* GPT-2's initialisation from the DFPO_STREAM_INIT stream of seed: weights
 * N(0, 0.02), residual projections N(0, 0.02/sqrt(2 n_layer)), biases 0,
 * LayerNorm 1/0, heads N(0, 0.02). */
void gpt2_init_random(gpt2_model *m, uint64_t seed);
const gpt2_config *gpt2_get_config(const gpt2_model *m);
size_t gpt2_num_params(const gpt2_model *m);
/* Copies the parameters (not gradients or optimiser state) of src into dst;
 * the configs must match (the devices need not). For reference policies and
 * mask models. */
int gpt2_copy_params(gpt2_model *dst, const gpt2_model *src, dfpo_err *err);
/* Bytes held by the model's arena (parameters, training state, activations,
 * KV cache) right now. */
size_t gpt2_arena_bytes(const gpt2_model *m);

/* Copies into dst every parameter tensor of src with the same name and
 * shape (a value model's trunk from a policy); the devices need not match.
 * *copied (may be NULL) receives the number of tensors copied. */
int gpt2_copy_shared_params(gpt2_model *dst, const gpt2_model *src, int *copied, dfpo_err *err);

/* Parameter access by tensor (backend pointers: host memory on the CPU
 * backend, device memory on CUDA; for tests and tools). Names follow Hugging Face without the
 * "transformer." prefix
 * ("wte.weight", "h.0.attn.c_attn.weight", ...), shapes are ours: linear
 * weights [out, in]. Returns the number of tensors; fills what is asked. */
int gpt2_num_tensors(const gpt2_model *m);
int gpt2_tensor_info(const gpt2_model *m, int i, const char **name, int *rows, int *cols,
                     float **param, float **grad);

/* Forward pass of the trunk over tokens[B,T] (row-major). kstart[b] (NULL: 0)
 * is the number of left-padding tokens of row b: those are neither attended
 * to nor counted in positions (row b's first real token has position 0).
 * Keeps the activations for one backward pass. Needs B*T <= whatever memory
 * allows and T + max(kstart) <= n_ctx + max(kstart), i.e. T - kstart <= n_ctx. */
int gpt2_forward(gpt2_model *m, const int *tokens, const int *kstart, int B, int T, dfpo_err *err);
/* Sizes the activation memory for passes of up to B rows of T tokens now,
 * so that a run of passes of varying smaller shapes (evaluation batches)
 * lays out in one block instead of growing it pass by pass. Forgets the
 * last forward pass. */
int gpt2_reserve(gpt2_model *m, int B, int T, dfpo_err *err);
/* After gpt2_forward: the LM head's log-probability of targets[B,T] (a
 * negative target gives 0) and, when ent is not NULL, the entropy of each
 * position's next-token distribution. Outputs [B*T], caller-owned. */
int gpt2_lm_logprobs(gpt2_model *m, const int *targets, float *logp, float *ent, dfpo_err *err);
/* After gpt2_lm_logprobs: accumulates into the gradients the gradient of
 * sum dlogp[i] logp[i] + dent[i] ent[i] (dent may be NULL; so may dlogp). */
int gpt2_lm_backward(gpt2_model *m, const float *dlogp, const float *dent, dfpo_err *err);
/* After gpt2_lm_logprobs, instead of gpt2_lm_backward: accumulates the
 * gradient of sum_{i,v} dlogits[i, v] logits[i, v], dlogits [B*T, V] on the
 * host. For losses of other functions of the logits than the targets'
 * log-probabilities (a policy renormalised over a mask: NLPO). */
int gpt2_lm_backward_logits(gpt2_model *m, const float *dlogits, dfpo_err *err);
/* The LM logits of the last gpt2_forward or of the last decoding call
 * ([B*T, V] or [B, V], owned by the model, valid until the next call), after
 * gpt2_lm_logprobs (which computes them) and before gpt2_lm_backward (which
 * overwrites them). */
const float *gpt2_lm_logits(const gpt2_model *m);
/* The model's buffers that gpt2_lm_logits, gpt2_decode_begin and
 * gpt2_decode_step return are backend memory (device memory on CUDA). This
 * gives n floats of such a buffer from p on the host: p itself on the CPU
 * backend (no copy), else a download into buf (n floats, the caller's) and
 * buf. */
const float *gpt2_host_view(const gpt2_model *m, const float *p, size_t n, float *buf);
/* Mean next-token cross-entropy over positions with targets >= 0 (0 when
 * there are none); with backward, accumulates its gradient. */
int gpt2_lm_loss(gpt2_model *m, const int *tokens, const int *targets, const int *kstart, int B,
                 int T, int backward, float *loss, dfpo_err *err);

/* Next-token negative log-likelihood of tokens[n] (the first token is
 * context only: prepend <|endoftext|> to score it). Longer than n_ctx, the
 * sequence is scored in windows of n_ctx tokens that overlap by half a
 * window, so every scored token has at least min(n_ctx/2, its index) tokens
 * of context and is scored once. *nll_sum and *scored (n - 1) receive the
 * totals. */
int gpt2_score_tokens(gpt2_model *m, const int *tokens, size_t n, double *nll_sum, size_t *scored,
                      dfpo_err *err);

/* After gpt2_forward on a GPT2_HEAD_VALUE model: values[B*T]. Then
 * gpt2_value_backward accumulates the gradient of sum dvalues[i] values[i]. */
int gpt2_value_forward(gpt2_model *m, float *values, dfpo_err *err);
int gpt2_value_backward(gpt2_model *m, const float *dvalues, dfpo_err *err);
/* After gpt2_forward on a GPT2_HEAD_CLASS model: logits[B, K] of the hidden
 * state at position at[b] of each row (usually its last real token). */
int gpt2_class_forward(gpt2_model *m, const int *at, float *logits, dfpo_err *err);
int gpt2_class_backward(gpt2_model *m, const float *dlogits, dfpo_err *err);

/* Training state (gradients, AdamW moments) is allocated on first use. */
void gpt2_zero_grad(gpt2_model *m);
/* Global L2 norm of all gradients. */
float gpt2_grad_norm(gpt2_model *m);

typedef struct gpt2_adamw {
  float beta1, beta2, eps;
  float weight_decay; /* applied to matrices (2-D tensors) only, as nanoGPT */
  float clip;         /* global grad-norm clip (<= 0: none) */
} gpt2_adamw;
/* PyTorch's defaults: 0.9, 0.999, 1e-8, weight decay 0.01, no clipping. */
gpt2_adamw gpt2_adamw_default(void);
/* One AdamW step at learning rate lr (clipping first when asked); *norm
 * (optional) receives the gradient norm before clipping. */
int gpt2_adamw_step(gpt2_model *m, const gpt2_adamw *opt, float lr, float *norm, dfpo_err *err);
/* Optimiser steps taken so far (restored by checkpoints). */
int gpt2_step_count(const gpt2_model *m);

enum { GPT2_LR_CONSTANT = 0, GPT2_LR_LINEAR = 1, GPT2_LR_COSINE = 2 };
typedef struct gpt2_lr_schedule {
  int kind;         /* GPT2_LR_*: after warmup, constant, linear to min_lr, or cosine to min_lr */
  float lr, min_lr; /* peak and final rate */
  int warmup;       /* linear warmup steps from lr/warmup */
  int total;        /* steps of the whole schedule */
} gpt2_lr_schedule;
/* The rate for step (0-based). */
float gpt2_lr_at(const gpt2_lr_schedule *s, int step);

/* Decoding with a KV cache. gpt2_decode_begin runs the prompts tokens[B,T]
 * (left-padded by kstart, NULL: none) and returns the next-token logits
 * [B, V] of their last position; gpt2_decode_step feeds one token per row
 * and returns the next logits. Room for max_len (<= n_ctx + max kstart)
 * positions in all. The logits are owned by the model and valid until the
 * next call; NULL on error. */
const float *gpt2_decode_begin(gpt2_model *m, const int *tokens, const int *kstart, int B, int T,
                               int max_len, dfpo_err *err);
const float *gpt2_decode_step(gpt2_model *m, const int *next, dfpo_err *err);

/* A per-step logit mask: may set entries of logits[B, V] (after temperature)
 * to -INFINITY to forbid tokens. seqs is the output array [B, max_new]:
 * seqs[b * max_new + i] for i < step are the tokens drawn so far (-1 after a
 * row ended). A callback that needs another model's distribution at the same
 * step (the reference policy, NLPO's mask model) keeps that model in ctx,
 * starts it with gpt2_decode_begin on the same prompts and feeds it the
 * previous step's tokens with gpt2_decode_step. Returns 0, or nonzero to stop
 * generation with an error. */
typedef int (*gpt2_mask_fn)(void *ctx, int step, int B, int V, const int *seqs, float *logits);
/* A per-step allowed set that does not need the policy's own logits (NLPO's
 * mask model): fills allow[B, V] (1 = may be drawn, 0 = banned; seqs as
 * for gpt2_mask_fn). The set goes to the backend with the sampler, so the
 * logits stay where they are (on CUDA: no [B, V] logits download per step,
 * as with gpt2_mask_fn). Returns 0, or nonzero to stop with an error. */
typedef int (*gpt2_allow_fn)(void *ctx, int step, int B, int V, const int *seqs,
                             unsigned char *allow);

typedef struct gpt2_sampling {
  int max_new, min_new; /* new tokens: at most, and before end-of-text may be drawn */
  float temperature;    /* 0: greedy */
  int top_k;            /* 0: off */
  float top_p;          /* 1: off */
  int eos;              /* end-of-text id (50256 for GPT-2); < 0: none */
  gpt2_mask_fn mask;    /* may be NULL; with it the logits come to the host each step */
  void *mask_ctx;
  gpt2_allow_fn allow; /* may be NULL; applied after mask */
  void *allow_ctx;
} gpt2_sampling;
gpt2_sampling gpt2_sampling_default(void);

/* Draws one token from logits[V] (modified in place) under s; uses one
 * uniform draw from rng (none when greedy). *logp (optional) receives the
 * token's log-probability under the distribution it was drawn from (after
 * temperature, masks, top-k and top-p). */
int gpt2_sample_token(float *logits, int V, const gpt2_sampling *s, dfpo_rng *rng, float *logp);

/* Batched sampling: out[B, max_new] (-1 after a row ended), lens[B] new
 * tokens per row (the end-of-text token included when drawn), logps[B,
 * max_new] (optional) as in gpt2_sample_token. Each step draws one uniform
 * per live row (in row order) on the host and samples with the backend's
 * sample op where the logits are (on the device with CUDA, unless a
 * gpt2_mask_fn needs them on the host; then the CPU's op samples there):
 * the same tokens on every backend from the same logits and seed. The
 * model's last logits are spent (gpt2_lm_logits gives NULL after). */
int gpt2_generate(gpt2_model *m, const int *prompts, const int *kstart, int B, int T,
                  const gpt2_sampling *s, dfpo_rng *rng, int *out, int *lens, float *logps,
                  dfpo_err *err);

/* Checkpoints. The native format (docs/engine.md): magic "DFPOGPT2",
 * version, config, fp32 parameters, optionally the AdamW state; written
 * atomically. gpt2_load reads a native checkpoint or a Hugging Face
 * model.safetensors (by content); *out is a new model the caller frees. */
int gpt2_save(gpt2_model *m, const char *path, int with_optimizer, dfpo_err *err);
int gpt2_load(gpt2_model **out, const char *path, dfpo_err *err);
/* Hugging Face GPT-2 model.safetensors (F32; F16/BF16 read too). The config
 * comes from cfg when not NULL, else the header's __metadata__, else a
 * config.json beside the file, else the tensor shapes (n_head then needs one
 * of the others). Names with or without "transformer.", Conv1D weights
 * transposed, lm_head.weight (tied) ignored when present. */
int gpt2_import_safetensors(gpt2_model **out, const char *path, const gpt2_config *cfg,
                            dfpo_err *err);
/* Writes model.safetensors (Hugging Face names and layouts, config in
 * __metadata__) atomically, and config.json beside it when write_config. */
int gpt2_export_safetensors(const gpt2_model *m, const char *path, int write_config, dfpo_err *err);

/* ------------------------------------------------------- RL (rl_) */

/* The arithmetic of the RL algorithms (DESIGN.md section 7), over plain
 * arrays so that it can be tested against hand computations and brute force
 * and shared by every backend. docs/algorithms.md gives the equations.
 * Batched arrays are [B, T] row-major; lengths[b] is the number of valid
 * tokens of row b (positions >= lengths[b] are padding: outputs there are 0).
 * A vocabulary-sized mask is one byte per token (1 = in the set). */

/* Generalised advantage estimation (Schulman et al. 2016) per row:
 * delta_t = r_t + gamma V_{t+1} - V_t with V = 0 after the last valid token
 * (the episode ends there), A_t = sum_k (gamma lambda)^k delta_{t+k},
 * returns_t = A_t + V_t. adv and ret are written (they may not alias the
 * inputs). */
void rl_gae(const float *rewards, const float *values, const int *lengths, int B, int T,
            float gamma, float lambda, float *adv, float *ret);

/* RL4LMs' per-token PPO reward: r_t = -beta (logp_old_t - logp_ref_t), plus
 * the task reward R[b] at the last valid token. Padding gets 0. */
void rl_kl_rewards(const float *logp_old, const float *logp_ref, const float *task_reward,
                   const int *lengths, int B, int T, float beta, float *rewards);

/* Mean and sample standard deviation (n - 1 in the denominator, as
 * torch.std) of the valid entries, then x = (x - mean) / (sd + 1e-8) on
 * them. Fewer than two valid entries: only the mean is removed. */
void rl_normalize(float *x, const int *lengths, int B, int T);

/* The adaptive KL controller of DESIGN.md section 7:
 * beta * (1 + 0.1 * clip((kl - target) / target, -0.2, 0.2)). */
double rl_kl_adaptive(double beta, double kl, double target);

/* PPO's clipped surrogate over n tokens with weights w (1 valid, 0 padding;
 * may be NULL for all valid): returns the mean over valid tokens of
 * -min(rho A, clip(rho, 1 - eps, 1 + eps) A), rho = exp(logp - logp_old);
 * dlogp[i] = d loss / d logp[i] (already divided by the count). *clipfrac
 * (may be NULL) gets the share of valid tokens where the clip was active. */
double rl_ppo_policy_loss(const float *logp, const float *logp_old, const float *adv,
                          const float *w, int n, float eps, float *dlogp, double *clipfrac);

/* The plain policy-gradient term: mean over valid tokens of -logp A (DfPO's
 * policy loss with truncated advantages); dlogp[i] = -w_i A_i / count. */
double rl_pg_loss(const float *logp, const float *adv, const float *w, int n, float *dlogp);

/* DfPO's KL-masking of one state (DESIGN.md section 7) for sampling from pi+
 * (sign > 0: M+ = {a : pi_theta(a) <= pi_ref(a)}) or pi- (sign <= 0: M- =
 * {a : pi_theta(a) >= pi_ref(a)}). z: the policy's logits (tempered), masked
 * in place (-inf outside the set); r: the reference's logits, scaled by
 * inv_t. Both distributions are taken over the sampler's support: the
 * tokens whose z is finite, less `ban` (the end-of-text token before the
 * minimum length; -1 for none), which gets -inf. Over the whole vocabulary
 * the set can hold only the banned token, and the sampler would have
 * nothing to draw; over the support it always holds a token, since both
 * distributions sum to 1 there (and the token with the extreme log-ratio is
 * kept should rounding empty it). Returns the number of tokens kept: 0 only
 * when the support is empty. */
int rl_dfpo_mask_logits(float *z, const float *r, float inv_t, int V, int sign, int ban);

/* log of pi renormalised over the set: out[a] = logp[a] - log sum_{m} p for a
 * in mask, -inf elsewhere. Returns the log of the set's mass under pi
 * (-inf for an empty set, when out is all -inf). */
double rl_masked_logprobs(const float *logp, const unsigned char *mask, int V, float *out);

/* DfPO's truncated advantages: A+ = max(A, 0) for rollouts from pi+
 * (sign > 0), A- = min(A, 0) for rollouts from pi- (sign < 0). */
void rl_truncate_advantages(float *adv, int n, int sign);

/* NLPO's mask: the smallest set of most likely tokens whose probability sum
 * reaches top_p, never fewer than k_min (nor more than V). Ties are broken by
 * the lower token id. probs need not be normalised exactly. Writes mask and
 * returns the set's size. */
int rl_top_p_mask(const float *probs, int V, float top_p, int k_min, unsigned char *mask);

/* The log-probability of token a under the distribution softmax(z) renormalised
 * over mask (NULL: the whole vocabulary), i.e. z[a] - log sum_{j in mask}
 * exp(z[j]); -inf (and dz all 0) when a is outside the set. With dz, writes
 * the gradient of g times that log-probability with respect to z:
 * dz[j] = g (1[j = a] - pi_mask(j)) on the set, 0 elsewhere. */
double rl_masked_logit_grad(const float *z, const unsigned char *mask, int V, int a, float g,
                            float *dz);

/* DfPO with the mask at the update (rollouts from pi_theta): token i keeps
 * max(A, 0) when it is in M+ (logp_old <= logp_ref), min(A, 0) when it is in
 * M- (logp_old >= logp_ref), both terms when it is in both (equal), so a
 * token outside a term's set contributes nothing to that term. */
void rl_dfpo_update_advantages(float *adv, const float *logp_old, const float *logp_ref, int n);

/* ------------------------------------------------ RL training (rl_train) */

/* A task reward: fills rewards[B] for the continuations cont[B, max_new]
 * (lens[b] tokens each; -1 after) of the prompts[B, Tp] (left-padded by
 * kstart, NULL: none). Returns a DFPO_* code. */
typedef int (*rl_reward_fn)(void *ctx, int B, const int *prompts, const int *kstart, int Tp,
                            const int *cont, const int *lens, int max_new, float *rewards,
                            dfpo_err *err);

enum { RL_PPO = 0, RL_NLPO = 1, RL_DFPO = 2 };
enum { RL_MASK_AT_SAMPLE = 0, RL_MASK_AT_UPDATE = 1 };

typedef struct rl_config {
  int algo;               /* RL_PPO, RL_NLPO or RL_DFPO */
  int epochs;             /* passes over each iteration's rollouts */
  int minibatch;          /* rollouts per gradient step */
  float lr, weight_decay; /* AdamW, for the policy and the value model */
  float max_grad_norm;    /* global clip per model (<= 0: none) */
  float gamma, lambda;    /* GAE */
  float clip_eps;         /* PPO's surrogate clip */
  float vf_coef;          /* weight of the value loss 0.5 (V - R)^2 */
  int kl_adaptive;        /* PPO: adaptive (1) or fixed (0) beta */
  float beta, kl_target;  /* PPO: initial/fixed beta; the adaptive target */
  int dfpo_mask_at;       /* RL_MASK_AT_SAMPLE or RL_MASK_AT_UPDATE */
  float dfpo_ratio_clip;  /* > 0: DfPO's optional PPO ratio clip */
  float nlpo_top_p;       /* NLPO: the mask model's nucleus p */
  int nlpo_k_min;         /* NLPO: the smallest mask */
  int nlpo_mask_refresh;  /* NLPO: mu, iterations between mask-model refreshes */
  gpt2_sampling sampling; /* rollout sampling; its mask must be NULL */
} rl_config;

/* DESIGN.md section 7's defaults (the paper's Table 3 and RL4LMs' IMDB PPO
 * settings): epochs 5, minibatch 64, lr 1e-5, max grad norm 0.5, gamma 0.99, lambda
 * 0.95, eps 0.2, vf 0.5, adaptive beta 0.1 with target 0.1; NLPO p 0.9,
 * k_min 100, mu 5. */
rl_config rl_config_default(void);

/* What one iteration measured. */
typedef struct rl_stats {
  double reward;   /* mean task reward of the rollouts */
  double kl_seq;   /* mean over rollouts of sum_t (log pi_old - log pi_ref) of the sampled tokens */
  double kl_token; /* mean over generated tokens of the exact KL(pi_old(.|s) || pi_ref(.|s)) */
  double mean_len; /* mean generated tokens per rollout */
  double policy_loss; /* of the last minibatch */
  double value_loss;  /* of the last minibatch */
  double clipfrac;    /* of the last minibatch (PPO, or DfPO with a ratio clip) */
  double beta;        /* the KL coefficient used for this iteration's rewards */
  double mask_mean;   /* NLPO: mean size of the sampling masks (0 otherwise) */
  int mask_min;       /* NLPO: smallest sampling mask (0 otherwise) */
  /* wall-clock seconds of the iteration's parts (for dfpo bench) */
  double time_generate; /* rollouts, masks' lock-step models included */
  double time_passes;   /* policy, reference and value forward passes over the rollouts */
  double time_reward;   /* the reward callback */
  double time_update;   /* GAE and the minibatch epochs of both models */
} rl_stats;

typedef struct rl_trainer rl_trainer; /* opaque; rl_trainer_free releases it */

/* A trainer over borrowed models: the policy and the value model (a
 * GPT2_HEAD_VALUE model) are trained in place; the reference stays frozen.
 * All three must share the vocabulary. */
int rl_trainer_new(rl_trainer **out, gpt2_model *policy, gpt2_model *ref, gpt2_model *value,
                   const rl_config *cfg, uint64_t seed, dfpo_err *err);
void rl_trainer_free(rl_trainer *t);

/* One iteration: B rollouts of the prompts[B, Tp] (DfPO: the first half from
 * pi+, the rest from pi-; NLPO: from the policy renormalised over the mask
 * model's top-p set), their rewards, GAE, then `epochs` passes of minibatch
 * updates of the policy and the value model; the adaptive KL controller
 * steps once at the end. docs/algorithms.md has the equations. */
int rl_iterate(rl_trainer *t, const int *prompts, const int *kstart, int B, int Tp,
               rl_reward_fn reward, void *reward_ctx, rl_stats *stats, dfpo_err *err);

/* What a trainer carries from one iteration to the next besides the models'
 * parameters and AdamW states: enough, with those, to resume bit for bit. */
typedef struct rl_trainer_state {
  double beta;        /* the KL coefficient of the next iteration */
  int64_t iterations; /* rl_iterate calls done */
  dfpo_rng rng;       /* the sampling and minibatch-order stream */
} rl_trainer_state;
void rl_trainer_get_state(const rl_trainer *t, rl_trainer_state *s);
void rl_trainer_set_state(rl_trainer *t, const rl_trainer_state *s);
/* Sets the learning rate of the next iterations' AdamW steps (policy and
 * value model), for a schedule over iterations; rl_trainer_new starts with
 * cfg->lr. */
void rl_trainer_set_lr(rl_trainer *t, float lr);
/* NLPO's mask model (owned by the trainer; NULL for other algorithms), for
 * saving and restoring it with a resumable checkpoint. */
gpt2_model *rl_trainer_mask_model(rl_trainer *t);

/* DfPO's KL-masked sampling, as gpt2_generate on policy: row b draws from
 * pi+ (sign[b] > 0) or pi- (sign[b] < 0), pi_theta renormalised over M+ or
 * M- of ref, compared at the sampling temperature; ref decodes in lock step
 * with its own KV cache. s->mask must be NULL. Used by rl_iterate and to
 * evaluate the negative masked policy. */
int rl_dfpo_generate(gpt2_model *policy, gpt2_model *ref, const int *prompts, const int *kstart,
                     int B, int T, const int *sign, const gpt2_sampling *s, dfpo_rng *rng, int *out,
                     int *lens, float *logps, dfpo_err *err);

#endif
