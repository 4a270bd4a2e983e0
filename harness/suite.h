/* Internal to harness/: suites (the matrix of (task, variant, seed) cells of
 * `dfpo reproduce`) and the collected results of a suite folder that
 * `dfpo report` and `dfpo check` read.
 *
 * Prefix: suite_ (the matrix) and res_ (results). A variant is a name in
 * suite.algos: an algorithm itself (zero-shot, sft, ppo, nlpo, dfpo) or a name
 * defined in suite.variants as "NAME=ALGO key=value ...", whose overrides are
 * laid over the suite config for that variant's cells (docs/suites.md);
 * suite.task_settings entries "TASK[/ALGO] key=value ..." are laid over it
 * first for the cells they select.
 *
 * Ownership: a suite owns its config and variants (suite_free); a res_suite
 * owns everything it holds (res_free).
 */
#ifndef DFPO_HARNESS_SUITE_H
#define DFPO_HARNESS_SUITE_H

#include "common/common.h"
#include "harness/config.h"

#include <cjson/cJSON.h>
#include <stdint.h>

#define SUITE_MAX_SETS 16

typedef struct suite_variant {
  char name[64];
  char algo[16];
  int n_sets;
  char *sets[SUITE_MAX_SETS]; /* "key=value" overrides (heap) */
} suite_variant;

/* A suite.task_settings entry "TASK[/ALGO] key=value ...": overrides for
 * the cells of a task (TASK "*": every task), or of a task and an
 * algorithm (every variant of that algorithm). */
typedef struct suite_task_sets {
  char task[64];
  char algo[16]; /* "" for every algorithm */
  int n_sets;
  char *sets[SUITE_MAX_SETS]; /* "key=value" overrides (heap) */
} suite_task_sets;

typedef struct suite {
  cfg conf;
  const char *name; /* suite.name, points into conf */
  int n_tasks, n_variants, n_seeds, n_task_sets;
  const char **tasks; /* point into conf */
  suite_variant *variants;
  suite_task_sets *task_sets;
  int64_t *seeds;
  int n_last;
  char **last; /* suite_set_last's overrides (heap), laid over every cell last */
} suite;

/* Loads a suite config (file may be NULL: the defaults) with overrides, and
 * resolves its variants; a name in suite.algos that is neither an algorithm
 * nor defined in suite.variants is a usage error. */
int suite_load(suite *s, const char *file, const char *const *sets, int nsets, dfpo_err *err);
void suite_free(suite *s);

/* The number of cells and cell i as (task, variant, seed) indices, tasks
 * outermost, seeds innermost. */
int suite_n_cells(const suite *s);
void suite_cell(const suite *s, int i, int *task, int *variant, int *seed);

/* Overrides laid over every cell after its task settings and its
 * variant's own (dfpo reproduce: the dry run's suite.dry_run list and the
 * command line's --set), so that they hold in every cell; copied. */
int suite_set_last(suite *s, const char *const *sets, int n, dfpo_err *err);

/* The overrides of the cell (task ti, variant vi) in the order they are
 * laid over the suite config: the matching suite.task_settings entries in
 * list order, then the variant's own, so that a variant's key wins, then
 * those of suite_set_last. Writes
 * at most max pointers (into s) to out; returns their count, or -1 when
 * there are more. */
int suite_cell_sets(const suite *s, int ti, int vi, const char **out, int max);

/* snprintf for names and messages that are cut at n bytes by design; a path
 * that could be cut goes through dfpo_path_fmt instead, which fails. */
