/* trainer/bert.h: encoder classifiers (prefix bert_), one implementation of
 * the model interface (trainer/model.h) for Hugging Face's
 * DistilBertForSequenceClassification, BertForSequenceClassification and
 * RobertaForSequenceClassification, inference only.
 *
 * The three families share the post-LN encoder (embeddings, LayerNorm;
 * per layer: bidirectional self-attention, output projection, residual,
 * LayerNorm, feed-forward with GELU or ReLU, residual, LayerNorm) and differ
 * in:
 *   - embeddings: BERT and RoBERTa add token_type_embeddings[0] (every
 *     token is of type 0 in one-text classification); RoBERTa's positions
 *     start at pad_token_id + 1;
 *   - tensor names (distilbert.transformer.layer.N.attention.q_lin,
 *     bert.encoder.layer.N.attention.self.query, roberta.encoder...);
 *   - the head on the first token ([CLS], <s>): DistilBERT pre_classifier,
 *     ReLU, classifier; BERT pooler dense, tanh, classifier; RoBERTa
 *     classifier.dense, tanh, classifier.out_proj.
 * docs/model-interface.md says how it plugs in, docs/judges.md how the
 * judge command uses it.
 *
 * As a model_t: head MODEL_HEAD_CLASS with K = the number of labels;
 * model_forward over a left-padded batch (kstart: the padding keys are
 * masked, positions count from each row's first real token), then
 * model_class_forward with at[b] = the row's first real column (kstart[b],
 * where [CLS] or <s> sits). model_num_tensors/model_tensor_at list the
 * Hugging Face names. Training, the LM head, decoding, value heads, native
 * checkpoints and export answer DFPO_EUSAGE.
 *
 * Depends on common/ and the model interface. Ownership: a model from
 * bert_load/bert_import_safetensors is the caller's (model_free); the
 * config and label names returned point into the model. */
#ifndef DFPO_TRAINER_BERT_H
#define DFPO_TRAINER_BERT_H

#include "trainer/model.h"

typedef enum { BERT_DISTILBERT = 0, BERT_BERT = 1, BERT_ROBERTA = 2 } bert_family;

typedef struct bert_config {
  bert_family family;
  const char *model_type; /* "distilbert", "bert", "roberta" */
  int vocab_size;
  int n_layer, n_head, hidden, ffn; /* ffn: the feed-forward width */
  int n_pos;                        /* max_position_embeddings */
  int type_vocab;                   /* token types (0 for DistilBERT) */
  int pad_id;                       /* pad_token_id */
  int pos_offset;                   /* RoBERTa: pad_id + 1, else 0 */
  int max_tokens;                   /* tokens one text may have, specials included */
  float ln_eps;                     /* layer_norm_eps (DistilBERT: 1e-12) */
  int act;                          /* OPS_ACT_GELU_ERF or OPS_ACT_RELU; -1: tanh GELU */
  int n_labels;
  int multi_label; /* independent sigmoids (problem_type multi_label_classification, or
                      one label), else a softmax over the labels */
} bert_config;

/* Reads folder/config.json and folder/model.safetensors (F32, F16 or BF16)
 * onto the current device (ops_use_device). An unknown model_type, a
 * missing or misshapen tensor, or a setting this implementation lacks
 * (position_embedding_type other than absolute, an activation other than
 * gelu, gelu_new or relu) is DFPO_EDATA naming the file and the field. */
int bert_load(model_t **out, const char *folder, dfpo_err *err);
/* The same from the path of a model.safetensors with config.json beside it
 * (model_import_safetensors comes here for the three model types). */
int bert_import_safetensors(model_t **out, const char *path, dfpo_err *err);
/* Whether model_type (config.json) is one of the families here. */
int bert_handles(const char *model_type);

/* NULL when m is not an encoder classifier. */
const bert_config *bert_get_config(const model_t *m);
/* The name of label k (config.json's id2label; "LABEL_k" without it). */
const char *bert_label(const model_t *m, int k);

#endif
