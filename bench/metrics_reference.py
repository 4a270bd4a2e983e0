#!/usr/bin/python3
"""The CommonGen metrics in plain Python: the peer of `dfpo metrics`.

Usage: metrics_reference.py PRED.txt REFS.jsonl [WORDNET_DIR]

Input as `dfpo metrics --tokenize none` reads it: PRED.txt one tokenized
prediction per line, REFS.jsonl with "scene" (tokenized references) and
"concept_set". Prints the same JSON keys as `dfpo metrics --json` plus
"seconds" (wall time of each metric).

BLEU, ROUGE-L and CIDEr-D (pycocoevalcap), ROUGE-N/L (rouge-score), the 13a
tokenizer and sacreBLEU's BLEU and the diversity block (gem-metrics) are
written here from the published definitions (docs/metrics.md), not copied;
METEOR is NLTK 3.8's own meteor_score and the stemmer NLTK's PorterStemmer,
with NLTK's WordNet reader over Debian's WordNet files.
"""
import json
import math
import os
import re
import sys
import tempfile
import time
from collections import Counter

from nltk.corpus.reader.wordnet import WordNetCorpusReader
from nltk.stem.porter import PorterStemmer
from nltk.translate.meteor_score import meteor_score

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "metrics"))


def ngrams(toks, n):
    return Counter(tuple(toks[i:i + n]) for i in range(len(toks) - n + 1))


def all_ngrams(toks):
    c = Counter()
    for n in range(1, 5):
        c.update(ngrams(toks, n))
    return c


def closest(lens, c):
    return min(lens, key=lambda l: (abs(l - c), l))


def bleu_coco(hyps, refss):
    M, G, C, R = [0] * 4, [0] * 4, 0, 0
    for h, refs in zip(hyps, refss):
        maxc = Counter()
        for r in refs:
            for g, k in all_ngrams(r).items():
                maxc[g] = max(maxc[g], k)
        for g, k in all_ngrams(h).items():
            M[len(g) - 1] += min(k, maxc[g])
        for n in range(4):
            G[n] += max(0, len(h) - n)
        C += len(h)
        R += closest([len(r) for r in refs], len(h))
    out, ratio = [], (C + 1e-15) / (R + 1e-9)
    for N in range(1, 5):
        b = 1.0
        for n in range(N):
            b *= (M[n] + 1e-15) / (G[n] + 1e-9)
        b = b ** (1.0 / N)
        out.append(b * math.exp(1 - 1 / ratio) if ratio < 1 else b)
    return out


PUNCT13A = set("{|}~[\\]^_`" + " !\"#$%&" + "()*+" + ":;<=>?@" + "/")


def tok13a(s):
    s = s.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in s:
        for a, b in (("&quot;", '"'), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">")):
            s = s.replace(a, b)
    s = " " + s + " "
    s = "".join(" %s " % ch if ch in PUNCT13A else ch for ch in s)
    s = re.sub(r"([^0-9])([\.,])", r"\1 \2 ", s)
    s = re.sub(r"([\.,])([^0-9])", r" \1 \2", s)
    s = re.sub(r"([0-9])(-)", r"\1 \2 ", s)
    return s.split()


def sacrebleu(hyps, refss):
    correct, total, sys_len, ref_len = [0] * 4, [0] * 4, 0, 0
    for h, refs in zip(hyps, refss):
        h = tok13a(h)
        refs = [tok13a(r) for r in refs]
        maxc = Counter()
        for r in refs:
            for g, k in all_ngrams(r).items():
                maxc[g] = max(maxc[g], k)
        for g, k in all_ngrams(h).items():
            correct[len(g) - 1] += min(k, maxc[g])
            total[len(g) - 1] += k
        sys_len += len(h)
        ref_len += closest([len(r) for r in refs], len(h))
    if not any(correct) or sys_len == 0:
        return 0.0
    prec, smooth = [0.0] * 4, 1.0
    for n in range(4):
        if total[n] == 0:
            break
        if correct[n] == 0:
            smooth *= 2
            prec[n] = 100.0 / (smooth * total[n])
        else:
            prec[n] = 100.0 * correct[n] / total[n]
    bp = math.exp(1 - ref_len / sys_len) if sys_len < ref_len else 1.0
    return bp * math.exp(sum(math.log(p) if p > 0 else -9999999999 for p in prec) / 4)


def lcs(a, b):
    row = [0] * (len(b) + 1)
    for x in a:
        diag = 0
        for j, y in enumerate(b, 1):
            up = row[j]
            row[j] = diag + 1 if x == y else max(row[j], row[j - 1])
            diag = up
    return row[-1]


def rouge_l_coco(hyps, refss):
    tot = 0.0
    for h, refs in zip(hyps, refss):
        p = max(lcs(r, h) / max(len(h), 1) for r in refs)
        r_ = max(lcs(r, h) / max(len(r), 1) for r in refs)
        tot += (1 + 1.44) * p * r_ / (r_ + 1.44 * p) if p and r_ else 0.0
    return tot / len(hyps)


