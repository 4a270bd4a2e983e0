/* model_t: the public calls dispatch through the architecture's table;
 * what every architecture shares (device, host views, the step count) and
 * what picks an architecture (model_load, model_import_safetensors) is here. */
#include "trainer/bert.h"
#include "trainer/ckpt_internal.h"
#include "trainer/gpt2.h"
#include "trainer/gpt2_internal.h"
#include "trainer/model_internal.h"
#include "trainer/rdec.h"
#include "trainer/st_internal.h"
#include "trainer/t5.h"
#include "trainer/t5_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void model_free(model_t *m) {
  if (m)
    m->vt->free(m);
}
const model_config *model_get_config(const model_t *m) {
  return &m->cfg;
}
ops_device model_device(const model_t *m) {
  return m->ops == &ops_cpu ? OPS_DEVICE_CPU : OPS_DEVICE_CUDA;
}
size_t model_num_params(const model_t *m) {
  size_t n = 0;
  model_tensor t;
  for (int i = 0; i < m->vt->num_tensors(m); i++)
    if (m->vt->tensor_at(m, i, &t) == DFPO_OK)
      n += (size_t)t.rows * t.cols;
  return n;
}
size_t model_arena_bytes(const model_t *m) {
  return m->vt->arena_bytes(m);
}
int model_step_count(const model_t *m) {
  return m->step;
}
void model_init_random(model_t *m, uint64_t seed) {
  m->vt->init_random(m, seed);
}

int model_new_like(model_t **out, const model_t *src, int head, int n_classes, dfpo_err *err) {
  *out = NULL;
  return src->vt->new_like(out, src, head, n_classes, err);
}
int model_clone(model_t **out, const model_t *src, dfpo_err *err) {
  int rc = model_new_like(out, src, src->cfg.head, src->cfg.n_classes, err);
  if (!rc && (rc = model_copy_params(*out, src, err))) {
    model_free(*out);
    *out = NULL;
  }
  return rc;
}
int model_copy_params(model_t *dst, const model_t *src, dfpo_err *err) {
  if (dst->vt != src->vt)
    return dfpo_err_set(err, DFPO_EUSAGE, "model_copy_params: a %s model cannot take a %s's",
                        dst->cfg.arch, src->cfg.arch);
  return dst->vt->copy_params(dst, src, err);
}
int model_copy_shared_params(model_t *dst, const model_t *src, int *copied, dfpo_err *err) {
  if (dst->vt != src->vt) {
    if (copied)
      *copied = 0;
    return DFPO_OK; /* no tensor of one architecture is another's */
  }
  return dst->vt->copy_shared_params(dst, src, copied, err);
}

int model_num_tensors(const model_t *m) {
  return m->vt->num_tensors(m);
}
int model_tensor_at(const model_t *m, int i, model_tensor *t, dfpo_err *err) {
  if (i < 0 || i >= m->vt->num_tensors(m))
    return dfpo_err_set(err, DFPO_EUSAGE, "model_tensor_at: no tensor %d (the model has %d)", i,
                        m->vt->num_tensors(m));
  return m->vt->tensor_at(m, i, t);
}
int model_ensure_train(model_t *m, dfpo_err *err) {
  return m->vt->ensure_train(m, err);
}

int model_reserve(model_t *m, int B, int T, dfpo_err *err) {
  return m->vt->reserve(m, B, T, err);
}
int model_forward(model_t *m, const model_batch *b, dfpo_err *err) {
  if (b->head_from && (b->head_from < 0 || b->head_from >= b->T))
    return dfpo_err_set(err, DFPO_EUSAGE, "%s: the LM head from column %d of %d", m->vt->arch,
                        b->head_from, b->T);
  return m->vt->forward(m, b, err);
}

int model_head_targets(int *tg, const int *targets, int B, int T, int h, int V, const char *who,
                       dfpo_err *err) {
  int H = T - h;
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) {
      int y = targets ? targets[(size_t)b * T + t] : -1;
      if (y >= V)
        return dfpo_err_set(err, DFPO_EUSAGE, "%s: target %d at row %d column %d (vocabulary %d)",
                            who, y, b, t, V);
      if (t < h && y >= 0)
        return dfpo_err_set(err, DFPO_EUSAGE,
                            "%s: target %d at row %d column %d, before the LM head's first "
                            "column %d",
                            who, y, b, t, h);
      if (t >= h)
        tg[(size_t)b * H + t - h] = y < 0 ? -1 : y;
    }
  return DFPO_OK;
}

static void head_expand(float *full, const float *compact, int B, int T, int h) {
  size_t H = (size_t)(T - h);
  for (int b = 0; b < B; b++) {
    memset(full + (size_t)b * T, 0, (size_t)h * sizeof(float));
    memcpy(full + (size_t)b * T + h, compact + b * H, H * sizeof(float));
  }
}

