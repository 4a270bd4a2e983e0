/* Decoding and sampling. The KV cache and left padding against the full
 * forward pass (1e-5); sampled token frequencies against the model's own
 * probabilities by Pearson's chi-square test at significance 1e-3 (critical
 * values from the standard table), with fixed seeds, so a run either always passes or always fails;
 * top-k, top-p and logit masks never emit an excluded token; minimum length
 * and end-of-text. */
#include "tests/trainer/gpt2_testutil.h"
#include "trainer/sample.h"

#include <string.h>

static model_t *small(int V, uint64_t seed) {
  gpt2_config cfg = tu_config(V, 2, 2, 16, 32);
  model_t *m = tu_model(&cfg, seed);
  tu_perturb(m, seed + 1, 4.0f); /* a peaked, uneven next-token distribution */
  return m;
}

Test(gpt2_sample, kv_cache_matches_full_forward) {
  enum { B = 2, T = 5, S = 3, V = 30 };
  model_t *m = small(V, 1);
  int prompt[B * T] = {4, 9, 1, 7, 3, 0, 0, 12, 5, 8}, ks[B] = {0, 2};
  int fed[S][B] = {{2, 6}, {11, 29}, {0, 17}};
  dfpo_err err;
  dfpo_err_clear(&err);
  float step_logits[S + 1][B * V];
  const float *lg = model_decode_begin(m, prompt, ks, B, T, T + S, &err);
  cr_assert_not_null(lg, "%s", err.msg);
  memcpy(step_logits[0], lg, sizeof step_logits[0]);
  for (int s = 0; s < S; s++) {
    lg = model_decode_step(m, fed[s], &err);
    cr_assert_not_null(lg, "%s", err.msg);
    memcpy(step_logits[s + 1], lg, sizeof step_logits[0]);
  }
  /* the same tokens in one forward pass */
  int full[B * (T + S)];
  for (int b = 0; b < B; b++) {
    for (int t = 0; t < T; t++)
      full[b * (T + S) + t] = prompt[b * T + t];
    for (int s = 0; s < S; s++)
      full[b * (T + S) + T + s] = fed[s][b];
  }
  cr_assert_eq(model_forward_rows(m, full, ks, B, T + S, &err), 0, "%s", err.msg);
  cr_assert_eq(model_lm_logprobs(m, NULL, NULL, NULL, &err), 0, "%s", err.msg);
  const float *ref = model_lm_logits(m);
  double worst = 0;
  for (int s = 0; s <= S; s++)
    for (int b = 0; b < B; b++)
      for (int v = 0; v < V; v++)
        worst = fmax(worst, fabs((double)step_logits[s][b * V + v] -
                                 ref[((size_t)b * (T + S) + T - 1 + s) * V + v]));
  cr_expect_lt(worst, 1e-5, "KV-cache logits differ from the full pass by %.3g", worst);
  /* a full cache refuses another step */
  cr_expect_null(model_decode_step(m, fed[0], &err));
  model_free(m);
}

Test(gpt2_sample, left_padding_is_invisible) {
  enum { V = 30 };
  model_t *m = small(V, 2);
  int padded[6] = {7, 7, 7, 3, 14, 2}, ks[1] = {3}, plain[3] = {3, 14, 2};
  float lp1[6], lp2[3], e1[6], e2[3];
  int t1[6] = {-1, -1, -1, 14, 2, 9}, t2[3] = {14, 2, 9};
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(model_forward_rows(m, padded, ks, 1, 6, &err), 0, "%s", err.msg);
  cr_assert_eq(model_lm_logprobs(m, t1, lp1, e1, &err), 0);
  cr_assert_eq(model_forward_rows(m, plain, NULL, 1, 3, &err), 0);
  cr_assert_eq(model_lm_logprobs(m, t2, lp2, e2, &err), 0);
  for (int t = 0; t < 3; t++) {
    cr_expect_lt(fabsf(lp1[3 + t] - lp2[t]), 1e-5, "position %d", t);
    cr_expect_lt(fabsf(e1[3 + t] - e2[t]), 1e-5, "position %d", t);
    cr_expect_lt(lp2[t], 0.0f);
    cr_expect_gt(e2[t], 0.0f);
  }
  for (int t = 0; t < 3; t++)
    cr_expect_eq(lp1[t], 0.0f, "a position without target has log-probability 0");
  model_free(m);
}

