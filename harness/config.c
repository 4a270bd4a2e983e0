#include "harness/config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CFG_INT_LIMIT 9007199254740992.0 /* 2^53: exact in a double */

static const cfg_key *find_key(const cfg_key *schema, const char *path) {
  for (const cfg_key *k = schema; k->path; k++)
    if (!strcmp(k->path, path))
      return k;
  return NULL;
}

static int is_section(const cfg_key *schema, const char *path) {
  size_t n = strlen(path);
  for (const cfg_key *k = schema; k->path; k++)
    if (!strncmp(k->path, path, n) && k->path[n] == '.')
      return 1;
  return 0;
}

static size_t edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 63 || lb > 63)
    return 64;
  size_t row[64];
  for (size_t j = 0; j <= lb; j++)
    row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t up = row[j];
      size_t best = diag + (a[i - 1] != b[j - 1]);
      if (up + 1 < best)
        best = up + 1;
      if (row[j - 1] + 1 < best)
        best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[lb];
}

/* " (did you mean 'x'?)" for the closest leaf within 3 edits, else "". */
static void suggest(const cfg_key *schema, const char *path, char *buf, size_t n) {
  const char *best = NULL;
  size_t bd = 4;
  for (const cfg_key *k = schema; k->path; k++) {
    size_t d = edit_distance(path, k->path);
    if (d < bd) {
      bd = d;
      best = k->path;
    }
  }
  if (best)
    snprintf(buf, n, " (did you mean '%s'?)", best);
  else
    buf[0] = '\0';
}

static const char *type_name(cfg_type t) {
  switch (t) {
  case CFG_INT:
    return "an integer";
  case CFG_NUM:
    return "a number";
  case CFG_BOOL:
    return "true or false";
  case CFG_STR:
    return "a string";
  case CFG_ENUM:
    return "one of the strings";
  case CFG_INT_LIST:
    return "a list of integers";
  case CFG_STR_LIST:
    return "a list of strings";
  }
  return "?";
}

static const char *json_kind(const cJSON *v) {
  if (cJSON_IsNumber(v))
    return "a number";
  if (cJSON_IsString(v))
    return "a string";
  if (cJSON_IsBool(v))
    return "a boolean";
  if (cJSON_IsNull(v))
    return "null";
  if (cJSON_IsArray(v))
    return "a list";
  if (cJSON_IsObject(v))
    return "an object";
  return "an invalid value";
}

static int in_choices(const char *choices, const char *s) {
  size_t n = strlen(s);
  for (const char *p = choices; *p;) {
    const char *bar = strchr(p, '|');
    size_t len = bar ? (size_t)(bar - p) : strlen(p);
    if (len == n && !strncmp(p, s, n))
      return 1;
    if (!bar)
      break;
    p = bar + 1;
  }
  return 0;
}

static int check_scalar(const cfg_key *k, cfg_type t, const cJSON *v, const char *where,
                        const char *item, dfpo_err *err) {
  const char *path = k->path;
  switch (t) {
  case CFG_INT:
  case CFG_NUM:
    if (!cJSON_IsNumber(v))
      return dfpo_err_set(err, DFPO_EUSAGE, "%s: key '%s'%s: expected %s, got %s", where, path,
                          item, type_name(t), json_kind(v));
    if (t == CFG_INT &&
        (v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > CFG_INT_LIMIT))
      return dfpo_err_set(err, DFPO_EUSAGE, "%s: key '%s'%s: expected an integer, got %.17g", where,
                          path, item, v->valuedouble);
    if (k->has_range && (v->valuedouble < k->min || v->valuedouble > k->max))
      return dfpo_err_set(err, DFPO_EUSAGE, "%s: key '%s'%s: %.17g is outside [%g, %g]", where,
                          path, item, v->valuedouble, k->min, k->max);
    return DFPO_OK;
  case CFG_BOOL:
    if (!cJSON_IsBool(v))
      return dfpo_err_set(err, DFPO_EUSAGE, "%s: key '%s': expected true or false, got %s", where,
                          path, json_kind(v));
    return DFPO_OK;
  case CFG_STR:
  case CFG_ENUM:
    if (!cJSON_IsString(v))
      return dfpo_err_set(err, DFPO_EUSAGE, "%s: key '%s'%s: expected %s, got %s", where, path,
                          item, t == CFG_ENUM ? "a string" : type_name(t), json_kind(v));
    if (k->choices && !in_choices(k->choices, v->valuestring))
      return dfpo_err_set(err, DFPO_EUSAGE, "%s: key '%s'%s: '%s' is not one of %s", where, path,
                          item, v->valuestring, k->choices);
    return DFPO_OK;
  default:
    return dfpo_err_set(err, DFPO_ERUNTIME, "%s: key '%s': bad schema type", where, path);
  }
}

