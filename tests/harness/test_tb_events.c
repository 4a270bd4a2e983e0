/* TensorBoard event files (harness/tb_events.c) read back by a reader
 * written here from the format's description (TensorFlow's record_writer
 * and event.proto, as tb_events.h sums them up): each record's length and
 * data checked against a CRC-32C computed bit by bit here (not the
 * writer's table), the Event's fields decoded from the protobuf wire
 * format. */
#include "harness/tb_events.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/support.h"

static uint32_t crc_bitwise(const unsigned char *p, size_t n) {
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++)
      c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1u)));
  }
  return ~c;
}
static uint32_t unmask(uint32_t m) {
  uint32_t r = m - 0xa282ead8u;
  return (r >> 17) | (r << 15);
}
static uint64_t rd_le(const unsigned char *p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--)
    v = v << 8 | p[i];
  return v;
}
static uint64_t rd_varint(const unsigned char *p, size_t n, size_t *i) {
  uint64_t v = 0;
  for (int sh = 0; *i < n && sh < 64; sh += 7) {
    unsigned char b = p[(*i)++];
    v |= (uint64_t)(b & 0x7f) << sh;
    if (!(b & 0x80))
      return v;
  }
  cr_assert_fail("bad varint");
  return 0;
}

typedef struct {
  double wall;
  int64_t step;
  char version[32];
  int n;
  char tags[8][64];
  float vals[8];
} event;

/* one Event message */
static void decode_event(const unsigned char *p, size_t n, event *e) {
  memset(e, 0, sizeof *e);
  size_t i = 0;
  while (i < n) {
    uint64_t key = rd_varint(p, n, &i);
    int field = (int)(key >> 3), wt = (int)(key & 7);
    if (field == 1 && wt == 1) {
      uint64_t u = rd_le(p + i, 8);
      memcpy(&e->wall, &u, 8);
      i += 8;
    } else if (field == 2 && wt == 0) {
      e->step = (int64_t)rd_varint(p, n, &i);
    } else if (field == 3 && wt == 2) {
      size_t l = (size_t)rd_varint(p, n, &i);
      cr_assert(l < sizeof e->version && i + l <= n);
      memcpy(e->version, p + i, l);
      i += l;
    } else if (field == 5 && wt == 2) { /* Summary */
      size_t l = (size_t)rd_varint(p, n, &i), end = i + l;
      cr_assert(end <= n);
      while (i < end) {
        uint64_t k = rd_varint(p, end, &i);
        cr_assert_eq(k, (1u << 3) | 2u, "Summary.value");
        size_t vl = (size_t)rd_varint(p, end, &i), vend = i + vl;
        cr_assert(e->n < 8);
        while (i < vend) {
          uint64_t vk = rd_varint(p, vend, &i);
          if (vk == ((1u << 3) | 2u)) { /* tag */
            size_t tl = (size_t)rd_varint(p, vend, &i);
            cr_assert(tl < 64 && i + tl <= vend);
            memcpy(e->tags[e->n], p + i, tl);
            i += tl;
          } else if (vk == ((2u << 3) | 5u)) { /* simple_value */
            uint32_t u = (uint32_t)rd_le(p + i, 4);
            memcpy(&e->vals[e->n], &u, 4);
            i += 4;
          } else {
            cr_assert_fail("unexpected Summary.Value field %llu", (unsigned long long)vk);
          }
        }
        e->n++;
      }
    } else {
      cr_assert_fail("unexpected Event field %d (wire type %d)", field, wt);
    }
  }
}

/* every record of the file, checked and decoded */
static int read_events(const char *path, event *out, int max) {
  size_t len;
  char *text;
  dfpo_err err;
  cr_assert_eq(dfpo_read_file(path, &text, &len, &err), DFPO_OK, "%s", err.msg);
  const unsigned char *p = (const unsigned char *)text;
  size_t i = 0;
  int n = 0;
  while (i < len) {
    cr_assert(i + 12 <= len, "record header cut at %zu", i);
    uint64_t l = rd_le(p + i, 8);
    cr_assert_eq(unmask((uint32_t)rd_le(p + i + 8, 4)), crc_bitwise(p + i, 8), "length CRC");
    cr_assert(i + 12 + l + 4 <= len, "record data cut at %zu", i);
    cr_assert_eq(unmask((uint32_t)rd_le(p + i + 12 + l, 4)), crc_bitwise(p + i + 12, l),
                 "data CRC of record %d", n);
    cr_assert(n < max);
    decode_event(p + i + 12, l, &out[n++]);
    i += 12 + l + 4;
  }
  free(text);
  return n;
}

Test(tb_events, crc32c_check_value) {
  /* the CRC-32C check value of "123456789" (RFC 3720, appendix B.4) */
  cr_expect_eq(tb_crc32c("123456789", 9), 0xe3069283u);
  cr_expect_eq(crc_bitwise((const unsigned char *)"123456789", 9), 0xe3069283u);
}

Test(tb_events, scalars_read_back) {
  char dir[256];
  ts_tmpdir(dir, sizeof dir);
  tb_writer *w;
  dfpo_err err;
  cr_assert_eq(tb_open(&w, dir, &err), DFPO_OK, "%s", err.msg);
  const char *t1[] = {"train/reward", "val/ppl_ref"};
  double v1[] = {0.25, 123.5};
  cr_assert_eq(tb_scalars(w, 0, t1, v1, 2, &err), DFPO_OK, "%s", err.msg);
  const char *t2[] = {"train/kl_seq"};
  double v2[] = {-0.125};
  cr_assert_eq(tb_scalars(w, 300, t2, v2, 1, &err), DFPO_OK, "%s", err.msg);
  cr_assert_eq(tb_close(w, &err), DFPO_OK, "%s", err.msg);
  /* the one file TensorBoard looks for */
  DIR *d = opendir(dir);
  struct dirent *de;
  char path[600] = "";
  while ((de = readdir(d)))
    if (!strncmp(de->d_name, "events.out.tfevents.", 20))
      snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
  closedir(d);
  cr_assert(path[0], "no events.out.tfevents.* in %s", dir);
  event ev[4];
  int n = read_events(path, ev, 4);
  cr_assert_eq(n, 3);
  cr_expect_str_eq(ev[0].version, "brain.Event:2");
  cr_expect(ev[0].wall > 1.7e9, "wall_time %f", ev[0].wall);
  cr_expect_eq(ev[1].step, 0);
  cr_assert_eq(ev[1].n, 2);
  cr_expect_str_eq(ev[1].tags[0], "train/reward");
  cr_expect_eq(ev[1].vals[0], 0.25f);
  cr_expect_str_eq(ev[1].tags[1], "val/ppl_ref");
  cr_expect_eq(ev[1].vals[1], 123.5f);
  cr_expect_eq(ev[2].step, 300);
  cr_assert_eq(ev[2].n, 1);
  cr_expect_str_eq(ev[2].tags[0], "train/kl_seq");
  cr_expect_eq(ev[2].vals[0], -0.125f);
  ts_rmtree(dir);
}
