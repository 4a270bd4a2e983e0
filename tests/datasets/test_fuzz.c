/* Runs the fuzz targets (tests/datasets/fuzz/) in CI without libFuzzer: over
 * the seed corpus in tests/fixtures/datasets/fuzz/ and over mutants of it
 * made by a seeded generator (ts_fuzz_run). A target aborts on any broken
 * contract; under the sanitizer build this also catches memory errors and
 * leaks. ci/fuzz runs the same targets under libFuzzer for longer. */
#include "common/common.h"
#include "tests/support/support.h"

#include <criterion/criterion.h>
#include <stdint.h>

#define FUZZ_NAME fuzz_manifest_one
int fuzz_manifest_one(const uint8_t *data, size_t size);
#include "tests/datasets/fuzz/fuzz_manifest.c"
#undef FUZZ_NAME
#define FUZZ_NAME fuzz_jsonl_one
int fuzz_jsonl_one(const uint8_t *data, size_t size);
#include "tests/datasets/fuzz/fuzz_jsonl.c"
#undef FUZZ_NAME
#define FUZZ_NAME fuzz_archive_one
int fuzz_archive_one(const uint8_t *data, size_t size);
#include "tests/datasets/fuzz/fuzz_archive.c"

Test(fuzz, manifest_parser_corpus_and_mutants) {
  ts_fuzz_run(fuzz_manifest_one, DFPO_FIXTURES "/datasets/fuzz/manifest", 3000);
}

Test(fuzz, jsonl_and_records_corpus_and_mutants) {
  ts_fuzz_run(fuzz_jsonl_one, DFPO_FIXTURES "/datasets/fuzz/jsonl", 5000);
}

Test(fuzz, archive_extraction_corpus_and_mutants) {
  ts_fuzz_run(fuzz_archive_one, DFPO_FIXTURES "/datasets/fuzz/archive", 2000);
}
