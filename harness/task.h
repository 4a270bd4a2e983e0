/* Internal to harness/: tasks as the training loop sees them.
 *
 * Prefix: task_. A task holds its prompts (with references) per split and
 * scores one continuation of one prompt into a fixed list of metrics, the
 * first of which is the task reward. The harness is the one place that
 * knows both the datasets library (where the data and, for the synthetic
 * task, the true language come from) and the trainer (which only sees token
 * ids and a reward callback).
 *
 * Ownership: a task owns its items and strings; task_free releases them.
 */
#ifndef DFPO_HARNESS_TASK_H
#define DFPO_HARNESS_TASK_H

#include "common/common.h"

enum { TASK_TRAIN = 0, TASK_VALIDATION = 1, TASK_TEST = 2, TASK_SPLITS = 3 };

typedef struct task_item {
  char *prompt;    /* text */
  char *reference; /* the whole reference text (prompt included where the task has one) */
  int label;       /* task-specific (synthetic: the document's sentiment) */
} task_item;

#define TASK_MAX_METRICS 8

typedef struct task {
  char name[32];
  task_item *items[TASK_SPLITS];
  size_t n[TASK_SPLITS];
  int n_metrics;                              /* metric 0 is the reward */
  const char *metric_names[TASK_MAX_METRICS]; /* static strings */
  /* Scores one continuation: values[n_metrics]. */
  int (*score)(const struct task *t, const char *prompt, const char *continuation, double *values,
               dfpo_err *err);
  void *impl;
  void (*impl_free)(void *impl);
} task;

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
