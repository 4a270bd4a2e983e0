#include "common/common.h"

#include <math.h>
#include <string.h>

/* pcg32_random_r and pcg32_srandom_r of pcg-c-basic, re-derived from the
 * paper's definitions: multiplier 6364136223846793005, inc = (stream << 1) | 1,
 * output XSH-RR. */
uint32_t dfpo_rng_u32(dfpo_rng *r) {
  uint64_t old = r->state;
  r->state = old * 6364136223846793005ULL + r->inc;
  uint32_t xorshifted = (uint32_t)(((old >> 18u) ^ old) >> 27u);
  uint32_t rot = (uint32_t)(old >> 59u);
  return (xorshifted >> rot) | (xorshifted << ((-rot) & 31u));
}

void dfpo_rng_init(dfpo_rng *r, uint64_t seed, uint64_t stream) {
  r->state = 0u;
  r->inc = (stream << 1u) | 1u;
  dfpo_rng_u32(r);
  r->state += seed;
  dfpo_rng_u32(r);
}

/* The LCG step s -> a s + c taken n times is s -> A s + C with A = a^n and
 * C = c (a^(n-1) + ... + a + 1); both are built from the bits of n by
 * squaring: the step taken 2^i times composes with itself into the step
 * taken 2^(i+1) times, (a, c) -> (a^2, (a + 1) c), and the powers whose
 * bits are set compose into the whole (F. Brown, "Random number
 * generation with arbitrary strides", 1994). Arithmetic mod 2^64. */
void dfpo_rng_advance(dfpo_rng *r, uint64_t n) {
  uint64_t A = 1u, C = 0u, a = 6364136223846793005ULL, c = r->inc;
  for (; n; n >>= 1) {
    if (n & 1u) {
      A *= a;
      C = C * a + c;
    }
    c *= a + 1u;
    a *= a;
  }
  r->state = A * r->state + C;
}

uint64_t dfpo_rng_u64(dfpo_rng *r) {
  uint64_t hi = dfpo_rng_u32(r);
  return (hi << 32) | dfpo_rng_u32(r);
}

uint32_t dfpo_rng_below(dfpo_rng *r, uint32_t bound) {
  /* Rejection as in pcg32_boundedrand_r: drop the 2^32 mod bound lowest
   * values so every residue is equally likely. */
  uint32_t threshold = (uint32_t)(-bound) % bound;
  for (;;) {
    uint32_t x = dfpo_rng_u32(r);
    if (x >= threshold)
      return x % bound;
  }
}

double dfpo_rng_uniform(dfpo_rng *r) {
  return (double)(dfpo_rng_u64(r) >> 11) * 0x1.0p-53;
}

double dfpo_rng_normal(dfpo_rng *r) {
  double u1 = 1.0 - dfpo_rng_uniform(r); /* (0, 1]: log is finite */
  double u2 = dfpo_rng_uniform(r);
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586476925 * u2);
}

void dfpo_rng_shuffle(dfpo_rng *r, void *base, size_t n, size_t size) {
  unsigned char *b = base;
  unsigned char tmp[256];
  for (size_t i = n; i > 1; i--) {
    size_t j = (size_t)dfpo_rng_below(r, (uint32_t)i);
    if (j == i - 1)
      continue;
    unsigned char *x = b + (i - 1) * size, *y = b + j * size;
    for (size_t off = 0; off < size; off += sizeof tmp) {
      size_t c = size - off < sizeof tmp ? size - off : sizeof tmp;
      memcpy(tmp, x + off, c);
      memcpy(x + off, y + off, c);
      memcpy(y + off, tmp, c);
    }
  }
}
