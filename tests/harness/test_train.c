#include "harness/task.h"
#include "tests/support/support.h"
#include "trainer/gpt2.h"
#include "trainer/model.h"
#include "trainer/optim.h"
#include "trainer/rdec.h"
#include "trainer/tok.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <glob.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];

/* A base model for the synthetic task, made the way a suite makes one: the
 * language's documents as a corpus, a byte-level BPE trained on it, and a
 * tiny GPT-2 pretrained on it for 150 steps, written to base.ckpt and tok/
 * under out. */
static void pretrain_base(const char *out) {
  task t;
  dfpo_err err;
  task_synth_params p = task_synth_defaults();
  p.n[TASK_TRAIN] = 200;
  p.n[TASK_VALIDATION] = p.n[TASK_TEST] = 8;
  cr_assert_eq(task_synth_init(&t, &p, &err), 0, "%s", err.msg);
  char corpus[300], tokdir[300], ckpt[300];
  snprintf(corpus, sizeof corpus, "%s/corpus.txt", out);
  snprintf(tokdir, sizeof tokdir, "%s/tok", out);
  snprintf(ckpt, sizeof ckpt, "%s/base.ckpt", out);
  cr_assert_eq(task_write_corpus(&t, TASK_TRAIN, corpus, &err), 0, "%s", err.msg);
  const char *files[1] = {corpus};
  cr_assert_eq(tok_train(files, 1, 320, tokdir, NULL, &err), 0, "%s", err.msg);
  tok_tokenizer *tok;
  cr_assert_eq(tok_load(&tok, tokdir, &err), 0, "%s", err.msg);
  /* the corpus as one token stream, documents separated by end-of-text */
  size_t cap = 1 << 20, n = 0;
  int *stream = malloc(sizeof(int) * cap);
  for (size_t i = 0; i < t.n[TASK_TRAIN]; i++) {
    tok_ids v = {0};
    const char *s = t.items[TASK_TRAIN][i].reference;
    cr_assert_eq(tok_encode(tok, s, strlen(s), 0, &v, &err), 0);
    for (size_t k = 0; k < v.n && n < cap - 1; k++)
      stream[n++] = v.ids[k];
    stream[n++] = tok_eot_id(tok);
    tok_ids_free(&v);
  }
  gpt2_config c = {2, 2, 64, (int)tok_vocab_size(tok), 128, MODEL_HEAD_NONE, 0};
  model_t *m;
  cr_assert_eq(gpt2_new(&m, &c, &err), 0, "%s", err.msg);
  model_init_random(m, 1);
  enum { B = 16, T = 64 };
  int tokens[B * T], targets[B * T];
  dfpo_rng rng;
  dfpo_rng_init(&rng, 1, DFPO_STREAM_DATA);
  opt_adamw opt = opt_adamw_default();
  float loss = 0, first = 0;
  for (int step = 0; step < 150; step++) {
    for (int b = 0; b < B; b++) {
      size_t off = dfpo_rng_below(&rng, (uint32_t)(n - T - 1));
      for (int j = 0; j < T; j++) {
        tokens[b * T + j] = stream[off + j];
        targets[b * T + j] = stream[off + j + 1];
      }
    }
    model_zero_grad(m);
    cr_assert_eq(model_lm_loss_rows(m, tokens, targets, NULL, B, T, 1, &loss, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(opt_adamw_step(m, &opt, 3e-3f, NULL, &err), 0);
    if (step == 0)
      first = loss;
  }
  /* ln(320) = 5.77 at the start; measured 3.99 after 150 steps */
  cr_assert_lt(loss, first - 1.0f, "pretraining learns: %g -> %g", first, loss);
  cr_assert_eq(model_save(m, ckpt, 0, &err), 0, "%s", err.msg);
  model_free(m);
  tok_free(tok);
  free(stream);
  task_free(&t);
}

/* Every test gets its own folder, dir, for its runs, and the base model as
 * dir/base.ckpt and dir/tok. Pretraining it is most of a cell's time under
 * the sanitizers (21 s of 30), so CTest makes it once: the fixture test
 * harness/test_train/the_base_pretrains runs with DFPO_TEST_TRAIN_BASE set
 * to a folder and DFPO_TEST_TRAIN_BASE_WRITE=1, pretrains there (into a
 * temporary folder renamed into place, so a failed run leaves no half base)
 * and the other tests, with DFPO_TEST_TRAIN_BASE alone, link dir/base.ckpt
 * and dir/tok to it. Without the variable (the test executable run by
 * hand) each test pretrains its own. */
static void make_base(void) {
  ts_tmpdir(dir, sizeof dir);
  const char *shared = getenv("DFPO_TEST_TRAIN_BASE");
  if (!shared || !*shared) {
    pretrain_base(dir);
    return;
  }
  char ckpt[600], tokdir[600], link[300];
  if (getenv("DFPO_TEST_TRAIN_BASE_WRITE")) {
    char stage[600];
    snprintf(stage, sizeof stage, "%s.tmp-%ld", shared, (long)getpid());
    ts_rmtree(stage);
    cr_assert_eq(mkdir(stage, 0755), 0, "%s: cannot create", stage);
    pretrain_base(stage);
    ts_rmtree(shared);
    cr_assert_eq(rename(stage, shared), 0, "%s -> %s", stage, shared);
  }
  snprintf(ckpt, sizeof ckpt, "%s/base.ckpt", shared);
  snprintf(tokdir, sizeof tokdir, "%s/tok", shared);
  cr_assert_eq(access(ckpt, R_OK), 0,
               "%s missing: DFPO_TEST_TRAIN_BASE names the base that the test "
               "train/the_base_pretrains writes (CTest runs it first)",
               ckpt);
  snprintf(link, sizeof link, "%s/base.ckpt", dir);
  cr_assert_eq(symlink(ckpt, link), 0, "%s", link);
  snprintf(link, sizeof link, "%s/tok", dir);
  cr_assert_eq(symlink(tokdir, link), 0, "%s", link);
}

static void remove_base(void) {
  if (!getenv("DFPO_KEEP_TEST_FILES"))
    ts_rmtree(dir);
}

TestSuite(train, .init = make_base, .fini = remove_base, .timeout = 600);

/* One cell under out_name; extra: one or two more --set values, separated
 * by a space (may be NULL); stop: the --stop-after value (NULL: none). */
/* the stderr of the last run_cell_x */
static char *last_err;
/* the base model run_cell_x trains (NULL: the suite's GPT-2, base.ckpt) */
static const char *base_model;

/* a second --set of run_cell_x (NULL: none) */
static const char *extra2;
static void run_cell_x(const char *algo, const char *iterations, const char *out_name,
                       const char *extra, const char *stop) {
  char model[300], tok[300], out[300], it[64], extra1[200], *extra1b = NULL;
  /* extra may hold two settings separated by a space */
  snprintf(extra1, sizeof extra1, "%s", extra ? extra : "train.epochs=2");
  if ((extra1b = strchr(extra1, ' ')))
    *extra1b++ = '\0';
  snprintf(model, sizeof model, "%s/%s", dir, base_model ? base_model : "base.ckpt");
  snprintf(tok, sizeof tok, "%s/tok", dir);
  snprintf(out, sizeof out, "%s/%s", dir, out_name);
  snprintf(it, sizeof it, "train.iterations=%s", iterations);
  ts_run r;
  ts_dfpo(&r, "train", "--task", "synthetic", "--algo", algo, "--seed", "3", "--out", out,
          "--model", model, "--tokenizer", tok, "--set", it, "--set", "train.batch_size=8", "--set",
          "train.minibatch=8", "--set", "train.epochs=2", "--set", "train.lr=1e-4", "--set",
          "train.eval_every=2", "--set", "generation.max_new_tokens=16", "--set",
          "generation.min_new_tokens=4", "--set", "task.synthetic.n_train=64", "--set",
          "task.synthetic.n_validation=8", "--set", "task.synthetic.n_test=12", "--set", extra1,
          "--set", extra1b ? extra1b : "train.epochs=2", "--set",
          extra2 ? extra2 : "train.epochs=2", stop ? "--stop-after" : NULL, stop, NULL);
  cr_assert_eq(r.status, 0, "%s", r.err);
  free(last_err);
  last_err = strdup(r.err ? r.err : "");
  ts_run_free(&r);
}

static void run_cell(const char *algo, const char *iterations) {
  run_cell_x(algo, iterations, "runs", NULL, NULL);
}

/* The N of the last run's "<what> N bytes" line. */
static size_t logged_bytes(const char *what) {
  const char *p = strstr(last_err, what);
  cr_assert_not_null(p, "no '%s' in: %s", what, last_err);
  return (size_t)strtoull(p + strlen(what), NULL, 10);
}

/* The suite's base model (make_base: GPT-2, L = 2 layers, C = 64, V = 320
 * tokens, n_ctx = 128) by hand: P = V C + n_ctx C + L (12 C^2 + 13 C) + 2 C
 * = 20480 + 8192 + 2 (49152 + 832) + 128 = 128,768 parameters, 515,072
 * bytes; LoRA of rank r = 4 on its four linears has per layer r (C + 3C)
 * + r (C + C) + r (C + 4C) + r (4C + C) = 16 r C = 4,096 parameters,
 * P_a = 8,192, 32,768 bytes. */
#define BASE_BYTES 515072u
#define ADAPTER_BYTES 32768u

/* The val_ppl_ref values of a train.jsonl, in order (at most max). */
static int val_ppl_refs(const char *path, double *v, int max) {
  char *log = ts_slurp(path);
  int n = 0;
  for (char *line = strtok(log, "\n"); line && n < max; line = strtok(NULL, "\n")) {
    cJSON *o = cJSON_Parse(line);
    const cJSON *x = cJSON_GetObjectItem(o, "val_ppl_ref");
    if (cJSON_IsNumber(x))
      v[n++] = x->valuedouble;
    cJSON_Delete(o);
  }
  free(log);
  return n;
}

static void a_stopped_run_resumes_to_the_same_numbers(const char *algo, const char *extra);
static void beam_evaluation_is_generates(void);

/* The RL cells and zero-shot, and a stopped NLPO run resumed. SFT, whose
 * epochs cost the most, is a test of its own (sft_learns_and_resumes, its
 * own CTest test) so that neither comes near its time limit under the
 * sanitizers; each makes its base model (the suite's init runs per test). */
/* The suite's base itself (make_base): pretraining learns. The other
 * tests train from it; CTest runs this one first, as their fixture. */
Test(train, the_base_pretrains) {
  char log[300];
  snprintf(log, sizeof log, "%s/base.ckpt", dir);
  model_t *m;
  dfpo_err err;
  cr_assert_eq(model_load(&m, log, &err), 0, "%s", err.msg);
  cr_expect_eq(model_step_count(m), 150);
  model_free(m);
}

Test(train, cells_write_their_run_folders) {
  run_cell("ppo", "4");
  char p[512];
  snprintf(p, sizeof p, "%s/runs/default/synthetic/ppo/seed-3", dir);
  char f[600];
  const char *files[] = {"config.json",   "train.jsonl",          "eval.json",
                         "samples.jsonl", "checkpoint/best.ckpt", "DONE"};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    snprintf(f, sizeof f, "%s/%s", p, files[i]);
    cr_expect_eq(access(f, F_OK), 0, "%s missing", f);
  }
  /* train.jsonl: iterations 0..4, validation at 0, 2, 4 */
  snprintf(f, sizeof f, "%s/train.jsonl", p);
  char *log = ts_slurp(f);
  int lines = 0, vals = 0;
  for (char *s = log; (s = strchr(s, '\n')); s++)
    lines++;
  for (char *s = log; (s = strstr(s, "\"val_reward\"")); s++)
    vals++;
  cr_expect_eq(lines, 5, "%s", log);
  cr_expect_eq(vals, 3, "%s", log);
  cr_expect(strstr(log, "\"kl_seq\"") && strstr(log, "\"policy_loss\""), "%s", log);
  /* issue 22, "training you can watch": every line has its UTC time, the
   * iteration's seconds and the run's; RL lines the learning rate (train.lr
   * 1e-4, constant) and the policy's entropy, a number in (0, ln V] */
  {
    int n = 0;
    char *save = NULL;
    for (char *ln = strtok_r(log, "\n", &save); ln; ln = strtok_r(NULL, "\n", &save), n++) {
      cJSON *o = cJSON_Parse(ln);
      cr_assert_not_null(o, "%s", ln);
      const cJSON *tm = cJSON_GetObjectItem(o, "time");
      int Y, M, D, h, mi, sec;
      char z = 0;
      cr_expect(cJSON_IsString(tm) &&
                    sscanf(tm->valuestring, "%4d-%2d-%2dT%2d:%2d:%2d%c", &Y, &M, &D, &h, &mi, &sec,
                           &z) == 7 &&
                    z == 'Z' && Y >= 2024 && M >= 1 && M <= 12,
                "line %d: time %s", n, cJSON_IsString(tm) ? tm->valuestring : "(none)");
      const cJSON *its = cJSON_GetObjectItem(o, "iteration_s"),
                  *el = cJSON_GetObjectItem(o, "elapsed_s");
      cr_expect(cJSON_IsNumber(its) && its->valuedouble >= 0 && cJSON_IsNumber(el) &&
                    el->valuedouble >= its->valuedouble - 1e-6,
                "line %d: iteration_s/elapsed_s", n);
      if (n < 4) { /* iterations 0..3 train; 4 only validates */
        const cJSON *lr = cJSON_GetObjectItem(o, "lr"), *en = cJSON_GetObjectItem(o, "entropy");
        cr_expect(cJSON_IsNumber(lr) && fabs(lr->valuedouble - 1e-4) < 1e-9, "line %d: lr", n);
        cr_expect(cJSON_IsNumber(en) && en->valuedouble > 0 &&
                      en->valuedouble < 13.8155, /* ln 1e6 */
                  "line %d: entropy", n);
      }
      cJSON_Delete(o);
    }
    cr_expect_eq(n, 5);
  }
  free(log);
  /* TensorBoard's event file beside it (its format: test_tb_events.c): one
   * file, a record per iteration after the file_version one */
  {
    DIR *d = opendir(p);
    struct dirent *de;
    int nev = 0;
    long size = 0;
    while (d && (de = readdir(d)))
      if (!strncmp(de->d_name, "events.out.tfevents.", 20)) {
        char ef[900];
        snprintf(ef, sizeof ef, "%s/%s", p, de->d_name);
        struct stat st;
        if (stat(ef, &st) == 0)
          size = (long)st.st_size;
        nev++;
      }
    if (d)
      closedir(d);
    cr_expect_eq(nev, 1, "event files in %s", p);
    cr_expect_gt(size, 6 * 16, "the event file holds %ld bytes", size);
  }
  /* the console: a line an iteration with reward, KL, seconds and the time
   * left as h:mm:ss, and a closing line naming the results */
  cr_expect(strstr(last_err, "train: iteration 2 of 4: reward ") &&
                strstr(last_err, " nats/token, ") && strstr(last_err, ", left "),
            "%s", last_err);
  const char *left = strstr(last_err, ", left ");
  int hh, mm, ss;
  cr_expect(left && sscanf(left, ", left %d:%2d:%2d", &hh, &mm, &ss) == 3 && hh >= 0 && mm < 60 &&
                ss < 60,
            "time left as h:mm:ss: %s", left ? left : last_err);
  cr_expect(strstr(last_err, "train: done in ") && strstr(last_err, "/eval.json"), "%s", last_err);
  /* eval.json: the task's metrics over the 12 test prompts */
  snprintf(f, sizeof f, "%s/eval.json", p);
  char *ev = ts_slurp(f);
  cJSON *o = cJSON_Parse(ev);
  cr_assert_not_null(o, "%s", ev);
  cJSON *m = cJSON_GetObjectItem(o, "metrics");
  double reward = cJSON_GetObjectItem(m, "reward")->valuedouble;
  double nll = cJSON_GetObjectItem(m, "nll_word")->valuedouble;
  cr_expect(reward > 0 && reward < 1, "reward %g", reward);
  cr_expect(nll > 0 && nll < 20, "nll_word %g in %s", nll, f);
  cr_expect_eq(cJSON_GetObjectItem(o, "test_prompts")->valueint, 12);
  cJSON_Delete(o);
  free(ev);
  snprintf(f, sizeof f, "%s/samples.jsonl", p);
  char *sm = ts_slurp(f);
  lines = 0;
  for (char *s = sm; (s = strchr(s, '\n')); s++)
    lines++;
  cr_expect_eq(lines, 12);
  cr_expect(strstr(sm, "\"continuation\"") != NULL);
  free(sm);

  run_cell("dfpo", "2");
  /* Each validation also gives the perplexity of the validation references
   * (met_ppl_ref, held to PyTorch in test_ppl_engine.c): at iteration 0
   * every algorithm has the base model, so PPO and DfPO agree there to the
   * last digit; PPO's updates move it by iteration 4. */
  double pp[8], pd[8];
  snprintf(f, sizeof f, "%s/train.jsonl", p);
  cr_expect_eq(val_ppl_refs(f, pp, 8), 3);
  snprintf(f, sizeof f, "%s/runs/default/synthetic/dfpo/seed-3/train.jsonl", dir);
  cr_expect_eq(val_ppl_refs(f, pd, 8), 2);
  cr_expect(pp[0] > 1 && isfinite(pp[0]), "%g", pp[0]);
  cr_expect_eq(pp[0], pd[0], "%.17g vs %.17g", pp[0], pd[0]);
  cr_expect_neq(pp[2], pp[0], "%.17g", pp[2]);
  run_cell_x("dfpo", "2", "runs-theta", "dfpo.eval_policy=theta", NULL);
  snprintf(f, sizeof f, "%s/runs-theta/default/synthetic/dfpo/seed-3/eval.json", dir);
  cr_expect_eq(access(f, F_OK), 0);
  run_cell_x("dfpo", "2", "runs-upd", "dfpo.mask_at=update", NULL);
  snprintf(f, sizeof f, "%s/runs-upd/default/synthetic/dfpo/seed-3/DONE", dir);
  cr_expect_eq(access(f, F_OK), 0);
  run_cell_x("nlpo", "4", "runs", "nlpo.mask_refresh=3", NULL);
  /* without LoRA the mask model is a whole copy of the policy: 4P bytes */
  cr_expect_eq(logged_bytes("NLPO's mask model holds "), BASE_BYTES);
  snprintf(f, sizeof f, "%s/runs/default/synthetic/nlpo/seed-3/train.jsonl", dir);
  log = ts_slurp(f);
  cr_expect(strstr(log, "\"mask_mean\"") != NULL, "%s", log);
  free(log);
  run_cell("zero-shot", "0");
  snprintf(f, sizeof f, "%s/runs/default/synthetic/dfpo/seed-3/DONE", dir);
  cr_expect_eq(access(f, F_OK), 0);
  snprintf(f, sizeof f, "%s/runs/default/synthetic/zero-shot/seed-3/eval.json", dir);
  cr_expect_eq(access(f, F_OK), 0);
  a_stopped_run_resumes_to_the_same_numbers("nlpo", "nlpo.mask_refresh=3");
  beam_evaluation_is_generates();
}

/* eval.num_beams: the test samples of a zero-shot run are what `dfpo
 * generate --beams` makes of the same prompts (their last
 * task.max_prompt_tokens = 64 tokens, as the run truncates them) with the
 * same model, batch size (so the same padded widths) and lengths. */
static void beam_evaluation_is_generates(void) {
  run_cell_x("zero-shot", "0", "runs-beam", "eval.num_beams=3", NULL);
  char f[600], prompts[600], model[300], tok[300];
  snprintf(f, sizeof f, "%s/runs-beam/default/synthetic/zero-shot/seed-3/samples.jsonl", dir);
  snprintf(prompts, sizeof prompts, "%s/beam-prompts.txt", dir);
  snprintf(model, sizeof model, "%s/base.ckpt", dir);
  snprintf(tok, sizeof tok, "%s/tok", dir);
  char *sm = ts_slurp(f), *save = NULL;
  char *conts[12];
  int n = 0;
  FILE *fp = fopen(prompts, "w");
  cr_assert_not_null(fp);
  tok_tokenizer *tk;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(tok_load(&tk, tok, &err), 0, "%s", err.msg);
  for (char *ln = strtok_r(sm, "\n", &save); ln && n < 12; ln = strtok_r(NULL, "\n", &save)) {
    cJSON *o = cJSON_Parse(ln);
    cr_assert_not_null(o, "%s", ln);
    cr_assert_eq(cJSON_GetObjectItem(o, "index")->valueint, n);
    const char *pr = ts_json_str(o, "prompt");
    cr_assert_not_null(pr, "%s", ln);
    tok_ids v = {0};
    cr_assert_eq(tok_encode(tk, pr, strlen(pr), 0, &v, &err), 0, "%s", err.msg);
    for (size_t t = v.n > 64 ? v.n - 64 : 0; t < v.n; t++)
      fprintf(fp, "%d ", (int)v.ids[t]);
    fputc('\n', fp);
    tok_ids_free(&v);
    conts[n++] = strdup(ts_json_str(o, "continuation"));
    cJSON_Delete(o);
  }
  fclose(fp);
  free(sm);
  tok_free(tk);
  cr_assert_eq(n, 12);
  ts_run r;
  ts_dfpo(&r, "generate", "--model", model, "--tokenizer", tok, "--tokens", prompts, "--beams", "3",
          "--max-new", "16", "--min-new", "4", "--batch", "8", NULL);
  cr_assert_eq(r.status, 0, "%s", r.err);
  save = NULL;
  int i = 0, differ = 0;
  for (char *ln = strtok_r(r.out, "\n", &save); ln && i < n; ln = strtok_r(NULL, "\n", &save)) {
    cJSON *o = cJSON_Parse(ln);
    cr_assert_not_null(o, "%s", ln);
    cr_expect_str_eq(ts_json_str(o, "text"), conts[i], "prompt %d", i);
    differ += i > 0 && strcmp(conts[i], conts[0]) != 0;
    cJSON_Delete(o);
    i++;
  }
  cr_expect_eq(i, n);
  for (int j = 0; j < n; j++)
    free(conts[j]);
  cr_expect_gt(differ, 0, "every prompt got the same continuation");
  ts_run_free(&r);
}

/* SFT: the cross-entropy on the training references falls from epoch to
 * epoch, the run folder is the others', and a stopped run resumes. */
Test(train, sft_learns_and_resumes) {
  run_cell_x("sft", "4", "runs", "train.lr=1e-3", NULL);
  char f[600];
  snprintf(f, sizeof f, "%s/runs/default/synthetic/sft/seed-3/train.jsonl", dir);
  char *log = ts_slurp(f);
  double loss[4];
  int n = 0;
  for (char *s = log; n < 4 && (s = strstr(s, "\"loss\":")); s++)
    loss[n++] = strtod(s + 7, NULL);
  cr_assert_eq(n, 4, "%s", log);
  cr_expect_lt(loss[3], loss[0], "%s", log);
  free(log);
  snprintf(f, sizeof f, "%s/runs/default/synthetic/sft/seed-3/eval.json", dir);
  cr_expect_eq(access(f, F_OK), 0);
  a_stopped_run_resumes_to_the_same_numbers("sft", "train.lr=1e-3");
}

/* A train.jsonl without its clock readings (time, iteration_s, elapsed_s),
 * which differ from run to run; every other key as written. */
static char *without_clock(char *text) {
  size_t cap = strlen(text) + 1, len = 0;
  char *out = malloc(cap), *save = NULL;
  out[0] = '\0';
  for (char *ln = strtok_r(text, "\n", &save); ln; ln = strtok_r(NULL, "\n", &save)) {
    cJSON *o = cJSON_Parse(ln);
    cr_assert_not_null(o, "%s", ln);
    cJSON_DeleteItemFromObject(o, "time");
    cJSON_DeleteItemFromObject(o, "iteration_s");
    cJSON_DeleteItemFromObject(o, "elapsed_s");
    char *p = cJSON_PrintUnformatted(o);
    size_t pl = strlen(p);
    cr_assert(len + pl + 2 <= cap);
    memcpy(out + len, p, pl);
    len += pl;
    out[len++] = '\n';
    out[len] = '\0';
    free(p);
    cJSON_Delete(o);
  }
  free(text);
  return out;
}

static void expect_same_file(const char *a_dir, const char *b_dir, const char *name) {
  char fa[600], fb[600];
  snprintf(fa, sizeof fa, "%s/%s/default/synthetic/%s", dir, a_dir, name);
  snprintf(fb, sizeof fb, "%s/%s/default/synthetic/%s", dir, b_dir, name);
  char *a = ts_slurp(fa), *b = ts_slurp(fb);
  if (strstr(name, "train.jsonl")) {
    a = without_clock(a);
    b = without_clock(b);
  }
  cr_expect_str_eq(a, b, "%s and %s differ", fa, fb);
  free(a);
  free(b);
}

/* A run of algo stopped after 3 of 4 iterations (its last resumable
 * checkpoint is at 2, so the resumed run cuts train.jsonl back and replays
 * iteration 2) ends with the numbers of the uninterrupted run of the same
 * settings under "runs", bit for bit: NLPO with a mask model refreshed
 * every 3 iterations (so the checkpoint's mask model is not the policy),
 * and SFT (its data stream). */
static void stop_after_3(const char *algo, const char *extra) {
  run_cell_x(algo, "4", "resumed", extra, "3");
}
static void resume_to_the_same_numbers(const char *algo, const char *extra) {
  char f[600];
  snprintf(f, sizeof f, "%s/resumed/default/synthetic/%s/seed-3/DONE", dir, algo);
  cr_expect_neq(access(f, F_OK), 0, "a stopped run is not done");
  snprintf(f, sizeof f, "%s/resumed/default/synthetic/%s/seed-3/checkpoint/resume/state.json", dir,
           algo);
  cr_expect_eq(access(f, F_OK), 0, "%s missing", f);
  run_cell_x(algo, "4", "resumed", extra, NULL);
  char name[100];
  snprintf(name, sizeof name, "%s/seed-3/train.jsonl", algo);
  expect_same_file("runs", "resumed", name);
  snprintf(name, sizeof name, "%s/seed-3/eval.json", algo);
  expect_same_file("runs", "resumed", name);
  snprintf(name, sizeof name, "%s/seed-3/samples.jsonl", algo);
  expect_same_file("runs", "resumed", name);
  cr_expect_neq(access(f, F_OK), 0, "a finished run keeps no resumable checkpoint");
}
static void a_stopped_run_resumes_to_the_same_numbers(const char *algo, const char *extra) {
  stop_after_3(algo, extra);
  resume_to_the_same_numbers(algo, extra);
}

/* What the models of the last run_cell_x held after training (its log). */
static size_t models_bytes(void) {
  const char *key = "train: the models hold ";
  const char *p = strstr(last_err, key);
  cr_assert_not_null(p, "%s", last_err);
  return (size_t)strtoull(p + strlen(key), NULL, 10);
}

/* eval.json's "memory" object of a run under out_name. */
static cJSON *memory_of(const char *out_name, const char *algo) {
  char f[600];
  snprintf(f, sizeof f, "%s/%s/default/synthetic/%s/seed-3/eval.json", dir, out_name, algo);
  char *text = ts_slurp(f);
  cJSON *o = cJSON_Parse(text);
  free(text);
  cr_assert_not_null(cJSON_GetObjectItem(o, "memory"), "%s has no memory object", f);
  return o;
}

/* The first n values of "key": in a train.jsonl. */
static int log_file_values(const char *path, const char *key, double *v, int n) {
  char *log = ts_slurp(path), pat[64];
  snprintf(pat, sizeof pat, "\"%s\":", key);
  int k = 0;
  for (char *s = log; k < n && (s = strstr(s, pat)); s++)
    v[k++] = strtod(s + strlen(pat), NULL);
  free(log);
  return k;
}

/* The kl_seq or value_loss values of a cell's train.jsonl, in order. */
static int log_values(const char *out_name, const char *algo, const char *key, double *v, int max) {
  char f[600];
  snprintf(f, sizeof f, "%s/%s/default/synthetic/%s/seed-3/train.jsonl", dir, out_name, algo);
  return log_file_values(f, key, v, max);
}

/* model.value_model=shared (the value head on the policy's trunk, issue 21
 * item 3): PPO learns with it on the synthetic task (the first
 * iteration's KL to the reference is 0, later ones are not: the policy
 * moved; the value loss falls from the first iteration to the last: the
 * head and trunk fit the returns), eval.json says what was used, a stopped
 * run resumes bit for bit (the policy checkpoint carries the head and its
 * AdamW moments; there is no value checkpoint), and the models hold fewer
 * bytes than with a separate value model. With
 * model.activation_checkpointing too, the run is the same number for number
 * (the gradients are bit-identical) and holds fewer bytes still. (NLPO,
 * DfPO and zero-shot: shared_value_head_in_nlpo_dfpo_and_zero_shot; with
 * LoRA: shared_value_head_with_lora; each its own CTest test, within the
 * time limit under the sanitizers.) */
Test(train, shared_value_head_learns_resumes_and_holds_less) {
  run_cell_x("ppo", "4", "separate", NULL, NULL);
  size_t separate = models_bytes();
  run_cell_x("ppo", "4", "runs", "model.value_model=shared", NULL);
  size_t shared = models_bytes();
  cr_expect_lt(shared, separate, "shared holds %zu bytes, separate %zu", shared, separate);
  cr_log_info("ppo models after training: %zu bytes with a separate value model, %zu shared",
              separate, shared);
  double kl[8], vl[8];
  cr_assert_eq(log_values("runs", "ppo", "kl_seq", kl, 8), 4);
  cr_expect_eq(kl[0], 0.0, "the first iteration's KL is not 0");
  cr_expect_neq(kl[3], 0.0, "the policy did not move");
  cr_assert_eq(log_values("runs", "ppo", "value_loss", vl, 8), 4);
  cr_expect_lt(vl[3], vl[0], "value loss %g at iteration 0, %g at 3", vl[0], vl[3]);
  cJSON *o = memory_of("runs", "ppo");
  const cJSON *mem = cJSON_GetObjectItem(o, "memory");
  cr_expect_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(mem, "value_model")), "shared");
  cr_expect(cJSON_IsFalse(cJSON_GetObjectItem(mem, "activation_checkpointing")));
  cr_expect_eq(cJSON_GetNumberValue(cJSON_GetObjectItem(mem, "lora_rank")), 0);
  cr_expect_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(mem, "reference_dtype")), "f32");
  cJSON_Delete(o);
  o = memory_of("separate", "ppo");
  cr_expect_str_eq(
      cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "memory"), "value_model")),
      "separate");
  cJSON_Delete(o);
  a_stopped_run_resumes_to_the_same_numbers("ppo", "model.value_model=shared");
  /* checkpointing: the same run, fewer bytes */
  extra2 = "model.activation_checkpointing=true";
  run_cell_x("ppo", "4", "ckpt", "model.value_model=shared", NULL);
  size_t ckpt = models_bytes();
  extra2 = NULL;
  cr_expect_lt(ckpt, shared, "checkpointed %zu bytes, shared %zu", ckpt, shared);
  cr_log_info("ppo, shared value head, with activation checkpointing: %zu bytes", ckpt);
  expect_same_file("runs", "ckpt", "ppo/seed-3/train.jsonl");
  expect_same_file("runs", "ckpt", "ppo/seed-3/samples.jsonl");
  o = memory_of("ckpt", "ppo");
  cr_expect(cJSON_IsTrue(
      cJSON_GetObjectItem(cJSON_GetObjectItem(o, "memory"), "activation_checkpointing")));
  cJSON_Delete(o);
}

