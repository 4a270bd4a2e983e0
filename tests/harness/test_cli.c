#include "tests/support/support.h"
#include "trainer/gpt2.h"
#include "trainer/model.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#define FIX(name) DFPO_FIXTURES "/configs/" name

Test(cli, help_and_version) {
  ts_run r;
  ts_dfpo(&r, "--help", NULL);
  cr_expect_eq(r.status, 0);
  cr_expect(strstr(r.out, "Usage: dfpo") && strstr(r.out, "  env ") && strstr(r.out, "  config "),
            "%s", r.out);
  ts_run_free(&r);
  ts_dfpo(&r, "--version", NULL);
  cr_expect_eq(r.status, 0);
  cr_expect_eq(strncmp(r.out, "dfpo 0.", 7), 0, "%s", r.out);
  ts_run_free(&r);
  ts_dfpo(&r, "env", "--help", NULL);
  cr_expect_eq(r.status, 0);
  cr_expect(strstr(r.out, "Usage: dfpo env") != NULL);
  ts_run_free(&r);
  ts_dfpo(&r, "config", "show", "--help", NULL);
  cr_expect_eq(r.status, 0);
  cr_expect(strstr(r.out, "Usage: dfpo config show FILE") != NULL);
  ts_run_free(&r);
}

Test(cli, no_arguments_is_usage_error) {
  ts_run r;
  ts_dfpo(&r, NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "Usage: dfpo") != NULL);
  ts_run_free(&r);
}

Test(cli, unknown_command_and_options_are_named) {
  ts_run r;
  ts_dfpo(&r, "frobnicate", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "unknown command 'frobnicate'") != NULL, "%s", r.err);
  ts_run_free(&r);
  ts_dfpo(&r, "--frob", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "unknown option '--frob'") != NULL, "%s", r.err);
  ts_run_free(&r);
  ts_dfpo(&r, "env", "--bogus", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "env: unknown option '--bogus'") != NULL, "%s", r.err);
  ts_run_free(&r);
  ts_dfpo(&r, "env", "-q", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "env: unknown option '-q'") != NULL, "%s", r.err);
  ts_run_free(&r);
  ts_dfpo(&r, "config", "show", FIX("valid.json"), "--set", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "option '--set' needs a value") != NULL, "%s", r.err);
  ts_run_free(&r);
  ts_dfpo(&r, "config", "frob", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "unknown subcommand 'frob'") != NULL, "%s", r.err);
  ts_run_free(&r);
}

Test(cli, env_reports_threads_blas_cuda_and_cache) {
  ts_run r;
  ts_dfpo(&r, "env", NULL);
  cr_expect_eq(r.status, 0, "%s", r.err);
  cr_expect(strstr(r.out, "CPU threads:") && strstr(r.out, "BLAS:         OpenBLAS") &&
                strstr(r.out, "CUDA") && strstr(r.out, "Cache folder:"),
            "%s", r.out);
  /* the own CPU kernels' width is reported, and DFPO_CPU_ISA=0 turns them off */
  cr_expect(strstr(r.out, "CPU kernels:  ") != NULL, "%s", r.out);
  ts_run r0;
  char *argv[] = {(char *)DFPO_BIN, "env", NULL}, *env[] = {"DFPO_CPU_ISA=0", NULL};
  ts_run_cmd(&r0, argv, NULL, env);
  cr_expect(strstr(r0.out, "CPU kernels:  portable code and OpenBLAS only") != NULL, "%s", r0.out);
  ts_run_free(&r0);
  /* a cap of 256 leaves AVX2 where the CPU has it, never AVX-512 */
  env[0] = "DFPO_CPU_ISA=256";
  ts_run_cmd(&r0, argv, NULL, env);
  cr_expect(strstr(r0.out, "CPU kernels:  ") && !strstr(r0.out, "CPU kernels:  AVX-512"), "%s",
            r0.out);
  ts_run_free(&r0);
#ifdef DFPO_HAVE_CUDA
  /* Compiled in: either a device is usable or the reason is given. */
  cr_expect(strstr(r.out, "CUDA device:  none usable: ") || strstr(r.out, "usable; device 0"), "%s",
            r.out);
#else
  cr_expect(strstr(r.out, "CUDA:         not compiled in") != NULL, "%s", r.out);
#endif
  ts_run_free(&r);
  ts_dfpo(&r, "env", "--json", NULL);
  cr_expect_eq(r.status, 0);
  cr_expect(strstr(r.out, "\"cuda_compiled\":") && strstr(r.out, "\"blas\":"), "%s", r.out);
  ts_run_free(&r);
}

