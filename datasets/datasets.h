/* datasets: the manifest, downloads, verification, extraction and the
 * importers that turn IMDB, RealToxicityPrompts and CommonGen into split
 * files (docs/datasets.md; docs/architecture.md, "Files and folders" and
 * "Reliability").
 *
 * Prefix: ds_. Depends on common/ only (plus libcurl, libarchive, libcrypto
 * and cJSON). Ownership: callers own what they pass in; structs filled by a
 * function and holding heap memory have a matching _free; paths written into
 * caller buffers are NUL-terminated.
 *
 * Cache layout, under dfpo_cache_dir():
 *   datasets/<name>/<version>/stamp.json      what was verified and how
 *   datasets/<name>/<version>/raw/...         the members, as in the archive
 *   datasets/<name>/<version>/splits/NAME.jsonl  the prepared split files
 *   datasets/<name>/<version>/splits/prepared.json  counts, seed, verified
 *   datasets/<name>/<version>/<file>.part     a download in progress
 */
#ifndef DFPO_DATASETS_H
#define DFPO_DATASETS_H

#include "common/common.h"

#include <cjson/cJSON.h>

/* Room for a cache path in the structs below. */
#define DS_PATH_MAX_PUBLIC 4096

/* The cache folder of one dataset version: <cache>/datasets/<name>/<version>
 * (docs/datasets.md, "The cache"). Written into buf. */
int ds_dataset_dir(const char *name, const char *version, char *buf, size_t n, dfpo_err *err);
/* The folder of an assembled asset folder: <cache>/assets/<folder> (docs/datasets.md,
 * "Asset folders"). Written into buf. */
int ds_asset_dir(const char *folder, char *buf, size_t n, dfpo_err *err);

/* ---------------------------------------------- synthetic task (ds_synth_) */

/* The synthetic task's "true language" (docs/synthetic.md): a mixture of two
 * hidden Markov models over word classes, one per latent sentiment
 * (0 negative, 1 positive). A document draws its sentiment from the prior,
 * then walks the class chain and emits one word per step; the two
 * sentiments share the transitions and differ in how likely each word is.
 * Because the model is known, the exact probability of any word sequence
 * (marginal over the hidden path and the sentiment) and the exact posterior
 * P(positive | text) are computable by the forward algorithm: the first is
 * the ground truth for degeneration, the second the task reward.
 *
 * Text form: lowercase words and the punctuation tokens "." and "," separated
 * by single spaces; ds_synth_words() splits any text on whitespace. Every
 * emission mixes in `noise` (default 1e-3) of a uniform draw over the words,
 * so that any sequence of words has a nonzero probability (ungrammatical text
 * is unlikely, not impossible). A word outside the vocabulary is emitted with
 * probability exp(oov_logp) (default 1e-6) by any state, a documented floor
 * that keeps the likelihood of degenerate text finite. docs/synthetic.md
 * describes the language. */
#define DS_SYNTH_MAX_STATES 64

typedef struct ds_synth {
  int n_states, n_words;
  const char **words; /* sorted bytewise (for lookup); points to static or owned strings */
  double *init;       /* [n_states] initial state distribution */
  double *trans;      /* [n_states * n_states] row-stochastic transitions */
  double *emit;       /* [2][n_states][n_words] emission probabilities per sentiment */
  double prior_pos;   /* P(sentiment = positive) */
  double noise;       /* share of every emission that is uniform over the words */
  double oov_logp;    /* log-probability of an out-of-vocabulary word */
  int *end_state;     /* [n_states] nonzero where a document may stop */
  void *owned;        /* allocation behind the arrays */
} ds_synth;

/* Allocates zeroed tables for a language of the given size; words must then
 * be set (sorted) and the tables filled. Free with ds_synth_free. */
int ds_synth_alloc(ds_synth *L, int n_states, int n_words, dfpo_err *err);
void ds_synth_free(ds_synth *L);

/* The movie-review language of the synthetic task: 196 English words in
 * ten classes; `seed` permutes the word frequencies within each class and
 * `lambda` (> 0) sets how strongly sentiment tilts the polar words
 * (weight * exp(lambda * sentiment_sign * polarity)). */
int ds_synth_init_reviews(ds_synth *L, uint64_t seed, double lambda, dfpo_err *err);

/* Index of a word in L->words, or -1 (out of vocabulary). */
int ds_synth_word_id(const ds_synth *L, const char *word, size_t len);

/* Splits text on ASCII whitespace into word ids (-1 for unknown words).
 * Returns the number of words; writes at most cap ids. */
int ds_synth_words(const ds_synth *L, const char *text, int *ids, int cap);

