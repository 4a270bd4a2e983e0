#include "datasets/datasets.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A tiny language whose probabilities can be enumerated by hand: 3 states,
 * 3 words, state 1 and 2 both emit word "b" (an ambiguous path). */
static void tiny(ds_synth *L) {
  dfpo_err err;
  cr_assert_eq(ds_synth_alloc(L, 3, 3, &err), DFPO_OK);
  static const char *w[] = {"a", "b", "c"};
  for (int i = 0; i < 3; i++)
    L->words[i] = w[i];
  const double init[3] = {0.5, 0.3, 0.2};
  const double trans[9] = {0.1, 0.6, 0.3, 0.4, 0.4, 0.2, 0.5, 0.25, 0.25};
  /* emit[s][state][word] */
  const double emit[2][3][3] = {{{0.7, 0.2, 0.1}, {0.0, 0.9, 0.1}, {0.3, 0.3, 0.4}},
                                {{0.2, 0.2, 0.6}, {0.5, 0.5, 0.0}, {0.1, 0.8, 0.1}}};
  memcpy(L->init, init, sizeof init);
  memcpy(L->trans, trans, sizeof trans);
  memcpy(L->emit, emit, sizeof emit);
  L->prior_pos = 0.4;
  L->noise = 0; /* the hand computations below use the bare tables */
}

/* p(ids | s) by summing over every hidden path: the definition, no recursion. */
static double brute(const ds_synth *L, int s, const int *ids, int n) {
  int ns = L->n_states, paths = 1;
  for (int t = 0; t < n; t++)
    paths *= ns;
  double total = 0;
  for (int code = 0; code < paths; code++) {
    int c = code, prev = -1;
    double p = 1;
    for (int t = 0; t < n; t++) {
      int st = c % ns;
      c /= ns;
      p *= (t == 0 ? L->init[st] : L->trans[prev * ns + st]);
      /* a word is emitted from the state's table or, with probability
       * noise, uniformly */
      double e = ids[t] < 0
                     ? exp(L->oov_logp)
                     : (1 - L->noise) * L->emit[((size_t)s * ns + st) * L->n_words + ids[t]] +
                           L->noise / L->n_words;
      p *= e;
      prev = st;
    }
    total += p;
  }
  return total;
}

Test(synthetic, forward_matches_brute_force_enumeration) {
  ds_synth L;
  tiny(&L);
  /* every sequence of length 1..5 over {a, b, c, oov} */
  for (int n = 1; n <= 5; n++) {
    int count = 1;
    for (int t = 0; t < n; t++)
      count *= 4;
    double sum[2] = {0, 0};
    for (int code = 0; code < count; code++) {
      int ids[5], c = code, has_oov = 0;
      for (int t = 0; t < n; t++) {
        ids[t] = c % 4 == 3 ? -1 : c % 4;
        has_oov |= ids[t] < 0;
        c /= 4;
      }
      double lp[2];
      ds_synth_logprob(&L, ids, n, lp);
      for (int s = 0; s < 2; s++) {
        double b = brute(&L, s, ids, n);
        if (b == 0) {
          cr_expect(lp[s] == -INFINITY, "n %d code %d s %d", n, code, s);
          continue;
        }
        cr_expect(fabs(lp[s] - log(b)) < 1e-12, "n %d code %d s %d: %.15g vs %.15g", n, code, s,
                  lp[s], log(b));
        if (!has_oov)
          sum[s] += b;
      }
      double pp, lm = ds_synth_log_marginal(&L, ids, n, &pp);
      double b0 = brute(&L, 0, ids, n), b1 = brute(&L, 1, ids, n);
      double m = 0.6 * b0 + 0.4 * b1;
      if (m > 0) {
        cr_expect(fabs(lm - log(m)) < 1e-12);
        cr_expect(fabs(pp - 0.4 * b1 / m) < 1e-12);
      }
    }
    /* prefix probabilities of all in-vocabulary sequences of a length sum to 1 */
    cr_expect(fabs(sum[0] - 1) < 1e-12 && fabs(sum[1] - 1) < 1e-12, "n %d: %.15g %.15g", n, sum[0],
              sum[1]);
  }
  ds_synth_free(&L);
}

