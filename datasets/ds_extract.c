#include "datasets/ds_internal.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int ds_make_parents(const char *root, const char *rel, dfpo_err *err) {
  char path[DS_PATH_MAX];
  int rc = ds_join(path, sizeof path, root, rel, err);
  if (rc)
    return rc;
  size_t base = strlen(root) + 1;
  for (char *s = path + base; *s; s++) {
    if (*s != '/')
      continue;
    *s = '\0';
    struct stat st;
    if (mkdir(path, 0777) != 0 && errno != EEXIST)
      return dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot create folder", path);
    if (lstat(path, &st) != 0 || !S_ISDIR(st.st_mode))
      return dfpo_err_set(err, DFPO_EDATA, "%s: exists and is not a folder", path);
    *s = '/';
  }
  return DFPO_OK;
}

/* Strips leading "./" (and lone "."); returns NULL for unsafe paths, setting
 * *why. */
static const char *safe_rel(const char *p, const char **why) {
  if (!p || !p[0]) {
    *why = "empty path";
    return NULL;
  }
  if (p[0] == '/') {
    *why = "absolute path";
    return NULL;
  }
  while (p[0] == '.' && p[1] == '/')
    p += 2;
  while (p[0] == '/')
    p++;
  for (const char *s = p; *s;) {
    size_t n = strcspn(s, "/");
    if (n == 2 && s[0] == '.' && s[1] == '.') {
      *why = "'..' in the path";
      return NULL;
    }
    s += n;
    while (*s == '/')
      s++;
  }
  return p;
}

/* 1 when a link at rel pointing to target (relative to rel's folder, or to
 * the archive root for hard links) stays inside the root. */
static int link_stays(const char *rel, const char *target, int hard) {
  if (!target || !target[0] || target[0] == '/')
    return 0;
  int depth = 0;
  if (!hard)
    for (const char *s = rel; *s; s++)
      depth += *s == '/';
  for (const char *s = target; *s;) {
    size_t n = strcspn(s, "/");
    if (n == 2 && s[0] == '.' && s[1] == '.') {
      if (--depth < 0)
        return 0;
    } else if (n && !(n == 1 && s[0] == '.')) {
      depth++;
    }
    s += n;
    while (*s == '/')
      s++;
  }
  return 1;
}

