/* The CUDA backend: cuBLAS for the matrix products, own kernels for the rest
 * (the table itself is in ops_cuda_table.c). Semantics are those of the CPU
 * backend (ops_cpu.c) op for op: the same layouts, the same "+=" versus "="
 * outputs, the same scalars computed on the host by the same C expressions.
 *
 * Determinism: no kernel uses atomics; every reduction (warp shuffles, block
 * trees, column sums over row stripes, the embedding scatter) runs in an
 * order fixed by the shapes alone, so a run repeats bit for bit on the same
 * GPU model, driver and cuBLAS. The embedding scatter even adds in the CPU's
 * order and matches it bit for bit; the other ops differ from the CPU in
 * the last bits (different summation order, fused multiply-adds, expf/tanhf
 * instead of the CPU's polynomial), within the tolerances docs/cuda.md
 * gives and tests/trainer/test_ops_cuda.c holds them to. */
#include "trainer/ops_cuda.h"
extern "C" {
#include "trainer/ops.h" /* OPS_ACT_* */
}

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

/* ------------------------------------------------------------- cuBLAS */

/* cuBLAS is opened at run time (dlopen), not linked: a build with the CUDA
 * backend then still starts, and runs on the CPU, on a machine without the
 * CUDA libraries, and --device cuda fails there with the loader's reason.
 * The types come from the header; only these entry points are used. */
static struct {
  decltype(&cublasCreate_v2) create;
  decltype(&cublasSetStream_v2) set_stream;
  decltype(&cublasSetPointerMode_v2) set_pointer_mode;
  decltype(&cublasSetAtomicsMode) set_atomics_mode;
  decltype(&cublasSetMathMode) set_math_mode;
  decltype(&cublasSgemm_v2) sgemm;
  /* the C entry point (C++ also sees an inline overload taking
   * cudaDataType for the compute type) */
  cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                            const void *, const void *, cudaDataType, int, const void *,
                            cudaDataType, int, const void *, void *, cudaDataType, int,
                            cublasComputeType_t, cublasGemmAlgo_t);
  /* attention's per-head products (pointer arrays on the device) */
  decltype(&cublasSgemmBatched) sgemm_batched;
  cublasStatus_t (*gemm_batched_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int,
                                    int, const void *, const void *const *, cudaDataType, int,
                                    const void *const *, cudaDataType, int, const void *,
                                    void *const *, cudaDataType, int, int, cublasComputeType_t,
                                    cublasGemmAlgo_t);
  decltype(&cublasGetStatusString) status_string;
  decltype(&cublasGetStatusName) status_name;
} cb;

#define STR_(x) #x
#define STR(x) STR_(x)
#ifndef DFPO_CUBLAS_DIR
#define DFPO_CUBLAS_DIR "/usr/local/cuda/lib64"
#endif

/* 0, or nonzero with the reason in why[n]. */
static int open_cublas(char *why, size_t n) {
  static const char *const names[] = {"libcublas.so." STR(CUBLAS_VER_MAJOR),
                                      DFPO_CUBLAS_DIR "/libcublas.so." STR(CUBLAS_VER_MAJOR)};
  char first[512] = "";
  void *h = NULL;
  for (size_t i = 0; i < sizeof names / sizeof names[0] && !h; i++) {
    h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!h && i == 0) {
      const char *e = dlerror();
      snprintf(first, sizeof first, "%s", e ? e : "not found");
    }
  }
  if (!h) {
    snprintf(why, n, "cannot load cuBLAS: %s", first);
    return 1;
  }
  struct {
    void **slot;
    const char *name;
  } syms[] = {{(void **)&cb.create, "cublasCreate_v2"},
              {(void **)&cb.set_stream, "cublasSetStream_v2"},
              {(void **)&cb.set_pointer_mode, "cublasSetPointerMode_v2"},
              {(void **)&cb.set_atomics_mode, "cublasSetAtomicsMode"},
              {(void **)&cb.set_math_mode, "cublasSetMathMode"},
              {(void **)&cb.sgemm, "cublasSgemm_v2"},
              {(void **)&cb.gemm_ex, "cublasGemmEx"},
              {(void **)&cb.sgemm_batched, "cublasSgemmBatched"},
              {(void **)&cb.gemm_batched_ex, "cublasGemmBatchedEx"},
              {(void **)&cb.status_string, "cublasGetStatusString"},
              {(void **)&cb.status_name, "cublasGetStatusName"}};
  for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
    *syms[i].slot = dlsym(h, syms[i].name);
    if (!*syms[i].slot) {
      snprintf(why, n, "cuBLAS (%s) lacks %s", names[0], syms[i].name);
      memset(&cb, 0, sizeof cb);
      dlclose(h);
      return 1;
    }
  }
  return 0; /* the library stays loaded for the life of the process */
}

/* ------------------------------------------------------------ errors */

static void die_cuda(cudaError_t e, const char *what, const char *file, int line) {
  fprintf(stderr, "dfpo: fatal: CUDA error in %s (%s:%d): %s (%s)\n", what, file, line,
          cudaGetErrorString(e), cudaGetErrorName(e));
  abort();
}

static void die_blas(cublasStatus_t s, const char *what, const char *file, int line) {
  fprintf(stderr, "dfpo: fatal: cuBLAS error in %s (%s:%d): %s (%s)\n", what, file, line,
          cb.status_string(s), cb.status_name(s));
  abort();
}

#define CK(x)                                                                                      \
  do {                                                                                             \
    cudaError_t e_ = (x);                                                                          \
    if (e_ != cudaSuccess)                                                                         \
      die_cuda(e_, #x, __FILE__, __LINE__);                                                        \
  } while (0)
#define CB(x)                                                                                      \
  do {                                                                                             \
    cublasStatus_t s_ = (x);                                                                       \
    if (s_ != CUBLAS_STATUS_SUCCESS)                                                               \
      die_blas(s_, #x, __FILE__, __LINE__);                                                        \
  } while (0)

/* After every launch: the launch's own error at once; with DFPO_CUDA_SYNC=1
 * in the environment, also the kernel's (a synchronisation per op, for
 * debugging and compute-sanitizer runs). */
static int sync_each = -1;
static void launched(const char *what) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    die_cuda(e, what, __FILE__, __LINE__);
  if (sync_each < 0) {
    const char *s = getenv("DFPO_CUDA_SYNC");
    sync_each = s && s[0] == '1';
  }
  if (sync_each) {
    e = cudaDeviceSynchronize();
    if (e != cudaSuccess)
      die_cuda(e, what, __FILE__, __LINE__);
  }
}

/* ------------------------------------------------------------- state */

static cublasHandle_t blas;
static int tf32_on, bf16_on;
static int ready;

static void set_math_mode(void) {
  if (blas)
    CB(cb.set_math_mode(blas, tf32_on ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
}

extern "C" int ops_cuda_init(char *reason, size_t n) {
  if (ready)
    return 0;
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e == cudaSuccess && count == 0) {
    snprintf(reason, n, "the CUDA runtime found no device");
    return 1;
  }
  if (e == cudaSuccess)
    e = cudaSetDevice(0);
  if (e == cudaSuccess)
    e = cudaFree(0); /* creates the context now rather than in the first op */
  if (e != cudaSuccess) {
    snprintf(reason, n, "CUDA runtime: %s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
    cudaGetLastError();
    return 1;
  }
  if (!cb.create && open_cublas(reason, n))
    return 1;
  cublasStatus_t s = cb.create(&blas);
  if (s != CUBLAS_STATUS_SUCCESS) {
    snprintf(reason, n, "cublasCreate: %s (%s)", cb.status_string(s), cb.status_name(s));
    blas = NULL;
    return 1;
  }
  /* the legacy default stream, host scalars; no atomics (deterministic) */
  CB(cb.set_stream(blas, 0));
  CB(cb.set_pointer_mode(blas, CUBLAS_POINTER_MODE_HOST));
  CB(cb.set_atomics_mode(blas, CUBLAS_ATOMICS_NOT_ALLOWED));
  set_math_mode();
  ready = 1;
  return 0;
}

static void need_ready(void) {
  char why[512];
  if (!ready && ops_cuda_init(why, sizeof why)) {
    fprintf(stderr, "dfpo: fatal: the CUDA backend is not usable: %s\n", why);
    abort();
  }
}

extern "C" void ops_cuda_set_tf32(int on) {
  tf32_on = on != 0;
  set_math_mode();
}

extern "C" int ops_cuda_tf32(void) {
  return tf32_on;
}

extern "C" void ops_cuda_set_bf16(int on) {
  bf16_on = on != 0;
}

extern "C" int ops_cuda_bf16(void) {
  return bf16_on;
}

/* One growable device scratch buffer for the ops that need temporary
 * memory (attention backward, long decoding steps, the embedding scatter,
 * sum-of-squares partials). Ops run one after another on one stream, and
 * each op uses the buffer only while it runs; growing frees the old buffer
 * (cudaFree waits for the device), so no kernel still reads it. */
static void *scratch;
static size_t scratch_bytes;

static void *scratch_get(size_t bytes) {
  if (bytes > scratch_bytes) {
    if (scratch)
      CK(cudaFree(scratch));
    scratch = NULL;
    scratch_bytes = 0;
    size_t want = bytes + bytes / 4;
    CK(cudaMalloc(&scratch, want));
    scratch_bytes = want;
  }
  return scratch;
}

/* ------------------------------------------------------------ memory */

extern "C" void *ops_cuda_alloc(size_t bytes) {
  need_ready();
  void *p = NULL;
  size_t rounded = ((bytes ? bytes : 1) + 255) & ~(size_t)255;
  cudaError_t e = cudaMalloc(&p, rounded);
  if (e != cudaSuccess) {
    cudaGetLastError(); /* out of memory is not sticky: clear it */
    return NULL;
  }
  CK(cudaMemset(p, 0, rounded));
  return p;
}

extern "C" void ops_cuda_free(void *p) {
  if (p)
    CK(cudaFree(p));
}

extern "C" void ops_cuda_zero(void *p, size_t bytes) {
  if (bytes)
    CK(cudaMemset(p, 0, bytes));
}

extern "C" void ops_cuda_upload(void *dst, const void *host_src, size_t bytes) {
  if (bytes)
    CK(cudaMemcpy(dst, host_src, bytes, cudaMemcpyHostToDevice));
}

extern "C" void ops_cuda_download(void *host_dst, const void *src, size_t bytes) {
  if (bytes)
    CK(cudaMemcpy(host_dst, src, bytes, cudaMemcpyDeviceToHost));
}

extern "C" void ops_cuda_copy(void *dst, const void *src, size_t bytes) {
  if (bytes)
    CK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
}

/* ----------------------------------------------------------- helpers */

#define WARP 32
#define FULL 0xffffffffu

/* Butterfly reductions: partners add the same two values (addition is
 * commutative), so every lane ends with the same bits. */
__device__ static inline float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(FULL, v, o);
  return v;
}
__device__ static inline double warp_sum_d(double v) {
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(FULL, v, o);
  return v;
}
__device__ static inline float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1)
    v = fmaxf(v, __shfl_xor_sync(FULL, v, o));
  return v;
}

