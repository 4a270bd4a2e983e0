/* The CUDA backend against the CPU backend, op by op, then a whole model:
 * the same random inputs go to both, and the outputs must agree. The CPU
 * backend is itself held to finite differences and double-precision
 * formulas by test_ops_cpu.c, so agreeing with it is the contract.
 *
 * Measure: err = max |cpu - gpu| / max |cpu| over an output (relative to
 * the output's largest magnitude, so that entries near zero do not make
 * noise). Tolerances, fp32 (TF32 off):
 *   - exact: copies, kv write, the encoder forward, add, scale (one
 *     rounding each, the same on both);
 *   - AdamW after ten steps: 1e-5 (fused multiply-adds on the GPU);
 *   - GELU: 1e-5 (tanhf against the CPU's polynomial tanh, whose error the
 *     derivative's 1 - tanh^2 magnifies);
 *   - reductions (matrix products, LayerNorm, attention, logits, sumsq):
 *     1e-5 (summation order differs; sizes here are at most a few hundred
 *     terms);
 *   - the embedding scatter: bit for bit (it adds in the CPU's order);
 *   - TF32 matrix products: 5e-3 (a 10-bit mantissa: 2^-11 per product);
 *   - bf16 matrix products (fp32 matrices rounded to bf16 inside cuBLAS,
 *     fp32 accumulation): 2e-2 (a 7-bit mantissa: 2^-8 per input, four
 *     times TF32's; measured on the emulator, whose GemmEx rounds the
 *     inputs to nearest even and adds in double: see docs/cuda.md);
 *   - a whole GPT-2 step (loss, every gradient): 1e-4; ten AdamW steps: the
 *     losses 1e-4 and the parameter updates ||dgpu - dcpu|| / ||dcpu|| below
 *     1e-2 (Adam divides by sqrt(v), so near-zero gradients amplify the
 *     last bits).
 * Every GPU test skips, saying why, when no CUDA device is usable; the
 * device-selection tests at the end run everywhere. */
#include "trainer/beam.h"
#include "trainer/device.h"
#include "trainer/gpt2.h"
#include "trainer/model.h"
#include "trainer/ops.h"
#include "trainer/ops_cuda.h"
#include "trainer/optim.h"
#include "trainer/rl.h"
#include "trainer/sample.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "tests/support/support.h"
#include "tests/trainer/gpt2_testutil.h"

static const ops_backend *C_ = &ops_cpu;

/* ------------------------------------------------------------ helpers */

/* 1 when the CUDA backend can run here, else 0 with the reason in why. */
static int gpu_usable(char *why, size_t n) {
  dfpo_err err;
  dfpo_err_clear(&err);
  ops_device got;
  if (ops_device_resolve(OPS_DEVICE_CUDA, &got, NULL, 0, &err)) {
    snprintf(why, n, "%s", err.msg);
    return 0;
  }
  return got == OPS_DEVICE_CUDA;
}

#ifdef DFPO_HAVE_CUDA
static const ops_backend *G = &ops_cuda;
#else
static const ops_backend *G = NULL;
#endif

#define NEED_GPU()                                                                                 \
  do {                                                                                             \
    char why_[1024];                                                                               \
    if (!gpu_usable(why_, sizeof why_))                                                            \
      cr_skip_test("the CUDA backend is not tested here: %s", why_);                               \
  } while (0)

static float *rnd(size_t n, uint64_t seed, float sd) {
  float *x = malloc((n ? n : 1) * sizeof(float));
  cr_assert(x);
  dfpo_rng r;
  dfpo_rng_init(&r, seed, 11);
  for (size_t i = 0; i < n; i++)
    x[i] = (float)dfpo_rng_normal(&r) * sd;
  return x;
}

static float *dupf(const float *x, size_t n) {
  float *y = malloc((n ? n : 1) * sizeof(float));
  cr_assert(y);
  memcpy(y, x, n * sizeof(float));
  return y;
}

static void *up(const void *h, size_t bytes) {
  void *d = G->alloc(bytes);
  cr_assert(d, "device alloc of %zu bytes failed", bytes);
  G->upload(d, h, bytes);
  return d;
}
#define UPF(h, n) ((float *)up((h), (size_t)(n) * sizeof(float)))
#define UPI(h, n) ((int *)up((h), (size_t)(n) * sizeof(int)))

static float *down(const float *d, size_t n) {
  float *h = malloc((n ? n : 1) * sizeof(float));
  cr_assert(h);
  G->download(h, d, n * sizeof(float));
  return h;
}

/* max |want - got| / max |want|; fails above tol (NaN fails too). */
static double close_to(const char *what, const float *want, const float *got, size_t n,
                       double tol) {
  double mx = 0.0, worst = 0.0;
  size_t at = 0;
  int nan = 0;
  for (size_t i = 0; i < n; i++) {
    if (fabs(want[i]) > mx)
      mx = fabs(want[i]);
    if (isnan(got[i]) != isnan(want[i]))
      nan = 1;
    double d = fabs((double)want[i] - got[i]);
    if (d > worst) {
      worst = d;
      at = i;
    }
  }
  double err = worst / (mx > 1e-30 ? mx : 1e-30);
  cr_expect(!nan, "%s: NaN where the CPU has none (or the reverse)", what);
  cr_expect(err <= tol, "%s: error %.3g > %.3g (worst at %zu: cpu %.9g gpu %.9g; max |cpu| %.3g)",
            what, err, tol, at, n ? (double)want[at] : 0.0, n ? (double)got[at] : 0.0, mx);
  return err;
}

/* downloads d[n] and compares it with the CPU's h[n] */
static double check_dev(const char *what, const float *h, const float *d, size_t n, double tol) {
  float *g = down(d, n);
  double e = close_to(what, h, g, n, tol);
  free(g);
  return e;
}

#define TOL_RED 1e-5
#define TOL_TF32 5e-3
#define TOL_BF16 2e-2

/* ------------------------------------------------------------- memory */

Test(ops_cuda, memory_alloc_zeroed_upload_download_copy) {
  NEED_GPU();
  size_t n = 1000;
  float *d = G->alloc(n * sizeof(float)), *e = G->alloc(n * sizeof(float));
  cr_assert(d && e);
  float *h = down(d, n);
  for (size_t i = 0; i < n; i++)
    cr_expect_eq(h[i], 0.0f, "alloc is not zeroed at %zu", i);
  float *x = rnd(n, 1, 1);
  G->upload(d, x, n * sizeof(float));
  G->copy(e, d, n * sizeof(float));
  float *y = down(e, n);
  cr_expect(memcmp(x, y, n * sizeof(float)) == 0, "upload/copy/download changed bits");
  G->zero(e, 10 * sizeof(float));
  free(y);
  y = down(e, n);
  for (size_t i = 0; i < n; i++)
    cr_expect_eq(y[i], i < 10 ? 0.0f : x[i]);
  G->free(d);
  G->free(e);
  free(h), free(x), free(y);
}

