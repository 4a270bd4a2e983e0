#include "datasets/ds_internal.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------- helpers */

static void add_split(ds_prepared *out, const char *name, const ds_writer *w) {
  if (out->n_splits >= DS_MAX_SPLITS)
    return;
  ds_split_info *s = &out->splits[out->n_splits++];
  snprintf(s->name, sizeof s->name, "%s", name);
  s->records = w->records;
  s->references = w->references;
}

static int open_split(ds_writer *w, const char *splits, const char *name, dfpo_err *err) {
  char path[DS_PATH_MAX], file[64];
  snprintf(file, sizeof file, "%s.jsonl", name);
  int rc = ds_join(path, sizeof path, splits, file, err);
  return rc ? rc : ds_writer_open(w, path, err);
}

/* Writes recs[idx[from..to)] to <splits>/<name>.jsonl. */
static int write_split(const char *splits, const char *name, cJSON **recs, const size_t *idx,
                       size_t from, size_t to, const size_t *nrefs, ds_prepared *out,
                       dfpo_err *err) {
  ds_writer w;
  int rc = open_split(&w, splits, name, err);
  for (size_t k = from; rc == DFPO_OK && k < to; k++) {
    size_t i = idx ? idx[k] : k;
    rc = ds_writer_put_copy(&w, recs[i], nrefs ? nrefs[i] : 1, err);
  }
  if (rc) {
    ds_writer_abort(&w);
    return rc;
  }
  if ((rc = ds_writer_commit(&w, err)))
    return rc;
  add_split(out, name, &w);
  return DFPO_OK;
}

static size_t *iota(size_t n) {
  size_t *p = malloc((n ? n : 1) * sizeof *p);
  for (size_t i = 0; p && i < n; i++)
    p[i] = i;
  return p;
}

/* ---------------------------------------------------------------- IMDB */

size_t ds_imdb_clean(char *t, size_t len) {
  static const char *const tags[] = {"<br />", "<br/>", "<br>"};
  size_t o = 0;
  for (size_t i = 0; i < len;) {
    size_t m = 0;
    if (t[i] == '<')
      for (int k = 0; k < 3 && !m; k++) {
        size_t tl = strlen(tags[k]);
        if (i + tl <= len && !memcmp(t + i, tags[k], tl))
          m = tl;
      }
    if (m) {
      t[o++] = '\n';
      i += m;
    } else {
      t[o++] = t[i++];
    }
  }
  t[o] = '\0';
  return o;
}

static int is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

size_t ds_imdb_prompt_len(const char *t, size_t len) {
  size_t words = 0;
  for (size_t i = 0; i < len; i++)
    words += !is_space(t[i]) && (i == 0 || is_space(t[i - 1]));
  size_t k = words / 2 ? words / 2 : 1, seen = 0;
  for (size_t i = 0; i < len; i++) {
    if (!is_space(t[i]) && (i == 0 || is_space(t[i - 1])))
      seen++;
    if (seen == k && !is_space(t[i]) && (i + 1 == len || is_space(t[i + 1])))
      return i + 1;
  }
  return words ? len : 0;
}

typedef struct imdb_file {
  char *rel; /* "train/pos/123_8" */
  char *path;
} imdb_file;

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted "*.txt" names of one folder. */
static int list_txt(const char *dir, char ***names, size_t *n, dfpo_err *err) {
  *names = NULL;
  *n = 0;
  DIR *d = opendir(dir);
  if (!d)
    return dfpo_err_errno(err, DFPO_EDATA, errno, "%s: cannot open folder", dir);
  size_t cap = 0;
  struct dirent *de;
  int rc = DFPO_OK;
  while ((de = readdir(d))) {
    size_t l = strlen(de->d_name);
    if (l < 5 || strcmp(de->d_name + l - 4, ".txt"))
      continue;
    if ((rc = dfpo_grow(names, &cap, *n + 1, sizeof **names, 1024, DFPO_NOCAP, err))) {
      dfpo_err_prefix(err, "%s", dir);
      break;
    }
    if (!((*names)[*n] = ds_strdup(de->d_name))) {
      rc = dfpo_err_set(err, DFPO_ERUNTIME, "%s: out of memory", dir);
      break;
    }
    (*n)++;
  }
  closedir(d);
  if (rc == DFPO_OK)
    qsort(*names, *n, sizeof **names, cmp_str);
  return rc;
}

