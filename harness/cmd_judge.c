#include "datasets/datasets.h"
#include "harness/cli.h"
#include "harness/task.h"
#include "metrics/metrics.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

static const char judge_usage[] =
    "Usage: dfpo judge train NAME [options]\n"
    "       dfpo judge eval NAME [options]\n"
    "       dfpo judge score NAME --input FILE [--dir DIR]\n"
    "       dfpo judge score --model FOLDER|OWNER/NAME[@REV] --input FILE [--json]\n"
    "                        [--device D]\n"
    "       dfpo judge show NAME [--dir DIR]\n"
    "\n"
    "The judges that score samples (docs/judges.md): NAME is sentiment\n"
    "(P(positive), trained on the IMDB train split, validated on its validation\n"
    "split, evaluated on the 25,000 IMDB test reviews) or toxicity (predicted\n"
    "Perspective toxicity, trained on the RealToxicityPrompts scored texts of\n"
    "the rtp train split, validated and evaluated on its validation and test\n"
    "splits). Both need the dataset imported and prepared (`dfpo datasets`).\n"
    "A judge is saved in DIR (default <cache>/judges/NAME) as judge.bin and\n"
    "card.json (training data, held-out scores, SHA-256), written atomically.\n"
    "\n"
    "  train   trains, reports validation scores, saves the judge\n"
    "  eval    held-out scores, recorded in the card: accuracy at 0.5, ECE,\n"
    "          log-loss, Brier, Pearson and Spearman against the targets\n"
    "  score   prints the judge's score of each line of FILE (- for stdin),\n"
    "          one per line; NAME perspective asks the Perspective API\n"
    "          instead (key in $PERSPECTIVE_API_KEY, endpoint overridable with\n"
    "          $DFPO_PERSPECTIVE_URL; 1 request/s, retries, scores cached in\n"
    "          <cache>/perspective by text SHA-256)\n"
    "          With --model, a Hugging Face sequence classifier scores instead\n"
    "          (DistilBERT, BERT or RoBERTa: config.json, model.safetensors or\n"
    "          pytorch_model.bin, and\n"
    "          vocab.txt or vocab.json + merges.txt; docs/judges.md), from a\n"
    "          folder or a hub name (fetched into the cache when absent, as\n"
    "          `dfpo fetch OWNER/NAME[@REV]` does): each line\n"
    "          gets the probability of every label, tab-separated in label\n"
    "          order, or with --json a JSON object {\"<id2label name>\": p, ...};\n"
    "          texts longer than the model's length are cut to it\n"
    "  show    prints the card\n"
    "\n"
    "Options:\n"
    "  --dir DIR          the judge's folder\n"
    "  --limit N          use at most N texts of each split (tests, quick runs)\n"
    "  --seed S           data order seed (default 42)\n"
    "  --hash-bits B      2^B feature buckets (default 20)\n"
    "  --word-ngrams N    word n-grams up to N (default 2)\n"
    "  --char-ngrams A-B  character n-grams of A..B bytes (default: none for\n"
    "                     sentiment, 2-5 for toxicity; 0 turns them off)\n"
    "  --epochs E         Adagrad passes per L2 candidate (default 6)\n"
    "  --jigsaw FILE      eval toxicity: also score the Jigsaw CSV (columns\n"
    "                     comment_text, toxic) as an out-of-distribution check\n"
    "  --test FILE        eval: score this JSONL split file instead\n"
    "  --input FILE       score: the texts, one per line\n"
    "  --model M          score: a Hugging Face classifier, a folder or a hub\n"
    "                     name OWNER/NAME[@REVISION] (no judge NAME)\n"
    "  --device D         score --model: cpu (default), cuda, or auto\n"
    "  --json             eval: print the scores as JSON; score --model: one\n"
    "                     JSON object per line\n"
    "  -h, --help         show this help\n"
    "\n"
    "train locks DIR (flock on DIR.lock) while it writes it: a second process\n"
    "on it exits 5 at once, naming the holder (pid, host, start time, command).\n";

/* A judge and the dataset it learns from: the judge of a task's registry
 * row (task_find_judge; harness/task.h). */
