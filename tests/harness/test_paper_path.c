/* The paper suite's path as a researcher takes it (docs/suites.md, "The
 * paper suite"): `dfpo fetch` from a file:// mirror the test makes, then the
 * suite's preparation finds the fetched files where fetch put them (the
 * tokenizer as one folder, the weights as a Hugging Face folder); and the
 * dry run, `dfpo reproduce --suite paper --dry-run`, over the whole matrix
 * at GPT-2 124M: fetch, verify, import, tokenize, judge, train, evaluate,
 * report. The GPT-2 weights are random (written by dfpo's own safetensors
 * exporter in the Hugging Face layout), and a test manifest pins them in
 * place of the real ones (DFPO_MANIFEST); the tokenizer files and the data
 * are the real ones from ../shared/data, and the tests skip, saying so,
 * without it. */
#include "datasets/datasets.h"
#include "tests/datasets/testlib.h"
#include "tests/support/support.h"
#include "tests/trainer/bert_testutil.h"
#include "tests/trainer/t5_testutil.h"
#include "trainer/gpt2.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char dir[256], home[300], mirror[300], manifest[300], env[400];

static void setup(void) {
  ts_tmpdir(dir, sizeof dir);
  snprintf(home, sizeof home, "%s/home", dir);
  snprintf(mirror, sizeof mirror, "%s/mirror", dir);
  snprintf(manifest, sizeof manifest, "%s/manifest.json", dir);
  snprintf(env, sizeof env, "DFPO_MANIFEST=%s", manifest);
  cr_assert_eq(mkdir(mirror, 0777), 0);
}

static void teardown(void) {
  if (!getenv("DFPO_KEEP_TEST_FILES"))
    ts_rmtree(dir);
}

TestSuite(paper_path, .init = setup, .fini = teardown, .timeout = 900);

static const char *shared_or_skip(void) {
  const char *data = ts_shared_data();
  if (!data)
    cr_skip_test("no ../shared/data (the GPT-2 BPE files and the datasets): skipped");
  return data;
}

static void copy(const char *src, const char *dst) {
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "cp '%s' '%s'", src, dst);
  cr_assert_eq(system(cmd), 0, "%s", cmd);
}

/* A GPT-2 of the named shape with random weights (seed), as
 * <folder>/model.safetensors, with config.json beside it when config. */
static void random_gpt2(const char *shape, uint64_t seed, const char *folder, int config) {
  gpt2_config c;
  model_t *m = NULL;
  dfpo_err err;
  char path[600];
  snprintf(path, sizeof path, "%s/model.safetensors", folder);
  mkdir(folder, 0777);
  cr_assert_eq(gpt2_config_named(&c, shape, &err), DFPO_OK, "%s", err.msg);
  cr_assert_eq(gpt2_new(&m, &c, &err), DFPO_OK, "%s", err.msg);
  model_init_random(m, seed);
  cr_assert_eq(model_export_safetensors(m, path, config, &err), DFPO_OK, "%s", err.msg);
  model_free(m);
}

/* A Hugging Face GPT-2 folder as a user has one: config.json,
 * model.safetensors (random, seed) and the tokenizer as vocab.json +
 * merges.txt (GPT-2's BPE files under their Hugging Face names). */
static void hf_folder(const char *data, const char *shape, uint64_t seed, const char *folder) {
  char src[600], path[600];
  random_gpt2(shape, seed, folder, 1);
  snprintf(src, sizeof src, "%s/gpt2/encoder.json", data);
  snprintf(path, sizeof path, "%s/vocab.json", folder);
  copy(src, path);
  snprintf(src, sizeof src, "%s/gpt2/vocab.bpe", data);
  snprintf(path, sizeof path, "%s/merges.txt", folder);
  copy(src, path);
}

/* The paper suite's CommonGen base, RL4LMs' t5-base, pinned by commit
 * (configs/paper.json's model.bases). */
#define T5_OWNER "google-t5"
#define T5_NAME "t5-base"
#define T5_COMMIT "a9723ea7f1b39c1eae772870f3b547bf6ef7e6c1"

/* The built-in manifest with gpt2-124m pinned to the mirror's random
 * model.safetensors, written to `manifest`. */
