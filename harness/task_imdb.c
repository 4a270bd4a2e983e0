/* The imdb task (docs/tasks.md): continue the first half of a review;
 * reward and sentiment = the sentiment judge's P(positive) of prompt +
 * continuation. */
#include "harness/task_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { IMDB_REWARD, IMDB_SENTIMENT, IMDB_N };

const met_metric_info task_imdb_metrics[] = {
    [IMDB_REWARD] = {"reward", "Reward", 1},
    [IMDB_SENTIMENT] = {"sentiment", "Sentiment", 1},
    [IMDB_N] = {NULL, NULL, 0},
};

/* Trained on the 25,000 IMDB training reviews (the validation split for
 * early stopping), evaluated on the 25,000 test reviews. */
const task_judge_def task_imdb_judge = {
    "sentiment", "train", "validation", "test_full", NULL, "label", 0, 0, 0};

static int imdb_score(const task *t, const task_item *item, const char *cont, double *v,
                      dfpo_err *err) {
  const task_text_impl *x = t->impl;
  size_t lp = strlen(item->prompt), lc = strlen(cont);
  char *s = malloc(lp + lc + 1);
  if (!s)
    return dfpo_err_set(err, DFPO_ERUNTIME, "imdb task: out of memory");
  memcpy(s, item->prompt, lp);
  memcpy(s + lp, cont, lc + 1);
  double p = met_judge_score(x->judge, s, lp + lc);
  free(s);
  if (isnan(p))
    return dfpo_err_set(err, DFPO_ERUNTIME, "imdb task: out of memory");
  v[IMDB_REWARD] = p;
  v[IMDB_SENTIMENT] = p;
  return DFPO_OK;
}

/* The split files' prompts are the first half of each review's words; the
 * prompt is rebuilt from the review so task.prompt_fraction applies. */
static int imdb_prompts(task *t, double fraction, dfpo_err *err) {
  for (int s = 0; s < TASK_SPLITS; s++)
    for (size_t i = 0; i < t->n[s]; i++) {
      task_item *it = &t->items[s][i];
      size_t n = task_prompt_len(it->reference, fraction);
      if (!n)
        continue; /* a review without words keeps the split file's prompt */
      char *p = malloc(n + 1);
      if (!p)
        return dfpo_err_set(err, DFPO_ERUNTIME, "imdb task: out of memory");
      memcpy(p, it->reference, n);
      p[n] = '\0';
      free(it->prompt);
      it->prompt = p;
    }
  return DFPO_OK;
}

int task_imdb_open(const cfg *conf, task *t, dfpo_err *err) {
  size_t cap;
  double fraction;
  int rc = task_text_begin(t, conf, &cap, err);
  if (rc || (rc = cfg_get_num(conf, "task.prompt_fraction", &fraction, err)))
    return rc;
  if (fraction <= 0 || fraction >= 1)
    return dfpo_err_set(err, DFPO_EUSAGE, "imdb task: task.prompt_fraction must be in (0, 1)");
  task_text_impl *x = t->impl;
  task_set_metrics(t, task_imdb_metrics, IMDB_N);
  t->score = imdb_score;
  if ((rc = task_find_data(t, conf, "imdb", err)) ||
      (rc = task_load_split(t, TASK_TRAIN, "train.jsonl", NULL, NULL, cap, err)) ||
      (rc = task_load_split(t, TASK_VALIDATION, "validation.jsonl", NULL, NULL, cap, err)) ||
      (rc = task_load_split(t, TASK_TEST, "test.jsonl", NULL, NULL, cap, err)) ||
      (rc = imdb_prompts(t, fraction, err)) ||
      (rc = task_open_judge(t, conf, task_imdb_judge.name,
                            "reward and sentiment: P(positive) of "
                            "prompt + continuation",
                            &x->judge, err)))
    return rc;
  task_deviation(t, "sentiment judge trained by the harness (docs/judges.md) instead of the "
                    "paper's DistilBERT IMDB classifier (lvwerra/distilbert-imdb)");
  task_deviation(t, task_dev_splits);
  task_text_end(t);
  return DFPO_OK;
}
