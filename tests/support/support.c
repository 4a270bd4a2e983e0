#define _XOPEN_SOURCE 700 /* nftw with FTW_DEPTH and FTW_PHYS */
#include "tests/support/support.h"
#include "common/common.h"

#include <archive.h>
#include <archive_entry.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static void append(char **buf, size_t *len, size_t *cap, const char *data, size_t n) {
  if (*len + n + 1 > *cap) {
    *cap = (*len + n + 1) * 2;
    *buf = realloc(*buf, *cap);
    cr_assert_not_null(*buf);
  }
  memcpy(*buf + *len, data, n);
  *len += n;
  (*buf)[*len] = '\0';
}

void ts_run_cmd(ts_run *r, char *const argv[], const char *input, char *const env_extra[]) {
  int pin[2], pout[2], perr[2];
  cr_assert_eq(pipe(pin), 0);
  cr_assert_eq(pipe(pout), 0);
  cr_assert_eq(pipe(perr), 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, pin[0], 0);
  posix_spawn_file_actions_adddup2(&fa, pout[1], 1);
  posix_spawn_file_actions_adddup2(&fa, perr[1], 2);
  int fds[] = {pin[0], pin[1], pout[0], pout[1], perr[0], perr[1]};
  for (int i = 0; i < 6; i++)
    posix_spawn_file_actions_addclose(&fa, fds[i]);

  size_t nenv = 0, nextra = 0;
  while (environ[nenv])
    nenv++;
  while (env_extra && env_extra[nextra])
    nextra++;
  char **envp = calloc(nenv + nextra + 1, sizeof *envp);
  cr_assert_not_null(envp);
  /* The extra entries replace inherited ones of the same name (getenv would
   * find the inherited one first): a DFPO_HOME in the user's environment must
   * not leak into a test's own cache folder. */
  size_t ne = 0;
  for (size_t i = 0; i < nenv; i++) {
    size_t klen = strcspn(environ[i], "=");
    int replaced = 0;
    for (size_t j = 0; j < nextra && !replaced; j++)
      replaced = !strncmp(env_extra[j], environ[i], klen) && env_extra[j][klen] == '=';
    if (!replaced)
      envp[ne++] = environ[i];
  }
  for (size_t i = 0; i < nextra; i++)
    envp[ne++] = env_extra[i];

  pid_t pid;
  int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, envp);
  posix_spawn_file_actions_destroy(&fa);
  free(envp);
  close(pin[0]);
  close(pout[1]);
  close(perr[1]);
  cr_assert_eq(rc, 0, "cannot spawn %s", argv[0]);

  const char *in = input ? input : "";
  size_t in_left = strlen(in);
  if (!in_left) {
    close(pin[1]);
    pin[1] = -1;
  } else {
    fcntl(pin[1], F_SETFL, O_NONBLOCK);
  }
  size_t olen = 0, ocap = 0, elen = 0, ecap = 0;
  r->out = r->err = NULL;
  append(&r->out, &olen, &ocap, "", 0);
  append(&r->err, &elen, &ecap, "", 0);
  int open_out = 1, open_err = 1;
  while (open_out || open_err) {
    struct pollfd p[3] = {{pout[0], open_out ? POLLIN : 0, 0},
                          {perr[0], open_err ? POLLIN : 0, 0},
                          {pin[1], pin[1] >= 0 ? POLLOUT : 0, 0}};
    if (poll(p, 3, -1) < 0)
      break;
    char buf[65536];
    if (p[0].revents) {
      ssize_t n = read(pout[0], buf, sizeof buf);
      if (n <= 0)
        open_out = 0;
      else
        append(&r->out, &olen, &ocap, buf, (size_t)n);
    }
    if (p[1].revents) {
      ssize_t n = read(perr[0], buf, sizeof buf);
      if (n <= 0)
        open_err = 0;
      else
        append(&r->err, &elen, &ecap, buf, (size_t)n);
    }
    if (pin[1] >= 0 && p[2].revents) {
      ssize_t n = (p[2].revents & POLLOUT) ? write(pin[1], in, in_left) : -1;
      if (n > 0) {
        in += n;
        in_left -= (size_t)n;
      }
      if (n <= 0 || !in_left) {
        close(pin[1]);
        pin[1] = -1;
      }
    }
  }
  if (pin[1] >= 0)
    close(pin[1]);
  close(pout[0]);
  close(perr[0]);
  int st;
  cr_assert_eq(waitpid(pid, &st, 0), pid);
  r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

