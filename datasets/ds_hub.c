/* Models from the Hugging Face hub: names, the hub's API and file URLs, the
 * cache folders, the refs, verification and the lock file
 * (docs/datasets.md, "Hub models"). Downloads go through ds_fetch.c. */
#include "datasets/ds_internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define HUB_DEFAULT_ENDPOINT "https://huggingface.co"
#define HUB_RECORD "dfpo-hub.json"
#define HUB_API_CAP ((size_t)32 << 20)
#define HUB_INDEX_CAP ((size_t)64 << 20)
#define HUB_MAX_FILES 4096

/* ------------------------------------------------------------- names */

static int name_part_ok(const char *s, size_t n) {
  if (n == 0 || n > DS_HUB_NAME_MAX || s[0] == '.' || s[0] == '-' || s[n - 1] == '.' ||
      s[n - 1] == '-')
    return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!isalnum(c) && c != '-' && c != '_' && c != '.')
      return 0;
    if (i && (c == '-' || c == '.') && s[i - 1] == c)
      return 0; /* "--" and ".." are not allowed in hub names */
  }
  return 1;
}

static int is_hex(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
      return 0;
  return s[n] == '\0';
}

int ds_hub_is_commit(const char *rev) {
  return strlen(rev) == 40 && is_hex(rev, 40);
}

static int revision_ok(const char *r) {
  size_t n = strlen(r);
  if (n == 0 || n >= DS_HUB_REV_MAX || r[0] == '/' || r[0] == '.' || r[n - 1] == '/' ||
      strstr(r, "..") || strstr(r, "//"))
    return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)r[i];
    if (!isalnum(c) && c != '-' && c != '_' && c != '.' && c != '/')
      return 0;
  }
  return 1;
}

int ds_hub_parse(const char *s, ds_hub_ref *r) {
  memset(r, 0, sizeof *r);
  const char *slash = strchr(s, '/'), *at = strchr(s, '@');
  if (!slash || (at && at < slash))
    return 0;
  const char *name = slash + 1, *end = at ? at : s + strlen(s);
  if (!name_part_ok(s, (size_t)(slash - s)) || !name_part_ok(name, (size_t)(end - name)))
    return 0;
  if (at && !revision_ok(at + 1))
    return 0;
  snprintf(r->owner, sizeof r->owner, "%.*s", (int)(slash - s), s);
  snprintf(r->name, sizeof r->name, "%.*s", (int)(end - name), name);
  snprintf(r->revision, sizeof r->revision, "%s", at ? at + 1 : "main");
  r->explicit_revision = at != NULL;
  return 1;
}

/* A file name the harness takes from a repository: one path component. */
static int file_name_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n >= DS_HUB_PATH_MAX || s[0] == '.')
    return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!isalnum(c) && c != '-' && c != '_' && c != '.')
      return 0;
  }
  return 1;
}

/* ------------------------------------------------------ places and URLs */

static const char *endpoint(char *buf, size_t n) {
  const char *e = getenv("HF_ENDPOINT");
  snprintf(buf, n, "%s", e && e[0] ? e : HUB_DEFAULT_ENDPOINT);
  size_t l = strlen(buf);
  while (l && buf[l - 1] == '/')
    buf[--l] = '\0';
  return buf;
}

int ds_hub_offline(void) {
  const char *v[] = {getenv("HF_HUB_OFFLINE"), getenv("DFPO_HUB_OFFLINE")};
  for (int i = 0; i < 2; i++)
    if (v[i] && v[i][0] && strcmp(v[i], "0") && strcasecmp(v[i], "false") && strcasecmp(v[i], "no"))
      return 1;
  return 0;
}

/* '/' (revisions like refs/pr/1) is encoded in URLs and in ref file names,
 * as huggingface_hub quotes a revision with no safe characters. */
static void encode_rev(const char *rev, char *out, size_t n) {
  size_t k = 0;
  for (const char *p = rev; *p && k + 4 < n; p++) {
    if (*p == '/') {
      memcpy(out + k, "%2F", 3);
      k += 3;
    } else {
      out[k++] = *p;
    }
  }
  out[k] = '\0';
}

static int repo_dir(const ds_hub_ref *r, char *buf, size_t n, dfpo_err *err) {
  char cache[DS_PATH_MAX];
  int rc = dfpo_cache_dir(cache, sizeof cache, err);
  return rc ? rc : dfpo_path_fmt(buf, n, err, "%s/hub/%s--%s", cache, r->owner, r->name);
}

static void api_url(const ds_hub_ref *r, const char *rev, char *buf, size_t n) {
  char ep[1024], enc[3 * DS_HUB_REV_MAX];
  encode_rev(rev, enc, sizeof enc);
  ds_sfmt(buf, n, "%s/api/models/%s/%s/revision/%s?blobs=true", endpoint(ep, sizeof ep), r->owner,
          r->name, enc);
}

static void file_url(const ds_hub_ref *r, const char *commit, const char *path, char *buf,
                     size_t n) {
  char ep[1024];
  ds_sfmt(buf, n, "%s/%s/%s/resolve/%s/%s", endpoint(ep, sizeof ep), r->owner, r->name, commit,
          path);
}

