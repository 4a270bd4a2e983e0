/* Downloads against a loopback HTTP server started by each test (127.0.0.1,
 * a bounded number of requests and seconds): a full download, a resume
 * after a cut, 404 then the next mirror, 500 then success, wrong bytes, a
 * body over the size, a stalled server, a server that ignores Range. */
#include "datasets/datasets.h"
#include "datasets/ds_internal.h"
#include "tests/datasets/testlib.h"
#include "tests/support/support.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char tmp[256], dest[512], part[600];
static unsigned char body[200000];
static char body_sha[65];
static ds_fetch_opts o;
static dfpo_err err;

static void setup(void) {
  ts_tmpdir(tmp, sizeof tmp);
  snprintf(dest, sizeof dest, "%s/file.bin", tmp);
  snprintf(part, sizeof part, "%s.part", dest);
  char home[512];
  snprintf(home, sizeof home, "%s/home", tmp);
  setenv("DFPO_HOME", home, 1);
  setenv("DFPO_LOG", "error", 1);
  dfpo_log_init();
  dfpo_rng r;
  dfpo_rng_init(&r, 7, 1);
  for (size_t i = 0; i < sizeof body; i++)
    body[i] = (unsigned char)dfpo_rng_u32(&r);
  ds_sha256_buf(body, sizeof body, body_sha);
  tl_fetch_opts(&o);
  dfpo_err_clear(&err);
}

static void teardown(void) {
  ts_rmtree(tmp);
}

TestSuite(fetch, .init = setup, .fini = teardown, .timeout = 30);

static tl_server *serve(const tl_kind *script, size_t n) {
  return tl_server_start(body, sizeof body, script, n, 8, 10.0);
}

static void url(char *buf, size_t n, const tl_server *s, const char *path) {
  snprintf(buf, n, "http://127.0.0.1:%d/%s", tl_server_port(s), path);
}

static void expect_dest_is_body(void) {
  size_t len;
  char *got = tl_read(dest, &len);
  cr_assert_not_null(got, "no %s", dest);
  cr_expect_eq(len, sizeof body);
  cr_expect_eq(memcmp(got, body, sizeof body), 0);
  free(got);
  cr_expect_not(tl_exists(part), ".part left behind");
}

Test(fetch, full_download) {
  tl_kind k[] = {TL_FULL};
  tl_server *s = serve(k, 1);
  char u[128], used[256];
  url(u, sizeof u, s, "file.bin");
  const char *urls[] = {u};
  int rc = ds_download(urls, 1, dest, sizeof body, body_sha, &o, used, sizeof used, &err);
  cr_expect_eq(rc, 0, "%s", err.msg);
  cr_expect_str_eq(used, u);
  cr_expect_eq(tl_server_requests(s), 1);
  cr_expect_str_eq(tl_server_range(s, 0), "");
  tl_server_stop(s);
  expect_dest_is_body();
}

Test(fetch, resume_after_the_server_cuts_the_body) {
  tl_kind k[] = {TL_CUT, TL_FULL};
  tl_server *s = serve(k, 2);
  char u[128];
  url(u, sizeof u, s, "file.bin");
  const char *urls[] = {u};
  int rc = ds_download(urls, 1, dest, sizeof body, body_sha, &o, NULL, 0, &err);
  cr_expect_eq(rc, 0, "%s", err.msg);
  cr_expect_eq(tl_server_requests(s), 2);
  char want[64];
  snprintf(want, sizeof want, "bytes=%zu-", sizeof body / 2);
  cr_expect_str_eq(tl_server_range(s, 1), want, "the second request resumes where the cut was");
  tl_server_stop(s);
  expect_dest_is_body();
}

