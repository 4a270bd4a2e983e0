#include "datasets/ds_internal.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static long env_long(const char *name, long def, long lo) {
  const char *v = getenv(name);
  if (!v || !v[0])
    return def;
  char *end;
  long x = strtol(v, &end, 10);
  if (*end || x < lo) {
    dfpo_warn("ignoring %s=%s (not an integer >= %ld)", name, v, lo);
    return def;
  }
  return x;
}

void ds_fetch_opts_init(ds_fetch_opts *o) {
  memset(o, 0, sizeof *o);
  o->connect_timeout_s = env_long("DFPO_FETCH_CONNECT_TIMEOUT", 30, 1);
  o->stall_timeout_s = env_long("DFPO_FETCH_STALL_TIMEOUT", 60, 1);
  o->low_speed_bytes = 1;
  o->retries = (int)env_long("DFPO_FETCH_RETRIES", 4, 0);
  o->backoff_ms = env_long("DFPO_FETCH_BACKOFF_MS", 1000, 0);
  o->backoff_max_ms = 60000;
  o->progress = 1;
}

/* One attempt's state, shared with the curl callbacks. The body goes to a
 * file (fp: a .part, resumable) or to memory (mem). */
typedef struct xfer {
  FILE *fp;
  dfpo_buf *mem;
  uint64_t have;  /* bytes in .part before this attempt */
  uint64_t got;   /* bytes written by this attempt */
  uint64_t size;  /* the expected size (a file) or the cap (memory) */
  const char *by; /* who states size: "the manifest", "the hub", ... */
  int started, over, restarted, werr;
  CURL *curl;
  dfpo_progress *prog;
} xfer;

static size_t on_write(char *data, size_t one, size_t n, void *user) {
  xfer *x = user;
  (void)one;
  if (!x->started) {
    x->started = 1;
    long code = 0;
    curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &code);
    if (x->have && code == 200) {
      /* The server ignored the Range request and sends everything again. */
      if (ftruncate(fileno(x->fp), 0) != 0 || fseek(x->fp, 0, SEEK_SET) != 0) {
        x->werr = errno;
        return 0;
      }
      x->have = 0;
      x->restarted = 1;
    }
    curl_off_t cl = -1;
    curl_easy_getinfo(x->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
    if (cl >= 0 && x->have + (uint64_t)cl > x->size) {
      x->over = 1;
      return 0;
    }
  }
  if (x->have + x->got + n > x->size) {
    x->over = 1;
    return 0;
  }
  if (x->mem ? dfpo_buf_add(x->mem, data, n, NULL) != DFPO_OK : fwrite(data, 1, n, x->fp) != n) {
    x->werr = x->mem ? ENOMEM : errno ? errno : EIO;
    return 0;
  }
  x->got += n;
  return n;
}

static int on_progress(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow) {
  xfer *x = user;
  (void)dltotal;
  (void)ultotal;
  (void)ulnow;
  if (x->prog)
    dfpo_progress_update(x->prog, x->have + (uint64_t)dlnow);
  return 0;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static uint64_t file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

enum { TRY_OK, TRY_TRANSIENT, TRY_NEXT, TRY_FATAL };

/* A handle with the options every request shares: protocols, redirects
 * (http(s) only), TLS verification, timeouts, and the bearer token as an
 * Authorization header, which libcurl does not carry over a redirect to
 * another host or port (a CDN). *hdr receives the header list to free. */
static CURL *easy_open(const char *url, const ds_fetch_opts *o, char *errbuf, xfer *x,
                       struct curl_slist **hdr) {
  CURL *c = curl_easy_init();
  *hdr = NULL;
  if (!c)
    return NULL;
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https,file");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L); /* always: never turned off */
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, o->connect_timeout_s);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, o->low_speed_bytes);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, o->stall_timeout_s);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "dfpo (https://github.com/; dataset fetcher)");
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, x);
  if (o->bearer && o->bearer[0]) {
    size_t len = strlen(o->bearer) + 32;
    char *h = malloc(len);
    if (h) {
      snprintf(h, len, "Authorization: Bearer %s", o->bearer);
      *hdr = curl_slist_append(NULL, h);
      memset(h, 0, len); /* the token lives on only in libcurl's list */
      free(h);
    }
    if (!*hdr) {
      curl_easy_cleanup(c);
      return NULL;
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, *hdr);
  }
  return c;
}

/* What a finished transfer means: TRY_OK, a transient failure (retried on
 * the same source), or one that moves on to the next source. part (NULL for
 * memory) is started over where the server cannot resume it. */
