/* Llama's SentencePiece tokenizer.model (trainer/tok.h) against
 * python3-sentencepiece, through the dfpo binary:
 * tests/trainer/tok_llama_reference.py trains a tiny BPE with byte fallback
 * and Llama's ids (unk 0, <s> 1, </s> 2) and writes it as tokenizer.model
 * beside a random tiny grouped-query Llama (config.json, model.safetensors;
 * no spiece.model, no tokenizer.json), and the ids sp.encode gives for six
 * strings (accented Latin, Japanese, an emoji and the euro sign, which the
 * corpus lacks, so they come out as byte pieces <0xNN>; two leading
 * spaces) and sp.decode of them.
 * - `dfpo tokenizer encode --add-special`: <s> then exactly sp.encode's ids;
 *   without --add-special, sp.encode's ids; with a tokenizer_config.json
 *   of add_bos_token false and add_eos_token true, the ids then </s>;
 * - `dfpo tokenizer decode`: sp.decode's text, with or without the <s>;
 * - `dfpo perplexity --model FOLDER --input FILE --json` (the folder's
 *   tokenizer): every text token scored after <s> (tokens = the sum of
 *   sp.encode's lengths), with --no-bos one fewer a document; nll_sum
 *   within 1e-6 (relative) of the script's PyTorch Llama
 *   (rdec_reference.score) over <s> + sp.encode's ids; with the tokenizer
 *   of add_bos_token false and add_eos_token true, over sp.encode's ids +
 *   </s>, the first token context only, as transformers' tokenizer(text)
 *   encodes them (bos false in the JSON);
 * - `dfpo export` of the folder, and with --tokenizer of the second one:
 *   the tokenizer.model written is the same bytes, tokenizer_config.json
 *   keeps add_bos_token and add_eos_token, config.json says bos_token_id
 *   1 and eos_token_id 2 (Llama's <s> and </s>), and the exported folder
 *   scores the documents as the original does;
 * - `dfpo generate --model FOLDER --prompt TEXT`: the prompt's ids are <s>
 *   and sp.encode's, the continuation decoded as text.
 * Skipped, saying why, when /usr/bin/python3 lacks torch or sentencepiece. */
#include "tests/support/support.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The ids printed by `dfpo tokenizer encode` into ids (at most cap);
 * returns their count. */
static int parse_ids(const char *s, int *ids, int cap) {
  int n = 0;
  char *end;
  for (long v = strtol(s, &end, 10); end != s && n < cap; v = strtol(s, &end, 10)) {
    ids[n++] = (int)v;
    s = end;
  }
  return n;
}

static void expect_ids(const char *what, const char *text, const int *got, int ng,
                       const cJSON *want) {
  cr_expect_eq(ng, cJSON_GetArraySize(want), "%s of '%s': %d ids, python %d", what, text, ng,
               cJSON_GetArraySize(want));
  for (int i = 0; i < ng && i < cJSON_GetArraySize(want); i++)
    cr_expect_eq(got[i], cJSON_GetArrayItem(want, i)->valueint,
                 "%s of '%s': id %d is %d, python %d", what, text, i, got[i],
                 cJSON_GetArrayItem(want, i)->valueint);
}

/* The ids of want as text, with bos first when bos >= 0. */
static void ids_text(char *buf, size_t n, int bos, const cJSON *want) {
  size_t k = 0;
  buf[0] = '\0';
  if (bos >= 0)
    k += (size_t)snprintf(buf + k, n - k, "%d ", bos);
  const cJSON *x;
  cJSON_ArrayForEach(x, want) k += (size_t)snprintf(buf + k, n - k, "%d ", x->valueint);
}

/* A perplexity JSON's tokens and nll_sum against the reference's sums for
 * the tokenizer folder named key. */
