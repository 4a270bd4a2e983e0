/* Runs the fuzz targets (tests/datasets/fuzz/) in CI without libFuzzer: over
 * the seed corpus in tests/fixtures/datasets/fuzz/ and over mutants of it
 * made by a seeded generator (byte flips, insertions, deletions,
 * truncations, splices). A target aborts on any broken contract; under the
 * sanitizer build this also catches memory errors and leaks. ci/fuzz runs
 * the same targets under libFuzzer for longer. */
#include "common/common.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_NAME fuzz_manifest_one
int fuzz_manifest_one(const uint8_t *data, size_t size);
#include "tests/datasets/fuzz/fuzz_manifest.c"
#undef FUZZ_NAME
#define FUZZ_NAME fuzz_jsonl_one
int fuzz_jsonl_one(const uint8_t *data, size_t size);
#include "tests/datasets/fuzz/fuzz_jsonl.c"

typedef int (*target_fn)(const uint8_t *, size_t);

/* Loads every file of a corpus folder; returns the count. */
static size_t load_corpus(const char *dir, char **bufs, size_t *lens, size_t max) {
  DIR *d = opendir(dir);
  cr_assert_not_null(d, "%s", dir);
  size_t n = 0;
  struct dirent *de;
  while ((de = readdir(d)) && n < max) {
    if (de->d_name[0] == '.')
      continue;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
    dfpo_err err;
    cr_assert_eq(dfpo_read_file(path, &bufs[n], &lens[n], &err), 0, "%s", err.msg);
    n++;
  }
  closedir(d);
  cr_assert(n > 0, "empty corpus %s", dir);
  return n;
}

static void run_target(target_fn fn, const char *dir, int mutants) {
  char *bufs[32];
  size_t lens[32];
  size_t n = load_corpus(dir, bufs, lens, 32);
  for (size_t i = 0; i < n; i++)
    fn((const uint8_t *)bufs[i], lens[i]);
  dfpo_rng r;
  dfpo_rng_init(&r, 2024, 11);
  static const char tokens[] = "{}[]\":,\\0123456789.-+eE truefalsnul\n\xff\xc3";
  for (int k = 0; k < mutants; k++) {
    size_t src = dfpo_rng_below(&r, (uint32_t)n);
    size_t len = lens[src];
    uint8_t *m = malloc(len + 64);
    memcpy(m, bufs[src], len);
    int edits = 1 + (int)dfpo_rng_below(&r, 8);
    for (int e = 0; e < edits; e++) {
      uint32_t op = dfpo_rng_below(&r, 5);
      size_t at = len ? dfpo_rng_below(&r, (uint32_t)len) : 0;
      if (op == 0 && len) { /* flip a byte */
        m[at] = (uint8_t)dfpo_rng_u32(&r);
      } else if (op == 1 && len + 1 < lens[src] + 64) { /* insert a JSON-ish byte */
        memmove(m + at + 1, m + at, len - at);
        m[at] = (uint8_t)tokens[dfpo_rng_below(&r, sizeof tokens - 1)];
        len++;
      } else if (op == 2 && len) { /* delete */
        memmove(m + at, m + at + 1, len - at - 1);
        len--;
      } else if (op == 3) { /* truncate */
        len = at;
      } else if (len) { /* splice from another corpus file */
        size_t o = dfpo_rng_below(&r, (uint32_t)n);
        size_t take = lens[o] < 32 ? lens[o] : 32;
        if (at + take <= len)
          memcpy(m + at, bufs[o], take);
      }
    }
    fn(m, len);
    free(m);
  }
  for (size_t i = 0; i < n; i++)
    free(bufs[i]);
}

Test(fuzz, manifest_parser_corpus_and_mutants) {
  run_target(fuzz_manifest_one, DFPO_FIXTURES "/datasets/fuzz/manifest", 3000);
}

Test(fuzz, jsonl_and_records_corpus_and_mutants) {
  run_target(fuzz_jsonl_one, DFPO_FIXTURES "/datasets/fuzz/jsonl", 5000);
}
