/* Internal to harness/: the config layer.
 *
 * Prefix: cfg_. A config is a JSON object whose every leaf is declared in a
 * schema (config_schema.c): its key path, type, default and allowed values.
 * Loading starts from the defaults, lays the file over them, then --set
 * overrides; every step checks keys and types against the schema and fails
 * with a message that names the file (or "--set"), the key path, and for a
 * JSON syntax error the line and column.
 *
 * Ownership: cfg owns its cJSON tree; strings returned by cfg_get_str point
 * into it and live until cfg_free. cfg_to_json returns heap memory the caller
 * frees with free().
 */
#ifndef DFPO_HARNESS_CONFIG_H
#define DFPO_HARNESS_CONFIG_H

#include "common/common.h"

#include <stdint.h>

typedef enum {
  CFG_INT,      /* integral JSON number within +-2^53 */
  CFG_NUM,      /* any finite JSON number */
  CFG_BOOL,     /* true / false */
  CFG_STR,      /* any string */
  CFG_ENUM,     /* a string among `choices` */
  CFG_INT_LIST, /* array of CFG_INT */
  CFG_STR_LIST  /* array of strings, each among `choices` when given */
} cfg_type;

typedef struct cfg_key {
  const char *path; /* dotted key path, e.g. "train.lr" */
  cfg_type type;
  const char *def;     /* the default, as JSON text */
  const char *choices; /* "a|b|c" for CFG_ENUM and CFG_STR_LIST, else NULL */
  int has_range;       /* when set, numbers (and list items) must lie in [min, max] */
  double min, max;
  const char *help;
} cfg_key;

/* The schema of suite and run configs; terminated by an entry whose path is
 * NULL. */
extern const cfg_key cfg_schema[];

typedef struct cfg {
  struct cJSON *root;
  const cfg_key *schema;
} cfg;

/* Builds the defaults of schema. */
int cfg_init(cfg *c, const cfg_key *schema, dfpo_err *err);
/* Lays the JSON object in file over c (keys absent from the file keep their
 * current values). */
int cfg_merge_file(cfg *c, const char *file, dfpo_err *err);
/* Same, from text held in memory; `name` stands for the file in messages. */
int cfg_merge_text(cfg *c, const char *name, const char *text, size_t len, dfpo_err *err);
/* Applies one "key.path=value" override; value is read as the key's type
 * (lists as a JSON array or comma-separated items). */
int cfg_set(cfg *c, const char *assignment, dfpo_err *err);
/* cfg_init + cfg_merge_file(file, when non-NULL) + each of the sets. */
int cfg_load(cfg *c, const cfg_key *schema, const char *file, const char *const *sets, int nsets,
             dfpo_err *err);
void cfg_free(cfg *c);

/* Typed access; the path must be a schema leaf of the matching type. */
int cfg_get_int(const cfg *c, const char *path, int64_t *out, dfpo_err *err);
int cfg_get_num(const cfg *c, const char *path, double *out, dfpo_err *err);
int cfg_get_bool(const cfg *c, const char *path, int *out, dfpo_err *err);
int cfg_get_str(const cfg *c, const char *path, const char **out, dfpo_err *err);
/* Number of items of a list key, and item i. */
int cfg_get_list_len(const cfg *c, const char *path, int *len, dfpo_err *err);
int cfg_get_list_int(const cfg *c, const char *path, int i, int64_t *out, dfpo_err *err);
int cfg_get_list_str(const cfg *c, const char *path, int i, const char **out, dfpo_err *err);

/* Whether this process has looked up the key `path` with a cfg_get_*
 * function (of any config). Every schema key must have a reader: a test
 * checks it (tests/harness/test_config_keys.c). With the environment
 * variable DFPO_CFG_TRACE set to a file, each key's first lookup in a
 * process also appends its path and a newline to that file, so that the
 * lookups of child processes (dfpo reproduce's cells) can be gathered. */
int cfg_was_read(const char *path);

/* The whole resolved config as indented JSON (caller frees). */
char *cfg_to_json(const cfg *c);

/* JSON files of the harness (run folders, suites, stamps). cfg_json_write
 * writes o indented, with a final newline, atomically (o stays the
 * caller's). cfg_json_read parses the file into *out (caller frees with
 * cJSON_Delete); on failure *out is NULL and the code is the file's error,
 * or DFPO_EDATA for a NUL byte, JSON that is not valid or text after the
 * value, each with the file, line and column. */
struct cJSON;
int cfg_json_write(const char *path, const struct cJSON *o, dfpo_err *err);
int cfg_json_read(const char *path, struct cJSON **out, dfpo_err *err);

#endif
