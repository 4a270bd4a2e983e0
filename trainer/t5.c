/* T5 (trainer/t5.h): Hugging Face's T5ForConditionalGeneration, forward
 * only, through the backend's op table. */
#include "trainer/t5.h"
#include "trainer/model_internal.h"
#include "trainer/st_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The tensors of one layer, in memory order; q, k and v follow each other
 * (the fused [3I, C] product of self-attention; cross-attention's k and v
 * the fused [2I, C] product over the encoder output). */
enum { SA_Q, SA_K, SA_V, SA_O, SA_LN, SA_N }; /* self-attention, encoder and decoder */
enum { CA_Q, CA_K, CA_V, CA_O, CA_LN, CA_N }; /* decoder cross-attention */
enum { FF_WI0, FF_WI1, FF_WO, FF_LN, FF_N };  /* FF_WI1 only when gated */

typedef struct t5_tensor {
  char name[96];
  size_t off;
  int rows, cols; /* vectors: rows 1 */
  int vec;
} t5_tensor;

typedef struct t5_layer {
  int sa, ca, ff; /* index of the first tensor of each part (ca -1 in the encoder) */
} t5_layer;

typedef struct t5_model {
  struct model base;
  t5_config cfg;
  t5_tensor *tensors;
  int ntensors;
  int shared, enc_bias, dec_bias, enc_ln, dec_ln, lm_head; /* lm_head -1 when tied */
  t5_layer *enc, *dec;
  float *params;
  size_t nparams;
  /* activations */
  float *act;
  size_t act_floats;
  float *he, *hd, *n, *qkv, *ctx, *tmp, *f0, *f1, *eo, *ekv, *benc, *bdec, *logits, *lse, *lp, *ent,
      *zero;
  int *ids; /* device: enc tok [B Ts], dec tok [B Ld], zeros [max], kstart [B], tgt [B Ld] */
  size_t ids_cap;
  int fB, fT, fTs, fLd, fnp; /* the last forward pass (fB 0: none) */
} t5_model;

extern const model_vtable t5_vtable;

static t5_model *t5_of(model_t *m) {
  return (t5_model *)m;
}
static const t5_model *t5_of_const(const model_t *m) {
  return (const t5_model *)m;
}

int t5_handles(const char *model_type) {
  return model_type && !strcmp(model_type, "t5");
}

const t5_config *t5_get_config(const model_t *m) {
  return m && m->vt == &t5_vtable ? &t5_of_const(m)->cfg : NULL;
}

int t5_bucket(int rel, int bidirectional, int num_buckets, int max_distance) {
  int bucket = 0, n = num_buckets;
  if (bidirectional) {
    n /= 2;
    if (rel > 0)
      bucket += n;
    rel = rel < 0 ? -rel : rel;
  } else {
    rel = rel < 0 ? -rel : 0;
  }
  int max_exact = n / 2;
  if (rel < max_exact)
    return bucket + rel;
  double r = log((double)rel / max_exact) / log((double)max_distance / max_exact) *
             (double)(n - max_exact);
  /* an integer ratio computed a hair below itself still lands on it */
  long large = max_exact + (long)floor(r + 1e-9);
  if (large > n - 1)
    large = n - 1;
  return bucket + (int)large;
}

/* ------------------------------------------------------------ layout */

