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
    "Usage: dfpo report DIR [--no-plots] [--wide]\n"
    "\n"
    "Reads the suite folder DIR (DIR/suite.json and DIR/<task>/<algo>/seed-<n>/,\n"
    "as `dfpo reproduce` writes them; without suite.json the finished cells\n"
    "found) and writes DIR/report/:\n"
    "  <task>.md .tex .csv .json  a table per task: rows the algorithms, columns\n"
    "                             the test metrics (display names: \"PPO (beta 0)\",\n"
    "                             \"Perplexity (ref)\"), mean +- sd over seeds; the\n"
    "                             best mean of each column in bold; a dagger where\n"
    "                             Welch's t-test against dfpo gives p < 0.05; an\n"
    "                             em dash for an sd that rounds to zero. LaTeX:\n"
    "                             booktabs, caption and \\label{tab:<suite>-<task>},\n"
    "                             shrunk to \\columnwidth only when wider (needs\n"
    "                             booktabs and graphicx). CSV: one row per cell in\n"
    "                             results.json's keys (task, variant, algo, metric).\n"
    "                             Under the table the deviations from the paper,\n"
    "                             the memory switches cells used (\"Memory:\" LoRA\n"
    "                             rank, value head on the policy's trunk,\n"
    "                             activation checkpointing, reference in bf16 or\n"
    "                             f16; eval.json's memory)\n"
    "                             and the missing cells, with the reason\n"
    "  <task>-val_reward, <task>-val_nll_word, <task>-val_ppl_ref,\n"
    "  <task>-reward (.png .svg .pdf)\n"
    "                             learning curves from train.jsonl: mean over\n"
    "                             seeds and a 95% t band on the logit scale for\n"
    "                             rewards, the log scale (and a log axis) for\n"
    "                             perplexities; SFT left out (it trains by\n"
    "                             epochs), as the legend says\n"
    "  <task>-frontier (.png .svg .pdf)\n"
    "                             test reward against NLL per word (ppl_ref on a\n"
    "                             log axis where the task has no NLL): every\n"
    "                             variant a point with 95% error bars both ways,\n"
    "                             PPO's fixed betas labelled and joined\n"
    "  report.md                  all of it on one page\n"
    "  results.json               every seed's values (a baseline for dfpo check)\n"
    "Every algorithm has one colour and marker in every figure. Prints the\n"
    "path of report.md. Exit 2 when DIR holds no cell at all.\n"
    "\n"
    "Cells under way (a run folder with train.jsonl and no DONE: a cell of\n"
    "dfpo reproduce in DIR/.staging/, or a folder dfpo train is writing) are\n"
    "shown as far as they got: the row marked (running) while a process holds\n"
    "the run folder's lock, else (stopped); \"running, iteration k of n\" in\n"
    "the notes and in results.json's missing list; the curve so far in short\n"
    "dashes.\n"
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
    "  --wide       LaTeX tables as table* (both columns, \\textwidth)\n"
    "  -h, --help   show this help\n";

#define ALPHA 0.05

/* The display names of figures and tables, in one place: a learning
 * curve's own, else the metric's from the task registry and the metrics
 * library's table (res_metric_label). */
__attribute__((noinline)) static const char *label(const char *metric) { /* as scale_of */
  static const struct {
    const char *key, *text;
  } curves[] = {{"val_reward", "Validation reward"},
                {"val_nll_word", "Validation NLL/word"},
                {"val_ppl_ref", "Validation perplexity (ref)"},
                {"kl_seq", "KL(π || ref) per sequence"}};
  for (size_t i = 0; i < sizeof curves / sizeof curves[0]; i++)
    if (!strcmp(metric, curves[i].key))
      return curves[i].text;
  return res_metric_label(metric);
}

