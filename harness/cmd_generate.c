#include "harness/cli.h"
#include "trainer/trainer.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char generate_usage[] =
    "Usage: dfpo generate --model PATH --tokens FILE [sampling options]\n"
    "\n"
    "Samples continuations from a GPT-2 model (a native checkpoint or a Hugging\n"
    "Face model.safetensors) for prompts given as token ids, one prompt per line\n"
    "of FILE ('-' for stdin), whitespace-separated (text prompts with\n"
    "--tokenizer arrive with the tokenizer). Prompts are batched together,\n"
    "left-padded, through a KV cache. Prints one JSON line per prompt:\n"
    "{\"prompt\": [...], \"tokens\": [...], \"logprobs\": [...]}, the log-probabilities\n"
    "being those of the distribution each token was drawn from.\n"
    "\n"
    "Options:\n"
    "  --model PATH         the model\n"
    "  --tokens FILE        prompts as token ids\n"
    "  --max-new N          new tokens at most (default 48)\n"
    "  --min-new N          new tokens before end-of-text may be drawn (default 0)\n"
    "  --temperature X      0 for greedy (default 1)\n"
    "  --top-k K            0 for off (default 0)\n"
    "  --top-p P            1 for off (default 1)\n"
    "  --eos ID             end-of-text id, -1 for none (default 50256)\n"
    "  --batch N            prompts per batch (default 16)\n"
    "  --seed N             sampling seed (default 0)\n"
    "  -h, --help           show this help\n";

