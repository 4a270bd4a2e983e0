/* datasets: the manifest, downloads, verification, extraction and the
 * importers that turn IMDB, RealToxicityPrompts and CommonGen into split
 * files (DESIGN.md sections 4 and 5).
 *
 * Prefix: ds_. Depends on common/ only. Ownership: callers own what they
 * pass in; paths written into caller buffers are NUL-terminated.
 */
#ifndef DFPO_DATASETS_H
#define DFPO_DATASETS_H

#include "common/common.h"

/* The cache folder of one dataset version: <cache>/datasets/<name>/<version>
 * (DESIGN.md section 4). Written into buf. */
int ds_dataset_dir(const char *name, const char *version, char *buf, size_t n, dfpo_err *err);

#endif
