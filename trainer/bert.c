/* Encoder classifiers: DistilBERT, BERT and RoBERTa sequence classifiers
 * (trainer/bert.h), forward only, through the backend's op table. */
#include "trainer/bert.h"
#include "trainer/model_internal.h"
#include "trainer/st_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The tensors of one layer, in memory order: q, k and v weights follow
 * each other, and so do their biases, so that they form the fused
 * [3C, C] and [3C] of the attention op's qkv layout. */
enum {
  BL_QW,
  BL_KW,
  BL_VW,
  BL_QB,
  BL_KB,
  BL_VB,
  BL_OW,
  BL_OB,
  BL_LN1W,
  BL_LN1B,
  BL_F1W,
  BL_F1B,
  BL_F2W,
  BL_F2B,
  BL_LN2W,
  BL_LN2B,
  BL_N
};

typedef struct bert_tensor {
  char name[96];
  size_t off;
  int rows, cols; /* vectors: rows 1 */
  int vec;        /* a vector (bias, LayerNorm), [cols] in the file */
} bert_tensor;

typedef struct bert_model {
  struct model base;
  bert_config cfg;
  char model_type[16];
  char **labels; /* [n_labels] */
  bert_tensor *tensors;
  int ntensors;
  int emb;    /* index of the word embeddings (then positions, [types], LayerNorm w, b) */
  int layer0; /* index of layer 0's first tensor */
  int head;   /* index of the head's first tensor (dense w, b, out w, b) */
  float *params;
  size_t nparams;
  /* activations, for up to cap_bt tokens in rows of up to cap_t */
  float *act;
  size_t act_floats, cap_bt, cap_t, cap_b;
  float *h, *qkv, *att, *ctx, *a, *h1, *f, *pt, *cls, *pool, *logits;
  int *ids; /* device: tok[BT], pos[BT], kstart[B], zeros[n_pos], iota[n_pos] */
  size_t ids_cap;
  int fB, fT; /* the last forward pass (0: none) */
} bert_model;

extern const model_vtable bert_vtable;

static bert_model *bert_of(model_t *m) {
  return (bert_model *)m;
}
static const bert_model *bert_of_const(const model_t *m) {
  return (const bert_model *)m;
}

int bert_handles(const char *model_type) {
  return model_type && (!strcmp(model_type, "distilbert") || !strcmp(model_type, "bert") ||
                        !strcmp(model_type, "roberta"));
}

const bert_config *bert_get_config(const model_t *m) {
  return m && m->vt == &bert_vtable ? &bert_of_const(m)->cfg : NULL;
}

const char *bert_label(const model_t *m, int k) {
  const bert_config *c = bert_get_config(m);
  return c && k >= 0 && k < c->n_labels ? bert_of_const(m)->labels[k] : NULL;
}

/* ------------------------------------------------------------ layout */

static void add_tensor(bert_model *m, const char *name, int rows, int cols, int vec) {
  bert_tensor *t = &m->tensors[m->ntensors++];
  snprintf(t->name, sizeof t->name, "%s", name);
  t->off = m->nparams;
  t->rows = rows;
  t->cols = cols;
  t->vec = vec;
  m->nparams += (size_t)rows * cols;
}

/* Hugging Face's names: [family][slot] for the per-layer weights (the
 * biases are the same with ".bias"). */
static const char *const layer_names[2][8] = {
    {"attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin", "sa_layer_norm",
     "ffn.lin1", "ffn.lin2", "output_layer_norm"},
    {"attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
     "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm"}};

