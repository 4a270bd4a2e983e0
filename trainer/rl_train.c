/* The RL training loop (docs/algorithms.md) over any model_t: rollouts
 * (with DfPO's KL-masked sampling and NLPO's top-p masked sampling), rewards,
 * GAE, and minibatch updates of the policy and the value model. The
 * arithmetic lives in rl_math.c. */
#include "trainer/model.h"
#include "trainer/optim.h"
#include "trainer/rl.h"
#include "trainer/sample.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct rl_trainer {
  model_t *policy, *ref, *value;
  int shared;    /* value == policy: the value head on the policy's trunk */
  model_t *mask; /* NLPO's mask model (owned) */
  rl_config cfg;
  double beta;
  int64_t iterations;
  dfpo_rng rng;
};

rl_config rl_config_default(void) {
  rl_config c;
  memset(&c, 0, sizeof c);
  c.algo = RL_PPO;
  c.epochs = 5;
  c.minibatch = 64;
  c.rollout = RL_ROLLOUT_EPISODES;
  c.n_envs = 10;
  c.n_steps = 128;
  c.minibatch_transitions = 64;
  c.lr = 1e-5f;
  c.max_grad_norm = 0.5f;
  c.gamma = 0.99f;
  c.lambda = 0.95f;
  c.clip_eps = 0.2f;
  c.vf_coef = 0.5f;
  c.kl_adaptive = 1;
  c.beta = 0.1f;
  c.kl_target = 0.1f;
  c.kl_measure = RL_KL_SEQUENCE;
  c.dfpo_mask_at = RL_MASK_AT_SAMPLE;
  c.dfpo_ratio_clip = 0.2f;
  c.dfpo_adv_norm = RL_DFPO_ADV_NONE;
  c.dfpo_grad = RL_DFPO_GRAD_THETA;
  c.dfpo_plus_fraction = 0.5f;
  c.nlpo_top_p = 0.9f;
  c.nlpo_k_min = 100;
  c.nlpo_mask_refresh = 5;
  c.sampling = smp_settings_default();
  c.reuse_passes = 1;
  return c;
}

int rl_trainer_new(rl_trainer **out, model_t *policy, model_t *ref, model_t *value,
                   const rl_config *cfg, uint64_t seed, dfpo_err *err) {
  *out = NULL;
  const model_config *pc = model_get_config(policy), *rc = model_get_config(ref),
                     *vc = model_get_config(value);
  if (pc->vocab_size != rc->vocab_size || pc->vocab_size != vc->vocab_size)
    return dfpo_err_set(err, DFPO_EUSAGE, "rl: policy, reference and value vocabularies differ");
  if (vc->head != MODEL_HEAD_VALUE)
    return dfpo_err_set(err, DFPO_EUSAGE, "rl: the value model needs a value head");
  if (value == policy && !model_can_share_value(policy))
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "rl: a value head on the policy's trunk is not implemented for %s models",
                        pc->arch);
  if (value == ref)
    return dfpo_err_set(err, DFPO_EUSAGE, "rl: the reference cannot be the value model");
  if (cfg->algo != RL_PPO && cfg->algo != RL_NLPO && cfg->algo != RL_DFPO)
    return dfpo_err_set(err, DFPO_EUSAGE, "rl: algorithm %d is not implemented", cfg->algo);
  if (cfg->dfpo_mask_at != RL_MASK_AT_SAMPLE && cfg->dfpo_mask_at != RL_MASK_AT_UPDATE)
    return dfpo_err_set(err, DFPO_EUSAGE, "rl: unknown DfPO mask place %d", cfg->dfpo_mask_at);
  if (cfg->dfpo_adv_norm != RL_DFPO_ADV_NONE && cfg->dfpo_adv_norm != RL_DFPO_ADV_SCALE)
    return dfpo_err_set(err, DFPO_EUSAGE, "rl: unknown DfPO advantage scaling %d",
                        cfg->dfpo_adv_norm);
  if (cfg->dfpo_grad != RL_DFPO_GRAD_THETA && cfg->dfpo_grad != RL_DFPO_GRAD_MASKED)
    return dfpo_err_set(err, DFPO_EUSAGE, "rl: unknown DfPO gradient %d", cfg->dfpo_grad);
  if (!(cfg->dfpo_plus_fraction >= 0) || cfg->dfpo_plus_fraction > 1)
    return dfpo_err_set(err, DFPO_EUSAGE, "rl: DfPO's plus_fraction %g is not in [0, 1]",
                        (double)cfg->dfpo_plus_fraction);
  if (cfg->algo == RL_DFPO && cfg->dfpo_grad == RL_DFPO_GRAD_MASKED &&
      cfg->dfpo_mask_at == RL_MASK_AT_UPDATE)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "rl: DfPO's masked gradient needs the sampling masks (mask_at sample)");
  if (cfg->algo == RL_NLPO && (cfg->nlpo_mask_refresh < 1 || cfg->nlpo_k_min < 1 ||
                               !(cfg->nlpo_top_p >= 0) || cfg->nlpo_top_p > 1))
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "rl: NLPO needs top_p in [0, 1], k_min >= 1 and mask_refresh >= 1");
  if (cfg->sampling.mask || cfg->sampling.allow)
    return dfpo_err_set(err, DFPO_EUSAGE, "rl: the sampling config must not carry a mask");
  if (cfg->epochs < 1 || cfg->minibatch < 1)
    return dfpo_err_set(err, DFPO_EUSAGE, "rl: epochs and minibatch must be at least 1");
  if (cfg->rollout != RL_ROLLOUT_EPISODES && cfg->rollout != RL_ROLLOUT_BUFFER)
    return dfpo_err_set(err, DFPO_EUSAGE, "rl: unknown rollout mode %d", cfg->rollout);
  if (cfg->rollout == RL_ROLLOUT_BUFFER &&
      (cfg->n_envs < 1 || cfg->n_steps < 1 || cfg->minibatch_transitions < 1 ||
       (int64_t)cfg->n_envs * cfg->n_steps > INT32_MAX))
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "rl: the buffer needs n_envs, n_steps and minibatch_transitions of at "
                        "least 1 and n_envs x n_steps below 2^31");
  rl_trainer *t = calloc(1, sizeof *t);
  if (!t)
    return dfpo_err_set(err, DFPO_ERUNTIME, "rl: out of memory");
  t->policy = policy;
  t->ref = ref;
  t->value = value;
  t->shared = value == policy;
  t->cfg = *cfg;
  t->beta = cfg->beta;
  dfpo_rng_init(&t->rng, seed, DFPO_STREAM_SAMPLING);
  if (cfg->algo == RL_NLPO) {
    /* a LoRA policy's mask model shares its frozen base and holds a copy
     * of its adapters only */
    int code = model_lora_rank(policy) ? model_adapter_view(&t->mask, policy, err)
                                       : model_clone(&t->mask, policy, err);
    if (code) {
      rl_trainer_free(t);
      return code;
    }
  }
  /* The reference and the mask model never run backward, so keeping only
   * their blocks' outputs (activation checkpointing) costs them nothing
   * and spares the rest of their activations: at B = 16, T = 112 on GPT-2
   * 124M, 1.0 GB each (docs/memory.md). An architecture without it (T5)
   * keeps its layout: the refusal is no error here. */
  model_t *frozen[2] = {ref != policy && ref != value ? ref : NULL, t->mask};
  for (int i = 0; i < 2; i++) {
    dfpo_err ignored;
    if (frozen[i])
      (void)model_set_checkpointing(frozen[i], 1, &ignored);
  }
  *out = t;
  return DFPO_OK;
}

