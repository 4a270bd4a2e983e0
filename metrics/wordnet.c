/* WordNet 3.0 from its database files, read the way NLTK 3.8's
 * WordNetCorpusReader reads them (index.* for lemma -> synset offsets,
 * *.exc for irregular forms, data.* for a synset's lemma names), so that
 * morphy and the METEOR synonym sets agree with NLTK's. */
#include "metrics/met_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define NPOS 4
static const char pos_chars[NPOS] = {'n', 'v', 'a', 'r'};
static const char *const pos_names[NPOS] = {"noun", "verb", "adj", "adv"};

typedef struct wn_lemma {
  uint32_t off_start[NPOS]; /* into wn->offsets */
  uint32_t off_n[NPOS];     /* 0: the lemma has no synsets of that pos */
} wn_lemma;

typedef struct wn_exc {
  uint32_t start, n; /* base forms: exc_forms[start .. start+n) */
} wn_exc;

struct met_wordnet {
  char *dir;
  met_vocab lemmas; /* lemma string -> index into lemma */
  wn_lemma *lemma;
  size_t lemma_cap;
  uint32_t *offsets;
  size_t noff, off_cap;
  met_vocab exc_keys[NPOS]; /* inflected form -> index into exc[pos] */
  wn_exc *exc[NPOS];
  char **exc_forms;
  size_t nexc_forms, exc_forms_cap;
  char *data[NPOS]; /* data.* files, read on first use */
  size_t data_len[NPOS];
};

static int pos_index(char pos) {
  for (int p = 0; p < NPOS; p++)
    if (pos_chars[p] == pos)
      return p;
  return -1;
}

static int oom(dfpo_err *err) {
  return dfpo_err_set(err, DFPO_ERUNTIME, "WordNet: out of memory");
}

static int push_offset(met_wordnet *wn, uint32_t off) {
  if (dfpo_grow(&wn->offsets, &wn->off_cap, wn->noff + 1, sizeof *wn->offsets, 1 << 16, DFPO_NOCAP,
                NULL))
    return -1;
  wn->offsets[wn->noff++] = off;
  return 0;
}

/* Splits the next whitespace-separated token off *p (in place). */
static char *next_tok(char **p) {
  char *s = *p;
  while (*s == ' ' || *s == '\t' || *s == '\r')
    s++;
  if (!*s || *s == '\n')
    return NULL;
  char *e = s;
  while (*e && *e != ' ' && *e != '\t' && *e != '\r' && *e != '\n')
    e++;
  *p = e;
  if (*e && *e != '\n') {
    *e = '\0';
    *p = e + 1;
  }
  return s;
}

static int parse_uint(const char *s, int base, unsigned long *v) {
  if (!s || !*s)
    return -1;
  char *end;
  errno = 0;
  *v = strtoul(s, &end, base);
  return errno || *end ? -1 : 0;
}

/* Reads <dir>/<pre><pos><post> whole (index.noun, noun.exc, data.noun); its
 * name is left in path[WN_PATH_MAX] for the caller's messages. */
#define WN_PATH_MAX 4096
static int read_pos_file(const met_wordnet *wn, const char *pre, int p, const char *post,
                         char *path, char **buf, size_t *len, dfpo_err *err) {
  if (dfpo_path_fmt(path, WN_PATH_MAX, err, "%s/%s%s%s", wn->dir, pre, pos_names[p], post) ||
      dfpo_read_file(path, buf, len, err))
    return dfpo_err_prefix(err, "WordNet folder unreadable");
  return DFPO_OK;
}

