#include "harness/cli.h"
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
    "                     [sampling options]\n"
    "       dfpo generate --model PATH --tokens FILE [--tokenizer DIR] [sampling options]\n"
    "\n"
    "Samples continuations from a decoder: GPT-2 (a native checkpoint, a\n"
    "Hugging Face model.safetensors, or a Hugging Face folder: config.json +\n"
    "model.safetensors or a sharded model.safetensors.index.json, or\n"
    "pytorch_model.bin (torch.save's zip format) or its shard index, whose\n"
    "tokenizer files serve when --tokenizer is not given), from a T5 (a\n"
    "Hugging Face T5 folder: the prompt is the encoder's input, the tokens are\n"
    "the decoder's, started from decoder_start_token_id; a text prompt is\n"
    "ended with </s> as T5's tokenizer does), or from GPT-J, GPT-NeoX / Pythia\n"
    "or Llama (a Hugging Face folder whose config.json says model_type gptj,\n"
    "gpt_neox or llama; on the CPU; docs/rotary.md). Prompts are text encoded\n"
    "with the tokenizer:\n"
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
    "Options:\n"
    "  --model PATH         the model: a file, a Hugging Face folder or hub name\n"
    "                       OWNER/NAME[@REVISION] (its cache folder, fetched\n"
    "                       when absent; docs/datasets.md)\n"
    "  --tokenizer DIR      GPT-2 BPE files (encoder.json + vocab.bpe, or Hugging\n"
    "                       Face's); its ids must lie below the model's vocabulary.\n"
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
    "  --batch N            prompts per batch (default 16)\n"
    "  --seed N             sampling seed (default 0)\n"
    "  --device D           cpu (default), cuda, or auto: CUDA when a device is\n"
    "                       usable, else the CPU with a warning that says why;\n"
    "                       cuda fails with the driver's reason when none is;\n"
    "                       the CUDA backend has not yet run on a real GPU\n"
    "                       (docs/cuda.md)\n"
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
 * end_eot, every one is ended with the tokenizer's end-of-text: T5's </s>)
 * and adds it; `where` names it in messages. */
static int add_text_prompt(prompts *p, tok_tokenizer *tok, const char *text, size_t len,
                           int end_eot, const char *where, dfpo_err *err) {
  tok_ids v = {0};
  int rc = tok_encode(tok, text, len, 0, &v, err);
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
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *model = NULL, *tokens = NULL, *tokdir = NULL, *prompt = NULL, *input = NULL,
             *device = "cpu";
  smp_settings s = smp_settings_default();
  double v, batch = 16, seed = 0;
  int c, rc = DFPO_OK, eos_given = 0;
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
  if ((rc = model_load(&m, model, &err)))
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
  int B = (int)batch;
  char *text = NULL;
  size_t tcap = 0;
  for (size_t i0 = 0; !rc && i0 < ps.n; i0 += (size_t)B) {
    int nb = ps.n - i0 < (size_t)B ? (int)(ps.n - i0) : B, T = 0;
    for (int b = 0; b < nb; b++)
      if (ps.len[i0 + b] > T)
        T = ps.len[i0 + b];
    int *in = malloc(sizeof(int) * nb * T), *ks = malloc(sizeof(int) * nb),
        *out = malloc(sizeof(int) * nb * s.max_new), *lens = malloc(sizeof(int) * nb);
    float *lp = malloc(sizeof(float) * nb * s.max_new);
    if (!in || !ks || !out || !lens || !lp)
      rc = dfpo_err_set(&err, DFPO_ERUNTIME, "out of memory");
    for (int b = 0; !rc && b < nb; b++) {
      ks[b] = T - ps.len[i0 + b];
      for (int t = 0; t < T; t++)
        in[b * T + t] = t < ks[b] ? 0 : ps.ids[i0 + b][t - ks[b]];
    }
    if (!rc)
      rc = smp_generate(m, in, ks, nb, T, &s, &rng, out, lens, lp, &err);
    for (int b = 0; !rc && b < nb; b++) {
      const int *gen = out + (size_t)b * s.max_new;
      if (!tok) {
        printf("{\"prompt\": ");
        put_ids(ps.ids[i0 + b], ps.len[i0 + b], stdout);
      } else {
        /* the continuation's text: the new tokens without a final end-of-text */
        int nt = lens[b];
        if (nt > 0 && s.eos >= 0 && gen[nt - 1] == s.eos)
          nt--;
        size_t tlen = 0;
        int32_t *ids32 = malloc(sizeof(int32_t) * (nt ? nt : 1));
        if (!ids32) {
          rc = dfpo_err_set(&err, DFPO_ERUNTIME, "out of memory");
          break;
        }
        for (int t = 0; t < nt; t++)
          ids32[t] = gen[t];
        int gen_failed = rc = tok_decode(tok, ids32, (size_t)nt, &text, &tlen, &tcap, &err);
        if (!rc && !text)
          rc = dfpo_err_set(&err, DFPO_ERUNTIME, "out of memory");
        if (!rc && !ps.text[i0 + b]) {
          /* token-id prompts: decode them too */
          size_t plen = 0;
          char *ptext = NULL;
          size_t pcap = 0;
          int32_t *p32 = malloc(sizeof(int32_t) * ps.len[i0 + b]);
          if (!p32)
            rc = dfpo_err_set(&err, DFPO_ERUNTIME, "out of memory");
          for (int t = 0; !rc && t < ps.len[i0 + b]; t++)
            p32[t] = ps.ids[i0 + b][t];
          if (!rc)
            rc = tok_decode(tok, p32, (size_t)ps.len[i0 + b], &ptext, &plen, &pcap, &err);
          free(p32);
          ps.text[i0 + b] = ptext;
          ps.tlen[i0 + b] = plen;
        }
        free(ids32);
        if (rc) {
          /* a model whose vocabulary passes its tokenizer's (T5's 28
           * unused ids) can draw ids the tokenizer cannot write */
          dfpo_err_prefix(&err, "prompt %zu%s", i0 + (size_t)b + 1,
                          gen_failed ? ", its new tokens" : "");
          break;
        }
        printf("{\"prompt\": ");
        put_json_string(ps.text[i0 + b], ps.tlen[i0 + b], stdout);
        printf(", \"prompt_tokens\": ");
        put_ids(ps.ids[i0 + b], ps.len[i0 + b], stdout);
        printf(", \"text\": ");
        put_json_string(text, tlen, stdout);
      }
      printf(", \"tokens\": ");
      put_ids(gen, lens[b], stdout);
      printf(", \"logprobs\": [");
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
  free(text);
  prompts_free(&ps);
  tok_free(tok);
  model_free(m);
  return rc ? cli_fail(&err) : DFPO_OK;
}
