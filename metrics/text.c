/* Tokenizing and the corpus: predictions, references and concepts as token
 * ids, and the loaders for CommonGen files and plain line files. */
#include "metrics/met_internal.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

void met_strv_free(char **v, size_t n) {
  if (!v)
    return;
  for (size_t i = 0; i < n; i++)
    free(v[i]);
  free(v);
}

int met_tokenize_mode_parse(const char *s, met_tokenize_mode *mode, dfpo_err *err) {
  if (strcmp(s, "default") == 0)
    *mode = MET_TOK_DEFAULT;
  else if (strcmp(s, "none") == 0)
    *mode = MET_TOK_NONE;
  else
    return dfpo_err_set(err, DFPO_EUSAGE, "unknown tokenize mode '%s' (default|none)", s);
  return DFPO_OK;
}

void met_tokens_free(met_tokens *t) {
  met_strv_free(t->tok, t->n);
  t->tok = NULL;
  t->n = 0;
}

/* ------------------------------------------------- the default tokenizer */

static int is_space_cp(uint32_t c) {
  return c == ' ' || (c >= '\t' && c <= '\r') || c == 0x85 || c == 0xa0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f ||
         c == 0x3000;
}

/* Word characters: ASCII letters and digits, and every other non-ASCII code
 * point except spaces and the punctuation of Latin-1 and of the General
 * Punctuation block. */
static int is_word_cp(uint32_t c) {
  if (c < 0x80)
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  if (is_space_cp(c))
    return 0;
  if ((c >= 0xa1 && c <= 0xbf) || c == 0xd7 || c == 0xf7)
    return 0;
  if (c >= 0x2010 && c <= 0x205e)
    return 0;
  return 1;
}

static int is_digit_cp(uint32_t c) {
  return c >= '0' && c <= '9';
}

typedef struct tokbuf {
  char **v;
  size_t n, cap;
} tokbuf;

/* Appends s (owned from now on; NULL: out of memory) to t. */
static int tb_push(tokbuf *t, char *s) {
  if (!s)
    return -1;
  if (dfpo_grow(&t->v, &t->cap, t->n + 1, sizeof *t->v, 16, DFPO_NOCAP, NULL)) {
    free(s);
    return -1;
  }
  t->v[t->n++] = s;
  return 0;
}

static int tb_push_cps(tokbuf *t, const uint32_t *cp, size_t n) {
  if (!n)
    return 0;
  char *s = malloc(n * 4 + 1);
  if (s) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
      o += (size_t)met_utf8_encode(cp[i], s + o);
    s[o] = '\0';
  }
  return tb_push(t, s);
}

static int tb_push_bytes(tokbuf *t, const char *s, size_t n) {
  if (!n)
    return 0;
  char *c = malloc(n + 1);
  if (c) {
    memcpy(c, s, n);
    c[n] = '\0';
  }
  return tb_push(t, c);
}

static int cps_end_with(const uint32_t *w, size_t n, const char *suf) {
  size_t k = strlen(suf);
  if (k > n)
    return 0;
  for (size_t i = 0; i < k; i++)
    if (w[n - k + i] != (unsigned char)suf[i])
      return 0;
  return 1;
}

/* One token that may hold apostrophes: Treebank-style clitics are split off
 * ("don't" -> "do" "n't", "dog's" -> "dog" "'s"); other apostrophes stay. */
static int push_word(tokbuf *t, const uint32_t *w, size_t n) {
  if (n > 3 && cps_end_with(w, n, "n't"))
    return tb_push_cps(t, w, n - 3) || tb_push_cps(t, w + n - 3, 3);
  static const char *const cl[] = {"'s", "'re", "'ve", "'ll", "'d", "'m"};
  for (size_t k = 0; k < sizeof cl / sizeof cl[0]; k++) {
    size_t kl = strlen(cl[k]);
    if (n > kl && cps_end_with(w, n, cl[k]))
      return tb_push_cps(t, w, n - kl) || tb_push_cps(t, w + n - kl, kl);
  }
  return tb_push_cps(t, w, n);
}

static int tokenize_default(const char *text, size_t len, tokbuf *t) {
  uint32_t *cp = malloc((len + 1) * sizeof *cp);
  if (!cp)
    return -1;
  size_t n = 0;
  for (size_t i = 0; i < len;) {
    uint32_t c;
    i += (size_t)met_utf8_decode(text + i, &c);
    if (c == 0x2019) /* right single quotation mark, the typographic apostrophe */
      c = '\'';
    cp[n++] = met_lower_cp(c);
  }
  /* A character belongs to a token when it is a word character, or a '-'
   * or apostrophe between two word characters, or a '.' or ',' between two
   * digits; everything else separates tokens and is dropped. */
  int rc = 0;
  size_t start = 0, i = 0;
  for (; i <= n && !rc; i++) {
    int keep = 0;
    if (i < n) {
      uint32_t c = cp[i];
      int prev_w = i > 0 && is_word_cp(cp[i - 1]), next_w = i + 1 < n && is_word_cp(cp[i + 1]);
      if (is_word_cp(c))
        keep = 1;
      else if ((c == '-' || c == '\'') && prev_w && next_w)
        keep = 1;
      else if ((c == '.' || c == ',') && i > 0 && i + 1 < n && is_digit_cp(cp[i - 1]) &&
               is_digit_cp(cp[i + 1]))
        keep = 1;
    }
    if (!keep) {
      if (i > start)
        rc = push_word(t, cp + start, i - start);
      start = i + 1;
    }
  }
  free(cp);
  return rc;
}

