/* Fuzz target: model_load on one file: a native checkpoint (magic
 * DFPOGPT2), a model.safetensors or a pytorch_model.bin, told apart by
 * content. Any input must load a model or be refused with a message naming
 * the file; nothing may crash, leak, or allocate past what the file can
 * hold.
 *
 * libFuzzer: ci/fuzz. Criterion: tests/trainer/test_fuzz.c includes this
 * file with FUZZ_NAME defined and runs it over
 * tests/fixtures/trainer/fuzz/ckpt/. */
#include "tests/support/fuzz_file.h"
#include "trainer/model.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef FUZZ_NAME
#define FUZZ_NAME LLVMFuzzerTestOneInput
int FUZZ_NAME(const uint8_t *data, size_t size);
#endif

int FUZZ_NAME(const uint8_t *data, size_t size) {
  char path[600];
  fz_path(path, sizeof path, "model.safetensors");
  fz_write(path, data, size);
  model_t *m = NULL;
  dfpo_err err;
  dfpo_err_clear(&err);
  int rc = model_load(&m, path, &err);
  if (rc && (!strstr(err.msg, "model.safetensors") || m))
    abort();
  model_free(m);
  remove(path);
  return 0;
}
