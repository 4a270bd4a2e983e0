/* Hugging Face sequence classifiers as judges (metrics.h): the folder's
 * model (trainer/bert.h) and tokenizer, special tokens, truncation, padded
 * batches and the label probabilities. */
#include "metrics/metrics.h"
#include "trainer/bert.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct met_hf_judge {
  model_t *m;
  const bert_config *cfg;
  tok_wordpiece *wp;  /* DistilBERT, BERT */
  tok_tokenizer *bpe; /* RoBERTa */
  int32_t cls, sep;   /* [CLS]/[SEP] or <s>/</s> */
  int pad;
  int max_tokens;
};

void met_hf_judge_free(met_hf_judge *j) {
  if (!j)
    return;
  model_free(j->m);
  tok_wp_free(j->wp);
  tok_free(j->bpe);
  free(j);
}

/* A parsed JSON file of the folder, NULL when it is absent. */
static int read_json(const char *folder, const char *name, cJSON **out, dfpo_err *err) {
  *out = NULL;
  char path[4096], *text = NULL;
  int rc = dfpo_path_fmt(path, sizeof path, err, "%s/%s", folder, name);
  if (rc || dfpo_read_file(path, &text, NULL, NULL) != DFPO_OK)
    return rc;
  *out = cJSON_Parse(text);
  free(text);
  if (!cJSON_IsObject(*out)) {
    cJSON_Delete(*out);
    *out = NULL;
    return dfpo_err_set(err, DFPO_EDATA, "%s: not a JSON object", path);
  }
  return DFPO_OK;
}

/* A boolean setting: true/false, null or absent gives dflt. */
static int jbool(const cJSON *o, const char *key, int dflt) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsBool(x) ? cJSON_IsTrue(x) : dflt;
}

static int open_wordpiece(met_hf_judge *j, const char *folder, const cJSON *tcfg, dfpo_err *err) {
  /* the fast tokenizer's settings (tokenizer.json's BertNormalizer) win
   * over tokenizer_config.json's; BERT's defaults: lower-case, and strip
   * accents when lower-casing */
  cJSON *tj = NULL;
  int rc = read_json(folder, "tokenizer.json", &tj, err);
  if (rc)
    return rc;
  int lower = jbool(tcfg, "do_lower_case", 1);
  int strip = jbool(tcfg, "strip_accents", -1);
  const cJSON *norm = cJSON_GetObjectItemCaseSensitive(tj, "normalizer");
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(norm, "type");
  if (cJSON_IsString(type) && !strcmp(type->valuestring, "BertNormalizer")) {
    lower = jbool(norm, "lowercase", lower);
    strip = jbool(norm, "strip_accents", strip);
  }
  /* the vocabulary: tokenizer.json's WordPiece model when it has one (what
   * AutoTokenizer's fast tokenizer reads), else vocab.txt */
  const cJSON *mtype =
      cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(tj, "model"), "type");
  int from_json = cJSON_IsString(mtype) && !strcmp(mtype->valuestring, "WordPiece");
  cJSON_Delete(tj);
  char path[4096];
  if ((rc = dfpo_path_fmt(path, sizeof path, err, "%s/%s", folder,
                          from_json ? "tokenizer.json" : "vocab.txt")))
    return rc;
  rc = from_json ? tok_wp_load_json(&j->wp, path, lower, strip < 0 ? lower : strip, err)
                 : tok_wp_load(&j->wp, path, lower, strip < 0 ? lower : strip, "[UNK]", err);
  if (rc)
    return rc;
  j->cls = tok_wp_id(j->wp, "[CLS]");
  j->sep = tok_wp_id(j->wp, "[SEP]");
  if (j->cls < 0 || j->sep < 0)
    return dfpo_err_set(err, DFPO_EDATA, "%s: the vocabulary lacks [CLS] or [SEP]", path);
  return DFPO_OK;
}

static int open_bpe(met_hf_judge *j, const char *folder, dfpo_err *err) {
  int rc = tok_load(&j->bpe, folder, err);
  if (rc)
    return rc;
  j->cls = tok_token_id(j->bpe, "<s>", 3);
  j->sep = tok_token_id(j->bpe, "</s>", 4);
  if (j->cls < 0 || j->sep < 0)
    return dfpo_err_set(err, DFPO_EDATA, "%s: the vocabulary lacks <s> or </s>", folder);
  return DFPO_OK;
}

int met_hf_judge_open(met_hf_judge **out, const char *folder, dfpo_err *err) {
  *out = NULL;
  met_hf_judge *j = calloc(1, sizeof *j);
  if (!j)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  cJSON *tcfg = NULL;
  int rc = bert_load(&j->m, folder, err);
  if (!rc)
    rc = read_json(folder, "tokenizer_config.json", &tcfg, err);
  if (!rc) {
    j->cfg = bert_get_config(j->m);
    j->pad = j->cfg->pad_id;
    j->max_tokens = j->cfg->max_tokens;
    const cJSON *ml = cJSON_GetObjectItemCaseSensitive(tcfg, "model_max_length");
    /* transformers writes a huge number for "no limit" */
    if (cJSON_IsNumber(ml) && ml->valuedouble >= 2 && ml->valuedouble < j->max_tokens)
      j->max_tokens = (int)ml->valuedouble;
    rc = j->cfg->family == BERT_ROBERTA ? open_bpe(j, folder, err)
                                        : open_wordpiece(j, folder, tcfg, err);
  }
  cJSON_Delete(tcfg);
  if (rc) {
    met_hf_judge_free(j);
    return rc;
  }
  *out = j;
  return DFPO_OK;
}