/* ------------------------------------------------------------- matmul */

/* prec: 0 fp32, 1 TF32, 2 bf16 */
static void matmul_case(int M, int K, int N, int with_bias, int prec, double tol) {
#ifdef DFPO_HAVE_CUDA
  ops_cuda_set_tf32(prec == 1);
  ops_cuda_set_bf16(prec == 2);
#endif
  size_t nx = (size_t)M * K, nw = (size_t)N * K, no = (size_t)M * N;
  float *x = rnd(nx, 10 + M, 1), *w = rnd(nw, 20 + N, 1), *b = rnd((size_t)N, 30, 1);
  float *dout = rnd(no, 40, 1);
  float *di = rnd(nx, 50, 1), *dw = rnd(nw, 60, 1), *db = rnd((size_t)N, 70, 1);
  float *out = calloc(no, sizeof(float));
  float *gx = UPF(x, nx), *gw = UPF(w, nw), *gb = UPF(b, N), *gdout = UPF(dout, no);
  float *gdi = UPF(di, nx), *gdw = UPF(dw, nw), *gdb = UPF(db, N), *gout = UPF(out, no);
  /* the outputs start from garbage on the device: forward overwrites */
  float *junk = rnd(no, 99, 100);
  G->upload(gout, junk, no * sizeof(float));
  C_->matmul_fwd(out, x, w, with_bias ? b : NULL, M, K, N);
  G->matmul_fwd(gout, gx, gw, with_bias ? gb : NULL, M, K, N);
  char what[128];
  snprintf(what, sizeof what, "matmul_fwd M=%d K=%d N=%d bias=%d prec=%d", M, K, N, with_bias,
           prec);
  double e = check_dev(what, out, gout, no, tol);
  if (prec)
    cr_log_info("%s: error %.3g of tolerance %.3g", what, e, tol);
  /* backward accumulates into non-zero gradients */
  C_->matmul_bwd(di, dw, with_bias ? db : NULL, dout, x, w, M, K, N);
  G->matmul_bwd(gdi, gdw, with_bias ? gdb : NULL, gdout, gx, gw, M, K, N);
  snprintf(what, sizeof what, "matmul_bwd dinp M=%d K=%d N=%d prec=%d", M, K, N, prec);
  e = check_dev(what, di, gdi, nx, tol);
  if (prec)
    cr_log_info("%s: error %.3g of tolerance %.3g", what, e, tol);
  snprintf(what, sizeof what, "matmul_bwd dw M=%d K=%d N=%d prec=%d", M, K, N, prec);
  e = check_dev(what, dw, gdw, nw, tol);
  if (prec)
    cr_log_info("%s: error %.3g of tolerance %.3g", what, e, tol);
  snprintf(what, sizeof what, "matmul_bwd dbias M=%d N=%d", M, N);
  check_dev(what, db, gdb, (size_t)N, TOL_RED); /* own kernel, never TF32 */
  /* dinp NULL: only the weights' gradients move */
  C_->matmul_bwd(NULL, dw, NULL, dout, x, w, M, K, N);
  G->matmul_bwd(NULL, gdw, NULL, gdout, gx, gw, M, K, N);
  check_dev("matmul_bwd dw again (dinp NULL)", dw, gdw, nw, tol);
  check_dev("matmul_bwd dinp untouched", di, gdi, nx, tol);
  G->free(gx), G->free(gw), G->free(gb), G->free(gdout), G->free(gdi), G->free(gdw);
  G->free(gdb), G->free(gout);
  free(x), free(w), free(b), free(dout), free(di), free(dw), free(db), free(out), free(junk);
#ifdef DFPO_HAVE_CUDA
  ops_cuda_set_tf32(0);
  ops_cuda_set_bf16(0);
#endif
}

Test(ops_cuda, matmul_fp32) {
  NEED_GPU();
  matmul_case(37, 70, 53, 1, 0, TOL_RED);
  matmul_case(1, 64, 200, 0, 0, TOL_RED); /* a decoding row */
  matmul_case(300, 96, 1, 1, 0, TOL_RED); /* a value head */
}

Test(ops_cuda, matmul_tf32) {
  NEED_GPU();
  matmul_case(128, 256, 192, 1, 1, TOL_TF32);
}

/* The optional bf16 mode against the CPU's fp32 (prec=2 in the labels). */
Test(ops_cuda, matmul_bf16) {
  NEED_GPU();
  matmul_case(128, 256, 192, 1, 2, TOL_BF16);
  matmul_case(1, 64, 200, 0, 2, TOL_BF16);
}

/* ------------------------------------------------------------ encoder */

Test(ops_cuda, encoder_forward_and_scatter_bitwise) {
  NEED_GPU();
  int N = 300, C = 80, V = 17, P = 40;
  int *tok = malloc((size_t)N * sizeof(int)), *pos = malloc((size_t)N * sizeof(int));
  dfpo_rng r;
  dfpo_rng_init(&r, 5, 3);
  for (int i = 0; i < N; i++) {
    tok[i] = (int)dfpo_rng_below(&r, (uint32_t)V); /* many repeats */
    pos[i] = i % P;
  }
  float *wte = rnd((size_t)V * C, 1, 1), *wpe = rnd((size_t)P * C, 2, 1);
  float *dout = rnd((size_t)N * C, 3, 1);
  float *dwte = rnd((size_t)V * C, 4, 1), *dwpe = rnd((size_t)P * C, 5, 1);
  float *out = calloc((size_t)N * C, sizeof(float));
  int *gtok = UPI(tok, N), *gpos = UPI(pos, N);
  float *gwte = UPF(wte, V * C), *gwpe = UPF(wpe, P * C), *gdout = UPF(dout, N * C);
  float *gdwte = UPF(dwte, V * C), *gdwpe = UPF(dwpe, P * C), *gout = UPF(out, N * C);
  C_->encoder_fwd(out, tok, pos, wte, wpe, N, C);
  G->encoder_fwd(gout, gtok, gpos, gwte, gwpe, N, C);
  check_dev("encoder_fwd", out, gout, (size_t)N * C, 0.0); /* one addition: exact */
  C_->encoder_bwd(dwte, dwpe, dout, tok, pos, N, C);
  G->encoder_bwd(gdwte, gdwpe, gdout, gtok, gpos, N, C);
  float *a = down(gdwte, (size_t)V * C), *b = down(gdwpe, (size_t)P * C);
  cr_expect(memcmp(a, dwte, (size_t)V * C * sizeof(float)) == 0,
            "encoder_bwd dwte differs from the CPU's bits");
  cr_expect(memcmp(b, dwpe, (size_t)P * C * sizeof(float)) == 0,
            "encoder_bwd dwpe differs from the CPU's bits");
  G->free(gtok), G->free(gpos), G->free(gwte), G->free(gwpe), G->free(gdout), G->free(gdwte);
  G->free(gdwpe), G->free(gout);
  free(tok), free(pos), free(wte), free(wpe), free(dout), free(dwte), free(dwpe), free(out);
  free(a), free(b);
}

