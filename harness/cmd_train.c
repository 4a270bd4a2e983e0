/* dfpo train: one (task, algorithm, seed) cell of the run folder layout
 * (docs/algorithms.md), over the RL loop of trainer/rl_train.c: setup, the
 * loop and the command. The options and the config are read in
 * train_config.c, the evaluations live in train_eval.c, SFT in train_sft.c,
 * the resumable checkpoint in train_resume.c. */
#include "harness/cli.h"
#include "harness/rundir.h"
#include "harness/task_internal.h"
#include "harness/tb_events.h"
#include "harness/train_internal.h"
#include "trainer/t5.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The rollouts' texts scored together (the judge's batches). */
static int reward_cb(void *ctx, int B, const int *prompts, const int *kstart, int Tp,
                     const int *cont, const int *lens, int max_new, float *rewards, dfpo_err *err) {
  (void)prompts, (void)kstart, (void)Tp;
  trn_run *r = ctx;
  int nm = r->tk.n_metrics, rc = DFPO_OK;
  char **texts = calloc((size_t)B + 1, sizeof *texts);
  const task_item **items = calloc((size_t)B + 1, sizeof *items);
  double *v = malloc(((size_t)B + 1) * (size_t)nm * sizeof *v);
  if (!texts || !items || !v)
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "rewards: out of memory");
  for (int b = 0; !rc && b < B; b++) {
    items[b] = &r->tk.items[r->batch_split][r->batch_items[b]];
    if (!(texts[b] = trn_continuation_text(r, cont + (size_t)b * max_new, lens[b], err)))
      rc = err && err->code ? err->code : DFPO_ERUNTIME;
  }
  if (!rc && !(rc = task_score_many(&r->tk, items, (const char *const *)texts, (size_t)B, v, err)))
    for (int b = 0; b < B; b++)
      rewards[b] = (float)v[(size_t)b * nm];
  for (int b = 0; texts && b < B; b++)
    free(texts[b]);
  free(texts), free(items), free(v);
  return rc;
}

static int tokenize_prompts(trn_run *r, dfpo_err *err) {
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
      /* an encoder's source ends with eos, as T5Tokenizer encodes one */
      if (r->seq2seq) {
        int32_t *grown = realloc(v.ids, (v.n + 1) * sizeof *grown);
        if (!grown) {
          tok_ids_free(&v);
          return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
        }
        v.ids = grown;
        v.ids[v.n++] = r->eos;
      }
      r->prompt_ids[s][i] = v.ids;
      r->prompt_len[s][i] = v.n;
    }
  }
  return DFPO_OK;
}

/* The value model: the policy's trunk with a value head (initialised from
 * the run seed), as RL4LMs starts its separate value network, into *out.
 * With model.value_model shared the policy itself becomes that model (the
 * same head, put on in place: model_add_value_head), before any LoRA
 * adapters (which then train a copy of the head with them), and r->value
 * stays NULL. */
static int make_value_model(trn_run *r, model_t **out, dfpo_err *err) {
  model_t *v = NULL;
  int rc = model_new_like(&v, r->policy, MODEL_HEAD_VALUE, 0, err);
  if (rc)
    return rc;
  model_init_random(v, (uint64_t)r->set.seed);
  if ((rc = model_copy_shared_params(v, r->policy, NULL, err))) {
    model_free(v);
    return rc;
  }
  *out = v;
  return DFPO_OK;
}

int trn_memory_apply(trn_run *r, dfpo_err *err) {
  if (!r->set.activation_checkpointing)
    return DFPO_OK;
  model_t *ms[4] = {r->policy, r->ref, r->value, r->rl ? rl_trainer_mask_model(r->rl) : NULL};
  for (int i = 0; i < 4; i++)
    if (ms[i] && model_set_checkpointing(ms[i], 1, err))
      return dfpo_err_prefix(err, "train: model.activation_checkpointing");
  return DFPO_OK;
}

