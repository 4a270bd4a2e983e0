/* Hub models against a loopback server that answers with the Hugging Face
 * hub's layout (127.0.0.1, a bounded number of requests and seconds): the
 * API's JSON (GET /api/models/OWNER/NAME/revision/REV?blobs=true: sha,
 * siblings with size, blobId and lfs.sha256) and the file URLs
 * (/OWNER/NAME/resolve/COMMIT/FILE; the LFS file redirects to a CDN path).
 * Names, the digests, which files are taken, a cut LFS body resumed after
 * the redirect, wrong bytes refused with nothing cached, the bearer token
 * kept off the CDN, refs resolving a branch offline, an existing path kept,
 * the lock written, replayed without the API, and refusing other bytes; a
 * commit another process is fetching is left to it (DFPO_ELOCKED). */
#include "datasets/datasets.h"
#include "datasets/ds_internal.h"
#include "tests/datasets/testlib.h"
#include "tests/support/support.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define OWNER "acme"
#define NAME "tiny-bert"
/* a made-up commit id; the server answers with it */
#define COMMIT "0123456789abcdef0123456789abcdef01234567"

static char tmp[256], home[512];
static dfpo_err err;
static ds_fetch_opts o;

typedef struct fake_file {
  const char *path;
  const unsigned char *data;
  size_t len;
  int lfs;
} fake_file;