/* Block reductions for blocks of a multiple of 32 threads (at most 1024):
 * warps reduce, then warp 0 reduces the warps' results in a fixed order;
 * every thread gets the result. Contains __syncthreads: call from all
 * threads. `sh` is shared scratch of 32 elements. */
__device__ static float block_sum(float v, float *sh) {
  int lane = threadIdx.x % WARP, w = threadIdx.x / WARP, nw = blockDim.x / WARP;
  v = warp_sum(v);
  __syncthreads(); /* sh may still be read from a previous call */
  if (lane == 0)
    sh[w] = v;
  __syncthreads();
  if (w == 0) {
    float x = lane < nw ? sh[lane] : 0.0f;
    x = warp_sum(x);
    if (lane == 0)
      sh[0] = x;
  }
  __syncthreads();
  return sh[0];
}
__device__ static double block_sum_d(double v, double *sh) {
  int lane = threadIdx.x % WARP, w = threadIdx.x / WARP, nw = blockDim.x / WARP;
  v = warp_sum_d(v);
  __syncthreads();
  if (lane == 0)
    sh[w] = v;
  __syncthreads();
  if (w == 0) {
    double x = lane < nw ? sh[lane] : 0.0;
    x = warp_sum_d(x);
    if (lane == 0)
      sh[0] = x;
  }
  __syncthreads();
  return sh[0];
}
__device__ static float block_max(float v, float *sh) {
  int lane = threadIdx.x % WARP, w = threadIdx.x / WARP, nw = blockDim.x / WARP;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0)
    sh[w] = v;
  __syncthreads();
  if (w == 0) {
    float x = lane < nw ? sh[lane] : -INFINITY;
    x = warp_max(x);
    if (lane == 0)
      sh[0] = x;
  }
  __syncthreads();
  return sh[0];
}

/* Blocks for a grid-stride loop over n elements. */
static unsigned grid_for(size_t n, unsigned threads) {
  size_t b = (n + threads - 1) / threads;
  if (b < 1)
    b = 1;
  if (b > 65535u * 16u)
    b = 65535u * 16u;
  return (unsigned)b;
}

/* ------------------------------------------------------------ matmul */

/* cuBLAS's column-major C = alpha op(A) op(B) + beta C on fp32 matrices:
 * sgemm (fp32, or TF32 tensor cores by the handle's math mode), or with
 * bf16 on GemmEx with CUBLAS_COMPUTE_32F_FAST_16BF: the fp32 inputs (the
 * weights stay fp32: they are the master copy) are rounded to bf16 for the
 * tensor cores, the products accumulate and land in fp32. */
static void gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const float *A,
                 int lda, const float *B, int ldb, float beta, float *C, int ldc) {
  float one = 1.0f;
  if (bf16_on)
    CB(cb.gemm_ex(blas, ta, tb, m, n, k, &one, A, CUDA_R_32F, lda, B, CUDA_R_32F, ldb, &beta, C,
                  CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F_FAST_16BF, CUBLAS_GEMM_DEFAULT));
  else
    CB(cb.sgemm(blas, ta, tb, m, n, k, &one, A, lda, B, ldb, &beta, C, ldc));
}

__global__ static void k_fill_rows(float *out, const float *bias, size_t M, size_t N) {
  size_t total = M * N;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
       i += (size_t)gridDim.x * blockDim.x)
    out[i] = bias[i % N];
}

extern "C" void ops_cuda_matmul_fwd(float *out, const float *inp, const float *w, const float *bias,
                                    int M, int K, int N) {
  need_ready();
  if (M <= 0 || N <= 0)
    return;
  float beta = 0.0f;
  if (bias) {
    /* as the CPU: out = bias, then out += inp w^T */
    k_fill_rows<<<grid_for((size_t)M * N, 256), 256>>>(out, bias, (size_t)M, (size_t)N);
    launched("matmul bias");
    beta = 1.0f;
  }
  /* Row-major out[M,N] is column-major out^T[N,M] = w^T... : cuBLAS sees
   * w as a column-major K x N matrix (op T gives N x K) and inp as K x M. */
  gemm(CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, w, K, inp, K, beta, out, N);
}

/* dst[c] += sum over rows m of src[m, c] (row stride N), summed in stripes
 * of rows (m = y, y + 16, ...) that are then added in stripe order: a fixed
 * order whatever the launch. Block (32, 16), one column per x. */
#define CS_Y 16
__global__ static void k_colsum_add(float *dst, const float *src, int M, int N) {
  __shared__ float part[CS_Y][WARP + 1];
  int c = blockIdx.x * WARP + threadIdx.x;
  float s = 0.0f;
  if (c < N)
    for (int m = threadIdx.y; m < M; m += CS_Y)
      s += src[(size_t)m * N + c];
  part[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < N) {
    float t = part[0][threadIdx.x];
    for (int y = 1; y < CS_Y; y++)
      t += part[y][threadIdx.x];
    dst[c] += t;
  }
}

extern "C" void ops_cuda_matmul_bwd(float *dinp, float *dw, float *dbias, const float *dout,
                                    const float *inp, const float *w, int M, int K, int N) {
  need_ready();
  if (M <= 0 || N <= 0 || K <= 0)
    return;
  if (dinp) /* dinp[M,K] += dout[M,N] w[N,K]: column-major dinp^T = w^T dout^T */
    gemm(CUBLAS_OP_N, CUBLAS_OP_N, K, M, N, w, K, dout, N, 1.0f, dinp, K);
  if (dw) /* dw[N,K] += dout^T inp: column-major dw^T[K,N] = inp^T[K,M] dout[M,N] */
    gemm(CUBLAS_OP_N, CUBLAS_OP_T, K, N, M, inp, K, dout, N, 1.0f, dw, K);
  if (dbias) {
    dim3 block(WARP, CS_Y);
    k_colsum_add<<<(N + WARP - 1) / WARP, block>>>(dbias, dout, M, N);
    launched("matmul dbias");
  }
}

/* ----------------------------------------------------------- encoder */

__global__ static void k_encoder_fwd(float *out, const int *tok, const int *pos, const float *wte,
                                     const float *wpe, size_t N, size_t C) {
  size_t total = N * C;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
       i += (size_t)gridDim.x * blockDim.x) {
    size_t n = i / C, c = i % C;
    out[i] = wte[(size_t)tok[n] * C + c] + wpe[(size_t)pos[n] * C + c];
  }
}

extern "C" void ops_cuda_encoder_fwd(float *out, const int *tok, const int *pos, const float *wte,
                                     const float *wpe, int N, int C) {
  if (N <= 0 || C <= 0)
    return;
  k_encoder_fwd<<<grid_for((size_t)N * C, 256), 256>>>(out, tok, pos, wte, wpe, (size_t)N,
                                                       (size_t)C);
  launched("encoder_fwd");
}

/* ------------------------------------------------- 16-bit weights */

/* A 16-bit weight widened to fp32 (exact). */
__device__ static float up16(uint16_t h, int dtype) {
  return dtype == OPS_DTYPE_BF16 ? __uint_as_float((unsigned)h << 16)
                                 : __half2float(__ushort_as_half(h));
}

/* dst[n] = src rounded to nearest even in the 16-bit type, as the host's
 * ops_f32_to_bf16 and ops_f32_to_f16 */
__global__ static void k_to_w16(uint16_t *dst, const float *src, size_t n, int dtype) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x)
    dst[i] = dtype == OPS_DTYPE_BF16 ? __bfloat16_as_ushort(__float2bfloat16_rn(src[i]))
                                     : __half_as_ushort(__float2half_rn(src[i]));
}

/* n floats of x rounded to the 16-bit dtype in the scratch buffer (the
 * operand GemmEx pairs with 16-bit weights); what names the launch. */
static const uint16_t *rounded_scratch(const float *x, size_t n, int dtype, const char *what) {
  uint16_t *x16 = (uint16_t *)scratch_get(n * sizeof(uint16_t));
  k_to_w16<<<grid_for(n, 256), 256>>>(x16, x, n, dtype);
  launched(what);
  return x16;
}

/* The product with 16-bit weights on the tensor cores: the activations are
 * rounded to the weights' type in the scratch buffer, and GemmEx
 * multiplies the two 16-bit matrices with fp32 accumulation
 * (CUBLAS_COMPUTE_32F) into the fp32 out, after the bias as matmul_fwd. */
