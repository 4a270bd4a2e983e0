/* dfpo train's evaluations: validation (the metrics that select the best
 * checkpoint), ppl_ref, and the test evaluation of eval.json with its
 * samples. */
#include "datasets/datasets.h"
#include "harness/train_internal.h"
#include "metrics/metrics.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int trn_build_batch(const trn_run *r, int split, const size_t *items, int B, int **tokens,
                    int **kstart, int *Tp) {
  /* the tokenizer's own start (r->bos) leads each prompt and counts in
   * task.max_prompt_tokens; truncation cuts the text after it, as
   * transformers' tokenizer(text, truncation=True) keeps its special tokens */
  int lead = r->bos >= 0, cap = r->set.max_prompt - lead, T = 1;
  if (cap < 0)
    cap = 0;
  for (int b = 0; b < B; b++) {
    int n = (int)r->prompt_len[split][items[b]];
    if (n > cap)
      n = cap;
    if (n + lead > T)
      T = n + lead;
  }
  *tokens = malloc(sizeof(int) * (size_t)B * T);
  *kstart = malloc(sizeof(int) * (size_t)B);
  if (!*tokens || !*kstart)
    return -1;
  for (int b = 0; b < B; b++) {
    const int32_t *ids = r->prompt_ids[split][items[b]];
    int n = (int)r->prompt_len[split][items[b]], skip = 0, full = n;
    if (n > cap) {
      skip = r->set.prompt_right ? 0 : n - cap;
      n = cap;
    }
    int pad = T - n - lead;
    (*kstart)[b] = pad;
    int *row = *tokens + (size_t)b * T;
    for (int j = 0; j < T; j++)
      row[j] = j < pad ? r->pad : j == pad && lead ? r->bos : ids[skip + j - pad - lead];
    if (n < full && r->set.prompt_right && r->seq2seq)
      row[T - 1] = ids[full - 1]; /* the source's eos stays */
  }
  *Tp = T;
  return 0;
}

/* Evaluation sampling: pi_theta, or with dfpo.eval_policy=negative DfPO's
 * negative masked policy pi- (against the frozen reference). */
static int generate_eval(trn_run *r, const int *tokens, const int *kstart, int B, int Tp,
                         dfpo_rng *rng, int *out, int *lens, dfpo_err *err) {
  if (r->set.eval_beams)
    return beam_search(r->policy, tokens, kstart, B, Tp, &r->beam, out, lens, NULL, err);
  if (!r->set.eval_negative)
    return smp_generate(r->policy, tokens, kstart, B, Tp, &r->sampling, rng, out, lens, NULL, err);
  int *sign = malloc(sizeof(int) * (size_t)B);
  if (!sign)
    return dfpo_err_set(err, DFPO_ERUNTIME, "evaluation: out of memory");
  for (int b = 0; b < B; b++)
    sign[b] = -1;
  int rc = rl_dfpo_generate(r->policy, r->ref, tokens, kstart, B, Tp, sign, &r->sampling, rng, out,
                            lens, NULL, NULL, err);
  free(sign);
  return rc;
}

char *trn_continuation_text(const trn_run *r, const int *cont, int len, dfpo_err *err) {
  int32_t ids[4096];
  int n = 0;
  for (int i = 0; i < len && n < 4096; i++)
    if (cont[i] != r->eos)
      ids[n++] = cont[i];
  char *buf = NULL;
  size_t blen = 0, cap = 0;
  if (tok_decode(r->tok, ids, (size_t)n, &buf, &blen, &cap, err))
    return NULL;
  if (!buf)
    buf = calloc(1, 1);
  return buf;
}

/* Samples k continuations of each of the first n prompts of a split with the
 * policy and scores them; means[] gets each metric's mean over the n*k
 * samples. With samples_path, one JSON line per sample is written there
 * (atomically). With conts/values, the continuations (valid UTF-8, sample j
 * of prompt i at i*k+j) and their metrics [n*k*n_metrics] are handed to the
 * caller (free each and the arrays). */
