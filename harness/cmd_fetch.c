#include "datasets/datasets.h"
#include "harness/cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char fetch_usage[] =
    "Usage: dfpo fetch NAME... [--mirror URL]... [--manifest FILE] [--force]\n"
    "\n"
    "Downloads datasets and assets of the manifest into the cache\n"
    "($DFPO_HOME/datasets/NAME/VERSION/raw/), verifies their SHA-256, extracts the\n"
    "members safely and stamps them. An asset with a folder in the manifest is\n"
    "also placed in $DFPO_HOME/assets/FOLDER/ beside the others of that folder:\n"
    "gpt2-encoder and gpt2-vocab make assets/gpt2-tokenizer/, a folder to pass\n"
    "as --tokenizer or tokenizer.path; gpt2-124m makes assets/gpt2-124m/.\n"
    "Downloads resume after a cut (HTTP Range), retry with exponential backoff\n"
    "on transient failures, verify TLS, and refuse bodies larger than the\n"
    "manifest says. An entry the manifest does not pin (gpt2-imdb) is refused\n"
    "with what to use instead. Sources are tried in order: the\n"
    "mirrors (each is a base URL; the manifest's file name is appended), then\n"
    "the official URLs; a source that serves wrong bytes is reported and the\n"
    "next one is tried. 'dfpo datasets list' names what can be fetched.\n"
    "\n"
    "Options:\n"
    "  --mirror URL     an http://, https:// or file:// base URL tried first\n"
    "                   (repeatable; DFPO_MIRROR adds more, separated by spaces\n"
    "                   or commas)\n"
    "  --manifest FILE  use this manifest instead of the built-in one\n"
    "  --force          fetch again even when the cache holds a verified copy\n"
    "  --no-progress    no progress bar\n"
    "  -h, --help       show this help\n"
    "\n"
    "Environment: DFPO_FETCH_CONNECT_TIMEOUT (s, default 30),\n"
    "DFPO_FETCH_STALL_TIMEOUT (s without data, default 60), DFPO_FETCH_RETRIES\n"
    "(per source, default 4), DFPO_FETCH_BACKOFF_MS (first wait, doubled each\n"
    "retry, default 1000).\n";

static int mirror_ok(const char *u) {
  return !strncmp(u, "http://", 7) || !strncmp(u, "https://", 8) || !strncmp(u, "file://", 7);
}

int cmd_fetch(int argc, char **argv) {
  static const struct option opts[] = {
      {"mirror", required_argument, NULL, 'M'}, {"manifest", required_argument, NULL, 'm'},
      {"force", no_argument, NULL, 'f'},        {"no-progress", no_argument, NULL, 'P'},
      {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
  const char *manifest = NULL;
  const char *mirrors[64];
  size_t nm = 0;
  int force = 0, progress = 1, c;
  cli_reset_getopt();
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    switch (c) {
    case 'M':
      if (!mirror_ok(optarg))
        return cli_usage_error("fetch",
                               "--mirror needs an http://, https:// or file:// URL, "
                               "not '%s'",
                               optarg);
      if (nm < 32)
        mirrors[nm++] = optarg;
      break;
    case 'm':
      manifest = optarg;
      break;
    case 'f':
      force = 1;
      break;
    case 'P':
      progress = 0;
      break;
    case 'h':
      fputs(fetch_usage, stdout);
      return DFPO_OK;
    default:
      return cli_bad_option("fetch", argc, argv, c);
    }
  }
  if (optind >= argc)
    return cli_usage_error("fetch", "missing NAME");
  /* DFPO_MIRROR: after the --mirror options, before the official URLs. */
  char *envm = getenv("DFPO_MIRROR") ? strdup(getenv("DFPO_MIRROR")) : NULL;
  char *save = NULL;
  for (char *t = envm ? strtok_r(envm, " ,\t\n", &save) : NULL; t && nm < 64;
       t = strtok_r(NULL, " ,\t\n", &save)) {
    if (!mirror_ok(t)) {
      int rc = cli_usage_error("fetch",
                               "DFPO_MIRROR: '%s' is not an http://, https:// or "
                               "file:// URL",
                               t);
      free(envm);
      return rc;
    }
    mirrors[nm++] = t;
  }
  dfpo_err err;
  dfpo_err_clear(&err);
  ds_manifest m;
  int rc = ds_manifest_load(&m, manifest, &err);
  if (rc) {
    free(envm);
    return cli_fail(&err);
  }
  ds_fetch_opts o;
  ds_fetch_opts_init(&o);
  o.mirrors = mirrors;
  o.n_mirrors = nm;
  o.progress = progress;
  int status = DFPO_OK;
  for (int i = optind; i < argc; i++) {
    dfpo_err_clear(&err);
    const ds_entry *e = ds_manifest_find(&m, argv[i]);
    if (!e) {
      status = cli_usage_error("fetch",
                               "no dataset named '%s' in the manifest (see 'dfpo "
                               "datasets list')",
                               argv[i]);
      continue;
    }
    ds_stamp s;
    if (!force && ds_verify(e, &s, &err) == DFPO_OK && s.verified) {
      /* a cache filled before asset folders existed gets them now */
      if ((rc = ds_asset_place(e, &err)))
        status = cli_fail(&err);
      else
        printf("%s %s: already in the cache, verified by %s\n", e->name, e->version,
               ds_method_name(s.method));
    } else {
      dfpo_err_clear(&err);
      if ((rc = ds_fetch(e, &o, &s, &err))) {
        status = cli_fail(&err);
        continue;
      }
      printf("%s %s: fetched from %s, %llu files, verified by %s\n", e->name, e->version, s.source,
             (unsigned long long)s.files, ds_method_name(s.method));
    }
    char dir[4096];
    if (!rc && e->folder && ds_asset_dir(e->folder, dir, sizeof dir, &err) == DFPO_OK)
      printf("  %s is in the folder %s\n", e->file, dir);
  }
  ds_manifest_free(&m);
  free(envm);
  return status;
}
