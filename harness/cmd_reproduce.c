#define _XOPEN_SOURCE 700 /* realpath */
/* dfpo reproduce: a whole suite (docs/suites.md). Data and base model first
 * (cached under a key of their config), then every (task, variant, seed)
 * cell, then the report.
 *
 * Each cell runs `dfpo train` as a child process of /proc/self/exe rather
 * than in this process: a cell that fails (an algorithm not built yet, a
 * non-finite loss, an abort, running out of memory) is recorded and the rest
 * go on; every cell starts with fresh process state (getopt, the engine's
 * arenas, the interrupt flag) and gives its memory back; its messages go to
 * its own log; and the command line is the same one a Slurm array task
 * runs. Starting a process costs milliseconds against seconds to hours of
 * training.
 *
 * This file keeps the run matrix; repro_child.c the child processes,
 * repro_base.c the base models (through the task registry's rows),
 * repro_slurm.c the Slurm scripts. */
#include "harness/cli.h"
#include "harness/repro_internal.h"
#include "harness/rundir.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char reproduce_usage[] =
    "Usage: dfpo reproduce [--suite NAME | --config FILE] [--out DIR] [--set k=v]...\n"
    "                      [--emit slurm] [--max-cells N] [--cell I] [--prepare-only]\n"
    "                      [--device D] [--shared-data DIR] [--dry-run]\n"
    "                      [--base-model TASK=FOLDER|OWNER/NAME[@REV]]...\n"
    "\n"
    "Runs a suite end to end into DIR/<suite.name>/: the task data and the base\n"
    "model (model.init pretrain: the task corpus, a BPE tokenizer trained on it\n"
    "and a GPT-2 pretrained on it; for commongen, model.arch t5: a SentencePiece\n"
    "model and a T5 pretrained on the training pairs; cached in $DFPO_HOME/bases/\n"
    "under a key of their config and reused), then every (task, algorithm, seed)\n"
    "cell with\n"
    "`dfpo train` in a child process, then `dfpo report`. It is resumable: cells\n"
    "with DONE are skipped, an interrupted cell goes on from its last resumable\n"
    "checkpoint (`dfpo train` writes one every train.eval_every iterations),\n"
    "the base model's pretraining from its checkpoint. A cell that fails (for\n"
    "example an algorithm not built yet) is recorded with its reason and the\n"
    "others go on; the report lists it as missing and the exit status is 3.\n"
    "A cell counts as done only when its files are the ones its DONE lists\n"
    "(sizes and SHA-256); one that differs is run again, with a warning that\n"
    "says which file differs and how.\n"
    "\n"
    "Locks (flock, non-blocking): the suite folder DIR/<suite> (a whole run;\n"
    "--cell jobs lock only their cell), each cell, and each cache entry being\n"
    "built (base models and tokenizers in bases/, judges in judges/, datasets\n"
    "being fetched, imported or prepared, hub models being fetched). A second\n"
    "process that finds one taken exits 5 at once with a message naming the\n"
    "holder (pid, host, start time, command) and leaves the first's files as\n"
    "they are. Exit status: 0 ok, 1 usage, 2 data, 3 a cell failed, 5 locked,\n"
    "130 interrupted or stopped by --max-cells.\n"
    "\n"
    "Options:\n"
    "  --suite NAME      configs/NAME.json (smoke, imdb-small, commongen-small,\n"
    "                    paper, ...; looked up in ./configs, then in the source\n"
    "                    tree's configs/)\n"
    "  --config FILE     a suite config file instead\n"
    "  --out DIR         root of the suite folders (default: out)\n"
    "  -s, --set k=v     override a config key (repeatable)\n"
    "  --device D        the device key: auto (the default), cpu or cuda, for the\n"
    "                    base model's pretraining and every cell. auto runs on\n"
    "                    CUDA when a device is usable, else on the CPU with a\n"
    "                    warning that says why; cuda fails at once with the\n"
    "                    driver's reason when none is. The CUDA backend passed\n"
    "                    its tests on a GPU, but no suite has run there yet\n"
    "                    (docs/cuda.md): cpu is the tested path. Slurm scripts\n"
    "                    ask for a GPU when it is cuda\n"
    "  --emit slurm      write DIR/<suite>/slurm/ (a preparation job, a job array\n"
    "                    with one task per cell, a report job, submit.sh) and run\n"
    "                    nothing\n"
    "  --max-cells N     run at most N cells this time, then stop (exit 130)\n"
    "  --cell I          run only cell I (0-based, tasks outermost, seeds\n"
    "                    innermost), as a Slurm array task does; no report\n"
    "  --prepare-only    prepare the data and base models, run no cell\n"
    "  --shared-data DIR the shared-data folder, where local copies of datasets'\n"
    "                    archives are found (imdb/aclImdb.tar.gz) when a dataset is\n"
    "                    in neither the cache nor task.data_dir (default\n"
    "                    $DFPO_SHARED_DATA, else ../shared/data beside the source\n"
    "                    tree)\n"
    "  --dry-run         lay the suite's suite.dry_run overrides (\"key=value\")\n"
    "                    over it, after its file and before --set: the whole\n"
    "                    matrix at its real shapes, small (paper: one seed, one\n"
    "                    iteration, a few prompts and tokens, on the CPU, into\n"
    "                    DIR/paper-dryrun)\n"
    "  --base-model TASK=FOLDER  model.init import: the task's base policy from\n"
    "                    a Hugging Face GPT-2 folder (config.json +\n"
    "                    model.safetensors; its tokenizer files are used when it\n"
    "                    has them), or from a hub name OWNER/NAME[@REVISION]\n"
    "                    (its cache folder, fetched when absent as `dfpo fetch`\n"
    "                    does), replacing the task's item of model.bases\n"
    "  -h, --help        show this help\n"
    "\n"
    "The children (pretraining, cells) run with OMP_WAIT_POLICY=PASSIVE unless\n"
    "it is set: OpenMP threads that spin at barriers while their partner waits\n"
    "for a core made a niced cell beside one busy process 5.5 times slower\n"
    "(docs/suites.md).\n";

