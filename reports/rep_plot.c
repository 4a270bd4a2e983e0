#include "reports/reports.h"

#include <errno.h>
#include <math.h>
#include <plplot.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Okabe & Ito's colour-blind-safe palette. */
static const int palette[][3] = {{0, 114, 178}, {213, 94, 0},   {0, 158, 115},  {204, 121, 167},
                                 {230, 159, 0}, {86, 180, 233}, {240, 228, 66}, {0, 0, 0}};
enum { N_PALETTE = sizeof palette / sizeof palette[0] };

static const char *device_for(const char *path) {
  const char *dot = strrchr(path, '.');
  if (!dot)
    return NULL;
  if (!strcmp(dot, ".png"))
    return "pngcairo";
  if (!strcmp(dot, ".svg"))
    return "svgcairo";
  if (!strcmp(dot, ".pdf"))
    return "pdfcairo";
  return NULL;
}

static void extend(double v, double *lo, double *hi) {
  if (!isfinite(v))
    return;
  if (v < *lo)
    *lo = v;
  if (v > *hi)
    *hi = v;
}

/* The data range of every series (bands included), padded by 5%. */
static int plot_range(const rep_plot *p, double box[4]) {
  box[0] = box[2] = INFINITY;
  box[1] = box[3] = -INFINITY;
  for (int s = 0; s < p->n_series; s++) {
    const rep_series *r = &p->series[s];
    for (int i = 0; i < r->n; i++) {
      if (!isfinite(r->x[i]) || !isfinite(r->y[i]))
        continue;
      extend(r->x[i], &box[0], &box[1]);
      extend(r->y[i], &box[2], &box[3]);
      if (r->lo && r->hi) {
        extend(r->lo[i], &box[2], &box[3]);
        extend(r->hi[i], &box[2], &box[3]);
      }
    }
  }
  if (!isfinite(box[0]))
    return 0;
  for (int a = 0; a < 4; a += 2) {
    double span = box[a + 1] - box[a];
    double pad = span > 0 ? 0.05 * span : (fabs(box[a]) > 0 ? 0.05 * fabs(box[a]) : 1);
    box[a] -= pad;
    box[a + 1] += pad;
  }
  return 1;
}

static void draw_series(const rep_series *r, int colour) {
  double *x = malloc(sizeof(double) * (size_t)(2 * r->n + 1));
  double *y = malloc(sizeof(double) * (size_t)(2 * r->n + 1));
  if (!x || !y) {
    free(x);
    free(y);
    return;
  }
  /* band: the polygon hi forwards, lo backwards, over the finite points */
  if (r->lo && r->hi && r->n > 1) {
    int k = 0;
    for (int i = 0; i < r->n; i++)
      if (isfinite(r->x[i]) && isfinite(r->hi[i]) && isfinite(r->lo[i])) {
        x[k] = r->x[i];
        y[k++] = r->hi[i];
      }
    int m = k;
    for (int i = r->n - 1; i >= 0; i--)
      if (isfinite(r->x[i]) && isfinite(r->hi[i]) && isfinite(r->lo[i])) {
        x[k] = r->x[i];
        y[k++] = r->lo[i];
      }
    if (m > 1) {
      plscol0a(15, palette[colour][0], palette[colour][1], palette[colour][2], 0.2);
      plcol0(15);
      plfill(k, x, y);
    }
  }
  int k = 0;
  for (int i = 0; i < r->n; i++)
    if (isfinite(r->x[i]) && isfinite(r->y[i])) {
      x[k] = r->x[i];
      y[k++] = r->y[i];
    }
  plscol0a(14, palette[colour][0], palette[colour][1], palette[colour][2], 1.0);
  plcol0(14);
  if (r->points_only || k == 1) {
    plssym(0, 1.6);
    plpoin(k, x, y, 17); /* filled circle */
    if (r->lo && r->hi)  /* error bars for points */
      for (int i = 0; i < r->n; i++)
        if (isfinite(r->x[i]) && isfinite(r->lo[i]) && isfinite(r->hi[i])) {
          PLFLT ex[2] = {r->x[i], r->x[i]}, ey[2] = {r->lo[i], r->hi[i]};
          plline(2, ex, ey);
        }
  } else {
    plwidth(2.0);
    plline(k, x, y);
    plwidth(1.0);
  }
  free(x);
  free(y);
}

