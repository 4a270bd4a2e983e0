/* `dfpo train` with a T5 policy (an encoder-decoder) on CommonGen, end to
 * end on the CPU: a tiny random T5 (t5_new, exported with
 * model_export_hf as a Hugging Face folder with the spiece.model that
 * tests/trainer/t5_reference.py --spm trains), the prompts as its sources
 * (ended with </s>), zero-shot and SFT (rows [source | reference </s>]).
 * No reference numbers: SFT must lower its own training loss and raise its
 * validation METEOR above the untrained model's, and its best.ckpt must
 * load back as the same T5. eval.ppl_ref (plain-text scoring, which T5
 * lacks) is refused with a message saying how to turn it off. Skipped,
 * saying why, without ../shared/data (CommonGen) or without
 * /usr/bin/python3's torch and sentencepiece (the tokenizer's trainer). */
#include "tests/support/support.h"
#include "trainer/model.h"
#include "trainer/t5.h"
#include "trainer/tok.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void run_dfpo(const char *home, char **args, int want_status, const char *want_err) {
  ts_run r;
  ts_dfpo_home(&r, home, args, NULL);
  cr_assert_eq(r.status, want_status, "dfpo %s %s: status %d: %s", args[0], args[1], r.status,
               r.err);
  if (want_err)
    cr_expect(strstr(r.err, want_err) != NULL, "message lacks '%s': %s", want_err, r.err);
  ts_run_free(&r);
}

/* dfpo train --task commongen --algo ALGO --seed 0 --out OUT --model MODEL
 * --device cpu, each of sets[] (NULL-terminated) as --set, --stop-after N
 * when stop_after > 0. */
static void train(const char *home, const char *out, const char *model, const char *algo,
                  const char *const *sets, int stop_after, int want_status, const char *want_err) {
  char *args[40], stop[16];
  int n = 0;
  const char *fixed[] = {"train", "--task", "commongen", "--algo", algo,       "--seed", "0",
                         "--out", out,      "--model",   model,    "--device", "cpu"};
  for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
    args[n++] = (char *)fixed[i];
  for (int i = 0; sets && sets[i] && n < 36; i++) {
    args[n++] = "--set";
    args[n++] = (char *)sets[i];
  }
  if (stop_after > 0) {
    snprintf(stop, sizeof stop, "%d", stop_after);
    args[n++] = "--stop-after";
    args[n++] = stop;
  }
  args[n] = NULL;
  run_dfpo(home, args, want_status, want_err);
}

/* The training loss of each epoch line of train.jsonl (NAN where none) and
 * the validation rewards, n lines at most; returns the lines read. */
static int read_log(const char *path, double *loss, double *val, int n) {
  char *text = NULL;
  dfpo_err err;
  cr_assert_eq(dfpo_read_file(path, &text, NULL, &err), DFPO_OK, "%s", path);
  int k = 0;
  char *save = NULL;
  for (char *line = strtok_r(text, "\n", &save); line && k < n;
       line = strtok_r(NULL, "\n", &save), k++) {
    cJSON *j = cJSON_Parse(line);
    const cJSON *l = cJSON_GetObjectItem(j, "loss"), *v = cJSON_GetObjectItem(j, "val_reward");
    loss[k] = cJSON_IsNumber(l) ? l->valuedouble : NAN;
    val[k] = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    cJSON_Delete(j);
  }
  free(text);
  return k;
}

/* The lines of train.jsonl without their clock readings (time,
 * iteration_s, elapsed_s), as heap strings into out[n]; returns the count. */
static int log_lines(const char *path, char **out, int n) {
  char *text = NULL;
  dfpo_err err;
  cr_assert_eq(dfpo_read_file(path, &text, NULL, &err), DFPO_OK, "%s", path);
  int k = 0;
  char *save = NULL;
  for (char *line = strtok_r(text, "\n", &save); line && k < n;
       line = strtok_r(NULL, "\n", &save), k++) {
    cJSON *j = cJSON_Parse(line);
    cr_assert_not_null(j, "%s: not JSON: %s", path, line);
    cJSON_DeleteItemFromObject(j, "time");
    cJSON_DeleteItemFromObject(j, "iteration_s");
    cJSON_DeleteItemFromObject(j, "elapsed_s");
    out[k] = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
  }
  free(text);
  return k;
}

