#include "datasets/datasets.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { C_PRON, C_DET, C_ADJ, C_NOUN, C_VERB, C_ADV, C_PREP, C_CONJ, C_COMMA, C_END, N_CLASSES };

/* Word, class, polarity (+1 positive, -1 negative, 0 neutral). Some words
 * belong to two classes ("love", "fun", "like", "well", "this", "waste"), so
 * the hidden path is not always determined by the words. */
static const struct {
  const char *w;
  int c, pol;
} lexicon[] = {
    {"i", C_PRON, 0},
    {"we", C_PRON, 0},
    {"it", C_PRON, 0},
    {"everyone", C_PRON, 0},
    {"they", C_PRON, 0},
    {"you", C_PRON, 0},
    {"this", C_PRON, 0},

    {"the", C_DET, 0},
    {"a", C_DET, 0},
    {"this", C_DET, 0},
    {"that", C_DET, 0},
    {"every", C_DET, 0},
    {"its", C_DET, 0},
    {"their", C_DET, 0},
    {"my", C_DET, 0},

    {"great", C_ADJ, 1},
    {"wonderful", C_ADJ, 1},
    {"brilliant", C_ADJ, 1},
    {"beautiful", C_ADJ, 1},
    {"excellent", C_ADJ, 1},
    {"amazing", C_ADJ, 1},
    {"superb", C_ADJ, 1},
    {"moving", C_ADJ, 1},
    {"charming", C_ADJ, 1},
    {"delightful", C_ADJ, 1},
    {"fun", C_ADJ, 1},
    {"clever", C_ADJ, 1},
    {"fresh", C_ADJ, 1},
    {"gripping", C_ADJ, 1},
    {"touching", C_ADJ, 1},
    {"stunning", C_ADJ, 1},
    {"perfect", C_ADJ, 1},
    {"memorable", C_ADJ, 1},
    {"powerful", C_ADJ, 1},
    {"funny", C_ADJ, 1},
    {"good", C_ADJ, 1},
    {"well", C_ADJ, 1},
    {"awful", C_ADJ, -1},
    {"terrible", C_ADJ, -1},
    {"boring", C_ADJ, -1},
    {"dull", C_ADJ, -1},
    {"weak", C_ADJ, -1},
    {"poor", C_ADJ, -1},
    {"bad", C_ADJ, -1},
    {"horrible", C_ADJ, -1},
    {"stupid", C_ADJ, -1},
    {"pointless", C_ADJ, -1},
    {"bland", C_ADJ, -1},
    {"clumsy", C_ADJ, -1},
    {"tedious", C_ADJ, -1},
    {"predictable", C_ADJ, -1},
    {"forgettable", C_ADJ, -1},
    {"painful", C_ADJ, -1},
    {"lazy", C_ADJ, -1},
    {"messy", C_ADJ, -1},
    {"silly", C_ADJ, -1},
    {"ugly", C_ADJ, -1},
    {"long", C_ADJ, 0},
    {"short", C_ADJ, 0},
    {"old", C_ADJ, 0},
    {"new", C_ADJ, 0},
    {"quiet", C_ADJ, 0},
    {"loud", C_ADJ, 0},
    {"dark", C_ADJ, 0},
    {"simple", C_ADJ, 0},
    {"strange", C_ADJ, 0},
    {"slow", C_ADJ, 0},
    {"young", C_ADJ, 0},
    {"real", C_ADJ, 0},
    {"small", C_ADJ, 0},
    {"big", C_ADJ, 0},
    {"serious", C_ADJ, 0},
    {"familiar", C_ADJ, 0},
    {"french", C_ADJ, 0},
    {"early", C_ADJ, 0},
    {"late", C_ADJ, 0},

    {"movie", C_NOUN, 0},
    {"film", C_NOUN, 0},
    {"story", C_NOUN, 0},
    {"plot", C_NOUN, 0},
    {"script", C_NOUN, 0},
    {"cast", C_NOUN, 0},
    {"actor", C_NOUN, 0},
    {"actress", C_NOUN, 0},
    {"director", C_NOUN, 0},
    {"ending", C_NOUN, 0},
    {"scene", C_NOUN, 0},
    {"scenes", C_NOUN, 0},
    {"music", C_NOUN, 0},
    {"dialogue", C_NOUN, 0},
    {"character", C_NOUN, 0},
    {"characters", C_NOUN, 0},
    {"performance", C_NOUN, 0},
    {"acting", C_NOUN, 0},
    {"camera", C_NOUN, 0},
    {"effects", C_NOUN, 0},
    {"pacing", C_NOUN, 0},
    {"humor", C_NOUN, 0},
    {"drama", C_NOUN, 0},
    {"comedy", C_NOUN, 0},
    {"thriller", C_NOUN, 0},
    {"romance", C_NOUN, 0},
    {"sequel", C_NOUN, 0},
    {"hero", C_NOUN, 0},
    {"villain", C_NOUN, 0},
    {"twist", C_NOUN, 0},
    {"soundtrack", C_NOUN, 0},
    {"audience", C_NOUN, 0},
    {"theater", C_NOUN, 0},
    {"studio", C_NOUN, 0},
    {"budget", C_NOUN, 0},
    {"writer", C_NOUN, 0},
    {"moment", C_NOUN, 0},
    {"moments", C_NOUN, 0},
    {"idea", C_NOUN, 0},
    {"night", C_NOUN, 0},
    {"masterpiece", C_NOUN, 1},
    {"gem", C_NOUN, 1},
    {"joy", C_NOUN, 1},
    {"fun", C_NOUN, 1},
    {"love", C_NOUN, 1},
    {"delight", C_NOUN, 1},
    {"treat", C_NOUN, 1},
    {"triumph", C_NOUN, 1},
    {"mess", C_NOUN, -1},
    {"disaster", C_NOUN, -1},
    {"bore", C_NOUN, -1},
    {"waste", C_NOUN, -1},
    {"failure", C_NOUN, -1},
    {"letdown", C_NOUN, -1},
    {"mistake", C_NOUN, -1},

    {"was", C_VERB, 0},
    {"is", C_VERB, 0},
    {"felt", C_VERB, 0},
    {"seemed", C_VERB, 0},
    {"became", C_VERB, 0},
    {"looked", C_VERB, 0},
    {"sounded", C_VERB, 0},
    {"made", C_VERB, 0},
    {"gave", C_VERB, 0},
    {"showed", C_VERB, 0},
    {"watched", C_VERB, 0},
    {"saw", C_VERB, 0},
    {"remember", C_VERB, 0},
    {"deserves", C_VERB, 0},
    {"wants", C_VERB, 0},
    {"needs", C_VERB, 0},
    {"tries", C_VERB, 0},
    {"loved", C_VERB, 1},
    {"enjoyed", C_VERB, 1},
    {"liked", C_VERB, 1},
    {"love", C_VERB, 1},
    {"like", C_VERB, 1},
    {"recommend", C_VERB, 1},
    {"admired", C_VERB, 1},
    {"works", C_VERB, 1},
    {"shines", C_VERB, 1},
    {"sparkles", C_VERB, 1},
    {"hated", C_VERB, -1},
    {"disliked", C_VERB, -1},
    {"waste", C_VERB, -1},
    {"regret", C_VERB, -1},
    {"endured", C_VERB, -1},
    {"fails", C_VERB, -1},
    {"drags", C_VERB, -1},
    {"collapses", C_VERB, -1},

    {"very", C_ADV, 0},
    {"really", C_ADV, 0},
    {"quite", C_ADV, 0},
    {"truly", C_ADV, 0},
    {"rather", C_ADV, 0},
    {"so", C_ADV, 0},
    {"too", C_ADV, 0},
    {"pretty", C_ADV, 0},
    {"incredibly", C_ADV, 0},
    {"somewhat", C_ADV, 0},
    {"surprisingly", C_ADV, 0},
    {"oddly", C_ADV, 0},
    {"always", C_ADV, 0},
    {"never", C_ADV, 0},
    {"deeply", C_ADV, 1},
    {"well", C_ADV, 1},
    {"beautifully", C_ADV, 1},
    {"barely", C_ADV, -1},
    {"hardly", C_ADV, -1},
    {"painfully", C_ADV, -1},

    {"of", C_PREP, 0},
    {"in", C_PREP, 0},
    {"with", C_PREP, 0},
    {"about", C_PREP, 0},
    {"for", C_PREP, 0},
    {"like", C_PREP, 0},
    {"from", C_PREP, 0},
    {"after", C_PREP, 0},

    {"and", C_CONJ, 0},
    {"but", C_CONJ, 0},
    {"yet", C_CONJ, 0},
    {"or", C_CONJ, 0},
    {"because", C_CONJ, 0},

    {",", C_COMMA, 0},
    {".", C_END, 0},
    {"!", C_END, 0},
};

