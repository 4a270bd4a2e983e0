#!/usr/bin/python3
"""Welch's t-test by its formulas, the p-value from mpmath's regularized
incomplete beta: the reference for the hand-checked report table in
test_reproduce.c (scipy is not installed here)."""
import math
import statistics as st

import mpmath


def welch(a, b):
    ma, mb = st.mean(a), st.mean(b)
    va, vb = st.variance(a), st.variance(b)
    na, nb = len(a), len(b)
    se2 = va / na + vb / nb
    t = (ma - mb) / math.sqrt(se2)
    df = se2 ** 2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))
    p = mpmath.betainc(df / 2, 0.5, 0, df / (df + t * t), regularized=True)
    return t, df, float(p)


for name, a, b in [("reward", [0.5, 0.5, 0.8], [0.6, 0.7, 0.8]),
                   ("nll_word", [6.0, 6.2, 6.4], [4.0, 4.1, 4.2]),
                   ("oov_rate", [0.02, 0.03, 0.04], [0.01, 0.01, 0.04])]:
    t, df, p = welch(a, b)
    print(f"{name}: ppo {st.mean(a):.3f} ± {st.stdev(a):.3f}, dfpo {st.mean(b):.3f} ± "
          f"{st.stdev(b):.3f}, t = {t:.3f}, df = {df:.2f}, p = {p:.5f}")
