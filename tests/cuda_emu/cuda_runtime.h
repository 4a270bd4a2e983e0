#pragma once
#include "emu.h"
typedef int cudaError_t;
enum { cudaSuccess = 0, cudaErrorMemoryAllocation = 2 };
enum cudaMemcpyKind { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
typedef void *cudaStream_t;
struct cudaDeviceProp {
  char name[256];
  int major, minor;
  size_t totalGlobalMem;
};
inline cudaError_t cudaMalloc(void **p, size_t n) {
  *p = malloc(n);
  if (*p)
    memset(*p, 0xA5, n); /* garbage, as fresh device memory */
  return *p ? 0 : 2;
}
inline cudaError_t cudaFree(void *p) {
  free(p);
  return 0;
}
inline cudaError_t cudaMemset(void *p, int v, size_t n) {
  memset(p, v, n);
  return 0;
}
inline cudaError_t cudaMemcpy(void *d, const void *s, size_t n, cudaMemcpyKind) {
  memmove(d, s, n);
  return 0;
}
inline cudaError_t cudaGetLastError() {
  return 0;
}
inline cudaError_t cudaDeviceSynchronize() {
  return 0;
}
inline const char *cudaGetErrorString(cudaError_t) {
  return "emu error";
}
inline const char *cudaGetErrorName(cudaError_t) {
  return "emuError";
}
inline cudaError_t cudaGetDeviceCount(int *c) {
  *c = 1;
  return 0;
}
inline cudaError_t cudaSetDevice(int) {
  return 0;
}
inline cudaError_t cudaRuntimeGetVersion(int *v) {
  *v = 13000;
  return 0;
}
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int) {
  strcpy(p->name, "CPU emulator");
  p->major = 9;
  p->minor = 0;
  p->totalGlobalMem = 1ull << 30;
  return 0;
}
