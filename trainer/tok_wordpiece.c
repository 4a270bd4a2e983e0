/* BERT's WordPiece tokenizer (tok.h says what it does, step by step), with
 * ICU for the Unicode data: categories (u_charType), white space
 * (u_isUWhiteSpace), NFD (unorm2) and full lower-case mappings
 * (u_strToLower). */
#include "trainer/tok_internal.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>
#include <unicode/utf16.h>
#include <unicode/utf8.h>

#define WP_MAX_WORD 100 /* characters; longer words are unk (max_input_chars_per_word) */

struct tok_wordpiece {
  tok_strmap vocab; /* token -> id */
  char **tokens;    /* [n_ids], NULL for gaps (tokenizer.json may skip ids) */
  size_t n_ids;
  int32_t unk;
  int lowercase, strip_accents;
};

void tok_wp_free(tok_wordpiece *w) {
  if (!w)
    return;
  for (size_t i = 0; i < w->n_ids; i++)
    free(w->tokens[i]);
  free(w->tokens);
  tok_strmap_free(&w->vocab);
  free(w);
}

/* A tokenizer with room for n_ids ids (all gaps so far). NULL: out of
 * memory. */
static tok_wordpiece *wp_new(size_t n_ids, int lowercase, int strip_accents) {
  tok_wordpiece *w = calloc(1, sizeof *w);
  if (w)
    w->tokens = calloc(n_ids ? n_ids : 1, sizeof *w->tokens);
  if (!w || !w->tokens) {
    tok_wp_free(w);
    return NULL;
  }
  w->n_ids = n_ids;
  w->lowercase = lowercase;
  w->strip_accents = strip_accents;
  return w;
}

/* Gives token tok[0..n) the id `id` (< n_ids, not yet taken); a token that
 * is already there takes the new id, as a Python dict keeps the later
 * value. -1: out of memory. */
static int wp_add(tok_wordpiece *w, const char *tok, size_t n, size_t id) {
  int inserted;
  int64_t *v = tok_strmap_put(&w->vocab, tok, n, (int64_t)id, &inserted);
  char *copy = malloc(n + 1);
  if (!v || !copy) {
    free(copy);
    return -1;
  }
  *v = (int64_t)id;
  memcpy(copy, tok, n);
  copy[n] = 0;
  w->tokens[id] = copy;
  return 0;
}

/* Looks up unk and hands w to *out, or frees it. */
static int wp_finish(tok_wordpiece **out, tok_wordpiece *w, const char *path, const char *unk,
                     dfpo_err *err) {
  w->unk = tok_wp_id(w, unk);
  if (w->unk < 0) {
    tok_wp_free(w);
    return dfpo_err_set(err, DFPO_EDATA, "%s: the vocabulary lacks the unknown token \"%s\"", path,
                        unk);
  }
  *out = w;
  return DFPO_OK;
}

int tok_wp_load(tok_wordpiece **out, const char *vocab_txt, int lowercase, int strip_accents,
                const char *unk, dfpo_err *err) {
  *out = NULL;
  char *text = NULL;
  size_t len = 0;
  int rc = dfpo_read_file(vocab_txt, &text, &len, err);
  if (rc)
    return rc;
  /* Lines end at "\r\n", "\r" or "\n", as Python's text mode reads them
   * (transformers' load_vocab: readlines, then rstrip("\n")), so a CRLF
   * file gives the tokens an LF one does. */
  size_t lines = 0;
  for (size_t at = 0; at < len; lines++) {
    size_t e = at;
    while (e < len && text[e] != '\n' && text[e] != '\r')
      e++;
    at = e + (e + 1 < len && text[e] == '\r' && text[e + 1] == '\n' ? 2 : 1);
  }
  tok_wordpiece *w = wp_new(lines, lowercase, strip_accents);
  if (!w) {
    free(text);
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  }
  size_t line = 0;
  for (size_t at = 0; at < len; line++) {
    size_t e = at;
    while (e < len && text[e] != '\n' && text[e] != '\r')
      e++;
    if (wp_add(w, text + at, e - at, line)) {
      free(text);
      tok_wp_free(w);
      return dfpo_err_set(err, DFPO_ERUNTIME, "%s:%zu: out of memory", vocab_txt, line + 1);
    }
    at = e + (e + 1 < len && text[e] == '\r' && text[e + 1] == '\n' ? 2 : 1);
  }
  free(text);
  return wp_finish(out, w, vocab_txt, unk, err);
}

