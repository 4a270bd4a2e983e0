/* The shared pieces of metrics/: string table, n-grams, UTF-8, LCS and the
 * two foreign tokenizers (sacreBLEU 13a, rouge-score). */
#include "metrics/met_internal.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ strings */

static uint64_t hash_bytes(const char *s, size_t len) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < len; i++) {
    h ^= (unsigned char)s[i];
    h *= 1099511628211ull;
  }
  return h ^ (h >> 29);
}

void met_vocab_init(met_vocab *v) {
  memset(v, 0, sizeof *v);
}

void met_vocab_free(met_vocab *v) {
  for (size_t i = 0; i < v->n; i++)
    free(v->str[i]);
  free(v->str);
  free(v->len);
  free(v->slots);
  memset(v, 0, sizeof *v);
}

static size_t vocab_slot(const met_vocab *v, const char *s, size_t len) {
  size_t mask = v->nslots - 1, i = (size_t)hash_bytes(s, len) & mask;
  for (;;) {
    uint32_t id = v->slots[i];
    if (id == UINT32_MAX || (v->len[id] == len && memcmp(v->str[id], s, len) == 0))
      return i;
    i = (i + 1) & mask;
  }
}

static int vocab_grow(met_vocab *v) {
  size_t ns = v->nslots ? v->nslots * 2 : 1024;
  uint32_t *slots = malloc(ns * sizeof *slots);
  if (!slots)
    return -1;
  memset(slots, 0xff, ns * sizeof *slots);
  uint32_t *old = v->slots;
  v->slots = slots;
  v->nslots = ns;
  for (size_t id = 0; id < v->n; id++)
    v->slots[vocab_slot(v, v->str[id], v->len[id])] = (uint32_t)id;
  free(old);
  return 0;
}

uint32_t met_vocab_find(const met_vocab *v, const char *s, size_t len) {
  if (!v->nslots)
    return UINT32_MAX;
  return v->slots[vocab_slot(v, s, len)];
}

uint32_t met_vocab_intern(met_vocab *v, const char *s, size_t len) {
  if ((v->n + 1) * 2 > v->nslots && vocab_grow(v))
    return UINT32_MAX;
  size_t slot = vocab_slot(v, s, len);
  if (v->slots[slot] != UINT32_MAX)
    return v->slots[slot];
  /* two arrays, one capacity; ids are uint32_t with UINT32_MAX the "none"
   * mark, so UINT32_MAX strings at most */
  size_t cs = v->cap, cl = v->cap;
  if (dfpo_grow(&v->str, &cs, v->n + 1, sizeof *v->str, 1024, UINT32_MAX, NULL) ||
      dfpo_grow(&v->len, &cl, v->n + 1, sizeof *v->len, 1024, UINT32_MAX, NULL))
    return UINT32_MAX;
  v->cap = cs;
  char *copy = malloc(len + 1);
  if (!copy)
    return UINT32_MAX;
  memcpy(copy, s, len);
  copy[len] = '\0';
  v->str[v->n] = copy;
  v->len[v->n] = (uint32_t)len;
  v->slots[slot] = (uint32_t)v->n;
  return (uint32_t)v->n++;
}

/* ------------------------------------------------------------- n-grams */

int met_ngram_cmp(const met_ngram *a, const met_ngram *b) {
  if (a->n != b->n)
    return a->n < b->n ? -1 : 1;
  for (int k = 0; k < MET_MAX_N; k++)
    if (a->id[k] != b->id[k])
      return a->id[k] < b->id[k] ? -1 : 1;
  return 0;
}

static int ngram_qcmp(const void *a, const void *b) {
  return met_ngram_cmp(a, b);
}

size_t met_ngrams_merge(met_ngram *g, size_t n) {
  if (!n)
    return 0;
  qsort(g, n, sizeof *g, ngram_qcmp);
  size_t w = 0;
  for (size_t i = 1; i < n; i++) {
    if (met_ngram_cmp(&g[w], &g[i]) == 0)
      g[w].c += g[i].c;
    else
      g[++w] = g[i];
  }
  return w + 1;
}