Test(fetch, resume_from_a_part_left_by_an_earlier_run) {
  FILE *f = fopen(part, "wb");
  fwrite(body, 1, 1234, f);
  fclose(f);
  tl_kind k[] = {TL_FULL};
  tl_server *s = serve(k, 1);
  char u[128];
  url(u, sizeof u, s, "file.bin");
  const char *urls[] = {u};
  cr_expect_eq(ds_download(urls, 1, dest, sizeof body, body_sha, &o, NULL, 0, &err), 0, "%s",
               err.msg);
  cr_expect_str_eq(tl_server_range(s, 0), "bytes=1234-");
  tl_server_stop(s);
  expect_dest_is_body();
}

/* A leftover .part whose bytes are not the file's (another download's, a
 * damaged disk): the resumed file fails its hash, and the good server was
 * blamed ("wrong bytes") and the download failed. Now the .part is thrown
 * away and the file fetched once more from byte 0 before the source is
 * blamed; also when the leftover is already full-size (no request made). */
Test(fetch, corrupt_leftover_part_restarts_from_zero) {
  unsigned char junk[1234];
  memset(junk, 0xa5, sizeof junk);
  FILE *f = fopen(part, "wb");
  fwrite(junk, 1, sizeof junk, f);
  fclose(f);
  tl_kind k[] = {TL_FULL};
  tl_server *s = serve(k, 1);
  char u[128];
  url(u, sizeof u, s, "file.bin");
  const char *urls[] = {u};
  cr_expect_eq(ds_download(urls, 1, dest, sizeof body, body_sha, &o, NULL, 0, &err), 0, "%s",
               err.msg);
  cr_expect_eq(tl_server_requests(s), 2);
  cr_expect_str_eq(tl_server_range(s, 0), "bytes=1234-", "the leftover is resumed first");
  cr_expect_str_eq(tl_server_range(s, 1), "", "then the whole file from byte 0");
  tl_server_stop(s);
  expect_dest_is_body();
  /* a full-size leftover with one byte wrong */
  remove(dest);
  f = fopen(part, "wb");
  fwrite(body, 1, sizeof body, f);
  fclose(f);
  f = fopen(part, "r+b");
  fputc(body[77] ^ 1, f);
  fclose(f);
  s = serve(k, 1);
  url(u, sizeof u, s, "file.bin");
  cr_expect_eq(ds_download(urls, 1, dest, sizeof body, body_sha, &o, NULL, 0, &err), 0, "%s",
               err.msg);
  cr_expect_eq(tl_server_requests(s), 1);
  cr_expect_str_eq(tl_server_range(s, 0), "");
  tl_server_stop(s);
  expect_dest_is_body();
  /* a server whose bytes are wrong is still blamed after the fresh try
   * (its first answer the right tail after the junk, then wrong bytes) */
  remove(dest);
  f = fopen(part, "wb");
  fwrite(junk, 1, sizeof junk, f);
  fclose(f);
  tl_kind w[] = {TL_FULL, TL_WRONG};
  s = serve(w, 2);
  url(u, sizeof u, s, "file.bin");
  cr_expect_eq(ds_download(urls, 1, dest, sizeof body, body_sha, &o, NULL, 0, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "wrong bytes"), "%s", err.msg);
  cr_expect_eq(tl_server_requests(s), 2);
  tl_server_stop(s);
  cr_expect_not(tl_exists(part));
}

/* A download that got no byte from any source left a 0-byte .part behind. */
Test(fetch, failed_download_leaves_no_empty_part) {
  tl_kind k[] = {TL_404};
  tl_server *s = serve(k, 1);
  char u[128];
  url(u, sizeof u, s, "file.bin");
  const char *urls[] = {u};
  cr_expect_eq(ds_download(urls, 1, dest, sizeof body, body_sha, &o, NULL, 0, &err), DFPO_ERUNTIME);
  cr_expect(strstr(err.msg, "HTTP 404"), "%s", err.msg);
  tl_server_stop(s);
  cr_expect_not(tl_exists(dest));
  cr_expect_not(tl_exists(part), "an empty .part left behind");
}

