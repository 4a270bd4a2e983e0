/* Every key of the config schema has a reader: a key that is validated and
 * documented but never read is a setting that silently does nothing. The
 * config layer records each key a process looks up (cfg_was_read) and, with
 * DFPO_CFG_TRACE, appends it to a file, so that the lookups of dfpo
 * reproduce's child processes count too. The test runs what reads the keys,
 * each as cheaply as it can, and asserts that their union is the schema:
 *
 *  - a very small dfpo reproduce of the synthetic task with all five
 *    algorithms (suite keys, the tokenizer and base-model pretraining,
 *    every train, generation, PPO, NLPO, DfPO and evaluation key);
 *  - dfpo reproduce --prepare-only and dfpo train of the imdb and rtp tasks
 *    over a made-up split folder of one record: the real-data keys
 *    (task.data_dir, task.max_items, task.rtp.challenging, the judges,
 *    judge.max_texts) are read before too few texts or the missing judges
 *    stop them;
 *  - dfpo pretrain --config: the pretrain.* keys only it reads (its corpus
 *    files and folder), read before the missing tokenizer stops it.
 *
 * Only the trace matters for the last two, not their exit status. */
#include "harness/config.h"
#include "harness/train_internal.h"
#include "tests/support/support.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char tiny[] =
    "{\"suite\": {\"name\": \"keys\", \"tasks\": [\"synthetic\"],\n"
    "  \"algos\": [\"zero-shot\", \"sft\", \"ppo\", \"nlpo\", \"dfpo\"], \"seeds\": [0]},\n"
    " \"device\": \"cpu\", \"threads\": 1,\n"
    " \"task\": {\"max_prompt_tokens\": 32, \"synthetic\": {\"n_train\": 60, \"n_validation\": "
    "4, \"n_test\": 4, \"min_words\": 12}},\n"
    " \"tokenizer\": {\"vocab_size\": 300},\n"
    " \"model\": {\"n_layer\": 1, \"n_head\": 2, \"n_embd\": 32, \"block_size\": 64},\n"
    " \"pretrain\": {\"steps\": 4, \"batch_size\": 4, \"seq_len\": 32, \"eval_every\": 2,\n"
    "   \"ckpt_every\": 2},\n"
    " \"generation\": {\"max_new_tokens\": 4, \"min_new_tokens\": 2},\n"
    " \"train\": {\"iterations\": 1, \"batch_size\": 4, \"minibatch\": 4, \"epochs\": 1,\n"
    "   \"eval_every\": 1},\n"
    " \"nlpo\": {\"k_min\": 10}}\n";

static const char record[] = "{\"prompt\": \"the film was\", \"references\": [\"the film was "
                             "good and fine\"], \"concepts\": [\"film\"], \"label\": 1, "
                             "\"toxicity\": 0.1}\n";

