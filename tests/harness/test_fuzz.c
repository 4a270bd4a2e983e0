/* Runs the harness fuzz targets (tests/harness/fuzz/) in CI without
 * libFuzzer: each over its seed corpus in tests/fixtures/harness/fuzz/<target>/
 * and over 3000 mutants of it made by a seeded generator (ts_fuzz_run). A
 * target aborts on any broken contract; under the sanitizer build this also
 * catches memory errors, undefined behaviour and leaks. ci/fuzz runs the
 * same targets under libFuzzer for longer. */
#include "common/common.h"
#include "harness/rundir.h"
#include "tests/support/support.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

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
/* Regression (ci/fuzz, fuzz_results): a seed of 3e114 in a results file was
 * converted to int64_t, undefined behaviour; seeds are now integers in
 * suite.seeds' range [0, 4294967295] or the file is refused. */
Test(fuzz, results_seed_out_of_range_is_refused) {
  res_suite r;
  dfpo_err err;
  int rc = res_read_json(&r, DFPO_FIXTURES "/harness/fuzz/results/crash-seed-1e114.json", &err);
  cr_assert_eq(rc, DFPO_EDATA);
  cr_assert(strstr(err.msg, "a seed is not an integer in [0, 4294967295]"), "%s", err.msg);
}

/* The message trn_resume_load gives for state.json text (a run folder with
 * nothing else in it), into msg. */
static int state_load(const char *text, char *msg, size_t n) {
  trn_run *r = calloc(1, sizeof *r);
  cr_assert_not_null(r);
  char dir[512], path[4400];
  ts_tmpdir(dir, sizeof dir);
  snprintf(r->dir, sizeof r->dir, "%s", dir);
  trn_resume_path(r, path, sizeof path, "", -1);
  dfpo_err err;
  cr_assert_eq(dfpo_mkdirs(path, &err), DFPO_OK, "%s", err.msg);
  trn_resume_path(r, path, sizeof path, "state.json", -1);
  ts_write_text(path, text);
  trn_loop_state ls;
  int found = 0, rc = trn_resume_load(r, &ls, &found, &err);
  snprintf(msg, n, "%s", rc ? err.msg : "");
  ts_rmtree(dir);
  free(r);
  return rc;
}

/* Regression (the fuzz_state target under UBSan): "next_iteration": 1e300
 * was converted to int64_t, undefined behaviour; counts are now integers in
 * [0, 2^53] (best_iteration from -1) or the state is refused. The valid
 * seed gets as far as the missing policy checkpoint. */
Test(fuzz, state_counts_out_of_range_are_refused) {
  char msg[1024];
  char *ok = ts_slurp(DFPO_FIXTURES "/harness/fuzz/state/state.json");
  cr_assert_eq(state_load(ok, msg, sizeof msg), DFPO_EDATA);
  cr_assert(strstr(msg, "policy-4.ckpt"), "%s", msg);
  free(ok);
  static const char *const bad[] = {"crash-next-1e300.json", "next-negative.json"};
  for (size_t i = 0; i < 2; i++) {
    char p[512];
    snprintf(p, sizeof p, "%s/harness/fuzz/state/%s", DFPO_FIXTURES, bad[i]);
    char *text = ts_slurp(p);
    cr_assert_eq(state_load(text, msg, sizeof msg), DFPO_EDATA, "%s", bad[i]);
    cr_assert(strstr(msg, "not a resumable-checkpoint state"), "%s: %s", bad[i], msg);
    free(text);
  }
}

/* A finished cell (eval.json with one metric, an empty train.jsonl, DONE)
 * at dir/imdb/ppo/<seed>. */
static void make_cell(const char *dir, const char *seed) {
  char cell[1024], path[1200];
  snprintf(cell, sizeof cell, "%s/imdb/ppo/%s", dir, seed);
  dfpo_err err;
  cr_assert_eq(dfpo_mkdirs(cell, &err), DFPO_OK, "%s", err.msg);
  snprintf(path, sizeof path, "%s/eval.json", cell);
  ts_write_text(path, "{\"algo\": \"ppo\", \"metrics\": {\"reward\": 0.5}}\n");
  snprintf(path, sizeof path, "%s/train.jsonl", cell);
  ts_write_text(path, "");
  cr_assert_eq(rundir_done_write(cell, &err), DFPO_OK, "%s", err.msg);
}

/* Reading the folders of a suite without suite.json took the seed from
 * "seed-%lld" with sscanf: undefined past LLONG_MAX, and "seed-1x" was seed
 * 1. Only seed-<digits> with a seed in [0, 4294967295] is a cell now. */
Test(fuzz, report_seed_folders_are_whole_numbers_in_range) {
  char dir[512];
  ts_tmpdir(dir, sizeof dir);
  make_cell(dir, "seed-7");
  make_cell(dir, "seed-99999999999999999999999");
  make_cell(dir, "seed-4294967296");
  make_cell(dir, "seed-1x");
  res_suite r;
  dfpo_err err;
  cr_assert_eq(res_collect(&r, dir, 0, &err), DFPO_OK, "%s", err.msg);
  cr_assert_eq(r.n_tasks, 1);
  cr_assert_eq(r.tasks[0].n_variants, 1);
  const res_variant *v = &r.tasks[0].variants[0];
  cr_assert_eq(v->n_done, 1);
  cr_assert_eq(v->seeds[0], 7);
  res_free(&r);
  ts_rmtree(dir);
}
