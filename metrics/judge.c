/* Judges: logistic regression over hashed word and character n-grams
 * (docs/judges.md), trained with Adagrad, naive-Bayes scaled, Platt
 * calibrated; evaluation (accuracy, ECE, correlations); data loaders. */
#include "metrics/met_internal.h"

#include <errno.h>
#include <gsl/gsl_statistics_double.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct met_judge {
  char name[64];
  met_feat_opts feat;
  int nb;
  double bias, platt_a, platt_b;
  float *w; /* [1 << hash_bits], naive-Bayes ratios folded in */
  int version;
  char sha256[65];
  char id[128];
};

/* ------------------------------------------------------------- features */

static uint64_t fnv(uint64_t h, const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

static uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static int is_word_byte(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '\'' ||
         c >= 0x80;
}

typedef struct feat_buf {
  uint32_t *v;
  size_t n, cap;
} feat_buf;

static int fb_push(feat_buf *f, uint32_t x) {
  if (dfpo_grow(&f->v, &f->cap, f->n + 1, sizeof *f->v, 256, DFPO_NOCAP, NULL))
    return -1;
  f->v[f->n++] = x;
  return 0;
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

/* The distinct feature buckets of a text, sorted, into f (reset first).
 * Words: lowercased runs of word bytes; '!' and '?' are one-byte words. */
static int features(const met_feat_opts *o, const char *text, size_t len, feat_buf *f) {
  f->n = 0;
  uint32_t mask = (uint32_t)((1ULL << o->hash_bits) - 1);
  enum { MAXW = 3 };
  uint64_t prev[MAXW] = {0}; /* hashes of the last words, most recent first */
  int have = 0;
  char word[256];
  size_t i = 0;
  while (i < len) {
    unsigned char c = (unsigned char)text[i];
    size_t wl = 0;
    if (is_word_byte(c)) {
      while (i < len && is_word_byte((unsigned char)text[i])) {
        unsigned char b = (unsigned char)text[i++];
        if (wl < sizeof word - 1)
          word[wl++] = (char)(b >= 'A' && b <= 'Z' ? b + 32 : b);
      }
    } else if (c == '!' || c == '?') {
      word[wl++] = (char)c;
      i++;
    } else {
      i++;
      continue;
    }
    uint64_t h = fnv(0xcbf29ce484222325ULL, (const unsigned char *)word, wl);
    /* n-grams ending at this word */
    uint64_t g = h;
    if (fb_push(f, (uint32_t)(mix(g ^ 0x1111) & mask)))
      return -1;
    for (int k = 1; k < o->word_n && k <= have; k++) {
      g = mix(g * 31 + prev[k - 1] + (uint64_t)k);
      if (fb_push(f, (uint32_t)(mix(g ^ 0x2222) & mask)))
        return -1;
    }
    for (int k = MAXW - 1; k > 0; k--)
      prev[k] = prev[k - 1];
    prev[0] = h;
    if (have < MAXW)
      have++;
    if (o->char_max > 0) {
      char pad[260];
      size_t pl = 0;
      pad[pl++] = ' ';
      memcpy(pad + pl, word, wl);
      pl += wl;
      pad[pl++] = ' ';
      for (int n = o->char_min; n <= o->char_max; n++)
        for (size_t s = 0; s + (size_t)n <= pl; s++) {
          uint64_t ch =
              fnv(0x84222325cbf29ce4ULL + (uint64_t)n, (const unsigned char *)pad + s, (size_t)n);
          if (fb_push(f, (uint32_t)(mix(ch ^ 0x3333) & mask)))
            return -1;
        }
    }
  }
  if (f->n > 1) {
    qsort(f->v, f->n, sizeof *f->v, cmp_u32);
    size_t k = 1;
    for (size_t j = 1; j < f->n; j++)
      if (f->v[j] != f->v[k - 1])
        f->v[k++] = f->v[j];
    f->n = k;
  }
  return 0;
}

static double sigmoid(double z) {
  return z >= 0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z));
}

/* Cross-entropy of p against y, clamped away from log(0). */
static double xent(double p, double y) {
  const double e = 1e-12;
  if (p < e)
    p = e;
  if (p > 1 - e)
    p = 1 - e;
  return -(y * log(p) + (1 - y) * log(1 - p));
}

