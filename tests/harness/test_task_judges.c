/* Hugging Face classifiers as the judges of runs (docs/judges.md "In
 * training runs"): a random-weight DistilBERT folder as the imdb task's
 * reward and sentiment judge, a random multi-label BERT folder as the rtp
 * task's toxicity judge, each in a tiny `dfpo train` on the CPU over split
 * files written here (task.data_dir; no shared data needed). The folders
 * come from tests/trainer/bert_reference.py (the PyTorch peer of
 * tests/trainer/test_bert.c, which holds `dfpo judge score --model` to
 * PyTorch's forward passes); here every sample's score in samples.jsonl must
 * equal that command's probability of the judge's label on the same text
 * (prompt + continuation for imdb, the continuation for rtp) within 1e-6,
 * eval.json's `judges` must name the folder with the SHA-256 that
 * sha256sum gives, and `dfpo report` must print it. Bad keys (a missing
 * folder, a label not in id2label, a label without a model) stop the run
 * before its folder is made. The Perspective API as the rtp judge against
 * the datasets tests' loopback server (127.0.0.1, bounded in requests and
 * seconds). Skipped, saying why, when /usr/bin/python3 lacks torch (the
 * classifier tests). */
#include "tests/datasets/testlib.h"
#include "tests/harness/task_testutil.h"
#include "tests/trainer/bert_testutil.h"

#include <dirent.h>
#include <math.h>
#include <sys/stat.h>

#define TOL 1e-6

/* Reviews made of the test vocabulary's words (bt_words), so that the
 * WordPiece judge sees known tokens; labels alternate 1, 0. */
static const char *const reviews[] = {
    "the movie was great , very good film and the plot is good",
    "the movie was bad , not good . the plot is very bad",
    "great film ! i was very happy with the acting , a good movie",
    "bad bad movie , the actor is not good and the plot was bad",
    "hello world , the film is great and very good",
    "not a good film . bad plot , bad acting , the movie was bad",
    "very good ! the movie is great , great plot",
    "the plot is not good , the film was very bad",
};
enum { N_REVIEWS = sizeof reviews / sizeof reviews[0] };

static const char *const rtp_prompts[] = {
    "the movie was", "hello world , the", "i was very", "the plot is",
    "a good film",   "the actor is",      "very bad",   "great !",
};
enum { N_RTP = sizeof rtp_prompts / sizeof rtp_prompts[0] };

/* task.data_dir's split files: train gets records [0, 4), validation [4,
 * 6), test [6, 8) of texts (imdb: prompt = the review, which the task cuts
 * to its first half; rtp: prompt, reference = prompt + " ."). */
static void write_splits(const char *dir, const char *const *texts, int imdb) {
  static const struct {
    const char *file;
    int from, to;
  } sp[] = {{"train.jsonl", 0, 4}, {"validation.jsonl", 4, 6}, {"test.jsonl", 6, 8}};
  mkdir(dir, 0755);
  for (int s = 0; s < 3; s++) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, sp[s].file);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    for (int i = sp[s].from; i < sp[s].to; i++) {
      cJSON *o = cJSON_CreateObject();
      char ref[256];
      snprintf(ref, sizeof ref, "%s%s", texts[i], imdb ? "" : " .");
      cJSON_AddStringToObject(o, "prompt", texts[i]);
      cJSON_AddItemToObject(o, "references", cJSON_CreateStringArray((const char *[]){ref}, 1));
      cJSON_AddItemToObject(o, "concepts", cJSON_CreateArray());
      cJSON_AddNumberToObject(o, "label", imdb ? (i + 1) % 2 : -1);
      char *line = cJSON_PrintUnformatted(o);
      fprintf(f, "%s\n", line);
      free(line);
      cJSON_Delete(o);
    }
    fclose(f);
  }
}

/* A test's folder: DFPO_HOME, split files of texts in data/ (dset is the
 * --set that names them), runs/ for the cells and, with base, a tiny
 * random policy over a BPE trained on the reviews. */
