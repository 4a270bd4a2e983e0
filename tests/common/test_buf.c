#include "common/common.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

Test(grow, doubles_from_first_until_need) {
  int *a = NULL;
  size_t cap = 0;
  dfpo_err e;
  dfpo_err_clear(&e);
  cr_assert_eq(dfpo_grow(&a, &cap, 1, sizeof *a, 4, DFPO_NOCAP, &e), DFPO_OK);
  cr_expect_eq(cap, 4, "the first growth takes first");
  a[3] = 7;
  cr_assert_eq(dfpo_grow(&a, &cap, 4, sizeof *a, 4, DFPO_NOCAP, &e), DFPO_OK);
  cr_expect_eq(cap, 4, "need <= cap does nothing");
  /* 4 -> 8 -> 16 -> 32 reaches 19 */
  cr_assert_eq(dfpo_grow(&a, &cap, 19, sizeof *a, 4, DFPO_NOCAP, &e), DFPO_OK);
  cr_expect_eq(cap, 32);
  cr_expect_eq(a[3], 7, "the content moves with the array");
  a[31] = 1;
  free(a);
  char *s = NULL;
  cap = 0;
  cr_assert_eq(dfpo_grow(&s, &cap, 17, 1, 0, DFPO_NOCAP, &e), DFPO_OK);
  cr_expect_eq(cap, 32, "first 0 means 16, doubled once to reach 17");
  free(s);
}

Test(grow, clamps_to_the_cap_and_refuses_past_it) {
  double *a = NULL;
  size_t cap = 0;
  dfpo_err e;
  dfpo_err_clear(&e);
  /* first 8 doubles to 16, over the cap of 10: clamped */
  cr_assert_eq(dfpo_grow(&a, &cap, 9, sizeof *a, 8, 10, &e), DFPO_OK);
  cr_expect_eq(cap, 10);
  double *before = a;
  cr_expect_eq(dfpo_grow(&a, &cap, 11, sizeof *a, 8, 10, &e), DFPO_ERUNTIME);
  cr_expect_str_eq(e.msg, "more than 10 elements (11 asked for)");
  cr_expect_eq(cap, 10, "a refusal leaves the capacity");
  cr_expect_eq(a, before, "and the array");
  free(a);
}

Test(grow, refuses_size_overflow) {
  uint64_t *a = NULL;
  size_t cap = 0;
  dfpo_err e;
  dfpo_err_clear(&e);
  /* SIZE_MAX / 8 + 1 elements of 8 bytes need 2^64 bytes on a 64-bit size_t */
  size_t need = SIZE_MAX / 8 + 1;
  cr_expect_eq(dfpo_grow(&a, &cap, need, 8, 16, DFPO_NOCAP, &e), DFPO_ERUNTIME);
  char want[128];
  snprintf(want, sizeof want, "%zu elements of 8 bytes overflow size_t", need);
  cr_expect_str_eq(e.msg, want);
  cr_expect_null(a);
  cr_expect_eq(cap, 0);
}

Test(grow, doubling_past_the_cap_stops_at_the_cap) {
  /* 6 doubles to 12, past the cap of 10: the capacity is the cap, so the
   * doubling can never wrap (the same clamp as at the size_t limit, which a
   * test cannot reach without asking realloc for 2^64 bytes) */
  short *a = malloc(6 * sizeof *a);
  cr_assert_not_null(a);
  size_t cap = 6;
  dfpo_err e;
  dfpo_err_clear(&e);
  cr_assert_eq(dfpo_grow(&a, &cap, 7, sizeof *a, 0, 10, &e), DFPO_OK);
  cr_expect_eq(cap, 10);
  a[9] = 1;
  free(a);
}

