/* dfpo report: the tables and plots of a suite folder (docs/suites.md). */
#include "harness/algo.h"
#include "harness/cli.h"
#include "harness/suite.h"
#include "harness/task.h"
#include "metrics/metrics.h"
#include "reports/reports.h"

#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char report_usage[] =
    "Usage: dfpo report DIR [--no-plots]\n"
    "\n"
    "Reads the suite folder DIR (DIR/suite.json and DIR/<task>/<algo>/seed-<n>/,\n"
    "as `dfpo reproduce` writes them; without suite.json the finished cells\n"
    "found) and writes DIR/report/:\n"
    "  <task>.md .tex .csv .json  a table per task: rows the algorithms, columns\n"
    "                             the test metrics, mean +- sd over seeds and n;\n"
    "                             the best mean of each column in bold; a dagger\n"
    "                             where Welch's t-test against dfpo gives p < 0.05;\n"
    "                             under it the deviations from the paper and the\n"
    "                             cells that are missing, with the reason\n"
    "  <task>-val_reward.png, <task>-val_nll_word.png, <task>-val_ppl_ref.png,\n"
    "  <task>-reward.png          learning curves (mean and 95%% t band over seeds)\n"
    "                             of what train.jsonl holds\n"
    "  <task>-frontier.png        reward against NLL per word (ppl_ref where the\n"
    "                             task has no NLL): the PPO variants (fixed beta\n"
    "                             sweep as a line) and DfPO's point\n"
    "  report.md                  all of it on one page\n"
    "  results.json               every seed's values (a baseline for dfpo check)\n"
    "Prints the path of report.md.\n"
    "\n"
    "A cell is read only when its files are the ones its DONE lists (sizes and\n"
    "SHA-256); one that differs is listed as missing, with the difference. A\n"
    "read cell's train.jsonl (one whole JSON object per iteration, in order)\n"
    "and eval.json (finite numbers) must be well-formed: a NUL byte, a cut or\n"
    "garbled line, or a number that is not finite is an error naming the file\n"
    "and line (exit 2).\n"
    "\n"
    "Options:\n"
    "  --no-plots   tables only\n"
    "  -h, --help   show this help\n";

#define ALPHA 0.05

/* A column's or a curve's label: the learning curves' own, else the
 * metric's from the task registry and the metrics library's table. */
static const char *label(const char *metric) {
  static const struct {
    const char *key, *text;
  } curves[] = {{"val_reward", "Validation reward"},
                {"val_nll_word", "Validation NLL per word (true language)"},
                {"val_ppl_ref", "Validation ppl_ref"},
                {"kl_seq", "KL(pi || ref) per sequence"}};
  for (size_t i = 0; i < sizeof curves / sizeof curves[0]; i++)
    if (!strcmp(metric, curves[i].key))
      return curves[i].text;
  return res_metric_label(metric);
}

/* The row of DfPO: the variant named dfpo, else the first with algo dfpo. */
static int ref_row(const res_task *t) {
  int i = res_variant_index(t, alg_name(ALG_DFPO));
  for (int v = 0; i < 0 && v < t->n_variants; v++)
    if (!strcmp(t->variants[v].algo, alg_name(ALG_DFPO)))
      i = v;
  return i;
}

typedef struct notes {
  char *line[64];
  int n;
} notes;

