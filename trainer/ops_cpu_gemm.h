/* Internal to the CPU backend (ops_cpu.c): the AVX-512 matrix product and
 * the per-thread scratch buffers it and the decoding kernels share, and
 * the lane mask they all use.
 *
 * Prefix: ops_cpu_. Nothing here is owned by the caller: scratch buffers
 * belong to the calling thread and are freed when it ends. */
#ifndef DFPO_TRAINER_OPS_CPU_GEMM_H
#define DFPO_TRAINER_OPS_CPU_GEMM_H

#include <stddef.h>

/* Scratch slots of the calling thread: the decoding kernel's transposed
 * rows; the product's packed panels of A and of B, and the whole packed
 * smaller side it shares among its threads; the 16-bit product's widened
 * weight panel and its panel of outputs (matmul_fwd_w16). */
enum {
  OPS_CPU_SCRATCH_XT,
  OPS_CPU_SCRATCH_PACK_A,
  OPS_CPU_SCRATCH_PACK_B,
  OPS_CPU_SCRATCH_SHARED,
  OPS_CPU_SCRATCH_W16,
  OPS_CPU_SCRATCH_W16_OUT,
  OPS_CPU_SCRATCH_N
};

/* The mask of the first r of 16 lanes (r <= 0: none; r >= 16: all), for
 * the masked loads and stores at the ends of rows, as a plain integer
 * (__mmask16 takes it as it is). */
static inline unsigned ops_cpu_lanes16(int r) {
  return r >= 16 ? 0xFFFFu : r <= 0 ? 0u : (1u << r) - 1u;
}

/* A 64-byte aligned buffer of at least `floats` floats in slot `slot` of the
 * calling thread, kept from call to call (its contents are not); NULL when
 * it cannot grow. Owned by the thread: never free it. */
float *ops_cpu_scratch(int slot, size_t floats);

/* C[m, n] (row stride ldc) = first + sum_k A(m, k) B(k, n) for m < M,
 * n < N, where A(m, k) = A[m ars + k acs] and B(k, n) = B[k brs + n bcs]
 * (any transposition), and `first` is bias[n] when bias is given, else
 * beta C[m, n] (C is not read when beta is 0). Needs AVX-512F (the caller
 * checks); splits the work over the OpenMP threads by blocks of rows or of
 * columns, and sums every element in the same order (k in blocks of a size
 * fixed by K alone) whatever the thread count. Returns 0, or -1 when a
 * scratch buffer could not be had (C untouched: the caller falls back). */
int ops_cpu_gemm(int M, int N, int K, const float *A, size_t ars, size_t acs, const float *B,
                 size_t brs, size_t bcs, const float *bias, float beta, float *C, size_t ldc);

#endif
