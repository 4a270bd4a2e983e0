#include "harness/cli.h"
#include "metrics/metrics.h"

#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char metrics_usage[] =
    "Usage: dfpo metrics --task commongen --pred FILE --refs FILE [options]\n"
    "       dfpo metrics --diversity FILE [options]\n"
    "\n"
    "Scores predictions with the metrics of docs/metrics.md.\n"
    "\n"
    "--task commongen: FILE of --pred has one prediction per line, in the order\n"
    "of the concept sets in the --refs JSONL (CommonGen's own files, with\n"
    "\"concept_set\" and \"scene\", or dfpo split files, with \"concepts\" and\n"
    "\"references\"). Reports BLEU-1..4 and CIDEr-D (pycocoevalcap), sacreBLEU,\n"
    "ROUGE-L (pycocoevalcap) and ROUGE-1/2/L (rouge-score, with and without\n"
    "stemming), METEOR (NLTK 3.8), concept coverage and the diversity block.\n"
    "\n"
    "--diversity FILE: diversity of the texts in FILE, one per line.\n"
    "\n"
    "Options:\n"
    "  --tokenize MODE    default: lowercase and split as docs/metrics.md says;\n"
    "                     none: lines are already tokenized (tokens separated by\n"
    "                     spaces) and are used as given\n"
    "  --wordnet DIR      WordNet 3.0 database folder (default $DFPO_WORDNET,\n"
    "                     else /usr/share/wordnet from Debian's wordnet-base)\n"
    "  --bootstrap N      also report percentile bootstrap 95% intervals of the\n"
    "                     per-item metrics (meteor, cider_d, rougeL_coco, coverage)\n"
    "                     from N resamples\n"
    "  --seed S           seed of the bootstrap stream (default 0)\n"
    "  --json             print one JSON object instead of a table\n"
    "  -h, --help         show this help\n";

static int print_json(cJSON *o) {
  char *s = cJSON_Print(o);
  cJSON_Delete(o);
  if (!s)
    return DFPO_ERUNTIME;
  printf("%s\n", s);
  free(s);
  return DFPO_OK;
}

static void print_table(const cJSON *o, const char *prefix) {
  const cJSON *x;
  cJSON_ArrayForEach(x, o) {
    char name[128];
    snprintf(name, sizeof name, "%s%s", prefix, x->string);
    if (cJSON_IsObject(x)) {
      char sub[130];
      snprintf(sub, sizeof sub, "%s.", name);
      print_table(x, strcmp(x->string, "diversity") == 0 ? "" : sub);
    } else if (cJSON_IsString(x))
      printf("%-24s %s\n", name, x->valuestring);
    else if (cJSON_IsArray(x) && cJSON_GetArraySize(x) == 2)
      printf("%-24s [%.6f, %.6f]\n", name, cJSON_GetArrayItem(x, 0)->valuedouble,
             cJSON_GetArrayItem(x, 1)->valuedouble);
    else if (cJSON_IsNumber(x) && fabs(x->valuedouble) < 9007199254740992.0 &&
             x->valuedouble == floor(x->valuedouble))
      printf("%-24s %lld\n", name, (long long)x->valuedouble);
    else if (cJSON_IsNumber(x))
      printf("%-24s %.6f\n", name, x->valuedouble);
    else
      printf("%-24s -\n", name);
  }
}