extern "C" void ops_cuda_matmul_fwd_w16(float *out, const float *inp, const uint16_t *w,
                                        const float *bias, int M, int K, int N, int dtype) {
  need_ready();
  if (M <= 0 || N <= 0)
    return;
  float one = 1.0f, beta = 0.0f;
  if (bias) {
    k_fill_rows<<<grid_for((size_t)M * N, 256), 256>>>(out, bias, (size_t)M, (size_t)N);
    launched("matmul_w16 bias");
    beta = 1.0f;
  }
  if (K <= 0) {
    if (!bias)
      CK(cudaMemset(out, 0, (size_t)M * N * sizeof(float)));
    return;
  }
  const uint16_t *x16 = rounded_scratch(inp, (size_t)M * K, dtype, "matmul_w16 activations");
  cudaDataType t = dtype == OPS_DTYPE_BF16 ? CUDA_R_16BF : CUDA_R_16F;
  CB(cb.gemm_ex(blas, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, w, t, K, x16, t, K, &beta, out,
                CUDA_R_32F, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

/* The input gradient through 16-bit weights on the tensor cores: dout is
 * rounded to the weights' type in the scratch buffer, and GemmEx adds
 * dout16 up(w) with fp32 accumulation into the fp32 dinp (column-major
 * dinp^T[K,M] += w^T[K,N] dout^T[N,M], as matmul_bwd). */
extern "C" void ops_cuda_matmul_bwd_w16(float *dinp, const float *dout, const uint16_t *w, int M,
                                        int K, int N, int dtype) {
  need_ready();
  if (M <= 0 || N <= 0 || K <= 0 || !dinp)
    return;
  float one = 1.0f;
  const uint16_t *d16 = rounded_scratch(dout, (size_t)M * N, dtype, "matmul_bwd_w16 gradients");
  cudaDataType t = dtype == OPS_DTYPE_BF16 ? CUDA_R_16BF : CUDA_R_16F;
  CB(cb.gemm_ex(blas, CUBLAS_OP_N, CUBLAS_OP_N, K, M, N, &one, w, t, K, d16, t, N, &one, dinp,
                CUDA_R_32F, K, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

__global__ static void k_encoder_fwd_w16(float *out, const int *tok, const int *pos,
                                         const uint16_t *wte, const float *wpe, size_t N, size_t C,
                                         int dtype) {
  size_t total = N * C;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
       i += (size_t)gridDim.x * blockDim.x) {
    size_t n = i / C, c = i % C;
    out[i] = up16(wte[(size_t)tok[n] * C + c], dtype) + wpe[(size_t)pos[n] * C + c];
  }
}

extern "C" void ops_cuda_encoder_fwd_w16(float *out, const int *tok, const int *pos,
                                         const uint16_t *wte, const float *wpe, int N, int C,
                                         int dtype) {
  if (N <= 0 || C <= 0)
    return;
  k_encoder_fwd_w16<<<grid_for((size_t)N * C, 256), 256>>>(out, tok, pos, wte, wpe, (size_t)N,
                                                           (size_t)C, dtype);
  launched("encoder_fwd_w16");
}

/* dst[key[u], c] += src[order[i], c] for i in start[u]..start[u+1]-1, in
 * that order: the rows of each key are added in increasing row index, as
 * the CPU's loop over n does, so the sums are the CPU's bit for bit. Grid
 * (keys, channel blocks). */
__global__ static void k_scatter_rows(float *dst, const float *src, const int *order,
                                      const int *ukey, const int *start, int C) {
  int u = blockIdx.x;
  int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= C)
    return;
  float *d = dst + (size_t)ukey[u] * C + c;
  float a = *d;
  for (int i = start[u]; i < start[u + 1]; i++)
    a += src[(size_t)order[i] * C + c];
  *d = a;
}

/* Groups the N rows by key on the host (the keys are small: N ints) and
 * runs k_scatter_rows over the groups. */
static void scatter_by_key(float *dst, const float *src, const int *dkeys, int N, int C) {
  std::vector<int> key((size_t)N), order((size_t)N);
  CK(cudaMemcpy(key.data(), dkeys, (size_t)N * sizeof(int), cudaMemcpyDeviceToHost));
  for (int i = 0; i < N; i++)
    order[(size_t)i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return key[(size_t)a] < key[(size_t)b]; });
  std::vector<int> ukey, start;
  for (int i = 0; i < N; i++) {
    int k = key[(size_t)order[(size_t)i]];
    if (i == 0 || k != ukey.back()) {
      ukey.push_back(k);
      start.push_back(i);
    }
  }
  start.push_back(N);
  int U = (int)ukey.size();
  /* order | ukey | start in the scratch buffer */
  size_t bytes = ((size_t)N + (size_t)U + (size_t)U + 1) * sizeof(int);
  int *s = (int *)scratch_get(bytes);
  CK(cudaMemcpy(s, order.data(), (size_t)N * sizeof(int), cudaMemcpyHostToDevice));
  CK(cudaMemcpy(s + N, ukey.data(), (size_t)U * sizeof(int), cudaMemcpyHostToDevice));
  CK(cudaMemcpy(s + N + U, start.data(), ((size_t)U + 1) * sizeof(int), cudaMemcpyHostToDevice));
  const int threads = 128;
  dim3 grid((unsigned)U, (unsigned)((C + threads - 1) / threads));
  k_scatter_rows<<<grid, threads>>>(dst, src, s, s + N, s + N + U, C);
  launched("encoder_bwd scatter");
}

extern "C" void ops_cuda_encoder_bwd(float *dwte, float *dwpe, const float *dout, const int *tok,
                                     const int *pos, int N, int C) {
  if (N <= 0 || C <= 0)
    return;
  /* the second call waits for the first: it rewrites the scratch buffer
   * with cudaMemcpy, which is ordered after the first kernel on the
   * default stream */
  scatter_by_key(dwte, dout, tok, N, C);
  scatter_by_key(dwpe, dout, pos, N, C);
}

/* --------------------------------------------------------- layernorm */

#define ROWS_PER_BLOCK 8 /* warps per block in the warp-per-row kernels */

__global__ static void k_layernorm_fwd(float *out, float *mean, float *rstd, const float *inp,
                                       const float *w, const float *b, int N, int C, float eps) {
  int lane = threadIdx.x % WARP;
  int n = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / WARP;
  if (n >= N)
    return;
  const float *x = inp + (size_t)n * C;
  float s = 0.0f;
  for (int c = lane; c < C; c += WARP)
    s += x[c];
  float m = warp_sum(s) / C;
  float v = 0.0f;
  for (int c = lane; c < C; c += WARP) {
    float d = x[c] - m;
    v += d * d;
  }
  v = warp_sum(v) / C;
  float r = 1.0f / sqrtf(v + eps);
  float *o = out + (size_t)n * C;
  for (int c = lane; c < C; c += WARP)
    o[c] = (x[c] - m) * r * w[c] + b[c];
  if (lane == 0) {
    if (mean)
      mean[n] = m;
    if (rstd)
      rstd[n] = r;
  }
}

extern "C" void ops_cuda_layernorm_fwd(float *out, float *mean, float *rstd, const float *inp,
                                       const float *w, const float *b, int N, int C, float eps) {
  if (N <= 0 || C <= 0)
    return;
  k_layernorm_fwd<<<(N + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK, ROWS_PER_BLOCK * WARP>>>(
      out, mean, rstd, inp, w, b, N, C, eps);
  launched("layernorm_fwd");
}

__global__ static void k_layernorm_bwd_inp(float *dinp, const float *dout, const float *inp,
                                           const float *w, const float *mean, const float *rstd,
                                           int N, int C) {
  int lane = threadIdx.x % WARP;
  int n = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / WARP;
  if (n >= N)
    return;
  const float *x = inp + (size_t)n * C, *d = dout + (size_t)n * C;
  float m = mean[n], s = rstd[n];
  float a = 0.0f, bb = 0.0f;
  for (int c = lane; c < C; c += WARP) {
    float norm = (x[c] - m) * s, dn = w[c] * d[c];
    a += dn;
    bb += dn * norm;
  }
  float dnorm_mean = warp_sum(a) / C, dnorm_norm_mean = warp_sum(bb) / C;
  float *di = dinp + (size_t)n * C;
  for (int c = lane; c < C; c += WARP) {
    float norm = (x[c] - m) * s, dn = w[c] * d[c];
    di[c] += (dn - dnorm_mean - norm * dnorm_norm_mean) * s;
  }
}

/* dw[c] += sum_n norm[n,c] dout[n,c], db[c] += sum_n dout[n,c]: the column
 * sums of k_colsum_add. */
__global__ static void k_layernorm_bwd_params(float *dw, float *db, const float *dout,
                                              const float *inp, const float *mean,
                                              const float *rstd, int N, int C) {
  __shared__ float pw[CS_Y][WARP + 1], pb[CS_Y][WARP + 1];
  int c = blockIdx.x * WARP + threadIdx.x;
  float sw = 0.0f, sb = 0.0f;
  if (c < C)
    for (int n = threadIdx.y; n < N; n += CS_Y) {
      size_t i = (size_t)n * C + c;
      float d = dout[i];
      sw += (inp[i] - mean[n]) * rstd[n] * d;
      sb += d;
    }
  pw[threadIdx.y][threadIdx.x] = sw;
  pb[threadIdx.y][threadIdx.x] = sb;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float tw = pw[0][threadIdx.x], tb = pb[0][threadIdx.x];
    for (int y = 1; y < CS_Y; y++) {
      tw += pw[y][threadIdx.x];
      tb += pb[y][threadIdx.x];
    }
    dw[c] += tw;
    db[c] += tb;
  }
}

extern "C" void ops_cuda_layernorm_bwd(float *dinp, float *dw, float *db, const float *dout,
                                       const float *inp, const float *w, const float *mean,
                                       const float *rstd, int N, int C) {
  if (N <= 0 || C <= 0)
    return;
  k_layernorm_bwd_inp<<<(N + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK, ROWS_PER_BLOCK * WARP>>>(
      dinp, dout, inp, w, mean, rstd, N, C);
  launched("layernorm_bwd dinp");
  if (!dw || !db) /* frozen parameters (LoRA's base) */
    return;
  dim3 block(WARP, CS_Y);
  k_layernorm_bwd_params<<<(C + WARP - 1) / WARP, block>>>(dw, db, dout, inp, mean, rstd, N, C);
  launched("layernorm_bwd params");
}

/* --------------------------------------------------------- attention */

/* One warp per query row (b, h, t), rows numbered ((b NH + h) T + t). */
__device__ static inline int first_key(const int *kstart, int b, int t) {
  int ks = kstart ? kstart[b] : 0;
  return t < ks ? t : ks;
}

/* Attention over the materialised [B, NH, T, T] probabilities, as cuBLAS
 * products batched over the B NH heads (pointer arrays; no copy of q, k, v
 * out of qkv's [B, T, 3C] rows) with warp-per-row kernels between them for
 * the softmax and its backward. The products run over all T keys of a row;
 * the kernels make the probabilities (and their gradient) 0 outside the keys
 * a query sees, so the masked keys add nothing. */

static unsigned warp_rows_grid(long long rows) {
  return (unsigned)((rows + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK);
}

/* Pointer arrays for the batched products: array a, head i = b NH + h, is
 * base[a] + b sb[a] + h sh[a] (floats). */
enum { ATT_PTRS = 9 };
typedef struct att_ptrs {
  const float *base[ATT_PTRS];
  long long sb[ATT_PTRS], sh[ATT_PTRS];
  int n;
} att_ptrs;

__global__ static void k_att_ptrs(const float **out, att_ptrs p, int NH, int count) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= count)
    return;
  for (int a = 0; a < p.n; a++)
    out[(size_t)a * count + i] =
        p.base[a] + (long long)(i / NH) * p.sb[a] + (long long)(i % NH) * p.sh[a];
}

/* The scratch buffer laid out for one attention call: room for the count
 * heads' ATT_PTRS pointer arrays, then extra bytes of the caller's at
 * *rest (256-byte aligned). */
static const float **att_scratch(int count, size_t extra, void **rest) {
  size_t pb = ((size_t)ATT_PTRS * count * sizeof(float *) + 255) / 256 * 256;
  char *s = (char *)scratch_get(pb + extra);
  if (rest)
    *rest = s + pb;
  return (const float **)s;
}

/* Fills att_scratch's arrays with p's pointers for the count heads. */
static void att_ptrs_fill(const float **arr, const att_ptrs *p, int NH, int count) {
  k_att_ptrs<<<(unsigned)((count + 255) / 256), 256>>>(arr, *p, NH, count);
  launched("attention pointers");
}

/* C_i = alpha op(A_i) op(B_i) for the count heads, like gemm (fp32 or TF32
 * by the math mode; bf16 tensor cores when bf16 is on). */
static void gemm_batched(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                         float alpha, const float *const *A, int lda, const float *const *B,
                         int ldb, const float *const *C, int ldc, int count) {
  float beta = 0.0f;
  float *const *Cw = (float *const *)C;
  if (bf16_on)
    CB(cb.gemm_batched_ex(blas, ta, tb, m, n, k, &alpha, (const void *const *)A, CUDA_R_32F, lda,
                          (const void *const *)B, CUDA_R_32F, ldb, &beta, (void *const *)Cw,
                          CUDA_R_32F, ldc, count, CUBLAS_COMPUTE_32F_FAST_16BF,
                          CUBLAS_GEMM_DEFAULT));
  else
    CB(cb.sgemm_batched(blas, ta, tb, m, n, k, &alpha, A, lda, B, ldb, &beta, Cw, ldc, count));
}

/* The keys query row (b, h, t) sees: j0..jl (causal, or with bidir every
 * query sees keys kstart[b]..T-1; ops.h). */
__device__ static inline void visible_keys(const int *kstart, int b, int t, int T, int bidir,
                                           int *j0, int *jl) {
  *j0 = bidir ? (kstart ? kstart[b] : 0) : first_key(kstart, b, t);
  *jl = bidir ? T - 1 : t;
}

/* One warp per row of att (rows ((b NH + h) T + t)): the scaled scores to
 * the softmax over the visible keys, 0 elsewhere. Each lane keeps to its own
 * keys j = lane mod 32. */
__global__ static void k_attention_softmax(float *att, const int *kstart, int B, int T, int NH,
                                           int bidir) {
  int lane = threadIdx.x % WARP;
  long long row = (long long)blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / WARP;
  if (row >= (long long)B * NH * T)
    return;
  int t = (int)(row % T), b = (int)(row / ((long long)T * NH)), j0, jl;
  visible_keys(kstart, b, t, T, bidir, &j0, &jl);
  float *a = att + (size_t)row * T;
  float mx = -INFINITY;
  for (int j = lane; j < T; j += WARP)
    if (j >= j0 && j <= jl)
      mx = fmaxf(mx, a[j]);
  mx = warp_max(mx);
  float sum = 0.0f;
  for (int j = lane; j < T; j += WARP) {
    float e = j >= j0 && j <= jl ? expf(a[j] - mx) : 0.0f;
    a[j] = e;
    sum += e;
  }
  float inv = 1.0f / warp_sum(sum);
  for (int j = lane; j < T; j += WARP)
    a[j] *= inv;
}

/* Both forward attentions: causal (bidir 0) or the encoders' (1). Per head:
 * att = softmax(scale q k^T) (cuBLAS column-major: att^T = scale K^T Q with
 * q, k, v the [T, HS] views of qkv, leading dimension 3C), out = att v
 * (out^T = V^T att^T, leading dimension C). */
static void attention_launch(float *out, float *att, const float *qkv, const int *kstart, int B,
                             int T, int C, int NH, int bidir) {
  if (B <= 0 || T <= 0 || C <= 0 || NH <= 0)
    return;
  int HS = C / NH, count = B * NH;
  float scale = 1.0f / sqrtf((float)HS);
  long long T3C = (long long)T * 3 * C, TT = (long long)T * T;
  att_ptrs p = {{qkv, qkv + C, qkv + 2 * C, att, out},
                {T3C, T3C, T3C, NH * TT, (long long)T * C},
                {HS, HS, HS, TT, HS},
                5};
  const float **a = att_scratch(count, 0, NULL);
  att_ptrs_fill(a, &p, NH, count);
  const float *const *Q = a, *const *K = a + count, *const *Vv = a + 2 * (size_t)count,
                     *const *S = a + 3 * (size_t)count, *const *O = a + 4 * (size_t)count;
  gemm_batched(CUBLAS_OP_T, CUBLAS_OP_N, T, T, HS, scale, K, 3 * C, Q, 3 * C, S, T, count);
  long long rows = (long long)B * NH * T;
  k_attention_softmax<<<warp_rows_grid(rows), ROWS_PER_BLOCK * WARP>>>(att, kstart, B, T, NH,
                                                                       bidir);
  launched(bidir ? "attention_bidir_fwd softmax" : "attention_fwd softmax");
  gemm_batched(CUBLAS_OP_N, CUBLAS_OP_N, HS, T, T, 1.0f, Vv, 3 * C, S, T, O, C, count);
}

extern "C" void ops_cuda_attention_fwd(float *out, float *att, const float *qkv, const int *kstart,
                                       int B, int T, int C, int NH) {
  attention_launch(out, att, qkv, kstart, B, T, C, NH, 0);
}

extern "C" void ops_cuda_attention_bidir_fwd(float *out, float *att, const float *qkv,
                                             const int *kstart, int B, int T, int C, int NH) {
  attention_launch(out, att, qkv, kstart, B, T, C, NH, 1);
}

/* Backward's middle (warp per query row): dpre holds datt[t, j] = dout_t .
 * v_j for every key and becomes a (datt - a.datt) scale over the visible
 * keys, 0 elsewhere. */
__global__ static void k_attention_bwd_soft(float *dpre, const float *att, const int *kstart, int B,
                                            int T, int NH, float scale) {
  int lane = threadIdx.x % WARP;
  long long row = (long long)blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / WARP;
  if (row >= (long long)B * NH * T)
    return;
  int t = (int)(row % T), b = (int)(row / ((long long)T * NH)), j0, jl;
  visible_keys(kstart, b, t, T, 0, &j0, &jl);
  const float *a = att + (size_t)row * T;
  float *dp = dpre + (size_t)row * T;
  float dot = 0.0f;
  for (int j = lane; j < T; j += WARP)
    if (j >= j0 && j <= jl)
      dot += a[j] * dp[j];
  dot = warp_sum(dot);
  for (int j = lane; j < T; j += WARP)
    dp[j] = j >= j0 && j <= jl ? a[j] * (dp[j] - dot) * scale : 0.0f;
}

/* Per head: datt = dout v^T, dpre (k_attention_bwd_soft), dq = dpre k,
 * dk = dpre^T q, dv = att^T dout (each written whole: dqkv's q, k and v
 * thirds are overwritten). */
extern "C" void ops_cuda_attention_bwd(float *dqkv, const float *dout, const float *qkv,
                                       const float *att, const int *kstart, int B, int T, int C,
                                       int NH) {
  if (B <= 0 || T <= 0 || C <= 0 || NH <= 0)
    return;
  int HS = C / NH, count = B * NH;
  float scale = 1.0f / sqrtf((float)HS);
  long long rows = (long long)B * NH * T, T3C = (long long)T * 3 * C, TT = (long long)T * T,
            TC = (long long)T * C;
  att_ptrs p = {{qkv, qkv + C, qkv + 2 * C, dout, att, NULL, dqkv, dqkv + C, dqkv + 2 * C},
                {T3C, T3C, T3C, TC, NH * TT, NH * TT, T3C, T3C, T3C},
                {HS, HS, HS, HS, TT, TT, HS, HS, HS},
                9};
  /* dpre [B, NH, T, T] in the scratch after the pointer arrays */
  void *rest;
  const float **a = att_scratch(count, (size_t)rows * T * sizeof(float), &rest);
  float *dpre = (float *)rest;
  p.base[5] = dpre;
  att_ptrs_fill(a, &p, NH, count);
  const float *const *Q = a, *const *K = a + count, *const *Vv = a + 2 * (size_t)count,
                     *const *dO = a + 3 * (size_t)count, *const *A = a + 4 * (size_t)count,
                     *const *D = a + 5 * (size_t)count, *const *dQ = a + 6 * (size_t)count,
                     *const *dK = a + 7 * (size_t)count, *const *dV = a + 8 * (size_t)count;
  gemm_batched(CUBLAS_OP_T, CUBLAS_OP_N, T, T, HS, 1.0f, Vv, 3 * C, dO, C, D, T, count);
  k_attention_bwd_soft<<<warp_rows_grid(rows), ROWS_PER_BLOCK * WARP>>>(dpre, att, kstart, B, T, NH,
                                                                        scale);
  launched("attention_bwd softmax");
  gemm_batched(CUBLAS_OP_N, CUBLAS_OP_N, HS, T, T, 1.0f, K, 3 * C, D, T, dQ, 3 * C, count);
  gemm_batched(CUBLAS_OP_N, CUBLAS_OP_T, HS, T, T, 1.0f, Q, 3 * C, D, T, dK, 3 * C, count);
  gemm_batched(CUBLAS_OP_N, CUBLAS_OP_T, HS, T, T, 1.0f, dO, C, A, T, dV, 3 * C, count);
}

__global__ static void k_kv_write(float *kc, float *vc, const float *qkv, int B, int T, int t0,
                                  int Tmax, int C, int KV) {
  size_t total = (size_t)B * T * KV, ld = (size_t)C + 2 * (size_t)KV;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
       i += (size_t)gridDim.x * blockDim.x) {
    size_t c = i % KV, bt = i / KV, b = bt / T, t = bt % T;
    const float *src = qkv + bt * ld;
    size_t row = (b * Tmax + t0 + t) * KV;
    kc[row + c] = src[C + c];
    vc[row + c] = src[C + KV + c];
  }
}

extern "C" void ops_cuda_kv_write(float *kc, float *vc, const float *qkv, int B, int T, int t0,
                                  int Tmax, int C, int KV) {
  if (B <= 0 || T <= 0 || KV <= 0)
    return;
  k_kv_write<<<grid_for((size_t)B * T * KV, 256), 256>>>(kc, vc, qkv, B, T, t0, Tmax, C, KV);
  launched("kv_write");
}

/* One block per (b, h), query head h reading key/value head h / (NH/NKV):
 * scores in shared memory (or, past STEP_SHARED_MAX keys, in the global
 * scratch `gsc`, n floats per block). */
#define STEP_THREADS 128
#define STEP_SHARED_MAX 8192
__global__ static void k_attention_step(float *out, const float *qkv, const float *kc,
                                        const float *vc, const int *kstart, int NH, int NKV, int n,
                                        int Tmax, int C, float scale, float *gsc) {
  extern __shared__ float shsc[];
  __shared__ float red[WARP];
  int b = blockIdx.x / NH, h = blockIdx.x % NH, HS = C / NH;
  size_t KV = (size_t)NKV * HS, ld = (size_t)C + 2 * KV, hk = (size_t)(h / (NH / NKV)) * HS;
  float *sc = gsc ? gsc + (size_t)blockIdx.x * n : shsc;
  int ks = kstart ? kstart[b] : 0;
  if (ks > n - 1)
    ks = n - 1;
  const float *q = qkv + (size_t)b * ld + (size_t)h * HS;
  float mx = -INFINITY;
  for (int j = ks + threadIdx.x; j < n; j += blockDim.x) {
    const float *k = kc + ((size_t)b * Tmax + j) * KV + hk;
    float s = 0.0f;
    for (int i = 0; i < HS; i++)
      s += q[i] * k[i];
    s *= scale;
    sc[j] = s;
    mx = fmaxf(mx, s);
  }
  mx = block_max(mx, red);
  float sum = 0.0f;
  for (int j = ks + threadIdx.x; j < n; j += blockDim.x) {
    float e = expf(sc[j] - mx);
    sc[j] = e;
    sum += e;
  }
  /* block_sum ends with __syncthreads, which also publishes sc[] */
  float inv = 1.0f / block_sum(sum, red);
  if (gsc)
    __threadfence_block();
  float *o = out + (size_t)b * C + (size_t)h * HS;
  for (int i = threadIdx.x; i < HS; i += blockDim.x) {
    float s = 0.0f;
    for (int j = ks; j < n; j++)
      s += sc[j] * inv * vc[((size_t)b * Tmax + j) * KV + hk + i];
    o[i] = s;
  }
}

extern "C" void ops_cuda_attention_step(float *out, const float *qkv, const float *kc,
                                        const float *vc, const int *kstart, int B, int n, int Tmax,
                                        int C, int NH, int NKV) {
  if (B <= 0 || n <= 0 || C <= 0 || NH <= 0 || NKV <= 0)
    return;
  int HS = C / NH;
  float scale = 1.0f / sqrtf((float)HS);
  float *gsc = NULL;
  size_t shared = (size_t)n * sizeof(float);
  if (n > STEP_SHARED_MAX) {
    gsc = (float *)scratch_get((size_t)B * NH * n * sizeof(float));
    shared = 0;
  }
  k_attention_step<<<(unsigned)(B * NH), STEP_THREADS, shared>>>(out, qkv, kc, vc, kstart, NH, NKV,
                                                                 n, Tmax, C, scale, gsc);
  launched("attention_step");
}

/* ------------------------------------------------- elementwise */

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */

__global__ static void k_gelu_fwd(float *out, const float *inp, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    float x = inp[i];
    out[i] = 0.5f * x * (1.0f + tanhf(GELU_K * (x + 0.044715f * x * x * x)));
  }
}

__global__ static void k_gelu_bwd(float *dinp, const float *inp, const float *dout, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    float x = inp[i];
    float u = GELU_K * (x + 0.044715f * x * x * x);
    float th = tanhf(u);
    float sech2 = 1.0f - th * th;
    float g = 0.5f * (1.0f + th) + 0.5f * x * sech2 * GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
    dinp[i] = g * dout[i]; /* dinp may alias dout: read before write */
  }
}