size_t trn_models_bytes(const trn_run *r) {
  const model_t *ms[4] = {r->policy, r->ref, r->value, r->rl ? rl_trainer_mask_model(r->rl) : NULL};
  size_t n = 0;
  for (int i = 0; i < 4; i++)
    n += ms[i] ? model_arena_bytes(ms[i]) : 0;
  return n;
}

void trn_memory_json(const trn_run *r, cJSON *o) {
  cJSON *m = cJSON_AddObjectToObject(o, "memory");
  cJSON_AddNumberToObject(m, "lora_rank", model_lora_rank(r->policy));
  cJSON_AddStringToObject(m, "value_model", !r->rl ? "none" : r->value ? "separate" : "shared");
  cJSON_AddBoolToObject(m, "activation_checkpointing", r->set.activation_checkpointing);
  cJSON_AddStringToObject(m, "reference_dtype", ops_dtype_name(model_weight_dtype(r->ref)));
}

static void run_free(trn_run *r) {
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
  model_free(r->ref); /* a LoRA policy's base view: before its policy */
  model_free(r->policy);
  model_free(r->value);
  tok_free(r->tok);
  task_free(&r->tk);
  cfg_free(&r->conf);
}

static int setup(trn_run *r, dfpo_err *err) {
  const trn_settings *s = &r->set;
  int rc;
  if (!s->model[0])
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "train: needs a base model (--model) and a tokenizer "
                        "(--tokenizer, or a model folder with tokenizer files)");
  /* the task and its judges first: a bad judge setting stops the run
   * before a model is fetched or loaded */
  if ((rc = task_open(s->task_name, &r->conf, &r->tk, err)))
    return rc;
  /* the run folder next: another process on it stops this one here
   * (DFPO_ELOCKED), before any model is loaded; the lock itself is taken
   * below, before anything is written (a bad setting found on the way
   * makes no folder). The paths under it add at most
   * "/checkpoint/resume/policy-<iteration>.ckpt" and so fit their buffers
   * of 4200 and more. */
  if ((rc = dfpo_path_fmt(r->dir, sizeof r->dir, err, "%s/%s/%s/%s/seed-%lld", s->out, s->suite,
                          s->task_name, s->algo_name, (long long)s->seed)))
    return dfpo_err_prefix(err, "train: run folder");
  if ((rc = dfpo_lock_check(r->dir, err)))
    return rc;
  /* hub names become cache folders before they are loaded */
  if ((rc = cli_model_path(s->model, r->model_path, sizeof r->model_path, err)))
    return rc;
  if (strcmp(r->model_path, s->model))
    dfpo_info("train: model.path %s is %s", s->model, r->model_path);
  r->set.model = r->model_path;
  if (s->judge_lm[0]) {
    if ((rc = cli_model_path(s->judge_lm, r->judge_lm_path, sizeof r->judge_lm_path, err)))
      return dfpo_err_prefix(err, "eval.judge_lm");
    r->set.judge_lm = r->judge_lm_path;
  }
  /* a Hugging Face folder as the model (or a hub name's) brings its own
   * tokenizer */
  const char *tokdir = cli_model_tokenizer(s->model, s->tokenizer);
  if (!tokdir)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "train: needs a base model (--model) and a tokenizer "
                        "(--tokenizer, or a model folder with tokenizer files)");
  /* a LoRA base kept in 16 bits (model.reference_dtype) is read straight
   * into them, unless a separate value model is to be made from its fp32
   * weights first */
  int lora = s->lora_rank || s->adapters[0];
  ops_dtype pd = lora && (s->shared_value || s->rl.algo < 0) ? s->reference_dtype : OPS_DTYPE_F32;
  if (s->adapters[0] &&
      (rc = cli_model_path(s->adapters, r->adapters_path, sizeof r->adapters_path, err)))
    return dfpo_err_prefix(err, "model.adapters");
  if ((rc = tok_load(&r->tok, tokdir, err)) || (rc = model_load_as(&r->policy, s->model, pd, err)))
    return rc;
  if (r->set.judge_lm && r->set.judge_lm[0]) { /* fail before training, not after */
    model_t *lm;
    tok_tokenizer *jt;
    if ((rc = trn_judge_lm_open(r, &lm, &jt, err)))
      return rc;
    model_free(lm), tok_free(jt);
  }
  if (s->shared_value && s->rl.algo >= 0) {
    /* the value head on the policy's trunk, put on the policy in place (the
     * head make_value_model would give it, without a second trunk; SFT and
     * zero-shot have no value model) */
    if (!model_can_share_value(r->policy))
      return dfpo_err_set(
          err, DFPO_EUSAGE,
          "train: model.value_model shared: a value head on the policy's trunk "
          "is not implemented for %s models (GPT-2 and the rotary decoders have it)",
          model_get_config(r->policy)->arch);
    if ((rc = model_add_value_head(r->policy, (uint64_t)r->set.seed, err)))
      return dfpo_err_prefix(err, "train: model.value_model shared");
  }
  if (lora) {
    /* adapters on the policy (new, or peft's from model.adapters); the
     * reference is its base, not a copy (with model.adapters: the starting
     * policy, the base shared and the starting adapters copied) */
    model_lora_config lc = {s->lora_rank, (float)s->lora_alpha, s->lora_targets};
    if (s->adapters[0] && (rc = model_load_peft_adapters(r->policy, r->adapters_path, err)))
      return dfpo_err_prefix(err, "train: model.adapters");
    if (!s->adapters[0] && (rc = model_add_lora(r->policy, &lc, (uint64_t)s->seed, err)))
      return dfpo_err_prefix(err, "train: model.lora_rank %d", s->lora_rank);
    if (s->reference_dtype != OPS_DTYPE_F32) {
      /* model.reference_dtype: the frozen base the policy and its reference
       * share in 16 bits; a separate value model is made from the fp32
       * weights first */
      if (s->rl.algo >= 0 && !s->shared_value && (rc = make_value_model(r, &r->value, err)))
        return rc;
      if ((rc = model_set_weight_dtype(r->policy, s->reference_dtype, err)))
        return dfpo_err_prefix(err, "train: model.reference_dtype with model.lora_rank");
    }
    if ((rc = s->adapters[0] ? model_adapter_view(&r->ref, r->policy, err)
                             : model_base_view(&r->ref, r->policy, err)))
      return dfpo_err_prefix(err, "train: the reference over the LoRA policy's base");
  } else if ((rc = model_load_as(&r->ref, s->model, s->reference_dtype, err))) {
    return rc; /* model.reference_dtype: a Hugging Face folder read straight into 16 bits */
  }
  if ((size_t)model_get_config(r->policy)->vocab_size < tok_vocab_size(r->tok))
    return dfpo_err_set(err, DFPO_EDATA,
                        "%s: the model's vocabulary (%d) is smaller than the "
                        "tokenizer's (%zu in %s)",
                        s->model, model_get_config(r->policy)->vocab_size, tok_vocab_size(r->tok),
                        tokdir);
  /* what the weights cost: a LoRA policy's reference shares its base */
  dfpo_info("train: policy and reference hold %zu bytes (model_arena_bytes)%s%s%s",
            model_arena_bytes(r->policy) + model_arena_bytes(r->ref),
            s->adapters[0] ? ", the reference the starting policy: its base shared, its "
                             "adapters copied"
            : s->lora_rank ? ", the reference a view of the LoRA policy's base"
                           : "",
            s->reference_dtype == OPS_DTYPE_F32 ? ""
            : lora                              ? ", the base's weights in "
                                                : ", the reference's weights in ",
            s->reference_dtype != OPS_DTYPE_F32 ? ops_dtype_name(s->reference_dtype) : "");
  r->eos = tok_eot_id(r->tok);
  r->pad = r->eos >= 0 ? r->eos : 0;
  r->seq2seq = t5_get_config(r->policy) != NULL;
  r->bos = r->seq2seq ? -1 : (int)tok_bos_id(r->tok);
  /* RL4LMs and the paper fine-tune T5 on CommonGen */
  if (!r->seq2seq && !strcmp(r->tk.name, "commongen"))
    task_deviation(&r->tk, "a decoder-only policy (RL4LMs and the paper fine-tune T5 on "
                           "CommonGen)");
  r->sampling = s->sampling;
  r->sampling.eos = r->eos;
  r->set.rl.sampling = r->sampling;
  r->beam = s->eval_beam;
  r->beam.max_new = r->sampling.max_new;
  r->beam.min_new = r->sampling.min_new;
  r->beam.eos = r->sampling.eos;
  int n_ctx = model_get_config(r->policy)->n_ctx;
  if (r->seq2seq && r->eos < 0)
    return dfpo_err_set(err, DFPO_EUSAGE, "train: %s's tokenizer has no </s> to end a source",
                        s->model);
  if (r->seq2seq && r->sampling.max_new + 1 > n_ctx)
    /* the source has no length limit (relative positions); the decoder
     * holds the start token and the new tokens */
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "train: generation.max_new_tokens (%d) + the start token exceed the "
                        "decoder's positions (%d)",
                        r->sampling.max_new, n_ctx);
  if (!r->seq2seq && s->max_prompt + r->sampling.max_new > n_ctx)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "train: task.max_prompt_tokens (%d) + generation.max_new_tokens (%d) "
                        "exceed the model's context (%d)",
                        s->max_prompt, r->sampling.max_new, n_ctx);
  if ((rc = tokenize_prompts(r, err)))
    return rc;
  /* locked before anything is read or written in it: a second process on
   * the same folder stops here and leaves the first one's files alone */
  char parent[4200];
  snprintf(parent, sizeof parent, "%s", r->dir);
  *strrchr(parent, '/') = '\0';
  if ((rc = dfpo_mkdirs(parent, err)) || (rc = dfpo_lock_take(&r->lock, r->dir, err)))
    return rc;
  char ck[4200];
  snprintf(ck, sizeof ck, "%s/checkpoint", r->dir);
  if ((rc = dfpo_mkdirs(ck, err)))
    return rc;
  /* what a killed run's atomic writes left (samples.jsonl.tmp.<pid>.<n>,
   * checkpoints): their writers are gone, and nobody reads them */
  int swept = 0, more = 0;
  if ((rc = dfpo_atomic_sweep(r->dir, 60, &swept, err)) ||
      (rc = dfpo_atomic_sweep(ck, 60, &more, err)))
    return rc;
  if (swept + more)
    dfpo_info("train: removed %d temporary files left by killed runs in %s", swept + more, r->dir);
  if (s->rl.algo < 0) /* zero-shot, sft: no value model */
    return trn_memory_apply(r, err);
  if ((!s->shared_value && !r->value && (rc = make_value_model(r, &r->value, err))) ||
      (rc = rl_trainer_new(&r->rl, r->policy, r->ref, r->value ? r->value : r->policy, &r->set.rl,
                           (uint64_t)s->seed, err)))
    return rc;
  /* NLPO's mask model: with LoRA the policy's base shared, its own adapters */
  const model_t *mask = rl_trainer_mask_model(r->rl);
  if (mask)
    dfpo_info("train: NLPO's mask model holds %zu bytes (model_arena_bytes)%s",
              model_arena_bytes(mask),
              lora ? ", a view of the LoRA policy's base with its own adapters" : "");
  return trn_memory_apply(r, err);
}

