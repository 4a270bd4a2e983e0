/* Internal to trainer/: the C face of Debian's libsentencepiece (prefix
 * tok_spm_), which is C++ only; trainer/tok_spm.cc is the one C++ file of
 * the project and holds nothing but this bridge. tok_load.c and
 * tok_encode.c reach it for a folder with spiece.model (T5's tokenizer).
 *
 * Ownership: a tok_spm is the caller's (tok_spm_free). Buffers the calls
 * return through pointers (ids, text) are malloc'ed and the caller's. On
 * failure the calls write a message (the library's status text) into
 * msg[msgn] and return -1; they never throw. */
#ifndef DFPO_TRAINER_TOK_SPM_H
#define DFPO_TRAINER_TOK_SPM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tok_spm tok_spm;

/* Loads a SentencePiece model file (spiece.model). */
int tok_spm_load(tok_spm **out, const char *path, char *msg, size_t msgn);
void tok_spm_free(tok_spm *s);
/* The model's own pieces (without T5's extra ids). */
int tok_spm_size(const tok_spm *s);
/* The id of piece s[0..len), or -1 (the library answers unk for an unknown
 * piece; this tells the two apart). */
int tok_spm_piece_id(const tok_spm *s, const char *p, size_t len);
/* The piece of id 0 <= id < tok_spm_size (points into s), its length in
 * *len. */
const char *tok_spm_piece(const tok_spm *s, int id, size_t *len);
/* Encodes text[0..len) into *ids (*n of them, malloc'ed). */
int tok_spm_encode(const tok_spm *s, const char *text, size_t len, int **ids, size_t *n, char *msg,
                   size_t msgn);
/* Decodes ids[n] (each below tok_spm_size) into *text (*len bytes plus a
 * NUL, malloc'ed). */
int tok_spm_decode(const tok_spm *s, const int *ids, size_t n, char **text, size_t *len, char *msg,
                   size_t msgn);
/* The model as the bytes of a spiece.model file (its serialized proto)
 * into *data (*len bytes, malloc'ed). */
int tok_spm_serialize(const tok_spm *s, char **data, size_t *len, char *msg, size_t msgn);

/* Trains a Unigram SentencePiece model of about vocab_size pieces (the
 * library's hard_vocab_limit off: a small corpus may give fewer) on the
 * text file `input` (one sentence a line) with T5's ids: pad 0, "</s>" 1,
 * "<unk>" 2, no "<s>"; the library's NFKC normaliser, character coverage
 * 1, one thread. Writes <prefix>.model and <prefix>.vocab. */
int tok_spm_train(const char *input, const char *prefix, int vocab_size, char *msg, size_t msgn);

#ifdef __cplusplus
}
#endif

#endif
