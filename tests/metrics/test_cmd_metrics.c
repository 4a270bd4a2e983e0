/* `dfpo metrics`: the JSON it prints, and its errors on bad input. */
#include "tests/support/support.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

static void setup(void) {
  ts_tmpdir(dir, sizeof dir);
}
static void teardown(void) {
  ts_rmtree(dir);
}

static char *write_file(const char *name, const char *text) {
  static char paths[8][512];
  static int next;
  char *p = paths[next++ % 8];
  snprintf(p, 512, "%s/%s", dir, name);
  FILE *f = fopen(p, "wb");
  cr_assert_not_null(f);
  fputs(text, f);
  fclose(f);
  return p;
}

static const char refs_jsonl[] =
    "{\"concept_set\": \"dog#run#field\", \"scene\": [\"A dog runs across the field.\", \"The "
    "dogs are running in a field.\"]}\n"
    "{\"concepts\": [\"cat\", \"couch\", \"sleep\"], \"references\": [\"A cat sleeps on the "
    "couch.\"]}\n";

static void need_wordnet(void) {
  if (access("/usr/share/wordnet/index.noun", R_OK) != 0)
    cr_skip_test("WordNet is not installed at /usr/share/wordnet (Debian package wordnet-base)");
}

Test(cmd_metrics, commongen_json_has_every_key, .init = setup, .fini = teardown) {
  need_wordnet();
  char *refs = write_file("refs.jsonl", refs_jsonl);
  char *pred = write_file("pred.txt", "A dog runs across the field.\nA cat sleeps on the couch.\n");
  ts_run r;
  ts_dfpo(&r, "metrics", "--task", "commongen", "--pred", pred, "--refs", refs, "--json",
          "--bootstrap", "200", NULL);
  cr_assert_eq(r.status, 0, "%s", r.err);
  cJSON *o = cJSON_Parse(r.out);
  cr_assert_not_null(o, "%s", r.out);
  static const char *const keys[] = {
      "bleu1",  "bleu2",  "bleu3",  "bleu4",    "cider_d",   "rougeL_coco", "rouge1",
      "rouge2", "rougeL", "meteor", "coverage", "sacrebleu", "rouge1_stem", "rougeL_stem"};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
    cr_expect(cJSON_IsNumber(cJSON_GetObjectItem(o, keys[i])), "key %s", keys[i]);
  /* Every prediction equals one of its references: BLEU-4, ROUGE and
   * coverage reach 1; METEOR of a 6-token exact match is one chunk:
   * 1 - 0.5 (1/6)^3. */
  cr_expect_float_eq(cJSON_GetObjectItem(o, "bleu4")->valuedouble, 1.0, 1e-6);
  cr_expect_float_eq(cJSON_GetObjectItem(o, "rougeL_coco")->valuedouble, 1.0, 1e-12);
  cr_expect_float_eq(cJSON_GetObjectItem(o, "rouge1")->valuedouble, 1.0, 1e-12);
  cr_expect_float_eq(cJSON_GetObjectItem(o, "meteor")->valuedouble,
                     (1 - 0.5 * pow(1.0 / 6, 3)) * 1.0, 1e-12);
  cr_expect_float_eq(cJSON_GetObjectItem(o, "coverage")->valuedouble, 1.0, 1e-12);
  cr_expect_eq(cJSON_GetObjectItem(o, "n")->valuedouble, 2);
  const cJSON *d = cJSON_GetObjectItem(o, "diversity");
  static const char *const dkeys[] = {"msttr100",    "distinct1", "distinct2",
                                      "vocab_size1", "unique1",   "unique2",
                                      "entropy1",    "entropy2",  "mean_length"};
  for (size_t i = 0; i < sizeof dkeys / sizeof dkeys[0]; i++)
    cr_expect_not_null(cJSON_GetObjectItem(d, dkeys[i]), "diversity key %s", dkeys[i]);
  cr_expect(cJSON_IsNull(cJSON_GetObjectItem(d, "msttr100")), "fewer than 100 tokens: null");
  cr_expect_float_eq(cJSON_GetObjectItem(d, "mean_length")->valuedouble, 6.0, 1e-12);
  const cJSON *ci = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "bootstrap95"), "meteor");
  cr_expect_eq(cJSON_GetArraySize(ci), 2);
  cJSON_Delete(o);
  ts_run_free(&r);

  /* the same in the table form */
  ts_dfpo(&r, "metrics", "--task", "commongen", "--pred", pred, "--refs", refs, NULL);
  cr_expect_eq(r.status, 0, "%s", r.err);
  cr_expect(strstr(r.out, "meteor") && strstr(r.out, "bleu4"), "%s", r.out);
  ts_run_free(&r);
}

