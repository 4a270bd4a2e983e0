/* dfpo report on made-up suite folders: what a paper needs of its output
 * (figures in PNG, SVG and PDF, each algorithm in one colour across them,
 * SFT kept off the iteration axis, display names, a caption and a label,
 * the CSV in results.json's keys), cells under way marked in the tables and
 * drawn in short dashes, a CommonGen policy other than T5 noted as a deviation (and its METEOR
 * named as a metric, not a trained judge), and a clear refusal
 * of a folder with no cells. The values are made up; the
 * statistics are tested in tests/reports and test_reproduce.c. */
#include "harness/rundir.h"
#include "tests/support/support.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256], home[300];

static void setup(void) {
  ts_tmpdir(dir, sizeof dir);
  snprintf(home, sizeof home, "%s/home", dir);
}

static void teardown(void) {
  if (!getenv("DFPO_KEEP_TEST_FILES"))
    ts_rmtree(dir);
}

TestSuite(report_paper, .init = setup, .fini = teardown);

static int dfpo(const char *const *args, char **err) {
  return ts_dfpo_in(home, args, NULL, err);
}

/* eval.json's "memory" object of the cells cell() writes (NULL: none). */
static const char *cell_memory;
/* The task folder cell() writes into, and eval.json's "judges" list of its
 * cells (NULL: none). */
static const char *cell_task = "synthetic";
static const char *cell_judges;

/* A finished cell: eval.json with reward, nll_word, oov_rate and ppl_ref,
 * config.json with the PPO settings, and a train.jsonl of 5 iterations
 * (SFT's too, as its epochs). */
static void cell(const char *root, const char *variant, const char *algo, int seed, double r,
                 const char *ppo) {
  char d[600], p[700], cmd[800];
  snprintf(d, sizeof d, "%s/%s/%s/seed-%d", root, cell_task, variant, seed);
  snprintf(cmd, sizeof cmd, "mkdir -p %s", d);
  cr_assert_eq(system(cmd), 0);
  char text[1024];
  snprintf(p, sizeof p, "%s/eval.json", d);
  snprintf(text, sizeof text,
           "{\"metrics\": {\"reward\": %.17g, \"nll_word\": %.17g, \"oov_rate\": %.17g, "
           "\"ppl_ref\": %.17g}, \"algo\": \"%s\"%s%s%s%s}\n",
           r, 4 + r + 0.1 * seed, 0.01 + 0.01 * seed, 12 + 10 * r + seed, algo,
           cell_memory ? ", \"memory\": " : "", cell_memory ? cell_memory : "",
           cell_judges ? ", \"judges\": " : "", cell_judges ? cell_judges : "");
  ts_write_text(p, text);
  snprintf(p, sizeof p, "%s/config.json", d);
  snprintf(text, sizeof text, "{\"ppo\": %s}\n", ppo);
  ts_write_text(p, text);
  snprintf(p, sizeof p, "%s/train.jsonl", d);
  FILE *fp = fopen(p, "w");
  for (int it = 0; it <= 4; it++)
    fprintf(fp,
            "{\"iteration\": %d, \"reward\": %g, \"val_reward\": %g, \"val_nll_word\": %g, "
            "\"val_ppl_ref\": %g}\n",
            it, r * it / 4 + 0.01 * seed, 0.4 + r * it / 8 + 0.02 * seed, 4 + 0.1 * it,
            12 + it * r * 5 + seed);
  fclose(fp);
  /* DONE last, listing the files as dfpo train does */
  dfpo_err e;
  cr_assert_eq(rundir_done_write(d, &e), 0, "%s", e.msg);
}

static const char adaptive[] = "{\"kl_mode\": \"adaptive\", \"beta\": 0.05}";

/* zero-shot, sft, PPO with beta 0 (a variant), PPO and DfPO, 3 seeds each. */
static void make_suite(const char *root) {
  for (int s = 0; s < 3; s++) {
    cell(root, "zero-shot", "zero-shot", s, 0.45, adaptive);
    cell(root, "sft", "sft", s, 0.46, adaptive);
    cell(root, "ppo-beta0", "ppo", s, 0.9, "{\"kl_mode\": \"fixed\", \"beta\": 0}");
    cell(root, "ppo", "ppo", s, 0.55, adaptive);
    cell(root, "dfpo", "dfpo", s, 0.57, adaptive);
  }
}

