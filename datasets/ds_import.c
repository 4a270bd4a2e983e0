#define _XOPEN_SOURCE 700 /* realpath */
#include "datasets/ds_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *ds_method_name(ds_method m) {
  switch (m) {
  case DS_BY_ARCHIVE:
    return "archive-sha256";
  case DS_BY_CONTENT:
    return "content-digest";
  case DS_BY_FILES:
    return "file-sha256";
  default:
    return "unverified";
  }
}

static int method_parse(const char *s, ds_method *m) {
  for (int i = 0; i <= 3; i++)
    if (!strcmp(s, ds_method_name((ds_method)i))) {
      *m = (ds_method)i;
      return 1;
    }
  return 0;
}

/* ----------------------------------------------------------------- stamp */

int ds_raw_dir(const ds_entry *e, char *buf, size_t n, dfpo_err *err) {
  char dir[DS_PATH_MAX];
  int rc = ds_dataset_dir(e->name, e->version, dir, sizeof dir, err);
  return rc ? rc : ds_join(buf, n, dir, "raw", err);
}

static int stamp_path(const ds_entry *e, char *buf, size_t n, dfpo_err *err) {
  char dir[DS_PATH_MAX];
  int rc = ds_dataset_dir(e->name, e->version, dir, sizeof dir, err);
  return rc ? rc : ds_join(buf, n, dir, "stamp.json", err);
}

static int stamp_write(const ds_entry *e, const ds_stamp *s, dfpo_err *err) {
  char path[DS_PATH_MAX];
  int rc = stamp_path(e, path, sizeof path, err);
  if (rc)
    return rc;
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "stamp_version", 1);
  cJSON_AddStringToObject(o, "name", s->name);
  cJSON_AddStringToObject(o, "version", s->version);
  cJSON_AddBoolToObject(o, "verified", s->verified);
  cJSON_AddStringToObject(o, "verified_by", ds_method_name(s->method));
  cJSON_AddStringToObject(o, "source", s->source);
  cJSON_AddStringToObject(o, "sha256", s->sha256);
  cJSON_AddStringToObject(o, "raw_digest", s->raw_digest);
  cJSON_AddNumberToObject(o, "files", (double)s->files);
  cJSON_AddNumberToObject(o, "bytes", (double)s->bytes);
  cJSON_AddStringToObject(o, "members_missing", s->members_missing);
  cJSON_AddStringToObject(o, "imported_at", s->imported_at);
  char *txt = cJSON_Print(o);
  cJSON_Delete(o);
  if (!txt)
    return dfpo_err_set(err, DFPO_ERUNTIME, "%s: out of memory", path);
  size_t len = strlen(txt);
  txt[len] = '\n'; /* replaces the NUL; written with its length */
  rc = dfpo_atomic_write_file(path, txt, len + 1, err);
  free(txt);
  return rc;
}

static int copy_str(char *dst, size_t n, const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!cJSON_IsString(v) || strlen(v->valuestring) >= n)
    return 0;
  strcpy(dst, v->valuestring);
  return 1;
}

