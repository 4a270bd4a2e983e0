/* TensorBoard event files (tb_events.h has the format). */
#include "harness/tb_events.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct tb_writer {
  FILE *f;
  char path[4400];
};

uint32_t tb_crc32c(const void *data, size_t n) {
  static uint32_t table[256];
  static int ready;
  if (!ready) { /* a race here writes the same values twice */
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t c = i;
      for (int k = 0; k < 8; k++)
        c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
      table[i] = c;
    }
    ready = 1;
  }
  const unsigned char *p = data;
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; i++)
    c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

static uint32_t masked(uint32_t c) {
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

/* a growing byte buffer for one Event */
typedef struct {
  unsigned char *p;
  size_t n, cap;
  int oom;
} buf;

static void put(buf *b, const void *src, size_t n) {
  if (b->oom || n == 0)
    return;
  if (b->n + n > b->cap) {
    size_t cap = (b->cap ? b->cap * 2 : 256) + n;
    unsigned char *q = realloc(b->p, cap);
    if (!q) {
      b->oom = 1;
      return;
    }
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->n, src, n);
  b->n += n;
}
static void varint(buf *b, uint64_t v) {
  unsigned char t[10];
  size_t n = 0;
  do {
    t[n++] = (unsigned char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
    v >>= 7;
  } while (v);
  put(b, t, n);
}
static void le(buf *b, uint64_t v, int bytes) {
  unsigned char t[8];
  for (int i = 0; i < bytes; i++)
    t[i] = (unsigned char)(v >> (8 * i));
  put(b, t, (size_t)bytes);
}
static void f_double(buf *b, int field, double v) {
  uint64_t u;
  memcpy(&u, &v, 8);
  varint(b, (uint64_t)field << 3 | 1);
  le(b, u, 8);
}
static void f_float(buf *b, int field, float v) {
  uint32_t u;
  memcpy(&u, &v, 4);
  varint(b, (uint64_t)field << 3 | 5);
  le(b, u, 4);
}
static void f_bytes(buf *b, int field, const void *p, size_t n) {
  varint(b, (uint64_t)field << 3 | 2);
  varint(b, n);
  put(b, p, n);
}

static double wall_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int write_record(tb_writer *w, const buf *e, dfpo_err *err) {
  if (e->oom)
    return dfpo_err_set(err, DFPO_ERUNTIME, "%s: out of memory", w->path);
  buf r = {0};
  le(&r, e->n, 8);
  uint32_t hc = masked(tb_crc32c(r.p, 8));
  le(&r, hc, 4);
  put(&r, e->p, e->n);
  le(&r, masked(tb_crc32c(e->p, e->n)), 4);
  int rc = DFPO_OK;
  if (r.oom)
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "%s: out of memory", w->path);
  else if (fwrite(r.p, 1, r.n, w->f) != r.n || fflush(w->f) != 0)
    rc = dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: write failed", w->path);
  free(r.p);
  return rc;
}

int tb_open(tb_writer **out, const char *dir, dfpo_err *err) {
  *out = NULL;
  tb_writer *w = calloc(1, sizeof *w);
  if (!w)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  char host[256] = "localhost";
  if (gethostname(host, sizeof host - 1) != 0)
    snprintf(host, sizeof host, "localhost");
  host[sizeof host - 1] = '\0';
  int rc = dfpo_path_fmt(w->path, sizeof w->path, err, "%s/events.out.tfevents.%lld.%s.%ld", dir,
                         (long long)time(NULL), host, (long)getpid());
  if (rc) {
    free(w);
    return rc;
  }
  if (!(w->f = fopen(w->path, "wb"))) {
    rc = dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot create", w->path);
    free(w);
    return rc;
  }
  buf e = {0};
  f_double(&e, 1, wall_now());
  f_bytes(&e, 3, "brain.Event:2", 13);
  rc = write_record(w, &e, err);
  free(e.p);
  if (rc) {
    fclose(w->f);
    free(w);
    return rc;
  }
  *out = w;
  return DFPO_OK;
}

int tb_scalars(tb_writer *w, int64_t step, const char *const *tags, const double *values, int n,
               dfpo_err *err) {
  buf e = {0}, s = {0}, v = {0};
  f_double(&e, 1, wall_now());
  varint(&e, 2 << 3 | 0);
  varint(&e, (uint64_t)step);
  for (int i = 0; i < n; i++) {
    v.n = 0;
    f_bytes(&v, 1, tags[i], strlen(tags[i]));
    f_float(&v, 2, (float)values[i]);
    if (v.oom)
      s.oom = 1;
    else
      f_bytes(&s, 1, v.p, v.n);
  }
  if (s.oom)
    e.oom = 1;
  else
    f_bytes(&e, 5, s.p, s.n);
  int rc = write_record(w, &e, err);
  free(e.p);
  free(s.p);
  free(v.p);
  return rc;
}

int tb_close(tb_writer *w, dfpo_err *err) {
  if (!w)
    return DFPO_OK;
  int rc = DFPO_OK;
  if (fflush(w->f) != 0 || fsync(fileno(w->f)) != 0)
    rc = dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: write failed", w->path);
  if (fclose(w->f) != 0 && !rc)
    rc = dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: write failed", w->path);
  free(w);
  return rc;
}
