/* Tokenizer, BLEU, sacreBLEU, ROUGE, CIDEr-D and diversity on hand-worked
 * cases. Each expected value is worked out in the comment above it from the
 * published definition of the reference implementation (docs/metrics.md);
 * bench/metrics_reference.py transcribes the same definitions in Python
 * (it agrees with dfpo to 1e-13 on the CommonGen dev set). */
#include "metrics/metrics.h"

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

static met_corpus corpus(met_tokenize_mode mode) {
  met_corpus c;
  dfpo_err err;
  cr_assert_eq(met_corpus_init(&c, mode, &err), 0);
  return c;
}

static void add(met_corpus *c, const char *pred, const char *r1, const char *r2) {
  const char *refs[2] = {r1, r2};
  dfpo_err err;
  cr_assert_eq(met_corpus_add(c, pred, refs, r2 ? 2 : (r1 ? 1 : 0), NULL, 0, &err), 0, "%s",
               err.msg);
}

static void expect_tokens(const char *text, met_tokenize_mode mode, const char *joined) {
  met_tokens t;
  dfpo_err err;
  cr_assert_eq(met_tokenize(text, mode, &t, &err), 0, "%s", err.msg);
  char buf[512] = "";
  for (size_t i = 0; i < t.n; i++) {
    if (i)
      strcat(buf, "|");
    strcat(buf, t.tok[i]);
  }
  cr_expect_str_eq(buf, joined, "tokens of \"%s\"", text);
  met_tokens_free(&t);
}

Test(tokenize, default_mode) {
  expect_tokens("The player stood in the field, looking at the batter.", MET_TOK_DEFAULT,
                "the|player|stood|in|the|field|looking|at|the|batter");
  expect_tokens("I can't see the dog's T-shirt -- it's 3.5 m, or 1,000 cm!", MET_TOK_DEFAULT,
                "i|ca|n't|see|the|dog|'s|t-shirt|it|'s|3.5|m|or|1,000|cm");
  expect_tokens("  \"Quoted\"  (words) end. ", MET_TOK_DEFAULT, "quoted|words|end");
  expect_tokens("Café ÉLAN — naïve’s", MET_TOK_DEFAULT, "café|élan|naïve|'s");
  expect_tokens("rock'n'roll dogs' o'clock", MET_TOK_DEFAULT, "rock'n'roll|dogs|o'clock");
  expect_tokens("...", MET_TOK_DEFAULT, "");
}

Test(tokenize, none_mode_takes_tokens_as_given) {
  expect_tokens("The cat , sat .", MET_TOK_NONE, "The|cat|,|sat|.");
  expect_tokens("  a  b ", MET_TOK_NONE, "a|b");
}

Test(tokenize, invalid_utf8_is_an_error) {
  met_tokens t;
  dfpo_err err;
  cr_expect_eq(met_tokenize("ok \xc3\x28 bad", MET_TOK_DEFAULT, &t, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "invalid UTF-8 at byte 4") != NULL, "%s", err.msg);
  cr_expect_eq(met_tokenize("\xed\xa0\x80", MET_TOK_NONE, &t, &err), DFPO_EDATA, "surrogate");
  cr_expect_eq(met_tokenize("\xc0\xaf", MET_TOK_NONE, &t, &err), DFPO_EDATA, "overlong");
}

/* BLEU (pycocoevalcap): hyp "the cat sat on the mat", refs "the cat is on the
 * mat" (6 tokens) and "there is a cat on the mat" (7).
 *   1-grams: the x2 (max ref count 2), cat, sat (0), on, mat: 5 of 6
 *   2-grams: the cat, on the, the mat match; cat sat, sat on do not: 3 of 5
 *   3-grams: only "on the mat": 1 of 4;  4-grams: none of 3
 *   closest reference length 6 = hypothesis length: no brevity penalty
 *   (ratio (6 + 1e-15)/(6 + 1e-9) is a hair below 1: factor 1 - 1.7e-10)
 *   BLEU-1 = 5/6, BLEU-2 = (5/6 * 3/5)^(1/2) = 0.5^(1/2),
 *   BLEU-3 = (5/6 * 3/5 * 1/4)^(1/3) = 0.5,
 *   BLEU-4 = (1/8 * (0 + 1e-15)/(3 + 1e-9))^(1/4) = 8.0343e-05 */
