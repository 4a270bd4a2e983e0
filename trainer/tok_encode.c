/* Encoding and decoding: the GPT-2 pre-tokenisation pattern with PCRE2, BPE
 * merges by rank, a per-thread cache of encoded words. */
#include "trainer/tok_internal.h"
#include "trainer/tok_spm.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ pattern */

/* GPT-2's pattern with \p{L}, \p{N} and \s pinned to what the reference
 * (Python's `regex` module, Unicode 15.0 in Debian 12) matches: Debian's
 * PCRE2 10.42 knows Unicode 14, so the letters and digits Unicode 15 added
 * are listed explicitly (harmless where PCRE2 already knows them), and
 * U+180E, which PCRE2 counts as space and `regex` does not, is taken out of
 * \s. tests/trainer/test_tok_reference.c checks every code point. */
#define L_EXTRA                                                                                    \
  "\\x{1123F}-\\x{11240}\\x{11F02}\\x{11F04}-\\x{11F10}\\x{11F12}-\\x{11F33}\\x{1342F}"            \
  "\\x{13441}-\\x{13446}\\x{1B132}\\x{1B155}\\x{1DF25}-\\x{1DF2A}\\x{1E030}-\\x{1E06D}"            \
  "\\x{1E4D0}-\\x{1E4EB}\\x{2B739}\\x{31350}-\\x{323AF}"
#define N_EXTRA "\\x{11F50}-\\x{11F59}\\x{1D2C0}-\\x{1D2D3}\\x{1E4F0}-\\x{1E4F9}"
#define SPACE "[^\\S\\x{180E}]"
#define NOT_SPACE "[\\S\\x{180E}]"

static const char gpt2_pattern[] = "'s|'t|'re|'ve|'m|'ll|'d"
                                   "| ?[\\p{L}" L_EXTRA "]+"
                                   "| ?[\\p{N}" N_EXTRA "]+"
                                   "| ?(?:[^\\s\\p{L}\\p{N}" L_EXTRA N_EXTRA "]|\\x{180E})+"
                                   "|" SPACE "+(?!" NOT_SPACE ")"
                                   "|" SPACE "+";

int tok_regex_init(tok_regex *re, dfpo_err *err) {
  int ec;
  PCRE2_SIZE eo;
  re->code = pcre2_compile((PCRE2_SPTR)gpt2_pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                           &ec, &eo, NULL);
  if (!re->code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(ec, msg, sizeof msg);
    return dfpo_err_set(err, DFPO_ERUNTIME, "PCRE2 cannot compile the GPT-2 pattern at %zu: %s",
                        (size_t)eo, (char *)msg);
  }
  /* Without JIT support (some architectures) the interpreter gives the same
   * matches, only slower. */
  re->jit = pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE) == 0;
  return DFPO_OK;
}

void tok_regex_free(tok_regex *re) {
  pcre2_code_free(re->code);
  re->code = NULL;
}

/* ----------------------------------------------------------- splitter */

int tok_splitter_init(tok_splitter *s, const tok_regex *re, dfpo_err *err) {
  memset(s, 0, sizeof *s);
  s->re = re;
  s->md = pcre2_match_data_create_from_pattern(re->code, NULL);
  s->mctx = pcre2_match_context_create(NULL);
  /* Greedy runs (a megabyte of spaces) need more than the default 32 KiB. */
  s->jstack = re->jit ? pcre2_jit_stack_create(64 * 1024, 64 * 1024 * 1024, NULL) : NULL;
  if (!s->md || !s->mctx || (re->jit && !s->jstack)) {
    tok_splitter_free(s);
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory for the PCRE2 match state");
  }
  if (s->jstack)
    pcre2_jit_stack_assign(s->mctx, NULL, s->jstack);
  return DFPO_OK;
}

void tok_splitter_free(tok_splitter *s) {
  pcre2_match_data_free(s->md);
  pcre2_match_context_free(s->mctx);
  pcre2_jit_stack_free(s->jstack);
  free(s->sub);
  free(s->sub_map);
  memset(s, 0, sizeof *s);
}

