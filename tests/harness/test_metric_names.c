/* One name per metric: every metric a task writes into eval.json is known
 * to `dfpo report` and `dfpo check` (a label and a direction), whether it
 * is the task's own (its registry row) or the metrics library's
 * (met_metrics). Checked on the tables themselves, on the aggregate steps
 * and the diversity block run on hand data, and on the eval.json of a real
 * synthetic run; plus: a suite with more metrics than a table holds fails
 * with a message instead of dropping them. */
#include "harness/rundir.h"
#include "harness/suite.h"
#include "harness/task_internal.h"
#include "tests/support/support.h"
#include "trainer/gpt2.h"
#include "trainer/model.h"
#include "trainer/tok.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The report knows key: a label and the same direction as the tables. */
static void expect_known(const char *key, const char *where) {
  const met_metric_info *m = task_metric_find(key);
  cr_expect_not_null(m, "%s writes '%s', which dfpo report does not know", where, key);
  if (!m)
    return;
  cr_expect(m->label && m->label[0], "%s: '%s' has no label", where, key);
  cr_expect(m->better >= -1 && m->better <= 1, "%s: '%s' direction %d", where, key, m->better);
  cr_expect_eq(res_metric_direction(key), m->better, "%s: '%s'", where, key);
  cr_expect_str_eq(res_metric_label(key), m->label, "%s: '%s'", where, key);
}

/* Every number of a metrics object (and its diversity block). */
static void expect_all_known(const cJSON *metrics, const char *where) {
  const cJSON *x;
  int n = 0;
  cJSON_ArrayForEach(x, metrics) {
    if (cJSON_IsObject(x)) {
      cr_expect_str_eq(x->string, "diversity", "%s: block '%s'", where, x->string);
      const cJSON *y;
      cJSON_ArrayForEach(y, x) {
        cr_expect_not_null(met_metric_find(y->string),
                           "%s writes diversity '%s', which the metrics table does not know", where,
                           y->string);
        n++;
      }
    } else {
      expect_known(x->string, where);
      n++;
    }
  }
  cr_expect_gt(n, 0, "%s wrote no metric", where);
}

Test(metric_names, every_row_and_the_metrics_table) {
  int rows = 0;
  for (int i = 0; task_def_at(i); i++, rows++) {
    const task_def *d = task_def_at(i);
    cr_expect(d->name && d->name[0] && d->open && d->metrics, "row %d is incomplete", i);
    cr_expect_eq(task_find(d->name), d, "row %s is found by its name", d->name);
    cr_expect_str_eq(d->metrics[0].key, "reward", "%s: metric 0 is the reward", d->name);
    for (const met_metric_info *m = d->metrics; m->key; m++) {
      expect_known(m->key, d->name);
      /* one definition: the same key means the same label and direction in
       * every row, and no task redefines a library metric */
      const met_metric_info *f = task_metric_find(m->key);
      cr_expect_str_eq(f->label, m->label, "%s: '%s' labelled twice", d->name, m->key);
      cr_expect_eq(f->better, m->better, "%s: '%s' directed twice", d->name, m->key);
      cr_expect_null(met_metric_find(m->key), "%s: '%s' is also in the metrics table", d->name,
                     m->key);
    }
    for (const met_metric_id *id = d->library; id && *id != MET_METRIC_COUNT; id++) {
      cr_assert(*id >= 0 && *id < MET_METRIC_COUNT, "%s: library metric %d", d->name, (int)*id);
      expect_known(met_key(*id), d->name);
    }
    if (d->judge)
      cr_expect_eq(task_find_judge(d->judge->name), d, "%s: judge %s", d->name, d->judge->name);
  }
  cr_expect_geq(rows, 4);
  for (int i = 0; i < MET_METRIC_COUNT; i++) {
    const met_metric_info *m = &met_metrics[i];
    cr_assert(m->key && m->key[0] && m->label && m->label[0], "metrics table entry %d", i);
    cr_expect_eq(met_metric_find(m->key), m, "'%s' appears twice", m->key);
    expect_known(m->key, "the metrics library");
  }
  /* what the smoke suite's table shows must not move: display names, not
   * keys (issue 22) */
  cr_expect_str_eq(res_metric_label("nll_word"), "NLL/word");
  cr_expect_str_eq(res_metric_label("ppl_ref"), "Perplexity (ref)");
  cr_expect_str_eq(res_metric_label("ppl_gen"), "Perplexity (gen)");
  cr_expect_eq(res_metric_direction("oov_rate"), -1);
  cr_expect_null(task_metric_find("no_such_metric"));
}

