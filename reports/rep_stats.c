/* Confidence bands on a scale where they stay inside a metric's possible
 * values (reports.h, rep_band). */
#include "metrics/metrics.h"
#include "reports/reports.h"

#include <math.h>
#include <stdlib.h>

static double forward(rep_scale s, double v) {
  switch (s) {
  case REP_SCALE_LOGIT:
    v = fmin(fmax(v, 1e-6), 1 - 1e-6);
    return log(v / (1 - v));
  case REP_SCALE_LOG:
    return log(fmax(v, 1e-300));
  default:
    return v;
  }
}

static double back(rep_scale s, double z) {
  switch (s) {
  case REP_SCALE_LOGIT:
    return 1 / (1 + exp(-z));
  case REP_SCALE_LOG:
    return exp(z);
  default:
    return z;
  }
}

int rep_band(const double *v, size_t n, double level, rep_scale scale, double *mean, double *lo,
             double *hi, dfpo_err *err) {
  if (n == 0)
    return dfpo_err_set(err, DFPO_EDATA, "confidence band of no values");
  double *z = malloc(sizeof *z * n), sum = 0;
  if (!z)
    return dfpo_err_set(err, DFPO_ERUNTIME, "confidence band: out of memory");
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(v[i])) {
      free(z);
      return dfpo_err_set(err, DFPO_EDATA, "confidence band: value %zu is not finite", i);
    }
    sum += v[i];
    z[i] = forward(scale, v[i]);
  }
  met_summary s;
  int rc = met_summarize(z, n, level, &s, err);
  free(z);
  if (rc)
    return rc;
  *mean = sum / (double)n;
  if (n < 2) {
    *lo = *hi = v[0];
    return DFPO_OK;
  }
  *lo = back(scale, s.ci_lo);
  *hi = back(scale, s.ci_hi);
  return DFPO_OK;
}
