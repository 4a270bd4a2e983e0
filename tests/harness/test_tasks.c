/* The tasks of `dfpo train` on real data (docs/tasks.md): imdb, rtp and
 * commongen end to end through the command (dataset import and prepare,
 * judge training, a zero-shot cell, eval.json), on small slices of the real
 * data in ../shared/data so that each stays short; skipped, saying so, when
 * that folder is absent. The base policy is a tiny random GPT-2 over a BPE
 * trained on the slice: these tests check the plumbing and the metrics'
 * arithmetic, not a model's quality. Plus the prompt rules against hand
 * examples and the CommonGen reward against NLTK. */
#include "harness/config.h"
#include "harness/task.h"
#include "tests/harness/task_testutil.h"
#include "tests/support/support.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------- helpers */

static void must(const char *home, char *const *args) {
  ts_run r;
  ts_dfpo_home(&r, home, args, NULL);
  cr_assert_eq(r.status, 0, "dfpo %s %s: %s", args[0], args[1], r.err);
  ts_run_free(&r);
}

/* must() with the arguments inline, NULL-terminated. */
static void mustv(const char *home, ...) {
  char *args[64];
  int n = 0;
  va_list ap;
  va_start(ap, home);
  while (n < 63 && (args[n] = va_arg(ap, char *)))
    n++;
  va_end(ap);
  args[n] = NULL;
  must(home, args);
}

static double num(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  cr_assert(cJSON_IsNumber(v), "'%s' missing or not a number", key);
  return v->valuedouble;
}

static void check_judge_recorded(const cJSON *ev, const char *judge_dir, const char *name) {
  const cJSON *js = cJSON_GetObjectItemCaseSensitive(ev, "judges");
  cr_assert(cJSON_IsArray(js) && cJSON_GetArraySize(js) == 1, "eval.json names one judge");
  const cJSON *j = cJSON_GetArrayItem(js, 0);
  char path[600], want[128];
  snprintf(path, sizeof path, "%s/card.json", judge_dir);
  cJSON *card = ts_read_json(path);
  const char *sha = ts_json_str(card, "model_sha256");
  cr_expect_eq(strlen(sha), 64);
  cr_expect_str_eq(ts_json_str(j, "sha256"), sha);
  cr_expect_eq(num(j, "version"), num(card, "version"));
  cr_expect_str_eq(ts_json_str(j, "name"), name);
  snprintf(want, sizeof want, "%s v%d sha256:%.16s", name, (int)num(card, "version"), sha);
  cr_expect_str_eq(ts_json_str(j, "id"), want);
  cJSON_Delete(card);
}

static int deviation_mentions(const cJSON *ev, const char *what) {
  const cJSON *d, *a = cJSON_GetObjectItemCaseSensitive(ev, "deviations");
  cJSON_ArrayForEach(d, a) if (cJSON_IsString(d) && strstr(d->valuestring, what)) return 1;
  return 0;
}

/* --------------------------------------------------------- prompt rules */

Test(task_prompts, hand_examples) {
  /* The IMDB rule: the first max(1, floor(words * fraction)) words, with the
   * spacing between them kept (docs/tasks.md: "first 50% of the
   * review's words"). Counted by hand: */
  cr_expect_eq(task_prompt_len("one two  three four five", 0.5), 7);   /* "one two" */
  cr_expect_eq(task_prompt_len("  Great film!\nI loved it", 0.5), 13); /* "  Great film!" */
  cr_expect_eq(task_prompt_len("a b c d", 0.5), 3);                    /* "a b" */
  cr_expect_eq(task_prompt_len("a b c d", 0.25), 1);                   /* "a" */
  cr_expect_eq(task_prompt_len("a b c d", 0.1), 1);  /* floor(0.4) = 0: at least one word */
  cr_expect_eq(task_prompt_len("a b c d", 0.99), 5); /* floor(3.96) = 3 words: "a b c" */
  cr_expect_eq(task_prompt_len("single", 0.5), 6);
  cr_expect_eq(task_prompt_len(" \n\t", 0.5), 0);
  /* CommonGen: the concepts in the order of the concept set */
  char *c[] = {"field", "look", "stand"};
  char *p = task_commongen_prompt(c, 3);
  cr_expect_str_eq(p, "generate a sentence with: field look stand.");
  free(p);
  /* RL4LMs' common_gen_repeat_penalty (CommonGenPenaltyShapingFunction):
   * penalised when the lower-cased text holds the concepts joined by
   * spaces ("field look stand"), the prefix, "generate" or "sentence";
   * each case worked out by hand from that rule */
  static const struct {
    const char *text;
    int repeats;
  } rep[] = {
      {" A man stands in the field and looks at the sky.", 0}, /* the concepts, not in order */
      {" Field look stand in a row.", 1},                      /* "field look stand", any case */
      {" field  look stand", 0},                               /* two spaces: not the string */
      {" Generate a sentence with: field.", 1},
      {" We GENERATEd power.", 1}, /* "generate" inside a word */
      {" The sentences were long.", 1},
      {" A generator in a field.", 0}, /* "generat" only */
      {"", 0},
  };
  for (size_t i = 0; i < sizeof rep / sizeof rep[0]; i++)
    cr_expect_eq(task_commongen_repeats(c, 3, rep[i].text), rep[i].repeats, "'%s'", rep[i].text);
}

