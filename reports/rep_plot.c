#include "reports/reports.h"

#include <errno.h>
#include <math.h>
#include <plplot.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------- styles */

/* The algorithms' styles: Okabe & Ito's colour-blind-safe palette, a
 * distinct glyph each, so that a figure printed in grey still tells them
 * apart. The table is keyed by name, never by the order of the series. */
static const struct {
  const char *algo;
  rep_style style;
} algo_styles[] = {
    {"zero-shot", {{0, 0, 0}, "◆", 0}}, {"sft", {{204, 121, 167}, "▼", 0}},
    {"ppo", {{0, 114, 178}, "■", 0}},   {"nlpo", {{0, 158, 115}, "▲", 0}},
    {"dfpo", {{213, 94, 0}, "●", 0}},
};
static const rep_style other_style = {{120, 120, 120}, "○", 0};

/* Variants: the rest of Okabe & Ito's palette, then Tol's muted colours. */
static const unsigned char variant_rgb[][3] = {{230, 159, 0},  {86, 180, 233}, {136, 34, 85},
                                               {68, 170, 153}, {153, 153, 51}, {51, 34, 136},
                                               {170, 68, 153}, {221, 204, 119}};
enum { N_VARIANT_RGB = sizeof variant_rgb / sizeof variant_rgb[0] };

rep_style rep_style_of(const char *algo) {
  for (size_t i = 0; algo && i < sizeof algo_styles / sizeof algo_styles[0]; i++)
    if (!strcmp(algo, algo_styles[i].algo))
      return algo_styles[i].style;
  return other_style;
}

rep_style rep_style_variant(const char *algo, int k) {
  rep_style s = rep_style_of(algo);
  int i = (k % N_VARIANT_RGB + N_VARIANT_RGB) % N_VARIANT_RGB;
  memcpy(s.rgb, variant_rgb[i], 3);
  s.dashed = 1;
  return s;
}

/* PLplot's line style of a series: 1 solid, 3 long dashes (a variant), 2
 * short dashes (runs under way). */
static int line_style(const rep_style *s) {
  return s->dashed == REP_LINE_UNDER_WAY ? 2 : s->dashed ? 3 : 1;
}

/* ----------------------------------------------------------------- title */

/* The title's character scale, and the average advance per character at
 * scale 1 in pixels (PNG) or points (PDF, SVG) of the cairo drivers' sans
 * font: 9.2 measured on the smoke report's titles (mixed-case English),
 * with 5% to spare. */
#define TITLE_SCALE 1.1
#define TITLE_ADVANCE_PX 9.7

static size_t utf8_len(const char *s, size_t n) {
  size_t k = 0;
  for (size_t i = 0; i < n && s[i]; i++)
    k += ((unsigned char)s[i] & 0xC0) != 0x80;
  return k;
}

double rep_title_fit(const char *title, int width, size_t *split) {
  *split = 0;
  size_t len = strlen(title);
  double room = 0.94 * width, per = TITLE_ADVANCE_PX * TITLE_SCALE;
  double one = (double)utf8_len(title, len) * per;
  if (one <= room)
    return 1.0;
  /* two lines, split at the space nearest the middle */
  size_t best = 0, mid = len / 2;
  for (size_t i = 1; i + 1 < len; i++)
    if (title[i] == ' ' &&
        (!best || (i > mid ? i - mid : mid - i) < (best > mid ? best - mid : mid - best)))
      best = i;
  double longest = one;
  if (best) {
    *split = best + 1;
    double a = (double)utf8_len(title, best) * per,
           b = (double)utf8_len(title + best + 1, len) * per;
    longest = a > b ? a : b;
  }
  return longest <= room ? 1.0 : fmax(0.4, room / longest);
}

/* ---------------------------------------------------------------- drawing */

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

/* A value on its axis: log10 on a log axis (NaN when not positive). */
static double ax(double v, int lg) {
  if (!lg)
    return v;
  return v > 0 ? log10(v) : NAN;
}

static void extend(double v, double *lo, double *hi) {
  if (!isfinite(v))
    return;
  if (v < *lo)
    *lo = v;
  if (v > *hi)
    *hi = v;
}

