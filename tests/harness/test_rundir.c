/* Run folders that stay whole (issue 23): locks on run folders, suite
 * folders and cache entries; DONE listing the files with their sizes and
 * SHA-256, verified before a cell is skipped or read; train.jsonl checked
 * on resume, synced before state.json, its write errors fatal; `dfpo
 * report` and `dfpo check` refusing malformed logs and results.
 *
 * A second process is made deterministic by taking the lock in the test
 * itself (common's dfpo_lock_take) before dfpo starts, and letting go after
 * it has exited. */
#include "datasets/datasets.h"
#include "harness/rundir.h"
#include "harness/task.h"
#include "tests/support/support.h"
#include "trainer/gpt2.h"
#include "trainer/model.h"
#include "trainer/tok.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256], home[300];

static void setup(void) {
  ts_tmpdir(dir, sizeof dir);
  snprintf(home, sizeof home, "%s/home", dir);
}

static void teardown(void) {
  if (!getenv("DFPO_KEEP_TEST_FILES"))
    ts_rmtree(dir);
}

/* A tokenizer trained on the synthetic language and an untrained tiny GPT-2
 * over it: enough for `dfpo train` to run its loop in a second. */
static void make_base(void) {
  setup();
  task t;
  dfpo_err err;
  task_synth_params p = task_synth_defaults();
  p.n[TASK_TRAIN] = 60;
  p.n[TASK_VALIDATION] = p.n[TASK_TEST] = 4;
  cr_assert_eq(task_synth_init(&t, &p, &err), 0, "%s", err.msg);
  char corpus[300], tokdir[300], ckpt[300];
  snprintf(corpus, sizeof corpus, "%s/corpus.txt", dir);
  snprintf(tokdir, sizeof tokdir, "%s/tok", dir);
  snprintf(ckpt, sizeof ckpt, "%s/base.ckpt", dir);
  cr_assert_eq(task_write_corpus(&t, TASK_TRAIN, corpus, &err), 0, "%s", err.msg);
  const char *files[1] = {corpus};
  cr_assert_eq(tok_train(files, 1, 300, tokdir, NULL, &err), 0, "%s", err.msg);
  tok_tokenizer *tok;
  cr_assert_eq(tok_load(&tok, tokdir, &err), 0, "%s", err.msg);
  gpt2_config c = {1, 2, 32, (int)tok_vocab_size(tok), 64, MODEL_HEAD_NONE, 0};
  model_t *m;
  cr_assert_eq(gpt2_new(&m, &c, &err), 0, "%s", err.msg);
  model_init_random(m, 1);
  cr_assert_eq(model_save(m, ckpt, 0, &err), 0, "%s", err.msg);
  model_free(m);
  tok_free(tok);
  task_free(&t);
}

/* The arguments of `dfpo train` for a PPO cell into dir/runs (4
 * iterations, a resumable checkpoint every 2; stop: --stop-after, NULL for
 * none), NULL-terminated, from argv[n] on; paths points at three buffers of
 * 300 bytes that hold the model, tokenizer and output paths. */
static void train_args(const char **argv, int n, char (*paths)[300], const char *stop) {
  snprintf(paths[0], 300, "%s/base.ckpt", dir);
  snprintf(paths[1], 300, "%s/tok", dir);
  snprintf(paths[2], 300, "%s/runs", dir);
  static const char *const fixed[] = {"--task",   "synthetic",
                                      "--algo",   "ppo",
                                      "--seed",   "3",
                                      "--device", "cpu",
                                      "--set",    "train.iterations=4",
                                      "--set",    "train.eval_every=2",
                                      "--set",    "train.batch_size=4",
                                      "--set",    "train.minibatch=4",
                                      "--set",    "train.epochs=1",
                                      "--set",    "task.max_prompt_tokens=24",
                                      "--set",    "generation.max_new_tokens=8",
                                      "--set",    "generation.min_new_tokens=2",
                                      "--set",    "task.synthetic.n_train=16",
                                      "--set",    "task.synthetic.n_validation=4",
                                      "--set",    "task.synthetic.n_test=4",
                                      NULL};
  argv[n++] = "train";
  for (int i = 0; fixed[i]; i++)
    argv[n++] = fixed[i];
  const char *opt[] = {"--model", paths[0], "--tokenizer", paths[1], "--out", paths[2]};
  for (int i = 0; i < 6; i++)
    argv[n++] = opt[i];
  if (stop) {
    argv[n++] = "--stop-after";
    argv[n++] = stop;
  }
  argv[n] = NULL;
}

