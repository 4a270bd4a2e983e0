/* Beam search and greedy decoding (trainer/beam.h) and the decoding-cache
 * reorder they stand on (model_decode_reorder).
 *
 * The reorder: logits after a reorder equal (1e-5) those of a fresh decode
 * of the reordered prompts fed the same tokens; errors for a call before
 * decode_begin, a source row out of range, and an architecture without the
 * entry. Beam search: tokens identical and scores within 1e-4 of
 * tests/trainer/beam_reference.py (transformers 4.30's rules written out in
 * PyTorch 1.13 over the same random GPT-2, exported to a folder) for four
 * prompts of different lengths in one left-padded batch, num_beams 1, 3 and
 * 5, length_penalty 1, 0.6 and 2, early_stopping true, false and never, with
 * an end-of-text that ends hypotheses (the test checks that both ways of
 * ending occur), minimum lengths and several returned hypotheses. */
#include "tests/support/support.h"
#include "tests/trainer/gpt2_testutil.h"
#include "tests/trainer/rdec_testutil.h"
#include "trainer/beam.h"
#include "trainer/model_internal.h"
#include "trainer/t5.h"

#include <cjson/cJSON.h>
#include <string.h>
#include <unistd.h>

#define REF DFPO_SOURCE_DIR "/tests/trainer/beam_reference.py"

static model_t *small(int V, uint64_t seed) {
  gpt2_config cfg = tu_config(V, 2, 2, 16, 48);
  model_t *m = tu_model(&cfg, seed);
  tu_perturb(m, seed + 1, 4.0f); /* a peaked, uneven next-token distribution */
  return m;
}

/* The rotary decoders' tiny model of the family (rdec_testutil.h). */
static model_t *small_rdec(int family, int V, uint64_t seed) {
  rdec_config c = rt_tiny(family, V);
  model_t *m;
  dfpo_err err;
  cr_assert_eq(rdec_new(&m, &c, &err), 0, "%s", err.msg);
  model_init_random(m, seed);
  return m;
}

/* The reorder on m (V 30): logits after it equal a fresh decode's. */
static void reorder_matches_fresh_decode(model_t *m) {
  enum { B = 4, T = 5, V = 30 };
  int prompt[B * T] = {4, 9, 1, 7, 3, 0, 0, 12, 5, 8, 0, 0, 0, 2, 21, 6, 6, 1, 0, 19};
  int ks[B] = {0, 2, 3, 0};
  int first[B] = {2, 6, 11, 29}, src[B] = {2, 0, 0, 3}, second[B] = {17, 3, 3, 8};
  dfpo_err err;
  dfpo_err_clear(&err);
  float want[B * V], got[B * V];
  /* the reordered batch decoded from the start: row i is prompt src[i],
   * fed first[src[i]], then second[i] */
  int p2[B * T], ks2[B], f2[B];
  for (int i = 0; i < B; i++) {
    memcpy(p2 + i * T, prompt + src[i] * T, sizeof(int) * T);
    ks2[i] = ks[src[i]];
    f2[i] = first[src[i]];
  }
  cr_assert_not_null(model_decode_begin(m, p2, ks2, B, T, T + 2, &err), "%s", err.msg);
  cr_assert_not_null(model_decode_step(m, f2, &err), "%s", err.msg);
  const float *lg = model_decode_step(m, second, &err);
  cr_assert_not_null(lg, "%s", err.msg);
  memcpy(want, lg, sizeof want);
  /* the original batch, reordered after the first token */
  cr_assert_not_null(model_decode_begin(m, prompt, ks, B, T, T + 2, &err), "%s", err.msg);
  cr_assert_not_null(model_decode_step(m, first, &err), "%s", err.msg);
  cr_assert_eq(model_decode_reorder(m, src, &err), 0, "%s", err.msg);
  cr_expect_null(model_lm_logits(m), "the logits are spent by a reorder");
  lg = model_decode_step(m, second, &err);
  cr_assert_not_null(lg, "%s", err.msg);
  memcpy(got, lg, sizeof got);
  for (int i = 0; i < B * V; i++)
    cr_assert_float_eq(got[i], want[i], 1e-5f, "row %d token %d: %g vs %g", i / V, i % V,
                       (double)got[i], (double)want[i]);
  /* the identity changes nothing */
  int id[B] = {0, 1, 2, 3};
  cr_assert_eq(model_decode_reorder(m, id, &err), 0, "%s", err.msg);
  model_free(m);
}