/* Length of the well-formed UTF-8 character at p (Unicode Table 3-7), or 0. */
static size_t utf8_char(const unsigned char *p, size_t n) {
  unsigned char c = p[0];
  if (c < 0x80)
    return 1;
  if (c >= 0xC2 && c <= 0xDF)
    return n >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (n < 3)
      return 0;
    unsigned char lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    return p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 ? 3 : 0;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (n < 4)
      return 0;
    unsigned char lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    return p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 && (p[3] & 0xC0) == 0x80 ? 4 : 0;
  }
  return 0;
}

/* Offset of the first byte that is not part of a well-formed character. */
static size_t utf8_valid_prefix(const unsigned char *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    while (i + 8 <= n) {
      uint64_t w;
      memcpy(&w, p + i, 8);
      if (w & 0x8080808080808080ull)
        break;
      i += 8;
    }
    if (i >= n)
      break;
    size_t k = utf8_char(p + i, n - i);
    if (!k)
      return i;
    i += k;
  }
  return n;
}

/* Replaces each byte that is not part of a well-formed character with
 * U+E000 + byte (private use: neither letter, number nor space, the same
 * classes as the lone surrogate Python's surrogateescape makes of it) and
 * records where each character of the result came from. */
static int substitute(tok_splitter *s, const unsigned char *p, size_t n, size_t first_bad,
                      size_t *sub_len) {
  size_t need = first_bad + (n - first_bad) * 3 + 1;
  /* two arrays, one capacity: each grows from the same old one */
  size_t cs = s->sub_cap, cm = s->sub_cap;
  if (dfpo_grow(&s->sub, &cs, need, 1, need, DFPO_NOCAP, NULL) ||
      dfpo_grow(&s->sub_map, &cm, need, sizeof *s->sub_map, need, DFPO_NOCAP, NULL))
    return -1;
  s->sub_cap = cs;
  memcpy(s->sub, p, first_bad);
  for (size_t i = 0; i < first_bad; i++)
    s->sub_map[i] = i;
  size_t k = first_bad, i = first_bad;
  while (i < n) {
    size_t c = utf8_char(p + i, n - i);
    if (c) {
      for (size_t j = 0; j < c; j++) {
        s->sub[k] = (char)p[i + j];
        s->sub_map[k++] = i + j;
      }
      i += c;
    } else {
      unsigned cp = 0xE000u + p[i];
      s->sub[k] = (char)(0xE0 | (cp >> 12));
      s->sub[k + 1] = (char)(0x80 | ((cp >> 6) & 0x3F));
      s->sub[k + 2] = (char)(0x80 | (cp & 0x3F));
      s->sub_map[k] = s->sub_map[k + 1] = s->sub_map[k + 2] = i;
      k += 3;
      i++;
    }
  }
  s->sub_map[k] = n;
  *sub_len = k;
  return 0;
}

static int match_at(tok_splitter *s, const char *subj, size_t n, size_t off, dfpo_err *err) {
  int rc;
  if (s->re->jit) {
    rc = pcre2_jit_match(s->re->code, (PCRE2_SPTR)subj, n, off, 0, s->md, s->mctx);
    if (rc >= 0 || rc == PCRE2_ERROR_NOMATCH)
      return rc;
    /* JIT stack exhausted: the interpreter keeps its backtracking on the
     * heap and has no such limit. */
  }
  rc = pcre2_match(s->re->code, (PCRE2_SPTR)subj, n, off, PCRE2_NO_UTF_CHECK, s->md, NULL);
  if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(rc, msg, sizeof msg);
    dfpo_err_set(err, DFPO_ERUNTIME, "PCRE2 match failed at byte %zu: %s", off, (char *)msg);
  }
  return rc;
}

