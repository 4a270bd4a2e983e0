#include "common/common.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int atomic_fail_before_rename;
static unsigned atomic_counter;

void dfpo_atomic_set_fail_before_rename(int on) {
  atomic_fail_before_rename = on;
}

static char *str_dup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d)
    memcpy(d, s, n);
  return d;
}

int dfpo_atomic_open(dfpo_atomic *a, const char *path, dfpo_err *err) {
  memset(a, 0, sizeof *a);
  size_t n = strlen(path) + 64;
  a->path = str_dup(path);
  a->tmp_path = malloc(n);
  if (!a->path || !a->tmp_path) {
    /* Not dfpo_atomic_abort: tmp_path holds no name yet, nothing to unlink. */
    free(a->path);
    free(a->tmp_path);
    memset(a, 0, sizeof *a);
    return dfpo_err_set(err, DFPO_ERUNTIME, "%s: out of memory", path);
  }
  snprintf(a->tmp_path, n, "%s.tmp.%ld.%u", path, (long)getpid(), atomic_counter++);
  int fd = open(a->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) {
    int e = errno;
    free(a->path);
    free(a->tmp_path);
    memset(a, 0, sizeof *a);
    return dfpo_err_errno(err, DFPO_ERUNTIME, e, "%s: cannot create temporary file", path);
  }
  a->fp = fdopen(fd, "wb");
  if (!a->fp) {
    int e = errno;
    close(fd);
    unlink(a->tmp_path);
    free(a->path);
    free(a->tmp_path);
    memset(a, 0, sizeof *a);
    return dfpo_err_errno(err, DFPO_ERUNTIME, e, "%s: cannot open temporary file", path);
  }
  return DFPO_OK;
}

void dfpo_atomic_abort(dfpo_atomic *a) {
  if (a->fp)
    fclose(a->fp);
  if (a->tmp_path)
    unlink(a->tmp_path);
  free(a->path);
  free(a->tmp_path);
  memset(a, 0, sizeof *a);
}

void dfpo_fsync_parent(const char *path) {
  char *dir = str_dup(path);
  if (!dir)
    return;
  char *slash = strrchr(dir, '/');
  const char *d = ".";
  if (slash == dir)
    d = "/";
  else if (slash) {
    *slash = '\0';
    d = dir;
  }
  int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd); /* best effort: some file systems refuse fsync on folders */
    close(fd);
  }
  free(dir);
}

int dfpo_atomic_commit(dfpo_atomic *a, dfpo_err *err) {
  int rc = DFPO_OK;
  if (fflush(a->fp) != 0 || ferror(a->fp))
    rc = dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: write failed", a->path);
  else if (fsync(fileno(a->fp)) != 0)
    rc = dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: fsync failed", a->path);
  if (fclose(a->fp) != 0 && rc == DFPO_OK)
    rc = dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: close failed", a->path);
  a->fp = NULL;
  if (rc == DFPO_OK && atomic_fail_before_rename)
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "%s: simulated failure before rename", a->path);
  if (rc == DFPO_OK && rename(a->tmp_path, a->path) != 0)
    rc = dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: rename from %s failed", a->path,
                        a->tmp_path);
  if (rc == DFPO_OK) {
    dfpo_fsync_parent(a->path);
    free(a->tmp_path);
    a->tmp_path = NULL; /* renamed: nothing to unlink */
  }
  dfpo_atomic_abort(a);
  return rc;
}

int dfpo_atomic_write_file(const char *path, const void *data, size_t len, dfpo_err *err) {
  dfpo_atomic a;
  int rc = dfpo_atomic_open(&a, path, err);
  if (rc)
    return rc;
  if (len && fwrite(data, 1, len, a.fp) != len) {
    int e = errno;
    dfpo_atomic_abort(&a);
    return dfpo_err_errno(err, DFPO_ERUNTIME, e, "%s: write failed", path);
  }
  return dfpo_atomic_commit(&a, err);
}

int dfpo_read_file(const char *path, char **data, size_t *len, dfpo_err *err) {
  *data = NULL;
  FILE *fp = fopen(path, "rb");
  if (!fp)
    return dfpo_err_errno(err, errno == ENOENT ? DFPO_EDATA : DFPO_ERUNTIME, errno,
                          "%s: cannot open", path);
  /* 64 KiB first, then the capacity doubles each time a read fills it */
  dfpo_buf b = DFPO_BUF_INIT;
  int rc = dfpo_buf_reserve(&b, (1 << 16) - 1, err);
  while (!rc) {
    size_t room = b.cap - 1 - b.len;
    size_t got = fread(b.data + b.len, 1, room, fp);
    b.len += got;
    b.data[b.len] = '\0';
    if (got < room)
      break;
    rc = dfpo_buf_reserve(&b, b.cap, err);
  }
  int bad = ferror(fp);
  fclose(fp);
  if (rc) {
    dfpo_buf_free(&b);
    dfpo_err_prefix(err, "%s", path);
    return rc;
  }
  if (bad) {
    dfpo_buf_free(&b);
    return dfpo_err_set(err, DFPO_ERUNTIME, "%s: read error", path);
  }
  *data = dfpo_buf_detach(&b, len);
  return DFPO_OK;
}

