#include "harness/cli.h"
#include "trainer/beam.h"
#include "trainer/model.h"
#include "trainer/sample.h"
#include "trainer/t5.h"
#include "trainer/tok.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char generate_usage[] =
    "Usage: dfpo generate --model PATH --tokenizer DIR (--prompt TEXT | --input FILE)\n"
    "                     [sampling or beam options]\n"
    "       dfpo generate --model PATH --tokens FILE [--tokenizer DIR]\n"
    "                     [sampling or beam options]\n"
    "\n"
    "Samples (or beam-searches) continuations from a decoder: GPT-2 (a native\n"
    "checkpoint, a Hugging Face model.safetensors, or a Hugging Face folder:\n"
    "config.json + model.safetensors or a sharded model.safetensors.index.json, or\n"
    "pytorch_model.bin (torch.save's zip format) or its shard index, whose\n"
    "tokenizer files serve when --tokenizer is not given), from a T5 (a\n"
    "Hugging Face T5 folder: the prompt is the encoder's input, the tokens are\n"
    "the decoder's, started from decoder_start_token_id; a text prompt is\n"
    "ended with </s> as T5's tokenizer does), or from\n"
    "GPT-J, GPT-NeoX / Pythia or Llama (a Hugging Face folder whose config.json\n"
    "says model_type gptj, gpt_neox or llama; docs/rotary.md).\n"
    "Prompts are text encoded with the tokenizer:\n"
    "--prompt TEXT is one prompt, --input FILE holds one prompt per line ('-' for\n"
    "stdin; the line's end is not part of it; an empty prompt starts from\n"
    "<|endoftext|>). With --tokens FILE the prompts are token ids instead, one\n"
    "prompt per line, whitespace-separated (empty lines skipped). Prompts are\n"
    "batched together, left-padded, through a KV cache.\n"
    "\n"
    "Prints one JSON line per prompt. For token-id prompts without --tokenizer:\n"
    "{\"prompt\": [ids], \"tokens\": [ids], \"logprobs\": [...]}. With --tokenizer:\n"
    "{\"prompt\": TEXT, \"prompt_tokens\": [ids], \"text\": CONTINUATION,\n"
    "\"tokens\": [ids], \"logprobs\": [...]}, where CONTINUATION is the decoded new\n"
    "tokens without a final end-of-text (bytes that are not UTF-8 become U+FFFD).\n"
    "The log-probabilities are those of the distribution each token was drawn\n"
    "from.\n"
    "\n"
    "With --beams N the continuations come from beam search as Hugging Face's\n"
    "generate runs it (transformers 4.30: num_beams, length_penalty,\n"
    "early_stopping, min_new_tokens, min_length, max_new_tokens; --beams 1 is\n"
    "its greedy search; docs/model-interface.md#decoding) instead of sampling.\n"
    "Each line then has the best hypothesis's \"tokens\" (and \"text\"), its\n"
    "\"score\" (the sum of its tokens' log-probabilities over\n"
    "length^length_penalty, the length counting the prompt's padded columns and\n"
    "the new tokens before an end-of-text) and, with --num-return N > 1,\n"
    "\"beams\": the N best hypotheses, best first, each {\"tokens\", \"score\"}\n"
    "(and \"text\"); no \"logprobs\".\n"
    "\n"
    "Options:\n"
    "  --model PATH         the model: a file, a Hugging Face folder or hub name\n"
    "                       OWNER/NAME[@REVISION] (its cache folder, fetched\n"
    "                       when absent; docs/datasets.md)\n"
    "  --tokenizer DIR      GPT-2 BPE files (encoder.json + vocab.bpe, or Hugging\n"
    "                       Face's), T5's spiece.model or Llama's tokenizer.model\n"
    "                       (a prompt gets <s> first); its ids must lie below the\n"
    "                       model's vocabulary.\n"
    "                       Default: the model's folder when it has them\n"
    "  --prompt TEXT        one text prompt\n"
    "  --input FILE         text prompts, one per line\n"
    "  --tokens FILE        prompts as token ids\n"
    "  --max-new N          new tokens at most (default 48)\n"
    "  --min-new N          new tokens before end-of-text may be drawn (default 0)\n"
    "  --temperature X      0 for greedy (default 1)\n"
    "  --top-k K            0 for off (default 0)\n"
    "  --top-p P            1 for off (default 1)\n"
    "  --eos ID             the id that ends a continuation, -1 for none. Default:\n"
    "                       the tokenizer's <|endoftext|> (T5's </s>; none when\n"
    "                       it has none); without a tokenizer, a T5's\n"
    "                       eos_token_id (config.json), else GPT-2's 50256 when\n"
    "                       the model is a GPT-2 or GPT-J whose vocabulary holds\n"
    "                       it, else none\n"
    "  --beams N            beam search with N beams (1: greedy search); not with\n"
    "                       --temperature, --top-k or --top-p\n"
    "  --length-penalty X   beam search: the exponent of the length dividing a\n"
    "                       hypothesis's summed log-probabilities (default 1)\n"
    "  --early-stopping E   beam search: true (stop once N hypotheses ended),\n"
    "                       false (default: stop when the best open beam cannot\n"
    "                       beat the worst ended one at the current length) or\n"
    "                       never (... at any length up to --max-new)\n"
    "  --num-return N       beam search: hypotheses printed per prompt, at most\n"
    "                       --beams (default 1)\n"
    "  --min-length N       end-of-text is banned while the prompt's padded\n"
    "                       columns + new tokens are fewer than N (Hugging Face's\n"
    "                       min_length; default 0); --min-new counts new tokens\n"
    "                       only\n"
    "  --batch N            prompts per batch (default 16; beam search decodes\n"
    "                       N x beams rows)\n"
    "  --seed N             sampling seed (default 0)\n"
    "  --dtype T            f32 (default), bf16 or f16: the precision the model\n"
    "                       keeps its weight matrices in (GPT-2, GPT-J,\n"
    "                       GPT-NeoX, Llama; bf16 and f16 halve their bytes:\n"
    "                       rounded to nearest even as they are read, with\n"
    "                       no fp32 copy (a native checkpoint or a Hugging\n"
    "                       Face folder; T5 is refused),\n"
    "                       widened to fp32 in the products on the CPU;\n"
    "                       docs/memory.md)\n"
    "  --adapters DIR       peft's LoRA adapter folder (adapter_config.json,\n"
    "                       adapter_model.safetensors; dfpo export\n"
    "                       --adapters-only writes one), or its hub name\n"
    "                       OWNER/NAME[@REV], read onto the model first:\n"
    "                       GPT-2, GPT-J, GPT-NeoX, Llama\n"
    "  --device D           cpu (default), cuda, or auto: CUDA when a device is\n"
    "                       usable, else the CPU with a warning that says why;\n"
    "                       cuda fails with the driver's reason when none is\n"
    "                       (the CUDA backend's checks on a GPU: docs/cuda.md)\n"
    "  -h, --help           show this help\n";

