/* The Porter stemmer as NLTK 3.8's PorterStemmer runs it in its default
 * NLTK_EXTENSIONS mode, written from Porter (1980) and NLTK's documented
 * departures from it (docs/metrics.md lists them). It works on code points,
 * as Python does on str, so that lengths and "double consonant" mean the same
 * for non-ASCII words. Snowball's "porter" (libstemmer) is the original
 * algorithm and differs on about 2% of the CommonGen vocabulary, which is why
 * it is not used here. */
#include "metrics/met_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct word {
  uint32_t *c;
  size_t n;
} word;

static int is_cons(const uint32_t *w, size_t i) {
  uint32_t ch = w[i];
  if (ch == 'a' || ch == 'e' || ch == 'i' || ch == 'o' || ch == 'u')
    return 0;
  if (ch == 'y')
    return i == 0 ? 1 : !is_cons(w, i - 1);
  return 1;
}

/* m in [C](VC)^m[V] of w[0..n): the number of "vc" pairs in the c/v string. */
static int measure(const uint32_t *w, size_t n) {
  int m = 0;
  for (size_t i = 1; i < n; i++)
    if (!is_cons(w, i - 1) && is_cons(w, i))
      m++;
  return m;
}

static int has_vowel(const uint32_t *w, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!is_cons(w, i))
      return 1;
  return 0;
}

static int ends_double_cons(const uint32_t *w, size_t n) {
  return n >= 2 && w[n - 1] == w[n - 2] && is_cons(w, n - 1);
}

/* *o, with NLTK's extension that a two-letter "vc" word also counts. */
static int ends_cvc(const uint32_t *w, size_t n) {
  if (n >= 3 && is_cons(w, n - 3) && !is_cons(w, n - 2) && is_cons(w, n - 1) && w[n - 1] != 'w' &&
      w[n - 1] != 'x' && w[n - 1] != 'y')
    return 1;
  return n == 2 && !is_cons(w, 0) && is_cons(w, 1);
}

static int ends(const word *w, const char *suf) {
  size_t k = strlen(suf);
  if (k > w->n)
    return 0;
  for (size_t i = 0; i < k; i++)
    if (w->c[w->n - k + i] != (unsigned char)suf[i])
      return 0;
  return 1;
}

static void set_tail(word *w, size_t keep, const char *rep) {
  w->n = keep;
  for (const char *r = rep; *r; r++)
    w->c[w->n++] = (unsigned char)*r;
}

enum { C_NONE, C_M0, C_M1, C_ION, C_LOGI };

typedef struct rule {
  const char *suf, *rep;
  int cond;
} rule;

/* NLTK's _apply_rule_list: the first rule whose suffix matches decides,
 * whether or not its condition holds. */
static void apply_rules(word *w, const rule *rules, size_t nr) {
  for (size_t r = 0; r < nr; r++) {
    if (!ends(w, rules[r].suf))
      continue;
    size_t stem = w->n - strlen(rules[r].suf);
    int ok;
    switch (rules[r].cond) {
    case C_M0:
      ok = measure(w->c, stem) > 0;
      break;
    case C_M1:
      ok = measure(w->c, stem) > 1;
      break;
    case C_ION:
      ok = measure(w->c, stem) > 1 && stem > 0 && (w->c[stem - 1] == 's' || w->c[stem - 1] == 't');
      break;
    case C_LOGI: /* NLTK tests word[:-3], the stem plus its "l" */
      ok = measure(w->c, w->n - 3) > 0;
      break;
    default:
      ok = 1;
    }
    if (ok)
      set_tail(w, stem, rules[r].rep);
    return;
  }
}

static void step1a(word *w) {
  if (w->n == 4 && ends(w, "ies")) {
    set_tail(w, 1, "ie");
    return;
  }
  static const rule r[] = {
      {"sses", "ss", C_NONE}, {"ies", "i", C_NONE}, {"ss", "ss", C_NONE}, {"s", "", C_NONE}};
  apply_rules(w, r, 4);
}

static void step1b(word *w) {
  if (ends(w, "ied")) {
    set_tail(w, w->n - 3, w->n == 4 ? "ie" : "i");
    return;
  }
  if (ends(w, "eed")) {
    if (measure(w->c, w->n - 3) > 0)
      set_tail(w, w->n - 3, "ee");
    return;
  }
  size_t stem;
  if (ends(w, "ed") && has_vowel(w->c, w->n - 2))
    stem = w->n - 2;
  else if (ends(w, "ing") && has_vowel(w->c, w->n - 3))
    stem = w->n - 3;
  else
    return;
  w->n = stem;
  if (ends(w, "at")) {
    set_tail(w, w->n - 2, "ate");
  } else if (ends(w, "bl")) {
    set_tail(w, w->n - 2, "ble");
  } else if (ends(w, "iz")) {
    set_tail(w, w->n - 2, "ize");
  } else if (ends_double_cons(w->c, w->n)) {
    uint32_t last = w->c[w->n - 1];
    if (last != 'l' && last != 's' && last != 'z')
      w->n -= 1;
  } else if (measure(w->c, w->n) == 1 && ends_cvc(w->c, w->n)) {
    w->c[w->n++] = 'e';
  }
}

