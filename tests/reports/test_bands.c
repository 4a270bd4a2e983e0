/* rep_band: confidence bands on the scale where a metric's values live.
 * Every expected value is a hand calculation written out here, with the t
 * quantile for 2 degrees of freedom in closed form: t(0.975, 2) =
 * a * sqrt(2 / (1 - a^2)) with a = 0.95, = 4.302652729749463. */
#include "reports/reports.h"

#include <criterion/criterion.h>
#include <math.h>

#define T2 4.302652729749463

static void expect_close(double got, double want, const char *what) {
  cr_expect(fabs(got - want) <= 1e-9 * fmax(1, fabs(want)), "%s: got %.17g, want %.17g", what, got,
            want);
}

/* {0.2, 0.5, 0.8}: logits {-ln 4, 0, ln 4}, mean 0, sd ln 4, so the band is
 * logistic(+-T2 ln4 / sqrt 3) = logistic(+-3.44375...) = [0.030956, 0.969044];
 * on the linear scale it would be 0.5 +- T2 * 0.3 / sqrt 3 = [-0.245, 1.245],
 * past both ends of [0, 1]. */
Test(bands, logit_stays_inside_zero_one) {
  const double v[] = {0.2, 0.5, 0.8};
  double m, lo, hi;
  dfpo_err err;
  cr_assert_eq(rep_band(v, 3, 0.95, REP_SCALE_LOGIT, &m, &lo, &hi, &err), DFPO_OK, "%s", err.msg);
  double h = T2 * log(4) / sqrt(3);
  expect_close(m, 0.5, "mean");
  expect_close(lo, 1 / (1 + exp(h)), "lo");
  expect_close(hi, 1 / (1 + exp(-h)), "hi");
  expect_close(lo, 0.030955912258080906, "lo (number)");
  expect_close(hi, 0.9690440877419191, "hi (number)");
  cr_expect(lo > 0 && hi < 1);
  /* the same values on the linear scale: the band the issue saw */
  cr_assert_eq(rep_band(v, 3, 0.95, REP_SCALE_LINEAR, &m, &lo, &hi, &err), DFPO_OK);
  expect_close(lo, 0.5 - T2 * 0.3 / sqrt(3), "linear lo");
  cr_expect(lo < 0 && hi > 1, "linear: [%g, %g]", lo, hi);
}

/* {10, 100, 1000}: logs ln10 * {1, 2, 3}, mean 2 ln10 (geometric mean 100),
 * sd ln10: the band is 100 * exp(+-T2 ln10 / sqrt 3) = [0.32799, 30488.6],
 * positive; the mean shown is the arithmetic 370. */
Test(bands, log_stays_positive) {
  const double v[] = {10, 100, 1000};
  double m, lo, hi;
  dfpo_err err;
  cr_assert_eq(rep_band(v, 3, 0.95, REP_SCALE_LOG, &m, &lo, &hi, &err), DFPO_OK, "%s", err.msg);
  double h = T2 * log(10) / sqrt(3);
  expect_close(m, 370, "mean");
  expect_close(lo, 100 * exp(-h), "lo");
  expect_close(hi, 100 * exp(h), "hi");
  expect_close(lo, 0.32799127287756585, "lo (number)");
  cr_expect(lo > 0);
}

/* {1, 2, 3} on the linear scale: 2 +- T2 / sqrt 3 = [-0.48414, 4.48414]. */
Test(bands, linear_is_the_t_interval) {
  const double v[] = {1, 2, 3};
  double m, lo, hi;
  dfpo_err err;
  cr_assert_eq(rep_band(v, 3, 0.95, REP_SCALE_LINEAR, &m, &lo, &hi, &err), DFPO_OK);
  expect_close(m, 2, "mean");
  expect_close(lo, -0.4841377117503307, "lo");
  expect_close(hi, 4.48413771175033, "hi");
}

/* 0 and 1 are clamped to 1e-6 and 1 - 1e-6: logits -+z, z = ln((1 - 1e-6) /
 * 1e-6) = 13.8155, so {0, 1} has mean 0, sd z sqrt 2, standard error z, and
 * with t(0.975, 1) = tan(0.475 pi) = 12.7062 the band is logistic(-+12.7062
 * z) = [5.79e-77, 1 - 5.79e-77], which rounds to 1 in a double: inside
 * [0, 1]. One value: the band is the value. */
Test(bands, boundaries_and_single_values) {
  const double v[] = {0, 1};
  double m, lo, hi;
  dfpo_err err;
  cr_assert_eq(rep_band(v, 2, 0.95, REP_SCALE_LOGIT, &m, &lo, &hi, &err), DFPO_OK);
  expect_close(m, 0.5, "mean");
  double z = log((1 - 1e-6) / 1e-6), half = tan(0.475 * 3.14159265358979323846) * z;
  expect_close(lo, 1 / (1 + exp(half)), "lo");
  cr_expect(lo > 0 && lo < 1e-76 && hi <= 1 && hi > 0.5, "[%g, %g]", lo, hi);
  const double one[] = {0.7};
  cr_assert_eq(rep_band(one, 1, 0.95, REP_SCALE_LOGIT, &m, &lo, &hi, &err), DFPO_OK);
  cr_expect(m == 0.7 && lo == 0.7 && hi == 0.7);
  cr_expect_eq(rep_band(one, 0, 0.95, REP_SCALE_LOG, &m, &lo, &hi, &err), DFPO_EDATA);
  const double bad[] = {1, NAN};
  cr_expect_eq(rep_band(bad, 2, 0.95, REP_SCALE_LOG, &m, &lo, &hi, &err), DFPO_EDATA);
}
