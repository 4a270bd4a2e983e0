/* GPT-2: the model definition (forward, backward, heads), its arena and its
 * model_t table (gpt2_vtable, at the end). Calls only the ops_ interface for
 * the tensors. */
#include "trainer/gpt2_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- config */

int gpt2_config_named(gpt2_config *cfg, const char *name, dfpo_err *err) {
  static const struct {
    const char *name, *alias;
    int l, h, c;
  } shapes[] = {{"gpt2-124M", "gpt2", 12, 12, 768},
                {"gpt2-350M", "gpt2-medium", 24, 16, 1024},
                {"gpt2-774M", "gpt2-large", 36, 20, 1280},
                {"gpt2-1558M", "gpt2-xl", 48, 25, 1600},
                {"gpt2-tiny", "tiny", 2, 2, 64}};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
    if (strcmp(name, shapes[i].name) == 0 || strcmp(name, shapes[i].alias) == 0) {
      memset(cfg, 0, sizeof *cfg);
      cfg->n_layer = shapes[i].l;
      cfg->n_head = shapes[i].h;
      cfg->n_embd = shapes[i].c;
      cfg->vocab_size = 50257;
      cfg->n_ctx = strcmp(shapes[i].name, "gpt2-tiny") == 0 ? 512 : 1024;
      return DFPO_OK;
    }
  }
  return dfpo_err_set(err, DFPO_EUSAGE,
                      "unknown model shape '%s' (known: gpt2-124M, gpt2-350M, gpt2-774M, "
                      "gpt2-1558M, gpt2-tiny)",
                      name);
}

int gpt2_config_check(const gpt2_config *c, dfpo_err *err) {
  if (c->n_layer < 1 || c->n_layer > 1024)
    return dfpo_err_set(err, DFPO_EDATA, "n_layer %d out of range [1, 1024]", c->n_layer);
  if (c->n_head < 1 || c->n_embd < 1 || c->n_embd % c->n_head != 0 || c->n_embd > 65536)
    return dfpo_err_set(err, DFPO_EDATA, "n_embd %d must be a positive multiple of n_head %d",
                        c->n_embd, c->n_head);
  if (c->vocab_size < 1 || c->vocab_size > (1 << 24))
    return dfpo_err_set(err, DFPO_EDATA, "vocab_size %d out of range", c->vocab_size);
  if (c->n_ctx < 1 || c->n_ctx > (1 << 20))
    return dfpo_err_set(err, DFPO_EDATA, "n_ctx %d out of range", c->n_ctx);
  if (c->head < MODEL_HEAD_NONE || c->head > MODEL_HEAD_CLASS)
    return dfpo_err_set(err, DFPO_EDATA, "head %d unknown", c->head);
  if (c->head == MODEL_HEAD_CLASS && (c->n_classes < 1 || c->n_classes > 65536))
    return dfpo_err_set(err, DFPO_EDATA, "n_classes %d out of range", c->n_classes);
  return DFPO_OK;
}

int gpt2_head_rows(const gpt2_config *cfg) {
  return cfg->head == MODEL_HEAD_VALUE ? 1 : cfg->head == MODEL_HEAD_CLASS ? cfg->n_classes : 0;
}

/* ------------------------------------------------------------- arena */

static void add_tensor(gpt2_model *m, const char *name, int rows, int cols, int conv1d, int decay) {
  gpt2_tensor *t = &m->tensors[m->ntensors++];
  snprintf(t->name, sizeof t->name, "%s", name);
  t->off = m->nparams;
  t->rows = rows;
  t->cols = cols;
  t->conv1d = conv1d;
  t->decay = decay;
  m->nparams += (size_t)rows * cols;
}

static int w16_tensor(const gpt2_model *m, int i);

/* gpt2_create: a model of cfg with its weight blocks allocated, fp32
 * throughout (wd OPS_DTYPE_F32), or laid out for wd as
 * gpt2_set_weight_dtype lays it out (w16_tensor's tensors in params16, the
 * rest compacted in params), for an import in 16 bits that never holds the
 * fp32 copy; or with borrow (a base view) over another model's parameter
 * blocks (borrow, and borrow16 when wd is 16 bits), which are never
 * allocated here (no transient copy of the base). The LayerNorm gains
 * start at 1. */
static int create(gpt2_model **out, const gpt2_config *cfg, float *borrow, uint16_t *borrow16,
                  ops_dtype wd, dfpo_err *err) {
  *out = NULL;
  if (gpt2_config_check(cfg, err))
    return err ? err->code : DFPO_EDATA;
  gpt2_model *m = calloc(1, sizeof *m);
  if (!m)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  m->cfg = *cfg;
  m->base.vt = &gpt2_vtable;
  m->base.ops = ops_default_backend();
  m->base.cfg.arch = gpt2_vtable.arch;
  m->base.cfg.vocab_size = cfg->vocab_size;
  m->base.cfg.n_ctx = cfg->n_ctx;
  m->base.cfg.head = cfg->head;
  m->base.cfg.n_classes = cfg->n_classes;
  int L = cfg->n_layer, C = cfg->n_embd, K = gpt2_head_rows(cfg);
  m->tensors = calloc((size_t)(L * GP_PER_LAYER + 6), sizeof *m->tensors);
  m->layer = calloc((size_t)L, sizeof *m->layer);
  m->kc = calloc((size_t)L, sizeof *m->kc);
  m->vc = calloc((size_t)L, sizeof *m->vc);
  if (!m->tensors || !m->layer || !m->kc || !m->vc) {
    gpt2_destroy(m);
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  }
  add_tensor(m, "wte.weight", cfg->vocab_size, C, 0, 1);
  add_tensor(m, "wpe.weight", cfg->n_ctx, C, 0, 1);
  for (int l = 0; l < L; l++) {
    char n[64];
#define T(suffix, r, c, conv, dec)                                                                 \
  snprintf(n, sizeof n, "h.%d.%s", l, suffix);                                                     \
  add_tensor(m, n, r, c, conv, dec)
    T("ln_1.weight", 1, C, 0, 0);
    T("ln_1.bias", 1, C, 0, 0);
    T("attn.c_attn.weight", 3 * C, C, 1, 1);
    T("attn.c_attn.bias", 1, 3 * C, 0, 0);
    T("attn.c_proj.weight", C, C, 1, 1);
    T("attn.c_proj.bias", 1, C, 0, 0);
    T("ln_2.weight", 1, C, 0, 0);
    T("ln_2.bias", 1, C, 0, 0);
    T("mlp.c_fc.weight", 4 * C, C, 1, 1);
    T("mlp.c_fc.bias", 1, 4 * C, 0, 0);
    T("mlp.c_proj.weight", C, 4 * C, 1, 1);
    T("mlp.c_proj.bias", 1, C, 0, 0);
#undef T
  }
  add_tensor(m, "ln_f.weight", 1, C, 0, 0);
  add_tensor(m, "ln_f.bias", 1, C, 0, 0);
  if (cfg->head == MODEL_HEAD_VALUE) {
    add_tensor(m, "v_head.summary.weight", 1, C, 0, 1);
    add_tensor(m, "v_head.summary.bias", 1, 1, 0, 0);
  } else if (cfg->head == MODEL_HEAD_CLASS) {
    add_tensor(m, "score.weight", K, C, 0, 1);
    add_tensor(m, "score.bias", 1, K, 0, 0);
  }
  m->nparams32 = m->nparams;
  if (wd != OPS_DTYPE_F32) {
    size_t n32 = 0, n16 = 0;
    for (int i = 0; i < m->ntensors; i++) {
      gpt2_tensor *t = &m->tensors[i];
      t->w16 = w16_tensor(m, i);
      t->off = model_w16_place((size_t)t->rows * t->cols, t->w16, &n32, &n16);
    }
    m->wdtype = wd, m->nparams32 = n32, m->n16 = n16;
  }
  if (borrow) {
    m->params = borrow;
    m->params16 = borrow16;
    m->params_borrowed = 1;
    *out = m;
    return DFPO_OK;
  }
  if (wd != OPS_DTYPE_F32) {
    size_t n16 = m->n16;
    if (n16 && !(m->params16 = m->base.ops->alloc(n16 * sizeof(uint16_t)))) {
      gpt2_destroy(m);
      return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory for %zu 16-bit weights", n16);
    }
  }
  m->params = m->base.ops->alloc(m->nparams32 * sizeof(float));
  if (!m->params) {
    size_t np = m->nparams;
    gpt2_destroy(m);
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory for %zu parameters", np);
  }
  /* LayerNorm gains start at 1 so that a fresh model is usable (written
   * through upload: the arena may be device memory). */
  float *ones = malloc((size_t)C * sizeof(float));
  if (!ones) {
    gpt2_destroy(m);
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  }
  for (int c = 0; c < C; c++)
    ones[c] = 1.0f;
  for (int i = 0; i < m->ntensors; i++) {
    const char *nm = m->tensors[i].name;
    size_t len = strlen(nm);
    if (len > 7 && strcmp(nm + len - 7, ".weight") == 0 && strstr(nm, "ln_"))
      m->base.ops->upload(m->params + m->tensors[i].off, ones,
                          (size_t)m->tensors[i].cols * sizeof(float));
  }
  free(ones);
  *out = m;
  return DFPO_OK;
}

