#include "reports/reports.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const rep_cell *cell(const rep_table *t, int r, int c) {
  return &t->cells[(size_t)r * t->n_cols + c];
}

/* The row holding the best mean of column c, or -1 (no direction, no
 * values, or a tie for the best). */
static int best_row(const rep_table *t, int c) {
  if (!t->best || t->best[c] == REP_BEST_NONE)
    return -1;
  int best = -1, tie = 0;
  for (int r = 0; r < t->n_rows; r++) {
    const rep_cell *x = cell(t, r, c);
    if (x->n == 0 || !isfinite(x->mean))
      continue;
    if (best < 0) {
      best = r;
      continue;
    }
    double d = (x->mean - cell(t, best, c)->mean) * t->best[c];
    if (d > 0) {
      best = r;
      tie = 0;
    } else if (d == 0) {
      tie = 1;
    }
  }
  return tie ? -1 : best;
}

static int significant(const rep_table *t, int r, int c) {
  const rep_cell *x = cell(t, r, c);
  return r != t->ref_row && x->n > 0 && isfinite(x->p_value) && x->p_value < t->alpha;
}

static int digits(const rep_table *t, int c) {
  return t->digits ? t->digits[c] : 3;
}

/* The n column: the seeds of the row's non-empty cells, or "a-b" when they
 * differ (empty cells show "--" themselves). */
static void row_n(const rep_table *t, int r, char *buf, size_t n) {
  int lo = -1, hi = -1;
  for (int c = 0; c < t->n_cols; c++) {
    int k = cell(t, r, c)->n;
    if (k == 0)
      continue;
    if (lo < 0 || k < lo)
      lo = k;
    if (hi < 0 || k > hi)
      hi = k;
  }
  if (lo == hi)
    snprintf(buf, n, "%d", lo < 0 ? 0 : lo);
  else
    snprintf(buf, n, "%d-%d", lo, hi);
}

typedef enum { FMT_MD, FMT_TEX } text_fmt;

static void format_cell(const rep_table *t, int r, int c, int bold, text_fmt f, char *buf,
                        size_t n) {
  const rep_cell *x = cell(t, r, c);
  if (x->n == 0) {
    snprintf(buf, n, "--");
    return;
  }
  int d = digits(t, c);
  char num[96];
  const char *pm = f == FMT_MD ? " ± " : " $\\pm$ ";
  if (x->n >= 2 && isfinite(x->sd))
    snprintf(num, sizeof num, "%.*f%s%.*f", d, x->mean, pm, d, x->sd);
  else
    snprintf(num, sizeof num, "%.*f", d, x->mean);
  const char *dag = significant(t, r, c) ? (f == FMT_MD ? "†" : "$^\\dagger$") : "";
  if (bold)
    snprintf(buf, n, f == FMT_MD ? "**%s**%s" : "\\textbf{%s}%s", num, dag);
  else
    snprintf(buf, n, "%s%s", num, dag);
}

static int io_check(FILE *out, dfpo_err *err) {
  if (ferror(out))
    return dfpo_err_set(err, DFPO_ERUNTIME, "writing the table failed");
  return DFPO_OK;
}

static void tex_escape(FILE *out, const char *s) {
  for (; *s; s++) {
    if (strchr("&%$#_{}", *s))
      fprintf(out, "\\%c", *s);
    else if (*s == '~')
      fputs("\\textasciitilde{}", out);
    else if (*s == '^')
      fputs("\\textasciicircum{}", out);
    else if (*s == '\\')
      fputs("\\textbackslash{}", out);
    else
      fputc(*s, out);
  }
}

/* Markdown pipes and newlines inside a name would break the table. */
static void md_escape(FILE *out, const char *s) {
  for (; *s; s++) {
    if (*s == '|')
      fputs("\\|", out);
    else if (*s == '\n')
      fputc(' ', out);
    else
      fputc(*s, out);
  }
}

static void legend(const rep_table *t, FILE *out, int tex) {
  int any_bold = 0;
  for (int c = 0; c < t->n_cols; c++)
    any_bold |= t->best && t->best[c] != REP_BEST_NONE;
  if (tex)
    fputs("% ", out);
  fputs("Mean ± sample sd over seeds; n = seeds.", out);
  if (any_bold)
    fputs(" Bold: best mean of the column.", out);
  if (t->ref_row >= 0) {
    fprintf(out, " †: Welch's t-test against %s, p < %g.", t->row_names[t->ref_row], t->alpha);
  }
  fputc('\n', out);
}

int rep_table_markdown(const rep_table *t, FILE *out, dfpo_err *err) {
  if (t->title)
    fprintf(out, "### %s\n\n", t->title);
  fputs("| |", out);
  for (int c = 0; c < t->n_cols; c++) {
    fputc(' ', out);
    md_escape(out, t->col_names[c]);
    fputs(" |", out);
  }
  fputs(" n |\n|---|", out);
  for (int c = 0; c < t->n_cols; c++)
    fputs("---|", out);
  fputs("---|\n", out);
  for (int r = 0; r < t->n_rows; r++) {
    fputs("| ", out);
    md_escape(out, t->row_names[r]);
    fputs(" |", out);
    for (int c = 0; c < t->n_cols; c++) {
      char buf[160];
      format_cell(t, r, c, best_row(t, c) == r, FMT_MD, buf, sizeof buf);
      fprintf(out, " %s |", buf);
    }
    char n[32];
    row_n(t, r, n, sizeof n);
    fprintf(out, " %s |\n", n);
  }
  fputc('\n', out);
  legend(t, out, 0);
  for (int i = 0; i < t->n_notes; i++)
    fprintf(out, "\n- %s", t->notes[i]);
  if (t->n_notes)
    fputc('\n', out);
  return io_check(out, err);
}

