/* Internal to trainer/: reading Hugging Face model.safetensors files (prefix
 * st_) and PyTorch's pytorch_model.bin (pt_open, behind st_open), shared by the importers of every
 * architecture (gpt2_ckpt.c, bert.c).
 *
 * The format: an 8-byte little-endian header length, a JSON header
 * (tensor name -> {dtype, shape, data_offsets}, and an optional
 * "__metadata__" object of strings), then the raw data, each tensor's bytes
 * at data_offsets relative to the end of the header. st_open checks every
 * entry against the file (shapes and offsets integers, offsets inside the
 * data, no two tensors' bytes overlapping, byte counts matching the shape
 * for F32, F16 and BF16); st_read_f32 reads one tensor as float32.
 *
 * Ownership: an st_file owns its open FILE, the parsed header and the entry
 * table (st_close frees them); entry names and dtypes point into the header
 * and live as long as the st_file. The path is the caller's and must
 * outlive it (messages name it). */
#ifndef DFPO_TRAINER_ST_INTERNAL_H
#define DFPO_TRAINER_ST_INTERNAL_H

#include "common/common.h"

#include <cjson/cJSON.h>
#include <stdio.h>

typedef struct st_entry {
  const char *name;  /* as in the file */
  const char *dtype; /* "F32", "F16", "BF16" or another type (not readable as floats) */
  int ndim;
  int64_t shape[4];
  uint64_t begin, end; /* byte offsets in the data section */
} st_entry;

typedef struct st_file {
  const char *path;
  FILE *fp;
  char *hdr;
  cJSON *root;
  const cJSON *meta; /* "__metadata__", NULL when absent */
  st_entry *ents;
  int n;
  uint64_t data_off; /* where the data section starts in the file */
} st_file;

/* Opens and checks path; on error f holds nothing to close. A zip (a
 * pytorch_model.bin) or a pickle (the legacy torch.save format) goes to
 * pt_open. */
int st_open(st_file *f, const char *path, dfpo_err *err);
/* pt_read.c: opens PyTorch's zip format (torch.save since 1.6: a stored
 * zip of <archive>/data.pkl, the pickled state dict, and
 * <archive>/data/<key>, each storage's raw little-endian bytes) as an
 * st_file: the same entries (name, dtype by safetensors' names from the
 * storage type: F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL; shape;
 * begin and end as offsets in the file, data_off 0), read by st_read_f32.
 * The pickle is interpreted, never executed: only the opcodes and globals
 * a state dict uses (collections.OrderedDict, torch._utils'
 * _rebuild_tensor_v2 and _rebuild_parameter, torch's storage types); any
 * other is refused by name. Tensors must be contiguous and inside their
 * storage, storages inside their zip entry. The legacy format (before
 * 1.6: the pickles one after another, then the storages, each after its
 * 8-byte element count) is read the same way. The names live in f->hdr;
 * meta and root are NULL. */
int pt_open(st_file *f, const char *path, dfpo_err *err);
void st_close(st_file *f);
/* The entry named name exactly, or NULL. */
const st_entry *st_find(const st_file *f, const char *name);
/* The element count of e. */
uint64_t st_numel(const st_entry *e);
/* DFPO_OK when e has the nd dimensions want[nd]; else DFPO_EDATA naming the
 * file, the tensor (as `name`), its shape, the one wanted and where the
 * config came from (cfg_from). */
int st_check_shape(const st_file *f, const st_entry *e, const char *name, int nd,
                   const int64_t *want, const char *cfg_from, dfpo_err *err);
/* Reads e (F32, F16 or BF16; else DFPO_EDATA naming the dtype) as
 * st_numel(e) floats into dst, host memory. `name` is for messages. A NaN
 * or an infinity in the tensor is DFPO_EDATA naming it (st_check_finite). */
int st_read_f32(st_file *f, const st_entry *e, const char *name, float *dst, dfpo_err *err);
/* DFPO_OK when the n floats of v are all finite; else DFPO_EDATA naming
 * path, the tensor `name`, the first bad element's index and its value. */
int st_check_finite(const char *path, const char *name, const float *v, size_t n, dfpo_err *err);

/* The files of one checkpoint: a single model.safetensors, or the shards a
 * Hugging Face index (model.safetensors.index.json: {"weight_map": {tensor:
 * shard file}}) names, each shard opened once, relative to the index's
 * folder. st_set_open checks that every tensor of the weight map is in
 * the shard it names and that no tensor is in two shards. Owns its files
 * and their paths (st_set_close). */
typedef struct st_set {
  st_file *files;
  char **paths;
  int n;
} st_set;

/* path: a .safetensors file, or an index whose name ends in ".index.json". */
int st_set_open(st_set *s, const char *path, dfpo_err *err);
void st_set_close(st_set *s);
/* The entry named name in any file of s (and its file in *f), or NULL. */
const st_entry *st_set_find(const st_set *s, const char *name, st_file **f);
/* Whether path names a shard index (ends in ".index.json"). */
int st_is_index(const char *path);

#endif
