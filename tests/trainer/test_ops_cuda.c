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
#include "trainer/rdec.h"
#include "trainer/rl.h"
#include "trainer/sample.h"
#include "trainer/t5.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "tests/support/support.h"
#include "tests/trainer/gpt2_testutil.h"
#include "tests/trainer/rdec_testutil.h"

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

/* The CUDA backend's product precision: 0 fp32, 1 TF32, 2 bf16. */
static void set_prec(int prec) {
#ifdef DFPO_HAVE_CUDA
  ops_cuda_set_tf32(prec == 1);
  ops_cuda_set_bf16(prec == 2);
#else
  (void)prec;
#endif
}

/* prec: 0 fp32, 1 TF32, 2 bf16 */
static void matmul_case(int M, int K, int N, int with_bias, int prec, double tol) {
  set_prec(prec);
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
  set_prec(0);
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

/* Weights kept in 16 bits (matmul_fwd_w16, encoder_fwd_w16) against the
 * CPU's op on the same 16-bit weights: the CPU widens them and sums in
 * fp32, the GPU also rounds the activations to the weights' type for
 * GemmEx, so the error is the activations' rounding: bf16 within TOL_BF16
 * (as the bf16 switch above), fp16 (a 10-bit mantissa, 2^-11 per input,
 * TF32's) within TOL_TF32. The embedding adds one widened value to one
 * fp32 value: exact. */
static void w16_case(int M, int K, int N, int with_bias, int dtype, double tol) {
  size_t nx = (size_t)M * K, nw = (size_t)N * K, no = (size_t)M * N;
  float *x = rnd(nx, 10 + M, 1), *w = rnd(nw, 20 + N, 1), *b = rnd((size_t)N, 30, 1);
  uint16_t *w16 = malloc(nw * sizeof(uint16_t));
  cr_assert(w16);
  ops_f32_to_w16(w16, w, nw, dtype);
  float *out = calloc(no, sizeof(float)), *junk = rnd(no, 99, 100);
  float *gx = UPF(x, nx), *gb = UPF(b, N), *gout = UPF(junk, no);
  uint16_t *gw = up(w16, nw * sizeof(uint16_t));
  C_->matmul_fwd_w16(out, x, w16, with_bias ? b : NULL, M, K, N, dtype);
  G->matmul_fwd_w16(gout, gx, gw, with_bias ? gb : NULL, M, K, N, dtype);
  char what[128];
  snprintf(what, sizeof what, "matmul_fwd_w16 M=%d K=%d N=%d bias=%d %s", M, K, N, with_bias,
           ops_dtype_name(dtype));
  cr_log_info("%s: error %.3g of tolerance %.3g", what, check_dev(what, out, gout, no, tol), tol);
  G->free(gx), G->free(gb), G->free(gout), G->free(gw);
  free(x), free(w), free(b), free(w16), free(out), free(junk);
}

/* matmul_bwd_w16, the input gradient through 16-bit weights, added to a
 * gradient already there, against the CPU's: the GPU rounds dout to the
 * weights' type for GemmEx, the error that rounding's (tolerances as
 * w16_case). */
static void w16_bwd_case(int M, int K, int N, int dtype, double tol) {
  size_t nd = (size_t)M * N, nw = (size_t)N * K, ni = (size_t)M * K;
  float *d = rnd(nd, 40 + M, 1), *w = rnd(nw, 50 + N, 1), *g = rnd(ni, 60 + K, 1);
  uint16_t *w16 = malloc(nw * sizeof(uint16_t));
  cr_assert(w16);
  ops_f32_to_w16(w16, w, nw, dtype);
  float *gd = UPF(d, nd), *gg = UPF(g, ni);
  uint16_t *gw = up(w16, nw * sizeof(uint16_t));
  C_->matmul_bwd_w16(g, d, w16, M, K, N, dtype);
  G->matmul_bwd_w16(gg, gd, gw, M, K, N, dtype);
  char what[128];
  snprintf(what, sizeof what, "matmul_bwd_w16 M=%d K=%d N=%d %s", M, K, N, ops_dtype_name(dtype));
  cr_log_info("%s: error %.3g of tolerance %.3g", what, check_dev(what, g, gg, ni, tol), tol);
  G->free(gd), G->free(gg), G->free(gw);
  free(d), free(w), free(g), free(w16);
}

Test(ops_cuda, matmul_and_encoder_w16) {
  NEED_GPU();
  w16_bwd_case(128, 192, 256, OPS_DTYPE_BF16, TOL_BF16);
  w16_bwd_case(3, 64, 200, OPS_DTYPE_F16, TOL_TF32);
  w16_case(128, 256, 192, 1, OPS_DTYPE_BF16, TOL_BF16);
  w16_case(1, 64, 200, 0, OPS_DTYPE_BF16, TOL_BF16); /* a decoding row, the LM head */
  w16_case(128, 256, 192, 1, OPS_DTYPE_F16, TOL_TF32);
  w16_case(3, 64, 200, 0, OPS_DTYPE_F16, TOL_TF32);
  int N = 300, C = 80, V = 17, P = 40;
  int *tok = malloc((size_t)N * sizeof(int)), *pos = malloc((size_t)N * sizeof(int));
  dfpo_rng r;
  dfpo_rng_init(&r, 5, 3);
  for (int i = 0; i < N; i++) {
    tok[i] = (int)dfpo_rng_below(&r, (uint32_t)V);
    pos[i] = i % P;
  }
  float *wte = rnd((size_t)V * C, 1, 1), *wpe = rnd((size_t)P * C, 2, 1);
  uint16_t *w16 = malloc((size_t)V * C * sizeof(uint16_t));
  float *out = calloc((size_t)N * C, sizeof(float));
  int *gtok = UPI(tok, N), *gpos = UPI(pos, N);
  float *gwpe = UPF(wpe, P * C), *gout = UPF(out, N * C);
  for (int dtype = OPS_DTYPE_BF16; dtype <= OPS_DTYPE_F16; dtype++) {
    ops_f32_to_w16(w16, wte, (size_t)V * C, dtype);
    uint16_t *gw = up(w16, (size_t)V * C * sizeof(uint16_t));
    C_->encoder_fwd_w16(out, tok, pos, w16, wpe, N, C, dtype);
    G->encoder_fwd_w16(gout, gtok, gpos, gw, gwpe, N, C, dtype);
    check_dev(dtype == OPS_DTYPE_BF16 ? "encoder_fwd_w16 bf16" : "encoder_fwd_w16 f16", out, gout,
              (size_t)N * C, 0.0);
    G->free(gw);
  }
  G->free(gtok), G->free(gpos), G->free(gwpe), G->free(gout);
  free(tok), free(pos), free(wte), free(wpe), free(w16), free(out);
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
/* prec as matmul_case's (0 fp32, 1 TF32, 2 bf16: the batched products of
 * q k^T, att v and the backward's four), within tol */
static void attention_case(int B, int T, int C, int NH, const int *kstart, int prec, double tol) {
  set_prec(prec);
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
  snprintf(what, sizeof what, "attention_fwd out B=%d T=%d C=%d NH=%d ks=%s prec=%d", B, T, C, NH,
           kstart ? "yes" : "NULL", prec);
  check_dev(what, out, gout, no, tol);
  snprintf(what, sizeof what, "attention_fwd att B=%d T=%d C=%d NH=%d prec=%d", B, T, C, NH, prec);
  check_dev(what, att, gatt, na, tol);
  /* backward from the CPU's probabilities on both sides, into garbage */
  G->upload(gatt, att, na * sizeof(float));
  C_->attention_bwd(dqkv, dout, qkv, att, kstart, B, T, C, NH);
  G->attention_bwd(gdqkv, gdout, gqkv, gatt, gks, B, T, C, NH);
  snprintf(what, sizeof what, "attention_bwd dqkv B=%d T=%d C=%d NH=%d prec=%d", B, T, C, NH, prec);
  check_dev(what, dqkv, gdqkv, n3, tol);
  set_prec(0);
  G->free(gqkv), G->free(gdout), G->free(gout), G->free(gatt), G->free(gdqkv);
  if (gks)
    G->free(gks);
  free(qkv), free(dout), free(out), free(att), free(dqkv), free(junk);
}

Test(ops_cuda, attention_training) {
  NEED_GPU();
  static const int ks3[3] = {0, 5, 17};            /* none, some, all padding (kstart = T) */
  attention_case(3, 17, 48, 3, ks3, 0, TOL_RED);   /* head size 16 < a warp */
  attention_case(2, 70, 128, 2, NULL, 0, TOL_RED); /* head size 64, T over two warps of keys */
  static const int ks2[2] = {33, 1};
  attention_case(2, 40, 96, 1, ks2, 0, TOL_RED); /* head size 96: three lanes' strides */
  /* the products on TF32 and bf16 tensor cores, as the training switches run them */
  attention_case(3, 17, 48, 3, ks3, 1, TOL_TF32);
  attention_case(2, 40, 96, 1, ks2, 2, TOL_BF16);
}

/* NH query heads over NKV key/value heads: the cache [B, Tmax, KV], KV =
 * NKV C / NH, from qkv rows of C + 2 KV floats */
static void step_case(int B, int n, int Tmax, int C, int NH, int NKV, const int *kstart) {
  /* fill the cache from a prompt of n - 1 positions, then write the new
   * token's k, v at n - 1 and attend */
  int KV = NKV * (C / NH), LD = C + 2 * KV;
  size_t nc = (size_t)B * Tmax * KV, np = (size_t)B * (n - 1) * LD, nq = (size_t)B * LD;
  float *kc = calloc(nc, 4), *vc = calloc(nc, 4), *pre = rnd(np, 21, 1), *q = rnd(nq, 22, 1);
  float *out = calloc((size_t)B * C, 4);
  float *gkc = UPF(kc, nc), *gvc = UPF(vc, nc), *gpre = UPF(pre, np), *gq = UPF(q, nq);
  float *gout = UPF(out, B * C);
  int *gks = kstart ? UPI(kstart, B) : NULL;
  if (n > 1) {
    C_->kv_write(kc, vc, pre, B, n - 1, 0, Tmax, C, KV);
    G->kv_write(gkc, gvc, gpre, B, n - 1, 0, Tmax, C, KV);
  }
  C_->kv_write(kc, vc, q, B, 1, n - 1, Tmax, C, KV);
  G->kv_write(gkc, gvc, gq, B, 1, n - 1, Tmax, C, KV);
  check_dev("kv_write k cache", kc, gkc, nc, 0.0);
  check_dev("kv_write v cache", vc, gvc, nc, 0.0);
  C_->attention_step(out, q, kc, vc, kstart, B, n, Tmax, C, NH, NKV);
  G->attention_step(gout, gq, gkc, gvc, gks, B, n, Tmax, C, NH, NKV);
  char what[128];
  snprintf(what, sizeof what, "attention_step B=%d n=%d Tmax=%d C=%d NH=%d NKV=%d", B, n, Tmax, C,
           NH, NKV);
  check_dev(what, out, gout, (size_t)B * C, TOL_RED);
  G->free(gkc), G->free(gvc), G->free(gpre), G->free(gq), G->free(gout);
  if (gks)
    G->free(gks);
  free(kc), free(vc), free(pre), free(q), free(out);
}

Test(ops_cuda, kv_cache_and_decoding_step) {
  NEED_GPU();
  static const int ks[3] = {0, 4, 30}; /* the last past n - 1: clamped */
  step_case(3, 25, 40, 48, 3, 3, ks);
  step_case(2, 1, 8, 64, 1, 1, NULL);       /* the first position alone */
  step_case(1, 9000, 9000, 32, 2, 2, NULL); /* scores too long for shared memory */
}

/* The grouped-query cache (the rotary decoders' Llama): NKV key/value heads
 * cached, query head h reading head h / (NH/NKV). */
Test(ops_cuda, kv_cache_and_decoding_step_grouped) {
  NEED_GPU();
  static const int ks[3] = {0, 4, 30};
  step_case(3, 25, 40, 64, 4, 2, ks);   /* two query heads a group, head size 16 */
  step_case(2, 17, 20, 96, 6, 1, NULL); /* one key/value head for all six */
  step_case(1, 9000, 9000, 32, 4, 2, NULL);
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

/* A GPT-2 with its weights in bf16 and in fp16 (model_set_weight_dtype, the
 * conversion through the host into device memory) on both backends: the
 * same bytes, the prompt's logits (decode_begin, left-padded) within the
 * products' tolerance of the CPU's (the GPU rounds the activations too:
 * TOL_BF16, TOL_TF32 for fp16) and a scored sequence's NLL within 1e-3
 * relative (a sum of logits' small errors). */
Test(ops_cuda, gpt2_in_16_bits_matches_the_cpu) {
  NEED_GPU();
  gpt2_config cfg = {1, 2, 32, 300, 64, MODEL_HEAD_NONE, 0};
  int prompts[12] = {0, 0, 5, 6, 1, 2, 3, 4, 0, 9, 8, 7}, ks[3] = {2, 0, 1}, seq[20];
  for (int i = 0; i < 20; i++)
    seq[i] = (i * 37 + 11) % 300;
  dfpo_err err;
  dfpo_err_clear(&err);
  for (int dt = OPS_DTYPE_BF16; dt <= OPS_DTYPE_F16; dt++) {
    model_t *mc = model_on(OPS_DEVICE_CPU, &cfg), *mg = model_on(OPS_DEVICE_CUDA, &cfg);
    cr_assert_eq(model_set_weight_dtype(mc, dt, &err), 0, "%s", err.msg);
    cr_assert_eq(model_set_weight_dtype(mg, dt, &err), 0, "%s", err.msg);
    cr_expect_eq(model_arena_bytes(mc), model_arena_bytes(mg));
    const float *zc = model_decode_begin(mc, prompts, ks, 3, 4, 8, &err);
    cr_assert_not_null(zc, "%s", err.msg);
    const float *zg = model_decode_begin(mg, prompts, ks, 3, 4, 8, &err);
    cr_assert_not_null(zg, "%s", err.msg);
    char what[64];
    snprintf(what, sizeof what, "gpt2 %s decode_begin logits", ops_dtype_name(dt));
    double tol = dt == OPS_DTYPE_BF16 ? TOL_BF16 : TOL_TF32;
    cr_log_info("%s: error %.3g of tolerance %.3g", what, check_dev(what, zc, zg, 3 * 300, tol),
                tol);
    double nc, ng;
    size_t k;
    cr_assert_eq(model_score_tokens(mc, seq, 20, &nc, &k, &err), 0, "%s", err.msg);
    cr_assert_eq(model_score_tokens(mg, seq, 20, &ng, &k, &err), 0, "%s", err.msg);
    cr_expect(fabs(nc - ng) <= 1e-3 * fabs(nc), "%s NLL: cpu %.9g gpu %.9g", ops_dtype_name(dt), nc,
              ng);
    cr_log_info("gpt2 %s NLL: cpu %.9g gpu %.9g", ops_dtype_name(dt), nc, ng);
    model_free(mc), model_free(mg);
  }
}

/* A LoRA policy over a bf16 base (model_set_weight_dtype, then
 * model_add_lora) on both backends: the adapters train in fp32, the input
 * gradient passes the 16-bit matrices by matmul_bwd_w16 (the GPU rounds the
 * activations and the gradients to bf16 for its products). The loss of
 * each of three AdamW steps within 1e-2 relative, the first step's
 * gradient of every adapter within TOL_BF16 of its largest entry, and the
 * logits after the steps within TOL_BF16. A tiny model, so that the CUDA
 * emulator can run it too. */
Test(ops_cuda, lora_over_a_bf16_base_matches_the_cpu) {
  NEED_GPU();
  gpt2_config cfg = {1, 2, 32, 300, 64, MODEL_HEAD_NONE, 0};
  model_t *ms[2] = {model_on(OPS_DEVICE_CPU, &cfg), model_on(OPS_DEVICE_CUDA, &cfg)};
  dfpo_err err;
  dfpo_err_clear(&err);
  model_lora_config lc = {4, 8.0f, NULL};
  for (int d = 0; d < 2; d++) {
    cr_assert_eq(model_set_weight_dtype(ms[d], OPS_DTYPE_BF16, &err), 0, "%s", err.msg);
    cr_assert_eq(model_add_lora(ms[d], &lc, 11, &err), 0, "%s", err.msg);
  }
  enum { B = 2, T = 8 };
  int tok[B * T], tgt[B * T], ks[B] = {0, 3};
  for (int i = 0; i < B * T; i++) {
    tok[i] = (i * 53 + 7) % 300;
    tgt[i] = i % T < ks[i / T] ? -1 : (i * 31 + 5) % 300;
  }
  opt_adamw opt = opt_adamw_default();
  for (int s = 0; s < 3; s++) {
    float l[2];
    for (int d = 0; d < 2; d++) {
      model_zero_grad(ms[d]);
      cr_assert_eq(model_lm_loss_rows(ms[d], tok, tgt, ks, B, T, 1, &l[d], &err), 0, "%s", err.msg);
    }
    cr_expect(fabsf(l[0] - l[1]) <= 1e-2f * fabsf(l[0]), "step %d: loss cpu %.7f gpu %.7f", s,
              (double)l[0], (double)l[1]);
    for (int i = 0; s == 0 && i < model_num_tensors(ms[0]); i++) {
      model_tensor tc, tg;
      cr_assert_eq(model_tensor_at(ms[0], i, &tc, &err), 0, "%s", err.msg);
      cr_assert_eq(model_tensor_at(ms[1], i, &tg, &err), 0, "%s", err.msg);
      size_t n = (size_t)tc.rows * tc.cols;
      float *hg = malloc(n * sizeof(float));
      G->download(hg, tg.grad, n * sizeof(float));
      char what[128];
      snprintf(what, sizeof what, "gradient of %s", tc.name);
      close_to(what, tc.grad, hg, n, TOL_BF16);
      free(hg);
    }
    for (int d = 0; d < 2; d++)
      cr_assert_eq(opt_adamw_step(ms[d], &opt, 1e-2f, NULL, &err), 0, "%s", err.msg);
  }
  const float *zc = model_decode_begin(ms[0], tok, ks, B, T, T + 1, &err);
  cr_assert_not_null(zc, "%s", err.msg);
  const float *zg = model_decode_begin(ms[1], tok, ks, B, T, T + 1, &err);
  cr_assert_not_null(zg, "%s", err.msg);
  cr_log_info("LoRA over bf16, trained logits: error %.3g of tolerance %.3g",
              check_dev("LoRA over bf16, trained logits", zc, zg, B * 300, TOL_BF16), TOL_BF16);
  model_free(ms[0]), model_free(ms[1]);
}

/* Beam search over model_decode_reorder, whose CUDA path is the backend's
 * copy op: a GPU model and a CPU model with the same weights (vocabulary of
 * at least 12) give the same hypotheses and scores (left padding, an
 * end-of-text, several returned). */
static void beam_same(model_t *mc, model_t *mg) {
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

Test(ops_cuda, beam_search_same_as_the_cpu) {
  NEED_GPU();
  gpt2_config cfg = {1, 2, 32, 300, 64, MODEL_HEAD_NONE, 0};
  beam_same(model_on(OPS_DEVICE_CPU, &cfg), model_on(OPS_DEVICE_CUDA, &cfg));
}

/* ------------------------------------------------------- RL on the GPU */

/* Two RL iterations of each algorithm (NLPO's and DfPO's masks included)
 * with the policy, reference and value model on the GPU against the same on
 * the CPU: the rollouts draw the same uniforms, so (away from a uniform
 * that lands within rounding of a boundary of the cumulative distribution)
 * the same tokens, hence the same rewards and lengths; the KL and the
 * losses agree to the whole-model tolerance (1e-4 relative, 1e-3 for the
 * losses after an update). Shows that rl_train.c reads every device
 * buffer through a download. Then the same with an epoch of one minibatch
 * of every episode (two epochs), where the first epoch's backward pass runs
 * on the passes' forward pass (rl_config.reuse_passes), and on the GPU that
 * run against the one that computes the forward pass again: equal, bit for
 * bit. */
Test(ops_cuda, rl_iterations_match_the_cpu) {
  NEED_GPU();
  enum { V = 8, B = 4 }; /* small enough for the CUDA emulator */
  gpt2_config pc = {1, 2, 16, V, 16, MODEL_HEAD_NONE, 0}, vc = pc;
  vc.head = MODEL_HEAD_VALUE;
  const int algos[3] = {RL_PPO, RL_NLPO, RL_DFPO};
  for (int whole = 0; whole < 2; whole++)
    for (int a = 0; a < 3; a++) {
      rl_stats st[3][2]; /* CPU, GPU, GPU recomputing the first epoch's forward pass */
      for (int d = 0; d < 2 + whole; d++) {
        ops_device dev = d ? OPS_DEVICE_CUDA : OPS_DEVICE_CPU;
        model_t *pol = model_on(dev, &pc), *ref = model_on(dev, &pc), *val = model_on(dev, &vc);
        dfpo_err err;
        dfpo_err_clear(&err);
        rl_config cfg = rl_config_default();
        cfg.algo = algos[a];
        cfg.lr = 3e-3f;
        cfg.epochs = whole ? 2 : 1;
        cfg.minibatch = whole ? B : 2;
        cfg.reuse_passes = d < 2;
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
        for (int it = 0; it < 2; it++) {
          cr_assert_eq(rl_iterate(t, prompts, NULL, B, 1, tu_share_of, &good, &st[d][it], &err), 0,
                       "%s", err.msg);
          cr_assert_eq(st[d][it].passes_reused, whole && d < 2);
        }
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
        if (whole) {
          const rl_stats *r = &st[2][it];
          cr_expect(r->reward == g->reward && r->kl_token == g->kl_token &&
                        r->policy_loss == g->policy_loss && r->value_loss == g->value_loss,
                    "algo %d it %d: the GPU's reused passes differ from its recomputed ones",
                    algos[a], it);
        }
      }
    }
}

/* ------------------------------------------------------- T5's ops */

/* check_dev, and the error logged (criterion --verbose) for the record */
static double check_log(const char *what, const float *h, const float *d, size_t n, double tol) {
  double e = check_dev(what, h, d, n, tol);
  cr_log_info("%s: error %.3g of tolerance %.3g", what, e, tol);
  return e;
}

/* mul and mul_bwd (one rounding each: exact), act_bwd in place as T5 calls
 * it (ReLU exact; the exact GELU's and tanh's derivatives through erff,
 * expf and tanhf: TOL_RED). */
Test(ops_cuda, t5_elementwise) {
  NEED_GPU();
  size_t n = 100003;
  float *a = rnd(n, 31, 2), *b = rnd(n, 32, 2), *d = rnd(n, 33, 1);
  float *o = calloc(n, 4), *da = calloc(n, 4), *db = calloc(n, 4), *junk = rnd(n, 34, 100);
  float *ga = UPF(a, n), *gb = UPF(b, n), *gd = UPF(d, n), *go = UPF(junk, n);
  float *gda = UPF(junk, n), *gdb = UPF(junk, n);
  C_->mul(o, a, b, n);
  G->mul(go, ga, gb, n);
  check_log("mul", o, go, n, 0.0);
  C_->mul_bwd(da, db, d, a, b, n);
  G->mul_bwd(gda, gdb, gd, ga, gb, n);
  check_log("mul_bwd da", da, gda, n, 0.0);
  check_log("mul_bwd db", db, gdb, n, 0.0);
  /* T5's gated feed-forward: da is dout itself, db NULL */
  float *dd = dupf(d, n);
  C_->mul_bwd(dd, NULL, dd, a, b, n);
  G->upload(gda, d, n * 4);
  G->mul_bwd(gda, NULL, gda, ga, gb, n);
  check_log("mul_bwd da (in place, db NULL)", dd, gda, n, 0.0);
  check_log("mul_bwd db untouched", db, gdb, n, 0.0);
  /* and out = a in place */
  float *s = dupf(a, n);
  C_->mul(s, s, b, n);
  G->mul(ga, ga, gb, n);
  check_log("mul (in place)", s, ga, n, 0.0);
  static const char *names[3] = {"act_bwd gelu_erf", "act_bwd tanh", "act_bwd relu"};
  for (int k = 0; k < 3; k++) {
    memcpy(dd, d, n * 4);
    C_->act_bwd(dd, a, dd, n, k);
    G->upload(gda, d, n * 4);
    G->upload(ga, a, n * 4);
    G->act_bwd(gda, ga, gda, n, k);
    check_log(names[k], dd, gda, n, k == OPS_ACT_RELU ? 0.0 : TOL_RED);
  }
  G->free(ga), G->free(gb), G->free(gd), G->free(go), G->free(gda), G->free(gdb);
  free(a), free(b), free(d), free(o), free(da), free(db), free(junk), free(dd), free(s);
}

/* RMS norm forward (also in place, as T5's decoder calls it on its own
 * input nowhere but the op allows) and backward accumulating into dinp and
 * dw; widths below a warp, between and above a block of 256 threads. */
Test(ops_cuda, rmsnorm_forward_backward) {
  NEED_GPU();
  const int Cs[3] = {16, 100, 768};
  for (int k = 0; k < 3; k++) {
    int N = 45, C = Cs[k];
    size_t NC = (size_t)N * C;
    float *x = rnd(NC, 41 + k, 2), *w = rnd((size_t)C, 42, 1), *out = calloc(NC, 4);
    float *dout = rnd(NC, 43, 1), *dx = rnd(NC, 44, 1), *dw = rnd((size_t)C, 45, 1);
    float *junk = rnd(NC, 46, 100);
    float *gx = UPF(x, NC), *gw = UPF(w, C), *gout = UPF(junk, NC), *gdout = UPF(dout, NC);
    float *gdx = UPF(dx, NC), *gdw = UPF(dw, C);
    char what[96];
    C_->rmsnorm_fwd(out, x, w, N, C, 1e-6f);
    G->rmsnorm_fwd(gout, gx, gw, N, C, 1e-6f);
    snprintf(what, sizeof what, "rmsnorm_fwd C=%d", C);
    check_log(what, out, gout, NC, TOL_RED);
    C_->rmsnorm_bwd(dx, dw, dout, x, w, N, C, 1e-6f);
    G->rmsnorm_bwd(gdx, gdw, gdout, gx, gw, N, C, 1e-6f);
    snprintf(what, sizeof what, "rmsnorm_bwd dinp C=%d", C);
    check_log(what, dx, gdx, NC, TOL_RED);
    snprintf(what, sizeof what, "rmsnorm_bwd dw C=%d", C);
    check_log(what, dw, gdw, (size_t)C, TOL_RED);
    /* in place: out = inp */
    G->rmsnorm_fwd(gx, gx, gw, N, C, 1e-6f);
    snprintf(what, sizeof what, "rmsnorm_fwd C=%d (in place)", C);
    check_log(what, out, gx, NC, TOL_RED);
    G->free(gx), G->free(gw), G->free(gout), G->free(gdout), G->free(gdx), G->free(gdw);
    free(x), free(w), free(out), free(dout), free(dx), free(dw), free(junk);
  }
}

/* One attention_rel case on both backends. fused: q, k and v (and dq, dk,
 * dv) interleaved in one [B, T, 3 NH HS] buffer as T5's self-attention
 * (Tq = Tk, ld 3 NH HS); else q [B, Tq, ldq] and k | v in [B, Tk, ldkv]
 * as its cross-attention, with ldq and ldkv wider than the heads. The
 * forward into garbage; the backward accumulating into non-zero dq, dk,
 * dv and dbias. */
static void rel_case(int B, int Tq, int Tk, int NH, int HS, int fused, int ldq, int ldkv,
                     int with_bias, const int *kstart, int causal) {
  int I = NH * HS;
  if (fused)
    ldq = ldkv = 3 * I;
  size_t nq = (size_t)B * Tq * ldq, nkv = fused ? nq : (size_t)B * Tk * ldkv;
  size_t no = (size_t)B * Tq * I, nb = (size_t)NH * Tq * Tk;
  float *q = rnd(nq, (uint64_t)(51 + Tq), 1), *kv = fused ? q : rnd(nkv, (uint64_t)(52 + Tk), 1);
  float *bias = rnd(nb, 53, 1), *dout = rnd(no, 54, 1), *out = calloc(no, 4);
  float *dq = rnd(nq, 55, 1), *dkv = fused ? dq : rnd(nkv, 56, 1), *db = rnd(nb, 57, 1);
  float *junk = rnd(no, 58, 100);
  float *gq = UPF(q, nq), *gkv = fused ? gq : UPF(kv, nkv), *gbias = UPF(bias, nb);
  float *gdout = UPF(dout, no), *gout = UPF(junk, no), *gdq = UPF(dq, nq);
  float *gdkv = fused ? gdq : UPF(dkv, nkv), *gdb = UPF(db, nb);
  int *gks = kstart ? UPI(kstart, B) : NULL;
  int ko = fused ? I : 0, vo = fused ? 2 * I : I; /* k and v's offsets in their rows */
  const float *bp = with_bias ? bias : NULL, *gbp = with_bias ? gbias : NULL;
  char what[160], shape[120];
  snprintf(shape, sizeof shape, "B=%d Tq=%d Tk=%d NH=%d HS=%d fused=%d bias=%d ks=%s causal=%d", B,
           Tq, Tk, NH, HS, fused, with_bias, kstart ? "yes" : "NULL", causal);
  C_->attention_rel_fwd(out, q, ldq, kv + ko, kv + vo, ldkv, bp, kstart, causal, B, Tq, Tk, NH, HS);
  G->attention_rel_fwd(gout, gq, ldq, gkv + ko, gkv + vo, ldkv, gbp, gks, causal, B, Tq, Tk, NH,
                       HS);
  snprintf(what, sizeof what, "attention_rel_fwd %s", shape);
  check_log(what, out, gout, no, TOL_RED);
  C_->attention_rel_bwd(dq, dkv + ko, dkv + vo, with_bias ? db : NULL, dout, q, ldq, kv + ko,
                        kv + vo, ldkv, bp, kstart, causal, B, Tq, Tk, NH, HS);
  G->attention_rel_bwd(gdq, gdkv + ko, gdkv + vo, with_bias ? gdb : NULL, gdout, gq, ldq, gkv + ko,
                       gkv + vo, ldkv, gbp, gks, causal, B, Tq, Tk, NH, HS);
  snprintf(what, sizeof what, "attention_rel_bwd dq%s %s", fused ? "|dk|dv" : "", shape);
  check_log(what, dq, gdq, nq, TOL_RED);
  if (!fused) {
    snprintf(what, sizeof what, "attention_rel_bwd dk|dv %s", shape);
    check_log(what, dkv, gdkv, nkv, TOL_RED);
  }
  snprintf(what, sizeof what, "attention_rel_bwd dbias %s", shape);
  check_log(what, db, gdb, nb, TOL_RED); /* untouched without a bias */
  G->free(gq), G->free(gbias), G->free(gdout), G->free(gout), G->free(gdq), G->free(gdb);
  if (!fused)
    G->free(gkv), G->free(gdkv), free(kv), free(dkv);
  if (gks)
    G->free(gks);
  free(q), free(bias), free(dout), free(out), free(dq), free(db), free(junk);
}

Test(ops_cuda, attention_rel_forward_backward) {
  NEED_GPU();
  /* the encoder's self-attention: bidirectional, padded, with the bias;
   * a row of padding only (kstart = T): its queries see no key, get 0 */
  static const int ks3[3] = {0, 5, 37};
  rel_case(3, 37, 37, 3, 8, 1, 0, 0, 1, ks3, 0);
  /* the decoder's: causal, no padding; then causal with padding, where
   * the queries left of kstart see no key */
  rel_case(2, 21, 21, 2, 40, 1, 0, 0, 1, NULL, 1);
  rel_case(3, 37, 37, 3, 8, 1, 0, 0, 1, ks3, 1);
  /* cross-attention: decoder queries over the padded encoder output, no
   * bias, strides wider than the heads; head size 40 over two lanes'
   * strides */
  static const int ks2[2] = {2, 0};
  rel_case(2, 11, 40, 2, 40, 0, 88, 164, 0, ks2, 0);
  /* causal with Tq < Tk (query i sees keys ..i except the last query,
   * which sees them all), a bias */
  rel_case(2, 3, 7, 2, 8, 0, 16, 40, 1, NULL, 1);
  /* the decoding step's shape: one query over the cache, and keys past
   * the shared-memory rows (the global scratch) */
  rel_case(1, 1, 9, 4, 8, 0, 96, 64, 1, NULL, 0);
  rel_case(1, 2, 1100, 1, 4, 0, 4, 8, 1, NULL, 0);
}

/* ---------------------------------------- the rotary decoders' ops */

/* rope_fwd and rope_bwd in place over rows wider than the heads: GPT-J's
 * interleaved pairs and the half-split ones, the whole head and a part of
 * it rotated (the rest untouched: exact), positions up to 5000 (the angles
 * in double on both). */
Test(ops_cuda, rope_forward_backward) {
  NEED_GPU();
  int N = 37, nh = 3, HS = 10, ld = nh * HS + 7;
  size_t nx = (size_t)N * ld;
  int *pos = malloc((size_t)N * sizeof(int));
  dfpo_rng r;
  dfpo_rng_init(&r, 61, 1);
  for (int n = 0; n < N; n++)
    pos[n] = n < 5 ? n : (int)dfpo_rng_below(&r, 5000);
  int *gpos = UPI(pos, N);
  const int rots[2] = {10, 4};
  for (int k = 0; k < 4; k++) {
    int rot = rots[k % 2], inter = k / 2;
    float *x = rnd(nx, (uint64_t)(62 + k), 1), *gx = UPF(x, nx);
    char what[96];
    C_->rope_fwd(x, ld, pos, N, nh, HS, rot, inter, 10000.0f);
    G->rope_fwd(gx, ld, gpos, N, nh, HS, rot, inter, 10000.0f);
    snprintf(what, sizeof what, "rope_fwd rot=%d interleaved=%d", rot, inter);
    check_log(what, x, gx, nx, TOL_RED);
    G->upload(gx, x, nx * 4);
    C_->rope_bwd(x, ld, pos, N, nh, HS, rot, inter, 10000.0f);
    G->rope_bwd(gx, ld, gpos, N, nh, HS, rot, inter, 10000.0f);
    snprintf(what, sizeof what, "rope_bwd rot=%d interleaved=%d", rot, inter);
    check_log(what, x, gx, nx, TOL_RED);
    G->free(gx);
    free(x);
  }
  G->free(gpos);
  free(pos);
}

/* swiglu_fwd and its backward (expf on both: TOL_RED), the backward
 * overwriting garbage */
Test(ops_cuda, swiglu_forward_backward) {
  NEED_GPU();
  int N = 45, F = 100;
  size_t nf = (size_t)N * F;
  float *gu = rnd(2 * nf, 71, 3), *dout = rnd(nf, 72, 1), *out = calloc(nf, 4);
  float *dgu = calloc(2 * nf, 4), *junk = rnd(2 * nf, 73, 100);
  float *ggu = UPF(gu, 2 * nf), *gdout = UPF(dout, nf), *gout = UPF(junk, nf);
  float *gdgu = UPF(junk, 2 * nf);
  C_->swiglu_fwd(out, gu, N, F);
  G->swiglu_fwd(gout, ggu, N, F);
  check_log("swiglu_fwd", out, gout, nf, TOL_RED);
  C_->swiglu_bwd(dgu, gu, dout, N, F);
  G->swiglu_bwd(gdgu, ggu, gdout, N, F);
  check_log("swiglu_bwd", dgu, gdgu, 2 * nf, TOL_RED);
  G->free(ggu), G->free(gdout), G->free(gout), G->free(gdgu);
  free(gu), free(dout), free(out), free(dgu), free(junk);
}

/* kv_repeat (copies: exact) and its backward (the R heads' sums in head
 * order, as the CPU: exact), grouped 3 to 1 and not grouped */
Test(ops_cuda, kv_repeat_forward_backward) {
  NEED_GPU();
  const int nkv[2] = {2, 6};
  for (int k = 0; k < 2; k++) {
    int N = 13, NH = 6, NKV = nkv[k], HS = 5;
    size_t ni = (size_t)N * (NH + 2 * NKV) * HS, no = (size_t)N * 3 * NH * HS;
    float *inp = rnd(ni, 81, 1), *dout = rnd(no, 82, 1), *out = calloc(no, 4);
    float *din = calloc(ni, 4), *junk = rnd(no, 83, 100);
    float *ginp = UPF(inp, ni), *gdout = UPF(dout, no), *gout = UPF(junk, no);
    float *gdin = UPF(junk, ni);
    char what[64];
    C_->kv_repeat(out, inp, N, NH, NKV, HS);
    G->kv_repeat(gout, ginp, N, NH, NKV, HS);
    snprintf(what, sizeof what, "kv_repeat NKV=%d", NKV);
    check_log(what, out, gout, no, 0.0);
    C_->kv_repeat_bwd(din, dout, N, NH, NKV, HS);
    G->kv_repeat_bwd(gdin, gdout, N, NH, NKV, HS);
    snprintf(what, sizeof what, "kv_repeat_bwd NKV=%d", NKV);
    check_log(what, din, gdin, ni, 0.0);
    G->free(ginp), G->free(gdout), G->free(gout), G->free(gdin);
    free(inp), free(dout), free(out), free(din), free(junk);
  }
}

/* --------------------------- T5 and the rotary decoders, whole models */

/* A copy of the CPU model mc on the CUDA backend (model_clone: the same
 * architecture, config and parameters). */
static model_t *cuda_twin(const model_t *mc) {
  dfpo_err err;
  dfpo_err_clear(&err);
  model_t *mg = NULL;
  ops_use_device(OPS_DEVICE_CUDA);
  int rc = model_clone(&mg, mc, &err);
  ops_use_device(OPS_DEVICE_CPU);
  cr_assert_eq(rc, DFPO_OK, "%s", err.msg);
  cr_assert_eq(model_device(mg), OPS_DEVICE_CUDA);
  return mg;
}

/* Moves every parameter of a CPU model without weight decay (norm gains,
 * biases, T5's position bias tables) by 0.2 N(0, 1), so that a gain or
 * bias read in another's place shows. */
static void move_undecayed(model_t *m, uint64_t seed) {
  dfpo_rng r;
  dfpo_rng_init(&r, seed, 3);
  for (int i = 0; i < model_num_tensors(m); i++) {
    model_tensor t;
    dfpo_err err;
    cr_assert_eq(model_tensor_at(m, i, &t, &err), DFPO_OK);
    if (!t.decay) /* CPU: host memory */
      for (int k = 0; k < t.rows * t.cols; k++)
        t.param[k] += 0.2f * (float)dfpo_rng_normal(&r);
  }
}

/* tensor i of m (grad: its gradient) on the host; caller frees */
static float *tensor_host(const model_t *m, int i, int grad, size_t *n, const char **name) {
  model_tensor t;
  dfpo_err err;
  cr_assert_eq(model_tensor_at(m, i, &t, &err), DFPO_OK);
  *n = (size_t)t.rows * t.cols;
  *name = t.name;
  float *h = malloc(*n * sizeof(float));
  cr_assert(h && (!grad || t.grad));
  (model_device(m) == OPS_DEVICE_CUDA ? G : C_)
      ->download(h, grad ? t.grad : t.param, *n * sizeof(float));
  return h;
}

/* The CPU model mc against its CUDA twin, at the whole-model tolerance
 * (1e-4, as GPT-2's step): the log-probabilities and entropies of a batch;
 * the mean loss and every tensor's gradient; the loss after one AdamW step
 * (lr 1e-2) and the step's gradient norm; decoding the prompts (the first
 * logits and three steps). */
static void twin_case(const char *what, model_t *mc, const model_batch *b, const int *tgt,
                      const int *prompt, const int *pks, int PB, int PT) {
  model_t *mg = cuda_twin(mc);
  int V = model_get_config(mc)->vocab_size;
  size_t BT = (size_t)b->B * b->T;
  dfpo_err err;
  dfpo_err_clear(&err);
  char msg[160];
  float *lp[2], *en[2];
  model_t *m[2] = {mc, mg};
  for (int d = 0; d < 2; d++) {
    lp[d] = malloc(BT * sizeof(float));
    en[d] = malloc(BT * sizeof(float));
    cr_assert_eq(model_forward(m[d], b, &err), DFPO_OK, "%s", err.msg);
    cr_assert_eq(model_lm_logprobs(m[d], tgt, lp[d], en[d], &err), DFPO_OK, "%s", err.msg);
  }
  snprintf(msg, sizeof msg, "%s: log-probabilities", what);
  double e_lp = close_to(msg, lp[0], lp[1], BT, 1e-4);
  snprintf(msg, sizeof msg, "%s: entropies", what);
  double e_en = close_to(msg, en[0], en[1], BT, 1e-4);
  float loss[2], norm[2];
  for (int d = 0; d < 2; d++) {
    model_zero_grad(m[d]);
    cr_assert_eq(model_lm_loss(m[d], b, tgt, 1, &loss[d], &err), DFPO_OK, "%s", err.msg);
  }
  double e_loss = fabs((double)loss[0] - loss[1]) / fabs((double)loss[0]);
  cr_expect(e_loss <= 1e-4, "%s: loss cpu %.7f gpu %.7f", what, (double)loss[0], (double)loss[1]);
  cr_assert_eq(model_num_tensors(mc), model_num_tensors(mg));
  double e_grad = 0.0;
  const char *worst = "";
  for (int i = 0; i < model_num_tensors(mc); i++) {
    size_t n;
    const char *name;
    float *gc = tensor_host(mc, i, 1, &n, &name), *gg = tensor_host(mg, i, 1, &n, &name);
    snprintf(msg, sizeof msg, "%s: gradient of %s", what, name);
    double e = close_to(msg, gc, gg, n, 1e-4);
    if (e >= e_grad)
      e_grad = e, worst = name;
    free(gc), free(gg);
  }
  opt_adamw o = opt_adamw_default();
  for (int d = 0; d < 2; d++) {
    cr_assert_eq(opt_adamw_step(m[d], &o, 1e-2f, &norm[d], &err), DFPO_OK, "%s", err.msg);
    cr_assert_eq(model_lm_loss(m[d], b, tgt, 0, &loss[d], &err), DFPO_OK, "%s", err.msg);
  }
  double e_norm = fabs((double)norm[0] - norm[1]) / norm[0];
  double e_loss2 = fabs((double)loss[0] - loss[1]) / fabs((double)loss[0]);
  cr_expect(e_norm <= 1e-4, "%s: grad norm cpu %.7f gpu %.7f", what, (double)norm[0],
            (double)norm[1]);
  cr_expect(e_loss2 <= 1e-4, "%s: loss after a step cpu %.7f gpu %.7f", what, (double)loss[0],
            (double)loss[1]);
  int next[8];
  cr_assert(PB <= 8);
  for (int r = 0; r < PB; r++)
    next[r] = (3 + 5 * r) % V;
  const float *zc = model_decode_begin(mc, prompt, pks, PB, PT, PT + 4, &err);
  cr_assert(zc, "%s", err.msg);
  const float *zg = model_decode_begin(mg, prompt, pks, PB, PT, PT + 4, &err);
  cr_assert(zg, "%s", err.msg);
  snprintf(msg, sizeof msg, "%s: decode_begin logits", what);
  double e_dec = check_dev(msg, zc, zg, (size_t)PB * V, 1e-4);
  for (int s = 0; s < 3; s++) {
    zc = model_decode_step(mc, next, &err);
    cr_assert(zc, "%s", err.msg);
    zg = model_decode_step(mg, next, &err);
    cr_assert(zg, "%s", err.msg);
    snprintf(msg, sizeof msg, "%s: decode_step %d logits", what, s);
    double e = check_dev(msg, zc, zg, (size_t)PB * V, 1e-4);
    e_dec = e > e_dec ? e : e_dec;
    for (int r = 0; r < PB; r++)
      next[r] = (next[r] * 7 + 5) % V;
  }
  cr_log_info("%s: errors (tolerance 1e-4): log-probabilities %.3g, entropies %.3g, loss %.3g, "
              "gradients %.3g (worst: %s), grad norm %.3g, loss after a step %.3g, decoding "
              "logits %.3g",
              what, e_lp, e_en, e_loss, e_grad, worst, e_norm, e_loss2, e_dec);
  model_free(mg);
  for (int d = 0; d < 2; d++)
    free(lp[d]), free(en[d]);
}

/* T5 v1.0 (ReLU, tied) and v1.1 (gated GELU, untied) on both backends: 3
 * rows of sources of 9, 5 and 2 tokens (left-padded into 9 columns) and 5
 * decoder columns, the last without a target. */
Test(ops_cuda, t5_step_and_decoding_match_the_cpu) {
  NEED_GPU();
  enum { V = 40, B = 3, TS = 9, T = TS + 5 };
  int tok[B * T], tgt[B * T], ks[B] = {0, 4, 7}, src[B * TS];
  dfpo_rng r;
  dfpo_rng_init(&r, 91, 2);
  for (int i = 0; i < B * T; i++)
    tok[i] = 2 + (int)dfpo_rng_below(&r, V - 2);
  for (int bb = 0; bb < B; bb++) {
    for (int c = 0; c < T; c++)
      tgt[bb * T + c] = c >= TS - 1 && c < T - 2 ? tok[bb * T + c + 1] : -1;
    memcpy(src + bb * TS, tok + bb * T, TS * sizeof(int));
  }
  model_batch batch = {tok, ks, B, T, TS, 0};
  for (int gated = 0; gated < 2; gated++) {
    t5_config c = {.vocab_size = V,
                   .d_model = 32,
                   .d_kv = 8,
                   .d_ff = 48,
                   .n_head = 4,
                   .n_layer = 2,
                   .n_dec_layer = 2,
                   .num_buckets = 8,
                   .max_distance = 16,
                   .eps = 1e-6f,
                   .gated = gated,
                   .tied = !gated,
                   .n_pos = 64,
                   .start_id = 0,
                   .eos_id = 1};
    dfpo_err err;
    dfpo_err_clear(&err);
    model_t *m;
    cr_assert_eq(t5_new(&m, &c, &err), DFPO_OK, "%s", err.msg);
    model_init_random(m, 92 + (uint64_t)gated);
    move_undecayed(m, 93);
    twin_case(gated ? "T5 v1.1" : "T5 v1.0", m, &batch, tgt, src, ks, B, TS);
    model_free(m);
  }
}

/* A tiny GPT-J (interleaved pairs, half the head rotated, parallel
 * residual with one shared norm, gelu_new), GPT-NeoX (half-split, a
 * quarter rotated, biases, the exact GELU) and Llama (grouped-query, 4
 * heads over 2, RMS norms, SwiGLU, tied, the whole head rotated) on both
 * backends: 3 left-padded rows of 12 tokens. */
Test(ops_cuda, rotary_decoders_match_the_cpu) {
  NEED_GPU();
  enum { V = 50, B = 3, T = 12 };
  int tok[B * T], tgt[B * T], ks[B] = {0, 3, 8};
  dfpo_rng r;
  dfpo_rng_init(&r, 94, 2);
  for (int i = 0; i < B * T; i++)
    tok[i] = (int)dfpo_rng_below(&r, V);
  for (int i = 0; i < B * T; i++)
    tgt[i] = i % T >= ks[i / T] && i % T < T - 1 ? tok[i + 1] : -1;
  model_batch batch = {tok, ks, B, T, 0, 0};
  static const char *const names[3] = {"GPT-J", "GPT-NeoX", "Llama"};
  for (int f = RDEC_GPTJ; f <= RDEC_LLAMA; f++) {
    rdec_config c = {.family = f,
                     .vocab_size = V,
                     .n_embd = 32,
                     .n_layer = 2,
                     .n_head = 4,
                     .n_kv_head = f == RDEC_LLAMA ? 2 : 4,
                     .head_dim = 8,
                     .d_ff = 48,
                     .n_ctx = 32,
                     .rot = f == RDEC_GPTJ   ? 4
                            : f == RDEC_NEOX ? 2
                                             : 8,
                     .interleaved = f == RDEC_GPTJ,
                     .rope_base = 10000.0f,
                     .eps = 1e-5f,
                     .rmsnorm = f == RDEC_LLAMA,
                     .parallel = f != RDEC_LLAMA,
                     .shared_ln = f == RDEC_GPTJ,
                     .act = f == RDEC_GPTJ   ? RDEC_ACT_GELU_TANH
                            : f == RDEC_NEOX ? RDEC_ACT_GELU_ERF
                                             : RDEC_ACT_SWIGLU,
                     .bias = f == RDEC_NEOX,
                     .mlp_bias = f != RDEC_LLAMA,
                     .head_bias = f == RDEC_GPTJ,
                     .tied = f == RDEC_LLAMA};
    dfpo_err err;
    dfpo_err_clear(&err);
    model_t *m;
    cr_assert_eq(rdec_new(&m, &c, &err), DFPO_OK, "%s", err.msg);
    model_init_random(m, 95 + (uint64_t)f);
    move_undecayed(m, 96);
    twin_case(names[f], m, &batch, tgt, tok, ks, B, T);
    model_free(m);
  }
}

/* The same beam search over a Llama (its grouped key/value cache moved by
 * the reorder) on both backends. */
Test(ops_cuda, beam_search_rotary_same_as_the_cpu) {
  NEED_GPU();
  rdec_config c = rt_tiny(RDEC_LLAMA, 300);
  dfpo_err err;
  model_t *mc;
  cr_assert_eq(rdec_new(&mc, &c, &err), DFPO_OK, "%s", err.msg);
  model_init_random(mc, 97);
  beam_same(mc, cuda_twin(mc));
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