Test(fetch, server_ignoring_range_restarts_cleanly) {
  FILE *f = fopen(part, "wb");
  fwrite("garbage garbage", 1, 15, f);
  fclose(f);
  tl_kind k[] = {TL_IGNORE_RANGE};
  tl_server *s = serve(k, 1);
  char u[128];
  url(u, sizeof u, s, "file.bin");
  const char *urls[] = {u};
  cr_expect_eq(ds_download(urls, 1, dest, sizeof body, body_sha, &o, NULL, 0, &err), 0, "%s",
               err.msg);
  tl_server_stop(s);
  expect_dest_is_body();
}

Test(fetch, not_found_then_the_next_mirror) {
  tl_kind k[] = {TL_404, TL_FULL};
  tl_server *s = serve(k, 2);
  char u1[128], u2[128], used[256];
  url(u1, sizeof u1, s, "mirror1/file.bin");
  url(u2, sizeof u2, s, "mirror2/file.bin");
  const char *urls[] = {u1, u2};
  cr_expect_eq(ds_download(urls, 2, dest, sizeof body, body_sha, &o, used, sizeof used, &err), 0,
               "%s", err.msg);
  cr_expect_str_eq(used, u2);
  cr_expect_eq(tl_server_requests(s), 2, "a 404 is not retried");
  cr_expect_str_eq(tl_server_path(s, 0), "/mirror1/file.bin");
  cr_expect_str_eq(tl_server_path(s, 1), "/mirror2/file.bin");
  tl_server_stop(s);
  expect_dest_is_body();
}

Test(fetch, server_error_then_success) {
  tl_kind k[] = {TL_500, TL_FULL};
  tl_server *s = serve(k, 2);
  char u[128];
  url(u, sizeof u, s, "file.bin");
  const char *urls[] = {u};
  cr_expect_eq(ds_download(urls, 1, dest, sizeof body, body_sha, &o, NULL, 0, &err), 0, "%s",
               err.msg);
  cr_expect_eq(tl_server_requests(s), 2, "a 500 is retried on the same source");
  tl_server_stop(s);
  expect_dest_is_body();
}

Test(fetch, server_errors_until_retries_run_out) {
  tl_kind k[] = {TL_500};
  tl_server *s = serve(k, 1);
  char u[128];
  url(u, sizeof u, s, "file.bin");
  const char *urls[] = {u};
  cr_expect_eq(ds_download(urls, 1, dest, sizeof body, body_sha, &o, NULL, 0, &err), DFPO_ERUNTIME);
  cr_expect(strstr(err.msg, "HTTP 500") && strstr(err.msg, u), "%s", err.msg);
  cr_expect_eq(tl_server_requests(s), 3, "1 attempt + 2 retries");
  tl_server_stop(s);
  cr_expect_not(tl_exists(dest));
}

Test(fetch, wrong_bytes_are_deleted_and_reported) {
  tl_kind k[] = {TL_WRONG};
  tl_server *s = serve(k, 1);
  char u[128];
  url(u, sizeof u, s, "file.bin");
  const char *urls[] = {u};
  cr_expect_eq(ds_download(urls, 1, dest, sizeof body, body_sha, &o, NULL, 0, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "wrong bytes") && strstr(err.msg, body_sha), "%s", err.msg);
  cr_expect_eq(tl_server_requests(s), 1);
  tl_server_stop(s);
  cr_expect_not(tl_exists(dest));
  cr_expect_not(tl_exists(part));
}

Test(fetch, wrong_bytes_then_the_next_source) {
  tl_kind k[] = {TL_WRONG, TL_FULL};
  tl_server *s = serve(k, 2);
  char u1[128], u2[128], used[256];
  url(u1, sizeof u1, s, "bad/file.bin");
  url(u2, sizeof u2, s, "good/file.bin");
  const char *urls[] = {u1, u2};
  cr_expect_eq(ds_download(urls, 2, dest, sizeof body, body_sha, &o, used, sizeof used, &err), 0,
               "%s", err.msg);
  cr_expect_str_eq(used, u2);
  tl_server_stop(s);
  expect_dest_is_body();
}