/* ---------------------------------------------------------- layernorm */

Test(ops_cuda, layernorm_forward_backward) {
  NEED_GPU();
  const int Cs[3] = {64, 100, 768};
  for (int k = 0; k < 3; k++) {
    int N = 45, C = Cs[k];
    size_t NC = (size_t)N * C;
    float *x = rnd(NC, 1 + k, 2), *w = rnd((size_t)C, 2, 1), *b = rnd((size_t)C, 3, 1);
    for (size_t i = 0; i < NC; i++)
      x[i] += 0.5f; /* a non-zero mean */
    float *out = calloc(NC, 4), *mean = calloc((size_t)N, 4), *rstd = calloc((size_t)N, 4);
    float *dout = rnd(NC, 4, 1), *dx = rnd(NC, 5, 1), *dw = rnd((size_t)C, 6, 1),
          *db = rnd((size_t)C, 7, 1);
    float *gx = UPF(x, NC), *gw = UPF(w, C), *gb = UPF(b, C), *gout = UPF(out, NC);
    float *gmean = UPF(mean, N), *grstd = UPF(rstd, N), *gdout = UPF(dout, NC);
    float *gdx = UPF(dx, NC), *gdw = UPF(dw, C), *gdb = UPF(db, C);
    C_->layernorm_fwd(out, mean, rstd, x, w, b, N, C, 1e-5f);
    G->layernorm_fwd(gout, gmean, grstd, gx, gw, gb, N, C, 1e-5f);
    check_dev("layernorm_fwd out", out, gout, NC, TOL_RED);
    check_dev("layernorm_fwd mean", mean, gmean, (size_t)N, TOL_RED);
    check_dev("layernorm_fwd rstd", rstd, grstd, (size_t)N, TOL_RED);
    /* without saved statistics (decoding) */
    G->layernorm_fwd(gout, NULL, NULL, gx, gw, gb, N, C, 1e-5f);
    check_dev("layernorm_fwd out (no stats)", out, gout, NC, TOL_RED);
    /* BERT's eps 1e-12 */
    C_->layernorm_fwd(out, NULL, NULL, x, w, b, N, C, 1e-12f);
    G->layernorm_fwd(gout, NULL, NULL, gx, gw, gb, N, C, 1e-12f);
    check_dev("layernorm_fwd out (eps 1e-12)", out, gout, NC, TOL_RED);
    C_->layernorm_fwd(out, mean, rstd, x, w, b, N, C, 1e-5f);
    C_->layernorm_bwd(dx, dw, db, dout, x, w, mean, rstd, N, C);
    G->layernorm_bwd(gdx, gdw, gdb, gdout, gx, gw, gmean, grstd, N, C);
    check_dev("layernorm_bwd dinp", dx, gdx, NC, TOL_RED);
    check_dev("layernorm_bwd dw", dw, gdw, (size_t)C, TOL_RED);
    check_dev("layernorm_bwd db", db, gdb, (size_t)C, TOL_RED);
    G->free(gx), G->free(gw), G->free(gb), G->free(gout), G->free(gmean), G->free(grstd);
    G->free(gdout), G->free(gdx), G->free(gdw), G->free(gdb);
    free(x), free(w), free(b), free(out), free(mean), free(rstd), free(dout), free(dx), free(dw);
    free(db);
  }
}

/* ---------------------------------------------------------- attention */

/* B rows, T positions, C channels, NH heads; kstart NULL or per row. */
static void attention_case(int B, int T, int C, int NH, const int *kstart) {
  size_t n3 = (size_t)B * T * 3 * C, no = (size_t)B * T * C, na = (size_t)B * NH * T * T;
  float *qkv = rnd(n3, (uint64_t)(T + C), 1), *dout = rnd(no, 8, 1);
  float *out = calloc(no, 4), *att = calloc(na, 4), *dqkv = calloc(n3, 4);
  float *junk = rnd(na > n3 ? na : n3, 9, 100);
  float *gqkv = UPF(qkv, n3), *gdout = UPF(dout, no), *gout = UPF(junk, no);
  float *gatt = UPF(junk, na), *gdqkv = UPF(junk, n3);
  int *gks = kstart ? UPI(kstart, B) : NULL;
  char what[128];
  C_->attention_fwd(out, att, qkv, kstart, B, T, C, NH);
  G->attention_fwd(gout, gatt, gqkv, gks, B, T, C, NH);
  snprintf(what, sizeof what, "attention_fwd out B=%d T=%d C=%d NH=%d ks=%s", B, T, C, NH,
           kstart ? "yes" : "NULL");
  check_dev(what, out, gout, no, TOL_RED);
  snprintf(what, sizeof what, "attention_fwd att B=%d T=%d C=%d NH=%d", B, T, C, NH);
  check_dev(what, att, gatt, na, TOL_RED);
  /* backward from the CPU's probabilities on both sides, into garbage */
  G->upload(gatt, att, na * sizeof(float));
  C_->attention_bwd(dqkv, dout, qkv, att, kstart, B, T, C, NH);
  G->attention_bwd(gdqkv, gdout, gqkv, gatt, gks, B, T, C, NH);
  snprintf(what, sizeof what, "attention_bwd dqkv B=%d T=%d C=%d NH=%d", B, T, C, NH);
  check_dev(what, dqkv, gdqkv, n3, TOL_RED);
  G->free(gqkv), G->free(gdout), G->free(gout), G->free(gatt), G->free(gdqkv);
  if (gks)
    G->free(gks);
  free(qkv), free(dout), free(out), free(att), free(dqkv), free(junk);
}

Test(ops_cuda, attention_training) {
  NEED_GPU();
  static const int ks3[3] = {0, 5, 17}; /* none, some, all padding (kstart = T) */
  attention_case(3, 17, 48, 3, ks3);    /* head size 16 < a warp */
  attention_case(2, 70, 128, 2, NULL);  /* head size 64, T over two warps' worth of keys */
  static const int ks2[2] = {33, 1};
  attention_case(2, 40, 96, 1, ks2); /* head size 96: three lanes' strides */
}