static void head_pick(float *compact, const float *full, int B, int T, int h) {
  size_t H = (size_t)(T - h);
  for (int b = 0; b < B; b++)
    memcpy(compact + b * H, full + (size_t)b * T + h, H * sizeof(float));
}

int model_reorder_check(const int *src, int B, const char *who, int *identity, dfpo_err *err) {
  *identity = 1;
  for (int i = 0; i < B; i++) {
    if (src[i] < 0 || src[i] >= B)
      return dfpo_err_set(err, DFPO_EUSAGE, "%s: row %d: source row %d outside the %d rows", who, i,
                          src[i], B);
    *identity &= src[i] == i;
  }
  return DFPO_OK;
}

void model_rows_reorder(const ops_backend *o, float *t, float *scratch, const int *src, int B,
                        size_t row, size_t used) {
  for (int i = 0; i < B; i++)
    o->copy(scratch + (size_t)i * row, t + (size_t)src[i] * row, used);
  o->copy(t, scratch, (size_t)B * row * sizeof(float));
}

void model_ints_reorder(const ops_backend *o, int *dev, int *host, const int *src, int B) {
  int t[B > 0 ? B : 1];
  for (int i = 0; i < B; i++)
    t[i] = host[src[i]];
  memcpy(host, t, (size_t)B * sizeof(int));
  o->upload(dev, host, (size_t)B * sizeof(int));
}

void model_head_download(const ops_backend *o, float *out, const float *src, float *buf, int B,
                         int T, int h) {
  size_t n = (size_t)B * (T - h);
  o->download(h ? buf : out, src, n * sizeof(float));
  if (h)
    head_expand(out, buf, B, T, h);
}

void model_head_upload(const ops_backend *o, float *dst, const float *in, float *buf, int B, int T,
                       int h) {
  if (h)
    head_pick(buf, in, B, T, h);
  o->upload(dst, h ? buf : in, (size_t)B * (T - h) * sizeof(float));
}

