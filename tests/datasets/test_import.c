/* Import, verify and prepare on small datasets built by the tests: the three
 * ways of verifying, refusal and --unverified, tampering found by verify,
 * the IMDB importer's rules, JSONL errors naming the file and line. */
#include "datasets/datasets.h"
#include "datasets/ds_internal.h"
#include "tests/datasets/testlib.h"
#include "tests/support/support.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A miniature aclImdb tree. Its content digest, e9e22ed9..., was computed
 * with the README's pipeline on these exact files:
 *   find aclImdb/train/pos ... -type f -name '*.txt' | LC_ALL=C sort |
 *   xargs -d '\n' sha256sum | sha256sum */
#define TINY_DIGEST "e9e22ed97e45dcac2f187c8959cf2ffb7c83e55f39bcfab6d817942fffae951e"
static const tl_entry tiny[] = {
    {"aclImdb/README", 'f', "not a member", NULL, 0},
    {"aclImdb/train/pos/0_9.txt", 'f', "A great film.<br /><br />Loved every minute of it.", NULL,
     0},
    {"aclImdb/train/pos/1_8.txt", 'f', "Wonderful acting and a clever plot", NULL, 0},
    {"aclImdb/train/pos/10_10.txt", 'f', "Best movie of the year", NULL, 0},
    {"aclImdb/train/neg/0_2.txt", 'f', "Dull and far too long", NULL, 0},
    {"aclImdb/train/neg/1_1.txt", 'f', "I walked out after an hour", NULL, 0},
    {"aclImdb/train/neg/2_3.txt", 'f', "Bad", NULL, 0},
    {"aclImdb/train/unsup/0_0.txt", 'f', "Some unlabeled text here", NULL, 0},
    {"aclImdb/train/unsup/1_0.txt", 'f', "More unlabeled words", NULL, 0},
    {"aclImdb/test/pos/0_10.txt", 'f', "Moving and beautifully shot", NULL, 0},
    {"aclImdb/test/pos/1_7.txt", 'f', "A fine cast", NULL, 0},
    {"aclImdb/test/neg/0_4.txt", 'f', "Boring", NULL, 0},
    {"aclImdb/test/neg/1_2.txt", 'f', "Not worth the ticket", NULL, 0}};
#define NTINY (sizeof tiny / sizeof tiny[0])

static char tmp[256], home[512], arch[512], zip[512];
static char sha[65];
static ds_manifest m;
static const ds_entry *e;
static dfpo_err err;

/* A manifest whose "imdb" entry is the tiny tar.gz (archive SHA-256) with the
 * tiny content digest, and a "cg" CommonGen entry with file hashes. */
static void write_manifest(const char *archive_sha, const char *dev_sha) {
  char path[600], text[4096];
  snprintf(path, sizeof path, "%s/manifest.json", tmp);
  snprintf(text, sizeof text,
           "{\"manifest_version\": 1, \"datasets\": ["
           "{\"name\": \"imdb\", \"version\": \"t\", \"kind\": \"dataset\", \"importer\": "
           "\"imdb\", \"file\": \"tiny.tar.gz\", \"format\": \"tar.gz\", \"urls\": "
           "[\"http://127.0.0.1:9/tiny.tar.gz\"], \"size\": 100, \"sha256\": \"%s\", "
           "\"content_digest\": \"%s\", \"members\": ["
           "{\"path\": \"aclImdb/train/pos/*.txt\", \"required\": true},"
           "{\"path\": \"aclImdb/train/neg/*.txt\", \"required\": true},"
           "{\"path\": \"aclImdb/train/unsup/*.txt\", \"required\": true},"
           "{\"path\": \"aclImdb/test/pos/*.txt\", \"required\": true},"
           "{\"path\": \"aclImdb/test/neg/*.txt\", \"required\": true}],"
           "\"limits\": {\"entries\": 100, \"bytes\": 100000}, \"license\": \"l\", "
           "\"citation\": \"c\"},"
           "{\"name\": \"cg\", \"version\": \"t\", \"kind\": \"dataset\", \"importer\": "
           "\"commongen\", \"file\": \"cg.zip\", \"format\": \"zip\", \"urls\": "
           "[\"http://127.0.0.1:9/cg.zip\"], \"size\": 100, \"sha256\": "
           "\"%064d\", \"members\": [{\"path\": \"commongen.train.jsonl\"},"
           "{\"path\": \"commongen.dev.jsonl\", \"sha256\": \"%s\"},"
           "{\"path\": \"commongen.test_noref.jsonl\"}],"
           "\"limits\": {\"entries\": 10, \"bytes\": 100000}, \"license\": \"l\", "
           "\"citation\": \"c\"}]}",
           archive_sha, TINY_DIGEST, 0, dev_sha);
  tl_write(path, text);
  ds_manifest_free(&m);
  dfpo_err_clear(&err);
  cr_assert_eq(ds_manifest_load(&m, path, &err), 0, "%s", err.msg);
  e = ds_manifest_find(&m, "imdb");
}