int cmd_generate(int argc, char **argv) {
  static const struct option opts[] = {{"model", required_argument, NULL, 'm'},
                                       {"tokens", required_argument, NULL, 't'},
                                       {"max-new", required_argument, NULL, 'x'},
                                       {"min-new", required_argument, NULL, 'n'},
                                       {"temperature", required_argument, NULL, 'T'},
                                       {"top-k", required_argument, NULL, 'k'},
                                       {"top-p", required_argument, NULL, 'p'},
                                       {"eos", required_argument, NULL, 'e'},
                                       {"batch", required_argument, NULL, 'b'},
                                       {"seed", required_argument, NULL, 's'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *model = NULL, *tokens = NULL;
  gpt2_sampling s = gpt2_sampling_default();
  double v, batch = 16, seed = 0;
  int c, rc = DFPO_OK;
  cli_reset_getopt();
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    switch (c) {
    case 'm':
      model = optarg;
      break;
    case 't':
      tokens = optarg;
      break;
    case 'x':
      if (!(rc = cli_number("generate", optarg, 1, 1 << 20, "--max-new", &v)))
        s.max_new = (int)v;
      break;
    case 'n':
      if (!(rc = cli_number("generate", optarg, 0, 1 << 20, "--min-new", &v)))
        s.min_new = (int)v;
      break;
    case 'T':
      if (!(rc = cli_number("generate", optarg, 0, 1e6, "--temperature", &v)))
        s.temperature = (float)v;
      break;
    case 'k':
      if (!(rc = cli_number("generate", optarg, 0, 1 << 24, "--top-k", &v)))
        s.top_k = (int)v;
      break;
    case 'p':
      if (!(rc = cli_number("generate", optarg, 1e-6, 1, "--top-p", &v)))
        s.top_p = (float)v;
      break;
    case 'e':
      if (!(rc = cli_number("generate", optarg, -1, 1 << 24, "--eos", &v)))
        s.eos = (int)v;
      break;
    case 'b':
      rc = cli_number("generate", optarg, 1, 4096, "--batch", &batch);
      break;
    case 's':
      rc = cli_number("generate", optarg, 0, 1e15, "--seed", &seed);
      break;
    case 'h':
      fputs(generate_usage, stdout);
      return DFPO_OK;
    default:
      return cli_bad_option("generate", argc, argv, c);
    }
    if (rc)
      return rc;
  }
  if (optind < argc)
    return cli_usage_error("generate", "unexpected argument '%s'", argv[optind]);
  if (!model || !tokens)
    return cli_usage_error("generate", "--model and --tokens are required");
  dfpo_err err;
  dfpo_err_clear(&err);
  gpt2_model *m;
  if ((rc = gpt2_load(&m, model, &err)))
    return cli_fail(&err);
  const gpt2_config *cfg = gpt2_get_config(m);
  if (s.eos >= cfg->vocab_size)
    s.eos = -1;
  /* read every prompt */
  FILE *fp = strcmp(tokens, "-") == 0 ? stdin : fopen(tokens, "r");
  if (!fp) {
    dfpo_err_errno(&err, DFPO_EDATA, errno, "%s", tokens);
    gpt2_free(m);
    return cli_fail(&err);
  }
  int **prompts = NULL, *plen = NULL;
  size_t np = 0, pcap = 0;
  char *line = NULL;
  size_t lcap = 0;
  long lineno = 0;
  while (!rc && getline(&line, &lcap, fp) != -1) {
    lineno++;
    int *ids = malloc((strlen(line) / 2 + 2) * sizeof(int));
    int n = 0;
    char *p = line, *end;
    while (ids) {
      while (isspace((unsigned char)*p))
        p++;
      if (!*p)
        break;
      errno = 0;
      long t = strtol(p, &end, 10);
      if (end == p || errno || t < 0 || t >= cfg->vocab_size ||
          (*end && !isspace((unsigned char)*end))) {
        rc = dfpo_err_set(&err, DFPO_EDATA, "%s:%ld:%ld: not a token id below %d", tokens, lineno,
                          (long)(p - line) + 1, cfg->vocab_size);
        break;
      }
      ids[n++] = (int)t;
      p = end;
    }
    if (!ids)
      rc = dfpo_err_set(&err, DFPO_ERUNTIME, "out of memory");
    if (rc || n == 0) {
      free(ids);
      continue;
    }
    if (n + s.max_new > cfg->n_ctx) {
      free(ids);
      rc = dfpo_err_set(&err, DFPO_EUSAGE, "%s:%ld: %d prompt tokens + %d new exceed n_ctx %d",
                        tokens, lineno, n, s.max_new, cfg->n_ctx);
      break;
    }
    if (np == pcap) {
      pcap = pcap ? 2 * pcap : 64;
      prompts = realloc(prompts, pcap * sizeof *prompts);
      plen = realloc(plen, pcap * sizeof *plen);
    }
    prompts[np] = ids;
    plen[np++] = n;
  }
  free(line);
  if (fp != stdin)
    fclose(fp);
  dfpo_rng rng;
  dfpo_rng_init(&rng, (uint64_t)seed, DFPO_STREAM_SAMPLING);
  int B = (int)batch;
  for (size_t i0 = 0; !rc && i0 < np; i0 += (size_t)B) {
    int nb = np - i0 < (size_t)B ? (int)(np - i0) : B, T = 0;
    for (int b = 0; b < nb; b++)
      if (plen[i0 + b] > T)
        T = plen[i0 + b];
    int *in = malloc(sizeof(int) * nb * T), *ks = malloc(sizeof(int) * nb),
        *out = malloc(sizeof(int) * nb * s.max_new), *lens = malloc(sizeof(int) * nb);
    float *lp = malloc(sizeof(float) * nb * s.max_new);
    for (int b = 0; b < nb; b++) {
      ks[b] = T - plen[i0 + b];
      for (int t = 0; t < T; t++)
        in[b * T + t] = t < ks[b] ? 0 : prompts[i0 + b][t - ks[b]];
    }
    rc = gpt2_generate(m, in, ks, nb, T, &s, &rng, out, lens, lp, &err);
    for (int b = 0; !rc && b < nb; b++) {
      printf("{\"prompt\": [");
      for (int t = 0; t < plen[i0 + b]; t++)
        printf("%s%d", t ? ", " : "", prompts[i0 + b][t]);
      printf("], \"tokens\": [");
      for (int t = 0; t < lens[b]; t++)
        printf("%s%d", t ? ", " : "", out[b * s.max_new + t]);
      printf("], \"logprobs\": [");
      for (int t = 0; t < lens[b]; t++)
        printf("%s%.6f", t ? ", " : "", (double)lp[b * s.max_new + t]);
      printf("]}\n");
    }
    free(in);
    free(ks);
    free(out);
    free(lens);
    free(lp);
  }
  for (size_t i = 0; i < np; i++)
    free(prompts[i]);
  free(prompts);
  free(plen);
  gpt2_free(m);
  return rc ? cli_fail(&err) : DFPO_OK;
}
