/* dfpo reproduce on the imdb task with model.init pretrain: the data
 * prepared, a BPE trained on the training reviews, a GPT-2 pretrained on
 * them, the sentiment judge trained, the cells run; a second suite reuses
 * the tokenizer, the base and the judge (the same files: inode and mtime),
 * and another vocabulary size trains a new tokenizer and base but keeps the
 * judge; a suite whose judge is a Hugging Face classifier folder
 * (task.judge.sentiment_model) trains none and its cells name the folder.
 * On a slice of the real archive in ../shared/data (skipped, saying so,
 * when absent); a tiny model and a few steps, so this checks the
 * plumbing, not the quality of a base. Plus: without any data, the cells
 * fail with the reason and nothing runs. */
#include "tests/support/support.h"
#include "tests/trainer/bert_testutil.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char dir[256], home[300];

/* Two algorithms, one seed, two RL iterations, four test prompts. */
static const char tiny[] =
    "{\"suite\": {\"name\": \"tiny-imdb\", \"tasks\": [\"imdb\"], \"algos\": [\"zero-shot\", "
    "\"dfpo\"],\n"
    "  \"seeds\": [0]},\n"
    " \"device\": \"cpu\", \"threads\": 1,\n"
    " \"task\": {\"max_prompt_tokens\": 24},\n"
    " \"tokenizer\": {\"vocab_size\": 400},\n"
    " \"judge\": {\"max_texts\": 100},\n"
    " \"model\": {\"init\": \"pretrain\", \"n_layer\": 1, \"n_head\": 2, \"n_embd\": 32, "
    "\"block_size\": 64},\n"
    " \"pretrain\": {\"steps\": 6, \"batch_size\": 4, \"seq_len\": 32, \"eval_every\": 3, "
    "\"ckpt_every\": 3},\n"
    " \"generation\": {\"max_new_tokens\": 6, \"min_new_tokens\": 4},\n"
    " \"train\": {\"iterations\": 2, \"batch_size\": 4, \"minibatch\": 4, \"epochs\": 1, \"lr\": "
    "1e-3, \"eval_every\": 1},\n"
    " \"eval\": {\"max_prompts\": 4, \"ppl_ref\": false}}\n";

static void setup(void) {
  ts_tmpdir(dir, sizeof dir);
  snprintf(home, sizeof home, "%s/home", dir);
  char path[400];
  snprintf(path, sizeof path, "%s/tiny.json", dir);
  ts_write_text(path, tiny);
}

static void teardown(void) {
  if (!getenv("DFPO_KEEP_TEST_FILES"))
    ts_rmtree(dir);
}

TestSuite(reproduce_imdb, .init = setup, .fini = teardown, .timeout = 600);

/* dfpo args... with DFPO_HOME in the test folder (and `extra_env`, may be
 * NULL); returns the exit status, stderr in *err (caller frees). */
static int dfpo(const char *const *args, const char *extra_env, char **err) {
  return ts_dfpo_in(home, args, extra_env, err);
}

static int run_suite(const char *out, const char *set, char **err) {
  char cfg[400];
  snprintf(cfg, sizeof cfg, "%s/tiny.json", dir);
  const char *args[] = {"reproduce", "--config",           cfg, "--out",
                        out,         set ? "--set" : NULL, set, NULL};
  return dfpo(args, NULL, err);
}

/* A file's identity and last change: the same after a run that reused it. */
typedef struct file_id {
  ino_t ino;
  struct timespec mtime;
} file_id;

static file_id id_of(const char *path) {
  struct stat st;
  cr_assert_eq(stat(path, &st), 0, "%s missing", path);
  return (file_id){st.st_ino, st.st_mtim};
}

static int same(file_id a, file_id b) {
  return a.ino == b.ino && a.mtime.tv_sec == b.mtime.tv_sec && a.mtime.tv_nsec == b.mtime.tv_nsec;
}

