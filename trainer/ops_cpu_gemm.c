/* The CPU backend's matrix product for AVX-512, in the way of the BLIS and
 * GotoBLAS papers: A and B are copied into panels (packing) that a register
 * kernel of 6 rows x 64 columns (24 registers of sums, one broadcast of A
 * per row and four loads of B per step of k) walks in order. Written here
 * so that the engine's speed does not depend on which kernels OpenBLAS may
 * pick: the machines this project runs on pin OpenBLAS to its AVX2 kernels
 * (OPENBLAS_CORETYPE=Haswell), which reach about half of what these do.
 *
 * Block sizes were chosen on the project's Zen 5 machine (one thread, the
 * 4096 x 768 x 3072 product of a 6-layer encoder's MLP): k in blocks of up
 * to 1024 (the C tile is loaded and stored once per block, which cost a
 * fifth of the time at 256), 24 rows of A per packed block, 1024 columns of
 * B per packed block. */
#include "trainer/ops_cpu_gemm.h"

#include <omp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  float *p[OPS_CPU_SCRATCH_N];
  size_t cap[OPS_CPU_SCRATCH_N]; /* floats */
} scratch_set;

static pthread_key_t scratch_key;
static int scratch_key_ok;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *v) {
  scratch_set *s = v;
  for (int i = 0; i < OPS_CPU_SCRATCH_N; i++)
    free(s->p[i]);
  free(s);
}
static void scratch_key_make(void) {
  scratch_key_ok = pthread_key_create(&scratch_key, scratch_free) == 0;
}

float *ops_cpu_scratch(int slot, size_t floats) {
  if (slot < 0 || slot >= OPS_CPU_SCRATCH_N)
    return NULL;
  pthread_once(&scratch_once, scratch_key_make);
  if (!scratch_key_ok)
    return NULL;
  scratch_set *s = pthread_getspecific(scratch_key);
  if (!s) {
    if (!(s = calloc(1, sizeof *s)))
      return NULL;
    if (pthread_setspecific(scratch_key, s) != 0) {
      free(s);
      return NULL;
    }
  }
  if (s->cap[slot] < floats) {
    if (floats > (SIZE_MAX - 15) / sizeof(float))
      return NULL;
    size_t cap = (floats + 15) & ~(size_t)15; /* whole cache lines */
    float *p = aligned_alloc(64, cap * sizeof(float));
    if (!p)
      return NULL;
    free(s->p[slot]);
    s->p[slot] = p;
    s->cap[slot] = cap;
  }
  return s->p[slot];
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define MR 6
#define NV 4 /* registers of 16 columns */
#define NR (16 * NV)
#define KC_MAX 1024
#define MC 24
#define NC 1024

/* c[i, j] (i < mr, j < nr; row stride ldc) = first + the MR x NR tile of
 * a (kc steps of MR) times b (kc steps of NR), where first is bias[j]
 * (bias given), beta c (beta not 0 and `init`), 0 (`init`), or c itself
 * (a later block of k). */
__attribute__((target("avx512f"))) static void kernel(int kc, const float *a, const float *b,
                                                      float *c, size_t ldc, int mr, int nr,
                                                      int init, float beta, const float *bias) {
  __m512 acc[MR][NV];
  for (int i = 0; i < MR; i++)
    for (int v = 0; v < NV; v++)
      acc[i][v] = _mm512_setzero_ps();
  for (int k = 0; k < kc; k++) {
    __m512 bv[NV];
    for (int v = 0; v < NV; v++)
      bv[v] = _mm512_load_ps(b + 16 * v);
    for (int i = 0; i < MR; i++) {
      __m512 av = _mm512_set1_ps(a[i]);
      for (int v = 0; v < NV; v++)
        acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
    }
    a += MR;
    b += NR;
  }
  __mmask16 mk[NV];
  for (int v = 0; v < NV; v++)
    mk[v] = (__mmask16)ops_cpu_lanes16(nr - 16 * v);
  for (int i = 0; i < mr; i++) {
    float *cr = c + (size_t)i * ldc;
    for (int v = 0; v < NV; v++) {
      __m512 c0;
      if (!init)
        c0 = _mm512_maskz_loadu_ps(mk[v], cr + 16 * v);
      else if (bias)
        c0 = _mm512_maskz_loadu_ps(mk[v], bias + 16 * v);
      else if (beta != 0.0f)
        c0 = _mm512_mul_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(mk[v], cr + 16 * v));
      else
        c0 = _mm512_setzero_ps();
      _mm512_mask_storeu_ps(cr + 16 * v, mk[v], _mm512_add_ps(c0, acc[i][v]));
    }
  }
}

