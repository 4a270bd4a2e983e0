#include "common/common.h"

#include <criterion/criterion.h>
#include <math.h>

/* Reference: the pcg32-demo of pcg-c-basic (pcg32_srandom_r(&rng, 42u, 54u))
 * prints 0xa15c02b7 0x7b47f409 0xba1d3330 0x83d2f293 0xbfa4784b 0xcbed606e as
 * its first round. The other values below come from a 12-line Python
 * transcription of the same definitions (state = old * 6364136223846793005 +
 * inc; output rotr32(((old >> 18) ^ old) >> 27, old >> 59)), run 2026-11-22. */
Test(rng, matches_pcg32_reference_demo) {
  dfpo_rng r;
  dfpo_rng_init(&r, 42, 54);
  const uint32_t want[] = {0xa15c02b7u, 0x7b47f409u, 0xba1d3330u,
                           0x83d2f293u, 0xbfa4784bu, 0xcbed606eu};
  for (int i = 0; i < 6; i++)
    cr_expect_eq(dfpo_rng_u32(&r), want[i], "draw %d", i);
}

/* Advancing is stepping: n draws made one by one and dfpo_rng_advance(n)
 * leave the same state, for small n (every bit of n's low end), one past a
 * power of two and a large n made of two parts (advancing by a then b is
 * advancing by a + b: checked against a run of 3 million single steps).
 * The normal draws four u32 values (so a thread can start at normal j by
 * advancing 4 j). */
Test(rng, advance_equals_stepping) {
  const uint64_t ns[] = {0, 1, 2, 3, 5, 8, 63, 64, 65, 1000, 4097};
  for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
    dfpo_rng a, b;
    dfpo_rng_init(&a, 7, 11);
    dfpo_rng_init(&b, 7, 11);
    for (uint64_t k = 0; k < ns[i]; k++)
      dfpo_rng_u32(&a);
    dfpo_rng_advance(&b, ns[i]);
    cr_expect_eq(a.state, b.state, "n = %llu", (unsigned long long)ns[i]);
    cr_expect_eq(dfpo_rng_u32(&a), dfpo_rng_u32(&b), "the draw after n = %llu",
                 (unsigned long long)ns[i]);
  }
  dfpo_rng a, b;
  dfpo_rng_init(&a, 1, 2);
  dfpo_rng_init(&b, 1, 2);
  for (int k = 0; k < 3000000; k++)
    dfpo_rng_u32(&a);
  dfpo_rng_advance(&b, 1000000);
  dfpo_rng_advance(&b, 2000000);
  cr_expect_eq(a.state, b.state, "3 million draws against 1 + 2 million of advance");
  dfpo_rng c, d;
  dfpo_rng_init(&c, 3, 2);
  dfpo_rng_init(&d, 3, 2);
  for (int k = 0; k < 5; k++)
    dfpo_rng_normal(&c);
  dfpo_rng_advance(&d, 20);
  cr_expect_eq(c.state, d.state, "five normals are twenty u32 draws");
}

Test(rng, streams_are_different_sequences) {
  dfpo_rng a, b;
  dfpo_rng_init(&a, 0, 1);
  dfpo_rng_init(&b, 0, 2);
  const uint32_t wa[] = {0x0f5deba9u, 0x184296ddu, 0x357643f4u, 0xf8e84c31u};
  const uint32_t wb[] = {0x7aa10266u, 0xfe1a2e6eu, 0xa37c7f0cu, 0x1f9a25c6u};
  for (int i = 0; i < 4; i++) {
    cr_expect_eq(dfpo_rng_u32(&a), wa[i]);
    cr_expect_eq(dfpo_rng_u32(&b), wb[i]);
  }
}