/* `dfpo train` (train_args); returns the exit status, *err (optional)
 * gets stderr. */
static int train(const char *stop, char **err) {
  const char *args[48];
  char paths[3][300];
  train_args(args, 0, paths, stop);
  return ts_dfpo_in(home, args, NULL, err);
}

static void cell(char *buf, size_t n) {
  snprintf(buf, n, "%s/runs/default/synthetic/ppo/seed-3", dir);
}

static long file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static int has_nul(const char *path) {
  FILE *fp = fopen(path, "rb");
  int c, nul = 0;
  while (fp && (c = fgetc(fp)) != EOF)
    nul |= c == 0;
  if (fp)
    fclose(fp);
  return nul;
}

TestSuite(rundir_train, .init = make_base, .fini = teardown, .timeout = 300);

/* Issue 23: "Two `dfpo train` into one cell both exit 0 and leave a
 * train.jsonl with malformed lines". */
Test(rundir_train, train_on_a_locked_run_folder_exits_5_and_touches_nothing) {
  char c[400], f[500];
  cell(c, sizeof c);
  dfpo_err e;
  cr_assert_eq(dfpo_mkdirs(c, &e), 0, "%s", e.msg);
  /* the first process's log, mid-run */
  snprintf(f, sizeof f, "%s/train.jsonl", c);
  ts_write_text(f, "{\"iteration\":0}\n");
  dfpo_lock l = {0};
  cr_assert_eq(dfpo_lock_take(&l, c, &e), 0, "%s", e.msg);
  char *err;
  int st = train(NULL, &err);
  dfpo_lock_release(&l);
  cr_expect_eq(st, 5, "exit %d: %s", st, err);
  char want[64];
  snprintf(want, sizeof want, "pid %ld on ", (long)getpid());
  cr_expect(strstr(err, want) && strstr(err, c), "names the holder and the folder: %s", err);
  free(err);
  char *log = ts_slurp(f);
  cr_expect_str_eq(log, "{\"iteration\":0}\n", "the first process's log is untouched");
  free(log);
  snprintf(f, sizeof f, "%s/config.json", c);
  cr_expect_neq(access(f, F_OK), 0, "nothing was written");
  snprintf(f, sizeof f, "%s/DONE", c);
  cr_expect_neq(access(f, F_OK), 0);
}

/* DONE lists every file with its size and SHA-256; the reference hashes are
 * coreutils' sha256sum's. */
