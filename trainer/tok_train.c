/* Training a byte-level BPE and writing it in GPT-2's file format.
 *
 * The classic algorithm (Sennrich et al. 2016) over the distinct words of the
 * corpus, made incremental: pair counts are kept up to date, each pair knows
 * the words it occurs in, and a max-heap with lazy deletion finds the next
 * pair. A step rewrites only the words that hold the chosen pair. */
#include "trainer/tok_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct tword {
  int32_t *sym;
  uint32_t n;
  int64_t count;
} tword;

typedef struct tpair {
  int32_t l, r;
  int64_t count, pushed;
  uint32_t *where, nwhere, cwhere;
  uint32_t last_word, stamp;
} tpair;

typedef struct theap_ent {
  int64_t count;
  uint32_t pair;
} theap_ent;

typedef struct trainer {
  /* tokens */
  char **tb;
  uint32_t *tl;
  size_t ntok, ctok;
  tok_strmap tokmap; /* bytes -> id */
  /* words */
  tword *words;
  size_t nwords;
  /* pairs */
  tpair *pairs;
  size_t npairs, cpairs;
  uint64_t *pkey;
  uint32_t *pidx;
  size_t pcap;
  theap_ent *heap;
  size_t nheap, cheap;
  uint32_t *touched;
  size_t ntouched, ctouched;
  /* result */
  int32_t (*merges)[2];
  size_t nmerges, cmerges;
} trainer;

static int oom(dfpo_err *err) {
  return dfpo_err_set(err, DFPO_ERUNTIME, "tokenizer train: out of memory");
}

static int bytes_cmp(const trainer *T, int32_t a, int32_t b) {
  size_t la = T->tl[a], lb = T->tl[b];
  int c = memcmp(T->tb[a], T->tb[b], la < lb ? la : lb);
  return c ? c : (la > lb) - (la < lb);
}

/* Heap order: higher count first, then the bytewise smaller (left, right). */
static int hbefore(const trainer *T, const theap_ent *x, const theap_ent *y) {
  if (x->count != y->count)
    return x->count > y->count;
  const tpair *p = &T->pairs[x->pair], *q = &T->pairs[y->pair];
  int c = bytes_cmp(T, p->l, q->l);
  if (!c)
    c = bytes_cmp(T, p->r, q->r);
  return c < 0;
}

static int heap_push(trainer *T, int64_t count, uint32_t pair) {
  if (dfpo_grow(&T->heap, &T->cheap, T->nheap + 1, sizeof *T->heap, 4096, DFPO_NOCAP, NULL))
    return -1;
  theap_ent e = {count, pair};
  size_t i = T->nheap++;
  while (i) {
    size_t p = (i - 1) / 2;
    if (!hbefore(T, &e, &T->heap[p]))
      break;
    T->heap[i] = T->heap[p];
    i = p;
  }
  T->heap[i] = e;
  return 0;
}

static theap_ent heap_pop(trainer *T) {
  theap_ent top = T->heap[0], e = T->heap[--T->nheap];
  size_t i = 0, n = T->nheap;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n)
      break;
    if (c + 1 < n && hbefore(T, &T->heap[c + 1], &T->heap[c]))
      c++;
    if (!hbefore(T, &T->heap[c], &e))
      break;
    T->heap[i] = T->heap[c];
    i = c;
  }
  if (n)
    T->heap[i] = e;
  return top;
}

static size_t pslot(uint64_t k, size_t cap) {
  return (size_t)((k * 0x9E3779B97F4A7C15ull) >> 29) & (cap - 1);
}