void model_head_rows(const ops_backend *o, float *dst, const float *src, int B, int T, int h,
                     size_t C, int to_full) {
  size_t H = (size_t)(T - h);
  for (int b = 0; b < B; b++) {
    size_t full = ((size_t)b * T + h) * C, compact = b * H * C;
    o->copy(dst + (to_full ? full : compact), src + (to_full ? compact : full),
            H * C * sizeof(float));
  }
}
int model_lm_logprobs(model_t *m, const int *targets, float *logp, float *ent, dfpo_err *err) {
  return m->vt->lm_logprobs(m, targets, logp, ent, err);
}
int model_lm_backward(model_t *m, const float *dlogp, const float *dent, dfpo_err *err) {
  return m->vt->lm_backward(m, dlogp, dent, err);
}
int model_lm_backward_logits(model_t *m, const float *dlogits, dfpo_err *err) {
  return m->vt->lm_backward_logits(m, dlogits, err);
}
const float *model_lm_logits(const model_t *m) {
  return m->last_logits;
}
const float *model_host_view(const model_t *m, const float *p, size_t n, float *buf) {
  if (!p || m->ops == &ops_cpu)
    return p;
  m->ops->download(buf, p, n * sizeof(float));
  return buf;
}
int model_lm_loss(model_t *m, const model_batch *b, const int *targets, int backward, float *loss,
                  dfpo_err *err) {
  return m->vt->lm_loss(m, b, targets, backward, loss, err);
}
int model_score_tokens(model_t *m, const int *tokens, size_t n, double *nll_sum, size_t *scored,
                       dfpo_err *err) {
  return m->vt->score_tokens(m, tokens, n, nll_sum, scored, err);
}
int model_value_forward(model_t *m, float *values, dfpo_err *err) {
  return m->vt->value_forward(m, values, err);
}
int model_value_backward(model_t *m, const float *dvalues, dfpo_err *err) {
  return m->vt->value_backward(m, dvalues, err);
}
int model_lm_value_backward(model_t *m, const float *dlogp, const float *dent, const float *dlogits,
                            const float *dvalues, dfpo_err *err) {
  if (!m->vt->lm_value_backward)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "model_lm_value_backward: a value head on the trunk is not implemented "
                        "for %s models",
                        m->cfg.arch);
  if (dlogits && (dlogp || dent))
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "model_lm_value_backward: dlogits with dlogp or dent (one form or the "
                        "other)");
  return m->vt->lm_value_backward(m, dlogp, dent, dlogits, dvalues, err);
}
int model_can_share_value(const model_t *m) {
  return m->vt->lm_value_backward != NULL;
}
int model_add_value_head(model_t *m, uint64_t seed, dfpo_err *err) {
  if (!m->vt->add_value_head)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "model_add_value_head: a value head on the trunk is not implemented for %s "
                        "models",
                        m->cfg.arch);
  if (m->cfg.head != MODEL_HEAD_NONE || model_lora_rank(m))
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "model_add_value_head: the model has a head or LoRA adapters already");
  for (int i = 0; i < m->vt->num_tensors(m); i++) {
    model_tensor t;
    if (m->vt->tensor_at(m, i, &t) == DFPO_OK && t.grad)
      return dfpo_err_set(err, DFPO_EUSAGE,
                          "model_add_value_head: the model has training state (add the head to "
                          "a model before it trains)");
  }
  return m->vt->add_value_head(m, seed, err);
}
int model_set_checkpointing(model_t *m, int on, dfpo_err *err) {
  if (!m->vt->set_checkpointing)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "model_set_checkpointing: activation checkpointing is not implemented for "
                        "%s models",
                        m->cfg.arch);
  return m->vt->set_checkpointing(m, on, err);
}
int model_checkpointing(const model_t *m) {
  return m->vt->checkpointing ? m->vt->checkpointing(m) : 0;
}
int model_set_weight_dtype(model_t *m, ops_dtype d, dfpo_err *err) {
  if (d == model_weight_dtype(m))
    return DFPO_OK;
  if (!m->vt->set_weight_dtype)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "model_set_weight_dtype: weights in %s are not implemented for %s models "
                        "(GPT-2 and the rotary decoders only)",
                        ops_dtype_name(d), m->cfg.arch);
  /* only a frozen model: any tensor with training state refuses (a LoRA
   * model lists its adapters, which stay fp32 and train; its base is
   * frozen and may go to 16 bits) */
  int n = model_lora_rank(m) ? 0 : m->vt->num_tensors(m);
  for (int i = 0; i < n; i++) {
    model_tensor t;
    if (m->vt->tensor_at(m, i, &t) == DFPO_OK && t.grad)
      return dfpo_err_set(err, DFPO_EUSAGE,
                          "model_set_weight_dtype: the model has training state (gradients, "
                          "AdamW moments); only a frozen model (a reference, a judge, a scorer) "
                          "keeps its weights in %s",
                          ops_dtype_name(d));
  }
  return m->vt->set_weight_dtype(m, d, err);
}
ops_dtype model_weight_dtype(const model_t *m) {
  return m->vt->weight_dtype ? m->vt->weight_dtype(m) : OPS_DTYPE_F32;
}
int model_class_forward(model_t *m, const int *at, float *logits, dfpo_err *err) {
  return m->vt->class_forward(m, at, logits, err);
}
int model_class_backward(model_t *m, const float *dlogits, dfpo_err *err) {
  return m->vt->class_backward(m, dlogits, err);
}
int model_add_lora(model_t *m, const model_lora_config *c, uint64_t seed, dfpo_err *err) {
  if (!m->vt->add_lora)
    return dfpo_err_set(err, DFPO_EUSAGE, "LoRA adapters: not implemented for %s models",
                        m->cfg.arch);
  return m->vt->add_lora(m, c, seed, err);
}
int model_lora_rank(const model_t *m) {
  return m->vt->lora_rank ? m->vt->lora_rank(m) : 0;
}
int model_set_adapters(model_t *m, int on, dfpo_err *err) {
  if (!m->vt->set_adapters || model_lora_rank(m) == 0)
    return dfpo_err_set(err, DFPO_EUSAGE, "model_set_adapters: the %s model has no LoRA adapters",
                        m->cfg.arch);
  return m->vt->set_adapters(m, on, err);
}
int model_base_view(model_t **out, const model_t *src, dfpo_err *err) {
  *out = NULL;
  if (!src->vt->base_view)
    return dfpo_err_set(err, DFPO_EUSAGE, "model_base_view: not implemented for %s models",
                        src->cfg.arch);
  return src->vt->base_view(out, src, 0, err);
}
int model_adapter_view(model_t **out, const model_t *src, dfpo_err *err) {
  *out = NULL;
  if (!src->vt->base_view || model_lora_rank(src) == 0)
    return dfpo_err_set(err, DFPO_EUSAGE, "model_adapter_view: the %s model has no LoRA adapters",
                        src->cfg.arch);
  return src->vt->base_view(out, src, 1, err);
}
void model_zero_grad(model_t *m) {
  m->vt->zero_grad(m);
}
float model_grad_norm(model_t *m) {
  return m->vt->grad_norm(m);
}
const float *model_decode_begin(model_t *m, const int *tokens, const int *kstart, int B, int T,
                                int max_len, dfpo_err *err) {
  return m->vt->decode_begin(m, tokens, kstart, B, T, max_len, err);
}
const float *model_decode_step(model_t *m, const int *next, dfpo_err *err) {
  return m->vt->decode_step(m, next, err);
}
int model_decode_reorder(model_t *m, const int *src_rows, dfpo_err *err) {
  if (!m->vt->decode_reorder)
    return dfpo_err_set(err, DFPO_EUSAGE, "decoding reorder not supported by %s", m->vt->arch);
  return m->vt->decode_reorder(m, src_rows, err);
}

