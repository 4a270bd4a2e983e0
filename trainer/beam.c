/* Beam search and greedy decoding over any model_t with transformers 4.30's
 * rules (trainer/beam.h; docs/model-interface.md#decoding). The search runs
 * on the host over each step's logits; the model keeps one decoding row
 * per beam and follows the beams with model_decode_reorder. */
#include "trainer/beam.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

beam_settings beam_settings_default(void) {
  beam_settings s;
  memset(&s, 0, sizeof s);
  s.num_beams = 1;
  s.num_return = 1;
  s.max_new = 48;
  s.length_penalty = 1.0f;
  s.early_stopping = BEAM_EARLY_FALSE;
  s.eos = 50256;
  return s;
}

int beam_prefix_len(const model_t *m, int T) {
  return model_get_config(m)->encoder_decoder ? 1 : T;
}

/* The finished hypotheses of one prompt (BeamHypotheses): up to k entries in
 * the order they were added (k + 1 while one is being added). */
typedef struct hyps {
  int k, N;
  float length_penalty;
  int *n;        /* [B] entries */
  double *worst; /* [B] worst_score */
  double *score; /* [B, k+1] */
  int *len;      /* [B, k+1] new tokens, the end-of-text included */
  int *tok;      /* [B, k+1, N] */
} hyps;

/* BeamHypotheses.add: toks[ntok] (new tokens), then end (the end-of-text
 * that finished it; < 0: none), with sum_logprobs sum, scored over the
 * counted length (the end-of-text not counted, as transformers counts). */
static void hyps_add(hyps *h, int g, const int *toks, int ntok, int end, double sum, int counted) {
  int k = h->k, *n = &h->n[g];
  double sc = sum / pow((double)counted, (double)h->length_penalty);
  double *score = h->score + (size_t)g * (k + 1);
  int *len = h->len + (size_t)g * (k + 1), *tok = h->tok + (size_t)g * (k + 1) * h->N;
  if (*n >= k && !(sc > h->worst[g]))
    return;
  score[*n] = sc;
  len[*n] = ntok + (end >= 0);
  memcpy(tok + (size_t)*n * h->N, toks, sizeof(int) * (size_t)ntok);
  if (end >= 0)
    tok[(size_t)*n * h->N + ntok] = end;
  (*n)++;
  if (*n <= k) {
    if (sc < h->worst[g])
      h->worst[g] = sc;
    return;
  }
  /* over k: drop the lowest (score, index) entry; the worst becomes the
   * lowest score left */
  int lo = 0;
  for (int i = 1; i < *n; i++)
    if (score[i] < score[lo])
      lo = i;
  for (int i = lo; i + 1 < *n; i++) {
    score[i] = score[i + 1];
    len[i] = len[i + 1];
    memcpy(tok + (size_t)i * h->N, tok + (size_t)(i + 1) * h->N, sizeof(int) * (size_t)h->N);
  }
  (*n)--;
  h->worst[g] = score[0];
  for (int i = 1; i < *n; i++)
    if (score[i] < h->worst[g])
      h->worst[g] = score[i];
}

/* BeamHypotheses.is_done after a step whose best candidate scored best, at
 * the counted length cur (before the step's token) and max_length maxlen. */
static int hyps_done(const hyps *h, int g, int early, double best, int cur, int maxlen) {
  if (h->n[g] < h->k)
    return 0;
  if (early == BEAM_EARLY_TRUE)
    return 1;
  double lp = (double)h->length_penalty;
  int at = early == BEAM_EARLY_NEVER && lp > 0.0 ? maxlen : cur;
  return h->worst[g] >= best / pow((double)at, lp);
}

/* log-softmax of z[V] into lp[V] (the sum in double), then the ban */
static void log_softmax(float *lp, const float *z, int V, int ban) {
  float mx = z[0];
  for (int v = 1; v < V; v++)
    if (z[v] > mx)
      mx = z[v];
  double sum = 0;
  for (int v = 0; v < V; v++)
    sum += exp((double)z[v] - (double)mx);
  double lse = (double)mx + log(sum);
  for (int v = 0; v < V; v++)
    lp[v] = (float)((double)z[v] - lse);
  if (ban >= 0)
    lp[ban] = -INFINITY;
}