static unsigned char weights[300000], bin[5000], spm_bytes[2000];
static const char config_text[] = "{\"model_type\": \"distilbert\", \"dim\": 8}\n";
static const char vocab_text[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\n";
static const char tokcfg_text[] = "{\"do_lower_case\": true}\n";
static const char readme_text[] = "# tiny-bert\nnot a file the harness takes\n";

static fake_file files[] = {
    {".gitattributes", (const unsigned char *)"*.bin filter=lfs\n", 17, 0},
    {"README.md", (const unsigned char *)readme_text, sizeof readme_text - 1, 0},
    {"config.json", (const unsigned char *)config_text, sizeof config_text - 1, 0},
    {"model.safetensors", weights, sizeof weights, 1},
    {"pytorch_model.bin", bin, sizeof bin, 1},
    {"onnx/model.onnx", bin, sizeof bin, 1},
    {"tokenizer_config.json", (const unsigned char *)tokcfg_text, sizeof tokcfg_text - 1, 0},
    {"vocab.txt", (const unsigned char *)vocab_text, sizeof vocab_text - 1, 0},
    /* a SentencePiece model (T5's spiece.model; an LFS file on the hub,
     * served plainly here: the LFS route is model.safetensors') */
    {"spiece.model", spm_bytes, sizeof spm_bytes, 0},
};
enum { NFILES = sizeof files / sizeof files[0] };
/* what the harness takes from this repository, in its order */
static const char *const taken[] = {"config.json", "model.safetensors", "vocab.txt",
                                    "tokenizer_config.json", "spiece.model"};

typedef tl_hub fake_hub;

/* The repository above; weights_script scripts the CDN route of
 * model.safetensors, wrong names a file served with wrong bytes, cdn_host
 * "localhost" sends the redirect to another host name. */
static void hub_start(fake_hub *h, const tl_kind *weights_script, int n_weights, const char *wrong,
                      const char *cdn_host, int with_api) {
  tl_hub_file hf[NFILES];
  memset(hf, 0, sizeof hf);
  for (int i = 0; i < NFILES; i++) {
    hf[i].path = files[i].path;
    hf[i].data = files[i].data;
    hf[i].len = files[i].len;
    hf[i].lfs = files[i].lfs;
    if (files[i].data == weights)
      for (int k = 0; k < n_weights; k++)
        hf[i].script[hf[i].n_script++] = weights_script[k];
    if (wrong && !strcmp(files[i].path, wrong)) {
      hf[i].script[0] = TL_WRONG;
      hf[i].n_script = 1;
    }
  }
  tl_hub_start(h, OWNER, NAME, COMMIT, hf, NFILES, cdn_host, with_api, 24);
}

static void hub_stop(fake_hub *h) {
  tl_hub_stop(h);
}

/* The requests' paths, one per line, for messages and searches. */
static void requested(fake_hub *h, char *buf, size_t n) {
  buf[0] = '\0';
  for (int i = 0; i < tl_server_requests(h->s); i++) {
    size_t l = strlen(buf);
    snprintf(buf + l, n - l, "%s\n", tl_server_path(h->s, i));
  }
}

static void setup(void) {
  ts_tmpdir(tmp, sizeof tmp);
  snprintf(home, sizeof home, "%s/home", tmp);
  setenv("DFPO_HOME", home, 1);
  setenv("DFPO_LOG", "error", 1);
  unsetenv("HF_TOKEN");
  unsetenv("HF_HUB_OFFLINE");
  unsetenv("DFPO_HUB_OFFLINE");
  dfpo_log_init();
  dfpo_rng r;
  dfpo_rng_init(&r, 11, 1);
  for (size_t i = 0; i < sizeof weights; i++)
    weights[i] = (unsigned char)dfpo_rng_u32(&r);
  for (size_t i = 0; i < sizeof bin; i++)
    bin[i] = (unsigned char)dfpo_rng_u32(&r);
  for (size_t i = 0; i < sizeof spm_bytes; i++)
    spm_bytes[i] = (unsigned char)dfpo_rng_u32(&r);
  tl_fetch_opts(&o);
  dfpo_err_clear(&err);
}

static void teardown(void) {
  ts_rmtree(tmp);
}

TestSuite(hub, .init = setup, .fini = teardown, .timeout = 60);

static void repo_path(char *buf, size_t n, const char *rest) {
  snprintf(buf, n, "%s/hub/" OWNER "--" NAME "%s", home, rest);
}

Test(hub, names) {
  ds_hub_ref r;
  cr_assert(ds_hub_parse("lvwerra/distilbert-imdb", &r));
  cr_expect_str_eq(r.owner, "lvwerra");
  cr_expect_str_eq(r.name, "distilbert-imdb");
  cr_expect_str_eq(r.revision, "main");
  cr_expect_not(r.explicit_revision);
  cr_assert(ds_hub_parse("lvwerra/distilbert-imdb@refs/pr/1", &r));
  cr_expect_str_eq(r.revision, "refs/pr/1");
  cr_assert(ds_hub_parse("a.b_c/d-e.f@" COMMIT, &r));
  cr_expect(ds_hub_is_commit(r.revision));
  cr_expect_not(ds_hub_is_commit("0123456789ABCDEF0123456789abcdef01234567"), "upper case");
  cr_expect_not(ds_hub_is_commit("main"));
  const char *bad[] = {"gpt2",     "/abs/path", "a/b/c", "./a/b",   "a/b@",    "a/b@../x",
                       "a--b/c",   "a/.c",      "a/c-",  "-a/b",    "a/b@x y", "a/b@/x",
                       "a/b@x//y", "a/b@x/",    "a b/c", "a/b@c@d", "",        "a/"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_expect_not(ds_hub_parse(bad[i], &r), "'%s' taken as a hub name", bad[i]);
}

/* The digests against their reference implementations: `printf 'hello\n' |
 * git hash-object --stdin` prints ce013625030ba8dba906f756967f9e9ca394464a
 * and `printf 'hello\n' | sha256sum` 5891b5b5...be03 (git 2.39, coreutils
 * 9.1). */
Test(hub, digests_agree_with_git_and_sha256sum) {
  char p[600];
  snprintf(p, sizeof p, "%s/hello", tmp);
  tl_write(p, "hello\n");
  ds_got g;
  cr_assert_eq(ds_hash_file(p, 1, &g, &err), 0, "%s", err.msg);
  cr_expect_str_eq(g.git_sha1, "ce013625030ba8dba906f756967f9e9ca394464a");
  cr_expect_str_eq(g.sha256, "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03");
  tl_write(p, "");
  cr_assert_eq(ds_hash_file(p, 1, &g, &err), 0, "%s", err.msg);
  /* git's empty blob */
  cr_expect_str_eq(g.git_sha1, "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
}

/* A fetch takes config.json, model.safetensors (not pytorch_model.bin beside
 * it) and the tokenizer files; the LFS file comes through the redirect, cut
 * once and resumed with a Range request; the folder and the ref appear. */
Test(hub, fetch_takes_the_model_files_and_resumes_a_cut) {
  fake_hub h;
  tl_kind cut[] = {TL_CUT, TL_FULL};
  hub_start(&h, cut, 2, NULL, "127.0.0.1", 1);
  ds_hub_model m;
  cr_assert_eq(ds_hub_fetch(OWNER "/" NAME, &o, 0, &m, &err), 0, "%s", err.msg);
  char got[4096];
  requested(&h, got, sizeof got);
  int n = tl_server_requests(h.s);
  int cdn_requests = 0, range_ok = 0;
  char want_range[64];
  snprintf(want_range, sizeof want_range, "bytes=%zu-", sizeof weights / 2);
  for (int i = 0; i < n; i++)
    if (!strncmp(tl_server_path(h.s, i), "/cdn/", 5)) {
      cdn_requests++;
      range_ok |= !strcmp(tl_server_range(h.s, i), want_range);
    }
  hub_stop(&h);
  cr_expect_eq(cdn_requests, 2, "%s", got);
  cr_expect(range_ok, "the second CDN request resumes at the cut: %s", got);
  cr_expect(strstr(got, "/api/models/" OWNER "/" NAME "/revision/main?blobs=true\n"), "%s", got);
  cr_expect_not(strstr(got, "README.md"), "%s", got);
  cr_expect_not(strstr(got, "pytorch_model.bin"), "%s", got);
  cr_expect_not(strstr(got, "onnx"), "%s", got);
  cr_expect_str_eq(m.commit, COMMIT);
  cr_expect(m.fetched);
  cr_assert_eq(m.n_files, 5);
  char dir[600], p[900];
  repo_path(dir, sizeof dir, "/" COMMIT);
  cr_expect_str_eq(m.dir, dir);
  for (int i = 0; i < 5; i++) {
    cr_expect_str_eq(m.files[i].path, taken[i]);
    int k = 0;
    while (strcmp(files[k].path, taken[i]))
      k++;
    cr_expect_eq(m.files[i].size, files[k].len);
    cr_expect_eq(m.files[i].lfs, files[k].lfs);
    snprintf(p, sizeof p, "%s/%s", dir, taken[i]);
    size_t len;
    char *data = tl_read(p, &len);
    cr_assert_not_null(data, "no %s", p);
    cr_expect(len == files[k].len && !memcmp(data, files[k].data, len), "%s differs", p);
    free(data);
  }
  snprintf(p, sizeof p, "%s/dfpo-hub.json", dir);
  cr_expect(tl_exists(p));
  repo_path(p, sizeof p, "/" COMMIT ".partial");
  cr_expect_not(tl_exists(p), "the partial folder is renamed into place");
  repo_path(p, sizeof p, "/refs/main");
  char *ref = tl_read(p, NULL);
  cr_assert_not_null(ref);
  cr_expect_str_eq(ref, COMMIT "\n");
  free(ref);
  ds_hub_model_free(&m);
}

/* A file whose bytes are not the hub's blob id is refused, naming the file
 * and both ids, and nothing of the commit stays in the cache. */
Test(hub, wrong_bytes_are_refused_and_nothing_is_cached) {
  fake_hub h;
  hub_start(&h, NULL, 0, "vocab.txt", "127.0.0.1", 1);
  ds_hub_model m;
  int rc = ds_hub_fetch(OWNER "/" NAME "@main", &o, 0, &m, &err);
  hub_stop(&h);
  cr_expect_eq(rc, DFPO_EDATA, "%s", err.msg);
  cr_expect(strstr(err.msg, "/resolve/" COMMIT "/vocab.txt") &&
                strstr(err.msg, "wrong bytes (git blob SHA-1") && strstr(err.msg, h.blob[7]) &&
                strstr(err.msg, "the hub says"),
            "%s", err.msg);
  char p[900];
  repo_path(p, sizeof p, "/" COMMIT);
  cr_expect_not(tl_exists(p));
  repo_path(p, sizeof p, "/" COMMIT ".partial");
  cr_expect_not(tl_exists(p), "the refused commit's partial folder is removed");
  repo_path(p, sizeof p, "/refs/main");
  cr_expect_not(tl_exists(p));
}

/* HF_TOKEN goes to the hub as a bearer token, not to the CDN host the LFS
 * file redirects to, and into no message. */
Test(hub, the_token_goes_to_the_hub_only) {
  setenv("HF_TOKEN", "hf_secret_value", 1);
  fake_hub h;
  hub_start(&h, NULL, 0, "vocab.txt", "localhost", 1);
  ds_hub_model m;
  cr_expect_eq(ds_hub_fetch(OWNER "/" NAME, &o, 0, &m, &err), DFPO_EDATA);
  cr_expect_not(strstr(err.msg, "hf_secret_value"), "%s", err.msg);
  int api = 0, cdn = 0;
  for (int i = 0; i < tl_server_requests(h.s); i++) {
    const char *p = tl_server_path(h.s, i), *a = tl_server_auth(h.s, i);
    if (!strncmp(p, "/cdn/", 5)) {
      cdn++;
      cr_expect_str_eq(a, "", "the CDN got %s", a);
    } else {
      api++;
      cr_expect_str_eq(a, "Bearer hf_secret_value", "%s got '%s'", p, a);
    }
  }
  hub_stop(&h);
  cr_expect_eq(cdn, 1);
  cr_expect_geq(api, 3);
}

/* After a fetch, the branch (and the bare name) resolve to the commit's
 * folder with the hub gone; an existing path stays a path; a name the
 * cache lacks fails offline naming the URL and the command. */
Test(hub, a_branch_resolves_offline_and_paths_stay_paths) {
  fake_hub h;
  hub_start(&h, NULL, 0, NULL, "127.0.0.1", 1);
  char dir[4096], want[600];
  cr_assert_eq(ds_hub_resolve(OWNER "/" NAME "@main", &o, dir, sizeof dir, &err), 0, "%s", err.msg);
  int first = tl_server_requests(h.s);
  hub_stop(&h);
  repo_path(want, sizeof want, "/" COMMIT);
  cr_expect_str_eq(dir, want);
  cr_expect_eq(first, 7, "the API and five files (one redirect)");
  setenv("HF_HUB_OFFLINE", "1", 1);
  const char *same[] = {OWNER "/" NAME, OWNER "/" NAME "@main", OWNER "/" NAME "@" COMMIT};
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(ds_hub_resolve(same[i], &o, dir, sizeof dir, &err), 0, "%s: %s", same[i], err.msg);
    cr_expect_str_eq(dir, want, "%s", same[i]);
  }
  dfpo_err_clear(&err);
  cr_expect_eq(ds_hub_resolve(OWNER "/" NAME "@v2", &o, dir, sizeof dir, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "/api/models/" OWNER "/" NAME "/revision/v2?blobs=true") &&
                strstr(err.msg, "`dfpo fetch " OWNER "/" NAME "@v2`") &&
                strstr(err.msg, "HF_HUB_OFFLINE"),
            "%s", err.msg);
  /* a relative path of the same shape that exists is a path */
  char cwd[4096], rel[600];
  cr_assert_not_null(getcwd(cwd, sizeof cwd));
  snprintf(rel, sizeof rel, "%s/" OWNER "/other", tmp);
  cr_assert_eq(dfpo_mkdirs(rel, &err), 0);
  cr_assert_eq(chdir(tmp), 0);
  int rc = ds_hub_resolve(OWNER "/other", &o, dir, sizeof dir, &err);
  cr_assert_eq(chdir(cwd), 0);
  cr_expect_eq(rc, 0, "%s", err.msg);
  cr_expect_str_eq(dir, OWNER "/other");
  /* neither a path nor a hub name */
  dfpo_err_clear(&err);
  cr_expect_eq(ds_hub_resolve("no/such/file", &o, dir, sizeof dir, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "no/such/file") && strstr(err.msg, "No such file"), "%s", err.msg);
}

/* Without the offline switch, an unreachable hub is named with its URL. */
Test(hub, an_unreachable_hub_is_named) {
  fake_hub h;
  hub_start(&h, NULL, 0, NULL, "127.0.0.1", 1);
  hub_stop(&h); /* nobody listens on its port any more */
  o.retries = 0;
  char dir[4096];
  cr_expect_eq(ds_hub_resolve(OWNER "/" NAME, &o, dir, sizeof dir, &err), DFPO_ERUNTIME);
  cr_expect(strstr(err.msg, getenv("HF_ENDPOINT")) && strstr(err.msg, "/revision/main") &&
                strstr(err.msg, "`dfpo fetch " OWNER "/" NAME "`"),
            "%s", err.msg);
}

static void count_models(void *ctx, const ds_hub_model *m) {
  (*(int *)ctx)++;
  cr_expect_str_eq(m->commit, COMMIT);
}

/* The lock records name, revision, commit and every file; replayed into an
 * empty cache it downloads those files without asking the API, and refuses
 * bytes that differ, from the server or in the cache. */
Test(hub, the_lock_is_written_then_replayed) {
  fake_hub h;
  hub_start(&h, NULL, 0, NULL, "127.0.0.1", 1);
  ds_hub_model m;
  char lock[600];
  snprintf(lock, sizeof lock, "%s/models.lock.json", tmp);
  cr_assert_eq(ds_hub_fetch(OWNER "/" NAME "@main", &o, 0, &m, &err), 0, "%s", err.msg);
  hub_stop(&h);
  cr_assert_eq(ds_hub_lock_add(lock, &m, &err), 0, "%s", err.msg);
  cr_assert_eq(ds_hub_lock_add(lock, &m, &err), 0, "%s", err.msg); /* replaced, not added */
  ds_hub_model_free(&m);
  cJSON *j = ts_read_json(lock);
  const cJSON *ms = cJSON_GetObjectItem(j, "models");
  cr_assert_eq(cJSON_GetArraySize(ms), 1);
  const cJSON *e = cJSON_GetArrayItem(ms, 0);
  cr_expect_str_eq(ts_json_str(e, "name"), OWNER "/" NAME);
  cr_expect_str_eq(ts_json_str(e, "revision"), "main");
  cr_expect_str_eq(ts_json_str(e, "commit"), COMMIT);
  const cJSON *fs = cJSON_GetObjectItem(e, "files");
  cr_assert_eq(cJSON_GetArraySize(fs), 5);
  const cJSON *cfg = cJSON_GetArrayItem(fs, 0), *w = cJSON_GetArrayItem(fs, 1);
  cr_expect_str_eq(ts_json_str(cfg, "path"), "config.json");
  cr_expect_str_eq(ts_json_str(cfg, "blob_sha1"), h.blob[2]);
  cr_expect_str_eq(ts_json_str(cfg, "sha256"), h.sha256[2]);
  cr_expect_str_eq(ts_json_str(w, "lfs_sha256"), h.sha256[3]);
  cr_expect_eq(cJSON_GetObjectItem(w, "size")->valuedouble, (double)sizeof weights);
  cJSON_Delete(j);

  /* another machine: an empty cache, a hub without the API */
  char hubdir[600];
  snprintf(hubdir, sizeof hubdir, "%s/hub", home);
  ts_rmtree(hubdir);
  tl_kind cut[] = {TL_CUT, TL_FULL};
  hub_start(&h, cut, 2, NULL, "127.0.0.1", 0);
  int seen = 0;
  cr_assert_eq(ds_hub_lock_replay(lock, &o, 0, count_models, &seen, &err), 0, "%s", err.msg);
  char got[4096];
  requested(&h, got, sizeof got);
  hub_stop(&h);
  cr_expect_eq(seen, 1);
  cr_expect_not(strstr(got, "/api/"), "%s", got);
  char dir[4096], want[600];
  setenv("HF_HUB_OFFLINE", "1", 1);
  cr_assert_eq(ds_hub_resolve(OWNER "/" NAME, &o, dir, sizeof dir, &err), 0, "%s", err.msg);
  repo_path(want, sizeof want, "/" COMMIT);
  cr_expect_str_eq(dir, want, "the replay records main's commit in refs");
  /* replayed again: the cache holds it, checked */
  seen = 0;
  cr_assert_eq(ds_hub_lock_replay(lock, &o, 0, count_models, &seen, &err), 0, "%s", err.msg);
  /* a byte changed in the cache is found */
  char p[900];
  snprintf(p, sizeof p, "%s/config.json", want);
  char *text = tl_read(p, NULL);
  text[2] = 'M';
  tl_write(p, text);
  free(text);
  dfpo_err_clear(&err);
  cr_expect_eq(ds_hub_lock_replay(lock, &o, 0, NULL, NULL, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "config.json has SHA-256") && strstr(err.msg, "differs from"), "%s",
            err.msg);
  /* and a server with other bytes is refused, naming the lock */
  unsetenv("HF_HUB_OFFLINE");
  ts_rmtree(hubdir);
  hub_start(&h, NULL, 0, "vocab.txt", "127.0.0.1", 0);
  dfpo_err_clear(&err);
  cr_expect_eq(ds_hub_lock_replay(lock, &o, 0, NULL, NULL, &err), DFPO_EDATA);
  hub_stop(&h);
  cr_expect(strstr(err.msg, "wrong bytes") && strstr(err.msg, "the lock ") &&
                strstr(err.msg, "vocab.txt"),
            "%s", err.msg);
  cr_expect_not(tl_exists(want));
}

Test(hub, a_malformed_lock_is_refused) {
  char lock[600];
  snprintf(lock, sizeof lock, "%s/l.json", tmp);
  struct {
    const char *text, *want;
  } cases[] = {
      {"{\"lock_version\": 2, \"models\": []}", "'lock_version' must be 1"},
      {"{\"lock_version\": 1, \"models\": [], \"x\": 1}", "unknown key 'x'"},
      {"{\"lock_version\": 1, \"models\": [{\"name\": \"a/b\", \"revision\": \"main\", "
       "\"commit\": \"" COMMIT "\", \"files\": [{\"path\": \"../x\", \"size\": 1, \"sha256\": "
       "\"" COMMIT COMMIT "\"}]}]}",
       "'path' must be a file name"},
      {"{\"lock_version\": 1, \"models\": [{\"name\": \"a/b\", \"revision\": \"main\", "
       "\"commit\": \"abc\", \"files\": []}]}",
       "'commit' must be 40 lowercase hex digits"},
      {"{\"lock_version\": 1, \"models\": []}", "no models in the lock"},
      {"{\"lock_version\": 1,", "not valid JSON"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    tl_write(lock, cases[i].text);
    dfpo_err_clear(&err);
    cr_expect_eq(ds_hub_lock_replay(lock, &o, 0, NULL, NULL, &err), DFPO_EDATA, "case %zu", i);
    cr_expect(strstr(err.msg, cases[i].want) && strstr(err.msg, lock), "case %zu: %s", i, err.msg);
  }
}

/* A sharded checkpoint: the index, then the shards its weight_map names;
 * a repository with only pytorch_model.bin gets it (model_load reads it:
 * tests/trainer/test_pt_bin.c). */
Test(hub, an_index_brings_its_shards) {
  static const char index[] =
      "{\"metadata\": {\"total_size\": 8000}, \"weight_map\": {\"a.weight\": "
      "\"model-00001-of-00002.safetensors\", \"b.weight\": \"model-00002-of-00002.safetensors\", "
      "\"c.weight\": \"model-00001-of-00002.safetensors\"}}";
  tl_hub_file hf[] = {
      {"config.json", config_text, sizeof config_text - 1, 0, {TL_FULL}, 0},
      {"model.safetensors.index.json", index, sizeof index - 1, 0, {TL_FULL}, 0},
      {"model-00001-of-00002.safetensors", weights, 4000, 1, {TL_FULL}, 0},
      {"model-00002-of-00002.safetensors", weights + 4000, 4000, 1, {TL_FULL}, 0},
      {"model-00003-of-00003.safetensors", weights + 8000, 10, 1, {TL_FULL}, 0},
      {"vocab.json", "{}", 2, 0, {TL_FULL}, 0},
      {"merges.txt", "#version: 0.2\n", 14, 0, {TL_FULL}, 0},
  };
  tl_hub h;
  tl_hub_start(&h, OWNER, "sharded", COMMIT, hf, 7, "127.0.0.1", 1, 24);
  ds_hub_model m;
  cr_assert_eq(ds_hub_fetch(OWNER "/sharded", &o, 0, &m, &err), 0, "%s", err.msg);
  tl_hub_stop(&h);
  const char *want[] = {
      "config.json", "model.safetensors.index.json",     "vocab.json",
      "merges.txt",  "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
  cr_assert_eq(m.n_files, 6);
  for (int i = 0; i < 6; i++)
    cr_expect_str_eq(m.files[i].path, want[i]);
  ds_hub_model_free(&m);

  tl_hub_file old[] = {{"config.json", config_text, sizeof config_text - 1, 0, {TL_FULL}, 0},
                       {"pytorch_model.bin", bin, sizeof bin, 1, {TL_FULL}, 0}};
  tl_hub_start(&h, OWNER, "old", COMMIT, old, 2, "127.0.0.1", 1, 24);
  cr_assert_eq(ds_hub_fetch(OWNER "/old", &o, 0, &m, &err), 0, "%s", err.msg);
  tl_hub_stop(&h);
  cr_assert_eq(m.n_files, 2);
  cr_expect_str_eq(m.files[1].path, "pytorch_model.bin");
  ds_hub_model_free(&m);

  /* no config.json: refused before any download */
  tl_hub_start(&h, OWNER, "bare", COMMIT, old + 1, 1, "127.0.0.1", 1, 24);
  dfpo_err_clear(&err);
  cr_expect_eq(ds_hub_fetch(OWNER "/bare", &o, 0, &m, &err), DFPO_EDATA);
  int n = tl_server_requests(h.s);
  tl_hub_stop(&h);
  cr_expect(strstr(err.msg, "has no config.json"), "%s", err.msg);
  cr_expect_eq(n, 1, "only the API was asked");
}

/* A commit the cache has is checked and kept (only the API is asked);
 * --force downloads it again; a cache file damaged by hand is noticed and
 * fetched again. */
Test(hub, a_cached_commit_is_kept_unless_forced_or_damaged) {
  fake_hub h;
  hub_start(&h, NULL, 0, NULL, "127.0.0.1", 1);
  ds_hub_model m;
  cr_assert_eq(ds_hub_fetch(OWNER "/" NAME, &o, 0, &m, &err), 0, "%s", err.msg);
  ds_hub_model_free(&m);
  int n0 = tl_server_requests(h.s);
  cr_assert_eq(ds_hub_fetch(OWNER "/" NAME, &o, 0, &m, &err), 0, "%s", err.msg);
  int n1 = tl_server_requests(h.s);
  cr_expect_not(m.fetched);
  cr_expect_eq(m.n_files, 5);
  ds_hub_model_free(&m);
  cr_expect_eq(n1 - n0, 1, "the API only");
  cr_assert_eq(ds_hub_fetch(OWNER "/" NAME, &o, 1, &m, &err), 0, "%s", err.msg);
  int n2 = tl_server_requests(h.s);
  cr_expect(m.fetched);
  ds_hub_model_free(&m);
  cr_expect_eq(n2 - n1, 7, "--force: the API and every file again");
  char p[900];
  repo_path(p, sizeof p, "/" COMMIT "/vocab.txt");
  tl_write(p, "[PAD]\n");
  cr_assert_eq(ds_hub_fetch(OWNER "/" NAME, &o, 0, &m, &err), 0, "%s", err.msg);
  cr_expect(m.fetched, "a damaged folder is fetched again");
  ds_hub_model_free(&m);
  hub_stop(&h);
  size_t len;
  char *v = tl_read(p, &len);
  cr_expect(v && len == sizeof vocab_text - 1 && !memcmp(v, vocab_text, len));
  free(v);
  /* nothing else beside the folder and the refs (no .partial, no .old.<pid>) */
  char repo[900], names[1024] = "";
  repo_path(repo, sizeof repo, "");
  DIR *d = opendir(repo);
  cr_assert_not_null(d);
  for (struct dirent *de; (de = readdir(d));)
    if (de->d_name[0] != '.') {
      size_t l = strlen(names);
      snprintf(names + l, sizeof names - l, "%s ", de->d_name);
    }
  closedir(d);
  cr_expect(!strcmp(names, COMMIT " refs ") || !strcmp(names, "refs " COMMIT " "), "%s", names);
}

/* Issue 23 (nothing locked the cache): a commit another process is
 * downloading (its lock held by a fork of this test, which waits on a
 * pipe) is refused at once with the holder named, and the other's partial
 * folder is left alone. */
Test(hub, a_commit_being_fetched_by_another_process_is_left_to_it) {
  char final[900], part[900], sentinel[1000];
  repo_path(final, sizeof final, "/" COMMIT);
  repo_path(part, sizeof part, "/" COMMIT ".partial");
  snprintf(sentinel, sizeof sentinel, "%s/model.safetensors", part);
  cr_assert_eq(dfpo_mkdirs(part, &err), 0, "%s", err.msg);
  tl_write(sentinel, "the first process's bytes");
  int ready[2], go[2];
  cr_assert_eq(pipe(ready), 0);
  cr_assert_eq(pipe(go), 0);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    dfpo_lock l = {0};
    char c = dfpo_lock_take(&l, final, NULL) == DFPO_OK ? 'y' : 'n';
    if (write(ready[1], &c, 1) != 1 || read(go[0], &c, 1) < 0)
      _exit(2);
    dfpo_lock_release(&l);
    _exit(0);
  }
  char c = 0;
  cr_assert_eq(read(ready[0], &c, 1), 1);
  cr_assert_eq(c, 'y');
  fake_hub h;
  hub_start(&h, NULL, 0, NULL, "127.0.0.1", 1);
  ds_hub_model m;
  int rc = ds_hub_fetch(OWNER "/" NAME, &o, 0, &m, &err);
  hub_stop(&h);
  cr_assert_eq(write(go[1], "x", 1), 1);
  int st;
  cr_assert_eq(waitpid(pid, &st, 0), pid);
  cr_expect_eq(rc, DFPO_ELOCKED, "%s", err.msg);
  char want[64];
  snprintf(want, sizeof want, "pid %ld on ", (long)pid);
  cr_expect(strstr(err.msg, final) && strstr(err.msg, want), "%s", err.msg);
  size_t len;
  char *v = tl_read(sentinel, &len);
  cr_expect(v && !strcmp(v, "the first process's bytes"), "the partial folder is untouched");
  free(v);
  cr_expect_not(tl_exists(final));
}