/* The class grammar: initial distribution and transitions (rows sum to 1). */
static const double grammar_init[N_CLASSES] = {[C_PRON] = .3, [C_DET] = .6, [C_ADV] = .1};
static const double grammar[N_CLASSES][N_CLASSES] = {
    [C_PRON] = {[C_VERB] = .9, [C_ADV] = .1},
    [C_DET] = {[C_ADJ] = .45, [C_NOUN] = .55},
    [C_ADJ] = {[C_NOUN] = .6, [C_CONJ] = .1, [C_END] = .2, [C_COMMA] = .1},
    [C_NOUN] = {[C_VERB] = .5, [C_END] = .25, [C_PREP] = .15, [C_CONJ] = .1},
    [C_VERB] = {[C_DET] = .45, [C_ADJ] = .3, [C_ADV] = .15, [C_END] = .1},
    [C_ADV] = {[C_ADJ] = .6, [C_VERB] = .3, [C_END] = .1},
    [C_PREP] = {[C_DET] = 1},
    [C_CONJ] = {[C_DET] = .4, [C_PRON] = .3, [C_ADJ] = .3},
    [C_COMMA] = {[C_CONJ] = .5, [C_DET] = .3, [C_PRON] = .2},
    [C_END] = {[C_PRON] = .3, [C_DET] = .6, [C_ADV] = .1},
};

