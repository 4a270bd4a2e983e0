#!/usr/bin/env python3
"""Confidence-interval table of a suite folder (docs/algorithms.md's DfPO
ablation): for every variant of one task, the mean over seeds and its 95%
Student t interval of the test metrics in eval.json (reward, NLL/word, OOV
rate, ppl_ref) and of two training KL figures from train.jsonl (kl_token,
the exact per-token KL(pi_old || pi_ref) of each iteration's rollouts: its
mean over the iterations and its peak); then each variant's difference from
a reference row with Welch's 95% interval and two-sided p-value.

`dfpo report` gives mean +- sd and plots with 95% t bands; this adds the
intervals as numbers and the training KL. Standard library only: the t
distribution through the regularised incomplete beta function.

Usage: reports/ci_table.py SUITE_DIR TASK [--ref dfpo] > table.md
"""
import argparse
import json
import math
import os
import sys


def betacf(a, b, x):
    """Continued fraction of the incomplete beta (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((a + m2 - 1.0) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def betainc(a, b, x):
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    lb = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    front = math.exp(lb + a * math.log(x) + b * math.log(1 - x))
    if x < (a + 1) / (a + b + 2):
        return front * betacf(a, b, x) / a
    return 1.0 - front * betacf(b, a, 1 - x) / b


def t_two_sided_p(t, df):
    """P(|T| >= |t|) for Student's t with df degrees of freedom."""
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def t_quantile_975(df):
    """The 0.975 quantile of Student's t (bisection on the p-value)."""
    lo, hi = 0.0, 1000.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_two_sided_p(mid, df) > 0.05:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def mean_sd(xs):
    n = len(xs)
    m = sum(xs) / n
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1)) if n > 1 else float("nan")
    return m, sd


def ci(xs):
    m, sd = mean_sd(xs)
    if len(xs) < 2:
        return m, float("nan")
    return m, t_quantile_975(len(xs) - 1) * sd / math.sqrt(len(xs))


def welch(a, b):
    """Difference of means a - b, its Welch 95% half-width and p-value."""
    ma, sa = mean_sd(a)
    mb, sb = mean_sd(b)
    va, vb = sa * sa / len(a), sb * sb / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return ma - mb, 0.0, 1.0 if ma == mb else 0.0
    df = (va + vb) ** 2 / (va * va / (len(a) - 1) + vb * vb / (len(b) - 1))
    t = (ma - mb) / se
    return ma - mb, t_quantile_975(df) * se, t_two_sided_p(t, df)


METRICS = [  # key, label, better (+1 higher, -1 lower), digits
    ("reward", "Reward", 1, 3),
    ("nll_word", "NLL/word", -1, 2),
    ("oov_rate", "OOV rate", -1, 3),
    ("ppl_ref", "ppl_ref", -1, 1),
    ("kl_mean", "KL mean", -1, 3),
    ("kl_peak", "KL peak", -1, 3),
]


def read_cell(path):
    with open(os.path.join(path, "eval.json")) as f:
        ev = json.load(f)["metrics"]
    kl = []
    tj = os.path.join(path, "train.jsonl")
    with open(tj) if os.path.exists(tj) else open(os.devnull) as f:
        for line in f:
            row = json.loads(line)
            if isinstance(row.get("kl_token"), (int, float)):
                kl.append(row["kl_token"])
    out = {k: ev.get(k) for k in ("reward", "nll_word", "oov_rate", "ppl_ref")}
    out["kl_mean"] = sum(kl) / len(kl) if kl else None
    out["kl_peak"] = max(kl) if kl else None
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("suite_dir")
    ap.add_argument("task")
    ap.add_argument("--ref", default="dfpo")
    args = ap.parse_args()
    with open(os.path.join(args.suite_dir, "suite.json")) as f:
        order = json.load(f)["suite"]["algos"]
    tdir = os.path.join(args.suite_dir, args.task)
    data = {}
    for v in order:
        vdir = os.path.join(tdir, v)
        if not os.path.isdir(vdir):
            continue
        cells = []
        for s in sorted(os.listdir(vdir)):
            p = os.path.join(vdir, s)
            if s.startswith("seed-") and os.path.exists(os.path.join(p, "DONE")):
                cells.append(read_cell(p))
        if cells:
            data[v] = cells

    def col(v, k):
        return [c[k] for c in data[v] if isinstance(c[k], (int, float))]

    with open(os.path.join(args.suite_dir, "suite.json")) as f:
        name = json.load(f)["suite"]["name"]
    w = sys.stdout.write
    w(f"### {args.task}: suite {name}, means with 95% intervals over seeds "
      f"(`reports/ci_table.py`)\n\n")
    w("| | " + " | ".join(m[1] for m in METRICS) + " | n |\n")
    w("|---" * (len(METRICS) + 2) + "|\n")
    for v in data:
        cells = []
        for k, _, _, d in METRICS:
            xs = col(v, k)
            if not xs:
                cells.append("-")
                continue
            m, h = ci(xs)
            cells.append(f"{m:.{d}f} ± {h:.{d}f}" if not math.isnan(h) else f"{m:.{d}f}")
        w(f"| {v} | " + " | ".join(cells) + f" | {len(data[v])} |\n")
    w("\nMean ± half-width of the 95% Student t interval over seeds; n = seeds. "
      "Test metrics of the checkpoint with the best validation reward (eval.json); "
      "KL mean and KL peak: the mean and the largest over the training iterations "
      "of the rollouts' exact per-token KL(pi_old || pi_ref) (train.jsonl's kl_token), "
      "none for zero-shot.\n")
    if args.ref not in data:
        return
    w(f"\nDifference from `{args.ref}` (variant minus {args.ref}), Welch's 95% interval; "
      "bold: p < 0.05 (two-sided, no correction for multiple comparisons); "
      "+/- after it: better/worse by the column's direction.\n\n")
    w("| | " + " | ".join(m[1] for m in METRICS) + " |\n")
    w("|---" * (len(METRICS) + 1) + "|\n")
    for v in data:
        if v == args.ref:
            continue
        cells = []
        for k, _, better, d in METRICS:
            a, b = col(v, k), col(args.ref, k)
            if len(a) < 2 or len(b) < 2:
                cells.append("-")
                continue
            diff, h, p = welch(a, b)
            s = f"{diff:+.{d}f} ± {h:.{d}f}"
            if p < 0.05:
                s = f"**{s}** {'+' if diff * better > 0 else '-'}"
            cells.append(s)
        w(f"| {v} | " + " | ".join(cells) + " |\n")


if __name__ == "__main__":
    main()
