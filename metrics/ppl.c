/* Perplexity over the model interface: ppl_ref (a policy on reference
 * texts) and ppl_gen (continuations under a judge LM given their prompts).
 * For a decoder-only model both reduce to "score tokens first..len-1 of a
 * window given what precedes them", batched into left-padded forward
 * passes; an encoder-decoder (T5) scores a continuation given its prompt as
 * the encoder's source (run_pairs), which is also ppl_ref's definition for
 * it (docs/metrics.md). */
#include "metrics/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One forward row: tokens[0..len) of which targets at positions >= first
 * (predicted from the position before) are scored and credited to item. */
typedef struct ppl_job {
  const int32_t *tok;
  int len, first;
  size_t item;
} ppl_job;

typedef struct ppl_jobs {
  ppl_job *v;
  size_t n, cap;
  int32_t **owned; /* sequences built here (bos + ids, prompt + continuation) */
  size_t n_owned, cap_owned;
} ppl_jobs;

static int push_job(ppl_jobs *j, const int32_t *tok, int len, int first, size_t item) {
  if (dfpo_grow(&j->v, &j->cap, j->n + 1, sizeof *j->v, 64, DFPO_NOCAP, NULL))
    return -1;
  j->v[j->n++] = (ppl_job){tok, len, first, item};
  return 0;
}

static int32_t *own(ppl_jobs *j, size_t n) {
  if (dfpo_grow(&j->owned, &j->cap_owned, j->n_owned + 1, sizeof *j->owned, 64, DFPO_NOCAP, NULL))
    return NULL;
  int32_t *s = malloc((n ? n : 1) * sizeof *s);
  if (s)
    j->owned[j->n_owned++] = s;
  return s;
}

static void jobs_free(ppl_jobs *j) {
  for (size_t i = 0; i < j->n_owned; i++)
    free(j->owned[i]);
  free(j->owned);
  free(j->v);
}

met_ppl_opts met_ppl_opts_default(void) {
  met_ppl_opts o = {8, 0, -1};
  return o;
}

/* Runs the jobs in batches and adds each job's summed NLL and token count to
 * its item. */
static int run_jobs(model_t *m, const ppl_jobs *j, int batch, double *nll, size_t *count,
                    dfpo_err *err) {
  int B = batch > 0 ? batch : 8;
  int *tok = NULL, *tgt = NULL, *ks = NULL;
  float *logp = NULL;
  int T = 1;
  for (size_t i = 0; i < j->n; i++)
    if (j->v[i].len - 1 > T)
      T = j->v[i].len - 1;
  size_t cells = (size_t)B * (size_t)T;
  tok = malloc(cells * sizeof *tok);
  tgt = malloc(cells * sizeof *tgt);
  logp = malloc(cells * sizeof *logp);
  ks = malloc((size_t)B * sizeof *ks);
  int rc = DFPO_OK;
  if (!tok || !tgt || !logp || !ks)
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "perplexity: out of memory");
  else if (j->n) /* the largest batch's memory at once, not grown batch by batch */
    rc = model_reserve(m, j->n < (size_t)B ? (int)j->n : B, T, err);
  for (size_t s = 0; s < j->n && rc == DFPO_OK; s += (size_t)B) {
    int nb = (int)(j->n - s < (size_t)B ? j->n - s : (size_t)B), Tb = 1;
    for (int b = 0; b < nb; b++)
      if (j->v[s + b].len - 1 > Tb)
        Tb = j->v[s + b].len - 1;
    for (int b = 0; b < nb; b++) {
      const ppl_job *jb = &j->v[s + b];
      int L = jb->len - 1, pad = Tb - L;
      ks[b] = pad;
      for (int t = 0; t < Tb; t++) {
        int src = t - pad; /* input position src predicts token src + 1 */
        tok[b * Tb + t] = src >= 0 ? jb->tok[src] : 0;
        tgt[b * Tb + t] = src >= 0 && src + 1 >= jb->first ? jb->tok[src + 1] : -1;
      }
    }
    if ((rc = model_forward_rows(m, tok, ks, nb, Tb, err)) ||
        (rc = model_lm_logprobs(m, tgt, logp, NULL, err)))
      break;
    for (int b = 0; b < nb; b++) {
      const ppl_job *jb = &j->v[s + b];
      for (int t = 0; t < Tb; t++)
        if (tgt[b * Tb + t] >= 0) {
          nll[jb->item] -= (double)logp[b * Tb + t];
          count[jb->item]++;
        }
    }
    if (dfpo_interrupted()) {
      rc = dfpo_err_set(err, DFPO_EINTR, "perplexity: interrupted");
      break;
    }
  }
  free(tok);
  free(tgt);
  free(logp);
  free(ks);
  return rc;
}

