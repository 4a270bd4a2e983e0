#include "datasets/datasets.h"
#include "harness/cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char fetch_usage[] =
    "Usage: dfpo fetch NAME... [--mirror URL]... [--manifest FILE] [--force]\n"
    "       dfpo fetch OWNER/MODEL[@REVISION]... [--lock FILE] [--force]\n"
    "       dfpo fetch --lock FILE [--force]\n"
    "\n"
    "A NAME without '/' is a dataset or asset of the manifest. It is downloaded\n"
    "into the cache ($DFPO_HOME/datasets/NAME/VERSION/raw/), its SHA-256\n"
    "verified, its members extracted safely and stamped. An asset with a folder\n"
    "in the manifest is also placed in $DFPO_HOME/assets/FOLDER/ beside the\n"
    "others of that folder: gpt2-encoder and gpt2-vocab make\n"
    "assets/gpt2-tokenizer/, a folder to pass as --tokenizer or tokenizer.path;\n"
    "gpt2-124m makes assets/gpt2-124m/. An entry the manifest does not pin\n"
    "(gpt2-imdb) is refused with what to use instead. Sources are tried in\n"
    "order: the mirrors (each is a base URL; the manifest's file name is\n"
    "appended), then the official URLs; a source that serves wrong bytes is\n"
    "reported and the next one is tried. 'dfpo datasets list' names what can be\n"
    "fetched.\n"
    "\n"
    "OWNER/MODEL[@REVISION] is a model on the Hugging Face hub (REVISION: a\n"
    "branch, a tag or a 40-hex commit; default main). The hub says which commit\n"
    "the revision is and the size and hash of every file; config.json, the\n"
    "weights (model.safetensors, else its index and shards, else\n"
    "pytorch_model.bin or its index) and the tokenizer files are\n"
    "downloaded into $DFPO_HOME/hub/OWNER--MODEL/COMMIT/ (complete or absent)\n"
    "and refused unless each has the hub's size and SHA-256 (LFS files) or git\n"
    "blob id (the others). The folder is printed; any --model, model.path,\n"
    "--base-model or judge argument also takes the name itself, and a branch\n"
    "then means the commit its last fetch found. With --lock FILE each model's\n"
    "name, revision, commit and files (size, SHA-256, LFS SHA-256 or blob id)\n"
    "are written into FILE (JSON; an entry of the same name and revision is\n"
    "replaced). --lock FILE without names fetches exactly the commits and files\n"
    "the lock records, into the cache, and refuses any byte that differs.\n"
    "\n"
    "Downloads resume after a cut (HTTP Range), retry with exponential backoff\n"
    "on transient failures, verify TLS, and refuse bodies larger than expected.\n"
    "\n"
    "Options:\n"
    "  --mirror URL     datasets: an http://, https:// or file:// base URL tried\n"
    "                   first (repeatable; DFPO_MIRROR adds more, separated by\n"
    "                   spaces or commas)\n"
    "  --manifest FILE  datasets: use this manifest instead of the built-in one\n"
    "  --lock FILE      hub models: record them in FILE; alone: fetch FILE's\n"
    "  --force          fetch again even when the cache holds a verified copy\n"
    "  --no-progress    no progress bar\n"
    "  -h, --help       show this help\n"
    "\n"
    "Environment: DFPO_FETCH_CONNECT_TIMEOUT (s, default 30),\n"
    "DFPO_FETCH_STALL_TIMEOUT (s without data, default 60), DFPO_FETCH_RETRIES\n"
    "(per source, default 4), DFPO_FETCH_BACKOFF_MS (first wait, doubled each\n"
    "retry, default 1000); for the hub: HF_ENDPOINT (default\n"
    "https://huggingface.co), HF_TOKEN (sent as a bearer token to the hub only,\n"
    "never printed), HF_HUB_OFFLINE or DFPO_HUB_OFFLINE (no requests: only what\n"
    "the cache holds).\n"
    "\n"
    "A dataset or a hub commit being fetched is locked (flock on <folder>.lock\n"
    "in the cache): a second fetch of it exits 5 at once, naming the holder.\n"
    "Exit status: 0 ok, 1 usage, 2 data that fails verification, 3 runtime\n"
    "failure (network, disk), 5 locked by another process.\n";

