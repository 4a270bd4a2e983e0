/* Writing a loaded tokenizer as Hugging Face's files (tok_save_hf: a
 * byte-level BPE as GPT-2's, a SentencePiece as T5's) and telling whether
 * a folder holds tokenizer files. */
#include "trainer/tok_internal.h"
#include "trainer/tok_spm.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int tok_folder_has_files(const char *dir) {
  static const char *const names[] = {"encoder.json",   "vocab.bpe",      "vocab.json",
                                      "merges.txt",     "tokenizer.json", "spiece.model",
                                      "tokenizer.model"};
  char path[4200];
  struct stat st;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, names[i]) < sizeof path &&
        stat(path, &st) == 0 && S_ISREG(st.st_mode))
      return 1;
  return 0;
}

/* Writes cJSON o (pretty, with a final newline) to dir/name atomically. */
static int write_json(const char *dir, const char *name, cJSON *o, int pretty, dfpo_err *err) {
  char path[4200];
  int rc = dfpo_path_fmt(path, sizeof path, err, "%s/%s", dir, name);
  char *text = rc ? NULL : pretty ? cJSON_Print(o) : cJSON_PrintUnformatted(o);
  if (!rc && !text)
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  dfpo_atomic a;
  if (!rc && !(rc = dfpo_atomic_open(&a, path, err))) {
    if (fputs(text, a.fp) == EOF || fputc('\n', a.fp) == EOF) {
      int e = errno;
      dfpo_atomic_abort(&a);
      rc = dfpo_err_errno(err, DFPO_ERUNTIME, e, "%s: write failed", path);
    } else {
      rc = dfpo_atomic_commit(&a, err);
    }
  }
  free(text);
  return rc;
}

/* The merges in rank order as (left, right) id pairs, from the hash table. */
static int merges_by_rank(const tok_tokenizer *t, int32_t (**out)[2], dfpo_err *err) {
  int32_t(*pairs)[2] = calloc(t->n_merges + 1, sizeof *pairs);
  if (!pairs)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  for (size_t i = 0; i < t->mcap; i++) {
    uint64_t v = t->mval[i];
    if (!v)
      continue;
    size_t rank = (size_t)(v >> 32) - 1;
    if (rank >= t->n_merges) { /* ranks are 0..n_merges-1, one each (tok_add_merge) */
      free(pairs);
      return dfpo_err_set(err, DFPO_ERUNTIME, "tokenizer: merge rank %zu of %zu", rank,
                          t->n_merges);
    }
    pairs[rank][0] = (int32_t)(t->mkey[i] >> 32);
    pairs[rank][1] = (int32_t)(uint32_t)t->mkey[i];
  }
  *out = pairs;
  return DFPO_OK;
}

/* Llama's files: tokenizer.model, tokenizer_config.json (LlamaTokenizer,
 * add_bos_token, add_eos_token) and special_tokens_map.json. */
static int save_llama_config(const tok_tokenizer *t, const char *dir, int model_max_length,
                             dfpo_err *err) {
  cJSON *map = cJSON_CreateObject();
  cJSON_AddStringToObject(map, "bos_token", "<s>");
  cJSON_AddStringToObject(map, "eos_token", "</s>");
  cJSON_AddStringToObject(map, "unk_token", "<unk>");
  int rc = write_json(dir, "special_tokens_map.json", map, 1, err);
  cJSON_Delete(map);
  if (rc)
    return rc;
  cJSON *c = cJSON_CreateObject();
  cJSON_AddStringToObject(c, "tokenizer_class", "LlamaTokenizer");
  cJSON_AddBoolToObject(c, "add_bos_token", t->spm_add_bos);
  cJSON_AddBoolToObject(c, "add_eos_token", t->spm_add_eos);
  cJSON_AddNumberToObject(c, "model_max_length", model_max_length);
  cJSON_AddStringToObject(c, "bos_token", "<s>");
  cJSON_AddStringToObject(c, "eos_token", "</s>");
  cJSON_AddStringToObject(c, "unk_token", "<unk>");
  rc = write_json(dir, "tokenizer_config.json", c, 1, err);
  cJSON_Delete(c);
  return rc;
}

/* T5's files: spiece.model (the loaded model's bytes), tokenizer_config.json
 * (T5Tokenizer, extra_ids) and special_tokens_map.json; Llama's above. */
static int save_spm(const tok_tokenizer *t, const char *dir, int model_max_length, dfpo_err *err) {
  char path[4200], msg[256], *data = NULL;
  size_t len = 0;
  int rc = dfpo_path_fmt(path, sizeof path, err, "%s/%s", dir,
                         t->spm_llama ? "tokenizer.model" : "spiece.model");
  if (rc)
    return rc;
  if (tok_spm_serialize(t->spm, &data, &len, msg, sizeof msg))
    return dfpo_err_set(err, DFPO_ERUNTIME, "%s: %s", path, msg);
  rc = dfpo_atomic_write_file(path, data, len, err);
  free(data);
  if (rc)
    return rc;
  if (t->spm_llama)
    return save_llama_config(t, dir, model_max_length, err);
  cJSON *map = cJSON_CreateObject();
  cJSON_AddStringToObject(map, "eos_token", "</s>");
  cJSON_AddStringToObject(map, "unk_token", "<unk>");
  cJSON_AddStringToObject(map, "pad_token", "<pad>");
  rc = write_json(dir, "special_tokens_map.json", map, 1, err);
  cJSON_Delete(map);
  if (rc)
    return rc;
  cJSON *c = cJSON_CreateObject();
  cJSON_AddStringToObject(c, "tokenizer_class", "T5Tokenizer");
  cJSON_AddNumberToObject(c, "extra_ids", (double)t->spm_extra);
  cJSON_AddNumberToObject(c, "model_max_length", model_max_length);
  cJSON_AddStringToObject(c, "eos_token", "</s>");
  cJSON_AddStringToObject(c, "unk_token", "<unk>");
  cJSON_AddStringToObject(c, "pad_token", "<pad>");
  rc = write_json(dir, "tokenizer_config.json", c, 1, err);
  cJSON_Delete(c);
  return rc;
}

