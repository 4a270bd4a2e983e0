/* dfpo reproduce, report and check on a very small suite: resume gives the
 * same tables as an uninterrupted run, a failing cell does not stop the
 * others and is reported, check passes on new seeds and fails on a planted
 * regression, the Slurm script names every cell. */
#include "harness/rundir.h"
#include "tests/support/support.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256], home[300];

/* Two seeds of zero-shot, PPO with beta 0 (a variant), DfPO, and a variant
 * that cannot run (batch size 0 is out of range), on a tiny base. */
static const char tiny[] =
    "{\"suite\": {\"name\": \"tiny\", \"tasks\": [\"synthetic\"],\n"
    "  \"algos\": [\"zero-shot\", \"ppo-beta0\", \"dfpo\", \"bad\"],\n"
    "  \"variants\": [\"ppo-beta0=ppo ppo.kl_mode=fixed ppo.beta=0\", \"bad=ppo "
    "train.batch_size=0\"],\n"
    "  \"seeds\": [0, 1]},\n"
    " \"device\": \"cpu\", \"threads\": 1,\n"
    " \"task\": {\"max_prompt_tokens\": 32, \"synthetic\": {\"n_train\": 120, \"n_validation\": "
    "4, \"n_test\": 8, \"min_words\": 12}},\n"
    " \"tokenizer\": {\"vocab_size\": 300},\n"
    " \"model\": {\"n_layer\": 1, \"n_head\": 2, \"n_embd\": 32, \"block_size\": 64},\n"
    " \"pretrain\": {\"steps\": 30, \"batch_size\": 8, \"seq_len\": 32, \"lr\": 3e-3,\n"
    "   \"min_lr\": 3e-4, \"eval_every\": 7, \"ckpt_every\": 3},\n"
    " \"generation\": {\"max_new_tokens\": 8, \"min_new_tokens\": 4},\n"
    " \"train\": {\"iterations\": 2, \"batch_size\": 4, \"minibatch\": 4, \"epochs\": 1, \"lr\": "
    "1e-3, \"eval_every\": 1}}\n";

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

TestSuite(reproduce, .init = setup, .fini = teardown, .timeout = 900);
/* without it the report test's folder was "/fake" (dir empty) */
TestSuite(report, .init = setup, .fini = teardown);

/* Runs dfpo with DFPO_HOME in the test folder; returns the exit status. */
static int dfpo(const char *const *args, char **err_out) {
  return ts_dfpo_in(home, args, NULL, err_out);
}

static int run_suite(const char *out, const char *extra1, const char *extra2, char **err) {
  char cfg[400];
  snprintf(cfg, sizeof cfg, "%s/tiny.json", dir);
  const char *args[] = {"reproduce", "--config", cfg, "--out", out, extra1, extra2, NULL};
  return dfpo(args, err);
}