Test(reproduce_imdb, prepares_once_reuses_and_rebuilds_on_a_new_vocabulary) {
  const char *data = ts_shared_data();
  if (!data)
    cr_skip_test("../shared/data is absent: no IMDB archive to prepare an imdb base from");
  /* 2 x 60 training reviews (96 train, 24 validation after the 80/20
   * split), 20 unlabelled, 2 x 5 test reviews; imported as `dfpo datasets
   * import` does, not prepared: reproduce prepares the splits */
  char src[400], path[700], out[400];
  snprintf(src, sizeof src, "%s/src", dir);
  ts_imdb_slice(data, src, NULL, 60, 5, 20);
  char *err;
  const char *imp[] = {"datasets", "import", "imdb", src, "--unverified", NULL};
  cr_assert_eq(dfpo(imp, NULL, &err), 0, "%s", err);
  free(err);

  snprintf(out, sizeof out, "%s/out", dir);
  int st = run_suite(out, NULL, &err);
  cr_assert_eq(st, 0, "%s", err);
  cr_expect(strstr(err, "imdb data: preparing the splits"), "%s", err);
  cr_expect(strstr(err, "training a 400-token BPE"), "%s", err);
  cr_expect(strstr(err, "pretraining 6 steps"), "%s", err);
  cr_expect(strstr(err, "imdb judge: training"), "%s", err);
  cr_expect(strstr(err, "2/2 cells done, 0 failed"), "%s", err);
  free(err);
  snprintf(path, sizeof path, "%s/datasets/imdb/1.0/splits/prepared.json", home);
  struct stat sb;
  cr_expect_eq(stat(path, &sb), 0, "the splits were prepared");

  snprintf(path, sizeof path, "%s/tiny-imdb/base-imdb.json", out);
  cJSON *base = ts_read_json(path);
  char model[600], tok[600], judge[600], bpe[700], jbin[700];
  snprintf(model, sizeof model, "%s", ts_json_str(base, "model"));
  snprintf(tok, sizeof tok, "%s", ts_json_str(base, "tokenizer"));
  snprintf(judge, sizeof judge, "%s", ts_json_str(base, "judge"));
  cr_expect(strstr(model, "/bases/imdb-"), "%s", model);
  cr_expect(strstr(tok, "/bases/imdb-tok-"), "%s", tok);
  cr_expect(strstr(judge, "/judges/sentiment-"), "%s", judge);
  cJSON_Delete(base);
  /* every cell's eval.json names the judge that scored it: this one */
  static const char *const algos[] = {"zero-shot", "dfpo"};
  for (int a = 0; a < 2; a++) {
    snprintf(path, sizeof path, "%s/tiny-imdb/imdb/%s/seed-0/eval.json", out, algos[a]);
    cJSON *ev = ts_read_json(path);
    const cJSON *j = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(ev, "judges"), 0);
    cr_assert_not_null(j, "%s names no judge", path);
    cr_expect_str_eq(ts_json_str(j, "dir"), judge);
    cr_expect_str_eq(ts_json_str(j, "name"), "sentiment");
    cr_expect(strstr(ts_json_str(j, "id"), "sentiment v1 sha256:"), "%s", ts_json_str(j, "id"));
    cJSON_Delete(ev);
  }
  snprintf(bpe, sizeof bpe, "%s/vocab.bpe", tok);
  snprintf(jbin, sizeof jbin, "%s/judge.bin", judge);
  file_id m1 = id_of(model), t1 = id_of(bpe), j1 = id_of(jbin);

  /* a second suite with the same keys: everything reused, nothing rewritten */
  snprintf(out, sizeof out, "%s/out2", dir);
  st = run_suite(out, NULL, &err);
  cr_assert_eq(st, 0, "%s", err);
  cr_expect(strstr(err, "imdb data: reusing"), "%s", err);
  cr_expect(strstr(err, "imdb tokenizer: reusing"), "%s", err);
  cr_expect(strstr(err, "imdb base model: reusing"), "%s", err);
  cr_expect(strstr(err, "imdb judge: reusing"), "%s", err);
  cr_expect_null(strstr(err, "pretraining"), "%s", err);
  free(err);
  cr_expect(same(id_of(model), m1), "base.ckpt was rewritten");
  cr_expect(same(id_of(bpe), t1), "the tokenizer was rewritten");
  cr_expect(same(id_of(jbin), j1), "the judge was rewritten");
  snprintf(path, sizeof path, "%s/tiny-imdb/base-imdb.json", out);
  base = ts_read_json(path);
  cr_expect_str_eq(ts_json_str(base, "model"), model);
  cr_expect_str_eq(ts_json_str(base, "tokenizer"), tok);
  cr_expect_str_eq(ts_json_str(base, "judge"), judge);
  cJSON_Delete(base);

  /* another vocabulary: a new tokenizer and base; the judge does not depend
   * on it */
  snprintf(out, sizeof out, "%s/out3", dir);
  char cfg[400];
  snprintf(cfg, sizeof cfg, "%s/tiny.json", dir);
  const char *args[] = {
      "reproduce",      "--config", cfg, "--out", out, "--set", "tokenizer.vocab_size=420",
      "--prepare-only", NULL};
  st = dfpo(args, NULL, &err);
  cr_assert_eq(st, 0, "%s", err);
  cr_expect(strstr(err, "training a 420-token BPE"), "%s", err);
  cr_expect(strstr(err, "pretraining 6 steps"), "%s", err);
  cr_expect(strstr(err, "imdb judge: reusing"), "%s", err);
  free(err);
  snprintf(path, sizeof path, "%s/tiny-imdb/base-imdb.json", out);
  base = ts_read_json(path);
  cr_expect_str_neq(ts_json_str(base, "model"), model);
  cr_expect_str_neq(ts_json_str(base, "tokenizer"), tok);
  cr_expect_str_eq(ts_json_str(base, "judge"), judge);
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(base, "vocab");
  cr_expect(cJSON_IsNumber(v) && v->valuedouble > 400 && v->valuedouble <= 420, "vocab %g",
            cJSON_IsNumber(v) ? v->valuedouble : -1);
  cJSON_Delete(base);
  cr_expect(same(id_of(model), m1), "the first base is kept");

  /* a Hugging Face classifier as the judge (task.judge.sentiment_model): no
   * trained judge is made or given to the cells, which score with it */
  if (!bt_have_python(1)) {
    cr_log_warn("/usr/bin/python3 has no torch module: the classifier-judge suite is skipped");
    return;
  }
  char hf[400], set[500];
  snprintf(hf, sizeof hf, "%s/distilbert", dir);
  cJSON *spec = cJSON_CreateObject(), *fs = cJSON_AddArrayToObject(spec, "folders");
  cJSON *f = bt_folder(hf, "distilbert", 1, 32, 2, 64, 128, 3,
                       (const char *[]){"NEGATIVE", "POSITIVE"}, 2);
  cJSON_AddItemToArray(fs, f);
  cJSON_Delete(bt_reference(dir, spec));
  cJSON_Delete(spec);
  snprintf(out, sizeof out, "%s/out4", dir);
  snprintf(set, sizeof set, "task.judge.sentiment_model=%s", hf);
  st = run_suite(out, set, &err);
  cr_assert_eq(st, 0, "%s", err);
  cr_expect(strstr(err, "replaces the trained sentiment judge"), "%s", err);
  cr_expect_null(strstr(err, "imdb judge: reusing"), "%s", err);
  free(err);
  snprintf(path, sizeof path, "%s/tiny-imdb/base-imdb.json", out);
  base = ts_read_json(path);
  cr_expect_str_eq(ts_json_str(base, "judge"), "");
  cJSON_Delete(base);
  for (int a = 0; a < 2; a++) {
    snprintf(path, sizeof path, "%s/tiny-imdb/imdb/%s/seed-0/eval.json", out, algos[a]);
    cJSON *ev = ts_read_json(path);
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(ev, "judges");
    cr_expect_eq(cJSON_GetArraySize(js), 1, "%s: one judge", path);
    const cJSON *j = cJSON_GetArrayItem(js, 0);
    cr_expect_str_eq(ts_json_str(j, "kind"), "huggingface");
    cr_expect_str_eq(ts_json_str(j, "dir"), hf);
    cJSON_Delete(ev);
  }
}

