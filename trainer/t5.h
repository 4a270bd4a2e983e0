/* trainer/t5.h: T5, the encoder-decoder (prefix t5_), one implementation of
 * the model interface (trainer/model.h) for Hugging Face's
 * T5ForConditionalGeneration (docs/t5.md): forward and backward passes, a
 * value head and decoding with caches, on the CPU.
 *
 * Both versions Hugging Face folders hold: v1.0 (t5-small, t5-base:
 * feed_forward_proj "relu", the LM head tied to shared.weight with the
 * decoder output scaled by d_model^-0.5 before it) and v1.1 / Flan-T5
 * ("gated-gelu": gelu_new(x wi_0) * (x wi_1), an untied lm_head.weight).
 * Every layer is pre-norm with T5's RMS LayerNorm (no mean, no bias, eps
 * layer_norm_epsilon); attention has no 1/sqrt(d) scale; a relative
 * position bias (t5_bucket) is computed by layer 0 of each stack and shared
 * by the others, bidirectional in the encoder and causal in the decoder;
 * cross-attention has none.
 *
 * As a model_t (head MODEL_HEAD_NONE or, from model_new_like,
 * MODEL_HEAD_VALUE on the decoder's final hidden states; n_ctx the
 * decoder's positions): the model_forward of a batch with n_prompt >= 1
 * encodes each row's columns < n_prompt (left padding kstart masked) and
 * decodes [pad 0, the continuation but its last token], so decoder
 * position j sits at column n_prompt - 1 + j and predicts column
 * n_prompt + j, as docs/model-interface.md lays it out; model_lm_logprobs,
 * model_lm_logits, the backward passes and the value head then answer on
 * the [B, T] grid (0 at columns without an output). model_decode_begin
 * encodes the prompts once and starts the decoder with start_id;
 * model_decode_step extends its self-attention cache (every cache laid out
 * by row). model_save writes T5's native checkpoint (magic "DFPOT5\0\0",
 * model_load reads it) and model_export_safetensors / model_export_hf
 * T5ForConditionalGeneration's Hugging Face files (trainer/t5_ckpt.c).
 * Rows without a prompt (n_prompt 0), perplexity of plain text
 * (model_score_tokens) and a classification head answer DFPO_EUSAGE. The CUDA backend lacks the ops
 * T5 adds (rmsnorm_fwd/bwd, attention_rel_fwd/bwd, mul, mul_bwd, act_bwd): a T5 there answers
 * DFPO_EUSAGE naming them.
 *
 * Depends on common/ and the model interface. Ownership: a model from
 * t5_import_safetensors is the caller's (model_free); the config returned
 * points into the model. */
#ifndef DFPO_TRAINER_T5_H
#define DFPO_TRAINER_T5_H

#include "trainer/model.h"

typedef struct t5_config {
  int vocab_size;
  int d_model, d_kv, d_ff, n_head;
  int n_layer, n_dec_layer; /* num_layers, num_decoder_layers */
  int num_buckets, max_distance;
  float eps;      /* layer_norm_epsilon */
  int gated;      /* feed_forward_proj "gated-gelu" (1) or "relu" (0) */
  int tied;       /* tie_word_embeddings: no lm_head, the head is shared.weight */
  int n_pos;      /* decoder positions allowed (n_ctx): n_positions, else 512 */
  int start_id;   /* decoder_start_token_id (pad 0) */
  int eos_id;     /* eos_token_id (</s> 1; -1: none) */
  int head_scale; /* the decoder output scaled by d_model^-0.5 before the head:
                     T5_SCALE_AS_TIED (0) when tied, the only rule of configs
                     before transformers 5.17; T5_SCALE_ON / T5_SCALE_OFF: 5.17's
                     scale_decoder_outputs true / false where it differs */
} t5_config;

enum { T5_SCALE_AS_TIED = 0, T5_SCALE_ON = 1, T5_SCALE_OFF = 2 };

/* 1 when the head's input is the decoder output times d_model^-0.5. */
static inline int t5_scales_head(const t5_config *c) {
  return c->head_scale ? c->head_scale == T5_SCALE_ON : c->tied;
}

/* The relative-position bucket of Hugging Face's T5Attention for
 * rel = key position - query position, computed in double so that a
 * distance whose logarithm ratio is an integer (16 with 32 buckets and max
 * distance 128) never lands one bucket low. */
int t5_bucket(int rel, int bidirectional, int num_buckets, int max_distance);
/* Whether model_type (config.json) is T5's. */
int t5_handles(const char *model_type);
/* The path of a model.safetensors (or pytorch_model.bin) with config.json
 * beside it, onto the current device. Hugging Face's names are read
 * (shared.weight, encoder.block.N.layer.0.SelfAttention.q.weight, ...,
 * lm_head.weight when untied); encoder.embed_tokens.weight and
 * decoder.embed_tokens.weight (aliases of shared.weight) are ignored, any
 * other extra tensor with a warning; a missing or misshapen one is
 * DFPO_EDATA naming it. */
int t5_import_safetensors(model_t **out, const char *path, dfpo_err *err);
/* DFPO_EDATA naming `where` and the sizes when c is out of range. */
int t5_config_check(const t5_config *c, const char *where, dfpo_err *err);
/* A T5 of config c (no extra head) on the current device, its parameters
 * zeroed (model_init_random gives Hugging Face's initialisation). */
int t5_new(model_t **out, const t5_config *c, dfpo_err *err);
/* NULL when m is not a T5. */
const t5_config *t5_get_config(const model_t *m);

#endif
