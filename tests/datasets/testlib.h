/* Helpers for the datasets tests: a loopback HTTP server with scripted
 * misbehaviour, and archives built with libarchive's writer. Prefix: tl_. */
#ifndef DFPO_TESTS_DATASETS_TESTLIB_H
#define DFPO_TESTS_DATASETS_TESTLIB_H

#include <stddef.h>
#include <stdint.h>

/* What the server does with one request. */
typedef enum {
  TL_FULL,         /* 200, or 206 from the requested Range */
  TL_CUT,          /* announces the whole rest, sends half of it, closes */
  TL_404,          /* Not Found */
  TL_500,          /* Internal Server Error */
  TL_WRONG,        /* 200 with the right length and wrong bytes */
  TL_OVER_CL,      /* 200 announcing and sending 100 bytes too many */
  TL_OVER_NOCL,    /* 200 without a length, 100 bytes too many, then close */
  TL_STALL,        /* headers, then silence until the client gives up */
  TL_IGNORE_RANGE, /* 200 with everything, whatever the Range */
  TL_429,          /* Too Many Requests (the Perspective client tests) */
  TL_302           /* Found: a redirect to the route's location */
} tl_kind;

typedef struct tl_server tl_server;

/* Starts a server on 127.0.0.1 (an ephemeral port) in a thread. A request's
 * body (by its Content-Length) is read before the answer. Request i
 * gets script[i] (the last entry repeats). It stops by itself after
 * max_requests requests or max_seconds seconds, whichever comes first. */
tl_server *tl_server_start(const void *body, size_t len, const tl_kind *script, size_t n,
                           int max_requests, double max_seconds);
/* A server whose answer depends on the request target (path and query, as
 * sent): the route with that path answers with its body, request k of the
 * route getting script[k] (the last repeats; TL_FULL when n_script is 0);
 * any other path gets 404. The routes must outlive the server. A TL_302's
 * location is a format whose one %d becomes the server's port. */
typedef struct tl_route {
  const char *path;
  const void *body;
  size_t len;
  tl_kind script[8];
  int n_script;
  const char *location;
} tl_route;
tl_server *tl_server_routes(const tl_route *routes, size_t n, int max_requests, double max_seconds);
int tl_server_port(const tl_server *s);
/* Number of requests answered so far; the Range header value of request i
 * ("" when none) and its path. */
int tl_server_requests(tl_server *s);
const char *tl_server_range(tl_server *s, int i);
const char *tl_server_path(tl_server *s, int i);
/* The Authorization header of request i ("" when none). */
const char *tl_server_auth(tl_server *s, int i);
/* Waits for the thread to end (it ends early when asked) and frees. */
void tl_server_stop(tl_server *s);

/* A model repository served as the Hugging Face hub serves one: the API's
 * JSON (GET /api/models/OWNER/NAME/revision/{main,COMMIT}?blobs=true: sha
 * and siblings with size, blobId and, for LFS files, lfs.sha256 and size)
 * and the files at /OWNER/NAME/resolve/COMMIT/PATH; an LFS file's URL
 * answers 302 to http://CDN_HOST:PORT/cdn/<sha256>, which serves it. */
#define TL_HUB_MAX_FILES 12
typedef struct tl_hub_file {
  const char *path;
  const void *data;
  size_t len;
  int lfs;
  tl_kind script[8]; /* the route that serves the bytes (an LFS file's: the CDN's) */
  int n_script;
} tl_hub_file;
typedef struct tl_hub {
  tl_route routes[32];
  int n;
  char api_main[256], api_commit[256];
  char paths[TL_HUB_MAX_FILES][320], cdn[TL_HUB_MAX_FILES][128], loc[TL_HUB_MAX_FILES][300];
  char *api;
  char sha256[TL_HUB_MAX_FILES][65], blob[TL_HUB_MAX_FILES][41]; /* of files[i] */
  char endpoint[64];
  char *owned[TL_HUB_MAX_FILES]; /* tl_hub_serve_folder's file contents */
  tl_server *s;
} tl_hub;
/* Starts the server (without the API routes when with_api is 0) and points
 * HF_ENDPOINT at it; the files must outlive it. */
void tl_hub_start(tl_hub *h, const char *owner, const char *name, const char *commit,
                  const tl_hub_file *files, size_t n, const char *cdn_host, int with_api,
                  int max_requests);
/* tl_hub_start over the files names[0..n) of a folder (read into memory,
 * owned by h); those ending in .safetensors or .bin are LFS files; with_api
 * as for tl_hub_start. */
void tl_hub_serve_folder(tl_hub *h, const char *owner, const char *name, const char *commit,
                         const char *folder, const char *const *names, size_t n, int with_api,
                         int max_requests);
void tl_hub_stop(tl_hub *h);

/* Download settings for tests against the loopback server: 2 s to connect,
 * 1 s of silence is a stall, 2 retries 10 ms apart, no progress bar. */
struct ds_fetch_opts;
void tl_fetch_opts(struct ds_fetch_opts *o);

/* An archive entry: type 'f' file (data, or size zero bytes when data is
 * NULL), 'd' folder, 'l' symbolic link, 'h' hard link (link: the target), 'c'
 * character device, 'p' FIFO. */
typedef struct tl_entry {
  const char *path;
  char type;
  const char *data;
  const char *link;
  uint64_t size;
} tl_entry;

/* Writes a .tar.gz (zip = 0) or .zip (zip = 1) archive. */
void tl_archive(const char *path, int zip, const tl_entry *e, size_t n);
/* Writes a file. */
void tl_write(const char *path, const char *data);
/* 1 when the path exists (without following a final link). */
int tl_exists(const char *path);
/* Reads a whole file (heap, NUL-terminated; NULL when absent). */
char *tl_read(const char *path, size_t *len);

/* Checks that the first n records of a JSONL file have the given ids. */
void tl_expect_first_ids(const char *path, const char *const *ids, int n);

#endif