/* ------------------------------------------------------------ base model */

/* The base model, tokenizer and judge of task ti (repro_base.c). A failure
 * is kept per task: that task's cells fail with it, the others go on. */
static int prepare_base(repro *r, int ti, dfpo_err *err) {
  task_base b;
  memset(&b, 0, sizeof b);
  b.conf = &r->s.conf;
  b.root = r->root;
  b.task = r->s.tasks[ti];
  b.shared_data = r->shared_data;
  int rc = repro_prepare_base(&b, err);
  suite_fmt(r->model[ti], sizeof r->model[ti], "%s", b.model);
  suite_fmt(r->tok[ti], sizeof r->tok[ti], "%s", b.tok);
  suite_fmt(r->judge[ti], sizeof r->judge[ti], "%s", b.judge);
  return rc;
}

/* ----------------------------------------------------------------- cells */

static void cell_paths(const repro *r, int i, char *final, size_t nf, char *staging, size_t ns) {
  int ti, vi, si;
  suite_cell(&r->s, i, &ti, &vi, &si);
  suite_fmt(final, nf, "%s/%s/%s/seed-%lld", r->root, r->s.tasks[ti], r->s.variants[vi].name,
            (long long)r->s.seeds[si]);
  suite_fmt(staging, ns, "%s/.staging/%s/%s/seed-%lld", r->root, r->s.tasks[ti],
            r->s.variants[vi].name, (long long)r->s.seeds[si]);
}

static void print_matrix(const repro *r, int current) {
  int n = suite_n_cells(&r->s), done = 0, failed = 0;
  for (int i = 0; i < n; i++) {
    done += r->status[i] == 'D' || r->status[i] == 'S';
    failed += r->status[i] == 'F';
  }
  double el = dfpo_now() - r->t0;
  fprintf(stderr, "reproduce %s: %d/%d cells done, %d failed, %.0f s", r->s.name, done, n, failed,
          el);
  if (current >= 0) {
    int ti, vi, si;
    suite_cell(&r->s, current, &ti, &vi, &si);
    fprintf(stderr, "; running %s/%s seed %lld", r->s.tasks[ti], r->s.variants[vi].name,
            (long long)r->s.seeds[si]);
  }
  fputc('\n', stderr);
  for (int ti = 0; ti < r->s.n_tasks; ti++)
    for (int vi = 0; vi < r->s.n_variants; vi++) {
      fprintf(stderr, "  %-12s %-14s", vi == 0 ? r->s.tasks[ti] : "", r->s.variants[vi].name);
      for (int si = 0; si < r->s.n_seeds; si++) {
        char c = r->status[(ti * r->s.n_variants + vi) * r->s.n_seeds + si];
        fprintf(stderr, " %c", c == 'S' ? 'D' : c);
      }
      fputc('\n', stderr);
    }
}