double met_judge_score(const met_judge *j, const char *text, size_t len) {
  feat_buf f = {0};
  if (features(&j->feat, text, len, &f)) {
    free(f.v);
    return NAN;
  }
  double z = 0;
  for (size_t k = 0; k < f.n; k++)
    z += j->w[f.v[k]];
  if (f.n)
    z /= sqrt((double)f.n);
  z += j->bias;
  free(f.v);
  return sigmoid(j->platt_a * z + j->platt_b);
}

int met_judge_score_many(const met_judge *j, const char *const *texts, size_t n, double *out,
                         dfpo_err *err) {
  for (size_t i = 0; i < n; i++) {
    out[i] = met_judge_score(j, texts[i], strlen(texts[i]));
    if (isnan(out[i]))
      return dfpo_err_set(err, DFPO_ERUNTIME, "judge %s: out of memory scoring text %zu", j->name,
                          i);
  }
  return DFPO_OK;
}

const char *met_judge_name(const met_judge *j) {
  return j->name;
}
const met_feat_opts *met_judge_feat(const met_judge *j) {
  return &j->feat;
}
int met_judge_nb(const met_judge *j) {
  return j->nb;
}

const float *met_judge_params(const met_judge *j, double *bias, double *a, double *c) {
  *bias = j->bias;
  *a = j->platt_a;
  *c = j->platt_b;
  return j->w;
}

int met_judge_make(met_judge **out, const char *name, const met_feat_opts *f, int nb, double bias,
                   double a, double c, const float *w, dfpo_err *err) {
  size_t V = (size_t)1 << f->hash_bits;
  met_judge *j = calloc(1, sizeof *j);
  if (!j || !(j->w = malloc(V * sizeof *j->w))) {
    free(j);
    return dfpo_err_set(err, DFPO_ERUNTIME, "judge %s: out of memory", name);
  }
  snprintf(j->name, sizeof j->name, "%s", name);
  j->feat = *f;
  j->nb = nb;
  j->bias = bias;
  j->platt_a = a;
  j->platt_b = c;
  memcpy(j->w, w, V * sizeof *j->w);
  snprintf(j->id, sizeof j->id, "%s (unsaved)", name);
  *out = j;
  return DFPO_OK;
}

void met_judge_set_identity(met_judge *j, int version, const char *sha256) {
  j->version = version;
  snprintf(j->sha256, sizeof j->sha256, "%s", sha256);
  snprintf(j->id, sizeof j->id, "%s v%d sha256:%.16s", j->name, version, sha256);
}
const char *met_judge_id(const met_judge *j) {
  return j->id;
}

void met_judge_free(met_judge *j) {
  if (!j)
    return;
  free(j->w);
  free(j);
}

met_judge_opts met_judge_opts_default(void) {
  met_judge_opts o;
  memset(&o, 0, sizeof o);
  o.feat.hash_bits = 20;
  o.feat.word_n = 2;
  o.nb = 1;
  o.l2[0] = 1e-6;
  o.l2[1] = 1e-5;
  o.l2[2] = 1e-4;
  o.n_l2 = 3;
  o.epochs = 6;
  o.lr = 0.5;
  o.seed = 42;
  o.calibrate = 1;
  return o;
}

static int check_opts(const met_judge_opts *o, dfpo_err *err) {
  const met_feat_opts *f = &o->feat;
  if (f->hash_bits < 12 || f->hash_bits > 24)
    return dfpo_err_set(err, DFPO_EUSAGE, "judge: hash_bits %d is not in 12..24", f->hash_bits);
  if (f->word_n < 1 || f->word_n > 3)
    return dfpo_err_set(err, DFPO_EUSAGE, "judge: word_n %d is not in 1..3", f->word_n);
  if (f->char_max && (f->char_min < 1 || f->char_max < f->char_min || f->char_max > 8))
    return dfpo_err_set(err, DFPO_EUSAGE, "judge: character n-grams %d..%d are not in 1..8",
                        f->char_min, f->char_max);
  if (o->n_l2 < 1 || o->n_l2 > 8 || o->epochs < 1 || !(o->lr > 0))
    return dfpo_err_set(err, DFPO_EUSAGE, "judge: need 1..8 L2 values, epochs >= 1 and lr > 0");
  for (int i = 0; i < o->n_l2; i++)
    if (!(o->l2[i] >= 0))
      return dfpo_err_set(err, DFPO_EUSAGE, "judge: L2 strength %g is negative", o->l2[i]);
  return DFPO_OK;
}

