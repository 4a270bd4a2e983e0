#include "trainer/rl.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NEAR(a, b, tol)                                                                            \
  cr_expect(fabs((double)(a) - (double)(b)) <= (tol), "%.9g vs %.9g", (double)(a), (double)(b))

Test(rl, gae_by_hand) {
  /* Row 0, T = 3, gamma 0.99, lambda 0.95 (gamma lambda = 0.9405):
   *   delta_2 = 1 - 0.3 = 0.7                      A_2 = 0.7
   *   delta_1 = 0.99 * 0.3 - 0.4 = -0.103          A_1 = -0.103 + 0.9405 * 0.7 = 0.55535
   *   delta_0 = 0.99 * 0.4 - 0.5 = -0.104          A_0 = -0.104 + 0.9405 * 0.55535 = 0.418306675
   *   returns = A + V = 0.918306675, 0.95535, 1.0
   * Row 1 has length 2: its episode ends at t = 1 (V after it is 0):
   *   delta_1 = 2 - 0.2 = 1.8                      A_1 = 1.8
   *   delta_0 = 0.5 + 0.99 * 0.2 - 0.1 = 0.598     A_0 = 0.598 + 0.9405 * 1.8 = 2.2909
   *   t = 2 is padding: 0. */
  const float r[6] = {0, 0, 1, 0.5f, 2, 99};
  const float v[6] = {0.5f, 0.4f, 0.3f, 0.1f, 0.2f, 99};
  const int len[2] = {3, 2};
  float adv[6], ret[6];
  rl_gae(r, v, len, 2, 3, 0.99f, 0.95f, adv, ret);
  const double want_a[6] = {0.418306675, 0.55535, 0.7, 2.2909, 1.8, 0};
  const double want_r[6] = {0.918306675, 0.95535, 1.0, 2.3909, 2.0, 0};
  for (int i = 0; i < 6; i++) {
    NEAR(adv[i], want_a[i], 1e-6);
    NEAR(ret[i], want_r[i], 1e-6);
  }
}

Test(rl, kl_rewards_and_controller) {
  const float lo[4] = {-1, -2, -3, -4}, lr[4] = {-1.5f, -1, -3, 0};
  const float R[2] = {10, 20};
  const int len[2] = {2, 1};
  float rew[4];
  rl_kl_rewards(lo, lr, R, len, 2, 2, 0.1f, rew);
  /* -0.1 * (logp_old - logp_ref), plus R at the last valid token */
  NEAR(rew[0], -0.1 * 0.5, 1e-7);
  NEAR(rew[1], -0.1 * -1 + 10, 1e-6);
  NEAR(rew[2], 0 + 20, 1e-6);
  NEAR(rew[3], 0, 0);
  /* beta 0.1, target 0.1: kl 0.2 -> error 1 clipped to 0.2 -> 0.1 * 1.02 */
  NEAR(rl_kl_adaptive(0.1, 0.2, 0.1), 0.102, 1e-15);
  NEAR(rl_kl_adaptive(0.1, 0.05, 0.1), 0.098, 1e-15);
  NEAR(rl_kl_adaptive(0.1, 0.11, 0.1), 0.101, 1e-15);
}

Test(rl, normalize_like_torch_std) {
  /* torch: x = tensor([1., 2., 3., 4.]); (x - x.mean()) / (x.std() + 1e-8)
   * -> [-1.1619, -0.3873, 0.3873, 1.1619] (std unbiased: sqrt(5/3)). */
  float x[6] = {1, 2, 3, 4, 77, 88};
  const int len[2] = {3, 1};
  rl_normalize(x, len, 2, 3);
  double sd = sqrt(5.0 / 3.0);
  NEAR(x[0], -1.5 / sd, 1e-6);
  NEAR(x[1], -0.5 / sd, 1e-6);
  NEAR(x[2], 0.5 / sd, 1e-6);
  NEAR(x[3], 1.5 / sd, 1e-6);
  NEAR(x[4], 77, 0);
  NEAR(x[5], 88, 0);
}

