/* dfpo check: a suite's results against a stored baseline, within seed noise
 * (docs/suites.md, "dfpo check"). */
#include "harness/cli.h"
#include "harness/suite.h"
#include "metrics/metrics.h"

#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char check_usage[] =
    "Usage: dfpo check --baseline FILE DIR [--alpha A] [--any-suite]\n"
    "\n"
    "Compares the results of the suite folder DIR (as `dfpo report` reads it)\n"
    "with a baseline FILE (a results.json that `dfpo report` wrote, e.g.\n"
    "configs/baselines/smoke.json). For every (task, algorithm, metric) of the\n"
    "baseline, the seeds' values of DIR are tested against the baseline's with\n"
    "Welch's t-test (two-sided); the p-values are corrected for the number of\n"
    "comparisons by Holm's step-down method, so that an unchanged build passes\n"
    "with probability at least 1 - A whatever the seeds. A metric that is\n"
    "constant over seeds in both must be equal to 1e-5, relative (float32\n"
    "rounding, which other kernels or CPUs change, moves the last digits; see\n"
    "DFPO_CPU_ISA in docs/engine.md). A baseline\n"
    "cell absent from DIR, or with fewer than 2 seeds there, fails. The suite\n"
    "DIR holds (its suite.json's name, else the folder's name) must be the\n"
    "baseline's (its \"suite\"): another suite's baseline is refused unless\n"
    "--any-suite says to compare anyway.\n"
    "Prints one line per comparison; exits 0 when nothing moved further than\n"
    "seed noise allows, 4 when something did, 2 when DIR's logs or results or\n"
    "the baseline are malformed (a NUL byte, a cut or garbled line, a value\n"
    "that is not a finite number: the message names the file and line). DIR's\n"
    "cells are read as `dfpo report` reads them.\n"
    "\n"
    "Options:\n"
    "  --baseline FILE   the stored results\n"
    "  --alpha A         family-wise significance level (default 0.05)\n"
    "  --any-suite       compare even when DIR's suite is not the baseline's\n"
    "  -h, --help        show this help\n";

#define CHECK_MOVED 4

typedef struct cmp {
  char what[160];
  double mb, sb, mc, sc, p;
  int nb, nc;
  const char *verdict; /* NULL: decided by Holm */
} cmp;

static int by_p(const void *a, const void *b) {
  double x = (*(cmp *const *)a)->p, y = (*(cmp *const *)b)->p;
  return x < y ? -1 : x > y;
}

