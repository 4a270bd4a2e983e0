/* Weights kept in 16 bits (model_set_weight_dtype, matmul_fwd_w16,
 * encoder_fwd_w16) on the CPU backend.
 *
 * References:
 *   - the rounding: PyTorch 1.13's .to(torch.bfloat16) and .half() and the
 *     widening .float() of all 65536 patterns (gpt2_half_reference.py
 *     round), bit for bit;
 *   - the model in 16 bits against the fp32 engine over the same weights
 *     widened (a copy converted and widened back): the products widen the
 *     weights and sum in fp32 through the same kernels, so the two agree
 *     up to summation order: 1e-5 relative on the summed NLL, greedy tokens
 *     equal;
 *   - against PyTorch (gpt2_half_reference.py nll: the exported fp32 model,
 *     the same tensors rounded by torch and run in float32, a float64
 *     log-softmax): 1e-4 relative, as tests/metrics/test_ppl_engine.c;
 *   - model_arena_bytes by hand (arena_bytes_by_hand).
 * The PyTorch tests skip when /usr/bin/python3 has no torch. */
#include "tests/support/support.h"
#include "tests/trainer/gpt2_testutil.h"
#include "tests/trainer/train_testutil.h"
#include "trainer/gpt2.h"
#include "trainer/model.h"
#include "trainer/ops.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int have_torch(void) {
  if (access("/usr/bin/python3", X_OK) != 0)
    return 0;
  ts_run r;
  char *argv[] = {"/usr/bin/python3", "-c", "import torch", NULL};
  ts_run_cmd(&r, argv, NULL, NULL);
  int ok = r.status == 0;
  ts_run_free(&r);
  return ok;
}
#define NEED_TORCH()                                                                               \
  do {                                                                                             \
    if (!have_torch())                                                                             \
      cr_skip_test("/usr/bin/python3 has no torch module (Debian package python3-torch)");         \
  } while (0)

static cJSON *run_reference(char *const args[]) {
  char *argv[8] = {"/usr/bin/python3", DFPO_SOURCE_DIR "/tests/trainer/gpt2_half_reference.py"};
  for (int i = 0; args[i]; i++)
    argv[2 + i] = args[i];
  ts_run r;
  ts_run_cmd(&r, argv, NULL, NULL);
  cr_assert_eq(r.status, 0, "gpt2_half_reference.py failed: %s", r.err);
  cJSON *j = cJSON_Parse(r.out);
  ts_run_free(&r);
  cr_assert_not_null(j);
  return j;
}

static float f_of(uint32_t u) {
  float x;
  memcpy(&x, &u, sizeof x);
  return x;
}
static uint32_t u_of(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return u;
}

/* ------------------------------------------------------------ rounding */

