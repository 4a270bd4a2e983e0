/* Kernels of the CPU backend written once for a vector width: ops_cpu.c
 * includes this file with OPS_VEC_BITS 512 (AVX-512F, 16 lanes) and 256
 * (AVX2 and FMA, 8 lanes), after HAVE_SMALLM's intrinsics and helpers
 * (hsum8, exp_shift_sum), and with 32 (one plain float a "vector": the
 * portable loops, on every machine). Each inclusion defines the functions
 * below with the width as their suffix (av_sum512, av_sum256,
 * attention_query512, ...) or, at width 32, none (av_sum,
 * attention_query, attention_bwd_head: the plain path, no target
 * attribute, V_FMA a multiply then an add, each rounded as the plain C
 * loop rounds them, so these are the plain loops operation for
 * operation); attention_bwd_head has no 16-lane instance and
 * attention_row no plain one (cpu_attention_step has its own plain loop).
 * It undefines its macros again. Internal to ops_cpu.c: no other file
 * includes it, and it has no include guard on purpose. */

#if OPS_VEC_BITS == 512
#define VEC __m512
#define VL 16
#define VATTR __attribute__((target("avx512f")))
#define VINLINE __attribute__((always_inline, target("avx512f")))
#define VNAME(f) f##512
/* the sums kept in registers by the value loop: 16 of 32 registers */
#define VACC 16
/* av_sum's sums at a time: 8 registers */
#define VAV 8
#define V_ZERO() _mm512_setzero_ps()
#define V_LOADU(p) _mm512_loadu_ps(p)
#define V_STOREU(p, v) _mm512_storeu_ps((p), (v))
#define V_SET1(x) _mm512_set1_ps(x)
#define V_FMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define V_REDUCE(v) _mm512_reduce_add_ps(v)
#elif OPS_VEC_BITS == 256
#define VEC __m256
#define VL 8
#define VATTR __attribute__((target("avx2,fma")))
#define VINLINE __attribute__((always_inline, target("avx2,fma")))
#define VNAME(f) f##256
/* 12 of 16 registers: the broadcast weight and the loads need the rest */
#define VACC 12
#define VAV 8
#define V_ZERO() _mm256_setzero_ps()
#define V_LOADU(p) _mm256_loadu_ps(p)
#define V_STOREU(p, v) _mm256_storeu_ps((p), (v))
#define V_SET1(x) _mm256_set1_ps(x)
#define V_FMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define V_REDUCE(v) hsum8(v)
#elif OPS_VEC_BITS == 32
#define VEC float
#define VL 1
#define VATTR
#define VINLINE __attribute__((always_inline))
#define VNAME(f) f
#define V_ZERO() 0.0f
#define V_LOADU(p) (*(p))
#define V_STOREU(p, v) (*(p) = (v))
#define V_SET1(x) (x)
/* not fused: the product rounded, then the sum (the build's C11 mode
 * does not contract a * b + c into one) */
#define V_FMA(a, b, c) ((a) * (b) + (c))
#define V_REDUCE(v) (v)
/* av_sum's sums at a time: a whole head of up to 128 channels */
#define VAV 128
#else
#error "ops_cpu_vec.h: OPS_VEC_BITS must be 512, 256 or 32"
#endif
#define V_PRAGMA_(x) _Pragma(#x)
#define V_UNROLL(n) V_PRAGMA_(GCC unroll n)

/* o[VL HV] = sum over keys j0..j1-1, in order, of a[j] v_j (v_j C3 floats
 * apart), HV <= VAV: the output of a query in attention_query and, with 16
 * lanes, in attention_bidir512. */
static inline void VNAME(av_sum)(float *o, const float *a, const float *v, size_t C3, int j0,
                                 int j1, int HV) VINLINE;
static inline void VNAME(av_sum)(float *o, const float *a, const float *v, size_t C3, int j0,
                                 int j1, int HV) {
  VEC acc[VAV];
  for (int i = 0; i < HV; i++)
    acc[i] = V_ZERO();
  for (int j = j0; j < j1; j++) {
    VEC w = V_SET1(a[j]);
    const float *vj = v + (size_t)j * C3;
    for (int i = 0; i < HV; i++)
      acc[i] = V_FMA(w, V_LOADU(vj + VL * i), acc[i]);
  }
  for (int i = 0; i < HV; i++)
    V_STOREU(o + VL * i, acc[i]);
}