static void expect_nll(const char *what, const cJSON *j, const cJSON *nll, const cJSON *k,
                       const char *key) {
  double got = cJSON_GetObjectItemCaseSensitive(j, "nll_sum")->valuedouble;
  double want = cJSON_GetObjectItemCaseSensitive(nll, key)->valuedouble;
  long tokens = (long)cJSON_GetObjectItemCaseSensitive(j, "tokens")->valuedouble;
  long want_k = (long)cJSON_GetObjectItemCaseSensitive(k, key)->valuedouble;
  cr_expect_eq(tokens, want_k, "%s: %ld tokens scored, the reference %ld", what, tokens, want_k);
  cr_expect(fabs(got - want) <= 1e-6 * fabs(want), "%s: nll_sum %.9g, the reference %.9g", what,
            got, want);
}

/* Skips the test when /usr/bin/python3 lacks torch or sentencepiece;
 * else makes a fresh folder (into dir) and runs the reference script's
 * first form there: its JSON (the caller's). */
static cJSON *make_reference(char *dir, size_t n) {
  if (!ts_python_has("torch, sentencepiece"))
    cr_skip_test("/usr/bin/python3 lacks torch or sentencepiece (Debian: python3-torch, "
                 "python3-sentencepiece): no reference to compare with");
  char out[300];
  ts_tmpdir(dir, n);
  snprintf(out, sizeof out, "%s/ref.json", dir);
  ts_run r;
  char *argv[] = {"/usr/bin/python3", DFPO_SOURCE_DIR "/tests/trainer/tok_llama_reference.py", dir,
                  out, NULL};
  ts_run_cmd(&r, argv, NULL, NULL);
  cr_assert_eq(r.status, 0, "the reference script: %s", r.err);
  ts_run_free(&r);
  return ts_read_json(out);
}

