/* Internal to trainer/: what the checkpoints of every architecture share
 * (prefix ckpt_; gpt2_ckpt.c, t5_ckpt.c). The native format: a fixed header, then the
 * parameter block as the model's tensor table lays it out (float32,
 * little-endian), then, when the header's flag 1 says so, AdamW's first and
 * second moments in the same layout. The float blocks pass through a
 * bounded host buffer, so a device backend works too.
 *
 * The model's tensor table (model_tensor_at) must lay the tensors out in
 * order in one block starting at tensor 0's param: an index into the block
 * is named by the tensor holding it. */
#ifndef DFPO_TRAINER_CKPT_INTERNAL_H
#define DFPO_TRAINER_CKPT_INTERNAL_H

#include "trainer/model_internal.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>

/* Writes n floats of m's backend memory at dev to fp; -1 (errno set by the
 * failed write, or ENOMEM) on failure. */
int ckpt_write_floats(FILE *fp, const model_t *m, const float *dev, size_t n);
/* The same for n 16-bit weights at dev16 (dtype OPS_DTYPE_BF16 or
 * OPS_DTYPE_F16), each written widened to its exact float: a model that
 * keeps its big matrices in 16 bits saves the fp32 file it would have
 * saved with those values. */
int ckpt_write_w16_floats(FILE *fp, const model_t *m, const uint16_t *dev16, size_t n, int dtype);
/* Reads n floats from fp into m's backend memory at dev (the block of
 * parameters, or a moment laid out as it); `what` names the block in
 * messages ("parameters", "first AdamW moment"). DFPO_EDATA naming path,
 * the block and the tensor where the file ends, or the tensor and element
 * of a NaN or an infinity (refused). */
int ckpt_read_floats(FILE *fp, const model_t *m, float *dev, size_t n, const char *path,
                     const char *what, dfpo_err *err);
/* n floats from fp into one tensor of m (named `name` in messages, `what`
 * as ckpt_read_floats says it): into dev (fp32 backend memory) or, where
 * dev16 is given, rounded to dtype (ops_f32_to_w16, as
 * model_set_weight_dtype rounds) into dev16, so that a model kept in 16
 * bits loads without its fp32 copy. DFPO_EDATA for a short file or a
 * non-finite value (refused, with its element). */
int ckpt_read_tensor(FILE *fp, const model_t *m, float *dev, uint16_t *dev16, int dtype, size_t n,
                     const char *path, const char *what, const char *name, dfpo_err *err);
/* The base parameter block of a model that may keep some matrices in 16
 * bits (GPT-2, the rotary decoders), as the checkpoint code walks it: the
 * fp32 block (nparams floats in the file's layout when wd is fp32), the
 * 16-bit one, the weight type, and tensor(m, i, ...) giving tensor i of
 * ntensors (in the file's order): its name, element count, offset (floats
 * into params, or uint16_t into params16 when w16) and whether it is kept
 * in 16 bits. */
typedef struct ckpt_base {
  float *params;
  uint16_t *params16;
  size_t nparams;
  ops_dtype wd;
  int ntensors;
  void (*tensor)(const model_t *m, int i, const char **name, size_t *n, size_t *off, int *w16);
} ckpt_base;
/* The block as the file holds it, fp32 (16-bit matrices widened: exact);
 * -1 (errno set) on failure. */
int ckpt_write_base(FILE *fp, const model_t *m, const ckpt_base *b);
/* The block from fp into b: with skip (ckpt_dest.adapters_only) passed
 * over (nfile floats), in fp32 read whole, in 16 bits tensor by tensor,
 * each matrix rounded on its way in (ckpt_read_tensor). */
int ckpt_read_base(FILE *fp, const model_t *m, const ckpt_base *b, int skip, uint64_t nfile,
                   const char *path, dfpo_err *err);

/* The native file: header[hbytes], then m's n parameters and, with
 * moments, AdamW's two moments (the blocks model_tensor_at's tensor 0
 * starts), written to path atomically. */
int ckpt_save(const model_t *m, const char *path, const void *header, size_t hbytes, size_t n,
              int moments, dfpo_err *err);
/* After the header: m's n parameters and, with moments, the training
 * state (model_ensure_train) and AdamW's two moments, read from fp as
 * ckpt_read_floats reads them. */
