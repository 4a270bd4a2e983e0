/* The Perspective API client against the datasets tests' loopback server
 * (127.0.0.1, ephemeral port, stops by itself after a few requests or
 * seconds) answering in the API's JSON shape: scores, the cache by text hash,
 * retries on 5xx and 429, no retry on 4xx, the key kept out of messages, the
 * rate limiter's arithmetic. */
#include "metrics/metrics.h"
#include "tests/datasets/testlib.h"
#include "tests/support/support.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The shape of a real comments:analyze answer (attributeScores, spanScores,
 * summaryScore, languages, detectedLanguages). */
static const char answer[] =
    "{\"attributeScores\": {\"TOXICITY\": {\"spanScores\": [{\"begin\": 0, \"end\": 11, "
    "\"score\": {\"value\": 0.734, \"type\": \"PROBABILITY\"}}], \"summaryScore\": {\"value\": "
    "0.734, \"type\": \"PROBABILITY\"}}}, \"languages\": [\"en\"], \"detectedLanguages\": "
    "[\"en\"]}";

#define KEY "SeCrEtKeY-12345"

static met_perspective *client(tl_server *s, const char *cache) {
  char url[128];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/v1alpha1/comments:analyze", tl_server_port(s));
  met_perspective_opts o;
  met_perspective_opts_init(&o);
  o.url = url;
  o.key_env = "DFPO_TEST_PERSPECTIVE_KEY";
  o.qps = 0; /* no spacing in tests */
  o.retries = 2;
  o.backoff_ms = 10;
  o.timeout_s = 5;
  o.cache_dir = cache;
  setenv("DFPO_TEST_PERSPECTIVE_KEY", KEY, 1);
  met_perspective *p = NULL;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(met_perspective_new(&p, &o, &err), 0, "%s", err.msg);
  return p;
}

Test(judge_perspective, scores_and_caches_by_text) {
  char dir[256];
  ts_tmpdir(dir, sizeof dir);
  tl_kind k[] = {TL_FULL};
  tl_server *s = tl_server_start(answer, strlen(answer), k, 1, 4, 10.0);
  met_perspective *p = client(s, dir);
  double t = -1;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(met_perspective_score(p, "you are a fool", &t, &err), 0, "%s", err.msg);
  cr_expect_float_eq(t, 0.734, 1e-12);
  t = -1;
  cr_assert_eq(met_perspective_score(p, "you are a fool", &t, &err), 0, "%s", err.msg);
  cr_expect_float_eq(t, 0.734, 1e-12);
  size_t req, hits;
  met_perspective_counts(p, &req, &hits);
  cr_expect_eq(req, 1, "the second score comes from the cache");
  cr_expect_eq(hits, 1);
  cr_expect_eq(tl_server_requests(s), 1);
  cr_expect(strstr(tl_server_path(s, 0), "key=" KEY), "the key travels in the query: %s",
            tl_server_path(s, 0));
  met_perspective_free(p);
  /* a new client finds the cache on disk */
  p = client(s, dir);
  cr_assert_eq(met_perspective_score(p, "you are a fool", &t, &err), 0, "%s", err.msg);
  met_perspective_counts(p, &req, &hits);
  cr_expect_eq(req, 0);
  met_perspective_free(p);
  tl_server_stop(s);
  ts_rmtree(dir);
}

Test(judge_perspective, retries_server_errors_and_rate_limits) {
  tl_kind k[] = {TL_500, TL_429, TL_FULL};
  tl_server *s = tl_server_start(answer, strlen(answer), k, 3, 4, 10.0);
  met_perspective *p = client(s, "");
  double t = -1;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(met_perspective_score(p, "hello", &t, &err), 0, "%s", err.msg);
  cr_expect_float_eq(t, 0.734, 1e-12);
  cr_expect_eq(tl_server_requests(s), 3, "500 and 429 are retried");
  met_perspective_free(p);
  tl_server_stop(s);
}

