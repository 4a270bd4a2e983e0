/* Hub names through the dfpo command: `dfpo fetch OWNER/MODEL --lock`, the
 * lock replayed into another cache without the API, and a DistilBERT judge
 * scored by `dfpo judge score --model OWNER/NAME` from the loopback hub
 * (tests/datasets/testlib.c, 127.0.0.1, bounded requests and seconds). The
 * folder is the random-weight DistilBERT tests/trainer/bert_reference.py
 * writes, and the probabilities are held to that script's PyTorch forward
 * pass (within 1e-5, as tests/trainer/test_bert.c holds them); the script
 * needs /usr/bin/python3 with torch, and the test skips without it. */
#include "datasets/datasets.h"
#include "tests/datasets/testlib.h"
#include "tests/support/support.h"
#include "tests/trainer/bert_testutil.h"
#include "trainer/gpt2.h"
#include "trainer/tok.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define REPO "acme/tiny-distilbert"
#define COMMIT "89abcdef0123456789abcdef0123456789abcdef"

static const char *const texts[] = {"the movie was great", "not bad, not bad at all",
                                    "hello world!"};
enum { NTEXTS = 3 };

/* The command's --json lines against the reference's probabilities. */
static void expect_probs(const char *out, const cJSON *tp) {
  const char *line = out;
  for (int i = 0; i < NTEXTS; i++) {
    const char *nl = strchr(line, '\n');
    cr_assert_not_null(nl, "line %d missing: %s", i, out);
    cJSON *o = cJSON_ParseWithLength(line, (size_t)(nl - line));
    cr_assert(cJSON_IsObject(o), "line %d: %.*s", i, (int)(nl - line), line);
    const char *names[2] = {"NEGATIVE", "POSITIVE"};
    for (int k = 0; k < 2; k++) {
      double got = cJSON_GetObjectItem(o, names[k])->valuedouble;
      double want = cJSON_GetArrayItem(cJSON_GetArrayItem(tp, i), k)->valuedouble;
      cr_expect_lt(fabs(got - want), 1e-5, "text %d %s: %g, PyTorch %g", i, names[k], got, want);
    }
    cJSON_Delete(o);
    line = nl + 1;
  }
  cr_expect_str_eq(line, "");
}

static void run(ts_run *r, const char *home, const char *const *args, const char *env1) {
  char eh[600];
  snprintf(eh, sizeof eh, "DFPO_HOME=%s", home);
  char *argv[16] = {(char *)DFPO_BIN};
  int n = 1;
  for (; args[n - 1]; n++)
    argv[n] = (char *)args[n - 1];
  argv[n] = NULL;
  char *env[] = {eh, "OMP_NUM_THREADS=1", (char *)env1, NULL};
  ts_run_cmd(r, argv, NULL, env);
}