int tok_save_hf(const tok_tokenizer *t, const char *dir, int model_max_length, dfpo_err *err) {
  static const char eot[] = "<|endoftext|>";
  if (t->spm)
    return save_spm(t, dir, model_max_length, err);
  if (t->eot < 0)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "the tokenizer has no %s, which Hugging Face's GPT-2 tokenizer needs as "
                        "its bos, eos and unk token",
                        eot);
  size_t maxlen = 0;
  for (size_t i = 0; i < t->n_ids; i++)
    if (t->tok_bytes[i] && t->tok_len[i] > maxlen)
      maxlen = t->tok_len[i];
  char *s = malloc(2 * maxlen + 1), *s2 = malloc(2 * maxlen + 1);
  int32_t(*pairs)[2] = NULL;
  int rc =
      s && s2 ? merges_by_rank(t, &pairs, err) : dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  /* vocab.json: ids in order (gaps, which a tokenizer.json may have, left out) */
  cJSON *vocab = rc ? NULL : cJSON_CreateObject();
  for (size_t i = 0; vocab && i < t->n_ids; i++)
    if (t->tok_bytes[i]) {
      tok_bytes_to_string(t->tok_bytes[i], t->tok_len[i], s);
      cJSON_AddItemToObject(vocab, s, cJSON_CreateNumber((double)i));
    }
  if (!rc)
    rc = write_json(dir, "vocab.json", vocab, 0, err);
  cJSON_Delete(vocab);
  char path[4200];
  dfpo_atomic a;
  if (!rc && !(rc = dfpo_path_fmt(path, sizeof path, err, "%s/merges.txt", dir)) &&
      !(rc = dfpo_atomic_open(&a, path, err))) {
    int bad = fputs("#version: 0.2\n", a.fp) == EOF;
    for (size_t r = 0; r < t->n_merges && !bad; r++) {
      tok_bytes_to_string(t->tok_bytes[pairs[r][0]], t->tok_len[pairs[r][0]], s);
      tok_bytes_to_string(t->tok_bytes[pairs[r][1]], t->tok_len[pairs[r][1]], s2);
      bad = fprintf(a.fp, "%s %s\n", s, s2) < 0;
    }
    if (bad) {
      int e = errno;
      dfpo_atomic_abort(&a);
      rc = dfpo_err_errno(err, DFPO_ERUNTIME, e, "%s: write failed", path);
    } else {
      rc = dfpo_atomic_commit(&a, err);
    }
  }
  free(s);
  free(s2);
  free(pairs);
  if (rc)
    return rc;
  cJSON *map = cJSON_CreateObject();
  cJSON_AddStringToObject(map, "bos_token", eot);
  cJSON_AddStringToObject(map, "eos_token", eot);
  cJSON_AddStringToObject(map, "unk_token", eot);
  rc = write_json(dir, "special_tokens_map.json", map, 1, err);
  cJSON_Delete(map);
  if (rc)
    return rc;
  cJSON *c = cJSON_CreateObject();
  cJSON_AddStringToObject(c, "tokenizer_class", "GPT2Tokenizer");
  cJSON_AddNumberToObject(c, "model_max_length", model_max_length);
  cJSON_AddBoolToObject(c, "add_prefix_space", 0);
  cJSON_AddBoolToObject(c, "add_bos_token", 0);
  cJSON_AddBoolToObject(c, "clean_up_tokenization_spaces", 0);
  cJSON_AddStringToObject(c, "errors", "replace");
  cJSON_AddStringToObject(c, "bos_token", eot);
  cJSON_AddStringToObject(c, "eos_token", eot);
  cJSON_AddStringToObject(c, "unk_token", eot);
  cJSON *dec = cJSON_AddObjectToObject(c, "added_tokens_decoder");
  char id[24];
  snprintf(id, sizeof id, "%d", (int)t->eot);
  cJSON *e = cJSON_AddObjectToObject(dec, id);
  cJSON_AddStringToObject(e, "content", eot);
  cJSON_AddBoolToObject(e, "lstrip", 0);
  cJSON_AddBoolToObject(e, "normalized", 1);
  cJSON_AddBoolToObject(e, "rstrip", 0);
  cJSON_AddBoolToObject(e, "single_word", 0);
  cJSON_AddBoolToObject(e, "special", 1);
  rc = write_json(dir, "tokenizer_config.json", c, 1, err);
  cJSON_Delete(c);
  return rc;
}