static int exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

/* ------------------------------------------------ records and lock entries */

void ds_hub_model_free(ds_hub_model *m) {
  free(m->files);
  m->files = NULL;
  m->n_files = 0;
}

static int add_file(ds_hub_model *m, size_t *cap, const ds_hub_file *f, dfpo_err *err) {
  for (size_t i = 0; i < m->n_files; i++)
    if (!strcmp(m->files[i].path, f->path))
      return DFPO_OK;
  if (dfpo_grow(&m->files, cap, m->n_files + 1, sizeof *m->files, 16, HUB_MAX_FILES, err))
    return dfpo_err_prefix(err, "%s/%s: files", m->ref.owner, m->ref.name);
  m->files[m->n_files++] = *f;
  return DFPO_OK;
}

/* {name, revision, commit, files: [{path, size, sha256, lfs_sha256 |
 * blob_sha1}]}: a lock entry, and the record inside a cache folder. */
static cJSON *entry_json(const ds_hub_model *m) {
  cJSON *o = cJSON_CreateObject();
  char id[2 * DS_HUB_NAME_MAX + 2];
  snprintf(id, sizeof id, "%s/%s", m->ref.owner, m->ref.name);
  cJSON_AddStringToObject(o, "name", id);
  cJSON_AddStringToObject(o, "revision", m->ref.revision);
  cJSON_AddStringToObject(o, "commit", m->commit);
  cJSON *fs = cJSON_AddArrayToObject(o, "files");
  for (size_t i = 0; i < m->n_files; i++) {
    const ds_hub_file *f = &m->files[i];
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "path", f->path);
    cJSON_AddNumberToObject(j, "size", (double)f->size);
    cJSON_AddStringToObject(j, "sha256", f->sha256);
    if (f->lfs)
      cJSON_AddStringToObject(j, "lfs_sha256", f->sha256);
    else
      cJSON_AddStringToObject(j, "blob_sha1", f->git_sha1);
    cJSON_AddItemToArray(fs, j);
  }
  return o;
}

