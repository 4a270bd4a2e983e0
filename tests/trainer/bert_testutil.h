/* Shared by the encoder-classifier and WordPiece tests: the vocabulary
 * words of the test folders, the tricky texts, and running
 * tests/trainer/bert_reference.py (the PyTorch and tokenizer peers). */
#ifndef DFPO_TESTS_TRAINER_BERT_TESTUTIL_H
#define DFPO_TESTS_TRAINER_BERT_TESTUTIL_H

#include "tests/support/support.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* After [PAD] [UNK] [CLS] [SEP] [MASK] (ids 0-4). */
static const char *const bt_words[] = {
    "hello",  "world",    "!",    ",",     ".",      "'",   "-",   "cafe",   "creme",
    "brulee", "naive",    "un",   "##aff", "##able", "a",   "##a", "##b",    "b",
    "i",      "istanbul", "οδοσ", "σ",     "οδος",   "我",  "爱",  "北",     "京",
    "the",    "movie",    "was",  "great", "bad",    "##s", "don", "t",      "e",
    "x",      "«",        "»",    "…",     "—",      "❤",   "😀",   "ａｂｃ", "good",
    "film",   "##ing",    "act",  "##or",  "plot",   "is",  "not", "##ly",   "very"};
enum { BT_NWORDS = sizeof bt_words / sizeof bt_words[0] };

/* Texts that exercise each step of the BERT normaliser and WordPiece. */
static const char *const bt_tricky[] = {
    "Héllo, WORLD!",              /* accents, lower case, punctuation */
    "Crème Brûlée naïve café",    /* composed accents */
    "我爱北京天安门",             /* CJK ideographs, some unknown */
    "unaffable",                  /* WordPiece pieces */
    "I \u2764\ufe0f \U0001F600!", /* emoji, a variation selector (Mn) */
    "a\x01"
    "b\u200bc\td\u00ade",               /* Cc, Cf (zero-width space, soft hyphen), tab */
    "ΟΔΟΣ Σ",                           /* final sigma: per-character lower case */
    "\u0130stanbul",                    /* İ: NFD then lower case */
    "\u00abdon't\u00bb \u2014 x\u2026", /* Unicode punctuation */
    "ＡＢＣ",                           /* full-width letters (no NFKC) */
    "e\u0301 E\u0301",                  /* a decomposed accent */
    "我\u3000爱",                       /* ideographic space */
    "the movie was great. not bad!",    /* plain */
    "  \n ",                            /* nothing but space */
    "very good film, very good film, very good film, very good film, very good film, very good "
    "film, very good film, very good film, very good film", /* past 32 tokens: cut */
};
enum { BT_NTRICKY = sizeof bt_tricky / sizeof bt_tricky[0] };

static inline int bt_have_python(int need_torch) {
  if (access("/usr/bin/python3", X_OK) != 0)
    return 0;
  ts_run r;
  char *argv[] = {"/usr/bin/python3", "-c", need_torch ? "import torch" : "import unicodedata",
                  NULL};
  ts_run_cmd(&r, argv, NULL, NULL);
  int ok = r.status == 0;
  ts_run_free(&r);
  return ok;
}

/* Writes spec to dir/spec.json, runs the reference, returns its output. */
static inline cJSON *bt_reference(const char *dir, cJSON *spec) {
  char sp[512], op[512];
  snprintf(sp, sizeof sp, "%s/spec.json", dir);
  snprintf(op, sizeof op, "%s/ref.json", dir);
  char *text = cJSON_Print(spec);
  ts_write_text(sp, text);
  free(text);
  ts_run r;
  char *argv[] = {"/usr/bin/python3", DFPO_SOURCE_DIR "/tests/trainer/bert_reference.py", sp, op,
                  NULL};
  ts_run_cmd(&r, argv, NULL, NULL);
  cr_assert_eq(r.status, 0, "bert_reference.py failed: %s", r.err);
  ts_run_free(&r);
  char *out = ts_slurp(op);
  cJSON *j = cJSON_Parse(out);
  free(out);
  cr_assert_not_null(j, "bert_reference.py wrote no JSON");
  return j;
}

static inline cJSON *bt_words_json(void) {
  cJSON *a = cJSON_CreateArray();
  for (int i = 0; i < BT_NWORDS; i++)
    cJSON_AddItemToArray(a, cJSON_CreateString(bt_words[i]));
  return a;
}

/* One folder of a bert_reference.py spec: a random-weight classifier of
 * `family` at dir, the given shape, seed and labels, over bt_words. The
 * caller adds more keys (texts, problem_type) and puts it in "folders". */
static inline cJSON *bt_folder(const char *dir, const char *family, int layers, int width,
                               int heads, int ffn, int max_pos, int seed, const char *const *labels,
                               int n_labels) {
  cJSON *f = cJSON_CreateObject();
  cJSON_AddStringToObject(f, "dir", dir);
  cJSON_AddStringToObject(f, "family", family);
  cJSON_AddNumberToObject(f, "layers", layers);
  cJSON_AddNumberToObject(f, "width", width);
  cJSON_AddNumberToObject(f, "heads", heads);
  cJSON_AddNumberToObject(f, "ffn", ffn);
  cJSON_AddNumberToObject(f, "max_pos", max_pos);
  cJSON_AddNumberToObject(f, "seed", seed);
  cJSON_AddItemToObject(f, "labels", cJSON_CreateStringArray(labels, n_labels));
  cJSON_AddItemToObject(f, "words", bt_words_json());
  return f;
}

#endif