/* NLPO (its mask model a clone of the policy, head and all) and DfPO train
 * with the value head on the policy's trunk (a finite, positive value
 * loss); zero-shot has no value model, so the setting changes nothing and
 * eval.json says "none". */
Test(train, shared_value_head_in_nlpo_dfpo_and_zero_shot) {
  double vl[8];
  cJSON *o;
  const char *others[2] = {"nlpo", "dfpo"};
  for (int a = 0; a < 2; a++) {
    run_cell_x(others[a], "2", "runs", "model.value_model=shared", NULL);
    cr_assert_eq(log_values("runs", others[a], "value_loss", vl, 8), 2);
    cr_expect(isfinite(vl[0]) && vl[0] > 0, "%s: value loss %g", others[a], vl[0]);
  }
  /* zero-shot has no value model: the setting changes nothing */
  run_cell_x("zero-shot", "0", "runs", "model.value_model=shared", NULL);
  o = memory_of("runs", "zero-shot");
  cr_expect_str_eq(
      cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "memory"), "value_model")),
      "none");
  cJSON_Delete(o);
}

/* The value head on a LoRA policy's trunk: the adapters and a trainable
 * copy of the head train together (the value loss's gradient reaches the
 * trunk through the adapters only). PPO learns (KL 0 at the first
 * iteration, not later), eval.json records both switches, a stopped run
 * resumes bit for bit (the policy checkpoint's LoRA section carries the
 * head's copy and its moments), and the models hold fewer bytes than LoRA
 * with a separate value model. */
