/* `dfpo train` with a T5 policy (an encoder-decoder) on CommonGen, end to
 * end on the CPU: a tiny random T5 (t5_new, exported with
 * model_export_hf as a Hugging Face folder with the spiece.model that
 * tests/trainer/t5_reference.py --spm trains), the prompts as its sources
 * (ended with </s>), zero-shot and SFT (rows [source | reference </s>]).
 * No reference numbers: SFT must lower its own training loss and raise its
 * validation METEOR above the untrained model's, and its best.ckpt must
 * load back as the same T5. eval.ppl_ref is on: zero-shot's ppl_ref (each
 * test reference and </s> given its prompt and </s> as the source) is held
 * to tests/trainer/t5_reference.py --nll over the same id pairs within
 * 1e-4 relative, and SFT must lower its validation ppl_ref. Skipped,
 * saying why, without ../shared/data (CommonGen) or without
 * /usr/bin/python3's torch and sentencepiece (the tokenizer's trainer).
 * eval.judge_lm with a T5 policy: a GPT-2 judge folder with its own
 * tokenizer files scores the samples with that tokenizer, one without is
 * refused before training. */
#include "metrics/metrics.h"
#include "tests/support/support.h"
#include "tests/trainer/t5_testutil.h"
#include "trainer/gpt2.h"
#include "trainer/model.h"
#include "trainer/t5.h"
#include "trainer/tok.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void run_dfpo(const char *home, char **args, int want_status, const char *want_err) {
  ts_run r;
  ts_dfpo_home(&r, home, args, NULL);
  cr_assert_eq(r.status, want_status, "dfpo %s %s: status %d: %s", args[0], args[1], r.status,
               r.err);
  if (want_err)
    cr_expect(strstr(r.err, want_err) != NULL, "message lacks '%s': %s", want_err, r.err);
  ts_run_free(&r);
}

/* dfpo train --task commongen --algo ALGO --seed 0 --out OUT --model MODEL
 * --device cpu, each of sets[] (NULL-terminated) as --set, --stop-after N
 * when stop_after > 0. */
static void train(const char *home, const char *out, const char *model, const char *algo,
                  const char *const *sets, int stop_after, int want_status, const char *want_err) {
  char *args[40], stop[16];
  int n = 0;
  const char *fixed[] = {"train", "--task", "commongen", "--algo", algo,       "--seed", "0",
                         "--out", out,      "--model",   model,    "--device", "cpu"};
  for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
    args[n++] = (char *)fixed[i];
  for (int i = 0; sets && sets[i] && n < 36; i++) {
    args[n++] = "--set";
    args[n++] = (char *)sets[i];
  }
  if (stop_after > 0) {
    snprintf(stop, sizeof stop, "%d", stop_after);
    args[n++] = "--stop-after";
    args[n++] = stop;
  }
  args[n] = NULL;
  run_dfpo(home, args, want_status, want_err);
}

/* Zero-shot's ppl_ref against PyTorch: the test items eval.json scored
 * (samples.jsonl's indices and prompts), their references (the first scene
 * of each line of the CommonGen dev file cg_dev, which the test split is),
 * each side encoded with tok and ended with </s> (1), as the pairs
 * t5_reference.py --nll scores under the folder model's weights; returns
 * the relative difference of the perplexities. */
