/* trainer/gpt2.h: GPT-2 (Radford et al. 2019), one implementation of
 * trainer/model.h (prefix gpt2_): pre-LayerNorm blocks, tanh-GELU MLP,
 * learned positions, the LM head tied to the token embedding. Any size.
 * Optionally a second head on the final hidden states (MODEL_HEAD_VALUE or
 * MODEL_HEAD_CLASS). docs/engine.md describes the arena, the formats and the
 * tolerances the tests hold it to.
 *
 * Only what is GPT-2's own is here: its config and constructor, its tensor
 * names, its safetensors importer with an explicit config. Everything else
 * goes through model_* on the model_t the constructor returns. */
#ifndef DFPO_TRAINER_GPT2_H
#define DFPO_TRAINER_GPT2_H

#include "trainer/model.h"

typedef struct gpt2_config {
  int n_layer, n_head, n_embd; /* n_embd % n_head == 0 */
  int vocab_size;              /* 50257 for the GPT-2 tokenizer */
  int n_ctx;                   /* positions (wpe rows) */
  int head;                    /* MODEL_HEAD_* (the LM head always exists) */
  int n_classes;               /* MODEL_HEAD_CLASS: K */
} gpt2_config;

/* Fills cfg for a named shape: gpt2-124M (alias gpt2), gpt2-350M
 * (gpt2-medium), gpt2-774M (gpt2-large), gpt2-1558M (gpt2-xl), gpt2-tiny
 * (2 layers, 2 heads, 64 wide, 512 tokens of context, GPT-2 vocabulary). */
int gpt2_config_named(gpt2_config *cfg, const char *name, dfpo_err *err);
/* Checks that a config is usable; the message names the bad field. */
int gpt2_config_check(const gpt2_config *cfg, dfpo_err *err);

/* A GPT-2 with zeroed parameters (LayerNorm gains 1) on the current device
 * (ops_use_device; the CPU unless a command chose otherwise). *out is the
 * caller's (model_free). model_init_random gives GPT-2's initialisation:
 * weights N(0, 0.02), residual projections N(0, 0.02/sqrt(2 n_layer)),
 * biases 0, LayerNorm 1/0, heads N(0, 0.02). */
int gpt2_new(model_t **out, const gpt2_config *cfg, dfpo_err *err);
/* The config of a GPT-2 model; NULL when m is another architecture. */
const gpt2_config *gpt2_get_config(const model_t *m);

/* Parameter access by tensor (backend pointers; for tests and tools).
 * Names follow Hugging Face without the "transformer." prefix ("wte.weight",
 * "h.0.attn.c_attn.weight", ...), shapes are ours: linear weights [out, in].
 * Returns the number of tensors (0 when m is not a GPT-2); fills what is
 * asked; *param is NULL for a tensor kept in 16 bits
 * (model_set_weight_dtype; model_tensor_at gives its param16). */
int gpt2_num_tensors(const model_t *m);
int gpt2_tensor_info(const model_t *m, int i, const char **name, int *rows, int *cols,
                     float **param, float **grad);

/* Hugging Face GPT-2 model.safetensors (F32; F16/BF16 read too). The config
 * comes from cfg when not NULL, else the header's __metadata__, else a
 * config.json beside the file, else the tensor shapes (n_head then needs one
 * of the others). Names with or without "transformer.", Conv1D weights
 * transposed, lm_head.weight (tied) ignored when present. The native
 * checkpoint (magic "DFPOGPT2") is read by model_load. */
int gpt2_import_safetensors(model_t **out, const char *path, const gpt2_config *cfg, dfpo_err *err);
/* The same with the weights kept in wd (bf16, f16: the tensors
 * model_set_weight_dtype keeps in 16 bits rounded as it rounds them while
 * they are read, without the fp32 copy; OPS_DTYPE_F32 is the above). */
int gpt2_import_safetensors_as(model_t **out, const char *path, const gpt2_config *cfg,
                               ops_dtype wd, dfpo_err *err);

#endif
