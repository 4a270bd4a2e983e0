/* T5 (trainer/t5.h): Hugging Face's T5ForConditionalGeneration through the
 * backend's op table: the tensors, loading, the forward pass and the
 * model_t table; backward passes and the value head are in t5_train.c,
 * decoding in t5_decode.c. */
#include "trainer/st_internal.h"
#include "trainer/t5_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
  m->v_head = -1;
  if (m->base.cfg.head == MODEL_HEAD_VALUE) { /* trl's names, as GPT-2's value head */
    m->v_head = add_tensor(m, 0, 1, C, "v_head.summary.weight");
    add_tensor(m, 1, 1, 1, "v_head.summary.bias");
  }
}

void t5_destroy(t5_model *m) {
  if (!m)
    return;
  const ops_backend *o = m->base.ops;
  if (o) {
    o->free(m->params);
    o->free(m->train_block);
    o->free(m->act_block);
  }
  t5_decode_free(m);
  free(m->tensors);
  free(m->ea);
  free(m->da);
  free(m->kc);
  free(m->vc);
  free(m->ckv);
  free(m->enc);
  free(m->dec);
  free(m);
}

int t5_create(t5_model **out, const t5_config *c, int head, dfpo_err *err) {
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
  m->base.cfg.head = head;
  m->base.cfg.encoder_decoder = 1; /* beam search counts lengths from the decoder start */
  size_t nt = (size_t)(c->n_layer + c->n_dec_layer) * 16 + 8;
  m->tensors = calloc(nt, sizeof *m->tensors);
  m->enc = calloc((size_t)c->n_layer, sizeof *m->enc);
  m->dec = calloc((size_t)c->n_dec_layer, sizeof *m->dec);
  m->ea = calloc((size_t)c->n_layer, sizeof *m->ea);
  m->da = calloc((size_t)c->n_dec_layer, sizeof *m->da);
  m->kc = calloc((size_t)c->n_dec_layer, sizeof *m->kc);
  m->vc = calloc((size_t)c->n_dec_layer, sizeof *m->vc);
  m->ckv = calloc((size_t)c->n_dec_layer, sizeof *m->ckv);
  if (!m->tensors || !m->enc || !m->dec || !m->ea || !m->da || !m->kc || !m->vc || !m->ckv) {
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

int t5_config_check(const t5_config *c, const char *where, dfpo_err *err) {
  if (c->vocab_size <= 0 || c->d_model <= 0 || c->d_kv <= 0 || c->d_ff <= 0 || c->n_head <= 0 ||
      c->n_layer <= 0 || c->n_dec_layer <= 0 || c->num_buckets < 2 || c->max_distance < 2 ||
      c->n_pos < 2 || c->d_model > 65536 || c->d_kv > 65536 || c->d_ff > 1 << 20 ||
      c->n_layer > 1000 || c->n_dec_layer > 1000 || c->n_head > 4096 || c->num_buckets > 65536 ||
      c->vocab_size > 1 << 24 || c->start_id < 0 || c->start_id >= c->vocab_size ||
      c->eos_id < -1 || c->eos_id >= c->vocab_size || !(c->eps > 0.0f) || c->head_scale < 0 ||
      c->head_scale > T5_SCALE_OFF)
    return dfpo_err_set(
        err, DFPO_EDATA,
        "%s: sizes out of range (d_model %d, d_kv %d, d_ff %d, heads %d, layers %d/%d, "
        "buckets %d, max distance %d, vocabulary %d, decoder start %d, eos %d, epsilon %g)",
        where, c->d_model, c->d_kv, c->d_ff, c->n_head, c->n_layer, c->n_dec_layer, c->num_buckets,
        c->max_distance, c->vocab_size, c->start_id, c->eos_id, (double)c->eps);
  return DFPO_OK;
}

int t5_new(model_t **out, const t5_config *c, dfpo_err *err) {
  *out = NULL;
  int rc = t5_config_check(c, "t5_new", err);
  t5_model *m = NULL;
  if (!rc && !(rc = t5_create(&m, c, MODEL_HEAD_NONE, err)))
    *out = &m->base;
  return rc;
}

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
  c->eos_id = jint(j, "eos_token_id", 1);
  if (cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "eos_token_id")))
    c->eos_id = -1; /* none: what an export of a model without one writes */
  const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "layer_norm_epsilon");
  c->eps = cJSON_IsNumber(e) ? (float)e->valuedouble : 1e-6f;
  const cJSON *tw = cJSON_GetObjectItemCaseSensitive(j, "tie_word_embeddings");
  c->tied = cJSON_IsBool(tw) ? cJSON_IsTrue(tw) : 1;
  /* transformers 5.17 saves the scale apart from the tie (a tied head
   * without it, or the reverse); older configs scale exactly when tied */
  const cJSON *sd = cJSON_GetObjectItemCaseSensitive(j, "scale_decoder_outputs");
  if (cJSON_IsBool(sd) && cJSON_IsTrue(sd) != c->tied)
    c->head_scale = cJSON_IsTrue(sd) ? T5_SCALE_ON : T5_SCALE_OFF;
  const cJSON *ff = cJSON_GetObjectItemCaseSensitive(j, "feed_forward_proj");
  const char *fp = cJSON_IsString(ff) ? ff->valuestring : "relu";
  if (!strcmp(fp, "relu"))
    c->gated = 0;
  else if (!strcmp(fp, "gated-gelu"))
    c->gated = 1;
  else
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: feed_forward_proj '%s' (relu and gated-gelu are read)",
                      cpath, fp);
  if (!rc)
    rc = t5_config_check(c, cpath, err);
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
  if ((rc = t5_create(&m, &c, MODEL_HEAD_NONE, err)))
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

