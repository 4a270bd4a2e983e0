/* Fuzz target: safe extraction (ds_extract) of an archive (tar, gzip'd
 * tar, zip, ...; libarchive tells them apart by content), once with every
 * regular file taken and once with a member list and small limits. Any
 * input must be extracted or refused with a message naming the archive;
 * nothing may be written outside the destination folder, and nothing may
 * crash or leak.
 *
 * libFuzzer: ci/fuzz. Criterion: tests/datasets/test_fuzz.c includes this
 * file with FUZZ_NAME defined and runs it over
 * tests/fixtures/datasets/fuzz/archive/. */
#include "datasets/datasets.h"
#include "datasets/ds_internal.h"
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
  char arc[600], dest[600], outside[700];
  fz_path(arc, sizeof arc, "fuzz.tar");
  fz_path(dest, sizeof dest, "out");
  fz_path(outside, sizeof outside, "evil");
  fz_write(arc, data, size);
  ds_member members[2] = {{"a/b.txt", NULL, 1}, {"c.txt", NULL, 0}};
  for (int pass = 0; pass < 2; pass++) {
    if (mkdir(dest, 0700))
      abort();
    dfpo_err err;
    dfpo_err_clear(&err);
    size_t files = 0;
    uint64_t bytes = 0;
    int rc = pass ? ds_extract(arc, dest, members, 2, 4, 1 << 16, &files, &bytes, &err)
                  : ds_extract(arc, dest, NULL, 0, 64, 1 << 20, &files, &bytes, &err);
    if (rc && !err.msg[0])
      abort();
    if (!rc && (files > 64 || bytes > (1u << 20)))
      abort();
    struct stat st;
    if (lstat(outside, &st) == 0) /* a "../evil" or a link escaped */
      abort();
    if (ds_rmtree(dest, &err))
      abort();
  }
  remove(arc);
  return 0;
}
