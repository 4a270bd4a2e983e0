#include "reports/reports.h"
#include "tests/support/support.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

static char dir[256];
static void setup(void) {
  ts_tmpdir(dir, sizeof dir);
}
static void teardown(void) {
  ts_rmtree(dir);
}
TestSuite(plots, .init = setup, .fini = teardown);

/* A learning-curve plot: two algorithms with bands over seeds, and a single
 * point (DfPO on a frontier). */
static const double it[6] = {0, 10, 20, 30, 40, 50};
static const double ppo[6] = {0.5, 0.6, 0.7, 0.75, 0.8, 0.82};
static const double ppo_lo[6] = {0.45, 0.55, 0.63, 0.7, 0.74, 0.77};
static const double ppo_hi[6] = {0.55, 0.65, 0.77, 0.8, 0.86, 0.87};
static const double dfpo[6] = {0.5, 0.58, 0.66, NAN, 0.77, 0.8};
static const double px[1] = {25}, py[1] = {0.9}, plo[1] = {0.85}, phi[1] = {0.95};

static rep_plot make_plot(rep_series *s) {
  s[0] = (rep_series){.label = "PPO", .n = 6, .x = it, .y = ppo, .lo = ppo_lo, .hi = ppo_hi};
  s[0].style = rep_style_of("ppo");
  s[1] = (rep_series){.label = "DfPO", .n = 6, .x = it, .y = dfpo};
  s[1].style = rep_style_of("dfpo");
  s[2] = (rep_series){
      .label = "point", .n = 1, .x = px, .y = py, .lo = plo, .hi = phi, .points_only = 1};
  s[2].style = rep_style_variant("ppo", 0);
  return (rep_plot){.title = "Reward over iterations",
                    .xlabel = "iteration",
                    .ylabel = "reward",
                    .n_series = 3,
                    .series = s,
                    .width = 640,
                    .height = 400};
}

static unsigned char *slurp(const char *path, size_t *len) {
  FILE *fp = fopen(path, "rb");
  cr_assert_not_null(fp, "%s not written", path);
  unsigned char *buf = malloc(1 << 22);
  *len = fread(buf, 1, 1 << 22, fp);
  fclose(fp);
  return buf;
}

Test(plots, png_has_the_requested_size) {
  rep_series s[3];
  rep_plot p = make_plot(s);
  char path[300];
  snprintf(path, sizeof path, "%s/curve.png", dir);
  dfpo_err err;
  cr_assert_eq(rep_plot_write(&p, path, &err), DFPO_OK, "%s", err.msg);
  size_t len;
  unsigned char *b = slurp(path, &len);
  cr_assert_gt(len, 1000);
  cr_expect_eq(memcmp(b, "\x89PNG\r\n\x1a\n", 8), 0, "PNG signature");
  /* IHDR: width and height, big endian, at bytes 16..23 */
  unsigned w = (unsigned)b[16] << 24 | b[17] << 16 | b[18] << 8 | b[19];
  unsigned h = (unsigned)b[20] << 24 | b[21] << 16 | b[22] << 8 | b[23];
  cr_expect_eq(w, 640);
  cr_expect_eq(h, 400);
  /* not a blank page: many distinct bytes in the compressed image */
  int seen[256] = {0}, distinct = 0;
  for (size_t i = 0; i < len; i++)
    distinct += !seen[b[i]]++;
  cr_expect_gt(distinct, 200);
  free(b);
}

Test(plots, svg_and_pdf) {
  rep_series s[3];
  rep_plot p = make_plot(s);
  char path[300];
  dfpo_err err;
  size_t len;
  snprintf(path, sizeof path, "%s/curve.svg", dir);
  cr_assert_eq(rep_plot_write(&p, path, &err), DFPO_OK, "%s", err.msg);
  unsigned char *b = slurp(path, &len);
  b[len < (1 << 22) ? len : len - 1] = 0;
  cr_expect(strstr((char *)b, "<svg") != NULL);
  free(b);
  snprintf(path, sizeof path, "%s/curve.pdf", dir);
  cr_assert_eq(rep_plot_write(&p, path, &err), DFPO_OK, "%s", err.msg);
  b = slurp(path, &len);
  cr_expect_eq(memcmp(b, "%PDF", 4), 0);
  free(b);
}