static int check_value(const cfg_key *k, const cJSON *v, const char *where, dfpo_err *err) {
  if (k->type != CFG_INT_LIST && k->type != CFG_STR_LIST)
    return check_scalar(k, k->type, v, where, "", err);
  if (!cJSON_IsArray(v))
    return dfpo_err_set(err, DFPO_EUSAGE, "%s: key '%s': expected %s, got %s", where, k->path,
                        type_name(k->type), json_kind(v));
  cfg_type item_type = k->type == CFG_INT_LIST ? CFG_INT : CFG_ENUM;
  int i = 0;
  for (const cJSON *it = v->child; it; it = it->next, i++) {
    char item[32];
    snprintf(item, sizeof item, " item %d", i);
    int rc = check_scalar(k, item_type, it, where, item, err);
    if (rc)
      return rc;
  }
  return DFPO_OK;
}

/* The node at a dotted path, or NULL. */
static cJSON *node_at(cJSON *root, const char *path) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s", path);
  cJSON *n = root;
  for (char *save = NULL, *tok = strtok_r(buf, ".", &save); tok && n;
       tok = strtok_r(NULL, ".", &save))
    n = cJSON_GetObjectItemCaseSensitive(n, tok);
  return n;
}

/* Stores v (taking ownership) at the dotted path, creating sections. */
static int put_at(cJSON *root, const char *path, cJSON *v) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s", path);
  cJSON *n = root;
  char *save = NULL;
  char *tok = strtok_r(buf, ".", &save);
  for (;;) {
    char *next = strtok_r(NULL, ".", &save);
    if (!next) {
      if (cJSON_GetObjectItemCaseSensitive(n, tok))
        return cJSON_ReplaceItemInObjectCaseSensitive(n, tok, v) ? 0 : -1;
      return cJSON_AddItemToObject(n, tok, v) ? 0 : -1;
    }
    cJSON *child = cJSON_GetObjectItemCaseSensitive(n, tok);
    if (!child) {
      child = cJSON_AddObjectToObject(n, tok);
      if (!child)
        return -1;
    }
    n = child;
    tok = next;
  }
}

int cfg_init(cfg *c, const cfg_key *schema, dfpo_err *err) {
  c->schema = schema;
  c->root = cJSON_CreateObject();
  if (!c->root)
    return dfpo_err_set(err, DFPO_ERUNTIME, "config: out of memory");
  for (const cfg_key *k = schema; k->path; k++) {
    cJSON *v = cJSON_Parse(k->def);
    int rc = v ? check_value(k, v, "schema default", err)
               : dfpo_err_set(err, DFPO_ERUNTIME,
                              "schema default of '%s' "
                              "is not JSON",
                              k->path);
    if (!rc && put_at(c->root, k->path, v) != 0)
      rc = dfpo_err_set(err, DFPO_ERUNTIME, "config: out of memory");
    else if (!rc)
      v = NULL;
    cJSON_Delete(v);
    if (rc) {
      cfg_free(c);
      return rc;
    }
  }
  return DFPO_OK;
}

void cfg_free(cfg *c) {
  cJSON_Delete(c->root);
  c->root = NULL;
}

/* Walks an object of the file at `prefix`, checking every key and laying
 * leaves over the config. */
