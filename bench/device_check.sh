#!/usr/bin/env bash
# bench/device_check.sh OUT [--small]: the one prepared run of the CUDA
# backend on a GPU machine (issue 25; docs/cuda.md, "Running it on a GPU").
# Run from anywhere; it works in the repository root. Every step runs under
# its own `timeout`, a failed or timed-out step is recorded and the script
# goes on, and the whole run keeps to DFPO_CHECK_BUDGET seconds (default 450:
# the H200 lease's one call is 10 minutes at most; a step gets at most what
# is left of the budget, and none starts with under 10 s left).
#
# It writes to OUT (at most 5 files, each well under 16 MiB):
#   device_check.log  every step's command output (each cut to 1 MiB)
#   summary.json      {"steps": [{name, status ok|skip|fail, reason, s,
#                     result}], ...}, rewritten after every step
#   results.md        the timings against their peers, ratios and MFU
#   crosscheck.json   bench/hf_crosscheck.py's detail
#   profile.txt       the profile step's ncu summary
#
# The steps (skip = not run, with the reason in summary.json):
#   env          machine, toolkit, python packages, commit
#   build        cmake -DDFPO_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90
#                (-lineinfo), all cores, into DFPO_CHECK_BUILD (default
#                build-cuda; an existing one is built incrementally).
#                Measured on the project's 2-core build machine on
#                2026-12-03: 56 s from scratch (220 targets, no ccache), of
#                which nvcc on trainer/ops_cuda.cu is 3.5 s, so it is built
#                there rather than carried. If configuring fails there (the
#                image may lack the Debian -dev packages of
#                cmake/DfpoDeps.cmake) and .devpack/dfpo-devpack.tar.xz
#                exists (bench/device_pack.sh, carried along), that prebuilt
#                build and its libraries are used instead.
#   gpu          `dfpo env --device cuda` and nvidia-smi; finds cuBLAS. No
#                usable GPU: every GPU step below skips with its reason.
#   cuda_tests   ctest -R cuda: tests/trainer/test_ops_cuda.c (every op
#                against the CPU op, T5's and the rotary decoders' too, the
#                whole-model steps of GPT-2, T5, GPT-J, GPT-NeoX and Llama,
#                sampling, generation, the RL iterations). Without a GPU the
#                tests skip themselves, and so does the step.
#   memcheck     compute-sanitizer --tool memcheck over a subset of it
#   crosscheck   bench/hf_crosscheck.py: dfpo's perplexities, greedy tokens
#                and classifier probabilities against the project's PyTorch
#                references and against Hugging Face transformers
#                (save_pretrained folders), on the CPU and the GPU backend
#   train_*      a GPT-2 124M training step, dfpo bench against PyTorch eager
#                (bench/gpt2_torch_cuda.py), B=16 T=64 and B=64 T=128, in
#                fp32, TF32 and bf16 products
#   generate_*   KV-cache generation, 48 tokens for 64 prompts of 64, against
#                transformers' generate
#   rl_ppo, rl_dfpo  one IMDB-shaped RL iteration (dfpo bench --what rl)
#                against a PyTorch + transformers loop doing the same work
#                (bench/rl_torch_gpu.py)
#   reproduce    `dfpo reproduce --suite smoke --device cuda`, shortened
#                (one seed, 8 iterations, a base pretrained 100 steps): the
#                README's main job's pipeline (corpus, tokenizer,
#                pretraining, zero-shot, SFT, PPO, NLPO, DfPO, the report) on
#                the GPU; its report's tables go to device_check.log
#   judge        a distilbert-base-shaped classifier scoring 5,000 texts,
#                dfpo judge score --model against bench/bert_peer.py's
#                PyTorch forward (and transformers' model, where installed)
#                on the GPU
#   profile      ncu's per-kernel summary (gpu__time_duration, the clocks left
#                alone) of one GPT-2 124M training step at B=64 T=128 with
#                TF32 (dfpo bench --steps 1: the first step and one more),
#                into OUT/profile.txt: where the step's time goes
#
# --small (or DFPO_CHECK_SMALL=1) is the dry run for a machine without a GPU:
# tiny shapes (gpt2-tiny; a 2-layer 64-wide judge over 40 texts) and, where
# no GPU is usable, the timing steps run on the CPU backend and the CPU peers
# so that every command line and the summary are exercised. On the GPU
# machine run it without --small. Environment: PY (the python with torch and
# transformers, default python3), DFPO_CHECK_BUILD, DFPO_CHECK_BUDGET,
# DFPO_CHECK_COMMIT (the commit to record, where the tree came without
# .git), DFPO_CHECK_GPU=0 (treat the GPU as absent), DFPO_CHECK_PACK=1 (use the
# carried pack without trying to build), DFPO_CHECK_ONLY=REGEX (run only the
# steps whose names match the extended regex, for a rerun, e.g.
# 'cuda_tests|memcheck|train_.*'; env, build and gpu always run).
set -uo pipefail