int gpt2_create(gpt2_model **out, const gpt2_config *cfg, dfpo_err *err) {
  return create(out, cfg, NULL, NULL, OPS_DTYPE_F32, err);
}
int gpt2_create_as(gpt2_model **out, const gpt2_config *cfg, ops_dtype wd, dfpo_err *err) {
  return create(out, cfg, NULL, NULL, wd, err);
}

static void free_acts(gpt2_model *m) {
  m->base.last_logits = NULL;
  if (m->act_block)
    m->base.ops->free(m->act_block);
  m->act_block = NULL;
  m->act_bytes = 0;
  m->ab = m->at = m->fb = m->ft = 0;
  m->have_lm = 0;
  free(m->cls_at);
  m->cls_at = NULL;
}

static void free_gen(gpt2_model *m) {
  m->base.last_logits = NULL;
  if (m->gen_block)
    m->base.ops->free(m->gen_block);
  m->gen_block = NULL;
  m->gen_bytes = 0;
  m->gb = m->gt = m->gmax = m->gn = 0;
  free(m->g_kstart_host);
  m->g_kstart_host = NULL;
  m->g_kstart_cap = 0;
  if (m->g_spare)
    m->base.ops->free(m->g_spare);
  m->g_spare = NULL;
  m->g_spare_bytes = 0;
}

void gpt2_destroy(gpt2_model *m) {
  if (!m)
    return;
  free_acts(m);
  free_gen(m);
  if (m->params && !m->params_borrowed)
    m->base.ops->free(m->params);
  if (m->params16 && !m->params_borrowed)
    m->base.ops->free(m->params16);
  if (m->view_of)
    m->view_of->nviews--;
  if (m->train_block)
    m->base.ops->free(m->train_block);
  if (m->lora.params)
    m->base.ops->free(m->lora.params);
  if (m->lora.train_block)
    m->base.ops->free(m->lora.train_block);
  free(m->lora.tensors);
  free(m->lora.first);
  free(m->lora.u);
  free(m->tensors);
  free(m->layer);
  free(m->kc);
  free(m->vc);
  free(m);
}

int gpt2_new(model_t **out, const gpt2_config *cfg, dfpo_err *err) {
  gpt2_model *m;
  int rc = gpt2_create(&m, cfg, err);
  *out = rc ? NULL : &m->base;
  return rc;
}

const gpt2_config *gpt2_get_config(const model_t *mm) {
  return mm->vt == &gpt2_vtable ? &gpt2_of_const(mm)->cfg : NULL;
}
int gpt2_num_tensors(const model_t *mm) {
  return mm->vt == &gpt2_vtable ? gpt2_of_const(mm)->ntensors : 0;
}

static size_t gpt2_arena_bytes(const gpt2_model *m) {
  return m->nparams * sizeof(float) * (m->train_block ? 3 : 0) +
         (m->params_borrowed ? 0 : m->nparams32 * sizeof(float) + m->n16 * sizeof(uint16_t)) +
         m->lora.nparams * sizeof(float) * (m->lora.train_block ? 4 : 1) + m->act_bytes +
         m->gen_bytes + m->g_spare_bytes;
}

int gpt2_tensor_info(const model_t *mm, int i, const char **name, int *rows, int *cols,
                     float **param, float **grad) {
  if (mm->vt != &gpt2_vtable)
    return 0;
  const gpt2_model *m = gpt2_of_const(mm);
  if (i < 0 || i >= m->ntensors)
    return m->ntensors;
  const gpt2_tensor *t = &m->tensors[i];
  if (name)
    *name = t->name;
  if (rows)
    *rows = t->rows;
  if (cols)
    *cols = t->cols;
  if (param)
    *param = t->w16 ? NULL : m->params + t->off;
  if (grad)
    *grad = m->grads ? m->grads + t->off : NULL;
  return m->ntensors;
}

/* bytes of src's memory at sp into dst's at dp, across devices through the
 * host. */
static int copy_block(gpt2_model *dst, float *dp, const gpt2_model *src, const float *sp,
                      size_t bytes, dfpo_err *err) {
  if (dst->base.ops == src->base.ops) {
    dst->base.ops->copy(dp, sp, bytes);
    return DFPO_OK;
  }
  float *host = malloc(bytes);
  if (!host)
    return dfpo_err_set(err, DFPO_ERUNTIME, "gpt2_copy_params: out of memory (%zu bytes)", bytes);
  src->base.ops->download(host, sp, bytes);
  dst->base.ops->upload(dp, host, bytes);
  free(host);
  return DFPO_OK;
}

/* Whether a's and b's base parameters hold the same values (compared
 * through the host in slices when either is device memory): DFPO_EUSAGE
 * when not. */
static int same_base(const gpt2_model *a, const gpt2_model *b, dfpo_err *err) {
  return model_same_base(&a->base, a->params, a->params16, &b->base, b->params, b->params16,
                         a->nparams32, a->n16, err);
}

static int gpt2_copy_params(gpt2_model *dst, const gpt2_model *src, dfpo_err *err) {
  if (dst->params_borrowed && !dst->lora.r)
    return dfpo_err_set(err, DFPO_EUSAGE, "gpt2: a base view's parameters are another model's");
  if (memcmp(&dst->cfg, &src->cfg, sizeof dst->cfg) != 0)
    return dfpo_err_set(err, DFPO_EUSAGE, "gpt2_copy_params: the models' configs differ");
  if (dst->wdtype != src->wdtype)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "gpt2_copy_params: the models keep their weights in different precisions "
                        "(%s into %s): copy into an fp32 model, then model_set_weight_dtype",
                        ops_dtype_name(src->wdtype), ops_dtype_name(dst->wdtype));
  /* adapters are parameters too: both have the same ones, or neither */
  const gpt2_lora *zd = &dst->lora, *zs = &src->lora;
  if (zd->r != zs->r || zd->alpha != zs->alpha || zd->targets != zs->targets)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "gpt2_copy_params: the models' LoRA adapters differ (rank %d and %d)",
                        zd->r, zs->r);
  int rc;
  if (dst->params_borrowed) /* an adapter view: the base is shared, not copied */
    rc = dst->params == src->params ? DFPO_OK : same_base(dst, src, err);
  else
    rc = copy_block(dst, dst->params, src, src->params, src->nparams32 * sizeof(float), err);
  if (!rc && src->n16 && !dst->params_borrowed) /* the same layout: same config, precision */
    rc = copy_block(dst, (float *)dst->params16, src, (const float *)src->params16,
                    src->n16 * sizeof(uint16_t), err);
  if (!rc && zs->r)
    rc = copy_block(dst, zd->params, src, zs->params, zs->nparams * sizeof(float), err);
  return rc;
}

static int gpt2_copy_shared_params(gpt2_model *dst, const gpt2_model *src, int *copied,
                                   dfpo_err *err) {
  float *host = NULL;
  int n = 0;
  if (dst->wdtype != OPS_DTYPE_F32 || src->wdtype != OPS_DTYPE_F32)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "gpt2_copy_shared_params: a model with weights in %s (copy between fp32 "
                        "models)",
                        ops_dtype_name(dst->wdtype != OPS_DTYPE_F32 ? dst->wdtype : src->wdtype));
  for (int i = 0; i < dst->ntensors; i++) {
    const gpt2_tensor *d = &dst->tensors[i];
    for (int j = 0; j < src->ntensors; j++) {
      const gpt2_tensor *s = &src->tensors[j];
      if (strcmp(d->name, s->name) || d->rows != s->rows || d->cols != s->cols)
        continue;
      size_t bytes = (size_t)d->rows * d->cols * sizeof(float);
      if (dst->base.ops == src->base.ops) {
        dst->base.ops->copy(dst->params + d->off, src->params + s->off, bytes);
      } else {
        /* across devices: through the host */
        free(host);
        if (!(host = malloc(bytes)))
          return dfpo_err_set(err, DFPO_ERUNTIME, "gpt2_copy_shared_params: out of memory");
        src->base.ops->download(host, src->params + s->off, bytes);
        dst->base.ops->upload(dst->params + d->off, host, bytes);
      }
      n++;
      break;
    }
  }
  free(host);
  if (copied)
    *copied = n;
  return DFPO_OK;
}

/* model_add_value_head: v_head.summary's weight [1, C] and bias appended
 * to the tensors and to the fp32 block (grown: a 16-bit model's fp32
 * block is small), the weight the normals gpt2_init_random would give it
 * in a value model of this config (its draws after every other weight's,
 * 0.02), the bias 0. */