static int merge_object(cfg *c, const cJSON *obj, const char *prefix, const char *where,
                        dfpo_err *err) {
  for (const cJSON *it = obj->child; it; it = it->next) {
    char path[256];
    int w = prefix[0] ? snprintf(path, sizeof path, "%s.%s", prefix, it->string)
                      : snprintf(path, sizeof path, "%s", it->string);
    if (w < 0 || (size_t)w >= sizeof path)
      return dfpo_err_set(err, DFPO_EUSAGE, "%s: key path too long under '%s'", where, prefix);
    for (const cJSON *dup = obj->child; dup != it; dup = dup->next)
      if (!strcmp(dup->string, it->string))
        return dfpo_err_set(err, DFPO_EUSAGE, "%s: key '%s' appears twice", where, path);
    const cfg_key *k = find_key(c->schema, path);
    if (k) {
      int rc = check_value(k, it, where, err);
      if (rc)
        return rc;
      cJSON *copy = cJSON_Duplicate(it, 1);
      if (!copy || put_at(c->root, path, copy) != 0) {
        cJSON_Delete(copy);
        return dfpo_err_set(err, DFPO_ERUNTIME, "config: out of memory");
      }
    } else if (is_section(c->schema, path)) {
      if (!cJSON_IsObject(it))
        return dfpo_err_set(err, DFPO_EUSAGE,
                            "%s: key '%s' is a section and must be an object, "
                            "got %s",
                            where, path, json_kind(it));
      int rc = merge_object(c, it, path, where, err);
      if (rc)
        return rc;
    } else {
      char hint[128];
      suggest(c->schema, path, hint, sizeof hint);
      return dfpo_err_set(err, DFPO_EUSAGE, "%s: unknown key '%s'%s", where, path, hint);
    }
  }
  return DFPO_OK;
}

static size_t skip_space(const char *text, size_t pos, size_t len) {
  while (pos < len && strchr(" \t\r\n", text[pos]))
    pos++;
  return pos;
}

int cfg_merge_text(cfg *c, const char *name, const char *text, size_t len, dfpo_err *err) {
  const char *end = NULL;
  long nul = dfpo_json_nul_escape(text, len);
  if (nul >= 0) {
    int l, k;
    dfpo_text_position(text, (size_t)nul, &l, &k);
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "%s:%d:%d: \\u0000 in a string: a NUL cannot be part of a config value",
                        name, l, k);
  }
  cJSON *doc = cJSON_ParseWithLengthOpts(text, len, &end, 0);
  size_t pos = end && end >= text && end <= text + len ? (size_t)(end - text) : len;
  int line, col;
  if (!doc) {
    /* cJSON stops at, or one character past, the offending character. When
     * only whitespace follows, the text simply ended too early. */
    int at_eof = skip_space(text, pos, len) >= len;
    dfpo_text_position(text, at_eof ? len : pos, &line, &col);
    return dfpo_err_set(err, DFPO_EUSAGE, "%s:%d:%d: malformed JSON%s", name, line, col,
                        at_eof ? " (unexpected end of file)" : "");
  }
  int rc = DFPO_OK;
  pos = skip_space(text, pos, len);
  if (pos < len) {
    dfpo_text_position(text, pos, &line, &col);
    rc = dfpo_err_set(err, DFPO_EUSAGE,
                      "%s:%d:%d: malformed JSON: text after the end of the top-level object", name,
                      line, col);
  } else if (!cJSON_IsObject(doc)) {
    rc = dfpo_err_set(err, DFPO_EUSAGE, "%s: the config must be a JSON object, got %s", name,
                      json_kind(doc));
  } else {
    rc = merge_object(c, doc, "", name, err);
  }
  cJSON_Delete(doc);
  return rc;
}

int cfg_merge_file(cfg *c, const char *file, dfpo_err *err) {
  char *text = NULL;
  size_t len = 0;
  int rc = dfpo_read_file(file, &text, &len, err);
  if (rc == DFPO_EDATA && err)
    err->code = DFPO_EUSAGE; /* a config that is not there is the caller's mistake */
  if (rc)
    return rc == DFPO_EDATA ? DFPO_EUSAGE : rc;
  rc = cfg_merge_text(c, file, text, len, err);
  free(text);
  return rc;
}

/* Whether s is written as a decimal number: digits with an optional sign,
 * and with frac, a point and an exponent. strtod alone would also read
 * "0x10" as 16, "inf", " 5" and "1e5" for an integer key. */
