/* A CPU emulator of the CUDA subset ops_cuda.cu uses: one OS thread per CUDA
 * thread, blocks run one after another, std::barrier for __syncthreads and
 * per-warp barriers for shuffles and __syncwarp. For checking kernel logic
 * on a machine without a GPU; not part of the project. */
#pragma once
#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
extern thread_local dim3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;
extern thread_local int emu_lane, emu_warp;
extern double emu_shfl[32][32];
extern std::barrier<> *emu_warp_bar[32];
extern std::barrier<> *emu_block_bar;
extern void *emu_dyn_shared;

#define __global__
#define __device__
#define __host__
#define __shared__ static

inline void __syncthreads() {
  emu_block_bar->arrive_and_wait();
}
inline void __syncwarp(unsigned = 0xffffffffu) {
  emu_warp_bar[emu_warp]->arrive_and_wait();
}
inline void __threadfence_block() {}
template <class T> T __shfl_xor_sync(unsigned, T v, int o) {
  emu_shfl[emu_warp][emu_lane] = (double)v;
  emu_warp_bar[emu_warp]->arrive_and_wait();
  double r = emu_shfl[emu_warp][emu_lane ^ o];
  emu_warp_bar[emu_warp]->arrive_and_wait();
  return (T)r;
}

void emu_run(dim3 g, dim3 b, size_t sh, const std::function<void()> &fn);
/* Kernels written as grid-stride loops are correct for any grid: the
 * emulator runs them on at most four blocks (the loops then really stride). */
int emu_grid_stride(const char *name);
template <class K> struct emu_launcher {
  K k;
  dim3 g, b;
  size_t sh;
  template <class... A> void operator()(A... a) {
    emu_run(g, b, sh, [&]() { k(a...); });
  }
};
template <class K>
emu_launcher<K> emu_launch(const char *name, K k, dim3 g, dim3 b, size_t sh = 0) {
  if (emu_grid_stride(name) && g.x > 4)
    g.x = 4;
  return emu_launcher<K>{k, g, b, sh};
}