Test(bleu, coco_hand_worked) {
  met_corpus c = corpus(MET_TOK_DEFAULT);
  add(&c, "the cat sat on the mat", "the cat is on the mat", "there is a cat on the mat");
  double b[4];
  dfpo_err err;
  cr_assert_eq(met_bleu_coco(&c, b, &err), 0);
  cr_expect_float_eq(b[0], 5.0 / 6.0, 1e-9);
  cr_expect_float_eq(b[1], sqrt(0.5), 1e-9);
  cr_expect_float_eq(b[2], 0.5, 1e-9);
  cr_expect_float_eq(b[3], pow(0.125 * 1e-15 / 3.0, 0.25), 1e-12);
  met_corpus_free(&c);
}

/* Brevity penalty and corpus pooling: item 1 "a b" vs "a b c d" (ref len 4),
 * item 2 "c d e" vs "c d e" (3). Pooled: 1-grams 5/5, 2-grams 3/3, testlen 5,
 * reflen 7: BP = exp(1 - 7/5) = exp(-0.4); BLEU-1 = BLEU-2 = exp(-0.4). */
Test(bleu, coco_brevity_penalty_pools_lengths) {
  met_corpus c = corpus(MET_TOK_DEFAULT);
  add(&c, "a b", "a b c d", NULL);
  add(&c, "c d e", "c d e", NULL);
  double b[4];
  dfpo_err err;
  cr_assert_eq(met_bleu_coco(&c, b, &err), 0);
  cr_expect_float_eq(b[0], exp(-0.4), 1e-9);
  cr_expect_float_eq(b[1], exp(-0.4), 1e-9);
  met_corpus_free(&c);
}

/* sacreBLEU (13a, exp smoothing, case-sensitive) on the raw texts:
 * "The cat sat on the mat." -> The cat sat on the mat .   (7 tokens)
 * refs "The cat is on the mat." (7) and "There is a cat on the mat." (8)
 *   1-grams 6/7 (sat misses), 2-grams 4/6 (The cat, on the, the mat, mat .),
 *   3-grams 2/5 (on the mat, the mat .), 4-grams 1/4 (on the mat .), BP 1
 *   BLEU = (600/7 * 400/6 * 200/5 * 100/4)^(1/4) = 48.8923...
 * Smoothing: "a b c d e" vs "a b c x e": 4/5, 2/4, 1/3, 0/2 -> the 4-gram
 * precision becomes 100/(2*2) = 25: BLEU = (80 * 50 * 100/3 * 25)^(1/4). */
Test(bleu, sacrebleu_hand_worked) {
  met_corpus c = corpus(MET_TOK_DEFAULT);
  add(&c, "The cat sat on the mat.", "The cat is on the mat.", "There is a cat on the mat.");
  double s;
  dfpo_err err;
  cr_assert_eq(met_sacrebleu(&c, &s, &err), 0);
  cr_expect_float_eq(s, pow(600.0 / 7 * 400.0 / 6 * 200.0 / 5 * 100.0 / 4, 0.25), 1e-9);
  met_corpus_free(&c);
  c = corpus(MET_TOK_DEFAULT);
  add(&c, "a b c d e", "a b c x e", NULL);
  cr_assert_eq(met_sacrebleu(&c, &s, &err), 0);
  cr_expect_float_eq(s, pow(80.0 * 50.0 * (100.0 / 3) * 25.0, 0.25), 1e-9);
  met_corpus_free(&c);
}

/* ROUGE-L (pycocoevalcap, beta 1.2): hyp "a b c d", refs "a c d e f" and "b d".
 *   ref 1: LCS "a c d" = 3: P = 3/4, R = 3/5;  ref 2: LCS "b d" = 2: P = 2/4, R = 1
 *   the maxima come from different references: P = 0.75, R = 1
 *   F = (1 + 1.44) * 0.75 * 1 / (1 + 1.44 * 0.75) = 1.83 / 2.08 = 0.8798076923 */