Test(rundir_train, done_lists_every_file_with_its_size_and_sha256) {
  char *err;
  int st = train(NULL, &err);
  cr_assert_eq(st, 0, "exit %d: %s", st, err);
  free(err);
  char c[400], f[600];
  cell(c, sizeof c);
  snprintf(f, sizeof f, "%s/DONE", c);
  cJSON *o = ts_read_json(f);
  cr_expect_eq(cJSON_GetObjectItem(o, "done_version")->valueint, 1);
  const cJSON *files = cJSON_GetObjectItem(o, "files"), *e;
  /* the TensorBoard event file's name ends in its time, host and pid: its
   * prefix is compared */
  const char *want[] = {"checkpoint/best.ckpt", "config.json",   "eval.json",
                        "events.out.tfevents.", "samples.jsonl", "train.jsonl"};
  cr_assert_eq(cJSON_GetArraySize(files), 6, "%s", ts_slurp(f));
  int i = 0;
  cJSON_ArrayForEach(e, files) {
    const char *p = ts_json_str(e, "path");
    if (i == 3)
      cr_expect(!strncmp(p, want[i], strlen(want[i])), "sorted bytewise: %s", p);
    else
      cr_expect_str_eq(p, want[i], "sorted bytewise");
    snprintf(f, sizeof f, "%s/%s", c, p);
    cr_expect_eq((long)cJSON_GetObjectItem(e, "size")->valuedouble, file_size(f), "%s", p);
    ts_run r;
    char *argv[] = {"/usr/bin/sha256sum", f, NULL};
    ts_run_cmd(&r, argv, NULL, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strncmp(r.out, ts_json_str(e, "sha256"), 64) == 0, "%s: %s", p, r.out);
    ts_run_free(&r);
    i++;
  }
  cJSON_Delete(o);
  dfpo_err why;
  cr_expect_eq(rundir_done_check(c, &why), 0, "%s", why.msg);
  /* one byte more in a listed file: not whole, and DONE says which */
  snprintf(f, sizeof f, "%s/samples.jsonl", c);
  FILE *fp = fopen(f, "ab");
  fputc('\n', fp);
  fclose(fp);
  cr_expect_eq(rundir_done_check(c, &why), DFPO_EDATA);
  cr_expect(strstr(why.msg, "samples.jsonl has ") && strstr(why.msg, "DONE lists"), "%s", why.msg);
}

/* Issue 23: "Truncate it after iteration 10 and rerun: exit 0 and 2,007 NUL
 * bytes (resume pads a short file up to the recorded length)". */
Test(rundir_train, resume_refuses_a_cut_log_and_never_pads_it) {
  char *err;
  int st = train("3", &err); /* resumable checkpoint after iteration 1 (2 lines) */
  cr_assert_eq(st, 0, "exit %d: %s", st, err);
  free(err);
  char c[400], f[500];
  cell(c, sizeof c);
  snprintf(f, sizeof f, "%s/train.jsonl", c);
  char *log = ts_slurp(f);
  char *second = strchr(log, '\n') + 1;
  /* cut in the middle of the second line */
  cr_assert_eq(truncate(f, (off_t)(second - log) + 5), 0);
  free(log);
  long cut = file_size(f);
  st = train(NULL, &err);
  cr_expect_eq(st, 2, "exit %d: %s", st, err);
  char want[600];
  snprintf(want, sizeof want, "%s:2: cut short", f);
  cr_expect(strstr(err, want) != NULL, "names the file and line: %s", err);
  free(err);
  cr_expect_eq(file_size(f), cut, "left as it was");
  cr_expect(!has_nul(f), "no NUL bytes");
  snprintf(f, sizeof f, "%s/DONE", c);
  cr_expect_neq(access(f, F_OK), 0);
}

Test(rundir_train, resume_refuses_a_damaged_last_line) {
  char *err;
  int st = train("3", &err);
  cr_assert_eq(st, 0, "exit %d: %s", st, err);
  free(err);
  char c[400], f[500];
  cell(c, sizeof c);
  snprintf(f, sizeof f, "%s/train.jsonl", c);
  char *log = ts_slurp(f);
  /* the checkpoint's two lines, the second overwritten in place by another
   * writer's bytes of the same length (the length still matches) */
  char *second = strchr(log, '\n') + 1, *end = strchr(second, '\n');
  memset(second, 'x', (size_t)(end - second));
  ts_write_text(f, log);
  free(log);
  st = train(NULL, &err);
  cr_expect_eq(st, 2, "exit %d: %s", st, err);
  char want[600];
  snprintf(want, sizeof want, "%s:2:", f);
  cr_expect(strstr(err, want) && strstr(err, "malformed JSON"), "%s", err);
  free(err);
}

