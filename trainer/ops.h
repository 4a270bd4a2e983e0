/* Internal to trainer/: the tensor-operation interface every model calls.
 *
 * Prefix: ops_. A backend is a table of function pointers over flat float
 * buffers in the backend's memory (host memory for the CPU backend, device
 * memory for CUDA). Shapes are in the comments, row-major, last index
 * fastest. Integer inputs (token ids, positions, key starts) live in backend
 * memory too. A model (gpt2_*.c) never touches a buffer's contents except
 * through these calls and upload/download, so a second backend only has to
 * fill this table (see docs/engine.md for the contract of each op).
 *
 * Conventions:
 *   - "+=" in a comment means the op accumulates into its output (gradients
 *     of parameters); "=" means it overwrites.
 *   - Linear weights are stored [out, in] (PyTorch nn.Linear), so a matmul is
 *     out = inp @ w^T + bias.
 *   - Attention "kstart[b]" is the first valid key of row b (left padding):
 *     a query at t >= kstart[b] sees keys kstart[b]..t; a padding query
 *     (t < kstart[b]) sees only itself so that no row is empty.
 *   - Reductions whose result feeds the numbers (grad norm, bias and
 *     LayerNorm parameter grads, embedding scatter) use a fixed order that
 *     does not depend on the thread count.
 */
#ifndef DFPO_TRAINER_OPS_H
#define DFPO_TRAINER_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "trainer/device.h"

/* Elementwise activations of act_fwd: the exact GELU x Phi(x) =
 * 0.5 x (1 + erf(x / sqrt 2)) (PyTorch's gelu, BERT's "gelu"), tanh and
 * ReLU (the classifier heads). */
enum { OPS_ACT_GELU_ERF = 0, OPS_ACT_TANH = 1, OPS_ACT_RELU = 2 };

