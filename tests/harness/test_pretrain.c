/* `dfpo pretrain` on token ids: a tiny model learns a repeating corpus
 * (validation loss falls), and a run stopped mid-way and resumed from its
 * checkpoint ends bit-identical to an uninterrupted one. */
#include "common/common.h"
#include "tests/support/support.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

static void corpus(const char *path, int lines, int shift) {
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  for (int l = 0; l < lines; l++) {
    for (int t = 0; t < 40; t++)
      fprintf(f, "%d ", (l * 3 + t * 7 + shift) % 23 + (t % 5 == 0 ? 23 : 0));
    fputc('\n', f);
  }
  fclose(f);
}

static void run(const char *train, const char *val, const char *out, const char *stop) {
  ts_run r;
  ts_dfpo(&r, "pretrain", "--train", train, "--val", val, "--out", out, "--vocab", "50",
          "--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--n-ctx", "32", "--steps", "40",
          "--batch", "4", "--seq", "16", "--lr", "3e-3", "--warmup", "5", "--eval-every", "20",
          "--ckpt-every", "20", "--seed", "5", stop ? "--stop-after" : NULL, stop, NULL);
  cr_assert_eq(r.status, 0, "dfpo pretrain failed: %s", r.err);
  ts_run_free(&r);
}

Test(pretrain, learns_and_resumes_bit_identically) {
  char dir[256], train[300], val[300], a[300], b[300], ca[320], cb[320], la[320], lb[320];
  ts_tmpdir(dir, sizeof dir);
  snprintf(train, sizeof train, "%s/train.txt", dir);
  snprintf(val, sizeof val, "%s/val.txt", dir);
  snprintf(a, sizeof a, "%s/a", dir);
  snprintf(b, sizeof b, "%s/b", dir);
  corpus(train, 50, 0);
  corpus(val, 10, 1);
  run(train, val, a, NULL);
  run(train, val, b, "27"); /* stops after step 27: checkpoint at 20, log to 27 */
  run(train, val, b, NULL); /* resumes at 20 */
  snprintf(ca, sizeof ca, "%s/checkpoint.bin", a);
  snprintf(cb, sizeof cb, "%s/checkpoint.bin", b);
  snprintf(la, sizeof la, "%s/train.jsonl", a);
  snprintf(lb, sizeof lb, "%s/train.jsonl", b);
  char *da, *db, *ta, *tb;
  size_t na, nb;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(dfpo_read_file(ca, &da, &na, &err), 0, "%s", err.msg);
  cr_assert_eq(dfpo_read_file(cb, &db, &nb, &err), 0, "%s", err.msg);
  cr_expect(na == nb && memcmp(da, db, na) == 0, "resumed checkpoint differs");
  cr_assert_eq(dfpo_read_file(la, &ta, NULL, &err), 0);
  cr_assert_eq(dfpo_read_file(lb, &tb, NULL, &err), 0);
  cr_expect_str_eq(ta, tb, "the resumed log should equal the uninterrupted one");
  /* validation loss at step 20 and 40 (lines 20 and 40), below ln(50) = 3.91 */
  int line = 0;
  double v[2] = {0, 0};
  for (char *p = ta; *p; line++) {
    char *nl = strchr(p, '\n');
    cJSON *o = cJSON_ParseWithLength(p, (size_t)(nl - p));
    const cJSON *vl = cJSON_GetObjectItem(o, "val_loss");
    if (line == 19 || line == 39) {
      cr_assert(cJSON_IsNumber(vl), "line %d lacks val_loss", line + 1);
      v[line == 39] = vl->valuedouble;
    }
    cJSON_Delete(o);
    p = nl + 1;
  }
  cr_expect_eq(line, 40);
  cr_expect_lt(v[1], v[0], "validation loss %.3f -> %.3f should fall", v[0], v[1]);
  cr_expect_lt(v[0], 3.0);
  free(da), free(db), free(ta), free(tb);
  ts_rmtree(dir);
}