typedef struct judge_task {
  const char *name, *dataset, *train, *val, *test, *text_key, *y_key;
  int by_split; /* the splits are a field of one file */
} judge_task;

static const judge_task *find_task(const char *name, judge_task *buf) {
  const task_def *d = task_find_judge(name);
  if (!d)
    return NULL;
  const task_judge_def *j = d->judge;
  judge_task t = {j->name, d->dataset,  j->train, j->val,
                  j->test, j->text_key, j->y_key, j->by_split};
  *buf = t;
  return buf;
}

/* The prepared split folder of the task's dataset and its verification. */
static int split_dir(const judge_task *t, char *dir, size_t n, int *verified, char *version,
                     dfpo_err *err) {
  ds_manifest m;
  int rc = ds_manifest_load(&m, NULL, err);
  if (rc)
    return rc;
  const ds_entry *e = ds_manifest_find(&m, t->dataset);
  ds_prepared p;
  if (!e)
    rc = dfpo_err_set(err, DFPO_EDATA, "dataset %s is not in the manifest", t->dataset);
  else if ((rc = ds_prepared_read(e, &p, err)))
    dfpo_err_prefix(err,
                    "%s judge: dataset %s is not prepared (run `dfpo datasets import %s "
                    "FILE` and `dfpo datasets prepare %s`)",
                    t->name, t->dataset, t->dataset, t->dataset);
  else {
    snprintf(dir, n, "%s", p.dir);
    *verified = p.verified;
    snprintf(version, 64, "%s", e->version);
  }
  ds_manifest_free(&m);
  return rc;
}

static int load_split(const judge_task *t, const char *dir, const char *file, const char *split,
                      size_t limit, met_judge_data *d, dfpo_err *err) {
  char path[4200];
  snprintf(path, sizeof path, "%s/%s.jsonl", dir, file);
  return met_judge_data_jsonl(d, path, t->text_key, t->y_key, t->by_split ? split : NULL, limit,
                              err);
}

static void print_eval(const char *what, const met_judge_eval *ev) {
  printf("%-12s n %zu  accuracy %.4f  ECE %.4f  log-loss %.4f  Brier %.4f  Pearson %.4f  "
         "Spearman %.4f\n",
         what, ev->n, ev->accuracy, ev->ece, ev->log_loss, ev->brier, ev->pearson, ev->spearman);
}

/* splits: the prepared split folder to train on (NULL: the cache's). */
static int train_locked(const judge_task *t, const char *splits, const char *jdir, size_t limit,
                        const met_judge_opts *o, dfpo_err *err);

/* train_locked under the lock of the judge folder: one process writes it
 * at a time, another stops (DFPO_ELOCKED). */
static int do_train(const judge_task *t, const char *splits, const char *jdir, size_t limit,
                    const met_judge_opts *o, dfpo_err *err) {
  char parent[4096];
  int rc = dfpo_path_fmt(parent, sizeof parent, err, "%s", jdir);
  if (rc)
    return rc;
  char *slash = strrchr(parent, '/');
  if (slash && slash != parent)
    *slash = '\0';
  dfpo_lock l = {0};
  if ((!slash || slash == parent || !(rc = dfpo_mkdirs(parent, err))) &&
      !(rc = dfpo_lock_take(&l, jdir, err)))
    rc = train_locked(t, splits, jdir, limit, o, err);
  dfpo_lock_release(&l);
  return rc;
}

