#include "datasets/ds_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

extern const unsigned char ds_manifest_json[];
extern const size_t ds_manifest_json_len;

const char *ds_manifest_builtin(size_t *len) {
  if (len)
    *len = ds_manifest_json_len;
  return (const char *)ds_manifest_json;
}

static void entry_free(ds_entry *e) {
  free(e->name);
  free(e->version);
  free(e->kind);
  free(e->importer);
  free(e->file);
  free(e->format);
  for (size_t i = 0; i < e->n_urls; i++)
    free(e->urls[i]);
  free(e->urls);
  free(e->sha256);
  free(e->folder);
  free(e->note);
  free(e->content_digest);
  for (size_t i = 0; i < e->n_members; i++) {
    free(e->members[i].path);
    free(e->members[i].sha256);
  }
  free(e->members);
  free(e->license);
  free(e->citation);
  memset(e, 0, sizeof *e);
}

void ds_manifest_free(ds_manifest *m) {
  for (size_t i = 0; i < m->n; i++)
    entry_free(&m->entries[i]);
  free(m->entries);
  m->entries = NULL;
  m->n = 0;
}

const ds_entry *ds_manifest_find(const ds_manifest *m, const char *name) {
  for (size_t i = 0; i < m->n; i++)
    if (!strcmp(m->entries[i].name, name))
      return &m->entries[i];
  return NULL;
}

/* Parsing context: the source name and the entry being read, for messages. */
typedef struct mctx {
  const char *src;
  char where[128];
  dfpo_err *err;
} mctx;

static int bad(mctx *c, const char *key, const char *what) {
  return dfpo_err_set(c->err, DFPO_EDATA, "%s: %s%s%s: %s", c->src, c->where, key ? "." : "",
                      key ? key : "", what);
}

static int keys_known(mctx *c, const cJSON *obj, const char *const *known) {
  for (const cJSON *it = obj->child; it; it = it->next) {
    int ok = 0;
    for (const char *const *k = known; *k; k++)
      ok |= !strcmp(*k, it->string);
    if (!ok)
      return bad(c, it->string, "unknown key");
    for (const cJSON *jt = it->next; jt; jt = jt->next)
      if (!strcmp(jt->string, it->string))
        return bad(c, it->string, "duplicate key");
  }
  return DFPO_OK;
}

static int get_str(mctx *c, const cJSON *obj, const char *key, int required, char **out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  *out = NULL;
  if (!v)
    return required ? bad(c, key, "missing") : DFPO_OK;
  if (!cJSON_IsString(v) || !v->valuestring[0])
    return bad(c, key, "must be a non-empty string");
  if (!(*out = ds_strdup(v->valuestring)))
    return dfpo_err_set(c->err, DFPO_ERUNTIME, "%s: out of memory", c->src);
  return DFPO_OK;
}

static int get_u64(mctx *c, const cJSON *obj, const char *key, int required, uint64_t *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  *out = 0;
  if (!v)
    return required ? bad(c, key, "missing") : DFPO_OK;
  /* Sizes up to 2^53 are exact in a double, which is what cJSON keeps. */
  if (!cJSON_IsNumber(v) || !(v->valuedouble >= 1) || v->valuedouble > 9007199254740992.0 ||
      floor(v->valuedouble) != v->valuedouble)
    return bad(c, key, "must be a positive integer");
  *out = (uint64_t)v->valuedouble;
  return DFPO_OK;
}

static int one_of(const char *s, const char *const *choices) {
  for (; *choices; choices++)
    if (!strcmp(s, *choices))
      return 1;
  return 0;
}

static int valid_name(const char *s) {
  if (!s || !s[0] || !strcmp(s, ".") || !strcmp(s, ".."))
    return 0;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
          *s == '.' || *s == '_' || *s == '-'))
      return 0;
  return 1;
}

static int valid_member_path(const char *p) {
  if (!p[0] || p[0] == '/')
    return 0;
  /* no "." or ".." component */
  for (const char *s = p; *s;) {
    size_t n = strcspn(s, "/");
    if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
      return 0;
    s += n;
    if (*s == '/')
      s++;
  }
  return p[strlen(p) - 1] != '/';
}