/* ------------------------------------------------------------- training */

/* Documents as feature lists: doc i owns idx[start[i] .. start[i+1]). */
typedef struct doc_feats {
  uint32_t *idx;
  size_t *start;
  double *scale; /* 1 / sqrt(nnz) */
} doc_feats;

static int extract_all(const met_feat_opts *o, const met_judge_data *d, doc_feats *df,
                       dfpo_err *err) {
  memset(df, 0, sizeof *df);
  feat_buf all = {0}, f = {0};
  df->start = malloc((d->n + 1) * sizeof *df->start);
  df->scale = malloc((d->n ? d->n : 1) * sizeof *df->scale);
  if (!df->start || !df->scale)
    goto oom;
  df->start[0] = 0;
  for (size_t i = 0; i < d->n; i++) {
    if (features(o, d->texts[i], strlen(d->texts[i]), &f))
      goto oom;
    for (size_t k = 0; k < f.n; k++)
      if (fb_push(&all, f.v[k]))
        goto oom;
    df->start[i + 1] = all.n;
    df->scale[i] = f.n ? 1.0 / sqrt((double)f.n) : 0;
  }
  free(f.v);
  df->idx = all.v;
  return DFPO_OK;
oom:
  free(f.v);
  free(all.v);
  free(df->start);
  free(df->scale);
  memset(df, 0, sizeof *df);
  return dfpo_err_set(err, DFPO_ERUNTIME, "judge: out of memory extracting features");
}

static void feats_free(doc_feats *df) {
  free(df->idx);
  free(df->start);
  free(df->scale);
}

/* Logit of doc i under weights w (double) scaled by r (NULL: 1). */
static double logit(const doc_feats *df, size_t i, const double *w, const double *r, double b) {
  double z = 0;
  for (size_t k = df->start[i]; k < df->start[i + 1]; k++) {
    uint32_t j = df->idx[k];
    z += w[j] * (r ? r[j] : 1.0);
  }
  return b + z * df->scale[i];
}

static double mean_loss(const doc_feats *df, const met_judge_data *d, const double *w,
                        const double *r, double b) {
  double s = 0;
  for (size_t i = 0; i < d->n; i++)
    s += xent(sigmoid(logit(df, i, w, r, b)), d->y[i]);
  return d->n ? s / (double)d->n : 0;
}

/* Platt scaling: a, c minimising the cross-entropy of sigmoid(a z + c)
 * against y, by Newton's method with step halving. */
static void platt(const double *z, const double *y, size_t n, double *pa, double *pc) {
  double a = 1, c = 0;
  for (int it = 0; it < 100; it++) {
    double ga = 0, gc = 0, haa = 0, hac = 0, hcc = 0, loss = 0;
    for (size_t i = 0; i < n; i++) {
      double p = sigmoid(a * z[i] + c), g = p - y[i], h = p * (1 - p);
      ga += g * z[i];
      gc += g;
      haa += h * z[i] * z[i];
      hac += h * z[i];
      hcc += h;
      loss += xent(p, y[i]);
    }
    haa += 1e-9;
    hcc += 1e-9;
    double det = haa * hcc - hac * hac;
    if (!(fabs(det) > 0))
      break;
    double da = (hcc * ga - hac * gc) / det, dc = (haa * gc - hac * ga) / det;
    double step = 1;
    for (int h = 0; h < 30; h++) {
      double na = a - step * da, nc = c - step * dc, nl = 0;
      for (size_t i = 0; i < n; i++)
        nl += xent(sigmoid(na * z[i] + nc), y[i]);
      if (nl <= loss) {
        a = na;
        c = nc;
        break;
      }
      step *= 0.5;
    }
    if (fabs(da) + fabs(dc) < 1e-10)
      break;
  }
  *pa = a;
  *pc = c;
}