static int gpt2_add_value_head(gpt2_model *m, uint64_t seed, dfpo_err *err) {
  if (m->params_borrowed || m->nviews || m->train_block)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "gpt2: a value head goes on a model of its own without training state or "
                        "views");
  int C = m->cfg.n_embd, rc;
  uint64_t drawn = 0; /* gpt2_init_random's normals before the head's */
  for (int i = 0; i < m->ntensors; i++)
    if (!strstr(m->tensors[i].name, "ln_") && !strstr(m->tensors[i].name, ".bias"))
      drawn += (size_t)m->tensors[i].rows * m->tensors[i].cols;
  if ((rc = model_grow_value_head(&m->base, &m->params, m->nparams32, C, seed, drawn, 1, err)))
    return rc;
  /* the two tensors at the fp32 block's end, in the fp32 layout's count */
  size_t off = m->nparams32;
  add_tensor(m, "v_head.summary.weight", 1, C, 0, 1);
  add_tensor(m, "v_head.summary.bias", 1, 1, 0, 0);
  m->tensors[m->ntensors - 2].off = off;
  m->tensors[m->ntensors - 1].off = off + (size_t)C;
  m->nparams32 = off + (size_t)C + 1;
  m->cfg.head = MODEL_HEAD_VALUE;
  m->base.cfg.head = MODEL_HEAD_VALUE;
  free_acts(m); /* laid out again with the head's */
  free_gen(m);
  return DFPO_OK;
}

static void gpt2_init_random(gpt2_model *m, uint64_t seed) {
  if (m->params_borrowed || m->wdtype != OPS_DTYPE_F32)
    return; /* a base view's parameters are another model's; 16-bit weights are frozen */
  dfpo_rng rng;
  dfpo_rng_init(&rng, seed, DFPO_STREAM_INIT);
  float *host = malloc(m->nparams * sizeof(float));
  if (!host)
    return;
  float resid = 0.02f / sqrtf(2.0f * (float)m->cfg.n_layer);
  uint64_t drawn = 0; /* normals drawn so far, from rng's start */
  for (int i = 0; i < m->ntensors; i++) {
    const gpt2_tensor *t = &m->tensors[i];
    size_t n = (size_t)t->rows * t->cols;
    float *p = host + t->off;
    const char *nm = t->name;
    if (strstr(nm, "ln_")) {
      float v = strstr(nm, ".weight") ? 1.0f : 0.0f;
      for (size_t k = 0; k < n; k++)
        p[k] = v;
    } else if (strstr(nm, ".bias")) {
      memset(p, 0, n * sizeof(float));
    } else {
      float sd = strstr(nm, "c_proj.weight") ? resid : 0.02f;
      model_fill_normal(p, n, &rng, drawn, sd, 1);
      drawn += n;
    }
  }
  m->base.ops->upload(m->params, host, m->nparams * sizeof(float));
  free(host);
}

int gpt2_ensure_train(gpt2_model *m, dfpo_err *err) {
  if (m->params_borrowed)
    return dfpo_err_set(err, DFPO_EUSAGE, "gpt2: a base view does not train");
  /* LoRA trains the adapters alone: the frozen base may be in 16 bits */
  if (m->lora.r)
    return model_alloc_train(&m->base, m->lora.nparams, &m->lora.train_block, &m->lora.grads,
                             &m->lora.m, &m->lora.v, err);
  if (m->wdtype != OPS_DTYPE_F32)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "gpt2: the model keeps its weights in %s and does not train (a frozen "
                        "reference, judge or scorer, or a LoRA base); train an fp32 model",
                        ops_dtype_name(m->wdtype));
  return model_alloc_train(&m->base, m->nparams, &m->train_block, &m->grads, &m->m, &m->v, err);
}

/* ------------------------------------------------------ 16-bit weights */

/* The tensors kept in 16 bits: the embedding (the tied LM head) and each
 * block's four matrices; wpe, the LayerNorms, the biases and the extra
 * heads stay fp32. */
static int w16_tensor(const gpt2_model *m, int i) {
  if (i == 0)
    return 1;
  if (i < 2 || i >= gpt2_tidx_lnfw(m))
    return 0;
  int k = (i - 2) % GP_PER_LAYER;
  return k == GP_QKVW || k == GP_PROJW || k == GP_FCW || k == GP_FCPW;
}

/* The last forward pass, its logits and a decoding's cache are spent. */
static void gpt2_forget(gpt2_model *m) {
  m->have_lm = 0;
  m->fb = m->ft = 0;
  m->base.last_logits = NULL;
  m->gn = 0;
}

/* Moves the weights into the precision d (model_repack_weights). */
static int gpt2_set_weight_dtype(gpt2_model *m, ops_dtype d, dfpo_err *err) {
  int nt = m->ntensors, changed = 0;
  model_w16_tensor *t = malloc((size_t)nt * sizeof *t);
  if (!t)
    return dfpo_err_set(err, DFPO_ERUNTIME, "gpt2: out of memory");
  for (int i = 0; i < nt; i++)
    t[i] = (model_w16_tensor){(size_t)m->tensors[i].rows * m->tensors[i].cols, m->tensors[i].off,
                              m->tensors[i].w16, w16_tensor(m, i)};
  model_w16_store st = {&m->params, &m->params16, &m->nparams32, &m->n16, &m->wdtype};
  int rc = model_repack_weights(&m->base, "gpt2", m->params_borrowed, m->nviews,
                                m->train_block != NULL, d, t, nt, &st, &changed, err);
  for (int i = 0; changed && i < nt; i++)
    m->tensors[i].off = t[i].off, m->tensors[i].w16 = t[i].w16;
  free(t);
  if (changed) /* the last logits and a decoding's cache came from the old weights */
    gpt2_forget(m);
  return changed ? DFPO_OK : rc;
}

/* Lays out the activations for (B, T): a sizing pass with base NULL, then
 * the real one. Every buffer is 64-byte aligned. */

static void layout_acts(gpt2_model *m, bump *bp, int B, int T) {
  size_t BT = (size_t)B * T, C = (size_t)m->cfg.n_embd, NH = (size_t)m->cfg.n_head;
  size_t V = (size_t)m->cfg.vocab_size, K = (size_t)gpt2_head_rows(&m->cfg);
  if (K < 1)
    K = 1;
  m->d_tok = take(bp, BT * sizeof(int));
  m->d_pos = take(bp, BT * sizeof(int));
  m->d_tgt = take(bp, BT * sizeof(int));
  m->d_kstart = take(bp, (size_t)B * sizeof(int));
  m->encoded = TAKEF(bp, BT * C);
  for (int l = 0; l < m->cfg.n_layer; l++) {
    gpt2_layer_acts *a = &m->layer[l];
    if (m->ckpt && l > 0) {
      /* checkpointing: one layer's activations, recomputed by the
       * backward pass; only each layer's output is kept */
      *a = m->layer[0];
      a->res3 = TAKEF(bp, BT * C);
      continue;
    }
    a->ln1 = TAKEF(bp, BT * C);
    a->ln1_mean = TAKEF(bp, BT);
    a->ln1_rstd = TAKEF(bp, BT);
    a->qkv = TAKEF(bp, BT * 3 * C);
    a->att = TAKEF(bp, BT * T * NH);
    a->atty = TAKEF(bp, BT * C);
    a->res2 = TAKEF(bp, BT * C);
    a->ln2 = TAKEF(bp, BT * C);
    a->ln2_mean = TAKEF(bp, BT);
    a->ln2_rstd = TAKEF(bp, BT);
    a->fch = TAKEF(bp, BT * 4 * C);
    a->fch_gelu = TAKEF(bp, BT * 4 * C);
    a->res3 = TAKEF(bp, BT * C);
  }
  m->lnf = TAKEF(bp, BT * C);
  m->lnf_mean = TAKEF(bp, BT);
  m->lnf_rstd = TAKEF(bp, BT);
  m->logits = TAKEF(bp, BT * V);
  m->lse = TAKEF(bp, BT);
  m->logp = TAKEF(bp, BT);
  m->ent = TAKEF(bp, BT);
  m->dlogp = TAKEF(bp, BT);
  m->dent = TAKEF(bp, BT);
  m->head_out = TAKEF(bp, BT * K);
  m->dhead = TAKEF(bp, BT * K);
  m->head_in = TAKEF(bp, (size_t)B * C);
  m->dhead_in = TAKEF(bp, (size_t)B * C);
  m->dres = TAKEF(bp, BT * C);
  m->dln = TAKEF(bp, BT * C);
  m->dqkv = TAKEF(bp, BT * 3 * C);
  m->datty = TAKEF(bp, BT * C);
  m->dfch = TAKEF(bp, BT * 4 * C);
  /* a narrowed head's input lives from lm_logprobs to the head's backward
   * pass, and dfch is written by trunk_backward only, after that (which
   * therefore spends the logits of a narrowed head) */
  m->lnh = m->dfch;
  if (m->lora.r) {
    for (int i = 0; i < m->cfg.n_layer * GPT2_LORA_N; i++)
      m->lora.u[i] = m->lora.first[i] < 0          ? NULL
                     : m->ckpt && i >= GPT2_LORA_N ? m->lora.u[i % GPT2_LORA_N]
                                                   : TAKEF(bp, BT * (size_t)m->lora.r);
    m->lora.du = TAKEF(bp, BT * (size_t)m->lora.r);
  }
}

