/* dfpo reproduce --suite commongen-small, end to end at a tiny size (--set
 * overrides): the CommonGen splits prepared from a slice of the real files
 * in ../shared/data (imported --unverified, as a slice must be), a
 * SentencePiece model trained on the training sentences, a T5 pretrained
 * on the training pairs by `dfpo pretrain` (model.arch t5), and the suite's
 * six algorithms (zero-shot, sft, ppo-beta0, ppo, nlpo, dfpo) run on it; a
 * second run reuses the tokenizer and the base; model.arch gpt2 is refused
 * with the reason. This checks the plumbing, not the quality of a base.
 * Skipped, saying so, when ../shared/data is absent. */
#include "tests/support/support.h"
#include "trainer/model.h"
#include "trainer/t5.h"
#include "trainer/tok.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char dir[256], home[300];

static void setup(void) {
  ts_tmpdir(dir, sizeof dir);
  snprintf(home, sizeof home, "%s/home", dir);
}

static void teardown(void) {
  if (!getenv("DFPO_KEEP_TEST_FILES"))
    ts_rmtree(dir);
}

TestSuite(reproduce_commongen, .init = setup, .fini = teardown, .timeout = 900);

/* The overrides that make the suite tiny: one seed, a 1+1-layer T5 of
 * d_model 32, 8 pretraining steps, 2 RL iterations, 4 test prompts. */
static const char *const tiny[] = {"suite.seeds=[0]",
                                   "threads=1",
                                   "tokenizer.vocab_size=300",
                                   "model.n_layer=1",
                                   "model.n_head=2",
                                   "model.n_embd=32",
                                   "model.block_size=24",
                                   "pretrain.steps=8",
                                   "pretrain.batch_size=8",
                                   "pretrain.seq_len=20",
                                   "pretrain.eval_every=4",
                                   "pretrain.ckpt_every=4",
                                   "pretrain.warmup_steps=2",
                                   "pretrain.eval_batches=2",
                                   "generation.max_new_tokens=8",
                                   "train.iterations=2",
                                   "train.batch_size=4",
                                   "train.minibatch=4",
                                   "train.epochs=1",
                                   "train.eval_every=1",
                                   "task.max_items=48",
                                   "eval.max_prompts=4",
                                   NULL};

/* dfpo reproduce --suite commongen-small --out out, the tiny overrides and
 * extra (may be NULL). */
static int run_suite(const char *out, const char *extra, char **err) {
  const char *args[64];
  int n = 0;
  args[n++] = "reproduce";
  args[n++] = "--suite";
  args[n++] = "commongen-small";
  args[n++] = "--out";
  args[n++] = out;
  for (int i = 0; tiny[i]; i++) {
    args[n++] = "--set";
    args[n++] = tiny[i];
  }
  if (extra) {
    args[n++] = "--set";
    args[n++] = extra;
  }
  args[n] = NULL;
  return ts_dfpo_in(home, args, NULL, err);
}