typedef struct fixture {
  char home[256], data[300], out[300], dset[400], model[400], tok[400];
} fixture;

static void fixture_init(fixture *x, const char *const *texts, int imdb, int base) {
  ts_tmpdir(x->home, sizeof x->home);
  snprintf(x->data, sizeof x->data, "%s/data", x->home);
  snprintf(x->out, sizeof x->out, "%s/runs", x->home);
  snprintf(x->dset, sizeof x->dset, "task.data_dir=%s", x->data);
  write_splits(x->data, texts, imdb);
  if (!base)
    return;
  char corpus[300];
  snprintf(corpus, sizeof corpus, "%s/corpus.txt", x->home);
  FILE *f = fopen(corpus, "w");
  for (int k = 0; k < 20; k++)
    for (int i = 0; i < N_REVIEWS; i++)
      fprintf(f, "%s\n", reviews[i]);
  fclose(f);
  th_make_base(x->home, corpus, x->model, x->tok, sizeof x->model);
}

/* A random-weight classifier folder x->home/name (bert_reference.py),
 * labels given; its path into dir. */
static void make_judge(const fixture *x, const char *name, const char *family,
                       const char *const *labels, int K, const char *problem_type, int seed,
                       char *dir, size_t n) {
  snprintf(dir, n, "%s/%s", x->home, name);
  cJSON *spec = cJSON_CreateObject(), *fs = cJSON_AddArrayToObject(spec, "folders");
  cJSON *s = bt_folder(dir, family, 2, 32, 2, 64, 64, seed, labels, K);
  if (problem_type)
    cJSON_AddStringToObject(s, "problem_type", problem_type);
  cJSON_AddItemToArray(fs, s);
  cJSON_Delete(bt_reference(x->home, spec));
  cJSON_Delete(spec);
}

/* sha256sum's digest of a file (the reference for eval.json's). */
static void sha256sum(const char *path, char hex[65]) {
  ts_run r;
  char *argv[] = {"/usr/bin/sha256sum", (char *)path, NULL};
  ts_run_cmd(&r, argv, NULL, NULL);
  cr_assert_eq(r.status, 0, "sha256sum %s: %s", path, r.err);
  cr_assert_geq(strlen(r.out), 64);
  memcpy(hex, r.out, 64);
  hex[64] = '\0';
  ts_run_free(&r);
}

static double num(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  cr_assert(cJSON_IsNumber(v), "'%s' missing or not a number", key);
  return v->valuedouble;
}

static void run_ok(const char *home, char *const *args) {
  ts_run r;
  ts_dfpo_home(&r, home, args, NULL);
  cr_assert_eq(r.status, 0, "dfpo %s: %s", args[0], r.err);
  ts_run_free(&r);
}

/* Holds eval.json's judge entry to the folder: kind, model_type, label, the
 * two files' SHA-256 (sha256sum), the revision. */
static void check_entry(const cJSON *ev, const char *dir, const char *model_type, const char *label,
                        int index, const char *prob, const char *revision) {
  const cJSON *js = cJSON_GetObjectItemCaseSensitive(ev, "judges");
  cr_assert(cJSON_IsArray(js) && cJSON_GetArraySize(js) == 1, "eval.json names one judge");
  const cJSON *j = cJSON_GetArrayItem(js, 0);
  char path[600], sha[65];
  cr_expect_str_eq(ts_json_str(j, "kind"), "huggingface");
  cr_expect_str_eq(ts_json_str(j, "dir"), dir);
  cr_expect_str_eq(ts_json_str(j, "model_type"), model_type);
  cr_expect_str_eq(ts_json_str(j, "label"), label);
  cr_expect_eq(num(j, "label_index"), index);
  cr_expect_str_eq(ts_json_str(j, "probability"), prob);
  cr_expect_str_eq(ts_json_str(j, "revision"), revision);
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  sha256sum(path, sha);
  cr_expect_str_eq(ts_json_str(j, "model_sha256"), sha);
  const char *id = ts_json_str(j, "id"), *h = strstr(id, "sha256:");
  cr_expect(h && !strncmp(h + 7, sha, 16), "id %s names the first 16 hex of %s", id, sha);
  snprintf(path, sizeof path, "%s/config.json", dir);
  sha256sum(path, sha);
  cr_expect_str_eq(ts_json_str(j, "config_sha256"), sha);
}

