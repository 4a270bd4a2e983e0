/* Fuzz target: the suite loader (suite_load: a suite config with its tasks,
 * algorithms, seeds and variant definitions), from a file. Any input must
 * load or be refused with a message; nothing may crash or leak.
 *
 * libFuzzer: ci/fuzz. Criterion: tests/harness/test_fuzz.c includes this
 * file with FUZZ_NAME defined and runs it over
 * tests/fixtures/harness/fuzz/suite/. */
#include "harness/suite.h"
#include "tests/support/fuzz_file.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef FUZZ_NAME
#define FUZZ_NAME LLVMFuzzerTestOneInput
int FUZZ_NAME(const uint8_t *data, size_t size);
#endif

int FUZZ_NAME(const uint8_t *data, size_t size) {
  char path[600];
  fz_path(path, sizeof path, "suite.json");
  fz_write(path, data, size);
  suite s;
  dfpo_err err;
  dfpo_err_clear(&err);
  int rc = suite_load(&s, path, NULL, 0, &err);
  if (rc && !err.msg[0])
    abort();
  if (!rc) {
    const char *cells[64];
    for (int t = 0; t < s.n_tasks; t++)
      for (int v = 0; v < s.n_variants; v++)
        if (suite_cell_sets(&s, t, v, cells, 64) < 0)
          abort();
    suite_free(&s);
  }
  remove(path);
  return 0;
}
