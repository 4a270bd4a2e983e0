/* Shared by the task tests (test_tasks.c, test_task_judges.c): a tiny
 * random base policy and reading JSONL files. Prefix: th_. */
#ifndef DFPO_TESTS_HARNESS_TASK_TESTUTIL_H
#define DFPO_TESTS_HARNESS_TASK_TESTUTIL_H

#include "tests/support/support.h"
#include "trainer/gpt2.h"
#include "trainer/model.h"
#include "trainer/tok.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A tiny random GPT-2 over a byte-level BPE trained on corpus: the base
 * policy of a cell (its text is noise; the tests check plumbing). The
 * model is dir/base.ckpt, the tokenizer dir/tok. */
static inline void th_make_base(const char *dir, const char *corpus, char *model, char *tokdir,
                                size_t n) {
  dfpo_err err;
  snprintf(tokdir, n, "%s/tok", dir);
  snprintf(model, n, "%s/base.ckpt", dir);
  const char *files[1] = {corpus};
  cr_assert_eq(tok_train(files, 1, 400, tokdir, NULL, &err), 0, "%s", err.msg);
  tok_tokenizer *tok;
  cr_assert_eq(tok_load(&tok, tokdir, &err), 0, "%s", err.msg);
  gpt2_config c = {2, 2, 64, (int)tok_vocab_size(tok), 128, MODEL_HEAD_NONE, 0};
  model_t *m;
  cr_assert_eq(gpt2_new(&m, &c, &err), 0, "%s", err.msg);
  model_init_random(m, 7);
  cr_assert_eq(model_save(m, model, 0, &err), 0, "%s", err.msg);
  model_free(m);
  tok_free(tok);
}

/* The lines of a JSONL file as parsed objects (*n of them). */
static inline cJSON **th_read_jsonl(const char *path, size_t *n) {
  char *s = ts_slurp(path);
  cJSON **v = NULL;
  *n = 0;
  for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n")) {
    v = realloc(v, sizeof(cJSON *) * (*n + 1));
    v[*n] = cJSON_Parse(line);
    cr_assert_not_null(v[*n], "%s: bad line %s", path, line);
    (*n)++;
  }
  free(s);
  return v;
}

static inline void th_free_jsonl(cJSON **v, size_t n) {
  for (size_t i = 0; i < n; i++)
    cJSON_Delete(v[i]);
  free(v);
}

#endif
