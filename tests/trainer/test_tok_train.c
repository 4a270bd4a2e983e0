/* The BPE trainer on corpora small enough to work out by hand. */
#include "tests/support/support.h"
#include "trainer/tok.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char dir[256];

static void setup(void) {
  ts_tmpdir(dir, sizeof dir);
}
static void teardown(void) {
  ts_rmtree(dir);
}

static void write_text(const char *name, const char *text, char *path, size_t n) {
  snprintf(path, n, "%s/%s", dir, name);
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(dfpo_atomic_write_file(path, text, strlen(text), &err), 0, "%s", err.msg);
}

static char *read_text(const char *sub, const char *name) {
  char path[512], *data;
  snprintf(path, sizeof path, "%s/%s/%s", dir, sub, name);
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(dfpo_read_file(path, &data, NULL, &err), 0, "%s", err.msg);
  return data;
}

static size_t train(const char *text, size_t vocab, const char *sub) {
  char corpus[512], out[512];
  write_text("corpus.txt", text, corpus, sizeof corpus);
  snprintf(out, sizeof out, "%s/%s", dir, sub);
  const char *files[] = {corpus};
  size_t merges = 0;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(tok_train(files, 1, vocab, out, &merges, &err), 0, "%s", err.msg);
  return merges;
}

Test(tok_train, small_corpus_gives_the_hand_computed_merges, .init = setup, .fini = teardown) {
  /* "aab aab aab ab" splits into "aab", " aab" x2, " ab" (G = the space,
   * written as U+0120 in GPT-2's files). Pair counts:
   *   (a,b) 4, (a,a) 3, (G,a) 3          -> merge "a b"
   *   words [a,ab] 1, [G,a,ab] 2, [G,ab] 1: (a,ab) 3, (G,a) 2, (G,ab) 1
   *                                      -> merge "a ab"
   *   words [aab] 1, [G,aab] 2, [G,ab] 1: (G,aab) 2, (G,ab) 1 -> "G aab"
   *   then (G,ab) 1                      -> "G ab"; no pair is left.
   * Ids: 256 bytes in GPT-2's order ("!" = 0, "a" = 64), then ab 256,
   * aab 257, Gaab 258, Gab 259, <|endoftext|> 260. */
  size_t m = train("aab aab aab ab", 261, "bpe");
  cr_expect_eq(m, 4);
  char *merges = read_text("bpe", "vocab.bpe");
  cr_expect_str_eq(merges, "#version: 0.2\na b\na ab\n\xc4\xa0 aab\n\xc4\xa0 ab\n");
  free(merges);
  char *enc = read_text("bpe", "encoder.json");
  cr_expect(strstr(enc, "\"!\": 0, ") == enc + 1, "%.40s", enc);
  cr_expect(strstr(enc, "\"a\": 64, ") != NULL);
  cr_expect(strstr(enc, "\"ab\": 256, \"aab\": 257, \"\xc4\xa0"
                        "aab\": 258, \"\xc4\xa0"
                        "ab\": 259, \"<|endoftext|>\": 260}") != NULL,
            "%s", strstr(enc, "\"ab\""));
  free(enc);

  /* The trained tokenizer encodes its corpus with the merges. */
  char out[512];
  snprintf(out, sizeof out, "%s/bpe", dir);
  tok_tokenizer *t;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(tok_load(&t, out, &err), 0, "%s", err.msg);
  cr_expect_eq(tok_vocab_size(t), 261);
  cr_expect_eq(tok_eot_id(t), 260);
  tok_ids v = {0};
  cr_assert_eq(tok_encode(t, "aab aab ab<|endoftext|>", 23, TOK_ALLOW_SPECIAL, &v, &err), 0);
  int32_t want[] = {257, 258, 259, 260};
  cr_assert_eq(v.n, 4);
  cr_expect_eq(memcmp(v.ids, want, sizeof want), 0);
  tok_ids_free(&v);
  tok_free(t);
}

