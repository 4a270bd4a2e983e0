#!/usr/bin/python3
"""How often `dfpo check` finds a planted regression, and how often it fails
an unchanged build, over many simulated reruns of real results
(docs/suites.md, "dfpo check: measured power").

The pool is a results.json with many seeds of one suite (by default
tests/fixtures/check/smoke-30-seeds.json, the smoke suite with 30 seeds).
Each round draws a baseline of --baseline-seeds seeds and, from the seeds
left, a rerun of --rerun-seeds: new seeds, as a rerun of an unchanged build
gives. The baseline keeps the "check" section (claims, floors) of --spec.
For every planted size k > 0 the round plants k seed sds (the sample sd
over the whole pool) into one comparison drawn at random among those with a
spread, in the metric's worse direction, and asks whether that comparison is
flagged "regressed"; for k = 0 it asks whether anything fails (a comparison
or a claim): a false alarm. Every check is the real command, `dfpo check
--json`.

    bench/check_power.py --dfpo build/harness/dfpo --rounds 400

Python's standard library only (no numpy here); the draws come from
random.Random(--seed), so a run is repeatable.
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the metric tables' directions for the suites' metrics: +1 higher is better
BETTER = {"reward": 1, "sentiment": 1, "nll_word": -1, "oov_rate": -1, "ppl_ref": -1,
          "ppl_gen": -1, "toxicity": -1}


def subset(pool, seeds):
    """The pool's results restricted to the given seeds (every variant)."""
    out = {"suite": pool["suite"], "tasks": []}
    for t in pool["tasks"]:
        nt = {"task": t["task"], "variants": []}
        for v in t["variants"]:
            idx = [i for i, s in enumerate(v["seeds"]) if s in seeds]
            nt["variants"].append({
                "variant": v["variant"], "algo": v["algo"],
                "seeds": [v["seeds"][i] for i in idx],
                "metrics": {m: [a[i] for i in idx] for m, a in v["metrics"].items()},
                "missing": []})
        out["tasks"].append(nt)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dfpo", default=os.path.join(ROOT, "build/harness/dfpo"))
    ap.add_argument("--pool", default=os.path.join(ROOT, "tests/fixtures/check/smoke-30-seeds.json"))
    ap.add_argument("--spec", default=os.path.join(ROOT, "configs/baselines/smoke.json"),
                    help="the baseline whose \"check\" section the drawn baselines get")
    ap.add_argument("--baseline-seeds", type=int, default=20)
    ap.add_argument("--rerun-seeds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=400)
    ap.add_argument("--sizes", default="0,1,2,3,5", help="planted sizes in seed sds (0: none)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    pool = json.load(open(a.pool))
    spec = json.load(open(a.spec)).get("check")
    seeds = sorted({s for t in pool["tasks"] for v in t["variants"] for s in v["seeds"]})
    if a.baseline_seeds + a.rerun_seeds > len(seeds):
        sys.exit(f"the pool has {len(seeds)} seeds, fewer than {a.baseline_seeds} + "
                 f"{a.rerun_seeds}")
    # the comparisons with a spread, and their sd over the pool
    targets = []
    for t in pool["tasks"]:
        for v in t["variants"]:
            for m, vals in v["metrics"].items():
                x = [y for y in vals if y is not None]
                if len(x) > 1 and statistics.stdev(x) > 0 and m in BETTER:
                    targets.append((t["task"], v["variant"], m, statistics.stdev(x)))
    sizes = [float(s) for s in a.sizes.split(",")]
    rng = random.Random(a.seed)
    found = {k: 0 for k in sizes}
    alarms = comparison_alarms = comparisons = claim_fails = 0
    tol, det = [], []
    tmp = tempfile.mkdtemp(prefix="check-power-")
    bpath, rpath = os.path.join(tmp, "baseline.json"), os.path.join(tmp, "rerun.json")
    for _ in range(a.rounds):
        drawn = rng.sample(seeds, a.baseline_seeds + a.rerun_seeds)
        b = subset(pool, set(drawn[:a.baseline_seeds]))
        if spec:
            b["check"] = spec
        json.dump(b, open(bpath, "w"))
        rerun_seeds = set(drawn[a.baseline_seeds:])
        for k in sizes:
            r = subset(pool, rerun_seeds)
            target = None
            if k > 0:
                target = rng.choice(targets)
                task, var, met, sd = target
                for t in r["tasks"]:
                    for v in t["variants"]:
                        if t["task"] == task and v["variant"] == var:
                            v["metrics"][met] = [y - BETTER[met] * k * sd for y in v["metrics"][met]]
            json.dump(r, open(rpath, "w"))
            p = subprocess.run([a.dfpo, "check", "--baseline", bpath, "--json", rpath],
                               capture_output=True, text=True)
            if p.returncode not in (0, 4):
                sys.exit(f"dfpo check exited {p.returncode}: {p.stderr}")
            o = json.loads(p.stdout)
            if k == 0:
                alarms += p.returncode != 0
                for c in o["comparisons"]:
                    comparisons += 1
                    comparison_alarms += c["verdict"] == "regressed"
                    if c["tolerance"] is not None and not c["sd_floored"]:
                        tol.append(c["tolerance"] / c["pooled_sd"])
                        det.append(c["detectable"] / c["pooled_sd"])
                claim_fails += sum(c["status"] == "FAILS" for c in o["claims"])
            else:
                for c in o["comparisons"]:
                    if (c["task"], c["variant"], c["metric"]) == target[:3]:
                        found[k] += c["verdict"] == "regressed"
    n = a.rounds
    print(f"pool {os.path.relpath(a.pool, ROOT)}: {len(seeds)} seeds; baseline "
          f"{a.baseline_seeds} seeds, rerun {a.rerun_seeds} new seeds; {n} rounds "
          f"(random.Random({a.seed}))")
    for k in sizes:
        if k > 0:
            print(f"  planted {k:g} sd: found in {found[k]} of {n} ({100 * found[k] / n:.1f}%)")
    if 0 in sizes:
        print(f"  unplanted: the check failed in {alarms} of {n} reruns "
              f"({100 * alarms / n:.1f}%); {comparison_alarms} of {comparisons} comparisons "
              f"flagged ({100 * comparison_alarms / max(comparisons, 1):.2f}%); "
              f"{claim_fails} claim failures")
        if tol:
            print(f"  tolerance {statistics.median(tol):.2f} pooled sd (median), detectable at "
                  f"the baseline's power {statistics.median(det):.2f} sd")


if __name__ == "__main__":
    main()
