/* trainer: everything that turns text into a model and a model into a
 * policy: the compute backends (ops_), the tokenizer (tok_), the GPT-2 model
 * (gpt2_), sampling, optimisation, checkpoints and the RL algorithms (rl_).
 *
 * Depends on common/ only. Ownership: structs filled by a function belong to
 * the caller; strings the library returns in such structs point into the
 * struct itself unless a comment says otherwise.
 */
#ifndef DFPO_TRAINER_H
#define DFPO_TRAINER_H

#include "common/common.h"

/* ------------------------------------------------------ backends (ops_) */

/* What the compute backends of this build offer on this machine. */
typedef struct ops_env_info {
  int cpu_threads;       /* OpenMP threads the CPU backend uses */
  int online_cpus;       /* processors the OS reports online */
  int blas_threads;      /* threads OpenBLAS uses */
  char blas[256];        /* OpenBLAS build configuration and core */
  int cuda_compiled;     /* the CUDA backend is part of this build */
  int cuda_devices;      /* usable devices (0 when none) */
  char cuda_runtime[64]; /* CUDA runtime version, when compiled in */
  char cuda_device[256]; /* first device's name and memory, when usable */
  char cuda_reason[512]; /* why no device is usable, in the driver's words */
} ops_env_info;

/* Fills info; never fails: what cannot be learned is reported in the text
 * fields. Safe on machines without a GPU or driver. */
void ops_env_probe(ops_env_info *info);

/* ----------------------------------------------------- tokenizer (tok_) */

/* GPT-2's byte-level BPE (Radford et al. 2019; OpenAI's gpt-2/src/encoder.py),
 * exact to the reference: text is split by the GPT-2 pattern (PCRE2, UTF-8
 * and Unicode properties), each piece's bytes are mapped to byte tokens and
 * merged by rank. Bytes that are not valid UTF-8 split like a character that
 * is neither letter, number nor space (as Python's surrogateescape decoding
 * makes them) and encode to their own byte tokens, so every byte string
 * round-trips. docs/tokenizer.md describes the details.
 *
 * A tok_tokenizer is immutable after loading except for its word cache and
 * scratch space: tok_encode uses them, so one thread at a time per object;
 * tok_encode_many runs its own per-thread state and may be called alone. */
typedef struct tok_tokenizer tok_tokenizer;

/* A growable id vector; zero-initialise, free with tok_ids_free. */
typedef struct tok_ids {
  int32_t *ids;
  size_t n, cap;
} tok_ids;

void tok_ids_free(tok_ids *v);

/* Encode flags. Without TOK_ALLOW_SPECIAL a special token's text
 * ("<|endoftext|>") is encoded as ordinary text. */
enum { TOK_ALLOW_SPECIAL = 1 };

/* Loads a tokenizer from `path`: a folder holding encoder.json + vocab.bpe
 * (OpenAI's files), vocab.json + merges.txt (Hugging Face's slow form) or
 * tokenizer.json (Hugging Face's fast form), or a tokenizer.json file itself.
 * Errors name the file, and the line for merges files and malformed JSON.
 * *out is the caller's; free with tok_free. */
int tok_load(tok_tokenizer **out, const char *path, dfpo_err *err);
/* A vocabulary JSON object (token -> id) and a merges file. */
int tok_load_files(tok_tokenizer **out, const char *vocab_json, const char *merges, dfpo_err *err);
/* Hugging Face tokenizer.json with a "BPE" model. */
int tok_load_hf_json(tok_tokenizer **out, const char *path, dfpo_err *err);
void tok_free(tok_tokenizer *t);

/* One more than the largest id. */
size_t tok_vocab_size(const tok_tokenizer *t);
size_t tok_merge_count(const tok_tokenizer *t);
/* The id of "<|endoftext|>", or -1 when the vocabulary lacks it. */
int32_t tok_eot_id(const tok_tokenizer *t);
/* The bytes of token id (not NUL-terminated; points into t), or NULL for an
 * id outside the vocabulary. */
const char *tok_token_bytes(const tok_tokenizer *t, int32_t id, size_t *len);

/* Appends the ids of text[0..len) to out. */
int tok_encode(tok_tokenizer *t, const char *text, size_t len, int flags, tok_ids *out,
               dfpo_err *err);
/* Encodes n documents on all OpenMP threads, one cache per thread; outs[i]
 * (zero-initialised by the caller) receives document i's ids. The result is
 * the same as n calls to tok_encode. */
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

