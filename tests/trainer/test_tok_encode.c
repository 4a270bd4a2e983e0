/* GPT-2 encoding against ids from a reference encoder, the Hugging Face file
 * forms, round trips, and the two merge algorithms against each other. */
#include "tests/support/support.h"
#include "trainer/tok.h"
#include "trainer/tok_internal.h" /* tok_set_heap_threshold */

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Expected ids: produced by bench/gpt2_ref.py (this project's transcription
 * of OpenAI's gpt-2/src/encoder.py: bytes_to_unicode, the pattern run by
 * Python's `regex` 2022.10.31, BPE by merge rank; input bytes decoded with
 * surrogateescape) with Debian 12's /usr/bin/python3 on GPT-2's real
 * encoder.json and vocab.bpe, 2026-11-22. `sp` are the ids with special
 * tokens allowed, where they differ. tests/trainer/test_tok_reference.c
 * runs the same script at test time on IMDB reviews. Known values as a
 * sanity check: "Hello" 15496, " world" 995, "<|endoftext|>" 50256. */
typedef struct tcase {
  const char *name, *text;
  size_t len, n;
  int32_t ids[40];
  size_t nsp;
  int32_t sp[40];
} tcase;

static const tcase cases[] = {
    {"contractions",
     "I'm sure they'll say it's theirs, we've won, you'd agree, she's right, I'D SHOUT 'TIS",
     85,
     30,
     {40,   1101, 1654, 484, 1183, 910, 340, 338, 22021, 11, 356,  1053,  1839, 11, 345,
      1549, 4236, 11,   673, 338,  826, 11,  314, 6,     35, 6006, 12425, 705,  51, 1797},
     0,
     {0}},
    {"digits",
     "Call 555-1234 in 2024: 3.14159, 1,000,000 and 12345678901234567890",
     66,
     28,
     {14134, 44717, 12, 1065, 2682, 287,   48609, 25,   513,  13,  1415, 19707, 11,    352,
      11,    830,   11, 830,  290,  17031, 2231,  3134, 4531, 486, 1954, 2231,  30924, 3829},
     0,
     {0}},
    {"spaces",
     "a  b   c    d     end   ",
     24,
     18,
     {64, 220, 275, 220, 220, 269, 220, 220, 220, 288, 220, 220, 220, 220, 886, 220, 220, 220},
     0,
     {0}},
    {"newlines",
     "line one\012\012line two\012\012\012   indented\015\012last\012",
     39,
     16,
     {1370, 530, 198, 198, 1370, 734, 628, 198, 220, 220, 773, 4714, 201, 198, 12957, 198},
     0,
     {0}},
    {"tabs",
     "\011col1\011\011col2 \011 col3\011",
     19,
     12,
     {197, 4033, 16, 197, 197, 4033, 17, 220, 197, 951, 18, 197},
     0,
     {0}},
    {"emoji",
     "Hello \360\237\221\213\360\237\217\275 world "
     "\360\237\216\211\360\237\221\250\342\200\215\360\237\221\251\342\200\215\360\237\221\247!",
     44,
     21,
     {15496, 50169, 233, 8582,  237, 121, 995, 12520, 236, 231, 41840,
      101,   447,   235, 41840, 102, 447, 235, 41840, 100, 0},
     0,
     {0}},
    {"cjk",
     "\346\227\245\346\234\254\350\252\236\343\201\256\343\203\206\343\202\255\343\202\271\343\203"
     "\210\343\201\247\343\201\231\343\200\202\344\270\255\346\226\207\345\255\227\347\254\246\357"
     "\274\214\355\225\234\352\265\255\354\226\264",
     57,
     32,
     {33768, 98,    17312, 105,   45739, 252,   5641, 24336, 25084, 43302, 30640,
      33623, 16764, 40792, 23877, 229,   27764, 245,  163,   105,   99,    171,
      120,   234,   47991, 250,   166,   113,   255,  168,   244,   112},
     0,
     {0}},
    {"combining",
     "cafe\314\201 vs caf\303\251, n\314\203o, Z\315\221\315\242a",
     29,
     18,
     {66, 8635, 136, 223, 3691, 40304, 11, 299, 136, 225, 78, 11, 1168, 137, 239, 137, 95, 64},
     0,
     {0}},
    {"control",
     "\000\001\002 bell\007 \033[31mred\033[0m del\177 \034\035\036\037 sep\013\014",
     38,
     25,
     {188, 189, 190,  8966, 195, 220, 215, 58,  3132, 76,    445, 215, 58,
      15,  76,  1619, 221,  220, 216, 217, 218, 219,  41767, 199, 200},
     0,
     {0}},
    {"invalid_utf8",
     "abc\377\376 def \303( x\342\202 \355\240\200 \364\220\200\200 \300\257 end\200",
     33,
     23,
     {39305, 187, 186, 825, 6184, 7,   2124, 158, 224, 220, 169, 254,
      222,   220, 176, 238, 222,  222, 220,  124, 107, 886, 222},
     0,
     {0}},
    {"endoftext",
     "first doc.<|endoftext|>second doc <|endoftext|><|endoftext|>",
     60,
     24,
     {11085, 2205, 29847, 91,   437, 1659, 5239, 91,  29,   12227, 2205, 1279,
      91,    437,  1659,  5239, 91,  6927, 91,   437, 1659, 5239,  91,   29},
     9,
     {11085, 2205, 13, 50256, 12227, 2205, 220, 50256, 50256}},
    {"unicode15",
     "a\341\240\216 b \360\236\223\220\360\236\223\221 \360\236\223\261 x\342\200\250y\302\240z",
     29,
     25,
     {64,  157, 254, 236, 275, 220, 172,  252, 241, 238, 172,  252, 241,
      239, 220, 172, 252, 241, 109, 2124, 447, 101, 88,  1849, 89},
     0,
     {0}},
};
#define NCASES (sizeof cases / sizeof cases[0])

