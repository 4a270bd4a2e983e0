#include "common/common.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
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

/* The pid of a child that has exited and been reaped: no process has it
 * (until the kernel reuses it, which takes a wrap of the pid space). */
static long dead_pid(void) {
  pid_t p = fork();
  cr_assert_geq(p, 0);
  if (p == 0)
    _exit(0);
  cr_assert_eq(waitpid(p, NULL, 0), p);
  return (long)p;
}

static void touch_at(const char *name, time_t mtime) {
  char p[400];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  FILE *f = fopen(p, "w");
  cr_assert_not_null(f);
  fputs("partial", f);
  fclose(f);
  struct timespec ts[2] = {{mtime, 0}, {mtime, 0}};
  cr_assert_eq(utimensat(AT_FDCWD, p, ts, 0), 0);
}

static int exists_in_dir(const char *name) {
  char p[400];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  return access(p, F_OK) == 0;
}

/* A run killed while writing samples.jsonl left samples.jsonl.tmp.<pid>.<n>
 * for good. The sweep removes exactly the temporaries of dead processes
 * that nobody wrote to for the given age; a live writer's (this process,
 * its parent), a recent one's and other names stay. */
Test(atomic, sweep_removes_only_dead_writers_old_temporaries) {
  long dead = dead_pid();
  time_t old = time(NULL) - 3600, now = time(NULL);
  char n1[128], n2[128], n3[128], n4[128], n5[128];
  snprintf(n1, sizeof n1, "samples.jsonl.tmp.%ld.0", dead);
  snprintf(n2, sizeof n2, "eval.json.tmp.%ld.17", dead);
  snprintf(n3, sizeof n3, "state.json.tmp.%ld.3", dead);             /* recent */
  snprintf(n4, sizeof n4, "train.jsonl.tmp.%ld.0", (long)getppid()); /* alive */
  snprintf(n5, sizeof n5, "notes.tmp.%ldx", dead);                   /* not one */
  touch_at(n1, old);
  touch_at(n2, old);
  touch_at(n3, now);
  touch_at(n4, old);
  touch_at(n5, old);
  touch_at("samples.jsonl", old);
  int removed = -1;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(dfpo_atomic_sweep(dir, 60, &removed, &err), 0, "%s", err.msg);
  cr_expect_eq(removed, 2);
  cr_expect_not(exists_in_dir(n1));
  cr_expect_not(exists_in_dir(n2));
  cr_expect(exists_in_dir(n3), "written to a moment ago");
  cr_expect(exists_in_dir(n4), "its writer is alive");
  cr_expect(exists_in_dir(n5));
  cr_expect(exists_in_dir("samples.jsonl"));
  /* with no minimum age the recent one goes too; an absent folder is fine */
  cr_assert_eq(dfpo_atomic_sweep(dir, 0, &removed, &err), 0, "%s", err.msg);
  cr_expect_eq(removed, 1);
  cr_expect_not(exists_in_dir(n3));
  char gone[300];
  snprintf(gone, sizeof gone, "%s/no-such-folder", dir);
  cr_expect_eq(dfpo_atomic_sweep(gone, 0, &removed, &err), 0);
  cr_expect_eq(removed, 0);
}

/* Finished cells left .staging/<task>/<variant>/ behind, empty. Pruning
 * removes the empty folders and keeps any that hold a file. */
Test(atomic, prune_removes_empty_folders_only) {
  char p[400];
  const char *dirs[] = {"st", "st/a", "st/a/x", "st/a/x/seed-0", "st/b", "st/b/y"};
  for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
    snprintf(p, sizeof p, "%s/%s", dir, dirs[i]);
    cr_assert_eq(mkdir(p, 0755), 0, "%s", p);
  }
  snprintf(p, sizeof p, "%s/st/b/y/keep", dir);
  FILE *f = fopen(p, "w");
  fclose(f);
  snprintf(p, sizeof p, "%s/st", dir);
  dfpo_prune_empty_dirs(p);
  snprintf(p, sizeof p, "%s/st/a", dir);
  cr_expect_neq(access(p, F_OK), 0, "the empty branch is gone");
  snprintf(p, sizeof p, "%s/st/b/y/keep", dir);
  cr_expect_eq(access(p, F_OK), 0, "a folder with a file stays");
  unlink(p);
  snprintf(p, sizeof p, "%s/st", dir);
  dfpo_prune_empty_dirs(p);
  cr_expect_neq(access(p, F_OK), 0, "all empty now: the top goes too");
}