static void step1c(word *w) {
  /* NLTK: y -> i when the stem is longer than one letter and ends in a
   * consonant (Porter: when the stem has a vowel). */
  if (ends(w, "y") && w->n - 1 > 1 && is_cons(w->c, w->n - 2))
    w->c[w->n - 1] = 'i';
}

static void step2(word *w) {
  while (ends(w, "alli") && measure(w->c, w->n - 4) > 0)
    set_tail(w, w->n - 4, "al"); /* NLTK re-runs step 2 on the result */
  static const rule r[] = {
      {"ational", "ate", C_M0}, {"tional", "tion", C_M0}, {"enci", "ence", C_M0},
      {"anci", "ance", C_M0},   {"izer", "ize", C_M0},    {"bli", "ble", C_M0},
      {"alli", "al", C_M0},     {"entli", "ent", C_M0},   {"eli", "e", C_M0},
      {"ousli", "ous", C_M0},   {"ization", "ize", C_M0}, {"ation", "ate", C_M0},
      {"ator", "ate", C_M0},    {"alism", "al", C_M0},    {"iveness", "ive", C_M0},
      {"fulness", "ful", C_M0}, {"ousness", "ous", C_M0}, {"aliti", "al", C_M0},
      {"iviti", "ive", C_M0},   {"biliti", "ble", C_M0},  {"fulli", "ful", C_M0},
      {"logi", "log", C_LOGI}};
  apply_rules(w, r, sizeof r / sizeof r[0]);
}

static void step3(word *w) {
  static const rule r[] = {{"icate", "ic", C_M0}, {"ative", "", C_M0},  {"alize", "al", C_M0},
                           {"iciti", "ic", C_M0}, {"ical", "ic", C_M0}, {"ful", "", C_M0},
                           {"ness", "", C_M0}};
  apply_rules(w, r, sizeof r / sizeof r[0]);
}

static void step4(word *w) {
  static const rule r[] = {
      {"al", "", C_M1},    {"ance", "", C_M1}, {"ence", "", C_M1}, {"er", "", C_M1},
      {"ic", "", C_M1},    {"able", "", C_M1}, {"ible", "", C_M1}, {"ant", "", C_M1},
      {"ement", "", C_M1}, {"ment", "", C_M1}, {"ent", "", C_M1},  {"ion", "", C_ION},
      {"ou", "", C_M1},    {"ism", "", C_M1},  {"ate", "", C_M1},  {"iti", "", C_M1},
      {"ous", "", C_M1},   {"ive", "", C_M1},  {"ize", "", C_M1}};
  apply_rules(w, r, sizeof r / sizeof r[0]);
}

static void step5(word *w) {
  if (ends(w, "e")) {
    int m = measure(w->c, w->n - 1);
    if (m > 1 || (m == 1 && !ends_cvc(w->c, w->n - 1)))
      w->n -= 1;
  }
  if (ends(w, "ll") && measure(w->c, w->n - 1) > 1)
    w->n -= 1;
}

static const char *const pool[][2] = {
    {"sky", "sky"},        {"skies", "sky"},       {"dying", "die"},        {"lying", "lie"},
    {"tying", "tie"},      {"news", "news"},       {"innings", "inning"},   {"inning", "inning"},
    {"outings", "outing"}, {"outing", "outing"},   {"cannings", "canning"}, {"canning", "canning"},
    {"howe", "howe"},      {"proceed", "proceed"}, {"exceed", "exceed"},    {"succeed", "succeed"}};

char *met_porter_stem(const char *in) {
  /* NLTK looks the word up in its table of irregular forms as given, and
   * keeps words of at most two characters (lowercased). */
  for (size_t i = 0; i < sizeof pool / sizeof pool[0]; i++)
    if (strcmp(in, pool[i][0]) == 0)
      return strdup(pool[i][1]);
  size_t len = strlen(in);
  word w;
  w.c = malloc((len + 4) * sizeof *w.c);
  if (!w.c)
    return NULL;
  w.n = 0;
  for (size_t i = 0; i < len;) {
    uint32_t cp;
    i += (size_t)met_utf8_decode(in + i, &cp);
    w.c[w.n++] = met_lower_cp(cp);
  }
  if (w.n > 2) {
    step1a(&w);
    step1b(&w);
    step1c(&w);
    step2(&w);
    step3(&w);
    step4(&w);
    step5(&w);
  }
  char *out = malloc(w.n * 4 + 1);
  if (out) {
    size_t o = 0;
    for (size_t i = 0; i < w.n; i++)
      o += (size_t)met_utf8_encode(w.c[i], out + o);
    out[o] = '\0';
  }
  free(w.c);
  return out;
}