void ts_dfpo(ts_run *r, ...) {
  char *argv[64];
  int n = 0;
  argv[n++] = (char *)DFPO_BIN;
  va_list ap;
  va_start(ap, r);
  char *a;
  while ((a = va_arg(ap, char *)) && n < 63)
    argv[n++] = a;
  va_end(ap);
  argv[n] = NULL;
  ts_run_cmd(r, argv, NULL, NULL);
}

/* dfpo ARGS (NULL-terminated) with DFPO_HOME=home, then the variables of
 * env (NULL-terminated, may be NULL), stdin from input (may be NULL). */
static void dfpo_in_home(ts_run *r, const char *home, const char *const *args, const char *input,
                         const char *const *env) {
  char *argv[64] = {(char *)DFPO_BIN};
  int n = 1;
  for (; args[n - 1]; n++) {
    cr_assert_lt(n, 63, "dfpo: too many arguments");
    argv[n] = (char *)args[n - 1];
  }
  argv[n] = NULL;
  char envhome[600];
  snprintf(envhome, sizeof envhome, "DFPO_HOME=%s", home);
  char *envv[8] = {envhome};
  int e = 1;
  for (; env && env[e - 1]; e++) {
    cr_assert_lt(e, 7, "dfpo: too many variables");
    envv[e] = (char *)env[e - 1];
  }
  envv[e] = NULL;
  ts_run_cmd(r, argv, input, envv);
}

void ts_dfpo_home(ts_run *r, const char *home, char *const *args, const char *input) {
  dfpo_in_home(r, home, (const char *const *)args, input, NULL);
}

int ts_dfpo_in(const char *home, const char *const *args, const char *extra_env, char **err) {
  const char *env[] = {"OMP_NUM_THREADS=1", extra_env, NULL};
  ts_run r;
  dfpo_in_home(&r, home, args, NULL, env);
  int st = r.status;
  if (err)
    *err = strdup(r.err ? r.err : "");
  ts_run_free(&r);
  return st;
}

void ts_run_free(ts_run *r) {
  free(r->out);
  free(r->err);
  r->out = r->err = NULL;
}

const char *ts_shared_data(void) {
  static char path[4096];
  const char *env = getenv("DFPO_SHARED_DATA");
  if (env && env[0])
    snprintf(path, sizeof path, "%s", env);
  else
    snprintf(path, sizeof path, "%s/../shared/data", DFPO_SOURCE_DIR);
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode) ? path : NULL;
}

void ts_tmpdir(char *buf, size_t n) {
  snprintf(buf, n, "/tmp/dfpo-test-XXXXXX");
  cr_assert_not_null(mkdtemp(buf), "mkdtemp");
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(p);
}

