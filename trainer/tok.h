/* trainer/tok.h: the tokenizer (prefix tok_). Depends on common/ only.
 * Ownership: a loaded tokenizer is the caller's (tok_free); id vectors are
 * the caller's (tok_ids_free). */
#ifndef DFPO_TRAINER_TOK_H
#define DFPO_TRAINER_TOK_H

#include "common/common.h"

/* GPT-2's byte-level BPE (Radford et al. 2019; OpenAI's gpt-2/src/encoder.py),
 * exact to the reference: text is split by the GPT-2 pattern (PCRE2, UTF-8
 * and Unicode properties), each piece's bytes are mapped to byte tokens and
 * merged by rank. Bytes that are not valid UTF-8 split like a character that
 * is neither letter, number nor space (as Python's surrogateescape decoding
 * makes them) and encode to their own byte tokens, so every byte string
 * round-trips. docs/tokenizer.md describes the details.
 *
 * A tok_tokenizer is immutable after loading except for its encoder states
 * (word cache and scratch space, one per OpenMP thread, kept from call to
 * call): so tok_encode and tok_encode_many are one call at a time per object
 * (tok_encode_many itself runs on all threads). Loaded tokenizers are
 * cheap to have one per thread if more concurrency is needed. */
typedef struct tok_tokenizer tok_tokenizer;

/* A growable id vector; zero-initialise, free with tok_ids_free. */
typedef struct tok_ids {
  int32_t *ids;
  size_t n, cap;
} tok_ids;

void tok_ids_free(tok_ids *v);

/* Encode flags. Without TOK_ALLOW_SPECIAL a special token's text
 * ("<|endoftext|>") is encoded as ordinary text. TOK_ADD_SPECIAL adds what
 * the tokenizer's conventions add around a text (Hugging Face's
 * add_special_tokens): Llama's bos "<s>" before it (add_bos_token, default
 * true) and eos "</s>" after it (add_eos_token, default false); GPT-2's
 * and T5's tokenizers add nothing. */
enum { TOK_ALLOW_SPECIAL = 1, TOK_ADD_SPECIAL = 2 };

/* Loads a tokenizer from `path`: a folder holding encoder.json + vocab.bpe
 * (OpenAI's files), vocab.json + merges.txt (Hugging Face's slow form),
 * spiece.model (T5's SentencePiece, below) or tokenizer.json (Hugging
 * Face's fast form), or a tokenizer.json file itself.
 *
 * T5's SentencePiece: the model is read and run by libsentencepiece
 * (encoding exactly as its SentencePieceProcessor::Encode, decoding as its
 * Decode); T5's conventions on top: pad 0, eos "</s>" 1 (what tok_eot_id
 * answers), unk 2, no bos, and "<extra_id_N>" as the top ids (N = 0 the
 * largest; tokenizer_config.json's "extra_ids", default 100). tok_encode
 * adds no eos; with TOK_ALLOW_SPECIAL the texts "<extra_id_N>", "</s>" and
 * "<pad>" are their ids. tok_save_hf writes it as T5's files;
 * tok_merge_count is 0.
 *
 * Llama's SentencePiece: a folder with tokenizer.model and no spiece.model
 * (before its tokenizer.json), read and run by libsentencepiece the same
 * way (BPE with byte fallback: a character outside the pieces becomes its
 * UTF-8 bytes' pieces "<0xNN>"), with Llama's conventions: unk "<unk>" 0,
 * bos "<s>" 1, eos "</s>" 2 (the model's own ids; tok_eot_id answers eos,
 * tok_bos_id bos), no extra ids; TOK_ADD_SPECIAL adds bos and eos as
 * tokenizer_config.json's add_bos_token (default true) and add_eos_token
 * (default false) say; with TOK_ALLOW_SPECIAL the texts "<s>", "</s>" and
 * "<unk>" are their ids; decoding drops bos and eos (the library's
 * control pieces). tok_save_hf writes tokenizer.model and a
 * LlamaTokenizer tokenizer_config.json.
 * Errors name the file, and the line for merges files and malformed JSON.
 * *out is the caller's; free with tok_free. */