int t5_missing_ops(const ops_backend *o, int training, dfpo_err *err) {
  if (o->mul && o->rmsnorm_fwd && o->attention_rel_fwd &&
      (!training || (o->mul_bwd && o->rmsnorm_bwd && o->attention_rel_bwd && o->act_bwd)))
    return DFPO_OK;
  return dfpo_err_set(err, DFPO_EUSAGE,
                      "t5: the %s backend lacks T5's ops (mul, rmsnorm_fwd, attention_rel_fwd%s); "
                      "run T5 on the CPU (--device cpu)",
                      o->name, training ? " and their backward passes" : "");
}

static void lay_stack(t5_model *m, bump *bp, t5_lacts *a, int N, int BS, int dec) {
  const t5_config *c = &m->cfg;
  size_t C = (size_t)c->d_model, I = (size_t)c->n_head * c->d_kv, F = (size_t)c->d_ff;
  size_t n = (size_t)N;
  memset(a, 0, sizeof *a);
  a->x = TAKEF(bp, n * C);
  a->n1 = TAKEF(bp, n * C);
  a->qkv = TAKEF(bp, n * 3 * I);
  a->ctx = TAKEF(bp, n * I);
  a->xm1 = TAKEF(bp, n * C);
  if (dec) {
    a->n2 = TAKEF(bp, n * C);
    a->q2 = TAKEF(bp, n * I);
    a->ctx2 = TAKEF(bp, n * I);
    a->ekv = TAKEF(bp, (size_t)BS * 2 * I);
    a->xm2 = TAKEF(bp, n * C);
  }
  a->nf = TAKEF(bp, n * C);
  a->f0 = TAKEF(bp, n * F);
  if (c->gated) {
    a->g = TAKEF(bp, n * F);
    a->f1 = TAKEF(bp, n * F);
  }
  a->h = TAKEF(bp, n * F);
}

