#include "datasets/ds_internal.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int ds_sha256_init(ds_sha256 *h) {
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  if (!c || EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1) {
    EVP_MD_CTX_free(c);
    h->ctx = NULL;
    return DFPO_ERUNTIME;
  }
  h->ctx = c;
  return DFPO_OK;
}

void ds_sha256_update(ds_sha256 *h, const void *data, size_t len) {
  if (len)
    EVP_DigestUpdate((EVP_MD_CTX *)h->ctx, data, len);
}

void ds_sha256_final(ds_sha256 *h, char hex[65]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex((EVP_MD_CTX *)h->ctx, md, &n);
  for (unsigned i = 0; i < 32; i++)
    snprintf(hex + 2 * i, 3, "%02x", md[i]);
  hex[64] = '\0';
  ds_sha256_abort(h);
}

void ds_sha256_abort(ds_sha256 *h) {
  EVP_MD_CTX_free((EVP_MD_CTX *)h->ctx);
  h->ctx = NULL;
}

void ds_sha256_buf(const void *data, size_t len, char hex[65]) {
  ds_sha256 h;
  if (ds_sha256_init(&h)) {
    hex[0] = '\0';
    return;
  }
  ds_sha256_update(&h, data, len);
  ds_sha256_final(&h, hex);
}

int ds_sha256_file(const char *path, char hex[65], dfpo_err *err) {
  FILE *fp = fopen(path, "rb");
  if (!fp)
    return dfpo_err_errno(err, errno == ENOENT ? DFPO_EDATA : DFPO_ERUNTIME, errno,
                          "%s: cannot open", path);
  ds_sha256 h;
  if (ds_sha256_init(&h)) {
    fclose(fp);
    return dfpo_err_set(err, DFPO_ERUNTIME, "%s: cannot start SHA-256", path);
  }
  unsigned char buf[1 << 16];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, fp)) > 0)
    ds_sha256_update(&h, buf, n);
  int bad = ferror(fp);
  fclose(fp);
  if (bad) {
    ds_sha256_abort(&h);
    return dfpo_err_set(err, DFPO_ERUNTIME, "%s: read error", path);
  }
  ds_sha256_final(&h, hex);
  return DFPO_OK;
}

int ds_listing_add(ds_listing *l, const char *rel, const char hex[65], dfpo_err *err) {
  /* two arrays, one capacity: each grows from the same old one */
  size_t cp = l->cap, ch = l->cap;
  if (dfpo_grow(&l->paths, &cp, l->n + 1, sizeof *l->paths, 256, DFPO_NOCAP, NULL) ||
      dfpo_grow(&l->hex, &ch, l->n + 1, sizeof *l->hex, 256, DFPO_NOCAP, NULL))
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory listing %s", rel);
  l->cap = cp;
  if (!(l->paths[l->n] = ds_strdup(rel)))
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory listing %s", rel);
  memcpy(l->hex[l->n], hex, 65);
  l->n++;
  return DFPO_OK;
}

static const ds_listing *sort_listing;

static int cmp_idx(const void *a, const void *b) {
  size_t i = *(const size_t *)a, j = *(const size_t *)b;
  return strcmp(sort_listing->paths[i], sort_listing->paths[j]);
}

void ds_listing_digest(ds_listing *l, char hex[65]) {
  size_t *idx = malloc((l->n ? l->n : 1) * sizeof *idx);
  ds_sha256 h;
  if (!idx || ds_sha256_init(&h)) {
    free(idx);
    hex[0] = '\0';
    return;
  }
  for (size_t i = 0; i < l->n; i++)
    idx[i] = i;
  /* strcmp compares as unsigned char: the bytewise order of LC_ALL=C sort. */
  sort_listing = l;
  qsort(idx, l->n, sizeof *idx, cmp_idx);
  sort_listing = NULL;
  for (size_t k = 0; k < l->n; k++) {
    size_t i = idx[k];
    ds_sha256_update(&h, l->hex[i], 64);
    ds_sha256_update(&h, "  ", 2);
    ds_sha256_update(&h, l->paths[i], strlen(l->paths[i]));
    ds_sha256_update(&h, "\n", 1);
  }
  free(idx);
  ds_sha256_final(&h, hex);
}

void ds_listing_free(ds_listing *l) {
  for (size_t i = 0; i < l->n; i++)
    free(l->paths[i]);
  free(l->paths);
  free(l->hex);
  memset(l, 0, sizeof *l);
}

typedef struct digest_walk {
  const ds_member *m;
  size_t nm;
  ds_listing *l;
} digest_walk;

/* Adds a matching file (links are not followed) to the listing. */
static int digest_visit(void *ctx, const char *rel, const char *full, const struct stat *st,
                        dfpo_err *err) {
  digest_walk *w = ctx;
  if (!ds_member_match(w->m, w->nm, rel, NULL))
    return DFPO_OK;
  char hex[65];
  int rc;
  if (!(rc = ds_sha256_file(full, hex, err)) && !(rc = ds_listing_add(w->l, rel, hex, err)))
    w->l->bytes += (uint64_t)st->st_size;
  return rc;
}

