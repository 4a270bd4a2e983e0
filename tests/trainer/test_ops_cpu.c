/* The CPU backend op by op. Gradients: central finite differences (h = 1e-3,
 * float32) of the objective sum(dout * out) with a random dout, compared in
 * the L2 norm per input (relative error below 1e-2; a wrong term is off by
 * far more). Forward values: against double-precision formulas written out
 * here. The same checks are the contract a second backend must meet. */
#include "trainer/ops.h"
#include "trainer/ops_cpu_gemm.h"

#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

static const ops_backend *O = &ops_cpu;

static float *rnd(size_t n, uint64_t seed, float sd) {
  float *x = malloc(n * sizeof(float));
  dfpo_rng r;
  dfpo_rng_init(&r, seed, 9);
  for (size_t i = 0; i < n; i++)
    x[i] = (float)dfpo_rng_normal(&r) * sd;
  return x;
}

static double dot(const float *a, const float *b, size_t n) {
  double s = 0.0;
  for (size_t i = 0; i < n; i++)
    s += (double)a[i] * b[i];
  return s;
}

typedef double (*obj_fn)(void *ctx);

static void fd_check(const char *what, float *x, const float *g, size_t n, obj_fn f, void *ctx) {
  const float h = 1e-3f;
  double num = 0.0, dg = 0.0, df = 0.0;
  for (size_t i = 0; i < n; i++) {
    float old = x[i];
    x[i] = old + h;
    double fp = f(ctx);
    x[i] = old - h;
    double fm = f(ctx);
    x[i] = old;
    double fd = (fp - fm) / (2.0 * h);
    num += (g[i] - fd) * (g[i] - fd);
    dg += (double)g[i] * g[i];
    df += fd * fd;
  }
  double rel = sqrt(num) / (sqrt(dg) + sqrt(df) + 1e-12);
  cr_expect(sqrt(dg) > 1e-6, "%s: zero gradient", what);
  cr_expect_lt(rel, 1e-2, "%s: relative error %.3g (|g| %.3g |fd| %.3g)", what, rel, sqrt(dg),
               sqrt(df));
}

/* ----------------------------------------------------------- matmul */

typedef struct {
  float *out, *inp, *w, *b, *dout;
  int M, K, N;
} mm_ctx;
static double mm_obj(void *v) {
  mm_ctx *c = v;
  O->matmul_fwd(c->out, c->inp, c->w, c->b, c->M, c->K, c->N);
  return dot(c->out, c->dout, (size_t)c->M * c->N);
}

Test(ops_cpu, matmul_forward_and_gradients) {
  int M = 5, K = 7, N = 6;
  mm_ctx c = {calloc((size_t)M * N, 4),
              rnd((size_t)M * K, 1, 1),
              rnd((size_t)N * K, 2, 1),
              rnd((size_t)N, 3, 1),
              rnd((size_t)M * N, 4, 1),
              M,
              K,
              N};
  mm_obj(&c);
  for (int m = 0; m < M; m++)
    for (int n = 0; n < N; n++) {
      double s = c.b[n];
      for (int k = 0; k < K; k++)
        s += (double)c.inp[m * K + k] * c.w[n * K + k];
      cr_expect_lt(fabs(s - c.out[m * N + n]), 1e-5);
    }
  float *di = calloc((size_t)M * K, 4), *dw = calloc((size_t)N * K, 4), *db = calloc((size_t)N, 4);
  O->matmul_bwd(di, dw, db, c.dout, c.inp, c.w, M, K, N);
  fd_check("matmul dinp", c.inp, di, (size_t)M * K, mm_obj, &c);
  fd_check("matmul dw", c.w, dw, (size_t)N * K, mm_obj, &c);
  fd_check("matmul dbias", c.b, db, (size_t)N, mm_obj, &c);
  /* accumulation: a second call doubles the gradients */
  float *dw2 = malloc((size_t)N * K * 4);
  memcpy(dw2, dw, (size_t)N * K * 4);
  O->matmul_bwd(NULL, dw, NULL, c.dout, c.inp, c.w, M, K, N);
  for (int i = 0; i < N * K; i++)
    cr_expect_float_eq(dw[i], 2 * dw2[i], 1e-5);
  free(c.out), free(c.inp), free(c.w), free(c.b), free(c.dout), free(di), free(dw), free(db),
      free(dw2);
}

Test(ops_cpu, matmul_every_path_agrees_with_double) {
  /* Each path the CPU has, against the same double-precision product. The
   * AVX2 kernel takes up to 32 rows, in blocks of 4 (7 and 20 leave partial
   * ones), 8-wide steps and 3 outputs; more rows, and every size with the
   * own kernels off, go to sgemm. With AVX-512, up to 8 rows go to the
   * kernel with lanes along k (1 to 8: each its own block width, 8, 8, 8,
   * 6, 4, 4, 3, 3 outputs; K = 131 ends in a masked step of 3); more rows
   * to the transposed one: rows in groups of 32 across two registers'
   * lanes, the last group of 16 where that is enough (16: one full; 20: a
   * partial 32; 32: one full; 40: 32 + a partial 16), in blocks of 12
   * outputs (16 lanes) or 8 (32); above 64 rows (90) the packed product of
   * ops_cpu_gemm.c, tested on its own below. K = 131 and N = 70 leave
   * remainders of all of them; N * K is far below the prefetch distances,
   * so prefetches run past the weights' end as they do at every matrix's
   * end. */
  enum { NM = 13, NI = 3 };
  const int Ms[NM] = {1, 2, 3, 4, 5, 6, 7, 8, 16, 20, 32, 40, 90}, isas[NI] = {512, 256, 0};
  for (int c = 0; c < NM * NI; c++) {
    int got = ops_cpu_set_isa(isas[c / NM]);
    if (got != isas[c / NM] && c % NM == 0) {
      cr_log_info("matmul: this CPU has no %d-bit kernel path (checked the %d-bit one)",
                  isas[c / NM], got);
    }
    int M = Ms[c % NM], K = 131, N = 70;
    float *x = rnd((size_t)M * K, 30 + c % NM, 1), *w = rnd((size_t)N * K, 40 + c % NM, 1),
          *b = rnd((size_t)N, 50 + c % NM, 1), *o = calloc((size_t)M * N, 4);
    O->matmul_fwd(o, x, w, b, M, K, N);
    for (int m = 0; m < M; m++)
      for (int n = 0; n < N; n++) {
        double s = b[n];
        for (int k = 0; k < K; k++)
          s += (double)x[m * K + k] * w[n * K + k];
        cr_expect_lt(fabs(s - o[m * N + n]), 1e-4, "isa %d M=%d [%d,%d]: %.6f vs %.6f", got, M, m,
                     n, s, (double)o[m * N + n]);
      }
    free(x), free(w), free(b), free(o);
  }
  ops_cpu_set_isa(512);
}

/* The AVX2 decoding kernel (up to 32 rows, blocks of 4 rows x 3 outputs)
 * sums every output in one order whatever the number of rows: 8 lanes over
 * k, across the lanes, the tail, then the bias. So M rows at a time give
 * each row's outputs bit for bit as that row alone (a sequence decodes to
 * the same tokens in any batch), and both agree with the double-precision
 * product. K = 773 (a tail of 5), N = 200 (two blocks of 96 outputs and
 * one of 8, the last group of 3 outputs partial); 5, 16, 20 and 32 rows
 * (partial and whole groups of 4); from 16 rows the product runs on every
 * thread, a row alone on one. */