static char gpt2_dir[1024];

static tok_tokenizer *load_gpt2(void) {
  const char *data = ts_shared_data();
  if (!data)
    cr_skip_test("../shared/data is absent: GPT-2's encoder.json and vocab.bpe are needed");
  snprintf(gpt2_dir, sizeof gpt2_dir, "%s/gpt2", data);
  tok_tokenizer *t;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(tok_load(&t, gpt2_dir, &err), 0, "%s", err.msg);
  return t;
}

static void expect_ids(const tok_ids *got, const int32_t *want, size_t n, const char *what) {
  cr_expect_eq(got->n, n, "%s: %zu ids, want %zu", what, got->n, n);
  for (size_t i = 0; i < n && i < got->n; i++)
    cr_expect_eq(got->ids[i], want[i], "%s: id %zu is %d, want %d", what, i, got->ids[i], want[i]);
}

static void check_cases(tok_tokenizer *t, const char *form) {
  dfpo_err err;
  dfpo_err_clear(&err);
  for (size_t c = 0; c < NCASES; c++) {
    char what[128];
    for (int special = 0; special < 2; special++) {
      tok_ids v = {0};
      cr_assert_eq(
          tok_encode(t, cases[c].text, cases[c].len, special ? TOK_ALLOW_SPECIAL : 0, &v, &err), 0,
          "%s", err.msg);
      snprintf(what, sizeof what, "%s: %s%s", form, cases[c].name, special ? " (special)" : "");
      if (special && cases[c].nsp)
        expect_ids(&v, cases[c].sp, cases[c].nsp, what);
      else
        expect_ids(&v, cases[c].ids, cases[c].n, what);
      char *buf = NULL;
      size_t len = 0, cap = 0;
      cr_assert_eq(tok_decode(t, v.ids, v.n, &buf, &len, &cap, &err), 0, "%s", err.msg);
      cr_expect(len == cases[c].len && !memcmp(buf, cases[c].text, len), "%s: round trip", what);
      free(buf);
      tok_ids_free(&v);
    }
  }
}

