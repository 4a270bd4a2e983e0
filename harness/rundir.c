/* A run folder's DONE stamp and the checked reading of its train.jsonl
 * (harness/rundir.h). */
#include "harness/rundir.h"
#include "datasets/datasets.h"
#include "harness/config.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int rundir_done_write(const char *dir, dfpo_err *err) {
  ds_file_hash *f = NULL;
  size_t n = 0;
  char path[4200];
  int rc = dfpo_path_fmt(path, sizeof path, err, "%s/DONE", dir);
  if (rc || (rc = ds_hash_tree(dir, "DONE", &f, &n, err)))
    return rc;
  cJSON *o = cJSON_CreateObject(), *files = cJSON_AddArrayToObject(o, "files");
  cJSON_AddNumberToObject(o, "done_version", RUNDIR_DONE_VERSION);
  for (size_t i = 0; i < n; i++) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "path", f[i].path);
    cJSON_AddNumberToObject(e, "size", (double)f[i].size);
    cJSON_AddStringToObject(e, "sha256", f[i].sha256);
    cJSON_AddItemToArray(files, e);
  }
  ds_hash_tree_free(f, n);
  rc = cfg_json_write(path, o, err);
  cJSON_Delete(o);
  return rc;
}

int rundir_done_check(const char *dir, dfpo_err *err) {
  char path[4200], file[8400];
  int rc = dfpo_path_fmt(path, sizeof path, err, "%s/DONE", dir);
  if (rc)
    return rc;
  cJSON *o;
  if ((rc = cfg_json_read(path, &o, err)))
    return rc;
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "done_version"),
              *files = cJSON_GetObjectItemCaseSensitive(o, "files"), *e;
  if (!cJSON_IsNumber(v) || v->valuedouble != RUNDIR_DONE_VERSION || !cJSON_IsArray(files) ||
      cJSON_GetArraySize(files) == 0) {
    cJSON_Delete(o);
    return dfpo_err_set(err, DFPO_EDATA,
                        "%s: not a list of the run's files (done_version %d; an older dfpo "
                        "wrote a bare stamp)",
                        path, RUNDIR_DONE_VERSION);
  }
  cJSON_ArrayForEach(e, files) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(e, "path"),
                *sz = cJSON_GetObjectItemCaseSensitive(e, "size"),
                *h = cJSON_GetObjectItemCaseSensitive(e, "sha256");
    if (!cJSON_IsString(p) || !p->valuestring[0] || p->valuestring[0] == '/' ||
        strstr(p->valuestring, "..") || !cJSON_IsNumber(sz) || sz->valuedouble < 0 ||
        !cJSON_IsString(h) || strlen(h->valuestring) != 64) {
      rc = dfpo_err_set(err, DFPO_EDATA, "%s: a file entry needs \"path\", \"size\" and \"sha256\"",
                        path);
      break;
    }
    if ((rc = dfpo_path_fmt(file, sizeof file, err, "%s/%s", dir, p->valuestring)))
      break;
    struct stat st;
    if (lstat(file, &st) != 0 || !S_ISREG(st.st_mode)) {
      rc = dfpo_err_set(err, DFPO_EDATA, "%s: %s is missing", dir, p->valuestring);
      break;
    }
    if ((double)st.st_size != sz->valuedouble) {
      rc = dfpo_err_set(err, DFPO_EDATA, "%s: %s has %lld bytes, DONE lists %.0f", dir,
                        p->valuestring, (long long)st.st_size, sz->valuedouble);
      break;
    }
    char hex[65];
    if ((rc = ds_sha256_file(file, hex, err)))
      break;
    if (strcmp(hex, h->valuestring)) {
      rc = dfpo_err_set(err, DFPO_EDATA, "%s: %s has SHA-256 %s, DONE lists %s", dir,
                        p->valuestring, hex, h->valuestring);
      break;
    }
  }
  cJSON_Delete(o);
  return rc;
}