/* An encoder-decoder's items (model_config.encoder_decoder): each item i
 * with a non-empty continuation is one row [source, left-padded |
 * continuation, right-padded with 0], n_prompt the batch's widest source;
 * the decoder is run by teacher forcing from its start token and every
 * continuation token is scored (the outputs at columns n_prompt - 1 .. of
 * the row predict the continuation, docs/model-interface.md). Adds each
 * item's summed NLL and token count to nll[i], count[i]. */
static int run_pairs(model_t *m, const tok_ids *src, const tok_ids *cont, size_t n, int batch,
                     double *nll, size_t *count, dfpo_err *err) {
  int B = batch > 0 ? batch : 8, rc = DFPO_OK;
  size_t *idx = malloc((n ? n : 1) * sizeof *idx), k = 0;
  if (!idx)
    return dfpo_err_set(err, DFPO_ERUNTIME, "perplexity: out of memory");
  for (size_t i = 0; i < n; i++)
    if (cont[i].n)
      idx[k++] = i;
  int *tok = NULL, *tgt = NULL, *ks = NULL;
  float *logp = NULL;
  for (size_t s = 0; s < k && rc == DFPO_OK; s += (size_t)B) {
    int nb = (int)(k - s < (size_t)B ? k - s : (size_t)B), Ts = 1, Tc = 1;
    for (int b = 0; b < nb; b++) {
      const tok_ids *ps = &src[idx[s + b]], *pc = &cont[idx[s + b]];
      Ts = (int)ps->n > Ts ? (int)ps->n : Ts;
      Tc = (int)pc->n > Tc ? (int)pc->n : Tc;
    }
    int T = Ts + Tc;
    size_t cells = (size_t)nb * (size_t)T;
    free(tok), free(tgt), free(logp), free(ks);
    tok = malloc(cells * sizeof *tok);
    tgt = malloc(cells * sizeof *tgt);
    logp = malloc(cells * sizeof *logp);
    ks = malloc((size_t)nb * sizeof *ks);
    if (!tok || !tgt || !logp || !ks) {
      rc = dfpo_err_set(err, DFPO_ERUNTIME, "perplexity: out of memory");
      break;
    }
    for (int b = 0; b < nb; b++) {
      const tok_ids *ps = &src[idx[s + b]], *pc = &cont[idx[s + b]];
      int ns = (int)ps->n, nc = (int)pc->n, *row = tok + (size_t)b * T, *tg = tgt + (size_t)b * T;
      ks[b] = Ts - ns;
      for (int c = 0; c < T; c++) {
        int j = c - Ts; /* the continuation's token at column c */
        row[c] = c < Ts ? (c < ks[b] ? 0 : ps->ids[c - ks[b]]) : j < nc ? pc->ids[j] : 0;
        j = c - (Ts - 1); /* the continuation's token column c predicts */
        tg[c] = j >= 0 && j < nc ? pc->ids[j] : -1;
      }
    }
    /* only the continuation is scored: the LM head from the column that
     * predicts its first token (model_batch.head_from) */
    model_batch mb = {tok, ks, nb, T, Ts, Ts - 1};
    if ((rc = model_forward(m, &mb, err)) || (rc = model_lm_logprobs(m, tgt, logp, NULL, err)))
      break;
    for (int b = 0; b < nb; b++)
      for (int c = 0; c < T; c++)
        if (tgt[(size_t)b * T + c] >= 0) {
          nll[idx[s + b]] -= (double)logp[(size_t)b * T + c];
          count[idx[s + b]]++;
        }
    if (dfpo_interrupted())
      rc = dfpo_err_set(err, DFPO_EINTR, "perplexity: interrupted");
  }
  free(tok), free(tgt), free(logp), free(ks), free(idx);
  return rc;
}

