/* The judge model: evaluation numbers against a hand computation, training
 * on a toy corpus whose answer is known, determinism, saved files (card,
 * version, SHA-256 check), and the JSONL and CSV loaders. */
#include "metrics/metrics.h"
#include "tests/support/support.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* p = (0.9, 0.8, 0.3, 0.6), y = (1, 1, 0, 0), worked by hand:
 * predictions 1 1 0 1: accuracy 3/4. Confidences 0.9 0.8 0.7 0.6 fall in
 * bins 9 8 7 6, one each, with accuracies 1 1 1 0:
 * ECE = (0.1 + 0.2 + 0.3 + 0.6) / 4 = 0.3. Brier (0.01 + 0.04 + 0.09 +
 * 0.36) / 4 = 0.125. Log-loss -(ln .9 + ln .8 + ln .7 + ln .4) / 4 =
 * 0.40036742... Pearson: deviations (.25 .15 -.35 -.05) and (.5 .5 -.5 -.5),
 * 0.4 / sqrt(0.21 * 1) = 0.87287156094397. Spearman: ranks (4 3 1 2) and
 * (3.5 3.5 1.5 1.5), 4 / sqrt(5 * 4) = 0.89442719099992. */
Test(judge_model, evaluation_by_hand) {
  const double p[] = {0.9, 0.8, 0.3, 0.6}, y[] = {1, 1, 0, 0};
  met_judge_eval ev;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(met_judge_eval_scores(p, y, 4, &ev, &err), 0, "%s", err.msg);
  cr_expect_float_eq(ev.accuracy, 0.75, 1e-12);
  cr_expect_float_eq(ev.ece, 0.3, 1e-12);
  cr_expect_float_eq(ev.brier, 0.125, 1e-12);
  cr_expect_float_eq(ev.log_loss, (-log(0.9) - log(0.8) - log(0.7) - log(0.4)) / 4, 1e-12);
  cr_expect_float_eq(ev.pearson, 0.87287156094397, 1e-12);
  cr_expect_float_eq(ev.spearman, 0.89442719099992, 1e-12);
  cr_expect_eq(met_judge_eval_scores(p, y, 1, &ev, &err), DFPO_EDATA);
}

static const char *const pos_words[] = {"great", "wonderful", "superb", "loved", "brilliant"};
static const char *const neg_words[] = {"awful", "terrible", "boring", "hated", "dreadful"};
static const char *const filler[] = {"the", "movie", "was",  "plot", "actors",
                                     "and", "a",     "film", "it",   "story"};

/* Reviews of 8 filler words with two sentiment words of the label. */
static void toy(met_judge_data *d, size_t n, uint64_t seed) {
  dfpo_rng r;
  dfpo_rng_init(&r, seed, 1);
  for (size_t i = 0; i < n; i++) {
    int lab = (int)(i % 2);
    char buf[512] = "";
    for (int k = 0; k < 10; k++) {
      const char *w = k == 3 || k == 7 ? (lab ? pos_words : neg_words)[dfpo_rng_below(&r, 5)]
                                       : filler[dfpo_rng_below(&r, 10)];
      strcat(buf, w);
      strcat(buf, k == 9 ? "." : " ");
    }
    dfpo_err err;
    cr_assert_eq(met_judge_data_add(d, buf, lab, &err), 0);
  }
}

static met_judge *train_toy(met_judge_data *tr, met_judge_data *va) {
  met_judge_opts o = met_judge_opts_default();
  o.feat.hash_bits = 14;
  met_judge *j = NULL;
  met_judge_fit fit;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(met_judge_train(&j, "toy", tr, va, &o, &fit, &err), 0, "%s", err.msg);
  cr_expect_eq(fit.n_train, tr->n);
  return j;
}

