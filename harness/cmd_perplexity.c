#include "harness/cli.h"
#include "metrics/metrics.h"
#include "trainer/model.h"
#include "trainer/t5.h"
#include "trainer/tok.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char perplexity_usage[] =
    "Usage: dfpo perplexity --model PATH --tokenizer DIR --input FILE [--no-bos] [--per-doc]\n"
    "                       [--json] [--dtype T] [--adapters DIR]\n"
    "       dfpo perplexity --model PATH --tokens FILE [--tokenizer DIR] [--no-bos] [--per-doc]\n"
    "                       [--json] [--dtype T] [--adapters DIR]\n"
    "\n"
    "Scores documents under a decoder: GPT-2 (a native checkpoint, a Hugging Face\n"
    "model.safetensors, or a Hugging Face folder: config.json + model.safetensors\n"
    "or a sharded model.safetensors.index.json, or pytorch_model.bin (torch.save's\n"
    "zip format) or its shard index, whose tokenizer files serve when\n"
    "--tokenizer is not given), or GPT-J, GPT-NeoX / Pythia or Llama (a Hugging\n"
    "Face folder whose config.json says model_type gptj, gpt_neox or llama;\n"
    "docs/rotary.md). With --input, FILE holds one text document per line\n"
    "('-' for stdin; the line's end is not part of it), encoded with the\n"
    "tokenizer (\"<|endoftext|>\" in the text is ordinary text). With --tokens,\n"
    "FILE holds one document per line as whitespace-separated token ids. Empty\n"
    "lines are skipped. Each document gets <|endoftext|> (id 50256) prepended, so\n"
    "that its first token is scored too (with --tokenizer, the tokenizer's\n"
    "<|endoftext|> id; a GPT-NeoX or Llama model without a tokenizer needs\n"
    "--no-bos, since 50256 is no document start of theirs); with --no-bos its\n"
    "first token is context only. Llama's tokenizer.model has conventions of\n"
    "its own, which are followed as transformers' tokenizer(text) does: <s>\n"
    "first when its tokenizer_config.json's add_bos_token says so (the\n"
    "default), else nothing, and then the first token is context only (bos\n"
    "false); </s> after the text when add_eos_token says so; --no-bos leaves\n"
    "both out. Documents longer than the model's context are scored in\n"
    "half-overlapping windows.\n"
    "\n"
    "Prints documents, tokens (scored), nll_sum, nll_per_token and\n"
    "ppl = exp(nll_per_token); the JSON also has bos, and ppl null when it is\n"
    "past the largest double. A model with a NaN or infinite weight is refused\n"
    "at load (exit 2, naming the tensor); a document whose log-likelihood is\n"
    "not finite is an error (exit 3), never a printed nan. With --per-doc, one\n"
    "line per document comes first (doc, its input line, tokens, nll_sum).\n"
    "\n"
    "A T5 model (a Hugging Face folder whose config.json says model_type t5)\n"
    "scores source/target pairs instead: each line is the source, a tab, and\n"
    "the target (ids with --tokens; text with --input, each side encoded and\n"
    "ended with </s> as T5's tokenizer does). nll_sum is the negative sum of\n"
    "log p(target token) under teacher forcing, the decoder started with\n"
    "decoder_start_token_id (pad 0); every target token is scored, none is\n"
    "added, and --no-bos has no effect (T5 has no bos) (docs/t5.md).\n"
    "\n"
    "Options:\n"
    "  --model PATH     the model: a file, a Hugging Face folder or hub name\n"
    "                   OWNER/NAME[@REVISION] (its cache folder, fetched when\n"
    "                   absent; docs/datasets.md)\n"
    "  --tokenizer DIR  GPT-2 BPE files (encoder.json + vocab.bpe, or Hugging\n"
    "                   Face's), T5's spiece.model or Llama's tokenizer.model;\n"
    "                   its ids must lie below\n"
    "                   the model's vocabulary.\n"
    "                   Default: the model's folder when it has them\n"
    "  --input FILE     text, one document per line\n"
    "  --tokens FILE    token ids, one document per line\n"
    "  --no-bos         do not prepend <|endoftext|> (nor add Llama's <s> and </s>)\n"
    "  --per-doc        also print each document's (each pair's) tokens and nll_sum\n"
    "  --json           one JSON object instead of text\n"
    "  --dtype T        f32 (default), bf16 or f16: the precision the model keeps\n"
    "                   its weight matrices in (GPT-2, GPT-J, GPT-NeoX, Llama;\n"
    "                   bf16 and f16 halve their bytes: rounded to nearest even\n"
    "                   as they are read, with no fp32 copy (a native checkpoint,\n"
    "                   a Hugging Face folder; T5 is refused), widened to fp32\n"
    "                   in the products on the CPU;\n"
    "                   docs/memory.md)\n"
    "  --adapters DIR   peft's LoRA adapter folder (adapter_config.json,\n"
    "                   adapter_model.safetensors; dfpo export --adapters-only\n"
    "                   writes one), or its hub name OWNER/NAME[@REV], read\n"
    "                   onto the model first: GPT-2, GPT-J, GPT-NeoX, Llama\n"
    "  --device D       cpu (default), cuda, or auto: CUDA when a device is\n"
    "                   usable, else the CPU with a warning that says why; cuda\n"
    "                   fails with the driver's reason when none is (the CUDA\n"
    "                   backend's checks on a GPU: docs/cuda.md)\n"
    "  -h, --help       show this help\n";