static const char *str_key(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int keys_only(const cJSON *o, const char *const *keys, const char *where, dfpo_err *err) {
  for (const cJSON *c = o->child; c; c = c->next) {
    int ok = 0;
    for (int i = 0; keys[i]; i++)
      ok |= c->string && !strcmp(c->string, keys[i]);
    if (!ok)
      return dfpo_err_set(err, DFPO_EDATA, "%s: unknown key '%s'", where, c->string);
  }
  return DFPO_OK;
}

static int entry_parse(const cJSON *o, const char *where, ds_hub_model *m, dfpo_err *err) {
  static const char *const top[] = {"name", "revision", "commit", "files", NULL};
  static const char *const fk[] = {"path", "size", "sha256", "lfs_sha256", "blob_sha1", NULL};
  memset(m, 0, sizeof *m);
  if (!cJSON_IsObject(o))
    return dfpo_err_set(err, DFPO_EDATA, "%s: not an object", where);
  int rc = keys_only(o, top, where, err);
  if (rc)
    return rc;
  const char *name = str_key(o, "name"), *rev = str_key(o, "revision"),
             *commit = str_key(o, "commit");
  if (!name || !ds_hub_parse(name, &m->ref) || strchr(name, '@'))
    return dfpo_err_set(err, DFPO_EDATA, "%s: 'name' must be a hub name owner/name", where);
  if (!rev || !revision_ok(rev))
    return dfpo_err_set(err, DFPO_EDATA, "%s (%s): 'revision' must be a branch, tag or commit",
                        where, name);
  snprintf(m->ref.revision, sizeof m->ref.revision, "%s", rev);
  if (!commit || !ds_hub_is_commit(commit))
    return dfpo_err_set(err, DFPO_EDATA, "%s (%s): 'commit' must be 40 lowercase hex digits", where,
                        name);
  snprintf(m->commit, sizeof m->commit, "%s", commit);
  const cJSON *fs = cJSON_GetObjectItemCaseSensitive(o, "files");
  if (!cJSON_IsArray(fs) || !cJSON_GetArraySize(fs))
    return dfpo_err_set(err, DFPO_EDATA, "%s (%s): 'files' must be a non-empty list", where, name);
  size_t cap = 0;
  int i = 0;
  for (const cJSON *f = fs->child; f; f = f->next, i++) {
    char w[512];
    ds_sfmt(w, sizeof w, "%s (%s): files[%d]", where, name, i);
    if (!cJSON_IsObject(f) || (rc = keys_only(f, fk, w, err)))
      return rc ? rc : dfpo_err_set(err, DFPO_EDATA, "%s: not an object", w);
    ds_hub_file x;
    memset(&x, 0, sizeof x);
    const char *p = str_key(f, "path"), *h = str_key(f, "sha256"), *l = str_key(f, "lfs_sha256"),
               *b = str_key(f, "blob_sha1");
    const cJSON *sz = cJSON_GetObjectItemCaseSensitive(f, "size");
    if (!p || !file_name_ok(p))
      return dfpo_err_set(err, DFPO_EDATA, "%s: 'path' must be a file name", w);
    if (!cJSON_IsNumber(sz) || sz->valuedouble < 0 || sz->valuedouble > 9007199254740992.0 ||
        sz->valuedouble != (double)(uint64_t)sz->valuedouble)
      return dfpo_err_set(err, DFPO_EDATA, "%s (%s): 'size' must be a byte count", w, p);
    if (!h || !ds_is_hex64(h))
      return dfpo_err_set(err, DFPO_EDATA, "%s (%s): 'sha256' must be 64 lowercase hex digits", w,
                          p);
    if (!l == !b || (l && strcmp(l, h)) || (b && !(strlen(b) == 40 && is_hex(b, 40))))
      return dfpo_err_set(err, DFPO_EDATA,
                          "%s (%s): want either 'lfs_sha256' (equal to 'sha256') or 'blob_sha1' "
                          "(40 lowercase hex digits)",
                          w, p);
    snprintf(x.path, sizeof x.path, "%s", p);
    x.size = (uint64_t)sz->valuedouble;
    snprintf(x.sha256, sizeof x.sha256, "%s", h);
    x.lfs = l != NULL;
    if (b)
      snprintf(x.git_sha1, sizeof x.git_sha1, "%s", b);
    if ((rc = add_file(m, &cap, &x, err)))
      return rc;
  }
  return DFPO_OK;
}

static int write_json(const char *path, cJSON *o, dfpo_err *err) {
  char *text = cJSON_Print(o);
  if (!text)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory writing %s", path);
  size_t n = strlen(text);
  text[n] = '\n'; /* cJSON_Print's NUL becomes the final newline */
  int rc = dfpo_atomic_write_file(path, text, n + 1, err);
  free(text);
  return rc;
}

static int read_json(const char *path, cJSON **o, dfpo_err *err) {
  char *text = NULL;
  size_t len = 0;
  int rc = dfpo_read_file(path, &text, &len, err);
  if (rc)
    return rc;
  const char *end = NULL;
  *o = cJSON_ParseWithLengthOpts(text, len, &end, 0);
  if (!*o) {
    int line = 0, col = 0;
    dfpo_text_position(text, end ? (size_t)(end - text) : 0, &line, &col);
    rc = dfpo_err_set(err, DFPO_EDATA, "%s:%d:%d: not valid JSON", path, line, col);
  }
  free(text);
  return rc;
}

/* The record of a complete cache folder. */
static int record_read(const char *dir, ds_hub_model *m, dfpo_err *err) {
  char path[DS_PATH_MAX];
  cJSON *o = NULL;
  int rc = ds_join(path, sizeof path, dir, HUB_RECORD, err);
  if (rc || (rc = read_json(path, &o, err)))
    return rc;
  rc = entry_parse(o, path, m, err);
  cJSON_Delete(o);
  return rc;
}

/* Checks a cache folder against m's files: each present with its size, and
 * with its SHA-256 when full. The message names the first that differs. */
static int verify_dir(const char *dir, const ds_hub_model *m, int full, dfpo_err *err) {
  for (size_t i = 0; i < m->n_files; i++) {
    const ds_hub_file *f = &m->files[i];
    char path[DS_PATH_MAX];
    struct stat st;
    int rc = ds_join(path, sizeof path, dir, f->path, err);
    if (rc)
      return rc;
    if (stat(path, &st) != 0)
      return dfpo_err_errno(err, DFPO_EDATA, errno, "%s", path);
    if ((uint64_t)st.st_size != f->size)
      return dfpo_err_set(err, DFPO_EDATA, "%s has %llu bytes, not %llu", path,
                          (unsigned long long)st.st_size, (unsigned long long)f->size);
    ds_got g;
    if (full && (rc = ds_hash_file(path, 0, &g, err)))
      return rc;
    if (full && strcmp(g.sha256, f->sha256))
      return dfpo_err_set(err, DFPO_EDATA, "%s has SHA-256 %s, not %s", path, g.sha256, f->sha256);
  }
  return DFPO_OK;
}

/* ------------------------------------------------------------- refs */

static int ref_path(const ds_hub_ref *r, const char *rev, char *buf, size_t n, dfpo_err *err) {
  char dir[DS_PATH_MAX], enc[3 * DS_HUB_REV_MAX];
  int rc = repo_dir(r, dir, sizeof dir, err);
  encode_rev(rev, enc, sizeof enc);
  return rc ? rc : dfpo_path_fmt(buf, n, err, "%s/refs/%s", dir, enc);
}

/* The commit the last fetch of rev found, or "" when none is recorded. */
static void ref_read(const ds_hub_ref *r, const char *rev, char commit[41]) {
  char path[DS_PATH_MAX], *text = NULL;
  commit[0] = '\0';
  if (ref_path(r, rev, path, sizeof path, NULL) || dfpo_read_file(path, &text, NULL, NULL))
    return;
  text[strcspn(text, "\r\n")] = '\0';
  if (ds_hub_is_commit(text))
    memcpy(commit, text, 41);
  free(text);
}

static int ref_write(const ds_hub_ref *r, const char *rev, const char *commit, dfpo_err *err) {
  if (ds_hub_is_commit(rev))
    return DFPO_OK;
  char path[DS_PATH_MAX], dir[DS_PATH_MAX], text[48];
  int rc = ref_path(r, rev, path, sizeof path, err);
  if (rc || (rc = dfpo_path_fmt(dir, sizeof dir, err, "%s", path)))
    return rc;
  *strrchr(dir, '/') = '\0';
  if ((rc = dfpo_mkdirs(dir, err)))
    return rc;
  snprintf(text, sizeof text, "%s\n", commit);
  return dfpo_atomic_write_file(path, text, strlen(text), err);
}

/* ------------------------------------------------------ the hub's answer */

static const ds_hub_file *sibling_find(const ds_hub_model *all, const char *path) {
  for (size_t i = 0; i < all->n_files; i++)
    if (!strcmp(all->files[i].path, path))
      return &all->files[i];
  return NULL;
}

/* Parses the API answer: sha (the commit) and, for every root-level file,
 * its size and its LFS SHA-256 or git blob id. */
static int parse_api(const char *url, const char *text, size_t len, ds_hub_model *all,
                     dfpo_err *err) {
  cJSON *o = cJSON_ParseWithLength(text, len);
  if (!o)
    return dfpo_err_set(err, DFPO_EDATA, "%s: the answer is not JSON", url);
  int rc = DFPO_OK;
  const char *sha = str_key(o, "sha");
  const cJSON *sib = cJSON_GetObjectItemCaseSensitive(o, "siblings");
  if (!sha || !ds_hub_is_commit(sha))
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: no 'sha' of 40 hex digits in the answer", url);
  else if (!cJSON_IsArray(sib))
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: no 'siblings' list in the answer", url);
  if (!rc)
    snprintf(all->commit, sizeof all->commit, "%s", sha);
  size_t cap = 0;
  for (const cJSON *s = rc ? NULL : sib->child; s && !rc; s = s->next) {
    const char *p = str_key(s, "rfilename"), *blob = str_key(s, "blobId");
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(s, "size");
    const cJSON *lfs = cJSON_GetObjectItemCaseSensitive(s, "lfs");
    if (!p || !file_name_ok(p))
      continue; /* folders and names the harness never takes */
    ds_hub_file f;
    memset(&f, 0, sizeof f);
    snprintf(f.path, sizeof f.path, "%s", p);
    if (cJSON_IsObject(lfs)) {
      const char *h = str_key(lfs, "sha256");
      const cJSON *ls = cJSON_GetObjectItemCaseSensitive(lfs, "size");
      if (!h || !ds_is_hex64(h) || !cJSON_IsNumber(ls) || !(ls->valuedouble >= 0) ||
          ls->valuedouble > 9007199254740992.0) {
        rc = dfpo_err_set(err, DFPO_EDATA, "%s: %s: 'lfs' without a sha256 and a size", url, p);
        break;
      }
      f.lfs = 1;
      f.size = (uint64_t)ls->valuedouble;
      memcpy(f.sha256, h, 65);
    } else {
      if (!cJSON_IsNumber(size) || !(size->valuedouble >= 0) ||
          size->valuedouble > 9007199254740992.0 || !blob ||
          !(strlen(blob) == 40 && is_hex(blob, 40))) {
        /* no way to check it: it is refused if the harness selects it */
        f.size = UINT64_MAX;
      } else {
        f.size = (uint64_t)size->valuedouble;
        memcpy(f.git_sha1, blob, 41);
      }
    }
    rc = add_file(all, &cap, &f, err);
  }
  cJSON_Delete(o);
  return rc;
}

/* ----------------------------------------------------- downloading */

/* One file of m into the partial folder, verified: a complete file left by an
 * earlier run is checked and kept, a .part is resumed. f->sha256 is filled
 * in where only the git blob id was known. */
static int get_file(const ds_hub_model *m, ds_hub_file *f, const char *part_dir, const char *by,
                    const ds_fetch_opts *o, dfpo_err *err) {
  char dest[DS_PATH_MAX], url[DS_PATH_MAX];
  int rc = ds_join(dest, sizeof dest, part_dir, f->path, err);
  if (rc)
    return rc;
  if (f->size == UINT64_MAX)
    return dfpo_err_set(err, DFPO_EDATA,
                        "%s/%s@%s: the hub gives no size and git blob id for %s, so it cannot be "
                        "verified; refused",
                        m->ref.owner, m->ref.name, m->commit, f->path);
  ds_got g;
  struct stat st;
  if (stat(dest, &st) == 0) {
    if ((uint64_t)st.st_size == f->size && ds_hash_file(dest, !f->lfs, &g, NULL) == DFPO_OK &&
        (f->lfs || !strcmp(g.git_sha1, f->git_sha1)) &&
        (!f->sha256[0] || !strcmp(g.sha256, f->sha256))) {
      memcpy(f->sha256, g.sha256, 65);
      return DFPO_OK;
    }
    unlink(dest);
  }
  file_url(&m->ref, m->commit, f->path, url, sizeof url);
  ds_want want = {f->size, f->sha256[0] ? f->sha256 : NULL, f->lfs ? NULL : f->git_sha1, by};
  const char *urls[] = {url};
  if ((rc = ds_download_checked(urls, 1, dest, &want, &g, o, NULL, 0, err)))
    return dfpo_err_prefix(err, "%s/%s@%s", m->ref.owner, m->ref.name, m->commit);
  memcpy(f->sha256, g.sha256, 65); /* blob files: the lock records their SHA-256 too */
  return DFPO_OK;
}

/* The weight map's file names of a sharded checkpoint's index. */
static int index_shards(const char *path, const ds_hub_model *all, ds_hub_model *sel, size_t *cap,
                        dfpo_err *err) {
  cJSON *o = NULL;
  struct stat st;
  if (stat(path, &st) == 0 && (uint64_t)st.st_size > HUB_INDEX_CAP)
    return dfpo_err_set(err, DFPO_EDATA, "%s: larger than %zu bytes", path, HUB_INDEX_CAP);
  int rc = read_json(path, &o, err);
  if (rc)
    return rc;
  const cJSON *wm = cJSON_GetObjectItemCaseSensitive(o, "weight_map");
  if (!cJSON_IsObject(wm))
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: no 'weight_map' object", path);
  for (const cJSON *e = rc ? NULL : wm->child; e && !rc; e = e->next) {
    const ds_hub_file *f;
    if (!cJSON_IsString(e) || !file_name_ok(e->valuestring))
      rc = dfpo_err_set(err, DFPO_EDATA, "%s: weight_map[\"%s\"] is not a file name", path,
                        e->string);
    else if (!(f = sibling_find(all, e->valuestring)))
      rc = dfpo_err_set(err, DFPO_EDATA, "%s: the shard %s is not in the repository", path,
                        e->valuestring);
    else
      rc = add_file(sel, cap, f, err);
  }
  cJSON_Delete(o);
  return rc;
}

static const char *const tokenizer_files[] = {"vocab.txt",
                                              "vocab.json",
                                              "merges.txt",
                                              "tokenizer.json",
                                              "tokenizer_config.json",
                                              "special_tokens_map.json",
                                              "spiece.model",
                                              "tokenizer.model",
                                              NULL};

/* The files the harness takes from a commit (docs/datasets.md, "Hub
 * models"): config.json, one set of weights, the tokenizer files there are;
 * or, from a peft adapter repository (adapter_config.json and no
 * config.json), adapter_config.json and adapter_model.safetensors (else
 * adapter_model.bin). *index receives the index file to expand into
 * shards, or NULL. */
static int select_files(const ds_hub_model *all, ds_hub_model *sel, size_t *cap, const char **index,
                        dfpo_err *err) {
  static const char *const weights[] = {"model.safetensors", "model.safetensors.index.json",
                                        "pytorch_model.bin", "pytorch_model.bin.index.json"};
  const ds_hub_file *f;
  int rc;
  *index = NULL;
  if (!sibling_find(all, "config.json") && (f = sibling_find(all, "adapter_config.json"))) {
    const ds_hub_file *a = sibling_find(all, "adapter_model.safetensors");
    if (!a && !(a = sibling_find(all, "adapter_model.bin")))
      return dfpo_err_set(err, DFPO_EDATA,
                          "%s/%s@%s has adapter_config.json but no adapter_model.safetensors "
                          "(nor adapter_model.bin)",
                          all->ref.owner, all->ref.name, all->commit);
    return (rc = add_file(sel, cap, f, err)) ? rc : add_file(sel, cap, a, err);
  }
  if (!(f = sibling_find(all, "config.json")))
    return dfpo_err_set(err, DFPO_EDATA,
                        "%s/%s@%s has no config.json (nor a peft adapter's "
                        "adapter_config.json): not a model repository the harness reads",
                        all->ref.owner, all->ref.name, all->commit);
  if ((rc = add_file(sel, cap, f, err)))
    return rc;
  int w = 0;
  while (w < 4 && !(f = sibling_find(all, weights[w])))
    w++;
  if (w == 4)
    return dfpo_err_set(err, DFPO_EDATA,
                        "%s/%s@%s has no weights (model.safetensors, its index, or "
                        "pytorch_model.bin)",
                        all->ref.owner, all->ref.name, all->commit);
  if (w >= 2)
    dfpo_info("%s/%s@%s has no model.safetensors, only %s: read as torch.save's zip format "
              "(or its legacy, pre-1.6 format)",
              all->ref.owner, all->ref.name, all->commit, weights[w]);
  if ((rc = add_file(sel, cap, f, err)))
    return rc;
  if (w == 1 || w == 3)
    *index = weights[w];
  for (int i = 0; tokenizer_files[i]; i++)
    if ((f = sibling_find(all, tokenizer_files[i])) && (rc = add_file(sel, cap, f, err)))
      return rc;
  return DFPO_OK;
}

/* Moves a complete partial folder into place as <repo>/<commit>, replacing
 * what was there. */
static int install(const char *part_dir, const char *final, dfpo_err *err) {
  char old[DS_PATH_MAX];
  int rc = dfpo_path_fmt(old, sizeof old, err, "%s.old.%ld", final, (long)getpid());
  if (rc)
    return rc;
  int had = exists(final);
  if (had && rename(final, old) != 0)
    return dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot move aside", final);
  if (rename(part_dir, final) != 0) {
    int e = errno;
    if (had && rename(old, final) != 0)
      dfpo_warn("%s: could not be put back from %s", final, old);
    return dfpo_err_errno(err, DFPO_ERUNTIME, e, "%s: cannot rename to %s", part_dir, final);
  }
  return had ? ds_rmtree(old, err) : DFPO_OK;
}

/* Downloads m's files (known hashes: a lock; or the hub's) into
 * <repo>/<commit>.partial, expands an index into its shards, writes the
 * record, and installs the folder. */
static int download_locked(ds_hub_model *m, const ds_hub_model *all, const char *index,
                           const char *by, const ds_fetch_opts *o, dfpo_err *err) {
  char repo[DS_PATH_MAX], part_dir[DS_PATH_MAX], final[DS_PATH_MAX], path[DS_PATH_MAX];
  int rc;
  if ((rc = repo_dir(&m->ref, repo, sizeof repo, err)) ||
      (rc = dfpo_path_fmt(part_dir, sizeof part_dir, err, "%s/%s.partial", repo, m->commit)) ||
      (rc = dfpo_path_fmt(final, sizeof final, err, "%s/%s", repo, m->commit)) ||
      (rc = dfpo_mkdirs(part_dir, err)))
    return rc;
  size_t cap = m->n_files;
  for (size_t i = 0; !rc && i < m->n_files; i++) {
    if ((rc = get_file(m, &m->files[i], part_dir, by, o, err)))
      break;
    if (index && !strcmp(m->files[i].path, index) &&
        !(rc = ds_join(path, sizeof path, part_dir, index, err)))
      rc = index_shards(path, all, m, &cap, err); /* appended: fetched by this loop */
  }
  if (rc == DFPO_EDATA) {
    /* bytes that are not what they should be: nothing of this commit stays
     * (network failures keep the partial folder, which the next run resumes) */
    dfpo_err e2;
    if (ds_rmtree(part_dir, &e2))
      dfpo_warn("%s", e2.msg);
  }
  if (rc)
    return rc;
  cJSON *rec = entry_json(m);
  if ((rc = ds_join(path, sizeof path, part_dir, HUB_RECORD, err)) ||
      (rc = write_json(path, rec, err)) || (rc = install(part_dir, final, err))) {
    cJSON_Delete(rec);
    return rc;
  }
  cJSON_Delete(rec);
  return dfpo_path_fmt(m->dir, sizeof m->dir, err, "%s", final);
}

/* download_locked under the lock of <repo>/<commit>: one process fetches
 * a commit at a time, another stops (DFPO_ELOCKED) and leaves its partial
 * folder alone. */
static int download_model(ds_hub_model *m, const ds_hub_model *all, const char *index,
                          const char *by, const ds_fetch_opts *o, dfpo_err *err) {
  char repo[DS_PATH_MAX], final[DS_PATH_MAX];
  dfpo_lock l = {0};
  int rc;
  if ((rc = repo_dir(&m->ref, repo, sizeof repo, err)) ||
      (rc = dfpo_path_fmt(final, sizeof final, err, "%s/%s", repo, m->commit)) ||
      (rc = dfpo_mkdirs(repo, err)) || (rc = dfpo_lock_take(&l, final, err)))
    return rc;
  rc = download_locked(m, all, index, by, o, err);
  dfpo_lock_release(&l);
  return rc;
}

static void opts_with_token(const ds_fetch_opts *in, ds_fetch_opts *out) {
  if (in)
    *out = *in;
  else
    ds_fetch_opts_init(out);
  const char *t = getenv("HF_TOKEN");
  if (!out->bearer && t && t[0])
    out->bearer = t;
}

static void say_command(const ds_hub_ref *r, char *buf, size_t n) {
  ds_sfmt(buf, n, "dfpo fetch %s/%s%s%s", r->owner, r->name, r->explicit_revision ? "@" : "",
          r->explicit_revision ? r->revision : "");
}

int ds_hub_fetch(const char *spec, const ds_fetch_opts *opts, int force, ds_hub_model *out,
                 dfpo_err *err) {
  ds_hub_model all, sel;
  memset(out, 0, sizeof *out);
  memset(&all, 0, sizeof all);
  memset(&sel, 0, sizeof sel);
  if (!ds_hub_parse(spec, &sel.ref))
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "'%s' is not a hub name (owner/name or owner/name@revision)", spec);
  ds_fetch_opts o;
  opts_with_token(opts, &o);
  all.ref = sel.ref;
  char repo[DS_PATH_MAX], dir[DS_PATH_MAX], url[DS_PATH_MAX], cmd[512];
  int rc = repo_dir(&sel.ref, repo, sizeof repo, err);
  if (rc)
    return rc;
  api_url(&sel.ref, sel.ref.revision, url, sizeof url);
  say_command(&sel.ref, cmd, sizeof cmd);
  if (ds_hub_offline()) {
    /* no network: what the cache holds for the revision, checked whole */
    out->ref = sel.ref;
    char commit[41];
    if (ds_hub_is_commit(sel.ref.revision))
      memcpy(commit, sel.ref.revision, 41);
    else
      ref_read(&sel.ref, sel.ref.revision, commit);
    if (!commit[0] || (rc = dfpo_path_fmt(dir, sizeof dir, err, "%s/%s", repo, commit)) ||
        !exists(dir))
      return rc ? rc
                : dfpo_err_set(err, DFPO_EDATA,
                               "%s is not in the cache and the hub is offline (HF_HUB_OFFLINE or "
                               "DFPO_HUB_OFFLINE is set): run `%s` where %s can be reached",
                               spec, cmd, url);
    if ((rc = record_read(dir, out, err)) || (rc = verify_dir(dir, out, 1, err)))
      return rc;
    out->ref = sel.ref;
    return dfpo_path_fmt(out->dir, sizeof out->dir, err, "%s", dir);
  }
  char *text = NULL;
  size_t len = 0;
  long status = 0;
  if ((rc = ds_http_get(url, HUB_API_CAP, &o, &text, &len, &status, err))) {
    if (status == 401 || status == 403)
      dfpo_err_prefix(err,
                      "%s: private, gated or not found (set HF_TOKEN to a token that may read "
                      "it)",
                      spec);
    else if (status == 404)
      dfpo_err_prefix(err, "%s: no such model or revision on the hub", spec);
    else
      dfpo_err_prefix(err, "%s: the hub cannot be reached", spec);
    return rc;
  }
  rc = parse_api(url, text, len, &all, err);
  free(text);
  if (!rc && ds_hub_is_commit(sel.ref.revision) && strcmp(all.commit, sel.ref.revision))
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: the hub answered with the commit %s", url, all.commit);
  const char *index = NULL;
  size_t cap = 0;
  memcpy(sel.commit, all.commit, 41);
  if (!rc)
    rc = dfpo_path_fmt(dir, sizeof dir, err, "%s/%s", repo, all.commit);
  if (!rc && !force && exists(dir)) {
    /* the commit is already here: the record is checked whole, and used */
    dfpo_err e2;
    dfpo_err_clear(&e2);
    if (record_read(dir, out, &e2) == DFPO_OK && verify_dir(dir, out, 1, &e2) == DFPO_OK) {
      out->ref = sel.ref;
      ds_hub_model_free(&all);
      if ((rc = ref_write(&sel.ref, sel.ref.revision, out->commit, err)))
        return rc;
      return dfpo_path_fmt(out->dir, sizeof out->dir, err, "%s", dir);
    }
    dfpo_warn("%s: %s; fetching it again", dir, e2.msg);
    ds_hub_model_free(out);
  }
  if (!rc)
    rc = select_files(&all, &sel, &cap, &index, err);
  if (!rc)
    rc = download_model(&sel, &all, index, "the hub", &o, err);
  ds_hub_model_free(&all);
  if (!rc)
    rc = ref_write(&sel.ref, sel.ref.revision, sel.commit, err);
  if (rc) {
    ds_hub_model_free(&sel);
    return rc;
  }
  sel.fetched = 1;
  *out = sel;
  return DFPO_OK;
}

