#include "harness/algo.h"
#include "harness/cli.h"
#include "trainer/device.h"
#include "trainer/gpt2.h"
#include "trainer/model.h"
#include "trainer/optim.h"
#include "trainer/rl.h"
#include "trainer/sample.h"

#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char bench_usage[] =
    "Usage: dfpo bench [options]\n"
    "\n"
    "Times the GPT-2 engine on random weights and tokens (or a loaded model:\n"
    "--model below) and prints one JSON line: a training step (forward,\n"
    "backward, AdamW) at --batch x --seq, or KV-cache generation of --new\n"
    "tokens (top-k 50, temperature 1; --greedy: temperature 0) for\n"
    "--prompts prompts of --prompt-len tokens. A training time is the best of\n"
    "--steps steps after one warm-up step; a generation time the better of two\n"
    "runs. Also reported: the model's arena and the process's peak RSS. The peer is "
    "bench/gpt2_torch.py bench with\n"
    "the same options (see docs/benchmarks.md).\n"
    "\n"
    "--what rl times one RL iteration (rl_iterate) of --algo on an IMDB-shaped\n"
    "batch: --prompts prompts of --prompt-len tokens, --new tokens each (min\n"
    "--new, top-k 50), with a policy, a frozen reference, a value model and a\n"
    "sentiment-judge stand-in (a 2-class GPT-2 of the same shape scoring prompt\n"
    "+ continuation), all random, and the default RL settings (5 epochs,\n"
    "minibatch 64: one minibatch of 16); the reference and the judge, which\n"
    "only run forward, keep their blocks' outputs alone (activation\n"
    "checkpointing, as dfpo train's reference). It reports the parts: generation\n"
    "(with the reference or mask model in lock step for DfPO/NLPO), the\n"
    "policy/reference/value passes, scoring (the judge) and the update; each\n"
    "the best of --steps iterations (default 1 here). The update's first epoch\n"
    "runs backward on the passes' forward pass of the policy and the value\n"
    "model (an epoch is one minibatch); --recompute-passes computes it again,\n"
    "as RL4LMs does (the same numbers, bit for bit).\n"
    "\n"
    "--model PATH times a model that dfpo loads (a Hugging Face folder or a\n"
    "checkpoint, e.g. a T5 that bench/t5_torch.py write makes) instead of a\n"
    "random --shape, for train and generate: a training step over --batch rows\n"
    "of --prompt-len prompt tokens followed by --seq target tokens, the mean\n"
    "cross-entropy of the targets (an encoder-decoder such as T5 encodes the\n"
    "prompt as its source and decodes the targets by teacher forcing), and\n"
    "generation with no end-of-text (every row makes --new tokens); besides\n"
    "the wall times, the least process CPU time (all threads) of the timed\n"
    "steps or runs (step_cpu_s, gen_cpu_s). The peer is bench/t5_torch.py\n"
    "bench (bench/t5_pair.sh runs both).\n"
    "\n"
    "Options:\n"
    "  --shape NAME       gpt2-124M (default), gpt2-350M, gpt2-774M, gpt2-1558M, gpt2-tiny\n"
    "  --model PATH       a model to load instead of --shape (train, generate)\n"
    "  --what train|generate|rl  what to time (default train)\n"
    "  --algo ppo|nlpo|dfpo  the RL algorithm of --what rl (default ppo)\n"
    "  --recompute-passes  --what rl: the first epoch's forward pass computed\n"
    "                     again instead of the passes' reused\n"
    "  --batch B          training rows (default 4)\n"
    "  --seq T            training tokens per row (default 64)\n"
    "  --steps N          timed repetitions after the warm-up (default 3)\n"
    "  --prompts N        generation rows (default 16)\n"
    "  --prompt-len T     prompt tokens (default 64)\n"
    "  --new N            new tokens (default 48)\n"
    "  --greedy           generation: greedy (temperature 0) instead of top-k 50\n"
    "  --seed N           seed of weights, tokens and sampling (default 0)\n"
    "  --lora-rank R      train: LoRA adapters of rank R on c_attn, attn.c_proj,\n"
    "                     c_fc and mlp.c_proj, the base frozen, AdamW on the\n"
    "                     adapters only (default 0: no adapters, every weight\n"
    "                     trained); the peer's option of the same name\n"
    "  --lora-alpha A     the adapters' scale is A / R (default 16)\n"
    "  --base-dtype T     with --lora-rank: the frozen base's matrices in f32\n"
    "                     (default), bf16 or f16 (model.reference_dtype of a\n"
    "                     LoRA run: the products widen them; no peer option)\n"
    "  --device D         cpu (default), cuda, or auto (cuda when usable, else\n"
    "                     the CPU, saying why)\n"
    "  --tf32             CUDA: matrix products on TF32 tensor cores\n"
    "  --bf16             CUDA: matrix products on bf16 tensor cores (fp32\n"
    "                     weights rounded inside cuBLAS, fp32 accumulation;\n"
    "                     docs/cuda.md)\n"
    "  -h, --help         show this help\n";

