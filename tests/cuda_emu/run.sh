#!/usr/bin/env bash
# Runs tests/trainer/test_ops_cuda.c against the CUDA backend's kernels on a
# CPU emulator of CUDA threads (emu.h: one OS thread per CUDA thread, blocks
# one after another, std::barrier for __syncthreads, per-warp barriers for
# shuffles; cuBLAS's sgemm by its documented column-major definition, TF32 by
# rounding the inputs to 10 mantissa bits). It checks the kernels' indexing,
# reductions and the cuBLAS argument order on a machine without a GPU; it
# says nothing about the memory model, speed or the real cuBLAS. Slow (a
# thread per CUDA thread): about half an hour on two loaded cores.
#   tests/cuda_emu/run.sh [BUILD_DIR] [CRITERION_FILTER]
# BUILD_DIR (default build) must be a DFPO_CUDA=ON/AUTO build with nvcc
# found (its libraries and the compiled test object are reused). The two
# tests that run the real dfpo binary (cli_*) fail under the emulator by
# design (the binary sees no GPU) and are left out by the default filter.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
filter=${2:-ops_cuda/[!c]*}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mkdir -p "$out/include"
cp tests/cuda_emu/emu.h tests/cuda_emu/cuda_runtime.h tests/cuda_emu/cublas_v2.h \
  tests/cuda_emu/cuda_bf16.h tests/cuda_emu/cuda_fp16.h "$out/include/"
# <<<grid, block, shared>>> launches become emu_launch(kernel, grid, block,
# shared)(args); dynamic shared memory and the cuBLAS loader are redirected.
python3 - "$out" <<'PY'
import re, sys
s = open("trainer/ops_cuda.cu").read()
s, n = re.subn(r"(\w+)<<<(.*?)>>>\(", r'emu_launch("\1", \1, \2)(', s, flags=re.S)
assert n > 0
s = s.replace("extern __shared__ float shsc[];", "float *shsc = (float *)emu_dyn_shared;")
assert s.count("open_cublas(reason, n)") == 1
s = s.replace("open_cublas(reason, n)",
              "(cb.create = cublasCreate_v2, cb.set_stream = cublasSetStream_v2, "
              "cb.set_pointer_mode = cublasSetPointerMode_v2, "
              "cb.set_atomics_mode = cublasSetAtomicsMode, cb.set_math_mode = cublasSetMathMode, "
              "cb.sgemm = cublasSgemm_v2, cb.gemm_ex = cublasGemmEx, "
              "cb.sgemm_batched = cublasSgemmBatched, cb.gemm_batched_ex = cublasGemmBatchedEx, "
              "cb.status_string = cublasGetStatusString, "
              "cb.status_name = cublasGetStatusName, 0)")
open(sys.argv[1] + "/ops_cuda_emu.cpp", "w").write(s)
PY
F=(-std=c++20 -O1 -g -pthread -I"$out/include" -I. -DDFPO_HAVE_CUDA=1 -D_POSIX_C_SOURCE=200809L)
g++ "${F[@]}" -c "$out/ops_cuda_emu.cpp" -o "$out/ops_cuda_emu.o"
g++ "${F[@]}" -x c++ -c trainer/ops_cuda_env.cu -o "$out/ops_cuda_env_emu.o"
g++ "${F[@]}" -c tests/cuda_emu/emu.cpp -o "$out/emu.o"
ninja -C "$build" tests/trainer/trainer_test_ops_cuda >/dev/null
cp "$build/trainer/libdfpo_trainer.a" "$out/libtrainer.a"
ar d "$out/libtrainer.a" ops_cuda.cu.o ops_cuda_env.cu.o
ar r "$out/libtrainer.a" "$out/ops_cuda_emu.o" "$out/ops_cuda_env_emu.o" "$out/emu.o"
# the test's own link line, with the emulated trainer library and no cudart
link=$(ninja -C "$build" -t commands tests/trainer/trainer_test_ops_cuda | tail -1 |
  sed -e 's/^: && //' -e 's/ && :$//' -e "s| -o [^ ]*| -o $out/test_emu|" \
    -e "s|trainer/libdfpo_trainer.a|$out/libtrainer.a|g" \
    -e 's|[^ ]*libcudart_static.a||g' -e 's| -lcudadevrt||; s| -lcudart_static||')
(cd "$build" && eval "$link -pthread")
"$out/test_emu" --jobs 1 --verbose --filter "$filter"