static void step_case(int B, int n, int Tmax, int C, int NH, const int *kstart) {
  /* fill the cache from a prompt of n - 1 positions, then write the new
   * token's k, v at n - 1 and attend */
  size_t nc = (size_t)B * Tmax * C, np = (size_t)B * (n - 1) * 3 * C, nq = (size_t)B * 3 * C;
  float *kc = calloc(nc, 4), *vc = calloc(nc, 4), *pre = rnd(np, 21, 1), *q = rnd(nq, 22, 1);
  float *out = calloc((size_t)B * C, 4);
  float *gkc = UPF(kc, nc), *gvc = UPF(vc, nc), *gpre = UPF(pre, np), *gq = UPF(q, nq);
  float *gout = UPF(out, B * C);
  int *gks = kstart ? UPI(kstart, B) : NULL;
  if (n > 1) {
    C_->kv_write(kc, vc, pre, B, n - 1, 0, Tmax, C);
    G->kv_write(gkc, gvc, gpre, B, n - 1, 0, Tmax, C);
  }
  C_->kv_write(kc, vc, q, B, 1, n - 1, Tmax, C);
  G->kv_write(gkc, gvc, gq, B, 1, n - 1, Tmax, C);
  check_dev("kv_write k cache", kc, gkc, nc, 0.0);
  check_dev("kv_write v cache", vc, gvc, nc, 0.0);
  C_->attention_step(out, q, kc, vc, kstart, B, n, Tmax, C, NH);
  G->attention_step(gout, gq, gkc, gvc, gks, B, n, Tmax, C, NH);
  char what[128];
  snprintf(what, sizeof what, "attention_step B=%d n=%d Tmax=%d C=%d NH=%d", B, n, Tmax, C, NH);
  check_dev(what, out, gout, (size_t)B * C, TOL_RED);
  G->free(gkc), G->free(gvc), G->free(gpre), G->free(gq), G->free(gout);
  if (gks)
    G->free(gks);
  free(kc), free(vc), free(pre), free(q), free(out);
}

Test(ops_cuda, kv_cache_and_decoding_step) {
  NEED_GPU();
  static const int ks[3] = {0, 4, 30}; /* the last past n - 1: clamped */
  step_case(3, 25, 40, 48, 3, ks);
  step_case(2, 1, 8, 64, 1, NULL);       /* the first position alone */
  step_case(1, 9000, 9000, 32, 2, NULL); /* scores too long for shared memory */
}

/* ---------------------------------------------------------- elementwise */

/* The encoders' bidirectional attention (forward only), over garbage. */
static void bidir_case(int B, int T, int C, int NH, const int *kstart) {
  size_t n3 = (size_t)B * T * 3 * C, no = (size_t)B * T * C, na = (size_t)B * NH * T * T;
  float *qkv = rnd(n3, (uint64_t)(T + C + 1), 1), *out = calloc(no, 4), *att = calloc(na, 4);
  float *junk = rnd(na > n3 ? na : n3, 10, 100);
  float *gqkv = UPF(qkv, n3), *gout = UPF(junk, no), *gatt = UPF(junk, na);
  int *gks = kstart ? UPI(kstart, B) : NULL;
  char what[128];
  C_->attention_bidir_fwd(out, att, qkv, kstart, B, T, C, NH);
  G->attention_bidir_fwd(gout, gatt, gqkv, gks, B, T, C, NH);
  snprintf(what, sizeof what, "attention_bidir_fwd out B=%d T=%d C=%d NH=%d", B, T, C, NH);
  check_dev(what, out, gout, no, TOL_RED);
  snprintf(what, sizeof what, "attention_bidir_fwd att B=%d T=%d C=%d NH=%d", B, T, C, NH);
  check_dev(what, att, gatt, na, TOL_RED);
  G->free(gqkv), G->free(gout), G->free(gatt);
  if (gks)
    G->free(gks);
  free(qkv), free(out), free(att), free(junk);
}

Test(ops_cuda, attention_bidirectional) {
  NEED_GPU();
  static const int ks3[3] = {0, 5, 16};
  bidir_case(3, 17, 48, 3, ks3);
  bidir_case(2, 70, 768, 12, NULL); /* distilbert-base's heads */
}

Test(ops_cuda, activations) {
  NEED_GPU();
  size_t n = 100003;
  float *x = rnd(n, 11, 3), *o = calloc(n, 4);
  float *gx = UPF(x, n), *go = UPF(o, n);
  static const char *names[3] = {"act_fwd gelu_erf", "act_fwd tanh", "act_fwd relu"};
  for (int k = 0; k < 3; k++) {
    C_->act_fwd(o, x, n, k);
    G->act_fwd(go, gx, n, k);
    check_dev(names[k], o, go, n, TOL_RED);
  }
  G->free(gx), G->free(go);
  free(x), free(o);
}

Test(ops_cuda, gelu_add_scale) {
  NEED_GPU();
  size_t n = 100003;
  float *x = rnd(n, 1, 3), *d = rnd(n, 2, 1), *y = rnd(n, 3, 1);
  float *o = calloc(n, 4), *di = calloc(n, 4);
  float *gx = UPF(x, n), *gd = UPF(d, n), *gy = UPF(y, n), *go = UPF(o, n);
  C_->gelu_fwd(o, x, n);
  G->gelu_fwd(go, gx, n);
  check_dev("gelu_fwd", o, go, n, TOL_RED);
  /* the engine calls gelu_bwd with dinp == dout */
  memcpy(di, d, n * 4);
  C_->gelu_bwd(di, x, di, n);
  G->gelu_bwd(gd, gx, gd, n);
  check_dev("gelu_bwd (in place)", di, gd, n, TOL_RED);
  /* add with out == a, as the residual adds */
  float *s = dupf(x, n);
  C_->add(s, s, y, n);
  G->add(gx, gx, gy, n);
  check_dev("add (in place)", s, gx, n, 0.0);
  C_->scale(s, 0.37f, n);
  G->scale(gx, 0.37f, n);
  check_dev("scale", s, gx, n, 0.0);
  G->free(gx), G->free(gd), G->free(gy), G->free(go);
  free(x), free(d), free(y), free(o), free(di), free(s);
}

/* ------------------------------------------------------------- logits */