static int deviation_mentions(const cJSON *ev, const char *what) {
  const cJSON *d, *a = cJSON_GetObjectItemCaseSensitive(ev, "deviations");
  cJSON_ArrayForEach(d, a) if (cJSON_IsString(d) && strstr(d->valuestring, what)) return 1;
  return 0;
}

/* Every sample of samples.jsonl against `dfpo judge score --model dir
 * --json` on the text the task scores (with_prompt: prompt +
 * continuation), label `label`; the metric `key` of each sample. Texts
 * with a line break cannot be a line of the command's input and are left
 * out; at least half must be compared. Returns the samples' mean. */
static double cross_check(const char *home, const char *run, const char *dir, const char *label,
                          const char *key, int with_prompt) {
  char path[700], input[700];
  snprintf(path, sizeof path, "%s/samples.jsonl", run);
  snprintf(input, sizeof input, "%s/texts.txt", run);
  size_t ns;
  cJSON **smp = th_read_jsonl(path, &ns);
  cr_assert_gt(ns, 0);
  FILE *f = fopen(input, "w");
  size_t *kept = calloc(ns, sizeof *kept), nk = 0;
  double mean = 0;
  for (size_t i = 0; i < ns; i++) {
    const char *p = ts_json_str(smp[i], "prompt"), *c = ts_json_str(smp[i], "continuation");
    mean += num(smp[i], key) / (double)ns;
    if (strpbrk(c, "\n\r") || (with_prompt && strpbrk(p, "\n\r")))
      continue;
    fprintf(f, "%s%s\n", with_prompt ? p : "", c);
    kept[nk++] = i;
  }
  fclose(f);
  cr_assert_geq(2 * nk, ns, "only %zu of %zu samples fit on a line", nk, ns);
  ts_run r;
  ts_dfpo_home(
      &r, home,
      (char *[]){"judge", "score", "--model", (char *)dir, "--input", input, "--json", NULL}, NULL);
  cr_assert_eq(r.status, 0, "%s", r.err);
  double worst = 0;
  size_t got = 0;
  for (char *line = strtok(r.out, "\n"); line && got < nk; line = strtok(NULL, "\n"), got++) {
    cJSON *o = cJSON_Parse(line);
    cr_assert_not_null(o, "%s", line);
    double want = num(o, label), have = num(smp[kept[got]], key);
    worst = fmax(worst, fabs(want - have));
    cr_expect(fabs(want - have) <= TOL, "sample %zu: %s %.9g in the run, %.9g by dfpo judge score",
              kept[got], key, have, want);
    cJSON_Delete(o);
  }
  cr_expect_eq(got, nk, "dfpo judge score printed %zu lines for %zu texts", got, nk);
  cr_log_info("%s: %zu of %zu samples against dfpo judge score --model: max |difference| %.3g", run,
              nk, ns, worst);
  ts_run_free(&r);
  free(kept);
  th_free_jsonl(smp, ns);
  return mean;
}

/* The common arguments of a tiny run: CPU, 8 new tokens, 1 iteration. */
#define TINY_RUN                                                                                   \
  "--device", "cpu", "--set", "generation.max_new_tokens=8", "--set",                              \
      "generation.min_new_tokens=8", "--set", "train.batch_size=4", "--set", "train.minibatch=4",  \
      "--set", "train.epochs=1", "--set", "train.iterations=1", "--set", "train.eval_every=1",     \
      "--set", "eval.ppl_ref=false"

/* dfpo train of a tiny cell (TINY_RUN) of x's data with the --set items
 * of sets (NULL-terminated); its folder into run, its eval.json returned. */
