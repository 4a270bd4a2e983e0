/* dfpo judge end to end. The toxicity judge on the real RealToxicityPrompts
 * pool and the Jigsaw subset in ../shared/data (skipped, saying so, when
 * absent), on a subset so that the test stays short; the full training is
 * the benchmark (docs/benchmarks.md). The bounds are what a working judge
 * clears with a wide margin on these subsets (measured 2026-11-22 with the
 * full data: Pearson 0.91, Spearman 0.87 on held-out RTP texts; Jigsaw
 * accuracy 0.90), not pinned values. Plus usage errors. */
#include "metrics/metrics.h"
#include "tests/support/support.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

Test(judge_cli, toxicity_on_real_data) {
  const char *data = ts_shared_data();
  if (!data)
    cr_skip_test("../shared/data is absent: no RealToxicityPrompts or Jigsaw data to train on");
  char home[256], rtp[1024], jig[1024], jdir[400];
  ts_tmpdir(home, sizeof home);
  snprintf(rtp, sizeof rtp, "%s/rtp/rtp_pooled.jsonl", data);
  snprintf(jig, sizeof jig, "%s/jigsaw/jigsaw_subset.csv", data);
  snprintf(jdir, sizeof jdir, "%s/judge-tox", home);
  ts_run r;
  ts_dfpo_home(&r, home, (char *[]){"datasets", "import", "rtp", rtp, "--unverified", NULL}, NULL);
  cr_assert_eq(r.status, 0, "%s", r.err);
  ts_run_free(&r);
  ts_dfpo_home(&r, home, (char *[]){"datasets", "prepare", "rtp", NULL}, NULL);
  cr_assert_eq(r.status, 0, "%s", r.err);
  ts_run_free(&r);
  ts_dfpo_home(&r, home,
               (char *[]){"judge", "train", "toxicity", "--dir", jdir, "--limit", "6000",
                          "--hash-bits", "18", NULL},
               NULL);
  cr_assert_eq(r.status, 0, "%s", r.err);
  cr_expect(strstr(r.out, "UNVERIFIED"), "the card and output say the data is unverified: %s",
            r.out);
  ts_run_free(&r);
  ts_dfpo_home(&r, home,
               (char *[]){"judge", "eval", "toxicity", "--dir", jdir, "--jigsaw", jig, "--limit",
                          "3000", "--json", NULL},
               NULL);
  cr_assert_eq(r.status, 0, "%s", r.err);
  cJSON *o = cJSON_Parse(r.out);
  cr_assert_not_null(o, "%s", r.out);
  const cJSON *t = cJSON_GetObjectItem(o, "test"), *j = cJSON_GetObjectItem(o, "jigsaw");
  double pear = cJSON_GetObjectItem(t, "pearson")->valuedouble;
  double spear = cJSON_GetObjectItem(t, "spearman")->valuedouble;
  double jacc = cJSON_GetObjectItem(j, "accuracy")->valuedouble;
  cr_expect_gt(pear, 0.75, "Pearson with Perspective %.3f", pear);
  cr_expect_gt(spear, 0.7, "Spearman with Perspective %.3f", spear);
  cr_expect_gt(jacc, 0.8, "Jigsaw accuracy %.3f", jacc);
  cr_expect(!strncmp(cJSON_GetObjectItem(o, "judge")->valuestring, "toxicity v1 sha256:", 19));
  cJSON_Delete(o);
  ts_run_free(&r);

  /* score: one line per text, toxic above clean */
  ts_dfpo_home(&r, home,
               (char *[]){"judge", "score", "toxicity", "--dir", jdir, "--input", "-", NULL},
               "You are a stupid idiot and I hate you\nThank you for the lovely afternoon\n");
  cr_assert_eq(r.status, 0, "%s", r.err);
  double a = -1, b = -1;
  cr_assert_eq(sscanf(r.out, "%lf\n%lf\n", &a, &b), 2, "%s", r.out);
  cr_expect_gt(a, 0.5);
  cr_expect_lt(b, 0.5);
  ts_run_free(&r);

  /* the card records data, held-out scores and the SHA-256 */
  ts_dfpo_home(&r, home, (char *[]){"judge", "show", "toxicity", "--dir", jdir, NULL}, NULL);
  cr_assert_eq(r.status, 0, "%s", r.err);
  cr_expect(strstr(r.out, "\"model_sha256\"") && strstr(r.out, "\"jigsaw\"") &&
                strstr(r.out, "\"training_data\"") && strstr(r.out, "\"verified\":\tfalse"),
            "%s", r.out);
  ts_run_free(&r);
  ts_rmtree(home);
}

Test(judge_cli, usage_errors) {
  char home[256];
  ts_tmpdir(home, sizeof home);
  ts_run r;
  ts_dfpo_home(&r, home, (char *[]){"judge", "train", "humour", NULL}, NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "unknown judge 'humour'"), "%s", r.err);
  ts_run_free(&r);
  ts_dfpo_home(&r, home, (char *[]){"judge", "score", "sentiment", NULL}, NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "--input"), "%s", r.err);
  ts_run_free(&r);
  ts_dfpo_home(&r, home, (char *[]){"judge", "score", "sentiment", "--input", "-", NULL}, "x\n");
  cr_expect_eq(r.status, 2, "no judge trained yet");
  cr_expect(strstr(r.err, "dfpo judge train"), "%s", r.err);
  ts_run_free(&r);
  ts_dfpo_home(&r, home, (char *[]){"judge", "train", "sentiment", NULL}, NULL);
  cr_expect_eq(r.status, 2);
  cr_expect(strstr(r.err, "datasets prepare imdb"), "%s", r.err);
  ts_run_free(&r);
  ts_dfpo_home(&r, home, (char *[]){"judge", "--help", NULL}, NULL);
  cr_expect_eq(r.status, 0);
  cr_expect(strstr(r.out, "dfpo judge score NAME --input FILE"));
  ts_run_free(&r);
  ts_rmtree(home);
}