/* Issue 23: "train.jsonl linked to /dev/full: exit 0 and DONE". */
Test(rundir_train, a_log_that_cannot_be_written_stops_the_run) {
  if (access("/dev/full", W_OK) != 0)
    cr_skip_test("no /dev/full here");
  char c[400], f[500];
  cell(c, sizeof c);
  dfpo_err e;
  cr_assert_eq(dfpo_mkdirs(c, &e), 0, "%s", e.msg);
  snprintf(f, sizeof f, "%s/train.jsonl", c);
  cr_assert_eq(symlink("/dev/full", f), 0);
  char *err;
  int st = train(NULL, &err);
  cr_expect_eq(st, 3, "exit %d: %s", st, err);
  cr_expect(strstr(err, "train.jsonl: write failed") != NULL, "%s", err);
  free(err);
  snprintf(f, sizeof f, "%s/DONE", c);
  cr_expect_neq(access(f, F_OK), 0, "not done");
}

/* Issue 23: "It is flushed but not synced before the synced state.json".
 * strace shows the order of the calls: the log's fsync comes before the
 * rename that puts each state.json in place. */
Test(rundir_train, the_log_is_synced_before_state_json) {
  if (access("/usr/bin/strace", X_OK) != 0)
    cr_skip_test("strace is not installed");
  char trace[300], envhome[400], paths[3][300];
  snprintf(trace, sizeof trace, "%s/trace.txt", dir);
  snprintf(envhome, sizeof envhome, "DFPO_HOME=%s", home);
  const char *argv[64] = {"/usr/bin/strace",    "-f", "-y",  "-e",
                          "trace=fsync,rename", "-o", trace, DFPO_BIN};
  train_args(argv, 8, paths, NULL);
  char *env[] = {envhome, "OMP_NUM_THREADS=1", NULL};
  ts_run r;
  ts_run_cmd(&r, (char *const *)argv, NULL, env);
  if (r.status != 0 && strstr(r.err, "ptrace"))
    cr_skip_test("strace cannot trace here: %s", r.err);
  cr_assert_eq(r.status, 0, "%s", r.err);
  ts_run_free(&r);
  char *t = ts_slurp(trace);
  int states = 0, synced = 0, ok = 1;
  for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n")) {
    if (strstr(line, "fsync(") && strstr(line, "train.jsonl>"))
      synced = 1;
    if (strstr(line, "rename(") && strstr(line, "/state.json\"")) {
      states++;
      ok &= synced;
      synced = 0; /* the next state.json needs its own */
    }
  }
  free(t);
  cr_expect_eq(states, 2, "a resumable checkpoint after iterations 1 and 3");
  cr_expect(ok, "train.jsonl is synced before each state.json");
}

/* -------------------------------------------- report and check refuse */

TestSuite(rundir_report, .init = setup, .fini = teardown, .timeout = 120);

/* A finished cell written by hand: its eval.json and train.jsonl as given,
 * and a DONE that lists them as they are (the damage was written by the
 * run itself, as two writers or a bad disk would). */
static void hand_cell(const char *root, int seed, const char *eval, const char *log,
                      size_t loglen) {
  char c[400], f[500];
  snprintf(c, sizeof c, "%s/synthetic/ppo/seed-%d", root, seed);
  dfpo_err e;
  cr_assert_eq(dfpo_mkdirs(c, &e), 0, "%s", e.msg);
  snprintf(f, sizeof f, "%s/eval.json", c);
  ts_write_text(f, eval);
  snprintf(f, sizeof f, "%s/train.jsonl", c);
  FILE *fp = fopen(f, "wb");
  cr_assert_not_null(fp);
  fwrite(log, 1, loglen, fp);
  fclose(fp);
  cr_assert_eq(rundir_done_write(c, &e), 0, "%s", e.msg);
}

static const char good_log[] =
    "{\"iteration\":0,\"reward\":0.1}\n{\"iteration\":1,\"reward\":0.2}\n";

static void good_suite(const char *root) {
  char eval[200];
  for (int s = 1; s <= 2; s++) {
    snprintf(eval, sizeof eval,
             "{\"task\":\"synthetic\",\"algo\":\"ppo\",\"metrics\":{\"reward\":%d}}\n", s);
    hand_cell(root, s, eval, good_log, sizeof good_log - 1);
  }
}

/* Fixed arrays, not pointers: Criterion runs each parameter in a new
 * process of this binary, where static addresses move. */