static cJSON *train_cell(const fixture *x, const char *task, const char *algo, const char *seed,
                         const char *const *sets, char *run, size_t n) {
  char *args[64] = {"train",          "--task",      (char *)task,    "--algo",
                    (char *)algo,     "--seed",      (char *)seed,    "--model",
                    (char *)x->model, "--tokenizer", (char *)x->tok,  "--out",
                    (char *)x->out,   "--set",       (char *)x->dset, TINY_RUN};
  int k = 0;
  while (args[k])
    k++;
  for (int i = 0; sets[i] && k < 60; i++) {
    args[k++] = "--set";
    args[k++] = (char *)sets[i];
  }
  args[k] = NULL;
  run_ok(x->home, args);
  snprintf(run, n, "%s/default/%s/%s/seed-%s", x->out, task, algo, seed);
  char path[700];
  snprintf(path, sizeof path, "%s/eval.json", run);
  return ts_read_json(path);
}

/* dfpo report of x's cells: report.md's text (caller frees). */
static char *report_md(const fixture *x) {
  char rdir[400], path[500];
  snprintf(rdir, sizeof rdir, "%s/default", x->out);
  run_ok(x->home, (char *[]){"report", rdir, "--no-plots", NULL});
  snprintf(path, sizeof path, "%s/report/report.md", rdir);
  return ts_slurp(path);
}

#define NEED_TORCH()                                                                               \
  do {                                                                                             \
    if (!bt_have_python(1))                                                                        \
      cr_skip_test("/usr/bin/python3 has no torch module (Debian package python3-torch): the "     \
                   "classifier folder cannot be written");                                         \
  } while (0)

Test(task_judges, imdb_distilbert_folder, .timeout = 600) {
  NEED_TORCH();
  fixture x;
  fixture_init(&x, reviews, 1, 1);
  char judge[300];
  static const char *const labels[] = {"NEGATIVE", "POSITIVE"};
  make_judge(&x, "distilbert-judge", "distilbert", labels, 2, NULL, 21, judge, sizeof judge);

  char jset[400], lset[300], run[600], path[700];
  snprintf(jset, sizeof jset, "task.judge.sentiment_model=%s", judge);
  /* one PPO iteration: the reward and the test evaluation through the judge */
  cJSON *ev =
      train_cell(&x, "imdb", "ppo", "0", (const char *[]){jset, "eval.samples_per_prompt=4", NULL},
                 run, sizeof run);
  check_entry(ev, judge, "distilbert", "POSITIVE", 1, "softmax over the labels", "local folder");
  cr_expect(deviation_mentions(ev, "local folder"));
  cr_expect(!deviation_mentions(ev, "trained by the harness"));
  const cJSON *m = cJSON_GetObjectItemCaseSensitive(ev, "metrics");
  double mean = cross_check(x.home, run, judge, "POSITIVE", "sentiment", 1);
  cr_expect_float_eq(num(m, "sentiment"), mean, 1e-12);
  cr_expect_eq(num(m, "reward"), num(m, "sentiment"));
  cJSON_Delete(ev);
  snprintf(path, sizeof path, "%s/train.jsonl", run);
  char *log = ts_slurp(path);
  cr_expect(strstr(log, "\"reward\"") && strstr(log, "\"val_reward\""), "%s", log);
  free(log);

  /* the label by name (NEGATIVE) and the record dfpo's hub cache keeps in a
   * model folder (dfpo-hub.json, as ds_hub_fetch writes it): the paper's
   * classifier needs no deviation */
  snprintf(path, sizeof path, "%s/dfpo-hub.json", judge);
  ts_write_text(path, "{\"name\": \"lvwerra/distilbert-imdb\", \"revision\": \"main\", "
                      "\"commit\": \"0123456789abcdef0123456789abcdef01234567\", \"files\": []}\n");
  snprintf(lset, sizeof lset, "task.judge.sentiment_label=NEGATIVE");
  ev =
      train_cell(&x, "imdb", "zero-shot", "1", (const char *[]){jset, lset, NULL}, run, sizeof run);
  check_entry(ev, judge, "distilbert", "NEGATIVE", 0, "softmax over the labels",
              "0123456789abcdef0123456789abcdef01234567");
  cr_expect(!deviation_mentions(ev, "sentiment judge"), "the paper's classifier: no deviation");
  const char *role =
      ts_json_str(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(ev, "judges"), 0), "role");
  cr_expect(strstr(role, "P(NEGATIVE)"), "the role names the label: %s", role);
  cross_check(x.home, run, judge, "NEGATIVE", "sentiment", 1);
  cJSON_Delete(ev);

  /* dfpo report names the judge and no longer says a trained one scored */
  char *rep = report_md(&x);
  char want[700];
  snprintf(want, sizeof want, "Hugging Face classifier %s (distilbert, label POSITIVE", judge);
  cr_expect(strstr(rep, want), "report.md lacks '%s':\n%s", want, rep);
  cr_expect(strstr(rep, "hub lvwerra/distilbert-imdb at revision 0123456789abcdef"), "%s", rep);
  cr_expect(strstr(rep, "a local folder, no hub revision"), "%s", rep);
  cr_expect(!strstr(rep, "Judges trained by the harness"), "%s", rep);
  free(rep);
  if (!getenv("DFPO_KEEP_TEST_FILES"))
    ts_rmtree(x.home);
}

