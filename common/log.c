#include "common/common.h"

#include <stdlib.h>
#include <string.h>

static dfpo_log_level log_level = DFPO_LOG_INFO;

void dfpo_log_init(void) {
  const char *v = getenv("DFPO_LOG");
  if (!v)
    return;
  if (!strcmp(v, "error"))
    log_level = DFPO_LOG_ERROR;
  else if (!strcmp(v, "warn"))
    log_level = DFPO_LOG_WARN;
  else if (!strcmp(v, "info"))
    log_level = DFPO_LOG_INFO;
  else if (!strcmp(v, "debug"))
    log_level = DFPO_LOG_DEBUG;
}

void dfpo_log_set_level(dfpo_log_level level) {
  log_level = level;
}

dfpo_log_level dfpo_log_get_level(void) {
  return log_level;
}

void dfpo_log(dfpo_log_level level, const char *fmt, ...) {
  if (level > log_level)
    return;
  static const char *const tag[] = {"error: ", "warning: ", "", "debug: "};
  /* One fprintf per line keeps lines whole when threads log at once. */
  char line[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  fprintf(stderr, "dfpo: %s%s\n", tag[level], line);
}