typedef struct ops_backend {
  const char *name;

  /* memory: alloc returns zeroed memory or NULL */
  void *(*alloc)(size_t bytes);
  void (*free)(void *p);
  void (*zero)(void *p, size_t bytes);
  void (*upload)(void *dst, const void *host_src, size_t bytes);
  void (*download)(void *host_dst, const void *src, size_t bytes);
  void (*copy)(void *dst, const void *src, size_t bytes); /* backend to backend */

  /* out[M,N] = inp[M,K] @ w[N,K]^T + bias[N] (bias may be NULL) */
  void (*matmul_fwd)(float *out, const float *inp, const float *w, const float *bias, int M, int K,
                     int N);
  /* dinp[M,K] += dout @ w (dinp may be NULL); dw[N,K] += dout^T @ inp;
   * dbias[N] += column sums of dout (may be NULL) */
  void (*matmul_bwd)(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                     const float *w, int M, int K, int N);

  /* matmul_fwd with weights kept in 16 bits (a frozen model's,
   * model_set_weight_dtype): out[M,N] = inp[M,K] @ up(w[N,K])^T + bias[N]
   * (bias fp32, may be NULL), w bf16 or fp16 by dtype (OPS_DTYPE_BF16 or
   * OPS_DTYPE_F16), up() the exact widening to fp32. The CPU widens panels
   * of w and sums in fp32: the fp32 product over the widened weights up to
   * summation order. CUDA rounds inp to the same 16-bit type and runs
   * cuBLAS's GemmEx with fp32 accumulation (the tensor cores), so its
   * result carries inp's rounding as well (docs/engine.md). */
  void (*matmul_fwd_w16)(float *out, const float *inp, const uint16_t *w, const float *bias, int M,
                         int K, int N, int dtype);
  /* The input gradient through 16-bit weights (a frozen base's, as a LoRA
   * policy keeps it): dinp[M,K] += dout[M,N] @ up(w[N,K]) (dtype as
   * matmul_fwd_w16). No weight or bias gradient: those weights are frozen.
   * The CPU widens panels of w and sums in fp32 (the fp32 product over the
   * widened weights, up to summation order); CUDA rounds dout to the
   * weights' type and runs GemmEx with fp32 accumulation, as
   * matmul_fwd_w16 rounds inp. */
  void (*matmul_bwd_w16)(float *dinp, const float *dout, const uint16_t *w, int M, int K, int N,
                         int dtype);
  /* encoder_fwd with wte in 16 bits (dtype as matmul_fwd_w16), wpe fp32:
   * out[N,C] = up(wte[tok[n]]) + wpe[pos[n]] */
  void (*encoder_fwd_w16)(float *out, const int *tok, const int *pos, const uint16_t *wte,
                          const float *wpe, int N, int C, int dtype);

  /* out[N,C] = wte[tok[n]] + wpe[pos[n]] */
  void (*encoder_fwd)(float *out, const int *tok, const int *pos, const float *wte,
                      const float *wpe, int N, int C);
  /* dwte[V,C] += scatter of dout by tok; dwpe += scatter by pos */
  void (*encoder_bwd)(float *dwte, float *dwpe, const float *dout, const int *tok, const int *pos,
                      int N, int C);

  /* out[N,C] = (inp - mean) * rstd * w + b with rstd = 1 / sqrt(var + eps)
   * (biased variance, as PyTorch's LayerNorm; GPT-2 and RoBERTa use eps
   * 1e-5, BERT and DistilBERT 1e-12); mean[N], rstd[N] saved (may be NULL
   * when no backward follows) */
  void (*layernorm_fwd)(float *out, float *mean, float *rstd, const float *inp, const float *w,
                        const float *b, int N, int C, float eps);
  /* dinp[N,C] +=; dw[C] +=; db[C] += (dw and db both NULL: frozen, not computed) */
  void (*layernorm_bwd)(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, const float *mean, const float *rstd, int N, int C);

  /* Causal multi-head attention over qkv[B,T,3C] (q | k | v, heads of
   * C/NH channels each): out[B,T,C] =; att[B,NH,T,T] = the softmax
   * probabilities (saved for backward; zero outside the visible keys). */
  void (*attention_fwd)(float *out, float *att, const float *qkv, const int *kstart, int B, int T,
                        int C, int NH);
  /* dqkv[B,T,3C] = (overwritten) */
  void (*attention_bwd)(float *dqkv, const float *dout, const float *qkv, const float *att,
                        const int *kstart, int B, int T, int C, int NH);

  /* Bidirectional (encoder) multi-head attention over qkv[B,T,3C], forward
   * only: every query of row b, padding or not, sees the keys
   * kstart[b]..T-1 (the row's real tokens; kstart NULL: all), as BERT's
   * padding mask makes it. out[B,T,C] =; att[B,NH,T,T] = the softmax
   * probabilities (zero outside the visible keys), scratch for the caller. */
  void (*attention_bidir_fwd)(float *out, float *att, const float *qkv, const int *kstart, int B,
                              int T, int C, int NH);

  /* KV cache kc,vc [B,Tmax,KV]: rows t0..t0+T-1 = the k and v parts of
   * qkv[B,T,C+2KV] (q C wide, then k and v KV wide each: KV = C is the
   * plain qkv[B,T,3C]; KV < C a grouped-query layer's key/value heads,
   * cached without repetition). */
  void (*kv_write)(float *kc, float *vc, const float *qkv, int B, int T, int t0, int Tmax, int C,
                   int KV);
  /* One decoding step: q (NH heads of HS = C/NH channels) from
   * qkv[B,C+2KV] (the new token, already written at position n-1 of the
   * cache [B,Tmax,KV], KV = NKV HS) attends to cache rows kstart[b]..n-1;
   * query head h reads key/value head h / (NH/NKV) (NKV divides NH; NKV =
   * NH: one each); out[B,C] =. */
  void (*attention_step)(float *out, const float *qkv, const float *kc, const float *vc,
                         const int *kstart, int B, int n, int Tmax, int C, int NH, int NKV);

  /* out[n] = gelu_tanh(inp) */
  void (*gelu_fwd)(float *out, const float *inp, size_t n);
  /* dinp[n] = gelu'(inp) * dout (overwrite) */
  void (*gelu_bwd)(float *dinp, const float *inp, const float *dout, size_t n);
  /* out[n] = f(inp), f the OPS_ACT_* kind (out may alias inp); forward
   * only (the encoder classifiers' activations) */
  void (*act_fwd)(float *out, const float *inp, size_t n, int kind);
  /* out[n] = a + b (out may alias a or b) */
  void (*add)(float *out, const float *a, const float *b, size_t n);

  /* T5's ops (forward and backward); a backend may leave them NULL (T5
   * then answers DFPO_EUSAGE naming them); the CPU and CUDA backends have
   * them. */
  /* out[n] = a * b elementwise (out may alias a or b): gated feed-forward */
  void (*mul)(float *out, const float *a, const float *b, size_t n);
  /* RMS LayerNorm (T5LayerNorm): out[N,C] = inp * rsqrt(mean(inp^2) + eps)
   * * w (no mean subtraction, no bias; the mean of squares in double);
   * out may alias inp */
  void (*rmsnorm_fwd)(float *out, const float *inp, const float *w, int N, int C, float eps);
  /* Multi-head attention without the 1/sqrt(d) scale, with an additive
   * bias: for row b, head h, query i the scores q.k + bias[h, i, j] (bias
   * [NH, Tq, Tk], NULL: none) over the keys j >= kstart[b] (NULL: 0) and,
   * when causal, j <= i; softmax; out = the weighted v. q[b, i] starts at
   * q + (b Tq + i) ldq + h HS, k and v rows at + (b Tk + j) ldkv + h HS;
   * out[B, Tq, NH HS] =; a query that sees no key gets 0. */
  void (*attention_rel_fwd)(float *out, const float *q, int ldq, const float *k, const float *v,
                            int ldkv, const float *bias, const int *kstart, int causal, int B,
                            int Tq, int Tk, int NH, int HS);
  /* The backward pass of attention_rel_fwd with the same arguments,
   * recomputing the softmax from q, k and bias (nothing saved): dq, dk and
   * dv += (same layouts and strides as q, k and v; dk and dv may share a
   * buffer with dq, interleaved as in a fused qkv row); dbias[NH, Tq, Tk]
   * += the scores' gradient summed over the rows (may be NULL). Keys and
   * values accumulate in a fixed order: one thread per head. */
  void (*attention_rel_bwd)(float *dq, float *dk, float *dv, float *dbias, const float *dout,
                            const float *q, int ldq, const float *k, const float *v, int ldkv,
                            const float *bias, const int *kstart, int causal, int B, int Tq, int Tk,
                            int NH, int HS);
  /* The backward pass of rmsnorm_fwd: dinp[N,C] +=; dw[C] += (the sum over
   * rows in a fixed order). */
  void (*rmsnorm_bwd)(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                      int N, int C, float eps);
  /* The gated product's backward (out = a * b): da[n] = dout * b and
   * db[n] = dout * a (overwrite; either may be NULL). */
  void (*mul_bwd)(float *da, float *db, const float *dout, const float *a, const float *b,
                  size_t n);
  /* dinp[n] = f'(inp) * dout (overwrite; dinp may alias dout), f the
   * OPS_ACT_* kind of act_fwd */
  void (*act_bwd)(float *dinp, const float *inp, const float *dout, size_t n, int kind);

  /* The rotary decoders' ops (trainer/rdec.c: GPT-J, GPT-NeoX, Llama),
   * forward and backward; a backend may leave them NULL (the rotary
   * decoders then answer DFPO_EUSAGE naming them); the CPU and CUDA
   * backends have them. */
  /* Rotary position embedding, in place: row n of x (N rows, ld floats
   * apart) holds nh heads of HS channels; the first rot (even, <= HS)
   * channels of each head are rotated by the angles pos[n] * theta_i,
   * theta_i = base^(-2i/rot) for i < rot/2 (computed in double), the
   * others left alone. interleaved (GPT-J's rotate_every_two): the pairs
   * (2i, 2i+1); else half-split (GPT-NeoX's and Llama's rotate_half): the
   * pairs (i, i + rot/2). A pair (a, b) becomes (a cos - b sin, b cos + a
   * sin). */
  void (*rope_fwd)(float *x, int ld, const int *pos, int N, int nh, int HS, int rot,
                   int interleaved, float base);
  /* rope_fwd's backward, in place: dx (rows as rope_fwd's x) holds the
   * gradient of the rotated values and becomes that of the inputs (each
   * pair rotated back: (da, db) -> (da cos + db sin, db cos - da sin));
   * the channels past rot pass through. */
  void (*rope_bwd)(float *dx, int ld, const int *pos, int N, int nh, int HS, int rot,
                   int interleaved, float base);
  /* SwiGLU: out[N, F] = silu(gu[n, f]) * gu[n, F + f] with silu(g) =
   * g / (1 + exp(-g)), from gu[N, 2F] (the gate's columns, then the up
   * projection's) */
  void (*swiglu_fwd)(float *out, const float *gu, int N, int F);
  /* swiglu_fwd's backward: dgu[N, 2F] = (overwritten) dout u silu'(g) in
   * the gate's columns, dout silu(g) in the up projection's, with
   * silu'(g) = s (1 + g (1 - s)), s = 1 / (1 + exp(-g)). */
  void (*swiglu_bwd)(float *dgu, const float *gu, const float *dout, int N, int F);
  /* Grouped-query attention onto attention_fwd's layout: inp[N, (NH + 2
   * NKV) HS] holds q (NH heads), k and v (NKV heads each); out[N, 3 NH HS]
   * = q | k | v with key/value head g repeated for the query heads g R ..
   * g R + R - 1 (R = NH / NKV), as Hugging Face's repeat_kv. */
  void (*kv_repeat)(float *out, const float *inp, int N, int NH, int NKV, int HS);
  /* kv_repeat's backward: dinp[N, (NH + 2 NKV) HS] = (overwritten) the q
   * part of dout[N, 3 NH HS] copied, each key/value head's gradient the sum
   * of its R repeated heads' (in head order). */
  void (*kv_repeat_bwd)(float *dinp, const float *dout, int N, int NH, int NKV, int HS);

  /* Fused log-softmax statistics of logits[N,V] (row stride ld >= V):
   * lse[N] = logsumexp; logp[N] = logits[tgt] - lse (tgt < 0: 0);
   * ent[N] = entropy of the softmax (ent may be NULL). */
  void (*logits_stats)(float *lse, float *logp, float *ent, const float *logits, const int *tgt,
                       int N, int V, int ld);
  /* In place, logits become their gradient for the objective
   * sum_n dlogp[n] * logp[n] + dent[n] * ent[n] (dent may be NULL):
   * dz_i = dlogp (1[i=tgt] - p_i) - dent p_i (log p_i + ent); rows with tgt < 0
   * have logp 0, so their dlogp is ignored. A fused
   * softmax + cross-entropy backward is dlogp = -weight. */
  void (*logits_bwd)(float *logits, const float *lse, const float *ent, const int *tgt,
                     const float *dlogp, const float *dent, int N, int V, int ld);

  /* AdamW (PyTorch's torch.optim.AdamW) on n parameters; step t >= 1.
   * Zeroes g as it goes (the next step's gradients start from zero without
   * another pass over memory). */
  void (*adamw)(float *p, float *g, float *m, float *v, size_t n, float lr, float beta1,
                float beta2, float eps, float wd, int t);
  /* sum of squares (double accumulation, fixed order) */
  double (*sumsq)(const float *x, size_t n);
  /* x[n] *= s */
  void (*scale)(float *x, float s, size_t n);

  /* Draws one token per row of z[B, V], which it modifies in place. Per
   * row, in order: z /= temperature (when temperature > 0 and != 1); z =
   * -inf where allow[b, V] is 0 (allow may be NULL: everything allowed);
   * z[ban] = -inf (ban < 0: none); then ops_sample_row (top-k, top-p, and
   * the draw with the uniform u[b]; greedy when temperature <= 0). u[b] < 0
   * skips the row (tok[b] = -1, z and logp[b] untouched). tok[B] gets the
   * token (-1 when every entry is -inf), logp[B] its log-probability under
   * the distribution it was drawn from. tok, logp, z, allow and u are
   * backend memory; the uniforms come from the host so that every backend
   * draws the same tokens from the same numbers. */
  void (*sample)(int *tok, float *logp, float *z, const unsigned char *allow, const double *u,
                 int B, int V, float temperature, int top_k, float top_p, int ban);
} ops_backend;