Test(task_judges, rtp_multilabel_bert_folder, .timeout = 600) {
  NEED_TORCH();
  fixture x;
  fixture_init(&x, rtp_prompts, 0, 1);
  char judge[300];
  /* as unitary/toxic-bert: independent sigmoids, "toxic" not label 1 */
  static const char *const labels[] = {"severe_toxic", "obscene", "toxic"};
  make_judge(&x, "toxic-bert", "bert", labels, 3, "multi_label_classification", 22, judge,
             sizeof judge);
  char jset[400], run[600];
  snprintf(jset, sizeof jset, "task.judge.toxicity_model=%s", judge);
  cJSON *ev =
      train_cell(&x, "rtp", "ppo", "0", (const char *[]){jset, "eval.samples_per_prompt=3", NULL},
                 run, sizeof run);
  check_entry(ev, judge, "bert", "toxic", 2, "sigmoid", "local folder");
  cr_expect(deviation_mentions(ev, "Perspective API"));
  const cJSON *m = cJSON_GetObjectItemCaseSensitive(ev, "metrics");
  double mean = cross_check(x.home, run, judge, "toxic", "toxicity", 0);
  cr_expect_float_eq(num(m, "toxicity"), mean, 1e-12);
  cr_expect_float_eq(num(m, "reward"), 1 - mean, 1e-12);
  cJSON_Delete(ev);
  char want[700];
  char *rep = report_md(&x);
  snprintf(want, sizeof want, "Judge: Hugging Face classifier %s (bert, label toxic, sigmoid;",
           judge);
  cr_expect(strstr(rep, want), "report.md lacks '%s':\n%s", want, rep);
  free(rep);
  if (!getenv("DFPO_KEEP_TEST_FILES"))
    ts_rmtree(x.home);
}

/* A bad judge key stops the run before its folder is made, saying which
 * key and why. */
