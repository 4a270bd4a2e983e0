/* The tokenizer against the reference encoder run at test time:
 * bench/gpt2_ref.py, this project's transcription of OpenAI's
 * gpt-2/src/encoder.py, with Debian's /usr/bin/python3 and its `regex`
 * module. Skips when that Python, `regex` or ../shared/data is missing. */
#include "tests/support/support.h"
#include "trainer/tok.h"
#include "trainer/tok_internal.h" /* tok_split: the pre-tokeniser alone */

#include <criterion/criterion.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REF DFPO_SOURCE_DIR "/bench/gpt2_ref.py"

static const char *need_reference(void) {
  const char *data = ts_shared_data();
  if (!data)
    cr_skip_test("../shared/data is absent: GPT-2's files and IMDB are needed");
  if (access("/usr/bin/python3", X_OK) != 0)
    cr_skip_test("/usr/bin/python3 is missing: the reference encoder cannot run");
  char *argv[] = {"/usr/bin/python3", "-c", "import regex", NULL};
  ts_run r;
  ts_run_cmd(&r, argv, NULL, NULL);
  int ok = r.status == 0;
  ts_run_free(&r);
  if (!ok)
    cr_skip_test("Python's `regex` module is missing (Debian package python3-regex)");
  return data;
}

/* Runs a shell command line; asserts success. */
static void sh(const char *cmd) {
  char *argv[] = {"/bin/sh", "-c", (char *)cmd, NULL};
  ts_run r;
  ts_run_cmd(&r, argv, NULL, NULL);
  cr_assert_eq(r.status, 0, "%s failed (%d): %s", cmd, r.status, r.err);
  ts_run_free(&r);
}

static char *slurp(const char *path, size_t *len) {
  char *data;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(dfpo_read_file(path, &data, len, &err), 0, "%s", err.msg);
  return data;
}

/* Parses a line of space-separated ids. */
static size_t parse_line(const char *s, const char *end, int32_t *ids, size_t max) {
  size_t n = 0;
  while (s < end) {
    while (s < end && *s == ' ')
      s++;
    if (s >= end)
      break;
    cr_assert_lt(n, max);
    ids[n++] = (int32_t)strtol(s, (char **)&s, 10);
  }
  return n;
}

/* Compares each line of `want` (the reference's output) with the ids of
 * document i; returns the number of documents. */
static size_t compare_lines(tok_tokenizer *t, const char *want, size_t want_len, char *const *docs,
                            const size_t *lens, size_t n, int decode) {
  static int32_t ref[1 << 16];
  const char *p = want, *end = want + want_len;
  dfpo_err err;
  dfpo_err_clear(&err);
  char *buf = NULL;
  size_t cap = 0, i = 0;
  for (; i < n && p < end; i++) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    cr_assert_not_null(nl);
    size_t m = parse_line(p, nl, ref, sizeof ref / sizeof ref[0]);
    p = nl + 1;
    tok_ids v = {0};
    cr_assert_eq(tok_encode(t, docs[i], lens[i], 0, &v, &err), 0, "%s", err.msg);
    cr_assert_eq(v.n, m, "document %zu: %zu ids, the reference %zu", i, v.n, m);
    for (size_t k = 0; k < m; k++)
      cr_assert_eq(v.ids[k], ref[k], "document %zu, id %zu: %d, the reference %d", i, k, v.ids[k],
                   ref[k]);
    if (decode) {
      size_t len = 0;
      cr_assert_eq(tok_decode(t, v.ids, v.n, &buf, &len, &cap, &err), 0, "%s", err.msg);
      cr_assert(len == lens[i] && !memcmp(buf, docs[i], len), "document %zu: decode differs", i);
    }
    tok_ids_free(&v);
  }
  free(buf);
  cr_assert_eq(i, n, "the reference gave %zu lines for %zu documents", i, n);
  return i;
}

/* Extracts IMDB reviews 0..per-1 of train/pos and train/neg into dir and
 * returns them (heap), in glob's sorted order. */
static size_t imdb_reviews(const char *data, const char *dir, char ***docs, size_t **lens) {
  char cmd[2048];
  snprintf(cmd, sizeof cmd,
           "tar -xzf '%s/imdb/aclImdb.tar.gz' -C '%s' --wildcards "
           "'aclImdb/train/pos/[0-9]_*.txt' 'aclImdb/train/pos/[0-9][0-9]_*.txt' "
           "'aclImdb/train/pos/[0-4][0-9][0-9]_*.txt' "
           "'aclImdb/train/neg/[0-9]_*.txt' 'aclImdb/train/neg/[0-9][0-9]_*.txt' "
           "'aclImdb/train/neg/[0-4][0-9][0-9]_*.txt'",
           data, dir);
  sh(cmd);
  glob_t g;
  snprintf(cmd, sizeof cmd, "%s/aclImdb/train/pos/*.txt", dir);
  cr_assert_eq(glob(cmd, 0, NULL, &g), 0);
  snprintf(cmd, sizeof cmd, "%s/aclImdb/train/neg/*.txt", dir);
  cr_assert_eq(glob(cmd, GLOB_APPEND, NULL, &g), 0);
  *docs = calloc(g.gl_pathc, sizeof **docs);
  *lens = calloc(g.gl_pathc, sizeof **lens);
  for (size_t i = 0; i < g.gl_pathc; i++) {
    (*docs)[i] = slurp(g.gl_pathv[i], &(*lens)[i]);
    cr_assert_null(memchr((*docs)[i], '\n', (*lens)[i]), "%s holds a newline", g.gl_pathv[i]);
  }
  size_t n = g.gl_pathc;
  globfree(&g);
  return n;
}