static char *report_file(const char *root, const char *name) {
  char p[700];
  snprintf(p, sizeof p, "%s/report/%s", root, name);
  return ts_slurp(p);
}

/* cairo's SVG colour of an RGB triple, as tests/reports checks it. */
static const char dfpo_rgb[] = "rgb(83.529412%,36.862745%,0%)"; /* 213, 94, 0 */
static const char sft_rgb[] = "rgb(80%,47.45098%,65.490196%)";  /* 204, 121, 167 */
static const char ppo_rgb[] = "rgb(0%,44.705882%,69.803922%)";  /* 0, 114, 178 */

Test(report_paper, figures_in_three_formats_with_one_colour_per_algorithm) {
  char root[400];
  snprintf(root, sizeof root, "%s/fake", dir);
  make_suite(root);
  const char *args[] = {"report", root, NULL};
  char *err;
  int st = dfpo(args, &err);
  cr_assert_eq(st, 0, "%s", err);
  free(err);
  static const char *const figs[] = {"val_reward", "val_nll_word", "val_ppl_ref", "reward",
                                     "frontier"};
  static const char *const ext[] = {"png", "svg", "pdf"};
  for (size_t f = 0; f < 5; f++)
    for (size_t e = 0; e < 3; e++) {
      char p[700];
      snprintf(p, sizeof p, "%s/report/synthetic-%s.%s", root, figs[f], ext[e]);
      cr_expect_eq(access(p, F_OK), 0, "%s missing", p);
    }
  /* the learning curves show PPO and DfPO (zero-shot has none, SFT is
   * left out); the frontier shows every variant, SFT and zero-shot first.
   * DfPO keeps its vermillion in both. */
  char *curve = report_file(root, "synthetic-val_reward.svg");
  char *front = report_file(root, "synthetic-frontier.svg");
  cr_expect(strstr(curve, dfpo_rgb) && strstr(front, dfpo_rgb), "DfPO's colour in both");
  cr_expect(strstr(curve, ppo_rgb) && strstr(front, ppo_rgb), "PPO's colour in both");
  cr_expect(strstr(curve, sft_rgb) == NULL, "SFT is not on the iteration axis");
  cr_expect(strstr(front, sft_rgb) != NULL, "SFT is on the frontier");
  free(curve);
  free(front);
  char *md = report_file(root, "report.md");
  cr_expect(strstr(md, "![Validation reward](synthetic-val_reward.png)") &&
                strstr(md, "also here as PDF and SVG"),
            "%s", md);
  free(md);
}

/* The tables in display names, with a caption and a label; the CSV in the
 * keys of results.json, one row per (variant, metric) that results.json
 * holds; --wide writes table*. */
