/* Growable arrays and byte buffers that refuse (with a message) instead of
 * overflowing, and path formatting that refuses instead of truncating. */
#include "common/common.h"

#include <stdlib.h>
#include <string.h>

int dfpo_grow(void *arrp, size_t *cap, size_t need, size_t elem, size_t first, size_t max_elems,
              dfpo_err *err) {
  if (need <= *cap)
    return DFPO_OK;
  if (need > max_elems)
    return dfpo_err_set(err, DFPO_ERUNTIME, "more than %zu elements (%zu asked for)", max_elems,
                        need);
  /* lim: the most elements both the cap and size_t allow */
  size_t lim = elem > 1 && max_elems > SIZE_MAX / elem ? SIZE_MAX / elem : max_elems;
  if (need > lim)
    return dfpo_err_set(err, DFPO_ERUNTIME, "%zu elements of %zu bytes overflow size_t", need,
                        elem);
  size_t nc = *cap ? *cap : first ? first : 16;
  while (nc < need)
    nc = nc > lim / 2 ? lim : nc * 2;
  if (nc > lim)
    nc = lim;
  /* memcpy, not a void ** cast: the pointer is some T * the caller owns */
  void *p;
  memcpy(&p, arrp, sizeof p);
  void *q = realloc(p, nc * elem);
  if (!q)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  memcpy(arrp, &q, sizeof q);
  *cap = nc;
  return DFPO_OK;
}

void dfpo_buf_init(dfpo_buf *b, size_t max) {
  b->data = NULL;
  b->len = b->cap = 0;
  b->max = max;
}

int dfpo_buf_reserve(dfpo_buf *b, size_t extra, dfpo_err *err) {
  if (b->max && extra > b->max - b->len)
    return dfpo_err_set(err, DFPO_ERUNTIME, "more than %zu bytes (%zu + %zu asked for)", b->max,
                        b->len, extra);
  if (extra >= SIZE_MAX - b->len) /* no room left for the NUL */
    return dfpo_err_set(err, DFPO_ERUNTIME, "%zu + %zu bytes overflow size_t", b->len, extra);
  int rc = dfpo_grow(&b->data, &b->cap, b->len + extra + 1, 1, 64, DFPO_NOCAP, err);
  if (rc)
    return rc;
  b->data[b->len] = '\0';
  return DFPO_OK;
}

int dfpo_buf_add(dfpo_buf *b, const void *data, size_t n, dfpo_err *err) {
  int rc = dfpo_buf_reserve(b, n, err);
  if (rc)
    return rc;
  if (n)
    memcpy(b->data + b->len, data, n);
  b->len += n;
  b->data[b->len] = '\0';
  return DFPO_OK;
}

int dfpo_buf_adds(dfpo_buf *b, const char *s, dfpo_err *err) {
  return dfpo_buf_add(b, s, strlen(s), err);
}

int dfpo_buf_vaddf(dfpo_buf *b, dfpo_err *err, const char *fmt, va_list ap) {
  va_list aq;
  va_copy(aq, ap);
  int w = vsnprintf(NULL, 0, fmt, aq);
  va_end(aq);
  if (w < 0)
    return dfpo_err_set(err, DFPO_ERUNTIME, "cannot format \"%s\"", fmt);
  int rc = dfpo_buf_reserve(b, (size_t)w, err);
  if (rc)
    return rc;
  vsnprintf(b->data + b->len, (size_t)w + 1, fmt, ap);
  b->len += (size_t)w;
  return DFPO_OK;
}

int dfpo_buf_addf(dfpo_buf *b, dfpo_err *err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = dfpo_buf_vaddf(b, err, fmt, ap);
  va_end(ap);
  return rc;
}

void dfpo_buf_reset(dfpo_buf *b) {
  b->len = 0;
  if (b->data)
    b->data[0] = '\0';
}

char *dfpo_buf_detach(dfpo_buf *b, size_t *len) {
  char *s = b->data ? b->data : calloc(1, 1);
  if (s && len)
    *len = b->len;
  if (s)
    dfpo_buf_init(b, b->max);
  return s;
}

void dfpo_buf_free(dfpo_buf *b) {
  free(b->data);
  dfpo_buf_init(b, b->max);
}

int dfpo_path_fmt(char *buf, size_t n, dfpo_err *err, const char *fmt, ...) {
  va_list ap, aq;
  va_start(ap, fmt);
  va_copy(aq, ap);
  int w = vsnprintf(buf, n, fmt, ap);
  va_end(ap);
  if (w >= 0 && (size_t)w < n) {
    va_end(aq);
    return DFPO_OK;
  }
  if (n)
    buf[0] = '\0';
  /* the message names the whole path, which the caller's buffer could not */
  char *full = w < 0 ? NULL : malloc((size_t)w + 1);
  if (full)
    vsnprintf(full, (size_t)w + 1, fmt, aq);
  va_end(aq);
  int rc = full ? dfpo_err_set(err, DFPO_ERUNTIME, "path too long: %s", full)
                : dfpo_err_set(err, DFPO_ERUNTIME, "path too long: cannot format \"%s\"", fmt);
  free(full);
  return rc;
}
