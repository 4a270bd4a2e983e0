/* dfpo train: one (task, algorithm, seed) cell (docs/suites.md) of the run
 * folder layout, over the RL loop of trainer/rl_train.c. */
#include "datasets/datasets.h"
#include "harness/cli.h"
#include "harness/config.h"
#include "harness/task.h"
#include "metrics/metrics.h"
#include "trainer/device.h"
#include "trainer/gpt2.h"
#include "trainer/model.h"
#include "trainer/optim.h"
#include "trainer/rl.h"
#include "trainer/sample.h"
#include "trainer/tok.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char train_usage[] =
    "Usage: dfpo train --task T --algo A --seed N --out DIR --model CKPT --tokenizer DIR\n"
    "                  [--config FILE] [--set key.path=value]... [--stop-after N]\n"
    "                  [--device D]\n"
    "\n"
    "Fine-tunes a base model on a task with one algorithm and one seed and writes\n"
    "the run folder DIR/<suite>/<task>/<algo>/seed-<N>/: config.json (resolved),\n"
    "train.jsonl (one line per iteration), checkpoint/best.ckpt (the policy with\n"
    "the best validation reward, checked every train.eval_every iterations),\n"
    "eval.json (test metrics of that checkpoint), samples.jsonl (its test\n"
    "continuations) and DONE, written last.\n"
    "\n"
    "Every train.eval_every iterations a resumable checkpoint goes to\n"
    "checkpoint/resume/ (policy, value model, AdamW states, KL controller,\n"
    "random streams, best so far); a folder without DONE whose config.json is\n"
    "the same continues from it and ends with the numbers of an uninterrupted\n"
    "run. A folder with DONE is rerun from scratch.\n"
    "\n"
    "Tasks (docs/tasks.md): synthetic; imdb, rtp and commongen read the prepared\n"
    "splits (`dfpo datasets prepare`, or task.data_dir) and score with the\n"
    "harness's judges (`dfpo judge train sentiment|toxicity`; task.judge.*) and\n"
    "METEOR. eval.json holds the per-sample means, the task's corpus metrics\n"
    "(rtp: expected maximum toxicity and toxicity probability over\n"
    "eval.samples_per_prompt samples, 25 by default; commongen: BLEU-4, ROUGE-L,\n"
    "CIDEr-D, coverage), diversity, ppl_ref (and ppl_gen with eval.judge_lm),\n"
    "the judges that scored it (name, version, SHA-256) and the deviations from\n"
    "the paper.\n"
    "\n"
    "Algorithms: sft (next-token cross-entropy on the training references;\n"
    "train.iterations counts epochs), ppo, nlpo, dfpo (dfpo.mask_at\n"
    "sample|update, dfpo.eval_policy theta|negative) and zero-shot (the base\n"
    "model evaluated untrained).\n"
    "\n"
    "Options (each also a config key, see docs/configs.md):\n"
    "  --task T          task.name\n"
    "  --algo A          algo\n"
    "  --seed N          seed (sampling, data order, value-head init)\n"
    "  --out DIR         out\n"
    "  --model CKPT      model.path: the base policy (native checkpoint or\n"
    "                    model.safetensors); the reference is a frozen copy\n"
    "  --tokenizer DIR   tokenizer.path\n"
    "  --device D        device: auto (the default), cpu or cuda. auto runs on\n"
    "                    CUDA when a device is usable, else on the CPU with a\n"
    "                    warning that says why; cuda fails with the driver's\n"
    "                    reason when none is. The CUDA backend has not yet run\n"
    "                    on a real GPU (docs/cuda.md): cpu is the tested path\n"
    "  --config FILE     a config file laid over the defaults first\n"
    "  -s, --set k=v     override one config key (repeatable)\n"
    "  --stop-after N    stop after N iterations as a kill would (for resume tests)\n"
    "  -h, --help        show this help\n";

/* Everything one run holds. */
typedef struct run {
  cfg conf;
  task tk;
  tok_tokenizer *tok;
  model_t *policy, *ref, *value;
  rl_trainer *rl;
  rl_config rl_cfg;
  smp_settings sampling;
  int eos, pad, max_prompt, batch, algo_rl, zero_shot, sft;
  int stop_after;      /* --stop-after: iterations before stopping as a kill would (0: off) */
  int64_t resume_prev; /* iteration of the resumable checkpoint on disk (-1: none) */
  int eval_negative;   /* dfpo.eval_policy=negative: evaluate pi- */
  int val_ppl_ref;     /* eval.ppl_ref: also at each validation */
  int32_t **sft_ids;   /* SFT: tokenized training references */
  size_t *sft_len;
  int64_t seed;
  char dir[4096];
  /* tokenized prompts per split */
  int32_t **prompt_ids[TASK_SPLITS];
  size_t *prompt_len[TASK_SPLITS];
  /* the batch being scored by the reward callback */
  const size_t *batch_items;
  int batch_split;
  dfpo_err *err;
} run;

/* Left-pads the prompts of items[0..B) into tokens[B, Tp] (kstart: pad
 * count), truncating each from the left to max_prompt tokens. */
static int build_batch(const run *r, int split, const size_t *items, int B, int **tokens,
                       int **kstart, int *Tp) {
  int T = 1;
  for (int b = 0; b < B; b++) {
    int n = (int)r->prompt_len[split][items[b]];
    if (n > r->max_prompt)
      n = r->max_prompt;
    if (n > T)
      T = n;
  }
  *tokens = malloc(sizeof(int) * (size_t)B * T);
  *kstart = malloc(sizeof(int) * (size_t)B);
  if (!*tokens || !*kstart)
    return -1;
  for (int b = 0; b < B; b++) {
    const int32_t *ids = r->prompt_ids[split][items[b]];
    int n = (int)r->prompt_len[split][items[b]], skip = 0;
    if (n > r->max_prompt) {
      skip = n - r->max_prompt;
      n = r->max_prompt;
    }
    int pad = T - n;
    (*kstart)[b] = pad;
    for (int j = 0; j < T; j++)
      (*tokens)[(size_t)b * T + j] = j < pad ? r->pad : ids[skip + j - pad];
  }
  *Tp = T;
  return 0;
}

/* Evaluation sampling: pi_theta, or with dfpo.eval_policy=negative DfPO's
 * negative masked policy pi- (against the frozen reference). */