static int classify(CURLcode r, long code, const char *url, const char *part, uint64_t have,
                    const char *errbuf, char *why, size_t nwhy) {
  const char *msg = errbuf[0] ? errbuf : curl_easy_strerror(r);
  switch (r) {
  case CURLE_OK:
    return TRY_OK;
  case CURLE_HTTP_RETURNED_ERROR:
    ds_sfmt(why, nwhy, "%s: HTTP %ld", url, code);
    if (code == 416 && have) {
      /* The server cannot serve the rest of our .part: start it over. */
      if (truncate(part, 0) != 0)
        dfpo_debug("%s: cannot truncate: %s", part, strerror(errno));
      return TRY_TRANSIENT;
    }
    return code >= 500 || code == 429 || code == 408 ? TRY_TRANSIENT : TRY_NEXT;
  case CURLE_COULDNT_CONNECT:
  case CURLE_OPERATION_TIMEDOUT:
  case CURLE_PARTIAL_FILE:
  case CURLE_RECV_ERROR:
  case CURLE_SEND_ERROR:
  case CURLE_GOT_NOTHING:
  case CURLE_COULDNT_RESOLVE_PROXY:
  case CURLE_HTTP2:
  case CURLE_HTTP2_STREAM:
    ds_sfmt(why, nwhy, "%s: %s", url, r == CURLE_OPERATION_TIMEDOUT ? "timed out" : msg);
    if (r == CURLE_OPERATION_TIMEDOUT && errbuf[0])
      ds_sfmt(why, nwhy, "%s: timed out (%s)", url, errbuf);
    return TRY_TRANSIENT;
  case CURLE_RANGE_ERROR:
  case CURLE_BAD_DOWNLOAD_RESUME:
    if (part && truncate(part, 0) != 0)
      dfpo_debug("%s: cannot truncate: %s", part, strerror(errno));
    ds_sfmt(why, nwhy, "%s: cannot resume (%s); starting again", url, msg);
    return TRY_TRANSIENT;
  default:
    ds_sfmt(why, nwhy, "%s: %s", url, msg);
    return TRY_NEXT;
  }
}

/* One attempt at url, appending to part. Fills why on failure. *resumed is
 * set when bytes already in part (a leftover, or an earlier attempt's) are
 * kept: a hash mismatch may then be theirs, not this server's. */
static int attempt(const char *url, const char *part, uint64_t size, const char *by,
                   const ds_fetch_opts *o, char *why, size_t nwhy, int *wrong, int *resumed) {
  uint64_t have = file_size(part);
  if (have > size) {
    if (truncate(part, 0) != 0) {
      ds_sfmt(why, nwhy, "%s: cannot truncate: %s", part, strerror(errno));
      return TRY_FATAL;
    }
    have = 0;
  }
  if (have == size) {
    *resumed = 1;
    return TRY_OK; /* complete already (e.g. killed before the rename) */
  }
  FILE *fp = fopen(part, "ab");
  if (!fp) {
    ds_sfmt(why, nwhy, "%s: cannot open: %s", part, strerror(errno));
    return TRY_FATAL;
  }
  dfpo_progress prog;
  xfer x = {fp, NULL, have, 0, size, by, 0, 0, 0, 0, NULL, NULL};
  char errbuf[CURL_ERROR_SIZE] = "";
  struct curl_slist *hdr;
  CURL *c = easy_open(url, o, errbuf, &x, &hdr);
  if (!c) {
    fclose(fp);
    ds_sfmt(why, nwhy, "cannot start libcurl");
    return TRY_FATAL;
  }
  x.curl = c;
  if (o->progress) {
    char label[64];
    const char *base = strrchr(part, '/') ? strrchr(part, '/') + 1 : part;
    snprintf(label, sizeof label, "%.*s", (int)(strlen(base) - 5 < 40 ? strlen(base) - 5 : 40),
             base);
    dfpo_progress_start(&prog, label, size, 1);
    dfpo_progress_update(&prog, have);
    x.prog = &prog;
  }
  if (have)
    curl_easy_setopt(c, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)have);
  CURLcode r = curl_easy_perform(c);
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_cleanup(c);
  curl_slist_free_all(hdr);
  int ferr = fclose(fp) != 0;
  if (o->progress)
    dfpo_progress_finish(&prog);
  if (have && !x.restarted && x.got)
    dfpo_info("resumed %s at byte %llu", url, (unsigned long long)have);
  if (have && !x.restarted)
    *resumed = 1;
  if (x.over) {
    unlink(part);
    ds_sfmt(why, nwhy, "%s: the body is larger than %s's %llu bytes; refused", url, by,
            (unsigned long long)size);
    *wrong = 1;
    return TRY_NEXT;
  }
  if (x.werr || ferr) {
    ds_sfmt(why, nwhy, "%s: write failed: %s", part, strerror(x.werr ? x.werr : EIO));
    return TRY_FATAL;
  }
  int res = classify(r, code, url, part, have, errbuf, why, nwhy);
  if (res != TRY_OK)
    return res;
  uint64_t now = file_size(part);
  if (now < size) {
    ds_sfmt(why, nwhy, "%s: the body ended after %llu of %llu bytes", url, (unsigned long long)now,
            (unsigned long long)size);
    return TRY_TRANSIENT;
  }
  return TRY_OK;
}

