/* The SentencePiece tokenizers (models read by Debian's libsentencepiece
 * through the bridge trainer/tok_spm.h): T5's spiece.model with T5's
 * conventions: pad 0, eos "</s>" 1, unk 2 (the model's own ids), no bos, and
 * the extra ids "<extra_id_N>" as the top ids (N = 0 is the largest id),
 * as Hugging Face's T5Tokenizer numbers them; Llama's tokenizer.model with
 * LlamaTokenizer's: unk 0, bos "<s>" 1, eos "</s>" 2, bos (add_bos_token)
 * and eos (add_eos_token) added around a text. */
#include "trainer/tok_internal.h"
#include "trainer/tok_spm.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* tokenizer_config.json's settings when the folder has it: T5's
 * "extra_ids" (else Hugging Face's default, 100; Llama: none), Llama's
 * "add_bos_token" (default true) and "add_eos_token" (default false).
 * Returns the extra ids, or -1 on error. */
static long config_of(const char *dir, int llama, int *add_bos, int *add_eos, dfpo_err *err) {
  char path[4200];
  struct stat st;
  *add_bos = 1, *add_eos = 0;
  if (dfpo_path_fmt(path, sizeof path, err, "%s/tokenizer_config.json", dir))
    return -1;
  if (stat(path, &st) != 0)
    return llama ? 0 : 100;
  char *text = NULL;
  if (dfpo_read_file(path, &text, NULL, err))
    return -1;
  cJSON *j = cJSON_Parse(text);
  free(text);
  if (!j) {
    dfpo_err_set(err, DFPO_EDATA, "%s: not JSON", path);
    return -1;
  }
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, "extra_ids");
  long n = llama ? 0 : cJSON_IsNumber(x) ? (long)x->valuedouble : 100;
  const cJSON *b = cJSON_GetObjectItemCaseSensitive(j, "add_bos_token");
  const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "add_eos_token");
  if (cJSON_IsBool(b))
    *add_bos = cJSON_IsTrue(b);
  if (cJSON_IsBool(e))
    *add_eos = cJSON_IsTrue(e);
  cJSON_Delete(j);
  if (n < 0 || n > 100000) {
    dfpo_err_set(err, DFPO_EDATA, "%s: extra_ids %ld out of range", path, n);
    return -1;
  }
  return n;
}

int tok_spm_load_dir(tok_tokenizer **out, const char *dir, int llama, dfpo_err *err) {
  *out = NULL;
  char path[4200], msg[512];
  int rc = dfpo_path_fmt(path, sizeof path, err, "%s/%s", dir,
                         llama ? "tokenizer.model" : "spiece.model");
  if (rc)
    return rc;
  int add_bos, add_eos;
  long extra = config_of(dir, llama, &add_bos, &add_eos, err);
  if (extra < 0)
    return err ? err->code : DFPO_EDATA;
  tok_tokenizer *t = calloc(1, sizeof *t);
  if (!t)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  t->eot = t->spm_bos = -1;
  t->spm_llama = llama, t->spm_add_bos = add_bos, t->spm_add_eos = add_eos;
  if (tok_spm_load(&t->spm, path, msg, sizeof msg)) {
    free(t);
    return dfpo_err_set(err, DFPO_EDATA, "%s: %s", path, msg);
  }
  int np = tok_spm_size(t->spm);
  t->spm_pieces = (size_t)np;
  t->spm_extra = (size_t)extra;
  t->n_ids = t->ids_cap = (size_t)np + (size_t)extra;
  t->tok_bytes = calloc(t->n_ids ? t->n_ids : 1, sizeof *t->tok_bytes);
  t->tok_len = calloc(t->n_ids ? t->n_ids : 1, sizeof *t->tok_len);
  if (!t->tok_bytes || !t->tok_len)
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  for (size_t id = 0; id < t->n_ids && !rc; id++) {
    char xb[32];
    const char *p;
    size_t len;
    if (id < (size_t)np) {
      p = tok_spm_piece(t->spm, (int)id, &len);
    } else {
      len = (size_t)snprintf(xb, sizeof xb, "<extra_id_%zu>", t->n_ids - 1 - id);
      p = xb;
    }
    int ins;
    if (!(t->tok_bytes[id] = malloc(len + 1)) ||
        !tok_strmap_put(&t->vocab, p, len, (int64_t)id, &ins)) {
      rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
      break;
    }
    memcpy(t->tok_bytes[id], p, len);
    t->tok_bytes[id][len] = '\0';
    t->tok_len[id] = (uint32_t)len;
  }
  /* T5's and Llama's end of sequence plays the part of GPT-2's
   * <|endoftext|> */
  if (!rc) {
    t->eot = tok_spm_piece_id(t->spm, "</s>", 4);
    t->spm_bos = llama ? tok_spm_piece_id(t->spm, "<s>", 3) : -1;
  }
  if (!rc && llama && ((add_bos && t->spm_bos < 0) || (add_eos && t->eot < 0)))
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: no %s piece to add", path,
                      add_bos && t->spm_bos < 0 ? "<s>" : "</s>");
  if (rc) {
    tok_free(t);
    return rc;
  }
  *out = t;
  return DFPO_OK;
}