int cmd_metrics(int argc, char **argv) {
  static const struct option opts[] = {{"task", required_argument, NULL, 't'},
                                       {"pred", required_argument, NULL, 'p'},
                                       {"refs", required_argument, NULL, 'r'},
                                       {"diversity", required_argument, NULL, 'd'},
                                       {"tokenize", required_argument, NULL, 'k'},
                                       {"wordnet", required_argument, NULL, 'w'},
                                       {"bootstrap", required_argument, NULL, 'b'},
                                       {"seed", required_argument, NULL, 's'},
                                       {"json", no_argument, NULL, 'j'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *task = NULL, *pred = NULL, *refs = NULL, *div = NULL, *wordnet = NULL;
  const char *tok = "default";
  unsigned long long boot = 0, seed = 0;
  int json = 0, c;
  cli_reset_getopt();
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    char *end;
    switch (c) {
    case 't':
      task = optarg;
      break;
    case 'p':
      pred = optarg;
      break;
    case 'r':
      refs = optarg;
      break;
    case 'd':
      div = optarg;
      break;
    case 'k':
      tok = optarg;
      break;
    case 'w':
      wordnet = optarg;
      break;
    case 'b':
    case 's':
      if (!*optarg || *optarg == '-' ||
          ((c == 'b' ? (boot = strtoull(optarg, &end, 10)) : (seed = strtoull(optarg, &end, 10))),
           *end))
        return cli_usage_error("metrics", "--%s needs a non-negative integer, not '%s'",
                               c == 'b' ? "bootstrap" : "seed", optarg);
      break;
    case 'j':
      json = 1;
      break;
    case 'h':
      fputs(metrics_usage, stdout);
      return DFPO_OK;
    default:
      return cli_bad_option("metrics", argc, argv, c);
    }
  }
  if (optind < argc)
    return cli_usage_error("metrics", "unexpected argument '%s'", argv[optind]);
  dfpo_err err;
  dfpo_err_clear(&err);
  met_tokenize_mode mode;
  if (met_tokenize_mode_parse(tok, &mode, &err))
    return cli_usage_error("metrics", "%s", err.msg);
  if (div && (task || pred || refs))
    return cli_usage_error("metrics", "--diversity goes alone, without --task, --pred or --refs");
  if (!div) {
    if (!task)
      return cli_usage_error("metrics", "say --task commongen (with --pred and --refs) or "
                                        "--diversity FILE");
    if (strcmp(task, "commongen") != 0)
      return cli_usage_error("metrics", "unknown task '%s' (text metrics exist for commongen)",
                             task);
    if (!pred || !refs)
      return cli_usage_error("metrics", "--task commongen needs --pred FILE and --refs FILE");
  }

  met_corpus corpus;
  int rc = met_corpus_init(&corpus, mode, &err);
  if (rc)
    return cli_fail(&err);
  cJSON *o = cJSON_CreateObject();
  if (div) {
    met_diversity d;
    if ((rc = met_corpus_load_lines(&corpus, div, &err)) ||
        (rc = met_diversity_compute(&corpus, &d, &err))) {
      met_corpus_free(&corpus);
      cJSON_Delete(o);
      return cli_fail(&err);
    }
    cJSON_AddNumberToObject(o, "n", (double)corpus.n);
    cJSON_AddStringToObject(o, "tokenize", tok);
    met_diversity_json(&d, o);
    met_corpus_free(&corpus);
    if (json)
      return print_json(o);
    print_table(o, "");
    cJSON_Delete(o);
    return DFPO_OK;
  }

  met_wordnet *wn = NULL;
  met_commongen_scores s;
  if ((rc = met_corpus_load_commongen(&corpus, pred, refs, &err)) ||
      (rc = met_wordnet_open(&wn, wordnet, &err)) ||
      (rc = met_commongen_score(&corpus, wn, &s, &err))) {
    met_wordnet_free(wn);
    met_corpus_free(&corpus);
    cJSON_Delete(o);
    return cli_fail(&err);
  }
  cJSON_AddStringToObject(o, "task", "commongen");
  cJSON_AddNumberToObject(o, "n", (double)s.n);
  cJSON_AddStringToObject(o, "tokenize", tok);
  /* the keys of metrics/metric_info.c, as the commongen task writes them */
  static const met_metric_id bleu_ids[4] = {MET_BLEU1, MET_BLEU2, MET_BLEU3, MET_BLEU4};
  for (int k = 0; k < 4; k++)
    cJSON_AddNumberToObject(o, met_key(bleu_ids[k]), s.bleu[k]);
  cJSON_AddNumberToObject(o, met_key(MET_SACREBLEU), s.sacrebleu);
  cJSON_AddNumberToObject(o, met_key(MET_CIDER_D), s.cider);
  cJSON_AddNumberToObject(o, met_key(MET_ROUGE_L_COCO), s.rouge_l_coco);
  cJSON_AddNumberToObject(o, met_key(MET_ROUGE1), s.rouge[0]);
  cJSON_AddNumberToObject(o, met_key(MET_ROUGE2), s.rouge[1]);
  cJSON_AddNumberToObject(o, met_key(MET_ROUGE_L), s.rouge[2]);
  cJSON_AddNumberToObject(o, met_key(MET_ROUGE1_STEM), s.rouge_stem[0]);
  cJSON_AddNumberToObject(o, met_key(MET_ROUGE2_STEM), s.rouge_stem[1]);
  cJSON_AddNumberToObject(o, met_key(MET_ROUGE_L_STEM), s.rouge_stem[2]);
  cJSON_AddNumberToObject(o, met_key(MET_METEOR), s.meteor);
  cJSON_AddNumberToObject(o, met_key(MET_COVERAGE), s.coverage);
  met_diversity_json(&s.diversity, cJSON_AddObjectToObject(o, "diversity"));
  if (boot) {
    cJSON *ci = cJSON_AddObjectToObject(o, "bootstrap95");
    cJSON_AddNumberToObject(ci, "resamples", (double)boot);
    cJSON_AddNumberToObject(ci, "seed", (double)seed);
    const met_metric_id names[4] = {MET_METEOR, MET_CIDER_D, MET_ROUGE_L_COCO, MET_COVERAGE};
    const double *items[4] = {s.meteor_items, s.cider_items, s.rouge_l_coco_items,
                              s.coverage_items};
    double *buf = malloc((s.n ? s.n : 1) * sizeof *buf);
    for (int k = 0; k < 4 && !rc && buf; k++) {
      size_t m = 0; /* coverage is undefined (NaN) for items without concepts */
      for (size_t i = 0; i < s.n; i++)
        if (!isnan(items[k][i]))
          buf[m++] = items[k][i];
      double lo = NAN, hi = NAN;
      if (m && (rc = met_bootstrap_ci(buf, m, (size_t)boot, 0.95, seed, &lo, &hi, &err)))
        break;
      cJSON *pair = cJSON_AddArrayToObject(ci, met_key(names[k]));
      cJSON_AddItemToArray(pair, cJSON_CreateNumber(lo));
      cJSON_AddItemToArray(pair, cJSON_CreateNumber(hi));
    }
    if (!buf)
      rc = dfpo_err_set(&err, DFPO_ERUNTIME, "out of memory");
    free(buf);
  }
  met_commongen_scores_free(&s);
  met_wordnet_free(wn);
  met_corpus_free(&corpus);
  if (rc) {
    cJSON_Delete(o);
    return cli_fail(&err);
  }
  if (json)
    return print_json(o);
  print_table(o, "");
  cJSON_Delete(o);
  return DFPO_OK;
}