static void test_manifest(void) {
  char path[600], hex[65];
  dfpo_err err;
  struct stat st;
  snprintf(path, sizeof path, "%s/model.safetensors", mirror);
  cr_assert_eq(ds_sha256_file(path, hex, &err), DFPO_OK, "%s", err.msg);
  cr_assert_eq(stat(path, &st), 0);
  size_t len;
  const char *text = ds_manifest_builtin(&len);
  cJSON *root = cJSON_ParseWithLength(text, len);
  cJSON *ds = cJSON_GetObjectItemCaseSensitive(root, "datasets"), *it;
  int found = 0;
  cJSON_ArrayForEach(it, ds) {
    if (strcmp(cJSON_GetObjectItemCaseSensitive(it, "name")->valuestring, "gpt2-124m"))
      continue;
    cJSON_ReplaceItemInObjectCaseSensitive(it, "sha256", cJSON_CreateString(hex));
    cJSON_ReplaceItemInObjectCaseSensitive(it, "size", cJSON_CreateNumber((double)st.st_size));
    found = 1;
  }
  cr_assert(found, "no gpt2-124m in the built-in manifest");
  char *out = cJSON_Print(root);
  ts_write_text(manifest, out);
  free(out);
  cJSON_Delete(root);
}

/* The mirror: the real BPE files and a random GPT-2 of `shape`. */
static void make_mirror(const char *data, const char *shape) {
  char src[600], dst[600];
  const char *files[] = {"encoder.json", "vocab.bpe"};
  for (int i = 0; i < 2; i++) {
    snprintf(src, sizeof src, "%s/gpt2/%s", data, files[i]);
    snprintf(dst, sizeof dst, "%s/%s", mirror, files[i]);
    copy(src, dst);
  }
  random_gpt2(shape, 1, mirror, 0);
  test_manifest();
}

static int fetch(char **err) {
  char url[400];
  snprintf(url, sizeof url, "file://%s/", mirror);
  const char *args[] = {"fetch",    "gpt2-124m", "gpt2-encoder",  "gpt2-vocab",
                        "--mirror", url,         "--no-progress", NULL};
  return ts_dfpo_in(home, args, env, err);
}

/* The steps: fetch the BPE files (and the weights) from a file://
 * mirror, then the paper suite's preparation finds them: the tokenizer as
 * the one folder assets/gpt2-tokenizer (encoder.json + vocab.bpe), the
 * weights in assets/gpt2-124m with a config.json. A small GPT-2 stands in
 * for the 124M weights (the suite's shape set to it) and the synthetic task
 * for the paper's (no data needed): the lookup is what is tested. */
Test(paper_path, fetch_then_prepare_finds_the_files) {
  const char *data = shared_or_skip();
  make_mirror(data, "gpt2-tiny");
  char *err = NULL;
  cr_assert_eq(fetch(&err), 0, "dfpo fetch failed: %s", err);
  free(err);
  /* the issue's own words: before, prepare said encoder.json was missing */
  char out[400];
  snprintf(out, sizeof out, "%s/out", dir);
  const char *prep[] = {"reproduce", "--suite",
                        "paper",     "--prepare-only",
                        "--device",  "cpu",
                        "--out",     out,
                        "--set",     "suite.tasks=synthetic",
                        "--set",     "model.n_layer=2",
                        "--set",     "model.n_head=2",
                        "--set",     "model.n_embd=64",
                        "--set",     "model.block_size=512",
                        NULL};
  int rc = ts_dfpo_in(home, prep, env, &err);
  cr_assert_eq(rc, 0, "prepare failed (%d): %s", rc, err);
  cr_expect_null(strstr(err, "is missing"), "%s", err);
  free(err);
  char path[600];
  snprintf(path, sizeof path, "%s/paper/base-synthetic.json", out);
  cJSON *b = ts_read_json(path);
  char want[600];
  snprintf(want, sizeof want, "%s/assets/gpt2-tokenizer", home);
  cr_expect_str_eq(ts_json_str(b, "tokenizer"), want);
  snprintf(want, sizeof want, "%s/assets/gpt2-124m/model.safetensors", home);
  cr_expect_str_eq(ts_json_str(b, "model"), want);
  cJSON_Delete(b);
  const char *files[] = {"gpt2-tokenizer/encoder.json", "gpt2-tokenizer/vocab.bpe",
                         "gpt2-124m/model.safetensors", "gpt2-124m/config.json"};
  struct stat st;
  for (int i = 0; i < 4; i++) {
    snprintf(path, sizeof path, "%s/assets/%s", home, files[i]);
    cr_expect_eq(stat(path, &st), 0, "%s is missing", path);
  }
  /* the tokenizer folder is one --tokenizer for the commands that take one */
  snprintf(path, sizeof path, "%s/assets/gpt2-tokenizer", home);
  char *enc[] = {"tokenizer", "encode", "--tokenizer", path, NULL};
  ts_run r;
  ts_dfpo_home(&r, home, enc, "Hello world");
  cr_expect_eq(r.status, 0, "dfpo tokenizer encode on the folder: %s", r.err);
  cr_expect_str_eq(r.out, "15496 995\n"); /* GPT-2's ids of "Hello" and " world" */
  ts_run_free(&r);
}

