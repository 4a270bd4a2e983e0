/* trainer/rl.h: the RL algorithms (prefix rl_): their arithmetic over plain
 * arrays (rl_math.c) and the trainer that runs PPO, NLPO and DfPO over any
 * model_t (rl_train.c). Depends on trainer/model.h and trainer/sample.h.
 * Ownership: an rl_trainer is the caller's (rl_trainer_free); the models it
 * is given stay the caller's. */
#ifndef DFPO_TRAINER_RL_H
#define DFPO_TRAINER_RL_H

#include "trainer/model.h"
#include "trainer/sample.h"

/* The arithmetic of the RL algorithms (docs/algorithms.md), over plain
 * arrays so that it can be tested against hand computations and brute force
 * and shared by every backend. docs/algorithms.md gives the equations.
 * Batched arrays are [B, T] row-major; lengths[b] is the number of valid
 * tokens of row b (positions >= lengths[b] are padding: outputs there are 0).
 * A vocabulary-sized mask is one byte per token (1 = in the set). */

/* Generalised advantage estimation (Schulman et al. 2016) per row:
 * delta_t = r_t + gamma V_{t+1} - V_t with V = 0 after the last valid token
 * (the episode ends there), A_t = sum_k (gamma lambda)^k delta_{t+k},
 * returns_t = A_t + V_t. adv and ret are written (they may not alias the
 * inputs). */
void rl_gae(const float *rewards, const float *values, const int *lengths, int B, int T,
            float gamma, float lambda, float *adv, float *ret);

/* rl_gae with a bootstrap: boot[b] is the value of the state after row b's
 * last valid token (0 where the episode ends there), so that
 * delta_{len-1} = r + gamma boot[b] - V. A row cut at the rollout buffer's
 * edge bootstraps from the value of its next state, as stable-baselines3's
 * compute_returns_and_advantage does with last_values and dones = false.
 * boot NULL: rl_gae (every row ends at its last valid token). */
void rl_gae_boot(const float *rewards, const float *values, const int *lengths, const float *boot,
                 int B, int T, float gamma, float lambda, float *adv, float *ret);

/* RL4LMs' rollout buffer edge (alg_wrappers.py, _add_to_buffer): episodes
 * [E, T] of lens[e] transitions, in the order they were generated, fill a
 * buffer of `capacity` transitions one episode after the other. keep[e]
 * gets the transitions of episode e the buffer holds: lens[e] before the
 * edge, the first ones of the episode the edge cuts, 0 after it (those are
 * generated, scored and counted in the iteration's statistics, never
 * trained on). task[e] gets R[e] where the episode's last transition is in
 * the buffer and 0 where the edge cut it off (the task reward sits on the
 * last transition), boot[e] the value of the cut episode's next state
 * values[e, keep[e]] (RL4LMs' next_values with done false) and 0 for the
 * others. Returns the number of episodes the buffer touches, or -1 when the
 * episodes hold fewer than capacity transitions. */
int rl_buffer_edge(const int *lens, const float *values, const float *R, int E, int T, int capacity,
                   int *keep, float *boot, float *task);

/* One minibatch of a rollout buffer as whole rows: ids[n] are buffer
 * transitions, transition i being token tr_t[i] of episode tr_ep[i] (of E).
 * rows[] gets the episodes the minibatch touches in ascending order and
 * w[r * T + t] (rows x T, written in full) 1 for the selected tokens of
 * rows[r], 0 elsewhere: a causal model's log-probability of token t depends
 * only on its prefix, so forwarding each touched episode once and weighting
 * the selected tokens equals RL4LMs' forward of each transition's
 * observation. slot is scratch of E ints. Returns the number of rows. */
int rl_buffer_minibatch(const int *ids, int n, const int *tr_ep, const int *tr_t, int E, int T,
                        int *rows, float *w, int *slot);

/* RL4LMs' per-token PPO reward: r_t = -beta (logp_old_t - logp_ref_t), plus
 * the task reward R[b] at the last valid token. Padding gets 0. */
void rl_kl_rewards(const float *logp_old, const float *logp_ref, const float *task_reward,
                   const int *lengths, int B, int T, float beta, float *rewards);

/* Mean and sample standard deviation (n - 1 in the denominator, as
 * torch.std) of the valid entries, then x = (x - mean) / (sd + 1e-8) on
 * them. Fewer than two valid entries: only the mean is removed. */
