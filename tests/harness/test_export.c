/* `dfpo export` (a policy as a Hugging Face GPT-2 folder), such folders as
 * --model, and `dfpo generate`'s end-of-text from the tokenizer.
 *
 * The reference is tests/harness/hf_gpt2_reference.py: the folder read as
 * transformers' GPT2LMHeadModel and GPT2Tokenizer read it (config.json's
 * sizes, GPT2LMHeadModel's tensor names loaded strictly, merges.txt's first
 * line skipped), a PyTorch GPT-2 written from transformers' modeling code in
 * double precision. Its per-token log-probabilities are held to the
 * library's (model_forward + model_lm_logprobs on the checkpoint) within
 * 1e-5, and its token ids to dfpo's tokenizer exactly. */
#include "tests/support/support.h"
#include "tests/trainer/gpt2_testutil.h"
#include "trainer/gpt2.h"
#include "trainer/model.h"
#include "trainer/tok.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define REF DFPO_SOURCE_DIR "/tests/harness/hf_gpt2_reference.py"

/* The tokenizer's corpus; also the texts the encodings are compared on. */
static const char corpus[] = "the cat sat on the mat and the dog sat on the log\n"
                             "a cat, a dog; the cats and the dogs sat down\n"
                             "  two  spaces\tand a tab, 123 numbers and caf\xc3\xa9\n";

typedef struct fixture {
  char dir[256], tok[320], ckpt[320], out[320];
  model_t *m;
  tok_tokenizer *t;
} fixture;

/* A BPE trained on the corpus (262 ids, <|endoftext|> = 261) and a GPT-2
 * whose vocabulary is larger (264: the config must say the model's size and
 * the tokenizer's end-of-text), 2 layers, 32 positions, weights perturbed
 * away from the near-uniform initial point; saved as a native checkpoint. */
static void setup(fixture *f, int head) {
  ts_tmpdir(f->dir, sizeof f->dir);
  char text[300];
  snprintf(text, sizeof text, "%s/corpus.txt", f->dir);
  snprintf(f->tok, sizeof f->tok, "%s/tok", f->dir);
  snprintf(f->ckpt, sizeof f->ckpt, "%s/m.ckpt", f->dir);
  snprintf(f->out, sizeof f->out, "%s/hf", f->dir);
  ts_write_text(text, corpus);
  dfpo_err err;
  dfpo_err_clear(&err);
  const char *files[1] = {text};
  cr_assert_eq(tok_train(files, 1, 262, f->tok, NULL, &err), 0, "%s", err.msg);
  cr_assert_eq(tok_load(&f->t, f->tok, &err), 0, "%s", err.msg);
  cr_assert_eq(tok_eot_id(f->t), 261);
  gpt2_config c = tu_config(264, 2, 2, 32, 32);
  c.head = head;
  f->m = tu_model(&c, 11);
  tu_perturb(f->m, 12, 2.0f);
  cr_assert_eq(model_save(f->m, f->ckpt, 0, &err), 0, "%s", err.msg);
}

