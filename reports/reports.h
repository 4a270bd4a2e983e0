/* reports: tables (Markdown, LaTeX, CSV, JSON), plots and report pages built
 * from many runs and seeds.
 *
 * Prefix: rep_. Depends on common/ and metrics/ (statistics). Nothing is
 * implemented here yet.
 */
#ifndef DFPO_REPORTS_H
#define DFPO_REPORTS_H

#include "common/common.h"

#endif