/* The pair record of (l, r), created when absent; UINT32_MAX on failure. */
static uint32_t pair_get(trainer *T, int32_t l, int32_t r) {
  uint64_t k = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
  if ((T->npairs + 1) * 2 > T->pcap) {
    size_t ncap = T->pcap ? T->pcap * 2 : 1 << 16;
    uint64_t *nk = malloc(ncap * sizeof *nk);
    uint32_t *ni = malloc(ncap * sizeof *ni);
    if (!nk || !ni) {
      free(nk);
      free(ni);
      return UINT32_MAX;
    }
    for (size_t i = 0; i < ncap; i++)
      ni[i] = UINT32_MAX;
    for (size_t i = 0; i < T->pcap; i++) {
      if (T->pidx[i] == UINT32_MAX)
        continue;
      size_t j = pslot(T->pkey[i], ncap);
      while (ni[j] != UINT32_MAX)
        j = (j + 1) & (ncap - 1);
      nk[j] = T->pkey[i];
      ni[j] = T->pidx[i];
    }
    free(T->pkey);
    free(T->pidx);
    T->pkey = nk;
    T->pidx = ni;
    T->pcap = ncap;
  }
  size_t j = pslot(k, T->pcap);
  while (T->pidx[j] != UINT32_MAX) {
    if (T->pkey[j] == k)
      return T->pidx[j];
    j = (j + 1) & (T->pcap - 1);
  }
  /* pair indices are uint32_t with UINT32_MAX the failure mark */
  if (dfpo_grow(&T->pairs, &T->cpairs, T->npairs + 1, sizeof *T->pairs, 1 << 15, UINT32_MAX, NULL))
    return UINT32_MAX;
  tpair *p = &T->pairs[T->npairs];
  memset(p, 0, sizeof *p);
  p->l = l;
  p->r = r;
  p->last_word = UINT32_MAX;
  p->stamp = UINT32_MAX;
  T->pkey[j] = k;
  T->pidx[j] = (uint32_t)T->npairs;
  return (uint32_t)T->npairs++;
}

/* Adds delta occurrences of (l, r) found in word w. */
static int pair_add(trainer *T, int32_t l, int32_t r, int64_t delta, uint32_t w, uint32_t stamp) {
  uint32_t pi = pair_get(T, l, r);
  if (pi == UINT32_MAX)
    return -1;
  tpair *p = &T->pairs[pi];
  p->count += delta;
  if (delta > 0 && p->last_word != w) {
    /* the count and capacity are uint32_t: the cap keeps doubling from wrapping */
    size_t cw = p->cwhere;
    if (dfpo_grow(&p->where, &cw, (size_t)p->nwhere + 1, sizeof *p->where, 4, UINT32_MAX, NULL))
      return -1;
    p->cwhere = (uint32_t)cw;
    p->where[p->nwhere++] = w;
    p->last_word = w;
  }
  if (p->stamp != stamp) {
    p->stamp = stamp;
    if (dfpo_grow(&T->touched, &T->ctouched, T->ntouched + 1, sizeof *T->touched, 1024, DFPO_NOCAP,
                  NULL))
      return -1;
    T->touched[T->ntouched++] = pi;
  }
  return 0;
}

static int word_pairs(trainer *T, uint32_t w, int sign, uint32_t stamp) {
  tword *wd = &T->words[w];
  for (uint32_t i = 0; i + 1 < wd->n; i++)
    if (pair_add(T, wd->sym[i], wd->sym[i + 1], sign * wd->count, w, stamp))
      return -1;
  return 0;
}

static int add_token(trainer *T, const char *b, size_t n, int32_t *id) {
  int inserted;
  int64_t *v = tok_strmap_put(&T->tokmap, b, n, (int64_t)T->ntok, &inserted);
  if (!v)
    return -1;
  if (!inserted) {
    *id = (int32_t)*v;
    return 0;
  }
  /* two arrays, one capacity: each grows from the same old one */
  size_t cb = T->ctok, cl = T->ctok;
  if (dfpo_grow(&T->tb, &cb, T->ntok + 1, sizeof *T->tb, 1024, DFPO_NOCAP, NULL) ||
      dfpo_grow(&T->tl, &cl, T->ntok + 1, sizeof *T->tl, 1024, DFPO_NOCAP, NULL))
    return -1;
  T->ctok = cb;
  char *copy = malloc(n ? n : 1);
  if (!copy)
    return -1;
  memcpy(copy, b, n);
  T->tb[T->ntok] = copy;
  T->tl[T->ntok] = (uint32_t)n;
  *id = (int32_t)T->ntok++;
  return 0;
}

typedef struct count_ctx {
  tok_strmap *words;
} count_ctx;

static int count_piece(void *vctx, const char *text, size_t start, size_t end) {
  count_ctx *c = vctx;
  int inserted;
  int64_t *v = tok_strmap_put(c->words, text + start, end - start, 0, &inserted);
  if (!v)
    return DFPO_ERUNTIME;
  (*v)++;
  return 0;
}

static void trainer_free(trainer *T) {
  for (size_t i = 0; i < T->ntok; i++)
    free(T->tb[i]);
  free(T->tb);
  free(T->tl);
  tok_strmap_free(&T->tokmap);
  for (size_t i = 0; i < T->nwords; i++)
    free(T->words[i].sym);
  free(T->words);
  for (size_t i = 0; i < T->npairs; i++)
    free(T->pairs[i].where);
  free(T->pairs);
  free(T->pkey);
  free(T->pidx);
  free(T->heap);
  free(T->touched);
  free(T->merges);
}