static int eval_samples(trn_run *r, int split, size_t n, int k, double *means,
                        const char *samples_path, char ***conts, double **values, dfpo_err *err) {
  int rc = DFPO_OK, B = r->set.batch, N = r->sampling.max_new, nm = r->tk.n_metrics;
  size_t rows = n * (size_t)k;
  dfpo_rng rng;
  /* the run seed's stream of the split, from its start at every evaluation */
  dfpo_rng_init(&rng, (uint64_t)r->set.seed,
                split == TASK_TEST ? DFPO_STREAM_EVAL_TEST : DFPO_STREAM_EVAL_VALIDATION);
  dfpo_atomic a = {0};
  if (samples_path && (rc = dfpo_atomic_open(&a, samples_path, err)))
    return rc;
  for (int m = 0; m < nm; m++)
    means[m] = 0;
  size_t *items = malloc(sizeof(size_t) * (size_t)B);
  int *out = malloc(sizeof(int) * (size_t)B * N), *lens = malloc(sizeof(int) * (size_t)B);
  char **bt = calloc((size_t)B, sizeof *bt);
  const task_item **bi = malloc(sizeof *bi * (size_t)B);
  double *bv = malloc(sizeof *bv * (size_t)B * (size_t)nm);
  char **texts = conts ? calloc(rows ? rows : 1, sizeof(char *)) : NULL;
  double *vals = values ? malloc(sizeof(double) * (rows ? rows : 1) * (size_t)nm) : NULL;
  if (!items || !out || !lens || !bt || !bi || !bv || (conts && !texts) || (values && !vals))
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "evaluation: out of memory");
  for (size_t start = 0; !rc && start < rows; start += (size_t)B) {
    if (dfpo_interrupted()) {
      rc = dfpo_err_set(err, DFPO_EINTR, "evaluation: interrupted");
      break;
    }
    int nb = rows - start < (size_t)B ? (int)(rows - start) : B;
    for (int b = 0; b < nb; b++)
      items[b] = (start + (size_t)b) / (size_t)k;
    int *tokens = NULL, *kstart = NULL, Tp;
    if (trn_build_batch(r, split, items, nb, &tokens, &kstart, &Tp)) {
      rc = dfpo_err_set(err, DFPO_ERUNTIME, "evaluation: out of memory");
    } else {
      rc = generate_eval(r, tokens, kstart, nb, Tp, &rng, out, lens, err);
    }
    /* the batch's texts, then their scores in one call (the judge's batches) */
    for (int b = 0; !rc && b < nb; b++) {
      char *raw = trn_continuation_text(r, out + (size_t)b * N, lens[b], err);
      bt[b] = raw ? dfpo_utf8_fix(raw, strlen(raw)) : NULL;
      free(raw);
      bi[b] = &r->tk.items[split][items[b]];
      if (!bt[b])
        rc = err && err->code ? err->code : dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    }
    if (!rc)
      rc = task_score_many(&r->tk, bi, (const char *const *)bt, (size_t)nb, bv, err);
    for (int b = 0; rc && b < nb; b++) {
      free(bt[b]);
      bt[b] = NULL;
    }
    for (int b = 0; !rc && b < nb; b++) {
      char *text = bt[b];
      bt[b] = NULL;
      size_t q = start + (size_t)b;
      const double *v = bv + (size_t)b * nm;
      const task_item *it = bi[b];
      for (int m = 0; m < nm; m++)
        means[m] += v[m] / (double)rows;
      if (vals)
        memcpy(vals + q * (size_t)nm, v, sizeof(double) * (size_t)nm);
      if (samples_path) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "index", (double)items[b]);
        if (k > 1)
          cJSON_AddNumberToObject(o, "sample", (double)(q % (size_t)k));
        cJSON_AddStringToObject(o, "prompt", it->prompt);
        cJSON_AddStringToObject(o, "continuation", text);
        if (it->reference && it->reference[0]) /* what ppl_ref scores */
          cJSON_AddStringToObject(o, "reference", it->reference);
        for (int m = 0; m < nm; m++)
          cJSON_AddNumberToObject(o, r->tk.metric_names[m], v[m]);
        char *line = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (line)
          fprintf(a.fp, "%s\n", line);
        free(line);
      }
      if (texts)
        texts[q] = text;
      else
        free(text);
    }
    free(tokens);
    free(kstart);
  }
  free(items);
  free(out);
  free(lens);
  free(bt), free(bi), free(bv);
  if (samples_path) {
    if (rc)
      dfpo_atomic_abort(&a);
    else
      rc = dfpo_atomic_commit(&a, err);
  }
  if (rc && texts) {
    for (size_t q = 0; q < rows; q++)
      free(texts[q]);
    free(texts);
    texts = NULL;
  }
  if (rc) {
    free(vals);
    vals = NULL;
  }
  if (conts)
    *conts = texts;
  if (values)
    *values = vals;
  return rc;
}