#define EMIT(L, s, j, w) ((L)->emit[((size_t)(s) * (L)->n_states + (j)) * (L)->n_words + (w)])

int ds_synth_alloc(ds_synth *L, int n_states, int n_words, dfpo_err *err) {
  memset(L, 0, sizeof *L);
  if (n_states < 1 || n_states > DS_SYNTH_MAX_STATES || n_words < 1)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "synthetic language: need 1..%d states and at least one word (got %d, %d)",
                        DS_SYNTH_MAX_STATES, n_states, n_words);
  size_t ns = (size_t)n_states, nw = (size_t)n_words;
  size_t doubles = ns + ns * ns + 2 * ns * nw;
  size_t bytes = doubles * sizeof(double) + ns * sizeof(int) + nw * sizeof(char *);
  char *mem = calloc(1, bytes);
  if (!mem)
    return dfpo_err_set(err, DFPO_ERUNTIME, "synthetic language: out of memory");
  L->owned = mem;
  L->n_states = n_states;
  L->n_words = n_words;
  L->init = (double *)mem;
  L->trans = L->init + ns;
  L->emit = L->trans + ns * ns;
  /* pointers before ints so that both stay aligned */
  L->words = (const char **)(void *)(L->emit + 2 * ns * nw);
  L->end_state = (int *)(void *)(L->words + nw);
  L->prior_pos = 0.5;
  L->noise = 1e-3;
  L->oov_logp = log(1e-6);
  return DFPO_OK;
}

void ds_synth_free(ds_synth *L) {
  free(L->owned);
  memset(L, 0, sizeof *L);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int ds_synth_word_id(const ds_synth *L, const char *word, size_t len) {
  int lo = 0, hi = L->n_words - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    const char *w = L->words[mid];
    int c = strncmp(w, word, len);
    if (c == 0 && w[len] != '\0')
      c = 1; /* w is longer than the probe */
    if (c == 0)
      return mid;
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid - 1;
  }
  return -1;
}