typedef struct damage {
  char name[16], file[16]; /* file: train.jsonl or eval.json */
  char text[80];
  size_t len;
  char want[64]; /* in the message, after the file's path */
} damage;

#define TXT(s) s, sizeof(s) - 1

static damage damages[] = {
    {"nan", "train.jsonl",
     TXT("{\"iteration\":0,\"reward\":0.1}\n{\"iteration\":1,\"reward\":NaN}\n"), ":2:"},
    {"nul", "train.jsonl", TXT("{\"iteration\":0,\"reward\":0.1}\n\0\0\0\0\0\0"),
     ":2: contains a NUL"},
    {"garbage", "train.jsonl", TXT("{\"iteration\":0,\"reward\":0.1}\n{\"iteration\":1,\"rew\n"),
     ":2:"},
    {"infinite", "train.jsonl", TXT("{\"iteration\":0,\"reward\":1e999}\n"),
     ":1: \"reward\" is not a finite number"},
    {"duplicate", "train.jsonl", TXT("{\"iteration\":0}\n{\"iteration\":0}\n"),
     ":2: \"iteration\" should be 1"},
    {"cut", "train.jsonl", TXT("{\"iteration\":0}\n{\"iteration\":1}"), ":2: the last line is cut"},
    {"eval-trailing", "eval.json", TXT("{\"metrics\":{\"reward\":1}}\n{\"metrics\":"),
     ":2:1: text after the JSON value"},
    {"eval-nul", "eval.json", TXT("{\"metrics\":{\"reward\":1}}\n\0\0"), ":2:1: a NUL byte"},
    {"eval-string", "eval.json", TXT("{\"metrics\":\n {\"reward\": \"0.5\"}}\n"),
     ":2: metric \"reward\" is not a finite number"},
};

ParameterizedTestParameters(rundir_report, report_and_check_refuse_a_malformed_cell) {
  return cr_make_param_array(damage, damages, sizeof damages / sizeof damages[0]);
}

/* Issue 23: "`dfpo report` accepts NaN, NUL bytes and garbage in it with
 * exit 0". */
ParameterizedTest(damage *d, rundir_report, report_and_check_refuse_a_malformed_cell) {
  char root[300], base[300], f[600];
  snprintf(root, sizeof root, "%s/suite", dir);
  good_suite(root);
  /* a baseline from the good folder */
  const char *rep[] = {"report", root, "--no-plots", NULL};
  char *err;
  int st = ts_dfpo_in(home, rep, NULL, &err);
  cr_assert_eq(st, 0, "%s", err);
  free(err);
  snprintf(base, sizeof base, "%s/baseline.json", dir);
  snprintf(f, sizeof f, "%s/report/results.json", root);
  char *b = ts_slurp(f);
  ts_write_text(base, b);
  free(b);
  /* seed 2 damaged */
  const char *eval = "{\"task\":\"synthetic\",\"algo\":\"ppo\",\"metrics\":{\"reward\":2}}\n";
  int is_log = !strcmp(d->file, "train.jsonl");
  if (is_log)
    hand_cell(root, 2, eval, d->text, d->len);
  else {
    hand_cell(root, 2, eval, good_log, sizeof good_log - 1);
    snprintf(f, sizeof f, "%s/synthetic/ppo/seed-2/eval.json", root);
    FILE *fp = fopen(f, "wb");
    fwrite(d->text, 1, d->len, fp);
    fclose(fp);
    char c[400];
    snprintf(c, sizeof c, "%s/synthetic/ppo/seed-2", root);
    dfpo_err e;
    cr_assert_eq(rundir_done_write(c, &e), 0, "%s", e.msg);
  }
  char want[700];
  snprintf(want, sizeof want, "%s/synthetic/ppo/seed-2/%s%s", root, d->file, d->want);
  st = ts_dfpo_in(home, rep, NULL, &err);
  cr_expect_eq(st, 2, "%s: report exit %d: %s", d->name, st, err);
  cr_expect(strstr(err, want) != NULL, "%s: wants '%s' in: %s", d->name, want, err);
  free(err);
  const char *chk[] = {"check", "--baseline", base, root, NULL};
  st = ts_dfpo_in(home, chk, NULL, &err);
  cr_expect_eq(st, 2, "%s: check exit %d: %s", d->name, st, err);
  cr_expect(strstr(err, want) != NULL, "%s: wants '%s' in: %s", d->name, want, err);
  free(err);
}