/* Test hook: words of at least n symbols are merged with the heap-based
 * algorithm instead of the quadratic scan (default 48); both give the same
 * ids. */
void tok_set_heap_threshold(size_t n);

/* ---------------------------------------------------- GPT-2 (gpt2_) */

/* ------------------------------------------------------- RL (rl_) */

/* The arithmetic of the RL algorithms (DESIGN.md section 7), over plain
 * arrays so that it can be tested against hand computations and brute force
 * and shared by every backend. docs/algorithms.md gives the equations.
 * Batched arrays are [B, T] row-major; lengths[b] is the number of valid
 * tokens of row b (positions >= lengths[b] are padding: outputs there are 0).
 * A vocabulary-sized mask is one byte per token (1 = in the set). */

/* Generalised advantage estimation (Schulman et al. 2016) per row:
 * delta_t = r_t + gamma V_{t+1} - V_t with V = 0 after the last valid token
 * (the episode ends there), A_t = sum_k (gamma lambda)^k delta_{t+k},
 * returns_t = A_t + V_t. adv and ret are written (they may not alias the
 * inputs). */
void rl_gae(const float *rewards, const float *values, const int *lengths, int B, int T,
            float gamma, float lambda, float *adv, float *ret);

/* RL4LMs' per-token PPO reward: r_t = -beta (logp_old_t - logp_ref_t), plus
 * the task reward R[b] at the last valid token. Padding gets 0. */
void rl_kl_rewards(const float *logp_old, const float *logp_ref, const float *task_reward,
                   const int *lengths, int B, int T, float beta, float *rewards);

/* Mean and sample standard deviation (n - 1 in the denominator, as
 * torch.std) of the valid entries, then x = (x - mean) / (sd + 1e-8) on
 * them. Fewer than two valid entries: only the mean is removed. */
void rl_normalize(float *x, const int *lengths, int B, int T);

/* The adaptive KL controller of DESIGN.md section 7:
 * beta * (1 + 0.1 * clip((kl - target) / target, -0.2, 0.2)). */
double rl_kl_adaptive(double beta, double kl, double target);

/* PPO's clipped surrogate over n tokens with weights w (1 valid, 0 padding;
 * may be NULL for all valid): returns the mean over valid tokens of
 * -min(rho A, clip(rho, 1 - eps, 1 + eps) A), rho = exp(logp - logp_old);
 * dlogp[i] = d loss / d logp[i] (already divided by the count). *clipfrac
 * (may be NULL) gets the share of valid tokens where the clip was active. */
double rl_ppo_policy_loss(const float *logp, const float *logp_old, const float *adv,
                          const float *w, int n, float eps, float *dlogp, double *clipfrac);

/* The plain policy-gradient term: mean over valid tokens of -logp A (DfPO's
 * policy loss with truncated advantages); dlogp[i] = -w_i A_i / count. */
double rl_pg_loss(const float *logp, const float *adv, const float *w, int n, float *dlogp);

/* DfPO's KL-masking sets for one state (DESIGN.md section 7):
 * mplus[a] = pi_theta(a) <= pi_ref(a), mminus[a] = pi_theta(a) >= pi_ref(a),
 * given the two distributions as log-probabilities over V tokens. */
void rl_dfpo_sets(const float *logp_theta, const float *logp_ref, int V, unsigned char *mplus,
                  unsigned char *mminus);

/* log of pi renormalised over the set: out[a] = logp[a] - log sum_{m} p for a
 * in mask, -inf elsewhere. Returns the log of the set's mass under pi
 * (-inf for an empty set, when out is all -inf). */
double rl_masked_logprobs(const float *logp, const unsigned char *mask, int V, float *out);

/* DfPO's truncated advantages: A+ = max(A, 0) for rollouts from pi+
 * (sign > 0), A- = min(A, 0) for rollouts from pi- (sign < 0). */
void rl_truncate_advantages(float *adv, int n, int sign);

/* NLPO's mask: the smallest set of most likely tokens whose probability sum
 * reaches top_p, never fewer than k_min (nor more than V). Ties are broken by
 * the lower token id. probs need not be normalised exactly. Writes mask and
 * returns the set's size. */
int rl_top_p_mask(const float *probs, int V, float top_p, int k_min, unsigned char *mask);

#endif
