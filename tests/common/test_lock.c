/* Folder locks (common/lock.c): a second process is refused at once with
 * DFPO_ELOCKED and a message naming the holder; the kernel lets go when the
 * holder dies; this process may take its own lock again. The second process
 * is a fork that takes the lock and then waits on a pipe, so the order is
 * fixed, not timed. */
#include "common/common.h"
#include "tests/support/support.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[256];

static void setup(void) {
  ts_tmpdir(dir, sizeof dir);
}

static void teardown(void) {
  ts_rmtree(dir);
}

TestSuite(lock, .init = setup, .fini = teardown, .timeout = 60);

/* A child that holds the lock of path until it reads a byte from *go (or
 * dies); returns once it holds it. */
static pid_t holder(const char *path, int *go) {
  int ready[2], wait_go[2];
  cr_assert_eq(pipe(ready), 0);
  cr_assert_eq(pipe(wait_go), 0);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    dfpo_lock l = {0};
    dfpo_err e;
    char c = dfpo_lock_take(&l, path, &e) == DFPO_OK ? 'y' : 'n';
    if (write(ready[1], &c, 1) != 1)
      _exit(2);
    if (read(wait_go[0], &c, 1) < 0)
      _exit(3);
    dfpo_lock_release(&l);
    _exit(0);
  }
  close(ready[1]);
  close(wait_go[0]);
  char c = 0;
  cr_assert_eq(read(ready[0], &c, 1), 1);
  cr_assert_eq(c, 'y', "the child took the lock");
  close(ready[0]);
  *go = wait_go[1];
  return pid;
}

Test(lock, a_second_process_is_refused_with_the_holder_named) {
  char path[400], file[420], want[64];
  snprintf(path, sizeof path, "%s/run", dir);
  snprintf(file, sizeof file, "%s.lock", path);
  int go;
  pid_t pid = holder(path, &go);
  /* the lock file names the holder */
  char *text = ts_slurp(file);
  snprintf(want, sizeof want, "pid %ld\n", (long)pid);
  cr_expect(strncmp(text, want, strlen(want)) == 0, "%s", text);
  cr_expect(strstr(text, "\nhost ") && strstr(text, "\nstarted ") && strstr(text, "\ncommand "),
            "%s", text);
  free(text);
  dfpo_lock l = {0};
  dfpo_err e;
  dfpo_err_clear(&e);
  cr_assert_eq(dfpo_lock_take(&l, path, &e), DFPO_ELOCKED);
  snprintf(want, sizeof want, "pid %ld on ", (long)pid);
  cr_expect(strstr(e.msg, want) != NULL, "%s", e.msg);
  cr_expect(strstr(e.msg, path) != NULL && strstr(e.msg, file) != NULL, "%s", e.msg);
  char who[1400];
  cr_expect_eq(dfpo_lock_holder(path, who, sizeof who), 0);
  cr_expect(strstr(who, want) != NULL, "%s", who);
  dfpo_err_clear(&e);
  cr_expect_eq(dfpo_lock_check(path, &e), DFPO_ELOCKED);
  cr_expect(strstr(e.msg, want) != NULL, "%s", e.msg);
  /* once the holder lets go, the lock file is gone and the lock free */
  cr_assert_eq(write(go, "x", 1), 1);
  int st;
  cr_assert_eq(waitpid(pid, &st, 0), pid);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  cr_expect_neq(access(file, F_OK), 0, "the holder removed %s", file);
  cr_expect_eq(dfpo_lock_holder(path, who, sizeof who), -1);
  cr_expect_eq(dfpo_lock_check(path, &e), DFPO_OK, "%s", e.msg);
  cr_expect_neq(access(file, F_OK), 0, "a check creates nothing");
  cr_assert_eq(dfpo_lock_take(&l, path, &e), DFPO_OK, "%s", e.msg);
  dfpo_lock_release(&l);
  close(go);
}

Test(lock, a_killed_holder_leaves_no_stale_lock) {
  char path[400];
  snprintf(path, sizeof path, "%s/cache-entry", dir);
  int go;
  pid_t pid = holder(path, &go);
  kill(pid, SIGKILL);
  int st;
  cr_assert_eq(waitpid(pid, &st, 0), pid);
  close(go);
  dfpo_lock l = {0};
  dfpo_err e;
  cr_assert_eq(dfpo_lock_take(&l, path, &e), DFPO_OK, "%s", e.msg);
  dfpo_lock_release(&l);
}

Test(lock, this_process_may_take_its_lock_again) {
  char path[400], file[420];
  snprintf(path, sizeof path, "%s/dataset", dir);
  snprintf(file, sizeof file, "%s.lock", path);
  dfpo_lock a = {0}, b = {0};
  dfpo_err e;
  cr_assert_eq(dfpo_lock_take(&a, path, &e), DFPO_OK, "%s", e.msg);
  cr_assert_eq(dfpo_lock_take(&b, path, &e), DFPO_OK, "nested: %s", e.msg);
  dfpo_lock_release(&a);
  cr_expect_eq(access(file, F_OK), 0, "still held by the inner taker");
  char who[1400];
  /* another process (a fork) is still refused */
  pid_t pid = fork();
  if (pid == 0) {
    dfpo_lock c = {0};
    _exit(dfpo_lock_take(&c, path, NULL) == DFPO_ELOCKED ? 0 : 1);
  }
  int st;
  cr_assert_eq(waitpid(pid, &st, 0), pid);
  cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the fork was refused");
  dfpo_lock_release(&b);
  dfpo_lock_release(&b); /* a second release of the same handle does nothing */
  cr_expect_neq(access(file, F_OK), 0);
  cr_expect_eq(dfpo_lock_holder(path, who, sizeof who), -1);
}
