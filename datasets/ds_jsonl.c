#include "datasets/ds_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int ds_jsonl_open(ds_jsonl *j, const char *path, dfpo_err *err) {
  memset(j, 0, sizeof *j);
  j->fp = fopen(path, "rb");
  if (!j->fp)
    return dfpo_err_errno(err, errno == ENOENT ? DFPO_EDATA : DFPO_ERUNTIME, errno,
                          "%s: cannot open", path);
  if (!(j->path = ds_strdup(path))) {
    fclose(j->fp);
    j->fp = NULL;
    return dfpo_err_set(err, DFPO_ERUNTIME, "%s: out of memory", path);
  }
  return DFPO_OK;
}

void ds_jsonl_close(ds_jsonl *j) {
  if (j->fp)
    fclose(j->fp);
  free(j->path);
  free(j->line);
  memset(j, 0, sizeof *j);
}

static int blank(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
      return 0;
  return 1;
}

int ds_jsonl_parse_line(const char *line, size_t len, const char *name, size_t lineno, cJSON **obj,
                        dfpo_err *err) {
  *obj = NULL;
  if (memchr(line, '\0', len))
    return dfpo_err_set(err, DFPO_EDATA, "%s:%zu: contains a NUL byte", name, lineno);
  long nul = dfpo_json_nul_escape(line, len);
  if (nul >= 0)
    return dfpo_err_set(err, DFPO_EDATA, "%s:%zu:%ld: \\u0000 in a string (a NUL byte)", name,
                        lineno, nul + 1);
  const char *end = NULL;
  cJSON *o = cJSON_ParseWithLengthOpts(line, len, &end, 0);
  if (!o) {
    size_t col = end && end >= line && end <= line + len ? (size_t)(end - line) + 1 : 1;
    return dfpo_err_set(err, DFPO_EDATA, "%s:%zu:%zu: malformed JSON", name, lineno, col);
  }
  if (end && end < line + len && !blank(end, (size_t)(line + len - end))) {
    cJSON_Delete(o);
    return dfpo_err_set(err, DFPO_EDATA, "%s:%zu:%zu: text after the JSON object", name, lineno,
                        (size_t)(end - line) + 1);
  }
  if (!cJSON_IsObject(o)) {
    cJSON_Delete(o);
    return dfpo_err_set(err, DFPO_EDATA, "%s:%zu: not a JSON object", name, lineno);
  }
  *obj = o;
  return DFPO_OK;
}

int ds_jsonl_next(ds_jsonl *j, cJSON **obj, dfpo_err *err) {
  *obj = NULL;
  for (;;) {
    errno = 0;
    ssize_t n = getline(&j->line, &j->cap, j->fp);
    if (n < 0) {
      if (ferror(j->fp))
        return dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s:%zu: read error", j->path,
                              j->lineno + 1);
      return DFPO_OK;
    }
    j->lineno++;
    size_t len = (size_t)n;
    if (len && j->line[len - 1] == '\n')
      len--;
    if (blank(j->line, len))
      continue;
    return ds_jsonl_parse_line(j->line, len, j->path, j->lineno, obj, err);
  }
}