__global__ static void k_act_fwd(float *out, const float *inp, size_t n, int kind) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    float x = inp[i];
    out[i] = kind == OPS_ACT_GELU_ERF ? 0.5f * x * (1.0f + erff(x * 0.70710678118654752f))
             : kind == OPS_ACT_TANH   ? tanhf(x)
                                      : fmaxf(x, 0.0f);
  }
}

__global__ static void k_add(float *out, const float *a, const float *b, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x)
    out[i] = a[i] + b[i];
}

__global__ static void k_scale(float *x, float s, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x)
    x[i] *= s;
}

extern "C" void ops_cuda_gelu_fwd(float *out, const float *inp, size_t n) {
  if (!n)
    return;
  k_gelu_fwd<<<grid_for(n, 256), 256>>>(out, inp, n);
  launched("gelu_fwd");
}
extern "C" void ops_cuda_act_fwd(float *out, const float *inp, size_t n, int kind) {
  if (!n)
    return;
  k_act_fwd<<<grid_for(n, 256), 256>>>(out, inp, n, kind);
  launched("act_fwd");
}
extern "C" void ops_cuda_gelu_bwd(float *dinp, const float *inp, const float *dout, size_t n) {
  if (!n)
    return;
  k_gelu_bwd<<<grid_for(n, 256), 256>>>(dinp, inp, dout, n);
  launched("gelu_bwd");
}
extern "C" void ops_cuda_add(float *out, const float *a, const float *b, size_t n) {
  if (!n)
    return;
  k_add<<<grid_for(n, 256), 256>>>(out, a, b, n);
  launched("add");
}
extern "C" void ops_cuda_scale(float *x, float s, size_t n) {
  if (!n)
    return;
  k_scale<<<grid_for(n, 256), 256>>>(x, s, n);
  launched("scale");
}

