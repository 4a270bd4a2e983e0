/* dfpo train's SFT: next-token cross-entropy on the training references
 * (docs/algorithms.md). */
#include "harness/train_internal.h"

#include <stdlib.h>
#include <string.h>

int trn_seq2seq_target(const trn_run *r, const char *prompt, const char *reference, int32_t **ids,
                       size_t *len, dfpo_err *err) {
  int n_ctx = model_get_config(r->policy)->n_ctx;
  tok_ids v = {0};
  const char *t = reference;
  /* the target is what follows the prompt where the reference holds it
   * (imdb, synthetic); commongen's reference is the scene alone */
  if (prompt && prompt[0] && !strncmp(t, prompt, strlen(prompt)) && t[strlen(prompt)])
    t += strlen(prompt);
  int rc = tok_encode(r->tok, t, strlen(t), 0, &v, err);
  if (rc) {
    tok_ids_free(&v);
    return rc;
  }
  /* the reference and </s>, the decoder's positions at most */
  size_t n = v.n + 1 < (size_t)n_ctx ? v.n + 1 : (size_t)n_ctx;
  *ids = malloc(sizeof(int32_t) * n);
  if (!*ids) {
    tok_ids_free(&v);
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  }
  if (n > 1)
    memcpy(*ids, v.ids, sizeof(int32_t) * (n - 1));
  (*ids)[n - 1] = n - 1 < v.n ? v.ids[n - 1] : r->eos;
  *len = n;
  tok_ids_free(&v);
  return DFPO_OK;
}

/* SFT's texts: the training references, each as <|endoftext|> (the
 * tokenizer's own start where it has one, r->bos: Llama's <s>) + its tokens,
 * cut to the model's context; for an encoder-decoder (r->seq2seq) its
 * target (trn_seq2seq_target; the prompt is the source, r->prompt_ids). */
int trn_sft_tokenize(trn_run *r, dfpo_err *err) {
  size_t n = r->tk.n[TASK_TRAIN];
  int n_ctx = model_get_config(r->policy)->n_ctx;
  r->sft_ids = calloc(n ? n : 1, sizeof(int32_t *));
  r->sft_len = calloc(n ? n : 1, sizeof(size_t));
  if (!r->sft_ids || !r->sft_len)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  for (size_t i = 0; i < n; i++) {
    tok_ids v = {0};
    const char *t = r->tk.items[TASK_TRAIN][i].reference;
    int rc;
    if (!t || !t[0])
      return dfpo_err_set(err, DFPO_EDATA, "%s: training item %zu has no reference text for SFT",
                          r->tk.name, i);
    if (r->seq2seq) {
      if ((rc = trn_seq2seq_target(r, r->tk.items[TASK_TRAIN][i].prompt, t, &r->sft_ids[i],
                                   &r->sft_len[i], err)))
        return rc;
      continue;
    }
    if ((rc = tok_encode(r->tok, t, strlen(t), 0, &v, err))) {
      tok_ids_free(&v);
      return rc;
    }
    size_t len = v.n + 1 < (size_t)n_ctx + 1 ? v.n + 1 : (size_t)n_ctx + 1;
    r->sft_ids[i] = malloc(sizeof(int32_t) * len);
    if (!r->sft_ids[i]) {
      tok_ids_free(&v);
      return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    }
    r->sft_ids[i][0] = r->bos >= 0 ? r->bos : r->pad;
    memcpy(r->sft_ids[i] + 1, v.ids, sizeof(int32_t) * (len - 1));
    r->sft_len[i] = len;
    tok_ids_free(&v);
  }
  return DFPO_OK;
}

/* An encoder-decoder's SFT loss (with its gradient) over the training
 * items[0..nb): rows [source, left-padded | reference </s>, right-padded
 * with pad], n_prompt the sources' width; decoder position j predicts the
 * reference's token j (the padding is not scored). */