Test(tok_encode, tricky_text_matches_reference_ids) {
  tok_tokenizer *t = load_gpt2();
  cr_expect_eq(tok_vocab_size(t), 50257);
  cr_expect_eq(tok_merge_count(t), 50000);
  cr_expect_eq(tok_eot_id(t), 50256);
  size_t n;
  const char *b = tok_token_bytes(t, 995, &n);
  cr_expect(b && n == 6 && !memcmp(b, " world", 6));
  cr_expect_null(tok_token_bytes(t, 50257, &n));
  check_cases(t, "encoder.json+vocab.bpe");
  tok_free(t);
}

static void copy_file(const char *from, const char *to) {
  char *data;
  size_t len;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(dfpo_read_file(from, &data, &len, &err), 0, "%s", err.msg);
  cr_assert_eq(dfpo_atomic_write_file(to, data, len, &err), 0, "%s", err.msg);
  free(data);
}

/* tokenizer.json in the shape Hugging Face writes for GPT-2: the vocabulary,
 * the merges ("a b" strings, or [a, b] pairs in newer files) and the added
 * special token. */
static void write_tokenizer_json(const char *path, int pair_form) {
  char p[1200], *text, *merges;
  size_t len, mlen;
  dfpo_err err;
  dfpo_err_clear(&err);
  snprintf(p, sizeof p, "%s/encoder.json", gpt2_dir);
  cr_assert_eq(dfpo_read_file(p, &text, &len, &err), 0, "%s", err.msg);
  snprintf(p, sizeof p, "%s/vocab.bpe", gpt2_dir);
  cr_assert_eq(dfpo_read_file(p, &merges, &mlen, &err), 0, "%s", err.msg);
  cJSON *doc = cJSON_CreateObject(), *model = cJSON_CreateObject(), *ml = cJSON_CreateArray();
  cJSON_AddStringToObject(doc, "version", "1.0");
  cJSON *added = cJSON_AddArrayToObject(doc, "added_tokens");
  cJSON *eot = cJSON_CreateObject();
  cJSON_AddNumberToObject(eot, "id", 50256);
  cJSON_AddStringToObject(eot, "content", "<|endoftext|>");
  cJSON_AddBoolToObject(eot, "special", 1);
  cJSON_AddItemToArray(added, eot);
  cJSON_AddStringToObject(model, "type", "BPE");
  cJSON_AddItemToObject(model, "vocab", cJSON_Parse(text));
  char *line = strchr(merges, '\n') + 1; /* past "#version: 0.2" */
  while (*line) {
    char *nl = strchr(line, '\n');
    *nl = '\0';
    if (pair_form) {
      char *sp = strchr(line, ' ');
      *sp = '\0';
      cJSON *pair = cJSON_CreateArray();
      cJSON_AddItemToArray(pair, cJSON_CreateString(line));
      cJSON_AddItemToArray(pair, cJSON_CreateString(sp + 1));
      cJSON_AddItemToArray(ml, pair);
    } else {
      cJSON_AddItemToArray(ml, cJSON_CreateString(line));
    }
    line = nl + 1;
  }
  cJSON_AddItemToObject(model, "merges", ml);
  cJSON_AddItemToObject(doc, "model", model);
  char *out = cJSON_Print(doc);
  cr_assert_eq(dfpo_atomic_write_file(path, out, strlen(out), &err), 0, "%s", err.msg);
  free(out);
  cJSON_Delete(doc);
  free(text);
  free(merges);
}

