/* T5's checkpoints: the native format (magic T5_NATIVE_MAGIC; the layout
 * gpt2_ckpt.c's follows, through trainer/ckpt_internal.h) and the Hugging
 * Face export (model.safetensors under T5ForConditionalGeneration's names,
 * config.json). Both little-endian. */
#define _FILE_OFFSET_BITS 64
#include "trainer/ckpt_internal.h"
#include "trainer/t5_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define T5_NATIVE_VERSION 1u
#define T5_NATIVE_HEADER 96u

typedef struct t5_native_header {
  char magic[8];
  uint32_t version, header_bytes;
  int32_t vocab_size, d_model, d_kv, d_ff, n_head, n_layer, n_dec_layer, num_buckets, max_distance,
      gated, tied, n_pos, start_id, eos_id;
  float eps;
  int32_t head, step;
  uint32_t flags; /* 1: AdamW's moments follow the parameters; 2: the head's
                     scale differs from the tie (t5_config.head_scale) */
  uint64_t nparams;
} t5_native_header;
_Static_assert(sizeof(t5_native_header) == T5_NATIVE_HEADER, "T5's native header is 96 bytes");

/* The parameters of a T5 of config c with head (build_layout's tensors),
 * counted before anything is allocated. */
static uint64_t param_count(const t5_config *c, int head) {
  uint64_t C = (uint64_t)c->d_model, I = (uint64_t)c->n_head * c->d_kv, F = (uint64_t)c->d_ff;
  uint64_t V = (uint64_t)c->vocab_size, bias = (uint64_t)c->num_buckets * c->n_head;
  uint64_t attn = 4 * I * C + C, ff = (c->gated ? 3 : 2) * F * C + C;
  uint64_t n = V * C;                                         /* shared */
  n += (uint64_t)c->n_layer * (attn + ff) + bias + C;         /* encoder, its table, final norm */
  n += (uint64_t)c->n_dec_layer * (2 * attn + ff) + bias + C; /* decoder */
  if (!c->tied)
    n += V * C; /* lm_head */
  if (head == MODEL_HEAD_VALUE)
    n += C + 1;
  return n;
}

int t5_save(t5_model *m, const char *path, int with_optimizer, dfpo_err *err) {
  const t5_config *c = &m->cfg;
  t5_native_header h;
  memset(&h, 0, sizeof h);
  memcpy(h.magic, T5_NATIVE_MAGIC, 8);
  h.version = T5_NATIVE_VERSION;
  h.header_bytes = T5_NATIVE_HEADER;
  h.vocab_size = c->vocab_size;
  h.d_model = c->d_model;
  h.d_kv = c->d_kv;
  h.d_ff = c->d_ff;
  h.n_head = c->n_head;
  h.n_layer = c->n_layer;
  h.n_dec_layer = c->n_dec_layer;
  h.num_buckets = c->num_buckets;
  h.max_distance = c->max_distance;
  h.gated = c->gated;
  h.tied = c->tied;
  h.n_pos = c->n_pos;
  h.start_id = c->start_id;
  h.eos_id = c->eos_id;
  h.eps = c->eps;
  h.head = m->base.cfg.head;
  h.step = m->base.step;
  with_optimizer = with_optimizer && m->train_block;
  /* 2: the head's scale is not the tie's (t5_config.head_scale) */
  h.flags = (with_optimizer ? 1u : 0u) | (t5_scales_head(c) != c->tied ? 2u : 0u);
  h.nparams = m->nparams;
  return ckpt_save(&m->base, path, &h, sizeof h, m->nparams, with_optimizer, err);
}

/* Whether two configs describe the same model (head_scale compared by its
 * effect: a file records only whether it differs from the tie's). */
static int same_config(const t5_config *a, const t5_config *b) {
  return a->vocab_size == b->vocab_size && a->d_model == b->d_model && a->d_kv == b->d_kv &&
         a->d_ff == b->d_ff && a->n_head == b->n_head && a->n_layer == b->n_layer &&
         a->n_dec_layer == b->n_dec_layer && a->num_buckets == b->num_buckets &&
         a->max_distance == b->max_distance && a->eps == b->eps && a->gated == b->gated &&
         a->tied == b->tied && a->n_pos == b->n_pos && a->start_id == b->start_id &&
         a->eos_id == b->eos_id && t5_scales_head(a) == t5_scales_head(b);
}