Test(ops_cpu, decoding_kernel_rows_do_not_depend_on_the_batch) {
  if (ops_cpu_set_isa(256) < 256) {
    cr_log_info("no AVX2 on this CPU: the 256-bit decoding kernel is not tested here");
    ops_cpu_set_isa(512);
    return;
  }
  enum { K = 773, N = 200 };
  const int Ms[4] = {5, 16, 20, 32};
  float *w = rnd((size_t)N * K, 61, 1), *b = rnd(N, 62, 1), *one = malloc(N * sizeof(float));
  for (int c = 0; c < 4; c++) {
    int M = Ms[c];
    float *x = rnd((size_t)M * K, 63 + c, 1), *o = malloc((size_t)M * N * sizeof(float));
    O->matmul_fwd(o, x, w, b, M, K, N);
    int same = 0;
    double worst = 0;
    for (int m = 0; m < M; m++) {
      O->matmul_fwd(one, x + (size_t)m * K, w, b, 1, K, N);
      same += memcmp(one, o + (size_t)m * N, N * sizeof(float)) == 0;
      for (int n = 0; n < N; n++) {
        double s = b[n];
        for (int k = 0; k < K; k++)
          s += (double)x[(size_t)m * K + k] * w[(size_t)n * K + k];
        worst = fmax(worst, fabs(s - o[(size_t)m * N + n]));
      }
    }
    cr_expect_eq(same, M, "M=%d: %d of the rows equal the row alone, bit for bit", M, same);
    cr_expect_lt(worst, 1e-3, "M=%d: %.3g off the double-precision product", M, worst);
    free(x), free(o);
  }
  free(w), free(b), free(one);
  ops_cpu_set_isa(512);
}

/* The packed AVX-512 product (ops_cpu_gemm.c) in the three forms the
 * engine uses, through the ops table, against double-precision sums written
 * here: out = x w^T + b (forward, more than 64 rows), dinp += dout w and
 * dw += dout^T x (backward; both accumulate onto what is there). The sizes
 * leave partial tiles everywhere (rows not a multiple of 6, columns not of
 * 64) and K = 1500 splits the sum into two blocks of k (752 + 748), so the
 * C tile is read back between blocks. Then the same products with one
 * OpenMP thread and with two must agree bit for bit (both splits: by rows
 * when A is the larger side to pack, by columns otherwise). */
static void mm_expect_double(const char *what, const float *got, const float *init, int M, int N,
                             int K, const float *A, size_t ars, size_t acs, const float *B,
                             size_t brs, size_t bcs, const float *bias) {
  double worst = 0.0;
  for (int m = 0; m < M; m++)
    for (int n = 0; n < N; n++) {
      double s = bias ? bias[n] : init ? init[(size_t)m * N + n] : 0.0, mag = fabs(s);
      for (int k = 0; k < K; k++) {
        double t = (double)A[m * ars + k * acs] * B[k * brs + n * bcs];
        s += t;
        mag += fabs(t);
      }
      /* the difference against the sum of the terms' sizes: float sums of
       * K terms stray by about sqrt(K) ulps of that (1e-6 here); a lost or
       * doubled term or block is off by 1e-3 or more */
      double d = fabs(s - got[(size_t)m * N + n]) / (mag + 1e-30);
      worst = d > worst ? d : worst;
    }
  cr_expect_lt(worst, 1e-5, "%s M=%d N=%d K=%d: worst difference %.3g of the terms' sizes", what, M,
               N, K, worst);
}

Test(ops_cpu, packed_product_every_form_against_double) {
  if (ops_cpu_set_isa(512) < 512) {
    cr_log_info("packed product: this CPU has no AVX-512; the product falls back to OpenBLAS");
    return;
  }
  const int shapes[3][3] = {{65, 131, 70}, {131, 1500, 200}, {97, 300, 1100}}; /* M, K, N */
  for (int c = 0; c < 3; c++) {
    int M = shapes[c][0], K = shapes[c][1], N = shapes[c][2];
    float *x = rnd((size_t)M * K, 60 + c, 1), *w = rnd((size_t)N * K, 70 + c, 1),
          *b = rnd((size_t)N, 80 + c, 1), *dout = rnd((size_t)M * N, 90 + c, 1),
          *o = calloc((size_t)M * N, 4), *di = rnd((size_t)M * K, 100 + c, 1),
          *dw = rnd((size_t)N * K, 110 + c, 1);
    float *di0 = malloc((size_t)M * K * 4), *dw0 = malloc((size_t)N * K * 4);
    memcpy(di0, di, (size_t)M * K * 4);
    memcpy(dw0, dw, (size_t)N * K * 4);
    O->matmul_fwd(o, x, w, b, M, K, N);
    mm_expect_double("forward", o, NULL, M, N, K, x, (size_t)K, 1, w, 1, (size_t)K, b);
    O->matmul_bwd(di, dw, NULL, dout, x, w, M, K, N);
    mm_expect_double("dinp", di, di0, M, K, N, dout, (size_t)N, 1, w, (size_t)K, 1, NULL);
    mm_expect_double("dw", dw, dw0, N, K, M, dout, 1, (size_t)N, x, (size_t)K, 1, NULL);
    /* beta scales what is there (used by no op today, part of the contract) */
    float *c2 = malloc((size_t)M * N * 4);
    memcpy(c2, dout, (size_t)M * N * 4);
    for (size_t i = 0; i < (size_t)M * N; i++)
      o[i] = 0.5f * dout[i];
    cr_assert_eq(ops_cpu_gemm(M, N, K, x, (size_t)K, 1, w, 1, (size_t)K, NULL, 0.5f, c2, (size_t)N),
                 0);
    mm_expect_double("beta 0.5", c2, o, M, N, K, x, (size_t)K, 1, w, 1, (size_t)K, NULL);
    free(x), free(w), free(b), free(dout), free(o), free(di), free(dw), free(di0), free(dw0),
        free(c2);
  }
}

Test(ops_cpu, packed_product_same_bits_on_one_thread_and_two) {
  if (ops_cpu_set_isa(512) < 512) {
    cr_log_info("packed product: this CPU has no AVX-512; nothing to check");
    return;
  }
  /* 400 x 1500 x 300: A is the larger side (split by rows); its transpose
   * 300 x 1500 x 400 as dw: B is larger (split by columns). Then the few-row
   * kernels (5 rows: lanes along k; 12: transposed), big enough to run on
   * both threads. */
  int M = 400, K = 1500, N = 300;
  float *x = rnd((size_t)M * K, 120, 1), *w = rnd((size_t)N * K, 121, 1),
        *dout = rnd((size_t)M * N, 122, 1);
  float *o[2], *dw[2];
  int saved = omp_get_max_threads();
  for (int t = 0; t < 2; t++) {
    omp_set_num_threads(t + 1);
    o[t] = calloc((size_t)M * N, 4);
    dw[t] = calloc((size_t)N * K, 4);
    O->matmul_fwd(o[t], x, w, NULL, M, K, N);
    O->matmul_bwd(NULL, dw[t], NULL, dout, x, w, M, K, N);
  }
  omp_set_num_threads(saved);
  cr_expect(memcmp(o[0], o[1], (size_t)M * N * 4) == 0, "forward differs between 1 and 2 threads");
  cr_expect(memcmp(dw[0], dw[1], (size_t)N * K * 4) == 0, "dw differs between 1 and 2 threads");
  for (int rows = 5; rows <= 12; rows += 7) {
    for (int t = 0; t < 2; t++) {
      omp_set_num_threads(t + 1);
      memset(o[t], 0, (size_t)M * N * 4);
      O->matmul_fwd(o[t], x, w, NULL, rows, K, N);
    }
    omp_set_num_threads(saved);
    cr_expect(memcmp(o[0], o[1], (size_t)rows * N * 4) == 0,
              "%d rows: the forward product differs between 1 and 2 threads", rows);
  }
  free(x), free(w), free(dout), free(o[0]), free(o[1]), free(dw[0]), free(dw[1]);
}

/* ---------------------------------------------------------- encoder */

typedef struct {
  float *out, *wte, *wpe, *dout;
  const int *tok, *pos;
  int N, C;
} enc_ctx;
static double enc_obj(void *v) {
  enc_ctx *c = v;
  O->encoder_fwd(c->out, c->tok, c->pos, c->wte, c->wpe, c->N, c->C);
  return dot(c->out, c->dout, (size_t)c->N * c->C);
}