/* The first number in o (recursively) that is not finite, or NULL. */
static const cJSON *non_finite(const cJSON *o) {
  if (cJSON_IsNumber(o))
    return isfinite(o->valuedouble) ? NULL : o;
  const cJSON *c, *bad = NULL;
  cJSON_ArrayForEach(c, o) {
    if ((bad = non_finite(c)))
      break;
  }
  return bad;
}

/* The reader behind rundir_log_read and rundir_log_keep: key is the field
 * that must equal each line's 0-based index; limit as rundir_log_read's;
 * max_lines >= 0 stops after that many lines (the rest is not looked at);
 * *end gets the byte offset just past the last line read. */
static int log_read(const char *path, const char *key, int64_t limit, int64_t max_lines,
                    rundir_line_fn fn, void *ctx, int64_t *lines, size_t *end, dfpo_err *err) {
  char *text;
  size_t len;
  int64_t n = 0;
  if (lines)
    *lines = 0;
  int rc = dfpo_read_file(path, &text, &len, err);
  if (rc)
    return rc;
  if (limit >= 0) {
    if ((uint64_t)limit > len) {
      /* count the whole lines there are, to say where it was cut */
      for (size_t i = 0; i < len; i++)
        n += text[i] == '\n';
      free(text);
      return dfpo_err_set(err, DFPO_EDATA,
                          "%s:%" PRId64 ": cut short: %zu bytes, but the resumable checkpoint "
                          "recorded %" PRId64 " (remove the run folder to start it again)",
                          path, n + 1, len, limit);
    }
    len = (size_t)limit;
  }
  size_t pos = 0;
  while (!rc && pos < len && (max_lines < 0 || n < max_lines)) {
    const char *line = text + pos, *nl = memchr(line, '\n', len - pos);
    size_t ll = nl ? (size_t)(nl - line) : len - pos;
    cJSON *o = NULL;
    if ((rc = ds_jsonl_parse_line(line, ll, path, (size_t)n + 1, &o, err)))
      break;
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key), *bad = non_finite(o);
    if (!nl)
      rc = dfpo_err_set(err, DFPO_EDATA, "%s:%" PRId64 ": the last line is cut (no newline)", path,
                        n + 1);
    else if (bad)
      rc = dfpo_err_set(err, DFPO_EDATA, "%s:%" PRId64 ": \"%s\" is not a finite number", path,
                        n + 1, bad->string ? bad->string : "?");
    else if (!cJSON_IsNumber(it) || it->valuedouble != (double)n)
      rc = dfpo_err_set(err, DFPO_EDATA,
                        "%s:%" PRId64 ": \"%s\" should be %" PRId64 " (one line per %s, in order)",
                        path, n + 1, key, n, key);
    else if (fn)
      rc = fn(ctx, n, o, err);
    cJSON_Delete(o);
    if (!rc) {
      n++;
      pos += ll + 1;
    }
  }
  free(text);
  if (!rc && lines)
    *lines = n;
  if (end)
    *end = pos;
  return rc;
}

int rundir_log_read(const char *path, int64_t limit, rundir_line_fn fn, void *ctx, int64_t *lines,
                    dfpo_err *err) {
  return log_read(path, "iteration", limit, -1, fn, ctx, lines, NULL, err);
}

int rundir_log_keep(const char *path, const char *key, int64_t n, dfpo_err *err) {
  int64_t lines = 0;
  size_t end = 0;
  if (n == 0 && access(path, F_OK) != 0)
    return DFPO_OK; /* nothing logged yet and nothing to keep */
  int rc = log_read(path, key, -1, n, NULL, NULL, &lines, &end, err);
  if (rc)
    return rc;
  if (lines < n)
    return dfpo_err_set(err, DFPO_EDATA,
                        "%s: %" PRId64 " whole lines, but the checkpoint is at %s %" PRId64
                        ": the log lost lines (remove the folder to start again)",
                        path, lines, key, n);
  if (truncate(path, (off_t)end) != 0)
    return dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot cut back to its checkpoint", path);
  return DFPO_OK;
}

int rundir_log_sync(FILE *log) {
  return fsync(fileno(log)) != 0 && errno != EINVAL ? -1 : 0;
}