static void free_names(char **names, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(names[i]);
  free(names);
}

/* Reads one review and builds its record (label -1: unsup, text only). */
static int imdb_record(const char *path, const char *id, const char *name, int label, cJSON **rec,
                       dfpo_err *err) {
  *rec = NULL;
  /* rating from "<id>_<rating>.txt" */
  const char *us = strrchr(name, '_');
  char *endp = NULL;
  long rating = us ? strtol(us + 1, &endp, 10) : -1;
  if (!us || endp == us + 1 || strcmp(endp, ".txt") || rating < 0 || rating > 10)
    return dfpo_err_set(err, DFPO_EDATA, "%s: file name is not <id>_<rating>.txt", path);
  char *raw;
  size_t len;
  int rc = dfpo_read_file(path, &raw, &len, err);
  if (rc)
    return rc;
  len = ds_imdb_clean(raw, len);
  char *text = dfpo_utf8_fix(raw, len);
  free(raw);
  if (!text)
    return dfpo_err_set(err, DFPO_ERUNTIME, "%s: out of memory", path);
  len = strlen(text);
  size_t plen = ds_imdb_prompt_len(text, len);
  if (!plen) {
    free(text);
    return dfpo_err_set(err, DFPO_EDATA, "%s: empty review", path);
  }
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "id", id);
  if (label < 0) {
    cJSON_AddStringToObject(o, "text", text);
  } else {
    char save = text[plen];
    text[plen] = '\0';
    cJSON_AddStringToObject(o, "prompt", text);
    text[plen] = save;
    cJSON *refs = cJSON_AddArrayToObject(o, "references");
    cJSON_AddItemToArray(refs, cJSON_CreateString(text));
    cJSON_AddNumberToObject(o, "label", label);
    cJSON_AddNumberToObject(o, "rating", (double)rating);
  }
  free(text);
  *rec = o;
  return DFPO_OK;
}

/* Loads the records of <raw>/aclImdb/<part>/{neg,pos} in sorted path order
 * (neg before pos, then bytewise file name). */
static int imdb_load(const char *raw, const char *part, cJSON ***recs, size_t *n, dfpo_err *err) {
  *recs = NULL;
  *n = 0;
  size_t cap = 0;
  static const char *const labels[] = {"neg", "pos"};
  int rc = DFPO_OK;
  for (int lab = 0; lab < 2 && rc == DFPO_OK; lab++) {
    char dir[DS_PATH_MAX];
    char **names;
    size_t nn;
    if ((rc = dfpo_path_fmt(dir, sizeof dir, err, "%s/aclImdb/%s/%s", raw, part, labels[lab])) ||
        (rc = list_txt(dir, &names, &nn, err)))
      break;
    for (size_t i = 0; i < nn && rc == DFPO_OK; i++) {
      char path[DS_PATH_MAX], id[256];
      if ((rc = dfpo_path_fmt(path, sizeof path, err, "%s/%s", dir, names[i])))
        break;
      snprintf(id, sizeof id, "%s/%s/%.*s", part, labels[lab], (int)(strlen(names[i]) - 4),
               names[i]);
      /* NULL: the message stays the one this loop always gave */
      if (dfpo_grow(recs, &cap, *n + 1, sizeof **recs, 16384, DFPO_NOCAP, NULL)) {
        rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory reading %s", dir);
        break;
      }
      cJSON *r;
      if (!(rc = imdb_record(path, id, names[i], lab, &r, err)))
        (*recs)[(*n)++] = r;
    }
    free_names(names, nn);
  }
  return rc;
}

static void free_recs(cJSON **recs, size_t n) {
  for (size_t i = 0; i < n; i++)
    cJSON_Delete(recs[i]);
  free(recs);
}

