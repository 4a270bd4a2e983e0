/* Encoder classifiers (trainer/bert.h) and their judge layer (metrics.h
 * met_hf_judge_*) against tests/trainer/bert_reference.py: PyTorch forward
 * passes of DistilBERT, BERT and RoBERTa sequence classifiers written in
 * that script from the architecture as Hugging Face's transformers defines
 * it (transformers itself is not installed), over random-weight Hugging
 * Face folders the script writes (config.json, tokenizer files,
 * model.safetensors). Each id row is scored alone and inside one left-padded
 * batch of rows of other lengths; each text's ids are held to the script's
 * tokenizer peers exactly. Probabilities within 1e-5 (float32 on both
 * sides; the measured maxima are logged). Skipped, saying why, when
 * /usr/bin/python3 lacks torch. */
#include "metrics/metrics.h"
#include "tests/trainer/bert_testutil.h"
#include "trainer/bert.h"

#include <math.h>
#include <stdlib.h>

#define TOL 1e-5

static cJSON *folder_spec(const char *dir, const char *family, int L, int C, int H, int F, int P,
                          int K, int seed) {
  cJSON *s = cJSON_CreateObject();
  cJSON_AddStringToObject(s, "dir", dir);
  cJSON_AddStringToObject(s, "family", family);
  cJSON_AddNumberToObject(s, "layers", L);
  cJSON_AddNumberToObject(s, "width", C);
  cJSON_AddNumberToObject(s, "heads", H);
  cJSON_AddNumberToObject(s, "ffn", F);
  cJSON_AddNumberToObject(s, "max_pos", P);
  cJSON_AddNumberToObject(s, "seed", seed);
  static const char *const names[4] = {"NEGATIVE", "POSITIVE", "NEUTRAL", "OTHER"};
  cJSON *lab = cJSON_AddArrayToObject(s, "labels");
  for (int k = 0; k < K; k++)
    cJSON_AddItemToArray(lab, cJSON_CreateString(names[k]));
  if (strcmp(family, "roberta"))
    cJSON_AddItemToObject(s, "words", bt_words_json());
  else { /* words the BPE merges build */
    const char *w[6] = {"hello", " world", " the", " movie", " great", " bad"};
    cJSON_AddItemToObject(s, "words", cJSON_CreateStringArray(w, 6));
  }
  return s;
}

/* rows of ids: first, then n random ids below vmax from vmin, last */
static void add_rows(cJSON *s, int first, int last, int vmin, int vmax, const int *lens, int n,
                     uint64_t seed) {
  cJSON *rows = cJSON_AddArrayToObject(s, "ids");
  dfpo_rng r;
  dfpo_rng_init(&r, seed, 0);
  for (int i = 0; i < n; i++) {
    cJSON *row = cJSON_CreateArray();
    cJSON_AddItemToArray(row, cJSON_CreateNumber(first));
    for (int t = 0; t < lens[i] - 2; t++)
      cJSON_AddItemToArray(
          row, cJSON_CreateNumber(vmin + (int)dfpo_rng_below(&r, (uint32_t)(vmax - vmin))));
    cJSON_AddItemToArray(row, cJSON_CreateNumber(last));
    cJSON_AddItemToArray(rows, row);
  }
}

static void add_texts(cJSON *s, const char *const *texts, int n) {
  cJSON *a = cJSON_AddArrayToObject(s, "texts");
  for (int i = 0; i < n; i++)
    cJSON_AddItemToArray(a, cJSON_CreateString(texts[i]));
}

static double max_diff(const double *p, const cJSON *want, int K) {
  double m = 0;
  cr_assert_eq(cJSON_GetArraySize(want), K);
  for (int k = 0; k < K; k++)
    m = fmax(m, fabs(p[k] - cJSON_GetArrayItem(want, k)->valuedouble));
  return m;
}