/* lvwerra/gpt2-imdb is not pinned: fetch refuses it, saying what to do;
 * a folder with only a pytorch_model.bin and no config.json is refused as
 * not a Hugging Face folder (model.safetensors or pytorch_model.bin are
 * both read: tests/trainer/test_pt_bin.c), and one that
 * is a Hugging Face GPT-2 folder (config.json, model.safetensors, and
 * vocab.json + merges.txt) is taken as the task's base and tokenizer, from
 * its path and from a hub name (a loopback hub serving the folder); the
 * same weights as a pytorch_model.bin alone are the base's weights file. */
Test(paper_path, gpt2_imdb_from_a_folder) {
  const char *data = shared_or_skip();
  char *err = NULL;
  const char *f[] = {"fetch", "gpt2-imdb", NULL};
  cr_expect_neq(ts_dfpo_in(home, f, NULL, &err), 0);
  cr_expect(strstr(err, "not pinned") && strstr(err, "--base-model imdb=FOLDER"), "%s", err);
  free(err);
  char bin[400], folder[400], base[500], path[600], out[400];
  snprintf(out, sizeof out, "%s/out", dir);
  snprintf(bin, sizeof bin, "%s/bin-only", dir);
  cr_assert_eq(mkdir(bin, 0777), 0);
  snprintf(path, sizeof path, "%s/pytorch_model.bin", bin);
  ts_write_text(path, "not read");
  snprintf(base, sizeof base, "synthetic=%s", bin);
  const char *prep[] = {
      "reproduce",    "--suite", "paper", "--prepare-only", "--device",
      "cpu",          "--out",   out,     "--set",          "suite.tasks=synthetic",
      "--base-model", base,      NULL};
  cr_expect_neq(ts_dfpo_in(home, prep, NULL, &err), 0);
  cr_expect(strstr(err, "bin-only") && strstr(err, "not a Hugging Face model folder"), "%s", err);
  free(err);
  snprintf(folder, sizeof folder, "%s/gpt2-imdb", dir);
  hf_folder(data, "gpt2-tiny", 2, folder);
  snprintf(base, sizeof base, "synthetic=%s", folder);
  cr_assert_eq(ts_dfpo_in(home, prep, NULL, &err), 0, "%s", err);
  free(err);
  snprintf(path, sizeof path, "%s/paper/base-synthetic.json", out);
  cJSON *b = ts_read_json(path);
  cr_expect_str_eq(ts_json_str(b, "tokenizer"), folder);
  snprintf(path, sizeof path, "%s/model.safetensors", folder);
  cr_expect_str_eq(ts_json_str(b, "model"), path);
  cJSON_Delete(b);

  /* the same weights as a pytorch_model.bin only (torch.save of the
   * safetensors' tensors, as lvwerra/gpt2-imdb holds them): taken as the
   * base's weights file */
  if (bt_have_python(1)) {
    char binf[400], cmd[2400];
    snprintf(binf, sizeof binf, "%s/gpt2-imdb-bin", dir);
    cr_assert_eq(mkdir(binf, 0777), 0);
    static const char *const keep[] = {"config.json", "vocab.json", "merges.txt"};
    for (int i = 0; i < 3; i++) {
      char s[600], d[600];
      snprintf(s, sizeof s, "%s/%s", folder, keep[i]);
      snprintf(d, sizeof d, "%s/%s", binf, keep[i]);
      copy(s, d);
    }
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c 'import sys, torch; sys.path.insert(0, \"%s/bench\"); "
             "from gpt2_torch import read_safetensors; w, _ = read_safetensors(\"%s/"
             "model.safetensors\"); torch.save({\"transformer.\" + k: v for k, v in w.items()}, "
             "\"%s/pytorch_model.bin\")'",
             DFPO_SOURCE_DIR, folder, binf);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    snprintf(base, sizeof base, "synthetic=%s", binf);
    snprintf(out, sizeof out, "%s/out-bin", dir);
    cr_assert_eq(ts_dfpo_in(home, prep, NULL, &err), 0, "%s", err);
    free(err);
    snprintf(path, sizeof path, "%s/paper/base-synthetic.json", out);
    b = ts_read_json(path);
    snprintf(path, sizeof path, "%s/pytorch_model.bin", binf);
    cr_expect_str_eq(ts_json_str(b, "model"), path);
    cJSON_Delete(b);
  }

  /* the same folder as a hub name, served by a loopback hub: --base-model
   * TASK=OWNER/NAME fetches it into the cache and takes it from there */
  const char *names[] = {"config.json", "model.safetensors", "vocab.json", "merges.txt"};
  tl_hub h;
  tl_hub_serve_folder(&h, "lvwerra", "gpt2-imdb", "71c46c805a6f1f373e843782e67ed29cdf135d37",
                      folder, names, 4, 1, 16);
  snprintf(base, sizeof base, "synthetic=lvwerra/gpt2-imdb");
  snprintf(out, sizeof out, "%s/out-hub", dir);
  int rc = ts_dfpo_in(home, prep, NULL, &err);
  tl_hub_stop(&h);
  cr_assert_eq(rc, 0, "%s", err);
  free(err);
  snprintf(path, sizeof path, "%s/paper/base-synthetic.json", out);
  b = ts_read_json(path);
  char hub[500];
  snprintf(hub, sizeof hub, "%s/hub/lvwerra--gpt2-imdb/71c46c805a6f1f373e843782e67ed29cdf135d37",
           home);
  cr_expect_str_eq(ts_json_str(b, "tokenizer"), hub);
  snprintf(path, sizeof path, "%s/model.safetensors", hub);
  cr_expect_str_eq(ts_json_str(b, "model"), path);
  cJSON_Delete(b);
}