/* Waits before retry a (1-based) with the doubling backoff, saying why. */
static void backoff(const ds_fetch_opts *o, int a, const char *why) {
  long ms = o->backoff_ms;
  for (int k = 1; k < a && ms < o->backoff_max_ms; k++)
    ms *= 2;
  if (ms > o->backoff_max_ms)
    ms = o->backoff_max_ms;
  dfpo_warn("%s; retrying in %.1f s (attempt %d of %d)", why, (double)ms / 1000.0, a + 1,
            o->retries + 1);
  sleep_ms(ms);
}

int ds_http_get(const char *url, size_t cap, const ds_fetch_opts *o, char **body, size_t *len,
                long *status, dfpo_err *err) {
  char why[512] = "";
  long code = 0;
  int res = TRY_NEXT, over = 0;
  dfpo_buf b;
  dfpo_buf_init(&b, cap);
  *body = NULL;
  for (int a = 0; a <= o->retries; a++) {
    if (a)
      backoff(o, a, why);
    dfpo_buf_reset(&b);
    xfer x = {NULL, &b, 0, 0, cap, NULL, 0, 0, 0, 0, NULL, NULL};
    char errbuf[CURL_ERROR_SIZE] = "";
    struct curl_slist *hdr;
    CURL *c = easy_open(url, o, errbuf, &x, &hdr);
    if (!c) {
      dfpo_buf_free(&b);
      return dfpo_err_set(err, DFPO_ERUNTIME, "cannot start libcurl");
    }
    x.curl = c;
    dfpo_debug("requesting %s", url);
    CURLcode r = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    curl_slist_free_all(hdr);
    if ((over = x.over) != 0 || x.werr)
      break;
    if ((res = classify(r, code, url, NULL, 0, errbuf, why, sizeof why)) != TRY_TRANSIENT)
      break;
  }
  if (status)
    *status = code;
  if (over || res != TRY_OK) {
    dfpo_buf_free(&b);
    if (over)
      return dfpo_err_set(err, DFPO_EDATA, "%s: the answer is larger than %zu bytes; refused", url,
                          cap);
    return dfpo_err_set(err, DFPO_ERUNTIME, "%s", why[0] ? why : "out of memory");
  }
  *body = dfpo_buf_detach(&b, len);
  return *body ? DFPO_OK : dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
}

int ds_download_checked(const char *const *urls, size_t n_urls, const char *dest,
                        const ds_want *want, ds_got *got, const ds_fetch_opts *o, char *used,
                        size_t n_used, dfpo_err *err) {
  char part[DS_PATH_MAX];
  int w = snprintf(part, sizeof part, "%s.part", dest);
  if (w < 0 || (size_t)w >= sizeof part)
    return dfpo_err_set(err, DFPO_ERUNTIME, "path too long: %s", dest);
  const char *by = want->by ? want->by : "the manifest";
  char log[DFPO_ERR_MSG_MAX] = "";
  size_t ll = 0;
  int any_wrong = 0;
  for (size_t i = 0; i < n_urls; i++) {
    char why[512] = "";
    int wrong = 0, res = TRY_NEXT, resumed = 0, fresh = 0;
  again:
    for (int a = 0; a <= o->retries; a++) {
      if (a)
        backoff(o, a, why);
      dfpo_info("downloading %s", urls[i]);
      res = attempt(urls[i], part, want->size, by, o, why, sizeof why, &wrong, &resumed);
      if (res != TRY_TRANSIENT)
        break;
    }
    if (res == TRY_FATAL)
      return dfpo_err_set(err, DFPO_ERUNTIME, "%s", why);
    if (res == TRY_OK) {
      ds_got g;
      int rc = ds_hash_file(part, want->git_sha1 != NULL, &g, err);
      if (rc)
        return rc;
      const char *bad = NULL, *is = NULL, *says = NULL;
      if (want->sha256 && strcmp(g.sha256, want->sha256))
        bad = "SHA-256", is = g.sha256, says = want->sha256;
      else if (want->git_sha1 && strcmp(g.git_sha1, want->git_sha1))
        bad = "git blob SHA-1", is = g.git_sha1, says = want->git_sha1;
      if (!bad) {
        if (rename(part, dest) != 0)
          return dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot rename to %s", part, dest);
        if (used)
          snprintf(used, n_used, "%s", urls[i]);
        if (got)
          *got = g;
        return DFPO_OK;
      }
      unlink(part);
      if (resumed && !fresh) {
        /* the bytes kept from before may be the bad ones (a leftover .part
         * from another file or a damaged disk): once from byte 0 before
         * this source is blamed */
        dfpo_warn("%s: wrong bytes after resuming a partial download (%s %s); starting again "
                  "from byte 0",
                  urls[i], bad, is);
        fresh = 1;
        resumed = 0;
        goto again;
      }
      wrong = 1;
      ds_sfmt(why, sizeof why, "%s: wrong bytes (%s %s, %s says %s); deleted", urls[i], bad, is, by,
              says);
    }
    any_wrong |= wrong;
    if (i + 1 < n_urls)
      dfpo_warn("%s; trying the next source", why);
    int k = snprintf(log + ll, sizeof log - ll, "%s%s", ll ? "; " : "", why);
    if (k > 0)
      ll = ll + (size_t)k < sizeof log ? ll + (size_t)k : sizeof log - 1;
  }
  /* an attempt that got nothing leaves an empty .part behind: nothing to
   * resume, so nothing to keep */
  if (file_size(part) == 0)
    unlink(part);
  if (!n_urls)
    return dfpo_err_set(err, DFPO_EUSAGE, "%s: no source to download from", dest);
  return dfpo_err_set(err, any_wrong ? DFPO_EDATA : DFPO_ERUNTIME,
                      "download failed from every "
                      "source: %s",
                      log);
}