/* One query of attention_rows (head size VL HV, HV <= VAV but at width
 * 32): q, k and v point
 * at the head's channels of row 0 of the batch row, rows C3 apart; keys
 * j0..t (t: the last key). Each score is a VL-lane FMA sum, reduced; the
 * softmax as in the plain loop (expf); the output sums a_j v_j over the
 * keys in order with FMA. a: the query's T probabilities (zero outside). */
VATTR static void VNAME(attention_query)(float *o, float *a, const float *q, const float *k,
                                         const float *v, size_t C3, int j0, int t, int T, int HV,
                                         float scale) {
  memset(a, 0, (size_t)T * sizeof(float));
  float mx = -INFINITY;
  for (int j = j0; j <= t; j++) {
    const float *kj = k + (size_t)j * C3;
    VEC acc = V_ZERO();
    for (int i = 0; i < HV; i++)
      acc = V_FMA(V_LOADU(q + VL * i), V_LOADU(kj + VL * i), acc);
    float s = V_REDUCE(acc) * scale;
    a[j] = s;
    if (s > mx)
      mx = s;
  }
  float inv = 1.0f / exp_shift_sum(a, j0, t + 1, mx);
  for (int j = j0; j <= t; j++)
    a[j] *= inv;
#if VL == 1
  /* a head of any size, VAV channels at a time (each output's sum is over
   * the keys in order either way) */
  for (int i0 = 0; i0 < HV; i0 += VAV)
    VNAME(av_sum)(o + i0, a, v + i0, C3, j0, t + 1, HV - i0 < VAV ? HV - i0 : VAV);
#else
  VNAME(av_sum)(o, a, v, C3, j0, t + 1, HV);
#endif
}

#if OPS_VEC_BITS != 512
/* The backward pass of causal attention for one (batch row b, head h)
 * (cpu_attention_bwd; head size a multiple of VL): over the head's
 * channels VL at a time, every score's gradient d . v_j a VL-lane FMA sum,
 * reduced, and the value, query and key gradients accumulated with FMA,
 * keys in order; at width 32 the plain loops. The roundings differ between
 * the widths, not with the thread count. datt: T floats of scratch.
 * No 16-lane instance: it would change the roundings of every AVX-512
 * machine's training, and it has not run on one (the project's AVX-512
 * machine was not at hand when this kernel was written, 2026-12-04);
 * making this #if include 512 and dispatching it in cpu_attention_bwd is
 * all it takes, after test_ops_cpu and the training tests have run
 * there. */
VATTR static void VNAME(attention_bwd_head)(float *dqkv, const float *dout, const float *qkv,
                                            const float *att, int b, int h, int ks, int T, int C,
                                            int NH, float scale, float *datt) {
  int HS = C / NH, HV = HS / VL;
  size_t C3 = (size_t)3 * C;
  for (int t = 0; t < T; t++) {
    float *dz = dqkv + ((size_t)b * T + t) * C3 + (size_t)h * HS;
    for (int i = 0; i < HV; i++) {
      V_STOREU(dz + VL * i, V_ZERO());
      V_STOREU(dz + C + VL * i, V_ZERO());
      V_STOREU(dz + 2 * (size_t)C + VL * i, V_ZERO());
    }
  }
  for (int t = 0; t < T; t++) {
    int j0 = t < ks ? t : ks;
    const float *a = att + (((size_t)b * NH + h) * T + t) * T;
    const float *d = dout + ((size_t)b * T + t) * C + (size_t)h * HS;
    const float *q = qkv + ((size_t)b * T + t) * C3 + (size_t)h * HS;
    float *dq = dqkv + ((size_t)b * T + t) * C3 + (size_t)h * HS;
    float dot = 0.0f;
    for (int j = j0; j <= t; j++) {
      const float *v = qkv + ((size_t)b * T + j) * C3 + 2 * (size_t)C + (size_t)h * HS;
      float *dv = dqkv + ((size_t)b * T + j) * C3 + 2 * (size_t)C + (size_t)h * HS;
      VEC s = V_ZERO(), aj = V_SET1(a[j]);
      for (int i = 0; i < HV; i++) {
        VEC di = V_LOADU(d + VL * i);
        s = V_FMA(di, V_LOADU(v + VL * i), s);
        V_STOREU(dv + VL * i, V_FMA(aj, di, V_LOADU(dv + VL * i)));
      }
      datt[j] = V_REDUCE(s);
      dot += a[j] * datt[j];
    }
    for (int j = j0; j <= t; j++) {
      VEC p = V_SET1(a[j] * (datt[j] - dot) * scale);
      const float *k = qkv + ((size_t)b * T + j) * C3 + C + (size_t)h * HS;
      float *dk = dqkv + ((size_t)b * T + j) * C3 + C + (size_t)h * HS;
      for (int i = 0; i < HV; i++) {
        V_STOREU(dq + VL * i, V_FMA(p, V_LOADU(k + VL * i), V_LOADU(dq + VL * i)));
        V_STOREU(dk + VL * i, V_FMA(p, V_LOADU(q + VL * i), V_LOADU(dk + VL * i)));
      }
    }
  }
}
#endif

