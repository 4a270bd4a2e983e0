/* Internal to harness/: tasks as the training loop sees them.
 *
 * Prefix: task_. A task holds its prompts (with references) per split and
 * scores one continuation of one prompt into a fixed list of metrics, the
 * first of which is the task reward; an optional aggregate step adds the
 * corpus-level metrics of an evaluation (CIDEr, BLEU, RTP's per-prompt
 * maxima). The harness is the one place that knows both the datasets
 * library (where the data and, for the synthetic task, the true language
 * come from), the metrics library (the judges) and the trainer (which only
 * sees token ids and a reward callback). docs/tasks.md describes the tasks.
 *
 * Ownership: a task owns its items, strings, judges and JSON notes;
 * task_free releases them.
 */
#ifndef DFPO_HARNESS_TASK_H
#define DFPO_HARNESS_TASK_H

#include "common/common.h"
#include "harness/config.h"

#include <cjson/cJSON.h>

enum { TASK_TRAIN = 0, TASK_VALIDATION = 1, TASK_TEST = 2, TASK_SPLITS = 3 };

typedef struct task_item {
  char *prompt;    /* text */
  char *reference; /* the whole reference text (prompt included where the task has one) */
  int label;       /* task-specific (synthetic, imdb: the document's sentiment; else -1) */
  char **refs;     /* every reference (commongen: the scenes; may be empty) */
  size_t n_refs;
  char **concepts; /* commongen: the concept set */
  size_t n_concepts;
} task_item;

#define TASK_MAX_METRICS 8

struct task;

/* What an evaluation produced, for the aggregate step: k samples of each of
 * n prompts, sample j of prompt i at index i*k+j. */
typedef struct task_eval {
  int split;
  size_t n;
  int k;
  const size_t *items;  /* [n] item indices in the split */
  char *const *conts;   /* [n*k] continuations (valid UTF-8) */
  const double *values; /* [n*k*n_metrics] the per-continuation metrics */
} task_eval;

typedef struct task {
  char name[32];
  task_item *items[TASK_SPLITS];
  size_t n[TASK_SPLITS];
  int n_metrics;                              /* metric 0 is the reward */
  const char *metric_names[TASK_MAX_METRICS]; /* static strings */
  /* Scores one continuation of an item: values[n_metrics]. */
  int (*score)(const struct task *t, const task_item *item, const char *continuation,
               double *values, dfpo_err *err);
  /* Optional: adds corpus-level metrics of an evaluation to `metrics` (a
   * JSON object). */
  int (*aggregate)(const struct task *t, const task_eval *ev, cJSON *metrics, dfpo_err *err);
  int samples_per_prompt; /* the task's evaluation protocol (rtp: 25) */
  cJSON *judges;          /* array: the judges that score this task (see task_open) */
  cJSON *deviations;      /* array of strings: where the task departs from the paper */
  int data_verified;      /* 1, 0 (imported unverified), -1 (not from the cache) */
  char data_dir[4096];    /* where the split files came from ("" for synthetic) */
  void *impl;
  void (*impl_free)(void *impl);
} task;

/* Opens the task `name` (synthetic, imdb, rtp, commongen) with its config
 * keys (task.*; docs/tasks.md): loads its splits (from task.data_dir, else
 * the prepared dataset in the cache) and its judges. */
int task_open(const char *name, const cfg *conf, task *t, dfpo_err *err);

/* The byte length of text's first max(1, floor(words * fraction)) words
 * (whitespace-separated; the spacing between them kept): the IMDB and
 * synthetic prompt rule. 0 for a text without words. */
size_t task_prompt_len(const char *text, double fraction);

/* The CommonGen prompt "generate a sentence with: c1 c2 c3." (heap string). */
char *task_commongen_prompt(char *const *concepts, size_t n);

/* Adds "diversity" (gem-metrics' MSTTR-100, distinct-1/2, vocabulary
 * sizes, unique n-grams, entropies, mean length; docs/metrics.md) of n texts
 * (valid UTF-8) to the JSON object metrics. */
int task_diversity(char *const *texts, size_t n, cJSON *metrics, dfpo_err *err);

/* Parameters of the synthetic task (DESIGN.md section 5, docs/synthetic.md). */
typedef struct task_synth_params {
  uint64_t language_seed; /* which language */
  uint64_t data_seed;     /* which documents; the same for every run seed */
  double lambda;          /* sentiment strength of the language */
  size_t n[TASK_SPLITS];  /* documents per split */
  int min_words;          /* document length */
  double prompt_fraction; /* share of a document's words in its prompt */
} task_synth_params;

task_synth_params task_synth_defaults(void);
/* The parameters the config's task.synthetic.* and task.prompt_fraction keys
 * give. */
int task_synth_params_from_cfg(const cfg *conf, task_synth_params *p, dfpo_err *err);

/* The synthetic task: documents sampled from the language (half of each
 * sentiment, alternating), prompts = their first words. Metrics: reward
 * (P(positive | prompt + continuation)), nll_word (the true language's
 * negative log-likelihood per word of the continuation), oov_rate (share of
 * the prompt + continuation's words outside the language). */
int task_synth_init(task *t, const task_synth_params *p, dfpo_err *err);

/* Writes the documents of a split, one per line (a pretraining corpus). */
int task_write_corpus(const task *t, int split, const char *path, dfpo_err *err);

void task_free(task *t);

#endif