void rl_trainer_free(rl_trainer *t) {
  if (!t)
    return;
  model_free(t->mask);
  free(t);
}

void rl_trainer_get_state(const rl_trainer *t, rl_trainer_state *s) {
  s->beta = t->beta;
  s->iterations = t->iterations;
  s->rng = t->rng;
}

void rl_trainer_set_state(rl_trainer *t, const rl_trainer_state *s) {
  t->beta = s->beta;
  t->iterations = s->iterations;
  t->rng = s->rng;
}

void rl_trainer_set_lr(rl_trainer *t, float lr) {
  t->cfg.lr = lr;
}

model_t *rl_trainer_mask_model(rl_trainer *t) {
  return t->mask;
}

/* DfPO's sampling mask: the reference decodes in lock step with the policy;
 * row b keeps M+ (sign > 0) or M- (sign < 0) of its current state. */
typedef struct dfpo_mask_ctx {
  model_t *ref;
  const int *prompts, *kstart, *sign;
  int Tp, N, eos, min_new;
  float temperature;
  int *next;
  float *host;          /* [B, V]: the reference's logits on the host when it is not on the CPU */
  unsigned char *masks; /* [B, N, V] or NULL: the drawable sets, kept for the update */
  dfpo_err *err;
} dfpo_mask_ctx;

static int dfpo_mask(void *vctx, int step, int B, int V, const int *seqs, float *logits) {
  dfpo_mask_ctx *c = vctx;
  const float *ref;
  if (step == 0) {
    int max_len = c->Tp + c->N - 1 > c->Tp ? c->Tp + c->N - 1 : c->Tp;
    ref = model_decode_begin(c->ref, c->prompts, c->kstart, B, c->Tp, max_len, c->err);
  } else {
    for (int b = 0; b < B; b++) {
      int tok = seqs[(size_t)b * c->N + step - 1];
      c->next[b] = tok >= 0 ? tok : (c->eos >= 0 ? c->eos : 0);
    }
    ref = model_decode_step(c->ref, c->next, c->err);
  }
  if (!ref)
    return -1;
  ref = model_host_view(c->ref, ref, (size_t)B * V, c->host);
  float inv_t = c->temperature > 0 ? 1.0f / c->temperature : 1.0f;
  int ban = step < c->min_new ? c->eos : -1;
  /* rows apart, each on a thread: the two log-normalisers and the set over
   * the vocabulary are the serial part of a GPU generation (an H200's 16
   * cores: DfPO's 48 steps of 16 rows spent 1.2 s here on one) */
#pragma omp parallel for schedule(static) if (B > 1)
  for (int b = 0; b < B; b++) {
    float *z = logits + (size_t)b * V;
    rl_dfpo_mask_logits(z, ref + (size_t)b * V, inv_t, V, c->sign[b], ban);
    if (c->masks) {
      unsigned char *mk = c->masks + ((size_t)b * c->N + step) * V;
      for (int a = 0; a < V; a++)
        mk[a] = z[a] > -INFINITY;
    }
  }
  return 0;
}

int rl_dfpo_generate(model_t *policy, model_t *ref, const int *prompts, const int *kstart, int B,
                     int T, const int *sign, const smp_settings *s, dfpo_rng *rng, int *out,
                     int *lens, float *logps, unsigned char *masks, dfpo_err *err) {
  if (s->mask || s->allow)
    return dfpo_err_set(err, DFPO_EUSAGE, "rl: the sampling config must not carry a mask");
  int *next = malloc(sizeof(int) * (size_t)(B > 0 ? B : 1));
  float *host = malloc(sizeof(float) * (size_t)(B > 0 ? B : 1) * model_get_config(ref)->vocab_size);
  if (!next || !host) {
    free(next);
    free(host);
    return dfpo_err_set(err, DFPO_ERUNTIME, "rl: out of memory");
  }
  dfpo_mask_ctx mc = {ref,        prompts,        kstart, sign, T,     s->max_new, s->eos,
                      s->min_new, s->temperature, next,   host, masks, err};
  smp_settings ms = *s;
  ms.mask = dfpo_mask;
  ms.mask_ctx = &mc;
  int rc = smp_generate(policy, prompts, kstart, B, T, &ms, rng, out, lens, logps, err);
  free(next);
  free(host);
  return rc;
}

