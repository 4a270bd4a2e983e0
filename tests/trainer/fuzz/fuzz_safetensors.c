/* Fuzz target: the safetensors reader (st_open: the JSON header, each
 * entry checked against the file) and st_read_f32 on every small entry.
 * A zip or pickle goes on to pt_open as st_open sends it. Any input must
 * open or be refused with a message; nothing may crash or leak.
 *
 * libFuzzer: ci/fuzz. Criterion: tests/trainer/test_fuzz.c includes this
 * file with FUZZ_NAME defined and runs it over
 * tests/fixtures/trainer/fuzz/safetensors/. */
#include "tests/support/fuzz_file.h"
#include "trainer/st_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef FUZZ_NAME
#define FUZZ_NAME LLVMFuzzerTestOneInput
int FUZZ_NAME(const uint8_t *data, size_t size);
#endif

int FUZZ_NAME(const uint8_t *data, size_t size) {
  char path[600];
  fz_path(path, sizeof path, "fuzz.safetensors");
  fz_write(path, data, size);
  st_file f;
  dfpo_err err;
  dfpo_err_clear(&err);
  int rc = st_open(&f, path, &err);
  if (rc && !strstr(err.msg, "fuzz.safetensors"))
    abort();
  if (!rc) {
    for (int i = 0; i < f.n; i++) {
      const st_entry *e = &f.ents[i];
      if (st_find(&f, e->name) == NULL || e->begin > e->end)
        abort();
      uint64_t n = st_numel(e);
      if (n > (1u << 16))
        continue;
      float *dst = malloc((size_t)n * sizeof(float) + 1);
      if (!dst)
        abort();
      dfpo_err_clear(&err);
      if (st_read_f32(&f, e, e->name, dst, &err) && !err.msg[0])
        abort();
      free(dst);
    }
    st_close(&f);
  }
  remove(path);
  return 0;
}
