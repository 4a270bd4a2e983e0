/* Judge files: judge.bin (the model) and card.json (what it is), both
 * written atomically; loading checks the model's SHA-256 against the card. */
#include "metrics/metrics.h"

#include <errno.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

/* The judge struct is private to judge.c; this file reaches it through the
 * accessors below, declared in met_internal.h. */
#include "metrics/met_internal.h"

#define JUDGE_MAGIC "DFPOJDG1"
#define JUDGE_FORMAT 1

static void sha256_hex(const void *data, size_t len, char hex[65]) {
  unsigned char md[32];
  unsigned int n = 0;
  EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
  for (int i = 0; i < 32; i++)
    snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

int met_judge_dir(const char *name, char *buf, size_t n, dfpo_err *err) {
  char cache[4096];
  int rc = dfpo_cache_dir(cache, sizeof cache, err);
  if (rc)
    return rc;
  if ((size_t)snprintf(buf, n, "%s/judges/%s", cache, name) >= n)
    return dfpo_err_set(err, DFPO_EUSAGE, "judge folder path too long");
  return DFPO_OK;
}

static void put_u32(unsigned char **p, uint32_t v) {
  memcpy(*p, &v, 4);
  *p += 4;
}
static void put_f64(unsigned char **p, double v) {
  memcpy(*p, &v, 8);
  *p += 8;
}

static cJSON *feat_json(const met_feat_opts *f, int nb) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "model", "logistic regression over hashed n-grams");
  cJSON_AddNumberToObject(o, "hash_bits", f->hash_bits);
  cJSON_AddNumberToObject(o, "word_ngrams", f->word_n);
  cJSON_AddNumberToObject(o, "char_min", f->char_min);
  cJSON_AddNumberToObject(o, "char_max", f->char_max);
  cJSON_AddBoolToObject(o, "naive_bayes_scaling", nb);
  return o;
}

static int read_card(const char *dir, cJSON **card, dfpo_err *err) {
  char path[4200];
  char *text;
  size_t len;
  int rc = dfpo_path_fmt(path, sizeof path, err, "%s/card.json", dir);
  if (!rc)
    rc = dfpo_read_file(path, &text, &len, err);
  if (rc)
    return rc;
  *card = cJSON_ParseWithLength(text, len);
  free(text);
  if (!cJSON_IsObject(*card)) {
    cJSON_Delete(*card);
    *card = NULL;
    return dfpo_err_set(err, DFPO_EDATA, "%s: not a JSON object", path);
  }
  return DFPO_OK;
}

static int write_card(const char *dir, const cJSON *card, dfpo_err *err) {
  char path[4200];
  int rc = dfpo_path_fmt(path, sizeof path, err, "%s/card.json", dir);
  if (rc)
    return rc;
  char *s = cJSON_Print(card);
  if (!s)
    return dfpo_err_set(err, DFPO_ERUNTIME, "%s: out of memory", path);
  size_t n = strlen(s);
  char *t = realloc(s, n + 2);
  if (!t) {
    free(s);
    return dfpo_err_set(err, DFPO_ERUNTIME, "%s: out of memory", path);
  }
  t[n] = '\n';
  t[n + 1] = '\0';
  rc = dfpo_atomic_write_file(path, t, n + 1, err);
  free(t);
  return rc;
}

int met_judge_save(const met_judge *j, const char *dir, const met_judge_fit *fit,
                   const cJSON *extra, dfpo_err *err) {
  int rc = dfpo_mkdirs(dir, err);
  if (rc)
    return rc;
  const met_feat_opts *f = met_judge_feat(j);
  size_t V = (size_t)1 << f->hash_bits, nl = strlen(met_judge_name(j));
  size_t size = 8 + 4 * 8 + nl + 3 * 8 + V * 4;
  unsigned char *buf = malloc(size), *p = buf;
  if (!buf)
    return dfpo_err_set(err, DFPO_ERUNTIME, "%s: out of memory", dir);
  double bias, a, c;
  const float *w = met_judge_params(j, &bias, &a, &c);
  memcpy(p, JUDGE_MAGIC, 8);
  p += 8;
  put_u32(&p, JUDGE_FORMAT);
  put_u32(&p, (uint32_t)f->hash_bits);
  put_u32(&p, (uint32_t)f->word_n);
  put_u32(&p, (uint32_t)f->char_min);
  put_u32(&p, (uint32_t)f->char_max);
  put_u32(&p, (uint32_t)met_judge_nb(j));
  put_u32(&p, 0); /* reserved */
  put_u32(&p, (uint32_t)nl);
  memcpy(p, met_judge_name(j), nl);
  p += nl;
  put_f64(&p, bias);
  put_f64(&p, a);
  put_f64(&p, c);
  memcpy(p, w, V * 4);
  char hex[65];
  sha256_hex(buf, size, hex);
  char path[4200];
  if (!(rc = dfpo_path_fmt(path, sizeof path, err, "%s/judge.bin", dir)))
    rc = dfpo_atomic_write_file(path, buf, size, err);
  free(buf);
  if (rc)
    return rc;

  int version = 1;
  cJSON *old = NULL;
  dfpo_err ignore;
  dfpo_err_clear(&ignore);
  if (!read_card(dir, &old, &ignore)) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(old, "version");
    if (cJSON_IsNumber(v))
      version = v->valueint + 1;
    cJSON_Delete(old);
  }
  cJSON *card = cJSON_CreateObject();
  cJSON_AddStringToObject(card, "name", met_judge_name(j));
  cJSON_AddNumberToObject(card, "version", version);
  cJSON_AddStringToObject(card, "format", JUDGE_MAGIC);
  cJSON_AddNumberToObject(card, "format_version", JUDGE_FORMAT);
  cJSON_AddStringToObject(card, "model_file", "judge.bin");
  cJSON_AddStringToObject(card, "model_sha256", hex);
  char when[32];
  dfpo_utc_now(when);
  cJSON_AddStringToObject(card, "created_at", when);
  cJSON_AddItemToObject(card, "features", feat_json(f, met_judge_nb(j)));
  if (fit) {
    cJSON *t = cJSON_AddObjectToObject(card, "fit");
    cJSON_AddNumberToObject(t, "l2", fit->l2);
    cJSON_AddNumberToObject(t, "validation_log_loss", fit->val_loss);
    cJSON_AddNumberToObject(t, "platt_a", fit->platt_a);
    cJSON_AddNumberToObject(t, "platt_b", fit->platt_b);
    cJSON_AddNumberToObject(t, "train_texts", (double)fit->n_train);
    cJSON_AddNumberToObject(t, "validation_texts", (double)fit->n_val);
  }
  if (extra)
    for (const cJSON *e = extra->child; e; e = e->next) {
      cJSON_DeleteItemFromObjectCaseSensitive(card, e->string);
      cJSON_AddItemToObject(card, e->string, cJSON_Duplicate(e, 1));
    }
  rc = write_card(dir, card, err);
  cJSON_Delete(card);
  return rc;
}

