/* The synthetic task (docs/synthetic.md): documents of a known language
 * with exact rewards and likelihoods, the project's offline stand-in. */
#include "datasets/datasets.h"
#include "harness/task_internal.h"

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

enum { SYN_REWARD, SYN_NLL_WORD, SYN_OOV_RATE, SYN_N };

const met_metric_info task_synthetic_metrics[] = {
    [SYN_REWARD] = {"reward", "Reward", 1},
    [SYN_NLL_WORD] = {"nll_word", "NLL/word", -1},
    [SYN_OOV_RATE] = {"oov_rate", "OOV rate", -1},
    [SYN_N] = {NULL, NULL, 0},
};

const char task_synthetic_note[] =
    "Task: the synthetic language (docs/synthetic.md) in place of IMDB. Reward = the exact "
    "P(positive | prompt + continuation); NLL/word = the true language's negative "
    "log-likelihood per word of the continuation, in place of perplexity under a judge LM; OOV "
    "rate = share of words outside the language.";

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
  values[SYN_REWARD] = s.p_positive;
  values[SYN_NLL_WORD] = s.nll_word;
  int total = ds_synth_words(t->impl, prompt, NULL, 0) + words;
  values[SYN_OOV_RATE] = total > 0 ? (double)s.n_oov / total : 0;
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
  task_set_metrics(t, task_synthetic_metrics, SYN_N);
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

int task_synth_params_from_cfg(const cfg *conf, task_synth_params *p, dfpo_err *err) {
  task_synth_params tp = task_synth_defaults();
  int64_t v;
  int rc;
#define SGET(kind, path, dst)                                                                      \
  do {                                                                                             \
    if ((rc = cfg_get_##kind(conf, path, dst, err)))                                               \
      return rc;                                                                                   \
  } while (0)
  SGET(int, "task.synthetic.language_seed", &v);
  tp.language_seed = (uint64_t)v;
  SGET(int, "task.synthetic.data_seed", &v);
  tp.data_seed = (uint64_t)v;
  SGET(num, "task.synthetic.lambda", &tp.lambda);
  SGET(int, "task.synthetic.n_train", &v);
  tp.n[TASK_TRAIN] = (size_t)v;
  SGET(int, "task.synthetic.n_validation", &v);
  tp.n[TASK_VALIDATION] = (size_t)v;
  SGET(int, "task.synthetic.n_test", &v);
  tp.n[TASK_TEST] = (size_t)v;
  SGET(int, "task.synthetic.min_words", &v);
  tp.min_words = (int)v;
  SGET(num, "task.prompt_fraction", &tp.prompt_fraction);
#undef SGET
  *p = tp;
  return DFPO_OK;
}

int task_synthetic_open(const cfg *conf, task *t, dfpo_err *err) {
  task_synth_params tp;
  int rc = task_synth_params_from_cfg(conf, &tp, err);
  if (rc)
    return rc;
  if ((rc = task_synth_init(t, &tp, err)))
    return rc;
  task_add_judge(t, "reward",
                 "synthetic: the exact posterior and likelihood of the true language (no "
                 "trained judge)");
  task_deviation(t, "not a task of the paper: the project's offline stand-in, a known language "
                    "with exact rewards and likelihoods (docs/synthetic.md)");
  return DFPO_OK;
}