/* Writes s[0..n) as a JSON string; bytes that are not well-formed UTF-8
 * become U+FFFD (as Python's errors="replace" does, one per bad byte). */
static void put_json_string(const char *s, size_t n, FILE *out) {
  const unsigned char *p = (const unsigned char *)s;
  fputc('"', out);
  for (size_t i = 0; i < n;) {
    unsigned c = p[i];
    if (c == '"' || c == '\\') {
      fputc('\\', out);
      fputc((int)c, out);
      i++;
    } else if (c == '\n') {
      fputs("\\n", out), i++;
    } else if (c == '\t') {
      fputs("\\t", out), i++;
    } else if (c == '\r') {
      fputs("\\r", out), i++;
    } else if (c < 0x20 || c == 0x7f) {
      fprintf(out, "\\u%04x", c), i++;
    } else if (c < 0x80) {
      fputc((int)c, out), i++;
    } else {
      /* the length of a well-formed sequence starting here, or 0 */
      size_t k = 0;
      if (c >= 0xC2 && c <= 0xDF)
        k = 2;
      else if (c >= 0xE0 && c <= 0xEF)
        k = 3;
      else if (c >= 0xF0 && c <= 0xF4)
        k = 4;
      if (k && i + k <= n) {
        unsigned c1 = p[i + 1];
        int ok = (c1 & 0xC0) == 0x80;
        if (c == 0xE0 && c1 < 0xA0)
          ok = 0; /* overlong */
        if (c == 0xED && c1 > 0x9F)
          ok = 0; /* surrogate */
        if (c == 0xF0 && c1 < 0x90)
          ok = 0;
        if (c == 0xF4 && c1 > 0x8F)
          ok = 0;
        for (size_t j = 2; ok && j < k; j++)
          ok = (p[i + j] & 0xC0) == 0x80;
        if (!ok)
          k = 0;
      } else {
        k = 0;
      }
      if (k) {
        fwrite(p + i, 1, k, out);
        i += k;
      } else {
        fputs("\xEF\xBF\xBD", out);
        i++;
      }
    }
  }
  fputc('"', out);
}