Test(fetch, body_over_the_size_is_refused) {
  for (int variant = 0; variant < 2; variant++) {
    tl_kind k[] = {variant ? TL_OVER_NOCL : TL_OVER_CL};
    tl_server *s = serve(k, 1);
    char u[128];
    url(u, sizeof u, s, "file.bin");
    const char *urls[] = {u};
    dfpo_err_clear(&err);
    cr_expect_eq(ds_download(urls, 1, dest, sizeof body, body_sha, &o, NULL, 0, &err), DFPO_EDATA);
    cr_expect(strstr(err.msg, "larger than the manifest's 200000 bytes"), "%s", err.msg);
    cr_expect_eq(tl_server_requests(s), 1, "not retried");
    tl_server_stop(s);
    cr_expect_not(tl_exists(dest));
    cr_expect_not(tl_exists(part));
  }
}

Test(fetch, stalled_server_times_out) {
  tl_kind k[] = {TL_STALL};
  tl_server *s = serve(k, 1);
  char u[128];
  url(u, sizeof u, s, "file.bin");
  const char *urls[] = {u};
  o.retries = 0;
  cr_expect_eq(ds_download(urls, 1, dest, sizeof body, body_sha, &o, NULL, 0, &err), DFPO_ERUNTIME);
  cr_expect(strstr(err.msg, "timed out"), "%s", err.msg);
  tl_server_stop(s);
  cr_expect_not(tl_exists(dest));
}

Test(fetch, timeout_is_retried_then_succeeds) {
  tl_kind k[] = {TL_STALL, TL_FULL};
  tl_server *s = serve(k, 2);
  char u[128];
  url(u, sizeof u, s, "file.bin");
  const char *urls[] = {u};
  o.retries = 1;
  cr_expect_eq(ds_download(urls, 1, dest, sizeof body, body_sha, &o, NULL, 0, &err), 0, "%s",
               err.msg);
  cr_expect_eq(tl_server_requests(s), 2);
  tl_server_stop(s);
  expect_dest_is_body();
}

Test(fetch, refused_connection_is_an_error) {
  /* A port nobody listens on (bound, never listened). */
  tl_kind k[] = {TL_FULL};
  tl_server *s = serve(k, 1);
  int port = tl_server_port(s);
  tl_server_stop(s);
  char u[128];
  snprintf(u, sizeof u, "http://127.0.0.1:%d/file.bin", port);
  const char *urls[] = {u};
  o.retries = 1;
  cr_expect_eq(ds_download(urls, 1, dest, sizeof body, body_sha, &o, NULL, 0, &err), DFPO_ERUNTIME);
  cr_expect(strstr(err.msg, u), "%s", err.msg);
}

Test(fetch, fetch_an_entry_through_a_mirror) {
  /* A one-file asset served over HTTP, then imported into the cache. */
  char mpath[600], text[2048];
  snprintf(mpath, sizeof mpath, "%s/manifest.json", tmp);
  snprintf(text, sizeof text,
           "{\"manifest_version\": 1, \"datasets\": [{\"name\": \"blob\", \"version\": \"1\", "
           "\"kind\": \"asset\", \"importer\": \"none\", \"file\": \"blob.bin\", \"format\": "
           "\"file\", \"urls\": [\"http://127.0.0.1:9/official/blob.bin\"], \"size\": %zu, "
           "\"sha256\": \"%s\", \"license\": \"l\", \"citation\": \"c\"}]}",
           sizeof body, body_sha);
  tl_write(mpath, text);
  ds_manifest m;
  cr_assert_eq(ds_manifest_load(&m, mpath, &err), 0, "%s", err.msg);
  tl_kind k[] = {TL_CUT, TL_FULL};
  tl_server *s = serve(k, 2);
  char base[128];
  url(base, sizeof base, s, "mirror/");
  const char *mirrors[] = {base};
  o.mirrors = mirrors;
  o.n_mirrors = 1;
  ds_stamp st;
  cr_expect_eq(ds_fetch(&m.entries[0], &o, &st, &err), 0, "%s", err.msg);
  cr_expect_str_eq(tl_server_path(s, 0), "/mirror/blob.bin");
  cr_expect_eq(st.method, DS_BY_ARCHIVE);
  char want[256];
  snprintf(want, sizeof want, "http://127.0.0.1:%d/mirror/blob.bin", tl_server_port(s));
  cr_expect_str_eq(st.source, want);
  tl_server_stop(s);
  char got[4400];
  int verified = 0;
  cr_assert_eq(ds_member_path(&m.entries[0], NULL, got, sizeof got, &verified, &err), 0, "%s",
               err.msg);
  cr_expect(verified);
  char hex[65];
  cr_assert_eq(ds_sha256_file(got, hex, &err), 0);
  cr_expect_str_eq(hex, body_sha);
  char dl[4400];
  snprintf(dl, sizeof dl, "%s/home/datasets/blob/1/blob.bin", tmp);
  cr_expect_not(tl_exists(dl), "the download is removed after the import");
  ds_manifest_free(&m);
}