/* The legend, drawn by hand in a viewport right of the plot: a line or a
 * marker per series, then its label. (PLplot 5.15's pllegend draws a tinted
 * box and reports a spurious line-style error, so it is not used.) */
static void legend(const rep_plot *p) {
  plvpor(0.78, 0.99, 0.12, 0.9);
  plwind(0, 1, 0, 1);
  plschr(0, 0.8);
  for (int s = 0; s < p->n_series; s++) {
    const rep_series *r = &p->series[s];
    int c = s % N_PALETTE;
    double y = 0.96 - 0.07 * s;
    plscol0a(14, palette[c][0], palette[c][1], palette[c][2], 1.0);
    plcol0(14);
    if (r->points_only) {
      PLFLT x1[1] = {0.11}, y1[1] = {y};
      plssym(0, 1.6);
      plpoin(1, x1, y1, 17);
    } else {
      PLFLT x2[2] = {0.02, 0.2}, y2[2] = {y, y};
      plwidth(2.0);
      plline(2, x2, y2);
      plwidth(1.0);
    }
    plcol0(1);
    plptex(0.26, y, 1, 0, 0, r->label ? r->label : "");
  }
  plschr(0, 1.0);
}

int rep_plot_write(const rep_plot *p, const char *path, dfpo_err *err) {
  const char *dev = device_for(path);
  if (!dev)
    return dfpo_err_set(err, DFPO_EUSAGE, "%s: plot format must be .png, .svg or .pdf", path);
  double box[4];
  if (!plot_range(p, box))
    return dfpo_err_set(err, DFPO_EDATA, "%s: nothing to plot (no finite points)", path);
  size_t n = strlen(path) + 48;
  char *tmp = malloc(n);
  if (!tmp)
    return dfpo_err_set(err, DFPO_ERUNTIME, "%s: out of memory", path);
  snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());

  /* PLplot keeps global state per stream: make a fresh stream for this plot
   * and end only that one. */
  PLINT old_stream, stream;
  plgstrm(&old_stream);
  plmkstrm(&stream);
  /* With an error buffer PLplot writes its messages there instead of to
   * stderr; they go to the debug log. */
  PLINT plerr = 0;
  char plmsg[1024] = "";
  plsError(&plerr, plmsg);
  plsdev(dev);
  plsfnam(tmp);
  int w = p->width > 0 ? p->width : 800, h = p->height > 0 ? p->height : 500;
  plspage(0, 0, w, h, 0, 0);
  /* colour map 0: entry 0 is the background, 1 the axes and text */
  plscolbg(255, 255, 255);
  plscol0(1, 0, 0, 0);
  plinit();
  plscol0(12, 210, 210, 210); /* grid */
  plcol0(1);
  pladv(0);
  plvpor(0.1, 0.76, 0.12, 0.9); /* room on the right for the legend */
  plwind(box[0], box[1], box[2], box[3]);
  plcol0(12);
  plbox("g", 0, 0, "g", 0, 0);
  plcol0(1);
  plbox("bcnst", 0, 0, "bcnstv", 0, 0);
  pllab(p->xlabel ? p->xlabel : "", p->ylabel ? p->ylabel : "", p->title ? p->title : "");
  for (int s = 0; s < p->n_series; s++)
    draw_series(&p->series[s], s % N_PALETTE);
  plcol0(1);
  legend(p);
  plend1();
  plsstrm(old_stream);
  if (plerr)
    dfpo_debug("PLplot: %s", plmsg);

  int rc = DFPO_OK;
  if (access(tmp, F_OK) != 0)
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "%s: PLplot (%s) wrote no file", path, dev);
  else if (rename(tmp, path) != 0)
    rc = dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot rename the plot into place", path);
  if (rc)
    unlink(tmp);
  free(tmp);
  return rc;
}