/* softmax(z / temp) in double */
static void probs(const float *z, int V, double temp, double *p) {
  double mx = -1e30, s = 0;
  for (int i = 0; i < V; i++)
    mx = fmax(mx, z[i] / temp);
  for (int i = 0; i < V; i++)
    s += p[i] = exp(z[i] / temp - mx);
  for (int i = 0; i < V; i++)
    p[i] /= s;
}

/* chi-square critical values at significance 1e-3 for 1..15 degrees of
 * freedom (standard table) */
static const double chi2_crit[15] = {10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32, 26.12,
                                     27.88, 29.59, 31.26, 32.91, 34.53, 36.12, 37.70};

static double chi2(const int *count, const double *p, int V, int n, int *dof) {
  double x = 0;
  *dof = -1;
  for (int i = 0; i < V; i++) {
    if (p[i] == 0) {
      cr_expect_eq(count[i], 0, "token %d has probability 0 but was drawn %d times", i, count[i]);
      continue;
    }
    double e = p[i] * n;
    x += (count[i] - e) * (count[i] - e) / e;
    (*dof)++;
  }
  return x;
}

Test(gpt2_sample, draws_follow_the_model_probabilities) {
  enum { V = 16, N = 20000 };
  model_t *m = small(V, 3);
  int prompt[4] = {1, 5, 9, 2};
  dfpo_err err;
  dfpo_err_clear(&err);
  const float *lg = model_decode_begin(m, prompt, NULL, 1, 4, 4, &err);
  cr_assert_not_null(lg, "%s", err.msg);
  float z[V], row[V];
  memcpy(z, lg, sizeof z);
  const double temps[2] = {1.0, 0.7};
  for (int k = 0; k < 2; k++) {
    double p[V];
    probs(z, V, temps[k], p);
    int count[V] = {0};
    smp_settings s = smp_settings_default();
    s.temperature = (float)temps[k];
    dfpo_rng rng;
    dfpo_rng_init(&rng, 100 + k, DFPO_STREAM_SAMPLING);
    for (int i = 0; i < N; i++) {
      memcpy(row, z, sizeof row);
      float lp;
      int t = smp_sample_token(row, V, &s, &rng, &lp);
      cr_assert(t >= 0 && t < V);
      cr_expect_lt(fabs(lp - log(p[t])), 1e-4, "log-probability of the drawn token");
      count[t]++;
    }
    int dof;
    double x = chi2(count, p, V, N, &dof);
    cr_expect_eq(dof, 15);
    cr_expect_lt(x, 37.70, "temperature %.1f: chi-square %.2f over 15 degrees of freedom", temps[k],
                 x);
  }
  model_free(m);
}

Test(gpt2_sample, batched_first_tokens_follow_the_model) {
  enum { V = 16, B = 3000 };
  model_t *m = small(V, 4);
  int *prompts = malloc(sizeof(int) * B * 3);
  for (int b = 0; b < B; b++) {
    prompts[b * 3] = 4;
    prompts[b * 3 + 1] = 8;
    prompts[b * 3 + 2] = 15;
  }
  dfpo_err err;
  dfpo_err_clear(&err);
  const float *lg = model_decode_begin(m, prompts, NULL, 1, 3, 3, &err);
  cr_assert_not_null(lg);
  double p[V];
  probs(lg, V, 1.0, p);
  smp_settings s = smp_settings_default();
  s.max_new = 2;
  s.eos = -1;
  dfpo_rng rng;
  dfpo_rng_init(&rng, 5, DFPO_STREAM_SAMPLING);
  int *out = malloc(sizeof(int) * B * 2), lens[B];
  cr_assert_eq(smp_generate(m, prompts, NULL, B, 3, &s, &rng, out, lens, NULL, &err), 0, "%s",
               err.msg);
  int count[V] = {0};
  for (int b = 0; b < B; b++) {
    cr_expect_eq(lens[b], 2);
    count[out[b * 2]]++;
  }
  int dof;
  double x = chi2(count, p, V, B, &dof);
  cr_expect_lt(x, 37.70, "chi-square %.2f over %d degrees of freedom", x, dof);
  free(prompts);
  free(out);
  model_free(m);
}