Test(rl, ppo_loss_and_gradient) {
  /* rho = exp(logp - logp_old); eps 0.2:
   *  i0: rho 1.1, A  2 -> unclipped: -2.2, grad -rho A = -2.2
   *  i1: rho 1.5, A  1 -> clipped at 1.2: -1.2, grad 0
   *  i2: rho 0.5, A -1 -> min(-0.5, -0.8) = -0.8 (clipped): 0.8, grad 0
   *  i3: rho 0.9, A -3 -> min(-2.7, -2.4) = -2.7: 2.7, grad -rho A = 2.7
   *  i4: padding
   * loss = (-2.2 - 1.2 + 0.8 + 2.7) / 4 = 0.025; clipfrac 2/4. */
  const float old[5] = {0, 0, 0, 0, 0};
  const float lp[5] = {logf(1.1f), logf(1.5f), logf(0.5f), logf(0.9f), 5};
  const float adv[5] = {2, 1, -1, -3, 7};
  const float w[5] = {1, 1, 1, 1, 0};
  float g[5];
  double cf;
  double loss = rl_ppo_policy_loss(lp, old, adv, w, 5, 0.2f, g, &cf);
  NEAR(loss, 0.025, 1e-6);
  NEAR(cf, 0.5, 0);
  NEAR(g[0], -2.2 / 4, 1e-6);
  NEAR(g[1], 0, 0);
  NEAR(g[2], 0, 0);
  NEAR(g[3], 2.7 / 4, 1e-6);
  NEAR(g[4], 0, 0);
  /* finite differences of the loss agree with dlogp everywhere away from the
   * clip boundaries */
  for (int i = 0; i < 4; i++) {
    float a[5], b[5], tmp[5];
    memcpy(a, lp, sizeof a);
    memcpy(b, lp, sizeof b);
    a[i] += 1e-3f;
    b[i] -= 1e-3f;
    double fd = (rl_ppo_policy_loss(a, old, adv, w, 5, 0.2f, tmp, NULL) -
                 rl_ppo_policy_loss(b, old, adv, w, 5, 0.2f, tmp, NULL)) /
                2e-3;
    NEAR(fd, g[i], 2e-3);
  }
}

/* pi(a) over the support (every token but `ban`) from logits x * inv_t, by
 * direct exponentiation in double: the brute force for the masks below. */
static void support_probs(const float *x, float inv_t, int V, int ban, double *p) {
  double m = -1e300, s = 0;
  for (int a = 0; a < V; a++)
    if (a != ban && (double)x[a] * inv_t > m)
      m = (double)x[a] * inv_t;
  for (int a = 0; a < V; a++)
    s += a == ban ? 0 : exp((double)x[a] * inv_t - m);
  for (int a = 0; a < V; a++)
    p[a] = a == ban ? 0 : exp((double)x[a] * inv_t - m) / s;
}

