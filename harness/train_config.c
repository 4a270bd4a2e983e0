/* dfpo train's options and config: the command line into overrides, and
 * every config key the command reads into trn_settings. */
#include "harness/cli.h"
#include "harness/train_internal.h"

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    "continuations) and DONE, written last: the list of the folder's files with\n"
    "their sizes and SHA-256, so that a changed or cut file is seen later.\n"
    "\n"
    "Every train.eval_every iterations a resumable checkpoint goes to\n"
    "checkpoint/resume/ (policy, value model, AdamW states, KL controller,\n"
    "random streams, best so far; train.jsonl is synced before it); a folder\n"
    "without DONE whose config.json is the same continues from it and ends with\n"
    "the numbers of an uninterrupted run, once train.jsonl is checked: as long\n"
    "as the checkpoint recorded, one whole record per iteration (a cut or\n"
    "damaged log is an error naming its line). A folder with DONE is rerun from\n"
    "scratch. A line of train.jsonl that cannot be written stops the run.\n"
    "\n"
    "The run folder is locked (flock on <folder>.lock beside it) while the run\n"
    "lasts: a second `dfpo train` on it exits 5 at once, naming the holder's\n"
    "pid, host, start time and command, and touches nothing. Exit status: 0 ok,\n"
    "1 usage, 2 data (a damaged log), 3 runtime failure, 5 locked, 130\n"
    "interrupted.\n"
    "\n"
    "Tasks (docs/tasks.md): synthetic; imdb, rtp and commongen read the prepared\n"
    "splits (`dfpo datasets prepare`, or task.data_dir) and score with the\n"
    "harness's judges (`dfpo judge train sentiment|toxicity`; task.judge.*), a\n"
    "Hugging Face classifier folder (task.judge.sentiment_model,\n"
    "task.judge.toxicity_model), the Perspective API (task.judge.toxicity_api)\n"
    "and METEOR. eval.json holds the per-sample means, the task's corpus metrics\n"
    "(rtp: expected maximum toxicity and toxicity probability over\n"
    "eval.samples_per_prompt samples, 25 by default; commongen: BLEU-4, ROUGE-L,\n"
    "CIDEr-D, coverage), diversity, ppl_ref (and ppl_gen with eval.judge_lm),\n"
    "the judges that scored it (name or folder, version or label, SHA-256),\n"
    "the deviations from the paper and the memory switches the run used\n"
    "(memory: lora_rank, value_model, activation_checkpointing, reference_dtype).\n"
    "\n"
    "Memory (docs/memory.md): model.lora_rank (PPO, DfPO: LoRA adapters, the\n"
    "reference the policy's base); model.value_model=shared (PPO, NLPO, DfPO on\n"
    "GPT-2 and the rotary decoders, LoRA too: the value head on the policy's\n"
    "trunk, its loss backpropagated with the policy's, one AdamW);\n"
    "model.activation_checkpointing (GPT-2: each block recomputed in the\n"
    "backward pass, the same numbers); model.reference_dtype bf16|f16 (GPT-2\n"
    "and the rotary decoders: the frozen reference's weight matrices in 16\n"
    "bits, half their bytes; with LoRA, the frozen base the policy and its\n"
    "reference share, the adapters fp32).\n"
    "model.adapters DIR starts the policy from peft's LoRA adapters (a folder or\n"
    "a hub name; their rank, alpha and targets): they train on, and the\n"
    "reference is the starting policy (the base shared, the adapters copied).\n"
    "LoRA and the shared value head work on GPT-2 and the rotary decoders\n"
    "(GPT-J, GPT-NeoX, Llama), not on T5. The run prints what its models hold\n"
    "at the end.\n"
    "\n"
    "Algorithms: sft (next-token cross-entropy on the training references;\n"
    "train.iterations counts epochs), ppo, nlpo, dfpo (dfpo.mask_at\n"
    "sample|update, dfpo.eval_policy theta|negative, dfpo.ratio_clip,\n"
    "dfpo.adv_norm none|scale, dfpo.grad theta|masked, dfpo.plus_fraction) and\n"
    "zero-shot (the base model evaluated untrained). The learning rate follows train.lr_schedule\n"
    "and train.warmup_steps (RL: per iteration; SFT: per optimiser step); threads\n"
    "sets the CPU threads (0: the default).\n"
    "\n"
    "Options (each also a config key, see docs/configs.md):\n"
    "  --task T          task.name\n"
    "  --algo A          algo\n"
    "  --seed N          seed (sampling, data order, value-head init)\n"
    "  --out DIR         out\n"
    "  --model CKPT      model.path: the base policy (native checkpoint,\n"
    "                    model.safetensors, a Hugging Face folder, or a hub\n"
    "                    name OWNER/NAME[@REVISION]: its cache folder, fetched\n"
    "                    when absent); the reference is a frozen copy\n"
    "                    (with model.lora_rank > 0, SFT, PPO, NLPO and\n"
    "                    DfPO: LoRA adapters train on the policy, the\n"
    "                    reference is its frozen base, not a copy, and NLPO's\n"
    "                    mask model that base with its own copy of the\n"
    "                    adapters; not T5). GPT-2 and the rotary\n"
    "                    decoders GPT-J, GPT-NeoX / Pythia and Llama\n"
    "                    (docs/rotary.md) train here; a T5 (docs/t5.md)\n"
    "                    trains with its prompts as sources ended with </s>\n"
    "                    (its ppl_ref: each reference given its source)\n"
    "  --tokenizer DIR   tokenizer.path (default: the model's folder when it\n"
    "                    holds tokenizer files)\n"
    "  --device D        device: auto (the default), cpu or cuda. auto runs on\n"
    "                    CUDA when a device is usable, else on the CPU with a\n"
    "                    warning that says why; cuda fails with the driver's\n"
    "                    reason when none is. The CUDA backend passed its tests\n"
    "                    on a GPU, but no training run has run there yet\n"
    "                    (docs/cuda.md): cpu is the tested path\n"
    "  --config FILE     a config file laid over the defaults first\n"
    "  -s, --set k=v     override one config key (repeatable)\n"
    "  --stop-after N    stop after N iterations as a kill would (for resume tests)\n"
    "  -h, --help        show this help\n";