Test(train, shared_value_head_with_lora) {
  extra2 = "model.lora_rank=4";
  run_cell_x("ppo", "4", "lora-separate", NULL, NULL);
  size_t separate = models_bytes();
  run_cell_x("ppo", "4", "runs", "model.value_model=shared", NULL);
  size_t shared = models_bytes();
  cr_expect_lt(shared, separate, "LoRA: shared holds %zu bytes, separate %zu", shared, separate);
  cr_log_info("ppo with LoRA rank 4, models after training: %zu bytes with a separate value "
              "model, %zu shared",
              separate, shared);
  double kl[8];
  cr_assert_eq(log_values("runs", "ppo", "kl_seq", kl, 8), 4);
  cr_expect_eq(kl[0], 0.0, "the first iteration's KL is not 0");
  cr_expect_neq(kl[3], 0.0, "the adapters did not move the policy");
  cJSON *o = memory_of("runs", "ppo");
  const cJSON *mem = cJSON_GetObjectItem(o, "memory");
  cr_expect_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(mem, "value_model")), "shared");
  cr_expect_eq(cJSON_GetNumberValue(cJSON_GetObjectItem(mem, "lora_rank")), 4);
  cJSON_Delete(o);
  a_stopped_run_resumes_to_the_same_numbers("ppo", "model.value_model=shared");
  extra2 = NULL;
}