static int load_index(met_wordnet *wn, int p, dfpo_err *err) {
  char path[WN_PATH_MAX], *buf;
  int rc = read_pos_file(wn, "index.", p, "", path, &buf, NULL, err);
  if (rc)
    return rc;
  size_t lineno = 0;
  for (char *line = buf; *line && rc == DFPO_OK;) {
    char *nl = strchr(line, '\n');
    if (nl)
      *nl = '\0';
    lineno++;
    if (line[0] != ' ' && line[0] != '\0') { /* lines starting with a space are the licence */
      char *q = line, *lemma = next_tok(&q), *pos = next_tok(&q);
      unsigned long nsyn, nptr, nsense, v;
      if (!lemma || !pos || parse_uint(next_tok(&q), 10, &nsyn) || nsyn == 0 ||
          parse_uint(next_tok(&q), 10, &nptr)) {
        rc = dfpo_err_set(err, DFPO_EDATA, "%s:%zu: malformed index line", path, lineno);
        break;
      }
      for (unsigned long k = 0; k < nptr; k++)
        next_tok(&q);
      if (parse_uint(next_tok(&q), 10, &nsense) || nsense != nsyn ||
          parse_uint(next_tok(&q), 10, &v)) {
        rc = dfpo_err_set(err, DFPO_EDATA, "%s:%zu: malformed index line", path, lineno);
        break;
      }
      size_t before = wn->lemmas.n;
      uint32_t id = met_vocab_intern(&wn->lemmas, lemma, strlen(lemma));
      if (id == UINT32_MAX) {
        rc = oom(err);
        break;
      }
      if (wn->lemmas.n > before) {
        if (dfpo_grow(&wn->lemma, &wn->lemma_cap, wn->lemmas.n, sizeof *wn->lemma, 1 << 16,
                      DFPO_NOCAP, NULL)) {
          rc = oom(err);
          break;
        }
        memset(&wn->lemma[id], 0, sizeof wn->lemma[id]);
      }
      /* NLTK files the offsets under the pos the line says (index.adj
       * says "a"); a later line for the same lemma and pos replaces. */
      int lp = pos_index(pos[0]);
      if (lp < 0 || pos[1]) {
        rc =
            dfpo_err_set(err, DFPO_EDATA, "%s:%zu: unknown part of speech '%s'", path, lineno, pos);
        break;
      }
      wn->lemma[id].off_start[lp] = (uint32_t)wn->noff;
      wn->lemma[id].off_n[lp] = (uint32_t)nsyn;
      for (unsigned long k = 0; k < nsyn; k++) {
        if (parse_uint(next_tok(&q), 10, &v)) {
          rc = dfpo_err_set(err, DFPO_EDATA, "%s:%zu: malformed synset offset", path, lineno);
          break;
        }
        if (push_offset(wn, (uint32_t)v)) {
          rc = oom(err);
          break;
        }
      }
    }
    if (!nl)
      break;
    line = nl + 1;
  }
  free(buf);
  return rc;
}

static int load_exc(met_wordnet *wn, int p, dfpo_err *err) {
  char path[WN_PATH_MAX], *buf;
  int rc = read_pos_file(wn, "", p, ".exc", path, &buf, NULL, err);
  if (rc)
    return rc;
  size_t cap = 0;
  for (char *line = buf; *line;) {
    char *nl = strchr(line, '\n');
    if (nl)
      *nl = '\0';
    char *q = line, *key = next_tok(&q);
    if (key) {
      size_t before = wn->exc_keys[p].n;
      uint32_t id = met_vocab_intern(&wn->exc_keys[p], key, strlen(key));
      if (id == UINT32_MAX) {
        rc = oom(err);
        break;
      }
      if (wn->exc_keys[p].n > before && dfpo_grow(&wn->exc[p], &cap, wn->exc_keys[p].n,
                                                  sizeof *wn->exc[p], 4096, DFPO_NOCAP, NULL)) {
        rc = oom(err);
        break;
      }
      /* like NLTK's dict assignment, a later line for the same form wins */
      wn->exc[p][id].start = (uint32_t)wn->nexc_forms;
      wn->exc[p][id].n = 0;
      for (char *f; (f = next_tok(&q));) {
        if (dfpo_grow(&wn->exc_forms, &wn->exc_forms_cap, wn->nexc_forms + 1, sizeof *wn->exc_forms,
                      8192, DFPO_NOCAP, NULL) ||
            !(wn->exc_forms[wn->nexc_forms] = strdup(f))) {
          rc = oom(err);
          break;
        }
        wn->nexc_forms++;
        wn->exc[p][id].n++;
      }
      if (rc)
        break;
    }
    if (!nl)
      break;
    line = nl + 1;
  }
  free(buf);
  return rc;
}