int ds_synth_init_reviews(ds_synth *L, uint64_t seed, double lambda, dfpo_err *err) {
  if (!(lambda > 0) || !isfinite(lambda))
    return dfpo_err_set(err, DFPO_EUSAGE, "synthetic language: lambda must be > 0, got %g", lambda);
  enum { N_LEX = sizeof lexicon / sizeof lexicon[0] };
  const char *sorted[N_LEX];
  for (int i = 0; i < N_LEX; i++)
    sorted[i] = lexicon[i].w;
  qsort(sorted, N_LEX, sizeof sorted[0], cmp_str);
  int nw = 0;
  for (int i = 0; i < N_LEX; i++)
    if (nw == 0 || strcmp(sorted[nw - 1], sorted[i]))
      sorted[nw++] = sorted[i];
  int rc = ds_synth_alloc(L, N_CLASSES, nw, err);
  if (rc)
    return rc;
  for (int i = 0; i < nw; i++)
    L->words[i] = sorted[i];
  for (int i = 0; i < N_CLASSES; i++) {
    L->init[i] = grammar_init[i];
    for (int j = 0; j < N_CLASSES; j++)
      L->trans[i * N_CLASSES + j] = grammar[i][j];
  }
  L->end_state[C_END] = 1;

  /* Within each class, a seeded permutation gives each word a Zipf-like rank:
   * base weight 1 / (rank + 2). Sentiment s in {-1, +1} tilts polar words by
   * exp(lambda * s * polarity). */
  dfpo_rng rng;
  dfpo_rng_init(&rng, seed, DFPO_STREAM_DATA);
  for (int c = 0; c < N_CLASSES; c++) {
    int members[N_LEX], m = 0;
    for (int i = 0; i < N_LEX; i++)
      if (lexicon[i].c == c)
        members[m++] = i;
    dfpo_rng_shuffle(&rng, members, (size_t)m, sizeof members[0]);
    for (int s = 0; s < 2; s++) {
      double sign = s ? 1.0 : -1.0, total = 0;
      for (int r = 0; r < m; r++) {
        int i = members[r];
        double w = exp(lambda * sign * lexicon[i].pol) / (r + 2.0);
        int id = ds_synth_word_id(L, lexicon[i].w, strlen(lexicon[i].w));
        EMIT(L, s, c, id) = w;
        total += w;
      }
      for (int w = 0; w < nw; w++)
        EMIT(L, s, c, w) /= total;
    }
  }
  return DFPO_OK;
}

