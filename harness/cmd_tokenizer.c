#include "harness/cli.h"
#include "trainer/tok.h"

#include <errno.h>
#include <getopt.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char tokenizer_usage[] =
    "Usage: dfpo tokenizer encode --tokenizer DIR [--lines] [--allow-special] [--add-special]\n"
    "                              [--stats]\n"
    "       dfpo tokenizer decode --tokenizer DIR [--lines]\n"
    "       dfpo tokenizer train --corpus FILE... --vocab-size N --out DIR\n"
    "\n"
    "GPT-2's byte-level BPE (docs/tokenizer.md). DIR holds encoder.json +\n"
    "vocab.bpe (OpenAI's files), vocab.json + merges.txt or tokenizer.json\n"
    "(Hugging Face's); a tokenizer.json file may be given directly. A folder\n"
    "with spiece.model is T5's SentencePiece (docs/t5.md): libsentencepiece's\n"
    "encoding, no </s> added, <extra_id_N> as the top ids. A folder with\n"
    "tokenizer.model (and no spiece.model) is Llama's SentencePiece (BPE with\n"
    "byte fallback; unk 0, <s> 1, </s> 2; docs/tokenizer.md).\n"
    "\n"
    "Subcommands:\n"
    "  encode  read stdin (any bytes) and print its token ids separated by\n"
    "          spaces, then a newline\n"
    "  decode  read token ids (separated by spaces or newlines) from stdin and\n"
    "          write their bytes to stdout\n"
    "  train   learn a byte-level BPE from the corpus files and write\n"
    "          encoder.json and vocab.bpe into DIR\n"
    "\n"
    "Options:\n"
    "  -t, --tokenizer DIR   the tokenizer to use\n"
    "  -l, --lines           one document per input line: encode prints one line\n"
    "                        of ids per input line (documents are encoded on all\n"
    "                        OpenMP threads; OMP_NUM_THREADS sets how many);\n"
    "                        decode writes each line's bytes and a newline\n"
    "  -s, --allow-special   encode \"<|endoftext|>\" (and any other special\n"
    "                        token) as its id; without it the text is ordinary\n"
    "  -a, --add-special     add what the tokenizer adds around a text (Hugging\n"
    "                        Face's add_special_tokens): Llama's <s> before it\n"
    "                        (add_bos_token) and </s> after it (add_eos_token);\n"
    "                        GPT-2's and T5's tokenizers add nothing\n"
    "  --stats               report bytes, tokens, threads, the encoding's wall and\n"
    "                        CPU time and rates (the encoding alone, without\n"
    "                        loading, reading and printing) on stderr\n"
    "  -c, --corpus FILE...  training text files (every argument after it that is\n"
    "                        not an option is one more file)\n"
    "  -n, --vocab-size N    vocabulary size to train: 256 bytes + merges +\n"
    "                        \"<|endoftext|>\", so N >= 257\n"
    "  -o, --out DIR         where train writes encoder.json and vocab.bpe\n"
    "  -h, --help            show this help\n";

/* CPU time of the whole process (all threads): on a shared machine the
 * per-core rate is bytes per CPU second, whatever else runs. */
static double cpu_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int read_stdin(char **data, size_t *len, dfpo_err *err) {
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  if (!buf)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  for (;;) {
    if (dfpo_grow(&buf, &cap, n + 1, 1, 0, DFPO_NOCAP, NULL)) {
      free(buf);
      return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory reading stdin");
    }
    size_t k = fread(buf + n, 1, cap - n, stdin);
    n += k;
    if (k == 0) {
      if (ferror(stdin)) {
        free(buf);
        return dfpo_err_errno(err, DFPO_ERUNTIME, errno, "reading stdin");
      }
      break;
    }
  }
  *data = buf;
  *len = n;
  return DFPO_OK;
}

/* Splits data into lines (without their '\n'; no empty last line after a
 * final newline). Arrays are heap, caller frees. */
static int split_lines(const char *data, size_t len, const char ***lines, size_t **lens,
                       size_t *n) {
  size_t count = 0;
  for (size_t i = 0; i < len; i++)
    count += data[i] == '\n';
  count += len && data[len - 1] != '\n';
  *lines = malloc((count ? count : 1) * sizeof **lines);
  *lens = malloc((count ? count : 1) * sizeof **lens);
  if (!*lines || !*lens)
    return -1;
  size_t k = 0, start = 0;
  for (size_t i = 0; i <= len; i++) {
    if (i == len ? i > start : data[i] == '\n') {
      (*lines)[k] = data + start;
      (*lens)[k++] = i - start;
      start = i + 1;
    }
  }
  *n = k;
  return 0;
}

static void print_ids(const int32_t *ids, size_t n, FILE *out) {
  char buf[1 << 14];
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (k > sizeof buf - 16) {
      fwrite(buf, 1, k, out);
      k = 0;
    }
    if (i)
      buf[k++] = ' ';
    char tmp[12];
    int m = 0;
    uint32_t v = (uint32_t)ids[i];
    do {
      tmp[m++] = (char)('0' + v % 10);
      v /= 10;
    } while (v);
    while (m)
      buf[k++] = tmp[--m];
  }
  buf[k++] = '\n';
  fwrite(buf, 1, k, out);
}

