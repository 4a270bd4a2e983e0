/* trainer/model.h: what RL, perplexity, generation, pretraining, judges and
 * checkpoints need from a language model of any architecture (prefix
 * model_). GPT-2 (trainer/gpt2.h) is one implementation, the encoder
 * classifiers (trainer/bert.h, inference only) another, the
 * encoder-decoder T5 (trainer/t5.h) a third and the rotary decoders GPT-J,
 * GPT-NeoX and Llama (trainer/rdec.h, forward, training and decoding) a fourth;
 * docs/model-interface.md says how each fits.
 *
 * The calls dispatch through the model's table of functions, so code written
 * against this header (trainer/rl_*.c, trainer/sample.c, trainer/beam.c, trainer/optim.c,
 * metrics/ppl.c) never names an architecture.
 *
 * Depends on common/ and trainer/device.h. Ownership: a model_t is the
 * caller's (model_free); buffers a call returns (logits) are the model's and
 * valid until the next call on it unless a comment says otherwise; arrays
 * the caller passes in are read during the call only. */
#ifndef DFPO_TRAINER_MODEL_H
#define DFPO_TRAINER_MODEL_H

#include "common/common.h"
#include "trainer/device.h"
#include "trainer/tok.h"

/* An instance of some architecture. The name is model_t rather than
 * `model`, since a typedef named `model` would be shadowed (-Wshadow) by the
 * many variables and parameters of that name. */
typedef struct model model_t;

/* The optional second head on the final hidden states, besides the LM head:
 * a scalar value head (value models) or a K-way classification head
 * (judges). */
enum { MODEL_HEAD_NONE = 0, MODEL_HEAD_VALUE = 1, MODEL_HEAD_CLASS = 2 };

/* What every architecture has; the architecture's own config (layers,
 * widths) is in its header. */
typedef struct model_config {
  const char *arch; /* "gpt2" */
  int vocab_size;   /* one more than the largest token id */
  int n_ctx;        /* positions one row may hold */
  int head;         /* MODEL_HEAD_* */
  int n_classes;    /* MODEL_HEAD_CLASS: K */
  /* 1: an encoder-decoder (T5): model_decode_begin encodes the prompt and
   * starts the decoder from its start token, so Hugging Face's generate
   * counts a row's length from that one token instead of from the prompt's
   * columns (beam search's length penalty, trainer/beam.h). 0: decoder-only
   * or no decoding. */
  int encoder_decoder;
} model_config;

/* A padded batch: B rows of T token ids, row-major. Each row is [prompt |
 * continuation], left-padded by kstart[b] tokens (NULL: no padding), which
 * are neither attended to nor counted in positions. n_prompt is the
 * prompt's column count (0: no prompt, the whole row is text; an
 * encoder-decoder refuses such rows: it scores a text given a source). A
 * decoder-only model reads whole rows and ignores n_prompt; an
 * encoder-decoder encodes columns < n_prompt and decodes the rest, aligned
 * so that the outputs at column t predict column t + 1 as for a decoder-only
 * model (so callers build the same targets either way).
 *
 * head_from narrows the LM head to columns t >= head_from of each row (0:
 * every column; 0 <= head_from < T). The columns before it carry no
 * targets (an RL batch's prompt: its actions are predicted from column
 * n_prompt - 1 on), and the head skips their share of its product, its
 * softmax and their gradients: model_lm_logprobs gives logp = ent = 0
 * there and refuses a target >= 0 there; model_lm_logits holds
 * [B (T - head_from), V], column t of row b at row b (T - head_from) +
 * t - head_from, and model_lm_backward_logits and model_lm_value_backward
 * take dlogits of that shape. The trunk and the value head still cover
 * every column (the prompt's keys and values feed the actions). */
typedef struct model_batch {
  const int *tokens;
  const int *kstart;
  int B, T;
  int n_prompt;
  int head_from;
} model_batch;