/* NLPO's sampling mask: the mask model decodes in lock step with the policy;
 * each row keeps the mask model's top-p set (at least k_min tokens, and
 * end-of-text always, as RL4LMs keeps the special tokens), which is recorded
 * in masks[(b * N + step) * V] for the update. An allowed set
 * (smp_allow_fn): the policy's logits stay on its device. */
typedef struct nlpo_mask_ctx {
  model_t *model;
  const int *prompts, *kstart;
  int Tp, N, eos, k_min;
  float top_p;
  int *next;
  float *probs; /* [B, V]: each row's probabilities */
  int *size;    /* [B]: each row's set size */
  float *host;  /* [B, V]: the mask model's logits on the host when it is not on the CPU */
  unsigned char *masks;
  double size_sum, steps;
  int size_min;
  dfpo_err *err;
} nlpo_mask_ctx;

static double row_lse(const float *x, int V) {
  double m = -INFINITY, s = 0;
  for (int a = 0; a < V; a++)
    if (x[a] > m)
      m = x[a];
  if (m == -INFINITY)
    return m;
  for (int a = 0; a < V; a++)
    s += exp(x[a] - m);
  return m + log(s);
}

static int nlpo_mask(void *vctx, int step, int B, int V, const int *seqs, unsigned char *allow) {
  nlpo_mask_ctx *c = vctx;
  const float *ml;
  if (step == 0) {
    int max_len = c->Tp + c->N - 1 > c->Tp ? c->Tp + c->N - 1 : c->Tp;
    ml = model_decode_begin(c->model, c->prompts, c->kstart, B, c->Tp, max_len, c->err);
  } else {
    for (int b = 0; b < B; b++) {
      int tok = seqs[(size_t)b * c->N + step - 1];
      c->next[b] = tok >= 0 ? tok : (c->eos >= 0 ? c->eos : 0);
    }
    ml = model_decode_step(c->model, c->next, c->err);
  }
  if (!ml)
    return -1;
  ml = model_host_view(c->model, ml, (size_t)B * V, c->host);
  /* rows apart, each on a thread (the normaliser and the top-p set's
   * bisection over the vocabulary are the host's part of a GPU rollout,
   * as DfPO's mask is) */
#pragma omp parallel for schedule(static) if (B > 1)
  for (int b = 0; b < B; b++) {
    const float *z = ml + (size_t)b * V;
    float *pr = c->probs + (size_t)b * V;
    double lz = row_lse(z, V);
    for (int a = 0; a < V; a++)
      pr[a] = (float)exp(z[a] - lz);
    unsigned char *mk = c->masks + ((size_t)b * c->N + step) * V;
    int size = rl_top_p_mask(pr, V, c->top_p, c->k_min, mk);
    if (c->eos >= 0 && c->eos < V && !mk[c->eos]) {
      mk[c->eos] = 1;
      size++;
    }
    c->size[b] = size;
    memcpy(allow + (size_t)b * V, mk, (size_t)V);
  }
  /* rows that ended are still fed (their end-of-text), not counted */
  for (int b = 0; b < B; b++)
    if (step == 0 || seqs[(size_t)b * c->N + step - 1] >= 0) {
      c->size_sum += c->size[b];
      c->steps++;
      if (c->size_min == 0 || c->size[b] < c->size_min)
        c->size_min = c->size[b];
    }
  return 0;
}

/* Per-iteration buffers, freed together. Rows: the episodes of the
 * iteration (B); a generation batch's scratch (logps_b, values_full, logsm,
 * mhost) holds G rows, the minibatch's (mb_*, dlogits) MB rows. */
typedef struct bufs {
  int *out, *lens, *seq, *targets, *order, *sign, *next, *mb_seq, *mb_targets, *mb_kstart, *mb_row,
      *keep, *tr_ep, *tr_t, *slot, *nsize;
  float *logps_b, *lp_full, *logp_old, *logp_ref, *values_full, *values, *R, *rewards, *adv, *ret,
      *w, *mb_lp, *mb_adv, *mb_old, *mb_w, *dlogp, *dlogp_full, *mb_vals, *dvals_full, *logsm,
      *logp_oldm, *probs, *dlogits, *zrow, *mhost, *boot, *task, *ent_full, *dent, *dent_full;
  unsigned char *masks;
} bufs;

static void bufs_free(bufs *b) {
  int *ints[] = {b->out,   b->lens,   b->seq,        b->targets,   b->order,  b->sign,
                 b->next,  b->mb_seq, b->mb_targets, b->mb_kstart, b->mb_row, b->keep,
                 b->tr_ep, b->tr_t,   b->slot,       b->nsize};
  float *floats[] = {b->logps_b,   b->lp_full,    b->logp_old, b->logp_ref,   b->values_full,
                     b->values,    b->R,          b->rewards,  b->adv,        b->ret,
                     b->w,         b->mb_lp,      b->mb_adv,   b->mb_old,     b->mb_w,
                     b->dlogp,     b->dlogp_full, b->mb_vals,  b->dvals_full, b->logsm,
                     b->logp_oldm, b->probs,      b->dlogits,  b->zrow,       b->mhost,
                     b->boot,      b->task,       b->ent_full, b->dent,       b->dent_full};
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
    free(ints[i]);
  for (size_t i = 0; i < sizeof floats / sizeof floats[0]; i++)
    free(floats[i]);
  free(b->masks);
}