int ds_stamp_read(const ds_entry *e, ds_stamp *s, dfpo_err *err) {
  memset(s, 0, sizeof *s);
  char path[DS_PATH_MAX];
  int rc = stamp_path(e, path, sizeof path, err);
  if (rc)
    return rc;
  if (access(path, F_OK) != 0)
    return dfpo_err_set(err, DFPO_EDATA,
                        "%s %s is not in the cache (no %s): run 'dfpo fetch %s' or "
                        "'dfpo datasets import %s PATH'",
                        e->name, e->version, path, e->name, e->name);
  char *txt;
  if ((rc = dfpo_read_file(path, &txt, NULL, err)))
    return rc;
  cJSON *o = cJSON_Parse(txt);
  free(txt);
  char method[32];
  const cJSON *files = cJSON_GetObjectItemCaseSensitive(o, "files");
  const cJSON *bytes = cJSON_GetObjectItemCaseSensitive(o, "bytes");
  int ok = cJSON_IsObject(o) && copy_str(s->name, sizeof s->name, o, "name") &&
           copy_str(s->version, sizeof s->version, o, "version") &&
           copy_str(method, sizeof method, o, "verified_by") && method_parse(method, &s->method) &&
           copy_str(s->source, sizeof s->source, o, "source") &&
           copy_str(s->sha256, sizeof s->sha256, o, "sha256") &&
           copy_str(s->raw_digest, sizeof s->raw_digest, o, "raw_digest") &&
           copy_str(s->members_missing, sizeof s->members_missing, o, "members_missing") &&
           copy_str(s->imported_at, sizeof s->imported_at, o, "imported_at") &&
           cJSON_IsNumber(files) && cJSON_IsNumber(bytes) && files->valuedouble >= 0 &&
           files->valuedouble <= 9007199254740992.0 && bytes->valuedouble >= 0 &&
           bytes->valuedouble <= 9007199254740992.0 && ds_is_hex64(s->raw_digest);
  if (ok) {
    s->files = (uint64_t)files->valuedouble;
    s->bytes = (uint64_t)bytes->valuedouble;
    s->verified = s->method != DS_UNVERIFIED;
    ok = !strcmp(s->name, e->name) && !strcmp(s->version, e->version);
  }
  cJSON_Delete(o);
  if (!ok)
    return dfpo_err_set(err, DFPO_EDATA, "%s: damaged stamp file; import %s again", path, e->name);
  return DFPO_OK;
}

/* ---------------------------------------------------------------- import */

static int has_suffix(const char *s, const char *suf) {
  size_t a = strlen(s), b = strlen(suf);
  return a >= b && !strcmp(s + a - b, suf);
}

static int is_archive_name(const char *p) {
  return has_suffix(p, ".tar.gz") || has_suffix(p, ".tgz") || has_suffix(p, ".tar") ||
         has_suffix(p, ".zip") || has_suffix(p, ".tar.bz2") || has_suffix(p, ".tar.xz");
}

/* Copies src to root/rel, hashing on the way. */
static int copy_file(const char *src, const char *root, const char *rel, ds_listing *l,
                     uint64_t max_bytes, dfpo_err *err) {
  char dst[DS_PATH_MAX];
  int rc;
  if ((rc = ds_join(dst, sizeof dst, root, rel, err)) || (rc = ds_make_parents(root, rel, err)))
    return rc;
  int in = open(src, O_RDONLY | O_CLOEXEC);
  if (in < 0)
    return dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot open", src);
  int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
  if (out < 0) {
    rc = dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot create", dst);
    close(in);
    return rc;
  }
  ds_sha256 h;
  if (ds_sha256_init(&h)) {
    close(in);
    close(out);
    return dfpo_err_set(err, DFPO_ERUNTIME, "cannot start SHA-256");
  }
  unsigned char buf[1 << 16];
  for (;;) {
    ssize_t n = read(in, buf, sizeof buf);
    if (n == 0)
      break;
    if (n < 0) {
      if (errno == EINTR)
        continue;
      rc = dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: read failed", src);
      break;
    }
    l->bytes += (uint64_t)n;
    if (max_bytes && l->bytes > max_bytes) {
      rc = dfpo_err_set(err, DFPO_EDATA, "%s: more than %llu bytes (the manifest's limit)", src,
                        (unsigned long long)max_bytes);
      break;
    }
    ds_sha256_update(&h, buf, (size_t)n);
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(out, buf + off, (size_t)(n - off));
      if (w < 0 && errno == EINTR)
        continue;
      if (w < 0) {
        rc = dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: write failed", dst);
        break;
      }
      off += w;
    }
    if (rc)
      break;
  }
  close(in);
  if (close(out) != 0 && !rc)
    rc = dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: write failed", dst);
  if (rc) {
    ds_sha256_abort(&h);
    return rc;
  }
  char hex[65];
  ds_sha256_final(&h, hex);
  return ds_listing_add(l, rel, hex, err);
}

