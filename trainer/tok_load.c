/* Loading GPT-2 tokenizers: OpenAI's encoder.json + vocab.bpe, Hugging
 * Face's vocab.json + merges.txt and tokenizer.json. */
#include "trainer/tok_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ------------------------------------------------------ byte alphabet */

void tok_byte_tables(uint32_t byte_cp[256], uint8_t byte_order[256]) {
  /* encoder.py's bytes_to_unicode: printable bytes keep their code point,
   * the rest take 256, 257, ... in byte order; ids follow the list order. */
  int n = 0, extra = 0;
  int printable[256] = {0};
  for (int b = '!'; b <= '~'; b++)
    printable[b] = 1;
  for (int b = 0xA1; b <= 0xAC; b++)
    printable[b] = 1;
  for (int b = 0xAE; b <= 0xFF; b++)
    printable[b] = 1;
  for (int b = 0; b < 256; b++)
    if (printable[b]) {
      byte_cp[b] = (uint32_t)b;
      byte_order[n++] = (uint8_t)b;
    }
  for (int b = 0; b < 256; b++)
    if (!printable[b]) {
      byte_cp[b] = 256u + (uint32_t)extra++;
      byte_order[n++] = (uint8_t)b;
    }
}

static int cp_to_byte[324];
static uint32_t byte_cp_tab[256];
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void init_tables(void) {
  uint8_t order[256];
  uint32_t cp[256];
  tok_byte_tables(cp, order);
  for (int i = 0; i < 324; i++)
    cp_to_byte[i] = -1;
  for (int b = 0; b < 256; b++) {
    cp_to_byte[cp[b]] = b;
    byte_cp_tab[b] = cp[b];
  }
}

static void ensure_tables(void) {
  pthread_once(&tables_once, init_tables);
}

long tok_string_to_bytes(const char *s, size_t len, char *out) {
  ensure_tables();
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  long n = 0;
  while (i < len) {
    uint32_t c;
    if (p[i] < 0x80) {
      c = p[i++];
    } else if ((p[i] & 0xE0) == 0xC0 && i + 1 < len && (p[i + 1] & 0xC0) == 0x80) {
      c = ((uint32_t)(p[i] & 0x1F) << 6) | (p[i + 1] & 0x3F);
      i += 2;
    } else {
      return -1; /* the alphabet ends at U+0143: two bytes at most */
    }
    if (c >= 324 || cp_to_byte[c] < 0)
      return -1;
    out[n++] = (char)cp_to_byte[c];
  }
  return n;
}

size_t tok_bytes_to_string(const char *bytes, size_t n, char *out) {
  ensure_tables();
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t c = byte_cp_tab[(unsigned char)bytes[i]];
    if (c < 0x80) {
      out[k++] = (char)c;
    } else {
      out[k++] = (char)(0xC0 | (c >> 6));
      out[k++] = (char)(0x80 | (c & 0x3F));
    }
  }
  out[k] = '\0';
  return k;
}

/* --------------------------------------------------------- string map */

uint64_t tok_hash_bytes(const char *s, size_t n) {
  /* FNV-1a, then a final mix; never 0 (0 marks an empty slot). */
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)s[i];
    h *= 0x100000001b3ull;
  }
  h ^= h >> 29;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 32;
  return h ? h : 1;
}

static int strmap_grow(tok_strmap *m) {
  size_t ncap = m->cap ? m->cap * 2 : 1024;
  uint64_t *h = calloc(ncap, sizeof *h);
  uint32_t *ko = malloc(ncap * sizeof *ko), *kl = malloc(ncap * sizeof *kl);
  int64_t *v = malloc(ncap * sizeof *v);
  if (!h || !ko || !kl || !v) {
    free(h);
    free(ko);
    free(kl);
    free(v);
    return -1;
  }
  for (size_t i = 0; i < m->cap; i++) {
    if (!m->hash[i])
      continue;
    size_t j = (size_t)m->hash[i] & (ncap - 1);
    while (h[j])
      j = (j + 1) & (ncap - 1);
    h[j] = m->hash[i];
    ko[j] = m->key_off[i];
    kl[j] = m->key_len[i];
    v[j] = m->val[i];
  }
  free(m->hash);
  free(m->key_off);
  free(m->key_len);
  free(m->val);
  m->hash = h;
  m->key_off = ko;
  m->key_len = kl;
  m->val = v;
  m->cap = ncap;
  return 0;
}

