#include "emu.h"
#include "cublas_v2.h"
#include <cstdint>
thread_local dim3 threadIdx, blockIdx;
dim3 blockDim, gridDim;
thread_local int emu_lane, emu_warp;
double emu_shfl[32][32];
std::barrier<> *emu_warp_bar[32];
std::barrier<> *emu_block_bar;
void *emu_dyn_shared;

int emu_grid_stride(const char *name) {
  static const char *const names[] = {"k_fill_rows", "k_encoder_fwd",  "k_kv_write",
                                      "k_gelu_fwd",  "k_gelu_bwd",     "k_add",
                                      "k_scale",     "k_adamw",        "k_mul",
                                      "k_mul_bwd",   "k_act_bwd",      "k_attention_rel_bwd_bias",
                                      "k_rope",      "k_swiglu_fwd",   "k_swiglu_bwd",
                                      "k_kv_repeat", "k_kv_repeat_bwd"};
  for (const char *n : names)
    if (strcmp(n, name) == 0)
      return 1;
  return 0;
}

void emu_run(dim3 g, dim3 b, size_t sh, const std::function<void()> &fn) {
  blockDim = b;
  gridDim = g;
  unsigned nt = b.x * b.y * b.z;
  if (nt % 32 || nt > 1024) {
    fprintf(stderr, "emu: block of %u threads\n", nt);
    abort();
  }
  std::vector<char> dyn(sh + 16, (char)0xA5);
  emu_dyn_shared = dyn.data();
  for (unsigned bz = 0; bz < g.z; bz++)
    for (unsigned by = 0; by < g.y; by++)
      for (unsigned bx = 0; bx < g.x; bx++) {
        std::barrier<> block(nt);
        std::vector<std::barrier<> *> warps;
        for (unsigned w = 0; w < nt / 32; w++)
          warps.push_back(new std::barrier<>(32));
        for (unsigned w = 0; w < nt / 32; w++)
          emu_warp_bar[w] = warps[w];
        emu_block_bar = &block;
        std::vector<std::thread> th;
        for (unsigned t = 0; t < nt; t++)
          th.emplace_back([&, t]() {
            threadIdx = dim3(t % b.x, (t / b.x) % b.y, t / (b.x * b.y));
            blockIdx = dim3(bx, by, bz);
            emu_lane = t % 32;
            emu_warp = t / 32;
            fn();
            emu_warp_bar[emu_warp]->arrive_and_drop();
            emu_block_bar->arrive_and_drop();
          });
        for (auto &x : th)
          x.join();
        for (auto *w : warps)
          delete w;
      }
}

static int math_mode, bf16_inputs;
/* the product's inputs as the tensor cores see them: TF32 (10 mantissa
 * bits; to nearest, ties away) by the math mode, or bf16 (7; to nearest,
 * ties to even) in GemmEx's FAST_16BF */