static void put_ids(const int *ids, int n, FILE *out) {
  fputc('[', out);
  for (int t = 0; t < n; t++)
    fprintf(out, "%s%d", t ? ", " : "", ids[t]);
  fputc(']', out);
}

/* The prompts read so far: ids (and the text, for text prompts). */
typedef struct prompts {
  int **ids;
  int *len;
  char **text;
  size_t *tlen;
  size_t n, cap;
} prompts;

static int prompts_add(prompts *p, int *ids, int n, char *text, size_t tlen, dfpo_err *err) {
  /* one capacity per array: a failure part-way leaves the grown ones valid
   * and p->cap at the old, smaller count, which all of them still hold */
  size_t ca = p->cap, cb = p->cap, cc = p->cap, cd = p->cap;
  int rc;
  if ((rc = dfpo_grow(&p->ids, &ca, p->n + 1, sizeof *p->ids, 64, DFPO_NOCAP, err)) ||
      (rc = dfpo_grow(&p->len, &cb, p->n + 1, sizeof *p->len, 64, DFPO_NOCAP, err)) ||
      (rc = dfpo_grow(&p->text, &cc, p->n + 1, sizeof *p->text, 64, DFPO_NOCAP, err)) ||
      (rc = dfpo_grow(&p->tlen, &cd, p->n + 1, sizeof *p->tlen, 64, DFPO_NOCAP, err))) {
    free(ids);
    free(text);
    return rc;
  }
  p->cap = ca;
  p->ids[p->n] = ids;
  p->len[p->n] = n;
  p->tlen[p->n] = tlen;
  p->text[p->n++] = text;
  return DFPO_OK;
}

static void prompts_free(prompts *p) {
  for (size_t i = 0; i < p->n; i++) {
    free(p->ids[i]);
    free(p->text[i]);
  }
  free(p->ids);
  free(p->len);
  free(p->text);
  free(p->tlen);
}

/* Encodes one text prompt (an empty one becomes <|endoftext|>; with
 * end_eot, every one is ended with the tokenizer's end-of-text: T5's </s>;
 * what the tokenizer adds around a text is added: Llama's <s>) and adds it;
 * `where` names it in messages. */