/* One panel of A stored by rows (k contiguous): the mr (<= MR) rows from
 * a, ars apart, over kc values of k, into d[k][i], zero past row mr. A
 * transpose of 6 rows x 16 values of k at a time in registers: output
 * vector o holds elements 16 o .. 16 o + 15 of the panel, element e being
 * row e % 6 at k e / 6, taken from the pairs of rows (0, 1), (2, 3) and
 * (4, 5) by a two-source permute each and merged by row masks. The scalar
 * loop it replaces cost about 6% of an encoder's forward pass. */
__attribute__((target("avx512f"))) static void pack_a_rows(float *d, const float *a, size_t ars,
                                                           int mr, int kc) {
  int idx[MR][16];
  __mmask16 m23[MR], m45[MR];
  for (int o = 0; o < MR; o++) {
    m23[o] = m45[o] = 0;
    for (int j = 0; j < 16; j++) {
      int e = 16 * o + j, i = e % MR;
      idx[o][j] = e / MR + (i & 1 ? 16 : 0);
      if (i / 2 == 1)
        m23[o] |= (__mmask16)(1u << j);
      if (i / 2 == 2)
        m45[o] |= (__mmask16)(1u << j);
    }
  }
  __m512i iv[MR];
  for (int o = 0; o < MR; o++)
    iv[o] = _mm512_loadu_si512((const void *)idx[o]);
  int k = 0;
  for (; k + 16 <= kc; k += 16) {
    __m512 r[MR];
    for (int i = 0; i < MR; i++)
      r[i] = i < mr ? _mm512_loadu_ps(a + (size_t)i * ars + k) : _mm512_setzero_ps();
    float *o16 = d + (size_t)k * MR;
    for (int o = 0; o < MR; o++) {
      __m512 v = _mm512_permutex2var_ps(r[0], iv[o], r[1]);
      v = _mm512_mask_mov_ps(v, m23[o], _mm512_permutex2var_ps(r[2], iv[o], r[3]));
      v = _mm512_mask_mov_ps(v, m45[o], _mm512_permutex2var_ps(r[4], iv[o], r[5]));
      _mm512_storeu_ps(o16 + 16 * o, v);
    }
  }
  for (; k < kc; k++)
    for (int i = 0; i < MR; i++)
      d[(size_t)k * MR + i] = i < mr ? a[(size_t)i * ars + k] : 0.0f;
}

/* rows m0..m0+mc of A, k0..k0+kc, as panels of MR rows: d[p][k][i], zero
 * past the last row */
static void pack_a(float *d, const float *A, size_t ars, size_t acs, int m0, int mc, int k0,
                   int kc) {
  for (int p = 0; p < mc; p += MR, d += (size_t)MR * kc) {
    int mr = mc - p < MR ? mc - p : MR;
    if (ars == 1) { /* A(m, k) contiguous in m: MR values per k */
      for (int k = 0; k < kc; k++) {
        const float *s = A + (size_t)(m0 + p) + (size_t)(k0 + k) * acs;
        for (int i = 0; i < MR; i++)
          d[(size_t)k * MR + i] = i < mr ? s[i] : 0.0f;
      }
      continue;
    }
    if (acs == 1) { /* A(m, k) contiguous in k: the rows transposed */
      pack_a_rows(d, A + (size_t)(m0 + p) * ars + (size_t)k0, ars, mr, kc);
      continue;
    }
    for (int i = 0; i < MR; i++) {
      const float *s = A + (size_t)(m0 + p + (i < mr ? i : 0)) * ars + (size_t)k0 * acs;
      for (int k = 0; k < kc; k++)
        d[(size_t)k * MR + i] = i < mr ? s[(size_t)k * acs] : 0.0f;
    }
  }
}