static int generate_eval(run *r, const int *tokens, const int *kstart, int B, int Tp, dfpo_rng *rng,
                         int *out, int *lens, dfpo_err *err) {
  if (!r->eval_negative)
    return smp_generate(r->policy, tokens, kstart, B, Tp, &r->sampling, rng, out, lens, NULL, err);
  int *sign = malloc(sizeof(int) * (size_t)B);
  if (!sign)
    return dfpo_err_set(err, DFPO_ERUNTIME, "evaluation: out of memory");
  for (int b = 0; b < B; b++)
    sign[b] = -1;
  int rc = rl_dfpo_generate(r->policy, r->ref, tokens, kstart, B, Tp, sign, &r->sampling, rng, out,
                            lens, NULL, err);
  free(sign);
  return rc;
}

/* The text of a continuation, without a final end-of-text. Heap string. */
static char *continuation_text(const run *r, const int *cont, int len, dfpo_err *err) {
  int32_t ids[4096];
  int n = 0;
  for (int i = 0; i < len && n < 4096; i++)
    if (cont[i] != r->eos)
      ids[n++] = cont[i];
  char *buf = NULL;
  size_t blen = 0, cap = 0;
  if (tok_decode(r->tok, ids, (size_t)n, &buf, &blen, &cap, err))
    return NULL;
  if (!buf)
    buf = calloc(1, 1);
  return buf;
}

static int reward_cb(void *ctx, int B, const int *prompts, const int *kstart, int Tp,
                     const int *cont, const int *lens, int max_new, float *rewards, dfpo_err *err) {
  (void)prompts, (void)kstart, (void)Tp;
  run *r = ctx;
  for (int b = 0; b < B; b++) {
    char *text = continuation_text(r, cont + (size_t)b * max_new, lens[b], err);
    if (!text)
      return err && err->code ? err->code : DFPO_ERUNTIME;
    double v[TASK_MAX_METRICS];
    int rc = r->tk.score(&r->tk, &r->tk.items[r->batch_split][r->batch_items[b]], text, v, err);
    free(text);
    if (rc)
      return rc;
    rewards[b] = (float)v[0];
  }
  return DFPO_OK;
}

/* Samples k continuations of each of the first n prompts of a split with the
 * policy and scores them; means[] gets each metric's mean over the n*k
 * samples. With samples_path, one JSON line per sample is written there
 * (atomically). With conts/values, the continuations (valid UTF-8, sample j
 * of prompt i at i*k+j) and their metrics [n*k*n_metrics] are handed to the
 * caller (free each and the arrays). */
static int eval_samples(run *r, int split, size_t n, int k, uint64_t seed, double *means,
                        const char *samples_path, char ***conts, double **values, dfpo_err *err) {
  int rc = DFPO_OK, B = r->batch, N = r->sampling.max_new, nm = r->tk.n_metrics;
  size_t rows = n * (size_t)k;
  dfpo_rng rng;
  dfpo_rng_init(&rng, seed, DFPO_STREAM_SAMPLING);
  dfpo_atomic a = {0};
  if (samples_path && (rc = dfpo_atomic_open(&a, samples_path, err)))
    return rc;
  for (int m = 0; m < nm; m++)
    means[m] = 0;
  size_t *items = malloc(sizeof(size_t) * (size_t)B);
  int *out = malloc(sizeof(int) * (size_t)B * N), *lens = malloc(sizeof(int) * (size_t)B);
  char **texts = conts ? calloc(rows ? rows : 1, sizeof(char *)) : NULL;
  double *vals = values ? malloc(sizeof(double) * (rows ? rows : 1) * (size_t)nm) : NULL;
  if (!items || !out || !lens || (conts && !texts) || (values && !vals))
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "evaluation: out of memory");
  for (size_t start = 0; !rc && start < rows; start += (size_t)B) {
    if (dfpo_interrupted()) {
      rc = dfpo_err_set(err, DFPO_EINTR, "evaluation: interrupted");
      break;
    }
    int nb = rows - start < (size_t)B ? (int)(rows - start) : B;
    for (int b = 0; b < nb; b++)
      items[b] = (start + (size_t)b) / (size_t)k;
    int *tokens = NULL, *kstart = NULL, Tp;
    if (build_batch(r, split, items, nb, &tokens, &kstart, &Tp)) {
      rc = dfpo_err_set(err, DFPO_ERUNTIME, "evaluation: out of memory");
    } else {
      rc = generate_eval(r, tokens, kstart, nb, Tp, &rng, out, lens, err);
    }
    for (int b = 0; !rc && b < nb; b++) {
      char *raw = continuation_text(r, out + (size_t)b * N, lens[b], err);
      char *text = raw ? dfpo_utf8_fix(raw, strlen(raw)) : NULL;
      free(raw);
      size_t q = start + (size_t)b;
      double v[TASK_MAX_METRICS];
      const task_item *it = &r->tk.items[split][items[b]];
      if (!text || (rc = r->tk.score(&r->tk, it, text, v, err))) {
        rc = rc ? rc : err && err->code ? err->code : DFPO_ERUNTIME;
        free(text);
        break;
      }
      for (int m = 0; m < nm; m++)
        means[m] += v[m] / (double)rows;
      if (vals)
        memcpy(vals + q * (size_t)nm, v, sizeof(double) * (size_t)nm);
      if (samples_path) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "index", (double)items[b]);
        if (k > 1)
          cJSON_AddNumberToObject(o, "sample", (double)(q % (size_t)k));
        cJSON_AddStringToObject(o, "prompt", it->prompt);
        cJSON_AddStringToObject(o, "continuation", text);
        for (int m = 0; m < nm; m++)
          cJSON_AddNumberToObject(o, r->tk.metric_names[m], v[m]);
        char *line = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (line)
          fprintf(a.fp, "%s\n", line);
        free(line);
      }
      if (texts)
        texts[q] = text;
      else
        free(text);
    }
    free(tokens);
    free(kstart);
  }
  free(items);
  free(out);
  free(lens);
  if (samples_path) {
    if (rc)
      dfpo_atomic_abort(&a);
    else
      rc = dfpo_atomic_commit(&a, err);
  }
  if (rc && texts) {
    for (size_t q = 0; q < rows; q++)
      free(texts[q]);
    free(texts);
    texts = NULL;
  }
  if (rc) {
    free(vals);
    vals = NULL;
  }
  if (conts)
    *conts = texts;
  if (values)
    *values = vals;
  return rc;
}

/* Validation: one sample per prompt, the metrics' means (means[0] selects
 * the checkpoint). */
static int evaluate(run *r, int split, size_t n, uint64_t seed, double *means,
                    const char *samples_path, dfpo_err *err) {
  return eval_samples(r, split, n, 1, seed, means, samples_path, NULL, NULL, err);
}

/* ppl_ref over the first n items of a split (docs/metrics.md): the
 * policy's perplexity of the items' reference texts. *nrefs = 0 (and *ppl
 * untouched) when none of them has one. */
