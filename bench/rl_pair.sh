#!/usr/bin/env bash
# One RL iteration, dfpo against its PyTorch peer in the same run:
# `dfpo bench --what rl --algo A` and bench/rl_torch.py --algo A (Debian's
# python3-torch) on the same shape and batch, for PPO and DfPO, interleaved
# so that both see the same machine load. Prints each JSON line and a table
# of the parts with the ratios (PyTorch time / dfpo time).
#   bench/rl_pair.sh [SHAPE] [ITERATIONS] [DFPO_BINARY]
# SHAPE gpt2-124M (default; each side takes minutes a iteration on 2 cores)
# or gpt2-tiny (seconds: a check that both sides run).
set -euo pipefail
cd "$(dirname "$0")/.."
shape=${1:-gpt2-124M}
iters=${2:-1}
dfpo=${3:-build/harness/dfpo}
py=/usr/bin/python3
[ -x "$dfpo" ] || { echo "build first: $dfpo is missing" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
run() { # name, command...
  local name=$1; shift
  "$@" >"$out/$name.json" 2>"$out/$name.log" || { cat "$out/$name.log" >&2; exit 3; }
  cat "$out/$name.json"
}
for algo in ppo dfpo; do
  run dfpo-$algo "$dfpo" bench --what rl --algo $algo --shape "$shape" --steps "$iters" \
    --prompts 16 --prompt-len 64 --new 48
  run torch-$algo "$py" bench/rl_torch.py --algo $algo --shape "$shape" --iterations "$iters" \
    --prompts 16 --prompt-len 64 --new 48 --threads 2
done
"$py" - "$out" <<'PY'
import json, os, sys
d = sys.argv[1]
j = lambda n: json.load(open(os.path.join(d, n + ".json")))
print("\n| algorithm | part | dfpo s | PyTorch s | speed-up |")
print("|---|---|---|---|---|")
for algo in ("ppo", "dfpo"):
    a, b = j("dfpo-" + algo), j("torch-" + algo)
    for key, label in (("generate_s", "generation"), ("passes_s", "passes"),
                       ("scoring_s", "scoring"), ("update_s", "update"),
                       ("iteration_s", "whole iteration")):
        print("| %s | %s | %.2f | %.2f | %.2fx |" % (algo, label, a[key], b[key],
                                                     b[key] / a[key] if a[key] > 0 else 0))
    print("| %s | peak RSS | %.0f MiB | %.0f MiB | |" % (algo, a["peak_rss_mib"], b["peak_rss_mib"]))
PY