int64_t *tok_strmap_get(const tok_strmap *m, const char *key, size_t n) {
  if (!m->cap)
    return NULL;
  uint64_t h = tok_hash_bytes(key, n);
  size_t j = (size_t)h & (m->cap - 1);
  while (m->hash[j]) {
    /* an empty key has no bytes in the arena, which stays NULL while every
     * key is empty (NULL + 0 is undefined) */
    if (m->hash[j] == h && m->key_len[j] == n &&
        (n == 0 || !memcmp(m->arena + m->key_off[j], key, n)))
      return &m->val[j];
    j = (j + 1) & (m->cap - 1);
  }
  return NULL;
}

int64_t *tok_strmap_put(tok_strmap *m, const char *key, size_t n, int64_t val0, int *inserted) {
  *inserted = 0;
  int64_t *v = tok_strmap_get(m, key, n);
  if (v)
    return v;
  if ((m->n + 1) * 2 > m->cap && strmap_grow(m))
    return NULL;
  if (m->arena_len + n > m->arena_cap) {
    size_t ncap = (m->arena_len + n) * 2 + 4096;
    if (ncap > UINT32_MAX)
      return NULL;
    char *a = realloc(m->arena, ncap);
    if (!a)
      return NULL;
    m->arena = a;
    m->arena_cap = ncap;
  }
  if (n)
    memcpy(m->arena + m->arena_len, key, n);
  uint64_t h = tok_hash_bytes(key, n);
  size_t j = (size_t)h & (m->cap - 1);
  while (m->hash[j])
    j = (j + 1) & (m->cap - 1);
  m->hash[j] = h;
  m->key_off[j] = (uint32_t)m->arena_len;
  m->key_len[j] = (uint32_t)n;
  m->val[j] = val0;
  m->arena_len += n;
  m->n++;
  *inserted = 1;
  return &m->val[j];
}

void tok_strmap_free(tok_strmap *m) {
  free(m->hash);
  free(m->key_off);
  free(m->key_len);
  free(m->val);
  free(m->arena);
  memset(m, 0, sizeof *m);
}

/* ----------------------------------------------------------- building */

#define TOK_MAX_ID (1 << 24)

tok_tokenizer *tok_alloc(void) {
  tok_tokenizer *t = calloc(1, sizeof *t);
  if (t)
    t->eot = -1;
  return t;
}

/* A printable rendering of a token string for messages. */
static const char *show(const char *s, size_t len, char *buf, size_t n) {
  size_t k = 0;
  for (size_t i = 0; i < len && k + 5 < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7f)
      k += (size_t)snprintf(buf + k, n - k, "\\x%02x", c);
    else
      buf[k++] = (char)c;
  }
  buf[k] = '\0';
  return buf;
}