static float tf32(float x) {
  uint32_t u;
  if (bf16_inputs) {
    memcpy(&u, &x, 4);
    u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
    memcpy(&x, &u, 4);
    return x;
  }
  if (math_mode != CUBLAS_TF32_TENSOR_OP_MATH)
    return x;
  memcpy(&u, &x, 4);
  u = (u + 0x1000u) & ~0x1FFFu;
  memcpy(&x, &u, 4);
  return x;
}
cublasStatus_t cublasCreate_v2(cublasHandle_t *h) {
  *h = (void *)1;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream_v2(cublasHandle_t, cudaStream_t) {
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetPointerMode_v2(cublasHandle_t, cublasPointerMode_t) {
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetAtomicsMode(cublasHandle_t, cublasAtomicsMode_t) {
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t m) {
  math_mode = m;
  return CUBLAS_STATUS_SUCCESS;
}
/* cuBLAS's definition (column-major): C = alpha op(A) op(B) + beta C, C m x n */
cublasStatus_t cublasSgemm_v2(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m,
                              int n, int k, const float *alpha, const float *A, int lda,
                              const float *B, int ldb, const float *beta, float *C, int ldc) {
  if (lda < (ta == CUBLAS_OP_N ? m : k) || ldb < (tb == CUBLAS_OP_N ? k : n) || ldc < m) {
    fprintf(stderr, "emu sgemm: bad leading dimension\n");
    abort();
  }
  for (int j = 0; j < n; j++)
    for (int i = 0; i < m; i++) {
      double s = 0;
      for (int l = 0; l < k; l++) {
        float a = ta == CUBLAS_OP_N ? A[i + (size_t)l * lda] : A[l + (size_t)i * lda];
        float bb = tb == CUBLAS_OP_N ? B[l + (size_t)j * ldb] : B[j + (size_t)l * ldb];
        s += (double)tf32(a) * tf32(bb);
      }
      float *c = &C[i + (size_t)j * ldc];
      *c = (float)(*alpha * s + (*beta != 0.0f ? *beta * *c : 0.0f));
    }
  return CUBLAS_STATUS_SUCCESS;
}
/* A column-major rows x cols 16-bit matrix (leading dimension ld) widened
 * to fp32, same layout. */
static std::vector<float> widen16(const void *p, cudaDataType t, int rows, int cols, int ld) {
  std::vector<float> out((size_t)ld * cols);
  const uint16_t *h = (const uint16_t *)p;
  for (size_t i = 0; i < out.size(); i++) {
    uint32_t u = 0;
    if (t == CUDA_R_16BF) {
      u = (uint32_t)h[i] << 16;
      memcpy(&out[i], &u, 4);
    } else { /* IEEE half, by its definition */
      unsigned e = (h[i] >> 10) & 0x1f, f = h[i] & 0x3ff;
      double v = e == 0    ? std::ldexp((double)f, -24)
                 : e == 31 ? (f ? NAN : INFINITY)
                           : std::ldexp(1.0 + f / 1024.0, (int)e - 15);
      out[i] = (float)((h[i] & 0x8000) ? -v : v);
    }
  }
  (void)rows;
  return out;
}

/* fp32 matrices (FAST_16BF or plain fp32 compute), or two bf16 or two fp16
 * matrices with fp32 compute into fp32 (widened exactly, summed in double) */
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                            int n, int k, const void *alpha, const void *A, cudaDataType at,
                            int lda, const void *B, cudaDataType bt, int ldb, const void *beta,
                            void *C, cudaDataType ct, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t) {
  if ((at == CUDA_R_16BF || at == CUDA_R_16F) && bt == at && ct == CUDA_R_32F &&
      compute == CUBLAS_COMPUTE_32F) {
    std::vector<float> a =
        widen16(A, at, ta == CUBLAS_OP_N ? m : k, ta == CUBLAS_OP_N ? k : m, lda);
    std::vector<float> b =
        widen16(B, bt, tb == CUBLAS_OP_N ? k : n, tb == CUBLAS_OP_N ? n : k, ldb);
    int saved = math_mode;
    math_mode = CUBLAS_DEFAULT_MATH;
    cublasStatus_t s = cublasSgemm_v2(h, ta, tb, m, n, k, (const float *)alpha, a.data(), lda,
                                      b.data(), ldb, (const float *)beta, (float *)C, ldc);
    math_mode = saved;
    return s;
  }
  if (at != CUDA_R_32F || bt != CUDA_R_32F || ct != CUDA_R_32F ||
      (compute != CUBLAS_COMPUTE_32F && compute != CUBLAS_COMPUTE_32F_FAST_16BF)) {
    fprintf(stderr, "emu GemmEx: unsupported types\n");
    abort();
  }
  int saved = math_mode;
  math_mode = CUBLAS_DEFAULT_MATH; /* GemmEx's compute type decides, not the math mode */
  bf16_inputs = compute == CUBLAS_COMPUTE_32F_FAST_16BF;
  cublasStatus_t s = cublasSgemm_v2(h, ta, tb, m, n, k, (const float *)alpha, (const float *)A, lda,
                                    (const float *)B, ldb, (const float *)beta, (float *)C, ldc);
  bf16_inputs = 0;
  math_mode = saved;
  return s;
}
/* the batched forms: each product of the pointer arrays in turn */
cublasStatus_t cublasSgemmBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb,
                                  int m, int n, int k, const float *alpha, const float *const A[],
                                  int lda, const float *const B[], int ldb, const float *beta,
                                  float *const C[], int ldc, int count) {
  for (int i = 0; i < count; i++)
    cublasSgemm_v2(h, ta, tb, m, n, k, alpha, A[i], lda, B[i], ldb, beta, C[i], ldc);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGemmBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb,
                                   int m, int n, int k, const void *alpha, const void *const A[],
                                   cudaDataType at, int lda, const void *const B[], cudaDataType bt,
                                   int ldb, const void *beta, void *const C[], cudaDataType ct,
                                   int ldc, int count, cublasComputeType_t compute,
                                   cublasGemmAlgo_t algo) {
  for (int i = 0; i < count; i++)
    cublasGemmEx(h, ta, tb, m, n, k, alpha, A[i], at, lda, B[i], bt, ldb, beta, C[i], ct, ldc,
                 compute, algo);
  return CUBLAS_STATUS_SUCCESS;
}
const char *cublasGetStatusString(cublasStatus_t) {
  return "emu";
}
const char *cublasGetStatusName(cublasStatus_t) {
  return "EMU";
}