/* ------------------------------------------------------------ logits */

#define ROW_THREADS 256

/* One block per row: max, then float partial sums per thread added across
 * the block in double (as the CPU adds its float blocks in double). */
__global__ static void k_logits_stats(float *lse, float *logp, float *ent, const float *logits,
                                      const int *tgt, int V, int ld) {
  __shared__ float redf[WARP];
  __shared__ double redd[WARP];
  int n = blockIdx.x;
  const float *z = logits + (size_t)n * ld;
  float mx = -INFINITY;
  for (int i = threadIdx.x; i < V; i += blockDim.x)
    mx = fmaxf(mx, z[i]);
  mx = block_max(mx, redf);
  float bs = 0.0f, bz = 0.0f;
  for (int i = threadIdx.x; i < V; i += blockDim.x) {
    float d = z[i] - mx;
    d = d < -87.3f ? -87.3f : d;
    float e = expf(d);
    bs += e;
    bz += e * d;
  }
  double sum = block_sum_d((double)bs, redd);
  double sz = block_sum_d((double)bz, redd);
  if (threadIdx.x == 0) {
    double l = log(sum);
    lse[n] = mx + (float)l;
    if (logp)
      logp[n] = tgt && tgt[n] >= 0 ? (float)((double)(z[tgt[n]] - mx) - l) : 0.0f;
    if (ent)
      ent[n] = (float)(l - sz / sum);
  }
}

extern "C" void ops_cuda_logits_stats(float *lse, float *logp, float *ent, const float *logits,
                                      const int *tgt, int N, int V, int ld) {
  if (N <= 0 || V <= 0)
    return;
  k_logits_stats<<<(unsigned)N, ROW_THREADS>>>(lse, logp, ent, logits, tgt, V, ld);
  launched("logits_stats");
}

__global__ static void k_logits_bwd(float *logits, const float *lse, const float *ent,
                                    const int *tgt, const float *dlogp, const float *dent, int V,
                                    int ld) {
  int n = blockIdx.x;
  float *z = logits + (size_t)n * ld;
  int t = tgt ? tgt[n] : -1;
  float l = lse[n], gl = dlogp && t >= 0 ? dlogp[n] : 0.0f, ge = dent ? dent[n] : 0.0f;
  float H = ent ? ent[n] : 0.0f;
  for (int i = threadIdx.x; i < V; i += blockDim.x) {
    float lp = z[i] - l;
    float p = expf(lp);
    float d = -gl * p;
    if (ge != 0.0f)
      d -= ge * p * (lp + H);
    if (i == t)
      d += gl; /* the CPU's z[t] += gl after the loop: the same one addition */
    z[i] = d;
  }
}

extern "C" void ops_cuda_logits_bwd(float *logits, const float *lse, const float *ent,
                                    const int *tgt, const float *dlogp, const float *dent, int N,
                                    int V, int ld) {
  if (N <= 0 || V <= 0)
    return;
  k_logits_bwd<<<(unsigned)N, ROW_THREADS>>>(logits, lse, ent, tgt, dlogp, dent, V, ld);
  launched("logits_bwd");
}

/* --------------------------------------------------------- optimiser */

__global__ static void k_adamw(float *p, float *g, float *m, float *v, size_t n, float beta1,
                               float beta2, float eps, float step, float sbc2, float decay) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    float gi = g[i];
    g[i] = 0.0f;
    float mi = beta1 * m[i] + (1.0f - beta1) * gi;
    float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * decay - step * mi / (sqrtf(vi) / sbc2 + eps);
  }
}

extern "C" void ops_cuda_adamw(float *p, float *g, float *m, float *v, size_t n, float lr,
                               float beta1, float beta2, float eps, float wd, int t) {
  if (!n)
    return;
  /* the scalars exactly as the CPU backend computes them */
  float bc1 = 1.0f - powf(beta1, (float)t), bc2 = 1.0f - powf(beta2, (float)t);
  float step = lr / bc1, sbc2 = sqrtf(bc2), decay = 1.0f - lr * wd;
  k_adamw<<<grid_for(n, 256), 256>>>(p, g, m, v, n, beta1, beta2, eps, step, sbc2, decay);
  launched("adamw");
}

/* Sum of squares: one block per chunk of SUMSQ_CHUNK elements (the CPU's
 * chunking), double partials; the chunks are added on the host in order. */
#define SUMSQ_CHUNK 16384
__global__ static void k_sumsq(double *part, const float *x, size_t n) {
  __shared__ double red[WARP];
  size_t i0 = (size_t)blockIdx.x * SUMSQ_CHUNK;
  size_t i1 = i0 + SUMSQ_CHUNK < n ? i0 + SUMSQ_CHUNK : n;
  double s = 0.0;
  for (size_t i = i0 + threadIdx.x; i < i1; i += blockDim.x)
    s += (double)x[i] * x[i];
  s = block_sum_d(s, red);
  if (threadIdx.x == 0)
    part[blockIdx.x] = s;
}

extern "C" double ops_cuda_sumsq(const float *x, size_t n) {
  size_t nc = (n + SUMSQ_CHUNK - 1) / SUMSQ_CHUNK;
  if (nc == 0)
    return 0.0;
  if (nc > 0x7fffffffu) {
    fprintf(stderr, "dfpo: fatal: sumsq over %zu floats is more than one launch can cover\n", n);
    abort();
  }
  double *part = (double *)scratch_get(nc * sizeof(double));
  k_sumsq<<<(unsigned)nc, 256>>>(part, x, n);
  launched("sumsq");
  std::vector<double> host(nc);
  CK(cudaMemcpy(host.data(), part, nc * sizeof(double), cudaMemcpyDeviceToHost));
  double s = 0.0;
  for (size_t c = 0; c < nc; c++)
    s += host[c];
  return s;
}

/* ---------------------------------------------------------- sampling */

/* One block per row, following ops_sample_row (ops_cpu.c) step for step so
 * that the same logits and uniform give the same token: the first maximum,
 * the k-th largest finite value (a radix select over the values' ordered
 * bit patterns: the largest key with at least k values at or above it),
 * the nucleus (the same way: the largest probability pl whose mass at or
 * above it reaches top_p times the total, then the ties of pl in id order
 * until the mass reaches it), and the draw (the first token whose
 * cumulative mass in id order exceeds u times the total). Sums are in
 * double over contiguous chunks of the row, one per thread, the chunks then
 * added in order by one thread, so the cumulative mass the draw walks is the
 * CPU's up to the rounding of a different grouping: where the sums are
 * exact (ties, flat rows, probabilities on a common grid) the tokens are the
 * CPU's; elsewhere they can differ only when u times the total falls within
 * that rounding of a boundary of the cumulative distribution. */
#define SAMPLE_THREADS 256

/* a float's bits as an unsigned key in the floats' order */
__device__ static unsigned fkey(float x) {
  unsigned b;
  memcpy(&b, &x, sizeof b);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
__device__ static float fkey_value(unsigned k) {
  unsigned b = (k & 0x80000000u) ? (k & 0x7fffffffu) : ~k;
  float x;
  memcpy(&x, &b, sizeof x);
  return x;
}

/* Shared-memory tree reductions over a block of a power-of-two size, in an
 * order fixed by the block size; every thread gets the result. */
template <class T> __device__ static T tree_sum(T v, T *sh) {
  int t = threadIdx.x;
  __syncthreads(); /* sh may still be read from a previous call */
  sh[t] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (t < s)
      sh[t] += sh[t + s];
    __syncthreads();
  }
  return sh[0];
}
__device__ static int tree_min_int(int v, int *sh) {
  int t = threadIdx.x;
  __syncthreads();
  sh[t] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (t < s && sh[t + s] < sh[t])
      sh[t] = sh[t + s];
    __syncthreads();
  }
  return sh[0];
}
/* the largest value and its first index (-1 when none is above -inf) */
__device__ static void tree_argmax(float *v, int *i, float *shv, int *shi) {
  int t = threadIdx.x;
  __syncthreads();
  shv[t] = *v;
  shi[t] = *i;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (t < s) {
      float a = shv[t], b = shv[t + s];
      int ia = shi[t], ib = shi[t + s];
      if (ib >= 0 && (ia < 0 || b > a || (b == a && ib < ia))) {
        shv[t] = b;
        shi[t] = ib;
      }
    }
    __syncthreads();
  }
  *v = shv[0];
  *i = shi[0];
}
/* The exclusive prefix of the threads' values in thread order, added one
 * after another by thread 0 (as a sequential sum over the chunks); *total
 * (shared) gets the sum of all. */