Test(reproduce_imdb, without_data_the_cells_fail_with_the_reason) {
  char out[400], path[700], cfg[400], *err;
  snprintf(out, sizeof out, "%s/out", dir);
  snprintf(cfg, sizeof cfg, "%s/tiny.json", dir);
  const char *args[] = {"reproduce", "--config", cfg, "--out", out, NULL};
  int st = dfpo(args, "DFPO_SHARED_DATA=/nonexistent", &err);
  cr_expect_eq(st, 3, "%s", err);
  cr_expect(strstr(err, "not in the cache and no local archive"), "%s", err);
  cr_expect(strstr(err, "0/2 cells done, 2 failed"), "%s", err);
  free(err);
  snprintf(path, sizeof path, "%s/tiny-imdb/failed/imdb/dfpo/seed-0.txt", out);
  char *why = ts_slurp(path);
  cr_expect(strstr(why, "dfpo fetch imdb"), "%s", why);
  free(why);
}

/* --shared-data wins over $DFPO_SHARED_DATA: the archive is looked for in
 * the folder the option names. */
Test(reproduce_imdb, shared_data_option_names_the_archive_folder) {
  char out[400], cfg[400], *err;
  snprintf(out, sizeof out, "%s/out", dir);
  snprintf(cfg, sizeof cfg, "%s/tiny.json", dir);
  const char *args[] = {"reproduce",     "--config",         cfg, "--out", out,
                        "--shared-data", "/nonexistent-opt", NULL};
  int st = dfpo(args, "DFPO_SHARED_DATA=/nonexistent-env", &err);
  cr_expect_eq(st, 3, "%s", err);
  cr_expect(strstr(err, "no local archive at /nonexistent-opt/imdb/aclImdb.tar.gz"), "%s", err);
  cr_expect_null(strstr(err, "/nonexistent-env"), "%s", err);
  free(err);
  const char *help[] = {"reproduce", "--help", NULL};
  ts_run r;
  ts_dfpo_home(&r, home, (char *const *)help, NULL);
  cr_expect(strstr(r.out, "--shared-data DIR") && strstr(r.out, "$DFPO_SHARED_DATA"), "%s", r.out);
  ts_run_free(&r);
}