if [ "${1:-}" = --step ]; then # a step's body, run by run_step under timeout
  step_name=$2
  shift 2
else
  step_name=
fi
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
CALLER_PWD=$PWD
cd "$(dirname "$SELF")/.." || exit 1

# ------------------------------------------------------------ step bodies
# Each prints what it does; exit 0 = ok, 77 = skip (reason in $WORK/NAME.why),
# anything else = fail. A result JSON goes to $WORK/NAME.json.

why() { echo "$*" >"$WORK/$step_name.why"; echo "SKIP: $*"; exit 77; }
with_ld() { # runs a command with the dfpo libraries' folders (DFPO_LD) on the path
  if [ -n "${DFPO_LD:-}" ]; then
    LD_LIBRARY_PATH="$DFPO_LD${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$@"
  else
    "$@"
  fi
}
gpu_or_standin() { # skips unless the GPU is usable or this is the small dry run on the CPU
  if [ "$GPU" = 1 ]; then return 0; fi
  [ "$SMALL" = 1 ] || why "no usable GPU ($GPU_WHY)"
  echo "(no usable GPU: $GPU_WHY; the CPU stand-in of this step runs instead)"
  STANDIN="no usable GPU ($GPU_WHY); the CPU stand-in (tiny shapes, CPU peers) ran and passed: its result is the CPU's"
}