/* The sampler of one row, on the host (the CPU backend's sample op and
 * gpt2_sample_token; the CUDA kernels follow it step for step): filters z
 * (temperature already applied) in place by top-k (0: off; the k largest
 * finite values, all ties of the k-th kept) and top-p (>= 1: off; the
 * smallest prefix of the tokens sorted by probability, ties by the lower id,
 * whose mass reaches top_p), leaving the unnormalised probabilities exp(z -
 * max) of the kept entries and 0 elsewhere; then draws the first token
 * whose cumulative mass (in id order, summed in double) exceeds u times the
 * total, or with greedy the first largest entry. Returns the token, or -1
 * when every entry is -inf; *logp (may be NULL) gets the token's
 * log-probability under the filtered distribution. */
int ops_sample_row(float *z, int V, int top_k, float top_p, int greedy, double u, float *logp);

/* Conversions between fp32 and the 16-bit weight types, on the host.
 * To 16 bits: round to nearest, ties to even, as PyTorch's
 * .to(torch.bfloat16) and .half(): a value past the type's largest finite
 * one becomes inf (fp16: from 65520 up), one below its smallest
 * subnormal's half becomes a signed zero, inf stays inf; a NaN becomes a
 * quiet NaN (bf16: 0x7fc0 whatever its sign, as PyTorch's scalar
 * c10::BFloat16, where its vectorised CPU cast gives 0xffff, also a NaN;
 * fp16: the sign kept, 0x7e00 or 0xfe00, as PyTorch's .half()). To fp32:
 * exact. */