static int train_locked(const judge_task *t, const char *splits, const char *jdir, size_t limit,
                        const met_judge_opts *o, dfpo_err *err) {
  char dir[4096], version[64] = "";
  int verified = 0, rc = DFPO_OK;
  if (splits) { /* a folder outside the cache: nothing says it was checked */
    if ((rc = dfpo_path_fmt(dir, sizeof dir, err, "%s", splits)))
      return rc;
  } else if ((rc = split_dir(t, dir, sizeof dir, &verified, version, err)))
    return rc;
  met_judge_data tr = {0}, va = {0};
  met_judge *j = NULL;
  met_judge_fit fit;
  met_judge_eval ev;
  double t0 = dfpo_now();
  if (!(rc = load_split(t, dir, t->train, "train", limit, &tr, err)) &&
      !(rc = load_split(t, dir, t->val, "validation", limit, &va, err))) {
    dfpo_info("%s judge: training on %zu texts, validating on %zu", t->name, tr.n, va.n);
    rc = met_judge_train(&j, t->name, &tr, &va, o, &fit, err);
  }
  if (!rc)
    rc = met_judge_evaluate(j, &va, &ev, err);
  if (!rc) {
    cJSON *extra = cJSON_CreateObject();
    cJSON *td = cJSON_AddObjectToObject(extra, "training_data");
    cJSON_AddStringToObject(td, "dataset", t->dataset);
    cJSON_AddStringToObject(td, "dataset_version", version);
    cJSON_AddBoolToObject(td, "verified", verified);
    cJSON_AddStringToObject(td, "splits", dir);
    cJSON_AddStringToObject(td, "train", t->by_split ? "scored.jsonl split=train" : "train.jsonl");
    cJSON_AddStringToObject(td, "validation",
                            t->by_split ? "scored.jsonl split=validation" : "validation.jsonl");
    cJSON_AddNumberToObject(td, "train_texts", (double)tr.n);
    cJSON_AddNumberToObject(td, "validation_texts", (double)va.n);
    cJSON_AddNumberToObject(td, "limit", (double)limit);
    cJSON_AddNumberToObject(td, "seed", (double)o->seed);
    cJSON_AddItemToObject(extra, "validation", met_judge_eval_json(&ev));
    cJSON_AddNumberToObject(extra, "train_seconds", dfpo_now() - t0);
    rc = met_judge_save(j, jdir, &fit, extra, err);
    cJSON_Delete(extra);
  }
  if (!rc) {
    printf("%s judge: L2 %g, validation log-loss %.4f, Platt a %.3f b %.3f; saved in %s%s\n",
           t->name, fit.l2, fit.val_loss, fit.platt_a, fit.platt_b, jdir,
           verified ? "" : " (trained on UNVERIFIED data)");
    print_eval("validation", &ev);
  }
  met_judge_free(j);
  met_judge_data_free(&tr);
  met_judge_data_free(&va);
  return rc;
}

static int do_eval(const judge_task *t, const char *jdir, size_t limit, const char *test,
                   const char *jigsaw, int json, dfpo_err *err) {
  met_judge *j = NULL;
  int rc = met_judge_load(&j, jdir, NULL, err);
  if (rc)
    return rc;
  met_judge_data te = {0}, jg = {0};
  met_judge_eval ev, evj;
  char dir[4096], version[64];
  int verified = 0;
  if (test)
    rc = met_judge_data_jsonl(&te, test, t->text_key, t->y_key, t->by_split ? "test" : NULL, limit,
                              err);
  else if (!(rc = split_dir(t, dir, sizeof dir, &verified, version, err)))
    rc = load_split(t, dir, t->test, "test", limit, &te, err);
  if (!rc)
    rc = met_judge_evaluate(j, &te, &ev, err);
  if (!rc && jigsaw && !(rc = met_judge_data_csv(&jg, jigsaw, "comment_text", "toxic", limit, err)))
    rc = met_judge_evaluate(j, &jg, &evj, err);
  if (!rc) {
    cJSON *o = met_judge_eval_json(&ev);
    cJSON_AddStringToObject(o, "data", test ? test : t->test);
    cJSON_AddStringToObject(o, "judge", met_judge_id(j));
    rc = met_judge_card_set(jdir, "test", o, err);
  }
  if (!rc && jigsaw) {
    cJSON *o = met_judge_eval_json(&evj);
    cJSON_AddStringToObject(o, "data", jigsaw);
    cJSON_AddStringToObject(o, "target", "toxic (human label)");
    rc = met_judge_card_set(jdir, "jigsaw", o, err);
  }
  if (!rc) {
    if (json) {
      cJSON *o = cJSON_CreateObject();
      cJSON_AddStringToObject(o, "judge", met_judge_id(j));
      cJSON_AddItemToObject(o, "test", met_judge_eval_json(&ev));
      if (jigsaw)
        cJSON_AddItemToObject(o, "jigsaw", met_judge_eval_json(&evj));
      char *s = cJSON_Print(o);
      cJSON_Delete(o);
      printf("%s\n", s ? s : "{}");
      free(s);
    } else {
      printf("%s\n", met_judge_id(j));
      print_eval("test", &ev);
      if (jigsaw)
        print_eval("jigsaw", &evj);
    }
  }
  met_judge_free(j);
  met_judge_data_free(&te);
  met_judge_data_free(&jg);
  return rc;
}