static int decimal_text(const char *s, int frac) {
  if (*s == '+' || *s == '-')
    s++;
  int digits = 0, point = 0;
  for (; (*s >= '0' && *s <= '9') || (frac && *s == '.' && !point); s++) {
    point |= *s == '.';
    digits += *s != '.';
  }
  if (!digits)
    return 0;
  if (frac && (*s == 'e' || *s == 'E')) {
    s++;
    if (*s == '+' || *s == '-')
      s++;
    if (!(*s >= '0' && *s <= '9'))
      return 0;
    while (*s >= '0' && *s <= '9')
      s++;
  }
  return *s == '\0';
}

/* Parses the text of a --set value as the key's type. */
static cJSON *parse_set_value(const cfg_key *k, const char *s, const char *assignment,
                              dfpo_err *err) {
  switch (k->type) {
  case CFG_INT: {
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (!decimal_text(s, 0) || *end || errno || fabs((double)v) > CFG_INT_LIMIT) {
      dfpo_err_set(err, DFPO_EUSAGE, "--set %s: key '%s': expected an integer, got '%s'",
                   assignment, k->path, s);
      return NULL;
    }
    return cJSON_CreateNumber((double)v);
  }
  case CFG_NUM: {
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (!decimal_text(s, 1) || *end || errno || !isfinite(v)) {
      dfpo_err_set(err, DFPO_EUSAGE, "--set %s: key '%s': expected a number, got '%s'", assignment,
                   k->path, s);
      return NULL;
    }
    return cJSON_CreateNumber(v);
  }
  case CFG_BOOL:
    if (!strcmp(s, "true"))
      return cJSON_CreateTrue();
    if (!strcmp(s, "false"))
      return cJSON_CreateFalse();
    dfpo_err_set(err, DFPO_EUSAGE, "--set %s: key '%s': expected true or false, got '%s'",
                 assignment, k->path, s);
    return NULL;
  case CFG_STR:
  case CFG_ENUM:
    return cJSON_CreateString(s);
  case CFG_INT_LIST:
  case CFG_STR_LIST: {
    if (s[0] == '[') {
      cJSON *v = dfpo_json_nul_escape(s, strlen(s)) < 0 ? cJSON_ParseWithOpts(s, NULL, 1) : NULL;
      if (!v) /* also \u0000 in a string, which would end it early */
        dfpo_err_set(err, DFPO_EUSAGE, "--set %s: key '%s': malformed JSON list '%s'", assignment,
                     k->path, s);
      return v;
    }
    cJSON *arr = cJSON_CreateArray();
    char *buf = strdup(s);
    if (!buf) {
      cJSON_Delete(arr);
      dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
      return NULL;
    }
    /* "" is the empty list; otherwise every item between commas must be
     * there: "1,,2" is a typo, not [1, 2] */
    for (char *tok = buf[0] ? buf : NULL, *next; tok && arr; tok = next) {
      char *comma = strchr(tok, ',');
      next = comma ? comma + 1 : NULL;
      if (comma)
        *comma = '\0';
      if (!tok[0]) {
        cJSON_Delete(arr);
        free(buf);
        dfpo_err_set(err, DFPO_EUSAGE, "--set %s: key '%s': an empty item in the list '%s'",
                     assignment, k->path, s);
        return NULL;
      }
      cJSON *item;
      if (k->type == CFG_STR_LIST) {
        item = cJSON_CreateString(tok);
      } else {
        cfg_key ik = *k;
        ik.type = CFG_INT;
        item = parse_set_value(&ik, tok, assignment, err);
      }
      if (!item) {
        cJSON_Delete(arr);
        free(buf);
        return NULL;
      }
      cJSON_AddItemToArray(arr, item);
    }
    free(buf);
    return arr;
  }
  }
  return NULL;
}

