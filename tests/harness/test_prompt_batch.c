/* trn_build_batch: the prompts of a batch left-padded to the longest and
 * truncated to task.max_prompt_tokens at the end task.prompt_truncation
 * names. The expected rows are written out by hand below from the rule
 * Hugging Face's tokenizers follow (truncation_side "left" drops the first
 * tokens, "right" the last ones; an encoder's source is truncated before
 * its eos is added, so the eos stays), which RL4LMs' CommonGen configs use
 * (t5_ppo.yml: prompt_truncation_side "right"; t5_nlpo.yml: the tokenizer's
 * truncation_side "left"). A decoder whose tokenizer has its own start
 * (r->bos: Llama's <s>) gets it before each prompt, inside max_prompt, and
 * truncation cuts the text after it (special tokens are added after
 * truncating, as transformers does). And SFT's texts start with that same
 * token. */
#include "harness/train_internal.h"
#include "tests/support/support.h"
#include "trainer/gpt2.h"
#include "trainer/tok.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAD 0

/* Three prompts: 7 tokens (the last, 1, is an eos when seq2seq), 3 tokens
 * and 5 tokens; the batch is built with max_prompt 5. */
static int32_t p0[] = {11, 12, 13, 14, 15, 16, 1};
static int32_t p1[] = {21, 22, 1};
static int32_t p2[] = {31, 32, 33, 34, 1};

static void build_bos(int right, int seq2seq, int bos, int *out, int *kstart_out, int *Tp) {
  static trn_run r; /* large: static, zeroed */
  memset(&r, 0, sizeof r);
  int32_t *ids[3] = {p0, p1, p2};
  size_t len[3] = {7, 3, 5};
  r.prompt_ids[TASK_TEST] = ids;
  r.prompt_len[TASK_TEST] = len;
  r.set.max_prompt = 5;
  r.set.prompt_right = right;
  r.seq2seq = seq2seq;
  r.pad = PAD;
  r.bos = bos;
  size_t items[3] = {0, 1, 2};
  int *tokens = NULL, *kstart = NULL;
  cr_assert_eq(trn_build_batch(&r, TASK_TEST, items, 3, &tokens, &kstart, Tp), 0);
  memcpy(out, tokens, sizeof(int) * 3 * (size_t)*Tp);
  memcpy(kstart_out, kstart, sizeof(int) * 3);
  free(tokens);
  free(kstart);
}

static void build(int right, int seq2seq, int *out, int *kstart_out, int *Tp) {
  build_bos(right, seq2seq, -1, out, kstart_out, Tp);
}

static void expect_rows(const int *got, const int want[3][5], const char *what) {
  for (int b = 0; b < 3; b++)
    for (int j = 0; j < 5; j++)
      cr_expect_eq(got[b * 5 + j], want[b][j], "%s: row %d column %d: %d, want %d", what, b, j,
                   got[b * 5 + j], want[b][j]);
}

Test(prompt_batch, left_truncation_keeps_the_end) {
  int tok[15], ks[3], T;
  build(0, 0, tok, ks, &T);
  cr_assert_eq(T, 5);
  /* 11 12 13 14 15 16 1 -> its last five; the others padded on the left */
  const int want[3][5] = {{13, 14, 15, 16, 1}, {PAD, PAD, 21, 22, 1}, {31, 32, 33, 34, 1}};
  expect_rows(tok, want, "left");
  cr_expect_eq(ks[0], 0);
  cr_expect_eq(ks[1], 2);
  cr_expect_eq(ks[2], 0);
  /* the same for an encoder's source: its eos is already the last token */
  build(0, 1, tok, ks, &T);
  expect_rows(tok, want, "left, seq2seq");
}