Test(reproduce, resumed_equals_uninterrupted_and_failures_are_reported) {
  char a[300], b[300], *err;
  snprintf(a, sizeof a, "%s/a", dir);
  snprintf(b, sizeof b, "%s/b", dir);
  /* uninterrupted; the variant "bad" fails in both seeds, the rest go on */
  int st = run_suite(a, NULL, NULL, &err);
  cr_assert_eq(st, 3, "exit %d: %s", st, err);
  cr_expect(strstr(err, "2 of 8 cells failed") != NULL, "%s", err);
  free(err);
  /* interrupted after two cells, then a half-written leftover of a third */
  st = run_suite(b, "--max-cells", "2", &err);
  cr_assert_eq(st, 130, "exit %d: %s", st, err);
  free(err);
  char p[600], q[600];
  snprintf(p, sizeof p, "%s/tiny/synthetic/zero-shot/seed-1/DONE", b);
  cr_expect_eq(access(p, F_OK), 0, "the first two cells are done");
  snprintf(p, sizeof p, "%s/tiny/synthetic/ppo-beta0/seed-0", b);
  cr_expect_neq(access(p, F_OK), 0, "the third is not");
  /* The third cell stopped after its first iteration and resumable
   * checkpoint: `dfpo train` with the arguments reproduce gives it (the
   * suite config, the base model, the variant's overrides) and
   * --stop-after 1, into the cell's staging folder. */
  char staging[400], cfg[400], model[600], tok[600];
  snprintf(p, sizeof p, "%s/tiny/base-synthetic.json", b);
  char *bj = ts_slurp(p);
  cJSON *bo = cJSON_Parse(bj);
  free(bj);
  cr_assert(cJSON_IsString(cJSON_GetObjectItem(bo, "model")) &&
            cJSON_IsString(cJSON_GetObjectItem(bo, "tokenizer")));
  snprintf(model, sizeof model, "%s", cJSON_GetObjectItem(bo, "model")->valuestring);
  snprintf(tok, sizeof tok, "%s", cJSON_GetObjectItem(bo, "tokenizer")->valuestring);
  cJSON_Delete(bo);
  {
    /* the base was pretrained by `dfpo pretrain --config pretrain.json`:
     * the suite's config with the corpus, the output and the tokenizer */
    char pj[700];
    snprintf(pj, sizeof pj, "%s", model);
    snprintf(strrchr(pj, '/'), sizeof pj - (size_t)(strrchr(pj, '/') - pj), "/pretrain.json");
    char *text = ts_slurp(pj);
    cr_assert_not_null(text, "%s missing", pj);
    cJSON *pc = cJSON_Parse(text);
    free(text);
    const cJSON *pt = cJSON_GetObjectItem(pc, "pretrain");
    const cJSON *tr = cJSON_GetArrayItem(cJSON_GetObjectItem(pt, "train"), 0);
    cr_expect(cJSON_IsString(tr) && strstr(tr->valuestring, "/train.ids"), "%s", pj);
    cr_expect_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(pc, "tokenizer"), "path")->valuestring,
                     tok);
    cr_expect_eq(cJSON_GetObjectItem(pt, "steps")->valuedouble, 30, "the suite's pretrain.steps");
    cJSON_Delete(pc);
  }
  snprintf(staging, sizeof staging, "%s/tiny/.staging/synthetic/ppo-beta0/seed-0", b);
  snprintf(cfg, sizeof cfg, "%s/tiny/suite.json", b);
  const char *targs[] = {"train",
                         "--config",
                         cfg,
                         "--task",
                         "synthetic",
                         "--algo",
                         "ppo",
                         "--seed",
                         "0",
                         "--out",
                         staging,
                         "--model",
                         model,
                         "--tokenizer",
                         tok,
                         "--set",
                         "ppo.kl_mode=fixed",
                         "--set",
                         "ppo.beta=0",
                         "--stop-after",
                         "1",
                         NULL};
  st = dfpo(targs, &err);
  cr_assert_eq(st, 0, "the partial cell: exit %d: %s", st, err);
  free(err);
  /* and a half-written leftover of the fourth, which has no checkpoint to
   * go on from: it is run again from its start */
  snprintf(p, sizeof p, "%s/tiny/.staging/synthetic/ppo-beta0/seed-1/tiny/synthetic/ppo/seed-1", b);
  char cmd[1400];
  snprintf(cmd, sizeof cmd, "mkdir -p %s && echo '{\"iteration\": 0, \"rew' > %s/train.jsonl", p,
           p);
  cr_assert_eq(system(cmd), 0);
  /* the report of the folder as it stands: the two cells under way in
   * .staging/ are shown as stopped (no process holds them), as far as
   * their whole lines go (the leftover's cut line is no iteration) */
  char bt[400];
  snprintf(bt, sizeof bt, "%s/tiny", b);
  const char *rargs[] = {"report", "--no-plots", bt, NULL};
  st = dfpo(rargs, &err);
  cr_assert_eq(st, 0, "exit %d: %s", st, err);
  free(err);
  snprintf(p, sizeof p, "%s/tiny/report/synthetic.md", b);
  char *md0 = ts_slurp(p);
  cr_expect(strstr(md0, "| PPO (β = 0) (stopped) |") &&
                strstr(md0, "Under way: ppo-beta0, seed 0: stopped at iteration 1 of 2 (no process "
                            "holds it; dfpo reproduce resumes it).") &&
                strstr(md0, "Under way: ppo-beta0, seed 1: stopped at iteration 0 (no process"),
            "%s", md0);
  free(md0);
  st = run_suite(b, NULL, NULL, &err);
  cr_assert_eq(st, 3, "exit %d: %s", st, err);
  free(err);
  snprintf(p, sizeof p, "%s/tiny/logs/synthetic-ppo-beta0-seed-0.log", b);
  char *log = ts_slurp(p);
  cr_expect(strstr(log, "train: resuming") && strstr(log, "at iteration 1"),
            "the killed cell went on from its checkpoint: %s", log);
  free(log);
  static const char *const files[] = {"synthetic.md", "synthetic.csv", "synthetic.tex",
                                      "synthetic.json", "results.json"};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    snprintf(p, sizeof p, "%s/tiny/report/%s", a, files[i]);
    snprintf(q, sizeof q, "%s/tiny/report/%s", b, files[i]);
    char *x = ts_slurp(p), *y = ts_slurp(q);
    cr_expect_str_eq(x, y, "%s differs between the uninterrupted and the resumed run", files[i]);
    free(x);
    free(y);
  }
  snprintf(p, sizeof p, "%s/tiny/report/synthetic.md", a);
  char *md = ts_slurp(p);
  cr_expect(strstr(md, "| DfPO |") && strstr(md, "| PPO (β = 0) |") && strstr(md, "| Zero-shot |"),
            "%s", md);
  cr_expect(strstr(md, "Missing: bad, seeds 0, 1: exit 1:") != NULL, "%s", md);
  cr_expect(strstr(md, "train.batch_size") != NULL, "the reason is given: %s", md);
  free(md);
  /* the plots */
  snprintf(p, sizeof p, "%s/tiny/report/synthetic-val_reward.png", a);
  cr_expect_eq(access(p, F_OK), 0);
  snprintf(p, sizeof p, "%s/tiny/report/synthetic-frontier.png", a);
  cr_expect_eq(access(p, F_OK), 0);
  /* the base model was made once and reused */
  snprintf(p, sizeof p, "%s/tiny/base-synthetic.json", b);
  char *base = ts_slurp(p);
  cr_expect(strstr(base, home) != NULL && strstr(base, "val_loss_per_token"), "%s", base);
  free(base);
}