static int refs_ppl(run *r, int split, size_t n, double *ppl, size_t *nrefs, dfpo_err *err) {
  const char **refs = malloc(sizeof(char *) * (n ? n : 1));
  if (!refs)
    return dfpo_err_set(err, DFPO_ERUNTIME, "evaluation: out of memory");
  *nrefs = 0;
  for (size_t i = 0; i < n; i++)
    if (r->tk.items[split][i].reference && r->tk.items[split][i].reference[0])
      refs[(*nrefs)++] = r->tk.items[split][i].reference;
  int rc = DFPO_OK;
  met_ppl p;
  if (*nrefs && !(rc = met_ppl_ref(r->policy, r->tok, refs, *nrefs, NULL, &p, NULL, err)))
    *ppl = p.ppl;
  free(refs);
  return rc;
}

/* The test evaluation written to eval.json: k samples per prompt (the
 * task's protocol unless eval.samples_per_prompt says otherwise), the
 * per-sample means, the task's corpus-level metrics, diversity, and the
 * perplexities (docs/metrics.md) into `metrics`; the judge LM used for
 * ppl_gen into `o`. */
static int evaluate_test(run *r, size_t n, uint64_t seed, const char *samples_path, cJSON *o,
                         cJSON *metrics, dfpo_err *err) {
  int64_t k64;
  int rc, ppl_ref;
  const char *judge_lm;
  if ((rc = cfg_get_int(&r->conf, "eval.samples_per_prompt", &k64, err)) ||
      (rc = cfg_get_bool(&r->conf, "eval.ppl_ref", &ppl_ref, err)) ||
      (rc = cfg_get_str(&r->conf, "eval.judge_lm", &judge_lm, err)))
    return rc;
  int k = k64 > 0 ? (int)k64 : r->tk.samples_per_prompt > 0 ? r->tk.samples_per_prompt : 1;
  double means[TASK_MAX_METRICS];
  char **conts = NULL;
  double *values = NULL;
  size_t rows = n * (size_t)k;
  if ((rc = eval_samples(r, TASK_TEST, n, k, seed, means, samples_path, &conts, &values, err)))
    return rc;
  cJSON_AddNumberToObject(o, "samples_per_prompt", k);
  for (int m = 0; m < r->tk.n_metrics; m++)
    cJSON_AddNumberToObject(metrics, r->tk.metric_names[m], means[m]);
  size_t *idx = malloc(sizeof(size_t) * (n ? n : 1));
  const char **prompts = malloc(sizeof(char *) * (rows ? rows : 1));
  if (!idx || !prompts)
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "evaluation: out of memory");
  for (size_t i = 0; !rc && i < n; i++)
    idx[i] = i;
  task_eval ev = {TASK_TEST, n, k, idx, conts, values};
  if (!rc && r->tk.aggregate)
    rc = r->tk.aggregate(&r->tk, &ev, metrics, err);
  if (!rc)
    rc = task_diversity(conts, rows, metrics, err);
  size_t nrefs = 0;
  double ppl;
  if (!rc && ppl_ref && !(rc = refs_ppl(r, TASK_TEST, n, &ppl, &nrefs, err)) && nrefs) {
    cJSON_AddNumberToObject(metrics, "ppl_ref", ppl);
    cJSON_AddNumberToObject(o, "ppl_ref_texts", (double)nrefs);
  }
  if (!rc && judge_lm[0]) {
    model_t *lm = NULL;
    met_ppl p;
    for (size_t q = 0; q < rows; q++)
      prompts[q] = r->tk.items[TASK_TEST][q / (size_t)k].prompt;
    if (!(rc = model_load(&lm, judge_lm, err)) &&
        (size_t)model_get_config(lm)->vocab_size < tok_vocab_size(r->tok))
      rc = dfpo_err_set(err, DFPO_EUSAGE,
                        "eval.judge_lm %s: its vocabulary is smaller than the tokenizer's",
                        judge_lm);
    if (!rc && !(rc = met_ppl_gen(lm, r->tok, prompts, (const char *const *)conts, rows, NULL, &p,
                                  NULL, err))) {
      char hex[65];
      cJSON_AddNumberToObject(metrics, "ppl_gen", p.ppl);
      cJSON *j = cJSON_AddObjectToObject(o, "judge_lm");
      cJSON_AddStringToObject(j, "path", judge_lm);
      if (!(rc = ds_sha256_file(judge_lm, hex, err)))
        cJSON_AddStringToObject(j, "sha256", hex);
    }
    model_free(lm);
  }
  for (size_t q = 0; q < rows; q++)
    free(conts[q]);
  free(conts);
  free(values);
  free(idx);
  free(prompts);
  return rc;
}

static int tokenize_prompts(run *r, dfpo_err *err) {
  for (int s = 0; s < TASK_SPLITS; s++) {
    size_t n = r->tk.n[s] ? r->tk.n[s] : 1;
    r->prompt_ids[s] = calloc(n, sizeof(int32_t *));
    r->prompt_len[s] = calloc(n, sizeof(size_t));
    if (!r->prompt_ids[s] || !r->prompt_len[s])
      return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    for (size_t i = 0; i < r->tk.n[s]; i++) {
      tok_ids v = {0};
      const char *p = r->tk.items[s][i].prompt;
      int rc = tok_encode(r->tok, p, strlen(p), 0, &v, err);
      if (rc)
        return rc;
      if (v.n == 0) {
        tok_ids_free(&v);
        return dfpo_err_set(err, DFPO_EDATA, "%s prompt %zu tokenizes to nothing", r->tk.name, i);
      }
      r->prompt_ids[s][i] = v.ids;
      r->prompt_len[s][i] = v.n;
    }
  }
  return DFPO_OK;
}

/* The value model: the policy's trunk with a value head (initialised from
 * the run seed), as RL4LMs starts its separate value network. */
static int make_value_model(run *r, dfpo_err *err) {
  int rc = model_new_like(&r->value, r->policy, MODEL_HEAD_VALUE, 0, err);
  if (rc)
    return rc;
  model_init_random(r->value, (uint64_t)r->seed);
  return model_copy_shared_params(r->value, r->policy, NULL, err);
}

static void run_free(run *r) {
  for (int s = 0; s < TASK_SPLITS; s++) {
    for (size_t i = 0; r->prompt_ids[s] && i < r->tk.n[s]; i++)
      free(r->prompt_ids[s][i]);
    free(r->prompt_ids[s]);
    free(r->prompt_len[s]);
  }
  for (size_t i = 0; r->sft_ids && i < r->tk.n[TASK_TRAIN]; i++)
    free(r->sft_ids[i]);
  free(r->sft_ids);
  free(r->sft_len);
  rl_trainer_free(r->rl);
  model_free(r->policy);
  model_free(r->ref);
  model_free(r->value);
  tok_free(r->tok);
  task_free(&r->tk);
  cfg_free(&r->conf);
}