Test(task_prompts, utf8_repair) {
  struct {
    const char *in, *out;
  } cases[] = {
      {"caf\xC3\xA9", "caf\xC3\xA9"}, /* valid: unchanged */
      {"a\xFF"
       "b",
       "a\xEF\xBF\xBD"
       "b"},                                      /* a stray byte */
      {"x\xE2\x82", "x\xEF\xBF\xBD\xEF\xBF\xBD"}, /* a cut 3-byte sequence: 2 bytes bad */
      {"\xC0\xAF", "\xEF\xBF\xBD\xEF\xBF\xBD"},   /* overlong '/' */
      {"\xED\xA0\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"}, /* a surrogate */
      {"\xF0\x9F\x98\x80", "\xF0\x9F\x98\x80"},                 /* 4 bytes, valid */
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char *o = dfpo_utf8_fix(cases[i].in, strlen(cases[i].in));
    cr_expect_str_eq(o, cases[i].out, "case %zu", i);
    free(o);
  }
}

/* ----------------------------------------------------------------- IMDB */

enum { IMDB_TRAIN = 250, IMDB_TEST = 25, IMDB_UNSUP = 2 };

Test(tasks, imdb_end_to_end, .timeout = 600) {
  const char *data = ts_shared_data();
  if (!data)
    cr_skip_test("../shared/data is absent: no IMDB archive for the imdb task");
  char home[256], src[400], corpus[400], model[400], tok[400], jdir[400], out[400];
  ts_tmpdir(home, sizeof home);
  snprintf(src, sizeof src, "%s/src", home);
  snprintf(corpus, sizeof corpus, "%s/corpus.txt", home);
  snprintf(jdir, sizeof jdir, "%s/judge-sentiment", home);
  snprintf(out, sizeof out, "%s/runs", home);
  ts_imdb_slice(data, src, corpus, IMDB_TRAIN, IMDB_TEST, IMDB_UNSUP);
  th_make_base(home, corpus, model, tok, sizeof model);

  /* without prepared data, or without a judge, the task says what to run */
  ts_run r;
  ts_dfpo_home(&r, home,
               (char *[]){"train", "--task", "imdb", "--algo", "zero-shot", "--model", model,
                          "--tokenizer", tok, "--out", out, NULL},
               NULL);
  cr_expect_eq(r.status, 2, "%s", r.err);
  cr_expect(strstr(r.err, "dfpo datasets prepare imdb"), "%s", r.err);
  ts_run_free(&r);
  mustv(home, "datasets", "import", "imdb", src, "--unverified", NULL);
  mustv(home, "datasets", "prepare", "imdb", NULL);
  ts_dfpo_home(&r, home,
               (char *[]){"train", "--task", "imdb", "--algo", "zero-shot", "--model", model,
                          "--tokenizer", tok, "--out", out, NULL},
               NULL);
  cr_expect_eq(r.status, 2, "%s", r.err);
  cr_expect(strstr(r.err, "dfpo judge train sentiment"), "%s", r.err);
  ts_run_free(&r);

  /* a judge on the slice's 400 training reviews (100 validate it) */
  mustv(home, "judge", "train", "sentiment", "--dir", jdir, "--hash-bits", "16", NULL);
  char jset[500];
  snprintf(jset, sizeof jset, "task.judge.sentiment=%s", jdir);
  mustv(home, "train", "--task", "imdb", "--algo", "zero-shot", "--seed", "1", "--model", model,
        "--tokenizer", tok, "--out", out, "--set", jset, "--set", "generation.max_new_tokens=12",
        "--set", "generation.min_new_tokens=12", "--set", "train.batch_size=25", NULL);
  char run[600], path[700];
  snprintf(run, sizeof run, "%s/default/imdb/zero-shot/seed-1", out);
  snprintf(path, sizeof path, "%s/eval.json", run);
  cJSON *ev = ts_read_json(path);
  check_judge_recorded(ev, jdir, "sentiment");
  const cJSON *m = cJSON_GetObjectItemCaseSensitive(ev, "metrics");
  double sent = num(m, "sentiment");
  cr_expect(sent > 0 && sent < 1, "sentiment %g", sent);
  cr_expect_eq(num(m, "reward"), sent);
  cr_expect_eq(num(ev, "test_prompts"), 2 * IMDB_TEST);
  cr_expect_eq(num(ev, "samples_per_prompt"), 1);
  const cJSON *dv = cJSON_GetObjectItemCaseSensitive(m, "diversity");
  double d1 = num(dv, "distinct1"), len = num(dv, "mean_length");
  cr_expect(d1 > 0 && d1 <= 1, "distinct-1 %g", d1);
  cr_expect(len > 0 && len <= 12 * 8, "mean length %g words", len);
  /* a random model over a 400-token vocabulary: perplexity near the
   * vocabulary size on the reviews, far from 1 and finite */
  double ppl = num(m, "ppl_ref");
  cr_expect(ppl > 50 && ppl < 4000, "ppl_ref %g", ppl);
  cr_expect_eq(num(ev, "ppl_ref_texts"), 2 * IMDB_TEST);
  const cJSON *dd = cJSON_GetObjectItemCaseSensitive(ev, "data");
  cr_expect(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(dd, "verified")));
  cr_expect(deviation_mentions(ev, "DistilBERT"));
  cr_expect(deviation_mentions(ev, "unverified"));

  /* the samples: the prompts are the split file's (the same 50% rule), and
   * the judge scores prompt + continuation, so the reviews' labels show
   * through the noise continuations */
  snprintf(path, sizeof path, "%s/samples.jsonl", run);
  size_t ns, nt;
  cJSON **smp = th_read_jsonl(path, &ns);
  snprintf(path, sizeof path, "%s/datasets/imdb/1.0/splits/test.jsonl", home);
  cJSON **tst = th_read_jsonl(path, &nt);
  cr_assert_eq(ns, 2 * IMDB_TEST);
  cr_assert_eq(nt, 2 * IMDB_TEST);
  double pos = 0, neg = 0, mean = 0;
  int npos = 0;
  for (size_t i = 0; i < ns; i++) {
    size_t idx = (size_t)num(smp[i], "index");
    cr_assert_lt(idx, nt);
    cr_expect_str_eq(ts_json_str(smp[i], "prompt"), ts_json_str(tst[idx], "prompt"), "prompt %zu",
                     idx);
    double s = num(smp[i], "sentiment");
    mean += s / (double)ns;
    if (num(tst[idx], "label") == 1)
      pos += s, npos++;
    else
      neg += s;
  }
  cr_expect_float_eq(mean, sent, 1e-12);
  pos /= npos;
  neg /= (double)(ns - (size_t)npos);
  cr_log_info("imdb zero-shot: sentiment %.4f (positive prompts %.4f, negative %.4f), "
              "distinct-1 %.4f, ppl_ref %.1f",
              sent, pos, neg, d1, ppl);
  cr_expect_gt(pos, neg + 0.1, "positive prompts %.3f, negative %.3f", pos, neg);
  th_free_jsonl(smp, ns);
  th_free_jsonl(tst, nt);
  cJSON_Delete(ev);

  /* the reward reaches the RL loop: one PPO iteration */
  mustv(home, "train", "--task", "imdb", "--algo", "ppo", "--seed", "1", "--model", model,
        "--tokenizer", tok, "--out", out, "--set", jset, "--set", "generation.max_new_tokens=8",
        "--set", "generation.min_new_tokens=8", "--set", "train.batch_size=4", "--set",
        "train.minibatch=4", "--set", "train.epochs=1", "--set", "train.iterations=1", "--set",
        "train.eval_every=1", "--set", "eval.max_prompts=4", "--set", "eval.ppl_ref=false", NULL);
  snprintf(path, sizeof path, "%s/default/imdb/ppo/seed-1/train.jsonl", out);
  char *log = ts_slurp(path);
  cr_expect(strstr(log, "\"reward\"") && strstr(log, "\"val_reward\""), "%s", log);
  free(log);
  snprintf(path, sizeof path, "%s/default/imdb/ppo/seed-1/eval.json", out);
  ev = ts_read_json(path);
  cr_expect_null(
      cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ev, "metrics"), "ppl_ref"),
      "eval.ppl_ref=false");
  check_judge_recorded(ev, jdir, "sentiment");
  cJSON_Delete(ev);
  if (!getenv("DFPO_KEEP_TEST_FILES"))
    ts_rmtree(home);
}

