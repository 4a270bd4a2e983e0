/* dfpo check: a suite's results against a stored baseline, with tolerances
 * from the seeds' spread and the claims the baseline declares
 * (docs/suites.md, "dfpo check"). */
#include "harness/cli.h"
#include "harness/config.h"
#include "harness/suite.h"
#include "metrics/metrics.h"

#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char check_usage[] =
    "Usage: dfpo check --baseline FILE DIR [--alpha A] [--power P] [--json]\n"
    "                  [--any-suite]\n"
    "       dfpo check --baseline FILE DIR --write-baseline OUT\n"
    "\n"
    "Compares the results DIR (a suite folder, read as `dfpo report` reads it,\n"
    "or a results.json that `dfpo report` wrote) with a baseline FILE (a\n"
    "results.json, e.g. configs/baselines/smoke.json, with an optional \"check\"\n"
    "section: alpha, power, sd floors per metric and claims).\n"
    "\n"
    "Every (task, variant, metric) with at least 2 seeds in the baseline is a\n"
    "comparison: the seeds of DIR against the baseline's by a one-sided t test\n"
    "of a shift in the metric's worse direction (lower reward, higher NLL,\n"
    "perplexity, OOV rate...; both ways for a metric without a direction),\n"
    "with the two groups' pooled seed sd, raised to a floor (the baseline's\n"
    "\"sd_floor\" for the metric, and at least 1e-5 of the mean: float32\n"
    "rounding) so that a spread of zero does not fail every change. Holm's\n"
    "step-down correction over all comparisons keeps the chance that an\n"
    "unchanged build fails at most A. Each line gives the change, the\n"
    "tolerance (a worsening beyond it always fails) and the smallest change\n"
    "found with probability P (both also in units of the pooled sd): more\n"
    "seeds in the baseline make both smaller.\n"
    "\n"
    "Claims (the baseline's \"check\".\"claims\", e.g. DfPO's reward above\n"
    "zero-shot's, DfPO's ppl_ref at most 1.25 times zero-shot's) are checked\n"
    "on DIR's means; each says whether a one-sided Welch test at A shows it.\n"
    "\n"
    "The suite DIR holds must be the baseline's (\"suite\"), unless --any-suite.\n"
    "Exit status: 0 nothing regressed and nothing missing; 4 a comparison\n"
    "regressed or a claim fails (whether or not cells are missing); 6 a cell\n"
    "of the baseline is missing in DIR (absent, failed, running, or an\n"
    "expected seed not done); 2 DIR's logs or results or the baseline are\n"
    "malformed (a NUL byte, a cut or garbled line, a value that is not a\n"
    "finite number, a bad \"check\" section: the message names the file);\n"
    "1 a usage error (another suite's baseline).\n"
    "\n"
    "Options:\n"
    "  --baseline FILE   the stored results\n"
    "  --alpha A         family-wise significance level (default: the baseline's,\n"
    "                    else 0.05)\n"
    "  --power P         the power of the \"detectable\" column (default: the\n"
    "                    baseline's, else 0.8)\n"
    "  --json            the comparisons, claims and missing cells as JSON on stdout\n"
    "  --any-suite       compare even when DIR's suite is not the baseline's\n"
    "  --write-baseline OUT  compare nothing: write DIR's seeds with FILE's \"check\"\n"
    "                    section to OUT (a new baseline after an intended change;\n"
    "                    OUT may be FILE), refused (exit 4) when a claim fails\n"
    "  -h, --help        show this help\n";

#define CHECK_REGRESSED 4
#define CHECK_MISSING 6
#define CHECK_FORMAT 1 /* the "check" section's format */
#define CHECK_MAX_CLAIMS 32
#define CHECK_REL_FLOOR 1e-5

typedef struct claim {
  char task[32], variant[64], metric[32], op[3], than[64], why[256];
  double ratio;
} claim;

/* The baseline's "check" section. */
typedef struct spec {
  int present;
  double alpha, power;
  int n_floors;
  char floor_metric[RES_MAX_METRICS][32];
  double floor_sd[RES_MAX_METRICS];
  int n_claims;
  claim claims[CHECK_MAX_CLAIMS];
} spec;

typedef struct cmp {
  const char *task, *variant, *metric;
  int better; /* +1 higher is better, -1 lower, 0 neither */
  double mb, sb, mc, sc;
  int nb, nc;
  met_shift s;
  double p, tol, detect;
  const char *verdict; /* ok, regressed, better, missing */
} cmp;

