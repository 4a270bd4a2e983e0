/* metrics: text metrics (BLEU, ROUGE, METEOR, CIDEr-D, coverage, diversity)
 * and statistics (DESIGN.md section 8). docs/metrics.md defines every number
 * as implemented here and names the reference implementation it agrees with.
 *
 * Prefix: met_. Depends on common/, cJSON (CommonGen JSONL) and GSL
 * (statistics); WordNet is read from its database files at run time. The
 * perplexity APIs over the engine (ppl_ref, ppl_gen) and the judge models are
 * not here yet.
 *
 * Ownership: structs are caller storage set up by their _init/_open and
 * released by their _free; arrays a function returns through an out
 * parameter are heap memory the caller frees (free(), or met_strv_free for
 * string vectors). Nothing here prints to stdout or exits.
 */
#ifndef DFPO_METRICS_H
#define DFPO_METRICS_H

#include "common/common.h"

#include <stddef.h>
#include <stdint.h>

/* ----------------------------------------------------------- tokenizing */

/* MET_TOK_DEFAULT: the text is normalised and split as docs/metrics.md says
 * (lowercase; words, numbers and clitics as tokens; punctuation dropped).
 * MET_TOK_NONE: the text is already tokenized: tokens are the pieces between
 * spaces (runs of spaces count as one), used exactly as given. */
typedef enum { MET_TOK_DEFAULT = 0, MET_TOK_NONE = 1 } met_tokenize_mode;

/* "default" or "none"; DFPO_EUSAGE otherwise. */
int met_tokenize_mode_parse(const char *s, met_tokenize_mode *mode, dfpo_err *err);

typedef struct met_tokens {
  char **tok; /* n NUL-terminated tokens (owned) */
  size_t n;
} met_tokens;

/* Tokenizes one line of UTF-8 text; DFPO_EDATA (naming the byte offset)
 * when it is not valid UTF-8. */
int met_tokenize(const char *text, met_tokenize_mode mode, met_tokens *out, dfpo_err *err);
void met_tokens_free(met_tokens *t);
void met_strv_free(char **v, size_t n);

/* ---------------------------------------------------------------- Porter */

/* NLTK 3.8's PorterStemmer in its default mode (NLTK_EXTENSIONS), which is
 * what NLTK's METEOR and rouge-score use: lowercases, keeps words of at most
 * two characters, then Porter's steps with NLTK's departures (see
 * docs/metrics.md). Returns a heap string (caller frees), NULL when out of
 * memory. `word` must be valid UTF-8. */
char *met_porter_stem(const char *word);

/* --------------------------------------------------------------- WordNet */

/* WordNet 3.0 read from its database files (index.*, data.*, *.exc), as
 * Debian's wordnet-base installs them under /usr/share/wordnet. */
typedef struct met_wordnet met_wordnet;

/* dir NULL: $DFPO_WORDNET, else /usr/share/wordnet. The index and exception
 * files are read now, synset records on demand. */
int met_wordnet_open(met_wordnet **wn, const char *dir, dfpo_err *err);
void met_wordnet_free(met_wordnet *wn);
/* NLTK's WordNetCorpusReader._morphy(form, pos) with exceptions checked:
 * the base forms of `form` that WordNet lists for pos ('n', 'v', 'a', 'r'),
 * in NLTK's order. *out is a heap string vector (met_strv_free). */
int met_wordnet_morphy(met_wordnet *wn, const char *form, char pos, char ***out, size_t *n,
                       dfpo_err *err);
/* The synonym set NLTK's METEOR uses for a word: the names without '_' of
 * the lemmas of wordnet.synsets(word) over nouns, verbs, adjectives and
 * adverbs, plus the word itself; sorted bytewise, no duplicates. */
int met_wordnet_synonyms(met_wordnet *wn, const char *word, char ***out, size_t *n, dfpo_err *err);

/* ---------------------------------------------------------------- corpus */

typedef struct met_vocab met_vocab; /* internal string table */

typedef struct met_text {
  char *raw;     /* the text as given (owned) */
  uint32_t *ids; /* its tokens as ids into the corpus vocabulary (owned) */
  size_t len;
} met_text;

/* Predictions with, per item, references and concepts (either may be
 * empty). Texts are tokenized as they are added. */
typedef struct met_corpus {
  met_tokenize_mode mode;
  size_t n;              /* items */
  met_text *pred;        /* [n] */
  met_text *refs;        /* all references, item by item */
  size_t *ref_start;     /* [n+1]: item i owns refs[ref_start[i] .. ref_start[i+1]) */
  char **concepts;       /* all concepts, lowercased */
  size_t *concept_start; /* [n+1], like ref_start */
  met_vocab *vocab;      /* owned */
  size_t cap, ref_cap, concept_cap;
} met_corpus;

int met_corpus_init(met_corpus *c, met_tokenize_mode mode, dfpo_err *err);
void met_corpus_free(met_corpus *c);
/* Adds one item; DFPO_EDATA when a text is not valid UTF-8. */
int met_corpus_add(met_corpus *c, const char *pred, const char *const *refs, size_t nrefs,
                   const char *const *concepts, size_t nconcepts, dfpo_err *err);
