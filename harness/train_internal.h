/* Internal to the files of `dfpo train` (cmd_train.c: setup, the loop and
 * the command; train_config.c: options and config -> run settings;
 * train_eval.c: validation, the test evaluation and its samples;
 * train_sft.c: SFT's epochs; train_resume.c: the resumable checkpoint).
 *
 * Prefix: trn_. Ownership: a trn_run owns everything it points to
 * (trn_run_free in cmd_train.c releases it); its settings' strings point
 * into its config and live as long as it.
 */
#ifndef DFPO_HARNESS_TRAIN_INTERNAL_H
#define DFPO_HARNESS_TRAIN_INTERNAL_H

#include "harness/algo.h"
#include "harness/config.h"
#include "harness/task.h"
#include "trainer/beam.h"
#include "trainer/model.h"
#include "trainer/optim.h"
#include "trainer/rl.h"
#include "trainer/sample.h"
#include "trainer/tok.h"

#include <cjson/cJSON.h>
#include <stdint.h>

/* ------------------------------------------------------- train_config.c */

/* What the command line says: the config file, the --set overrides (the
 * options become overrides too, applied after the file) and --stop-after. */
typedef struct trn_options {
  const char *file; /* --config (NULL: none); points into argv */
  char **sets;      /* nsets overrides, each "key.path=value" */
  int nsets;
  char **owned; /* the overrides built from options (freed by trn_options_free) */
  int nowned;
  int stop_after; /* --stop-after N (0: off) */
} trn_options;

/* Parses dfpo train's argv into o. Returns DFPO_OK, -1 when --help was
 * printed, or the code of a usage error already printed. o is filled as far
 * as it got; trn_options_free releases it in every case. */
int trn_options_parse(int argc, char **argv, trn_options *o);
void trn_options_free(trn_options *o);

/* Every config key `dfpo train` reads, read in one place (docs/configs.md
 * says what each means). */
typedef struct trn_settings {
  const char *task_name, *algo_name, *suite, *out, *model, *tokenizer, *device, *judge_lm;
  alg_id algo;
  int64_t seed;
  int64_t threads;               /* CPU threads (0: the default) */
  int max_prompt;                /* task.max_prompt_tokens */
  int prompt_right;              /* task.prompt_truncation right: keep a long prompt's start */
  int batch;                     /* train.batch_size */
  smp_settings sampling;         /* generation.*; eos is the tokenizer's, set by setup */
  int64_t iterations;            /* train.iterations */
  int64_t eval_every;            /* train.eval_every */
  int64_t max_prompts;           /* eval.max_prompts (0: all) */
  int samples_per_prompt;        /* eval.samples_per_prompt (0: the task's protocol) */
  int ppl_ref;                   /* eval.ppl_ref */
  int eval_negative;             /* DfPO with dfpo.eval_policy=negative: evaluate pi- */
  int eval_beams;                /* eval.num_beams (0: sample with `sampling`) */
  beam_settings eval_beam;       /* eval.*; lengths and eos as `sampling`'s, set by setup */
  double lr, weight_decay, clip; /* train.lr, train.weight_decay, train.max_grad_norm */
  /* train.lr_schedule and train.warmup_steps from train.lr down to 0; its
   * steps are RL iterations or SFT optimiser steps, and `total` is set
   * where they are counted (trn_lr_at) */
  opt_lr_schedule schedule;
  rl_config rl; /* ppo, nlpo, dfpo: the trainer's settings */
  /* model.lora_*: adapters on the policy (rank 0: none) */
  int lora_rank;
  double lora_alpha;
  const char *lora_targets;
  /* model.adapters: peft's adapter folder (or hub name) the policy starts
   * from ("": none); its adapters are the LoRA ones, the reference is the
   * starting policy */
  const char *adapters;
  int shared_value;             /* model.value_model shared: the value head on the policy's trunk */
  int activation_checkpointing; /* model.activation_checkpointing */
  ops_dtype reference_dtype;    /* model.reference_dtype */
} trn_settings;