static int add_tensor(t5_model *m, int vec, int rows, int cols, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int add_tensor(t5_model *m, int vec, int rows, int cols, const char *fmt, ...) {
  t5_tensor *t = &m->tensors[m->ntensors];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(t->name, sizeof t->name, fmt, ap);
  va_end(ap);
  t->off = m->nparams;
  t->rows = rows;
  t->cols = cols;
  t->vec = vec;
  m->nparams += (size_t)rows * cols;
  return m->ntensors++;
}

static void build_layout(t5_model *m) {
  const t5_config *c = &m->cfg;
  int C = c->d_model, I = c->n_head * c->d_kv, F = c->d_ff;
  static const char *const qkvo[4] = {"q", "k", "v", "o"};
  m->shared = add_tensor(m, 0, c->vocab_size, C, "shared.weight");
  for (int s = 0; s < 2; s++) {
    const char *st = s ? "decoder" : "encoder";
    int L = s ? c->n_dec_layer : c->n_layer;
    t5_layer *ly = s ? m->dec : m->enc;
    for (int l = 0; l < L; l++) {
      int p = 0;
      ly[l].sa = m->ntensors;
      for (int k = 0; k < 4; k++)
        add_tensor(m, 0, k == 3 ? C : I, k == 3 ? I : C,
                   "%s.block.%d.layer.0.SelfAttention.%s.weight", st, l, qkvo[k]);
      add_tensor(m, 1, 1, C, "%s.block.%d.layer.0.layer_norm.weight", st, l);
      if (l == 0) {
        int bi = add_tensor(m, 0, c->num_buckets, c->n_head,
                            "%s.block.0.layer.0.SelfAttention.relative_attention_bias.weight", st);
        if (s)
          m->dec_bias = bi;
        else
          m->enc_bias = bi;
      }
      p = 1;
      ly[l].ca = -1;
      if (s) {
        ly[l].ca = m->ntensors;
        for (int k = 0; k < 4; k++)
          add_tensor(m, 0, k == 3 ? C : I, k == 3 ? I : C,
                     "%s.block.%d.layer.1.EncDecAttention.%s.weight", st, l, qkvo[k]);
        add_tensor(m, 1, 1, C, "%s.block.%d.layer.1.layer_norm.weight", st, l);
        p = 2;
      }
      ly[l].ff = m->ntensors;
      if (c->gated) {
        add_tensor(m, 0, F, C, "%s.block.%d.layer.%d.DenseReluDense.wi_0.weight", st, l, p);
        add_tensor(m, 0, F, C, "%s.block.%d.layer.%d.DenseReluDense.wi_1.weight", st, l, p);
      } else {
        add_tensor(m, 0, F, C, "%s.block.%d.layer.%d.DenseReluDense.wi.weight", st, l, p);
      }
      add_tensor(m, 0, C, F, "%s.block.%d.layer.%d.DenseReluDense.wo.weight", st, l, p);
      add_tensor(m, 1, 1, C, "%s.block.%d.layer.%d.layer_norm.weight", st, l, p);
    }
    if (s)
      m->dec_ln = add_tensor(m, 1, 1, C, "decoder.final_layer_norm.weight");
    else
      m->enc_ln = add_tensor(m, 1, 1, C, "encoder.final_layer_norm.weight");
  }
  m->lm_head = c->tied ? -1 : add_tensor(m, 0, c->vocab_size, C, "lm_head.weight");
}

static float *P(const t5_model *m, int i) {
  return m->params + m->tensors[i].off;
}
/* the feed-forward's tensors by slot (FF_WI1 only when gated) */
static float *FFP(const t5_model *m, const t5_layer *l, int slot) {
  if (!m->cfg.gated && slot > FF_WI0)
    slot--;
  return P(m, l->ff + slot);
}

static void t5_destroy(t5_model *m) {
  if (!m)
    return;
  const ops_backend *o = m->base.ops;
  if (o) {
    o->free(m->params);
    o->free(m->act);
    o->free(m->ids);
  }
  free(m->tensors);
  free(m->enc);
  free(m->dec);
  free(m);
}

static int t5_create(t5_model **out, const t5_config *c, dfpo_err *err) {
  *out = NULL;
  t5_model *m = calloc(1, sizeof *m);
  if (!m)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  m->cfg = *c;
  m->base.vt = &t5_vtable;
  m->base.ops = ops_default_backend();
  m->base.cfg.arch = t5_vtable.arch;
  m->base.cfg.vocab_size = c->vocab_size;
  m->base.cfg.n_ctx = c->n_pos;
  m->base.cfg.head = MODEL_HEAD_NONE;
  size_t nt = (size_t)(c->n_layer + c->n_dec_layer) * 16 + 8;
  m->tensors = calloc(nt, sizeof *m->tensors);
  m->enc = calloc((size_t)c->n_layer, sizeof *m->enc);
  m->dec = calloc((size_t)c->n_dec_layer, sizeof *m->dec);
  if (!m->tensors || !m->enc || !m->dec) {
    t5_destroy(m);
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  }
  build_layout(m);
  m->params = m->base.ops->alloc(m->nparams * sizeof(float));
  if (!m->params) {
    int rc = dfpo_err_set(err, DFPO_ERUNTIME, "cannot allocate %zu parameters on %s", m->nparams,
                          m->base.ops->name);
    t5_destroy(m);
    return rc;
  }
  *out = m;
  return DFPO_OK;
}

/* ------------------------------------------------------------ config */

static int jint(const cJSON *o, const char *key, int dflt) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsNumber(x) ? (int)x->valuedouble : dflt;
}