void model_free(model_t *m);
const model_config *model_get_config(const model_t *m);
/* The device the model's memory lives on. */
ops_device model_device(const model_t *m);
/* The parameters of the tensors model_tensor_at lists (with LoRA
 * adapters: the adapters only). */
size_t model_num_params(const model_t *m);
/* Bytes held by the model's memory (parameters, training state,
 * activations, KV cache) right now. */
size_t model_arena_bytes(const model_t *m);
/* Optimiser steps taken so far (restored by checkpoints). */
int model_step_count(const model_t *m);

/* The architecture's initialisation from the DFPO_STREAM_INIT stream of
 * seed (GPT-2: gpt2.h says which). */
void model_init_random(model_t *m, uint64_t seed);
/* A new model of the same architecture and shape as src but with the given
 * extra head (MODEL_HEAD_*, n_classes for MODEL_HEAD_CLASS), parameters
 * zeroed, on the current device (ops_use_device). For a value model of a
 * policy's shape. */
int model_new_like(model_t **out, const model_t *src, int head, int n_classes, dfpo_err *err);
/* model_new_like with src's head, then model_copy_params: a copy of src's
 * parameters (not its training state) on the current device. */
int model_clone(model_t **out, const model_t *src, dfpo_err *err);
/* Copies the parameters (not gradients or optimiser state) of src into dst;
 * architectures and configs must match (the devices need not), and so must
 * their LoRA adapters (rank, alpha, targets; none on either), which are
 * copied too (into a model_adapter_view: the adapters only). model_clone
 * of a model with adapters is DFPO_EUSAGE (model_adapter_view makes its
 * copy). */
int model_copy_params(model_t *dst, const model_t *src, dfpo_err *err);
/* Copies into dst every parameter tensor of src with the same name and
 * shape (a value model's trunk from a policy); the devices need not match.
 * *copied (may be NULL) receives the number of tensors copied. */
int model_copy_shared_params(model_t *dst, const model_t *src, int *copied, dfpo_err *err);

/* One parameter tensor and its training state, in backend memory (host
 * memory on the CPU backend, device memory on CUDA). */
typedef struct model_tensor {
  const char *name;        /* the architecture's name for it ("h.0.attn.c_attn.weight") */
  int rows, cols;          /* vectors: rows 1 */
  int decay;               /* AdamW's weight decay applies (matrices) */
  float *param;            /* NULL when the tensor is kept in 16 bits */
  float *grad, *m1, *m2;   /* gradient and AdamW moments; NULL before training */
  ops_dtype dtype;         /* OPS_DTYPE_F32, or the 16-bit type of param16 */
  const uint16_t *param16; /* a frozen tensor kept in 16 bits (model_set_weight_dtype) */
} model_tensor;
/* The parameter tensors, for optimisers and tools: model_tensor_at fills
 * *t for 0 <= i < model_num_tensors (else DFPO_EUSAGE). Tensors that follow
 * each other in memory are adjacent in the list, so an optimiser can update
 * runs of them in one call. */
int model_num_tensors(const model_t *m);
int model_tensor_at(const model_t *m, int i, model_tensor *t, dfpo_err *err);
/* Allocates the training state (gradients, AdamW moments) when missing. */
int model_ensure_train(model_t *m, dfpo_err *err);

/* Sizes the activation memory for passes of up to B rows of T tokens now,
 * so that a run of passes of varying smaller shapes (evaluation batches)
 * lays out in one block instead of growing it pass by pass. Forgets the
 * last forward pass. */
int model_reserve(model_t *m, int B, int T, dfpo_err *err);
/* Forward pass over a batch, keeping the activations for one backward
 * pass. Each row's real tokens must fit the context: T - kstart[b] <= n_ctx. */
int model_forward(model_t *m, const model_batch *b, dfpo_err *err);
/* After model_forward: the LM head's log-probability of targets[B,T] (a
 * negative target gives 0) and, when ent is not NULL, the entropy of each
 * position's next-token distribution. Outputs [B*T], caller-owned. */