int ds_download(const char *const *urls, size_t n_urls, const char *dest, uint64_t size,
                const char *sha256, const ds_fetch_opts *o, char *used, size_t n_used,
                dfpo_err *err) {
  ds_want want = {size, sha256, NULL, "the manifest"};
  return ds_download_checked(urls, n_urls, dest, &want, NULL, o, used, n_used, err);
}

static int fetch_locked(const ds_entry *e, const ds_fetch_opts *o, ds_stamp *out, dfpo_err *err) {
  char dir[DS_PATH_MAX], dest[DS_PATH_MAX];
  int rc;
  if (!e->pinned)
    return dfpo_err_set(err, DFPO_EDATA,
                        "%s is not pinned: the manifest knows no verified revision and SHA-256 "
                        "of its %s, so it is not fetched; %s",
                        e->name, e->file, e->note);
  if ((rc = ds_dataset_dir(e->name, e->version, dir, sizeof dir, err)) ||
      (rc = dfpo_mkdirs(dir, err)) || (rc = ds_join(dest, sizeof dest, dir, e->file, err)))
    return rc;
  size_t n = o->n_mirrors + e->n_urls;
  char **urls = calloc(n, sizeof *urls);
  if (!urls)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  size_t k = 0;
  for (size_t i = 0; i < o->n_mirrors; i++) {
    const char *m = o->mirrors[i];
    size_t ml = strlen(m);
    while (ml && m[ml - 1] == '/')
      ml--;
    size_t len = ml + strlen(e->file) + 2;
    if (!(urls[k] = malloc(len)))
      break;
    snprintf(urls[k++], len, "%.*s/%s", (int)ml, m, e->file);
  }
  for (size_t i = 0; i < e->n_urls; i++)
    urls[k++] = ds_strdup(e->urls[i]);
  for (size_t i = 0; i < n; i++)
    if (!urls[i])
      rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  char used[2048] = "";
  if (!rc)
    rc = ds_download((const char *const *)urls, n, dest, e->size, e->sha256, o, used, sizeof used,
                     err);
  for (size_t i = 0; i < n; i++)
    free(urls[i]);
  free(urls);
  if (rc)
    return dfpo_err_prefix(err, "fetching %s %s", e->name, e->version);
  dfpo_info("%s: %llu bytes, SHA-256 verified, from %s", e->file, (unsigned long long)e->size,
            used);
  ds_stamp s;
  rc = ds_import_trusted(e, dest, 0, e->sha256, used, &s, err);
  if (rc == DFPO_OK) {
    unlink(dest);
    if (out)
      *out = s;
  }
  return rc;
}

int ds_fetch(const ds_entry *e, const ds_fetch_opts *o, ds_stamp *out, dfpo_err *err) {
  dfpo_lock l = {0};
  int rc = e->pinned ? ds_dataset_lock(e, &l, err) : DFPO_OK;
  if (!rc)
    rc = fetch_locked(e, o, out, err);
  dfpo_lock_release(&l);
  return rc;
}
