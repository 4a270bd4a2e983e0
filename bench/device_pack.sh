#!/usr/bin/env bash
# bench/device_pack.sh: packs a prebuilt CUDA build for bench/device_check.sh,
# for a GPU machine whose image lacks the Debian -dev packages that
# cmake/DfpoDeps.cmake requires (configuring fails there; nothing can be
# installed). Builds DFPO_CHECK_BUILD (default build-cuda; CUDA for sm_90,
# -lineinfo) here and writes .devpack/dfpo-devpack.tar.xz (ignored by git):
#   dfpo, trainer_test_ops_cuda  the two binaries the check runs
#   lib/                         every shared library they load except the C
#                                and C++ runtimes (ldd), about 97 MB
#                                unpacked, 24.8 MB packed (2026-12-03)
#   source_dir, build_dir        where they were built: the tests' compiled-in
#                                paths, which device_check.sh links to the
#                                checkout there
# Carry .devpack with the device call (the device tool's carry); the CUDA
# runtime is linked statically and cuBLAS is opened at run time from the
# machine's toolkit, so no CUDA library is packed. The libraries are put on
# the library path of these two binaries only, never of the python peers.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${DFPO_CHECK_BUILD:-build-cuda}
gen=()
command -v ninja >/dev/null && [ ! -f "$build/CMakeCache.txt" ] && gen=(-G Ninja)
cmake -S . -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDFPO_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_CUDA_FLAGS=-lineinfo >/dev/null
cmake --build "$build" -j "$(nproc)" --target dfpo trainer_test_ops_cuda
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/lib" .devpack
cp "$build/harness/dfpo" "$build/tests/trainer/trainer_test_ops_cuda" "$tmp/"
ldd "$tmp/dfpo" "$tmp/trainer_test_ops_cuda" | awk '/=> \//{print $3}' | sort -u |
  grep -v -E '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*|libgcc_s|libstdc\+\+)\.so' |
  while read -r l; do cp -L "$l" "$tmp/lib/"; done
echo "$PWD" >"$tmp/source_dir"
echo "$build" >"$tmp/build_dir"
tar -C "$tmp" -cf - . | xz -T0 -6 >.devpack/dfpo-devpack.tar.xz
ls -la .devpack/dfpo-devpack.tar.xz
echo "carry .devpack along: bench/device_check.sh uses it when configuring fails there"