int tok_add_token(tok_tokenizer *t, const char *s, size_t len, long long id, const char *where,
                  dfpo_err *err) {
  char shown[128];
  if (id < 0 || id >= TOK_MAX_ID)
    return dfpo_err_set(err, DFPO_EDATA, "%s: token \"%s\" has id %lld, outside 0..%d", where,
                        show(s, len, shown, sizeof shown), id, TOK_MAX_ID - 1);
  char *bytes = malloc(len + 1);
  if (!bytes)
    return dfpo_err_set(err, DFPO_ERUNTIME, "%s: out of memory", where);
  long n = tok_string_to_bytes(s, len, bytes);
  if (n < 0) {
    free(bytes);
    return dfpo_err_set(err, DFPO_EDATA,
                        "%s: token \"%s\" (id %lld) has a character outside GPT-2's byte "
                        "alphabet",
                        where, show(s, len, shown, sizeof shown), id);
  }
  if ((size_t)id >= t->ids_cap) {
    /* geometric growth: vocabularies arrive in id order, one at a time; two
     * arrays, one capacity: each grows from the same old one */
    size_t ncap = t->ids_cap, cl = t->ids_cap;
    int rc;
    if ((rc = dfpo_grow(&t->tok_bytes, &ncap, (size_t)id + 1, sizeof *t->tok_bytes, 1024,
                        DFPO_NOCAP, err)) ||
        (rc = dfpo_grow(&t->tok_len, &cl, (size_t)id + 1, sizeof *t->tok_len, 1024, DFPO_NOCAP,
                        err))) {
      free(bytes);
      dfpo_err_prefix(err, "%s", where);
      return rc;
    }
    for (size_t i = t->ids_cap; i < ncap; i++) {
      t->tok_bytes[i] = NULL;
      t->tok_len[i] = 0;
    }
    t->ids_cap = ncap;
  }
  if ((size_t)id >= t->n_ids)
    t->n_ids = (size_t)id + 1;
  if (t->tok_bytes[id]) {
    free(bytes);
    return dfpo_err_set(err, DFPO_EDATA, "%s: id %lld is given to two tokens (\"%s\" and another)",
                        where, id, show(s, len, shown, sizeof shown));
  }
  int inserted;
  int64_t *v = tok_strmap_put(&t->vocab, bytes, (size_t)n, id, &inserted);
  if (!v) {
    free(bytes);
    return dfpo_err_set(err, DFPO_ERUNTIME, "%s: out of memory", where);
  }
  if (!inserted) {
    free(bytes);
    return dfpo_err_set(err, DFPO_EDATA, "%s: token \"%s\" appears twice", where,
                        show(s, len, shown, sizeof shown));
  }
  t->tok_bytes[id] = bytes;
  t->tok_len[id] = (uint32_t)n;
  return DFPO_OK;
}

int tok_finish_vocab(tok_tokenizer *t, const char *where, dfpo_err *err) {
  for (int b = 0; b < 256; b++) {
    char c = (char)b;
    int64_t *v = tok_strmap_get(&t->vocab, &c, 1);
    if (!v) {
      char s[3];
      tok_bytes_to_string(&c, 1, s);
      return dfpo_err_set(err, DFPO_EDATA,
                          "%s: the vocabulary lacks the byte token \"%s\" (byte 0x%02x); a "
                          "byte-level BPE needs all 256",
                          where, s, b);
    }
    t->byte_id[b] = (int32_t)*v;
  }
  static const char eot[] = "<|endoftext|>";
  int64_t *v = tok_strmap_get(&t->vocab, eot, sizeof eot - 1);
  if (v) {
    t->eot = (int32_t)*v;
    return tok_add_special(t, eot, sizeof eot - 1, t->eot, err);
  }
  return DFPO_OK;
}

int tok_add_special(tok_tokenizer *t, const char *s, size_t len, int32_t id, dfpo_err *err) {
  for (size_t i = 0; i < t->n_special; i++)
    if (t->special[i].len == len && !memcmp(t->special[i].text, s, len))
      return DFPO_OK;
  if (!len)
    return DFPO_OK;
  tok_special *sp = realloc(t->special, (t->n_special + 1) * sizeof *sp);
  if (!sp)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  t->special = sp;
  char *copy = malloc(len + 1);
  if (!copy)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  memcpy(copy, s, len);
  copy[len] = '\0';
  sp[t->n_special].text = copy;
  sp[t->n_special].len = len;
  sp[t->n_special].id = id;
  t->n_special++;
  return DFPO_OK;
}

static int merge_table_grow(tok_tokenizer *t) {
  size_t ncap = t->mcap ? t->mcap * 2 : 4096;
  uint64_t *k = malloc(ncap * sizeof *k), *v = calloc(ncap, sizeof *v);
  if (!k || !v) {
    free(k);
    free(v);
    return -1;
  }
  for (size_t i = 0; i < t->mcap; i++) {
    if (!t->mval[i])
      continue;
    size_t j = (size_t)((t->mkey[i] * 0x9E3779B97F4A7C15ull) >> 32) & (ncap - 1);
    while (v[j])
      j = (j + 1) & (ncap - 1);
    k[j] = t->mkey[i];
    v[j] = t->mval[i];
  }
  free(t->mkey);
  free(t->mval);
  t->mkey = k;
  t->mval = v;
  t->mcap = ncap;
  return 0;
}