Test(hub_cli, fetch_lock_replay_and_a_judge_by_name, .timeout = 300) {
  if (!bt_have_python(1))
    cr_skip_test("needs /usr/bin/python3 with torch (the reference forward pass)");
  char tmp[256], src[400], input[400], lock[400], home[3][400];
  ts_tmpdir(tmp, sizeof tmp);
  snprintf(src, sizeof src, "%s/src", tmp);
  snprintf(input, sizeof input, "%s/texts.txt", tmp);
  snprintf(lock, sizeof lock, "%s/models.lock.json", tmp);
  for (int i = 0; i < 3; i++)
    snprintf(home[i], sizeof home[i], "%s/home%d", tmp, i);
  setenv("DFPO_LOG", "warn", 1);
  unsetenv("HF_TOKEN");
  unsetenv("HF_HUB_OFFLINE");
  unsetenv("DFPO_HUB_OFFLINE");
  setenv("DFPO_FETCH_BACKOFF_MS", "10", 1);

  /* the model: a random DistilBERT folder and PyTorch's probabilities */
  cJSON *spec = cJSON_CreateObject(), *fs = cJSON_AddArrayToObject(spec, "folders");
  const char *labels[2] = {"NEGATIVE", "POSITIVE"};
  cJSON *s = bt_folder(src, "distilbert", 2, 16, 2, 32, 32, 19, labels, 2);
  cJSON_AddItemToObject(s, "texts", cJSON_CreateStringArray(texts, NTEXTS));
  cJSON_AddItemToArray(fs, s);
  cJSON *ref = bt_reference(tmp, spec);
  const cJSON *tp = cJSON_GetObjectItem(cJSON_GetObjectItem(ref, src), "text_probs");
  cr_assert(cJSON_GetArraySize(tp) == NTEXTS);
  FILE *fp = fopen(input, "w");
  for (int i = 0; i < NTEXTS; i++)
    fprintf(fp, "%s\n", texts[i]);
  fclose(fp);

  /* the hub serves the folder's files */
  const char *names[] = {"config.json", "model.safetensors", "tokenizer_config.json", "vocab.txt"};
  tl_hub h;
  tl_hub_serve_folder(&h, "acme", "tiny-distilbert", COMMIT, src, names, 4, 1, 40);

  ts_run r;
  const char *fetch[] = {"fetch", REPO "@main", "--lock", lock, "--no-progress", NULL};
  run(&r, home[0], fetch, NULL);
  cr_assert_eq(r.status, 0, "%s", r.err);
  char want_dir[600];
  snprintf(want_dir, sizeof want_dir, "%s/hub/acme--tiny-distilbert/" COMMIT, home[0]);
  cr_expect(strstr(r.out, REPO "@main: fetched, commit " COMMIT ", 4 files") &&
                strstr(r.out, want_dir) && strstr(r.out, "recorded in"),
            "%s", r.out);
  ts_run_free(&r);
  cJSON *l = ts_read_json(lock);
  const cJSON *e = cJSON_GetArrayItem(cJSON_GetObjectItem(l, "models"), 0);
  cr_expect_str_eq(ts_json_str(e, "name"), REPO);
  cr_expect_str_eq(ts_json_str(e, "commit"), COMMIT);
  cJSON_Delete(l);

  /* the judge by name: the cache has it, no request is needed */
  const char *score[] = {"judge", "score", "--model", REPO, "--input", input, "--json", NULL};
  run(&r, home[0], score, "HF_HUB_OFFLINE=1");
  cr_assert_eq(r.status, 0, "%s", r.err);
  expect_probs(r.out, tp);
  char *first = strdup(r.out);
  ts_run_free(&r);

  /* a cache without it: fetched on the way */
  const char *score_main[] = {"judge",   "score", "--model", REPO "@main",
                              "--input", input,   "--json",  NULL};
  run(&r, home[1], score_main, NULL);
  cr_assert_eq(r.status, 0, "%s", r.err);
  cr_expect_str_eq(r.out, first);
  ts_run_free(&r);
  tl_hub_stop(&h);

  /* another machine: the lock alone, the hub without its API */
  tl_hub_serve_folder(&h, "acme", "tiny-distilbert", COMMIT, src, names, 4, 0, 20);
  const char *replay[] = {"fetch", "--lock", lock, "--no-progress", NULL};
  run(&r, home[2], replay, NULL);
  int api = 0;
  for (int i = 0; i < tl_server_requests(h.s); i++)
    api += !strncmp(tl_server_path(h.s, i), "/api/", 5);
  tl_hub_stop(&h);
  cr_assert_eq(r.status, 0, "%s", r.err);
  cr_expect(strstr(r.out, REPO "@main: fetched as locked, commit " COMMIT), "%s", r.out);
  cr_expect_eq(api, 0);
  ts_run_free(&r);
  run(&r, home[2], score_main, "HF_HUB_OFFLINE=1");
  cr_assert_eq(r.status, 0, "%s", r.err);
  cr_expect_str_eq(r.out, first);
  ts_run_free(&r);

  /* offline, a name the cache lacks: the URL and the command */
  const char *gen[] = {"generate", "--model", "acme/missing", "--tokens", input, NULL};
  run(&r, home[2], gen, "HF_HUB_OFFLINE=1");
  cr_expect_eq(r.status, 2, "%s", r.err);
  cr_expect(strstr(r.err, "`dfpo fetch acme/missing`") &&
                strstr(r.err, "/api/models/acme/missing/revision/main"),
            "%s", r.err);
  ts_run_free(&r);
  const char *bad[] = {"fetch", "imdb", "--lock", lock, NULL};
  run(&r, home[2], bad, NULL);
  cr_expect_eq(r.status, 1, "%s", r.err);
  cr_expect(strstr(r.err, "--lock records hub models"), "%s", r.err);
  ts_run_free(&r);
  const char *help[] = {"fetch", "--help", NULL};
  run(&r, home[2], help, NULL);
  cr_expect(r.status == 0 && strstr(r.out, "OWNER/MODEL[@REVISION]") &&
                strstr(r.out, "--lock FILE"),
            "%s", r.out);
  ts_run_free(&r);

  free(first);
  cJSON_Delete(ref);
  cJSON_Delete(spec);
  ts_rmtree(tmp);
}