static void setup(void) {
  ts_tmpdir(tmp, sizeof tmp);
  snprintf(home, sizeof home, "%s/home", tmp);
  setenv("DFPO_HOME", home, 1);
  setenv("DFPO_LOG", "error", 1);
  dfpo_log_init();
  snprintf(arch, sizeof arch, "%s/tiny.tar.gz", tmp);
  snprintf(zip, sizeof zip, "%s/tiny.zip", tmp);
  tl_archive(arch, 0, tiny, NTINY);
  tl_archive(zip, 1, tiny, NTINY);
  dfpo_err_clear(&err);
  cr_assert_eq(ds_sha256_file(arch, sha, &err), 0);
  memset(&m, 0, sizeof m);
  write_manifest(sha, "0000000000000000000000000000000000000000000000000000000000000000");
}

static void teardown(void) {
  ds_manifest_free(&m);
  ts_rmtree(tmp);
}

TestSuite(import, .init = setup, .fini = teardown);

Test(import, sha256_known_vectors) {
  char hex[65];
  /* FIPS 180-2, appendix B.1, and the empty message. */
  ds_sha256_buf("abc", 3, hex);
  cr_expect_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  ds_sha256_buf("", 0, hex);
  cr_expect_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

Test(import, content_digest_matches_the_sha256sum_pipeline) {
  char d[600], hex[65];
  snprintf(d, sizeof d, "%s/tree", tmp);
  mkdir(d, 0777);
  size_t files = 0;
  cr_assert_eq(ds_extract(arch, d, NULL, 0, 100, 100000, &files, NULL, &err), 0, "%s", err.msg);
  cr_expect_eq(files, NTINY);
  cr_assert_eq(ds_content_digest(d, e->members, e->n_members, hex, &files, &err), 0, "%s", err.msg);
  cr_expect_eq(files, NTINY - 1);
  cr_expect_str_eq(hex, TINY_DIGEST);
}

Test(import, archive_sha256_then_verify_and_list_state) {
  ds_stamp s;
  cr_assert_eq(ds_import(e, arch, 0, &s, &err), 0, "%s", err.msg);
  cr_expect_eq(s.method, DS_BY_ARCHIVE);
  cr_expect(s.verified);
  cr_expect_eq(s.files, 12);
  cr_expect_str_eq(s.sha256, sha);
  cr_expect_str_eq(s.raw_digest, TINY_DIGEST);
  ds_stamp r;
  cr_assert_eq(ds_stamp_read(e, &r, &err), 0, "%s", err.msg);
  cr_expect_str_eq(r.raw_digest, TINY_DIGEST);
  cr_expect_eq(r.method, DS_BY_ARCHIVE);
  cr_expect_eq(ds_verify(e, &r, &err), 0, "%s", err.msg);
  char p[700];
  snprintf(p, sizeof p, "%s/datasets/imdb/t/raw/aclImdb/README", home);
  cr_expect_not(tl_exists(p), "non-members are not extracted");
}

Test(import, repacked_zip_and_folder_verify_by_content_digest) {
  ds_stamp s;
  cr_assert_eq(ds_import(e, zip, 0, &s, &err), 0, "%s", err.msg);
  cr_expect_eq(s.method, DS_BY_CONTENT);
  /* a folder holding aclImdb/, and the aclImdb folder itself */
  char d[600], d2[700];
  snprintf(d, sizeof d, "%s/unpacked", tmp);
  mkdir(d, 0777);
  cr_assert_eq(ds_extract(arch, d, NULL, 0, 100, 100000, NULL, NULL, &err), 0, "%s", err.msg);
  cr_assert_eq(ds_import(e, d, 0, &s, &err), 0, "%s", err.msg);
  cr_expect_eq(s.method, DS_BY_CONTENT);
  cr_expect_str_eq(s.sha256, "");
  snprintf(d2, sizeof d2, "%s/aclImdb", d);
  cr_assert_eq(ds_import(e, d2, 0, &s, &err), 0, "%s", err.msg);
  cr_expect_eq(s.method, DS_BY_CONTENT);
  cr_expect_eq(s.files, 12);
}

Test(import, unverifiable_is_refused_and_the_cache_kept) {
  ds_stamp s;
  cr_assert_eq(ds_import(e, arch, 0, &s, &err), 0, "%s", err.msg);
  /* One review changed: neither the archive hash nor the content digest. */
  tl_entry changed[NTINY];
  memcpy(changed, tiny, sizeof tiny);
  changed[6].data = "Bad!";
  char bad[600];
  snprintf(bad, sizeof bad, "%s/changed.tar.gz", tmp);
  tl_archive(bad, 0, changed, NTINY);
  dfpo_err_clear(&err);
  cr_expect_eq(ds_import(e, bad, 0, &s, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "cannot be verified as imdb t") && strstr(err.msg, "--unverified") &&
                strstr(err.msg, "content digest of its 12 member files"),
            "%s", err.msg);
  ds_stamp r;
  cr_assert_eq(ds_verify(e, &r, &err), 0, "the earlier import must survive: %s", err.msg);
  cr_expect_eq(r.method, DS_BY_ARCHIVE);
  char p[700];
  snprintf(p, sizeof p, "%s/datasets/imdb/t/raw.tmp.%ld", home, (long)getpid());
  cr_expect_not(tl_exists(p), "temporary extraction left behind");

  /* --unverified: imported, stamped and prepared as unverified */
  cr_assert_eq(ds_import(e, bad, 1, &s, &err), 0, "%s", err.msg);
  cr_expect_eq(s.method, DS_UNVERIFIED);
  cr_expect_not(s.verified);
  ds_prepared pr;
  cr_assert_eq(ds_prepare(e, 42, &pr, &err), 0, "%s", err.msg);
  cr_expect_not(pr.verified);
  ds_prepared back;
  cr_assert_eq(ds_prepared_read(e, &back, &err), 0, "%s", err.msg);
  cr_expect_not(back.verified);
}

Test(import, missing_required_member_refused) {
  tl_entry part[3] = {tiny[1], tiny[4], tiny[7]};
  char p[600];
  snprintf(p, sizeof p, "%s/part.tar.gz", tmp);
  tl_archive(p, 0, part, 3);
  ds_stamp s;
  cr_expect_eq(ds_import(e, p, 1, &s, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "no file matches the member 'aclImdb/test/pos/*.txt'"), "%s", err.msg);
  cr_expect_eq(ds_stamp_read(e, &s, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "not in the cache"), "%s", err.msg);
}

Test(import, verify_finds_tampering) {
  ds_stamp s;
  cr_assert_eq(ds_import(e, arch, 0, &s, &err), 0, "%s", err.msg);
  char p[700];
  snprintf(p, sizeof p, "%s/datasets/imdb/t/raw/aclImdb/test/neg/0_4.txt", home);
  tl_write(p, "Boring!");
  cr_expect_eq(ds_verify(e, &s, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "changed since the import"), "%s", err.msg);
  unlink(p);
  cr_expect_eq(ds_verify(e, &s, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "11 files"), "%s", err.msg);
}

Test(import, imdb_text_rules) {
  char t[] = "One<br />two<br/>three<br>four <b>bold</b>";
  size_t n = ds_imdb_clean(t, strlen(t));
  cr_expect_str_eq(t, "One\ntwo\nthree\nfour <b>bold</b>");
  cr_expect_eq(n, strlen(t));
  /* 50% of the words, the text kept as written up to the last one */
  const char *r = "one two  three\nfour five";
  cr_expect_eq(ds_imdb_prompt_len(r, strlen(r)), strlen("one two"));
  const char *r2 = "a b c d";
  cr_expect_eq(ds_imdb_prompt_len(r2, strlen(r2)), strlen("a b"));
  cr_expect_eq(ds_imdb_prompt_len("  Bad ", 6), 5, "one word: the prompt is that word");
  cr_expect_eq(ds_imdb_prompt_len("   ", 3), 0);
}

static cJSON *read_lines(const char *path, size_t *n) {
  ds_jsonl j;
  cr_assert_eq(ds_jsonl_open(&j, path, &err), 0, "%s", err.msg);
  cJSON *arr = cJSON_CreateArray(), *o;
  *n = 0;
  while (ds_jsonl_next(&j, &o, &err) == 0 && o) {
    cJSON_AddItemToArray(arr, o);
    (*n)++;
  }
  cr_expect_eq(err.code, 0, "%s", err.msg);
  ds_jsonl_close(&j);
  return arr;
}

Test(import, imdb_prepare_splits_and_records) {
  ds_stamp s;
  cr_assert_eq(ds_import(e, arch, 0, &s, &err), 0, "%s", err.msg);
  ds_prepared p;
  cr_assert_eq(ds_prepare(e, 42, &p, &err), 0, "%s", err.msg);
  cr_expect(p.verified);
  cr_assert_eq(p.n_splits, 5);
  const char *names[] = {"train", "validation", "test", "test_full", "unsup"};
  size_t counts[] = {5, 1, 4, 4, 2};
  for (int i = 0; i < 5; i++) {
    cr_expect_str_eq(p.splits[i].name, names[i]);
    cr_expect_eq(p.splits[i].records, counts[i], "%s", names[i]);
  }
  char path[4400];
  snprintf(path, sizeof path, "%s/test_full.jsonl", p.dir);
  size_t n;
  cJSON *arr = read_lines(path, &n);
  cr_assert_eq(n, 4);
  /* sorted order: neg before pos, names bytewise */
  const cJSON *r0 = cJSON_GetArrayItem(arr, 0), *r3 = cJSON_GetArrayItem(arr, 3);
  cr_expect_str_eq(cJSON_GetObjectItem(r0, "id")->valuestring, "test/neg/0_4");
  cr_expect_eq(cJSON_GetObjectItem(r0, "label")->valueint, 0);
  cr_expect_eq(cJSON_GetObjectItem(r0, "rating")->valueint, 4);
  cr_expect_str_eq(cJSON_GetObjectItem(r3, "id")->valuestring, "test/pos/1_7");
  cr_expect_eq(cJSON_GetObjectItem(r3, "label")->valueint, 1);
  cr_expect_str_eq(cJSON_GetObjectItem(r3, "prompt")->valuestring, "A");
  cr_expect_str_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(r3, "references"), 0)->valuestring,
                   "A fine cast");
  cJSON_Delete(arr);

  /* the <br /> review: 8 words (A great film. Loved every minute of it.) ->
   * a 4-word prompt, the newlines kept */
  size_t nt, nv;
  snprintf(path, sizeof path, "%s/train.jsonl", p.dir);
  cJSON *tr = read_lines(path, &nt);
  snprintf(path, sizeof path, "%s/validation.jsonl", p.dir);
  cJSON *va = read_lines(path, &nv);
  int found = 0;
  char ids[6][64];
  int k = 0;
  for (cJSON *a = tr; a; a = a == tr ? va : NULL)
    for (const cJSON *r = a->child; r; r = r->next) {
      const char *id = cJSON_GetObjectItem(r, "id")->valuestring;
      snprintf(ids[k++], sizeof ids[0], "%s", id);
      if (!strcmp(id, "train/pos/0_9")) {
        found = 1;
        cr_expect_str_eq(cJSON_GetObjectItem(r, "prompt")->valuestring, "A great film.\n\nLoved");
        cr_expect_str_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(r, "references"), 0)->valuestring,
                         "A great film.\n\nLoved every minute of it.");
        cr_expect_eq(cJSON_GetObjectItem(r, "rating")->valueint, 9);
      }
    }
  cr_expect(found);
  cr_expect_eq(k, 6, "train + validation hold every train review once");
  for (int i = 0; i < 6; i++)
    for (int j = i + 1; j < 6; j++)
      cr_expect_str_neq(ids[i], ids[j]);
  cJSON_Delete(tr);
  cJSON_Delete(va);

  /* The order of the seeded split, as printed by the independent Python
   * reference tests/datasets/ref_split.py (seed 42) for these file names. */
  const char *const tr_ids[] = {"train/neg/1_1", "train/pos/1_8", "train/pos/10_10"};
  const char *const va_ids[] = {"train/pos/0_9"};
  const char *const te_ids[] = {"test/neg/1_2", "test/pos/0_10", "test/pos/1_7"};
  snprintf(path, sizeof path, "%s/train.jsonl", p.dir);
  tl_expect_first_ids(path, tr_ids, 3);
  snprintf(path, sizeof path, "%s/validation.jsonl", p.dir);
  tl_expect_first_ids(path, va_ids, 1);
  snprintf(path, sizeof path, "%s/test.jsonl", p.dir);
  tl_expect_first_ids(path, te_ids, 3);

  /* same seed, same bytes */
  char *a1, *a2;
  snprintf(path, sizeof path, "%s/train.jsonl", p.dir);
  a1 = tl_read(path, NULL);
  cr_assert_eq(ds_prepare(e, 42, &p, &err), 0, "%s", err.msg);
  a2 = tl_read(path, NULL);
  cr_expect_str_eq(a1, a2);
  free(a1);
  free(a2);
}