int ds_content_digest(const char *dir, const ds_member *members, size_t n_members, char hex[65],
                      size_t *files, dfpo_err *err) {
  ds_listing l = {0};
  digest_walk w = {members, n_members, &l};
  int rc = ds_walk_files(dir, 0, digest_visit, &w, err);
  if (rc == DFPO_OK) {
    ds_listing_digest(&l, hex);
    if (files)
      *files = l.n;
  }
  ds_listing_free(&l);
  return rc;
}

typedef struct tree_walk {
  const char *skip;
  ds_file_hash *f;
  size_t n, cap;
} tree_walk;

static int tree_visit(void *ctx, const char *rel, const char *full, const struct stat *st,
                      dfpo_err *err) {
  tree_walk *w = ctx;
  if (w->skip && !strcmp(rel, w->skip))
    return DFPO_OK;
  int rc = dfpo_grow(&w->f, &w->cap, w->n + 1, sizeof *w->f, 16, DFPO_NOCAP, err);
  if (rc)
    return dfpo_err_prefix(err, "listing %s", full);
  ds_file_hash *h = &w->f[w->n];
  if (!(h->path = ds_strdup(rel)))
    return dfpo_err_set(err, DFPO_ERUNTIME, "listing %s: out of memory", full);
  w->n++;
  h->size = (uint64_t)st->st_size;
  return ds_sha256_file(full, h->sha256, err);
}

static int by_path(const void *a, const void *b) {
  return strcmp(((const ds_file_hash *)a)->path, ((const ds_file_hash *)b)->path);
}

int ds_hash_tree(const char *dir, const char *skip, ds_file_hash **files, size_t *n,
                 dfpo_err *err) {
  tree_walk w = {skip, NULL, 0, 0};
  int rc = ds_walk_files(dir, 0, tree_visit, &w, err);
  if (rc) {
    ds_hash_tree_free(w.f, w.n);
    *files = NULL;
    *n = 0;
    return rc;
  }
  /* strcmp compares as unsigned char: the bytewise order of LC_ALL=C sort */
  if (w.n)
    qsort(w.f, w.n, sizeof *w.f, by_path);
  *files = w.f;
  *n = w.n;
  return DFPO_OK;
}

void ds_hash_tree_free(ds_file_hash *files, size_t n) {
  for (size_t i = 0; files && i < n; i++)
    free(files[i].path);
  free(files);
}

int ds_hash_file(const char *path, int git_sha1, ds_got *out, dfpo_err *err) {
  FILE *fp = fopen(path, "rb");
  if (!fp)
    return dfpo_err_errno(err, errno == ENOENT ? DFPO_EDATA : DFPO_ERUNTIME, errno,
                          "%s: cannot open", path);
  struct stat st;
  EVP_MD_CTX *c256 = EVP_MD_CTX_new(), *c1 = git_sha1 ? EVP_MD_CTX_new() : NULL;
  int ok = fstat(fileno(fp), &st) == 0 && c256 && EVP_DigestInit_ex(c256, EVP_sha256(), NULL) == 1;
  if (ok && git_sha1) {
    /* git's object id of a blob: SHA-1 over "blob <size>\0" and the bytes */
    char head[48];
    int k = snprintf(head, sizeof head, "blob %llu", (unsigned long long)st.st_size);
    ok = c1 && EVP_DigestInit_ex(c1, EVP_sha1(), NULL) == 1 &&
         EVP_DigestUpdate(c1, head, (size_t)k + 1) == 1;
  }
  unsigned char buf[1 << 16];
  size_t n;
  while (ok && (n = fread(buf, 1, sizeof buf, fp)) > 0)
    ok = EVP_DigestUpdate(c256, buf, n) == 1 && (!c1 || EVP_DigestUpdate(c1, buf, n) == 1);
  ok = ok && !ferror(fp);
  fclose(fp);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (ok && (ok = EVP_DigestFinal_ex(c256, md, &len) == 1))
    for (unsigned i = 0; i < 32; i++)
      snprintf(out->sha256 + 2 * i, 3, "%02x", md[i]);
  out->git_sha1[0] = '\0';
  if (ok && c1 && (ok = EVP_DigestFinal_ex(c1, md, &len) == 1))
    for (unsigned i = 0; i < 20; i++)
      snprintf(out->git_sha1 + 2 * i, 3, "%02x", md[i]);
  EVP_MD_CTX_free(c256);
  EVP_MD_CTX_free(c1);
  return ok ? DFPO_OK : dfpo_err_set(err, DFPO_ERUNTIME, "%s: cannot read or hash", path);
}
