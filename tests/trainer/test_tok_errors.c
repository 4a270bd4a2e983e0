/* Bad tokenizer files: every error names the file, and the line where the
 * format has lines. The files are a small trained tokenizer, then damaged. */
#include "tests/support/support.h"
#include "trainer/tok.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char dir[256], good[512];

static void setup(void) {
  ts_tmpdir(dir, sizeof dir);
  char corpus[512];
  snprintf(corpus, sizeof corpus, "%s/corpus.txt", dir);
  const char *text = "the cat sat on the mat, the end\n";
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(dfpo_atomic_write_file(corpus, text, strlen(text), &err), 0);
  snprintf(good, sizeof good, "%s/good", dir);
  const char *files[] = {corpus};
  cr_assert_eq(tok_train(files, 1, 270, good, NULL, &err), 0, "%s", err.msg);
}
static void teardown(void) {
  ts_rmtree(dir);
}

static char *slurp(const char *folder, const char *name) {
  char path[600], *data;
  snprintf(path, sizeof path, "%s/%s", folder, name);
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(dfpo_read_file(path, &data, NULL, &err), 0, "%s", err.msg);
  return data;
}

/* A copy of the good tokenizer in dir/name with file `which` replaced. */
static void variant(const char *name, const char *which, const char *content, char *out, size_t n) {
  snprintf(out, n, "%s/%s", dir, name);
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(dfpo_mkdirs(out, &err), 0);
  const char *files[] = {"encoder.json", "vocab.bpe"};
  for (int i = 0; i < 2; i++) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", out, files[i]);
    if (!strcmp(files[i], which)) {
      if (content)
        cr_assert_eq(dfpo_atomic_write_file(path, content, strlen(content), &err), 0);
    } else {
      char *d = slurp(good, files[i]);
      cr_assert_eq(dfpo_atomic_write_file(path, d, strlen(d), &err), 0);
      free(d);
    }
  }
}

static void expect_error(const char *path, int code, const char *needle) {
  tok_tokenizer *t = (tok_tokenizer *)1;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_expect_eq(tok_load(&t, path, &err), code, "%s: %s", path, err.msg);
  cr_expect_null(t);
  cr_expect(strstr(err.msg, needle) != NULL, "message \"%s\" lacks \"%s\"", err.msg, needle);
}

Test(tok_errors, the_good_files_load, .init = setup, .fini = teardown) {
  tok_tokenizer *t;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(tok_load(&t, good, &err), 0, "%s", err.msg);
  cr_expect_eq(tok_vocab_size(t), 270);
  tok_free(t);
}

Test(tok_errors, missing_files, .init = setup, .fini = teardown) {
  char p[700];
  snprintf(p, sizeof p, "%s/nowhere", dir);
  expect_error(p, DFPO_EDATA, p);
  snprintf(p, sizeof p, "%s", dir); /* a folder without tokenizer files */
  expect_error(p, DFPO_EDATA, "no tokenizer files");
  char v[600];
  variant("nomerges", "vocab.bpe", NULL, v, sizeof v);
  snprintf(p, sizeof p, "%s/vocab.bpe", v);
  expect_error(v, DFPO_EDATA, p);
}

Test(tok_errors, truncated_json_names_file_and_line, .init = setup, .fini = teardown) {
  /* The vocabulary printed one entry a line, cut after line 100. */
  char *enc = slurp(good, "encoder.json");
  cJSON *doc = cJSON_Parse(enc);
  char *pretty = cJSON_Print(doc);
  char *cut = pretty;
  for (int line = 0; line < 100; line++)
    cut = strchr(cut, '\n') + 1;
  *cut = '\0';
  char v[600], want[700];
  variant("trunc", "encoder.json", pretty, v, sizeof v);
  snprintf(want, sizeof want, "%s/encoder.json:101:1: malformed JSON (unexpected end of file)", v);
  expect_error(v, DFPO_EDATA, want);
  free(pretty);
  cJSON_Delete(doc);
  free(enc);
}

/* The good merges with line `line` (1-based, the header is line 1)
 * replaced. */
static char *merges_with(int line, const char *text) {
  char *m = slurp(good, "vocab.bpe");
  char *out = malloc(strlen(m) + strlen(text) + 2);
  char *p = m, *o = out;
  for (int l = 1; *p; l++) {
    char *nl = strchr(p, '\n');
    size_t len = (size_t)(nl - p);
    if (l == line) {
      o += sprintf(o, "%s\n", text);
    } else {
      memcpy(o, p, len + 1);
      o += len + 1;
    }
    p = nl + 1;
  }
  *o = '\0';
  free(m);
  return out;
}

Test(tok_errors, bad_merges_name_file_and_line, .init = setup, .fini = teardown) {
  static const struct {
    const char *line, *needle;
  } bad[] = {{"t zzzq", "merge names unknown symbol \"zzzq\""},
             {"qqq h", "merge names unknown symbol \"qqq\""},
             {"t h t", "two symbols separated by one space"},
             {"th", "two symbols separated by one space"},
             {"c \xc4\xa0", "merge result \"c\xc4\xa0\" is not in the vocabulary"}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char *m = merges_with(5, bad[i].line);
    char name[32], v[600], want[700];
    snprintf(name, sizeof name, "bad%zu", i);
    variant(name, "vocab.bpe", m, v, sizeof v);
    snprintf(want, sizeof want, "%s/vocab.bpe:5: ", v);
    expect_error(v, DFPO_EDATA, want);
    expect_error(v, DFPO_EDATA, bad[i].needle);
    free(m);
  }
}