/* The set-up of the GPT-2 tests below: tmp and its paths (src the model
 * folder, tokens the token ids to score, home the cache), the environment
 * of a run against the loopback hub, and a random gpt2-tiny (seed) written
 * to src as config.json + model.safetensors; the model is the caller's. */
static model_t *gpt2_setup(char *tmp, char *src, char *tokens, char *home, uint64_t seed) {
  ts_tmpdir(tmp, 256);
  snprintf(src, 400, "%s/gpt2", tmp);
  snprintf(tokens, 400, "%s/tokens.txt", tmp);
  snprintf(home, 400, "%s/home", tmp);
  setenv("DFPO_LOG", "warn", 1);
  unsetenv("HF_TOKEN");
  unsetenv("HF_HUB_OFFLINE");
  unsetenv("DFPO_HUB_OFFLINE");
  setenv("DFPO_FETCH_BACKOFF_MS", "10", 1);
  cr_assert_eq(mkdir(src, 0777), 0);
  gpt2_config c;
  model_t *m = NULL;
  dfpo_err err;
  cr_assert_eq(gpt2_config_named(&c, "gpt2-tiny", &err), DFPO_OK, "%s", err.msg);
  cr_assert_eq(gpt2_new(&m, &c, &err), DFPO_OK, "%s", err.msg);
  model_init_random(m, seed);
  char path[600];
  snprintf(path, sizeof path, "%s/model.safetensors", src);
  cr_assert_eq(model_export_safetensors(m, path, 1, &err), DFPO_OK, "%s", err.msg);
  ts_write_text(tokens, "464 3797 318 257 1332 13\n40 588 340\n");
  return m;
}

/* A GPT-2 policy by its hub name: `dfpo perplexity --model OWNER/NAME`
 * fetches the folder (config.json + model.safetensors, written by dfpo's
 * exporter) from the loopback hub into the cache and scores the same
 * token ids to the same numbers as the folder given by path. */
Test(hub_cli, a_gpt2_policy_by_name, .timeout = 120) {
  char tmp[256], src[400], tokens[400], home[400], path[600];
  dfpo_err err;
  model_free(gpt2_setup(tmp, src, tokens, home, 5));

  const char *names[] = {"config.json", "model.safetensors"};
  tl_hub h;
  tl_hub_serve_folder(&h, "acme", "tiny-gpt2", COMMIT, src, names, 2, 1, 20);
  ts_run a, b;
  const char *by_name[] = {"perplexity", "--model", "acme/tiny-gpt2", "--tokens", tokens, NULL};
  run(&a, home, by_name, NULL);
  tl_hub_stop(&h);
  cr_assert_eq(a.status, 0, "%s", a.err);
  const char *by_path[] = {"perplexity", "--model", src, "--tokens", tokens, NULL};
  run(&b, home, by_path, NULL);
  cr_assert_eq(b.status, 0, "%s", b.err);
  cr_expect(strstr(a.out, "nll_sum "), "%s", a.out);
  cr_expect_str_eq(a.out, b.out, "by name: %s\nby path: %s", a.out, b.out);
  ts_run_free(&b);
  snprintf(path, sizeof path, "%s/hub/acme--tiny-gpt2/" COMMIT "/model.safetensors", home);
  struct stat st;
  cr_expect_eq(stat(path, &st), 0, "%s is not in the cache", path);

  /* `dfpo export --model OWNER/NAME` takes the cached folder (offline: the
   * hub is gone) and writes a folder that scores the same */
  char corpus[400], tokdir[400], out[400];
  snprintf(corpus, sizeof corpus, "%s/corpus.txt", tmp);
  snprintf(tokdir, sizeof tokdir, "%s/tok", tmp);
  snprintf(out, sizeof out, "%s/exported", tmp);
  ts_write_text(corpus, "the hub serves the model and the cache keeps it\n");
  const char *files[1] = {corpus};
  cr_assert_eq(tok_train(files, 1, 262, tokdir, NULL, &err), 0, "%s", err.msg);
  setenv("DFPO_HUB_OFFLINE", "1", 1);
  const char *export[] = {"export", "--model", "acme/tiny-gpt2", "--tokenizer", tokdir, "--out",
                          out,      NULL};
  run(&b, home, export, NULL);
  cr_assert_eq(b.status, 0, "%s", b.err);
  ts_run_free(&b);
  /* without the prepended <|endoftext|>: the exported config names the
   * tokenizer's (261), the served one GPT-2's */
  ts_run_free(&a);
  const char *name_nobos[] = {"perplexity", "--model", "acme/tiny-gpt2", "--tokens", tokens,
                              "--no-bos",   NULL};
  run(&a, home, name_nobos, NULL);
  cr_assert_eq(a.status, 0, "%s", a.err);
  const char *by_export[] = {"perplexity", "--model", out, "--tokens", tokens, "--no-bos", NULL};
  run(&b, home, by_export, NULL);
  unsetenv("DFPO_HUB_OFFLINE");
  cr_assert_eq(b.status, 0, "%s", b.err);
  cr_expect(strstr(a.out, "nll_sum "), "%s", a.out);
  cr_expect_str_eq(a.out, b.out, "by name: %s\nexported: %s", a.out, b.out);
  ts_run_free(&a);
  ts_run_free(&b);
  if (!getenv("DFPO_KEEP_TEST_FILES"))
    ts_rmtree(tmp);
}