int tok_add_merge(tok_tokenizer *t, const char *left, size_t llen, const char *right, size_t rlen,
                  const char *where, dfpo_err *err) {
  char shown[128];
  char *buf = malloc(llen + rlen + 1);
  if (!buf)
    return dfpo_err_set(err, DFPO_ERUNTIME, "%s: out of memory", where);
  long nl = tok_string_to_bytes(left, llen, buf);
  long nr = nl < 0 ? -1 : tok_string_to_bytes(right, rlen, buf + nl);
  int64_t *vl = nl < 0 ? NULL : tok_strmap_get(&t->vocab, buf, (size_t)nl);
  int64_t *vr = nr < 0 ? NULL : tok_strmap_get(&t->vocab, buf + nl, (size_t)nr);
  int64_t *vm = vl && vr ? tok_strmap_get(&t->vocab, buf, (size_t)(nl + nr)) : NULL;
  free(buf);
  if (!vl)
    return dfpo_err_set(err, DFPO_EDATA, "%s: merge names unknown symbol \"%s\"", where,
                        show(left, llen, shown, sizeof shown));
  if (!vr)
    return dfpo_err_set(err, DFPO_EDATA, "%s: merge names unknown symbol \"%s\"", where,
                        show(right, rlen, shown, sizeof shown));
  if (!vm) {
    char joined[256];
    snprintf(joined, sizeof joined, "%.*s%.*s", (int)(llen > 100 ? 100 : llen), left,
             (int)(rlen > 100 ? 100 : rlen), right);
    return dfpo_err_set(err, DFPO_EDATA, "%s: merge result \"%s\" is not in the vocabulary", where,
                        show(joined, strlen(joined), shown, sizeof shown));
  }
  if ((t->n_merges + 1) * 2 > t->mcap && merge_table_grow(t))
    return dfpo_err_set(err, DFPO_ERUNTIME, "%s: out of memory", where);
  uint64_t k = ((uint64_t)(uint32_t)*vl << 32) | (uint32_t)*vr;
  size_t j = (size_t)((k * 0x9E3779B97F4A7C15ull) >> 32) & (t->mcap - 1);
  while (t->mval[j]) {
    if (t->mkey[j] == k)
      return dfpo_err_set(err, DFPO_EDATA, "%s: duplicate merge \"%s %.*s\"", where,
                          show(left, llen, shown, sizeof shown), (int)rlen, right);
    j = (j + 1) & (t->mcap - 1);
  }
  t->mkey[j] = k;
  t->mval[j] = ((uint64_t)(t->n_merges + 1) << 32) | (uint32_t)*vm;
  t->n_merges++;
  return DFPO_OK;
}

int tok_finish(tok_tokenizer *t, const char *where, dfpo_err *err) {
  if (!t->mcap && merge_table_grow(t))
    return dfpo_err_set(err, DFPO_ERUNTIME, "%s: out of memory", where);
  return tok_regex_init(&t->re, err);
}

/* --------------------------------------------------------------- JSON */

/* Parses a whole JSON file; errors name the file, line and column. */
static int parse_json(const char *path, cJSON **doc, char **text_out, dfpo_err *err) {
  char *text;
  size_t len;
  int rc = dfpo_read_file(path, &text, &len, err);
  if (rc)
    return rc;
  long nul = dfpo_json_nul_escape(text, len);
  if (nul >= 0) {
    int line, col;
    dfpo_text_position(text, (size_t)nul, &line, &col);
    free(text);
    return dfpo_err_set(err, DFPO_EDATA,
                        "%s:%d:%d: \\u0000 in a string: a token cannot hold a NUL escaped this "
                        "way",
                        path, line, col);
  }
  const char *end = NULL;
  *doc = cJSON_ParseWithLengthOpts(text, len, &end, 0);
  if (!*doc) {
    size_t pos = end && end >= text && end <= text + len ? (size_t)(end - text) : len;
    size_t p = pos;
    while (p < len && (text[p] == ' ' || text[p] == '\n' || text[p] == '\r' || text[p] == '\t'))
      p++;
    int at_eof = p >= len;
    int line, col;
    dfpo_text_position(text, at_eof ? len : pos, &line, &col);
    free(text);
    return dfpo_err_set(err, DFPO_EDATA, "%s:%d:%d: malformed JSON%s", path, line, col,
                        at_eof ? " (unexpected end of file)" : "");
  }
  *text_out = text;
  return DFPO_OK;
}

/* The line of the first occurrence of item's JSON text after `from` in the
 * file, or 0 when it cannot be found verbatim (the file escapes it
 * differently). Used only for messages. */