static double ppl_ref_against_pytorch(const char *dir, const char *run, const char *model,
                                      const char *cg_dev, tok_tokenizer *tok) {
  char path[1100], pairs[1000], out[1000];
  snprintf(path, sizeof path, "%s/eval.json", run);
  cJSON *ev = ts_read_json(path);
  const cJSON *p = cJSON_GetObjectItem(cJSON_GetObjectItem(ev, "metrics"), "ppl_ref");
  const cJSON *nt = cJSON_GetObjectItem(ev, "ppl_ref_texts");
  cr_assert(cJSON_IsNumber(p) && cJSON_IsNumber(nt), "no ppl_ref in %s", path);
  double got = p->valuedouble;
  int ntexts = nt->valueint;
  cJSON_Delete(ev);
  /* the dev file's first scenes */
  char *text = NULL, *save = NULL;
  dfpo_err err;
  cr_assert_eq(dfpo_read_file(cg_dev, &text, NULL, &err), DFPO_OK, "%s", err.msg);
  char *scene[256];
  int nd = 0;
  for (char *line = strtok_r(text, "\n", &save); line && nd < 256;
       line = strtok_r(NULL, "\n", &save)) {
    cJSON *j = cJSON_Parse(line);
    scene[nd++] = strdup(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "scene"), 0)->valuestring);
    cJSON_Delete(j);
  }
  free(text);
  snprintf(path, sizeof path, "%s/samples.jsonl", run);
  cr_assert_eq(dfpo_read_file(path, &text, NULL, &err), DFPO_OK, "%s", err.msg);
  snprintf(pairs, sizeof pairs, "%s/ppl_pairs.tsv", dir);
  FILE *f = fopen(pairs, "w");
  cr_assert_not_null(f);
  int seen[256] = {0}, n = 0, cuts = 0;
  size_t tokens = 0;
  for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    cJSON *j = cJSON_Parse(line);
    int i = cJSON_GetObjectItem(j, "index")->valueint;
    cr_assert(i >= 0 && i < nd, "sample index %d outside the dev file's %d lines", i, nd);
    if (!seen[i]) {
      seen[i] = 1;
      const char *side[2] = {cJSON_GetObjectItem(j, "prompt")->valuestring, scene[i]};
      for (int k = 0; k < 2; k++) {
        tok_ids v = {0};
        cr_assert_eq(tok_encode(tok, side[k], strlen(side[k]), 0, &v, &err), DFPO_OK, "%s",
                     err.msg);
        /* the run's cuts: the source (with </s>) to its last 64 tokens
         * (task.max_prompt_tokens), the target (with </s>) to its first 64
         * (the decoder's positions) */
        size_t len = v.n + 1, from = 0;
        if (len > 64) {
          cuts++;
          from = k ? 0 : len - 64;
          len = 64;
        }
        for (size_t t = from; t < from + len; t++)
          fprintf(f, "%d%s", t < v.n ? (int)v.ids[t] : 1, t + 1 < from + len ? " " : "");
        fprintf(f, "%s", k ? "\n" : "\t");
        tokens += k ? len : 0;
        tok_ids_free(&v);
      }
      n++;
    }
    cJSON_Delete(j);
  }
  fclose(f);
  free(text);
  for (int i = 0; i < nd; i++)
    free(scene[i]);
  cr_assert_eq(n, ntexts, "eval.json scored %d references, samples.jsonl has %d items", ntexts, n);
  snprintf(out, sizeof out, "%s/ppl_nll.json", dir);
  ts_run r;
  char *argv[] = {"/usr/bin/python3",
                  DFPO_SOURCE_DIR "/tests/trainer/t5_reference.py",
                  "--nll",
                  (char *)model,
                  pairs,
                  out,
                  NULL};
  ts_run_cmd(&r, argv, NULL, NULL);
  cr_assert_eq(r.status, 0, "t5_reference.py --nll: %s", r.err);
  ts_run_free(&r);
  cJSON *ref = ts_read_json(out);
  const cJSON *nll = cJSON_GetObjectItem(ref, "nll");
  cr_assert_eq(cJSON_GetArraySize(nll), n);
  double sum = 0;
  for (int i = 0; i < n; i++)
    sum += cJSON_GetArrayItem(nll, i)->valuedouble;
  cJSON_Delete(ref);
  double want = exp(sum / (double)tokens);
  cr_log_info("T5 zero-shot ppl_ref over %d CommonGen references (%zu tokens, %d sides cut to 64 "
              "tokens): %.6f, PyTorch %.6f",
              n, tokens, cuts, got, want);
  return fabs(got - want) / want;
}