Test(t5_train, commongen_zero_shot_and_sft_with_a_t5, .timeout = 600) {
  const char *data = ts_shared_data();
  if (!data)
    cr_skip_test("no ../shared/data (CommonGen): skipped");
  if (!ts_python_has("torch, sentencepiece"))
    cr_skip_test("/usr/bin/python3 lacks torch or sentencepiece: no spiece.model can be trained");
  char dir[256], home[300], spm[300], model[300], cg[300], out[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(home, sizeof home, "%s/home", dir);
  snprintf(spm, sizeof spm, "%s/spm", dir);
  snprintf(model, sizeof model, "%s/t5", dir);
  snprintf(cg, sizeof cg, "%s/commongen", dir);
  snprintf(out, sizeof out, "%s/runs", dir);
  /* the tokenizer, then a random T5 of its vocabulary as a folder */
  ts_run r;
  char *sargv[] = {"/usr/bin/python3", DFPO_SOURCE_DIR "/tests/trainer/t5_reference.py", "--spm",
                   spm, NULL};
  ts_run_cmd(&r, sargv, NULL, NULL);
  cr_assert_eq(r.status, 0, "t5_reference.py --spm: %s", r.err);
  ts_run_free(&r);
  dfpo_err err;
  dfpo_err_clear(&err);
  tok_tokenizer *tok;
  cr_assert_eq(tok_load(&tok, spm, &err), DFPO_OK, "%s", err.msg);
  t5_config c = {.vocab_size = (int)tok_vocab_size(tok),
                 .d_model = 24,
                 .d_kv = 8,
                 .d_ff = 32,
                 .n_head = 2,
                 .n_layer = 1,
                 .n_dec_layer = 1,
                 .num_buckets = 16,
                 .max_distance = 32,
                 .eps = 1e-6f,
                 .gated = 0,
                 .tied = 1,
                 .n_pos = 64,
                 .start_id = 0,
                 .eos_id = 1};
  model_t *m;
  cr_assert_eq(t5_new(&m, &c, &err), DFPO_OK, "%s", err.msg);
  model_init_random(m, 5);
  cr_assert_eq(mkdir(model, 0777), 0);
  cr_assert_eq(model_export_hf(m, tok, model, &err), DFPO_OK, "%s", err.msg);
  tok_free(tok);
  /* CommonGen's first 600 training concept sets and the dev set's first 200 */
  ts_commongen_slice(data, cg, 600, 200, 20);
  char *imp[] = {"datasets", "import", "commongen", cg, "--unverified", NULL};
  run_dfpo(home, imp, 0, NULL);
  char *prep[] = {"datasets", "prepare", "commongen", NULL};
  run_dfpo(home, prep, 0, NULL);

  /* ppl_ref (on by default) needs plain-text scoring: refused, saying how */
  train(home, out, model, "zero-shot", NULL, 0, 1, "eval.ppl_ref=false");
  const char *zs[] = {"eval.ppl_ref=false", "task.max_items=32", NULL};
  train(home, out, model, "zero-shot", zs, 0, 0, NULL);
  char path[1000];
  snprintf(path, sizeof path, "%s/default/commongen/zero-shot/seed-0/eval.json", out);
  cJSON *ev = ts_read_json(path);
  const cJSON *met = cJSON_GetObjectItem(ev, "metrics");
  cr_expect(cJSON_IsNumber(cJSON_GetObjectItem(met, "meteor")), "no meteor in %s", path);
  cr_expect(cJSON_IsNumber(cJSON_GetObjectItem(met, "bleu4")), "no bleu4 in %s", path);
  cJSON_Delete(ev);

  const char *sft[] = {"eval.ppl_ref=false", "task.max_items=400", "train.iterations=4",
                       "train.eval_every=4", "train.lr=3e-3",      NULL};
  train(home, out, model, "sft", sft, 0, 0, NULL);
  snprintf(path, sizeof path, "%s/default/commongen/sft/seed-0/train.jsonl", out);
  double loss[8], val[8];
  int n = read_log(path, loss, val, 8);
  cr_assert_eq(n, 5, "%s: %d lines, 5 expected (epochs 0-4)", path, n);
  cr_log_info("T5 SFT on CommonGen: epoch losses %.3f %.3f %.3f %.3f; validation METEOR %.4f -> "
              "%.4f",
              loss[0], loss[1], loss[2], loss[3], val[0], val[4]);
  cr_expect_lt(loss[3], loss[0] - 0.5, "SFT did not lower its loss: %.3f -> %.3f", loss[0],
               loss[3]);
  cr_expect_gt(val[4], val[0], "SFT did not raise the validation METEOR: %.4f -> %.4f", val[0],
               val[4]);
  snprintf(path, sizeof path, "%s/default/commongen/sft/seed-0/checkpoint/best.ckpt", out);
  model_t *b;
  cr_assert_eq(model_load(&b, path, &err), DFPO_OK, "%s", err.msg);
  cr_expect_str_eq(model_get_config(b)->arch, "t5");
  cr_expect_eq(memcmp(t5_get_config(b), &c, sizeof c), 0, "best.ckpt's config differs");
  model_free(b);
  model_free(m);

  /* PPO over the T5 policy and its T5 value model, uninterrupted and
   * stopped after iteration 1 then resumed from the resumable checkpoint
   * (policy, value model, AdamW states): the same log */
  char *whole[8] = {0}, *resumed[8] = {0};
  for (int k = 0; k < 3; k++) {
    char o2[400];
    snprintf(o2, sizeof o2, "%s/%s", dir, k ? "ppo-resumed" : "ppo");
    const char *ppo[] = {"eval.ppl_ref=false", "task.max_items=32",  "train.iterations=3",
                         "train.eval_every=1", "train.batch_size=8", NULL};
    train(home, o2, model, "ppo", ppo, k == 1 ? 1 : 0, 0, NULL);
    if (k == 1)
      continue;
    snprintf(path, sizeof path, "%s/default/commongen/ppo/seed-0/train.jsonl", o2);
    cr_assert_eq(log_lines(path, k ? resumed : whole, 8), 4, "%s: 4 lines expected", path);
  }
  for (int i = 0; i < 4; i++) {
    cr_expect_str_eq(resumed[i], whole[i], "PPO iteration %d: resumed and uninterrupted differ", i);
    cr_log_info("T5 PPO on CommonGen, iteration %d: %s", i, whole[i]);
    free(resumed[i]), free(whole[i]);
  }
  ts_rmtree(dir);
}
