/* Internal to datasets/: helpers shared by the module's files. */
#ifndef DFPO_DATASETS_INTERNAL_H
#define DFPO_DATASETS_INTERNAL_H

#include "datasets/datasets.h"

#include <sys/stat.h>

#define DS_PATH_MAX DS_PATH_MAX_PUBLIC

/* snprintf that truncates silently: for messages only (paths go through
 * dfpo_path_fmt, which refuses instead). */
void ds_sfmt(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* strdup that returns NULL on NULL or out of memory. */
char *ds_strdup(const char *s);
/* 1 when rel (a relative path) matches one of the members (fnmatch with
 * FNM_PATHNAME); all paths match when n is 0. *which (optional) receives the
 * member index. */
int ds_member_match(const ds_member *m, size_t n, const char *rel, size_t *which);
/* rm -rf that never follows links; missing path is fine. */
int ds_rmtree(const char *path, dfpo_err *err);
/* Joins a and b with '/' into buf; fails when it does not fit. */
int ds_join(char *buf, size_t n, const char *a, const char *b, dfpo_err *err);
/* Calls visit(ctx, rel, full, st) for every regular file below root, in
 * readdir order, recursing into folders; rel is the path below root, full
 * the joined path, st its stat. Links to folders are never followed; a link
 * to a regular file is visited (with the target's stat) only when
 * file_links is 1. The first non-zero result of visit stops the walk and is
 * returned. */
typedef int (*ds_walk_fn)(void *ctx, const char *rel, const char *full, const struct stat *st,
                          dfpo_err *err);
int ds_walk_files(const char *root, int file_links, ds_walk_fn visit, void *ctx, dfpo_err *err);
/* Takes the lock of e's cache folder (datasets/<name>/<version>, made
 * first): one process fetches, imports or prepares a dataset at a time. */
int ds_dataset_lock(const ds_entry *e, dfpo_lock *l, dfpo_err *err);
/* 1 when s is 64 lowercase hex characters. */
int ds_is_hex64(const char *s);
/* The current UTC time as ISO 8601 ("2026-11-22T19:30:00Z"). */
void ds_utc_now(char buf[32]);

/* A list of (relative path, SHA-256) pairs, the input of a content digest. */
typedef struct ds_listing {
  char **paths; /* owned */
  char (*hex)[65];
  size_t n, cap;
  uint64_t bytes;
} ds_listing;
int ds_listing_add(ds_listing *l, const char *rel, const char hex[65], dfpo_err *err);
/* Sorts bytewise by path and hashes "<hex>  <path>\n" lines. */
void ds_listing_digest(ds_listing *l, char hex[65]);
void ds_listing_free(ds_listing *l);
/* Incremental SHA-256 (OpenSSL EVP underneath). */
typedef struct ds_sha256 {
  void *ctx;
} ds_sha256;
int ds_sha256_init(ds_sha256 *h);
void ds_sha256_update(ds_sha256 *h, const void *data, size_t len);
void ds_sha256_final(ds_sha256 *h, char hex[65]); /* also frees */
void ds_sha256_abort(ds_sha256 *h);

/* What a download must be: its exact size (a body over it is refused as it
 * comes), and the SHA-256 and git blob SHA-1 it must have (NULL: not
 * checked). by names who says so in messages ("the manifest", "the hub",
 * "the lock"). */
typedef struct ds_want {
  uint64_t size;
  const char *sha256;
  const char *git_sha1;
  const char *by;
} ds_want;
/* What a file hashes to: SHA-256 and, when asked, git's blob id (SHA-1 of
 * "blob <size>\0" followed by the bytes; "" when not asked). */
typedef struct ds_got {
  char sha256[65];
  char git_sha1[41];
} ds_got;
/* Hashes path in one pass: SHA-256 always, the git blob SHA-1 when
 * git_sha1 is nonzero (libcrypto's EVP digests). */
int ds_hash_file(const char *path, int git_sha1, ds_got *out, dfpo_err *err);
/* ds_download with a ds_want: the file is renamed from .part to dest only
 * when it has want->size bytes and the wanted digests; got (optional)
 * receives its digests. */
int ds_download_checked(const char *const *urls, size_t n_urls, const char *dest,
                        const ds_want *want, ds_got *got, const ds_fetch_opts *o, char *used,
                        size_t n_used, dfpo_err *err);
/* GET url into memory (a NUL-terminated heap string the caller frees, at most
 * cap bytes; more is refused with DFPO_EDATA), with ds_download's retries,
 * backoff, timeouts and TLS rules. *status (optional) receives the last HTTP
 * status; failures are DFPO_ERUNTIME with a message naming the URL and the
 * status ("HTTP 404"). */
int ds_http_get(const char *url, size_t cap, const ds_fetch_opts *o, char **body, size_t *len,
                long *status, dfpo_err *err);

/* ds_extract, also recording (path, SHA-256) of every file written into l. */
int ds_extract_list(const char *archive, const char *dest, const ds_member *members,
                    size_t n_members, uint64_t max_entries, uint64_t max_bytes, ds_listing *l,
                    dfpo_err *err);
/* Creates the folders of rel (a relative file path) under root, refusing to
 * pass through anything that is not a real folder. */
int ds_make_parents(const char *root, const char *rel, dfpo_err *err);

/* ds_import, trusting a SHA-256 the caller already computed for path (a
 * fresh verified download) instead of reading it again; source (NULL: path)
 * is what the stamp records as the origin. */
int ds_import_trusted(const ds_entry *e, const char *path, int allow_unverified,
                      const char *known_sha256, const char *source, ds_stamp *out, dfpo_err *err);

/* Writes JSONL records atomically: one cJSON_PrintUnformatted line each. */
typedef struct ds_writer {
  dfpo_atomic a;
  size_t records, references;
  int open;
} ds_writer;
int ds_writer_open(ds_writer *w, const char *path, dfpo_err *err);
/* Takes ownership of obj (deleted). references counts toward the total. */
int ds_writer_put(ds_writer *w, cJSON *obj, size_t references, dfpo_err *err);
/* The same, leaving obj to the caller. */
int ds_writer_put_copy(ds_writer *w, const cJSON *obj, size_t references, dfpo_err *err);
int ds_writer_commit(ds_writer *w, dfpo_err *err);
void ds_writer_abort(ds_writer *w);

/* Importers: read <raw> and write the split files into <splits>, filling
 * out->splits. */
int ds_prepare_imdb(const char *raw, const char *splits, uint64_t seed, ds_prepared *out,
                    dfpo_err *err);
int ds_prepare_rtp(const char *raw, const char *splits, uint64_t seed, ds_prepared *out,
                   dfpo_err *err);
int ds_prepare_commongen(const char *raw, const char *splits, ds_prepared *out, dfpo_err *err);

/* Record converters, exposed for the fuzz targets. Each takes a parsed
 * source line and the record's id and returns a new split record (caller
 * deletes) or fails with
 * DFPO_EDATA naming where/lineno and the field. */
int ds_rtp_record(const cJSON *src, const char *id, const char *where, size_t lineno, cJSON **rec,
                  dfpo_err *err);
int ds_commongen_record(const cJSON *src, const char *id, const char *where, size_t lineno,
                        int need_scenes, cJSON **rec, size_t *scenes, dfpo_err *err);
/* IMDB text clean-up (<br /> to newline) in place; returns the new length. */
size_t ds_imdb_clean(char *text, size_t len);
/* The byte length of the prompt: the text up to the end of its
 * floor(n/2)-th whitespace-separated word (at least one word). */
size_t ds_imdb_prompt_len(const char *text, size_t len);

#endif