/* The string of a token id. */
const char *met_corpus_token(const met_corpus *c, uint32_t id);
/* CommonGen: predictions one per line (pred_path), in the order of the
 * concept sets of refs_path, a JSONL file whose records carry the references
 * as "references" or "scene" (a list of strings) and the concepts as
 * "concepts" (a list) or "concept_set" ("a#b#c"). Errors name the file and
 * line: counts that do not match, empty lines, invalid UTF-8, bad JSON. */
int met_corpus_load_commongen(met_corpus *c, const char *pred_path, const char *refs_path,
                              dfpo_err *err);
/* Predictions only, one per line (for diversity). */
int met_corpus_load_lines(met_corpus *c, const char *path, dfpo_err *err);

/* --------------------------------------------------------------- metrics */

/* All metrics below read c's token ids (which the tokenize mode made), except
 * sacreBLEU and rouge-score, which tokenize the raw texts their own way. The
 * per_item arrays are optional ([c->n] when given). */

/* BLEU-1..4 as pycocoevalcap's Bleu(4) with option "closest" (corpus level). */
int met_bleu_coco(const met_corpus *c, double bleu[4], dfpo_err *err);
/* sacreBLEU's corpus BLEU (13a tokenizer, exp smoothing, 0..100). */
int met_sacrebleu(const met_corpus *c, double *score, dfpo_err *err);
/* ROUGE-L as pycocoevalcap's Rouge (beta 1.2), mean over items. */
int met_rouge_l_coco(const met_corpus *c, double *mean, double *per_item, dfpo_err *err);
/* rouge-score's ROUGE-1, ROUGE-2, ROUGE-L F-measure (best reference per item,
 * mean over items), with or without its Porter stemming. per_item: [n*3]. */
int met_rouge_score(const met_corpus *c, int stem, double f[3], double *per_item, dfpo_err *err);
/* NLTK 3.8's meteor_score per item (alpha 0.9, beta 3, gamma 0.5), mean. */
int met_meteor(const met_corpus *c, met_wordnet *wn, double *mean, double *per_item, dfpo_err *err);
/* pycocoevalcap's Cider (CIDEr-D: n 1..4, sigma 6, clipping, x10; document
 * frequencies over the corpus' references), mean over items. */
int met_cider_d(const met_corpus *c, double *mean, double *per_item, dfpo_err *err);
/* Share of an item's concepts whose lemmas meet the prediction's lemmas
 * (WordNet morphy), mean over items with concepts. */
int met_coverage(const met_corpus *c, met_wordnet *wn, double *mean, double *per_item,
                 dfpo_err *err);

/* Diversity of the predictions, as gem-metrics' MSTTR and NGramStats. */
typedef struct met_diversity {
  double msttr100;      /* NaN when there are fewer than 100 tokens */
  double distinct[2];   /* distinct-1, distinct-2 */
  size_t vocab_size[2]; /* distinct 1-grams, 2-grams */
  size_t unique[2];     /* n-grams that occur exactly once */
  double entropy[2];    /* bits */
  double mean_length;   /* tokens per prediction */
  size_t total_length;
} met_diversity;

int met_diversity_compute(const met_corpus *c, met_diversity *d, dfpo_err *err);

/* Everything `dfpo metrics --task commongen` reports. */
typedef struct met_commongen_scores {
  size_t n;
  double bleu[4], sacrebleu, cider, rouge_l_coco;
  double rouge[3], rouge_stem[3]; /* rouge-score 1, 2, L F-measure */
  double meteor, coverage;
  met_diversity diversity;
  /* per item (owned; met_commongen_scores_free) */
  double *meteor_items, *cider_items, *rouge_l_coco_items, *coverage_items;
} met_commongen_scores;

int met_commongen_score(const met_corpus *c, met_wordnet *wn, met_commongen_scores *s,
                        dfpo_err *err);
void met_commongen_scores_free(met_commongen_scores *s);

/* ------------------------------------------------------------ statistics */

typedef struct met_summary {
  size_t n;
  double mean, sd;     /* sd: sample (n-1); NaN when n < 2 */
  double ci_lo, ci_hi; /* mean -/+ t(level, n-1) sd / sqrt(n); NaN when n < 2 */
} met_summary;

/* level: e.g. 0.95. DFPO_EUSAGE when n == 0 or level is not in (0, 1). */
int met_summarize(const double *x, size_t n, double level, met_summary *s, dfpo_err *err);

typedef struct met_welch {
  double diff;     /* mean(a) - mean(b) */
  double t, df, p; /* p: two-sided */
} met_welch;

/* Welch's unequal-variance t-test of a against b (each n >= 2). */
int met_welch_test(const double *a, size_t na, const double *b, size_t nb, met_welch *w,
                   dfpo_err *err);
/* Percentile bootstrap CI of the mean: `resamples` resamples of n drawn with
 * replacement from the stream (seed, DFPO_STREAM_BOOTSTRAP), the level's
 * quantiles of the resampled means (GSL's interpolated quantile). */
int met_bootstrap_ci(const double *x, size_t n, size_t resamples, double level, uint64_t seed,
                     double *lo, double *hi, dfpo_err *err);

#endif