Test(rl, dfpo_masks_against_brute_force) {
  unsigned seed = 42;
  for (int trial = 0; trial < 400; trial++) {
    int V = 2 + trial % 60, sign = trial % 2 ? 1 : -1;
    int ban = trial % 3 == 0 ? -1 : (int)(rand_r(&seed) % (unsigned)V);
    float inv_t = trial % 4 == 1 ? 1.0f / 0.7f : 1.0f;
    float z[64], r[64];
    double pt[64], pr[64];
    for (int a = 0; a < V; a++) {
      r[a] = (float)(rand_r(&seed) % 1000) / 250.0f;
      z[a] = (float)(rand_r(&seed) % 1000) / 250.0f;
    }
    if (trial % 5 == 0) { /* the start of training: pi_theta == pi_ref */
      memcpy(z, r, sizeof z);
      inv_t = 1.0f;
    }
    for (int a = 0; a < V; a++)
      z[a] *= inv_t; /* the sampler tempers the policy's logits before the mask */
    support_probs(z, 1.0f, V, ban, pt);
    support_probs(r, inv_t, V, ban, pr);
    int n = rl_dfpo_mask_logits(z, r, inv_t, V, sign, ban), count = 0;
    for (int a = 0; a < V; a++) {
      int in = a != ban && (sign > 0 ? pt[a] <= pr[a] : pt[a] >= pr[a]);
      cr_assert_eq(z[a] > -INFINITY, in, "trial %d token %d (ban %d)", trial, a, ban);
      count += in;
    }
    cr_assert_eq(n, count);
    /* never empty: both distributions sum to 1 over the support */
    cr_assert(n >= 1, "trial %d", trial);
    if (trial % 5 == 0)
      cr_assert_eq(n, V - (ban >= 0), "at pi_theta == pi_ref every drawable token is kept");
  }
}

Test(rl, dfpo_mask_with_the_only_larger_token_banned) {
  /* Policy logits (0, 1, 3), reference (0, 0, 0), token 2 (end-of-text)
   * banned. Over all three tokens pi_theta = (0.042, 0.114, 0.844) against
   * 1/3 each, so M- = {2} alone: banned, the sampler had nothing to draw
   * (imdb-small's DfPO cells stopped on this). Over the support {0, 1}:
   * pi_theta = (1, e) / (1 + e) = (0.269, 0.731) against (0.5, 0.5), so
   * M- = {1} and M+ = {0}. */
  float r[3] = {0, 0, 0};
  float zm[3] = {0, 1, 3}, zp[3] = {0, 1, 3};
  cr_assert_eq(rl_dfpo_mask_logits(zm, r, 1.0f, 3, -1, 2), 1);
  cr_assert(isinf(zm[0]) && zm[1] == 1.0f && isinf(zm[2]));
  cr_assert_eq(rl_dfpo_mask_logits(zp, r, 1.0f, 3, 1, 2), 1);
  cr_assert(zp[0] == 0.0f && isinf(zp[1]) && isinf(zp[2]));
  /* without the ban, M- is {2} */
  float z3[3] = {0, 1, 3};
  cr_assert_eq(rl_dfpo_mask_logits(z3, r, 1.0f, 3, -1, -1), 1);
  cr_assert(isinf(z3[0]) && isinf(z3[1]) && z3[2] == 3.0f);
  /* an empty support keeps nothing */
  float ze[2] = {-INFINITY, 5};
  cr_assert_eq(rl_dfpo_mask_logits(ze, r, 1.0f, 2, 1, 1), 0);
}

Test(rl, truncated_advantages_zero_the_gradient_where_they_should) {
  float adv_p[6] = {-2, -0.5f, 0, 0.5f, 1, 3}, adv_m[6];
  memcpy(adv_m, adv_p, sizeof adv_m);
  rl_truncate_advantages(adv_p, 6, +1);
  rl_truncate_advantages(adv_m, 6, -1);
  const float lp[6] = {-1, -2, -3, -1, -2, -3};
  float gp[6], gm[6];
  double lossp = rl_pg_loss(lp, adv_p, NULL, 6, gp);
  double lossm = rl_pg_loss(lp, adv_m, NULL, 6, gm);
  for (int i = 0; i < 6; i++) {
    /* pi+ rollouts: only positive advantages push log pi up */
    cr_expect_eq(gp[i] == 0.0f, !(i >= 3), "pi+ token %d", i);
    /* pi- rollouts: only negative advantages push log pi down */
    cr_expect_eq(gm[i] == 0.0f, !(i <= 1), "pi- token %d", i);
    NEAR(gp[i], -adv_p[i] / 6.0, 1e-7);
    NEAR(gm[i], -adv_m[i] / 6.0, 1e-7);
  }
  /* loss = mean(-logp A): pi+ (-(-1)(0.5) - (-2)(1) - (-3)(3)) / 6 = 11.5 / 6 */
  NEAR(lossp, 11.5 / 6, 1e-6);
  /* pi-: (-(-1)(-2) - (-2)(-0.5)) / 6 = (-2 - 1) / 6 */
  NEAR(lossm, -3.0 / 6, 1e-6);
}

