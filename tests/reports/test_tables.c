#include "reports/reports.h"
#include "tests/support/support.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A table with every case the writers handle: a best per column in each
 * direction, a column without a direction, a tie for the best (no bold), an
 * empty cell, a single-seed cell (no sd), significant and non-significant
 * p-values, the reference row, and names that need escaping. The expected
 * files in tests/fixtures/reports were checked by hand against these
 * numbers: e.g. "Sentiment" is higher-is-better and DfPO's 0.912 is the
 * largest mean, so it alone is bold; PPO's p = 0.01 < 0.05 gets the dagger;
 * DfPO's Distinct-2 sd 0.0004 rounds to 0.000 at 3 digits and is an em
 * dash; the rows differ in seeds (5, 1-5, 4-5), so LaTeX keeps the n column. */
static const char *const rows[] = {"PPO (β = 0)", "NLPO", "DfPO (ours)"};
static const char *const row_keys[] = {"ppo-beta0", "nlpo", "dfpo"};
static const char *const groups[] = {"ppo", "nlpo", "dfpo"};
static const char *const cols[] = {"Sentiment", "Perplexity", "Distinct-2", "Len_words"};
static const char *const col_keys[] = {"sentiment", "ppl_ref", "distinct2", "len_words"};
static const rep_best best[] = {REP_BEST_HIGH, REP_BEST_LOW, REP_BEST_HIGH, REP_BEST_NONE};
static const int digits[] = {3, 2, 3, 1};
static const char *const notes[] = {"GPT-2 policies on every task (the paper used T5 for some).",
                                    "Judges trained by the harness."};

static rep_table make_table(rep_cell *cells) {
  const rep_cell c[12] = {
      {5, 0.871, 0.020, 0.01},  {5, 45.123, 3.5, 0.2}, {5, 0.5, 0.01, NAN},    {5, 20.0, 1.0, NAN},
      {5, 0.802, 0.031, 0.003}, {0, 0, 0, NAN},        {5, 0.5, 0.02, 0.5},    {4, 19.5, 2.0, NAN},
      {5, 0.912, 0.015, NAN},   {1, 33.333, NAN, NAN}, {5, 0.45, 0.0004, NAN}, {5, 21.0, 0.5, NAN},
  };
  memcpy(cells, c, sizeof c);
  rep_table t = {.title = "IMDB: sentiment & fluency",
                 .n_rows = 3,
                 .n_cols = 4,
                 .row_names = rows,
                 .col_names = cols,
                 .best = best,
                 .digits = digits,
                 .cells = cells,
                 .ref_row = 2,
                 .alpha = 0.05,
                 .notes = notes,
                 .n_notes = 2,
                 .task = "imdb",
                 .row_keys = row_keys,
                 .row_groups = groups,
                 .col_keys = col_keys,
                 .label = "tab:imdb main"};
  return t;
}

static void expect_file(const char *got, const char *name) {
  char path[512];
  snprintf(path, sizeof path, "%s/reports/%s", DFPO_FIXTURES, name);
  FILE *fp = fopen(path, "rb");
  cr_assert_not_null(fp, "missing %s", path);
  static char want[1 << 16];
  size_t n = fread(want, 1, sizeof want - 1, fp);
  fclose(fp);
  want[n] = '\0';
  cr_expect_str_eq(got, want, "%s differs; got:\n%s", name, got);
}

static void check(int (*writer)(const rep_table *, FILE *, dfpo_err *), const char *name) {
  rep_cell cells[12];
  rep_table t = make_table(cells);
  char *buf = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&buf, &len);
  dfpo_err err;
  cr_assert_eq(writer(&t, out, &err), DFPO_OK);
  fclose(out);
  expect_file(buf, name);
  free(buf);
}

Test(tables, markdown) {
  check(rep_table_markdown, "table.md");
}
Test(tables, latex) {
  check(rep_table_latex, "table.tex");
}
Test(tables, csv) {
  check(rep_table_csv, "table.csv");
}
Test(tables, json) {
  check(rep_table_json, "table.json");
}

Test(tables, write_errors_are_reported) {
  rep_cell cells[12];
  rep_table t = make_table(cells);
  FILE *ro = fopen("/dev/null", "r"); /* writing to a read-only stream fails */
  cr_assert_not_null(ro);
  dfpo_err err;
  cr_expect_eq(rep_table_markdown(&t, ro, &err), DFPO_ERUNTIME);
  fclose(ro);
}

static char *render(int (*writer)(const rep_table *, FILE *, dfpo_err *), const rep_table *t) {
  char *buf = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&buf, &len);
  dfpo_err err;
  cr_assert_eq(writer(t, out, &err), DFPO_OK);
  fclose(out);
  return buf;
}