/* Opens the folder as a judge and holds it to the reference r. */
static void check_folder(const char *dir, const cJSON *spec, const cJSON *r) {
  dfpo_err err;
  dfpo_err_clear(&err);
  met_hf_judge *j = NULL;
  cr_assert_eq(met_hf_judge_open(&j, dir, &err), 0, "%s: %s", dir, err.msg);
  int K = met_hf_judge_labels(j);
  const cJSON *rows = cJSON_GetObjectItem(spec, "ids");
  int n = cJSON_GetArraySize(rows);
  tok_ids *ids = calloc((size_t)n + 1, sizeof *ids);
  for (int i = 0; i < n; i++) {
    const cJSON *row = cJSON_GetArrayItem(rows, i), *x;
    cJSON_ArrayForEach(x, row) {
      ids[i].ids = realloc(ids[i].ids, (ids[i].n + 1) * sizeof(int32_t));
      ids[i].ids[ids[i].n++] = (int32_t)x->valuedouble;
    }
  }
  double *alone = calloc((size_t)(n + 1) * K, sizeof(double));
  double *batch = calloc((size_t)(n + 1) * K, sizeof(double));
  /* budget 1: every row alone; 1 << 20: all rows in one padded batch */
  cr_assert_eq(met_hf_judge_score_ids(j, ids, (size_t)n, 1, alone, &err), 0, "%s", err.msg);
  cr_assert_eq(met_hf_judge_score_ids(j, ids, (size_t)n, 1 << 20, batch, &err), 0, "%s", err.msg);
  const cJSON *want = cJSON_GetObjectItem(r, "ids_probs");
  double ma = 0, mb = 0;
  for (int i = 0; i < n; i++) {
    ma = fmax(ma, max_diff(alone + (size_t)i * K, cJSON_GetArrayItem(want, i), K));
    mb = fmax(mb, max_diff(batch + (size_t)i * K, cJSON_GetArrayItem(want, i), K));
  }
  cr_log_info("%s: %d rows, max |p - PyTorch| alone %.3g, padded batch %.3g", dir, n, ma, mb);
  cr_expect_lt(ma, TOL, "%s: rows alone differ from PyTorch by %.3g", dir, ma);
  cr_expect_lt(mb, TOL, "%s: rows in a padded batch differ from PyTorch by %.3g", dir, mb);
  for (int i = 0; i < n; i++)
    tok_ids_free(&ids[i]);
  free(ids), free(alone), free(batch);

  /* texts: the same ids as the tokenizer peer, then the same probabilities */
  const cJSON *texts = cJSON_GetObjectItem(spec, "texts");
  int nt = cJSON_GetArraySize(texts);
  const cJSON *tids = cJSON_GetObjectItem(r, "text_ids"),
              *tp = cJSON_GetObjectItem(r, "text_probs");
  const char **tx = calloc((size_t)nt + 1, sizeof *tx);
  double *p = calloc((size_t)(nt + 1) * K, sizeof(double)), mt = 0;
  for (int i = 0; i < nt; i++) {
    tx[i] = cJSON_GetArrayItem(texts, i)->valuestring;
    tok_ids got = {0};
    cr_assert_eq(met_hf_judge_encode(j, tx[i], strlen(tx[i]), &got, &err), 0, "%s", err.msg);
    const cJSON *w = cJSON_GetArrayItem(tids, i);
    int same = (int)got.n == cJSON_GetArraySize(w);
    for (size_t t = 0; same && t < got.n; t++)
      same = got.ids[t] == (int32_t)cJSON_GetArrayItem(w, (int)t)->valuedouble;
    cr_expect(same, "%s: text %d (%s): %zu ids, the peer's %d differ", dir, i, tx[i], got.n,
              cJSON_GetArraySize(w));
    tok_ids_free(&got);
  }
  cr_assert_eq(met_hf_judge_score(j, tx, NULL, (size_t)nt, 0, p, &err), 0, "%s", err.msg);
  for (int i = 0; i < nt; i++)
    mt = fmax(mt, max_diff(p + (size_t)i * K, cJSON_GetArrayItem(tp, i), K));
  cr_log_info("%s: %d texts, max |p - PyTorch| %.3g", dir, nt, mt);
  cr_expect_lt(mt, TOL, "%s: texts differ from PyTorch by %.3g", dir, mt);
  free(tx), free(p);
  met_hf_judge_free(j);
}