/* The first n lines of src into dst. */
static void head(const char *src, const char *dst, int n) {
  char cmd[1400];
  snprintf(cmd, sizeof cmd, "head -n %d '%s' > '%s'", n, src, dst);
  cr_assert_eq(system(cmd), 0, "%s", cmd);
}

static void import_unverified(const char *name, const char *path) {
  char *err = NULL;
  const char *args[] = {"datasets", "import", name, path, "--unverified", NULL};
  cr_assert_eq(ts_dfpo_in(home, args, env, &err), 0, "import %s: %s", name, err);
  free(err);
}

/* The paper dry run (configs/paper.json's suite.dry_run: one seed, one
 * iteration, a few prompts and tokens) at a GPT-2 `shape`, over `ntasks`
 * tasks x `nalgos` algorithms (NULL lists: the whole matrix, 3 tasks x 10
 * algorithms): every cell done, results.json with every task x algorithm,
 * the report's tables and deviations. The IMDB base comes from a folder
 * (--base-model, as lvwerra/gpt2-imdb would), the others from the fetched
 * gpt2-124m. */
static void dry_run(const char *shape, int ntasks, const char *const *tasks_in, int nalgos,
                    const char *const *algos_in) {
  const char *data = shared_or_skip();
  int big = !strcmp(shape, "gpt2-124M");
  static const char *const all_tasks[] = {"imdb", "rtp", "commongen"};
  static const char *const all_algos[] = {
      "zero-shot", "sft",          "ppo",          "nlpo",        "dfpo",
      "ppo-beta0", "ppo-beta0.01", "ppo-beta0.05", "ppo-beta0.2", "ppo-beta0.5"};
  const char *const *tasks = tasks_in ? tasks_in : all_tasks;
  const char *const *algos = algos_in ? algos_in : all_algos;
  if (!tasks_in)
    ntasks = 3;
  if (!algos_in)
    nalgos = 10;
  char task_list[200] = "suite.tasks=", algo_list[300] = "suite.algos=";
  for (int t = 0; t < ntasks; t++)
    snprintf(task_list + strlen(task_list), sizeof task_list - strlen(task_list), "%s%s",
             t ? "," : "", tasks[t]);
  for (int a = 0; a < nalgos; a++)
    snprintf(algo_list + strlen(algo_list), sizeof algo_list - strlen(algo_list), "%s%s",
             a ? "," : "", algos[a]);
  time_t t0 = time(NULL);
  make_mirror(data, shape);
  char *err = NULL;
  cr_assert_eq(fetch(&err), 0, "dfpo fetch failed: %s", err);
  free(err);
  /* the IMDB base policy as a folder the user has */
  char folder[400], src[600], path[600];
  snprintf(folder, sizeof folder, "%s/gpt2-imdb", dir);
  hf_folder(data, shape, 2, folder);
  /* a few records of each dataset, imported (--unverified: a part) */
  char d[400];
  snprintf(d, sizeof d, "%s/imdb", dir);
  ts_imdb_slice(data, d, NULL, 20, 8, 4);
  import_unverified("imdb", d);
  snprintf(d, sizeof d, "%s/rtp/realtoxicityprompts-data", dir);
  char cmd[600];
  snprintf(cmd, sizeof cmd, "mkdir -p '%s'", d);
  cr_assert_eq(system(cmd), 0);
  snprintf(src, sizeof src, "%s/rtp/rtp_pooled.jsonl", data);
  snprintf(path, sizeof path, "%s/prompts.jsonl", d);
  head(src, path, 300);
  snprintf(d, sizeof d, "%s/rtp", dir);
  import_unverified("rtp", d);
  snprintf(d, sizeof d, "%s/commongen", dir);
  cr_assert_eq(mkdir(d, 0777), 0);
  const char *cg[] = {"commongen.train.jsonl", "commongen.dev.jsonl", "commongen.test_noref.jsonl"};
  for (int i = 0; i < 3; i++) {
    snprintf(src, sizeof src, "%s/commongen/%s", data, cg[i]);
    snprintf(path, sizeof path, "%s/%s", d, cg[i]);
    head(src, path, 60);
  }
  import_unverified("commongen", d);
  time_t t1 = time(NULL);

  /* CommonGen's base, t5-base at its commit, from a loopback hub */
  int commongen = 0;
  for (int t = 0; t < ntasks; t++)
    commongen |= !strcmp(tasks[t], "commongen");
  char t5dir[400];
  tl_hub hub;
  snprintf(t5dir, sizeof t5dir, "%s/t5-base", dir);
  if (commongen) {
    if (!ts_python_has("torch, sentencepiece"))
      cr_skip_test("/usr/bin/python3 lacks torch or sentencepiece: no stand-in for CommonGen's "
                   "t5-base (its spiece.model) can be made");
    /* a T5 v1.0 (t5-base's kind: ReLU, tied) of a tiny shape */
    char spm[500];
    snprintf(spm, sizeof spm, "%s-spm", t5dir);
    tt_random_t5_folder(spm, t5dir,
                        (t5_config){.d_model = 32,
                                    .d_kv = 8,
                                    .d_ff = 48,
                                    .n_head = 2,
                                    .n_layer = 2,
                                    .n_dec_layer = 2,
                                    .num_buckets = 32,
                                    .max_distance = 128,
                                    .eps = 1e-6f,
                                    .gated = 0,
                                    .tied = 1,
                                    .n_pos = 512,
                                    .start_id = 0,
                                    .eos_id = 1},
                        3);
    const char *names[] = {"config.json", "model.safetensors", "spiece.model"};
    tl_hub_serve_folder(&hub, T5_OWNER, T5_NAME, T5_COMMIT, t5dir, names, 3, 1, 64);
  }

  char out[400], base[500];
  snprintf(out, sizeof out, "%s/out", dir);
  snprintf(base, sizeof base, "imdb=%s", folder);
  const char *run[24] = {"reproduce",    "--suite", "paper", "--dry-run", "--out", out,
                         "--base-model", base,      "--set", task_list,   "--set", algo_list};
  int na = 12;
  if (!big) {
    static const char *const tiny[] = {"model.n_layer=2", "model.n_head=2", "model.n_embd=64",
                                       "model.block_size=512"};
    for (int i = 0; i < 4; i++) {
      run[na++] = "--set";
      run[na++] = tiny[i];
    }
  }
  run[na] = NULL;
  int rc = ts_dfpo_in(home, run, env, &err);
  time_t t2 = time(NULL);
  if (commongen)
    tl_hub_stop(&hub);
  cr_log_info("paper dry run at %s: %lld s to make the mirror, fetch and import; %lld s for "
              "reproduce",
              shape, (long long)(t1 - t0), (long long)(t2 - t1));
  cr_assert_eq(rc, 0, "the dry run failed (%d): %s", rc, err);
  free(err);

  struct stat st;
  for (int t = 0; t < ntasks; t++)
    for (int a = 0; a < nalgos; a++) {
      snprintf(path, sizeof path, "%s/paper-dryrun/%s/%s/seed-0/DONE", out, tasks[t], algos[a]);
      cr_expect_eq(stat(path, &st), 0, "%s is missing", path);
    }
  snprintf(path, sizeof path, "%s/paper-dryrun/report/results.json", out);
  cJSON *r = ts_read_json(path);
  const cJSON *rt = cJSON_GetObjectItemCaseSensitive(r, "tasks"), *to, *vo;
  cr_assert_eq(cJSON_GetArraySize(rt), ntasks, "results.json: not %d tasks", ntasks);
  int cells = 0;
  cJSON_ArrayForEach(to, rt) {
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(to, "variants")), nalgos,
                 "%s: not %d variants", ts_json_str(to, "task"), nalgos);
    cJSON_ArrayForEach(vo, cJSON_GetObjectItem(to, "variants")) {
      int known = 0;
      for (int a = 0; a < nalgos; a++)
        known |= !strcmp(ts_json_str(vo, "variant"), algos[a]);
      cr_expect(known, "results.json: variant %s", ts_json_str(vo, "variant"));
      cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(vo, "seeds")), 1, "%s/%s: no seed done",
                   ts_json_str(to, "task"), ts_json_str(vo, "variant"));
      cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(vo, "missing")), 0, "%s/%s missing",
                   ts_json_str(to, "task"), ts_json_str(vo, "variant"));
      cells++;
    }
  }
  cr_expect_eq(cells, ntasks * nalgos);
  cJSON_Delete(r);
  snprintf(path, sizeof path, "%s/paper-dryrun/report/report.md", out);
  char *md = ts_slurp(path);
  for (int t = 0; t < ntasks; t++)
    cr_expect(strstr(md, tasks[t]) != NULL, "report.md lacks %s", tasks[t]);
  /* CommonGen's policy is T5, as RL4LMs': no "Policy:" note */
  cr_expect(strstr(md, "Policy: a") == NULL, "report.md has a policy note:\n%s", md);
  for (int a = 0; a < nalgos; a++) {
    /* rows by display name: "PPO (β = 0.01)" for ppo-beta0.01 */
    static const char *const shown[][2] = {{"zero-shot", "Zero-shot"},
                                           {"sft", "SFT"},
                                           {"ppo", "PPO"},
                                           {"nlpo", "NLPO"},
                                           {"dfpo", "DfPO"}};
    char row[64] = "";
    for (size_t k = 0; k < sizeof shown / sizeof shown[0]; k++)
      if (!strcmp(algos[a], shown[k][0]))
        snprintf(row, sizeof row, "| %s |", shown[k][1]);
    if (!strncmp(algos[a], "ppo-beta", 8))
      snprintf(row, sizeof row, "| PPO (β = %s) |", algos[a] + 8);
    cr_expect(row[0] && strstr(md, row) != NULL, "report.md has no table row for %s", algos[a]);
  }
  /* every deviation the suite declares is printed (configs/paper.json's
   * suite.deviations, read back from the run's suite.json) */
  snprintf(path, sizeof path, "%s/paper-dryrun/suite.json", out);
  cJSON *sj = ts_read_json(path);
  const cJSON *dev = cJSON_GetObjectItem(cJSON_GetObjectItem(sj, "suite"), "deviations"), *dv;
  cr_expect_gt(cJSON_GetArraySize(dev), 0, "the paper suite declares no deviations");
  cJSON_ArrayForEach(dv, dev) {
    cr_expect(strstr(md, dv->valuestring) != NULL, "report.md lacks the deviation '%s'",
              dv->valuestring);
  }
  cJSON_Delete(sj);
  free(md);
  /* the dry run's budgets hold in every cell, over the suite's task
   * settings (commongen/ppo asks for 200 iterations and n_steps 256) */
  /* the bases: imdb's from the folder, the others from the fetched asset,
   * each with its judge where the task has one */
  snprintf(path, sizeof path, "%s/paper-dryrun/base-imdb.json", out);
  cJSON *bi = ts_read_json(path);
  snprintf(path, sizeof path, "%s/model.safetensors", folder);
  cr_expect_str_eq(ts_json_str(bi, "model"), path);
  cr_expect_neq(ts_json_str(bi, "judge")[0], '\0');
  cJSON_Delete(bi);
  if (tasks_in || algos_in) {
    cr_log_info("a part of the matrix: the commongen/ppo and rtp checks are the whole run's");
    return;
  }
  snprintf(path, sizeof path, "%s/paper-dryrun/commongen/ppo/seed-0/config.json", out);
  cJSON *cc = ts_read_json(path);
  const cJSON *tr = cJSON_GetObjectItem(cc, "train");
  cr_expect_eq(cJSON_GetObjectItem(tr, "iterations")->valuedouble, 1);
  cr_expect_eq(cJSON_GetObjectItem(tr, "n_steps")->valuedouble, 4);
  cr_expect_str_eq(ts_json_str(tr, "rollout"), "buffer");
  cJSON_Delete(cc);
  /* CommonGen's: the T5 fetched at the pinned commit, its own tokenizer */
  snprintf(path, sizeof path, "%s/paper-dryrun/base-commongen.json", out);
  cJSON *b = ts_read_json(path);
  char hubdir[500];
  snprintf(hubdir, sizeof hubdir, "%s/hub/" T5_OWNER "--" T5_NAME "/" T5_COMMIT, home);
  snprintf(path, sizeof path, "%s/model.safetensors", hubdir);
  cr_expect_str_eq(ts_json_str(b, "model"), path);
  cr_expect_str_eq(ts_json_str(b, "tokenizer"), hubdir);
  cr_expect_str_eq(ts_json_str(b, "arch"), "t5");
  cJSON_Delete(b);
  /* its PPO keeps the start of a long prompt (RL4LMs' t5_ppo.yml), its
   * NLPO the end (t5_nlpo.yml) */
  static const char *const cut[][2] = {{"ppo", "right"}, {"nlpo", "left"}};
  for (int i = 0; i < 2; i++) {
    snprintf(path, sizeof path, "%s/paper-dryrun/commongen/%s/seed-0/config.json", out, cut[i][0]);
    cc = ts_read_json(path);
    cr_expect_str_eq(ts_json_str(cJSON_GetObjectItem(cc, "task"), "prompt_truncation"), cut[i][1],
                     "commongen/%s", cut[i][0]);
    cJSON_Delete(cc);
  }
  snprintf(path, sizeof path, "%s/paper-dryrun/base-rtp.json", out);
  b = ts_read_json(path);
  cr_expect(strstr(ts_json_str(b, "model"), "assets/gpt2-124m/model.safetensors") != NULL, "%s",
            ts_json_str(b, "model"));
  cr_expect_str_eq(ts_json_str(b, "arch"), "gpt2");
  cr_expect_neq(ts_json_str(b, "judge")[0], '\0');
  cJSON_Delete(b);

  /* pointed at a Hugging Face classifier as the paper's IMDB judge (a
   * random DistilBERT folder standing in for lvwerra/distilbert-imdb):
   * no trained judge, every cell and the report name the folder */
  if (!bt_have_python(1)) {
    cr_log_warn("/usr/bin/python3 has no torch module: the paper suite with a classifier judge "
                "is skipped");
    return;
  }
  char hf[400], jset[500], out2[400];
  snprintf(hf, sizeof hf, "%s/distilbert-imdb", dir);
  cJSON *spec = cJSON_CreateObject(), *fs = cJSON_AddArrayToObject(spec, "folders");
  cJSON *f = bt_folder(hf, "distilbert", 1, 32, 2, 64, 512, 4,
                       (const char *[]){"NEGATIVE", "POSITIVE"}, 2);
  cJSON_AddItemToArray(fs, f);
  cJSON_Delete(bt_reference(dir, spec));
  cJSON_Delete(spec);
  snprintf(out2, sizeof out2, "%s/out-hf", dir);
  snprintf(jset, sizeof jset, "task.judge.sentiment_model=%s", hf);
  const char *run2[] = {"reproduce",
                        "--suite",
                        "paper",
                        "--dry-run",
                        "--out",
                        out2,
                        "--base-model",
                        base,
                        "--set",
                        "suite.tasks=[\"imdb\"]",
                        "--set",
                        "suite.algos=[\"zero-shot\",\"dfpo\"]",
                        "--set",
                        jset,
                        big ? NULL : "--set",
                        "model.n_layer=2",
                        "--set",
                        "model.n_head=2",
                        "--set",
                        "model.n_embd=64",
                        "--set",
                        "model.block_size=512",
                        NULL};
  rc = ts_dfpo_in(home, run2, env, &err);
  cr_assert_eq(rc, 0, "the dry run with a classifier judge failed (%d): %s", rc, err);
  free(err);
  snprintf(path, sizeof path, "%s/paper-dryrun/base-imdb.json", out2);
  b = ts_read_json(path);
  cr_expect_str_eq(ts_json_str(b, "judge"), "", "no trained judge");
  cJSON_Delete(b);
  static const char *const two[] = {"zero-shot", "dfpo"};
  for (int a = 0; a < 2; a++) {
    snprintf(path, sizeof path, "%s/paper-dryrun/imdb/%s/seed-0/eval.json", out2, two[a]);
    cJSON *ev = ts_read_json(path);
    const cJSON *j = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(ev, "judges"), 0);
    cr_expect_str_eq(ts_json_str(j, "kind"), "huggingface");
    cr_expect_str_eq(ts_json_str(j, "dir"), hf);
    cJSON_Delete(ev);
  }
  snprintf(path, sizeof path, "%s/paper-dryrun/report/report.md", out2);
  md = ts_slurp(path);
  char want[600];
  snprintf(want, sizeof want, "Judge: Hugging Face classifier %s (distilbert, label POSITIVE", hf);
  cr_expect(strstr(md, want) != NULL, "report.md lacks '%s':\n%s", want, md);
  cr_expect(strstr(md, "Judges trained by the harness") == NULL, "%s", md);
  free(md);
}

