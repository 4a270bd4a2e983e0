/* For fuzz targets whose parser takes a path: a folder made once per
 * process (mkdtemp under $TMPDIR, else /dev/shm when there is one, else
 * /tmp: a disk's journal made a run of creating and removing files take
 * milliseconds; removed at exit when empty)
 * and the input written to a file in it. Header-only so that a target
 * builds both under libFuzzer (ci/fuzz) and inside a Criterion test
 * (ts_fuzz_run), which includes several targets into one file. Prefix fz_.
 * A failure to write aborts: it is the harness's, not the parser's. */
#ifndef DFPO_TESTS_FUZZ_FILE_H
#define DFPO_TESTS_FUZZ_FILE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char fz_dir_buf[512];

static void fz_dir_remove(void) {
  if (fz_dir_buf[0])
    rmdir(fz_dir_buf);
}

/* The process's scratch folder. */
static inline const char *fz_dir(void) {
  if (!fz_dir_buf[0]) {
    const char *t = getenv("TMPDIR");
    if (!t || !*t)
      t = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(fz_dir_buf, sizeof fz_dir_buf, "%s/dfpo-fuzz-XXXXXX", t);
    if (!mkdtemp(fz_dir_buf))
      abort();
    atexit(fz_dir_remove);
  }
  return fz_dir_buf;
}

/* <scratch>/<name> into buf[n]. */
static inline void fz_path(char *buf, size_t n, const char *name) {
  if ((size_t)snprintf(buf, n, "%s/%s", fz_dir(), name) >= n)
    abort();
}

/* Writes data[0..size) to path (created or truncated). */
static inline void fz_write(const char *path, const void *data, size_t size) {
  FILE *fp = fopen(path, "wb");
  if (!fp || (size && fwrite(data, 1, size, fp) != size) || fclose(fp))
    abort();
}

/* Splits data at its first NUL byte (a target reading two files takes them
 * from one input this way): *alen bytes before it, the rest after it
 * (*b, *blen; empty when there is no NUL). */
static inline void fz_split(const uint8_t *data, size_t size, size_t *alen, const uint8_t **b,
                            size_t *blen) {
  size_t i = 0;
  while (i < size && data[i])
    i++;
  *alen = i;
  *b = data + (i < size ? i + 1 : size);
  *blen = i < size ? size - i - 1 : 0;
}

#endif