static int brute_top_p(const float *p, int V, float top_p, int k_min, unsigned char *mask) {
  /* selection sort by (p desc, id asc), then the shortest qualifying prefix */
  if (V <= 0 || V > 256)
    return 0;
  int order[256];
  unsigned char used[256] = {0};
  for (int i = 0; i < V; i++) {
    int best = -1;
    for (int a = 0; a < V; a++)
      if (!used[a] && (best < 0 || p[a] > p[best]))
        best = a;
    used[best] = 1;
    order[i] = best;
  }
  memset(mask, 0, (size_t)V);
  double mass = 0;
  int k = 0;
  if (k_min > V)
    k_min = V;
  while (k < V && (k < k_min || mass < top_p)) {
    mass += p[order[k]];
    mask[order[k]] = 1;
    k++;
  }
  return k;
}

Test(rl, nlpo_top_p_mask_against_brute_force) {
  unsigned seed = 7;
  for (int trial = 0; trial < 300; trial++) {
    int V = 1 + trial % 200;
    float p[256];
    double s = 0;
    for (int a = 0; a < V; a++) {
      /* few distinct values so that ties happen */
      p[a] = (float)(1 + rand_r(&seed) % (trial % 3 ? 9 : 1000));
      s += p[a];
    }
    for (int a = 0; a < V; a++)
      p[a] = (float)(p[a] / s);
    float top_p = (float)(trial % 10) / 10.0f + 0.05f;
    int k_min = trial % 4 == 0 ? 0 : trial % 17;
    unsigned char m1[256], m2[256];
    int k1 = rl_top_p_mask(p, V, top_p, k_min, m1);
    int k2 = brute_top_p(p, V, top_p, k_min, m2);
    cr_assert_eq(k1, k2, "trial %d V %d p %g k_min %d", trial, V, top_p, k_min);
    cr_assert_eq(memcmp(m1, m2, (size_t)V), 0, "trial %d", trial);
    cr_assert_geq(k1, k_min < V ? k_min : V);
    double mass = 0;
    for (int a = 0; a < V; a++)
      mass += m1[a] ? p[a] : 0;
    cr_assert(mass >= top_p - 1e-6 || k1 == V);
  }
}

/* Hand computation: z = log(1, 2, 3, 4), mask {0, 2, 3} (mass 1 + 3 + 4 =
 * 8): log pi_M(2) = log(3/8), and with g = 2 the logit gradient is
 * g (1[j = 2] - pi_M(j)) = (-2/8, 0, 2 (1 - 3/8), -2 4/8) = (-0.25, 0, 1.25, -1). */
Test(rl, masked_logit_gradient_by_hand) {
  float z[4] = {0.0f, logf(2.0f), logf(3.0f), logf(4.0f)}, dz[4];
  unsigned char mask[4] = {1, 0, 1, 1};
  double lp = rl_masked_logit_grad(z, mask, 4, 2, 2.0f, dz);
  cr_expect_float_eq(lp, log(3.0 / 8.0), 1e-6);
  const float want[4] = {-0.25f, 0.0f, 1.25f, -1.0f};
  for (int j = 0; j < 4; j++)
    cr_expect_float_eq(dz[j], want[j], 1e-6, "dz[%d] = %g", j, dz[j]);
  /* the same value as rl_masked_logprobs on the log-softmax */
  float logp[4], out[4];
  for (int j = 0; j < 4; j++)
    logp[j] = (float)(z[j] - log(10.0));
  rl_masked_logprobs(logp, mask, 4, out);
  cr_expect_float_eq(out[2], lp, 1e-6);
  /* without a mask: log(4/10) */
  cr_expect_float_eq(rl_masked_logit_grad(z, NULL, 4, 3, 0.0f, NULL), log(0.4), 1e-6);
  /* a token outside the set: -inf and no gradient */
  cr_expect(isinf(rl_masked_logit_grad(z, mask, 4, 1, 1.0f, dz)));
  for (int j = 0; j < 4; j++)
    cr_expect_eq(dz[j], 0.0f);
}