static void teardown(fixture *f) {
  model_free(f->m);
  tok_free(f->t);
  ts_rmtree(f->dir);
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

static cJSON *run_json(ts_run *r) {
  cr_assert_eq(r->status, 0, "%s", r->err);
  cJSON *o = cJSON_Parse(r->out);
  cr_assert_not_null(o, "%s", r->out);
  return o;
}

static int num(const cJSON *o, const char *key) {
  const cJSON *x = cJSON_GetObjectItem(o, key);
  cr_assert(cJSON_IsNumber(x), "no number %s", key);
  return x->valueint;
}

/* The sequences scored: <|endoftext|> first, ids past the tokenizer's (262,
 * 263) but inside the model's vocabulary, one filling the context. */
#define NSEQ 3
static int seq_len[NSEQ] = {6, 9, 32};
static void sequences(int seqs[NSEQ][32], const char *path) {
  dfpo_rng r;
  dfpo_rng_init(&r, 5, 1);
  for (int s = 0; s < NSEQ; s++)
    for (int t = 0; t < seq_len[s]; t++)
      seqs[s][t] = t == 0 ? 261 : (int)dfpo_rng_below(&r, 264);
  seqs[1][3] = 263;
  seqs[1][4] = 262;
  FILE *fp = fopen(path, "w");
  cr_assert_not_null(fp);
  for (int s = 0; s < NSEQ; s++) {
    for (int t = 0; t < seq_len[s]; t++)
      fprintf(fp, "%s%d", t ? " " : "", seqs[s][t]);
    fputc('\n', fp);
  }
  fclose(fp);
}

/* The folder (with the peft adapters of the folder adapters applied, when
 * not NULL) scored by the reference against the library on f->m, per token
 * within 1e-5, or with rel > 0 within rel |reference| (at least rel); the
 * reference's JSON (the caller's). */
static cJSON *check_reference(fixture *f, const char *folder, const char *adapters, double rel) {
  char ids[320], texts[320];
  snprintf(ids, sizeof ids, "%s/seqs.txt", f->dir);
  snprintf(texts, sizeof texts, "%s/corpus.txt", f->dir);
  int seqs[NSEQ][32];
  sequences(seqs, ids);
  char *argv[] = {"/usr/bin/python3", REF, "score", (char *)folder, ids, texts,
                  (char *)adapters,   NULL};
  ts_run r;
  ts_run_cmd(&r, argv, NULL, NULL);
  cJSON *o = run_json(&r);
  ts_run_free(&r);
  /* config.json: the model's sizes, the tokenizer's end-of-text */
  const cJSON *c = cJSON_GetObjectItem(o, "config");
  cr_expect_eq(num(c, "vocab_size"), 264);
  cr_expect_eq(num(c, "n_positions"), 32);
  cr_expect_eq(num(c, "n_embd"), 32);
  cr_expect_eq(num(c, "n_layer"), 2);
  cr_expect_eq(num(c, "n_head"), 2);
  cr_expect_eq(num(c, "bos_token_id"), tok_eot_id(f->t));
  cr_expect_eq(num(c, "eos_token_id"), tok_eot_id(f->t));
  cr_expect_eq(cJSON_GetObjectItem(c, "layer_norm_epsilon")->valuedouble, 1e-5);
  /* the tokenizer files name <|endoftext|> with the same id */
  const cJSON *sp = cJSON_GetObjectItem(o, "special");
  const char *roles[] = {"bos_token", "eos_token", "unk_token"};
  for (int i = 0; i < 3; i++) {
    const cJSON *p = cJSON_GetObjectItem(sp, roles[i]);
    cr_assert(cJSON_IsArray(p), "%s", roles[i]);
    cr_expect_str_eq(cJSON_GetArrayItem(p, 0)->valuestring, "<|endoftext|>");
    cr_expect_eq(cJSON_GetArrayItem(p, 1)->valueint, 261, "%s", roles[i]);
  }
  const cJSON *dec = cJSON_GetObjectItem(o, "added_tokens_decoder");
  cr_expect_str_eq(cJSON_GetObjectItem(dec, "261")->valuestring, "<|endoftext|>");
  cr_expect_eq(num(o, "model_max_length"), 32);
  cr_expect_eq(num(o, "vocab_entries"), 262);
  cr_expect_eq(num(o, "max_vocab_id"), 261);
  /* the texts encode to dfpo's ids */
  const cJSON *enc = cJSON_GetObjectItem(o, "ids");
  const char *line = corpus;
  dfpo_err err;
  dfpo_err_clear(&err);
  for (int i = 0; i < 3; i++) {
    const char *nl = strchr(line, '\n');
    tok_ids v = {0};
    cr_assert_eq(tok_encode(f->t, line, (size_t)(nl - line), 0, &v, &err), 0);
    const cJSON *got = cJSON_GetArrayItem(enc, i);
    cr_assert_eq((size_t)cJSON_GetArraySize(got), v.n, "text %d", i);
    for (size_t k = 0; k < v.n; k++)
      cr_expect_eq(cJSON_GetArrayItem(got, (int)k)->valueint, v.ids[k], "text %d id %zu", i, k);
    tok_ids_free(&v);
    line = nl + 1;
  }
  /* per-token log-probabilities */
  const cJSON *lps = cJSON_GetObjectItem(o, "logprobs");
  cr_assert_eq(cJSON_GetArraySize(lps), NSEQ);
  double worst = 0, worst_rel = 0;
  for (int s = 0; s < NSEQ; s++) {
    int T = seq_len[s], targets[32];
    float logp[32];
    for (int t = 0; t < T; t++)
      targets[t] = t + 1 < T ? seqs[s][t + 1] : -1;
    cr_assert_eq(model_forward_rows(f->m, seqs[s], NULL, 1, T, &err), 0, "%s", err.msg);
    cr_assert_eq(model_lm_logprobs(f->m, targets, logp, NULL, &err), 0, "%s", err.msg);
    const cJSON *row = cJSON_GetArrayItem(lps, s);
    cr_assert_eq(cJSON_GetArraySize(row), T - 1);
    double sum = 0;
    for (int t = 0; t + 1 < T; t++) {
      double ref = cJSON_GetArrayItem(row, t)->valuedouble, d = fabs(ref - (double)logp[t]);
      double tol = rel > 0 ? rel * fmax(1.0, fabs(ref)) : 1e-5;
      worst = d > worst ? d : worst;
      worst_rel = d / fmax(1.0, fabs(ref)) > worst_rel ? d / fmax(1.0, fabs(ref)) : worst_rel;
      cr_expect_lt(d, tol, "sequence %d token %d: dfpo %.8f, reference %.8f", s, t + 1,
                   (double)logp[t], ref);
      sum -= ref;
    }
    /* and the sum is what model_score_tokens (dfpo perplexity) gives */
    double nll;
    size_t scored;
    cr_assert_eq(model_score_tokens(f->m, seqs[s], (size_t)T, &nll, &scored, &err), 0);
    cr_expect_eq(scored, (size_t)T - 1);
    cr_expect_lt(fabs(nll - sum), 1e-4, "sequence %d: %.8f vs %.8f", s, nll, sum);
  }
  cr_log_info("export: largest per-token difference from the reference %.3g (relative %.3g)", worst,
              worst_rel);
  return o;
}

/* `dfpo perplexity` of the fixture's corpus and `dfpo generate` from a
 * prompt with f's checkpoint (and its tokenizer), and with folder (its own
 * tokenizer; peft's adapters of `adapters` read onto it when not NULL): the
 * same nll_sum bit for bit and the same sampled lines. */
static void same_as_checkpoint(fixture *f, const char *folder, const char *adapters) {
  char docs[320];
  snprintf(docs, sizeof docs, "%s/corpus.txt", f->dir);
  ts_run a, c;
  ts_dfpo(&a, "perplexity", "--model", f->ckpt, "--tokenizer", f->tok, "--input", docs, "--json",
          NULL);
  ts_dfpo(&c, "perplexity", "--model", folder, "--input", docs, "--json",
          adapters ? "--adapters" : NULL, adapters, NULL);
  cJSON *oa = run_json(&a), *oc = run_json(&c);
  cr_expect_eq(num(oa, "tokens"), num(oc, "tokens"));
  cr_expect_gt(num(oa, "tokens"), 20);
  cr_expect_eq(cJSON_GetObjectItem(oa, "nll_sum")->valuedouble,
               cJSON_GetObjectItem(oc, "nll_sum")->valuedouble);
  cJSON_Delete(oa);
  cJSON_Delete(oc);
  ts_run_free(&a);
  ts_run_free(&c);
  ts_dfpo(&a, "generate", "--model", f->ckpt, "--tokenizer", f->tok, "--prompt", "the cat",
          "--max-new", "8", "--seed", "4", NULL);
  ts_dfpo(&c, "generate", "--model", folder, "--prompt", "the cat", "--max-new", "8", "--seed", "4",
          adapters ? "--adapters" : NULL, adapters, NULL);
  cr_assert_eq(a.status, 0, "%s", a.err);
  cr_assert_eq(c.status, 0, "%s", c.err);
  cr_expect_str_eq(a.out, c.out);
  ts_run_free(&a);
  ts_run_free(&c);
}

static void check_against_reference(fixture *f, const char *folder) {
  cJSON_Delete(check_reference(f, folder, NULL, 0));
}

/* `dfpo export` of the fixture's checkpoint and tokenizer into f->out,
 * which must succeed; its stderr (heap, the caller's). */
static char *export_ok(fixture *f) {
  ts_run r;
  ts_dfpo(&r, "export", "--model", f->ckpt, "--tokenizer", f->tok, "--out", f->out, NULL);
  cr_assert_eq(r.status, 0, "%s", r.err);
  char *err = r.err;
  r.err = NULL;
  ts_run_free(&r);
  return err;
}

Test(export, folder_reads_as_transformers_would, .timeout = 300) {
  if (!have_torch())
    cr_skip_test("/usr/bin/python3 with torch and regex is missing: no reference to compare with");
  fixture f;
  setup(&f, MODEL_HEAD_NONE);
  free(export_ok(&f));
  check_against_reference(&f, f.out);
  ts_run r;
  /* sharded, as save_pretrained writes big models: the same numbers */
  char *argv[] = {"/usr/bin/python3", REF, "shard", f.out, "3", NULL};
  ts_run_cmd(&r, argv, NULL, NULL);
  cr_assert_eq(r.status, 0, "%s", r.err);
  ts_run_free(&r);
  check_against_reference(&f, f.out);
  teardown(&f);
}

/* A value model's head is left out with a warning; the folder holds its
 * language model, which the reference scores as the library does. */
Test(export, a_value_head_is_left_out, .timeout = 300) {
  if (!have_torch())
    cr_skip_test("/usr/bin/python3 with torch and regex is missing: no reference to compare with");
  fixture f;
  setup(&f, MODEL_HEAD_VALUE);
  char *err = export_ok(&f);
  cr_expect(strstr(err, "value head is no part of GPT2LMHeadModel: left out"), "%s", err);
  free(err);
  check_against_reference(&f, f.out); /* strict: a v_head tensor would be unexpected */
  teardown(&f);
}

/* The folder as --model: the same weights, and dfpo perplexity and generate
 * give the checkpoint's numbers with the folder's own tokenizer. */
Test(export, folder_round_trip_through_the_commands, .timeout = 300) {
  fixture f;
  setup(&f, MODEL_HEAD_NONE);
  free(export_ok(&f));
  dfpo_err err;
  dfpo_err_clear(&err);
  model_t *b = NULL;
  cr_assert_eq(model_load(&b, f.out, &err), 0, "%s", err.msg);
  tu_same_params(f.m, b);
  model_free(b);
  /* the exported tokenizer files read back to the same tokenizer */
  tok_tokenizer *t2;
  cr_assert_eq(tok_load(&t2, f.out, &err), 0, "%s", err.msg);
  cr_expect_eq(tok_vocab_size(t2), tok_vocab_size(f.t));
  cr_expect_eq(tok_merge_count(t2), tok_merge_count(f.t));
  cr_expect_eq(tok_eot_id(t2), 261);
  for (int32_t id = 0; id < (int32_t)tok_vocab_size(f.t); id++) {
    size_t la, lb;
    const char *a = tok_token_bytes(f.t, id, &la), *bb = tok_token_bytes(t2, id, &lb);
    cr_assert(a && bb && la == lb && !memcmp(a, bb, la), "token %d", id);
  }
  tok_free(t2);
  same_as_checkpoint(&f, f.out, NULL);
  char docs[320];
  snprintf(docs, sizeof docs, "%s/corpus.txt", f.dir);
  ts_run a;
  /* a folder without weights is named as such */
  char empty[320];
  snprintf(empty, sizeof empty, "%s/empty", f.dir);
  mkdir(empty, 0777);
  ts_dfpo(&a, "perplexity", "--model", empty, "--tokens", docs, NULL);
  cr_expect_eq(a.status, 2);
  cr_expect(strstr(a.err, "without weights") && strstr(a.err, "pytorch_model.bin"), "%s", a.err);
  ts_run_free(&a);
  teardown(&f);
}

/* Whether dir holds an entry whose name starts with prefix. */
static int has_entry(const char *dir, const char *prefix) {
  DIR *d = opendir(dir);
  cr_assert_not_null(d);
  struct dirent *e;
  int found = 0;
  while ((e = readdir(d)))
    found |= strncmp(e->d_name, prefix, strlen(prefix)) == 0;
  closedir(d);
  return found;
}

Test(export, refuses_overwrites_and_leaves_nothing_half_written, .timeout = 300) {
  fixture f;
  setup(&f, MODEL_HEAD_NONE);
  ts_run r;
  char marker[400], file[320];
  snprintf(marker, sizeof marker, "%s/mine.txt", f.out);
  snprintf(file, sizeof file, "%s/afile", f.dir);
  /* an existing folder without --force: untouched */
  mkdir(f.out, 0777);
  ts_write_text(marker, "keep\n");
  ts_dfpo(&r, "export", "--model", f.ckpt, "--tokenizer", f.tok, "--out", f.out, NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "--force"), "%s", r.err);
  ts_run_free(&r);
  cr_expect_eq(access(marker, F_OK), 0);
  /* a file is never replaced */
  ts_write_text(file, "x\n");
  ts_dfpo(&r, "export", "--model", f.ckpt, "--tokenizer", f.tok, "--out", file, "--force", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "not a folder"), "%s", r.err);
  ts_run_free(&r);
  /* a failure part-way (a tokenizer larger than the model's vocabulary)
   * leaves the old folder and no temporary */
  char small[320];
  snprintf(small, sizeof small, "%s/small.ckpt", f.dir);
  gpt2_config c = tu_config(100, 1, 2, 16, 16);
  model_t *s = tu_model(&c, 1);
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(model_save(s, small, 0, &err), 0);
  model_free(s);
  ts_dfpo(&r, "export", "--model", small, "--tokenizer", f.tok, "--out", f.out, "--force", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "262 ids but the model only 100"), "%s", r.err);
  ts_run_free(&r);
  cr_expect_eq(access(marker, F_OK), 0);
  cr_expect(!has_entry(f.dir, "hf.tmp"), "a temporary folder was left behind");
  /* --force replaces the folder as a whole */
  ts_dfpo(&r, "export", "--model", f.ckpt, "--tokenizer", f.tok, "--out", f.out, "--force", NULL);
  cr_expect_eq(r.status, 0, "%s", r.err);
  ts_run_free(&r);
  cr_expect_neq(access(marker, F_OK), 0);
  cr_expect(!has_entry(f.dir, "hf.tmp") && !has_entry(f.dir, "hf.old"));
  char cfgp[400];
  snprintf(cfgp, sizeof cfgp, "%s/config.json", f.out);
  cJSON *o = ts_read_json(cfgp);
  cr_expect_eq(num(o, "eos_token_id"), 261);
  cJSON_Delete(o);
  /* no tokenizer: a usage error; a run folder's config.json names it */
  char run[320], ck[400], rcfg[400], text[700];
  snprintf(run, sizeof run, "%s/run", f.dir);
  snprintf(ck, sizeof ck, "%s/checkpoint", run);
  mkdir(run, 0777);
  mkdir(ck, 0777);
  snprintf(ck, sizeof ck, "%s/checkpoint/best.ckpt", run);
  cr_assert_eq(model_save(f.m, ck, 0, &err), 0);
  char out2[320];
  snprintf(out2, sizeof out2, "%s/hf2", f.dir);
  ts_dfpo(&r, "export", "--model", ck, "--out", out2, NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "--tokenizer"), "%s", r.err);
  ts_run_free(&r);
  snprintf(rcfg, sizeof rcfg, "%s/config.json", run);
  snprintf(text, sizeof text, "{\"tokenizer\": {\"path\": \"%s\"}}\n", f.tok);
  ts_write_text(rcfg, text);
  ts_dfpo(&r, "export", "--model", ck, "--out", out2, NULL);
  cr_expect_eq(r.status, 0, "%s", r.err);
  ts_run_free(&r);
  snprintf(cfgp, sizeof cfgp, "%s/config.json", out2);
  o = ts_read_json(cfgp);
  cr_expect_eq(num(o, "eos_token_id"), 261);
  cJSON_Delete(o);
  /* an exported folder exports again with its own tokenizer */
  char out3[320];
  snprintf(out3, sizeof out3, "%s/hf3", f.dir);
  ts_dfpo(&r, "export", "--model", out2, "--out", out3, NULL);
  cr_expect_eq(r.status, 0, "%s", r.err);
  ts_run_free(&r);
  teardown(&f);
}

