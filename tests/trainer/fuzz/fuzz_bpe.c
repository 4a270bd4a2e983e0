/* Fuzz target: OpenAI's tokenizer files (tok_load_files): encoder.json
 * is the input up to its first NUL byte, vocab.bpe the rest. A tokenizer
 * that loads must encode a few texts to ids inside its vocabulary; a
 * refusal must come with a message; nothing may crash or leak.
 *
 * libFuzzer: ci/fuzz. Criterion: tests/trainer/test_fuzz.c includes this
 * file with FUZZ_NAME defined and runs it over
 * tests/fixtures/trainer/fuzz/bpe/. */
#include "tests/support/fuzz_file.h"
#include "trainer/tok.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef FUZZ_NAME
#define FUZZ_NAME LLVMFuzzerTestOneInput
int FUZZ_NAME(const uint8_t *data, size_t size);
#endif

/* Encodes a few texts with t; every id must be in the vocabulary. */
static void fz_encode_some(tok_tokenizer *t) {
  static const char *const texts[] = {"Hello world", " the cat's   hat\n\n",
                                      "\xc3\xa9t\xc3\xa9 42!", "<|endoftext|>", ""};
  for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
    tok_ids ids = {0};
    dfpo_err err;
    dfpo_err_clear(&err);
    if (tok_encode(t, texts[i], strlen(texts[i]), 0, &ids, &err)) {
      if (!err.msg[0])
        abort();
    } else {
      for (size_t k = 0; k < ids.n; k++)
        if (ids.ids[k] < 0 || (size_t)ids.ids[k] >= tok_vocab_size(t))
          abort();
    }
    tok_ids_free(&ids);
  }
}

int FUZZ_NAME(const uint8_t *data, size_t size) {
  size_t vlen, mlen;
  const uint8_t *merges;
  fz_split(data, size, &vlen, &merges, &mlen);
  char vpath[600], mpath[600];
  fz_path(vpath, sizeof vpath, "encoder.json");
  fz_path(mpath, sizeof mpath, "vocab.bpe");
  fz_write(vpath, data, vlen);
  fz_write(mpath, merges, mlen);
  tok_tokenizer *t = NULL;
  dfpo_err err;
  dfpo_err_clear(&err);
  int rc = tok_load_files(&t, vpath, mpath, &err);
  if (rc && !err.msg[0])
    abort();
  if (!rc) {
    fz_encode_some(t);
    tok_free(t);
  }
  remove(vpath);
  remove(mpath);
  return 0;
}