Test(rundir_report, check_refuses_a_malformed_baseline) {
  char root[300], base[300];
  snprintf(root, sizeof root, "%s/suite", dir);
  good_suite(root);
  snprintf(base, sizeof base, "%s/baseline.json", dir);
  ts_write_text(base, "{\"suite\": \"s\", \"tasks\": [{\"task\": \"synthetic\", \"variants\": [\n"
                      "  {\"variant\": \"ppo\", \"seeds\": [1, 2],\n"
                      "   \"metrics\": {\"reward\": [1, \"two\"]}}]}]}\n");
  const char *chk[] = {"check", "--baseline", base, root, NULL};
  char *err, want[400];
  int st = ts_dfpo_in(home, chk, NULL, &err);
  cr_expect_eq(st, 2, "exit %d: %s", st, err);
  snprintf(want, sizeof want, "%s:3: synthetic/ppo: metric 'reward'", base);
  cr_expect(strstr(err, want) != NULL, "%s", err);
  free(err);
}

/* A finished cell whose files changed since DONE is not read. */
Test(rundir_report, report_leaves_out_a_cell_whose_files_changed) {
  char root[300], f[600];
  snprintf(root, sizeof root, "%s/suite", dir);
  good_suite(root);
  snprintf(f, sizeof f, "%s/synthetic/ppo/seed-2/eval.json", root);
  ts_write_text(f, "{\"task\":\"synthetic\",\"algo\":\"ppo\",\"metrics\":{\"reward\":9}}\n");
  const char *rep[] = {"report", root, "--no-plots", NULL};
  char *err;
  int st = ts_dfpo_in(home, rep, NULL, &err);
  cr_expect_eq(st, 0, "%s", err);
  cr_expect(strstr(err, "left out") && strstr(err, "eval.json has SHA-256"), "%s", err);
  free(err);
  snprintf(f, sizeof f, "%s/report/results.json", root);
  char *res = ts_slurp(f);
  cr_expect(strstr(res, "\"seeds\": [1]") != NULL || strstr(res, "\"seeds\":\t[1]") != NULL,
            "only seed 1: %s", res);
  free(res);
}

/* ------------------------------------------- reproduce and the cache */

/* One task, zero-shot and PPO, one seed, on a tiny base pretrained for 20
 * steps (test_reproduce.c's suite, smaller). */
static const char tiny[] =
    "{\"suite\": {\"name\": \"tiny\", \"tasks\": [\"synthetic\"],\n"
    "  \"algos\": [\"zero-shot\", \"ppo\"], \"seeds\": [0]},\n"
    " \"device\": \"cpu\", \"threads\": 1,\n"
    " \"task\": {\"max_prompt_tokens\": 32, \"synthetic\": {\"n_train\": 60, \"n_validation\": "
    "4, \"n_test\": 4, \"min_words\": 12}},\n"
    " \"tokenizer\": {\"vocab_size\": 300},\n"
    " \"model\": {\"n_layer\": 1, \"n_head\": 2, \"n_embd\": 32, \"block_size\": 64},\n"
    " \"pretrain\": {\"steps\": 20, \"batch_size\": 8, \"seq_len\": 32, \"lr\": 3e-3,\n"
    "   \"min_lr\": 3e-4, \"eval_every\": 10, \"ckpt_every\": 10},\n"
    " \"generation\": {\"max_new_tokens\": 8, \"min_new_tokens\": 4},\n"
    " \"train\": {\"iterations\": 2, \"batch_size\": 4, \"minibatch\": 4, \"epochs\": 1, \"lr\": "
    "1e-3, \"eval_every\": 1}}\n";

TestSuite(rundir_repro, .init = setup, .fini = teardown, .timeout = 600);