int tok_split(tok_splitter *s, const char *text, size_t len, tok_piece_fn fn, void *ctx,
              dfpo_err *err) {
  size_t bad = utf8_valid_prefix((const unsigned char *)text, len);
  const char *subj = text;
  size_t n = len;
  const size_t *map = NULL;
  if (bad < len) {
    if (substitute(s, (const unsigned char *)text, len, bad, &n))
      return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    subj = s->sub;
    map = s->sub_map;
  }
  size_t off = 0;
  PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
  while (off < n) {
    int rc = match_at(s, subj, n, off, err);
    size_t a, b;
    if (rc == PCRE2_ERROR_NOMATCH) {
      a = b = n; /* cannot happen: every character starts a match */
    } else if (rc < 0) {
      return DFPO_ERUNTIME;
    } else {
      a = ov[0];
      b = ov[1];
    }
    /* Text the pattern skipped would be dropped by findall; keep it as a
     * piece so that decoding always gives the input back. */
    if (a > off) {
      int r = fn(ctx, text, map ? map[off] : off, map ? map[a] : a);
      if (r)
        return r;
    }
    if (b > a) {
      int r = fn(ctx, text, map ? map[a] : a, map ? map[b] : b);
      if (r)
        return r;
    }
    off = b > off ? b : n;
  }
  return DFPO_OK;
}

/* ---------------------------------------------------------------- BPE */

static size_t heap_threshold = 48;
void tok_set_heap_threshold(size_t n) {
  heap_threshold = n ? n : 1;
}

typedef struct hent {
  uint32_t rank, pos;
  int32_t l, r;
} hent;

/* Word cache: word bytes -> ids, open addressing, cleared when full. */
typedef struct wcache {
  uint64_t *hash;
  uint32_t *koff, *klen, *voff, *vlen;
  char *keys;
  int32_t *vals;
  size_t cap, n, keys_len, keys_cap, vals_len, vals_cap;
} wcache;

#define CACHE_SLOTS (1u << 19)
#define CACHE_MAX_ENTRIES (CACHE_SLOTS / 2)
#define CACHE_MAX_WORD 256

typedef struct tok_worker {
  tok_splitter sp;
  wcache cache;
  int32_t *ids, *prv, *nxt;
  hent *heap, *pend;
  size_t cap, heap_cap;
} tok_worker;

static int worker_init(tok_worker *w, const tok_tokenizer *t, dfpo_err *err) {
  memset(w, 0, sizeof *w);
  int rc = tok_splitter_init(&w->sp, &t->re, err);
  if (rc)
    return rc;
  w->cache.cap = CACHE_SLOTS;
  w->cache.hash = calloc(CACHE_SLOTS, sizeof *w->cache.hash);
  w->cache.koff = malloc(CACHE_SLOTS * sizeof(uint32_t));
  w->cache.klen = malloc(CACHE_SLOTS * sizeof(uint32_t));
  w->cache.voff = malloc(CACHE_SLOTS * sizeof(uint32_t));
  w->cache.vlen = malloc(CACHE_SLOTS * sizeof(uint32_t));
  w->cache.keys_cap = 1u << 22;
  w->cache.vals_cap = 1u << 21;
  w->cache.keys = malloc(w->cache.keys_cap);
  w->cache.vals = malloc(w->cache.vals_cap * sizeof(int32_t));
  if (!w->cache.hash || !w->cache.koff || !w->cache.klen || !w->cache.voff || !w->cache.vlen ||
      !w->cache.keys || !w->cache.vals)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory for the tokenizer's word cache");
  return DFPO_OK;
}

static void worker_free(tok_worker *w) {
  tok_splitter_free(&w->sp);
  free(w->cache.hash);
  free(w->cache.koff);
  free(w->cache.klen);
  free(w->cache.voff);
  free(w->cache.vlen);
  free(w->cache.keys);
  free(w->cache.vals);
  free(w->ids);
  free(w->prv);
  free(w->nxt);
  free(w->heap);
  free(w->pend);
  memset(w, 0, sizeof *w);
}