static void note(notes *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(notes *n, const char *fmt, ...) {
  if (n->n == 64)
    return;
  char buf[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  n->line[n->n] = strdup(buf);
  if (n->line[n->n])
    n->n++;
}

static cJSON *config_of(const res_suite *r) {
  return r->config_json ? cJSON_Parse(r->config_json) : NULL;
}

static double cfg_num(const cJSON *c, const char *a, const char *b) {
  const cJSON *x = cJSON_GetObjectItem(cJSON_GetObjectItem(c, a), b);
  return cJSON_IsNumber(x) ? x->valuedouble : NAN;
}

static void deviations(const res_suite *r, const res_task *t, const char *dir, notes *n) {
  cJSON *c = config_of(r);
  const task_def *d = task_find(t->name);
  if (d && d->report_note)
    note(n, "%s", d->report_note);
  if (d && !d->paper) {
    /* dir fits 4200 with "/suite.json" (res_collect) and a task name is under
     * 32 bytes, so the path fits */
    char path[4300];
    suite_fmt(path, sizeof path, "%s/base-%s.json", dir, t->name);
    dfpo_err e;
    cJSON *b;
    if (cfg_json_read(path, &b, &e) == DFPO_OK) {
      const cJSON *k = cJSON_GetObjectItem(b, "config");
      const cJSON *vl = cJSON_GetObjectItem(b, "val_loss_per_token");
      const cJSON *docs = cJSON_GetObjectItem(b, "corpus_documents");
      const cJSON *voc = cJSON_GetObjectItem(b, "vocab");
#define K(name) cJSON_GetNumberValue(cJSON_GetObjectItem(k, name))
      note(n,
           "Base model: a GPT-2 of %g layers, width %g, %g-token BPE, pretrained by the harness "
           "for %g steps on %g documents of the language (validation loss %.3f nats/token); the "
           "paper starts from GPT-2 124M.",
           K("model.n_layer"), K("model.n_embd"), cJSON_GetNumberValue(voc), K("pretrain.steps"),
           cJSON_GetNumberValue(docs), cJSON_IsNumber(vl) ? vl->valuedouble : NAN);
#undef K
      const cJSON *ref = cJSON_GetObjectItem(b, "reference_continuations");
      if (ref)
        note(n,
             "The language's own continuations of the same %g test prompts (the rest of each "
             "document) score: Reward %.3f, NLL/word %.3f, OOV rate %.3f.",
             cJSON_GetNumberValue(cJSON_GetObjectItem(ref, "prompts")),
             cJSON_GetNumberValue(cJSON_GetObjectItem(ref, "reward")),
             cJSON_GetNumberValue(cJSON_GetObjectItem(ref, "nll_word")),
             cJSON_GetNumberValue(cJSON_GetObjectItem(ref, "oov_rate")));
      cJSON_Delete(b);
    }
  } else {
    note(n, "GPT-2 policies on every task (the paper used T5 for some).");
    for (int k = 0; k < t->n_judges; k++)
      note(n, "Judge: %s.", t->judges[k]);
    /* results without eval.json's judges (a baseline) say what the
     * harness does by default */
    if (t->trained_judge || (!t->n_judges && d && d->judge))
      note(n, "Judges trained by the harness (the paper used external classifiers or APIs).");
    note(n, "Seeded splits made by the harness (Hugging Face shuffles cannot be replayed in C).");
  }
  const cJSON *rollout = cJSON_GetObjectItem(cJSON_GetObjectItem(c, "train"), "rollout");
  if (c && cJSON_IsString(rollout) && !strcmp(rollout->valuestring, "buffer"))
    note(n,
         "Budget: %g iterations, each a rollout buffer of %g x %g transitions (%g epochs, "
         "minibatches of %g transitions, lr %g), %g new tokens; model selection by validation "
         "reward every %g iterations.",
         cfg_num(c, "train", "iterations"), cfg_num(c, "train", "n_envs"),
         cfg_num(c, "train", "n_steps"), cfg_num(c, "train", "epochs"),
         cfg_num(c, "train", "minibatch_transitions"), cfg_num(c, "train", "lr"),
         cfg_num(c, "generation", "max_new_tokens"), cfg_num(c, "train", "eval_every"));
  else if (c)
    note(n,
         "Budget: %g iterations of %g rollouts (%g epochs, minibatch %g, lr %g), %g new tokens; "
         "model selection by validation reward every %g iterations.",
         cfg_num(c, "train", "iterations"), cfg_num(c, "train", "batch_size"),
         cfg_num(c, "train", "epochs"), cfg_num(c, "train", "minibatch"), cfg_num(c, "train", "lr"),
         cfg_num(c, "generation", "max_new_tokens"), cfg_num(c, "train", "eval_every"));
  /* the suite's own settings for this task (they override the budget
   * above) and the deviations it declares */
  const cJSON *sc = cJSON_GetObjectItem(c, "suite"), *x;
  cJSON_ArrayForEach(x, cJSON_GetObjectItem(sc, "task_settings")) {
    size_t len = cJSON_IsString(x) ? strcspn(x->valuestring, " /") : 0;
    if (len && (!strncmp(x->valuestring, "*", len) ||
                (strlen(t->name) == len && !strncmp(x->valuestring, t->name, len))))
      note(n, "Settings (suite.task_settings): %s", x->valuestring);
  }
  cJSON_ArrayForEach(x, cJSON_GetObjectItem(sc, "deviations")) {
    if (cJSON_IsString(x))
      note(n, "%s", x->valuestring);
  }
  note(n, "DfPO as docs/algorithms.md describes it (from the paper's abstract and published "
          "description; the full text was not available).");
  if (ref_row(t) >= 0)
    note(n, "Welch's t-test: two-sided, over seeds, no correction for multiple comparisons.");
  /* missing cells, the seeds that failed the same way together */
  int any = 0;
  for (int v = 0; v < t->n_variants; v++) {
    const res_variant *rv = &t->variants[v];
    int used[RES_MAX_SEEDS] = {0};
    for (int k = 0; k < rv->n_missing; k++) {
      if (used[k])
        continue;
      const char *why = strstr(rv->missing[k], ": ");
      why = why ? why + 2 : "";
      char seeds[512] = "";
      int count = 0;
      for (int j = k; j < rv->n_missing; j++) {
        const char *wj = strstr(rv->missing[j], ": ");
        if (used[j] || strcmp(wj ? wj + 2 : "", why))
          continue;
        used[j] = 1;
        long long sd;
        if (sscanf(rv->missing[j], "seed %lld", &sd) == 1) {
          size_t len = strlen(seeds);
          suite_fmt(seeds + len, sizeof seeds - len, "%s%lld", count ? ", " : "", sd);
        }
        count++;
      }
      note(n, "Missing: %s, seed%s %s: %s.", rv->name, count > 1 ? "s" : "", seeds, why);
      any = 1;
    }
  }
  if (any)
    note(n, "Each cell's log: logs/<task>-<variant>-seed-<n>.log in the suite folder.");
  cJSON_Delete(c);
}

typedef int (*writer)(const rep_table *, FILE *, dfpo_err *);

static int write_table(const rep_table *t, writer w, const char *path, dfpo_err *err) {
  dfpo_atomic a;
  int rc = dfpo_atomic_open(&a, path, err);
  if (rc)
    return rc;
  if ((rc = w(t, a.fp, err))) {
    dfpo_atomic_abort(&a);
    return rc;
  }
  return dfpo_atomic_commit(&a, err);
}

/* Mean and 95% t band over the seeds of curve kind k of a variant, by
 * position in train.jsonl (every seed logs the same iterations). */
static int curve_series(const res_variant *v, int k, double **x, double **y, double **lo,
                        double **hi) {
  int len = 0;
  for (int s = 0; s < v->n_done; s++)
    if (v->curves[s].n > len)
      len = v->curves[s].n;
  *x = malloc(sizeof(double) * (size_t)(len + 1));
  *y = malloc(sizeof(double) * (size_t)(len + 1));
  *lo = malloc(sizeof(double) * (size_t)(len + 1));
  *hi = malloc(sizeof(double) * (size_t)(len + 1));
  if (!*x || !*y || !*lo || !*hi)
    return 0;
  int n = 0;
  for (int i = 0; i < len; i++) {
    double vals[RES_MAX_SEEDS], xi = NAN;
    size_t m = 0;
    for (int s = 0; s < v->n_done; s++) {
      const res_curve *c = &v->curves[s];
      if (i < c->n && isfinite(c->y[k][i])) {
        vals[m++] = c->y[k][i];
        xi = c->x[i];
      }
    }
    if (!m)
      continue;
    met_summary sm;
    dfpo_err e;
    if (met_summarize(vals, m, 0.95, &sm, &e))
      continue;
    (*x)[n] = xi;
    (*y)[n] = sm.mean;
    (*lo)[n] = m > 1 ? sm.ci_lo : sm.mean;
    (*hi)[n] = m > 1 ? sm.ci_hi : sm.mean;
    n++;
  }
  return n;
}

static int plot_curves(const res_task *t, const char *outdir, int k, char *file, size_t nf,
                       dfpo_err *err) {
  rep_series *ser = calloc((size_t)t->n_variants + 1, sizeof *ser);
  double **bufs = calloc((size_t)t->n_variants * 4 + 1, sizeof *bufs);
  int ns = 0, rc = DFPO_OK;
  file[0] = '\0';
  if (!ser || !bufs) {
    free(ser);
    free(bufs);
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  }
  for (int v = 0; v < t->n_variants; v++) {
    double **b = &bufs[4 * v];
    int n = curve_series(&t->variants[v], k, &b[0], &b[1], &b[2], &b[3]);
    if (n < 2)
      continue;
    ser[ns++] = (rep_series){t->variants[v].name, n, b[0], b[1], b[2], b[3], 0};
  }
  if (ns) {
    char title[256];
    suite_fmt(title, sizeof title, "%s: %s (mean, 95%% band over seeds)", t->name,
              label(res_curve_names[k]));
    rep_plot p = {title, "iteration", label(res_curve_names[k]), ns, ser, 0, 0};
    char path[4300];
    suite_fmt(file, nf, "%s-%s.png", t->name, res_curve_names[k]);
    suite_fmt(path, sizeof path, "%s/%s", outdir, file);
    rc = rep_plot_write(&p, path, err);
  }
  for (int i = 0; i < t->n_variants * 4; i++)
    free(bufs[i]);
  free(bufs);
  free(ser);
  return rc;
}

typedef struct pt {
  double beta, x, y;
} pt;

static int by_beta(const void *a, const void *b) {
  double d = ((const pt *)a)->beta - ((const pt *)b)->beta;
  return d < 0 ? -1 : d > 0;
}

/* The frontier's x axis: NLL per word (the synthetic task) when the task
 * has it, else ppl_ref (the real tasks' perplexity). */
static int frontier_nll(const res_task *t) {
  return res_metric_index(t, "nll_word") >= 0;
}

/* Reward against the frontier's x metric: the PPO fixed-beta sweep as a
 * line; the adaptive PPO, DfPO, NLPO and the base model (zero-shot) as
 * points. */
static int plot_frontier(const res_task *t, const char *outdir, char *file, size_t nf,
                         dfpo_err *err) {
  int nll = frontier_nll(t), mr = res_metric_index(t, "reward"),
      mx = res_metric_index(t, nll ? "nll_word" : "ppl_ref");
  file[0] = '\0';
  if (mr < 0 || mx < 0)
    return DFPO_OK;
  int nv = t->n_variants;
  pt *sweep = calloc((size_t)nv + 1, sizeof *sweep);
  double *px = calloc((size_t)nv * 4 + 4, sizeof *px), *py = calloc((size_t)nv * 4 + 4, sizeof *py);
  rep_series ser[5];
  int ns = 0, nsw = 0, rc = DFPO_OK;
  if (!sweep || !px || !py) {
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    goto out;
  }
  const char *groups[4] = {"PPO, adaptive KL", "DfPO", "NLPO", "base (zero-shot)"};
  int off = 0;
  for (int v = 0; v < nv; v++) {
    const res_variant *rv = &t->variants[v];
    double a[RES_MAX_SEEDS], b[RES_MAX_SEEDS];
    int n1 = res_values(rv, mr, a), n2 = res_values(rv, mx, b);
    if (!n1 || !n2 || strcmp(rv->algo, alg_name(ALG_PPO)) != 0 || !rv->kl_fixed)
      continue;
    met_summary s1, s2;
    met_summarize(a, (size_t)n1, 0.95, &s1, err);
    met_summarize(b, (size_t)n2, 0.95, &s2, err);
    sweep[nsw++] = (pt){rv->beta, s2.mean, s1.mean};
  }
  qsort(sweep, (size_t)nsw, sizeof *sweep, by_beta);
  if (nsw) {
    for (int i = 0; i < nsw; i++) {
      px[i] = sweep[i].x;
      py[i] = sweep[i].y;
    }
    ser[ns++] = (rep_series){"PPO, fixed beta", nsw, px, py, NULL, NULL, nsw == 1};
    off = nsw;
  }
  for (int g = 0; g < 4; g++) {
    int n = 0;
    for (int v = 0; v < nv; v++) {
      const res_variant *rv = &t->variants[v];
      static const alg_id algo_of[4] = {ALG_PPO, ALG_DFPO, ALG_NLPO, ALG_ZERO_SHOT};
      int want = !strcmp(rv->algo, alg_name(algo_of[g])) && (g != 0 || !rv->kl_fixed);
      double a[RES_MAX_SEEDS], b[RES_MAX_SEEDS];
      int n1 = res_values(rv, mr, a), n2 = res_values(rv, mx, b);
      if (!want || !n1 || !n2)
        continue;
      met_summary s1, s2;
      met_summarize(a, (size_t)n1, 0.95, &s1, err);
      met_summarize(b, (size_t)n2, 0.95, &s2, err);
      px[off + n] = s2.mean;
      py[off + n] = s1.mean;
      n++;
    }
    if (n)
      ser[ns++] = (rep_series){groups[g], n, px + off, py + off, NULL, NULL, 1};
    off += n;
  }
  if (ns) {
    char title[256], path[4300];
    suite_fmt(title, sizeof title, "%s: reward against %s (means over seeds)", t->name,
              nll ? "NLL per word" : "ppl_ref");
    rep_plot p = {title,
                  nll ? "NLL per word under the true language (lower: more fluent)"
                      : "ppl_ref: perplexity of the reference texts (lower: closer to them)",
                  "reward (test)",
                  ns,
                  ser,
                  0,
                  0};
    suite_fmt(file, nf, "%s-frontier.png", t->name);
    suite_fmt(path, sizeof path, "%s/%s", outdir, file);
    rc = rep_plot_write(&p, path, err);
  }
out:
  free(sweep);
  free(px);
  free(py);
  return rc;
}

static int task_report(const res_suite *r, const res_task *t, const char *dir, const char *outdir,
                       int plots, FILE *page, dfpo_err *err) {
  int nr = t->n_variants, nc = t->n_metrics, ref = ref_row(t), rc = DFPO_OK;
  rep_cell *cells = calloc((size_t)(nr * nc) + 1, sizeof *cells);
  const char **rows = calloc((size_t)nr + 1, sizeof *rows);
  const char **cols = calloc((size_t)nc + 1, sizeof *cols);
  rep_best *best = calloc((size_t)nc + 1, sizeof *best);
  int *digits = calloc((size_t)nc + 1, sizeof *digits);
  notes n = {0};
  if (!cells || !rows || !cols || !best || !digits) {
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    goto out;
  }
  for (int j = 0; j < nc; j++) {
    cols[j] = label(t->metrics[j]);
    best[j] = (rep_best)res_metric_direction(t->metrics[j]);
    digits[j] = 3;
  }
  for (int i = 0; i < nr; i++) {
    const res_variant *v = &t->variants[i];
    rows[i] = v->name;
    for (int j = 0; j < nc; j++) {
      rep_cell *c = &cells[i * nc + j];
      double a[RES_MAX_SEEDS], b[RES_MAX_SEEDS];
      int na = res_values(v, j, a);
      c->n = na;
      c->mean = c->sd = c->p_value = NAN;
      if (!na)
        continue;
      met_summary s;
      if ((rc = met_summarize(a, (size_t)na, 0.95, &s, err)))
        goto out;
      c->mean = s.mean;
      c->sd = s.sd;
      int nb = ref >= 0 && ref != i ? res_values(&t->variants[ref], j, b) : 0;
      met_welch w;
      dfpo_err e;
      if (na >= 2 && nb >= 2 && met_welch_test(a, (size_t)na, b, (size_t)nb, &w, &e) == DFPO_OK)
        c->p_value = w.p;
    }
  }
  deviations(r, t, dir, &n);
  char title[256];
  suite_fmt(title, sizeof title,
            "%s: suite %s, test metrics of the checkpoint with the best "
            "validation reward",
            t->name, r->name);
  rep_table tab = {
      title, nr, nc, rows, cols, best, digits, cells, ref, ALPHA, (const char *const *)n.line, n.n};
  static const struct {
    const char *ext;
    writer w;
  } outs[] = {{"md", rep_table_markdown},
              {"tex", rep_table_latex},
              {"csv", rep_table_csv},
              {"json", rep_table_json}};
  for (size_t k = 0; k < 4; k++) {
    char path[4300];
    suite_fmt(path, sizeof path, "%s/%s.%s", outdir, t->name, outs[k].ext);
    if ((rc = write_table(&tab, outs[k].w, path, err)))
      goto out;
  }
  fprintf(page, "\n");
  if ((rc = rep_table_markdown(&tab, page, err)))
    goto out;
  if (plots) {
    static const int kinds[] = {1, 2, 4, 0};
    char file[512];
    fprintf(page, "\n");
    for (int k = 0; k < 4; k++) {
      if ((rc = plot_curves(t, outdir, kinds[k], file, sizeof file, err)))
        goto out;
      if (file[0])
        fprintf(page, "![%s](%s)\n", label(res_curve_names[kinds[k]]), file);
    }
    if ((rc = plot_frontier(t, outdir, file, sizeof file, err)))
      goto out;
    if (file[0])
      fprintf(page, "![reward against %s](%s)\n", frontier_nll(t) ? "NLL per word" : "ppl_ref",
              file);
  }
out:
  for (int i = 0; i < n.n; i++)
    free(n.line[i]);
  free(cells);
  free(rows);
  free(cols);
  free(best);
  free(digits);
  return rc;
}

int res_report(const char *dir, int plots, dfpo_err *err) {
  res_suite r;
  int rc = res_collect(&r, dir, plots, err);
  if (rc)
    return rc;
  /* the files in it add at most a task name (31 bytes) and a suffix to outdir
   * and so fit their buffers of 4300 */
  char outdir[4200], path[4300];
  if ((rc = dfpo_path_fmt(outdir, sizeof outdir, err, "%s/report", dir)) ||
      (rc = dfpo_mkdirs(outdir, err))) {
    res_free(&r);
    return rc;
  }
  suite_fmt(path, sizeof path, "%s/report.md", outdir);
  dfpo_atomic page;
  if ((rc = dfpo_atomic_open(&page, path, err))) {
    res_free(&r);
    return rc;
  }
  int cells = 0, done = 0;
  for (int t = 0; t < r.n_tasks; t++)
    for (int v = 0; v < r.tasks[t].n_variants; v++) {
      done += r.tasks[t].variants[v].n_done;
      cells += r.tasks[t].variants[v].n_done + r.tasks[t].variants[v].n_missing;
    }
  fprintf(page.fp,
          "# Suite %s\n\n%d of %d cells finished. Made by `dfpo report` from the run folders "
          "beside this folder; every table is also here as LaTeX, CSV and JSON, and every "
          "seed's values are in results.json.\n",
          r.name, done, cells);
  for (int t = 0; !rc && t < r.n_tasks; t++)
    rc = task_report(&r, &r.tasks[t], dir, outdir, plots, page.fp, err);
  if (rc) {
    dfpo_atomic_abort(&page);
    res_free(&r);
    return rc;
  }
  if ((rc = dfpo_atomic_commit(&page, err))) {
    res_free(&r);
    return rc;
  }
  char json[4300];
  suite_fmt(json, sizeof json, "%s/results.json", outdir);
  rc = res_write_json(&r, json, err);
  res_free(&r);
  if (!rc)
    printf("%s\n", path);
  return rc;
}

int cmd_report(int argc, char **argv) {
  static const struct option opts[] = {
      {"no-plots", no_argument, NULL, 'P'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
  int c, plots = 1;
  cli_reset_getopt();
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    switch (c) {
    case 'P':
      plots = 0;
      break;
    case 'h':
      fputs(report_usage, stdout);
      return DFPO_OK;
    default:
      return cli_bad_option("report", argc, argv, c);
    }
  }
  if (optind != argc - 1)
    return cli_usage_error("report", "needs exactly one suite folder DIR");
  dfpo_err err;
  dfpo_err_clear(&err);
  int rc = res_report(argv[optind], plots, &err);
  return rc ? cli_fail(&err) : DFPO_OK;
}
