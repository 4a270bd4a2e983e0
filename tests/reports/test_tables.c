#include "reports/reports.h"

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
 * largest mean, so it alone is bold; PPO's p = 0.01 < 0.05 gets the dagger. */
static const char *const rows[] = {"PPO", "NLPO", "DfPO (ours)"};
static const char *const cols[] = {"Sentiment", "Perplexity", "Distinct-2", "Len_words"};
static const rep_best best[] = {REP_BEST_HIGH, REP_BEST_LOW, REP_BEST_HIGH, REP_BEST_NONE};
static const int digits[] = {3, 2, 3, 1};
static const char *const notes[] = {"GPT-2 policies on every task (the paper used T5 for some).",
                                    "Judges trained by the harness."};

static rep_table make_table(rep_cell *cells) {
  const rep_cell c[12] = {
      {5, 0.871, 0.020, 0.01},  {5, 45.123, 3.5, 0.2}, {5, 0.5, 0.01, NAN},  {5, 20.0, 1.0, NAN},
      {5, 0.802, 0.031, 0.003}, {0, 0, 0, NAN},        {5, 0.5, 0.02, 0.5},  {4, 19.5, 2.0, NAN},
      {5, 0.912, 0.015, NAN},   {1, 33.333, NAN, NAN}, {5, 0.45, 0.03, NAN}, {5, 21.0, 0.5, NAN},
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
                 .n_notes = 2};
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
