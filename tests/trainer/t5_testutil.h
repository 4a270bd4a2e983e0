/* Shared by the tests that need a T5 Hugging Face folder: a random T5 of a
 * given shape over the small SentencePiece model that
 * tests/trainer/t5_reference.py --spm trains (python3-sentencepiece; the
 * script imports torch too, so callers check ts_python_has("torch,
 * sentencepiece") first), written by model_export_hf (config.json,
 * model.safetensors, spiece.model). */
#ifndef DFPO_TESTS_TRAINER_T5_TESTUTIL_H
#define DFPO_TESTS_TRAINER_T5_TESTUTIL_H

#include "tests/support/support.h"
#include "trainer/t5.h"
#include "trainer/tok.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <sys/stat.h>

/* A tiny T5 of vocabulary V (width 16, 2 heads of 4, MLP 32, one encoder
 * and two decoder layers, 8 buckets up to distance 16, 64 decoder
 * positions, start 0, no end token): v1.1's gated MLP and untied head, or
 * v1.0's. */
static inline t5_config tt_tiny(int V, int gated, int tied) {
  t5_config c = {.vocab_size = V,
                 .d_model = 16,
                 .d_kv = 4,
                 .d_ff = 32,
                 .n_head = 2,
                 .n_layer = 1,
                 .n_dec_layer = 2,
                 .num_buckets = 8,
                 .max_distance = 16,
                 .eps = 1e-6f,
                 .gated = gated,
                 .tied = tied,
                 .n_pos = 64,
                 .start_id = 0,
                 .eos_id = -1};
  return c;
}

/* Trains the tokenizer into spm_dir, then writes a T5 of shape c (its
 * vocab_size set to the tokenizer's) with weights drawn from seed into the
 * new folder `folder`. Returns the config written. */
static inline t5_config tt_random_t5_folder(const char *spm_dir, const char *folder, t5_config c,
                                            uint64_t seed) {
  ts_run r;
  char *sargv[] = {"/usr/bin/python3", DFPO_SOURCE_DIR "/tests/trainer/t5_reference.py", "--spm",
                   (char *)spm_dir, NULL};
  ts_run_cmd(&r, sargv, NULL, NULL);
  cr_assert_eq(r.status, 0, "t5_reference.py --spm: %s", r.err);
  ts_run_free(&r);
  dfpo_err err;
  dfpo_err_clear(&err);
  tok_tokenizer *tok;
  cr_assert_eq(tok_load(&tok, spm_dir, &err), DFPO_OK, "%s", err.msg);
  c.vocab_size = (int)tok_vocab_size(tok);
  model_t *m;
  cr_assert_eq(t5_new(&m, &c, &err), DFPO_OK, "%s", err.msg);
  model_init_random(m, seed);
  cr_assert_eq(mkdir(folder, 0777), 0, "mkdir %s", folder);
  cr_assert_eq(model_export_hf(m, tok, folder, &err), DFPO_OK, "%s", err.msg);
  model_free(m);
  tok_free(tok);
  return c;
}

#endif