static void write_lines(const char *path, char *const *docs, const size_t *lens, size_t n) {
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f);
  for (size_t i = 0; i < n; i++) {
    fwrite(docs[i], 1, lens[i], f);
    fputc('\n', f);
  }
  cr_assert_eq(fclose(f), 0);
}

Test(tok_reference, imdb_reviews_encode_to_reference_ids_and_decode_back) {
  const char *data = need_reference();
  char dir[256], path[512], cmd[2048];
  ts_tmpdir(dir, sizeof dir);
  char **docs;
  size_t *lens;
  size_t n = imdb_reviews(data, dir, &docs, &lens);
  cr_assert_eq(n, 1000);
  snprintf(path, sizeof path, "%s/reviews.txt", dir);
  write_lines(path, docs, lens, n);
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s/gpt2' --lines < '%s' > '%s.ids'", REF, data,
           path, path);
  sh(cmd);
  snprintf(cmd, sizeof cmd, "%s.ids", path);
  size_t want_len;
  char *want = slurp(cmd, &want_len);
  tok_tokenizer *t;
  dfpo_err err;
  dfpo_err_clear(&err);
  snprintf(cmd, sizeof cmd, "%s/gpt2", data);
  cr_assert_eq(tok_load(&t, cmd, &err), 0, "%s", err.msg);
  compare_lines(t, want, want_len, docs, lens, n, 1);
  tok_free(t);
  free(want);
  for (size_t i = 0; i < n; i++)
    free(docs[i]);
  free(docs);
  free(lens);
  ts_rmtree(dir);
}

typedef struct lens_ctx {
  size_t *v, n, cap;
} lens_ctx;

static int collect(void *vctx, const char *text, size_t start, size_t end) {
  (void)text;
  lens_ctx *c = vctx;
  if (c->n == c->cap) {
    c->cap = c->cap ? 2 * c->cap : 1 << 20;
    c->v = realloc(c->v, c->cap * sizeof *c->v);
    cr_assert_not_null(c->v);
  }
  c->v[c->n++] = end - start;
  return 0;
}

static size_t put_utf8(char *p, uint32_t c) {
  if (c < 0x80) {
    p[0] = (char)c;
    return 1;
  }
  if (c < 0x800) {
    p[0] = (char)(0xC0 | (c >> 6));
    p[1] = (char)(0x80 | (c & 0x3F));
    return 2;
  }
  if (c < 0x10000) {
    p[0] = (char)(0xE0 | (c >> 12));
    p[1] = (char)(0x80 | ((c >> 6) & 0x3F));
    p[2] = (char)(0x80 | (c & 0x3F));
    return 3;
  }
  p[0] = (char)(0xF0 | (c >> 18));
  p[1] = (char)(0x80 | ((c >> 12) & 0x3F));
  p[2] = (char)(0x80 | ((c >> 6) & 0x3F));
  p[3] = (char)(0x80 | (c & 0x3F));
  return 4;
}

Test(tok_reference, every_code_point_splits_as_the_reference) {
  /* "a" c "1" " " c "!" "  " c "  x" for every scalar value c: letters,
   * numbers, spaces and the rest each split differently here (the last part
   * tells a space inside a run of spaces), so equal piece lengths mean PCRE2
   * (with the pattern's Unicode 15 additions) classifies every code point as
   * the `regex` module does. */
  const char *data = need_reference();
  size_t cap = 0x110000 * 24, n = 0;
  char *text = malloc(cap);
  cr_assert_not_null(text);
  for (uint32_t c = 0; c < 0x110000; c++) {
    if (c >= 0xD800 && c < 0xE000)
      continue;
    text[n++] = 'a';
    n += put_utf8(text + n, c);
    text[n++] = '1';
    text[n++] = ' ';
    n += put_utf8(text + n, c);
    text[n++] = '!';
    memcpy(text + n, "  ", 2);
    n += 2;
    n += put_utf8(text + n, c);
    memcpy(text + n, "  x", 3);
    n += 3;
  }
  char dir[256], path[512], cmd[2048];
  ts_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/all.txt", dir);
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(dfpo_atomic_write_file(path, text, n, &err), 0, "%s", err.msg);
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s/gpt2' --split < '%s' > '%s.split'", REF,
           data, path, path);
  sh(cmd);
  snprintf(cmd, sizeof cmd, "%s.split", path);
  size_t want_len;
  char *want = slurp(cmd, &want_len);

  tok_regex re;
  tok_splitter sp;
  cr_assert_eq(tok_regex_init(&re, &err), 0, "%s", err.msg);
  cr_assert_eq(tok_splitter_init(&sp, &re, &err), 0, "%s", err.msg);
  lens_ctx got = {0};
  cr_assert_eq(tok_split(&sp, text, n, collect, &got, &err), 0, "%s", err.msg);
  const char *p = want;
  size_t off = 0;
  for (size_t i = 0; i < got.n; i++) {
    size_t w = strtoul(p, (char **)&p, 10);
    cr_assert_eq(got.v[i], w,
                 "piece %zu at byte %zu (text \"%.12s\"): %zu bytes, the reference %zu", i, off,
                 text + off, got.v[i], w);
    off += w;
  }
  while (*p == ' ' || *p == '\n')
    p++;
  cr_assert_eq(*p, '\0', "the reference has more pieces than the %zu found", got.n);
  free(got.v);
  tok_splitter_free(&sp);
  tok_regex_free(&re);
  free(want);
  free(text);
  ts_rmtree(dir);
}