/* Adds `delta` to metric m of seeds 5 and 6 of a variant's eval.json. */
static void plant(const char *suite_dir, const char *variant, const char *m, double delta) {
  for (int s = 5; s < 7; s++) {
    char p[600];
    snprintf(p, sizeof p, "%s/synthetic/%s/seed-%d/eval.json", suite_dir, variant, s);
    char *t = ts_slurp(p);
    cJSON *o = cJSON_Parse(t);
    free(t);
    cJSON *x = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "metrics"), m);
    cr_assert_not_null(x);
    cJSON_SetNumberValue(x, x->valuedouble + delta);
    char *s2 = cJSON_Print(o);
    FILE *fp = fopen(p, "w");
    fputs(s2, fp);
    fclose(fp);
    free(s2);
    /* a result that differs, not a damaged folder: DONE lists it as it is */
    *strrchr(p, '/') = '\0';
    dfpo_err e;
    cr_assert_eq(rundir_done_write(p, &e), 0, "%s", e.msg);
    cJSON_Delete(o);
  }
}

Test(reproduce, check_passes_new_seeds_and_fails_a_planted_regression) {
  char a[300], c[300], base[400], *err;
  snprintf(a, sizeof a, "%s/a", dir);
  snprintf(c, sizeof c, "%s/c", dir);
  int st = run_suite(a, NULL, NULL, &err);
  cr_assert_eq(st, 3, "exit %d: %s", st, err);
  free(err);
  snprintf(base, sizeof base, "%s/tiny/report/results.json", a);
  /* the same build, new seeds */
  st = run_suite(c, "--set", "suite.seeds=[5,6]", &err);
  cr_assert_eq(st, 3, "exit %d: %s", st, err);
  free(err);
  char cdir[400];
  snprintf(cdir, sizeof cdir, "%s/tiny", c);
  const char *args[] = {"check", "--baseline", base, cdir, NULL};
  /* check reads the folders, so the seeds 5 and 6 stand against 0 and 1 */
  st = dfpo(args, &err);
  cr_expect_eq(st, 0, "an unchanged build with new seeds passes: %s", err);
  free(err);
  char *t = ts_slurp(base);
  cJSON *o = cJSON_Parse(t);
  free(t);
  double sd = 0, ppl = 0;
  cJSON *tasks = cJSON_GetObjectItem(o, "tasks"), *v;
  cJSON_ArrayForEach(v, cJSON_GetObjectItem(cJSON_GetArrayItem(tasks, 0), "variants")) {
    const char *name = cJSON_GetObjectItem(v, "variant")->valuestring;
    cJSON *mets = cJSON_GetObjectItem(v, "metrics");
    if (!strcmp(name, "zero-shot"))
      ppl = cJSON_GetArrayItem(cJSON_GetObjectItem(mets, "ppl_ref"), 0)->valuedouble;
    if (strcmp(name, "dfpo"))
      continue;
    cJSON *r = cJSON_GetObjectItem(mets, "reward");
    double x0 = cJSON_GetArrayItem(r, 0)->valuedouble, x1 = cJSON_GetArrayItem(r, 1)->valuedouble;
    sd = fabs(x0 - x1) / sqrt(2.0); /* the sample sd of two values */
  }
  cJSON_Delete(o);
  /* the base model's perplexity is the same for every seed: moved by
   * float32 rounding (1e-7 relative: what other kernels give) it passes,
   * by 1e-3 relative it fails */
  cr_assert_gt(ppl, 1.0, "zero-shot's ppl_ref found");
  plant(cdir, "zero-shot", "ppl_ref", 1e-7 * ppl);
  st = dfpo(args, &err);
  cr_expect_eq(st, 0, "a deterministic metric 1e-7 off passes: exit %d: %s", st, err);
  free(err);
  plant(cdir, "zero-shot", "ppl_ref", 1e-3 * ppl);
  st = dfpo(args, &err);
  cr_expect_eq(st, 4, "a deterministic metric 1e-3 off fails: exit %d: %s", st, err);
  free(err);
  plant(cdir, "zero-shot", "ppl_ref", -(1e-3 + 1e-7) * ppl);
  /* a regression 50 seed-sd wide in DfPO's reward (at least 0.05) */
  cr_assert_gt(sd + 1, 0, "dfpo's rewards found");
  plant(cdir, "dfpo", "reward", -fmax(50 * sd, 0.05));
  st = dfpo(args, &err);
  cr_expect_eq(st, 4, "a planted regression fails: exit %d: %s", st, err);
  cr_expect(strstr(err, "regressed beyond seed noise") != NULL, "%s", err);
  free(err);
  /* a missing cell is a failure too, with its own exit status */
  char p[600];
  plant(cdir, "dfpo", "reward", fmax(50 * sd, 0.05));
  snprintf(p, sizeof p, "%s/synthetic/dfpo/seed-5/DONE", cdir);
  cr_assert_eq(remove(p), 0);
  st = dfpo(args, &err);
  cr_expect_eq(st, 6, "exit %d: %s", st, err);
  cr_expect(strstr(err, "missing") != NULL, "%s", err);
  free(err);
}

