#include "reports/reports.h"
#include "tests/support/support.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
  s[0] = (rep_series){"PPO", 6, it, ppo, ppo_lo, ppo_hi, 0};
  s[1] = (rep_series){"DfPO", 6, it, dfpo, NULL, NULL, 0};
  s[2] = (rep_series){"point", 1, px, py, plo, phi, 1};
  return (rep_plot){"Reward over iterations", "iteration", "reward", 3, s, 640, 400};
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
  rep_series empty = {"nothing", 1, nan1, nan1, NULL, NULL, 0};
  rep_plot q = {"t", "x", "y", 1, &empty, 0, 0};
  snprintf(path, sizeof path, "%s/empty.png", dir);
  cr_expect_eq(rep_plot_write(&q, path, &err), DFPO_EDATA);
  cr_expect_eq(access(path, F_OK), -1);
}