static int reproduce(const char *out, const char *extra, char **err) {
  char conf[400];
  snprintf(conf, sizeof conf, "%s/tiny.json", dir);
  if (access(conf, F_OK) != 0)
    ts_write_text(conf, tiny);
  const char *args[] = {"reproduce", "--config", conf, "--out", out, extra, NULL};
  return ts_dfpo_in(home, args, NULL, err);
}

/* Issue 23: "Two `dfpo reproduce` on one --out: the second exits 3 and
 * leaves cells with DONE but no train.jsonl". */
Test(rundir_repro, reproduce_on_a_locked_suite_folder_exits_5) {
  char out[300], root[400], f[500];
  snprintf(out, sizeof out, "%s/out", dir);
  snprintf(root, sizeof root, "%s/tiny", out);
  dfpo_err e;
  cr_assert_eq(dfpo_mkdirs(out, &e), 0, "%s", e.msg);
  dfpo_lock l = {0};
  cr_assert_eq(dfpo_lock_take(&l, root, &e), 0, "%s", e.msg);
  char *err;
  int st = reproduce(out, NULL, &err);
  dfpo_lock_release(&l);
  cr_expect_eq(st, 5, "exit %d: %s", st, err);
  char want[64];
  snprintf(want, sizeof want, "pid %ld on ", (long)getpid());
  cr_expect(strstr(err, want) && strstr(err, root), "%s", err);
  free(err);
  snprintf(f, sizeof f, "%s/suite.json", root);
  cr_expect_neq(access(f, F_OK), 0, "nothing written under the locked folder");
}

/* The first bases/ entry of the cache (the suite's one base). */
static void base_entry(char *buf, size_t n) {
  char bases[400];
  snprintf(bases, sizeof bases, "%s/bases", home);
  DIR *d = opendir(bases);
  cr_assert_not_null(d, "%s", bases);
  struct dirent *de;
  buf[0] = '\0';
  while ((de = readdir(d)))
    if (!strncmp(de->d_name, "synthetic-", 10) && !strchr(de->d_name, '.')) {
      int w = snprintf(buf, n, "%s/%s", bases, de->d_name);
      cr_assert(w > 0 && (size_t)w < n, "%s/%s: path too long", bases, de->d_name);
    }
  closedir(d);
  cr_assert(buf[0], "no base in %s", bases);
}

/* Issue 23: "a rerun skips them and the report says 6 of 6 cells finished";
 * "Two reproduces on one fresh cache pretrain the same base twice into one
 * log". */
