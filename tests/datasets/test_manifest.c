/* The manifest: the built-in entries carry the official facts of
 * ../shared/data/README.md (sizes and SHA-256s copied from there), and bad
 * manifests are refused with a message naming the place. */
#include "datasets/datasets.h"

#include <criterion/criterion.h>
#include <string.h>

static ds_manifest m;
static dfpo_err err;

static void load_builtin(void) {
  dfpo_err_clear(&err);
  cr_assert_eq(ds_manifest_load(&m, NULL, &err), 0, "%s", err.msg);
}

static void done(void) {
  ds_manifest_free(&m);
}

TestSuite(manifest, .init = load_builtin, .fini = done);

Test(manifest, builtin_has_the_official_facts) {
  cr_assert_eq(m.n, 7);
  const ds_entry *e = ds_manifest_find(&m, "imdb");
  cr_assert_not_null(e);
  cr_expect_eq(e->size, 84125825);
  cr_expect_str_eq(e->sha256, "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe");
  cr_expect_str_eq(e->content_digest,
                   "b00cc6bf6ff859b1ff34cb4995d0dfa5a4eb7f74aceb2238f6d502669203838b");
  cr_expect_str_eq(e->urls[0], "http://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz");
  cr_expect_eq(e->n_members, 5);
  cr_expect_str_eq(e->members[0].path, "aclImdb/train/pos/*.txt");
  cr_expect(e->max_entries > 100000 && e->max_bytes > 131990302);

  e = ds_manifest_find(&m, "commongen");
  cr_assert_not_null(e);
  cr_expect_eq(e->size, 1845699);
  cr_expect_str_eq(e->sha256, "a3f19ca607da4e874fc5f2dd1f53c13a6788a497f883d74cc3f9a1fcda44c594");
  cr_expect_str_eq(e->members[1].path, "commongen.dev.jsonl");
  cr_expect_str_eq(e->members[1].sha256,
                   "e2ffbc9a49168159cd264edab9827db5adec2577214c2a9b51d56efc72e3777c");
  cr_expect_str_eq(e->members[2].sha256,
                   "c7171e5c2ffd63a73ae8d1685114a2f62cf13858d99f278da676ef3805c848aa");
  cr_expect_null(e->members[0].sha256); /* the official train file's hash is not known */

  e = ds_manifest_find(&m, "rtp");
  cr_assert_not_null(e);
  cr_expect_eq(e->size, 3715984281ULL);
  cr_expect_str_eq(e->sha256, "97e742e6d6f5bc35ba2f503ebcce4c846651005c97a50021c6b82e618db0be46");
  cr_expect_str_eq(e->members[0].path, "realtoxicityprompts-data/prompts.jsonl");

  e = ds_manifest_find(&m, "gpt2-encoder");
  cr_assert_not_null(e);
  cr_expect_eq(e->size, 1042301);
  cr_expect_str_eq(e->sha256, "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783");
  cr_expect_eq(e->n_members, 1);
  cr_expect_str_eq(e->members[0].path, "encoder.json");
  e = ds_manifest_find(&m, "gpt2-vocab");
  cr_assert_not_null(e);
  cr_expect_eq(e->size, 456318);
  cr_expect_str_eq(e->sha256, "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5");
  e = ds_manifest_find(&m, "gpt2-124m");
  cr_assert_not_null(e);
  cr_expect_eq(e->size, 548105171);
  cr_expect_str_eq(e->sha256, "248dfc3911869ec493c76e65bf2fcf7f615828b0254c12b473182f0f81d3a707");
  cr_expect_str_eq(e->folder, "gpt2-124m");
  cr_expect_str_eq(ds_manifest_find(&m, "gpt2-encoder")->folder, "gpt2-tokenizer");
  cr_expect_str_eq(ds_manifest_find(&m, "gpt2-vocab")->folder, "gpt2-tokenizer");
  cr_expect(e->pinned);
  /* lvwerra/gpt2-imdb: its shape, no pin (docs/datasets.md says what was found) */
  e = ds_manifest_find(&m, "gpt2-imdb");
  cr_assert_not_null(e);
  cr_expect_not(e->pinned);
  cr_expect_null(e->sha256);
  cr_expect_eq(e->size, 0);
  cr_expect_eq(e->n_urls, 0);
  cr_expect_str_eq(e->folder, "gpt2-imdb");
  cr_expect_str_eq(e->file, "model.safetensors");
  cr_expect(e->note && strstr(e->note, "--base-model imdb=FOLDER"));
  cr_expect_null(ds_manifest_find(&m, "nope"));
  for (size_t i = 0; i < m.n; i++) {
    cr_expect(m.entries[i].license && m.entries[i].license[0]);
    cr_expect(m.entries[i].citation && m.entries[i].citation[0]);
  }
}