/* log p(ids | sentiment) for both sentiments (out[0] negative, out[1]
 * positive), as the probability of a prefix of a document (no stop). */
void ds_synth_logprob(const ds_synth *L, const int *ids, int n, double out[2]);

/* Marginal log p(ids) = log sum_s p(s) p(ids | s), and P(positive | ids). */
double ds_synth_log_marginal(const ds_synth *L, const int *ids, int n, double *p_pos);

/* What the task reports for one continuation of a prompt. */
typedef struct ds_synth_score {
  int n_words;       /* words of prompt+continuation minus words of prompt */
  int n_oov;         /* out-of-vocabulary words in prompt+continuation */
  double logp_cont;  /* log p(continuation | prompt) under the true language */
  double nll_word;   /* -logp_cont / max(1, n_words) */
  double p_positive; /* P(positive | prompt + continuation): the reward */
} ds_synth_score;

int ds_synth_score_text(const ds_synth *L, const char *prompt, const char *continuation,
                        ds_synth_score *out, dfpo_err *err);

/* Samples one document of the given sentiment: at least min_words words and
 * ending at a state where documents may stop; writes ids, returns the count
 * (at most cap; a document that reaches cap is cut there). */
int ds_synth_sample(const ds_synth *L, dfpo_rng *rng, int sentiment, int min_words, int *ids,
                    int cap);

/* Joins ids into text (words separated by single spaces); returns a heap
 * string the caller frees, or NULL when out of memory. */
char *ds_synth_text(const ds_synth *L, const int *ids, int n);
/* -------------------------------------------------------------- manifest */
/* A member the importer uses: a path pattern (fnmatch with FNM_PATHNAME, so
 * '*' stays within one folder), relative to the archive root, with an
 * optional file-level SHA-256 (lowercase hex). */
typedef struct ds_member {
  char *path;
  char *sha256; /* NULL when the manifest gives none */
  int required; /* an import without a matching file fails */
} ds_member;
/* One manifest entry (a dataset or an asset). Every string is owned by the
 * manifest. format: "tar.gz", "zip" or "file" (the download is the member).
 * An unpinned entry (sha256 "unknown" in the manifest) names something whose
 * revision and SHA-256 are not known: it has no URL, size 0 and sha256 NULL,
 * its note says why and what to use instead; ds_fetch refuses it. */
typedef struct ds_entry {
  char *name, *version, *kind, *importer, *file, *format;
  char **urls;
  size_t n_urls;
  uint64_t size;        /* bytes of the download (0: unpinned) */
  char *sha256;         /* of the download (NULL: unpinned) */
  int pinned;           /* sha256 and size known */
  char *folder;         /* assets: the asset folder the file is also placed in, or NULL */
  char *note;           /* why it is unpinned and what to do instead, or NULL */
  char *content_digest; /* of the members (see ds_content_digest), or NULL */
  ds_member *members;   /* for format "file": one member, the file itself */
  size_t n_members;
  uint64_t max_entries, max_bytes; /* extraction limits */
  char *license, *citation;
} ds_entry;
typedef struct ds_manifest {
  ds_entry *entries;
  size_t n;
} ds_manifest;
/* Parses manifest JSON (len bytes, need not be NUL-terminated). `source`
 * names the text in messages (a file name or "built-in manifest"). Rejects
 * unknown keys, wrong types, missing fields, bad hashes, bad names and
 * duplicate entries with a message naming source and the entry/key. On
 * failure *m is empty. */
int ds_manifest_parse(ds_manifest *m, const char *text, size_t len, const char *source,
                      dfpo_err *err);
/* Loads path; when path is NULL, the file $DFPO_MANIFEST names, else the
 * built-in manifest. */
int ds_manifest_load(ds_manifest *m, const char *path, dfpo_err *err);
void ds_manifest_free(ds_manifest *m);
/* The entry named name, or NULL. */
const ds_entry *ds_manifest_find(const ds_manifest *m, const char *name);
/* The compiled-in manifest text (static storage). */
const char *ds_manifest_builtin(size_t *len);
/* ------------------------------------------------------------- checksums */
/* SHA-256 of a file as 64 lowercase hex characters plus NUL. */
int ds_sha256_file(const char *path, char hex[65], dfpo_err *err);
/* SHA-256 of a buffer. */
void ds_sha256_buf(const void *data, size_t len, char hex[65]);
/* The content digest of the regular files under dir whose relative paths
 * match the members (all files when n_members is 0): SHA-256 of the listing
 * "<sha256-hex>  <relative path>\n" sorted bytewise, i.e. the output of
 * `find ... | LC_ALL=C sort | xargs sha256sum | sha256sum`. *files receives
 * the number of files listed (optional). */