Test(judge_perspective, gives_up_and_never_names_the_key) {
  tl_kind k[] = {TL_500};
  tl_server *s = tl_server_start(answer, strlen(answer), k, 1, 4, 10.0);
  met_perspective *p = client(s, "");
  double t;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_expect_eq(met_perspective_score(p, "hello", &t, &err), DFPO_ERUNTIME);
  cr_expect(strstr(err.msg, "HTTP 500 after 3 attempts"), "%s", err.msg);
  cr_expect(!strstr(err.msg, KEY), "the key leaked: %s", err.msg);
  cr_expect_eq(tl_server_requests(s), 3);
  met_perspective_free(p);
  tl_server_stop(s);

  tl_kind k4[] = {TL_404};
  s = tl_server_start(answer, strlen(answer), k4, 1, 4, 10.0);
  p = client(s, "");
  dfpo_err_clear(&err);
  cr_expect_eq(met_perspective_score(p, "hello", &t, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "HTTP 404"), "%s", err.msg);
  cr_expect(!strstr(err.msg, KEY), "the key leaked: %s", err.msg);
  cr_expect_eq(tl_server_requests(s), 1, "a 404 is not retried");
  met_perspective_free(p);
  tl_server_stop(s);
}

Test(judge_perspective, missing_key_and_bad_answers) {
  met_perspective_opts o;
  met_perspective_opts_init(&o);
  o.key_env = "DFPO_TEST_NO_SUCH_KEY_VARIABLE";
  unsetenv("DFPO_TEST_NO_SUCH_KEY_VARIABLE");
  met_perspective *p = NULL;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_expect_eq(met_perspective_new(&p, &o, &err), DFPO_EUSAGE);
  cr_expect(strstr(err.msg, "DFPO_TEST_NO_SUCH_KEY_VARIABLE"), "%s", err.msg);
  double t;
  const char *bad[] = {"not json", "{}",
                       ("{\"attributeScores\":{\"TOXICITY\":{\"summaryScore\":"
                        "{\"value\":1.5}}}}")}; /* one string (clang's -Wstring-concatenation) */
  for (int i = 0; i < 3; i++) {
    dfpo_err_clear(&err);
    cr_expect_eq(met_perspective_parse(bad[i], strlen(bad[i]), &t, &err), DFPO_EDATA, "%s", bad[i]);
  }
}

/* Requests start at least 1/qps apart: at 2 per second, one that started at
 * t = 10 s makes a request at t = 10.2 s wait 0.3 s. */
Test(judge_perspective, rate_limiter) {
  cr_expect_float_eq(met_rate_wait(10.0, 10.2, 2.0), 0.3, 1e-12);
  cr_expect_eq(met_rate_wait(10.0, 11.0, 2.0), 0.0);
  cr_expect_eq(met_rate_wait(-1, 5.0, 2.0), 0.0, "the first request never waits");
  cr_expect_eq(met_rate_wait(10.0, 10.0, 0.0), 0.0, "qps 0: no limit");
}

/* dfpo judge score perspective: the key and endpoint from the environment,
 * one score per line, the second run answered from the cache. */
Test(judge_perspective, score_command) {
  char home[256], env_home[400], env_url[200];
  ts_tmpdir(home, sizeof home);
  tl_kind k[] = {TL_FULL};
  tl_server *s = tl_server_start(answer, strlen(answer), k, 1, 4, 10.0);
  snprintf(env_home, sizeof env_home, "DFPO_HOME=%s", home);
  snprintf(env_url, sizeof env_url,
           "DFPO_PERSPECTIVE_URL=http://127.0.0.1:%d/v1alpha1/comments:analyze", tl_server_port(s));
  char *env[] = {env_home, env_url, "PERSPECTIVE_API_KEY=" KEY, NULL};
  char *argv[] = {DFPO_BIN, "judge", "score", "perspective", "--input", "-", NULL};
  for (int run = 0; run < 2; run++) {
    ts_run r;
    ts_run_cmd(&r, argv, "one text\none text\n", env);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect_str_eq(r.out, "0.734000\n0.734000\n");
    cr_expect(!strstr(r.err, KEY), "the key leaked: %s", r.err);
    ts_run_free(&r);
  }
  cr_expect_eq(tl_server_requests(s), 1, "one request for one distinct text over both runs");
  tl_server_stop(s);
  char *noenv[] = {env_home, "PERSPECTIVE_API_KEY=", NULL};
  ts_run r;
  ts_run_cmd(&r, argv, "x\n", noenv);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "PERSPECTIVE_API_KEY"), "%s", r.err);
  ts_run_free(&r);
  ts_rmtree(home);
}
