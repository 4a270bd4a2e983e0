#include "common/common.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

Test(err, set_prefix_clear) {
  dfpo_err e;
  dfpo_err_clear(&e);
  cr_expect_eq(e.code, DFPO_OK);
  cr_expect_str_eq(e.msg, "");
  cr_expect_eq(dfpo_err_prefix(&e, "ctx"), DFPO_OK, "prefix on a clear record does nothing");
  cr_expect_str_eq(e.msg, "");
  cr_expect_eq(dfpo_err_set(&e, DFPO_EDATA, "line %d: bad", 7), DFPO_EDATA);
  cr_expect_eq(dfpo_err_prefix(&e, "%s", "data.jsonl"), DFPO_EDATA);
  cr_expect_str_eq(e.msg, "data.jsonl: line 7: bad");
  cr_expect_eq(dfpo_err_errno(&e, DFPO_ERUNTIME, ENOENT, "x.bin"), DFPO_ERUNTIME);
  cr_expect_str_eq(e.msg, "x.bin: No such file or directory");
  cr_expect_eq(dfpo_err_set(NULL, DFPO_EUSAGE, "ignored"), DFPO_EUSAGE);
}

Test(err, long_messages_are_truncated_not_overflowed) {
  dfpo_err e;
  char big[3000];
  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  dfpo_err_set(&e, DFPO_EDATA, "%s", big);
  cr_expect_eq(strlen(e.msg), DFPO_ERR_MSG_MAX - 1);
  dfpo_err_prefix(&e, "file.json");
  cr_expect_eq(strncmp(e.msg, "file.json: aaa", 14), 0);
}

Test(cache, dir_follows_environment) {
  char buf[512];
  dfpo_err e;
  setenv("DFPO_HOME", "/x/dfpo-home", 1);
  cr_assert_eq(dfpo_cache_dir(buf, sizeof buf, &e), DFPO_OK);
  cr_expect_str_eq(buf, "/x/dfpo-home");
  unsetenv("DFPO_HOME");
  setenv("XDG_CACHE_HOME", "/x/xdg", 1);
  cr_assert_eq(dfpo_cache_dir(buf, sizeof buf, &e), DFPO_OK);
  cr_expect_str_eq(buf, "/x/xdg/dfpo");
  unsetenv("XDG_CACHE_HOME");
  setenv("HOME", "/x/home", 1);
  cr_assert_eq(dfpo_cache_dir(buf, sizeof buf, &e), DFPO_OK);
  cr_expect_str_eq(buf, "/x/home/.cache/dfpo");
  unsetenv("HOME");
  cr_expect_eq(dfpo_cache_dir(buf, sizeof buf, &e), DFPO_EUSAGE);
  cr_expect(strstr(e.msg, "DFPO_HOME") != NULL);
}

Test(progress, formats_bytes_rate_and_eta) {
  dfpo_progress p;
  dfpo_progress_start(&p, "imdb", 100 * 1024 * 1024, 1);
  p.active = 0; /* format only: draw nothing */
  p.done = 25 * 1024 * 1024;
  char line[256];
  dfpo_progress_format(&p, p.t_start + 10.0, line, sizeof line);
  /* 25 MiB in 10 s = 2.5 MiB/s; 75 MiB left = 30 s */
  cr_expect_str_eq(line,
                   "imdb [#####---------------]  25.0% 25.0 MiB/100.0 MiB 2.5 MiB/s ETA 00:30");
  dfpo_progress_start(&p, "steps", 0, 0);
  p.active = 0;
  p.done = 120;
  dfpo_progress_format(&p, p.t_start + 60.0, line, sizeof line);
  cr_expect_str_eq(line, "steps 120 2/s elapsed 01:00");
}
