#include "tests/datasets/testlib.h"
#include "datasets/ds_internal.h"

#include <archive.h>
#include <archive_entry.h>
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TL_MAX_REQ 64
#define TL_MAX_ROUTES 32

struct tl_server {
  int fd, port, max_requests, n_script, stop;
  double deadline;
  const unsigned char *body;
  size_t len;
  tl_kind script[16];
  const tl_route *routes; /* NULL: one body for every path */
  int n_routes;
  int route_hits[TL_MAX_ROUTES];
  char auth[TL_MAX_REQ][128];
  pthread_t thread;
  pthread_mutex_t mu;
  int requests;
  char range[TL_MAX_REQ][64];
  char path[TL_MAX_REQ][256];
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int wait_ms(const tl_server *s) {
  double left = s->deadline - now_s();
  return left <= 0 ? 0 : left > 0.1 ? 100 : (int)(left * 1000) + 1;
}

static void send_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n) {
    ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
    if (w <= 0)
      return;
    c += w;
    n -= (size_t)w;
  }
}

static void header_value(const char *head, const char *name, char *out, size_t n) {
  out[0] = '\0';
  for (const char *l = strstr(head, "\r\n"); l && l[2]; l = strstr(l + 2, "\r\n")) {
    const char *h = l + 2;
    size_t nl = strlen(name);
    if (!strncasecmp(h, name, nl) && h[nl] == ':') {
      h += nl + 1;
      while (*h == ' ')
        h++;
      size_t k = strcspn(h, "\r\n");
      snprintf(out, n, "%.*s", (int)k, h);
      return;
    }
  }
}

/* Reads the request head; returns 0 when the client went away. */
static int read_head(tl_server *s, int c, char *buf, size_t cap) {
  size_t n = 0;
  while (n + 1 < cap && now_s() < s->deadline) {
    struct pollfd p = {c, POLLIN, 0};
    if (poll(&p, 1, wait_ms(s)) <= 0)
      continue;
    ssize_t r = recv(c, buf + n, cap - 1 - n, 0);
    if (r <= 0)
      return 0;
    n += (size_t)r;
    buf[n] = '\0';
    char *eoh = strstr(buf, "\r\n\r\n");
    if (eoh) {
      /* Drain the body (POST), so that closing never resets the connection. */
      char cl[32];
      header_value(buf, "Content-Length", cl, sizeof cl);
      size_t want = (size_t)strtoull(cl, NULL, 10), got = n - (size_t)(eoh + 4 - buf);
      char sink[4096];
      while (got < want && now_s() < s->deadline) {
        struct pollfd q = {c, POLLIN, 0};
        if (poll(&q, 1, wait_ms(s)) <= 0)
          continue;
        ssize_t k = recv(c, sink, sizeof sink, 0);
        if (k <= 0)
          return 0;
        got += (size_t)k;
      }
      return 1;
    }
  }
  return 0;
}

/* Answers one request with body[0..len) as kind k says; location (a
 * format with the port as its one %d) is TL_302's target. */