static int json_line(const char *text, const char *from, const cJSON *item) {
  char *s = cJSON_PrintUnformatted(item);
  int line = 0;
  if (s) {
    const char *at = strstr(from ? from : text, s);
    if (at) {
      int col;
      dfpo_text_position(text, (size_t)(at - text), &line, &col);
    }
    free(s);
  }
  return line;
}

/* x as an integer id in *id: 0, or -1 when x is not a JSON number with an
 * integer value of at most 2^53 in magnitude (casting 1e300 would be
 * undefined); the range of ids is tok_add_token's to check. */
static int json_id(const cJSON *x, long long *id) {
  if (!cJSON_IsNumber(x))
    return -1;
  double d = x->valuedouble;
  if (d != floor(d) || fabs(d) > 9007199254740992.0)
    return -1;
  *id = (long long)d;
  return 0;
}

static int add_vocab_object(tok_tokenizer *t, const cJSON *obj, const char *path, const char *text,
                            const char *jpath, dfpo_err *err) {
  if (!cJSON_IsObject(obj))
    return dfpo_err_set(err, DFPO_EDATA, "%s: %s must be a JSON object of token -> id", path,
                        jpath);
  for (const cJSON *it = obj->child; it; it = it->next) {
    long long d;
    if (json_id(it, &d)) {
      char where[512];
      int line = json_line(text, NULL, it);
      snprintf(where, sizeof where, "%s:%d", path, line);
      return dfpo_err_set(err, DFPO_EDATA, "%s: %s[\"%s\"] must be an integer id", where, jpath,
                          it->string);
    }
    char where[512];
    snprintf(where, sizeof where, "%s: %s", path, jpath);
    int rc = tok_add_token(t, it->string, strlen(it->string), d, where, err);
    if (rc)
      return rc;
  }
  return DFPO_OK;
}

/* ------------------------------------------------------------- merges */

static int add_merges_text(tok_tokenizer *t, const char *path, const char *text, size_t len,
                           dfpo_err *err) {
  size_t pos = 0;
  int line = 0;
  /* an empty file is a failed download or copy, not a tokenizer: even one
   * without merges has its "#version" line (tok_save writes it) */
  size_t p0 = 0;
  while (p0 < len && (text[p0] == ' ' || text[p0] == '\n' || text[p0] == '\r' || text[p0] == '\t'))
    p0++;
  if (p0 == len)
    return dfpo_err_set(err, DFPO_EDATA,
                        "%s: empty; a merges file has at least its \"#version\" line", path);
  while (pos < len) {
    size_t e = pos;
    while (e < len && text[e] != '\n')
      e++;
    line++;
    size_t l = e - pos;
    const char *s = text + pos;
    pos = e + 1;
    if (l && s[l - 1] == '\r')
      l--;
    if (!l || (line == 1 && l >= 8 && !memcmp(s, "#version", 8)))
      continue;
    char where[512];
    snprintf(where, sizeof where, "%s:%d", path, line);
    const char *sp = memchr(s, ' ', l);
    if (!sp || sp == s || sp == s + l - 1 || memchr(sp + 1, ' ', (size_t)(s + l - sp - 1)))
      return dfpo_err_set(err, DFPO_EDATA,
                          "%s: a merge is two symbols separated by one space, got \"%.*s\"", where,
                          (int)(l > 80 ? 80 : l), s);
    int rc = tok_add_merge(t, s, (size_t)(sp - s), sp + 1, (size_t)(s + l - sp - 1), where, err);
    if (rc)
      return rc;
  }
  return DFPO_OK;
}

/* ------------------------------------------------------------ loaders */

int tok_load_files(tok_tokenizer **out, const char *vocab_json, const char *merges, dfpo_err *err) {
  *out = NULL;
  tok_tokenizer *t = tok_alloc();
  if (!t)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  cJSON *doc = NULL;
  char *text = NULL, *mtext = NULL;
  size_t mlen;
  int rc = parse_json(vocab_json, &doc, &text, err);
  if (!rc)
    rc = add_vocab_object(t, doc, vocab_json, text, "the top-level object", err);
  if (!rc)
    rc = tok_finish_vocab(t, vocab_json, err);
  if (!rc)
    rc = dfpo_read_file(merges, &mtext, &mlen, err);
  if (!rc)
    rc = add_merges_text(t, merges, mtext, mlen, err);
  if (!rc)
    rc = tok_finish(t, merges, err);
  cJSON_Delete(doc);
  free(text);
  free(mtext);
  if (rc) {
    tok_free(t);
    return rc;
  }
  *out = t;
  return DFPO_OK;
}