Test(tok_llama, tokenizer_model_encodes_and_decodes_as_python_sentencepiece, .timeout = 120) {
  char dir[256], docs[300];
  cJSON *ref = make_reference(dir, sizeof dir);
  snprintf(docs, sizeof docs, "%s/docs.txt", dir);
  ts_run r;
  char llama[300], eos[300];
  snprintf(llama, sizeof llama, "%s", ts_json_str(ref, "llama"));
  snprintf(eos, sizeof eos, "%s", ts_json_str(ref, "eos"));
  const cJSON *cases = cJSON_GetObjectItemCaseSensitive(ref, "cases"), *c;
  cr_assert(cJSON_GetArraySize(cases) == 6);
  FILE *fp = fopen(docs, "w");
  cr_assert_not_null(fp);
  long want_tokens = 0;
  int bytes_seen = 0;
  cJSON_ArrayForEach(c, cases) {
    const char *text = ts_json_str(c, "text"), *dec = ts_json_str(c, "decoded");
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(c, "ids");
    const cJSON *with_bos = cJSON_GetObjectItemCaseSensitive(c, "with_bos");
    const cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(c, "pieces")) bytes_seen |=
        !strncmp(p->valuestring, "<0x", 3);
    int got[256], n;
    char *enc[] = {(char *)DFPO_BIN, "tokenizer", "encode", "--tokenizer", llama,
                   "--add-special",  NULL};
    ts_run_cmd(&r, enc, text, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    n = parse_ids(r.out, got, 256);
    expect_ids("encode --add-special", text, got, n, with_bos);
    ts_run_free(&r);
    char *plain[] = {(char *)DFPO_BIN, "tokenizer", "encode", "--tokenizer", llama, NULL};
    ts_run_cmd(&r, plain, text, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    n = parse_ids(r.out, got, 256);
    expect_ids("encode", text, got, n, ids);
    ts_run_free(&r);
    /* add_bos_token false, add_eos_token true: the ids, then </s> 2 */
    char *enc_eos[] = {(char *)DFPO_BIN, "tokenizer", "encode", "--tokenizer", eos,
                       "--add-special",  NULL};
    ts_run_cmd(&r, enc_eos, text, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    n = parse_ids(r.out, got, 256);
    cr_expect(n >= 1 && got[n - 1] == 2, "add_eos_token: '%s' does not end with </s>", text);
    expect_ids("encode (add_eos_token)", text, got, n - 1, ids);
    ts_run_free(&r);
    /* decoding, with and without the <s> */
    for (int b = 0; b < 2; b++) {
      char in[2048];
      ids_text(in, sizeof in, b ? 1 : -1, ids);
      char *d[] = {(char *)DFPO_BIN, "tokenizer", "decode", "--tokenizer", llama, NULL};
      ts_run_cmd(&r, d, in, NULL);
      cr_assert_eq(r.status, 0, "%s", r.err);
      cr_expect_str_eq(r.out, dec, "decode%s: '%s', python '%s'", b ? " with <s>" : "", r.out, dec);
      ts_run_free(&r);
    }
    fprintf(fp, "%s\n", text);
    want_tokens += cJSON_GetArraySize(ids);
  }
  fclose(fp);
  cr_expect(bytes_seen, "no test string fell back to byte pieces");

  /* perplexity with the folder's tokenizer: <s> before each document, so
   * every text token is scored; --no-bos: the first is context only */
  const cJSON *ref_nll = cJSON_GetObjectItemCaseSensitive(ref, "nll_sum");
  const cJSON *ref_k = cJSON_GetObjectItemCaseSensitive(ref, "nll_tokens");
  for (int nb = 0; nb < 2; nb++) {
    char *pp[] = {(char *)DFPO_BIN, "perplexity",           "--model", llama, "--input", docs,
                  "--json",         nb ? "--no-bos" : NULL, NULL};
    ts_run_cmd(&r, pp, NULL, NULL);
    cr_assert_eq(r.status, 0, "perplexity: %s", r.err);
    cJSON *j = cJSON_Parse(r.out);
    cr_assert_not_null(j, "%s", r.out);
    long want = want_tokens - (nb ? cJSON_GetArraySize(cases) : 0);
    cr_expect_eq((long)cJSON_GetObjectItemCaseSensitive(j, "tokens")->valuedouble, want,
                 "perplexity%s scored %s, expected %ld tokens", nb ? " --no-bos" : "", r.out, want);
    cr_expect_eq(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "bos")), !nb);
    if (!nb)
      expect_nll("perplexity", j, ref_nll, ref_k, "llama");
    cJSON_Delete(j);
    ts_run_free(&r);
  }
  /* add_bos_token false, add_eos_token true: ids + </s>, the first token
   * context only (before, </s> was put first as if it were GPT-2's
   * <|endoftext|>: 792.585 against the reference's 793.928) */
  char *ppe[] = {(char *)DFPO_BIN, "perplexity", "--model", llama, "--tokenizer", eos,
                 "--input",        docs,         "--json",  NULL};
  ts_run_cmd(&r, ppe, NULL, NULL);
  cr_assert_eq(r.status, 0, "perplexity (add_eos_token): %s", r.err);
  cJSON *je = cJSON_Parse(r.out);
  cr_assert_not_null(je, "%s", r.out);
  cr_expect(!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(je, "bos")), "%s", r.out);
  expect_nll("perplexity (add_bos_token false, add_eos_token true)", je, ref_nll, ref_k, "eos");
  cJSON_Delete(je);
  ts_run_free(&r);

  /* export, with each tokenizer: the same tokenizer.model and settings,
   * Llama's bos/eos ids in config.json, the same scores */
  for (int e = 0; e < 2; e++) {
    char exp[320], path[360], spm_src[360];
    snprintf(exp, sizeof exp, "%s/exported%d", dir, e);
    char *ex[] = {(char *)DFPO_BIN,         "export", "--model", llama, "--out", exp,
                  e ? "--tokenizer" : NULL, eos,      NULL};
    ts_run_cmd(&r, ex, NULL, NULL);
    cr_assert_eq(r.status, 0, "export: %s", r.err);
    ts_run_free(&r);
    snprintf(path, sizeof path, "%s/tokenizer.model", exp);
    snprintf(spm_src, sizeof spm_src, "%s/tokenizer.model", e ? eos : llama);
    char *cmp[] = {"/usr/bin/cmp", "-s", spm_src, path, NULL};
    ts_run_cmd(&r, cmp, NULL, NULL);
    cr_expect_eq(r.status, 0, "export %d: %s differs from %s", e, path, spm_src);
    ts_run_free(&r);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", exp);
    cJSON *tc = ts_read_json(path);
    cr_expect_eq(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(tc, "add_bos_token")), !e);
    cr_expect_eq(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(tc, "add_eos_token")), e);
    cJSON_Delete(tc);
    snprintf(path, sizeof path, "%s/config.json", exp);
    cJSON *cf = ts_read_json(path);
    const cJSON *bi = cJSON_GetObjectItemCaseSensitive(cf, "bos_token_id");
    const cJSON *ei = cJSON_GetObjectItemCaseSensitive(cf, "eos_token_id");
    cr_expect(cJSON_IsNumber(bi) && bi->valueint == 1, "export %d: bos_token_id is not 1", e);
    cr_expect(cJSON_IsNumber(ei) && ei->valueint == 2, "export %d: eos_token_id is not 2", e);
    cJSON_Delete(cf);
    char *pp[] = {(char *)DFPO_BIN, "perplexity", "--model", exp, "--input", docs, "--json", NULL};
    ts_run_cmd(&r, pp, NULL, NULL);
    cr_assert_eq(r.status, 0, "perplexity of the export: %s", r.err);
    cJSON *j = cJSON_Parse(r.out);
    cr_assert_not_null(j, "%s", r.out);
    expect_nll("perplexity of the exported folder", j, ref_nll, ref_k, e ? "eos" : "llama");
    cJSON_Delete(j);
    ts_run_free(&r);
  }

  /* generate: the prompt is <s> and the text's ids; the continuation text */
  c = cJSON_GetArrayItem(cases, 2);
  char *gen[] = {
      (char *)DFPO_BIN, "generate", "--model",   llama, "--prompt", (char *)ts_json_str(c, "text"),
      "--temperature",  "0",        "--max-new", "4",   NULL};
  ts_run_cmd(&r, gen, NULL, NULL);
  cr_assert_eq(r.status, 0, "generate: %s", r.err);
  cJSON *g = cJSON_Parse(r.out);
  cr_assert_not_null(g, "%s", r.out);
  const cJSON *pt = cJSON_GetObjectItemCaseSensitive(g, "prompt_tokens"), *x;
  int got[256], n = 0;
  cJSON_ArrayForEach(x, pt) if (n < 256) got[n++] = x->valueint;
  expect_ids("generate's prompt", ts_json_str(c, "text"), got, n,
             cJSON_GetObjectItemCaseSensitive(c, "with_bos"));
  cr_expect(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(g, "text")), "%s", r.out);
  cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(g, "tokens")), 4, "%s", r.out);
  cJSON_Delete(g);
  ts_run_free(&r);
  cJSON_Delete(ref);
  ts_rmtree(dir);
}