/* A model that puts almost all its mass on <|endoftext|> (261) from any
 * context: ln_f's gain 0 and its bias u make every final hidden state u, and
 * the tied head's logit of 261 is wte[261] . u = 20 against about 0 for the
 * other ids. `dfpo generate` stops there by the tokenizer's end-of-text; the
 * old fixed default (50256, outside this vocabulary) never stopped. */
Test(export, generate_stops_at_the_tokenizers_end_of_text, .timeout = 120) {
  fixture f;
  setup(&f, MODEL_HEAD_NONE);
  int n = gpt2_num_tensors(f.m);
  float *wte = NULL, *lnw = NULL, *lnb = NULL;
  int C = 32;
  for (int i = 0; i < n; i++) {
    const char *name;
    float *p;
    gpt2_tensor_info(f.m, i, &name, NULL, NULL, &p, NULL);
    if (!strcmp(name, "wte.weight"))
      wte = p;
    else if (!strcmp(name, "ln_f.weight"))
      lnw = p;
    else if (!strcmp(name, "ln_f.bias"))
      lnb = p;
  }
  cr_assert(wte && lnw && lnb);
  for (int k = 0; k < C; k++) {
    lnw[k] = 0;
    lnb[k] = k == 0 ? 1.0f : 0.0f;
    for (int v = 0; v < 264; v++)
      wte[(size_t)v * C + k] = k == 0 ? (v == 261 ? 20.0f : 0.0f) : wte[(size_t)v * C + k];
  }
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(model_save(f.m, f.ckpt, 0, &err), 0);
  char ids[320];
  snprintf(ids, sizeof ids, "%s/p.ids", f.dir);
  ts_write_text(ids, "5 6 7\n");
  struct {
    const char *eos; /* --eos, or NULL */
    int with_tok;    /* --tokenizer given */
    int want_len;    /* tokens generated */
  } cases[] = {
      {NULL, 1, 1},  /* the tokenizer's 261 ends it at once */
      {"-1", 1, 6},  /* none: all 6 */
      {NULL, 0, 6},  /* token ids without a tokenizer: 50256 is outside the vocabulary */
      {"261", 0, 1}, /* given */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *argv[16] = {"generate",  "--model", f.ckpt,   "--tokens", ids,
                            "--max-new", "6",       "--seed", "1"};
    int k = 9;
    if (cases[i].with_tok) {
      argv[k++] = "--tokenizer";
      argv[k++] = f.tok;
    }
    if (cases[i].eos) {
      argv[k++] = "--eos";
      argv[k++] = cases[i].eos;
    }
    ts_run r;
    ts_dfpo(&r, argv[0], argv[1], argv[2], argv[3], argv[4], argv[5], argv[6], argv[7], argv[8],
            argv[9], argv[10], argv[11], argv[12], NULL);
    cJSON *o = run_json(&r);
    const cJSON *t = cJSON_GetObjectItem(o, "tokens");
    cr_expect_eq(cJSON_GetArraySize(t), cases[i].want_len, "case %zu: %s", i, r.out);
    for (int j = 0; j < cJSON_GetArraySize(t); j++)
      cr_expect_eq(cJSON_GetArrayItem(t, j)->valueint, 261, "case %zu", i);
    if (cases[i].with_tok) /* the text leaves the final end-of-text out */
      cr_expect_str_eq(cJSON_GetObjectItem(o, "text")->valuestring,
                       cases[i].want_len == 1 ? ""
                                              : "<|endoftext|><|endoftext|><|endoftext|>"
                                                "<|endoftext|><|endoftext|><|endoftext|>");
    cJSON_Delete(o);
    ts_run_free(&r);
  }
  /* --eos past the vocabulary is a usage error */
  ts_run r;
  ts_dfpo(&r, "generate", "--model", f.ckpt, "--tokens", ids, "--eos", "50256", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "--eos 50256: the model's vocabulary has 264 ids"), "%s", r.err);
  ts_run_free(&r);
  teardown(&f);
}

