/* The commongen task (docs/tasks.md): a sentence with the given concepts;
 * reward = METEOR against the item's references, less
 * task.commongen.repeat_penalty when the sentence repeats the prompt
 * (RL4LMs' shaping); the CommonGen metrics over the test samples. */
#include "harness/task_internal.h"

#include <stdlib.h>
#include <string.h>

enum { CG_REWARD, CG_N };

const met_metric_info task_commongen_metrics[] = {
    [CG_REWARD] = {"reward", "Reward", 1},
    [CG_N] = {NULL, NULL, 0},
};

/* The per-sample meteor, then what the aggregate writes. */
const met_metric_id task_commongen_library[] = {
    MET_METEOR, MET_BLEU4,  MET_ROUGE_L_COCO, MET_CIDER_D,   MET_COVERAGE,
    MET_ROUGE1, MET_ROUGE2, MET_ROUGE_L,      MET_SACREBLEU, MET_METRIC_COUNT};

/* A corpus of one item per continuation, each with its item's references
 * and concepts. */
static int commongen_corpus(met_corpus *c, const task_item *const *items, char *const *conts,
                            size_t n, dfpo_err *err) {
  int rc = met_corpus_init(c, MET_TOK_DEFAULT, err);
  for (size_t i = 0; !rc && i < n; i++)
    rc = met_corpus_add(c, conts[i], (const char *const *)items[i]->refs, items[i]->n_refs,
                        (const char *const *)items[i]->concepts, items[i]->n_concepts, err);
  return rc;
}

static int commongen_score(const task *t, const task_item *item, const char *cont, double *v,
                           dfpo_err *err) {
  const task_text_impl *x = t->impl;
  if (!item->n_refs)
    return dfpo_err_set(err, DFPO_EDATA, "commongen task: '%s' has no references to score against",
                        item->prompt);
  char *fixed = dfpo_utf8_fix(cont, strlen(cont));
  if (!fixed)
    return dfpo_err_set(err, DFPO_ERUNTIME, "commongen task: out of memory");
  met_corpus c;
  double meteor = 0;
  int rc = commongen_corpus(&c, &item, &fixed, 1, err);
  if (!rc)
    rc = met_meteor(&c, x->wn, &meteor, NULL, err);
  met_corpus_free(&c);
  int rep = 0;
  if (!rc && x->repeat_penalty > 0 &&
      (rep = task_commongen_repeats(item->concepts, item->n_concepts, fixed)) < 0)
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "commongen task: out of memory");
  free(fixed);
  v[0] = meteor - (rep > 0 ? x->repeat_penalty : 0.0); /* reward */
  v[1] = meteor;                                       /* meteor */
  return rc;
}

int task_commongen_aggregate(const task *t, const task_eval *ev, cJSON *m, dfpo_err *err) {
  const task_text_impl *x = t->impl;
  size_t n = ev->n * (size_t)ev->k;
  const task_item **items = malloc(sizeof(*items) * (n ? n : 1));
  if (!items)
    return dfpo_err_set(err, DFPO_ERUNTIME, "commongen task: out of memory");
  for (size_t i = 0; i < n; i++)
    items[i] = &t->items[ev->split][ev->items[i / (size_t)ev->k]];
  met_corpus c;
  met_commongen_scores s;
  memset(&s, 0, sizeof s);
  int rc = commongen_corpus(&c, items, ev->conts, n, err);
  if (!rc)
    rc = met_commongen_score(&c, x->wn, &s, err);
  if (!rc) {
    cJSON_AddNumberToObject(m, met_key(MET_BLEU4), s.bleu[3]);
    cJSON_AddNumberToObject(m, met_key(MET_ROUGE_L_COCO), s.rouge_l_coco);
    cJSON_AddNumberToObject(m, met_key(MET_CIDER_D), s.cider);
    cJSON_AddNumberToObject(m, met_key(MET_COVERAGE), s.coverage);
    cJSON_AddNumberToObject(m, met_key(MET_ROUGE1), s.rouge[0]);
    cJSON_AddNumberToObject(m, met_key(MET_ROUGE2), s.rouge[1]);
    cJSON_AddNumberToObject(m, met_key(MET_ROUGE_L), s.rouge[2]);
    cJSON_AddNumberToObject(m, met_key(MET_SACREBLEU), s.sacrebleu);
  }
  met_commongen_scores_free(&s);
  met_corpus_free(&c);
  free(items);
  return rc;
}

/* The official test file has no references: the harness holds out every
 * 50th training concept set for validation and tests on the dev set. */
static int keep_train(const cJSON *rec, size_t idx, void *ctx) {
  (void)rec, (void)ctx;
  return idx % 50 != 49;
}
static int keep_holdout(const cJSON *rec, size_t idx, void *ctx) {
  (void)rec, (void)ctx;
  return idx % 50 == 49;
}

static int commongen_prompts(task *t, dfpo_err *err) {
  for (int s = 0; s < TASK_SPLITS; s++)
    for (size_t i = 0; i < t->n[s]; i++) {
      task_item *it = &t->items[s][i];
      if (!it->n_concepts)
        return dfpo_err_set(err, DFPO_EDATA, "commongen task: '%s' has no concepts", it->prompt);
      char *p = task_commongen_prompt(it->concepts, it->n_concepts);
      if (!p)
        return dfpo_err_set(err, DFPO_ERUNTIME, "commongen task: out of memory");
      free(it->prompt);
      it->prompt = p;
    }
  return DFPO_OK;
}

int task_commongen_open(const cfg *conf, task *t, dfpo_err *err) {
  size_t cap;
  int rc = task_text_begin(t, conf, &cap, err);
  if (rc)
    return rc;
  task_text_impl *x = t->impl;
  task_set_metrics(t, task_commongen_metrics, CG_N);
  t->metric_names[t->n_metrics++] = met_key(MET_METEOR);
  t->score = commongen_score;
  t->aggregate = task_commongen_aggregate;
  if ((rc = cfg_get_num(conf, "task.commongen.repeat_penalty", &x->repeat_penalty, err)))
    return rc;
  if ((rc = met_wordnet_open(&x->wn, NULL, err)))
    return dfpo_err_prefix(err, "commongen task: METEOR and coverage need WordNet");
  if ((rc = task_find_data(t, conf, "commongen", err)) ||
      (rc = task_load_split(t, TASK_TRAIN, "train.jsonl", keep_train, NULL, cap, err)) ||
      (rc = task_load_split(t, TASK_VALIDATION, "train.jsonl", keep_holdout, NULL, cap, err)) ||
      (rc = task_load_split(t, TASK_TEST, "validation.jsonl", NULL, NULL, cap, err)) ||
      (rc = commongen_prompts(t, err)))
    return rc;
  task_add_judge(t,
                 x->repeat_penalty > 0
                     ? "reward: METEOR against the references, less task.commongen.repeat_penalty "
                       "for a sentence that repeats the prompt (RL4LMs' common_gen_repeat_penalty)"
                     : "reward: METEOR against the references",
                 "meteor: NLTK 3.8 meteor_score as metrics/meteor.c implements it, WordNet 3.0 "
                 "(docs/metrics.md)");
  task_deviation(t, "tested on the CommonGen dev set (the official test set has no "
                    "references); validation is every 50th training concept set, held out "
                    "of training");
  task_text_end(t);
  return DFPO_OK;
}