/* NAME "perspective": the Perspective API (key from $PERSPECTIVE_API_KEY);
 * any other name: a saved judge. */
static int do_score(const char *name, const char *jdir, const char *input, dfpo_err *err) {
  met_judge *j = NULL;
  met_perspective *api = NULL;
  int rc = strcmp(name, "perspective") ? met_judge_load(&j, jdir, NULL, err)
                                       : met_perspective_new(&api, NULL, err);
  if (rc)
    return rc;
  FILE *fp = strcmp(input, "-") ? fopen(input, "rb") : stdin;
  if (!fp) {
    met_judge_free(j);
    met_perspective_free(api);
    return dfpo_err_errno(err, DFPO_EDATA, errno, "cannot open %s", input);
  }
  char *line = NULL;
  size_t cap = 0, n = 0;
  ssize_t len;
  double t0 = dfpo_now();
  while (rc == DFPO_OK && (len = getline(&line, &cap, fp)) >= 0) {
    if (len && line[len - 1] == '\n')
      line[--len] = '\0';
    double s = 0;
    if (j)
      s = met_judge_score(j, line, (size_t)len);
    else if ((rc = met_perspective_score(api, line, &s, err)))
      dfpo_err_prefix(err, "%s line %zu", input, n + 1);
    if (!rc)
      printf("%.6f\n", s);
    n++;
  }
  if (j)
    dfpo_info("%s: scored %zu texts in %.3f s", met_judge_id(j), n, dfpo_now() - t0);
  else {
    size_t req = 0, hits = 0;
    met_perspective_counts(api, &req, &hits);
    dfpo_info("Perspective API: %zu texts, %zu requests, %zu from the cache", n, req, hits);
  }
  if (!rc && ferror(fp))
    rc = dfpo_err_errno(err, DFPO_ERUNTIME, errno, "reading %s", input);
  free(line);
  if (fp != stdin)
    fclose(fp);
  met_judge_free(j);
  met_perspective_free(api);
  return rc;
}

/* One line of score --model: the K probabilities. */
static void print_probs(const met_hf_judge *j, const double *p, int json) {
  int K = met_hf_judge_labels(j);
  if (!json) {
    for (int k = 0; k < K; k++)
      printf("%s%.6f", k ? "\t" : "", p[k]);
    putchar('\n');
    return;
  }
  cJSON *o = cJSON_CreateObject();
  for (int k = 0; k < K; k++)
    cJSON_AddNumberToObject(o, met_hf_judge_label(j, k), p[k]);
  char *s = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  printf("%s\n", s ? s : "{}");
  free(s);
}

/* score --model: the lines of input in chunks, each scored in padded
 * batches. */