static int check(const model_t *m, const beam_settings *s, dfpo_err *err) {
  int V = model_get_config(m)->vocab_size;
  if (s->num_beams < 1 || s->num_return < 1 || s->num_return > s->num_beams)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "beam search: %d hypotheses returned of %d beams (1 <= returned <= beams)",
                        s->num_return, s->num_beams);
  if (s->max_new < 1 || s->min_new < 0 || s->min_length < 0)
    return dfpo_err_set(err, DFPO_EUSAGE, "beam search: max_new %d, min_new %d, min_length %d",
                        s->max_new, s->min_new, s->min_length);
  if (s->early_stopping < BEAM_EARLY_FALSE || s->early_stopping > BEAM_EARLY_NEVER)
    return dfpo_err_set(err, DFPO_EUSAGE, "beam search: early_stopping %d", s->early_stopping);
  if (s->eos >= V)
    return dfpo_err_set(err, DFPO_EUSAGE, "beam search: eos %d outside the vocabulary", s->eos);
  if (!isfinite(s->length_penalty))
    return dfpo_err_set(err, DFPO_EUSAGE, "beam search: length_penalty is not finite");
  return DFPO_OK;
}

/* transformers' greedy_search: the argmax of the logits with end-of-text
 * banned while too short; a row stops at end-of-text. */
static int greedy(model_t *m, const int *prompts, const int *kstart, int B, int T,
                  const beam_settings *s, int *out, int *lens, double *scores, dfpo_err *err) {
  int V = model_get_config(m)->vocab_size, N = s->max_new, L0 = beam_prefix_len(m, T);
  float *zbuf = malloc(sizeof(float) * (size_t)B * V), *lp = malloc(sizeof(float) * (size_t)V);
  int *next = calloc((size_t)B, sizeof(int)), *done = calloc((size_t)B, sizeof(int));
  double *sum = calloc((size_t)B, sizeof(double));
  int rc = DFPO_OK;
  if (!zbuf || !lp || !next || !done || !sum) {
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    goto out;
  }
  for (int i = 0; i < B * N; i++)
    out[i] = -1;
  for (int b = 0; b < B; b++)
    lens[b] = 0;
  const float *logits = model_decode_begin(m, prompts, kstart, B, T, T + N - 1, err);
  for (int step = 0; step < N; step++) {
    if (!logits) {
      rc = err ? err->code : DFPO_ERUNTIME;
      goto out;
    }
    const float *z = model_host_view(m, logits, (size_t)B * V, zbuf);
    int ban = s->eos >= 0 && (step < s->min_new || L0 + step < s->min_length) ? s->eos : -1,
        live = 0;
    for (int b = 0; b < B; b++) {
      if (done[b]) {
        next[b] = s->eos >= 0 ? s->eos : 0;
        continue;
      }
      const float *zr = z + (size_t)b * V;
      int best = -1;
      for (int v = 0; v < V; v++)
        if (v != ban && (best < 0 || zr[v] > zr[best]))
          best = v;
      log_softmax(lp, zr, V, -1);
      sum[b] += (double)lp[best];
      out[(size_t)b * N + step] = best;
      lens[b]++;
      next[b] = best;
      if (best == s->eos)
        done[b] = 1;
      else
        live++;
    }
    if (!live || step == N - 1)
      break;
    logits = model_decode_step(m, next, err);
  }
  for (int b = 0; scores && b < B; b++) {
    int ended = done[b] ? 1 : 0;
    scores[b] = sum[b] / pow((double)(L0 + lens[b] - ended), (double)s->length_penalty);
  }
out:
  free(zbuf);
  free(lp);
  free(next);
  free(done);
  free(sum);
  return rc;
}