/* Parses the ids of one line into *ids (grown as needed); returns the count
 * or -1 with a message naming the file, line and column. */
static long parse_ids(const char *line, const char *file, long lineno, int vocab, int **ids,
                      size_t *cap, dfpo_err *err) {
  long n = 0;
  const char *p = line;
  while (*p) {
    while (isspace((unsigned char)*p))
      p++;
    if (!*p)
      break;
    char *end;
    errno = 0;
    long v = strtol(p, &end, 10);
    if (end == p || errno || v < 0 || v >= vocab || (*end && !isspace((unsigned char)*end))) {
      dfpo_err_set(err, DFPO_EDATA, "%s:%ld:%ld: not a token id below %d", file, lineno,
                   (long)(p - line) + 1, vocab);
      return -1;
    }
    if (dfpo_grow(ids, cap, (size_t)n + 2, sizeof **ids, 256, DFPO_NOCAP, err))
      return -1;
    (*ids)[n++] = (int)v;
    p = end;
  }
  return n;
}

/* Encodes one line of text (without its line end) into *ids (grown as
 * needed, with room for one more), with flags (TOK_ADD_SPECIAL: Llama's
 * <s> before it); returns the count or -1. */
static long encode_line(tok_tokenizer *tok, const char *line, size_t len, int flags,
                        const char *file, long lineno, tok_ids *v, int **ids, size_t *cap,
                        dfpo_err *err) {
  if (len && line[len - 1] == '\n')
    len--;
  if (len && line[len - 1] == '\r')
    len--;
  v->n = 0;
  if (!len)
    return 0;
  if (tok_encode(tok, line, len, flags, v, err)) {
    dfpo_err_prefix(err, "%s:%ld", file, lineno);
    return -1;
  }
  if (dfpo_grow(ids, cap, v->n + 2, sizeof **ids, 0, DFPO_NOCAP, err))
    return -1;
  for (size_t i = 0; i < v->n; i++)
    (*ids)[i] = v->ids[i];
  return (long)v->n;
}

/* One T5 pair: the line's source and target (ids, or text encoded and
 * ended with </s>, split at the first tab), scored by teacher forcing:
 * *nll the negative sum of the target's log-probabilities, *scored its
 * length. Returns the target's length, 0 for an empty line, -1 on error. */