/* The value loss of a minibatch, vf_coef * 0.5 * mean (V - R)^2 over its
 * actions (weights mb_w), from the values k->mb_vals [mb, L]; its gradient
 * into k->dvals_full [mb, L] (0 where no action is). */
static double value_loss_grad(bufs *k, const rl_config *cfg, int mb, const int *mlens, int N, int L,
                              int Tp) {
  double count = 0, vloss = 0;
  for (int i = 0; i < mb * N; i++)
    count += k->mb_w[i];
  memset(k->dvals_full, 0, sizeof(float) * (size_t)mb * L);
  for (int i = 0; i < mb; i++) {
    int b = k->mb_row[i];
    for (int j = 0; j < mlens[i]; j++) {
      if (k->mb_w[(size_t)i * N + j] == 0)
        continue;
      size_t pos = (size_t)i * L + Tp - 1 + j;
      double d = k->mb_vals[pos] - k->ret[(size_t)b * N + j];
      vloss += 0.5 * d * d / count;
      k->dvals_full[pos] = (float)(cfg->vf_coef * d / count);
    }
  }
  return cfg->vf_coef * vloss;
}

/* Gathers per-action values: dst[b, t] = src[b, Tp - 1 + t] of a [B, L]
 * array (the position whose output predicts action t). */
static void gather(float *dst, const float *src, int B, int L, int Tp, int N) {
  for (int b = 0; b < B; b++)
    for (int t = 0; t < N; t++)
      dst[(size_t)b * N + t] = src[(size_t)b * L + Tp - 1 + t];
}

static void scatter(float *dst, const float *src, int B, int L, int Tp, int N) {
  memset(dst, 0, sizeof(float) * (size_t)B * L);
  for (int b = 0; b < B; b++)
    for (int t = 0; t < N; t++)
      dst[(size_t)b * L + Tp - 1 + t] = src[(size_t)b * N + t];
}

/* The logits of action t of row b on the host (buf: V floats, used when
 * the model is not on the CPU). The passes narrow the LM head to the
 * columns from Tp - 1 on (model_batch.head_from), so a row's logits are
 * N + 1 rows of V: action t's at row b (N + 1) + t. */
static size_t head_row(int b, int t, int N) {
  return (size_t)b * (N + 1) + t;
}
static const float *logit_row(const model_t *m, const float *logits, int b, int t, int N, int V,
                              float *buf) {
  return model_host_view(m, logits + head_row(b, t, N) * V, (size_t)V, buf);
}

/* Log-softmax rows of m's logits at the action positions, for the exact KL:
 * out[(b * N + t) * V + a]. */
static void action_log_softmax(float *out, const model_t *m, const int *lens, int B, int N, int V,
                               float *buf) {
  const float *logits = model_lm_logits(m);
  for (int b = 0; b < B; b++)
    for (int t = 0; t < lens[b]; t++) {
      const float *z = logit_row(m, logits, b, t, N, V, buf);
      double lz = row_lse(z, V);
      float *o = out + ((size_t)b * N + t) * V;
      for (int a = 0; a < V; a++)
        o[a] = (float)(z[a] - lz);
    }
}

#define ALLOC(p, n)                                                                                \
  do {                                                                                             \
    (p) = calloc((size_t)(n), sizeof *(p));                                                        \
    if (!(p))                                                                                      \
      goto oom;                                                                                    \
  } while (0)

int rl_prompts_per_iteration(const rl_config *cfg, int batch) {
  if (cfg->rollout != RL_ROLLOUT_BUFFER)
    return batch;
  int m =
      cfg->sampling.min_new < cfg->sampling.max_new ? cfg->sampling.min_new : cfg->sampling.max_new;
  int64_t group = (int64_t)cfg->n_envs * (m > 1 ? m : 1);
  int64_t cap = (int64_t)cfg->n_envs * cfg->n_steps;
  int64_t n = (int64_t)cfg->n_envs * ((cap + group - 1) / group);
  return n > INT32_MAX ? INT32_MAX : (int)n;
}

/* One iteration's fixed facts and what its generation batches add up. */
typedef struct iter {
  rl_trainer *t;
  bufs *k;
  int Tp, N, L, V, eos, pad, dfpo, nlpo, dfpo_update;
  int dfpo_masked, masked; /* the sampling masks are kept (rl_iterate says when) */
  int exact_kl;
  double kl, kl_n;             /* the exact per-token KL, summed over the generated tokens */
  double mask_sum, mask_steps; /* NLPO's sampling masks */
  double ent, ent_n;           /* the policy's entropy, summed over the generated tokens */
  int mask_min;
} iter;

/* Rollouts (1), their sequences (2) and the passes before the update (3)
 * for the G rows from r0: prompts and kstart are the iteration's. */