int ds_extract_list(const char *archive, const char *dest, const ds_member *members,
                    size_t n_members, uint64_t max_entries, uint64_t max_bytes, ds_listing *l,
                    dfpo_err *err) {
  struct archive *a = archive_read_new();
  if (!a)
    return dfpo_err_set(err, DFPO_ERUNTIME, "%s: out of memory", archive);
  archive_read_support_format_tar(a);
  archive_read_support_format_zip(a);
  archive_read_support_filter_gzip(a);
  archive_read_support_filter_bzip2(a);
  archive_read_support_filter_xz(a);
  int rc = DFPO_OK;
  if (archive_read_open_filename(a, archive, 1 << 16) != ARCHIVE_OK) {
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: not a readable tar or zip archive: %s", archive,
                      archive_error_string(a) ? archive_error_string(a) : "unknown format");
    archive_read_free(a);
    return rc;
  }
  uint64_t entries = 0, written = 0;
  char last_parent[DS_PATH_MAX] = "";
  unsigned char *buf = malloc(1 << 16);
  if (!buf) {
    archive_read_free(a);
    return dfpo_err_set(err, DFPO_ERUNTIME, "%s: out of memory", archive);
  }
  struct archive_entry *ae;
  for (;;) {
    int r = archive_read_next_header(a, &ae);
    if (r == ARCHIVE_EOF)
      break;
    if (r < ARCHIVE_WARN) {
      rc = dfpo_err_set(err, DFPO_EDATA, "%s: corrupt archive after %llu entries: %s", archive,
                        (unsigned long long)entries, archive_error_string(a));
      break;
    }
    entries++;
    const char *name = archive_entry_pathname(ae);
    if (max_entries && entries > max_entries) {
      rc = dfpo_err_set(err, DFPO_EDATA,
                        "%s: more than %llu entries (the manifest's limit); refused at '%s'",
                        archive, (unsigned long long)max_entries, name ? name : "?");
      break;
    }
    const char *why = NULL;
    const char *rel = safe_rel(name, &why);
    if (!rel) {
      rc = dfpo_err_set(err, DFPO_EDATA, "%s: entry '%s' refused: %s", archive, name ? name : "",
                        why);
      break;
    }
    mode_t type = archive_entry_filetype(ae);
    const char *hard = archive_entry_hardlink(ae);
    if (hard || type == AE_IFLNK) {
      /* Links that stay inside are not needed by any importer: skipped. */
      const char *target = hard ? hard : archive_entry_symlink(ae);
      if (!link_stays(rel, target, hard != NULL)) {
        rc = dfpo_err_set(err, DFPO_EDATA,
                          "%s: entry '%s' refused: %s link to '%s' leaves the target folder",
                          archive, name, hard ? "hard" : "symbolic", target ? target : "");
        break;
      }
      if (ds_member_match(members, n_members, rel, NULL) && n_members) {
        rc = dfpo_err_set(err, DFPO_EDATA,
                          "%s: entry '%s' refused: a member must be a regular file, not a link",
                          archive, name);
        break;
      }
      continue;
    }
    if (type == AE_IFCHR || type == AE_IFBLK || type == AE_IFIFO || type == AE_IFSOCK) {
      rc = dfpo_err_set(err, DFPO_EDATA, "%s: entry '%s' refused: %s", archive, name,
                        type == AE_IFIFO    ? "a FIFO"
                        : type == AE_IFSOCK ? "a socket"
                                            : "a device file");
      break;
    }
    if (type == AE_IFDIR || !rel[0])
      continue;
    if (type != AE_IFREG) {
      rc =
          dfpo_err_set(err, DFPO_EDATA, "%s: entry '%s' refused: unknown file type", archive, name);
      break;
    }
    if (!ds_member_match(members, n_members, rel, NULL))
      continue; /* not a member: its data is skipped, never written */

    char path[DS_PATH_MAX];
    /* Members come folder by folder: the folders of the previous member
     * (created and checked by us, in our own fresh target) are reused. */
    const char *slash = strrchr(rel, '/');
    size_t plen = slash ? (size_t)(slash - rel) : 0;
    int same = plen == strlen(last_parent) && !strncmp(rel, last_parent, plen);
    if ((rc = ds_join(path, sizeof path, dest, rel, err)) ||
        (!same && (rc = ds_make_parents(dest, rel, err))))
      break;
    if (!same)
      snprintf(last_parent, sizeof last_parent, "%.*s", (int)plen, rel);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (fd < 0) {
      rc = errno == EEXIST ? dfpo_err_set(err, DFPO_EDATA,
                                          "%s: entry '%s' refused: duplicate member", archive, name)
                           : dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot create", path);
      break;
    }
    ds_sha256 h;
    if (ds_sha256_init(&h)) {
      close(fd);
      rc = dfpo_err_set(err, DFPO_ERUNTIME, "cannot start SHA-256");
      break;
    }
    for (;;) {
      la_ssize_t n = archive_read_data(a, buf, 1 << 16);
      if (n == 0)
        break;
      if (n < 0) {
        rc = dfpo_err_set(err, DFPO_EDATA, "%s: entry '%s': corrupt data: %s", archive, name,
                          archive_error_string(a));
        break;
      }
      written += (uint64_t)n;
      if (max_bytes && written > max_bytes) {
        rc = dfpo_err_set(err, DFPO_EDATA,
                          "%s: expands past %llu bytes (the manifest's limit); refused at '%s'",
                          archive, (unsigned long long)max_bytes, name);
        break;
      }
      ds_sha256_update(&h, buf, (size_t)n);
      for (la_ssize_t off = 0; off < n;) {
        ssize_t w = write(fd, buf + off, (size_t)(n - off));
        if (w < 0) {
          if (errno == EINTR)
            continue;
          rc = dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: write failed", path);
          break;
        }
        off += w;
      }
      if (rc)
        break;
    }
    if (close(fd) != 0 && rc == DFPO_OK)
      rc = dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: write failed", path);
    if (rc) {
      ds_sha256_abort(&h);
      break;
    }
    char hex[65];
    ds_sha256_final(&h, hex);
    if ((rc = ds_listing_add(l, rel, hex, err)))
      break;
    l->bytes = written;
  }
  free(buf);
  archive_read_free(a);
  return rc;
}

int ds_extract(const char *archive, const char *dest, const ds_member *members, size_t n_members,
               uint64_t max_entries, uint64_t max_bytes, size_t *files, uint64_t *bytes,
               dfpo_err *err) {
  ds_listing l = {0};
  int rc = ds_extract_list(archive, dest, members, n_members, max_entries, max_bytes, &l, err);
  if (files)
    *files = l.n;
  if (bytes)
    *bytes = l.bytes;
  ds_listing_free(&l);
  return rc;
}