static int add_text_prompt(prompts *p, tok_tokenizer *tok, const char *text, size_t len,
                           int end_eot, const char *where, dfpo_err *err) {
  tok_ids v = {0};
  int rc = tok_encode(tok, text, len, TOK_ADD_SPECIAL, &v, err);
  int32_t eot = tok_eot_id(tok);
  if (!rc && end_eot && eot < 0) {
    tok_ids_free(&v);
    return dfpo_err_set(err, DFPO_EDATA, "%s: the tokenizer has no </s> to end T5's prompt", where);
  }
  if (!rc && v.n == 0 && !end_eot) {
    if (eot < 0) {
      tok_ids_free(&v);
      return dfpo_err_set(err, DFPO_EDATA,
                          "%s: an empty prompt needs <|endoftext|>, which the tokenizer lacks",
                          where);
    }
    if (!rc)
      rc = tok_encode(tok, "<|endoftext|>", 13, TOK_ALLOW_SPECIAL, &v, err);
  }
  if (rc) {
    tok_ids_free(&v);
    return dfpo_err_prefix(err, "%s", where);
  }
  int *ids = malloc(sizeof(int) * (v.n + 1));
  char *copy = malloc(len + 1);
  if (!ids || !copy) {
    free(ids);
    free(copy);
    tok_ids_free(&v);
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  }
  for (size_t i = 0; i < v.n; i++)
    ids[i] = v.ids[i];
  if (end_eot)
    ids[v.n] = eot;
  memcpy(copy, text, len);
  copy[len] = 0;
  int n = (int)v.n + (end_eot != 0);
  tok_ids_free(&v);
  return prompts_add(p, ids, n, copy, len, err);
}

/* Reads prompts from FILE (text lines when tok is set and !ids_mode, else
 * token ids). */
static int read_prompts(prompts *p, const char *file, int ids_mode, tok_tokenizer *tok, int vocab,
                        int end_eot, dfpo_err *err) {
  FILE *fp = strcmp(file, "-") == 0 ? stdin : fopen(file, "r");
  if (!fp)
    return dfpo_err_errno(err, DFPO_EDATA, errno, "%s", file);
  char *line = NULL, where[4200];
  size_t lcap = 0;
  ssize_t got;
  long lineno = 0;
  int rc = DFPO_OK;
  while (!rc && (got = getline(&line, &lcap, fp)) != -1) {
    lineno++;
    snprintf(where, sizeof where, "%s:%ld", file, lineno);
    if (!ids_mode) {
      size_t len = (size_t)got;
      if (len && line[len - 1] == '\n')
        len--;
      if (len && line[len - 1] == '\r')
        len--;
      rc = add_text_prompt(p, tok, line, len, end_eot, where, err);
      continue;
    }
    int *ids = malloc((strlen(line) / 2 + 2) * sizeof(int));
    int n = 0;
    char *q = line, *end;
    if (!ids)
      rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    while (ids) {
      while (isspace((unsigned char)*q))
        q++;
      if (!*q)
        break;
      errno = 0;
      long t = strtol(q, &end, 10);
      if (end == q || errno || t < 0 || t >= vocab || (*end && !isspace((unsigned char)*end))) {
        rc = dfpo_err_set(err, DFPO_EDATA, "%s:%ld: not a token id below %d", where,
                          (long)(q - line) + 1, vocab);
        break;
      }
      ids[n++] = (int)t;
      q = end;
    }
    if (rc || n == 0)
      free(ids);
    else
      rc = prompts_add(p, ids, n, NULL, 0, err);
  }
  free(line);
  if (fp != stdin)
    fclose(fp);
  return rc;
}

/* The text of the new tokens gen[n] without a final end-of-text, into
 * *text (a buffer tok_decode grows). */
static int continuation_text(tok_tokenizer *tok, const int *gen, int n, int eos, char **text,
                             size_t *tlen, size_t *tcap, dfpo_err *err) {
  if (n > 0 && eos >= 0 && gen[n - 1] == eos)
    n--;
  int32_t *ids32 = malloc(sizeof(int32_t) * (n ? n : 1));
  if (!ids32)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  for (int t = 0; t < n; t++)
    ids32[t] = gen[t];
  *tlen = 0;
  int rc = tok_decode(tok, ids32, (size_t)n, text, tlen, tcap, err);
  free(ids32);
  /* a model whose vocabulary passes its tokenizer's (T5's 28 unused ids)
   * can draw ids the tokenizer cannot write */
  if (rc)
    return dfpo_err_prefix(err, "its new tokens");
  if (!*text)
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  return rc;
}