/* columns n0..n0+nc of B, k0..k0+kc, as panels of NR columns: d[p][k][j],
 * zero past the last column */
static void pack_b(float *d, const float *B, size_t brs, size_t bcs, int n0, int nc, int k0,
                   int kc) {
  for (int p = 0; p < nc; p += NR, d += (size_t)NR * kc) {
    int nr = nc - p < NR ? nc - p : NR;
    if (bcs == 1) { /* B(k, n) contiguous in n: a row copy per k */
      for (int k = 0; k < kc; k++) {
        const float *s = B + (size_t)(k0 + k) * brs + (size_t)(n0 + p);
        float *o = d + (size_t)k * NR;
        memcpy(o, s, (size_t)nr * sizeof(float));
        for (int j = nr; j < NR; j++)
          o[j] = 0.0f;
      }
      continue;
    }
    for (int j = 0; j < NR; j++) {
      if (j >= nr) {
        for (int k = 0; k < kc; k++)
          d[(size_t)k * NR + j] = 0.0f;
        continue;
      }
      const float *s = B + (size_t)(n0 + p + j) * bcs + (size_t)k0 * brs;
      for (int k = 0; k < kc; k++)
        d[(size_t)k * NR + j] = s[(size_t)k * brs];
    }
  }
}

/* The split: every thread packs the larger side's blocks for its own part
 * (rows of A, or columns of B); the smaller side is packed once, by all the
 * threads together, into `shared` before any product starts: every block
 * of k (kb at a time, the last one shorter) of every panel, block p at
 * p kb pad (pad: that side's length rounded up to whole panels), panel q of
 * it at q MR kc (A) or q NR kc (B). */
typedef struct {
  int M, N, K, kb, by_rows;
  const float *A, *B;
  size_t ars, acs, brs, bcs;
  const float *bias;
  float beta;
  float *C;
  size_t ldc;
  float *shared;
  size_t pad;
} gemm_job;

static void pack_shared(const gemm_job *j) {
  int panels = j->by_rows ? (j->N + NR - 1) / NR : (j->M + MR - 1) / MR;
  int blocks = (j->K + j->kb - 1) / j->kb;
#pragma omp for schedule(static)
  for (int t = 0; t < panels * blocks; t++) {
    int q = t % panels, pc = (t / panels) * j->kb, kc = j->K - pc < j->kb ? j->K - pc : j->kb;
    float *d = j->shared + (size_t)pc * j->pad;
    if (j->by_rows) {
      int n0 = q * NR, nc = j->N - n0 < NR ? j->N - n0 : NR;
      pack_b(d + (size_t)q * NR * kc, j->B, j->brs, j->bcs, n0, nc, pc, kc);
    } else {
      int m0 = q * MR, mc = j->M - m0 < MR ? j->M - m0 : MR;
      pack_a(d + (size_t)q * MR * kc, j->A, j->ars, j->acs, m0, mc, pc, kc);
    }
  }
}

/* the product over rows [m0, m1) and columns [n0, n1) on the calling
 * thread, packing its side into `own` (A's blocks by rows, else B's) */