static void put_json_string(FILE *f, const char *s, size_t n) {
  fputc('"', f);
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '"' || s[i] == '\\')
      fputc('\\', f);
    fputc(s[i], f);
  }
  fputc('"', f);
}

static int write_files(const trainer *T, const char *out_dir, dfpo_err *err) {
  int rc = dfpo_mkdirs(out_dir, err);
  if (rc)
    return rc;
  size_t n = strlen(out_dir) + 32;
  char *path = malloc(n);
  size_t maxlen = 0;
  for (size_t i = 0; i < T->ntok; i++)
    if (T->tl[i] > maxlen)
      maxlen = T->tl[i];
  char *s = malloc(2 * maxlen + 32), *s2 = malloc(2 * maxlen + 32);
  if (!path || !s || !s2) {
    free(path);
    free(s);
    free(s2);
    return oom(err);
  }
  dfpo_atomic a;
  snprintf(path, n, "%s/encoder.json", out_dir);
  rc = dfpo_atomic_open(&a, path, err);
  if (!rc) {
    /* One line, as OpenAI's file; ids in order; the end-of-text token last. */
    fputc('{', a.fp);
    for (size_t i = 0; i < T->ntok; i++) {
      size_t k = tok_bytes_to_string(T->tb[i], T->tl[i], s);
      put_json_string(a.fp, s, k);
      fprintf(a.fp, ": %zu, ", i);
    }
    fprintf(a.fp, "\"<|endoftext|>\": %zu}", T->ntok);
    rc = dfpo_atomic_commit(&a, err);
  }
  snprintf(path, n, "%s/vocab.bpe", out_dir);
  if (!rc)
    rc = dfpo_atomic_open(&a, path, err);
  if (!rc) {
    fputs("#version: 0.2\n", a.fp);
    for (size_t i = 0; i < T->nmerges; i++) {
      tok_bytes_to_string(T->tb[T->merges[i][0]], T->tl[T->merges[i][0]], s);
      tok_bytes_to_string(T->tb[T->merges[i][1]], T->tl[T->merges[i][1]], s2);
      fprintf(a.fp, "%s %s\n", s, s2);
    }
    rc = dfpo_atomic_commit(&a, err);
  }
  free(path);
  free(s);
  free(s2);
  return rc;
}

static int count_words(const char *const *corpus, size_t n_corpus, tok_strmap *words,
                       dfpo_err *err) {
  tok_regex re = {0};
  tok_splitter sp;
  int rc = tok_regex_init(&re, err);
  if (rc)
    return rc;
  rc = tok_splitter_init(&sp, &re, err);
  if (rc) {
    tok_regex_free(&re);
    return rc;
  }
  count_ctx cc = {words};
  for (size_t f = 0; f < n_corpus && !rc; f++) {
    char *text;
    size_t len;
    rc = dfpo_read_file(corpus[f], &text, &len, err);
    if (rc)
      break;
    rc = tok_split(&sp, text, len, count_piece, &cc, err);
    if (rc && err && !err->msg[0])
      oom(err);
    free(text);
  }
  tok_splitter_free(&sp);
  tok_regex_free(&re);
  return rc;
}