static void finish(const double *nll, const size_t *count, size_t n, met_ppl *out,
                   double *per_item) {
  out->nll = 0;
  out->tokens = 0;
  for (size_t i = 0; i < n; i++) {
    out->nll += nll[i];
    out->tokens += count[i];
    if (per_item)
      per_item[i] = count[i] ? exp(nll[i] / (double)count[i]) : NAN;
  }
  out->ppl = out->tokens ? exp(out->nll / (double)out->tokens) : NAN;
}

static int check_vocab(model_t *m, const tok_ids *seqs, size_t n, const char *what, dfpo_err *err) {
  int V = model_get_config(m)->vocab_size;
  for (size_t i = 0; i < n; i++)
    for (size_t k = 0; k < seqs[i].n; k++)
      if (seqs[i].ids[k] < 0 || seqs[i].ids[k] >= V)
        return dfpo_err_set(err, DFPO_EDATA,
                            "perplexity: %s %zu token %zu is id %d, outside [0, %d)", what, i, k,
                            (int)seqs[i].ids[k], V);
  return DFPO_OK;
}

static int check_bos(const model_t *m, int bos, dfpo_err *err) {
  if (bos >= model_get_config(m)->vocab_size)
    return dfpo_err_set(err, DFPO_EUSAGE, "perplexity: bos id %d outside the vocabulary", bos);
  return DFPO_OK;
}

/* Runs the queued windows (j), or with j NULL an encoder-decoder's pairs
 * (src, cont), and turns their sums into out and per_item. */
static int score_jobs(model_t *m, ppl_jobs *j, const tok_ids *src, const tok_ids *cont, int batch,
                      size_t n, met_ppl *out, double *per_item, dfpo_err *err) {
  double *nll = calloc(n ? n : 1, sizeof *nll);
  size_t *count = calloc(n ? n : 1, sizeof *count);
  int rc = !nll || !count ? dfpo_err_set(err, DFPO_ERUNTIME, "perplexity: out of memory")
           : j            ? run_jobs(m, j, batch, nll, count, err)
                          : run_pairs(m, src, cont, n, batch, nll, count, err);
  if (!rc)
    finish(nll, count, n, out, per_item);
  free(nll);
  free(count);
  return rc;
}

/* An encoder-decoder's met_ppl_gen_ids: no bos, no truncation (a source
 * has no position limit); a continuation must fit the decoder's positions. */
static int score_pairs(model_t *m, const tok_ids *src, const tok_ids *cont, size_t n, int batch,
                       met_ppl *out, double *per_item, dfpo_err *err) {
  int ctx = model_get_config(m)->n_ctx;
  for (size_t i = 0; i < n; i++) {
    if (cont[i].n && !src[i].n)
      return dfpo_err_set(err, DFPO_EUSAGE,
                          "perplexity: item %zu has an empty source; an encoder-decoder scores "
                          "a continuation given its source",
                          i);
    if (cont[i].n > (size_t)ctx)
      return dfpo_err_set(err, DFPO_EDATA,
                          "perplexity: continuation %zu has %zu tokens; the decoder has %d "
                          "positions",
                          i, cont[i].n, ctx);
  }
  return score_jobs(m, NULL, src, cont, batch, n, out, per_item, err);
}