/* dfpo train with a Llama policy whose folder holds tokenizer.model: each
 * prompt starts with <s> as transformers' tokenizer(prompt, truncation=True,
 * truncation_side="left") encodes it (<s> kept, the text cut to
 * task.max_prompt_tokens - 1), and the references' ppl_ref puts <s> before
 * each text. A zero-shot run on the synthetic task (6 test prompts, greedy
 * evaluation of 4 new tokens, task.max_prompt_tokens 2: <s> and the
 * prompt's last token) against tok_llama_reference.py's greedy form (the
 * same random Llama in PyTorch over samples.jsonl's prompts): every
 * continuation is the one given <s>, none the one given the last two
 * text tokens (what the runs had before); eval.json's ppl_ref within 1e-6
 * (relative) of the reference's over <s> + each reference (1223.053 on
 * this data; after </s> instead, 1222.323). */
Test(tok_llama, a_llama_policy_reads_its_prompts_and_references_after_s, .timeout = 300) {
  char dir[256], out[300], samples[400], evalp[400], greedy[300];
  cJSON_Delete(make_reference(dir, sizeof dir));
  snprintf(out, sizeof out, "%s/runs", dir);
  snprintf(greedy, sizeof greedy, "%s/greedy.json", dir);
  ts_run r;
  char llama[300];
  snprintf(llama, sizeof llama, "%s/llama", dir);
  char *tr[] = {(char *)DFPO_BIN,
                "train",
                "--task",
                "synthetic",
                "--algo",
                "zero-shot",
                "--model",
                llama,
                "--seed",
                "1",
                "--out",
                out,
                "--set",
                "eval.num_beams=1",
                "--set",
                "generation.max_new_tokens=4",
                "--set",
                "generation.min_new_tokens=4",
                "--set",
                "task.synthetic.n_train=4",
                "--set",
                "task.synthetic.n_validation=2",
                "--set",
                "task.synthetic.n_test=6",
                "--set",
                "task.max_prompt_tokens=2",
                NULL};
  ts_run_cmd(&r, tr, NULL, NULL);
  cr_assert_eq(r.status, 0, "train: %s", r.err);
  ts_run_free(&r);
  snprintf(samples, sizeof samples, "%s/default/synthetic/zero-shot/seed-1/samples.jsonl", out);
  snprintf(evalp, sizeof evalp, "%s/default/synthetic/zero-shot/seed-1/eval.json", out);
  char *gr[] = {"/usr/bin/python3",
                DFPO_SOURCE_DIR "/tests/trainer/tok_llama_reference.py",
                "greedy",
                dir,
                samples,
                "2",
                "4",
                greedy,
                NULL};
  ts_run_cmd(&r, gr, NULL, NULL);
  cr_assert_eq(r.status, 0, "the reference's greedy form: %s", r.err);
  ts_run_free(&r);
  cJSON *g = ts_read_json(greedy);
  const cJSON *rows = cJSON_GetObjectItemCaseSensitive(g, "samples");
  char *text = ts_slurp(samples);
  cr_assert_not_null(text);
  int i = 0, apart = 0;
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"), i++) {
    cJSON *o = cJSON_Parse(line);
    const cJSON *want = cJSON_GetArrayItem(rows, i);
    cr_assert(o && want, "samples.jsonl line %d", i);
    const char *got = ts_json_str(o, "continuation");
    cr_expect_str_eq(got, ts_json_str(want, "with_bos"),
                     "sample %d: '%s', PyTorch given <s> '%s' (margin %g)", i, got,
                     ts_json_str(want, "with_bos"),
                     cJSON_GetObjectItemCaseSensitive(want, "with_bos_margin")->valuedouble);
    apart += strcmp(ts_json_str(want, "with_bos"), ts_json_str(want, "without")) != 0;
    cJSON_Delete(o);
  }
  cr_expect_eq(i, 6, "%d samples", i);
  cr_expect(apart >= 3, "only %d of the prompts continue differently without <s>", apart);
  cJSON *ev = ts_read_json(evalp);
  double got =
      cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ev, "metrics"), "ppl_ref")
          ->valuedouble;
  double want = cJSON_GetObjectItemCaseSensitive(g, "ppl_ref")->valuedouble;
  cr_expect(fabs(got - want) <= 1e-6 * want, "ppl_ref %.9g, PyTorch over <s> + each text %.9g", got,
            want);
  cJSON_Delete(ev);
  cJSON_Delete(g);
  free(text);
  ts_rmtree(dir);
}
