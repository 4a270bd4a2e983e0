/* metrics: text metrics (BLEU, ROUGE, METEOR, CIDEr-D, coverage, diversity),
 * judge models, perplexity and statistics (DESIGN.md section 8).
 *
 * Prefix: met_. Depends on common/ and trainer/ (for LM-based judges and
 * perplexity only). Nothing is implemented here yet.
 */
#ifndef DFPO_METRICS_H
#define DFPO_METRICS_H

#include "common/common.h"

#endif