/* mask_at=update, by hand: token 0 is in M- only (old > ref), so its
 * positive advantage is dropped; token 1 in M+ only keeps its positive one;
 * token 2 (old = ref) is in both and keeps its advantage; token 3 in M+ only
 * drops its negative one; token 4 in M- only keeps its negative one. */
Test(rl, dfpo_update_mask_advantages_by_hand) {
  float old[5] = {-1, -2, -1, -3, -2}, ref[5] = {-2, -1, -1, -1, -3};
  float adv[5] = {0.5f, 0.5f, -0.7f, -0.4f, -0.6f};
  const float want[5] = {0.0f, 0.5f, -0.7f, 0.0f, -0.6f};
  rl_dfpo_update_advantages(adv, old, ref, 5);
  for (int i = 0; i < 5; i++)
    cr_expect_eq(adv[i], want[i], "adv[%d] = %g", i, adv[i]);
}

Test(rl, buffer_edge_and_gae_at_the_cut_by_hand) {
  /* Three episodes of 3, 4 and 2 tokens (T = 4) fill a buffer of 5
   * transitions as RL4LMs' _add_to_buffer does: episode 0 whole, the first
   * two transitions of episode 1, nothing of episode 2. Episode 1's task
   * reward (7) sits on its last transition, past the edge; its last kept
   * transition bootstraps from V(s_2) of episode 1 = 0.8.
   * KL rewards, beta 0.1 (-0.1 (logp_old - logp_ref)); R_0 = 1 on episode
   * 0's last token: r = -0.1, 0, 0.2 + 1 | -0.05, 0.1.
   * stable-baselines3's compute_returns_and_advantage over the flat buffer
   * (episode_starts at 0 and 3; last_values 0.8, dones false), gamma 0.9,
   * lambda 0.5 (gamma lambda 0.45), from the last step back:
   *   step 4: delta = 0.1 + 0.9 * 0.8 - 0.6 = 0.22            A = 0.22
   *   step 3: delta = -0.05 + 0.9 * 0.6 - 0.3 = 0.19          A = 0.19 + 0.45 * 0.22 = 0.289
   *   step 2: episode 1 starts at step 3: delta = 1.2 - 0.2 = 1.0   A = 1.0
   *   step 1: delta = 0 + 0.9 * 0.2 - 0.4 = -0.22             A = -0.22 + 0.45 * 1.0 = 0.23
   *   step 0: delta = -0.1 + 0.9 * 0.4 - 0.5 = -0.24          A = -0.24 + 0.45 * 0.23 = -0.1365
   *   returns = A + V: -0.1365 + 0.5 = 0.3635, 0.63, 1.2 | 0.589, 0.82. */
  const int lens[3] = {3, 4, 2};
  const float values[12] = {0.5f, 0.4f, 0.2f, 9, 0.3f, 0.6f, 0.8f, 0.1f, 5, 5, 9, 9};
  const float lo[12] = {1, 0, -2, 0, 0.5f, -1, 2, 3, 1, 1, 0, 0};
  const float lr[12] = {0};
  const float R[3] = {1, 7, 3};
  int keep[3];
  float boot[3], task[3], rew[12], adv[12], ret[12];
  cr_assert_eq(rl_buffer_edge(lens, values, R, 3, 4, 5, keep, boot, task), 2);
  cr_expect(keep[0] == 3 && keep[1] == 2 && keep[2] == 0, "%d %d %d", keep[0], keep[1], keep[2]);
  NEAR(boot[0], 0, 0);
  NEAR(boot[1], 0.8, 1e-7);
  NEAR(boot[2], 0, 0);
  NEAR(task[0], 1, 0);
  NEAR(task[1], 0, 0);
  NEAR(task[2], 0, 0);
  rl_kl_rewards(lo, lr, task, keep, 3, 4, 0.1f, rew);
  rl_gae_boot(rew, values, keep, boot, 3, 4, 0.9f, 0.5f, adv, ret);
  const double want_a[12] = {-0.1365, 0.23, 1.0, 0, 0.289, 0.22, 0, 0, 0, 0, 0, 0};
  const double want_r[12] = {0.3635, 0.63, 1.2, 0, 0.589, 0.82, 0, 0, 0, 0, 0, 0};
  for (int i = 0; i < 12; i++) {
    NEAR(adv[i], want_a[i], 1e-6);
    NEAR(ret[i], want_r[i], 1e-6);
  }
  /* the edge exactly at an episode's end: done, no bootstrap, R kept */
  cr_assert_eq(rl_buffer_edge(lens, values, R, 3, 4, 3, keep, boot, task), 1);
  cr_expect(keep[0] == 3 && keep[1] == 0 && keep[2] == 0);
  NEAR(boot[0], 0, 0);
  NEAR(task[0], 1, 0);
  /* episodes that cannot fill the buffer */
  cr_expect_eq(rl_buffer_edge(lens, values, R, 3, 4, 10, keep, boot, task), -1);
  /* no bootstrap: rl_gae exactly */
  float adv2[12], ret2[12];
  rl_gae_boot(rew, values, lens, NULL, 3, 4, 0.9f, 0.5f, adv, ret);
  rl_gae(rew, values, lens, 3, 4, 0.9f, 0.5f, adv2, ret2);
  cr_expect_eq(memcmp(adv, adv2, sizeof adv), 0);
  cr_expect_eq(memcmp(ret, ret2, sizeof ret), 0);
}