int dfpo_mkdirs(const char *path, dfpo_err *err) {
  char *p = str_dup(path);
  if (!p)
    return dfpo_err_set(err, DFPO_ERUNTIME, "%s: out of memory", path);
  for (char *s = p + 1;; s++) {
    if (*s == '/' || *s == '\0') {
      char c = *s;
      *s = '\0';
      if (mkdir(p, 0777) != 0 && errno != EEXIST) {
        int e = errno;
        int rc = dfpo_err_errno(err, DFPO_ERUNTIME, e, "%s: cannot create folder", p);
        free(p);
        return rc;
      }
      *s = c;
      if (c == '\0')
        break;
    }
  }
  free(p);
  struct stat st;
  if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
    return dfpo_err_set(err, DFPO_ERUNTIME, "%s: exists and is not a folder", path);
  return DFPO_OK;
}

int dfpo_cache_dir(char *buf, size_t n, dfpo_err *err) {
  const char *v;
  int w;
  if ((v = getenv("DFPO_HOME")) && v[0])
    w = snprintf(buf, n, "%s", v);
  else if ((v = getenv("XDG_CACHE_HOME")) && v[0])
    w = snprintf(buf, n, "%s/dfpo", v);
  else if ((v = getenv("HOME")) && v[0])
    w = snprintf(buf, n, "%s/.cache/dfpo", v);
  else
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "no cache folder: set DFPO_HOME (or XDG_CACHE_HOME or HOME)");
  if (w < 0 || (size_t)w >= n)
    return dfpo_err_set(err, DFPO_EUSAGE, "cache folder path too long: %s", v);
  return DFPO_OK;
}

/* The pid of an atomic writer's temporary name "<name>.tmp.<pid>.<n>", or
 * 0 when name is not one. */
static long tmp_pid(const char *name) {
  const char *t = NULL;
  for (const char *p = strstr(name, ".tmp."); p; p = strstr(p + 1, ".tmp."))
    t = p; /* the last one: the final name may hold ".tmp." too */
  if (!t || t == name)
    return 0;
  const char *p = t + 5, *d0 = p;
  long pid = 0;
  for (; *p >= '0' && *p <= '9' && pid < 100000000; p++)
    pid = pid * 10 + (*p - '0');
  if (p == d0 || *p != '.' || !p[1])
    return 0;
  for (p++; *p >= '0' && *p <= '9'; p++)
    ;
  return *p == '\0' && pid > 0 ? pid : 0;
}

int dfpo_atomic_sweep(const char *dir, double min_age, int *removed, dfpo_err *err) {
  if (removed)
    *removed = 0;
  DIR *d = opendir(dir);
  if (!d)
    return errno == ENOENT ? DFPO_OK : dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s", dir);
  time_t now = time(NULL);
  struct dirent *de;
  int rc = DFPO_OK;
  while ((de = readdir(d)) != NULL) {
    long pid = tmp_pid(de->d_name);
    if (!pid || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
      continue; /* not a temporary, or its writer may be alive */
    char path[4352];
    if (dfpo_path_fmt(path, sizeof path, NULL, "%s/%s", dir, de->d_name))
      continue;
    struct stat st;
    if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode) || difftime(now, st.st_mtime) < min_age)
      continue;
    if (unlink(path) != 0 && errno != ENOENT) {
      rc = dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot remove", path);
      break;
    }
    dfpo_debug("removed %s, left by process %ld", path, pid);
    if (removed)
      (*removed)++;
  }
  closedir(d);
  return rc;
}

void dfpo_prune_empty_dirs(const char *dir) {
  DIR *d = opendir(dir);
  if (!d)
    return;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
      continue;
    char path[4352];
    struct stat st;
    if (dfpo_path_fmt(path, sizeof path, NULL, "%s/%s", dir, de->d_name) == DFPO_OK &&
        lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
      dfpo_prune_empty_dirs(path);
  }
  closedir(d);
  rmdir(dir); /* fails, harmlessly, when anything is left */
}