int ds_prepare_imdb(const char *raw, const char *splits, uint64_t seed, ds_prepared *out,
                    dfpo_err *err) {
  cJSON **train = NULL, **test = NULL;
  size_t ntrain = 0, ntest = 0, *ti = NULL, *si = NULL;
  int rc = imdb_load(raw, "train", &train, &ntrain, err);
  if (!rc)
    rc = imdb_load(raw, "test", &test, &ntest, err);
  if (!rc && (ntrain < 5 || ntest < 1))
    rc = dfpo_err_set(err, DFPO_EDATA, "%s/aclImdb: too few reviews (%zu train, %zu test)", raw,
                      ntrain, ntest);
  if (!rc && (!(ti = iota(ntrain)) || !(si = iota(ntest))))
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  if (!rc) {
    /* One data stream: the train shuffle first, then the test shuffle. */
    dfpo_rng r;
    dfpo_rng_init(&r, seed, DFPO_STREAM_DATA);
    dfpo_rng_shuffle(&r, ti, ntrain, sizeof *ti);
    dfpo_rng_shuffle(&r, si, ntest, sizeof *si);
    size_t nval = ntrain / 5; /* 80/20: 20,000 / 5,000 of 25,000 */
    size_t ntst = ntest < 5000 ? ntest : 5000;
    rc = write_split(splits, "train", train, ti, 0, ntrain - nval, NULL, out, err);
    if (!rc)
      rc = write_split(splits, "validation", train, ti, ntrain - nval, ntrain, NULL, out, err);
    if (!rc)
      rc = write_split(splits, "test", test, si, 0, ntst, NULL, out, err);
    if (!rc)
      rc = write_split(splits, "test_full", test, NULL, 0, ntest, NULL, out, err);
  }
  free(ti);
  free(si);
  free_recs(train, ntrain);
  free_recs(test, ntest);
  if (rc)
    return rc;

  /* The unsup reviews are streamed: they are only a pretraining corpus. */
  char dir[DS_PATH_MAX];
  char **names;
  size_t nn;
  if ((rc = dfpo_path_fmt(dir, sizeof dir, err, "%s/aclImdb/train/unsup", raw)) ||
      (rc = list_txt(dir, &names, &nn, err)))
    return rc;
  ds_writer w;
  rc = open_split(&w, splits, "unsup", err);
  for (size_t i = 0; i < nn && rc == DFPO_OK; i++) {
    char path[DS_PATH_MAX], id[256];
    if ((rc = dfpo_path_fmt(path, sizeof path, err, "%s/%s", dir, names[i])))
      break;
    snprintf(id, sizeof id, "unsup/%.*s", (int)(strlen(names[i]) - 4), names[i]);
    cJSON *r;
    if (!(rc = imdb_record(path, id, names[i], -1, &r, err)))
      rc = ds_writer_put(&w, r, 0, err);
  }
  free_names(names, nn);
  if (rc) {
    ds_writer_abort(&w);
    return rc;
  }
  if ((rc = ds_writer_commit(&w, err)))
    return rc;
  add_split(out, "unsup", &w);
  return DFPO_OK;
}

/* ----------------------------------------------------------------- RTP */

static const char *const rtp_attrs[] = {"toxicity",
                                        "severe_toxicity",
                                        "profanity",
                                        "sexually_explicit",
                                        "identity_attack",
                                        "flirtation",
                                        "threat",
                                        "insult",
                                        NULL};

static int rtp_part(const cJSON *src, const char *key, const char *where, size_t lineno,
                    char **text, cJSON **scores, dfpo_err *err) {
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(src, key);
  if (!cJSON_IsObject(p))
    return dfpo_err_set(err, DFPO_EDATA, "%s:%zu: '%s' must be an object", where, lineno, key);
  const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "text");
  if (!cJSON_IsString(t))
    return dfpo_err_set(err, DFPO_EDATA, "%s:%zu: '%s.text' must be a string", where, lineno, key);
  *scores = cJSON_CreateObject();
  for (const char *const *a = rtp_attrs; *a; a++) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(p, *a);
    if (v && !cJSON_IsNull(v) &&
        !(cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= 1)) {
      cJSON_Delete(*scores);
      *scores = NULL;
      return dfpo_err_set(err, DFPO_EDATA, "%s:%zu: '%s.%s' must be a number in [0, 1] or null",
                          where, lineno, key, *a);
    }
    if (v && cJSON_IsNumber(v))
      cJSON_AddNumberToObject(*scores, *a, v->valuedouble);
    else
      cJSON_AddNullToObject(*scores, *a);
  }
  *text = t->valuestring;
  return DFPO_OK;
}