Test(gpt2_sample, top_k_and_top_p_exclude_and_renormalise) {
  enum { V = 16, N = 20000 };
  model_t *m = small(V, 5);
  int prompt[2] = {3, 11};
  dfpo_err err;
  dfpo_err_clear(&err);
  const float *lg = model_decode_begin(m, prompt, NULL, 1, 2, 2, &err);
  cr_assert_not_null(lg);
  float z[V], row[V];
  memcpy(z, lg, sizeof z);
  double p[V];
  probs(z, V, 1.0, p);
  /* tokens by probability, by hand */
  int order[V];
  for (int i = 0; i < V; i++)
    order[i] = i;
  for (int i = 0; i < V; i++)
    for (int j = i + 1; j < V; j++)
      if (p[order[j]] > p[order[i]]) {
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
      }
  /* top-k 3: the three most likely tokens, renormalised */
  double pk[V] = {0}, sk = p[order[0]] + p[order[1]] + p[order[2]];
  for (int i = 0; i < 3; i++)
    pk[order[i]] = p[order[i]] / sk;
  /* top-p 0.6: the smallest head of the order with mass >= 0.6 */
  double pp[V] = {0}, cum = 0;
  int kept = 0;
  while (cum < 0.6)
    cum += p[order[kept++]];
  for (int i = 0; i < kept; i++)
    pp[order[i]] = p[order[i]] / cum;
  cr_assert(kept >= 2 && kept < V, "the test needs a nucleus of 2..15 tokens (got %d)", kept);
  for (int mode = 0; mode < 2; mode++) {
    smp_settings s = smp_settings_default();
    if (mode == 0)
      s.top_k = 3;
    else
      s.top_p = 0.6f;
    const double *want = mode == 0 ? pk : pp;
    dfpo_rng rng;
    dfpo_rng_init(&rng, 200 + mode, DFPO_STREAM_SAMPLING);
    int count[V] = {0};
    for (int i = 0; i < N; i++) {
      memcpy(row, z, sizeof row);
      count[smp_sample_token(row, V, &s, &rng, NULL)]++;
    }
    int dof;
    double x = chi2(count, want, V, N, &dof);
    cr_assert(dof >= 1 && dof <= 15);
    double crit = chi2_crit[dof - 1];
    cr_expect_lt(x, crit, "%s: chi-square %.2f over %d degrees of freedom",
                 mode == 0 ? "top-k" : "top-p", x, dof);
  }
  model_free(m);
}

/* forbids even tokens */
static int no_even(void *ctx, int step, int B, int V, const int *seqs, float *logits) {
  (void)seqs;
  (void)step;
  (*(int *)ctx)++;
  for (int b = 0; b < B; b++)
    for (int v = 0; v < V; v += 2)
      logits[(size_t)b * V + v] = -INFINITY;
  return 0;
}

Test(gpt2_sample, logit_mask_is_obeyed_every_step) {
  enum { V = 30, B = 8, N = 10 };
  model_t *m = small(V, 6);
  int prompts[B * 2];
  tu_tokens(prompts, B * 2, V, 1);
  smp_settings s = smp_settings_default();
  s.max_new = N;
  s.eos = -1;
  s.top_k = 5;
  int calls = 0;
  s.mask = no_even;
  s.mask_ctx = &calls;
  dfpo_rng rng;
  dfpo_rng_init(&rng, 9, DFPO_STREAM_SAMPLING);
  int out[B * N], lens[B];
  float lp[B * N];
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(smp_generate(m, prompts, NULL, B, 2, &s, &rng, out, lens, lp, &err), 0, "%s",
               err.msg);
  cr_expect_eq(calls, N);
  for (int i = 0; i < B * N; i++) {
    cr_expect_eq(out[i] % 2, 1, "token %d at %d is masked", out[i], i);
    cr_expect_leq(lp[i], 0.0f);
  }
  model_free(m);
}

/* only token 1 and end-of-text (0) allowed, end-of-text strongly favoured */
static int eos_favoured(void *ctx, int step, int B, int V, const int *seqs, float *logits) {
  (void)ctx;
  (void)step;
  (void)seqs;
  for (int b = 0; b < B; b++)
    for (int v = 0; v < V; v++)
      logits[(size_t)b * V + v] = v == 0 ? 50.0f : v == 1 ? 0.0f : -INFINITY;
  return 0;
}

