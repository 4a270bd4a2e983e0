/* The Perspective API client: one POST per uncached text, spaced by the rate
 * limit, retried on transient failures; scores cached by text SHA-256. The
 * key travels only in the request URL and never enters a message. */
#include "metrics/metrics.h"

#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PERSPECTIVE_URL "https://commentanalyzer.googleapis.com/v1alpha1/comments:analyze"

struct met_perspective {
  CURL *curl;
  char *url;      /* without the key: safe to print */
  char *full_url; /* with ?key=: never printed */
  char cache[4096];
  double qps, last;
  int retries;
  long backoff_ms, timeout_s;
  size_t requests, hits;
};

void met_perspective_opts_init(met_perspective_opts *o) {
  memset(o, 0, sizeof *o);
  o->qps = 1;
  o->retries = 5;
  o->backoff_ms = 1000;
  o->timeout_s = 30;
}

double met_rate_wait(double last, double now, double qps) {
  if (last < 0 || !(qps > 0))
    return 0;
  double w = last + 1.0 / qps - now;
  return w > 0 ? w : 0;
}

static void sleep_s(double s) {
  if (s <= 0)
    return;
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) && errno == EINTR && !dfpo_interrupted())
    ;
}

int met_perspective_new(met_perspective **out, const met_perspective_opts *o, dfpo_err *err) {
  *out = NULL;
  met_perspective_opts d;
  if (o)
    d = *o;
  else
    met_perspective_opts_init(&d);
  const char *var = d.key_env ? d.key_env : "PERSPECTIVE_API_KEY";
  const char *key = getenv(var);
  if (!key || !*key)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "Perspective API: no key (set the environment variable %s)", var);
  const char *url = d.url ? d.url : getenv("DFPO_PERSPECTIVE_URL");
  if (!url || !*url)
    url = PERSPECTIVE_URL;
  met_perspective *p = calloc(1, sizeof *p);
  if (!p)
    return dfpo_err_set(err, DFPO_ERUNTIME, "Perspective API: out of memory");
  p->qps = d.qps;
  p->retries = d.retries < 0 ? 0 : d.retries;
  p->backoff_ms = d.backoff_ms;
  p->timeout_s = d.timeout_s > 0 ? d.timeout_s : 30;
  p->last = -1;
  int rc = DFPO_OK;
  if (!(p->curl = curl_easy_init()))
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "Perspective API: cannot start libcurl");
  char *ek = p->curl ? curl_easy_escape(p->curl, key, 0) : NULL;
  if (!rc &&
      (!ek || !(p->url = strdup(url)) || !(p->full_url = malloc(strlen(url) + strlen(ek) + 8))))
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "Perspective API: out of memory");
  if (!rc)
    sprintf(p->full_url, "%s%ckey=%s", url, strchr(url, '?') ? '&' : '?', ek);
  curl_free(ek);
  if (!rc && d.cache_dir && !*d.cache_dir)
    p->cache[0] = '\0';
  else if (!rc && d.cache_dir)
    rc = dfpo_path_fmt(p->cache, sizeof p->cache, err, "%s", d.cache_dir);
  else if (!rc) {
    char c[4000];
    if (!(rc = dfpo_cache_dir(c, sizeof c, err)))
      rc = dfpo_path_fmt(p->cache, sizeof p->cache, err, "%s/perspective", c);
  }
  if (!rc && p->cache[0])
    rc = dfpo_mkdirs(p->cache, err);
  if (rc) {
    met_perspective_free(p);
    return rc;
  }
  *out = p;
  return DFPO_OK;
}

void met_perspective_free(met_perspective *p) {
  if (!p)
    return;
  if (p->curl)
    curl_easy_cleanup(p->curl);
  free(p->url);
  if (p->full_url) {
    memset(p->full_url, 0, strlen(p->full_url));
    free(p->full_url);
  }
  free(p);
}

const char *met_perspective_url(const met_perspective *p) {
  return p->url;
}

void met_perspective_counts(const met_perspective *p, size_t *requests, size_t *cache_hits) {
  if (requests)
    *requests = p->requests;
  if (cache_hits)
    *cache_hits = p->hits;
}

int met_perspective_parse(const char *body, size_t len, double *toxicity, dfpo_err *err) {
  cJSON *o = cJSON_ParseWithLength(body, len);
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(
      cJSON_GetObjectItemCaseSensitive(
          cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "attributeScores"),
                                           "TOXICITY"),
          "summaryScore"),
      "value");
  int rc = DFPO_OK;
  if (!o)
    rc = dfpo_err_set(err, DFPO_EDATA, "Perspective API: the response is not JSON");
  else if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble <= 1))
    rc = dfpo_err_set(err, DFPO_EDATA,
                      "Perspective API: the response lacks "
                      "attributeScores.TOXICITY.summaryScore.value in [0, 1]");
  else
    *toxicity = v->valuedouble;
  cJSON_Delete(o);
  return rc;
}