/* `dfpo train --algo ppo` over a rotary decoder: a random tiny Llama
 * (grouped-query attention, tied embeddings) of the suite tokenizer's
 * vocabulary, as a native checkpoint, trains on the synthetic task, writes
 * its run folder, and a run stopped after 3 iterations resumes to the same
 * train.jsonl, eval.json and samples.jsonl as the unbroken run. */
Test(train, ppo_over_a_tiny_llama) {
  char tokdir[300], ckpt[300];
  snprintf(tokdir, sizeof tokdir, "%s/tok", dir);
  snprintf(ckpt, sizeof ckpt, "%s/llama.ckpt", dir);
  tok_tokenizer *tok;
  dfpo_err err;
  cr_assert_eq(tok_load(&tok, tokdir, &err), 0, "%s", err.msg);
  rdec_config c = {.family = RDEC_LLAMA,
                   .vocab_size = (int)tok_vocab_size(tok),
                   .n_embd = 32,
                   .n_layer = 2,
                   .n_head = 4,
                   .n_kv_head = 2,
                   .head_dim = 8,
                   .d_ff = 64,
                   .n_ctx = 128,
                   .rot = 8,
                   .rope_base = 10000.0f,
                   .eps = 1e-5f,
                   .rmsnorm = 1,
                   .act = RDEC_ACT_SWIGLU,
                   .tied = 1};
  tok_free(tok);
  model_t *m;
  cr_assert_eq(rdec_new(&m, &c, &err), 0, "%s", err.msg);
  model_init_random(m, 1);
  cr_assert_eq(model_save(m, ckpt, 0, &err), 0, "%s", err.msg);
  model_free(m);
  base_model = "llama.ckpt";
  run_cell("ppo", "4");
  char f[600];
  const char *files[] = {"train.jsonl", "eval.json", "samples.jsonl", "checkpoint/best.ckpt",
                         "DONE"};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    snprintf(f, sizeof f, "%s/runs/default/synthetic/ppo/seed-3/%s", dir, files[i]);
    cr_expect_eq(access(f, F_OK), 0, "%s missing", f);
  }
  snprintf(f, sizeof f, "%s/runs/default/synthetic/ppo/seed-3/checkpoint/best.ckpt", dir);
  cr_assert_eq(model_load(&m, f, &err), 0, "%s", err.msg);
  cr_expect_str_eq(model_get_config(m)->arch, "llama");
  model_free(m);
  a_stopped_run_resumes_to_the_same_numbers("ppo", NULL);
  base_model = NULL;
}