__device__ static double chunk_prefix(double v, double *sh, double *total) {
  int t = threadIdx.x;
  __syncthreads();
  sh[t] = v;
  __syncthreads();
  if (t == 0) {
    double c = 0.0;
    for (int j = 0; j < (int)blockDim.x; j++) {
      double x = sh[j];
      sh[j] = c;
      c += x;
    }
    *total = c;
  }
  __syncthreads();
  return sh[t];
}

__global__ static void k_sample(int *tok, float *logp, float *zall, const unsigned char *allow,
                                const double *u, int V, float temperature, int top_k, float top_p,
                                int ban) {
  __shared__ double shd[SAMPLE_THREADS];
  __shared__ int shi[SAMPLE_THREADS];
  __shared__ float shf[SAMPLE_THREADS];
  __shared__ double total;
  int b = blockIdx.x, t = threadIdx.x, nt = blockDim.x;
  if (u[b] < 0.0) {
    if (t == 0)
      tok[b] = -1;
    return;
  }
  float *z = zall + (size_t)b * V;
  const unsigned char *al = allow ? allow + (size_t)b * V : NULL;
  int greedy = temperature <= 0.0f;
  /* temperature, allowed set, ban; the first maximum */
  float mx = -INFINITY;
  int arg = -1;
  for (int i = t; i < V; i += nt) {
    float x = z[i];
    if (!greedy && temperature != 1.0f)
      x /= temperature;
    if ((al && !al[i]) || i == ban)
      x = -INFINITY;
    z[i] = x;
    if (x > mx) {
      mx = x;
      arg = i;
    }
  }
  tree_argmax(&mx, &arg, shf, shi);
  if (arg < 0) {
    if (t == 0)
      tok[b] = -1;
    return;
  }
  /* top-k: the k-th largest finite value */
  float kth = -INFINITY;
  if (top_k > 0 && top_k < V) {
    int c = 0;
    for (int i = t; i < V; i += nt)
      c += z[i] > -INFINITY;
    if (tree_sum(c, shi) >= top_k) {
      unsigned res = 0;
      for (int bit = 31; bit >= 0; bit--) {
        unsigned cand = res | (1u << bit);
        c = 0;
        for (int i = t; i < V; i += nt)
          c += z[i] > -INFINITY && fkey(z[i]) >= cand;
        if (tree_sum(c, shi) >= top_k)
          res = cand;
      }
      kth = fkey_value(res);
    }
  }
  /* unnormalised probabilities over contiguous chunks */
  int cs = (V + nt - 1) / nt, i0 = t * cs < V ? t * cs : V, i1 = i0 + cs < V ? i0 + cs : V;
  double s = 0.0;
  for (int i = i0; i < i1; i++) {
    float x = z[i];
    float p = x > -INFINITY && !(x < kth) ? expf(x - mx) : 0.0f;
    z[i] = p;
    s += p;
  }
  __syncthreads(); /* every z[i] is written before other threads read it */
  double pre = chunk_prefix(s, shd, &total);
  double sum = total;
  if (top_p < 1.0f && top_p > 0.0f) {
    float eps = (float)((1.0 - top_p) / (2.0 * V) * sum);
    double target = top_p * sum;
    /* pl: the largest candidate probability whose mass at or above it
     * reaches the target (0: none does, by rounding: take every candidate) */
    unsigned res = 0;
    for (int bit = 31; bit >= 0; bit--) {
      unsigned cand = res | (1u << bit);
      double m = 0.0;
      for (int i = i0; i < i1; i++)
        if (z[i] > 0.0f && z[i] >= eps && fkey(z[i]) >= cand)
          m += z[i];
      if (tree_sum(m, shd) >= target)
        res = cand;
    }
    float pl;
    if (res) {
      pl = fkey_value(res);
    } else {
      float lo = INFINITY;
      for (int i = i0; i < i1; i++)
        if (z[i] > 0.0f && z[i] >= eps && z[i] < lo)
          lo = z[i];
      int who = lo < INFINITY ? t : -1;
      float neg = -lo;
      tree_argmax(&neg, &who, shf, shi); /* the smallest candidate, as the largest -p */
      pl = -neg;
    }
    /* the mass above pl, the ties of pl, and how many of them (in id
     * order) the nucleus takes */
    double above = 0.0;
    int ties = 0;
    for (int i = i0; i < i1; i++)
      if (z[i] > pl)
        above += z[i];
      else if (z[i] == pl)
        ties++;
    above = tree_sum(above, shd);
    int before = (int)(chunk_prefix((double)ties, shd, &total) + 0.5);
    __shared__ int need;
    if (t == 0) {
      int all = (int)(total + 0.5), m = all;
      double cum = above;
      if (!res)
        m = all;
      else
        for (int j = 1; j <= all; j++) {
          cum += pl;
          if (cum >= target) {
            m = j;
            break;
          }
        }
      need = m;
    }
    __syncthreads();
    /* il: the need-th tie in id order */
    int il = INT_MAX;
    if (need > before && need <= before + ties) {
      int k = before;
      for (int i = i0; i < i1; i++)
        if (z[i] == pl && ++k == need) {
          il = i;
          break;
        }
    }
    il = tree_min_int(il, shi);
    s = 0.0;
    for (int i = i0; i < i1; i++) {
      if (z[i] > pl || (z[i] == pl && i <= il))
        s += z[i];
      else
        z[i] = 0.0f;
    }
    __syncthreads();
    pre = chunk_prefix(s, shd, &total);
    sum = total;
  }
  int pick = INT_MAX;
  if (greedy) {
    pick = arg;
  } else {
    double target = u[b] * sum, cum = pre;
    int last = -1;
    for (int i = i0; i < i1; i++) {
      if (z[i] <= 0.0f)
        continue;
      cum += z[i];
      last = i;
      if (cum > target) {
        pick = i;
        break;
      }
    }
    pick = tree_min_int(pick, shi);
    if (pick == INT_MAX) /* rounding left the target unreached: the last token */
      pick = -tree_min_int(last >= 0 ? -last : INT_MAX, shi);
  }
  if (t == 0) {
    tok[b] = pick;
    logp[b] = (float)log((double)z[pick] / sum);
  }
}

extern "C" void ops_cuda_sample(int *tok, float *logp, float *z, const unsigned char *allow,
                                const double *u, int B, int V, float temperature, int top_k,
                                float top_p, int ban) {
  if (B <= 0 || V <= 0)
    return;
  k_sample<<<(unsigned)B, SAMPLE_THREADS>>>(tok, logp, z, allow, u, V, temperature, top_k, top_p,
                                            ban);
  launched("sample");
}

/* ------------------------------------------------ T5's ops (ops.h) */

__global__ static void k_mul(float *out, const float *a, const float *b, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x)
    out[i] = a[i] * b[i];
}

extern "C" void ops_cuda_mul(float *out, const float *a, const float *b, size_t n) {
  if (!n)
    return;
  k_mul<<<grid_for(n, 256), 256>>>(out, a, b, n);
  launched("mul");
}

/* da = dout b, db = dout a; every input read before either output is
 * written (an output may alias dout, as on the CPU) */
__global__ static void k_mul_bwd(float *da, float *db, const float *dout, const float *a,
                                 const float *b, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    float g = dout[i], av = a[i], bv = b[i];
    if (da)
      da[i] = g * bv;
    if (db)
      db[i] = g * av;
  }
}

extern "C" void ops_cuda_mul_bwd(float *da, float *db, const float *dout, const float *a,
                                 const float *b, size_t n) {
  if (!n || (!da && !db))
    return;
  k_mul_bwd<<<grid_for(n, 256), 256>>>(da, db, dout, a, b, n);
  launched("mul_bwd");
}

/* act_fwd's derivative times dout, the CPU's expressions (dinp may alias
 * dout: read before write) */
__global__ static void k_act_bwd(float *dinp, const float *inp, const float *dout, size_t n,
                                 int kind) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    float x = inp[i], d = dout[i];
    if (kind == OPS_ACT_GELU_ERF) {
      float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
      float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
      dinp[i] = (cdf + x * pdf) * d;
    } else if (kind == OPS_ACT_TANH) {
      float y = tanhf(x);
      dinp[i] = (1.0f - y * y) * d;
    } else {
      dinp[i] = x > 0.0f ? d : 0.0f;
    }
  }
}

extern "C" void ops_cuda_act_bwd(float *dinp, const float *inp, const float *dout, size_t n,
                                 int kind) {
  if (!n)
    return;
  k_act_bwd<<<grid_for(n, 256), 256>>>(dinp, inp, dout, n, kind);
  launched("act_bwd");
}

/* RMS norm: one block per row; the sums of squares (and the backward's
 * sum of w dy x) in double as the CPU, partial sums per thread added by
 * block_sum_d. Threads per block: the row's width rounded up to a warp,
 * at most 256. */
static unsigned norm_threads(int C) {
  unsigned t = ((unsigned)C + WARP - 1) / WARP * WARP;
  return t > 256 ? 256 : t;
}

/* out may alias inp: every thread reads its x[c] for the sum before the
 * block_sum_d barrier and writes only the o[c] it reads after it */
__global__ static void k_rmsnorm_fwd(float *out, const float *inp, const float *w, int C,
                                     float eps) {
  __shared__ double red[WARP];
  int n = blockIdx.x;
  const float *x = inp + (size_t)n * C;
  float *o = out + (size_t)n * C;
  double ss = 0.0;
  for (int c = threadIdx.x; c < C; c += blockDim.x)
    ss += (double)x[c] * x[c];
  ss = block_sum_d(ss, red);
  float r = 1.0f / sqrtf((float)(ss / C) + eps);
  for (int c = threadIdx.x; c < C; c += blockDim.x)
    o[c] = w[c] * (x[c] * r);
}

extern "C" void ops_cuda_rmsnorm_fwd(float *out, const float *inp, const float *w, int N, int C,
                                     float eps) {
  if (N <= 0 || C <= 0)
    return;
  k_rmsnorm_fwd<<<(unsigned)N, norm_threads(C)>>>(out, inp, w, C, eps);
  launched("rmsnorm_fwd");
}

/* dinp += r w dy - x r^3 mean(w dy x) per row; the row's r saved for the
 * column sums of dw */
