/* Shared by the fuzz targets fuzz_safetensors.c and fuzz_ptbin.c: writes
 * the input to <scratch>/<name>, opens it with `open` (st_open or pt_open),
 * which must succeed or fail with a message naming the file, then checks
 * every entry of the table and reads each small one (at most 2^16
 * elements) as floats. Nothing may crash or leak. */
#ifndef DFPO_TESTS_TRAINER_FUZZ_ST_H
#define DFPO_TESTS_TRAINER_FUZZ_ST_H

#include "tests/support/fuzz_file.h"
#include "trainer/st_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void fz_st_run(int (*open)(st_file *, const char *, dfpo_err *), const char *name,
                      const uint8_t *data, size_t size) {
  char path[600];
  fz_path(path, sizeof path, name);
  fz_write(path, data, size);
  st_file f;
  dfpo_err err;
  dfpo_err_clear(&err);
  int rc = open(&f, path, &err);
  if (rc && !strstr(err.msg, name))
    abort();
  if (!rc) {
    for (int i = 0; i < f.n; i++) {
      const st_entry *e = &f.ents[i];
      if (st_find(&f, e->name) == NULL || e->begin > e->end)
        abort();
      uint64_t n = st_numel(e);
      if (n > (1u << 16))
        continue;
      float *dst = malloc((size_t)n * sizeof(float) + 1);
      if (!dst)
        abort();
      dfpo_err_clear(&err);
      if (st_read_f32(&f, e, e->name, dst, &err) && !err.msg[0])
        abort();
      free(dst);
    }
    st_close(&f);
  }
  remove(path);
}

#endif