int t5_load_native(model_t **out, const char *path, FILE *fp, const ckpt_dest *to, dfpo_err *err) {
  *out = NULL;
  t5_native_header h;
  if (fread(&h, sizeof h, 1, fp) != 1)
    return dfpo_err_set(err, DFPO_EDATA, "%s: truncated header (%u bytes expected)", path,
                        T5_NATIVE_HEADER);
  if (memcmp(h.magic, T5_NATIVE_MAGIC, 8) != 0)
    return dfpo_err_set(err, DFPO_EDATA, "%s: not a dfpo T5 checkpoint (bad magic)", path);
  if (h.version != T5_NATIVE_VERSION)
    return dfpo_err_set(err, DFPO_EDATA,
                        "%s: T5 checkpoint version %u, this build reads version %u", path,
                        h.version, T5_NATIVE_VERSION);
  if (h.header_bytes != T5_NATIVE_HEADER || (h.flags & ~3u) || h.step < 0 ||
      (h.head != MODEL_HEAD_NONE && h.head != MODEL_HEAD_VALUE) || (h.gated & ~1) ||
      (h.tied & ~1) || !isfinite(h.eps))
    return dfpo_err_set(err, DFPO_EDATA,
                        "%s: corrupt header (size %u, flags %#x, step %d, head %d, gated %d, "
                        "tied %d, epsilon %g)",
                        path, h.header_bytes, h.flags, h.step, h.head, h.gated, h.tied,
                        (double)h.eps);
  t5_config c = {.vocab_size = h.vocab_size,
                 .d_model = h.d_model,
                 .d_kv = h.d_kv,
                 .d_ff = h.d_ff,
                 .n_head = h.n_head,
                 .n_layer = h.n_layer,
                 .n_dec_layer = h.n_dec_layer,
                 .num_buckets = h.num_buckets,
                 .max_distance = h.max_distance,
                 .eps = h.eps,
                 .gated = h.gated,
                 .tied = h.tied,
                 .head_scale = !(h.flags & 2u) ? T5_SCALE_AS_TIED
                               : h.tied        ? T5_SCALE_OFF
                                               : T5_SCALE_ON,
                 .n_pos = h.n_pos,
                 .start_id = h.start_id,
                 .eos_id = h.eos_id};
  char where[4200];
  snprintf(where, sizeof where, "%s: header config", path);
  int rc = t5_config_check(&c, where, err);
  if (rc)
    return rc;
  /* the sizes must agree before anything is allocated */
  uint64_t want = param_count(&c, h.head);
  if (h.nparams != want)
    return dfpo_err_set(err, DFPO_EDATA,
                        "%s: header says %llu parameters, its config has %llu: config and tensors "
                        "do not match",
                        path, (unsigned long long)h.nparams, (unsigned long long)want);
  if ((rc = ckpt_check_size(fp, path, T5_NATIVE_HEADER, want, h.flags & 1, err)))
    return rc;
  t5_model *m;
  /* T5 has no adapters and no views: a whole model in fp32 */
  if ((rc = ckpt_into_arch(to, &t5_vtable, "a T5 checkpoint", path, err)))
    return rc;
  if (to->into) {
    m = t5_of(to->into);
    if ((rc = ckpt_into_fits(to, same_config(&c, &m->cfg) && h.head == to->into->cfg.head, 0, 0, 0,
                             path, err)))
      return rc;
  } else if ((rc = t5_create(&m, &c, h.head, err))) {
    return dfpo_err_prefix(err, "%s", path);
  }
  if ((uint64_t)m->nparams != want)
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "%s: t5 counts %zu parameters, its layout %llu", path,
                      m->nparams, (unsigned long long)want);
  if (!rc)
    rc = ckpt_load_blocks(fp, &m->base, m->nparams, h.flags & 1, path, err);
  if (rc) {
    if (!to->into)
      t5_destroy(m);
    return rc;
  }
  m->base.step = h.step;
  *out = &m->base;
  return DFPO_OK;
}

/* The shortest decimal that reads back as the float f (1e-06, not
 * 9.99999997475243e-07). */