Test(reproduce, emit_slurm_writes_one_array_task_per_cell) {
  char a[300], cfg[400], p[600];
  snprintf(a, sizeof a, "%s/s", dir);
  snprintf(cfg, sizeof cfg, "%s/tiny.json", dir);
  const char *args[] = {"reproduce", "--config", cfg, "--out", a, "--emit", "slurm", NULL};
  char *err;
  int st = dfpo(args, &err);
  cr_assert_eq(st, 0, "%s", err);
  free(err);
  snprintf(p, sizeof p, "%s/tiny/slurm/cells.sbatch", a);
  char *s = ts_slurp(p);
  cr_expect(strstr(s, "#SBATCH --array=0-7\n") != NULL, "8 cells: %s", s);
  cr_expect(strstr(s, "--cell \"$SLURM_ARRAY_TASK_ID\"") != NULL, "%s", s);
  free(s);
  snprintf(p, sizeof p, "%s/tiny/slurm/submit.sh", a);
  s = ts_slurp(p);
  cr_expect(strstr(s, "afterok:$prep") && strstr(s, "afterany:$cells report.sbatch"), "%s", s);
  free(s);
  /* nothing ran */
  snprintf(p, sizeof p, "%s/tiny/synthetic", a);
  cr_expect_neq(access(p, F_OK), 0);
}

