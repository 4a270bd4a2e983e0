/* tok_train_spm: T5's tokenizer trained by libsentencepiece's own trainer.
 * The reference is python3-sentencepiece (the same library's Python
 * binding), run by the script below: it encodes the test texts with the
 * spiece.model tok_train_spm wrote, and trains a model itself with the
 * settings tok_train_spm documents (unigram, pad 0, eos 1, unk 2, no bos,
 * character coverage 1, hard_vocab_limit off, one thread) on the same
 * corpus, so that the two models' pieces and scores can be compared. Skipped, saying
 * so, without /usr/bin/python3's sentencepiece. */
#include "common/common.h"
#include "tests/support/support.h"
#include "trainer/tok.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* argv: model dir, texts file (JSON list), corpus, a folder for its own
 * model. Prints {"pieces", "ids": [[...]], "same_model": bool}: whether the
 * two models have the same pieces with the same scores (their bytes differ:
 * the model holds its trainer's input and output paths). */
static const char script[] =
    "import json, os, sys\n"
    "import sentencepiece as spm\n"
    "d, texts, corpus, own = sys.argv[1:5]\n"
    "sp = spm.SentencePieceProcessor(model_file=os.path.join(d, 'spiece.model'))\n"
    "texts = json.load(open(texts, encoding='utf-8'))\n"
    "os.makedirs(own, exist_ok=True)\n"
    "spm.SentencePieceTrainer.train(input=corpus, model_prefix=os.path.join(own, 'spiece'),\n"
    "    vocab_size=300, model_type='unigram', pad_id=0, eos_id=1, unk_id=2, bos_id=-1,\n"
    "    character_coverage=1.0, hard_vocab_limit=False, num_threads=1, minloglevel=2)\n"
    "mine = spm.SentencePieceProcessor(model_file=os.path.join(own, 'spiece.model'))\n"
    "def table(p):\n"
    "    return [(p.id_to_piece(i), p.get_score(i)) for i in range(p.get_piece_size())]\n"
    "a, b = table(sp), table(mine)\n"
    "print(json.dumps({'pieces': sp.get_piece_size(), 'ids': [sp.encode(t) for t in texts],\n"
    "                  'pad': sp.id_to_piece(0), 'eos': sp.id_to_piece(1),\n"
    "                  'unk': sp.id_to_piece(2), 'same_model': a == b}))\n";

static const char *const texts[] = {
    "a dog runs across the park with a ball",
    "The skier skis down the snowy mountain.",
    "  leading and trailing spaces  ",
    "tabs\tand\nnew lines",
    "caf\xc3\xa9 cr\xc3\xa8me br\xc3\xbb\x6c\xc3\xa9\x65 na\xc3\xafve",
    "full width \xef\xbc\xa1\xef\xbc\xa2\xef\xbc\xa3 and a ligature \xef\xac\x81",
    "unseen runes: \xe5\x8c\x97\xe4\xba\xac \xf0\x9f\x98\x80 zebra quokka",
    "",
};
enum { N_TEXTS = sizeof texts / sizeof texts[0] };

/* A corpus of 500 sentences of words from a list and words made of
 * syllables (a seeded PCG32 stream, so the same file every run). */
static void write_corpus(const char *path) {
  static const char *const words[] = {
      "the",   "dog",   "cat",         "runs",  "jumps",    "over",  "a",     "ball",  "park",
      "skier", "skis",  "down",        "snowy", "mountain", "man",   "woman", "plays", "guitar",
      "on",    "stage", "caf\xc3\xa9", "with",  "friends",  "river", "boat"};
  static const char *const syl[] = {"ka",  "lo",  "mi",        "ren", "tu", "sha", "vo",  "qui",
                                    "bel", "dra", "\xc3\xa9n", "zu",  "po", "rat", "nix", "el"};
  enum { NW = sizeof words / sizeof words[0], NS = sizeof syl / sizeof syl[0] };
  dfpo_rng r;
  dfpo_rng_init(&r, 7, 0);
  FILE *fp = fopen(path, "w");
  cr_assert_not_null(fp, "%s", path);
  for (int i = 0; i < 500; i++) {
    int n = 3 + (int)dfpo_rng_below(&r, 10);
    for (int k = 0; k < n; k++) {
      fputs(k ? " " : "", fp);
      if (dfpo_rng_below(&r, 2)) {
        fputs(words[dfpo_rng_below(&r, NW)], fp);
        continue;
      }
      /* a made-up word of 2-4 syllables: more pieces to learn */
      for (int y = 2 + (int)dfpo_rng_below(&r, 3); y > 0; y--)
        fputs(syl[dfpo_rng_below(&r, NS)], fp);
    }
    fputs(i % 3 ? ".\n" : "\n", fp);
  }
  fclose(fp);
}

Test(tok_spm_train, encodes_as_python_sentencepiece_and_trains_the_same_model, .timeout = 120) {
  if (!ts_python_has("sentencepiece"))
    cr_skip_test("/usr/bin/python3 lacks sentencepiece (Debian: python3-sentencepiece): no "
                 "reference to compare with");
  char dir[256], corpus[300], out[300], own[300], tj[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(corpus, sizeof corpus, "%s/corpus.txt", dir);
  snprintf(out, sizeof out, "%s/tok", dir);
  snprintf(own, sizeof own, "%s/own", dir);
  snprintf(tj, sizeof tj, "%s/texts.json", dir);
  write_corpus(corpus);
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(tok_train_spm(corpus, 300, 10, out, &err), DFPO_OK, "%s", err.msg);
  tok_tokenizer *t;
  cr_assert_eq(tok_load(&t, out, &err), DFPO_OK, "%s", err.msg);

  cJSON *list = cJSON_CreateStringArray(texts, N_TEXTS);
  char *json = cJSON_PrintUnformatted(list);
  ts_write_text(tj, json);
  free(json);
  cJSON_Delete(list);
  ts_run r;
  char *argv[] = {"/usr/bin/python3", "-c", (char *)script, out, tj, corpus, own, NULL};
  ts_run_cmd(&r, argv, NULL, NULL);
  cr_assert_eq(r.status, 0, "the reference script: %s", r.err);
  cJSON *ref = cJSON_Parse(r.out);
  cr_assert_not_null(ref, "not JSON: %s", r.out);
  ts_run_free(&r);

  int pieces = cJSON_GetObjectItem(ref, "pieces")->valueint;
  cr_expect(cJSON_IsTrue(cJSON_GetObjectItem(ref, "same_model")),
            "python3-sentencepiece's trainer, given the documented settings, made other pieces or "
            "scores");
  cr_expect_str_eq(ts_json_str(ref, "pad"), "<pad>");
  cr_expect_str_eq(ts_json_str(ref, "eos"), "</s>");
  cr_expect_str_eq(ts_json_str(ref, "unk"), "<unk>");
  /* T5's conventions on top: the 10 extra ids above the pieces */
  cr_expect_eq(tok_vocab_size(t), (size_t)pieces + 10);
  cr_expect_eq(tok_eot_id(t), 1);
  cr_expect_eq(tok_token_id(t, "<extra_id_0>", 12), pieces + 9);
  cr_expect_eq(tok_token_id(t, "<extra_id_9>", 12), pieces);
  cr_expect_eq(tok_token_id(t, "<extra_id_10>", 13), -1);
  const cJSON *ids = cJSON_GetObjectItem(ref, "ids");
  int compared = 0;
  for (int i = 0; i < N_TEXTS; i++) {
    tok_ids v = {0};
    cr_assert_eq(tok_encode(t, texts[i], strlen(texts[i]), 0, &v, &err), DFPO_OK, "%s", err.msg);
    const cJSON *row = cJSON_GetArrayItem(ids, i);
    cr_expect_eq((size_t)cJSON_GetArraySize(row), v.n, "text %d: %zu ids, python %d", i, v.n,
                 cJSON_GetArraySize(row));
    for (size_t k = 0; k < v.n && k < (size_t)cJSON_GetArraySize(row); k++)
      cr_expect_eq(v.ids[k], cJSON_GetArrayItem(row, (int)k)->valueint, "text %d, id %zu", i, k);
    compared += (int)v.n;
    tok_ids_free(&v);
  }
  cr_log_info("tok_train_spm: %d pieces and scores as python's trainer makes them, %d ids of %d "
              "texts equal",
              pieces, compared, N_TEXTS);
  tok_free(t);
  cJSON_Delete(ref);

  /* no corpus: the library's message, naming the file */
  char missing[300];
  snprintf(missing, sizeof missing, "%s/absent.txt", dir);
  snprintf(out, sizeof out, "%s/tok2", dir);
  cr_expect_eq(tok_train_spm(missing, 300, 10, out, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "absent.txt") != NULL, "%s", err.msg);
  ts_rmtree(dir);
}
