/* GSL statistics against values computed with mpmath 1.2.1 at 30 digits
 * (Debian's python3-mpmath): with I the regularized incomplete beta
 * (mpmath.betainc(..., regularized=True)), the two-sided t tail is
 * P(|T| > t) = I_{df/(df+t^2)}(df/2, 1/2), and the quantile t(p, df) is the
 * root (mpmath.findroot) of 1 - P(|T| > t)/2 = p. */
#include "metrics/metrics.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

/* x = 1..5: mean 3, sd sqrt(2.5) = 1.58113883008418966599944677222,
 * t(0.975, 4) = 2.77644510519779435780310484675,
 * CI = 3 -/+ t sd / sqrt(5) = [1.03675683852244230234439386519,
 *                              4.96324316147755769765560613481] */
Test(stats, summary_t_interval) {
  const double x[] = {1, 2, 3, 4, 5};
  met_summary s;
  dfpo_err err;
  cr_assert_eq(met_summarize(x, 5, 0.95, &s, &err), 0);
  cr_expect_eq(s.n, 5);
  cr_expect_float_eq(s.mean, 3.0, 1e-15);
  cr_expect_float_eq(s.sd, 1.58113883008418966599944677222, 1e-14);
  cr_expect_float_eq(s.ci_lo, 1.03675683852244230234439386519, 1e-12);
  cr_expect_float_eq(s.ci_hi, 4.96324316147755769765560613481, 1e-12);
}

/* x = 0.2, 0.4, 0.9, 1.3 at 90%: t(0.95, 3) = 2.3533634348018238776712239789,
 * sd 0.496655480858378003311653263663,
 * CI [0.115594575826988050443964702395, 1.28440542417301199951607140574] */
Test(stats, summary_other_level_and_edges) {
  const double x[] = {0.2, 0.4, 0.9, 1.3};
  met_summary s;
  dfpo_err err;
  cr_assert_eq(met_summarize(x, 4, 0.90, &s, &err), 0);
  cr_expect_float_eq(s.sd, 0.496655480858378003311653263663, 1e-14);
  cr_expect_float_eq(s.ci_lo, 0.115594575826988050443964702395, 1e-12);
  cr_expect_float_eq(s.ci_hi, 1.28440542417301199951607140574, 1e-12);
  cr_assert_eq(met_summarize(x, 1, 0.95, &s, &err), 0);
  cr_expect_float_eq(s.mean, 0.2, 1e-15);
  cr_expect(isnan(s.sd) && isnan(s.ci_lo) && isnan(s.ci_hi));
  cr_expect_eq(met_summarize(x, 0, 0.95, &s, &err), DFPO_EUSAGE);
  cr_expect_eq(met_summarize(x, 4, 1.0, &s, &err), DFPO_EUSAGE);
}

/* a = 1..5, b = 2, 4, ..., 12 (variances 2.5 and 14):
 * t = -2.3763541031440183419678555099, Welch df = 6.97225572979493365500603136309,
 * two-sided p = 0.049284338206730520765783520601 */
Test(stats, welch_t_test) {
  const double a[] = {1, 2, 3, 4, 5}, b[] = {2, 4, 6, 8, 10, 12};
  met_welch w;
  dfpo_err err;
  cr_assert_eq(met_welch_test(a, 5, b, 6, &w, &err), 0);
  cr_expect_float_eq(w.diff, -4.0, 1e-15);
  cr_expect_float_eq(w.t, -2.3763541031440183419678555099, 1e-13);
  cr_expect_float_eq(w.df, 6.97225572979493365500603136309, 1e-12);
  cr_expect_float_eq(w.p, 0.049284338206730520765783520601, 1e-12);
  cr_expect_eq(met_welch_test(a, 1, b, 6, &w, &err), DFPO_EUSAGE);
}

/* The shift test of `dfpo check`, a = 1..5 against b = 2, 4, ..., 12: pooled
 * sd sqrt((10 + 70) / 9) = 2.98142396999971959521223155831, se = sd sqrt(1/5 +
 * 1/6) = 1.8053418676968800801021963485, t = -2.21564683762798918921633188225
 * on 9 df, P(T <= t) = 0.0269729602547035868651146789513. With a = {3, 3},
 * b = {3.5} there is no spread: the floor 0.25 stands in, se = 0.25 sqrt(3/2)
 * = 0.306186217847897262274660509338, t = -1.6329931618554520654648560498 on
 * 1 df, P(T <= t) = 0.174900856140521420022684658086. Quantiles:
 * t(0.99, 4) = 3.74694738797919683660746564099, t(1 - 0.05/24, 21) =
 * 3.21392132846379658409838282751 (mpmath.findroot, as above). */
