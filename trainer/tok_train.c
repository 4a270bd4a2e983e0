/* Training a byte-level BPE and writing it in GPT-2's file format. */
#include "trainer/tok_internal.h"

int tok_train(const char *const *corpus, size_t n_corpus, size_t vocab_size, const char *out_dir,
              size_t *merges_done, dfpo_err *err) {
  (void)corpus;
  (void)n_corpus;
  (void)vocab_size;
  (void)out_dir;
  (void)merges_done;
  return dfpo_err_set(err, DFPO_ERUNTIME, "not yet");
}