int tok_wp_load_json(tok_wordpiece **out, const char *tokenizer_json, int lowercase,
                     int strip_accents, dfpo_err *err) {
  *out = NULL;
  char *text = NULL;
  size_t len = 0;
  int rc = dfpo_read_file(tokenizer_json, &text, &len, err);
  if (rc)
    return rc;
  cJSON *root = cJSON_ParseWithLength(text, len);
  free(text);
  if (!root)
    return dfpo_err_set(err, DFPO_EDATA, "%s: not JSON", tokenizer_json);
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
  const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
  const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
  const cJSON *pre = cJSON_GetObjectItemCaseSensitive(model, "continuing_subword_prefix");
  const cJSON *maxc = cJSON_GetObjectItemCaseSensitive(model, "max_input_chars_per_word");
  const char *bad = NULL;
  if (!cJSON_IsString(type) || strcmp(type->valuestring, "WordPiece"))
    bad = "model.type is not \"WordPiece\"";
  else if (!cJSON_IsObject(vocab))
    bad = "model.vocab is not an object";
  else if (!cJSON_IsString(unk))
    bad = "model.unk_token is not a string";
  else if (pre && !cJSON_IsNull(pre) && (!cJSON_IsString(pre) || strcmp(pre->valuestring, "##")))
    bad = "model.continuing_subword_prefix is not \"##\" (the only one supported)";
  else if (maxc && !cJSON_IsNull(maxc) &&
           (!cJSON_IsNumber(maxc) || maxc->valuedouble != WP_MAX_WORD))
    bad = "model.max_input_chars_per_word is not 100 (the only one supported)";
  /* the ids: whole numbers from 0, each once; gaps are allowed */
  double top = -1;
  const cJSON *e, *scan = bad ? NULL : vocab;
  cJSON_ArrayForEach(e, scan) {
    if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > 16777216.0 ||
        e->valuedouble != (double)(int64_t)e->valuedouble) {
      bad = "model.vocab has an id that is not a whole number from 0 to 2^24";
      break;
    }
    if (e->valuedouble > top)
      top = e->valuedouble;
  }
  if (bad) {
    cJSON_Delete(root);
    return dfpo_err_set(err, DFPO_EDATA, "%s: %s", tokenizer_json, bad);
  }
  tok_wordpiece *w = wp_new((size_t)(top + 1), lowercase, strip_accents);
  if (!w) {
    cJSON_Delete(root);
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  }
  cJSON_ArrayForEach(e, vocab) {
    size_t id = (size_t)e->valuedouble;
    if (w->tokens[id] || tok_strmap_get(&w->vocab, e->string, strlen(e->string))) {
      rc = dfpo_err_set(err, DFPO_EDATA, "%s: model.vocab: %s \"%s\" (id %zu) appears twice",
                        tokenizer_json, w->tokens[id] ? "the id of" : "the token", e->string, id);
      break;
    }
    if (wp_add(w, e->string, strlen(e->string), id)) {
      rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
      break;
    }
  }
  if (rc) {
    cJSON_Delete(root);
    tok_wp_free(w);
    return rc;
  }
  rc = wp_finish(out, w, tokenizer_json, unk->valuestring, err);
  cJSON_Delete(root);
  return rc;
}

size_t tok_wp_vocab_size(const tok_wordpiece *w) {
  return w->n_ids;
}

int32_t tok_wp_id(const tok_wordpiece *w, const char *token) {
  int64_t *v = tok_strmap_get(&w->vocab, token, strlen(token));
  return v ? (int32_t)*v : -1;
}

const char *tok_wp_token(const tok_wordpiece *w, int32_t id) {
  return id >= 0 && (size_t)id < w->n_ids ? w->tokens[id] : NULL;
}

/* A growable array of code points. */
typedef struct cps {
  UChar32 *c;
  size_t n, cap;
} cps;

