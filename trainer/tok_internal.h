/* Internal to trainer/: the tokenizer's data structures, shared by the
 * loader (tok_load.c), the encoder (tok_encode.c) and the trainer
 * (tok_train.c). Prefix: tok_. */
#ifndef DFPO_TRAINER_TOK_INTERNAL_H
#define DFPO_TRAINER_TOK_INTERNAL_H

#include "trainer/tok.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

/* GPT-2's byte-to-unicode table: byte b is written in token strings as the
 * code point byte_cp[b] (printable Latin-1 bytes stand for themselves,
 * the others are moved to U+0100..U+0143). byte_order lists the bytes in
 * the order GPT-2 gives them ids 0..255. */
void tok_byte_tables(uint32_t byte_cp[256], uint8_t byte_order[256]);
/* Decodes a token string (UTF-8 of byte-alphabet code points) into bytes;
 * returns the byte count or -1 when a character is outside the alphabet or
 * the UTF-8 is malformed. out must hold len bytes. */
long tok_string_to_bytes(const char *s, size_t len, char *out);
/* Appends the byte-alphabet UTF-8 form of bytes[0..n) to out (needs 2n+1
 * bytes); returns its length, NUL-terminated. */
size_t tok_bytes_to_string(const char *bytes, size_t n, char *out);

/* Open-addressed map from byte strings to int32 values (the vocabulary and
 * the trainer's word counts). Keys are copied into an arena. */
typedef struct tok_strmap {
  uint64_t *hash; /* 0 = empty slot */
  uint32_t *key_off, *key_len;
  int64_t *val;
  char *arena;
  size_t arena_len, arena_cap, cap, n;
} tok_strmap;

uint64_t tok_hash_bytes(const char *s, size_t n);
/* Returns a pointer to the value slot for key (inserting val0 when absent,
 * *inserted set) or NULL on allocation failure. */
int64_t *tok_strmap_put(tok_strmap *m, const char *key, size_t n, int64_t val0, int *inserted);
int64_t *tok_strmap_get(const tok_strmap *m, const char *key, size_t n);
void tok_strmap_free(tok_strmap *m);

/* The compiled GPT-2 pre-tokenisation pattern (shared, read-only). */
typedef struct tok_regex {
  pcre2_code *code;
  int jit; /* JIT compiled */
} tok_regex;

int tok_regex_init(tok_regex *re, dfpo_err *err);
void tok_regex_free(tok_regex *re);

/* Per-thread pre-tokeniser state. */
typedef struct tok_splitter {
  const tok_regex *re;
  pcre2_match_data *md;
  pcre2_match_context *mctx;
  pcre2_jit_stack *jstack;
  char *sub;       /* text with invalid bytes replaced */
  size_t *sub_map; /* sub offset -> original offset */
  size_t sub_cap;
} tok_splitter;

int tok_splitter_init(tok_splitter *s, const tok_regex *re, dfpo_err *err);
void tok_splitter_free(tok_splitter *s);
/* Calls fn(ctx, start, end) for each piece of text[0..len) in order (offsets
 * into text). A nonzero return from fn stops and is returned. */
typedef int (*tok_piece_fn)(void *ctx, const char *text, size_t start, size_t end);
int tok_split(tok_splitter *s, const char *text, size_t len, tok_piece_fn fn, void *ctx,
              dfpo_err *err);

typedef struct tok_special {
  char *text;
  size_t len;
  int32_t id;
} tok_special;

