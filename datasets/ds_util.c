#include "datasets/ds_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void ds_sfmt(char *buf, size_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, n, fmt, ap);
  va_end(ap);
}

char *ds_strdup(const char *s) {
  if (!s)
    return NULL;
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d)
    memcpy(d, s, n);
  return d;
}

int ds_member_match(const ds_member *m, size_t n, const char *rel, size_t *which) {
  if (n == 0) {
    if (which)
      *which = 0;
    return 1;
  }
  for (size_t i = 0; i < n; i++)
    if (fnmatch(m[i].path, rel, FNM_PATHNAME) == 0) {
      if (which)
        *which = i;
      return 1;
    }
  return 0;
}

int ds_join(char *buf, size_t n, const char *a, const char *b, dfpo_err *err) {
  return dfpo_path_fmt(buf, n, err, "%s/%s", a, b);
}

static int rm_rec(char *path, size_t cap, dfpo_err *err) {
  struct stat st;
  if (lstat(path, &st) != 0)
    return errno == ENOENT ? DFPO_OK
                           : dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot stat", path);
  if (S_ISDIR(st.st_mode)) {
    DIR *d = opendir(path);
    if (!d)
      return dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot open folder", path);
    size_t len = strlen(path);
    struct dirent *de;
    int rc = DFPO_OK;
    while (rc == DFPO_OK && (de = readdir(d))) {
      if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
        continue;
      if (len + 1 + strlen(de->d_name) + 1 > cap) {
        rc = dfpo_err_set(err, DFPO_ERUNTIME, "path too long under %s", path);
        break;
      }
      path[len] = '/';
      strcpy(path + len + 1, de->d_name);
      rc = rm_rec(path, cap, err);
      path[len] = '\0';
    }
    closedir(d);
    if (rc)
      return rc;
    if (rmdir(path) != 0)
      return dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot remove folder", path);
    return DFPO_OK;
  }
  if (unlink(path) != 0 && errno != ENOENT)
    return dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot remove", path);
  return DFPO_OK;
}

int ds_rmtree(const char *path, dfpo_err *err) {
  char buf[DS_PATH_MAX];
  int rc = dfpo_path_fmt(buf, sizeof buf, err, "%s", path);
  return rc ? rc : rm_rec(buf, sizeof buf, err);
}

int ds_is_hex64(const char *s) {
  if (!s)
    return 0;
  size_t i = 0;
  for (; s[i]; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
      return 0;
  return i == 64;
}

void ds_utc_now(char buf[32]) {
  dfpo_utc_now(buf);
}

int ds_writer_open(ds_writer *w, const char *path, dfpo_err *err) {
  memset(w, 0, sizeof *w);
  int rc = dfpo_atomic_open(&w->a, path, err);
  if (rc == DFPO_OK)
    w->open = 1;
  return rc;
}

int ds_writer_put(ds_writer *w, cJSON *obj, size_t references, dfpo_err *err) {
  int rc = ds_writer_put_copy(w, obj, references, err);
  cJSON_Delete(obj);
  return rc;
}

int ds_writer_put_copy(ds_writer *w, const cJSON *obj, size_t references, dfpo_err *err) {
  char *s = cJSON_PrintUnformatted(obj);
  if (!s)
    return dfpo_err_set(err, DFPO_ERUNTIME, "%s: out of memory", w->a.path);
  int bad = fputs(s, w->a.fp) < 0 || fputc('\n', w->a.fp) == EOF;
  free(s);
  if (bad)
    return dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: write failed", w->a.path);
  w->records++;
  w->references += references;
  return DFPO_OK;
}

int ds_writer_commit(ds_writer *w, dfpo_err *err) {
  w->open = 0;
  return dfpo_atomic_commit(&w->a, err);
}

void ds_writer_abort(ds_writer *w) {
  if (w->open)
    dfpo_atomic_abort(&w->a);
  w->open = 0;
}

static int walk_below(const char *root, char *rel, size_t cap, int file_links, ds_walk_fn visit,
                      void *ctx, dfpo_err *err) {
  char path[DS_PATH_MAX];
  int rc = rel[0] ? ds_join(path, sizeof path, root, rel, err)
                  : dfpo_path_fmt(path, sizeof path, err, "%s", root);
  if (rc)
    return rc;
  DIR *d = opendir(path);
  if (!d)
    return dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot open folder", path);
  size_t len = strlen(rel);
  struct dirent *de;
  while (rc == DFPO_OK && (de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
      continue;
    size_t nl = strlen(de->d_name);
    if (len + nl + 2 > cap) {
      rc = dfpo_err_set(err, DFPO_ERUNTIME, "path too long under %s", path);
      break;
    }
    if (len)
      rel[len] = '/';
    memcpy(rel + len + (len ? 1 : 0), de->d_name, nl + 1);
    char full[DS_PATH_MAX];
    struct stat st;
    if ((rc = ds_join(full, sizeof full, root, rel, err)))
      break;
    if (lstat(full, &st) != 0)
      rc = dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot stat", full);
    else if (S_ISDIR(st.st_mode))
      rc = walk_below(root, rel, cap, file_links, visit, ctx, err);
    else if (S_ISREG(st.st_mode) ||
             (file_links && S_ISLNK(st.st_mode) && stat(full, &st) == 0 && S_ISREG(st.st_mode)))
      rc = visit(ctx, rel, full, &st, err);
    rel[len] = '\0';
  }
  closedir(d);
  return rc;
}

int ds_walk_files(const char *root, int file_links, ds_walk_fn visit, void *ctx, dfpo_err *err) {
  char rel[DS_PATH_MAX] = "";
  return walk_below(root, rel, sizeof rel, file_links, visit, ctx, err);
}
