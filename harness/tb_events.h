/* TensorBoard event files: the scalars of a run, written as TensorBoard's
 * readers expect them, so that `tensorboard --logdir RUNS` draws live
 * curves while `dfpo train` runs.
 *
 * Prefix: tb_. No Debian library writes them (TensorBoard is Python), so the
 * format is written here: a file of records, each
 *   uint64 length (little-endian), uint32 masked CRC-32C of those 8 bytes,
 *   the data, uint32 masked CRC-32C of the data,
 * where masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8, and the data is a
 * serialized tensorflow.Event protocol buffer: wall_time (field 1, double),
 * step (2, int64), and either file_version (3, "brain.Event:2", the first
 * record) or summary (5) holding one Summary.Value per scalar: tag (1,
 * string) and simple_value (2, float).
 *
 * A tb_writer owns its FILE; tb_close releases it. */
#ifndef DFPO_HARNESS_TB_EVENTS_H
#define DFPO_HARNESS_TB_EVENTS_H

#include <stdint.h>

#include "common/common.h"

typedef struct tb_writer tb_writer;

/* Creates DIR/events.out.tfevents.<unix seconds>.<host>.<pid> and writes
 * its first record (file_version). */
int tb_open(tb_writer **out, const char *dir, dfpo_err *err);
/* One event at `step` with the n scalars tags[i] = values[i]; flushed. */
int tb_scalars(tb_writer *w, int64_t step, const char *const *tags, const double *values, int n,
               dfpo_err *err);
/* Flushes, syncs and closes; NULL is a no-op. */
int tb_close(tb_writer *w, dfpo_err *err);
/* CRC-32C (Castagnoli, reflected, as TensorBoard's records use), for tests. */
uint32_t tb_crc32c(const void *data, size_t n);

#endif