int ds_hub_resolve(const char *spec, const ds_fetch_opts *opts, char *dir, size_t n,
                   dfpo_err *err) {
  struct stat st;
  if (stat(spec, &st) == 0)
    return dfpo_path_fmt(dir, n, err, "%s", spec);
  int e = errno;
  ds_hub_ref r;
  if (!ds_hub_parse(spec, &r))
    return dfpo_err_errno(err, DFPO_EDATA, e, "%s", spec);
  char repo[DS_PATH_MAX], commit[41], path[DS_PATH_MAX];
  int rc = repo_dir(&r, repo, sizeof repo, err);
  if (rc)
    return rc;
  if (ds_hub_is_commit(r.revision))
    memcpy(commit, r.revision, 41);
  else
    ref_read(&r, r.revision, commit);
  if (commit[0] && !(rc = dfpo_path_fmt(path, sizeof path, err, "%s/%s", repo, commit)) &&
      exists(path)) {
    /* offline: the last fetched commit of the revision, its sizes checked */
    ds_hub_model m;
    dfpo_err e2;
    memset(&m, 0, sizeof m);
    dfpo_err_clear(&e2);
    if (record_read(path, &m, &e2) == DFPO_OK && verify_dir(path, &m, 0, &e2) == DFPO_OK) {
      ds_hub_model_free(&m);
      dfpo_debug("%s is %s", spec, path);
      return dfpo_path_fmt(dir, n, err, "%s", path);
    }
    ds_hub_model_free(&m);
    dfpo_warn("%s: %s", path, e2.msg);
  }
  if (rc)
    return rc;
  ds_hub_model m;
  char cmd[512];
  say_command(&r, cmd, sizeof cmd);
  dfpo_info("%s: not in the cache; fetching it from the Hugging Face hub", spec);
  if ((rc = ds_hub_fetch(spec, opts, 0, &m, err)))
    return dfpo_err_prefix(err,
                           "'%s' is not a file or folder here, nor a Hugging Face model in the "
                           "cache (`%s` fetches it where the hub can be reached)",
                           spec, cmd);
  rc = dfpo_path_fmt(dir, n, err, "%s", m.dir);
  ds_hub_model_free(&m);
  return rc;
}