Test(manifest, builtin_equals_the_source_file) {
  char *txt;
  size_t len, blen;
  cr_assert_eq(dfpo_read_file(DFPO_SOURCE_DIR "/datasets/manifest.json", &txt, &len, &err), 0);
  const char *b = ds_manifest_builtin(&blen);
  cr_expect_eq(blen, len);
  cr_expect_eq(memcmp(b, txt, len), 0, "the compiled-in manifest is stale");
  free(txt);
}

/* A valid one-entry manifest with one piece replaced. */
#define ENTRY_HEAD                                                                                 \
  "{\"manifest_version\": 1, \"datasets\": [{\"name\": \"t\", \"version\": \"1\", \"kind\": "      \
  "\"dataset\", \"importer\": \"imdb\", \"file\": \"t.tar.gz\", \"format\": \"tar.gz\", "
#define GOOD_REST                                                                                  \
  "\"urls\": [\"http://x/t.tar.gz\"], \"size\": 10, \"sha256\": "                                  \
  "\"0000000000000000000000000000000000000000000000000000000000000000\", \"members\": "            \
  "[{\"path\": \"a/*.txt\"}], \"limits\": {\"entries\": 5, \"bytes\": 100}, \"license\": \"x\", "  \
  "\"citation\": \"y\"}]}"

static void expect_bad(const char *text, const char *needle) {
  ds_manifest bad;
  dfpo_err e;
  dfpo_err_clear(&e);
  int rc = ds_manifest_parse(&bad, text, strlen(text), "test.json", &e);
  cr_expect_eq(rc, DFPO_EDATA, "accepted: %s", text);
  cr_expect(strstr(e.msg, needle) != NULL, "message '%s' lacks '%s'", e.msg, needle);
  cr_expect(strncmp(e.msg, "test.json", 9) == 0, "message does not name the file: %s", e.msg);
  cr_expect_eq(bad.n, 0);
}

Test(manifest, good_minimal_entry_parses) {
  ds_manifest g;
  const char *t = ENTRY_HEAD GOOD_REST;
  cr_assert_eq(ds_manifest_parse(&g, t, strlen(t), "test.json", &err), 0, "%s", err.msg);
  cr_expect_eq(g.n, 1);
  cr_expect_eq(g.entries[0].max_entries, 5);
  cr_expect_eq(g.entries[0].max_bytes, 100);
  ds_manifest_free(&g);
}

/* An asset whose pin is unknown: sha256 "unknown", size 0, no URL and a
 * note; anything else with "unknown" is refused. A folder belongs to a
 * format "file" asset and is a plain name. */
#define ASSET_HEAD                                                                                 \
  "{\"manifest_version\": 1, \"datasets\": [{\"name\": \"a\", \"version\": \"1\", \"kind\": "      \
  "\"asset\", \"importer\": \"none\", \"file\": \"m.bin\", \"format\": \"file\", \"license\": "    \
  "\"x\", \"citation\": \"y\", "