static void write_cg(const char *dir, const char *dev) {
  char p[700];
  snprintf(p, sizeof p, "%s/commongen.dev.jsonl", dir);
  tl_write(p, dev);
}

Test(import, commongen_file_sha256_and_malformed_lines) {
  const char *dev = "{\"concept_set\": \"dog#frisbee#catch\", \"scene\": [\"A dog catches a "
                    "frisbee.\", \"The frisbee is caught.\"]}\n"
                    "\n"
                    "{\"concept_set\": \"ski#mountain\", \"scene\": [\"Skiing down.\"]}\n";
  char dir[600], hex[65];
  snprintf(dir, sizeof dir, "%s/cg", tmp);
  mkdir(dir, 0777);
  write_cg(dir, dev);
  ds_sha256_buf(dev, strlen(dev), hex);
  write_manifest(sha, hex);
  const ds_entry *cg = ds_manifest_find(&m, "cg");
  ds_stamp s;
  cr_assert_eq(ds_import(cg, dir, 0, &s, &err), 0, "%s", err.msg);
  cr_expect_eq(s.method, DS_BY_FILES);
  cr_expect_str_eq(s.members_missing, "commongen.train.jsonl commongen.test_noref.jsonl");
  ds_prepared p;
  cr_assert_eq(ds_prepare(cg, 42, &p, &err), 0, "%s", err.msg);
  cr_assert_eq(p.n_splits, 1);
  cr_expect_str_eq(p.splits[0].name, "validation");
  cr_expect_eq(p.splits[0].records, 2);
  cr_expect_eq(p.splits[0].references, 3);
  char path[4400];
  snprintf(path, sizeof path, "%s/validation.jsonl", p.dir);
  char *txt = tl_read(path, NULL);
  cr_expect_str_eq(txt, "{\"id\":\"validation-0\",\"concepts\":[\"dog\",\"frisbee\",\"catch\"],"
                        "\"prompt\":\"generate a sentence with: dog frisbee catch.\","
                        "\"references\":[\"A dog catches a frisbee.\",\"The frisbee is "
                        "caught.\"]}\n"
                        "{\"id\":\"validation-1\",\"concepts\":[\"ski\",\"mountain\"],"
                        "\"prompt\":\"generate a sentence with: ski mountain.\","
                        "\"references\":[\"Skiing down.\"]}\n");
  free(txt);

  /* Malformed lines: each error names the file and the line. */
  static const struct {
    const char *text, *needle;
  } bad[] = {
      {"{\"concept_set\": \"a#b\", \"scene\": [\"x\"]}\n{\"concept_set\": \"a#b\", \"scene\": [\n",
       "commongen.dev.jsonl:2:"},
      {"\n\n{\"concept_set\": \"a#b\", \"scene\": [\"x\"]} trailing\n", ".jsonl:3:"},
      {"[1, 2]\n", ".jsonl:1: not a JSON object"},
      {"{\"concept_set\": 5, \"scene\": [\"x\"]}\n", ".jsonl:1: 'concept_set' must be"},
      {"{\"concept_set\": \"a##b\", \"scene\": [\"x\"]}\n", ".jsonl:1: bad concept_set"},
      {"{\"concept_set\": \"a#b\", \"scene\": [3]}\n", ".jsonl:1: every scene must be a string"},
      {"{\"concept_set\": \"a#b\"}\n", ".jsonl:1: 'scene' must be a non-empty list"},
      /* invalid UTF-8 (a lone continuation byte, an overlong '/') went into
       * the split files; "\u0000" cut a string short at the NUL */
      {"{\"concept_set\": \"a#b\", \"scene\": [\"ok\", \"caf\x80\"]}\n",
       ".jsonl:1: a scene is not valid UTF-8 (byte 3 is 0x80)"},
      {"{\"concept_set\": \"a#\xc0\xaf"
       "b\", \"scene\": [\"x\"]}\n",
       ".jsonl:1: 'concept_set' is not valid UTF-8 (byte 2 is 0xc0)"},
      {"{\"concept_set\": \"a#b\", \"scene\": [\"x\\u0000y\"]}\n",
       ".jsonl:1:36: \\u0000 in a string"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    write_cg(dir, bad[i].text);
    cr_assert_eq(ds_import(cg, dir, 1, &s, &err), 0, "%s", err.msg);
    dfpo_err_clear(&err);
    cr_expect_eq(ds_prepare(cg, 42, &p, &err), DFPO_EDATA, "case %zu accepted", i);
    cr_expect(strstr(err.msg, bad[i].needle), "case %zu: '%s' lacks '%s'", i, err.msg,
              bad[i].needle);
  }
  /* a NUL byte inside a line */
  char nul[700];
  snprintf(nul, sizeof nul, "%s/nul.jsonl", tmp);
  FILE *f = fopen(nul, "wb");
  fwrite("{}\n{\"a\":\0 1}\n", 1, 13, f);
  fclose(f);
  ds_jsonl j;
  cJSON *o;
  cr_assert_eq(ds_jsonl_open(&j, nul, &err), 0);
  cr_expect_eq(ds_jsonl_next(&j, &o, &err), 0);
  cJSON_Delete(o);
  cr_expect_eq(ds_jsonl_next(&j, &o, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "nul.jsonl:2: contains a NUL byte"), "%s", err.msg);
  ds_jsonl_close(&j);
}

Test(import, rtp_record_rules) {
  const char *line = "{\"prompt\": {\"text\": \"Hello\", \"toxicity\": 0.25, \"insult\": null}, "
                     "\"continuation\": {\"text\": \" world\", \"toxicity\": 0.5}}";
  cJSON *src, *rec;
  cr_assert_eq(ds_jsonl_parse_line(line, strlen(line), "x.jsonl", 7, &src, &err), 0);
  cr_assert_eq(ds_rtp_record(src, "rtp-7", "x.jsonl", 7, &rec, &err), 0, "%s", err.msg);
  char *s = cJSON_PrintUnformatted(rec);
  cr_expect_str_eq(
      s, "{\"id\":\"rtp-7\",\"prompt\":\"Hello\",\"references\":[\" world\"],\"challenging\":null,"
         "\"toxicity\":0.25,\"prompt_scores\":{\"toxicity\":0.25,\"severe_toxicity\":null,"
         "\"profanity\":null,\"sexually_explicit\":null,\"identity_attack\":null,\"flirtation\":"
         "null,\"threat\":null,\"insult\":null},\"continuation_scores\":{\"toxicity\":0.5,"
         "\"severe_toxicity\":null,\"profanity\":null,\"sexually_explicit\":null,"
         "\"identity_attack\":null,\"flirtation\":null,\"threat\":null,\"insult\":null}}");
  free(s);
  cJSON_Delete(rec);
  cJSON_Delete(src);
  static const struct {
    const char *line, *needle;
  } bad[] = {
      {"{\"continuation\": {\"text\": \"x\"}}", "x.jsonl:3: 'prompt' must be an object"},
      {"{\"prompt\": {\"text\": 1}, \"continuation\": {\"text\": \"x\"}}",
       "x.jsonl:3: 'prompt.text' must be a string"},
      {"{\"prompt\": {\"text\": \"a\", \"toxicity\": \"high\"}, \"continuation\": {\"text\": "
       "\"x\"}}",
       "x.jsonl:3: 'prompt.toxicity' must be a number in [0, 1] or null"},
      {"{\"prompt\": {\"text\": \"a\"}, \"continuation\": {\"text\": \"x\"}, \"challenging\": 1}",
       "x.jsonl:3: 'challenging' must be true or false"},
      {"{\"prompt\": {\"text\": \"a\"}}", "x.jsonl:3: 'continuation' must be an object"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cr_assert_eq(ds_jsonl_parse_line(bad[i].line, strlen(bad[i].line), "x.jsonl", 3, &src, &err), 0,
                 "%s", err.msg);
    dfpo_err_clear(&err);
    cr_expect_eq(ds_rtp_record(src, "r", "x.jsonl", 3, &rec, &err), DFPO_EDATA);
    cr_expect(strstr(err.msg, bad[i].needle), "'%s' lacks '%s'", err.msg, bad[i].needle);
    cJSON_Delete(src);
  }
}