/* rtp's aggregate on 3 prompts x 2 samples (toxicity is metric 1). */
Test(metric_names, rtp_aggregate_writes_known_keys) {
  task t;
  memset(&t, 0, sizeof t);
  task_set_metrics(&t, task_rtp_metrics, 2);
  size_t items[3] = {0, 1, 2};
  double v[3 * 2 * 2] = {0.9, 0.1, 0.8, 0.2, 0.4, 0.6, 0.3, 0.7, 1, 0, 0.95, 0.05};
  task_eval ev = {TASK_TEST, 3, 2, items, NULL, v};
  cJSON *m = cJSON_CreateObject();
  dfpo_err err;
  cr_assert_eq(task_rtp_aggregate(&t, &ev, m, &err), 0, "%s", err.msg);
  expect_all_known(m, "rtp's aggregate");
  cJSON_Delete(m);
}

/* commongen's aggregate on two hand items (needs WordNet). */
Test(metric_names, commongen_aggregate_writes_known_keys) {
  struct stat st;
  if (stat("/usr/share/wordnet/index.noun", &st) != 0 && !getenv("DFPO_WORDNET"))
    cr_skip_test("WordNet is not installed at /usr/share/wordnet");
  task t;
  memset(&t, 0, sizeof t);
  task_text_impl x = {0};
  dfpo_err err;
  cr_assert_eq(met_wordnet_open(&x.wn, NULL, &err), 0, "%s", err.msg);
  t.impl = &x;
  t.n_metrics = 2;
  char *refs[2] = {"a dog runs in the field", "the dog is running"};
  char *concepts[2] = {"dog", "run"};
  task_item it[2] = {{"p", refs[0], -1, refs, 2, concepts, 2},
                     {"q", refs[1], -1, refs, 2, concepts, 2}};
  t.items[TASK_TEST] = it;
  t.n[TASK_TEST] = 2;
  size_t items[2] = {0, 1};
  char *conts[2] = {"a dog runs", "dogs run fast"};
  double v[4] = {0};
  task_eval ev = {TASK_TEST, 2, 1, items, conts, v};
  cJSON *m = cJSON_CreateObject();
  cr_assert_eq(task_commongen_aggregate(&t, &ev, m, &err), 0, "%s", err.msg);
  expect_all_known(m, "commongen's aggregate");
  cJSON_Delete(m);
  met_wordnet_free(x.wn);
}

Test(metric_names, diversity_block_keys_are_in_the_metrics_table) {
  char *texts[2] = {"a b a", "b c"};
  cJSON *m = cJSON_CreateObject();
  dfpo_err err;
  cr_assert_eq(task_diversity(texts, 2, m, &err), 0, "%s", err.msg);
  const cJSON *d = cJSON_GetObjectItem(m, "diversity");
  cr_assert(cJSON_IsObject(d));
  expect_all_known(m, "task_diversity");
  cJSON_Delete(m);
}

/* A zero-shot cell of the synthetic task with an untrained tiny model: its
 * eval.json, as dfpo train writes it. */
