/* The n-gram metrics: BLEU (pycocoevalcap, sacreBLEU), ROUGE (pycocoevalcap,
 * rouge-score), CIDEr-D (pycocoevalcap) and diversity (gem-metrics). Each
 * follows its reference implementation's arithmetic in the same order, so
 * that results agree to rounding; docs/metrics.md writes the formulas out. */
#include "metrics/met_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int oom(dfpo_err *err) {
  return dfpo_err_set(err, DFPO_ERUNTIME, "metrics: out of memory");
}

static int ngram_qcmp(const void *a, const void *b) {
  return met_ngram_cmp(a, b);
}

/* Sorts and reduces equal n-grams to their largest count. */
static size_t sort_max(met_ngram *g, size_t n) {
  if (!n)
    return 0;
  qsort(g, n, sizeof *g, ngram_qcmp);
  size_t w = 0;
  for (size_t i = 1; i < n; i++) {
    if (met_ngram_cmp(&g[w], &g[i]) == 0) {
      if (g[i].c > g[w].c)
        g[w].c = g[i].c;
    } else {
      g[++w] = g[i];
    }
  }
  return w + 1;
}

/* The n-grams (orders 1..4) of several id sequences, each counted within its
 * own sequence, then reduced to the max count per n-gram. */
static int max_ref_counts(met_text *const *seqs, size_t k, met_ngram **out, size_t *nout) {
  size_t total = 0;
  met_ngram **per = calloc(k ? k : 1, sizeof *per);
  size_t *pn = calloc(k ? k : 1, sizeof *pn);
  if (!per || !pn) {
    free(per), free(pn);
    return -1;
  }
  int rc = 0;
  for (size_t r = 0; r < k && !rc; r++) {
    pn[r] = met_ngrams(seqs[r]->ids, seqs[r]->len, 1, MET_MAX_N, &per[r]);
    if (pn[r] == (size_t)-1) {
      pn[r] = 0;
      rc = -1;
    }
    total += pn[r];
  }
  met_ngram *all = rc ? NULL : malloc((total ? total : 1) * sizeof *all);
  if (!all)
    rc = -1;
  size_t m = 0;
  for (size_t r = 0; r < k; r++) {
    if (all)
      memcpy(all + m, per[r], pn[r] * sizeof *all);
    m += pn[r];
    free(per[r]);
  }
  free(per), free(pn);
  if (rc) {
    free(all);
    return -1;
  }
  *nout = sort_max(all, m);
  *out = all;
  return 0;
}

/* ---------------------------------------------------------------- BLEU */

/* Clipped matches per order of a hypothesis against max reference counts. */
static int clipped(const met_text *hyp, const met_ngram *refmax, size_t nref, double correct[4],
                   double totals[4]) {
  met_ngram *h;
  size_t nh = met_ngrams(hyp->ids, hyp->len, 1, MET_MAX_N, &h);
  if (nh == (size_t)-1)
    return -1;
  for (size_t i = 0; i < nh; i++) {
    const met_ngram *r = met_ngrams_find(refmax, nref, &h[i]);
    double rc = r ? r->c : 0;
    correct[h[i].n - 1] += h[i].c < rc ? h[i].c : rc;
    if (totals)
      totals[h[i].n - 1] += h[i].c;
  }
  free(h);
  return 0;
}

/* The reference length closest to hyp_len; ties go to the shorter one
 * (pycocoevalcap: min over (|l - c|, l); sacreBLEU: the same rule). */
static size_t closest_len(const size_t *lens, size_t k, size_t hyp_len) {
  size_t best = 0, best_diff = (size_t)-1;
  for (size_t r = 0; r < k; r++) {
    size_t d = lens[r] > hyp_len ? lens[r] - hyp_len : hyp_len - lens[r];
    if (d < best_diff || (d == best_diff && lens[r] < best)) {
      best_diff = d;
      best = lens[r];
    }
  }
  return best;
}