static long score_pair(model_t *m, tok_tokenizer *tok, const char *line, size_t len,
                       const char *file, long lineno, int vocab, tok_ids *v, int **ids, size_t *cap,
                       double *nll, size_t *scored, dfpo_err *err) {
  if (len && line[len - 1] == '\n')
    len--;
  if (len && line[len - 1] == '\r')
    len--;
  if (!len)
    return 0;
  const char *tab = memchr(line, '\t', len);
  if (!tab) {
    dfpo_err_set(err, DFPO_EDATA, "%s:%ld: a T5 pair needs a tab between source and target", file,
                 lineno);
    return -1;
  }
  long ns, nt;
  if (tok) {
    if ((ns = encode_line(tok, line, (size_t)(tab - line), 0, file, lineno, v, ids, cap, err)) < 0)
      return -1;
    if (dfpo_grow(ids, cap, (size_t)ns + 2, sizeof **ids, 0, DFPO_NOCAP, err))
      return -1;
    (*ids)[ns++] = tok_eot_id(tok);
    int *src = malloc((size_t)ns * sizeof *src);
    if (!src) {
      dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
      return -1;
    }
    memcpy(src, *ids, (size_t)ns * sizeof *src);
    const char *t = tab + 1;
    nt = encode_line(tok, t, len - (size_t)(t - line), 0, file, lineno, v, ids, cap, err);
    if (nt >= 0 && dfpo_grow(ids, cap, (size_t)(ns + nt) + 2, sizeof **ids, 0, DFPO_NOCAP, err))
      nt = -1;
    if (nt >= 0) {
      (*ids)[nt++] = tok_eot_id(tok);
      memmove(*ids + ns, *ids, (size_t)nt * sizeof **ids);
      memcpy(*ids, src, (size_t)ns * sizeof **ids);
    }
    free(src);
    if (nt < 0)
      return -1;
  } else {
    char *buf = malloc(len + 1);
    if (!buf) {
      dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
      return -1;
    }
    memcpy(buf, line, len);
    buf[len] = '\0';
    buf[tab - line] = '\0';
    int *src = NULL;
    size_t scap = 0;
    ns = parse_ids(buf, file, lineno, vocab, &src, &scap, err);
    nt = ns < 0 ? -1 : parse_ids(buf + (tab - line) + 1, file, lineno, vocab, ids, cap, err);
    free(buf);
    if (nt >= 0 && dfpo_grow(ids, cap, (size_t)(ns + nt) + 2, sizeof **ids, 0, DFPO_NOCAP, err))
      nt = -1;
    if (nt >= 0) {
      memmove(*ids + ns, *ids, (size_t)nt * sizeof **ids);
      memcpy(*ids, src, (size_t)ns * sizeof **ids);
    }
    free(src);
    if (nt < 0)
      return -1;
  }
  if (ns < 1 || nt < 1) {
    dfpo_err_set(err, DFPO_EDATA, "%s:%ld: a T5 pair needs a source and a target token at least",
                 file, lineno);
    return -1;
  }
  /* the pair's score is ppl_ref's and ppl_gen's for an encoder-decoder
   * (metrics/ppl.c): teacher forcing from the decoder start, every target
   * token scored */
  tok_ids src = {*ids, (size_t)ns, 0}, tgt = {*ids + ns, (size_t)nt, 0};
  met_ppl p;
  int rc = met_ppl_gen_ids(m, &src, &tgt, 1, NULL, &p, NULL, err);
  if (rc) {
    dfpo_err_prefix(err, "%s:%ld", file, lineno);
    return -1;
  }
  double s = p.nll;
  *nll = s;
  *scored = (size_t)nt;
  return nt;
}