static int do_score_model(const char *folder, const char *input, int json, dfpo_err *err) {
  enum { CHUNK = 1024 };
  met_hf_judge *j = NULL;
  int rc = met_hf_judge_open(&j, folder, err);
  if (rc)
    return rc;
  FILE *fp = strcmp(input, "-") ? fopen(input, "rb") : stdin;
  if (!fp) {
    met_hf_judge_free(j);
    return dfpo_err_errno(err, DFPO_EDATA, errno, "cannot open %s", input);
  }
  int K = met_hf_judge_labels(j);
  char *texts[CHUNK] = {0};
  size_t lens[CHUNK], caps[CHUNK] = {0}, n = 0, total = 0;
  double *probs = malloc((size_t)CHUNK * K * sizeof *probs), t0 = dfpo_now();
  if (!probs)
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  for (int eof = 0; !rc && !eof;) {
    ssize_t len = getline(&texts[n], &caps[n], fp);
    if (len >= 0) {
      if (len && texts[n][len - 1] == '\n')
        texts[n][--len] = '\0';
      lens[n++] = (size_t)len;
    } else {
      eof = 1;
    }
    if (n == CHUNK || (eof && n)) {
      if ((rc = met_hf_judge_score(j, (const char *const *)texts, lens, n, 0, probs, err))) {
        dfpo_err_prefix(err, "%s: lines %zu..%zu", input, total + 1, total + n);
        break;
      }
      for (size_t i = 0; i < n; i++)
        print_probs(j, probs + i * K, json);
      total += n;
      n = 0;
    }
  }
  if (!rc && ferror(fp))
    rc = dfpo_err_errno(err, DFPO_ERUNTIME, errno, "reading %s", input);
  if (!rc)
    dfpo_info("%s: scored %zu texts in %.3f s", folder, total, dfpo_now() - t0);
  for (size_t i = 0; i < CHUNK; i++)
    free(texts[i]);
  free(probs);
  if (fp != stdin)
    fclose(fp);
  met_hf_judge_free(j);
  return rc;
}

static void name_defaults(const char *name, met_judge_opts *o, int char_set, int cmin, int cmax) {
  const task_def *d = task_find_judge(name);
  if (d && !char_set && (d->judge->char_min || d->judge->char_max)) {
    cmin = d->judge->char_min;
    cmax = d->judge->char_max;
  }
  o->feat.char_min = cmin;
  o->feat.char_max = cmax;
}

static met_judge_opts judge_defaults(const char *name) {
  met_judge_opts o = met_judge_opts_default();
  name_defaults(name, &o, 0, 0, 0);
  return o;
}

int cmd_judge_train(const char *name, const char *splits, const char *dir, size_t limit,
                    dfpo_err *err) {
  judge_task tbuf;
  const judge_task *t = find_task(name, &tbuf);
  if (!t)
    return dfpo_err_set(err, DFPO_EUSAGE, "unknown judge '%s' (sentiment, toxicity)", name);
  met_judge_opts o = judge_defaults(name);
  return do_train(t, splits, dir, limit, &o, err);
}