Test(cmd_metrics, tokenize_none_uses_tokens_as_given, .init = setup, .fini = teardown) {
  need_wordnet();
  char *refs =
      write_file("refs.jsonl", "{\"concept_set\": \"a#b\", \"scene\": [\"Dog runs .\"]}\n");
  char *pred = write_file("pred.txt", "dog runs .\n");
  ts_run r;
  /* default: lowercased, "." dropped: exact match. none: "Dog" != "dog" and
   * "." is a token: BLEU-1 is 2/3 */
  ts_dfpo(&r, "metrics", "--task", "commongen", "--pred", pred, "--refs", refs, "--json", NULL);
  cr_assert_eq(r.status, 0, "%s", r.err);
  cJSON *o = cJSON_Parse(r.out);
  cr_expect_float_eq(cJSON_GetObjectItem(o, "bleu1")->valuedouble, 1.0, 1e-6);
  cJSON_Delete(o);
  ts_run_free(&r);
  ts_dfpo(&r, "metrics", "--task", "commongen", "--pred", pred, "--refs", refs, "--json",
          "--tokenize", "none", NULL);
  cr_assert_eq(r.status, 0, "%s", r.err);
  o = cJSON_Parse(r.out);
  cr_expect_float_eq(cJSON_GetObjectItem(o, "bleu1")->valuedouble, 2.0 / 3, 1e-6);
  cr_expect_str_eq(cJSON_GetObjectItem(o, "tokenize")->valuestring, "none");
  cJSON_Delete(o);
  ts_run_free(&r);
}

Test(cmd_metrics, diversity_of_a_file, .init = setup, .fini = teardown) {
  char *f = write_file("texts.txt", "a b a\nb c\n");
  ts_run r;
  ts_dfpo(&r, "metrics", "--diversity", f, "--json", NULL);
  cr_assert_eq(r.status, 0, "%s", r.err);
  cJSON *o = cJSON_Parse(r.out);
  cr_expect_float_eq(cJSON_GetObjectItem(o, "distinct1")->valuedouble, 0.6, 1e-12);
  cr_expect_float_eq(cJSON_GetObjectItem(o, "entropy2")->valuedouble, log2(3), 1e-12);
  cJSON_Delete(o);
  ts_run_free(&r);
}

static void expect_error(int status, const char *needle, const char *pred, const char *refs,
                         const char *wordnet) {
  ts_run r;
  if (wordnet)
    ts_dfpo(&r, "metrics", "--task", "commongen", "--pred", pred, "--refs", refs, "--wordnet",
            wordnet, NULL);
  else
    ts_dfpo(&r, "metrics", "--task", "commongen", "--pred", pred, "--refs", refs, NULL);
  cr_expect_eq(r.status, status, "status %d, stderr: %s", r.status, r.err);
  cr_expect(strstr(r.err, needle) != NULL, "want \"%s\" in: %s", needle, r.err);
  ts_run_free(&r);
}

Test(cmd_metrics, bad_input_is_named, .init = setup, .fini = teardown) {
  char *refs = write_file("refs.jsonl", refs_jsonl);
  char msg[1024];
  char *one = write_file("one.txt", "only one line\n");
  snprintf(msg, sizeof msg, "%s has 1 predictions but %s has 2 concept sets", one, refs);
  expect_error(2, msg, one, refs, NULL);

  char *empty = write_file("empty.txt", "first\n\nthird\n");
  snprintf(msg, sizeof msg, "%s:2: empty line", empty);
  expect_error(2, msg, empty, refs, NULL);

  char *bad = write_file("bad.txt", "fine\nbad \xff byte\n");
  snprintf(msg, sizeof msg, "%s:2: invalid UTF-8 at byte 5", bad);
  expect_error(2, msg, bad, refs, NULL);

  char *badjson = write_file("bad.jsonl", "{\"scene\": [\"x\"]}\n{\"scene\": \"x\"}\n");
  char *two = write_file("two.txt", "a\nb\n");
  snprintf(msg, sizeof msg, "%s:2: \"references\" (or \"scene\") must be a non-empty list",
           badjson);
  expect_error(2, msg, two, badjson, NULL);

  char *notjson = write_file("notjson.jsonl", "{\"scene\": [\"x\"]}\n{oops\n");
  snprintf(msg, sizeof msg, "%s:2: not a JSON object", notjson);
  expect_error(2, msg, two, notjson, NULL);

  char *good = write_file("good.txt", "a dog\na cat\n");
  expect_error(2, "WordNet folder unreadable: /nonexistent/wn/index.noun: cannot open", good, refs,
               "/nonexistent/wn");

  snprintf(msg, sizeof msg, "%s/missing.txt: cannot open", dir);
  char missing[600];
  snprintf(missing, sizeof missing, "%s/missing.txt", dir);
  expect_error(2, msg, missing, refs, NULL);
}

Test(cmd_metrics, usage_errors) {
  ts_run r;
  ts_dfpo(&r, "metrics", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "--task commongen") != NULL, "%s", r.err);
  ts_run_free(&r);
  ts_dfpo(&r, "metrics", "--task", "imdb", "--pred", "x", "--refs", "y", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "unknown task 'imdb'") != NULL, "%s", r.err);
  ts_run_free(&r);
  ts_dfpo(&r, "metrics", "--task", "commongen", "--pred", "x", "--refs", "y", "--tokenize", "ptb",
          NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "unknown tokenize mode 'ptb'") != NULL, "%s", r.err);
  ts_run_free(&r);
  ts_dfpo(&r, "metrics", "--diversity", "x", "--bootstrap", "-3", NULL);
  cr_expect_eq(r.status, 1);
  ts_run_free(&r);
  ts_dfpo(&r, "metrics", "--help", NULL);
  cr_expect_eq(r.status, 0);
  cr_expect(strstr(r.out, "Usage: dfpo metrics") != NULL);
  ts_run_free(&r);
}