void rl_normalize(float *x, const int *lengths, int B, int T);

/* rl_normalize over the entries of x[n] whose weight w is not 0 (the same
 * entries, sums and result as rl_normalize when w is 1 exactly at the
 * valid positions). */
void rl_normalize_weighted(float *x, const float *w, int n);

/* The adaptive KL controller (docs/algorithms.md):
 * beta * (1 + 0.1 * clip((kl - target) / target, -0.2, 0.2)). */
double rl_kl_adaptive(double beta, double kl, double target);

/* PPO's clipped surrogate over n tokens with weights w (1 valid, 0 padding;
 * may be NULL for all valid): returns the mean over valid tokens of
 * -min(rho A, clip(rho, 1 - eps, 1 + eps) A), rho = exp(logp - logp_old);
 * dlogp[i] = d loss / d logp[i] (already divided by the count). *clipfrac
 * (may be NULL) gets the share of valid tokens where the clip was active. */
double rl_ppo_policy_loss(const float *logp, const float *logp_old, const float *adv,
                          const float *w, int n, float eps, float *dlogp, double *clipfrac);

/* The plain policy-gradient term: mean over valid tokens of -logp A (DfPO's
 * policy loss with truncated advantages); dlogp[i] = -w_i A_i / count. */
double rl_pg_loss(const float *logp, const float *adv, const float *w, int n, float *dlogp);

/* DfPO's KL-masking of one state (docs/algorithms.md) for sampling from pi+
 * (sign > 0: M+ = {a : pi_theta(a) <= pi_ref(a)}) or pi- (sign <= 0: M- =
 * {a : pi_theta(a) >= pi_ref(a)}). z: the policy's logits (tempered), masked
 * in place (-inf outside the set); r: the reference's logits, scaled by
 * inv_t. Both distributions are taken over the sampler's support: the
 * tokens whose z is finite, less `ban` (the end-of-text token before the
 * minimum length; -1 for none), which gets -inf. Over the whole vocabulary
 * the set can hold only the banned token, and the sampler would have
 * nothing to draw; over the support it always holds a token, since both
 * distributions sum to 1 there (and the token with the extreme log-ratio is
 * kept should rounding empty it). Returns the number of tokens kept: 0 only
 * when the support is empty. */
int rl_dfpo_mask_logits(float *z, const float *r, float inv_t, int V, int sign, int ban);

/* log of pi renormalised over the set: out[a] = logp[a] - log sum_{m} p for a
 * in mask, -inf elsewhere. Returns the log of the set's mass under pi
 * (-inf for an empty set, when out is all -inf). */
double rl_masked_logprobs(const float *logp, const unsigned char *mask, int V, float *out);

/* DfPO's truncated advantages: A+ = max(A, 0) for rollouts from pi+
 * (sign > 0), A- = min(A, 0) for rollouts from pi- (sign < 0). */
void rl_truncate_advantages(float *adv, int n, int sign);

/* NLPO's mask: the smallest set of most likely tokens whose probability sum
 * reaches top_p, never fewer than k_min (nor more than V). Ties are broken by
 * the lower token id. probs need not be normalised exactly. Writes mask and
 * returns the set's size. */
int rl_top_p_mask(const float *probs, int V, float top_p, int k_min, unsigned char *mask);

/* The log-probability of token a under the distribution softmax(z) renormalised
 * over mask (NULL: the whole vocabulary), i.e. z[a] - log sum_{j in mask}
 * exp(z[j]); -inf (and dz all 0) when a is outside the set. With dz, writes
 * the gradient of g times that log-probability with respect to z:
 * dz[j] = g (1[j = a] - pi_mask(j)) on the set, 0 elsewhere. */
double rl_masked_logit_grad(const float *z, const unsigned char *mask, int V, int a, float g,
                            float *dz);
/* The entropy H = -sum pi log pi of softmax(z) renormalised over mask
 * (NULL: the whole vocabulary); with dz, adds g times its gradient with
 * respect to z: dz[j] += -g pi(j) (log pi(j) + H) on the set. */
double rl_masked_entropy_grad(const float *z, const unsigned char *mask, int V, float g, float *dz);

