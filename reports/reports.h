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
 * pointers are borrowed: the caller owns the strings and arrays. Names are
 * display names ("PPO (β = 0)", "Perplexity (ref)"); keys are the names the
 * results files use ("ppo-beta0", "ppl_ref"), written by the CSV and JSON
 * writers (NULL: the display names are used). */
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
  const char *task;              /* CSV and JSON: the task column (NULL: empty) */
  const char *const *row_keys;   /* [n_rows] variant keys, or NULL */
  const char *const *row_groups; /* [n_rows] the algorithm of each row, or NULL */
  const char *const *col_keys;   /* [n_cols] metric keys, or NULL */
  const char *label;             /* LaTeX \label (NULL: none) */
  int wide;                      /* LaTeX: table* across both columns, else one column */
} rep_table;

/* Writers. Markdown: a pipe table, "mean ± sd", the best mean of each column
 * in bold, a dagger on cells whose p-value against the reference row is
 * below alpha, a column n (seeds), then the notes. An sd that rounds to zero
 * at the column's digits is written as an em dash ("12.7 ± —"), never as
 * "± 0.000". LaTeX: a booktabs table with the title and the legend as its
 * caption, \label, the sd as a subscript, the n column only when rows differ
 * in seeds (else "n seeds" in the caption), and a \resizebox that shrinks the
 * tabular to \columnwidth (\textwidth with wide) only when it is wider; it
 * needs \usepackage{booktabs,graphicx}. CSV: one line per cell with the keys
 * (task, variant, algo, metric, n, mean, sd, p_value, best, significant).
 * JSON: the same as an object, with the display names beside the keys. All
 * return DFPO_ERUNTIME when writing fails. */
int rep_table_markdown(const rep_table *t, FILE *out, dfpo_err *err);
int rep_table_latex(const rep_table *t, FILE *out, dfpo_err *err);
int rep_table_csv(const rep_table *t, FILE *out, dfpo_err *err);
int rep_table_json(const rep_table *t, FILE *out, dfpo_err *err);

/* Digits after the point for a column whose largest |mean| is m: 3 below 1,
 * 2 below 10, 1 below 1000, else 0 (NaN: 3). */
int rep_digits_for(double m);

/* ------------------------------------------------------------- statistics */

/* The scale a metric's confidence band is computed on, so that the band
 * stays inside the metric's possible values: LINEAR (any real), LOGIT (a
 * probability or a rate in [0, 1]), LOG (positive, e.g. a perplexity). */
typedef enum { REP_SCALE_LINEAR = 0, REP_SCALE_LOGIT = 1, REP_SCALE_LOG = 2 } rep_scale;

/* The two-sided t interval at level (e.g. 0.95) of the mean of the n values
 * v after the scale's transform (logit(v) or log(v)), mapped back: lo and hi
 * lie in (0, 1) for LOGIT and above 0 for LOG. Values on or past the
 * boundary are clamped to it by 1e-6 (LOGIT: [1e-6, 1 - 1e-6]; LOG: 1e-300)
 * first. *mean is the plain arithmetic mean, as in the tables; with n = 1, lo
 * = hi = the value. DFPO_EDATA for n = 0 or a non-finite value. */
int rep_band(const double *v, size_t n, double level, rep_scale scale, double *mean, double *lo,
             double *hi, dfpo_err *err);

/* ----------------------------------------------------------------- plots */

/* How a series is drawn: a colour (RGB), a marker (a glyph) and
 * dashed or solid. rep_style_of gives every algorithm of the harness the
 * same style in every figure: zero-shot, sft, ppo, nlpo, dfpo each have
 * their own colour (Okabe & Ito's colour-blind-safe palette) and marker; a
 * name it does not know gets grey and a hollow circle.
 * rep_style_variant derives a variant's style from its algorithm's: the
 * algorithm's marker, dashed, and the k-th colour of a second palette (the
 * caller numbers its variants once per report, so that a variant keeps its
 * colour whatever subset a figure shows). */
typedef struct rep_style {
  unsigned char rgb[3];
  const char *marker; /* a UTF-8 glyph drawn at each point ("●", "■", ...) */
  int dashed;         /* 0 solid, 1 long dashes (a variant), REP_LINE_UNDER_WAY */
} rep_style;

/* rep_style.dashed for short dashes: the curve of runs under way (dfpo
 * report's running cells), apart from a variant's long dashes. */
#define REP_LINE_UNDER_WAY 2

rep_style rep_style_of(const char *algo);
rep_style rep_style_variant(const char *algo, int k);

/* One line of a plot: y over x with an optional band [lo, hi] (a confidence
 * interval over seeds), or, with points_only, markers without a line (a
 * single configuration such as DfPO on a frontier). Points may carry error
 * bars in x too (xlo, xhi) and a text beside them (tags[i], e.g. "β = 0").
 * All arrays are borrowed and hold n values. */
typedef struct rep_series {
  const char *label;
  int n;
  const double *x, *y;
  const double *lo, *hi; /* both NULL: no band (no y error bars) */
  int points_only;
  rep_style style;
  const double *xlo, *xhi; /* x error bars of points, or NULL */
  const char *const *tags; /* [n] text beside each point, or NULL */
  int connect;             /* points_only: join the points with a thin line too */
} rep_series;

typedef struct rep_plot {
  const char *title, *xlabel, *ylabel;
  int n_series;
  const rep_series *series;
  int width, height; /* pixels (PNG) or points (PDF, SVG); 0: 800 x 500 */
  int xlog, ylog;    /* log10 axes (data must be > 0 there) */
  const char *note;  /* a line under the legend, e.g. "SFT not shown: ..." (NULL: none) */
} rep_plot;

/* Draws the plot with PLplot's cairo drivers into path, whose extension
 * chooses the format (.png, .svg or .pdf). The file is written under a
 * temporary name and renamed, so path never holds half a plot. Series with
 * non-finite values are drawn without those points. A title too long for
 * the page is wrapped onto a second line and then set smaller
 * (rep_title_fit). */
int rep_plot_write(const rep_plot *p, const char *path, dfpo_err *err);

/* How a title of len characters is set on a page of width w: the character
 * scale (1 or less) and the byte where a second line starts (0: one line),
 * at a word boundary. An estimate from the font's average advance (a
 * little above DejaVu Sans's), not a measurement of the glyphs. */
double rep_title_fit(const char *title, int width, size_t *split);

#endif