int met_judge_train(met_judge **out, const char *name, const met_judge_data *train,
                    const met_judge_data *val, const met_judge_opts *o, met_judge_fit *fit,
                    dfpo_err *err) {
  *out = NULL;
  met_judge_opts d = o ? *o : met_judge_opts_default();
  int rc = check_opts(&d, err);
  if (rc)
    return rc;
  if (!train->n || !val->n)
    return dfpo_err_set(err, DFPO_EDATA, "judge %s: empty %s data", name,
                        train->n ? "validation" : "training");
  size_t V = (size_t)1 << d.feat.hash_bits;
  doc_feats tf, vf;
  if ((rc = extract_all(&d.feat, train, &tf, err)))
    return rc;
  if ((rc = extract_all(&d.feat, val, &vf, err))) {
    feats_free(&tf);
    return rc;
  }
  double *r = calloc(V, sizeof *r), *w = calloc(V, sizeof *w), *G = calloc(V, sizeof *G);
  double *best = calloc(V, sizeof *best), *z = malloc(val->n * sizeof *z);
  size_t *order = malloc(train->n * sizeof *order);
  met_judge *j = calloc(1, sizeof *j);
  float *wf = malloc(V * sizeof *wf);
  if (!r || !w || !G || !best || !z || !order || !j || !wf) {
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "judge %s: out of memory", name);
    goto done;
  }
  /* Naive-Bayes log-count ratios with soft counts: p_j = 1 + sum y f_ij,
   * q_j = 1 + sum (1-y) f_ij; r_j = log((p_j/|p|) / (q_j/|q|)). */
  if (d.nb) {
    double *q = G; /* scratch */
    for (size_t k = 0; k < V; k++)
      r[k] = q[k] = 1;
    for (size_t i = 0; i < train->n; i++)
      for (size_t k = tf.start[i]; k < tf.start[i + 1]; k++) {
        r[tf.idx[k]] += train->y[i];
        q[tf.idx[k]] += 1 - train->y[i];
      }
    double sp = 0, sq = 0;
    for (size_t k = 0; k < V; k++) {
      sp += r[k];
      sq += q[k];
    }
    for (size_t k = 0; k < V; k++)
      r[k] = log(r[k] / sp) - log(q[k] / sq);
  } else {
    for (size_t k = 0; k < V; k++)
      r[k] = 1;
  }
  double best_loss = INFINITY, best_b = 0, best_l2 = d.l2[0];
  for (int c = 0; c < d.n_l2; c++) {
    double l2 = d.l2[c], b = 0, Gb = 0;
    memset(w, 0, V * sizeof *w);
    memset(G, 0, V * sizeof *G);
    dfpo_rng rng;
    dfpo_rng_init(&rng, d.seed, DFPO_STREAM_DATA);
    for (size_t i = 0; i < train->n; i++)
      order[i] = i;
    for (int ep = 0; ep < d.epochs; ep++) {
      dfpo_rng_shuffle(&rng, order, train->n, sizeof *order);
      for (size_t s = 0; s < train->n; s++) {
        size_t i = order[s];
        double g = sigmoid(logit(&tf, i, w, r, b)) - train->y[i];
        for (size_t k = tf.start[i]; k < tf.start[i + 1]; k++) {
          uint32_t jj = tf.idx[k];
          double gj = g * r[jj] * tf.scale[i] + l2 * w[jj];
          G[jj] += gj * gj;
          w[jj] -= d.lr * gj / sqrt(G[jj] + 1e-8);
        }
        Gb += g * g;
        b -= d.lr * g / sqrt(Gb + 1e-8);
      }
      if (dfpo_interrupted()) {
        rc = dfpo_err_set(err, DFPO_EINTR, "judge %s: training interrupted", name);
        goto done;
      }
      double vl = mean_loss(&vf, val, w, r, b);
      dfpo_debug("judge %s: l2 %g epoch %d validation log-loss %.5f", name, l2, ep + 1, vl);
      if (vl < best_loss) {
        best_loss = vl;
        best_b = b;
        best_l2 = l2;
        for (size_t k = 0; k < V; k++)
          best[k] = w[k] * r[k];
      }
    }
  }
  /* Calibration on the validation logits of the chosen weights. */
  double pa = 1, pc = 0;
  for (size_t i = 0; i < val->n; i++)
    z[i] = logit(&vf, i, best, NULL, best_b);
  if (d.calibrate)
    platt(z, val->y, val->n, &pa, &pc);
  snprintf(j->name, sizeof j->name, "%s", name);
  j->feat = d.feat;
  j->nb = d.nb;
  j->bias = best_b;
  j->platt_a = pa;
  j->platt_b = pc;
  for (size_t k = 0; k < V; k++)
    wf[k] = (float)best[k];
  j->w = wf;
  wf = NULL;
  snprintf(j->id, sizeof j->id, "%s (unsaved)", name);
  if (fit) {
    fit->l2 = best_l2;
    fit->val_loss = best_loss;
    fit->platt_a = pa;
    fit->platt_b = pc;
    fit->n_train = train->n;
    fit->n_val = val->n;
  }
  *out = j;
  j = NULL;