/* DfPO with the mask at the update (rollouts from pi_theta): token i keeps
 * max(A, 0) when it is in M+ (logp_old <= logp_ref), min(A, 0) when it is in
 * M- (logp_old >= logp_ref), both terms when it is in both (equal), so a
 * token outside a term's set contributes nothing to that term. */
void rl_dfpo_update_advantages(float *adv, const float *logp_old, const float *logp_ref, int n);

/* DfPO's optional advantage scale (dfpo.adv_norm scale), applied to the
 * whole batch after the truncation: the valid entries are divided by
 * (sd + 1e-8), sd their sample standard deviation (n - 1, as torch.std),
 * without removing the mean, so that no entry changes sign. Fewer than two
 * valid entries: unchanged. */
void rl_scale_advantages(float *x, const int *lengths, int B, int T);

/* DfPO's rollouts from pi+ in a batch of B (dfpo.plus_fraction f in
 * [0, 1]): ceil(f B), read with a margin of 1e-6 B so that a fraction
 * written in decimal (0.3 of 10) gives the count it names; f = 0.5 gives
 * ceil(B / 2), the rows 0 .. n-1 draw from pi+ and the rest from pi-. */
int rl_dfpo_plus_rows(int B, float plus_fraction);

/* ------------------------------------------------ RL training (rl_train) */

/* A task reward: fills rewards[B] for the continuations cont[B, max_new]
 * (lens[b] tokens each; -1 after) of the prompts[B, Tp] (left-padded by
 * kstart, NULL: none). Returns a DFPO_* code. */
typedef int (*rl_reward_fn)(void *ctx, int B, const int *prompts, const int *kstart, int Tp,
                            const int *cont, const int *lens, int max_new, float *rewards,
                            dfpo_err *err);

enum { RL_PPO = 0, RL_NLPO = 1, RL_DFPO = 2 };
enum { RL_MASK_AT_SAMPLE = 0, RL_MASK_AT_UPDATE = 1 };
/* The KL the adaptive controller reads (rl_config.kl_measure). */
enum { RL_KL_SEQUENCE = 0, RL_KL_TOKEN = 1 };
enum { RL_ROLLOUT_EPISODES = 0, RL_ROLLOUT_BUFFER = 1 };
enum { RL_DFPO_ADV_NONE = 0, RL_DFPO_ADV_SCALE = 1 };
enum { RL_DFPO_GRAD_THETA = 0, RL_DFPO_GRAD_MASKED = 1 };

typedef struct rl_config {
  int algo;                  /* RL_PPO, RL_NLPO or RL_DFPO */
  int epochs;                /* passes over each iteration's rollouts */
  int minibatch;             /* episodes: rollouts per gradient step */
  int rollout;               /* RL_ROLLOUT_EPISODES or RL_ROLLOUT_BUFFER */
  int n_envs, n_steps;       /* buffer: episodes generated together; n_envs x n_steps transitions */
  int minibatch_transitions; /* buffer: transitions per gradient step */
  float lr, weight_decay;    /* AdamW, for the policy and the value model */
  float max_grad_norm;       /* global clip per model (<= 0: none) */
  float gamma, lambda;       /* GAE */
  float clip_eps;            /* PPO's surrogate clip */
  float vf_coef;             /* weight of the value loss 0.5 (V - R)^2 */
  float ent_coef;            /* weight of the entropy bonus: the loss less ent_coef times the
                                mean entropy of the policy over the minibatch's transitions
                                (NLPO: of its masked distribution); 0: none (RL4LMs'
                                ent_coef) */
  int kl_adaptive;           /* PPO: adaptive (1) or fixed (0) beta */
  float beta, kl_target;     /* PPO: initial/fixed beta; the adaptive target */
  int kl_measure;            /* what the adaptive controller reads: RL_KL_SEQUENCE (kl_seq) or
                                RL_KL_TOKEN (kl_sampled, RL4LMs' measure) */
  int dfpo_mask_at;          /* RL_MASK_AT_SAMPLE or RL_MASK_AT_UPDATE */
  float dfpo_ratio_clip;     /* > 0: DfPO's PPO ratio clip; 0: the plain policy gradient */
  int dfpo_adv_norm;         /* RL_DFPO_ADV_NONE or _SCALE (rl_scale_advantages) */
  int dfpo_grad;             /* RL_DFPO_GRAD_THETA: through log pi_theta; _MASKED: through
                                log pi+ / pi-, renormalised over the sampling mask (mask_at
                                sample only) */
  float dfpo_plus_fraction;  /* share of each batch drawn from pi+ (rl_dfpo_plus_rows) */
  float nlpo_top_p;          /* NLPO: the mask model's nucleus p */
  int nlpo_k_min;            /* NLPO: the smallest mask */
  int nlpo_mask_refresh;     /* NLPO: mu, iterations between mask-model refreshes */
  smp_settings sampling;     /* rollout sampling; its mask must be NULL */
  int reuse_passes;          /* 1 (the default): where an epoch is one minibatch of every
                                episode, the first epoch's forward pass of the policy and the
                                value model is the passes' own (the same rows, the same
                                parameters), not computed again; 0: computed again (the same
                                numbers, bit for bit: a check and a benchmark's baseline) */
} rl_config;