int trn_evaluate(trn_run *r, int split, size_t n, double *means, const char *samples_path,
                 dfpo_err *err) {
  return eval_samples(r, split, n, 1, means, samples_path, NULL, NULL, err);
}

/* An encoder-decoder's ppl_ref: each reference's target given its item's
 * source, cut as trn_build_batch cuts it (the tokens the policy is given). */
static int seq2seq_refs_ppl(trn_run *r, int split, size_t n, met_ppl *p, dfpo_err *err) {
  tok_ids *src = calloc(n ? n : 1, sizeof *src), *tgt = calloc(n ? n : 1, sizeof *tgt);
  size_t k = 0;
  int rc = src && tgt ? DFPO_OK : dfpo_err_set(err, DFPO_ERUNTIME, "evaluation: out of memory");
  for (size_t i = 0; !rc && i < n; i++) {
    const task_item *it = &r->tk.items[split][i];
    if (!it->reference || !it->reference[0])
      continue;
    size_t len = r->prompt_len[split][i], skip = 0;
    if (len > (size_t)r->set.max_prompt) {
      skip = len - (size_t)r->set.max_prompt;
      len = (size_t)r->set.max_prompt;
    }
    src[k].ids = r->prompt_ids[split][i] + skip; /* a view: not freed here */
    src[k].n = len;
    if (!(rc = trn_seq2seq_target(r, it->prompt, it->reference, &tgt[k].ids, &tgt[k].n, err)))
      k++;
  }
  if (!rc)
    rc = met_ppl_gen_ids(r->policy, src, tgt, k, NULL, p, NULL, err);
  for (size_t i = 0; tgt && i < k; i++)
    free(tgt[i].ids);
  free(src), free(tgt);
  return rc;
}

int trn_refs_ppl(trn_run *r, int split, size_t n, double *ppl, size_t *nrefs, dfpo_err *err) {
  const char **refs = malloc(sizeof(char *) * (n ? n : 1));
  if (!refs)
    return dfpo_err_set(err, DFPO_ERUNTIME, "evaluation: out of memory");
  *nrefs = 0;
  for (size_t i = 0; i < n; i++)
    if (r->tk.items[split][i].reference && r->tk.items[split][i].reference[0])
      refs[(*nrefs)++] = r->tk.items[split][i].reference;
  int rc = DFPO_OK;
  met_ppl p;
  if (r->seq2seq)
    rc = seq2seq_refs_ppl(r, split, n, &p, err);
  else if (*nrefs)
    rc = met_ppl_ref(r->policy, r->tok, refs, *nrefs, NULL, &p, NULL, err);
  if (*nrefs && !rc)
    *ppl = p.ppl;
  free(refs);
  return rc;
}

int trn_judge_lm_open(const trn_run *r, model_t **lm, tok_tokenizer **jtok, dfpo_err *err) {
  const char *judge_lm = r->set.judge_lm;
  int rc = DFPO_OK;
  *lm = NULL, *jtok = NULL;
  if (model_path_is_folder(judge_lm) && tok_folder_has_files(judge_lm) &&
      (rc = tok_load(jtok, judge_lm, err)))
    return dfpo_err_prefix(err, "eval.judge_lm's tokenizer");
  const tok_tokenizer *use = *jtok ? *jtok : r->tok;
  if ((rc = model_load(lm, judge_lm, err)))
    dfpo_err_prefix(err, "eval.judge_lm");
  else if ((size_t)model_get_config(*lm)->vocab_size < tok_vocab_size(use))
    rc = dfpo_err_set(err, DFPO_EUSAGE,
                      "eval.judge_lm %s: its vocabulary (%d ids) is smaller than %s (%zu ids)",
                      judge_lm, model_get_config(*lm)->vocab_size,
                      *jtok ? "its tokenizer's" : "the run's tokenizer's", tok_vocab_size(use));
  else if (!*jtok && model_get_config(r->policy)->encoder_decoder &&
           !model_get_config(*lm)->encoder_decoder)
    rc = dfpo_err_set(err, DFPO_EUSAGE,
                      "eval.judge_lm %s: a decoder-only judge without tokenizer files of its own "
                      "cannot read the encoder-decoder policy's SentencePiece ids; give a Hugging "
                      "Face folder with its tokenizer (e.g. gpt2)",
                      judge_lm);
  if (rc) {
    model_free(*lm), tok_free(*jtok);
    *lm = NULL, *jtok = NULL;
  }
  return rc;
}