static void answer(tl_server *s, int c, tl_kind k, const char *range, const unsigned char *body,
                   size_t len, const char *location) {
  char hdr[1024] = "";
  size_t off = 0;
  if (!strncmp(range, "bytes=", 6))
    off = (size_t)strtoull(range + 6, NULL, 10);
  if (off > len)
    off = len;
  switch (k) {
  case TL_302: {
    char loc[512];
    snprintf(loc, sizeof loc, location ? location : "/", s->port);
    snprintf(hdr, sizeof hdr,
             "HTTP/1.1 302 Found\r\nLocation: %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
             loc);
    send_all(c, hdr, strlen(hdr));
    return;
  }
  case TL_404:
  case TL_429:
  case TL_500: {
    const char *msg = k == TL_404   ? "404 Not Found"
                      : k == TL_429 ? "429 Too Many Requests"
                                    : "500 Internal Server Error";
    snprintf(hdr, sizeof hdr, "HTTP/1.1 %s\r\nContent-Length: 5\r\nConnection: close\r\n\r\nnope\n",
             msg);
    send_all(c, hdr, strlen(hdr));
    return;
  }
  case TL_FULL:
  case TL_CUT:
  case TL_STALL:
    if (off) {
      snprintf(hdr, sizeof hdr,
               "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes %zu-%zu/%zu\r\n"
               "Content-Length: %zu\r\nConnection: close\r\n\r\n",
               off, len - 1, len, len - off);
      break;
    }
    /* fall through */
  case TL_IGNORE_RANGE:
  case TL_WRONG:
    off = 0;
    snprintf(hdr, sizeof hdr, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
             len);
    break;
  case TL_OVER_CL:
    snprintf(hdr, sizeof hdr, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
             len + 100);
    break;
  case TL_OVER_NOCL:
    snprintf(hdr, sizeof hdr, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
    break;
  }
  send_all(c, hdr, strlen(hdr));
  if (k == TL_STALL) {
    /* Silence until the client hangs up (its stall timeout) or time ends. */
    char b[256];
    while (now_s() < s->deadline && !s->stop) {
      struct pollfd p = {c, POLLIN, 0};
      if (poll(&p, 1, wait_ms(s)) > 0 && recv(c, b, sizeof b, 0) <= 0)
        break;
    }
    return;
  }
  if (k == TL_CUT) {
    send_all(c, body + off, (len - off) / 2);
    return;
  }
  if (k == TL_WRONG) {
    unsigned char *w = malloc(len);
    for (size_t i = 0; i < len; i++)
      w[i] = body[i] ^ 0x5a;
    send_all(c, w, len);
    free(w);
    return;
  }
  send_all(c, body + off, len - off);
  if (k == TL_OVER_CL || k == TL_OVER_NOCL) {
    char extra[100];
    memset(extra, 'x', sizeof extra);
    send_all(c, extra, sizeof extra);
  }
}

static void *serve(void *arg) {
  tl_server *s = arg;
  while (!s->stop && now_s() < s->deadline) {
    pthread_mutex_lock(&s->mu);
    int done = s->requests >= s->max_requests;
    pthread_mutex_unlock(&s->mu);
    if (done)
      break;
    struct pollfd p = {s->fd, POLLIN, 0};
    if (poll(&p, 1, wait_ms(s)) <= 0)
      continue;
    int c = accept(s->fd, NULL, NULL);
    if (c < 0)
      continue;
    char head[8192], range[64], path[256] = "";
    if (read_head(s, c, head, sizeof head)) {
      char auth[128];
      header_value(head, "Range", range, sizeof range);
      header_value(head, "Authorization", auth, sizeof auth);
      sscanf(head, "%*s %255s", path);
      pthread_mutex_lock(&s->mu);
      int i = s->requests++;
      if (i < TL_MAX_REQ) {
        snprintf(s->range[i], sizeof s->range[i], "%s", range);
        snprintf(s->path[i], sizeof s->path[i], "%s", path);
        snprintf(s->auth[i], sizeof s->auth[i], "%s", auth);
      }
      int r = -1, hit = 0;
      for (int q = 0; s->routes && q < s->n_routes && r < 0; q++)
        if (!strcmp(s->routes[q].path, path)) {
          r = q;
          hit = s->route_hits[q]++;
        }
      pthread_mutex_unlock(&s->mu);
      if (!s->routes) {
        tl_kind k = s->script[i < s->n_script ? i : s->n_script - 1];
        answer(s, c, k, range, s->body, s->len, NULL);
      } else if (r < 0) {
        answer(s, c, TL_404, range, NULL, 0, NULL);
      } else {
        const tl_route *rt = &s->routes[r];
        tl_kind k =
            rt->n_script ? rt->script[hit < rt->n_script ? hit : rt->n_script - 1] : TL_FULL;
        answer(s, c, k, range, rt->body, rt->len, rt->location);
      }
    }
    shutdown(c, SHUT_RDWR);
    close(c);
  }
  close(s->fd);
  s->fd = -1;
  return NULL;
}

tl_server *tl_server_start(const void *body, size_t len, const tl_kind *script, size_t n,
                           int max_requests, double max_seconds) {
  tl_server *s = calloc(1, sizeof *s);
  cr_assert_not_null(s);
  cr_assert(n >= 1 && n <= 16);
  s->body = body;
  s->len = len;
  memcpy(s->script, script, n * sizeof *script);
  s->n_script = (int)n;
  s->max_requests = max_requests;
  s->deadline = now_s() + max_seconds;
  pthread_mutex_init(&s->mu, NULL);
  s->fd = socket(AF_INET, SOCK_STREAM, 0);
  cr_assert(s->fd >= 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  cr_assert_eq(bind(s->fd, (struct sockaddr *)&a, sizeof a), 0, "bind: %s", strerror(errno));
  cr_assert_eq(listen(s->fd, 8), 0);
  socklen_t al = sizeof a;
  getsockname(s->fd, (struct sockaddr *)&a, &al);
  s->port = ntohs(a.sin_port);
  cr_assert_eq(pthread_create(&s->thread, NULL, serve, s), 0);
  return s;
}

tl_server *tl_server_routes(const tl_route *routes, size_t n, int max_requests,
                            double max_seconds) {
  cr_assert(n >= 1 && n <= TL_MAX_ROUTES);
  for (size_t i = 0; i < n; i++)
    cr_assert(routes[i].n_script >= 0 && routes[i].n_script <= 8);
  tl_kind k = TL_FULL;
  tl_server *s = tl_server_start(NULL, 0, &k, 1, max_requests, max_seconds);
  pthread_mutex_lock(&s->mu);
  s->n_routes = (int)n;
  s->routes = routes;
  pthread_mutex_unlock(&s->mu);
  return s;
}

const char *tl_server_auth(tl_server *s, int i) {
  return i >= 0 && i < TL_MAX_REQ ? s->auth[i] : "";
}

int tl_server_port(const tl_server *s) {
  return s->port;
}

int tl_server_requests(tl_server *s) {
  pthread_mutex_lock(&s->mu);
  int n = s->requests;
  pthread_mutex_unlock(&s->mu);
  return n;
}

const char *tl_server_range(tl_server *s, int i) {
  return i >= 0 && i < TL_MAX_REQ ? s->range[i] : "";
}

const char *tl_server_path(tl_server *s, int i) {
  return i >= 0 && i < TL_MAX_REQ ? s->path[i] : "";
}

void tl_server_stop(tl_server *s) {
  s->stop = 1;
  pthread_join(s->thread, NULL);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

void tl_archive(const char *path, int zip, const tl_entry *e, size_t n) {
  struct archive *a = archive_write_new();
  cr_assert_not_null(a);
  if (zip) {
    archive_write_set_format_zip(a);
  } else {
    archive_write_set_format_pax_restricted(a);
    archive_write_add_filter_gzip(a);
  }
  cr_assert_eq(archive_write_open_filename(a, path), ARCHIVE_OK, "%s", archive_error_string(a));
  static char zeros[65536];
  for (size_t i = 0; i < n; i++) {
    struct archive_entry *ae = archive_entry_new();
    archive_entry_set_pathname(ae, e[i].path);
    archive_entry_set_perm(ae, 0644);
    archive_entry_set_mtime(ae, 0, 0);
    uint64_t size = e[i].data ? strlen(e[i].data) : e[i].size;
    switch (e[i].type) {
    case 'd':
      archive_entry_set_filetype(ae, AE_IFDIR);
      archive_entry_set_perm(ae, 0755);
      break;
    case 'l':
      archive_entry_set_filetype(ae, AE_IFLNK);
      archive_entry_set_symlink(ae, e[i].link);
      break;
    case 'h':
      archive_entry_set_filetype(ae, AE_IFREG);
      archive_entry_set_hardlink(ae, e[i].link);
      archive_entry_set_size(ae, 0);
      break;
    case 'c':
      archive_entry_set_filetype(ae, AE_IFCHR);
      archive_entry_set_rdevmajor(ae, 1);
      archive_entry_set_rdevminor(ae, 3);
      break;
    case 'p':
      archive_entry_set_filetype(ae, AE_IFIFO);
      break;
    default:
      archive_entry_set_filetype(ae, AE_IFREG);
      archive_entry_set_size(ae, (la_int64_t)size);
    }
    cr_assert_eq(archive_write_header(a, ae), ARCHIVE_OK, "%s: %s", e[i].path,
                 archive_error_string(a));
    if (e[i].type == 'f') {
      if (e[i].data) {
        archive_write_data(a, e[i].data, size);
      } else {
        for (uint64_t left = size; left;) {
          size_t k = left < sizeof zeros ? (size_t)left : sizeof zeros;
          archive_write_data(a, zeros, k);
          left -= k;
        }
      }
    }
    archive_entry_free(ae);
  }
  cr_assert_eq(archive_write_close(a), ARCHIVE_OK);
  archive_write_free(a);
}

void tl_write(const char *path, const char *data) {
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f, "%s", path);
  fputs(data, f);
  fclose(f);
}

int tl_exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
}

char *tl_read(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  size_t cap = 4096, n = 0;
  char *b = malloc(cap);
  size_t r;
  while ((r = fread(b + n, 1, cap - n - 1, f)) > 0) {
    n += r;
    if (cap - n - 1 == 0)
      b = realloc(b, cap *= 2);
  }
  fclose(f);
  b[n] = '\0';
  if (len)
    *len = n;
  return b;
}

void tl_expect_first_ids(const char *path, const char *const *ids, int n) {
  char *txt = tl_read(path, NULL);
  cr_assert_not_null(txt, "no %s", path);
  const char *line = txt;
  for (int i = 0; i < n; i++) {
    const char *nl = strchr(line, '\n');
    cr_assert_not_null(nl, "%s: fewer than %d lines", path, n);
    char want[256];
    snprintf(want, sizeof want, "{\"id\":\"%s\",", ids[i]);
    cr_expect_eq(strncmp(line, want, strlen(want)), 0, "%s line %d: want id %s, got %.60s", path,
                 i + 1, ids[i], line);
    line = nl + 1;
  }
  free(txt);
}

/* SHA-256 and git blob id of a buffer, through a temporary file. */
static void tl_digests(const void *data, size_t len, char sha[65], char blob[41]) {
  char p[] = "/tmp/dfpo-tl-XXXXXX";
  int fd = mkstemp(p);
  cr_assert(fd >= 0);
  FILE *f = fdopen(fd, "wb");
  fwrite(data, 1, len, f);
  fclose(f);
  ds_got g;
  dfpo_err err;
  cr_assert_eq(ds_hash_file(p, 1, &g, &err), 0, "%s", err.msg);
  unlink(p);
  memcpy(sha, g.sha256, 65);
  memcpy(blob, g.git_sha1, 41);
}

void tl_hub_start(tl_hub *h, const char *owner, const char *name, const char *commit,
                  const tl_hub_file *files, size_t n, const char *cdn_host, int with_api,
                  int max_requests) {
  cr_assert(n <= TL_HUB_MAX_FILES);
  memset(h, 0, sizeof *h);
  cJSON *api = cJSON_CreateObject();
  char id[256];
  snprintf(id, sizeof id, "%s/%s", owner, name);
  cJSON_AddStringToObject(api, "id", id);
  cJSON_AddStringToObject(api, "sha", commit);
  cJSON *sib = cJSON_AddArrayToObject(api, "siblings");
  for (size_t i = 0; i < n; i++) {
    const tl_hub_file *f = &files[i];
    tl_digests(f->data, f->len, h->sha256[i], h->blob[i]);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "rfilename", f->path);
    cJSON_AddNumberToObject(j, "size", (double)f->len);
    tl_route *r = &h->routes[h->n++];
    snprintf(h->paths[i], sizeof h->paths[i], "/%s/%s/resolve/%s/%s", owner, name, commit, f->path);
    r->path = h->paths[i];
    if (f->lfs) {
      /* the blob of an LFS file is its pointer's: any id will do here */
      cJSON_AddStringToObject(j, "blobId", "1111111111111111111111111111111111111111");
      cJSON *l = cJSON_AddObjectToObject(j, "lfs");
      cJSON_AddStringToObject(l, "sha256", h->sha256[i]);
      cJSON_AddNumberToObject(l, "size", (double)f->len);
      cJSON_AddNumberToObject(l, "pointerSize", 134);
      snprintf(h->cdn[i], sizeof h->cdn[i], "/cdn/%s", h->sha256[i]);
      snprintf(h->loc[i], sizeof h->loc[i], "http://%s:%%d%s", cdn_host, h->cdn[i]);
      r->script[0] = TL_302;
      r->n_script = 1;
      r->location = h->loc[i];
      r = &h->routes[h->n++];
      r->path = h->cdn[i];
    } else {
      cJSON_AddStringToObject(j, "blobId", h->blob[i]);
    }
    cJSON_AddItemToArray(sib, j);
    r->body = f->data;
    r->len = f->len;
    memcpy(r->script, f->script, sizeof r->script);
    r->n_script = f->n_script;
  }
  h->api = cJSON_PrintUnformatted(api);
  cJSON_Delete(api);
  if (with_api) {
    snprintf(h->api_main, sizeof h->api_main, "/api/models/%s/%s/revision/main?blobs=true", owner,
             name);
    snprintf(h->api_commit, sizeof h->api_commit, "/api/models/%s/%s/revision/%s?blobs=true", owner,
             name, commit);
    const char *ap[] = {h->api_main, h->api_commit};
    for (int k = 0; k < 2; k++) {
      tl_route *r = &h->routes[h->n++];
      r->path = ap[k];
      r->body = h->api;
      r->len = strlen(h->api);
    }
  }
  h->s = tl_server_routes(h->routes, (size_t)h->n, max_requests, 30.0);
  snprintf(h->endpoint, sizeof h->endpoint, "http://127.0.0.1:%d", tl_server_port(h->s));
  setenv("HF_ENDPOINT", h->endpoint, 1);
}