int met_judge_card_set(const char *dir, const char *key, cJSON *value, dfpo_err *err) {
  cJSON *card;
  int rc = read_card(dir, &card, err);
  if (rc) {
    cJSON_Delete(value);
    return rc;
  }
  cJSON_DeleteItemFromObjectCaseSensitive(card, key);
  cJSON_AddItemToObject(card, key, value);
  rc = write_card(dir, card, err);
  cJSON_Delete(card);
  return rc;
}

static uint32_t get_u32(const unsigned char **p) {
  uint32_t v;
  memcpy(&v, *p, 4);
  *p += 4;
  return v;
}
static double get_f64(const unsigned char **p) {
  double v;
  memcpy(&v, *p, 8);
  *p += 8;
  return v;
}

int met_judge_load(met_judge **out, const char *dir, cJSON **card_out, dfpo_err *err) {
  *out = NULL;
  if (card_out)
    *card_out = NULL;
  cJSON *card;
  int rc = read_card(dir, &card, err);
  if (rc)
    return dfpo_err_prefix(err, "judge in %s (train it with `dfpo judge train`)", dir);
  char path[4200];
  char *buf;
  size_t len;
  if ((rc = dfpo_path_fmt(path, sizeof path, err, "%s/judge.bin", dir)) ||
      (rc = dfpo_read_file(path, &buf, &len, err))) {
    cJSON_Delete(card);
    return rc;
  }
  char hex[65];
  sha256_hex(buf, len, hex);
  const cJSON *want = cJSON_GetObjectItemCaseSensitive(card, "model_sha256");
  const cJSON *ver = cJSON_GetObjectItemCaseSensitive(card, "version");
  const unsigned char *p = (const unsigned char *)buf, *end = p + len;
  met_feat_opts f;
  char name[64];
  if (!cJSON_IsString(want) || strcmp(want->valuestring, hex)) {
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: SHA-256 %s does not match its card's model_sha256 %s",
                      path, hex, cJSON_IsString(want) ? want->valuestring : "(missing)");
  } else if (len < 8 + 32 || memcmp(p, JUDGE_MAGIC, 8)) {
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: not a dfpo judge file (magic)", path);
  } else {
    p += 8;
    uint32_t fmt = get_u32(&p);
    f.hash_bits = (int)get_u32(&p);
    f.word_n = (int)get_u32(&p);
    f.char_min = (int)get_u32(&p);
    f.char_max = (int)get_u32(&p);
    int nb = (int)get_u32(&p);
    (void)get_u32(&p);
    uint32_t nl = get_u32(&p);
    if (fmt != JUDGE_FORMAT)
      rc = dfpo_err_set(err, DFPO_EDATA, "%s: format version %u, this dfpo reads %d", path, fmt,
                        JUDGE_FORMAT);
    else if (f.hash_bits < 12 || f.hash_bits > 24 || f.word_n < 1 || f.word_n > 3 || nl >= 64 ||
             f.char_max > 8 || f.char_min < 0 || (f.char_max && f.char_min < 1) ||
             (size_t)(end - p) != nl + 24 + ((size_t)4 << f.hash_bits))
      rc = dfpo_err_set(err, DFPO_EDATA, "%s: bad header or size", path);
    else {
      memcpy(name, p, nl);
      name[nl] = '\0';
      p += nl;
      double b = get_f64(&p), a = get_f64(&p), c = get_f64(&p);
      rc = met_judge_make(out, name, &f, nb, b, a, c, (const float *)(const void *)p, err);
      if (!rc)
        met_judge_set_identity(*out, cJSON_IsNumber(ver) ? ver->valueint : 0, hex);
    }
  }
  free(buf);
  if (!rc && card_out)
    *card_out = card;
  else
    cJSON_Delete(card);
  return rc;
}
