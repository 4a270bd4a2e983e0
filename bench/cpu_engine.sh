#!/usr/bin/env bash
# The CPU engine benchmark of docs/benchmarks.md: dfpo bench and its PyTorch
# peer (bench/gpt2_torch.py, Debian's python3-torch) on the same shapes,
# interleaved so that both see the same machine load. Prints each JSON line
# and a summary with the ratios (PyTorch time / dfpo time, and peak RSS).
#   bench/cpu_engine.sh [SHAPE] [DFPO_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
shape=${1:-gpt2-124M}
dfpo=${2:-build/harness/dfpo}
py=/usr/bin/python3
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
run() { # name, command...
  local name=$1; shift
  "$@" >"$out/$name.json" 2>"$out/$name.log" || { cat "$out/$name.log" >&2; exit 3; }
  cat "$out/$name.json"
}
for b in 4 16; do
  run dfpo-train-$b "$dfpo" bench --shape "$shape" --batch $b --seq 64 --steps 3
  run torch-train-$b "$py" bench/gpt2_torch.py bench --shape "$shape" --batch $b --seq 64 --steps 3 --threads 2
done
run dfpo-gen "$dfpo" bench --shape "$shape" --what generate --prompts 16 --prompt-len 64 --new 48
run torch-gen "$py" bench/gpt2_torch.py bench --shape "$shape" --gen-prompts 16 --gen-prompt-len 64 --gen-new 48 --threads 2
"$py" - "$out" <<'PY'
import json, sys, os
d = sys.argv[1]
j = lambda n: json.load(open(os.path.join(d, n + ".json")))
print("\n| measurement | dfpo | PyTorch | speed-up | dfpo peak RSS | PyTorch peak RSS |")
print("|---|---|---|---|---|---|")
for name, key, label in (("train-4", "step_s", "training step B=4 T=64"),
                         ("train-16", "step_s", "training step B=16 T=64"),
                         ("gen", "gen_s", "generation 16 x (64 + 48), top-k 50")):
    a, b = j("dfpo-" + name), j("torch-" + name)
    print("| %s | %.2f s | %.2f s | %.2fx | %.0f MiB | %.0f MiB |" % (
        label, a[key], b[key], b[key] / a[key], a["peak_rss_mib"], b["peak_rss_mib"]))
PY