Test(ops_cuda, logits_stats_and_backward) {
  NEED_GPU();
  int N = 7, V = 1003, ld = 1010;
  size_t nz = (size_t)N * ld;
  float *z = rnd(nz, 1, 4);
  static const int tgt[7] = {0, 5, -1, 1002, 17, 500, 3};
  float *dlogp = rnd((size_t)N, 2, 1), *dent = rnd((size_t)N, 3, 1);
  float lse[7], logp[7], ent[7];
  float *gz = UPF(z, nz), *glse = UPF(lse, N), *glogp = UPF(logp, N), *gent = UPF(ent, N);
  float *gdlogp = UPF(dlogp, N), *gdent = UPF(dent, N);
  int *gtgt = UPI(tgt, N);
  C_->logits_stats(lse, logp, ent, z, tgt, N, V, ld);
  G->logits_stats(glse, glogp, gent, gz, gtgt, N, V, ld);
  check_dev("logits_stats lse", lse, glse, (size_t)N, TOL_RED);
  check_dev("logits_stats logp", logp, glogp, (size_t)N, TOL_RED);
  check_dev("logits_stats ent", ent, gent, (size_t)N, TOL_RED);
  /* no targets, no entropy */
  float lse2[7];
  G->logits_stats(glse, NULL, NULL, gz, NULL, N, V, ld);
  G->download(lse2, glse, sizeof lse2);
  close_to("logits_stats lse (no targets)", lse, lse2, (size_t)N, TOL_RED);
  G->upload(glse, lse, sizeof lse);
  /* backward with an entropy term: in place over the rows (the padding
   * columns V..ld-1 untouched) */
  float *zc = dupf(z, nz);
  C_->logits_bwd(zc, lse, ent, tgt, dlogp, dent, N, V, ld);
  G->upload(gent, ent, sizeof ent);
  G->logits_bwd(gz, glse, gent, gtgt, gdlogp, gdent, N, V, ld);
  check_dev("logits_bwd (with entropy)", zc, gz, nz, TOL_RED);
  /* plain cross-entropy */
  float *zd = dupf(z, nz);
  G->upload(gz, z, nz * 4);
  C_->logits_bwd(zd, lse, ent, tgt, dlogp, NULL, N, V, ld);
  G->logits_bwd(gz, glse, gent, gtgt, gdlogp, NULL, N, V, ld);
  check_dev("logits_bwd (cross-entropy)", zd, gz, nz, TOL_RED);
  G->free(gz), G->free(glse), G->free(glogp), G->free(gent), G->free(gdlogp), G->free(gdent);
  G->free(gtgt);
  free(z), free(dlogp), free(dent), free(zc), free(zd);
}

/* ----------------------------------------------------------- optimiser */

Test(ops_cuda, adamw_ten_steps_sumsq) {
  NEED_GPU();
  size_t n = 50001;
  float *p = rnd(n, 1, 1), *m = calloc(n, 4), *v = calloc(n, 4);
  float *gp = UPF(p, n), *gm = UPF(m, n), *gv = UPF(v, n), *gg = UPF(m, n);
  for (int t = 1; t <= 10; t++) {
    float *g = rnd(n, 100 + (uint64_t)t, 0.1f);
    G->upload(gg, g, n * 4);
    double a = C_->sumsq(g, n), b = G->sumsq(gg, n);
    cr_expect(fabs(a - b) <= 1e-12 * a, "sumsq step %d: cpu %.17g gpu %.17g", t, a, b);
    C_->adamw(p, g, m, v, n, 1e-3f, 0.9f, 0.999f, 1e-8f, t % 2 ? 0.01f : 0.0f, t);
    G->adamw(gp, gg, gm, gv, n, 1e-3f, 0.9f, 0.999f, 1e-8f, t % 2 ? 0.01f : 0.0f, t);
    free(g);
  }
  check_dev("adamw p after 10 steps", p, gp, n, TOL_RED);
  check_dev("adamw m after 10 steps", m, gm, n, TOL_RED);
  check_dev("adamw v after 10 steps", v, gv, n, TOL_RED);
  float *g = down(gg, n);
  for (size_t i = 0; i < n; i++)
    cr_expect_eq(g[i], 0.0f, "adamw left gradient %zu non-zero", i);
  G->free(gp), G->free(gm), G->free(gv), G->free(gg);
  free(p), free(m), free(v), free(g);
}

/* ------------------------------------------------------- a whole model */

static model_t *model_on(ops_device d, const gpt2_config *cfg) {
  ops_use_device(d);
  model_t *m = NULL;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(gpt2_new(&m, cfg, &err), 0, "%s", err.msg);
  ops_use_device(OPS_DEVICE_CPU);
  cr_assert_eq(model_device(m), d);
  model_init_random(m, 7);
  return m;
}

/* all of a model's parameters (grads: 1) on the host, in tensor order */
static float *host_params(model_t *m, int grads, size_t *n) {
  *n = model_num_params(m);
  float *h = malloc(*n * sizeof(float));
  const ops_backend *o = model_device(m) == OPS_DEVICE_CUDA ? G : C_;
  size_t off = 0;
  for (int i = 0; i < gpt2_num_tensors(m); i++) {
    int rows, cols;
    float *p, *g;
    gpt2_tensor_info(m, i, NULL, &rows, &cols, &p, &g);
    o->download(h + off, grads ? g : p, (size_t)rows * cols * sizeof(float));
    off += (size_t)rows * cols;
  }
  return h;
}

Test(ops_cuda, gpt2_step_and_ten_adamw_steps) {
  NEED_GPU();
  gpt2_config cfg = {2, 2, 64, 300, 64, MODEL_HEAD_NONE, 0};
  model_t *mc = model_on(OPS_DEVICE_CPU, &cfg), *mg = model_on(OPS_DEVICE_CUDA, &cfg);
  int B = 3, T = 20;
  int tok[60], tgt[60], ks[3] = {0, 3, 7};
  dfpo_rng r;
  dfpo_rng_init(&r, 3, 4);
  for (int i = 0; i < B * T; i++) {
    tok[i] = (int)dfpo_rng_below(&r, 300);
    tgt[i] = i % T < ks[i / T] ? -1 : (int)dfpo_rng_below(&r, 300);
  }
  size_t n;
  float *p0 = host_params(mc, 0, &n);
  dfpo_err err;
  dfpo_err_clear(&err);
  opt_adamw opt = opt_adamw_default();
  opt.clip = 1.0f;
  for (int s = 0; s < 10; s++) {
    float lc, lg;
    model_zero_grad(mc);
    model_zero_grad(mg);
    cr_assert_eq(model_lm_loss_rows(mc, tok, tgt, ks, B, T, 1, &lc, &err), 0, "%s", err.msg);
    cr_assert_eq(model_lm_loss_rows(mg, tok, tgt, ks, B, T, 1, &lg, &err), 0, "%s", err.msg);
    cr_expect(fabsf(lc - lg) <= 1e-4f * fabsf(lc), "step %d: loss cpu %.7f gpu %.7f", s, (double)lc,
              (double)lg);
    if (s == 0) {
      size_t k;
      float *gc = host_params(mc, 1, &k), *gg = host_params(mg, 1, &k);
      size_t off = 0;
      for (int i = 0; i < gpt2_num_tensors(mc); i++) {
        const char *name;
        int rows, cols;
        gpt2_tensor_info(mc, i, &name, &rows, &cols, NULL, NULL);
        char what[128];
        snprintf(what, sizeof what, "gradient of %s", name);
        close_to(what, gc + off, gg + off, (size_t)rows * cols, 1e-4);
        off += (size_t)rows * cols;
      }
      free(gc), free(gg);
    }
    float nc, ng;
    cr_assert_eq(opt_adamw_step(mc, &opt, 1e-3f, &nc, &err), 0, "%s", err.msg);
    cr_assert_eq(opt_adamw_step(mg, &opt, 1e-3f, &ng, &err), 0, "%s", err.msg);
    cr_expect(fabsf(nc - ng) <= 1e-4f * nc, "step %d: grad norm cpu %.7f gpu %.7f", s, (double)nc,
              (double)ng);
  }
  float *pc = host_params(mc, 0, &n), *pg = host_params(mg, 0, &n);
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    double dc = (double)pc[i] - p0[i], dg = (double)pg[i] - p0[i];
    num += (dc - dg) * (dc - dg);
    den += dc * dc;
  }
  cr_expect(den > 0 && sqrt(num / den) < 1e-2, "10 AdamW steps: update error %.3g",
            den > 0 ? sqrt(num / den) : -1.0);

  /* decoding on the trained weights: prompt logits, then three steps */
  int next[3] = {1, 2, 3};
  const float *zc = model_decode_begin(mc, tok, ks, B, T, T + 4, &err);
  cr_assert(zc, "%s", err.msg);
  const float *zg = model_decode_begin(mg, tok, ks, B, T, T + 4, &err);
  cr_assert(zg, "%s", err.msg);
  check_dev("decode_begin logits", zc, zg, (size_t)B * 300, 1e-4);
  for (int s = 0; s < 3; s++) {
    zc = model_decode_step(mc, next, &err);
    zg = model_decode_step(mg, next, &err);
    cr_assert(zc && zg, "%s", err.msg);
    check_dev("decode_step logits", zc, zg, (size_t)B * 300, 1e-4);
    for (int b = 0; b < B; b++)
      next[b] = (next[b] * 7 + 5) % 300;
  }
  /* a checkpoint saved from the GPU loads on the CPU unchanged */
  char dir[256], path[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/m.ckpt", dir);
  cr_assert_eq(model_save(mg, path, 1, &err), 0, "%s", err.msg);
  model_t *back = NULL;
  cr_assert_eq(model_load(&back, path, &err), 0, "%s", err.msg);
  cr_expect_eq(model_device(back), OPS_DEVICE_CPU);
  float *pb = host_params(back, 0, &n);
  cr_expect(memcmp(pb, pg, n * sizeof(float)) == 0, "checkpoint changed the GPU's parameters");
  model_free(back);
  ts_rmtree(dir);
  model_free(mc), model_free(mg);
  free(p0), free(pc), free(pg), free(pb);
}