static double peak_rss_mib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  double kib = 0;
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, "VmHWM:", 6) == 0)
      kib = strtod(line + 6, NULL);
  if (f)
    fclose(f);
  return kib / 1024.0;
}

/* The sentiment-judge stand-in of --what rl: P(class 1) of a 2-class model
 * on prompt + continuation, read at the last token. */
typedef struct bench_judge {
  model_t *m;
  int *seq;
  float *logits;
} bench_judge;

static int judge_reward(void *ctx, int B, const int *prompts, const int *kstart, int Tp,
                        const int *cont, const int *lens, int max_new, float *rewards,
                        dfpo_err *err) {
  bench_judge *j = ctx;
  int L = Tp + max_new;
  int *at = malloc(sizeof(int) * (size_t)B);
  if (!at)
    return dfpo_err_set(err, DFPO_ERUNTIME, "bench: out of memory");
  for (int b = 0; b < B; b++) {
    for (int t = 0; t < Tp; t++)
      j->seq[b * L + t] = prompts[b * Tp + t];
    for (int t = 0; t < max_new; t++) {
      int tok = cont[b * max_new + t];
      j->seq[b * L + Tp + t] = tok >= 0 ? tok : 50256 % model_get_config(j->m)->vocab_size;
    }
    at[b] = Tp + lens[b] - 1;
  }
  int rc = model_forward_rows(j->m, j->seq, kstart, B, L, err);
  if (!rc)
    rc = model_class_forward(j->m, at, j->logits, err);
  for (int b = 0; !rc && b < B; b++)
    rewards[b] = (float)(1.0 / (1.0 + exp((double)j->logits[2 * b] - j->logits[2 * b + 1])));
  free(at);
  return rc;
}