size_t met_ngrams(const uint32_t *ids, size_t len, int lo, int hi, met_ngram **out) {
  size_t total = 0;
  for (int k = lo; k <= hi; k++)
    if (len >= (size_t)k)
      total += len - (size_t)k + 1;
  met_ngram *g = malloc((total ? total : 1) * sizeof *g);
  if (!g)
    return (size_t)-1;
  size_t m = 0;
  for (int k = lo; k <= hi; k++) {
    for (size_t i = 0; i + (size_t)k <= len; i++) {
      met_ngram *x = &g[m++];
      memset(x->id, 0, sizeof x->id);
      memcpy(x->id, ids + i, (size_t)k * sizeof *ids);
      x->n = (uint32_t)k;
      x->c = 1;
    }
  }
  *out = g;
  return met_ngrams_merge(g, m);
}

const met_ngram *met_ngrams_find(const met_ngram *g, size_t n, const met_ngram *key) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = met_ngram_cmp(&g[mid], key);
    if (c == 0)
      return &g[mid];
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

/* --------------------------------------------------------------- UTF-8 */

int met_utf8_decode(const char *s, uint32_t *cp) {
  const unsigned char *u = (const unsigned char *)s;
  if (u[0] < 0x80) {
    *cp = u[0];
    return 1;
  }
  if (u[0] < 0xe0) {
    *cp = ((uint32_t)(u[0] & 0x1f) << 6) | (u[1] & 0x3f);
    return 2;
  }
  if (u[0] < 0xf0) {
    *cp = ((uint32_t)(u[0] & 0x0f) << 12) | ((uint32_t)(u[1] & 0x3f) << 6) | (u[2] & 0x3f);
    return 3;
  }
  *cp = ((uint32_t)(u[0] & 0x07) << 18) | ((uint32_t)(u[1] & 0x3f) << 12) |
        ((uint32_t)(u[2] & 0x3f) << 6) | (u[3] & 0x3f);
  return 4;
}