Test(report_paper, tables_in_display_names_and_csv_in_results_keys) {
  char root[400];
  snprintf(root, sizeof root, "%s/fake", dir);
  make_suite(root);
  const char *args[] = {"report", "--no-plots", root, NULL};
  char *err;
  cr_assert_eq(dfpo(args, &err), 0, "%s", err);
  free(err);
  char *tex = report_file(root, "synthetic.tex");
  static const char *const want[] = {"\\toprule",
                                     "\\caption{Synthetic language (suite fake): test metrics",
                                     "\\label{tab:fake-synthetic}",
                                     "PPO ($\\beta$ = 0) &",
                                     "Zero-shot &",
                                     "DfPO &",
                                     "{@{}c@{}}Perplexity\\\\(ref)\\end{tabular}",
                                     "over 3 seeds",
                                     "\\begin{table}[t]"};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    cr_expect(strstr(tex, want[i]) != NULL, "no %s in:\n%s", want[i], tex);
  cr_expect(strstr(tex, "ppo-beta0") == NULL && strstr(tex, "ppl\\_ref") == NULL, "%s", tex);
  free(tex);

  char *csv = report_file(root, "synthetic.csv");
  cr_expect(!strncmp(csv, "task,variant,algo,metric,n,mean,sd,p_value,best,significant\n", 60),
            "%s", csv);
  char p[700];
  snprintf(p, sizeof p, "%s/report/results.json", root);
  cJSON *res = ts_read_json(p), *t, *v, *m;
  int rows = 0;
  cJSON_ArrayForEach(t, cJSON_GetObjectItem(res, "tasks")) {
    const char *task = ts_json_str(t, "task");
    cJSON_ArrayForEach(v, cJSON_GetObjectItem(t, "variants")) {
      cJSON_ArrayForEach(m, cJSON_GetObjectItem(v, "metrics")) {
        char line[256];
        snprintf(line, sizeof line, "\n%s,%s,%s,%s,3,", task, ts_json_str(v, "variant"),
                 ts_json_str(v, "algo"), m->string);
        cr_expect(strstr(csv, line) != NULL, "no row %s in:\n%s", line + 1, csv);
        rows++;
      }
    }
  }
  int lines = 0;
  for (const char *c = csv; *c; c++)
    lines += *c == '\n';
  cr_expect_eq(rows, 20, "5 variants x 4 metrics in results.json");
  cr_expect_eq(lines - 1, rows, "one CSV row per results.json value list:\n%s", csv);
  cJSON_Delete(res);
  free(csv);

  const char *wide[] = {"report", "--no-plots", "--wide", root, NULL};
  cr_assert_eq(dfpo(wide, &err), 0, "%s", err);
  free(err);
  tex = report_file(root, "synthetic.tex");
  cr_expect(strstr(tex, "\\begin{table*}[t]") && strstr(tex, "\\textwidth"), "%s", tex);
  free(tex);
}

/* The memory switches the cells used (eval.json's "memory", which dfpo
 * train writes): a "Memory:" note under the table names each variant that
 * used one and what; none when no cell did (or the cells predate the
 * record), nor for a variant whose cells used none. */
Test(report_paper, the_notes_say_which_memory_switches_cells_used) {
  char root[400];
  snprintf(root, sizeof root, "%s/plain", dir);
  cell_memory = "{\"lora_rank\": 0, \"value_model\": \"separate\", "
                "\"activation_checkpointing\": false}";
  make_suite(root);
  const char *args[] = {"report", "--no-plots", root, NULL};
  char *err;
  cr_assert_eq(dfpo(args, &err), 0, "%s", err);
  free(err);
  char *md = report_file(root, "synthetic.md");
  cr_expect(strstr(md, "Memory:") == NULL, "no cell used a switch:\n%s", md);
  free(md);
  snprintf(root, sizeof root, "%s/mem", dir);
  make_suite(root);
  for (int s = 0; s < 3; s++) {
    cell_memory = "{\"lora_rank\": 0, \"value_model\": \"shared\", "
                  "\"activation_checkpointing\": true, \"reference_dtype\": \"bf16\"}";
    cell(root, "ppo", "ppo", s, 0.55, adaptive);
    cell_memory = "{\"lora_rank\": 16, \"value_model\": \"separate\", "
                  "\"activation_checkpointing\": false}";
    cell(root, "dfpo", "dfpo", s, 0.57, adaptive);
  }
  cell_memory = NULL;
  const char *args2[] = {"report", "--no-plots", root, NULL};
  cr_assert_eq(dfpo(args2, &err), 0, "%s", err);
  free(err);
  md = report_file(root, "synthetic.md");
  const char *want = "Memory: dfpo: LoRA rank 16; ppo: value head on the policy's trunk, "
                     "activation checkpointing, reference in bf16.";
  cr_expect(strstr(md, want) != NULL, "no \"%s\" in:\n%s", want, md);
  free(md);
  char *tex = report_file(root, "synthetic.tex");
  cr_expect(strstr(tex, "% Memory: dfpo: LoRA rank 16; ppo: value head") != NULL, "%s", tex);
  free(tex);
}

/* CommonGen's notes name the policy's architecture from the suite's base
 * record (base-commongen.json's "arch", which dfpo reproduce writes): a
 * decoder-only base is a deviation from RL4LMs' and the paper's T5, a T5
 * base none. */