/* What a paper needs of the LaTeX: booktabs rules, the caption with the
 * legend, a label, display names (β as $\beta$), the sd that rounds to zero
 * as an em dash and never "0.000", the shrink-to-column guard. */
Test(tables, latex_is_fit_for_a_paper) {
  rep_cell cells[12];
  rep_table t = make_table(cells);
  char *s = render(rep_table_latex, &t);
  static const char *const want[] = {
      "\\toprule",
      "\\midrule",
      "\\bottomrule",
      "\\caption{IMDB: sentiment \\& fluency. Mean",
      "\\label{tab:imdb-main}",
      "PPO ($\\beta$ = 0) &",
      "\\textsubscript{$\\pm$---}",
      "\\resizebox{\\ifdim\\width>\\columnwidth\\columnwidth\\else\\width\\fi}{!}",
      "\\begin{table}[t]",
      "---: the sd rounds to zero"};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    cr_expect(strstr(s, want[i]) != NULL, "no %s in:\n%s", want[i], s);
  cr_expect(strstr(s, "0.000") == NULL, "%s", s);
  cr_expect(strstr(s, "ppo-beta0") == NULL, "the key is not shown: %s", s);
  free(s);
  t.wide = 1;
  s = render(rep_table_latex, &t);
  cr_expect(strstr(s, "\\begin{table*}[t]") && strstr(s, "\\end{table*}") &&
                strstr(s, "\\width>\\textwidth\\textwidth"),
            "%s", s);
  free(s);
}

/* The CSV speaks results.json's keys: task, variant, algo, metric. */
Test(tables, csv_has_the_results_keys) {
  rep_cell cells[12];
  rep_table t = make_table(cells);
  char *s = render(rep_table_csv, &t);
  cr_expect(!strncmp(s, "task,variant,algo,metric,n,mean,sd,p_value,best,significant\n", 60), "%s",
            s);
  cr_expect(strstr(s, "\nimdb,ppo-beta0,ppo,sentiment,5,0.871,0.02,0.01,0,1\n") != NULL, "%s", s);
  cr_expect(strstr(s, "\nimdb,dfpo,dfpo,ppl_ref,1,33.333,,,1,0\n") != NULL, "%s", s);
  free(s);
}

/* The digits of a column from its largest mean: 0.9 -> 3, 5.1 -> 2, 118 ->
 * 1, 1234 -> 0. */
Test(tables, digits_by_magnitude) {
  cr_expect_eq(rep_digits_for(0.935), 3);
  cr_expect_eq(rep_digits_for(-0.5), 3);
  cr_expect_eq(rep_digits_for(5.12), 2);
  cr_expect_eq(rep_digits_for(117.98), 1);
  cr_expect_eq(rep_digits_for(1234), 0);
  cr_expect_eq(rep_digits_for(NAN), 3);
}

/* ---------------------------------------------------- LaTeX, compiled */

static int have_pdflatex(void) {
  return system("command -v pdflatex >/dev/null 2>&1") == 0;
}

/* Compiles table.tex inside ICML's page geometry (two columns of 3.25 in =
 * 234.87 pt: \textwidth 6.75 in, \columnsep 0.25 in) with \resizebox wrapped
 * so that the log says the tabular's natural width (NATURAL=) and the width
 * it is set at (SET=). Returns the log. */
static char *compile(const char *dir, const char *table_tex, double *natural, double *set) {
  char path[512], cmd[1024];
  snprintf(path, sizeof path, "%s/table.tex", dir);
  FILE *fp = fopen(path, "w");
  fputs(table_tex, fp);
  fclose(fp);
  snprintf(path, sizeof path, "%s/doc.tex", dir);
  fp = fopen(path, "w");
  fputs("\\documentclass[10pt,twocolumn]{article}\n"
        "\\usepackage[utf8]{inputenc}\n\\usepackage{booktabs,graphicx}\n"
        "\\setlength{\\textwidth}{6.75in}\\setlength{\\columnsep}{0.25in}\n"
        "\\let\\origresizebox\\resizebox\n"
        "\\renewcommand{\\resizebox}[3]{\\setbox2\\hbox{#3}\\typeout{NATURAL=\\the\\wd2}"
        "\\setbox4\\hbox{\\origresizebox{#1}{#2}{\\box2}}\\typeout{SET=\\the\\wd4}\\box4}\n"
        "\\begin{document}\n\\typeout{COLUMN=\\the\\columnwidth}\n\\input{table.tex}\n"
        "Text.\n\\end{document}\n",
        fp);
  fclose(fp);
  snprintf(cmd, sizeof cmd,
           "cd %s && pdflatex -interaction=nonstopmode -halt-on-error doc.tex >/dev/null 2>&1",
           dir);
  int st = system(cmd);
  snprintf(path, sizeof path, "%s/doc.log", dir);
  fp = fopen(path, "r");
  cr_assert_not_null(fp, "pdflatex wrote no log");
  static char log[1 << 18];
  size_t n = fread(log, 1, sizeof log - 1, fp);
  fclose(fp);
  log[n] = 0;
  cr_assert_eq(st, 0, "pdflatex failed:\n%s", log);
  const char *a = strstr(log, "NATURAL="), *b = strstr(log, "SET=");
  cr_assert(a && b, "%s", log);
  *natural = strtod(a + 8, NULL);
  *set = strtod(b + 4, NULL);
  return log;
}