typedef struct copy_walk {
  const char *prefix; /* prepended to the path below the folder when matching members */
  const char *dest;
  const ds_entry *e;
  ds_listing *l;
} copy_walk;

/* Copies one member file of a local folder. A local folder is the user's
 * own: a link to a regular file is read as that file (ds_walk_files never
 * follows links to folders: no loops). */
static int copy_visit(void *ctx, const char *rel, const char *full, const struct stat *st,
                      dfpo_err *err) {
  (void)st;
  copy_walk *w = ctx;
  char mrel[DS_PATH_MAX];
  int rc = dfpo_path_fmt(mrel, sizeof mrel, err, "%s%s", w->prefix, rel);
  if (rc)
    return rc;
  if (!ds_member_match(w->e->members, w->e->n_members, mrel, NULL))
    return DFPO_OK;
  return copy_file(full, w->dest, mrel, w->l, w->e->max_bytes, err);
}

/* The member path a single plain file stands for, or NULL. */
static const char *member_for_file(const ds_entry *e, const char *path) {
  const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
  for (size_t i = 0; i < e->n_members; i++) {
    const char *mp = e->members[i].path;
    const char *mb = strrchr(mp, '/') ? strrchr(mp, '/') + 1 : mp;
    if (!strpbrk(mp, "*?[") && !strcmp(mb, base))
      return mp;
  }
  if (e->n_members == 1 && !strpbrk(e->members[0].path, "*?["))
    return e->members[0].path;
  return NULL;
}

static int member_files_verify(const ds_entry *e, const ds_listing *l, char *why, size_t n) {
  if (!l->n)
    return 0;
  for (size_t i = 0; i < l->n; i++) {
    size_t k;
    if (!ds_member_match(e->members, e->n_members, l->paths[i], &k))
      continue;
    const char *want = e->members[k].sha256;
    if (!want) {
      snprintf(why, n, "'%s' has no file SHA-256 in the manifest", l->paths[i]);
      return 0;
    }
    if (strcmp(want, l->hex[i])) {
      snprintf(why, n, "'%s' has SHA-256 %s, the manifest says %s", l->paths[i], l->hex[i], want);
      return 0;
    }
  }
  return 1;
}

int ds_import(const ds_entry *e, const char *path, int allow_unverified, ds_stamp *out,
              dfpo_err *err) {
  return ds_import_trusted(e, path, allow_unverified, NULL, NULL, out, err);
}

static int import_locked(const ds_entry *e, const char *path, int allow_unverified,
                         const char *known_sha256, const char *source, ds_stamp *out,
                         dfpo_err *err);

int ds_import_trusted(const ds_entry *e, const char *path, int allow_unverified,
                      const char *known_sha256, const char *source, ds_stamp *out, dfpo_err *err) {
  dfpo_lock l = {0};
  int rc = ds_dataset_lock(e, &l, err);
  if (!rc)
    rc = import_locked(e, path, allow_unverified, known_sha256, source, out, err);
  dfpo_lock_release(&l);
  return rc;
}