done:
  feats_free(&tf);
  feats_free(&vf);
  free(r);
  free(w);
  free(G);
  free(best);
  free(z);
  free(order);
  free(wf);
  met_judge_free(j);
  return rc;
}

/* ----------------------------------------------------------- evaluation */

int met_judge_eval_scores(const double *p, const double *y, size_t n, met_judge_eval *ev,
                          dfpo_err *err) {
  memset(ev, 0, sizeof *ev);
  if (n < 2)
    return dfpo_err_set(err, DFPO_EDATA, "judge evaluation needs at least 2 texts, got %zu", n);
  enum { BINS = 10 };
  double bc[BINS] = {0}, ba[BINS] = {0};
  size_t bn[BINS] = {0}, correct = 0;
  for (size_t i = 0; i < n; i++) {
    int pred = p[i] >= 0.5, truth = y[i] >= 0.5;
    correct += pred == truth;
    double conf = pred ? p[i] : 1 - p[i];
    int k = (int)(conf * BINS);
    if (k >= BINS)
      k = BINS - 1;
    bc[k] += conf;
    ba[k] += pred == truth;
    bn[k]++;
    ev->log_loss += xent(p[i], y[i]);
    ev->brier += (p[i] - y[i]) * (p[i] - y[i]);
    ev->mean_score += p[i];
    ev->mean_y += y[i];
  }
  ev->n = n;
  ev->accuracy = (double)correct / (double)n;
  for (int k = 0; k < BINS; k++)
    if (bn[k])
      ev->ece += fabs(ba[k] - bc[k]) / (double)n;
  ev->log_loss /= (double)n;
  ev->brier /= (double)n;
  ev->mean_score /= (double)n;
  ev->mean_y /= (double)n;
  ev->pearson = gsl_stats_correlation(p, 1, y, 1, n);
  double *work = malloc(2 * n * sizeof *work);
  if (!work)
    return dfpo_err_set(err, DFPO_ERUNTIME, "judge evaluation: out of memory");
  ev->spearman = gsl_stats_spearman(p, 1, y, 1, n, work);
  free(work);
  return DFPO_OK;
}

int met_judge_evaluate(const met_judge *j, const met_judge_data *d, met_judge_eval *ev,
                       dfpo_err *err) {
  double *p = malloc((d->n ? d->n : 1) * sizeof *p);
  if (!p)
    return dfpo_err_set(err, DFPO_ERUNTIME, "judge evaluation: out of memory");
  int rc = met_judge_score_many(j, (const char *const *)d->texts, d->n, p, err);
  if (!rc)
    rc = met_judge_eval_scores(p, d->y, d->n, ev, err);
  free(p);
  return rc;
}

cJSON *met_judge_eval_json(const met_judge_eval *ev) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "n", (double)ev->n);
  cJSON_AddNumberToObject(o, "accuracy", ev->accuracy);
  cJSON_AddNumberToObject(o, "ece", ev->ece);
  cJSON_AddNumberToObject(o, "log_loss", ev->log_loss);
  cJSON_AddNumberToObject(o, "brier", ev->brier);
  cJSON_AddNumberToObject(o, "pearson", isnan(ev->pearson) ? 0 : ev->pearson);
  cJSON_AddNumberToObject(o, "spearman", isnan(ev->spearman) ? 0 : ev->spearman);
  cJSON_AddNumberToObject(o, "mean_score", ev->mean_score);
  cJSON_AddNumberToObject(o, "mean_target", ev->mean_y);
  return o;
}

