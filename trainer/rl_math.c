#include "trainer/rl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void rl_gae(const float *rewards, const float *values, const int *lengths, int B, int T,
            float gamma, float lambda, float *adv, float *ret) {
  rl_gae_boot(rewards, values, lengths, NULL, B, T, gamma, lambda, adv, ret);
}

void rl_gae_boot(const float *rewards, const float *values, const int *lengths, const float *boot,
                 int B, int T, float gamma, float lambda, float *adv, float *ret) {
  for (int b = 0; b < B; b++) {
    const float *r = rewards + (size_t)b * T, *v = values + (size_t)b * T;
    float *a = adv + (size_t)b * T, *g = ret + (size_t)b * T;
    int len = lengths[b] < T ? lengths[b] : T;
    double next_v = boot ? boot[b] : 0, next_a = 0;
    for (int t = T - 1; t >= len; t--)
      a[t] = g[t] = 0;
    for (int t = len - 1; t >= 0; t--) {
      double delta = r[t] + gamma * next_v - v[t];
      next_a = delta + (double)gamma * lambda * next_a;
      a[t] = (float)next_a;
      g[t] = (float)(next_a + v[t]);
      next_v = v[t];
    }
  }
}

int rl_buffer_edge(const int *lens, const float *values, const float *R, int E, int T, int capacity,
                   int *keep, float *boot, float *task) {
  int filled = 0, touched = 0;
  for (int e = 0; e < E; e++) {
    int len = lens[e] < T ? lens[e] : T, room = capacity - filled;
    keep[e] = len < room ? len : room;
    filled += keep[e];
    if (keep[e] > 0)
      touched = e + 1;
    /* cut: RL4LMs bootstraps from the next transition's value (done false) */
    boot[e] = keep[e] < len && keep[e] > 0 ? values[(size_t)e * T + keep[e]] : 0.0f;
    task[e] = keep[e] == len ? R[e] : 0.0f;
  }
  return filled < capacity ? -1 : touched;
}

int rl_buffer_minibatch(const int *ids, int n, const int *tr_ep, const int *tr_t, int E, int T,
                        int *rows, float *w, int *slot) {
  for (int e = 0; e < E; e++)
    slot[e] = -1;
  for (int i = 0; i < n; i++)
    slot[tr_ep[ids[i]]] = 0;
  int nrows = 0;
  for (int e = 0; e < E; e++)
    if (slot[e] == 0) {
      slot[e] = nrows;
      rows[nrows++] = e;
    }
  memset(w, 0, sizeof(float) * (size_t)nrows * T);
  for (int i = 0; i < n; i++)
    w[(size_t)slot[tr_ep[ids[i]]] * T + tr_t[ids[i]]] = 1.0f;
  return nrows;
}

void rl_kl_rewards(const float *logp_old, const float *logp_ref, const float *task_reward,
                   const int *lengths, int B, int T, float beta, float *rewards) {
  for (int b = 0; b < B; b++) {
    int len = lengths[b] < T ? lengths[b] : T;
    for (int t = 0; t < T; t++) {
      size_t i = (size_t)b * T + t;
      rewards[i] = t < len ? -beta * (logp_old[i] - logp_ref[i]) : 0.0f;
    }
    if (len > 0)
      rewards[(size_t)b * T + len - 1] += task_reward[b];
  }
}

/* Count, mean and sum of squared deviations of the valid entries of x. */
static void valid_moments(const float *x, const int *lengths, int B, int T, double *n, double *mean,
                          double *ss) {
  double sum = 0;
  *n = 0;
  for (int b = 0; b < B; b++)
    for (int t = 0; t < lengths[b] && t < T; t++) {
      sum += x[(size_t)b * T + t];
      (*n)++;
    }
  *mean = *n > 0 ? sum / *n : 0;
  *ss = 0;
  for (int b = 0; b < B; b++)
    for (int t = 0; t < lengths[b] && t < T; t++) {
      double d = x[(size_t)b * T + t] - *mean;
      *ss += d * d;
    }
}

/* x = (x - shift) * scale on the valid entries. */
static void valid_affine(float *x, const int *lengths, int B, int T, double shift, double scale) {
  for (int b = 0; b < B; b++)
    for (int t = 0; t < lengths[b] && t < T; t++) {
      float *p = x + (size_t)b * T + t;
      *p = (float)((*p - shift) * scale);
    }
}

void rl_normalize(float *x, const int *lengths, int B, int T) {
  double n, mean, ss;
  valid_moments(x, lengths, B, T, &n, &mean, &ss);
  if (n == 0)
    return;
  valid_affine(x, lengths, B, T, mean, n > 1 ? 1.0 / (sqrt(ss / (n - 1)) + 1e-8) : 1.0);
}