static const int32_t *cache_get(const wcache *c, const char *k, size_t n, uint64_t h,
                                size_t *nids) {
  size_t j = (size_t)h & (c->cap - 1);
  while (c->hash[j]) {
    if (c->hash[j] == h && c->klen[j] == n && !memcmp(c->keys + c->koff[j], k, n)) {
      *nids = c->vlen[j];
      return c->vals + c->voff[j];
    }
    j = (j + 1) & (c->cap - 1);
  }
  return NULL;
}

static void cache_put(wcache *c, const char *k, size_t n, uint64_t h, const int32_t *ids,
                      size_t nids) {
  if (c->n >= CACHE_MAX_ENTRIES || c->keys_len + n > c->keys_cap ||
      c->vals_len + nids > c->vals_cap) {
    memset(c->hash, 0, c->cap * sizeof *c->hash);
    c->n = c->keys_len = c->vals_len = 0;
  }
  size_t j = (size_t)h & (c->cap - 1);
  while (c->hash[j])
    j = (j + 1) & (c->cap - 1);
  c->hash[j] = h;
  c->koff[j] = (uint32_t)c->keys_len;
  c->klen[j] = (uint32_t)n;
  c->voff[j] = (uint32_t)c->vals_len;
  c->vlen[j] = (uint32_t)nids;
  memcpy(c->keys + c->keys_len, k, n);
  memcpy(c->vals + c->vals_len, ids, nids * sizeof *ids);
  c->keys_len += n;
  c->vals_len += nids;
  c->n++;
}

static int ids_reserve(tok_ids *v, size_t extra) {
  if (v->n + extra <= v->cap) /* the common case, without a call */
    return 0;
  return dfpo_grow(&v->ids, &v->cap, v->n + extra, sizeof *v->ids, 256, DFPO_NOCAP, NULL) ? -1 : 0;
}

void tok_ids_free(tok_ids *v) {
  free(v->ids);
  v->ids = NULL;
  v->n = v->cap = 0;
}

static int worker_reserve(tok_worker *w, size_t n) {
  if (n <= w->cap)
    return 0;
  /* ids, prv and nxt get at least 2n entries, heap and pend at least 4n:
   * bpe_heap pushes up to 3n (the n - 1 first pairs and two per merge) and
   * never drops a stale entry before popping it. Each array grows from the
   * same old capacity, so heap_cap stays twice cap. */
  size_t c0 = w->cap, c1 = w->cap, c2 = w->cap, h0 = w->heap_cap, h1 = w->heap_cap;
  if (dfpo_grow(&w->ids, &c0, 2 * n, sizeof *w->ids, 2 * n, DFPO_NOCAP, NULL) ||
      dfpo_grow(&w->prv, &c1, 2 * n, sizeof *w->prv, 2 * n, DFPO_NOCAP, NULL) ||
      dfpo_grow(&w->nxt, &c2, 2 * n, sizeof *w->nxt, 2 * n, DFPO_NOCAP, NULL) ||
      dfpo_grow(&w->heap, &h0, 4 * n, sizeof *w->heap, 4 * n, DFPO_NOCAP, NULL) ||
      dfpo_grow(&w->pend, &h1, 4 * n, sizeof *w->pend, 4 * n, DFPO_NOCAP, NULL))
    return -1;
  w->cap = c0;
  w->heap_cap = h0;
  return 0;
}

/* encoder.py's bpe(): find the adjacent pair with the lowest merge rank,
 * merge every occurrence of it left to right, repeat. Quadratic, and the
 * fastest for the short words that make up almost all text. */
static size_t bpe_scan(const tok_tokenizer *t, int32_t *ids, size_t m) {
  while (m > 1) {
    uint32_t best = UINT32_MAX, rank;
    int32_t a = 0, b = 0, res = 0, r;
    for (size_t i = 0; i + 1 < m; i++)
      if (tok_merge_find(t, ids[i], ids[i + 1], &rank, &r) && rank < best) {
        best = rank;
        a = ids[i];
        b = ids[i + 1];
        res = r;
      }
    if (best == UINT32_MAX)
      break;
    size_t j = 0;
    for (size_t i = 0; i < m;) {
      if (i + 1 < m && ids[i] == a && ids[i + 1] == b) {
        ids[j++] = res;
        i += 2;
      } else {
        ids[j++] = ids[i++];
      }
    }
    m = j;
  }
  return m;
}