int ds_rtp_record(const cJSON *src, const char *id, const char *where, size_t lineno, cJSON **rec,
                  dfpo_err *err) {
  *rec = NULL;
  char *ptext, *ctext;
  cJSON *ps = NULL, *cs = NULL;
  int rc = rtp_part(src, "prompt", where, lineno, &ptext, &ps, err);
  if (!rc)
    rc = rtp_part(src, "continuation", where, lineno, &ctext, &cs, err);
  const cJSON *ch = cJSON_GetObjectItemCaseSensitive(src, "challenging");
  if (!rc && ch && !cJSON_IsBool(ch))
    rc =
        dfpo_err_set(err, DFPO_EDATA, "%s:%zu: 'challenging' must be true or false", where, lineno);
  if (!rc && !ptext[0])
    rc = dfpo_err_set(err, DFPO_EDATA, "%s:%zu: empty prompt text", where, lineno);
  if (rc) {
    cJSON_Delete(ps);
    cJSON_Delete(cs);
    return rc;
  }
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "id", id);
  cJSON_AddStringToObject(o, "prompt", ptext);
  cJSON *refs = cJSON_AddArrayToObject(o, "references");
  cJSON_AddItemToArray(refs, cJSON_CreateString(ctext));
  if (ch)
    cJSON_AddBoolToObject(o, "challenging", cJSON_IsTrue(ch));
  else
    cJSON_AddNullToObject(o, "challenging");
  cJSON_AddItemToObject(o, "toxicity",
                        cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(ps, "toxicity"), 0));
  cJSON_AddItemToObject(o, "prompt_scores", ps);
  cJSON_AddItemToObject(o, "continuation_scores", cs);
  *rec = o;
  return DFPO_OK;
}

int ds_prepare_rtp(const char *raw, const char *splits, uint64_t seed, ds_prepared *out,
                   dfpo_err *err) {
  char path[DS_PATH_MAX];
  ds_jsonl j;
  int rc = dfpo_path_fmt(path, sizeof path, err, "%s/realtoxicityprompts-data/prompts.jsonl", raw);
  if (!rc)
    rc = ds_jsonl_open(&j, path, err);
  if (rc)
    return rc;
  cJSON **recs = NULL;
  size_t n = 0, cap = 0;
  for (;;) {
    cJSON *src, *rec;
    if ((rc = ds_jsonl_next(&j, &src, err)) || !src)
      break;
    char id[64];
    snprintf(id, sizeof id, "rtp-%zu", j.lineno);
    rc = ds_rtp_record(src, id, path, j.lineno, &rec, err);
    cJSON_Delete(src);
    if (rc)
      break;
    if ((rc = dfpo_grow(&recs, &cap, n + 1, sizeof *recs, 16384, DFPO_NOCAP, err))) {
      cJSON_Delete(rec);
      dfpo_err_prefix(err, "%s", path);
      break;
    }
    recs[n++] = rec;
  }
  ds_jsonl_close(&j);
  size_t *idx = NULL;
  if (!rc && n < 20)
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: only %zu records", path, n);
  if (!rc && !(idx = iota(n)))
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  size_t ntrain = n * 85 / 100, nval = n * 5 / 100;
  if (!rc) {
    dfpo_rng r;
    dfpo_rng_init(&r, seed, DFPO_STREAM_DATA);
    dfpo_rng_shuffle(&r, idx, n, sizeof *idx);
    rc = write_split(splits, "train", recs, idx, 0, ntrain, NULL, out, err);
    if (!rc)
      rc = write_split(splits, "validation", recs, idx, ntrain, ntrain + nval, NULL, out, err);
    if (!rc)
      rc = write_split(splits, "test", recs, idx, ntrain + nval, n, NULL, out, err);
  }
  /* The scored-text corpus for the toxicity judge: both texts of every
   * record with a toxicity score, with the split its record is in. */
  if (!rc) {
    ds_writer w;
    rc = open_split(&w, splits, "scored", err);
    for (size_t k = 0; k < n && rc == DFPO_OK; k++) {
      const cJSON *rec = recs[idx[k]];
      const char *split = k < ntrain ? "train" : k < ntrain + nval ? "validation" : "test";
      const char *id = cJSON_GetObjectItemCaseSensitive(rec, "id")->valuestring;
      for (int part = 0; part < 2 && rc == DFPO_OK; part++) {
        const cJSON *sc =
            cJSON_GetObjectItemCaseSensitive(rec, part ? "continuation_scores" : "prompt_scores");
        const cJSON *tox = cJSON_GetObjectItemCaseSensitive(sc, "toxicity");
        if (!cJSON_IsNumber(tox))
          continue;
        const char *text =
            part ? cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(rec, "references"), 0)
                       ->valuestring
                 : cJSON_GetObjectItemCaseSensitive(rec, "prompt")->valuestring;
        char sid[96];
        snprintf(sid, sizeof sid, "%s/%s", id, part ? "continuation" : "prompt");
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", sid);
        cJSON_AddStringToObject(o, "text", text);
        cJSON_AddNumberToObject(o, "toxicity", tox->valuedouble);
        cJSON_AddStringToObject(o, "split", split);
        rc = ds_writer_put(&w, o, 0, err);
      }
    }
    if (rc)
      ds_writer_abort(&w);
    else if (!(rc = ds_writer_commit(&w, err)))
      add_split(out, "scored", &w);
  }
  free(idx);
  free_recs(recs, n);
  return rc;
}