static int bench_rl(const char *shape, const gpt2_config *cfg, const char *algo, int prompts,
                    int plen, int nnew, int iters, int seed, int threads, int reuse,
                    dfpo_err *err) {
  gpt2_config vc = *cfg, jc = *cfg;
  vc.head = MODEL_HEAD_VALUE;
  jc.head = MODEL_HEAD_CLASS;
  jc.n_classes = 2;
  model_t *pol = NULL, *ref = NULL, *val = NULL;
  bench_judge j = {NULL, NULL, NULL};
  rl_trainer *t = NULL;
  rl_config rc_cfg = rl_config_default();
  alg_id a = ALG_PPO;
  alg_parse(algo, &a); /* checked by cmd_bench */
  rc_cfg.algo = alg_rl(a);
  rc_cfg.sampling.max_new = nnew;
  rc_cfg.sampling.min_new = nnew;
  rc_cfg.sampling.top_k = 50;
  rc_cfg.sampling.eos = cfg->vocab_size > 50256 ? 50256 : -1;
  rc_cfg.reuse_passes = reuse;
  int rc;
  int *p = malloc(sizeof(int) * (size_t)prompts * plen);
  j.seq = malloc(sizeof(int) * (size_t)prompts * (plen + nnew));
  j.logits = malloc(sizeof(float) * 2 * (size_t)prompts);
  if (!p || !j.seq || !j.logits) {
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "bench: out of memory");
    goto out;
  }
  if ((rc = gpt2_new(&pol, cfg, err)) || (rc = gpt2_new(&ref, cfg, err)) ||
      (rc = gpt2_new(&val, &vc, err)) || (rc = gpt2_new(&j.m, &jc, err)))
    goto out;
  model_init_random(pol, (uint64_t)seed);
  model_init_random(val, (uint64_t)seed + 1);
  model_init_random(j.m, (uint64_t)seed + 2);
  /* the judge only runs forward, as the trainer's reference (rl_trainer_new
   * checkpoints that one): its blocks' outputs alone */
  if ((rc = model_set_checkpointing(j.m, 1, err)))
    goto out;
  if ((rc = model_copy_params(ref, pol, err)) ||
      (rc = rl_trainer_new(&t, pol, ref, val, &rc_cfg, (uint64_t)seed, err)))
    goto out;
  dfpo_rng rng;
  dfpo_rng_init(&rng, (uint64_t)seed, DFPO_STREAM_DATA);
  for (int i = 0; i < prompts * plen; i++)
    p[i] = (int)dfpo_rng_below(&rng, (uint32_t)cfg->vocab_size);
  rl_stats best = {0}, st;
  double best_total = 1e30;
  for (int i = 0; i < iters && !rc; i++) {
    double t0 = dfpo_now();
    rc = rl_iterate(t, p, NULL, prompts, plen, judge_reward, &j, &st, err);
    double total = dfpo_now() - t0;
    if (rc)
      break;
    dfpo_info("bench: iteration %d: %.2f s (generation %.2f, passes %.2f, scoring %.2f, update "
              "%.2f)",
              i, total, st.time_generate, st.time_passes, st.time_reward, st.time_update);
    if (total < best_total) {
      best_total = total;
      best = st;
    }
  }
  if (!rc)
    printf("{\"engine\": \"dfpo\", \"shape\": \"%s\", \"threads\": %d, \"what\": \"rl\", "
           "\"algo\": \"%s\", \"prompts\": %d, \"prompt_len\": %d, \"new\": %d, "
           "\"epochs\": %d, \"minibatch\": %d, \"passes_reused\": %s, \"iteration_s\": %.6f, "
           "\"generate_s\": %.6f, "
           "\"passes_s\": %.6f, \"scoring_s\": %.6f, \"update_s\": %.6f, \"iterations\": %d, "
           "\"params\": %zu, \"peak_rss_mib\": %.1f}\n",
           shape, threads, algo, prompts, plen, nnew, rc_cfg.epochs, rc_cfg.minibatch,
           best.passes_reused ? "true" : "false", best_total, best.time_generate, best.time_passes,
           best.time_reward, best.time_update, iters, model_num_params(pol), peak_rss_mib());
out:
  rl_trainer_free(t);
  model_free(pol);
  model_free(ref);
  model_free(val);
  model_free(j.m);
  free(p);
  free(j.seq);
  free(j.logits);
  return rc;
}

/* The process's CPU time (every thread), seconds: with the wall time, how
 * much of it the process had on a shared machine. */
static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Generation timed twice (the better run kept, *best wall and *best_cpu CPU
 * seconds): prompts x plen random ids below V from seed's data stream, nnew
 * new tokens each (min nnew), top-k 50 or greedy; no_eos: no end-of-text
 * at all, else smp_settings_default's. */