Test(plots, bad_requests_fail_without_leaving_files) {
  rep_series s[3];
  rep_plot p = make_plot(s);
  char path[300];
  dfpo_err err;
  snprintf(path, sizeof path, "%s/curve.gif", dir);
  cr_expect_eq(rep_plot_write(&p, path, &err), DFPO_EUSAGE);
  cr_expect(strstr(err.msg, "curve.gif: plot format must be .png, .svg or .pdf") != NULL, "%s",
            err.msg);
  const double nan1[1] = {NAN};
  rep_series empty = {.label = "nothing", .n = 1, .x = nan1, .y = nan1};
  rep_plot q = {.title = "t", .xlabel = "x", .ylabel = "y", .n_series = 1, .series = &empty};
  snprintf(path, sizeof path, "%s/empty.png", dir);
  cr_expect_eq(rep_plot_write(&q, path, &err), DFPO_EDATA);
  cr_expect_eq(access(path, F_OK), -1);
}

/* ------------------------------------------------------------ styles */

static int same_rgb(rep_style s, int r, int g, int b) {
  return s.rgb[0] == r && s.rgb[1] == g && s.rgb[2] == b;
}

/* The mapping is by name: Okabe & Ito's blue for PPO, vermillion for DfPO,
 * bluish green for NLPO, reddish purple for SFT, black for zero-shot (the
 * palette's published RGB values), each with its glyph; a variant keeps
 * its algorithm's glyph, dashed, in the k-th variant colour. */
Test(plots, styles_are_fixed_per_algorithm) {
  cr_expect(same_rgb(rep_style_of("ppo"), 0, 114, 178));
  cr_expect(same_rgb(rep_style_of("dfpo"), 213, 94, 0));
  cr_expect(same_rgb(rep_style_of("nlpo"), 0, 158, 115));
  cr_expect(same_rgb(rep_style_of("sft"), 204, 121, 167));
  cr_expect(same_rgb(rep_style_of("zero-shot"), 0, 0, 0));
  cr_expect_str_eq(rep_style_of("dfpo").marker, "●");
  cr_expect_str_eq(rep_style_of("ppo").marker, "■");
  cr_expect_str_eq(rep_style_of("nlpo").marker, "▲");
  cr_expect(same_rgb(rep_style_of("something else"), 120, 120, 120));
  cr_expect(same_rgb(rep_style_of(NULL), 120, 120, 120));
  rep_style v = rep_style_variant("ppo", 0);
  cr_expect(same_rgb(v, 230, 159, 0) && v.dashed && !strcmp(v.marker, "■"));
  cr_expect(same_rgb(rep_style_variant("dfpo", 1), 86, 180, 233));
  cr_expect(same_rgb(rep_style_variant("dfpo", 9), 86, 180, 233), "the 8 colours repeat");
  cr_expect(!rep_style_of("ppo").dashed);
}

/* cairo's SVG colour for an RGB triple: rgb(83.529412%,36.862745%,0%),
 * percentages with trailing zeros cut. */
static void svg_rgb(const unsigned char rgb[3], char *buf, size_t n) {
  size_t o = (size_t)snprintf(buf, n, "rgb(");
  for (int i = 0; i < 3; i++) {
    char c[32];
    snprintf(c, sizeof c, "%f", 100.0 * rgb[i] / 255);
    char *e = c + strlen(c) - 1;
    while (*e == '0')
      *e-- = '\0';
    if (*e == '.')
      *e = '\0';
    o += (size_t)snprintf(buf + o, n - o, "%s%%%s", c, i < 2 ? "," : ")");
  }
}

static char *svg_of(const char *const *algos, int n, const char *name) {
  double x[2] = {0, 1}, y[2] = {0.2, 0.4};
  rep_series s[4];
  for (int i = 0; i < n; i++) {
    s[i] = (rep_series){.label = algos[i], .n = 2, .x = x, .y = y};
    s[i].style = rep_style_of(algos[i]);
  }
  rep_plot p = {.title = "t", .xlabel = "x", .ylabel = "y", .n_series = n, .series = s};
  char path[300];
  snprintf(path, sizeof path, "%s/%s.svg", dir, name);
  dfpo_err err;
  cr_assert_eq(rep_plot_write(&p, path, &err), DFPO_OK, "%s", err.msg);
  size_t len;
  unsigned char *b = slurp(path, &len);
  b[len < (1 << 22) ? len : len - 1] = 0;
  return (char *)b;
}