/* The "train: policy and reference hold N bytes" figure of the last run. */
static size_t held_bytes(void) {
  return logged_bytes("train: policy and reference hold ");
}

/* model.reference_dtype=bf16 (issue 21 item 2): PPO trains against a
 * reference whose embedding and block matrices are kept in bf16. By hand
 * (the base above): 16-bit weights V C + L 12 C^2 = 20480 + 2 49152 =
 * 118,784 (237,568 bytes), the other 128,768 - 118,784 = 9,984 floats
 * (39,936 bytes): the reference holds 277,504 bytes where fp32 holds
 * 515,072, so policy and reference hold 792,576 at setup instead of
 * 1,030,144. The first iteration's KL to the reference is no longer 0 (the
 * policy is the fp32 model, the reference its rounding) but small and
 * finite; eval.json records the dtype (the default's "f32" is checked in
 * shared_value_head_learns_resumes_and_holds_less); with LoRA it is the
 * base the policy and the reference share (lora_with_a_bf16_base). */
Test(train, ppo_with_a_bf16_reference) {
  run_cell_x("ppo", "2", "runs", "model.reference_dtype=bf16", NULL);
  cr_expect_eq(held_bytes(), BASE_BYTES + 277504u, "%s", last_err);
  double kl[4];
  cr_assert_eq(log_values("runs", "ppo", "kl_seq", kl, 4), 2);
  cr_expect(isfinite(kl[0]) && fabs(kl[0]) < 1e-2, "first KL %g", kl[0]);
  cJSON *o = memory_of("runs", "ppo");
  cr_expect_str_eq(cJSON_GetStringValue(
                       cJSON_GetObjectItem(cJSON_GetObjectItem(o, "memory"), "reference_dtype")),
                   "bf16");
  cJSON_Delete(o);
}

/* model.reference_dtype=bf16 with LoRA (model.lora_rank=4): the frozen base
 * the policy and its reference share is kept in bf16, the adapters fp32.
 * Policy and reference hold the base's 277,504 bytes (by hand above) and
 * the adapters' ADAPTER_BYTES, where the fp32 base holds BASE_BYTES +
 * ADAPTER_BYTES. The first iteration's KL is exactly 0 (B = 0: the policy
 * is its reference, both over the same 16-bit base) and later ones are not;
 * eval.json records bf16. PPO and DfPO with a separate value model (made
 * from the fp32 weights before the base goes to 16 bits), and PPO with the
 * value head on the trunk (the base read straight into bf16, the head put
 * on in place: its fp32 65 floats in the base and their trainable copy
 * among the adapters, 2 x 260 bytes more); that run stopped and resumed
 * gives the same numbers bit for bit (its checkpoints hold the base
 * widened, read back into bf16). */
Test(train, lora_with_a_bf16_base) {
  const char *algos[2] = {"dfpo", "ppo"}, *outs[2] = {"runs", "separate16"};
  for (int a = 0; a < 2; a++) {
    run_cell_x(algos[a], "4", outs[a], "model.lora_rank=4 model.reference_dtype=bf16", NULL);
    cr_expect_eq(held_bytes(), 277504u + ADAPTER_BYTES, "%s", last_err);
    double kl[4];
    cr_assert_eq(log_values(outs[a], algos[a], "kl_seq", kl, 4), 4);
    cr_expect_eq(kl[0], 0.0, "%s: the first iteration's KL is not 0", algos[a]);
    cr_expect(isfinite(kl[3]) && kl[3] != 0.0, "%s: the adapters did not move the policy (KL %g)",
              algos[a], kl[3]);
    cJSON *o = memory_of(outs[a], algos[a]);
    const cJSON *mem = cJSON_GetObjectItem(o, "memory");
    cr_expect_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(mem, "reference_dtype")), "bf16");
    cr_expect_eq(cJSON_GetObjectItem(mem, "lora_rank")->valuedouble, 4.0);
    cJSON_Delete(o);
  }
  extra2 = "model.value_model=shared";
  run_cell_x("ppo", "4", "runs", "model.lora_rank=4 model.reference_dtype=bf16", NULL);
  cr_expect_eq(held_bytes(), 277504u + ADAPTER_BYTES + 2 * 260u, "%s", last_err);
  double kl[4];
  cr_assert_eq(log_values("runs", "ppo", "kl_seq", kl, 4), 4);
  cr_expect_eq(kl[0], 0.0, "shared: the first iteration's KL is not 0");
  a_stopped_run_resumes_to_the_same_numbers("ppo", "model.lora_rank=4 model.reference_dtype=bf16");
  extra2 = NULL;
}