/* ----------------------------------------------------------------- data */

int met_judge_data_add(met_judge_data *d, const char *text, double y, dfpo_err *err) {
  /* two arrays, one capacity: each grows from the same old one */
  size_t ct = d->cap, cy = d->cap;
  int rc;
  if ((rc = dfpo_grow(&d->texts, &ct, d->n + 1, sizeof *d->texts, 1024, DFPO_NOCAP, err)) ||
      (rc = dfpo_grow(&d->y, &cy, d->n + 1, sizeof *d->y, 1024, DFPO_NOCAP, err))) {
    dfpo_err_prefix(err, "judge data");
    return rc;
  }
  d->cap = ct;
  if (!(d->texts[d->n] = strdup(text)))
    return dfpo_err_set(err, DFPO_ERUNTIME, "judge data: out of memory");
  d->y[d->n++] = y;
  return DFPO_OK;
}

void met_judge_data_free(met_judge_data *d) {
  for (size_t i = 0; i < d->n; i++)
    free(d->texts[i]);
  free(d->texts);
  free(d->y);
  memset(d, 0, sizeof *d);
}

int met_judge_data_jsonl(met_judge_data *d, const char *path, const char *text_key,
                         const char *y_key, const char *split, size_t limit, dfpo_err *err) {
  FILE *fp = fopen(path, "rb");
  if (!fp)
    return dfpo_err_errno(err, DFPO_EDATA, errno, "cannot open %s", path);
  char *line = NULL, *joined = NULL;
  size_t cap = 0, lineno = 0, added = 0, jcap = 0;
  ssize_t len;
  int rc = DFPO_OK;
  while (rc == DFPO_OK && (!limit || added < limit) && (len = getline(&line, &cap, fp)) >= 0) {
    lineno++;
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
      line[--len] = '\0';
    if (!len)
      continue;
    cJSON *o = cJSON_ParseWithLength(line, (size_t)len);
    if (!cJSON_IsObject(o)) {
      cJSON_Delete(o);
      rc = dfpo_err_set(err, DFPO_EDATA, "%s:%zu: not a JSON object", path, lineno);
      break;
    }
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(o, "split");
    if (split && (!cJSON_IsString(sp) || strcmp(sp->valuestring, split))) {
      cJSON_Delete(o);
      continue;
    }
    const cJSON *y = cJSON_GetObjectItemCaseSensitive(o, y_key);
    const char *text = NULL;
    if (text_key) {
      const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, text_key);
      text = cJSON_IsString(t) ? t->valuestring : NULL;
    } else {
      const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "prompt");
      const cJSON *r = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "references"), 0);
      if (cJSON_IsString(p) && cJSON_IsString(r)) {
        size_t need = strlen(p->valuestring) + strlen(r->valuestring) + 1;
        if ((rc = dfpo_grow(&joined, &jcap, need, 1, 0, DFPO_NOCAP, err))) {
          cJSON_Delete(o);
          dfpo_err_prefix(err, "%s", path);
          break;
        }
        strcpy(joined, p->valuestring);
        strcat(joined, r->valuestring);
        text = joined;
      }
    }
    if (!text || !cJSON_IsNumber(y)) {
      rc = dfpo_err_set(err, DFPO_EDATA, "%s:%zu: record lacks %s or the number '%s'", path, lineno,
                        text_key ? text_key : "prompt + references[0]", y_key);
    } else if (!(y->valuedouble >= 0 && y->valuedouble <= 1)) {
      rc = dfpo_err_set(err, DFPO_EDATA, "%s:%zu: '%s' is %g, not in [0, 1]", path, lineno, y_key,
                        y->valuedouble);
    } else if (!(rc = met_judge_data_add(d, text, y->valuedouble, err))) {
      added++;
    }
    cJSON_Delete(o);
  }
  free(line);
  free(joined);
  if (!rc && ferror(fp))
    rc = dfpo_err_errno(err, DFPO_ERUNTIME, errno, "reading %s", path);
  fclose(fp);
  return rc;
}