/* Two figures with different subsets and orders of algorithms: DfPO is
 * drawn in its vermillion in both (first in one, second in the other), and
 * PPO's blue appears only where PPO is. */
Test(plots, an_algorithm_keeps_its_colour_across_figures) {
  const char *const a[] = {"dfpo", "ppo"}, *const b[] = {"zero-shot", "nlpo", "dfpo"};
  char *sa = svg_of(a, 2, "a"), *sb = svg_of(b, 3, "b");
  char dfpo_c[96], ppo_c[96], nlpo_c[96];
  svg_rgb(rep_style_of("dfpo").rgb, dfpo_c, sizeof dfpo_c);
  svg_rgb(rep_style_of("ppo").rgb, ppo_c, sizeof ppo_c);
  svg_rgb(rep_style_of("nlpo").rgb, nlpo_c, sizeof nlpo_c);
  cr_expect_str_eq(dfpo_c, "rgb(83.529412%,36.862745%,0%)");
  cr_expect(strstr(sa, dfpo_c) && strstr(sb, dfpo_c), "DfPO's %s in both figures", dfpo_c);
  cr_expect(strstr(sa, ppo_c) && !strstr(sb, ppo_c), "PPO's %s only in the first", ppo_c);
  cr_expect(strstr(sb, nlpo_c) && !strstr(sa, nlpo_c));
  free(sa);
  free(sb);
}

/* ------------------------------------------------------------ titles */

/* rep_title_fit at 800 wide: room 0.94 * 800 = 752, 9.7 * 1.1 = 10.67 per
 * character. 60 characters (640.2) fit on one line; 100 (1067) go on two
 * lines of 49 and 50 (at most 533.5): scale 1; 200 on two lines of 99 and
 * 100 (1067): scale 752 / 1067 = 0.7048. */
Test(plots, title_fit_by_hand) {
  char t[256];
  size_t split;
  memset(t, 'a', 60);
  t[60] = 0;
  cr_expect_eq(rep_title_fit(t, 800, &split), 1.0);
  cr_expect_eq(split, 0);
  for (int i = 0; i < 100; i++)
    t[i] = i == 49 ? ' ' : 'a';
  t[100] = 0;
  cr_expect_eq(rep_title_fit(t, 800, &split), 1.0);
  cr_expect_eq(split, 50);
  for (int i = 0; i < 200; i++)
    t[i] = i == 99 ? ' ' : 'a';
  t[200] = 0;
  double sc = rep_title_fit(t, 800, &split);
  cr_expect_eq(split, 100);
  cr_expect(fabs(sc - 752 / (100 * 9.7 * 1.1)) < 1e-12, "%g", sc);
}

/* A PNG of cairo's (8-bit RGB or RGBA, not interlaced) decoded with zlib:
 * the IDAT stream inflated and each row's filter undone (PNG spec, 9). */
static unsigned char *png_decode(const unsigned char *b, size_t len, unsigned *w, unsigned *h,
                                 int *ch) {
  size_t i = 8, nidat = 0;
  unsigned char *idat = malloc(len);
  *w = *h = 0;
  *ch = 0;
  while (i + 12 <= len) {
    unsigned n = (unsigned)b[i] << 24 | b[i + 1] << 16 | b[i + 2] << 8 | b[i + 3];
    cr_assert(n <= len - i - 12, "PNG chunk at %zu runs past the file", i);
    const unsigned char *d = b + i + 8;
    if (!memcmp(b + i + 4, "IHDR", 4)) {
      *w = (unsigned)d[0] << 24 | d[1] << 16 | d[2] << 8 | d[3];
      *h = (unsigned)d[4] << 24 | d[5] << 16 | d[6] << 8 | d[7];
      cr_assert_eq(d[8], 8, "8-bit samples");
      *ch = d[9] == 6 ? 4 : 3;
    } else if (!memcmp(b + i + 4, "IDAT", 4)) {
      memcpy(idat + nidat, d, n);
      nidat += n;
    }
    i += 12 + n;
  }
  cr_assert(*w > 0 && *h > 0 && *ch > 0, "no IHDR chunk");
  size_t stride = (size_t)*w * (size_t)*ch;
  uLongf rawlen = (uLongf)((stride + 1) * *h);
  unsigned char *raw = malloc(rawlen), *img = calloc(stride, *h);
  cr_assert_eq(uncompress(raw, &rawlen, idat, nidat), Z_OK);
  for (unsigned y = 0; y < *h; y++) {
    unsigned char f = raw[y * (stride + 1)], *in = raw + y * (stride + 1) + 1,
                  *row = img + y * stride, *up = y ? row - stride : NULL;
    for (size_t x = 0; x < stride; x++) {
      int a = x >= (size_t)*ch ? row[x - *ch] : 0, bb = up ? up[x] : 0,
          c = up && x >= (size_t)*ch ? up[x - *ch] : 0, pr;
      switch (f) {
      case 1:
        pr = a;
        break;
      case 2:
        pr = bb;
        break;
      case 3:
        pr = (a + bb) / 2;
        break;
      case 4: {
        int p = a + bb - c, pa = abs(p - a), pb = abs(p - bb), pc = abs(p - c);
        pr = pa <= pb && pa <= pc ? a : pb <= pc ? bb : c;
        break;
      }
      default:
        pr = 0;
      }
      row[x] = (unsigned char)(in[x] + pr);
    }
  }
  free(raw);
  free(idat);
  return img;
}

