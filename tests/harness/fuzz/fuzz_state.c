/* Fuzz target: the resumable checkpoint's state.json (trn_resume_load, as
 * `dfpo train` reads it when it resumes a run). The run folder holds only
 * state.json, so an accepted state must still fail on the missing policy
 * checkpoint; every input ends in a message, never a crash, a leak or
 * undefined behaviour (a number out of range must not be converted).
 *
 * libFuzzer: ci/fuzz. Criterion: tests/harness/test_fuzz.c includes this
 * file with FUZZ_NAME defined and runs it over
 * tests/fixtures/harness/fuzz/state/. */
#include "harness/train_internal.h"
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
  trn_run *r = calloc(1, sizeof *r);
  if (!r)
    abort();
  fz_path(r->dir, sizeof r->dir, "run");
  char path[4400];
  snprintf(path, sizeof path, "%s/checkpoint", r->dir);
  mkdir(r->dir, 0700);
  mkdir(path, 0700);
  trn_resume_path(r, path, sizeof path, "", -1);
  mkdir(path, 0700);
  trn_resume_path(r, path, sizeof path, "state.json", -1);
  fz_write(path, data, size);
  r->resume_prev = -1;
  trn_loop_state ls;
  memset(&ls, 0, sizeof ls);
  int found = 1;
  dfpo_err err;
  dfpo_err_clear(&err);
  int rc = trn_resume_load(r, &ls, &found, &err);
  if (!rc || found || !err.msg[0] || r->policy)
    abort();
  remove(path);
  trn_resume_path(r, path, sizeof path, "", -1);
  rmdir(path);
  snprintf(path, sizeof path, "%s/checkpoint", r->dir);
  rmdir(path);
  rmdir(r->dir);
  free(r);
  return 0;
}
