/* trainer/rdec.h: the rotary decoders (prefix rdec_), one implementation of
 * the model interface (trainer/model.h) for three Hugging Face families on
 * one code path with config switches (docs/rotary.md):
 *
 *   GPT-J ("gptj", GPTJForCausalLM): rotary on the first rotary_dim channels
 *     of each q and k head in the interleaved form (rotate_every_two, base
 *     10000); attention and MLP in parallel from one LayerNorm (ln_1); no
 *     q/k/v/out_proj biases; fc_in/fc_out with the tanh GELU (gelu_new);
 *     ln_f; an untied lm_head with a bias.
 *   GPT-NeoX / Pythia ("gpt_neox", GPTNeoXForCausalLM): the fused
 *     query_key_value (per head [q, k, v], as Hugging Face lays it out);
 *     rotary on int(head_size * rotary_pct) channels, half-split
 *     (rotate_half) with rotary_emb_base; use_parallel_residual true
 *     (x + attn(ln1 x) + mlp(ln2 x)) or false (sequential); two LayerNorms;
 *     biases; the exact GELU (hidden_act "gelu"; "gelu_new" the tanh form);
 *     an untied embed_out.
 *   Llama ("llama", LlamaForCausalLM): RMSNorm (rms_norm_eps), the SwiGLU MLP
 *     (gate_proj, up_proj, down_proj), rotary half-split on the whole head
 *     with rope_theta, grouped-query attention (num_key_value_heads <
 *     num_attention_heads), no biases, tie_word_embeddings honoured.
 *
 * As a model_t (head MODEL_HEAD_NONE, n_ctx the config's positions): a
 * decoder-only model, so model_forward reads whole rows (n_prompt is
 * ignored), left padding kstart masked, positions counted from each row's
 * first real token as GPT-2's are; model_lm_logprobs, model_lm_loss,
 * model_score_tokens (perplexity), decoding with a KV cache
 * (model_decode_begin/step; the cache holds the n_kv_head rotated key and
 * value heads, not repeated: a grouped-query model's cache is n_head /
 * n_kv_head times smaller, each query head reading its group's head) and
 * training work on the CPU: the
 * backward passes (model_lm_backward, _backward_logits, model_lm_loss with
 * backward; each spends its forward pass, recomputing each layer from its
 * saved input), the training state AdamW walks, and a value model
 * (model_new_like with MODEL_HEAD_VALUE: v_head.summary.weight/.bias on the
 * final norm's output), the value head on the policy's trunk
 * (model_lm_value_backward), LoRA adapters on the family's Hugging Face
 * linear layers (model_add_lora: an adapter on q_proj, k_proj, v_proj,
 * gate_proj or up_proj adapts that layer's rows of the fused matrix only;
 * base and adapter views share the base), native checkpoints (model_save,
 * model_load; the adapters too) and Hugging Face export
 * (model_export_safetensors: adapters merged; model_export_adapters: peft's
 * files). The classification head answers DFPO_EUSAGE saying so. The CPU and
 * CUDA backends have the ops these models add (rope_fwd, swiglu_fwd,
 * kv_repeat and their backward ops; rmsnorm_fwd/bwd for Llama); a backend
 * without one answers DFPO_EUSAGE naming it. The CUDA kernels are checked
 * on the repository's CUDA emulator only (docs/cuda.md).
 *
 * Weights in F32, F16 or BF16 (safetensors or pytorch_model.bin, sharded
 * too) are read into float32.
 *
 * Depends on common/ and the model interface. Ownership: a model from
 * rdec_import_safetensors is the caller's (model_free); the config
 * returned points into the model. */
#ifndef DFPO_TRAINER_RDEC_H
#define DFPO_TRAINER_RDEC_H

#include "trainer/model.h"

#include <stdio.h>

