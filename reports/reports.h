/* reports: tables (Markdown, LaTeX, CSV, JSON), plots and report pages built
 * from many runs and seeds.
 *
 * Prefix: rep_. Depends on common/ and metrics/ (statistics). The table
 * writers take summary statistics already computed (mean, sd, n and the
 * p-value of a test against the reference row); computing them is the
 * statistics module's work.
 */
#ifndef DFPO_REPORTS_H
#define DFPO_REPORTS_H

#include "common/common.h"

#include <stdio.h>

/* ---------------------------------------------------------------- tables */

/* One cell: the summary of a metric over seeds. */
typedef struct rep_cell {
  int n;           /* seeds with a value; 0: the cell is empty ("--") */
  double mean, sd; /* sd: sample standard deviation (NaN when n < 2) */
  double p_value;  /* test of this row against the reference row; NaN: none */
} rep_cell;

typedef enum { REP_BEST_NONE = 0, REP_BEST_HIGH = 1, REP_BEST_LOW = -1 } rep_best;

/* A table in the paper's shape: rows are algorithms, columns metrics. All
 * pointers are borrowed: the caller owns the strings and arrays. */
typedef struct rep_table {
  const char *title;
  int n_rows, n_cols;
  const char *const *row_names;
  const char *const *col_names;
  const rep_best *best;     /* [n_cols]: which direction is better, for bold */
  const int *digits;        /* [n_cols]: digits after the point */
  const rep_cell *cells;    /* [n_rows * n_cols] */
  int ref_row;              /* the row others are tested against (DfPO); -1 none */
  double alpha;             /* significance level for the marks, e.g. 0.05 */
  const char *const *notes; /* lines printed under the table (deviations, unverified data) */
  int n_notes;
} rep_table;

/* Writers. Markdown: a pipe table, "mean ± sd", the best mean of each column
 * in bold, a dagger on cells whose p-value against the reference row is
 * below alpha, a column n (seeds), then the notes. LaTeX: a booktabs
 * tabular with the same marks ($\pm$, \textbf, $^\dagger$). CSV: one line
 * per cell (row, column, n, mean, sd, p_value, best, significant). JSON: the
 * same as an object. All return DFPO_ERUNTIME when writing fails. */
int rep_table_markdown(const rep_table *t, FILE *out, dfpo_err *err);
int rep_table_latex(const rep_table *t, FILE *out, dfpo_err *err);
int rep_table_csv(const rep_table *t, FILE *out, dfpo_err *err);
int rep_table_json(const rep_table *t, FILE *out, dfpo_err *err);

/* ----------------------------------------------------------------- plots */

/* One line of a plot: y over x with an optional band [lo, hi] (a confidence
 * interval over seeds), or, with points_only, markers without a line (a
 * single configuration such as DfPO on a frontier of PPO beta values). All
 * arrays are borrowed and hold n values. */
typedef struct rep_series {
  const char *label;
  int n;
  const double *x, *y;
  const double *lo, *hi; /* both NULL: no band */
  int points_only;
} rep_series;

typedef struct rep_plot {
  const char *title, *xlabel, *ylabel;
  int n_series;
  const rep_series *series;
  int width, height; /* pixels (PNG) or points (PDF, SVG); 0: 800 x 500 */
} rep_plot;

/* Draws the plot with PLplot's cairo drivers into path, whose extension
 * chooses the format (.png, .svg or .pdf). The file is written under a
 * temporary name and renamed, so path never holds half a plot. Series with
 * non-finite values are drawn without those points. */
int rep_plot_write(const rep_plot *p, const char *path, dfpo_err *err);

#endif
