/* Internal to the task files (task.c, task_synthetic.c, task_text.c): what
 * the tasks share. Prefix: task_. */
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
void task_deviation(task *t, const char *text);
/* Appends {"role": role, "id": id} to t->judges and returns it (owned by
 * t), for more fields. */
cJSON *task_add_judge(task *t, const char *role, const char *id);
/* imdb, rtp, commongen. */
int task_text_open(const char *name, const cfg *conf, task *t, dfpo_err *err);

#endif
