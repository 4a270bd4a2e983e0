/* T5 (trainer/t5.h) and T5's SentencePiece tokenizer (trainer/tok.h)
 * against tests/trainer/t5_reference.py: a PyTorch T5ForConditionalGeneration
 * forward pass written in that script from the architecture as Hugging
 * Face's transformers defines it (transformers is not installed), over
 * random-weight Hugging Face folders it writes (v1.0: ReLU, tied head with
 * the d_model^-0.5 scale; v1.1: gated gelu_new, untied lm_head), and
 * python3-sentencepiece over a spiece.model the script trains itself.
 * Each pair's nll_sum from `dfpo perplexity --per-doc --json` within 1e-4
 * relative of the script's (float32 on both sides; the measured maxima are
 * logged), alone and in left-padded batches through model_forward; token
 * ids exactly. The script's autograd holds the backward passes (every
 * tensor's gradient, the value head's, one AdamW step) and its greedy loop
 * holds `dfpo generate`. Skipped, saying why, when /usr/bin/python3 lacks
 * torch or sentencepiece. The bucket function is held to hand
 * calculations; the RL trainer runs over T5s without the script. */
#include "metrics/metrics.h"
#include "tests/support/support.h"
#include "tests/trainer/t5_testutil.h"
#include "tests/trainer/train_testutil.h"
#include "trainer/model.h"
#include "trainer/optim.h"
#include "trainer/rl.h"
#include "trainer/t5.h"
#include "trainer/t5_internal.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TOL 1e-4

/* Hugging Face's _relative_position_bucket worked by hand:
 * bidirectional, 32 buckets, max distance 128: n = 16 per side, max_exact 8,
 * a key after the query adds 16; |rel| >= 8 gives 8 + floor(ln(|rel|/8) /
 * ln(16) * 8), at most 15. Causal, 32 buckets: a later key is 0, else n =
 * 32, max_exact 16, 16 + floor(ln(|rel|/16) / ln(8) * 16), at most 31. */
Test(t5, bucket_by_hand) {
  struct {
    int rel, bidir, nb, md, want;
  } c[] = {
      {0, 1, 32, 128, 0},      {-3, 1, 32, 128, 3},   {3, 1, 32, 128, 19}, /* 16 + 3 */
      {-7, 1, 32, 128, 7},                                                 /* the last exact one */
      {-8, 1, 32, 128, 8},                         /* 8 + floor(ln 1 ...) = 8 */
      {-11, 1, 32, 128, 8},                        /* ln(1.375)/ln(16)*8 = 0.919 */
      {-12, 1, 32, 128, 9},                        /* ln(1.5)/ln(16)*8 = 1.170 */
      {-16, 1, 32, 128, 10},                       /* ln 2/ln 16*8 = 2 exactly: never 9 */
      {16, 1, 32, 128, 26},                        /* 16 + 10 */
      {-32, 1, 32, 128, 12},                       /* ln 4/ln 16*8 = 4 exactly */
      {-64, 1, 32, 128, 14},                       /* 6 exactly */
      {-128, 1, 32, 128, 15},                      /* 8 + 8 = 16, capped at 15 */
      {-1000, 1, 32, 128, 15}, {5, 0, 32, 128, 0}, /* causal: a later key */
      {-5, 0, 32, 128, 5},     {-15, 0, 32, 128, 15}, {-16, 0, 32, 128, 16},
      {-32, 0, 32, 128, 21},  /* ln 2/ln 8*16 = 5.333 */
      {-64, 0, 32, 128, 26},  /* ln 4/ln 8*16 = 10.667 */
      {-128, 0, 32, 128, 31}, /* 16 + 16, capped */
      {-8, 1, 16, 20, 5},     /* n 8, max_exact 4: ln 2/ln 5*4 = 1.723 */
      {10, 1, 16, 20, 14},    /* 8 + 4 + floor(ln 2.5/ln 5*4 = 2.277) */
      {-20, 1, 16, 20, 7},    /* 4 + 4, capped at 7 */
  };
  for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
    cr_expect_eq(t5_bucket(c[i].rel, c[i].bidir, c[i].nb, c[i].md), c[i].want,
                 "bucket(%d, %s, %d, %d) = %d, by hand %d", c[i].rel,
                 c[i].bidir ? "bidirectional" : "causal", c[i].nb, c[i].md,
                 t5_bucket(c[i].rel, c[i].bidir, c[i].nb, c[i].md), c[i].want);
}

static int have_python(void) {
  return ts_python_has("torch, sentencepiece");
}

/* Runs the reference into a fresh folder dir; returns its output. */
static cJSON *reference(char *dir, size_t n) {
  if (!have_python())
    cr_skip_test("/usr/bin/python3 lacks torch or sentencepiece (Debian packages python3-torch, "
                 "python3-sentencepiece): the T5 reference cannot run");
  ts_tmpdir(dir, n);
  char op[600];
  snprintf(op, sizeof op, "%s/ref.json", dir);
  ts_run r;
  char *argv[] = {"/usr/bin/python3", DFPO_SOURCE_DIR "/tests/trainer/t5_reference.py", dir, op,
                  NULL};
  ts_run_cmd(&r, argv, NULL, NULL);
  cr_assert_eq(r.status, 0, "t5_reference.py failed: %s", r.err);
  ts_run_free(&r);
  return ts_read_json(op);
}