static void build_layout(bert_model *m) {
  const bert_config *c = &m->cfg;
  const char *base = c->family == BERT_DISTILBERT ? "distilbert"
                     : c->family == BERT_BERT     ? "bert"
                                                  : "roberta";
  int C = c->hidden, F = c->ffn, fam = c->family == BERT_DISTILBERT ? 0 : 1;
  char n[96];
  m->emb = m->ntensors;
#define ADDT(r, cl, v, ...)                                                                        \
  do {                                                                                             \
    snprintf(n, sizeof n, __VA_ARGS__);                                                            \
    add_tensor(m, n, r, cl, v);                                                                    \
  } while (0)
#define ADD(r, cl, ...) ADDT(r, cl, 0, __VA_ARGS__)
#define VEC(cl, ...) ADDT(1, cl, 1, __VA_ARGS__)
  ADD(c->vocab_size, C, "%s.embeddings.word_embeddings.weight", base);
  ADD(c->n_pos, C, "%s.embeddings.position_embeddings.weight", base);
  if (c->type_vocab > 0)
    ADD(c->type_vocab, C, "%s.embeddings.token_type_embeddings.weight", base);
  VEC(C, "%s.embeddings.LayerNorm.weight", base);
  VEC(C, "%s.embeddings.LayerNorm.bias", base);
  m->layer0 = m->ntensors;
  const char *stack = fam == 0 ? "transformer" : "encoder";
  for (int l = 0; l < c->n_layer; l++) {
    const char *const *ln = layer_names[fam];
    for (int s = 0; s < 3; s++) /* q, k, v weights */
      ADD(C, C, "%s.%s.layer.%d.%s.weight", base, stack, l, ln[s]);
    for (int s = 0; s < 3; s++)
      VEC(C, "%s.%s.layer.%d.%s.bias", base, stack, l, ln[s]);
    ADD(C, C, "%s.%s.layer.%d.%s.weight", base, stack, l, ln[3]);
    VEC(C, "%s.%s.layer.%d.%s.bias", base, stack, l, ln[3]);
    VEC(C, "%s.%s.layer.%d.%s.weight", base, stack, l, ln[4]);
    VEC(C, "%s.%s.layer.%d.%s.bias", base, stack, l, ln[4]);
    ADD(F, C, "%s.%s.layer.%d.%s.weight", base, stack, l, ln[5]);
    VEC(F, "%s.%s.layer.%d.%s.bias", base, stack, l, ln[5]);
    ADD(C, F, "%s.%s.layer.%d.%s.weight", base, stack, l, ln[6]);
    VEC(C, "%s.%s.layer.%d.%s.bias", base, stack, l, ln[6]);
    VEC(C, "%s.%s.layer.%d.%s.weight", base, stack, l, ln[7]);
    VEC(C, "%s.%s.layer.%d.%s.bias", base, stack, l, ln[7]);
  }
  m->head = m->ntensors;
  static const char *const dense[3] = {"pre_classifier", "bert.pooler.dense", "classifier.dense"};
  static const char *const out[3] = {"classifier", "classifier", "classifier.out_proj"};
  ADD(C, C, "%s.weight", dense[c->family]);
  VEC(C, "%s.bias", dense[c->family]);
  ADD(c->n_labels, C, "%s.weight", out[c->family]);
  VEC(c->n_labels, "%s.bias", out[c->family]);
#undef ADD
#undef VEC
#undef ADDT
}

static float *P(const bert_model *m, int i) {
  return m->params + m->tensors[i].off;
}
static float *LP(const bert_model *m, int l, int slot) {
  return P(m, m->layer0 + l * BL_N + slot);
}

static void bert_destroy(bert_model *m) {
  if (!m)
    return;
  const ops_backend *o = m->base.ops;
  if (o) {
    o->free(m->params);
    o->free(m->act);
    o->free(m->ids);
  }
  for (int k = 0; m->labels && k < m->cfg.n_labels; k++)
    free(m->labels[k]);
  free(m->labels);
  free(m->tensors);
  free(m);
}

/* A model of config c with zeroed parameters (labels unnamed yet). */
static int bert_create(bert_model **out, const bert_config *c, dfpo_err *err) {
  *out = NULL;
  bert_model *m = calloc(1, sizeof *m);
  if (!m)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  m->cfg = *c;
  snprintf(m->model_type, sizeof m->model_type, "%s", c->model_type);
  m->cfg.model_type = m->model_type;
  m->base.vt = &bert_vtable;
  m->base.ops = ops_default_backend();
  m->base.cfg.arch = bert_vtable.arch;
  m->base.cfg.vocab_size = c->vocab_size;
  m->base.cfg.n_ctx = c->max_tokens;
  m->base.cfg.head = MODEL_HEAD_CLASS;
  m->base.cfg.n_classes = c->n_labels;
  m->tensors = calloc((size_t)c->n_layer * BL_N + 12, sizeof *m->tensors);
  m->labels = calloc((size_t)c->n_labels, sizeof *m->labels);
  if (!m->tensors || !m->labels) {
    bert_destroy(m);
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  }
  build_layout(m);
  m->params = m->base.ops->alloc(m->nparams * sizeof(float));
  if (!m->params) {
    bert_destroy(m);
    return dfpo_err_set(err, DFPO_ERUNTIME, "cannot allocate %zu parameters on %s", m->nparams,
                        m->base.ops->name);
  }
  *out = m;
  return DFPO_OK;
}