/* One CSV record (RFC 4180) from *p: fields into f (heap strings). Returns
 * the number of fields, 0 at the end, -1 on a quote error or no memory. */
static int csv_record(const char **p, const char *end, char ***f, size_t *cap, size_t *lines) {
  const char *s = *p;
  if (s >= end)
    return 0;
  int nf = 0;
  for (;;) {
    size_t bcap = 64, bl = 0;
    char *b = malloc(bcap);
    if (!b)
      return -1;
    if (s < end && *s == '"') {
      s++;
      for (;;) {
        if (s >= end) {
          free(b);
          return -1;
        }
        if (*s == '"') {
          if (s + 1 < end && s[1] == '"') {
            s += 2;
            b[bl++] = '"';
          } else {
            s++;
            break;
          }
        } else {
          if (*s == '\n')
            (*lines)++;
          b[bl++] = *s++;
        }
        if (dfpo_grow(&b, &bcap, bl + 2, 1, 64, DFPO_NOCAP, NULL)) {
          free(b);
          return -1;
        }
      }
    } else {
      while (s < end && *s != ',' && *s != '\n' && *s != '\r') {
        b[bl++] = *s++;
        if (dfpo_grow(&b, &bcap, bl + 2, 1, 64, DFPO_NOCAP, NULL)) {
          free(b);
          return -1;
        }
      }
    }
    b[bl] = '\0';
    if (dfpo_grow(f, cap, (size_t)nf + 1, sizeof **f, 16, DFPO_NOCAP, NULL)) {
      free(b);
      return -1;
    }
    (*f)[nf++] = b;
    if (s < end && *s == ',') {
      s++;
      continue;
    }
    if (s < end && *s == '\r')
      s++;
    if (s < end && *s == '\n') {
      s++;
      (*lines)++;
    } else if (s < end) {
      /* text after a closing quote */
      for (int k = 0; k < nf; k++)
        free((*f)[k]);
      return -1;
    }
    break;
  }
  *p = s;
  return nf;
}

int met_judge_data_csv(met_judge_data *d, const char *path, const char *text_col, const char *y_col,
                       size_t limit, dfpo_err *err) {
  char *buf;
  size_t len;
  int rc = dfpo_read_file(path, &buf, &len, err);
  if (rc)
    return rc;
  const char *p = buf, *end = buf + len;
  char **f = NULL;
  size_t cap = 0, lines = 0, added = 0;
  int ti = -1, yi = -1;
  int nh = csv_record(&p, end, &f, &cap, &lines);
  if (nh <= 0) {
    rc = dfpo_err_set(err, DFPO_EDATA, "%s:1: no CSV header", path);
  } else {
    for (int k = 0; k < nh; k++) {
      if (!strcmp(f[k], text_col))
        ti = k;
      if (!strcmp(f[k], y_col))
        yi = k;
      free(f[k]);
    }
    if (ti < 0 || yi < 0)
      rc = dfpo_err_set(err, DFPO_EDATA, "%s:1: the header lacks the column '%s'", path,
                        ti < 0 ? text_col : y_col);
  }
  while (!rc && (!limit || added < limit)) {
    size_t at = lines + 1;
    int nf = csv_record(&p, end, &f, &cap, &lines);
    if (nf == 0)
      break;
    if (nf < 0) {
      rc = dfpo_err_set(err, DFPO_EDATA, "%s:%zu: malformed CSV record (quotes)", path, at);
      break;
    }
    if (nf != nh) {
      rc = dfpo_err_set(err, DFPO_EDATA, "%s:%zu: %d fields, the header has %d", path, at, nf, nh);
    } else {
      char *e = NULL;
      double y = strtod(f[yi], &e);
      if (e == f[yi] || *e || !(y >= 0 && y <= 1))
        rc = dfpo_err_set(err, DFPO_EDATA, "%s:%zu: column '%s' is '%s', not a number in [0, 1]",
                          path, at, y_col, f[yi]);
      else if (!(rc = met_judge_data_add(d, f[ti], y, err)))
        added++;
    }
    for (int k = 0; k < nf; k++)
      free(f[k]);
  }
  free(f);
  free(buf);
  return rc;
}