/* ------------------------------------------------------------- the loop */

/* The numbers of one train.jsonl line as TensorBoard scalars: val_* keys
 * under "val/", the others under "train/" (iteration is the step). */
static int tb_line(tb_writer *tb, int64_t it, const cJSON *line, dfpo_err *err) {
  const char *tags[64];
  char names[64][80];
  double vals[64];
  int n = 0;
  const cJSON *c;
  cJSON_ArrayForEach(c, line) {
    if (n == 64 || !cJSON_IsNumber(c) || !c->string || !strcmp(c->string, "iteration"))
      continue;
    if (!strncmp(c->string, "val_", 4))
      snprintf(names[n], sizeof names[n], "val/%s", c->string + 4);
    else
      snprintf(names[n], sizeof names[n], "train/%s", c->string);
    tags[n] = names[n];
    vals[n++] = c->valuedouble;
  }
  return tb_scalars(tb, it, tags, vals, n, err);
}

/* Iterations ls->next_it..iterations: validation every eval_every (and at
 * the last), training, one train.jsonl line each, and a resumable checkpoint
 * after every eval_every-th iteration. *stopped: --stop-after ended it. */
static int train_loop(trn_run *r, int64_t iterations, int64_t eval_every, size_t n_val,
                      trn_loop_state *ls, int *stopped, dfpo_err *err) {
  char path[4300], logpath[4300];
  snprintf(logpath, sizeof logpath, "%s/train.jsonl", r->dir);
  /* train.jsonl grows line by line; a kill leaves whole lines behind, and a
   * resumed run cuts it back to its checkpoint, after checking that the
   * part it keeps is what the checkpoint recorded: as long, one whole
   * record per iteration up to the last. A shorter or damaged log is an
   * error (it is never padded). */
  if (ls->next_it > 0) {
    int64_t lines = 0;
    int rc = rundir_log_read(logpath, ls->log_bytes, NULL, NULL, &lines, err);
    if (rc)
      return dfpo_err_prefix(err, "train: cannot resume %s", r->dir);
    if (lines != ls->next_it)
      return dfpo_err_set(err, DFPO_EDATA,
                          "train: cannot resume %s: %s has %lld iterations up to the "
                          "checkpoint's %lld bytes, the checkpoint is at iteration %lld",
                          r->dir, logpath, (long long)lines, (long long)ls->log_bytes,
                          (long long)ls->next_it);
    if (truncate(logpath, (off_t)ls->log_bytes) != 0)
      return dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot cut back to its checkpoint",
                            logpath);
  }
  FILE *log = fopen(logpath, ls->next_it > 0 ? "a" : "w");
  if (!log)
    return dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot open", logpath);
  /* the prompts an iteration may use: the buffer takes as many as it needs */
  int rc = DFPO_OK, B = rl_prompts_per_iteration(&r->set.rl, r->set.batch);
  *stopped = 0;
  size_t *items = malloc(sizeof(size_t) * (size_t)B);
  if (!items)
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  double t_loop = dfpo_now();
  int64_t first = ls->next_it;
  /* the same numbers for TensorBoard, a new event file per process (a
   * resumed run's replayed iterations appear twice there, not in the log) */
  tb_writer *tb = NULL;
  if (!rc && (rc = tb_open(&tb, r->dir, err)))
    tb = NULL;
  for (int64_t it = ls->next_it; !rc && it <= iterations; it++) {
    double t_it = dfpo_now();
    cJSON *line = cJSON_CreateObject();
    cJSON_AddNumberToObject(line, "iteration", (double)it);
    char stamp[32];
    dfpo_utc_now(stamp);
    cJSON_AddStringToObject(line, "time", stamp);
    double shown_reward = NAN, shown_kl = NAN, shown_loss = NAN;
    if (it % eval_every == 0 || it == iterations) {
      double means[TASK_MAX_METRICS];
      if ((rc = trn_evaluate(r, TASK_VALIDATION, n_val, means, NULL, err))) {
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
      if (r->set.ppl_ref && (rc = trn_refs_ppl(r, TASK_VALIDATION, n_val, &ppl, &nrefs, err))) {
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
      if (r->set.algo == ALG_SFT) {
        double loss;
        int steps;
        rc = trn_sft_epoch(r, it, iterations, &ls->data, &loss, &steps, err);
        if (!rc) {
          shown_loss = loss;
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
        if (trn_build_batch(r, TASK_TRAIN, items, B, &tokens, &kstart, &Tp)) {
          rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
        } else {
          r->batch_items = items;
          r->batch_split = TASK_TRAIN;
          float lr = trn_lr_at(&r->set, it, iterations);
          rl_trainer_set_lr(r->rl, lr);
          cJSON_AddNumberToObject(line, "lr", lr);
          rc = rl_iterate(r->rl, tokens, kstart, B, Tp, reward_cb, r, &st, err);
        }
        free(tokens);
        free(kstart);
        if (!rc) {
          cJSON_AddNumberToObject(line, "reward", st.reward);
          cJSON_AddNumberToObject(line, "kl_seq", st.kl_seq);
          cJSON_AddNumberToObject(line, "kl_sampled", st.kl_sampled);
          if (isfinite(st.kl_token))
            cJSON_AddNumberToObject(line, "kl_token", st.kl_token);
          cJSON_AddNumberToObject(line, "mean_len", st.mean_len);
          cJSON_AddNumberToObject(line, "entropy", st.entropy);
          shown_reward = st.reward;
          shown_kl = st.kl_sampled;
          cJSON_AddNumberToObject(line, "policy_loss", st.policy_loss);
          cJSON_AddNumberToObject(line, "value_loss", st.value_loss);
          cJSON_AddNumberToObject(line, "clipfrac", st.clipfrac);
          cJSON_AddNumberToObject(line, "beta", st.beta);
          if (r->set.rl.rollout == RL_ROLLOUT_BUFFER) {
            cJSON_AddNumberToObject(line, "episodes", st.episodes);
            cJSON_AddNumberToObject(line, "transitions", st.transitions);
            cJSON_AddNumberToObject(line, "updates", st.updates);
          }
          if (r->set.algo == ALG_NLPO)
            cJSON_AddNumberToObject(line, "mask_mean", st.mask_mean);
          if (!isfinite(st.policy_loss) || !isfinite(st.value_loss))
            rc = dfpo_err_set(err, DFPO_ERUNTIME,
                              "train: the loss is not finite at iteration %lld; stopped (the "
                              "best checkpoint is kept)",
                              (long long)it);
        }
      }
    }
    double took = dfpo_now() - t_it;
    cJSON_AddNumberToObject(line, "iteration_s", took);
    cJSON_AddNumberToObject(line, "elapsed_s", dfpo_now() - t_loop);
    char *s = cJSON_PrintUnformatted(line);
    /* a line that cannot be written stops the run: a log with a hole is
     * not a log */
    int wrc = DFPO_OK;
    if (!s)
      wrc = dfpo_err_set(err, DFPO_ERUNTIME, "%s: out of memory", logpath);
    else if (fprintf(log, "%s\n", s) < 0 || fflush(log) != 0)
      wrc = dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: write failed at iteration %lld", logpath,
                           (long long)it);
    free(s);
    if (!rc)
      rc = wrc;
    if (!rc)
      rc = tb_line(tb, it, line, err);
    cJSON_Delete(line);
    if (rc)
      break;
    /* one line an iteration: what it did, its time, and the time left at
     * the mean pace of this run's iterations so far */
    {
      double pace = (dfpo_now() - t_loop) / (double)(it - first + 1);
      char left[32], what[160] = "";
      dfpo_format_hms(pace * (double)(iterations - it), left, sizeof left);
      if (isfinite(shown_reward))
        snprintf(what, sizeof what, ": reward %.4f, KL %.4f nats/token", shown_reward, shown_kl);
      else if (isfinite(shown_loss))
        snprintf(what, sizeof what, ": loss %.4f", shown_loss);
      dfpo_info("train: %s %lld of %lld%s, %.1f s, left %s",
                r->set.algo == ALG_SFT ? "epoch" : "iteration", (long long)it,
                (long long)iterations, what, took, left);
    }
    int64_t done = it + 1;
    if (done < iterations + 1 && done % eval_every == 0) {
      ls->next_it = done;
      ls->log_bytes = (int64_t)ftell(log);
      /* on the disk before state.json names its length */
      if (ls->log_bytes < 0 || rundir_log_sync(log) != 0) {
        rc = dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot sync", logpath);
        break;
      }
      if ((rc = trn_resume_save(r, ls, err)))
        break;
    }
    if (r->stop_after && done >= r->stop_after && done < iterations + 1) {
      dfpo_info("train: stopping after iteration %lld as asked", (long long)it);
      *stopped = 1;
      break;
    }
  }
  free(items);
  if (tb) {
    dfpo_err terr;
    int trc = tb_close(tb, &terr);
    if (trc && !rc) {
      *err = terr;
      rc = trc;
    }
  }
  int e = 0;
  if (fflush(log) != 0 || rundir_log_sync(log) != 0)
    e = errno;
  if (fclose(log) != 0 && !e)
    e = errno;
  if (e && !rc)
    rc = dfpo_err_errno(err, DFPO_ERUNTIME, e, "%s: write failed", logpath);
  return rc;
}

static int run_cell(trn_run *r, dfpo_err *err) {
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
  trn_loop_state ls = {0, -INFINITY, 0, {0, 0}, 0};
  dfpo_rng_init(&ls.data, (uint64_t)r->set.seed, DFPO_STREAM_DATA);
  int resumed = 0;
  snprintf(path, sizeof path, "%s/config.json", r->dir);
  if (!was_done && r->set.algo != ALG_ZERO_SHOT) {
    char *old = NULL;
    size_t olen = 0;
    int have_old = dfpo_read_file(path, &old, &olen, NULL) == DFPO_OK;
    int same = have_old && olen == strlen(json) && !memcmp(old, json, olen);
    free(old);
    if (same)
      rc = trn_resume_load(r, &ls, &resumed, err);
    else if (have_old) {
      trn_resume_path(r, path, sizeof path, "state.json", -1);
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
    trn_resume_path(r, path, sizeof path, "state.json", -1);
    remove(path);
    /* a run from scratch: the event files of earlier runs would mix in */
    DIR *d = opendir(r->dir);
    struct dirent *de;
    dfpo_err perr;
    while (d && (de = readdir(d)))
      if (!strncmp(de->d_name, "events.out.tfevents.", 20) &&
          dfpo_path_fmt(path, sizeof path, &perr, "%s/%s", r->dir, de->d_name) == DFPO_OK)
        remove(path);
    if (d)
      closedir(d);
  }
  snprintf(path, sizeof path, "%s/config.json", r->dir);
  size_t n = strlen(json);
  rc = dfpo_atomic_write_file(path, json, n, err);
  free(json);
  if (rc)
    return rc;
  int64_t iterations = r->set.iterations, eval_every = r->set.eval_every,
          max_prompts = r->set.max_prompts;
  size_t n_val = r->tk.n[TASK_VALIDATION], n_test = r->tk.n[TASK_TEST];
  if (max_prompts > 0) {
    n_val = n_val < (size_t)max_prompts ? n_val : (size_t)max_prompts;
    n_test = n_test < (size_t)max_prompts ? n_test : (size_t)max_prompts;
  }
  if (r->set.algo == ALG_SFT && (rc = trn_sft_tokenize(r, err)))
    return rc;
  double t_run = dfpo_now();
  if (r->set.algo != ALG_ZERO_SHOT) {
    int stopped = 0;
    if ((rc = train_loop(r, iterations, eval_every, n_val, &ls, &stopped, err)))
      return rc;
    if (stopped)
      return DFPO_OK;
    /* the selected policy: the best validation reward, read into the
     * policy in place (no second copy of it); a LoRA policy reads its
     * adapters alone (its base is best.ckpt's: frozen) */
    snprintf(path, sizeof path, "%s/checkpoint/best.ckpt", r->dir);
    if ((rc = model_lora_rank(r->policy) ? model_load_adapters(r->policy, path, err)
                                         : model_load_into(r->policy, path, err)))
      return rc;
  }
  int best_iter = ls.best_iter;
  cJSON *o = cJSON_CreateObject(), *m;
  cJSON_AddStringToObject(o, "task", r->tk.name);
  cJSON_AddStringToObject(o, "algo", r->set.algo_name);
  cJSON_AddNumberToObject(o, "seed", (double)r->set.seed);
  cJSON_AddNumberToObject(o, "best_iteration", best_iter);
  cJSON_AddNumberToObject(o, "test_prompts", (double)n_test);
  m = cJSON_AddObjectToObject(o, "metrics");
  snprintf(path, sizeof path, "%s/samples.jsonl", r->dir);
  if ((rc = trn_evaluate_test(r, n_test, path, o, m, err))) {
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
  /* the memory switches the run used, and what its models held at the end */
  trn_memory_json(r, o);
  dfpo_info("train: the models hold %zu bytes after training (model_arena_bytes: policy, "
            "reference, value and mask models; value model %s%s%s%s)",
            trn_models_bytes(r),
            !r->rl     ? "none"
            : r->value ? "separate"
                       : "on the policy's trunk",
            model_lora_rank(r->policy) ? ", LoRA" : "",
            r->set.activation_checkpointing ? ", activation checkpointing" : "",
            model_weight_dtype(r->ref) != OPS_DTYPE_F32 ? ", reference in 16 bits" : "");
  snprintf(path, sizeof path, "%s/eval.json", r->dir);
  rc = cfg_json_write(path, o, err);
  cJSON_Delete(o);
  if (rc)
    return rc;
  /* finished: the resumable checkpoint is no longer needed */
  if (r->resume_prev >= 0)
    trn_resume_remove(r, r->resume_prev);
  trn_resume_path(r, path, sizeof path, "state.json", -1);
  remove(path);
  trn_resume_path(r, path, sizeof path, "", -1);
  rmdir(path);
  /* last: the files as they are now, so that a reader can tell a whole
   * run folder from one that changed or was cut since */
  if ((rc = rundir_done_write(r->dir, err)))
    return rc;
  char took[32];
  dfpo_format_hms(dfpo_now() - t_run, took, sizeof took);
  if (r->set.algo == ALG_ZERO_SHOT)
    dfpo_info("train: done in %s (zero-shot: evaluated only); results in %s/eval.json", took,
              r->dir);
  else
    dfpo_info("train: done in %s%s: %lld %s, best validation %s %.4f at %lld; results in "
              "%s/eval.json",
              took, resumed ? " (this process, resumed)" : "", (long long)iterations,
              r->set.algo == ALG_SFT ? "epochs" : "iterations", r->tk.metric_names[0], ls.best,
              (long long)best_iter, r->dir);
  return DFPO_OK;
}

int cmd_train(int argc, char **argv) {
  trn_options o;
  int rc = trn_options_parse(argc, argv, &o);
  if (rc == DFPO_OK) {
    trn_run r;
    memset(&r, 0, sizeof r);
    dfpo_err err;
    dfpo_err_clear(&err);
    rc = cfg_load(&r.conf, cfg_schema, o.file, (const char *const *)o.sets, o.nsets, &err);
    r.stop_after = o.stop_after;
    if (!rc && ((rc = trn_settings_read(&r.conf, &r.set, &err)) ||
                (rc = cli_use_device(r.set.device, &err))))
      cfg_free(&r.conf);
    if (!rc)
      cli_use_threads(r.set.threads);
    if (!rc) {
      rc = run_cell(&r, &err);
      run_free(&r);
      dfpo_lock_release(&r.lock);
    }
    if (rc)
      rc = cli_fail(&err);
  }
  trn_options_free(&o);
  return rc < 0 ? DFPO_OK : rc;
}