int ds_content_digest(const char *dir, const ds_member *members, size_t n_members, char hex[65],
                      size_t *files, dfpo_err *err);
/* One regular file of a tree with its size and SHA-256 (ds_hash_tree). */
typedef struct ds_file_hash {
  char *path; /* relative to the tree's root (heap) */
  uint64_t size;
  char sha256[65];
} ds_file_hash;
/* Every regular file under dir (links are not followed, none is listed),
 * sorted bytewise by relative path, with its size and SHA-256; skip
 * (optional) names a relative path left out. *files is a heap array of *n
 * (free with ds_hash_tree_free). */
int ds_hash_tree(const char *dir, const char *skip, ds_file_hash **files, size_t *n, dfpo_err *err);
void ds_hash_tree_free(ds_file_hash *files, size_t n);
/* ----------------------------------------------------------------- stamp */
/* How an import was verified (the stamp's "verified_by"). */
typedef enum {
  DS_UNVERIFIED = 0, /* imported with --unverified */
  DS_BY_ARCHIVE = 1, /* SHA-256 of the archive or file as downloaded */
  DS_BY_CONTENT = 2, /* the manifest's content digest of the members */
  DS_BY_FILES = 3    /* every member present has a matching file SHA-256 */
} ds_method;
const char *ds_method_name(ds_method m); /* "unverified", "archive-sha256", ... */
/* stamp.json, written last by an import: what the cache holds and how it was
 * verified. raw_digest is the content digest of everything under raw/, so
 * that `verify` can re-check the cache without the archive. */
typedef struct ds_stamp {
  char name[64], version[64];
  ds_method method;
  int verified; /* method != DS_UNVERIFIED */
  char source[1024];
  char sha256[65];     /* of the imported archive or file; "" for a folder */
  char raw_digest[65]; /* content digest of raw/ */
  uint64_t files, bytes;
  char members_missing[256]; /* optional members not present, space-separated */
  char imported_at[32];      /* UTC, ISO 8601 */
} ds_stamp;
/* The folder holding an imported entry's members: <dataset dir>/raw. The one
 * rule for where fetch and import put the files and where every reader
 * (verify, prepare, ds_member_path) finds them. */
int ds_raw_dir(const ds_entry *e, char *buf, size_t n, dfpo_err *err);
/* Reads <dataset dir>/stamp.json. DFPO_EDATA with "not in the cache" when
 * absent. */
int ds_stamp_read(const ds_entry *e, ds_stamp *s, dfpo_err *err);
/* ---------------------------------------------------------------- import */
/* Imports a local archive (.tar.gz, .tgz, .tar, .zip), a folder or a single file
 * into the cache: safe extraction of the members (see ds_extract), then
 * verification by archive SHA-256, content digest, or file SHA-256s, in that
 * order. Data that matches none is refused (DFPO_EDATA) unless
 * allow_unverified, and is then stamped "unverified". The previous cache
 * content is replaced only after success; prepared splits are removed. */
int ds_import(const ds_entry *e, const char *path, int allow_unverified, ds_stamp *out,
              dfpo_err *err);
/* An asset with a folder (format "file"): places its imported file in
 * ds_asset_dir(e->folder) under its file name (a hard link, a copy across
 * file systems), replacing what was there. ds_import calls it after each
 * import; dfpo fetch's "already in the cache" calls it too, so that a cache
 * filled before folders existed gets them. */
int ds_asset_place(const ds_entry *e, dfpo_err *err);
/* Re-checks the cache: the stamp exists and raw/ still has the recorded
 * digest (and, for a content- or file-verified import, the manifest's). */
int ds_verify(const ds_entry *e, ds_stamp *out, dfpo_err *err);
/* Safe extraction of an archive into dest (which must exist): only entries
 * whose path matches a member are written (all regular files when
 * n_members is 0). Refused, with DFPO_EDATA naming the entry: absolute paths,
 * ".." components, links whose target leaves dest, device files, FIFOs and
 * sockets, duplicate members, more than max_entries entries or more than
 * max_bytes bytes written (0: no limit). Links that stay inside are skipped.
 * files and bytes (optional) receive what was written. */
int ds_extract(const char *archive, const char *dest, const ds_member *members, size_t n_members,
               uint64_t max_entries, uint64_t max_bytes, size_t *files, uint64_t *bytes,
               dfpo_err *err);
