/* Fuzz target: the pytorch_model.bin reader (pt_open: torch.save's zip
 * with its pickled state dict, and the legacy pickle), then st_read_f32 on
 * every small tensor. Any input must open or be refused with a message
 * naming the file; nothing may crash or leak.
 *
 * libFuzzer: ci/fuzz. Criterion: tests/trainer/test_fuzz.c includes this
 * file with FUZZ_NAME defined and runs it over
 * tests/fixtures/trainer/fuzz/ptbin/. */
#include "tests/support/fuzz_file.h"
#include "tests/trainer/fuzz/fuzz_st.h"

#include <stdint.h>

#ifndef FUZZ_NAME
#define FUZZ_NAME LLVMFuzzerTestOneInput
int FUZZ_NAME(const uint8_t *data, size_t size);
#endif

int FUZZ_NAME(const uint8_t *data, size_t size) {
  fz_st_run(pt_open, "pytorch_model.bin", data, size);
  return 0;
}