static int check(const char *base_path, const char *dir, double alpha, int any_suite,
                 dfpo_err *err) {
  res_suite b, c;
  int rc = res_read_json(&b, base_path, err);
  if (rc)
    return rc;
  if ((rc = res_collect(&c, dir, 0, err))) {
    res_free(&b);
    return rc;
  }
  if (strcmp(b.name, c.name) != 0) {
    if (!any_suite) {
      rc = dfpo_err_set(err, DFPO_EUSAGE,
                        "%s holds suite '%s' but the baseline %s is suite '%s': give the "
                        "baseline of that suite, or --any-suite to compare anyway",
                        dir, c.name, base_path, b.name);
      res_free(&b);
      res_free(&c);
      return rc;
    }
    dfpo_warn("check: %s holds suite '%s', the baseline suite '%s' (--any-suite)", dir, c.name,
              b.name);
  }
  size_t cap = 16, n = 0;
  cmp *all = malloc(sizeof *all * cap);
  for (int ti = 0; all && ti < b.n_tasks; ti++) {
    const res_task *bt = &b.tasks[ti], *ct = NULL;
    for (int k = 0; k < c.n_tasks; k++)
      if (!strcmp(c.tasks[k].name, bt->name))
        ct = &c.tasks[k];
    for (int vi = 0; all && vi < bt->n_variants; vi++) {
      const res_variant *bv = &bt->variants[vi];
      int cvi = ct ? res_variant_index(ct, bv->name) : -1;
      const res_variant *cv = cvi >= 0 ? &ct->variants[cvi] : NULL;
      for (int m = 0; m < bt->n_metrics; m++) {
        double x[RES_MAX_SEEDS], y[RES_MAX_SEEDS];
        int nx = res_values(bv, m, x);
        if (nx < 2)
          continue; /* nothing to compare against */
        if (dfpo_grow(&all, &cap, n + 1, sizeof *all, 16, DFPO_NOCAP, NULL)) {
          free(all);
          all = NULL;
          break;
        }
        cmp *e = &all[n++];
        memset(e, 0, sizeof *e);
        suite_fmt(e->what, sizeof e->what, "%s/%s/%s", bt->name, bv->name, bt->metrics[m]);
        met_summary sb, sc;
        met_summarize(x, (size_t)nx, 0.95, &sb, err);
        e->mb = sb.mean, e->sb = sb.sd, e->nb = nx;
        e->mc = e->sc = e->p = NAN;
        int cm = cv ? res_metric_index(ct, bt->metrics[m]) : -1;
        int ny = cm >= 0 ? res_values(cv, cm, y) : 0;
        e->nc = ny;
        if (ny < 2) {
          e->verdict = "MISSING";
          continue;
        }
        met_summarize(y, (size_t)ny, 0.95, &sc, err);
        e->mc = sc.mean, e->sc = sc.sd;
        if (sb.sd == 0 && sc.sd == 0) {
          /* a deterministic metric: what float32 rounding can move, no more */
          double tol = 1e-5 * fmax(1.0, fmax(fabs(sb.mean), fabs(sc.mean)));
          e->verdict = fabs(sb.mean - sc.mean) <= tol ? "ok" : "MOVED";
          e->p = fabs(sb.mean - sc.mean) <= tol ? 1.0 : 0.0;
          continue;
        }
        met_welch w;
        if (met_welch_test(y, (size_t)ny, x, (size_t)nx, &w, err) == DFPO_OK)
          e->p = isfinite(w.p) ? w.p : 1.0;
        else
          e->p = 1.0;
      }
    }
  }
  if (!all) {
    res_free(&b);
    res_free(&c);
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  }
  /* Holm: the i-th smallest of the m tested p-values against alpha / (m - i);
   * once one is not rejected, no larger one is */
  cmp **order = malloc(sizeof *order * (n + 1));
  size_t m = 0;
  for (size_t i = 0; order && i < n; i++)
    if (!all[i].verdict)
      order[m++] = &all[i];
  if (order) {
    qsort(order, m, sizeof *order, by_p);
    int stop = 0;
    for (size_t i = 0; i < m; i++) {
      if (!stop && order[i]->p < alpha / (double)(m - i))
        order[i]->verdict = "MOVED";
      else {
        stop = 1;
        order[i]->verdict = "ok";
      }
    }
  }
  free(order);
  int moved = 0;
  printf("%-44s %22s %22s %9s  %s\n", "task/algorithm/metric", "baseline mean+-sd (n)",
         "now mean+-sd (n)", "p", "verdict");
  for (size_t i = 0; i < n; i++) {
    cmp *e = &all[i];
    char bb[64], cc[64];
    suite_fmt(bb, sizeof bb, "%.4g+-%.2g (%d)", e->mb, e->sb, e->nb);
    suite_fmt(cc, sizeof cc, "%.4g+-%.2g (%d)", e->mc, e->sc, e->nc);
    /* which way a moved metric went, by its direction in the metric tables */
    const char *metric = strrchr(e->what, '/'), *way = "";
    int better = res_metric_direction(metric ? metric + 1 : e->what);
    if (e->verdict && !strcmp(e->verdict, "MOVED") && better && isfinite(e->mc) && e->mc != e->mb)
      way = (e->mc - e->mb) * better > 0 ? " (better)" : " (worse)";
    printf("%-44s %22s %22s %9.3g  %s%s\n", e->what, bb, cc, e->p, e->verdict ? e->verdict : "ok",
           way);
    moved += e->verdict && strcmp(e->verdict, "ok") != 0;
  }
  free(all);
  res_free(&b);
  res_free(&c);
  if (moved)
    return dfpo_err_set(err, CHECK_MOVED,
                        "check: %d of %zu comparisons moved beyond seed noise or are missing "
                        "(Welch's t-test, Holm-corrected, family-wise alpha %g)",
                        moved, n, alpha);
  dfpo_info("check: %zu comparisons within seed noise (family-wise alpha %g)", n, alpha);
  return DFPO_OK;
}

int cmd_check(int argc, char **argv) {
  static const struct option opts[] = {{"baseline", required_argument, NULL, 'b'},
                                       {"alpha", required_argument, NULL, 'a'},
                                       {"any-suite", no_argument, NULL, 's'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *base = NULL;
  double alpha = 0.05;
  int c, rc, any_suite = 0;
  cli_reset_getopt();
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    switch (c) {
    case 'b':
      base = optarg;
      break;
    case 'a':
      if ((rc = cli_number("check", optarg, 1e-12, 0.5, "--alpha", &alpha)))
        return rc;
      break;
    case 's':
      any_suite = 1;
      break;
    case 'h':
      fputs(check_usage, stdout);
      return DFPO_OK;
    default:
      return cli_bad_option("check", argc, argv, c);
    }
  }
  if (!base)
    return cli_usage_error("check", "--baseline FILE is required");
  if (optind != argc - 1)
    return cli_usage_error("check", "needs exactly one suite folder DIR");
  dfpo_err err;
  dfpo_err_clear(&err);
  rc = check(base, argv[optind], alpha, any_suite, &err);
  return rc ? cli_fail(&err) : DFPO_OK;
}