/* `dfpo train --model FOLDER` without --tokenizer: the folder's weights and
 * its own tokenizer. A zero-shot cell (the base evaluated, sampling seeded)
 * gives the same samples as the checkpoint with its tokenizer. */
Test(export, train_takes_a_folder_and_its_tokenizer, .timeout = 300) {
  fixture f;
  setup(&f, MODEL_HEAD_NONE);
  /* room for the synthetic task's prompts (64 tokens) and continuations */
  model_free(f.m);
  gpt2_config c = tu_config(262, 1, 2, 32, 96);
  f.m = tu_model(&c, 21);
  tu_perturb(f.m, 22, 2.0f);
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(model_save(f.m, f.ckpt, 0, &err), 0, "%s", err.msg);
  free(export_ok(&f));
  const char *sets[] = {"task.synthetic.n_train=8", "task.synthetic.n_validation=4",
                        "task.synthetic.n_test=6", "generation.max_new_tokens=8"};
  char out[2][320], samples[2][400];
  for (int k = 0; k < 2; k++) {
    snprintf(out[k], sizeof out[k], "%s/run%d", f.dir, k);
    const char *argv[32] = {"train", "--task", "synthetic", "--algo",  "zero-shot",       "--seed",
                            "2",     "--out",  out[k],      "--model", k ? f.out : f.ckpt};
    int n = 11;
    if (!k) {
      argv[n++] = "--tokenizer";
      argv[n++] = f.tok;
    }
    for (int i = 0; i < 4; i++) {
      argv[n++] = "--set";
      argv[n++] = sets[i];
    }
    ts_run r;
    ts_dfpo(&r, argv[0], argv[1], argv[2], argv[3], argv[4], argv[5], argv[6], argv[7], argv[8],
            argv[9], argv[10], argv[11], argv[12], argv[13], argv[14], argv[15], argv[16], argv[17],
            argv[18], argv[19], argv[20], NULL);
    cr_assert_eq(r.status, 0, "run %d: %s", k, r.err);
    ts_run_free(&r);
    snprintf(samples[k], sizeof samples[k], "%s/default/synthetic/zero-shot/seed-2/samples.jsonl",
             out[k]);
  }
  char *a = ts_slurp(samples[0]), *b = ts_slurp(samples[1]);
  cr_expect_gt(strlen(a), 0);
  cr_expect_str_eq(a, b);
  free(a);
  free(b);
  teardown(&f);
}

