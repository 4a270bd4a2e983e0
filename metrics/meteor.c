/* METEOR as NLTK 3.8's nltk.translate.meteor_score computes it, and concept
 * coverage, both over WordNet. Words are vocabulary ids; per-id facts
 * (lowercase form, Porter stem, synonym set, lemma set) are computed once
 * per call and cached. */
#include "metrics/met_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct idcache {
  met_vocab *v;
  met_wordnet *wn;
  size_t cap;
  uint32_t *lower, *stem; /* UINT32_MAX: not computed yet */
  uint32_t **set;         /* synonym or lemma set, sorted ids */
  size_t *nset;           /* (size_t)-1: not computed yet */
} idcache;

static int oom(dfpo_err *err) {
  return dfpo_err_set(err, DFPO_ERUNTIME, "metrics: out of memory");
}

static int cache_fit(idcache *c, uint32_t id) {
  if (id < c->cap)
    return 0;
  /* four arrays, one capacity: each grows from the same old one */
  size_t nc = c->cap, c1 = c->cap, c2 = c->cap, c3 = c->cap;
  if (dfpo_grow(&c->lower, &nc, (size_t)id + 1, sizeof *c->lower, 1024, DFPO_NOCAP, NULL) ||
      dfpo_grow(&c->stem, &c1, (size_t)id + 1, sizeof *c->stem, 1024, DFPO_NOCAP, NULL) ||
      dfpo_grow(&c->set, &c2, (size_t)id + 1, sizeof *c->set, 1024, DFPO_NOCAP, NULL) ||
      dfpo_grow(&c->nset, &c3, (size_t)id + 1, sizeof *c->nset, 1024, DFPO_NOCAP, NULL))
    return -1;
  for (size_t i = c->cap; i < nc; i++) {
    c->lower[i] = c->stem[i] = UINT32_MAX;
    c->set[i] = NULL;
    c->nset[i] = (size_t)-1;
  }
  c->cap = nc;
  return 0;
}

static void cache_free(idcache *c) {
  for (size_t i = 0; i < c->cap; i++)
    free(c->set[i]);
  free(c->lower), free(c->stem), free(c->set), free(c->nset);
}

static uint32_t get_lower(idcache *c, uint32_t id) {
  if (cache_fit(c, id))
    return UINT32_MAX;
  if (c->lower[id] == UINT32_MAX) {
    size_t len;
    char *low = met_lower_str(c->v->str[id], c->v->len[id], &len);
    if (!low)
      return UINT32_MAX;
    uint32_t l = met_vocab_intern(c->v, low, len);
    free(low);
    if (l == UINT32_MAX || cache_fit(c, l))
      return UINT32_MAX;
    c->lower[id] = l;
  }
  return c->lower[id];
}

static uint32_t get_stem(idcache *c, uint32_t id) {
  if (cache_fit(c, id))
    return UINT32_MAX;
  if (c->stem[id] == UINT32_MAX) {
    char *st = met_porter_stem(c->v->str[id]);
    if (!st)
      return UINT32_MAX;
    uint32_t s = met_vocab_intern(c->v, st, strlen(st));
    free(st);
    if (s == UINT32_MAX || cache_fit(c, s))
      return UINT32_MAX;
    c->stem[id] = s;
  }
  return c->stem[id];
}