int met_bleu_coco(const met_corpus *c, double bleu[4], dfpo_err *err) {
  double correct[4] = {0}, guess[4] = {0}, testlen = 0, reflen = 0;
  for (size_t i = 0; i < c->n; i++) {
    size_t r0 = c->ref_start[i], k = c->ref_start[i + 1] - r0;
    met_text **seqs = malloc((k ? k : 1) * sizeof *seqs);
    size_t *lens = malloc((k ? k : 1) * sizeof *lens);
    if (!seqs || !lens) {
      free(seqs), free(lens);
      return oom(err);
    }
    for (size_t r = 0; r < k; r++) {
      seqs[r] = &c->refs[r0 + r];
      lens[r] = c->refs[r0 + r].len;
    }
    met_ngram *refmax = NULL;
    size_t nref = 0;
    int bad = max_ref_counts(seqs, k, &refmax, &nref);
    const met_text *h = &c->pred[i];
    if (!bad)
      bad = clipped(h, refmax, nref, correct, NULL);
    free(refmax);
    free(seqs);
    if (bad) {
      free(lens);
      return oom(err);
    }
    testlen += (double)h->len;
    reflen += k ? (double)closest_len(lens, k, h->len) : 0;
    free(lens);
    for (int n = 1; n <= 4; n++)
      guess[n - 1] += h->len >= (size_t)n ? (double)(h->len - (size_t)n + 1) : 0;
  }
  /* pycocoevalcap BleuScorer.compute_score(option="closest") */
  const double tiny = 1e-15, small = 1e-9;
  double ratio = (testlen + tiny) / (reflen + small);
  for (int nn = 1; nn <= 4; nn++) {
    double b = 1.0;
    for (int k = 0; k < nn; k++)
      b *= (correct[k] + tiny) / (guess[k] + small);
    bleu[nn - 1] = pow(b, 1.0 / nn);
    if (ratio < 1)
      bleu[nn - 1] *= exp(1 - 1 / ratio);
  }
  return DFPO_OK;
}

/* Tokens of a 13a-tokenized string as ids. */
static size_t ids_13a(met_vocab *v, const char *raw, uint32_t **ids) {
  char *t = met_tok13a(raw);
  if (!t)
    return (size_t)-1;
  size_t n = 0, cap = strlen(t) / 2 + 1;
  uint32_t *out = malloc(cap * sizeof *out);
  if (!out) {
    free(t);
    return (size_t)-1;
  }
  for (char *p = t; *p;) {
    char *e = strchr(p, ' ');
    size_t l = e ? (size_t)(e - p) : strlen(p);
    uint32_t id = met_vocab_intern(v, p, l);
    if (id == UINT32_MAX) {
      free(t), free(out);
      return (size_t)-1;
    }
    out[n++] = id;
    p += l;
    if (*p)
      p++;
  }
  free(t);
  *ids = out;
  return n;
}

int met_sacrebleu(const met_corpus *c, double *score, dfpo_err *err) {
  double correct[4] = {0}, total[4] = {0}, sys_len = 0, ref_len = 0;
  for (size_t i = 0; i < c->n; i++) {
    size_t r0 = c->ref_start[i], k = c->ref_start[i + 1] - r0;
    met_text hyp = {0};
    met_text *rt = calloc(k ? k : 1, sizeof *rt);
    met_text **seqs = malloc((k ? k : 1) * sizeof *seqs);
    size_t *lens = malloc((k ? k : 1) * sizeof *lens);
    int bad = !rt || !seqs || !lens;
    if (!bad && (hyp.len = ids_13a(c->vocab, c->pred[i].raw, &hyp.ids)) == (size_t)-1)
      bad = 1, hyp.len = 0;
    for (size_t r = 0; r < k && !bad; r++) {
      if ((rt[r].len = ids_13a(c->vocab, c->refs[r0 + r].raw, &rt[r].ids)) == (size_t)-1) {
        rt[r].len = 0;
        bad = 1;
        break;
      }
      seqs[r] = &rt[r];
      lens[r] = rt[r].len;
    }
    met_ngram *refmax = NULL;
    size_t nref = 0;
    if (!bad)
      bad = max_ref_counts(seqs, k, &refmax, &nref) || clipped(&hyp, refmax, nref, correct, total);
    if (!bad) {
      sys_len += (double)hyp.len;
      ref_len += k ? (double)closest_len(lens, k, hyp.len) : 0;
    }
    free(refmax);
    free(hyp.ids);
    for (size_t r = 0; rt && r < k; r++)
      free(rt[r].ids);
    free(rt), free(seqs), free(lens);
    if (bad)
      return oom(err);
  }
  /* sacreBLEU 2.x BLEU.compute_bleu(smooth_method="exp") */
  if (correct[0] + correct[1] + correct[2] + correct[3] == 0 || sys_len == 0) {
    *score = 0;
    return DFPO_OK;
  }
  double prec[4] = {0, 0, 0, 0}, smooth = 1;
  for (int n = 0; n < 4; n++) {
    if (total[n] == 0)
      break;
    if (correct[n] == 0) {
      smooth *= 2;
      prec[n] = 100.0 / (smooth * total[n]);
    } else {
      prec[n] = 100.0 * correct[n] / total[n];
    }
  }
  double bp = sys_len < ref_len ? exp(1 - ref_len / sys_len) : 1.0, lsum = 0;
  for (int n = 0; n < 4; n++)
    lsum += prec[n] == 0 ? -9999999999.0 : log(prec[n]);
  *score = bp * exp(lsum / 4);
  return DFPO_OK;
}