struct tok_tokenizer {
  /* vocabulary */
  size_t n_ids;      /* max id + 1 */
  size_t ids_cap;    /* allocated entries of tok_bytes and tok_len */
  char **tok_bytes;  /* per id, NULL for gaps */
  uint32_t *tok_len; /* per id */
  tok_strmap vocab;  /* bytes -> id */
  int32_t byte_id[256];
  /* merges, open addressing: key left << 32 | right, value (rank + 1) << 32 |
   * result id, 0 = empty slot */
  size_t n_merges;
  uint64_t *mkey;
  uint64_t *mval;
  size_t mcap;
  tok_special *special;
  size_t n_special;
  int32_t eot;
  tok_regex re;
  /* Encoder states (match data, JIT stack, word cache, scratch), one per
   * OpenMP thread number, created on first use; tok_encode uses slot 0. */
  struct tok_worker **workers;
  size_t n_workers;
  /* A SentencePiece model (tok_sentencepiece.c), NULL for a BPE: the model,
   * its piece count and the extra ids above it (tok_bytes and vocab hold
   * every piece and "<extra_id_N>" at id n_ids - 1 - N). spm_llama: Llama's
   * tokenizer.model (no extra ids; spm_bos "<s>", prepended by
   * TOK_ADD_SPECIAL when spm_add_bos, eot "</s>" appended when
   * spm_add_eos), else T5's spiece.model. */
  struct tok_spm *spm;
  size_t spm_pieces, spm_extra;
  int spm_llama, spm_bos, spm_add_bos, spm_add_eos;
};

/* tok_sentencepiece.c: a folder's spiece.model (T5) or tokenizer.model
 * (Llama), and encoding and decoding with it (tok_encode, tok_encode_many
 * and tok_decode send a SentencePiece tokenizer there). */
int tok_spm_load_dir(tok_tokenizer **out, const char *dir, int llama, dfpo_err *err);
int tok_spm_encode_text(tok_tokenizer *t, const char *text, size_t len, int flags, tok_ids *out,
                        dfpo_err *err);
int tok_spm_decode_ids(const tok_tokenizer *t, const int32_t *ids, size_t n, char **buf,
                       size_t *len, size_t *cap, dfpo_err *err);

/* Building a tokenizer: the loaders parse files into tokens and merges in
 * token-string form (byte alphabet); `where` names the source for errors
 * ("file:line" or a JSON path). Order: tokens, tok_finish_vocab, merges,
 * specials, tok_finish. */
/* Adds a token (its string form) with its id. */
int tok_add_token(tok_tokenizer *t, const char *s, size_t len, long long id, const char *where,
                  dfpo_err *err);
/* Adds the next merge; `where` is "file:line" or a JSON path. */
int tok_add_merge(tok_tokenizer *t, const char *left, size_t llen, const char *right, size_t rlen,
                  const char *where, dfpo_err *err);
tok_tokenizer *tok_alloc(void);
/* After the tokens: finds the 256 byte tokens (an error names a missing one)
 * and "<|endoftext|>" (a special token when present). */
int tok_finish_vocab(tok_tokenizer *t, const char *where, dfpo_err *err);
/* After the merges: makes sure the merge table exists, compiles the regex. */
int tok_finish(tok_tokenizer *t, const char *where, dfpo_err *err);
int tok_add_special(tok_tokenizer *t, const char *s, size_t len, int32_t id, dfpo_err *err);

/* Looks up the merge of (l, r): returns 1 and fills rank and result id. */
static inline int tok_merge_find(const tok_tokenizer *t, int32_t l, int32_t r, uint32_t *rank,
                                 int32_t *res) {
  uint64_t k = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
  size_t mask = t->mcap - 1;
  size_t i = (size_t)((k * 0x9E3779B97F4A7C15ull) >> 32) & mask;
  for (;;) {
    uint64_t v = t->mval[i];
    if (!v)
      return 0;
    if (t->mkey[i] == k) {
      *rank = (uint32_t)(v >> 32) - 1;
      *res = (int32_t)(uint32_t)v;
      return 1;
    }
    i = (i + 1) & mask;
  }
}

/* Test hook: words of at least n symbols are merged with the heap-based
 * algorithm instead of the quadratic scan (default 48); both give the same
 * ids. Process-wide; for tests that compare the two algorithms. */
void tok_set_heap_threshold(size_t n);

#endif
