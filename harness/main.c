/* dfpo: the command-line entry point. The only place that turns an error
 * record into an exit status (docs/architecture.md). */
#include "harness/cli.h"

#include <string.h>

static void print_usage(FILE *out) {
  fprintf(out, "Usage: dfpo [--help | --version] <command> [options]\n"
               "\n"
               "Reproduction harness for Degeneration-free Policy Optimization (DfPO,\n"
               "ICML 2024).\n"
               "\n"
               "Commands:\n");
  for (const cli_cmd *c = cli_commands; c->name; c++)
    fprintf(out, "  %-10s %s\n", c->name, c->summary);
  fprintf(out, "\n"
               "Run 'dfpo <command> --help' for a command's options.\n"
               "Exit status: 0 ok, 1 usage error, 2 data or verification error,\n"
               "3 runtime failure (reproduce: a cell failed), 4 check: a metric regressed\n"
               "beyond seed noise or a claim fails, 5 a folder this command would write\n"
               "(a run or suite folder, a cache entry) is locked by another dfpo process,\n"
               "named in the message; nothing of it was touched, 6 check: a cell of the\n"
               "baseline is missing, 130 interrupted.\n");
}

int main(int argc, char **argv) {
  dfpo_log_init();
  dfpo_signals_install();
  if (argc < 2) {
    print_usage(stderr);
    return DFPO_EUSAGE;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help")) {
    print_usage(stdout);
    return DFPO_OK;
  }
  if (!strcmp(cmd, "--version")) {
    printf("dfpo %s\n", DFPO_VERSION);
    return DFPO_OK;
  }
  if (cmd[0] == '-')
    return cli_usage_error(NULL, "unknown option '%s'", cmd);
  for (const cli_cmd *c = cli_commands; c->name; c++)
    if (!strcmp(c->name, cmd))
      return c->run(argc - 1, argv + 1);
  return cli_usage_error(NULL, "unknown command '%s'", cmd);
}
