/* trainer: everything that turns text into a model and a model into a
 * policy: the compute backends (ops_), the tokenizer (tok_), the GPT-2 model
 * (gpt2_), sampling, optimisation, checkpoints and the RL algorithms (rl_).
 *
 * Depends on common/ only. Ownership: structs filled by a function belong to
 * the caller; strings the library returns in such structs point into the
 * struct itself unless a comment says otherwise.
 */
#ifndef DFPO_TRAINER_H
#define DFPO_TRAINER_H

#include "common/common.h"

/* ------------------------------------------------------ backends (ops_) */

/* What the compute backends of this build offer on this machine. */
typedef struct ops_env_info {
  int cpu_threads;       /* OpenMP threads the CPU backend uses */
  int online_cpus;       /* processors the OS reports online */
  int blas_threads;      /* threads OpenBLAS uses */
  char blas[256];        /* OpenBLAS build configuration and core */
  int cuda_compiled;     /* the CUDA backend is part of this build */
  int cuda_devices;      /* usable devices (0 when none) */
  char cuda_runtime[64]; /* CUDA runtime version, when compiled in */
  char cuda_device[256]; /* first device's name and memory, when usable */
  char cuda_reason[512]; /* why no device is usable, in the driver's words */
} ops_env_info;

/* Fills info; never fails: what cannot be learned is reported in the text
 * fields. Safe on machines without a GPU or driver. */
void ops_env_probe(ops_env_info *info);

/* ----------------------------------------------------- tokenizer (tok_) */

/* ---------------------------------------------------- GPT-2 (gpt2_) */

/* ------------------------------------------------------- RL (rl_) */

#endif