/* ------------------------------------------------------------ the lock */

static int lock_load(const char *path, int must_exist, cJSON **o, dfpo_err *err) {
  *o = NULL;
  if (!must_exist && !exists(path)) {
    *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(*o, "lock_version", 1);
    cJSON_AddArrayToObject(*o, "models");
    return DFPO_OK;
  }
  int rc = read_json(path, o, err);
  if (rc)
    return rc;
  static const char *const top[] = {"lock_version", "models", NULL};
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(*o, "lock_version");
  const cJSON *ms = cJSON_GetObjectItemCaseSensitive(*o, "models");
  if (!cJSON_IsObject(*o))
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: not a JSON object", path);
  else if (!(rc = keys_only(*o, top, path, err)) && (!cJSON_IsNumber(v) || v->valuedouble != 1))
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: 'lock_version' must be 1", path);
  else if (!rc && !cJSON_IsArray(ms))
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: 'models' must be a list", path);
  int i = 0;
  for (const cJSON *e = rc ? NULL : ms->child; e && !rc; e = e->next, i++) {
    char where[DS_PATH_MAX + 32];
    ds_hub_model m;
    memset(&m, 0, sizeof m);
    ds_sfmt(where, sizeof where, "%s: models[%d]", path, i);
    rc = entry_parse(e, where, &m, err);
    ds_hub_model_free(&m);
  }
  if (rc) {
    cJSON_Delete(*o);
    *o = NULL;
  }
  return rc;
}

