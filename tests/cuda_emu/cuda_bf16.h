#pragma once
/* The bf16 conversions ops_cuda.cu uses, as CUDA documents them: round to
 * nearest even; a NaN becomes the canonical 0x7fff (cuda_bf16.hpp's
 * __float2bfloat16_rn keeps NaNs NaN). */
#include <cstdint>
#include <cstring>
struct __nv_bfloat16 {
  unsigned short x;
};
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  __nv_bfloat16 r;
  if ((u & 0x7fffffffu) > 0x7f800000u)
    r.x = 0x7fff;
  else
    r.x = (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  return r;
}
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) {
  return h.x;
}
inline float __uint_as_float(unsigned u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
