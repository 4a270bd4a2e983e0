#define _XOPEN_SOURCE 700 /* realpath */
/* The real data of ../shared/data (its README lists the files and their
 * official counts). Skipped, saying so, when that folder is absent. The
 * IMDB import of ~57 MB runs once, in one test. */
#include "datasets/datasets.h"
#include "tests/datasets/testlib.h"
#include "tests/support/support.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp[256];
static ds_manifest m;
static dfpo_err err;

static void setup(void) {
  ts_tmpdir(tmp, sizeof tmp);
  char home[512];
  snprintf(home, sizeof home, "%s/home", tmp);
  setenv("DFPO_HOME", home, 1);
  setenv("DFPO_LOG", "error", 1);
  dfpo_log_init();
  dfpo_err_clear(&err);
  cr_assert_eq(ds_manifest_load(&m, NULL, &err), 0, "%s", err.msg);
}

static void teardown(void) {
  ds_manifest_free(&m);
  ts_rmtree(tmp);
}

TestSuite(real_data, .init = setup, .fini = teardown);

static const char *data_or_skip(void) {
  const char *d = ts_shared_data();
  if (!d)
    cr_skip("../shared/data is absent (set DFPO_SHARED_DATA to run the real-data tests)");
  return d;
}

static const ds_split_info *split(const ds_prepared *p, const char *name) {
  for (int i = 0; i < p->n_splits; i++)
    if (!strcmp(p->splits[i].name, name))
      return &p->splits[i];
  cr_assert_fail("no split '%s'", name);
  return NULL;
}

Test(real_data, imdb_verifies_by_content_digest_and_splits_20k_5k_5k) {
  const char *d = data_or_skip();
  char path[4400];
  snprintf(path, sizeof path, "%s/imdb/aclImdb.tar.gz", d);
  const ds_entry *e = ds_manifest_find(&m, "imdb");
  ds_stamp s;
  cr_assert_eq(ds_import(e, path, 0, &s, &err), 0, "%s", err.msg);
  /* A repack: not the official archive's SHA-256, but the same reviews. */
  cr_expect_eq(s.method, DS_BY_CONTENT);
  cr_expect_eq(s.files, 100000);
  cr_expect_str_eq(s.raw_digest,
                   "b00cc6bf6ff859b1ff34cb4995d0dfa5a4eb7f74aceb2238f6d502669203838b");
  ds_prepared p;
  cr_assert_eq(ds_prepare(e, DS_DEFAULT_SEED, &p, &err), 0, "%s", err.msg);
  cr_expect(p.verified);
  cr_expect_eq(split(&p, "train")->records, 20000);
  cr_expect_eq(split(&p, "validation")->records, 5000);
  cr_expect_eq(split(&p, "test")->records, 5000);
  cr_expect_eq(split(&p, "test_full")->records, 25000);
  cr_expect_eq(split(&p, "unsup")->records, 50000);
  /* The seeded split as printed by the independent Python reference:
   * tests/datasets/ref_split.py ../shared/data/imdb/aclImdb.tar.gz 42 */
  const char *const tr[] = {"train/neg/9078_1", "train/neg/11702_4", "train/neg/6358_1"};
  const char *const va[] = {"train/pos/3724_9", "train/pos/1000_8", "train/pos/2734_9"};
  const char *const te[] = {"test/neg/6019_1", "test/pos/7648_7", "test/neg/6884_1"};
  snprintf(path, sizeof path, "%s/train.jsonl", p.dir);
  tl_expect_first_ids(path, tr, 3);
  snprintf(path, sizeof path, "%s/validation.jsonl", p.dir);
  tl_expect_first_ids(path, va, 3);
  snprintf(path, sizeof path, "%s/test.jsonl", p.dir);
  tl_expect_first_ids(path, te, 3);
}

Test(real_data, commongen_dev_verifies_by_file_sha256) {
  const char *d = data_or_skip();
  char src[4400], dir[600], dst[700];
  snprintf(src, sizeof src, "%s/commongen/commongen.dev.jsonl", d);
  snprintf(dir, sizeof dir, "%s/cg", tmp);
  mkdir(dir, 0777);
  /* A folder with the official dev and test_noref files only. */
  for (int i = 0; i < 2; i++) {
    const char *name = i ? "commongen.test_noref.jsonl" : "commongen.dev.jsonl";
    snprintf(src, sizeof src, "%s/commongen/%s", d, name);
    snprintf(dst, sizeof dst, "%s/%s", dir, name);
    cr_assert_eq(symlink(src, dst), 0);
  }
  const ds_entry *e = ds_manifest_find(&m, "commongen");
  ds_stamp s;
  cr_assert_eq(ds_import(e, dir, 0, &s, &err), 0, "%s", err.msg);
  cr_expect_eq(s.method, DS_BY_FILES);
  ds_prepared p;
  cr_assert_eq(ds_prepare(e, DS_DEFAULT_SEED, &p, &err), 0, "%s", err.msg);
  cr_expect(p.verified);
  cr_expect_eq(split(&p, "validation")->records, 993);
  cr_expect_eq(split(&p, "validation")->references, 4018);
  cr_expect_eq(split(&p, "test")->records, 1497);
  cr_expect_eq(split(&p, "test")->references, 0);
}

