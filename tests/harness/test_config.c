#include "harness/config.h"
#include "harness/suite.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FIX(name) DFPO_FIXTURES "/configs/" name

/* Loads file (and sets) expecting failure; checks the code and that every
 * fragment appears in the message. */
static void expect_error(const char *file, const char *const *sets, int nsets, int code,
                         const char *const *frags) {
  cfg c;
  dfpo_err err;
  dfpo_err_clear(&err);
  int rc = cfg_load(&c, cfg_schema, file, sets, nsets, &err);
  cr_assert_eq(rc, code, "rc %d for %s: %s", rc, file ? file : "(none)", err.msg);
  cr_expect_eq(err.code, code);
  for (int i = 0; frags[i]; i++)
    cr_expect(strstr(err.msg, frags[i]) != NULL, "message '%s' lacks '%s'", err.msg, frags[i]);
}

Test(config, defaults_follow_the_paper) {
  cfg c;
  dfpo_err err;
  cr_assert_eq(cfg_load(&c, cfg_schema, NULL, NULL, 0, &err), DFPO_OK, "%s", err.msg);
  double v;
  int64_t i;
  const char *s;
  cr_assert_eq(cfg_get_num(&c, "train.lr", &v, &err), DFPO_OK);
  cr_expect_eq(v, 1e-5); /* the paper's Table 3 (docs/algorithms.md) */
  cr_assert_eq(cfg_get_num(&c, "train.gamma", &v, &err), DFPO_OK);
  cr_expect_eq(v, 0.99);
  cr_assert_eq(cfg_get_num(&c, "train.gae_lambda", &v, &err), DFPO_OK);
  cr_expect_eq(v, 0.95);
  cr_assert_eq(cfg_get_int(&c, "train.batch_size", &i, &err), DFPO_OK);
  cr_expect_eq(i, 16);
  cr_assert_eq(cfg_get_str(&c, "dfpo.mask_at", &s, &err), DFPO_OK);
  cr_expect_str_eq(s, "sample");
  cr_expect_eq(cfg_get_int(&c, "train.lr", &i, &err), DFPO_ERUNTIME, "type mismatch in code");
  cr_expect_eq(cfg_get_num(&c, "train.nope", &v, &err), DFPO_ERUNTIME);
  cfg_free(&c);
}

Test(config, file_and_sets_override_in_order) {
  const char *sets[] = {"train.lr=3e-4", "suite.seeds=[4,5,6]", "generation.top_k=0",
                        "suite.algos=sft,dfpo", "device=cuda"};
  cfg c;
  dfpo_err err;
  cr_assert_eq(cfg_load(&c, cfg_schema, FIX("valid.json"), sets, 5, &err), DFPO_OK, "%s", err.msg);
  double v;
  int64_t i;
  int n;
  const char *s;
  cfg_get_num(&c, "train.lr", &v, &err);
  cr_expect_eq(v, 3e-4, "--set wins over the file");
  cfg_get_int(&c, "train.iterations", &i, &err);
  cr_expect_eq(i, 7, "from the file");
  cfg_get_int(&c, "train.epochs", &i, &err);
  cr_expect_eq(i, 5, "default kept");
  cfg_get_list_len(&c, "suite.seeds", &n, &err);
  cr_expect_eq(n, 3);
  cfg_get_list_int(&c, "suite.seeds", 2, &i, &err);
  cr_expect_eq(i, 6);
  cfg_get_list_len(&c, "suite.algos", &n, &err);
  cr_expect_eq(n, 2);
  cfg_get_list_str(&c, "suite.algos", 0, &s, &err);
  cr_expect_str_eq(s, "sft");
  cfg_get_str(&c, "device", &s, &err);
  cr_expect_str_eq(s, "cuda");
  cfg_get_str(&c, "dfpo.mask_at", &s, &err);
  cr_expect_str_eq(s, "update");
  cfg_get_str(&c, "suite.name", &s, &err);
  cr_expect_str_eq(s, "unit");
  char *json = cfg_to_json(&c);
  cr_assert_not_null(json);
  cr_expect(strstr(json, "\"mask_at\":\t\"update\"") != NULL, "%s", json);
  free(json);
  cfg_free(&c);
}