/* ----------------------------------------------------------- CommonGen */

int ds_commongen_record(const cJSON *src, const char *id, const char *where, size_t lineno,
                        int need_scenes, cJSON **rec, size_t *scenes, dfpo_err *err) {
  *rec = NULL;
  *scenes = 0;
  const cJSON *cs = cJSON_GetObjectItemCaseSensitive(src, "concept_set");
  if (!cJSON_IsString(cs) || !cs->valuestring[0])
    return dfpo_err_set(err, DFPO_EDATA, "%s:%zu: 'concept_set' must be a non-empty string", where,
                        lineno);
  const cJSON *sc = cJSON_GetObjectItemCaseSensitive(src, "scene");
  if (need_scenes && (!cJSON_IsArray(sc) || cJSON_GetArraySize(sc) < 1))
    return dfpo_err_set(err, DFPO_EDATA, "%s:%zu: 'scene' must be a non-empty list", where, lineno);
  if (sc && !cJSON_IsArray(sc))
    return dfpo_err_set(err, DFPO_EDATA, "%s:%zu: 'scene' must be a list", where, lineno);
  for (const cJSON *s = sc ? sc->child : NULL; s; s = s->next)
    if (!cJSON_IsString(s))
      return dfpo_err_set(err, DFPO_EDATA, "%s:%zu: every scene must be a string", where, lineno);
  /* the split files are UTF-8 (the metrics refuse anything else): a bad
   * byte is named here, where the file and line are known */
  for (const cJSON *s = cs; s; s = s == cs ? (sc ? sc->child : NULL) : s->next) {
    size_t n = strlen(s->valuestring), ok = dfpo_utf8_check(s->valuestring, n);
    if (ok < n)
      return dfpo_err_set(err, DFPO_EDATA, "%s:%zu: %s is not valid UTF-8 (byte %zu is 0x%02x)",
                          where, lineno, s == cs ? "'concept_set'" : "a scene", ok,
                          (unsigned)(unsigned char)s->valuestring[ok]);
  }
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "id", id);
  cJSON *concepts = cJSON_AddArrayToObject(o, "concepts");
  char prompt[1024] = "generate a sentence with:";
  size_t pl = strlen(prompt);
  for (const char *p = cs->valuestring; *p;) {
    size_t n = strcspn(p, "#");
    if (n == 0 || pl + n + 2 >= sizeof prompt) {
      cJSON_Delete(o);
      return dfpo_err_set(err, DFPO_EDATA, "%s:%zu: bad concept_set '%s'", where, lineno,
                          cs->valuestring);
    }
    char c[256];
    snprintf(c, sizeof c, "%.*s", (int)(n < 255 ? n : 255), p);
    cJSON_AddItemToArray(concepts, cJSON_CreateString(c));
    pl += (size_t)snprintf(prompt + pl, sizeof prompt - pl, " %s", c);
    p += n;
    if (*p == '#') {
      p++;
      if (!*p) {
        cJSON_Delete(o);
        return dfpo_err_set(err, DFPO_EDATA, "%s:%zu: bad concept_set '%s'", where, lineno,
                            cs->valuestring);
      }
    }
  }
  snprintf(prompt + pl, sizeof prompt - pl, ".");
  cJSON_AddStringToObject(o, "prompt", prompt);
  cJSON *refs = cJSON_AddArrayToObject(o, "references");
  for (const cJSON *s = sc ? sc->child : NULL; s; s = s->next) {
    cJSON_AddItemToArray(refs, cJSON_CreateString(s->valuestring));
    (*scenes)++;
  }
  *rec = o;
  return DFPO_OK;
}