Test(cli, config_show_prints_resolved_json) {
  ts_run r;
  ts_dfpo(&r, "config", "show", FIX("valid.json"), "--set", "train.epochs=3", NULL);
  cr_expect_eq(r.status, 0, "%s", r.err);
  cr_expect(strstr(r.out, "\"epochs\":\t3") && strstr(r.out, "\"iterations\":\t7") &&
                strstr(r.out, "\"gae_lambda\":\t0.95"),
            "%s", r.out);
  ts_run_free(&r);
}

Test(cli, config_errors_exit_1_with_message) {
  ts_run r;
  ts_dfpo(&r, "config", "show", FIX("unknown_key.json"), NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "dfpo: error: ") && strstr(r.err, "unknown key 'train.learning_rate'"),
            "%s", r.err);
  cr_expect_str_eq(r.out, "", "nothing on stdout on failure");
  ts_run_free(&r);
  ts_dfpo(&r, "config", "show", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "missing FILE") != NULL, "%s", r.err);
  ts_run_free(&r);
}

Test(cli, docs_configs_md_is_the_schema) {
  ts_run r;
  ts_dfpo(&r, "config", "keys", NULL);
  cr_assert_eq(r.status, 0, "%s", r.err);
  FILE *fp = fopen(DFPO_SOURCE_DIR "/docs/configs.md", "rb");
  cr_assert_not_null(fp, "docs/configs.md missing");
  static char doc[1 << 16];
  size_t n = fread(doc, 1, sizeof doc - 1, fp);
  fclose(fp);
  doc[n] = '\0';
  /* the generated table, then only hand-written sections */
  size_t len = strlen(r.out);
  cr_expect(n >= len && !memcmp(doc, r.out, len),
            "docs/configs.md's table differs: regenerate its start with `dfpo config keys`");
  cr_expect(doc[len] == '\0' || !strncmp(doc + len, "\n## ", 4),
            "docs/configs.md: after the generated table only \"## \" sections");
  ts_run_free(&r);
}

/* ------------------------------------------------ --device on every command */

/* 1 when `dfpo env --device cuda` finds a usable GPU, else 0 with the
 * reason it gives. */
static int gpu_usable(char *why, size_t n) {
  static const char lead[] = "dfpo: error: --device cuda: no usable CUDA device: ";
  ts_run r;
  ts_dfpo(&r, "env", "--device", "cuda", NULL);
  int ok = r.status == 0;
  const char *at = strstr(r.err, lead);
  snprintf(why, n, "%.*s", at ? (int)strcspn(at + strlen(lead), "\n") : 0,
           at ? at + strlen(lead) : "");
  ts_run_free(&r);
  if (!ok)
    cr_assert(why[0], "dfpo env --device cuda failed without a reason");
  return ok;
}

/* Each engine command given --device cuda, --device auto and a bad name, on
 * small inputs: a 300-token tiny model for generate and perplexity, a
 * one-step pretraining, and (for train and reproduce, whose runs are the
 * business of their own tests) a missing tokenizer or cell, which they meet only
 * after the device was chosen. Without a usable GPU (this project's build
 * machine), cuda must fail with exit status 3 and the reason dfpo env gives
 * before any work, and auto must warn and go on on the CPU. */