Test(tok_encode, hugging_face_forms_give_the_same_ids) {
  tok_free(load_gpt2());
  char dir[256], a[1200], b[1200];
  ts_tmpdir(dir, sizeof dir);
  snprintf(a, sizeof a, "%s/encoder.json", gpt2_dir);
  snprintf(b, sizeof b, "%s/vocab.json", dir);
  copy_file(a, b);
  snprintf(a, sizeof a, "%s/vocab.bpe", gpt2_dir);
  snprintf(b, sizeof b, "%s/merges.txt", dir);
  copy_file(a, b);
  tok_tokenizer *t;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(tok_load(&t, dir, &err), 0, "%s", err.msg);
  check_cases(t, "vocab.json+merges.txt");
  tok_free(t);
  for (int form = 0; form < 2; form++) {
    char sub[400];
    snprintf(sub, sizeof sub, "%s/fast%d", dir, form);
    cr_assert_eq(dfpo_mkdirs(sub, &err), 0);
    snprintf(a, sizeof a, "%s/tokenizer.json", sub);
    write_tokenizer_json(a, form);
    /* the folder and the file itself both load */
    cr_assert_eq(tok_load(&t, form ? a : sub, &err), 0, "%s", err.msg);
    cr_expect_eq(tok_merge_count(t), 50000);
    check_cases(t, form ? "tokenizer.json [a, b] merges" : "tokenizer.json \"a b\" merges");
    tok_free(t);
  }
  ts_rmtree(dir);
}

/* Random byte strings: ASCII words, GPT-2-relevant punctuation and spaces,
 * multi-byte characters, and arbitrary bytes (invalid UTF-8). */
static size_t random_text(dfpo_rng *r, char *buf, size_t max) {
  static const char *const bits[] = {"the",
                                     " cat",
                                     "'s",
                                     "  ",
                                     "\n",
                                     "\t",
                                     "123",
                                     "!!",
                                     "\xc3\xa9",
                                     "\xe6\x97\xa5",
                                     "\xf0\x9f\x98\x80",
                                     "<|endoftext|>",
                                     "\xcc\x81",
                                     " \xe2\x80\x8b",
                                     "'ll"};
  size_t n = 0, want = dfpo_rng_below(r, (uint32_t)max);
  while (n < want) {
    uint32_t k = dfpo_rng_below(r, 20);
    if (k < 15) {
      size_t l = strlen(bits[k]);
      if (n + l > max)
        break;
      memcpy(buf + n, bits[k], l);
      n += l;
    } else {
      buf[n++] = (char)dfpo_rng_below(r, 256);
    }
  }
  return n;
}

Test(tok_encode, any_bytes_round_trip) {
  tok_tokenizer *t = load_gpt2();
  dfpo_rng r;
  dfpo_rng_init(&r, 7, DFPO_STREAM_DATA);
  char text[600], *buf = NULL;
  size_t cap = 0;
  dfpo_err err;
  dfpo_err_clear(&err);
  for (int i = 0; i < 2000; i++) {
    size_t n = random_text(&r, text, sizeof text);
    for (int special = 0; special < 2; special++) {
      tok_ids v = {0};
      cr_assert_eq(tok_encode(t, text, n, special, &v, &err), 0, "%s", err.msg);
      size_t len = 0;
      cr_assert_eq(tok_decode(t, v.ids, v.n, &buf, &len, &cap, &err), 0, "%s", err.msg);
      cr_assert(len == n && !memcmp(buf, text, n), "string %d does not round-trip", i);
      tok_ids_free(&v);
    }
  }
  free(buf);
  tok_free(t);
}

Test(tok_encode, heap_and_scan_merges_agree) {
  /* Two tokenizers so that neither answers from a word cache filled by the
   * other algorithm. */
  tok_tokenizer *scan = load_gpt2(), *heap = load_gpt2();
  dfpo_rng r;
  dfpo_rng_init(&r, 11, DFPO_STREAM_DATA);
  static char text[20000];
  dfpo_err err;
  dfpo_err_clear(&err);
  for (int i = 0; i < 300; i++) {
    size_t n;
    if (i % 3 == 0) {
      n = random_text(&r, text, 600);
    } else {
      /* long single pieces: letters, digits, punctuation runs */
      static const char *const alpha[] = {"abcdefghijklmnopqrstuvwxyz", "0123456789", "=-_*#.",
                                          "aeiou"};
      const char *al = alpha[i % 4];
      n = 1 + dfpo_rng_below(&r, 5000);
      for (size_t k = 0; k < n; k++)
        text[k] = al[dfpo_rng_below(&r, (uint32_t)strlen(al))];
    }
    tok_ids a = {0}, b = {0};
    tok_set_heap_threshold((size_t)1 << 30);
    cr_assert_eq(tok_encode(scan, text, n, 0, &a, &err), 0, "%s", err.msg);
    tok_set_heap_threshold(2);
    cr_assert_eq(tok_encode(heap, text, n, 0, &b, &err), 0, "%s", err.msg);
    cr_assert_eq(a.n, b.n, "text %d: %zu ids by scan, %zu by heap", i, a.n, b.n);
    cr_assert(!a.n || !memcmp(a.ids, b.ids, a.n * sizeof *a.ids), "text %d differs", i);
    tok_ids_free(&a);
    tok_ids_free(&b);
  }
  tok_set_heap_threshold(48);
  tok_free(scan);
  tok_free(heap);
}