static int hless(const hent *x, const hent *y) {
  return x->rank < y->rank || (x->rank == y->rank && x->pos < y->pos);
}

static void hpush(hent *h, size_t *n, hent e) {
  size_t i = (*n)++;
  while (i) {
    size_t p = (i - 1) / 2;
    if (!hless(&e, &h[p]))
      break;
    h[i] = h[p];
    i = p;
  }
  h[i] = e;
}

static hent hpop(hent *h, size_t *n) {
  hent top = h[0], e = h[--*n];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= *n)
      break;
    if (c + 1 < *n && hless(&h[c + 1], &h[c]))
      c++;
    if (!hless(&h[c], &e))
      break;
    h[i] = h[c];
    i = c;
  }
  if (*n)
    h[i] = e;
  return top;
}

/* The same result as bpe_scan in O(n log n) for long words: a heap of
 * (rank, position) pops one pair's occurrences left to right, as the scan
 * merges them. Pairs a merge creates join the heap after that pair's pass
 * when their rank is lower (which a trained merge list never has, but the
 * scan would postpone them too). Stale entries are recognised by their ids. */
static size_t bpe_heap(const tok_tokenizer *t, tok_worker *w, size_t m) {
  int32_t *ids = w->ids, *prv = w->prv, *nxt = w->nxt;
  size_t hn = 0, pn = 0;
  uint32_t rank = 0;
  int32_t r = 0;
  for (size_t i = 0; i < m; i++) {
    prv[i] = (int32_t)i - 1;
    nxt[i] = i + 1 < m ? (int32_t)i + 1 : -1;
  }
  for (size_t i = 0; i + 1 < m; i++)
    if (tok_merge_find(t, ids[i], ids[i + 1], &rank, &r))
      hpush(w->heap, &hn, (hent){rank, (uint32_t)i, ids[i], ids[i + 1]});
  uint32_t cur = UINT32_MAX;
  while (hn || pn) {
    if (!hn || (cur != UINT32_MAX && w->heap[0].rank != cur)) {
      while (pn)
        hpush(w->heap, &hn, w->pend[--pn]);
      cur = UINT32_MAX;
      continue;
    }
    hent e = hpop(w->heap, &hn);
    int32_t p = (int32_t)e.pos, q = nxt[p];
    if (ids[p] != e.l || q < 0 || ids[q] != e.r || prv[p] == -2)
      continue;
    cur = e.rank;
    tok_merge_find(t, e.l, e.r, &rank, &r);
    ids[p] = r;
    nxt[p] = nxt[q];
    if (nxt[q] >= 0)
      prv[nxt[q]] = p;
    prv[q] = -2; /* dead */
    int32_t lp = prv[p], rn = nxt[p];
    if (lp >= 0 && tok_merge_find(t, ids[lp], ids[p], &rank, &r)) {
      hent ne = {rank, (uint32_t)lp, ids[lp], ids[p]};
      if (rank < cur)
        w->pend[pn++] = ne;
      else
        hpush(w->heap, &hn, ne);
    }
    if (rn >= 0 && tok_merge_find(t, ids[p], ids[rn], &rank, &r)) {
      hent ne = {rank, (uint32_t)p, ids[p], ids[rn]};
      if (rank < cur)
        w->pend[pn++] = ne;
      else
        hpush(w->heap, &hn, ne);
    }
  }
  size_t k = 0;
  for (int32_t i = 0; i >= 0; i = nxt[i])
    ids[k++] = ids[i];
  return k;
}

typedef struct enc_ctx {
  const tok_tokenizer *t;
  tok_worker *w;
  tok_ids *out;
  dfpo_err *err;
} enc_ctx;