static int by_p(const void *a, const void *b) {
  double x = (*(cmp *const *)a)->p, y = (*(cmp *const *)b)->p;
  return x < y ? -1 : x > y;
}

static const char *jstr(const cJSON *o, const char *key) {
  return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
}

/* A probability-like key of the section: absent keeps *out. */
static int spec_number(const cJSON *sec, const char *key, double lo, double hi, double *out,
                       const char *path, dfpo_err *err) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(sec, key);
  if (!x)
    return DFPO_OK;
  if (!cJSON_IsNumber(x) || !(x->valuedouble > lo && x->valuedouble < hi))
    return dfpo_err_set(err, DFPO_EDATA, "%s: \"check\".\"%s\" must be a number in (%g, %g)", path,
                        key, lo, hi);
  *out = x->valuedouble;
  return DFPO_OK;
}

static int copy_name(char *dst, size_t n, const cJSON *o, const char *key, int required,
                     const char *path, int k, dfpo_err *err) {
  const char *v = jstr(o, key);
  if (!v && !required) {
    dst[0] = '\0';
    return DFPO_OK;
  }
  if (!v || !v[0] || strlen(v) >= n)
    return dfpo_err_set(err, DFPO_EDATA,
                        "%s: claim %d: \"%s\" must be a string of 1 to %zu characters", path, k + 1,
                        key, n - 1);
  suite_fmt(dst, n, "%s", v);
  return DFPO_OK;
}

/* Reads the baseline's "check" section (absent: the defaults, no claims). */
static int spec_read(spec *sp, const char *path, dfpo_err *err) {
  memset(sp, 0, sizeof *sp);
  sp->alpha = 0.05;
  sp->power = 0.8;
  cJSON *o;
  int rc = cfg_json_read(path, &o, err);
  if (rc)
    return rc;
  const cJSON *sec = cJSON_GetObjectItemCaseSensitive(o, "check");
  if (!sec) {
    cJSON_Delete(o);
    return DFPO_OK;
  }
  sp->present = 1;
  const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(sec, "format"), *x;
  if (!cJSON_IsObject(sec) || !cJSON_IsNumber(fmt) || fmt->valuedouble != CHECK_FORMAT) {
    rc = dfpo_err_set(err, DFPO_EDATA,
                      "%s: \"check\" must be an object with \"format\": %d (a newer dfpo may "
                      "have written another)",
                      path, CHECK_FORMAT);
    goto out;
  }
  if ((rc = spec_number(sec, "alpha", 0, 0.5, &sp->alpha, path, err)) ||
      (rc = spec_number(sec, "power", 0, 1, &sp->power, path, err)))
    goto out;
  const cJSON *floors = cJSON_GetObjectItemCaseSensitive(sec, "sd_floor");
  if (floors && !cJSON_IsObject(floors)) {
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: \"check\".\"sd_floor\" must be an object", path);
    goto out;
  }
  cJSON_ArrayForEach(x, floors) {
    if (!cJSON_IsNumber(x) || !(x->valuedouble >= 0) || !isfinite(x->valuedouble) ||
        strlen(x->string) >= sizeof sp->floor_metric[0] || sp->n_floors == RES_MAX_METRICS) {
      rc = dfpo_err_set(err, DFPO_EDATA,
                        "%s: \"check\".\"sd_floor\".\"%s\" must be a finite number >= 0 (at "
                        "most %d metrics)",
                        path, x->string, RES_MAX_METRICS);
      goto out;
    }
    suite_fmt(sp->floor_metric[sp->n_floors], sizeof sp->floor_metric[0], "%s", x->string);
    sp->floor_sd[sp->n_floors++] = x->valuedouble;
  }
  const cJSON *claims = cJSON_GetObjectItemCaseSensitive(sec, "claims");
  if (claims && (!cJSON_IsArray(claims) || cJSON_GetArraySize(claims) > CHECK_MAX_CLAIMS)) {
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: \"check\".\"claims\" must be a list of at most %d",
                      path, CHECK_MAX_CLAIMS);
    goto out;
  }
  cJSON_ArrayForEach(x, claims) {
    claim *c = &sp->claims[sp->n_claims];
    int k = sp->n_claims;
    if ((rc = copy_name(c->task, sizeof c->task, x, "task", 1, path, k, err)) ||
        (rc = copy_name(c->variant, sizeof c->variant, x, "variant", 1, path, k, err)) ||
        (rc = copy_name(c->metric, sizeof c->metric, x, "metric", 1, path, k, err)) ||
        (rc = copy_name(c->than, sizeof c->than, x, "than", 1, path, k, err)) ||
        (rc = copy_name(c->why, sizeof c->why, x, "why", 0, path, k, err)))
      goto out;
    const char *op = jstr(x, "op");
    if (!op || (strcmp(op, ">") && strcmp(op, ">=") && strcmp(op, "<") && strcmp(op, "<="))) {
      rc = dfpo_err_set(err, DFPO_EDATA,
                        "%s: claim %d: \"op\" must be \">\", \">=\", \"<\" or "
                        "\"<=\"",
                        path, k + 1);
      goto out;
    }
    suite_fmt(c->op, sizeof c->op, "%s", op);
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(x, "ratio");
    c->ratio = 1;
    if (r && (!cJSON_IsNumber(r) || !(r->valuedouble > 0) || !isfinite(r->valuedouble))) {
      rc = dfpo_err_set(err, DFPO_EDATA, "%s: claim %d: \"ratio\" must be a number above 0", path,
                        k + 1);
      goto out;
    }
    if (r)
      c->ratio = r->valuedouble;
    sp->n_claims++;
  }