static int first_dataset(int argc, char **argv) {
  for (int i = optind; i < argc; i++)
    if (!strchr(argv[i], '/'))
      return i;
  return optind;
}

static void print_model(const ds_hub_model *m, const char *what) {
  uint64_t bytes = 0;
  for (size_t i = 0; i < m->n_files; i++)
    bytes += m->files[i].size;
  printf("%s/%s@%s: %s, commit %s, %zu files, %llu bytes, verified\n  %s\n", m->ref.owner,
         m->ref.name, m->ref.revision, what, m->commit, m->n_files, (unsigned long long)bytes,
         m->dir);
}

static void replayed(void *ctx, const ds_hub_model *m) {
  (void)ctx;
  print_model(m, m->fetched ? "fetched as locked" : "in the cache as locked");
}

/* The hub models named in argv (or, with none, the lock's). */
static int fetch_models(int argc, char **argv, const char *lock, int force, int progress) {
  ds_fetch_opts o;
  ds_fetch_opts_init(&o);
  o.progress = progress;
  dfpo_err err;
  dfpo_err_clear(&err);
  if (optind == argc)
    return ds_hub_lock_replay(lock, &o, force, replayed, NULL, &err) ? cli_fail(&err) : DFPO_OK;
  int status = DFPO_OK;
  for (int i = optind; i < argc; i++) {
    ds_hub_model m;
    if (!strchr(argv[i], '/'))
      continue; /* a dataset, fetched by cmd_fetch */
    dfpo_err_clear(&err);
    if (ds_hub_fetch(argv[i], &o, force, &m, &err)) {
      status = cli_fail(&err);
      continue;
    }
    print_model(&m, m.fetched ? "fetched" : "already in the cache");
    if (lock && ds_hub_lock_add(lock, &m, &err))
      status = cli_fail(&err);
    else if (lock)
      printf("  recorded in %s\n", lock);
    ds_hub_model_free(&m);
  }
  return status;
}

static int mirror_ok(const char *u) {
  return !strncmp(u, "http://", 7) || !strncmp(u, "https://", 8) || !strncmp(u, "file://", 7);
}

int cmd_fetch(int argc, char **argv) {
  static const struct option opts[] = {{"mirror", required_argument, NULL, 'M'},
                                       {"manifest", required_argument, NULL, 'm'},
                                       {"force", no_argument, NULL, 'f'},
                                       {"no-progress", no_argument, NULL, 'P'},
                                       {"lock", required_argument, NULL, 'L'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *manifest = NULL, *lock = NULL;
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
    case 'L':
      lock = optarg;
      break;
    case 'h':
      fputs(fetch_usage, stdout);
      return DFPO_OK;
    default:
      return cli_bad_option("fetch", argc, argv, c);
    }
  }
  if (optind >= argc && !lock)
    return cli_usage_error("fetch", "missing NAME (or --lock FILE)");
  int n_hub = 0;
  for (int i = optind; i < argc; i++)
    n_hub += strchr(argv[i], '/') != NULL;
  if (lock && n_hub < argc - optind)
    return cli_usage_error("fetch", "--lock records hub models (OWNER/MODEL), not '%s'",
                           argv[first_dataset(argc, argv)]);
  if (n_hub == argc - optind)
    return fetch_models(argc, argv, lock, force, progress);
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
    if (strchr(argv[i], '/'))
      continue; /* a hub model: below */
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
  if (n_hub && (rc = fetch_models(argc, argv, NULL, force, progress)))
    status = rc;
  return status;
}
