#!/usr/bin/env bash
# Generation side by side, repeated: GPT-2 124M, 16 prompts of 64 tokens, 48
# new tokens (top-k 50), dfpo bench against its PyTorch peer
# (bench/gpt2_torch.py, Debian's python3-torch, 2 threads), in turn N times so
# that both see the same drift of a shared machine. With a second dfpo binary
# (an older build, say) it joins the rotation. Prints one line per run and,
# per binary, the median time and the median of the per-round ratios
# PyTorch / dfpo.
#   bench/gen_pairs.sh [N] [DFPO_BINARY] [SECOND_DFPO_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-3}
bins=("${2:-build/harness/dfpo}")
[ -n "${3:-}" ] && bins+=("$3")
py=/usr/bin/python3
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for ((r = 0; r < n; r++)); do
  for i in "${!bins[@]}"; do
    "${bins[$i]}" bench --shape gpt2-124M --what generate --prompts 16 --prompt-len 64 --new 48 \
      >"$out/dfpo$i-$r.json" 2>/dev/null
    echo "round $r dfpo[$i] $(cat "$out/dfpo$i-$r.json") load $(cut -d' ' -f1 /proc/loadavg)"
  done
  "$py" bench/gpt2_torch.py bench --shape gpt2-124M --gen-prompts 16 --gen-prompt-len 64 \
    --gen-new 48 --threads 2 >"$out/torch-$r.json" 2>/dev/null
  echo "round $r torch $(cat "$out/torch-$r.json") load $(cut -d' ' -f1 /proc/loadavg)"
done
"$py" - "$out" "$n" "${#bins[@]}" <<'PY'
import json, os, statistics, sys
d, n, nb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t = lambda name: json.load(open(os.path.join(d, name + ".json")))["gen_s"]
torch = [t("torch-%d" % r) for r in range(n)]
print("PyTorch: median %.2f s over %d runs" % (statistics.median(torch), n))
for i in range(nb):
    ours = [t("dfpo%d-%d" % (i, r)) for r in range(n)]
    ratios = [torch[r] / ours[r] for r in range(n)]
    print("dfpo[%d]: median %.2f s; PyTorch/dfpo per round %s, median %.2fx" % (
        i, statistics.median(ours), " ".join("%.2f" % x for x in ratios),
        statistics.median(ratios)))
PY