typedef struct tok_opts {
  const char *tokenizer, *out;
  int lines, special, add_special, stats;
  long vocab_size;
  const char **corpus;
  size_t n_corpus;
} tok_opts;

static int tokenizer_encode(const tok_opts *o) {
  dfpo_err err;
  dfpo_err_clear(&err);
  tok_tokenizer *t;
  int rc = tok_load(&t, o->tokenizer, &err);
  if (rc)
    return cli_fail(&err);
  char *data = NULL;
  size_t len = 0;
  rc = read_stdin(&data, &len, &err);
  const char **lines = NULL;
  size_t *lens = NULL, n = 1;
  tok_ids *outs = NULL;
  if (!rc && o->lines && split_lines(data, len, &lines, &lens, &n))
    rc = dfpo_err_set(&err, DFPO_ERUNTIME, "out of memory");
  if (!rc && !(outs = calloc(n ? n : 1, sizeof *outs)))
    rc = dfpo_err_set(&err, DFPO_ERUNTIME, "out of memory");
  double t0 = dfpo_now(), c0 = cpu_seconds();
  int flags = (o->special ? TOK_ALLOW_SPECIAL : 0) | (o->add_special ? TOK_ADD_SPECIAL : 0);
  if (!rc)
    rc = o->lines ? tok_encode_many(t, lines, lens, n, flags, outs, &err)
                  : tok_encode(t, data, len, flags, &outs[0], &err);
  double dt = dfpo_now() - t0, dc = cpu_seconds() - c0;
  if (!rc) {
    size_t tokens = 0;
    for (size_t i = 0; i < n; i++) {
      print_ids(outs[i].ids, outs[i].n, stdout);
      tokens += outs[i].n;
    }
    if (fflush(stdout) || ferror(stdout))
      rc = dfpo_err_errno(&err, DFPO_ERUNTIME, errno, "writing stdout");
    if (o->stats)
      dfpo_info("encoded %zu bytes (%zu documents) into %zu tokens in %.3f s (%.3f s of CPU) on "
                "%d thread%s: %.2f MB/s, %.2f MB per CPU second",
                len, n, tokens, dt, dc, o->lines ? omp_get_max_threads() : 1,
                o->lines && omp_get_max_threads() > 1 ? "s" : "",
                dt > 0 ? (double)len / dt / 1e6 : 0.0, dc > 0 ? (double)len / dc / 1e6 : 0.0);
  }
  for (size_t i = 0; outs && i < n; i++)
    tok_ids_free(&outs[i]);
  free(outs);
  free(lines);
  free(lens);
  free(data);
  tok_free(t);
  return rc ? cli_fail(&err) : DFPO_OK;
}