static int seq2seq_loss(trn_run *r, const size_t *items, int nb, float *loss, dfpo_err *err) {
  int *src = NULL, *ks = NULL, Tp = 0, L = 1;
  if (trn_build_batch(r, TASK_TRAIN, items, nb, &src, &ks, &Tp) != 0)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  for (int b = 0; b < nb; b++)
    if ((int)r->sft_len[items[b]] > L)
      L = (int)r->sft_len[items[b]];
  int T = Tp + L, rc = DFPO_OK;
  int *tok = malloc(sizeof(int) * (size_t)nb * T), *tgt = malloc(sizeof(int) * (size_t)nb * T);
  if (!tok || !tgt)
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  for (int b = 0; !rc && b < nb; b++) {
    const int32_t *ids = r->sft_ids[items[b]];
    int len = (int)r->sft_len[items[b]];
    for (int c = 0; c < T; c++) {
      int j = c - Tp;
      tok[b * T + c] = c < Tp ? src[b * Tp + c] : j < len ? ids[j] : r->pad;
      j = c - (Tp - 1);
      tgt[b * T + c] = j >= 0 && j < len ? ids[j] : -1;
    }
  }
  model_batch batch = {tok, ks, nb, T, Tp, Tp - 1}; /* the head at the decoder's outputs */
  if (!rc)
    rc = model_lm_loss(r->policy, &batch, tgt, 1, loss, err);
  free(src), free(ks), free(tok), free(tgt);
  return rc;
}

/* One SFT epoch: the training references in an order drawn from the data
 * stream, train.batch_size per step, mean next-token cross-entropy over
 * their tokens (right padding is not scored). *loss gets the mean step loss. */
int trn_sft_epoch(trn_run *r, int64_t epoch, int64_t epochs, dfpo_rng *data, double *loss,
                  int *steps, dfpo_err *err) {
  size_t n = r->tk.n[TASK_TRAIN];
  int B = r->set.batch, rc = DFPO_OK;
  double wd = r->set.weight_decay, clip = r->set.clip;
  int64_t per_epoch = (int64_t)((n + (size_t)B - 1) / (size_t)B);
  opt_adamw opt = opt_adamw_default();
  opt.weight_decay = (float)wd;
  opt.clip = (float)clip;
  size_t *order = malloc(sizeof(size_t) * (n ? n : 1));
  int T = model_get_config(r->policy)->n_ctx;
  int *tok = malloc(sizeof(int) * (size_t)B * T), *tgt = malloc(sizeof(int) * (size_t)B * T);
  if (!order || !tok || !tgt)
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  for (size_t i = 0; i < n; i++)
    order[i] = i;
  if (!rc)
    dfpo_rng_shuffle(data, order, n, sizeof order[0]);
  *loss = 0;
  *steps = 0;
  for (size_t start = 0; !rc && start < n; start += (size_t)B) {
    if (dfpo_interrupted()) {
      /* the epoch is lost; the resumable checkpoint is that of an earlier one */
      rc = dfpo_err_set(err, DFPO_EINTR, "train: SFT interrupted within an epoch");
      break;
    }
    int nb = n - start < (size_t)B ? (int)(n - start) : B, Tb = 1;
    for (int b = 0; b < nb; b++)
      if ((int)r->sft_len[order[start + b]] - 1 > Tb)
        Tb = (int)r->sft_len[order[start + b]] - 1;
    float l;
    model_zero_grad(r->policy);
    if (r->seq2seq) {
      rc = seq2seq_loss(r, order + start, nb, &l, err);
    } else {
      for (int b = 0; b < nb; b++) {
        const int32_t *ids = r->sft_ids[order[start + b]];
        int len = (int)r->sft_len[order[start + b]] - 1;
        for (int j = 0; j < Tb; j++) {
          tok[b * Tb + j] = j < len ? ids[j] : r->pad;
          tgt[b * Tb + j] = j < len ? ids[j + 1] : -1;
        }
      }
      rc = model_lm_loss_rows(r->policy, tok, tgt, NULL, nb, Tb, 1, &l, err);
    }
    if (rc || (rc = opt_adamw_step(
                   r->policy, &opt,
                   trn_lr_at(&r->set, epoch * per_epoch + *steps, epochs * per_epoch), NULL, err)))
      break;
    *loss += l;
    (*steps)++;
  }
  if (*steps)
    *loss /= *steps;
  free(order);
  free(tok);
  free(tgt);
  return rc;
}
