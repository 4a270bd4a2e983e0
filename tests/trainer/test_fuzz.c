/* Runs the trainer fuzz targets (tests/trainer/fuzz/) in CI without
 * libFuzzer: each over its seed corpus in tests/fixtures/trainer/fuzz/<target>/
 * and over 3000 mutants of it made by a seeded generator (ts_fuzz_run). A
 * target aborts on any broken contract; under the sanitizer build this also
 * catches memory errors, undefined behaviour and leaks. ci/fuzz runs the
 * same targets under libFuzzer for longer. */
#include "common/common.h"
#include "tests/support/support.h"

#include <criterion/criterion.h>
#include <stdint.h>

/* mutants per target */
#define FUZZ_MUTANTS 3000

#define FUZZ_NAME fuzz_ckpt_one
int fuzz_ckpt_one(const uint8_t *data, size_t size);
#include "tests/trainer/fuzz/fuzz_ckpt.c"
#undef FUZZ_NAME

#define FUZZ_NAME fuzz_safetensors_one
int fuzz_safetensors_one(const uint8_t *data, size_t size);
#include "tests/trainer/fuzz/fuzz_safetensors.c"
#undef FUZZ_NAME

#define FUZZ_NAME fuzz_ptbin_one
int fuzz_ptbin_one(const uint8_t *data, size_t size);
#include "tests/trainer/fuzz/fuzz_ptbin.c"
#undef FUZZ_NAME

#define FUZZ_NAME fuzz_bpe_one
int fuzz_bpe_one(const uint8_t *data, size_t size);
#include "tests/trainer/fuzz/fuzz_bpe.c"
#undef FUZZ_NAME

#define FUZZ_NAME fuzz_hfjson_one
int fuzz_hfjson_one(const uint8_t *data, size_t size);
#include "tests/trainer/fuzz/fuzz_hfjson.c"
#undef FUZZ_NAME

#define FUZZ_NAME fuzz_wordpiece_one
int fuzz_wordpiece_one(const uint8_t *data, size_t size);
#include "tests/trainer/fuzz/fuzz_wordpiece.c"
#undef FUZZ_NAME

Test(fuzz, ckpt_corpus_and_mutants) {
  ts_fuzz_run(fuzz_ckpt_one, DFPO_FIXTURES "/trainer/fuzz/ckpt", FUZZ_MUTANTS);
}

Test(fuzz, safetensors_corpus_and_mutants) {
  ts_fuzz_run(fuzz_safetensors_one, DFPO_FIXTURES "/trainer/fuzz/safetensors", FUZZ_MUTANTS);
}

Test(fuzz, ptbin_corpus_and_mutants) {
  ts_fuzz_run(fuzz_ptbin_one, DFPO_FIXTURES "/trainer/fuzz/ptbin", FUZZ_MUTANTS);
}

Test(fuzz, bpe_corpus_and_mutants) {
  ts_fuzz_run(fuzz_bpe_one, DFPO_FIXTURES "/trainer/fuzz/bpe", FUZZ_MUTANTS);
}

Test(fuzz, hfjson_corpus_and_mutants) {
  ts_fuzz_run(fuzz_hfjson_one, DFPO_FIXTURES "/trainer/fuzz/hfjson", FUZZ_MUTANTS);
}

Test(fuzz, wordpiece_corpus_and_mutants) {
  ts_fuzz_run(fuzz_wordpiece_one, DFPO_FIXTURES "/trainer/fuzz/wordpiece", FUZZ_MUTANTS);
}

/* Regression (found by the ckpt seeds): a safetensors file whose header is
 * 0x580 = 1408 bytes long starts with the bytes 80 05, which st_open took
 * for a legacy torch.save pickle (PROTO 5) and refused. The fixture's
 * header is 1408 bytes (its first 8 bytes, little-endian), its tensors the
 * 16 of a 1-layer GPT-2 (wte, wpe, 12 per layer, ln_f's 2). */
Test(fuzz, safetensors_header_length_0x580_is_not_a_pickle) {
  const char *path = DFPO_FIXTURES "/trainer/fuzz/safetensors/model.safetensors";
  st_file f;
  dfpo_err err;
  cr_assert_eq(st_open(&f, path, &err), DFPO_OK, "%s", err.msg);
  cr_assert_eq(f.data_off, 8 + 0x580);
  cr_assert_eq(f.n, 16);
  cr_assert_not_null(st_find(&f, "h.0.mlp.c_fc.weight"));
  st_close(&f);
  model_t *m = NULL;
  path = DFPO_FIXTURES "/trainer/fuzz/ckpt/model.safetensors";
  cr_assert_eq(model_load(&m, path, &err), DFPO_OK, "%s", err.msg);
  model_free(m);
}