#define GET(kind, path, dst)                                                                       \
  do {                                                                                             \
    if ((rc = cfg_get_##kind(&r->conf, path, dst, err)))                                           \
      return rc;                                                                                   \
  } while (0)

static int setup(run *r, dfpo_err *err) {
  int rc;
  const char *task_name, *algo, *suite, *out, *model, *tokdir;
  int64_t v;
  double d;
  GET(str, "task.name", &task_name);
  GET(str, "algo", &algo);
  GET(str, "suite.name", &suite);
  GET(str, "out", &out);
  GET(str, "model.path", &model);
  GET(str, "tokenizer.path", &tokdir);
  GET(int, "seed", &r->seed);
  r->zero_shot = !strcmp(algo, "zero-shot");
  r->sft = !strcmp(algo, "sft");
  if (r->sft)
    r->algo_rl = -1;
  else if (!strcmp(algo, "ppo"))
    r->algo_rl = RL_PPO;
  else if (!strcmp(algo, "dfpo"))
    r->algo_rl = RL_DFPO;
  else if (!strcmp(algo, "nlpo"))
    r->algo_rl = RL_NLPO;
  else if (!r->zero_shot)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "train: unknown algorithm '%s' (sft, ppo, nlpo, dfpo, zero-shot)", algo);
  if (!model[0] || !tokdir[0])
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "train: needs a base model (--model) and a tokenizer "
                        "(--tokenizer)");
  if ((rc = task_open(task_name, &r->conf, &r->tk, err)))
    return rc;
  if ((rc = tok_load(&r->tok, tokdir, err)) || (rc = model_load(&r->policy, model, err)) ||
      (rc = model_load(&r->ref, model, err)))
    return rc;
  if ((size_t)model_get_config(r->policy)->vocab_size < tok_vocab_size(r->tok))
    return dfpo_err_set(err, DFPO_EDATA,
                        "%s: the model's vocabulary (%d) is smaller than the "
                        "tokenizer's (%zu in %s)",
                        model, model_get_config(r->policy)->vocab_size, tok_vocab_size(r->tok),
                        tokdir);
  r->eos = tok_eot_id(r->tok);
  r->pad = r->eos >= 0 ? r->eos : 0;
  GET(int, "task.max_prompt_tokens", &v);
  r->max_prompt = (int)v;
  GET(int, "train.batch_size", &v);
  r->batch = (int)v;
  r->sampling = smp_settings_default();
  GET(int, "generation.max_new_tokens", &v);
  r->sampling.max_new = (int)v;
  GET(int, "generation.min_new_tokens", &v);
  r->sampling.min_new = (int)v;
  GET(num, "generation.temperature", &d);
  r->sampling.temperature = (float)d;
  GET(int, "generation.top_k", &v);
  r->sampling.top_k = (int)v;
  GET(num, "generation.top_p", &d);
  r->sampling.top_p = (float)d;
  r->sampling.eos = r->eos;
  int n_ctx = model_get_config(r->policy)->n_ctx;
  if (r->max_prompt + r->sampling.max_new > n_ctx)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "train: task.max_prompt_tokens (%d) + generation.max_new_tokens (%d) "
                        "exceed the model's context (%d)",
                        r->max_prompt, r->sampling.max_new, n_ctx);
  if ((rc = tokenize_prompts(r, err)))
    return rc;
  int w = snprintf(r->dir, sizeof r->dir, "%s/%s/%s/%s/seed-%lld", out, suite, task_name, algo,
                   (long long)r->seed);
  if (w < 0 || (size_t)w >= sizeof r->dir)
    return dfpo_err_set(err, DFPO_EUSAGE, "train: run folder path too long");
  char ck[4200];
  snprintf(ck, sizeof ck, "%s/checkpoint", r->dir);
  if ((rc = dfpo_mkdirs(ck, err)))
    return rc;
  const char *eval_policy;
  GET(str, "dfpo.eval_policy", &eval_policy);
  GET(bool, "eval.ppl_ref", &r->val_ppl_ref);
  r->eval_negative = r->algo_rl == RL_DFPO && !strcmp(eval_policy, "negative");
  if (r->zero_shot || r->sft)
    return DFPO_OK;
  rl_config rc_cfg = rl_config_default();
  rc_cfg.algo = r->algo_rl;
  rc_cfg.sampling = r->sampling;
  GET(int, "train.epochs", &v);
  rc_cfg.epochs = (int)v;
  GET(int, "train.minibatch", &v);
  rc_cfg.minibatch = (int)v;
  GET(num, "train.lr", &d);
  rc_cfg.lr = (float)d;
  GET(num, "train.weight_decay", &d);
  rc_cfg.weight_decay = (float)d;
  GET(num, "train.max_grad_norm", &d);
  rc_cfg.max_grad_norm = (float)d;
  GET(num, "train.gamma", &d);
  rc_cfg.gamma = (float)d;
  GET(num, "train.gae_lambda", &d);
  rc_cfg.lambda = (float)d;
  GET(num, "ppo.clip", &d);
  rc_cfg.clip_eps = (float)d;
  GET(num, "ppo.vf_coef", &d);
  rc_cfg.vf_coef = (float)d;
  const char *kl_mode, *mask_at;
  GET(str, "ppo.kl_mode", &kl_mode);
  rc_cfg.kl_adaptive = !strcmp(kl_mode, "adaptive");
  GET(num, "ppo.beta", &d);
  rc_cfg.beta = (float)d;
  GET(num, "ppo.kl_target", &d);
  rc_cfg.kl_target = (float)d;
  GET(str, "dfpo.mask_at", &mask_at);
  rc_cfg.dfpo_mask_at = !strcmp(mask_at, "update") ? RL_MASK_AT_UPDATE : RL_MASK_AT_SAMPLE;
  GET(num, "dfpo.ratio_clip", &d);
  rc_cfg.dfpo_ratio_clip = (float)d;
  GET(num, "nlpo.top_p", &d);
  rc_cfg.nlpo_top_p = (float)d;
  GET(int, "nlpo.k_min", &v);
  rc_cfg.nlpo_k_min = (int)v;
  GET(int, "nlpo.mask_refresh", &v);
  rc_cfg.nlpo_mask_refresh = (int)v;
  r->rl_cfg = rc_cfg;
  if ((rc = make_value_model(r, err)))
    return rc;
  return rl_trainer_new(&r->rl, r->policy, r->ref, r->value, &rc_cfg, (uint64_t)r->seed, err);
}

/* ------------------------------------------------------------- SFT */

/* SFT's texts: the training references, each as <|endoftext|> + its tokens,
 * cut to the model's context. */
