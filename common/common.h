/* common: the plumbing every dfpo library shares.
 *
 * Prefix: dfpo_. This library sits below datasets/, trainer/, metrics/ and
 * reports/ and knows nothing of their domains: the error record and exit
 * codes, growable buffers and checked path formatting, logging to stderr,
 * progress bars, atomic file writes, the cache folder and seeded random
 * streams.
 *
 * Ownership: every object here is caller-owned storage (plain structs) unless
 * a function says it returns heap memory; such memory is freed with free().
 */
#ifndef DFPO_COMMON_H
#define DFPO_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---------------------------------------------------------------- errors */

/* Result codes. A fallible function returns one of these (0 on success) and
 * fills a dfpo_err; only main() turns the code into the process exit status,
 * which is the same number. */
enum {
  DFPO_OK = 0,
  DFPO_EUSAGE = 1,   /* bad command line, bad config key or value */
  DFPO_EDATA = 2,    /* bad or unverifiable input data, parse errors */
  DFPO_ERUNTIME = 3, /* I/O, memory, device or other runtime failure */
  /* 4 is `dfpo check`'s "a metric moved beyond seed noise" */
  DFPO_ELOCKED = 5, /* another process holds the lock of a folder this one would write */
  DFPO_EINTR = 130  /* interrupted by a signal */
};

#define DFPO_ERR_MSG_MAX 1024

/* The error record. Invariant: code == DFPO_OK iff msg is empty. The message
 * names the file, field, key path or URL the failure is about. */
typedef struct dfpo_err {
  int code;
  char msg[DFPO_ERR_MSG_MAX];
} dfpo_err;

void dfpo_err_clear(dfpo_err *e);
/* Records code and a printf-style message (truncated to fit); returns code so
 * that callers can write `return dfpo_err_set(e, DFPO_EDATA, ...)`. A NULL e
 * is allowed and only returns code. */
