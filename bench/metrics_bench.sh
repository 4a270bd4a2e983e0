#!/usr/bin/env bash
# bench/metrics_bench.sh [DATA_DIR]: all CommonGen metrics on the dev set
# (993 concept sets; the first scene of each as the prediction, the other
# scenes as references), by `dfpo metrics` and by its Python peer
# (bench/metrics_reference.py: NLTK 3.8's METEOR, the other metrics
# transcribed from their definitions), on the same pre-tokenized input. Prints
# both results side by side, the largest difference, and the wall times.
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-../shared/data}/commongen/commongen.dev.jsonl"
dfpo=build/harness/dfpo
[ -x "$dfpo" ] || { echo "build first: $dfpo is missing" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Tokenized input (lowercase words, digits, inner ' and -), so that both sides
# read the same tokens (dfpo with --tokenize none).
/usr/bin/python3 - "$data" "$tmp" <<'PY'
import json, re, sys
src, out = sys.argv[1], sys.argv[2]
tok = lambda s: " ".join(re.findall(r"[a-z0-9]+(?:['-][a-z0-9]+)*", s.lower()))
with open(out + "/pred.txt", "w") as p, open(out + "/refs.jsonl", "w") as r:
    for line in open(src):
        d = json.loads(line)
        p.write(tok(d["scene"][0]) + "\n")
        r.write(json.dumps({"concept_set": d["concept_set"],
                            "scene": [tok(s) for s in d["scene"][1:]]}) + "\n")
PY
run_dfpo() { "$dfpo" metrics --task commongen --pred "$tmp/pred.txt" --refs "$tmp/refs.jsonl" --tokenize none --json; }
run_dfpo >/dev/null # warm the page cache (WordNet files) for both sides
start=$(date +%s.%N)
run_dfpo >"$tmp/dfpo.json"
end=$(date +%s.%N)
cpu=$( { /usr/bin/time -f "%U %S" "$dfpo" metrics --task commongen --pred "$tmp/pred.txt" \
         --refs "$tmp/refs.jsonl" --tokenize none --json >/dev/null; } 2>&1 | tail -1)
/usr/bin/python3 bench/metrics_reference.py "$tmp/pred.txt" "$tmp/refs.jsonl" >"$tmp/peer.json" 2>/dev/null
/usr/bin/python3 - "$tmp/dfpo.json" "$tmp/peer.json" "$start" "$end" "$cpu" <<'PY'
import json, sys
d, p = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
t_dfpo = float(sys.argv[4]) - float(sys.argv[3])
flat = lambda o: {**{k: v for k, v in o.items() if not isinstance(v, dict)}, **o.get("diversity", {})}
fd, fp = flat(d), flat(p)
worst = 0.0
print("%-18s %14s %14s" % ("metric", "dfpo", "python peer"))
for k in fp:
    if k in ("seconds",) or k not in fd:
        continue
    a, b = fd[k], fp[k]
    print("%-18s %14.9f %14.9f" % (k, a, b))
    worst = max(worst, abs(a - b))
print("largest difference: %.3g" % worst)
s = p["seconds"]
print("wall time, all CommonGen metrics: dfpo %.3f s, python peer %.2f s (ratio %.0fx)" %
      (t_dfpo, s["total"], s["total"] / t_dfpo))
print("dfpo CPU time (user + sys, another run): %.3f s" % sum(map(float, sys.argv[5].split())))
print("peer per metric (s): " + ", ".join("%s %.2f" % (k, v) for k, v in s.items() if k != "total"))
PY