static int import_locked(const ds_entry *e, const char *path, int allow_unverified,
                         const char *known_sha256, const char *source, ds_stamp *out,
                         dfpo_err *err) {
  ds_stamp s;
  memset(&s, 0, sizeof s);
  char dir[DS_PATH_MAX], tmp[DS_PATH_MAX], raw[DS_PATH_MAX], old[DS_PATH_MAX];
  int rc = ds_dataset_dir(e->name, e->version, dir, sizeof dir, err);
  if (rc)
    return rc;
  struct stat st;
  if (stat(path, &st) != 0)
    return dfpo_err_errno(err, DFPO_EDATA, errno, "%s: cannot import", path);
  if ((rc = dfpo_mkdirs(dir, err)))
    return rc;
  if ((rc = dfpo_path_fmt(tmp, sizeof tmp, err, "%s/raw.tmp.%ld", dir, (long)getpid())) ||
      (rc = dfpo_path_fmt(old, sizeof old, err, "%s/raw.old.%ld", dir, (long)getpid())) ||
      (rc = ds_raw_dir(e, raw, sizeof raw, err)) || (rc = ds_rmtree(tmp, err)))
    return rc;
  if (mkdir(tmp, 0777) != 0)
    return dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot create folder", tmp);

  ds_listing l = {0};
  int archive_ok = 0, is_dir = S_ISDIR(st.st_mode);
  dfpo_info("importing %s %s from %s", e->name, e->version, path);
  if (is_dir) {
    copy_walk w = {"", tmp, e, &l};
    rc = ds_walk_files(path, 1, copy_visit, &w, err);
    if (rc == DFPO_OK && l.n == 0) {
      /* The folder may be the archive's top folder itself (aclImdb/). */
      char prefix[512];
      const char *base = strrchr(path, '/');
      size_t plen = strlen(path);
      while (plen > 1 && path[plen - 1] == '/')
        plen--;
      char trimmed[DS_PATH_MAX];
      if (!(rc = dfpo_path_fmt(trimmed, sizeof trimmed, err, "%.*s", (int)plen, path))) {
        base = strrchr(trimmed, '/');
        rc = dfpo_path_fmt(prefix, sizeof prefix, err, "%s/", base ? base + 1 : trimmed);
      }
      w.prefix = prefix;
      if (!rc)
        rc = ds_walk_files(path, 1, copy_visit, &w, err);
    }
  } else if (!S_ISREG(st.st_mode)) {
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: not a file or folder", path);
  } else {
    if (known_sha256)
      snprintf(s.sha256, sizeof s.sha256, "%s", known_sha256);
    else
      rc = ds_sha256_file(path, s.sha256, err);
    archive_ok = rc == DFPO_OK && e->pinned && !strcmp(s.sha256, e->sha256);
    if (rc) {
    } else if (strcmp(e->format, "file") && is_archive_name(path)) {
      rc = ds_extract_list(path, tmp, e->members, e->n_members, e->max_entries, e->max_bytes, &l,
                           err);
    } else {
      const char *mp = member_for_file(e, path);
      if (!mp)
        rc = dfpo_err_set(err, DFPO_EDATA,
                          "%s: not an archive (.tar.gz, .tgz, .tar, .zip) and not named like a "
                          "member of %s; give the archive or a folder",
                          path, e->name);
      else
        rc = copy_file(path, tmp, mp, &l, 0, err);
    }
  }

  /* Required members present; optional ones noted. */
  for (size_t i = 0; rc == DFPO_OK && i < e->n_members; i++) {
    int found = 0;
    for (size_t j = 0; j < l.n && !found; j++)
      found = fnmatch(e->members[i].path, l.paths[j], FNM_PATHNAME) == 0;
    if (!found && e->members[i].required)
      rc = dfpo_err_set(err, DFPO_EDATA, "%s: no file matches the member '%s' of %s", path,
                        e->members[i].path, e->name);
    else if (!found) {
      size_t used = strlen(s.members_missing);
      snprintf(s.members_missing + used, sizeof s.members_missing - used, "%s%s", used ? " " : "",
               e->members[i].path);
    }
  }
  if (rc == DFPO_OK && l.n == 0)
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: holds none of the members of %s", path, e->name);

  char digest[65] = "", why[512] = "";
  if (rc == DFPO_OK) {
    ds_listing_digest(&l, digest);
    if (archive_ok)
      s.method = DS_BY_ARCHIVE;
    else if (e->content_digest && !strcmp(digest, e->content_digest))
      s.method = DS_BY_CONTENT;
    else if (member_files_verify(e, &l, why, sizeof why))
      s.method = DS_BY_FILES;
    else {
      s.method = DS_UNVERIFIED;
      char reasons[1024];
      int w = 0;
      if (!e->pinned)
        w += snprintf(reasons + w, sizeof reasons - (size_t)w,
                      "the manifest does not pin %s (its SHA-256 is unknown)", e->name);
      else if (s.sha256[0])
        w += snprintf(reasons + w, sizeof reasons - (size_t)w,
                      "its SHA-256 %s is not the manifest's %s", s.sha256, e->sha256);
      else
        w += snprintf(reasons + w, sizeof reasons - (size_t)w, "a folder has no archive SHA-256");
      if (e->content_digest)
        w += snprintf(reasons + w, sizeof reasons - (size_t)w,
                      "; the content digest of its %zu member files is %s, not %s", l.n, digest,
                      e->content_digest);
      if (why[0])
        snprintf(reasons + w, sizeof reasons - (size_t)w, "; %s", why);
      if (!allow_unverified)
        rc = dfpo_err_set(err, DFPO_EDATA,
                          "%s cannot be verified as %s %s: %s. Nothing was imported; "
                          "'--unverified' imports it anyway, marked unverified",
                          path, e->name, e->version, reasons);
      else
        dfpo_warn("%s is NOT verified as %s %s (%s); imported with --unverified, every result "
                  "that uses it is marked unverified",
                  path, e->name, e->version, reasons);
    }
  }
  if (rc) {
    dfpo_err tmp_err;
    dfpo_err_clear(&tmp_err);
    ds_rmtree(tmp, &tmp_err);
    ds_listing_free(&l);
    return rc;
  }

  /* Swap in the new raw/: stamp first out (a crash leaves "not imported"),
   * splits of the old data out, then raw, then the new stamp. */
  char sp[DS_PATH_MAX], splits[DS_PATH_MAX];
  if (!(rc = stamp_path(e, sp, sizeof sp, err)) && unlink(sp) != 0 && errno != ENOENT)
    rc = dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot remove", sp);
  if (!rc && !(rc = ds_join(splits, sizeof splits, dir, "splits", err)))
    rc = ds_rmtree(splits, err);
  if (!rc && rename(raw, old) != 0 && errno != ENOENT)
    rc = dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot move aside", raw);
  if (!rc && rename(tmp, raw) != 0)
    rc = dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot rename to %s", tmp, raw);
  if (!rc)
    rc = ds_rmtree(old, err);
  if (rc) {
    ds_listing_free(&l);
    return rc;
  }
  snprintf(s.name, sizeof s.name, "%s", e->name);
  snprintf(s.version, sizeof s.version, "%s", e->version);
  s.verified = s.method != DS_UNVERIFIED;
  char abs[DS_PATH_MAX];
  if (!source && realpath(path, abs))
    source = abs;
  ds_sfmt(s.source, sizeof s.source, "%s", source ? source : path);
  memcpy(s.raw_digest, digest, sizeof digest);
  s.files = l.n;
  s.bytes = l.bytes;
  ds_utc_now(s.imported_at);
  ds_listing_free(&l);
  if ((rc = stamp_write(e, &s, err)) || (rc = ds_asset_place(e, err)))
    return rc;
  if (out)
    *out = s;
  return DFPO_OK;
}