int dfpo_err_set(dfpo_err *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Like dfpo_err_set with strerror(errnum) appended as ": <reason>". */
int dfpo_err_errno(dfpo_err *e, int code, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Prepends context ("<context>: <old message>") to a recorded error and
 * returns its code; does nothing on a clear record. */
int dfpo_err_prefix(dfpo_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* 1-based line and column of byte offset pos in text (for messages that
 * point into a file, such as JSON syntax errors). */
void dfpo_text_position(const char *text, size_t pos, int *line, int *col);

/* A heap copy of s[0..len) in which every byte that does not start a
 * well-formed UTF-8 sequence (no overlong forms, surrogates or code points
 * past U+10FFFF) becomes U+FFFD; NULL when out of memory (caller frees). */
char *dfpo_utf8_fix(const char *s, size_t len);
/* The length of the longest prefix of s[0..len) that is well-formed UTF-8
 * (as dfpo_utf8_fix judges it): len when all of it is. */
size_t dfpo_utf8_check(const char *s, size_t len);
/* The byte offset of the first "\u0000" escape inside a string of the
 * JSON text[0..len), or -1. cJSON turns it into a NUL that ends the C
 * string early ("a\u0000b" reads as "a"), so readers whose strings are C
 * strings refuse such text rather than read a shorter string. */
long dfpo_json_nul_escape(const char *text, size_t len);

/* --------------------------------------------------------------- buffers */

/* No cap beyond what size_t can count: pass as max to keep only the overflow
 * check. */
#define DFPO_NOCAP SIZE_MAX

/* Grows a heap array so that it holds at least need elements of elem bytes.
 * arrp is the address of the array pointer (any T **: it is read and written
 * through memcpy, so T * must share void *'s representation, as it does on
 * every platform dfpo builds on); *cap counts the elements allocated. When
 * need > *cap the capacity becomes first (when *cap is 0) doubled until it
 * reaches need, clamped to max_elems. Fails, with *arrp and *cap untouched,
 * when need exceeds max_elems ("more than <max> elements"), when need * elem
 * overflows size_t, or when realloc fails (the message is then exactly "out of
 * memory", so callers can prefix their context). first 0 means 16. */
int dfpo_grow(void *arrp, size_t *cap, size_t need, size_t elem, size_t first, size_t max_elems,
              dfpo_err *err);

/* A growable byte buffer (like git's strbuf). Invariants: data is NULL (only
 * before the first growth: read it as "") or a heap block of cap bytes whose
 * first len bytes are the content followed by a NUL; len <= max. The struct
 * owns data; dfpo_buf_free releases it and dfpo_buf_detach hands it over.
 * Every append either happens whole or fails (over max, size_t overflow or
 * out of memory) and leaves the content as it was. */
typedef struct dfpo_buf {
  char *data;
  size_t len, cap;
  size_t max; /* most content bytes allowed; DFPO_NOCAP for no cap */
} dfpo_buf;

#define DFPO_BUF_INIT                                                                              \
  { NULL, 0, 0, DFPO_NOCAP }

void dfpo_buf_init(dfpo_buf *b, size_t max);
/* Makes room for extra more content bytes (and the NUL) without appending. */
int dfpo_buf_reserve(dfpo_buf *b, size_t extra, dfpo_err *err);
int dfpo_buf_add(dfpo_buf *b, const void *data, size_t n, dfpo_err *err);
int dfpo_buf_adds(dfpo_buf *b, const char *s, dfpo_err *err);
int dfpo_buf_addf(dfpo_buf *b, dfpo_err *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int dfpo_buf_vaddf(dfpo_buf *b, dfpo_err *err, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
/* Empties the content and keeps the memory for reuse. */
void dfpo_buf_reset(dfpo_buf *b);
/* Hands the NUL-terminated content over to the caller (who frees it) and
 * leaves b empty with the same max; *len (optional) receives its length.
 * NULL only when b never grew and allocating "" fails. */
char *dfpo_buf_detach(dfpo_buf *b, size_t *len);
void dfpo_buf_free(dfpo_buf *b);

/* snprintf for paths: formats into buf[n] and fails with DFPO_ERUNTIME and
 * "path too long: <the whole would-be path>" (buf then holds "") instead of
 * truncating, so that no file is ever opened under a cut name. */
int dfpo_path_fmt(char *buf, size_t n, dfpo_err *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* --------------------------------------------------------------- logging */

typedef enum { DFPO_LOG_ERROR = 0, DFPO_LOG_WARN, DFPO_LOG_INFO, DFPO_LOG_DEBUG } dfpo_log_level;

/* Messages at or below the level are written to stderr, one line each,
 * prefixed "dfpo: " (and "warning: " / "error: "). Default: INFO. The initial
 * level is read from DFPO_LOG (error|warn|info|debug) by dfpo_log_init(). */
void dfpo_log_init(void);
void dfpo_log_set_level(dfpo_log_level level);
dfpo_log_level dfpo_log_get_level(void);
void dfpo_log(dfpo_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define dfpo_error(...) dfpo_log(DFPO_LOG_ERROR, __VA_ARGS__)
#define dfpo_warn(...) dfpo_log(DFPO_LOG_WARN, __VA_ARGS__)
#define dfpo_info(...) dfpo_log(DFPO_LOG_INFO, __VA_ARGS__)
#define dfpo_debug(...) dfpo_log(DFPO_LOG_DEBUG, __VA_ARGS__)

/* -------------------------------------------------------------- progress */

/* A progress display on stderr. On a TTY it redraws one line (a bar, the
 * count, the rate and the ETA; colour unless NO_COLOR is set); otherwise it
 * prints a plain line at most every `plain_interval_s` seconds (default 10)
 * and one at the end, so logs stay readable. total 0 means unknown. */
typedef struct dfpo_progress {
  char label[64];
  uint64_t total, done;
  double t_start, t_last_draw, plain_interval_s;
  int tty, color, bytes, active;
  FILE *out;
} dfpo_progress;

/* `bytes` nonzero formats counts as B/KiB/MiB/GiB. */
void dfpo_progress_start(dfpo_progress *p, const char *label, uint64_t total, int bytes);
void dfpo_progress_update(dfpo_progress *p, uint64_t done);
void dfpo_progress_finish(dfpo_progress *p);
/* Formats the text of the line (no colour, no carriage return) into buf;
 * exposed for tests. */
void dfpo_progress_format(const dfpo_progress *p, double now, char *buf, size_t n);
/* s seconds as h:mm:ss ("0:41:10"); "--:--:--" for a negative or NaN time
 * or one past 99:59:59. */
void dfpo_format_hms(double s, char *buf, size_t n);
/* Seconds from a monotonic clock. */
double dfpo_now(void);

/* ---------------------------------------------------------- atomic files */

/* An atomic file write: data goes to "<path>.tmp.<pid>.<n>" in the same
 * folder; commit flushes, fsyncs, renames over path and fsyncs the folder, so
 * that path holds either the old content or the new, never a mix. abort (or
 * a failed commit) removes the temporary and leaves path untouched. */
typedef struct dfpo_atomic {
  FILE *fp;       /* write here between open and commit */
  char *path;     /* final name (owned) */
  char *tmp_path; /* temporary name (owned) */
} dfpo_atomic;

int dfpo_atomic_open(dfpo_atomic *a, const char *path, dfpo_err *err);
int dfpo_atomic_commit(dfpo_atomic *a, dfpo_err *err);
/* fsync of the folder holding path (best effort: some file systems refuse
 * fsync on folders), so that a rename into it is durable. */
void dfpo_fsync_parent(const char *path);
void dfpo_atomic_abort(dfpo_atomic *a);
/* Writes len bytes to path atomically. */
int dfpo_atomic_write_file(const char *path, const void *data, size_t len, dfpo_err *err);
/* Test hook: when set, dfpo_atomic_commit fails (as if the disk filled or the
 * process died) after writing and before the rename. */
void dfpo_atomic_set_fail_before_rename(int on);
/* Removes the temporaries ("<name>.tmp.<pid>.<n>") that atomic writes of
 * killed processes left in dir (not below it): those whose pid is no
 * running process on this machine and that nobody wrote to for min_age
 * seconds (a process on another machine of a shared file system writes on).
 * *removed (may be NULL) counts them. DFPO_OK also when dir is absent. */
int dfpo_atomic_sweep(const char *dir, double min_age, int *removed, dfpo_err *err);
/* Removes dir's empty subfolders, deepest first, then dir itself when it is
 * left empty; a folder holding anything stays (rmdir refuses it), so a
 * concurrent writer loses nothing. */
void dfpo_prune_empty_dirs(const char *dir);

/* Reads a whole file into a NUL-terminated heap buffer (caller frees);
 * *len (optional) receives the size without the NUL. */
int dfpo_read_file(const char *path, char **data, size_t *len, dfpo_err *err);
/* mkdir -p with mode 0777 & ~umask; existing folders are fine. */
int dfpo_mkdirs(const char *path, dfpo_err *err);

/* ----------------------------------------------------------------- locks */

/* An exclusive, non-blocking advisory lock (flock) on a folder that one
 * process writes at a time (a run folder, a suite folder, a cache entry
 * being built). The lock file is "<path>.lock" beside the folder, so that
 * the folder itself may be created, replaced or renamed under the lock; it
 * holds "pid N\nhost H\nstarted ISO-TIME\ncommand ARGS\n" of the holder,
 * who removes it as it lets go. The kernel drops the lock when the holder
 * dies, so a killed process never leaves a stale lock. The lock file's
 * descriptor is close-on-exec: child processes do not inherit it.
 *
 * Taking a lock this process already holds counts (released as often as
 * taken), so nested steps may each lock what they write. */
typedef struct dfpo_lock {
  int slot; /* internal: 1 + the process's table entry; 0 (as zeroed) when not held */
} dfpo_lock;

/* Takes the lock of path, or fails at once with DFPO_ELOCKED and a message
 * naming path, the holder (pid, host, start time, command) and the lock
 * file; other failures (an unwritable folder) are DFPO_ERUNTIME. */
int dfpo_lock_take(dfpo_lock *l, const char *path, dfpo_err *err);
/* DFPO_ELOCKED, with dfpo_lock_take's message, when another process holds
 * the lock of path now; DFPO_OK otherwise. Creates nothing: a command
 * that must not make folders before its inputs are checked asks this
 * early and takes the lock later. */
int dfpo_lock_check(const char *path, dfpo_err *err);
/* Lets go of a lock taken by dfpo_lock_take (nothing when it is not held). */
void dfpo_lock_release(dfpo_lock *l);
/* When another process holds the lock of path: 0 and its holder as one
 * phrase into buf; -1 when nobody does. */
int dfpo_lock_holder(const char *path, char *buf, size_t n);
/* The current UTC time as ISO 8601 ("2026-11-22T19:30:00Z"). */
void dfpo_utc_now(char buf[32]);

/* ----------------------------------------------------------------- cache */

/* The cache folder: $DFPO_HOME, else $XDG_CACHE_HOME/dfpo, else
 * $HOME/.cache/dfpo. Written into buf; fails when none of them is set. */
int dfpo_cache_dir(char *buf, size_t n, dfpo_err *err);

/* ------------------------------------------------------------------- rng */

/* PCG32 (O'Neill 2014, "PCG: A Family of Simple Fast Space-Efficient
 * Statistically Good Algorithms for Random Number Generation"), the
 * pcg32_random_r generator of the reference pcg-c-basic: 64-bit LCG state,
 * XSH-RR output. A (seed, stream) pair selects the sequence; different
 * streams are different LCG increments and so different sequences.
 * dfpo_rng_init(&r, 42, 54) gives 0xa15c02b7, 0x7b47f409, 0xba1d3330, ...
 * (the reference demo's output, pinned in tests/common/test_rng.c). */
typedef struct dfpo_rng {
  uint64_t state, inc;
} dfpo_rng;

/* Named purposes so that each use of randomness has its own stream. */
enum {
  DFPO_STREAM_DATA = 1,     /* data order, splits */
  DFPO_STREAM_INIT = 2,     /* parameter initialisation */
  DFPO_STREAM_SAMPLING = 3, /* token sampling */
  DFPO_STREAM_DROPOUT = 4,
  DFPO_STREAM_BOOTSTRAP = 5,
  DFPO_STREAM_EVAL_VALIDATION = 6, /* dfpo train's validation sampling */
  DFPO_STREAM_EVAL_TEST = 7        /* dfpo train's test sampling */
};

void dfpo_rng_init(dfpo_rng *r, uint64_t seed, uint64_t stream);
uint32_t dfpo_rng_u32(dfpo_rng *r);
/* Moves r on by n draws of dfpo_rng_u32 in O(log n) steps, as if it had
 * made them: a run split among threads gives each its own start. */
void dfpo_rng_advance(dfpo_rng *r, uint64_t n);
uint64_t dfpo_rng_u64(dfpo_rng *r);
/* Uniform integer in [0, bound) without modulo bias; bound > 0. */
uint32_t dfpo_rng_below(dfpo_rng *r, uint32_t bound);
/* Uniform double in [0, 1) with 53 random bits. */
double dfpo_rng_uniform(dfpo_rng *r);
/* Standard normal (Box-Muller on two uniforms; no cached second value, so
 * every call consumes exactly two u64 draws, four u32 ones). */
double dfpo_rng_normal(dfpo_rng *r);
/* Fisher-Yates shuffle of n indices/elements of the given size. */
void dfpo_rng_shuffle(dfpo_rng *r, void *base, size_t n, size_t size);

/* --------------------------------------------------------------- signals */

/* Installs SIGINT and SIGTERM handlers that only raise a flag, so that long
 * loops can stop cleanly (finishing the file they write, keeping the last
 * checkpoint) and main can exit with DFPO_EINTR. A second SIGINT kills the
 * process at once. */
void dfpo_signals_install(void);
/* Nonzero once SIGINT or SIGTERM has arrived (after dfpo_signals_install). */
int dfpo_interrupted(void);
/* Test hook: clears the flag. */
void dfpo_interrupt_reset(void);

#endif