/* ------------------------------------------------------------ config */

/* o[key] as an int, dflt when absent; -1 (refused by the range checks
 * below) when it is not an integer in [0, 1e9]: a cast of 1e20 to int
 * would be undefined. */
static int jint(const cJSON *o, const char *key, int dflt) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!x)
    return dflt;
  double d = cJSON_IsNumber(x) ? x->valuedouble : -1;
  return d >= 0 && d <= 1e9 && d == floor(d) ? (int)d : -1;
}
static const char *jstr(const cJSON *o, const char *key) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsString(x) ? x->valuestring : NULL;
}

/* Reads config.json (cpath) into *c and the label names into *labels
 * (n_labels of them, malloc'ed; NULL entries for LABEL_k). n_out: the
 * classifier's rows when id2label is absent (-1: unknown). */
static int read_config(const char *cpath, int n_out, bert_config *c, char ***labels,
                       dfpo_err *err) {
  char *text = NULL;
  int rc = dfpo_read_file(cpath, &text, NULL, err);
  if (rc)
    return rc;
  cJSON *j = cJSON_Parse(text);
  free(text);
  if (!cJSON_IsObject(j)) {
    cJSON_Delete(j);
    return dfpo_err_set(err, DFPO_EDATA, "%s: not a JSON object", cpath);
  }
  memset(c, 0, sizeof *c);
  *labels = NULL;
  const char *mt = jstr(j, "model_type"), *act;
  if (!bert_handles(mt)) {
    rc = dfpo_err_set(err, DFPO_EDATA,
                      "%s: model_type %s%s%s is not an encoder classifier this build reads "
                      "(distilbert, bert, roberta)",
                      cpath, mt ? "'" : "", mt ? mt : "(missing)", mt ? "'" : "");
    goto done;
  }
  if (!strcmp(mt, "distilbert")) {
    c->family = BERT_DISTILBERT;
    c->model_type = "distilbert";
    c->hidden = jint(j, "dim", 768);
    c->n_layer = jint(j, "n_layers", 6);
    c->n_head = jint(j, "n_heads", 12);
    c->ffn = jint(j, "hidden_dim", 3072);
    c->ln_eps = 1e-12f; /* fixed in DistilBERT */
    act = jstr(j, "activation");
    c->pad_id = jint(j, "pad_token_id", 0);
  } else {
    c->family = !strcmp(mt, "bert") ? BERT_BERT : BERT_ROBERTA;
    c->model_type = c->family == BERT_BERT ? "bert" : "roberta";
    c->hidden = jint(j, "hidden_size", 768);
    c->n_layer = jint(j, "num_hidden_layers", 12);
    c->n_head = jint(j, "num_attention_heads", 12);
    c->ffn = jint(j, "intermediate_size", 3072);
    c->type_vocab = jint(j, "type_vocab_size", 2);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "layer_norm_eps");
    c->ln_eps = cJSON_IsNumber(e) ? (float)e->valuedouble : 1e-12f;
    act = jstr(j, "hidden_act");
    c->pad_id = jint(j, "pad_token_id", c->family == BERT_BERT ? 0 : 1);
    const char *pet = jstr(j, "position_embedding_type");
    if (pet && strcmp(pet, "absolute") != 0) {
      rc = dfpo_err_set(err, DFPO_EDATA,
                        "%s: position_embedding_type '%s' (only absolute positions are read)",
                        cpath, pet);
      goto done;
    }
    if (c->type_vocab < 1) {
      rc = dfpo_err_set(err, DFPO_EDATA, "%s: type_vocab_size %d", cpath, c->type_vocab);
      goto done;
    }
  }
  c->vocab_size = jint(j, "vocab_size", 0);
  c->n_pos = jint(j, "max_position_embeddings", 512);
  c->pos_offset = c->family == BERT_ROBERTA ? c->pad_id + 1 : 0;
  c->max_tokens = c->n_pos - c->pos_offset;
  if (!act || !strcmp(act, "gelu"))
    c->act = OPS_ACT_GELU_ERF;
  else if (!strcmp(act, "relu"))
    c->act = OPS_ACT_RELU;
  else if (!strcmp(act, "gelu_new") || !strcmp(act, "gelu_pytorch_tanh"))
    c->act = -1;
  else {
    rc = dfpo_err_set(err, DFPO_EDATA,
                      "%s: activation '%s' (gelu, gelu_new, gelu_pytorch_tanh or relu are read)",
                      cpath, act);
    goto done;
  }
  if (c->hidden <= 0 || c->n_layer <= 0 || c->n_head <= 0 || c->hidden % c->n_head || c->ffn <= 0 ||
      c->vocab_size <= 0 || c->max_tokens < 2 || c->pad_id < 0 || c->hidden > 65536 ||
      c->ffn > 1 << 20 || c->n_layer > 1000 || c->n_pos > 1 << 20) {
    rc = dfpo_err_set(err, DFPO_EDATA,
                      "%s: sizes out of range or inconsistent (width %d, layers %d, heads %d, "
                      "feed-forward %d, vocabulary %d, positions %d, pad id %d)",
                      cpath, c->hidden, c->n_layer, c->n_head, c->ffn, c->vocab_size, c->n_pos,
                      c->pad_id);
    goto done;
  }
  const cJSON *id2 = cJSON_GetObjectItemCaseSensitive(j, "id2label");
  int K = cJSON_IsObject(id2) ? cJSON_GetArraySize(id2) : n_out;
  if (K <= 0 || K > 100000) {
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: no labels (id2label is missing or empty)", cpath);
    goto done;
  }
  c->n_labels = K;
  const char *pt = jstr(j, "problem_type");
  if (pt && strcmp(pt, "single_label_classification") != 0 &&
      strcmp(pt, "multi_label_classification") != 0) {
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: problem_type '%s' gives no label probabilities", cpath,
                      pt);
    goto done;
  }
  c->multi_label = (pt && !strcmp(pt, "multi_label_classification")) || K == 1;
  *labels = calloc((size_t)K, sizeof **labels);
  if (!*labels) {
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    goto done;
  }
  const cJSON *it, *names = cJSON_IsObject(id2) ? id2 : NULL;
  cJSON_ArrayForEach(it, names) {
    char *end;
    long k = strtol(it->string, &end, 10);
    if (*end || end == it->string || k < 0 || k >= K || !cJSON_IsString(it) || (*labels)[k]) {
      rc = dfpo_err_set(err, DFPO_EDATA,
                        "%s: id2label: entry '%s' is not a label name for an id 0..%d (each once)",
                        cpath, it->string, K - 1);
      goto done;
    }
    if (!((*labels)[k] = strdup(it->valuestring))) {
      rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
      goto done;
    }
  }
