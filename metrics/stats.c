/* Statistics over per-seed or per-sample values, with GSL: summaries with a
 * t interval, Welch's t-test, the pooled shift test of `dfpo check`, t
 * quantiles and a seeded percentile bootstrap. */
#include "metrics/metrics.h"

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_sort.h>
#include <gsl/gsl_statistics_double.h>
#include <math.h>
#include <stdlib.h>

static int check_level(double level, dfpo_err *err) {
  if (!(level > 0 && level < 1))
    return dfpo_err_set(err, DFPO_EUSAGE, "confidence level %g is not in (0, 1)", level);
  return DFPO_OK;
}

int met_summarize(const double *x, size_t n, double level, met_summary *s, dfpo_err *err) {
  if (n == 0)
    return dfpo_err_set(err, DFPO_EUSAGE, "summary of no values");
  int rc = check_level(level, err);
  if (rc)
    return rc;
  s->n = n;
  s->mean = gsl_stats_mean(x, 1, n);
  s->sd = s->ci_lo = s->ci_hi = NAN;
  if (n >= 2) {
    s->sd = gsl_stats_sd_m(x, 1, n, s->mean);
    double t = gsl_cdf_tdist_Pinv(1 - (1 - level) / 2, (double)(n - 1));
    double half = t * s->sd / sqrt((double)n);
    s->ci_lo = s->mean - half;
    s->ci_hi = s->mean + half;
  }
  return DFPO_OK;
}

int met_welch_test(const double *a, size_t na, const double *b, size_t nb, met_welch *w,
                   dfpo_err *err) {
  if (na < 2 || nb < 2)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "Welch's t-test needs at least 2 values per group (got %zu and %zu)", na,
                        nb);
  double ma = gsl_stats_mean(a, 1, na), mb = gsl_stats_mean(b, 1, nb);
  double va = gsl_stats_variance_m(a, 1, na, ma) / (double)na;
  double vb = gsl_stats_variance_m(b, 1, nb, mb) / (double)nb;
  w->diff = ma - mb;
  double se2 = va + vb;
  if (se2 == 0) {
    /* both groups constant: no spread to test against */
    w->t = w->diff == 0 ? NAN : copysign(INFINITY, w->diff);
    w->df = NAN;
    w->p = w->diff == 0 ? NAN : 0.0;
    return DFPO_OK;
  }
  w->t = w->diff / sqrt(se2);
  w->df = se2 * se2 / (va * va / (double)(na - 1) + vb * vb / (double)(nb - 1));
  w->p = 2 * gsl_cdf_tdist_Q(fabs(w->t), w->df);
  return DFPO_OK;
}

int met_shift_test(const double *a, size_t na, const double *b, size_t nb, double sd_floor,
                   met_shift *s, dfpo_err *err) {
  if (na < 1 || nb < 1 || na + nb < 3)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "shift test needs a value in each group and 3 in all (got %zu and %zu)", na,
                        nb);
  double ma = gsl_stats_mean(a, 1, na), mb = gsl_stats_mean(b, 1, nb);
  double ssa = na > 1 ? gsl_stats_variance_m(a, 1, na, ma) * (double)(na - 1) : 0;
  double ssb = nb > 1 ? gsl_stats_variance_m(b, 1, nb, mb) * (double)(nb - 1) : 0;
  s->diff = ma - mb;
  s->df = (double)(na + nb - 2);
  double pooled = sqrt((ssa + ssb) / s->df);
  s->floored = !(pooled >= sd_floor);
  s->sd = s->floored ? sd_floor : pooled;
  if (!(s->sd > 0) || !isfinite(s->sd))
    return dfpo_err_set(err, DFPO_EDATA,
                        "shift test: the groups have no spread and no floor is given");
  s->se = s->sd * sqrt(1 / (double)na + 1 / (double)nb);
  s->t = s->diff / s->se;
  s->p_below = gsl_cdf_tdist_P(s->t, s->df);
  s->p_above = gsl_cdf_tdist_Q(s->t, s->df);
  return DFPO_OK;
}

double met_t_quantile(double p, double df) {
  if (!(p > 0 && p < 1) || !(df > 0))
    return NAN;
  return gsl_cdf_tdist_Pinv(p, df);
}

int met_bootstrap_ci(const double *x, size_t n, size_t resamples, double level, uint64_t seed,
                     double *lo, double *hi, dfpo_err *err) {
  if (n == 0 || resamples == 0)
    return dfpo_err_set(err, DFPO_EUSAGE, "bootstrap needs values and at least one resample");
  if (n > UINT32_MAX)
    return dfpo_err_set(err, DFPO_EUSAGE, "bootstrap: too many values (%zu)", n);
  int rc = check_level(level, err);
  if (rc)
    return rc;
  double *means = malloc(resamples * sizeof *means);
  if (!means)
    return dfpo_err_set(err, DFPO_ERUNTIME, "bootstrap: out of memory");
  dfpo_rng rng;
  dfpo_rng_init(&rng, seed, DFPO_STREAM_BOOTSTRAP);
  for (size_t b = 0; b < resamples; b++) {
    double sum = 0;
    for (size_t i = 0; i < n; i++)
      sum += x[dfpo_rng_below(&rng, (uint32_t)n)];
    means[b] = sum / (double)n;
  }
  gsl_sort(means, 1, resamples);
  *lo = gsl_stats_quantile_from_sorted_data(means, 1, resamples, (1 - level) / 2);
  *hi = gsl_stats_quantile_from_sorted_data(means, 1, resamples, 1 - (1 - level) / 2);
  free(means);
  return DFPO_OK;
}
