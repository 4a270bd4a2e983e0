/* Fuzz target: the DONE stamp's checker (rundir_done_check, before a
 * cell is skipped or reported): the input is DONE in a run folder holding
 * one file, a.txt. Any input must be accepted (only when it lists a.txt
 * with its size and SHA-256) or refused with a message; nothing may crash
 * or leak.
 *
 * libFuzzer: ci/fuzz. Criterion: tests/harness/test_fuzz.c includes this
 * file with FUZZ_NAME defined and runs it over
 * tests/fixtures/harness/fuzz/done/. */
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

int FUZZ_NAME(const uint8_t *data, size_t size) {
  char dir[600], path[700];
  fz_path(dir, sizeof dir, "cell");
  mkdir(dir, 0700);
  snprintf(path, sizeof path, "%s/a.txt", dir);
  fz_write(path, "x\n", 2);
  snprintf(path, sizeof path, "%s/DONE", dir);
  fz_write(path, data, size);
  dfpo_err err;
  dfpo_err_clear(&err);
  int rc = rundir_done_check(dir, &err);
  if (rc && !err.msg[0])
    abort();
  remove(path);
  snprintf(path, sizeof path, "%s/a.txt", dir);
  remove(path);
  rmdir(dir);
  return 0;
}
