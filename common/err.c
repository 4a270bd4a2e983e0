#include "common/common.h"

#include <string.h>

void dfpo_err_clear(dfpo_err *e) {
  if (e) {
    e->code = DFPO_OK;
    e->msg[0] = '\0';
  }
}

static int err_vset(dfpo_err *e, int code, const char *fmt, va_list ap) {
  if (!e)
    return code;
  e->code = code;
  vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  return code;
}

int dfpo_err_set(dfpo_err *e, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  err_vset(e, code, fmt, ap);
  va_end(ap);
  return code;
}

int dfpo_err_errno(dfpo_err *e, int code, int errnum, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  err_vset(e, code, fmt, ap);
  va_end(ap);
  if (e) {
    size_t len = strlen(e->msg);
    snprintf(e->msg + len, sizeof e->msg - len, ": %s", strerror(errnum));
  }
  return code;
}

int dfpo_err_prefix(dfpo_err *e, const char *fmt, ...) {
  if (!e || e->code == DFPO_OK)
    return e ? e->code : DFPO_OK;
  char ctx[DFPO_ERR_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ctx, sizeof ctx, fmt, ap);
  va_end(ap);
  /* "<ctx>: <old>", truncated at the end: the front says where. */
  size_t cap = sizeof e->msg - 1;
  size_t lc = strlen(ctx), lo = strlen(e->msg);
  if (lc > cap)
    lc = cap;
  size_t sep = lc + 2 <= cap ? 2 : cap - lc;
  size_t keep = lo < cap - lc - sep ? lo : cap - lc - sep;
  memmove(e->msg + lc + sep, e->msg, keep);
  memcpy(e->msg, ctx, lc);
  memcpy(e->msg + lc, ": ", sep);
  e->msg[lc + sep + keep] = '\0';
  return e->code;
}

void dfpo_text_position(const char *text, size_t pos, int *line, int *col) {
  *line = 1;
  *col = 1;
  for (size_t i = 0; i < pos; i++) {
    if (text[i] == '\n') {
      (*line)++;
      *col = 1;
    } else {
      (*col)++;
    }
  }
}
