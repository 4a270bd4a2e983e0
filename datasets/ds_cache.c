#include "datasets/ds_internal.h"

#include <string.h>

static int valid_component(const char *s) {
  if (!s || !s[0] || !strcmp(s, ".") || !strcmp(s, ".."))
    return 0;
  return strchr(s, '/') == NULL;
}

int ds_dataset_dir(const char *name, const char *version, char *buf, size_t n, dfpo_err *err) {
  if (!valid_component(name) || !valid_component(version))
    return dfpo_err_set(err, DFPO_EUSAGE, "invalid dataset name or version: '%s' '%s'",
                        name ? name : "", version ? version : "");
  char root[4096];
  int rc = dfpo_cache_dir(root, sizeof root, err);
  if (rc)
    return rc;
  int w = snprintf(buf, n, "%s/datasets/%s/%s", root, name, version);
  if (w < 0 || (size_t)w >= n)
    return dfpo_err_set(err, DFPO_EUSAGE, "dataset folder path too long under %s", root);
  return DFPO_OK;
}

int ds_dataset_lock(const ds_entry *e, dfpo_lock *l, dfpo_err *err) {
  char dir[4096];
  int rc = ds_dataset_dir(e->name, e->version, dir, sizeof dir, err);
  if (!rc)
    rc = dfpo_mkdirs(dir, err);
  return rc ? rc : dfpo_lock_take(l, dir, err);
}

int ds_asset_dir(const char *folder, char *buf, size_t n, dfpo_err *err) {
  if (!valid_component(folder))
    return dfpo_err_set(err, DFPO_EUSAGE, "invalid asset folder name: '%s'", folder ? folder : "");
  char root[4096];
  int rc = dfpo_cache_dir(root, sizeof root, err);
  if (rc)
    return rc;
  return dfpo_path_fmt(buf, n, err, "%s/assets/%s", root, folder);
}