/* model.reference_dtype=bf16 over a rotary policy (the tiny Llama of
 * ppo_over_a_tiny_llama: grouped-query, tied): PPO trains against a
 * reference whose qkv, attention output and MLP matrices and embedding are
 * kept in bf16. By hand (width 32, 2 layers, 4 heads and 2 key/value heads
 * of 8, MLP 64, the tokenizer's 320 ids): per layer 32 + (32 + 16 + 16) 32
 * + 32 x 32 + 32 + 128 x 32 + 32 x 64 = 9,280, two layers 18,560, the
 * embedding 10,240, the final norm 32: 28,832 parameters, 115,328 bytes,
 * + the [32] zero position table 128: the fp32 policy holds 115,456. The
 * reference's 16-bit weights per layer 2,048 + 1,024 + 4,096 + 2,048 =
 * 9,216, two layers 18,432, + the embedding 10,240 = 28,672 (57,344
 * bytes), the rest 160 floats + 32 = 192 floats (768 bytes): 58,112
 * bytes; policy and reference 173,568 where fp32 holds 230,912. The first
 * iteration's KL to the reference is small, finite and not 0 (the
 * reference is the policy rounded); eval.json records the dtype. */
Test(train, ppo_with_a_bf16_reference_on_a_rotary_policy) {
  char tokdir[300], ckpt[300];
  snprintf(tokdir, sizeof tokdir, "%s/tok", dir);
  snprintf(ckpt, sizeof ckpt, "%s/llama-half.ckpt", dir);
  tok_tokenizer *tok;
  dfpo_err err;
  cr_assert_eq(tok_load(&tok, tokdir, &err), 0, "%s", err.msg);
  int vocab = (int)tok_vocab_size(tok);
  tok_free(tok);
  cr_assert_eq(vocab, 320);
  rdec_config c = {.family = RDEC_LLAMA,
                   .vocab_size = vocab,
                   .n_embd = 32,
                   .n_layer = 2,
                   .n_head = 4,
                   .n_kv_head = 2,
                   .head_dim = 8,
                   .d_ff = 64,
                   .n_ctx = 128,
                   .rot = 8,
                   .rope_base = 10000.0f,
                   .eps = 1e-5f,
                   .rmsnorm = 1,
                   .act = RDEC_ACT_SWIGLU,
                   .tied = 1};
  model_t *m;
  cr_assert_eq(rdec_new(&m, &c, &err), 0, "%s", err.msg);
  model_init_random(m, 1);
  cr_assert_eq(model_save(m, ckpt, 0, &err), 0, "%s", err.msg);
  model_free(m);
  base_model = "llama-half.ckpt";
  run_cell_x("ppo", "2", "runs", "model.reference_dtype=bf16", NULL);
  cr_expect_eq(held_bytes(), 173568u, "%s", last_err);
  double kl[4];
  cr_assert_eq(log_values("runs", "ppo", "kl_seq", kl, 4), 2);
  cr_expect(isfinite(kl[0]) && fabs(kl[0]) < 1e-2 && kl[0] != 0.0, "first KL %g", kl[0]);
  cr_log_info("llama ppo, bf16 reference: kl_seq %g %g", kl[0], kl[1]);
  cJSON *o = memory_of("runs", "ppo");
  cr_expect_str_eq(cJSON_GetStringValue(
                       cJSON_GetObjectItem(cJSON_GetObjectItem(o, "memory"), "reference_dtype")),
                   "bf16");
  cJSON_Delete(o);
  base_model = NULL;
}

/* The kl_seq values of a cell's train.jsonl (at most 8) into kl. */
static int kl_values(const char *algo, double *kl) {
  char f[600];
  snprintf(f, sizeof f, "%s/runs/default/synthetic/%s/seed-3/train.jsonl", dir, algo);
  char *log = ts_slurp(f);
  int n = 0;
  for (char *s = log; n < 8 && (s = strstr(s, "\"kl_seq\":")); s++)
    kl[n++] = strtod(s + 9, NULL);
  free(log);
  return n;
}

/* LoRA with the value head on the trunk over a tiny Llama (grouped-query
 * attention) and LoRA on two of a tiny GPT-J's layers with a separate value
 * model: dfpo train takes both (issue #21's memory plan for a rotary
 * policy). The first iteration's KL to the reference (the policy's base,
 * shared) is exactly 0 (B = 0) and a later one is not; the best checkpoint
 * loads with its adapters and `dfpo export` writes it merged (a folder of
 * its family that loads again) and as peft's adapter files; a stopped
 * Llama run resumes bit for bit. What the
 * Llama's policy and reference hold, by hand (width 32, 2 layers, 4 heads
 * and 2 key/value heads of 8, MLP 64, the tokenizer's 320 ids, tied): per
 * layer 32 + (32 + 16 + 16) 32 + 32 x 32 + 32 + 128 x 32 + 32 x 64 =
 * 9,280, two layers 18,560, the embedding 10,240, the final norm 32, the
 * value head 33: 28,865 parameters, 115,460 bytes; rank-4 adapters on the
 * seven layers, per layer q 128 + 128, k 128 + 64, v 128 + 64, o 128 + 128,
 * gate 128 + 256, up 128 + 256, down 256 + 128 = 2,048, two layers 4,096,
 * and the head's trainable copy 33: 4,129 parameters, 16,516 bytes; each
 * model's [32] zero position table 128 bytes, the reference's (a view of
 * the policy's base) only that: 115,460 + 16,516 + 128 + 128 = 132,232. */