static int collect(iter *it, int r0, int G, const int *prompts, const int *kstart, rl_stats *st,
                   dfpo_err *err) {
  rl_trainer *t = it->t;
  bufs *kb = it->k;
  const rl_config *cfg = &t->cfg;
  const int Tp = it->Tp, N = it->N, L = it->L, V = it->V, eos = it->eos, nlpo = it->nlpo;
  const int *gp = prompts + (size_t)r0 * Tp, *gk = kstart ? kstart + r0 : NULL;
  int *out = kb->out + (size_t)r0 * N, *lens = kb->lens + r0, *sign = kb->sign + r0;
  int *seq = kb->seq + (size_t)r0 * L, *targets = kb->targets + (size_t)r0 * L;
  unsigned char *masks = it->masked ? kb->masks + (size_t)r0 * N * V : NULL;
  int rc;

  /* 1. rollouts */
  double t0 = dfpo_now();
  smp_settings s = cfg->sampling;
  const int n_plus = rl_dfpo_plus_rows(G, cfg->dfpo_plus_fraction);
  for (int b = 0; b < G; b++)
    sign[b] = it->dfpo_update ? 0 : b < n_plus ? 1 : -1;
  nlpo_mask_ctx nc = {.model = t->mask,
                      .prompts = gp,
                      .kstart = gk,
                      .Tp = Tp,
                      .N = N,
                      .eos = eos,
                      .k_min = cfg->nlpo_k_min,
                      .top_p = cfg->nlpo_top_p,
                      .next = kb->next,
                      .probs = kb->probs,
                      .size = kb->nsize,
                      .host = kb->mhost,
                      .masks = masks,
                      .err = err};
  if (nlpo) {
    s.allow = nlpo_mask;
    s.allow_ctx = &nc;
  }
  if (it->dfpo && !it->dfpo_update)
    rc = rl_dfpo_generate(t->policy, t->ref, gp, gk, G, Tp, sign, &s, &t->rng, out, lens,
                          kb->logps_b, it->dfpo_masked ? masks : NULL, err);
  else
    rc = smp_generate(t->policy, gp, gk, G, Tp, &s, &t->rng, out, lens, kb->logps_b, err);
  if (rc)
    return rc;
  if (nlpo) {
    it->mask_sum += nc.size_sum;
    it->mask_steps += nc.steps;
    if (nc.size_min > 0 && (it->mask_min == 0 || nc.size_min < it->mask_min))
      it->mask_min = nc.size_min;
  }

  st->time_generate += dfpo_now() - t0;
  t0 = dfpo_now();

  /* 2. whole sequences and the targets that pick each action */
  for (int b = 0; b < G; b++) {
    for (int j = 0; j < Tp; j++)
      seq[(size_t)b * L + j] = gp[(size_t)b * Tp + j];
    for (int i = 0; i < N; i++) {
      int tok = out[(size_t)b * N + i];
      seq[(size_t)b * L + Tp + i] = tok >= 0 ? tok : it->pad;
    }
    for (int j = 0; j < L; j++)
      targets[(size_t)b * L + j] = -1;
    for (int i = 0; i < lens[b]; i++) {
      targets[(size_t)b * L + Tp - 1 + i] = seq[(size_t)b * L + Tp + i];
      kb->w[(size_t)(r0 + b) * N + i] = 1.0f;
    }
  }

  /* 3. log-probabilities under the policy (before the update) and the
   * reference, values, and the exact per-token KL */
  /* the rollouts' rows: [prompt (Tp columns) | continuation] */
  const model_batch rows = {seq, gk, G, L, Tp, Tp - 1};
  float *logp_old = kb->logp_old + (size_t)r0 * N;
  if ((rc = model_forward(t->policy, &rows, err)) ||
      (rc = model_lm_logprobs(t->policy, targets, kb->lp_full, kb->ent_full, err)))
    return rc;
  gather(logp_old, kb->lp_full, G, L, Tp, N);
  if (t->shared) { /* the values from the same pass */
    if ((rc = model_value_forward(t->policy, kb->values_full, err)))
      return rc;
    gather(kb->values + (size_t)r0 * N, kb->values_full, G, L, Tp, N);
  }
  for (int b = 0; b < G; b++) /* the entropy where each action was chosen */
    for (int i = 0; i < lens[b]; i++) {
      it->ent += kb->ent_full[(size_t)b * L + Tp - 1 + i];
      it->ent_n++;
    }
  if (it->masked) {
    /* the ratio's pi_old: the policy renormalised over the sampling mask */
    const float *z = model_lm_logits(t->policy);
    for (int b = 0; b < G; b++)
      for (int i = 0; i < lens[b]; i++) {
        size_t pos = (size_t)b * L + Tp - 1 + i;
        kb->logp_oldm[(size_t)(r0 + b) * N + i] =
            (float)rl_masked_logit_grad(logit_row(t->policy, z, b, i, N, V, kb->zrow),
                                        masks + ((size_t)b * N + i) * V, V, targets[pos], 0, NULL);
      }
  }
  if (it->exact_kl)
    action_log_softmax(kb->logsm, t->policy, lens, G, N, V, kb->zrow);
  if ((rc = model_forward(t->ref, &rows, err)) ||
      (rc = model_lm_logprobs(t->ref, targets, kb->lp_full, NULL, err)))
    return rc;
  gather(kb->logp_ref + (size_t)r0 * N, kb->lp_full, G, L, Tp, N);
  if (it->exact_kl) {
    const float *zr = model_lm_logits(t->ref);
    for (int b = 0; b < G; b++)
      for (int i = 0; i < lens[b]; i++) {
        const float *z = logit_row(t->ref, zr, b, i, N, V, kb->zrow);
        const float *lp = kb->logsm + ((size_t)b * N + i) * V;
        double lz = row_lse(z, V);
        for (int a = 0; a < V; a++)
          it->kl += exp(lp[a]) * (lp[a] - (z[a] - lz));
        it->kl_n++;
      }
  }
  if (!t->shared) {
    if ((rc = model_forward(t->value, &rows, err)) ||
        (rc = model_value_forward(t->value, kb->values_full, err)))
      return rc;
    gather(kb->values + (size_t)r0 * N, kb->values_full, G, L, Tp, N);
  }

  st->time_passes += dfpo_now() - t0;
  return DFPO_OK;
}