void tl_hub_serve_folder(tl_hub *h, const char *owner, const char *name, const char *commit,
                         const char *folder, const char *const *names, size_t n, int with_api,
                         int max_requests) {
  cr_assert(n <= TL_HUB_MAX_FILES);
  tl_hub_file hf[TL_HUB_MAX_FILES];
  char *owned[TL_HUB_MAX_FILES];
  memset(hf, 0, sizeof hf);
  for (size_t i = 0; i < n; i++) {
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", folder, names[i]);
    owned[i] = tl_read(p, &hf[i].len);
    cr_assert_not_null(owned[i], "no %s", p);
    size_t l = strlen(names[i]);
    hf[i].path = names[i];
    hf[i].data = owned[i];
    hf[i].lfs = (l > 12 && !strcmp(names[i] + l - 12, ".safetensors")) ||
                (l > 4 && !strcmp(names[i] + l - 4, ".bin"));
  }
  tl_hub_start(h, owner, name, commit, hf, n, "127.0.0.1", with_api, max_requests);
  memcpy(h->owned, owned, n * sizeof *owned);
}

void tl_hub_stop(tl_hub *h) {
  tl_server_stop(h->s);
  free(h->api);
  h->api = NULL;
  for (int i = 0; i < TL_HUB_MAX_FILES; i++) {
    free(h->owned[i]);
    h->owned[i] = NULL;
  }
}

void tl_fetch_opts(struct ds_fetch_opts *o) {
  ds_fetch_opts_init(o);
  o->connect_timeout_s = 2;
  o->stall_timeout_s = 1;
  o->retries = 2;
  o->backoff_ms = 10;
  o->progress = 0;
}
