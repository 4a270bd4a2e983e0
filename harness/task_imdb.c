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

/* The paper's reward and sentiment classifier (RL4LMs' IMDB config). */
const char task_imdb_paper_judge[] = "lvwerra/distilbert-imdb";

/* Trained on the 25,000 IMDB training reviews (the validation split for
 * early stopping), evaluated on the 25,000 test reviews. */
const task_judge_def task_imdb_judge = {
    "sentiment", "train", "validation", "test_full", NULL, "label", 0, 0, 0};

/* RL4LMs' learned reward scores prompt + generated text (its
 * LearnedRewardMetric with include_prompt_for_eval): the bytes of both,
 * joined as they are. */
static int imdb_score_batch(const task *t, const task_item *const *items, const char *const *conts,
                            size_t n, double *v, dfpo_err *err) {
  char **s = calloc(n ? n : 1, sizeof *s);
  size_t *lens = calloc(n ? n : 1, sizeof *lens);
  double *p = calloc(n ? n : 1, sizeof *p);
  int rc = s && lens && p ? DFPO_OK : dfpo_err_set(err, DFPO_ERUNTIME, "imdb task: out of memory");
  for (size_t i = 0; !rc && i < n; i++) {
    size_t lp = strlen(items[i]->prompt), lc = strlen(conts[i]);
    if (!(s[i] = malloc(lp + lc + 1))) {
      rc = dfpo_err_set(err, DFPO_ERUNTIME, "imdb task: out of memory");
      break;
    }
    memcpy(s[i], items[i]->prompt, lp);
    memcpy(s[i] + lp, conts[i], lc + 1);
    lens[i] = lp + lc;
  }
  if (!rc && !(rc = task_text_judge_scores(t, (const char *const *)s, lens, n, p, err)))
    for (size_t i = 0; i < n; i++) {
      v[i * IMDB_N + IMDB_REWARD] = p[i];
      v[i * IMDB_N + IMDB_SENTIMENT] = p[i];
    }
  for (size_t i = 0; s && i < n; i++)
    free(s[i]);
  free(s), free(lens), free(p);
  return rc;
}

static int imdb_score(const task *t, const task_item *item, const char *cont, double *v,
                      dfpo_err *err) {
  return imdb_score_batch(t, &item, &cont, 1, v, err);
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
  t->score_batch = imdb_score_batch;
  static const char role[] = "reward and sentiment: P(positive) of prompt + continuation";
  char hub[512];
  /* the Hugging Face classifier, when one is named, replaces the trained
   * judge; opened (and its label checked) before the data is read */
  if ((rc = task_open_hf_judge(t, conf, task_imdb_judge.name,
                               "reward and sentiment: P(%s) of prompt + continuation", "POSITIVE",
                               &x->hf, &x->hf_label, hub, sizeof hub, err)) ||
      (rc = task_find_data(t, conf, "imdb", err)) ||
      (rc = task_load_split(t, TASK_TRAIN, "train.jsonl", NULL, NULL, cap, err)) ||
      (rc = task_load_split(t, TASK_VALIDATION, "validation.jsonl", NULL, NULL, cap, err)) ||
      (rc = task_load_split(t, TASK_TEST, "test.jsonl", NULL, NULL, cap, err)) ||
      (rc = imdb_prompts(t, fraction, err)) ||
      (!x->hf && (rc = task_open_judge(t, conf, task_imdb_judge.name, role, &x->judge, err))))
    return rc;
  if (!x->hf) {
    task_deviation(t, "sentiment judge trained by the harness (docs/judges.md) instead of the "
                      "paper's DistilBERT IMDB classifier (lvwerra/distilbert-imdb)");
  } else if (!hub[0]) {
    task_deviation(t, "sentiment judge: a Hugging Face classifier from a local folder (no hub "
                      "snapshot marker), not known to be the paper's lvwerra/distilbert-imdb "
                      "(eval.json's judges give its folder, SHA-256 and label)");
  } else if (strcmp(hub, task_imdb_paper_judge)) {
    char line[1024];
    snprintf(line, sizeof line,
             "sentiment judge: the Hugging Face classifier %s instead of the paper's %s", hub,
             task_imdb_paper_judge);
    task_deviation(t, line);
  }
  task_deviation(t, task_dev_splits);
  task_text_end(t);
  return DFPO_OK;
}
