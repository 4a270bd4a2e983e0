/* Internal to harness/: the command table and the option-parsing helpers that
 * give every subcommand the same --help and usage-error behaviour.
 *
 * Prefix: cli_. A command's run function gets argv with argv[0] set to the
 * command's name and returns a DFPO_* code, which main() exits with.
 */
#ifndef DFPO_HARNESS_CLI_H
#define DFPO_HARNESS_CLI_H

#include "common/common.h"
#include "trainer/device.h"

#include <stdint.h>

typedef struct cli_cmd {
  const char *name;
  const char *summary;
  int (*run)(int argc, char **argv);
} cli_cmd;

/* Commands that work, in the order --help lists them; NULL-terminated. */
extern const cli_cmd cli_commands[];

int cmd_env(int argc, char **argv);
int cmd_config(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_tokenizer(int argc, char **argv);
int cmd_datasets(int argc, char **argv);
int cmd_fetch(int argc, char **argv);
int cmd_metrics(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_pretrain(int argc, char **argv);
int cmd_judge(int argc, char **argv);
int cmd_reproduce(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_export(int argc, char **argv);

/* What `dfpo judge train NAME --dir DIR --limit LIMIT` does with the default
 * options (harness/cmd_judge.c): trains judge NAME (sentiment, toxicity) on
 * the split files in `splits` (NULL: the prepared dataset in the cache) and
 * saves it in DIR. */
int cmd_judge_train(const char *name, const char *splits, const char *dir, size_t limit,
                    dfpo_err *err);

/* T5's span corruption (Raffel et al. 2020, sec. 3.1.4) of doc[n], n >= 2,
 * as `dfpo pretrain --span-fraction` draws it (harness/cmd_pretrain.c):
 * noise = round(0.15 n) tokens (at least 1, at most n - 1) in
 * spans = round(noise / 3) spans (at least 1, at most n_sentinels and
 * n - noise); the noise and the kept tokens are each cut into `spans` runs
 * of random positive lengths (the cuts drawn from r), kept run 0 first.
 * src gets kept run k then the sentinel sentinel0 - k for each k (the ids
 * of <extra_id_k>); tgt gets each sentinel followed by its noise run. *ns
 * and *nt get their lengths (at most n each; no </s>). */
void cmd_pretrain_span_corrupt(const int *doc, int n, dfpo_rng *r, int sentinel0, int n_sentinels,
                               int *src, int *ns, int *tgt, int *nt);

/* Makes the next getopt_long call start afresh on a new argv. */
void cli_reset_getopt(void);
/* Reports the option getopt_long just rejected (unknown, or missing its
 * argument) as a usage error naming it and the command; returns DFPO_EUSAGE.
 * `ret` is what getopt_long returned ('?' or ':'). */
int cli_bad_option(const char *cmd, int argc, char **argv, int ret);
/* Reports a usage error with a message and the pointer to --help. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parses an option's value as a number in [lo, hi] (cli_integer: an integer
 * in base 10); anything else is a usage error of cmd naming the option, the
 * range and the text. */
int cli_number(const char *cmd, const char *s, double lo, double hi, const char *opt, double *out);
int cli_integer(const char *cmd, const char *s, int lo, int hi, const char *opt, int *out);
/* Prints an error record as "dfpo: error: <msg>" and returns its code. */
int cli_fail(const dfpo_err *e);
/* Applies a command's --device cpu|cuda|auto: resolves it (auto falls back
 * to the CPU with a warning that says why; cuda fails with the driver's
 * reason) and makes it the device new models go to. Returns DFPO_OK, or the
 * code of the error it printed. */
int cli_device(const char *cmd, const char *arg);
/* A command's --dtype f32|bf16|f16 (the precision a frozen model keeps its
 * weight matrices in, model_set_weight_dtype) into *out: DFPO_OK, or the
 * code of the usage error it printed. */
int cli_dtype(const char *cmd, const char *arg, ops_dtype *out);
/* The same without printing the error (the fallback's warning is printed):
 * DFPO_EUSAGE for a name other than cpu, cuda or auto, DFPO_ERUNTIME with
 * the driver's reason when cuda is not usable. For commands that report
 * their errors themselves (a config's `device` key). */
int cli_use_device(const char *arg, dfpo_err *err);
/* The tokenizer folder of a command given model (--model, model.path) and
 * tokenizer (--tokenizer, tokenizer.path; NULL or "" when not given): the
 * tokenizer when given, else the model itself when it is a Hugging Face
 * folder holding tokenizer files, else NULL. */
const char *cli_model_tokenizer(const char *model, const char *tokenizer);
/* A model or judge argument (--model, model.path, model.bases, --base-model,
 * eval.judge_lm) as a local path: an existing file or folder stays as it is,
 * a Hugging Face hub name (owner/name[@revision]) becomes its cache folder,
 * fetched when the cache lacks it. ds_hub_resolve (datasets/) is the one
 * place this is decided; this only adds the download settings of the
 * environment (DFPO_FETCH_*, HF_TOKEN, HF_ENDPOINT). */
int cli_model_path(const char *arg, char *out, size_t n, dfpo_err *err);
/* A command's model: model_load_as(path, dtype), then, when adapters is not
 * NULL, peft's LoRA adapter folder read onto it (--adapters DIR,
 * model_load_peft_adapters; a hub name OWNER/NAME[@REV] fetched as
 * cli_model_path fetches one), said in an info line. *m is the caller's; NULL
 * on error. */
struct model;
int cli_load_model(struct model **m, const char *path, ops_dtype dtype, const char *adapters,
                   dfpo_err *err);
/* Applies a config's `threads` key: n > 0 makes it the OpenMP thread count
 * of the CPU backend in this process and (through OMP_NUM_THREADS) in the
 * processes it starts; 0 keeps the default (OMP_NUM_THREADS when set, else
 * all online processors). */
void cli_use_threads(int64_t n);

#endif