Test(rl, buffer_minibatches_use_every_transition_once_an_epoch) {
  /* 6 episodes of T = 5 with 3, 0, 5, 1, 2, 4 transitions in the buffer
   * (15), minibatches of 4 (the last of 3) over a shuffled order, for
   * several shuffles: each transition gets weight 1 exactly once, nothing
   * else weight, and a minibatch's rows are the distinct episodes it
   * selects, ascending. */
  enum { E = 6, T = 5, M = 15, MB = 4 };
  const int keep[E] = {3, 0, 5, 1, 2, 4};
  int tr_ep[M], tr_t[M], ids[M], rows[E], slot[E];
  float w[E * T];
  for (int e = 0, i = 0; e < E; e++)
    for (int t = 0; t < keep[e]; t++, i++) {
      tr_ep[i] = e;
      tr_t[i] = t;
    }
  srand(7);
  for (int trial = 0; trial < 20; trial++) {
    for (int i = 0; i < M; i++)
      ids[i] = i;
    for (int i = M - 1; i > 0; i--) {
      int j = rand() % (i + 1), x = ids[i];
      ids[i] = ids[j];
      ids[j] = x;
    }
    int used[E * T] = {0}, minibatches = 0;
    for (int start = 0; start < M; start += MB, minibatches++) {
      int n = M - start < MB ? M - start : MB;
      int nrows = rl_buffer_minibatch(ids + start, n, tr_ep, tr_t, E, T, rows, w, slot);
      int distinct[E] = {0}, want = 0;
      for (int i = 0; i < n; i++)
        distinct[tr_ep[ids[start + i]]] = 1;
      for (int e = 0; e < E; e++)
        want += distinct[e];
      cr_assert_eq(nrows, want);
      for (int r = 0; r < nrows; r++) {
        cr_expect(distinct[rows[r]], "row %d holds no selected transition", rows[r]);
        cr_expect(r == 0 || rows[r] > rows[r - 1], "rows not ascending");
        for (int t = 0; t < T; t++) {
          cr_assert(w[r * T + t] == 0 || w[r * T + t] == 1);
          used[rows[r] * T + t] += (int)w[r * T + t];
        }
      }
    }
    cr_expect_eq(minibatches, 4);
    for (int e = 0; e < E; e++)
      for (int t = 0; t < T; t++)
        cr_expect_eq(used[e * T + t], t < keep[e], "trial %d: episode %d token %d used %d times",
                     trial, e, t, used[e * T + t]);
  }
}