Test(synthetic, noise_makes_every_sequence_possible) {
  /* With noise, state 1 can emit "a" in the negative language (bare 0), and
   * the brute force over paths uses the same mixture: the forward algorithm
   * must still agree, and all prefix probabilities still sum to 1. */
  ds_synth L;
  tiny(&L);
  L.noise = 0.01;
  for (int n = 1; n <= 4; n++) {
    int count = 1;
    for (int t = 0; t < n; t++)
      count *= 3;
    double sum = 0;
    for (int code = 0; code < count; code++) {
      int ids[4], c = code;
      for (int t = 0; t < n; t++, c /= 3)
        ids[t] = c % 3;
      double lp[2];
      ds_synth_logprob(&L, ids, n, lp);
      double b = brute(&L, 0, ids, n);
      cr_assert(b > 0);
      cr_expect(fabs(lp[0] - log(b)) < 1e-12);
      sum += b;
    }
    cr_expect(fabs(sum - 1) < 1e-12, "n %d: %.15g", n, sum);
  }
  ds_synth_free(&L);
}

Test(synthetic, hand_computed_two_word_case) {
  /* "a b" under s = 0 (negative):
   * paths: a from state 0 (0.5 * 0.7 = 0.35) or state 2 (0.2 * 0.3 = 0.06);
   * then b: from 0 via 0->0 .1*.2, 0->1 .6*.9, 0->2 .3*.3 = 0.02+0.54+0.09 = 0.65
   *         from 2 via 2->0 .5*.2, 2->1 .25*.9, 2->2 .25*.3 = 0.1+0.225+0.075 = 0.4
   * p = 0.35 * 0.65 + 0.06 * 0.4 = 0.2275 + 0.024 = 0.2515 */
  ds_synth L;
  tiny(&L);
  int ids[2] = {0, 1};
  double lp[2];
  ds_synth_logprob(&L, ids, 2, lp);
  cr_expect(fabs(exp(lp[0]) - 0.2515) < 1e-15, "%.17g", exp(lp[0]));
  ds_synth_free(&L);
}

Test(synthetic, reviews_language_is_a_proper_model) {
  ds_synth L;
  dfpo_err err;
  cr_assert_eq(ds_synth_init_reviews(&L, 7, 1.5, &err), DFPO_OK, "%s", err.msg);
  /* 202 lexicon entries, 6 words in two classes (this, fun, love, like, well, waste) */
  cr_expect_eq(L.n_words, 196);
  for (int i = 1; i < L.n_words; i++)
    cr_assert_lt(strcmp(L.words[i - 1], L.words[i]), 0, "sorted and unique");
  double total = 0;
  for (int j = 0; j < L.n_states; j++) {
    double row = 0;
    for (int k = 0; k < L.n_states; k++)
      row += L.trans[j * L.n_states + k];
    cr_expect(fabs(row - 1) < 1e-12, "transition row %d sums to %g", j, row);
    for (int s = 0; s < 2; s++) {
      double e = 0;
      for (int w = 0; w < L.n_words; w++)
        e += L.emit[((size_t)s * L.n_states + j) * L.n_words + w];
      cr_expect(fabs(e - 1) < 1e-12, "emission row s %d state %d sums to %g", s, j, e);
    }
    total += L.init[j];
  }
  cr_expect(fabs(total - 1) < 1e-12);
  cr_expect_eq(ds_synth_word_id(&L, "masterpiece", 11), ds_synth_word_id(&L, "masterpiece!", 11));
  cr_expect_eq(ds_synth_word_id(&L, "zebra", 5), -1);
  ds_synth_free(&L);
}