int trn_evaluate_test(trn_run *r, size_t n, const char *samples_path, cJSON *o, cJSON *metrics,
                      dfpo_err *err) {
  int rc, ppl_ref = r->set.ppl_ref;
  const char *judge_lm = r->set.judge_lm;
  int k = r->set.samples_per_prompt > 0  ? r->set.samples_per_prompt
          : r->tk.samples_per_prompt > 0 ? r->tk.samples_per_prompt
                                         : 1;
  double means[TASK_MAX_METRICS];
  char **conts = NULL;
  double *values = NULL;
  size_t rows = n * (size_t)k;
  if ((rc = eval_samples(r, TASK_TEST, n, k, means, samples_path, &conts, &values, err)))
    return rc;
  cJSON_AddNumberToObject(o, "samples_per_prompt", k);
  for (int m = 0; m < r->tk.n_metrics; m++)
    cJSON_AddNumberToObject(metrics, r->tk.metric_names[m], means[m]);
  size_t *idx = malloc(sizeof(size_t) * (n ? n : 1));
  const char **prompts = malloc(sizeof(char *) * (rows ? rows : 1));
  if (!idx || !prompts)
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "evaluation: out of memory");
  for (size_t i = 0; !rc && i < n; i++)
    idx[i] = i;
  task_eval ev = {TASK_TEST, n, k, idx, conts, values};
  if (!rc && r->tk.aggregate)
    rc = r->tk.aggregate(&r->tk, &ev, metrics, err);
  if (!rc)
    rc = task_diversity(conts, rows, metrics, err);
  size_t nrefs = 0;
  double ppl;
  if (!rc && ppl_ref && !(rc = trn_refs_ppl(r, TASK_TEST, n, &ppl, &nrefs, err)) && nrefs) {
    cJSON_AddNumberToObject(metrics, "ppl_ref", ppl);
    cJSON_AddNumberToObject(o, "ppl_ref_texts", (double)nrefs);
  }
  if (!rc && judge_lm[0]) {
    model_t *lm = NULL;
    met_ppl p;
    for (size_t q = 0; q < rows; q++)
      prompts[q] = r->tk.items[TASK_TEST][q / (size_t)k].prompt;
    tok_tokenizer *jtok = NULL;
    rc = trn_judge_lm_open(r, &lm, &jtok, err);
    if (!rc && !(rc = met_ppl_gen(lm, jtok ? jtok : r->tok, prompts, (const char *const *)conts,
                                  rows, NULL, &p, NULL, err))) {
      char hex[65];
      cJSON_AddNumberToObject(metrics, "ppl_gen", p.ppl);
      cJSON *j = cJSON_AddObjectToObject(o, "judge_lm");
      cJSON_AddStringToObject(j, "path", judge_lm);
      /* a folder (a hub model's): the SHA-256 of its weights */
      char wpath[4200];
      struct stat st;
      if (stat(judge_lm, &st) == 0 && S_ISDIR(st.st_mode))
        rc = model_hf_weights(judge_lm, wpath, sizeof wpath, err);
      else
        snprintf(wpath, sizeof wpath, "%s", judge_lm);
      if (!rc && !(rc = ds_sha256_file(wpath, hex, err)))
        cJSON_AddStringToObject(j, "sha256", hex);
      cJSON_AddBoolToObject(j, "own_tokenizer", jtok != NULL);
    }
    model_free(lm);
    tok_free(jtok);
  }
  for (size_t q = 0; q < rows; q++)
    free(conts[q]);
  free(conts);
  free(values);
  free(idx);
  free(prompts);
  return rc;
}