static const char *const ascii_texts[] = {
    "hello world", "the movie was great", "bad bad movie!", "x", "",
    /* one string, cut (the parentheses tell clang's -Wstring-concatenation) */
    ("the movie the movie the movie the movie the movie the movie the movie the movie the movie "
     "the movie the movie the movie the movie the movie the movie the movie the movie the movie")};

Test(bert, three_families_small_shape) {
  if (!bt_have_python(1))
    cr_skip_test("/usr/bin/python3 has no torch module (Debian package python3-torch): the "
                 "PyTorch reference cannot run");
  char dir[256], sub[6][300];
  ts_tmpdir(dir, sizeof dir);
  cJSON *spec = cJSON_CreateObject(), *fs = cJSON_AddArrayToObject(spec, "folders");
  static const int lens[5] = {3, 9, 17, 30, 2};
  const char *fam[5] = {"distilbert", "bert", "roberta", "bert", "roberta"};
  for (int f = 0; f < 5; f++) {
    snprintf(sub[f], sizeof sub[f], "%s/%s%d", dir, fam[f], f);
    int K = f == 3 ? 3 : f == 4 ? 1 : 2;
    cJSON *s = folder_spec(sub[f], fam[f], 2, 32, 4, 64, f == 2 || f == 4 ? 34 : 32, K, 10 + f);
    int rob = !strcmp(fam[f], "roberta");
    add_rows(s, rob ? 0 : 2, rob ? 2 : 3, rob ? 4 : 5, rob ? 260 : 5 + BT_NWORDS, lens, 5,
             (uint64_t)f);
    if (f == 3) { /* ReLU, independent sigmoids; embeddings so small that eps 1e-12 matters */
      cJSON_AddNumberToObject(s, "emb_sd", 0.002);
      cJSON_AddStringToObject(s, "act", "relu");
      cJSON_AddStringToObject(s, "problem_type", "multi_label_classification");
    }
    if (f == 1) /* no vocab.txt: the vocabulary from tokenizer.json's WordPiece model */
      cJSON_AddBoolToObject(s, "wp_json", 1);
    if (f == 4) { /* the tanh GELU; one label: a sigmoid; a pad id inside a row */
      cJSON_AddStringToObject(s, "act", "gelu_new");
      cJSON *row = cJSON_GetArrayItem(cJSON_GetObjectItem(s, "ids"), 2);
      cJSON_ReplaceItemInArray(row, 4, cJSON_CreateNumber(1));
    }
    if (rob)
      add_texts(s, ascii_texts, 6);
    else
      add_texts(s, bt_tricky, BT_NTRICKY);
    cJSON_AddItemToArray(fs, s);
  }
  /* truncation: the longest texts exceed 32 tokens */
  cJSON *ref = bt_reference(dir, spec);
  for (int f = 0; f < 5; f++)
    check_folder(sub[f], cJSON_GetArrayItem(fs, f), cJSON_GetObjectItem(ref, sub[f]));

  /* the command: one JSON line per input line, labels by id2label */
  char input[400];
  snprintf(input, sizeof input, "%s/texts.txt", dir);
  FILE *fp = fopen(input, "w");
  for (int i = 0; i < 6; i++)
    fprintf(fp, "%s\n", ascii_texts[i]);
  fclose(fp);
  ts_run r;
  ts_dfpo(&r, "judge", "score", "--model", sub[2], "--input", input, "--json", NULL);
  cr_assert_eq(r.status, 0, "%s", r.err);
  const cJSON *tp = cJSON_GetObjectItem(cJSON_GetObjectItem(ref, sub[2]), "text_probs");
  char *line = r.out;
  for (int i = 0; i < 6; i++) {
    char *nl = strchr(line, '\n');
    cr_assert_not_null(nl, "line %d missing: %s", i, r.out);
    *nl = 0;
    cJSON *o = cJSON_Parse(line);
    cr_assert(cJSON_IsObject(o) && cJSON_GetArraySize(o) == 2, "line %d: %s", i, line);
    double p[2] = {cJSON_GetObjectItem(o, "NEGATIVE")->valuedouble,
                   cJSON_GetObjectItem(o, "POSITIVE")->valuedouble};
    cr_expect_lt(max_diff(p, cJSON_GetArrayItem(tp, i), 2), TOL, "line %d: %s", i, line);
    cJSON_Delete(o);
    line = nl + 1;
  }
  cr_expect_str_eq(line, "", "one line per input line");
  ts_run_free(&r);
  cJSON_Delete(ref);
  cJSON_Delete(spec);
  ts_rmtree(dir);
}

