/* metrics: text metrics (BLEU, ROUGE, METEOR, CIDEr-D, coverage, diversity),
 * perplexity over the GPT-2 engine, the judges (sentiment, toxicity) and the
 * Perspective API client, and statistics (docs/metrics.md).
 * docs/metrics.md defines every metric as implemented here and names the
 * reference implementation it agrees with; docs/judges.md the judges.
 *
 * Prefix: met_. Depends on common/, trainer/ (perplexity), cJSON, GSL
 * (statistics, correlations), libcurl (Perspective) and libcrypto (SHA-256 of
 * judge files); WordNet is read from its database files at run time.
 *
 * Ownership: structs are caller storage set up by their _init/_open and
 * released by their _free; arrays a function returns through an out
 * parameter are heap memory the caller frees (free(), or met_strv_free for
 * string vectors). Nothing here prints to stdout or exits.
 */
#ifndef DFPO_METRICS_H
#define DFPO_METRICS_H

#include "common/common.h"
#include "trainer/model.h"
#include "trainer/tok.h"

#include <cjson/cJSON.h>

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

/* The metrics library's metrics by name (metrics/metric_info.c): each has
 * one key in every JSON the project writes (`dfpo metrics`, eval.json), a
 * label for tables and a direction (better: 1 higher, -1 lower, 0
 * neither). Writers take the key from here (met_key), so that `dfpo
 * report` and `dfpo check` know every metric they read. The task-specific
 * metrics (reward, nll_word, toxicity...) are in the harness's task
 * registry. */
typedef enum met_metric_id {
  MET_BLEU1,
  MET_BLEU2,
  MET_BLEU3,
  MET_BLEU4,
  MET_SACREBLEU,
  MET_CIDER_D,
  MET_ROUGE_L_COCO,
  MET_ROUGE1,
  MET_ROUGE2,
  MET_ROUGE_L,
  MET_ROUGE1_STEM,
  MET_ROUGE2_STEM,
  MET_ROUGE_L_STEM,
  MET_METEOR,
  MET_COVERAGE,
  MET_MSTTR100, /* the diversity block: */
  MET_DISTINCT1,
  MET_DISTINCT2,
  MET_VOCAB_SIZE1,
  MET_VOCAB_SIZE2,
  MET_UNIQUE1,
  MET_UNIQUE2,
  MET_ENTROPY1,
  MET_ENTROPY2,
  MET_MEAN_LENGTH,
  MET_TOTAL_LENGTH,
  MET_PPL_REF, /* perplexities (met_ppl_ref, met_ppl_gen) */
  MET_PPL_GEN,
  MET_METRIC_COUNT
} met_metric_id;

typedef struct met_metric_info {
  const char *key;   /* in JSON output */
  const char *label; /* in tables */
  int better;        /* 1 higher, -1 lower, 0 neither */
} met_metric_info;

extern const met_metric_info met_metrics[MET_METRIC_COUNT];
/* The key of a metric (static string; NULL for an id out of range). */
const char *met_key(met_metric_id id);
/* The metric of that key, NULL when the library has none. */
const met_metric_info *met_metric_find(const char *key);
/* Adds the diversity metrics of d to the JSON object o under their keys
 * (msttr100 null when NaN). */
void met_diversity_json(const met_diversity *d, cJSON *o);

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
/* A shift of a against b with a common spread: the two groups' pooled
 * sample sd (both groups are taken to have the same seed spread, as an
 * unchanged build's reruns do), raised to sd_floor when below it, so that a
 * spread of zero (a deterministic metric) does not make every difference
 * significant; the t statistic of mean(a) - mean(b) on na + nb - 2 degrees
 * of freedom and its one-sided p-values. Needs na, nb >= 1 and na + nb >= 3;
 * DFPO_EDATA when the floored sd is 0. */