Test(rl, normalize_weighted_is_normalize_over_the_valid_entries) {
  float x[8] = {1, 2, 3, 9, 4, 7, 7, 7}, y[8];
  const float w[8] = {1, 1, 1, 0, 1, 0, 0, 0};
  const int len[2] = {3, 1};
  memcpy(y, x, sizeof x);
  rl_normalize(x, len, 2, 4);
  rl_normalize_weighted(y, w, 8);
  cr_expect_eq(memcmp(x, y, sizeof x), 0);
  /* a subset that is not a prefix: entries 1 and 2 (2, 3) -> -/+ 1/sqrt(2) */
  float z[4] = {5, 2, 3, 6};
  const float w2[4] = {0, 1, 1, 0};
  rl_normalize_weighted(z, w2, 4);
  NEAR(z[0], 5, 0);
  NEAR(z[1], -0.5 / sqrt(0.5), 1e-6);
  NEAR(z[2], 0.5 / sqrt(0.5), 1e-6);
  NEAR(z[3], 6, 0);
}

Test(rl, scale_advantages_by_hand) {
  /* dfpo.adv_norm scale. Valid entries 3, 0, 1 (row 0) and 0 (row 1, length
   * 1): mean 1, deviations 2, -1, 0, -1, sum of squares 6, sample sd
   * sqrt(6 / 3) = sqrt(2). Each valid entry is divided by sqrt(2) + 1e-8
   * without removing the mean: 3 -> 2.12132034, 0 -> 0, 1 -> 0.707106781
   * (PPO's rl_normalize would give 1.414, -0.707, 0, -0.707 and turn the
   * truncated zeros negative). Padding (77, 88) is left alone. */
  float x[6] = {3, 0, 1, 0, 77, 88};
  const int len[2] = {3, 1};
  rl_scale_advantages(x, len, 2, 3);
  NEAR(x[0], 3 / sqrt(2.0), 1e-6);
  NEAR(x[1], 0, 0);
  NEAR(x[2], 1 / sqrt(2.0), 1e-6);
  NEAR(x[3], 0, 0);
  NEAR(x[4], 77, 0);
  NEAR(x[5], 88, 0);
  /* pi- rows: -4, -2 and a zero: mean -2, deviations -2, 0, 2, sd
   * sqrt(8 / 2) = 2: -2, -1, 0, signs kept */
  float y[3] = {-4, -2, 0};
  const int len3[1] = {3};
  rl_scale_advantages(y, len3, 1, 3);
  NEAR(y[0], -2, 1e-6);
  NEAR(y[1], -1, 1e-6);
  NEAR(y[2], 0, 0);
  /* fewer than two valid entries: unchanged; all zero: stays zero */
  float one[2] = {5, 9};
  const int len1[1] = {1};
  rl_scale_advantages(one, len1, 1, 2);
  NEAR(one[0], 5, 0);
  NEAR(one[1], 9, 0);
  float zero[3] = {0, 0, 0};
  rl_scale_advantages(zero, len3, 1, 3);
  for (int i = 0; i < 3; i++)
    NEAR(zero[i], 0, 0);
}

