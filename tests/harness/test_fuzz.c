/* Runs the harness fuzz targets (tests/harness/fuzz/) in CI without
 * libFuzzer: each over its seed corpus in tests/fixtures/harness/fuzz/<target>/
 * and over 3000 mutants of it made by a seeded generator (ts_fuzz_run). A
 * target aborts on any broken contract; under the sanitizer build this also
 * catches memory errors, undefined behaviour and leaks. ci/fuzz runs the
 * same targets under libFuzzer for longer. */
#include "common/common.h"
#include "tests/support/support.h"

#include <criterion/criterion.h>
#include <stdint.h>

/* mutants per target */
#define FUZZ_MUTANTS 3000

#define FUZZ_NAME fuzz_config_one
int fuzz_config_one(const uint8_t *data, size_t size);
#include "tests/harness/fuzz/fuzz_config.c"
#undef FUZZ_NAME

#define FUZZ_NAME fuzz_suite_one
int fuzz_suite_one(const uint8_t *data, size_t size);
#include "tests/harness/fuzz/fuzz_suite.c"
#undef FUZZ_NAME

#define FUZZ_NAME fuzz_state_one
int fuzz_state_one(const uint8_t *data, size_t size);
#include "tests/harness/fuzz/fuzz_state.c"
#undef FUZZ_NAME

#define FUZZ_NAME fuzz_results_one
int fuzz_results_one(const uint8_t *data, size_t size);
#include "tests/harness/fuzz/fuzz_results.c"
#undef FUZZ_NAME

#define FUZZ_NAME fuzz_trainlog_one
int fuzz_trainlog_one(const uint8_t *data, size_t size);
#include "tests/harness/fuzz/fuzz_trainlog.c"
#undef FUZZ_NAME

#define FUZZ_NAME fuzz_eval_one
int fuzz_eval_one(const uint8_t *data, size_t size);
#include "tests/harness/fuzz/fuzz_eval.c"
#undef FUZZ_NAME

#define FUZZ_NAME fuzz_done_one
int fuzz_done_one(const uint8_t *data, size_t size);
#include "tests/harness/fuzz/fuzz_done.c"
#undef FUZZ_NAME

Test(fuzz, config_corpus_and_mutants) {
  ts_fuzz_run(fuzz_config_one, DFPO_FIXTURES "/harness/fuzz/config", FUZZ_MUTANTS);
}

Test(fuzz, suite_corpus_and_mutants) {
  ts_fuzz_run(fuzz_suite_one, DFPO_FIXTURES "/harness/fuzz/suite", FUZZ_MUTANTS);
}

Test(fuzz, state_corpus_and_mutants) {
  ts_fuzz_run(fuzz_state_one, DFPO_FIXTURES "/harness/fuzz/state", FUZZ_MUTANTS);
}

Test(fuzz, results_corpus_and_mutants) {
  ts_fuzz_run(fuzz_results_one, DFPO_FIXTURES "/harness/fuzz/results", FUZZ_MUTANTS);
}

Test(fuzz, trainlog_corpus_and_mutants) {
  ts_fuzz_run(fuzz_trainlog_one, DFPO_FIXTURES "/harness/fuzz/trainlog", FUZZ_MUTANTS);
}

Test(fuzz, eval_corpus_and_mutants) {
  ts_fuzz_run(fuzz_eval_one, DFPO_FIXTURES "/harness/fuzz/eval", FUZZ_MUTANTS);
}

Test(fuzz, done_corpus_and_mutants) {
  ts_fuzz_run(fuzz_done_one, DFPO_FIXTURES "/harness/fuzz/done", FUZZ_MUTANTS);
}
