#include "datasets/datasets.h"
#include "harness/cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char datasets_usage[] =
    "Usage: dfpo datasets <subcommand> [options]\n"
    "\n"
    "The datasets and assets of the manifest (datasets/manifest.json, compiled\n"
    "in) and their copies in the cache ($DFPO_HOME/datasets/NAME/VERSION).\n"
    "\n"
    "Subcommands:\n"
    "  list                       every entry: version, size, whether it is in the\n"
    "                             cache, how it was verified, whether it is prepared\n"
    "  import NAME PATH           import a local archive (.tar.gz, .tgz, .tar, .zip),\n"
    "                             folder or file; verified by archive SHA-256, content\n"
    "                             digest or file SHA-256s, else refused\n"
    "  verify NAME...             re-check the cache against its stamp and the manifest\n"
    "  prepare NAME...            parse the imported data into split files (JSONL)\n"
    "\n"
    "Options:\n"
    "  --manifest FILE  use this manifest instead of the built-in one\n"
    "  --unverified     import: accept data that cannot be verified (marked\n"
    "                   unverified in every result that uses it); verify: do not\n"
    "                   fail on such an import\n"
    "  --seed N         prepare: the seed of the seeded splits (default 42)\n"
    "  --json           list: print a JSON array\n"
    "  -h, --help       show this help\n"
    "\n"
    "A dataset is locked (flock on <cache>/datasets/NAME/VERSION.lock) while it\n"
    "is imported or prepared: a second process on it exits 5 at once, naming\n"
    "the holder (pid, host, start time, command).\n"
    "\n"
    "Exit status: 0 ok, 1 usage error, 2 data not verified, missing or damaged,\n"
    "3 runtime failure, 5 the dataset is locked by another process.\n"
    "docs/datasets.md describes the formats.\n";

static void human_size(uint64_t b, char *buf, size_t n) {
  static const char *const unit[] = {"B", "KB", "MB", "GB"};
  double v = (double)b;
  int u = 0;
  while (v >= 1000.0 && u < 3) {
    v /= 1000.0;
    u++;
  }
  snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
}

static int do_list(const ds_manifest *m, int json) {
  cJSON *arr = json ? cJSON_CreateArray() : NULL;
  if (!json)
    printf("%-13s %-8s %-8s %10s  %-34s %s\n", "NAME", "VERSION", "KIND", "SIZE", "CACHE",
           "PREPARED");
  for (size_t i = 0; i < m->n; i++) {
    const ds_entry *e = &m->entries[i];
    ds_stamp s;
    dfpo_err err;
    dfpo_err_clear(&err);
    int in_cache = ds_stamp_read(e, &s, &err) == DFPO_OK;
    ds_prepared p;
    int prepared = strcmp(e->importer, "none") && ds_prepared_read(e, &p, &err) == DFPO_OK;
    char state[64], size[32];
    if (!in_cache)
      snprintf(state, sizeof state, "%s", "not in cache");
    else if (s.verified)
      snprintf(state, sizeof state, "verified (%s)", ds_method_name(s.method));
    else
      snprintf(state, sizeof state, "UNVERIFIED (imported so)");
    if (e->pinned)
      human_size(e->size, size, sizeof size);
    else /* fetch refuses it; its note says what to use */
      snprintf(size, sizeof size, "unpinned");
    if (json) {
      cJSON *o = cJSON_CreateObject();
      cJSON_AddStringToObject(o, "name", e->name);
      cJSON_AddStringToObject(o, "version", e->version);
      cJSON_AddStringToObject(o, "kind", e->kind);
      cJSON_AddNumberToObject(o, "size", (double)e->size);
      cJSON_AddBoolToObject(o, "pinned", e->pinned);
      cJSON_AddBoolToObject(o, "in_cache", in_cache);
      cJSON_AddBoolToObject(o, "verified", in_cache && s.verified);
      if (in_cache)
        cJSON_AddStringToObject(o, "verified_by", ds_method_name(s.method));
      cJSON_AddBoolToObject(o, "prepared", prepared);
      cJSON_AddItemToArray(arr, o);
    } else {
      printf("%-13s %-8s %-8s %10s  %-34s %s\n", e->name, e->version, e->kind, size, state,
             !strcmp(e->importer, "none") ? "-"
             : prepared                   ? (p.verified ? "yes" : "yes (unverified)")
                                          : "no");
    }
  }
  if (json) {
    char *s = cJSON_Print(arr);
    cJSON_Delete(arr);
    if (!s)
      return DFPO_ERUNTIME;
    printf("%s\n", s);
    free(s);
  }
  return DFPO_OK;
}

static int find(const ds_manifest *m, const char *name, const ds_entry **e, dfpo_err *err) {
  *e = ds_manifest_find(m, name);
  if (*e)
    return DFPO_OK;
  char names[512] = "";
  for (size_t i = 0; i < m->n; i++) {
    size_t l = strlen(names);
    snprintf(names + l, sizeof names - l, "%s%s", i ? ", " : "", m->entries[i].name);
  }
  return dfpo_err_set(err, DFPO_EUSAGE, "no dataset named '%s' in the manifest (there are: %s)",
                      name, names);
}