/* The smoke suite's table (6 rows of 4 metrics, 3 seeds, display names):
 * it compiles, is set at no more than the column (234.87 pt) with no
 * overfull box, and its natural width is within 10% of the column, so the
 * shrink, if any, leaves the type readable. */
Test(tables, latex_compiles_and_fits_an_icml_column) {
  if (!have_pdflatex())
    cr_skip_test("pdflatex not installed (Debian: texlive-latex-base texlive-latex-recommended)");
  static const char *const r[] = {"Zero-shot", "SFT", "PPO (β = 0)", "PPO", "NLPO", "DfPO"};
  static const char *const c[] = {"Reward", "NLL/word", "OOV rate", "Perplexity (ref)"};
  static const rep_best b[] = {REP_BEST_HIGH, REP_BEST_LOW, REP_BEST_LOW, REP_BEST_LOW};
  static const int d[] = {3, 2, 3, 1};
  rep_cell cells[24];
  const double m[6][4] = {{0.496, 5.12, 0.027, 12.7}, {0.495, 5.11, 0.028, 12.3},
                          {0.961, 6.34, 0.039, 80.4}, {0.547, 4.90, 0.029, 18.4},
                          {0.539, 4.45, 0.020, 19.2}, {0.572, 6.17, 0.077, 14.0}};
  for (int i = 0; i < 24; i++)
    cells[i] = (rep_cell){3, m[i / 4][i % 4], 0.031 * m[i / 4][i % 4], i % 3 ? 0.01 : 0.2};
  cells[3].sd = 0;
  rep_table t = {.title = "Synthetic language (suite smoke): test metrics of the checkpoint with "
                          "the best validation reward",
                 .n_rows = 6,
                 .n_cols = 4,
                 .row_names = r,
                 .col_names = c,
                 .best = b,
                 .digits = d,
                 .cells = cells,
                 .ref_row = 5,
                 .alpha = 0.05,
                 .label = "tab:smoke-synthetic"};
  char dir[256];
  ts_tmpdir(dir, sizeof dir);
  char *s = render(rep_table_latex, &t);
  double natural, set;
  char *log = compile(dir, s, &natural, &set);
  cr_expect(strstr(log, "COLUMN=234.8775pt") != NULL, "the ICML column");
  cr_expect(strstr(log, "Overfull \\hbox") == NULL, "an overfull box:\n%s", log);
  cr_expect(set <= 234.8775 + 0.1, "set at %g pt (TeX's \\hfuzz is 0.1 pt)", set);
  cr_expect(natural <= 1.1 * 234.8775, "natural width %g pt", natural);
  fprintf(stderr, "smoke-shaped table: natural width %g pt, set at %g pt (column 234.88 pt)\n",
          natural, set);
  free(s);
  /* a table far too wide (12 metric columns) is shrunk to the column, not
   * left overfull */
  static const char *const c12[] = {"Reward", "NLL/word", "OOV rate", "Perplexity (ref)",
                                    "Reward", "NLL/word", "OOV rate", "Perplexity (ref)",
                                    "Reward", "NLL/word", "OOV rate", "Perplexity (ref)"};
  rep_cell wide[72];
  for (int i = 0; i < 72; i++)
    wide[i] = cells[(i / 12) * 4 + i % 4];
  t.n_cols = 12;
  t.col_names = c12;
  t.cells = wide;
  t.best = NULL;
  t.digits = NULL;
  s = render(rep_table_latex, &t);
  log = compile(dir, s, &natural, &set);
  cr_expect(natural > 2 * 234.8775, "natural width %g pt", natural);
  cr_expect(set <= 234.8775 + 0.1 && set > 234.8, "set at %g pt", set);
  cr_expect(strstr(log, "Overfull \\hbox") == NULL, "an overfull box:\n%s", log);
  free(s);
  ts_rmtree(dir);
}