Test(beam, reorder_matches_fresh_decode) {
  reorder_matches_fresh_decode(small(30, 3));
}

/* the rotary decoders' cache (Llama's grouped key/value heads, GPT-J's and
 * GPT-NeoX's full ones) */
Test(beam, reorder_matches_fresh_decode_rotary) {
  static const int fams[3] = {RDEC_LLAMA, RDEC_GPTJ, RDEC_NEOX};
  for (int f = 0; f < 3; f++)
    reorder_matches_fresh_decode(small_rdec(fams[f], 30, 3 + (uint64_t)f));
}

Test(beam, reorder_errors) {
  dfpo_err err;
  dfpo_err_clear(&err);
  int src[2] = {1, 0}, bad[2] = {0, 2}, prompt[2] = {3, 4};
  for (int k = 0; k < 2; k++) {
    model_t *m = k ? small_rdec(RDEC_LLAMA, 30, 4) : small(30, 4);
    cr_expect_eq(model_decode_reorder(m, src, &err), DFPO_EUSAGE);
    cr_expect(strstr(err.msg, "decode_begin first") != NULL, "%s", err.msg);
    cr_assert_not_null(model_decode_begin(m, prompt, NULL, 2, 1, 4, &err), "%s", err.msg);
    dfpo_err_clear(&err);
    cr_expect_eq(model_decode_reorder(m, bad, &err), DFPO_EUSAGE);
    cr_expect(strstr(err.msg, "source row 2 outside the 2 rows") != NULL, "%s", err.msg);
    model_free(m);
  }
  /* an architecture whose table lacks the entry (the encoder classifiers,
   * T5 until its decoding lands): model.c answers for it */
  model_vtable vt;
  memset(&vt, 0, sizeof vt);
  vt.arch = "toy";
  struct model toy;
  memset(&toy, 0, sizeof toy);
  toy.vt = &vt;
  dfpo_err_clear(&err);
  cr_expect_eq(model_decode_reorder(&toy, src, &err), DFPO_EUSAGE);
  cr_expect_str_eq(err.msg, "decoding reorder not supported by toy");
}

Test(beam, settings_checked) {
  model_t *m = small(30, 5);
  beam_settings s = beam_settings_default();
  s.eos = 3;
  int prompt[1] = {1}, out[8], lens[2];
  dfpo_err err;
  dfpo_err_clear(&err);
  s.num_beams = 2;
  s.num_return = 3;
  cr_expect_eq(beam_search(m, prompt, NULL, 1, 1, &s, out, lens, NULL, &err), DFPO_EUSAGE);
  s.num_return = 1;
  s.eos = 30;
  cr_expect_eq(beam_search(m, prompt, NULL, 1, 1, &s, out, lens, NULL, &err), DFPO_EUSAGE);
  cr_expect(strstr(err.msg, "eos 30") != NULL, "%s", err.msg);
  model_free(m);
}

static int have_torch(void) {
  if (access("/usr/bin/python3", X_OK) != 0)
    return 0;
  char *argv[] = {"/usr/bin/python3", "-c", "import torch, regex", NULL};
  ts_run r;
  ts_run_cmd(&r, argv, NULL, NULL);
  int ok = r.status == 0;
  ts_run_free(&r);
  return ok;
}

/* The cases: every (beams, length penalty, early stopping) of the brief's
 * grid, plus minimum lengths and several hypotheses returned. */
typedef struct bcase {
  int beams, ret, max_new, min_new, min_length;
  float lp;
  int early;
} bcase;
static const char *const early_name[] = {"false", "true", "never"};