int cmd_datasets(int argc, char **argv) {
  static const struct option opts[] = {
      {"manifest", required_argument, NULL, 'm'}, {"unverified", no_argument, NULL, 'u'},
      {"seed", required_argument, NULL, 's'},     {"json", no_argument, NULL, 'j'},
      {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0}};
  const char *manifest = NULL;
  int unverified = 0, json = 0, c, seed_given = 0;
  uint64_t seed = DS_DEFAULT_SEED;
  cli_reset_getopt();
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    switch (c) {
    case 'm':
      manifest = optarg;
      break;
    case 'u':
      unverified = 1;
      break;
    case 'j':
      json = 1;
      break;
    case 's': {
      char *end;
      unsigned long long v = strtoull(optarg, &end, 10);
      if (!optarg[0] || *end || optarg[0] == '-')
        return cli_usage_error("datasets", "--seed needs a non-negative integer, not '%s'", optarg);
      seed = v;
      seed_given = 1;
      break;
    }
    case 'h':
      fputs(datasets_usage, stdout);
      return DFPO_OK;
    default:
      return cli_bad_option("datasets", argc, argv, c);
    }
  }
  if (optind >= argc)
    return cli_usage_error("datasets", "missing subcommand (list, import, verify, prepare)");
  const char *sub = argv[optind++];
  int nargs = argc - optind;
  char **args = argv + optind;
  int want_min, want_max;
  if (!strcmp(sub, "list"))
    want_min = want_max = 0;
  else if (!strcmp(sub, "import"))
    want_min = want_max = 2;
  else if (!strcmp(sub, "verify") || !strcmp(sub, "prepare"))
    want_min = 1, want_max = 64;
  else
    return cli_usage_error("datasets", "unknown subcommand '%s' (list, import, verify, prepare)",
                           sub);
  if (nargs < want_min)
    return cli_usage_error("datasets", "%s: missing %s", sub,
                           !strcmp(sub, "import") ? "NAME PATH" : "NAME");
  if (nargs > want_max)
    return cli_usage_error("datasets", "%s: unexpected argument '%s'", sub, args[want_max]);
  if (json && strcmp(sub, "list"))
    return cli_usage_error("datasets", "--json goes with list only");
  if (seed_given && strcmp(sub, "prepare"))
    return cli_usage_error("datasets", "--seed goes with prepare only");
  if (unverified && strcmp(sub, "import") && strcmp(sub, "verify"))
    return cli_usage_error("datasets", "--unverified goes with import or verify only");

  dfpo_err err;
  dfpo_err_clear(&err);
  ds_manifest m;
  int rc = ds_manifest_load(&m, manifest, &err);
  if (rc)
    return cli_fail(&err);
  if (!strcmp(sub, "list")) {
    rc = do_list(&m, json);
    ds_manifest_free(&m);
    return rc;
  }
  const ds_entry *e;
  int status = DFPO_OK;
  if (!strcmp(sub, "import")) {
    ds_stamp s;
    if (!(rc = find(&m, args[0], &e, &err)) && !(rc = ds_import(e, args[1], unverified, &s, &err)))
      printf("%s %s: imported %llu files (%llu bytes) from %s; %s%s\n", e->name, e->version,
             (unsigned long long)s.files, (unsigned long long)s.bytes, s.source,
             s.verified ? "verified by " : "",
             s.verified ? ds_method_name(s.method) : "UNVERIFIED (--unverified)");
    status = rc ? cli_fail(&err) : DFPO_OK;
  } else {
    for (int i = 0; i < nargs; i++) {
      dfpo_err_clear(&err);
      if ((rc = find(&m, args[i], &e, &err))) {
        status = cli_fail(&err);
        break;
      }
      if (!strcmp(sub, "verify")) {
        ds_stamp s;
        rc = ds_verify(e, &s, &err);
        if (rc == DFPO_OK && !s.verified && !unverified)
          rc = dfpo_err_set(&err, DFPO_EDATA,
                            "%s %s: the cache is intact but was imported UNVERIFIED from %s",
                            e->name, e->version, s.source);
        if (rc == DFPO_OK)
          printf("%s %s: ok: %llu files match the stamp; %s%s\n", e->name, e->version,
                 (unsigned long long)s.files, s.verified ? "verified by " : "",
                 s.verified ? ds_method_name(s.method) : "UNVERIFIED (--unverified)");
      } else {
        ds_prepared p;
        rc = ds_prepare(e, seed, &p, &err);
        if (rc == DFPO_OK) {
          printf("%s %s: prepared in %s (seed %llu)%s\n", e->name, e->version, p.dir,
                 (unsigned long long)p.seed, p.verified ? "" : " UNVERIFIED");
          for (int k = 0; k < p.n_splits; k++)
            printf("  %-12s %8zu records %8zu references\n", p.splits[k].name, p.splits[k].records,
                   p.splits[k].references);
        }
      }
      if (rc)
        status = cli_fail(&err);
    }
  }
  ds_manifest_free(&m);
  return status;
}