int model_save(model_t *m, const char *path, int with_optimizer, dfpo_err *err) {
  return m->vt->save(m, path, with_optimizer, err);
}
int model_export_safetensors(const model_t *m, const char *path, int write_config, dfpo_err *err) {
  model_export_opts o = {.write_config = write_config, .eot_id = -1, .bos_id = -1};
  return m->vt->export_safetensors(m, path, &o, err);
}

int model_export_hf(const model_t *m, const tok_tokenizer *tok, const char *dir, dfpo_err *err) {
  if (tok_eot_id(tok) < 0)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "export: the tokenizer has no <|endoftext|>, which a Hugging Face GPT-2 "
                        "folder names as its bos and eos token");
  if (tok_vocab_size(tok) > (size_t)m->cfg.vocab_size)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "export: the tokenizer has %zu ids but the model only %d: they do not "
                        "belong together",
                        tok_vocab_size(tok), m->cfg.vocab_size);
  if (m->cfg.head != MODEL_HEAD_NONE)
    dfpo_warn("export: the model's %s head is no part of %s: left out (the folder holds the "
              "language model only)",
              m->cfg.head == MODEL_HEAD_VALUE ? "value" : "classification",
              strcmp(m->cfg.arch, "t5") ? "GPT2LMHeadModel" : "T5ForConditionalGeneration");
  char path[4200];
  int bos = (int)tok_bos_token_id(tok);
  model_export_opts o = {.write_config = 1,
                         .eot_id = (int)tok_eot_id(tok),
                         .bos_id = bos >= 0 ? bos : (int)tok_eot_id(tok),
                         .lm_only = 1};
  int rc = dfpo_path_fmt(path, sizeof path, err, "%s/model.safetensors", dir);
  if (!rc)
    rc = m->vt->export_safetensors(m, path, &o, err);
  if (!rc)
    rc = tok_save_hf(tok, dir, m->cfg.n_ctx, err);
  return rc;
}

void model_hf_config_tail(cJSON *cfg, const model_export_opts *o) {
  const char *keys[2] = {"bos_token_id", "eos_token_id"};
  int ids[2] = {o->bos_id, o->eot_id};
  for (int i = 0; i < 2; i++)
    if (ids[i] >= 0)
      cJSON_AddNumberToObject(cfg, keys[i], ids[i]);
    else
      cJSON_AddNullToObject(cfg, keys[i]);
  cJSON_AddStringToObject(cfg, "torch_dtype", "float32");
}

int model_repack_weights(const model_t *m, const char *who, int borrowed, int nviews, int training,
                         ops_dtype d, model_w16_tensor *t, int nt, const model_w16_store *s,
                         int *changed, dfpo_err *err) {
  *changed = 0;
  if (d == *s->wdtype)
    return DFPO_OK;
  if (d != OPS_DTYPE_F32 && d != OPS_DTYPE_BF16 && d != OPS_DTYPE_F16)
    return dfpo_err_set(err, DFPO_EUSAGE, "%s: weight dtype %d unknown", who, (int)d);
  if (borrowed)
    return dfpo_err_set(err, DFPO_EUSAGE, "%s: a view's weights are another model's", who);
  if (nviews)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "%s: %d base view(s) share the model's weights; free them first", who,
                        nviews);
  if (training)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "%s: the model has training state (gradients, AdamW moments); only a "
                        "frozen model keeps its weights in %s (convert a copy: model_clone)",
                        who, ops_dtype_name(d));
  const ops_backend *o = m->ops;
  size_t *off = malloc((nt > 0 ? (size_t)nt : 1) * sizeof *off), n32 = 0, n16 = 0, big = 0;
  if (!off)
    return dfpo_err_set(err, DFPO_ERUNTIME, "%s: out of memory", who);
  for (int i = 0; i < nt; i++) {
    t[i].half = d != OPS_DTYPE_F32 && t[i].half;
    off[i] = model_w16_place(t[i].n, t[i].half, &n32, &n16);
    big = t[i].n > big ? t[i].n : big;
  }
  float *p32 = o->alloc(n32 * sizeof(float)), *host = malloc(big * sizeof(float));
  uint16_t *p16 = n16 ? o->alloc(n16 * sizeof(uint16_t)) : NULL, *h16 = malloc(big * 2);
  if (!p32 || (n16 && !p16) || !host || !h16) {
    if (p32)
      o->free(p32);
    if (p16)
      o->free(p16);
    free(host);
    free(h16);
    free(off);
    return dfpo_err_set(err, DFPO_ERUNTIME, "%s: out of memory for the weights in %s", who,
                        ops_dtype_name(d));
  }
  for (int i = 0; i < nt; i++) {
    size_t n = t[i].n;
    if (t[i].w16) {
      o->download(h16, *s->params16 + t[i].off, n * sizeof(uint16_t));
      ops_w16_to_f32(host, h16, n, (int)*s->wdtype);
    } else {
      o->download(host, *s->params + t[i].off, n * sizeof(float));
    }
    if (t[i].half) {
      ops_f32_to_w16(h16, host, n, (int)d);
      o->upload(p16 + off[i], h16, n * sizeof(uint16_t));
    } else {
      o->upload(p32 + off[i], host, n * sizeof(float));
    }
    t[i].off = off[i];
    t[i].w16 = t[i].half;
  }
  free(host);
  free(h16);
  free(off);
  o->free(*s->params);
  if (*s->params16)
    o->free(*s->params16);
  *s->params = p32;
  *s->params16 = p16;
  *s->n32 = n32;
  *s->n16 = n16;
  *s->wdtype = d;
  *changed = 1;
  return DFPO_OK;
}