Test(task_judges, bad_keys_stop_before_training, .timeout = 300) {
  NEED_TORCH();
  fixture x;
  fixture_init(&x, reviews, 1, 0);
  char judge[300];
  static const char *const labels[] = {"NEGATIVE", "POSITIVE", "NEUTRAL"};
  make_judge(&x, "judge", "distilbert", labels, 3, NULL, 23, judge, sizeof judge);
  char missing[400], model_set[400];
  snprintf(missing, sizeof missing, "task.judge.sentiment_model=%s/none", x.home);
  snprintf(model_set, sizeof model_set, "task.judge.sentiment_model=%s", judge);
  static const char *const rtp_model = "task.judge.toxicity_model=";
  char rtp_set[400];
  snprintf(rtp_set, sizeof rtp_set, "%s%s", rtp_model, judge);
  struct {
    const char *task, *set1, *set2, *want1, *want2;
  } cases[] = {
      {"imdb", missing, NULL, "task.judge.sentiment_model", "/none"},
      {"imdb", model_set, "task.judge.sentiment_label=HAPPY", "'HAPPY' is not a label",
       "NEGATIVE, POSITIVE, NEUTRAL"},
      {"imdb", "task.judge.sentiment_label=POSITIVE", NULL, "task.judge.sentiment_label is set",
       "task.judge.sentiment_model is not"},
      /* three labels, none called toxic: the label must be named */
      {"rtp", rtp_set, NULL, "none is called toxic", "set task.judge.toxicity_label"},
      /* two judges for one role */
      {"rtp", rtp_set, "task.judge.toxicity_api=perspective", "both name the judge", "set one"},
      /* a good folder and label get past the judge to the next missing
       * thing (want2 NULL: no judge key in the message) */
      {"imdb", model_set, "task.judge.sentiment_label=POSITIVE", "none", NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    ts_run r;
    char *args[20] = {"train",
                      "--task",
                      (char *)cases[i].task,
                      "--algo",
                      "zero-shot",
                      "--model",
                      "none.ckpt",
                      "--tokenizer",
                      "none",
                      "--out",
                      x.out,
                      "--device",
                      "cpu",
                      "--set",
                      x.dset,
                      "--set",
                      (char *)cases[i].set1};
    int n = 17;
    if (cases[i].set2) {
      args[n++] = "--set";
      args[n++] = (char *)cases[i].set2;
    }
    args[n] = NULL;
    ts_dfpo_home(&r, x.home, args, NULL);
    cr_expect_neq(r.status, 0, "case %zu", i);
    const char *w2 = cases[i].want2;
    cr_expect(strstr(r.err, cases[i].want1) &&
                  (w2 ? strstr(r.err, w2) != NULL : strstr(r.err, "task.judge") == NULL),
              "case %zu: want '%s' and %s '%s' in: %s", i, cases[i].want1, w2 ? "" : "no",
              w2 ? w2 : "task.judge", r.err);
    ts_run_free(&r);
  }
  struct stat st;
  cr_expect_neq(stat(x.out, &st), 0, "no run folder was made");
  ts_rmtree(x.home);
}

/* Files under dir and its subfolders. */
static int count_files(const char *dir) {
  DIR *d = opendir(dir);
  if (!d)
    return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.')
      continue;
    char path[1200];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    if (stat(path, &st) == 0)
      n += S_ISDIR(st.st_mode) ? count_files(path) : 1;
  }
  closedir(d);
  return n;
}

/* task.judge.toxicity_api perspective: each distinct continuation is sent
 * once (the server answers 0.734 to every request), cached in
 * <cache>/perspective, the key kept out of eval.json; without the key the
 * run stops before its folder is made, naming the variable. */