/* Runs beam_search on m over the prompts (left-padded to T by ks) for each
 * case and holds every hypothesis to beam_reference.py's over the model
 * exported in dir; counts the hypotheses ended by eos and by length and the
 * largest score difference; returns the reference's results (the caller
 * deletes them). */
static cJSON *against_the_reference(model_t *m, const char *dir, const int *prompts, const int *ks,
                                    int NP, int T, const bcase *cases, int nc, int EOS,
                                    int *ended_eos, int *ended_len, int *compared,
                                    double *maxdiff) {
  char spec_path[512];
  dfpo_err err;
  dfpo_err_clear(&err);
  /* the spec the reference reads */
  cJSON *spec = cJSON_CreateObject(), *ps = cJSON_AddArrayToObject(spec, "prompts"),
        *cs = cJSON_AddArrayToObject(spec, "cases");
  for (int b = 0; b < NP; b++)
    cJSON_AddItemToArray(ps, cJSON_CreateIntArray(prompts + b * T + ks[b], T - ks[b]));
  cJSON_AddNumberToObject(spec, "T", T);
  cJSON_AddNumberToObject(spec, "eos", EOS);
  for (int c = 0; c < nc; c++) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "num_beams", cases[c].beams);
    cJSON_AddNumberToObject(o, "num_return", cases[c].ret);
    cJSON_AddNumberToObject(o, "length_penalty", (double)cases[c].lp);
    cJSON_AddStringToObject(o, "early_stopping", early_name[cases[c].early]);
    cJSON_AddNumberToObject(o, "max_new", cases[c].max_new);
    cJSON_AddNumberToObject(o, "min_new", cases[c].min_new);
    cJSON_AddNumberToObject(o, "min_length", cases[c].min_length);
    cJSON_AddItemToArray(cs, o);
  }
  char *text = cJSON_PrintUnformatted(spec);
  snprintf(spec_path, sizeof spec_path, "%s/spec.json", dir);
  ts_write_text(spec_path, text);
  free(text);
  cJSON_Delete(spec);
  char *argv[] = {"/usr/bin/python3", REF, (char *)dir, spec_path, NULL};
  ts_run run;
  ts_run_cmd(&run, argv, NULL, NULL);
  cr_assert_eq(run.status, 0, "%s", run.err);
  cJSON *res = cJSON_Parse(run.out);
  cr_assert_not_null(res, "%s", run.out);
  ts_run_free(&run);
  const cJSON *all = cJSON_GetObjectItem(res, "results");
  cr_assert_eq(cJSON_GetArraySize(all), nc);
  for (int c = 0; c < nc; c++) {
    beam_settings s = beam_settings_default();
    s.num_beams = cases[c].beams;
    s.num_return = cases[c].ret;
    s.max_new = cases[c].max_new;
    s.min_new = cases[c].min_new;
    s.min_length = cases[c].min_length;
    s.length_penalty = cases[c].lp;
    s.early_stopping = cases[c].early;
    s.eos = EOS;
    int R = NP * s.num_return, N = s.max_new;
    int *out = malloc(sizeof(int) * R * N), *lens = malloc(sizeof(int) * R);
    double *scores = malloc(sizeof(double) * R);
    cr_assert_eq(beam_search(m, prompts, ks, NP, T, &s, out, lens, scores, &err), 0, "%s", err.msg);
    const cJSON *rc = cJSON_GetArrayItem(all, c);
    for (int b = 0; b < NP; b++) {
      const cJSON *hs = cJSON_GetArrayItem(rc, b);
      cr_assert_eq(cJSON_GetArraySize(hs), s.num_return);
      for (int h = 0; h < s.num_return; h++) {
        const cJSON *hy = cJSON_GetArrayItem(hs, h);
        const cJSON *toks = cJSON_GetObjectItem(hy, "tokens");
        double want = cJSON_GetObjectItem(hy, "score")->valuedouble;
        int o = b * s.num_return + h, n = cJSON_GetArraySize(toks);
        char where[160];
        snprintf(where, sizeof where,
                 "case %d (beams %d, lp %g, early %s, return %d), prompt %d, "
                 "hypothesis %d",
                 c, s.num_beams, (double)s.length_penalty, early_name[s.early_stopping],
                 s.num_return, b, h);
        cr_assert_eq(lens[o], n, "%s: %d tokens, the reference %d", where, lens[o], n);
        for (int t = 0; t < n; t++)
          cr_assert_eq(out[o * N + t], cJSON_GetArrayItem(toks, t)->valueint,
                       "%s: token %d is %d, the reference's %d", where, t, out[o * N + t],
                       cJSON_GetArrayItem(toks, t)->valueint);
        for (int t = n; t < N; t++)
          cr_assert_eq(out[o * N + t], -1, "%s: token %d after the end", where, t);
        cr_assert(fabs(scores[o] - want) <= 1e-4, "%s: score %.8f, the reference %.8f", where,
                  scores[o], want);
        if (fabs(scores[o] - want) > *maxdiff)
          *maxdiff = fabs(scores[o] - want);
        if (n && out[o * N + n - 1] == EOS)
          (*ended_eos)++;
        else
          (*ended_len)++;
        (*compared)++;
      }
    }
    free(out);
    free(lens);
    free(scores);
  }
  return res;
}