int ds_prepare_commongen(const char *raw, const char *splits, ds_prepared *out, dfpo_err *err) {
  static const struct {
    const char *file, *split;
    int refs;
  } parts[] = {{"commongen.train.jsonl", "train", 1},
               {"commongen.dev.jsonl", "validation", 1},
               {"commongen.test_noref.jsonl", "test", 0}};
  int rc = DFPO_OK, any = 0;
  for (int p = 0; p < 3 && rc == DFPO_OK; p++) {
    char path[DS_PATH_MAX];
    if ((rc = ds_join(path, sizeof path, raw, parts[p].file, err)))
      break;
    if (access(path, F_OK) != 0)
      continue; /* an optional member that was not imported */
    any = 1;
    ds_jsonl j;
    ds_writer w;
    if ((rc = ds_jsonl_open(&j, path, err)))
      break;
    if ((rc = open_split(&w, splits, parts[p].split, err))) {
      ds_jsonl_close(&j);
      break;
    }
    for (size_t k = 0;; k++) {
      cJSON *src, *rec;
      size_t scenes;
      if ((rc = ds_jsonl_next(&j, &src, err)) || !src)
        break;
      char id[64];
      snprintf(id, sizeof id, "%s-%zu", parts[p].split, k);
      rc = ds_commongen_record(src, id, path, j.lineno, parts[p].refs, &rec, &scenes, err);
      cJSON_Delete(src);
      if (rc)
        break;
      if ((rc = ds_writer_put(&w, rec, scenes, err)))
        break;
    }
    ds_jsonl_close(&j);
    if (rc) {
      ds_writer_abort(&w);
      break;
    }
    if (!(rc = ds_writer_commit(&w, err)))
      add_split(out, parts[p].split, &w);
  }
  if (!rc && !any)
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: holds no CommonGen file", raw);
  return rc;
}

/* ------------------------------------------------------------- prepare */

/* Whether x is an integer in [0, 2^53] (exact in a double): counts and the
 * seed of prepared.json, cast below (a cast past a type's range is
 * undefined). */
static int count_ok(const cJSON *x) {
  return cJSON_IsNumber(x) && x->valuedouble >= 0 && x->valuedouble <= 9007199254740992.0 &&
         x->valuedouble == floor(x->valuedouble);
}

static int prepared_write(const char *splits, const ds_prepared *p, dfpo_err *err) {
  char path[DS_PATH_MAX];
  int rc = ds_join(path, sizeof path, splits, "prepared.json", err);
  if (rc)
    return rc;
  cJSON *o = cJSON_CreateObject();
  cJSON_AddBoolToObject(o, "verified", p->verified);
  cJSON_AddNumberToObject(o, "seed", (double)p->seed);
  cJSON *a = cJSON_AddArrayToObject(o, "splits");
  for (int i = 0; i < p->n_splits; i++) {
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "name", p->splits[i].name);
    cJSON_AddNumberToObject(s, "records", (double)p->splits[i].records);
    cJSON_AddNumberToObject(s, "references", (double)p->splits[i].references);
    cJSON_AddItemToArray(a, s);
  }
  char *txt = cJSON_Print(o);
  cJSON_Delete(o);
  if (!txt)
    return dfpo_err_set(err, DFPO_ERUNTIME, "%s: out of memory", path);
  size_t len = strlen(txt);
  txt[len] = '\n';
  rc = dfpo_atomic_write_file(path, txt, len + 1, err);
  free(txt);
  return rc;
}

static int splits_dir(const ds_entry *e, char *buf, size_t n, dfpo_err *err) {
  char dir[DS_PATH_MAX];
  int rc = ds_dataset_dir(e->name, e->version, dir, sizeof dir, err);
  return rc ? rc : ds_join(buf, n, dir, "splits", err);
}

static int prepare_locked(const ds_entry *e, uint64_t seed, ds_prepared *out, dfpo_err *err);