/* ---------------------------------------------------------- sampling */

/* One sample-op case on both backends: the same logits, allowed set and
 * uniforms give the same tokens; the filtered probabilities left in z and
 * the log-probabilities agree to 1e-6 (exp on the GPU against the CPU's
 * libm; on the CUDA emulator, which uses the host's libm, they are equal
 * bit for bit). */
static void sample_case(const char *what, const float *z0, const unsigned char *allow,
                        const double *u, int B, int V, float temp, int top_k, float top_p,
                        int ban) {
  size_t n = (size_t)B * V;
  float *zc = dupf(z0, n), lpc[16], lpg[16];
  int tc[16], tg[16];
  cr_assert_leq(B, 16);
  C_->sample(tc, lpc, zc, allow, u, B, V, temp, top_k, top_p, ban);
  float *gz = UPF(z0, n), *glp = (float *)G->alloc(B * sizeof(float));
  int *gt = (int *)G->alloc(B * sizeof(int));
  double *gu = (double *)up(u, B * sizeof(double));
  unsigned char *ga = allow ? (unsigned char *)up(allow, n) : NULL;
  G->sample(gt, glp, gz, ga, gu, B, V, temp, top_k, top_p, ban);
  G->download(tg, gt, B * sizeof(int));
  G->download(lpg, glp, B * sizeof(float));
  float *zg = down(gz, n);
  for (int b = 0; b < B; b++) {
    cr_expect_eq(tc[b], tg[b], "%s row %d (u %.17g): cpu token %d gpu %d", what, b, u[b], tc[b],
                 tg[b]);
    if (tc[b] >= 0 && tc[b] == tg[b])
      cr_expect(fabsf(lpc[b] - lpg[b]) <= 1e-6f * (1.0f + fabsf(lpc[b])),
                "%s row %d: logp cpu %.9g gpu %.9g", what, b, (double)lpc[b], (double)lpg[b]);
    if (u[b] >= 0 && tc[b] >= 0)
      close_to(what, zc + (size_t)b * V, zg + (size_t)b * V, (size_t)V, 1e-6);
  }
  G->free(gz), G->free(glp), G->free(gt), G->free(gu);
  if (ga)
    G->free(ga);
  free(zc), free(zg);
}

/* The sample op against ops_cpu's: random logits kept within a few nats
 * (so that every probability is a multiple of 2^-40 and every sum of a
 * thousand of them is exact in double, in any order: the same totals and
 * the same cumulative walk on both), rows of ties (a few distinct values,
 * so top-k cuts inside a tie and top-p ends inside one), flat rows, an
 * allowed set, a banned token, a row with every token banned (-1), a
 * skipped row (u < 0), greedy with ties at the maximum, and uniforms 0 and
 * just below 1. */