/* A task's name in captions and titles. */
static const char *task_display(const char *name) {
  static const char *const names[][2] = {{"synthetic", "Synthetic language"},
                                         {"imdb", "IMDB"},
                                         {"rtp", "RealToxicityPrompts"},
                                         {"commongen", "CommonGen"}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (!strcmp(name, names[i][0]))
      return names[i][1];
  return name;
}

/* A variant's display name: its algorithm's ("PPO"); a PPO with a fixed
 * beta "PPO (β = 0.05)"; another variant of an algorithm the rest of its
 * name in brackets, '-' as ", " (dfpo-clip-ep5: "DfPO (clip, ep5)"); any
 * other name as it is. */
static void variant_display(const res_variant *v, char *buf, size_t n) {
  alg_id a;
  if (alg_parse(v->algo, &a) != 0) {
    suite_fmt(buf, n, "%s", v->name);
    return;
  }
  size_t la = strlen(v->algo);
  if (!strcmp(v->name, v->algo))
    suite_fmt(buf, n, "%s", alg_display(a));
  else if (a == ALG_PPO && v->kl_fixed && isfinite(v->beta))
    suite_fmt(buf, n, "%s (β = %g)", alg_display(a), v->beta);
  else if (!strncmp(v->name, v->algo, la) && v->name[la] == '-' && v->name[la + 1]) {
    char rest[64];
    size_t o = 0;
    for (const char *c = v->name + la + 1; *c && o + 3 < sizeof rest; c++) {
      if (*c == '-') {
        rest[o++] = ',';
        rest[o++] = ' ';
      } else {
        rest[o++] = *c;
      }
    }
    rest[o] = '\0';
    suite_fmt(buf, n, "%s (%s)", alg_display(a), rest);
  } else {
    suite_fmt(buf, n, "%s", v->name);
  }
}

/* The scale a metric's bands and error bars are computed on: logit for
 * what lies in [0, 1] (every task's reward is a probability or a score in
 * [0, 1], as are the rates), log for perplexities, else linear. */
/* Not inlined: with a key known at the call, GCC 12's -O3 flags the
 * comparisons with the longer names as always unequal (-Wstring-compare),
 * which they are, and which is the point of the loop. */
__attribute__((noinline)) static rep_scale scale_of(const char *metric) {
  static const char *const unit[] = {"reward",
                                     "val_reward",
                                     "sentiment",
                                     "toxicity",
                                     "expected_max_toxicity",
                                     "toxicity_probability",
                                     "oov_rate",
                                     "coverage",
                                     "meteor"};
  static const char *const positive[] = {"ppl_ref", "ppl_gen", "val_ppl_ref"};
  for (size_t i = 0; i < sizeof unit / sizeof unit[0]; i++)
    if (!strcmp(metric, unit[i]))
      return REP_SCALE_LOGIT;
  for (size_t i = 0; i < sizeof positive / sizeof positive[0]; i++)
    if (!strcmp(metric, positive[i]))
      return REP_SCALE_LOG;
  return REP_SCALE_LINEAR;
}

/* The style of variant v of a task, the same in every figure of the
 * report: an algorithm's own for the variant named after it, else its
 * algorithm's marker with the k-th variant colour, k counting the task's
 * other variants in suite order. */
static rep_style variant_style(const res_task *t, int v) {
  const res_variant *rv = &t->variants[v];
  if (!strcmp(rv->name, rv->algo))
    return rep_style_of(rv->algo);
  int k = 0;
  for (int i = 0; i < v; i++)
    k += strcmp(t->variants[i].name, t->variants[i].algo) != 0;
  return rep_style_variant(rv->algo, k);
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
  /* the suite's record of the task's base (absent for a baseline): dir fits
   * 4200 with "/suite.json" (res_collect) and a task name is under 32
   * bytes, so the path fits */
  char path[4300];
  suite_fmt(path, sizeof path, "%s/base-%s.json", dir, t->name);
  dfpo_err e;
  cJSON *b = NULL;
  if (cfg_json_read(path, &b, &e) != DFPO_OK)
    b = NULL;
  if (d && !d->paper) {
    if (b) {
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
    }
  } else {
    /* the policy's architecture, as the base record names it: RL4LMs and
     * the paper fine-tune T5 on CommonGen */
    const cJSON *a = cJSON_GetObjectItem(b, "arch");
    if (!strcmp(t->name, "commongen") && cJSON_IsString(a) && strcmp(a->valuestring, "t5"))
      note(n, "Policy: a %s, not T5 as RL4LMs and the paper fine-tune on CommonGen.",
           a->valuestring);
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
  /* the memory switches the cells used (docs/memory.md), when any did */
  char mem[1024] = "";
  size_t ml = 0;
  for (int v = 0; v < t->n_variants && ml < sizeof mem; v++)
    if (t->variants[v].memory[0])
      ml += (size_t)snprintf(mem + ml, sizeof mem - ml, "%s%s: %s", ml ? "; " : "",
                             t->variants[v].name, t->variants[v].memory);
  if (ml)
    note(n, "Memory: %s.", mem);
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
      /* a cell under way (suite.c's read_partial) is not missing for good */
      int partial = !strncmp(why, "running", 7) || !strncmp(why, "stopped", 7);
      note(n, "%s: %s, seed%s %s: %s.", partial ? "Under way" : "Missing", rv->name,
           count > 1 ? "s" : "", seeds, why);
      any = 1;
    }
  }
  if (any)
    note(n, "Each cell's log: logs/<task>-<variant>-seed-<n>.log in the suite folder.");
  cJSON_Delete(c);
  cJSON_Delete(b);
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

/* Writes a figure as STEM.png, .svg and .pdf in outdir; file gets
 * "STEM.png". */
static int write_figure(const rep_plot *p, const char *outdir, const char *stem, char *file,
                        size_t nf, dfpo_err *err) {
  static const char *const ext[] = {"png", "svg", "pdf"};
  for (int i = 0; i < 3; i++) {
    char path[4300];
    int rc;
    if ((rc = dfpo_path_fmt(path, sizeof path, err, "%s/%s.%s", outdir, stem, ext[i])) ||
        (rc = rep_plot_write(p, path, err)))
      return rc;
  }
  suite_fmt(file, nf, "%s.png", stem);
  return DFPO_OK;
}

/* The mean and 95% t band over the seeds' curves (kind k), by position in
 * train.jsonl (every seed logs the same iterations), the band on the
 * curve's scale (scale_of); where one seed has a point, that point. */
static int curve_series(const res_curve *curves, int n_curves, int k, double **x, double **y,
                        double **lo, double **hi) {
  int len = 0;
  for (int s = 0; s < n_curves; s++)
    if (curves[s].n > len)
      len = curves[s].n;
  *x = malloc(sizeof(double) * (size_t)(len + 1));
  *y = malloc(sizeof(double) * (size_t)(len + 1));
  *lo = malloc(sizeof(double) * (size_t)(len + 1));
  *hi = malloc(sizeof(double) * (size_t)(len + 1));
  if (!*x || !*y || !*lo || !*hi)
    return 0;
  rep_scale sc = scale_of(res_curve_names[k]);
  int n = 0;
  for (int i = 0; i < len; i++) {
    double vals[RES_MAX_SEEDS], xi = NAN;
    size_t m = 0;
    for (int s = 0; s < n_curves; s++) {
      const res_curve *c = &curves[s];
      if (i < c->n && isfinite(c->y[k][i])) {
        vals[m++] = c->y[k][i];
        xi = c->x[i];
      }
    }
    dfpo_err e;
    if (!m || rep_band(vals, m, 0.95, sc, &(*y)[n], &(*lo)[n], &(*hi)[n], &e))
      continue;
    (*x)[n] = xi;
    n++;
  }
  return n;
}

static const char *const scale_words[] = {"", ", band on the logit scale",
                                          ", band on the log scale"};

/* A learning curve's axis label: "reward" there is the training rollouts'
 * (the table's Reward is the test set's). */
static const char *curve_label(int k) {
  return !strcmp(res_curve_names[k], "reward") ? "Rollout reward (training)"
                                               : label(res_curve_names[k]);
}

/* A legend's words for a variant's cells under way, the iterations they
 * logged: "running, 31 of 48" for one, "2 running, 12-31 of 48" for more
 * ("stopped" when no process holds any of them). */
static void partial_words(const res_variant *v, char *buf, size_t n) {
  int live = 0;
  int64_t lo = INT64_MAX, hi = 0, of = 0;
  for (int s = 0; s < v->n_partial; s++) {
    live += v->partial_live[s];
    lo = v->partial_done[s] < lo ? v->partial_done[s] : lo;
    hi = v->partial_done[s] > hi ? v->partial_done[s] : hi;
    of = v->partial_of[s] > of ? v->partial_of[s] : of;
  }
  char ofs[32] = "", its[64];
  if (of > 0)
    suite_fmt(ofs, sizeof ofs, " of %lld", (long long)of);
  if (lo == hi)
    suite_fmt(its, sizeof its, "%lld", (long long)hi);
  else
    suite_fmt(its, sizeof its, "%lld-%lld", (long long)lo, (long long)hi);
  const char *what = live ? "running" : "stopped";
  if (v->n_partial == 1)
    suite_fmt(buf, n, "%s, %s%s", what, its, ofs);
  else
    suite_fmt(buf, n, "%d %s, %s%s", v->n_partial, what, its, ofs);
}

static int plot_curves(const res_task *t, const char *outdir, int k, char *file, size_t nf,
                       dfpo_err *err) {
  /* per variant: its finished seeds' series and its cells under way */
  rep_series *ser = calloc((size_t)t->n_variants * 2 + 1, sizeof *ser);
  double **bufs = calloc((size_t)t->n_variants * 8 + 1, sizeof *bufs);
  char(*names)[160] = calloc((size_t)t->n_variants * 2 + 1, sizeof *names);
  int ns = 0, rc = DFPO_OK, sft = 0;
  file[0] = '\0';
  if (!ser || !bufs || !names) {
    free(ser);
    free(bufs);
    free(names);
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  }
  for (int v = 0; v < t->n_variants; v++) {
    const res_variant *rv = &t->variants[v];
    /* SFT's train.jsonl counts epochs: it has no place on an axis of RL
     * iterations */
    if (!strcmp(rv->algo, alg_name(ALG_SFT))) {
      sft = 1;
      continue;
    }
    double **b = &bufs[8 * v];
    int n = curve_series(rv->curves, rv->n_done, k, &b[0], &b[1], &b[2], &b[3]);
    if (n >= 2) {
      variant_display(rv, names[2 * v], sizeof names[2 * v]);
      ser[ns] =
          (rep_series){.label = names[2 * v], .n = n, .x = b[0], .y = b[1], .lo = b[2], .hi = b[3]};
      ser[ns++].style = variant_style(t, v);
    }
    /* its cells under way: their mean so far, in short dashes */
    n = rv->n_partial
            ? curve_series(rv->partial_curves, rv->n_partial, k, &b[4], &b[5], &b[6], &b[7])
            : 0;
    if (n >= 2) {
      char shown[96], words[64];
      variant_display(rv, shown, sizeof shown);
      partial_words(rv, words, sizeof words);
      suite_fmt(names[2 * v + 1], sizeof names[0], "%s (%s)", shown, words);
      ser[ns] = (rep_series){.label = names[2 * v + 1],
                             .n = n,
                             .x = b[4],
                             .y = b[5],
                             .lo = rv->n_partial > 1 ? b[6] : NULL,
                             .hi = rv->n_partial > 1 ? b[7] : NULL};
      ser[ns].style = variant_style(t, v);
      ser[ns++].style.dashed = REP_LINE_UNDER_WAY;
    }
  }
  if (ns) {
    char title[256], stem[128];
    rep_scale sc = scale_of(res_curve_names[k]);
    suite_fmt(title, sizeof title, "%s: %s (mean over seeds, 95%% CI%s)", task_display(t->name),
              curve_label(k), scale_words[sc]);
    rep_plot p = {.title = title,
                  .xlabel = "RL iteration",
                  .ylabel = curve_label(k),
                  .n_series = ns,
                  .series = ser};
    p.ylog = sc == REP_SCALE_LOG;
    p.note = sft ? "SFT not shown: it trains by epochs, not RL iterations (its test values are "
                   "in the table)."
                 : NULL;
    suite_fmt(stem, sizeof stem, "%s-%s", t->name, res_curve_names[k]);
    rc = write_figure(&p, outdir, stem, file, nf, err);
  }
  for (int i = 0; i < t->n_variants * 8; i++)
    free(bufs[i]);
  free(bufs);
  free(ser);
  free(names);
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

/* Reward against the frontier's x metric: every variant a point in its own
 * style with 95% error bars in both directions (each on its metric's
 * scale); the PPO variants with a fixed beta carry their beta and are
 * joined by a thin line in beta order (the sweep). */
static int plot_frontier(const res_task *t, const char *outdir, char *file, size_t nf,
                         dfpo_err *err) {
  int nll = frontier_nll(t), mr = res_metric_index(t, "reward");
  const char *xkey = nll ? "nll_word" : "ppl_ref";
  int mx = res_metric_index(t, xkey);
  file[0] = '\0';
  if (mr < 0 || mx < 0)
    return DFPO_OK;
  int nv = t->n_variants, ns = 0, nsw = 0, rc = DFPO_OK;
  /* per variant: x, y, xlo, xhi, ylo, yhi */
  double *v6 = calloc((size_t)nv * 6 + 6, sizeof *v6);
  rep_series *ser = calloc((size_t)nv + 2, sizeof *ser);
  char(*names)[96] = calloc((size_t)nv + 1, sizeof *names);
  char(*tags)[32] = calloc((size_t)nv + 1, sizeof *tags);
  const char **tagp = calloc((size_t)nv + 1, sizeof *tagp);
  pt *sweep = calloc((size_t)nv + 1, sizeof *sweep);
  double *sx = calloc((size_t)nv + 1, sizeof *sx), *sy = calloc((size_t)nv + 1, sizeof *sy);
  if (!v6 || !ser || !names || !tags || !tagp || !sweep || !sx || !sy) {
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    goto out;
  }
  for (int v = 0; v < nv; v++) {
    const res_variant *rv = &t->variants[v];
    double a[RES_MAX_SEEDS], b[RES_MAX_SEEDS];
    int n1 = res_values(rv, mr, a), n2 = res_values(rv, mx, b);
    double *q = v6 + 6 * v, ym, xm;
    dfpo_err e;
    if (!n1 || !n2 ||
        rep_band(b, (size_t)n2, 0.95, scale_of(xkey), &xm, &q[2], &q[3], &e) != DFPO_OK ||
        rep_band(a, (size_t)n1, 0.95, scale_of("reward"), &ym, &q[4], &q[5], &e) != DFPO_OK)
      continue;
    q[0] = xm;
    q[1] = ym;
    variant_display(rv, names[v], sizeof names[v]);
    int fixed = !strcmp(rv->algo, alg_name(ALG_PPO)) && rv->kl_fixed && isfinite(rv->beta);
    if (fixed) {
      suite_fmt(tags[v], sizeof tags[v], "β = %g", rv->beta);
      tagp[v] = tags[v];
      sweep[nsw++] = (pt){rv->beta, xm, ym};
    }
    ser[ns] = (rep_series){.label = names[v],
                           .n = 1,
                           .x = &q[0],
                           .y = &q[1],
                           .lo = &q[4],
                           .hi = &q[5],
                           .points_only = 1};
    ser[ns].style = variant_style(t, v);
    ser[ns].xlo = &q[2];
    ser[ns].xhi = &q[3];
    ser[ns].tags = fixed ? &tagp[v] : NULL;
    ns++;
  }
  if (nsw > 1) {
    qsort(sweep, (size_t)nsw, sizeof *sweep, by_beta);
    for (int i = 0; i < nsw; i++) {
      sx[i] = sweep[i].x;
      sy[i] = sweep[i].y;
    }
    ser[ns] = (rep_series){.label = "fixed-β sweep", .n = nsw, .x = sx, .y = sy, .points_only = 1};
    ser[ns].style = (rep_style){{150, 150, 150}, "", 1};
    ser[ns++].connect = 1;
  }
  if (ns) {
    char title[256], stem[128];
    suite_fmt(title, sizeof title, "%s: test reward against %s (means, 95%% CI over seeds)",
              task_display(t->name), label(xkey));
    rep_plot p = {.title = title,
                  .xlabel = nll ? "NLL/word under the true language (lower: more fluent)"
                                : "Perplexity of the reference texts (lower: closer to them)",
                  .ylabel = "Test reward",
                  .n_series = ns,
                  .series = ser,
                  .xlog = !nll};
    suite_fmt(stem, sizeof stem, "%s-frontier", t->name);
    rc = write_figure(&p, outdir, stem, file, nf, err);
  }
out:
  free(v6);
  free(ser);
  free(names);
  free(tags);
  free(tagp);
  free(sweep);
  free(sx);
  free(sy);
  return rc;
}

static int task_report(const res_suite *r, const res_task *t, const char *dir, const char *outdir,
                       int plots, int wide, FILE *page, dfpo_err *err) {
  int nr = t->n_variants, nc = t->n_metrics, ref = ref_row(t), rc = DFPO_OK;
  rep_cell *cells = calloc((size_t)(nr * nc) + 1, sizeof *cells);
  const char **rows = calloc((size_t)nr + 1, sizeof *rows);
  const char **keys = calloc((size_t)nr + 1, sizeof *keys);
  const char **groups = calloc((size_t)nr + 1, sizeof *groups);
  char(*shown)[96] = calloc((size_t)nr + 1, sizeof *shown);
  const char **cols = calloc((size_t)nc + 1, sizeof *cols);
  const char **ckeys = calloc((size_t)nc + 1, sizeof *ckeys);
  rep_best *best = calloc((size_t)nc + 1, sizeof *best);
  int *digits = calloc((size_t)nc + 1, sizeof *digits);
  notes n = {0};
  if (!cells || !rows || !keys || !groups || !shown || !cols || !ckeys || !best || !digits) {
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    goto out;
  }
  for (int j = 0; j < nc; j++) {
    cols[j] = label(t->metrics[j]);
    ckeys[j] = t->metrics[j];
    best[j] = (rep_best)res_metric_direction(t->metrics[j]);
  }
  for (int i = 0; i < nr; i++) {
    const res_variant *v = &t->variants[i];
    variant_display(v, shown[i], sizeof shown[i]);
    if (v->n_partial) { /* seeds under way: the notes say which and how far */
      int live = 0;
      for (int s = 0; s < v->n_partial; s++)
        live += v->partial_live[s];
      size_t len = strlen(shown[i]);
      suite_fmt(shown[i] + len, sizeof shown[i] - len, " (%s)", live ? "running" : "stopped");
    }
    rows[i] = shown[i];
    keys[i] = v->name;
    groups[i] = v->algo;
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
  /* a column's digits from its largest mean */
  for (int j = 0; j < nc; j++) {
    double m = NAN;
    for (int i = 0; i < nr; i++)
      if (cells[i * nc + j].n && (isnan(m) || fabs(cells[i * nc + j].mean) > m))
        m = fabs(cells[i * nc + j].mean);
    digits[j] = rep_digits_for(m);
  }
  deviations(r, t, dir, &n);
  char title[256], tlabel[128];
  suite_fmt(title, sizeof title,
            "%s (suite %s): test metrics of the checkpoint with the best validation reward",
            task_display(t->name), r->name);
  suite_fmt(tlabel, sizeof tlabel, "tab:%s-%s", r->name, t->name);
  rep_table tab = {.title = title,
                   .n_rows = nr,
                   .n_cols = nc,
                   .row_names = rows,
                   .col_names = cols,
                   .best = best,
                   .digits = digits,
                   .cells = cells,
                   .ref_row = ref,
                   .alpha = ALPHA,
                   .notes = (const char *const *)n.line,
                   .n_notes = n.n,
                   .task = t->name,
                   .row_keys = keys,
                   .row_groups = groups,
                   .col_keys = ckeys,
                   .label = tlabel,
                   .wide = wide};
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
        fprintf(page, "![%s](%s)\n", curve_label(kinds[k]), file);
    }
    if ((rc = plot_frontier(t, outdir, file, sizeof file, err)))
      goto out;
    if (file[0])
      fprintf(page, "![reward against %s](%s)\n", label(frontier_nll(t) ? "nll_word" : "ppl_ref"),
              file);
    fprintf(page, "\nEvery figure is also here as PDF and SVG (the same name).\n");
  }
out:
  for (int i = 0; i < n.n; i++)
    free(n.line[i]);
  free(cells);
  free(rows);
  free(keys);
  free(groups);
  free(shown);
  free(ckeys);
  free(cols);
  free(best);
  free(digits);
  return rc;
}

int res_report(const char *dir, int plots, int wide, dfpo_err *err) {
  res_suite r;
  int rc = res_collect(&r, dir, plots, err);
  if (rc)
    return rc;
  int n_cells = 0;
  for (int t = 0; t < r.n_tasks; t++)
    for (int v = 0; v < r.tasks[t].n_variants; v++)
      n_cells += r.tasks[t].variants[v].n_done + r.tasks[t].variants[v].n_missing;
  if (n_cells == 0) {
    res_free(&r);
    return dfpo_err_set(err, DFPO_EDATA,
                        "%s: no cells to report (neither a suite.json nor a finished cell "
                        "<task>/<variant>/seed-<n>/ with eval.json and DONE, as dfpo reproduce "
                        "writes them, nor one under way with a train.jsonl)",
                        dir);
  }
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
  int cells = 0, done = 0, under_way = 0;
  for (int t = 0; t < r.n_tasks; t++)
    for (int v = 0; v < r.tasks[t].n_variants; v++) {
      done += r.tasks[t].variants[v].n_done;
      under_way += r.tasks[t].variants[v].n_partial;
      cells += r.tasks[t].variants[v].n_done + r.tasks[t].variants[v].n_missing;
    }
  char partial[200] = "";
  if (under_way)
    suite_fmt(partial, sizeof partial,
              " %d under way: marked (running) or (stopped) in the tables, their iteration in "
              "the notes, their curves so far in short dashes.",
              under_way);
  fprintf(page.fp,
          "# Suite %s\n\n%d of %d cells finished.%s Made by `dfpo report` from the run folders "
          "beside this folder; every table is also here as LaTeX, CSV and JSON, and every "
          "seed's values are in results.json.\n",
          r.name, done, cells, partial);
  for (int t = 0; !rc && t < r.n_tasks; t++)
    rc = task_report(&r, &r.tasks[t], dir, outdir, plots, wide, page.fp, err);
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
  static const struct option opts[] = {{"no-plots", no_argument, NULL, 'P'},
                                       {"wide", no_argument, NULL, 'W'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  int c, plots = 1, wide = 0;
  cli_reset_getopt();
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    switch (c) {
    case 'P':
      plots = 0;
      break;
    case 'W':
      wide = 1;
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
  int rc = res_report(argv[optind], plots, wide, &err);
  return rc ? cli_fail(&err) : DFPO_OK;
}