static int write_failure(const repro *r, int i, const char *why) {
  int ti, vi, si;
  suite_cell(&r->s, i, &ti, &vi, &si);
  char dir[2600], path[2700];
  suite_fmt(dir, sizeof dir, "%s/failed/%s/%s", r->root, r->s.tasks[ti], r->s.variants[vi].name);
  suite_fmt(path, sizeof path, "%s/seed-%lld.txt", dir, (long long)r->s.seeds[si]);
  dfpo_err e;
  char line[700];
  suite_fmt(line, sizeof line, "%s\n", why);
  if (dfpo_mkdirs(dir, &e) || repro_write_text(path, line, &e))
    return DFPO_ERUNTIME;
  return DFPO_OK;
}

static void clear_failure(const repro *r, int i) {
  int ti, vi, si;
  suite_cell(&r->s, i, &ti, &vi, &si);
  char path[2700];
  suite_fmt(path, sizeof path, "%s/failed/%s/%s/seed-%lld.txt", r->root, r->s.tasks[ti],
            r->s.variants[vi].name, (long long)r->s.seeds[si]);
  remove(path);
}

/* Runs cell i unless done: `dfpo train` into its staging folder, then the
 * finished run folder is renamed into place (so a run folder under the
 * suite always has DONE). Returns DFPO_OK when done, DFPO_EINTR when
 * interrupted, another code when the cell failed (recorded). */