int rl_iterate(rl_trainer *t, const int *prompts, const int *kstart, int B, int Tp,
               rl_reward_fn reward, void *reward_ctx, rl_stats *st, dfpo_err *err) {
  const rl_config *cfg = &t->cfg;
  const int N = cfg->sampling.max_new, L = Tp + N, V = model_get_config(t->policy)->vocab_size;
  const int eos = cfg->sampling.eos, pad = eos >= 0 ? eos : 0;
  const int dfpo = cfg->algo == RL_DFPO, nlpo = cfg->algo == RL_NLPO;
  const int dfpo_update = dfpo && cfg->dfpo_mask_at == RL_MASK_AT_UPDATE;
  const int buffer = cfg->rollout == RL_ROLLOUT_BUFFER;
  /* the policy's log-probabilities renormalised over a kept mask: NLPO's,
   * and DfPO's pi+/pi- with dfpo.grad masked */
  const int dfpo_masked = dfpo && !dfpo_update && cfg->dfpo_grad == RL_DFPO_GRAD_MASKED;
  const int masked = nlpo || dfpo_masked;
  memset(st, 0, sizeof *st);
  st->beta = dfpo ? 0 : t->beta;
  if (B < 1 || Tp < 1 || N < 1)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "rl: need at least one prompt, prompt token and new token");
  /* rollouts generated together; the buffer's transitions (M) */
  const int G = buffer ? cfg->n_envs : B, M = buffer ? cfg->n_envs * cfg->n_steps : 0;
  const int mbsize = buffer ? cfg->minibatch_transitions : cfg->minibatch;
  const int MB = mbsize < B ? mbsize : B; /* most rows of a minibatch */
  if (buffer && B < G)
    return dfpo_err_set(err, DFPO_EUSAGE, "rl: the buffer needs at least n_envs=%d prompts, got %d",
                        G, B);
  /* Exact per-token KL needs both models' distributions at every action:
   * kept only while a generation batch's fit in 64 MiB. */
  int exact_kl = (size_t)G * N * V <= ((size_t)16 << 20);
  bufs k;
  memset(&k, 0, sizeof k);
  int rc = DFPO_OK;
  size_t BN = (size_t)B * N, BL = (size_t)B * L, GN = (size_t)G * N, GL = (size_t)G * L,
         ML = (size_t)MB * L, U = buffer ? (size_t)M : (size_t)B;
  ALLOC(k.out, BN);
  ALLOC(k.lens, B);
  ALLOC(k.seq, BL);
  ALLOC(k.targets, BL);
  ALLOC(k.order, U);
  ALLOC(k.sign, B);
  ALLOC(k.next, B);
  ALLOC(k.mb_seq, ML);
  ALLOC(k.mb_targets, ML);
  ALLOC(k.mb_kstart, MB);
  ALLOC(k.mb_row, MB);
  ALLOC(k.logps_b, GN);
  ALLOC(k.lp_full, BL);
  ALLOC(k.ent_full, BL);
  ALLOC(k.logp_old, BN);
  ALLOC(k.logp_ref, BN);
  ALLOC(k.values_full, GL);
  ALLOC(k.values, BN);
  ALLOC(k.R, B);
  ALLOC(k.rewards, BN);
  ALLOC(k.adv, BN);
  ALLOC(k.ret, BN);
  ALLOC(k.w, BN);
  ALLOC(k.mb_lp, (size_t)MB * N);
  ALLOC(k.mb_adv, (size_t)MB * N);
  ALLOC(k.mb_old, (size_t)MB * N);
  ALLOC(k.mb_w, (size_t)MB * N);
  ALLOC(k.dlogp, (size_t)MB * N);
  ALLOC(k.dlogp_full, ML);
  if (cfg->ent_coef > 0) {
    ALLOC(k.dent, (size_t)MB * N);
    ALLOC(k.dent_full, ML);
  }
  ALLOC(k.mb_vals, ML);
  ALLOC(k.dvals_full, ML);
  ALLOC(k.zrow, V);
  if (exact_kl)
    ALLOC(k.logsm, GN * (size_t)V);
  if (masked) {
    ALLOC(k.logp_oldm, BN);
    ALLOC(k.masks, BN * (size_t)V);
    ALLOC(k.dlogits, MB * (size_t)(N + 1) * V);
  }
  if (nlpo) {
    ALLOC(k.probs, (size_t)G * V);
    ALLOC(k.nsize, G);
    ALLOC(k.mhost, (size_t)G * V);
  }
  if (buffer) {
    ALLOC(k.keep, B);
    ALLOC(k.boot, B);
    ALLOC(k.task, B);
    ALLOC(k.tr_ep, M);
    ALLOC(k.tr_t, M);
    ALLOC(k.slot, B);
  }

  /* 1-3: rollouts G at a time (the buffer: until it is full) */
  if (nlpo && t->iterations % cfg->nlpo_mask_refresh == 0 &&
      (rc = model_copy_params(t->mask, t->policy, err)))
    goto done;
  iter it = {t,           &k,     Tp,       N, L, V, eos, pad, dfpo, nlpo, dfpo_update,
             dfpo_masked, masked, exact_kl, 0, 0, 0, 0,   0,   0,    0};
  int E = 0;
  for (int64_t got = 0; E == 0 || (buffer && got < M); E += G) {
    if (E + G > B) {
      rc = dfpo_err_set(err, DFPO_EUSAGE,
                        "rl: %d prompts gave %lld of the buffer's %d transitions (see "
                        "rl_prompts_per_iteration)",
                        B, (long long)got, M);
      goto done;
    }
    if ((rc = collect(&it, E, G, prompts, kstart, st, err)))
      goto done;
    for (int b = E; b < E + G; b++)
      got += k.lens[b];
  }
  st->episodes = E;
  for (int b = 0; b < E; b++)
    st->mean_len += k.lens[b] / (double)E;
  if (nlpo) {
    st->mask_mean = it.mask_steps > 0 ? it.mask_sum / it.mask_steps : 0;
    st->mask_min = it.mask_min;
  }
  st->kl_token = !exact_kl ? NAN : it.kl_n > 0 ? it.kl / it.kl_n : 0;
  st->entropy = it.ent_n > 0 ? it.ent / it.ent_n : 0;

  /* 4. rewards (of every episode generated), GAE over what the update
   * trains on: every episode, or the buffer's transitions */
  double t0 = dfpo_now();
  if ((rc = reward(reward_ctx, E, prompts, kstart, Tp, k.out, k.lens, N, k.R, err)))
    goto done;
  st->time_reward = dfpo_now() - t0;
  t0 = dfpo_now();
  double kl_all = 0, ntok = 0;
  for (int b = 0; b < E; b++) {
    st->reward += k.R[b] / E;
    double kl = 0;
    for (int i = 0; i < k.lens[b]; i++)
      kl += k.logp_old[(size_t)b * N + i] - k.logp_ref[(size_t)b * N + i];
    st->kl_seq += kl / E;
    kl_all += kl;
    ntok += k.lens[b];
  }
  st->kl_sampled = ntok > 0 ? kl_all / ntok : 0;
  /* the lengths trained on; the buffer's episode at the edge is cut */
  const int *glens = k.lens;
  if (buffer) {
    if (rl_buffer_edge(k.lens, k.values, k.R, E, N, M, k.keep, k.boot, k.task) < 0) {
      rc = dfpo_err_set(err, DFPO_ERUNTIME, "rl: the episodes do not fill the buffer");
      goto done;
    }
    glens = k.keep;
    for (int b = 0, i = 0; b < E; b++)
      for (int j = 0; j < k.keep[b]; j++, i++) {
        k.tr_ep[i] = b;
        k.tr_t[i] = j;
      }
  }
  rl_kl_rewards(k.logp_old, k.logp_ref, buffer ? k.task : k.R, glens, E, N,
                dfpo ? 0.0f : (float)t->beta, k.rewards);
  rl_gae_boot(k.rewards, k.values, glens, buffer ? k.boot : NULL, E, N, cfg->gamma, cfg->lambda,
              k.adv, k.ret);
  if (dfpo_update)
    rl_dfpo_update_advantages(k.adv, k.logp_old, k.logp_ref, E * N);
  else if (dfpo)
    for (int b = 0; b < E; b++)
      rl_truncate_advantages(k.adv + (size_t)b * N, N, k.sign[b]);
  if (dfpo && cfg->dfpo_adv_norm == RL_DFPO_ADV_SCALE)
    rl_scale_advantages(k.adv, glens, E, N);

  /* 5. minibatch epochs: of rollouts (episodes) or of the buffer's
   * transitions, each minibatch as the rows it touches with weight 1 on the
   * tokens it selects */
  opt_adamw opt = opt_adamw_default();
  opt.weight_decay = cfg->weight_decay;
  opt.clip = cfg->max_grad_norm;
  const int units = buffer ? M : E;
  /* An epoch of one minibatch of every episode: the first takes them in
   * their order, so that its forward pass of the policy and the value model
   * is the passes' (unless the reference, run after the policy, was the
   * policy itself). */
  const int whole = !buffer && units <= mbsize;
  const int reuse = whole && cfg->reuse_passes && t->ref != t->policy;
  for (int u = 0; u < units; u++)
    k.order[u] = u;
  for (int e = 0; e < cfg->epochs; e++) {
    dfpo_rng_shuffle(&t->rng, k.order, (size_t)units, sizeof k.order[0]);
    for (int start = 0; start < units; start += mbsize) {
      int cnt = units - start < mbsize ? units - start : mbsize, mb = cnt;
      const int passes = reuse && e == 0; /* the passes' forward pass stands for this one's */
      if (buffer)
        mb = rl_buffer_minibatch(k.order + start, cnt, k.tr_ep, k.tr_t, E, N, k.mb_row, k.mb_w,
                                 k.slot);
      else if (whole && e == 0)
        for (int i = 0; i < cnt; i++)
          k.mb_row[i] = i;
      else
        memcpy(k.mb_row, k.order + start, sizeof(int) * (size_t)cnt);
      int *mlens = k.next; /* reused: lengths of the minibatch rows */
      for (int i = 0; i < mb; i++) {
        int b = k.mb_row[i];
        memcpy(k.mb_seq + (size_t)i * L, k.seq + (size_t)b * L, sizeof(int) * L);
        memcpy(k.mb_targets + (size_t)i * L, k.targets + (size_t)b * L, sizeof(int) * L);
        k.mb_kstart[i] = kstart ? kstart[b] : 0;
        mlens[i] = glens[b];
        memcpy(k.mb_adv + (size_t)i * N, k.adv + (size_t)b * N, sizeof(float) * N);
        memcpy(k.mb_old + (size_t)i * N, (masked ? k.logp_oldm : k.logp_old) + (size_t)b * N,
               sizeof(float) * N);
        if (!buffer)
          memcpy(k.mb_w + (size_t)i * N, k.w + (size_t)b * N, sizeof(float) * N);
      }
      if (e == 0)
        for (int i = 0; i < mb * N; i++)
          st->transitions += k.mb_w[i] != 0;
      st->updates++;
      /* policy */
      model_zero_grad(t->policy);
      const model_batch mrows = {k.mb_seq, k.mb_kstart, mb, L, Tp, Tp - 1};
      if (passes) {
        st->passes_reused = 1;
        memcpy(k.mb_lp, k.logp_old, sizeof(float) * (size_t)mb * N);
        if (t->shared)
          memcpy(k.mb_vals, k.values_full, sizeof(float) * (size_t)mb * L);
      } else {
        if ((rc = model_forward(t->policy, &mrows, err)) ||
            (rc = model_lm_logprobs(t->policy, k.mb_targets, k.lp_full, NULL, err)) ||
            (t->shared && (rc = model_value_forward(t->policy, k.mb_vals, err))))
          goto done;
        gather(k.mb_lp, k.lp_full, mb, L, Tp, N);
      }
      int n = mb * N;
      const float *z = model_lm_logits(t->policy);
      if (masked)
        for (int i = 0; i < mb; i++) {
          int b = k.mb_row[i];
          for (int j = 0; j < mlens[i]; j++) {
            size_t pos = (size_t)i * L + Tp - 1 + j;
            k.mb_lp[(size_t)i * N + j] = (float)rl_masked_logit_grad(
                logit_row(t->policy, z, i, j, N, V, k.zrow), k.masks + ((size_t)b * N + j) * V, V,
                k.mb_targets[pos], 0, NULL);
          }
        }
      if (!dfpo) {
        rl_normalize_weighted(k.mb_adv, k.mb_w, n);
        st->policy_loss = rl_ppo_policy_loss(k.mb_lp, k.mb_old, k.mb_adv, k.mb_w, n, cfg->clip_eps,
                                             k.dlogp, &st->clipfrac);
      } else if (cfg->dfpo_ratio_clip > 0) {
        st->policy_loss = rl_ppo_policy_loss(k.mb_lp, k.mb_old, k.mb_adv, k.mb_w, n,
                                             cfg->dfpo_ratio_clip, k.dlogp, &st->clipfrac);
      } else {
        st->policy_loss = rl_pg_loss(k.mb_lp, k.mb_adv, k.mb_w, n, k.dlogp);
      }
      /* the entropy bonus: -ent_coef times the mean entropy over the
       * minibatch's transitions (weights w), its gradient per position */
      if (cfg->ent_coef > 0) {
        double wsum = 0;
        for (int i = 0; i < n; i++)
          wsum += k.mb_w[i];
        for (int i = 0; i < n; i++)
          k.dent[i] = wsum > 0 ? (float)(-cfg->ent_coef * k.mb_w[i] / wsum) : 0.0f;
      }
      /* the value head on the trunk: its loss joins the policy's (one
       * backward pass, one optimiser step, one gradient clip: a shared
       * actor-critic's loss, stable-baselines3's PPO) */
      if (t->shared)
        st->value_loss = value_loss_grad(&k, cfg, mb, mlens, N, L, Tp);
      if (masked) {
        /* the gradient of the renormalised log-probabilities reaches every
         * logit of the mask: backward from the logits */
        memset(k.dlogits, 0, sizeof(float) * (size_t)mb * (N + 1) * V);
        for (int i = 0; i < mb; i++) {
          int b = k.mb_row[i];
          for (int j = 0; j < mlens[i]; j++) {
            size_t pos = (size_t)i * L + Tp - 1 + j;
            const float *zr = logit_row(t->policy, z, i, j, N, V, k.zrow);
            const unsigned char *mk = k.masks + ((size_t)b * N + j) * V;
            rl_masked_logit_grad(zr, mk, V, k.mb_targets[pos], k.dlogp[(size_t)i * N + j],
                                 k.dlogits + head_row(i, j, N) * V);
            if (cfg->ent_coef > 0)
              rl_masked_entropy_grad(zr, mk, V, k.dent[(size_t)i * N + j],
                                     k.dlogits + head_row(i, j, N) * V);
          }
        }
        rc = t->shared
                 ? model_lm_value_backward(t->policy, NULL, NULL, k.dlogits, k.dvals_full, err)
                 : model_lm_backward_logits(t->policy, k.dlogits, err);
      } else {
        scatter(k.dlogp_full, k.dlogp, mb, L, Tp, N);
        if (cfg->ent_coef > 0)
          scatter(k.dent_full, k.dent, mb, L, Tp, N);
        const float *dent = cfg->ent_coef > 0 ? k.dent_full : NULL;
        rc = t->shared
                 ? model_lm_value_backward(t->policy, k.dlogp_full, dent, NULL, k.dvals_full, err)
                 : model_lm_backward(t->policy, k.dlogp_full, dent, err);
      }
      if (rc || (rc = opt_adamw_step(t->policy, &opt, cfg->lr, NULL, err)))
        goto done;
      if (t->shared) /* the value head trained with the policy, above */
        continue;
      /* value model: vf_coef * 0.5 * mean (V - R)^2 over the actions */
      model_zero_grad(t->value);
      if (passes)
        memcpy(k.mb_vals, k.values_full, sizeof(float) * (size_t)mb * L);
      else if ((rc = model_forward(t->value, &mrows, err)) ||
               (rc = model_value_forward(t->value, k.mb_vals, err)))
        goto done;
      st->value_loss = value_loss_grad(&k, cfg, mb, mlens, N, L, Tp);
      if ((rc = model_value_backward(t->value, k.dvals_full, err)) ||
          (rc = opt_adamw_step(t->value, &opt, cfg->lr, NULL, err)))
        goto done;
    }
  }
  if (!dfpo && cfg->kl_adaptive)
    t->beta = rl_kl_adaptive(t->beta, cfg->kl_measure == RL_KL_TOKEN ? st->kl_sampled : st->kl_seq,
                             cfg->kl_target);
  t->iterations++;
  st->time_update = dfpo_now() - t0;
done:
  bufs_free(&k);
  return rc;
oom:
  bufs_free(&k);
  return dfpo_err_set(err, DFPO_ERUNTIME, "rl: out of memory for B=%d, T=%d", B, L);
}