/* The defaults (docs/configs.md says where each comes from): epochs 5,
 * minibatch 64, max grad norm 0.5, eps 0.2, vf 0.5 (RL4LMs' PPO,
 * stable-baselines3's defaults), gamma 0.99, lambda 0.95, lr 1e-5 (the
 * paper's Table 3; RL4LMs' IMDB configs use 1e-6), adaptive beta 0.1 with
 * target 0.1 (RL4LMs' imdb_text_continuation/gpt2_ppo.yml); episodes
 * rollouts, and for the buffer n_envs 10, n_steps 128, 64 transitions a
 * minibatch (the same file); NLPO p 0.9, k_min 100, mu 5; DfPO: mask at
 * sampling, ratio clip 0.2 (the dfpo-ablation suite's choice), no advantage
 * scale, gradient through log pi_theta, half of each batch from pi+;
 * the passes reused (reuse_passes). */
rl_config rl_config_default(void);

/* The prompts rl_iterate needs an iteration: `batch` with episodes
 * rollouts; with the buffer, the most episodes that can fill it, n_envs x
 * ceil(n_envs n_steps / (n_envs m)) where m = max(1, min(min_new,
 * max_new)) is the fewest transitions an episode can have (it uses as many
 * of them as it needs, in order). */
int rl_prompts_per_iteration(const rl_config *cfg, int batch);

/* What one iteration measured. */
typedef struct rl_stats {
  double reward;   /* mean task reward of the rollouts */
  double kl_seq;   /* mean over rollouts of sum_t (log pi_old - log pi_ref) of the sampled tokens */
  double kl_token; /* mean over generated tokens of the exact KL(pi_old(.|s) || pi_ref(.|s)) */
  double kl_sampled;  /* mean over generated tokens of log pi_old - log pi_ref of the sampled
                         token (kl_seq x rollouts / generated tokens) */
  double mean_len;    /* mean generated tokens per rollout */
  double entropy;     /* mean over generated tokens of the entropy (nats) of pi_old(.|s_t), the
                         policy's full next-token distribution before the update */
  double policy_loss; /* of the last minibatch */
  double value_loss;  /* of the last minibatch */
  double clipfrac;    /* of the last minibatch (PPO, or DfPO with a ratio clip) */
  double beta;        /* the KL coefficient used for this iteration's rewards */
  int episodes;       /* rollouts generated (buffer: those past its edge included) */
  int transitions;    /* transitions trained on in each epoch */
  int updates;        /* optimiser steps of the policy */
  int passes_reused;  /* 1: the first epoch's forward pass was the passes' (reuse_passes) */
  double mask_mean;   /* NLPO: mean size of the sampling masks (0 otherwise) */
  int mask_min;       /* NLPO: smallest sampling mask (0 otherwise) */
  /* wall-clock seconds of the iteration's parts (for dfpo bench) */
  double time_generate; /* rollouts, masks' lock-step models included */
  double time_passes;   /* policy, reference and value forward passes over the rollouts */
  double time_reward;   /* the reward callback */
  double time_update;   /* GAE and the minibatch epochs of both models */
} rl_stats;

typedef struct rl_trainer rl_trainer; /* opaque; rl_trainer_free releases it */