int cmd_judge(int argc, char **argv) {
  enum {
    O_DIR = 1000,
    O_LIMIT,
    O_SEED,
    O_BITS,
    O_WORD,
    O_CHAR,
    O_EPOCHS,
    O_JIGSAW,
    O_TEST,
    O_INPUT,
    O_JSON,
    O_MODEL,
    O_DEVICE
  };
  static const struct option opts[] = {{"dir", required_argument, NULL, O_DIR},
                                       {"limit", required_argument, NULL, O_LIMIT},
                                       {"seed", required_argument, NULL, O_SEED},
                                       {"hash-bits", required_argument, NULL, O_BITS},
                                       {"word-ngrams", required_argument, NULL, O_WORD},
                                       {"char-ngrams", required_argument, NULL, O_CHAR},
                                       {"epochs", required_argument, NULL, O_EPOCHS},
                                       {"jigsaw", required_argument, NULL, O_JIGSAW},
                                       {"test", required_argument, NULL, O_TEST},
                                       {"input", required_argument, NULL, O_INPUT},
                                       {"json", no_argument, NULL, O_JSON},
                                       {"model", required_argument, NULL, O_MODEL},
                                       {"device", required_argument, NULL, O_DEVICE},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *dir = NULL, *jigsaw = NULL, *test = NULL, *input = NULL, *model = NULL;
  const char *device = NULL;
  size_t limit = 0;
  int json = 0, c, char_set = 0, cmin = 0, cmax = 0;
  met_judge_opts o = met_judge_opts_default();
  cli_reset_getopt();
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    int v = 0;
    if (c >= O_LIMIT && c <= O_EPOCHS && c != O_CHAR) {
      char opt[40];
      snprintf(opt, sizeof opt, "--%s", opts[c - O_DIR].name);
      int urc = cli_integer("judge", optarg, 0, INT_MAX, opt, &v);
      if (urc)
        return urc;
    }
    switch (c) {
    case O_DIR:
      dir = optarg;
      break;
    case O_LIMIT:
      limit = (size_t)v;
      break;
    case O_SEED:
      o.seed = (uint64_t)v;
      break;
    case O_BITS:
      o.feat.hash_bits = (int)v;
      break;
    case O_WORD:
      o.feat.word_n = (int)v;
      break;
    case O_EPOCHS:
      o.epochs = (int)v;
      break;
    case O_CHAR:
      char_set = 1;
      if (!strcmp(optarg, "0"))
        cmin = cmax = 0;
      else if (sscanf(optarg, "%d-%d", &cmin, &cmax) != 2)
        return cli_usage_error("judge", "--char-ngrams wants A-B or 0, not '%s'", optarg);
      break;
    case O_JIGSAW:
      jigsaw = optarg;
      break;
    case O_TEST:
      test = optarg;
      break;
    case O_INPUT:
      input = optarg;
      break;
    case O_JSON:
      json = 1;
      break;
    case O_MODEL:
      model = optarg;
      break;
    case O_DEVICE:
      device = optarg;
      break;
    case 'h':
      fputs(judge_usage, stdout);
      return DFPO_OK;
    default:
      return cli_bad_option("judge", argc, argv, c);
    }
  }
  if (model || device) {
    if (argc - optind != 1 || strcmp(argv[optind], "score"))
      return cli_usage_error("judge", "--model and --device go with `score --model FOLDER` alone "
                                      "(no judge name)");
    if (!model)
      return cli_usage_error("judge", "--device needs --model FOLDER");
    if (!input)
      return cli_usage_error("judge", "score needs --input FILE");
    int drc = cli_device("judge", device ? device : "cpu");
    if (drc)
      return drc;
    dfpo_err err;
    dfpo_err_clear(&err);
    char folder[4096];
    if (cli_model_path(model, folder, sizeof folder, &err))
      return cli_fail(&err);
    return do_score_model(folder, input, json, &err) ? cli_fail(&err) : DFPO_OK;
  }
  if (argc - optind < 2)
    return cli_usage_error("judge", "want an action (train, eval, score, show) and a judge name");
  const char *action = argv[optind], *name = argv[optind + 1];
  if (argc - optind > 2)
    return cli_usage_error("judge", "unexpected argument '%s'", argv[optind + 2]);
  dfpo_err err;
  dfpo_err_clear(&err);
  char jdir[4096];
  if (dir ? dfpo_path_fmt(jdir, sizeof jdir, &err, "%s", dir)
          : met_judge_dir(name, jdir, sizeof jdir, &err))
    return cli_fail(&err);
  judge_task tbuf;
  const judge_task *t = find_task(name, &tbuf);
  int rc;
  if (!strcmp(action, "score") || !strcmp(action, "show")) {
    if (!strcmp(action, "score")) {
      if (!input)
        return cli_usage_error("judge", "score needs --input FILE");
      rc = do_score(name, jdir, input, &err);
    } else {
      cJSON *card = NULL;
      met_judge *j = NULL;
      if (!(rc = met_judge_load(&j, jdir, &card, &err))) {
        char *s = cJSON_Print(card);
        printf("%s\n", s ? s : "{}");
        free(s);
      }
      cJSON_Delete(card);
      met_judge_free(j);
    }
  } else if (strcmp(action, "train") && strcmp(action, "eval")) {
    return cli_usage_error("judge", "unknown action '%s' (train, eval, score, show)", action);
  } else if (!t) {
    return cli_usage_error("judge", "unknown judge '%s' (sentiment, toxicity)", name);
  } else if (!strcmp(action, "train")) {
    name_defaults(name, &o, char_set, cmin, cmax);
    rc = do_train(t, NULL, jdir, limit, &o, &err);
  } else {
    rc = do_eval(t, jdir, limit, test, jigsaw, json, &err);
  }
  return rc ? cli_fail(&err) : DFPO_OK;
}
