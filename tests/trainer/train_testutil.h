/* Helpers of the tests that hold a model's training to a PyTorch
 * reference's JSON (tests/trainer/test_rdec.c): flat arrays from JSON
 * arrays (of numbers, or of rows of numbers, concatenated), and a tensor's
 * error relative to its largest reference entry. The arrays are the
 * caller's (free). */
#ifndef DFPO_TESTS_TRAIN_TESTUTIL_H
#define DFPO_TESTS_TRAIN_TESTUTIL_H

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>

static inline int *json_ints(const cJSON *a, int *n) {
  int k = cJSON_GetArraySize(a), total = 0;
  for (int i = 0; i < k; i++) {
    const cJSON *row = cJSON_GetArrayItem(a, i);
    total += cJSON_IsArray(row) ? cJSON_GetArraySize(row) : 1;
  }
  int *v = malloc((size_t)(total ? total : 1) * sizeof *v), w = 0;
  for (int i = 0; i < k; i++) {
    const cJSON *row = cJSON_GetArrayItem(a, i), *x;
    if (cJSON_IsArray(row)) {
      cJSON_ArrayForEach(x, row) v[w++] = x->valueint;
    } else {
      v[w++] = row->valueint;
    }
  }
  *n = total;
  return v;
}
static inline float *json_floats(const cJSON *a, int *n) {
  int k = cJSON_GetArraySize(a), total = 0;
  for (int i = 0; i < k; i++) {
    const cJSON *row = cJSON_GetArrayItem(a, i);
    total += cJSON_IsArray(row) ? cJSON_GetArraySize(row) : 1;
  }
  float *v = malloc((size_t)(total ? total : 1) * sizeof *v);
  int w = 0;
  for (int i = 0; i < k; i++) {
    const cJSON *row = cJSON_GetArrayItem(a, i), *x;
    if (cJSON_IsArray(row)) {
      cJSON_ArrayForEach(x, row) v[w++] = (float)x->valuedouble;
    } else {
      v[w++] = (float)row->valuedouble;
    }
  }
  *n = total;
  return v;
}

/* The largest |got - want| of a tensor over its largest |want| (absolute
 * when the reference is all zero). */
static inline double tensor_err(const float *got, const float *want, size_t n) {
  double md = 0, mx = 0;
  for (size_t i = 0; i < n; i++) {
    md = fmax(md, fabs((double)got[i] - want[i]));
    mx = fmax(mx, fabs((double)want[i]));
  }
  return mx > 0 ? md / mx : md;
}

#endif