static int parse_entry(mctx *c, const cJSON *o, ds_entry *e) {
  static const char *const known[] = {"name",    "version", "kind",    "importer", "file",
                                      "format",  "urls",    "size",    "sha256",   "content_digest",
                                      "members", "limits",  "license", "citation", "folder",
                                      "note",    NULL};
  static const char *const kinds[] = {"dataset", "asset", NULL};
  static const char *const importers[] = {"imdb", "rtp", "commongen", "none", NULL};
  static const char *const formats[] = {"tar.gz", "zip", "file", NULL};
  if (!cJSON_IsObject(o))
    return bad(c, NULL, "must be an object");
  int rc;
  if ((rc = get_str(c, o, "name", 1, &e->name)))
    return rc;
  if (!valid_name(e->name))
    return bad(c, "name", "must be letters, digits, '.', '_' or '-'");
  snprintf(c->where, sizeof c->where, "dataset '%s'", e->name);
  if ((rc = keys_known(c, o, known)) || (rc = get_str(c, o, "version", 1, &e->version)) ||
      (rc = get_str(c, o, "kind", 1, &e->kind)) ||
      (rc = get_str(c, o, "importer", 1, &e->importer)) ||
      (rc = get_str(c, o, "file", 1, &e->file)) || (rc = get_str(c, o, "format", 1, &e->format)) ||
      (rc = get_str(c, o, "sha256", 1, &e->sha256)) ||
      (rc = get_str(c, o, "content_digest", 0, &e->content_digest)) ||
      (rc = get_str(c, o, "license", 1, &e->license)) ||
      (rc = get_str(c, o, "citation", 1, &e->citation)) ||
      (rc = get_str(c, o, "folder", 0, &e->folder)) || (rc = get_str(c, o, "note", 0, &e->note)))
    return rc;
  /* "unknown": a revision and SHA-256 nobody has verified yet; the entry
   * keeps its shape (name, file, folder) and says in its note what to do */
  e->pinned = strcmp(e->sha256, "unknown") != 0;
  if (!e->pinned) {
    const cJSON *sz = cJSON_GetObjectItemCaseSensitive(o, "size");
    const cJSON *uu = cJSON_GetObjectItemCaseSensitive(o, "urls");
    if (!cJSON_IsNumber(sz) || sz->valuedouble != 0)
      return bad(c, "size", "must be 0 when sha256 is \"unknown\"");
    if (!cJSON_IsArray(uu) || cJSON_GetArraySize(uu) != 0)
      return bad(c, "urls", "must be an empty list when sha256 is \"unknown\"");
    if (!e->note)
      return bad(c, "note", "is needed when sha256 is \"unknown\" (why, and what to use instead)");
    if (strcmp(e->format, "file"))
      return bad(c, "sha256", "may be \"unknown\" only for format \"file\"");
    free(e->sha256);
    e->sha256 = NULL;
  } else if ((rc = get_u64(c, o, "size", 1, &e->size))) {
    return rc;
  }
  if (!valid_name(e->version))
    return bad(c, "version", "must be letters, digits, '.', '_' or '-'");
  if (!valid_name(e->file))
    return bad(c, "file", "must be a plain file name");
  if (!one_of(e->kind, kinds))
    return bad(c, "kind", "must be \"dataset\" or \"asset\"");
  if (!one_of(e->importer, importers))
    return bad(c, "importer", "must be \"imdb\", \"rtp\", \"commongen\" or \"none\"");
  if (!one_of(e->format, formats))
    return bad(c, "format", "must be \"tar.gz\", \"zip\" or \"file\"");
  if (e->pinned && !ds_is_hex64(e->sha256))
    return bad(c, "sha256", "must be 64 lowercase hex digits or \"unknown\"");
  if (e->folder && (!valid_name(e->folder) || strcmp(e->format, "file")))
    return bad(c, "folder",
               "must be a folder name (letters, digits, '.', '_', '-') of a format \"file\" asset");
  if (e->content_digest && !ds_is_hex64(e->content_digest))
    return bad(c, "content_digest", "must be 64 lowercase hex digits");

  const cJSON *urls = cJSON_GetObjectItemCaseSensitive(o, "urls");
  if (e->pinned && (!cJSON_IsArray(urls) || cJSON_GetArraySize(urls) < 1))
    return bad(c, "urls", "must be a non-empty list of URLs");
  size_t nu = (size_t)cJSON_GetArraySize(urls);
  if (nu && !(e->urls = calloc(nu, sizeof *e->urls)))
    return dfpo_err_set(c->err, DFPO_ERUNTIME, "%s: out of memory", c->src);
  for (const cJSON *u = urls->child; u; u = u->next) {
    if (!cJSON_IsString(u) ||
        (strncmp(u->valuestring, "http://", 7) && strncmp(u->valuestring, "https://", 8) &&
         strncmp(u->valuestring, "file://", 7)))
      return bad(c, "urls", "every URL must be a string starting http://, https:// or file://");
    if (!(e->urls[e->n_urls++] = ds_strdup(u->valuestring)))
      return dfpo_err_set(c->err, DFPO_ERUNTIME, "%s: out of memory", c->src);
  }

  const cJSON *mem = cJSON_GetObjectItemCaseSensitive(o, "members");
  int is_file = !strcmp(e->format, "file");
  if (is_file) {
    if (mem)
      return bad(c, "members", "not allowed for format \"file\" (the file is the member)");
    if (!(e->members = calloc(1, sizeof *e->members)))
      return dfpo_err_set(c->err, DFPO_ERUNTIME, "%s: out of memory", c->src);
    e->n_members = 1;
    e->members[0].path = ds_strdup(e->file);
    e->members[0].sha256 = e->pinned ? ds_strdup(e->sha256) : NULL;
    e->members[0].required = 1;
    if (!e->members[0].path || (e->pinned && !e->members[0].sha256))
      return dfpo_err_set(c->err, DFPO_ERUNTIME, "%s: out of memory", c->src);
  } else {
    if (!cJSON_IsArray(mem) || cJSON_GetArraySize(mem) < 1)
      return bad(c, "members", "must be a non-empty list");
    size_t nm = (size_t)cJSON_GetArraySize(mem);
    if (!(e->members = calloc(nm, sizeof *e->members)))
      return dfpo_err_set(c->err, DFPO_ERUNTIME, "%s: out of memory", c->src);
    static const char *const mknown[] = {"path", "sha256", "required", NULL};
    char base[128];
    snprintf(base, sizeof base, "%s", c->where);
    for (const cJSON *m = mem->child; m; m = m->next) {
      ds_member *dm = &e->members[e->n_members++];
      ds_sfmt(c->where, sizeof c->where, "%s.members[%zu]", base, e->n_members - 1);
      if (!cJSON_IsObject(m))
        return bad(c, NULL, "must be an object");
      if ((rc = keys_known(c, m, mknown)) || (rc = get_str(c, m, "path", 1, &dm->path)) ||
          (rc = get_str(c, m, "sha256", 0, &dm->sha256)))
        return rc;
      if (!valid_member_path(dm->path))
        return bad(c, "path", "must be a relative path without '.' or '..' components");
      if (dm->sha256 && !ds_is_hex64(dm->sha256))
        return bad(c, "sha256", "must be 64 lowercase hex digits");
      const cJSON *req = cJSON_GetObjectItemCaseSensitive(m, "required");
      if (req && !cJSON_IsBool(req))
        return bad(c, "required", "must be true or false");
      dm->required = cJSON_IsTrue(req);
    }
    snprintf(c->where, sizeof c->where, "%s", base);
  }
  const cJSON *lim = cJSON_GetObjectItemCaseSensitive(o, "limits");
  if (is_file) {
    if (lim)
      return bad(c, "limits", "not allowed for format \"file\"");
  } else {
    static const char *const lknown[] = {"entries", "bytes", NULL};
    if (!cJSON_IsObject(lim))
      return bad(c, "limits", "must be an object with \"entries\" and \"bytes\"");
    char base[128];
    snprintf(base, sizeof base, "%s", c->where);
    ds_sfmt(c->where, sizeof c->where, "%s.limits", base);
    if ((rc = keys_known(c, lim, lknown)) ||
        (rc = get_u64(c, lim, "entries", 1, &e->max_entries)) ||
        (rc = get_u64(c, lim, "bytes", 1, &e->max_bytes)))
      return rc;
    snprintf(c->where, sizeof c->where, "%s", base);
  }
  return DFPO_OK;
}