Test(stats, shift_test_pooled_with_a_floor) {
  const double a[] = {1, 2, 3, 4, 5}, b[] = {2, 4, 6, 8, 10, 12};
  met_shift s;
  dfpo_err err;
  cr_assert_eq(met_shift_test(a, 5, b, 6, 0.1, &s, &err), 0);
  cr_expect_float_eq(s.diff, -4.0, 1e-15);
  cr_expect_float_eq(s.sd, 2.98142396999971959521223155831, 1e-14);
  cr_expect_float_eq(s.se, 1.8053418676968800801021963485, 1e-14);
  cr_expect_float_eq(s.t, -2.21564683762798918921633188225, 1e-13);
  cr_expect_eq(s.df, 9.0);
  cr_expect_float_eq(s.p_below, 0.0269729602547035868651146789513, 1e-12);
  cr_expect_float_eq(s.p_above, 1 - 0.0269729602547035868651146789513, 1e-12);
  cr_expect_eq(s.floored, 0);
  const double c[] = {3, 3}, d[] = {3.5};
  cr_assert_eq(met_shift_test(c, 2, d, 1, 0.25, &s, &err), 0);
  cr_expect_eq(s.floored, 1);
  cr_expect_float_eq(s.se, 0.306186217847897262274660509338, 1e-14);
  cr_expect_float_eq(s.t, -1.6329931618554520654648560498, 1e-13);
  cr_expect_float_eq(s.p_below, 0.174900856140521420022684658086, 1e-12);
  cr_expect_eq(met_shift_test(c, 2, d, 1, 0, &s, &err), DFPO_EDATA, "no spread, no floor");
  cr_expect_eq(met_shift_test(c, 1, d, 1, 0.25, &s, &err), DFPO_EUSAGE, "2 values: no df");
  cr_expect_float_eq(met_t_quantile(0.99, 4), 3.74694738797919683660746564099, 1e-10);
  cr_expect_float_eq(met_t_quantile(1 - 0.05 / 24, 21), 3.21392132846379658409838282751, 1e-10);
  cr_expect(isnan(met_t_quantile(1.0, 4)) && isnan(met_t_quantile(0.5, 0)));
}

/* The bootstrap is re-derived here from its definition: resample b draws n
 * indices with dfpo_rng_below from the stream (seed, DFPO_STREAM_BOOTSTRAP);
 * the CI ends are GSL's quantiles of the sorted means: with 1000 resamples
 * the 2.5% point sits at index (1000 - 1) * 0.025 = 24.975, so it is
 * 0.025 * sorted[24] + 0.975 * sorted[25]; the 97.5% point at 974.025:
 * 0.975 * sorted[974] + 0.025 * sorted[975]. */
static int dcmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

Test(stats, bootstrap_is_the_seeded_percentile_bootstrap) {
  const double x[] = {0.1, 0.5, 0.2, 0.9, 0.4, 0.3, 0.8, 0.05};
  double lo, hi;
  dfpo_err err;
  cr_assert_eq(met_bootstrap_ci(x, 8, 1000, 0.95, 7, &lo, &hi, &err), 0);
  dfpo_rng r;
  dfpo_rng_init(&r, 7, DFPO_STREAM_BOOTSTRAP);
  double means[1000];
  for (int b = 0; b < 1000; b++) {
    double s = 0;
    for (int i = 0; i < 8; i++)
      s += x[dfpo_rng_below(&r, 8)];
    means[b] = s / 8;
  }
  qsort(means, 1000, sizeof means[0], dcmp);
  cr_expect_float_eq(lo, 0.025 * means[24] + 0.975 * means[25], 1e-15);
  cr_expect_float_eq(hi, 0.975 * means[974] + 0.025 * means[975], 1e-15);
  cr_expect(lo < 0.40625 && 0.40625 < hi, "the CI holds the mean 0.40625: [%g, %g]", lo, hi);
  /* same seed, same interval; another seed, another one */
  double lo2, hi2;
  cr_assert_eq(met_bootstrap_ci(x, 8, 1000, 0.95, 7, &lo2, &hi2, &err), 0);
  cr_expect(lo2 == lo && hi2 == hi);
  cr_assert_eq(met_bootstrap_ci(x, 8, 1000, 0.95, 8, &lo2, &hi2, &err), 0);
  cr_expect(lo2 != lo || hi2 != hi);
  /* constant data: a point */
  const double k[] = {2, 2, 2};
  cr_assert_eq(met_bootstrap_ci(k, 3, 100, 0.95, 1, &lo, &hi, &err), 0);
  cr_expect(lo == 2 && hi == 2);
}
