/* Internal to the task files (task.c, task_synthetic.c, task_imdb.c,
 * task_rtp.c, task_commongen.c) and the base-model preparations of
 * `dfpo reproduce` (repro_base.c): what the registry rows point at and what
 * the tasks share. Prefix: task_ (repro_ for repro_base.c's). */
#ifndef DFPO_HARNESS_TASK_INTERNAL_H
#define DFPO_HARNESS_TASK_INTERNAL_H

#include "harness/task.h"
#include "metrics/metrics.h"

/* Whether the record at 0-based index idx of a split file belongs to the
 * split being read. */
typedef int (*task_keep_fn)(const cJSON *rec, size_t idx, void *ctx);

/* Appends the records of t->data_dir/file that keep accepts (all when keep
 * is NULL), at most max_items (0: all), to split: prompt, references (the
 * first is also item->reference), concepts, label (-1 when absent). */
int task_load_split(task *t, int split, const char *file, task_keep_fn keep, void *ctx,
                    size_t max_items, dfpo_err *err);
/* Sets t->data_dir and t->data_verified: task.data_dir when set, else the
 * prepared splits of the dataset in the cache. */
int task_find_data(task *t, const cfg *conf, const char *dataset, dfpo_err *err);
/* Loads the judge `name` from task.judge.<name> (default <cache>/judges/<name>)
 * and records it in t->judges with its role. *out is the caller's. */
int task_open_judge(task *t, const cfg *conf, const char *name, const char *role, met_judge **out,
                    dfpo_err *err);
/* The folder the value of a task.judge.* key names (into buf): the value
 * itself, a folder. The one place a judge's name is turned into a path (a
 * hub name would be resolved here). */
int task_judge_path(const char *value, char *buf, size_t n, dfpo_err *err);
/* Whether something else replaces the trained judge `name` (*set):
 * task.judge.<name>_model names a Hugging Face classifier, or (toxicity)
 * task.judge.toxicity_api is perspective. dfpo reproduce makes no trained
 * judge then. */
int task_judge_replaced(const cfg *conf, const char *name, int *set, dfpo_err *err);
/* When task.judge.<name>_model is set: opens that Hugging Face classifier
 * (task_judge_path) on the current device, picks its label
 * (task.judge.<name>_label; empty: the label called dflt_name, else the only
 * label of a one-label model, else label 1 of a two-label model, else an
 * error asking for the key) and records it in t->judges with its role
 * (role_fmt with the label's name for its %s; kind "huggingface": folder, model_type, label, the
 * SHA-256 of model.safetensors and config.json, the hub revision or "local folder"). *out stays
 * NULL when the key is empty; *hub gets the hub repository the folder is a snapshot of ("" when
 * unknown). Both keys are read either way. */
int task_open_hf_judge(task *t, const cfg *conf, const char *name, const char *role_fmt,
                       const char *dflt_name, met_hf_judge **out, int *label, char *hub,
                       size_t hub_n, dfpo_err *err) __attribute__((format(printf, 4, 0)));
void task_deviation(task *t, const char *text);
/* Appends {"role": role, "id": id} to t->judges and returns it (owned by
 * t), for more fields. */
cJSON *task_add_judge(task *t, const char *role, const char *id);

/* What a task on text holds: its judge (trained, or a Hugging Face
 * classifier and the label it scores with) or WordNet (task_text_begin). */
typedef struct task_text_impl {
  met_judge *judge;
  met_hf_judge *hf;
  int hf_label;
  met_perspective *api; /* rtp: the Perspective API */
  met_wordnet *wn;
  double repeat_penalty; /* commongen: task.commongen.repeat_penalty */
} task_text_impl;
/* The judge's scores of n texts (lens NULL: NUL-terminated): the Hugging
 * Face classifier's probability of its label, in padded batches, or the
 * Perspective API's TOXICITY (one request per text not in its cache), when
 * the task has one (texts with invalid UTF-8 repaired first, as
 * dfpo_utf8_fix does), else the trained judge's score. */
int task_text_judge_scores(const task *t, const char *const *texts, const size_t *lens, size_t n,
                           double *out, dfpo_err *err);
/* Sets up t as a task on text: a task_text_impl, one sample per prompt,
 * and *cap = task.max_items. */
int task_text_begin(task *t, const cfg *conf, size_t *cap, dfpo_err *err);
/* Adds the deviations every task on text has (GPT-2 policy; an import
 * unverified). */
void task_text_end(task *t);
/* "splits made by the harness with its own seeded shuffle ..." */
extern const char task_dev_splits[];
/* Sets t->metric_names from a row's metrics: the first n keys. */
void task_set_metrics(task *t, const met_metric_info *m, int n);

/* The tasks: their open functions, their metrics (registry rows) and what
 * tests/harness/test_metric_names.c runs directly. */
int task_synthetic_open(const cfg *conf, task *t, dfpo_err *err);
extern const met_metric_info task_synthetic_metrics[];
extern const char task_synthetic_note[];
int task_imdb_open(const cfg *conf, task *t, dfpo_err *err);
extern const met_metric_info task_imdb_metrics[];
extern const task_judge_def task_imdb_judge;
extern const char task_imdb_paper_judge[]; /* lvwerra/distilbert-imdb */
int task_rtp_open(const cfg *conf, task *t, dfpo_err *err);
extern const met_metric_info task_rtp_metrics[];
extern const task_judge_def task_rtp_judge;
int task_rtp_aggregate(const task *t, const task_eval *ev, cJSON *m, dfpo_err *err);
int task_commongen_open(const cfg *conf, task *t, dfpo_err *err);
extern const met_metric_info task_commongen_metrics[];
extern const met_metric_id task_commongen_library[];
int task_commongen_aggregate(const task *t, const task_eval *ev, cJSON *m, dfpo_err *err);

/* repro_base.c: the base models `dfpo reproduce` prepares (task_def.base):
 * the synthetic language's, and one pretrained on a text task's dataset
 * (its tokenizer, base model and judge). */
int repro_base_synthetic(const task_def *d, task_base *b, dfpo_err *err);
int repro_base_text(const task_def *d, task_base *b, dfpo_err *err);
/* model.init pretrain on a task of source/target pairs (commongen): the
 * data, a SentencePiece model trained on the training references, a T5
 * pretrained on the training pairs (and span corruption of their targets,
 * pretrain.span_fraction), validated on the validation pairs; each step
 * cached under bases/ and reused. model.arch must be t5. */
int repro_base_t5(const task_def *d, task_base *b, dfpo_err *err);

#endif