done:
  if (rc && *labels) {
    for (int k = 0; k < c->n_labels; k++)
      free((*labels)[k]);
    free(*labels);
    *labels = NULL;
  }
  cJSON_Delete(j);
  return rc;
}

/* ------------------------------------------------------------ loading */

int bert_import_safetensors(model_t **out, const char *path, dfpo_err *err) {
  *out = NULL;
  char cpath[4096];
  int rc = model_config_beside(path, cpath, sizeof cpath, err);
  if (rc)
    return rc;
  st_file f;
  if ((rc = st_open(&f, path, err)))
    return rc;
  bert_model *m = NULL;
  char **labels = NULL;
  float *buf = NULL;
  bert_config c;
  /* the classifier's rows give the label count when id2label is absent */
  int n_out = -1;
  static const char *const outs[2] = {"classifier.weight", "classifier.out_proj.weight"};
  for (int i = 0; i < 2; i++) {
    const st_entry *e = st_find(&f, outs[i]);
    if (e && e->ndim == 2)
      n_out = (int)e->shape[0];
  }
  if ((rc = read_config(cpath, n_out, &c, &labels, err)))
    goto done;
  if ((rc = bert_create(&m, &c, err)))
    goto done;
  for (int k = 0; k < c.n_labels; k++) {
    char dflt[32];
    snprintf(dflt, sizeof dflt, "LABEL_%d", k);
    m->labels[k] = labels[k] ? labels[k] : strdup(dflt);
    labels[k] = NULL;
    if (!m->labels[k]) {
      rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
      goto done;
    }
  }
  size_t maxn = 0;
  for (int k = 0; k < m->ntensors; k++)
    if ((size_t)m->tensors[k].rows * m->tensors[k].cols > maxn)
      maxn = (size_t)m->tensors[k].rows * m->tensors[k].cols;
  if (!(buf = malloc(maxn * sizeof(float)))) {
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    goto done;
  }
  for (int k = 0; k < m->ntensors; k++) {
    const bert_tensor *t = &m->tensors[k];
    const st_entry *e = st_find(&f, t->name);
    if (!e) {
      rc = dfpo_err_set(err, DFPO_EDATA, "%s: tensor '%s' missing (a %s sequence classifier)", path,
                        t->name, c.model_type);
      goto done;
    }
    int64_t want[2] = {t->vec ? t->cols : t->rows, t->cols};
    if ((rc = st_check_shape(&f, e, t->name, t->vec ? 1 : 2, want, "config.json", err)) ||
        (rc = st_read_f32(&f, e, t->name, buf, err)))
      goto done;
    m->base.ops->upload(m->params + t->off, buf, (size_t)t->rows * t->cols * sizeof(float));
  }
  for (int i = 0; i < f.n; i++) {
    const char *nm = f.ents[i].name;
    int known = 0;
    for (int k = 0; k < m->ntensors && !known; k++)
      known = strcmp(m->tensors[k].name, nm) == 0;
    size_t L = strlen(nm);
    /* position_ids buffers of older checkpoints are not parameters */
    if (!known && !(L >= 12 && strcmp(nm + L - 12, "position_ids") == 0))
      dfpo_warn("%s: tensor '%s' is not part of the %s classifier; ignored", path, nm,
                c.model_type);
  }
  *out = &m->base;
  m = NULL;
done:
  if (labels) {
    for (int k = 0; k < c.n_labels; k++)
      free(labels[k]);
    free(labels);
  }
  free(buf);
  bert_destroy(m);
  st_close(&f);
  return rc;
}