static int add_json_merge(tok_tokenizer *t, const cJSON *m, const char *where, dfpo_err *err) {
  if (cJSON_IsString(m)) {
    /* older files: "left right" */
    const char *s = m->valuestring, *sp = strchr(s, ' ');
    if (!sp || sp == s || !sp[1] || strchr(sp + 1, ' '))
      return dfpo_err_set(err, DFPO_EDATA, "%s: a merge is two symbols separated by one space",
                          where);
    return tok_add_merge(t, s, (size_t)(sp - s), sp + 1, strlen(sp + 1), where, err);
  }
  if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) &&
      cJSON_IsString(m->child->next)) {
    /* newer files: ["left", "right"] */
    const char *l = m->child->valuestring, *r = m->child->next->valuestring;
    return tok_add_merge(t, l, strlen(l), r, strlen(r), where, err);
  }
  return dfpo_err_set(err, DFPO_EDATA, "%s: a merge is \"left right\" or [\"left\", \"right\"]",
                      where);
}

int tok_load_hf_json(tok_tokenizer **out, const char *path, dfpo_err *err) {
  *out = NULL;
  tok_tokenizer *t = tok_alloc();
  if (!t)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  cJSON *doc = NULL;
  char *text = NULL;
  int rc = parse_json(path, &doc, &text, err);
  const cJSON *model = rc ? NULL : cJSON_GetObjectItemCaseSensitive(doc, "model");
  if (!rc && !cJSON_IsObject(model))
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: no \"model\" object", path);
  if (!rc) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (cJSON_IsString(type) && strcmp(type->valuestring, "BPE"))
      rc = dfpo_err_set(err, DFPO_EDATA, "%s: model.type is \"%s\", not \"BPE\"", path,
                        type->valuestring);
  }
  if (!rc)
    rc = add_vocab_object(t, cJSON_GetObjectItemCaseSensitive(model, "vocab"), path, text,
                          "model.vocab", err);
  /* Added tokens: the special ones (GPT-2's <|endoftext|>) may be missing
   * from model.vocab. */
  const cJSON *added = rc ? NULL : cJSON_GetObjectItemCaseSensitive(doc, "added_tokens");
  for (const cJSON *a = cJSON_IsArray(added) ? added->child : NULL; a && !rc; a = a->next) {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(a, "content");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "id");
    long long idv;
    if (!cJSON_IsString(c) || json_id(id, &idv)) {
      rc = dfpo_err_set(err, DFPO_EDATA,
                        "%s: added_tokens entries need \"content\" and an integer \"id\"", path);
      break;
    }
    size_t n = strlen(c->valuestring);
    char *bytes = malloc(n + 1);
    long nb = bytes ? tok_string_to_bytes(c->valuestring, n, bytes) : -1;
    int64_t *v = nb >= 0 ? tok_strmap_get(&t->vocab, bytes, (size_t)nb) : NULL;
    free(bytes);
    if (!v)
      rc = tok_add_token(t, c->valuestring, n, idv, path, err);
    else if (*v != idv)
      rc = dfpo_err_set(err, DFPO_EDATA, "%s: added token \"%s\" has id %lld but model.vocab %lld",
                        path, c->valuestring, idv, (long long)*v);
  }
  if (!rc)
    rc = tok_finish_vocab(t, path, err);
  const cJSON *merges = rc ? NULL : cJSON_GetObjectItemCaseSensitive(model, "merges");
  if (!rc && !cJSON_IsArray(merges))
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: model.merges must be an array", path);
  const char *mstart = text ? strstr(text, "\"merges\"") : NULL;
  int i = 0;
  for (const cJSON *m = rc ? NULL : merges->child; m && !rc; m = m->next, i++) {
    char where[512];
    snprintf(where, sizeof where, "%s: model.merges[%d]", path, i);
    rc = add_json_merge(t, m, where, err);
    if (rc && rc != DFPO_ERUNTIME) {
      /* Only now look for the line: searching for every merge would make
       * loading quadratic. Redoing the failed call changes nothing. */
      int line = json_line(text, mstart, m);
      if (line) {
        snprintf(where, sizeof where, "%s:%d: model.merges[%d]", path, line, i);
        dfpo_err_clear(err);
        add_json_merge(t, m, where, err);
      }
    }
  }
  for (const cJSON *a = cJSON_IsArray(added) && !rc ? added->child : NULL; a && !rc; a = a->next) {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(a, "content");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "id");
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(a, "special");
    if (cJSON_IsTrue(sp)) {
      size_t n = strlen(c->valuestring);
      char *bytes = malloc(n + 1);
      long nb = bytes ? tok_string_to_bytes(c->valuestring, n, bytes) : -1;
      if (nb >= 0)
        rc = tok_add_special(t, bytes, (size_t)nb, (int32_t)id->valuedouble, err);
      free(bytes);
    }
  }
  if (!rc)
    rc = tok_finish(t, path, err);
  cJSON_Delete(doc);
  free(text);
  if (rc) {
    tok_free(t);
    return rc;
  }
  *out = t;
  return DFPO_OK;
}