int cfg_set(cfg *c, const char *assignment, dfpo_err *err) {
  const char *eq = strchr(assignment, '=');
  if (!eq || eq == assignment)
    return dfpo_err_set(err, DFPO_EUSAGE, "--set %s: expected key.path=value", assignment);
  char path[256];
  size_t n = (size_t)(eq - assignment);
  if (n >= sizeof path)
    return dfpo_err_set(err, DFPO_EUSAGE, "--set %s: key path too long", assignment);
  memcpy(path, assignment, n);
  path[n] = '\0';
  const cfg_key *k = find_key(c->schema, path);
  if (!k) {
    if (is_section(c->schema, path))
      return dfpo_err_set(err, DFPO_EUSAGE, "--set %s: '%s' is a section, not a value", assignment,
                          path);
    char hint[128];
    suggest(c->schema, path, hint, sizeof hint);
    return dfpo_err_set(err, DFPO_EUSAGE, "--set %s: unknown key '%s'%s", assignment, path, hint);
  }
  cJSON *v = parse_set_value(k, eq + 1, assignment, err);
  if (!v)
    return err ? (err->code ? err->code : DFPO_EUSAGE) : DFPO_EUSAGE;
  char where[300];
  snprintf(where, sizeof where, "--set %s", assignment);
  int rc = check_value(k, v, where, err);
  if (!rc && put_at(c->root, path, v) != 0)
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "config: out of memory");
  else if (!rc)
    v = NULL;
  cJSON_Delete(v);
  return rc;
}

int cfg_load(cfg *c, const cfg_key *schema, const char *file, const char *const *sets, int nsets,
             dfpo_err *err) {
  int rc = cfg_init(c, schema, err);
  if (rc)
    return rc;
  if (file)
    rc = cfg_merge_file(c, file, err);
  for (int i = 0; !rc && i < nsets; i++)
    rc = cfg_set(c, sets[i], err);
  if (rc)
    cfg_free(c);
  return rc;
}

/* The keys of any schema looked up so far in this process (by their
 * schema entry; a schema has far fewer than CFG_MAX_READ keys). */
#define CFG_MAX_READ 1024
static const cfg_key *cfg_read_keys[CFG_MAX_READ];
static size_t cfg_n_read;

static void note_read(const cfg_key *k) {
  for (size_t i = 0; i < cfg_n_read; i++)
    if (cfg_read_keys[i] == k)
      return;
  if (cfg_n_read < CFG_MAX_READ)
    cfg_read_keys[cfg_n_read++] = k;
  const char *trace = getenv("DFPO_CFG_TRACE");
  FILE *f = trace && trace[0] ? fopen(trace, "a") : NULL;
  if (f) {
    fprintf(f, "%s\n", k->path);
    fclose(f);
  }
}

int cfg_was_read(const char *path) {
  for (size_t i = 0; i < cfg_n_read; i++)
    if (!strcmp(cfg_read_keys[i]->path, path))
      return 1;
  return 0;
}

static int typed_node(const cfg *c, const char *path, cfg_type t, const cJSON **out,
                      dfpo_err *err) {
  const cfg_key *k = find_key(c->schema, path);
  if (k)
    note_read(k);
  int ok = k && (k->type == t || (t == CFG_STR && k->type == CFG_ENUM));
  if (!ok)
    return dfpo_err_set(err, DFPO_ERUNTIME, "config: '%s' is not a schema key of %s", path,
                        type_name(t));
  *out = node_at(c->root, path);
  if (!*out)
    return dfpo_err_set(err, DFPO_ERUNTIME, "config: '%s' missing from the resolved config", path);
  return DFPO_OK;
}

int cfg_get_int(const cfg *c, const char *path, int64_t *out, dfpo_err *err) {
  const cJSON *n;
  int rc = typed_node(c, path, CFG_INT, &n, err);
  if (!rc)
    *out = (int64_t)n->valuedouble;
  return rc;
}

int cfg_get_num(const cfg *c, const char *path, double *out, dfpo_err *err) {
  const cJSON *n;
  int rc = typed_node(c, path, CFG_NUM, &n, err);
  if (!rc)
    *out = n->valuedouble;
  return rc;
}

int cfg_get_bool(const cfg *c, const char *path, int *out, dfpo_err *err) {
  const cJSON *n;
  int rc = typed_node(c, path, CFG_BOOL, &n, err);
  if (!rc)
    *out = cJSON_IsTrue(n);
  return rc;
}

