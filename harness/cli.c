#include "harness/cli.h"
#include "datasets/datasets.h"
#include "trainer/device.h"
#include "trainer/model.h"

#include <errno.h>
#include <getopt.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const cli_cmd cli_commands[] = {
    {"env", "what this machine offers: threads, BLAS, CUDA, the cache folder", cmd_env},
    {"config", "load, check and print suite and run configs", cmd_config},
    {"tokenizer", "GPT-2 BPE, T5 and Llama SentencePiece: encode, decode; train a BPE",
     cmd_tokenizer},
    {"datasets", "list, import, verify and prepare the datasets of the manifest", cmd_datasets},
    {"fetch", "download datasets and assets: resumable, verified, mirrors first", cmd_fetch},
    {"metrics", "score predictions: CommonGen metrics, diversity", cmd_metrics},
    {"train", "fine-tune one (task, algorithm, seed) cell and write its run folder", cmd_train},
    {"generate", "sample or beam-search continuations: GPT-2, T5, GPT-J, NeoX, Llama",
     cmd_generate},
    {"perplexity", "score documents' likelihood: GPT-2, T5, GPT-J, NeoX, Llama", cmd_perplexity},
    {"export", "write a policy as a Hugging Face folder with its tokenizer", cmd_export},
    {"pretrain", "train a GPT-2 or a T5 from scratch, with validation and resume", cmd_pretrain},
    {"bench", "time the engine: training steps, KV-cache decoding, RL iterations", cmd_bench},
    {"judge", "train, evaluate and run the sentiment and toxicity judges", cmd_judge},
    {"reproduce", "run a suite end to end: data, base model, every cell, the report",
     cmd_reproduce},
    {"report", "tables and plots of a suite folder", cmd_report},
    {"check", "compare a suite's results with a baseline, within seed noise", cmd_check},
    {NULL, NULL, NULL}};

void cli_reset_getopt(void) {
  optind = 0; /* glibc: 0 also resets its internal state */
  opterr = 0;
}

int cli_bad_option(const char *cmd, int argc, char **argv, int ret) {
  /* A long option is named as written (without any "=value"); a short one
   * by its letter, which also covers letters inside a group like -xq. */
  char name[128] = "?";
  const char *arg = optind > 0 && optind <= argc ? argv[optind - 1] : NULL;
  if (arg && arg[0] == '-' && arg[1] == '-')
    snprintf(name, sizeof name, "%.*s", (int)strcspn(arg, "="), arg);
  else if (optopt)
    snprintf(name, sizeof name, "-%c", optopt);
  if (ret == ':')
    return cli_usage_error(cmd, "option '%s' needs a value", name);
  return cli_usage_error(cmd, "unknown option '%s'", name);
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "dfpo: error: %s%s%s\n", cmd ? cmd : "", cmd ? ": " : "", msg);
  fprintf(stderr, "Try 'dfpo %s%s--help' for more information.\n", cmd ? cmd : "", cmd ? " " : "");
  return DFPO_EUSAGE;
}

int cli_fail(const dfpo_err *e) {
  fprintf(stderr, "dfpo: error: %s\n", e->msg[0] ? e->msg : "unknown failure");
  return e->code ? e->code : DFPO_ERUNTIME;
}

int cli_number(const char *cmd, const char *s, double lo, double hi, const char *opt, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || *end || errno || v < lo || v > hi)
    return cli_usage_error(cmd, "%s needs a number in [%g, %g], got '%s'", opt, lo, hi, s);
  *out = v;
  return DFPO_OK;
}

int cli_integer(const char *cmd, const char *s, int lo, int hi, const char *opt, int *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (end == s || *end || errno || v < lo || v > hi)
    return cli_usage_error(cmd, "%s needs an integer in [%d, %d], got '%s'", opt, lo, hi, s);
  *out = (int)v;
  return DFPO_OK;
}

int cli_use_device(const char *arg, dfpo_err *err) {
  ops_device want, got;
  int rc = ops_device_parse(arg, &want, err);
  char note[1024];
  if (rc || (rc = ops_device_resolve(want, &got, note, sizeof note, err)))
    return rc;
  if (note[0])
    dfpo_warn("%s", note);
  ops_use_device(got);
  return DFPO_OK;
}

int cli_device(const char *cmd, const char *arg) {
  dfpo_err err;
  dfpo_err_clear(&err);
  int rc = cli_use_device(arg, &err);
  if (rc == DFPO_EUSAGE)
    return cli_usage_error(cmd, "%s", err.msg);
  return rc ? cli_fail(&err) : DFPO_OK;
}

int cli_dtype(const char *cmd, const char *arg, ops_dtype *out) {
  dfpo_err err;
  dfpo_err_clear(&err);
  if (ops_dtype_parse(arg, out, &err))
    return cli_usage_error(cmd, "--dtype: %s", err.msg);
  return DFPO_OK;
}

void cli_use_threads(int64_t n) {
  if (n <= 0)
    return;
  char buf[32];
  snprintf(buf, sizeof buf, "%lld", (long long)n);
  setenv("OMP_NUM_THREADS", buf, 1); /* for the child processes */
  omp_set_num_threads((int)n);
}

const char *cli_model_tokenizer(const char *model, const char *tokenizer) {
  if (tokenizer && tokenizer[0])
    return tokenizer;
  if (model && model[0] && model_path_is_folder(model) && tok_folder_has_files(model))
    return model;
  return NULL;
}

int cli_load_model(model_t **m, const char *path, ops_dtype dtype, const char *adapters,
                   dfpo_err *err) {
  char apath[4096];
  int rc = adapters ? cli_model_path(adapters, apath, sizeof apath, err) : DFPO_OK;
  if (rc)
    return rc;
  adapters = adapters ? apath : NULL;
  rc = model_load_as(m, path, dtype, err);
  if (!rc && adapters && (rc = model_load_peft_adapters(*m, adapters, err))) {
    model_free(*m);
    *m = NULL;
  }
  if (!rc && adapters)
    dfpo_info("read peft's LoRA adapters of %s (rank %d) onto %s", adapters, model_lora_rank(*m),
              path);
  return rc;
}

int cli_model_path(const char *arg, char *out, size_t n, dfpo_err *err) {
  ds_fetch_opts o;
  ds_fetch_opts_init(&o);
  return ds_hub_resolve(arg, &o, out, n, err);
}