__global__ static void k_rmsnorm_bwd_inp(float *dinp, float *rs, const float *dout,
                                         const float *inp, const float *w, int C, float eps) {
  __shared__ double red[WARP];
  int n = blockIdx.x;
  const float *x = inp + (size_t)n * C, *d = dout + (size_t)n * C;
  double ss = 0.0, g = 0.0;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    ss += (double)x[c] * x[c];
    g += (double)w[c] * d[c] * x[c];
  }
  ss = block_sum_d(ss, red);
  g = block_sum_d(g, red);
  float r = 1.0f / sqrtf((float)(ss / C) + eps);
  float k = (float)(g / C) * r * r * r;
  float *di = dinp + (size_t)n * C;
  for (int c = threadIdx.x; c < C; c += blockDim.x)
    di[c] += r * w[c] * d[c] - k * x[c];
  if (threadIdx.x == 0)
    rs[n] = r;
}

/* dw[c] += sum_n dy[n,c] x[n,c] r[n]: the row stripes of k_colsum_add */
__global__ static void k_rmsnorm_bwd_w(float *dw, const float *dout, const float *inp,
                                       const float *rs, int N, int C) {
  __shared__ float part[CS_Y][WARP + 1];
  int c = blockIdx.x * WARP + threadIdx.x;
  float s = 0.0f;
  if (c < C)
    for (int n = threadIdx.y; n < N; n += CS_Y) {
      size_t i = (size_t)n * C + c;
      s += dout[i] * inp[i] * rs[n];
    }
  part[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float t = part[0][threadIdx.x];
    for (int y = 1; y < CS_Y; y++)
      t += part[y][threadIdx.x];
    dw[c] += t;
  }
}

extern "C" void ops_cuda_rmsnorm_bwd(float *dinp, float *dw, const float *dout, const float *inp,
                                     const float *w, int N, int C, float eps) {
  if (N <= 0 || C <= 0)
    return;
  float *rs = (float *)scratch_get((size_t)N * sizeof(float));
  k_rmsnorm_bwd_inp<<<(unsigned)N, norm_threads(C)>>>(dinp, rs, dout, inp, w, C, eps);
  launched("rmsnorm_bwd dinp");
  if (!dw)
    return;
  dim3 block(WARP, CS_Y);
  k_rmsnorm_bwd_w<<<(C + WARP - 1) / WARP, block>>>(dw, dout, inp, rs, N, C);
  launched("rmsnorm_bwd dw");
}

/* T5's attention (attention_rel_fwd/bwd in ops.h): one warp per query row
 * (b, h, i), rows numbered ((b NH + h) Tq + i), as k_attention_fwd. Query
 * i of row b sees the keys rel_j0..rel_j1 (none when j0 > j1), exactly the
 * CPU's range. */
__device__ static inline int rel_j0(const int *kstart, int b) {
  return kstart ? kstart[b] : 0;
}
__device__ static inline int rel_j1(int causal, int i, int Tk) {
  return causal && i < Tk - 1 ? i : Tk - 1;
}

/* The softmax of one query row over keys j0..j1 into p[] (Tk floats, this
 * warp's): lanes take the keys j = lane mod 32 for the scores q.k + bias,
 * the maximum and the sum by butterflies; ends with __syncwarp, so every
 * lane then sees all of p[j0..j1]. */
__device__ static void rel_softmax(float *p, const float *qi, const float *kb, int ldkv,
                                   const float *brow, int j0, int j1, int HS) {
  int lane = threadIdx.x % WARP;
  float mx = -INFINITY;
  for (int j = j0 + lane; j <= j1; j += WARP) {
    const float *kj = kb + (size_t)j * ldkv;
    float s = 0.0f;
    for (int d = 0; d < HS; d++)
      s += qi[d] * kj[d];
    if (brow)
      s += brow[j];
    p[j] = s;
    mx = fmaxf(mx, s);
  }
  mx = warp_max(mx);
  float sum = 0.0f;
  for (int j = j0 + lane; j <= j1; j += WARP) { /* the keys this lane wrote */
    float e = expf(p[j] - mx);
    p[j] = e;
    sum += e;
  }
  float inv = 1.0f / warp_sum(sum);
  for (int j = j0 + lane; j <= j1; j += WARP)
    p[j] *= inv;
  __syncwarp();
}

/* Scores in shared memory (ROWS_PER_BLOCK rows of Tk floats) up to
 * REL_SHARED_MAX keys, past it in the global scratch (Tk floats a row). */
#define REL_SHARED_MAX 1024

__global__ static void k_attention_rel_fwd(float *out, const float *q, int ldq, const float *k,
                                           const float *v, int ldkv, const float *bias,
                                           const int *kstart, int causal, int B, int Tq, int Tk,
                                           int NH, int HS, float *gsc) {
  extern __shared__ float shsc[];
  int lane = threadIdx.x % WARP, wib = threadIdx.x / WARP;
  long long row = (long long)blockIdx.x * ROWS_PER_BLOCK + wib;
  if (row >= (long long)B * NH * Tq)
    return;
  int i = (int)(row % Tq), h = (int)((row / Tq) % NH), b = (int)(row / ((long long)Tq * NH));
  size_t C = (size_t)NH * HS;
  float *o = out + ((size_t)b * Tq + i) * C + (size_t)h * HS;
  int j0 = rel_j0(kstart, b), j1 = rel_j1(causal, i, Tk);
  if (j0 > j1) { /* no key: 0, as the CPU */
    for (int d = lane; d < HS; d += WARP)
      o[d] = 0.0f;
    return;
  }
  float *p = gsc ? gsc + (size_t)row * Tk : shsc + (size_t)wib * Tk;
  const float *qi = q + ((size_t)b * Tq + i) * ldq + (size_t)h * HS;
  rel_softmax(p, qi, k + (size_t)b * Tk * ldkv + (size_t)h * HS, ldkv,
              bias ? bias + ((size_t)h * Tq + i) * Tk : NULL, j0, j1, HS);
  const float *vb = v + (size_t)b * Tk * ldkv + (size_t)h * HS;
  for (int d = lane; d < HS; d += WARP) {
    float s = 0.0f;
    for (int j = j0; j <= j1; j++)
      s += p[j] * vb[(size_t)j * ldkv + d];
    o[d] = s;
  }
}

extern "C" void ops_cuda_attention_rel_fwd(float *out, const float *q, int ldq, const float *k,
                                           const float *v, int ldkv, const float *bias,
                                           const int *kstart, int causal, int B, int Tq, int Tk,
                                           int NH, int HS) {
  if (B <= 0 || Tq <= 0 || NH <= 0 || HS <= 0)
    return;
  long long rows = (long long)B * NH * Tq;
  if (Tk <= 0) { /* no keys at all: every query gets 0 */
    ops_cuda_zero(out, (size_t)rows * HS * sizeof(float));
    return;
  }
  float *gsc = NULL;
  size_t shared = (size_t)ROWS_PER_BLOCK * Tk * sizeof(float);
  if (Tk > REL_SHARED_MAX) {
    gsc = (float *)scratch_get((size_t)rows * Tk * sizeof(float));
    shared = 0;
  }
  k_attention_rel_fwd<<<warp_rows_grid(rows), ROWS_PER_BLOCK * WARP, shared>>>(
      out, q, ldq, k, v, ldkv, bias, kstart, causal, B, Tq, Tk, NH, HS, gsc);
  launched("attention_rel_fwd");
}

/* Backward, pass 1 (warp per query row): the probabilities p[row, j] again
 * (as the forward) and ds[row, j] = p (dout_i . v_j - sum_j p dout_i . v_j)
 * over the visible keys; both [rows, Tk] in the scratch, untouched outside
 * the visible keys (the later passes read only those). */
__global__ static void k_attention_rel_bwd_pre(float *P, float *DS, const float *dout,
                                               const float *q, int ldq, const float *k,
                                               const float *v, int ldkv, const float *bias,
                                               const int *kstart, int causal, int B, int Tq, int Tk,
                                               int NH, int HS) {
  int lane = threadIdx.x % WARP;
  long long row = (long long)blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / WARP;
  if (row >= (long long)B * NH * Tq)
    return;
  int i = (int)(row % Tq), h = (int)((row / Tq) % NH), b = (int)(row / ((long long)Tq * NH));
  int j0 = rel_j0(kstart, b), j1 = rel_j1(causal, i, Tk);
  if (j0 > j1)
    return;
  size_t C = (size_t)NH * HS;
  float *p = P + (size_t)row * Tk, *ds = DS + (size_t)row * Tk;
  const float *qi = q + ((size_t)b * Tq + i) * ldq + (size_t)h * HS;
  const float *d = dout + ((size_t)b * Tq + i) * C + (size_t)h * HS;
  rel_softmax(p, qi, k + (size_t)b * Tk * ldkv + (size_t)h * HS, ldkv,
              bias ? bias + ((size_t)h * Tq + i) * Tk : NULL, j0, j1, HS);
  const float *vb = v + (size_t)b * Tk * ldkv + (size_t)h * HS;
  float dot = 0.0f;
  for (int j = j0 + lane; j <= j1; j += WARP) {
    const float *vj = vb + (size_t)j * ldkv;
    float s = 0.0f;
    for (int e = 0; e < HS; e++)
      s += d[e] * vj[e];
    ds[j] = s;
    dot += p[j] * s;
  }
  dot = warp_sum(dot);
  for (int j = j0 + lane; j <= j1; j += WARP) /* the keys this lane wrote */
    ds[j] = p[j] * (ds[j] - dot);
}

/* Pass 2 (warp per query row): dq_i += sum_j ds[i, j] k_j, j ascending
 * (added into dq one term after another, as the CPU). */
__global__ static void k_attention_rel_bwd_q(float *dq, const float *DS, const float *k, int ldq,
                                             int ldkv, const int *kstart, int causal, int B, int Tq,
                                             int Tk, int NH, int HS) {
  int lane = threadIdx.x % WARP;
  long long row = (long long)blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / WARP;
  if (row >= (long long)B * NH * Tq)
    return;
  int i = (int)(row % Tq), h = (int)((row / Tq) % NH), b = (int)(row / ((long long)Tq * NH));
  int j0 = rel_j0(kstart, b), j1 = rel_j1(causal, i, Tk);
  if (j0 > j1)
    return;
  const float *ds = DS + (size_t)row * Tk;
  const float *kb = k + (size_t)b * Tk * ldkv + (size_t)h * HS;
  float *dqi = dq + ((size_t)b * Tq + i) * ldq + (size_t)h * HS;
  for (int e = lane; e < HS; e += WARP) {
    float a = dqi[e];
    for (int j = j0; j <= j1; j++)
      a += ds[j] * kb[(size_t)j * ldkv + e];
    dqi[e] = a;
  }
}

/* Pass 3 (warp per key row (b, h, j), rows ((b NH + h) Tk + j)): over the
 * queries i that see key j, ascending: dk_j += ds[i, j] q_i, dv_j += p[i,
 * j] dout_i. A key left of kstart[b] is seen by none. */