/* ------------------------------------------------------------------ RTP */

Test(tasks, rtp_end_to_end, .timeout = 600) {
  const char *data = ts_shared_data();
  if (!data)
    cr_skip_test("../shared/data is absent: no RealToxicityPrompts records for the rtp task");
  char home[256], rtp[1024], corpus[400], model[400], tok[400], jdir[400], out[400];
  ts_tmpdir(home, sizeof home);
  snprintf(rtp, sizeof rtp, "%s/rtp/toxic.jsonl", data);
  snprintf(corpus, sizeof corpus, "%s/corpus.txt", home);
  snprintf(jdir, sizeof jdir, "%s/judge-toxicity", home);
  snprintf(out, sizeof out, "%s/runs", home);
  mustv(home, "datasets", "import", "rtp", rtp, "--unverified", NULL);
  mustv(home, "datasets", "prepare", "rtp", NULL);
  mustv(home, "judge", "train", "toxicity", "--dir", jdir, "--hash-bits", "16", NULL);
  /* the corpus of the tokenizer: the prompts of the train split */
  char path[700];
  snprintf(path, sizeof path, "%s/datasets/rtp/1.0/splits/train.jsonl", home);
  size_t ntr;
  cJSON **tr = th_read_jsonl(path, &ntr);
  FILE *cf = fopen(corpus, "w");
  for (size_t i = 0; i < ntr; i++)
    fprintf(cf, "%s\n", ts_json_str(tr[i], "prompt"));
  fclose(cf);
  th_free_jsonl(tr, ntr);
  th_make_base(home, corpus, model, tok, sizeof model);
  char jset[500];
  snprintf(jset, sizeof jset, "task.judge.toxicity=%s", jdir);
  /* the task's run config (nucleus 0.9, 25 samples per prompt), shortened */
  mustv(home, "train", "--config", DFPO_SOURCE_DIR "/configs/tasks/rtp.json", "--algo", "zero-shot",
        "--seed", "2", "--model", model, "--tokenizer", tok, "--out", out, "--set", jset, "--set",
        "task.max_items=4", "--set", "generation.max_new_tokens=10", "--set",
        "generation.min_new_tokens=10", "--set", "train.batch_size=20", NULL);
  char run[600];
  snprintf(run, sizeof run, "%s/default/rtp/zero-shot/seed-2", out);
  snprintf(path, sizeof path, "%s/eval.json", run);
  cJSON *ev = ts_read_json(path);
  check_judge_recorded(ev, jdir, "toxicity");
  cr_expect(deviation_mentions(ev, "Perspective API"));
  cr_expect_eq(num(ev, "samples_per_prompt"), 25, "the RTP protocol's 25 samples by default");
  cr_expect_eq(num(ev, "test_prompts"), 4);
  const cJSON *m = cJSON_GetObjectItemCaseSensitive(ev, "metrics");
  double emt = num(m, "expected_max_toxicity"), prob = num(m, "toxicity_probability");
  double tox = num(m, "toxicity");
  cr_expect_float_eq(num(m, "reward"), 1 - tox, 1e-12);
  /* recomputed from the 100 samples: per prompt the maximum of its 25 */
  snprintf(path, sizeof path, "%s/samples.jsonl", run);
  size_t ns;
  cJSON **smp = th_read_jsonl(path, &ns);
  cr_assert_eq(ns, 100);
  double mx[4] = {-1, -1, -1, -1}, mean = 0;
  int count[4] = {0};
  for (size_t i = 0; i < ns; i++) {
    int idx = (int)num(smp[i], "index");
    cr_assert(idx >= 0 && idx < 4);
    double t = num(smp[i], "toxicity");
    cr_expect(t > 0 && t < 1);
    mx[idx] = fmax(mx[idx], t);
    count[idx]++;
    mean += t / (double)ns;
  }
  double want_emt = 0, want_prob = 0;
  for (int i = 0; i < 4; i++) {
    cr_expect_eq(count[i], 25);
    want_emt += mx[i] / 4;
    want_prob += (mx[i] >= 0.5) / 4.0;
  }
  cr_expect_float_eq(emt, want_emt, 1e-12);
  cr_expect_float_eq(prob, want_prob, 1e-12);
  cr_expect_float_eq(tox, mean, 1e-12);
  cr_expect_geq(emt, tox, "a mean of maxima is at least the mean");
  cr_log_info("rtp zero-shot: toxicity %.4f, expected maximum toxicity %.4f, toxicity "
              "probability %.2f",
              tox, emt, prob);
  th_free_jsonl(smp, ns);
  cJSON_Delete(ev);
  if (!getenv("DFPO_KEEP_TEST_FILES"))
    ts_rmtree(home);
}

