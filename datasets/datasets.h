/* datasets: the manifest, downloads, verification, extraction and the
 * importers that turn IMDB, RealToxicityPrompts and CommonGen into split
 * files (DESIGN.md sections 4 and 5).
 *
 * Prefix: ds_. Depends on common/ only. Ownership: callers own what they
 * pass in; paths written into caller buffers are NUL-terminated.
 */
#ifndef DFPO_DATASETS_H
#define DFPO_DATASETS_H

#include "common/common.h"

/* The cache folder of one dataset version: <cache>/datasets/<name>/<version>
 * (DESIGN.md section 4). Written into buf. */
int ds_dataset_dir(const char *name, const char *version, char *buf, size_t n, dfpo_err *err);

/* ---------------------------------------------- synthetic task (ds_synth_) */

/* The synthetic task's "true language" (DESIGN.md section 5): a mixture of two
 * hidden Markov models over word classes, one per latent sentiment
 * (0 negative, 1 positive). A document draws its sentiment from the prior,
 * then walks the class chain and emits one word per step; the two
 * sentiments share the transitions and differ in how likely each word is.
 * Because the model is known, the exact probability of any word sequence
 * (marginal over the hidden path and the sentiment) and the exact posterior
 * P(positive | text) are computable by the forward algorithm: the first is
 * the ground truth for degeneration, the second the task reward.
 *
 * Text form: lowercase words and the punctuation tokens "." and "," separated
 * by single spaces; ds_synth_words() splits any text on whitespace. A word
 * outside the vocabulary is emitted with probability exp(oov_logp) by any
 * state, a documented floor that keeps the likelihood of degenerate text
 * finite. docs/synthetic.md describes the language. */
#define DS_SYNTH_MAX_STATES 64

typedef struct ds_synth {
  int n_states, n_words;
  const char **words; /* sorted bytewise (for lookup); points to static or owned strings */
  double *init;       /* [n_states] initial state distribution */
  double *trans;      /* [n_states * n_states] row-stochastic transitions */
  double *emit;       /* [2][n_states][n_words] emission probabilities per sentiment */
  double prior_pos;   /* P(sentiment = positive) */
  double oov_logp;    /* log-probability of an out-of-vocabulary word */
  int *end_state;     /* [n_states] nonzero where a document may stop */
  void *owned;        /* allocation behind the arrays */
} ds_synth;

/* Allocates zeroed tables for a language of the given size; words must then
 * be set (sorted) and the tables filled. Free with ds_synth_free. */
int ds_synth_alloc(ds_synth *L, int n_states, int n_words, dfpo_err *err);
void ds_synth_free(ds_synth *L);

/* The movie-review language of the synthetic task: 196 English words in
 * ten classes; `seed` permutes the word frequencies within each class and
 * `lambda` (> 0) sets how strongly sentiment tilts the polar words
 * (weight * exp(lambda * sentiment_sign * polarity)). */
int ds_synth_init_reviews(ds_synth *L, uint64_t seed, double lambda, dfpo_err *err);

/* Index of a word in L->words, or -1 (out of vocabulary). */
int ds_synth_word_id(const ds_synth *L, const char *word, size_t len);

/* Splits text on ASCII whitespace into word ids (-1 for unknown words).
 * Returns the number of words; writes at most cap ids. */
int ds_synth_words(const ds_synth *L, const char *text, int *ids, int cap);

/* log p(ids | sentiment) for both sentiments (out[0] negative, out[1]
 * positive), as the probability of a prefix of a document (no stop). */
void ds_synth_logprob(const ds_synth *L, const int *ids, int n, double out[2]);

/* Marginal log p(ids) = log sum_s p(s) p(ids | s), and P(positive | ids). */
double ds_synth_log_marginal(const ds_synth *L, const int *ids, int n, double *p_pos);

/* What the task reports for one continuation of a prompt. */
typedef struct ds_synth_score {
  int n_words;       /* words of prompt+continuation minus words of prompt */
  int n_oov;         /* out-of-vocabulary words in prompt+continuation */
  double logp_cont;  /* log p(continuation | prompt) under the true language */
  double nll_word;   /* -logp_cont / max(1, n_words) */
  double p_positive; /* P(positive | prompt + continuation): the reward */
} ds_synth_score;

int ds_synth_score_text(const ds_synth *L, const char *prompt, const char *continuation,
                        ds_synth_score *out, dfpo_err *err);

/* Samples one document of the given sentiment: at least min_words words and
 * ending at a state where documents may stop; writes ids, returns the count
 * (at most cap; a document that reaches cap is cut there). */
int ds_synth_sample(const ds_synth *L, dfpo_rng *rng, int sentiment, int min_words, int *ids,
                    int cap);

/* Joins ids into text (words separated by single spaces); returns a heap
 * string the caller frees, or NULL when out of memory. */
char *ds_synth_text(const ds_synth *L, const int *ids, int n);

#endif