int model_lm_logprobs(model_t *m, const int *targets, float *logp, float *ent, dfpo_err *err);
/* After model_lm_logprobs: accumulates into the gradients the gradient of
 * sum dlogp[i] logp[i] + dent[i] ent[i] (dent may be NULL; so may dlogp). */
int model_lm_backward(model_t *m, const float *dlogp, const float *dent, dfpo_err *err);
/* After model_lm_logprobs, instead of model_lm_backward: accumulates the
 * gradient of sum_{i,v} dlogits[i, v] logits[i, v], dlogits [B*T, V] on the
 * host ([B (T - head_from), V] when the forward pass narrowed the head).
 * For losses of other functions of the logits than the targets'
 * log-probabilities (a policy renormalised over a mask: NLPO). */
int model_lm_backward_logits(model_t *m, const float *dlogits, dfpo_err *err);
/* The LM logits of the last model_forward or of the last decoding call
 * ([B*T, V], [B (T - head_from), V] or [B, V], owned by the model, backend
 * memory, valid until the
 * next call), after model_lm_logprobs (which computes them) and before
 * model_lm_backward (which overwrites them); NULL when none are valid. */
const float *model_lm_logits(const model_t *m);
/* The buffers model_lm_logits, model_decode_begin and model_decode_step
 * return are backend memory. This gives n floats of such a buffer from p on
 * the host: p itself on the CPU backend (no copy), else a download into buf
 * (n floats, the caller's) and buf. */
const float *model_host_view(const model_t *m, const float *p, size_t n, float *buf);
/* Mean next-token cross-entropy over positions with targets >= 0 (0 when
 * there are none); with backward, accumulates its gradient. */
int model_lm_loss(model_t *m, const model_batch *b, const int *targets, int backward, float *loss,
                  dfpo_err *err);
/* Next-token negative log-likelihood of tokens[n] (the first token is
 * context only: prepend <|endoftext|> to score it). Longer than n_ctx, the
 * sequence is scored in windows of n_ctx tokens that overlap by half a
 * window, so every scored token has at least min(n_ctx/2, its index) tokens
 * of context and is scored once. *nll_sum and *scored (n - 1) receive the
 * totals. An encoder-decoder answers DFPO_EUSAGE (no source: score pairs
 * as met_ppl_gen_ids does, docs/model-interface.md). */
int model_score_tokens(model_t *m, const int *tokens, size_t n, double *nll_sum, size_t *scored,
                       dfpo_err *err);

/* Rows without a prompt split (n_prompt 0), for callers that hold plain
 * token rows: language-model training and scoring. */
static inline int model_forward_rows(model_t *m, const int *tokens, const int *kstart, int B, int T,
                                     dfpo_err *err) {
  model_batch b = {tokens, kstart, B, T, 0, 0};
  return model_forward(m, &b, err);
}
static inline int model_lm_loss_rows(model_t *m, const int *tokens, const int *targets,
                                     const int *kstart, int B, int T, int backward, float *loss,
                                     dfpo_err *err) {
  model_batch b = {tokens, kstart, B, T, 0, 0};
  return model_lm_loss(m, &b, targets, backward, loss, err);
}

/* After model_forward on a MODEL_HEAD_VALUE model: values[B*T]. Then
 * model_value_backward accumulates the gradient of sum dvalues[i] values[i]. */
