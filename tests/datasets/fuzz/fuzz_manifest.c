/* Fuzz target: the manifest parser. Any input must be either accepted (and
 * then every entry is complete) or refused with a message naming the
 * source; never a crash, a leak or undefined behaviour.
 *
 * libFuzzer: ci/fuzz builds it with clang -fsanitize=fuzzer,address.
 * Criterion: tests/datasets/test_fuzz.c includes this file with FUZZ_NAME
 * defined and runs it over tests/fixtures/datasets/fuzz/manifest/. */
#include "datasets/datasets.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef FUZZ_NAME
#define FUZZ_NAME LLVMFuzzerTestOneInput
int FUZZ_NAME(const uint8_t *data, size_t size);
#endif

int FUZZ_NAME(const uint8_t *data, size_t size) {
  ds_manifest m;
  dfpo_err err;
  dfpo_err_clear(&err);
  int rc = ds_manifest_parse(&m, (const char *)data, size, "fuzz.json", &err);
  if (rc == DFPO_OK) {
    for (size_t i = 0; i < m.n; i++) {
      const ds_entry *e = &m.entries[i];
      if (!e->name || !e->version || !e->sha256 || !e->n_urls || !e->n_members)
        abort();
      if (ds_manifest_find(&m, e->name) != e)
        abort();
    }
  } else if (!err.msg[0] || strncmp(err.msg, "fuzz.json", 9) || m.n) {
    abort();
  }
  ds_manifest_free(&m);
  return 0;
}
