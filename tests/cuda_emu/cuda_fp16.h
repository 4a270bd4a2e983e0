#pragma once
/* The fp16 conversions ops_cuda.cu uses, as CUDA documents them
 * (__float2half_rn: round to nearest even, overflow to inf): written here
 * by way of long double arithmetic on the value, independent of the host's
 * bit-level conversion in trainer/ops_half.c. */
#include <cmath>
#include <cstdint>
struct __half {
  unsigned short x;
};
inline __half __float2half_rn(float f) {
  __half r;
  unsigned short sign = std::signbit(f) ? 0x8000 : 0;
  double a = std::fabs((double)f);
  if (std::isnan(f)) {
    r.x = 0x7fff;
    return r;
  }
  if (a >= 65520.0) {
    r.x = sign | 0x7c00;
    return r;
  }
  int e;
  std::frexp(a, &e);                                /* a = m 2^e, m in [0.5, 1) */
  int q = e - 11 < -24 ? -24 : e - 11;              /* the unit of the last place: 2^q */
  double units = std::nearbyint(std::ldexp(a, -q)); /* ties to even (default mode) */
  double v = std::ldexp(units, q);
  if (v == 0) {
    r.x = sign;
    return r;
  }
  int ev;
  double m = std::frexp(v, &ev); /* v = m 2^ev */
  if (ev - 1 < -14) {            /* subnormal: v / 2^-24 units */
    r.x = sign | (unsigned short)std::ldexp(v, 24);
  } else {
    unsigned frac = (unsigned)std::ldexp(m * 2 - 1, 10);
    r.x = sign | (unsigned short)((ev - 1 + 15) << 10) | (unsigned short)frac;
  }
  return r;
}
inline unsigned short __half_as_ushort(__half h) {
  return h.x;
}
inline __half __ushort_as_half(unsigned short u) {
  __half h;
  h.x = u;
  return h;
}
inline float __half2float(__half h) {
  unsigned e = (h.x >> 10) & 0x1f, f = h.x & 0x3ff;
  double v = e == 0    ? std::ldexp((double)f, -24)
             : e == 31 ? (f ? NAN : INFINITY)
                       : std::ldexp(1.0 + f / 1024.0, (int)e - 15);
  return (float)((h.x & 0x8000) ? -v : v);
}