Test(synthetic, posterior_recovers_the_sentiment_of_samples) {
  ds_synth L;
  dfpo_err err;
  cr_assert_eq(ds_synth_init_reviews(&L, 1, 1.5, &err), DFPO_OK);
  dfpo_rng rng;
  dfpo_rng_init(&rng, 11, DFPO_STREAM_DATA);
  int correct = 0, ids[512];
  double mean_pos = 0, mean_neg = 0;
  for (int i = 0; i < 400; i++) {
    int s = i % 2;
    int n = ds_synth_sample(&L, &rng, s, 40, ids, 512);
    cr_assert(n >= 40 && n < 512);
    cr_assert(L.end_state[0] == 0);
    double pp;
    double lm = ds_synth_log_marginal(&L, ids, n, &pp);
    cr_assert(isfinite(lm));
    correct += (pp > 0.5) == s;
    if (s)
      mean_pos += pp / 200;
    else
      mean_neg += pp / 200;
  }
  /* With lambda 1.5 and 40+ words the Bayes classifier is nearly always right
   * (measured: 400/400 at this seed); require a wide margin, not the value. */
  cr_expect_geq(correct, 380, "%d of 400", correct);
  cr_expect_gt(mean_pos, 0.9);
  cr_expect_lt(mean_neg, 0.1);
  ds_synth_free(&L);
}

Test(synthetic, sampling_matches_the_model) {
  /* First-word frequencies of 100k tiny-language samples against the model's
   * marginal p(w1 | s=1) = sum_j init_j emit_1(j, w): a = .5*.2+.3*.5+.2*.1 = .27,
   * b = .5*.2+.3*.5+.2*.8 = .41, c = .5*.6+0+.2*.1 = .32. 5-sigma bounds. */
  ds_synth L;
  tiny(&L);
  L.end_state[0] = L.end_state[1] = L.end_state[2] = 1;
  dfpo_rng rng;
  dfpo_rng_init(&rng, 3, DFPO_STREAM_SAMPLING);
  int counts[3] = {0}, ids[4];
  enum { N = 100000 };
  for (int i = 0; i < N; i++) {
    cr_assert_eq(ds_synth_sample(&L, &rng, 1, 1, ids, 4), 1);
    counts[ids[0]]++;
  }
  const double want[3] = {0.27, 0.41, 0.32};
  for (int w = 0; w < 3; w++) {
    double f = (double)counts[w] / N, sd = sqrt(want[w] * (1 - want[w]) / N);
    cr_expect(fabs(f - want[w]) < 5 * sd, "word %d: %g vs %g", w, f, want[w]);
  }
  ds_synth_free(&L);
}

Test(synthetic, score_text_splits_prompt_and_continuation) {
  ds_synth L;
  dfpo_err err;
  cr_assert_eq(ds_synth_init_reviews(&L, 1, 1.5, &err), DFPO_OK);
  ds_synth_score a, b;
  cr_assert_eq(ds_synth_score_text(&L, "the movie was", " great .", &a, &err), DFPO_OK);
  cr_expect_eq(a.n_words, 2);
  cr_expect_eq(a.n_oov, 0);
  cr_expect_gt(a.p_positive, 0.5);
  cr_expect(a.logp_cont < 0 && isfinite(a.logp_cont));
  /* log p(cont | prompt) = log p(all) - log p(prompt) */
  int ids[8];
  int n = ds_synth_words(&L, "the movie was great .", ids, 8);
  double lall = ds_synth_log_marginal(&L, ids, n, NULL);
  n = ds_synth_words(&L, "the movie was", ids, 8);
  double lpr = ds_synth_log_marginal(&L, ids, n, NULL);
  cr_expect(fabs(a.logp_cont - (lall - lpr)) < 1e-12);
  cr_expect(fabs(a.nll_word - (lpr - lall) / 2) < 1e-12);
  /* degenerate text: glued and unknown words are out of vocabulary */
  cr_assert_eq(ds_synth_score_text(&L, "the movie was", "greatgreat zzz", &b, &err), DFPO_OK);
  cr_expect_eq(b.n_oov, 2);
  cr_expect_eq(b.n_words, 1, "the glued word replaced 'was'");
  cr_expect_gt(b.nll_word, a.nll_word);
  ds_synth_free(&L);
}