int model_value_forward(model_t *m, float *values, dfpo_err *err);
int model_value_backward(model_t *m, const float *dvalues, dfpo_err *err);
/* A value head on the policy's trunk (a shared actor-critic, as
 * stable-baselines3's ActorCriticPolicy with shared layers): a
 * MODEL_HEAD_VALUE model that is also the policy. After model_forward,
 * model_lm_logprobs and model_value_forward of the same pass, accumulates
 * in one backward pass through the trunk the gradient of
 * sum dlogp[i] logp[i] + dent[i] ent[i] + dvalues[i] values[i] (dlogp, dent
 * may be NULL), or, with dlogits non-NULL (then dlogp and dent must be
 * NULL), of sum dlogits[i, v] logits[i, v] + dvalues[i] values[i] as
 * model_lm_backward_logits. dvalues [B*T] (NULL: the LM part alone).
 * DFPO_EUSAGE from a model without a value head or an architecture that
 * does not implement it (model_can_share_value says which do: GPT-2 and the
 * rotary decoders). */
int model_lm_value_backward(model_t *m, const float *dlogp, const float *dent, const float *dlogits,
                            const float *dvalues, dfpo_err *err);
/* 1 when m's architecture implements model_lm_value_backward. */
int model_can_share_value(const model_t *m);
/* Gives m (no head, no adapters, no training state, no views of it) a
 * value head in place: m becomes the MODEL_HEAD_VALUE model that
 * model_new_like, model_init_random(seed) and model_copy_shared_params
 * from m would make (the same head, bit for bit), without a second copy
 * of the trunk; in its weights' precision (a 16-bit trunk stays so).
 * DFPO_EUSAGE otherwise or for an architecture without it (as
 * model_can_share_value). */
int model_add_value_head(model_t *m, uint64_t seed, dfpo_err *err);

/* Activation checkpointing (Chen et al. 2016) at block boundaries: on, a
 * training forward pass keeps only each block's input and one block's
 * activations, and the backward pass recomputes each block from its input
 * before going through it; the gradients are those without it, bit for bit
 * (the recomputation runs the same operations on the same inputs). A
 * forward-only model (a reference) saves the same memory. Changing the
 * setting forgets the last forward pass and lays the activations out again
 * at the next one. DFPO_EUSAGE from an architecture that does not
 * implement it (GPT-2 does; the rotary decoders always recompute, accept
 * either setting and report 1; T5 and the encoder classifiers answer
 * DFPO_EUSAGE). model_checkpointing gives the setting (0 where
 * unsupported). */
int model_set_checkpointing(model_t *m, int on, dfpo_err *err);
int model_checkpointing(const model_t *m);
/* Weights in 16 bits for a frozen model (a reference, a judge, a model
 * for perplexity or generation): model_set_weight_dtype(m, OPS_DTYPE_BF16
 * or OPS_DTYPE_F16) rounds the big matrices to nearest even (as PyTorch's
 * .to(torch.bfloat16) and .half(), ops_f32_to_bf16/_f16) and frees their
 * fp32 copies, so model_arena_bytes drops by 2 bytes per converted weight;
 * the products then widen them to fp32 and accumulate in fp32 (CPU; CUDA
 * rounds the activations to the same type for the tensor cores,
 * trainer/ops.h's matmul_fwd_w16). GPT-2: the embedding (the tied LM head)
 * and each block's attention and MLP matrices; wpe, LayerNorms, biases and
 * extra heads stay fp32 (docs/memory.md). The rotary decoders (GPT-J,
 * GPT-NeoX, Llama): each layer's fused qkv, attention output and MLP
 * matrices, the embedding and the untied LM head; norms, biases and a
 * value head stay fp32 (docs/rotary.md). OPS_DTYPE_F32 widens them back
 * (the rounded values, exactly); from one 16-bit type to the other rounds
 * the rounded values again. Such a model does not train: model_ensure_train
 * (and so every backward pass) answers DFPO_EUSAGE, and so do
 * model_copy_params between models of different precisions, model_save,
 * the exports, model_add_lora and model_base_view on it. DFPO_EUSAGE when
 * the model has training state (gradients or AdamW moments), LoRA
 * adapters, base views of it alive, or is itself a view, or from an
 * architecture without 16-bit weights (today T5 and the encoder
 * classifiers; a no-op for
 * the precision it already has). Forgets the last forward pass and a
 * decoding's cache. model_weight_dtype gives the precision (OPS_DTYPE_F32
 * for every architecture without them). */