Test(train, lora_and_shared_value_on_rotary_policies) {
  char tokdir[300], ckpt[300];
  snprintf(tokdir, sizeof tokdir, "%s/tok", dir);
  tok_tokenizer *tok;
  dfpo_err err;
  cr_assert_eq(tok_load(&tok, tokdir, &err), 0, "%s", err.msg);
  int vocab = (int)tok_vocab_size(tok);
  tok_free(tok);
  cr_assert_eq(vocab, 320);
  rdec_config llama = {.family = RDEC_LLAMA,
                       .vocab_size = vocab,
                       .n_embd = 32,
                       .n_layer = 2,
                       .n_head = 4,
                       .n_kv_head = 2,
                       .head_dim = 8,
                       .d_ff = 64,
                       .n_ctx = 128,
                       .rot = 8,
                       .rope_base = 10000.0f,
                       .eps = 1e-5f,
                       .rmsnorm = 1,
                       .act = RDEC_ACT_SWIGLU,
                       .tied = 1};
  rdec_config gptj = {.family = RDEC_GPTJ,
                      .vocab_size = vocab,
                      .n_embd = 32,
                      .n_layer = 2,
                      .n_head = 4,
                      .n_kv_head = 4,
                      .head_dim = 8,
                      .d_ff = 64,
                      .n_ctx = 128,
                      .rot = 4,
                      .interleaved = 1,
                      .rope_base = 10000.0f,
                      .eps = 1e-5f,
                      .parallel = 1,
                      .shared_ln = 1,
                      .act = RDEC_ACT_GELU_TANH,
                      .mlp_bias = 1,
                      .head_bias = 1};
  const rdec_config *cfgs[2] = {&llama, &gptj};
  const char *names[2] = {"llama.ckpt", "gptj.ckpt"};
  const char *algos[2] = {"dfpo", "ppo"};
  const char *extras[2] = {"model.lora_rank=4 model.value_model=shared",
                           "model.lora_rank=4 model.lora_targets=attn.q_proj,attn.v_proj"};
  for (int f = 0; f < 2; f++) {
    model_t *m;
    snprintf(ckpt, sizeof ckpt, "%s/%s", dir, names[f]);
    cr_assert_eq(rdec_new(&m, cfgs[f], &err), 0, "%s", err.msg);
    model_init_random(m, 1);
    cr_assert_eq(model_save(m, ckpt, 0, &err), 0, "%s", err.msg);
    model_free(m);
    base_model = names[f];
    run_cell_x(algos[f], "4", "runs", extras[f], NULL);
    if (f == 0)
      cr_expect_eq(held_bytes(), 132232u, "%s", last_err);
    double kl[8];
    cr_assert_eq(kl_values(algos[f], kl), 4);
    cr_expect_eq(kl[0], 0.0, "%s: the first iteration's KL is %g", names[f], kl[0]);
    cr_expect_neq(kl[3], 0.0, "%s: the adapters did not move the policy", names[f]);
    cr_log_info("%s %s with %s: kl_seq %g %g %g %g", names[f], algos[f], extras[f], kl[0], kl[1],
                kl[2], kl[3]);
    char f2[600];
    snprintf(f2, sizeof f2, "%s/runs/default/synthetic/%s/seed-3/checkpoint/best.ckpt", dir,
             algos[f]);
    cr_assert_eq(model_load(&m, f2, &err), 0, "%s", err.msg);
    cr_expect_eq(model_lora_rank(m), 4);
    cr_expect_str_eq(model_get_config(m)->arch, f ? "gptj" : "llama");
    model_free(m);
    /* dfpo export of the LoRA policy: merged (a plain folder of its family
     * that loads again) and peft's adapter files */
    char out[400], tokd[300], chk[500];
    snprintf(tokd, sizeof tokd, "%s/tok", dir);
    for (int only = 0; only < 2; only++) {
      snprintf(out, sizeof out, "%s/export-%d-%d", dir, f, only);
      ts_run r;
      ts_dfpo(&r, "export", "--model", f2, "--out", out, "--tokenizer", tokd,
              only ? "--adapters-only" : NULL, NULL);
      cr_expect_eq(r.status, 0, "%s", r.err);
      ts_run_free(&r);
      snprintf(chk, sizeof chk, "%s/%s", out,
               only ? "adapter_model.safetensors" : "model.safetensors");
      cr_expect_eq(access(chk, F_OK), 0, "%s missing", chk);
    }
    snprintf(out, sizeof out, "%s/export-%d-0", dir, f);
    cr_assert_eq(model_load(&m, out, &err), 0, "%s", err.msg);
    cr_expect_eq(model_lora_rank(m), 0);
    cr_expect_str_eq(model_get_config(m)->arch, f ? "gptj" : "llama");
    model_free(m);
    if (f == 0) /* the Llama's (the GPT-J's would double the time) */
      a_stopped_run_resumes_to_the_same_numbers(algos[f], extras[f]);
  }
  base_model = NULL;
}

/* LoRA (model.lora_rank) on DfPO and PPO: the adapters start with B = 0, so
 * the first iteration's sampled KL to the reference (the policy's base) is
 * exactly 0 and later ones are not (the adapters learned); config.json
 * records the settings; a stopped run resumes bit for bit (its resume
 * checkpoints carry the adapters and their AdamW moments); and policy plus
 * reference hold less than two full models, since the reference is a view
 * of the policy's base: 4P + 4 P_a bytes (547,840). zero-shot, which trains
 * nothing, is refused. */
Test(train, lora_cells_learn_resume_and_share_the_base) {
  const char *algos[2] = {"dfpo", "ppo"};
  run_cell_x("dfpo", "1", "full", NULL, NULL);
  size_t full = held_bytes();
  for (int a = 0; a < 2; a++) {
    run_cell_x(algos[a], "4", "runs", "model.lora_rank=4", NULL);
    size_t lora = held_bytes();
    cr_expect_lt(lora, full, "%s: LoRA holds %zu bytes, full fine-tuning %zu", algos[a], lora,
                 full);
    char f[600];
    snprintf(f, sizeof f, "%s/runs/default/synthetic/%s/seed-3/train.jsonl", dir, algos[a]);
    char *log = ts_slurp(f);
    double kl[8];
    int n = 0;
    for (char *s = log; n < 8 && (s = strstr(s, "\"kl_seq\":")); s++)
      kl[n++] = strtod(s + 9, NULL);
    cr_assert_eq(n, 4, "%s", log);
    cr_expect_eq(kl[0], 0.0, "%s: the first iteration's KL is not 0: %s", algos[a], log);
    cr_expect_neq(kl[3], 0.0, "%s: the adapters did not move the policy: %s", algos[a], log);
    free(log);
    snprintf(f, sizeof f, "%s/runs/default/synthetic/%s/seed-3/config.json", dir, algos[a]);
    char *text = ts_slurp(f);
    cJSON *o = cJSON_Parse(text);
    const cJSON *mo = cJSON_GetObjectItem(o, "model");
    const cJSON *rank = cJSON_GetObjectItem(mo, "lora_rank");
    cr_expect(cJSON_IsNumber(rank) && rank->valuedouble == 4, "%s", text);
    cr_expect_not_null(cJSON_GetObjectItem(mo, "lora_alpha"), "%s", text);
    cJSON_Delete(o);
    free(text);
    a_stopped_run_resumes_to_the_same_numbers(algos[a], "model.lora_rank=4");
  }
  /* the policy's base plus its adapters; the reference holds no weights */
  cr_expect_eq(held_bytes(), BASE_BYTES + ADAPTER_BYTES);
  char model[300], tok[300], out[300];
  snprintf(model, sizeof model, "%s/base.ckpt", dir);
  snprintf(tok, sizeof tok, "%s/tok", dir);
  snprintf(out, sizeof out, "%s/refused", dir);
  ts_run r;
  ts_dfpo(&r, "train", "--task", "synthetic", "--algo", "zero-shot", "--out", out, "--model", model,
          "--tokenizer", tok, "--set", "model.lora_rank=4", NULL);
  cr_expect_neq(r.status, 0, "zero-shot with LoRA ran");
  cr_expect(r.err && strstr(r.err, "trains nothing"), "%s", r.err ? r.err : "");
  ts_run_free(&r);
}

/* NLPO with LoRA: the mask model is the policy's base (shared) with its own
 * copy of the adapters, so it holds exactly the adapters' bytes (32,768,
 * ADAPTER_BYTES by hand) where the full-model mask holds 4P (515,072,
 * checked in cells_write_their_run_folders); policy and reference hold 4P +
 * 4 P_a (547,840). The first iteration's KL to the reference is exactly 0
 * (B = 0), a later one is not; a run stopped after 3 iterations with the
 * mask refreshed every 3 (the checkpoint's mask model is not the policy)
 * resumes bit for bit, and its resume checkpoint keeps the mask model's
 * adapters alone (model_save_tensors: ADAPTER_BYTES and a header of under
 * 4 KB, where the whole model was BASE_BYTES + ADAPTER_BYTES + 160). */
Test(train, lora_nlpo_shares_the_base_with_its_mask_model) {
  run_cell_x("nlpo", "4", "runs", "model.lora_rank=4 nlpo.mask_refresh=3", NULL);
  cr_expect_eq(held_bytes(), BASE_BYTES + ADAPTER_BYTES);
  cr_expect_eq(logged_bytes("NLPO's mask model holds "), ADAPTER_BYTES, "%s", last_err);
  char f[600];
  snprintf(f, sizeof f, "%s/runs/default/synthetic/nlpo/seed-3/train.jsonl", dir);
  double kl[4], mask[4];
  cr_assert_eq(log_file_values(f, "kl_seq", kl, 4), 4);
  cr_assert_eq(log_file_values(f, "mask_mean", mask, 4), 4);
  cr_expect_eq(kl[0], 0.0, "the first iteration's KL is %g", kl[0]);
  cr_expect_neq(kl[3], 0.0, "the adapters did not move the policy");
  cr_log_info("lora nlpo: kl_seq %g %g %g %g, mask_mean %g %g %g %g", kl[0], kl[1], kl[2], kl[3],
              mask[0], mask[1], mask[2], mask[3]);
  stop_after_3("nlpo", "model.lora_rank=4 nlpo.mask_refresh=3");
  snprintf(f, sizeof f, "%s/resumed/default/synthetic/nlpo/seed-3/checkpoint/resume/mask-*.ckpt",
           dir);
  glob_t g;
  struct stat st;
  cr_assert_eq(glob(f, 0, NULL, &g), 0, "no %s", f);
  cr_assert_eq(g.gl_pathc, 1u, "%zu files %s", g.gl_pathc, f);
  cr_assert_eq(stat(g.gl_pathv[0], &st), 0, "%s", g.gl_pathv[0]);
  globfree(&g);
  cr_expect(st.st_size > (off_t)ADAPTER_BYTES && st.st_size < (off_t)ADAPTER_BYTES + 4096,
            "the mask model's resume file holds %lld bytes (its adapters: %u)",
            (long long)st.st_size, ADAPTER_BYTES);
  resume_to_the_same_numbers("nlpo", "model.lora_rank=4 nlpo.mask_refresh=3");
}

