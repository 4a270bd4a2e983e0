/* The commands: dfpo datasets list|import|verify|prepare and dfpo fetch,
 * run as a user would, with $DFPO_HOME in a temporary folder. */
#include "datasets/datasets.h"
#include "tests/datasets/testlib.h"
#include "tests/support/support.h"

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char tmp[256], home_env[600], manifest[600], mirror_dir[600];
static char sha[65];
static const char payload[] = "a small asset served from a file:// mirror\n";

static void setup(void) {
  ts_tmpdir(tmp, sizeof tmp);
  snprintf(home_env, sizeof home_env, "DFPO_HOME=%s/home", tmp);
  snprintf(mirror_dir, sizeof mirror_dir, "%s/mirror", tmp);
  mkdir(mirror_dir, 0777);
  char p[700];
  snprintf(p, sizeof p, "%s/blob.txt", mirror_dir);
  tl_write(p, payload);
  ds_sha256_buf(payload, strlen(payload), sha);
  snprintf(manifest, sizeof manifest, "%s/manifest.json", tmp);
  char text[2048];
  snprintf(text, sizeof text,
           "{\"manifest_version\": 1, \"datasets\": [{\"name\": \"blob\", \"version\": \"2\", "
           "\"kind\": \"asset\", \"importer\": \"none\", \"file\": \"blob.txt\", \"format\": "
           "\"file\", \"urls\": [\"http://127.0.0.1:9/blob.txt\"], \"size\": %zu, \"sha256\": "
           "\"%s\", \"license\": \"l\", \"citation\": \"c\"}]}",
           strlen(payload), sha);
  tl_write(manifest, text);
}

static void teardown(void) {
  ts_rmtree(tmp);
}

TestSuite(cli_datasets, .init = setup, .fini = teardown, .timeout = 60);

/* Runs dfpo with DFPO_HOME (and one more optional env entry). */
static void run(ts_run *r, const char *env1, ...) {
  char *argv[32];
  int n = 0;
  argv[n++] = (char *)DFPO_BIN;
  va_list ap;
  va_start(ap, env1);
  char *a;
  while ((a = va_arg(ap, char *)) && n < 31)
    argv[n++] = a;
  va_end(ap);
  argv[n] = NULL;
  char *env[] = {home_env, (char *)"DFPO_FETCH_RETRIES=0", (char *)"DFPO_FETCH_CONNECT_TIMEOUT=2",
                 (char *)env1, NULL};
  ts_run_cmd(r, argv, NULL, env);
}

Test(cli_datasets, help) {
  ts_run r;
  run(&r, NULL, "datasets", "--help", NULL);
  cr_expect_eq(r.status, 0);
  cr_expect(strstr(r.out, "Usage: dfpo datasets") && strstr(r.out, "import NAME PATH") &&
                strstr(r.out, "--unverified"),
            "%s", r.out);
  ts_run_free(&r);
  run(&r, NULL, "fetch", "--help", NULL);
  cr_expect_eq(r.status, 0);
  cr_expect(strstr(r.out, "Usage: dfpo fetch NAME") && strstr(r.out, "DFPO_MIRROR"), "%s", r.out);
  ts_run_free(&r);
  run(&r, NULL, "--help", NULL);
  cr_expect(strstr(r.out, "  datasets ") && strstr(r.out, "  fetch "), "%s", r.out);
  ts_run_free(&r);
}

Test(cli_datasets, list_the_builtin_manifest) {
  ts_run r;
  run(&r, NULL, "datasets", "list", NULL);
  cr_expect_eq(r.status, 0, "%s", r.err);
  const char *names[] = {"imdb",       "commongen", "rtp",      "gpt2-encoder",
                         "gpt2-vocab", "gpt2-124m", "gpt2-imdb"};
  for (int i = 0; i < 7; i++)
    cr_expect(strstr(r.out, names[i]), "no %s in:\n%s", names[i], r.out);
  cr_expect(strstr(r.out, "84.1 MB") && strstr(r.out, "not in cache"), "%s", r.out);
  cr_expect(strstr(r.out, "unpinned"), "gpt2-imdb is not shown unpinned:\n%s", r.out);
  ts_run_free(&r);
  run(&r, NULL, "datasets", "list", "--json", NULL);
  cJSON *j = cJSON_Parse(r.out);
  cr_assert(cJSON_IsArray(j), "%s", r.out);
  cr_expect_eq(cJSON_GetArraySize(j), 7);
  cr_expect(cJSON_IsFalse(cJSON_GetObjectItem(cJSON_GetArrayItem(j, 0), "in_cache")));
  cr_expect(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetArrayItem(j, 0), "pinned")));
  cr_expect(cJSON_IsFalse(cJSON_GetObjectItem(cJSON_GetArrayItem(j, 6), "pinned")));
  cJSON_Delete(j);
  ts_run_free(&r);
}