static void lay(t5_model *m, bump *bp, int B, int Ts, int Ld, int T) {
  const t5_config *c = &m->cfg;
  size_t C = (size_t)c->d_model, I = (size_t)c->n_head * c->d_kv, F = (size_t)c->d_ff;
  size_t V = (size_t)c->vocab_size, NH = (size_t)c->n_head;
  size_t BS = (size_t)B * Ts, BD = (size_t)B * Ld, BT = (size_t)B * T, BM = BS > BD ? BS : BD;
  for (int l = 0; l < c->n_layer; l++)
    lay_stack(m, bp, &m->ea[l], (int)BS, (int)BS, 0);
  m->xe = TAKEF(bp, BS * C);
  m->eo = TAKEF(bp, BS * C);
  for (int l = 0; l < c->n_dec_layer; l++)
    lay_stack(m, bp, &m->da[l], (int)BD, (int)BS, 1);
  m->xd = TAKEF(bp, BD * C);
  m->hn = TAKEF(bp, BD * C);
  m->hg = TAKEF(bp, BT * C);
  m->benc = TAKEF(bp, NH * Ts * Ts);
  m->bdec = TAKEF(bp, NH * Ld * Ld);
  m->logits = TAKEF(bp, BT * V);
  m->lse = TAKEF(bp, BT);
  m->lp = TAKEF(bp, BT);
  m->ent = TAKEF(bp, BT);
  m->dlp = TAKEF(bp, BT);
  m->dent = TAKEF(bp, BT);
  m->vals = TAKEF(bp, BD);
  m->dvals = TAKEF(bp, BD);
  m->zero = TAKEF(bp, C);
  m->gx = TAKEF(bp, BM * C);
  m->geo = TAKEF(bp, BS * C);
  m->gn = TAKEF(bp, (BM > BT ? BM : BT) * C); /* also the head's input gradient [B T, C] */
  m->gqkv = TAKEF(bp, BM * 3 * I);
  m->gctx = TAKEF(bp, BM * I);
  m->gekv = TAKEF(bp, BS * 2 * I);
  m->gh = TAKEF(bp, BM * F);
  m->gf1 = TAKEF(bp, BM * F);
  m->gbe = TAKEF(bp, NH * Ts * Ts);
  m->gbd = TAKEF(bp, NH * Ld * Ld);
  m->ghn = TAKEF(bp, BD * C);
  m->gpos = TAKEF(bp, C);
  m->etok = take(bp, BS * sizeof(int));
  m->dtok = take(bp, BD * sizeof(int));
  m->zeros = take(bp, BM * sizeof(int));
  m->ks = take(bp, (size_t)B * sizeof(int));
  m->tgt = take(bp, BT * sizeof(int));
}

int t5_layout(t5_model *m, int B, int Ts, int Ld, int T, dfpo_err *err) {
  const ops_backend *o = m->base.ops;
  m->fB = 0;
  m->have_lm = 0;
  m->base.last_logits = NULL;
  if (m->act_block && m->aB == B && m->aTs == Ts && m->aLd == Ld && m->aT == T)
    return DFPO_OK;
  bump sz = {NULL, 0};
  lay(m, &sz, B, Ts, Ld, T);
  if (!m->act_block || sz.off > m->act_bytes) { /* kept while big enough */
    o->free(m->act_block);
    m->aB = 0;
    m->act_bytes = 0;
    if (!(m->act_block = o->alloc(sz.off)))
      return dfpo_err_set(err, DFPO_ERUNTIME,
                          "t5: cannot allocate %zu MiB of activations on %s (B %d, source %d, "
                          "decoder %d)",
                          sz.off >> 20, o->name, B, Ts, Ld);
    m->act_bytes = sz.off;
  }
  bump real = {m->act_block, 0};
  lay(m, &real, B, Ts, Ld, T);
  o->zero(m->zero, (size_t)m->cfg.d_model * sizeof(float));
  size_t BS = (size_t)B * Ts, BD = (size_t)B * Ld;
  o->zero(m->zeros, (BS > BD ? BS : BD) * sizeof(int));
  m->aB = B, m->aTs = Ts, m->aLd = Ld, m->aT = T;
  return DFPO_OK;
}

/* The position bias [NH, Tq, Tk] of a stack from its table [buckets, NH]
 * (host work: the table is small), into backend memory dst. */