int model_set_weight_dtype(model_t *m, ops_dtype d, dfpo_err *err);
ops_dtype model_weight_dtype(const model_t *m);

/* After model_forward on a MODEL_HEAD_CLASS model: logits[B, K] of the
 * hidden state at position at[b] of each row (usually its last real token). */
int model_class_forward(model_t *m, const int *at, float *logits, dfpo_err *err);
int model_class_backward(model_t *m, const float *dlogits, dfpo_err *err);

/* Training state (gradients, AdamW moments) is allocated on first use. */
void model_zero_grad(model_t *m);
/* Global L2 norm of all gradients (0 before training). */
float model_grad_norm(model_t *m);

/* LoRA adapters (Hu et al. 2021): low-rank updates of a set of the model's
 * linear layers, W x + (alpha/r) B (A x), with every base parameter frozen.
 * model_add_lora adds them once to a model without training state of its
 * own use yet: A [r, in] drawn Kaiming-uniform as PyTorch's nn.Linear and
 * peft draw it, U(-1/sqrt(in), 1/sqrt(in)) (a = sqrt 5) from the
 * DFPO_STREAM_INIT stream of seed, B zero, so the model's outputs do not
 * change. From then on model_num_tensors/model_tensor_at (and so AdamW,
 * model_grad_norm, model_zero_grad and model_num_params) cover the adapters
 * only; the base's gradients and AdamW moments are freed and never
 * allocated again, and backward passes compute no gradient for it.
 * targets: a comma-separated list of the architecture's linear layers,
 * as its Hugging Face modules name them (GPT-2: attn.c_attn, attn.c_proj,
 * mlp.c_fc, mlp.c_proj; GPT-J: attn.q_proj, attn.k_proj, attn.v_proj,
 * attn.out_proj, mlp.fc_in, mlp.fc_out; GPT-NeoX: attention.query_key_value,
 * attention.dense, mlp.dense_h_to_4h, mlp.dense_4h_to_h; Llama:
 * self_attn.q_proj, self_attn.k_proj, self_attn.v_proj, self_attn.o_proj,
 * mlp.gate_proj, mlp.up_proj, mlp.down_proj; NULL or "": all of the
 * family's). GPT-2 and the rotary decoders without a class head have
 * adapters (T5, the encoder classifiers or a model with a class head:
 * DFPO_EUSAGE); on a model
 * with a value head a trainable copy of the head joins the adapters (the
 * tensor list ends with v_head.summary.weight and .bias; the base's head
 * is frozen and unused), so that the value head on a LoRA policy's trunk
 * trains (model_lm_value_backward).
 * model_save keeps the adapters (config, A and B, and with the optimizer
 * state their AdamW moments) and model_load restores them;
 * model_export_safetensors and model_export_hf write them merged into the
 * weights (W + (alpha/r) B A: a plain model of the architecture),
 * model_export_adapters alone as peft's adapter files. */
typedef struct model_lora_config {
  int rank;            /* r, 1 <= r <= the model's width */
  float alpha;         /* the update's scale is alpha / r */
  const char *targets; /* the adapted linear layers */
} model_lora_config;
int model_add_lora(model_t *m, const model_lora_config *c, uint64_t seed, dfpo_err *err);
/* The adapters' rank (0: the model has none). */
int model_lora_rank(const model_t *m);
/* Switches the adapters on (1, as model_add_lora leaves them) or off (0):
 * off, every forward pass and decoding call computes the frozen base
 * alone, bit for bit as the model without adapters, so the base serves as
 * the RL reference without a second copy of the weights. A forward pass
 * remembers the setting it ran with for its backward pass. DFPO_EUSAGE on
 * a model without adapters. */
