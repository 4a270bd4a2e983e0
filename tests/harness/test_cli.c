#include "tests/support/support.h"

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
  cr_expect_str_eq(doc, r.out,
                   "docs/configs.md differs: regenerate it with "
                   "`dfpo config keys > docs/configs.md`");
  ts_run_free(&r);
}
