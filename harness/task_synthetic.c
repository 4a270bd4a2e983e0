#include "datasets/datasets.h"
#include "harness/task.h"

#include <stdlib.h>
#include <string.h>

task_synth_params task_synth_defaults(void) {
  task_synth_params p = {.language_seed = 0,
                         .data_seed = 0,
                         .lambda = 1.5,
                         .n = {4000, 200, 200},
                         .min_words = 40,
                         .prompt_fraction = 0.5};
  return p;
}

static void synth_free(void *impl) {
  ds_synth_free(impl);
  free(impl);
}

static int synth_score(const task *t, const task_item *item, const char *continuation,
                       double *values, dfpo_err *err) {
  const char *prompt = item->prompt;
  ds_synth_score s;
  int rc = ds_synth_score_text(t->impl, prompt, continuation, &s, err);
  if (rc)
    return rc;
  int words = s.n_words > 0 ? s.n_words : 0;
  values[0] = s.p_positive;
  values[1] = s.nll_word;
  int total = ds_synth_words(t->impl, prompt, NULL, 0) + words;
  values[2] = total > 0 ? (double)s.n_oov / total : 0;
  return DFPO_OK;
}

int task_synth_init(task *t, const task_synth_params *p, dfpo_err *err) {
  memset(t, 0, sizeof *t);
  snprintf(t->name, sizeof t->name, "synthetic");
  if (p->min_words < 2 || p->prompt_fraction <= 0 || p->prompt_fraction >= 1)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "synthetic task: need min_words >= 2 and 0 < prompt_fraction < 1");
  ds_synth *L = calloc(1, sizeof *L);
  if (!L)
    return dfpo_err_set(err, DFPO_ERUNTIME, "synthetic task: out of memory");
  int rc = ds_synth_init_reviews(L, p->language_seed, p->lambda, err);
  if (rc) {
    free(L);
    return rc;
  }
  t->impl = L;
  t->impl_free = synth_free;
  t->score = synth_score;
  t->n_metrics = 3;
  t->metric_names[0] = "reward";
  t->metric_names[1] = "nll_word";
  t->metric_names[2] = "oov_rate";
  t->samples_per_prompt = 1;
  t->data_verified = -1;
  /* Each split has its own stream, so that changing one split's size does
   * not change the documents of the others. */
  enum { CAP = 4096 };
  int *ids = malloc(sizeof(int) * CAP);
  if (!ids) {
    task_free(t);
    return dfpo_err_set(err, DFPO_ERUNTIME, "synthetic task: out of memory");
  }
  for (int s = 0; s < TASK_SPLITS && !rc; s++) {
    t->items[s] = calloc(p->n[s] ? p->n[s] : 1, sizeof(task_item));
    if (!t->items[s]) {
      rc = dfpo_err_set(err, DFPO_ERUNTIME, "synthetic task: out of memory");
      break;
    }
    dfpo_rng rng;
    dfpo_rng_init(&rng, p->data_seed * 4 + (uint64_t)s, DFPO_STREAM_DATA);
    for (size_t i = 0; i < p->n[s]; i++) {
      task_item *it = &t->items[s][i];
      it->label = (int)(i % 2);
      int n = ds_synth_sample(L, &rng, it->label, p->min_words, ids, CAP);
      int np = (int)(n * p->prompt_fraction);
      if (np < 1)
        np = 1;
      it->reference = ds_synth_text(L, ids, n);
      it->prompt = ds_synth_text(L, ids, np);
      t->n[s] = i + 1;
      if (!it->reference || !it->prompt) {
        rc = dfpo_err_set(err, DFPO_ERUNTIME, "synthetic task: out of memory");
        break;
      }
    }
  }
  free(ids);
  if (rc)
    task_free(t);
  return rc;
}

int task_write_corpus(const task *t, int split, const char *path, dfpo_err *err) {
  dfpo_atomic a;
  int rc = dfpo_atomic_open(&a, path, err);
  if (rc)
    return rc;
  for (size_t i = 0; i < t->n[split]; i++)
    fprintf(a.fp, "%s\n", t->items[split][i].reference);
  return dfpo_atomic_commit(&a, err);
}