static int encode_piece(void *vctx, const char *text, size_t start, size_t end) {
  enc_ctx *c = vctx;
  const tok_tokenizer *t = c->t;
  const char *s = text + start;
  size_t n = end - start;
  if (n == 1) {
    if (ids_reserve(c->out, 1))
      return dfpo_err_set(c->err, DFPO_ERUNTIME, "out of memory");
    c->out->ids[c->out->n++] = t->byte_id[(unsigned char)s[0]];
    return 0;
  }
  uint64_t h = 0;
  if (n <= CACHE_MAX_WORD) {
    h = tok_hash_bytes(s, n);
    size_t nids;
    const int32_t *hit = cache_get(&c->w->cache, s, n, h, &nids);
    if (hit) {
      if (ids_reserve(c->out, nids))
        return dfpo_err_set(c->err, DFPO_ERUNTIME, "out of memory");
      memcpy(c->out->ids + c->out->n, hit, nids * sizeof *hit);
      c->out->n += nids;
      return 0;
    }
  }
  if (worker_reserve(c->w, n) || ids_reserve(c->out, n))
    return dfpo_err_set(c->err, DFPO_ERUNTIME, "out of memory");
  int32_t *ids = c->w->ids;
  for (size_t i = 0; i < n; i++)
    ids[i] = t->byte_id[(unsigned char)s[i]];
  size_t m = n >= heap_threshold ? bpe_heap(t, c->w, n) : bpe_scan(t, ids, n);
  memcpy(c->out->ids + c->out->n, ids, m * sizeof *ids);
  c->out->n += m;
  if (n <= CACHE_MAX_WORD)
    cache_put(&c->w->cache, s, n, h, ids, m);
  return 0;
}

static const char *find_bytes(const char *hay, size_t n, const char *needle, size_t k) {
  if (!k || k > n)
    return NULL;
  const char *end = hay + n - k + 1;
  for (const char *p = hay; p < end; p++) {
    p = memchr(p, needle[0], (size_t)(end - p));
    if (!p)
      return NULL;
    if (!memcmp(p, needle, k))
      return p;
  }
  return NULL;
}

/* The leftmost special token at or after text (the longest one there). */
static const tok_special *find_special(const tok_tokenizer *t, const char *text, size_t len,
                                       size_t *at) {
  const tok_special *best = NULL;
  size_t best_at = len;
  for (size_t i = 0; i < t->n_special; i++) {
    const tok_special *sp = &t->special[i];
    const char *p = find_bytes(text, len, sp->text, sp->len);
    if (!p)
      continue;
    size_t off = (size_t)(p - text);
    if (off < best_at || (off == best_at && best && sp->len > best->len)) {
      best = sp;
      best_at = off;
    }
  }
  *at = best_at;
  return best;
}

static int encode_with(const tok_tokenizer *t, tok_worker *w, const char *text, size_t len,
                       int flags, tok_ids *out, dfpo_err *err) {
  enc_ctx c = {t, w, out, err};
  while (len) {
    size_t at = len;
    const tok_special *sp =
        (flags & TOK_ALLOW_SPECIAL) && t->n_special ? find_special(t, text, len, &at) : NULL;
    int rc = tok_split(&w->sp, text, at, encode_piece, &c, err);
    if (rc)
      return rc;
    if (!sp)
      break;
    if (ids_reserve(out, 1))
      return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    out->ids[out->n++] = sp->id;
    text += at + sp->len;
    len -= at + sp->len;
  }
  return DFPO_OK;
}

/* Worker slot i of t, created on first use. Slots are per OpenMP thread
 * number, so threads never share one and each keeps its word cache from call
 * to call. */
static int get_worker(tok_tokenizer *t, size_t i, tok_worker **out, dfpo_err *err) {
  if (!t->workers[i]) {
    tok_worker *w = malloc(sizeof *w);
    if (!w)
      return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    int rc = worker_init(w, t, err);
    if (rc) {
      worker_free(w);
      free(w);
      return rc;
    }
    t->workers[i] = w;
  }
  *out = t->workers[i];
  return DFPO_OK;
}

