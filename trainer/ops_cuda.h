/* Internal: the C-callable entry points of the CUDA backend (ops_cuda*.cu,
 * ops_cuda_table.c). Declared only when the build has the CUDA backend.
 *
 * The backend works on device 0 through the legacy default stream: every
 * op is ordered after the previous one, upload and download are synchronous
 * (cudaMemcpy), so the host may reuse or read its buffers as soon as they
 * return. A CUDA or cuBLAS failure inside an op (the op table has no error
 * return) prints the runtime's message and aborts the process; only alloc
 * reports failure, by returning NULL. Not thread-safe: one host thread
 * drives the backend (as the engine does). */
#ifndef DFPO_TRAINER_OPS_CUDA_H
#define DFPO_TRAINER_OPS_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "trainer/device.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef DFPO_HAVE_CUDA
/* Fills the cuda_* fields of info from the CUDA runtime. */
void ops_cuda_probe(ops_env_info *info);

/* Makes the backend usable (device 0, its context, the cuBLAS handle):
 * 0, or nonzero with the runtime's or cuBLAS's reason in reason[n]. Cheap
 * after the first success. The ops call it themselves (and abort if it
 * fails), so callers use it to fail cleanly before the first op. */
int ops_cuda_init(char *reason, size_t n);
/* TF32 tensor cores for the matrix products (cuBLAS's
 * CUBLAS_TF32_TENSOR_OP_MATH) on or off (the default: plain fp32). */
void ops_cuda_set_tf32(int on);
int ops_cuda_tf32(void);
/* bf16 matrix products (cublasGemmEx, CUBLAS_COMPUTE_32F_FAST_16BF: fp32
 * matrices rounded to bf16 for the tensor cores, fp32 accumulation and
 * results; the weights stay fp32) on or off (the default); wins over
 * TF32. */
void ops_cuda_set_bf16(int on);
int ops_cuda_bf16(void);

/* The ops (ops.h says what each does). */
void *ops_cuda_alloc(size_t bytes);
void ops_cuda_free(void *p);
void ops_cuda_zero(void *p, size_t bytes);
void ops_cuda_upload(void *dst, const void *host_src, size_t bytes);
void ops_cuda_download(void *host_dst, const void *src, size_t bytes);
void ops_cuda_copy(void *dst, const void *src, size_t bytes);
void ops_cuda_matmul_fwd(float *out, const float *inp, const float *w, const float *bias, int M,
                         int K, int N);
void ops_cuda_matmul_bwd(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                         const float *w, int M, int K, int N);
void ops_cuda_matmul_fwd_w16(float *out, const float *inp, const uint16_t *w, const float *bias,
                             int M, int K, int N, int dtype);
void ops_cuda_matmul_bwd_w16(float *dinp, const float *dout, const uint16_t *w, int M, int K, int N,
                             int dtype);
void ops_cuda_encoder_fwd_w16(float *out, const int *tok, const int *pos, const uint16_t *wte,
                              const float *wpe, int N, int C, int dtype);
void ops_cuda_encoder_fwd(float *out, const int *tok, const int *pos, const float *wte,
                          const float *wpe, int N, int C);
void ops_cuda_encoder_bwd(float *dwte, float *dwpe, const float *dout, const int *tok,
                          const int *pos, int N, int C);
void ops_cuda_layernorm_fwd(float *out, float *mean, float *rstd, const float *inp, const float *w,
                            const float *b, int N, int C, float eps);
void ops_cuda_layernorm_bwd(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                            const float *w, const float *mean, const float *rstd, int N, int C);
void ops_cuda_attention_fwd(float *out, float *att, const float *qkv, const int *kstart, int B,
                            int T, int C, int NH);
void ops_cuda_attention_bwd(float *dqkv, const float *dout, const float *qkv, const float *att,
                            const int *kstart, int B, int T, int C, int NH);
void ops_cuda_attention_bidir_fwd(float *out, float *att, const float *qkv, const int *kstart,
                                  int B, int T, int C, int NH);
void ops_cuda_kv_write(float *kc, float *vc, const float *qkv, int B, int T, int t0, int Tmax,
                       int C, int KV);
void ops_cuda_attention_step(float *out, const float *qkv, const float *kc, const float *vc,
                             const int *kstart, int B, int n, int Tmax, int C, int NH, int NKV);
void ops_cuda_gelu_fwd(float *out, const float *inp, size_t n);
void ops_cuda_gelu_bwd(float *dinp, const float *inp, const float *dout, size_t n);
void ops_cuda_act_fwd(float *out, const float *inp, size_t n, int kind);
void ops_cuda_add(float *out, const float *a, const float *b, size_t n);
/* T5's ops */
void ops_cuda_mul(float *out, const float *a, const float *b, size_t n);
void ops_cuda_mul_bwd(float *da, float *db, const float *dout, const float *a, const float *b,
                      size_t n);
void ops_cuda_act_bwd(float *dinp, const float *inp, const float *dout, size_t n, int kind);
void ops_cuda_rmsnorm_fwd(float *out, const float *inp, const float *w, int N, int C, float eps);
void ops_cuda_rmsnorm_bwd(float *dinp, float *dw, const float *dout, const float *inp,
                          const float *w, int N, int C, float eps);
void ops_cuda_attention_rel_fwd(float *out, const float *q, int ldq, const float *k, const float *v,
                                int ldkv, const float *bias, const int *kstart, int causal, int B,
                                int Tq, int Tk, int NH, int HS);
void ops_cuda_attention_rel_bwd(float *dq, float *dk, float *dv, float *dbias, const float *dout,
                                const float *q, int ldq, const float *k, const float *v, int ldkv,
                                const float *bias, const int *kstart, int causal, int B, int Tq,
                                int Tk, int NH, int HS);
/* the rotary decoders' ops */
void ops_cuda_rope_fwd(float *x, int ld, const int *pos, int N, int nh, int HS, int rot,
                       int interleaved, float base);
void ops_cuda_rope_bwd(float *dx, int ld, const int *pos, int N, int nh, int HS, int rot,
                       int interleaved, float base);
void ops_cuda_swiglu_fwd(float *out, const float *gu, int N, int F);
void ops_cuda_swiglu_bwd(float *dgu, const float *gu, const float *dout, int N, int F);
void ops_cuda_kv_repeat(float *out, const float *inp, int N, int NH, int NKV, int HS);
void ops_cuda_kv_repeat_bwd(float *dinp, const float *dout, int N, int NH, int NKV, int HS);
void ops_cuda_logits_stats(float *lse, float *logp, float *ent, const float *logits, const int *tgt,
                           int N, int V, int ld);
void ops_cuda_logits_bwd(float *logits, const float *lse, const float *ent, const int *tgt,
                         const float *dlogp, const float *dent, int N, int V, int ld);
void ops_cuda_adamw(float *p, float *g, float *m, float *v, size_t n, float lr, float beta1,
                    float beta2, float eps, float wd, int t);
double ops_cuda_sumsq(const float *x, size_t n);
void ops_cuda_scale(float *x, float s, size_t n);
void ops_cuda_sample(int *tok, float *logp, float *z, const unsigned char *allow, const double *u,
                     int B, int V, float temperature, int top_k, float top_p, int ban);
#endif

#ifdef __cplusplus
}
#endif

#endif