static int push_ids(tok_ids *out, const int *ids, size_t n, dfpo_err *err) {
  if (dfpo_grow(&out->ids, &out->cap, out->n + n + 1, sizeof *out->ids, 64, DFPO_NOCAP, err))
    return err ? err->code : DFPO_ERUNTIME;
  for (size_t i = 0; i < n; i++)
    out->ids[out->n++] = ids[i];
  return DFPO_OK;
}

static int encode_plain(tok_tokenizer *t, const char *text, size_t len, tok_ids *out,
                        dfpo_err *err) {
  if (!len)
    return DFPO_OK;
  int *ids;
  size_t n;
  char msg[512];
  if (tok_spm_encode(t->spm, text, len, &ids, &n, msg, sizeof msg))
    return dfpo_err_set(err, DFPO_ERUNTIME, "sentencepiece: %s", msg);
  int rc = push_ids(out, ids, n, err);
  free(ids);
  return rc;
}

/* The special text at text[0..len) with TOK_ALLOW_SPECIAL: "<extra_id_N>"
 * (N below the extra ids), "</s>" or "<pad>" (T5), "<s>", "</s>" or
 * "<unk>" (Llama); its id, *n its bytes, or -1. */
static int special_at(const tok_tokenizer *t, const char *s, size_t len, size_t *n) {
  static const char *const ctl[2][3] = {{"</s>", "<pad>", NULL}, {"<s>", "</s>", "<unk>"}};
  for (int k = 0; k < 3 && ctl[t->spm_llama][k]; k++) {
    const char *c = ctl[t->spm_llama][k];
    size_t L = strlen(c);
    if (len >= L && !memcmp(s, c, L)) {
      int64_t *v = tok_strmap_get(&t->vocab, s, L);
      if (v) {
        *n = L;
        return (int)*v;
      }
    }
  }
  static const char pre[] = "<extra_id_";
  size_t P = sizeof pre - 1, i = P;
  if (len <= P || memcmp(s, pre, P))
    return -1;
  while (i < len && s[i] >= '0' && s[i] <= '9' && i < P + 7)
    i++;
  if (i == P || i >= len || s[i] != '>')
    return -1;
  int64_t *v = tok_strmap_get(&t->vocab, s, i + 1);
  if (!v || (size_t)*v < t->spm_pieces)
    return -1;
  *n = i + 1;
  return (int)*v;
}

static int encode_special(tok_tokenizer *t, const char *text, size_t len, int flags, tok_ids *out,
                          dfpo_err *err) {
  if (!(flags & TOK_ALLOW_SPECIAL))
    return encode_plain(t, text, len, out, err);
  size_t start = 0;
  for (size_t i = 0; i < len;) {
    size_t n;
    int id = text[i] == '<' ? special_at(t, text + i, len - i, &n) : -1;
    if (id < 0) {
      i++;
      continue;
    }
    int rc = encode_plain(t, text + start, i - start, out, err);
    if (!rc)
      rc = push_ids(out, &id, 1, err);
    if (rc)
      return rc;
    i += n;
    start = i;
  }
  return encode_plain(t, text + start, len - start, out, err);
}

