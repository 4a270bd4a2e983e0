/* Conversions between fp32 and the 16-bit weight types (bf16, IEEE fp16)
 * on the host (ops.h): integer arithmetic on the bits, so that the result
 * does not depend on the FPU's rounding mode or the compiler's flags. */
#include "trainer/ops.h"

#include <string.h>

static uint32_t bits_of(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return u;
}
static float float_of(uint32_t u) {
  float x;
  memcpy(&x, &u, sizeof x);
  return x;
}

uint16_t ops_f32_to_bf16(float x) {
  uint32_t u = bits_of(x);
  if ((u & 0x7fffffffu) > 0x7f800000u)
    return 0x7fc0; /* NaN: PyTorch's c10::BFloat16 drops the sign and payload */
  /* round to nearest even on the 16 bits dropped; a carry into the
   * exponent is the right answer, up to inf */
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

uint16_t ops_f32_to_f16(float x) {
  uint32_t u = bits_of(x);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  u &= 0x7fffffffu;
  if (u > 0x7f800000u)
    return sign | 0x7e00; /* NaN: quiet, sign kept */
  if (u >= 0x477ff000u)
    return sign | 0x7c00; /* 65520 and up (inf too) round to inf */
  if (u >= 0x38800000u) { /* 2^-14 and up: a normal half */
    u += 0xfffu + ((u >> 13) & 1u);
    return sign | (uint16_t)((u - 0x38000000u) >> 13);
  }
  if (u <= 0x33000000u)
    return sign; /* up to 2^-25 (the tie goes to the even 0) */
  /* a subnormal half: the value in units of 2^-24, rounded to even */
  uint32_t e = u >> 23, m = (u & 0x7fffffu) | 0x800000u, s = 126 - e;
  uint32_t r = m >> s, rem = m & ((1u << s) - 1), half = 1u << (s - 1);
  if (rem > half || (rem == half && (r & 1u)))
    r++;
  return sign | (uint16_t)r;
}

float ops_bf16_to_f32(uint16_t h) {
  return float_of((uint32_t)h << 16);
}

float ops_f16_to_f32(uint16_t h) {
  uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1f, f = h & 0x3ff, bits;
  if (e == 0) {
    if (f == 0) {
      bits = s;
    } else { /* subnormal: normalise */
      e = 127 - 15 + 1;
      while (!(f & 0x400)) {
        f <<= 1;
        e--;
      }
      f &= 0x3ff;
      bits = s | (e << 23) | (f << 13);
    }
  } else if (e == 31) {
    bits = s | 0x7f800000u | (f << 13);
  } else {
    bits = s | ((e + 127 - 15) << 23) | (f << 13);
  }
  return float_of(bits);
}

void ops_f32_to_w16(uint16_t *dst, const float *src, size_t n, int dtype) {
  for (size_t i = 0; i < n; i++)
    dst[i] = dtype == OPS_DTYPE_BF16 ? ops_f32_to_bf16(src[i]) : ops_f32_to_f16(src[i]);
}

void ops_w16_to_f32(float *dst, const uint16_t *src, size_t n, int dtype) {
  if (dtype == OPS_DTYPE_BF16)
    for (size_t i = 0; i < n; i++)
      dst[i] = ops_bf16_to_f32(src[i]);
  else
    for (size_t i = 0; i < n; i++)
      dst[i] = ops_f16_to_f32(src[i]);
}