static int time_generation(model_t *m, int V, int prompts, int plen, int nnew, int greedy,
                           int no_eos, int seed, double *best, double *best_cpu, dfpo_err *err) {
  int rc = DFPO_OK;
  int *p = malloc(sizeof(int) * (size_t)prompts * plen),
      *out = malloc(sizeof(int) * (size_t)prompts * nnew),
      *lens = malloc(sizeof(int) * (size_t)prompts);
  if (!p || !out || !lens)
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "bench: out of memory");
  dfpo_rng rng;
  dfpo_rng_init(&rng, (uint64_t)seed, DFPO_STREAM_DATA);
  for (int i = 0; !rc && i < prompts * plen; i++)
    p[i] = (int)dfpo_rng_below(&rng, (uint32_t)V);
  smp_settings s = smp_settings_default();
  s.max_new = nnew;
  s.min_new = nnew;
  if (no_eos)
    s.eos = -1;
  s.top_k = greedy ? 0 : 50;
  s.temperature = greedy ? 0.0f : 1.0f;
  dfpo_rng srng;
  dfpo_rng_init(&srng, (uint64_t)seed, DFPO_STREAM_SAMPLING);
  *best = *best_cpu = 1e30;
  for (int r = 0; r < 2 && !rc; r++) {
    double t0 = dfpo_now(), c0 = cpu_now();
    rc = smp_generate(m, p, NULL, prompts, plen, &s, &srng, out, lens, NULL, err);
    double dt = dfpo_now() - t0, dc = cpu_now() - c0;
    dfpo_info("bench: generation %d: %.3f s, %.3f s CPU", r, dt, dc);
    *best = dt < *best ? dt : *best;
    *best_cpu = dc < *best_cpu ? dc : *best_cpu;
  }
  free(p);
  free(out);
  free(lens);
  return rc;
}

/* --model: a training step over rows [prompt | target] (the targets
 * scored; an encoder-decoder's prompt is its source) or generation with no
 * end-of-text, on the loaded model; one JSON line as the shapes' bench. */
static int bench_model(const char *path, int train, int B, int T, int steps, int prompts, int plen,
                       int nnew, int greedy, int seed, dfpo_err *err) {
  model_t *m;
  int rc = model_load(&m, path, err);
  if (rc)
    return cli_fail(err);
  const model_config *mc = model_get_config(m);
  int V = mc->vocab_size, encdec = mc->encoder_decoder;
  /* an encoder-decoder's decoder holds the targets (or the start token and
   * the new tokens); a decoder-only model the prompt too */
  int need = encdec ? (train ? T : nnew + 1) : plen + (train ? T : nnew);
  if (need > mc->n_ctx) {
    int n_ctx = mc->n_ctx;
    model_free(m);
    return cli_usage_error("bench", "%d positions needed, %s has %d", need, path, n_ctx);
  }
  dfpo_rng rng;
  dfpo_rng_init(&rng, (uint64_t)seed, DFPO_STREAM_DATA);
  ops_env_info env;
  ops_env_probe(&env);
  double best = 1e30, best_cpu = 1e30, first_loss = NAN;
  int W = plen + T;
  if (train) {
    int *tok = malloc(sizeof(int) * (size_t)B * W), *tg = malloc(sizeof(int) * (size_t)B * W);
    if (!tok || !tg)
      rc = dfpo_err_set(err, DFPO_ERUNTIME, "bench: out of memory");
    for (int i = 0; !rc && i < B * W; i++)
      tok[i] = (int)dfpo_rng_below(&rng, (uint32_t)V);
    for (int i = 0; !rc && i < B * W; i++) /* column c predicts c + 1: the targets */
      tg[i] = i % W >= plen - 1 && i % W < W - 1 ? tok[i + 1] : -1;
    model_batch batch = {tok, NULL, B, W, plen, 0};
    opt_adamw opt = opt_adamw_default();
    for (int s = 0; s <= steps && !rc; s++) {
      double t0 = dfpo_now(), c0 = cpu_now();
      float loss;
      model_zero_grad(m);
      rc = model_lm_loss(m, &batch, tg, 1, &loss, err);
      if (!rc)
        rc = opt_adamw_step(m, &opt, 1e-4f, NULL, err);
      double dt = dfpo_now() - t0, dc = cpu_now() - c0;
      dfpo_info("bench: step %d: %.3f s, %.3f s CPU (loss %.4f)", s, dt, dc, (double)loss);
      if (s == 0)
        first_loss = loss;
      if (s > 0 && dt < best)
        best = dt;
      if (s > 0 && dc < best_cpu)
        best_cpu = dc;
    }
    free(tok);
    free(tg);
  } else {
    rc = time_generation(m, V, prompts, plen, nnew, greedy, 1, seed, &best, &best_cpu, err);
  }
  if (rc) {
    model_free(m);
    return cli_fail(err);
  }
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "engine", "dfpo");
  cJSON_AddStringToObject(o, "model", path);
  cJSON_AddStringToObject(o, "arch", mc->arch);
  cJSON_AddStringToObject(o, "device", ops_device_name(model_device(m)));
  cJSON_AddNumberToObject(o, "threads", env.cpu_threads);
  cJSON_AddStringToObject(o, "what", train ? "train" : "generate");
  if (train) {
    cJSON_AddNumberToObject(o, "batch", B);
    cJSON_AddNumberToObject(o, "prompt_len", plen);
    cJSON_AddNumberToObject(o, "seq", T);
    cJSON_AddNumberToObject(o, "step_s", best);
    cJSON_AddNumberToObject(o, "step_cpu_s", best_cpu);
    cJSON_AddNumberToObject(o, "steps", steps);
    cJSON_AddNumberToObject(o, "loss", first_loss);
  } else {
    cJSON_AddNumberToObject(o, "prompts", prompts);
    cJSON_AddNumberToObject(o, "prompt_len", plen);
    cJSON_AddNumberToObject(o, "new", nnew);
    cJSON_AddBoolToObject(o, "greedy", greedy);
    cJSON_AddNumberToObject(o, "gen_s", best);
    cJSON_AddNumberToObject(o, "gen_cpu_s", best_cpu);
  }
  cJSON_AddNumberToObject(o, "params", (double)model_num_params(m));
  cJSON_AddNumberToObject(o, "arena_mib", (double)model_arena_bytes(m) / (1024.0 * 1024.0));
  cJSON_AddNumberToObject(o, "peak_rss_mib", peak_rss_mib());
  char *j = cJSON_PrintUnformatted(o);
  if (j)
    printf("%s\n", j);
  free(j);
  cJSON_Delete(o);
  model_free(m);
  return DFPO_OK;
}