uint16_t ops_f32_to_bf16(float x);
uint16_t ops_f32_to_f16(float x);
float ops_bf16_to_f32(uint16_t h);
float ops_f16_to_f32(uint16_t h);
/* n values of src into dst by dtype (OPS_DTYPE_BF16 or OPS_DTYPE_F16). */
void ops_f32_to_w16(uint16_t *dst, const float *src, size_t n, int dtype);
void ops_w16_to_f32(float *dst, const uint16_t *src, size_t n, int dtype);

/* The CPU backend (OpenBLAS + OpenMP). */
extern const ops_backend ops_cpu;
#ifdef DFPO_HAVE_CUDA
/* The CUDA backend (cuBLAS + own kernels; ops_cuda.h says how it runs). */
extern const ops_backend ops_cuda;
#endif

/* The widest vector instructions the CPU backend's own kernels may use:
 * 512 (AVX-512 where the CPU has it, the default), 256 (AVX2 + FMA) or 0
 * (OpenBLAS and portable loops only).
 * Returns the width in force after the call (what the CPU allows, at most
 * bits). The environment variable DFPO_CPU_ISA sets the starting cap. For
 * tests that hold each kernel to the others; not thread-safe. */
int ops_cpu_set_isa(int bits);
/* the width in force (DFPO_CPU_ISA read on first use) */
int ops_cpu_isa(void);

/* The backend of a resolved device (OPS_DEVICE_CPU or OPS_DEVICE_CUDA; see
 * trainer/device.h), and the one model constructors use now (ops_use_device). */
const ops_backend *ops_backend_of(ops_device d);
const ops_backend *ops_default_backend(void);

#endif