static int tokenize_references(run *r, dfpo_err *err) {
  size_t n = r->tk.n[TASK_TRAIN];
  int n_ctx = model_get_config(r->policy)->n_ctx;
  r->sft_ids = calloc(n ? n : 1, sizeof(int32_t *));
  r->sft_len = calloc(n ? n : 1, sizeof(size_t));
  if (!r->sft_ids || !r->sft_len)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  for (size_t i = 0; i < n; i++) {
    tok_ids v = {0};
    const char *t = r->tk.items[TASK_TRAIN][i].reference;
    int rc;
    if (!t || !t[0])
      return dfpo_err_set(err, DFPO_EDATA, "%s: training item %zu has no reference text for SFT",
                          r->tk.name, i);
    int32_t bos = r->pad;
    if ((rc = tok_encode(r->tok, t, strlen(t), 0, &v, err))) {
      tok_ids_free(&v);
      return rc;
    }
    size_t len = v.n + 1 < (size_t)n_ctx + 1 ? v.n + 1 : (size_t)n_ctx + 1;
    r->sft_ids[i] = malloc(sizeof(int32_t) * len);
    if (!r->sft_ids[i]) {
      tok_ids_free(&v);
      return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    }
    r->sft_ids[i][0] = bos;
    memcpy(r->sft_ids[i] + 1, v.ids, sizeof(int32_t) * (len - 1));
    r->sft_len[i] = len;
    tok_ids_free(&v);
  }
  return DFPO_OK;
}

/* One SFT epoch: the training references in an order drawn from the data
 * stream, train.batch_size per step, mean next-token cross-entropy over
 * their tokens (right padding is not scored). *loss gets the mean step loss. */
static int sft_epoch(run *r, dfpo_rng *data, double *loss, int *steps, dfpo_err *err) {
  size_t n = r->tk.n[TASK_TRAIN];
  int B = r->batch, rc = DFPO_OK;
  double lr, wd, clip;
  if ((rc = cfg_get_num(&r->conf, "train.lr", &lr, err)) ||
      (rc = cfg_get_num(&r->conf, "train.weight_decay", &wd, err)) ||
      (rc = cfg_get_num(&r->conf, "train.max_grad_norm", &clip, err)))
    return rc;
  opt_adamw opt = opt_adamw_default();
  opt.weight_decay = (float)wd;
  opt.clip = (float)clip;
  size_t *order = malloc(sizeof(size_t) * (n ? n : 1));
  int T = model_get_config(r->policy)->n_ctx;
  int *tok = malloc(sizeof(int) * (size_t)B * T), *tgt = malloc(sizeof(int) * (size_t)B * T);
  if (!order || !tok || !tgt)
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  for (size_t i = 0; i < n; i++)
    order[i] = i;
  if (!rc)
    dfpo_rng_shuffle(data, order, n, sizeof order[0]);
  *loss = 0;
  *steps = 0;
  for (size_t start = 0; !rc && start < n; start += (size_t)B) {
    if (dfpo_interrupted()) {
      /* the epoch is lost; the resumable checkpoint is that of an earlier one */
      rc = dfpo_err_set(err, DFPO_EINTR, "train: SFT interrupted within an epoch");
      break;
    }
    int nb = n - start < (size_t)B ? (int)(n - start) : B, Tb = 1;
    for (int b = 0; b < nb; b++)
      if ((int)r->sft_len[order[start + b]] - 1 > Tb)
        Tb = (int)r->sft_len[order[start + b]] - 1;
    for (int b = 0; b < nb; b++) {
      const int32_t *ids = r->sft_ids[order[start + b]];
      int len = (int)r->sft_len[order[start + b]] - 1;
      for (int j = 0; j < Tb; j++) {
        tok[b * Tb + j] = j < len ? ids[j] : r->pad;
        tgt[b * Tb + j] = j < len ? ids[j + 1] : -1;
      }
    }
    float l;
    model_zero_grad(r->policy);
    if ((rc = model_lm_loss_rows(r->policy, tok, tgt, NULL, nb, Tb, 1, &l, err)) ||
        (rc = opt_adamw_step(r->policy, &opt, (float)lr, NULL, err)))
      break;
    *loss += l;
    (*steps)++;
  }
  if (*steps)
    *loss /= *steps;
  free(order);
  free(tok);
  free(tgt);
  return rc;
}

/* ------------------------------------------------------------- resume */

/* Where a run stands between iterations: with the models (parameters and
 * AdamW states) and the trainer's state, enough to continue bit for bit. */
typedef struct loop_state {
  int64_t next_it;   /* the first iteration not done */
  double best;       /* best validation score so far */
  int best_iter;     /* its iteration */
  dfpo_rng data;     /* the data-order stream */
  int64_t log_bytes; /* length of train.jsonl up to next_it */
} loop_state;

static void hex_u64(cJSON *o, const char *key, uint64_t v) {
  char buf[32];
  snprintf(buf, sizeof buf, "%016llx", (unsigned long long)v);
  cJSON_AddStringToObject(o, key, buf);
}

static int get_u64(const cJSON *o, const char *key, uint64_t *v) {
  const cJSON *it = cJSON_GetObjectItem(o, key);
  if (!cJSON_IsString(it))
    return -1;
  char *end;
  *v = (uint64_t)strtoull(it->valuestring, &end, 16);
  return *end ? -1 : 0;
}

static uint64_t dbits(double d) {
  uint64_t u;
  memcpy(&u, &d, sizeof u);
  return u;
}

static double bitsd(uint64_t u) {
  double d;
  memcpy(&d, &u, sizeof d);
  return d;
}

static void resume_path(const run *r, char *buf, size_t n, const char *what, int64_t it) {
  if (it < 0)
    snprintf(buf, n, "%s/checkpoint/resume/%s", r->dir, what);
  else
    snprintf(buf, n, "%s/checkpoint/resume/%s-%lld.ckpt", r->dir, what, (long long)it);
}

static void remove_resume_files(const run *r, int64_t it) {
  static const char *const what[] = {"policy", "value", "mask"};
  char path[4400];
  for (size_t i = 0; i < sizeof what / sizeof what[0]; i++) {
    resume_path(r, path, sizeof path, what[i], it);
    remove(path);
  }
}

/* Writes the models of iteration ls->next_it, then state.json (atomically,
 * last: it names the iteration, so a kill before it keeps the previous
 * checkpoint whole), then removes the previous checkpoint's models. */