Test(config, malformed_json_names_line_and_column) {
  /* line 4 is `    "iterations": 7,,`: the second comma is column 21; cJSON
   * stops one past it, which is the position it reports. */
  const char *f[] = {"malformed.json:4:22: malformed JSON", NULL};
  expect_error(FIX("malformed.json"), NULL, 0, DFPO_EUSAGE, f);
}

Test(config, truncated_json_says_end_of_file) {
  const char *f[] = {"truncated.json:3:1: malformed JSON (unexpected end of file)", NULL};
  expect_error(FIX("truncated.json"), NULL, 0, DFPO_EUSAGE, f);
}

Test(config, wrong_types_name_file_and_key) {
  const char *f1[] = {"wrong_type.json: key 'train.iterations': expected an integer, got a string",
                      NULL};
  expect_error(FIX("wrong_type.json"), NULL, 0, DFPO_EUSAGE, f1);
  const char *f2[] = {"fraction_for_int.json: key 'train.iterations': expected an integer, got 2.5",
                      NULL};
  expect_error(FIX("fraction_for_int.json"), NULL, 0, DFPO_EUSAGE, f2);
  const char *f3[] = {"section_scalar.json: key 'ppo' is a section and must be an object, got a "
                      "number",
                      NULL};
  expect_error(FIX("section_scalar.json"), NULL, 0, DFPO_EUSAGE, f3);
  const char *f4[] = {"not_object.json: the config must be a JSON object, got a list", NULL};
  expect_error(FIX("not_object.json"), NULL, 0, DFPO_EUSAGE, f4);
}

Test(config, unknown_keys_are_named_with_a_suggestion) {
  const char *f[] = {"unknown_key.json: unknown key 'train.learning_rate'", NULL};
  expect_error(FIX("unknown_key.json"), NULL, 0, DFPO_EUSAGE, f);
  const char *sets[] = {"train.lrr=1"};
  const char *g[] = {"--set train.lrr=1: unknown key 'train.lrr' (did you mean 'train.lr'?)", NULL};
  expect_error(NULL, sets, 1, DFPO_EUSAGE, g);
}

Test(config, values_outside_their_domain) {
  const char *f1[] = {"bad_enum.json: key 'dfpo.mask_at': 'everywhere' is not one of sample|update",
                      NULL};
  expect_error(FIX("bad_enum.json"), NULL, 0, DFPO_EUSAGE, f1);
  const char *f2[] = {"out_of_range.json: key 'train.gamma': 1.5 is outside [0, 1]", NULL};
  expect_error(FIX("out_of_range.json"), NULL, 0, DFPO_EUSAGE, f2);
  const char *f3[] = {"bad_list_item.json: key 'suite.tasks' item 1: 'mnist' is not one of", NULL};
  expect_error(FIX("bad_list_item.json"), NULL, 0, DFPO_EUSAGE, f3);
  const char *f4[] = {"duplicate.json: key 'seed' appears twice", NULL};
  expect_error(FIX("duplicate.json"), NULL, 0, DFPO_EUSAGE, f4);
}

Test(config, missing_file_is_a_usage_error) {
  const char *f[] = {"no-such-config.json: cannot open: No such file or directory", NULL};
  expect_error(FIX("no-such-config.json"), NULL, 0, DFPO_EUSAGE, f);
}