/* An asset with a folder lands, after the import, in <cache>/assets/<folder>
 * under its file name, beside the others of that folder; an unpinned one is
 * refused before any download, with its note. */
Test(fetch, assets_land_in_their_folder_and_unpinned_ones_are_refused) {
  char mpath[600], text[3000];
  snprintf(mpath, sizeof mpath, "%s/manifest.json", tmp);
  snprintf(text, sizeof text,
           "{\"manifest_version\": 1, \"datasets\": [{\"name\": \"blob\", \"version\": \"1\", "
           "\"kind\": \"asset\", \"importer\": \"none\", \"file\": \"blob.bin\", \"format\": "
           "\"file\", \"urls\": [\"http://127.0.0.1:9/official/blob.bin\"], \"size\": %zu, "
           "\"sha256\": \"%s\", \"folder\": \"kit\", \"license\": \"l\", \"citation\": \"c\"}, "
           "{\"name\": \"open\", \"version\": \"unknown\", \"kind\": \"asset\", \"importer\": "
           "\"none\", \"file\": \"w.bin\", \"format\": \"file\", \"urls\": [], \"size\": 0, "
           "\"sha256\": \"unknown\", \"note\": \"pass a folder instead\", \"folder\": \"kit\", "
           "\"license\": \"l\", \"citation\": \"c\"}]}",
           sizeof body, body_sha);
  tl_write(mpath, text);
  ds_manifest m;
  cr_assert_eq(ds_manifest_load(&m, mpath, &err), 0, "%s", err.msg);
  tl_kind k[] = {TL_FULL};
  tl_server *s = serve(k, 1);
  char base[128];
  url(base, sizeof base, s, "mirror/");
  const char *mirrors[] = {base};
  o.mirrors = mirrors;
  o.n_mirrors = 1;
  ds_stamp st;
  cr_assert_eq(ds_fetch(&m.entries[0], &o, &st, &err), 0, "%s", err.msg);
  tl_server_stop(s);
  char placed[600], hex[65];
  snprintf(placed, sizeof placed, "%s/home/assets/kit/blob.bin", tmp);
  cr_assert_eq(ds_sha256_file(placed, hex, &err), 0, "%s", err.msg);
  cr_expect_str_eq(hex, body_sha);
  char dir[4096];
  cr_assert_eq(ds_asset_dir("kit", dir, sizeof dir, &err), 0);
  snprintf(placed, sizeof placed, "%s/home/assets/kit", tmp);
  cr_expect_str_eq(dir, placed);
  dfpo_err_clear(&err);
  cr_expect_eq(ds_fetch(&m.entries[1], &o, &st, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "not pinned") && strstr(err.msg, "pass a folder instead"), "%s",
            err.msg);
  ds_manifest_free(&m);
}