static int tokenize_none(const char *text, size_t len, tokbuf *t) {
  size_t i = 0;
  while (i < len) {
    while (i < len && text[i] == ' ')
      i++;
    size_t j = i;
    while (j < len && text[j] != ' ')
      j++;
    if (j > i && tb_push_bytes(t, text + i, j - i))
      return -1;
    i = j;
  }
  return 0;
}

int met_tokenize(const char *text, met_tokenize_mode mode, met_tokens *out, dfpo_err *err) {
  out->tok = NULL;
  out->n = 0;
  size_t len = strlen(text), bad = met_utf8_invalid(text, len);
  if (bad != (size_t)-1)
    return dfpo_err_set(err, DFPO_EDATA, "invalid UTF-8 at byte %zu", bad + 1);
  tokbuf t = {0};
  int rc = mode == MET_TOK_NONE ? tokenize_none(text, len, &t) : tokenize_default(text, len, &t);
  if (rc) {
    met_strv_free(t.v, t.n);
    return dfpo_err_set(err, DFPO_ERUNTIME, "tokenizer: out of memory");
  }
  out->tok = t.v;
  out->n = t.n;
  return DFPO_OK;
}

/* --------------------------------------------------------------- corpus */

int met_corpus_init(met_corpus *c, met_tokenize_mode mode, dfpo_err *err) {
  memset(c, 0, sizeof *c);
  c->mode = mode;
  c->vocab = malloc(sizeof *c->vocab);
  c->ref_start = calloc(1, sizeof *c->ref_start);
  c->concept_start = calloc(1, sizeof *c->concept_start);
  if (!c->vocab || !c->ref_start || !c->concept_start) {
    free(c->vocab), free(c->ref_start), free(c->concept_start);
    memset(c, 0, sizeof *c);
    return dfpo_err_set(err, DFPO_ERUNTIME, "corpus: out of memory");
  }
  met_vocab_init(c->vocab);
  return DFPO_OK;
}

static void text_free(met_text *t) {
  free(t->raw);
  free(t->ids);
}

void met_corpus_free(met_corpus *c) {
  for (size_t i = 0; i < c->n; i++)
    text_free(&c->pred[i]);
  size_t nr = c->ref_start ? c->ref_start[c->n] : 0;
  for (size_t i = 0; i < nr; i++)
    text_free(&c->refs[i]);
  free(c->pred);
  free(c->refs);
  free(c->ref_start);
  met_strv_free(c->concepts, c->concept_start ? c->concept_start[c->n] : 0);
  free(c->concept_start);
  if (c->vocab) {
    met_vocab_free(c->vocab);
    free(c->vocab);
  }
  memset(c, 0, sizeof *c);
}

const char *met_corpus_token(const met_corpus *c, uint32_t id) {
  return c->vocab->str[id];
}

static int make_text(met_corpus *c, const char *s, met_text *t, dfpo_err *err) {
  memset(t, 0, sizeof *t);
  met_tokens tk;
  int rc = met_tokenize(s, c->mode, &tk, err);
  if (rc)
    return rc;
  t->raw = strdup(s);
  t->ids = malloc((tk.n ? tk.n : 1) * sizeof *t->ids);
  if (!t->raw || !t->ids) {
    met_tokens_free(&tk);
    text_free(t);
    return dfpo_err_set(err, DFPO_ERUNTIME, "corpus: out of memory");
  }
  for (size_t i = 0; i < tk.n; i++) {
    t->ids[i] = met_vocab_intern(c->vocab, tk.tok[i], strlen(tk.tok[i]));
    if (t->ids[i] == UINT32_MAX) {
      met_tokens_free(&tk);
      text_free(t);
      return dfpo_err_set(err, DFPO_ERUNTIME, "corpus: out of memory");
    }
  }
  t->len = tk.n;
  met_tokens_free(&tk);
  return DFPO_OK;
}