int trn_settings_read(const cfg *c, trn_settings *s, dfpo_err *err);
/* The learning rate of step `step` of `total` under s->schedule (train.lr
 * itself with the defaults, constant and no warmup). */
float trn_lr_at(const trn_settings *s, int64_t step, int64_t total);

/* ---------------------------------------------------------- the run */

/* Everything one run holds. */
typedef struct trn_run {
  cfg conf;
  trn_settings set;
  task tk;
  tok_tokenizer *tok;
  model_t *policy, *ref, *value;
  rl_trainer *rl;
  smp_settings sampling; /* set.sampling with the tokenizer's end-of-text */
  beam_settings beam;    /* set.eval_beam with sampling's lengths and end-of-text */
  int eos, pad;
  int bos;             /* a decoder-only policy's tokenizer's own start, put before every
                          prompt and SFT text as transformers' tokenizer(text) puts it
                          (Llama's <s> with add_bos_token: tok_bos_id), else -1 */
  int seq2seq;         /* the policy is an encoder-decoder (T5): prompts are its sources,
                          each ended with eos; SFT rows are [source | reference eos] */
  int stop_after;      /* --stop-after: iterations before stopping as a kill would (0: off) */
  int64_t resume_prev; /* iteration of the resumable checkpoint on disk (-1: none) */
  int32_t **sft_ids;   /* SFT: tokenized training references (seq2seq: the reference
                          then eos; else bos then the reference) */
  size_t *sft_len;
  char dir[4096];
  dfpo_lock lock; /* of dir, held from setup to the end (released by cmd_train) */
  /* model.path and eval.judge_lm as local paths (cli_model_path): set.model
   * and set.judge_lm point here after setup */
  char model_path[4096], judge_lm_path[4096], adapters_path[4096];
  /* tokenized prompts per split */
  int32_t **prompt_ids[TASK_SPLITS];
  size_t *prompt_len[TASK_SPLITS];
  /* the batch being scored by the reward callback */
  const size_t *batch_items;
  int batch_split;
} trn_run;

/* cmd_train.c: the memory switches (docs/memory.md). trn_memory_apply
 * turns on model.activation_checkpointing in every model of the run
 * (policy, reference, value and mask models; after setup and after a
 * resume, whose loaded models start without it); trn_models_bytes is what
 * they hold (model_arena_bytes); trn_memory_json adds eval.json's "memory"
 * object: the switches the run used (lora_rank, value_model none, separate
 * or shared, activation_checkpointing, reference_dtype; not the bytes, which depend on the
 * shapes this process ran, so that a resumed run's eval.json is the
 * uninterrupted one's). */
int trn_memory_apply(trn_run *r, dfpo_err *err);
size_t trn_models_bytes(const trn_run *r);
void trn_memory_json(const trn_run *r, cJSON *o);

/* --------------------------------------------------------- train_eval.c */

/* Left-pads the prompts of items[0..B) into tokens[B, Tp] (kstart: pad
 * count), each longer than max_prompt tokens truncated to it: its start cut
 * (task.prompt_truncation left), or its end (right; an encoder's source
 * keeps its final eos, as Hugging Face's tokenizers truncate before adding
 * it). The arrays are the caller's (free); -1 when out of memory. */
int trn_build_batch(const trn_run *r, int split, const size_t *items, int B, int **tokens,
                    int **kstart, int *Tp);
/* The text of a continuation, without a final end-of-text. Heap string. */
char *trn_continuation_text(const trn_run *r, const int *cont, int len, dfpo_err *err);
/* Validation: one sample per prompt of the first n of a split, the metrics'
 * means (means[0] selects the checkpoint); samples_path (optional) gets
 * one JSON line per sample. Sampling draws from the run seed's stream
 * DFPO_STREAM_EVAL_VALIDATION, started afresh at every validation, so that
 * the checkpoints of a run are compared on the same random numbers
 * (docs/algorithms.md). */
int trn_evaluate(trn_run *r, int split, size_t n, double *means, const char *samples_path,
                 dfpo_err *err);