/* An --out too long for the suite's path buffers (about 4000 characters in
 * folders of 99) is refused by its whole name before anything is made; it
 * used to be cut at 2047 bytes, the cut folders made, and then refused
 * without a name. */
Test(reproduce, too_long_out_is_refused_whole_and_makes_nothing) {
  char out[4400];
  int n = snprintf(out, sizeof out, "%s", dir);
  while (n < 4000)
    n += snprintf(
        out + n, sizeof out - (size_t)n, "/%.98s",
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "xxxxxxxxxxxxxx");
  char *err;
  int st = run_suite(out, NULL, NULL, &err);
  cr_expect_eq(st, 3, "exit %d: %s", st, err);
  char want[300];
  snprintf(want, sizeof want, "path too long: %.200s", out);
  cr_expect(strstr(err, want) != NULL, "%s", err);
  free(err);
  char first[400];
  snprintf(first, sizeof first, "%.*s", (int)strlen(dir) + 99, out);
  cr_expect_neq(access(first, F_OK), 0, "%s was made", first);
}

Test(reproduce_cli, bad_suites_are_refused) {
  const char *a1[] = {"reproduce", "--suite", "no-such-suite", NULL};
  char *err;
  cr_expect_eq(dfpo(a1, &err), 1);
  cr_expect(strstr(err, "no suite 'no-such-suite'") != NULL, "%s", err);
  free(err);
  const char *a2[] = {"reproduce", "--set", "suite.algos=ppo,zzz", "--out", "/nonexistent/x", NULL};
  cr_expect_eq(dfpo(a2, &err), 1);
  cr_expect(strstr(err, "'zzz' is neither an algorithm") != NULL, "%s", err);
  free(err);
  const char *a3[] = {"check", "--baseline", "/nonexistent.json", "/tmp", NULL};
  cr_expect_eq(dfpo(a3, &err), 2);
  free(err);
}

/* A made-up suite folder (no suite.json: the finished cells found) with
 * values chosen so that the table can be checked by hand, and was:
 *   dfpo reward 0.6 0.7 0.8 -> 0.700 ± 0.100; ppo 0.5 0.5 0.8 -> 0.600 ± 0.173,
 *     Welch t = -0.866, df = 3.2, p = 0.447 (no dagger);
 *   dfpo nll_word 4.0 4.1 4.2 -> 4.100 ± 0.100; ppo 6.0 6.2 6.4 -> 6.200 ± 0.200,
 *     t = 16.27, df = 2.94, p = 0.00057 (dagger);
 *   dfpo oov_rate 0.01 0.01 0.04 -> 0.020 ± 0.017; ppo 0.02 0.03 0.04 -> 0.030 ±
 *     0.010, p = 0.447.
 * (t, df and p from the Welch formulas with mpmath's regularized incomplete
 * beta, tests/harness/welch_reference.py.) Best: dfpo's reward (higher),
 * dfpo's NLL and OOV rate (lower). */
static void fake_cell(const char *root, const char *algo, int seed, double r, double nll,
                      double oov) {
  char d[600], p[700];
  snprintf(d, sizeof d, "%s/synthetic/%s/seed-%d", root, algo, seed);
  char cmd[800];
  snprintf(cmd, sizeof cmd, "mkdir -p %s", d);
  cr_assert_eq(system(cmd), 0);
  snprintf(p, sizeof p, "%s/eval.json", d);
  FILE *fp = fopen(p, "w");
  fprintf(fp,
          "{\"metrics\": {\"reward\": %.17g, \"nll_word\": %.17g, \"oov_rate\": %.17g}, "
          "\"algo\": \"%s\"}\n",
          r, nll, oov, algo);
  fclose(fp);
  snprintf(p, sizeof p, "%s/train.jsonl", d);
  fp = fopen(p, "w");
  for (int it = 0; it <= 4; it++)
    fprintf(fp, "{\"iteration\": %d, \"reward\": %g%s}\n", it, r * it / 4,
            it % 2 ? "" : ", \"val_reward\": 0.5, \"val_nll_word\": 4");
  fclose(fp);
  dfpo_err e;
  cr_assert_eq(rundir_done_write(d, &e), 0, "%s", e.msg);
}