out:
  cJSON_Delete(o);
  return rc;
}

static double spec_floor(const spec *sp, const char *metric) {
  for (int i = 0; i < sp->n_floors; i++)
    if (!strcmp(sp->floor_metric[i], metric))
      return sp->floor_sd[i];
  return 0;
}

/* Reads DIR: a suite folder, or a results file. */
static int read_results(res_suite *r, const char *dir, dfpo_err *err) {
  struct stat st;
  if (stat(dir, &st) == 0 && S_ISREG(st.st_mode))
    return res_read_json(r, dir, err);
  return res_collect(r, dir, 0, err);
}

static const res_variant *find_variant(const res_suite *r, const char *task, const char *variant,
                                       const res_task **t) {
  *t = NULL;
  for (int k = 0; k < r->n_tasks; k++)
    if (!strcmp(r->tasks[k].name, task)) {
      *t = &r->tasks[k];
      int v = res_variant_index(*t, variant);
      return v >= 0 ? &(*t)->variants[v] : NULL;
    }
  return NULL;
}

/* The seeds' values of a metric of a variant (0 when absent). */
static int values_of(const res_suite *r, const char *task, const char *variant, const char *metric,
                     double *out) {
  const res_task *t;
  const res_variant *v = find_variant(r, task, variant, &t);
  int m = v ? res_metric_index(t, metric) : -1;
  return m >= 0 ? res_values(v, m, out) : 0;
}

typedef struct claim_result {
  int na, nb;
  double ma, mb, gap, p;
  int holds; /* 1 holds, 0 fails, -1 a side is missing */
} claim_result;

/* A claim on the means of r: gap = mean(variant) - ratio * mean(than), in
 * the claim's direction; p: Welch's one-sided test of the claim's side
 * (NaN with fewer than 2 seeds a side or no spread). */
static void claim_eval(const claim *c, const res_suite *r, claim_result *cr) {
  double a[RES_MAX_SEEDS], b[RES_MAX_SEEDS];
  memset(cr, 0, sizeof *cr);
  cr->na = values_of(r, c->task, c->variant, c->metric, a);
  cr->nb = values_of(r, c->task, c->than, c->metric, b);
  cr->ma = cr->mb = cr->gap = cr->p = NAN;
  if (!cr->na || !cr->nb) {
    cr->holds = -1;
    return;
  }
  for (int i = 0; i < cr->nb; i++)
    b[i] *= c->ratio;
  met_summary sa, sb;
  dfpo_err e;
  met_summarize(a, (size_t)cr->na, 0.95, &sa, &e);
  met_summarize(b, (size_t)cr->nb, 0.95, &sb, &e);
  cr->ma = sa.mean;
  cr->mb = sb.mean / c->ratio;
  double d = sa.mean - sb.mean;
  int up = c->op[0] == '>';
  cr->gap = up ? d : -d;
  cr->holds = c->op[1] ? cr->gap >= 0 : cr->gap > 0;
  met_welch w;
  if (cr->na >= 2 && cr->nb >= 2 &&
      met_welch_test(a, (size_t)cr->na, b, (size_t)cr->nb, &w, &e) == DFPO_OK && isfinite(w.t))
    cr->p = (up ? w.t > 0 : w.t < 0) ? w.p / 2 : 1 - w.p / 2;
}