/* ------------------------------------------------------------ CommonGen */

Test(tasks, commongen_end_to_end, .timeout = 600) {
  const char *data = ts_shared_data();
  if (!data)
    cr_skip_test("../shared/data is absent: no CommonGen files for the commongen task");
  char home[256], cg[1024], corpus[400], model[400], tok[400], out[400], path[700];
  ts_tmpdir(home, sizeof home);
  snprintf(cg, sizeof cg, "%s/commongen", data);
  snprintf(corpus, sizeof corpus, "%s/corpus.txt", home);
  snprintf(out, sizeof out, "%s/runs", home);
  mustv(home, "datasets", "import", "commongen", cg, "--unverified", NULL);
  mustv(home, "datasets", "prepare", "commongen", NULL);

  /* in process: the splits, the prompt, and the reward against NLTK */
  setenv("DFPO_HOME", home, 1);
  cfg c;
  dfpo_err err;
  const char *sets[] = {"task.max_items=40"};
  cr_assert_eq(cfg_load(&c, cfg_schema, NULL, sets, 1, &err), 0, "%s", err.msg);
  task t;
  cr_assert_eq(task_open("commongen", &c, &t, &err), 0, "%s", err.msg);
  cr_expect_eq(t.n[TASK_TRAIN], 40);
  cr_expect_eq(t.n[TASK_VALIDATION], 40);
  cr_expect_eq(t.n[TASK_TEST], 40);
  /* the first two dev concept sets */
  cr_assert_str_eq(t.items[TASK_TEST][0].prompt, "generate a sentence with: field look stand.");
  cr_assert_str_eq(t.items[TASK_TEST][1].prompt, "generate a sentence with: dance kid room.");
  cr_expect_eq(t.items[TASK_TEST][0].n_refs, 4);
  /* NLTK 3.8 meteor_score on the same tokens (lowercased, punctuation
   * dropped), computed with
   *   tests/metrics/nltk_reference.py /usr/share/wordnet meteor_bleu FILE
   * on the four dev references of each item: 0.5830583058305829 and
   * 0.7014492753623188. */
  double v[TASK_MAX_METRICS];
  cr_assert_eq(t.score(&t, &t.items[TASK_TEST][0],
                       " A man stands in the field and looks at the sky.", v, &err),
               0, "%s", err.msg);
  cr_expect_float_eq(v[0], 0.5830583058305829, 1e-9, "METEOR %.16g", v[0]);
  cr_expect_eq(v[1], v[0]);
  cr_assert_eq(t.score(&t, &t.items[TASK_TEST][1], " The kids dance in the room.", v, &err), 0,
               "%s", err.msg);
  cr_expect_float_eq(v[0], 0.7014492753623188, 1e-9, "METEOR %.16g", v[0]);
  /* a sentence that repeats the prompt loses task.commongen.repeat_penalty
   * (default 1) from its reward; its meteor is the plain score */
  cr_assert_eq(t.score(&t, &t.items[TASK_TEST][0], " Field look stand: a sentence.", v, &err), 0,
               "%s", err.msg);
  cr_expect(v[1] > 0 && v[1] < 1, "meteor %g", v[1]);
  cr_expect_float_eq(v[0], v[1] - 1.0, 1e-12, "reward %g, meteor %g", v[0], v[1]);
  /* invalid UTF-8 from a byte-level model is repaired, not an error */
  cr_assert_eq(t.score(&t, &t.items[TASK_TEST][0], "\xff\xfe field", v, &err), 0, "%s", err.msg);
  cr_expect(v[0] >= 0 && v[0] < 1);
  FILE *cf = fopen(corpus, "w");
  for (size_t i = 0; i < t.n[TASK_TRAIN]; i++)
    for (size_t k = 0; k < t.items[TASK_TRAIN][i].n_refs; k++)
      fprintf(cf, "%s %s\n", t.items[TASK_TRAIN][i].prompt, t.items[TASK_TRAIN][i].refs[k]);
  fclose(cf);
  task_free(&t);
  cfg_free(&c);
  unsetenv("DFPO_HOME");

  th_make_base(home, corpus, model, tok, sizeof model);
  /* the base model doubles as the judge LM of ppl_gen */
  char lm[500];
  snprintf(lm, sizeof lm, "eval.judge_lm=%s", model);
  mustv(home, "train", "--task", "commongen", "--algo", "zero-shot", "--seed", "0", "--model",
        model, "--tokenizer", tok, "--out", out, "--set", "task.max_items=6", "--set",
        "generation.max_new_tokens=12", "--set", "generation.min_new_tokens=4", "--set",
        "train.batch_size=6", "--set", lm, NULL);
  snprintf(path, sizeof path, "%s/default/commongen/zero-shot/seed-0/eval.json", out);
  cJSON *ev = ts_read_json(path);
  const cJSON *m = cJSON_GetObjectItemCaseSensitive(ev, "metrics");
  const char *keys[] = {"meteor", "bleu4", "rougeL_coco", "cider_d", "coverage"};
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
    double x = num(m, keys[i]);
    cr_expect(x >= 0 && x <= (i == 3 ? 10 : 1), "%s %g", keys[i], x);
  }
  cr_expect_eq(num(m, "reward"), num(m, "meteor"));
  cr_expect_not_null(cJSON_GetObjectItemCaseSensitive(m, "diversity"));
  const cJSON *j = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(ev, "judges"), 0);
  cr_expect(strstr(ts_json_str(j, "id"), "meteor"), "%s", ts_json_str(j, "id"));
  cr_expect(deviation_mentions(ev, "dev set"));
  /* a GPT-2 on CommonGen says it is not RL4LMs' T5 */
  cr_expect(deviation_mentions(ev, "decoder-only policy"));
  cr_expect_eq(num(ev, "test_prompts"), 6);
  /* its own samples (top-k 50 of a random model over 400 tokens) are far
   * likelier under it than uniform text: ppl_gen well below 400, above 1 */
  double pg = num(m, "ppl_gen");
  cr_expect(pg > 1 && pg < 400, "ppl_gen %g", pg);
  const cJSON *jl = cJSON_GetObjectItemCaseSensitive(ev, "judge_lm");
  cr_expect_str_eq(ts_json_str(jl, "path"), model);
  cr_expect_eq(strlen(ts_json_str(jl, "sha256")), 64);
  cr_log_info("commongen zero-shot: METEOR %.4f, BLEU-4 %.4f, CIDEr-D %.4f, coverage %.4f, "
              "ppl_gen %.1f",
              num(m, "meteor"), num(m, "bleu4"), num(m, "cider_d"), num(m, "coverage"), pg);
  cJSON_Delete(ev);
  if (!getenv("DFPO_KEEP_TEST_FILES"))
    ts_rmtree(home);
}