__global__ static void k_attention_rel_bwd_kv(float *dk, float *dv, const float *P, const float *DS,
                                              const float *dout, const float *q, int ldq, int ldkv,
                                              const int *kstart, int causal, int B, int Tq, int Tk,
                                              int NH, int HS) {
  int lane = threadIdx.x % WARP;
  long long row = (long long)blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / WARP;
  if (row >= (long long)B * NH * Tk)
    return;
  int j = (int)(row % Tk), h = (int)((row / Tk) % NH), b = (int)(row / ((long long)Tk * NH));
  if (j < rel_j0(kstart, b))
    return;
  size_t C = (size_t)NH * HS;
  size_t head = ((size_t)b * NH + h) * Tq; /* the first query row of (b, h) */
  size_t ko = ((size_t)b * Tk + j) * ldkv + (size_t)h * HS;
  float *dkj = dk + ko, *dvj = dv + ko;
  /* query i sees key j iff j <= rel_j1(causal, i, Tk): every i without
   * causality, else i >= j or i >= Tk - 1, which is i >= j since j <= Tk - 1 */
  int i0 = causal ? j : 0;
  for (int e = lane; e < HS; e += WARP) {
    float ak = dkj[e], av = dvj[e];
    for (int i = i0; i < Tq; i++) {
      size_t at = (head + i) * Tk + j;
      ak += DS[at] * q[((size_t)b * Tq + i) * ldq + (size_t)h * HS + e];
      av += P[at] * dout[((size_t)b * Tq + i) * C + (size_t)h * HS + e];
    }
    dkj[e] = ak;
    dvj[e] = av;
  }
}

/* Pass 4: dbias[h, i, j] += ds[b, h, i, j] for b ascending over the rows
 * whose query i sees key j (the CPU adds them in that order); one thread
 * per entry, j fastest. */
__global__ static void k_attention_rel_bwd_bias(float *dbias, const float *DS, const int *kstart,
                                                int causal, int B, int Tq, int Tk, int NH) {
  size_t total = (size_t)NH * Tq * Tk;
  for (size_t x = blockIdx.x * (size_t)blockDim.x + threadIdx.x; x < total;
       x += (size_t)gridDim.x * blockDim.x) {
    int j = (int)(x % Tk), i = (int)((x / Tk) % Tq), h = (int)(x / ((size_t)Tk * Tq));
    if (j > rel_j1(causal, i, Tk))
      continue;
    float a = dbias[x];
    for (int b = 0; b < B; b++)
      if (j >= rel_j0(kstart, b))
        a += DS[(((size_t)b * NH + h) * Tq + i) * Tk + j];
    dbias[x] = a;
  }
}

extern "C" void ops_cuda_attention_rel_bwd(float *dq, float *dk, float *dv, float *dbias,
                                           const float *dout, const float *q, int ldq,
                                           const float *k, const float *v, int ldkv,
                                           const float *bias, const int *kstart, int causal, int B,
                                           int Tq, int Tk, int NH, int HS) {
  if (B <= 0 || Tq <= 0 || Tk <= 0 || NH <= 0 || HS <= 0)
    return;
  long long rows = (long long)B * NH * Tq, krows = (long long)B * NH * Tk;
  size_t each = (size_t)rows * Tk;
  float *P = (float *)scratch_get(2 * each * sizeof(float)), *DS = P + each;
  unsigned threads = ROWS_PER_BLOCK * WARP;
  k_attention_rel_bwd_pre<<<warp_rows_grid(rows), threads>>>(P, DS, dout, q, ldq, k, v, ldkv, bias,
                                                             kstart, causal, B, Tq, Tk, NH, HS);
  launched("attention_rel_bwd pre");
  k_attention_rel_bwd_q<<<warp_rows_grid(rows), threads>>>(dq, DS, k, ldq, ldkv, kstart, causal, B,
                                                           Tq, Tk, NH, HS);
  launched("attention_rel_bwd q");
  k_attention_rel_bwd_kv<<<warp_rows_grid(krows), threads>>>(dk, dv, P, DS, dout, q, ldq, ldkv,
                                                             kstart, causal, B, Tq, Tk, NH, HS);
  launched("attention_rel_bwd kv");
  if (dbias) {
    size_t nb = (size_t)NH * Tq * Tk;
    k_attention_rel_bwd_bias<<<grid_for(nb, 256), 256>>>(dbias, DS, kstart, causal, B, Tq, Tk, NH);
    launched("attention_rel_bwd bias");
  }
}

/* ------------------------------- the rotary decoders' ops (ops.h) */

/* One thread per (row n, pair i): the angle pos[n] base^(-2i/rot) in
 * double and its cosine and sine rounded to float, as the CPU, then the
 * pair (a, b) of every head rotated by it (sgn -1: rotated back). */
__global__ static void k_rope(float *x, int ld, const int *pos, int N, int nh, int HS, int rot,
                              int interleaved, float base, float sgn) {
  int pairs = rot / 2;
  size_t total = (size_t)N * pairs;
  for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < total;
       t += (size_t)gridDim.x * blockDim.x) {
    int n = (int)(t / pairs), i = (int)(t % pairs);
    double a = (double)pos[n] * pow((double)base, -2.0 * i / rot);
    float cs = (float)cos(a), sn = sgn * (float)sin(a);
    for (int h = 0; h < nh; h++) {
      float *r = x + (size_t)n * ld + (size_t)h * HS;
      float *pa = interleaved ? r + 2 * i : r + i,
            *pb = interleaved ? r + 2 * i + 1 : r + i + pairs;
      float va = *pa, vb = *pb;
      *pa = va * cs - vb * sn;
      *pb = vb * cs + va * sn;
    }
  }
}

static void rope_launch(float *x, int ld, const int *pos, int N, int nh, int HS, int rot,
                        int interleaved, float base, float sgn, const char *what) {
  int pairs = rot / 2;
  if (N <= 0 || nh <= 0 || pairs < 1)
    return;
  size_t total = (size_t)N * pairs;
  k_rope<<<grid_for(total, 128), 128>>>(x, ld, pos, N, nh, HS, rot, interleaved, base, sgn);
  launched(what);
}

extern "C" void ops_cuda_rope_fwd(float *x, int ld, const int *pos, int N, int nh, int HS, int rot,
                                  int interleaved, float base) {
  rope_launch(x, ld, pos, N, nh, HS, rot, interleaved, base, 1.0f, "rope_fwd");
}

extern "C" void ops_cuda_rope_bwd(float *dx, int ld, const int *pos, int N, int nh, int HS, int rot,
                                  int interleaved, float base) {
  rope_launch(dx, ld, pos, N, nh, HS, rot, interleaved, base, -1.0f, "rope_bwd");
}

/* one thread per (n, f) of out[N, F] */
__global__ static void k_swiglu_fwd(float *out, const float *gu, size_t N, size_t F) {
  size_t total = N * F;
  for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < total;
       t += (size_t)gridDim.x * blockDim.x) {
    size_t n = t / F, f = t % F;
    const float *g = gu + n * 2 * F;
    float gf = g[f];
    out[t] = gf / (1.0f + expf(-gf)) * g[F + f];
  }
}

__global__ static void k_swiglu_bwd(float *dgu, const float *gu, const float *dout, size_t N,
                                    size_t F) {
  size_t total = N * F;
  for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < total;
       t += (size_t)gridDim.x * blockDim.x) {
    size_t n = t / F, f = t % F;
    const float *g = gu + n * 2 * F;
    float *dg = dgu + n * 2 * F;
    float gf = g[f], uf = g[F + f], d = dout[t];
    float sg = 1.0f / (1.0f + expf(-gf));
    dg[f] = d * uf * sg * (1.0f + gf * (1.0f - sg));
    dg[F + f] = d * gf * sg;
  }
}

extern "C" void ops_cuda_swiglu_fwd(float *out, const float *gu, int N, int F) {
  if (N <= 0 || F <= 0)
    return;
  k_swiglu_fwd<<<grid_for((size_t)N * F, 256), 256>>>(out, gu, (size_t)N, (size_t)F);
  launched("swiglu_fwd");
}

extern "C" void ops_cuda_swiglu_bwd(float *dgu, const float *gu, const float *dout, int N, int F) {
  if (N <= 0 || F <= 0)
    return;
  k_swiglu_bwd<<<grid_for((size_t)N * F, 256), 256>>>(dgu, gu, dout, (size_t)N, (size_t)F);
  launched("swiglu_bwd");
}

/* One thread per output float of out[N, 3 NH HS]: the q part copied, key
 * and value head h from the input's head h / R. */
__global__ static void k_kv_repeat(float *out, const float *inp, size_t N, int NH, int NKV,
                                   int HS) {
  size_t CQ = (size_t)NH * HS, IK = (size_t)NKV * HS, W = 3 * CQ;
  size_t total = N * W;
  int R = NH / NKV;
  for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < total;
       t += (size_t)gridDim.x * blockDim.x) {
    size_t n = t / W, c = t % W, part = c / CQ, w = c % CQ;
    size_t src = part == 0 ? w : CQ + (part - 1) * IK + (w / HS) / R * HS + w % HS;
    out[t] = inp[n * (CQ + 2 * IK) + src];
  }
}

/* One thread per float of dinp[N, (NH + 2 NKV) HS]: the q part copied; a
 * key or value head's the sum of its R heads' in head order, as the CPU */
__global__ static void k_kv_repeat_bwd(float *dinp, const float *dout, size_t N, int NH, int NKV,
                                       int HS) {
  size_t CQ = (size_t)NH * HS, IK = (size_t)NKV * HS, W = CQ + 2 * IK;
  size_t total = N * W;
  int R = NH / NKV;
  for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < total;
       t += (size_t)gridDim.x * blockDim.x) {
    size_t n = t / W, c = t % W;
    const float *src = dout + n * 3 * CQ;
    if (c < CQ) {
      dinp[t] = src[c];
      continue;
    }
    size_t part = (c - CQ) / IK + 1, w = (c - CQ) % IK, g = w / HS, e = w % HS;
    float s = 0.0f;
    for (int r = 0; r < R; r++)
      s += src[part * CQ + (g * R + r) * HS + e];
    dinp[t] = s;
  }
}

extern "C" void ops_cuda_kv_repeat(float *out, const float *inp, int N, int NH, int NKV, int HS) {
  if (N <= 0 || NH <= 0 || NKV <= 0 || HS <= 0)
    return;
  size_t total = (size_t)N * 3 * NH * HS;
  k_kv_repeat<<<grid_for(total, 256), 256>>>(out, inp, (size_t)N, NH, NKV, HS);
  launched("kv_repeat");
}

extern "C" void ops_cuda_kv_repeat_bwd(float *dinp, const float *dout, int N, int NH, int NKV,
                                       int HS) {
  if (N <= 0 || NH <= 0 || NKV <= 0 || HS <= 0)
    return;
  size_t total = (size_t)N * (NH + 2 * NKV) * HS;
  k_kv_repeat_bwd<<<grid_for(total, 256), 256>>>(dinp, dout, (size_t)N, NH, NKV, HS);
  launched("kv_repeat_bwd");
}