static int ensure_slots(tok_tokenizer *t, size_t n, dfpo_err *err) {
  if (n <= t->n_workers)
    return DFPO_OK;
  struct tok_worker **w = realloc(t->workers, n * sizeof *w);
  if (!w)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  for (size_t i = t->n_workers; i < n; i++)
    w[i] = NULL;
  t->workers = w;
  t->n_workers = n;
  return DFPO_OK;
}

int tok_encode(tok_tokenizer *t, const char *text, size_t len, int flags, tok_ids *out,
               dfpo_err *err) {
  if (t->spm)
    return tok_spm_encode_text(t, text, len, flags, out, err);
  tok_worker *w;
  int rc = ensure_slots(t, 1, err);
  if (!rc)
    rc = get_worker(t, 0, &w, err);
  return rc ? rc : encode_with(t, w, text, len, flags, out, err);
}

int tok_encode_many(tok_tokenizer *t, const char *const *texts, const size_t *lens, size_t n,
                    int flags, tok_ids *outs, dfpo_err *err) {
  if (t->spm) { /* one document after another */
    for (size_t i = 0; i < n; i++) {
      int rc = tok_spm_encode_text(t, texts[i], lens[i], flags, &outs[i], err);
      if (rc)
        return rc;
    }
    return DFPO_OK;
  }
  int nt = omp_get_max_threads();
  int status = ensure_slots(t, (size_t)(nt > 0 ? nt : 1), err);
  if (status)
    return status;
#pragma omp parallel num_threads(nt)
  {
    tok_worker *w = NULL;
    dfpo_err e;
    dfpo_err_clear(&e);
    int rc = get_worker(t, (size_t)omp_get_thread_num(), &w, &e);
#pragma omp for schedule(dynamic, 8)
    for (size_t i = 0; i < n; i++) {
      int stop;
#pragma omp atomic read
      stop = status;
      if (rc || stop)
        continue;
      rc = encode_with(t, w, texts[i], lens[i], flags, &outs[i], &e);
    }
    if (rc) {
#pragma omp critical(tok_encode_many_err)
      {
        if (status == DFPO_OK) {
          status = rc;
          if (err)
            *err = e;
        }
      }
    }
  }
  return status;
}

int tok_decode(const tok_tokenizer *t, const int32_t *ids, size_t n, char **buf, size_t *len,
               size_t *cap, dfpo_err *err) {
  if (t->spm)
    return tok_spm_decode_ids(t, ids, n, buf, len, cap, err);
  size_t need = *len;
  for (size_t i = 0; i < n; i++) {
    if (ids[i] < 0 || (size_t)ids[i] >= t->n_ids || !t->tok_bytes[ids[i]])
      return dfpo_err_set(err, DFPO_EDATA, "token id %ld at position %zu is not in the vocabulary",
                          (long)ids[i], i);
    need += t->tok_len[ids[i]];
  }
  int rc = dfpo_grow(buf, cap, need + 1, 1, need + 1, DFPO_NOCAP, err);
  if (rc)
    return rc;
  char *p = *buf + *len;
  for (size_t i = 0; i < n; i++) {
    memcpy(p, t->tok_bytes[ids[i]], t->tok_len[ids[i]]);
    p += t->tok_len[ids[i]];
  }
  *p = '\0';
  *len = need;
  return DFPO_OK;
}

void tok_free(tok_tokenizer *t) {
  if (!t)
    return;
  for (size_t i = 0; i < t->n_workers; i++) {
    if (t->workers[i]) {
      worker_free(t->workers[i]);
      free(t->workers[i]);
    }
  }
  free(t->workers);
  for (size_t i = 0; i < t->n_ids; i++)
    free(t->tok_bytes[i]);
  free(t->tok_bytes);
  free(t->tok_len);
  tok_strmap_free(&t->vocab);
  free(t->mkey);
  free(t->mval);
  for (size_t i = 0; i < t->n_special; i++)
    free(t->special[i].text);
  free(t->special);
  tok_regex_free(&t->re);
  tok_spm_free(t->spm);
  free(t);
}