int ds_hub_lock_add(const char *path, const ds_hub_model *m, dfpo_err *err) {
  cJSON *o;
  int rc = lock_load(path, 0, &o, err);
  if (rc)
    return rc;
  cJSON *ms = cJSON_GetObjectItemCaseSensitive(o, "models"), *e = entry_json(m);
  char id[2 * DS_HUB_NAME_MAX + 2];
  snprintf(id, sizeof id, "%s/%s", m->ref.owner, m->ref.name);
  int i = 0, found = 0;
  for (cJSON *x = ms->child; x; x = x->next, i++) {
    const char *name = str_key(x, "name"), *rev = str_key(x, "revision"),
               *commit = str_key(x, "commit");
    if (name && rev && !strcmp(name, id) && !strcmp(rev, m->ref.revision)) {
      if (commit && strcmp(commit, m->commit))
        dfpo_info("%s: %s@%s moves from %s to %s", path, id, rev, commit, m->commit);
      cJSON_ReplaceItemInArray(ms, i, e);
      found = 1;
      break;
    }
  }
  if (!found)
    cJSON_AddItemToArray(ms, e);
  rc = write_json(path, o, err);
  cJSON_Delete(o);
  return rc;
}

int ds_hub_lock_replay(const char *path, const ds_fetch_opts *opts, int force,
                       ds_hub_replay_fn done, void *ctx, dfpo_err *err) {
  cJSON *o;
  int rc = lock_load(path, 1, &o, err);
  if (rc)
    return rc;
  ds_fetch_opts fo;
  opts_with_token(opts, &fo);
  const cJSON *ms = cJSON_GetObjectItemCaseSensitive(o, "models");
  if (!cJSON_GetArraySize(ms))
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: no models in the lock", path);
  int i = 0;
  for (const cJSON *e = rc ? NULL : ms->child; e && !rc; e = e->next, i++) {
    char where[DS_PATH_MAX + 32], repo[DS_PATH_MAX], dir[DS_PATH_MAX], by[DS_PATH_MAX + 16];
    ds_hub_model m;
    memset(&m, 0, sizeof m);
    ds_sfmt(where, sizeof where, "%s: models[%d]", path, i);
    ds_sfmt(by, sizeof by, "the lock %s", path);
    if ((rc = entry_parse(e, where, &m, err)))
      break;
    int fetched = 0;
    if (!(rc = repo_dir(&m.ref, repo, sizeof repo, err)) &&
        !(rc = dfpo_path_fmt(dir, sizeof dir, err, "%s/%s", repo, m.commit))) {
      if (exists(dir) && !force) {
        /* the lock's files, byte for byte (the cache may hold more) */
        if ((rc = verify_dir(dir, &m, 1, err)))
          dfpo_err_prefix(err, "%s/%s@%s differs from %s (run `dfpo fetch --lock %s --force`)",
                          m.ref.owner, m.ref.name, m.commit, path, path);
        else
          rc = dfpo_path_fmt(m.dir, sizeof m.dir, err, "%s", dir);
      } else if (ds_hub_offline()) {
        rc = dfpo_err_set(err, DFPO_EDATA,
                          "%s/%s@%s is not in the cache and the hub is offline (HF_HUB_OFFLINE "
                          "or DFPO_HUB_OFFLINE is set)",
                          m.ref.owner, m.ref.name, m.commit);
      } else {
        rc = download_model(&m, &m, NULL, by, &fo, err);
        fetched = 1;
      }
    }
    if (!rc)
      rc = ref_write(&m.ref, m.ref.revision, m.commit, err);
    m.fetched = fetched;
    if (!rc && done)
      done(ctx, &m);
    ds_hub_model_free(&m);
  }
  cJSON_Delete(o);
  return rc;
}