int trn_options_parse(int argc, char **argv, trn_options *o) {
  static const struct option opts[] = {
      {"task", required_argument, NULL, 't'},   {"algo", required_argument, NULL, 'a'},
      {"seed", required_argument, NULL, 'n'},   {"out", required_argument, NULL, 'o'},
      {"model", required_argument, NULL, 'm'},  {"tokenizer", required_argument, NULL, 'k'},
      {"device", required_argument, NULL, 'D'}, {"config", required_argument, NULL, 'c'},
      {"set", required_argument, NULL, 's'},    {"stop-after", required_argument, NULL, 'S'},
      {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
  memset(o, 0, sizeof *o);
  o->sets = calloc((size_t)argc + 1, sizeof *o->sets);
  o->owned = calloc((size_t)argc + 1, sizeof *o->owned);
  if (!o->sets || !o->owned)
    return DFPO_ERUNTIME;
  int c, rc = DFPO_OK;
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
      o->file = optarg;
      break;
    case 's':
      o->sets[o->nsets++] = optarg;
      break;
    case 'S':
      rc = cli_integer("train", optarg, 1, 1 << 30, "--stop-after", &o->stop_after);
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
      o->owned[o->nowned++] = s;
      o->sets[o->nsets++] = s;
    }
  }
  if (rc == DFPO_OK && optind < argc)
    rc = cli_usage_error("train", "unexpected argument '%s'", argv[optind]);
  return rc;
}

void trn_options_free(trn_options *o) {
  for (int i = 0; i < o->nowned; i++)
    free(o->owned[i]);
  free(o->owned);
  free(o->sets);
  memset(o, 0, sizeof *o);
}