int met_corpus_add(met_corpus *c, const char *pred, const char *const *refs, size_t nrefs,
                   const char *const *concepts, size_t nconcepts, dfpo_err *err) {
  size_t r0 = c->ref_start[c->n], k0 = c->concept_start[c->n];
  /* pred, ref_start and concept_start share one capacity: each grows from
   * the same old one (the starts need one slot past the last item) */
  size_t cp = c->cap, cr = c->cap, cc = c->cap;
  if (dfpo_grow(&c->pred, &cp, c->n + 2, sizeof *c->pred, 64, DFPO_NOCAP, NULL) ||
      dfpo_grow(&c->ref_start, &cr, c->n + 2, sizeof *c->ref_start, 64, DFPO_NOCAP, NULL) ||
      dfpo_grow(&c->concept_start, &cc, c->n + 2, sizeof *c->concept_start, 64, DFPO_NOCAP, NULL))
    return dfpo_err_set(err, DFPO_ERUNTIME, "corpus: out of memory");
  c->cap = cp;
  if (dfpo_grow(&c->refs, &c->ref_cap, r0 + nrefs, sizeof *c->refs, 64, DFPO_NOCAP, NULL) ||
      dfpo_grow(&c->concepts, &c->concept_cap, k0 + nconcepts, sizeof *c->concepts, 64, DFPO_NOCAP,
                NULL))
    return dfpo_err_set(err, DFPO_ERUNTIME, "corpus: out of memory");

  int rc = make_text(c, pred, &c->pred[c->n], err);
  if (rc)
    return dfpo_err_prefix(err, "prediction");
  for (size_t i = 0; i < nrefs; i++) {
    if ((rc = make_text(c, refs[i], &c->refs[r0 + i], err))) {
      for (size_t k = 0; k < i; k++)
        text_free(&c->refs[r0 + k]);
      text_free(&c->pred[c->n]);
      return dfpo_err_prefix(err, "reference %zu", i + 1);
    }
  }
  for (size_t i = 0; i < nconcepts; i++) {
    size_t len = strlen(concepts[i]), bad = met_utf8_invalid(concepts[i], len);
    char *low = bad == (size_t)-1 ? met_lower_str(concepts[i], len, NULL) : NULL;
    if (!low) {
      for (size_t k = 0; k < i; k++)
        free(c->concepts[k0 + k]);
      for (size_t k = 0; k < nrefs; k++)
        text_free(&c->refs[r0 + k]);
      text_free(&c->pred[c->n]);
      if (bad != (size_t)-1)
        return dfpo_err_set(err, DFPO_EDATA, "concept %zu: invalid UTF-8 at byte %zu", i + 1,
                            bad + 1);
      return dfpo_err_set(err, DFPO_ERUNTIME, "corpus: out of memory");
    }
    c->concepts[k0 + i] = low;
  }
  c->n++;
  c->ref_start[c->n] = r0 + nrefs;
  c->concept_start[c->n] = k0 + nconcepts;
  return DFPO_OK;
}

/* ---------------------------------------------------------------- files */

typedef struct lines {
  char *buf;
  char **line;
  size_t n;
} lines;

/* Splits a file into lines (a final newline is optional; a '\r' before a
 * newline is dropped). Empty lines are errors naming the file and line. */
static int read_lines(const char *path, lines *l, dfpo_err *err) {
  memset(l, 0, sizeof *l);
  size_t len;
  int rc = dfpo_read_file(path, &l->buf, &len, err);
  if (rc)
    return rc;
  size_t cap = 0;
  for (size_t i = 0; i < len && !rc;) {
    char *s = l->buf + i, *nl = memchr(s, '\n', len - i);
    size_t e = nl ? (size_t)(nl - l->buf) : len;
    l->buf[e] = '\0';
    if (e > i && l->buf[e - 1] == '\r')
      l->buf[--e] = '\0';
    size_t bad;
    if (e == i)
      rc = dfpo_err_set(err, DFPO_EDATA, "%s:%zu: empty line", path, l->n + 1);
    else if (strlen(s) != e - i)
      rc = dfpo_err_set(err, DFPO_EDATA, "%s:%zu: NUL byte in line", path, l->n + 1);
    else if ((bad = met_utf8_invalid(s, e - i)) != (size_t)-1)
      rc = dfpo_err_set(err, DFPO_EDATA, "%s:%zu: invalid UTF-8 at byte %zu", path, l->n + 1,
                        bad + 1);
    else if (dfpo_grow(&l->line, &cap, l->n + 1, sizeof *l->line, 64, DFPO_NOCAP, NULL))
      rc = dfpo_err_set(err, DFPO_ERUNTIME, "%s: out of memory", path);
    else
      l->line[l->n++] = s;
    i = (nl ? (size_t)(nl - l->buf) : len) + 1;
  }
  if (rc) {
    free(l->buf);
    free(l->line);
    memset(l, 0, sizeof *l);
  }
  return rc;
}

static void lines_free(lines *l) {
  free(l->buf);
  free(l->line);
}