static int read_config(const char *cpath, t5_config *c, dfpo_err *err) {
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
  c->vocab_size = jint(j, "vocab_size", 32128);
  c->d_model = jint(j, "d_model", 512);
  c->d_kv = jint(j, "d_kv", 64);
  c->d_ff = jint(j, "d_ff", 2048);
  c->n_head = jint(j, "num_heads", 8);
  c->n_layer = jint(j, "num_layers", 6);
  c->n_dec_layer = jint(j, "num_decoder_layers", c->n_layer);
  c->num_buckets = jint(j, "relative_attention_num_buckets", 32);
  c->max_distance = jint(j, "relative_attention_max_distance", 128);
  c->n_pos = jint(j, "n_positions", 512);
  c->start_id = jint(j, "decoder_start_token_id", 0);
  const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "layer_norm_epsilon");
  c->eps = cJSON_IsNumber(e) ? (float)e->valuedouble : 1e-6f;
  const cJSON *tw = cJSON_GetObjectItemCaseSensitive(j, "tie_word_embeddings");
  c->tied = cJSON_IsBool(tw) ? cJSON_IsTrue(tw) : 1;
  const cJSON *ff = cJSON_GetObjectItemCaseSensitive(j, "feed_forward_proj");
  const char *fp = cJSON_IsString(ff) ? ff->valuestring : "relu";
  if (!strcmp(fp, "relu"))
    c->gated = 0;
  else if (!strcmp(fp, "gated-gelu"))
    c->gated = 1;
  else
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: feed_forward_proj '%s' (relu and gated-gelu are read)",
                      cpath, fp);
  if (!rc && (c->vocab_size <= 0 || c->d_model <= 0 || c->d_kv <= 0 || c->d_ff <= 0 ||
              c->n_head <= 0 || c->n_layer <= 0 || c->n_dec_layer <= 0 || c->num_buckets < 2 ||
              c->max_distance < 2 || c->n_pos < 2 || c->d_model > 65536 || c->d_ff > 1 << 20 ||
              c->n_layer > 1000 || c->n_dec_layer > 1000 || c->n_head > 4096 ||
              c->num_buckets > 65536 || c->start_id < 0 || c->start_id >= c->vocab_size))
    rc = dfpo_err_set(
        err, DFPO_EDATA,
        "%s: sizes out of range (d_model %d, d_kv %d, d_ff %d, heads %d, layers %d/%d, "
        "buckets %d, max distance %d, vocabulary %d, decoder start %d)",
        cpath, c->d_model, c->d_kv, c->d_ff, c->n_head, c->n_layer, c->n_dec_layer, c->num_buckets,
        c->max_distance, c->vocab_size, c->start_id);
  cJSON_Delete(j);
  return rc;
}

/* ------------------------------------------------------------ loading */