int met_wordnet_open(met_wordnet **out, const char *dir, dfpo_err *err) {
  *out = NULL;
  if (!dir)
    dir = getenv("DFPO_WORDNET");
  if (!dir || !*dir)
    dir = "/usr/share/wordnet";
  met_wordnet *wn = calloc(1, sizeof *wn);
  if (!wn || !(wn->dir = strdup(dir))) {
    free(wn);
    return oom(err);
  }
  met_vocab_init(&wn->lemmas);
  for (int p = 0; p < NPOS; p++)
    met_vocab_init(&wn->exc_keys[p]);
  int rc = DFPO_OK;
  for (int p = 0; p < NPOS && !rc; p++)
    rc = load_index(wn, p, err);
  for (int p = 0; p < NPOS && !rc; p++)
    rc = load_exc(wn, p, err);
  if (rc) {
    met_wordnet_free(wn);
    return rc;
  }
  *out = wn;
  return DFPO_OK;
}

void met_wordnet_free(met_wordnet *wn) {
  if (!wn)
    return;
  free(wn->dir);
  met_vocab_free(&wn->lemmas);
  free(wn->lemma);
  free(wn->offsets);
  for (int p = 0; p < NPOS; p++) {
    met_vocab_free(&wn->exc_keys[p]);
    free(wn->exc[p]);
    free(wn->data[p]);
  }
  met_strv_free(wn->exc_forms, wn->nexc_forms);
  free(wn);
}

/* ------------------------------------------------------------- morphy */

typedef struct strlist {
  char **v;
  size_t n, cap;
} strlist;

static int sl_push(strlist *l, const char *s, size_t len) {
  if (dfpo_grow(&l->v, &l->cap, l->n + 1, sizeof *l->v, 16, DFPO_NOCAP, NULL))
    return -1;
  char *c = malloc(len + 1);
  if (!c)
    return -1;
  memcpy(c, s, len);
  c[len] = '\0';
  l->v[l->n++] = c;
  return 0;
}

static void sl_free(strlist *l) {
  met_strv_free(l->v, l->n);
  memset(l, 0, sizeof *l);
}

typedef struct subst {
  const char *old, *new_;
} subst;

static const subst subs_n[] = {{"s", ""},      {"ses", "s"},   {"ves", "f"},
                               {"xes", "x"},   {"zes", "z"},   {"ches", "ch"},
                               {"shes", "sh"}, {"men", "man"}, {"ies", "y"}};
static const subst subs_v[] = {{"s", ""},   {"ies", "y"}, {"es", "e"},  {"es", ""},
                               {"ed", "e"}, {"ed", ""},   {"ing", "e"}, {"ing", ""}};
static const subst subs_a[] = {{"er", ""}, {"est", ""}, {"er", "e"}, {"est", "e"}};

static void subs_for(int p, const subst **s, size_t *n) {
  switch (p) {
  case 0:
    *s = subs_n, *n = sizeof subs_n / sizeof subs_n[0];
    break;
  case 1:
    *s = subs_v, *n = sizeof subs_v / sizeof subs_v[0];
    break;
  case 2:
    *s = subs_a, *n = sizeof subs_a / sizeof subs_a[0];
    break;
  default:
    *s = NULL, *n = 0;
  }
}

static int in_db(const met_wordnet *wn, const char *form, int p) {
  uint32_t id = met_vocab_find(&wn->lemmas, form, strlen(form));
  return id != UINT32_MAX && wn->lemma[id].off_n[p] > 0;
}