int t5_position_bias(t5_model *m, float *dst, int tab, int T, int bidir, dfpo_err *err) {
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
  o->download(w, t5_P(m, tab), (size_t)NB * NH * sizeof(float));
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

void t5_feed_forward(t5_model *m, const t5_layer *l, const t5_lacts *a, const float *x, float *y,
                     int N) {
  const t5_config *c = &m->cfg;
  const ops_backend *o = m->base.ops;
  int C = c->d_model, F = c->d_ff;
  size_t NF = (size_t)N * F;
  o->rmsnorm_fwd(a->nf, x, t5_P(m, t5_ff(m, l, FF_LN)), N, C, c->eps);
  o->matmul_fwd(a->f0, a->nf, t5_P(m, t5_ff(m, l, FF_WI0)), NULL, N, C, F);
  if (c->gated) { /* gelu_new(x wi_0) * (x wi_1) */
    o->gelu_fwd(a->g, a->f0, NF);
    o->matmul_fwd(a->f1, a->nf, t5_P(m, t5_ff(m, l, FF_WI1)), NULL, N, C, F);
    o->mul(a->h, a->g, a->f1, NF);
  } else {
    o->act_fwd(a->h, a->f0, NF, OPS_ACT_RELU);
  }
  o->matmul_fwd(y, a->h, t5_P(m, t5_ff(m, l, FF_WO)), NULL, N, F, C);
}

void t5_encode(t5_model *m, int B, int Ts) {
  const t5_config *c = &m->cfg;
  const ops_backend *o = m->base.ops;
  int C = c->d_model, NH = c->n_head, HS = c->d_kv, I = NH * HS, BS = B * Ts;
  o->encoder_fwd(m->ea[0].x, m->etok, m->zeros, t5_P(m, m->shared), m->zero, BS, C);
  for (int l = 0; l < c->n_layer; l++) {
    const t5_layer *L = &m->enc[l];
    const t5_lacts *a = &m->ea[l];
    float *out = l + 1 < c->n_layer ? m->ea[l + 1].x : m->xe;
    o->rmsnorm_fwd(a->n1, a->x, t5_P(m, L->sa + SA_LN), BS, C, c->eps);
    o->matmul_fwd(a->qkv, a->n1, t5_P(m, L->sa + SA_Q), NULL, BS, C, 3 * I);
    o->attention_rel_fwd(a->ctx, a->qkv, 3 * I, a->qkv + I, a->qkv + 2 * I, 3 * I, m->benc, m->ks,
                         0, B, Ts, Ts, NH, HS);
    o->matmul_fwd(a->xm1, a->ctx, t5_P(m, L->sa + SA_O), NULL, BS, I, C);
    o->add(a->xm1, a->xm1, a->x, (size_t)BS * C);
    t5_feed_forward(m, L, a, a->xm1, out, BS);
    o->add(out, out, a->xm1, (size_t)BS * C);
  }
  o->rmsnorm_fwd(m->eo, m->xe, t5_P(m, m->enc_ln), BS, C, c->eps);
}

static void decode_train(t5_model *m, int B, int Ts, int Ld) {
  const t5_config *c = &m->cfg;
  const ops_backend *o = m->base.ops;
  int C = c->d_model, NH = c->n_head, HS = c->d_kv, I = NH * HS, BS = B * Ts, BD = B * Ld;
  o->encoder_fwd(m->da[0].x, m->dtok, m->zeros, t5_P(m, m->shared), m->zero, BD, C);
  for (int l = 0; l < c->n_dec_layer; l++) {
    const t5_layer *L = &m->dec[l];
    const t5_lacts *a = &m->da[l];
    float *out = l + 1 < c->n_dec_layer ? m->da[l + 1].x : m->xd;
    o->rmsnorm_fwd(a->n1, a->x, t5_P(m, L->sa + SA_LN), BD, C, c->eps);
    o->matmul_fwd(a->qkv, a->n1, t5_P(m, L->sa + SA_Q), NULL, BD, C, 3 * I);
    o->attention_rel_fwd(a->ctx, a->qkv, 3 * I, a->qkv + I, a->qkv + 2 * I, 3 * I, m->bdec, NULL, 1,
                         B, Ld, Ld, NH, HS);
    o->matmul_fwd(a->xm1, a->ctx, t5_P(m, L->sa + SA_O), NULL, BD, I, C);
    o->add(a->xm1, a->xm1, a->x, (size_t)BD * C);
    /* cross-attention: queries from the decoder, keys and values from the
     * encoder output, its padding masked, no position bias */
    o->rmsnorm_fwd(a->n2, a->xm1, t5_P(m, L->ca + CA_LN), BD, C, c->eps);
    o->matmul_fwd(a->q2, a->n2, t5_P(m, L->ca + CA_Q), NULL, BD, C, I);
    o->matmul_fwd(a->ekv, m->eo, t5_P(m, L->ca + CA_K), NULL, BS, C, 2 * I);
    o->attention_rel_fwd(a->ctx2, a->q2, I, a->ekv, a->ekv + I, 2 * I, NULL, m->ks, 0, B, Ld, Ts,
                         NH, HS);
    o->matmul_fwd(a->xm2, a->ctx2, t5_P(m, L->ca + CA_O), NULL, BD, I, C);
    o->add(a->xm2, a->xm2, a->xm1, (size_t)BD * C);
    t5_feed_forward(m, L, a, a->xm2, out, BD);
    o->add(out, out, a->xm2, (size_t)BD * C);
  }
  o->rmsnorm_fwd(m->hn, m->xd, t5_P(m, m->dec_ln), BD, C, c->eps);
}

static int t5_forward(t5_model *m, const model_batch *b, dfpo_err *err) {
  const t5_config *c = &m->cfg;
  const ops_backend *o = m->base.ops;
  int B = b->B, T = b->T, np = b->n_prompt;
  m->fB = 0;
  int rc = t5_missing_ops(o, 0, err);
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
  int *h_ids = malloc((BS + BD + (size_t)B) * sizeof(int));
  if (!h_ids)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  int *etok = h_ids, *dtok = etok + BS, *ks = dtok + BD;
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
  if (!rc)
    rc = t5_layout(m, B, Ts, Ld, T, err);
  if (!rc)
    rc = t5_position_bias(m, m->benc, m->enc_bias, Ts, 1, err);
  if (!rc)
    rc = t5_position_bias(m, m->bdec, m->dec_bias, Ld, 0, err);
  if (!rc) {
    o->upload(m->etok, etok, BS * sizeof(int));
    o->upload(m->dtok, dtok, BD * sizeof(int));
    o->upload(m->ks, ks, (size_t)B * sizeof(int));
  }
  free(h_ids);
  if (rc)
    return rc;
  t5_encode(m, B, Ts);
  decode_train(m, B, Ts, Ld);
  m->fB = B, m->fT = T, m->fTs = Ts, m->fLd = Ld, m->fnp = np, m->fh = b->head_from;
  return DFPO_OK;
}

/* The column of decoder position j (docs/model-interface.md): n_prompt - 1 + j. */
static int is_output(const t5_model *m, int col) {
  return col >= m->fnp - 1 && col < m->fnp - 1 + m->fLd;
}

/* The decoder's output columns [*c0, *c1) that a narrowed head from column
 * fh covers (empty when *c0 >= *c1). */
void t5_head_columns(const t5_model *m, int *c0, int *c1) {
  *c0 = m->fnp - 1 > m->fh ? m->fnp - 1 : m->fh;
  *c1 = m->fnp - 1 + m->fLd;
}

void t5_head_scale(const t5_model *m, float *x, size_t n) {
  if (t5_scales_head(&m->cfg))
    m->base.ops->scale(x, (float)(1.0 / sqrt((double)m->cfg.d_model)), n);
}

/* The LM log-probabilities on the [B, T] grid: decoder position j at column
 * n_prompt - 1 + j; the logits [B H, V] on the head's grid (H = T - fh,
 * model_batch.head_from; 0 at columns without an output). */
static int t5_lm_logprobs(t5_model *m, const int *targets, float *logp, float *ent, dfpo_err *err) {
  if (!m->fB)
    return dfpo_err_set(err, DFPO_EUSAGE, "t5: lm_logprobs before a forward pass");
  const ops_backend *o = m->base.ops;
  const t5_config *c = &m->cfg;
  int B = m->fB, T = m->fT, Ld = m->fLd, np = m->fnp, h = m->fh, H = T - h;
  int V = c->vocab_size, C = c->d_model;
  size_t BT = (size_t)B * T, BH = (size_t)B * H;
  /* the targets at the output columns (others are not read), then on the
   * head's grid */
  int *out = malloc(BT * sizeof(int)), *tg = malloc(BH * sizeof(int));
  float *hv = malloc(BH * sizeof(float));
  if (!out || !tg || !hv) {
    free(out), free(tg), free(hv);
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  }
  for (size_t i = 0; i < BT; i++)
    out[i] = targets && is_output(m, (int)(i % (size_t)T)) ? targets[i] : -1;
  int rc = model_head_targets(tg, out, B, T, h, V, "t5", err);
  free(out);
  if (rc) {
    free(tg), free(hv);
    return rc;
  }
  o->upload(m->tgt, tg, BH * sizeof(int));
  free(tg);
  /* the head's input on its grid (scaled as t5_head_scale says) */
  int c0, c1;
  t5_head_columns(m, &c0, &c1);
  o->zero(m->hg, BH * C * sizeof(float));
  for (int b = 0; b < B && c0 < c1; b++)
    o->copy(m->hg + ((size_t)b * H + c0 - h) * C, m->hn + ((size_t)b * Ld + c0 - (np - 1)) * C,
            (size_t)(c1 - c0) * C * sizeof(float));
  t5_head_scale(m, m->hg, BH * C);
  o->matmul_fwd(m->logits, m->hg, t5_P(m, t5_head_tensor(m)), NULL, (int)BH, C, V);
  o->logits_stats(m->lse, m->lp, m->ent, m->logits, m->tgt, (int)BH, V, V);
  if (logp)
    model_head_download(o, logp, m->lp, hv, B, T, h);
  if (ent)
    model_head_download(o, ent, m->ent, hv, B, T, h);
  free(hv);
  if (ent)
    for (size_t i = 0; i < (size_t)B * T; i++)
      if (!is_output(m, (int)(i % (size_t)T)))
        ent[i] = 0.0f;
  m->have_lm = 1;
  m->base.last_logits = m->logits;
  return DFPO_OK;
}

/* ------------------------------------------------------------ table */

static void vt_free(model_t *m) {
  t5_destroy(t5_of(m));
}
/* Hugging Face's T5PreTrainedModel._init_weights with factor 1: shared and
 * lm_head normal(0, 1); q normal(0, (C d_kv)^-0.5); k, v normal(0,
 * C^-0.5); o normal(0, (NH d_kv)^-0.5); the bias tables normal(0,
 * C^-0.5); wi normal(0, C^-0.5); wo normal(0, d_ff^-0.5); LayerNorm 1; the
 * value head (not Hugging Face's) normal(0, C^-0.5) and bias 0. */
static void vt_init_random(model_t *mm, uint64_t seed) {
  t5_model *m = t5_of(mm);
  const t5_config *c = &m->cfg;
  dfpo_rng r;
  dfpo_rng_init(&r, seed, DFPO_STREAM_INIT);
  float *h = malloc(m->nparams * sizeof(float));
  if (!h)
    return;
  double C = c->d_model;
  uint64_t drawn = 0; /* normals drawn so far */
  for (int k = 0; k < m->ntensors; k++) {
    const t5_tensor *t = &m->tensors[k];
    size_t n = (size_t)t->rows * t->cols;
    double sd = 1.0;
    const char *nm = t->name;
    size_t L = strlen(nm);
    if (strstr(nm, "relative_attention_bias") || strstr(nm, ".k.weight") ||
        strstr(nm, ".v.weight") || strstr(nm, ".wi") || !strcmp(nm, "v_head.summary.weight"))
      sd = 1.0 / sqrt(C);
    else if (L > 9 && !strcmp(nm + L - 9, ".q.weight"))
      sd = 1.0 / sqrt(C * c->d_kv);
    else if (L > 9 && !strcmp(nm + L - 9, ".o.weight"))
      sd = 1.0 / sqrt((double)c->n_head * c->d_kv);
    else if (strstr(nm, ".wo."))
      sd = 1.0 / sqrt((double)c->d_ff);
    float one = strcmp(nm, "v_head.summary.bias") ? 1.0f : 0.0f;
    if (!t->vec) {
      model_fill_normal(h + t->off, n, &r, drawn, sd, 0);
      drawn += n;
    } else {
      for (size_t i = 0; i < n; i++)
        h[t->off + i] = one;
    }
  }
  m->base.ops->upload(m->params, h, m->nparams * sizeof(float));
  free(h);
}
static size_t vt_arena_bytes(const model_t *mm) {
  const t5_model *m = t5_of_const(mm);
  return m->nparams * sizeof(float) * (m->train_block ? 4 : 1) + m->act_bytes + m->gen_bytes;
}
/* The same T5 with another head (MODEL_HEAD_VALUE: a value model on the
 * decoder's final hidden states), parameters zeroed. */
static int vt_new_like(model_t **out, const model_t *src, int head, int n_classes, dfpo_err *err) {
  (void)n_classes;
  *out = NULL;
  if (head != MODEL_HEAD_NONE && head != MODEL_HEAD_VALUE)
    return dfpo_err_set(err, DFPO_EUSAGE, "t5: a classification head is not written");
  t5_model *m;
  int rc = t5_create(&m, &t5_of_const(src)->cfg, head, err);
  if (!rc)
    *out = &m->base;
  return rc;
}
static int same_shape(const t5_model *a, const t5_model *b) {
  return a->nparams == b->nparams && a->ntensors == b->ntensors && a->cfg.gated == b->cfg.gated &&
         a->cfg.tied == b->cfg.tied && t5_scales_head(&a->cfg) == t5_scales_head(&b->cfg) &&
         a->base.cfg.head == b->base.cfg.head;
}
static int vt_copy_params(model_t *dst, const model_t *src, dfpo_err *err) {
  t5_model *d = t5_of(dst);
  const t5_model *s = t5_of_const(src);
  if (!same_shape(d, s))
    return dfpo_err_set(err, DFPO_EUSAGE, "t5: copy_params between different configs or heads");
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
  return model_tensor_fill(t, b->name, b->rows, b->cols, !b->vec, b->off, m->params, m->grads,
                           m->m1, m->m2);
}
static int vt_ensure_train(model_t *m, dfpo_err *err) {
  return t5_ensure_train(t5_of(m), err);
}
static int vt_reserve(model_t *m, int B, int T, dfpo_err *err) {
  t5_of(m)->fB = 0;
  (void)B, (void)T, (void)err; /* the split of T is the batch's: each pass lays itself out */
  return DFPO_OK;
}
static int vt_forward(model_t *m, const model_batch *b, dfpo_err *err) {
  return t5_forward(t5_of(m), b, err);
}
static int vt_lm_logprobs(model_t *m, const int *targets, float *logp, float *ent, dfpo_err *err) {
  return t5_lm_logprobs(t5_of(m), targets, logp, ent, err);
}
static int vt_lm_backward(model_t *m, const float *dlogp, const float *dent, dfpo_err *err) {
  return t5_lm_backward(t5_of(m), dlogp, dent, err);
}
static int vt_lm_backward_logits(model_t *m, const float *dlogits, dfpo_err *err) {
  return t5_lm_backward_logits(t5_of(m), dlogits, err);
}
/* The mean next-token cross-entropy over the targets >= 0; with backward,
 * its gradient. */
static int vt_lm_loss(model_t *mm, const model_batch *b, const int *targets, int backward,
                      float *loss, dfpo_err *err) {
  t5_model *m = t5_of(mm);
  int rc = t5_forward(m, b, err);
  size_t n = (size_t)b->B * b->T;
  float *lp = rc ? NULL : malloc(n * sizeof(float));
  if (!rc && !lp)
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  if (!rc)
    rc = t5_lm_logprobs(m, targets, lp, NULL, err);
  if (!rc) {
    double s = 0.0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
      if (targets[i] >= 0 && is_output(m, (int)(i % (size_t)b->T)))
        s -= lp[i], k++;
    *loss = k ? (float)(s / (double)k) : 0.0f;
    if (backward && k) {
      for (size_t i = 0; i < n; i++)
        lp[i] = targets[i] >= 0 ? -1.0f / (float)k : 0.0f;
      rc = t5_lm_backward(m, lp, NULL, err);
    }
  }
  free(lp);
  return rc;
}
static int vt_score_tokens(model_t *m, const int *tokens, size_t n, double *nll_sum, size_t *scored,
                           dfpo_err *err) {
  (void)m, (void)tokens, (void)n, (void)nll_sum, (void)scored;
  return dfpo_err_set(err, DFPO_EUSAGE,
                      "t5: plain text has no source for the encoder; score source/target pairs "
                      "(dfpo perplexity --tokens with a tab between source and target)");
}
static int vt_value_forward(model_t *m, float *values, dfpo_err *err) {
  return t5_value_forward(t5_of(m), values, err);
}
static int vt_value_backward(model_t *m, const float *dvalues, dfpo_err *err) {
  return t5_value_backward(t5_of(m), dvalues, err);
}
static int vt_class_forward(model_t *m, const int *at, float *logits, dfpo_err *err) {
  (void)m, (void)at, (void)logits;
  return dfpo_err_set(err, DFPO_EUSAGE, "t5: a classification head is not written");
}
static int vt_class_backward(model_t *m, const float *dlogits, dfpo_err *err) {
  (void)m, (void)dlogits;
  return dfpo_err_set(err, DFPO_EUSAGE, "t5: a classification head is not written");
}
static void vt_zero_grad(model_t *m) {
  t5_zero_grad(t5_of(m));
}
static float vt_grad_norm(model_t *m) {
  return t5_grad_norm(t5_of(m));
}
static const float *vt_decode_begin(model_t *m, const int *tokens, const int *kstart, int B, int T,
                                    int max_len, dfpo_err *err) {
  return t5_decode_begin(t5_of(m), tokens, kstart, B, T, max_len, err);
}
static const float *vt_decode_step(model_t *m, const int *next, dfpo_err *err) {
  return t5_decode_step(t5_of(m), next, err);
}
static int vt_decode_reorder(model_t *m, const int *src_rows, dfpo_err *err) {
  return t5_decode_reorder(t5_of(m), src_rows, err);
}
/* the last forward pass, its logits and a decoding's cache are spent */
static void vt_forget(model_t *m) {
  t5_model *t = t5_of(m);
  t->have_lm = 0;
  t->fB = 0;
  t->gn_pos = 0;
  m->last_logits = NULL;
}
static int vt_save(model_t *m, const char *path, int with_optimizer, dfpo_err *err) {
  return t5_save(t5_of(m), path, with_optimizer, err);
}
static int vt_export_safetensors(const model_t *m, const char *path, const model_export_opts *o,
                                 dfpo_err *err) {
  return t5_export_safetensors(t5_of_const(m), path, o, err);
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
    .decode_reorder = vt_decode_reorder,
    .forget = vt_forget,
    .save = vt_save,
    .export_safetensors = vt_export_safetensors,
};
