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
    /* T5's mul, rmsnorm_fwd, attention_rel_fwd and their backward passes
     * (mul_bwd, rmsnorm_bwd, attention_rel_bwd, act_bwd) are not written
     * for CUDA yet: NULL, and trainer/t5.c answers DFPO_EUSAGE naming them;
     * nor the rotary decoders' rope_fwd, swiglu_fwd and kv_repeat
     * (trainer/rdec.c answers DFPO_EUSAGE naming them), nor rope_bwd,
     * swiglu_bwd and kv_repeat_bwd */
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
