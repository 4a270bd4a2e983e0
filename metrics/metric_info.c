/* The metrics library's metrics by name: the one key each has in JSON
 * output (`dfpo metrics`, a task's eval.json), a label for tables and
 * which direction is better (docs/metrics.md). */
#include "metrics/metrics.h"

#include <string.h>

const met_metric_info met_metrics[MET_METRIC_COUNT] = {
    [MET_BLEU1] = {"bleu1", "BLEU-1", 1},
    [MET_BLEU2] = {"bleu2", "BLEU-2", 1},
    [MET_BLEU3] = {"bleu3", "BLEU-3", 1},
    [MET_BLEU4] = {"bleu4", "BLEU-4", 1},
    [MET_SACREBLEU] = {"sacrebleu", "sacreBLEU", 1},
    [MET_CIDER_D] = {"cider_d", "CIDEr-D", 1},
    [MET_ROUGE_L_COCO] = {"rougeL_coco", "ROUGE-L (COCO)", 1},
    [MET_ROUGE1] = {"rouge1", "ROUGE-1", 1},
    [MET_ROUGE2] = {"rouge2", "ROUGE-2", 1},
    [MET_ROUGE_L] = {"rougeL", "ROUGE-L", 1},
    [MET_ROUGE1_STEM] = {"rouge1_stem", "ROUGE-1 (stemmed)", 1},
    [MET_ROUGE2_STEM] = {"rouge2_stem", "ROUGE-2 (stemmed)", 1},
    [MET_ROUGE_L_STEM] = {"rougeL_stem", "ROUGE-L (stemmed)", 1},
    [MET_METEOR] = {"meteor", "METEOR", 1},
    [MET_COVERAGE] = {"coverage", "Coverage", 1},
    [MET_MSTTR100] = {"msttr100", "MSTTR-100", 1},
    [MET_DISTINCT1] = {"distinct1", "Distinct-1", 1},
    [MET_DISTINCT2] = {"distinct2", "Distinct-2", 1},
    [MET_VOCAB_SIZE1] = {"vocab_size1", "Vocabulary (1-grams)", 1},
    [MET_VOCAB_SIZE2] = {"vocab_size2", "Vocabulary (2-grams)", 1},
    [MET_UNIQUE1] = {"unique1", "Unique 1-grams", 1},
    [MET_UNIQUE2] = {"unique2", "Unique 2-grams", 1},
    [MET_ENTROPY1] = {"entropy1", "Entropy-1", 1},
    [MET_ENTROPY2] = {"entropy2", "Entropy-2", 1},
    [MET_MEAN_LENGTH] = {"mean_length", "Mean length", 0},
    [MET_TOTAL_LENGTH] = {"total_length", "Total length", 0},
    [MET_PPL_REF] = {"ppl_ref", "Perplexity (ref)", -1},
    [MET_PPL_GEN] = {"ppl_gen", "Perplexity (gen)", -1},
};

const char *met_key(met_metric_id id) {
  return id >= 0 && id < MET_METRIC_COUNT ? met_metrics[id].key : NULL;
}

const met_metric_info *met_metric_find(const char *key) {
  for (int i = 0; key && i < MET_METRIC_COUNT; i++)
    if (met_metrics[i].key && !strcmp(met_metrics[i].key, key))
      return &met_metrics[i];
  return NULL;
}

void met_diversity_json(const met_diversity *d, cJSON *o) {
  if (d->msttr100 == d->msttr100) /* not NaN: fewer than 100 tokens have none */
    cJSON_AddNumberToObject(o, met_key(MET_MSTTR100), d->msttr100);
  else
    cJSON_AddNullToObject(o, met_key(MET_MSTTR100));
  cJSON_AddNumberToObject(o, met_key(MET_DISTINCT1), d->distinct[0]);
  cJSON_AddNumberToObject(o, met_key(MET_DISTINCT2), d->distinct[1]);
  cJSON_AddNumberToObject(o, met_key(MET_VOCAB_SIZE1), (double)d->vocab_size[0]);
  cJSON_AddNumberToObject(o, met_key(MET_VOCAB_SIZE2), (double)d->vocab_size[1]);
  cJSON_AddNumberToObject(o, met_key(MET_UNIQUE1), (double)d->unique[0]);
  cJSON_AddNumberToObject(o, met_key(MET_UNIQUE2), (double)d->unique[1]);
  cJSON_AddNumberToObject(o, met_key(MET_ENTROPY1), d->entropy[0]);
  cJSON_AddNumberToObject(o, met_key(MET_ENTROPY2), d->entropy[1]);
  cJSON_AddNumberToObject(o, met_key(MET_MEAN_LENGTH), d->mean_length);
  cJSON_AddNumberToObject(o, met_key(MET_TOTAL_LENGTH), (double)d->total_length);
}
