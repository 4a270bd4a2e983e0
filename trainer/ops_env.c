#include "trainer/ops_cuda.h"
#include "trainer/trainer.h"

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