int model_set_adapters(model_t *m, int on, dfpo_err *err);
/* A model over src's base weights without adapters, sharing them (no
 * copy: src must outlive it, and its parameters change when src's base
 * does), with its own activations and KV cache: a frozen reference that
 * decodes in lock step with its LoRA policy (DfPO's sampling), where
 * model_set_adapters would need a second cache. It does not train
 * (model_ensure_train, model_copy_params into it: DFPO_EUSAGE);
 * model_arena_bytes counts none of the shared weights. GPT-2 and the
 * rotary decoders (else DFPO_EUSAGE); made on src's device
 * (ops_use_device). *out is the
 * caller's (model_free). */
int model_base_view(model_t **out, const model_t *src, dfpo_err *err);
/* model_base_view with a copy of src's LoRA adapters (their own parameters,
 * rank, alpha, targets and on/off setting; no training state): a second
 * adapted model over the same shared base, which costs the adapters' bytes
 * (and its own activations and KV cache) instead of a second copy of the
 * weights: NLPO's mask model of a LoRA policy. model_copy_params(view, m)
 * copies m's adapters into it again, the base left shared: m must be the
 * view's source or a model whose base weights are equal to it (compared;
 * else DFPO_EUSAGE). It does not train. DFPO_EUSAGE when src has no
 * adapters. *out is the caller's (model_free), src must outlive it. */
int model_adapter_view(model_t **out, const model_t *src, dfpo_err *err);

/* Decoding with a cache. model_decode_begin runs the prompts tokens[B,T]
 * (left-padded by kstart, NULL: none; an encoder-decoder encodes them and
 * starts its decoder) and returns the next-token logits [B, V];
 * model_decode_step feeds one token per row and returns the next logits.
 * Room for max_len (<= n_ctx + max kstart) positions in all, prompt
 * included. The logits are backend memory owned by the model, valid until
 * the next call; NULL on error. */
const float *model_decode_begin(model_t *m, const int *tokens, const int *kstart, int B, int T,
                                int max_len, dfpo_err *err);
const float *model_decode_step(model_t *m, const int *next, dfpo_err *err);
/* Between decoding calls: permutes the decoding caches' rows, so that row i
 * becomes what row src_rows[i] was (src_rows[B], each in [0, B), repeats
 * allowed: beam search continues a beam in several rows and drops others;
 * B as at model_decode_begin). Positions, padding and everything else a row
 * carries move with it; the next model_decode_step feeds row i's token
 * after old row src_rows[i]'s history. The last logits are spent
 * (model_lm_logits gives NULL after). DFPO_EUSAGE before model_decode_begin,
 * for a row out of range, or from an architecture that cannot ("decoding
 * reorder not supported by <arch>"). */
int model_decode_reorder(model_t *m, const int *src_rows, dfpo_err *err);

/* Checkpoints. model_save writes the architecture's native format
 * (docs/engine.md; atomically), optionally with the AdamW state.
 * model_load is the one place that turns a path into a model: a native
 * checkpoint or a Hugging Face model.safetensors (told apart by content), a
 * shard index (a file named *.index.json), or a Hugging Face model folder
 * (model_hf_weights says which file of it is read); it makes a model of the
 * architecture the file names; *out is a new model the caller frees. */
int model_save(model_t *m, const char *path, int with_optimizer, dfpo_err *err);
int model_load(model_t **out, const char *path, dfpo_err *err);
/* model_load, then the weights in wd (model_set_weight_dtype's rules and
 * refusals): a rotary decoder's Hugging Face weights are rounded to wd as
 * they are read, so the load never holds their fp32 copy (a 16-bit load
 * of 6B parameters then peaks near 2P bytes instead of 6P); other models
 * are loaded in fp32 and converted. *out is the caller's; NULL on error. */
