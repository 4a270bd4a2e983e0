#!/usr/bin/env bash
# The machine's float32 ceiling, by which docs/benchmarks.md states each
# engine's fraction: OpenBLAS sgemm at 4096^3 on all cores with the kernels
# it picks for this CPU (OPENBLAS_CORETYPE unset: AVX-512 where the CPU has
# it) and, for comparison, with the kernels the environment pins when it
# sets OPENBLAS_CORETYPE (these machines set Haswell: AVX2).
#   bench/ceiling.sh [N] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-4096}
threads=${2:-$(nproc)}
bin=$(mktemp -d)/ceiling
trap 'rm -rf "$(dirname "$bin")"' EXIT
cc -O2 -std=c11 bench/ceiling.c -o "$bin" $(pkg-config --cflags --libs openblas)
echo "# OPENBLAS_CORETYPE unset (the CPU's own kernels), $threads threads"
env -u OPENBLAS_CORETYPE OPENBLAS_NUM_THREADS="$threads" "$bin" "$n"
if [ -n "${OPENBLAS_CORETYPE:-}" ]; then
  echo "# OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE (as the environment sets it), $threads threads"
  OPENBLAS_NUM_THREADS="$threads" "$bin" "$n"
fi
