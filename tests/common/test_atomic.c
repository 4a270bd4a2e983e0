#include "common/common.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

static void make_dir(void) {
  snprintf(dir, sizeof dir, "/tmp/dfpo-test-atomic-XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
}

static void remove_dir(void) {
  DIR *d = opendir(dir);
  if (d) {
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)))
      if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
      }
    closedir(d);
  }
  rmdir(dir);
  dfpo_atomic_set_fail_before_rename(0);
}

static int count_entries(void) {
  DIR *d = opendir(dir);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
  closedir(d);
  return n;
}

TestSuite(atomic, .init = make_dir, .fini = remove_dir);

Test(atomic, write_then_read_back) {
  char path[300], *data;
  size_t len;
  dfpo_err err;
  snprintf(path, sizeof path, "%s/f.json", dir);
  cr_assert_eq(dfpo_atomic_write_file(path, "{\"a\":1}", 7, &err), DFPO_OK, "%s", err.msg);
  cr_assert_eq(dfpo_read_file(path, &data, &len, &err), DFPO_OK);
  cr_expect_eq(len, 7);
  cr_expect_str_eq(data, "{\"a\":1}");
  free(data);
  cr_expect_eq(count_entries(), 1, "no temporary left behind");
}

Test(atomic, failure_before_rename_keeps_old_file) {
  char path[300], *data;
  dfpo_err err;
  snprintf(path, sizeof path, "%s/results.json", dir);
  cr_assert_eq(dfpo_atomic_write_file(path, "old", 3, &err), DFPO_OK);
  dfpo_atomic_set_fail_before_rename(1);
  const char *big = "new content that never lands";
  int rc = dfpo_atomic_write_file(path, big, strlen(big), &err);
  cr_expect_eq(rc, DFPO_ERUNTIME);
  cr_expect(strstr(err.msg, "results.json") != NULL, "message names the file: %s", err.msg);
  cr_assert_eq(dfpo_read_file(path, &data, NULL, &err), DFPO_OK);
  cr_expect_str_eq(data, "old");
  free(data);
  cr_expect_eq(count_entries(), 1, "the temporary is removed");
}

Test(atomic, abort_leaves_nothing) {
  char path[300];
  dfpo_err err;
  dfpo_atomic a;
  snprintf(path, sizeof path, "%s/never.bin", dir);
  cr_assert_eq(dfpo_atomic_open(&a, path, &err), DFPO_OK);
  fputs("partial", a.fp);
  dfpo_atomic_abort(&a);
  cr_expect_eq(access(path, F_OK), -1);
  cr_expect_eq(count_entries(), 0);
}

Test(atomic, missing_folder_is_an_error_naming_the_path) {
  dfpo_err err;
  int rc = dfpo_atomic_write_file("/nonexistent-dfpo-dir/x.json", "x", 1, &err);
  cr_expect_eq(rc, DFPO_ERUNTIME);
  cr_expect(strstr(err.msg, "/nonexistent-dfpo-dir/x.json") != NULL, "%s", err.msg);
}

Test(atomic, mkdirs_and_read_missing) {
  char path[300], *data;
  dfpo_err err;
  snprintf(path, sizeof path, "%s/a", dir);
  char deep[320];
  snprintf(deep, sizeof deep, "%s/b/c", path);
  cr_assert_eq(dfpo_mkdirs(deep, &err), DFPO_OK, "%s", err.msg);
  cr_assert_eq(dfpo_mkdirs(deep, &err), DFPO_OK, "existing folders are fine");
  rmdir(deep);
  snprintf(deep, sizeof deep, "%s/b", path);
  rmdir(deep);
  rmdir(path);
  snprintf(path, sizeof path, "%s/missing.txt", dir);
  cr_expect_eq(dfpo_read_file(path, &data, NULL, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "missing.txt: cannot open") != NULL, "%s", err.msg);
}