int model_export_adapters(const model_t *m, const char *dir, dfpo_err *err) {
  if (model_lora_rank(m) == 0)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "export: the %s model has no LoRA adapters to write on their own",
                        m->cfg.arch);
  char path[4200];
  model_export_opts o = {
      .write_config = 1, .eot_id = -1, .bos_id = -1, .lm_only = 1, .adapters = 1};
  int rc = dfpo_path_fmt(path, sizeof path, err, "%s/adapter_model.safetensors", dir);
  return rc ? rc : m->vt->export_safetensors(m, path, &o, err);
}

/* The architectures a file can hold: a native checkpoint names its
 * architecture in its 8-byte magic; its reader lays a new model out for
 * the destination's wd (GPT-2 and the rotary decoders round their matrices
 * as they read them; T5 keeps none in 16 bits: it loads in fp32, and
 * model_load_as's conversion then says so) or reads into a model in place. */
static const struct {
  const char *magic;
  int (*load_native)(model_t **out, const char *path, FILE *fp, const ckpt_dest *to, dfpo_err *err);
} native_formats[] = {{GPT2_NATIVE_MAGIC, gpt2_load_native},
                      {RDEC_NATIVE_MAGIC, rdec_load_native},
                      {T5_NATIVE_MAGIC, t5_load_native}};

/* The native reader of the file at path (its magic) run for `to`; fp is
 * left open for the caller (*fp NULL: the file did not open); *found 0
 * when the file is not a native checkpoint (nothing read). */
static int load_native(model_t **out, const char *path, const ckpt_dest *to, FILE **fp, int *found,
                       dfpo_err *err) {
  *found = 0;
  if (!(*fp = fopen(path, "rb")))
    return dfpo_err_errno(err, DFPO_EDATA, errno, "%s", path);
  char magic[8] = {0};
  size_t got = fread(magic, 1, 8, *fp);
  for (size_t i = 0; got == 8 && i < sizeof native_formats / sizeof native_formats[0]; i++)
    if (memcmp(magic, native_formats[i].magic, 8) == 0) {
      *found = 1;
      rewind(*fp);
      return native_formats[i].load_native(out, path, *fp, to, err);
    }
  return DFPO_OK;
}

/* model_load_into and model_load_adapters. */
static int load_into(model_t *m, const char *path, int adapters_only, dfpo_err *err) {
  if (adapters_only && !model_lora_rank(m))
    return dfpo_err_set(err, DFPO_EUSAGE, "%s: the %s model has no LoRA adapters to read into",
                        path, m->cfg.arch);
  ckpt_dest to = {model_weight_dtype(m), m, adapters_only};
  model_t *out = NULL;
  FILE *fp;
  int found, rc = load_native(&out, path, &to, &fp, &found, err);
  if (fp)
    fclose(fp);
  /* the last forward pass, its logits and a decoding's cache were the old
   * parameters' */
  if (found) {
    m->last_logits = NULL;
    if (m->vt->forget)
      m->vt->forget(m);
  }
  if (!rc && !found)
    rc = dfpo_err_set(err, DFPO_EDATA,
                      "%s: not a dfpo checkpoint (its magic is none of the "
                      "native formats')",
                      path);
  return rc;
}
int model_load_peft_adapters(model_t *m, const char *dir, dfpo_err *err) {
  if (!m->vt->import_adapters)
    return dfpo_err_set(
        err, DFPO_EUSAGE,
        "%s: peft's adapter files are read onto GPT-2 and the rotary decoders, not a %s", dir,
        m->cfg.arch);
  if (model_lora_rank(m))
    return dfpo_err_set(err, DFPO_EUSAGE, "%s: the model has LoRA adapters already", dir);
  return m->vt->import_adapters(m, dir, err);
}
int model_load_into(model_t *m, const char *path, dfpo_err *err) {
  return load_into(m, path, 0, err);
}
int model_load_adapters(model_t *m, const char *path, dfpo_err *err) {
  return load_into(m, path, 1, err);
}