int beam_search(model_t *m, const int *prompts, const int *kstart, int B, int T,
                const beam_settings *s, int *out, int *lens, double *scores, dfpo_err *err) {
  int rc = check(m, s, err);
  if (rc)
    return rc;
  if (B < 1 || T < 1)
    return dfpo_err_set(err, DFPO_EUSAGE, "beam search: bad sizes B=%d T=%d", B, T);
  if (s->num_beams == 1)
    return greedy(m, prompts, kstart, B, T, s, out, lens, scores, err);
  int V = model_get_config(m)->vocab_size, N = s->max_new, k = s->num_beams, K2 = 2 * k, R = B * k,
      L0 = beam_prefix_len(m, T), maxlen = L0 + N, NR = s->num_return;
  hyps h = {k, N, s->length_penalty, NULL, NULL, NULL, NULL, NULL};
  h.n = calloc((size_t)B, sizeof(int));
  h.worst = malloc(sizeof(double) * (size_t)B);
  h.score = malloc(sizeof(double) * (size_t)B * (k + 1));
  h.len = malloc(sizeof(int) * (size_t)B * (k + 1));
  h.tok = malloc(sizeof(int) * (size_t)B * (k + 1) * N);
  int *ptok = malloc(sizeof(int) * (size_t)R * T), *pks = malloc(sizeof(int) * (size_t)R);
  int *hist = malloc(sizeof(int) * (size_t)R * N), *nhist = malloc(sizeof(int) * (size_t)R * N);
  int *ntok = malloc(sizeof(int) * (size_t)R), *src = malloc(sizeof(int) * (size_t)R);
  float *bscore = malloc(sizeof(float) * (size_t)R), *nscore = malloc(sizeof(float) * (size_t)R);
  float *zbuf = malloc(sizeof(float) * (size_t)R * V), *lp = malloc(sizeof(float) * (size_t)k * V);
  float *cs = malloc(sizeof(float) * (size_t)K2);
  int *ci = malloc(sizeof(int) * (size_t)K2), *done = calloc((size_t)B, sizeof(int));
  if (!h.n || !h.worst || !h.score || !h.len || !h.tok || !ptok || !pks || !hist || !nhist ||
      !ntok || !src || !bscore || !nscore || !zbuf || !lp || !cs || !ci || !done) {
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    goto out;
  }
  /* each prompt in k rows; beam 0 starts at 0, the others at -1e9 so that
   * the first step's candidates all continue beam 0 */
  for (int i = 0; i < R; i++) {
    int b = i / k;
    memcpy(ptok + (size_t)i * T, prompts + (size_t)b * T, sizeof(int) * (size_t)T);
    pks[i] = kstart ? kstart[b] : 0;
    bscore[i] = i % k == 0 ? 0.0f : -1e9f;
  }
  for (int b = 0; b < B; b++)
    h.worst[b] = 1e9;
  const float *logits = model_decode_begin(m, ptok, pks, R, T, T + N - 1, err);
  int steps = 0;
  for (int step = 0; step < N; step++) {
    if (!logits) {
      rc = err ? err->code : DFPO_ERUNTIME;
      goto out;
    }
    const float *z = model_host_view(m, logits, (size_t)R * V, zbuf);
    int ban = s->eos >= 0 && (step < s->min_new || L0 + step < s->min_length) ? s->eos : -1,
        cur = L0 + step, all_done = 1;
    for (int g = 0; g < B; g++) {
      if (done[g]) { /* padding rows: their own cache row, any token */
        for (int j = 0; j < k; j++) {
          int i = g * k + j;
          src[i] = i;
          ntok[i] = s->eos >= 0 ? s->eos : 0;
          nscore[i] = 0.0f;
        }
        continue;
      }
      /* the 2k best (beam score + log-probability) over the group's k x V,
       * best first, ties by the lower beam * V + token */
      int nc = 0;
      for (int j = 0; j < k; j++) {
        int i = g * k + j;
        float *l = lp + (size_t)j * V;
        log_softmax(l, z + (size_t)i * V, V, ban);
        for (int v = 0; v < V; v++) {
          float c = l[v] + bscore[i];
          if (nc == K2 && !(c > cs[nc - 1]))
            continue;
          int p = nc < K2 ? nc++ : K2 - 1;
          while (p > 0 && c > cs[p - 1]) {
            cs[p] = cs[p - 1];
            ci[p] = ci[p - 1];
            p--;
          }
          cs[p] = c;
          ci[p] = j * V + v;
        }
      }
      /* BeamSearchScorer.process: an end-of-text among the first k
       * candidates finishes its beam's hypothesis; the first k others are
       * the next beams */
      int nb = 0;
      for (int r = 0; r < nc && nb < k; r++) {
        int j = ci[r] / V, v = ci[r] % V, i = g * k + j;
        if (s->eos >= 0 && v == s->eos) {
          if (r < k)
            hyps_add(&h, g, hist + (size_t)i * N, step, s->eos, (double)cs[r], cur);
          continue;
        }
        int d = g * k + nb++;
        src[d] = i;
        ntok[d] = v;
        nscore[d] = cs[r];
      }
      if (nb < k) {
        rc = dfpo_err_set(err, DFPO_ERUNTIME,
                          "beam search: prompt %d has fewer than %d candidates at step %d", g, k,
                          step);
        goto out;
      }
      done[g] = hyps_done(&h, g, s->early_stopping, (double)cs[0], cur, maxlen);
      all_done &= done[g];
    }
    for (int i = 0; i < R; i++) {
      memcpy(nhist + (size_t)i * N, hist + (size_t)src[i] * N, sizeof(int) * (size_t)step);
      nhist[(size_t)i * N + step] = ntok[i];
    }
    int *t = hist;
    hist = nhist;
    nhist = t;
    memcpy(bscore, nscore, sizeof(float) * (size_t)R);
    steps = step + 1;
    if (all_done || step == N - 1)
      break;
    if ((rc = model_decode_reorder(m, src, err)))
      goto out;
    logits = model_decode_step(m, ntok, err);
  }
  /* BeamSearchScorer.finalize: the open beams of unfinished prompts join
   * their hypotheses; the best num_return of each prompt are returned */
  for (int g = 0; g < B; g++)
    if (!done[g])
      for (int j = 0; j < k; j++) {
        int i = g * k + j;
        hyps_add(&h, g, hist + (size_t)i * N, steps, -1, (double)bscore[i], L0 + steps);
      }
  for (int g = 0; g < B; g++) {
    double *score = h.score + (size_t)g * (k + 1);
    int *len = h.len + (size_t)g * (k + 1), *tok = h.tok + (size_t)g * (k + 1) * N;
    unsigned char taken[k + 1];
    memset(taken, 0, sizeof taken);
    for (int r = 0; r < NR; r++) {
      /* sorted by score, stable, popped from the end: the highest score,
       * of equal ones the last added */
      int best = -1;
      for (int e = 0; e < h.n[g]; e++)
        if (!taken[e] && (best < 0 || score[e] >= score[best]))
          best = e;
      size_t o = (size_t)g * NR + r;
      for (int i = 0; i < N; i++)
        out[o * N + i] = -1;
      if (best < 0) { /* cannot happen: k entries per prompt */
        lens[o] = 0;
        if (scores)
          scores[o] = -INFINITY;
        continue;
      }
      taken[best] = 1;
      memcpy(out + o * N, tok + (size_t)best * N, sizeof(int) * (size_t)len[best]);
      lens[o] = len[best];
      if (scores)
        scores[o] = score[best];
    }
  }
out:
  free(h.n);
  free(h.worst);
  free(h.score);
  free(h.len);
  free(h.tok);
  free(ptok);
  free(pks);
  free(hist);
  free(nhist);
  free(ntok);
  free(src);
  free(bscore);
  free(nscore);
  free(zbuf);
  free(lp);
  free(cs);
  free(ci);
  free(done);
  return rc;
}