int ckpt_load_blocks(FILE *fp, model_t *m, size_t n, int moments, const char *path, dfpo_err *err);
/* The file's size against header_bytes + nparams floats, three times that
 * with the moments: DFPO_EDATA naming path for trailing data, and for a
 * short file when nparams is past 2^28 (smaller ones are reported while
 * reading, naming the tensor, without allocating a huge model first). */
int ckpt_check_size(FILE *fp, const char *path, uint64_t header_bytes, uint64_t nparams,
                    int with_moments, dfpo_err *err);

/* Where a native reader (gpt2_load_native, rdec_load_native,
 * t5_load_native) puts a checkpoint: into NULL, a new model laid out for wd
 * (*out, the caller's); else in place into `into` (model_load_into,
 * model_load_adapters), which must be of the file's architecture, config,
 * head and adapters (DFPO_EDATA saying what differs, before anything is
 * read), read in its own precision (wd unused); *out is then into. With
 * adapters_only the file's base is skipped and its LoRA section alone
 * read (into's base is the frozen one the file was saved over). The file's
 * AdamW moments are read where it has them (into's training state made for
 * them); where it has none, into's are left as they are. */
typedef struct ckpt_dest {
  ops_dtype wd;
  model_t *into;
  int adapters_only;
} ckpt_dest;
/* The refusals every reader makes before reading into to->into (none when
 * NULL): DFPO_EDATA naming path when into is not of the reader's
 * architecture (vt; kind names the file's, "a GPT-2 checkpoint"), when
 * same_config is 0 (the header's config and head are not into's), or when
 * the file has adapters (file_rank) and into has not or has others
 * (into_rank; the rank and alpha and targets are compared by the reader's
 * section), or the reverse; DFPO_EUSAGE when into is a view (borrowed
 * base) and adapters_only is not set. Call ckpt_into_arch first: the
 * reader may only cast into after it. */
int ckpt_into_arch(const ckpt_dest *to, const model_vtable *vt, const char *kind, const char *path,
                   dfpo_err *err);
int ckpt_into_fits(const ckpt_dest *to, int same_config, int borrowed, int file_lora, int into_rank,
                   const char *path, dfpo_err *err);
/* Past n floats of fp (a base the reader's adapters_only leaves, or the
 * moments a view does not keep), DFPO_EDATA naming path and `what` when the
 * file ends before them. */
int ckpt_skip_floats(FILE *fp, uint64_t n, const char *path, const char *what, dfpo_err *err);

/* The LoRA adapter section a native checkpoint of a model with adapters
 * carries after the base's parameters (gpt2_ckpt.c, rdec.c; the base has
 * no AdamW moments: it is frozen): this header, the adapters' parameters in
 * the order of their tensor list, then, with the optimizer state, their
 * first and second AdamW moments. */
#define CKPT_LORA_MAGIC "DFPOLORA"
typedef struct ckpt_lora_section {
  char magic[8];
  int32_t rank;
  float alpha;
  uint32_t targets; /* bit k: the architecture's target k adapted */
  uint32_t reserved;
  uint64_t nparams; /* the adapters' parameters */
} ckpt_lora_section;
_Static_assert(sizeof(ckpt_lora_section) == 32, "LoRA section header is 32 bytes");

/* A section read in place (ckpt_dest.into): DFPO_EDATA naming path unless
 * its rank, alpha and targets are the model's (rank, alpha, targets;
 * names: the section's targets as a list, for the message). */
int ckpt_lora_fits(const ckpt_lora_section *ls, int rank, float alpha, uint32_t targets,
                   const char *names, const char *path, dfpo_err *err);

/* peft's adapter folder read back (model_load_peft_adapters): its
 * adapter_config.json (LoRA of rank r, lora_alpha, target_modules as a
 * list of module names or one regular expression) and its
 * adapter_model.safetensors, open. ckpt_peft_open refuses by name what
 * the engine does not compute: another peft_type, bias other than "none",
 * use_dora, modules_to_save, layers_to_transform, rank_pattern or
 * alpha_pattern (the files are read as peft writes them for
 * PeftModel.from_pretrained). With use_rslora (peft's scale lora_alpha /
 * sqrt(r)) alpha is the engine's alpha of that scale (alpha / r = the
 * float of lora_alpha / sqrt(r), or within one ulp of it). Owns what it
 * holds (ckpt_peft_close). */