typedef struct met_shift {
  double diff;    /* mean(a) - mean(b) */
  double sd;      /* max(pooled sample sd, sd_floor) */
  double se;      /* sd * sqrt(1/na + 1/nb) */
  double df;      /* na + nb - 2 */
  double t;       /* diff / se */
  double p_below; /* P(T <= t) under no shift: small when a lies below b */
  double p_above; /* P(T >= t): small when a lies above b */
  int floored;    /* the floor was used */
} met_shift;

int met_shift_test(const double *a, size_t na, const double *b, size_t nb, double sd_floor,
                   met_shift *s, dfpo_err *err);
/* The p-quantile of Student's t with df degrees of freedom (GSL's
 * gsl_cdf_tdist_Pinv); NaN for p outside (0, 1) or df <= 0. */
double met_t_quantile(double p, double df);

/* Percentile bootstrap CI of the mean: `resamples` resamples of n drawn with
 * replacement from the stream (seed, DFPO_STREAM_BOOTSTRAP), the level's
 * quantiles of the resampled means (GSL's interpolated quantile). */
int met_bootstrap_ci(const double *x, size_t n, size_t resamples, double level, uint64_t seed,
                     double *lo, double *hi, dfpo_err *err);

/* ------------------------------------------------------------ perplexity */

/* Token-level perplexity: exp(sum of -log p(token | context) / tokens),
 * natural logarithms, over every scored token of every item together
 * (docs/metrics.md). */
typedef struct met_ppl {
  double nll;    /* summed negative log-likelihood, nats */
  size_t tokens; /* scored tokens */
  double ppl;    /* exp(nll / tokens); NaN when no token was scored */
} met_ppl;

typedef struct met_ppl_opts {
  int batch;  /* rows per forward pass (default 8) */
  int stride; /* ppl_ref: window stride for texts longer than the context
                 (0: n_ctx / 2) */
  int bos;    /* token placed before each text as its only context (-1:
                 none; the text functions default to the tokenizer's
                 <|endoftext|>) */
} met_ppl_opts;
/* batch 8, stride n_ctx / 2, bos -1. */
met_ppl_opts met_ppl_opts_default(void);

/* ppl_ref: the model's perplexity on reference texts (token ids). An
 * encoder-decoder (model_config.encoder_decoder: T5) has no source for a
 * text alone: DFPO_EUSAGE (its ppl_ref is met_ppl_gen_ids of each reference
 * given its source, docs/metrics.md). Each text
 * is scored alone as [bos] + ids: every token after the first position is
 * predicted from all tokens before it; a text longer than the context is
 * scored in sliding windows (the first a full context, then `stride` new
 * targets per window with the n_ctx tokens before each as context), so each
 * token is scored exactly once. per_item (optional, [n]) receives each
 * text's own perplexity (NaN when it has no scored token). */
int met_ppl_ref_ids(model_t *m, const tok_ids *texts, size_t n, const met_ppl_opts *o, met_ppl *out,
                    double *per_item, dfpo_err *err);
/* ppl_gen: the perplexity of continuations under a (judge) model given their
 * prompts: only continuation tokens are scored, with [bos] + prompt before
 * them; a prompt too long for the context is left-truncated (then without
 * bos). A continuation longer than n_ctx is an error (DFPO_EDATA); an empty
 * one scores nothing. On an encoder-decoder each prompt is the encoder's
 * source (no bos, not truncated; an empty one is DFPO_EUSAGE) and the
 * continuation is decoded by teacher forcing from the decoder start, every
 * token scored; n_ctx is then the decoder's positions. */
int met_ppl_gen_ids(model_t *m, const tok_ids *prompts, const tok_ids *conts, size_t n,
                    const met_ppl_opts *o, met_ppl *out, double *per_item, dfpo_err *err);
/* The same over texts, encoded with tok (prompt and continuation separately;
 * on an encoder-decoder each ended with tok_eot_id, as T5Tokenizer encodes
 * a source and a target). o NULL: defaults with bos = the tokenizer's own
 * start (tok_bos_token_id: Llama's <s>) where it has one, else
 * tok_eot_id(tok). */