body_env() {
  date -u
  uname -a
  echo "cores: $(nproc)"
  free -g 2>/dev/null | head -2
  # the device machine gets the working tree, maybe without .git: the caller
  # can name the commit (DFPO_CHECK_COMMIT=$(git rev-parse HEAD) here)
  local commit=${DFPO_CHECK_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
  echo "commit: $commit"
  git status --short 2>/dev/null | head -20
  if command -v nvidia-smi >/dev/null; then nvidia-smi 2>&1 | head -20; else echo "nvidia-smi: absent"; fi
  for t in nvcc compute-sanitizer ncu; do
    p=$(command -v $t || ls /usr/local/cuda/bin/$t 2>/dev/null)
    if [ -n "$p" ]; then echo "$t: $p: $("$p" --version 2>&1 | tail -1)"; else echo "$t: absent"; fi
  done
  "$PY" - "$WORK/env.json" "$commit" <<'PY'
import importlib, json, sys
v = {"commit": sys.argv[2], "python": sys.version.split()[0]}
for m in ("torch", "transformers", "peft", "safetensors", "numpy"):
    try:
        v[m] = importlib.import_module(m).__version__
    except Exception:
        v[m] = None
try:
    import torch
    v["torch_cuda"] = torch.version.cuda
    v["torch_gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
except Exception:
    pass
print(json.dumps(v))
json.dump(v, open(sys.argv[1], "w"))
PY
}

body_build() {
  local gen=() jobs
  jobs=$(nproc)
  command -v ninja >/dev/null && [ ! -f "$BUILD/CMakeCache.txt" ] && gen=(-G Ninja)
  if [ "${DFPO_CHECK_PACK:-0}" != 1 ] &&
    cmake -S . -B "$BUILD" "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDFPO_CUDA=ON \
      -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_CUDA_FLAGS=-lineinfo; then
    local t0=$SECONDS
    if cmake --build "$BUILD" -j "$jobs"; then
      echo "built $BUILD with $jobs jobs in $((SECONDS - t0)) s"
      {
        echo "DFPO_REAL=$PWD/$BUILD/harness/dfpo"
        echo "OPS_TEST=$PWD/$BUILD/tests/trainer/trainer_test_ops_cuda"
        echo "CTEST_DIR=$PWD/$BUILD"
      } >"$WORK/build.env"
      echo "{\"mode\": \"built\", \"dir\": \"$BUILD\", \"jobs\": $jobs, \"build_s\": $((SECONDS - t0))}" \
        >"$WORK/build.json"
      return 0
    fi
    echo "the build failed after $((SECONDS - t0)) s"
  fi
  local pack=.devpack/dfpo-devpack.tar.xz
  [ -f "$pack" ] || { echo "configuring or building failed and there is no $pack to fall back on"; exit 1; }
  echo "configuring or building failed, or DFPO_CHECK_PACK=1: using the prebuilt $pack (bench/device_pack.sh)"
  rm -rf "$WORK/pack" && mkdir -p "$WORK/pack" && tar -C "$WORK/pack" -xJf "$pack" || exit 1
  # the tests' compiled-in paths (DFPO_SOURCE_DIR, DFPO_BIN) name the
  # folder the pack was built in: make that folder this checkout
  local src
  src=$(cat "$WORK/pack/source_dir")
  if [ ! -e "$src" ]; then mkdir -p "$(dirname "$src")" && ln -s "$PWD" "$src"; fi
  local b
  b="$src/$(cat "$WORK/pack/build_dir")"
  mkdir -p "$b/harness" "$b/tests/trainer"
  cp "$WORK/pack/dfpo" "$b/harness/dfpo" && cp "$WORK/pack/trainer_test_ops_cuda" "$b/tests/trainer/"
  {
    echo "DFPO_REAL=$b/harness/dfpo"
    echo "OPS_TEST=$b/tests/trainer/trainer_test_ops_cuda"
    echo "CTEST_DIR="
    echo "DFPO_LD=$WORK/pack/lib"
  } >"$WORK/build.env"
  echo '{"mode": "prebuilt pack"}' >"$WORK/build.json"
}

body_gpu() {
  [ -x "$DFPO_REAL" ] || { echo "no dfpo binary at $DFPO_REAL (see the build step)"; exit 1; }
  [ "${DFPO_CHECK_GPU:-1}" = 0 ] && why "DFPO_CHECK_GPU=0"
  command -v nvidia-smi >/dev/null &&
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1
  # cuBLAS is opened at run time (libcublas.so.<CUDA major>): from the
  # system's library path, else the folder the build recorded, else this
  # search (the toolkit's lib64, then the nvidia wheels of the python there,
  # whose CUDA 13 layout is nvidia/cu13/lib)
  local lib d roots
  if ldconfig -p 2>/dev/null | grep -q 'libcublas\.so\.'; then
    echo "cuBLAS: on the system's library path ($(ldconfig -p | grep -m1 -o '/[^ ]*libcublas\.so\.[0-9]*'))"
  else
    roots="/usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda $(ls -d /usr/local/cuda-* 2>/dev/null | tr '\n' ' ')"
    roots+=" $("$PY" -c 'import nvidia, os; print(" ".join(list(nvidia.__path__)))' 2>/dev/null)"
    for d in $roots; do
      lib=$(find "$d/" -maxdepth 4 -name 'libcublas.so.[0-9]*' 2>/dev/null | sort | head -1)
      [ -n "$lib" ] && break
    done
    if [ -n "$lib" ]; then
      d=$(dirname "$lib")
      echo "cuBLAS: $lib"
      echo "DFPO_LD=$d${DFPO_LD:+:$DFPO_LD}" >>"$WORK/gpu.env"
      DFPO_LD="$d${DFPO_LD:+:$DFPO_LD}" # read by the $DFPO wrapper
      export DFPO_LD
    else
      echo "cuBLAS: not found under $roots (dfpo then tries the folder it was built with)"
    fi
  fi
  local msg
  if msg=$("$DFPO" env --device cuda 2>&1); then
    echo "$msg"
    echo "GPU=1" >>"$WORK/gpu.env"
  else
    echo "$msg"
    why "$(echo "$msg" | grep -m1 'error' || echo "$msg" | tail -1)"
  fi
}

body_cuda_tests() {
  local txt="$WORK/cuda_tests.raw" rc total
  # CRITERION_VERBOSITY_LEVEL=1: Criterion prints each skipped test with its reason
  if [ -n "$CTEST_DIR" ]; then
    CRITERION_VERBOSITY_LEVEL=1 with_ld ctest --test-dir "$CTEST_DIR" -R cuda -V \
      --timeout "${STEP_LIMIT:-180}" >"$txt" 2>&1
  else
    with_ld "$OPS_TEST" --verbose --jobs 1 >"$txt" 2>&1
  fi
  rc=$?
  cat "$txt"
  total=$(with_ld "$OPS_TEST" --list 2>/dev/null | grep -o '^[a-z_0-9]*: [0-9]* tests' | awk '{n += $2} END {print n + 0}')
  # Criterion's totals line: "Synthesis: Tested: N | Passing: N | Failing: N | Crashing: N"
  # (skipped tests are not counted as tested)
  grep -o "Synthesis: .*" "$txt" | tail -1 | sed 's/\x1b\[[0-9;]*m//g' |
    "$PY" -c 'import json,re,sys; s=sys.stdin.read(); d={k.lower(): int(v) for k, v in re.findall(r"(\w+): (\d+)", s)}; d["in_file"]=int(sys.argv[1]); d["skipped"]=d["in_file"]-d.get("tested",0); print(json.dumps(d))' "$total" \
    >"$WORK/cuda_tests.json"
  cat "$WORK/cuda_tests.json"
  [ $rc -eq 0 ] || { echo "the CUDA tests failed (exit $rc; the log has their output)"; exit $rc; }
  local skipped
  skipped=$(grep -c '\[SKIP\]' "$txt")
  if [ "$skipped" -gt 0 ]; then
    local reason
    reason=$(grep -m1 -o 'the CUDA backend is not tested here: .*' "$txt")
    [ "$GPU" = 1 ] && { echo "$skipped tests skipped on a machine with a usable GPU: ${reason:-see the log}"; exit 1; }
    why "$skipped of the $total tests skip themselves: ${reason:-see the log}"
  fi
}

body_memcheck() {
  [ "$GPU" = 1 ] || why "no usable GPU ($GPU_WHY)"
  local san
  san=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
  [ -n "$san" ] || why "compute-sanitizer not found"
  # a subset that launches every kind of kernel once: products, LayerNorm,
  # attention, the decoding step (grouped too), logits, AdamW, the sampler, T5's RMS norm
  # and attention, and the rotary decoders' rope and kv_repeat. Criterion
  # runs each test in a child process: follow them all. DFPO_CUDA_SYNC=1
  # reports a failing kernel at the op that launched it.
  local filter='ops_cuda/@(matmul_fp32|matmul_bf16|layernorm_forward_backward|attention_training|kv_cache_and_decoding_step|kv_cache_and_decoding_step_grouped|logits_stats_and_backward|adamw_ten_steps_sumsq|sample_same_tokens_as_the_cpu|rmsnorm_forward_backward|attention_rel_forward_backward|rope_forward_backward|kv_repeat_forward_backward)'
  DFPO_CUDA_SYNC=1 with_ld "$san" --tool memcheck --target-processes all --error-exitcode 99 \
    "$OPS_TEST" --jobs 1 --filter "$filter" >"$WORK/memcheck.raw" 2>&1
  local rc=$?
  cat "$WORK/memcheck.raw"
  grep -q "ERROR SUMMARY: [1-9]" "$WORK/memcheck.raw" && { echo "memcheck found errors"; exit 1; }
  return $rc
}

body_profile() {
  [ "$GPU" = 1 ] || why "no usable GPU ($GPU_WHY)"
  local ncu
  ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null)
  [ -n "$ncu" ] || why "ncu not found"
  with_ld "$ncu" --clock-control none --metrics gpu__time_duration.sum --print-summary per-kernel \
    "$DFPO" bench --device cuda --shape gpt2-124M --batch 64 --seq 128 --steps 1 --tf32 \
    >"$OUTDIR/profile.txt" 2>&1
  local rc=$?
  tail -40 "$OUTDIR/profile.txt"
  return $rc
}

body_crosscheck() {
  local a=(--dfpo "$DFPO" --work "$WORK/crosscheck" --out "$OUTDIR/crosscheck.json"
    --brief "$WORK/crosscheck.json")
  [ "$GPU" = 1 ] && a+=(--gpu) || a+=(--no-gpu-why "$GPU_WHY")
  [ "$SMALL" = 1 ] && a+=(--small)
  # the project's references run under Debian's torch 1.13 here and under
  # the GPU machine's python there: both are PY
  "$PY" bench/hf_crosscheck.py "${a[@]}"
}

# run_pair NAME DFPO-ARGS... -- PEER-ARGS...: dfpo bench and its peer, each a
# JSON line, into $WORK/NAME.json as {"dfpo": ..., "peer": ...}
run_pair() {
  local name=$1
  shift
  local d=() p=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do d+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  p=("$@")
  local dev=cpu
  [ "$GPU" = 1 ] && dev=cuda
  echo "+ dfpo bench --device $dev ${d[*]}"
  "$DFPO" bench --device "$dev" "${d[@]}" >"$WORK/$name.dfpo" || { echo "dfpo bench failed"; exit 1; }
  cat "$WORK/$name.dfpo"
  local peer_ok=0
  if [ ${#p[@]} -eq 0 ]; then
    echo "no peer: bench/ has no PyTorch + transformers RL iteration yet" >"$WORK/$name.peer"
  else
    echo "+ ${p[*]} --device $dev"
    if "$PY" "${p[@]}" --device "$dev" >"$WORK/$name.peer" 2>"$WORK/$name.peer.err"; then
      peer_ok=1
      cat "$WORK/$name.peer"
    else
      cat "$WORK/$name.peer.err"
      tail -1 "$WORK/$name.peer.err" >"$WORK/$name.peer"
    fi
  fi
  "$PY" - "$WORK/$name" "$peer_ok" "$dev" "${d[*]}" <<'PY'
import json, sys
base, peer_ok, dev, args = sys.argv[1], sys.argv[2] == "1", sys.argv[3], sys.argv[4].split()
r = {"device": dev, "dfpo": json.loads(open(base + ".dfpo").read().strip().splitlines()[-1])}
# dfpo bench --what rl prints no precision keys: take them from its options
for k in ("tf32", "bf16"):
    r["dfpo"].setdefault(k, "--" + k in args)
try:
    txt = open(base + ".peer").read().strip()
except OSError:
    txt = ""
if peer_ok:
    r["peer"] = json.loads(txt.splitlines()[-1])
elif txt:
    r["peer_skipped"] = txt
json.dump(r, open(base + ".json", "w"))
PY
}

body_train() { # B T PRECISION
  gpu_or_standin
  local b=$1 t=$2 prec=$3 shape=gpt2-124M
  [ "$GPU" = 1 ] || { shape=gpt2-tiny; b=2; t=16; }
  local f=()
  [ "$prec" = fp32 ] || f=(--"$prec")
  run_pair "$step_name" --shape "$shape" --batch "$b" --seq "$t" --steps 3 "${f[@]}" -- \
    bench/gpt2_torch_cuda.py train --shape "$shape" --batch "$b" --seq "$t" --steps 3 "${f[@]}"
}

body_generate() { # PRECISION
  gpu_or_standin
  local prec=$1 shape=gpt2-124M n=64 tp=64 new=48
  [ "$GPU" = 1 ] || { shape=gpt2-tiny; n=4; tp=8; new=8; }
  local f=()
  [ "$prec" = fp32 ] || f=(--"$prec")
  run_pair "$step_name" --what generate --shape "$shape" --prompts $n --prompt-len $tp --new $new "${f[@]}" -- \
    bench/gpt2_torch_cuda.py generate --shape "$shape" --prompts $n --prompt-len $tp --new $new "${f[@]}"
}

body_rl() { # ALGO
  gpu_or_standin
  local shape=gpt2-124M n=16 tp=64 new=48 f=(--tf32)
  [ "$GPU" = 1 ] || { shape=gpt2-tiny; n=4; tp=8; new=8; f=(); }
  # the IMDB shape of docs/benchmarks.md ("RL iteration"): 16 prompts of 64
  # tokens, 48 new, 5 epochs; TF32 products (the mode a GPU run would train in).
  # Both sides' figure is a warm iteration: dfpo bench reports the best of
  # its --steps iterations (2: the first warms up), rl_torch_gpu.py runs one
  # warm-up iteration before its --steps timed ones
  run_pair "$step_name" --what rl --algo "$1" --shape "$shape" --prompts $n --prompt-len $tp \
    --new $new --steps 2 "${f[@]}" -- \
    bench/rl_torch_gpu.py --algo "$1" --shape "$shape" --prompts $n --prompt-len $tp --new $new \
    --steps 1 "${f[@]}"
}

body_reproduce() {
  gpu_or_standin
  local dev=cpu out="$WORK/repro"
  [ "$GPU" = 1 ] && dev=cuda
  # the README's main job, shortened to fit: the smoke suite's corpus,
  # tokenizer and a base pretrained 100 steps (not 400), then zero-shot,
  # SFT, PPO, NLPO and DfPO for one seed, 8 iterations each, on the device;
  # the report, not `dfpo check` (the baseline is of the whole suite)
  DFPO_HOME="$WORK/repro-home" "$DFPO" reproduce --suite smoke --out "$out" --device "$dev" \
    --set 'suite.seeds=[0]' --set 'suite.algos=["zero-shot","sft","ppo","nlpo","dfpo"]' \
    --set pretrain.steps=100 --set train.iterations=8 || { echo "dfpo reproduce failed"; exit 1; }
  local report="$out/smoke/report/report.md"
  [ -f "$report" ] || { echo "no report at $report"; exit 1; }
  sed -n '1,60p' "$report" # into device_check.log
}

body_judge() {
  gpu_or_standin
  local n=5000 dir="$WORK/judge" dev=cpu
  local shape=(--layers 6 --width 768 --heads 12 --ffn 3072)
  [ "$GPU" = 1 ] && dev=cuda
  [ "$SMALL" = 1 ] && [ "$GPU" != 1 ] && { n=40; shape=(--layers 2 --width 64 --heads 2 --ffn 128); }
  mkdir -p "$dir"
  # no IMDB there (nothing can be fetched): texts of 84 words drawn from a
  # Zipf-distributed synthetic vocabulary, the length bench/bert_judge.sh cuts
  # IMDB reviews to
  "$PY" bench/bert_peer.py texts "$dir/texts.txt" --n "$n" --words 84 || exit 1
  "$PY" bench/bert_peer.py make "$dir/model" "$dir/texts.txt" "${shape[@]}" || exit 1
  local t0 t1
  t0=$(date +%s%N)
  "$DFPO" judge score --model "$dir/model" --input "$dir/texts.txt" --device "$dev" >"$dir/dfpo.txt" ||
    { echo "dfpo judge score failed"; exit 1; }
  t1=$(date +%s%N)
  echo "dfpo judge score: $n texts in $(((t1 - t0) / 1000000)) ms"
  # the peers' batches: 64 rows (bert_peer.py's default 32 suits the CPU);
  # each peer's whole process is timed too, as dfpo's is (python's start
  # and imports included, as bench/bert_judge.sh times it)
  local p0 p1 p2
  p0=$(date +%s%N)
  "$PY" bench/bert_peer.py score "$dir/model" "$dir/texts.txt" "$dir/peer.txt" --device "$dev" \
    --batch 64 --json >"$dir/peer.json" || { echo "bert_peer.py score failed"; exit 1; }
  p1=$(date +%s%N)
  cat "$dir/peer.json"
  local hf=0
  if "$PY" bench/bert_peer.py score "$dir/model" "$dir/texts.txt" "$dir/hf.txt" --device "$dev" \
    --batch 64 --json --transformers >"$dir/hf.json" 2>"$dir/hf.err"; then
    hf=1
    cat "$dir/hf.json"
  else
    cat "$dir/hf.err"
  fi
  p2=$(date +%s%N)
  "$PY" - "$dir" "$t0" "$t1" "$dev" "$hf" "$WORK/judge.json" "$p0" "$p1" "$p2" <<'PY'
import json, sys
d, t0, t1, dev, hf, out = sys.argv[1], float(sys.argv[2]) / 1e9, float(sys.argv[3]) / 1e9, sys.argv[4], sys.argv[5] == "1", sys.argv[6]
p0, p1, p2 = (float(x) / 1e9 for x in sys.argv[7:10])
rd = lambda p: [[float(x) for x in l.split()] for l in open(p)]
a = rd(d + "/dfpo.txt")
r = {"device": dev, "dfpo": {"texts": len(a), "wall_s": t1 - t0}, "peer": json.load(open(d + "/peer.json"))}
r["peer"]["process_s"] = p1 - p0
def diff(p):
    b = rd(p)
    assert len(a) == len(b), (len(a), len(b))
    return max(abs(x - y) for p_, q in zip(a, b) for x, y in zip(p_, q))
r["peer"]["max_abs_diff"] = diff(d + "/peer.txt")
if hf:
    r["transformers"] = json.load(open(d + "/hf.json"))
    r["transformers"]["process_s"] = p2 - p1
    r["transformers"]["max_abs_diff"] = diff(d + "/hf.txt")
else:
    r["transformers_skipped"] = open(d + "/hf.err").read().strip().splitlines()[-1:]
json.dump(r, open(out, "w"))
print(json.dumps(r))
PY
}

if [ -n "$step_name" ]; then
  case "$step_name" in
    env) body_env ;;
    build) body_build ;;
    gpu) body_gpu ;;
    cuda_tests) body_cuda_tests ;;
    memcheck) body_memcheck ;;
    crosscheck) body_crosscheck ;;
    profile) body_profile ;;
    train_b16t64_*) body_train 16 64 "${step_name##*_}" ;;
    train_b64t128_*) body_train 64 128 "${step_name##*_}" ;;
    generate_*) body_generate "${step_name##*_}" ;;
    rl_*) body_rl "${step_name#rl_}" ;;
    judge) body_judge ;;
    reproduce) body_reproduce ;;
    *) echo "unknown step $step_name" >&2; exit 2 ;;
  esac
  rc=$?
  # a stand-in that passed is still a skipped GPU step
  [ $rc -eq 0 ] && [ -n "${STANDIN:-}" ] && why "$STANDIN"
  exit $rc