static int save_resume(run *r, const loop_state *ls, dfpo_err *err) {
  char path[4400];
  int rc;
  resume_path(r, path, sizeof path, "", -1);
  if ((rc = dfpo_mkdirs(path, err)))
    return rc;
  resume_path(r, path, sizeof path, "policy", ls->next_it);
  if ((rc = model_save(r->policy, path, 1, err)))
    return rc;
  if (r->value) {
    resume_path(r, path, sizeof path, "value", ls->next_it);
    if ((rc = model_save(r->value, path, 1, err)))
      return rc;
  }
  model_t *mask = r->rl ? rl_trainer_mask_model(r->rl) : NULL;
  if (mask) {
    resume_path(r, path, sizeof path, "mask", ls->next_it);
    if ((rc = model_save(mask, path, 0, err)))
      return rc;
  }
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "next_iteration", (double)ls->next_it);
  cJSON_AddNumberToObject(o, "best_iteration", ls->best_iter);
  hex_u64(o, "best_bits", dbits(ls->best));
  hex_u64(o, "data_state", ls->data.state);
  hex_u64(o, "data_inc", ls->data.inc);
  cJSON_AddNumberToObject(o, "log_bytes", (double)ls->log_bytes);
  if (r->rl) {
    rl_trainer_state ts;
    rl_trainer_get_state(r->rl, &ts);
    hex_u64(o, "beta_bits", dbits(ts.beta));
    cJSON_AddNumberToObject(o, "rl_iterations", (double)ts.iterations);
    hex_u64(o, "rng_state", ts.rng.state);
    hex_u64(o, "rng_inc", ts.rng.inc);
  }
  resume_path(r, path, sizeof path, "state.json", -1);
  rc = cfg_json_write(path, o, err);
  cJSON_Delete(o);
  if (rc)
    return rc;
  if (r->resume_prev >= 0 && r->resume_prev != ls->next_it)
    remove_resume_files(r, r->resume_prev);
  r->resume_prev = ls->next_it;
  return DFPO_OK;
}

/* Replaces a model by the checkpoint at path (parameters and AdamW state). */
static int swap_in(model_t **m, const char *path, dfpo_err *err) {
  model_t *n = NULL;
  int rc = model_load(&n, path, err);
  if (rc)
    return rc;
  model_free(*m);
  *m = n;
  return DFPO_OK;
}

/* Continues from checkpoint/resume/state.json when there is one: *found
 * says so. The policy and value model (with their AdamW states) and NLPO's
 * mask model come back, the trainer is rebuilt over them with its state. */
static int load_resume(run *r, loop_state *ls, int *found, dfpo_err *err) {
  char path[4400];
  *found = 0;
  resume_path(r, path, sizeof path, "state.json", -1);
  char *text;
  size_t len;
  if (dfpo_read_file(path, &text, &len, NULL) != DFPO_OK)
    return DFPO_OK;
  cJSON *o = cJSON_ParseWithLength(text, len);
  free(text);
  uint64_t best, ds, di, beta = 0, rs = 0, ri = 0;
  const cJSON *nx = cJSON_GetObjectItem(o, "next_iteration"),
              *bi = cJSON_GetObjectItem(o, "best_iteration"),
              *lb = cJSON_GetObjectItem(o, "log_bytes"),
              *ri_n = cJSON_GetObjectItem(o, "rl_iterations");
  int bad = !o || !cJSON_IsNumber(nx) || !cJSON_IsNumber(bi) || !cJSON_IsNumber(lb) ||
            get_u64(o, "best_bits", &best) || get_u64(o, "data_state", &ds) ||
            get_u64(o, "data_inc", &di);
  if (!bad && r->rl)
    bad = !cJSON_IsNumber(ri_n) || get_u64(o, "beta_bits", &beta) || get_u64(o, "rng_state", &rs) ||
          get_u64(o, "rng_inc", &ri);
  if (bad) {
    cJSON_Delete(o);
    return dfpo_err_set(err, DFPO_EDATA, "%s: not a resumable-checkpoint state", path);
  }
  ls->next_it = (int64_t)nx->valuedouble;
  ls->best_iter = bi->valueint;
  ls->best = bitsd(best);
  ls->data.state = ds;
  ls->data.inc = di;
  ls->log_bytes = (int64_t)lb->valuedouble;
  rl_trainer_state ts = {bitsd(beta), r->rl ? (int64_t)ri_n->valuedouble : 0, {rs, ri}};
  cJSON_Delete(o);
  int rc;
  resume_path(r, path, sizeof path, "policy", ls->next_it);
  if ((rc = swap_in(&r->policy, path, err)))
    return rc;
  if (r->rl) {
    resume_path(r, path, sizeof path, "value", ls->next_it);
    if ((rc = swap_in(&r->value, path, err)))
      return rc;
    rl_trainer_free(r->rl);
    r->rl = NULL;
    if ((rc = rl_trainer_new(&r->rl, r->policy, r->ref, r->value, &r->rl_cfg, (uint64_t)r->seed,
                             err)))
      return rc;
    rl_trainer_set_state(r->rl, &ts);
    model_t *mask = rl_trainer_mask_model(r->rl), *saved = NULL;
    if (mask) {
      resume_path(r, path, sizeof path, "mask", ls->next_it);
      if ((rc = model_load(&saved, path, err)) || (rc = model_copy_params(mask, saved, err))) {
        model_free(saved);
        return rc;
      }
      model_free(saved);
    }
  }
  r->resume_prev = ls->next_it;
  *found = 1;
  return DFPO_OK;
}

/* ------------------------------------------------------------- the loop */

/* Iterations ls->next_it..iterations: validation every eval_every (and at
 * the last), training, one train.jsonl line each, and a resumable checkpoint
 * after every eval_every-th iteration. *stopped: --stop-after ended it. */