Test(rng, streams_are_independent) {
  /* Same seed, neighbouring streams: over 100k draws the correlation of the
   * uniforms is within 5 sigma of 0 (sigma = 1/sqrt(n)), and the two never
   * lock together. Drawing from one stream never moves the other. */
  enum { N = 100000 };
  dfpo_rng a, b, b2;
  dfpo_rng_init(&a, 1234, DFPO_STREAM_DATA);
  dfpo_rng_init(&b, 1234, DFPO_STREAM_INIT);
  dfpo_rng_init(&b2, 1234, DFPO_STREAM_INIT);
  double sa = 0, sb = 0, sab = 0, saa = 0, sbb = 0;
  int same = 0;
  for (int i = 0; i < N; i++) {
    double x = dfpo_rng_uniform(&a), y = dfpo_rng_uniform(&b);
    sa += x;
    sb += y;
    sab += x * y;
    saa += x * x;
    sbb += y * y;
    same += x == y;
  }
  double cov = sab / N - (sa / N) * (sb / N);
  double corr = cov / sqrt((saa / N - (sa / N) * (sa / N)) * (sbb / N - (sb / N) * (sb / N)));
  cr_expect(fabs(corr) < 5.0 / sqrt(N), "correlation %g", corr);
  cr_expect_eq(same, 0);
  /* b2 was never touched while a ran: it replays b's first draw. */
  dfpo_rng b3;
  dfpo_rng_init(&b3, 1234, DFPO_STREAM_INIT);
  cr_expect_eq(dfpo_rng_u32(&b2), dfpo_rng_u32(&b3));
}

Test(rng, uniform_and_below_match_reference) {
  /* Python reference: ((u32 << 32 | u32) >> 11) * 2**-53 for seed 42 stream 54,
   * and pcg32_boundedrand_r(10) for seed 7 stream 3. */
  dfpo_rng r;
  dfpo_rng_init(&r, 42, 54);
  cr_expect_eq(dfpo_rng_uniform(&r), 0.6303102205231708);
  cr_expect_eq(dfpo_rng_uniform(&r), 0.7270080560154601);
  cr_expect_eq(dfpo_rng_uniform(&r), 0.7486033616113921);
  dfpo_rng_init(&r, 7, 3);
  const uint32_t want[] = {1, 8, 2, 0, 9, 7, 6, 5, 2, 7};
  for (int i = 0; i < 10; i++)
    cr_expect_eq(dfpo_rng_below(&r, 10), want[i], "draw %d", i);
}

Test(rng, normal_has_unit_moments) {
  enum { N = 200000 };
  dfpo_rng r;
  dfpo_rng_init(&r, 99, DFPO_STREAM_INIT);
  double s = 0, ss = 0;
  for (int i = 0; i < N; i++) {
    double z = dfpo_rng_normal(&r);
    cr_assert(isfinite(z));
    s += z;
    ss += z * z;
  }
  double mean = s / N, var = ss / N - mean * mean;
  /* sd of the mean is 1/sqrt(N) = 0.0022; of the variance sqrt(2/N) = 0.0032 */
  cr_expect(fabs(mean) < 0.011, "mean %g", mean);
  cr_expect(fabs(var - 1) < 0.016, "variance %g", var);
}

Test(rng, shuffle_is_a_seeded_permutation) {
  int a[50], b[50], seen[50] = {0};
  for (int i = 0; i < 50; i++)
    a[i] = b[i] = i;
  dfpo_rng r1, r2;
  dfpo_rng_init(&r1, 5, DFPO_STREAM_DATA);
  dfpo_rng_init(&r2, 5, DFPO_STREAM_DATA);
  dfpo_rng_shuffle(&r1, a, 50, sizeof a[0]);
  dfpo_rng_shuffle(&r2, b, 50, sizeof b[0]);
  int moved = 0;
  for (int i = 0; i < 50; i++) {
    cr_expect_eq(a[i], b[i]);
    seen[a[i]]++;
    moved += a[i] != i;
  }
  for (int i = 0; i < 50; i++)
    cr_expect_eq(seen[i], 1);
  cr_expect_gt(moved, 40);
}