int model_path_is_native(const char *path) {
  FILE *fp = fopen(path, "rb");
  char magic[8];
  int got = fp && fread(magic, 1, 8, fp) == 8, native = 0;
  for (size_t i = 0; got && i < sizeof native_formats / sizeof native_formats[0]; i++)
    native |= memcmp(magic, native_formats[i].magic, 8) == 0;
  if (fp)
    fclose(fp);
  return native;
}

/* model_import_safetensors with the weights in wd: GPT-2 and the rotary
 * decoders read them straight into it (gpt2_ and rdec_import_safetensors_as);
 * the others are read in fp32 and left to model_load_as's conversion. */
static int import_as(model_t **out, const char *path, ops_dtype wd, dfpo_err *err) {
  /* config.json's model_type beside the file chooses the architecture;
   * GPT-2 when there is none (files this project exported name their
   * config in the header's __metadata__) */
  *out = NULL;
  char cpath[4096], type[32] = "";
  int rc = model_config_beside(path, cpath, sizeof cpath, err);
  if (rc)
    return rc;
  char *text = NULL;
  if (dfpo_read_file(cpath, &text, NULL, NULL) == DFPO_OK) {
    cJSON *j = dfpo_json_nul_escape(text, strlen(text)) < 0 ? cJSON_Parse(text) : NULL;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(j, "model_type");
    if (cJSON_IsString(mt))
      snprintf(type, sizeof type, "%s", mt->valuestring);
    cJSON_Delete(j);
    free(text);
  }
  if ((bert_handles(type) || t5_handles(type)) && st_is_index(path))
    return dfpo_err_set(err, DFPO_EDATA,
                        "%s: sharded weights are read for GPT-2 only; a %s model needs one "
                        "model.safetensors or pytorch_model.bin",
                        path, type);
  if (rdec_handles(type))
    return rdec_import_safetensors_as(out, path, wd, err); /* shards too */
  if (bert_handles(type))
    return bert_import_safetensors(out, path, err);
  if (t5_handles(type))
    return t5_import_safetensors(out, path, err);
  if (type[0] && strcmp(type, "gpt2") != 0)
    return dfpo_err_set(err, DFPO_EDATA,
                        "%s: model_type '%s' is not an architecture this build reads (gpt2, "
                        "gptj, gpt_neox, llama, distilbert, bert, roberta, t5)",
                        cpath, type);
  return gpt2_import_safetensors_as(out, path, NULL, wd, err);
}

int model_import_safetensors(model_t **out, const char *path, dfpo_err *err) {
  return import_as(out, path, OPS_DTYPE_F32, err);
}