Test(report_paper, a_commongen_policy_other_than_t5_is_a_noted_deviation) {
  const char *arch[] = {"gpt2", "t5"};
  cell_task = "commongen";
  /* the METEOR judge as dfpo train records it (harness/task_commongen.c):
   * a fixed metric, no kind, a role longer than 120 characters */
  cell_judges = "[{\"role\": \"reward: METEOR against the references, less "
                "task.commongen.repeat_penalty for a sentence that repeats the prompt (RL4LMs' "
                "common_gen_repeat_penalty)\", \"id\": \"meteor: NLTK 3.8 meteor_score\"}]";
  for (int a = 0; a < 2; a++) {
    char root[400], p[500], text[200];
    snprintf(root, sizeof root, "%s/%s", dir, arch[a]);
    make_suite(root);
    snprintf(p, sizeof p, "%s/base-commongen.json", root);
    snprintf(text, sizeof text, "{\"task\": \"commongen\", \"arch\": \"%s\"}\n", arch[a]);
    ts_write_text(p, text);
    const char *args[] = {"report", "--no-plots", root, NULL};
    char *err;
    cr_assert_eq(dfpo(args, &err), 0, "%s", err);
    free(err);
    char *md = report_file(root, "commongen.md");
    const char *want = "Policy: a gpt2, not T5 as RL4LMs and the paper fine-tune on CommonGen.";
    if (a == 0)
      cr_expect(strstr(md, want) != NULL, "no \"%s\" in:\n%s", want, md);
    else
      cr_expect(strstr(md, "Policy:") == NULL, "a T5 base noted as a deviation:\n%s", md);
    /* the judge is named as the metric it is, its role whole, and not as
     * a judge trained by the harness */
    const char *judge = "Judge: meteor: NLTK 3.8 meteor_score; scores the reward: METEOR against "
                        "the references, less task.commongen.repeat_penalty for a sentence that "
                        "repeats the prompt (RL4LMs' common_gen_repeat_penalty).";
    cr_expect(strstr(md, judge) != NULL, "no \"%s\" in:\n%s", judge, md);
    cr_expect(strstr(md, "trained by the harness") == NULL, "%s", md);
    free(md);
  }
  cell_task = "synthetic";
  cell_judges = NULL;
}

/* A run folder with train.jsonl and no DONE is a cell under way: "running"
 * while a process holds its lock (here this test process), "stopped"
 * otherwise. Its table row is marked, the notes say how far it got (the
 * whole lines of train.jsonl; a line being written is not counted) and of
 * how many iterations (config.json), its curve so far is drawn in short
 * dashes, and results.json and dfpo check list it as missing. */
static void partial_cell(const char *root, const char *variant, int seed, int lines, int cut) {
  char d[600], p[700], cmd[800];
  snprintf(d, sizeof d, "%s/synthetic/%s/seed-%d", root, variant, seed);
  snprintf(cmd, sizeof cmd, "mkdir -p %s", d);
  cr_assert_eq(system(cmd), 0);
  snprintf(p, sizeof p, "%s/config.json", d);
  char text[256];
  snprintf(text, sizeof text, "{\"algo\": \"%s\", \"train\": {\"iterations\": 8}}\n", variant);
  ts_write_text(p, text);
  snprintf(p, sizeof p, "%s/train.jsonl", d);
  FILE *fp = fopen(p, "w");
  for (int it = 0; it < lines; it++)
    fprintf(fp, "{\"iteration\": %d, \"reward\": %g, \"val_reward\": %g}\n", it, 0.3 + 0.05 * it,
            0.35 + 0.04 * it);
  if (cut) /* the next line, half written */
    fprintf(fp, "{\"iteration\": %d, \"rew", lines);
  fclose(fp);
}

/* The opaque strokes of an RGB colour in a cairo SVG (lines, not bands). */
static int strokes(const char *svg, const char *rgb) {
  char pat[128];
  snprintf(pat, sizeof pat, "stroke:%s;stroke-opacity:1;", rgb);
  int n = 0;
  for (const char *p = strstr(svg, pat); p; p = strstr(p + 1, pat))
    n++;
  return n;
}