/* The leftmost and rightmost dark pixel in the top rows (the title's
 * band, above the plot's frame at 14% of the height). */
static void title_ink(const char *title, int *left, int *right, unsigned *width) {
  rep_series s[3];
  rep_plot p = make_plot(s);
  p.title = title;
  p.width = 800;
  p.height = 500;
  char path[300];
  snprintf(path, sizeof path, "%s/title.png", dir);
  dfpo_err err;
  cr_assert_eq(rep_plot_write(&p, path, &err), DFPO_OK, "%s", err.msg);
  size_t len;
  unsigned char *b = slurp(path, &len);
  unsigned w, h;
  int ch;
  unsigned char *img = png_decode(b, len, &w, &h, &ch);
  *left = -1;
  *right = -1;
  for (unsigned y = 0; y < h * 12 / 100; y++)
    for (unsigned x = 0; x < w; x++) {
      const unsigned char *q = img + ((size_t)y * w + x) * (size_t)ch;
      if (q[0] + q[1] + q[2] < 300) {
        if (*left < 0 || (int)x < *left)
          *left = (int)x;
        if ((int)x > *right)
          *right = (int)x;
      }
    }
  *width = w;
  free(img);
  free(b);
}

/* The cut title ("ynthetic: ...") was 80 characters drawn over the
 * plot's viewport; these, short, long and very long, all keep a margin of
 * white on both sides of the page. */
Test(plots, titles_fit_the_page) {
  static const char *const titles[] = {
      "Reward", "Synthetic language: test reward against NLL/word (means, 95% CI over seeds)",
      "Synthetic language: Validation perplexity (ref) (mean over seeds, 95% CI, band on the "
      "log scale), a title far too long for one line of an 800-pixel page",
      "An extremely long title that would not fit on two lines either, made of many ordinary "
      "English words and numbers such as 0.95 and 12.7, repeated: an extremely long title that "
      "would not fit on two lines either"};
  for (size_t i = 0; i < sizeof titles / sizeof titles[0]; i++) {
    int left, right;
    unsigned w;
    title_ink(titles[i], &left, &right, &w);
    cr_expect(left > 8 && right < (int)w - 8, "title %zu: ink from x = %d to %d of %u", i, left,
              right, w);
  }
}

/* Perplexity on a log axis: values from 12 to 118 and a band on the log
 * scale; a value not above 0 is left out, not an error. */
Test(plots, log_axis) {
  const double x[4] = {0, 1, 2, 3}, y[4] = {12, 30, 118, -1}, lo[4] = {10, 20, 60, 1},
               hi[4] = {14, 45, 230, 1};
  rep_series s = {.label = "PPO", .n = 4, .x = x, .y = y, .lo = lo, .hi = hi};
  s.style = rep_style_of("ppo");
  rep_plot p = {
      .title = "ppl", .xlabel = "it", .ylabel = "ppl", .n_series = 1, .series = &s, .ylog = 1};
  char path[300];
  snprintf(path, sizeof path, "%s/log.png", dir);
  dfpo_err err;
  cr_assert_eq(rep_plot_write(&p, path, &err), DFPO_OK, "%s", err.msg);
  cr_expect_eq(access(path, F_OK), 0);
}
