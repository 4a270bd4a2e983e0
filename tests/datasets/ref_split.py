#!/usr/bin/python3
"""Reference for the IMDB split rule of docs/datasets.md, independent of the
C code: PCG32 (pcg-c-basic's pcg32_srandom_r / pcg32_random_r /
pcg32_boundedrand_r) and a Fisher-Yates shuffle drawing j in [0, i) for
i = n..2. Prints the first ids of train, validation and test for the
review files of an aclImdb archive or a list of names given on stdin.

usage: ref_split.py ARCHIVE [SEED]    (../shared/data/imdb/aclImdb.tar.gz)
       ref_split.py - [SEED] < names  (lines like aclImdb/train/pos/0_9.txt)
The values pinned in tests/datasets/test_import.c and test_real_data.c were
printed by this script.
"""
import re
import sys
import tarfile

M64 = (1 << 64) - 1


class Pcg32:
    def __init__(self, seed, stream):
        self.state, self.inc = 0, ((stream << 1) | 1) & M64
        self.next()
        self.state = (self.state + seed) & M64
        self.next()

    def next(self):
        old = self.state
        self.state = (old * 6364136223846793005 + self.inc) & M64
        x = (((old >> 18) ^ old) >> 27) & 0xFFFFFFFF
        rot = old >> 59
        return ((x >> rot) | (x << ((-rot) & 31))) & 0xFFFFFFFF

    def below(self, bound):
        threshold = ((1 << 32) - bound) % bound
        while True:
            x = self.next()
            if x >= threshold:
                return x % bound


def shuffle(rng, a):
    for i in range(len(a), 1, -1):
        j = rng.below(i)
        a[i - 1], a[j] = a[j], a[i - 1]


def main():
    src = sys.argv[1]
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 42
    if src == "-":
        names = [l.strip() for l in sys.stdin if l.strip()]
    else:
        with tarfile.open(src, "r:gz") as tf:
            names = [m.name for m in tf if m.isfile()]
    pat = re.compile(r"^(?:\./)?aclImdb/(train|test)/(pos|neg)/([^/]*)\.txt$")
    ids = {"train": [], "test": []}
    for n in names:
        m = pat.match(n)
        if m:
            ids[m.group(1)].append(f"{m.group(1)}/{m.group(2)}/{m.group(3)}")
    for k in ids:  # bytewise path order: neg before pos, then the file name
        ids[k].sort(key=lambda s: s.encode())
    rng = Pcg32(seed, 1)  # DFPO_STREAM_DATA
    train, test = list(ids["train"]), list(ids["test"])
    shuffle(rng, train)
    shuffle(rng, test)
    nval = len(train) // 5
    print("train", train[:len(train) - nval][:3])
    print("validation", train[len(train) - nval:][:3])
    print("test", test[:min(5000, len(test))][:3])


if __name__ == "__main__":
    main()