/* Lays the activations out for [B, T]. The block is kept while it is big
 * enough (evaluation passes batches of every length: allocating and zeroing
 * a block for each cost a quarter of a small model's evaluation time), and
 * replaced by one of the new size when it is not; a layout change forgets
 * the last forward pass. */
static int ensure_acts(gpt2_model *m, int B, int T, dfpo_err *err) {
  if (m->act_block && m->ab == B && m->at == T)
    return DFPO_OK;
  bump sz = {NULL, 0};
  layout_acts(m, &sz, B, T);
  int *cls_at = calloc((size_t)B, sizeof(int));
  if (!cls_at)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  if (!m->act_block || sz.off > m->act_bytes) {
    free_acts(m);
    m->act_block = m->base.ops->alloc(sz.off);
    if (!m->act_block) {
      free(cls_at);
      return dfpo_err_set(err, DFPO_ERUNTIME,
                          "out of memory for activations at B=%d T=%d (%zu MiB)", B, T,
                          sz.off >> 20);
    }
    m->act_bytes = sz.off;
  }
  free(m->cls_at);
  m->cls_at = cls_at;
  m->base.last_logits = NULL;
  m->fb = m->ft = 0;
  m->have_lm = 0;
  m->ckpt_layer = -1;
  bump real = {m->act_block, 0};
  layout_acts(m, &real, B, T);
  m->ab = B;
  m->at = T;
  return DFPO_OK;
}

/* ------------------------------------------------------------- LoRA */

static float *lora_u(const gpt2_model *m, int l, int k) {
  return m->lora.r ? m->lora.u[l * GPT2_LORA_N + k] : NULL;
}

void gpt2_lora_fwd(const gpt2_model *m, int l, int k, float *out, const float *x, float *u,
                   int rows) {
  const gpt2_lora *z = &m->lora;
  int i = z->r && z->on ? z->first[l * GPT2_LORA_N + k] : -1;
  if (i < 0)
    return;
  const ops_backend *o = m->base.ops;
  int C = m->cfg.n_embd, nin = k == GPT2_LORA_FCP ? 4 * C : C;
  int nout = k == GPT2_LORA_QKV ? 3 * C : k == GPT2_LORA_FC ? 4 * C : C;
  const float *A = z->params + z->tensors[i].off, *Bt = z->params + z->tensors[i + 1].off;
  model_lora_fwd(o, out, x, A, Bt, u, rows, nin, nout, z->r, z->alpha / (float)z->r);
}

const char *const gpt2_lora_names[GPT2_LORA_N] = {"attn.c_attn", "attn.c_proj", "mlp.c_fc",
                                                  "mlp.c_proj"};

/* The target list into bits (NULL or "": all four). */
static int lora_targets(const char *list, unsigned *bits, dfpo_err *err) {
  return model_lora_targets(list, gpt2_lora_names, GPT2_LORA_N, "GPT-2", bits, err);
}

static int gpt2_add_lora(gpt2_model *m, const model_lora_config *c, uint64_t seed, dfpo_err *err) {
  gpt2_lora *z = &m->lora;
  int L = m->cfg.n_layer, C = m->cfg.n_embd, rc;
  unsigned bits;
  if (z->r)
    return dfpo_err_set(err, DFPO_EUSAGE, "gpt2: the model already has LoRA adapters");
  if (m->cfg.head == MODEL_HEAD_CLASS)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "gpt2: LoRA on a model with a class head is not implemented");
  if ((rc = model_lora_check(c, C, "gpt2", err)) || (rc = lora_targets(c->targets, &bits, err)))
    return rc;
  int per = 0;
  for (int k = 0; k < GPT2_LORA_N; k++)
    per += (bits >> k) & 1;
  z->tensors = calloc((size_t)(2 * per * L + 2), sizeof *z->tensors);
  z->first = malloc((size_t)(L * GPT2_LORA_N) * sizeof *z->first);
  z->u = calloc((size_t)(L * GPT2_LORA_N), sizeof *z->u);
  if (!z->tensors || !z->first || !z->u)
    goto oom;
  z->nparams = 0;
  z->ntensors = 0;
  for (int l = 0; l < L; l++)
    for (int k = 0; k < GPT2_LORA_N; k++) {
      z->first[l * GPT2_LORA_N + k] = -1;
      if (!((bits >> k) & 1))
        continue;
      int nin = k == GPT2_LORA_FCP ? 4 * C : C;
      int nout = k == GPT2_LORA_QKV ? 3 * C : k == GPT2_LORA_FC ? 4 * C : C;
      z->first[l * GPT2_LORA_N + k] = z->ntensors;
      for (int ab = 0; ab < 2; ab++) {
        gpt2_tensor *t = &z->tensors[z->ntensors++];
        snprintf(t->name, sizeof t->name, "h.%d.%s.lora_%c.weight", l, gpt2_lora_names[k],
                 ab ? 'B' : 'A');
        t->off = z->nparams;
        t->rows = c->rank;
        t->cols = ab ? nout : nin;
        t->conv1d = ab;
        t->decay = 1;
        z->nparams += (size_t)t->rows * t->cols;
      }
    }
  int nadapt = z->ntensors;
  z->head = -1;
  if (m->cfg.head == MODEL_HEAD_VALUE) {
    /* the value head trains with the adapters: a copy of it joins them */
    z->head = z->ntensors;
    for (int wb = 0; wb < 2; wb++) {
      gpt2_tensor *t = &z->tensors[z->ntensors++];
      *t = m->tensors[gpt2_tidx_lnfw(m) + 2 + wb];
      t->off = z->nparams;
      z->nparams += (size_t)t->rows * t->cols;
    }
  }
  if (!(z->params = m->base.ops->alloc(z->nparams * sizeof(float))))
    goto oom;
  /* A: Kaiming-uniform with a = sqrt 5, U(-1/sqrt(in), 1/sqrt(in)); B: 0
   * (the backend's alloc returns zeroed memory) */
  float *host = malloc(z->nparams * sizeof(float));
  if (!host)
    goto oom;
  memset(host, 0, z->nparams * sizeof(float));
  dfpo_rng rng;
  dfpo_rng_init(&rng, seed, DFPO_STREAM_INIT);
  for (int i = 0; i < nadapt; i += 2)
    model_lora_init_a(host + z->tensors[i].off, z->tensors[i].rows, z->tensors[i].cols, &rng);
  if (z->head >= 0) /* the head as it is (weight, then bias, adjacent in both) */
    m->base.ops->download(host + z->tensors[z->head].off,
                          m->params + m->tensors[gpt2_tidx_lnfw(m) + 2].off,
                          (size_t)(m->cfg.n_embd + 1) * sizeof(float));
  m->base.ops->upload(z->params, host, z->nparams * sizeof(float));
  free(host);
  z->r = c->rank;
  z->alpha = c->alpha;
  z->targets = bits;
  z->on = 1;
  /* the base is frozen: its training state goes, and the activations are
   * laid out again with the adapters' */
  if (m->train_block)
    m->base.ops->free(m->train_block);
  m->train_block = m->grads = m->m = m->v = NULL;
  m->base.grads_zero = 0;
  free_acts(m);
  return DFPO_OK;
oom:
  if (z->params)
    m->base.ops->free(z->params);
  free(z->tensors);
  free(z->first);
  free(z->u);
  memset(z, 0, sizeof *z);
  return dfpo_err_set(err, DFPO_ERUNTIME, "gpt2: out of memory for the LoRA adapters");
}

void gpt2_lora_target_list(unsigned bits, char *buf, size_t n) {
  model_lora_target_list(bits, gpt2_lora_names, GPT2_LORA_N, buf, n);
}

static int gpt2_base_view(model_t **out, const gpt2_model *src, int adapters, dfpo_err *err) {
  *out = NULL;
  if (src->params_borrowed)
    return dfpo_err_set(err, DFPO_EUSAGE, "gpt2: a base view of a base view");
  if (ops_default_backend() != src->base.ops)
    return dfpo_err_set(err, DFPO_EUSAGE, "gpt2: a base view must be made on its model's device");
  gpt2_model *v; /* the base in src's precision (a 16-bit LoRA base too) */
  int rc = create(&v, &src->cfg, src->params, src->params16, src->wdtype, err);
  if (!rc) {
    v->view_of = (gpt2_model *)src; /* counts the views; the weights stay as they are */
    v->view_of->nviews++;
  }
  if (rc || !adapters)
    goto out;
  /* the adapter view: adapters of src's shape, then src's values */
  const gpt2_lora *z = &src->lora;
  char targets[96];
  gpt2_lora_target_list(z->targets, targets, sizeof targets);
  model_lora_config c = {z->r, z->alpha, targets};
  if ((rc = gpt2_add_lora(v, &c, 0, err)) ||
      (rc = copy_block(v, v->lora.params, src, z->params, z->nparams * sizeof(float), err))) {
    gpt2_destroy(v);
    return rc;
  }
  v->lora.on = z->on;
out:
  *out = rc ? NULL : &v->base;
  return rc;
}

