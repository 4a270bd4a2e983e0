/* Fuzz target: Hugging Face's tokenizer.json with a BPE model
 * (tok_load_hf_json). A tokenizer that loads must encode a few texts to ids
 * inside its vocabulary; a refusal must name the file; nothing may crash
 * or leak.
 *
 * libFuzzer: ci/fuzz. Criterion: tests/trainer/test_fuzz.c includes this
 * file with FUZZ_NAME defined and runs it over
 * tests/fixtures/trainer/fuzz/hfjson/. */
#include "tests/support/fuzz_file.h"
#include "trainer/tok.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef FUZZ_NAME
#define FUZZ_NAME LLVMFuzzerTestOneInput
int FUZZ_NAME(const uint8_t *data, size_t size);
#endif

int FUZZ_NAME(const uint8_t *data, size_t size) {
  char path[600];
  fz_path(path, sizeof path, "tokenizer.json");
  fz_write(path, data, size);
  tok_tokenizer *t = NULL;
  dfpo_err err;
  dfpo_err_clear(&err);
  int rc = tok_load_hf_json(&t, path, &err);
  if (rc && !strstr(err.msg, "tokenizer.json"))
    abort();
  if (!rc) {
    static const char *const texts[] = {"Hello world", " a  b\n", "\xe2\x82\xac x", ""};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
      tok_ids ids = {0};
      if (!tok_encode(t, texts[i], strlen(texts[i]), 0, &ids, &err))
        for (size_t k = 0; k < ids.n; k++)
          if (ids.ids[k] < 0 || (size_t)ids.ids[k] >= tok_vocab_size(t))
            abort();
      tok_ids_free(&ids);
    }
    tok_free(t);
  }
  remove(path);
  return 0;
}