Test(prompt_batch, right_truncation_keeps_the_start) {
  int tok[15], ks[3], T;
  /* a decoder's prompt: its first five tokens */
  build(1, 0, tok, ks, &T);
  cr_assert_eq(T, 5);
  const int dec[3][5] = {{11, 12, 13, 14, 15}, {PAD, PAD, 21, 22, 1}, {31, 32, 33, 34, 1}};
  expect_rows(tok, dec, "right");
  /* an encoder's source: its first four tokens, then its eos (T5Tokenizer
   * with truncation_side "right" and max_length 5) */
  build(1, 1, tok, ks, &T);
  const int enc[3][5] = {{11, 12, 13, 14, 1}, {PAD, PAD, 21, 22, 1}, {31, 32, 33, 34, 1}};
  expect_rows(tok, enc, "right, seq2seq");
  cr_expect_eq(ks[0], 0);
  cr_expect_eq(ks[1], 2);
}

Test(prompt_batch, a_tokenizers_own_start_leads_and_survives_truncation) {
  int tok[15], ks[3], T;
  /* <s> = 9, then at most four text tokens: left keeps the text's end */
  build_bos(0, 0, 9, tok, ks, &T);
  cr_assert_eq(T, 5);
  const int left[3][5] = {{9, 14, 15, 16, 1}, {PAD, 9, 21, 22, 1}, {9, 32, 33, 34, 1}};
  expect_rows(tok, left, "left, <s>");
  cr_expect_eq(ks[0], 0);
  cr_expect_eq(ks[1], 1);
  cr_expect_eq(ks[2], 0);
  /* right keeps the text's start */
  build_bos(1, 0, 9, tok, ks, &T);
  const int right[3][5] = {{9, 11, 12, 13, 14}, {PAD, 9, 21, 22, 1}, {9, 31, 32, 33, 34}};
  expect_rows(tok, right, "right, <s>");
}

/* trn_sft_tokenize: a decoder's SFT text is [start] + the reference's ids,
 * the start being the tokenizer's own (r->bos: Llama's <s>, here the id 7)
 * or else the pad (<|endoftext|>), as written out here; a tokenizer trained
 * on the reference itself gives the ids (tok_encode). Cut to the context
 * it is not: 1 + 7 tokens or so against 32 positions. */
Test(prompt_batch, sft_texts_start_with_the_tokenizers_start) {
  static trn_run r;
  char dir[256];
  ts_tmpdir(dir, sizeof dir);
  const char *ref = "the cat sat on the mat";
  char corpus[300];
  snprintf(corpus, sizeof corpus, "%s/corpus.txt", dir);
  ts_write_text(corpus, ref);
  const char *files[] = {corpus};
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(tok_train(files, 1, 270, dir, NULL, &err), 0, "%s", err.msg);
  tok_tokenizer *tok;
  cr_assert_eq(tok_load(&tok, dir, &err), 0, "%s", err.msg);
  tok_ids v = {0};
  cr_assert_eq(tok_encode(tok, ref, strlen(ref), 0, &v, &err), 0, "%s", err.msg);
  gpt2_config gc = {.vocab_size = 270, .n_ctx = 32, .n_layer = 1, .n_head = 1, .n_embd = 8};
  model_t *m;
  cr_assert_eq(gpt2_new(&m, &gc, &err), 0, "%s", err.msg);
  task_item item = {.prompt = "the cat", .reference = (char *)ref};
  task_item *items = &item;
  for (int bos = -1; bos <= 7; bos += 8) {
    memset(&r, 0, sizeof r);
    r.tok = tok;
    r.policy = m;
    r.pad = 5;
    r.bos = bos;
    r.tk.n[TASK_TRAIN] = 1;
    r.tk.items[TASK_TRAIN] = items;
    cr_assert_eq(trn_sft_tokenize(&r, &err), 0, "%s", err.msg);
    cr_assert_eq(r.sft_len[0], v.n + 1);
    cr_expect_eq(r.sft_ids[0][0], bos >= 0 ? 7 : 5, "start %d", r.sft_ids[0][0]);
    for (size_t k = 0; k < v.n; k++)
      cr_expect_eq(r.sft_ids[0][k + 1], v.ids[k], "id %zu", k);
    free(r.sft_ids[0]);
    free(r.sft_ids);
    free(r.sft_len);
  }
  tok_ids_free(&v);
  model_free(m);
  tok_free(tok);
  ts_rmtree(dir);
}