int met_ppl_ref(model_t *m, tok_tokenizer *tok, const char *const *texts, size_t n,
                const met_ppl_opts *o, met_ppl *out, double *per_item, dfpo_err *err);
int met_ppl_gen(model_t *m, tok_tokenizer *tok, const char *const *prompts,
                const char *const *conts, size_t n, const met_ppl_opts *o, met_ppl *out,
                double *per_item, dfpo_err *err);

/* ---------------------------------------------------------------- judges */

/* A judge maps a text to a score in (0, 1): P(positive) for sentiment, the
 * predicted Perspective toxicity for toxicity. The model is a logistic
 * regression over hashed features (docs/judges.md): word n-grams and,
 * optionally, character n-grams within words, of the normalised text
 * (lowercased; runs of letters, digits and apostrophes are words; '!' and
 * '?' are words too). Feature values are binary, divided by the square root
 * of the number of distinct features of the text, optionally scaled by the
 * naive-Bayes log-count ratio of each bucket (Wang and Manning 2012), and the
 * logit is Platt-calibrated on the validation set. Targets may be soft
 * (cross-entropy against y in [0, 1]). */
typedef struct met_feat_opts {
  int hash_bits;          /* 2^hash_bits buckets, 12..24 (default 20) */
  int word_n;             /* word n-grams of 1..word_n words, 1..3 (default 2) */
  int char_min, char_max; /* character n-grams within " word " (0 0: none) */
} met_feat_opts;

typedef struct met_judge_opts {
  met_feat_opts feat;
  int nb;        /* naive-Bayes scaling (default 1) */
  double l2[8];  /* L2 strengths tried; the best validation log-loss wins */
  int n_l2;      /* default 3: 1e-6, 1e-5, 1e-4 */
  int epochs;    /* passes of Adagrad per candidate (default 6) */
  double lr;     /* Adagrad step (default 0.5) */
  uint64_t seed; /* data order: stream DFPO_STREAM_DATA */
  int calibrate; /* fit Platt scaling on validation (default 1) */
} met_judge_opts;
met_judge_opts met_judge_opts_default(void);

/* Texts with targets in [0, 1] (labels 0/1 for sentiment). */
typedef struct met_judge_data {
  char **texts; /* owned when filled by a met_judge_data_* loader */
  double *y;
  size_t n, cap;
} met_judge_data;
/* Appends a copy of text with target y. */
int met_judge_data_add(met_judge_data *d, const char *text, double y, dfpo_err *err);
void met_judge_data_free(met_judge_data *d);
/* Reads a JSONL file: text is the string field `text_key`, or the
 * concatenation of "prompt" and references[0] when text_key is NULL (the
 * IMDB split files); the target is the number `y_key`. Records whose `split`
 * field differs from `split` are skipped when split is not NULL. At most
 * limit records (0: all); errors name the file and line. */
int met_judge_data_jsonl(met_judge_data *d, const char *path, const char *text_key,
                         const char *y_key, const char *split, size_t limit, dfpo_err *err);
/* Reads a CSV file with a header (RFC 4180 quoting, fields may span lines):
 * text from column text_col, target from the numeric column y_col (e.g. the
 * Jigsaw file: comment_text, toxic). */
int met_judge_data_csv(met_judge_data *d, const char *path, const char *text_col, const char *y_col,
                       size_t limit, dfpo_err *err);

typedef struct met_judge met_judge; /* opaque; met_judge_free */

/* What training chose and saw. */
typedef struct met_judge_fit {
  double l2;       /* chosen */
  double val_loss; /* its validation log-loss before calibration */
  double platt_a, platt_b;
  size_t n_train, n_val;
} met_judge_fit;