/* A trainer over borrowed models: the policy and the value model (a
 * MODEL_HEAD_VALUE model) are trained in place; the reference stays frozen.
 * All three must share the vocabulary. value may be the policy itself (a
 * policy with a value head, model_can_share_value): the value head on its
 * trunk, whose values come from the policy's forward passes and whose loss
 * (vf_coef times the value loss) joins the policy's in one backward pass
 * (model_lm_value_backward) and one AdamW step, the gradient clip over
 * both, as stable-baselines3's shared actor-critic. The reference (and
 * NLPO's mask model) is switched to activation checkpointing where its
 * architecture has it (model_set_checkpointing): it only runs forward, so
 * this keeps its outputs as they were and spares memory. */
int rl_trainer_new(rl_trainer **out, model_t *policy, model_t *ref, model_t *value,
                   const rl_config *cfg, uint64_t seed, dfpo_err *err);
void rl_trainer_free(rl_trainer *t);

/* One iteration: B rollouts of the prompts[B, Tp] (DfPO: the first
 * rl_dfpo_plus_rows from pi+, the rest from pi-; NLPO: from the policy renormalised over the mask
 * model's top-p set), their rewards, GAE, then `epochs` passes of minibatch
 * updates of the policy and the value model; the adaptive KL controller
 * steps once at the end. docs/algorithms.md has the equations.
 * With RL_ROLLOUT_BUFFER (RL4LMs' rollout buffer): the prompts are used
 * n_envs at a time, in order (DfPO: the first half of each group from pi+),
 * until the episodes hold n_envs x n_steps transitions; B must be at least
 * rl_prompts_per_iteration. The buffer takes them episode after episode
 * (rl_buffer_edge: the episode at the edge is cut, the rest of its group
 * dropped), each epoch shuffles its transitions into minibatches of
 * minibatch_transitions (the last one smaller), and the reward callback
 * gets every episode generated, once.
 * With episodes and minibatch >= B (an epoch is one minibatch), the
 * first epoch takes the episodes in their order (a minibatch's gradient is
 * a sum over its rows; the order is the rng's from the second epoch on) and,
 * with reuse_passes, backward runs on the passes' own forward pass of the
 * policy and the value model: so the reward callback must not run those two
 * models (nor may the reference be the policy: then it is recomputed). */
int rl_iterate(rl_trainer *t, const int *prompts, const int *kstart, int B, int Tp,
               rl_reward_fn reward, void *reward_ctx, rl_stats *stats, dfpo_err *err);

/* What a trainer carries from one iteration to the next besides the models'
 * parameters and AdamW states: enough, with those, to resume bit for bit. */
typedef struct rl_trainer_state {
  double beta;        /* the KL coefficient of the next iteration */
  int64_t iterations; /* rl_iterate calls done */
  dfpo_rng rng;       /* the sampling and minibatch-order stream */
} rl_trainer_state;
void rl_trainer_get_state(const rl_trainer *t, rl_trainer_state *s);
void rl_trainer_set_state(rl_trainer *t, const rl_trainer_state *s);
/* Sets the learning rate of the next iterations' AdamW steps (policy and
 * value model), for a schedule over iterations; rl_trainer_new starts with
 * cfg->lr. */
void rl_trainer_set_lr(rl_trainer *t, float lr);
/* NLPO's mask model (owned by the trainer; NULL for other algorithms), for
 * saving and restoring it with a resumable checkpoint: model_clone of the
 * policy, or for a policy with LoRA adapters model_adapter_view (the
 * policy's base shared, its own copy of the adapters), so the policy must
 * outlive the trainer. */
model_t *rl_trainer_mask_model(rl_trainer *t);

/* DfPO's KL-masked sampling, as smp_generate on policy: row b draws from
 * pi+ (sign[b] > 0) or pi- (sign[b] < 0), pi_theta renormalised over M+ or
 * M- of ref, compared at the sampling temperature; ref decodes in lock step
 * with its own KV cache. s->mask must be NULL. masks (may be NULL): gets
 * each state's set, masks[(b * max_new + step) * V + a] = 1 when token a
 * was drawable (in the set, and not the banned end-of-text), for a
 * gradient through pi+/pi-. Used by rl_iterate and to evaluate the
 * negative masked policy. */
int rl_dfpo_generate(model_t *policy, model_t *ref, const int *prompts, const int *kstart, int B,
                     int T, const int *sign, const smp_settings *s, dfpo_rng *rng, int *out,
                     int *lens, float *logps, unsigned char *masks, dfpo_err *err);

#endif
