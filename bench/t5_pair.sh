#!/usr/bin/env bash
# A T5 training step and greedy decoding, dfpo against its PyTorch peer in
# the same run: bench/t5_torch.py writes a T5 with random weights as a
# Hugging Face folder, which both sides load (the same weights); then, REPS
# times, interleaved so that both see the same machine load: `dfpo bench
# --model` and bench/t5_torch.py bench, a training step (forward, backward,
# AdamW; 16 rows of 20 source and 20 target tokens, the best of 2 steps after
# a warm-up) and greedy decoding of 20 new tokens for 64 prompts of 20
# tokens (the better of 2 runs). Both on OMP_NUM_THREADS=2 (PyTorch:
# torch.set_num_threads(2)). Checks that the weights are the same: the loss
# of PyTorch's first training batch under `dfpo perplexity --tokens`, and
# the greedy tokens of PyTorch's prompts under `dfpo generate --tokens
# --temperature 0 --eos -1`. Prints each JSON line, then a table of the
# medians with the ratio dfpo time / PyTorch time.
#   bench/t5_pair.sh [SHAPE] [REPS] [DFPO_BINARY]
# SHAPE t5-base (default; minutes a repetition on 2 cores) or t5-tiny
# (seconds: a check that both sides run).
set -euo pipefail
cd "$(dirname "$0")/.."
shape=${1:-t5-base}
reps=${2:-3}
dfpo=${3:-build/harness/dfpo}
py=/usr/bin/python3
[ -x "$dfpo" ] || { echo "build first: $dfpo is missing" >&2; exit 1; }
export OMP_NUM_THREADS=2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
run() { # name, command... (the load average before it into NAME.load)
  local name=$1; shift
  cut -d' ' -f1 /proc/loadavg >"$out/$name.load"
  "$@" >"$out/$name.json" 2>"$out/$name.log" || { cat "$out/$name.log" >&2; exit 3; }
  cat "$out/$name.json"
}
m=$out/model
"$py" bench/t5_torch.py write "$m" --shape "$shape"
train=(--what train --batch 16 --steps 2)
gen=(--what generate --prompts 64 --prompt-len 20 --new 20)
for r in $(seq 1 "$reps"); do
  extra_t=() extra_g=()
  [ "$r" = 1 ] && extra_t=(--pairs "$out/pairs.tsv") && extra_g=(--tokens "$out/greedy.jsonl")
  run dfpo-train-$r "$dfpo" bench --model "$m" "${train[@]}" --prompt-len 20 --seq 20
  run torch-train-$r "$py" bench/t5_torch.py bench "$m" "${train[@]}" --src-len 20 --tgt-len 20 \
    --threads 2 "${extra_t[@]}"
  run dfpo-gen-$r "$dfpo" bench --model "$m" "${gen[@]}" --greedy
  run torch-gen-$r "$py" bench/t5_torch.py bench "$m" "${gen[@]}" --threads 2 "${extra_g[@]}"
done
# the same weights: PyTorch's first batch and its greedy tokens under dfpo
"$dfpo" perplexity --model "$m" --tokens "$out/pairs.tsv" --json >"$out/ppl.json"
"$py" -c 'import json, sys
for l in open(sys.argv[1]):
    print(" ".join(map(str, json.loads(l)["prompt"])))' "$out/greedy.jsonl" >"$out/prompts.txt"
"$dfpo" generate --model "$m" --tokens "$out/prompts.txt" --temperature 0 --max-new 20 --eos -1 \
  >"$out/dfpo-greedy.jsonl"
"$py" - "$out" "$reps" <<'PY'
import json, os, statistics, sys
d, reps = sys.argv[1], int(sys.argv[2])
j = lambda n: json.load(open(os.path.join(d, n + ".json")))
load = lambda n: float(open(os.path.join(d, n + ".load")).read())
print("\n| what | dfpo s: median (runs) | PyTorch s: median (runs) | dfpo / PyTorch |")
print("|---|---|---|---|")
for what, key, label in (("train", "step_s", "training step"), ("train", "step_cpu_s", "training step, CPU s"),
                         ("gen", "gen_s", "greedy decoding"), ("gen", "gen_cpu_s", "greedy decoding, CPU s")):
    a = [j("dfpo-%s-%d" % (what, r))[key] for r in range(1, reps + 1)]
    b = [j("torch-%s-%d" % (what, r))[key] for r in range(1, reps + 1)]
    ma, mb = statistics.median(a), statistics.median(b)
    print("| %s | %.2f (%s) | %.2f (%s) | %.3f |" % (label, ma, ", ".join("%.2f" % x for x in a), mb,
                                                    ", ".join("%.2f" % x for x in b), ma / mb))
for side in ("dfpo", "torch"):
    print("load average before each %s run: %s" % (side, ", ".join(
        "%.1f" % load("%s-%s-%d" % (side, w, r)) for r in range(1, reps + 1) for w in ("train", "gen"))))
for what in ("train", "gen"):
    print("peak RSS %s: dfpo %.0f MiB, PyTorch %.0f MiB" % (
        what, j("dfpo-%s-1" % what)["peak_rss_mib"], j("torch-%s-1" % what)["peak_rss_mib"]))
ppl = j("ppl")
tl = j("torch-train-1")["loss"]
print("loss of PyTorch's first batch: PyTorch %.6f, dfpo perplexity %.6f (relative difference %.2g)"
      % (tl, ppl["nll_per_token"], abs(ppl["nll_per_token"] - tl) / tl))
want = [json.loads(l)["tokens"] for l in open(os.path.join(d, "greedy.jsonl"))]
got = [json.loads(l)["tokens"] for l in open(os.path.join(d, "dfpo-greedy.jsonl"))]
same = sum(a == b for a, b in zip(want, got))
first = [next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), len(a)) for a, b in zip(want, got)]
print("greedy tokens: %d of %d rows identical; the first difference at token %s" % (
    same, len(want), min(first) if same < len(want) else "none"))
PY