int bert_load(model_t **out, const char *folder, dfpo_err *err) {
  /* model.safetensors, else pytorch_model.bin (shards are GPT-2's only) */
  char path[4096];
  int rc = dfpo_path_fmt(path, sizeof path, err, "%s/model.safetensors", folder);
  struct stat st;
  if (!rc && stat(path, &st) != 0)
    rc = dfpo_path_fmt(path, sizeof path, err, "%s/pytorch_model.bin", folder);
  if (!rc && stat(path, &st) != 0)
    return dfpo_err_set(err, DFPO_EDATA, "%s: no model.safetensors nor pytorch_model.bin", folder);
  return rc ? rc : bert_import_safetensors(out, path, err);
}

/* ------------------------------------------------------------ passes */

static int reserve(bert_model *m, int B, int T, dfpo_err *err) {
  const ops_backend *o = m->base.ops;
  size_t BT = (size_t)B * T;
  if (BT > m->cap_bt || (size_t)T > m->cap_t || (size_t)B > m->cap_b) {
    size_t bt = BT > m->cap_bt ? BT : m->cap_bt, t = (size_t)T > m->cap_t ? (size_t)T : m->cap_t;
    size_t b = (size_t)B > m->cap_b ? (size_t)B : m->cap_b;
    if (b * t > bt)
      bt = b * t;
    size_t C = (size_t)m->cfg.hidden, F = (size_t)m->cfg.ffn, NH = (size_t)m->cfg.n_head;
    size_t K = (size_t)m->cfg.n_labels, Pn = (size_t)m->cfg.n_pos;
    size_t n = bt * C * 5 + bt * 3 * C + b * NH * t * t + bt * F + Pn * C + b * C * 2 + b * K;
    float *act = o->alloc(n * sizeof(float));
    if (!act)
      return dfpo_err_set(err, DFPO_ERUNTIME, "cannot allocate %zu activation floats on %s", n,
                          o->name);
    o->free(m->act);
    m->act = act;
    m->act_floats = n;
    m->cap_bt = bt, m->cap_t = t, m->cap_b = b;
    float *p = act;
    m->h = p, p += bt * C;
    m->qkv = p, p += bt * 3 * C;
    m->att = p, p += b * NH * t * t;
    m->ctx = p, p += bt * C;
    m->a = p, p += bt * C;
    m->h1 = p, p += bt * C;
    m->f = p, p += bt * F;
    m->pt = p, p += Pn * C;
    m->cls = p, p += b * C;
    m->pool = p, p += b * C;
    m->logits = p;
  }
  size_t ni = 2 * BT + (size_t)B + 2 * (size_t)m->cfg.n_pos;
  if (ni > m->ids_cap) {
    int *ids = o->alloc(ni * sizeof(int));
    if (!ids)
      return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory on %s", o->name);
    o->free(m->ids);
    m->ids = ids;
    m->ids_cap = ni;
  }
  return DFPO_OK;
}