int cfg_get_str(const cfg *c, const char *path, const char **out, dfpo_err *err) {
  const cJSON *n;
  int rc = typed_node(c, path, CFG_STR, &n, err);
  if (!rc)
    *out = n->valuestring;
  return rc;
}

static int list_node(const cfg *c, const char *path, const cJSON **out, dfpo_err *err) {
  const cfg_key *k = find_key(c->schema, path);
  if (k)
    note_read(k);
  if (!k || (k->type != CFG_INT_LIST && k->type != CFG_STR_LIST))
    return dfpo_err_set(err, DFPO_ERUNTIME, "config: '%s' is not a schema list key", path);
  *out = node_at(c->root, path);
  return *out ? DFPO_OK : dfpo_err_set(err, DFPO_ERUNTIME, "config: '%s' missing", path);
}

int cfg_get_list_len(const cfg *c, const char *path, int *len, dfpo_err *err) {
  const cJSON *n;
  int rc = list_node(c, path, &n, err);
  if (!rc)
    *len = cJSON_GetArraySize(n);
  return rc;
}

static int list_item(const cfg *c, const char *path, int i, const cJSON **item, dfpo_err *err) {
  const cJSON *n;
  int rc = list_node(c, path, &n, err);
  if (rc)
    return rc;
  *item = cJSON_GetArrayItem(n, i);
  return *item ? DFPO_OK : dfpo_err_set(err, DFPO_ERUNTIME, "config: '%s' has no item %d", path, i);
}

int cfg_get_list_int(const cfg *c, const char *path, int i, int64_t *out, dfpo_err *err) {
  const cJSON *it;
  int rc = list_item(c, path, i, &it, err);
  if (!rc && !cJSON_IsNumber(it))
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "config: '%s' is not a list of integers", path);
  if (!rc)
    *out = (int64_t)it->valuedouble;
  return rc;
}

int cfg_get_list_str(const cfg *c, const char *path, int i, const char **out, dfpo_err *err) {
  const cJSON *it;
  int rc = list_item(c, path, i, &it, err);
  if (!rc && !cJSON_IsString(it))
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "config: '%s' is not a list of strings", path);
  if (!rc)
    *out = it->valuestring;
  return rc;
}

char *cfg_to_json(const cfg *c) {
  return cJSON_Print(c->root);
}

int cfg_json_write(const char *path, const cJSON *o, dfpo_err *err) {
  char *s = cJSON_Print(o);
  if (!s)
    return dfpo_err_set(err, DFPO_ERUNTIME, "%s: out of memory", path);
  size_t n = strlen(s);
  s[n] = '\n'; /* over the terminator: n + 1 bytes are written */
  int rc = dfpo_atomic_write_file(path, s, n + 1, err);
  free(s);
  return rc;
}

int cfg_json_read(const char *path, cJSON **out, dfpo_err *err) {
  char *text = NULL;
  size_t len = 0;
  *out = NULL;
  int rc = dfpo_read_file(path, &text, &len, err);
  if (rc)
    return rc;
  /* whole and nothing else: a NUL byte, a cut file or text after the value
   * (two writers, a damaged disk) is refused where it is */
  int line, col;
  const char *nul = memchr(text, '\0', len), *end = NULL;
  if (nul) {
    dfpo_text_position(text, (size_t)(nul - text), &line, &col);
    free(text);
    return dfpo_err_set(err, DFPO_EDATA, "%s:%d:%d: a NUL byte: the file is damaged", path, line,
                        col);
  }
  cJSON *o = cJSON_ParseWithLengthOpts(text, len, &end, 0);
  size_t pos = end && end >= text && end <= text + len ? (size_t)(end - text) : len;
  if (!o) {
    dfpo_text_position(text, pos, &line, &col);
    free(text);
    return dfpo_err_set(err, DFPO_EDATA, "%s:%d:%d: not valid JSON", path, line, col);
  }
  pos = skip_space(text, pos, len);
  if (pos < len) {
    dfpo_text_position(text, pos, &line, &col);
    free(text);
    cJSON_Delete(o);
    return dfpo_err_set(err, DFPO_EDATA, "%s:%d:%d: text after the JSON value: the file is damaged",
                        path, line, col);
  }
  free(text);
  *out = o;
  return DFPO_OK;
}