int met_utf8_encode(uint32_t cp, char *out) {
  unsigned char *o = (unsigned char *)out;
  if (cp < 0x80) {
    o[0] = (unsigned char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (unsigned char)(0xc0 | (cp >> 6));
    o[1] = (unsigned char)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (unsigned char)(0xe0 | (cp >> 12));
    o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    o[2] = (unsigned char)(0x80 | (cp & 0x3f));
    return 3;
  }
  o[0] = (unsigned char)(0xf0 | (cp >> 18));
  o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
  o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
  o[3] = (unsigned char)(0x80 | (cp & 0x3f));
  return 4;
}

size_t met_utf8_invalid(const char *s, size_t len) {
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0;
  while (i < len) {
    unsigned char c = u[i];
    size_t need;
    uint32_t cp, min;
    if (c < 0x80) {
      i++;
      continue;
    } else if (c >= 0xc2 && c < 0xe0) {
      need = 1, cp = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c < 0xf0) {
      need = 2, cp = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c < 0xf5) {
      need = 3, cp = c & 0x07, min = 0x10000;
    } else {
      return i;
    }
    for (size_t k = 1; k <= need; k++) {
      if (i + k >= len || (u[i + k] & 0xc0) != 0x80)
        return i;
      cp = (cp << 6) | (u[i + k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return i;
    i += need + 1;
  }
  return (size_t)-1;
}

uint32_t met_lower_cp(uint32_t cp) {
  if (cp >= 'A' && cp <= 'Z')
    return cp + 32;
  if (cp >= 0xc0 && cp <= 0xde && cp != 0xd7)
    return cp + 32;
  return cp;
}

char *met_lower_str(const char *s, size_t len, size_t *out_len) {
  char *out = malloc(len + 1); /* Latin-1 lowercase keeps the byte length */
  if (!out)
    return NULL;
  size_t i = 0, o = 0;
  while (i < len) {
    uint32_t cp;
    int k = met_utf8_decode(s + i, &cp);
    o += (size_t)met_utf8_encode(met_lower_cp(cp), out + o);
    i += (size_t)k;
  }
  out[o] = '\0';
  if (out_len)
    *out_len = o;
  return out;
}

/* ------------------------------------------------------------- helpers */

size_t met_lcs(const uint32_t *a, size_t na, const uint32_t *b, size_t nb) {
  if (!na || !nb)
    return 0;
  size_t stack[128];
  size_t *row = nb + 1 <= 128 ? stack : calloc(nb + 1, sizeof *row);
  if (!row)
    return 0;
  memset(row, 0, (nb + 1) * sizeof *row);
  for (size_t i = 1; i <= na; i++) {
    size_t diag = 0; /* row[j-1] of the previous i */
    for (size_t j = 1; j <= nb; j++) {
      size_t up = row[j];
      if (a[i - 1] == b[j - 1])
        row[j] = diag + 1;
      else if (row[j - 1] > row[j])
        row[j] = row[j - 1];
      diag = up;
    }
  }
  size_t r = row[nb];
  if (row != stack)
    free(row);
  return r;
}

/* sacreBLEU 2.x TokenizerRegexp and Tokenizer13a, applied in their order.
 * Each regex is a left-to-right scan with non-overlapping matches, like
 * Python's re.sub; the patterns are all one or two ASCII characters, so
 * scanning bytes gives the same result as scanning code points. */
static int is_13a_punct(unsigned char c) {
  /* [\{-\~\[-\` -\&\(-\+\:-\@\/] */
  return (c >= '{' && c <= '~') || (c >= '[' && c <= '`') || (c >= ' ' && c <= '&') ||
         (c >= '(' && c <= '+') || (c >= ':' && c <= '@') || c == '/';
}

static int isdig(unsigned char c) {
  return c >= '0' && c <= '9';
}

char *met_tok13a(const char *s) {
  size_t len = strlen(s);
  /* Language-independent part: "<skipped>" and "-\n" go, "\n" becomes a
   * space, four HTML entities are decoded. */
  char *a = malloc(len + 3);
  if (!a)
    return NULL;
  size_t o = 0;
  a[o++] = ' ';
  for (size_t i = 0; i < len;) {
    if (strncmp(s + i, "<skipped>", 9) == 0) {
      i += 9;
    } else if (s[i] == '-' && s[i + 1] == '\n') {
      i += 2;
    } else if (s[i] == '\n') {
      a[o++] = ' ';
      i++;
    } else {
      a[o++] = s[i++];
    }
  }
  a[o++] = ' ';
  a[o] = '\0';
  if (strchr(a, '&')) {
    static const char *ent[][2] = {{"&quot;", "\""}, {"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"}};
    for (int e = 0; e < 4; e++) { /* one entity at a time over the whole line, like str.replace */
      size_t w = 0, el = strlen(ent[e][0]);
      for (size_t i = 0; a[i];) {
        if (strncmp(a + i, ent[e][0], el) == 0) {
          a[w++] = ent[e][1][0];
          i += el;
        } else {
          a[w++] = a[i++];
        }
      }
      a[w] = '\0';
    }
  }
  len = strlen(a);
  /* Each pass at most triples the length. */
  char *b = malloc(len * 3 + 1), *c = malloc(len * 9 + 1);
  if (!b || !c) {
    free(a), free(b), free(c);
    return NULL;
  }
  /* 1: ([\{-\~\[-\` -\&\(-\+\:-\@\/]) -> " \1 " */
  o = 0;
  for (size_t i = 0; a[i]; i++) {
    if (is_13a_punct((unsigned char)a[i])) {
      b[o++] = ' ', b[o++] = a[i], b[o++] = ' ';
    } else {
      b[o++] = a[i];
    }
  }
  b[o] = '\0';
  /* 2: ([^0-9])([\.,]) -> "\1 \2 " */
  o = 0;
  for (size_t i = 0; b[i];) {
    if (b[i + 1] && !isdig((unsigned char)b[i]) && (b[i + 1] == '.' || b[i + 1] == ',')) {
      c[o++] = b[i], c[o++] = ' ', c[o++] = b[i + 1], c[o++] = ' ';
      i += 2;
    } else {
      c[o++] = b[i++];
    }
  }
  c[o] = '\0';
  /* 3: ([\.,])([^0-9]) -> " \1 \2" */
  char *d = malloc(o * 3 + 1);
  if (!d) {
    free(a), free(b), free(c);
    return NULL;
  }
  o = 0;
  for (size_t i = 0; c[i];) {
    if ((c[i] == '.' || c[i] == ',') && c[i + 1] && !isdig((unsigned char)c[i + 1])) {
      d[o++] = ' ', d[o++] = c[i], d[o++] = c[i + 1];
      i += 2;
    } else {
      d[o++] = c[i++];
    }
  }
  d[o] = '\0';
  /* 4: ([0-9])(-) -> "\1 \2 " */
  char *e = malloc(o * 3 + 1);
  if (!e) {
    free(a), free(b), free(c), free(d);
    return NULL;
  }
  o = 0;
  for (size_t i = 0; d[i];) {
    if (isdig((unsigned char)d[i]) && d[i + 1] == '-') {
      e[o++] = d[i], e[o++] = ' ', e[o++] = '-', e[o++] = ' ';
      i += 2;
    } else {
      e[o++] = d[i++];
    }
  }
  e[o] = '\0';
  /* ' '.join(line.split()): ASCII whitespace (and \x1c-\x1f, which Python's
   * str.split also splits on). */
  free(a);
  a = malloc(o + 1);
  if (!a) {
    free(b), free(c), free(d), free(e);
    return NULL;
  }
  size_t w = 0;
  int pending = 0;
  for (size_t i = 0; e[i]; i++) {
    unsigned char ch = (unsigned char)e[i];
    int ws = ch == ' ' || (ch >= '\t' && ch <= '\r') || (ch >= 0x1c && ch <= 0x1f);
    if (ws) {
      pending = w > 0;
    } else {
      if (pending)
        a[w++] = ' ';
      pending = 0;
      a[w++] = (char)ch;
    }
  }
  a[w] = '\0';
  free(b), free(c), free(d), free(e);
  return a;
}

size_t met_rouge_tokens(const char *s, int stem, met_vocab *v, uint32_t **ids) {
  size_t len = strlen(s), n = 0;
  uint32_t *out = malloc((len / 2 + 1) * sizeof *out);
  char *low = met_lower_str(s, len, NULL);
  if (!out || !low) {
    free(out), free(low);
    return (size_t)-1;
  }
  for (size_t i = 0; low[i];) {
    unsigned char ch = (unsigned char)low[i];
    if (!((ch >= 'a' && ch <= 'z') || isdig(ch))) {
      i++;
      continue;
    }
    size_t j = i;
    while ((low[j] >= 'a' && low[j] <= 'z') || isdig((unsigned char)low[j]))
      j++;
    uint32_t id;
    if (stem && j - i > 3) {
      char save = low[j];
      low[j] = '\0';
      char *st = met_porter_stem(low + i);
      low[j] = save;
      if (!st) {
        free(out), free(low);
        return (size_t)-1;
      }
      id = met_vocab_intern(v, st, strlen(st));
      free(st);
    } else {
      id = met_vocab_intern(v, low + i, j - i);
    }
    if (id == UINT32_MAX) {
      free(out), free(low);
      return (size_t)-1;
    }
    out[n++] = id;
    i = j;
  }
  free(low);
  *ids = out;
  return n;
}