int model_load_as(model_t **out, const char *path, ops_dtype wd, dfpo_err *err);
/* The tensors of model_tensor_at's list alone (a LoRA model's: its
 * adapters; no AdamW state) as a safetensors file at path, atomically,
 * each F32 [rows, cols] under its own name (__metadata__ format "dfpo
 * tensors" and the architecture): a view's own parameters without the base
 * it shares (NLPO's mask model of a LoRA policy in a resume checkpoint).
 * model_load_tensors reads such a file into m's tensors, which must have
 * the same names and shapes (else DFPO_EDATA naming the file and the
 * tensor; a NaN or an infinity is refused the same way). A tensor kept in
 * 16 bits is DFPO_EUSAGE. */
int model_save_tensors(const model_t *m, const char *path, dfpo_err *err);
/* A native checkpoint of m's own kind (model_save of a model with m's
 * architecture, config, head and LoRA adapters) read into m in place: its
 * parameters in m's precision (a 16-bit base rounded as it is read), and
 * where the file has them the AdamW moments (m's training state made for
 * them), and the file's step; where it has no moments, m's are left as
 * they are. The last forward pass, its logits (model_lm_logits gives NULL)
 * and a decoding's cache are spent, even when the read fails: a backward
 * pass or model_decode_step then answers DFPO_EUSAGE until a new forward
 * pass or model_decode_begin. No second copy of the model is made, and views of m (a LoRA
 * policy's reference) stay valid: a run's end and its resume use it
 * instead of model_load beside the model. DFPO_EDATA naming the file for
 * another format, architecture, config, head or adapters (checked before
 * anything is read), or a short file or a NaN or an infinity (named; m's
 * parameters are then part read: the caller discards m or reads again);
 * DFPO_EUSAGE for a view (its base is another model's).
 * model_load_adapters reads the adapters alone (with a value head's
 * trainable copy, and their moments where saved), the file's base skipped:
 * it is m's frozen base, as in a run's best.ckpt; DFPO_EUSAGE for a model
 * without adapters; it works on an adapter view too. */
int model_load_into(model_t *m, const char *path, dfpo_err *err);
/* peft's adapter folder (adapter_config.json and adapter_model.safetensors,
 * as PeftModel.save_pretrained writes them and model_export_adapters does)
 * added to m, a model without adapters, as its LoRA adapters: rank r,
 * lora_alpha, and the targets adapter_config.json's target_modules match
 * (peft's rule: a listed name equal to a module's full name or a dotted
 * suffix of it, or one regular expression the whole name matches), which
 * must be the same on every layer; lora_A.weight [r, in] and lora_B.weight
 * [out, r] (F32, F16 or BF16); with use_rslora (rsLoRA) the scale is
 * lora_alpha / sqrt(r), kept as the alpha of that scale over r (the same
 * float, or within one ulp of it). The model then computes as peft's
 * PeftModel.from_pretrained of the base would (unmerged, dropout off).
 * DFPO_EDATA naming the folder and what is wrong: a config field the engine
 * does not compute (use_dora, a bias, modules_to_save,
 * layers_to_transform, rank or alpha patterns), targets on some layers
 * only, a tensor missing, misshapen, not finite or left over. DFPO_EUSAGE
 * for a model with adapters, or an architecture other than GPT-2 and the
 * rotary decoders (GPT-J, GPT-NeoX, Llama: their Hugging Face module names,
 * GPT-NeoX's query_key_value rows in its per-head order). On an error m's adapters, if added, are
 * not to be used: the caller discards m. */
int model_load_peft_adapters(model_t *m, const char *dir, dfpo_err *err);
int model_load_adapters(model_t *m, const char *path, dfpo_err *err);
int model_load_tensors(model_t *m, const char *path, dfpo_err *err);
/* Whether path is a folder (a Hugging Face model folder to model_load,
 * whose tokenizer files callers take when they were given none). */
int model_path_is_folder(const char *path);
/* Whether the file at path starts with a native checkpoint's magic
 * (model_save's; 0 also when it cannot be read). */
