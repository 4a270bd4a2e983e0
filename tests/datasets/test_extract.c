/* Safe extraction (docs/datasets.md, "Extraction"): archives crafted with libarchive's
 * writer, one per rule, each refused with a message naming the entry, and
 * nothing written outside the target. */
#include "datasets/datasets.h"
#include "tests/datasets/testlib.h"
#include "tests/support/support.h"

#include <criterion/criterion.h>
#include <string.h>
#include <sys/stat.h>

static char tmp[256], dest[512], arch[512];
static dfpo_err err;
static const ds_member all_txt[] = {{"data/*.txt", NULL, 0}};

static void setup(void) {
  ts_tmpdir(tmp, sizeof tmp);
  snprintf(dest, sizeof dest, "%s/out/inner", tmp);
  mkdir(tmp, 0777);
  char out[512];
  snprintf(out, sizeof out, "%s/out", tmp);
  mkdir(out, 0777);
  mkdir(dest, 0777);
  dfpo_err_clear(&err);
}

static void teardown(void) {
  ts_rmtree(tmp);
}

TestSuite(extract, .init = setup, .fini = teardown);

/* Builds the archive and expects refusal with needle in the message. */
static void refused(int zip, const tl_entry *e, size_t n, const char *needle) {
  static int k;
  snprintf(arch, sizeof arch, "%s/a%d.%s", tmp, k, zip ? "zip" : "tar.gz");
  tl_archive(arch, zip, e, n);
  char d[600];
  snprintf(d, sizeof d, "%s/r%d", dest, k++);
  mkdir(d, 0777);
  dfpo_err_clear(&err);
  int rc = ds_extract(arch, d, all_txt, 1, 100, 1 << 20, NULL, NULL, &err);
  cr_expect_eq(rc, DFPO_EDATA, "accepted an archive that should fail with '%s'", needle);
  cr_expect(strstr(err.msg, needle) != NULL, "message '%s' lacks '%s'", err.msg, needle);
  cr_expect(strstr(err.msg, arch) != NULL, "message does not name the archive: %s", err.msg);
}

Test(extract, good_archive_writes_only_members) {
  tl_entry e[] = {{"data/", 'd', NULL, NULL, 0},
                  {"data/a.txt", 'f', "alpha\n", NULL, 0},
                  {"./data/b.txt", 'f', "beta\n", NULL, 0},
                  {"data/skip.bin", 'f', "not a member", NULL, 0},
                  {"README", 'f', "readme", NULL, 0},
                  {"data/inside.txt.lnk", 'l', NULL, "a.txt", 0}};
  for (int zip = 0; zip < 2; zip++) {
    snprintf(arch, sizeof arch, "%s/good.%s", tmp, zip ? "zip" : "tar.gz");
    tl_archive(arch, zip, e, 6);
    char d[600];
    snprintf(d, sizeof d, "%s/x%d", dest, zip);
    mkdir(d, 0777);
    size_t files = 0;
    uint64_t bytes = 0;
    cr_assert_eq(ds_extract(arch, d, all_txt, 1, 100, 1000, &files, &bytes, &err), 0, "%s",
                 err.msg);
    cr_expect_eq(files, 2);
    cr_expect_eq(bytes, 11);
    char p[700];
    snprintf(p, sizeof p, "%s/data/a.txt", d);
    char *t = tl_read(p, NULL);
    cr_expect_str_eq(t, "alpha\n");
    free(t);
    snprintf(p, sizeof p, "%s/data/skip.bin", d);
    cr_expect_not(tl_exists(p));
    snprintf(p, sizeof p, "%s/README", d);
    cr_expect_not(tl_exists(p));
    snprintf(p, sizeof p, "%s/data/inside.txt.lnk", d);
    cr_expect_not(tl_exists(p), "links are never created");
  }
}

Test(extract, absolute_path_refused) {
  tl_entry e[] = {{"/tmp/dfpo-evil.txt", 'f', "x", NULL, 0}};
  refused(0, e, 1, "'/tmp/dfpo-evil.txt' refused: absolute path");
  cr_expect_not(tl_exists("/tmp/dfpo-evil.txt"));
  refused(1, e, 1, "absolute path");
}