int met_hf_judge_labels(const met_hf_judge *j) {
  return j->cfg->n_labels;
}
const char *met_hf_judge_label(const met_hf_judge *j, int k) {
  return bert_label(j->m, k);
}
int met_hf_judge_max_tokens(const met_hf_judge *j) {
  return j->max_tokens;
}
const char *met_hf_judge_model_type(const met_hf_judge *j) {
  return j->cfg->model_type;
}
int met_hf_judge_multi_label(const met_hf_judge *j) {
  return j->cfg->multi_label;
}
int met_hf_judge_label_index(const met_hf_judge *j, const char *name) {
  for (int k = 0; name && k < j->cfg->n_labels; k++)
    if (!strcmp(bert_label(j->m, k), name))
      return k;
  return -1;
}

int met_hf_judge_encode(met_hf_judge *j, const char *text, size_t len, tok_ids *out,
                        dfpo_err *err) {
  tok_ids body = {0};
  int rc = j->wp ? tok_wp_encode(j->wp, text, len, &body, err)
                 : tok_encode(j->bpe, text, len, 0, &body, err);
  size_t keep = body.n < (size_t)j->max_tokens - 2 ? body.n : (size_t)j->max_tokens - 2;
  size_t need = out->n + keep + 2;
  if (!rc && need > out->cap) {
    int32_t *p = realloc(out->ids, need * sizeof *p);
    if (!p)
      rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    else
      out->ids = p, out->cap = need;
  }
  if (!rc) {
    out->ids[out->n++] = j->cls;
    if (keep) /* an empty text has no ids (body.ids NULL) */
      memcpy(out->ids + out->n, body.ids, keep * sizeof *body.ids);
    out->n += keep;
    out->ids[out->n++] = j->sep;
  }
  tok_ids_free(&body);
  return rc;
}

/* Rows ordered by length, then index, for batches of similar lengths. */
typedef struct row_len {
  size_t n, i;
} row_len;
static int by_len(const void *a, const void *b) {
  const row_len *x = a, *y = b;
  return x->n != y->n ? (x->n > y->n) - (x->n < y->n) : (x->i > y->i) - (x->i < y->i);
}

int met_hf_judge_score_ids(met_hf_judge *j, const tok_ids *ids, size_t n, size_t batch_tokens,
                           double *probs, dfpo_err *err) {
  if (!n)
    return DFPO_OK;
  if (!batch_tokens)
    batch_tokens = 8192;
  int K = j->cfg->n_labels, rc = DFPO_OK;
  row_len *order = malloc(n * sizeof *order);
  size_t maxT = (size_t)j->max_tokens;
  size_t cap_b = batch_tokens / 2 + 1;
  int *tokens = malloc(batch_tokens > maxT ? batch_tokens * sizeof(int) : maxT * sizeof(int));
  int *ks = malloc(cap_b * sizeof *ks), *at = malloc(cap_b * sizeof *at);
  float *logits = malloc(cap_b * (size_t)K * sizeof *logits);
  if (!order || !tokens || !ks || !at || !logits) {
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    goto done;
  }
  for (size_t i = 0; i < n; i++) {
    order[i] = (row_len){ids[i].n, i};
    if (ids[i].n < 2 || ids[i].n > maxT) {
      rc =
          dfpo_err_set(err, DFPO_EUSAGE, "text %zu has %zu tokens (2..%zu fit)", i, ids[i].n, maxT);
      goto done;
    }
  }
  qsort(order, n, sizeof *order, by_len);
  for (size_t s = 0; s < n && !rc;) {
    /* the longest row is the last of the batch: grow while it fits */
    size_t e = s + 1;
    while (e < n && (e + 1 - s) * order[e].n <= batch_tokens && e - s < cap_b)
      e++;
    int B = (int)(e - s), T = (int)order[e - 1].n;
    for (int b = 0; b < B; b++) {
      const tok_ids *r = &ids[order[s + (size_t)b].i];
      ks[b] = at[b] = T - (int)r->n;
      for (int t = 0; t < T; t++)
        tokens[(size_t)b * T + t] = t < ks[b] ? j->pad : r->ids[t - ks[b]];
    }
    model_batch mb = {tokens, ks, B, T, 0, 0};
    if ((rc = model_forward(j->m, &mb, err)) || (rc = model_class_forward(j->m, at, logits, err)))
      break;
    for (int b = 0; b < B; b++) {
      const float *z = logits + (size_t)b * K;
      double *p = probs + order[s + (size_t)b].i * (size_t)K, mx = -INFINITY, sum = 0;
      if (j->cfg->multi_label) {
        for (int k = 0; k < K; k++)
          p[k] = 1.0 / (1.0 + exp(-(double)z[k]));
        continue;
      }
      for (int k = 0; k < K; k++)
        mx = z[k] > mx ? z[k] : mx;
      for (int k = 0; k < K; k++)
        sum += p[k] = exp(z[k] - mx);
      for (int k = 0; k < K; k++)
        p[k] /= sum;
    }
    s = e;
  }
done:
  free(order), free(tokens), free(ks), free(at), free(logits);
  return rc;
}

int met_hf_judge_score(met_hf_judge *j, const char *const *texts, const size_t *lens, size_t n,
                       size_t batch_tokens, double *probs, dfpo_err *err) {
  tok_ids *ids = calloc(n ? n : 1, sizeof *ids);
  if (!ids)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  int rc = DFPO_OK;
  for (size_t i = 0; i < n && !rc; i++)
    if ((rc = met_hf_judge_encode(j, texts[i], lens ? lens[i] : strlen(texts[i]), &ids[i], err)))
      dfpo_err_prefix(err, "text %zu", i);
  if (!rc)
    rc = met_hf_judge_score_ids(j, ids, n, batch_tokens, probs, err);
  for (size_t i = 0; i < n; i++)
    tok_ids_free(&ids[i]);
  free(ids);
  return rc;
}