Test(ops_cpu, encoder_gradients_with_repeated_tokens) {
  static const int tok[6] = {1, 3, 1, 0, 3, 3}, pos[6] = {0, 1, 2, 0, 1, 1};
  int N = 6, C = 5;
  enc_ctx c = {calloc(30, 4), rnd(4 * 5, 5, 1), rnd(3 * 5, 6, 1), rnd(30, 7, 1), tok, pos, N, C};
  float *dwte = calloc(20, 4), *dwpe = calloc(15, 4);
  O->encoder_bwd(dwte, dwpe, c.dout, tok, pos, N, C);
  fd_check("encoder dwte", c.wte, dwte, 20, enc_obj, &c);
  fd_check("encoder dwpe", c.wpe, dwpe, 15, enc_obj, &c);
  free(c.out), free(c.wte), free(c.wpe), free(c.dout), free(dwte), free(dwpe);
}

/* -------------------------------------------------------- layernorm */

typedef struct {
  float *out, *mean, *rstd, *inp, *w, *b, *dout;
  int N, C;
} ln_ctx;
static double ln_obj(void *v) {
  ln_ctx *c = v;
  O->layernorm_fwd(c->out, c->mean, c->rstd, c->inp, c->w, c->b, c->N, c->C, 1e-5f);
  return dot(c->out, c->dout, (size_t)c->N * c->C);
}

Test(ops_cpu, layernorm_forward_and_gradients) {
  int N = 4, C = 9;
  ln_ctx c = {calloc(36, 4),
              calloc(4, 4),
              calloc(4, 4),
              rnd(36, 8, 2),
              rnd(9, 9, 1),
              rnd(9, 10, 1),
              rnd(36, 11, 1),
              N,
              C};
  ln_obj(&c);
  for (int n = 0; n < N; n++) { /* PyTorch's LayerNorm: biased variance, eps 1e-5 */
    double m = 0, v = 0;
    for (int i = 0; i < C; i++)
      m += c.inp[n * C + i] / (double)C;
    for (int i = 0; i < C; i++)
      v += (c.inp[n * C + i] - m) * (c.inp[n * C + i] - m) / C;
    for (int i = 0; i < C; i++) {
      double want = (c.inp[n * C + i] - m) / sqrt(v + 1e-5) * c.w[i] + c.b[i];
      cr_expect_lt(fabs(want - c.out[n * C + i]), 1e-5);
    }
  }
  /* BERT's eps 1e-12 on rows of constant value: (x - mean) = 0 exactly */
  float flat[2 * 9], fo[2 * 9];
  for (int i = 0; i < 18; i++)
    flat[i] = i < 9 ? 0.25f : 0.25f + 1e-3f * (float)(i - 9);
  O->layernorm_fwd(fo, NULL, NULL, flat, c.w, c.b, 2, C, 1e-12f);
  for (int i = 0; i < 9; i++)
    cr_expect_eq(fo[i], c.b[i], "constant row: the bias");
  double m = 0, v = 0;
  for (int i = 0; i < C; i++)
    m += flat[9 + i] / (double)C;
  for (int i = 0; i < C; i++)
    v += (flat[9 + i] - m) * (flat[9 + i] - m) / C;
  for (int i = 0; i < C; i++) {
    double want = (flat[9 + i] - m) / sqrt(v + 1e-12) * c.w[i] + c.b[i];
    cr_expect_lt(fabs(want - fo[9 + i]), 1e-4, "eps 1e-12: %g, want %g", fo[9 + i], want);
  }
  float *di = calloc(36, 4), *dw = calloc(9, 4), *db = calloc(9, 4);
  O->layernorm_bwd(di, dw, db, c.dout, c.inp, c.w, c.mean, c.rstd, N, C);
  fd_check("layernorm dinp", c.inp, di, 36, ln_obj, &c);
  fd_check("layernorm dw", c.w, dw, 9, ln_obj, &c);
  fd_check("layernorm db", c.b, db, 9, ln_obj, &c);
  free(c.out), free(c.mean), free(c.rstd), free(c.inp), free(c.w), free(c.b), free(c.dout),
      free(di), free(dw), free(db);
}

/* -------------------------------------------------------- attention */

typedef struct {
  float *out, *att, *qkv, *dout;
  const int *ks;
  int B, T, C, NH;
} at_ctx;
static double at_obj(void *v) {
  at_ctx *c = v;
  O->attention_fwd(c->out, c->att, c->qkv, c->ks, c->B, c->T, c->C, c->NH);
  return dot(c->out, c->dout, (size_t)c->B * c->T * c->C);
}

Test(ops_cpu, attention_gradients_with_left_padding) {
  static const int ks[2] = {0, 2};
  int B = 2, T = 5, C = 8, NH = 2;
  size_t n = (size_t)B * T * C;
  at_ctx c = {calloc(n, 4),
              calloc((size_t)B * NH * T * T, 4),
              rnd(3 * n, 12, 1),
              rnd(n, 13, 1),
              ks,
              B,
              T,
              C,
              NH};
  at_obj(&c);
  /* padded keys get no weight; every row of probabilities sums to one */
  for (int h = 0; h < NH; h++)
    for (int t = 0; t < T; t++) {
      const float *a = c.att + (((size_t)1 * NH + h) * T + t) * T;
      double s = 0;
      for (int j = 0; j < T; j++) {
        s += a[j];
        if (j > t || (t >= 2 && j < 2))
          cr_expect_eq(a[j], 0.0f, "row 1 head %d query %d key %d", h, t, j);
      }
      cr_expect_lt(fabs(s - 1.0), 1e-6);
    }
  float *dqkv = calloc(3 * n, 4);
  O->attention_bwd(dqkv, c.dout, c.qkv, c.att, ks, B, T, C, NH);
  fd_check("attention dqkv", c.qkv, dqkv, 3 * n, at_obj, &c);
  free(c.out), free(c.att), free(c.qkv), free(c.dout), free(dqkv);
}

/* attention_bwd on every path against the backward pass in double
 * precision, written out from the forward's probabilities a: dv_j = sum_t
 * a_tj d_t, datt_tj = d_t . v_j, dpre_tj = a_tj (datt_tj - sum_j a_tj
 * datt_tj) scale, dq_t = sum_j dpre_tj k_j, dk_j = sum_t dpre_tj q_t, keys
 * from the row's key start (a padding query: itself only). Head sizes 64,
 * 32 and 24 (the 8-lane kernel at width 256, else the plain loop) and 12
 * (the plain loop); widths 512, 256 and 0. */
Test(ops_cpu, attention_backward_agrees_with_double) {
  static const int ks[2] = {0, 3}, isas[3] = {512, 256, 0}, Cs[4] = {128, 64, 48, 24};
  enum { B = 2, NH = 2, T = 9 };
  for (int c = 0; c < 12; c++) {
    int got = ops_cpu_set_isa(isas[c / 4]), C = Cs[c % 4], HS = C / NH;
    size_t n = (size_t)B * T * C, C3 = 3 * (size_t)C;
    float *qkv = rnd(3 * n, 40, 1), *dout = rnd(n, 41, 1), *out = calloc(n, 4),
          *att = calloc((size_t)B * NH * T * T, 4), *dqkv = calloc(3 * n, 4);
    double *ref = calloc(3 * n, sizeof(double)), scale = 1.0 / sqrt((double)HS);
    O->attention_fwd(out, att, qkv, ks, B, T, C, NH);
    O->attention_bwd(dqkv, dout, qkv, att, ks, B, T, C, NH);
    for (int b = 0; b < B; b++)
      for (int h = 0; h < NH; h++)
        for (int t = 0; t < T; t++) {
          int j0 = t < ks[b] ? t : ks[b];
          const float *a = att + (((size_t)b * NH + h) * T + t) * T;
          const float *d = dout + ((size_t)b * T + t) * C + (size_t)h * HS;
          size_t qt = ((size_t)b * T + t) * C3 + (size_t)h * HS;
          double datt[T], dot = 0.0;
          for (int j = j0; j <= t; j++) {
            size_t vj = ((size_t)b * T + j) * C3 + 2 * (size_t)C + (size_t)h * HS;
            datt[j] = 0.0;
            for (int i = 0; i < HS; i++) {
              datt[j] += (double)d[i] * qkv[vj + i];
              ref[vj + i] += (double)a[j] * d[i];
            }
            dot += a[j] * datt[j];
          }
          for (int j = j0; j <= t; j++) {
            double dpre = a[j] * (datt[j] - dot) * scale;
            size_t kj = ((size_t)b * T + j) * C3 + (size_t)C + (size_t)h * HS;
            for (int i = 0; i < HS; i++) {
              ref[qt + i] += dpre * qkv[kj + i];
              ref[kj + i] += dpre * qkv[qt + i];
            }
          }
        }
    double worst = 0.0;
    size_t at = 0;
    for (size_t i = 0; i < 3 * n; i++) {
      double e = fabs(ref[i] - dqkv[i]) / (1.0 + fabs(ref[i]));
      if (e > worst)
        worst = e, at = i;
    }
    cr_expect_lt(worst, 2e-6, "isa %d C=%d: worst relative difference %g at %zu (%.7f vs %.7f)",
                 got, C, worst, at, ref[at], (double)dqkv[at]);
    free(qkv), free(dout), free(out), free(att), free(dqkv), free(ref);
  }
  ops_cpu_set_isa(512);
}