/* The log-probabilities of seq[1..T) under m, into lp[T - 1]. */
static void logprobs_of(model_t *m, const int *seq, int T, float *lp) {
  int targets[32];
  float all[32];
  dfpo_err err;
  dfpo_err_clear(&err);
  for (int t = 0; t < T; t++)
    targets[t] = t + 1 < T ? seq[t + 1] : -1;
  cr_assert_eq(model_forward_rows(m, seq, NULL, 1, T, &err), 0, "%s", err.msg);
  cr_assert_eq(model_lm_logprobs(m, targets, all, NULL, &err), 0, "%s", err.msg);
  memcpy(lp, all, sizeof(float) * (size_t)(T - 1));
}

/* The largest per-token difference between a's and b's log-probabilities
 * of the fixture's sequences. */
static double largest_difference(fixture *f, model_t *a, model_t *b) {
  char ids[320];
  snprintf(ids, sizeof ids, "%s/seqs.txt", f->dir);
  int seqs[NSEQ][32];
  sequences(seqs, ids);
  double worst = 0;
  for (int s = 0; s < NSEQ; s++) {
    float la[32], lb[32];
    logprobs_of(a, seqs[s], seq_len[s], la);
    logprobs_of(b, seqs[s], seq_len[s], lb);
    for (int t = 0; t + 1 < seq_len[s]; t++) {
      double d = fabs((double)la[t] - (double)lb[t]);
      worst = d > worst ? d : worst;
    }
  }
  return worst;
}

