/* The model interface (trainer/model.h) over its GPT-2 implementation: the
 * parts model.c and optim.c add on top of the engine (tensor list, clone,
 * new_like, the batch's prompt split, load's dispatch by magic, what the
 * Hugging Face folder export refuses). The
 * numbers themselves are held by test_gpt2_*.c. */
#include "tests/support/support.h"
#include "tests/trainer/gpt2_testutil.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

Test(model, config_and_tensor_list) {
  gpt2_config c = tu_config(40, 2, 2, 16, 24);
  model_t *m = tu_model(&c, 1);
  const model_config *mc = model_get_config(m);
  cr_expect_str_eq(mc->arch, "gpt2");
  cr_expect_eq(mc->vocab_size, 40);
  cr_expect_eq(mc->n_ctx, 24);
  cr_expect_eq(mc->head, MODEL_HEAD_NONE);
  cr_expect_not_null(gpt2_get_config(m));
  cr_expect_eq(model_num_tensors(m), gpt2_num_tensors(m));
  /* the list covers every parameter, tensors one after the other */
  dfpo_err err;
  dfpo_err_clear(&err);
  size_t total = 0;
  float *end = NULL;
  for (int i = 0; i < model_num_tensors(m); i++) {
    model_tensor t;
    cr_assert_eq(model_tensor_at(m, i, &t, &err), 0, "%s", err.msg);
    if (end)
      cr_expect_eq(t.param, end, "tensor %d (%s) does not follow the previous one", i, t.name);
    cr_expect_null(t.grad, "no training state before training");
    end = t.param + (size_t)t.rows * t.cols;
    total += (size_t)t.rows * t.cols;
  }
  cr_expect_eq(total, model_num_params(m));
  model_tensor t;
  cr_expect_eq(model_tensor_at(m, model_num_tensors(m), &t, &err), DFPO_EUSAGE);
  cr_assert_eq(model_ensure_train(m, &err), 0, "%s", err.msg);
  cr_assert_eq(model_tensor_at(m, 0, &t, &err), 0);
  cr_expect(t.grad && t.m1 && t.m2);
  model_free(m);
}

Test(model, clone_and_new_like) {
  gpt2_config c = tu_config(40, 1, 2, 16, 24);
  model_t *m = tu_model(&c, 2), *k = NULL, *v = NULL;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(model_clone(&k, m, &err), 0, "%s", err.msg);
  cr_assert_eq(model_new_like(&v, m, MODEL_HEAD_VALUE, 0, &err), 0, "%s", err.msg);
  cr_expect_eq(model_get_config(v)->head, MODEL_HEAD_VALUE);
  cr_expect_eq(model_num_tensors(v), model_num_tensors(m) + 2);
  int copied = 0;
  cr_assert_eq(model_copy_shared_params(v, m, &copied, &err), 0);
  cr_expect_eq(copied, model_num_tensors(m));
  /* the clone scores like the original; the value model's trunk too */
  int tok[6] = {1, 5, 7, 3, 9, 2}, tgt[6] = {5, 7, 3, 9, 2, -1};
  float a[6], b[6];
  cr_assert_eq(model_forward_rows(m, tok, NULL, 1, 6, &err), 0);
  cr_assert_eq(model_lm_logprobs(m, tgt, a, NULL, &err), 0);
  cr_assert_eq(model_forward_rows(k, tok, NULL, 1, 6, &err), 0);
  cr_assert_eq(model_lm_logprobs(k, tgt, b, NULL, &err), 0);
  cr_expect_eq(memcmp(a, b, sizeof a), 0);
  /* a decoder-only model reads whole rows: the prompt split changes nothing */
  model_batch split = {tok, NULL, 1, 6, 3, 0};
  cr_assert_eq(model_forward(k, &split, &err), 0);
  cr_assert_eq(model_lm_logprobs(k, tgt, b, NULL, &err), 0);
  cr_expect_eq(memcmp(a, b, sizeof a), 0);
  model_free(m);
  model_free(k);
  model_free(v);
}