void suite_fmt(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Removes a folder tree (like rm -rf); a missing path is fine. */
int suite_rmtree(const char *path, dfpo_err *err);

/* ------------------------------------------------------------- results */

#define RES_MAX_METRICS 32
#define RES_MAX_SEEDS 64
#define RES_CURVES 5

typedef struct res_curve {
  int n;                 /* points */
  double *x;             /* iteration */
  double *y[RES_CURVES]; /* per curve kind, NaN where absent (see res_curve_names) */
} res_curve;

/* the train.jsonl keys read as curves: reward, val_reward, val_nll_word,
 * kl_seq, val_ppl_ref */
extern const char *const res_curve_names[RES_CURVES];

typedef struct res_variant {
  char name[64], algo[16];
  double beta; /* ppo.beta of its config (NaN unknown) */
  /* the memory switches its cells used (eval.json's "memory": "LoRA rank
   * 4, value head on the policy's trunk, activation checkpointing"; empty:
   * none or unknown), the first cell's that used any */
  char memory[160];
  int kl_fixed;   /* ppo.kl_mode == fixed */
  int n_expected; /* seeds the suite asked for (0: unknown) */
  int n_done;
  int64_t seeds[RES_MAX_SEEDS];
  double vals[RES_MAX_SEEDS][RES_MAX_METRICS]; /* NaN where absent */
  res_curve curves[RES_MAX_SEEDS];
  int n_missing;
  char missing[RES_MAX_SEEDS][256]; /* "seed N: why" */
  /* cells under way: a run folder with train.jsonl and no DONE (in a suite
   * folder, the cell's .staging/ run); each is also one of the missing
   * cells, its reason "running, iteration k of n" when a process holds the
   * run folder's lock, else "stopped at iteration k of n ..." */
  int n_partial;
  int64_t partial_seeds[RES_MAX_SEEDS];
  int partial_live[RES_MAX_SEEDS];                                /* a process holds it */
  int64_t partial_done[RES_MAX_SEEDS], partial_of[RES_MAX_SEEDS]; /* k of n (n 0: unknown) */
  res_curve partial_curves[RES_MAX_SEEDS];                        /* to the last whole line */
} res_variant;

#define RES_MAX_JUDGES 8

typedef struct res_task {
  char name[32];
  int n_metrics;
  char metrics[RES_MAX_METRICS][32];
  /* what scored the cells: the distinct judges of their eval.json, one
   * line each (res_judge_line) */
  int n_judges;
  char judges[RES_MAX_JUDGES][1024];
  int trained_judge; /* a judge trained by the harness scored some cell */
  int n_variants;
  res_variant *variants;
  size_t cap_variants; /* elements allocated in variants */
} res_task;

typedef struct res_suite {
  char name[64];
  int n_tasks;
  res_task *tasks;
  size_t cap_tasks;  /* elements allocated in tasks */
  char *config_json; /* suite.json text, or NULL */
} res_suite;

/* Reads a suite folder (the one `dfpo reproduce` writes: suite.json and
 * <task>/<variant>/seed-<n>/ with eval.json and DONE). With suite.json the
 * matrix it names is expected and absent cells are listed as missing (with
 * the reason recorded under failed/, when there is one, or as running or
 * stopped when its .staging/ run folder has a train.jsonl); without it the
 * folders found are used (one with train.jsonl and no DONE as running or
 * stopped). With curves, train.jsonl is read too, a running cell's to its
 * last whole line. */
int res_collect(res_suite *r, const char *dir, int curves, dfpo_err *err);
/* The same from a results JSON (res_write_json's format; a baseline). */
int res_read_json(res_suite *r, const char *path, dfpo_err *err);
/* Writes the per-seed values as JSON (a baseline for `dfpo check`). */
int res_write_json(const res_suite *r, const char *path, dfpo_err *err);
void res_free(res_suite *r);
/* One line naming a judge of an eval.json's "judges" list: for a Hugging
 * Face classifier its folder, model_type, label, the SHA-256 of
 * model.safetensors and config.json and the hub revision or "local
 * folder"; for a trained judge its id and folder; for the Perspective API
 * its endpoint; for a fixed metric (an entry without "kind": CommonGen's
 * METEOR) its id; then "; scores the
 * ROLE". *trained: whether it is a judge trained by the harness. */
void res_judge_line(const cJSON *judge, char *buf, size_t n, int *trained);
/* Index of a metric or variant by name, -1 when absent. */
int res_metric_index(const res_task *t, const char *name);
int res_variant_index(const res_task *t, const char *name);
/* Column j of variant v: the values of the seeds done, packed (returns n). */
int res_values(const res_variant *v, int metric, double *out);
/* Whether higher is better (1), lower (-1), or neither (0) for a metric
 * name, and its label in tables (the name itself when unknown): from the
 * task registry and the metrics library's table (task_metric_find). */
int res_metric_direction(const char *metric);
const char *res_metric_label(const char *metric);

/* `dfpo report`: reads the suite folder dir and writes dir/report/ (tables,
 * plots when `plots`, report.md, results.json); the LaTeX tables as table*
 * when `wide`. DFPO_EDATA when the folder holds no cell at all. */
int res_report(const char *dir, int plots, int wide, dfpo_err *err);

#endif