static int train(trainer *T, const tok_strmap *wm, size_t target, dfpo_err *err) {
  uint32_t cp[256];
  uint8_t order[256];
  int32_t byte_id[256];
  tok_byte_tables(cp, order);
  for (int i = 0; i < 256; i++) {
    char b = (char)order[i];
    if (add_token(T, &b, 1, &byte_id[order[i]]))
      return oom(err);
  }
  /* The order of the words does not change any count, so the map's slot
   * order is as good as any. */
  T->words = calloc(wm->n ? wm->n : 1, sizeof *T->words);
  if (!T->words)
    return oom(err);
  for (size_t j = 0; j < wm->cap; j++) {
    if (!wm->hash[j])
      continue;
    tword *w = &T->words[T->nwords++];
    w->n = wm->key_len[j];
    w->count = wm->val[j];
    w->sym = malloc((w->n ? w->n : 1) * sizeof *w->sym);
    if (!w->sym)
      return oom(err);
    const unsigned char *k = (const unsigned char *)wm->arena + wm->key_off[j];
    for (uint32_t i = 0; i < w->n; i++)
      w->sym[i] = byte_id[k[i]];
  }
  uint32_t stamp = 0;
  for (uint32_t w = 0; w < T->nwords; w++)
    if (word_pairs(T, w, +1, stamp))
      return oom(err);
  for (size_t i = 0; i < T->npairs; i++) {
    T->pairs[i].pushed = T->pairs[i].count;
    if (T->pairs[i].count > 0 && heap_push(T, T->pairs[i].count, (uint32_t)i))
      return oom(err);
  }
  T->ntouched = 0;
  char *buf = NULL;
  size_t bufcap = 0;
  while (T->ntok < target && T->nheap) {
    theap_ent e = heap_pop(T);
    tpair *p = &T->pairs[e.pair];
    if (e.count != p->count || p->count <= 0)
      continue;
    int32_t a = p->l, b = p->r, c;
    size_t n = (size_t)T->tl[a] + T->tl[b];
    if (dfpo_grow(&buf, &bufcap, n, 1, 2 * n, DFPO_NOCAP, NULL)) {
      free(buf);
      return oom(err);
    }
    memcpy(buf, T->tb[a], T->tl[a]);
    memcpy(buf + T->tl[a], T->tb[b], T->tl[b]);
    if (add_token(T, buf, n, &c)) {
      free(buf);
      return oom(err);
    }
    /* A merge whose bytes are already a token (ab+c after a+bc) reuses it,
     * as GPT-2's string-keyed files would: it adds a merge, not a token. */
    if (dfpo_grow(&T->merges, &T->cmerges, T->nmerges + 1, sizeof *T->merges, 1024, DFPO_NOCAP,
                  NULL)) {
      free(buf);
      return oom(err);
    }
    T->merges[T->nmerges][0] = a;
    T->merges[T->nmerges][1] = b;
    T->nmerges++;
    stamp++;
    uint32_t *wl = p->where, nw = p->nwhere;
    p->where = NULL;
    p->nwhere = p->cwhere = 0;
    for (uint32_t k = 0; k < nw; k++) {
      tword *wd = &T->words[wl[k]];
      int has = 0;
      for (uint32_t i = 0; i + 1 < wd->n && !has; i++)
        has = wd->sym[i] == a && wd->sym[i + 1] == b;
      if (!has)
        continue;
      if (word_pairs(T, wl[k], -1, stamp)) {
        free(wl);
        free(buf);
        return oom(err);
      }
      uint32_t j = 0;
      for (uint32_t i = 0; i < wd->n;) {
        if (i + 1 < wd->n && wd->sym[i] == a && wd->sym[i + 1] == b) {
          wd->sym[j++] = c;
          i += 2;
        } else {
          wd->sym[j++] = wd->sym[i++];
        }
      }
      wd->n = j;
      if (word_pairs(T, wl[k], +1, stamp)) {
        free(wl);
        free(buf);
        return oom(err);
      }
    }
    free(wl);
    for (size_t k = 0; k < T->ntouched; k++) {
      tpair *q = &T->pairs[T->touched[k]];
      if (q->count != q->pushed) {
        q->pushed = q->count;
        if (q->count > 0 && heap_push(T, q->count, T->touched[k])) {
          free(buf);
          return oom(err);
        }
      }
    }
    T->ntouched = 0;
  }
  free(buf);
  return DFPO_OK;
}

int tok_train(const char *const *corpus, size_t n_corpus, size_t vocab_size, const char *out_dir,
              size_t *merges_done, dfpo_err *err) {
  if (vocab_size < 257)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "tokenizer train: the vocabulary needs at least 257 entries (256 bytes "
                        "and <|endoftext|>), got %zu",
                        vocab_size);
  tok_strmap wm = {0};
  int rc = count_words(corpus, n_corpus, &wm, err);
  trainer T;
  memset(&T, 0, sizeof T);
  if (!rc)
    rc = train(&T, &wm, vocab_size - 1, err);
  tok_strmap_free(&wm);
  if (!rc && T.ntok < vocab_size - 1)
    dfpo_warn("tokenizer train: the corpus has no pair left to merge after %zu merges; the "
              "vocabulary has %zu entries, not %zu",
              T.nmerges, T.ntok + 1, vocab_size);
  if (!rc)
    rc = write_files(&T, out_dir, err);
  if (!rc && merges_done)
    *merges_done = T.nmerges;
  trainer_free(&T);
  return rc;
}