Test(tok_reference, trainer_learns_the_reference_merges) {
  /* The naive trainer in bench/gpt2_ref.py (recount every pair each step)
   * against the incremental one, on 150 IMDB reviews and 500 entries; then
   * the reference encoder reads the trained files and must give our ids. */
  const char *data = need_reference();
  char dir[256], path[512], out[512], cmd[2048];
  ts_tmpdir(dir, sizeof dir);
  char **docs;
  size_t *lens;
  size_t n = imdb_reviews(data, dir, &docs, &lens);
  size_t use = 150;
  snprintf(path, sizeof path, "%s/corpus.txt", dir);
  write_lines(path, docs, lens, use);
  snprintf(out, sizeof out, "%s/bpe", dir);
  const char *corpus[] = {path};
  size_t merges;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(tok_train(corpus, 1, 500, out, &merges, &err), 0, "%s", err.msg);
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' --train 500 '%s' > '%s/ref.merges'", REF, path,
           dir);
  sh(cmd);
  size_t a_len, b_len;
  snprintf(cmd, sizeof cmd, "%s/vocab.bpe", out);
  char *a = slurp(cmd, &a_len);
  snprintf(cmd, sizeof cmd, "%s/ref.merges", dir);
  char *b = slurp(cmd, &b_len);
  const char *body = strchr(a, '\n') + 1; /* past "#version: 0.2" */
  cr_assert_eq(strcmp(body, b), 0, "merges differ from the reference's");
  cr_expect_eq(merges, 243);
  /* the reference encoder with our trained files, on all 1000 reviews */
  snprintf(path, sizeof path, "%s/reviews.txt", dir);
  write_lines(path, docs, lens, n);
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s' --lines < '%s' > '%s.ids'", REF, out, path,
           path);
  sh(cmd);
  snprintf(cmd, sizeof cmd, "%s.ids", path);
  size_t want_len;
  char *want = slurp(cmd, &want_len);
  tok_tokenizer *t;
  cr_assert_eq(tok_load(&t, out, &err), 0, "%s", err.msg);
  cr_expect_eq(tok_vocab_size(t), 500);
  compare_lines(t, want, want_len, docs, lens, n, 1);
  tok_free(t);
  free(want);
  free(a);
  free(b);
  for (size_t i = 0; i < n; i++)
    free(docs[i]);
  free(docs);
  free(lens);
  ts_rmtree(dir);
}

Test(tok_reference, random_bytes_encode_to_reference_ids) {
  /* 100 documents of seeded random bytes (mostly invalid UTF-8), some with
   * ASCII words mixed in: the surrogateescape rule at scale. */
  const char *data = need_reference();
  enum { N = 100 };
  char *docs[N];
  size_t lens[N];
  dfpo_rng r;
  dfpo_rng_init(&r, 2024, DFPO_STREAM_DATA);
  for (int i = 0; i < N; i++) {
    lens[i] = 1 + dfpo_rng_below(&r, 3000);
    docs[i] = malloc(lens[i]);
    for (size_t k = 0; k < lens[i]; k++) {
      uint32_t x = dfpo_rng_below(&r, 256);
      if (i % 2 && x < 128)
        x = " etaoin'shrdlu"[x % 14];
      docs[i][k] = x == '\n' ? ' ' : (char)x; /* one document a line */
    }
  }
  char dir[256], path[512], cmd[2048];
  ts_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/random.txt", dir);
  write_lines(path, docs, lens, N);
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s/gpt2' --lines < '%s' > '%s.ids'", REF, data,
           path, path);
  sh(cmd);
  snprintf(cmd, sizeof cmd, "%s.ids", path);
  size_t want_len;
  char *want = slurp(cmd, &want_len);
  tok_tokenizer *t;
  dfpo_err err;
  dfpo_err_clear(&err);
  snprintf(cmd, sizeof cmd, "%s/gpt2", data);
  cr_assert_eq(tok_load(&t, cmd, &err), 0, "%s", err.msg);
  compare_lines(t, want, want_len, docs, lens, N, 1);
  tok_free(t);
  free(want);
  for (int i = 0; i < N; i++)
    free(docs[i]);
  ts_rmtree(dir);
}