Test(beam, against_reference, .timeout = 300) {
  if (!have_torch())
    cr_skip_test("/usr/bin/python3 with torch and regex is missing: no reference to compare with");
  enum { V = 40, NP = 4, MAXC = 40 };
  const int EOS = 35;
  model_t *m = small(V, 11);
  char dir[256], path[512];
  ts_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(model_export_safetensors(m, path, 1, &err), 0, "%s", err.msg);
  /* four prompts of 1 to 6 tokens, left-padded to 6 */
  static const int plen[NP] = {3, 1, 6, 4};
  int T = 6, prompts[NP * 6], ks[NP];
  dfpo_rng r;
  dfpo_rng_init(&r, 21, 1);
  for (int b = 0; b < NP; b++) {
    ks[b] = T - plen[b];
    for (int t = 0; t < T; t++) {
      int v;
      do
        v = (int)dfpo_rng_below(&r, V);
      while (v == EOS);
      prompts[b * T + t] = t < ks[b] ? 0 : v;
    }
  }
  bcase cases[MAXC];
  int nc = 0;
  static const int beams[] = {1, 3, 5};
  static const float lps[] = {1.0f, 0.6f, 2.0f};
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 3; j++)
      for (int e = 0; e < 3; e++)
        cases[nc++] = (bcase){beams[i], 1, 12, 0, 0, lps[j], e};
  cases[nc++] = (bcase){5, 3, 8, 0, 0, 1.0f, BEAM_EARLY_FALSE};
  cases[nc++] = (bcase){3, 3, 10, 2, 0, 0.6f, BEAM_EARLY_NEVER};
  cases[nc++] = (bcase){4, 2, 8, 0, 9, 1.0f, BEAM_EARLY_TRUE};
  cases[nc++] = (bcase){1, 1, 8, 3, 0, 1.0f, BEAM_EARLY_FALSE};
  cases[nc++] = (bcase){3, 1, 12, 0, 0, -0.5f, BEAM_EARLY_NEVER};
  int ended_eos = 0, ended_len = 0, compared = 0;
  double maxdiff = 0;
  cJSON *res = against_the_reference(m, dir, prompts, ks, NP, T, cases, nc, EOS, &ended_eos,
                                     &ended_len, &compared, &maxdiff);
  const cJSON *all = cJSON_GetObjectItem(res, "results");
  /* the grid tells the three early-stopping rules apart: for each pair,
   * some (beams, length penalty) whose reference results differ */
  for (int e1 = 0; e1 < 3; e1++)
    for (int e2 = e1 + 1; e2 < 3; e2++) {
      int differ = 0;
      for (int g = 0; g < 9; g++)
        differ += !cJSON_Compare(cJSON_GetArrayItem(all, g * 3 + e1),
                                 cJSON_GetArrayItem(all, g * 3 + e2), 1);
      cr_expect_gt(differ, 0, "early_stopping %s and %s give the same results in every case",
                   early_name[e1], early_name[e2]);
    }
  cJSON_Delete(res);
  cr_log_info("beam search: %d hypotheses equal to the reference's (scores within %.2g), %d "
              "ended by end-of-text, %d by length",
              compared, maxdiff, ended_eos, ended_len);
  cr_expect_gt(ended_eos, 0, "no hypothesis ended by end-of-text: the eos case is not tested");
  cr_expect_gt(ended_len, 0, "no hypothesis ran to max_new");
  ts_rmtree(dir);
  model_free(m);
}

