/* trainer/device.h: the compute devices of this build (prefix ops_): what
 * they offer on this machine, which one new models go to, and the CUDA
 * backend's precision switches.
 *
 * Depends on common/ only. Process-wide state: the current device and the
 * precision switches are set once by a command before models are made. */
#ifndef DFPO_TRAINER_DEVICE_H
#define DFPO_TRAINER_DEVICE_H

#include "common/common.h"

/* What the compute backends of this build offer on this machine. */
typedef struct ops_env_info {
  int cpu_threads;       /* OpenMP threads the CPU backend uses */
  int online_cpus;       /* processors the OS reports online */
  int blas_threads;      /* threads OpenBLAS runs with in the CPU backend (1) */
  char blas[256];        /* OpenBLAS build configuration and core */
  int cpu_isa;           /* vector width of the own CPU kernels: 512, 256 or 0 */
  int cuda_compiled;     /* the CUDA backend is part of this build */
  int cuda_devices;      /* usable devices (0 when none) */
  char cuda_runtime[64]; /* CUDA runtime version, when compiled in */
  char cuda_device[256]; /* first device's name and memory, when usable */
  char cuda_reason[512]; /* why no device is usable, in the driver's words */
} ops_env_info;

/* Fills info; never fails: what cannot be learned is reported in the text
 * fields. Safe on machines without a GPU or driver. */
void ops_env_probe(ops_env_info *info);

/* Compute devices. AUTO is a request only: resolving it gives CPU or CUDA. */
typedef enum { OPS_DEVICE_CPU = 0, OPS_DEVICE_CUDA = 1, OPS_DEVICE_AUTO = 2 } ops_device;
/* "cpu", "cuda" or "auto" (anything else: DFPO_EUSAGE naming the text). */
int ops_device_parse(const char *s, ops_device *out, dfpo_err *err);
const char *ops_device_name(ops_device d);
/* Resolves a request to a usable device. CPU: always. CUDA: when this build
 * has the CUDA backend and device 0 can be set up (context and cuBLAS),
 * else DFPO_ERUNTIME with the driver's or runtime's reason. AUTO: CUDA when
 * usable, else CPU with the reason in note[n] (note[0] stays 0 when nothing
 * fell back; note may be NULL). */
int ops_device_resolve(ops_device want, ops_device *got, char *note, size_t n, dfpo_err *err);
/* The device on which model constructors (gpt2_new, model_load, the importers) put
 * new models from now on; process-wide, default CPU. d must be resolved
 * (CPU, or CUDA after ops_device_resolve said it is usable). */
void ops_use_device(ops_device d);
ops_device ops_current_device(void);
/* TF32 tensor cores for the CUDA backend's matrix products (default off:
 * fp32 throughout); no effect on the CPU backend. */
void ops_set_tf32(int on);
int ops_tf32(void);
/* bf16 matrix products for the CUDA backend (default off): the fp32
 * matrices are rounded to bf16 inside cuBLAS for the tensor cores and the
 * products accumulate in fp32, so the weights, gradients and AdamW state
 * stay fp32 (the master copy); wins over TF32. No effect on the CPU. */
void ops_set_bf16(int on);
int ops_bf16(void);

/* The precision a model keeps its weight matrices in (model_set_weight_dtype,
 * trainer/model.h; the ops' *_w16 products, trainer/ops.h): fp32, or 16 bits
 * per weight, bf16 (1 sign, 8 exponent, 7 mantissa bits: fp32's range) or
 * IEEE fp16 (5 exponent, 10 mantissa bits). */
typedef enum { OPS_DTYPE_F32 = 0, OPS_DTYPE_BF16 = 1, OPS_DTYPE_F16 = 2 } ops_dtype;
/* "f32", "bf16" or "f16" (also "fp32", "float32", "bfloat16", "fp16",
 * "float16"; anything else: DFPO_EUSAGE naming the text). */
int ops_dtype_parse(const char *s, ops_dtype *out, dfpo_err *err);
/* "f32", "bf16" or "f16" */
const char *ops_dtype_name(ops_dtype d);
#endif