fi

# ------------------------------------------------------------ the driver

[ $# -ge 1 ] && [ "${1#-}" = "$1" ] || { sed -n '2,64p' "$SELF" | sed 's/^# \{0,1\}//'; exit 1; }
OUTDIR=$1
SMALL=${DFPO_CHECK_SMALL:-0}
[ "${2:-}" = --small ] && SMALL=1
case $OUTDIR in /*) ;; *) OUTDIR=$CALLER_PWD/$OUTDIR ;; esac
mkdir -p "$OUTDIR" || exit 1
OUTDIR=$(cd "$OUTDIR" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dfpo-device-check.XXXXXX")
PY=${PY:-python3}
BUILD=${DFPO_CHECK_BUILD:-build-cuda}
BUDGET=${DFPO_CHECK_BUDGET:-450}
GPU=0
GPU_WHY="not probed: the gpu step did not run"
DFPO_REAL=$PWD/$BUILD/harness/dfpo
DFPO_LD=
# every step calls dfpo through this wrapper, which puts DFPO_LD (the
# carried pack's libraries, cuBLAS's folder) on the library path of dfpo
# alone, not of the python peers
DFPO=$WORK/dfpo
printf '#!/bin/sh\n[ -n "$DFPO_LD" ] && LD_LIBRARY_PATH="$DFPO_LD${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" && export LD_LIBRARY_PATH\nexec "$DFPO_REAL" "$@"\n' >"$DFPO"
chmod +x "$DFPO"
OPS_TEST=$PWD/$BUILD/tests/trainer/trainer_test_ops_cuda
CTEST_DIR=$PWD/$BUILD
export OUTDIR WORK PY BUILD SMALL GPU GPU_WHY DFPO DFPO_REAL DFPO_LD OPS_TEST CTEST_DIR
export DFPO_HOME=${DFPO_HOME:-$WORK/home} PYTHONUNBUFFERED=1
LOG=$OUTDIR/device_check.log
: >"$LOG"
: >"$WORK/steps.jsonl"
T0=$SECONDS
echo "device_check: $(date -u +%FT%TZ), out $OUTDIR, work $WORK, small=$SMALL, budget ${BUDGET}s" | tee -a "$LOG"

write_summary() {
  "$PY" - "$WORK/steps.jsonl" "$OUTDIR" "$SMALL" "$((SECONDS - T0))" "$WORK" <<'PY' ||
import json, os, sys
sys.path.insert(0, "bench")
steps_path, out, small, wall, work = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4]), sys.argv[5]
steps = [json.loads(l) for l in open(steps_path) if l.strip()]
env = {}
try:
    env = json.load(open(os.path.join(work, "env.json")))
except Exception:
    pass
s = {"small": small, "wall_s": wall, "env": env, "steps": steps,
     "counts": {k: sum(1 for x in steps if x["status"] == k) for k in ("ok", "skip", "fail")}}
json.dump(s, open(os.path.join(out, "summary.json"), "w"), indent=1)
import device_results
open(os.path.join(out, "results.md"), "w").write(device_results.markdown(s))
PY
    echo "device_check: writing the summary failed" | tee -a "$LOG"
}

# run_step NAME LIMIT_S: runs "$0 --step NAME" under timeout, records it
run_step() {
  local name=$1 limit=$2 left status reason rc t0 secs=
  left=$((BUDGET - (SECONDS - T0)))
  [ "$limit" -gt "$left" ] && limit=$left
  echo | tee -a "$LOG"
  if [ -n "${DFPO_CHECK_ONLY:-}" ] && ! [[ $name =~ ^(env|build|gpu|$DFPO_CHECK_ONLY)$ ]]; then
    status=skip reason="not selected by DFPO_CHECK_ONLY=$DFPO_CHECK_ONLY"
    rc=-1
    echo "== $name: skip ($reason)" | tee -a "$LOG"
  elif [ "$limit" -lt 10 ]; then
    status=skip reason="the run's budget of ${BUDGET}s is spent"
    rc=-1
    echo "== $name: skip ($reason)" | tee -a "$LOG"
  else
    echo "== $name (limit ${limit}s, $((SECONDS - T0))s into the run)" | tee -a "$LOG"
    t0=$(date +%s%N)
    STEP_LIMIT=$limit timeout -k 10 "$limit" "$SELF" --step "$name" >"$WORK/$name.txt" 2>&1
    rc=$?
    local secs
    secs=$((($(date +%s%N) - t0) / 1000000))
    secs=$((secs / 1000)).$(printf %03d $((secs % 1000)))
    local size
    size=$(stat -c %s "$WORK/$name.txt")
    if [ "$size" -gt 1048576 ]; then
      head -c 524288 "$WORK/$name.txt" >>"$LOG"
      echo "... ($size bytes; the middle left out) ..." >>"$LOG"
      tail -c 524288 "$WORK/$name.txt" >>"$LOG"
    else
      cat "$WORK/$name.txt" >>"$LOG"
    fi
    case $rc in
      0) status=ok reason= ;;
      77) status=skip reason=$(cat "$WORK/$name.why" 2>/dev/null) ;;
      124 | 137) status=fail reason="timed out after ${limit}s" ;;
      *) status=fail reason="exit $rc: $(grep -v '^\s*$' "$WORK/$name.txt" | tail -1 | cut -c1-300)" ;;
    esac
    echo "== $name: $status${reason:+ ($reason)} in ${secs}s" | tee -a "$LOG"
  fi
  "$PY" - "$WORK" "$name" "$status" "$reason" "${secs:-0}" "$limit" >>"$WORK/steps.jsonl" <<'PY'
import json, os, sys
work, name, status, reason, secs, limit = sys.argv[1:7]
r = {"name": name, "status": status, "s": round(float(secs), 2), "limit_s": int(limit)}
if reason:
    r["reason"] = reason
try:
    r["result"] = json.load(open(os.path.join(work, name + ".json")))
except Exception:
    pass
print(json.dumps(r))
PY
  write_summary
  [ "$status" = ok ]
}

load_env() { # KEY=VALUE lines of a step's .env file into the exported state
  [ -f "$1" ] || return 0
  while IFS='=' read -r k v; do
    case $k in
      DFPO_REAL | OPS_TEST | CTEST_DIR | GPU | DFPO_LD) printf -v "$k" '%s' "$v"; export "${k?}" ;;
    esac
  done <"$1"
}

run_step env 60
run_step build 240 && load_env "$WORK/build.env"
if run_step gpu 60; then
  load_env "$WORK/gpu.env"
  GPU_WHY=
else
  load_env "$WORK/gpu.env" # cuBLAS's folder is wanted even when the probe fails
  GPU_WHY=$(cat "$WORK/gpu.why" 2>/dev/null || echo "the gpu step failed")
fi
export GPU GPU_WHY
run_step cuda_tests 150
run_step memcheck 90
run_step crosscheck 180
run_step train_b16t64_fp32 60
run_step train_b16t64_tf32 60
run_step train_b16t64_bf16 60
run_step generate_fp32 90
run_step generate_tf32 90
run_step rl_ppo 90
run_step rl_dfpo 90
run_step reproduce 150
run_step judge 120
run_step train_b64t128_tf32 60
run_step train_b64t128_bf16 60
run_step generate_bf16 90
run_step train_b64t128_fp32 60
run_step profile 90

echo | tee -a "$LOG"
echo "device_check: done in $((SECONDS - T0))s; $OUTDIR/summary.json, $OUTDIR/results.md" | tee -a "$LOG"
"$PY" -c 'import json,sys; s=json.load(open(sys.argv[1])); print(s["counts"]); [print("  %-20s %-4s %s" % (x["name"], x["status"], x.get("reason", ""))) for x in s["steps"]]' \
  "$OUTDIR/summary.json" | tee -a "$LOG"
rm -rf "$WORK"
