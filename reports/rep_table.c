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

int rep_digits_for(double m) {
  m = fabs(m);
  if (!isfinite(m) || m < 1)
    return 3;
  if (m < 10)
    return 2;
  if (m < 1000)
    return 1;
  return 0;
}

/* Whether sd is shown as 0 at d digits: then an em dash stands for it. */
static int sd_rounds_to_zero(double sd, int d) {
  char buf[64];
  snprintf(buf, sizeof buf, "%.*f", d, sd);
  return strtod(buf, NULL) == 0;
}

/* Markdown: "mean ± sd"; LaTeX: "mean\textsubscript{$\pm$sd}", narrower.
 * Bold marks the mean alone. */
static void format_cell(const rep_table *t, int r, int c, int bold, text_fmt f, char *buf,
                        size_t n) {
  const rep_cell *x = cell(t, r, c);
  if (x->n == 0) {
    snprintf(buf, n, "--");
    return;
  }
  int d = digits(t, c);
  char mean[64], sd[64] = "";
  snprintf(mean, sizeof mean,
           f == FMT_MD ? (bold ? "**%.*f**" : "%.*f") : (bold ? "\\textbf{%.*f}" : "%.*f"), d,
           x->mean);
  if (x->n >= 2 && isfinite(x->sd)) {
    int zero = sd_rounds_to_zero(x->sd, d);
    if (f == FMT_MD && zero)
      snprintf(sd, sizeof sd, " ± —");
    else if (f == FMT_MD)
      snprintf(sd, sizeof sd, " ± %.*f", d, x->sd);
    else if (zero)
      snprintf(sd, sizeof sd, "\\textsubscript{$\\pm$---}");
    else
      snprintf(sd, sizeof sd, "\\textsubscript{$\\pm$%.*f}", d, x->sd);
  }
  const char *dag = significant(t, r, c) ? (f == FMT_MD ? "†" : "$^\\dagger$") : "";
  snprintf(buf, n, "%s%s%s", mean, sd, dag);
}

static int io_check(FILE *out, dfpo_err *err) {
  if (ferror(out))
    return dfpo_err_set(err, DFPO_ERUNTIME, "writing the table failed");
  return DFPO_OK;
}

/* Escapes TeX's special characters; the few non-ASCII characters the
 * display names and notes use become their TeX commands (pdflatex's UTF-8
 * input knows no Greek). */