/* Prompt i's text: token-id prompts are decoded once, on first use. */
static int prompt_text(prompts *ps, size_t i, tok_tokenizer *tok, dfpo_err *err) {
  if (ps->text[i])
    return DFPO_OK;
  size_t plen = 0, pcap = 0;
  char *ptext = NULL;
  int32_t *p32 = malloc(sizeof(int32_t) * ps->len[i]);
  if (!p32)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  for (int t = 0; t < ps->len[i]; t++)
    p32[t] = ps->ids[i][t];
  int rc = tok_decode(tok, p32, (size_t)ps->len[i], &ptext, &plen, &pcap, err);
  free(p32);
  if (!rc && !ptext)
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  if (rc) {
    free(ptext);
    return rc;
  }
  ps->text[i] = ptext;
  ps->tlen[i] = plen;
  return DFPO_OK;
}

/* The line's start: the prompt (ids, or its text and ids with a tokenizer). */
static int put_prompt(FILE *o, prompts *ps, size_t i, tok_tokenizer *tok, dfpo_err *err) {
  int rc;
  if (!tok) {
    fprintf(o, "{\"prompt\": ");
    put_ids(ps->ids[i], ps->len[i], o);
    return DFPO_OK;
  }
  if ((rc = prompt_text(ps, i, tok, err)))
    return rc;
  fprintf(o, "{\"prompt\": ");
  put_json_string(ps->text[i], ps->tlen[i], o);
  fprintf(o, ", \"prompt_tokens\": ");
  put_ids(ps->ids[i], ps->len[i], o);
  return DFPO_OK;
}

/* One hypothesis's fields: "text" (with a tokenizer), "tokens", "score". */
static int put_hypothesis(FILE *o, tok_tokenizer *tok, const int *gen, int n, int eos, double score,
                          char **text, size_t *tcap, dfpo_err *err) {
  size_t tlen = 0;
  int rc;
  if (tok) {
    if ((rc = continuation_text(tok, gen, n, eos, text, &tlen, tcap, err)))
      return rc;
    fprintf(o, "\"text\": ");
    put_json_string(*text, tlen, o);
    fprintf(o, ", ");
  }
  fprintf(o, "\"tokens\": ");
  put_ids(gen, n, o);
  fprintf(o, ", \"score\": %.6f", score);
  return DFPO_OK;
}

/* The beam options of a command line (beams 0: sampling). */
typedef struct beam_opts {
  beam_settings s;
  int beams, sampling_given;
} beam_opts;