Test(tok_train, ties_go_to_the_bytewise_smallest_pair, .init = setup, .fini = teardown) {
  /* "xy zw": pieces "xy" and " zw", every pair once. The space (0x20) sorts
   * first: "G z"; then (Gz, w) before (x, y) as " z" < "x". */
  train("xy zw", 260, "bpe");
  char *merges = read_text("bpe", "vocab.bpe");
  cr_expect_str_eq(merges, "#version: 0.2\n\xc4\xa0 z\n\xc4\xa0z w\nx y\n");
  free(merges);
}

Test(tok_train, stops_early_when_no_pair_is_left, .init = setup, .fini = teardown) {
  size_t m = train("aab aab aab ab", 1000, "bpe");
  cr_expect_eq(m, 4);
  char out[512];
  snprintf(out, sizeof out, "%s/bpe", dir);
  tok_tokenizer *t;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(tok_load(&t, out, &err), 0, "%s", err.msg);
  cr_expect_eq(tok_vocab_size(t), 261);
  tok_free(t);
}

Test(tok_train, deterministic_and_round_trips, .init = setup, .fini = teardown) {
  /* A corpus with every byte value, mixed scripts and repeated words. */
  char text[20000];
  size_t n = 0;
  dfpo_rng r;
  dfpo_rng_init(&r, 5, DFPO_STREAM_DATA);
  static const char *const words[] = {
      "the ",         "cat ",  "sat ", "on ", "mat. ", "\xe6\x97\xa5\xe6\x9c\xac ",
      "caf\xc3\xa9 ", "it's ", "42 ",  "\n\n"};
  while (n < sizeof text - 300) {
    if (dfpo_rng_below(&r, 10) == 0)
      text[n++] = (char)(1 + dfpo_rng_below(&r, 255));
    const char *w = words[dfpo_rng_below(&r, 10)];
    memcpy(text + n, w, strlen(w));
    n += strlen(w);
  }
  text[n] = '\0';
  train(text, 400, "a");
  train(text, 400, "b");
  char *ea = read_text("a", "encoder.json"), *eb = read_text("b", "encoder.json");
  char *ma = read_text("a", "vocab.bpe"), *mb = read_text("b", "vocab.bpe");
  cr_expect_str_eq(ea, eb);
  cr_expect_str_eq(ma, mb);
  free(ea);
  free(eb);
  free(ma);
  free(mb);

  char out[512];
  snprintf(out, sizeof out, "%s/a", dir);
  tok_tokenizer *t;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(tok_load(&t, out, &err), 0, "%s", err.msg);
  cr_expect_eq(tok_vocab_size(t), 400);
  tok_ids v = {0};
  cr_assert_eq(tok_encode(t, text, n, 0, &v, &err), 0);
  cr_expect_lt(v.n, n / 2, "a trained vocabulary compresses its corpus: %zu ids", v.n);
  char *buf = NULL;
  size_t len = 0, cap = 0;
  cr_assert_eq(tok_decode(t, v.ids, v.n, &buf, &len, &cap, &err), 0);
  cr_expect(len == n && !memcmp(buf, text, n));
  /* bytes never seen in training still round-trip */
  char all[256];
  for (int i = 0; i < 256; i++)
    all[i] = (char)i;
  tok_ids w = {0};
  cr_assert_eq(tok_encode(t, all, 256, 0, &w, &err), 0);
  len = 0;
  cr_assert_eq(tok_decode(t, w.ids, w.n, &buf, &len, &cap, &err), 0);
  cr_expect(len == 256 && !memcmp(buf, all, 256));
  free(buf);
  tok_ids_free(&v);
  tok_ids_free(&w);
  tok_free(t);
}

Test(tok_train, bad_arguments_are_errors, .init = setup, .fini = teardown) {
  char out[512];
  snprintf(out, sizeof out, "%s/x", dir);
  const char *files[] = {"/nonexistent/corpus.txt"};
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_expect_eq(tok_train(files, 1, 256, out, NULL, &err), DFPO_EUSAGE);
  cr_expect(strstr(err.msg, "257") != NULL, "%s", err.msg);
  dfpo_err_clear(&err);
  cr_expect_neq(tok_train(files, 1, 300, out, NULL, &err), 0);
  cr_expect(strstr(err.msg, "/nonexistent/corpus.txt") != NULL, "%s", err.msg);
}