int rep_table_latex(const rep_table *t, FILE *out, dfpo_err *err) {
  fputs("% requires \\usepackage{booktabs}\n\\begin{table}[t]\n\\centering\n", out);
  if (t->title) {
    fputs("\\caption{", out);
    tex_escape(out, t->title);
    fputs("}\n", out);
  }
  fputs("\\begin{tabular}{l", out);
  for (int c = 0; c < t->n_cols; c++)
    fputc('c', out);
  fputs("r}\n\\toprule\n", out);
  for (int c = 0; c < t->n_cols; c++) {
    fputs(" & ", out);
    tex_escape(out, t->col_names[c]);
  }
  fputs(" & $n$ \\\\\n\\midrule\n", out);
  for (int r = 0; r < t->n_rows; r++) {
    tex_escape(out, t->row_names[r]);
    for (int c = 0; c < t->n_cols; c++) {
      char buf[160];
      format_cell(t, r, c, best_row(t, c) == r, FMT_TEX, buf, sizeof buf);
      fprintf(out, " & %s", buf);
    }
    char n[32];
    row_n(t, r, n, sizeof n);
    fprintf(out, " & %s \\\\\n", n);
  }
  fputs("\\bottomrule\n\\end{tabular}\n\\end{table}\n", out);
  legend(t, out, 1);
  for (int i = 0; i < t->n_notes; i++) {
    fputs("% ", out);
    fputs(t->notes[i], out);
    fputc('\n', out);
  }
  return io_check(out, err);
}

static void csv_field(FILE *out, const char *s) {
  if (!strpbrk(s, ",\"\n\r")) {
    fputs(s, out);
    return;
  }
  fputc('"', out);
  for (; *s; s++) {
    if (*s == '"')
      fputc('"', out);
    fputc(*s, out);
  }
  fputc('"', out);
}

/* The shortest of %.15g..%.17g that reads back as the same double. */
static void csv_num(FILE *out, double v) {
  if (!isfinite(v))
    return;
  char buf[40];
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(buf, sizeof buf, "%.*g", prec, v);
    if (strtod(buf, NULL) == v)
      break;
  }
  fputs(buf, out);
}

int rep_table_csv(const rep_table *t, FILE *out, dfpo_err *err) {
  fputs("row,column,n,mean,sd,p_value,best,significant\n", out);
  for (int r = 0; r < t->n_rows; r++)
    for (int c = 0; c < t->n_cols; c++) {
      const rep_cell *x = cell(t, r, c);
      csv_field(out, t->row_names[r]);
      fputc(',', out);
      csv_field(out, t->col_names[c]);
      fprintf(out, ",%d,", x->n);
      if (x->n) {
        csv_num(out, x->mean);
        fputc(',', out);
        csv_num(out, x->sd);
      } else {
        fputc(',', out);
      }
      fputc(',', out);
      csv_num(out, x->p_value);
      fprintf(out, ",%d,%d\n", best_row(t, c) == r, significant(t, r, c));
    }
  return io_check(out, err);
}

static cJSON *json_num(double v) {
  return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull();
}

int rep_table_json(const rep_table *t, FILE *out, dfpo_err *err) {
  cJSON *root = cJSON_CreateObject();
  if (!root)
    return dfpo_err_set(err, DFPO_ERUNTIME, "table JSON: out of memory");
  if (t->title)
    cJSON_AddStringToObject(root, "title", t->title);
  if (t->ref_row >= 0)
    cJSON_AddStringToObject(root, "reference", t->row_names[t->ref_row]);
  cJSON_AddNumberToObject(root, "alpha", t->alpha);
  cJSON *rows = cJSON_AddArrayToObject(root, "rows");
  for (int r = 0; r < t->n_rows; r++) {
    cJSON *row = cJSON_CreateObject();
    cJSON_AddItemToArray(rows, row);
    cJSON_AddStringToObject(row, "name", t->row_names[r]);
    cJSON *cols = cJSON_AddObjectToObject(row, "metrics");
    for (int c = 0; c < t->n_cols; c++) {
      const rep_cell *x = cell(t, r, c);
      cJSON *o = cJSON_CreateObject();
      cJSON_AddItemToObject(cols, t->col_names[c], o);
      cJSON_AddNumberToObject(o, "n", x->n);
      cJSON_AddItemToObject(o, "mean", x->n ? json_num(x->mean) : cJSON_CreateNull());
      cJSON_AddItemToObject(o, "sd", x->n ? json_num(x->sd) : cJSON_CreateNull());
      cJSON_AddItemToObject(o, "p_value", json_num(x->p_value));
      cJSON_AddBoolToObject(o, "best", best_row(t, c) == r);
      cJSON_AddBoolToObject(o, "significant", significant(t, r, c));
    }
  }
  cJSON *notes = cJSON_AddArrayToObject(root, "notes");
  for (int i = 0; i < t->n_notes; i++)
    cJSON_AddItemToArray(notes, cJSON_CreateString(t->notes[i]));
  char *s = cJSON_Print(root);
  cJSON_Delete(root);
  if (!s)
    return dfpo_err_set(err, DFPO_ERUNTIME, "table JSON: out of memory");
  fprintf(out, "%s\n", s);
  free(s);
  return io_check(out, err);
}