Test(config_keys, every_schema_key_has_a_reader, .timeout = 600) {
  char dir[256], home[300], trace[300], env[320], path[400], data[300], none[320];
  ts_tmpdir(dir, sizeof dir);
  snprintf(home, sizeof home, "%s/home", dir);
  snprintf(trace, sizeof trace, "%s/trace.txt", dir);
  snprintf(env, sizeof env, "DFPO_CFG_TRACE=%s", trace);
  snprintf(data, sizeof data, "%s/data", dir);
  snprintf(none, sizeof none, "%s/none", dir);
  char *err = NULL;

  /* the synthetic task end to end */
  snprintf(path, sizeof path, "%s/tiny.json", dir);
  ts_write_text(path, tiny);
  char out[300];
  snprintf(out, sizeof out, "%s/out", dir);
  const char *repro[] = {"reproduce", "--config", path, "--out", out, NULL};
  cr_assert_eq(ts_dfpo_in(home, repro, env, &err), 0, "dfpo reproduce: %s", err);
  free(err);

  /* the real-data tasks over a made-up split folder */
  char cmd[400];
  snprintf(cmd, sizeof cmd, "mkdir -p %s", data);
  cr_assert_eq(system(cmd), 0);
  const char *splits[] = {"train", "validation", "test"};
  for (int i = 0; i < 3; i++) {
    snprintf(path, sizeof path, "%s/%s.jsonl", data, splits[i]);
    ts_write_text(path, record);
  }
  char dd[400], js[400], jt[400];
  snprintf(dd, sizeof dd, "task.data_dir=%s", data);
  snprintf(js, sizeof js, "task.judge.sentiment=%s", none);
  snprintf(jt, sizeof jt, "task.judge.toxicity=%s", none);
  /* reproduce prepares imdb as far as its judge (judge.max_texts): a
   * tokenizer, a one-step base model, then a judge of too few texts */
  const char *imdb_prep[] = {"reproduce", "--out",
                             out,         "--prepare-only",
                             "--set",     "suite.tasks=imdb",
                             "--set",     dd,
                             "--set",     "pretrain.steps=1",
                             "--set",     "pretrain.seq_len=4",
                             "--set",     "pretrain.batch_size=1",
                             "--set",     "tokenizer.vocab_size=257",
                             "--set",     "model.n_layer=1",
                             "--set",     "model.n_embd=8",
                             "--set",     "model.block_size=16",
                             NULL};
  const char *imdb[] = {"train", "--task", "imdb", "--model", none, "--tokenizer", none, "--out",
                        out,     "--set",  dd,     "--set",   js,   NULL};
  const char *rtp[] = {"train", "--task", "rtp", "--model", none, "--tokenizer", none, "--out",
                       out,     "--set",  dd,    "--set",   jt,   NULL};
  const char *cg[] = {"train", "--task", "commongen", "--model", none, "--tokenizer",
                      none,    "--out",  out,         "--set",   dd,   NULL};
  const char *const *runs[] = {imdb_prep, imdb, rtp, cg};
  for (int i = 0; i < 4; i++) {
    ts_dfpo_in(home, runs[i], env, &err);
    free(err);
  }

  /* dfpo pretrain --config */
  snprintf(path, sizeof path, "%s/pretrain.json", dir);
  char text[1400];
  snprintf(text, sizeof text,
           "{\"tokenizer\": {\"path\": \"%s\"}, \"pretrain\": {\"train\": [\"%s\"], "
           "\"validation\": [\"%s\"], \"out\": \"%s/pre\"}}\n",
           none, none, none, dir);
  ts_write_text(path, text);
  const char *pre[] = {"pretrain", "--config", path, NULL};
  ts_dfpo_in(home, pre, env, &err);
  free(err);

  /* the union of the lookups against the schema */
  char *got = ts_slurp(trace);
  char missing[4096] = "";
  int n_missing = 0;
  for (const cfg_key *k = cfg_schema; k->path; k++) {
    char line[200];
    snprintf(line, sizeof line, "\n%s\n", k->path);
    int found = !strncmp(got, line + 1, strlen(line + 1)) || strstr(got, line);
    if (!found) {
      n_missing++;
      strncat(missing, " ", sizeof missing - strlen(missing) - 1);
      strncat(missing, k->path, sizeof missing - strlen(missing) - 1);
    }
  }
  free(got);
  cr_expect_eq(n_missing, 0, "%d schema key(s) that nothing reads:%s", n_missing, missing);
  if (!getenv("DFPO_KEEP_TEST_FILES"))
    ts_rmtree(dir);
}

/* model.value_model and model.activation_checkpointing (docs/memory.md):
 * separate (the default) and shared are read into the settings, another
 * value is refused naming the two; shared goes with LoRA, and so does
 * model.reference_dtype (the LoRA base in 16 bits). */