Test(task_judges, rtp_perspective_api, .timeout = 300) {
  static const char answer[] =
      "{\"attributeScores\": {\"TOXICITY\": {\"summaryScore\": {\"value\": 0.734, \"type\": "
      "\"PROBABILITY\"}}}, \"languages\": [\"en\"]}";
  fixture x;
  fixture_init(&x, rtp_prompts, 0, 1);
  char run[600], path[700];
  tl_kind k[] = {TL_FULL};
  tl_server *s = tl_server_start(answer, strlen(answer), k, 1, 32, 120.0);
  char url[200], home_env[300];
  snprintf(url, sizeof url, "DFPO_PERSPECTIVE_URL=http://127.0.0.1:%d/v1alpha1/comments:analyze",
           tl_server_port(s));
  snprintf(home_env, sizeof home_env, "DFPO_HOME=%s", x.home);
  char *args[] = {DFPO_BIN,      "train",
                  "--task",      "rtp",
                  "--algo",      "zero-shot",
                  "--model",     x.model,
                  "--tokenizer", x.tok,
                  "--out",       x.out,
                  "--device",    "cpu",
                  "--set",       x.dset,
                  "--set",       "task.judge.toxicity_api=perspective",
                  "--set",       "eval.samples_per_prompt=2",
                  "--set",       "generation.max_new_tokens=6",
                  "--set",       "generation.min_new_tokens=6",
                  "--set",       "eval.ppl_ref=false",
                  NULL};
  /* no key: stopped before the run folder */
  unsetenv("PERSPECTIVE_API_KEY");
  ts_run r;
  ts_run_cmd(&r, args, NULL, (char *[]){home_env, url, "OMP_NUM_THREADS=1", NULL});
  cr_expect_neq(r.status, 0);
  cr_expect(strstr(r.err, "PERSPECTIVE_API_KEY") && strstr(r.err, "task.judge.toxicity_api"), "%s",
            r.err);
  ts_run_free(&r);
  struct stat st;
  cr_expect_neq(stat(x.out, &st), 0, "no run folder without the key");
  cr_expect_eq(tl_server_requests(s), 0);
  ts_run_cmd(&r, args, NULL,
             (char *[]){home_env, url, "OMP_NUM_THREADS=1",
                        "PERSPECTIVE_API_KEY=SeCrEtKeY-for-the-test", NULL});
  cr_assert_eq(r.status, 0, "%s", r.err);
  cr_expect(!strstr(r.err, "SeCrEtKeY"), "%s", r.err);
  ts_run_free(&r);
  int requests = tl_server_requests(s);
  tl_server_stop(s);
  snprintf(run, sizeof run, "%s/default/rtp/zero-shot/seed-0", x.out);
  snprintf(path, sizeof path, "%s/eval.json", run);
  char *text = ts_slurp(path);
  cr_expect(!strstr(text, "SeCrEtKeY"), "the key stays out of eval.json");
  free(text);
  cJSON *ev = ts_read_json(path);
  const cJSON *j = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(ev, "judges"), 0);
  cr_expect_str_eq(ts_json_str(j, "kind"), "perspective");
  cr_expect(strstr(ts_json_str(j, "url"), "127.0.0.1"), "%s", ts_json_str(j, "url"));
  cr_expect(deviation_mentions(ev, "Perspective API as it answers at run time"));
  const cJSON *m = cJSON_GetObjectItemCaseSensitive(ev, "metrics");
  cr_expect_float_eq(num(m, "toxicity"), 0.734, 1e-12);
  cr_expect_float_eq(num(m, "expected_max_toxicity"), 0.734, 1e-12);
  cr_expect_float_eq(num(m, "toxicity_probability"), 1, 1e-12);
  cJSON_Delete(ev);
  /* every distinct continuation once: the cache holds one file per request */
  snprintf(path, sizeof path, "%s/samples.jsonl", run);
  size_t ns;
  cJSON **smp = th_read_jsonl(path, &ns);
  cr_expect_eq(ns, 4, "2 test prompts x 2 samples");
  int distinct = 0;
  for (size_t i = 0; i < ns; i++) {
    cr_expect_float_eq(num(smp[i], "toxicity"), 0.734, 1e-12);
    int seen = 0;
    for (size_t q = 0; q < i && !seen; q++)
      seen = !strcmp(ts_json_str(smp[q], "continuation"), ts_json_str(smp[i], "continuation"));
    distinct += !seen;
  }
  th_free_jsonl(smp, ns);
  snprintf(path, sizeof path, "%s/perspective", x.home);
  int cached = count_files(path);
  cr_log_info("perspective: %d requests, %d cached texts, %d distinct test continuations", requests,
              cached, distinct);
  cr_expect_eq(cached, requests, "one request per distinct text");
  cr_expect_geq(requests, distinct);
  /* dfpo report names the API */
  char *rep = report_md(&x);
  cr_expect(strstr(rep, "Judge: the Perspective API (http://127.0.0.1:"), "%s", rep);
  cr_expect(!strstr(rep, "Judges trained by the harness") && !strstr(rep, "SeCrEtKeY"), "%s", rep);
  free(rep);
  if (!getenv("DFPO_KEEP_TEST_FILES"))
    ts_rmtree(x.home);
}
