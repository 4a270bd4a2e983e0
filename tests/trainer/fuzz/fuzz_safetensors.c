/* Fuzz target: the safetensors reader (st_open: the JSON header, each
 * entry checked against the file) and st_read_f32 on every small entry.
 * A zip or pickle goes on to pt_open as st_open sends it. Any input must
 * open or be refused with a message; nothing may crash or leak.
 *
 * libFuzzer: ci/fuzz. Criterion: tests/trainer/test_fuzz.c includes this
 * file with FUZZ_NAME defined and runs it over
 * tests/fixtures/trainer/fuzz/safetensors/. */
#include "tests/support/fuzz_file.h"
#include "tests/trainer/fuzz/fuzz_st.h"

#include <stdint.h>

#ifndef FUZZ_NAME
#define FUZZ_NAME LLVMFuzzerTestOneInput
int FUZZ_NAME(const uint8_t *data, size_t size);
#endif

int FUZZ_NAME(const uint8_t *data, size_t size) {
  fz_st_run(st_open, "fuzz.safetensors", data, size);
  return 0;
}
