/* `dfpo reproduce --emit slurm`: the suite as Slurm jobs (docs/suites.md). */
#include "harness/repro_internal.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

int repro_emit_slurm(const repro *r, const char *suite_arg, dfpo_err *err) {
  char dir[2200], path[2400];
  suite_fmt(dir, sizeof dir, "%s/slurm", r->root);
  int rc = dfpo_mkdirs(dir, err);
  if (rc)
    return rc;
  const char *device;
  cfg_get_str(&r->s.conf, "device", &device, err);
  const char *gres = !strcmp(device, "cuda") ? "#SBATCH --gres=gpu:1\n" : "";
  int n = suite_n_cells(&r->s);
  char common[6000];
  suite_fmt(common, sizeof common,
            "#SBATCH --output=%s/slurm/%%x-%%A_%%a.out\n"
            "set -euo pipefail\n"
            "DFPO='%s'\n",
            r->root, r->exe);
  char text[16000];
  /* the preparation job: data and base models, once, before the cells */
  suite_fmt(text, sizeof text,
            "#!/bin/bash\n#SBATCH --job-name=%s-prepare\n%s%s"
            "\"$DFPO\" reproduce --config '%s' --out '%s' --prepare-only\n",
            r->s.name, gres, common, r->config, r->out);
  suite_fmt(path, sizeof path, "%s/prepare.sbatch", dir);
  if ((rc = repro_write_text(path, text, err)))
    return rc;
  suite_fmt(text, sizeof text,
            "#!/bin/bash\n#SBATCH --job-name=%s-cells\n#SBATCH --array=0-%d\n%s%s"
            "# one array task per (task, algorithm, seed) cell, in the order of\n"
            "# `dfpo reproduce --help` (tasks outermost, seeds innermost)\n"
            "\"$DFPO\" reproduce --config '%s' --out '%s' --cell \"$SLURM_ARRAY_TASK_ID\"\n",
            r->s.name, n - 1, gres, common, r->config, r->out);
  suite_fmt(path, sizeof path, "%s/cells.sbatch", dir);
  if ((rc = repro_write_text(path, text, err)))
    return rc;
  suite_fmt(text, sizeof text,
            "#!/bin/bash\n#SBATCH --job-name=%s-report\n%s"
            "\"$DFPO\" report '%s'\n",
            r->s.name, common, r->root);
  suite_fmt(path, sizeof path, "%s/report.sbatch", dir);
  if ((rc = repro_write_text(path, text, err)))
    return rc;
  suite_fmt(text, sizeof text,
            "#!/bin/bash\n"
            "# Submits the suite %s (%d cells): preparation, then the cell array, then\n"
            "# the report (which runs even when some cells failed, and lists them).\n"
            "set -euo pipefail\n"
            "cd \"$(dirname \"$0\")\"\n"
            "prep=$(sbatch --parsable prepare.sbatch)\n"
            "cells=$(sbatch --parsable --dependency=afterok:$prep cells.sbatch)\n"
            "sbatch --dependency=afterany:$cells report.sbatch\n",
            suite_arg, n);
  suite_fmt(path, sizeof path, "%s/submit.sh", dir);
  if ((rc = repro_write_text(path, text, err)))
    return rc;
  chmod(path, 0755);
  printf("%s\n", path);
  dfpo_info("reproduce: wrote %s/{prepare,cells,report}.sbatch and submit.sh (%d cells)", dir, n);
  return DFPO_OK;
}