/* --------------------------------------------------------------- ROUGE */

int met_rouge_l_coco(const met_corpus *c, double *mean, double *per_item, dfpo_err *err) {
  (void)err;
  const double beta = 1.2;
  double sum = 0;
  for (size_t i = 0; i < c->n; i++) {
    const met_text *h = &c->pred[i];
    double pmax = 0, rmax = 0;
    for (size_t r = c->ref_start[i]; r < c->ref_start[i + 1]; r++) {
      const met_text *t = &c->refs[r];
      double lcs = (double)met_lcs(t->ids, t->len, h->ids, h->len);
      /* "".split(" ") is [""]: an empty text counts as one token */
      double p = lcs / (double)(h->len ? h->len : 1), q = lcs / (double)(t->len ? t->len : 1);
      if (p > pmax)
        pmax = p;
      if (q > rmax)
        rmax = q;
    }
    double s = 0;
    if (pmax != 0 && rmax != 0)
      s = ((1 + beta * beta) * pmax * rmax) / (rmax + beta * beta * pmax);
    if (per_item)
      per_item[i] = s;
    sum += s;
  }
  *mean = c->n ? sum / (double)c->n : 0;
  return DFPO_OK;
}

static double fmeasure(double p, double r) {
  return p + r > 0 ? 2 * p * r / (p + r) : 0.0;
}

static double rouge_n_f(const uint32_t *t, size_t nt, const uint32_t *p, size_t np, int n,
                        int *bad) {
  met_ngram *gt, *gp;
  size_t a = met_ngrams(t, nt, n, n, &gt), b = met_ngrams(p, np, n, n, &gp);
  if (a == (size_t)-1 || b == (size_t)-1) {
    if (a != (size_t)-1)
      free(gt);
    if (b != (size_t)-1)
      free(gp);
    *bad = 1;
    return 0;
  }
  double inter = 0, tc = 0, pc = 0;
  for (size_t i = 0; i < a; i++) {
    const met_ngram *x = met_ngrams_find(gp, b, &gt[i]);
    inter += x ? (gt[i].c < x->c ? gt[i].c : x->c) : 0;
    tc += gt[i].c;
  }
  for (size_t i = 0; i < b; i++)
    pc += gp[i].c;
  free(gt), free(gp);
  double prec = inter / (pc > 1 ? pc : 1), rec = inter / (tc > 1 ? tc : 1);
  return fmeasure(prec, rec);
}