#if OPS_VEC_BITS != 32
/* One decoding step of attention (cpu_attention_step) for one row b (head
 * sizes a multiple of VL; kr and vr the row's cache, KV = NKV HS floats a
 * position, query head h reading key/value head h / R): each score is a
 * VL-lane FMA sum over its head's channels, reduced; the softmax as in the
 * plain loop (expf); the output channels in groups of VACC vectors sum
 * w * v over the positions in order with FMA. The roundings differ from
 * the plain loop's (lanes, fused multiply-adds) and between the widths;
 * they do not depend on the thread count. a: NH * n + NH floats of
 * scratch. */
VATTR static void VNAME(attention_row)(float *o, const float *q, const float *kr, const float *vr,
                                       int ks, int n, int C, int NH, int NKV, float *a) {
  int HS = C / NH, HV = HS / VL, CV = C / VL, R = NH / NKV, KV = NKV * HS;
  float scale = 1.0f / sqrtf((float)HS), *mxs = a + (size_t)NH * n;
  for (int h = 0; h < NH; h++)
    mxs[h] = -INFINITY;
  for (int j = ks; j < n; j++) {
    const float *k = kr + (size_t)j * KV;
    for (int h = 0; h < NH; h++) {
      const float *kh = k + (h / R) * HS;
      VEC acc = V_ZERO();
      for (int i = 0; i < HV; i++)
        acc = V_FMA(V_LOADU(q + h * HS + VL * i), V_LOADU(kh + VL * i), acc);
      float x = V_REDUCE(acc) * scale;
      a[(size_t)h * n + j] = x;
      if (x > mxs[h])
        mxs[h] = x;
    }
  }
  for (int h = 0; h < NH; h++) {
    float *ah = a + (size_t)h * n, r = 1.0f / exp_shift_sum(ah, ks, n, mxs[h]);
    for (int j = ks; j < n; j++)
      ah[j] *= r;
  }
  /* output vector u (VL channels of head u / HV) reads the value channels
   * at voff(u) of a position */
#define VOFF(u) (((u) / HV / R) * HS + ((u) % HV) * VL)
  /* the offsets and weight rows are worked out before the loop over
   * positions, and its VACC sums unrolled into registers: written as one
   * expression in the loop, the compiler kept the sums on the stack and
   * divided twice per vector and position (two thirds of the step's
   * attention time in perf) */
  int v0 = 0;
  for (; v0 + VACC <= CV; v0 += VACC) {
    VEC acc[VACC];
    int off[VACC];
    const float *ar[VACC];
    for (int v = 0; v < VACC; v++) {
      off[v] = VOFF(v0 + v);
      ar[v] = a + (size_t)((v0 + v) / HV) * n;
    }
    V_UNROLL(VACC)
    for (int v = 0; v < VACC; v++)
      acc[v] = V_ZERO();
    for (int j = ks; j < n; j++) {
      const float *vj = vr + (size_t)j * KV;
      V_UNROLL(VACC)
      for (int v = 0; v < VACC; v++)
        acc[v] = V_FMA(V_SET1(ar[v][j]), V_LOADU(vj + off[v]), acc[v]);
    }
    V_UNROLL(VACC)
    for (int v = 0; v < VACC; v++)
      V_STOREU(o + VL * (v0 + v), acc[v]);
  }
  for (; v0 < CV; v0++) {
    VEC acc = V_ZERO();
    const float *ah = a + (size_t)(v0 / HV) * n;
    for (int j = ks; j < n; j++)
      acc = V_FMA(V_SET1(ah[j]), V_LOADU(vr + (size_t)j * KV + VOFF(v0)), acc);
    V_STOREU(o + VL * v0, acc);
  }
#undef VOFF
}
#endif

#undef VEC
#undef VL
#undef VATTR
#undef VINLINE
#undef VNAME
#undef VACC
#undef VAV
#undef V_ZERO
#undef V_LOADU
#undef V_STOREU
#undef V_SET1
#undef V_FMA
#undef V_REDUCE
#undef V_PRAGMA_
#undef V_UNROLL
#undef OPS_VEC_BITS
