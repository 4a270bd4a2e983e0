/* Internal to `dfpo reproduce` (docs/suites.md): cmd_reproduce.c (the run
 * matrix and the command), repro_child.c (child processes), repro_base.c
 * (cache keys and base models), repro_slurm.c (Slurm scripts).
 * Prefix: repro_.
 *
 * Ownership: a repro holds its suite and per-task and per-cell arrays
 * (cmd_reproduce.c frees them); everything else is caller storage. */
#ifndef DFPO_HARNESS_REPRO_INTERNAL_H
#define DFPO_HARNESS_REPRO_INTERNAL_H

#include "harness/suite.h"
#include "harness/task.h"

#include <limits.h>

typedef struct repro {
  suite s;
  char root[2048];   /* DIR/<suite> */
  char out[2048];    /* DIR */
  char config[2100]; /* root/suite.json */
  char exe[PATH_MAX];
  char shared_data[2048]; /* --shared-data, else $DFPO_SHARED_DATA, else <source>/../shared/data */
  char (*model)[2300];    /* per task: base model and tokenizer, "" when unprepared */
  char (*tok)[2300];
  char (*judge)[2300];   /* per task: the judge folder the cells get ("" for their own) */
  char (*base_err)[512]; /* per task: why no base model */
  char *status;          /* per cell: '.', 'D' done, 'F' failed, 'R' running, 'S' skipped */
  double t0;
  dfpo_lock lock; /* of root, for a whole run (not --cell) */
} repro;

/* ---------------------------------------------------------- repro_child.c */

int repro_exists(const char *path);
/* Writes text to path atomically. */
int repro_write_text(const char *path, const char *text, dfpo_err *err);
/* Runs argv[] (argv[0] ignored: /proc/self/exe) with stdout and stderr into
 * log (truncated); returns its exit status (128 + signal when killed). With
 * watch, calls watch(ctx) about once a second while the child runs (to show
 * its progress). An interrupt of this process is passed on to the child. */
int repro_run_child_watch(char *const argv[], const char *log, void (*watch)(void *), void *ctx);
int repro_run_child(char *const argv[], const char *log);
/* The last "error:" line of a log, or its last line, into buf. */
void repro_last_error(const char *log, char *buf, size_t n);

/* ----------------------------------------------------------- repro_base.c */

/* The base model, tokenizer and judge of a task as model.init says:
 * pretrain (the task row's base preparation), import (GPT-2 124M from the
 * cache) or model.path and tokenizer.path as given. b->conf, b->root,
 * b->task and b->shared_data in; b->model, b->tok, b->judge out. */
int repro_prepare_base(task_base *b, dfpo_err *err);

/* ---------------------------------------------------------- repro_slurm.c */

/* Writes r->root/slurm/ (prepare, cells and report jobs, submit.sh) and
 * prints the path of submit.sh; suite_arg names the suite in comments. */
int repro_emit_slurm(const repro *r, const char *suite_arg, dfpo_err *err);

#endif