int cmd_bench(int argc, char **argv) {
  static const struct option opts[] = {{"shape", required_argument, NULL, 's'},
                                       {"what", required_argument, NULL, 'w'},
                                       {"batch", required_argument, NULL, 'b'},
                                       {"seq", required_argument, NULL, 't'},
                                       {"steps", required_argument, NULL, 'n'},
                                       {"prompts", required_argument, NULL, 'p'},
                                       {"prompt-len", required_argument, NULL, 'l'},
                                       {"new", required_argument, NULL, 'g'},
                                       {"seed", required_argument, NULL, 'r'},
                                       {"device", required_argument, NULL, 'd'},
                                       {"tf32", no_argument, NULL, 'f'},
                                       {"bf16", no_argument, NULL, 'F'},
                                       {"algo", required_argument, NULL, 'a'},
                                       {"lora-rank", required_argument, NULL, 'R'},
                                       {"lora-alpha", required_argument, NULL, 'A'},
                                       {"base-dtype", required_argument, NULL, 'B'},
                                       {"model", required_argument, NULL, 'M'},
                                       {"greedy", no_argument, NULL, 'G'},
                                       {"recompute-passes", no_argument, NULL, 'P'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *shape = "gpt2-124M", *what = "train", *device = "cpu", *algo = alg_name(ALG_PPO);
  const char *model_path = NULL;
  int tf32 = 0, bf16 = 0, greedy = 0, shape_given = 0, recompute = 0;
  int B = 4, T = 64, steps = 3, prompts = 16, plen = 64, nnew = 48, seed = 0, c, rc;
  int steps_given = 0, lora_rank = 0;
  ops_dtype base_dtype = OPS_DTYPE_F32;
  double lora_alpha = 16.0;
  cli_reset_getopt();
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    rc = DFPO_OK;
    switch (c) {
    case 's':
      shape = optarg;
      shape_given = 1;
      break;
    case 'M':
      model_path = optarg;
      break;
    case 'G':
      greedy = 1;
      break;
    case 'w':
      what = optarg;
      break;
    case 'b':
      rc = cli_integer("bench", optarg, 1, 4096, "--batch", &B);
      break;
    case 't':
      rc = cli_integer("bench", optarg, 1, 1 << 20, "--seq", &T);
      break;
    case 'n':
      rc = cli_integer("bench", optarg, 1, 1000, "--steps", &steps);
      steps_given = 1;
      break;
    case 'a':
      algo = optarg;
      break;
    case 'R':
      rc = cli_integer("bench", optarg, 0, 1 << 16, "--lora-rank", &lora_rank);
      break;
    case 'B':
      if (ops_dtype_parse(optarg, &base_dtype, NULL))
        return cli_usage_error("bench", "--base-dtype must be f32, bf16 or f16, got '%s'", optarg);
      break;
    case 'A': {
      char *end;
      lora_alpha = strtod(optarg, &end);
      if (*optarg == '\0' || *end != '\0' || !(lora_alpha > 0) || lora_alpha > 1e6)
        return cli_usage_error("bench", "--lora-alpha must be a number in (0, 1e6], got '%s'",
                               optarg);
      break;
    }
    case 'p':
      rc = cli_integer("bench", optarg, 1, 4096, "--prompts", &prompts);
      break;
    case 'l':
      rc = cli_integer("bench", optarg, 1, 1 << 20, "--prompt-len", &plen);
      break;
    case 'g':
      rc = cli_integer("bench", optarg, 1, 1 << 20, "--new", &nnew);
      break;
    case 'r':
      rc = cli_integer("bench", optarg, 0, 1 << 30, "--seed", &seed);
      break;
    case 'd':
      device = optarg;
      break;
    case 'f':
      tf32 = 1;
      break;
    case 'F':
      bf16 = 1;
      break;
    case 'P':
      recompute = 1;
      break;
    case 'h':
      fputs(bench_usage, stdout);
      return DFPO_OK;
    default:
      return cli_bad_option("bench", argc, argv, c);
    }
    if (rc)
      return rc;
  }
  if (optind < argc)
    return cli_usage_error("bench", "unexpected argument '%s'", argv[optind]);
  int train = strcmp(what, "train") == 0, rl = strcmp(what, "rl") == 0;
  if (!train && !rl && strcmp(what, "generate") != 0)
    return cli_usage_error("bench", "--what must be train, generate or rl, got '%s'", what);
  if (recompute && !rl)
    return cli_usage_error("bench", "--recompute-passes is an option of --what rl");
  if (lora_rank && !train)
    return cli_usage_error("bench", "--lora-rank times a training step: it needs --what train");
  if (base_dtype != OPS_DTYPE_F32 && !lora_rank)
    return cli_usage_error("bench", "--base-dtype is the frozen base of --lora-rank's adapters");
  if (lora_rank && model_path)
    return cli_usage_error("bench", "--lora-rank adds adapters to a --shape GPT-2, not to --model");
  alg_id algo_id;
  if (alg_parse(algo, &algo_id) || alg_rl(algo_id) < 0)
    return cli_usage_error("bench", "--algo must be ppo, nlpo or dfpo, got '%s'", algo);

  if (model_path && (shape_given || rl))
    return cli_usage_error("bench", "--model replaces --shape, for --what train or generate");

  dfpo_err err;
  dfpo_err_clear(&err);
  gpt2_config cfg;
  if (!model_path && (rc = gpt2_config_named(&cfg, shape, &err)))
    return cli_fail(&err);
  if (!model_path && (train ? T : plen + nnew) > cfg.n_ctx)
    return cli_usage_error("bench", "the sequence is longer than the shape's %d positions",
                           cfg.n_ctx);
  if ((rc = cli_device("bench", device)))
    return rc;
  ops_set_tf32(tf32);
  ops_set_bf16(bf16);
  if (model_path)
    return bench_model(model_path, train, B, T, steps, prompts, plen, nnew, greedy, seed, &err);
  if (rl) {
    ops_env_info e;
    ops_env_probe(&e);
    rc = bench_rl(shape, &cfg, algo, prompts, plen, nnew, steps_given ? steps : 1, seed,
                  e.cpu_threads, !recompute, &err);
    return rc ? cli_fail(&err) : DFPO_OK;
  }
  model_t *m;
  if ((rc = gpt2_new(&m, &cfg, &err)))
    return cli_fail(&err);
  model_init_random(m, (uint64_t)seed);
  if (lora_rank) {
    model_lora_config lc = {lora_rank, (float)lora_alpha, ""};
    if ((rc = model_add_lora(m, &lc, (uint64_t)seed, &err)) ||
        (rc = model_set_weight_dtype(m, base_dtype, &err))) {
      model_free(m);
      return cli_fail(&err);
    }
  }
  dfpo_rng rng;
  dfpo_rng_init(&rng, (uint64_t)seed, DFPO_STREAM_DATA);
  ops_env_info env;
  ops_env_probe(&env);
  double best = 1e30;
  if (train) {
    int *tok = malloc(sizeof(int) * (size_t)B * (T + 1)), *in = malloc(sizeof(int) * B * T),
        *tg = malloc(sizeof(int) * B * T);
    for (int i = 0; i < B * (T + 1); i++)
      tok[i] = (int)dfpo_rng_below(&rng, (uint32_t)cfg.vocab_size);
    for (int b = 0; b < B; b++)
      for (int t = 0; t < T; t++) {
        in[b * T + t] = tok[b * (T + 1) + t];
        tg[b * T + t] = tok[b * (T + 1) + t + 1];
      }
    opt_adamw opt = opt_adamw_default();
    for (int s = 0; s <= steps && !rc; s++) {
      double t0 = dfpo_now();
      float loss;
      model_zero_grad(m);
      rc = model_lm_loss_rows(m, in, tg, NULL, B, T, 1, &loss, &err);
      if (!rc)
        rc = opt_adamw_step(m, &opt, 1e-4f, NULL, &err);
      /* CUDA ops are asynchronous: the norm of the (zeroed) gradients reads
       * a result back and so waits for the update to finish */
      if (!rc && model_device(m) == OPS_DEVICE_CUDA)
        (void)model_grad_norm(m);
      double dt = dfpo_now() - t0;
      dfpo_info("bench: step %d: %.3f s (loss %.4f)", s, dt, (double)loss);
      if (s > 0 && dt < best)
        best = dt;
    }
    free(tok);
    free(in);
    free(tg);
  } else {
    double best_cpu;
    rc = time_generation(m, cfg.vocab_size, prompts, plen, nnew, greedy, 0, seed, &best, &best_cpu,
                         &err);
  }
  if (rc) {
    model_free(m);
    return cli_fail(&err);
  }
  int cuda = model_device(m) == OPS_DEVICE_CUDA;
  printf("{\"engine\": \"dfpo\", \"shape\": \"%s\", \"device\": \"%s\", \"tf32\": %s, "
         "\"bf16\": %s, \"threads\": %d, ",
         shape, ops_device_name(model_device(m)),
         cuda && ops_tf32() && !ops_bf16() ? "true" : "false",
         cuda && ops_bf16() ? "true" : "false", env.cpu_threads);
  if (train)
    printf("\"batch\": %d, \"seq\": %d, \"step_s\": %.4f, \"steps\": %d, \"lora_rank\": %d, "
           "\"base_dtype\": \"%s\", ",
           B, T, best, steps, lora_rank, ops_dtype_name(base_dtype));
  else
    printf("\"prompts\": %d, \"prompt_len\": %d, \"new\": %d, \"gen_s\": %.4f, ", prompts, plen,
           nnew, best);
  printf("\"params\": %zu, \"arena_mib\": %.1f, \"peak_rss_mib\": %.1f}\n", model_num_params(m),
         (double)model_arena_bytes(m) / (1024.0 * 1024.0), peak_rss_mib());
  model_free(m);
  return DFPO_OK;
}