#define GET(kind, path, dst)                                                                       \
  do {                                                                                             \
    if ((rc = cfg_get_##kind(c, path, dst, err)))                                                  \
      return rc;                                                                                   \
  } while (0)

int trn_settings_read(const cfg *c, trn_settings *s, dfpo_err *err) {
  int rc;
  int64_t v;
  double d;
  memset(s, 0, sizeof *s);
  GET(str, "task.name", &s->task_name);
  GET(str, "algo", &s->algo_name);
  GET(str, "suite.name", &s->suite);
  GET(str, "out", &s->out);
  GET(str, "model.path", &s->model);
  GET(str, "tokenizer.path", &s->tokenizer);
  GET(str, "device", &s->device);
  GET(int, "seed", &s->seed);
  GET(int, "threads", &s->threads);
  if (alg_parse(s->algo_name, &s->algo))
    return dfpo_err_set(err, DFPO_EUSAGE, "train: unknown algorithm '%s' (" ALG_CHOICES ")",
                        s->algo_name);
  GET(int, "task.max_prompt_tokens", &v);
  s->max_prompt = (int)v;
  const char *trunc;
  GET(str, "task.prompt_truncation", &trunc);
  s->prompt_right = !strcmp(trunc, "right");
  GET(int, "train.batch_size", &v);
  s->batch = (int)v;
  s->sampling = smp_settings_default();
  GET(int, "generation.max_new_tokens", &v);
  s->sampling.max_new = (int)v;
  GET(int, "generation.min_new_tokens", &v);
  s->sampling.min_new = (int)v;
  GET(num, "generation.temperature", &d);
  s->sampling.temperature = (float)d;
  GET(int, "generation.top_k", &v);
  s->sampling.top_k = (int)v;
  GET(num, "generation.top_p", &d);
  s->sampling.top_p = (float)d;
  GET(int, "train.iterations", &s->iterations);
  GET(int, "train.eval_every", &s->eval_every);
  GET(int, "eval.max_prompts", &s->max_prompts);
  GET(int, "eval.samples_per_prompt", &v);
  s->samples_per_prompt = (int)v;
  GET(bool, "eval.ppl_ref", &s->ppl_ref);
  GET(str, "eval.judge_lm", &s->judge_lm);
  const char *eval_policy;
  GET(str, "dfpo.eval_policy", &eval_policy);
  s->eval_negative = s->algo == ALG_DFPO && !strcmp(eval_policy, "negative");
  const char *early;
  GET(int, "eval.num_beams", &v);
  s->eval_beams = (int)v;
  s->eval_beam = beam_settings_default();
  s->eval_beam.num_beams = s->eval_beams ? s->eval_beams : 1;
  GET(num, "eval.length_penalty", &d);
  s->eval_beam.length_penalty = (float)d;
  GET(str, "eval.early_stopping", &early);
  s->eval_beam.early_stopping = !strcmp(early, "true")    ? BEAM_EARLY_TRUE
                                : !strcmp(early, "never") ? BEAM_EARLY_NEVER
                                                          : BEAM_EARLY_FALSE;
  if (s->eval_beams && s->eval_negative)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "eval.num_beams %d: beam search decodes pi_theta, but dfpo.eval_policy is "
                        "negative (pi-, sampled against the reference): set dfpo.eval_policy=theta "
                        "or eval.num_beams=0",
                        s->eval_beams);
  GET(num, "train.lr", &s->lr);
  GET(num, "train.weight_decay", &s->weight_decay);
  GET(num, "train.max_grad_norm", &s->clip);
  const char *sched;
  GET(str, "train.lr_schedule", &sched);
  s->schedule.kind = !strcmp(sched, "linear")   ? OPT_LR_LINEAR
                     : !strcmp(sched, "cosine") ? OPT_LR_COSINE
                                                : OPT_LR_CONSTANT;
  s->schedule.lr = (float)s->lr;
  s->schedule.min_lr = 0.0f;
  GET(int, "train.warmup_steps", &v);
  s->schedule.warmup = (int)v;
  GET(int, "model.lora_rank", &v);
  s->lora_rank = (int)v;
  GET(num, "model.lora_alpha", &s->lora_alpha);
  GET(str, "model.lora_targets", &s->lora_targets);
  GET(str, "model.adapters", &s->adapters);
  if (s->adapters[0] && s->lora_rank)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "train: model.adapters and model.lora_rank %d: the adapter folder's "
                        "adapter_config.json sets the rank, alpha and targets (leave "
                        "model.lora_* unset)",
                        s->lora_rank);
  if (s->lora_rank && s->algo == ALG_ZERO_SHOT)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "train: LoRA (model.lora_rank %d) with algo zero-shot: it trains nothing "
                        "(sft, ppo, nlpo and dfpo take adapters)",
                        s->lora_rank);
  const char *value_model;
  GET(str, "model.value_model", &value_model);
  s->shared_value = strcmp(value_model, "shared") == 0;
  GET(bool, "model.activation_checkpointing", &s->activation_checkpointing);
  const char *ref_dtype;
  GET(str, "model.reference_dtype", &ref_dtype);
  if (ops_dtype_parse(ref_dtype, &s->reference_dtype, err))
    return dfpo_err_prefix(err, "train: model.reference_dtype");

  /* the RL trainer's settings (read for every algorithm, used by three) */
  rl_config *rl = &s->rl;
  *rl = rl_config_default();
  rl->algo = alg_rl(s->algo);
  rl->sampling = s->sampling;
  GET(int, "train.epochs", &v);
  rl->epochs = (int)v;
  GET(int, "train.minibatch", &v);
  rl->minibatch = (int)v;
  const char *rollout;
  GET(str, "train.rollout", &rollout);
  rl->rollout = !strcmp(rollout, "buffer") ? RL_ROLLOUT_BUFFER : RL_ROLLOUT_EPISODES;
  GET(int, "train.n_envs", &v);
  rl->n_envs = (int)v;
  GET(int, "train.n_steps", &v);
  rl->n_steps = (int)v;
  GET(int, "train.minibatch_transitions", &v);
  rl->minibatch_transitions = (int)v;
  rl->lr = (float)s->lr;
  rl->weight_decay = (float)s->weight_decay;
  rl->max_grad_norm = (float)s->clip;
  GET(num, "train.gamma", &d);
  rl->gamma = (float)d;
  GET(num, "train.gae_lambda", &d);
  rl->lambda = (float)d;
  GET(num, "ppo.clip", &d);
  rl->clip_eps = (float)d;
  GET(num, "ppo.vf_coef", &d);
  rl->vf_coef = (float)d;
  GET(num, "ppo.ent_coef", &d);
  rl->ent_coef = (float)d;
  const char *kl_mode, *mask_at;
  GET(str, "ppo.kl_mode", &kl_mode);
  rl->kl_adaptive = !strcmp(kl_mode, "adaptive");
  GET(num, "ppo.beta", &d);
  rl->beta = (float)d;
  GET(num, "ppo.kl_target", &d);
  rl->kl_target = (float)d;
  const char *kl_measure;
  GET(str, "ppo.kl_measure", &kl_measure);
  rl->kl_measure = !strcmp(kl_measure, "token") ? RL_KL_TOKEN : RL_KL_SEQUENCE;
  GET(str, "dfpo.mask_at", &mask_at);
  rl->dfpo_mask_at = !strcmp(mask_at, "update") ? RL_MASK_AT_UPDATE : RL_MASK_AT_SAMPLE;
  GET(num, "dfpo.ratio_clip", &d);
  rl->dfpo_ratio_clip = (float)d;
  const char *adv_norm, *grad;
  GET(str, "dfpo.adv_norm", &adv_norm);
  rl->dfpo_adv_norm = !strcmp(adv_norm, "scale") ? RL_DFPO_ADV_SCALE : RL_DFPO_ADV_NONE;
  GET(str, "dfpo.grad", &grad);
  rl->dfpo_grad = !strcmp(grad, "masked") ? RL_DFPO_GRAD_MASKED : RL_DFPO_GRAD_THETA;
  GET(num, "dfpo.plus_fraction", &d);
  rl->dfpo_plus_fraction = (float)d;
  GET(num, "nlpo.top_p", &d);
  rl->nlpo_top_p = (float)d;
  GET(int, "nlpo.k_min", &v);
  rl->nlpo_k_min = (int)v;
  GET(int, "nlpo.mask_refresh", &v);
  rl->nlpo_mask_refresh = (int)v;
  return DFPO_OK;
}

float trn_lr_at(const trn_settings *s, int64_t step, int64_t total) {
  opt_lr_schedule sch = s->schedule;
  sch.total = total > INT32_MAX ? INT32_MAX : (int)total;
  return opt_lr_at(&sch, step > INT32_MAX ? INT32_MAX : (int)step);
}