/* ----------------------------------------------------------------- fetch */
typedef struct ds_fetch_opts {
  const char *const *mirrors; /* base URLs tried first, in order; <base>/<file> */
  size_t n_mirrors;
  long connect_timeout_s; /* DFPO_FETCH_CONNECT_TIMEOUT, default 30 */
  long stall_timeout_s;   /* below low_speed_bytes/s for this long: DFPO_FETCH_STALL_TIMEOUT, 60 */
  long low_speed_bytes;   /* default 1 */
  int retries;            /* extra attempts per source on transient errors: DFPO_FETCH_RETRIES, 4 */
  long backoff_ms;        /* first backoff, doubled per attempt: DFPO_FETCH_BACKOFF_MS, 1000 */
  long backoff_max_ms;    /* cap: 60000 */
  int progress;           /* draw a progress bar on stderr */
  const char *bearer;     /* sent as "Authorization: Bearer" (never logged, not sent to another
                             host after a redirect), or NULL */
} ds_fetch_opts;
/* Defaults, then the DFPO_FETCH_* environment variables; mirrors are left
 * empty (the caller adds --mirror and DFPO_MIRROR). */
void ds_fetch_opts_init(ds_fetch_opts *o);
/* Downloads into dest from the sources in order: body to "<dest>.part"
 * (resumed with an HTTP Range request when it exists), retried with
 * exponential backoff on transient failures (connection errors, timeouts,
 * HTTP 5xx and 429), refused when larger than size, and renamed to dest only
 * when it has exactly size bytes and the SHA-256. A source that fails for
 * good (4xx, wrong bytes) is reported and the next one is tried; wrong bytes
 * are deleted. used (optional) receives the URL that worked. */
int ds_download(const char *const *urls, size_t n_urls, const char *dest, uint64_t size,
                const char *sha256, const ds_fetch_opts *o, char *used, size_t n_used,
                dfpo_err *err);
/* Fetches an entry into the cache: download (mirrors first, then the
 * manifest's URLs) into the dataset folder, then ds_import of the verified
 * download, which is deleted afterwards. */
int ds_fetch(const ds_entry *e, const ds_fetch_opts *o, ds_stamp *out, dfpo_err *err);
/* ------------------------------------------- Hugging Face hub (ds_hub_) */
/* Models named on the Hugging Face hub (docs/datasets.md, "Hub models"):
 * "owner/name" or "owner/name@revision" (a branch, a tag or a 40-hex
 * commit; "main" when none is given). The hub is $HF_ENDPOINT (default
 * https://huggingface.co); $HF_TOKEN, when set, goes along as a bearer token
 * and nowhere else; HF_HUB_OFFLINE or DFPO_HUB_OFFLINE (set, and not 0)
 * forbids any request.
 *
 * Cache, under dfpo_cache_dir():
 *   hub/<owner>--<name>/<commit>/           a complete model folder: the files
 *                                           and dfpo-hub.json (what they are)
 *   hub/<owner>--<name>/<commit>.partial/   a download under way (resumed)
 *   hub/<owner>--<name>/refs/<revision>     the commit its last fetch found
 *                                           ('/' written as %2F)
 * A folder appears whole (renamed from .partial after every file is
 * verified) or not at all. */
#define DS_HUB_NAME_MAX 96
#define DS_HUB_REV_MAX 256
#define DS_HUB_PATH_MAX 256
typedef struct ds_hub_ref {
  char owner[DS_HUB_NAME_MAX + 1], name[DS_HUB_NAME_MAX + 1];
  char revision[DS_HUB_REV_MAX]; /* as asked, "main" when none was */
  int explicit_revision;         /* the name carried "@revision" */
} ds_hub_ref;
/* One file of a model: its size, SHA-256, and how the hub states it (an LFS
 * file by its SHA-256, any other by git's blob id). */
typedef struct ds_hub_file {
  char path[DS_HUB_PATH_MAX];
  uint64_t size;
  char sha256[65];
  char git_sha1[41]; /* "" for an LFS file */
  int lfs;
} ds_hub_file;
/* A model at one commit. files is heap memory: ds_hub_model_free. */
typedef struct ds_hub_model {
  ds_hub_ref ref;
  char commit[41];
  char dir[DS_PATH_MAX_PUBLIC]; /* the cache folder */
  ds_hub_file *files;
  size_t n_files;
  int fetched; /* 1: downloaded by this call; 0: the cache had it */
} ds_hub_model;
void ds_hub_model_free(ds_hub_model *m);
/* 1 when s is a hub name (owner/name[@revision] with the hub's rules: letters,
 * digits, '-', '_', '.', at most 96 each, no "--" or ".."); fills r. */