def fm(p, r):
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def rouge_score(hyps, refss, stemmer):
    def tok(s):
        t = re.sub(r"[^a-z0-9]+", " ", s.lower()).split()
        return [stemmer.stem(x) if stemmer and len(x) > 3 else x for x in t]

    sums = [0.0, 0.0, 0.0]
    for h, refs in zip(hyps, refss):
        ph = tok(h)
        best = None
        for r in refs:
            pr = tok(r)
            s = []
            for n in (1, 2):
                a, b = ngrams(pr, n), ngrams(ph, n)
                ov = sum(min(k, b[g]) for g, k in a.items())
                s.append(fm(ov / max(sum(b.values()), 1), ov / max(sum(a.values()), 1)))
            l_ = lcs(pr, ph) if pr and ph else 0
            s.append(fm(l_ / len(ph), l_ / len(pr)) if pr and ph else 0.0)
            best = s if best is None else [max(x, y) for x, y in zip(best, s)]
        sums = [x + y for x, y in zip(sums, best)]
    return [x / len(hyps) for x in sums]


def cider_d(hyps, refss):
    df = Counter()
    for refs in refss:
        df.update(set(g for r in refs for g in all_ngrams(r)))
    ref_len = math.log(len(refss))

    def vec(toks):
        v, norm, length = {}, [0.0] * 4, 0
        for g, tf in all_ngrams(toks).items():
            w = tf * (ref_len - math.log(max(1.0, df[g])))
            v[g] = w
            norm[len(g) - 1] += w * w
            if len(g) == 2:
                length += tf
        return v, [math.sqrt(x) for x in norm], length

    tot = 0.0
    for h, refs in zip(hyps, refss):
        vh, nh, lh = vec(h)
        score = [0.0] * 4
        for r in refs:
            vr, nr, lr = vec(r)
            for n in range(4):
                val = sum(min(w, vr.get(g, 0.0)) * vr.get(g, 0.0)
                          for g, w in vh.items() if len(g) == n + 1)
                if nh[n] != 0 and nr[n] != 0:
                    val /= nh[n] * nr[n]
                score[n] += val * math.exp(-((lh - lr) ** 2) / (2 * 36.0))
        tot += sum(score) / 4 / len(refs) * 10
    return tot / len(hyps)


def coverage(hyps, concepts, wn):
    cache = {}

    def lemmas(w):
        if w not in cache:
            cache[w] = {w} | {f for p in "nvar" for f in wn._morphy(w, p)}
        return cache[w]

    tot, cnt = 0.0, 0
    for h, cs in zip(hyps, concepts):
        if not cs:
            continue
        have = set().union(*[lemmas(w.lower()) for w in h]) if h else set()
        tot += sum(1 for c in cs if lemmas(c.lower()) & have) / len(cs)
        cnt += 1
    return tot / cnt


def diversity(hyps):
    out = {}
    for n in (1, 2):
        c = Counter()
        for h in hyps:
            c.update(ngrams(h, n))
        tot = sum(c.values())
        out["distinct-%d" % n] = len(c) / tot
        out["vocab_size-%d" % n] = len(c)
        out["unique-%d" % n] = sum(1 for v in c.values() if v == 1)
        out["entropy-%d" % n] = -sum(v / tot * math.log2(v / tot) for v in c.values())
    cat = [w for h in hyps for w in h]
    ttrs = [len(set(cat[i:i + 100])) / 100 for i in range(0, len(cat) - 99, 100)]
    out["msttr-100"] = sum(ttrs) / len(ttrs) if ttrs else None
    out["mean_pred_length"] = len(cat) / len(hyps)
    return out


def main():
    pred_path, refs_path = sys.argv[1:3]
    wn_dir = sys.argv[3] if len(sys.argv) > 3 else "/usr/share/wordnet"
    t0 = time.perf_counter()
    raw_h = open(pred_path, encoding="utf-8").read().splitlines()
    recs = [json.loads(l) for l in open(refs_path, encoding="utf-8")]
    raw_r = [r["scene"] for r in recs]
    concepts = [r["concept_set"].split("#") for r in recs]
    hyps = [h.split() for h in raw_h]
    refss = [[r.split() for r in rs] for rs in raw_r]
    secs, out = {}, {}

    def timed(name, f):
        t = time.perf_counter()
        v = f()
        secs[name] = time.perf_counter() - t
        return v

    import nltk_reference  # the WordNet folder NLTK's reader wants
    with tempfile.TemporaryDirectory() as tmp:
        wn = timed("wordnet_load", lambda: nltk_reference.wordnet(wn_dir, tmp))
        b = timed("bleu", lambda: bleu_coco(hyps, refss))
        for k in range(4):
            out["bleu%d" % (k + 1)] = b[k]
        out["sacrebleu"] = timed("sacrebleu", lambda: sacrebleu(raw_h, raw_r))
        out["cider"] = timed("cider", lambda: cider_d(hyps, refss))
        out["rougeL_coco"] = timed("rougeL_coco", lambda: rouge_l_coco(hyps, refss))
        r = timed("rouge", lambda: rouge_score(raw_h, raw_r, None))
        out.update(rouge1=r[0], rouge2=r[1], rougeL=r[2])
        st = PorterStemmer()
        r = timed("rouge_stem", lambda: rouge_score(raw_h, raw_r, st))
        out.update(rouge1_stem=r[0], rouge2_stem=r[1], rougeL_stem=r[2])
        out["meteor"] = timed("meteor", lambda: sum(
            meteor_score(rs, h, wordnet=wn) for h, rs in zip(hyps, refss)) / len(hyps))
        out["coverage"] = timed("coverage", lambda: coverage(hyps, concepts, wn))
        out["diversity"] = timed("diversity", lambda: diversity(hyps))
    secs["total"] = time.perf_counter() - t0
    out["seconds"] = secs
    json.dump(out, sys.stdout, indent=1)


main()