static int gpt2_set_adapters(gpt2_model *m, int on) {
  if (m->lora.on != !!on) {
    m->lora.on = !!on;
    /* the last logits (and a decoding's cache) belong to the other setting */
    m->have_lm = 0;
    m->base.last_logits = NULL;
  }
  return DFPO_OK;
}

/* ------------------------------------------------------------ forward */

static int check_tokens(const gpt2_model *m, const int *tokens, const int *kstart, int B, int T,
                        dfpo_err *err) {
  if (B < 1 || T < 1)
    return dfpo_err_set(err, DFPO_EUSAGE, "gpt2: empty batch (B=%d T=%d)", B, T);
  for (int b = 0; b < B; b++) {
    int ks = kstart ? kstart[b] : 0;
    if (ks < 0 || ks > T)
      return dfpo_err_set(err, DFPO_EUSAGE, "gpt2: row %d: padding %d outside [0, %d]", b, ks, T);
    if (T - ks > m->cfg.n_ctx)
      return dfpo_err_set(err, DFPO_EUSAGE, "gpt2: row %d has %d tokens, over n_ctx %d", b, T - ks,
                          m->cfg.n_ctx);
    for (int t = 0; t < T; t++) {
      int v = tokens[(size_t)b * T + t];
      if (v < 0 || v >= m->cfg.vocab_size)
        return dfpo_err_set(err, DFPO_EUSAGE, "gpt2: token %d at [%d,%d] outside the vocabulary", v,
                            b, t);
    }
  }
  return DFPO_OK;
}

static int gpt2_reserve(gpt2_model *m, int B, int T, dfpo_err *err) {
  if (B < 1 || T < 1)
    return dfpo_err_set(err, DFPO_EUSAGE, "gpt2_reserve: bad sizes B=%d T=%d", B, T);
  return ensure_acts(m, B, T, err);
}

/* Layer l of a forward pass at (B, T): from its input (the embeddings or
 * layer l - 1's output) into its activations. The backward pass of
 * checkpointing runs it again, with the LoRA setting of the forward pass. */
static void layer_fwd(gpt2_model *m, int l, int B, int T) {
  const ops_backend *o = m->base.ops;
  int C = m->cfg.n_embd, NH = m->cfg.n_head, BT = B * T;
  float *P = m->params;
  gpt2_layer_acts *a = &m->layer[l];
  const float *x = l == 0 ? m->encoded : m->layer[l - 1].res3;
  o->layernorm_fwd(a->ln1, a->ln1_mean, a->ln1_rstd, x, gpt2_lp(m, P, l, GP_LN1W),
                   gpt2_lp(m, P, l, GP_LN1B), BT, C, GPT2_LN_EPS);
  gpt2_layer_linear(m, l, GP_QKVW, a->qkv, a->ln1, BT, C, 3 * C);
  gpt2_lora_fwd(m, l, GPT2_LORA_QKV, a->qkv, a->ln1, lora_u(m, l, GPT2_LORA_QKV), BT);
  o->attention_fwd(a->atty, a->att, a->qkv, m->d_kstart, B, T, C, NH);
  gpt2_layer_linear(m, l, GP_PROJW, a->res2, a->atty, BT, C, C);
  gpt2_lora_fwd(m, l, GPT2_LORA_PROJ, a->res2, a->atty, lora_u(m, l, GPT2_LORA_PROJ), BT);
  o->add(a->res2, a->res2, x, (size_t)BT * C);
  o->layernorm_fwd(a->ln2, a->ln2_mean, a->ln2_rstd, a->res2, gpt2_lp(m, P, l, GP_LN2W),
                   gpt2_lp(m, P, l, GP_LN2B), BT, C, GPT2_LN_EPS);
  gpt2_layer_linear(m, l, GP_FCW, a->fch, a->ln2, BT, C, 4 * C);
  gpt2_lora_fwd(m, l, GPT2_LORA_FC, a->fch, a->ln2, lora_u(m, l, GPT2_LORA_FC), BT);
  o->gelu_fwd(a->fch_gelu, a->fch, (size_t)BT * 4 * C);
  gpt2_layer_linear(m, l, GP_FCPW, a->res3, a->fch_gelu, BT, 4 * C, C);
  gpt2_lora_fwd(m, l, GPT2_LORA_FCP, a->res3, a->fch_gelu, lora_u(m, l, GPT2_LORA_FCP), BT);
  o->add(a->res3, a->res3, a->res2, (size_t)BT * C);
  m->ckpt_layer = l;
}

static int gpt2_forward(gpt2_model *m, const int *tokens, const int *kstart, int B, int T,
                        dfpo_err *err) {
  int rc = check_tokens(m, tokens, kstart, B, T, err);
  if (rc || (rc = ensure_acts(m, B, T, err)))
    return rc;
  const ops_backend *o = m->base.ops;
  int C = m->cfg.n_embd, L = m->cfg.n_layer, BT = B * T;
  int *pos = malloc((size_t)BT * sizeof(int)), *ks = calloc((size_t)B, sizeof(int));
  if (!pos || !ks) {
    free(pos);
    free(ks);
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  }
  for (int b = 0; b < B; b++) {
    ks[b] = kstart ? kstart[b] : 0;
    for (int t = 0; t < T; t++)
      pos[b * T + t] = t < ks[b] ? 0 : t - ks[b];
  }
  o->upload(m->d_tok, tokens, (size_t)BT * sizeof(int));
  o->upload(m->d_pos, pos, (size_t)BT * sizeof(int));
  o->upload(m->d_kstart, ks, (size_t)B * sizeof(int));
  free(pos);
  free(ks);

  float *P = m->params;
  gpt2_embed(m, m->encoded, m->d_tok, m->d_pos, BT);
  for (int l = 0; l < L; l++)
    layer_fwd(m, l, B, T);
  int f = gpt2_tidx_lnfw(m);
  o->layernorm_fwd(m->lnf, m->lnf_mean, m->lnf_rstd, m->layer[L - 1].res3, P + m->tensors[f].off,
                   P + m->tensors[f + 1].off, BT, C, GPT2_LN_EPS);
  m->fb = B;
  m->ft = T;
  m->fh = 0;
  m->have_lm = 0;
  m->base.last_logits = NULL;
  m->lora.fwd_on = m->lora.on;
  return DFPO_OK;
}

/* The gradient of base tensor i, or of layer l's tensor k; NULL when the
 * base is frozen (LoRA), which the ops read as "no gradient wanted". */
static float *gpt2_gt(const gpt2_model *m, int i) {
  return m->grads ? m->grads + m->tensors[i].off : NULL;
}
static float *gpt2_gl(const gpt2_model *m, int l, int k) {
  return m->grads ? gpt2_lp(m, m->grads, l, k) : NULL;
}

/* The backward pass of gpt2_lora_fwd as the last forward ran it: dout
 * [rows, n_out] the output's gradient, x its input; dx [rows, in] +=, the
 * adapters' gradients +=. With u = s A x (s = alpha/r) kept by the forward
 * and B stored transposed (Bt [r, out]): dBt += u^T dout; du = s dout Bt^T;
 * dA += du^T x; dx += du A. */
static void lora_bwd(gpt2_model *m, int l, int k, float *dx, const float *dout, const float *x,
                     int rows) {
  const gpt2_lora *z = &m->lora;
  int i = z->r ? z->first[l * GPT2_LORA_N + k] : -1;
  if (i < 0 || !z->fwd_on)
    return;
  const ops_backend *o = m->base.ops;
  int C = m->cfg.n_embd, nin = k == GPT2_LORA_FCP ? 4 * C : C;
  int nout = k == GPT2_LORA_QKV ? 3 * C : k == GPT2_LORA_FC ? 4 * C : C;
  const float *A = z->params + z->tensors[i].off, *Bt = z->params + z->tensors[i + 1].off;
  float *dA = z->grads + z->tensors[i].off, *dBt = z->grads + z->tensors[i + 1].off;
  model_lora_bwd(o, dx, dA, dBt, z->du, dout, x, z->u[l * GPT2_LORA_N + k], A, Bt, rows, nin, nout,
                 z->r, z->alpha / (float)z->r);
}

/* The backward pass of a linear over base tensor i (its weight gradient dw
 * and bias gradient db, either NULL when not wanted): in the weight's
 * precision. A 16-bit weight is frozen (a LoRA base: dw and db are NULL),
 * so only the input gradient flows through it (matmul_bwd_w16). */