int met_ppl_ref_ids(model_t *m, const tok_ids *texts, size_t n, const met_ppl_opts *o, met_ppl *out,
                    double *per_item, dfpo_err *err) {
  met_ppl_opts d = o ? *o : met_ppl_opts_default();
  if (model_get_config(m)->encoder_decoder)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "perplexity: an encoder-decoder (%s) scores a text given its source: "
                        "give the sources as prompts (met_ppl_gen_ids)",
                        model_get_config(m)->arch);
  int ctx = model_get_config(m)->n_ctx;
  int stride = d.stride > 0 ? d.stride : ctx / 2 > 0 ? ctx / 2 : 1;
  if (stride > ctx)
    stride = ctx;
  int rc = check_vocab(m, texts, n, "text", err);
  if (rc)
    return rc;
  if ((rc = check_bos(m, d.bos, err)))
    return rc;
  ppl_jobs j = {0};
  for (size_t i = 0; i < n && rc == DFPO_OK; i++) {
    /* seq = [bos] + text: with a bos every text token is scored; without
     * one the first token has no context and is not. */
    size_t N = texts[i].n + (d.bos >= 0);
    int32_t *seq = own(&j, N);
    if (!seq) {
      rc = dfpo_err_set(err, DFPO_ERUNTIME, "perplexity: out of memory");
      break;
    }
    if (d.bos >= 0)
      seq[0] = d.bos;
    if (texts[i].n)
      memcpy(seq + (d.bos >= 0), texts[i].ids, texts[i].n * sizeof *seq);
    /* Targets are positions 1..N-1. Window: targets (a, b] with inputs from
     * max(0, b - ctx) to b - 1, so each target has up to ctx tokens of
     * context; the first window is a full context, then stride steps. */
    size_t a = 0;
    while (a + 1 < N && rc == DFPO_OK) {
      size_t b = a == 0 ? (N - 1 < (size_t)ctx ? N - 1 : (size_t)ctx)
                        : (a + (size_t)stride < N - 1 ? a + (size_t)stride : N - 1);
      size_t start = b > (size_t)ctx ? b - (size_t)ctx : 0;
      if (push_job(&j, seq + start, (int)(b - start + 1), (int)(a + 1 - start), i))
        rc = dfpo_err_set(err, DFPO_ERUNTIME, "perplexity: out of memory");
      a = b;
    }
  }
  if (!rc)
    rc = score_jobs(m, &j, NULL, NULL, d.batch, n, out, per_item, err);
  jobs_free(&j);
  return rc;
}

int met_ppl_gen_ids(model_t *m, const tok_ids *prompts, const tok_ids *conts, size_t n,
                    const met_ppl_opts *o, met_ppl *out, double *per_item, dfpo_err *err) {
  met_ppl_opts d = o ? *o : met_ppl_opts_default();
  int ctx = model_get_config(m)->n_ctx;
  int rc = check_vocab(m, prompts, n, "prompt", err);
  if (!rc)
    rc = check_vocab(m, conts, n, "continuation", err);
  if (rc)
    return rc;
  if (model_get_config(m)->encoder_decoder)
    return score_pairs(m, prompts, conts, n, d.batch, out, per_item, err);
  if ((rc = check_bos(m, d.bos, err)))
    return rc;
  ppl_jobs j = {0};
  for (size_t i = 0; i < n && rc == DFPO_OK; i++) {
    size_t nc = conts[i].n, np = prompts[i].n;
    if (!nc)
      continue; /* nothing to score: the item's perplexity is NaN */
    if (!np && d.bos < 0) {
      rc = dfpo_err_set(err, DFPO_EUSAGE,
                        "perplexity: item %zu has an empty prompt and no bos token to condition on",
                        i);
      break;
    }
    if (nc > (size_t)ctx) {
      rc = dfpo_err_set(err, DFPO_EDATA,
                        "perplexity: continuation %zu has %zu tokens; the judge LM's context is "
                        "%d",
                        i, nc, ctx);
      break;
    }
    /* Context: [bos] + prompt, left-truncated so that context + continuation
     * - 1 fits the model's positions (the last token is only a target). */
    size_t room = (size_t)ctx + 1 - nc; /* context tokens that fit, >= 1 */
    size_t keep_p = np < room ? np : room;
    int use_bos = d.bos >= 0 && keep_p < room;
    size_t N = (size_t)use_bos + keep_p + nc;
    int32_t *seq = own(&j, N);
    if (!seq) {
      rc = dfpo_err_set(err, DFPO_ERUNTIME, "perplexity: out of memory");
      break;
    }
    size_t k = 0;
    if (use_bos)
      seq[k++] = d.bos;
    if (keep_p)
      memcpy(seq + k, prompts[i].ids + (np - keep_p), keep_p * sizeof *seq);
    k += keep_p;
    memcpy(seq + k, conts[i].ids, nc * sizeof *seq);
    if (push_job(&j, seq, (int)N, (int)k, i))
      rc = dfpo_err_set(err, DFPO_ERUNTIME, "perplexity: out of memory");
  }
  if (!rc)
    rc = score_jobs(m, &j, NULL, NULL, d.batch, n, out, per_item, err);
  jobs_free(&j);
  return rc;
}