int ds_synth_words(const ds_synth *L, const char *text, int *ids, int cap) {
  int n = 0;
  const char *p = text;
  for (;;) {
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f' || *p == '\v')
      p++;
    if (!*p)
      break;
    const char *start = p;
    while (*p && !(*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f' || *p == '\v'))
      p++;
    if (n < cap)
      ids[n] = ds_synth_word_id(L, start, (size_t)(p - start));
    n++;
  }
  return n;
}

/* Scaled forward algorithm for one sentiment. */
static double forward(const ds_synth *L, int s, const int *ids, int n) {
  int ns = L->n_states;
  double alpha[DS_SYNTH_MAX_STATES], next[DS_SYNTH_MAX_STATES];
  double oov = exp(L->oov_logp), logp = 0, uniform = L->noise / L->n_words;
  for (int t = 0; t < n; t++) {
    double scale = 0;
    for (int j = 0; j < ns; j++) {
      double a;
      if (t == 0) {
        a = L->init[j];
      } else {
        a = 0;
        for (int i = 0; i < ns; i++)
          a += alpha[i] * L->trans[i * ns + j];
      }
      double e = ids[t] < 0 ? oov : (1 - L->noise) * EMIT(L, s, j, ids[t]) + uniform;
      next[j] = a * e;
      scale += next[j];
    }
    if (!(scale > 0))
      return -INFINITY; /* impossible under the grammar */
    for (int j = 0; j < ns; j++)
      alpha[j] = next[j] / scale;
    logp += log(scale);
  }
  return logp;
}

void ds_synth_logprob(const ds_synth *L, const int *ids, int n, double out[2]) {
  out[0] = forward(L, 0, ids, n);
  out[1] = forward(L, 1, ids, n);
}

double ds_synth_log_marginal(const ds_synth *L, const int *ids, int n, double *p_pos) {
  double lp[2];
  ds_synth_logprob(L, ids, n, lp);
  double a = log1p(-L->prior_pos) + lp[0], b = log(L->prior_pos) + lp[1];
  double m = a > b ? a : b;
  if (m == -INFINITY) {
    if (p_pos)
      *p_pos = L->prior_pos;
    return -INFINITY;
  }
  double lse = m + log(exp(a - m) + exp(b - m));
  if (p_pos)
    *p_pos = exp(b - lse);
  return lse;
}

int ds_synth_score_text(const ds_synth *L, const char *prompt, const char *continuation,
                        ds_synth_score *out, dfpo_err *err) {
  size_t lp = strlen(prompt), lc = strlen(continuation);
  char *joined = malloc(lp + lc + 1);
  int n_all_cap = (int)((lp + lc) / 2 + 2); /* a word takes >= 1 byte + 1 space */
  int *ids = malloc(sizeof(int) * (size_t)n_all_cap);
  if (!joined || !ids) {
    free(joined);
    free(ids);
    return dfpo_err_set(err, DFPO_ERUNTIME, "synthetic score: out of memory");
  }
  memcpy(joined, prompt, lp);
  memcpy(joined + lp, continuation, lc + 1);
  int n_prompt = ds_synth_words(L, prompt, ids, n_all_cap);
  double p_dummy;
  double lp_prompt = ds_synth_log_marginal(L, ids, n_prompt, &p_dummy);
  int n_all = ds_synth_words(L, joined, ids, n_all_cap);
  double lp_all = ds_synth_log_marginal(L, ids, n_all, &out->p_positive);
  out->n_oov = 0;
  for (int i = 0; i < n_all; i++)
    out->n_oov += ids[i] < 0;
  out->n_words = n_all - n_prompt;
  out->logp_cont = lp_all - lp_prompt;
  out->nll_word = -out->logp_cont / (out->n_words > 1 ? out->n_words : 1);
  free(joined);
  free(ids);
  return DFPO_OK;
}

static int draw(dfpo_rng *rng, const double *p, int n, size_t stride) {
  double u = dfpo_rng_uniform(rng), acc = 0;
  int last = 0;
  for (int i = 0; i < n; i++) {
    double q = p[(size_t)i * stride];
    if (q > 0) {
      acc += q;
      last = i;
      if (u < acc)
        return i;
    }
  }
  return last; /* rounding: the last possible outcome */
}

int ds_synth_sample(const ds_synth *L, dfpo_rng *rng, int sentiment, int min_words, int *ids,
                    int cap) {
  int ns = L->n_states, s = sentiment ? 1 : 0, n = 0;
  int state = draw(rng, L->init, ns, 1);
  while (n < cap) {
    /* the noise draw comes first so that every step uses two uniforms */
    int noisy = dfpo_rng_uniform(rng) < L->noise;
    int w = draw(rng, &EMIT(L, s, state, 0), L->n_words, 1);
    ids[n++] = noisy ? (int)dfpo_rng_below(rng, (uint32_t)L->n_words) : w;
    if (n >= min_words && L->end_state[state])
      break;
    state = draw(rng, L->trans + (size_t)state * ns, ns, 1);
  }
  return n;
}

char *ds_synth_text(const ds_synth *L, const int *ids, int n) {
  size_t len = 1;
  for (int i = 0; i < n; i++)
    len += strlen(L->words[ids[i]]) + 1;
  char *s = malloc(len), *p = s;
  if (!s)
    return NULL;
  for (int i = 0; i < n; i++) {
    size_t k = strlen(L->words[ids[i]]);
    if (i)
      *p++ = ' ';
    memcpy(p, L->words[ids[i]], k);
    p += k;
  }
  *p = '\0';
  return s;
}