static int is_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int tok_load(tok_tokenizer **out, const char *path, dfpo_err *err) {
  *out = NULL;
  struct stat st;
  if (stat(path, &st) != 0)
    return dfpo_err_errno(err, DFPO_EDATA, errno, "%s", path);
  if (!S_ISDIR(st.st_mode))
    return tok_load_hf_json(out, path, err);
  static const char *const pairs[][2] = {{"encoder.json", "vocab.bpe"},
                                         {"vocab.json", "merges.txt"}};
  size_t n = strlen(path) + 32;
  char *a = malloc(n), *b = malloc(n);
  if (!a || !b) {
    free(a);
    free(b);
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  }
  int rc = -1;
  for (int i = 0; i < 2 && rc < 0; i++) {
    snprintf(a, n, "%s/%s", path, pairs[i][0]);
    snprintf(b, n, "%s/%s", path, pairs[i][1]);
    if (is_file(a) || is_file(b))
      rc = tok_load_files(out, a, b, err); /* a missing half is named by the loader */
  }
  if (rc < 0) {
    snprintf(a, n, "%s/tokenizer.json", path);
    snprintf(b, n, "%s/spiece.model", path);
    int llama = 0;
    if (!is_file(b)) {
      snprintf(b, n, "%s/tokenizer.model", path);
      llama = 1;
    }
    /* T5's SentencePiece (its tokenizer.json is a Unigram), Llama's (its
     * tokenizer.json a BPE with byte fallback, not GPT-2's byte level) */
    if (is_file(b))
      rc = tok_spm_load_dir(out, path, llama, err);
    else if (is_file(a))
      rc = tok_load_hf_json(out, a, err);
    else
      rc = dfpo_err_set(err, DFPO_EDATA,
                        "%s: no tokenizer files (expected encoder.json + vocab.bpe, vocab.json + "
                        "merges.txt, spiece.model, tokenizer.model or tokenizer.json)",
                        path);
  }
  free(a);
  free(b);
  return rc;
}

size_t tok_vocab_size(const tok_tokenizer *t) {
  return t->n_ids;
}
int32_t tok_token_id(const tok_tokenizer *t, const char *s, size_t len) {
  int64_t *v = tok_strmap_get(&t->vocab, s, len);
  return v ? (int32_t)*v : -1;
}
size_t tok_merge_count(const tok_tokenizer *t) {
  return t->n_merges;
}
int32_t tok_eot_id(const tok_tokenizer *t) {
  return t->eot;
}
int32_t tok_bos_id(const tok_tokenizer *t) {
  return t->spm && t->spm_llama && t->spm_add_bos ? t->spm_bos : -1;
}
int32_t tok_bos_token_id(const tok_tokenizer *t) {
  return t->spm && t->spm_llama ? t->spm_bos : -1;
}

const char *tok_token_bytes(const tok_tokenizer *t, int32_t id, size_t *len) {
  if (id < 0 || (size_t)id >= t->n_ids || !t->tok_bytes[id])
    return NULL;
  if (len)
    *len = t->tok_len[id];
  return t->tok_bytes[id];
}