/* NLTK's filter_forms: those in the database for pos, first occurrence. */
static int filter_forms(const met_wordnet *wn, int p, char **forms, size_t n, strlist *out) {
  for (size_t i = 0; i < n; i++) {
    if (!in_db(wn, forms[i], p))
      continue;
    int seen = 0;
    for (size_t k = 0; k < out->n && !seen; k++)
      seen = strcmp(out->v[k], forms[i]) == 0;
    if (!seen && sl_push(out, forms[i], strlen(forms[i])))
      return -1;
  }
  return 0;
}

/* NLTK's apply_rules: every form x every substitution whose suffix matches. */
static int apply_subs(int p, char **forms, size_t n, strlist *out) {
  const subst *s;
  size_t ns;
  subs_for(p, &s, &ns);
  for (size_t i = 0; i < n; i++) {
    size_t fl = strlen(forms[i]);
    for (size_t k = 0; k < ns; k++) {
      size_t ol = strlen(s[k].old), nl = strlen(s[k].new_);
      if (ol > fl || strcmp(forms[i] + fl - ol, s[k].old) != 0)
        continue;
      char buf[512];
      if (fl - ol + nl >= sizeof buf)
        continue;
      memcpy(buf, forms[i], fl - ol);
      memcpy(buf + fl - ol, s[k].new_, nl);
      if (sl_push(out, buf, fl - ol + nl))
        return -1;
    }
  }
  return 0;
}

static int morphy(met_wordnet *wn, const char *form, int p, strlist *res) {
  uint32_t e = met_vocab_find(&wn->exc_keys[p], form, strlen(form));
  strlist cand = {0}, forms = {0};
  int rc = -1;
  if (e != UINT32_MAX) {
    if (sl_push(&cand, form, strlen(form)))
      goto done;
    for (uint32_t k = 0; k < wn->exc[p][e].n; k++) {
      const char *f = wn->exc_forms[wn->exc[p][e].start + k];
      if (sl_push(&cand, f, strlen(f)))
        goto done;
    }
    rc = filter_forms(wn, p, cand.v, cand.n, res);
    goto done;
  }
  char *one[1] = {(char *)form};
  if (apply_subs(p, one, 1, &forms) || sl_push(&cand, form, strlen(form)))
    goto done;
  for (size_t i = 0; i < forms.n; i++)
    if (sl_push(&cand, forms.v[i], strlen(forms.v[i])))
      goto done;
  if (filter_forms(wn, p, cand.v, cand.n, res))
    goto done;
  /* No match: keep applying the rules (each pass shortens or keeps the
   * forms, and a pass over nothing ends it). */
  while (!res->n && forms.n) {
    strlist next = {0};
    if (apply_subs(p, forms.v, forms.n, &next)) {
      sl_free(&next);
      goto done;
    }
    sl_free(&forms);
    forms = next;
    if (filter_forms(wn, p, forms.v, forms.n, res))
      goto done;
  }
  rc = 0;
done:
  sl_free(&cand);
  sl_free(&forms);
  return rc;
}

int met_wordnet_morphy(met_wordnet *wn, const char *form, char pos, char ***out, size_t *n,
                       dfpo_err *err) {
  int p = pos_index(pos);
  if (p < 0)
    return dfpo_err_set(err, DFPO_EUSAGE, "WordNet: unknown part of speech '%c'", pos);
  strlist res = {0};
  if (morphy(wn, form, p, &res)) {
    sl_free(&res);
    return oom(err);
  }
  *out = res.v;
  *n = res.n;
  return DFPO_OK;
}

/* ----------------------------------------------------------- synonyms */

static int load_data(met_wordnet *wn, int p, dfpo_err *err) {
  if (wn->data[p])
    return DFPO_OK;
  char path[WN_PATH_MAX];
  return read_pos_file(wn, "data.", p, "", path, &wn->data[p], &wn->data_len[p], err);
}