/* The training attention on every path the CPU has against double
 * precision: head size 32 (the AVX-512 path where it runs) and 12 (the
 * plain loop), left padding that leaves some queries only themselves. */
/* attention_fwd (causal, bidir 0) or attention_bidir_fwd (every query of
 * a row sees the row's keys ks..T-1) against double precision, on both the
 * AVX-512 and the portable paths. */
static void attention_vs_double(int bidir) {
  /* T 7: one partial block of 16 keys in the bidirectional AVX-512 kernel;
   * 37: two whole and a partial one */
  /* head sizes 64 (the bidirectional kernel's unrolled case), 32 and 12
   * (the plain loop at every width); widths 512, 256 (the 8-lane query
   * kernel at head sizes 64 and 32) and 0 */
  static const int ks[2] = {0, 3}, isas[3] = {512, 256, 0}, Cs[3] = {128, 64, 24}, Ts[2] = {7, 37};
  int B = 2, NH = 2;
  for (int c = 0; c < 18; c++) {
    int got = ops_cpu_set_isa(isas[c / 3 % 3]), C = Cs[c % 3], HS = C / NH, T = Ts[c / 9];
    size_t n = (size_t)B * T * C;
    float *qkv = rnd(3 * n, 15 + (uint64_t)bidir, 1), *out = calloc(n, 4);
    float *att = calloc((size_t)B * NH * T * T, 4);
    if (bidir)
      O->attention_bidir_fwd(out, att, qkv, ks, B, T, C, NH);
    else
      O->attention_fwd(out, att, qkv, ks, B, T, C, NH);
    for (int b = 0; b < B; b++)
      for (int h = 0; h < NH; h++)
        for (int t = 0; t < T; t++) {
          int j0 = bidir || t >= ks[b] ? ks[b] : t, jl = bidir ? T - 1 : t;
          double s[37], mx = -INFINITY, sum = 0.0;
          for (int j = j0; j <= jl; j++) {
            s[j] = 0.0;
            for (int i = 0; i < HS; i++)
              s[j] += (double)qkv[((size_t)b * T + t) * 3 * C + h * HS + i] *
                      qkv[((size_t)b * T + j) * 3 * C + C + h * HS + i];
            s[j] /= sqrt((double)HS);
            mx = s[j] > mx ? s[j] : mx;
          }
          for (int j = j0; j <= jl; j++)
            sum += s[j] = exp(s[j] - mx);
          const float *a = att + (((size_t)b * NH + h) * T + t) * T;
          for (int j = 0; j < T; j++)
            cr_expect_lt(fabs((j >= j0 && j <= jl ? s[j] / sum : 0.0) - a[j]), 1e-6,
                         "bidir %d isa %d C=%d T=%d prob [%d,%d,%d,%d]", bidir, got, C, T, b, h, t,
                         j);
          for (int i = 0; i < HS; i++) {
            double r = 0.0;
            for (int j = j0; j <= jl; j++)
              r += s[j] / sum * qkv[((size_t)b * T + j) * 3 * C + 2 * C + h * HS + i];
            cr_expect_lt(fabs(r - out[((size_t)b * T + t) * C + h * HS + i]), 1e-5,
                         "bidir %d isa %d C=%d T=%d out [%d,%d,%d]", bidir, got, C, T, b, t,
                         h * HS + i);
          }
        }
    free(qkv), free(out), free(att);
  }
  ops_cpu_set_isa(512);
}

Test(ops_cpu, attention_forward_agrees_with_double) {
  attention_vs_double(0);
}

/* Every query of a row, padding or not, sees the row's keys ks..T-1. */
Test(ops_cpu, attention_bidirectional_agrees_with_double) {
  attention_vs_double(1);
}

Test(ops_cpu, attention_step_matches_full_attention) {
  static const int ks[2] = {0, 2};
  int B = 2, T = 6, C = 8, NH = 2, Tmax = 9;
  size_t n = (size_t)B * T * C;
  float *qkv = rnd(3 * n, 14, 1), *out = calloc(n, 4), *att = calloc((size_t)B * NH * T * T, 4);
  O->attention_fwd(out, att, qkv, ks, B, T, C, NH);
  float *kc = calloc((size_t)B * Tmax * C, 4), *vc = calloc((size_t)B * Tmax * C, 4);
  O->kv_write(kc, vc, qkv, B, T, 0, Tmax, C, C);
  /* the last position again, as one decoding step over the cache */
  float *q1 = calloc((size_t)B * 3 * C, 4), *o1 = calloc((size_t)B * C, 4);
  for (int b = 0; b < B; b++)
    memcpy(q1 + (size_t)b * 3 * C, qkv + ((size_t)b * T + T - 1) * 3 * C, (size_t)3 * C * 4);
  O->attention_step(o1, q1, kc, vc, ks, B, T, Tmax, C, NH, NH);
  for (int b = 0; b < B; b++)
    for (int i = 0; i < C; i++)
      cr_expect_lt(fabsf(o1[b * C + i] - out[((size_t)b * T + T - 1) * C + i]), 1e-6);
  free(qkv), free(out), free(att), free(kc), free(vc), free(q1), free(o1);
}

/* kv_write of a grouped-query row by hand: C 4 (two query heads of 2), KV
 * 2 (one key/value head): qkv [B 2, T 1, 8] = q0..q3 k0 k1 v0 v1; position
 * t0 1 of a [2, Tmax 3, 2] cache gets (k0, k1) and (v0, v1), the rest
 * stays 0. */
Test(ops_cpu, kv_write_grouped_by_hand) {
  const float qkv[16] = {1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 13, 14, 15, 16, 17, 18};
  const float wk[12] = {0, 0, 5, 6, 0, 0, 0, 0, 15, 16, 0, 0};
  const float wv[12] = {0, 0, 7, 8, 0, 0, 0, 0, 17, 18, 0, 0};
  float kc[12] = {0}, vc[12] = {0};
  O->kv_write(kc, vc, qkv, 2, 1, 1, 3, 4, 2);
  for (int i = 0; i < 12; i++) {
    cr_expect_eq(kc[i], wk[i], "k cache [%d]: %g, expected %g", i, (double)kc[i], (double)wk[i]);
    cr_expect_eq(vc[i], wv[i], "v cache [%d]: %g, expected %g", i, (double)vc[i], (double)wv[i]);
  }
}

/* A grouped-query decoding step by hand: NH 2 query heads of HS 1 reading
 * NKV 1 key/value head, n 2 cached positions, scale 1/sqrt(1) = 1. qkv =
 * [q0 q1 | k v] = [1 2 | . .]; cached keys (1, 0), values (10, 20). Head 0:
 * scores (1, 0), weights (e, 1) / (e + 1) -> (10 e + 20) / (e + 1) =
 * 12.6894142; head 1: scores (2, 0), weights (e^2, 1) / (e^2 + 1) -> (10
 * e^2 + 20) / (e^2 + 1) = 11.1920292. */