int met_rouge_score(const met_corpus *c, int stem, double f[3], double *per_item, dfpo_err *err) {
  double sum[3] = {0, 0, 0};
  for (size_t i = 0; i < c->n; i++) {
    uint32_t *p;
    size_t np = met_rouge_tokens(c->pred[i].raw, stem, c->vocab, &p);
    if (np == (size_t)-1)
      return oom(err);
    double best[3] = {0, 0, 0};
    int bad = 0;
    for (size_t r = c->ref_start[i]; r < c->ref_start[i + 1] && !bad; r++) {
      uint32_t *t;
      size_t nt = met_rouge_tokens(c->refs[r].raw, stem, c->vocab, &t);
      if (nt == (size_t)-1) {
        bad = 1;
        break;
      }
      double s[3];
      s[0] = rouge_n_f(t, nt, p, np, 1, &bad);
      s[1] = rouge_n_f(t, nt, p, np, 2, &bad);
      if (nt == 0 || np == 0) {
        s[2] = 0;
      } else {
        double lcs = (double)met_lcs(t, nt, p, np);
        s[2] = fmeasure(lcs / (double)np, lcs / (double)nt);
      }
      /* score_multi: per type, the reference with the highest F (the first
       * such, as numpy's argmax) */
      for (int k = 0; k < 3; k++)
        if (r == c->ref_start[i] || s[k] > best[k])
          best[k] = s[k];
      free(t);
    }
    free(p);
    if (bad)
      return oom(err);
    for (int k = 0; k < 3; k++) {
      sum[k] += best[k];
      if (per_item)
        per_item[i * 3 + (size_t)k] = best[k];
    }
  }
  for (int k = 0; k < 3; k++)
    f[k] = c->n ? sum[k] / (double)c->n : 0;
  return DFPO_OK;
}

/* -------------------------------------------------------------- CIDEr-D */

typedef struct cvec {
  met_ngram *g; /* sorted n-grams; c holds tf * idf */
  size_t n;
  double norm[4];
  double length; /* pycocoevalcap counts the bigrams here */
} cvec;

static double df_of(const met_ngram *df, size_t ndf, const met_ngram *g) {
  const met_ngram *x = met_ngrams_find(df, ndf, g);
  return x ? x->c : 0;
}

static int make_cvec(const met_text *t, const met_ngram *df, size_t ndf, double ref_len, cvec *v) {
  memset(v, 0, sizeof *v);
  v->n = met_ngrams(t->ids, t->len, 1, MET_MAX_N, &v->g);
  if (v->n == (size_t)-1)
    return -1;
  for (size_t i = 0; i < v->n; i++) {
    double tf = v->g[i].c, d = df_of(df, ndf, &v->g[i]);
    double w = tf * (ref_len - log(d > 1.0 ? d : 1.0));
    v->g[i].c = w;
    v->norm[v->g[i].n - 1] += w * w;
    if (v->g[i].n == 2)
      v->length += tf;
  }
  for (int k = 0; k < 4; k++)
    v->norm[k] = sqrt(v->norm[k]);
  return 0;
}

int met_cider_d(const met_corpus *c, double *mean, double *per_item, dfpo_err *err) {
  const double sigma = 6.0;
  /* document frequency: in how many items' reference sets an n-gram occurs */
  size_t nall = 0, cap = 0;
  met_ngram *all = NULL;
  for (size_t i = 0; i < c->n; i++) {
    size_t start = nall;
    for (size_t r = c->ref_start[i]; r < c->ref_start[i + 1]; r++) {
      met_ngram *g;
      size_t ng = met_ngrams(c->refs[r].ids, c->refs[r].len, 1, MET_MAX_N, &g);
      if (ng == (size_t)-1) {
        free(all);
        return oom(err);
      }
      if (dfpo_grow(&all, &cap, nall + ng, sizeof *all, 0, DFPO_NOCAP, NULL)) {
        free(all), free(g);
        return oom(err);
      }
      if (ng)
        memcpy(all + nall, g, ng * sizeof *g);
      nall += ng;
      free(g);
    }
    /* one per item: sort the item's block and set counts to 1 */
    size_t m = sort_max(all + start, nall - start);
    for (size_t k = start; k < start + m; k++)
      all[k].c = 1;
    nall = start + m;
  }
  size_t ndf = met_ngrams_merge(all, nall);
  double ref_len = log((double)c->n);
  double sum = 0;
  int rc = DFPO_OK;
  for (size_t i = 0; i < c->n && !rc; i++) {
    cvec h;
    if (make_cvec(&c->pred[i], all, ndf, ref_len, &h)) {
      rc = oom(err);
      break;
    }
    double score[4] = {0, 0, 0, 0};
    size_t k = c->ref_start[i + 1] - c->ref_start[i];
    for (size_t r = c->ref_start[i]; r < c->ref_start[i + 1]; r++) {
      cvec t;
      if (make_cvec(&c->refs[r], all, ndf, ref_len, &t)) {
        rc = oom(err);
        break;
      }
      double delta = h.length - t.length;
      for (int n = 0; n < 4; n++) {
        double val = 0;
        for (size_t q = 0; q < h.n; q++) {
          if (h.g[q].n != (uint32_t)n + 1)
            continue;
          const met_ngram *x = met_ngrams_find(t.g, t.n, &h.g[q]);
          double vr = x ? x->c : 0;
          val += (h.g[q].c < vr ? h.g[q].c : vr) * vr;
        }
        if (h.norm[n] != 0 && t.norm[n] != 0)
          val /= h.norm[n] * t.norm[n];
        val *= exp(-(delta * delta) / (2 * sigma * sigma));
        score[n] += val;
      }
      free(t.g);
    }
    free(h.g);
    double s = (score[0] + score[1] + score[2] + score[3]) / 4;
    s /= (double)(k ? k : 1);
    s *= 10.0;
    if (per_item)
      per_item[i] = s;
    sum += s;
  }
  free(all);
  if (rc)
    return rc;
  *mean = c->n ? sum / (double)c->n : 0;
  return DFPO_OK;
}