/* T5 (an encoder-decoder: lengths count the decoder's ids from its start
 * token, model_config.encoder_decoder): each prompt is the encoder's
 * source, left-padded in the batch; t5_decode_reorder moves the
 * self-attention caches, the cross-attention keys and values and the
 * encoder padding with the beams. v1.1 (gated-GELU, untied head) and v1.0
 * (ReLU, tied head with its d_model^-0.5 scale), random weights, against
 * beam_reference.py's T5 mode (tests/trainer/t5_reference.py's T5 over the
 * exported folder, each source alone). */
Test(beam, t5_against_reference, .timeout = 300) {
  if (!have_torch())
    cr_skip_test("/usr/bin/python3 with torch and regex is missing: no reference to compare with");
  enum { V = 40, NP = 4 };
  const int EOS = 1;
  int ended_eos = 0, ended_len = 0;
  for (int v11 = 1; v11 >= 0; v11--) {
    t5_config c = {V, 16, 4, 32, 2, 2, 2, 8, 16, 1e-6f, v11, !v11, 64, 0, EOS, T5_SCALE_AS_TIED};
    model_t *m;
    dfpo_err err;
    dfpo_err_clear(&err);
    cr_assert_eq(t5_new(&m, &c, &err), 0, "%s", err.msg);
    model_init_random(m, 31 + (uint64_t)v11);
    cr_expect_eq(model_get_config(m)->encoder_decoder, 1);
    char dir[256], path[512];
    ts_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    cr_assert_eq(model_export_safetensors(m, path, 1, &err), 0, "%s", err.msg);
    static const int plen[NP] = {3, 1, 6, 4};
    int T = 6, prompts[NP * 6], ks[NP];
    dfpo_rng r;
    dfpo_rng_init(&r, 23, 1);
    for (int b = 0; b < NP; b++) {
      ks[b] = T - plen[b];
      for (int t = 0; t < T; t++)
        prompts[b * T + t] = t < ks[b] ? 0 : 2 + (int)dfpo_rng_below(&r, V - 2);
    }
    bcase cases[16];
    int nc = 0;
    static const int beams[] = {1, 3, 4};
    static const float lps[] = {1.0f, 2.0f};
    for (int i = 0; i < 3; i++)
      for (int j = 0; j < 2; j++)
        cases[nc++] =
            (bcase){beams[i], 1, 8, 0, 0, lps[j], j ? BEAM_EARLY_NEVER : BEAM_EARLY_FALSE};
    cases[nc++] = (bcase){3, 3, 8, 2, 0, 0.6f, BEAM_EARLY_TRUE};
    cases[nc++] = (bcase){4, 2, 6, 0, 4, 1.0f, BEAM_EARLY_FALSE};
    int compared = 0;
    double maxdiff = 0;
    cJSON *res = against_the_reference(m, dir, prompts, ks, NP, T, cases, nc, EOS, &ended_eos,
                                       &ended_len, &compared, &maxdiff);
    cr_log_info("T5 %s beam search: %d hypotheses equal to the reference's (scores within %.2g), "
                "%d ended by end-of-text so far, %d by length",
                v11 ? "v1.1" : "v1.0", compared, maxdiff, ended_eos, ended_len);
    cJSON_Delete(res);
    ts_rmtree(dir);
    model_free(m);
  }
  cr_expect_gt(ended_eos, 0, "no T5 hypothesis ended by end-of-text");
  cr_expect_gt(ended_len, 0, "no T5 hypothesis ran to max_new");
}