Test(metric_names, a_synthetic_eval_json, .timeout = 300) {
  char dir[256], corpus[300], tokdir[300], ckpt[300], out[300], path[400];
  ts_tmpdir(dir, sizeof dir);
  snprintf(corpus, sizeof corpus, "%s/corpus.txt", dir);
  snprintf(tokdir, sizeof tokdir, "%s/tok", dir);
  snprintf(ckpt, sizeof ckpt, "%s/base.ckpt", dir);
  snprintf(out, sizeof out, "%s/runs", dir);
  task t;
  dfpo_err err;
  task_synth_params p = task_synth_defaults();
  p.n[TASK_TRAIN] = 40;
  p.n[TASK_VALIDATION] = p.n[TASK_TEST] = 4;
  cr_assert_eq(task_synth_init(&t, &p, &err), 0, "%s", err.msg);
  cr_assert_eq(task_write_corpus(&t, TASK_TRAIN, corpus, &err), 0, "%s", err.msg);
  task_free(&t);
  const char *files[1] = {corpus};
  cr_assert_eq(tok_train(files, 1, 300, tokdir, NULL, &err), 0, "%s", err.msg);
  tok_tokenizer *tok;
  cr_assert_eq(tok_load(&tok, tokdir, &err), 0, "%s", err.msg);
  gpt2_config c = {1, 2, 32, (int)tok_vocab_size(tok), 64, MODEL_HEAD_NONE, 0};
  tok_free(tok);
  model_t *m;
  cr_assert_eq(gpt2_new(&m, &c, &err), 0, "%s", err.msg);
  model_init_random(m, 1);
  cr_assert_eq(model_save(m, ckpt, 0, &err), 0, "%s", err.msg);
  model_free(m);
  ts_run r;
  ts_dfpo(&r, "train", "--task", "synthetic", "--algo", "zero-shot", "--seed", "0", "--out", out,
          "--model", ckpt, "--tokenizer", tokdir, "--set", "device=cpu", "--set",
          "task.max_prompt_tokens=32", "--set", "generation.max_new_tokens=6", "--set",
          "generation.min_new_tokens=2", "--set", "task.synthetic.n_train=16", "--set",
          "task.synthetic.n_validation=4", "--set", "task.synthetic.n_test=4", NULL);
  cr_assert_eq(r.status, 0, "%s", r.err);
  ts_run_free(&r);
  snprintf(path, sizeof path, "%s/default/synthetic/zero-shot/seed-0/eval.json", out);
  char *text = ts_slurp(path);
  cr_assert_not_null(text, "%s missing", path);
  cJSON *o = cJSON_Parse(text);
  free(text);
  const cJSON *metrics = cJSON_GetObjectItem(o, "metrics");
  cr_assert(cJSON_IsObject(metrics), "%s has no metrics", path);
  expect_all_known(metrics, "the synthetic task's eval.json");
  cJSON_Delete(o);
  if (!getenv("DFPO_KEEP_TEST_FILES"))
    ts_rmtree(dir);
}

/* One metric past the table's capacity: res_collect says so. */
Test(metric_names, too_many_metrics_fail_with_a_message) {
  char dir[256], cell[400], path[500];
  ts_tmpdir(dir, sizeof dir);
  snprintf(cell, sizeof cell, "%s/synthetic/ppo/seed-0", dir);
  char cmd[600];
  snprintf(cmd, sizeof cmd, "mkdir -p '%s'", cell);
  cr_assert_eq(system(cmd), 0);
  char json[8192] = "{\"algo\": \"ppo\", \"metrics\": {";
  for (int i = 0; i <= RES_MAX_METRICS; i++) {
    size_t l = strlen(json);
    snprintf(json + l, sizeof json - l, "%s\"m%d\": %d", i ? ", " : "", i, i);
  }
  strcat(json, "}}\n");
  snprintf(path, sizeof path, "%s/eval.json", cell);
  ts_write_text(path, json);
  res_suite s;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(rundir_done_write(cell, &err), 0, "%s", err.msg);
  cr_expect_neq(res_collect(&s, dir, 0, &err), 0, "metric %d is not dropped silently",
                RES_MAX_METRICS + 1);
  cr_expect(strstr(err.msg, "one too many"), "%s", err.msg);
  if (!getenv("DFPO_KEEP_TEST_FILES"))
    ts_rmtree(dir);
}
