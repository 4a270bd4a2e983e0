/* Fuzz target: the checked reader of a run's train.jsonl
 * (rundir_log_read), over the whole file and over a prefix as a resumable
 * checkpoint records it. Every line handed on must be an object whose index
 * counts up from 0; a refusal must name the file; nothing may crash or
 * leak.
 *
 * libFuzzer: ci/fuzz. Criterion: tests/harness/test_fuzz.c includes this
 * file with FUZZ_NAME defined and runs it over
 * tests/fixtures/harness/fuzz/trainlog/. */
#include "harness/rundir.h"
#include "tests/support/fuzz_file.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef FUZZ_NAME
#define FUZZ_NAME LLVMFuzzerTestOneInput
int FUZZ_NAME(const uint8_t *data, size_t size);
#endif

static int fz_log_line(void *ctx, int64_t index, const cJSON *line, dfpo_err *err) {
  (void)err;
  int64_t *next = ctx;
  if (index != *next || !cJSON_IsObject(line))
    abort();
  (*next)++;
  return DFPO_OK;
}

int FUZZ_NAME(const uint8_t *data, size_t size) {
  char path[600];
  fz_path(path, sizeof path, "train.jsonl");
  fz_write(path, data, size);
  const int64_t limits[3] = {-1, (int64_t)size / 2, (int64_t)size + 1};
  for (int k = 0; k < 3; k++) {
    int64_t next = 0, lines = -1;
    dfpo_err err;
    dfpo_err_clear(&err);
    int rc = rundir_log_read(path, limits[k], fz_log_line, &next, &lines, &err);
    if (rc && !strstr(err.msg, "train.jsonl"))
      abort();
    if (!rc && lines != next)
      abort();
  }
  remove(path);
  return 0;
}