/* A list of strings from a JSON array; NULL-free result in *out (pointers
 * into the cJSON tree). */
static int json_strings(const cJSON *a, const char ***out, size_t *n) {
  *n = 0;
  *out = NULL;
  if (!cJSON_IsArray(a))
    return -1;
  size_t cnt = (size_t)cJSON_GetArraySize(a);
  const char **v = malloc((cnt ? cnt : 1) * sizeof *v);
  if (!v)
    return -2;
  const cJSON *x;
  cJSON_ArrayForEach(x, a) {
    if (!cJSON_IsString(x)) {
      free(v);
      return -1;
    }
    v[(*n)++] = x->valuestring;
  }
  *out = v;
  return 0;
}

int met_corpus_load_commongen(met_corpus *c, const char *pred_path, const char *refs_path,
                              dfpo_err *err) {
  lines pl, rl;
  int rc = read_lines(pred_path, &pl, err);
  if (rc)
    return rc;
  if ((rc = read_lines(refs_path, &rl, err))) {
    lines_free(&pl);
    return rc;
  }
  if (pl.n != rl.n) {
    rc = dfpo_err_set(err, DFPO_EDATA,
                      "%s has %zu predictions but %s has %zu concept sets; they must match line "
                      "for line",
                      pred_path, pl.n, refs_path, rl.n);
    goto done;
  }
  for (size_t i = 0; i < rl.n && !rc; i++) {
    cJSON *o = cJSON_Parse(rl.line[i]);
    if (!o || !cJSON_IsObject(o)) {
      cJSON_Delete(o);
      rc = dfpo_err_set(err, DFPO_EDATA, "%s:%zu: not a JSON object", refs_path, i + 1);
      break;
    }
    const cJSON *refs = cJSON_GetObjectItemCaseSensitive(o, "references");
    if (!refs)
      refs = cJSON_GetObjectItemCaseSensitive(o, "scene");
    const cJSON *conc = cJSON_GetObjectItemCaseSensitive(o, "concepts");
    const cJSON *cset = cJSON_GetObjectItemCaseSensitive(o, "concept_set");
    const char **rv = NULL, **cv = NULL;
    size_t nr = 0, nc = 0;
    char *csbuf = NULL;
    int jr = json_strings(refs, &rv, &nr);
    if (jr || nr == 0) {
      rc = jr == -2 ? dfpo_err_set(err, DFPO_ERUNTIME, "out of memory")
                    : dfpo_err_set(err, DFPO_EDATA,
                                   "%s:%zu: \"references\" (or \"scene\") must be a non-empty "
                                   "list of strings",
                                   refs_path, i + 1);
    } else if (conc) {
      if ((jr = json_strings(conc, &cv, &nc)))
        rc = jr == -2 ? dfpo_err_set(err, DFPO_ERUNTIME, "out of memory")
                      : dfpo_err_set(err, DFPO_EDATA,
                                     "%s:%zu: \"concepts\" must be a list of "
                                     "strings",
                                     refs_path, i + 1);
    } else if (cJSON_IsString(cset)) {
      csbuf = strdup(cset->valuestring);
      size_t cnt = 1;
      for (const char *p = csbuf ? csbuf : ""; *p; p++)
        cnt += *p == '#';
      cv = malloc(cnt * sizeof *cv);
      if (!csbuf || !cv) {
        rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
      } else {
        for (char *p = csbuf;;) {
          char *h = strchr(p, '#');
          if (h)
            *h = '\0';
          if (*p)
            cv[nc++] = p;
          if (!h)
            break;
          p = h + 1;
        }
      }
    } else if (cset) {
      rc = dfpo_err_set(err, DFPO_EDATA, "%s:%zu: \"concept_set\" must be a string", refs_path,
                        i + 1);
    }
    if (!rc && (rc = met_corpus_add(c, pl.line[i], rv, nr, cv, nc, err))) {
      /* a bad prediction names the prediction file, anything else the refs */
      if (strncmp(err->msg, "prediction", 10) == 0)
        dfpo_err_prefix(err, "%s:%zu", pred_path, i + 1);
      else
        dfpo_err_prefix(err, "%s:%zu", refs_path, i + 1);
    }
    free(rv);
    free(cv);
    free(csbuf);
    cJSON_Delete(o);
  }
done:
  lines_free(&pl);
  lines_free(&rl);
  return rc;
}

int met_corpus_load_lines(met_corpus *c, const char *path, dfpo_err *err) {
  lines l;
  int rc = read_lines(path, &l, err);
  for (size_t i = 0; !rc && i < l.n; i++)
    if ((rc = met_corpus_add(c, l.line[i], NULL, 0, NULL, 0, err)))
      dfpo_err_prefix(err, "%s:%zu", path, i + 1);
  lines_free(&l);
  return rc;
}
