#include "common/common.h"

#include <stdlib.h>
#include <string.h>

/* The byte length of the well-formed UTF-8 sequence at p (before e), or 0
 * when p does not start one. */
static size_t utf8_seq(const unsigned char *p, const unsigned char *e) {
  unsigned c = *p;
  size_t need = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : 9;
  int ok = need != 9 && (size_t)(e - p) > need;
  unsigned cp = need == 0 ? c : need == 1 ? c & 0x1f : need == 2 ? c & 0x0f : c & 0x07;
  for (size_t k = 1; ok && k <= need; k++) {
    ok = (p[k] & 0xc0) == 0x80;
    cp = (cp << 6) | (p[k] & 0x3f);
  }
  /* no overlong forms, no surrogates, nothing past U+10FFFF */
  if (ok && ((need == 1 && cp < 0x80) || (need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) ||
             (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff))
    ok = 0;
  return ok ? need + 1 : 0;
}

size_t dfpo_utf8_check(const char *s, size_t len) {
  const unsigned char *p = (const unsigned char *)s, *e = p + len;
  size_t k;
  while (p < e && (k = utf8_seq(p, e)) != 0)
    p += k;
  return (size_t)(p - (const unsigned char *)s);
}

long dfpo_json_nul_escape(const char *text, size_t len) {
  int in_str = 0;
  for (size_t i = 0; i < len; i++) {
    if (text[i] == '"') {
      in_str = !in_str;
    } else if (in_str && text[i] == '\\' && i + 1 < len) {
      if (text[i + 1] == 'u' && i + 6 <= len && memcmp(text + i + 2, "0000", 4) == 0)
        return (long)i;
      i++; /* the escaped character, which may be a quote */
    }
  }
  return -1;
}

char *dfpo_utf8_fix(const char *s, size_t len) {
  char *out = malloc(len * 3 + 1);
  if (!out)
    return NULL;
  const unsigned char *p = (const unsigned char *)s, *e = p + len;
  size_t o = 0;
  while (p < e) {
    size_t k = utf8_seq(p, e);
    if (k) {
      memcpy(out + o, p, k);
      o += k;
      p += k;
    } else {
      memcpy(out + o, "\xef\xbf\xbd", 3);
      o += 3;
      p++;
    }
  }
  out[o] = '\0';
  return out;
}