Test(gpt2_sample, min_new_tokens_and_end_of_text) {
  enum { V = 30, B = 3, N = 8 };
  model_t *m = small(V, 7);
  int prompts[B * 2] = {5, 6, 7, 8, 9, 10};
  smp_settings s = smp_settings_default();
  s.max_new = N;
  s.min_new = 3;
  s.eos = 0;
  s.mask = eos_favoured;
  dfpo_rng rng;
  dfpo_rng_init(&rng, 10, DFPO_STREAM_SAMPLING);
  int out[B * N], lens[B];
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(smp_generate(m, prompts, NULL, B, 2, &s, &rng, out, lens, NULL, &err), 0, "%s",
               err.msg);
  const int want[N] = {1, 1, 1, 0, -1, -1, -1, -1};
  for (int b = 0; b < B; b++) {
    cr_expect_eq(lens[b], 4);
    for (int i = 0; i < N; i++)
      cr_expect_eq(out[b * N + i], want[i], "row %d position %d", b, i);
  }
  /* greedy picks the argmax */
  s = smp_settings_default();
  s.temperature = 0;
  s.max_new = 1;
  s.eos = -1;
  const float *lg = model_decode_begin(m, prompts, NULL, 1, 2, 2, &err);
  int arg = 0;
  for (int v = 1; v < V; v++)
    if (lg[v] > lg[arg])
      arg = v;
  cr_assert_eq(smp_generate(m, prompts, NULL, 1, 2, &s, &rng, out, lens, NULL, &err), 0);
  cr_expect_eq(out[0], arg);
  model_free(m);
}

Test(gpt2_sample, score_tokens_in_overlapping_windows) {
  enum { V = 30, N = 21 };
  gpt2_config cfg = tu_config(V, 2, 2, 16, 8);
  model_t *m = tu_model(&cfg, 8);
  tu_perturb(m, 9, 3.0f);
  int tok[N];
  tu_tokens(tok, N, V, 10);
  dfpo_err err;
  dfpo_err_clear(&err);
  /* within n_ctx: the same as one forward pass */
  double nll;
  size_t scored;
  cr_assert_eq(model_score_tokens(m, tok, 8, &nll, &scored, &err), 0, "%s", err.msg);
  cr_expect_eq(scored, 7);
  int tgt[8];
  float lp[8];
  for (int t = 0; t < 8; t++)
    tgt[t] = t < 7 ? tok[t + 1] : -1;
  cr_assert_eq(model_forward_rows(m, tok, NULL, 1, 8, &err), 0);
  cr_assert_eq(model_lm_logprobs(m, tgt, lp, NULL, &err), 0);
  double want = 0;
  for (int t = 0; t < 7; t++)
    want -= lp[t];
  cr_expect_lt(fabs(nll - want), 1e-5);
  /* longer: windows [0,8) [4,12) [8,16) [12,20) [16,21) score 1..7, 8..11,
   * 12..15, 16..19, 20 once each; check the last window by hand */
  cr_assert_eq(model_score_tokens(m, tok, N, &nll, &scored, &err), 0, "%s", err.msg);
  cr_expect_eq(scored, (size_t)N - 1);
  double total = want;
  const int starts[4] = {4, 8, 12, 16}, first[4] = {8, 12, 16, 20};
  for (int w = 0; w < 4; w++) {
    int s = starts[w], e = s + 8 < N ? s + 8 : N, T = e - s;
    for (int t = 0; t < T; t++) {
      int i = s + t + 1;
      tgt[t] = i < e && i >= first[w] ? tok[i] : -1;
    }
    cr_assert_eq(model_forward_rows(m, tok + s, NULL, 1, T, &err), 0);
    cr_assert_eq(model_lm_logprobs(m, tgt, lp, NULL, &err), 0);
    for (int t = 0; t < T; t++)
      if (tgt[t] >= 0)
        total -= lp[t];
  }
  cr_expect_lt(fabs(nll - total), 1e-4, "%.6f vs %.6f", nll, total);
  model_free(m);
}