Test(cli_datasets, usage_and_data_errors) {
  ts_run r;
  run(&r, NULL, "datasets", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "missing subcommand"), "%s", r.err);
  ts_run_free(&r);
  run(&r, NULL, "datasets", "import", "imdb", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "import: missing NAME PATH"), "%s", r.err);
  ts_run_free(&r);
  run(&r, NULL, "datasets", "frob", NULL);
  cr_expect_eq(r.status, 1);
  ts_run_free(&r);
  run(&r, NULL, "datasets", "prepare", "nosuch", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "no dataset named 'nosuch'") && strstr(r.err, "imdb"), "%s", r.err);
  ts_run_free(&r);
  run(&r, NULL, "datasets", "verify", "imdb", NULL);
  cr_expect_eq(r.status, 2);
  cr_expect(strstr(r.err, "imdb 1.0 is not in the cache"), "%s", r.err);
  ts_run_free(&r);
  run(&r, NULL, "datasets", "prepare", "imdb", NULL);
  cr_expect_eq(r.status, 2);
  ts_run_free(&r);
  run(&r, NULL, "datasets", "list", "--seed", "3", NULL);
  cr_expect_eq(r.status, 1);
  ts_run_free(&r);
  char bad[700];
  snprintf(bad, sizeof bad, "%s/bad.json", tmp);
  tl_write(bad, "{\"manifest_version\": 1,\n \"datasets\": [}\n");
  run(&r, NULL, "datasets", "list", "--manifest", bad, NULL);
  cr_expect_eq(r.status, 2);
  cr_expect(strstr(r.err, bad) && strstr(r.err, ":2:"), "%s", r.err);
  ts_run_free(&r);
  run(&r, NULL, "fetch", NULL);
  cr_expect_eq(r.status, 1);
  ts_run_free(&r);
  run(&r, NULL, "fetch", "imdb", "--mirror", "ftp://x", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "--mirror needs an http://"), "%s", r.err);
  ts_run_free(&r);
}

Test(cli_datasets, fetch_from_a_file_mirror_then_list_and_verify) {
  char mirror_env[800], url[700];
  snprintf(url, sizeof url, "file://%s", mirror_dir);
  snprintf(mirror_env, sizeof mirror_env, "DFPO_MIRROR=%s", url);
  ts_run r;
  run(&r, mirror_env, "fetch", "blob", "--manifest", manifest, "--no-progress", NULL);
  cr_expect_eq(r.status, 0, "%s", r.err);
  cr_expect(strstr(r.out, "blob 2: fetched from file://") && strstr(r.out, "archive-sha256"), "%s",
            r.out);
  ts_run_free(&r);
  run(&r, mirror_env, "fetch", "blob", "--manifest", manifest, NULL);
  cr_expect_eq(r.status, 0, "%s", r.err);
  cr_expect(strstr(r.out, "already in the cache"), "%s", r.out);
  ts_run_free(&r);
  run(&r, NULL, "datasets", "verify", "blob", "--manifest", manifest, NULL);
  cr_expect_eq(r.status, 0, "%s", r.err);
  ts_run_free(&r);
  run(&r, NULL, "datasets", "list", "--manifest", manifest, NULL);
  cr_expect(strstr(r.out, "verified (archive-sha256)"), "%s", r.out);
  ts_run_free(&r);
  run(&r, NULL, "datasets", "prepare", "blob", "--manifest", manifest, NULL);
  cr_expect_eq(r.status, 1, "an asset has nothing to prepare");
  ts_run_free(&r);
}

Test(cli_datasets, wrong_bytes_on_the_mirror_fail_with_status_2) {
  char p[700], url[700];
  snprintf(p, sizeof p, "%s/blob.txt", mirror_dir);
  char wrong[sizeof payload];
  memcpy(wrong, payload, sizeof payload);
  wrong[0] = 'A';
  tl_write(p, wrong);
  snprintf(url, sizeof url, "file://%s", mirror_dir);
  ts_run r;
  run(&r, NULL, "fetch", "blob", "--manifest", manifest, "--mirror", url, NULL);
  cr_expect_eq(r.status, 2, "%s", r.err);
  cr_expect(strstr(r.err, "wrong bytes") && strstr(r.err, "trying the next source") &&
                strstr(r.err, "127.0.0.1:9"),
            "%s", r.err);
  ts_run_free(&r);
  run(&r, NULL, "datasets", "list", "--manifest", manifest, NULL);
  cr_expect(strstr(r.out, "not in cache"), "%s", r.out);
  ts_run_free(&r);
}

Test(cli_datasets, import_unverified_is_marked) {
  char p[700];
  snprintf(p, sizeof p, "%s/blob.txt", tmp);
  tl_write(p, "not the asset\n");
  ts_run r;
  run(&r, NULL, "datasets", "import", "blob", p, "--manifest", manifest, NULL);
  cr_expect_eq(r.status, 2);
  cr_expect(strstr(r.err, "cannot be verified as blob 2"), "%s", r.err);
  ts_run_free(&r);
  run(&r, NULL, "datasets", "import", "blob", p, "--manifest", manifest, "--unverified", NULL);
  cr_expect_eq(r.status, 0, "%s", r.err);
  cr_expect(strstr(r.out, "UNVERIFIED"), "%s", r.out);
  ts_run_free(&r);
  run(&r, NULL, "datasets", "verify", "blob", "--manifest", manifest, NULL);
  cr_expect_eq(r.status, 2);
  cr_expect(strstr(r.err, "imported UNVERIFIED"), "%s", r.err);
  ts_run_free(&r);
  run(&r, NULL, "datasets", "verify", "blob", "--manifest", manifest, "--unverified", NULL);
  cr_expect_eq(r.status, 0, "%s", r.err);
  ts_run_free(&r);
  run(&r, NULL, "datasets", "list", "--manifest", manifest, NULL);
  cr_expect(strstr(r.out, "UNVERIFIED"), "%s", r.out);
  ts_run_free(&r);
}