/* Encodes n texts into a fresh tok_ids array (caller frees each and the
 * array). */
static int encode_all(tok_tokenizer *tok, const char *const *texts, size_t n, tok_ids **out,
                      dfpo_err *err) {
  *out = calloc(n ? n : 1, sizeof **out);
  if (!*out)
    return dfpo_err_set(err, DFPO_ERUNTIME, "perplexity: out of memory");
  size_t *lens = malloc((n ? n : 1) * sizeof *lens);
  if (!lens) {
    free(*out);
    *out = NULL;
    return dfpo_err_set(err, DFPO_ERUNTIME, "perplexity: out of memory");
  }
  for (size_t i = 0; i < n; i++)
    lens[i] = strlen(texts[i]);
  int rc = tok_encode_many(tok, texts, lens, n, 0, *out, err);
  free(lens);
  return rc;
}

/* An encoder-decoder's texts end with the tokenizer's end-of-text (T5's
 * </s>), as T5Tokenizer encodes a source and a target. */
static int end_all(tok_ids *v, size_t n, int eot, dfpo_err *err) {
  if (eot < 0)
    return DFPO_OK;
  for (size_t i = 0; i < n; i++) {
    if (dfpo_grow(&v[i].ids, &v[i].cap, v[i].n + 1, sizeof *v[i].ids, 16, DFPO_NOCAP, NULL))
      return dfpo_err_set(err, DFPO_ERUNTIME, "perplexity: out of memory");
    v[i].ids[v[i].n++] = eot;
  }
  return DFPO_OK;
}

static void ids_free(tok_ids *v, size_t n) {
  if (!v)
    return;
  for (size_t i = 0; i < n; i++)
    tok_ids_free(&v[i]);
  free(v);
}

static met_ppl_opts with_bos(const met_ppl_opts *o, tok_tokenizer *tok) {
  met_ppl_opts d = o ? *o : met_ppl_opts_default();
  if (!o) { /* the tokenizer's own start (Llama's <s>), else its end-of-text */
    int32_t own = tok_bos_token_id(tok);
    d.bos = own >= 0 ? own : tok_eot_id(tok);
  }
  return d;
}

int met_ppl_ref(model_t *m, tok_tokenizer *tok, const char *const *texts, size_t n,
                const met_ppl_opts *o, met_ppl *out, double *per_item, dfpo_err *err) {
  tok_ids *ids = NULL;
  met_ppl_opts d = with_bos(o, tok);
  int rc = encode_all(tok, texts, n, &ids, err);
  if (!rc)
    rc = met_ppl_ref_ids(m, ids, n, &d, out, per_item, err);
  ids_free(ids, n);
  return rc;
}

int met_ppl_gen(model_t *m, tok_tokenizer *tok, const char *const *prompts,
                const char *const *conts, size_t n, const met_ppl_opts *o, met_ppl *out,
                double *per_item, dfpo_err *err) {
  tok_ids *p = NULL, *c = NULL;
  met_ppl_opts d = with_bos(o, tok);
  int rc = encode_all(tok, prompts, n, &p, err);
  if (!rc)
    rc = encode_all(tok, conts, n, &c, err);
  if (!rc && model_get_config(m)->encoder_decoder && !(rc = end_all(p, n, tok_eot_id(tok), err)))
    rc = end_all(c, n, tok_eot_id(tok), err);
  if (!rc)
    rc = met_ppl_gen_ids(m, p, c, n, &d, out, per_item, err);
  ids_free(p, n);
  ids_free(c, n);
  return rc;
}