/* The training loss of each epoch line of train.jsonl (NAN where none),
 * the validation rewards and ppl_ref, n lines at most; returns the lines
 * read. */
static int read_log(const char *path, double *loss, double *val, double *ppl, int n) {
  char *text = NULL;
  dfpo_err err;
  cr_assert_eq(dfpo_read_file(path, &text, NULL, &err), DFPO_OK, "%s", path);
  int k = 0;
  char *save = NULL;
  for (char *line = strtok_r(text, "\n", &save); line && k < n;
       line = strtok_r(NULL, "\n", &save), k++) {
    cJSON *j = cJSON_Parse(line);
    const cJSON *l = cJSON_GetObjectItem(j, "loss"), *v = cJSON_GetObjectItem(j, "val_reward");
    loss[k] = cJSON_IsNumber(l) ? l->valuedouble : NAN;
    val[k] = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    const cJSON *p = cJSON_GetObjectItem(j, "val_ppl_ref");
    ppl[k] = cJSON_IsNumber(p) ? p->valuedouble : NAN;
    cJSON_Delete(j);
  }
  free(text);
  return k;
}

/* The lines of train.jsonl without their clock readings (time,
 * iteration_s, elapsed_s), as heap strings into out[n]; returns the count. */
static int log_lines(const char *path, char **out, int n) {
  char *text = NULL;
  dfpo_err err;
  cr_assert_eq(dfpo_read_file(path, &text, NULL, &err), DFPO_OK, "%s", path);
  int k = 0;
  char *save = NULL;
  for (char *line = strtok_r(text, "\n", &save); line && k < n;
       line = strtok_r(NULL, "\n", &save), k++) {
    cJSON *j = cJSON_Parse(line);
    cr_assert_not_null(j, "%s: not JSON: %s", path, line);
    cJSON_DeleteItemFromObject(j, "time");
    cJSON_DeleteItemFromObject(j, "iteration_s");
    cJSON_DeleteItemFromObject(j, "elapsed_s");
    out[k] = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
  }
  free(text);
  return k;
}