Test(real_data, rebuilt_commongen_train_only_with_unverified) {
  const char *d = data_or_skip();
  char dir[4400];
  snprintf(dir, sizeof dir, "%s/commongen", d);
  const ds_entry *e = ds_manifest_find(&m, "commongen");
  ds_stamp s;
  cr_expect_eq(ds_import(e, dir, 0, &s, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "commongen.train.jsonl' has no file SHA-256"), "%s", err.msg);
  dfpo_err_clear(&err);
  cr_assert_eq(ds_import(e, dir, 1, &s, &err), 0, "%s", err.msg);
  cr_expect_eq(s.method, DS_UNVERIFIED);
  ds_prepared p;
  cr_assert_eq(ds_prepare(e, DS_DEFAULT_SEED, &p, &err), 0, "%s", err.msg);
  cr_expect_not(p.verified);
  cr_expect_eq(split(&p, "train")->records, 32651);
  cr_expect_eq(split(&p, "train")->references, 67389);
  cr_expect_eq(split(&p, "validation")->records, 993);
}

Test(real_data, rtp_pooled_only_with_unverified) {
  const char *d = data_or_skip();
  char path[4400];
  snprintf(path, sizeof path, "%s/rtp/rtp_pooled.jsonl", d);
  const ds_entry *e = ds_manifest_find(&m, "rtp");
  ds_stamp s;
  cr_expect_eq(ds_import(e, path, 0, &s, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "cannot be verified as rtp"), "%s", err.msg);
  dfpo_err_clear(&err);
  cr_assert_eq(ds_import(e, path, 1, &s, &err), 0, "%s", err.msg);
  cr_expect_not(s.verified);
  ds_prepared p;
  cr_assert_eq(ds_prepare(e, DS_DEFAULT_SEED, &p, &err), 0, "%s", err.msg);
  cr_expect_not(p.verified);
  /* 14,531 records split 85/5/10: 12,351 / 726 / 1,454 */
  cr_expect_eq(split(&p, "train")->records, 12351);
  cr_expect_eq(split(&p, "validation")->records, 726);
  cr_expect_eq(split(&p, "test")->records, 1454);
  /* both texts of every record, less the 24 prompts and 85 continuations
   * without a toxicity score (counted with Python's json module) */
  cr_expect_eq(split(&p, "scored")->records, 2 * 14531 - 24 - 85);
}

Test(real_data, gpt2_assets_verify_by_sha256) {
  const char *d = data_or_skip();
  static const char *const names[][2] = {{"gpt2-encoder", "encoder.json"},
                                         {"gpt2-vocab", "vocab.bpe"}};
  for (int i = 0; i < 2; i++) {
    char path[4400];
    snprintf(path, sizeof path, "%s/gpt2/%s", d, names[i][1]);
    const ds_entry *e = ds_manifest_find(&m, names[i][0]);
    ds_stamp s;
    cr_assert_eq(ds_import(e, path, 0, &s, &err), 0, "%s", err.msg);
    cr_expect_eq(s.method, DS_BY_ARCHIVE);
    char got[4400];
    int verified = 0;
    cr_assert_eq(ds_member_path(e, NULL, got, sizeof got, &verified, &err), 0, "%s", err.msg);
    cr_expect(verified);
    cr_expect(strstr(got, names[i][1]));
  }
}

Test(real_data, fetch_gpt2_bpe_from_a_file_mirror) {
  const char *d = data_or_skip();
  char real[4096], base[4200];
  cr_assert_not_null(realpath(d, real));
  snprintf(base, sizeof base, "file://%s/gpt2", real);
  const char *mirrors[] = {base};
  ds_fetch_opts o;
  ds_fetch_opts_init(&o);
  o.mirrors = mirrors;
  o.n_mirrors = 1;
  o.progress = 0;
  o.retries = 0;
  const ds_entry *e = ds_manifest_find(&m, "gpt2-vocab");
  ds_stamp s;
  cr_assert_eq(ds_fetch(e, &o, &s, &err), 0, "%s", err.msg);
  cr_expect_eq(s.method, DS_BY_ARCHIVE);
  cr_expect(strstr(s.source, "/gpt2/vocab.bpe") && !strncmp(s.source, "file://", 7), "%s",
            s.source);
  cr_expect_eq(ds_verify(e, &s, &err), 0, "%s", err.msg);
}
