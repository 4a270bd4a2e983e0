/* Fuzz target: the JSONL line parser and the record converters behind the
 * RTP and CommonGen importers. The input is split into lines; each line is
 * parsed and, when it is an object, converted both ways. Errors must name
 * the file and line; nothing may crash or leak.
 *
 * libFuzzer: ci/fuzz builds it with clang -fsanitize=fuzzer,address.
 * Criterion: tests/datasets/test_fuzz.c includes this file with FUZZ_NAME
 * defined and runs it over tests/fixtures/datasets/fuzz/jsonl/. */
#include "datasets/datasets.h"
#include "datasets/ds_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef FUZZ_NAME
#define FUZZ_NAME LLVMFuzzerTestOneInput
int FUZZ_NAME(const uint8_t *data, size_t size);
#endif

static void check_err(const dfpo_err *err, int rc) {
  if (rc && (!err->msg[0] || strncmp(err->msg, "fuzz.jsonl:", 11)))
    abort();
}

int FUZZ_NAME(const uint8_t *data, size_t size) {
  const char *p = (const char *)data, *end = p + size;
  size_t lineno = 0;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
    lineno++;
    dfpo_err err;
    dfpo_err_clear(&err);
    cJSON *o = NULL;
    int rc = ds_jsonl_parse_line(p, len, "fuzz.jsonl", lineno, &o, &err);
    check_err(&err, rc);
    if (rc == DFPO_OK) {
      cJSON *rec = NULL;
      size_t scenes = 0;
      dfpo_err_clear(&err);
      rc = ds_rtp_record(o, "r", "fuzz.jsonl", lineno, &rec, &err);
      check_err(&err, rc);
      cJSON_Delete(rec);
      for (int need = 0; need < 2; need++) {
        rec = NULL;
        dfpo_err_clear(&err);
        rc = ds_commongen_record(o, "c", "fuzz.jsonl", lineno, need, &rec, &scenes, &err);
        check_err(&err, rc);
        if (rc == DFPO_OK) {
          char *s = cJSON_PrintUnformatted(rec);
          free(s);
        }
        cJSON_Delete(rec);
      }
      cJSON_Delete(o);
    }
    /* the IMDB text rules on the raw bytes of the line */
    char *copy = malloc(len + 1);
    if (copy) {
      memcpy(copy, p, len);
      copy[len] = '\0';
      size_t n = ds_imdb_clean(copy, len);
      if (ds_imdb_prompt_len(copy, n) > n)
        abort();
      char *fixed = dfpo_utf8_fix(copy, n);
      free(fixed);
      free(copy);
    }
    p += len + (nl ? 1 : 0);
  }
  return 0;
}