int ds_hub_parse(const char *s, ds_hub_ref *r);
/* 1 when rev is a commit (40 lowercase hex digits). */
int ds_hub_is_commit(const char *rev);
/* 1 when HF_HUB_OFFLINE or DFPO_HUB_OFFLINE forbids requests. */
int ds_hub_offline(void);
/* Fetches a model into the cache: asks the hub which commit the revision is
 * and which files it holds, takes the files the harness reads (config.json;
 * model.safetensors, else its index and shards, else pytorch_model.bin,
 * else its index and shards (torch.save's zip format; an info line says so); the tokenizer files),
 * downloads each (resumed, retried; o: NULL for the defaults), refuses any whose size, SHA-256
 * (LFS) or git blob id differs from the hub's, installs the folder and records the revision's
 * commit in refs. A commit already in the cache is checked whole and kept
 * unless force. Offline: what the cache holds, checked. */
int ds_hub_fetch(const char *spec, const ds_fetch_opts *o, int force, ds_hub_model *out,
                 dfpo_err *err);
/* The one place a model or judge argument becomes a local path: an
 * existing file or folder stays as it is; a hub name becomes its cache
 * folder: the commit (or, for a branch or tag, the commit its last fetch
 * recorded, without asking the hub) when the cache has it, else fetched
 * now (ds_hub_fetch). Anything else fails naming the path. */
int ds_hub_resolve(const char *spec, const ds_fetch_opts *o, char *dir, size_t n, dfpo_err *err);
/* The lock file (docs/datasets.md, "The lock file"): writes or replaces
 * m's entry, keyed by name and revision, in the lock at path (created when
 * absent), atomically. */
int ds_hub_lock_add(const char *path, const ds_hub_model *m, dfpo_err *err);
/* Fetches exactly the lock's commits and files: a cache folder of the commit
 * must hold the lock's bytes (SHA-256), else each file is downloaded and
 * refused unless it has the lock's size, SHA-256 and blob id; force
 * downloads again. refs record each entry's revision. done (optional) is
 * called for each model. */
typedef void (*ds_hub_replay_fn)(void *ctx, const ds_hub_model *m);
int ds_hub_lock_replay(const char *path, const ds_fetch_opts *o, int force, ds_hub_replay_fn done,
                       void *ctx, dfpo_err *err);
/* ----------------------------------------------------------------- JSONL */
/* A JSONL reader: one JSON object per line; empty lines are skipped. */
typedef struct ds_jsonl {
  FILE *fp;
  char *path; /* owned */
  char *line; /* owned buffer */
  size_t cap;
  size_t lineno;
} ds_jsonl;
int ds_jsonl_open(ds_jsonl *j, const char *path, dfpo_err *err);
/* The next object (caller frees with cJSON_Delete), or *obj = NULL at the
 * end. A line that is not one JSON object (syntax error, trailing text, a NUL
 * byte, another type) fails with DFPO_EDATA naming "<path>:<line>". */
int ds_jsonl_next(ds_jsonl *j, cJSON **obj, dfpo_err *err);
void ds_jsonl_close(ds_jsonl *j);
/* Parses one line of len bytes (no newline) as ds_jsonl_next does; name and
 * lineno go into messages. */
int ds_jsonl_parse_line(const char *line, size_t len, const char *name, size_t lineno, cJSON **obj,
                        dfpo_err *err);
/* --------------------------------------------------------------- prepare */
#define DS_MAX_SPLITS 8
#define DS_DEFAULT_SEED 42
typedef struct ds_split_info {
  char name[32];     /* "train", "validation", "test", or an extra file */
  size_t records;    /* lines in the file */
  size_t references; /* total references over the records */
} ds_split_info;
typedef struct ds_prepared {
  char dir[4096]; /* the splits folder */
  int verified;   /* from the stamp: unverified data stays marked */
  uint64_t seed;
  ds_split_info splits[DS_MAX_SPLITS];
  int n_splits;
} ds_prepared;
/* Parses the imported members into the split files (docs/datasets.md),
 * written atomically, then splits/prepared.json. Seeded splits use seed
 * (DS_DEFAULT_SEED unless the caller has another). Fails with DFPO_EDATA
 * when the dataset is not imported, or naming the file and line of a bad
 * record. */
int ds_prepare(const ds_entry *e, uint64_t seed, ds_prepared *out, dfpo_err *err);
/* Reads splits/prepared.json of a prepared dataset. */
int ds_prepared_read(const ds_entry *e, ds_prepared *out, dfpo_err *err);
/* The path of a member file in the cache (assets: the file itself), checking
 * that the entry is imported. *verified (optional) receives the stamp's
 * verdict. */
int ds_member_path(const ds_entry *e, const char *member, char *buf, size_t n, int *verified,
                   dfpo_err *err);

#endif