/* The data range of every series (bands and error bars included) in axis
 * units, padded by 5%. */
static int plot_range(const rep_plot *p, double box[4]) {
  box[0] = box[2] = INFINITY;
  box[1] = box[3] = -INFINITY;
  for (int s = 0; s < p->n_series; s++) {
    const rep_series *r = &p->series[s];
    for (int i = 0; i < r->n; i++) {
      double x = ax(r->x[i], p->xlog), y = ax(r->y[i], p->ylog);
      if (!isfinite(x) || !isfinite(y))
        continue;
      extend(x, &box[0], &box[1]);
      extend(y, &box[2], &box[3]);
      if (r->lo && r->hi) {
        extend(ax(r->lo[i], p->ylog), &box[2], &box[3]);
        extend(ax(r->hi[i], p->ylog), &box[2], &box[3]);
      }
      if (r->xlo && r->xhi) {
        extend(ax(r->xlo[i], p->xlog), &box[0], &box[1]);
        extend(ax(r->xhi[i], p->xlog), &box[0], &box[1]);
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

static void set_colour(int idx, const rep_style *st, double alpha) {
  plscol0a(idx, st->rgb[0], st->rgb[1], st->rgb[2], alpha);
  plcol0(idx);
}

static void draw_series(const rep_plot *p, const rep_series *r) {
  size_t m = (size_t)(2 * r->n + 1);
  double *x = malloc(sizeof(double) * m), *y = malloc(sizeof(double) * m);
  if (!x || !y) {
    free(x);
    free(y);
    return;
  }
  int xl = p->xlog, yl = p->ylog;
  /* band: the polygon hi forwards, lo backwards, over the finite points */
  if (r->lo && r->hi && r->n > 1 && !r->points_only) {
    int k = 0;
    for (int i = 0; i < r->n; i++)
      if (isfinite(ax(r->x[i], xl)) && isfinite(ax(r->hi[i], yl)) && isfinite(ax(r->lo[i], yl))) {
        x[k] = ax(r->x[i], xl);
        y[k++] = ax(r->hi[i], yl);
      }
    int half = k;
    for (int i = r->n - 1; i >= 0; i--)
      if (isfinite(ax(r->x[i], xl)) && isfinite(ax(r->hi[i], yl)) && isfinite(ax(r->lo[i], yl))) {
        x[k] = ax(r->x[i], xl);
        y[k++] = ax(r->lo[i], yl);
      }
    if (half > 1) {
      set_colour(15, &r->style, 0.18);
      plfill(k, x, y);
    }
  }
  int k = 0;
  for (int i = 0; i < r->n; i++)
    if (isfinite(ax(r->x[i], xl)) && isfinite(ax(r->y[i], yl))) {
      x[k] = ax(r->x[i], xl);
      y[k++] = ax(r->y[i], yl);
    }
  set_colour(14, &r->style, 1.0);
  /* error bars of points, in both directions */
  if (r->points_only || k == 1)
    for (int i = 0; i < r->n; i++) {
      double xi = ax(r->x[i], xl), yi = ax(r->y[i], yl);
      if (!isfinite(xi) || !isfinite(yi))
        continue;
      plwidth(1.2);
      if (r->lo && r->hi && isfinite(ax(r->lo[i], yl)) && isfinite(ax(r->hi[i], yl))) {
        PLFLT ex[1] = {xi}, lo[1] = {ax(r->lo[i], yl)}, hi[1] = {ax(r->hi[i], yl)};
        plerry(1, ex, lo, hi);
      }
      if (r->xlo && r->xhi && isfinite(ax(r->xlo[i], xl)) && isfinite(ax(r->xhi[i], xl))) {
        PLFLT ey[1] = {yi}, lo[1] = {ax(r->xlo[i], xl)}, hi[1] = {ax(r->xhi[i], xl)};
        plerrx(1, lo, hi, ey);
      }
      plwidth(1.0);
    }
  if (k > 1 && (!r->points_only || r->connect)) {
    pllsty(line_style(&r->style));
    plwidth(r->points_only ? 1.0 : 2.0);
    plline(k, x, y);
    plwidth(1.0);
    pllsty(1);
  }
  /* markers: every point of a short series, at most about 12 of a long one */
  int every = k > 12 ? (k + 11) / 12 : 1;
  plschr(0, r->points_only ? 1.1 : 0.8);
  for (int i = 0; r->style.marker && r->style.marker[0] && i < k; i++)
    if (r->points_only || i % every == 0 || i == k - 1) {
      PLFLT mx[1] = {x[i]}, my[1] = {y[i]};
      plstring(1, mx, my, r->style.marker);
    }
  plschr(0, 1.0);
  /* tags beside points (the frontier's beta values) */
  if (r->tags) {
    PLFLT w0, w1, h0, h1;
    plgvpw(&w0, &w1, &h0, &h1);
    plschr(0, 0.75);
    plcol0(1);
    for (int i = 0; i < r->n; i++) {
      double xi = ax(r->x[i], xl), yi = ax(r->y[i], yl);
      /* right of the point, or left of it in the right quarter, so that
       * the text stays inside the frame */
      int left = xi > w0 + 0.75 * (w1 - w0);
      if (r->tags[i] && isfinite(xi) && isfinite(yi))
        plptex(xi + (left ? -0.012 : 0.012) * (w1 - w0), yi + 0.03 * (h1 - h0), 1, 0, left ? 1 : 0,
               r->tags[i]);
    }
    plschr(0, 1.0);
  }
  free(x);
  free(y);
}

/* Ticks and labels of a log10 axis, drawn by hand: PLplot labels decades
 * only, and a perplexity axis often spans less than one. Labels at 1, 2, 5
 * times a power of ten (every 1..9 when that gives fewer than three), minor
 * ticks at the others. */
static void log_axis(int is_x, double lo, double hi) {
  int steps_a[] = {1, 2, 5}, steps_b[] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  int *steps = steps_a, ns = 3, count = 0;
  for (int pass = 0; pass < 2; pass++) {
    count = 0;
    for (int e = (int)floor(lo) - 1; e <= (int)ceil(hi); e++)
      for (int j = 0; j < ns; j++) {
        double v = log10(steps[j]) + e;
        count += v >= lo && v <= hi;
      }
    if (count >= 3 || pass == 1)
      break;
    steps = steps_b;
    ns = 9;
  }
  PLFLT wx0, wx1, wy0, wy1;
  plgvpw(&wx0, &wx1, &wy0, &wy1);
  double tick = is_x ? (wy1 - wy0) * 0.015 : (wx1 - wx0) * 0.01;
  double last = -INFINITY;
  for (int e = (int)floor(lo) - 1; e <= (int)ceil(hi); e++)
    for (int d = 1; d <= 9; d++) {
      double v = log10(d) + e;
      if (v < lo || v > hi)
        continue;
      int labelled = 0;
      for (int j = 0; j < ns; j++)
        labelled |= steps[j] == d;
      /* with every digit labelled, none crowding one before it or a 1, 2
       * or 5 after it (9 beside 10: 10 keeps its label) */
      if (labelled && ns == 9 && d != 1 && d != 2 && d != 5) {
        double next = log10(d < 5 ? 5 : 10) + e, gap = 0.07 * (hi - lo);
        if (v - last < gap || (next <= hi && next - v < gap))
          labelled = 0;
      }
      if (labelled)
        last = v;
      double t = labelled ? tick * 2 : tick;
      if (is_x) {
        if (labelled) {
          plcol0(12);
          pljoin(v, wy0, v, wy1);
          plcol0(1);
        }
        pljoin(v, wy0, v, wy0 + t);
        pljoin(v, wy1, v, wy1 - t);
      } else {
        if (labelled) {
          plcol0(12);
          pljoin(wx0, v, wx1, v);
          plcol0(1);
        }
        pljoin(wx0, v, wx0 + t, v);
        pljoin(wx1, v, wx1 - t, v);
      }
      if (labelled) {
        char buf[32];
        snprintf(buf, sizeof buf, "%g", pow(10, v));
        double pos = is_x ? (v - wx0) / (wx1 - wx0) : (v - wy0) / (wy1 - wy0);
        if (is_x)
          plmtex("b", 1.5, pos, 0.5, buf);
        else
          plmtex("lv", 0.6, pos, 1.0, buf);
      }
    }
}

/* The legend, drawn by hand in a viewport right of the plot: a line and a
 * marker per series, then its label, then the note. (PLplot 5.15's pllegend
 * draws a tinted box and reports a spurious line-style error, so it is not
 * used.) */
static void legend(const rep_plot *p) {
  plvpor(0.78, 0.99, 0.12, 0.9);
  plwind(0, 1, 0, 1);
  plschr(0, 0.8);
  double y = 0.96;
  for (int s = 0; s < p->n_series; s++, y -= 0.07) {
    const rep_series *r = &p->series[s];
    set_colour(14, &r->style, 1.0);
    if (!r->points_only || r->connect) {
      PLFLT x2[2] = {0.02, 0.2}, y2[2] = {y, y};
      pllsty(line_style(&r->style));
      plwidth(r->points_only ? 1.0 : 2.0);
      plline(2, x2, y2);
      plwidth(1.0);
      pllsty(1);
    }
    PLFLT x1[1] = {0.11}, y1[1] = {y};
    if (r->style.marker && r->style.marker[0])
      plstring(1, x1, y1, r->style.marker);
    plcol0(1);
    /* a label longer than the legend's width is set smaller */
    const char *lab = r->label ? r->label : "";
    double room = 0.72 * 0.21 * (p->width > 0 ? p->width : 800),
           need = utf8_len(lab, strlen(lab)) * TITLE_ADVANCE_PX * 0.8;
    plschr(0, need > room ? 0.8 * room / need : 0.8);
    plptex(0.26, y, 1, 0, 0, lab);
    plschr(0, 0.8);
  }
  if (p->note) {
    /* the note in lines of about 26 characters, at word boundaries */
    plschr(0, 0.7);
    const char *s = p->note;
    y -= 0.02;
    while (*s && y > 0.0) {
      size_t n = strlen(s), cut = n;
      if (utf8_len(s, n) > 26) {
        cut = 0;
        for (size_t i = 0; i < n && utf8_len(s, i) <= 26; i++)
          if (s[i] == ' ')
            cut = i;
        if (!cut)
          cut = n;
      }
      char line[128];
      snprintf(line, sizeof line, "%.*s", (int)(cut < sizeof line ? cut : sizeof line - 1), s);
      plptex(0.02, y, 1, 0, 0, line);
      y -= 0.055;
      s += cut;
      while (*s == ' ')
        s++;
    }
  }
  plschr(0, 1.0);
}

static void title(const rep_plot *p, int w) {
  if (!p->title)
    return;
  size_t split;
  double sc = rep_title_fit(p->title, w, &split);
  plvpor(0.0, 1.0, 0.0, 1.0);
  plwind(0, 1, 0, 1);
  plschr(0, TITLE_SCALE * sc);
  if (!split) {
    plmtex("t", -1.6, 0.5, 0.5, p->title);
  } else {
    char *a = strndup(p->title, split - 1);
    if (a) {
      plmtex("t", -1.4, 0.5, 0.5, a);
      plmtex("t", -2.7, 0.5, 0.5, p->title + split);
      free(a);
    }
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
  plscol0(12, 215, 215, 215); /* grid */
  plcol0(1);
  pladv(0);
  title(p, w);
  plvpor(0.1, 0.76, 0.12, 0.86); /* room on the right for the legend, above for the title */
  plwind(box[0], box[1], box[2], box[3]);
  plcol0(12);
  plbox(p->xlog ? "" : "g", 0, 0, p->ylog ? "" : "g", 0, 0);
  plcol0(1);
  plbox(p->xlog ? "bc" : "bcnst", 0, 0, p->ylog ? "bc" : "bcnstv", 0, 0);
  if (p->xlog)
    log_axis(1, box[0], box[1]);
  if (p->ylog)
    log_axis(0, box[2], box[3]);
  plcol0(1);
  pllab(p->xlabel ? p->xlabel : "", p->ylabel ? p->ylabel : "", "");
  for (int s = 0; s < p->n_series; s++)
    draw_series(p, &p->series[s]);
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