static int cps_push(cps *a, UChar32 c) {
  if (a->n == a->cap) {
    size_t cap = a->cap ? a->cap * 2 : 256;
    UChar32 *p = realloc(a->c, cap * sizeof *p);
    if (!p)
      return -1;
    a->c = p;
    a->cap = cap;
  }
  a->c[a->n++] = c;
  return 0;
}

static int is_control(UChar32 c) {
  if (c == '\t' || c == '\n' || c == '\r')
    return 0;
  int t = u_charType(c);
  return t == U_CONTROL_CHAR || t == U_FORMAT_CHAR || t == U_UNASSIGNED ||
         t == U_PRIVATE_USE_CHAR || t == U_SURROGATE;
}

static int is_space(UChar32 c) {
  return c == '\t' || c == '\n' || c == '\r' || u_isUWhiteSpace(c);
}

static int is_punct(UChar32 c) {
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
      (c >= 123 && c <= 126))
    return 1;
  int t = u_charType(c);
  return t == U_CONNECTOR_PUNCTUATION || t == U_DASH_PUNCTUATION || t == U_START_PUNCTUATION ||
         t == U_END_PUNCTUATION || t == U_INITIAL_PUNCTUATION || t == U_FINAL_PUNCTUATION ||
         t == U_OTHER_PUNCTUATION;
}