int tok_load(tok_tokenizer **out, const char *path, dfpo_err *err);
/* A vocabulary JSON object (token -> id) and a merges file. */
int tok_load_files(tok_tokenizer **out, const char *vocab_json, const char *merges, dfpo_err *err);
/* Hugging Face tokenizer.json with a "BPE" model. */
int tok_load_hf_json(tok_tokenizer **out, const char *path, dfpo_err *err);
void tok_free(tok_tokenizer *t);
/* Whether the folder dir holds tokenizer files tok_load would read. */
int tok_folder_has_files(const char *dir);
/* Writes t as Hugging Face's GPT-2 tokenizer files into the existing folder
 * dir, each atomically: vocab.json (token string -> id), merges.txt
 * ("#version: 0.2", then the merges by rank; transformers skips the first
 * line), tokenizer_config.json (GPT2Tokenizer, model_max_length, no prefix
 * space, no clean-up of spaces on decoding, <|endoftext|> as bos, eos and
 * unk and as a special added token) and special_tokens_map.json. Only
 * <|endoftext|> is written as special; t must have it (else DFPO_EUSAGE).
 * A SentencePiece tokenizer is written as T5's files instead: spiece.model
 * (the loaded model's own bytes, as libsentencepiece serializes it),
 * tokenizer_config.json (T5Tokenizer, extra_ids, model_max_length, </s>,
 * <unk> and <pad>) and special_tokens_map.json. tok_load reads the folder
 * back to the same ids. */
int tok_save_hf(const tok_tokenizer *t, const char *dir, int model_max_length, dfpo_err *err);

/* One more than the largest id. */
size_t tok_vocab_size(const tok_tokenizer *t);
/* The id of the token whose bytes are s[0..len) ("<s>", "</s>", "<pad>"
 * of RoBERTa's vocabulary), or -1. */
int32_t tok_token_id(const tok_tokenizer *t, const char *s, size_t len);
size_t tok_merge_count(const tok_tokenizer *t);
/* The id of "<|endoftext|>", or -1 when the vocabulary lacks it. */
int32_t tok_eot_id(const tok_tokenizer *t);
/* The id TOK_ADD_SPECIAL puts before a text (Llama's "<s>" with
 * add_bos_token), else -1. */
int32_t tok_bos_id(const tok_tokenizer *t);
/* The tokenizer's own beginning-of-sequence token, whether or not
 * TOK_ADD_SPECIAL adds it (Llama's "<s>", also with add_bos_token false),
 * else -1 (GPT-2's and T5's tokenizers have none of their own). */
int32_t tok_bos_token_id(const tok_tokenizer *t);
/* The bytes of token id (not NUL-terminated; points into t), or NULL for an
 * id outside the vocabulary. */
const char *tok_token_bytes(const tok_tokenizer *t, int32_t id, size_t *len);

/* Appends the ids of text[0..len) to out. */
int tok_encode(tok_tokenizer *t, const char *text, size_t len, int flags, tok_ids *out,
               dfpo_err *err);
/* Encodes n documents on all OpenMP threads, one word cache per thread
 * (kept in t for the next call); outs[i] (zero-initialised by the caller)
 * receives document i's ids. The result is the same as n calls to
 * tok_encode. */
int tok_encode_many(tok_tokenizer *t, const char *const *texts, const size_t *lens, size_t n,
                    int flags, tok_ids *outs, dfpo_err *err);
/* Appends the bytes of ids to *buf (heap, grown with realloc, caller frees;
 * *len and *cap describe it, zero-initialise both with *buf NULL). An id
 * outside the vocabulary is an error naming it and its position. */
int tok_decode(const tok_tokenizer *t, const int32_t *ids, size_t n, char **buf, size_t *len,
               size_t *cap, dfpo_err *err);

/* Trains a byte-level BPE on the files in `corpus` (each read whole and split
 * by the GPT-2 pattern) until the vocabulary has vocab_size entries: the 256
 * byte tokens (in GPT-2's order), one per merge, and "<|endoftext|>" last.
 * Each step merges the most frequent adjacent pair; ties go to the pair whose
 * (left bytes, right bytes) is smallest bytewise. Writes encoder.json and
 * vocab.bpe into out_dir (created; files written atomically). Deterministic.
 * A merge whose bytes are already a token reuses that token. Stops early,
 * with a warning, when no pair is left. *merges_done (optional) receives the
 * number of merges learned. */