Test(manifest, unpinned_assets_and_folders) {
  ds_manifest g;
  const char *t = ASSET_HEAD "\"urls\": [], \"size\": 0, \"sha256\": \"unknown\", \"note\": \"use "
                             "a folder\", \"folder\": \"f\"}]}";
  cr_assert_eq(ds_manifest_parse(&g, t, strlen(t), "test.json", &err), 0, "%s", err.msg);
  cr_expect_not(g.entries[0].pinned);
  cr_expect_null(g.entries[0].sha256);
  cr_expect_null(g.entries[0].members[0].sha256);
  cr_expect_str_eq(g.entries[0].note, "use a folder");
  cr_expect_str_eq(g.entries[0].folder, "f");
  ds_manifest_free(&g);
  expect_bad(ASSET_HEAD "\"urls\": [], \"size\": 0, \"sha256\": \"unknown\"}]}",
             "dataset 'a'.note: is needed");
  expect_bad(ASSET_HEAD "\"urls\": [], \"size\": 5, \"sha256\": \"unknown\", \"note\": \"n\"}]}",
             "dataset 'a'.size: must be 0");
  expect_bad(ASSET_HEAD "\"urls\": [\"http://x/m.bin\"], \"size\": 0, \"sha256\": \"unknown\", "
                        "\"note\": \"n\"}]}",
             "dataset 'a'.urls: must be an empty list");
  expect_bad(ASSET_HEAD "\"urls\": [], \"size\": 0, \"sha256\": \"unknown\", \"note\": \"n\", "
                        "\"folder\": \"../up\"}]}",
             "dataset 'a'.folder: must be a folder name");
  expect_bad(ENTRY_HEAD "\"folder\": \"f\", " GOOD_REST, "dataset 't'.folder");
}

Test(manifest, bad_manifests_are_refused_naming_the_place) {
  expect_bad("{\"manifest_version\": 1, \"datasets\": [", "test.json:1:");
  expect_bad("{\"manifest_version\": 1, \"datasets\": []} x", "text after the JSON value");
  expect_bad("{\"manifest_version\": 2, \"datasets\": []}", "manifest_version must be 1");
  expect_bad("{\"manifest_version\": 1, \"datasets\": [], \"extra\": 1}", "extra: unknown key");
  expect_bad("[]", "must be a JSON object");
  expect_bad(ENTRY_HEAD "\"bogus\": 1, " GOOD_REST, "dataset 't'.bogus: unknown key");
  char buf[2048];
  snprintf(buf, sizeof buf, "%s", ENTRY_HEAD GOOD_REST);
  memcpy(strstr(buf, "http://x/"), "ftp://x/t", 9);
  expect_bad(buf, "dataset 't'.urls: every URL must be a string starting http://");
  expect_bad("{\"manifest_version\": 1, \"datasets\": [{\"name\": \"../x\"}]}", "datasets[0].name");
  /* size missing, size negative, size fractional, hash not hex */
  const char *rest_no_size = strstr(GOOD_REST, "\"sha256\"");
  snprintf(buf, sizeof buf, "%s\"urls\": [\"http://x/t\"], %s", ENTRY_HEAD, rest_no_size);
  expect_bad(buf, "dataset 't'.size: missing");
  snprintf(buf, sizeof buf, "%s\"urls\": [\"http://x/t\"], \"size\": -3, %s", ENTRY_HEAD,
           rest_no_size);
  expect_bad(buf, "dataset 't'.size: must be a positive integer");
  snprintf(buf, sizeof buf, "%s\"urls\": [\"http://x/t\"], \"size\": 1.5, %s", ENTRY_HEAD,
           rest_no_size);
  expect_bad(buf, "size: must be a positive integer");
  const char *good = ENTRY_HEAD GOOD_REST;
  snprintf(buf, sizeof buf, "%s", good);
  char *z = strstr(buf, "0000000000");
  z[3] = 'G';
  expect_bad(buf, "dataset 't'.sha256: must be 64 lowercase hex digits");
  snprintf(buf, sizeof buf, "%s", good);
  z = strstr(buf, "a/*.txt");
  memcpy(z, "../x.t", 6);
  expect_bad(buf, "members[0].path");
  snprintf(buf, sizeof buf, "%s", good);
  z = strstr(buf, "\"entries\": 5");
  memcpy(z, "\"entries\": 0", 12);
  expect_bad(buf, "limits.entries: must be a positive integer");
  /* the same entry twice */
  snprintf(buf, sizeof buf, "%s", good);
  size_t l = strlen(buf);
  const char *obj = strchr(good, '[') + 1;
  snprintf(buf + l - 2, sizeof buf - l + 2, ", %s", obj);
  expect_bad(buf, "dataset 't' is listed twice");
  /* a NUL byte inside */
  ds_manifest bad;
  dfpo_err e;
  cr_expect_eq(ds_manifest_parse(&bad, "{\"a\"\0}", 6, "test.json", &e), DFPO_EDATA);
  cr_expect(strstr(e.msg, "NUL") != NULL, "%s", e.msg);
}