Test(judge_model, learns_a_known_rule_deterministically) {
  met_judge_data tr = {0}, va = {0}, te = {0};
  toy(&tr, 400, 1);
  toy(&va, 100, 2);
  toy(&te, 200, 3);
  met_judge *j = train_toy(&tr, &va), *k = train_toy(&tr, &va);
  met_judge_eval ev;
  dfpo_err err;
  cr_assert_eq(met_judge_evaluate(j, &te, &ev, &err), 0);
  cr_expect_eq(ev.accuracy, 1.0, "the sentiment words decide every review");
  for (size_t i = 0; i < te.n; i++)
    cr_expect_eq(met_judge_score(j, te.texts[i], strlen(te.texts[i])),
                 met_judge_score(k, te.texts[i], strlen(te.texts[i])), "same seed, same judge");
  /* the normalisation: case does not matter, words are what count */
  cr_expect_eq(met_judge_score(j, "GREAT Movie", 11), met_judge_score(j, "great movie", 11));
  cr_expect_gt(met_judge_score(j, "superb", 6), 0.5);
  cr_expect_lt(met_judge_score(j, "dreadful", 8), 0.5);
  met_judge_free(j);
  met_judge_free(k);
  met_judge_data_free(&tr);
  met_judge_data_free(&va);
  met_judge_data_free(&te);
}

Test(judge_model, saved_files_round_trip_and_are_checked) {
  char dir[256], path[400];
  ts_tmpdir(dir, sizeof dir);
  met_judge_data tr = {0}, va = {0};
  toy(&tr, 200, 4);
  toy(&va, 50, 5);
  met_judge *j = train_toy(&tr, &va), *l = NULL;
  dfpo_err err;
  dfpo_err_clear(&err);
  cJSON *extra = cJSON_CreateObject();
  cJSON_AddStringToObject(extra, "note", "toy");
  cr_assert_eq(met_judge_save(j, dir, NULL, extra, &err), 0, "%s", err.msg);
  cr_assert_eq(met_judge_save(j, dir, NULL, extra, &err), 0, "%s", err.msg);
  cJSON_Delete(extra);
  cJSON *card = NULL;
  cr_assert_eq(met_judge_load(&l, dir, &card, &err), 0, "%s", err.msg);
  cr_expect_eq(cJSON_GetObjectItem(card, "version")->valueint, 2, "saving again bumps the version");
  cr_expect_str_eq(cJSON_GetObjectItem(card, "note")->valuestring, "toy");
  cr_expect_str_eq(cJSON_GetObjectItem(card, "name")->valuestring, "toy");
  cr_expect(!strncmp(met_judge_id(l), "toy v2 sha256:", 14), "%s", met_judge_id(l));
  for (size_t i = 0; i < va.n; i++)
    cr_expect_eq(met_judge_score(j, va.texts[i], strlen(va.texts[i])),
                 met_judge_score(l, va.texts[i], strlen(va.texts[i])));
  cJSON_Delete(card);
  met_judge_free(l);
  cr_assert_eq(met_judge_card_set(dir, "test", cJSON_CreateNumber(0.5), &err), 0);
  cr_assert_eq(met_judge_load(&l, dir, &card, &err), 0, "%s", err.msg);
  cr_expect_eq(cJSON_GetObjectItem(card, "test")->valuedouble, 0.5);
  cJSON_Delete(card);
  met_judge_free(l);
  /* one flipped byte in the model: refused, naming the file */
  snprintf(path, sizeof path, "%s/judge.bin", dir);
  FILE *f = fopen(path, "r+b");
  fseek(f, 100, SEEK_SET);
  int c = fgetc(f);
  fseek(f, 100, SEEK_SET);
  fputc(c ^ 1, f);
  fclose(f);
  l = NULL;
  dfpo_err_clear(&err);
  cr_expect_eq(met_judge_load(&l, dir, NULL, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "judge.bin") && strstr(err.msg, "does not match"), "%s", err.msg);
  cr_expect_null(l);
  met_judge_free(j);
  met_judge_data_free(&tr);
  met_judge_data_free(&va);
  ts_rmtree(dir);
}

static void put_file(const char *path, const char *s) {
  FILE *f = fopen(path, "wb");
  fputs(s, f);
  fclose(f);
}