static void expect_same(const char *got_path, const char *fixture) {
  char p[600];
  snprintf(p, sizeof p, "%s/reports/suite/%s", DFPO_FIXTURES, fixture);
  char *want = ts_slurp(p), *got = ts_slurp(got_path);
  cr_expect_str_eq(got, want, "%s differs from %s; got:\n%s", got_path, p, got);
  free(want);
  free(got);
}

Test(report, tables_of_a_suite_folder_match_the_expected_files) {
  char root[400];
  snprintf(root, sizeof root, "%s/fake", dir);
  const double dr[] = {0.6, 0.7, 0.8}, dn[] = {4.0, 4.1, 4.2}, doo[] = {0.01, 0.01, 0.04};
  const double pr[] = {0.5, 0.5, 0.8}, pn[] = {6.0, 6.2, 6.4}, po[] = {0.02, 0.03, 0.04};
  for (int s = 0; s < 3; s++) {
    fake_cell(root, "dfpo", s, dr[s], dn[s], doo[s]);
    fake_cell(root, "ppo", s, pr[s], pn[s], po[s]);
  }
  const char *args[] = {"report", root, NULL};
  char *err;
  int st = dfpo(args, &err);
  cr_assert_eq(st, 0, "%s", err);
  free(err);
  char p[600];
  static const char *const files[] = {"synthetic.md", "synthetic.csv", "synthetic.tex"};
  for (size_t i = 0; i < 3; i++) {
    snprintf(p, sizeof p, "%s/report/%s", root, files[i]);
    expect_same(p, files[i]);
  }
  snprintf(p, sizeof p, "%s/report/synthetic-val_reward.png", root);
  cr_expect_eq(access(p, F_OK), 0);
  snprintf(p, sizeof p, "%s/report/synthetic-frontier.png", root);
  cr_expect_eq(access(p, F_OK), 0);
}

/* `dfpo check` compared a folder with another suite's baseline silently:
 * the folder's suite must now be the baseline's, unless --any-suite. */
Test(report, check_refuses_another_suites_baseline) {
  char root[400], other[400], base[500];
  snprintf(root, sizeof root, "%s/smoke", dir);
  snprintf(other, sizeof other, "%s/paper", dir);
  const double dr[] = {0.6, 0.7, 0.8}, dn[] = {4.0, 4.1, 4.2}, doo[] = {0.01, 0.01, 0.04};
  for (int s = 0; s < 3; s++) {
    fake_cell(root, "dfpo", s, dr[s], dn[s], doo[s]);
    fake_cell(other, "dfpo", s, dr[s], dn[s], doo[s]);
  }
  const char *rep[] = {"report", root, NULL};
  char *err;
  cr_assert_eq(dfpo(rep, &err), 0, "%s", err);
  free(err);
  snprintf(base, sizeof base, "%s/report/results.json", root);
  const char *same[] = {"check", "--baseline", base, root, NULL};
  cr_expect_eq(dfpo(same, &err), 0, "%s", err);
  free(err);
  const char *diff[] = {"check", "--baseline", base, other, NULL};
  cr_expect_eq(dfpo(diff, &err), 1);
  cr_expect(strstr(err, "holds suite 'paper' but the baseline") != NULL &&
                strstr(err, "is suite 'smoke'") != NULL,
            "%s", err);
  free(err);
  const char *forced[] = {"check", "--baseline", base, other, "--any-suite", NULL};
  cr_expect_eq(dfpo(forced, &err), 0, "%s", err);
  cr_expect(strstr(err, "--any-suite") != NULL, "%s", err);
  free(err);
}
