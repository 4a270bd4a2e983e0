#!/usr/bin/env bash
# bench/judge_bench.sh [N]: scores N (default 5,000) IMDB texts (prompt plus
# reference continuation of the test split) with the trained sentiment judge,
# by `dfpo judge score` and by its Python peer (bench/judge_peer.py, the same
# model re-implemented from docs/judges.md), and reports both wall times, the
# ratio and the largest score difference. Needs `dfpo datasets prepare imdb`
# and `dfpo judge train sentiment` first (DFPO_HOME as for those).
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-5000}"
dfpo=build/harness/dfpo
[ -x "$dfpo" ] || { echo "build first: $dfpo is missing" >&2; exit 1; }
home="${DFPO_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/dfpo}"
split="$home/datasets/imdb/1.0/splits/test.jsonl"
judge="$home/judges/sentiment"
[ -f "$split" ] || { echo "missing $split: run dfpo datasets import/prepare imdb" >&2; exit 1; }
[ -f "$judge/judge.bin" ] || { echo "missing $judge: run dfpo judge train sentiment" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 - "$split" "$n" "$tmp/texts.txt" <<'PY'
import json, sys
src, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(src) as f, open(out, "w") as o:
    for i, line in enumerate(f):
        if i == n:
            break
        d = json.loads(line)
        o.write((d["prompt"] + d["references"][0]).replace("\n", " ") + "\n")
PY
t0=$(date +%s.%N)
"$dfpo" judge score sentiment --input "$tmp/texts.txt" >"$tmp/dfpo.txt" 2>/dev/null
t1=$(date +%s.%N)
/usr/bin/python3 bench/judge_peer.py "$judge" "$tmp/texts.txt" >"$tmp/peer.txt"
t2=$(date +%s.%N)
/usr/bin/python3 - "$tmp/dfpo.txt" "$tmp/peer.txt" "$t0" "$t1" "$t2" <<'PY'
import sys
a = [float(x) for x in open(sys.argv[1])]
b = [float(x) for x in open(sys.argv[2])]
t0, t1, t2 = map(float, sys.argv[3:6])
assert len(a) == len(b), (len(a), len(b))
print("texts %d  dfpo %.3f s  python peer %.3f s  ratio %.1fx  max |diff| %.2e"
      % (len(a), t1 - t0, t2 - t1, (t2 - t1) / (t1 - t0), max(abs(x - y) for x, y in zip(a, b))))
PY