static int is_cjk(UChar32 c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* UTF-16 of a[0..n) into a new buffer; *len its units. */
static UChar *to_utf16(const UChar32 *a, size_t n, int32_t *len) {
  UChar *u = malloc((2 * n + 1) * sizeof *u);
  if (!u)
    return NULL;
  int32_t k = 0;
  for (size_t i = 0; i < n; i++) {
    UBool bad = 0;
    U16_APPEND((UChar *)u, k, (int32_t)(2 * n + 1), a[i], bad);
    (void)bad;
  }
  *len = k;
  return u;
}

/* Appends the code points of u[0..n) to out, keeping those keep() accepts
 * (keep NULL: all). */
static int append_utf16(cps *out, const UChar *u, int32_t n, int drop_mn) {
  for (int32_t i = 0; i < n;) {
    UChar32 c;
    U16_NEXT(u, i, n, c);
    if (drop_mn && u_charType(c) == U_NON_SPACING_MARK)
      continue;
    if (cps_push(out, c))
      return -1;
  }
  return 0;
}

/* Steps 1-4 of tok.h: text -> normalised code points in *out. */
static int normalize(const tok_wordpiece *w, const char *text, size_t len, cps *out,
                     dfpo_err *err) {
  int rc = DFPO_OK;
  cps a = {0};
  UChar *u = NULL, *v = NULL;
  /* 1, 2: clean and space out CJK, decoding UTF-8 (invalid bytes: U+FFFD) */
  for (size_t i = 0; i < len;) {
    UChar32 c;
    U8_NEXT_OR_FFFD((const uint8_t *)text, i, len, c);
    if (c == 0 || c == 0xFFFD || is_control(c))
      continue;
    int bad = is_cjk(c) ? cps_push(&a, ' ') || cps_push(&a, c) || cps_push(&a, ' ')
                        : cps_push(&a, is_space(c) ? ' ' : c);
    if (bad)
      goto oom;
  }
  /* 3: NFD without non-spacing marks */
  if (w->strip_accents && a.n) {
    int32_t n16, m;
    UErrorCode st = U_ZERO_ERROR;
    const UNormalizer2 *nfd = unorm2_getNFDInstance(&st);
    if (!(u = to_utf16(a.c, a.n, &n16)))
      goto oom;
    m = unorm2_normalize(nfd, u, n16, NULL, 0, &st); /* preflight */
    if (st != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(st)) {
      rc = dfpo_err_set(err, DFPO_ERUNTIME, "ICU NFD: %s", u_errorName(st));
      goto done;
    }
    st = U_ZERO_ERROR;
    if (!(v = malloc(((size_t)m + 1) * sizeof *v)))
      goto oom;
    m = unorm2_normalize(nfd, u, n16, v, m + 1, &st);
    if (U_FAILURE(st)) {
      rc = dfpo_err_set(err, DFPO_ERUNTIME, "ICU NFD: %s", u_errorName(st));
      goto done;
    }
    a.n = 0;
    if (append_utf16(&a, v, m, 1))
      goto oom;
  }
  /* 4: each character's own full lower-case mapping */
  for (size_t i = 0; i < a.n; i++) {
    UChar32 c = a.c[i];
    if (!w->lowercase || c < 0x80) {
      if (cps_push(out, w->lowercase && c >= 'A' && c <= 'Z' ? c + 32 : c))
        goto oom;
      continue;
    }
    UChar one[2], low[8];
    int32_t k = 0;
    UBool bad = 0;
    U16_APPEND(one, k, 2, c, bad);
    (void)bad;
    UErrorCode st = U_ZERO_ERROR;
    int32_t m = u_strToLower(low, 8, one, k, "", &st);
    if (U_FAILURE(st) || append_utf16(out, U_SUCCESS(st) ? low : one, U_SUCCESS(st) ? m : k, 0))
      goto oom;
  }
  goto done;
oom:
  rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
done:
  free(a.c);
  free(u);
  free(v);
  return rc;
}

static int push_id(tok_ids *out, int32_t id) {
  if (out->n == out->cap) {
    size_t cap = out->cap ? out->cap * 2 : 64;
    int32_t *p = realloc(out->ids, cap * sizeof *p);
    if (!p)
      return -1;
    out->ids = p, out->cap = cap;
  }
  out->ids[out->n++] = id;
  return 0;
}

/* Step 6 for the word c[0..n): appends its pieces' ids (or unk). buf holds
 * "##" and then the word's UTF-8; off[i] is where character i starts in
 * the UTF-8, so "##" + the piece from character s is looked up in place by
 * writing "##" over the two bytes before it for the lookup. */
static int wordpiece(const tok_wordpiece *w, const UChar32 *c, size_t n, char *buf, size_t *off,
                     tok_ids *out) {
  if (n > WP_MAX_WORD)
    return push_id(out, w->unk);
  size_t b = 2;
  buf[0] = buf[1] = '#';
  for (size_t i = 0; i < n; i++) {
    off[i] = b - 2;
    UBool bad = 0;
    U8_APPEND((uint8_t *)buf, b, (size_t)4 * WP_MAX_WORD + 2, c[i], bad);
    (void)bad;
  }
  off[n] = b - 2;
  size_t first = out->n;
  for (size_t s = 0; s < n;) {
    size_t e = n;
    int64_t *id = NULL;
    for (; e > s && !id; e--) {
      if (s == 0) {
        id = tok_strmap_get(&w->vocab, buf + 2, off[e]);
      } else {
        char *at = buf + off[s], save0 = at[0], save1 = at[1];
        at[0] = at[1] = '#';
        id = tok_strmap_get(&w->vocab, at, off[e] - off[s] + 2);
        at[0] = save0, at[1] = save1;
      }
    }
    if (!id) { /* no piece from s: the whole word is unk */
      out->n = first;
      return push_id(out, w->unk);
    }
    if (push_id(out, (int32_t)*id))
      return -1;
    s = e + 1; /* the loop decremented e past the match */
  }
  return 0;
}

int tok_wp_encode(const tok_wordpiece *w, const char *text, size_t len, tok_ids *out,
                  dfpo_err *err) {
  cps a = {0};
  int rc = normalize(w, text, len, &a, err);
  if (rc)
    return rc;
  /* buf: "##" + up to 4 bytes per character; off: one entry per character */
  char buf[4 * WP_MAX_WORD + 8];
  size_t off[WP_MAX_WORD + 1];
  /* 5: words between spaces, each punctuation character a word of its own */
  for (size_t i = 0; i < a.n && !rc;) {
    if (is_space(a.c[i])) {
      i++;
      continue;
    }
    size_t e = i + 1;
    if (!is_punct(a.c[i]))
      while (e < a.n && !is_space(a.c[e]) && !is_punct(a.c[e]))
        e++;
    if (wordpiece(w, a.c + i, e - i, buf, off, out))
      rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    i = e;
  }
  free(a.c);
  return rc;
}
