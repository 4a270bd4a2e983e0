/* The machine's ceiling for float32 products: C = A B at N x N x N
 * (default 4096) with OpenBLAS's sgemm on its own threads, the best of a
 * few runs after a warm-up; prints one JSON line with GFLOP/s. Built and run
 * by bench/ceiling.sh, which chooses OpenBLAS's kernels and thread count. */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 4096, reps = argc > 2 ? atoi(argv[2]) : 3;
  if (n <= 0 || reps <= 0) {
    fprintf(stderr, "usage: ceiling [N [REPS]]\n");
    return 2;
  }
  size_t nn = (size_t)n * n;
  float *a = malloc(nn * sizeof *a), *b = malloc(nn * sizeof *b), *c = malloc(nn * sizeof *c);
  if (!a || !b || !c) {
    fprintf(stderr, "ceiling: out of memory\n");
    return 1;
  }
  for (size_t i = 0; i < nn; i++) {
    a[i] = (float)(i % 97) * 0.01f - 0.5f;
    b[i] = (float)(i % 89) * 0.01f - 0.4f;
    c[i] = 0.0f;
  }
  double best = 1e30;
  for (int r = 0; r <= reps; r++) { /* run 0 warms up */
    double t0 = now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    double t = now() - t0;
    if (r > 0 && t < best)
      best = t;
  }
  printf("{\"n\": %d, \"best_s\": %.6f, \"gflops\": %.1f, \"openblas\": \"%s\", \"threads\": %d}\n",
         n, best, 2.0 * n * nn / best / 1e9, openblas_get_corename(), openblas_get_num_threads());
  free(a);
  free(b);
  free(c);
  return 0;
}