static int bert_forward(bert_model *m, const model_batch *b, dfpo_err *err) {
  const bert_config *c = &m->cfg;
  const ops_backend *o = m->base.ops;
  int B = b->B, T = b->T, C = c->hidden, NH = c->n_head, F = c->ffn;
  m->fB = m->fT = 0;
  if (B <= 0 || T <= 0)
    return dfpo_err_set(err, DFPO_EUSAGE, "bert: empty batch (%d x %d)", B, T);
  size_t BT = (size_t)B * T, Pn = (size_t)c->n_pos;
  int *h_ids = malloc((2 * BT + (size_t)B + 2 * Pn) * sizeof(int));
  if (!h_ids)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  int *tok = h_ids, *pos = tok + BT, *ks = pos + BT, *zeros = ks + B, *iota = zeros + Pn;
  int rc = DFPO_OK;
  for (int r = 0; r < B && !rc; r++) {
    ks[r] = b->kstart ? b->kstart[r] : 0;
    if (ks[r] < 0 || ks[r] >= T || T - ks[r] > c->max_tokens) {
      rc = dfpo_err_set(err, DFPO_EUSAGE,
                        "bert: row %d has %d tokens (kstart %d of %d columns); 1..%d fit", r,
                        T - ks[r], ks[r], T, c->max_tokens);
      break;
    }
    /* positions count from the row's first real token; RoBERTa's, as
     * Hugging Face's create_position_ids_from_input_ids, count only tokens
     * other than the pad token, which sit at pad_id */
    int roberta = c->family == BERT_ROBERTA, counted = 0;
    for (int t = 0; t < T; t++) {
      int id = b->tokens[(size_t)r * T + t], *tp = &tok[(size_t)r * T + t];
      int *pp = &pos[(size_t)r * T + t];
      if (t < ks[r]) { /* padding columns: masked keys, outputs never read */
        *tp = c->pad_id < c->vocab_size ? c->pad_id : 0;
        *pp = roberta ? c->pad_id : 0;
        continue;
      }
      if (id < 0 || id >= c->vocab_size) {
        rc = dfpo_err_set(err, DFPO_EUSAGE, "bert: token id %d at row %d column %d (vocabulary %d)",
                          id, r, t, c->vocab_size);
        break;
      }
      *tp = id;
      *pp = !roberta ? t - ks[r] : id == c->pad_id ? c->pad_id : c->pad_id + ++counted;
    }
  }
  for (size_t p = 0; p < Pn; p++)
    zeros[p] = 0, iota[p] = (int)p;
  if (!rc)
    rc = reserve(m, B, T, err);
  if (rc) {
    free(h_ids);
    return rc;
  }
  o->upload(m->ids, h_ids, (2 * BT + (size_t)B + 2 * Pn) * sizeof(int));
  free(h_ids);
  int *d_tok = m->ids, *d_pos = d_tok + BT, *d_ks = d_pos + BT, *d_zeros = d_ks + B;
  int *d_iota = d_zeros + Pn;

  /* embeddings: word + position (+ token type 0, folded into the positions) */
  const float *wpe = P(m, m->emb + 1);
  int ln = m->emb + 2;
  if (c->type_vocab > 0) {
    o->encoder_fwd(m->pt, d_zeros, d_iota, P(m, m->emb + 2), wpe, (int)Pn, C);
    wpe = m->pt;
    ln = m->emb + 3;
  }
  o->encoder_fwd(m->a, d_tok, d_pos, P(m, m->emb), wpe, (int)BT, C);
  o->layernorm_fwd(m->h, NULL, NULL, m->a, P(m, ln), P(m, ln + 1), (int)BT, C, c->ln_eps);
  for (int l = 0; l < c->n_layer; l++) {
    o->matmul_fwd(m->qkv, m->h, LP(m, l, BL_QW), LP(m, l, BL_QB), (int)BT, C, 3 * C);
    o->attention_bidir_fwd(m->ctx, m->att, m->qkv, d_ks, B, T, C, NH);
    o->matmul_fwd(m->a, m->ctx, LP(m, l, BL_OW), LP(m, l, BL_OB), (int)BT, C, C);
    o->add(m->a, m->a, m->h, BT * C);
    o->layernorm_fwd(m->h1, NULL, NULL, m->a, LP(m, l, BL_LN1W), LP(m, l, BL_LN1B), (int)BT, C,
                     c->ln_eps);
    o->matmul_fwd(m->f, m->h1, LP(m, l, BL_F1W), LP(m, l, BL_F1B), (int)BT, C, F);
    if (c->act < 0)
      o->gelu_fwd(m->f, m->f, BT * F);
    else
      o->act_fwd(m->f, m->f, BT * F, c->act);
    o->matmul_fwd(m->a, m->f, LP(m, l, BL_F2W), LP(m, l, BL_F2B), (int)BT, F, C);
    o->add(m->a, m->a, m->h1, BT * C);
    o->layernorm_fwd(m->h, NULL, NULL, m->a, LP(m, l, BL_LN2W), LP(m, l, BL_LN2B), (int)BT, C,
                     c->ln_eps);
  }
  m->fB = B, m->fT = T;
  return DFPO_OK;
}