static void tex_escape(FILE *out, const char *s) {
  static const struct {
    const char *utf8, *tex;
  } sym[] = {{"β", "$\\beta$"},    {"±", "$\\pm$"}, {"—", "---"},      {"–", "--"},
             {"†", "$^\\dagger$"}, {"π", "$\\pi$"}, {"θ", "$\\theta$"}};
  for (; *s; s++) {
    size_t k = 0;
    for (; k < sizeof sym / sizeof sym[0]; k++)
      if (!strncmp(s, sym[k].utf8, strlen(sym[k].utf8)))
        break;
    if (k < sizeof sym / sizeof sym[0]) {
      fputs(sym[k].tex, out);
      s += strlen(sym[k].utf8) - 1;
    } else if (strchr("&%$#_{}", *s))
      fprintf(out, "\\%c", *s);
    else if (*s == '<' || *s == '>') /* text-mode < and > are other glyphs in OT1 */
      fprintf(out, "$%c$", *s);
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

/* The seeds of every non-empty cell when they are all the same, else -1. */
static int common_n(const rep_table *t) {
  int n = -1;
  for (int r = 0; r < t->n_rows; r++)
    for (int c = 0; c < t->n_cols; c++) {
      int k = cell(t, r, c)->n;
      if (k == 0)
        continue;
      if (n >= 0 && k != n)
        return -1;
      n = k;
    }
  return n;
}

static int any_zero_sd(const rep_table *t) {
  for (int r = 0; r < t->n_rows; r++)
    for (int c = 0; c < t->n_cols; c++) {
      const rep_cell *x = cell(t, r, c);
      if (x->n >= 2 && isfinite(x->sd) && sd_rounds_to_zero(x->sd, digits(t, c)))
        return 1;
    }
  return 0;
}

/* What the marks mean, one sentence each (UTF-8; tex_escape for LaTeX). */
static void legend_text(const rep_table *t, char *buf, size_t n) {
  int any_bold = 0, seeds = common_n(t);
  for (int c = 0; c < t->n_cols; c++)
    any_bold |= t->best && t->best[c] != REP_BEST_NONE;
  size_t o = 0;
#define ADD(...)                                                                                   \
  do {                                                                                             \
    if (o < n)                                                                                     \
      o += (size_t)snprintf(buf + o, n - o, __VA_ARGS__);                                          \
  } while (0)
  if (seeds > 0)
    ADD("Mean ± sample sd over %d seeds.", seeds);
  else
    ADD("Mean ± sample sd over seeds; n = seeds.");
  if (any_zero_sd(t))
    ADD(" —: the sd rounds to zero at the digits shown.");
  if (any_bold)
    ADD(" Bold: best mean of the column.");
  if (t->ref_row >= 0)
    ADD(" †: Welch's t-test against %s, p < %g.", t->row_names[t->ref_row], t->alpha);
#undef ADD
}

static void legend(const rep_table *t, FILE *out) {
  char buf[1024];
  legend_text(t, buf, sizeof buf);
  fprintf(out, "%s\n", buf);
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
  legend(t, out);
  for (int i = 0; i < t->n_notes; i++)
    fprintf(out, "\n- %s", t->notes[i]);
  if (t->n_notes)
    fputc('\n', out);
  return io_check(out, err);
}

/* A \\label key: letters, digits and '-', ':' kept, the rest '-'. */
static void tex_label(FILE *out, const char *s) {
  for (; *s; s++)
    fputc(((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
           *s == ':' || *s == '-')
              ? *s
              : '-',
          out);
}

/* A column header; one of more than 10 characters with a space goes on two
 * lines, split at the space nearest its middle, as headers are often wider
 * than the numbers under them ("Perplexity (ref)"). */
static void tex_header(FILE *out, const char *s) {
  size_t n = strlen(s), cut = 0;
  for (size_t i = 1; n > 10 && i + 1 < n; i++)
    if (s[i] == ' ' && (!cut || labs((long)(2 * i) - (long)n) < labs((long)(2 * cut) - (long)n)))
      cut = i;
  if (!cut) {
    tex_escape(out, s);
    return;
  }
  char *a = strndup(s, cut);
  if (!a) {
    tex_escape(out, s);
    return;
  }
  fputs("\\begin{tabular}[b]{@{}c@{}}", out);
  tex_escape(out, a);
  fputs("\\\\", out);
  tex_escape(out, s + cut + 1);
  fputs("\\end{tabular}", out);
  free(a);
}

int rep_table_latex(const rep_table *t, FILE *out, dfpo_err *err) {
  int seeds = common_n(t), ncol = seeds < 0;
  const char *env = t->wide ? "table*" : "table",
             *width = t->wide ? "\\textwidth" : "\\columnwidth";
  fprintf(out,
          "%% dfpo report: needs \\usepackage{booktabs} and \\usepackage{graphicx}\n"
          "\\begin{%s}[t]\n\\centering\n\\caption{",
          env);
  if (t->title) {
    tex_escape(out, t->title);
    fputs(". ", out);
  }
  char buf[1024];
  legend_text(t, buf, sizeof buf);
  tex_escape(out, buf);
  fputs("}\n", out);
  if (t->label) {
    fputs("\\label{", out);
    tex_label(out, t->label);
    fputs("}\n", out);
  }
  /* shrunk to the column only when wider than it */
  fprintf(out,
          "\\small\n\\setlength{\\tabcolsep}{2.5pt}\n"
          "\\resizebox{\\ifdim\\width>%s%s\\else\\width\\fi}{!}{%%\n"
          "\\begin{tabular}{@{}l",
          width, width);
  for (int c = 0; c < t->n_cols; c++)
    fputc('c', out);
  fputs(ncol ? "r@{}}\n\\toprule\n" : "@{}}\n\\toprule\n", out);
  for (int c = 0; c < t->n_cols; c++) {
    fputs(" & ", out);
    tex_header(out, t->col_names[c]);
  }
  fputs(ncol ? " & $n$ \\\\\n\\midrule\n" : " \\\\\n\\midrule\n", out);
  for (int r = 0; r < t->n_rows; r++) {
    tex_escape(out, t->row_names[r]);
    for (int c = 0; c < t->n_cols; c++) {
      char cb[200];
      format_cell(t, r, c, best_row(t, c) == r, FMT_TEX, cb, sizeof cb);
      fprintf(out, " & %s", cb);
    }
    if (ncol) {
      char n[32];
      row_n(t, r, n, sizeof n);
      fprintf(out, " & %s", n);
    }
    fputs(" \\\\\n", out);
  }
  fprintf(out, "\\bottomrule\n\\end{tabular}}\n\\end{%s}\n", env);
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

static const char *row_key(const rep_table *t, int r) {
  return t->row_keys ? t->row_keys[r] : t->row_names[r];
}
static const char *col_key(const rep_table *t, int c) {
  return t->col_keys ? t->col_keys[c] : t->col_names[c];
}

int rep_table_csv(const rep_table *t, FILE *out, dfpo_err *err) {
  fputs("task,variant,algo,metric,n,mean,sd,p_value,best,significant\n", out);
  for (int r = 0; r < t->n_rows; r++)
    for (int c = 0; c < t->n_cols; c++) {
      const rep_cell *x = cell(t, r, c);
      csv_field(out, t->task ? t->task : "");
      fputc(',', out);
      csv_field(out, row_key(t, r));
      fputc(',', out);
      csv_field(out, t->row_groups ? t->row_groups[r] : "");
      fputc(',', out);
      csv_field(out, col_key(t, c));
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
  if (t->task)
    cJSON_AddStringToObject(root, "task", t->task);
  if (t->ref_row >= 0)
    cJSON_AddStringToObject(root, "reference", row_key(t, t->ref_row));
  cJSON_AddNumberToObject(root, "alpha", t->alpha);
  cJSON *rows = cJSON_AddArrayToObject(root, "rows");
  for (int r = 0; r < t->n_rows; r++) {
    cJSON *row = cJSON_CreateObject();
    cJSON_AddItemToArray(rows, row);
    cJSON_AddStringToObject(row, "variant", row_key(t, r));
    if (t->row_groups)
      cJSON_AddStringToObject(row, "algo", t->row_groups[r]);
    cJSON_AddStringToObject(row, "name", t->row_names[r]);
    cJSON *cols = cJSON_AddObjectToObject(row, "metrics");
    for (int c = 0; c < t->n_cols; c++) {
      const rep_cell *x = cell(t, r, c);
      cJSON *o = cJSON_CreateObject();
      cJSON_AddItemToObject(cols, col_key(t, c), o);
      cJSON_AddStringToObject(o, "name", t->col_names[c]);
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
