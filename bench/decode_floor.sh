#!/usr/bin/env bash
# Decoding against its floors (docs/benchmarks.md, "Decoding against its
# floors"): the time of one KV-cache decoding step of dfpo's GPT-2 for
# PROMPTS rows, from two generations that differ only in their new tokens,
# (t(1 + N) - t(1)) / N, so the prompt pass and the first step drop out;
# against the memory floor (the bytes a step must read, every weight once
# and the KV cache, over the read bandwidth bench/membw.c measures) and the
# compute floor (the step's multiply-adds over the sgemm ceiling
# bench/ceiling.c measures with the CPU's own kernels).
#   bench/decode_floor.sh [SHAPE] [PROMPTS] [NEW] [DFPO_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
shape=${1:-gpt2-124M}
prompts=${2:-16}
new=${3:-48}
dfpo=${4:-build/harness/dfpo}
plen=64
py=/usr/bin/python3
[ -x "$dfpo" ] || { echo "build first: $dfpo is missing" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cc -O2 -march=native -fopenmp -std=c11 bench/membw.c -o "$tmp/membw"
cc -O2 -std=c11 bench/ceiling.c -o "$tmp/ceiling" $(pkg-config --cflags --libs openblas)
"$tmp/membw" 2048 5 | tee "$tmp/bw.json"
env -u OPENBLAS_CORETYPE OPENBLAS_NUM_THREADS="$(nproc)" "$tmp/ceiling" 4096 3 | tee "$tmp/ceil.json"
for rep in 1 2 3; do
  "$dfpo" bench --shape "$shape" --what generate --prompts "$prompts" --prompt-len $plen --new 1 \
    | tee -a "$tmp/g1.jsonl"
  "$dfpo" bench --shape "$shape" --what generate --prompts "$prompts" --prompt-len $plen \
    --new $((1 + new)) | tee -a "$tmp/gn.jsonl"
done
"$py" - "$tmp" "$shape" "$prompts" "$new" "$plen" <<'PY'
import json, os, sys
d, shape, B, N, P = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
shapes = {"gpt2-124M": (12, 768), "gpt2-350M": (24, 1024), "gpt2-774M": (36, 1280),
          "gpt2-1558M": (48, 1600), "gpt2-tiny": (2, 64)}
L, C = shapes[shape]
V = 50257
bw = json.load(open(os.path.join(d, "bw.json")))["gb_per_s"] * 1e9
ceil = json.load(open(os.path.join(d, "ceil.json")))["gflops"] * 1e9
rd = lambda n: [json.loads(l)["gen_s"] for l in open(os.path.join(d, n))]
g1, gn = sorted(rd("g1.jsonl")), sorted(rd("gn.jsonl"))
step = (gn[len(gn) // 2] - g1[len(g1) // 2]) / N
mat = L * 12 * C * C           # the blocks' matrices: qkv 3C^2, proj C^2, fc 4C^2, fc_proj 4C^2
other = L * 13 * C             # biases and LayerNorms
head = V * C                   # the tied LM head (wte)
avg_len = P + 1 + (N + 1) / 2  # cache rows a step reads, on average
kv = L * 2 * B * avg_len * C * 4
weights = (mat + other + head) * 4
mem_floor = (weights + kv) / bw
flops = 2 * B * (mat + head) + L * 4 * B * avg_len * C
comp_floor = flops / ceil
print("\n| quantity | value |")
print("|---|---|")
print("| read bandwidth | %.1f GB/s |" % (bw / 1e9))
print("| sgemm ceiling (CPU's own kernels) | %.1f GFLOP/s |" % (ceil / 1e9))
print("| generation, 1 new token (median of %d) | %.3f s |" % (len(g1), g1[len(g1) // 2]))
print("| generation, %d new tokens (median of %d) | %.3f s |" % (1 + N, len(gn), gn[len(gn) // 2]))
print("| one decoding step, %d rows | %.2f ms |" % (B, step * 1e3))
print("| bytes a step reads: weights + KV cache | %.0f + %.0f MB |" % (weights / 1e6, kv / 1e6))
print("| memory floor | %.2f ms (step / floor %.2fx) |" % (mem_floor * 1e3, step / mem_floor))
print("| multiply-adds a step | %.2f GFLOP |" % (flops / 1e9))
print("| compute floor | %.2f ms (step / floor %.2fx) |" % (comp_floor * 1e3, step / comp_floor))
PY