static void linear_bwd(const gpt2_model *m, int i, float *dinp, float *dw, float *db,
                       const float *dout, const float *x, int M, int K, int N) {
  const gpt2_tensor *t = &m->tensors[i];
  if (t->w16)
    m->base.ops->matmul_bwd_w16(dinp, dout, m->params16 + t->off, M, K, N, (int)m->wdtype);
  else
    m->base.ops->matmul_bwd(dinp, dw, db, dout, x, m->params + t->off, M, K, N);
}
/* linear_bwd of layer l's linear of kind k with its bias (the tensor after
 * it), their gradients where the model has them */
static void layer_linear_bwd(const gpt2_model *m, int l, int k, float *dinp, const float *dout,
                             const float *x, int M, int K, int N) {
  linear_bwd(m, 2 + l * GP_PER_LAYER + k, dinp, gpt2_gl(m, l, k), gpt2_gl(m, l, k + 1), dout, x, M,
             K, N);
}

/* Backward through ln_f and the blocks, from the gradient of the final
 * hidden states in m->dln (which it consumes). */
static void trunk_backward(gpt2_model *m) {
  m->base.grads_zero = 0;
  if (m->fh) { /* lnh shares dfch: a narrowed head's logits are spent */
    m->have_lm = 0;
    m->base.last_logits = NULL;
  }
  const ops_backend *o = m->base.ops;
  int B = m->fb, T = m->ft, C = m->cfg.n_embd, NH = m->cfg.n_head, L = m->cfg.n_layer;
  int BT = B * T;
  size_t BTC = (size_t)BT * C;
  float *P = m->params;
  int f = gpt2_tidx_lnfw(m);
  o->zero(m->dres, BTC * sizeof(float));
  o->layernorm_bwd(m->dres, gpt2_gt(m, f), gpt2_gt(m, f + 1), m->dln, m->layer[L - 1].res3,
                   P + m->tensors[f].off, m->lnf_mean, m->lnf_rstd, BT, C);
  for (int l = L - 1; l >= 0; l--) {
    gpt2_layer_acts *a = &m->layer[l];
    const float *x = l == 0 ? m->encoded : m->layer[l - 1].res3;
    if (m->ckpt && m->ckpt_layer != l) {
      /* checkpointing: the layer's activations again, from its input, as
       * the forward pass computed them (its LoRA setting) */
      int on = m->lora.on;
      m->lora.on = m->lora.fwd_on;
      layer_fwd(m, l, B, T);
      m->lora.on = on;
    }
    /* res3 = res2 + fc_proj(gelu(fc(ln2(res2)))): dres carries on to res2 */
    o->zero(m->dfch, 4 * BTC * sizeof(float));
    layer_linear_bwd(m, l, GP_FCPW, m->dfch, m->dres, a->fch_gelu, BT, 4 * C, C);
    lora_bwd(m, l, GPT2_LORA_FCP, m->dfch, m->dres, a->fch_gelu, BT);
    o->gelu_bwd(m->dfch, a->fch, m->dfch, 4 * BTC);
    o->zero(m->dln, BTC * sizeof(float));
    layer_linear_bwd(m, l, GP_FCW, m->dln, m->dfch, a->ln2, BT, C, 4 * C);
    lora_bwd(m, l, GPT2_LORA_FC, m->dln, m->dfch, a->ln2, BT);
    o->layernorm_bwd(m->dres, gpt2_gl(m, l, GP_LN2W), gpt2_gl(m, l, GP_LN2B), m->dln, a->res2,
                     gpt2_lp(m, P, l, GP_LN2W), a->ln2_mean, a->ln2_rstd, BT, C);
    /* res2 = x + proj(attn(qkv(ln1(x)))): dres carries on to x */
    o->zero(m->datty, BTC * sizeof(float));
    layer_linear_bwd(m, l, GP_PROJW, m->datty, m->dres, a->atty, BT, C, C);
    lora_bwd(m, l, GPT2_LORA_PROJ, m->datty, m->dres, a->atty, BT);
    o->attention_bwd(m->dqkv, m->datty, a->qkv, a->att, m->d_kstart, B, T, C, NH);
    o->zero(m->dln, BTC * sizeof(float));
    layer_linear_bwd(m, l, GP_QKVW, m->dln, m->dqkv, a->ln1, BT, C, 3 * C);
    lora_bwd(m, l, GPT2_LORA_QKV, m->dln, m->dqkv, a->ln1, BT);
    o->layernorm_bwd(m->dres, gpt2_gl(m, l, GP_LN1W), gpt2_gl(m, l, GP_LN1B), m->dln, x,
                     gpt2_lp(m, P, l, GP_LN1W), a->ln1_mean, a->ln1_rstd, BT, C);
  }
  if (m->grads) /* a frozen base (LoRA) needs no gradient below the first block */
    o->encoder_bwd(gpt2_gt(m, 0), gpt2_gt(m, 1), m->dres, m->d_tok, m->d_pos, BT, C);
}

static int need_forward(const gpt2_model *m, dfpo_err *err) {
  if (!m->fb)
    return dfpo_err_set(err, DFPO_EUSAGE, "gpt2: no forward pass to continue from");
  return DFPO_OK;
}

/* The LM head over the last forward's columns from m->fh on: logits [B H,
 * V] (H = T - fh) of lnf's rows there (gathered into lnh when fh > 0),
 * their statistics, and logp, ent on the [B, T] grid (0 before fh). */
static int gpt2_lm_logprobs(gpt2_model *m, const int *targets, float *logp, float *ent,
                            dfpo_err *err) {
  int rc = need_forward(m, err);
  if (rc)
    return rc;
  const ops_backend *o = m->base.ops;
  int B = m->fb, T = m->ft, h = m->fh, BH = B * (T - h);
  int C = m->cfg.n_embd, V = m->cfg.vocab_size;
  int *tg = malloc((size_t)BH * sizeof(int));
  float *hv = h ? malloc((size_t)BH * sizeof(float)) : NULL;
  if (!tg || (h && !hv)) {
    free(tg);
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  }
  if ((rc = model_head_targets(tg, targets, B, T, h, V, "gpt2", err))) {
    free(tg);
    free(hv);
    return rc;
  }
  const float *in = m->lnf;
  if (h) {
    model_head_rows(o, m->lnh, m->lnf, B, T, h, (size_t)C, 0);
    in = m->lnh;
  }
  gpt2_linear(m, m->logits, in, 0, NULL, BH, C, V);
  o->upload(m->d_tgt, tg, (size_t)BH * sizeof(int));
  free(tg);
  o->logits_stats(m->lse, m->logp, m->ent, m->logits, m->d_tgt, BH, V, V);
  if (logp)
    model_head_download(o, logp, m->logp, hv, B, T, h);
  if (ent)
    model_head_download(o, ent, m->ent, hv, B, T, h);
  free(hv);
  m->have_lm = 1;
  m->base.last_logits = m->logits;
  return DFPO_OK;
}

static const gpt2_tensor *head_w(const gpt2_model *m) {
  return &m->tensors[gpt2_tidx_lnfw(m) + 2];
}

/* The value head's weight (its bias follows it) and its gradient: the
 * trainable copy among a LoRA model's adapters, else the parameter
 * block's. */
static float *vhead_param(const gpt2_model *m) {
  const gpt2_lora *z = &m->lora;
  return z->r && z->head >= 0 ? z->params + z->tensors[z->head].off : m->params + head_w(m)->off;
}
static float *vhead_grad(const gpt2_model *m) {
  const gpt2_lora *z = &m->lora;
  return z->r && z->head >= 0 ? z->grads + z->tensors[z->head].off : m->grads + head_w(m)->off;
}

/* The backward pass from the LM head (and, with dvalues, the value head on
 * the same final hidden states) through the trunk, once: the logits'
 * gradient is dlogits when given (uploaded into the logits buffer), else
 * that of sum dlogp logp + dent ent (logits_bwd). The logits are spent. */