Test(ops_cpu, attention_step_grouped_by_hand) {
  const float qkv[4] = {1, 2, 0, 0}, kc[2] = {1, 0}, vc[2] = {10, 20};
  float out[2];
  double e = exp(1.0), want[2] = {(10 * e + 20) / (e + 1), (10 * e * e + 20) / (e * e + 1)};
  O->attention_step(out, qkv, kc, vc, NULL, 1, 2, 2, 2, 2, 1);
  for (int h = 0; h < 2; h++)
    cr_expect_lt(fabs(out[h] - want[h]), 1e-5, "head %d: %.7f, expected %.7f", h, (double)out[h],
                 want[h]);
  cr_expect_lt(fabs(want[0] - 12.6894142), 1e-7);
  cr_expect_lt(fabs(want[1] - 11.1920292), 1e-7);
}

/* A grouped-query layer decoded from a cache of its NKV heads equals the
 * full attention over the heads repeated (kv_repeat, then attention_fwd) at
 * the last position: NH 4 query heads over NKV 2 and 1 key/value heads,
 * head sizes 2 (the portable loop) and 16 (the AVX-512 one where the CPU
 * has it), left padding. */
Test(ops_cpu, attention_step_grouped_matches_repeated_attention) {
  static const int ks[2] = {0, 2}, nkvs[2] = {2, 1}, hss[2] = {2, 16};
  int B = 2, T = 6, NH = 4, Tmax = 9;
  for (int c = 0; c < 4; c++) {
    int NKV = nkvs[c % 2], HS = hss[c / 2], C = NH * HS, KV = NKV * HS, LD = C + 2 * KV;
    size_t N = (size_t)B * T;
    float *qkvr = rnd(N * LD, 15 + c, 1), *qkv = calloc(N * 3 * C, 4), *out = calloc(N * C, 4),
          *att = calloc((size_t)B * NH * T * T, 4);
    O->kv_repeat(qkv, qkvr, (int)N, NH, NKV, HS);
    O->attention_fwd(out, att, qkv, ks, B, T, C, NH);
    float *kc = calloc((size_t)B * Tmax * KV, 4), *vc = calloc((size_t)B * Tmax * KV, 4);
    O->kv_write(kc, vc, qkvr, B, T, 0, Tmax, C, KV);
    float *q1 = calloc((size_t)B * LD, 4), *o1 = calloc((size_t)B * C, 4);
    for (int b = 0; b < B; b++)
      memcpy(q1 + (size_t)b * LD, qkvr + ((size_t)b * T + T - 1) * LD, (size_t)LD * 4);
    O->attention_step(o1, q1, kc, vc, ks, B, T, Tmax, C, NH, NKV);
    for (int b = 0; b < B; b++)
      for (int i = 0; i < C; i++)
        cr_expect_lt(fabsf(o1[b * C + i] - out[((size_t)b * T + T - 1) * C + i]), 1e-6,
                     "NKV %d HS %d [%d,%d]: %.7f vs %.7f", NKV, HS, b, i, (double)o1[b * C + i],
                     (double)out[((size_t)b * T + T - 1) * C + i]);
    free(qkvr), free(qkv), free(out), free(att), free(kc), free(vc), free(q1), free(o1);
  }
}

/* The decoding step's attention, bit for bit, against the plain loop it
 * replaced (each score summed over the head's channels in order, then
 * softmax, then the weighted sum of values in position order): the faster
 * loop must not change a single rounding, so that greedy decoding stays the
 * same. Positions 1..20 cover blocks of eight and the remainders; rows are
 * left-padded differently. Query head h reads key/value head h / (NH/NKV)
 * of a cache KV = NKV HS wide, q from rows C + 2 KV apart. */
static void attention_step_plain(float *out, const float *qkv, const float *kc, const float *vc,
                                 const int *kstart, int B, int n, int Tmax, int C, int NH,
                                 int NKV) {
  int HS = C / NH, KV = NKV * HS, R = NH / NKV;
  float scale = 1.0f / sqrtf((float)HS);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < NH; h++) {
      int ks = kstart[b] > n - 1 ? n - 1 : kstart[b];
      const float *q = qkv + (size_t)b * (C + 2 * KV) + (size_t)h * HS;
      float a[64], mx = -INFINITY;
      for (int j = ks; j < n; j++) {
        const float *k = kc + ((size_t)b * Tmax + j) * KV + (size_t)(h / R) * HS;
        float s = 0.0f;
        for (int i = 0; i < HS; i++)
          s += q[i] * k[i];
        s *= scale;
        a[j] = s;
        if (s > mx)
          mx = s;
      }
      float sum = 0.0f;
      for (int j = ks; j < n; j++) {
        a[j] = expf(a[j] - mx);
        sum += a[j];
      }
      float inv = 1.0f / sum;
      float *o = out + (size_t)b * C + (size_t)h * HS;
      for (int i = 0; i < HS; i++)
        o[i] = 0.0f;
      for (int j = ks; j < n; j++) {
        const float *v = vc + ((size_t)b * Tmax + j) * KV + (size_t)(h / R) * HS;
        float w = a[j] * inv;
        for (int i = 0; i < HS; i++)
          o[i] += w * v[i];
      }
    }
}

/* NKV 3 (one key/value head per query head, GPT-2's cache) and 1 (every
 * query head on one key/value head). */
Test(ops_cpu, attention_step_is_bit_identical_to_the_plain_loop) {
  /* the portable step; the vector ones (the test below) round otherwise */
  ops_cpu_set_isa(0);
  static const int ks[3] = {0, 3, 9}, nkvs[2] = {3, 1};
  int B = 3, C = 96, NH = 3, Tmax = 24;
  for (int g = 0; g < 2; g++) {
    int NKV = nkvs[g], KV = NKV * C / NH;
    float *kc = rnd((size_t)B * Tmax * KV, 31, 1), *vc = rnd((size_t)B * Tmax * KV, 32, 1),
          *q = rnd((size_t)B * (C + 2 * KV), 33, 1), *o1 = calloc((size_t)B * C, 4),
          *o2 = calloc((size_t)B * C, 4);
    for (int n = 1; n <= 20; n++) {
      O->attention_step(o1, q, kc, vc, ks, B, n, Tmax, C, NH, NKV);
      attention_step_plain(o2, q, kc, vc, ks, B, n, Tmax, C, NH, NKV);
      cr_expect(memcmp(o1, o2, (size_t)B * C * 4) == 0, "NKV %d n = %d: outputs differ", NKV, n);
    }
    free(kc), free(vc), free(q), free(o1), free(o2);
  }
  ops_cpu_set_isa(512);
}

/* Every path the CPU has against the step in double precision: head size
 * 64 (the 16-lane row kernel: C = 384 is one group of 16 vectors and 8 left
 * over; the 8-lane one: four groups of 12 vectors), 24 (a multiple of 8,
 * not of 16: the 8-lane kernel, one group of 12 vectors and 6 left over,
 * else the plain loop) and 12 (the plain loop whatever the width); widths
 * 512, 256 and 0 (on a CPU without AVX-512 the first runs as 256);
 * positions 1..20 with different left padding per row; 6 query heads over
 * 6 key/value heads (GPT-2's cache) and over 2 (grouped: query head h reads
 * key/value head h / 3). */