static double rel_diff(double a, double b) {
  return fabs(a - b) / fmax(fabs(b), 1e-12);
}

/* dfpo perplexity --per-doc --json over file; each per-pair nll_sum held
 * to want[]; returns the largest relative difference. */
static double check_perplexity(const char *home, const char *model, const char *opt,
                               const char *file, const cJSON *want) {
  ts_run r;
  char *args[] = {"perplexity", "--model",   (char *)model, (char *)opt,
                  (char *)file, "--per-doc", "--json",      NULL};
  ts_dfpo_home(&r, home, args, NULL);
  cr_assert_eq(r.status, 0, "dfpo perplexity %s %s: %s", model, file, r.err);
  int n = cJSON_GetArraySize(want), k = 0;
  double md = 0;
  char *save = NULL;
  for (char *line = strtok_r(r.out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    cJSON *j = cJSON_Parse(line);
    cr_assert_not_null(j, "not JSON: %s", line);
    const cJSON *doc = cJSON_GetObjectItem(j, "doc");
    if (doc) {
      cr_assert_eq(doc->valueint, k, "%s", line);
      cr_assert_lt(k, n, "more pairs than the reference: %s", line);
      double got = cJSON_GetObjectItem(j, "nll_sum")->valuedouble;
      double ref = cJSON_GetArrayItem(want, k)->valuedouble;
      cr_expect_leq(rel_diff(got, ref), TOL, "%s pair %d: nll_sum %.9g, PyTorch %.9g", model, k,
                    got, ref);
      md = fmax(md, rel_diff(got, ref));
      k++;
    } else {
      cr_assert_eq(cJSON_GetObjectItem(j, "documents")->valueint, n, "%s", line);
    }
    cJSON_Delete(j);
  }
  cr_assert_eq(k, n, "%s: %d pairs printed, %d in the reference", model, k, n);
  ts_run_free(&r);
  return md;
}

/* The pairs whose target has L tokens, left-padded into one batch through
 * model_forward and model_lm_logprobs; returns the largest relative
 * difference to the reference and the rows in *rows. */
static double check_batch(model_t *m, const cJSON *pairs, const cJSON *nll, int L, int *rows) {
  int n = cJSON_GetArraySize(pairs), B = 0, Ts = 0, idx[64];
  for (int i = 0; i < n; i++) {
    const cJSON *p = cJSON_GetArrayItem(pairs, i);
    if (cJSON_GetArraySize(cJSON_GetArrayItem(p, 1)) != L)
      continue;
    int ns = cJSON_GetArraySize(cJSON_GetArrayItem(p, 0));
    Ts = ns > Ts ? ns : Ts;
    idx[B++] = i;
  }
  cr_assert_geq(B, 2, "fewer than two pairs with %d target tokens", L);
  int T = Ts + L;
  int *tok = calloc((size_t)B * T, sizeof *tok), *tg = malloc((size_t)B * T * sizeof *tg);
  int *ks = malloc((size_t)B * sizeof *ks);
  float *lp = malloc((size_t)B * T * sizeof *lp);
  for (int b = 0; b < B; b++) {
    const cJSON *p = cJSON_GetArrayItem(pairs, idx[b]);
    const cJSON *s = cJSON_GetArrayItem(p, 0), *t = cJSON_GetArrayItem(p, 1);
    int ns = cJSON_GetArraySize(s);
    ks[b] = Ts - ns;
    for (int i = 0; i < ns; i++)
      tok[(size_t)b * T + ks[b] + i] = cJSON_GetArrayItem(s, i)->valueint;
    for (int j = 0; j < L; j++)
      tok[(size_t)b * T + Ts + j] = cJSON_GetArrayItem(t, j)->valueint;
    for (int c = 0; c < T; c++)
      tg[(size_t)b * T + c] = c >= Ts - 1 && c < T - 1 ? tok[(size_t)b * T + c + 1] : -1;
  }
  dfpo_err err;
  dfpo_err_clear(&err);
  model_batch batch = {tok, ks, B, T, Ts, 0};
  cr_assert_eq(model_forward(m, &batch, &err), DFPO_OK, "%s", err.msg);
  cr_assert_eq(model_lm_logprobs(m, tg, lp, NULL, &err), DFPO_OK, "%s", err.msg);
  double md = 0;
  for (int b = 0; b < B; b++) {
    double s = 0;
    for (int c = 0; c < T; c++) {
      if (tg[(size_t)b * T + c] < 0)
        cr_assert_eq(lp[(size_t)b * T + c], 0.0f, "column %d without an output", c);
      else
        s -= lp[(size_t)b * T + c];
    }
    double ref = cJSON_GetArrayItem(nll, idx[b])->valuedouble;
    cr_expect_leq(rel_diff(s, ref), TOL, "batched pair %d: %.9g, PyTorch %.9g", idx[b], s, ref);
    md = fmax(md, rel_diff(s, ref));
  }
  free(tok), free(tg), free(ks), free(lp);
  *rows = B;
  return md;
}

/* ppl_ref's and ppl_gen's definition on an encoder-decoder
 * (metrics/ppl.c): met_ppl_gen_ids over every pair, in batches of 4 rows
 * of ragged sources and targets (left-padded sources, right-padded
 * targets); each pair's NLL (its perplexity's log times its target
 * length) and the totals held to the reference. Returns the largest
 * relative difference. */
static double check_ppl_pairs(model_t *m, const cJSON *pairs, const cJSON *nll) {
  int n = cJSON_GetArraySize(pairs);
  tok_ids *src = calloc((size_t)n, sizeof *src), *tgt = calloc((size_t)n, sizeof *tgt);
  double *per = malloc((size_t)n * sizeof *per), want = 0, md = 0;
  size_t want_tokens = 0;
  for (int i = 0; i < n; i++) {
    const cJSON *p = cJSON_GetArrayItem(pairs, i);
    tok_ids *v[2] = {&src[i], &tgt[i]};
    for (int k = 0; k < 2; k++) {
      const cJSON *a = cJSON_GetArrayItem(p, k);
      v[k]->n = (size_t)cJSON_GetArraySize(a);
      v[k]->ids = malloc(v[k]->n * sizeof(int32_t));
      for (size_t j = 0; j < v[k]->n; j++)
        v[k]->ids[j] = cJSON_GetArrayItem(a, (int)j)->valueint;
    }
    want += cJSON_GetArrayItem(nll, i)->valuedouble;
    want_tokens += tgt[i].n;
  }
  met_ppl_opts o = met_ppl_opts_default();
  o.batch = 4;
  met_ppl out;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(met_ppl_gen_ids(m, src, tgt, (size_t)n, &o, &out, per, &err), DFPO_OK, "%s",
               err.msg);
  for (int i = 0; i < n; i++) {
    double got = log(per[i]) * (double)tgt[i].n, ref = cJSON_GetArrayItem(nll, i)->valuedouble;
    cr_expect_leq(rel_diff(got, ref), TOL, "met_ppl_gen_ids pair %d: %.9g, PyTorch %.9g", i, got,
                  ref);
    md = fmax(md, rel_diff(got, ref));
  }
  cr_expect_eq(out.tokens, want_tokens);
  cr_expect_leq(rel_diff(out.nll, want), TOL, "met_ppl_gen_ids: nll %.9g, PyTorch %.9g", out.nll,
                want);
  cr_expect_leq(rel_diff(out.ppl, exp(want / (double)want_tokens)), TOL);
  /* without sources: refused, naming the pair function */
  cr_expect_eq(met_ppl_ref_ids(m, tgt, (size_t)n, NULL, &out, NULL, &err), DFPO_EUSAGE);
  cr_expect(strstr(err.msg, "met_ppl_gen_ids") != NULL, "%s", err.msg);
  for (int i = 0; i < n; i++)
    free(src[i].ids), free(tgt[i].ids);
  free(src), free(tgt), free(per);
  return md;
}

/* met_ppl_gen's text path on an encoder-decoder: each side encoded and
 * ended with </s>, as `dfpo perplexity --input` scores texts.tsv. */
static double check_ppl_texts(model_t *m, const char *folder, const char *file, const cJSON *want) {
  char *text = NULL, *src[8], *tgt[8], *save = NULL;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(dfpo_read_file(file, &text, NULL, &err), DFPO_OK, "%s", err.msg);
  int n = 0;
  for (char *line = strtok_r(text, "\n", &save); line && n < 8;
       line = strtok_r(NULL, "\n", &save)) {
    char *tab = strchr(line, '\t');
    cr_assert_not_null(tab, "%s: no tab in %s", file, line);
    *tab = '\0';
    src[n] = line, tgt[n++] = tab + 1;
  }
  cr_assert_eq(n, cJSON_GetArraySize(want));
  tok_tokenizer *tok;
  cr_assert_eq(tok_load(&tok, folder, &err), DFPO_OK, "%s", err.msg);
  double per[8], md = 0;
  met_ppl out;
  cr_assert_eq(met_ppl_gen(m, tok, (const char *const *)src, (const char *const *)tgt, (size_t)n,
                           NULL, &out, per, &err),
               DFPO_OK, "%s", err.msg);
  /* each target's length: its pieces and </s> */
  for (int i = 0; i < n; i++) {
    tok_ids v = {0};
    cr_assert_eq(tok_encode(tok, tgt[i], strlen(tgt[i]), 0, &v, &err), DFPO_OK, "%s", err.msg);
    double got = log(per[i]) * (double)(v.n + 1), ref = cJSON_GetArrayItem(want, i)->valuedouble;
    cr_expect_leq(rel_diff(got, ref), TOL, "met_ppl_gen text %d: %.9g, PyTorch %.9g", i, got, ref);
    md = fmax(md, rel_diff(got, ref));
    tok_ids_free(&v);
  }
  tok_free(tok);
  free(text);
  return md;
}

/* transformers 5.17 saves scale_decoder_outputs apart from
 * tie_word_embeddings: MODELscale/ holds v10's weights tied but unscaled, or
 * v11's untied but scaled (t5_reference.py). Scored against PyTorch as read,
 * after a native checkpoint's round trip and after an export
 * (model_export_safetensors with its config.json, which must say the scale). */
static void check_scale_apart(const char *home, const char *dir, const char *model, const cJSON *f,
                              int v) {
  char sc[700], file[760], ck[760], ex[760], exf[800], cfg[800];
  snprintf(sc, sizeof sc, "%sscale", model);
  snprintf(file, sizeof file, "%s/pairs.tsv", sc);
  const cJSON *nll = cJSON_GetObjectItem(f, "scale_nll");
  double md = check_perplexity(home, sc, "--tokens", file, nll);
  model_t *m;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(model_load(&m, sc, &err), DFPO_OK, "%s", err.msg);
  const t5_config *c = t5_get_config(m);
  cr_expect_eq(c->tied, v == 0);
  cr_expect_eq(t5_scales_head(c), v == 1);
  snprintf(ck, sizeof ck, "%s/scale%d.ckpt", dir, v);
  cr_assert_eq(model_save(m, ck, 0, &err), DFPO_OK, "%s", err.msg);
  md = fmax(md, check_perplexity(home, ck, "--tokens", file, nll));
  snprintf(ex, sizeof ex, "%s/scale%dexport", dir, v);
  cr_assert_eq(mkdir(ex, 0755), 0, "%s", ex);
  snprintf(exf, sizeof exf, "%s/model.safetensors", ex);
  cr_assert_eq(model_export_safetensors(m, exf, 1, &err), DFPO_OK, "%s", err.msg);
  model_free(m);
  snprintf(cfg, sizeof cfg, "%s/config.json", ex);
  cJSON *j = ts_read_json(cfg);
  const cJSON *sd = cJSON_GetObjectItem(j, "scale_decoder_outputs");
  cr_expect(cJSON_IsBool(sd) && cJSON_IsTrue(sd) == (v == 1), "%s: scale_decoder_outputs", cfg);
  cJSON_Delete(j);
  md = fmax(md, check_perplexity(home, ex, "--tokens", file, nll));
  cr_log_info("%s: scale_decoder_outputs %s, as read, as a native checkpoint and exported: max "
              "relative difference %.3g",
              sc, v ? "true untied" : "false tied", md);
}

Test(t5, perplexity_matches_pytorch, .timeout = 120) {
  char dir[512], home[600], model[600], file[700];
  cJSON *ref = reference(dir, sizeof dir);
  snprintf(home, sizeof home, "%s/home", dir);
  const cJSON *folders = cJSON_GetObjectItem(ref, "folders");
  static const char *const names[2] = {"v10", "v11"};
  for (int v = 0; v < 2; v++) {
    const cJSON *f = cJSON_GetObjectItem(folders, names[v]);
    snprintf(model, sizeof model, "%s/%s", dir, names[v]);
    snprintf(file, sizeof file, "%s/pairs.tsv", model);
    const cJSON *nll = cJSON_GetObjectItem(f, "nll");
    double md = check_perplexity(home, model, "--tokens", file, nll);
    cr_log_info("%s: %d pairs, max relative |nll_sum - PyTorch| %.3g", names[v],
                cJSON_GetArraySize(nll), md);
    if (v == 0) { /* the same weights as a tied pytorch_model.bin */
      char bin[700], bfile[760];
      snprintf(bin, sizeof bin, "%sbin", model);
      snprintf(bfile, sizeof bfile, "%s/pairs.tsv", bin);
      md = check_perplexity(home, bin, "--tokens", bfile, nll);
      cr_log_info("%s as pytorch_model.bin: max relative difference %.3g", names[v], md);
    }
    if (v == 1) { /* text pairs through the folder's spiece.model */
      snprintf(file, sizeof file, "%s/texts.tsv", model);
      const cJSON *tn = cJSON_GetObjectItem(f, "text_nll");
      md = check_perplexity(home, model, "--input", file, tn);
      cr_log_info("%s: %d text pairs, max relative difference %.3g", names[v],
                  cJSON_GetArraySize(tn), md);
    }
    model_t *m;
    dfpo_err err;
    dfpo_err_clear(&err);
    cr_assert_eq(model_load(&m, model, &err), DFPO_OK, "%s", err.msg);
    cr_assert_str_eq(model_get_config(m)->arch, "t5");
    cr_assert_eq(t5_get_config(m)->tied, v == 0);
    cr_assert_eq(t5_get_config(m)->gated, v == 1);
    for (int L = 4; L <= 7; L += 3) {
      int rows;
      md = check_batch(m, cJSON_GetObjectItem(f, "pairs"), nll, L, &rows);
      cr_log_info("%s: %d left-padded rows of %d target tokens, max relative difference %.3g",
                  names[v], rows, L, md);
    }
    md = check_ppl_pairs(m, cJSON_GetObjectItem(f, "pairs"), nll);
    cr_log_info("%s: met_ppl_gen_ids in batches of 4, max relative difference %.3g", names[v], md);
    if (v == 1) {
      snprintf(file, sizeof file, "%s/texts.tsv", model);
      md = check_ppl_texts(m, model, file, cJSON_GetObjectItem(f, "text_nll"));
      cr_log_info("%s: met_ppl_gen on the text pairs, max relative difference %.3g", names[v], md);
    }
    check_scale_apart(home, dir, model, f, v);
    /* plain text has no source: model_score_tokens says so */
    double s;
    size_t k;
    int ids[3] = {5, 6, 7};
    cr_expect_eq(model_score_tokens(m, ids, 3, &s, &k, &err), DFPO_EUSAGE);
    model_free(m);
  }
  ts_run r;
  snprintf(model, sizeof model, "%s/v10", dir);
  snprintf(file, sizeof file, "%s/nopair.txt", dir);
  ts_write_text(file, "1 2 3\n");
  char *args[] = {"perplexity", "--model", model, "--tokens", file, NULL};
  ts_dfpo_home(&r, home, args, NULL);
  cr_expect_neq(r.status, 0);
  cr_expect(strstr(r.err, "tab") != NULL, "%s", r.err);
  ts_run_free(&r);
  cJSON_Delete(ref);
  ts_rmtree(dir);
}

Test(t5, sentencepiece_matches_python, .timeout = 120) {
  char dir[512], home[600], spm[600];
  cJSON *ref = reference(dir, sizeof dir);
  snprintf(home, sizeof home, "%s/home", dir);
  snprintf(spm, sizeof spm, "%s/spm", dir);
  const cJSON *s = cJSON_GetObjectItem(ref, "spm");
  const cJSON *texts = cJSON_GetObjectItem(s, "texts"), *ids = cJSON_GetObjectItem(s, "ids");
  const cJSON *dec = cJSON_GetObjectItem(s, "decoded");
  int n = cJSON_GetArraySize(texts), pieces = cJSON_GetObjectItem(s, "pieces")->valueint;
  for (int i = 0; i < n; i++) {
    const char *text = cJSON_GetArrayItem(texts, i)->valuestring;
    ts_run r;
    char *args[] = {"tokenizer", "encode", "--tokenizer", spm, NULL};
    ts_dfpo_home(&r, home, args, text);
    cr_assert_eq(r.status, 0, "%s", r.err);
    /* the reference's ids as the command prints them */
    char want[8192] = "";
    size_t w = 0;
    const cJSON *row = cJSON_GetArrayItem(ids, i), *it;
    cJSON_ArrayForEach(it, row) w +=
        (size_t)snprintf(want + w, sizeof want - w, "%s%d", w ? " " : "", it->valueint);
    snprintf(want + w, sizeof want - w, "\n");
    cr_expect_str_eq(r.out, want, "text %d '%s'", i, text);
    ts_run_free(&r);
    /* decoding the reference's ids gives the reference's text */
    char *dargs[] = {"tokenizer", "decode", "--tokenizer", spm, NULL};
    ts_dfpo_home(&r, home, dargs, want);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect_str_eq(r.out, cJSON_GetArrayItem(dec, i)->valuestring, "decoding text %d", i);
    ts_run_free(&r);
  }
  cr_log_info("sentencepiece: %d texts, ids and decoding equal to python3-sentencepiece's (%d "
              "pieces)",
              n, pieces);
  /* T5's conventions: the extra ids above the pieces, </s> 1, no eos added */
  ts_run r;
  char *args[] = {"tokenizer", "encode", "--allow-special", "--tokenizer", spm, NULL};
  ts_dfpo_home(&r, home, args, "<extra_id_0></s><extra_id_99><pad>");
  cr_assert_eq(r.status, 0, "%s", r.err);
  char want[64];
  snprintf(want, sizeof want, "%d 1 %d 0\n", pieces + 99, pieces);
  cr_expect_str_eq(r.out, want);
  ts_run_free(&r);
  char *dargs[] = {"tokenizer", "decode", "--tokenizer", spm, NULL};
  snprintf(want, sizeof want, "%d", pieces + 98);
  ts_dfpo_home(&r, home, dargs, want);
  cr_assert_eq(r.status, 0, "%s", r.err);
  cr_expect_str_eq(r.out, "<extra_id_1>");
  ts_run_free(&r);
  cJSON_Delete(ref);
  ts_rmtree(dir);
}

/* ------------------------------------------------ training and decoding */

#define GRAD_TOL 1e-4

/* Gradients against the reference's autograd (an objective of the
 * log-probabilities and entropies; a value head's), one AdamW step against
 * torch.optim.AdamW's, and `dfpo generate --temperature 0` against the
 * reference's greedy loop, for v1.0 and v1.1. */
Test(t5, training_and_decoding_match_pytorch, .timeout = 240) {
  char dir[512], home[600], path[700], ppath[760];
  cJSON *ref = reference(dir, sizeof dir);
  snprintf(home, sizeof home, "%s/home", dir);
  const cJSON *folders = cJSON_GetObjectItem(ref, "folders");
  static const char *const names[2] = {"v10", "v11"};
  for (int v = 0; v < 2; v++) {
    const cJSON *f = cJSON_GetObjectItem(folders, names[v]);
    const cJSON *tr = cJSON_GetObjectItem(f, "train");
    dfpo_err err;
    dfpo_err_clear(&err);
    model_t *m, *g, *gv, *vm;
    snprintf(path, sizeof path, "%s/%s", dir, names[v]);
    cr_assert_eq(model_load(&m, path, &err), DFPO_OK, "%s", err.msg);
    snprintf(ppath, sizeof ppath, "%sgrad", path);
    cr_assert_eq(model_load(&g, ppath, &err), DFPO_OK, "%s", err.msg);
    snprintf(ppath, sizeof ppath, "%svgrad", path);
    cr_assert_eq(model_load(&gv, ppath, &err), DFPO_OK, "%s", err.msg);
    int n, B, nt;
    int *tokens = json_ints(cJSON_GetObjectItem(tr, "tokens"), &n);
    int *kstart = json_ints(cJSON_GetObjectItem(tr, "kstart"), &B);
    int *targets = json_ints(cJSON_GetObjectItem(tr, "targets"), &nt);
    float *wl = json_floats(cJSON_GetObjectItem(tr, "wl"), &nt);
    float *we = json_floats(cJSON_GetObjectItem(tr, "we"), &nt);
    float *dv = json_floats(cJSON_GetObjectItem(tr, "dv"), &nt);
    int T = n / B, np = cJSON_GetObjectItem(tr, "n_prompt")->valueint;
    model_batch batch = {tokens, kstart, B, T, np, 0};
    float *lp = malloc((size_t)n * sizeof *lp), *ent = malloc((size_t)n * sizeof *ent);

    /* the LM objective sum wl logp + we entropy */
    model_zero_grad(m);
    cr_assert_eq(model_forward(m, &batch, &err), DFPO_OK, "%s", err.msg);
    cr_assert_eq(model_lm_logprobs(m, targets, lp, ent, &err), DFPO_OK, "%s", err.msg);
    cr_assert_eq(model_lm_backward(m, wl, we, &err), DFPO_OK, "%s", err.msg);
    double e = check_grads(m, g, GRAD_TOL, "lm");
    cr_log_info("%s: gradients of sum wl logp + we entropy over %d tensors, worst %.3g of a "
                "tensor's largest entry",
                names[v], model_num_tensors(m), e);

    /* the same objective's gradient of the logits, worked on the host
     * (dz = wl (1[z = target] - p) - we p (log p + entropy) at each output
     * column), through model_lm_backward_logits */
    model_zero_grad(m);
    cr_assert_eq(model_forward(m, &batch, &err), DFPO_OK, "%s", err.msg);
    cr_assert_eq(model_lm_logprobs(m, targets, lp, ent, &err), DFPO_OK, "%s", err.msg);
    int V = model_get_config(m)->vocab_size;
    const float *z = model_lm_logits(m); /* CPU memory */
    float *dz = calloc((size_t)n * V, sizeof *dz);
    for (int i = 0; i < n; i++) {
      if (wl[i] == 0 && we[i] == 0)
        continue; /* columns without an output */
      double mx = -INFINITY, sum = 0;
      for (int a = 0; a < V; a++)
        mx = fmax(mx, z[(size_t)i * V + a]);
      for (int a = 0; a < V; a++)
        sum += exp(z[(size_t)i * V + a] - mx);
      for (int a = 0; a < V; a++) {
        double lq = z[(size_t)i * V + a] - mx - log(sum), p = exp(lq);
        dz[(size_t)i * V + a] = (float)((targets[i] >= 0 ? wl[i] * ((a == targets[i]) - p) : 0) -
                                        we[i] * p * (lq + ent[i]));
      }
    }
    cr_assert_eq(model_lm_backward_logits(m, dz, &err), DFPO_OK, "%s", err.msg);
    free(dz);
    e = check_grads(m, g, GRAD_TOL, "lm_backward_logits");
    cr_log_info("%s: the same through model_lm_backward_logits, worst %.3g", names[v], e);

    /* a value model: the policy's trunk and a value head */
    cr_assert_eq(model_new_like(&vm, m, MODEL_HEAD_VALUE, 0, &err), DFPO_OK, "%s", err.msg);
    int copied = 0;
    cr_assert_eq(model_copy_shared_params(vm, m, &copied, &err), DFPO_OK, "%s", err.msg);
    cr_expect_eq(copied, model_num_tensors(m));
    cr_assert_eq(model_num_tensors(vm), model_num_tensors(m) + 2);
    model_tensor vw, vb;
    cr_assert_eq(model_tensor_at(vm, model_num_tensors(m), &vw, &err), DFPO_OK);
    cr_assert_eq(model_tensor_at(vm, model_num_tensors(m) + 1, &vb, &err), DFPO_OK);
    cr_assert_str_eq(vw.name, "v_head.summary.weight");
    int nw;
    float *w = json_floats(cJSON_GetObjectItem(tr, "v_w"), &nw);
    cr_assert_eq(nw, vw.cols);
    memcpy(vw.param, w, (size_t)nw * sizeof(float)); /* CPU memory */
    vb.param[0] = (float)cJSON_GetObjectItem(tr, "v_b")->valuedouble;
    float *vals = malloc((size_t)n * sizeof *vals);
    model_zero_grad(vm);
    cr_assert_eq(model_forward(vm, &batch, &err), DFPO_OK, "%s", err.msg);
    cr_assert_eq(model_value_forward(vm, vals, &err), DFPO_OK, "%s", err.msg);
    cr_assert_eq(model_value_backward(vm, dv, &err), DFPO_OK, "%s", err.msg);
    e = check_grads(vm, gv, GRAD_TOL, "value");
    cr_assert_eq(model_tensor_at(vm, model_num_tensors(m), &vw, &err), DFPO_OK);
    cr_assert_eq(model_tensor_at(vm, model_num_tensors(m) + 1, &vb, &err), DFPO_OK);
    float *wg = json_floats(cJSON_GetObjectItem(tr, "v_w_grad"), &nw);
    double ev = tensor_err(vw.grad, wg, (size_t)nw);
    float bg = (float)cJSON_GetObjectItem(tr, "v_b_grad")->valuedouble;
    ev = fmax(ev, fabs(vb.grad[0] - bg) / fmax(fabs(bg), 1e-6));
    cr_expect_leq(ev, GRAD_TOL, "v_head gradient off by %.3g", ev);
    cr_log_info("%s: value head gradients, trunk worst %.3g, head %.3g", names[v], e, ev);

    /* one AdamW step on the mean cross-entropy */
    opt_adamw o = opt_adamw_default();
    o.weight_decay = 0.01f;
    float l0, l1;
    model_zero_grad(m);
    cr_assert_eq(model_lm_loss(m, &batch, targets, 1, &l0, &err), DFPO_OK, "%s", err.msg);
    cr_assert_eq(opt_adamw_step(m, &o, 1e-2f, NULL, &err), DFPO_OK, "%s", err.msg);
    cr_assert_eq(model_lm_loss(m, &batch, targets, 0, &l1, &err), DFPO_OK, "%s", err.msg);
    double r0 = cJSON_GetObjectItem(tr, "loss0")->valuedouble;
    double r1 = cJSON_GetObjectItem(tr, "loss1")->valuedouble;
    cr_expect_leq(rel_diff(l0, r0), 1e-5, "loss before the step %.8g, PyTorch %.8g", l0, r0);
    cr_expect_leq(rel_diff(l1 - l0, r1 - r0), 1e-4, "the step's change %.8g, PyTorch %.8g", l1 - l0,
                  r1 - r0);
    cr_log_info("%s: AdamW step: loss %.6f -> %.6f, PyTorch %.6f -> %.6f (change off by %.3g)",
                names[v], l0, l1, r0, r1, rel_diff(l1 - l0, r1 - r0));
    free(tokens), free(kstart), free(targets), free(wl), free(we), free(dv), free(lp), free(ent);
    free(w), free(wg), free(vals);
    model_free(vm), model_free(g), model_free(gv), model_free(m);

    /* greedy decoding of prompts of different lengths in one batch */
    const cJSON *gr = cJSON_GetObjectItem(f, "greedy");
    const cJSON *gt = cJSON_GetObjectItem(gr, "tokens"), *gl = cJSON_GetObjectItem(gr, "logprobs");
    snprintf(path, sizeof path, "%s/%sgen", dir, names[v]); /* no tokenizer */
    snprintf(ppath, sizeof ppath, "%s/prompts.txt", path);
    char mn[16];
    snprintf(mn, sizeof mn, "%d", cJSON_GetObjectItem(gr, "max_new")->valueint);
    int eos = cJSON_GetObjectItem(gr, "eos")->valueint;
    for (int stop = 1; stop >= 0; stop--) {
      /* stop 1: the folder's eos_token_id E (the first row's third token),
       * which ends the rows that draw it at its first occurrence; stop 0:
       * --eos -1, none */
      char *args[] = {"generate", "--model",
                      path,       "--tokens",
                      ppath,      "--temperature",
                      "0",        "--max-new",
                      mn,         stop ? NULL : "--eos",
                      "-1",       NULL};
      ts_run r;
      ts_dfpo_home(&r, home, args, NULL);
      cr_assert_eq(r.status, 0, "dfpo generate %s: %s", path, r.err);
      int k = 0;
      double md = 0;
      char *save = NULL;
      for (char *line = strtok_r(r.out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        cJSON *j = cJSON_Parse(line);
        cr_assert_not_null(j, "not JSON: %s", line);
        const cJSON *want = cJSON_GetArrayItem(gt, k), *wlp = cJSON_GetArrayItem(gl, k);
        const cJSON *got = cJSON_GetObjectItem(j, "tokens"),
                    *glp = cJSON_GetObjectItem(j, "logprobs");
        int wn = cJSON_GetArraySize(want);
        if (stop)
          for (int t = 0; t < wn; t++)
            if (cJSON_GetArrayItem(want, t)->valueint == eos) {
              wn = t + 1;
              break;
            }
        cr_expect_eq(cJSON_GetArraySize(got), wn, "%s prompt %d%s: %d tokens, PyTorch %d: %s",
                     names[v], k, stop ? " (config.json's eos)" : "", cJSON_GetArraySize(got), wn,
                     line);
        for (int t = 0; t < wn && t < cJSON_GetArraySize(got); t++) {
          cr_expect_eq(cJSON_GetArrayItem(got, t)->valueint, cJSON_GetArrayItem(want, t)->valueint,
                       "%s prompt %d token %d: %s", names[v], k, t, line);
          double d = fabs(cJSON_GetArrayItem(glp, t)->valuedouble -
                          cJSON_GetArrayItem(wlp, t)->valuedouble);
          cr_expect_leq(d, 1e-4, "%s prompt %d token %d: logprob off by %.3g", names[v], k, t, d);
          md = fmax(md, d);
        }
        cJSON_Delete(j);
        k++;
      }
      cr_assert_eq(k, cJSON_GetArraySize(gt));
      cr_log_info("%s: greedy tokens of %d prompts%s equal PyTorch's (closest argmax gap %.3g), "
                  "log-probabilities within %.3g",
                  names[v], k, stop ? " with config.json's eos" : " with --eos -1",
                  cJSON_GetObjectItem(gr, "min_gap")->valuedouble, md);
      ts_run_free(&r);
    }
  }
  cJSON_Delete(ref);
  ts_rmtree(dir);
}

/* ------------------------------------------------------------ RL */

/* rl_copy_task over a T5 policy (its reference and value model T5s too):
 * gated and untied for NLPO, else tied and not gated. */
static void t5_rl(int algo, int iters, double *r0, double *r1, double *blind) {
  t5_config c = tt_tiny(8, algo == RL_NLPO, algo != RL_NLPO);
  dfpo_err err;
  dfpo_err_clear(&err);
  model_t *policy;
  cr_assert_eq(t5_new(&policy, &c, &err), DFPO_OK, "%s", err.msg);
  model_init_random(policy, 11);
  rl_copy_task(policy, algo, iters, r0, r1, blind);
}

/* PPO, NLPO (over a gated, untied T5) and DfPO train a T5 policy through
 * the model interface with nothing T5-specific in the RL code. Measured
 * (2026-12-03, seed 5, 30 iterations, lr 1e-2, beta 0.01): PPO 0.050 ->
 * 0.365, NLPO 0.163 -> 0.298, DfPO 0.050 -> 0.133 (it stays close to the
 * reference by design); the 16 sources' most frequent first token is a
 * quarter of them, so PPO's 0.365 reads the source. The bounds leave
 * about a third of each gain as margin. */
Test(t5, rl_iterate_trains_a_t5_policy, .timeout = 300) {
  static const int algos[3] = {RL_PPO, RL_NLPO, RL_DFPO};
  static const char *const names[3] = {"PPO", "NLPO", "DfPO"};
  static const double gain[3] = {0.2, 0.09, 0.05};
  for (int a = 0; a < 3; a++) {
    double r0, r1, blind;
    t5_rl(algos[a], 30, &r0, &r1, &blind);
    cr_log_info("%s over a T5: copying reward %.3f -> %.3f (30 iterations; a policy blind to the "
                "source gets at most %.3f)",
                names[a], r0, r1, blind);
    cr_expect_gt(r1, r0 + gain[a], "%s: %.3f -> %.3f", names[a], r0, r1);
    if (algos[a] == RL_PPO)
      cr_expect_gt(r1, blind, "PPO's %.3f does not show it reads the source (%.3f)", r1, blind);
  }
}

/* A backend without T5's ops (a CPU table with one backward op taken out)
 * is refused with a message naming it and the way out, forward passes only
 * when a backward op is missing; the CUDA table has all of them. */
Test(t5, a_backend_without_t5_ops_is_named) {
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_expect_eq(t5_missing_ops(&ops_cpu, 1, &err), DFPO_OK);
  ops_backend o = ops_cpu;
  o.name = "partial";
  o.attention_rel_bwd = NULL;
  cr_expect_eq(t5_missing_ops(&o, 0, &err), DFPO_OK);
  cr_expect_eq(t5_missing_ops(&o, 1, &err), DFPO_EUSAGE);
  cr_expect(strstr(err.msg, "partial") && strstr(err.msg, "backward") &&
                strstr(err.msg, "--device cpu"),
            "%s", err.msg);
#ifdef DFPO_HAVE_CUDA
  cr_expect_eq(t5_missing_ops(&ops_cuda, 0, &err), DFPO_OK);
  cr_expect_eq(t5_missing_ops(&ops_cuda, 1, &err), DFPO_OK);
#endif
}
