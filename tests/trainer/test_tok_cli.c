/* `dfpo tokenizer encode|decode|train` end to end. */
#include "tests/support/support.h"
#include "trainer/tok.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char gpt2[1024];

static void need_gpt2(void) {
  const char *data = ts_shared_data();
  if (!data)
    cr_skip_test("../shared/data is absent: GPT-2's encoder.json and vocab.bpe are needed");
  snprintf(gpt2, sizeof gpt2, "%s/gpt2", data);
}

/* dfpo with stdin from `input`; args NULL-terminated. */
static void run(ts_run *r, const char *input, ...) {
  char *argv[32];
  int n = 0;
  argv[n++] = (char *)DFPO_BIN;
  va_list ap;
  va_start(ap, input);
  char *a;
  while ((a = va_arg(ap, char *)) && n < 31)
    argv[n++] = a;
  va_end(ap);
  argv[n] = NULL;
  ts_run_cmd(r, argv, input, NULL);
}

Test(tok_cli, help) {
  ts_run r;
  run(&r, NULL, "tokenizer", "--help", NULL);
  cr_expect_eq(r.status, 0);
  cr_expect(strstr(r.out, "dfpo tokenizer encode --tokenizer DIR") &&
            strstr(r.out, "--vocab-size N"));
  ts_run_free(&r);
  run(&r, NULL, "tokenizer", "encode", "--help", NULL);
  cr_expect_eq(r.status, 0);
  ts_run_free(&r);
  run(&r, NULL, "--help", NULL);
  cr_expect(strstr(r.out, "  tokenizer ") != NULL, "%s", r.out);
  ts_run_free(&r);
}

Test(tok_cli, usage_errors) {
  static const char *const cases[][5] = {
      {"tokenizer", NULL, NULL, NULL, "missing subcommand"},
      {"tokenizer", "frob", NULL, NULL, "unknown subcommand 'frob'"},
      {"tokenizer", "encode", NULL, NULL, "missing --tokenizer DIR"},
      {"tokenizer", "encode", "--bogus", NULL, "tokenizer encode: unknown option '--bogus'"},
      {"tokenizer", "train", "--vocab-size", "12",
       "--vocab-size needs an integer in [257, 16777216]"},
      {"tokenizer", "train", "--out", "x", "missing --corpus FILE"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    ts_run r;
    run(&r, NULL, cases[i][0], cases[i][1], cases[i][2], cases[i][3], NULL);
    cr_expect_eq(r.status, 1, "case %zu: %d %s", i, r.status, r.err);
    cr_expect(strstr(r.err, cases[i][4]) != NULL, "case %zu: %s", i, r.err);
    ts_run_free(&r);
  }
  ts_run r;
  run(&r, NULL, "tokenizer", "decode", "-t", "/nonexistent/tok", NULL);
  cr_expect_eq(r.status, 2, "%s", r.err);
  cr_expect(strstr(r.err, "/nonexistent/tok") != NULL, "%s", r.err);
  ts_run_free(&r);
}

Test(tok_cli, encode_decode_round_trip) {
  need_gpt2();
  /* ids from bench/gpt2_ref.py (see test_tok_encode.c): "Hello world" is
   * 15496 995, "<|endoftext|>" 50256 when allowed. */
  ts_run r;
  run(&r, "Hello world<|endoftext|>", "tokenizer", "encode", "--tokenizer", gpt2, NULL);
  cr_expect_eq(r.status, 0, "%s", r.err);
  cr_expect_str_eq(r.out, "15496 995 27 91 437 1659 5239 91 29\n");
  ts_run_free(&r);
  run(&r, "Hello world<|endoftext|>", "tokenizer", "encode", "-t", gpt2, "--allow-special", NULL);
  cr_expect_str_eq(r.out, "15496 995 50256\n");
  ts_run_free(&r);
  run(&r, "15496 995 50256\n", "tokenizer", "decode", "-t", gpt2, NULL);
  cr_expect_eq(r.status, 0, "%s", r.err);
  cr_expect_str_eq(r.out, "Hello world<|endoftext|>");
  ts_run_free(&r);

  const char *text = "line one\n\n  two\tthree \xff\xfe\nlast line without newline";
  run(&r, text, "tokenizer", "encode", "-t", gpt2, "--lines", NULL);
  cr_expect_eq(r.status, 0, "%s", r.err);
  int lines = 0;
  for (const char *p = r.out; *p; p++)
    lines += *p == '\n';
  cr_expect_eq(lines, 4, "%s", r.out);
  cr_expect_eq(strncmp(r.out, "1370 530\n\n", 10), 0, "%s", r.out);
  char *ids = strdup(r.out);
  ts_run_free(&r);
  run(&r, ids, "tokenizer", "decode", "-t", gpt2, "--lines", NULL);
  cr_expect_eq(r.status, 0, "%s", r.err);
  char want[256];
  snprintf(want, sizeof want, "%s\n", text); /* each line gets its newline back */
  cr_expect_str_eq(r.out, want);
  ts_run_free(&r);
  free(ids);

  run(&r, text, "tokenizer", "encode", "-t", gpt2, NULL);
  ids = strdup(r.out);
  ts_run_free(&r);
  run(&r, ids, "tokenizer", "decode", "-t", gpt2, NULL);
  cr_expect_str_eq(r.out, text);
  ts_run_free(&r);
  free(ids);
}

Test(tok_cli, decode_errors_name_the_line) {
  need_gpt2();
  ts_run r;
  run(&r, "15496\n995 abc\n", "tokenizer", "decode", "-t", gpt2, "--lines", NULL);
  cr_expect_eq(r.status, 2);
  cr_expect(strstr(r.err, "stdin:2: \"abc\" is not a token id") != NULL, "%s", r.err);
  ts_run_free(&r);
  run(&r, "15496\n1 2 99999\n", "tokenizer", "decode", "-t", gpt2, "--lines", NULL);
  cr_expect_eq(r.status, 2);
  cr_expect(strstr(r.err, "stdin:2: token id 99999 at position 2") != NULL, "%s", r.err);
  ts_run_free(&r);
}

Test(tok_cli, train_then_encode) {
  char dir[256], corpus[512], out[512];
  ts_tmpdir(dir, sizeof dir);
  snprintf(corpus, sizeof corpus, "%s/c.txt", dir);
  snprintf(out, sizeof out, "%s/bpe", dir);
  dfpo_err err;
  dfpo_err_clear(&err);
  /* the corpus of test_tok_train.c's hand calculation, given twice: the
   * counts double, the merges stay */
  cr_assert_eq(dfpo_atomic_write_file(corpus, "aab aab aab ab", 14, &err), 0);
  ts_run r;
  run(&r, NULL, "tokenizer", "train", "--corpus", corpus, corpus, "--vocab-size", "261", "--out",
      out, NULL);
  cr_expect_eq(r.status, 0, "%s", r.err);
  cr_expect(strstr(r.err, "(4 merges)") != NULL, "%s", r.err);
  ts_run_free(&r);
  run(&r, "aab ab", "tokenizer", "encode", "-t", out, NULL);
  cr_expect_str_eq(r.out, "257 259\n");
  ts_run_free(&r);
  ts_rmtree(dir);
}