static void claim_text(const claim *c, char *buf, size_t n) {
  char r[32] = "";
  if (c->ratio != 1)
    suite_fmt(r, sizeof r, "%g x ", c->ratio);
  suite_fmt(buf, n, "%s: %s %s %s %s%s", c->task, c->variant, c->metric, c->op, r, c->than);
}

/* The comparisons of every baseline (task, variant, metric) with 2 or more
 * seeds; *out (caller frees) and their count. */
static int compare(const res_suite *b, const res_suite *c, const spec *sp, cmp **out, size_t *n,
                   dfpo_err *err) {
  size_t cap = 16;
  *n = 0;
  cmp *all = malloc(sizeof *all * cap);
  if (!all)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  for (int ti = 0; ti < b->n_tasks; ti++) {
    const res_task *bt = &b->tasks[ti];
    for (int vi = 0; vi < bt->n_variants; vi++) {
      const res_variant *bv = &bt->variants[vi];
      for (int m = 0; m < bt->n_metrics; m++) {
        double x[RES_MAX_SEEDS], y[RES_MAX_SEEDS];
        int nx = res_values(bv, m, x);
        if (nx < 2)
          continue; /* no spread to compare against */
        if (dfpo_grow(&all, &cap, *n + 1, sizeof *all, 16, DFPO_NOCAP, err)) {
          free(all);
          return err->code;
        }
        cmp *e = &all[(*n)++];
        memset(e, 0, sizeof *e);
        e->task = bt->name;
        e->variant = bv->name;
        e->metric = bt->metrics[m];
        e->better = res_metric_direction(e->metric);
        met_summary sb, sc;
        met_summarize(x, (size_t)nx, 0.95, &sb, err);
        e->mb = sb.mean, e->sb = sb.sd, e->nb = nx;
        e->mc = e->sc = e->p = e->tol = e->detect = NAN;
        e->nc = values_of(c, bt->name, bv->name, e->metric, y);
        if (!e->nc) {
          e->verdict = "missing";
          continue;
        }
        met_summarize(y, (size_t)e->nc, 0.95, &sc, err);
        e->mc = sc.mean, e->sc = sc.sd;
        double floor = fmax(spec_floor(sp, e->metric), CHECK_REL_FLOOR * fmax(1, fabs(sb.mean)));
        int rc = met_shift_test(y, (size_t)e->nc, x, (size_t)nx, floor, &e->s, err);
        if (rc) {
          free(all);
          return rc;
        }
        /* worse is below for a higher-is-better metric */
        e->p = e->better > 0   ? e->s.p_below
               : e->better < 0 ? e->s.p_above
                               : 2 * fmin(e->s.p_below, e->s.p_above);
      }
    }
  }
  /* Holm: the i-th smallest of the m tested p-values against alpha / (m -
   * i); once one is not rejected, no larger one is. Any p below alpha / m is
   * rejected, so the tolerance is the change whose p is alpha / m. */
  cmp **order = malloc(sizeof *order * (*n + 1));
  if (!order) {
    free(all);
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  }
  size_t m = 0;
  for (size_t i = 0; i < *n; i++)
    if (!all[i].verdict)
      order[m++] = &all[i];
  qsort(order, m, sizeof *order, by_p);
  int stop = 0;
  for (size_t i = 0; i < m; i++) {
    cmp *e = order[i];
    double level = sp->alpha / (double)m / (e->better ? 1 : 2);
    double q = met_t_quantile(1 - level, e->s.df);
    e->tol = q * e->s.se;
    e->detect = (q + met_t_quantile(sp->power, e->s.df)) * e->s.se;
    if (!stop && e->p < sp->alpha / (double)(m - i))
      e->verdict = "regressed";
    else {
      stop = 1;
      double gain = e->better * e->s.diff;
      e->verdict = e->better && gain > e->tol ? "better" : "ok";
    }
  }
  free(order);
  *out = all;
  return DFPO_OK;
}

/* The missing cells of DIR among the baseline's variants that have
 * results (one that failed in the baseline too is not a change): an
 * expected seed not done (with its reason), or a variant or task absent. */