int model_path_is_folder(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int model_hf_weights(const char *dir, char *buf, size_t n, dfpo_err *err) {
  int rc = dfpo_path_fmt(buf, n, err, "%s/model.safetensors", dir);
  if (rc || is_file(buf))
    return rc;
  if ((rc = dfpo_path_fmt(buf, n, err, "%s/model.safetensors.index.json", dir)) || is_file(buf))
    return rc;
  if ((rc = dfpo_path_fmt(buf, n, err, "%s/pytorch_model.bin", dir)) || is_file(buf))
    return rc;
  if ((rc = dfpo_path_fmt(buf, n, err, "%s/pytorch_model.bin.index.json", dir)) || is_file(buf))
    return rc;
  return dfpo_err_set(err, DFPO_EDATA,
                      "%s: a folder without weights (model.safetensors, "
                      "model.safetensors.index.json, pytorch_model.bin or "
                      "pytorch_model.bin.index.json)",
                      dir);
}

static int load_as(model_t **out, const char *path, ops_dtype wd, dfpo_err *err) {
  *out = NULL;
  if (model_path_is_folder(path)) {
    char w[4200];
    int rc = model_hf_weights(path, w, sizeof w, err);
    return rc ? rc : import_as(out, w, wd, err);
  }
  if (st_is_index(path))
    return import_as(out, path, wd, err);
  ckpt_dest to = {wd, NULL, 0};
  FILE *fp;
  int found, rc = load_native(out, path, &to, &fp, &found, err);
  if (rc || found) {
    if (fp)
      fclose(fp);
    return rc;
  }
  /* a safetensors file starts with its header length and then '{'; a
   * torch.save file is a zip (or, legacy, a pickle: st_open says so) */
  char magic[8] = {0};
  rewind(fp);
  size_t got = fread(magic, 1, 8, fp);
  int brace = fgetc(fp);
  fclose(fp);
  if (got < 8)
    return dfpo_err_set(err, DFPO_EDATA, "%s: too short to be a checkpoint (%zu bytes)", path, got);
  if (brace != '{' && memcmp(magic, "PK\3\4", 4) != 0 && (unsigned char)magic[0] != 0x80)
    return dfpo_err_set(err, DFPO_EDATA,
                        "%s: neither a dfpo checkpoint (magic \"" GPT2_NATIVE_MAGIC
                        "\"), a safetensors file nor a torch.save zip (pytorch_model.bin)",
                        path);
  return import_as(out, path, wd, err);
}

int model_load(model_t **out, const char *path, dfpo_err *err) {
  return load_as(out, path, OPS_DTYPE_F32, err);
}

int model_load_as(model_t **out, const char *path, ops_dtype wd, dfpo_err *err) {
  int rc = load_as(out, path, wd, err);
  if (!rc && (rc = model_set_weight_dtype(*out, wd, err))) {
    model_free(*out);
    *out = NULL;
  }
  return rc;
}

int model_copy_floats(const model_t *dst, float *dp, const model_t *src, const float *sp, size_t n,
                      dfpo_err *err) {
  return model_copy_bytes(dst, dp, src, sp, n * sizeof(float), err);
}
/* Whether `bytes` bytes at pa (a's backend memory) and pb (b's) are the
 * same (*equal), compared through the host in slices. */
static int same_bytes(const model_t *a, const void *pa, const model_t *b, const void *pb,
                      size_t bytes, int *equal, dfpo_err *err) {
  size_t slice = (size_t)1 << 22;
  unsigned char *ha = malloc(slice), *hb = malloc(slice);
  *equal = 1;
  int rc = ha && hb ? DFPO_OK : dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  for (size_t i = 0; !rc && *equal && i < bytes; i += slice) {
    size_t k = bytes - i < slice ? bytes - i : slice;
    a->ops->download(ha, (const unsigned char *)pa + i, k);
    b->ops->download(hb, (const unsigned char *)pb + i, k);
    *equal = memcmp(ha, hb, k) == 0;
  }
  free(ha);
  free(hb);
  return rc;
}

int model_grow_value_head(const model_t *m, float **params, size_t n, int C, uint64_t seed,
                          uint64_t first, int round_first, dfpo_err *err) {
  const ops_backend *o = m->ops;
  float *p = o->alloc((n + (size_t)C + 1) * sizeof(float)),
        *h = malloc((size_t)(C + 1) * sizeof(float));
  if (!p || !h) {
    if (p)
      o->free(p);
    free(h);
    return dfpo_err_set(err, DFPO_ERUNTIME, "%s: out of memory for the value head", m->cfg.arch);
  }
  dfpo_rng rng;
  dfpo_rng_init(&rng, seed, DFPO_STREAM_INIT);
  model_fill_normal(h, (size_t)C, &rng, first, round_first ? 0.02f : 0.02, round_first);
  h[C] = 0.0f;
  o->copy(p, *params, n * sizeof(float));
  o->upload(p + n, h, (size_t)(C + 1) * sizeof(float));
  free(h);
  o->free(*params);
  *params = p;
  return DFPO_OK;
}

int model_same_base(const model_t *a, const float *a32, const uint16_t *a16, const model_t *b,
                    const float *b32, const uint16_t *b16, size_t n32, size_t n16, dfpo_err *err) {
  int eq = 0, rc = same_bytes(a, a32, b, b32, n32 * sizeof(float), &eq, err);
  if (!rc && eq && n16)
    rc = same_bytes(a, a16, b, b16, n16 * sizeof(uint16_t), &eq, err);
  if (!rc && !eq)
    rc = dfpo_err_set(err, DFPO_EUSAGE,
                      "%s: an adapter view takes adapters only, and the source's base weights "
                      "differ from the view's",
                      a->cfg.arch);
  return rc;
}

int model_copy_bytes(const model_t *dst, void *dp, const model_t *src, const void *sp, size_t bytes,
                     dfpo_err *err) {
  if (dst->ops == src->ops) {
    dst->ops->copy(dp, sp, bytes);
    return DFPO_OK;
  }
  void *h = malloc(bytes ? bytes : 1);
  if (!h)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  src->ops->download(h, sp, bytes);
  dst->ops->upload(dp, h, bytes);
  free(h);
  return DFPO_OK;
}

int model_alloc_train(model_t *m, size_t n, float **block, float **grads, float **m1, float **m2,
                      dfpo_err *err) {
  if (*block)
    return DFPO_OK;
  if (!(*block = m->ops->alloc(3 * n * sizeof(float))))
    return dfpo_err_set(err, DFPO_ERUNTIME, "%s: out of memory for the training state (%zu bytes)",
                        m->cfg.arch, 3 * n * sizeof(float));
  m->grads_zero = 1; /* the backend's alloc returns zeroed memory */
  *grads = *block;
  *m1 = *grads + n;
  *m2 = *m1 + n;
  return DFPO_OK;
}

int model_tensor_fill(model_tensor *t, const char *name, int rows, int cols, int decay, size_t off,
                      float *params, float *grads, float *m1, float *m2) {
  t->name = name;
  t->rows = rows;
  t->cols = cols;
  t->decay = decay;
  t->param = params ? params + off : NULL;
  t->dtype = OPS_DTYPE_F32;
  t->param16 = NULL;
  t->grad = grads ? grads + off : NULL;
  t->m1 = m1 ? m1 + off : NULL;
  t->m2 = m2 ? m2 + off : NULL;
  return DFPO_OK;
}

int model_copy_shared_by_name(model_t *dst, const model_t *src, int *copied, dfpo_err *err) {
  int n = 0, nd = dst->vt->num_tensors(dst), ns = src->vt->num_tensors(src);
  for (int i = 0; i < nd; i++) {
    model_tensor a, b;
    dst->vt->tensor_at(dst, i, &a);
    for (int j = 0; j < ns; j++) {
      src->vt->tensor_at(src, j, &b);
      if (strcmp(a.name, b.name) || a.rows != b.rows || a.cols != b.cols)
        continue;
      int rc = model_copy_floats(dst, a.param, src, b.param, (size_t)a.rows * a.cols, err);
      if (rc)
        return rc;
      n++;
      break;
    }
  }
  if (copied)
    *copied = n;
  return DFPO_OK;
}

int model_lm_loss_forward(model_t *m, const model_batch *b, const int *targets, float *loss,
                          dfpo_err *err) {
  size_t n = (size_t)b->B * b->T;
  float *lp = malloc((n ? n : 1) * sizeof(float));
  if (!lp)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  int rc = m->vt->forward(m, b, err);
  if (!rc)
    rc = m->vt->lm_logprobs(m, targets, lp, NULL, err);
  if (!rc) {
    double s = 0.0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
      if (targets[i] >= 0)
        s -= lp[i], k++;
    *loss = k ? (float)(s / (double)k) : 0.0f;
  }
  free(lp);
  return rc;
}

int model_score_windows(model_t *m, const int *tokens, size_t n, double *nll_sum, size_t *scored,
                        dfpo_err *err) {
  *nll_sum = 0.0;
  *scored = 0;
  if (n < 2)
    return DFPO_OK;
  size_t W = (size_t)m->cfg.n_ctx < n ? (size_t)m->cfg.n_ctx : n, half = W / 2 ? W / 2 : 1;
  int *tgt = malloc(W * sizeof(int));
  float *logp = malloc(W * sizeof(float));
  if (!tgt || !logp) {
    free(tgt);
    free(logp);
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  }
  int rc = DFPO_OK;
  size_t done = 1; /* the first index not scored yet */
  for (size_t s = 0; done < n && !rc; s = done > half ? done - half : 0) {
    size_t e = s + W < n ? s + W : n;
    if (e - s < 2)
      break;
    int T = (int)(e - s);
    for (int t = 0; t < T; t++) {
      size_t i = s + (size_t)t + 1; /* the token position t predicts */
      tgt[t] = i < e && i >= done ? tokens[i] : -1;
    }
    model_batch b = {tokens + s, NULL, 1, T, 0, 0};
    if ((rc = m->vt->forward(m, &b, err)) || (rc = m->vt->lm_logprobs(m, tgt, logp, NULL, err)))
      break;
    for (int t = 0; t < T; t++)
      if (tgt[t] >= 0) {
        *nll_sum -= logp[t];
        (*scored)++;
      }
    done = e;
  }
  free(tgt);
  free(logp);
  return rc;
}

int model_config_beside(const char *path, char *buf, size_t n, dfpo_err *err) {
  const char *slash = strrchr(path, '/');
  int dl = slash ? (int)(slash - path) : 0;
  return dfpo_path_fmt(buf, n, err, "%.*s%sconfig.json", dl, path, slash ? "/" : "");
}

/* normals a thread draws at a time in model_fill_normal */
#define FILL_CHUNK 65536

void model_fill_normal(float *dst, size_t n, const dfpo_rng *start, uint64_t first, double sd,
                       int round_first) {
  size_t nchunk = (n + FILL_CHUNK - 1) / FILL_CHUNK;
  float sdf = (float)sd;
#pragma omp parallel for schedule(static) if (nchunk > 1)
  for (size_t c = 0; c < nchunk; c++) {
    dfpo_rng r = *start;
    size_t k0 = c * FILL_CHUNK, k1 = k0 + FILL_CHUNK < n ? k0 + FILL_CHUNK : n;
    dfpo_rng_advance(&r, 4u * (first + k0));
    for (size_t k = k0; k < k1; k++)
      dst[k] = round_first ? (float)dfpo_rng_normal(&r) * sdf : (float)(sd * dfpo_rng_normal(&r));
  }
}