Test(rouge, coco_hand_worked) {
  met_corpus c = corpus(MET_TOK_DEFAULT);
  add(&c, "a b c d", "a c d e f", "b d");
  add(&c, "x", "y", NULL); /* no overlap: 0 */
  double m, per[2];
  dfpo_err err;
  cr_assert_eq(met_rouge_l_coco(&c, &m, per, &err), 0);
  cr_expect_float_eq(per[0], 1.83 / 2.08, 1e-12);
  cr_expect_float_eq(per[1], 0.0, 1e-15);
  cr_expect_float_eq(m, 1.83 / 2.08 / 2, 1e-12);
  met_corpus_free(&c);
}

/* rouge-score: "The cats are running!" vs "A cat is running fast." and
 * "the cats are sleeping" (its tokenizer: lowercase, [^a-z0-9] separates).
 * Without stemming: ref 1 shares only "running": R1 = R-L F = 2(1/4)(1/5)/(9/20)
 *   = 2/9, R2 = 0; ref 2 shares "the cats are": R1 = R-L = 3/4, R2 = 2/3 (the
 *   cats, cats are of 3); per type the best reference: (3/4, 2/3, 3/4).
 * With stemming (words longer than 3): cats -> cat, running -> run; ref 1 now
 *   shares cat, run: R1 = 2(1/2)(2/5)/(9/10) = 4/9, R-L = 4/9 (LCS cat run),
 *   R2 = 0; ref 2 "the cat are sleep": R1 = 3/4, R2 = 2/3, R-L = 3/4. */
Test(rouge, rouge_score_hand_worked) {
  met_corpus c = corpus(MET_TOK_DEFAULT);
  add(&c, "The cats are running!", "A cat is running fast.", NULL);
  double f[3];
  dfpo_err err;
  cr_assert_eq(met_rouge_score(&c, 0, f, NULL, &err), 0);
  cr_expect_float_eq(f[0], 2.0 / 9, 1e-12);
  cr_expect_float_eq(f[1], 0.0, 1e-15);
  cr_expect_float_eq(f[2], 2.0 / 9, 1e-12);
  cr_assert_eq(met_rouge_score(&c, 1, f, NULL, &err), 0);
  cr_expect_float_eq(f[0], 4.0 / 9, 1e-12);
  cr_expect_float_eq(f[1], 0.0, 1e-15);
  cr_expect_float_eq(f[2], 4.0 / 9, 1e-12);
  met_corpus_free(&c);
  c = corpus(MET_TOK_DEFAULT);
  add(&c, "The cats are running!", "A cat is running fast.", "the cats are sleeping");
  cr_assert_eq(met_rouge_score(&c, 0, f, NULL, &err), 0);
  cr_expect_float_eq(f[0], 0.75, 1e-12);
  cr_expect_float_eq(f[1], 2.0 / 3, 1e-12);
  cr_expect_float_eq(f[2], 0.75, 1e-12);
  met_corpus_free(&c);
}

/* CIDEr-D (pycocoevalcap): item 1 hyp "a b", refs "a b" and "a c"; item 2
 * hyp "c", ref "c d". Two items: ref_len = ln 2. Document frequencies over
 * the reference sets: c occurs in both (df 2), every other n-gram in one.
 * Weight of an n-gram: tf * (ln 2 - ln max(1, df)): ln 2, and 0 for c.
 *   item 1 vs "a b": identical vectors: cos = 1 for n = 1 and 2, 0 for 3, 4
 *   item 1 vs "a c": n=1: hyp (a: ln2, b: ln2), ref (a: ln2, c: 0);
 *     sum min(h, r) * r = ln2^2; norms sqrt(2) ln2 and ln2 -> 1/sqrt(2);
 *     n=2: "a b" vs "a c" -> 0. Lengths (bigram counts) 1 and 1: no penalty.
 *   item 1 = 10 * mean_n(1 + 1, 1 + 0, 0, 0 ... ) / 2 refs
 *          = 10 * (2 + 1/sqrt(2)) / 4 / 2 = 3.3838834765
 *   item 2: the only hyp n-gram, c, weighs 0: 0.
 *   CIDEr-D = (3.3838834765 + 0) / 2 */
Test(cider, hand_worked) {
  met_corpus c = corpus(MET_TOK_DEFAULT);
  add(&c, "a b", "a b", "a c");
  add(&c, "c", "c d", NULL);
  double m, per[2];
  dfpo_err err;
  cr_assert_eq(met_cider_d(&c, &m, per, &err), 0);
  double item1 = 10 * (2 + 1 / sqrt(2)) / 4 / 2;
  cr_expect_float_eq(per[0], item1, 1e-12);
  cr_expect_float_eq(per[1], 0.0, 1e-15);
  cr_expect_float_eq(m, item1 / 2, 1e-12);
  met_corpus_free(&c);
}