Test(tok_errors, bad_vocabularies, .init = setup, .fini = teardown) {
  char *enc = slurp(good, "encoder.json");
  cJSON *doc = cJSON_Parse(enc);
  char v[600];
  /* a byte token missing */
  cJSON_DeleteItemFromObjectCaseSensitive(doc, "a");
  char *s = cJSON_PrintUnformatted(doc);
  variant("nobyte", "encoder.json", s, v, sizeof v);
  expect_error(v, DFPO_EDATA, "lacks the byte token \"a\"");
  expect_error(v, DFPO_EDATA, "encoder.json");
  free(s);
  /* an id that is not an integer, and a token outside the byte alphabet */
  cJSON_AddStringToObject(doc, "a", "sixty-four");
  s = cJSON_PrintUnformatted(doc);
  variant("strid", "encoder.json", s, v, sizeof v);
  expect_error(v, DFPO_EDATA, "[\"a\"] must be an integer id");
  free(s);
  cJSON_DeleteItemFromObjectCaseSensitive(doc, "a");
  cJSON_AddNumberToObject(doc, "a", 64);
  cJSON_AddNumberToObject(doc, "\xe2\x82\xac", 500);
  s = cJSON_PrintUnformatted(doc);
  variant("alpha", "encoder.json", s, v, sizeof v);
  expect_error(v, DFPO_EDATA, "outside GPT-2's byte alphabet");
  free(s);
  /* two tokens with one id */
  cJSON_DeleteItemFromObjectCaseSensitive(doc, "\xe2\x82\xac");
  cJSON_AddNumberToObject(doc, "zz", 64);
  s = cJSON_PrintUnformatted(doc);
  variant("dupid", "encoder.json", s, v, sizeof v);
  expect_error(v, DFPO_EDATA, "id 64 is given to two tokens");
  free(s);
  cJSON_Delete(doc);
  free(enc);
}

Test(tok_errors, bad_tokenizer_json_names_the_merge_line, .init = setup, .fini = teardown) {
  char *enc = slurp(good, "encoder.json"), *merges = slurp(good, "vocab.bpe");
  char *first = strchr(merges, '\n') + 1; /* the first real merge */
  *strchr(first, '\n') = '\0';
  char *text = malloc(strlen(enc) + 400);
  sprintf(text,
          "{\n  \"version\": \"1.0\",\n  \"model\": {\n    \"type\": \"BPE\",\n"
          "    \"vocab\": %s,\n    \"merges\": [\n      \"%s\",\n      \"zz q\"\n    ]\n  }\n}\n",
          enc, first);
  free(merges);
  char path[600], want[700];
  snprintf(path, sizeof path, "%s/tokenizer.json", dir);
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(dfpo_atomic_write_file(path, text, strlen(text), &err), 0);
  snprintf(want, sizeof want, "%s:8: model.merges[1]: merge names unknown symbol \"zz\"", path);
  expect_error(path, DFPO_EDATA, want);
  /* truncated */
  text[strlen(text) / 2] = '\0';
  cr_assert_eq(dfpo_atomic_write_file(path, text, strlen(text), &err), 0);
  snprintf(want, sizeof want, "%s:5:", path);
  expect_error(path, DFPO_EDATA, want);
  expect_error(path, DFPO_EDATA, "malformed JSON (unexpected end of file)");
  free(text);
  free(enc);
}

/* Numbers, NULs and an empty merges file: an id of 1e300 was cast to long
 * long (undefined; the sanitizer build stopped there), "a\u0000b" was read
 * as the token "a", and an empty vocab.bpe gave a tokenizer without merges. */
Test(tok_errors, huge_ids_nul_escapes_and_empty_merges, .init = setup, .fini = teardown) {
  char *enc = slurp(good, "encoder.json");
  cJSON *doc = cJSON_Parse(enc);
  char v[600];
  cJSON_AddNumberToObject(doc, "zz", 1e300);
  char *s = cJSON_PrintUnformatted(doc);
  variant("huge", "encoder.json", s, v, sizeof v);
  expect_error(v, DFPO_EDATA, "[\"zz\"] must be an integer id");
  free(s);
  cJSON_DeleteItemFromObjectCaseSensitive(doc, "zz");
  cJSON_AddNumberToObject(doc, "zz", 1e15); /* an integer, out of range */
  s = cJSON_PrintUnformatted(doc);
  variant("big", "encoder.json", s, v, sizeof v);
  expect_error(v, DFPO_EDATA, "has id 1000000000000000, outside 0..");
  free(s);
  cJSON_DeleteItemFromObjectCaseSensitive(doc, "zz");
  /* "{...,"t\u0000zz":300}": the backslash is column n + 3 */
  s = cJSON_PrintUnformatted(doc);
  size_t n = strlen(s);
  char *w = malloc(n + 32);
  snprintf(w, n + 32, "%.*s,\"t\\u0000zz\":300}", (int)(n - 1), s);
  variant("nul", "encoder.json", w, v, sizeof v);
  char want[64];
  snprintf(want, sizeof want, "encoder.json:1:%zu: \\u0000 in a string", n + 3);
  expect_error(v, DFPO_EDATA, want);
  free(w);
  free(s);
  cJSON_Delete(doc);
  free(enc);
  variant("empty", "vocab.bpe", "", v, sizeof v);
  expect_error(v, DFPO_EDATA, "vocab.bpe: empty; a merges file has at least its \"#version\" line");
  variant("blank", "vocab.bpe", "\n \n", v, sizeof v);
  expect_error(v, DFPO_EDATA, "vocab.bpe: empty");
  /* the version line alone is a tokenizer of bytes only, as tok_save writes one */
  variant("bytes", "vocab.bpe", "#version: 0.2\n", v, sizeof v);
  tok_tokenizer *t = NULL;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_expect_eq(tok_load(&t, v, &err), 0, "%s", err.msg);
  tok_free(t);
}
