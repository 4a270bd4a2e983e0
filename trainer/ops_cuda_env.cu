#include "trainer/ops_cuda.h"

#include <cuda_runtime.h>
#include <stdio.h>

extern "C" void ops_cuda_probe(ops_env_info *info) {
  int rt = 0;
  cudaRuntimeGetVersion(&rt);
  snprintf(info->cuda_runtime, sizeof info->cuda_runtime, "%d.%d", rt / 1000, (rt % 1000) / 10);
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    snprintf(info->cuda_reason, sizeof info->cuda_reason, "cudaGetDeviceCount: %s (%s)",
             cudaGetErrorString(e), cudaGetErrorName(e));
    info->cuda_devices = 0;
    return;
  }
  if (count == 0) {
    snprintf(info->cuda_reason, sizeof info->cuda_reason, "the CUDA runtime found no device");
    return;
  }
  cudaDeviceProp prop;
  e = cudaGetDeviceProperties(&prop, 0);
  if (e != cudaSuccess) {
    snprintf(info->cuda_reason, sizeof info->cuda_reason, "cudaGetDeviceProperties: %s",
             cudaGetErrorString(e));
    return;
  }
  info->cuda_devices = count;
  /* a name too long for the field is cut; the return value is looked at so
   * that g++'s -Wformat-truncation (nvcc -Xcompiler=-Wall,-Werror) accepts
   * the cut */
  if (snprintf(info->cuda_device, sizeof info->cuda_device, "%s (sm_%d%d, %.1f GiB)", prop.name,
               prop.major, prop.minor,
               (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0)) < 0)
    info->cuda_device[0] = '\0';
}