Test(extract, dotdot_refused) {
  tl_entry e[] = {{"data/../../evil.txt", 'f', "x", NULL, 0}};
  refused(0, e, 1, "'data/../../evil.txt' refused: '..' in the path");
  tl_entry e2[] = {{"../evil.txt", 'f', "x", NULL, 0}};
  refused(1, e2, 1, "'..' in the path");
  char p[600];
  snprintf(p, sizeof p, "%s/out/evil.txt", tmp);
  cr_expect_not(tl_exists(p));
}

Test(extract, symlink_leaving_refused) {
  tl_entry e[] = {{"data/link", 'l', NULL, "/etc", 0}, {"data/link/x.txt", 'f', "x", NULL, 0}};
  refused(0, e, 2, "symbolic link to '/etc' leaves the target folder");
  tl_entry e2[] = {{"data/up", 'l', NULL, "../../x", 0}};
  refused(0, e2, 1, "symbolic link to '../../x' leaves");
  /* "data/ok" -> "../data/a.txt" stays inside: skipped, not refused */
  tl_entry e3[] = {{"data/ok", 'l', NULL, "../data/a.txt", 0}, {"data/a.txt", 'f', "a", NULL, 0}};
  snprintf(arch, sizeof arch, "%s/in.tar.gz", tmp);
  tl_archive(arch, 0, e3, 2);
  cr_expect_eq(ds_extract(arch, dest, all_txt, 1, 100, 100, NULL, NULL, &err), 0, "%s", err.msg);
}

Test(extract, member_that_is_a_link_refused) {
  tl_entry e[] = {{"data/a.txt", 'l', NULL, "b.txt", 0}};
  refused(0, e, 1, "a member must be a regular file");
}

Test(extract, hardlink_leaving_refused) {
  tl_entry e[] = {{"data/h.txt", 'h', NULL, "../outside", 0}};
  refused(0, e, 1, "hard link to '../outside' leaves the target folder");
  tl_entry e2[] = {{"data/h.txt", 'h', NULL, "/etc/passwd", 0}};
  refused(0, e2, 1, "hard link to '/etc/passwd' leaves");
}

Test(extract, device_and_fifo_refused) {
  tl_entry e[] = {{"data/null", 'c', NULL, NULL, 0}};
  refused(0, e, 1, "'data/null' refused: a device file");
  tl_entry e2[] = {{"data/pipe", 'p', NULL, NULL, 0}};
  refused(0, e2, 1, "'data/pipe' refused: a FIFO");
}

Test(extract, entry_limit) {
  tl_entry e[101];
  char names[101][32];
  for (int i = 0; i < 101; i++) {
    snprintf(names[i], sizeof names[i], "other/%d", i);
    e[i] = (tl_entry){names[i], 'f', "", NULL, 0};
  }
  refused(0, e, 101, "more than 100 entries (the manifest's limit); refused at 'other/100'");
}

Test(extract, byte_limit_stops_a_bomb) {
  /* 4 MiB of zeros compress to a few KiB: the limit counts what is written. */
  tl_entry e[] = {{"data/bomb.txt", 'f', NULL, NULL, 4 << 20}};
  refused(0, e, 1, "expands past 1048576 bytes (the manifest's limit); refused at 'data/bomb.txt'");
  refused(1, e, 1, "expands past 1048576 bytes");
}

Test(extract, duplicate_member_refused) {
  tl_entry e[] = {{"data/a.txt", 'f', "one", NULL, 0}, {"data/a.txt", 'f', "two", NULL, 0}};
  refused(0, e, 2, "'data/a.txt' refused: duplicate member");
}

Test(extract, not_an_archive) {
  snprintf(arch, sizeof arch, "%s/junk.tar.gz", tmp);
  tl_write(arch, "this is not gzip data at all, just text\n");
  int rc = ds_extract(arch, dest, all_txt, 1, 100, 100, NULL, NULL, &err);
  cr_expect_eq(rc, DFPO_EDATA);
  cr_expect(strstr(err.msg, arch) != NULL, "%s", err.msg);
}
