#include "common/common.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double dfpo_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void fmt_count(char *buf, size_t n, double v, int bytes) {
  if (!bytes) {
    snprintf(buf, n, "%.0f", v);
    return;
  }
  static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    u++;
  }
  snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
}

void dfpo_format_hms(double s, char *buf, size_t n) {
  if (!(s >= 0) || s > 359999.0) /* NaN, negative, or past 99:59:59 */
    snprintf(buf, n, "--:--:--");
  else
    snprintf(buf, n, "%d:%02d:%02d", (int)s / 3600, ((int)s / 60) % 60, (int)s % 60);
}

static void fmt_duration(char *buf, size_t n, double s) {
  if (s < 0 || s > 359999)
    snprintf(buf, n, "--:--");
  else if (s >= 3600)
    dfpo_format_hms(s, buf, n);
  else
    snprintf(buf, n, "%02d:%02d", (int)s / 60, (int)s % 60);
}

void dfpo_progress_start(dfpo_progress *p, const char *label, uint64_t total, int bytes) {
  memset(p, 0, sizeof *p);
  snprintf(p->label, sizeof p->label, "%s", label);
  p->total = total;
  p->bytes = bytes;
  p->out = stderr;
  p->tty = isatty(fileno(stderr));
  const char *nc = getenv("NO_COLOR");
  p->color = p->tty && !(nc && nc[0]);
  p->plain_interval_s = 10.0;
  p->t_start = dfpo_now();
  p->t_last_draw = p->t_start;
  p->active = 1;
}

void dfpo_progress_format(const dfpo_progress *p, double now, char *buf, size_t n) {
  double el = now - p->t_start;
  double rate = el > 0 ? (double)p->done / el : 0;
  char done[32], total[32], rs[32], eta[16];
  fmt_count(done, sizeof done, (double)p->done, p->bytes);
  fmt_count(rs, sizeof rs, rate, p->bytes);
  if (p->total) {
    fmt_count(total, sizeof total, (double)p->total, p->bytes);
    fmt_duration(eta, sizeof eta, rate > 0 ? (double)(p->total - p->done) / rate : -1);
    double frac = (double)p->done / (double)p->total;
    if (frac > 1)
      frac = 1;
    char bar[21];
    int fill = (int)(frac * 20);
    for (int i = 0; i < 20; i++)
      bar[i] = i < fill ? '#' : '-';
    bar[20] = '\0';
    snprintf(buf, n, "%s [%s] %5.1f%% %s/%s %s/s ETA %s", p->label, bar, 100 * frac, done, total,
             rs, eta);
  } else {
    fmt_duration(eta, sizeof eta, el);
    snprintf(buf, n, "%s %s %s/s elapsed %s", p->label, done, rs, eta);
  }
}

static void progress_draw(dfpo_progress *p, double now, int final) {
  char line[256];
  dfpo_progress_format(p, now, line, sizeof line);
  if (p->tty) {
    if (p->color)
      fprintf(p->out, "\r\033[2K\033[36m%s\033[0m%s", line, final ? "\n" : "");
    else
      fprintf(p->out, "\r%-78s%s", line, final ? "\n" : "");
  } else {
    fprintf(p->out, "%s\n", line);
  }
  fflush(p->out);
  p->t_last_draw = now;
}

void dfpo_progress_update(dfpo_progress *p, uint64_t done) {
  if (!p->active)
    return;
  p->done = done;
  double now = dfpo_now();
  double interval = p->tty ? 0.1 : p->plain_interval_s;
  if (now - p->t_last_draw >= interval)
    progress_draw(p, now, 0);
}

void dfpo_progress_finish(dfpo_progress *p) {
  if (!p->active)
    return;
  progress_draw(p, dfpo_now(), 1);
  p->active = 0;
}