Test(report_paper, cells_under_way_are_marked_in_tables_and_curves) {
  char root[400], run[600], p[700];
  snprintf(root, sizeof root, "%s/fake", dir);
  make_suite(root);
  /* the baseline before the new cells start */
  const char *rep[] = {"report", root, NULL};
  char *err;
  cr_assert_eq(dfpo(rep, &err), 0, "%s", err);
  free(err);
  char *svg0 = report_file(root, "synthetic-val_reward.svg");
  int before_dfpo = strokes(svg0, dfpo_rgb), before_ppo = strokes(svg0, ppo_rgb);
  free(svg0);
  char base[700], cmd[1600];
  snprintf(base, sizeof base, "%s/base.json", dir);
  snprintf(cmd, sizeof cmd, "cp %s/report/results.json %s", root, base);
  cr_assert_eq(system(cmd), 0);
  partial_cell(root, "dfpo", 3, 3, 1);
  partial_cell(root, "ppo", 3, 2, 0);
  snprintf(run, sizeof run, "%s/synthetic/dfpo/seed-3", root);
  dfpo_lock lk = {0};
  dfpo_err e;
  cr_assert_eq(dfpo_lock_take(&lk, run, &e), 0, "%s", e.msg);
  const char *args[] = {"report", root, NULL};
  int st = dfpo(args, &err);
  cr_assert_eq(st, 0, "%s", err);
  free(err);
  char *md = report_file(root, "synthetic.md");
  static const char *const want[] = {"| DfPO (running) | 0.570 ± — |",
                                     "| PPO (stopped) | 0.550 ± —† |",
                                     "Under way: dfpo, seed 3: running, iteration 3 of 8.",
                                     ("Under way: ppo, seed 3: stopped at iteration 2 of 8 (no "
                                      "process holds it; dfpo reproduce resumes it).")};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    cr_expect(strstr(md, want[i]) != NULL, "no '%s' in:\n%s", want[i], md);
  free(md);
  char *page = report_file(root, "report.md");
  cr_expect(strstr(page, "15 of 17 cells finished. 2 under way") != NULL, "%s", page);
  free(page);
  /* each curve so far in its variant's colour, dashed: PLplot draws a
   * dashed line as one stroke per dash, a solid one as one stroke */
  char *svg = report_file(root, "synthetic-val_reward.svg");
  int dfpo_strokes = strokes(svg, dfpo_rgb), ppo_strokes = strokes(svg, ppo_rgb);
  cr_expect_gt(dfpo_strokes, before_dfpo + 3,
               "DfPO's running curve in dashes: %d strokes, %d before", dfpo_strokes, before_dfpo);
  cr_expect_gt(ppo_strokes, before_ppo + 3, "PPO's stopped curve in dashes: %d strokes, %d before",
               ppo_strokes, before_ppo);
  free(svg);
  snprintf(p, sizeof p, "%s/report/results.json", root);
  char *res = ts_slurp(p);
  cr_expect(strstr(res, "seed 3: running, iteration 3 of 8") != NULL, "%s", res);
  free(res);
  /* dfpo check: nothing moved, but cells are missing (exit 6) */
  const char *chk[] = {"check", "--baseline", base, root, NULL};
  st = dfpo(chk, &err);
  cr_expect_eq(st, 6, "exit %d: %s", st, err);
  free(err);
  dfpo_lock_release(&lk);
  /* let go: the same cell is stopped */
  st = dfpo(rep, &err);
  cr_assert_eq(st, 0, "%s", err);
  free(err);
  md = report_file(root, "synthetic.md");
  cr_expect(strstr(md, "| DfPO (stopped) |") && strstr(md, "dfpo, seed 3: stopped at iteration 3"),
            "%s", md);
  free(md);
}

/* A folder with no cells, and one with only unfinished cells (no DONE):
 * exit 2 (data), a message that says what was expected, no report/. */
Test(report_paper, a_folder_without_cells_is_refused) {
  char root[400], cmd[600], p[500];
  snprintf(root, sizeof root, "%s/empty", dir);
  snprintf(cmd, sizeof cmd, "mkdir -p %s/synthetic/dfpo/seed-0", root);
  cr_assert_eq(system(cmd), 0);
  const char *args[] = {"report", root, NULL};
  char *err;
  int st = dfpo(args, &err);
  cr_expect_eq(st, 2, "exit %d: %s", st, err);
  cr_expect(strstr(err, "no cells to report") && strstr(err, "eval.json and DONE"), "%s", err);
  free(err);
  snprintf(p, sizeof p, "%s/report", root);
  cr_expect_neq(access(p, F_OK), 0, "no report folder is made");
}