int ds_asset_place(const ds_entry *e, dfpo_err *err) {
  if (!e->folder)
    return DFPO_OK;
  char src[DS_PATH_MAX], dir[DS_PATH_MAX], dst[DS_PATH_MAX], tmp[DS_PATH_MAX];
  int rc;
  if ((rc = ds_member_path(e, NULL, src, sizeof src, NULL, err)) ||
      (rc = ds_asset_dir(e->folder, dir, sizeof dir, err)) || (rc = dfpo_mkdirs(dir, err)) ||
      (rc = ds_join(dst, sizeof dst, dir, e->file, err)) ||
      (rc = dfpo_path_fmt(tmp, sizeof tmp, err, "%s.tmp.%ld", dst, (long)getpid())))
    return rc;
  unlink(tmp);
  if (link(src, tmp) != 0) {
    if (errno != EXDEV && errno != EPERM && errno != EMLINK)
      return dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot link to %s", src, tmp);
    ds_listing l = {0}; /* another file system: a copy */
    char sub[DS_PATH_MAX];
    if ((rc = dfpo_path_fmt(sub, sizeof sub, err, "%s.tmp.%ld", e->file, (long)getpid())) ||
        (rc = copy_file(src, dir, sub, &l, 0, err))) {
      ds_listing_free(&l);
      return rc;
    }
    ds_listing_free(&l);
  }
  if (rename(tmp, dst) != 0) {
    int en = errno;
    unlink(tmp);
    return dfpo_err_errno(err, DFPO_ERUNTIME, en, "%s: cannot rename to %s", tmp, dst);
  }
  return DFPO_OK;
}