Test(rundir_repro, cells_that_are_not_whole_run_again_and_cache_entries_are_locked) {
  char out[300], f[600], c0[500], c1[500];
  snprintf(out, sizeof out, "%s/out", dir);
  char *err;
  int st = reproduce(out, NULL, &err);
  cr_assert_eq(st, 0, "exit %d: %s", st, err);
  free(err);
  snprintf(c0, sizeof c0, "%s/tiny/synthetic/zero-shot/seed-0", out);
  snprintf(c1, sizeof c1, "%s/tiny/synthetic/ppo/seed-0", out);
  dfpo_err why;
  cr_expect_eq(rundir_done_check(c0, &why), 0, "%s", why.msg);
  cr_expect_eq(rundir_done_check(c1, &why), 0, "%s", why.msg);
  snprintf(f, sizeof f, "%s/DONE", c1);
  char *done = ts_slurp(f);
  cr_expect(strstr(done, "\"cell.json\"") != NULL, "DONE lists cell.json: %s", done);
  free(done);
  /* what a second writer left: DONE, but no config.json here and no
   * train.jsonl there */
  snprintf(f, sizeof f, "%s/config.json", c0);
  cr_assert_eq(unlink(f), 0);
  snprintf(f, sizeof f, "%s/train.jsonl", c1);
  cr_assert_eq(unlink(f), 0);
  st = reproduce(out, NULL, &err);
  cr_expect_eq(st, 0, "exit %d: %s", st, err);
  cr_expect(strstr(err, "zero-shot seed 0 is not whole, running it again") &&
                strstr(err, "config.json is missing"),
            "%s", err);
  cr_expect(strstr(err, "ppo seed 0 is not whole, running it again") &&
                strstr(err, "train.jsonl is missing"),
            "%s", err);
  free(err);
  cr_expect_eq(rundir_done_check(c0, &why), 0, "%s", why.msg);
  cr_expect_eq(rundir_done_check(c1, &why), 0, "%s", why.msg);

  /* the base entry being built by another process: a second reproduce on
   * a new folder stops at it and leaves its pretraining log alone */
  char entry[500], log[700];
  base_entry(entry, sizeof entry);
  dfpo_lock l = {0};
  dfpo_err e;
  /* a built entry is reused without its lock: processes that only read it
   * (Slurm array tasks) never stop each other */
  cr_assert_eq(dfpo_lock_take(&l, entry, &e), 0, "%s", e.msg);
  snprintf(out, sizeof out, "%s/out-reuse", dir);
  st = reproduce(out, "--prepare-only", &err);
  dfpo_lock_release(&l);
  cr_expect_eq(st, 0, "exit %d: %s", st, err);
  free(err);
  snprintf(f, sizeof f, "%s/base.json", entry);
  cr_assert_eq(unlink(f), 0, "as if not yet built");
  snprintf(log, sizeof log, "%s/pretrain/train.jsonl", entry);
  char *before = ts_slurp(log);
  cr_assert_eq(dfpo_lock_take(&l, entry, &e), 0, "%s", e.msg);
  snprintf(out, sizeof out, "%s/out2", dir);
  st = reproduce(out, "--prepare-only", &err);
  dfpo_lock_release(&l);
  cr_expect_eq(st, 5, "exit %d: %s", st, err);
  cr_expect(strstr(err, entry) && strstr(err, "in use by another dfpo process"), "%s", err);
  free(err);
  char *after = ts_slurp(log);
  cr_expect_str_eq(after, before, "the pretraining log is untouched");
  free(before);
  free(after);
}

/* The judge cache and a dataset being prepared, each held by "another
 * process" (this test): `dfpo judge train` and `dfpo datasets prepare`
 * stop with 5 before reading anything. */
Test(rundir_repro, judge_and_dataset_entries_being_built_are_locked) {
  char jdir[400];
  snprintf(jdir, sizeof jdir, "%s/judges/sentiment", home);
  dfpo_err e;
  cr_assert_eq(dfpo_mkdirs(home, &e), 0, "%s", e.msg);
  cr_assert_eq(dfpo_mkdirs(jdir, &e), 0, "%s", e.msg);
  dfpo_lock l = {0};
  cr_assert_eq(dfpo_lock_take(&l, jdir, &e), 0, "%s", e.msg);
  const char *jt[] = {"judge", "train", "sentiment", "--dir", jdir, NULL};
  char *err;
  int st = ts_dfpo_in(home, jt, NULL, &err);
  dfpo_lock_release(&l);
  cr_expect_eq(st, 5, "exit %d: %s", st, err);
  cr_expect(strstr(err, jdir) != NULL, "%s", err);
  free(err);

  ds_manifest m;
  cr_assert_eq(ds_manifest_load(&m, NULL, &e), 0, "%s", e.msg);
  const ds_entry *imdb = ds_manifest_find(&m, "imdb");
  cr_assert_not_null(imdb);
  char ddir[600];
  snprintf(ddir, sizeof ddir, "%s/datasets/imdb/%s", home, imdb->version);
  ds_manifest_free(&m);
  cr_assert_eq(dfpo_mkdirs(ddir, &e), 0, "%s", e.msg);
  cr_assert_eq(dfpo_lock_take(&l, ddir, &e), 0, "%s", e.msg);
  const char *dp[] = {"datasets", "prepare", "imdb", NULL};
  st = ts_dfpo_in(home, dp, NULL, &err);
  dfpo_lock_release(&l);
  cr_expect_eq(st, 5, "exit %d: %s", st, err);
  cr_expect(strstr(err, ddir) != NULL, "%s", err);
  free(err);
}
