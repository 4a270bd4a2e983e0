/* Fuzz target: the report's reading of a suite folder (res_collect):
 * one finished cell whose eval.json is the input's first part and whose
 * train.jsonl is the part after the first NUL byte, with a DONE stamp
 * that matches them (written here as rundir_done_write writes it, without
 * its fsyncs, which would make each run take milliseconds). Any input must be read or refused with
 * a message; nothing may crash or leak.
 *
 * libFuzzer: ci/fuzz. Criterion: tests/harness/test_fuzz.c includes this
 * file with FUZZ_NAME defined and runs it over
 * tests/fixtures/harness/fuzz/eval/. */
#include "datasets/datasets.h"
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
  size_t elen, llen;
  const uint8_t *log;
  fz_split(data, size, &elen, &log, &llen);
  char dir[600], cell[700], path[800];
  fz_path(dir, sizeof dir, "suite");
  snprintf(cell, sizeof cell, "%s/imdb", dir);
  mkdir(dir, 0700);
  mkdir(cell, 0700);
  snprintf(cell, sizeof cell, "%s/imdb/ppo", dir);
  mkdir(cell, 0700);
  snprintf(cell, sizeof cell, "%s/imdb/ppo/seed-1", dir);
  mkdir(cell, 0700);
  snprintf(path, sizeof path, "%s/eval.json", cell);
  fz_write(path, data, elen);
  snprintf(path, sizeof path, "%s/train.jsonl", cell);
  fz_write(path, log, llen);
  dfpo_err err;
  dfpo_err_clear(&err);
  char sha_e[65], sha_l[65], done[1024];
  snprintf(path, sizeof path, "%s/eval.json", cell);
  if (ds_sha256_file(path, sha_e, &err))
    abort();
  snprintf(path, sizeof path, "%s/train.jsonl", cell);
  if (ds_sha256_file(path, sha_l, &err))
    abort();
  int n = snprintf(done, sizeof done,
                   "{\"done_version\": 1, \"files\": [{\"path\": \"eval.json\", \"size\": %zu, "
                   "\"sha256\": \"%s\"}, {\"path\": \"train.jsonl\", \"size\": %zu, "
                   "\"sha256\": \"%s\"}]}\n",
                   elen, sha_e, llen, sha_l);
  snprintf(path, sizeof path, "%s/DONE", cell);
  fz_write(path, done, (size_t)n);
  res_suite r;
  int rc = res_collect(&r, dir, 1, &err);
  if (rc && !err.msg[0])
    abort();
  if (!rc)
    res_free(&r);
  if (suite_rmtree(dir, &err))
    abort();
  return 0;
}