/* The answer's body, capped far beyond any real answer. */
#define BODY_MAX (1u << 22)

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud) {
  size_t n = size * nmemb;
  return dfpo_buf_add(ud, data, n, NULL) ? 0 : n;
}

static void cache_path(const met_perspective *p, const char *text, char *buf, size_t n) {
  unsigned char md[32];
  unsigned int len = 0;
  EVP_Digest(text, strlen(text), md, &len, EVP_sha256(), NULL);
  char hex[65];
  for (int i = 0; i < 32; i++)
    snprintf(hex + 2 * i, 3, "%02x", md[i]);
  snprintf(buf, n, "%s/%.2s/%s.json", p->cache, hex, hex);
}

int met_perspective_score(met_perspective *p, const char *text, double *toxicity, dfpo_err *err) {
  char cpath[4200] = "";
  if (p->cache[0]) {
    cache_path(p, text, cpath, sizeof cpath);
    char *c;
    size_t clen;
    dfpo_err ignore;
    dfpo_err_clear(&ignore);
    if (!dfpo_read_file(cpath, &c, &clen, &ignore)) {
      int bad = met_perspective_parse(c, clen, toxicity, &ignore);
      free(c);
      if (!bad) {
        p->hits++;
        return DFPO_OK;
      }
      dfpo_warn("Perspective cache entry %s is unreadable; asking the API again", cpath);
    }
  }
  cJSON *req = cJSON_CreateObject();
  cJSON_AddStringToObject(cJSON_AddObjectToObject(req, "comment"), "text", text);
  cJSON *langs = cJSON_AddArrayToObject(req, "languages");
  cJSON_AddItemToArray(langs, cJSON_CreateString("en"));
  cJSON_AddObjectToObject(cJSON_AddObjectToObject(req, "requestedAttributes"), "TOXICITY");
  char *body = cJSON_PrintUnformatted(req);
  cJSON_Delete(req);
  if (!body)
    return dfpo_err_set(err, DFPO_ERUNTIME, "Perspective API: out of memory");
  struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
  hdr = curl_slist_append(hdr, "Expect:");
  int rc = DFPO_ERUNTIME;
  long backoff = p->backoff_ms;
  char why[CURL_ERROR_SIZE + 64] = "";
  for (int attempt = 0; attempt <= p->retries; attempt++) {
    if (attempt) {
      sleep_s((double)backoff / 1000.0);
      backoff *= 2;
    }
    if (dfpo_interrupted()) {
      rc = dfpo_err_set(err, DFPO_EINTR, "Perspective API: interrupted");
      break;
    }
    sleep_s(met_rate_wait(p->last, dfpo_now(), p->qps));
    p->last = dfpo_now();
    p->requests++;
    dfpo_buf b;
    dfpo_buf_init(&b, BODY_MAX);
    char ebuf[CURL_ERROR_SIZE] = "";
    CURL *c = p->curl;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, p->full_url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, p->timeout_s);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    CURLcode cc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (cc != CURLE_OK) {
      /* libcurl's messages name hosts, not the query string with the key */
      snprintf(why, sizeof why, "%s", ebuf[0] ? ebuf : curl_easy_strerror(cc));
      dfpo_buf_free(&b);
      continue;
    }
    if (status == 200) {
      rc = met_perspective_parse(b.data ? b.data : "", b.len, toxicity, err);
      if (!rc && cpath[0]) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s", cpath);
        *strrchr(dir, '/') = '\0';
        char entry[128];
        int n =
            snprintf(entry, sizeof entry,
                     "{\"attributeScores\":{\"TOXICITY\":{\"summaryScore\":{\"value\":%.17g}}}}\n",
                     *toxicity);
        dfpo_err werr;
        dfpo_err_clear(&werr);
        if (dfpo_mkdirs(dir, &werr) || dfpo_atomic_write_file(cpath, entry, (size_t)n, &werr))
          dfpo_warn("Perspective cache: %s", werr.msg);
      }
      dfpo_buf_free(&b);
      break;
    }
    dfpo_buf_free(&b);
    snprintf(why, sizeof why, "HTTP %ld", status);
    if (status != 429 && status < 500) {
      rc = dfpo_err_set(err, DFPO_EDATA, "Perspective API %s: %s (not retried)", p->url, why);
      break;
    }
    dfpo_warn("Perspective API %s: %s (attempt %d of %d)", p->url, why, attempt + 1,
              p->retries + 1);
  }
  if (rc == DFPO_ERUNTIME)
    dfpo_err_set(err, DFPO_ERUNTIME, "Perspective API %s: %s after %d attempts", p->url, why,
                 p->retries + 1);
  curl_slist_free_all(hdr);
  free(body);
  return rc;
}
