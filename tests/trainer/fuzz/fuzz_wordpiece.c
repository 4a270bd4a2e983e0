/* Fuzz target: WordPiece's vocab.txt (tok_wp_load, BERT's
 * tokenizer), loaded with each of the normalisations, and the same bytes as
 * a tokenizer.json (tok_wp_load_json), then a few texts
 * encoded. Encoded ids must be in the vocabulary; a refusal must come with a
 * message; nothing may crash or leak.
 *
 * libFuzzer: ci/fuzz. Criterion: tests/trainer/test_fuzz.c includes this
 * file with FUZZ_NAME defined and runs it over
 * tests/fixtures/trainer/fuzz/wordpiece/. */
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
  fz_path(path, sizeof path, "vocab.txt");
  fz_write(path, data, size);
  for (int mode = 0; mode < 3; mode++) {
    tok_wordpiece *w = NULL;
    dfpo_err err;
    dfpo_err_clear(&err);
    int rc = mode < 2 ? tok_wp_load(&w, path, mode, mode, "[UNK]", &err)
                      : tok_wp_load_json(&w, path, 1, 1, &err);
    if (rc && !err.msg[0])
      abort();
    if (rc)
      continue;
    static const char *const texts[] = {"Hello, World! unaffable", "\xc3\x89t\xc3\xa9 \xe4\xb8\xad",
                                        "##a [UNK]", ""};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
      tok_ids ids = {0};
      if (!tok_wp_encode(w, texts[i], strlen(texts[i]), &ids, &err))
        for (size_t k = 0; k < ids.n; k++)
          if (ids.ids[k] < 0 || (size_t)ids.ids[k] >= tok_wp_vocab_size(w) ||
              !tok_wp_token(w, ids.ids[k]))
            abort();
      tok_ids_free(&ids);
    }
    tok_wp_free(w);
  }
  remove(path);
  return 0;
}