static void gemm_part(const gemm_job *j, float *own, int m0, int m1, int n0, int n1) {
  for (int jc = n0; jc < n1; jc += NC) {
    int nc = n1 - jc < NC ? n1 - jc : NC;
    for (int pc = 0; pc < j->K; pc += j->kb) {
      int kc = j->K - pc < j->kb ? j->K - pc : j->kb;
      const float *sh = j->shared + (size_t)pc * j->pad;
      const float *pb = j->by_rows ? sh + (size_t)jc * kc : own;
      if (!j->by_rows)
        pack_b(own, j->B, j->brs, j->bcs, jc, nc, pc, kc);
      for (int ic = m0; ic < m1; ic += MC) {
        int mc = m1 - ic < MC ? m1 - ic : MC;
        const float *pa = j->by_rows ? own : sh + (size_t)ic * kc;
        if (j->by_rows)
          pack_a(own, j->A, j->ars, j->acs, ic, mc, pc, kc);
        for (int jr = 0; jr < nc; jr += NR)
          for (int ir = 0; ir < mc; ir += MR)
            kernel(kc, pa + (size_t)ir * kc, pb + (size_t)jr * kc,
                   j->C + (size_t)(ic + ir) * j->ldc + (size_t)(jc + jr), j->ldc,
                   mc - ir < MR ? mc - ir : MR, nc - jr < NR ? nc - jr : NR, pc == 0, j->beta,
                   j->bias ? j->bias + jc + jr : NULL);
      }
    }
  }
}

int ops_cpu_gemm(int M, int N, int K, const float *A, size_t ars, size_t acs, const float *B,
                 size_t brs, size_t bcs, const float *bias, float beta, float *C, size_t ldc) {
  if (M <= 0 || N <= 0)
    return 0;
  if (K <= 0) { /* no products: C = first */
    for (int m = 0; m < M; m++)
      for (int n = 0; n < N; n++) {
        float *c = C + (size_t)m * ldc + n;
        *c = bias ? bias[n] : beta != 0.0f ? beta * *c : 0.0f;
      }
    return 0;
  }
  int nkb = (K + KC_MAX - 1) / KC_MAX, kb = ((K + nkb - 1) / nkb + 7) & ~7;
  gemm_job j = {
      M, N,   K,    kb, (size_t)M * K > (size_t)K * N, A, B, ars, acs, brs, bcs, bias, beta,
      C, ldc, NULL, 0};
  /* Split the larger side (its packing is then not repeated); tasks are a
   * few per thread, in whole panels. */
  int nt = omp_get_max_threads();
  if ((double)M * N * K < 4.0e6)
    nt = 1;
  int unit = j.by_rows ? MR : NR, len = j.by_rows ? M : N;
  int units = (len + unit - 1) / unit, tasks = nt > 1 ? 2 * nt : 1;
  if (tasks > units)
    tasks = units;
  int per = (units + tasks - 1) / tasks;
  tasks = (units + per - 1) / per;
  j.pad = j.by_rows ? (size_t)(N + NR - 1) / NR * NR : (size_t)(M + MR - 1) / MR * MR;
  if (!(j.shared = ops_cpu_scratch(OPS_CPU_SCRATCH_SHARED, j.pad * (size_t)K)))
    return -1;
  size_t own_floats = (size_t)(j.by_rows ? MC + MR : NC + NR) * kb;
  /* every thread gets its buffer before any writes C, so that a refusal
   * leaves C as it was */
  int fail = 0;
#pragma omp parallel if (nt > 1)
  {
    float *own =
        ops_cpu_scratch(j.by_rows ? OPS_CPU_SCRATCH_PACK_A : OPS_CPU_SCRATCH_PACK_B, own_floats);
    if (!own) {
#pragma omp atomic write
      fail = 1;
    }
    pack_shared(&j); /* ends in the barrier of its loop */
    int failed;
#pragma omp atomic read
    failed = fail;
    if (!failed) {
#pragma omp for schedule(dynamic, 1)
      for (int t = 0; t < tasks; t++) {
        int a = t * per * unit, b = a + per * unit < len ? a + per * unit : len;
        if (j.by_rows)
          gemm_part(&j, own, a, b, 0, N);
        else
          gemm_part(&j, own, 0, M, a, b);
      }
    }
  }
  return fail ? -1 : 0;
}

#else

int ops_cpu_gemm(int M, int N, int K, const float *A, size_t ars, size_t acs, const float *B,
                 size_t brs, size_t bcs, const float *bias, float beta, float *C, size_t ldc) {
  (void)M, (void)N, (void)K, (void)A, (void)ars, (void)acs, (void)B, (void)brs, (void)bcs;
  (void)bias, (void)beta, (void)C, (void)ldc;
  return -1;
}

#endif
