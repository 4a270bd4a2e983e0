/* Fuzz target: the results JSON reader (res_read_json: a report's
 * results.json, the baseline `dfpo check` compares against). Any input
 * must be read or refused with a message; nothing may crash or leak.
 *
 * libFuzzer: ci/fuzz. Criterion: tests/harness/test_fuzz.c includes this
 * file with FUZZ_NAME defined and runs it over
 * tests/fixtures/harness/fuzz/results/. */
#include "harness/suite.h"
#include "tests/support/fuzz_file.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef FUZZ_NAME
#define FUZZ_NAME LLVMFuzzerTestOneInput
int FUZZ_NAME(const uint8_t *data, size_t size);
#endif

int FUZZ_NAME(const uint8_t *data, size_t size) {
  char path[600];
  fz_path(path, sizeof path, "results.json");
  fz_write(path, data, size);
  res_suite r;
  dfpo_err err;
  dfpo_err_clear(&err);
  int rc = res_read_json(&r, path, &err);
  if (rc && !err.msg[0])
    abort();
  if (!rc) {
    double vals[RES_MAX_SEEDS];
    for (int t = 0; t < r.n_tasks; t++)
      for (int v = 0; v < r.tasks[t].n_variants; v++)
        for (int m = 0; m < r.tasks[t].n_metrics; m++)
          if (res_values(&r.tasks[t].variants[v], m, vals) > RES_MAX_SEEDS)
            abort();
    char out[640];
    fz_path(out, sizeof out, "results.out.json");
    if (res_write_json(&r, out, &err))
      abort();
    remove(out);
    res_free(&r);
  }
  remove(path);
  return 0;
}