int ds_manifest_parse(ds_manifest *m, const char *text, size_t len, const char *source,
                      dfpo_err *err) {
  memset(m, 0, sizeof *m);
  mctx c = {source, "", err};
  if (memchr(text, '\0', len))
    return dfpo_err_set(err, DFPO_EDATA, "%s: contains a NUL byte", source);
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
  if (!root) {
    size_t off = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
    int line, col;
    dfpo_text_position(text, off, &line, &col);
    return dfpo_err_set(err, DFPO_EDATA, "%s:%d:%d: malformed JSON", source, line, col);
  }
  for (const char *p = end; p < text + len; p++)
    if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
      int line, col;
      dfpo_text_position(text, (size_t)(p - text), &line, &col);
      cJSON_Delete(root);
      return dfpo_err_set(err, DFPO_EDATA, "%s:%d:%d: text after the JSON value", source, line,
                          col);
    }
  static const char *const top[] = {"manifest_version", "datasets", NULL};
  int rc = DFPO_OK;
  if (!cJSON_IsObject(root)) {
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: must be a JSON object", source);
    goto out;
  }
  if ((rc = keys_known(&c, root, top)))
    goto out;
  const cJSON *ver = cJSON_GetObjectItemCaseSensitive(root, "manifest_version");
  if (!cJSON_IsNumber(ver) || ver->valuedouble != 1) {
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: manifest_version must be 1", source);
    goto out;
  }
  const cJSON *ds = cJSON_GetObjectItemCaseSensitive(root, "datasets");
  if (!cJSON_IsArray(ds)) {
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: datasets must be a list", source);
    goto out;
  }
  size_t n = (size_t)cJSON_GetArraySize(ds);
  if (n && !(m->entries = calloc(n, sizeof *m->entries))) {
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "%s: out of memory", source);
    goto out;
  }
  for (const cJSON *it = ds->child; it; it = it->next) {
    snprintf(c.where, sizeof c.where, "datasets[%zu]", m->n);
    ds_entry *e = &m->entries[m->n++];
    if ((rc = parse_entry(&c, it, e)))
      goto out;
    for (size_t i = 0; i + 1 < m->n; i++)
      if (!strcmp(m->entries[i].name, e->name)) {
        rc = dfpo_err_set(err, DFPO_EDATA, "%s: dataset '%s' is listed twice", source, e->name);
        goto out;
      }
  }
out:
  cJSON_Delete(root);
  if (rc)
    ds_manifest_free(m);
  return rc;
}

int ds_manifest_load(ds_manifest *m, const char *path, dfpo_err *err) {
  /* DFPO_MANIFEST stands for the built-in one everywhere (the suite's
   * preparation and its cells read the manifest too) */
  const char *env = getenv("DFPO_MANIFEST");
  if (!path && env && env[0])
    path = env;
  if (!path) {
    size_t len;
    const char *t = ds_manifest_builtin(&len);
    return ds_manifest_parse(m, t, len, "built-in manifest", err);
  }
  char *data;
  size_t len;
  int rc = dfpo_read_file(path, &data, &len, err);
  if (rc) {
    memset(m, 0, sizeof *m);
    return rc;
  }
  rc = ds_manifest_parse(m, data, len, path, err);
  free(data);
  return rc;
}
