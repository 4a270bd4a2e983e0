#include "trainer/device.h"
#include "trainer/ops.h"
#include "trainer/ops_cuda.h"

#include <cblas.h>
#include <dlfcn.h>
#include <omp.h>
#include <string.h>
#include <unistd.h>

#ifdef DFPO_HAVE_CUDA
/* The CUDA driver API as far as the probe needs it, resolved at run time so
 * that a machine without the NVIDIA driver can still run the CPU backend. */
typedef int (*cu_init_fn)(unsigned);
typedef int (*cu_err_fn)(int, const char **);

static void probe_driver(char *reason, size_t n) {
  void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *why = dlerror();
    snprintf(reason, n, "no NVIDIA driver: %s", why ? why : "libcuda.so.1 not found");
    return;
  }
  cu_init_fn cu_init;
  cu_err_fn cu_name, cu_string;
  *(void **)&cu_init = dlsym(h, "cuInit");
  *(void **)&cu_name = dlsym(h, "cuGetErrorName");
  *(void **)&cu_string = dlsym(h, "cuGetErrorString");
  if (!cu_init) {
    snprintf(reason, n, "libcuda.so.1 has no cuInit");
  } else {
    int rc = cu_init(0);
    const char *name = "?", *str = "?";
    if (cu_name)
      cu_name(rc, &name);
    if (cu_string)
      cu_string(rc, &str);
    if (rc != 0)
      snprintf(reason, n, "cuInit failed: %s (%s)", str, name);
  }
  dlclose(h);
}
#endif

void ops_env_probe(ops_env_info *info) {
  memset(info, 0, sizeof *info);
  info->cpu_threads = omp_get_max_threads();
  long on = sysconf(_SC_NPROCESSORS_ONLN);
  info->online_cpus = on > 0 ? (int)on : 0;
  /* The CPU backend calls OpenBLAS single-threaded and splits each product
   * over the OpenMP threads itself (ops_cpu.c), whatever OpenBLAS's own
   * default would be. */
  info->blas_threads = 1;
  snprintf(info->blas, sizeof info->blas, "%s (core %s)", openblas_get_config(),
           openblas_get_corename());
  info->cpu_isa = ops_cpu_isa();
#ifdef DFPO_HAVE_CUDA
  info->cuda_compiled = 1;
  ops_cuda_probe(info);
  if (info->cuda_devices == 0) {
    /* The runtime's message can be vague ("driver version is insufficient")
     * when there is no driver at all; the driver's own answer is clearer. */
    char drv[256] = "";
    probe_driver(drv, sizeof drv);
    if (drv[0]) {
      size_t len = strlen(info->cuda_reason);
      snprintf(info->cuda_reason + len, sizeof info->cuda_reason - len, "%s%s", len ? "; " : "",
               drv);
    }
  }
#else
  snprintf(info->cuda_reason, sizeof info->cuda_reason,
           "this build has no CUDA backend (configured with DFPO_CUDA=OFF or without nvcc)");
#endif
}

/* ------------------------------------------------------ device selection */

static ops_device current = OPS_DEVICE_CPU;

int ops_device_parse(const char *s, ops_device *out, dfpo_err *err) {
  static const struct {
    const char *name;
    ops_device d;
  } names[] = {{"cpu", OPS_DEVICE_CPU}, {"cuda", OPS_DEVICE_CUDA}, {"auto", OPS_DEVICE_AUTO}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (s && strcmp(s, names[i].name) == 0) {
      *out = names[i].d;
      return DFPO_OK;
    }
  return dfpo_err_set(err, DFPO_EUSAGE, "--device must be cpu, cuda or auto, got '%s'", s ? s : "");
}

const char *ops_device_name(ops_device d) {
  return d == OPS_DEVICE_CUDA ? "cuda" : d == OPS_DEVICE_AUTO ? "auto" : "cpu";
}

int ops_dtype_parse(const char *s, ops_dtype *out, dfpo_err *err) {
  static const struct {
    const char *name;
    ops_dtype d;
  } names[] = {{"f32", OPS_DTYPE_F32},   {"fp32", OPS_DTYPE_F32},      {"float32", OPS_DTYPE_F32},
               {"bf16", OPS_DTYPE_BF16}, {"bfloat16", OPS_DTYPE_BF16}, {"f16", OPS_DTYPE_F16},
               {"fp16", OPS_DTYPE_F16},  {"float16", OPS_DTYPE_F16}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (s && strcmp(s, names[i].name) == 0) {
      *out = names[i].d;
      return DFPO_OK;
    }
  return dfpo_err_set(err, DFPO_EUSAGE, "a weight dtype must be f32, bf16 or f16, got '%s'",
                      s ? s : "");
}

const char *ops_dtype_name(ops_dtype d) {
  return d == OPS_DTYPE_BF16 ? "bf16" : d == OPS_DTYPE_F16 ? "f16" : "f32";
}

/* 0 when the CUDA backend can run here, else nonzero with the reason. */
static int cuda_usable(char *reason, size_t n) {
#ifdef DFPO_HAVE_CUDA
  ops_env_info info;
  ops_env_probe(&info);
  if (info.cuda_devices == 0) {
    snprintf(reason, n, "%s", info.cuda_reason);
    return 1;
  }
  return ops_cuda_init(reason, n);
#else
  snprintf(reason, n,
           "this build has no CUDA backend (configured with DFPO_CUDA=OFF or without nvcc)");
  return 1;
#endif
}

int ops_device_resolve(ops_device want, ops_device *got, char *note, size_t n, dfpo_err *err) {
  if (note && n)
    note[0] = 0;
  *got = OPS_DEVICE_CPU;
  if (want == OPS_DEVICE_CPU)
    return DFPO_OK;
  char why[768];
  if (cuda_usable(why, sizeof why) == 0) {
    *got = OPS_DEVICE_CUDA;
    return DFPO_OK;
  }
  if (want == OPS_DEVICE_CUDA)
    return dfpo_err_set(err, DFPO_ERUNTIME, "--device cuda: no usable CUDA device: %s", why);
  if (note && n)
    snprintf(note, n, "--device auto: no usable CUDA device (%s); using the CPU", why);
  return DFPO_OK;
}

void ops_use_device(ops_device d) {
  current = d == OPS_DEVICE_CUDA ? OPS_DEVICE_CUDA : OPS_DEVICE_CPU;
}

ops_device ops_current_device(void) {
  return current;
}

const ops_backend *ops_backend_of(ops_device d) {
#ifdef DFPO_HAVE_CUDA
  if (d == OPS_DEVICE_CUDA)
    return &ops_cuda;
#else
  (void)d;
#endif
  return &ops_cpu;
}

const ops_backend *ops_default_backend(void) {
  return ops_backend_of(current);
}

void ops_set_tf32(int on) {
#ifdef DFPO_HAVE_CUDA
  ops_cuda_set_tf32(on);
#else
  (void)on;
#endif
}

void ops_set_bf16(int on) {
#ifdef DFPO_HAVE_CUDA
  ops_cuda_set_bf16(on);
#else
  (void)on;
#endif
}

int ops_bf16(void) {
#ifdef DFPO_HAVE_CUDA
  return ops_cuda_bf16();
#else
  return 0;
#endif
}

int ops_tf32(void) {
#ifdef DFPO_HAVE_CUDA
  return ops_cuda_tf32();
#else
  return 0;
#endif
}
