#!/usr/bin/python3
"""The Python peer of dfpo's judges (standard library only): reads a judge
folder (judge.bin as docs/judges.md describes it) and scores texts, one per
line of a file, with the same feature definition written out again here.

    judge_peer.py JUDGE_DIR TEXTS.txt > scores.txt

Used by bench/judge_bench.sh, which times it beside `dfpo judge score` and
reports the largest difference between the two.
"""
import math
import struct
import sys

M64 = (1 << 64) - 1


def fnv(h, data):
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & M64
    return h


def mix(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def is_word(c):
    return (97 <= c <= 122) or (65 <= c <= 90) or (48 <= c <= 57) or c == 39 or c >= 0x80


def features(text, bits, word_n, cmin, cmax):
    mask = (1 << bits) - 1
    out, prev, have, i, n = set(), [0, 0, 0], 0, 0, len(text)
    while i < n:
        c = text[i]
        if is_word(c):
            j = i
            while j < n and is_word(text[j]):
                j += 1
            word = bytes(b + 32 if 65 <= b <= 90 else b for b in text[i:j])[:255]
            i = j
        elif c in (33, 63):
            word = bytes([c])
            i += 1
        else:
            i += 1
            continue
        h = fnv(0xCBF29CE484222325, word)
        g = h
        out.add(mix(g ^ 0x1111) & mask)
        k = 1
        while k < word_n and k <= have:
            g = mix((g * 31 + prev[k - 1] + k) & M64)
            out.add(mix(g ^ 0x2222) & mask)
            k += 1
        prev = [h, prev[0], prev[1]]
        have = min(have + 1, 3)
        if cmax > 0:
            pad = b" " + word + b" "
            for m in range(cmin, cmax + 1):
                for s in range(0, len(pad) - m + 1):
                    ch = fnv((0x84222325CBF29CE4 + m) & M64, pad[s:s + m])
                    out.add(mix(ch ^ 0x3333) & mask)
    return sorted(out)


def main():
    with open(sys.argv[1] + "/judge.bin", "rb") as f:
        data = f.read()
    assert data[:8] == b"DFPOJDG1", "not a judge file"
    fmt, bits, word_n, cmin, cmax, _nb, _res, nl = struct.unpack_from("<8I", data, 8)
    assert fmt == 1
    off = 40 + nl
    bias, a, c = struct.unpack_from("<3d", data, off)
    off += 24
    w = struct.unpack_from("<%df" % (1 << bits), data, off)
    out = []
    with open(sys.argv[2], "rb") as f:
        for line in f:
            line = line[:-1] if line.endswith(b"\n") else line
            fs = features(line, bits, word_n, cmin, cmax)
            z = sum(w[k] for k in fs)
            if fs:
                z /= math.sqrt(len(fs))
            z = a * (z + bias) + c
            p = 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))
            out.append("%.6f" % p)
    sys.stdout.write("\n".join(out) + "\n")


main()