int tok_spm_encode_text(tok_tokenizer *t, const char *text, size_t len, int flags, tok_ids *out,
                        dfpo_err *err) {
  int add = (flags & TOK_ADD_SPECIAL) && t->spm_llama, rc = DFPO_OK;
  if (add && t->spm_add_bos)
    rc = push_ids(out, &t->spm_bos, 1, err);
  if (!rc)
    rc = encode_special(t, text, len, flags, out, err);
  if (!rc && add && t->spm_add_eos)
    rc = push_ids(out, &t->eot, 1, err);
  return rc;
}

static int append(char **buf, size_t *len, size_t *cap, const char *s, size_t n, dfpo_err *err) {
  int rc = dfpo_grow(buf, cap, *len + n + 1, 1, *len + n + 1, DFPO_NOCAP, err);
  if (rc)
    return rc;
  memcpy(*buf + *len, s, n);
  *len += n;
  (*buf)[*len] = '\0';
  return DFPO_OK;
}

int tok_spm_decode_ids(const tok_tokenizer *t, const int32_t *ids, size_t n, char **buf,
                       size_t *len, size_t *cap, dfpo_err *err) {
  for (size_t i = 0; i < n; i++)
    if (ids[i] < 0 || (size_t)ids[i] >= t->n_ids)
      return dfpo_err_set(err, DFPO_EDATA, "token id %ld at position %zu is not in the vocabulary",
                          (long)ids[i], i);
  int rc = append(buf, len, cap, "", 0, err);
  /* runs of the model's own ids go to the library; an extra id is its text */
  for (size_t i = 0; i < n && !rc;) {
    size_t j = i;
    while (j < n && (size_t)ids[j] < t->spm_pieces)
      j++;
    if (j > i) {
      char *s, msg[512];
      size_t sl;
      if (tok_spm_decode(t->spm, ids + i, j - i, &s, &sl, msg, sizeof msg))
        return dfpo_err_set(err, DFPO_ERUNTIME, "sentencepiece: %s", msg);
      rc = append(buf, len, cap, s, sl, err);
      free(s);
      i = j;
    } else {
      rc = append(buf, len, cap, t->tok_bytes[ids[i]], t->tok_len[ids[i]], err);
      i++;
    }
  }
  return rc;
}

int tok_train_spm(const char *corpus, size_t vocab_size, size_t extra_ids, const char *out_dir,
                  dfpo_err *err) {
  char prefix[4200], path[4200], msg[512];
  int rc;
  if (vocab_size < 8 || vocab_size > (1u << 20) || extra_ids > 100000)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "sentencepiece: vocabulary %zu (8 to 2^20) or extra ids %zu (at most "
                        "100000) out of range",
                        vocab_size, extra_ids);
  if ((rc = dfpo_mkdirs(out_dir, err)) ||
      (rc = dfpo_path_fmt(prefix, sizeof prefix, err, "%s/spiece", out_dir)))
    return rc;
  if (tok_spm_train(corpus, prefix, (int)vocab_size, msg, sizeof msg))
    return dfpo_err_set(err, DFPO_EDATA, "sentencepiece: training on %s: %s", corpus, msg);
  /* the library's .vocab (pieces and scores) is for people; spiece.model
   * holds them too */
  if ((rc = dfpo_path_fmt(path, sizeof path, err, "%s/spiece.vocab", out_dir)))
    return rc;
  remove(path);
  /* the extra ids first, where tok_load reads them; then T5's whole files */
  char text[64];
  int n = snprintf(text, sizeof text, "{\"extra_ids\": %zu}\n", extra_ids);
  tok_tokenizer *t = NULL;
  if ((rc = dfpo_path_fmt(path, sizeof path, err, "%s/tokenizer_config.json", out_dir)) ||
      (rc = dfpo_atomic_write_file(path, text, (size_t)n, err)) ||
      (rc = tok_spm_load_dir(&t, out_dir, 0, err)))
    return rc;
  rc = tok_save_hf(t, out_dir, 512, err);
  tok_free(t);
  return rc;
}