static int run_cell_locked(repro *r, int i, const char *final, const char *staging, dfpo_err *err) {
  char path[2800], log[2800];
  int ti, vi, si;
  suite_cell(&r->s, i, &ti, &vi, &si);
  const suite_variant *v = &r->s.variants[vi];
  suite_fmt(path, sizeof path, "%s/DONE", final);
  if (repro_exists(path)) {
    /* finished only when its files are the ones DONE lists */
    dfpo_err why;
    dfpo_err_clear(&why);
    if (rundir_done_check(final, &why) == DFPO_OK) {
      r->status[i] = 'S';
      clear_failure(r, i);
      return DFPO_OK;
    }
    dfpo_warn("reproduce: %s/%s seed %lld is not whole, running it again: %s", r->s.tasks[ti],
              v->name, (long long)r->s.seeds[si], why.msg);
    remove(path);
  }
  if (!r->model[ti][0]) {
    r->status[i] = 'F';
    write_failure(r, i, r->base_err[ti]);
    return dfpo_err_set(err, DFPO_ERUNTIME, "%s", r->base_err[ti]);
  }
  r->status[i] = 'R';
  print_matrix(r, i);
  int rc;
  suite_fmt(path, sizeof path, "%s/logs", r->root);
  if ((rc = dfpo_mkdirs(staging, err)) || (rc = dfpo_mkdirs(path, err)))
    return rc;
  suite_fmt(log, sizeof log, "%s/logs/%s-%s-seed-%lld.log", r->root, r->s.tasks[ti], v->name,
            (long long)r->s.seeds[si]);
  char seed[32];
  suite_fmt(seed, sizeof seed, "%lld", (long long)r->s.seeds[si]);
  const char *sets[4 * SUITE_MAX_SETS];
  int nsets = suite_cell_sets(&r->s, ti, vi, sets, 4 * SUITE_MAX_SETS);
  if (nsets < 0)
    return dfpo_err_set(err, DFPO_EUSAGE, "reproduce: %s/%s has more than %d overrides",
                        r->s.tasks[ti], v->name, 4 * SUITE_MAX_SETS);
  char *argv[24 + 8 * SUITE_MAX_SETS];
  int n = 0;
  argv[n++] = "dfpo";
  argv[n++] = "train";
  argv[n++] = "--config";
  argv[n++] = r->config;
  argv[n++] = "--task";
  argv[n++] = (char *)r->s.tasks[ti];
  argv[n++] = "--algo";
  argv[n++] = (char *)v->algo;
  argv[n++] = "--seed";
  argv[n++] = seed;
  argv[n++] = "--out";
  argv[n++] = (char *)staging;
  argv[n++] = "--model";
  argv[n++] = r->model[ti];
  argv[n++] = "--tokenizer";
  argv[n++] = r->tok[ti];
  char jset[2400];
  const task_def *d = task_find(r->s.tasks[ti]);
  if (r->judge[ti][0] && d && d->judge) { /* before the variant's own overrides */
    suite_fmt(jset, sizeof jset, "task.judge.%s=%s", d->judge->name, r->judge[ti]);
    argv[n++] = "--set";
    argv[n++] = jset;
  }
  for (int k = 0; k < nsets; k++) {
    argv[n++] = "--set";
    argv[n++] = (char *)sets[k];
  }
  argv[n] = NULL;
  double t0 = dfpo_now();
  int st = repro_run_child(argv, log);
  double secs = dfpo_now() - t0;
  char run[2900];
  suite_fmt(run, sizeof run, "%s/%s/%s/%s/seed-%lld", staging, r->s.name, r->s.tasks[ti], v->algo,
            (long long)r->s.seeds[si]);
  suite_fmt(path, sizeof path, "%s/DONE", run);
  if (st == 0 && repro_exists(path)) {
    /* what the folder name alone does not say: the variant and its cost */
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "variant", v->name);
    cJSON_AddStringToObject(o, "algo", v->algo);
    cJSON *over = cJSON_AddArrayToObject(o, "overrides");
    for (int k = 0; k < nsets; k++)
      cJSON_AddItemToArray(over, cJSON_CreateString(sets[k]));
    cJSON_AddNumberToObject(o, "seconds", secs);
    suite_fmt(path, sizeof path, "%s/cell.json", run);
    rc = cfg_json_write(path, o, err);
    cJSON_Delete(o);
    if (!rc) /* DONE lists cell.json too */
      rc = rundir_done_write(run, err);
    char parent[2600];
    suite_fmt(parent, sizeof parent, "%s", final);
    *strrchr(parent, '/') = '\0';
    if (rc || (rc = suite_rmtree(final, err)) || (rc = dfpo_mkdirs(parent, err)))
      return rc;
    if (rename(run, final) != 0)
      return dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot rename to %s", run, final);
    suite_rmtree(staging, err);
    clear_failure(r, i);
    r->status[i] = 'D';
    dfpo_info("reproduce: %s/%s seed %lld done in %.1f s", r->s.tasks[ti], v->name,
              (long long)r->s.seeds[si], secs);
    return DFPO_OK;
  }
  r->status[i] = 'F';
  if (st == 130 || dfpo_interrupted()) {
    r->status[i] = '.';
    return dfpo_err_set(err, DFPO_EINTR, "reproduce: interrupted in %s/%s seed %lld",
                        r->s.tasks[ti], v->name, (long long)r->s.seeds[si]);
  }
  char why[512], msg[700];
  repro_last_error(log, why, sizeof why);
  /* the same words for every seed that failed the same way, so that the
   * report can say it once; the log is logs/<task>-<variant>-seed-<n>.log */
  suite_fmt(msg, sizeof msg, "exit %d: %s", st, why[0] ? why : "no message");
  write_failure(r, i, msg);
  dfpo_warn("reproduce: %s/%s seed %lld failed: %s (log: %s)", r->s.tasks[ti], v->name,
            (long long)r->s.seeds[si], msg, log);
  return dfpo_err_set(err, DFPO_ERUNTIME, "%s", msg);
}

/* Cell i under its lock (the final folder's): a `dfpo reproduce --cell`
 * job on the same cell stops at it (DFPO_ELOCKED). */
static int run_cell(repro *r, int i, dfpo_err *err) {
  char final[2600], staging[2600], parent[2600];
  cell_paths(r, i, final, sizeof final, staging, sizeof staging);
  suite_fmt(parent, sizeof parent, "%s", final);
  *strrchr(parent, '/') = '\0';
  dfpo_lock lk = {0};
  int rc = dfpo_mkdirs(parent, err);
  if (rc || (rc = dfpo_lock_take(&lk, final, err)))
    return rc;
  rc = run_cell_locked(r, i, final, staging, err);
  dfpo_lock_release(&lk);
  return rc;
}