/* peft's adapters by their hub name: a repository with adapter_config.json
 * and adapter_model.safetensors (no config.json; written by `dfpo export
 * --adapters-only`'s library call from a LoRA policy whose adapters were
 * moved off B = 0) is fetched as those two files, and `dfpo perplexity
 * --adapters OWNER/NAME` over a GPT-2 folder scores as with the folder's
 * path, and otherwise than the base alone. */
Test(hub_cli, peft_adapters_by_name, .timeout = 120) {
  char tmp[256], src[400], peft[400], tokens[400], home[400], path[600];
  dfpo_err err;
  model_t *m = gpt2_setup(tmp, src, tokens, home, 6);
  snprintf(peft, sizeof peft, "%s/peft", tmp);
  cr_assert_eq(mkdir(peft, 0777), 0);
  model_lora_config lc = {2, 4.0f, "attn.c_attn,mlp.c_fc"};
  cr_assert_eq(model_add_lora(m, &lc, 7, &err), DFPO_OK, "%s", err.msg);
  dfpo_rng rng;
  dfpo_rng_init(&rng, 8, 1);
  for (int i = 0; i < model_num_tensors(m); i++) {
    model_tensor t;
    cr_assert_eq(model_tensor_at(m, i, &t, &err), DFPO_OK);
    for (int k = 0; k < t.rows * t.cols; k++)
      t.param[k] = 0.2f * (float)dfpo_rng_normal(&rng);
  }
  cr_assert_eq(model_export_adapters(m, peft, &err), DFPO_OK, "%s", err.msg);
  model_free(m);

  const char *names[] = {"adapter_config.json", "adapter_model.safetensors"};
  tl_hub h;
  tl_hub_serve_folder(&h, "acme", "tiny-lora", COMMIT, peft, names, 2, 1, 20);
  ts_run a, b;
  const char *by_name[] = {"perplexity",     "--model",  src,    "--adapters",
                           "acme/tiny-lora", "--tokens", tokens, NULL};
  run(&a, home, by_name, NULL);
  tl_hub_stop(&h);
  cr_assert_eq(a.status, 0, "%s", a.err);
  const char *by_path[] = {"perplexity", "--model",  src,    "--adapters",
                           peft,         "--tokens", tokens, NULL};
  run(&b, home, by_path, NULL);
  cr_assert_eq(b.status, 0, "%s", b.err);
  cr_expect(strstr(a.out, "nll_sum "), "%s", a.out);
  cr_expect_str_eq(a.out, b.out, "by name: %s\nby path: %s", a.out, b.out);
  ts_run_free(&b);
  const char *base[] = {"perplexity", "--model", src, "--tokens", tokens, NULL};
  run(&b, home, base, NULL);
  cr_assert_eq(b.status, 0, "%s", b.err);
  cr_expect_str_neq(a.out, b.out, "the adapters changed nothing: %s", a.out);
  ts_run_free(&a);
  ts_run_free(&b);
  for (int i = 0; i < 2; i++) {
    snprintf(path, sizeof path, "%s/hub/acme--tiny-lora/" COMMIT "/%s", home, names[i]);
    struct stat st;
    cr_expect_eq(stat(path, &st), 0, "%s is not in the cache", path);
  }
  if (!getenv("DFPO_KEEP_TEST_FILES"))
    ts_rmtree(tmp);
}