void rl_normalize_weighted(float *x, const float *w, int n) {
  double sum = 0, cnt = 0;
  for (int i = 0; i < n; i++)
    if (w[i] != 0) {
      sum += x[i];
      cnt++;
    }
  if (cnt == 0)
    return;
  double mean = sum / cnt, ss = 0;
  for (int i = 0; i < n; i++)
    if (w[i] != 0) {
      double d = x[i] - mean;
      ss += d * d;
    }
  double scale = cnt > 1 ? 1.0 / (sqrt(ss / (cnt - 1)) + 1e-8) : 1.0;
  for (int i = 0; i < n; i++)
    if (w[i] != 0)
      x[i] = (float)((x[i] - mean) * scale);
}

double rl_kl_adaptive(double beta, double kl, double target) {
  double e = (kl - target) / target;
  if (e < -0.2)
    e = -0.2;
  if (e > 0.2)
    e = 0.2;
  return beta * (1.0 + 0.1 * e);
}

double rl_ppo_policy_loss(const float *logp, const float *logp_old, const float *adv,
                          const float *w, int n, float eps, float *dlogp, double *clipfrac) {
  double count = 0;
  for (int i = 0; i < n; i++)
    count += w ? w[i] : 1.0f;
  double loss = 0, clipped = 0;
  for (int i = 0; i < n; i++) {
    double wi = w ? w[i] : 1.0;
    if (wi == 0 || count == 0) {
      dlogp[i] = 0;
      continue;
    }
    double rho = exp((double)logp[i] - logp_old[i]), a = adv[i];
    double c = rho < 1 - eps ? 1 - eps : rho > 1 + eps ? 1 + eps : rho;
    double s1 = rho * a, s2 = c * a;
    /* -min(s1, s2): the gradient flows through rho only where s1 is the
     * minimum (where s2 wins, the clipped term is constant in logp). */
    int use_unclipped = s1 <= s2;
    loss += -wi * (use_unclipped ? s1 : s2);
    dlogp[i] = use_unclipped ? (float)(-wi * s1 / count) : 0.0f;
    clipped += wi * (c != rho);
  }
  if (clipfrac)
    *clipfrac = count > 0 ? clipped / count : 0;
  return count > 0 ? loss / count : 0;
}

double rl_pg_loss(const float *logp, const float *adv, const float *w, int n, float *dlogp) {
  double count = 0, loss = 0;
  for (int i = 0; i < n; i++)
    count += w ? w[i] : 1.0f;
  for (int i = 0; i < n; i++) {
    double wi = w ? w[i] : 1.0;
    dlogp[i] = count > 0 ? (float)(-wi * adv[i] / count) : 0.0f;
    loss += -wi * (double)logp[i] * adv[i];
  }
  return count > 0 ? loss / count : 0;
}

int rl_dfpo_mask_logits(float *z, const float *r, float inv_t, int V, int sign, int ban) {
  if (ban >= 0 && ban < V)
    z[ban] = -INFINITY;
  /* the support: the tokens the sampler can draw (a finite logit) */
  double mz = -INFINITY, mr = -INFINITY;
  for (int a = 0; a < V; a++)
    if (z[a] > -INFINITY) {
      if (z[a] > mz)
        mz = z[a];
      if ((double)r[a] * inv_t > mr)
        mr = (double)r[a] * inv_t;
    }
  if (mz == -INFINITY)
    return 0;
  double sz = 0, sr = 0;
  for (int a = 0; a < V; a++)
    if (z[a] > -INFINITY) {
      sz += exp(z[a] - mz);
      sr += exp((double)r[a] * inv_t - mr);
    }
  double lz = mz + log(sz), lr = mr + log(sr);
  /* d = log pi_theta - log pi_ref over the support; the token with the
   * smallest (M+) or largest (M-) d is in the set in exact arithmetic, and
   * is put back should rounding leave the set empty */
  int n = 0, extreme = -1;
  double de = 0;
  float ze = 0;
  for (int a = 0; a < V; a++) {
    if (!(z[a] > -INFINITY))
      continue;
    double d = (z[a] - lz) - ((double)r[a] * inv_t - lr);
    if (extreme < 0 || (sign > 0 ? d < de : d > de)) {
      extreme = a;
      de = d;
      ze = z[a];
    }
    if (sign > 0 ? d <= 0 : d >= 0)
      n++;
    else
      z[a] = -INFINITY;
  }
  if (n == 0) {
    z[extreme] = ze;
    n = 1;
  }
  return n;
}

double rl_masked_logprobs(const float *logp, const unsigned char *mask, int V, float *out) {
  double m = -INFINITY;
  for (int a = 0; a < V; a++)
    if (mask[a] && logp[a] > m)
      m = logp[a];
  if (m == -INFINITY) {
    for (int a = 0; a < V; a++)
      out[a] = -INFINITY;
    return -INFINITY;
  }
  double s = 0;
  for (int a = 0; a < V; a++)
    if (mask[a])
      s += exp(logp[a] - m);
  double lz = m + log(s);
  for (int a = 0; a < V; a++)
    out[a] = mask[a] ? (float)(logp[a] - lz) : -INFINITY;
  return lz;
}

void rl_truncate_advantages(float *adv, int n, int sign) {
  for (int i = 0; i < n; i++)
    if ((sign > 0 && adv[i] < 0) || (sign < 0 && adv[i] > 0))
      adv[i] = 0;
}