/* --------------------------------------------------------------- command */

/* The shared-data folder: --shared-data, else $DFPO_SHARED_DATA, else
 * ../shared/data beside the source tree. */
static int repro_shared_data(const char *opt, char *buf, size_t n, dfpo_err *err) {
  const char *env = getenv("DFPO_SHARED_DATA");
  if (opt && opt[0])
    return dfpo_path_fmt(buf, n, err, "%s", opt);
  if (env && env[0])
    return dfpo_path_fmt(buf, n, err, "%s", env);
  return dfpo_path_fmt(buf, n, err, "%s/../shared/data", DFPO_SOURCE_DIR);
}

static int find_suite(const char *name, char *buf, size_t n) {
  if (strchr(name, '/'))
    return -1;
  /* a name too long for a path is no suite's */
  if (!dfpo_path_fmt(buf, n, NULL, "configs/%s.json", name) && repro_exists(buf))
    return 0;
#ifdef DFPO_SOURCE_DIR
  if (!dfpo_path_fmt(buf, n, NULL, "%s/configs/%s.json", DFPO_SOURCE_DIR, name) &&
      repro_exists(buf))
    return 0;
#endif
  return -1;
}

/* Loads the suite: its file, then with dry_run its suite.dry_run overrides,
 * then the --set ones, then the --base-model ones ("TASK=FOLDER", each
 * replacing the task's item of model.bases). The first load reads what the
 * second lays over the file. The dry run's and --set's overrides are laid
 * over every cell again last (suite_set_last). */
static int load_suite(repro *r, const char *file, const char *const *sets, int nsets, int dry_run,
                      const char *const *bases, int nbases, dfpo_err *err) {
  int rc = suite_load(&r->s, file, sets, nsets, err);
  if (!rc && !dry_run && !nbases)
    rc = suite_set_last(&r->s, sets, nsets, err);
  if (rc || (!dry_run && !nbases))
    return rc;
  int nd = 0, nb = 0;
  if ((rc = cfg_get_list_len(&r->s.conf, "suite.dry_run", &nd, err)) ||
      (rc = cfg_get_list_len(&r->s.conf, "model.bases", &nb, err)))
    return rc;
  if (dry_run && nd == 0)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "--dry-run: suite %s has no suite.dry_run overrides (docs/suites.md)",
                        r->s.name);
  const char **all = calloc((size_t)(nd + nsets + 1), sizeof *all);
  char **owned = calloc((size_t)nd + 1, sizeof *owned);
  cJSON *list = cJSON_CreateArray();
  int n = 0;
  if (!all || !owned || !list)
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  for (int i = 0; !rc && dry_run && i < nd; i++) {
    const char *it;
    if (!(rc = cfg_get_list_str(&r->s.conf, "suite.dry_run", i, &it, err)) &&
        !(owned[i] = strdup(it)))
      rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    all[n++] = owned[i];
  }
  for (int i = 0; !rc && i < nsets; i++)
    all[n++] = sets[i];
  /* model.bases: the config's items, each task's replaced by its --base-model */
  for (int i = 0; !rc && i < nb; i++) {
    const char *it;
    if ((rc = cfg_get_list_str(&r->s.conf, "model.bases", i, &it, err)))
      break;
    int replaced = 0;
    for (int k = 0; k < nbases && !replaced; k++) {
      size_t tl = strcspn(bases[k], "=");
      replaced = !strncmp(it, bases[k], tl) && it[tl] == '=';
    }
    if (!replaced)
      cJSON_AddItemToArray(list, cJSON_CreateString(it));
  }
  for (int k = 0; k < nbases; k++)
    cJSON_AddItemToArray(list, cJSON_CreateString(bases[k]));
  char *json = rc ? NULL : cJSON_PrintUnformatted(list);
  char *bset = NULL;
  if (json && (bset = malloc(strlen(json) + 16)))
    sprintf(bset, "model.bases=%s", json);
  if (!rc && nbases && !bset)
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  if (!rc && nbases)
    all[n++] = bset;
  if (!rc) {
    suite_free(&r->s);
    rc = suite_load(&r->s, file, all, n, err);
  }
  /* the dry run's overrides and --set win in every cell, over its task
   * settings and its variant (model.bases needs no repeating there) */
  if (!rc)
    rc = suite_set_last(&r->s, all, n - (nbases ? 1 : 0), err);
  for (int i = 0; owned && i < nd; i++)
    free(owned[i]);
  free(owned);
  free(all);
  free(json);
  free(bset);
  cJSON_Delete(list);
  return rc;
}