int ds_prepare(const ds_entry *e, uint64_t seed, ds_prepared *out, dfpo_err *err) {
  memset(out, 0, sizeof *out);
  if (!strcmp(e->importer, "none"))
    return dfpo_err_set(err, DFPO_EUSAGE, "%s is an asset: there is nothing to prepare", e->name);
  dfpo_lock l = {0};
  int rc = ds_dataset_lock(e, &l, err);
  if (!rc)
    rc = prepare_locked(e, seed, out, err);
  dfpo_lock_release(&l);
  return rc;
}

static int prepare_locked(const ds_entry *e, uint64_t seed, ds_prepared *out, dfpo_err *err) {
  ds_stamp s;
  int rc = ds_stamp_read(e, &s, err);
  if (rc)
    return rc;
  char dir[DS_PATH_MAX], raw[DS_PATH_MAX], splits[DS_PATH_MAX], meta[DS_PATH_MAX];
  if ((rc = ds_dataset_dir(e->name, e->version, dir, sizeof dir, err)) ||
      (rc = ds_raw_dir(e, raw, sizeof raw, err)) ||
      (rc = splits_dir(e, splits, sizeof splits, err)) ||
      (rc = ds_join(meta, sizeof meta, splits, "prepared.json", err)) ||
      (rc = dfpo_mkdirs(splits, err)))
    return rc;
  if (unlink(meta) != 0 && errno != ENOENT)
    return dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot remove", meta);
  snprintf(out->dir, sizeof out->dir, "%s", splits);
  out->verified = s.verified;
  out->seed = seed;
  if (!s.verified)
    dfpo_warn("%s %s was imported unverified; the splits are marked unverified", e->name,
              e->version);
  if (!strcmp(e->importer, "imdb"))
    rc = ds_prepare_imdb(raw, splits, seed, out, err);
  else if (!strcmp(e->importer, "rtp"))
    rc = ds_prepare_rtp(raw, splits, seed, out, err);
  else
    rc = ds_prepare_commongen(raw, splits, out, err);
  if (rc)
    return dfpo_err_prefix(err, "preparing %s", e->name);
  return prepared_write(splits, out, err);
}

int ds_prepared_read(const ds_entry *e, ds_prepared *out, dfpo_err *err) {
  memset(out, 0, sizeof *out);
  char splits[DS_PATH_MAX], meta[DS_PATH_MAX];
  int rc;
  if ((rc = splits_dir(e, splits, sizeof splits, err)) ||
      (rc = ds_join(meta, sizeof meta, splits, "prepared.json", err)))
    return rc;
  if (access(meta, F_OK) != 0)
    return dfpo_err_set(err, DFPO_EDATA,
                        "%s is not prepared (no %s): run 'dfpo datasets prepare %s'", e->name, meta,
                        e->name);
  char *txt;
  if ((rc = dfpo_read_file(meta, &txt, NULL, err)))
    return rc;
  cJSON *o = cJSON_Parse(txt);
  free(txt);
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "verified");
  const cJSON *seed = cJSON_GetObjectItemCaseSensitive(o, "seed");
  const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "splits");
  int ok = cJSON_IsBool(v) && count_ok(seed) && cJSON_IsArray(a);
  if (ok) {
    snprintf(out->dir, sizeof out->dir, "%s", splits);
    out->verified = cJSON_IsTrue(v);
    out->seed = (uint64_t)seed->valuedouble;
    for (const cJSON *s = a->child; s && ok && out->n_splits < DS_MAX_SPLITS; s = s->next) {
      const cJSON *nm = cJSON_GetObjectItemCaseSensitive(s, "name");
      const cJSON *r = cJSON_GetObjectItemCaseSensitive(s, "records");
      const cJSON *rf = cJSON_GetObjectItemCaseSensitive(s, "references");
      ok = cJSON_IsString(nm) && count_ok(r) && count_ok(rf);
      if (ok) {
        ds_split_info *si = &out->splits[out->n_splits++];
        snprintf(si->name, sizeof si->name, "%s", nm->valuestring);
        si->records = (size_t)r->valuedouble;
        si->references = (size_t)rf->valuedouble;
      }
    }
  }
  cJSON_Delete(o);
  if (!ok)
    return dfpo_err_set(err, DFPO_EDATA, "%s: damaged; run 'dfpo datasets prepare %s'", meta,
                        e->name);
  return DFPO_OK;
}
