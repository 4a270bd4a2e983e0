#!/usr/bin/env bash
# The first run of the CUDA backend on a machine with an NVIDIA GPU
# (docs/cuda.md): build with CUDA, the op-by-op equivalence test, the same
# test under compute-sanitizer (memcheck, racecheck), then dfpo bench on the
# GPU beside its PyTorch / transformers peers (bench/gpt2_torch_cuda.py).
# Everything is logged under out/cuda_check/; put the results in
# docs/benchmarks.md with the machine, the date and the commands.
#   bench/cuda_check.sh [SHAPE]
# Environment: PY (python with torch, default python3), PEAK_TFLOPS (the
# GPU's dense peak at the precision measured, for MFU; left out if unset),
# SKIP_SANITIZER=1, SKIP_BENCH=1.
set -uo pipefail
cd "$(dirname "$0")/.."
shape=${1:-gpt2-124M}
py=${PY:-python3}
build=build-cuda
log=out/cuda_check
mkdir -p "$log"
status=0
step() { echo; echo "== $*"; }
fail() { echo "FAILED: $*"; status=1; }

step "build ($build, DFPO_CUDA=ON, -lineinfo for the sanitizer's line numbers)"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDFPO_CUDA=ON \
  -DCMAKE_CUDA_FLAGS=-lineinfo >"$log/cmake.txt" 2>&1 || { cat "$log/cmake.txt"; exit 1; }
ninja -C "$build" >"$log/build.txt" 2>&1 || { tail -50 "$log/build.txt"; exit 1; }
dfpo=$build/harness/dfpo
test=$build/tests/trainer/trainer_test_ops_cuda
nvidia-smi 2>&1 | tee "$log/nvidia-smi.txt" | head -15
"$dfpo" env --device cuda 2>&1 | tee "$log/env.txt" || fail "dfpo env --device cuda"

step "equivalence test (every CUDA op against the CPU op)"
"$test" --verbose --jobs 1 2>&1 | tee "$log/equivalence.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || fail "equivalence test"
grep -q "SKIP" "$log/equivalence.txt" && fail "the equivalence test skipped: no usable GPU?"

if [ "${SKIP_SANITIZER:-0}" != 1 ]; then
  san=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  for tool in memcheck racecheck; do
    step "compute-sanitizer --tool $tool over the equivalence test"
    # Criterion runs each test in a child process: follow all of them.
    # DFPO_CUDA_SYNC=1 reports a failing kernel at the op that launched it.
    DFPO_CUDA_SYNC=1 "$san" --tool "$tool" --target-processes all --error-exitcode 99 \
      "$test" --jobs 1 2>&1 | tee "$log/sanitizer-$tool.txt"
    [ "${PIPESTATUS[0]}" -eq 0 ] || fail "compute-sanitizer $tool"
    grep -q "ERROR SUMMARY: [1-9]" "$log/sanitizer-$tool.txt" && fail "$tool found errors"
  done
fi

if [ "${SKIP_BENCH:-0}" != 1 ]; then
  step "benchmarks ($shape): dfpo on the GPU and its peers"
  run() { # name, command...
    local name=$1
    shift
    if "$@" >"$log/$name.json" 2>"$log/$name.log"; then cat "$log/$name.json"; else
      echo "($name failed: $(tail -1 "$log/$name.log"))"
    fi
  }
  for p in "" --tf32; do
    tag=${p:+-tf32}
    tag=${tag:--fp32}
    for b in 4 16; do
      run dfpo-train-$b$tag "$dfpo" bench --device cuda $p --shape "$shape" --batch $b --seq 64 --steps 5
      run torch-train-$b$tag "$py" bench/gpt2_torch_cuda.py train $p --shape "$shape" --batch $b --seq 64 --steps 5
    done
    run dfpo-gen$tag "$dfpo" bench --device cuda $p --shape "$shape" --what generate --prompts 16 --prompt-len 64 --new 48
    run hf-gen$tag "$py" bench/gpt2_torch_cuda.py generate $p --shape "$shape" --prompts 16 --prompt-len 64 --new 48
  done
  # the optional bf16 products (fp32 weights): dfpo only, no peer run here
  for b in 4 16; do
    run dfpo-train-$b-bf16 "$dfpo" bench --device cuda --bf16 --shape "$shape" --batch $b --seq 64 --steps 5
  done
  "$py" - "$log" "${PEAK_TFLOPS:-}" <<'PY'
import json, os, sys
d, peak = sys.argv[1], sys.argv[2]
def j(n):
    try:
        return json.load(open(os.path.join(d, n + ".json")))
    except Exception:
        return None
print("\n| measurement | dfpo | peer | peer / dfpo | dfpo TFLOP/s | dfpo MFU |")
print("|---|---|---|---|---|---|")
for tag in ("-fp32", "-tf32", "-bf16"):
    for b in (4, 16):
        a, p = j("dfpo-train-%d%s" % (b, tag)), j("torch-train-%d%s" % (b, tag))
        if not a:
            continue
        # 6 N flops per token for the products with the weights (N counts
        # wte once: the tied LM head), plus 12 L T C for attention (PaLM's
        # appendix B); L and C from the shape
        L, C = {"gpt2-124M": (12, 768), "gpt2-350M": (24, 1024), "gpt2-774M": (36, 1280),
                "gpt2-1558M": (48, 1600), "gpt2-tiny": (2, 64)}[a["shape"]]
        tokens = a["batch"] * a["seq"]
        flops = (6 * a["params"] + 12 * L * a["seq"] * C) * tokens
        tf = flops / a["step_s"] / 1e12
        mfu = "%.1f%%" % (100 * tf / float(peak)) if peak else "(PEAK_TFLOPS unset)"
        print("| train %s B=%d T=64 | %.4f s | %s | %s | %.1f | %s |" % (
            tag[1:], b, a["step_s"], "%.4f s" % p["step_s"] if p else "-",
            "%.2fx" % (p["step_s"] / a["step_s"]) if p else "-", tf, mfu))
    a, p = j("dfpo-gen" + tag), j("hf-gen" + tag)
    if a:
        print("| generate %s 16x64+48 | %.3f s | %s | %s | | |" % (
            tag[1:], a["gen_s"], "%.3f s" % p["gen_s"] if p else "-",
            "%.2fx" % (p["gen_s"] / a["gen_s"]) if p else "-"))
PY
fi

echo
[ $status -eq 0 ] && echo "cuda_check: all steps passed (logs in $log/)" || echo "cuda_check: some steps FAILED (logs in $log/)"
exit $status
