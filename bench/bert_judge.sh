#!/usr/bin/env bash
# bench/bert_judge.sh [N] [BATCH]: scores N (default 5,000) IMDB texts with a
# distilbert-base-shaped classifier (random weights; bench/bert_peer.py make)
# by `dfpo judge score --model` and by PyTorch (bench/bert_peer.py score) in
# the same run, and prints both times, the ratio and the largest difference
# between their probabilities.
#
# The texts stand for what the paper's IMDB reward scores: a prompt of 64
# GPT-2 tokens and a continuation of 48. Without GPT-2's vocabulary here the
# cut is made in words: the first 84 words of each test review (about 0.75
# words per GPT-2 token on English prose). The vocabulary is the 30,522 most
# useful WordPiece entries for IMDB: the specials, the printable ASCII
# characters and the most frequent words of 20,000 training reviews.
# Needs `dfpo datasets import/prepare imdb` first (DFPO_HOME as for those).
# The folder is kept in $DFPO_BENCH_DIR (default /tmp/dfpo-bert-bench) and
# reused.
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-5000}"
batch="${2:-32}"
dfpo=build/harness/dfpo
[ -x "$dfpo" ] || { echo "build first: $dfpo is missing" >&2; exit 1; }
home="${DFPO_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/dfpo}"
splits="$home/datasets/imdb/1.0/splits"
[ -f "$splits/test.jsonl" ] || { echo "missing $splits/test.jsonl: run dfpo datasets import/prepare imdb" >&2; exit 1; }
dir="${DFPO_BENCH_DIR:-/tmp/dfpo-bert-bench}"
mkdir -p "$dir"
/usr/bin/python3 - "$splits" "$n" "$dir" <<'PY'
import json, sys
splits, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def reviews(name):
    with open(f"{splits}/{name}.jsonl") as f:
        for line in f:
            d = json.loads(line)
            yield " ".join((d["prompt"] + d["references"][0]).split())
with open(f"{out}/vocab_texts.txt", "w") as o:
    for i, r in enumerate(reviews("train")):
        if i == 20000:
            break
        o.write(r + "\n")
with open(f"{out}/texts.txt", "w") as o:
    for i, r in enumerate(reviews("test")):
        if i == n:
            break
        o.write(" ".join(r.split()[:84]) + "\n")
PY
model="$dir/distilbert-base"
[ -f "$model/model.safetensors" ] || /usr/bin/python3 bench/bert_peer.py make "$model" "$dir/vocab_texts.txt"
t0=$(date +%s.%N)
"$dfpo" judge score --model "$model" --input "$dir/texts.txt" >"$dir/dfpo.txt"
t1=$(date +%s.%N)
/usr/bin/python3 bench/bert_peer.py score "$model" "$dir/texts.txt" "$dir/peer.txt" --batch "$batch"
t2=$(date +%s.%N)
/usr/bin/python3 - "$dir/dfpo.txt" "$dir/peer.txt" "$t0" "$t1" "$t2" <<'PY'
import sys
a = [[float(x) for x in l.split()] for l in open(sys.argv[1])]
b = [[float(x) for x in l.split()] for l in open(sys.argv[2])]
t0, t1, t2 = map(float, sys.argv[3:6])
assert len(a) == len(b), (len(a), len(b))
d = max(abs(x - y) for p, q in zip(a, b) for x, y in zip(p, q))
print("texts %d  dfpo %.2f s  pytorch %.2f s  ratio %.2fx  max |diff| %.2e"
      % (len(a), t1 - t0, t2 - t1, (t2 - t1) / (t1 - t0), d))
PY
