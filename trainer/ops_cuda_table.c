/* The CUDA backend's op table (the kernels are in ops_cuda.cu). Compiled
 * only into builds with the CUDA backend: C's designated initialisers name
 * every field, which C++17 (the .cu files) cannot. */
#ifdef DFPO_HAVE_CUDA
#include "trainer/ops.h"
#include "trainer/ops_cuda.h"

const ops_backend ops_cuda = {
    .name = "cuda",
    .alloc = ops_cuda_alloc,
    .free = ops_cuda_free,
    .zero = ops_cuda_zero,
    .upload = ops_cuda_upload,
    .download = ops_cuda_download,
    .copy = ops_cuda_copy,
    .matmul_fwd = ops_cuda_matmul_fwd,
    .matmul_bwd = ops_cuda_matmul_bwd,
    .encoder_fwd = ops_cuda_encoder_fwd,
    .matmul_fwd_w16 = ops_cuda_matmul_fwd_w16,
    .matmul_bwd_w16 = ops_cuda_matmul_bwd_w16,
    .encoder_fwd_w16 = ops_cuda_encoder_fwd_w16,
    .encoder_bwd = ops_cuda_encoder_bwd,
    .layernorm_fwd = ops_cuda_layernorm_fwd,
    .layernorm_bwd = ops_cuda_layernorm_bwd,
    .attention_fwd = ops_cuda_attention_fwd,
    .attention_bwd = ops_cuda_attention_bwd,
    .attention_bidir_fwd = ops_cuda_attention_bidir_fwd,
    .kv_write = ops_cuda_kv_write,
    .attention_step = ops_cuda_attention_step,
    .gelu_fwd = ops_cuda_gelu_fwd,
    .gelu_bwd = ops_cuda_gelu_bwd,
    .act_fwd = ops_cuda_act_fwd,
    .add = ops_cuda_add,
    .mul = ops_cuda_mul,
    .rmsnorm_fwd = ops_cuda_rmsnorm_fwd,
    .attention_rel_fwd = ops_cuda_attention_rel_fwd,
    .attention_rel_bwd = ops_cuda_attention_rel_bwd,
    .rmsnorm_bwd = ops_cuda_rmsnorm_bwd,
    .mul_bwd = ops_cuda_mul_bwd,
    .act_bwd = ops_cuda_act_bwd,
    .rope_fwd = ops_cuda_rope_fwd,
    .rope_bwd = ops_cuda_rope_bwd,
    .swiglu_fwd = ops_cuda_swiglu_fwd,
    .swiglu_bwd = ops_cuda_swiglu_bwd,
    .kv_repeat = ops_cuda_kv_repeat,
    .kv_repeat_bwd = ops_cuda_kv_repeat_bwd,
    .logits_stats = ops_cuda_logits_stats,
    .logits_bwd = ops_cuda_logits_bwd,
    .adamw = ops_cuda_adamw,
    .sumsq = ops_cuda_sumsq,
    .scale = ops_cuda_scale,
    .sample = ops_cuda_sample,
};
#else
/* ISO C wants at least one declaration in a translation unit. */
typedef int ops_cuda_table_empty;
#endif
