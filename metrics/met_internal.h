/* Internal to metrics/: the string table, n-gram counting and UTF-8 helpers
 * that the metric sources share. Not part of the public API. */
#ifndef DFPO_METRICS_INTERNAL_H
#define DFPO_METRICS_INTERNAL_H

#include "metrics/metrics.h"

#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------ strings */

/* A string -> id table. Ids are dense (0, 1, 2, ... in insertion order);
 * the table owns copies of its strings. */
struct met_vocab {
  char **str;
  uint32_t *len;
  size_t n, cap;
  uint32_t *slots; /* open addressing, UINT32_MAX = empty */
  size_t nslots;
};

void met_vocab_init(met_vocab *v);
void met_vocab_free(met_vocab *v);
/* The id of s[0..len), added when absent; UINT32_MAX when out of memory or
 * when the table already holds UINT32_MAX strings. */
uint32_t met_vocab_intern(met_vocab *v, const char *s, size_t len);
/* The id of s[0..len), or UINT32_MAX when absent. */
uint32_t met_vocab_find(const met_vocab *v, const char *s, size_t len);

/* ------------------------------------------------------------- n-grams */

#define MET_MAX_N 4

/* An n-gram of token ids (n 1..4; unused ids are 0) with a count. */
typedef struct met_ngram {
  uint32_t id[MET_MAX_N];
  uint32_t n;
  double c;
} met_ngram;

int met_ngram_cmp(const met_ngram *a, const met_ngram *b);
/* The distinct n-grams of orders lo..hi of ids[0..len) with their counts,
 * sorted by (n, ids). Returns the number written to *out (a heap array the
 * caller frees), or (size_t)-1 when out of memory. */
size_t met_ngrams(const uint32_t *ids, size_t len, int lo, int hi, met_ngram **out);
/* Sorts and merges equal keys (summing counts); returns the new length. */
size_t met_ngrams_merge(met_ngram *g, size_t n);
/* Binary search in a sorted array; NULL when absent. */
const met_ngram *met_ngrams_find(const met_ngram *g, size_t n, const met_ngram *key);

/* --------------------------------------------------------------- UTF-8 */

/* Decodes one code point at s (valid UTF-8 assumed); returns its byte
 * length and stores it in *cp. */
int met_utf8_decode(const char *s, uint32_t *cp);
/* Encodes cp into out (4 bytes room); returns the byte length. */
int met_utf8_encode(uint32_t cp, char *out);
/* Offset of the first invalid byte of s[0..len), or (size_t)-1 when valid.
 * Overlong forms, surrogates and code points above U+10FFFF are invalid. */
size_t met_utf8_invalid(const char *s, size_t len);
/* Lowercase as this module defines it: ASCII A-Z and Latin-1 U+00C0-U+00DE
 * (except U+00D7). */
uint32_t met_lower_cp(uint32_t cp);
/* Lowercases a UTF-8 string into a new heap string (caller frees). */
char *met_lower_str(const char *s, size_t len, size_t *out_len);

/* ------------------------------------------------------------- helpers */

/* LCS length of two id sequences (O(n*m) time, O(m) memory). */
size_t met_lcs(const uint32_t *a, size_t na, const uint32_t *b, size_t nb);
/* sacreBLEU's 13a tokenizer; returns a heap string (caller frees). */
char *met_tok13a(const char *s);
/* rouge-score's tokenizer: lowercase, [^a-z0-9]+ as separators, optional
 * Porter stem for tokens longer than 3. Ids are interned in v. Returns the
 * number of tokens (heap array in *ids) or (size_t)-1 on out of memory. */
size_t met_rouge_tokens(const char *s, int stem, met_vocab *v, uint32_t **ids);

/* -------------------------------------------------------------- judges */

/* Accessors between judge.c (the model) and judge_io.c (its files). */
const met_feat_opts *met_judge_feat(const met_judge *j);
int met_judge_nb(const met_judge *j);
/* The weights [1 << hash_bits] and the bias and Platt parameters. */
const float *met_judge_params(const met_judge *j, double *bias, double *a, double *c);
/* A judge from its parts (weights copied). */
int met_judge_make(met_judge **out, const char *name, const met_feat_opts *f, int nb, double bias,
                   double a, double c, const float *w, dfpo_err *err);
/* Records the saved version and the model file's SHA-256 (for met_judge_id). */
void met_judge_set_identity(met_judge *j, int version, const char *sha256);

#endif