Test(ops_cpu, attention_step_agrees_with_double) {
  static const int ks[3] = {0, 3, 9}, isas[3] = {512, 256, 0}, Cs[3] = {384, 72, 144},
                   nkvs[2] = {6, 2};
  int B = 3, NH = 6, Tmax = 24;
  for (int c = 0; c < 18; c++) {
    int got = ops_cpu_set_isa(isas[c / 3 % 3]), C = Cs[c % 3], HS = C / NH, NKV = nkvs[c / 9];
    int KV = NKV * HS, LD = C + 2 * KV, R = NH / NKV;
    float *kc = rnd((size_t)B * Tmax * KV, 34, 1), *vc = rnd((size_t)B * Tmax * KV, 35, 1),
          *q = rnd((size_t)B * LD, 36, 1), *o = calloc((size_t)B * C, 4);
    for (int n = 1; n <= 20; n++) {
      O->attention_step(o, q, kc, vc, ks, B, n, Tmax, C, NH, NKV);
      for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
          int k0 = ks[b] > n - 1 ? n - 1 : ks[b], hk = h / R * HS;
          double s[24], mx = -INFINITY, sum = 0.0;
          for (int j = k0; j < n; j++) {
            s[j] = 0.0;
            for (int i = 0; i < HS; i++)
              s[j] +=
                  (double)q[(size_t)b * LD + h * HS + i] * kc[((size_t)b * Tmax + j) * KV + hk + i];
            s[j] /= sqrt((double)HS);
            mx = s[j] > mx ? s[j] : mx;
          }
          for (int j = k0; j < n; j++)
            sum += s[j] = exp(s[j] - mx);
          for (int i = 0; i < HS; i++) {
            double r = 0.0;
            for (int j = k0; j < n; j++)
              r += s[j] / sum * vc[((size_t)b * Tmax + j) * KV + hk + i];
            cr_expect_lt(fabs(r - o[(size_t)b * C + h * HS + i]), 1e-5,
                         "isa %d C=%d NKV=%d n=%d [%d,%d]: %.7f vs %.7f", got, C, NKV, n, b,
                         h * HS + i, r, (double)o[(size_t)b * C + h * HS + i]);
          }
        }
    }
    free(kc), free(vc), free(q), free(o);
  }
  ops_cpu_set_isa(512);
}

/* ------------------------------------------------------------- gelu */

typedef struct {
  float *out, *inp, *dout;
  size_t n;
} ge_ctx;
static double ge_obj(void *v) {
  ge_ctx *c = v;
  O->gelu_fwd(c->out, c->inp, c->n);
  return dot(c->out, c->dout, c->n);
}

/* each width's loop (16, 8 and 4 lanes; on a CPU without AVX-512 the
 * first runs as 8) */
Test(ops_cpu, gelu_tanh_forward_and_gradient) {
  static const int isas[3] = {512, 256, 0};
  for (int w = 0; w < 3; w++) {
    int got = ops_cpu_set_isa(isas[w]);
    ge_ctx c = {calloc(64, 4), rnd(64, 15, 2), rnd(64, 16, 1), 64};
    ge_obj(&c);
    for (int i = 0; i < 64; i++) { /* torch.nn.functional.gelu(approximate="tanh") */
      double x = c.inp[i];
      double want = 0.5 * x * (1 + tanh(sqrt(2 / 3.14159265358979) * (x + 0.044715 * x * x * x)));
      cr_expect_lt(fabs(want - c.out[i]), 1e-6, "isa %d [%d]: %.7f vs %.7f", got, i, want,
                   (double)c.out[i]);
    }
    float *di = calloc(64, 4);
    O->gelu_bwd(di, c.inp, c.dout, 64);
    fd_check("gelu", c.inp, di, 64, ge_obj, &c);
    free(c.out), free(c.inp), free(c.dout), free(di);
  }
  ops_cpu_set_isa(512);
}

Test(ops_cpu, activations_agree_with_double) {
  /* the AVX-512 and AVX2 paths (the exact GELU through glibc's vector
   * erff, 16 and 8 lanes) and the scalar one; 70 values leave a partial
   * block of 16 and of 8, 40,000 run in parallel blocks */
  const int isas[3] = {512, 256, 0}, ns[2] = {70, 40000};
  for (int c = 0; c < 6; c++) {
    int got = ops_cpu_set_isa(isas[c / 2]), n = ns[c % 2];
    float *x = rnd((size_t)n, 17, 3), *o = calloc((size_t)n, 4);
    for (int k = 0; k < 3; k++) {
      O->act_fwd(o, x, (size_t)n, k);
      double worst = 0.0;
      for (int i = 0; i < n; i++) { /* torch's gelu (exact), tanh, relu */
        double v = x[i];
        double want = k == OPS_ACT_GELU_ERF ? 0.5 * v * (1 + erf(v / sqrt(2.0)))
                      : k == OPS_ACT_TANH   ? tanh(v)
                                            : (v > 0 ? v : 0);
        double d = fabs(want - o[i]);
        worst = d > worst ? d : worst;
      }
      cr_expect_lt(worst, 1e-6, "isa %d n %d kind %d: worst difference %g", got, n, k, worst);
    }
    O->act_fwd(o, x, (size_t)n, OPS_ACT_GELU_ERF);
    O->act_fwd(x, x, (size_t)n, OPS_ACT_GELU_ERF); /* in place: the same bits */
    cr_expect(memcmp(x, o, (size_t)n * 4) == 0, "isa %d n %d: in-place GELU differs", got, n);
    free(x), free(o);
  }
  ops_cpu_set_isa(512);
  float *x = rnd(64, 17, 3);
  O->act_fwd(x, x, 64, OPS_ACT_RELU); /* in place */
  for (int i = 0; i < 64; i++)
    cr_expect_geq(x[i], 0.0f);
  free(x);
}

/* ------------------------------------------- softmax + cross-entropy */

typedef struct {
  float *z, *lse, *lp, *ent;
  const float *dlp, *dent;
  const int *tgt;
  int N, V;
} lg_ctx;
static double lg_obj(void *v) {
  lg_ctx *c = v;
  O->logits_stats(c->lse, c->lp, c->ent, c->z, c->tgt, c->N, c->V, c->V);
  return dot(c->lp, c->dlp, (size_t)c->N) + dot(c->ent, c->dent, (size_t)c->N);
}

Test(ops_cpu, fused_softmax_cross_entropy_and_entropy) {
  static const int tgt[3] = {2, -1, 6};
  static const float dlp[3] = {-0.7f, 0.4f, 1.3f}, dent[3] = {0.5f, -0.2f, 0.9f};
  int N = 3, V = 7;
  lg_ctx c = {rnd(21, 17, 2), calloc(3, 4), calloc(3, 4), calloc(3, 4), dlp, dent, tgt, N, V};
  lg_obj(&c);
  for (int n = 0; n < N; n++) {
    double mx = -1e30, s = 0, h = 0;
    for (int i = 0; i < V; i++)
      mx = fmax(mx, c.z[n * V + i]);
    for (int i = 0; i < V; i++)
      s += exp(c.z[n * V + i] - mx);
    double lse = mx + log(s);
    for (int i = 0; i < V; i++) {
      double p = exp(c.z[n * V + i] - lse);
      h -= p * (c.z[n * V + i] - lse);
    }
    cr_expect_lt(fabs(lse - c.lse[n]), 1e-5);
    cr_expect_lt(fabs(h - c.ent[n]), 1e-5);
    double lp = tgt[n] >= 0 ? c.z[n * V + tgt[n]] - lse : 0.0;
    cr_expect_lt(fabs(lp - c.lp[n]), 1e-5);
  }
  float *g = malloc(21 * 4);
  memcpy(g, c.z, 21 * 4);
  O->logits_bwd(g, c.lse, c.ent, tgt, dlp, dent, N, V, V);
  fd_check("logits (logp and entropy terms)", c.z, g, 21, lg_obj, &c);
  free(c.z), free(c.lse), free(c.lp), free(c.ent), free(g);
}

/* ---------------------------------------------------- optimiser ops */

Test(ops_cpu, adamw_matches_pytorch_update_rule) {
  /* torch.optim.AdamW: p *= 1 - lr wd; m, v EMAs; p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps) */
  size_t n = 10;
  float *p = rnd(n, 18, 1), *g = rnd(n, 19, 1), *m = calloc(n, 4), *v = calloc(n, 4);
  double P[10], M[10] = {0}, Vv[10] = {0};
  for (size_t i = 0; i < n; i++)
    P[i] = p[i];
  float *g0 = malloc(n * sizeof(float));
  memcpy(g0, g, n * sizeof(float));
  for (int t = 1; t <= 3; t++) {
    memcpy(g, g0, n * sizeof(float));
    O->adamw(p, g, m, v, n, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.1f, t);
    for (size_t i = 0; i < n; i++)
      cr_expect_eq(g[i], 0.0f, "adamw leaves the gradients zeroed");
    for (size_t i = 0; i < n; i++) {
      P[i] *= 1 - 1e-2 * 0.1;
      M[i] = 0.9 * M[i] + 0.1 * g0[i];
      Vv[i] = 0.999 * Vv[i] + 0.001 * (double)g0[i] * g0[i];
      double bc1 = 1 - pow(0.9, t), bc2 = 1 - pow(0.999, t);
      P[i] -= 1e-2 / bc1 * M[i] / (sqrt(Vv[i]) / sqrt(bc2) + 1e-8);
    }
  }
  for (size_t i = 0; i < n; i++)
    cr_expect_lt(fabs(P[i] - p[i]), 1e-6, "element %zu: %.8f vs %.8f", i, P[i], (double)p[i]);
  free(p), free(g), free(g0), free(m), free(v);
}