Test(t5_train, commongen_zero_shot_and_sft_with_a_t5, .timeout = 600) {
  const char *data = ts_shared_data();
  if (!data)
    cr_skip_test("no ../shared/data (CommonGen): skipped");
  if (!ts_python_has("torch, sentencepiece"))
    cr_skip_test("/usr/bin/python3 lacks torch or sentencepiece: no spiece.model can be trained");
  char dir[256], home[300], spm[300], model[300], cg[300], out[300], src[700];
  ts_tmpdir(dir, sizeof dir);
  snprintf(home, sizeof home, "%s/home", dir);
  snprintf(spm, sizeof spm, "%s/spm", dir);
  snprintf(model, sizeof model, "%s/t5", dir);
  snprintf(cg, sizeof cg, "%s/commongen", dir);
  snprintf(out, sizeof out, "%s/runs", dir);
  /* the tokenizer, then a random T5 of its vocabulary as a folder */
  t5_config c = tt_random_t5_folder(spm, model,
                                    (t5_config){.d_model = 24,
                                                .d_kv = 8,
                                                .d_ff = 32,
                                                .n_head = 2,
                                                .n_layer = 1,
                                                .n_dec_layer = 1,
                                                .num_buckets = 16,
                                                .max_distance = 32,
                                                .eps = 1e-6f,
                                                .gated = 0,
                                                .tied = 1,
                                                .n_pos = 64,
                                                .start_id = 0,
                                                .eos_id = 1},
                                    5);
  dfpo_err err;
  dfpo_err_clear(&err);
  tok_tokenizer *tok;
  /* CommonGen's first 600 training concept sets and the dev set's first 200 */
  ts_commongen_slice(data, cg, 600, 200, 20);
  char *imp[] = {"datasets", "import", "commongen", cg, "--unverified", NULL};
  run_dfpo(home, imp, 0, NULL);
  char *prep[] = {"datasets", "prepare", "commongen", NULL};
  run_dfpo(home, prep, 0, NULL);

  /* zero-shot with eval.ppl_ref (on by default): the references given their sources */
  const char *zs[] = {"task.max_items=32", NULL};
  train(home, out, model, "zero-shot", zs, 0, 0, NULL);
  char path[1000];
  snprintf(path, sizeof path, "%s/default/commongen/zero-shot/seed-0/eval.json", out);
  cJSON *ev = ts_read_json(path);
  const cJSON *met = cJSON_GetObjectItem(ev, "metrics");
  cr_expect(cJSON_IsNumber(cJSON_GetObjectItem(met, "meteor")), "no meteor in %s", path);
  cr_expect(cJSON_IsNumber(cJSON_GetObjectItem(met, "bleu4")), "no bleu4 in %s", path);
  /* a T5 on CommonGen is RL4LMs' kind of policy: no deviation about it */
  const cJSON *dv;
  cJSON_ArrayForEach(dv, cJSON_GetObjectItem(ev, "deviations")) {
    cr_expect(!strstr(dv->valuestring, "policy"), "deviation '%s'", dv->valuestring);
  }
  cJSON_Delete(ev);
  snprintf(path, sizeof path, "%s/default/commongen/zero-shot/seed-0", out);
  snprintf(src, sizeof src, "%s/commongen.dev.jsonl", cg);
  cr_assert_eq(tok_load(&tok, model, &err), DFPO_OK, "%s", err.msg);
  double d = ppl_ref_against_pytorch(dir, path, model, src, tok);
  tok_free(tok);
  cr_expect_leq(d, 1e-4, "ppl_ref differs from PyTorch's by %.3g relative", d);
  cr_log_info("ppl_ref: relative difference to PyTorch %.3g", d);

  const char *sft[] = {"task.max_items=400", "train.iterations=4", "train.eval_every=4",
                       "train.lr=3e-3", NULL};
  train(home, out, model, "sft", sft, 0, 0, NULL);
  snprintf(path, sizeof path, "%s/default/commongen/sft/seed-0/train.jsonl", out);
  double loss[8], val[8], pv[8];
  int n = read_log(path, loss, val, pv, 8);
  cr_assert_eq(n, 5, "%s: %d lines, 5 expected (epochs 0-4)", path, n);
  cr_log_info("T5 SFT on CommonGen: epoch losses %.3f %.3f %.3f %.3f; validation METEOR %.4f -> "
              "%.4f",
              loss[0], loss[1], loss[2], loss[3], val[0], val[4]);
  cr_expect_lt(loss[3], loss[0] - 0.5, "SFT did not lower its loss: %.3f -> %.3f", loss[0],
               loss[3]);
  cr_expect_gt(val[4], val[0], "SFT did not raise the validation METEOR: %.4f -> %.4f", val[0],
               val[4]);
  cr_log_info("T5 SFT on CommonGen: validation ppl_ref %.2f -> %.2f", pv[0], pv[4]);
  cr_expect_lt(pv[4], pv[0], "SFT did not lower the validation ppl_ref: %.3f -> %.3f", pv[0],
               pv[4]);
  snprintf(path, sizeof path, "%s/default/commongen/sft/seed-0/checkpoint/best.ckpt", out);
  model_t *b;
  cr_assert_eq(model_load(&b, path, &err), DFPO_OK, "%s", err.msg);
  cr_expect_str_eq(model_get_config(b)->arch, "t5");
  cr_expect_eq(memcmp(t5_get_config(b), &c, sizeof c), 0, "best.ckpt's config differs");
  model_free(b);

  /* PPO over the T5 policy and its T5 value model, uninterrupted and
   * stopped after iteration 1 then resumed from the resumable checkpoint
   * (policy, value model, AdamW states): the same log */
  char *whole[8] = {0}, *resumed[8] = {0};
  for (int k = 0; k < 3; k++) {
    char o2[400];
    snprintf(o2, sizeof o2, "%s/%s", dir, k ? "ppo-resumed" : "ppo");
    const char *ppo[] = {"task.max_items=32", "train.iterations=3", "train.eval_every=1",
                         "train.batch_size=8", NULL};
    train(home, o2, model, "ppo", ppo, k == 1 ? 1 : 0, 0, NULL);
    if (k == 1)
      continue;
    snprintf(path, sizeof path, "%s/default/commongen/ppo/seed-0/train.jsonl", o2);
    cr_assert_eq(log_lines(path, k ? resumed : whole, 8), 4, "%s: 4 lines expected", path);
  }
  for (int i = 0; i < 4; i++) {
    cr_expect_str_eq(resumed[i], whole[i], "PPO iteration %d: resumed and uninterrupted differ", i);
    cr_log_info("T5 PPO on CommonGen, iteration %d: %s", i, whole[i]);
    free(resumed[i]), free(whole[i]);
  }
  ts_rmtree(dir);
}