static int train_loop(run *r, int64_t iterations, int64_t eval_every, size_t n_val, loop_state *ls,
                      int *stopped, dfpo_err *err) {
  char path[4300];
  snprintf(path, sizeof path, "%s/train.jsonl", r->dir);
  /* train.jsonl grows line by line; a kill leaves whole lines behind, and a
   * resumed run cuts it back to its checkpoint */
  if (ls->next_it > 0 && truncate(path, (off_t)ls->log_bytes) != 0)
    return dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot cut back to its checkpoint", path);
  FILE *log = fopen(path, ls->next_it > 0 ? "a" : "w");
  if (!log)
    return dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot open", path);
  int rc = DFPO_OK, B = r->batch;
  *stopped = 0;
  size_t *items = malloc(sizeof(size_t) * (size_t)B);
  if (!items)
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  for (int64_t it = ls->next_it; !rc && it <= iterations; it++) {
    cJSON *line = cJSON_CreateObject();
    cJSON_AddNumberToObject(line, "iteration", (double)it);
    if (it % eval_every == 0 || it == iterations) {
      double means[TASK_MAX_METRICS];
      if ((rc = evaluate(r, TASK_VALIDATION, n_val, 1000003u, means, NULL, err))) {
        cJSON_Delete(line);
        break;
      }
      for (int m = 0; m < r->tk.n_metrics; m++) {
        char key[64];
        snprintf(key, sizeof key, "val_%s", r->tk.metric_names[m]);
        cJSON_AddNumberToObject(line, key, means[m]);
      }
      /* the perplexity's learning curve: ppl_ref of the validation items
       * (a forward pass over their references, no sampling) */
      double ppl;
      size_t nrefs = 0;
      if (r->val_ppl_ref && (rc = refs_ppl(r, TASK_VALIDATION, n_val, &ppl, &nrefs, err))) {
        cJSON_Delete(line);
        break;
      }
      if (nrefs)
        cJSON_AddNumberToObject(line, "val_ppl_ref", ppl);
      if (means[0] > ls->best) {
        ls->best = means[0];
        ls->best_iter = (int)it;
        snprintf(path, sizeof path, "%s/checkpoint/best.ckpt", r->dir);
        if ((rc = model_save(r->policy, path, 0, err))) {
          cJSON_Delete(line);
          break;
        }
      }
    }
    if (it < iterations) {
      if (dfpo_interrupted()) {
        cJSON_Delete(line);
        rc = dfpo_err_set(err, DFPO_EINTR, "train: interrupted at iteration %lld", (long long)it);
        break;
      }
      if (r->sft) {
        double loss;
        int steps;
        rc = sft_epoch(r, &ls->data, &loss, &steps, err);
        if (!rc) {
          cJSON_AddNumberToObject(line, "loss", loss);
          cJSON_AddNumberToObject(line, "steps", steps);
          if (!isfinite(loss))
            rc = dfpo_err_set(err, DFPO_ERUNTIME,
                              "train: the loss is not finite at epoch %lld; stopped (the best "
                              "checkpoint is kept)",
                              (long long)it);
        }
      } else {
        for (int b = 0; b < B; b++)
          items[b] = dfpo_rng_below(&ls->data, (uint32_t)r->tk.n[TASK_TRAIN]);
        int *tokens = NULL, *kstart = NULL, Tp;
        rl_stats st;
        if (build_batch(r, TASK_TRAIN, items, B, &tokens, &kstart, &Tp)) {
          rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
        } else {
          r->batch_items = items;
          r->batch_split = TASK_TRAIN;
          rc = rl_iterate(r->rl, tokens, kstart, B, Tp, reward_cb, r, &st, err);
        }
        free(tokens);
        free(kstart);
        if (!rc) {
          cJSON_AddNumberToObject(line, "reward", st.reward);
          cJSON_AddNumberToObject(line, "kl_seq", st.kl_seq);
          if (isfinite(st.kl_token))
            cJSON_AddNumberToObject(line, "kl_token", st.kl_token);
          cJSON_AddNumberToObject(line, "mean_len", st.mean_len);
          cJSON_AddNumberToObject(line, "policy_loss", st.policy_loss);
          cJSON_AddNumberToObject(line, "value_loss", st.value_loss);
          cJSON_AddNumberToObject(line, "clipfrac", st.clipfrac);
          cJSON_AddNumberToObject(line, "beta", st.beta);
          if (r->algo_rl == RL_NLPO)
            cJSON_AddNumberToObject(line, "mask_mean", st.mask_mean);
          if (!isfinite(st.policy_loss) || !isfinite(st.value_loss))
            rc = dfpo_err_set(err, DFPO_ERUNTIME,
                              "train: the loss is not finite at iteration %lld; stopped (the "
                              "best checkpoint is kept)",
                              (long long)it);
        }
      }
    }
    char *s = cJSON_PrintUnformatted(line);
    cJSON_Delete(line);
    if (s) {
      fprintf(log, "%s\n", s);
      fflush(log);
    }
    free(s);
    if (rc)
      break;
    dfpo_info("train: iteration %lld of %lld", (long long)it, (long long)iterations);
    int64_t done = it + 1;
    if (done < iterations + 1 && done % eval_every == 0) {
      ls->next_it = done;
      ls->log_bytes = (int64_t)ftell(log);
      if ((rc = save_resume(r, ls, err)))
        break;
    }
    if (r->stop_after && done >= r->stop_after && done < iterations + 1) {
      dfpo_info("train: stopping after iteration %lld as asked", (long long)it);
      *stopped = 1;
      break;
    }
  }
  free(items);
  if (fclose(log) != 0 && !rc)
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "%s/train.jsonl: write failed", r->dir);
  return rc;
}