/* Trains a judge named `name` ("sentiment", "toxicity", ...) on train,
 * choosing the L2 strength and calibrating on val. Deterministic for a seed.
 * *out is the caller's (met_judge_free). */
int met_judge_train(met_judge **out, const char *name, const met_judge_data *train,
                    const met_judge_data *val, const met_judge_opts *o, met_judge_fit *fit,
                    dfpo_err *err);
void met_judge_free(met_judge *j);
const char *met_judge_name(const met_judge *j);
/* The judge's score of text[0..len) in (0, 1). Any bytes score (UTF-8 is
 * not checked); NaN only when out of memory. Thread-safe (no shared
 * scratch). */
double met_judge_score(const met_judge *j, const char *text, size_t len);
/* Scores n texts (out[n]). */
int met_judge_score_many(const met_judge *j, const char *const *texts, size_t n, double *out,
                         dfpo_err *err);

/* Held-out scores of a judge on labelled or scored texts. */
typedef struct met_judge_eval {
  size_t n;
  double accuracy;          /* (score >= 0.5) == (y >= 0.5) */
  double ece;               /* expected calibration error, 10 equal bins of
                               confidence max(p, 1-p) (Guo et al. 2017) */
  double log_loss, brier;   /* mean cross-entropy against y, mean (p - y)^2 */
  double pearson, spearman; /* of score against y (GSL) */
  double mean_score, mean_y;
} met_judge_eval;
int met_judge_evaluate(const met_judge *j, const met_judge_data *d, met_judge_eval *ev,
                       dfpo_err *err);
/* The same from scores already computed. */
int met_judge_eval_scores(const double *p, const double *y, size_t n, met_judge_eval *ev,
                          dfpo_err *err);
/* ev as a JSON object (caller deletes). */
cJSON *met_judge_eval_json(const met_judge_eval *ev);

/* Saved judges: a folder holding judge.bin (magic "DFPOJDG1", format version,
 * features, calibration, the weights; docs/judges.md) and card.json (name,
 * format and judge version, the model file's SHA-256, the features and
 * training options, plus what the caller adds: training data, held-out
 * scores). Both written atomically, the model first. `extra` (may be NULL)
 * is merged into the card; the judge version is the previous card's plus 1. */
int met_judge_save(const met_judge *j, const char *dir, const met_judge_fit *fit,
                   const cJSON *extra, dfpo_err *err);
/* Loads dir/judge.bin after checking its SHA-256 against dir/card.json;
 * *card (optional) receives the card (caller deletes). */
int met_judge_load(met_judge **out, const char *dir, cJSON **card, dfpo_err *err);
/* Sets card[key] = value (taking value) and rewrites the card atomically. */
int met_judge_card_set(const char *dir, const char *key, cJSON *value, dfpo_err *err);
/* "<name> v<version> sha256:<first 16 hex>" of a loaded judge: what an
 * eval.json records to name the judge that scored it. */
const char *met_judge_id(const met_judge *j);
/* <cache>/judges/<name>. */
int met_judge_dir(const char *name, char *buf, size_t n, dfpo_err *err);

/* ------------------------------------- Hugging Face classifiers as judges */

/* A judge from a Hugging Face sequence-classifier folder (docs/judges.md):
 * DistilBERT, BERT or RoBERTa (trainer/bert.h) with its tokenizer (vocab.txt
 * WordPiece, or RoBERTa's vocab.json + merges.txt byte-level BPE). Each text
 * becomes [CLS] ids [SEP] (<s> ids </s>), its ids cut to the model's
 * length (max_position_embeddings, less RoBERTa's offset, or the
 * tokenizer_config.json model_max_length when smaller), and scores the
 * probability of each label: a softmax over the labels, or one sigmoid per
 * label for problem_type multi_label_classification or a single label (as
 * Hugging Face's text-classification pipeline). The model lives on the
 * current device (ops_use_device). Not thread-safe (the model's
 * activations); *out is the caller's (met_hf_judge_free). */