static int u32_qcmp(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

/* Stores a string vector as a sorted id set for id. */
static int set_from_strings(idcache *c, uint32_t id, char **v, size_t n) {
  uint32_t *ids = malloc((n ? n : 1) * sizeof *ids);
  if (!ids)
    return -1;
  for (size_t i = 0; i < n; i++) {
    ids[i] = met_vocab_intern(c->v, v[i], strlen(v[i]));
    if (ids[i] == UINT32_MAX) {
      free(ids);
      return -1;
    }
  }
  qsort(ids, n, sizeof *ids, u32_qcmp);
  size_t w = 0;
  for (size_t i = 0; i < n; i++)
    if (!w || ids[w - 1] != ids[i])
      ids[w++] = ids[i];
  if (cache_fit(c, id)) {
    free(ids);
    return -1;
  }
  c->set[id] = ids;
  c->nset[id] = w;
  return 0;
}

static int in_set(const uint32_t *s, size_t n, uint32_t x) {
  return n && bsearch(&x, s, n, sizeof x, u32_qcmp) != NULL;
}

/* ---------------------------------------------------------------- METEOR */

typedef struct enumw {
  uint32_t idx, w;
} enumw;

typedef struct match {
  uint32_t h, r;
} match;

static void remove_at(enumw *a, size_t *n, size_t i) {
  memmove(a + i, a + i + 1, (*n - i - 1) * sizeof *a);
  (*n)--;
}

/* NLTK's _match_enums: from the end of the hypothesis, each word takes the
 * last equal reference word still free. */
static void match_exact(enumw *h, size_t *nh, enumw *r, size_t *nr, match *m, size_t *nm) {
  for (size_t i = *nh; i-- > 0;) {
    for (size_t j = *nr; j-- > 0;) {
      if (h[i].w == r[j].w) {
        m[(*nm)++] = (match){h[i].idx, r[j].idx};
        remove_at(h, nh, i);
        remove_at(r, nr, j);
        break;
      }
    }
  }
}

static int match_cmp(const void *a, const void *b) {
  const match *x = a, *y = b;
  return x->h < y->h ? -1 : x->h > y->h;
}

static int synonyms_of(idcache *c, uint32_t id, dfpo_err *err) {
  if (cache_fit(c, id))
    return oom(err);
  if (c->nset[id] != (size_t)-1)
    return DFPO_OK;
  char **v;
  size_t n;
  int rc = met_wordnet_synonyms(c->wn, c->v->str[id], &v, &n, err);
  if (rc)
    return rc;
  rc = set_from_strings(c, id, v, n) ? oom(err) : DFPO_OK;
  met_strv_free(v, n);
  return rc;
}

/* single_meteor_score of hypothesis h against reference t. */
static int single_meteor(idcache *c, const met_text *hyp, const met_text *ref, double *out,
                         dfpo_err *err) {
  const double alpha = 0.9, beta = 3.0, gamma = 0.5;
  size_t nh = hyp->len, nr = ref->len, nm = 0;
  enumw *h = malloc((nh + 1) * sizeof *h), *r = malloc((nr + 1) * sizeof *r);
  match *m = malloc((nh + 1) * sizeof *m);
  int rc = DFPO_OK;
  if (!h || !r || !m) {
    rc = oom(err);
    goto done;
  }
  for (size_t i = 0; i < nh; i++)
    h[i] = (enumw){(uint32_t)i, get_lower(c, hyp->ids[i])};
  for (size_t j = 0; j < nr; j++)
    r[j] = (enumw){(uint32_t)j, get_lower(c, ref->ids[j])};
  for (size_t i = 0; i < nh; i++)
    if (h[i].w == UINT32_MAX) {
      rc = oom(err);
      goto done;
    }
  for (size_t j = 0; j < nr; j++)
    if (r[j].w == UINT32_MAX) {
      rc = oom(err);
      goto done;
    }
  size_t lh = nh, lr = nr; /* lengths of the remaining lists */
  match_exact(h, &lh, r, &lr, m, &nm);
  /* stems of what is left; the synonym stage then works on the stems too */
  for (size_t i = 0; i < lh; i++)
    if ((h[i].w = get_stem(c, h[i].w)) == UINT32_MAX)
      rc = oom(err);
  for (size_t j = 0; j < lr; j++)
    if ((r[j].w = get_stem(c, r[j].w)) == UINT32_MAX)
      rc = oom(err);
  if (rc)
    goto done;
  match_exact(h, &lh, r, &lr, m, &nm);
  for (size_t i = lh; i-- > 0;) {
    uint32_t w = h[i].w;
    if ((rc = synonyms_of(c, w, err)))
      goto done;
    for (size_t j = lr; j-- > 0;) {
      if (r[j].w == w || in_set(c->set[w], c->nset[w], r[j].w)) {
        m[nm++] = (match){h[i].idx, r[j].idx};
        remove_at(h, &lh, i);
        remove_at(r, &lr, j);
        break;
      }
    }
  }
  *out = 0.0; /* NLTK returns 0 on any ZeroDivisionError */
  if (nm && nh && nr) {
    qsort(m, nm, sizeof *m, match_cmp);
    double chunks = 1;
    for (size_t i = 0; i + 1 < nm; i++)
      if (!(m[i + 1].h == m[i].h + 1 && m[i + 1].r == m[i].r + 1))
        chunks += 1;
    double mc = (double)nm, precision = mc / (double)nh, recall = mc / (double)nr;
    double fmean = (precision * recall) / (alpha * precision + (1 - alpha) * recall);
    double frag = chunks / mc, penalty = gamma * pow(frag, beta);
    *out = (1 - penalty) * fmean;
  }
done:
  free(h), free(r), free(m);
  return rc;
}

int met_meteor(const met_corpus *c, met_wordnet *wn, double *mean, double *per_item,
               dfpo_err *err) {
  idcache cache = {.v = c->vocab, .wn = wn};
  double sum = 0;
  int rc = DFPO_OK;
  for (size_t i = 0; i < c->n && !rc; i++) {
    double best = 0;
    for (size_t r = c->ref_start[i]; r < c->ref_start[i + 1]; r++) {
      double s = 0;
      if ((rc = single_meteor(&cache, &c->pred[i], &c->refs[r], &s, err)))
        break;
      if (r == c->ref_start[i] || s > best)
        best = s;
    }
    if (per_item)
      per_item[i] = best;
    sum += best;
  }
  cache_free(&cache);
  if (!rc)
    *mean = c->n ? sum / (double)c->n : 0;
  return rc;
}

/* -------------------------------------------------------------- coverage */

/* The word and its WordNet base forms for every part of speech. */
static int lemmas_of(idcache *c, uint32_t id, dfpo_err *err) {
  if (cache_fit(c, id))
    return oom(err);
  if (c->nset[id] != (size_t)-1)
    return DFPO_OK;
  static const char pos[4] = {'n', 'v', 'a', 'r'};
  char **all = malloc(sizeof *all);
  size_t n = 0, all_cap = 1;
  if (!all || !(all[0] = strdup(c->v->str[id]))) {
    free(all);
    return oom(err);
  }
  n = 1;
  int rc = DFPO_OK;
  for (int p = 0; p < 4 && !rc; p++) {
    char **f;
    size_t nf;
    if ((rc = met_wordnet_morphy(c->wn, c->v->str[id], pos[p], &f, &nf, err)))
      break;
    if (dfpo_grow(&all, &all_cap, n + nf, sizeof *all, 1, DFPO_NOCAP, NULL)) {
      met_strv_free(f, nf);
      rc = oom(err);
      break;
    }
    if (nf)
      memcpy(all + n, f, nf * sizeof *f);
    n += nf;
    free(f);
  }
  if (!rc && set_from_strings(c, id, all, n))
    rc = oom(err);
  met_strv_free(all, n);
  return rc;
}

int met_coverage(const met_corpus *c, met_wordnet *wn, double *mean, double *per_item,
                 dfpo_err *err) {
  idcache cache = {.v = c->vocab, .wn = wn};
  double sum = 0;
  size_t counted = 0;
  int rc = DFPO_OK;
  uint32_t *out = NULL;
  size_t out_cap = 0;
  for (size_t i = 0; i < c->n && !rc; i++) {
    /* the union of the prediction's lemma sets */
    const met_text *t = &c->pred[i];
    size_t no = 0;
    for (size_t k = 0; k < t->len && !rc; k++) {
      uint32_t w = get_lower(&cache, t->ids[k]);
      if (w == UINT32_MAX) {
        rc = oom(err);
        break;
      }
      if ((rc = lemmas_of(&cache, w, err)))
        break;
      if (dfpo_grow(&out, &out_cap, no + cache.nset[w], sizeof *out, 0, DFPO_NOCAP, NULL)) {
        rc = oom(err);
        break;
      }
      memcpy(out + no, cache.set[w], cache.nset[w] * sizeof *out);
      no += cache.nset[w];
    }
    if (rc)
      break;
    if (no)
      qsort(out, no, sizeof *out, u32_qcmp);
    size_t k0 = c->concept_start[i], nk = c->concept_start[i + 1] - k0, covered = 0;
    for (size_t k = 0; k < nk && !rc; k++) {
      const char *cs = c->concepts[k0 + k];
      uint32_t w = met_vocab_intern(c->vocab, cs, strlen(cs));
      if (w == UINT32_MAX) {
        rc = oom(err);
        break;
      }
      if ((rc = lemmas_of(&cache, w, err)))
        break;
      int hit = 0;
      for (size_t q = 0; q < cache.nset[w] && !hit; q++)
        hit = in_set(out, no, cache.set[w][q]);
      covered += (size_t)hit;
    }
    double s = nk ? (double)covered / (double)nk : NAN;
    if (per_item)
      per_item[i] = s;
    if (nk) {
      sum += s;
      counted++;
    }
  }
  free(out);
  cache_free(&cache);
  if (!rc)
    *mean = counted ? sum / (double)counted : NAN;
  return rc;
}

/* ------------------------------------------------------------- CommonGen */

int met_commongen_score(const met_corpus *c, met_wordnet *wn, met_commongen_scores *s,
                        dfpo_err *err) {
  memset(s, 0, sizeof *s);
  s->n = c->n;
  size_t n = c->n ? c->n : 1;
  s->meteor_items = malloc(n * sizeof(double));
  s->cider_items = malloc(n * sizeof(double));
  s->rouge_l_coco_items = malloc(n * sizeof(double));
  s->coverage_items = malloc(n * sizeof(double));
  int rc = DFPO_OK;
  if (!s->meteor_items || !s->cider_items || !s->rouge_l_coco_items || !s->coverage_items)
    rc = oom(err);
  if (!rc)
    rc = met_bleu_coco(c, s->bleu, err);
  if (!rc)
    rc = met_sacrebleu(c, &s->sacrebleu, err);
  if (!rc)
    rc = met_cider_d(c, &s->cider, s->cider_items, err);
  if (!rc)
    rc = met_rouge_l_coco(c, &s->rouge_l_coco, s->rouge_l_coco_items, err);
  if (!rc)
    rc = met_rouge_score(c, 0, s->rouge, NULL, err);
  if (!rc)
    rc = met_rouge_score(c, 1, s->rouge_stem, NULL, err);
  if (!rc)
    rc = met_meteor(c, wn, &s->meteor, s->meteor_items, err);
  if (!rc)
    rc = met_coverage(c, wn, &s->coverage, s->coverage_items, err);
  if (!rc)
    rc = met_diversity_compute(c, &s->diversity, err);
  if (rc)
    met_commongen_scores_free(s);
  return rc;
}

void met_commongen_scores_free(met_commongen_scores *s) {
  free(s->meteor_items);
  free(s->cider_items);
  free(s->rouge_l_coco_items);
  free(s->coverage_items);
  s->meteor_items = s->cider_items = s->rouge_l_coco_items = s->coverage_items = NULL;
}