Test(buf, appends_bytes_strings_and_printf) {
  dfpo_buf b = DFPO_BUF_INIT;
  dfpo_err e;
  dfpo_err_clear(&e);
  cr_assert_eq(dfpo_buf_adds(&b, "ab", &e), DFPO_OK);
  cr_assert_eq(dfpo_buf_add(&b, "c\0d", 3, &e), DFPO_OK);
  cr_expect_eq(b.len, 5);
  cr_expect_eq(memcmp(b.data, "abc\0d", 6), 0, "binary content, NUL after it");
  dfpo_buf_reset(&b);
  cr_expect_eq(b.len, 0);
  cr_expect_str_eq(b.data, "");
  cr_assert_eq(dfpo_buf_addf(&b, &e, "%s/%03d", "run", 7), DFPO_OK);
  cr_assert_eq(dfpo_buf_addf(&b, &e, "-%.2f", 0.125), DFPO_OK);
  cr_expect_str_eq(b.data, "run/007-0.12");
  cr_expect_eq(b.len, 12);
  /* 100 lines of 80 bytes: 8000 bytes, past the first 64 */
  char line[81];
  memset(line, 'x', 79);
  line[79] = '\n';
  line[80] = '\0';
  for (int i = 0; i < 100; i++)
    cr_assert_eq(dfpo_buf_adds(&b, line, &e), DFPO_OK);
  cr_expect_eq(b.len, 12 + 8000);
  cr_expect_geq(b.cap, b.len + 1);
  size_t n = 0;
  char *s = dfpo_buf_detach(&b, &n);
  cr_expect_eq(n, 8012);
  cr_expect_eq(strncmp(s, "run/007-0.12xxx", 15), 0);
  cr_expect_eq(s[8011], '\n');
  cr_expect_eq(s[8012], '\0');
  cr_expect_null(b.data, "detach leaves the buffer empty");
  cr_expect_eq(b.len, 0);
  free(s);
  s = dfpo_buf_detach(&b, &n);
  cr_expect_str_eq(s, "", "an empty buffer detaches as \"\"");
  cr_expect_eq(n, 0);
  free(s);
  dfpo_buf_free(&b);
}

Test(buf, refuses_past_its_cap_and_keeps_the_content) {
  dfpo_buf b;
  dfpo_buf_init(&b, 8);
  dfpo_err e;
  dfpo_err_clear(&e);
  cr_assert_eq(dfpo_buf_adds(&b, "12345", &e), DFPO_OK);
  cr_expect_eq(dfpo_buf_adds(&b, "6789", &e), DFPO_ERUNTIME);
  cr_expect_str_eq(e.msg, "more than 8 bytes (5 + 4 asked for)");
  cr_expect_str_eq(b.data, "12345", "a refused append changes nothing");
  cr_expect_eq(dfpo_buf_addf(&b, &e, "%d", 1234), DFPO_ERUNTIME);
  cr_expect_str_eq(b.data, "12345");
  cr_assert_eq(dfpo_buf_addf(&b, &e, "%d", 678), DFPO_OK, "exactly the cap fits");
  cr_expect_str_eq(b.data, "12345678");
  cr_expect_eq(dfpo_buf_reserve(&b, 1, &e), DFPO_ERUNTIME);
  dfpo_buf_free(&b);
  cr_expect_null(b.data);
  cr_expect_eq(b.max, 8, "free keeps the cap");
}

Test(buf, refuses_size_overflow) {
  dfpo_buf b = DFPO_BUF_INIT;
  dfpo_err e;
  dfpo_err_clear(&e);
  cr_assert_eq(dfpo_buf_adds(&b, "abc", &e), DFPO_OK);
  /* 3 + (SIZE_MAX - 3) leaves no byte for the NUL */
  cr_expect_eq(dfpo_buf_reserve(&b, SIZE_MAX - 3, &e), DFPO_ERUNTIME);
  char want[128];
  snprintf(want, sizeof want, "3 + %zu bytes overflow size_t", SIZE_MAX - 3);
  cr_expect_str_eq(e.msg, want);
  cr_expect_str_eq(b.data, "abc");
  dfpo_buf_free(&b);
}

Test(path_fmt, formats_what_fits) {
  char buf[12];
  dfpo_err e;
  dfpo_err_clear(&e);
  /* "/a/b/x.json" is 11 bytes: with the NUL exactly 12 */
  cr_assert_eq(dfpo_path_fmt(buf, sizeof buf, &e, "%s/%s", "/a/b", "x.json"), DFPO_OK);
  cr_expect_str_eq(buf, "/a/b/x.json");
  cr_expect_eq(e.code, DFPO_OK);
}

Test(path_fmt, refuses_to_truncate_and_names_the_path) {
  char buf[12];
  dfpo_err e;
  dfpo_err_clear(&e);
  /* "/a/b/xy.json" is 12 bytes, one too many */
  cr_expect_eq(dfpo_path_fmt(buf, sizeof buf, &e, "%s/%s", "/a/b", "xy.json"), DFPO_ERUNTIME);
  cr_expect_str_eq(e.msg, "path too long: /a/b/xy.json");
  cr_expect_str_eq(buf, "", "no cut name is left to open by mistake");
  char big[5000];
  memset(big, 'd', 4999);
  big[4999] = '\0';
  char path[4096];
  cr_expect_eq(dfpo_path_fmt(path, sizeof path, &e, "%s/f", big), DFPO_ERUNTIME);
  cr_expect_eq(strncmp(e.msg, "path too long: ddd", 18), 0);
  cr_expect_eq(strlen(e.msg), DFPO_ERR_MSG_MAX - 1, "the message is cut, not the path");
}