Test(gpt2_half, rounding_matches_pytorch) {
  NEED_TORCH();
  /* the hard cases, then random values of every magnitude */
  static const uint32_t special[] = {
      0x3f800000, /* 1 */
      0x3f808000, /* 1 + 2^-8: a bf16 tie, to the even 1 */
      0x3f818000, /* 1 + 3 2^-8: a bf16 tie, up to 1 + 2^-6 */
      0x3f808001, /* just past the tie: up */
      0x3f801000, /* 1 + 2^-11: an fp16 tie, to the even 1 */
      0x3f803000, /* 1 + 3 2^-11: an fp16 tie, up */
      0x477fe000, /* 65504, fp16's largest */
      0x477fefff, /* just below 65520: 65504 */
      0x477ff000, /* 65520: fp16 inf */
      0x7f7fffff, /* fp32's largest: bf16 inf */
      0x7f7f0000, /* bf16's largest, exact */
      0x38800000, /* 2^-14, fp16's smallest normal */
      0x387fc000, /* just below it: fp16 subnormal */
      0x33800000, /* 2^-24, fp16's smallest subnormal */
      0x33000000, /* 2^-25: the tie with 0, to 0 */
      0x33000001, /* just past it: 2^-24 */
      0x33c00000, /* 3 2^-25: the tie between 1 and 2 units, to 2 */
      0x34200000, /* 5 2^-25: the tie between 2 and 3 units, to 2 */
      0x00000001, /* fp32's smallest subnormal */
      0x00400000, /* an fp32 subnormal */
      0x00008000, /* a bf16 subnormal tie (2^-134 + ...) */
      0x00018000, /* a bf16 subnormal tie, up */
      0x007fffff, /* the largest fp32 subnormal: up to 2^-126 in bf16 */
      0x80000000, /* -0 */
      0xbf818000, /* -(1 + 3 2^-8) */
      0xb3000001, /* -(2^-25 + tiny) */
      0x7f800000, /* inf */
      0xff800000, /* -inf */
      0x7fc00000, /* NaN */
      0xffc00000, /* -NaN */
      0x7f800001, /* a signalling NaN */
      0x7fa12345, /* a NaN with a payload */
  };
  enum { NS = sizeof special / sizeof special[0], NR = 4000 };
  float vals[NS + NR];
  for (int i = 0; i < NS; i++)
    vals[i] = f_of(special[i]);
  dfpo_rng r;
  dfpo_rng_init(&r, 7, 1);
  for (int i = 0; i < NR; i++) /* every exponent fp16 and bf16 see, both signs */
    vals[NS + i] = (float)(dfpo_rng_normal(&r) * pow(2.0, (double)dfpo_rng_below(&r, 80) - 40.0));
  char dir[256], path[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/values.bin", dir);
  FILE *fp = fopen(path, "wb");
  cr_assert(fp && fwrite(vals, sizeof(float), NS + NR, fp) == NS + NR);
  fclose(fp);
  char *args[] = {"round", path, NULL};
  cJSON *ref = run_reference(args);
  const cJSON *jb = cJSON_GetObjectItem(ref, "bf16"), *jf = cJSON_GetObjectItem(ref, "f16");
  cr_assert_eq(cJSON_GetArraySize(jb), NS + NR);
  int bad = 0;
  for (int i = 0; i < NS + NR; i++) {
    unsigned want_b = (unsigned)cJSON_GetArrayItem(jb, i)->valuedouble;
    unsigned want_f = (unsigned)cJSON_GetArrayItem(jf, i)->valuedouble;
    unsigned got_b = ops_f32_to_bf16(vals[i]), got_f = ops_f32_to_f16(vals[i]);
    /* a NaN: PyTorch 1.13's vectorised CPU cast gives 0xffff, its scalar
     * c10::BFloat16 0x7fc0 (ours): both NaN */
    if (isnan(vals[i]) && (want_b & 0x7f80u) == 0x7f80u && (want_b & 0x7fu))
      want_b = got_b == 0x7fc0 ? 0x7fc0 : want_b;
    if (got_b != want_b || got_f != want_f)
      bad++;
    cr_expect_eq(got_b, want_b, "bf16 of 0x%08x: 0x%04x, PyTorch 0x%04x", u_of(vals[i]), got_b,
                 want_b);
    cr_expect_eq(got_f, want_f, "f16 of 0x%08x: 0x%04x, PyTorch 0x%04x", u_of(vals[i]), got_f,
                 want_f);
    if (bad > 10)
      break;
  }
  /* widening: every pattern, NaNs as NaNs (payloads aside) */
  const cJSON *ub = cJSON_GetObjectItem(ref, "up_bf16"), *uf = cJSON_GetObjectItem(ref, "up_f16");
  cr_assert_eq(cJSON_GetArraySize(ub), 65536);
  bad = 0;
  for (int h = 0; h < 65536 && bad < 10; h++) {
    float wb = f_of((uint32_t)cJSON_GetArrayItem(ub, h)->valuedouble);
    float wf = f_of((uint32_t)cJSON_GetArrayItem(uf, h)->valuedouble);
    float gb = ops_bf16_to_f32((uint16_t)h), gf = ops_f16_to_f32((uint16_t)h);
    int okb = isnan(wb) ? isnan(gb) != 0 : u_of(gb) == u_of(wb);
    int okf = isnan(wf) ? isnan(gf) != 0 : u_of(gf) == u_of(wf);
    bad += !okb + !okf;
    cr_expect(okb, "bf16 0x%04x widens to %a, PyTorch %a", h, (double)gb, (double)wb);
    cr_expect(okf, "f16 0x%04x widens to %a, PyTorch %a", h, (double)gf, (double)wf);
  }
  cJSON_Delete(ref);
}

/* ------------------------------------------------------------- the op */

/* n weights drawn from r (normals times 0.1) rounded to dtype into w16,
 * and in w their widened values (the fp32 engine's operand). */
static void widened_weights(float *w, uint16_t *w16, size_t n, int dtype, dfpo_rng *r) {
  for (size_t i = 0; i < n; i++)
    w[i] = (float)dfpo_rng_normal(r) * 0.1f;
  ops_f32_to_w16(w16, w, n, dtype);
  ops_w16_to_f32(w, w16, n, dtype);
}

/* The 16-bit op's result got against the fp32 op's want over the widened
 * weights: the largest difference within 1e-6 of want's largest entry. */
static void expect_w16_close(const float *got, const float *want, size_t n, int M, int K, int N,
                             int dtype) {
  double mx = 0, worst = 0;
  for (size_t i = 0; i < n; i++) {
    mx = fmax(mx, fabs(want[i]));
    worst = fmax(worst, fabs((double)got[i] - want[i]));
  }
  cr_log_info("isa %d M=%d K=%d N=%d %s: error %.3g of max %.3g", ops_cpu_isa(), M, K, N,
              ops_dtype_name(dtype), worst, mx);
  cr_expect(worst <= 1e-6 * mx, "isa %d M=%d K=%d N=%d %s: error %.3g of max %.3g", ops_cpu_isa(),
            M, K, N, ops_dtype_name(dtype), worst, mx);
}

/* matmul_fwd_w16 against matmul_fwd over the widened weights, at each
 * vector width: shapes that split the weights into panels (by K and by M)
 * and one that does not. The same kernels sum each output in the same
 * order, so the products agree to 1e-6 of the output's largest entry (in
 * practice bit for bit). */
Test(gpt2_half, matmul_w16_is_the_fp32_product_of_the_widened_weights) {
  static const int shapes[][3] = {{2, 64, 40000}, {3000, 16, 1000}, {5, 33, 70}, {1, 768, 300}};
  int isa0 = ops_cpu_isa();
  for (int isa = 512; isa >= 0; isa -= 256) {
    ops_cpu_set_isa(isa);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
      for (int dtype = OPS_DTYPE_BF16; dtype <= OPS_DTYPE_F16; dtype++) {
        int M = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
        size_t nx = (size_t)M * K, nw = (size_t)N * K, no = (size_t)M * N;
        float *x = malloc(nx * sizeof(float)), *w = malloc(nw * sizeof(float));
        float *b = malloc((size_t)N * sizeof(float)), *o1 = malloc(no * sizeof(float));
        float *o2 = malloc(no * sizeof(float));
        uint16_t *w16 = malloc(nw * sizeof(uint16_t));
        cr_assert(x && w && b && o1 && o2 && w16);
        dfpo_rng r;
        dfpo_rng_init(&r, (uint64_t)(s + 1), 2);
        for (size_t i = 0; i < nx; i++)
          x[i] = (float)dfpo_rng_normal(&r);
        widened_weights(w, w16, nw, dtype, &r);
        for (int i = 0; i < N; i++)
          b[i] = (float)dfpo_rng_normal(&r);
        const float *bias = s % 2 ? NULL : b;
        ops_cpu.matmul_fwd_w16(o1, x, w16, bias, M, K, N, dtype);
        ops_cpu.matmul_fwd(o2, x, w, bias, M, K, N);
        expect_w16_close(o1, o2, no, M, K, N, dtype);
        free(x), free(w), free(b), free(o1), free(o2), free(w16);
      }
  }
  ops_cpu_set_isa(isa0);
}

/* matmul_bwd_w16 (the input gradient through 16-bit weights) against
 * matmul_bwd's over the widened weights, at each vector width, added to a
 * gradient already there: shapes that split the weights into panels (by N:
 * 40000 rows of 64, two panels) and ones that do not. Within 1e-6 of the
 * result's largest entry (measured: 0 where there is one panel, since the
 * same product runs; 2.6e-7 across two panels, whose split changes the
 * order of the sum over N). */
Test(gpt2_half, matmul_bwd_w16_is_the_fp32_input_gradient_of_the_widened_weights) {
  static const int shapes[][3] = {{2, 64, 40000}, {300, 16, 1000}, {5, 33, 70}, {1, 768, 300}};
  int isa0 = ops_cpu_isa();
  for (int isa = 512; isa >= 0; isa -= 256) {
    ops_cpu_set_isa(isa);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
      for (int dtype = OPS_DTYPE_BF16; dtype <= OPS_DTYPE_F16; dtype++) {
        int M = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
        size_t nd = (size_t)M * N, nw = (size_t)N * K, ni = (size_t)M * K;
        float *d = malloc(nd * sizeof(float)), *w = malloc(nw * sizeof(float));
        float *g1 = malloc(ni * sizeof(float)), *g2 = malloc(ni * sizeof(float));
        uint16_t *w16 = malloc(nw * sizeof(uint16_t));
        cr_assert(d && w && g1 && g2 && w16);
        dfpo_rng r;
        dfpo_rng_init(&r, (uint64_t)(s + 7), 2);
        for (size_t i = 0; i < nd; i++)
          d[i] = (float)dfpo_rng_normal(&r);
        widened_weights(w, w16, nw, dtype, &r);
        for (size_t i = 0; i < ni; i++)
          g1[i] = g2[i] = (float)dfpo_rng_normal(&r);
        ops_cpu.matmul_bwd_w16(g1, d, w16, M, K, N, dtype);
        ops_cpu.matmul_bwd(g2, NULL, NULL, d, NULL, w, M, K, N);
        expect_w16_close(g1, g2, ni, M, K, N, dtype);
        free(d), free(w), free(g1), free(g2), free(w16);
      }
  }
  ops_cpu_set_isa(isa0);
}

/* ----------------------------------------------------------- the model */

/* The arena of gpt2 V=64, L=2, NH=2, C=16, P=16 by hand. fp32: wte 64*16 =
 * 1024, wpe 16*16 = 256; each layer ln_1 16+16, c_attn 48*16 = 768 + 48,
 * attn.c_proj 16*16 = 256 + 16, ln_2 16+16, c_fc 64*16 = 1024 + 64,
 * mlp.c_proj 16*64 = 1024 + 16: 3280; ln_f 32: 1024 + 256 + 2*3280 + 32 =
 * 7872 floats = 31488 bytes. In 16 bits: wte and the four matrices of each
 * layer, 1024 + 2*(768 + 256 + 1024 + 1024) = 7168 weights = 14336 bytes;
 * the rest 7872 - 7168 = 704 floats = 2816 bytes: 17152 bytes. */
Test(gpt2_half, arena_bytes_by_hand) {
  gpt2_config cfg = tu_config(64, 2, 2, 16, 16);
  dfpo_err err;
  dfpo_err_clear(&err);
  for (int dtype = OPS_DTYPE_BF16; dtype <= OPS_DTYPE_F16; dtype++) {
    model_t *m = tu_model(&cfg, 1);
    cr_expect_eq(model_arena_bytes(m), 31488u);
    cr_expect_eq(model_weight_dtype(m), OPS_DTYPE_F32);
    cr_assert_eq(model_set_weight_dtype(m, dtype, &err), 0, "%s", err.msg);
    cr_expect_eq((int)model_weight_dtype(m), (int)dtype);
    cr_expect_eq(model_arena_bytes(m), 17152u, "%zu", model_arena_bytes(m));
    cr_expect_eq(model_num_params(m), 7872u);
    cr_assert_eq(model_set_weight_dtype(m, OPS_DTYPE_F32, &err), 0, "%s", err.msg);
    cr_expect_eq(model_arena_bytes(m), 31488u);
    model_free(m);
  }
}

/* A random tiny GPT-2 far from flat (weights scaled up: perplexities well
 * below the vocabulary's). */
static model_t *half_model(uint64_t seed) {
  gpt2_config cfg = tu_config(64, 2, 2, 32, 24);
  model_t *m = tu_model(&cfg, seed);
  tu_perturb(m, seed, 8.0f);
  return m;
}

static void model_in_16_bits(int dtype) {
  dfpo_err err;
  dfpo_err_clear(&err);
  model_t *a = half_model(3);
  int seq[24];
  double na;
  double nh = half_matches_widened(a, dtype, 64, 16, seq, &na, ops_dtype_name(dtype));
  if (have_torch()) {
    char dir[256], path[300], input[300];
    ts_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(input, sizeof input, "%s/input.json", dir);
    cr_assert_eq(model_export_safetensors(a, path, 0, &err), 0, "%s", err.msg);
    cJSON *in = cJSON_CreateObject();
    cJSON_AddItemToObject(in, "seq", cJSON_CreateIntArray(seq, 24));
    char *text = cJSON_Print(in);
    cJSON_Delete(in);
    cr_assert_eq(dfpo_atomic_write_file(input, text, strlen(text), &err), 0, "%s", err.msg);
    free(text);
    char *args[] = {"nll", path, (char *)ops_dtype_name(dtype), input, NULL};
    cJSON *ref = run_reference(args);
    double nt = cJSON_GetObjectItem(ref, "nll")->valuedouble;
    cJSON_Delete(ref);
    cr_expect(fabs(nh - nt) <= 1e-4 * fabs(nt), "%s: NLL %.9g, PyTorch %.9g", ops_dtype_name(dtype),
              nh, nt);
    cr_log_info("%s: PyTorch %.9g", ops_dtype_name(dtype), nt);
  } else {
    cr_log_warn("no torch: the PyTorch comparison did not run");
  }
  model_free(a);
}

Test(gpt2_half, bf16_model_matches_fp32_over_widened_weights_and_pytorch) {
  model_in_16_bits(OPS_DTYPE_BF16);
}
Test(gpt2_half, f16_model_matches_fp32_over_widened_weights_and_pytorch) {
  model_in_16_bits(OPS_DTYPE_F16);
}

/* A model in 16 bits is frozen (it saves as the fp32 model of its values,
 * and a base view shares its 16-bit blocks); a model with training state
 * stays fp32. */
Test(gpt2_half, refusals) {
  dfpo_err err;
  dfpo_err_clear(&err);
  model_t *a = half_model(5), *h = NULL, *v = NULL;
  cr_assert_eq(model_clone(&h, a, &err), 0, "%s", err.msg);
  cr_assert_eq(model_set_weight_dtype(h, OPS_DTYPE_BF16, &err), 0, "%s", err.msg);
  cr_expect_eq(model_ensure_train(h, &err), DFPO_EUSAGE);
  cr_expect(strstr(err.msg, "does not train"), "%s", err.msg);
  int tok[4] = {1, 2, 3, 4}, tgt[4] = {2, 3, 4, -1};
  float loss;
  cr_expect_eq(model_lm_loss_rows(h, tok, tgt, NULL, 1, 4, 1, &loss, &err), DFPO_EUSAGE);
  cr_expect_eq(model_copy_params(a, h, &err), DFPO_EUSAGE);
  cr_expect_eq(model_copy_params(h, a, &err), DFPO_EUSAGE);
  char dir[256], path[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/m.bin", dir);
  /* saved, it is the fp32 file of its values (the matrices widened) */
  cr_assert_eq(model_save(h, path, 0, &err), 0, "%s", err.msg);
  model_t *w = NULL;
  cr_assert_eq(model_load(&w, path, &err), 0, "%s", err.msg);
  cr_expect_eq((int)model_weight_dtype(w), (int)OPS_DTYPE_F32);
  int seq[6] = {3, 9, 27, 17, 44, 5};
  double nh, nw;
  size_t sc;
  cr_assert_eq(model_score_tokens(h, seq, 6, &nh, &sc, &err), 0, "%s", err.msg);
  cr_assert_eq(model_score_tokens(w, seq, 6, &nw, &sc, &err), 0, "%s", err.msg);
  cr_expect(fabs(nh - nw) <= 1e-6 * fabs(nw), "saved and loaded: NLL %.9g, the 16-bit model %.9g",
            nw, nh);
  model_free(w);
  /* a base view (a reference of a 16-bit LoRA base) shares its blocks */
  cr_assert_eq(model_base_view(&v, h, &err), 0, "%s", err.msg);
  cr_expect_eq((int)model_weight_dtype(v), (int)OPS_DTYPE_BF16);
  cr_expect_eq(model_arena_bytes(v), (size_t)0);
  cr_expect_eq(model_ensure_train(v, &err), DFPO_EUSAGE);
  model_free(v);
  v = NULL;
  /* the tensor list shows the 16-bit tensors without an fp32 view */
  model_tensor t;
  cr_assert_eq(model_tensor_at(h, 0, &t, &err), 0, "%s", err.msg);
  cr_expect(t.param == NULL && t.param16 && t.dtype == OPS_DTYPE_BF16);
  cr_assert_eq(model_tensor_at(h, 1, &t, &err), 0, "%s", err.msg); /* wpe: fp32 */
  cr_expect(t.param && t.dtype == OPS_DTYPE_F32);
  /* a model with training state refuses */
  cr_assert_eq(model_ensure_train(a, &err), 0, "%s", err.msg);
  cr_expect_eq(model_set_weight_dtype(a, OPS_DTYPE_F16, &err), DFPO_EUSAGE);
  cr_expect(strstr(err.msg, "training state"), "%s", err.msg);
  /* a model with a base view of it alive refuses; freed, it converts */
  model_t *b = half_model(6);
  cr_assert_eq(model_base_view(&v, b, &err), 0, "%s", err.msg);
  cr_expect_eq(model_set_weight_dtype(b, OPS_DTYPE_BF16, &err), DFPO_EUSAGE);
  cr_expect_eq(model_set_weight_dtype(v, OPS_DTYPE_BF16, &err), DFPO_EUSAGE);
  model_free(v);
  cr_expect_eq(model_set_weight_dtype(b, OPS_DTYPE_BF16, &err), 0, "%s", err.msg);
  model_free(a);
  model_free(b);
  model_free(h);
}

/* model_load_as: a GPT-2 Hugging Face file, and a native checkpoint (saved
 * with its AdamW moments, which a 16-bit model does not read), read
 * straight into bf16 and f16 are the model that model_load and
 * model_set_weight_dtype give, bit for bit (every tensor's stored bits, the
 * arena, the NLL of a sequence): the readers lay the blocks out for the
 * dtype and round each 16-bit tensor on its way in, with no fp32 copy of
 * it. A NaN in a native file's matrix is refused, named. */
Test(gpt2_half, a_file_loads_straight_into_16_bits) {
  char dir[256], path[300], native[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  snprintf(native, sizeof native, "%s/model.ckpt", dir);
  dfpo_err err;
  dfpo_err_clear(&err);
  model_t *a = half_model(5);
  cr_assert_eq(model_export_safetensors(a, path, 1, &err), 0, "%s", err.msg);
  cr_assert_eq(model_ensure_train(a, &err), 0, "%s", err.msg);
  cr_assert_eq(model_save(a, native, 1, &err), 0, "%s", err.msg);
  int dts[2] = {OPS_DTYPE_BF16, OPS_DTYPE_F16};
  for (int f = 0; f < 2; f++)
    for (int d = 0; d < 2; d++) {
      char what[64];
      snprintf(what, sizeof what, "%s %s", f ? "native" : "safetensors", ops_dtype_name(dts[d]));
      model_t *conv = NULL, *direct = NULL;
      cr_assert_eq(model_load(&conv, path, &err), 0, "%s", err.msg);
      cr_assert_eq(model_set_weight_dtype(conv, dts[d], &err), 0, "%s", err.msg);
      cr_assert_eq(model_load_as(&direct, f ? native : path, dts[d], &err), 0, "%s", err.msg);
      cr_expect_eq((int)model_weight_dtype(direct), dts[d], "%s", what);
      cr_expect_gt(expect_same_weights(direct, conv, what), 0, "%s: nothing in 16 bits", what);
      model_free(direct);
      model_free(conv);
    }
  /* a NaN in the first matrix (wte's first weight, after the header) */
  cr_assert_eq(model_save(a, native, 0, &err), 0, "%s", err.msg);
  FILE *fp = fopen(native, "r+b");
  cr_assert_not_null(fp);
  cr_assert_eq(fseek(fp, -(long)(model_num_params(a) * sizeof(float)), SEEK_END), 0);
  float nan = NAN;
  cr_assert_eq(fwrite(&nan, sizeof nan, 1, fp), 1u);
  fclose(fp);
  model_t *bad = NULL;
  cr_expect_eq(model_load_as(&bad, native, OPS_DTYPE_BF16, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "wte.weight") && strstr(err.msg, "NaN"), "%s", err.msg);
  cr_expect_null(bad);
  model_free(a);
  ts_rmtree(dir);
}

/* model_add_value_head (model.value_model shared's head, put on the loaded
 * policy in place): the value model that model_new_like,
 * model_init_random and model_copy_shared_params make, bit for bit, in
 * fp32 and on a bf16 and an f16 trunk (where the long way would hold the
 * fp32 trunk twice). */
Test(gpt2_half, a_value_head_in_place_is_the_value_model) {
  model_t *a = half_model(8);
  expect_value_head_in_place(a, 21, OPS_DTYPE_F32, "gpt2 f32");
  expect_value_head_in_place(a, 21, OPS_DTYPE_BF16, "gpt2 bf16");
  expect_value_head_in_place(a, 22, OPS_DTYPE_F16, "gpt2 f16");
  model_free(a);
}