Test(model, load_dispatches_by_content) {
  gpt2_config c = tu_config(40, 1, 2, 16, 24);
  model_t *m = tu_model(&c, 3), *n = NULL;
  dfpo_err err;
  dfpo_err_clear(&err);
  char dir[] = "/tmp/dfpo-test-model-XXXXXX", ck[128], st[128], bad[128];
  cr_assert_not_null(mkdtemp(dir));
  snprintf(ck, sizeof ck, "%s/m.ckpt", dir);
  snprintf(st, sizeof st, "%s/model.safetensors", dir);
  snprintf(bad, sizeof bad, "%s/bad", dir);
  cr_assert_eq(model_save(m, ck, 0, &err), 0, "%s", err.msg);
  cr_assert_eq(model_export_safetensors(m, st, 1, &err), 0, "%s", err.msg);
  cr_assert_eq(model_load(&n, ck, &err), 0, "%s", err.msg);
  cr_expect_str_eq(model_get_config(n)->arch, "gpt2");
  model_free(n);
  cr_assert_eq(model_load(&n, st, &err), 0, "%s", err.msg);
  cr_expect_eq(model_num_params(n), model_num_params(m));
  model_free(n);
  FILE *fp = fopen(bad, "wb");
  cr_assert_not_null(fp);
  fputs("DFPOXXXX and more bytes", fp);
  fclose(fp);
  cr_expect_eq(model_load(&n, bad, &err), DFPO_EDATA);
  cr_expect_null(n);
  cr_expect(strstr(err.msg, "neither a dfpo checkpoint"), "%s", err.msg);
  unlink(ck);
  unlink(st);
  unlink(bad);
  char cfgp[160];
  snprintf(cfgp, sizeof cfgp, "%s/config.json", dir);
  unlink(cfgp);
  rmdir(dir);
  model_free(m);
}

/* model_export_hf: the tokenizer must name <|endoftext|> (a Hugging Face
 * GPT-2 folder's bos and eos) and fit the vocabulary; an encoder answers
 * DFPO_EUSAGE. */
Test(model, export_hf_needs_end_of_text) {
  char dir[] = "/tmp/dfpo-test-model-XXXXXX", corpus[128], tokdir[128], enc[160];
  cr_assert_not_null(mkdtemp(dir));
  snprintf(corpus, sizeof corpus, "%s/c.txt", dir);
  snprintf(tokdir, sizeof tokdir, "%s/tok", dir);
  snprintf(enc, sizeof enc, "%s/encoder.json", tokdir);
  FILE *fp = fopen(corpus, "w");
  cr_assert_not_null(fp);
  fputs("aa ab aa ab\n", fp);
  fclose(fp);
  dfpo_err err;
  dfpo_err_clear(&err);
  const char *files[1] = {corpus};
  cr_assert_eq(tok_train(files, 1, 258, tokdir, NULL, &err), 0, "%s", err.msg);
  /* the same vocabulary without <|endoftext|> */
  char *text;
  cr_assert_eq(dfpo_read_file(enc, &text, NULL, &err), 0);
  cJSON *v = cJSON_Parse(text);
  free(text);
  cJSON_DeleteItemFromObject(v, "<|endoftext|>");
  text = cJSON_PrintUnformatted(v);
  cJSON_Delete(v);
  cr_assert_eq(dfpo_atomic_write_file(enc, text, strlen(text), &err), 0);
  free(text);
  tok_tokenizer *t;
  cr_assert_eq(tok_load(&t, tokdir, &err), 0, "%s", err.msg);
  cr_assert_eq(tok_eot_id(t), -1);
  gpt2_config c = tu_config(300, 1, 2, 16, 8);
  model_t *m = tu_model(&c, 1);
  cr_expect_eq(model_export_hf(m, t, dir, &err), DFPO_EUSAGE);
  cr_expect(strstr(err.msg, "no <|endoftext|>"), "%s", err.msg);
  dfpo_err_clear(&err);
  cr_expect_eq(tok_save_hf(t, dir, 8, &err), DFPO_EUSAGE);
  tok_free(t);
  model_free(m);
  ts_rmtree(dir);
}