int t5_import_safetensors(model_t **out, const char *path, dfpo_err *err) {
  *out = NULL;
  char cpath[4096];
  int rc = model_config_beside(path, cpath, sizeof cpath, err);
  t5_config c;
  if (rc || (rc = read_config(cpath, &c, err)))
    return rc;
  st_file f;
  if ((rc = st_open(&f, path, err)))
    return rc;
  t5_model *m = NULL;
  float *buf = NULL;
  if ((rc = t5_create(&m, &c, err)))
    goto done;
  size_t maxn = 0;
  for (int k = 0; k < m->ntensors; k++)
    if ((size_t)m->tensors[k].rows * m->tensors[k].cols > maxn)
      maxn = (size_t)m->tensors[k].rows * m->tensors[k].cols;
  if (!(buf = malloc(maxn * sizeof(float)))) {
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    goto done;
  }
  for (int k = 0; k < m->ntensors; k++) {
    const t5_tensor *t = &m->tensors[k];
    const st_entry *e = st_find(&f, t->name);
    if (!e) {
      rc = dfpo_err_set(err, DFPO_EDATA, "%s: tensor '%s' missing (a T5 of %s)", path, t->name,
                        cpath);
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
    /* the stacks' embed_tokens are shared.weight again; a tied model's
     * saved lm_head.weight is that too */
    if (!known && strcmp(nm, "encoder.embed_tokens.weight") &&
        strcmp(nm, "decoder.embed_tokens.weight") && !(c.tied && !strcmp(nm, "lm_head.weight")))
      dfpo_warn("%s: tensor '%s' is not part of the T5; ignored", path, nm);
  }
  *out = &m->base;
  m = NULL;
done:
  free(buf);
  t5_destroy(m);
  st_close(&f);
  return rc;
}

/* ------------------------------------------------------------ forward */

static int missing_ops(const ops_backend *o, dfpo_err *err) {
  if (o->mul && o->rmsnorm_fwd && o->attention_rel_fwd)
    return DFPO_OK;
  return dfpo_err_set(err, DFPO_EUSAGE,
                      "t5: the %s backend lacks T5's ops (mul, rmsnorm_fwd, attention_rel_fwd); "
                      "run T5 on the CPU (--device cpu)",
                      o->name);
}

/* Lays out the activations for B rows of Ts encoder and Ld decoder tokens. */
static int reserve_act(t5_model *m, int B, int Ts, int Ld, dfpo_err *err) {
  const t5_config *c = &m->cfg;
  const ops_backend *o = m->base.ops;
  size_t C = (size_t)c->d_model, I = (size_t)c->n_head * c->d_kv, F = (size_t)c->d_ff;
  size_t V = (size_t)c->vocab_size, NH = (size_t)c->n_head;
  size_t BS = (size_t)B * Ts, BD = (size_t)B * Ld, BM = BS > BD ? BS : BD;
  size_t n = BS * C + BD * C + BM * C + BM * 3 * I + BM * I + BM * C + 2 * BM * F + BS * C +
             BS * 2 * I + NH * Ts * Ts + NH * Ld * Ld + BD * V + 3 * BD + C;
  if (n > m->act_floats) {
    float *a = o->alloc(n * sizeof(float));
    if (!a)
      return dfpo_err_set(err, DFPO_ERUNTIME, "cannot allocate %zu activation floats on %s", n,
                          o->name);
    o->free(m->act);
    m->act = a;
    m->act_floats = n;
  }
  float *p = m->act;
  m->he = p, p += BS * C;
  m->hd = p, p += BD * C;
  m->n = p, p += BM * C;
  m->qkv = p, p += BM * 3 * I;
  m->ctx = p, p += BM * I;
  m->tmp = p, p += BM * C;
  m->f0 = p, p += BM * F;
  m->f1 = p, p += BM * F;
  m->eo = p, p += BS * C;
  m->ekv = p, p += BS * 2 * I;
  m->benc = p, p += NH * Ts * Ts;
  m->bdec = p, p += NH * Ld * Ld;
  m->logits = p, p += BD * V;
  m->lse = p, p += BD;
  m->lp = p, p += BD;
  m->ent = p, p += BD;
  m->zero = p;
  o->zero(m->zero, C * sizeof(float));
  size_t ni = BS + 2 * BD + BM + (size_t)B;
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

/* The position bias [NH, Tq, Tk] of a stack from its table [buckets, NH]
 * (host work: the table is small), into backend memory dst. */
static int position_bias(t5_model *m, float *dst, int tab, int T, int bidir, dfpo_err *err) {
  const t5_config *c = &m->cfg;
  const ops_backend *o = m->base.ops;
  int NH = c->n_head, NB = c->num_buckets;
  float *w = malloc((size_t)NB * NH * sizeof(float));
  float *b = malloc((size_t)NH * T * T * sizeof(float));
  int *bk = malloc((size_t)(2 * T) * sizeof(int));
  if (!w || !b || !bk) {
    free(w), free(b), free(bk);
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  }
  o->download(w, P(m, tab), (size_t)NB * NH * sizeof(float));
  for (int r = -(T - 1); r <= T - 1; r++) /* bk[r + T - 1]: rel = key - query */
    bk[r + T - 1] = t5_bucket(r, bidir, NB, c->max_distance);
  for (int h = 0; h < NH; h++)
    for (int i = 0; i < T; i++)
      for (int j = 0; j < T; j++)
        b[((size_t)h * T + i) * T + j] = w[(size_t)bk[j - i + T - 1] * NH + h];
  o->upload(dst, b, (size_t)NH * T * T * sizeof(float));
  free(w), free(b), free(bk);
  return DFPO_OK;
}

/* h[N, C] += the feed-forward of rmsnorm(h) */
static void feed_forward(t5_model *m, const t5_layer *l, float *h, int N) {
  const t5_config *c = &m->cfg;
  const ops_backend *o = m->base.ops;
  int C = c->d_model, F = c->d_ff;
  size_t NF = (size_t)N * F;
  o->rmsnorm_fwd(m->n, h, FFP(m, l, FF_LN), N, C, c->eps);
  o->matmul_fwd(m->f0, m->n, FFP(m, l, FF_WI0), NULL, N, C, F);
  if (c->gated) { /* gelu_new(x wi_0) * (x wi_1) */
    o->gelu_fwd(m->f0, m->f0, NF);
    o->matmul_fwd(m->f1, m->n, FFP(m, l, FF_WI1), NULL, N, C, F);
    o->mul(m->f0, m->f0, m->f1, NF);
  } else {
    o->act_fwd(m->f0, m->f0, NF, OPS_ACT_RELU);
  }
  o->matmul_fwd(m->tmp, m->f0, FFP(m, l, FF_WO), NULL, N, F, C);
  o->add(h, h, m->tmp, (size_t)N * C);
}

static int t5_forward(t5_model *m, const model_batch *b, dfpo_err *err) {
  const t5_config *c = &m->cfg;
  const ops_backend *o = m->base.ops;
  int B = b->B, T = b->T, np = b->n_prompt;
  m->fB = 0;
  int rc = missing_ops(o, err);
  if (rc)
    return rc;
  if (B <= 0 || T <= 0)
    return dfpo_err_set(err, DFPO_EUSAGE, "t5: empty batch (%d x %d)", B, T);
  if (np < 1 || np > T)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "t5: an encoder-decoder needs a prompt (n_prompt %d of %d columns): rows "
                        "without a source are not read yet",
                        np, T);
  int Ts = np, Ld = T - np;
  if (Ld < 1)
    Ld = 1; /* the decoder start alone: the first target's distribution */
  if (Ld > c->n_pos)
    return dfpo_err_set(err, DFPO_EUSAGE, "t5: %d decoder positions (%d fit)", Ld, c->n_pos);
  size_t BS = (size_t)B * Ts, BD = (size_t)B * Ld;
  int *h_ids = malloc((BS + BD + (BS > BD ? BS : BD) + (size_t)B) * sizeof(int));
  if (!h_ids)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  size_t BM = BS > BD ? BS : BD;
  int *etok = h_ids, *dtok = etok + BS, *zeros = dtok + BD, *ks = zeros + BM;
  for (int r = 0; r < B && !rc; r++) {
    ks[r] = b->kstart ? b->kstart[r] : 0;
    if (ks[r] < 0 || ks[r] >= Ts) {
      rc = dfpo_err_set(err, DFPO_EUSAGE, "t5: row %d: kstart %d leaves no source token of %d", r,
                        ks[r], Ts);
      break;
    }
    for (int t = 0; t < T && !rc; t++) {
      int id = b->tokens[(size_t)r * T + t];
      if (t < ks[r])
        id = 0; /* padding: masked keys, outputs never read */
      else if (id < 0 || id >= c->vocab_size)
        rc = dfpo_err_set(err, DFPO_EUSAGE, "t5: token id %d at row %d column %d (vocabulary %d)",
                          id, r, t, c->vocab_size);
      if (t < Ts)
        etok[(size_t)r * Ts + t] = id;
    }
    /* decoder: [start, continuation but its last token] */
    for (int j = 0; j < Ld; j++)
      dtok[(size_t)r * Ld + j] = j == 0 ? c->start_id : b->tokens[(size_t)r * T + np + j - 1];
  }
  for (size_t i = 0; i < BM; i++)
    zeros[i] = 0;
  if (!rc)
    rc = reserve_act(m, B, Ts, Ld, err);
  if (!rc)
    rc = position_bias(m, m->benc, m->enc_bias, Ts, 1, err);
  if (!rc)
    rc = position_bias(m, m->bdec, m->dec_bias, Ld, 0, err);
  if (rc) {
    free(h_ids);
    return rc;
  }
  o->upload(m->ids, h_ids, (BS + BD + BM + (size_t)B) * sizeof(int));
  free(h_ids);
  int *d_etok = m->ids, *d_dtok = d_etok + BS, *d_zero = d_dtok + BD, *d_ks = d_zero + BM;
  int C = c->d_model, NH = c->n_head, HS = c->d_kv, I = NH * HS;

  /* encoder */
  o->encoder_fwd(m->he, d_etok, d_zero, P(m, m->shared), m->zero, (int)BS, C);
  for (int l = 0; l < c->n_layer; l++) {
    const t5_layer *L = &m->enc[l];
    o->rmsnorm_fwd(m->n, m->he, P(m, L->sa + SA_LN), (int)BS, C, c->eps);
    o->matmul_fwd(m->qkv, m->n, P(m, L->sa + SA_Q), NULL, (int)BS, C, 3 * I);
    o->attention_rel_fwd(m->ctx, m->qkv, 3 * I, m->qkv + I, m->qkv + 2 * I, 3 * I, m->benc, d_ks, 0,
                         B, Ts, Ts, NH, HS);
    o->matmul_fwd(m->tmp, m->ctx, P(m, L->sa + SA_O), NULL, (int)BS, I, C);
    o->add(m->he, m->he, m->tmp, BS * C);
    feed_forward(m, L, m->he, (int)BS);
  }
  o->rmsnorm_fwd(m->eo, m->he, P(m, m->enc_ln), (int)BS, C, c->eps);

  /* decoder */
  o->encoder_fwd(m->hd, d_dtok, d_zero, P(m, m->shared), m->zero, (int)BD, C);
  for (int l = 0; l < c->n_dec_layer; l++) {
    const t5_layer *L = &m->dec[l];
    o->rmsnorm_fwd(m->n, m->hd, P(m, L->sa + SA_LN), (int)BD, C, c->eps);
    o->matmul_fwd(m->qkv, m->n, P(m, L->sa + SA_Q), NULL, (int)BD, C, 3 * I);
    o->attention_rel_fwd(m->ctx, m->qkv, 3 * I, m->qkv + I, m->qkv + 2 * I, 3 * I, m->bdec, NULL, 1,
                         B, Ld, Ld, NH, HS);
    o->matmul_fwd(m->tmp, m->ctx, P(m, L->sa + SA_O), NULL, (int)BD, I, C);
    o->add(m->hd, m->hd, m->tmp, BD * C);
    /* cross-attention: queries from the decoder, keys and values from the
     * encoder output, its padding masked, no position bias */
    o->rmsnorm_fwd(m->n, m->hd, P(m, L->ca + CA_LN), (int)BD, C, c->eps);
    o->matmul_fwd(m->qkv, m->n, P(m, L->ca + CA_Q), NULL, (int)BD, C, I);
    o->matmul_fwd(m->ekv, m->eo, P(m, L->ca + CA_K), NULL, (int)BS, C, 2 * I);
    o->attention_rel_fwd(m->ctx, m->qkv, I, m->ekv, m->ekv + I, 2 * I, NULL, d_ks, 0, B, Ld, Ts, NH,
                         HS);
    o->matmul_fwd(m->tmp, m->ctx, P(m, L->ca + CA_O), NULL, (int)BD, I, C);
    o->add(m->hd, m->hd, m->tmp, BD * C);
    feed_forward(m, L, m->hd, (int)BD);
  }
  o->rmsnorm_fwd(m->n, m->hd, P(m, m->dec_ln), (int)BD, C, c->eps);
  if (c->tied) /* v1.0: the tied head sees the output scaled by d_model^-0.5 */
    o->scale(m->n, (float)(1.0 / sqrt((double)C)), BD * C);
  o->matmul_fwd(m->logits, m->n, P(m, c->tied ? m->shared : m->lm_head), NULL, (int)BD, C,
                c->vocab_size);
  m->fB = B, m->fT = T, m->fTs = Ts, m->fLd = Ld, m->fnp = np;
  m->base.last_logits = NULL;
  return DFPO_OK;
}

/* The LM log-probabilities on the [B, T] grid: decoder position j at column
 * n_prompt - 1 + j (docs/model-interface.md). */
static int t5_lm_logprobs(t5_model *m, const int *targets, float *logp, float *ent, dfpo_err *err) {
  if (!m->fB)
    return dfpo_err_set(err, DFPO_EUSAGE, "t5: lm_logprobs before a forward pass");
  const ops_backend *o = m->base.ops;
  int B = m->fB, T = m->fT, Ld = m->fLd, np = m->fnp, V = m->cfg.vocab_size;
  size_t BD = (size_t)B * Ld;
  int *tg = malloc(BD * sizeof(int));
  float *hl = malloc(2 * BD * sizeof(float));
  if (!tg || !hl) {
    free(tg), free(hl);
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  }
  for (int b = 0; b < B; b++)
    for (int j = 0; j < Ld; j++) {
      int col = np - 1 + j;
      tg[(size_t)b * Ld + j] = col < T ? targets[(size_t)b * T + col] : -1;
      if (tg[(size_t)b * Ld + j] >= V) {
        free(tg), free(hl);
        return dfpo_err_set(err, DFPO_EUSAGE, "t5: target %d at row %d column %d (vocabulary %d)",
                            targets[(size_t)b * T + col], b, col, V);
      }
    }
  int *d_tg = m->ids + (m->ids_cap - BD);
  o->upload(d_tg, tg, BD * sizeof(int));
  o->logits_stats(m->lse, m->lp, ent ? m->ent : NULL, m->logits, d_tg, (int)BD, V, V);
  o->download(hl, m->lp, BD * sizeof(float));
  if (ent)
    o->download(hl + BD, m->ent, BD * sizeof(float));
  for (size_t i = 0; i < (size_t)B * T; i++) {
    logp[i] = 0.0f;
    if (ent)
      ent[i] = 0.0f;
  }
  for (int b = 0; b < B; b++)
    for (int j = 0; j < Ld; j++) {
      int col = np - 1 + j;
      if (col >= T)
        continue;
      logp[(size_t)b * T + col] = hl[(size_t)b * Ld + j];
      if (ent)
        ent[(size_t)b * T + col] = hl[BD + (size_t)b * Ld + j];
    }
  free(tg), free(hl);
  m->base.last_logits = m->logits;
  return DFPO_OK;
}

/* ------------------------------------------------------------ table */

static int usage(dfpo_err *err, const char *what) {
  return dfpo_err_set(err, DFPO_EUSAGE, "t5: %s is not written yet (T5 runs forward only)", what);
}

static void vt_free(model_t *m) {
  t5_destroy(t5_of(m));
}
/* Hugging Face's T5PreTrainedModel._init_weights with factor 1: shared and
 * lm_head normal(0, 1); q normal(0, (C d_kv)^-0.5); k, v normal(0,
 * C^-0.5); o normal(0, (NH d_kv)^-0.5); the bias tables normal(0,
 * C^-0.5); wi normal(0, C^-0.5); wo normal(0, d_ff^-0.5); LayerNorm 1. */
static void vt_init_random(model_t *mm, uint64_t seed) {
  t5_model *m = t5_of(mm);
  const t5_config *c = &m->cfg;
  dfpo_rng r;
  dfpo_rng_init(&r, seed, DFPO_STREAM_INIT);
  float *h = malloc(m->nparams * sizeof(float));
  if (!h)
    return;
  double C = c->d_model;
  for (int k = 0; k < m->ntensors; k++) {
    const t5_tensor *t = &m->tensors[k];
    size_t n = (size_t)t->rows * t->cols;
    double sd = 1.0;
    const char *nm = t->name;
    size_t L = strlen(nm);
    if (strstr(nm, "relative_attention_bias") || strstr(nm, ".k.weight") ||
        strstr(nm, ".v.weight") || strstr(nm, ".wi"))
      sd = 1.0 / sqrt(C);
    else if (L > 9 && !strcmp(nm + L - 9, ".q.weight"))
      sd = 1.0 / sqrt(C * c->d_kv);
    else if (L > 9 && !strcmp(nm + L - 9, ".o.weight"))
      sd = 1.0 / sqrt((double)c->n_head * c->d_kv);
    else if (strstr(nm, ".wo."))
      sd = 1.0 / sqrt((double)c->d_ff);
    for (size_t i = 0; i < n; i++)
      h[t->off + i] = t->vec ? 1.0f : (float)(sd * dfpo_rng_normal(&r));
  }
  m->base.ops->upload(m->params, h, m->nparams * sizeof(float));
  free(h);
}
static size_t vt_arena_bytes(const model_t *mm) {
  const t5_model *m = t5_of_const(mm);
  return (m->nparams + m->act_floats) * sizeof(float) + m->ids_cap * sizeof(int);
}
static int vt_new_like(model_t **out, const model_t *src, int head, int n_classes, dfpo_err *err) {
  (void)src, (void)head, (void)n_classes;
  *out = NULL;
  return usage(err, "new_like (a value model)");
}
static int same_shape(const t5_model *a, const t5_model *b) {
  return a->nparams == b->nparams && a->ntensors == b->ntensors && a->cfg.gated == b->cfg.gated &&
         a->cfg.tied == b->cfg.tied;
}
static int vt_copy_params(model_t *dst, const model_t *src, dfpo_err *err) {
  t5_model *d = t5_of(dst);
  const t5_model *s = t5_of_const(src);
  if (!same_shape(d, s))
    return dfpo_err_set(err, DFPO_EUSAGE, "t5: copy_params between different configs");
  return model_copy_floats(dst, d->params, src, s->params, d->nparams, err);
}
static int vt_copy_shared_params(model_t *dst, const model_t *src, int *copied, dfpo_err *err) {
  return model_copy_shared_by_name(dst, src, copied, err);
}
static int vt_num_tensors(const model_t *m) {
  return t5_of_const(m)->ntensors;
}
static int vt_tensor_at(const model_t *mm, int i, model_tensor *t) {
  const t5_model *m = t5_of_const(mm);
  const t5_tensor *b = &m->tensors[i];
  memset(t, 0, sizeof *t);
  t->name = b->name;
  t->rows = b->rows;
  t->cols = b->cols;
  t->decay = !b->vec;
  t->param = m->params + b->off;
  return DFPO_OK;
}
static int vt_ensure_train(model_t *m, dfpo_err *err) {
  (void)m;
  return usage(err, "training state");
}
static int vt_reserve(model_t *m, int B, int T, dfpo_err *err) {
  t5_of(m)->fB = 0;
  (void)B, (void)T, (void)err; /* the shapes are laid out by each forward pass */
  return DFPO_OK;
}
static int vt_forward(model_t *m, const model_batch *b, dfpo_err *err) {
  return t5_forward(t5_of(m), b, err);
}
static int vt_lm_logprobs(model_t *m, const int *targets, float *logp, float *ent, dfpo_err *err) {
  return t5_lm_logprobs(t5_of(m), targets, logp, ent, err);
}
static int vt_lm_backward(model_t *m, const float *dlogp, const float *dent, dfpo_err *err) {
  (void)m, (void)dlogp, (void)dent;
  return usage(err, "the backward pass");
}
static int vt_lm_backward_logits(model_t *m, const float *dlogits, dfpo_err *err) {
  (void)m, (void)dlogits;
  return usage(err, "the backward pass");
}
/* The mean next-token cross-entropy, forward only. */
static int vt_lm_loss(model_t *mm, const model_batch *b, const int *targets, int backward,
                      float *loss, dfpo_err *err) {
  if (backward)
    return usage(err, "the backward pass");
  return model_lm_loss_forward(mm, b, targets, loss, err);
}
static int vt_score_tokens(model_t *m, const int *tokens, size_t n, double *nll_sum, size_t *scored,
                           dfpo_err *err) {
  (void)m, (void)tokens, (void)n, (void)nll_sum, (void)scored;
  return dfpo_err_set(err, DFPO_EUSAGE,
                      "t5: plain text has no source for the encoder; score source/target pairs "
                      "(dfpo perplexity --tokens with a tab between source and target)");
}
static int vt_value_forward(model_t *m, float *values, dfpo_err *err) {
  (void)m, (void)values;
  return usage(err, "a value head");
}
static int vt_value_backward(model_t *m, const float *dvalues, dfpo_err *err) {
  (void)m, (void)dvalues;
  return usage(err, "a value head");
}
static int vt_class_forward(model_t *m, const int *at, float *logits, dfpo_err *err) {
  (void)m, (void)at, (void)logits;
  return usage(err, "a classification head");
}
static int vt_class_backward(model_t *m, const float *dlogits, dfpo_err *err) {
  (void)m, (void)dlogits;
  return usage(err, "a classification head");
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
  return usage(err, "a native checkpoint (load its Hugging Face folder instead)");
}
static int vt_export_safetensors(const model_t *m, const char *path, const model_export_opts *o,
                                 dfpo_err *err) {
  (void)m, (void)path, (void)o;
  return usage(err, "safetensors export");
}

const model_vtable t5_vtable = {
    .arch = "t5",
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