Test(ops_cpu, sumsq_and_scale) {
  size_t n = 100003; /* several chunks and a ragged end */
  float *x = rnd(n, 20, 1);
  double s = 0;
  for (size_t i = 0; i < n; i++)
    s += (double)x[i] * x[i];
  cr_expect_lt(fabs(O->sumsq(x, n) - s), 1e-9 * s);
  O->scale(x, 0.5f, n);
  cr_expect_lt(fabs(O->sumsq(x, n) - s / 4), 1e-9 * s);
  free(x);
}

/* T5's attention (attention_rel_fwd) against double precision: no scale,
 * an additive bias [NH, Tq, Tk], the keys' padding mask, causal or not,
 * cross-attention shapes (Tq != Tk, separate q and k/v buffers with their
 * own row strides). */
Test(ops_cpu, attention_rel_agrees_with_double) {
  static const int ks[2] = {0, 3};
  int B = 2, NH = 3, HS = 5, C = NH * HS;
  for (int causal = 0; causal < 2; causal++) {
    int Tq = causal ? 6 : 4, Tk = 6, ldq = 2 * C + 1, ldkv = 3 * C;
    float *q = rnd((size_t)B * Tq * ldq, 40 + (uint64_t)causal, 1);
    float *kv = rnd((size_t)B * Tk * ldkv, 42, 1), *bias = rnd((size_t)NH * Tq * Tk, 43, 1);
    float *out = calloc((size_t)B * Tq * C, 4);
    /* k at column 0 of each kv row, v at column 2C */
    O->attention_rel_fwd(out, q, ldq, kv, kv + 2 * C, ldkv, bias, ks, causal, B, Tq, Tk, NH, HS);
    for (int b = 0; b < B; b++)
      for (int h = 0; h < NH; h++)
        for (int i = 0; i < Tq; i++) {
          int j0 = ks[b], j1 = causal ? i : Tk - 1;
          double s[6], mx = -INFINITY, sum = 0.0;
          for (int j = j0; j <= j1; j++) {
            s[j] = bias[((size_t)h * Tq + i) * Tk + j];
            for (int d = 0; d < HS; d++)
              s[j] += (double)q[((size_t)b * Tq + i) * ldq + h * HS + d] *
                      kv[((size_t)b * Tk + j) * ldkv + h * HS + d];
            mx = s[j] > mx ? s[j] : mx;
          }
          for (int j = j0; j <= j1; j++)
            sum += s[j] = exp(s[j] - mx);
          for (int d = 0; d < HS; d++) {
            double r = 0.0;
            for (int j = j0; j <= j1; j++)
              r += s[j] / sum * kv[((size_t)b * Tk + j) * ldkv + 2 * C + h * HS + d];
            /* a query before the row's first key sees none: 0 */
            cr_expect_lt(fabs(r - out[((size_t)b * Tq + i) * C + h * HS + d]), 1e-5,
                         "causal %d out [%d,%d,%d]", causal, b, i, h * HS + d);
          }
        }
    free(q), free(kv), free(bias), free(out);
  }
}

/* T5LayerNorm (rmsnorm_fwd, in place too) and mul against double precision. */
Test(ops_cpu, rmsnorm_and_mul_agree_with_double) {
  int N = 5, C = 37;
  float *x = rnd((size_t)N * C, 50, 1), *w = rnd((size_t)C, 51, 1);
  float *out = calloc((size_t)N * C, 4), *y = malloc((size_t)N * C * 4);
  memcpy(y, x, (size_t)N * C * 4);
  O->rmsnorm_fwd(out, x, w, N, C, 1e-6f);
  O->rmsnorm_fwd(y, y, w, N, C, 1e-6f);
  for (int n = 0; n < N; n++) {
    double ss = 0.0;
    for (int c = 0; c < C; c++)
      ss += (double)x[n * C + c] * x[n * C + c];
    double r = 1.0 / sqrt(ss / C + 1e-6);
    for (int c = 0; c < C; c++) {
      cr_expect_lt(fabs(w[c] * x[n * C + c] * r - out[n * C + c]), 1e-5, "[%d,%d]", n, c);
      cr_expect_eq(y[n * C + c], out[n * C + c]);
    }
  }
  O->mul(y, x, w, (size_t)C);
  for (int c = 0; c < C; c++)
    cr_expect_eq(y[c], x[c] * w[c]);
  free(x), free(w), free(out), free(y);
}

/* ---------------------------------------------- T5's backward ops */

typedef struct {
  float *q, *kv, *bias, *dout, *out;
  const int *ks;
  int causal, B, Tq, Tk, NH, HS, ldq, ldkv;
} rel_ctx;
static double rel_obj(void *p) {
  rel_ctx *c = p;
  int C = c->NH * c->HS;
  O->attention_rel_fwd(c->out, c->q, c->ldq, c->kv, c->kv + C, c->ldkv, c->bias, c->ks, c->causal,
                       c->B, c->Tq, c->Tk, c->NH, c->HS);
  return dot(c->out, c->dout, (size_t)c->B * c->Tq * C);
}

/* attention_rel_bwd: the gradients of q, k, v and the bias against finite
 * differences of attention_rel_fwd, causal self-attention shapes and
 * padded cross-attention shapes, strides wider than the heads. */
Test(ops_cpu, attention_rel_bwd_matches_finite_differences) {
  static const int ks[2] = {0, 2};
  for (int causal = 0; causal < 2; causal++) {
    rel_ctx c = {.causal = causal, .B = 2, .NH = 2, .HS = 3, .ks = causal ? NULL : ks};
    int C = c.NH * c.HS;
    c.Tq = causal ? 5 : 3, c.Tk = 5, c.ldq = C + 2, c.ldkv = 2 * C + 1;
    size_t nq = (size_t)c.B * c.Tq * c.ldq, nkv = (size_t)c.B * c.Tk * c.ldkv;
    size_t nb = (size_t)c.NH * c.Tq * c.Tk, no = (size_t)c.B * c.Tq * C;
    c.q = rnd(nq, 60 + (uint64_t)causal, 1), c.kv = rnd(nkv, 62, 1), c.bias = rnd(nb, 63, 1);
    c.dout = rnd(no, 64, 1), c.out = calloc(no, 4);
    float *dq = calloc(nq, 4), *dkv = calloc(nkv, 4), *db = calloc(nb, 4);
    O->attention_rel_bwd(dq, dkv, dkv + C, db, c.dout, c.q, c.ldq, c.kv, c.kv + C, c.ldkv, c.bias,
                         c.ks, causal, c.B, c.Tq, c.Tk, c.NH, c.HS);
    fd_check(causal ? "attention_rel causal: q" : "attention_rel cross: q", c.q, dq, nq, rel_obj,
             &c);
    fd_check(causal ? "attention_rel causal: k|v" : "attention_rel cross: k|v", c.kv, dkv, nkv,
             rel_obj, &c);
    fd_check(causal ? "attention_rel causal: bias" : "attention_rel cross: bias", c.bias, db, nb,
             rel_obj, &c);
    free(c.q), free(c.kv), free(c.bias), free(c.dout), free(c.out), free(dq), free(dkv), free(db);
  }
}

typedef struct {
  float *x, *w, *dout, *out;
  int N, C;
} rms_ctx;
static double rms_obj(void *p) {
  rms_ctx *c = p;
  O->rmsnorm_fwd(c->out, c->x, c->w, c->N, c->C, 1e-6f);
  return dot(c->out, c->dout, (size_t)c->N * c->C);
}

/* rmsnorm_bwd (accumulating) against finite differences; mul_bwd and
 * act_bwd against their derivatives written out. */