Test(config, set_values_are_type_checked) {
  struct {
    const char *set, *frag;
  } cases[] = {
      {"train.lr=fast", "--set train.lr=fast: key 'train.lr': expected a number, got 'fast'"},
      {"train.lr=nan", "expected a number, got 'nan'"},
      {"train.iterations=3.5", "key 'train.iterations': expected an integer, got '3.5'"},
      {"train.iterations=", "expected an integer, got ''"},
      {"device=tpu", "key 'device': 'tpu' is not one of auto|cpu|cuda"},
      {"train.gamma=-0.1", "key 'train.gamma': -0.10000000000000001 is outside [0, 1]"},
      {"suite.seeds=1,x", "key 'suite.seeds': expected an integer, got 'x'"},
      {"suite.seeds=[1,", "key 'suite.seeds': malformed JSON list '[1,'"},
      {"suite.algos=[\"ppo\",3]", "key 'suite.algos' item 1: expected a string, got a number"},
      {"train", "--set train: expected key.path=value"},
      {"=3", "--set =3: expected key.path=value"},
      {"train=3", "--set train=3: 'train' is a section, not a value"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *sets[] = {cases[i].set};
    const char *f[] = {cases[i].frag, NULL};
    expect_error(NULL, sets, 1, DFPO_EUSAGE, f);
  }
}

/* --set numbers are decimal and lists have no empty items: strtod read
 * train.lr=0x10 as 16 (and "inf", " 5"), strtok_r read seeds=1,,2 as
 * [1, 2], and a JSON list could have text after it. "\u0000" in a config
 * string cut it short. */
Test(config, set_numbers_decimal_lists_whole_no_nul) {
  struct {
    const char *set, *frag;
  } cases[] = {
      {"train.lr=0x10", "--set train.lr=0x10: key 'train.lr': expected a number, got '0x10'"},
      {"train.lr=inf", "expected a number, got 'inf'"},
      {"train.lr= 5", "expected a number, got ' 5'"},
      {"train.lr=1e", "expected a number, got '1e'"},
      {"train.iterations=0x10", "expected an integer, got '0x10'"},
      {"train.iterations= 7", "expected an integer, got ' 7'"},
      {"suite.seeds=1,,2", "key 'suite.seeds': an empty item in the list '1,,2'"},
      {"suite.seeds=1,2,", "an empty item in the list '1,2,'"},
      {"suite.seeds=,1", "an empty item in the list ',1'"},
      {"suite.algos=ppo,,dfpo", "key 'suite.algos': an empty item in the list"},
      {"suite.seeds=[1,2]x", "malformed JSON list '[1,2]x'"},
      {"suite.algos=[\"pp\\u0000o\"]", "malformed JSON list"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *sets[] = {cases[i].set};
    const char *f[] = {cases[i].frag, NULL};
    expect_error(NULL, sets, 1, DFPO_EUSAGE, f);
  }
  /* what is still read: decimal forms, and a list longer than 1023 bytes
   * whole (it was cut at 1023 bytes) */
  char seeds[3000] = "suite.seeds=";
  for (int k = 0; k < 500; k++)
    snprintf(seeds + strlen(seeds), sizeof seeds - strlen(seeds), "%s%d", k ? "," : "", 1000 + k);
  const char *sets[] = {"train.lr=+1.5E-4", "train.iterations=-0", seeds};
  cfg c;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(cfg_load(&c, cfg_schema, NULL, sets, 3, &err), DFPO_OK, "%s", err.msg);
  double v;
  int64_t i;
  int n;
  cfg_get_num(&c, "train.lr", &v, &err);
  cr_expect_eq(v, 1.5e-4);
  cfg_get_list_len(&c, "suite.seeds", &n, &err);
  cr_expect_eq(n, 500);
  cfg_get_list_int(&c, "suite.seeds", 499, &i, &err);
  cr_expect_eq(i, 1499);
  cfg_free(&c);
  /* a config file: the NUL escape is named by line and column */
  cfg_init(&c, cfg_schema, &err);
  const char *text = "{\n  \"suite\": {\"name\": \"a\\u0000b\"}\n}\n";
  cr_expect_eq(cfg_merge_text(&c, "nul.json", text, strlen(text), &err), DFPO_EUSAGE);
  cr_expect(strstr(err.msg, "nul.json:2:23: \\u0000 in a string") != NULL, "%s", err.msg);
  cfg_free(&c);
}

Test(config, text_after_the_object_is_an_error) {
  const char *f[] = {"trailing.json:1:13: malformed JSON: text after the end of the top-level "
                     "object",
                     NULL};
  expect_error(FIX("trailing.json"), NULL, 0, DFPO_EUSAGE, f);
}

Test(config, shipped_configs_load) {
  cfg c;
  dfpo_err err;
  cr_assert_eq(cfg_load(&c, cfg_schema, DFPO_SOURCE_DIR "/configs/default.json", NULL, 0, &err),
               DFPO_OK, "%s", err.msg);
  const char *s;
  cfg_get_str(&c, "suite.name", &s, &err);
  cr_expect_str_eq(s, "default");
  cfg_free(&c);
}

/* suite.task_settings: a cell gets the entries of its task and of its task
 * and algorithm, in list order, then its variant's own; every cell of the
 * paper suite resolves to a valid config with RL4LMs' and Table 3's values
 * (docs/configs.md). */
static double cell_num(const suite *s, const char *task, const char *variant, const char *key) {
  int ti = -1, vi = -1;
  for (int i = 0; i < s->n_tasks; i++)
    if (!strcmp(s->tasks[i], task))
      ti = i;
  for (int i = 0; i < s->n_variants; i++)
    if (!strcmp(s->variants[i].name, variant))
      vi = i;
  cr_assert(ti >= 0 && vi >= 0, "%s/%s", task, variant);
  const char *sets[4 * SUITE_MAX_SETS];
  int n = suite_cell_sets(s, ti, vi, sets, 4 * SUITE_MAX_SETS);
  cr_assert_geq(n, 0);
  cfg c;
  dfpo_err err;
  cr_assert_eq(cfg_load(&c, cfg_schema, DFPO_SOURCE_DIR "/configs/paper.json", sets, n, &err), 0,
               "%s/%s: %s", task, variant, err.msg);
  double v = NAN;
  int64_t i;
  if (cfg_get_num(&c, key, &v, &err) && !cfg_get_int(&c, key, &i, &err))
    v = (double)i;
  cfg_free(&c);
  return v;
}

Test(config, suite_task_settings_per_task_and_algorithm) {
  suite s;
  dfpo_err err;
  cr_assert_eq(suite_load(&s, DFPO_SOURCE_DIR "/configs/paper.json", NULL, 0, &err), 0, "%s",
               err.msg);
  for (int ti = 0; ti < s.n_tasks; ti++)
    for (int vi = 0; vi < s.n_variants; vi++)
      cell_num(&s, s.tasks[ti], s.variants[vi].name, "train.lr");
  cr_expect_float_eq(cell_num(&s, "imdb", "ppo", "train.lr"), 1e-6, 1e-12);
  cr_expect_float_eq(cell_num(&s, "imdb", "dfpo", "train.lr"), 1e-5, 1e-12);
  cr_expect_float_eq(cell_num(&s, "imdb", "dfpo", "train.minibatch_transitions"), 16, 0);
  cr_expect_float_eq(cell_num(&s, "imdb", "nlpo", "train.n_steps"), 128, 0);
  cr_expect_float_eq(cell_num(&s, "rtp", "ppo", "train.lr"), 1e-6, 1e-12);
  cr_expect_float_eq(cell_num(&s, "rtp", "zero-shot", "generation.top_p"), 0.9, 1e-12);
  cr_expect_float_eq(cell_num(&s, "commongen", "ppo", "train.n_steps"), 256, 0);
  cr_expect_float_eq(cell_num(&s, "commongen", "ppo", "ppo.kl_target"), 2.0, 0);
  cr_expect_float_eq(cell_num(&s, "commongen", "nlpo", "train.n_steps"), 128, 0);
  cr_expect_float_eq(cell_num(&s, "commongen", "nlpo", "nlpo.mask_refresh"), 20, 0);
  cr_expect_float_eq(cell_num(&s, "commongen", "nlpo", "generation.top_k"), 50, 0);
  cr_expect_float_eq(cell_num(&s, "commongen", "dfpo", "generation.top_k"), 0, 0);
  cr_expect_float_eq(cell_num(&s, "commongen", "sft", "train.batch_size"), 8, 0);
  /* a PPO variant takes PPO's settings, then its own key wins */
  cr_expect_float_eq(cell_num(&s, "commongen", "ppo-beta0.5", "ppo.beta"), 0.5, 0);
  cr_expect_float_eq(cell_num(&s, "commongen", "ppo-beta0.5", "train.lr"), 2e-6, 1e-12);
  suite_free(&s);

  const char *bad[][2] = {
      {"suite.task_settings=[\"imdb/bogus train.lr=1\"]", "unknown algorithm 'bogus'"},
      {"suite.task_settings=[\"imdb/ppo train.lr\"]", "is not key=value"},
      {"suite.task_settings=[\"/ppo train.lr=1\"]", "is not \"TASK[/ALGO]"},
      {"suite.deviations=[\"a\",\"\"]", "item 1 is empty"}};
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    cr_expect_eq(suite_load(&s, NULL, &bad[k][0], 1, &err), DFPO_EUSAGE, "%s", bad[k][0]);
    cr_expect(strstr(err.msg, bad[k][1]) != NULL, "%s", err.msg);
  }
}