Test(ops_cuda, sample_same_tokens_as_the_cpu) {
  NEED_GPU();
  enum { B = 8 };
  const int Vs[2] = {300, 1000};
  for (int vi = 0; vi < 2; vi++) {
    int V = Vs[vi];
    size_t n = (size_t)B * V;
    float *rn = rnd(n, 40 + (uint64_t)vi, 1.0f), *ties = malloc(n * sizeof(float)),
          *flat = malloc(n * sizeof(float));
    unsigned char *allow = malloc(n);
    dfpo_rng r;
    dfpo_rng_init(&r, 41, 3);
    for (size_t i = 0; i < n; i++) {
      rn[i] = rn[i] > 3.0f ? 3.0f : rn[i] < -3.0f ? -3.0f : rn[i];
      ties[i] = (float)dfpo_rng_below(&r, 3);
      flat[i] = 0.5f;
      allow[i] = dfpo_rng_below(&r, 2) || i % V == 7;
    }
    for (int i = 0; i < V; i++)
      allow[(size_t)5 * V + i] = 0; /* row 5: nothing allowed */
    double u[B];
    for (int b = 0; b < B; b++)
      u[b] = dfpo_rng_uniform(&r);
    u[1] = 0.0;
    u[2] = 0.9999999999;
    u[6] = -1.0; /* skipped */
    const struct {
      const char *name;
      const float *z;
      int allow;
      float temp, top_p;
      int top_k, ban;
    } cases[] = {
        {"plain", rn, 0, 1.0f, 1.0f, 0, -1},
        {"temperature 0.7", rn, 0, 0.7f, 1.0f, 0, -1},
        {"top-k 50", rn, 0, 1.0f, 1.0f, 50, -1},
        {"top-p 0.9", rn, 0, 1.0f, 0.9f, 0, -1},
        {"top-k 40 top-p 0.5 temperature 1.3", rn, 0, 1.3f, 0.5f, 40, 3},
        {"allowed set and ban", rn, 1, 1.0f, 0.8f, 0, 7},
        {"greedy", ties, 0, 0.0f, 1.0f, 0, -1},
        {"greedy top-p", ties, 1, 0.0f, 0.3f, 0, -1},
        {"ties top-k 100", ties, 0, 1.0f, 1.0f, 100, -1},
        {"ties top-p 0.4", ties, 0, 1.0f, 0.4f, 0, -1},
        {"ties top-p 0.95 allowed", ties, 1, 1.0f, 0.95f, 0, 0},
        {"flat", flat, 0, 1.0f, 1.0f, 0, -1},
        {"flat top-k 17", flat, 0, 1.0f, 1.0f, 17, -1},
        {"flat top-p 0.33", flat, 0, 2.0f, 0.33f, 0, -1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
      char what[128];
      snprintf(what, sizeof what, "V %d: %s", V, cases[c].name);
      sample_case(what, cases[c].z, cases[c].allow ? allow : NULL, u, B, V, cases[c].temp,
                  cases[c].top_k, cases[c].top_p, cases[c].ban);
    }
    free(rn), free(ties), free(flat), free(allow);
  }
}

/* The sampler of smp_generate: a GPU model and a CPU model with the same
 * weights generate the same tokens from the same seed (top-k, top-p, a
 * minimum length that bans end-of-text, and left padding). */
Test(ops_cuda, generate_same_tokens_as_the_cpu) {
  NEED_GPU();
  gpt2_config cfg = {1, 2, 32, 300, 64, MODEL_HEAD_NONE, 0};
  model_t *mc = model_on(OPS_DEVICE_CPU, &cfg), *mg = model_on(OPS_DEVICE_CUDA, &cfg);
  int prompts[12] = {0, 0, 5, 6, 1, 2, 3, 4, 0, 9, 8, 7}, ks[3] = {2, 0, 1};
  smp_settings s = smp_settings_default();
  s.max_new = 6;
  s.min_new = 3;
  s.eos = 11;
  s.top_k = 40;
  s.top_p = 0.9f;
  int oc[18], og[18], lc[3], lg[3];
  float pc[18], pg[18];
  dfpo_rng rc, rg;
  dfpo_rng_init(&rc, 9, DFPO_STREAM_SAMPLING);
  dfpo_rng_init(&rg, 9, DFPO_STREAM_SAMPLING);
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(smp_generate(mc, prompts, ks, 3, 4, &s, &rc, oc, lc, pc, &err), 0, "%s", err.msg);
  cr_assert_eq(smp_generate(mg, prompts, ks, 3, 4, &s, &rg, og, lg, pg, &err), 0, "%s", err.msg);
  for (int i = 0; i < 18; i++) {
    cr_expect_eq(oc[i], og[i], "token %d: cpu %d gpu %d", i, oc[i], og[i]);
    cr_expect(fabsf(pc[i] - pg[i]) <= 1e-4f * (1.0f + fabsf(pc[i])), "logp %d: cpu %g gpu %g", i,
              (double)pc[i], (double)pg[i]);
  }
  model_free(mc), model_free(mg);
}

/* Beam search over model_decode_reorder, whose CUDA path is the backend's
 * copy op: a GPU model and a CPU model with the same weights give the same
 * hypotheses and scores (left padding, an end-of-text, several returned). */
Test(ops_cuda, beam_search_same_as_the_cpu) {
  NEED_GPU();
  gpt2_config cfg = {1, 2, 32, 300, 64, MODEL_HEAD_NONE, 0};
  model_t *mc = model_on(OPS_DEVICE_CPU, &cfg), *mg = model_on(OPS_DEVICE_CUDA, &cfg);
  int prompts[12] = {0, 0, 5, 6, 1, 2, 3, 4, 0, 9, 8, 7}, ks[3] = {2, 0, 1};
  beam_settings s = beam_settings_default();
  s.num_beams = 4;
  s.num_return = 2;
  s.max_new = 6;
  s.min_new = 1;
  s.eos = 11;
  s.length_penalty = 0.6f;
  s.early_stopping = BEAM_EARLY_NEVER;
  int oc[36], og[36], lc[6], lg[6];
  double sc[6], sg[6];
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(beam_search(mc, prompts, ks, 3, 4, &s, oc, lc, sc, &err), 0, "%s", err.msg);
  cr_assert_eq(beam_search(mg, prompts, ks, 3, 4, &s, og, lg, sg, &err), 0, "%s", err.msg);
  for (int h = 0; h < 6; h++) {
    cr_expect_eq(lc[h], lg[h], "hypothesis %d: cpu %d tokens, gpu %d", h, lc[h], lg[h]);
    cr_expect(fabs(sc[h] - sg[h]) <= 1e-4 * (1.0 + fabs(sc[h])), "score %d: cpu %g gpu %g", h,
              sc[h], sg[h]);
  }
  for (int i = 0; i < 36; i++)
    cr_expect_eq(oc[i], og[i], "token %d: cpu %d gpu %d", i, oc[i], og[i]);
  model_free(mc), model_free(mg);
}

/* ------------------------------------------------------- RL on the GPU */

/* Two RL iterations of each algorithm (NLPO's and DfPO's masks included)
 * with the policy, reference and value model on the GPU against the same on
 * the CPU: the rollouts draw the same uniforms, so (away from a uniform
 * that lands within rounding of a boundary of the cumulative distribution)
 * the same tokens, hence the same rewards and lengths; the KL and the
 * losses agree to the whole-model tolerance (1e-4 relative, 1e-3 for the
 * losses after an update). Shows that rl_train.c reads every device
 * buffer through a download. */
Test(ops_cuda, rl_iterations_match_the_cpu) {
  NEED_GPU();
  enum { V = 8, B = 4 }; /* small enough for the CUDA emulator */
  gpt2_config pc = {1, 2, 16, V, 16, MODEL_HEAD_NONE, 0}, vc = pc;
  vc.head = MODEL_HEAD_VALUE;
  const int algos[3] = {RL_PPO, RL_NLPO, RL_DFPO};
  for (int a = 0; a < 3; a++) {
    rl_stats st[2][2];
    for (int d = 0; d < 2; d++) {
      ops_device dev = d ? OPS_DEVICE_CUDA : OPS_DEVICE_CPU;
      model_t *pol = model_on(dev, &pc), *ref = model_on(dev, &pc), *val = model_on(dev, &vc);
      dfpo_err err;
      dfpo_err_clear(&err);
      rl_config cfg = rl_config_default();
      cfg.algo = algos[a];
      cfg.lr = 3e-3f;
      cfg.epochs = 1;
      cfg.minibatch = 2;
      cfg.nlpo_top_p = 0.5f;
      cfg.nlpo_k_min = 2;
      cfg.sampling.max_new = 3;
      cfg.sampling.eos = -1;
      ops_use_device(dev); /* NLPO's mask model goes where the policy is */
      rl_trainer *t;
      cr_assert_eq(rl_trainer_new(&t, pol, ref, val, &cfg, 5, &err), 0, "%s", err.msg);
      ops_use_device(OPS_DEVICE_CPU);
      int prompts[B], good = 3;
      for (int b = 0; b < B; b++)
        prompts[b] = b % V;
      for (int it = 0; it < 2; it++)
        cr_assert_eq(rl_iterate(t, prompts, NULL, B, 1, tu_share_of, &good, &st[d][it], &err), 0,
                     "%s", err.msg);
      rl_trainer_free(t);
      model_free(pol), model_free(ref), model_free(val);
    }
    for (int it = 0; it < 2; it++) {
      rl_stats *c = &st[0][it], *g = &st[1][it];
      cr_expect_eq(c->reward, g->reward, "algo %d it %d: reward cpu %g gpu %g", algos[a], it,
                   c->reward, g->reward);
      cr_expect_eq(c->mean_len, g->mean_len);
      cr_expect(fabs(c->kl_token - g->kl_token) <= 1e-4 * fabs(c->kl_token) + 1e-7,
                "algo %d it %d: kl_token cpu %.9g gpu %.9g", algos[a], it, c->kl_token,
                g->kl_token);
      cr_expect(fabs(c->policy_loss - g->policy_loss) <= 1e-3 * fabs(c->policy_loss) + 1e-6,
                "algo %d it %d: policy loss cpu %.9g gpu %.9g", algos[a], it, c->policy_loss,
                g->policy_loss);
      cr_expect(fabs(c->value_loss - g->value_loss) <= 1e-3 * fabs(c->value_loss) + 1e-6,
                "algo %d it %d: value loss cpu %.9g gpu %.9g", algos[a], it, c->value_loss,
                g->value_loss);
      cr_expect_eq(c->mask_mean, g->mask_mean);
    }
  }
}

/* ---------------------------------------------------- device selection */

Test(ops_cuda, device_parse_names) {
  ops_device d;
  cr_expect_eq(ops_device_parse("cpu", &d, NULL), DFPO_OK);
  cr_expect_eq(d, OPS_DEVICE_CPU);
  cr_expect_eq(ops_device_parse("cuda", &d, NULL), DFPO_OK);
  cr_expect_eq(d, OPS_DEVICE_CUDA);
  cr_expect_eq(ops_device_parse("auto", &d, NULL), DFPO_OK);
  cr_expect_eq(d, OPS_DEVICE_AUTO);
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_expect_eq(ops_device_parse("gpu", &d, &err), DFPO_EUSAGE);
  cr_expect(strstr(err.msg, "'gpu'"), "%s", err.msg);
}

/* Without a usable device, cuda fails with the probe's own reason (on this
 * project's build machine: no NVIDIA driver) and auto falls back to the
 * CPU, saying why; with one, both give CUDA. */
Test(ops_cuda, resolve_cuda_and_auto) {
  ops_env_info info;
  ops_env_probe(&info);
  char why[1024];
  int usable = gpu_usable(why, sizeof why);
  dfpo_err err;
  dfpo_err_clear(&err);
  ops_device got = OPS_DEVICE_AUTO;
  char note[1024];
  int rc = ops_device_resolve(OPS_DEVICE_CUDA, &got, NULL, 0, &err);
  if (usable) {
    cr_expect_eq(rc, DFPO_OK);
    cr_expect_eq(got, OPS_DEVICE_CUDA);
  } else {
    cr_expect_eq(rc, DFPO_ERUNTIME);
    cr_expect(strstr(err.msg, "--device cuda: no usable CUDA device: "), "%s", err.msg);
    if (info.cuda_devices == 0)
      cr_expect(strstr(err.msg, info.cuda_reason), "'%s' does not carry the probe's '%s'", err.msg,
                info.cuda_reason);
  }
  rc = ops_device_resolve(OPS_DEVICE_AUTO, &got, note, sizeof note, &err);
  cr_expect_eq(rc, DFPO_OK);
  cr_expect_eq(got, usable ? OPS_DEVICE_CUDA : OPS_DEVICE_CPU);
  if (usable)
    cr_expect_eq(note[0], 0, "%s", note);
  else
    cr_expect(strstr(note, "using the CPU") && strstr(note, "no usable CUDA device"), "%s", note);
  cr_expect_eq(ops_device_resolve(OPS_DEVICE_CPU, &got, note, sizeof note, &err), DFPO_OK);
  cr_expect_eq(got, OPS_DEVICE_CPU);
}

Test(ops_cuda, cli_device_cuda_fails_cleanly_or_runs) {
  char why[1024];
  int usable = gpu_usable(why, sizeof why);
  ts_run r;
  ts_dfpo(&r, "env", "--device", "cuda", NULL);
  if (usable) {
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "Device:       cuda"), "%s", r.out);
  } else {
    cr_expect_eq(r.status, DFPO_ERUNTIME, "status %d: %s", r.status, r.err);
    cr_expect(strstr(r.err, "dfpo: error: --device cuda: no usable CUDA device: "), "%s", r.err);
    /* the reason, as the library gives it */
    cr_expect(strstr(r.err, why + strlen("--device cuda: no usable CUDA device: ")),
              "stderr '%s' lacks '%s'", r.err, why);
  }
  ts_run_free(&r);
  ts_dfpo(&r, "bench", "--device", "cuda", "--shape", "gpt2-tiny", "--steps", "1", "--batch", "1",
          "--seq", "8", NULL);
  if (usable)
    cr_expect_eq(r.status, 0, "%s", r.err);
  else {
    cr_expect_eq(r.status, DFPO_ERUNTIME, "%s", r.err);
    cr_expect_eq(r.out[0], 0, "bench printed a result without a device: %s", r.out);
  }
  ts_run_free(&r);
  ts_dfpo(&r, "bench", "--device", "gpu", NULL);
  cr_expect_eq(r.status, DFPO_EUSAGE);
  cr_expect(strstr(r.err, "--device must be cpu, cuda or auto"), "%s", r.err);
  ts_run_free(&r);
}

Test(ops_cuda, cli_device_auto_falls_back_and_says_so) {
  char why[1024];
  int usable = gpu_usable(why, sizeof why);
  ts_run r;
  ts_dfpo(&r, "bench", "--device", "auto", "--shape", "gpt2-tiny", "--steps", "1", "--batch", "1",
          "--seq", "8", NULL);
  cr_assert_eq(r.status, 0, "%s", r.err);
  if (usable) {
    cr_expect(strstr(r.out, "\"device\": \"cuda\""), "%s", r.out);
  } else {
    cr_expect(strstr(r.out, "\"device\": \"cpu\""), "%s", r.out);
    cr_expect(strstr(r.err, "dfpo: warning: --device auto: no usable CUDA device ("), "%s", r.err);
    cr_expect(strstr(r.err, "); using the CPU"), "%s", r.err);
  }
  ts_run_free(&r);
}