/* ------------------------------------------------------------ diversity */

int met_diversity_compute(const met_corpus *c, met_diversity *d, dfpo_err *err) {
  memset(d, 0, sizeof *d);
  size_t total = 0;
  for (size_t i = 0; i < c->n; i++)
    total += c->pred[i].len;
  d->total_length = total;
  d->mean_length = c->n ? (double)total / (double)c->n : 0;
  for (int n = 1; n <= 2; n++) {
    met_ngram *all = malloc((total ? total : 1) * sizeof *all);
    if (!all)
      return oom(err);
    size_t m = 0;
    for (size_t i = 0; i < c->n; i++) {
      const met_text *t = &c->pred[i];
      for (size_t k = 0; k + (size_t)n <= t->len; k++) {
        met_ngram *g = &all[m++];
        memset(g->id, 0, sizeof g->id);
        memcpy(g->id, t->ids + k, (size_t)n * sizeof *t->ids);
        g->n = (uint32_t)n;
        g->c = 1;
      }
    }
    size_t count = m, u = met_ngrams_merge(all, m);
    d->vocab_size[n - 1] = u;
    d->distinct[n - 1] = count ? (double)u / (double)count : 0;
    double h = 0;
    for (size_t k = 0; k < u; k++) {
      if (all[k].c == 1)
        d->unique[n - 1]++;
      double p = all[k].c / (double)count;
      h -= p * log2(p);
    }
    d->entropy[n - 1] = h;
    free(all);
  }
  /* MSTTR-100 over the concatenated tokens; a last partial window is
   * dropped. */
  uint32_t *cat = malloc((total ? total : 1) * sizeof *cat);
  if (!cat)
    return oom(err);
  size_t m = 0;
  for (size_t i = 0; i < c->n; i++) {
    memcpy(cat + m, c->pred[i].ids, c->pred[i].len * sizeof *cat);
    m += c->pred[i].len;
  }
  size_t windows = 0;
  double ttr_sum = 0;
  for (size_t s = 0; s + 100 <= m; s += 100) {
    uint32_t w[100];
    memcpy(w, cat + s, sizeof w);
    /* distinct ids in the window: sort then count runs */
    for (int a = 1; a < 100; a++) {
      uint32_t x = w[a];
      int b = a - 1;
      while (b >= 0 && w[b] > x) {
        w[b + 1] = w[b];
        b--;
      }
      w[b + 1] = x;
    }
    int types = 1;
    for (int a = 1; a < 100; a++)
      types += w[a] != w[a - 1];
    ttr_sum += types / 100.0;
    windows++;
  }
  free(cat);
  d->msttr100 = windows ? ttr_sum / (double)windows : NAN;
  return DFPO_OK;
}