void ts_rmtree(const char *path) {
  nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void ts_write_text(const char *path, const char *text) {
  FILE *fp = fopen(path, "wb");
  cr_assert_not_null(fp, "%s: cannot create", path);
  size_t n = strlen(text);
  cr_assert_eq(fwrite(text, 1, n, fp), n, "%s: short write", path);
  cr_assert_eq(fclose(fp), 0, "%s: write failed", path);
}

cJSON *ts_read_json(const char *path) {
  char *s = ts_slurp(path);
  cJSON *o = cJSON_Parse(s);
  cr_assert_not_null(o, "%s is not JSON: %s", path, s);
  free(s);
  return o;
}

void ts_json_set(const char *path, const char *key, cJSON *value) {
  cJSON *o = ts_read_json(path);
  cJSON_DeleteItemFromObjectCaseSensitive(o, key);
  cJSON_AddItemToObject(o, key, value);
  char *text = cJSON_Print(o);
  cr_assert_not_null(text);
  ts_write_text(path, text);
  free(text);
  cJSON_Delete(o);
}

const char *ts_json_str(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  cr_assert(cJSON_IsString(v), "'%s' missing or not a string", key);
  return v->valuestring;
}

char *ts_slurp(const char *path) {
  FILE *fp = fopen(path, "rb");
  cr_assert_not_null(fp, "%s missing", path);
  cr_assert_eq(fseek(fp, 0, SEEK_END), 0, "%s: cannot seek", path);
  long n = ftell(fp);
  cr_assert_geq(n, 0, "%s: cannot tell its size", path);
  rewind(fp);
  char *buf = malloc((size_t)n + 1);
  cr_assert_not_null(buf);
  cr_assert_eq(fread(buf, 1, (size_t)n, fp), (size_t)n, "%s: short read", path);
  fclose(fp);
  buf[n] = '\0';
  return buf;
}

void ts_imdb_slice(const char *data, const char *src, const char *corpus, int n_train, int n_test,
                   int n_unsup) {
  char path[1024];
  snprintf(path, sizeof path, "%s/imdb/aclImdb.tar.gz", data);
  struct archive *a = archive_read_new();
  archive_read_support_filter_all(a);
  archive_read_support_format_all(a);
  cr_assert_eq(archive_read_open_filename(a, path, 1 << 16), ARCHIVE_OK, "%s",
               archive_error_string(a));
  static const char *const dirs[] = {"train/pos/", "train/neg/", "train/unsup/", "test/pos/",
                                     "test/neg/"};
  const int want[] = {n_train, n_train, n_unsup, n_test, n_test};
  int have[5] = {0};
  for (int d = 0; d < 5; d++) {
    snprintf(path, sizeof path, "%s/aclImdb/%s", src, dirs[d]);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", path);
    cr_assert_eq(system(cmd), 0);
  }
  FILE *cf = corpus ? fopen(corpus, "w") : NULL;
  struct archive_entry *e;
  char *buf = NULL;
  size_t cap = 0;
  int done = 0;
  while (done < 5 && archive_read_next_header(a, &e) == ARCHIVE_OK) {
    const char *name = archive_entry_pathname(e);
    if (strncmp(name, "aclImdb/", 8))
      continue;
    for (int d = 0; d < 5; d++) {
      size_t dl = strlen(dirs[d]);
      if (strncmp(name + 8, dirs[d], dl) || have[d] >= want[d] || !strstr(name + 8 + dl, ".txt"))
        continue;
      size_t n = (size_t)archive_entry_size(e);
      if (n + 1 > cap)
        buf = realloc(buf, cap = n + 1);
      cr_assert_eq(archive_read_data(a, buf, n), (la_ssize_t)n);
      snprintf(path, sizeof path, "%s/%s", src, name);
      FILE *fp = fopen(path, "wb");
      cr_assert_not_null(fp, "%s", path);
      fwrite(buf, 1, n, fp);
      fclose(fp);
      if (d < 2 && cf) {
        for (size_t i = 0; i < n; i++)
          if (buf[i] == '\n')
            buf[i] = ' ';
        fwrite(buf, 1, n, cf);
        fputc('\n', cf);
      }
      if (++have[d] == want[d])
        done++;
    }
  }
  free(buf);
  if (cf)
    fclose(cf);
  archive_read_free(a);
  for (int d = 0; d < 5; d++)
    cr_assert_eq(have[d], want[d], "the archive lacks %s reviews", dirs[d]);
}

/* ------------------------------------------------------------ fuzzing */

/* Loads every file of a corpus folder, in name order; returns the count. */
static size_t fuzz_corpus(const char *dir, char **bufs, size_t *lens, size_t max) {
  struct dirent **names;
  int k = scandir(dir, &names, NULL, alphasort);
  cr_assert(k >= 0, "%s: cannot list", dir);
  size_t n = 0;
  for (int i = 0; i < k; i++) {
    if (names[i]->d_name[0] != '.' && n < max) {
      char path[1024];
      snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
      dfpo_err err;
      cr_assert_eq(dfpo_read_file(path, &bufs[n], &lens[n], &err), 0, "%s", err.msg);
      n++;
    }
    free(names[i]);
  }
  free(names);
  cr_assert(n > 0, "empty corpus %s", dir);
  return n;
}

void ts_fuzz_run(ts_fuzz_fn fn, const char *dir, int mutants) {
  char *bufs[64];
  size_t lens[64];
  size_t n = fuzz_corpus(dir, bufs, lens, 64);
  for (size_t i = 0; i < n; i++)
    fn((const uint8_t *)bufs[i], lens[i]);
  dfpo_rng r;
  dfpo_rng_init(&r, 2024, 11);
  static const char tokens[] = "{}[]\":,\\0123456789.-+eE truefalsnul\n\xff\xc3";
  for (int k = 0; k < mutants; k++) {
    size_t src = dfpo_rng_below(&r, (uint32_t)n);
    size_t len = lens[src];
    uint8_t *m = malloc(len + 64);
    cr_assert_not_null(m);
    memcpy(m, bufs[src], len);
    int edits = 1 + (int)dfpo_rng_below(&r, 8);
    for (int e = 0; e < edits; e++) {
      uint32_t op = dfpo_rng_below(&r, 5);
      size_t at = len ? dfpo_rng_below(&r, (uint32_t)len) : 0;
      if (op == 0 && len) { /* flip a byte */
        m[at] = (uint8_t)dfpo_rng_u32(&r);
      } else if (op == 1 && len + 1 < lens[src] + 64) { /* insert a JSON-ish byte */
        memmove(m + at + 1, m + at, len - at);
        m[at] = (uint8_t)tokens[dfpo_rng_below(&r, sizeof tokens - 1)];
        len++;
      } else if (op == 2 && len) { /* delete */
        memmove(m + at, m + at + 1, len - at - 1);
        len--;
      } else if (op == 3) { /* truncate */
        len = at;
      } else if (len) { /* splice from another corpus file */
        size_t o = dfpo_rng_below(&r, (uint32_t)n);
        size_t take = lens[o] < 32 ? lens[o] : 32;
        if (at + take <= len)
          memcpy(m + at, bufs[o], take);
      }
    }
    fn(m, len);
    free(m);
  }
  for (size_t i = 0; i < n; i++)
    free(bufs[i]);
}

int ts_python_has(const char *modules) {
  if (access("/usr/bin/python3", X_OK) != 0)
    return 0;
  char code[512];
  snprintf(code, sizeof code, "import %s", modules);
  ts_run r;
  char *argv[] = {"/usr/bin/python3", "-c", code, NULL};
  ts_run_cmd(&r, argv, NULL, NULL);
  int ok = r.status == 0;
  ts_run_free(&r);
  return ok;
}

void ts_commongen_slice(const char *data, const char *dst, int n_train, int n_dev, int n_test) {
  static const char *const files[3] = {"commongen.train.jsonl", "commongen.dev.jsonl",
                                       "commongen.test_noref.jsonl"};
  const int lines[3] = {n_train, n_dev, n_test};
  cr_assert(mkdir(dst, 0777) == 0 || errno == EEXIST, "%s", dst);
  for (int i = 0; i < 3; i++) {
    char cmd[2400];
    snprintf(cmd, sizeof cmd, "head -n %d '%s/commongen/%s' > '%s/%s'", lines[i], data, files[i],
             dst, files[i]);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
  }
}