static int reproduce(repro *r, const char *file, const char *const *sets, int nsets, int emit,
                     int max_cells, int only_cell, int prepare_only, int dry_run,
                     const char *const *bases, int nbases, dfpo_err *err) {
  int rc = load_suite(r, file, sets, nsets, dry_run, bases, nbases, err);
  if (rc)
    return rc;
  if (dry_run)
    dfpo_info("reproduce: dry run of %s: suite.dry_run laid over the suite", r->s.name);
  /* the suite's `threads` for this process and, through OMP_NUM_THREADS,
   * every child it starts (pretraining, the cells) */
  int64_t threads = 0;
  if ((rc = cfg_get_int(&r->s.conf, "threads", &threads, err)))
    return rc;
  cli_use_threads(threads);
  r->t0 = dfpo_now();
  ssize_t len = readlink("/proc/self/exe", r->exe, sizeof r->exe - 1);
  if (len <= 0)
    return dfpo_err_errno(err, DFPO_ERUNTIME, errno, "cannot find this program (/proc/self/exe)");
  r->exe[len] = '\0';
  /* absolute paths: the cells and the Slurm jobs may run elsewhere */
  if ((rc = dfpo_mkdirs(r->out, err)))
    return rc;
  char abs[PATH_MAX];
  if (!realpath(r->out, abs))
    return dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s", r->out);
  /* root is cut 200 bytes short of its buffer: the cell, staging, log and
   * failure paths below add at most the task, variant and seed to it (each
   * checked when loaded) and so fit their fixed buffers */
  if ((rc = dfpo_path_fmt(r->out, sizeof r->out, err, "%s", abs)) ||
      (rc = dfpo_path_fmt(r->root, sizeof r->root - 200, err, "%s/%s", r->out, r->s.name)))
    return rc;
  suite_fmt(r->config, sizeof r->config, "%s/suite.json", r->root);
  /* one whole run of a suite folder at a time: a second stops here
   * (DFPO_ELOCKED) before it writes anything; --cell jobs (a Slurm array)
   * run side by side and lock only their cells */
  if (only_cell < 0 && (rc = dfpo_lock_take(&r->lock, r->root, err)))
    return rc;
  if ((rc = dfpo_mkdirs(r->root, err)))
    return rc;
  /* the resolved suite: what the cells, the Slurm jobs and the report read */
  char *json = cfg_to_json(&r->s.conf);
  if (!json)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  rc = repro_write_text(r->config, json, err);
  free(json);
  if (rc)
    return rc;
  if (emit)
    return repro_emit_slurm(r, file, err);
  /* the device, resolved here once so that cuda without a usable device
   * fails before any work (the children resolve the same key again) */
  const char *device;
  if ((rc = cfg_get_str(&r->s.conf, "device", &device, err)) || (rc = cli_use_device(device, err)))
    return rc;
  int n = suite_n_cells(&r->s);
  if (only_cell >= n)
    return dfpo_err_set(err, DFPO_EUSAGE, "--cell %d: the suite has %d cells (0..%d)", only_cell, n,
                        n - 1);
  r->model = calloc((size_t)r->s.n_tasks, sizeof *r->model);
  r->tok = calloc((size_t)r->s.n_tasks, sizeof *r->tok);
  r->judge = calloc((size_t)r->s.n_tasks, sizeof *r->judge);
  r->base_err = calloc((size_t)r->s.n_tasks, sizeof *r->base_err);
  r->status = calloc((size_t)n + 1, 1);
  if (!r->model || !r->tok || !r->judge || !r->base_err || !r->status)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  memset(r->status, '.', (size_t)n);
  for (int ti = 0; ti < r->s.n_tasks; ti++) {
    if (only_cell >= 0) {
      int ct, cv, cs;
      suite_cell(&r->s, only_cell, &ct, &cv, &cs);
      if (ct != ti)
        continue;
    }
    dfpo_err e;
    dfpo_err_clear(&e);
    rc = prepare_base(r, ti, &e);
    if (rc == DFPO_ELOCKED) { /* another process builds the same cache entry */
      *err = e;
      return rc;
    }
    if (rc == DFPO_EINTR || dfpo_interrupted()) {
      if (rc == DFPO_OK) /* it came after the preparation had finished */
        return dfpo_err_set(err, DFPO_EINTR, "reproduce: interrupted; run it again to go on");
      *err = e;
      return DFPO_EINTR;
    }
    if (rc) {
      r->model[ti][0] = '\0';
      suite_fmt(r->base_err[ti], sizeof r->base_err[ti], "%s", e.msg);
      dfpo_warn("reproduce: task %s: %s", r->s.tasks[ti], e.msg);
      if (prepare_only) {
        *err = e;
        return rc;
      }
    }
  }
  if (prepare_only)
    return DFPO_OK;
  int ran = 0, failed = 0;
  rc = DFPO_OK;
  for (int i = 0; i < n; i++) {
    if (only_cell >= 0 && i != only_cell)
      continue;
    char final[2600], staging[2600], done[2700];
    cell_paths(r, i, final, sizeof final, staging, sizeof staging);
    suite_fmt(done, sizeof done, "%s/DONE", final);
    if (!repro_exists(done) && max_cells >= 0 && ran >= max_cells) {
      dfpo_info("reproduce: stopping after %d cells (--max-cells)", ran);
      rc = dfpo_err_set(err, DFPO_EINTR,
                        "reproduce: stopped after %d cells (--max-cells); run "
                        "it again to go on",
                        ran);
      break;
    }
    dfpo_err e;
    dfpo_err_clear(&e);
    int was_done = repro_exists(done);
    int crc = run_cell(r, i, &e);
    ran += !was_done;
    if (crc == DFPO_EINTR || crc == DFPO_ELOCKED) {
      *err = e;
      rc = crc;
      break;
    }
    failed += crc != DFPO_OK;
    if (dfpo_interrupted()) {
      rc = dfpo_err_set(err, DFPO_EINTR, "reproduce: interrupted; run it again to go on");
      break;
    }
  }
  print_matrix(r, -1);
  if (only_cell < 0) {
    /* a finished cell's staging folder is gone but its parents stay: drop
     * the empty ones (a failed or interrupted cell's folder holds files and
     * stays for the rerun). Not with --cell: array tasks run side by side,
     * and one's rmdir could remove a parent another has just made. */
    char st[2600];
    suite_fmt(st, sizeof st, "%s/.staging", r->root);
    dfpo_prune_empty_dirs(st);
  }
  if (only_cell >= 0)
    return rc ? rc : failed ? dfpo_err_set(err, DFPO_ERUNTIME, "the cell failed") : DFPO_OK;
  if (rc)
    return rc;
  int rrc = res_report(r->root, 1, 0, err);
  if (rrc)
    return rrc;
  if (failed)
    return dfpo_err_set(err, DFPO_ERUNTIME,
                        "%d of %d cells failed (reasons in %s/failed/ and the report)", failed, n,
                        r->root);
  return DFPO_OK;
}