int model_path_is_native(const char *path);
/* The weights file of the Hugging Face model folder dir, into buf[n]:
 * model.safetensors, else model.safetensors.index.json (shards), else
 * pytorch_model.bin (torch.save's zip format), else
 * pytorch_model.bin.index.json. DFPO_EDATA naming the folder when it has
 * none of them. */
int model_hf_weights(const char *dir, char *buf, size_t n, dfpo_err *err);
/* A Hugging Face model.safetensors or shard index (model.safetensors.index.json
 * and the shards it names), the architecture from config.json's model_type
 * beside it (gptj, gpt_neox, llama: trainer/rdec.h, shards too;
 * distilbert, bert, roberta: trainer/bert.h, and t5: trainer/t5.h, single
 * files only; gpt2 or none: GPT-2, its config from the header's metadata
 * or config.json; any other type is DFPO_EDATA naming it). */
int model_import_safetensors(model_t **out, const char *path, dfpo_err *err);
/* Writes model.safetensors (Hugging Face names without "transformer.",
 * layouts, an extra head as trl's v_head.summary.* or score.*, config in
 * __metadata__; a rotary decoder: its family's full Hugging Face names,
 * q/k/v and gate/up apart and GPT-NeoX's fused rows in their per-head
 * order, and its family's config.json; LoRA adapters merged into the
 * weights they adapt) atomically, and, when
 * write_config, a config.json beside it whose bos_token_id/eos_token_id are null (no tokenizer is
 * known here; model_export_hf writes the tokenizer's). */
int model_export_safetensors(const model_t *m, const char *path, int write_config, dfpo_err *err);
/* Fills the existing folder dir with a Hugging Face model folder that
 * transformers' GPT2LMHeadModel.from_pretrained and
 * GPT2TokenizerFast.from_pretrained read, each file written atomically:
 * model.safetensors ("transformer." names, Conv1D weights [in, out],
 * lm_head.weight left out: tied to transformer.wte.weight; LoRA adapters
 * merged, W + (alpha/r) B A), config.json (the
 * model's sizes; eos_token_id tok's end-of-text, bos_token_id its own
 * start (tok_bos_token_id: Llama's <s>) or else its end-of-text) and
 * tok's files (tok_save_hf). An extra head (value, classification) is no
 * part of GPT2LMHeadModel: it is left out, with a warning. tok must have
 * <|endoftext|> and no more ids than the model's vocabulary (else
 * DFPO_EUSAGE). Another architecture answers DFPO_EUSAGE. The staging of the
 * folder (a temporary one renamed) is the caller's. */
int model_export_hf(const model_t *m, const tok_tokenizer *tok, const char *dir, dfpo_err *err);
/* The LoRA adapters of m alone, as peft's PeftModel.save_pretrained writes
 * them for transformers' GPT2LMHeadModel, into the existing folder dir:
 * adapter_model.safetensors (base_model.model.transformer.h.N.attn.c_attn.
 * lora_A.weight [r, in], .lora_B.weight [out, r], ..., F32) and
 * adapter_config.json (peft_type LORA, task_type CAUSAL_LM, r, lora_alpha,
 * target_modules, fan_in_fan_out true for GPT-2's Conv1D layers, ...); for
 * a rotary decoder, its family's CausalLM names
 * (base_model.model.transformer.h.N.attn.q_proj..., base_model.model.
 * gpt_neox.layers.N.attention.query_key_value... with B's rows in that
 * fused layer's per-head order, base_model.model.model.layers.N.self_attn.
 * q_proj...) and fan_in_fan_out false (a value head's trainable copy is
 * left out), each
 * written atomically; PeftModel.from_pretrained(base, dir) over the base
 * model they were trained on computes what m computes. DFPO_EUSAGE for a
 * model without adapters. */
int model_export_adapters(const model_t *m, const char *dir, dfpo_err *err);

#endif
