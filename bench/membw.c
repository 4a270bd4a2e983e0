/* The machine's memory read bandwidth, the floor of weight-bound decoding:
 * sums a float array of SIZE MiB (default 2048, far beyond the caches) on
 * all OpenMP threads, each thread its own contiguous part, the best of REPS
 * passes after a warm-up pass; prints one JSON line with GB/s (1e9 bytes).
 * Built and run by bench/decode_floor.sh. */
#define _POSIX_C_SOURCE 200809L
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
  long mib = argc > 1 ? atol(argv[1]) : 2048;
  int reps = argc > 2 ? atoi(argv[2]) : 5;
  if (mib <= 0 || reps <= 0) {
    fprintf(stderr, "usage: membw [MIB [REPS]]\n");
    return 2;
  }
  size_t n = (size_t)mib * 1024 * 1024 / sizeof(float);
  float *a = aligned_alloc(64, n * sizeof *a);
  if (!a) {
    fprintf(stderr, "membw: out of memory\n");
    return 1;
  }
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) /* first touch by the thread that reads it */
    a[i] = (float)(i % 13) * 0.5f;
  double best = 1e30, sink = 0;
  for (int r = 0; r <= reps; r++) {
    double t0 = now(), s = 0;
#pragma omp parallel for simd schedule(static) reduction(+ : s)
    for (size_t i = 0; i < n; i++)
      s += a[i];
    double t = now() - t0;
    sink += s;
    if (r > 0 && t < best)
      best = t;
  }
  printf("{\"mib\": %ld, \"best_s\": %.6f, \"gb_per_s\": %.1f, \"threads\": %d, \"sum\": %.1f}\n",
         mib, best, (double)n * sizeof(float) / best / 1e9, omp_get_max_threads(), sink);
  free(a);
  return 0;
}