/* SFT with LoRA: the cross-entropy falls from epoch to epoch, the best
 * checkpoint after two epochs is the suite's base bit for bit plus rank-4
 * adapters whose B moved (only they trained), policy and reference hold 4P + 4 P_a, and a stopped
 * run resumes bit for bit (the adapters' AdamW moments in its checkpoint). */
Test(train, lora_sft_trains_the_adapters_only) {
  run_cell_x("sft", "4", "runs", "model.lora_rank=4 train.lr=1e-3", NULL);
  cr_expect_eq(held_bytes(), BASE_BYTES + ADAPTER_BYTES);
  char f[600];
  snprintf(f, sizeof f, "%s/runs/default/synthetic/sft/seed-3/train.jsonl", dir);
  double loss[4];
  cr_assert_eq(log_file_values(f, "loss", loss, 4), 4);
  cr_expect_lt(loss[3], loss[0], "loss %g -> %g", loss[0], loss[3]);
  cr_log_info("lora sft: loss %g %g %g %g", loss[0], loss[1], loss[2], loss[3]);
  /* the stopped run's resumable checkpoint after two epochs */
  stop_after_3("sft", "model.lora_rank=4 train.lr=1e-3");
  model_t *trained, *base;
  dfpo_err err;
  dfpo_err_clear(&err);
  snprintf(f, sizeof f, "%s/resumed/default/synthetic/sft/seed-3/checkpoint/resume/policy-2.ckpt",
           dir);
  cr_assert_eq(model_load(&trained, f, &err), 0, "%s", err.msg);
  snprintf(f, sizeof f, "%s/base.ckpt", dir);
  cr_assert_eq(model_load(&base, f, &err), 0, "%s", err.msg);
  cr_expect_eq(model_lora_rank(trained), 4);
  /* two epochs of 64 references, 8 a step, after the base's 150 */
  cr_expect_eq(model_step_count(trained), model_step_count(base) + 16, "%d steps",
               model_step_count(trained));
  int n = gpt2_num_tensors(base);
  cr_assert_eq(gpt2_num_tensors(trained), n);
  for (int i = 0; i < n; i++) {
    int rows, cols;
    float *a, *b;
    const char *name;
    gpt2_tensor_info(base, i, &name, &rows, &cols, &a, NULL);
    gpt2_tensor_info(trained, i, NULL, NULL, NULL, &b, NULL);
    cr_expect_eq(memcmp(a, b, sizeof(float) * (size_t)rows * cols), 0, "%s changed", name);
  }
  /* the adapters did: B is no longer 0 */
  double sumsq = 0;
  for (int i = 0; i < model_num_tensors(trained); i++) {
    model_tensor t;
    cr_assert_eq(model_tensor_at(trained, i, &t, &err), 0, "%s", err.msg);
    for (size_t k = 0; strstr(t.name, "lora_B") && k < (size_t)t.rows * t.cols; k++)
      sumsq += (double)t.param[k] * t.param[k];
  }
  cr_expect_gt(sumsq, 0.0);
  cr_log_info("lora sft: |B|^2 after two epochs %g", sumsq);
  model_free(trained);
  model_free(base);
  resume_to_the_same_numbers("sft", "model.lora_rank=4 train.lr=1e-3");
}

/* model.adapters: a PPO run that starts from peft's adapter files (rank 4
 * on all four linears of the suite's base, moved off B = 0, written by
 * model_export_adapters). The policy is base + those adapters: zero-shot
 * with model.adapters gives the samples of zero-shot with the same policy
 * as a native LoRA checkpoint, byte for byte. The reference is the starting
 * policy (the base shared, the adapters copied): the first iteration's KL
 * is exactly 0 (against the bare base, as model.lora_rank's reference, it
 * would not be), and policy and reference hold BASE_BYTES + 2
 * ADAPTER_BYTES. A stopped run resumes bit for bit (the reference keeps the
 * starting adapters). model.adapters with model.lora_rank is refused. */
Test(train, lora_from_peft_adapters) {
  char peft[300], ckpt[300], setting[400], f[600];
  snprintf(peft, sizeof peft, "%s/peft", dir);
  snprintf(ckpt, sizeof ckpt, "%s/lora-start.ckpt", dir);
  cr_assert_eq(mkdir(peft, 0777), 0);
  dfpo_err err;
  dfpo_err_clear(&err);
  model_t *m = NULL;
  snprintf(f, sizeof f, "%s/base.ckpt", dir);
  cr_assert_eq(model_load(&m, f, &err), 0, "%s", err.msg);
  model_lora_config lc = {4, 16.0f, NULL};
  cr_assert_eq(model_add_lora(m, &lc, 21, &err), 0, "%s", err.msg);
  dfpo_rng rng;
  dfpo_rng_init(&rng, 22, 1);
  for (int i = 0; i < model_num_tensors(m); i++) {
    model_tensor t;
    cr_assert_eq(model_tensor_at(m, i, &t, &err), 0, "%s", err.msg);
    for (size_t k = 0; k < (size_t)t.rows * t.cols; k++)
      t.param[k] = 0.05f * (float)dfpo_rng_normal(&rng);
  }
  cr_assert_eq(model_export_adapters(m, peft, &err), 0, "%s", err.msg);
  cr_assert_eq(model_save(m, ckpt, 0, &err), 0, "%s", err.msg);
  model_free(m);
  snprintf(setting, sizeof setting, "model.adapters=%s", peft);
  /* zero-shot: the policy is base + adapters */
  run_cell_x("zero-shot", "1", "peft-zs", setting, NULL);
  base_model = "lora-start.ckpt";
  run_cell_x("zero-shot", "1", "native-zs", NULL, NULL);
  base_model = NULL;
  char a[600], b[600];
  snprintf(a, sizeof a, "%s/peft-zs/default/synthetic/zero-shot/seed-3/samples.jsonl", dir);
  snprintf(b, sizeof b, "%s/native-zs/default/synthetic/zero-shot/seed-3/samples.jsonl", dir);
  char *ta = ts_slurp(a), *tb = ts_slurp(b);
  cr_expect_str_eq(ta, tb, "zero-shot over model.adapters samples otherwise than the policy");
  free(ta), free(tb);
  /* PPO from them */
  run_cell_x("ppo", "4", "runs", setting, NULL);
  cr_expect_eq(held_bytes(), BASE_BYTES + 2 * ADAPTER_BYTES, "%s", last_err);
  cr_expect(strstr(last_err, "the reference the starting policy"), "%s", last_err);
  double kl[4];
  cr_assert_eq(log_values("runs", "ppo", "kl_seq", kl, 4), 4);
  cr_expect_eq(kl[0], 0.0, "the first iteration's KL is not 0: the reference is not the start");
  cr_expect_neq(kl[3], 0.0, "the adapters did not move");
  a_stopped_run_resumes_to_the_same_numbers("ppo", setting);
  /* refused with model.lora_rank */
  char model[300], tok[300], out[300], both[500];
  snprintf(model, sizeof model, "%s/base.ckpt", dir);
  snprintf(tok, sizeof tok, "%s/tok", dir);
  snprintf(out, sizeof out, "%s/refused", dir);
  snprintf(both, sizeof both, "model.lora_rank=4");
  ts_run r;
  ts_dfpo(&r, "train", "--task", "synthetic", "--algo", "ppo", "--out", out, "--model", model,
          "--tokenizer", tok, "--set", setting, "--set", both, NULL);
  cr_expect_neq(r.status, 0);
  cr_expect(r.err && strstr(r.err, "adapter_config.json sets the rank"), "%s", r.err ? r.err : "");
  ts_run_free(&r);
}
