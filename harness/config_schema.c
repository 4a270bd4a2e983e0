#include "harness/algo.h"
#include "harness/config.h"

#define RANGE(lo, hi) 1, (lo), (hi)
#define NORANGE 0, 0, 0

/* Every key a suite or run config may hold, with its default. The RL
 * defaults are the paper's Table 3 where it speaks (lr 1e-5, gamma 0.99,
 * GAE lambda 0.95) and RL4LMs' IMDB PPO config or stable-baselines3's PPO
 * defaults for the rest; RL4LMs' own IMDB learning rate is 1e-6.
 * docs/configs.md explains each key and gives every value's source. Later
 * work adds keys here, never ad hoc, and gives each a reader
 * (test_config_keys). */
const cfg_key cfg_schema[] = {
    /* the suite: which cells to run */
    {"suite.name", CFG_STR, "\"default\"", NULL, NORANGE, "name of the suite (run folder level)"},
    {"suite.tasks", CFG_STR_LIST, "[\"synthetic\"]", "synthetic|imdb|rtp|commongen", NORANGE,
     "tasks of the matrix"},
    {"suite.algos", CFG_STR_LIST, ALG_JSON_LIST, NULL, NORANGE,
     "algorithms of the matrix: " ALG_CHOICES " or a name in suite.variants"},
    {"suite.variants", CFG_STR_LIST, "[]", NULL, NORANGE,
     "named algorithm variants: \"NAME=ALGO key=value ...\" (e.g. \"ppo-beta0=ppo "
     "ppo.kl_mode=fixed ppo.beta=0\")"},
    {"suite.task_settings", CFG_STR_LIST, "[]", NULL, NORANGE,
     "overrides per task or per task and algorithm: \"TASK[/ALGO] key=value ...\" (TASK * for "
     "every task), laid in list order over the suite config before a variant's own"},
    {"suite.deviations", CFG_STR_LIST, "[]", NULL, NORANGE,
     "what the suite knowingly does differently from the paper and RL4LMs, one line each "
     "(dfpo report lists them)"},
    {"suite.seeds", CFG_INT_LIST, "[0,1,2]", NULL, RANGE(0, 4294967295.0), "seeds of the matrix"},
    {"suite.dry_run", CFG_STR_LIST, "[]", NULL, NORANGE,
     "dfpo reproduce --dry-run: \"key=value\" overrides laid over the suite (after its file, "
     "before --set) to run the whole matrix small"},

    /* where and how to compute */
    {"device", CFG_ENUM, "\"auto\"", "auto|cpu|cuda", NORANGE, "compute device"},
    {"threads", CFG_INT, "0", NULL, RANGE(0, 4096),
     "OpenMP threads of the CPU backend in dfpo train (so in dfpo reproduce's cells) and dfpo "
     "pretrain --config (0: OMP_NUM_THREADS, else all online processors)"},
    {"seed", CFG_INT, "0", NULL, RANGE(0, 4294967295.0), "seed of a single run"},
    {"algo", CFG_ENUM, "\"dfpo\"", ALG_CHOICES, NORANGE, "algorithm of a single run"},
    {"out", CFG_STR, "\"out\"", NULL, NORANGE, "root folder of the run folders"},

    /* the task */
    {"task.name", CFG_ENUM, "\"synthetic\"", "synthetic|imdb|rtp|commongen", NORANGE,
     "task of a single run"},
    {"task.max_prompt_tokens", CFG_INT, "64", NULL, RANGE(1, 1 << 20),
     "prompts longer than this many tokens are truncated (task.prompt_truncation says "
     "which end goes; an encoder's source keeps its final eos)"},
    {"task.prompt_truncation", CFG_ENUM, "\"left\"", "left|right", NORANGE,
     "which end of a prompt longer than task.max_prompt_tokens is cut: left keeps its end "
     "(RL4LMs' default), right keeps its start (RL4LMs' CommonGen PPO, prompt_truncation_side)"},
    {"task.prompt_fraction", CFG_NUM, "0.5", NULL, RANGE(0, 1),
     "share of a document's words used as the prompt (IMDB, synthetic)"},
    {"task.synthetic.language_seed", CFG_INT, "0", NULL, RANGE(0, 4294967295.0),
     "synthetic: which language (docs/synthetic.md)"},
    {"task.synthetic.data_seed", CFG_INT, "0", NULL, RANGE(0, 4294967295.0),
     "synthetic: which documents (the same for every run seed)"},
    {"task.synthetic.lambda", CFG_NUM, "1.5", NULL, RANGE(1e-6, 100),
     "synthetic: how strongly sentiment tilts polar words"},
    {"task.synthetic.n_train", CFG_INT, "4000", NULL, RANGE(0, 1 << 24), "synthetic: documents"},
    {"task.synthetic.n_validation", CFG_INT, "200", NULL, RANGE(1, 1 << 24),
     "synthetic: documents"},
    {"task.synthetic.n_test", CFG_INT, "200", NULL, RANGE(1, 1 << 24), "synthetic: documents"},
    {"task.synthetic.min_words", CFG_INT, "40", NULL, RANGE(2, 4096),
     "synthetic: shortest document"},
    {"task.data_dir", CFG_STR, "\"\"", NULL, NORANGE,
     "imdb, rtp, commongen: folder of prepared split files (\"\": the dataset's in the cache)"},
    {"task.max_items", CFG_INT, "0", NULL, RANGE(0, 1 << 30),
     "imdb, rtp, commongen: at most this many items per split, in file order (0: all)"},
    {"task.commongen.repeat_penalty", CFG_NUM, "1", NULL, RANGE(0, 100),
     "commongen: subtracted from the reward of a sentence that repeats its prompt (the concepts "
     "in order, \"generate a sentence with: \", \"generate\" or \"sentence\"; RL4LMs' "
     "common_gen_repeat_penalty); 0: off"},
    {"task.rtp.challenging", CFG_BOOL, "false", NULL, NORANGE, "rtp: only the challenging prompts"},
    {"task.judge.sentiment", CFG_STR, "\"\"", NULL, NORANGE,
     "imdb: sentiment judge folder (\"\": <cache>/judges/sentiment)"},
    {"task.judge.toxicity", CFG_STR, "\"\"", NULL, NORANGE,
     "rtp: toxicity judge folder (\"\": <cache>/judges/toxicity)"},
    {"task.judge.sentiment_model", CFG_STR, "\"\"", NULL, NORANGE,
     "imdb: a Hugging Face sequence-classifier folder or hub name (owner/name[@revision]) as "
     "reward and sentiment judge instead of "
     "the trained one (\"\": the trained judge; docs/judges.md)"},
    {"task.judge.sentiment_label", CFG_STR, "\"\"", NULL, NORANGE,
     "imdb: the label of task.judge.sentiment_model scored, a name in its id2label (\"\": "
     "POSITIVE, else label 1 of two, as RL4LMs)"},
    {"task.judge.toxicity_model", CFG_STR, "\"\"", NULL, NORANGE,
     "rtp: a Hugging Face sequence-classifier folder or hub name (owner/name[@revision]) as "
     "toxicity judge instead of the trained "
     "one (\"\": the trained judge; docs/judges.md)"},
    {"task.judge.toxicity_api", CFG_ENUM, "\"local\"", "local|perspective", NORANGE,
     "rtp: local (the trained judge, or task.judge.toxicity_model) or perspective (the "
     "Perspective API as the toxicity judge: key from $PERSPECTIVE_API_KEY, endpoint "
     "$DFPO_PERSPECTIVE_URL or Google's, scores cached in <cache>/perspective)"},
    {"task.judge.toxicity_label", CFG_STR, "\"\"", NULL, NORANGE,
     "rtp: the label of task.judge.toxicity_model scored, a name in its id2label (\"\": toxic, "
     "else label 1 of two)"},
    {"judge.max_texts", CFG_INT, "0", NULL, RANGE(0, 1 << 30),
     "dfpo reproduce: texts of each split its judge trains on when task.judge.* is \"\" (0: all; "
     "dfpo judge train --limit)"},

    /* the models */
    {"model.init", CFG_ENUM, "\"pretrain\"", "pretrain|import|checkpoint", NORANGE,
     "base model: pretrained by the harness, imported GPT-2 weights, or a native checkpoint"},
    {"model.path", CFG_STR, "\"\"", NULL, NORANGE,
     "weights for import (a Hugging Face folder: config.json + model.safetensors or "
     "pytorch_model.bin; or the file; or "
     "a hub name owner/name[@revision], fetched into the cache) or checkpoint"},
    {"model.bases", CFG_STR_LIST, "[]", NULL, NORANGE,
     "model.init import: a task's own base, \"TASK=SOURCE\" (SOURCE: an asset folder of the "
     "manifest, e.g. gpt2-imdb; a path with '/' to a Hugging Face GPT-2 folder; or a hub name "
     "owner/name[@revision])"},
    {"tokenizer.path", CFG_STR, "\"\"", NULL, NORANGE,
     "tokenizer folder (encoder.json + vocab.bpe, or Hugging Face files); empty: model.path's when "
     "it is a Hugging Face folder holding tokenizer files"},
    {"model.n_layer", CFG_INT, "2", NULL, RANGE(1, 1024), "transformer blocks"},
    {"model.n_head", CFG_INT, "2", NULL, RANGE(1, 1024), "attention heads"},
    {"model.n_embd", CFG_INT, "64", NULL, RANGE(1, 1 << 16), "embedding width"},
    {"model.block_size", CFG_INT, "128", NULL, RANGE(1, 1 << 16), "maximum sequence length"},
    {"model.arch", CFG_ENUM, "\"gpt2\"", "gpt2|t5", NORANGE,
     "model.init pretrain (dfpo pretrain --config): GPT-2, or T5, an encoder-decoder on "
     "source/target pairs (d_model model.n_embd, heads model.n_head, encoder and decoder layers "
     "model.n_layer, decoder positions model.block_size; docs/t5.md)"},
    {"model.t5.d_kv", CFG_INT, "0", NULL, RANGE(0, 1 << 16),
     "T5: channels per attention head (0: model.n_embd / model.n_head)"},
    {"model.t5.d_ff", CFG_INT, "0", NULL, RANGE(0, 1 << 20),
     "T5: feed-forward width (0: 4 model.n_embd)"},
    {"model.t5.decoder_layers", CFG_INT, "0", NULL, RANGE(0, 1024),
     "T5: decoder layers (0: model.n_layer)"},
    {"model.t5.num_buckets", CFG_INT, "32", NULL, RANGE(1, 1 << 16),
     "T5: relative-position buckets"},
    {"model.t5.max_distance", CFG_INT, "128", NULL, RANGE(1, 1 << 20),
     "T5: the distance the largest bucket starts at"},
    {"model.t5.feed_forward", CFG_ENUM, "\"relu\"", "relu|gated-gelu", NORANGE,
     "T5: v1.0's ReLU feed-forward with the head tied to the embeddings, or v1.1's gated GELU "
     "with an untied head"},
    {"model.value_model", CFG_ENUM, "\"separate\"", "separate|shared", NORANGE,
     "dfpo train, ppo, nlpo and dfpo: the value model; separate: its own trunk, a copy of the "
     "policy's with a value head, trained by its own AdamW (RL4LMs); shared: a value head on the "
     "policy's trunk, its loss (vf_coef x value loss) backpropagated through the trunk with the "
     "policy's, one AdamW and one gradient clip (stable-baselines3's shared actor-critic; GPT-2 "
     "and the rotary decoders, not T5; with LoRA the head trains with the adapters)"},
    {"model.activation_checkpointing", CFG_BOOL, "false", NULL, NORANGE,
     "dfpo train: the policy, reference, value and mask models keep only each block's input in a "
     "forward pass and recompute the block in the backward pass (the same gradients, bit for "
     "bit; GPT-2; the rotary decoders always recompute; T5 refuses it)"},
    {"model.reference_dtype", CFG_ENUM, "\"f32\"", "f32|bf16|f16", NORANGE,
     "dfpo train: the precision the frozen reference keeps its weight matrices in; bf16 or f16 "
     "halve their bytes (products widen them and sum in fp32 on the CPU; CUDA runs them on the "
     "tensor cores with fp32 accumulation); GPT-2 and the rotary decoders (GPT-J, GPT-NeoX, "
     "Llama); with model.lora_rank, whose reference is the policy's base without a copy, the "
     "frozen base the policy and the reference share (the adapters stay fp32; checkpoints hold "
     "the base widened to fp32)"},
    {"model.lora_rank", CFG_INT, "0", NULL, RANGE(0, 1 << 16),
     "dfpo train, sft, ppo, nlpo and dfpo: LoRA adapters of this rank on the policy, base "
     "frozen, the reference the policy's base without a copy, NLPO's mask model that base with "
     "its own copy of the adapters (0: off, full fine-tuning; GPT-2 and the rotary decoders)"},
    {"model.adapters", CFG_STR, "\"\"", NULL, NORANGE,
     "dfpo train: peft's LoRA adapter folder (adapter_config.json, adapter_model.safetensors; "
     "or its hub name OWNER/NAME[@REV]) the policy starts from: its adapters, with the rank, "
     "alpha and targets of its config (model.lora_* left unset), go on model.path and train on "
     "(sft, ppo, nlpo, dfpo; zero-shot evaluates them); the reference is the starting policy "
     "(the base shared, a frozen copy of the starting adapters); a separate value model starts "
     "from the base; GPT-2 and the rotary decoders"},
    {"model.lora_alpha", CFG_NUM, "16.0", NULL, RANGE(1e-6, 1e6),
     "LoRA: the update's scale is lora_alpha / lora_rank"},
    {"model.lora_targets", CFG_STR, "\"\"", NULL, NORANGE,
     "LoRA: comma-separated adapted layers, the family's Hugging Face linear modules (GPT-2: "
     "attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj; GPT-J: attn.q_proj, attn.k_proj, "
     "attn.v_proj, attn.out_proj, mlp.fc_in, mlp.fc_out; GPT-NeoX: attention.query_key_value, "
     "attention.dense, mlp.dense_h_to_4h, mlp.dense_4h_to_h; Llama: self_attn.q_proj, "
     "self_attn.k_proj, self_attn.v_proj, self_attn.o_proj, mlp.gate_proj, mlp.up_proj, "
     "mlp.down_proj; empty: all of them)"},

    /* generation during rollouts and evaluation */
    {"generation.max_new_tokens", CFG_INT, "48", NULL, RANGE(1, 1 << 16), "tokens to generate"},
    {"generation.min_new_tokens", CFG_INT, "48", NULL, RANGE(0, 1 << 16),
     "end-of-text is masked before this many"},
    {"generation.temperature", CFG_NUM, "1.0", NULL, RANGE(1e-6, 1e6), "sampling temperature"},
    {"generation.top_k", CFG_INT, "50", NULL, RANGE(0, 1 << 20), "top-k (0: off)"},
    {"generation.top_p", CFG_NUM, "1.0", NULL, RANGE(0, 1), "nucleus p (1: off)"},

    /* optimisation shared by the algorithms */
    {"train.iterations", CFG_INT, "50", NULL, RANGE(0, 1 << 30), "RL iterations (SFT: epochs)"},
    {"train.batch_size", CFG_INT, "16", NULL, RANGE(1, 1 << 20),
     "episodes rollouts: rollouts per iteration"},
    {"train.lr", CFG_NUM, "1e-5", NULL, RANGE(0, 10), "learning rate"},
    {"train.weight_decay", CFG_NUM, "0.0", NULL, RANGE(0, 10), "AdamW weight decay"},
    {"train.lr_schedule", CFG_ENUM, "\"constant\"", "constant|linear|cosine", NORANGE,
     "learning-rate schedule after the warmup: train.lr throughout, or linear or cosine from "
     "train.lr to 0 at the end (RL: over train.iterations; SFT: over its optimiser steps)"},
    {"train.warmup_steps", CFG_INT, "0", NULL, RANGE(0, 1 << 30),
     "linear warmup from train.lr/warmup_steps (RL: iterations; SFT: optimiser steps)"},
    {"train.epochs", CFG_INT, "5", NULL, RANGE(1, 1 << 20), "passes over each rollout batch"},
    {"train.minibatch", CFG_INT, "64", NULL, RANGE(1, 1 << 20),
     "episodes rollouts: rollouts per minibatch"},
    {"train.rollout", CFG_ENUM, "\"episodes\"", "episodes|buffer", NORANGE,
     "episodes: train.batch_size rollouts an iteration, minibatches of train.minibatch rollouts; "
     "buffer: RL4LMs' rollout buffer of train.n_envs x train.n_steps transitions, minibatches of "
     "train.minibatch_transitions"},
    {"train.n_envs", CFG_INT, "10", NULL, RANGE(1, 1 << 16),
     "buffer: rollouts generated together (RL4LMs' env.n_envs)"},
    {"train.n_steps", CFG_INT, "128", NULL, RANGE(1, 1 << 20),
     "buffer: transitions per env; the buffer holds n_envs x n_steps (RL4LMs' alg.args.n_steps)"},
    {"train.minibatch_transitions", CFG_INT, "64", NULL, RANGE(1, 1 << 30),
     "buffer: transitions per minibatch (RL4LMs' alg.args.batch_size)"},
    {"train.max_grad_norm", CFG_NUM, "0.5", NULL, RANGE(0, 1e9), "global grad-norm clip (0: off)"},
    {"train.gamma", CFG_NUM, "0.99", NULL, RANGE(0, 1), "discount"},
    {"train.gae_lambda", CFG_NUM, "0.95", NULL, RANGE(0, 1), "GAE lambda"},
    {"train.eval_every", CFG_INT, "5", NULL, RANGE(1, 1 << 30),
     "validate every k iterations (model selection)"},

    /* PPO (also the base of NLPO) */
    {"ppo.clip", CFG_NUM, "0.2", NULL, RANGE(0, 10), "clipped surrogate epsilon"},
    {"ppo.vf_coef", CFG_NUM, "0.5", NULL, RANGE(0, 1e6), "value loss weight"},
    {"ppo.ent_coef", CFG_NUM, "0", NULL, RANGE(0, 100),
     "entropy bonus: the policy loss less this times the mean entropy of the policy over a "
     "minibatch's transitions (NLPO: of its masked distribution); RL4LMs' ent_coef"},
    {"ppo.kl_mode", CFG_ENUM, "\"adaptive\"", "adaptive|fixed", NORANGE, "KL controller"},
    {"ppo.beta", CFG_NUM, "0.1", NULL, RANGE(0, 1e6), "initial (or fixed) KL coefficient"},
    {"ppo.kl_target", CFG_NUM, "0.1", NULL, RANGE(1e-12, 1e6), "adaptive controller's target"},
    {"ppo.kl_measure", CFG_ENUM, "\"sequence\"", "sequence|token", NORANGE,
     "the KL the adaptive controller reads: per sequence (summed log-ratio) or per generated "
     "token (RL4LMs')"},

    /* NLPO */
    {"nlpo.top_p", CFG_NUM, "0.9", NULL, RANGE(0, 1), "mask model's nucleus"},
    {"nlpo.k_min", CFG_INT, "100", NULL, RANGE(1, 1 << 20), "smallest mask size"},
    {"nlpo.mask_refresh", CFG_INT, "5", NULL, RANGE(1, 1 << 30),
     "mu: iterations between mask-model refreshes"},

    /* DfPO's switches (docs/algorithms.md) */
    {"dfpo.mask_at", CFG_ENUM, "\"sample\"", "sample|update", NORANGE, "where the KL mask applies"},
    {"dfpo.ratio_clip", CFG_NUM, "0.2", NULL, RANGE(0, 10),
     "PPO ratio clip of the policy loss (0: off, the plain policy gradient; 0.2 since the "
     "dfpo-ablation suite, docs/algorithms.md)"},
    {"dfpo.adv_norm", CFG_ENUM, "\"none\"", "none|scale", NORANGE,
     "advantages after the truncation: as they are, or divided by their sd over the batch's "
     "tokens (no centring, so no sign changes)"},
    {"dfpo.grad", CFG_ENUM, "\"theta\"", "theta|masked", NORANGE,
     "policy gradient through log pi_theta of the sampled token, or through log pi+/pi- (pi_theta "
     "renormalised over the set it was drawn from; mask_at sample only)"},
    {"dfpo.plus_fraction", CFG_NUM, "0.5", NULL, RANGE(0, 1),
     "share of each batch's rollouts drawn from pi+ (ceil; the rest from pi-)"},
    {"dfpo.eval_policy", CFG_ENUM, "\"negative\"", "theta|negative", NORANGE,
     "policy evaluated: the negative masked policy pi- (as the ICLR 2024 version describes) or "
     "pi_theta"},

    /* evaluation */
    {"eval.samples_per_prompt", CFG_INT, "0", NULL, RANGE(0, 1 << 20),
     "test samples per prompt (0: the task's protocol, 25 for rtp, else 1)"},
    {"eval.ppl_ref", CFG_BOOL, "true", NULL, NORANGE,
     "report ppl_ref: the policy's perplexity on the test items' references (and val_ppl_ref "
     "on the validation items' at each validation, in train.jsonl); a T5 policy's: each "
     "reference given its prompt as the source"},
    {"eval.judge_lm", CFG_STR, "\"\"", NULL, NORANGE,
     "a fixed LM (a file, a folder or a hub name owner/name[@revision]) for ppl_gen of the "
     "test continuations; it reads the texts with its folder's own tokenizer files, else with "
     "the run's tokenizer (\"\": none)"},
    {"eval.max_prompts", CFG_INT, "0", NULL, RANGE(0, 1 << 30), "cap on test prompts (0: all)"},
    {"eval.num_beams", CFG_INT, "0", NULL, RANGE(0, 1024),
     "evaluation decoding (validation and test): 0 samples with generation.*; N decodes by beam "
     "search with N beams as Hugging Face's generate (1: greedy search), with "
     "generation.max_new_tokens and generation.min_new_tokens (RL4LMs' CommonGen: 5)"},
    {"eval.length_penalty", CFG_NUM, "1.0", NULL, RANGE(-1e6, 1e6),
     "eval.num_beams > 1: a finished hypothesis scores its summed log-probabilities over "
     "length^length_penalty"},
    {"eval.early_stopping", CFG_ENUM, "\"false\"", "false|true|never", NORANGE,
     "eval.num_beams > 1: when a prompt's search ends (Hugging Face's early_stopping; "
     "docs/model-interface.md#beam-search)"},

    /* the tokenizer `dfpo reproduce` trains when model.init is pretrain */
    {"tokenizer.vocab_size", CFG_INT, "512", NULL, RANGE(257, 1 << 20),
     "BPE vocabulary trained on the task corpus (model.init pretrain); model.arch t5: the "
     "SentencePiece pieces (T5's 100 extra ids come on top)"},

    /* dfpo pretrain --config: the base model trained from scratch on text
     * (the shape from model.*, the tokenizer from tokenizer.path); dfpo
     * reproduce pretrains its base models with the same keys */
    {"pretrain.train", CFG_STR_LIST, "[]", NULL, NORANGE,
     "training corpus files: .jsonl (each record's text, or its first reference) or text (a "
     "document per line); a T5: SOURCE<TAB>TARGET lines (text, or ids in *.ids)"},
    {"pretrain.validation", CFG_STR_LIST, "[]", NULL, NORANGE,
     "validation corpus files, as pretrain.train"},
    {"pretrain.out", CFG_STR, "\"out/pretrain\"", NULL, NORANGE,
     "folder of checkpoint.bin, train.jsonl and config.json (resumed when it holds a checkpoint)"},
    {"pretrain.steps", CFG_INT, "100", NULL, RANGE(0, 1 << 30), "optimiser steps in all"},
    {"pretrain.batch_size", CFG_INT, "8", NULL, RANGE(1, 1 << 16), "rows per step"},
    {"pretrain.seq_len", CFG_INT, "64", NULL, RANGE(1, 1 << 20),
     "tokens per row (at most model.block_size); a T5: the source's tokens with </s>"},
    {"pretrain.span_fraction", CFG_NUM, "0.0", NULL, RANGE(0, 1),
     "T5: the share of rows that are span corruption of a pair's target (15% of its tokens in "
     "spans of mean length 3 behind sentinels), the rest the source/target pairs"},
    {"pretrain.lr", CFG_NUM, "6e-4", NULL, RANGE(0, 10), "peak learning rate"},
    {"pretrain.min_lr", CFG_NUM, "6e-5", NULL, RANGE(0, 10), "final learning rate"},
    {"pretrain.lr_schedule", CFG_ENUM, "\"cosine\"", "constant|linear|cosine", NORANGE,
     "learning-rate schedule"},
    {"pretrain.warmup_steps", CFG_INT, "10", NULL, RANGE(0, 1 << 30), "linear warmup steps"},
    {"pretrain.weight_decay", CFG_NUM, "0.1", NULL, RANGE(0, 10), "AdamW decay on matrices"},
    {"pretrain.max_grad_norm", CFG_NUM, "1.0", NULL, RANGE(0, 1e9),
     "global grad-norm clip (0: off)"},
    {"pretrain.eval_every", CFG_INT, "50", NULL, RANGE(1, 1 << 30), "validate every k steps"},
    {"pretrain.eval_batches", CFG_INT, "4", NULL, RANGE(1, 1 << 20), "validation batches"},
    {"pretrain.ckpt_every", CFG_INT, "50", NULL, RANGE(1, 1 << 30), "checkpoint every k steps"},
    {"pretrain.seed", CFG_INT, "0", NULL, RANGE(0, 4294967295.0),
     "seed of the weights and the data order"},

    {NULL, 0, NULL, NULL, NORANGE, NULL}};