/* ppl_ref over the first n items of a split: the policy's perplexity of the
 * items' reference texts (met_ppl_ref); for an encoder-decoder (seq2seq),
 * of each item's target (trn_seq2seq_target) given its source as the
 * sampler sees it (trn_build_batch's cut), met_ppl_gen_ids. *nrefs = 0
 * (and *ppl untouched) when none of them has one. */
int trn_refs_ppl(trn_run *r, int split, size_t n, double *ppl, size_t *nrefs, dfpo_err *err);
/* Loads eval.json's judge LM (r->set.judge_lm, a local path) and the
 * tokenizer it reads the texts with: its own (*jtok) when its folder has
 * tokenizer files (a GPT-2 judging a T5 policy's samples, as the paper's
 * ppl_gen), else the run's (*jtok NULL), which must then be its
 * tokenizer: a decoder-only judge without one is refused for an
 * encoder-decoder policy (SentencePiece ids), and any judge whose
 * vocabulary is smaller than the tokenizer's (DFPO_EUSAGE). dfpo train
 * calls it before training too, so that a bad judge fails first. *lm and
 * *jtok are the caller's (model_free, tok_free); both NULL on error. */
int trn_judge_lm_open(const trn_run *r, model_t **lm, tok_tokenizer **jtok, dfpo_err *err);
/* The test evaluation written to eval.json: the samples (from the run
 * seed's stream DFPO_STREAM_EVAL_TEST) into samples_path, the metrics into
 * `metrics`, what produced them into `o`. */
int trn_evaluate_test(trn_run *r, size_t n, const char *samples_path, cJSON *o, cJSON *metrics,
                      dfpo_err *err);

/* ---------------------------------------------------------- train_sft.c */

/* SFT's texts: the training references, tokenized into r->sft_ids. */
int trn_sft_tokenize(trn_run *r, dfpo_err *err);
/* An encoder-decoder's target for an item's reference: its tokens (without
 * the prompt where the reference begins with it, as imdb's and
 * synthetic's references do) and r->eos (</s>), cut to the decoder's n_ctx
 * positions; what SFT trains on and ppl_ref scores. *ids (*len ids) is a
 * heap array, the caller's. */
int trn_seq2seq_target(const trn_run *r, const char *prompt, const char *reference, int32_t **ids,
                       size_t *len, dfpo_err *err);
/* SFT's epoch `epoch` of `epochs` (data: the data-order stream; the
 * learning rate follows the schedule over all epochs' steps); *loss gets
 * the mean step loss, *steps the optimiser steps. */
int trn_sft_epoch(trn_run *r, int64_t epoch, int64_t epochs, dfpo_rng *data, double *loss,
                  int *steps, dfpo_err *err);

/* ------------------------------------------------------- train_resume.c */

/* Where a run stands between iterations: with the models (parameters and
 * AdamW states) and the trainer's state, enough to continue bit for bit. */
typedef struct trn_loop_state {
  int64_t next_it;   /* the first iteration not done */
  double best;       /* best validation score so far */
  int best_iter;     /* its iteration */
  dfpo_rng data;     /* the data-order stream */
  int64_t log_bytes; /* length of train.jsonl up to next_it */
} trn_loop_state;

/* checkpoint/resume/<what> (it < 0) or checkpoint/resume/<what>-<it>.ckpt. */
void trn_resume_path(const trn_run *r, char *buf, size_t n, const char *what, int64_t it);
/* Removes the models of the resumable checkpoint of iteration it. */
void trn_resume_remove(const trn_run *r, int64_t it);
/* Writes the resumable checkpoint of iteration ls->next_it. */
int trn_resume_save(trn_run *r, const trn_loop_state *ls, dfpo_err *err);
/* Continues from checkpoint/resume/state.json when there is one (*found
 * says so): the models, the trainer and ls come back. */
int trn_resume_load(trn_run *r, trn_loop_state *ls, int *found, dfpo_err *err);

#endif