Test(cli, device_option_on_every_engine_command, .timeout = 300) {
  char why[1024];
  int usable = gpu_usable(why, sizeof why);
  char dir[256], model[300], toks[300], out[300], cfgf[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(model, sizeof model, "%s/m.ckpt", dir);
  snprintf(toks, sizeof toks, "%s/t.txt", dir);
  snprintf(out, sizeof out, "%s/out", dir);
  snprintf(cfgf, sizeof cfgf, "%s/suite.json", dir);
  gpt2_config gc = {1, 2, 32, 300, 64, MODEL_HEAD_NONE, 0};
  model_t *m;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(gpt2_new(&m, &gc, &err), 0, "%s", err.msg);
  model_init_random(m, 1);
  cr_assert_eq(model_save(m, model, 0, &err), 0, "%s", err.msg);
  model_free(m);
  ts_write_text(toks, "1 2 3 4 5 6 7 8 9 10 11 12\n13 14 15 16 17 18 19 20 21 22\n");
  ts_write_text(cfgf, "{\"suite\": {\"name\": \"dev\", \"tasks\": [\"synthetic\"], \"algos\": "
                      "[\"zero-shot\"], \"seeds\": [0]}}\n");
  /* the arguments of each command, the device value going in slot DEV */
#define DEV "\x01"
  const char *cmds[][24] = {
      {"generate", "--model", model, "--tokens", toks, "--max-new", "2", "--device", DEV, NULL},
      {"perplexity", "--model", model, "--tokens", toks, "--no-bos", "--device", DEV, NULL},
      {"pretrain", "--train",   toks, "--val",    toks, "--out",    out,  "--vocab",
       "300",      "--n-layer", "1",  "--n-embd", "32", "--n-ctx",  "16", "--steps",
       "1",        "--batch",   "1",  "--seq",    "4",  "--device", DEV,  NULL},
      {"train", "--task", "synthetic", "--algo", "ppo", "--out", out, "--model", model,
       "--tokenizer", dir, "--device", DEV, NULL},
      {"reproduce", "--config", cfgf, "--out", out, "--cell", "5", "--device", DEV, NULL},
  };
  /* what auto's run ends with after the fallback: 0, or the status of the
   * error the command meets next (train: the tokenizer folder has no BPE
   * files; reproduce: the suite has one cell) */
  const int auto_status[] = {0, 0, 0, 2, 1};
  const char *auto_next[] = {NULL, NULL, NULL, "tokenizer", "--cell 5: the suite has 1 cells"};
  for (size_t c = 0; c < sizeof cmds / sizeof cmds[0]; c++) {
    const char *names[] = {"cuda", "auto", "gpu"};
    for (int k = 0; k < 3; k++) {
      char *argv[26] = {(char *)DFPO_BIN};
      int n = 1;
      for (int i = 0; cmds[c][i]; i++)
        argv[n++] = (char *)(strcmp(cmds[c][i], DEV) ? cmds[c][i] : names[k]);
      argv[n] = NULL;
      char home[300], env[320];
      snprintf(home, sizeof home, "%s/home", dir);
      snprintf(env, sizeof env, "DFPO_HOME=%s", home);
      char *envv[] = {env, "OMP_NUM_THREADS=1", NULL};
      ts_run r;
      ts_run_cmd(&r, argv, NULL, envv);
      const char *cmd = cmds[c][0];
      if (k == 2) {
        cr_expect_eq(r.status, DFPO_EUSAGE, "%s --device gpu: status %d: %s", cmd, r.status, r.err);
        /* train and reproduce check it as the config key it is */
        cr_expect(strstr(r.err, "--device must be cpu, cuda or auto, got 'gpu'") ||
                      strstr(r.err, "key 'device': 'gpu' is not one of auto|cpu|cuda"),
                  "%s: %s", cmd, r.err);
      } else if (usable) {
        cr_log_info("%s --device %s: a GPU is usable here; the CUDA runs themselves are "
                    "test_ops_cuda's business",
                    cmd, names[k]);
      } else if (k == 0) {
        cr_expect_eq(r.status, DFPO_ERUNTIME, "%s --device cuda: status %d: %s", cmd, r.status,
                     r.err);
        cr_expect(strstr(r.err, "dfpo: error: --device cuda: no usable CUDA device: "), "%s: %s",
                  cmd, r.err);
        cr_expect(strstr(r.err, why), "%s: stderr '%s' lacks the reason '%s' of dfpo env", cmd,
                  r.err, why);
        cr_expect_str_eq(r.out, "", "%s --device cuda printed results", cmd);
      } else {
        cr_expect(strstr(r.err, "dfpo: warning: --device auto: no usable CUDA device (") &&
                      strstr(r.err, "); using the CPU"),
                  "%s --device auto: %s", cmd, r.err);
        cr_expect_eq(r.status, auto_status[c], "%s --device auto: status %d: %s", cmd, r.status,
                     r.err);
        if (auto_next[c])
          cr_expect(strstr(r.err, auto_next[c]), "%s --device auto went on to '%s'? %s", cmd,
                    auto_next[c], r.err);
      }
      ts_run_free(&r);
    }
  }
#undef DEV
  ts_rmtree(dir);
}

/* dfpo train names what it refuses (moved from test_train.c, whose suite
 * makes a base model for every test). */
Test(cli, train_refuses_bad_choices_clearly) {
  ts_run r;
  ts_dfpo(&r, "train", "--task", "nosuch", "--algo", "ppo", "--model", "x", "--tokenizer", "y",
          NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "nosuch") != NULL, "%s", r.err);
  ts_run_free(&r);
  ts_dfpo(&r, "train", "--algo", "ppo", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "needs a base model") != NULL, "%s", r.err);
  ts_run_free(&r);
  /* beam search cannot decode DfPO's negative policy, which is sampled
   * against the reference */
  ts_dfpo(&r, "train", "--task", "synthetic", "--algo", "dfpo", "--model", "x", "--tokenizer", "y",
          "--set", "eval.num_beams=2", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "dfpo.eval_policy=theta") != NULL, "%s", r.err);
  ts_run_free(&r);
}