int tok_train(const char *const *corpus, size_t n_corpus, size_t vocab_size, const char *out_dir,
              size_t *merges_done, dfpo_err *err);

/* Trains T5's tokenizer: a Unigram SentencePiece model of about vocab_size
 * pieces on the text file corpus (one sentence a line), by
 * libsentencepiece's own trainer (SentencePieceTrainer; hard_vocab_limit
 * off, so a small corpus may give fewer pieces), with T5's ids (pad 0,
 * "</s>" 1, "<unk>" 2, no "<s>"), the library's NFKC normaliser, character
 * coverage 1 and one thread (the model depends on the corpus and the
 * settings alone). Writes T5's files into out_dir (made): spiece.model,
 * tokenizer_config.json (extra_ids "<extra_id_N>" above the pieces,
 * model_max_length 512) and special_tokens_map.json, which tok_load reads.
 * spiece.model is the library's write, not atomic: callers that need the
 * folder whole train into a temporary one and rename it. */
int tok_train_spm(const char *corpus, size_t vocab_size, size_t extra_ids, const char *out_dir,
                  dfpo_err *err);

/* ---------------------------------------------------------- WordPiece */

/* BERT's tokenizer, as Hugging Face's fast BertTokenizerFast runs it (the
 * tokenizers library's BertNormalizer, BertPreTokenizer and WordPiece):
 *   1. clean: drop NUL, U+FFFD (also what invalid UTF-8 bytes decode to)
 *      and control characters (categories Cc, Cf, Cn, Co, Cs except tab,
 *      newline and carriage return); other white space becomes ' ';
 *   2. put spaces around CJK ideographs (the CJK Unified Ideographs blocks
 *      and extensions A-E, the compatibility ideographs);
 *   3. strip accents (when strip_accents, by default when lowercase): NFD,
 *      then drop non-spacing marks (Mn);
 *   4. lower-case (when lowercase): each character's full lower-case
 *      mapping on its own (so a final capital sigma becomes σ, not ς, as
 *      in the fast tokenizer; the slow Python one lower-cases whole words);
 *   5. split on white space and isolate each punctuation character (ASCII
 *      punctuation and Unicode categories P*);
 *   6. WordPiece each word: longest match first from the start, pieces
 *      after the first prefixed with "##"; a word of more than 100
 *      characters, or with a part no piece matches, is [UNK].
 * Unicode data is ICU's. docs/tokenizer.md describes the details.
 * Immutable after loading: encoding is thread-safe. */
typedef struct tok_wordpiece tok_wordpiece;

/* Reads vocab.txt (one token per line, id = line number from 0; lines end
 * at "\r\n", "\r" or "\n", as Python's text mode reads them; the last line
 * may lack its end). The vocabulary must hold unk ("[UNK]" for BERT).
 * *out is the caller's (tok_wp_free). */
int tok_wp_load(tok_wordpiece **out, const char *vocab_txt, int lowercase, int strip_accents,
                const char *unk, dfpo_err *err);
/* The same from a fast tokenizer's tokenizer.json: its model (type
 * "WordPiece") gives the vocabulary (token -> id; ids may skip numbers, each
 * id and token once) and the unknown token; a continuing_subword_prefix
 * other than "##" or a max_input_chars_per_word other than 100 is refused.
 * The normalizer's settings are the caller's to read (lowercase,
 * strip_accents). */
int tok_wp_load_json(tok_wordpiece **out, const char *tokenizer_json, int lowercase,
                     int strip_accents, dfpo_err *err);
void tok_wp_free(tok_wordpiece *w);
size_t tok_wp_vocab_size(const tok_wordpiece *w);
/* The id of token (NUL-terminated), or -1. */
int32_t tok_wp_id(const tok_wordpiece *w, const char *token);
/* The token of id (NUL-terminated, points into w), or NULL. */
const char *tok_wp_token(const tok_wordpiece *w, int32_t id);
/* Appends the ids of text[0..len) (UTF-8; invalid bytes read as U+FFFD)
 * to out, without [CLS]/[SEP]. */
int tok_wp_encode(const tok_wordpiece *w, const char *text, size_t len, tok_ids *out,
                  dfpo_err *err);

#endif
