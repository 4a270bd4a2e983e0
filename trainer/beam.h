/* trainer/beam.h: beam search and greedy decoding over any model_t (prefix
 * beam_), with the rules of Hugging Face's generate (transformers 4.30:
 * generation/utils.py beam_search and greedy_search, generation/
 * beam_search.py BeamSearchScorer and BeamHypotheses), so that a decoding
 * configured as RL4LMs configures transformers (CommonGen's evaluation: 5
 * beams) gives transformers' sequences. docs/model-interface.md#decoding
 * says the rules in full.
 *
 * Depends on trainer/model.h: model_decode_begin, model_decode_step and
 * model_decode_reorder (the beams' caches follow their beams). Output
 * arrays are the caller's. */
#ifndef DFPO_TRAINER_BEAM_H
#define DFPO_TRAINER_BEAM_H

#include "trainer/model.h"

/* early_stopping, as transformers' do_early_stopping: True, False, "never" */
enum { BEAM_EARLY_FALSE = 0, BEAM_EARLY_TRUE = 1, BEAM_EARLY_NEVER = 2 };

typedef struct beam_settings {
  int num_beams;        /* 1: greedy search (transformers' generate with num_beams 1) */
  int num_return;       /* hypotheses returned per prompt, 1..num_beams (num_return_sequences) */
  int max_new;          /* new tokens at most (max_new_tokens), >= 1 */
  int min_new;          /* end-of-text banned before this many new tokens (min_new_tokens) */
  int min_length;       /* end-of-text banned while the counted length is below it (min_length;
                           0: off); counted as beam_prefix_len says */
  float length_penalty; /* a finished hypothesis scores sum_logprobs / length^length_penalty */
  int early_stopping;   /* BEAM_EARLY_* */
  int eos;              /* end-of-text id; < 0: none (every beam runs max_new tokens) */
} beam_settings;
/* 1 beam (greedy), 1 returned, 48 new tokens, no minimum, length penalty 1,
 * early stopping False, eos 50256: transformers' defaults but the lengths. */
beam_settings beam_settings_default(void);

/* The length transformers counts for a row before its first new token:
 * the prompt's columns T, left padding included, for a decoder-only model
 * (its input_ids); 1, the decoder start token, for an encoder-decoder
 * (model_config.encoder_decoder). A hypothesis ending in end-of-text after
 * n new tokens counts beam_prefix_len + n (the end-of-text not counted); one
 * still open when max_new is reached counts beam_prefix_len + max_new. */
int beam_prefix_len(const model_t *m, int T);

/* Decodes the prompts[B, T] (left-padded by kstart, NULL: none) by beam
 * search with s->num_beams beams each (B * num_beams rows in the model's
 * decoding cache), or greedily with one. Hypothesis r (0 best) of prompt b
 * is row b * num_return + r of out[B * num_return, max_new] (-1 after its
 * end): its new tokens, with the end-of-text when it ended with one;
 * lens[B * num_return] their counts; scores[B * num_return] (may be NULL)
 * its score, sum of the log-softmax of its tokens (the end-of-text's
 * included) over length^length_penalty (transformers' sequences_scores; for
 * greedy search, which has none there, the same formula over the greedy
 * tokens). The model's decoding cache is overwritten, and its last logits
 * may be spent (model_lm_logits may give NULL after). */
int beam_search(model_t *m, const int *prompts, const int *kstart, int B, int T,
                const beam_settings *s, int *out, int *lens, double *scores, dfpo_err *err);

#endif