static int gpt2_lm_value_backward(gpt2_model *m, const float *dlogp, const float *dent,
                                  const float *dlogits, const float *dvalues, dfpo_err *err) {
  int rc;
  if (!m->have_lm)
    return dfpo_err_set(err, DFPO_EUSAGE, "gpt2: an LM backward pass needs gpt2_lm_logprobs first");
  if (dvalues && m->cfg.head != MODEL_HEAD_VALUE)
    return dfpo_err_set(err, DFPO_EUSAGE, "gpt2: the model has no value head");
  if ((rc = gpt2_ensure_train(m, err)))
    return rc;
  const ops_backend *o = m->base.ops;
  int B = m->fb, T = m->ft, h = m->fh, BT = B * T, BH = B * (T - h);
  int C = m->cfg.n_embd, V = m->cfg.vocab_size;
  if (dlogits) {
    /* the logits buffer becomes their gradient, as logits_bwd leaves it */
    o->upload(m->logits, dlogits, (size_t)BH * V * sizeof(float));
  } else {
    float *hv = NULL;
    if (h && (dlogp || dent) && !(hv = malloc((size_t)BH * sizeof(float))))
      return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    if (dlogp)
      model_head_upload(o, m->dlogp, dlogp, hv, B, T, h);
    else
      o->zero(m->dlogp, (size_t)BH * sizeof(float));
    if (dent)
      model_head_upload(o, m->dent, dent, hv, B, T, h);
    free(hv);
    o->logits_bwd(m->logits, m->lse, m->ent, m->d_tgt, m->dlogp, dent ? m->dent : NULL, BH, V, V);
  }
  m->have_lm = 0;
  m->base.last_logits = NULL;
  /* the head's part of the final hidden states' gradient: into dln
   * directly, or, narrowed, into dres (free until trunk_backward) and
   * from there to the head's rows of dln */
  float *dh = h ? m->dres : m->dln;
  o->zero(dh, (size_t)BH * C * sizeof(float));
  linear_bwd(m, 0, dh, gpt2_gt(m, 0), NULL, m->logits, h ? m->lnh : m->lnf, BH, C, V);
  if (h) {
    o->zero(m->dln, (size_t)BT * C * sizeof(float));
    model_head_rows(o, m->dln, dh, B, T, h, (size_t)C, 1);
  }
  if (dvalues) {
    /* the value head adds its part of the hidden states' gradient */
    float *w = vhead_param(m), *g = vhead_grad(m);
    o->upload(m->dhead, dvalues, (size_t)BT * sizeof(float));
    o->matmul_bwd(m->dln, g, g + C, m->dhead, m->lnf, w, BT, C, 1);
  }
  trunk_backward(m);
  return DFPO_OK;
}

static int gpt2_lm_backward(gpt2_model *m, const float *dlogp, const float *dent, dfpo_err *err) {
  return gpt2_lm_value_backward(m, dlogp, dent, NULL, NULL, err);
}

static int gpt2_lm_backward_logits(gpt2_model *m, const float *dlogits, dfpo_err *err) {
  return gpt2_lm_value_backward(m, NULL, NULL, dlogits, NULL, err);
}

static int gpt2_lm_loss(gpt2_model *m, const int *tokens, const int *targets, const int *kstart,
                        int B, int T, int backward, float *loss, dfpo_err *err) {
  int rc = gpt2_forward(m, tokens, kstart, B, T, err);
  if (rc)
    return rc;
  size_t BT = (size_t)B * T;
  float *logp = malloc(BT * sizeof(float));
  if (!logp)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  if ((rc = gpt2_lm_logprobs(m, targets, logp, NULL, err))) {
    free(logp);
    return rc;
  }
  size_t n = 0;
  double s = 0.0;
  for (size_t i = 0; i < BT; i++)
    if (targets[i] >= 0) {
      n++;
      s -= logp[i];
    }
  *loss = n ? (float)(s / (double)n) : 0.0f;
  if (backward && n) {
    for (size_t i = 0; i < BT; i++)
      logp[i] = targets[i] >= 0 ? -1.0f / (float)n : 0.0f;
    rc = gpt2_lm_backward(m, logp, NULL, err);
  }
  free(logp);
  return rc;
}

/* -------------------------------------------------------------- heads */

static int gpt2_value_forward(gpt2_model *m, float *values, dfpo_err *err) {
  int rc = need_forward(m, err);
  if (rc)
    return rc;
  if (m->cfg.head != MODEL_HEAD_VALUE)
    return dfpo_err_set(err, DFPO_EUSAGE, "gpt2: the model has no value head");
  int BT = m->fb * m->ft;
  const float *w = vhead_param(m);
  m->base.ops->matmul_fwd(m->head_out, m->lnf, w, w + m->cfg.n_embd, BT, m->cfg.n_embd, 1);
  m->base.ops->download(values, m->head_out, (size_t)BT * sizeof(float));
  return DFPO_OK;
}

static int gpt2_value_backward(gpt2_model *m, const float *dvalues, dfpo_err *err) {
  int rc = need_forward(m, err);
  if (rc || (rc = gpt2_ensure_train(m, err)))
    return rc;
  if (m->cfg.head != MODEL_HEAD_VALUE)
    return dfpo_err_set(err, DFPO_EUSAGE, "gpt2: the model has no value head");
  int BT = m->fb * m->ft, C = m->cfg.n_embd;
  float *w = vhead_param(m), *g = vhead_grad(m);
  m->base.ops->upload(m->dhead, dvalues, (size_t)BT * sizeof(float));
  m->base.ops->zero(m->dln, (size_t)BT * C * sizeof(float));
  m->base.ops->matmul_bwd(m->dln, g, g + C, m->dhead, m->lnf, w, BT, C, 1);
  m->have_lm = 0;
  m->base.last_logits = NULL;
  trunk_backward(m);
  return DFPO_OK;
}

static int gpt2_class_forward(gpt2_model *m, const int *at, float *logits, dfpo_err *err) {
  int rc = need_forward(m, err);
  if (rc)
    return rc;
  if (m->cfg.head != MODEL_HEAD_CLASS)
    return dfpo_err_set(err, DFPO_EUSAGE, "gpt2: the model has no classification head");
  int B = m->fb, T = m->ft, C = m->cfg.n_embd, K = m->cfg.n_classes;
  for (int b = 0; b < B; b++) {
    if (at[b] < 0 || at[b] >= T)
      return dfpo_err_set(err, DFPO_EUSAGE, "gpt2: class position %d of row %d outside [0, %d)",
                          at[b], b, T);
    m->cls_at[b] = at[b];
    m->base.ops->copy(m->head_in + (size_t)b * C, m->lnf + ((size_t)b * T + at[b]) * C,
                      (size_t)C * sizeof(float));
  }
  const gpt2_tensor *w = head_w(m);
  m->base.ops->matmul_fwd(m->head_out, m->head_in, m->params + w->off, m->params + w[1].off, B, C,
                          K);
  m->base.ops->download(logits, m->head_out, (size_t)B * K * sizeof(float));
  return DFPO_OK;
}

static int gpt2_class_backward(gpt2_model *m, const float *dlogits, dfpo_err *err) {
  int rc = need_forward(m, err);
  if (rc || (rc = gpt2_ensure_train(m, err)))
    return rc;
  if (m->cfg.head != MODEL_HEAD_CLASS)
    return dfpo_err_set(err, DFPO_EUSAGE, "gpt2: the model has no classification head");
  int B = m->fb, T = m->ft, C = m->cfg.n_embd, K = m->cfg.n_classes;
  const gpt2_tensor *w = head_w(m);
  m->base.ops->upload(m->dhead, dlogits, (size_t)B * K * sizeof(float));
  m->base.ops->zero(m->dhead_in, (size_t)B * C * sizeof(float));
  m->base.ops->matmul_bwd(m->dhead_in, m->grads + w->off, m->grads + w[1].off, m->dhead, m->head_in,
                          m->params + w->off, B, C, K);
  m->base.ops->zero(m->dln, (size_t)B * T * C * sizeof(float));
  for (int b = 0; b < B; b++)
    m->base.ops->copy(m->dln + ((size_t)b * T + m->cls_at[b]) * C, m->dhead_in + (size_t)b * C,
                      (size_t)C * sizeof(float));
  m->have_lm = 0;
  m->base.last_logits = NULL;
  trunk_backward(m);
  return DFPO_OK;
}

/* ---------------------------------------------------------- optimiser */

static void gpt2_zero_grad(gpt2_model *m) {
  if (gpt2_ensure_train(m, NULL) == DFPO_OK && !m->base.grads_zero) {
    if (m->lora.r)
      m->base.ops->zero(m->lora.grads, m->lora.nparams * sizeof(float));
    else
      m->base.ops->zero(m->grads, m->nparams * sizeof(float));
  }
  m->base.grads_zero = 1;
}

static float gpt2_grad_norm(gpt2_model *m) {
  if (m->lora.r)
    return m->lora.grads ? (float)sqrt(m->base.ops->sumsq(m->lora.grads, m->lora.nparams)) : 0.0f;
  if (!m->grads)
    return 0.0f;
  return (float)sqrt(m->base.ops->sumsq(m->grads, m->nparams));
}

/* ------------------------------------------------------ the model_t table */