Test(reproduce_commongen, the_suite_runs_end_to_end_on_a_pretrained_t5) {
  const char *data = ts_shared_data();
  if (!data)
    cr_skip_test("../shared/data is absent: no CommonGen files to build a commongen base from");
  /* CommonGen's first 600 training concept sets, 40 dev, 10 test */
  char cg[400], out[400], path[800];
  snprintf(cg, sizeof cg, "%s/commongen", dir);
  ts_commongen_slice(data, cg, 600, 40, 10);
  char *err;
  const char *imp[] = {"datasets", "import", "commongen", cg, "--unverified", NULL};
  cr_assert_eq(ts_dfpo_in(home, imp, NULL, &err), 0, "%s", err);
  free(err);

  snprintf(out, sizeof out, "%s/out", dir);
  int st = run_suite(out, NULL, &err);
  cr_assert_eq(st, 0, "%s", err);
  cr_expect(strstr(err, "training a 300-piece SentencePiece model"), "%s", err);
  cr_expect(strstr(err, "commongen base model: pretraining 8 steps"), "%s", err);
  cr_expect(strstr(err, "6/6 cells done, 0 failed"), "%s", err);
  free(err);

  snprintf(path, sizeof path, "%s/commongen-small/base-commongen.json", out);
  cJSON *base = ts_read_json(path);
  char model[600], tok[600];
  snprintf(model, sizeof model, "%s", ts_json_str(base, "model"));
  snprintf(tok, sizeof tok, "%s", ts_json_str(base, "tokenizer"));
  cr_expect(strstr(model, "/bases/commongen-t5-"), "%s", model);
  cr_expect(strstr(tok, "/bases/commongen-spm-"), "%s", tok);
  cr_expect_str_eq(ts_json_str(base, "arch"), "t5");
  const cJSON *vl = cJSON_GetObjectItemCaseSensitive(base, "val_loss_per_token");
  cr_expect(cJSON_IsNumber(vl) && vl->valuedouble > 0, "no validation loss in %s", path);
  const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(base, "config");
  cr_expect_str_eq(ts_json_str(cfg, "model.arch"), "t5");
  cJSON_Delete(base);
  /* the base: a T5 of the overrides' shape and the tokenizer's vocabulary */
  dfpo_err e;
  dfpo_err_clear(&e);
  model_t *m;
  tok_tokenizer *t;
  cr_assert_eq(model_load(&m, model, &e), DFPO_OK, "%s", e.msg);
  cr_assert_eq(tok_load(&t, tok, &e), DFPO_OK, "%s", e.msg);
  const t5_config *c5 = t5_get_config(m);
  cr_assert_not_null(c5, "%s is not a T5", model);
  cr_expect(c5->d_model == 32 && c5->n_layer == 1 && c5->n_dec_layer == 1 && c5->n_pos == 24,
            "the base's shape is not the suite's");
  cr_expect_eq((size_t)c5->vocab_size, tok_vocab_size(t));
  cr_expect_eq(tok_token_id(t, "<extra_id_99>", 13), (int)tok_vocab_size(t) - 100);
  tok_free(t);
  model_free(m);
  /* every cell's test metrics */
  static const char *const algos[] = {"zero-shot", "sft", "ppo-beta0", "ppo", "nlpo", "dfpo"};
  for (int a = 0; a < 6; a++) {
    snprintf(path, sizeof path, "%s/commongen-small/commongen/%s/seed-0/eval.json", out, algos[a]);
    cJSON *ev = ts_read_json(path);
    const cJSON *met = cJSON_GetObjectItemCaseSensitive(ev, "metrics");
    cr_expect(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(met, "meteor")), "%s: no meteor",
              path);
    cr_expect(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(met, "bleu4")), "%s: no bleu4", path);
    cJSON_Delete(ev);
  }
  snprintf(path, sizeof path, "%s/commongen-small/report/report.md", out);
  struct stat sb;
  cr_expect_eq(stat(path, &sb), 0, "no report at %s", path);

  /* a second suite folder: the tokenizer and the base are reused */
  snprintf(out, sizeof out, "%s/out2", dir);
  st = run_suite(out, "suite.algos=[\"zero-shot\"]", &err);
  cr_assert_eq(st, 0, "%s", err);
  cr_expect(strstr(err, "commongen tokenizer: reusing"), "%s", err);
  cr_expect(strstr(err, "commongen base model: reusing"), "%s", err);
  cr_expect_null(strstr(err, "pretraining"), "%s", err);
  free(err);
  snprintf(path, sizeof path, "%s/commongen-small/base-commongen.json", out);
  base = ts_read_json(path);
  cr_expect_str_eq(ts_json_str(base, "model"), model);
  cJSON_Delete(base);

  /* a GPT-2 base for commongen is not built: the cells fail, saying why */
  snprintf(out, sizeof out, "%s/out3", dir);
  st = run_suite(out, "model.arch=gpt2", &err);
  cr_expect_eq(st, 3, "%s", err);
  cr_expect(strstr(err, "set model.arch=t5"), "%s", err);
  free(err);
}
