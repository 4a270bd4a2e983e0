/* Internal: the C-callable entry points of the CUDA backend (ops_cuda_*.cu).
 * Declared only when the build has the CUDA backend. */
#ifndef DFPO_TRAINER_OPS_CUDA_H
#define DFPO_TRAINER_OPS_CUDA_H

#include "trainer/trainer.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef DFPO_HAVE_CUDA
/* Fills the cuda_* fields of info from the CUDA runtime. */
void ops_cuda_probe(ops_env_info *info);
#endif

#ifdef __cplusplus
}
#endif

#endif