/* Length penalty: one item (ref_len = ln 1 = 0, so every weight is
 * -ln(df) = 0 ... ) would be degenerate; use two items that share nothing:
 * item 1 hyp "a b c" ref "a b", item 2 hyp "x" ref "x y". All df 1: weights
 * ln 2. Item 1: n=1: a, b match: 2 ln2^2 / (sqrt3 ln2 * sqrt2 ln2) = 2/sqrt6;
 * n=2: "a b" matches: ln2^2 / (sqrt2 ln2 * ln2) = 1/sqrt2; bigram counts 2
 * and 1: delta 1, factor exp(-1/72). Item 1 = 10/4 * (2/sqrt6 + 1/sqrt2)
 * * exp(-1/72). Item 2: n=1: 1/sqrt2, delta 0 - 1: exp(-1/72):
 * 10/4 * (1/sqrt2) * exp(-1/72). */
Test(cider, gaussian_length_penalty) {
  met_corpus c = corpus(MET_TOK_DEFAULT);
  add(&c, "a b c", "a b", NULL);
  add(&c, "x", "x y", NULL);
  double m, per[2];
  dfpo_err err;
  cr_assert_eq(met_cider_d(&c, &m, per, &err), 0);
  cr_expect_float_eq(per[0], 2.5 * (2 / sqrt(6) + 1 / sqrt(2)) * exp(-1.0 / 72), 1e-12);
  cr_expect_float_eq(per[1], 2.5 * (1 / sqrt(2)) * exp(-1.0 / 72), 1e-12);
  met_corpus_free(&c);
}

/* Diversity (gem-metrics NGramStats, MSTTR): predictions "a b a" and "b c".
 *   1-grams: a 2, b 2, c 1 of 5: distinct 3/5, vocab 3, unique 1,
 *     entropy -(2 * 0.4 log2 0.4 + 0.2 log2 0.2) = 1.5219280949
 *   2-grams (within a prediction): a b, b a, b c: distinct 1, unique 3,
 *     entropy log2 3;  mean length 2.5; MSTTR undefined (< 100 tokens). */
Test(diversity, hand_worked) {
  met_corpus c = corpus(MET_TOK_DEFAULT);
  add(&c, "a b a", NULL, NULL);
  add(&c, "b c", NULL, NULL);
  met_diversity d;
  dfpo_err err;
  cr_assert_eq(met_diversity_compute(&c, &d, &err), 0);
  cr_expect_float_eq(d.distinct[0], 0.6, 1e-12);
  cr_expect_eq(d.vocab_size[0], 3);
  cr_expect_eq(d.unique[0], 1);
  cr_expect_float_eq(d.entropy[0], -(2 * 0.4 * log2(0.4) + 0.2 * log2(0.2)), 1e-12);
  cr_expect_float_eq(d.distinct[1], 1.0, 1e-12);
  cr_expect_eq(d.vocab_size[1], 3);
  cr_expect_eq(d.unique[1], 3);
  cr_expect_float_eq(d.entropy[1], log2(3), 1e-12);
  cr_expect_float_eq(d.mean_length, 2.5, 1e-12);
  cr_expect(isnan(d.msttr100));
  met_corpus_free(&c);
}

/* MSTTR-100: 250 tokens. Window 1: 100 distinct words (TTR 1); window 2: one
 * word 100 times (TTR 0.01); the last 50 tokens are dropped. Mean 0.505. */
Test(diversity, msttr_windows) {
  met_corpus c = corpus(MET_TOK_NONE);
  char line[4096] = "";
  for (int i = 0; i < 100; i++)
    sprintf(line + strlen(line), "w%d ", i);
  add(&c, line, NULL, NULL);
  line[0] = '\0';
  for (int i = 0; i < 150; i++)
    strcat(line, "x ");
  add(&c, line, NULL, NULL);
  met_diversity d;
  dfpo_err err;
  cr_assert_eq(met_diversity_compute(&c, &d, &err), 0);
  cr_expect_float_eq(d.msttr100, 0.505, 1e-12);
  met_corpus_free(&c);
}