typedef struct ckpt_peft {
  char dir[4096], file[4200];
  int r;
  float alpha;                 /* the engine's: scale alpha / r */
  cJSON *config;               /* adapter_config.json */
  const cJSON *target_modules; /* an array of names, or a string (a regex) */
  struct st_file *st;          /* adapter_model.safetensors */
  int used;                    /* tensors read so far */
} ckpt_peft;
int ckpt_peft_open(ckpt_peft *p, const char *dir, dfpo_err *err);
void ckpt_peft_close(ckpt_peft *p);
/* Which of an architecture's n LoRA targets (names) peft adapts: module(ctx,
 * l, k) writes the full name of target k's module in layer l, matched as
 * peft matches target_modules (a list: the name itself or a dotted suffix
 * of it; a string: a regular expression the whole name matches). The set
 * must be the same in every one of n_layer layers (DFPO_EDATA otherwise,
 * and when it is empty). */
int ckpt_peft_targets(const ckpt_peft *p, const char *const *names, int n, int n_layer,
                      void (*module)(const void *ctx, int l, int k, char *buf, size_t len),
                      const void *ctx, unsigned *bits, dfpo_err *err);
/* The tensor `name` (peft's full name) as rows x cols floats into host:
 * the file's [rows, cols], or with transposed its [cols, rows] turned
 * around (lora_B [out, r] into the engine's [r, out]); F32, F16 or BF16;
 * DFPO_EDATA naming the folder and the tensor when it is missing,
 * misshapen or not finite. */
int ckpt_peft_read(ckpt_peft *p, const char *name, int rows, int cols, int transposed, float *host,
                   dfpo_err *err);
/* DFPO_EDATA naming a tensor of the file that no ckpt_peft_read took. */
int ckpt_peft_all_read(const ckpt_peft *p, dfpo_err *err);
/* What every architecture's import does around its own tensor loop:
 * ckpt_peft_start opens peft's folder dir, adds its adapters to m (rank,
 * alpha, and the targets ckpt_peft_targets picks among names over
 * n_layer layers; model_add_lora) and gives *host: m's adapter block as
 * made (model_tensor_at's, model_num_params floats: the value head's
 * trainable copy stays the head) and `extra` floats of scratch after it,
 * for the reader to fill with ckpt_peft_read. ckpt_peft_finish then, when
 * rc is DFPO_OK and every tensor of the file was read, uploads the block;
 * it frees host, closes p and returns the first error. */
int ckpt_peft_start(ckpt_peft *p, model_t *m, const char *dir, const char *const *names, int n,
                    int n_layer,
                    void (*module)(const void *ctx, int l, int k, char *buf, size_t len),
                    const void *ctx, size_t extra, float **host, dfpo_err *err);
int ckpt_peft_finish(ckpt_peft *p, model_t *m, float *host, int rc, dfpo_err *err);

/* One tensor of a safetensors export: rows x cols floats, row-major, at
 * dev in the model's backend memory; written as F32 of shape [rows * cols]
 * (ndim 1), [rows, cols], or [cols, rows] with transpose (GPT-2's Conv1D).
 * With lo_r > 0 the tensor written is dev + lo_scale lo_b^T lo_a, lo_a
 * [lo_r, cols] and lo_b [lo_r, rows] in backend memory: a LoRA update
 * merged on the way out (each element summed in double precision and
 * rounded to float once). */
typedef struct ckpt_st_tensor {
  const char *name;
  const float *dev;
  const uint16_t *dev16; /* instead of dev: 16-bit weights (dtype), written widened */
  int dtype;
  int rows, cols;
  int ndim, transpose;
  const float *lo_a, *lo_b;
  int lo_r;
  float lo_scale;
} ckpt_st_tensor;
/* Writes the n tensors of m as a safetensors file at path, atomically, in
 * the order given, with meta (a JSON object of strings, or NULL) as the
 * header's __metadata__ (consumed); the header is padded with spaces to a
 * multiple of 8 bytes. */
int ckpt_write_safetensors(const model_t *m, const char *path, cJSON *meta, const ckpt_st_tensor *t,
                           int n, dfpo_err *err);
/* Writes the JSON object o (pretty-printed, a newline after it) to path
 * atomically; o stays the caller's. */
int ckpt_write_json(const char *path, const cJSON *o, dfpo_err *err);
/* peft's adapter_config.json (LoraConfig's fields, task CAUSAL_LM) beside
 * the adapter weights file weights_path: rank r, lora_alpha, the nt
 * target module names, fan_in_fan_out (GPT-2's Conv1D layers: 1). */
int ckpt_write_peft_config(const char *weights_path, int r, float alpha, const char *const *targets,
                           int nt, int fan_in_fan_out, dfpo_err *err);

#endif
