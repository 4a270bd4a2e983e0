/* Internal to harness/: what makes a run folder whole (docs/architecture.md,
 * "Run folder"): the DONE stamp that lists its files with their sizes and
 * SHA-256, and the checked reading of its per-iteration log train.jsonl.
 * `dfpo train` writes them, `dfpo reproduce` verifies before it skips a
 * cell, `dfpo report` and `dfpo check` before they read one.
 *
 * Prefix: rundir_. Ownership: nothing here keeps memory; the cJSON a line
 * callback gets is borrowed for the call.
 */
#ifndef DFPO_HARNESS_RUNDIR_H
#define DFPO_HARNESS_RUNDIR_H

#include "common/common.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>

/* DONE's format version ("done_version"). */
#define RUNDIR_DONE_VERSION 1

/* Writes dir/DONE (atomically): {"done_version": 1, "files": [{"path",
 * "size", "sha256"}, ...]} over every regular file under dir but DONE,
 * sorted bytewise by path. */
int rundir_done_write(const char *dir, dfpo_err *err);
/* DFPO_OK when dir/DONE is there, in that format, and every file it lists
 * has its size and SHA-256; else DFPO_EDATA with the first difference
 * ("<dir>: <file>: ..."), or another code when a file cannot be read. */
int rundir_done_check(const char *dir, dfpo_err *err);

/* Called with each line of a train.jsonl once it is checked: the line's
 * object (borrowed) and its 0-based index, which is its iteration. */
typedef int (*rundir_line_fn)(void *ctx, int64_t index, const cJSON *line, dfpo_err *err);

/* Reads a train.jsonl, refusing (DFPO_EDATA, naming the file and line) a
 * NUL byte, a line that is not one whole JSON object ending in a newline,
 * a number that is not finite, and an "iteration" other than the line's
 * 0-based index. limit >= 0: only the first limit bytes are read, and the
 * file must have at least that many, ending a line there (what a resumable
 * checkpoint recorded); -1: all of it. fn (optional) sees each line;
 * *lines (optional) gets their count. */
int rundir_log_read(const char *path, int64_t limit, rundir_line_fn fn, void *ctx, int64_t *lines,
                    dfpo_err *err);
/* For a log resumed from a checkpoint taken after n lines, when the
 * checkpoint did not record the log's length (`dfpo pretrain`'s, one line
 * per "step"): checks the first n lines as rundir_log_read does, with key
 * for "iteration", and cuts the file just after them; what follows them
 * (lines written after the checkpoint, perhaps a cut one) is dropped
 * unread. Fewer than n whole lines is DFPO_EDATA; a missing file is
 * DFPO_OK only for n 0. */
int rundir_log_keep(const char *path, const char *key, int64_t n, dfpo_err *err);

/* fsync of an open log, before a checkpoint that counts its lines is
 * written; -1 with errno on failure. A file that cannot be synced at all
 * (EINVAL: a pipe or a device) is taken as synced. */
int rundir_log_sync(FILE *log);

#endif