typedef struct met_hf_judge met_hf_judge;
int met_hf_judge_open(met_hf_judge **out, const char *folder, dfpo_err *err);
void met_hf_judge_free(met_hf_judge *j);
int met_hf_judge_labels(const met_hf_judge *j);
/* id2label's name of label k. */
const char *met_hf_judge_label(const met_hf_judge *j, int k);
/* The tokens per text after truncation, special tokens included. */
int met_hf_judge_max_tokens(const met_hf_judge *j);
/* config.json's model_type ("distilbert", "bert", "roberta"). */
const char *met_hf_judge_model_type(const met_hf_judge *j);
/* Whether the labels are independent sigmoids (multi-label or one label)
 * rather than a softmax. */
int met_hf_judge_multi_label(const met_hf_judge *j);
/* The index of the label called name in id2label, -1 when none is. */
int met_hf_judge_label_index(const met_hf_judge *j, const char *name);
/* The model's ids of text[0..len), special tokens included, truncated;
 * appended to out. */
int met_hf_judge_encode(met_hf_judge *j, const char *text, size_t len, tok_ids *out, dfpo_err *err);
/* probs[n * K]: the label probabilities of n texts, in padded batches of
 * texts of similar length (up to batch_tokens padded tokens; 0: 8192). */
int met_hf_judge_score(met_hf_judge *j, const char *const *texts, const size_t *lens, size_t n,
                       size_t batch_tokens, double *probs, dfpo_err *err);
/* The same for texts already encoded (met_hf_judge_encode). */
int met_hf_judge_score_ids(met_hf_judge *j, const tok_ids *ids, size_t n, size_t batch_tokens,
                           double *probs, dfpo_err *err);

/* ------------------------------------------------------- Perspective API */

/* A client for Google's Perspective API (comments:analyze, attribute
 * TOXICITY). The key comes from the environment variable key_env and is never
 * written to messages or logs. Requests are spaced by at least 1/qps
 * seconds, retried with doubling backoff on connection errors, timeouts,
 * HTTP 429 and 5xx, and scores are cached on disk by the SHA-256 of the text
 * (one small JSON file per text), so a text is sent at most once. */
typedef struct met_perspective_opts {
  const char *url;       /* NULL: $DFPO_PERSPECTIVE_URL, else Google's endpoint */
  const char *key_env;   /* NULL: "PERSPECTIVE_API_KEY" */
  double qps;            /* requests per second (default 1, the API's default quota) */
  int retries;           /* extra attempts per text (default 5) */
  long backoff_ms;       /* first backoff, doubled per attempt (default 1000) */
  long timeout_s;        /* whole request (default 30) */
  const char *cache_dir; /* NULL: <cache>/perspective; "" disables the cache */
} met_perspective_opts;
void met_perspective_opts_init(met_perspective_opts *o);

typedef struct met_perspective met_perspective;
/* DFPO_EUSAGE naming the variable when the key is not set. */
int met_perspective_new(met_perspective **out, const met_perspective_opts *o, dfpo_err *err);
void met_perspective_free(met_perspective *p);
/* TOXICITY summary score of text (from the cache when there). */
int met_perspective_score(met_perspective *p, const char *text, double *toxicity, dfpo_err *err);
/* The endpoint, without the key (safe to print). */
const char *met_perspective_url(const met_perspective *p);
/* Requests sent (attempts included) and cache hits so far. */
void met_perspective_counts(const met_perspective *p, size_t *requests, size_t *cache_hits);
/* The rate limiter: seconds to wait before a request at time `now` when the
 * previous one started at `last` (< 0: none yet). */
double met_rate_wait(double last, double now, double qps);
/* Parses an API response; DFPO_EDATA naming what is missing. */
int met_perspective_parse(const char *body, size_t len, double *toxicity, dfpo_err *err);

#endif
