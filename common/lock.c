/* Folder locks: flock(2) on "<path>.lock" beside the folder (docs/architecture.md,
 * "Locks"). */
#define _DEFAULT_SOURCE /* flock, gethostname */
#include "common/common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The locks this process holds: taking one again (a fetch that imports, a
 * reproduce that prepares a dataset) counts instead of failing, as flock
 * would against this process's own other open file. */
#define HELD_MAX 64
static struct held {
  dev_t dev;
  ino_t ino;
  int fd, count;
  pid_t pid;  /* the process that took it: a fork's copy of the table is not its own */
  char *file; /* the lock file's path (heap) */
} held[HELD_MAX];
static int n_held;

void dfpo_utc_now(char buf[32]) {
  time_t t = time(NULL);
  struct tm tm;
  if (gmtime_r(&t, &tm) == NULL || strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
    snprintf(buf, 32, "unknown time");
}

/* This process's command line, arguments joined by spaces, into buf. */
static void own_command(char *buf, size_t n) {
  snprintf(buf, n, "?");
  int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return;
  ssize_t got = read(fd, buf, n - 1);
  close(fd);
  if (got <= 0) {
    snprintf(buf, n, "?");
    return;
  }
  buf[got] = '\0';
  while (got > 0 && buf[got - 1] == '\0')
    got--;
  for (ssize_t i = 0; i < got; i++)
    if (buf[i] == '\0' || buf[i] == '\n')
      buf[i] = ' ';
}

/* The holder's lines of a lock file as one phrase, into buf. */
static void holder_text(int fd, char *buf, size_t n) {
  char text[1200];
  ssize_t got = pread(fd, text, sizeof text - 1, 0);
  text[got > 0 ? got : 0] = '\0';
  char pid[32] = "?", host[256] = "?", started[64] = "?", command[800] = "?";
  for (char *line = text, *next; line && *line; line = next) {
    next = strchr(line, '\n');
    if (next)
      *next++ = '\0';
    if (!strncmp(line, "pid ", 4))
      snprintf(pid, sizeof pid, "%s", line + 4);
    else if (!strncmp(line, "host ", 5))
      snprintf(host, sizeof host, "%s", line + 5);
    else if (!strncmp(line, "started ", 8))
      snprintf(started, sizeof started, "%s", line + 8);
    else if (!strncmp(line, "command ", 8))
      snprintf(command, sizeof command, "%s", line + 8);
  }
  if (!strcmp(pid, "?"))
    snprintf(buf, n, "a process that has not yet written its name");
  else
    snprintf(buf, n, "pid %s on %s, started %s: %s", pid, host, started, command);
}

int dfpo_lock_holder(const char *path, char *buf, size_t n) {
  char file[4200];
  if (dfpo_path_fmt(file, sizeof file, NULL, "%s.lock", path))
    return -1;
  int fd = open(file, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  int free_now = flock(fd, LOCK_SH | LOCK_NB) == 0;
  if (!free_now)
    holder_text(fd, buf, n);
  close(fd);
  return free_now ? -1 : 0;
}

static int lock_fail(const char *path, const char *file, int fd, dfpo_err *err) {
  char who[1400];
  holder_text(fd, who, sizeof who);
  close(fd);
  return dfpo_err_set(err, DFPO_ELOCKED,
                      "%s is in use by another dfpo process (%s); it is left as it is. Wait for "
                      "that process to end (the lock %s goes with it) and run this again",
                      path, who, file);
}

int dfpo_lock_check(const char *path, dfpo_err *err) {
  char file[4200];
  int rc = dfpo_path_fmt(file, sizeof file, err, "%s.lock", path);
  if (rc)
    return rc;
  int fd = open(file, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return DFPO_OK; /* nobody has taken it */
  struct stat st;
  if (fstat(fd, &st) == 0)
    for (int i = 0; i < n_held; i++)
      if (held[i].count > 0 && held[i].pid == getpid() && held[i].dev == st.st_dev &&
          held[i].ino == st.st_ino) {
        close(fd);
        return DFPO_OK; /* this process's own */
      }
  if (flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK)
    return lock_fail(path, file, fd, err);
  close(fd);
  return DFPO_OK;
}

int dfpo_lock_take(dfpo_lock *l, const char *path, dfpo_err *err) {
  memset(l, 0, sizeof *l);
  char file[4200];
  int rc = dfpo_path_fmt(file, sizeof file, err, "%s.lock", path);
  if (rc)
    return rc;
  /* the holder removes the file as it lets go: a file taken after that
   * removal is no longer the one at the path, so try again */
  for (int attempt = 0; attempt < 100; attempt++) {
    int fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0)
      return dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot open the lock file", file);
    struct stat st, now;
    if (fstat(fd, &st) != 0) {
      int e = errno;
      close(fd);
      return dfpo_err_errno(err, DFPO_ERUNTIME, e, "%s: cannot stat", file);
    }
    for (int i = 0; i < n_held; i++)
      if (held[i].count > 0 && held[i].pid == getpid() && held[i].dev == st.st_dev &&
          held[i].ino == st.st_ino) {
        close(fd);
        held[i].count++;
        l->slot = i + 1;
        return DFPO_OK;
      }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
      if (errno == EWOULDBLOCK)
        return lock_fail(path, file, fd, err);
      int e = errno;
      close(fd);
      return dfpo_err_errno(err, DFPO_ERUNTIME, e, "%s: cannot lock", file);
    }
    if (stat(file, &now) != 0 || now.st_dev != st.st_dev || now.st_ino != st.st_ino) {
      close(fd);
      continue;
    }
    int slot = -1;
    for (int i = 0; i < n_held && slot < 0; i++)
      if (held[i].count == 0 || held[i].pid != getpid())
        slot = i;
    if (slot < 0 && n_held < HELD_MAX)
      slot = n_held++;
    if (slot < 0) {
      close(fd);
      return dfpo_err_set(err, DFPO_ERUNTIME, "%s: more than %d locks held at once", file,
                          HELD_MAX);
    }
    char host[256] = "?", when[32], cmd[800], text[1400];
    if (gethostname(host, sizeof host) != 0)
      snprintf(host, sizeof host, "?");
    host[sizeof host - 1] = '\0';
    dfpo_utc_now(when);
    own_command(cmd, sizeof cmd);
    int len = snprintf(text, sizeof text, "pid %ld\nhost %s\nstarted %s\ncommand %s\n",
                       (long)getpid(), host, when, cmd);
    size_t k = len < 0 ? 0 : (size_t)len < sizeof text ? (size_t)len : sizeof text - 1;
    /* who holds it is a courtesy to the next process: the lock is the flock */
    if (ftruncate(fd, 0) != 0 || pwrite(fd, text, k, 0) != (ssize_t)k)
      dfpo_warn("%s: cannot record this process as the holder", file);
    char *copy = malloc(strlen(file) + 1);
    if (copy)
      memcpy(copy, file, strlen(file) + 1);
    held[slot] = (struct held){st.st_dev, st.st_ino, fd, 1, getpid(), copy};
    l->slot = slot + 1;
    return DFPO_OK;
  }
  return dfpo_err_set(err, DFPO_ERUNTIME, "%s: the lock file keeps being replaced", file);
}

void dfpo_lock_release(dfpo_lock *l) {
  if (!l || l->slot <= 0 || l->slot > n_held || held[l->slot - 1].count == 0 ||
      held[l->slot - 1].pid != getpid()) {
    if (l)
      l->slot = 0;
    return;
  }
  struct held *h = &held[l->slot - 1];
  if (--h->count == 0) {
    /* removed while still held, so that nobody takes a file about to go */
    struct stat st;
    if (h->file && stat(h->file, &st) == 0 && st.st_dev == h->dev && st.st_ino == h->ino)
      unlink(h->file);
    close(h->fd);
    free(h->file);
    h->fd = -1;
    h->file = NULL;
  }
  l->slot = 0;
}