static int bert_class_forward(bert_model *m, const int *at, float *logits, dfpo_err *err) {
  if (!m->fB)
    return dfpo_err_set(err, DFPO_EUSAGE, "bert: class_forward before a forward pass");
  const ops_backend *o = m->base.ops;
  int B = m->fB, T = m->fT, C = m->cfg.hidden, K = m->cfg.n_labels;
  for (int b = 0; b < B; b++) {
    if (at[b] < 0 || at[b] >= T)
      return dfpo_err_set(err, DFPO_EUSAGE, "bert: class_forward at column %d of %d", at[b], T);
    o->copy(m->cls + (size_t)b * C, m->h + ((size_t)b * T + at[b]) * C, (size_t)C * sizeof(float));
  }
  o->matmul_fwd(m->pool, m->cls, P(m, m->head), P(m, m->head + 1), B, C, C);
  o->act_fwd(m->pool, m->pool, (size_t)B * C,
             m->cfg.family == BERT_DISTILBERT ? OPS_ACT_RELU : OPS_ACT_TANH);
  o->matmul_fwd(m->logits, m->pool, P(m, m->head + 2), P(m, m->head + 3), B, C, K);
  o->download(logits, m->logits, (size_t)B * K * sizeof(float));
  return DFPO_OK;
}

/* ------------------------------------------------------------ table */

static int usage(dfpo_err *err, const char *what) {
  return dfpo_err_set(err, DFPO_EUSAGE, "%s: an encoder classifier (bert) is inference only: no %s",
                      "bert", what);
}

static void vt_free(model_t *m) {
  bert_destroy(bert_of(m));
}
/* Hugging Face's initialisation: normal(0, 0.02) matrices and embeddings,
 * zero biases, LayerNorm weight 1 and bias 0. */