/* Parses the ids of one line (or the whole input); errors name the line. */
static int parse_ids(const char *s, size_t len, size_t line, tok_ids *v, dfpo_err *err) {
  size_t i = 0;
  v->n = 0;
  while (i < len) {
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
      i++;
    if (i >= len)
      break;
    size_t st = i;
    long long x = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9' && x <= INT32_MAX)
      x = x * 10 + (s[i++] - '0');
    if (i == st || x > INT32_MAX ||
        (i < len && s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')) {
      size_t e = st;
      while (e < len && s[e] != ' ' && s[e] != '\t' && s[e] != '\r' && s[e] != '\n')
        e++;
      return dfpo_err_set(err, DFPO_EDATA, "stdin:%zu: \"%.*s\" is not a token id", line,
                          (int)(e - st > 40 ? 40 : e - st), s + st);
    }
    int rc = dfpo_grow(&v->ids, &v->cap, v->n + 1, sizeof *v->ids, 1024, DFPO_NOCAP, err);
    if (rc)
      return rc;
    v->ids[v->n++] = (int32_t)x;
  }
  return DFPO_OK;
}

static int tokenizer_decode(const tok_opts *o) {
  dfpo_err err;
  dfpo_err_clear(&err);
  tok_tokenizer *t;
  int rc = tok_load(&t, o->tokenizer, &err);
  if (rc)
    return cli_fail(&err);
  char *data = NULL, *buf = NULL;
  size_t len = 0, blen = 0, bcap = 0;
  tok_ids v = {0};
  rc = read_stdin(&data, &len, &err);
  size_t line = 1, start = 0;
  while (!rc && start < len) {
    size_t end = len;
    if (o->lines) {
      const char *nl = memchr(data + start, '\n', len - start);
      end = nl ? (size_t)(nl - data) : len;
    }
    rc = parse_ids(data + start, end - start, line, &v, &err);
    blen = 0;
    if (!rc) {
      rc = tok_decode(t, v.ids, v.n, &buf, &blen, &bcap, &err);
      if (rc)
        dfpo_err_prefix(&err, "stdin:%zu", line);
    }
    if (!rc) {
      fwrite(buf, 1, blen, stdout);
      if (o->lines)
        fputc('\n', stdout);
    }
    start = end + 1;
    line++;
  }
  if (!rc && (fflush(stdout) || ferror(stdout)))
    rc = dfpo_err_errno(&err, DFPO_ERUNTIME, errno, "writing stdout");
  tok_ids_free(&v);
  free(buf);
  free(data);
  tok_free(t);
  return rc ? cli_fail(&err) : DFPO_OK;
}

static int tokenizer_train(const tok_opts *o) {
  dfpo_err err;
  dfpo_err_clear(&err);
  size_t merges = 0;
  int rc = tok_train(o->corpus, o->n_corpus, (size_t)o->vocab_size, o->out, &merges, &err);
  if (rc)
    return cli_fail(&err);
  dfpo_info("wrote %s/encoder.json and %s/vocab.bpe (%zu merges)", o->out, o->out, merges);
  return DFPO_OK;
}

int cmd_tokenizer(int argc, char **argv) {
  static const struct option opts[] = {{"tokenizer", required_argument, NULL, 't'},
                                       {"lines", no_argument, NULL, 'l'},
                                       {"allow-special", no_argument, NULL, 's'},
                                       {"add-special", no_argument, NULL, 'a'},
                                       {"stats", no_argument, NULL, 'S'},
                                       {"corpus", required_argument, NULL, 'c'},
                                       {"vocab-size", required_argument, NULL, 'n'},
                                       {"out", required_argument, NULL, 'o'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  if (argc < 2)
    return cli_usage_error("tokenizer", "missing subcommand (encode, decode or train)");
  if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
    fputs(tokenizer_usage, stdout);
    return DFPO_OK;
  }
  const char *sub = argv[1];
  char name[64];
  snprintf(name, sizeof name, "tokenizer %s", sub);
  if (strcmp(sub, "encode") && strcmp(sub, "decode") && strcmp(sub, "train"))
    return cli_usage_error("tokenizer", "unknown subcommand '%s'", sub);
  tok_opts o = {0};
  o.corpus = calloc((size_t)argc, sizeof *o.corpus);
  if (!o.corpus)
    return DFPO_ERUNTIME;
  int c, rc = DFPO_OK, corpus_seen = 0;
  argc--;
  argv++;
  cli_reset_getopt();
  while (rc == DFPO_OK && (c = getopt_long(argc, argv, ":t:lsac:n:o:h", opts, NULL)) != -1) {
    switch (c) {
    case 't':
      o.tokenizer = optarg;
      break;
    case 'l':
      o.lines = 1;
      break;
    case 's':
      o.special = 1;
      break;
    case 'a':
      o.add_special = 1;
      break;
    case 'S':
      o.stats = 1;
      break;
    case 'c':
      o.corpus[o.n_corpus++] = optarg;
      corpus_seen = 1;
      break;
    case 'n': {
      int v = 0;
      rc = cli_integer(name, optarg, 257, 1 << 24, "--vocab-size", &v);
      o.vocab_size = v;
      break;
    }
    case 'o':
      o.out = optarg;
      break;
    case 'h':
      fputs(tokenizer_usage, stdout);
      free(o.corpus);
      return DFPO_OK;
    default:
      rc = cli_bad_option(name, argc, argv, c);
    }
  }
  int is_train = !strcmp(sub, "train");
  for (int i = optind; rc == DFPO_OK && i < argc; i++) {
    if (is_train && corpus_seen)
      o.corpus[o.n_corpus++] = argv[i];
    else
      rc = cli_usage_error(name, "unexpected argument '%s'", argv[i]);
  }
  if (rc == DFPO_OK && is_train) {
    if (!o.n_corpus)
      rc = cli_usage_error(name, "missing --corpus FILE");
    else if (!o.vocab_size)
      rc = cli_usage_error(name, "missing --vocab-size N");
    else if (!o.out)
      rc = cli_usage_error(name, "missing --out DIR");
    else if (o.tokenizer || o.lines || o.special || o.add_special || o.stats)
      rc = cli_usage_error(name, "--tokenizer, --lines, --allow-special, --add-special and "
                                 "--stats are for encode and decode");
    else
      rc = tokenizer_train(&o);
  } else if (rc == DFPO_OK) {
    if (!o.tokenizer)
      rc = cli_usage_error(name, "missing --tokenizer DIR");
    else if (o.n_corpus || o.vocab_size || o.out)
      rc = cli_usage_error(name, "--corpus, --vocab-size and --out are for train");
    else if (!strcmp(sub, "decode") && (o.special || o.add_special || o.stats))
      rc = cli_usage_error(name, "--allow-special, --add-special and --stats are for encode");
    else
      rc = !strcmp(sub, "encode") ? tokenizer_encode(&o) : tokenizer_decode(&o);
  }
  free(o.corpus);
  return rc;
}