static int missing_cells(const res_suite *b, const res_suite *c, cJSON *list) {
  int n = 0;
  for (int ti = 0; ti < b->n_tasks; ti++) {
    const res_task *bt = &b->tasks[ti];
    for (int vi = 0; vi < bt->n_variants; vi++) {
      const res_task *ct;
      if (!bt->variants[vi].n_done)
        continue;
      const res_variant *cv = find_variant(c, bt->name, bt->variants[vi].name, &ct);
      char line[400];
      if (!cv || (!cv->n_done && !cv->n_missing)) {
        suite_fmt(line, sizeof line, "%s/%s: no cell", bt->name, bt->variants[vi].name);
        cJSON_AddItemToArray(list, cJSON_CreateString(line));
        n++;
        continue;
      }
      for (int k = 0; k < cv->n_missing; k++) {
        suite_fmt(line, sizeof line, "%s/%s %s", bt->name, cv->name, cv->missing[k]);
        cJSON_AddItemToArray(list, cJSON_CreateString(line));
        n++;
      }
    }
  }
  return n;
}

static cJSON *num(double x) {
  return isfinite(x) ? cJSON_CreateNumber(x) : cJSON_CreateNull();
}

static void print_text(const cmp *all, size_t n, const cJSON *claims, const cJSON *missing,
                       double power) {
  char det[32];
  suite_fmt(det, sizeof det, "detect(%.0f%%)", 100 * power);
  printf("%-36s %21s %21s %10s %17s %17s %8s  %s\n", "task/variant/metric", "baseline mean+-sd (n)",
         "now mean+-sd (n)", "change", "tolerance (sd)", det, "p", "verdict");
  for (size_t i = 0; i < n; i++) {
    const cmp *e = &all[i];
    char what[160], bb[64], cc[64], tol[40], dd[40];
    suite_fmt(what, sizeof what, "%s/%s/%s", e->task, e->variant, e->metric);
    suite_fmt(bb, sizeof bb, "%.4g+-%.2g (%d)", e->mb, e->sb, e->nb);
    suite_fmt(cc, sizeof cc, "%.4g+-%.2g (%d)", e->mc, e->sc, e->nc);
    suite_fmt(tol, sizeof tol, "%.3g (%.1f)", e->tol, e->tol / e->s.sd);
    suite_fmt(dd, sizeof dd, "%.3g (%.1f)", e->detect, e->detect / e->s.sd);
    if (!strcmp(e->verdict, "missing"))
      printf("%-36s %21s %21s %10s %17s %17s %8s  %s\n", what, bb, "-", "-", "-", "-", "-",
             "MISSING");
    else
      printf("%-36s %21s %21s %+10.3g %17s %17s %8.3g  %s%s\n", what, bb, cc, e->mc - e->mb, tol,
             dd, e->p, !strcmp(e->verdict, "regressed") ? "REGRESSED" : e->verdict,
             e->s.floored ? " (sd floor)" : "");
  }
  const cJSON *x;
  cJSON_ArrayForEach(x, claims) {
    const char *st = jstr(x, "status");
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(x, "p");
    printf("claim %s: %s", jstr(x, "claim"), st);
    if (cJSON_IsNumber(p))
      printf(" (one-sided Welch p %.3g)", p->valuedouble);
    printf("\n");
  }
  cJSON_ArrayForEach(x, missing) printf("missing: %s\n", x->valuestring);
}

/* --write-baseline: DIR's per-seed values with the baseline's "check"
 * section into out, when every claim holds on them. */
static int write_baseline(const char *base_path, const spec *sp, const res_suite *c,
                          const char *out, dfpo_err *err) {
  for (int k = 0; k < sp->n_claims; k++) {
    claim_result cr;
    char text[256];
    claim_eval(&sp->claims[k], c, &cr);
    claim_text(&sp->claims[k], text, sizeof text);
    if (cr.holds != 1)
      return dfpo_err_set(err, CHECK_REGRESSED,
                          "check: the new results %s the claim %s: %s is not written",
                          cr.holds < 0 ? "lack a side of" : "do not hold", text, out);
  }
  char tmp[4200];
  int rc = dfpo_path_fmt(tmp, sizeof tmp, err, "%s.values", out);
  cJSON *o = NULL, *b = NULL;
  if (rc || (rc = res_write_json(c, tmp, err)) || (rc = cfg_json_read(tmp, &o, err)) ||
      (rc = cfg_json_read(base_path, &b, err))) {
    remove(tmp);
    cJSON_Delete(o);
    return rc;
  }
  remove(tmp);
  cJSON *sec = cJSON_DetachItemFromObjectCaseSensitive(b, "check");
  if (sec)
    cJSON_AddItemToObject(o, "check", sec);
  rc = cfg_json_write(out, o, err);
  cJSON_Delete(o);
  cJSON_Delete(b);
  if (!rc)
    dfpo_info("check: wrote %s: the seeds of the results with the check section of %s", out,
              base_path);
  return rc;
}