/* ---------------------------------------------------------------- verify */

int ds_verify(const ds_entry *e, ds_stamp *out, dfpo_err *err) {
  ds_stamp s;
  int rc = ds_stamp_read(e, &s, err);
  if (rc)
    return rc;
  if (out)
    *out = s;
  char raw[DS_PATH_MAX], digest[65];
  size_t files = 0;
  if ((rc = ds_raw_dir(e, raw, sizeof raw, err)))
    return rc;
  struct stat st;
  if (stat(raw, &st) != 0 || !S_ISDIR(st.st_mode))
    return dfpo_err_set(err, DFPO_EDATA, "%s: missing; import %s again", raw, e->name);
  if ((rc = ds_content_digest(raw, NULL, 0, digest, &files, err)))
    return rc;
  if (strcmp(digest, s.raw_digest) || files != s.files)
    return dfpo_err_set(err, DFPO_EDATA,
                        "%s: changed since the import (%zu files, digest %s; the stamp says "
                        "%llu files, %s); import %s again",
                        raw, files, digest, (unsigned long long)s.files, s.raw_digest, e->name);
  if (s.method == DS_BY_CONTENT && (!e->content_digest || strcmp(digest, e->content_digest)))
    return dfpo_err_set(err, DFPO_EDATA, "%s: content digest %s is not the manifest's %s", raw,
                        digest, e->content_digest ? e->content_digest : "(none)");
  if (s.method == DS_BY_FILES) {
    ds_listing l = {0};
    char why[512] = "";
    /* Recompute the per-file hashes through a listing of raw/. */
    for (size_t i = 0; i < e->n_members && rc == DFPO_OK; i++) {
      if (!e->members[i].sha256 || strpbrk(e->members[i].path, "*?["))
        continue;
      char p[DS_PATH_MAX], hex[65];
      if ((rc = ds_join(p, sizeof p, raw, e->members[i].path, err)))
        break;
      if (access(p, F_OK) != 0)
        continue;
      if (!(rc = ds_sha256_file(p, hex, err)))
        rc = ds_listing_add(&l, e->members[i].path, hex, err);
    }
    int ok = rc == DFPO_OK && member_files_verify(e, &l, why, sizeof why);
    ds_listing_free(&l);
    if (rc)
      return rc;
    if (!ok)
      return dfpo_err_set(err, DFPO_EDATA, "%s: %s", raw, why);
  }
  return DFPO_OK;
}

int ds_member_path(const ds_entry *e, const char *member, char *buf, size_t n, int *verified,
                   dfpo_err *err) {
  ds_stamp s;
  int rc = ds_stamp_read(e, &s, err);
  if (rc)
    return rc;
  char raw[DS_PATH_MAX];
  if ((rc = ds_raw_dir(e, raw, sizeof raw, err)) ||
      (rc = ds_join(buf, n, raw, member ? member : e->members[0].path, err)))
    return rc;
  if (access(buf, R_OK) != 0)
    return dfpo_err_errno(err, DFPO_EDATA, errno, "%s: missing from the cache", buf);
  if (verified)
    *verified = s.verified;
  return DFPO_OK;
}