Test(config_keys, memory_switches) {
  cfg c;
  dfpo_err err;
  trn_settings s;
  cr_assert_eq(cfg_load(&c, cfg_schema, NULL, NULL, 0, &err), DFPO_OK, "%s", err.msg);
  cr_assert_eq(trn_settings_read(&c, &s, &err), DFPO_OK, "%s", err.msg);
  cr_expect(!s.shared_value && !s.activation_checkpointing, "the defaults are off");
  cfg_free(&c);
  const char *on[] = {"model.value_model=shared", "model.activation_checkpointing=true"};
  cr_assert_eq(cfg_load(&c, cfg_schema, NULL, on, 2, &err), DFPO_OK, "%s", err.msg);
  cr_assert_eq(trn_settings_read(&c, &s, &err), DFPO_OK, "%s", err.msg);
  cr_expect(s.shared_value && s.activation_checkpointing);
  cfg_free(&c);
  const char *bad[] = {"model.value_model=both"};
  cr_assert_neq(cfg_load(&c, cfg_schema, NULL, bad, 1, &err), DFPO_OK);
  cr_expect(strstr(err.msg, "model.value_model") && strstr(err.msg, "separate") &&
                strstr(err.msg, "shared"),
            "%s", err.msg);
  cr_expect_eq(s.reference_dtype, OPS_DTYPE_F32, "the reference is fp32 by default");
  const char *half[] = {"model.reference_dtype=bf16"};
  cr_assert_eq(cfg_load(&c, cfg_schema, NULL, half, 1, &err), DFPO_OK, "%s", err.msg);
  cr_assert_eq(trn_settings_read(&c, &s, &err), DFPO_OK, "%s", err.msg);
  cr_expect_eq(s.reference_dtype, OPS_DTYPE_BF16);
  cfg_free(&c);
  const char *half_lora[] = {"model.reference_dtype=f16", "model.lora_rank=4", "algo=ppo"};
  cr_assert_eq(cfg_load(&c, cfg_schema, NULL, half_lora, 3, &err), DFPO_OK, "%s", err.msg);
  /* with LoRA: the frozen base the policy and the reference share */
  cr_assert_eq(trn_settings_read(&c, &s, &err), DFPO_OK, "%s", err.msg);
  cr_expect(s.reference_dtype == OPS_DTYPE_F16 && s.lora_rank == 4);
  cfg_free(&c);
  const char *lora[] = {"model.value_model=shared", "model.lora_rank=4", "algo=ppo"};
  cr_assert_eq(cfg_load(&c, cfg_schema, NULL, lora, 3, &err), DFPO_OK, "%s", err.msg);
  cr_assert_eq(trn_settings_read(&c, &s, &err), DFPO_OK, "%s", err.msg);
  cr_expect(s.shared_value && s.lora_rank == 4);
  cfg_free(&c);
}

/* train.lr_schedule and train.warmup_steps: the defaults give train.lr at
 * every step, bit for bit; warmup rises linearly, linear and cosine fall
 * to 0 at the end. */
Test(config_keys, lr_schedule_of_train) {
  cfg c;
  dfpo_err err;
  trn_settings s;
  const char *lr[] = {"train.lr=3e-4"};
  cr_assert_eq(cfg_load(&c, cfg_schema, NULL, lr, 1, &err), DFPO_OK, "%s", err.msg);
  cr_assert_eq(trn_settings_read(&c, &s, &err), DFPO_OK, "%s", err.msg);
  for (int64_t step = 0; step < 10; step++)
    cr_expect_eq(trn_lr_at(&s, step, 10), (float)3e-4);
  cfg_free(&c);
  const char *lin[] = {"train.lr=1e-3", "train.lr_schedule=linear", "train.warmup_steps=2"};
  cr_assert_eq(cfg_load(&c, cfg_schema, NULL, lin, 3, &err), DFPO_OK, "%s", err.msg);
  cr_assert_eq(trn_settings_read(&c, &s, &err), DFPO_OK, "%s", err.msg);
  cr_expect_float_eq(trn_lr_at(&s, 0, 12), 0.5e-3f, 1e-9);
  cr_expect_float_eq(trn_lr_at(&s, 1, 12), 1e-3f, 1e-9);
  cr_expect_float_eq(trn_lr_at(&s, 2, 12), 1e-3f, 1e-9);
  cr_expect_float_eq(trn_lr_at(&s, 7, 12), 0.5e-3f, 1e-9);
  cr_expect_float_eq(trn_lr_at(&s, 12, 12), 0.0f, 1e-9);
  cfg_free(&c);
  const char *cosine[] = {"train.lr=1e-3", "train.lr_schedule=cosine"};
  cr_assert_eq(cfg_load(&c, cfg_schema, NULL, cosine, 2, &err), DFPO_OK, "%s", err.msg);
  cr_assert_eq(trn_settings_read(&c, &s, &err), DFPO_OK, "%s", err.msg);
  cr_expect_float_eq(trn_lr_at(&s, 0, 10), 1e-3f, 1e-9);
  cr_expect_float_eq(trn_lr_at(&s, 5, 10), 0.5e-3f, 1e-8);
  cr_expect_float_eq(trn_lr_at(&s, 10, 10), 0.0f, 1e-9);
  cfg_free(&c);
}
