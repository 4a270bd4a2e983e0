/* Seeded random input through the tokenizers and the corpus: every string is
 * either tokenized or rejected as invalid UTF-8, never crashes (this test
 * matters most in the sanitizer build), and valid UTF-8 always tokenizes.
 * Validity is judged by an RFC 3629 check written here, independently of
 * metrics/util.c. */
#include "metrics/metrics.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

/* RFC 3629 validity, written out independently of metrics/util.c. */
static int valid_utf8(const unsigned char *s, size_t n) {
  for (size_t i = 0; i < n;) {
    unsigned c = s[i];
    size_t k;
    unsigned cp;
    if (c < 0x80) {
      i++;
      continue;
    }
    if ((c & 0xe0) == 0xc0)
      k = 1, cp = c & 0x1f;
    else if ((c & 0xf0) == 0xe0)
      k = 2, cp = c & 0x0f;
    else if ((c & 0xf8) == 0xf0)
      k = 3, cp = c & 0x07;
    else
      return 0;
    if (i + k >= n)
      return 0;
    for (size_t j = 1; j <= k; j++) {
      if ((s[i + j] & 0xc0) != 0x80)
        return 0;
      cp = (cp << 6) | (s[i + j] & 0x3f);
    }
    static const unsigned min[4] = {0, 0x80, 0x800, 0x10000};
    if (cp < min[k] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return 0;
    i += k + 1;
  }
  return 1;
}

Test(fuzz, tokenizers_and_corpus) {
  static const char *const pieces[] = {"a",
                                       "Z",
                                       "9",
                                       " ",
                                       "  ",
                                       "'",
                                       "-",
                                       ".",
                                       ",",
                                       "n't",
                                       "'s",
                                       "\xc3\xa9",
                                       "\xe2\x80\x99",
                                       "\xe2\x80\x94",
                                       "\xc3",
                                       "\xa9",
                                       "\xed\xa0\x80",
                                       "\xf0\x9f\x98\x80",
                                       "\xff",
                                       "&amp;",
                                       "<skipped>",
                                       "-\n",
                                       "\t",
                                       "3",
                                       "!",
                                       "#"};
  const size_t np = sizeof pieces / sizeof pieces[0];
  dfpo_rng r;
  dfpo_rng_init(&r, 2024, DFPO_STREAM_DATA);
  met_corpus c;
  dfpo_err err;
  cr_assert_eq(met_corpus_init(&c, MET_TOK_DEFAULT, &err), 0);
  size_t added = 0;
  for (int iter = 0; iter < 3000; iter++) {
    char buf[400] = "";
    int n = (int)dfpo_rng_below(&r, 30);
    for (int k = 0; k < n; k++)
      strcat(buf, pieces[dfpo_rng_below(&r, (uint32_t)np)]);
    int ok = valid_utf8((const unsigned char *)buf, strlen(buf));
    for (int mode = 0; mode < 2; mode++) {
      met_tokens t;
      int rc = met_tokenize(buf, (met_tokenize_mode)mode, &t, &err);
      cr_assert_eq(rc, ok ? DFPO_OK : DFPO_EDATA, "\"%s\": %s", buf, err.msg);
      for (size_t i = 0; !rc && i < t.n; i++)
        cr_assert(t.tok[i][0] != '\0' && !strchr(t.tok[i], ' '), "empty or spaced token");
      if (!rc)
        met_tokens_free(&t);
    }
    const char *refs[1] = {buf};
    int rc = met_corpus_add(&c, buf, refs, 1, refs, 1, &err);
    cr_assert_eq(rc, ok ? DFPO_OK : DFPO_EDATA, "%s", err.msg);
    added += ok;
  }
  cr_assert_eq(c.n, added);
  double b[4], m, f[3];
  cr_expect_eq(met_bleu_coco(&c, b, &err), 0);
  cr_expect_eq(met_sacrebleu(&c, &m, &err), 0);
  cr_expect_eq(met_cider_d(&c, &m, NULL, &err), 0);
  cr_expect_eq(met_rouge_score(&c, 1, f, NULL, &err), 0);
  cr_expect_eq(met_rouge_l_coco(&c, &m, NULL, &err), 0);
  /* NLTK 3.8: PorterStemmer().stem("étés") == "été" (code points, not bytes) */
  char *s = met_porter_stem("\xc3\xa9t\xc3\xa9s");
  cr_expect_str_eq(s, "\xc3\xa9t\xc3\xa9");
  free(s);
  met_corpus_free(&c);
}