int cmd_reproduce(int argc, char **argv) {
  /* read by the children's OpenMP at their start (this process's has read
   * its own already); a value the user set stays */
  setenv("OMP_WAIT_POLICY", "PASSIVE", 0);
  enum {
    O_SUITE = 256,
    O_CONFIG,
    O_OUT,
    O_EMIT,
    O_MAX,
    O_CELL,
    O_PREP,
    O_DEVICE,
    O_SHARED,
    O_DRY,
    O_BASE
  };
  static const struct option opts[] = {{"suite", required_argument, NULL, O_SUITE},
                                       {"config", required_argument, NULL, O_CONFIG},
                                       {"out", required_argument, NULL, O_OUT},
                                       {"set", required_argument, NULL, 's'},
                                       {"emit", required_argument, NULL, O_EMIT},
                                       {"max-cells", required_argument, NULL, O_MAX},
                                       {"cell", required_argument, NULL, O_CELL},
                                       {"prepare-only", no_argument, NULL, O_PREP},
                                       {"device", required_argument, NULL, O_DEVICE},
                                       {"shared-data", required_argument, NULL, O_SHARED},
                                       {"dry-run", no_argument, NULL, O_DRY},
                                       {"base-model", required_argument, NULL, O_BASE},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *suite_name = NULL, *file = NULL, *out = "out", *shared = NULL;
  char device_set[64] = "";
  char **sets = calloc((size_t)argc + 1, sizeof *sets);
  char **bases = calloc((size_t)argc + 1, sizeof *bases);
  if (!sets || !bases) {
    free(sets);
    free(bases);
    return DFPO_ERUNTIME;
  }
  int nsets = 0, nbases = 0, emit = 0, max_cells = -1, only_cell = -1, prep = 0, dry = 0, c,
      rc = DFPO_OK;
  cli_reset_getopt();
  while (rc == DFPO_OK && (c = getopt_long(argc, argv, ":hs:", opts, NULL)) != -1) {
    switch (c) {
    case O_SUITE:
      suite_name = optarg;
      break;
    case O_CONFIG:
      file = optarg;
      break;
    case O_OUT:
      out = optarg;
      break;
    case 's':
      sets[nsets++] = optarg;
      break;
    case O_EMIT:
      if (strcmp(optarg, "slurm"))
        rc = cli_usage_error("reproduce", "--emit knows only 'slurm', got '%s'", optarg);
      emit = 1;
      break;
    case O_MAX:
      rc = cli_integer("reproduce", optarg, 0, INT_MAX, "--max-cells", &max_cells);
      break;
    case O_CELL:
      rc = cli_integer("reproduce", optarg, 0, INT_MAX, "--cell", &only_cell);
      break;
    case O_PREP:
      prep = 1;
      break;
    case O_DEVICE:
      /* the device key, over the config and the --set before it */
      snprintf(device_set, sizeof device_set, "device=%.50s", optarg);
      sets[nsets++] = device_set;
      break;
    case O_SHARED:
      shared = optarg;
      break;
    case O_DRY:
      dry = 1;
      break;
    case O_BASE: {
      size_t tl = strcspn(optarg, "=");
      char tname[64];
      snprintf(tname, sizeof tname, "%.*s", (int)(tl < 63 ? tl : 63), optarg);
      if (!optarg[tl] || !optarg[tl + 1] || !task_find(tname))
        rc = cli_usage_error(
            "reproduce",
            "--base-model needs TASK=FOLDER (or TASK=OWNER/NAME[@REV]) with a task, not '%s'",
            optarg);
      bases[nbases++] = optarg;
      break;
    }
    case 'h':
      fputs(reproduce_usage, stdout);
      free(sets);
      free(bases);
      return DFPO_OK;
    default:
      rc = cli_bad_option("reproduce", argc, argv, c);
    }
  }
  if (!rc && optind < argc)
    rc = cli_usage_error("reproduce", "unexpected argument '%s'", argv[optind]);
  if (!rc && suite_name && file)
    rc = cli_usage_error("reproduce", "give --suite or --config, not both");
  char path[4096];
  if (!rc && suite_name) {
    if (find_suite(suite_name, path, sizeof path))
      rc = cli_usage_error("reproduce", "no suite '%s' (configs/%s.json)", suite_name, suite_name);
    file = path;
  }
  if (rc) {
    free(sets);
    free(bases);
    return rc;
  }
  repro r;
  memset(&r, 0, sizeof r);
  dfpo_err err;
  dfpo_err_clear(&err);
  /* before anything is made under the folder: a cut --out would be another */
  if (!(rc = dfpo_path_fmt(r.out, sizeof r.out, &err, "%s", out)) &&
      !(rc = repro_shared_data(shared, r.shared_data, sizeof r.shared_data, &err)))
    rc = reproduce(&r, file, (const char *const *)sets, nsets, emit, max_cells, only_cell, prep,
                   dry, (const char *const *)bases, nbases, &err);
  if (rc)
    rc = cli_fail(&err);
  dfpo_lock_release(&r.lock);
  suite_free(&r.s);
  free(r.model);
  free(r.tok);
  free(r.judge);
  free(r.base_err);
  free(r.status);
  free(sets);
  free(bases);
  return rc;
}