static double float_decimal(float f) {
  char b[32];
  for (int p = 1; p < 10; p++) {
    snprintf(b, sizeof b, "%.*g", p, (double)f);
    if ((float)strtod(b, NULL) == f)
      return strtod(b, NULL);
  }
  return (double)f;
}

/* config.json for transformers' T5Config: every field t5_import_safetensors
 * reads, and what T5ForConditionalGeneration needs besides (dfpo trains
 * without dropout: dropout_rate 0). */
static cJSON *hf_config_json(const t5_config *c) {
  cJSON *o = cJSON_CreateObject();
  cJSON *arch = cJSON_AddArrayToObject(o, "architectures");
  cJSON_AddItemToArray(arch, cJSON_CreateString("T5ForConditionalGeneration"));
  cJSON_AddStringToObject(o, "model_type", "t5");
  cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size);
  cJSON_AddNumberToObject(o, "d_model", c->d_model);
  cJSON_AddNumberToObject(o, "d_kv", c->d_kv);
  cJSON_AddNumberToObject(o, "d_ff", c->d_ff);
  cJSON_AddNumberToObject(o, "num_heads", c->n_head);
  cJSON_AddNumberToObject(o, "num_layers", c->n_layer);
  cJSON_AddNumberToObject(o, "num_decoder_layers", c->n_dec_layer);
  cJSON_AddNumberToObject(o, "relative_attention_num_buckets", c->num_buckets);
  cJSON_AddNumberToObject(o, "relative_attention_max_distance", c->max_distance);
  cJSON_AddNumberToObject(o, "n_positions", c->n_pos);
  cJSON_AddNumberToObject(o, "layer_norm_epsilon", float_decimal(c->eps));
  cJSON_AddStringToObject(o, "feed_forward_proj", c->gated ? "gated-gelu" : "relu");
  cJSON_AddBoolToObject(o, "is_gated_act", c->gated);
  cJSON_AddStringToObject(o, "dense_act_fn", c->gated ? "gelu_new" : "relu");
  cJSON_AddBoolToObject(o, "tie_word_embeddings", c->tied);
  cJSON_AddBoolToObject(o, "scale_decoder_outputs", t5_scales_head(c));
  cJSON_AddNumberToObject(o, "dropout_rate", 0);
  cJSON_AddNumberToObject(o, "initializer_factor", 1.0);
  cJSON_AddBoolToObject(o, "is_encoder_decoder", 1);
  cJSON_AddBoolToObject(o, "use_cache", 1);
  cJSON_AddNumberToObject(o, "pad_token_id", 0);
  cJSON_AddNumberToObject(o, "decoder_start_token_id", c->start_id);
  if (c->eos_id >= 0)
    cJSON_AddNumberToObject(o, "eos_token_id", c->eos_id);
  else
    cJSON_AddNullToObject(o, "eos_token_id");
  cJSON_AddStringToObject(o, "torch_dtype", "float32");
  return o;
}

int t5_export_safetensors(const t5_model *m, const char *path, const model_export_opts *o,
                          dfpo_err *err) {
  ckpt_st_tensor *ts = calloc((size_t)m->ntensors, sizeof *ts);
  if (!ts)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  int n = 0;
  for (int k = 0; k < m->ntensors; k++) {
    const t5_tensor *t = &m->tensors[k];
    int head = strncmp(t->name, "v_head.", 7) == 0;
    if (o->lm_only && head)
      continue;
    /* the norms' weights and the head's bias are vectors; the value
     * head's weight [1, C] stays a matrix (trl's nn.Linear) */
    ts[n++] = (ckpt_st_tensor){.name = t->name,
                               .dev = t5_P(m, k),
                               .rows = t->rows,
                               .cols = t->cols,
                               .ndim = t->vec ? 1 : 2};
  }
  cJSON *meta = cJSON_CreateObject();
  cJSON_AddStringToObject(meta, "format", "pt");
  int rc = ckpt_write_safetensors(&m->base, path, meta, ts, n, err);
  free(ts);
  if (rc || !o->write_config)
    return rc;
  char cpath[4096];
  if ((rc = model_config_beside(path, cpath, sizeof cpath, err)))
    return rc;
  cJSON *cj = hf_config_json(&m->cfg);
  if (!cj)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  rc = ckpt_write_json(cpath, cj, err);
  cJSON_Delete(cj);
  return rc;
}