/* The whole matrix, every cell and every step, at GPT-2's small test shape
 * (gpt2-tiny: 2 layers, width 64, the GPT-2 vocabulary and tokenizer; the
 * suite's model.* set to it), which CI's time allows; at GPT-2 124M with
 * DFPO_PAPER_DRYRUN_124M=1 (docs/suites.md, "The dry run"). */
Test(paper_path, dry_run_of_the_whole_matrix) {
#if defined(__SANITIZE_ADDRESS__)
  cr_skip_test("the paper dry run is too slow under the sanitizers; the normal build runs it");
#endif
  int big = getenv("DFPO_PAPER_DRYRUN_124M") && !strcmp(getenv("DFPO_PAPER_DRYRUN_124M"), "1");
  dry_run(big ? "gpt2-124M" : "gpt2-tiny", 0, NULL, 0, NULL);
}

/* The real shape in CI: GPT-2 124M, every algorithm family on the IMDB
 * task (its base from a folder, its judge trained, the rollout buffer). */
Test(paper_path, dry_run_at_gpt2_124m) {
#if defined(__SANITIZE_ADDRESS__)
  cr_skip_test("the paper dry run is too slow under the sanitizers; the normal build runs it");
#endif
  static const char *const tasks[] = {"imdb"};
  static const char *const algos[] = {"zero-shot", "sft", "ppo", "nlpo", "dfpo"};
  dry_run("gpt2-124M", 1, tasks, 5, algos);
}
