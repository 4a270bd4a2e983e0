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
#include "metrics/metrics.h"

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
  /* Optional: scores n continuations at once, row i (values[i * n_metrics
   * ..]) for items[i] and continuations[i]; the numbers score gives, from a
   * judge that scores in batches (task_score_many picks it). */
  int (*score_batch)(const struct task *t, const task_item *const *items,
                     const char *const *continuations, size_t n, double *values, dfpo_err *err);
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

/* ------------------------------------------------------------ registry */

/* A judge trained by the harness that scores a task (`dfpo judge train
 * NAME`, docs/judges.md): what it is trained on in the task's dataset. */
typedef struct task_judge_def {
  const char *name;               /* sentiment, toxicity; also task.judge.<name> */
  const char *train, *val, *test; /* split files of the dataset (NAME.jsonl) */
  const char *text_key;           /* the text field (NULL: the first reference) */
  const char *y_key;              /* the target field */
  int by_split;                   /* the splits are a "split" field of one file */
  int char_min, char_max;         /* its character n-gram default (0, 0: none) */
} task_judge_def;

/* What `dfpo reproduce` (model.init pretrain) asks of a task's base-model
 * preparation: in, the suite's config and folder; out, the paths the cells
 * get. The preparation caches what it makes under a key of its config and
 * writes <root>/base-<task>.json. */
typedef struct task_base {
  const cfg *conf;         /* the resolved suite config */
  const char *root;        /* the suite folder */
  const char *task;        /* the task's name */
  const char *shared_data; /* the shared-data folder (local copies of archives) */
  char model[2300];        /* out: the base model */
  char tok[2300];          /* out: its tokenizer folder */
  char judge[2300];        /* out: the judge folder the cells get ("": their own) */
} task_base;

/* One row per task: everything a caller dispatches on. Adding a task is a
 * file of its own (task_<name>.c: open, score, aggregate, its metrics) and
 * one row in task.c's registry (docs/tasks.md). */
typedef struct task_def {
  const char *name;
  const char *dataset;        /* its dataset in the manifest (NULL: made from a seed) */
  const char *shared_archive; /* its archive under the shared-data folder (NULL: none) */
  /* Opens it (t is zeroed and named; on failure the caller frees it). */
  int (*open)(const cfg *conf, task *t, dfpo_err *err);
  /* dfpo reproduce's base model for model.init pretrain (NULL: not built;
   * repro_base.c). */
  int (*base)(const struct task_def *d, task_base *b, dfpo_err *err);
  /* The task-specific metrics it writes (the per-sample ones, reward
   * first, then the corpus-level ones), ended by {NULL}. */
  const met_metric_info *metrics;
  /* The metrics library's metrics it writes besides diversity, ppl_ref and
   * ppl_gen, ended by MET_METRIC_COUNT. */
  const met_metric_id *library;
  const task_judge_def *judge; /* the trained judge that scores it (NULL: none) */
  /* Whether it is one of the paper's tasks (the report's notes on judges,
   * policies and splits apply), rather than the offline stand-in (whose
   * base model and reference continuations the report describes). */
  int paper;
  const char *report_note; /* what `dfpo report` says of it under its tables (NULL: nothing) */
} task_def;

/* The registry row of a task, NULL when there is none. */
const task_def *task_find(const char *name);
/* Row i (0-based) of the registry, NULL past the last. */
const task_def *task_def_at(int i);
/* The row whose judge is called name, NULL when none. */
const task_def *task_find_judge(const char *name);
/* A metric by its key: a task's (the first row that has it), else the
 * metrics library's (met_metric_find); NULL when nobody writes it. */
const met_metric_info *task_metric_find(const char *key);
/* The names of the tasks, ", "-separated, "or" before the last, into buf. */
void task_names(char *buf, size_t n);

/* Opens the task `name` (a registry row) with its config keys (task.*;
 * docs/tasks.md): loads its splits (from task.data_dir, else the prepared
 * dataset in the cache) and its judges. */
int task_open(const char *name, const cfg *conf, task *t, dfpo_err *err);

/* Scores n continuations of items into values[n * t->n_metrics] (row i
 * for items[i]): t->score_batch when the task has one, else t->score one
 * by one. */
int task_score_many(const task *t, const task_item *const *items, const char *const *continuations,
                    size_t n, double *values, dfpo_err *err);

/* The byte length of text's first max(1, floor(words * fraction)) words
 * (whitespace-separated; the spacing between them kept): the IMDB and
 * synthetic prompt rule. 0 for a text without words. */
size_t task_prompt_len(const char *text, double fraction);

/* The CommonGen prompt "generate a sentence with: c1 c2 c3." (heap string). */
char *task_commongen_prompt(char *const *concepts, size_t n);
/* Whether a commongen sentence repeats its prompt as RL4LMs'
 * common_gen_repeat_penalty shaping tests it (CommonGenPenaltyShapingFunction,
 * on the text lower-cased): it holds the concepts joined by single spaces
 * (the prompt's concept part), "generate a sentence with: ", "generate" or
 * "sentence". ASCII letters are lower-cased (the concepts and the
 * searched words are ASCII, so other letters cannot make a match). */
int task_commongen_repeats(char *const *concepts, size_t n, const char *text);

/* Adds "diversity" (gem-metrics' MSTTR-100, distinct-1/2, vocabulary
 * sizes, unique n-grams, entropies, mean length; docs/metrics.md) of n texts
 * (valid UTF-8) to the JSON object metrics. */
int task_diversity(char *const *texts, size_t n, cJSON *metrics, dfpo_err *err);

/* Parameters of the synthetic task (docs/synthetic.md). */
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