static int check(const char *base_path, const char *dir, double alpha, double power, int json,
                 int any_suite, const char *new_base, dfpo_err *err) {
  spec sp;
  res_suite b, c;
  int rc = spec_read(&sp, base_path, err);
  if (rc)
    return rc;
  if (alpha > 0)
    sp.alpha = alpha;
  if (power > 0)
    sp.power = power;
  if (!sp.present)
    dfpo_info("check: %s has no \"check\" section (an older baseline): alpha %g, no sd floors "
              "but 1e-5 of the mean, no claims",
              base_path, sp.alpha);
  if ((rc = res_read_json(&b, base_path, err)))
    return rc;
  if ((rc = read_results(&c, dir, err))) {
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
  if (new_base) {
    rc = write_baseline(base_path, &sp, &c, new_base, err);
    res_free(&b);
    res_free(&c);
    return rc;
  }
  cmp *all = NULL;
  size_t n = 0;
  if ((rc = compare(&b, &c, &sp, &all, &n, err))) {
    res_free(&b);
    res_free(&c);
    return rc;
  }
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "suite", c.name);
  cJSON_AddStringToObject(o, "baseline", base_path);
  cJSON_AddStringToObject(o, "results", dir);
  cJSON_AddNumberToObject(o, "alpha", sp.alpha);
  cJSON_AddNumberToObject(o, "power", sp.power);
  cJSON *jc = cJSON_AddArrayToObject(o, "comparisons");
  int regressed = 0, missing = 0, better = 0;
  for (size_t i = 0; i < n; i++) {
    const cmp *e = &all[i];
    cJSON *x = cJSON_CreateObject();
    cJSON_AddItemToArray(jc, x);
    cJSON_AddStringToObject(x, "task", e->task);
    cJSON_AddStringToObject(x, "variant", e->variant);
    cJSON_AddStringToObject(x, "metric", e->metric);
    cJSON_AddStringToObject(x, "better", e->better > 0 ? "higher" : e->better < 0 ? "lower" : "");
    cJSON *bj = cJSON_AddObjectToObject(x, "baseline"), *cj = cJSON_AddObjectToObject(x, "now");
    cJSON_AddNumberToObject(bj, "n", e->nb);
    cJSON_AddItemToObject(bj, "mean", num(e->mb));
    cJSON_AddItemToObject(bj, "sd", num(e->sb));
    cJSON_AddNumberToObject(cj, "n", e->nc);
    cJSON_AddItemToObject(cj, "mean", num(e->mc));
    cJSON_AddItemToObject(cj, "sd", num(e->sc));
    int tested = strcmp(e->verdict, "missing") != 0;
    cJSON_AddItemToObject(x, "change", num(e->mc - e->mb));
    cJSON_AddItemToObject(x, "pooled_sd", num(tested ? e->s.sd : NAN));
    cJSON_AddBoolToObject(x, "sd_floored", tested && e->s.floored);
    cJSON_AddItemToObject(x, "df", num(tested ? e->s.df : NAN));
    cJSON_AddItemToObject(x, "tolerance", num(e->tol));
    cJSON_AddItemToObject(x, "detectable", num(e->detect));
    cJSON_AddItemToObject(x, "p", num(e->p));
    cJSON_AddStringToObject(x, "verdict", e->verdict);
    regressed += !strcmp(e->verdict, "regressed");
    better += !strcmp(e->verdict, "better");
  }
  cJSON *jcl = cJSON_AddArrayToObject(o, "claims");
  int claims_failed = 0;
  for (int k = 0; k < sp.n_claims; k++) {
    const claim *cl = &sp.claims[k];
    claim_result cr, br;
    char text[256];
    claim_text(cl, text, sizeof text);
    claim_eval(cl, &b, &br);
    if (br.holds != 1)
      dfpo_warn("check: the baseline %s itself does not hold the claim %s", base_path, text);
    claim_eval(cl, &c, &cr);
    const char *st = cr.holds < 0      ? "missing"
                     : !cr.holds       ? "FAILS"
                     : cr.p < sp.alpha ? "holds, shown at alpha"
                                       : "holds, not shown at alpha";
    cJSON *x = cJSON_CreateObject();
    cJSON_AddItemToArray(jcl, x);
    cJSON_AddStringToObject(x, "claim", text);
    if (cl->why[0])
      cJSON_AddStringToObject(x, "why", cl->why);
    cJSON_AddItemToObject(x, "mean", num(cr.ma));
    cJSON_AddItemToObject(x, "than_mean", num(cr.mb));
    cJSON_AddItemToObject(x, "gap", num(cr.gap));
    cJSON_AddItemToObject(x, "p", num(cr.p));
    cJSON_AddStringToObject(x, "status", st);
    claims_failed += cr.holds == 0;
    missing += cr.holds < 0;
  }
  cJSON *jm = cJSON_AddArrayToObject(o, "missing");
  int cells_missing = missing_cells(&b, &c, jm);
  for (size_t i = 0; i < n; i++)
    missing += !strcmp(all[i].verdict, "missing");
  missing += cells_missing;
  /* the usual sizes of the tolerance and the detectable change, in sds */
  double tsum = 0, dsum = 0;
  int tn = 0;
  for (size_t i = 0; i < n; i++)
    if (isfinite(all[i].tol) && !all[i].s.floored) {
      tsum += all[i].tol / all[i].s.sd;
      dsum += all[i].detect / all[i].s.sd;
      tn++;
    }
  rc = regressed || claims_failed ? CHECK_REGRESSED : missing ? CHECK_MISSING : DFPO_OK;
  cJSON_AddStringToObject(o, "status",
                          rc == CHECK_REGRESSED ? "regression"
                          : rc == CHECK_MISSING ? "missing"
                                                : "ok");
  cJSON_AddNumberToObject(o, "exit", rc);
  if (json) {
    char *s = cJSON_Print(o);
    if (s)
      printf("%s\n", s);
    free(s);
  } else {
    print_text(all, n, jcl, jm, sp.power);
  }
  if (tn)
    dfpo_info("check: %zu comparisons (one-sided pooled t, Holm, family-wise alpha %g): a "
              "worsening beyond %.1f pooled sd always fails, one of %.1f sd fails with "
              "probability %g (means over the comparisons)",
              n, sp.alpha, tsum / tn, dsum / tn, sp.power);
  cJSON_Delete(o);
  free(all);
  res_free(&b);
  res_free(&c);
  if (rc == CHECK_REGRESSED)
    return dfpo_err_set(err, rc,
                        "check: %d of %zu comparisons regressed beyond seed noise and %d of %d "
                        "claims fail (%d missing)",
                        regressed, n, claims_failed, sp.n_claims, missing);
  if (rc == CHECK_MISSING)
    return dfpo_err_set(err, rc,
                        "check: nothing regressed, but %d comparisons, claims or cells "
                        "are missing",
                        missing);
  dfpo_info("check: %zu comparisons within seed noise (%d better), %d claims hold", n, better,
            sp.n_claims);
  return DFPO_OK;
}

int cmd_check(int argc, char **argv) {
  static const struct option opts[] = {
      {"baseline", required_argument, NULL, 'b'}, {"alpha", required_argument, NULL, 'a'},
      {"power", required_argument, NULL, 'p'},    {"json", no_argument, NULL, 'j'},
      {"any-suite", no_argument, NULL, 's'},      {"write-baseline", required_argument, NULL, 'w'},
      {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0}};
  const char *base = NULL, *new_base = NULL;
  double alpha = 0, power = 0;
  int c, rc, any_suite = 0, json = 0;
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
    case 'p':
      if ((rc = cli_number("check", optarg, 0.01, 0.999, "--power", &power)))
        return rc;
      break;
    case 'j':
      json = 1;
      break;
    case 's':
      any_suite = 1;
      break;
    case 'w':
      new_base = optarg;
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
    return cli_usage_error("check", "needs exactly one suite folder or results file DIR");
  dfpo_err err;
  dfpo_err_clear(&err);
  rc = check(base, argv[optind], alpha, power, json, any_suite, new_base, &err);
  return rc ? cli_fail(&err) : DFPO_OK;
}
