/* Test support shared by every test folder. Prefix: ts_. */
#ifndef DFPO_TESTS_SUPPORT_H
#define DFPO_TESTS_SUPPORT_H

#include <cJSON.h>
#include <stddef.h>
#include <stdint.h>

/* The result of running a command: exit status (or 128 + signal), and its
 * stdout and stderr as NUL-terminated heap strings. */
typedef struct ts_run {
  int status;
  char *out, *err;
} ts_run;

/* Runs argv (argv[0] a path, NULL-terminated) with stdin from `input` (may be
 * NULL: empty stdin) and optional extra environment entries "K=V"
 * (NULL-terminated, may be NULL). Aborts the test on spawn failure. */
void ts_run_cmd(ts_run *r, char *const argv[], const char *input, char *const env_extra[]);
/* ts_run_cmd on the dfpo binary under test: ts_dfpo(&r, "config", "show", NULL). */
void ts_dfpo(ts_run *r, ...);
/* The same with the arguments as a NULL-terminated array, stdin from input
 * (may be NULL) and DFPO_HOME=home. */
void ts_dfpo_home(ts_run *r, const char *home, char *const *args, const char *input);
/* dfpo ARGS (NULL-terminated) with DFPO_HOME=home, OMP_NUM_THREADS=1 and
 * extra_env ("NAME=value", may be NULL); returns the exit status and, when
 * err is not NULL, a copy of stderr in *err (the caller frees it). */
int ts_dfpo_in(const char *home, const char *const *args, const char *extra_env, char **err);
void ts_run_free(ts_run *r);

/* Whether /usr/bin/python3 imports the comma-separated modules ("torch,
 * sentencepiece"): the reference scripts' peers; tests skip without them. */
int ts_python_has(const char *modules);

/* The shared data folder (../shared/data beside the checkout, or $DFPO_SHARED_DATA),
 * or NULL when absent; tests that need it skip with a message. */
const char *ts_shared_data(void);

/* Copies the first n_train reviews of train/pos and of train/neg, n_unsup of
 * train/unsup and n_test of test/pos and of test/neg out of the real archive
 * <data>/imdb/aclImdb.tar.gz into src/aclImdb/..., a folder the imdb
 * importer takes (--unverified, since it is not the whole dataset), and the
 * train reviews' texts into corpus (one per line; NULL: none). */
void ts_imdb_slice(const char *data, const char *src, const char *corpus, int n_train, int n_test,
                   int n_unsup);

/* The first n_train, n_dev and n_test lines of CommonGen's three files in
 * <data>/commongen/ copied into the folder dst (made), which the
 * commongen importer takes (--unverified, since it is not the whole
 * dataset). */
void ts_commongen_slice(const char *data, const char *dst, int n_train, int n_dev, int n_test);

/* The whole file as a NUL-terminated heap string (caller frees); aborts the
 * test when it cannot be read. */
char *ts_slurp(const char *path);
/* The file parsed as JSON (caller frees with cJSON_Delete); aborts the
 * test when it cannot be read or parsed. */
cJSON *ts_read_json(const char *path);
/* The string member key of o (owned by o); aborts the test when it is
 * missing or not a string. */
const char *ts_json_str(const cJSON *o, const char *key);
/* Writes text to path (created or truncated); aborts the test on failure. */
void ts_write_text(const char *path, const char *text);
/* The JSON object in the file at path with member key set to value (which
 * it takes), written back; aborts the test on failure. */
void ts_json_set(const char *path, const char *key, cJSON *value);

/* A fresh temporary folder (mkdtemp) and its recursive removal. */
void ts_tmpdir(char *buf, size_t n);
void ts_rmtree(const char *path);

/* A fuzz target (an LLVMFuzzerTestOneInput under another name: it aborts on
 * a broken contract). */
typedef int (*ts_fuzz_fn)(const uint8_t *data, size_t size);
/* Runs fn over every file of the corpus folder dir (at most 64) and then
 * over `mutants` inputs made from them by a seeded generator (byte flips,
 * insertions of JSON-ish bytes, deletions, truncations, splices from another
 * corpus file): the same inputs on every run. ci/fuzz runs the targets
 * under libFuzzer for longer. */
void ts_fuzz_run(ts_fuzz_fn fn, const char *dir, int mutants);

#endif