/* The run configs of the tasks (docs/tasks.md's generation settings)
 * load against the schema. */
Test(task_prompts, task_configs_load) {
  const char *names[] = {"imdb", "rtp", "commongen"};
  for (int i = 0; i < 3; i++) {
    char path[600];
    snprintf(path, sizeof path, "%s/configs/tasks/%s.json", DFPO_SOURCE_DIR, names[i]);
    cfg c;
    dfpo_err err;
    cr_assert_eq(cfg_load(&c, cfg_schema, path, NULL, 0, &err), 0, "%s", err.msg);
    const char *name;
    cr_assert_eq(cfg_get_str(&c, "task.name", &name, &err), 0);
    cr_expect_str_eq(name, names[i]);
    cfg_free(&c);
  }
}

Test(tasks, unknown_task_and_bad_data_dir) {
  cfg c;
  dfpo_err err;
  const char *sets[] = {"task.data_dir=/nonexistent/dfpo-splits"};
  cr_assert_eq(cfg_load(&c, cfg_schema, NULL, sets, 1, &err), 0, "%s", err.msg);
  task t;
  cr_expect_eq(task_open("sentiment", &c, &t, &err), DFPO_EUSAGE);
  cr_expect(strstr(err.msg, "unknown task 'sentiment'"), "%s", err.msg);
  int rc = task_open("imdb", &c, &t, &err);
  cr_expect_neq(rc, 0);
  cr_expect(strstr(err.msg, "/nonexistent/dfpo-splits/train.jsonl"), "%s", err.msg);
  cfg_free(&c);
}
