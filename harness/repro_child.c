/* Child processes of `dfpo reproduce`: every cell and the base model's
 * pretraining run as a child of /proc/self/exe (see cmd_reproduce.c for
 * why), with its output in a log. */
#include "harness/repro_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int repro_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

int repro_run_child_watch(char *const argv[], const char *log, void (*watch)(void *), void *ctx) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    execv("/proc/self/exe", argv); /* this very binary, even if rebuilt meanwhile */
    _exit(127);
  }
  int st, forwarded = 0;
  for (;;) {
    pid_t got = waitpid(pid, &st, watch ? WNOHANG : 0);
    if (got == pid)
      break;
    if (got < 0 && errno != EINTR)
      return -1;
    /* an interrupt sent to this process alone (not a terminal's Ctrl-C,
     * which reaches the whole group) still stops the cell */
    if (dfpo_interrupted() && !forwarded) {
      kill(pid, SIGINT);
      forwarded = 1;
    }
    if (watch && got == 0) {
      watch(ctx);
      struct timespec ts = {1, 0};
      nanosleep(&ts, NULL); /* an interrupt ends it early */
    }
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int repro_run_child(char *const argv[], const char *log) {
  return repro_run_child_watch(argv, log, NULL, NULL);
}

/* The last "dfpo: error:" line of a log, or its last line. */
void repro_last_error(const char *log, char *buf, size_t n) {
  FILE *fp = fopen(log, "r");
  buf[0] = '\0';
  if (!fp)
    return;
  char line[1024];
  while (fgets(line, sizeof line, fp)) {
    line[strcspn(line, "\n")] = '\0';
    if (strstr(line, "error:") || !strstr(buf, "error:"))
      suite_fmt(buf, n, "%s", line);
  }
  fclose(fp);
}

int repro_write_text(const char *path, const char *text, dfpo_err *err) {
  return dfpo_atomic_write_file(path, text, strlen(text), err);
}