/* A LoRA policy (rank 4, alpha 8, on attn.c_attn, attn.c_proj and mlp.c_fc
 * of both layers; not mlp.c_proj, so that peft's suffix matching has to keep
 * the two c_proj apart), its adapters moved away from B = 0: `dfpo export`
 * writes the merged weights, which the reference reads as a plain
 * GPT2LMHeadModel and scores as dfpo scores the adapted policy (within
 * 1e-5 of the log-probability, relative: the adapters, 0.3 a value, move
 * the log-probabilities by up to 4, and float32's error grows with them;
 * measured 2.6e-5 absolute, 5e-6 relative), and which dfpo loads back to
 * the same numbers (1e-5 absolute; measured 5.3e-6); `--adapters-only`
 * writes peft's two files, which the reference applies unmerged, as peft's
 * LoRA layers compute, over the base model's own export (written before the
 * adapters were added) to the same numbers again. */
Test(export, a_lora_policy_exports_merged_and_as_peft_adapters, .timeout = 300) {
  if (!have_torch())
    cr_skip_test("/usr/bin/python3 with torch and regex is missing: no reference to compare with");
  fixture f;
  setup(&f, MODEL_HEAD_NONE);
  char base[320], peft[320], other[320];
  snprintf(base, sizeof base, "%s/hf-base", f.dir);
  snprintf(peft, sizeof peft, "%s/peft", f.dir);
  snprintf(other, sizeof other, "%s/other", f.dir);
  ts_run r;
  ts_dfpo(&r, "export", "--model", f.ckpt, "--tokenizer", f.tok, "--out", base, NULL);
  cr_assert_eq(r.status, 0, "%s", r.err);
  ts_run_free(&r);
  dfpo_err err;
  dfpo_err_clear(&err);
  model_lora_config lc = {4, 8.0f, "attn.c_attn,attn.c_proj,mlp.c_fc"};
  cr_assert_eq(model_add_lora(f.m, &lc, 13, &err), 0, "%s", err.msg);
  dfpo_rng rng;
  dfpo_rng_init(&rng, 14, 77);
  for (int i = 0; i < model_num_tensors(f.m); i++) {
    model_tensor t;
    cr_assert_eq(model_tensor_at(f.m, i, &t, &err), 0, "%s", err.msg);
    for (size_t k = 0; k < (size_t)t.rows * t.cols; k++)
      t.param[k] += 0.3f * (float)dfpo_rng_normal(&rng);
  }
  snprintf(f.ckpt, sizeof f.ckpt, "%s/lora.ckpt", f.dir);
  cr_assert_eq(model_save(f.m, f.ckpt, 0, &err), 0, "%s", err.msg);
  /* merged */
  char *log = export_ok(&f);
  cr_expect(strstr(log, "LoRA adapters (rank 4) are merged"), "%s", log);
  free(log);
  cJSON_Delete(check_reference(&f, f.out, NULL, 1e-5));
  model_t *merged, *plain;
  cr_assert_eq(model_load(&merged, f.out, &err), 0, "%s", err.msg);
  cr_expect_eq(model_lora_rank(merged), 0);
  double d = largest_difference(&f, merged, f.m);
  cr_expect_lt(d, 1e-5, "dfpo's reading of the merged folder: %.3g from the adapted policy", d);
  cr_assert_eq(model_load(&plain, base, &err), 0, "%s", err.msg);
  double moved = largest_difference(&f, plain, f.m);
  cr_expect_gt(moved, 1e-2, "the adapters change the log-probabilities by %.3g only", moved);
  cr_log_info("lora export: merged folder in dfpo %.3g from the adapted policy; the base %.3g", d,
              moved);
  model_free(merged);
  model_free(plain);
  /* peft's adapter files over the base's folder */
  ts_dfpo(&r, "export", "--model", f.ckpt, "--adapters-only", "--out", peft, NULL);
  cr_assert_eq(r.status, 0, "%s", r.err);
  ts_run_free(&r);
  const char *absent[] = {"model.safetensors", "config.json", "vocab.json"};
  char path[400];
  for (int i = 0; i < 3; i++) {
    snprintf(path, sizeof path, "%s/%s", peft, absent[i]);
    cr_expect_neq(access(path, F_OK), 0, "%s written", path);
  }
  cJSON *o = check_reference(&f, base, peft, 1e-5);
  const cJSON *adapted = cJSON_GetObjectItem(o, "adapted");
  cr_assert_eq(cJSON_GetArraySize(adapted), 6, "two layers x three targets");
  const char *names[6] = {"transformer.h.0.attn.c_attn", "transformer.h.0.attn.c_proj",
                          "transformer.h.0.mlp.c_fc",    "transformer.h.1.attn.c_attn",
                          "transformer.h.1.attn.c_proj", "transformer.h.1.mlp.c_fc"};
  for (int i = 0; i < 6; i++)
    cr_expect_str_eq(cJSON_GetArrayItem(adapted, i)->valuestring, names[i]);
  const cJSON *ac = cJSON_GetObjectItem(o, "adapter_config");
  cr_expect_eq(num(ac, "r"), 4);
  cr_expect_eq(cJSON_GetObjectItem(ac, "lora_alpha")->valuedouble, 8.0);
  cr_expect_str_eq(ts_json_str(ac, "task_type"), "CAUSAL_LM");
  cJSON_Delete(o);
  /* read back: peft's folder, its targets named as peft users write them
   * (bare "c_attn" and "c_fc"; "attn.c_proj" keeps mlp.c_proj out), onto the
   * base by `dfpo export --adapters`: the merged folder scores as the
   * adapted policy in the reference, which applies the same folder as peft
   * does over the base to the same numbers */
  snprintf(path, sizeof path, "%s/adapter_config.json", peft);
  ts_json_set(path, "target_modules",
              cJSON_CreateStringArray((const char *const[]){"c_attn", "attn.c_proj", "c_fc"}, 3));
  cJSON_Delete(check_reference(&f, base, peft, 1e-5));
  char from_peft[320];
  snprintf(from_peft, sizeof from_peft, "%s/merged-from-peft", f.dir);
  ts_dfpo(&r, "export", "--model", base, "--adapters", peft, "--out", from_peft, NULL);
  cr_assert_eq(r.status, 0, "%s", r.err);
  cr_expect(strstr(r.err, "read peft's LoRA adapters") && strstr(r.err, "are merged"), "%s", r.err);
  ts_run_free(&r);
  cJSON_Delete(check_reference(&f, from_peft, NULL, 1e-5));
  /* and unmerged: perplexity and generate over the base's folder with
   * --adapters give the LoRA checkpoint's numbers and tokens exactly */
  same_as_checkpoint(&f, base, peft);
  /* rsLoRA (use_rslora): lora_alpha 4 gives peft's scale 4 / sqrt(4), the
   * policy's 8 / 4; the reference applies it as peft does, and dfpo's read
   * (merged by `dfpo export --adapters`, and unmerged) gives the same
   * numbers (read as plain LoRA, the scale would be 1) */
  ts_json_set(path, "use_rslora", cJSON_CreateTrue());
  ts_json_set(path, "lora_alpha", cJSON_CreateNumber(4));
  cJSON_Delete(check_reference(&f, base, peft, 1e-5));
  snprintf(from_peft, sizeof from_peft, "%s/merged-from-rslora", f.dir);
  ts_dfpo(&r, "export", "--model", base, "--adapters", peft, "--out", from_peft, NULL);
  cr_assert_eq(r.status, 0, "%s", r.err);
  ts_run_free(&r);
  cJSON_Delete(check_reference(&f, from_peft, NULL, 1e-5));
  same_as_checkpoint(&f, base, peft);
  /* a second set of adapters is refused */
  ts_dfpo(&r, "export", "--model", f.ckpt, "--tokenizer", f.tok, "--adapters", peft, "--out", other,
          NULL);
  cr_expect_neq(r.status, 0);
  cr_expect(strstr(r.err, "LoRA adapters already"), "%s", r.err);
  cr_expect_neq(access(other, F_OK), 0);
  ts_run_free(&r);
  /* --adapters-only needs adapters */
  ts_dfpo(&r, "export", "--model", base, "--adapters-only", "--out", other, NULL);
  cr_expect_neq(r.status, 0);
  cr_expect(strstr(r.err, "no LoRA adapters"), "%s", r.err);
  cr_expect_neq(access(other, F_OK), 0);
  ts_run_free(&r);
  teardown(&f);
}