int cmd_generate(int argc, char **argv) {
  static const struct option opts[] = {{"model", required_argument, NULL, 'm'},
                                       {"tokens", required_argument, NULL, 't'},
                                       {"tokenizer", required_argument, NULL, 'z'},
                                       {"prompt", required_argument, NULL, 'P'},
                                       {"input", required_argument, NULL, 'i'},
                                       {"max-new", required_argument, NULL, 'x'},
                                       {"min-new", required_argument, NULL, 'n'},
                                       {"temperature", required_argument, NULL, 'T'},
                                       {"top-k", required_argument, NULL, 'k'},
                                       {"top-p", required_argument, NULL, 'p'},
                                       {"eos", required_argument, NULL, 'e'},
                                       {"batch", required_argument, NULL, 'b'},
                                       {"seed", required_argument, NULL, 's'},
                                       {"device", required_argument, NULL, 'D'},
                                       {"dtype", required_argument, NULL, 'W'},
                                       {"adapters", required_argument, NULL, 'A'},
                                       {"beams", required_argument, NULL, 'B'},
                                       {"length-penalty", required_argument, NULL, 'L'},
                                       {"early-stopping", required_argument, NULL, 'E'},
                                       {"num-return", required_argument, NULL, 'R'},
                                       {"min-length", required_argument, NULL, 'M'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *model = NULL, *tokens = NULL, *tokdir = NULL, *prompt = NULL, *input = NULL,
             *device = "cpu", *adapters = NULL;
  smp_settings s = smp_settings_default();
  beam_opts bo = {beam_settings_default(), 0, 0};
  int beam_only = 0; /* a beam option was given */
  double v, batch = 16, seed = 0;
  int c, rc = DFPO_OK, eos_given = 0;
  ops_dtype dtype = OPS_DTYPE_F32;
  cli_reset_getopt();
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    switch (c) {
    case 'm':
      model = optarg;
      break;
    case 't':
      tokens = optarg;
      break;
    case 'z':
      tokdir = optarg;
      break;
    case 'P':
      prompt = optarg;
      break;
    case 'i':
      input = optarg;
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
      bo.sampling_given = 1;
      break;
    case 'k':
      if (!(rc = cli_number("generate", optarg, 0, 1 << 24, "--top-k", &v)))
        s.top_k = (int)v;
      bo.sampling_given = 1;
      break;
    case 'p':
      if (!(rc = cli_number("generate", optarg, 1e-6, 1, "--top-p", &v)))
        s.top_p = (float)v;
      bo.sampling_given = 1;
      break;
    case 'e':
      if (!(rc = cli_number("generate", optarg, -1, 1 << 24, "--eos", &v))) {
        s.eos = (int)v;
        eos_given = 1;
      }
      break;
    case 'b':
      rc = cli_number("generate", optarg, 1, 4096, "--batch", &batch);
      break;
    case 's':
      rc = cli_number("generate", optarg, 0, 1e15, "--seed", &seed);
      break;
    case 'D':
      device = optarg;
      break;
    case 'W':
      rc = cli_dtype("generate", optarg, &dtype);
      break;
    case 'A':
      adapters = optarg;
      break;
    case 'B':
      rc = cli_integer("generate", optarg, 1, 1024, "--beams", &bo.beams);
      break;
    case 'L':
      if (!(rc = cli_number("generate", optarg, -1e6, 1e6, "--length-penalty", &v)))
        bo.s.length_penalty = (float)v;
      beam_only = 1;
      break;
    case 'E':
      if (!strcmp(optarg, "true"))
        bo.s.early_stopping = BEAM_EARLY_TRUE;
      else if (!strcmp(optarg, "false"))
        bo.s.early_stopping = BEAM_EARLY_FALSE;
      else if (!strcmp(optarg, "never"))
        bo.s.early_stopping = BEAM_EARLY_NEVER;
      else
        rc = cli_usage_error("generate", "--early-stopping must be true, false or never, got '%s'",
                             optarg);
      beam_only = 1;
      break;
    case 'R':
      rc = cli_integer("generate", optarg, 1, 1024, "--num-return", &bo.s.num_return);
      beam_only = 1;
      break;
    case 'M':
      rc = cli_integer("generate", optarg, 0, 1 << 20, "--min-length", &bo.s.min_length);
      beam_only = 1;
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
  if (!model)
    return cli_usage_error("generate", "--model is required");
  if ((tokens != NULL) + (prompt != NULL) + (input != NULL) != 1)
    return cli_usage_error("generate", "give exactly one of --prompt, --input and --tokens");
  if (beam_only && !bo.beams)
    return cli_usage_error("generate", "--length-penalty, --early-stopping, --num-return and "
                                       "--min-length are beam search's: give --beams");
  if (bo.beams && bo.sampling_given)
    return cli_usage_error("generate", "--beams decodes by beam search: --temperature, --top-k "
                                       "and --top-p are sampling's");
  if (bo.beams && bo.s.num_return > bo.beams)
    return cli_usage_error("generate", "--num-return %d exceeds --beams %d", bo.s.num_return,
                           bo.beams);
  if ((rc = cli_device("generate", device)))
    return rc;
  dfpo_err err;
  dfpo_err_clear(&err);
  /* a hub name becomes its cache folder first: a folder brings its tokenizer */
  char mpath[4096];
  if ((rc = cli_model_path(model, mpath, sizeof mpath, &err)))
    return cli_fail(&err);
  model = mpath;
  tokdir = cli_model_tokenizer(model, tokdir);
  if (!tokens && !tokdir)
    return cli_usage_error("generate", "--prompt and --input need --tokenizer (or a model folder "
                                       "with tokenizer files)");
  model_t *m;
  if ((rc = cli_load_model(&m, model, dtype, adapters, &err)))
    return cli_fail(&err);
  const model_config *cfg = model_get_config(m);
  tok_tokenizer *tok = NULL;
  if (tokdir && !(rc = tok_load(&tok, tokdir, &err)) &&
      tok_vocab_size(tok) > (size_t)cfg->vocab_size)
    rc = dfpo_err_set(&err, DFPO_EUSAGE,
                      "the tokenizer %s has %zu ids but the model %s only %d: they do not belong "
                      "together",
                      tokdir, tok_vocab_size(tok), model, cfg->vocab_size);
  /* end-of-text: --eos, else the tokenizer's, else a T5's config.json's,
   * else GPT-2's where it fits */
  const t5_config *t5 = t5_get_config(m);
  if (!eos_given && tok)
    s.eos = tok_eot_id(tok);
  else if (!eos_given && t5)
    s.eos = t5->eos_id;
  /* 50256 is <|endoftext|> in GPT-2's and GPT-J's vocabularies only */
  else if (!eos_given && strcmp(cfg->arch, "gpt2") && strcmp(cfg->arch, "gptj"))
    s.eos = -1;
  if (s.eos >= cfg->vocab_size) {
    if (eos_given)
      rc = rc ? rc
              : dfpo_err_set(&err, DFPO_EUSAGE, "--eos %d: the model's vocabulary has %d ids",
                             s.eos, cfg->vocab_size);
    s.eos = -1;
  }
  bo.s.num_beams = bo.beams;
  bo.s.max_new = s.max_new;
  bo.s.min_new = s.min_new;
  bo.s.eos = s.eos;
  prompts ps = {0};
  if (!rc && prompt)
    rc = add_text_prompt(&ps, tok, prompt, strlen(prompt), t5 != NULL, "--prompt", &err);
  else if (!rc)
    rc = read_prompts(&ps, tokens ? tokens : input, tokens != NULL, tok, cfg->vocab_size,
                      t5 != NULL, &err);
  /* a T5's prompt is the encoder's (relative positions: no limit); its
   * decoder holds n_ctx positions, the start and max_new - 1 tokens */
  if (!rc && t5 && s.max_new > cfg->n_ctx)
    rc = dfpo_err_set(&err, DFPO_EUSAGE, "--max-new %d: the T5's decoder holds %d positions",
                      s.max_new, cfg->n_ctx);
  for (size_t i = 0; !rc && !t5 && i < ps.n; i++)
    if (ps.len[i] + s.max_new > cfg->n_ctx)
      rc = dfpo_err_set(&err, DFPO_EUSAGE, "prompt %zu: %d prompt tokens + %d new exceed n_ctx %d",
                        i + 1, ps.len[i], s.max_new, cfg->n_ctx);
  dfpo_rng rng;
  dfpo_rng_init(&rng, (uint64_t)seed, DFPO_STREAM_SAMPLING);
  int B = (int)batch, NR = bo.beams ? bo.s.num_return : 1;
  char *text = NULL;
  size_t tcap = 0;
  for (size_t i0 = 0; !rc && i0 < ps.n; i0 += (size_t)B) {
    int nb = ps.n - i0 < (size_t)B ? (int)(ps.n - i0) : B, T = 0;
    for (int b = 0; b < nb; b++)
      if (ps.len[i0 + b] > T)
        T = ps.len[i0 + b];
    int *in = malloc(sizeof(int) * nb * T), *ks = malloc(sizeof(int) * nb),
        *out = malloc(sizeof(int) * nb * NR * s.max_new), *lens = malloc(sizeof(int) * nb * NR);
    float *lp = malloc(sizeof(float) * nb * s.max_new);
    double *scores = malloc(sizeof(double) * nb * NR);
    if (!in || !ks || !out || !lens || !lp || !scores)
      rc = dfpo_err_set(&err, DFPO_ERUNTIME, "out of memory");
    for (int b = 0; !rc && b < nb; b++) {
      ks[b] = T - ps.len[i0 + b];
      for (int t = 0; t < T; t++)
        in[b * T + t] = t < ks[b] ? 0 : ps.ids[i0 + b][t - ks[b]];
    }
    if (!rc && bo.beams)
      rc = beam_search(m, in, ks, nb, T, &bo.s, out, lens, scores, &err);
    else if (!rc)
      rc = smp_generate(m, in, ks, nb, T, &s, &rng, out, lens, lp, &err);
    for (int b = 0; !rc && b < nb; b++) {
      size_t i = i0 + (size_t)b;
      const int *gen = out + (size_t)b * NR * s.max_new;
      /* the line is built in memory and printed whole, or not at all */
      char *lbuf = NULL;
      size_t lsize = 0;
      FILE *o = open_memstream(&lbuf, &lsize);
      if (!o) {
        rc = dfpo_err_set(&err, DFPO_ERUNTIME, "out of memory");
        break;
      }
      if ((rc = put_prompt(o, &ps, i, tok, &err)))
        goto line_failed;
      fprintf(o, ", ");
      if (bo.beams) {
        if ((rc = put_hypothesis(o, tok, gen, lens[b * NR], s.eos, scores[b * NR], &text, &tcap,
                                 &err)))
          goto line_failed;
        if (NR > 1) {
          fprintf(o, ", \"beams\": [");
          for (int r = 0; r < NR; r++) {
            fprintf(o, "%s{", r ? ", " : "");
            if ((rc = put_hypothesis(o, tok, gen + (size_t)r * s.max_new, lens[b * NR + r], s.eos,
                                     scores[b * NR + r], &text, &tcap, &err)))
              goto line_failed;
            fprintf(o, "}");
          }
          fprintf(o, "]");
        }
        fprintf(o, "}\n");
        goto line_done;
      }
      if (tok) {
        size_t tlen = 0;
        if ((rc = continuation_text(tok, gen, lens[b], s.eos, &text, &tlen, &tcap, &err)))
          goto line_failed;
        fprintf(o, "\"text\": ");
        put_json_string(text, tlen, o);
        fprintf(o, ", ");
      }
      fprintf(o, "\"tokens\": ");
      put_ids(gen, lens[b], o);
      fprintf(o, ", \"logprobs\": [");
      for (int t = 0; t < lens[b]; t++)
        fprintf(o, "%s%.6f", t ? ", " : "", (double)lp[b * s.max_new + t]);
      fprintf(o, "]}\n");
    line_done:
      if (fclose(o) == 0)
        fwrite(lbuf, 1, lsize, stdout);
      else
        rc = dfpo_err_set(&err, DFPO_ERUNTIME, "out of memory");
      free(lbuf);
      continue;
    line_failed:
      fclose(o);
      free(lbuf);
      dfpo_err_prefix(&err, "prompt %zu", i + 1);
      break;
    }
    free(in);
    free(ks);
    free(out);
    free(lens);
    free(lp);
    free(scores);
  }
  free(text);
  prompts_free(&ps);
  tok_free(tok);
  model_free(m);
  return rc ? cli_fail(&err) : DFPO_OK;
}