/* Adds the lemma names of the synset at `off` in data.<pos> to out. */
static int synset_lemmas(met_wordnet *wn, int p, uint32_t off, strlist *out, dfpo_err *err) {
  char path[64];
  snprintf(path, sizeof path, "data.%s", pos_names[p]);
  if (off >= wn->data_len[p])
    return dfpo_err_set(err, DFPO_EDATA, "%s/%s: synset offset %u is past the end", wn->dir, path,
                        (unsigned)off);
  const char *s = wn->data[p] + off, *end = strchr(s, '\n');
  if (!end)
    end = wn->data[p] + wn->data_len[p];
  size_t ll = (size_t)(end - s);
  char *line = malloc(ll + 1);
  if (!line)
    return oom(err);
  memcpy(line, s, ll);
  line[ll] = '\0';
  char *q = line, *t_off = next_tok(&q), *t_lex = next_tok(&q), *t_pos = next_tok(&q);
  unsigned long v, nw;
  if (parse_uint(t_off, 10, &v) || v != off || !t_lex || !t_pos ||
      parse_uint(next_tok(&q), 16, &nw)) {
    /* nw is unset here: no word loop on a record without a header */
    free(line);
    return dfpo_err_set(err, DFPO_EDATA, "%s/%s: no synset record at offset %u", wn->dir, path,
                        (unsigned)off);
  }
  int rc = DFPO_OK;
  for (unsigned long k = 0; k < nw && !rc; k++) {
    char *name = next_tok(&q), *lexid = next_tok(&q);
    if (!name || !lexid) {
      rc = dfpo_err_set(err, DFPO_EDATA, "%s/%s: truncated synset record at offset %u", wn->dir,
                        path, (unsigned)off);
      break;
    }
    /* NLTK: (.*?)(\(.*\))?$ strips an adjective marker such as "(a)":
     * from the first '(' when the name ends with ')'. */
    size_t nl = strlen(name);
    if (nl >= 2 && name[nl - 1] == ')') {
      char *par = strchr(name, '(');
      if (par && par < name + nl - 1)
        nl = (size_t)(par - name);
    }
    if (memchr(name, '_', nl))
      continue;
    if (sl_push(out, name, nl))
      rc = oom(err);
  }
  free(line);
  return rc;
}

static int str_qcmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int met_wordnet_synonyms(met_wordnet *wn, const char *word, char ***out, size_t *n, dfpo_err *err) {
  size_t wl = strlen(word);
  strlist all = {0};
  int rc = DFPO_OK;
  if (sl_push(&all, word, wl))
    return oom(err);
  /* wordnet.synsets lowercases (Python's str.lower; here ASCII and
   * Latin-1, see docs/metrics.md) */
  char *low = met_lower_str(word, wl, NULL);
  if (!low) {
    sl_free(&all);
    return oom(err);
  }
  for (int p = 0; p < NPOS && !rc; p++) {
    strlist forms = {0};
    if (morphy(wn, low, p, &forms)) {
      rc = oom(err);
    }
    for (size_t f = 0; f < forms.n && !rc; f++) {
      uint32_t id = met_vocab_find(&wn->lemmas, forms.v[f], strlen(forms.v[f]));
      if (id == UINT32_MAX)
        continue;
      const wn_lemma *l = &wn->lemma[id];
      if (l->off_n[p] && (rc = load_data(wn, p, err)))
        break;
      for (uint32_t k = 0; k < l->off_n[p] && !rc; k++)
        rc = synset_lemmas(wn, p, wn->offsets[l->off_start[p] + k], &all, err);
    }
    sl_free(&forms);
  }
  free(low);
  if (rc) {
    sl_free(&all);
    return rc;
  }
  qsort(all.v, all.n, sizeof *all.v, str_qcmp);
  size_t w = 0;
  for (size_t i = 0; i < all.n; i++) {
    if (w && strcmp(all.v[w - 1], all.v[i]) == 0)
      free(all.v[i]);
    else
      all.v[w++] = all.v[i];
  }
  *out = all.v;
  *n = w;
  return DFPO_OK;
}