typedef struct {
  float p;
  int id;
} prob_id;

static int by_prob_desc(const void *x, const void *y) {
  const prob_id *a = x, *b = y;
  if (a->p != b->p)
    return a->p > b->p ? -1 : 1;
  return (a->id > b->id) - (a->id < b->id);
}

int rl_top_p_mask(const float *probs, int V, float top_p, int k_min, unsigned char *mask) {
  if (k_min > V)
    k_min = V;
  if (k_min < 0)
    k_min = 0;
  /* Largest threshold tau such that the tokens with p >= tau hold at least
   * top_p of the mass and number at least k_min: those tokens contain the
   * wanted prefix of the sorted order, so only they need sorting. */
  double lo = 0, hi = 0;
  for (int a = 0; a < V; a++)
    if (probs[a] > hi)
      hi = probs[a];
  for (int it = 0; it < 60 && hi > lo; it++) {
    double mid = 0.5 * (lo + hi), mass = 0;
    int count = 0;
    for (int a = 0; a < V; a++)
      if (probs[a] >= mid) {
        mass += probs[a];
        count++;
      }
    if (mass >= top_p && count >= k_min)
      lo = mid;
    else
      hi = mid;
  }
  int nc = 0;
  for (int a = 0; a < V; a++)
    nc += probs[a] >= lo;
  prob_id *cand = malloc(sizeof *cand * (size_t)(nc ? nc : 1));
  int k = 0;
  for (int a = 0; a < V; a++)
    mask[a] = 0;
  if (!cand) {
    /* Out of memory: fall back to the (larger) threshold set itself. */
    for (int a = 0; a < V; a++)
      mask[a] = probs[a] >= lo;
    return nc;
  }
  for (int a = 0; a < V; a++)
    if (probs[a] >= lo)
      cand[k++] = (prob_id){probs[a], a};
  qsort(cand, (size_t)nc, sizeof *cand, by_prob_desc);
  double mass = 0;
  int size = 0;
  while (size < nc && (size < k_min || mass < top_p)) {
    mass += cand[size].p;
    mask[cand[size].id] = 1;
    size++;
  }
  free(cand);
  return size;
}

double rl_masked_logit_grad(const float *z, const unsigned char *mask, int V, int a, float g,
                            float *dz) {
  double m = -INFINITY;
  for (int j = 0; j < V; j++)
    if ((!mask || mask[j]) && z[j] > m)
      m = z[j];
  int in = a >= 0 && a < V && (!mask || mask[a]) && m > -INFINITY;
  if (!in) {
    if (dz)
      for (int j = 0; j < V; j++)
        dz[j] = 0;
    return -INFINITY;
  }
  double s = 0;
  for (int j = 0; j < V; j++)
    if (!mask || mask[j])
      s += exp(z[j] - m);
  double lz = m + log(s);
  if (dz)
    for (int j = 0; j < V; j++)
      dz[j] = (!mask || mask[j]) ? (float)(-g * exp(z[j] - lz)) : 0.0f;
  if (dz)
    dz[a] += g;
  return z[a] - lz;
}

double rl_masked_entropy_grad(const float *z, const unsigned char *mask, int V, float g,
                              float *dz) {
  double m = -INFINITY;
  for (int j = 0; j < V; j++)
    if ((!mask || mask[j]) && z[j] > m)
      m = z[j];
  if (m == -INFINITY)
    return 0.0;
  double s = 0;
  for (int j = 0; j < V; j++)
    if (!mask || mask[j])
      s += exp(z[j] - m);
  double lz = m + log(s), H = 0;
  for (int j = 0; j < V; j++)
    if (!mask || mask[j]) {
      double lp = z[j] - lz;
      H -= exp(lp) * lp;
    }
  if (dz)
    for (int j = 0; j < V; j++)
      if (!mask || mask[j]) {
        double lp = z[j] - lz;
        dz[j] += (float)(-g * exp(lp) * (lp + H));
      }
  return H;
}

void rl_dfpo_update_advantages(float *adv, const float *logp_old, const float *logp_ref, int n) {
  for (int i = 0; i < n; i++) {
    int plus = logp_old[i] <= logp_ref[i], minus = logp_old[i] >= logp_ref[i];
    float a = adv[i];
    adv[i] = (plus && a > 0 ? a : 0.0f) + (minus && a < 0 ? a : 0.0f);
  }
}

void rl_scale_advantages(float *x, const int *lengths, int B, int T) {
  double n, mean, ss;
  valid_moments(x, lengths, B, T, &n, &mean, &ss);
  if (n < 2)
    return;
  valid_affine(x, lengths, B, T, 0.0, 1.0 / (sqrt(ss / (n - 1)) + 1e-8));
}

int rl_dfpo_plus_rows(int B, float plus_fraction) {
  /* a float fraction is within 6e-8 (relative) of the decimal it was read
   * from: a margin of 1e-6 B keeps ceil from counting that error as a row */
  double n = ceil((double)plus_fraction * B - 1e-6 * B);
  return n < 0 ? 0 : n > B ? B : (int)n;
}