Test(judge_model, csv_and_jsonl_loaders) {
  char dir[256], path[400];
  ts_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/j.csv", dir);
  put_file(path, "id,comment_text,toxic\r\n"
                 "a,\"hello, \"\"world\"\"\nsecond line\",0\r\n"
                 "b,plain,1\n");
  met_judge_data d = {0};
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(met_judge_data_csv(&d, path, "comment_text", "toxic", 0, &err), 0, "%s", err.msg);
  cr_assert_eq(d.n, 2);
  cr_expect_str_eq(d.texts[0], "hello, \"world\"\nsecond line");
  cr_expect_eq(d.y[0], 0);
  cr_expect_str_eq(d.texts[1], "plain");
  cr_expect_eq(d.y[1], 1);
  met_judge_data_free(&d);
  put_file(path, "id,comment_text,toxic\na,x,0\nb,\"y\nz\",0\nc,w,2\n");
  cr_expect_eq(met_judge_data_csv(&d, path, "comment_text", "toxic", 0, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "j.csv:5:"), "the record starting on line 5: %s", err.msg);
  met_judge_data_free(&d);
  put_file(path, "id,text\n");
  cr_expect_eq(met_judge_data_csv(&d, path, "comment_text", "toxic", 0, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "comment_text"), "%s", err.msg);
  met_judge_data_free(&d);

  snprintf(path, sizeof path, "%s/s.jsonl", dir);
  put_file(path, "{\"prompt\":\"Good \",\"references\":[\"film.\"],\"label\":1}\n\n"
                 "{\"text\":\"x\",\"toxicity\":0.25,\"split\":\"test\"}\n");
  cr_assert_eq(met_judge_data_jsonl(&d, path, NULL, "label", NULL, 1, &err), 0, "%s", err.msg);
  cr_expect_str_eq(d.texts[0], "Good film.");
  met_judge_data_free(&d);
  cr_assert_eq(met_judge_data_jsonl(&d, path, "text", "toxicity", "test", 0, &err), 0);
  cr_expect_eq(d.n, 1);
  cr_expect_eq(d.y[0], 0.25);
  met_judge_data_free(&d);
  cr_expect_eq(met_judge_data_jsonl(&d, path, "text", "toxicity", NULL, 0, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "s.jsonl:1:"), "%s", err.msg);
  met_judge_data_free(&d);
  ts_rmtree(dir);
}

/* The saved format and the feature definition, re-implemented from
 * docs/judges.md in bench/judge_peer.py (Python standard library): both score
 * the same texts alike to the printed 6 decimals, with word trigrams and
 * character n-grams switched on so that every feature kind is covered. */
Test(judge_model, python_peer_reads_the_format) {
  if (access("/usr/bin/python3", X_OK) != 0)
    cr_skip_test("/usr/bin/python3 is absent: the Python peer of the judge format cannot run");
  char dir[256], texts[400];
  ts_tmpdir(dir, sizeof dir);
  met_judge_data tr = {0}, va = {0};
  toy(&tr, 200, 6);
  toy(&va, 50, 7);
  met_judge_opts o = met_judge_opts_default();
  o.feat.hash_bits = 13;
  o.feat.word_n = 3;
  o.feat.char_min = 2;
  o.feat.char_max = 4;
  met_judge *j = NULL;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(met_judge_train(&j, "peer", &tr, &va, &o, NULL, &err), 0, "%s", err.msg);
  cr_assert_eq(met_judge_save(j, dir, NULL, NULL, &err), 0, "%s", err.msg);
  const char *extra[] = {"Wow!! What a SUPERB film?", "it's dreadful... \xc3\xa9t\xc3\xa9 boring",
                         "", "a"};
  snprintf(texts, sizeof texts, "%s/texts.txt", dir);
  FILE *f = fopen(texts, "wb");
  for (size_t i = 0; i < va.n; i++)
    fprintf(f, "%s\n", va.texts[i]);
  for (int i = 0; i < 4; i++)
    fprintf(f, "%s\n", extra[i]);
  fclose(f);
  ts_run r;
  char *argv[] = {"/usr/bin/python3", DFPO_SOURCE_DIR "/bench/judge_peer.py", dir, texts, NULL};
  ts_run_cmd(&r, argv, NULL, NULL);
  cr_assert_eq(r.status, 0, "judge_peer.py failed: %s", r.err);
  char *save = NULL, *line = strtok_r(r.out, "\n", &save);
  for (size_t i = 0; i < va.n + 4; i++) {
    cr_assert_not_null(line, "the peer printed too few lines");
    const char *t = i < va.n ? va.texts[i] : extra[i - va.n];
    char mine[32];
    snprintf(mine, sizeof mine, "%.6f", met_judge_score(j, t, strlen(t)));
    cr_expect_str_eq(line, mine, "text %zu '%s'", i, t);
    line = strtok_r(NULL, "\n", &save);
  }
  ts_run_free(&r);
  met_judge_free(j);
  met_judge_data_free(&tr);
  met_judge_data_free(&va);
  ts_rmtree(dir);
}
