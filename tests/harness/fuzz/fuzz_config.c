/* Fuzz target: the run/suite config reader and --set values. The input is a
 * config file's text, then (after a NUL byte, when there is one) --set
 * assignments, one a line, applied over it as `dfpo train --set` does.
 * Each step must succeed or fail with a message (naming the file, for the
 * file); whatever is accepted must print back as JSON; nothing may crash or
 * leak.
 *
 * libFuzzer: ci/fuzz. Criterion: tests/harness/test_fuzz.c includes this
 * file with FUZZ_NAME defined and runs it over
 * tests/fixtures/harness/fuzz/config/. */
#include "harness/config.h"
#include "tests/support/fuzz_file.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef FUZZ_NAME
#define FUZZ_NAME LLVMFuzzerTestOneInput
int FUZZ_NAME(const uint8_t *data, size_t size);
#endif

int FUZZ_NAME(const uint8_t *data, size_t size) {
  size_t clen, slen;
  const uint8_t *sets;
  fz_split(data, size, &clen, &sets, &slen);
  cfg c;
  dfpo_err err;
  dfpo_err_clear(&err);
  if (cfg_init(&c, cfg_schema, &err))
    abort();
  int rc = cfg_merge_text(&c, "fuzz.json", (const char *)data, clen, &err);
  if (rc && strncmp(err.msg, "fuzz.json", 9))
    abort();
  const char *p = (const char *)sets, *end = p + slen;
  for (int k = 0; p < end && k < 16; k++) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
    char *line = malloc(len + 1);
    if (!line)
      abort();
    memcpy(line, p, len);
    line[len] = '\0';
    dfpo_err_clear(&err);
    if (cfg_set(&c, line, &err) && !err.msg[0])
      abort();
    free(line);
    p += len + (nl ? 1 : 0);
  }
  char *json = cfg_to_json(&c);
  if (!json)
    abort();
  free(json);
  cfg_free(&c);
  return 0;
}