Test(bert, distilbert_base_shape, .timeout = 300) {
  if (!bt_have_python(1))
    cr_skip_test("/usr/bin/python3 has no torch module (Debian package python3-torch): the "
                 "PyTorch reference cannot run");
  char dir[256], sub[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(sub, sizeof sub, "%s/distilbert-base", dir);
  cJSON *spec = cJSON_CreateObject(), *fs = cJSON_AddArrayToObject(spec, "folders");
  /* distilbert-base's layers, width, heads, feed-forward and positions;
   * a small vocabulary keeps the file and the test short */
  cJSON *s = folder_spec(sub, "distilbert", 6, 768, 12, 3072, 512, 2, 7);
  static const int lens[3] = {4, 11, 23};
  add_rows(s, 2, 3, 5, 5 + BT_NWORDS, lens, 3, 99);
  const char *texts[2] = {"the movie was great!", "Crème brûlée, not bad"};
  add_texts(s, texts, 2);
  cJSON_AddItemToArray(fs, s);
  cJSON *ref = bt_reference(dir, spec);
  check_folder(sub, s, cJSON_GetObjectItem(ref, sub));
  cJSON_Delete(ref);
  cJSON_Delete(spec);
  ts_rmtree(dir);
}

static void write_empty_safetensors(const char *dir) {
  char path[512];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  FILE *fp = fopen(path, "wb");
  fwrite("\x08\0\0\0\0\0\0\0{}      ", 1, 16, fp);
  fclose(fp);
}

Test(bert, bad_folders_say_what_is_wrong) {
  char dir[256], path[512];
  ts_tmpdir(dir, sizeof dir);
  write_empty_safetensors(dir);
  snprintf(path, sizeof path, "%s/config.json", dir);
  dfpo_err err;
  dfpo_err_clear(&err);
  model_t *m = NULL;
  ts_write_text(path, "{\"model_type\": \"bart\"}"); /* an architecture not read */
  cr_expect_neq(bert_load(&m, dir, &err), 0);
  cr_expect(strstr(err.msg, "model_type 'bart'") && strstr(err.msg, "distilbert, bert, roberta"),
            "%s", err.msg);
  char st[512];
  snprintf(st, sizeof st, "%s/model.safetensors", dir);
  cr_expect_neq(model_load(&m, st, &err), 0);
  cr_expect(strstr(err.msg, "model_type 'bart'") && strstr(err.msg, "gpt2") &&
                strstr(err.msg, "t5"),
            "%s", err.msg);
  ts_write_text(path, "{\"model_type\": \"bert\", \"position_embedding_type\": \"relative_key\", "
                      "\"id2label\": {\"0\": \"a\"}}");
  cr_expect_neq(bert_load(&m, dir, &err), 0);
  cr_expect(strstr(err.msg, "relative_key") != NULL, "%s", err.msg);
  ts_write_text(path, "{\"model_type\": \"distilbert\", \"dim\": 8, \"n_layers\": 1, \"n_heads\": "
                      "2, \"hidden_dim\": 16, \"vocab_size\": 10, \"max_position_embeddings\": 8, "
                      "\"id2label\": {\"0\": \"a\", \"1\": \"b\"}}");
  cr_expect_neq(model_load(&m, st, &err), 0);
  cr_expect(strstr(err.msg, "'distilbert.embeddings.word_embeddings.weight' missing"), "%s",
            err.msg);
  ts_write_text(path, "{\"model_type\": \"roberta\", \"hidden_act\": \"swish\", \"id2label\": "
                      "{\"0\": \"a\"}}");
  cr_expect_neq(bert_load(&m, dir, &err), 0);
  cr_expect(strstr(err.msg, "swish") != NULL, "%s", err.msg);
  cr_expect_null(m);
  ts_run r;
  ts_dfpo(&r, "judge", "score", "--model", dir, "--input", path, NULL);
  cr_expect_neq(r.status, 0);
  cr_expect(strstr(r.err, "swish") != NULL, "%s", r.err);
  ts_run_free(&r);
  ts_dfpo(&r, "judge", "score", "sentiment", "--model", dir, "--input", path, NULL);
  cr_expect_neq(r.status, 0);
  cr_expect(strstr(r.err, "no judge name") != NULL, "%s", r.err);
  ts_run_free(&r);
  /* sizes past int: 1e20 was cast to int (undefined; the sanitizer build
   * stopped), 12.5 truncated to 12 */
  ts_write_text(path, "{\"model_type\": \"bert\", \"hidden_size\": 1e20, \"id2label\": "
                      "{\"0\": \"a\"}}");
  cr_expect_neq(bert_load(&m, dir, &err), 0);
  cr_expect(strstr(err.msg, "sizes out of range") && strstr(err.msg, "width -1"), "%s", err.msg);
  ts_write_text(path, "{\"model_type\": \"bert\", \"num_attention_heads\": 12.5, "
                      "\"id2label\": {\"0\": \"a\"}}");
  cr_expect_neq(bert_load(&m, dir, &err), 0);
  cr_expect(strstr(err.msg, "heads -1") != NULL, "%s", err.msg);
  ts_rmtree(dir);
}

/* The same judge on the CUDA backend (the ops table's kernels) against the
 * CPU, to 1e-5 on probabilities. Skipped, saying why, without a usable GPU. */
Test(bert, cuda_matches_the_cpu) {
  ops_device got;
  char note[512] = "";
  dfpo_err err;
  dfpo_err_clear(&err);
  if (ops_device_resolve(OPS_DEVICE_CUDA, &got, note, sizeof note, &err) != DFPO_OK)
    cr_skip_test("no usable CUDA device: %s", err.msg);
  if (!bt_have_python(1))
    cr_skip_test("/usr/bin/python3 has no torch module: the test folder cannot be made");
  char dir[256], sub[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(sub, sizeof sub, "%s/bert", dir);
  cJSON *spec = cJSON_CreateObject(), *fs = cJSON_AddArrayToObject(spec, "folders");
  cJSON *s = folder_spec(sub, "bert", 2, 96, 6, 192, 64, 3, 5);
  add_texts(s, bt_tricky, BT_NTRICKY);
  cJSON_AddItemToArray(fs, s);
  cJSON *ref = bt_reference(dir, spec);
  met_hf_judge *cpu = NULL, *gpu = NULL;
  cr_assert_eq(met_hf_judge_open(&cpu, sub, &err), 0, "%s", err.msg);
  ops_use_device(OPS_DEVICE_CUDA);
  int rc = met_hf_judge_open(&gpu, sub, &err);
  ops_use_device(OPS_DEVICE_CPU);
  cr_assert_eq(rc, 0, "%s", err.msg);
  double pc[BT_NTRICKY * 3], pg[BT_NTRICKY * 3], m = 0;
  cr_assert_eq(met_hf_judge_score(cpu, bt_tricky, NULL, BT_NTRICKY, 0, pc, &err), 0, "%s", err.msg);
  cr_assert_eq(met_hf_judge_score(gpu, bt_tricky, NULL, BT_NTRICKY, 0, pg, &err), 0, "%s", err.msg);
  for (int i = 0; i < BT_NTRICKY * 3; i++)
    m = fmax(m, fabs(pc[i] - pg[i]));
  cr_log_info("CUDA vs CPU: max |p| difference %.3g", m);
  cr_expect_lt(m, TOL, "CUDA and CPU differ by %.3g", m);
  met_hf_judge_free(cpu);
  met_hf_judge_free(gpu);
  cJSON_Delete(ref);
  cJSON_Delete(spec);
  ts_rmtree(dir);
}

/* pytorch_model.bin (torch.save's zip format, trainer/pt_read.c): a
 * DistilBERT and a RoBERTa (whose position_ids buffer is an int64 storage)
 * written by bert_reference.py both as model.safetensors and as
 * pytorch_model.bin from the same seed, the word embeddings rounded to
 * float16 (stored as F16 in the .bin), the classifier's bias a view at a
 * storage offset. Each folder holds to the PyTorch reference (TOL) and the
 * two give bit-identical probabilities (the same weights). */
Test(bert, pytorch_model_bin) {
  if (!bt_have_python(1))
    cr_skip_test("/usr/bin/python3 has no torch module (Debian package python3-torch): the "
                 "PyTorch reference cannot run");
  char dir[256], sub[4][300];
  ts_tmpdir(dir, sizeof dir);
  cJSON *spec = cJSON_CreateObject(), *fs = cJSON_AddArrayToObject(spec, "folders");
  static const int lens[4] = {3, 9, 17, 30};
  const char *fam[2] = {"distilbert", "roberta"};
  for (int f = 0; f < 4; f++) {
    const char *fm = fam[f / 2];
    int rob = f >= 2;
    snprintf(sub[f], sizeof sub[f], "%s/%s_%s", dir, fm, f % 2 ? "bin" : "st");
    cJSON *s = folder_spec(sub[f], fm, 2, 32, 4, 64, rob ? 34 : 32, 2, 40 + f / 2);
    add_rows(s, rob ? 0 : 2, rob ? 2 : 3, rob ? 4 : 5, rob ? 260 : 5 + BT_NWORDS, lens, 4,
             (uint64_t)(f / 2));
    const char *half[1] = {rob ? "roberta.embeddings.word_embeddings.weight"
                               : "distilbert.embeddings.word_embeddings.weight"};
    cJSON_AddItemToObject(s, "half", cJSON_CreateStringArray(half, 1));
    if (f % 2)
      cJSON_AddStringToObject(s, "weights", "bin");
    cJSON_AddItemToArray(fs, s);
  }
  cJSON *ref = bt_reference(dir, spec);
  for (int f = 0; f < 4; f++)
    check_folder(sub[f], cJSON_GetArrayItem(fs, f), cJSON_GetObjectItem(ref, sub[f]));
  dfpo_err err;
  dfpo_err_clear(&err);
  for (int f = 0; f < 4; f += 2) {
    char w[400];
    snprintf(w, sizeof w, "%s/pytorch_model.bin", sub[f + 1]);
    cr_assert_eq(access(w, F_OK), 0, "%s not written", w);
    snprintf(w, sizeof w, "%s/model.safetensors", sub[f + 1]);
    cr_assert_neq(access(w, F_OK), 0, "%s: the .bin folder has a model.safetensors", w);
    met_hf_judge *a = NULL, *b = NULL;
    cr_assert_eq(met_hf_judge_open(&a, sub[f], &err), 0, "%s", err.msg);
    cr_assert_eq(met_hf_judge_open(&b, sub[f + 1], &err), 0, "%s", err.msg);
    const cJSON *rows = cJSON_GetObjectItem(cJSON_GetArrayItem(fs, f), "ids");
    tok_ids ids[4] = {{0}};
    for (int i = 0; i < 4; i++) {
      const cJSON *x;
      cJSON_ArrayForEach(x, cJSON_GetArrayItem(rows, i)) {
        ids[i].ids = realloc(ids[i].ids, (ids[i].n + 1) * sizeof(int32_t));
        ids[i].ids[ids[i].n++] = (int32_t)x->valuedouble;
      }
    }
    double pa[8], pb[8];
    cr_assert_eq(met_hf_judge_score_ids(a, ids, 4, 1 << 20, pa, &err), 0, "%s", err.msg);
    cr_assert_eq(met_hf_judge_score_ids(b, ids, 4, 1 << 20, pb, &err), 0, "%s", err.msg);
    cr_expect_eq(memcmp(pa, pb, sizeof pa), 0, "%s: .bin and safetensors probabilities differ",
                 fam[f / 2]);
    for (int i = 0; i < 4; i++)
      tok_ids_free(&ids[i]);
    met_hf_judge_free(a);
    met_hf_judge_free(b);
  }
  cJSON_Delete(ref);
  cJSON_Delete(spec);
  ts_rmtree(dir);
}