/* The paper's ppl_gen of a T5 policy's samples under a GPT-2: the judge
 * (a random GPT-2 over GPT-2's real 50,257-id tokenizer, as a Hugging Face
 * folder with encoder.json and vocab.bpe from ../shared/data/gpt2) reads
 * the texts with its own tokenizer. The expectation is met_ppl_gen of the
 * run's samples.jsonl (prompts and continuations) under the judge with
 * that tokenizer; with the T5's SentencePiece ids instead (what the run
 * did before the judge's tokenizer was taken) the number differs. A judge
 * file without tokenizer files is refused before any training. */
Test(t5_train, judge_lm_reads_with_its_own_tokenizer, .timeout = 300) {
  const char *data = ts_shared_data();
  if (!data)
    cr_skip_test("no ../shared/data (CommonGen, GPT-2's tokenizer): skipped");
  if (!ts_python_has("torch, sentencepiece"))
    cr_skip_test("/usr/bin/python3 lacks torch or sentencepiece: no spiece.model can be trained");
  char dir[256], home[300], spm[300], model[300], cg[300], out[300], judge[300], path[1000];
  ts_tmpdir(dir, sizeof dir);
  snprintf(home, sizeof home, "%s/home", dir);
  snprintf(spm, sizeof spm, "%s/spm", dir);
  snprintf(model, sizeof model, "%s/t5", dir);
  snprintf(cg, sizeof cg, "%s/commongen", dir);
  snprintf(out, sizeof out, "%s/runs", dir);
  snprintf(judge, sizeof judge, "%s/judge", dir);
  tt_random_t5_folder(spm, model,
                      (t5_config){.d_model = 16,
                                  .d_kv = 8,
                                  .d_ff = 24,
                                  .n_head = 2,
                                  .n_layer = 1,
                                  .n_dec_layer = 1,
                                  .num_buckets = 16,
                                  .max_distance = 32,
                                  .eps = 1e-6f,
                                  .gated = 0,
                                  .tied = 1,
                                  .n_pos = 64,
                                  .start_id = 0,
                                  .eos_id = 1},
                      7);
  ts_commongen_slice(data, cg, 100, 50, 20);
  char *imp[] = {"datasets", "import", "commongen", cg, "--unverified", NULL};
  run_dfpo(home, imp, 0, NULL);
  char *prep[] = {"datasets", "prepare", "commongen", NULL};
  run_dfpo(home, prep, 0, NULL);

  /* the judge: weights alone first (no tokenizer files) */
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(mkdir(judge, 0755), 0);
  gpt2_config gc = {1, 2, 16, 50257, 1024, MODEL_HEAD_NONE, 0};
  model_t *g;
  cr_assert_eq(gpt2_new(&g, &gc, &err), 0, "%s", err.msg);
  model_init_random(g, 3);
  snprintf(path, sizeof path, "%s/model.safetensors", judge);
  cr_assert_eq(model_export_safetensors(g, path, 1, &err), 0, "%s", err.msg);
  model_free(g);
  char set[1100];
  snprintf(set, sizeof set, "eval.judge_lm=%s", path);
  const char *bad[] = {"task.max_items=8", set, NULL};
  train(home, out, model, "zero-shot", bad, 0, 1, "cannot read the encoder-decoder policy");
  snprintf(path, sizeof path, "%s/default/commongen/zero-shot/seed-0/eval.json", out);
  cr_expect_neq(access(path, F_OK), 0, "a refused judge left %s", path);

  /* then with GPT-2's tokenizer beside the weights */
  const char *names[] = {"encoder.json", "vocab.bpe"};
  for (int i = 0; i < 2; i++) {
    char from[600], to[600];
    snprintf(from, sizeof from, "%s/gpt2/%s", data, names[i]);
    snprintf(to, sizeof to, "%s/%s", judge, names[i]);
    cr_assert_eq(symlink(from, to), 0, "%s", to);
  }
  snprintf(set, sizeof set, "eval.judge_lm=%s", judge);
  const char *good[] = {"task.max_items=8", set, NULL};
  train(home, out, model, "zero-shot", good, 0, 0, NULL);
  cJSON *ev = ts_read_json(path);
  double pg = cJSON_GetObjectItem(cJSON_GetObjectItem(ev, "metrics"), "ppl_gen")->valuedouble;
  const cJSON *jl = cJSON_GetObjectItem(ev, "judge_lm");
  cr_expect(cJSON_IsTrue(cJSON_GetObjectItem(jl, "own_tokenizer")));
  cr_expect_str_eq(cJSON_GetObjectItem(jl, "path")->valuestring, judge);

  /* the expectation from the samples */
  snprintf(path, sizeof path, "%s/default/commongen/zero-shot/seed-0/samples.jsonl", out);
  size_t n = 0;
  char *prompts[64], *conts[64], line[8192];
  FILE *f = fopen(path, "r");
  cr_assert_not_null(f, "%s", path);
  while (n < 64 && fgets(line, sizeof line, f)) {
    cJSON *o = cJSON_Parse(line);
    prompts[n] = strdup(cJSON_GetObjectItem(o, "prompt")->valuestring);
    conts[n] = strdup(cJSON_GetObjectItem(o, "continuation")->valuestring);
    cJSON_Delete(o);
    n++;
  }
  fclose(f);
  cr_assert_gt(n, 0);
  model_t *lm;
  tok_tokenizer *gt, *tt;
  met_ppl p, q;
  cr_assert_eq(model_load(&lm, judge, &err), 0, "%s", err.msg);
  cr_assert_eq(tok_load(&gt, judge, &err), 0, "%s", err.msg);
  cr_assert_eq(tok_load(&tt, model, &err), 0, "%s", err.msg);
  cr_assert_eq(met_ppl_gen(lm, gt, (const char *const *)prompts, (const char *const *)conts, n,
                           NULL, &p, NULL, &err),
               0, "%s", err.msg);
  cr_assert_eq(met_ppl_gen(lm, tt, (const char *const *)prompts, (const char *const *)conts, n,
                           NULL, &q, NULL, &err),
               0, "%s", err.msg);
  cr_log_info("ppl_gen %.4f: GPT-2's tokenizer %.4f, the T5's SentencePiece ids %.4f", pg, p.ppl,
              q.ppl);
  cr_expect_float_eq(pg, p.ppl, 1e-9 * p.ppl, "ppl_gen %.10g, expected %.10g", pg, p.ppl);
  cr_expect_gt(fabs(q.ppl - p.ppl), 1e-3 * p.ppl, "the two tokenizers gave the same ppl_gen");
  for (size_t i = 0; i < n; i++)
    free(prompts[i]), free(conts[i]);
  tok_free(gt), tok_free(tt), model_free(lm);
  cJSON_Delete(ev);
  ts_rmtree(dir);
}