static void vt_init_random(model_t *mm, uint64_t seed) {
  bert_model *m = bert_of(mm);
  dfpo_rng r;
  dfpo_rng_init(&r, seed, DFPO_STREAM_INIT);
  float *h = malloc(m->nparams * sizeof(float));
  if (!h)
    return;
  uint64_t drawn = 0; /* normals drawn so far */
  for (int k = 0; k < m->ntensors; k++) {
    const bert_tensor *t = &m->tensors[k];
    size_t n = (size_t)t->rows * t->cols;
    int lnw = strstr(t->name, "LayerNorm.weight") || strstr(t->name, "layer_norm.weight");
    if (!t->vec) {
      model_fill_normal(h + t->off, n, &r, drawn, 0.02, 0);
      drawn += n;
    } else {
      for (size_t i = 0; i < n; i++)
        h[t->off + i] = lnw ? 1.0f : 0.0f;
    }
  }
  m->base.ops->upload(m->params, h, m->nparams * sizeof(float));
  free(h);
}
static size_t vt_arena_bytes(const model_t *mm) {
  const bert_model *m = bert_of_const(mm);
  return (m->nparams + m->act_floats) * sizeof(float) + m->ids_cap * sizeof(int);
}
static int vt_new_like(model_t **out, const model_t *src, int head, int n_classes, dfpo_err *err) {
  (void)src, (void)head, (void)n_classes;
  *out = NULL;
  return usage(err, "new_like (value models are for policies)");
}
static int same_shape(const bert_model *a, const bert_model *b) {
  return a->nparams == b->nparams && a->ntensors == b->ntensors && a->cfg.family == b->cfg.family &&
         a->cfg.n_labels == b->cfg.n_labels;
}
static int vt_copy_params(model_t *dst, const model_t *src, dfpo_err *err) {
  bert_model *d = bert_of(dst);
  const bert_model *s = bert_of_const(src);
  if (!same_shape(d, s))
    return dfpo_err_set(err, DFPO_EUSAGE, "bert: copy_params between different configs");
  return model_copy_floats(dst, d->params, src, s->params, d->nparams, err);
}
static int vt_copy_shared_params(model_t *dst, const model_t *src, int *copied, dfpo_err *err) {
  return model_copy_shared_by_name(dst, src, copied, err);
}
static int vt_num_tensors(const model_t *m) {
  return bert_of_const(m)->ntensors;
}
static int vt_tensor_at(const model_t *mm, int i, model_tensor *t) {
  const bert_model *m = bert_of_const(mm);
  const bert_tensor *b = &m->tensors[i];
  return model_tensor_fill(t, b->name, b->rows, b->cols, !b->vec, b->off, m->params, NULL, NULL,
                           NULL);
}
static int vt_ensure_train(model_t *m, dfpo_err *err) {
  (void)m;
  return usage(err, "training state");
}
static int vt_reserve(model_t *m, int B, int T, dfpo_err *err) {
  bert_of(m)->fB = 0;
  return B > 0 && T > 0 ? reserve(bert_of(m), B, T, err) : DFPO_OK;
}
static int vt_forward(model_t *m, const model_batch *b, dfpo_err *err) {
  return bert_forward(bert_of(m), b, err);
}
static int vt_lm_logprobs(model_t *m, const int *targets, float *logp, float *ent, dfpo_err *err) {
  (void)m, (void)targets, (void)logp, (void)ent;
  return usage(err, "LM head");
}
static int vt_lm_backward(model_t *m, const float *dlogp, const float *dent, dfpo_err *err) {
  (void)m, (void)dlogp, (void)dent;
  return usage(err, "backward pass");
}
static int vt_lm_backward_logits(model_t *m, const float *dlogits, dfpo_err *err) {
  (void)m, (void)dlogits;
  return usage(err, "backward pass");
}
static int vt_lm_loss(model_t *m, const model_batch *b, const int *targets, int backward,
                      float *loss, dfpo_err *err) {
  (void)m, (void)b, (void)targets, (void)backward, (void)loss;
  return usage(err, "LM head");
}
static int vt_score_tokens(model_t *m, const int *tokens, size_t n, double *nll_sum, size_t *scored,
                           dfpo_err *err) {
  (void)m, (void)tokens, (void)n, (void)nll_sum, (void)scored;
  return usage(err, "LM head (perplexity)");
}
static int vt_value_forward(model_t *m, float *values, dfpo_err *err) {
  (void)m, (void)values;
  return usage(err, "value head");
}
static int vt_value_backward(model_t *m, const float *dvalues, dfpo_err *err) {
  (void)m, (void)dvalues;
  return usage(err, "value head");
}
static int vt_class_forward(model_t *m, const int *at, float *logits, dfpo_err *err) {
  return bert_class_forward(bert_of(m), at, logits, err);
}
static int vt_class_backward(model_t *m, const float *dlogits, dfpo_err *err) {
  (void)m, (void)dlogits;
  return usage(err, "backward pass");
}
static void vt_zero_grad(model_t *m) {
  (void)m; /* no gradients */
}
static float vt_grad_norm(model_t *m) {
  (void)m;
  return 0.0f;
}
static const float *vt_decode_begin(model_t *m, const int *tokens, const int *kstart, int B, int T,
                                    int max_len, dfpo_err *err) {
  (void)m, (void)tokens, (void)kstart, (void)B, (void)T, (void)max_len;
  usage(err, "decoding");
  return NULL;
}
static const float *vt_decode_step(model_t *m, const int *next, dfpo_err *err) {
  (void)m, (void)next;
  usage(err, "decoding");
  return NULL;
}
static int vt_save(model_t *m, const char *path, int with_optimizer, dfpo_err *err) {
  (void)m, (void)path, (void)with_optimizer;
  return usage(err, "native checkpoint (load its Hugging Face folder instead)");
}
static int vt_export_safetensors(const model_t *m, const char *path, const model_export_opts *o,
                                 dfpo_err *err) {
  (void)m, (void)path, (void)o;
  return usage(err, "safetensors export yet");
}

const model_vtable bert_vtable = {
    .arch = "bert",
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
    .save = vt_save,
    .export_safetensors = vt_export_safetensors,
};