enum { RDEC_GPTJ = 0, RDEC_NEOX = 1, RDEC_LLAMA = 2 };
/* The MLP's activation. */
enum { RDEC_ACT_GELU_TANH = 0, RDEC_ACT_GELU_ERF = 1, RDEC_ACT_SWIGLU = 2 };

typedef struct rdec_config {
  int family; /* RDEC_* */
  int vocab_size, n_embd, n_layer;
  int n_head, n_kv_head, head_dim; /* n_kv_head < n_head: grouped-query */
  int d_ff;                        /* the MLP's width */
  int n_ctx;                       /* positions (n_positions, max_position_embeddings) */
  int rot;                         /* rotated channels per head (even, <= head_dim) */
  int interleaved;                 /* GPT-J's pairs (2i, 2i+1); else (i, i + rot/2) */
  float rope_base;
  float eps;
  int rmsnorm;   /* RMSNorm without bias (Llama), else LayerNorm with bias */
  int parallel;  /* x + attn(..) + mlp(..) from the same x */
  int shared_ln; /* GPT-J: the MLP reads ln_1's output (no second norm) */
  int act;       /* RDEC_ACT_* */
  int bias;      /* q/k/v, attention output and MLP biases (GPT-NeoX) */
  int mlp_bias;  /* fc_in/fc_out biases (GPT-J, GPT-NeoX) */
  int head_bias; /* lm_head.bias (GPT-J) */
  int tied;      /* the LM head is the embedding (Llama's tie_word_embeddings) */
} rdec_config;

/* Whether model_type (config.json) is one of the rotary decoders'. */
int rdec_handles(const char *model_type);
/* The path of a model.safetensors, a shard index or a pytorch_model.bin with
 * config.json beside it, onto the current device. Hugging Face's names
 * with their prefixes ("transformer.", "gpt_neox.", "model.") are read;
 * the attention buffers (attn.bias, attn.masked_bias, attention.bias,
 * attention.masked_bias, rotary_emb.inv_freq) are ignored, any other extra
 * tensor with a warning; a missing or misshapen one, or a config this
 * build does not read (rope_scaling, Llama's attention_bias or mlp_bias,
 * another activation), is DFPO_EDATA naming it. */
int rdec_import_safetensors(model_t **out, const char *path, dfpo_err *err);
/* The same with the weights kept in wd (OPS_DTYPE_BF16 or F16: the
 * tensors model_set_weight_dtype keeps in 16 bits are rounded as it rounds
 * them while they are read, so the model is the one load and conversion
 * give, bit for bit, without ever holding the fp32 copy; OPS_DTYPE_F32 is
 * rdec_import_safetensors). */
int rdec_import_safetensors_as(model_t **out, const char *path, ops_dtype wd, dfpo_err *err);
/* A model of config c (its switches as the header's struct says; the
 * family's name is its model_type), parameters zeroed (model_init_random
 * draws them), with no head besides the LM head, on the current device.
 * Sizes out of range or a combination no family has (SwiGLU outside
 * Llama, a shared norm without the parallel residual) are DFPO_EDATA. */
int rdec_new(model_t **out, const rdec_config *c, dfpo_err *err);
/* The native checkpoint's magic (model_save; docs/rotary.md says the
 * format), and its reader for model_load, which has checked the magic:
 * fp at the file's start, read but not closed. */
#define RDEC_NATIVE_MAGIC "DFPORDEC"
/* `to` says where (trainer/ckpt_internal.h: a new model, or in place).
 * Weights in bf16 or f16 (to->wd, or the model read into): the matrices
 * rounded into 16 bits as they are read (no fp32 copy), a full model's
 * AdamW moments not read (a 16-bit model is frozen), a LoRA section's
 * read. */
struct ckpt_dest;
int rdec_load_native(model_t **out, const char *path, FILE *fp, const struct ckpt_dest *to,
                     dfpo_err *err);
/* NULL when m is not a rotary decoder. */
const rdec_config *rdec_get_config(const model_t *m);

#endif