static int run_cell(run *r, dfpo_err *err) {
  r->resume_prev = -1;
  int rc = setup(r, err);
  if (rc)
    return rc;
  char path[4400];
  char *json = cfg_to_json(&r->conf);
  if (!json)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  /* A folder with DONE is rerun from scratch; one without DONE but with a
   * resumable checkpoint continues from it when its config is the same. */
  snprintf(path, sizeof path, "%s/DONE", r->dir);
  int was_done = access(path, F_OK) == 0;
  remove(path); /* a rerun is not done until it says so again */
  loop_state ls = {0, -INFINITY, 0, {0, 0}, 0};
  dfpo_rng_init(&ls.data, (uint64_t)r->seed, DFPO_STREAM_DATA);
  int resumed = 0;
  snprintf(path, sizeof path, "%s/config.json", r->dir);
  if (!was_done && !r->zero_shot) {
    char *old = NULL;
    size_t olen = 0;
    int have_old = dfpo_read_file(path, &old, &olen, NULL) == DFPO_OK;
    int same = have_old && olen == strlen(json) && !memcmp(old, json, olen);
    free(old);
    if (same)
      rc = load_resume(r, &ls, &resumed, err);
    else if (have_old) {
      resume_path(r, path, sizeof path, "state.json", -1);
      if (access(path, F_OK) == 0)
        rc = dfpo_err_set(err, DFPO_EUSAGE,
                          "train: %s holds an unfinished run with another config; remove the "
                          "folder or rerun with the same settings",
                          r->dir);
    }
    if (rc) {
      free(json);
      return rc;
    }
    if (resumed)
      dfpo_info("train: resuming %s at iteration %lld", r->dir, (long long)ls.next_it);
  }
  if (!resumed) {
    resume_path(r, path, sizeof path, "state.json", -1);
    remove(path);
  }
  snprintf(path, sizeof path, "%s/config.json", r->dir);
  size_t n = strlen(json);
  rc = dfpo_atomic_write_file(path, json, n, err);
  free(json);
  if (rc)
    return rc;
  int64_t iterations, eval_every, max_prompts;
  if ((rc = cfg_get_int(&r->conf, "train.iterations", &iterations, err)) ||
      (rc = cfg_get_int(&r->conf, "train.eval_every", &eval_every, err)) ||
      (rc = cfg_get_int(&r->conf, "eval.max_prompts", &max_prompts, err)))
    return rc;
  size_t n_val = r->tk.n[TASK_VALIDATION], n_test = r->tk.n[TASK_TEST];
  if (max_prompts > 0) {
    n_val = n_val < (size_t)max_prompts ? n_val : (size_t)max_prompts;
    n_test = n_test < (size_t)max_prompts ? n_test : (size_t)max_prompts;
  }
  if (r->sft && (rc = tokenize_references(r, err)))
    return rc;
  if (!r->zero_shot) {
    int stopped = 0;
    if ((rc = train_loop(r, iterations, eval_every, n_val, &ls, &stopped, err)))
      return rc;
    if (stopped)
      return DFPO_OK;
    /* the selected policy: the best validation reward */
    model_t *best = NULL;
    snprintf(path, sizeof path, "%s/checkpoint/best.ckpt", r->dir);
    if ((rc = model_load(&best, path, err)) || (rc = model_copy_params(r->policy, best, err))) {
      model_free(best);
      return rc;
    }
    model_free(best);
  }
  int best_iter = ls.best_iter;
  cJSON *o = cJSON_CreateObject(), *m;
  const char *algo;
  cfg_get_str(&r->conf, "algo", &algo, err);
  cJSON_AddStringToObject(o, "task", r->tk.name);
  cJSON_AddStringToObject(o, "algo", algo);
  cJSON_AddNumberToObject(o, "seed", (double)r->seed);
  cJSON_AddNumberToObject(o, "best_iteration", best_iter);
  cJSON_AddNumberToObject(o, "test_prompts", (double)n_test);
  m = cJSON_AddObjectToObject(o, "metrics");
  snprintf(path, sizeof path, "%s/samples.jsonl", r->dir);
  if ((rc = evaluate_test(r, n_test, 2000003u + (uint64_t)r->seed, path, o, m, err))) {
    cJSON_Delete(o);
    return rc;
  }
  /* who scored it, on which data, and where that departs from the paper */
  cJSON_AddItemToObject(o, "judges",
                        r->tk.judges ? cJSON_Duplicate(r->tk.judges, 1) : cJSON_CreateArray());
  if (r->tk.data_dir[0]) {
    cJSON *d = cJSON_AddObjectToObject(o, "data");
    cJSON_AddStringToObject(d, "splits", r->tk.data_dir);
    if (r->tk.data_verified >= 0)
      cJSON_AddBoolToObject(d, "verified", r->tk.data_verified);
    else
      cJSON_AddStringToObject(d, "verified", "unknown (task.data_dir)");
  }
  cJSON_AddItemToObject(o, "deviations",
                        r->tk.deviations ? cJSON_Duplicate(r->tk.deviations, 1)
                                         : cJSON_CreateArray());
  snprintf(path, sizeof path, "%s/eval.json", r->dir);
  rc = cfg_json_write(path, o, err);
  cJSON_Delete(o);
  if (rc)
    return rc;
  /* finished: the resumable checkpoint is no longer needed */
  if (r->resume_prev >= 0)
    remove_resume_files(r, r->resume_prev);
  resume_path(r, path, sizeof path, "state.json", -1);
  remove(path);
  resume_path(r, path, sizeof path, "", -1);
  rmdir(path);
  snprintf(path, sizeof path, "%s/DONE", r->dir);
  return dfpo_atomic_write_file(path, "done\n", 5, err);
}

int cmd_train(int argc, char **argv) {
  static const struct option opts[] = {
      {"task", required_argument, NULL, 't'},   {"algo", required_argument, NULL, 'a'},
      {"seed", required_argument, NULL, 'n'},   {"out", required_argument, NULL, 'o'},
      {"model", required_argument, NULL, 'm'},  {"tokenizer", required_argument, NULL, 'k'},
      {"device", required_argument, NULL, 'D'}, {"config", required_argument, NULL, 'c'},
      {"set", required_argument, NULL, 's'},    {"stop-after", required_argument, NULL, 'S'},
      {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
  /* command-line options become --set overrides, applied after the file */
  char **sets = calloc((size_t)argc + 1, sizeof *sets);
  char **owned = calloc((size_t)argc + 1, sizeof *owned);
  const char *file = NULL;
  int nsets = 0, nowned = 0, c, rc = DFPO_OK, stop_after = 0;
  if (!sets || !owned) {
    free(sets);
    free(owned);
    return DFPO_ERUNTIME;
  }
  cli_reset_getopt();
  while (rc == DFPO_OK && (c = getopt_long(argc, argv, ":hs:", opts, NULL)) != -1) {
    const char *key = NULL;
    switch (c) {
    case 't':
      key = "task.name";
      break;
    case 'a':
      key = "algo";
      break;
    case 'n':
      key = "seed";
      break;
    case 'o':
      key = "out";
      break;
    case 'm':
      key = "model.path";
      break;
    case 'k':
      key = "tokenizer.path";
      break;
    case 'D':
      key = "device";
      break;
    case 'c':
      file = optarg;
      break;
    case 's':
      sets[nsets++] = optarg;
      break;
    case 'S':
      rc = cli_integer("train", optarg, 1, 1 << 30, "--stop-after", &stop_after);
      break;
    case 'h':
      fputs(train_usage, stdout);
      rc = -1;
      break;
    default:
      rc = cli_bad_option("train", argc, argv, c);
    }
    if (key) {
      size_t len = strlen(key) + strlen(optarg) + 2;
      char *s = malloc(len);
      if (!s) {
        rc = DFPO_ERUNTIME;
        break;
      }
      snprintf(s, len, "%s=%s", key, optarg);
      owned[nowned++] = s;
      sets[nsets++] = s;
    }
  }
  if (rc == DFPO_OK && optind < argc)
    rc = cli_usage_error("train", "unexpected argument '%s'", argv[optind]);
  if (rc == DFPO_OK) {
    run r;
    memset(&r, 0, sizeof r);
    dfpo_err err;
    dfpo_err_clear(&err);
    rc = cfg_load(&r.conf, cfg_schema, file, (const char *const *)sets, nsets, &err);
    r.stop_after = stop_after;
    const char *device;
    if (!rc && ((rc = cfg_get_str(&r.conf, "device", &device, &err)) ||
                (rc = cli_use_device(device, &err))))
      cfg_free(&r.conf);
    if (!rc) {
      rc = run_cell(&r, &err);
      run_free(&r);
    }
    if (rc)
      rc = cli_fail(&err);
  }
  for (int i = 0; i < nowned; i++)
    free(owned[i]);
  free(owned);
  free(sets);
  return rc < 0 ? DFPO_OK : rc;
}