Test(ops_cpu, rmsnorm_mul_act_bwd) {
  rms_ctx c = {.N = 4, .C = 70}; /* two column blocks */
  size_t n = (size_t)c.N * c.C;
  c.x = rnd(n, 70, 1), c.w = rnd((size_t)c.C, 71, 1), c.dout = rnd(n, 72, 1);
  c.out = calloc(n, 4);
  float *dx = calloc(n, 4), *dw = calloc((size_t)c.C, 4);
  for (size_t i = 0; i < n; i++)
    dx[i] = 0.5f; /* += */
  for (int i = 0; i < c.C; i++)
    dw[i] = 0.25f;
  O->rmsnorm_bwd(dx, dw, c.dout, c.x, c.w, c.N, c.C, 1e-6f);
  for (size_t i = 0; i < n; i++)
    dx[i] -= 0.5f;
  for (int i = 0; i < c.C; i++)
    dw[i] -= 0.25f;
  fd_check("rmsnorm: x", c.x, dx, n, rms_obj, &c);
  fd_check("rmsnorm: w", c.w, dw, (size_t)c.C, rms_obj, &c);
  float *a = rnd(n, 73, 1), *b = rnd(n, 74, 1), *da = calloc(n, 4), *dbv = calloc(n, 4);
  O->mul_bwd(da, dbv, c.dout, a, b, n);
  for (size_t i = 0; i < n; i++) {
    cr_expect_eq(da[i], c.dout[i] * b[i]);
    cr_expect_eq(dbv[i], c.dout[i] * a[i]);
  }
  static const int kinds[3] = {OPS_ACT_GELU_ERF, OPS_ACT_TANH, OPS_ACT_RELU};
  for (int k = 0; k < 3; k++) {
    O->act_bwd(da, a, c.dout, n, kinds[k]);
    for (size_t i = 0; i < n; i++) {
      double x = a[i], d;
      if (kinds[k] == OPS_ACT_GELU_ERF) /* Phi(x) + x phi(x) */
        d = 0.5 * (1 + erf(x / sqrt(2.0))) +
            x * exp(-0.5 * x * x) * 0.39894228040143268; /* 1/sqrt(2 pi) */
      else if (kinds[k] == OPS_ACT_TANH)
        d = 1 - tanh(x) * tanh(x);
      else
        d = x > 0;
      cr_expect_lt(fabs(d * c.dout[i] - da[i]), 1e-5, "act %d at %zu", kinds[k], i);
    }
  }
  free(c.x), free(c.w), free(c.dout), free(c.out), free(dx), free(dw);
  free(a), free(b), free(da), free(dbv);
}

/* ---------------------------------------------------------- sampler */

/* ops_sample_row's contract (ops.h) written out plainly: the k-th largest
 * finite value by sorting, every probability and sum over the whole row in
 * index order, the nucleus by sorting every positive entry. The sampler
 * skips the blocks of 16 entries that lie below its thresholds and keeps a
 * list of top-k's survivors; none of that may change a bit. */
static int desc_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x < y) - (x > y);
}
typedef struct {
  float p;
  int i;
} pid;
static int desc_pid(const void *a, const void *b) {
  const pid *x = a, *y = b;
  if (x->p != y->p)
    return x->p > y->p ? -1 : 1;
  return (x->i > y->i) - (x->i < y->i);
}
static int plain_sample(float *z, int V, int k, float top_p, int greedy, double u, float *logp) {
  float mx = -INFINITY;
  int arg = -1, nf = 0;
  float *fin = malloc((size_t)V * sizeof(float));
  for (int i = 0; i < V; i++)
    if (z[i] > -INFINITY) {
      fin[nf++] = z[i];
      if (z[i] > mx)
        mx = z[i], arg = i;
    }
  float kth = -INFINITY;
  if (k > 0 && k < V && nf >= k) {
    qsort(fin, (size_t)nf, sizeof(float), desc_float);
    kth = fin[k - 1];
  }
  free(fin);
  if (arg < 0)
    return -1;
  double sum = 0.0;
  for (int i = 0; i < V; i++) {
    z[i] = z[i] > -INFINITY && !(z[i] < kth) ? expf(z[i] - mx) : 0.0f;
    sum += z[i];
  }
  if (top_p > 0.0f && top_p < 1.0f) {
    pid *c = malloc((size_t)V * sizeof *c);
    int n = 0;
    for (int i = 0; i < V; i++)
      if (z[i] > 0.0f)
        c[n++] = (pid){z[i], i};
    qsort(c, (size_t)n, sizeof *c, desc_pid);
    double cum = 0.0;
    int last = n - 1;
    for (int j = 0; j < n; j++)
      if ((cum += c[j].p) >= top_p * sum) {
        last = j;
        break;
      }
    pid l = c[last];
    free(c);
    sum = 0.0;
    for (int i = 0; i < V; i++)
      if (z[i] > l.p || (z[i] == l.p && i <= l.i))
        sum += z[i];
      else
        z[i] = 0.0f;
  }
  int tok = arg;
  if (!greedy) {
    double cum = 0.0;
    for (int i = 0; i < V; i++)
      if (z[i] > 0.0f) {
        tok = i;
        if ((cum += z[i]) > u * sum)
          break;
      }
  }
  *logp = (float)log((double)z[tok] / sum);
  return tok;
}

Test(ops_cpu, sample_row_same_bits_as_the_plain_definition) {
  /* V 37 and 1001: blocks of 16 with a partial last one; logits rounded to
   * quarters so that ties (at the k-th value and elsewhere) are common;
   * -inf, NaN and rows of few finite entries; k up to 300 (past the
   * sampler's 64-entry heap on the stack and its 256 listed survivors) */
  const int Vs[2] = {37, 1001}, ks[7] = {0, 1, 3, 50, 64, 65, 300};
  const float ps[3] = {1.0f, 0.9f, 0.3f};
  dfpo_rng r;
  dfpo_rng_init(&r, 77, 9);
  int cases = 0;
  for (int isa = 512; isa >= 0; isa -= 256) {
    int got = ops_cpu_set_isa(isa);
    for (int rep = 0; rep < 30; rep++)
      for (int vi = 0; vi < 2; vi++)
        for (int ki = 0; ki < 7; ki++)
          for (int pi = 0; pi < 3; pi++) {
            int V = Vs[vi], k = ks[ki], greedy = rep % 10 == 9;
            float *z = malloc((size_t)V * sizeof(float)), *z2 = malloc((size_t)V * sizeof(float));
            for (int i = 0; i < V; i++) {
              double x = dfpo_rng_uniform(&r);
              z[i] = rep % 3 == 0 ? roundf((float)dfpo_rng_normal(&r) * 8.0f) / 4.0f
                                  : (float)dfpo_rng_normal(&r) * 3.0f;
              if (x < (rep % 5 == 4 ? 0.9 : 0.05))
                z[i] = -INFINITY;
              else if (x < (rep % 5 == 4 ? 0.92 : 0.06))
                z[i] = NAN;
            }
            memcpy(z2, z, (size_t)V * sizeof(float));
            double u = dfpo_rng_uniform(&r);
            float lp = 0.0f, lp2 = 0.0f;
            int t = ops_sample_row(z, V, k, ps[pi], greedy, u, &lp);
            int t2 = plain_sample(z2, V, k, ps[pi], greedy, u, &lp2);
            cr_assert_eq(t, t2, "isa %d V %d k %d p %g rep %d: token %d, plainly %d", got, V, k,
                         (double)ps[pi], rep, t, t2);
            if (t >= 0) {
              cr_assert(memcmp(z, z2, (size_t)V * sizeof(float)) == 0,
                        "isa %d V %d k %d p %g rep %d: probabilities differ", got, V, k,
                        (double)ps[pi], rep);
              cr_assert(memcmp(&lp, &lp2, sizeof lp) == 0, "isa %d: logp %.9g, plainly %.9g", got,
                        (double)lp, (double)lp2);
            }
            cases++;
            free(z), free(z2);
          }
  }
  ops_cpu_set_isa(512);
  cr_log_info("sampler: %d rows, the same bits as the plain definition", cases);
}