Test(rl, dfpo_plus_rows_by_hand) {
  /* ceil(f B): 0.5 of 16 is 8, 0.25 of 16 is 4, 0.75 of 16 is 12, 0.26 of
   * 16 = 4.16 -> 5, 0 -> 0 (pi- only), 1 -> 16 (pi+ only), 0.5 of 15 =
   * 7.5 -> 8, 0.5 of 1 -> 1. 0.3 of 10: the float 0.3f is 0.300000012, so
   * 0.3f * 10 = 3.00000012 and a plain ceil would say 4. */
  cr_expect_eq(rl_dfpo_plus_rows(16, 0.5f), 8);
  cr_expect_eq(rl_dfpo_plus_rows(16, 0.25f), 4);
  cr_expect_eq(rl_dfpo_plus_rows(16, 0.75f), 12);
  cr_expect_eq(rl_dfpo_plus_rows(16, 0.26f), 5);
  cr_expect_eq(rl_dfpo_plus_rows(16, 0.0f), 0);
  cr_expect_eq(rl_dfpo_plus_rows(16, 1.0f), 16);
  cr_expect_eq(rl_dfpo_plus_rows(15, 0.5f), 8);
  cr_expect_eq(rl_dfpo_plus_rows(1, 0.5f), 1);
  cr_expect_eq(rl_dfpo_plus_rows(10, 0.3f), 3);
  /* f = 0.5 is the split before the key existed: the first ceil(B / 2) */
  for (int B = 1; B <= 4096; B++)
    cr_assert_eq(rl_dfpo_plus_rows(B, 0.5f), (B + 1) / 2, "B %d", B);
}

/* The entropy of the masked distribution and its gradient. By hand: z =
 * (0, ln 2, ln 3, ln 4) over the mask {0, 2, 3} gives pi = (1, 3, 4)/8, so
 * H = -(1/8 ln 1/8 + 3/8 ln 3/8 + 1/2 ln 1/2) = 0.97431...; the gradient is
 * checked against central differences of H itself (step 1e-3, in float z),
 * and it is added to what dz holds. */
Test(rl, masked_entropy_gradient) {
  float z[4] = {0.0f, logf(2.0f), logf(3.0f), logf(4.0f)}, dz[4] = {1, 1, 1, 1};
  unsigned char mask[4] = {1, 0, 1, 1};
  double H = rl_masked_entropy_grad(z, mask, 4, 2.0f, dz);
  double want = -(0.125 * log(0.125) + 0.375 * log(0.375) + 0.5 * log(0.5));
  cr_expect_float_eq(H, want, 1e-6, "H %.9f, by hand %.9f", H, want);
  for (int j = 0; j < 4; j++) {
    float zp[4], zm[4];
    memcpy(zp, z, sizeof z);
    memcpy(zm, z, sizeof z);
    zp[j] += 1e-3f;
    zm[j] -= 1e-3f;
    double fd = (rl_masked_entropy_grad(zp, mask, 4, 0.0f, NULL) -
                 rl_masked_entropy_grad(zm, mask, 4, 0.0f, NULL)) /
                (double)(zp[j] - zm[j]);
    cr_expect_float_eq(dz[j], 1.0 + 2.0 * (mask[j] ? fd : 0.0), 2e-3, "dz[%d] %g, fd %g", j, dz[j],
                       fd);
  }
  cr_expect_eq(dz[1], 1.0f, "outside the mask: untouched");
  /* no mask: the uniform distribution over 4 has H = ln 4 and zero gradient */
  float u[4] = {0.5f, 0.5f, 0.5f, 0.5f}, du[4] = {0, 0, 0, 0};
  cr_expect_float_eq(rl_masked_entropy_grad(u, NULL, 4, 1.0f, du), log(4.0), 1e-6);
  for (int j = 0; j < 4; j++)
    cr_expect_float_eq(du[j], 0.0f, 1e-7);
}