Test(tok_encode, many_documents_match_one_at_a_time) {
  tok_tokenizer *t = load_gpt2();
  enum { N = 500 };
  static char store[N][400];
  const char *texts[N];
  size_t lens[N];
  tok_ids outs[N];
  memset(outs, 0, sizeof outs);
  dfpo_rng r;
  dfpo_rng_init(&r, 3, DFPO_STREAM_DATA);
  for (int i = 0; i < N; i++) {
    lens[i] = random_text(&r, store[i], sizeof store[i]);
    texts[i] = store[i];
  }
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(tok_encode_many(t, texts, lens, N, TOK_ALLOW_SPECIAL, outs, &err), 0, "%s", err.msg);
  /* a second call reuses the per-thread caches the first one filled */
  static tok_ids again[N];
  cr_assert_eq(tok_encode_many(t, texts, lens, N, TOK_ALLOW_SPECIAL, again, &err), 0, "%s",
               err.msg);
  for (int i = 0; i < N; i++) {
    cr_expect(again[i].n == outs[i].n &&
                  (!outs[i].n || !memcmp(again[i].ids, outs[i].ids, outs[i].n * sizeof(int32_t))),
              "document %d, second call", i);
    tok_ids_free(&again[i]);
  }
  for (int i = 0; i < N; i++) {
    tok_ids v = {0};
    cr_assert_eq(tok_encode(t, texts[i], lens[i], TOK_ALLOW_SPECIAL, &v, &err), 0);
    /* memcmp on empty vectors would pass NULL pointers */
    cr_expect(v.n == outs[i].n && (!v.n || !memcmp(v.ids, outs[i].ids, v.n * sizeof *v.ids)),
              "document %d", i);
    tok_ids_free(&v);
    tok_ids_free(&outs[i]);
  }
  tok_free(t);
}

Test(tok_encode, megabyte_runs_do_not_break_the_matcher) {
  tok_tokenizer *t = load_gpt2();
  size_t n = 1 << 20;
  char *text = malloc(n + 1), *buf = NULL;
  size_t cap = 0;
  dfpo_err err;
  dfpo_err_clear(&err);
  const char fill[] = {' ', 'a', '\n', '.', '\xff'};
  for (size_t f = 0; f < sizeof fill; f++) {
    memset(text, fill[f], n);
    text[n] = 'x';
    tok_ids v = {0};
    cr_assert_eq(tok_encode(t, text, n + 1, 0, &v, &err), 0, "%s", err.msg);
    size_t len = 0;
    cr_assert_eq(tok_decode(t, v.ids, v.n, &buf, &len, &cap, &err), 0, "%s", err.msg);
    cr_expect(len == n + 1 && !memcmp(buf, text, n + 1), "fill 0x%02x", (unsigned char)fill[f]);
    tok_ids_free(&v);
  }
  free(text);
  free(buf);
  tok_free(t);
}

Test(tok_encode, decode_rejects_unknown_ids) {
  tok_tokenizer *t = load_gpt2();
  int32_t ids[] = {15496, 50257};
  char *buf = NULL;
  size_t len = 0, cap = 0;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_expect_eq(tok_decode(t, ids, 2, &buf, &len, &cap, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "50257") && strstr(err.msg, "position 1"), "%s", err.msg);
  free(buf);
  tok_free(t);
}