int cmd_perplexity(int argc, char **argv) {
  static const struct option opts[] = {{"model", required_argument, NULL, 'm'},
                                       {"tokens", required_argument, NULL, 't'},
                                       {"tokenizer", required_argument, NULL, 'z'},
                                       {"input", required_argument, NULL, 'i'},
                                       {"no-bos", no_argument, NULL, 'n'},
                                       {"per-doc", no_argument, NULL, 'p'},
                                       {"json", no_argument, NULL, 'j'},
                                       {"device", required_argument, NULL, 'D'},
                                       {"dtype", required_argument, NULL, 'W'},
                                       {"adapters", required_argument, NULL, 'A'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *model = NULL, *tokens = NULL, *tokdir = NULL, *input = NULL, *device = "cpu",
             *adapters = NULL;
  int no_bos = 0, json = 0, per_doc = 0, c;
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
    case 'i':
      input = optarg;
      break;
    case 'n':
      no_bos = 1;
      break;
    case 'j':
      json = 1;
      break;
    case 'p':
      per_doc = 1;
      break;
    case 'D':
      device = optarg;
      break;
    case 'W':
      if (cli_dtype("perplexity", optarg, &dtype))
        return DFPO_EUSAGE;
      break;
    case 'A':
      adapters = optarg;
      break;
    case 'h':
      fputs(perplexity_usage, stdout);
      return DFPO_OK;
    default:
      return cli_bad_option("perplexity", argc, argv, c);
    }
  }
  if (optind < argc)
    return cli_usage_error("perplexity", "unexpected argument '%s'", argv[optind]);
  if (!model || (tokens != NULL) == (input != NULL))
    return cli_usage_error("perplexity", "--model and one of --input and --tokens are required");
  int rc = cli_device("perplexity", device);
  if (rc)
    return rc;
  dfpo_err err;
  dfpo_err_clear(&err);
  /* a hub name becomes its cache folder first: a folder brings its tokenizer */
  char mpath[4096];
  if ((rc = cli_model_path(model, mpath, sizeof mpath, &err)))
    return cli_fail(&err);
  model = mpath;
  tokdir = cli_model_tokenizer(model, tokdir);
  if (input && !tokdir)
    return cli_usage_error("perplexity",
                           "--input needs --tokenizer (or a model folder with tokenizer files)");
  model_t *m;
  if ((rc = cli_load_model(&m, model, dtype, adapters, &err)))
    return cli_fail(&err);
  int vocab = model_get_config(m)->vocab_size;
  tok_tokenizer *tok = NULL;
  if (tokdir) { /* with --tokens too: its <|endoftext|> starts the documents */
    if (!(rc = tok_load(&tok, tokdir, &err)) && tok_vocab_size(tok) > (size_t)vocab)
      rc = dfpo_err_set(&err, DFPO_EUSAGE,
                        "the tokenizer %s has %zu ids but the model %s only %d: they do not "
                        "belong together",
                        tokdir, tok_vocab_size(tok), model, vocab);
    if (rc) {
      tok_free(tok);
      model_free(m);
      return cli_fail(&err);
    }
    if (input)
      tokens = input; /* the file named in messages */
  }
  /* the document start: GPT-2's <|endoftext|>, or the tokenizer's; T5
   * scores pairs and has none. A tokenizer with its own start token
   * (Llama's) encodes each text as its conventions say (TOK_ADD_SPECIAL,
   * as transformers' tokenizer(text) does): <s> first when add_bos_token,
   * else nothing, and the text's first token is context only; </s> last
   * when add_eos_token. Token-id documents get that same start. */
  int pairs = t5_get_config(m) != NULL;
  int own = tok && tok_bos_token_id(tok) >= 0;
  int bos = own ? (int)tok_bos_id(tok) : tok ? (int)tok_eot_id(tok) : 50256;
  /* whether a start token precedes every document (the JSON's bos) */
  int with_bos = !pairs && !no_bos && (!own || bos >= 0);
  if (pairs && input && (bos < 0 || bos >= vocab)) {
    tok_free(tok);
    model_free(m);
    return cli_usage_error("perplexity", "the tokenizer %s has no </s> to end T5's texts", tokdir);
  }
  const char *arch = model_get_config(m)->arch;
  if (!pairs && !no_bos && !tok && strcmp(arch, "gpt2") && strcmp(arch, "gptj")) {
    model_free(m);
    return cli_usage_error("perplexity",
                           "a %s model's document start is not GPT-2's 50256: give its "
                           "tokenizer or --no-bos (and put the start token in the file)",
                           arch);
  }
  if (!pairs && !no_bos && !own && (bos < 0 || bos >= vocab)) {
    tok_free(tok);
    model_free(m);
    if (tok)
      return cli_usage_error("perplexity", "the tokenizer %s has no <|endoftext|>: use --no-bos",
                             tokdir);
    return cli_usage_error("perplexity",
                           "the model's vocabulary (%d) has no <|endoftext|> (50256): use --no-bos",
                           vocab);
  }
  FILE *fp = strcmp(tokens, "-") == 0 ? stdin : fopen(tokens, "r");
  if (!fp) {
    dfpo_err_errno(&err, DFPO_EDATA, errno, "%s", tokens);
    tok_free(tok);
    model_free(m);
    return cli_fail(&err);
  }
  char *line = NULL;
  size_t lcap = 0, cap = 0, total = 0;
  int *ids = NULL;
  double nll = 0.0;
  long lineno = 0, docs = 0;
  ssize_t got;
  tok_ids v = {0};
  while ((got = getline(&line, &lcap, fp)) != -1) {
    lineno++;
    long n;
    double s;
    size_t k;
    if (pairs) {
      n = score_pair(m, input ? tok : NULL, line, (size_t)got, tokens, lineno, vocab, &v, &ids,
                     &cap, &s, &k, &err);
      if (n < 0) {
        rc = err.code;
        break;
      }
      if (n == 0)
        continue;
    } else {
      if (input)
        n = encode_line(tok, line, (size_t)got, own && !no_bos ? TOK_ADD_SPECIAL : 0, tokens,
                        lineno, &v, &ids, &cap, &err);
      else
        n = parse_ids(line, tokens, lineno, vocab, &ids, &cap, &err);
      if (n < 0) {
        rc = err.code;
        break;
      }
      if (n == 0)
        continue;
      if (with_bos && !(input && own)) {
        memmove(ids + 1, ids, (size_t)n * sizeof(int));
        ids[0] = bos;
        n++;
      }
      if ((rc = model_score_tokens(m, ids, (size_t)n, &s, &k, &err))) {
        dfpo_err_prefix(&err, "%s:%ld", tokens, lineno);
        break;
      }
    }
    if (!isfinite(s)) {
      /* the weights are finite (model_load refuses others), but the sum can
       * still overflow; a NaN is never printed as a result */
      rc = dfpo_err_set(&err, DFPO_ERUNTIME, "%s:%ld: the model's log-likelihood is %s", tokens,
                        lineno, isnan(s) ? "NaN" : "infinite");
      break;
    }
    if (per_doc && json)
      printf("{\"doc\": %ld, \"line\": %ld, \"tokens\": %zu, \"nll_sum\": %.9g}\n", docs, lineno, k,
             s);
    else if (per_doc)
      printf("doc %ld, line %ld, tokens %zu, nll_sum %.6f\n", docs, lineno, k, s);
    nll += s;
    total += k;
    docs++;
  }
  free(line);
  free(ids);
  tok_ids_free(&v);
  tok_free(tok);
  if (fp != stdin)
    fclose(fp);
  model_free(m);
  if (rc)
    return cli_fail(&err);
  double per = total ? nll / (double)total : 0.0, ppl = exp(per);
  if (json && !isfinite(ppl)) /* past DBL_MAX: JSON has no infinity */
    printf("{\"documents\": %ld, \"tokens\": %zu, \"nll_sum\": %.6f, \"nll_per_token\": %.6f, "
           "\"ppl\": null, \"bos\": %s}\n",
           docs, total, nll, per, with_bos ? "true" : "false");
  else if (json)
    printf("{\"documents\": %ld, \"tokens\": %zu, \"nll_sum\": %.6f, \"nll_per_token\": %.6f, "
           "\"ppl\": %.6f, \"bos\": %s}\n",
           docs, total, nll, per, ppl, with_bos ? "true" : "false");
  else
    printf("documents %ld, tokens %zu, nll_sum %.4f, nll_per_token %.4f, ppl %.4f\n", docs, total,
           nll, per, exp(per));
  return DFPO_OK;
}