static void vt_free(model_t *m) {
  gpt2_destroy(gpt2_of(m));
}
static void vt_init_random(model_t *m, uint64_t seed) {
  gpt2_init_random(gpt2_of(m), seed);
}
static size_t vt_arena_bytes(const model_t *m) {
  return gpt2_arena_bytes(gpt2_of_const(m));
}
static int vt_new_like(model_t **out, const model_t *src, int head, int n_classes, dfpo_err *err) {
  gpt2_config c = gpt2_of_const(src)->cfg;
  c.head = head;
  c.n_classes = head == MODEL_HEAD_CLASS ? n_classes : 0;
  return gpt2_new(out, &c, err);
}
static int vt_copy_params(model_t *dst, const model_t *src, dfpo_err *err) {
  return gpt2_copy_params(gpt2_of(dst), gpt2_of_const(src), err);
}
static int vt_add_value_head(model_t *m, uint64_t seed, dfpo_err *err) {
  return gpt2_add_value_head(gpt2_of(m), seed, err);
}
static int vt_copy_shared_params(model_t *dst, const model_t *src, int *copied, dfpo_err *err) {
  return gpt2_copy_shared_params(gpt2_of(dst), gpt2_of_const(src), copied, err);
}
static int vt_num_tensors(const model_t *m) {
  const gpt2_model *g = gpt2_of_const(m);
  return g->lora.r ? g->lora.ntensors : g->ntensors;
}
static int vt_tensor_at(const model_t *mm, int i, model_tensor *t) {
  const gpt2_model *m = gpt2_of_const(mm);
  if (m->lora.r) { /* the adapters are the only trainable tensors */
    const gpt2_lora *z = &m->lora;
    const gpt2_tensor *g = &z->tensors[i];
    return model_tensor_fill(t, g->name, g->rows, g->cols, g->decay, g->off, z->params, z->grads,
                             z->m, z->v);
  }
  const gpt2_tensor *g = &m->tensors[i];
  if (g->w16) { /* frozen 16-bit weights: no fp32 view, no training state */
    int rc = model_tensor_fill(t, g->name, g->rows, g->cols, g->decay, 0, NULL, NULL, NULL, NULL);
    t->dtype = m->wdtype;
    t->param16 = m->params16 + g->off;
    return rc;
  }
  return model_tensor_fill(t, g->name, g->rows, g->cols, g->decay, g->off, m->params, m->grads,
                           m->m, m->v);
}
static int vt_ensure_train(model_t *m, dfpo_err *err) {
  return gpt2_ensure_train(gpt2_of(m), err);
}
static int vt_reserve(model_t *m, int B, int T, dfpo_err *err) {
  return gpt2_reserve(gpt2_of(m), B, T, err);
}
/* A decoder-only model reads whole rows: n_prompt does not matter. */
static int vt_forward(model_t *m, const model_batch *b, dfpo_err *err) {
  int rc = gpt2_forward(gpt2_of(m), b->tokens, b->kstart, b->B, b->T, err);
  if (!rc)
    gpt2_of(m)->fh = b->head_from;
  return rc;
}
static int vt_lm_logprobs(model_t *m, const int *targets, float *logp, float *ent, dfpo_err *err) {
  return gpt2_lm_logprobs(gpt2_of(m), targets, logp, ent, err);
}
static int vt_lm_backward(model_t *m, const float *dlogp, const float *dent, dfpo_err *err) {
  return gpt2_lm_backward(gpt2_of(m), dlogp, dent, err);
}
static int vt_lm_backward_logits(model_t *m, const float *dlogits, dfpo_err *err) {
  return gpt2_lm_backward_logits(gpt2_of(m), dlogits, err);
}
static int vt_lm_loss(model_t *m, const model_batch *b, const int *targets, int backward,
                      float *loss, dfpo_err *err) {
  return gpt2_lm_loss(gpt2_of(m), b->tokens, targets, b->kstart, b->B, b->T, backward, loss, err);
}
static int vt_score_tokens(model_t *m, const int *tokens, size_t n, double *nll_sum, size_t *scored,
                           dfpo_err *err) {
  return model_score_windows(m, tokens, n, nll_sum, scored, err);
}
static int vt_value_forward(model_t *m, float *values, dfpo_err *err) {
  return gpt2_value_forward(gpt2_of(m), values, err);
}
static int vt_value_backward(model_t *m, const float *dvalues, dfpo_err *err) {
  return gpt2_value_backward(gpt2_of(m), dvalues, err);
}
static int vt_class_forward(model_t *m, const int *at, float *logits, dfpo_err *err) {
  return gpt2_class_forward(gpt2_of(m), at, logits, err);
}
static int vt_class_backward(model_t *m, const float *dlogits, dfpo_err *err) {
  return gpt2_class_backward(gpt2_of(m), dlogits, err);
}
static void vt_zero_grad(model_t *m) {
  gpt2_zero_grad(gpt2_of(m));
}
static float vt_grad_norm(model_t *m) {
  return gpt2_grad_norm(gpt2_of(m));
}
static const float *vt_decode_begin(model_t *m, const int *tokens, const int *kstart, int B, int T,
                                    int max_len, dfpo_err *err) {
  return gpt2_decode_begin(gpt2_of(m), tokens, kstart, B, T, max_len, err);
}
static const float *vt_decode_step(model_t *m, const int *next, dfpo_err *err) {
  return gpt2_decode_step(gpt2_of(m), next, err);
}
static int vt_decode_reorder(model_t *m, const int *src_rows, dfpo_err *err) {
  return gpt2_decode_reorder(gpt2_of(m), src_rows, err);
}
static void vt_forget(model_t *m) {
  gpt2_forget(gpt2_of(m));
}
static int vt_save(model_t *m, const char *path, int with_optimizer, dfpo_err *err) {
  return gpt2_save(gpt2_of(m), path, with_optimizer, err);
}
static int vt_export_safetensors(const model_t *m, const char *path, const model_export_opts *o,
                                 dfpo_err *err) {
  return gpt2_export_safetensors(gpt2_of_const(m), path, o, err);
}

static int vt_import_adapters(model_t *m, const char *dir, dfpo_err *err) {
  return gpt2_import_adapters(gpt2_of(m), dir, err);
}
static int vt_add_lora(model_t *m, const model_lora_config *c, uint64_t seed, dfpo_err *err) {
  return gpt2_add_lora(gpt2_of(m), c, seed, err);
}
static int vt_base_view(model_t **out, const model_t *src, int adapters, dfpo_err *err) {
  return gpt2_base_view(out, gpt2_of_const(src), adapters, err);
}
static int vt_lm_value_backward(model_t *m, const float *dlogp, const float *dent,
                                const float *dlogits, const float *dvalues, dfpo_err *err) {
  return gpt2_lm_value_backward(gpt2_of(m), dlogp, dent, dlogits, dvalues, err);
}
static int vt_set_checkpointing(model_t *mm, int on, dfpo_err *err) {
  (void)err;
  gpt2_model *m = gpt2_of(mm);
  if (m->ckpt != !!on) {
    m->ckpt = !!on;
    free_acts(m); /* laid out again, the other way, by the next pass */
  }
  return DFPO_OK;
}
static int vt_checkpointing(const model_t *m) {
  return gpt2_of_const(m)->ckpt;
}
static int vt_set_weight_dtype(model_t *m, ops_dtype d, dfpo_err *err) {
  return gpt2_set_weight_dtype(gpt2_of(m), d, err);
}
static ops_dtype vt_weight_dtype(const model_t *m) {
  return gpt2_of_const(m)->wdtype;
}
static int vt_lora_rank(const model_t *m) {
  return gpt2_of_const(m)->lora.r;
}
static int vt_set_adapters(model_t *m, int on, dfpo_err *err) {
  (void)err;
  return gpt2_set_adapters(gpt2_of(m), on);
}

const model_vtable gpt2_vtable = {
    .arch = "gpt2",
    .free = vt_free,
    .init_random = vt_init_random,
    .arena_bytes = vt_arena_bytes,
    .new_like = vt_new_like,
    .copy_params = vt_copy_params,
    .copy_shared_params = vt_copy_shared_params,
    .num_tensors = vt_num_tensors,
    .tensor_at = vt_tensor_at,
    .ensure_train = vt_ensure_train,
    .reserve = vt_reserve,
    .forward = vt_forward,
    .lm_logprobs = vt_lm_logprobs,
    .lm_backward = vt_lm_backward,
    .lm_backward_logits = vt_lm_backward_logits,
    .lm_loss = vt_lm_loss,
    .score_tokens = vt_score_tokens,
    .value_forward = vt_value_forward,
    .value_backward = vt_value_backward,
    .class_forward = vt_class_forward,
    .class_backward = vt_class_backward,
    .zero_grad = vt_zero_grad,
    .grad_norm = vt_grad_norm,
    .decode_begin = vt_decode_begin,
    .decode_step = vt_decode_step,
    .decode_reorder = vt_decode_reorder,
    .forget = vt_forget,
    .save = vt_save,
    .export_safetensors = vt_export_safetensors,
    .add_lora = vt_add_lora,
    .import_adapters = vt_import_adapters,
    .lora_rank = vt_lora_rank,
    .set_adapters = vt_set_adapters,
    .base_view = vt_base_view,
    .add_value_head = vt_add_value_head,
    .lm_value_backward = vt_lm_value_backward,
    .set_checkpointing = vt_set_checkpointing,
    .checkpointing = vt_checkpointing,
    .set_weight_dtype = vt_set_weight_dtype,
    .weight_dtype = vt_weight_dtype,
};
