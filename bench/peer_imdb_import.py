#!/usr/bin/python3
"""Peer for bench/datasets_imdb.sh: the same work as `dfpo datasets import
imdb` + `dfpo datasets prepare imdb`, written with Python's standard library
only (tarfile, hashlib, json, random). It extracts the 100,000 review files
to disk, computes the content digest of ../shared/data/README.md, and
writes the same five split files (train 20,000 / validation 5,000 / test
5,000 / test_full 25,000 / unsup 50,000). Its shuffles use Python's
random.Random(42), so the splits hold other reviews than dfpo's: the point
is the amount of work, not the bytes.

usage: peer_imdb_import.py ARCHIVE OUTDIR
"""
import hashlib
import json
import os
import random
import re
import sys
import tarfile

DIGEST = "b00cc6bf6ff859b1ff34cb4995d0dfa5a4eb7f74aceb2238f6d502669203838b"
MEMBER = re.compile(r"^aclImdb/(train/pos|train/neg|train/unsup|test/pos|test/neg)/[^/]*\.txt$")
BR = re.compile(r"<br />|<br/>|<br>")


def main():
    archive, out = sys.argv[1], sys.argv[2]
    raw = os.path.join(out, "raw")
    listing = []
    with tarfile.open(archive, "r:gz") as tf:
        for m in tf:
            name = m.name[2:] if m.name.startswith("./") else m.name
            if not m.isfile() or not MEMBER.match(name):
                continue
            data = tf.extractfile(m).read()
            path = os.path.join(raw, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
            listing.append((name, hashlib.sha256(data).hexdigest()))
    listing.sort(key=lambda x: x[0].encode())
    text = "".join(f"{h}  {p}\n" for p, h in listing)
    digest = hashlib.sha256(text.encode()).hexdigest()
    if digest != DIGEST:
        sys.exit(f"content digest {digest} is not {DIGEST}")

    def load(part):
        recs = []
        for lab, sub in ((0, "neg"), (1, "pos")):
            d = os.path.join(raw, "aclImdb", part, sub)
            for name in sorted(os.listdir(d)):
                with open(os.path.join(d, name), encoding="utf-8", errors="replace") as f:
                    t = BR.sub("\n", f.read())
                rid = f"{part}/{sub}/{name[:-4]}"
                words = list(re.finditer(r"\S+", t))
                k = max(1, len(words) // 2)
                recs.append({"id": rid, "prompt": t[:words[k - 1].end()], "references": [t],
                             "label": lab, "rating": int(name[:-4].split("_")[1])})
        return recs

    def write(name, recs):
        with open(os.path.join(out, name + ".jsonl"), "w", encoding="utf-8") as f:
            for r in recs:
                f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")

    rng = random.Random(42)
    train, test = load("train"), load("test")
    ti, si = list(range(len(train))), list(range(len(test)))
    rng.shuffle(ti)
    rng.shuffle(si)
    nval = len(train) // 5
    write("train", [train[i] for i in ti[:-nval]])
    write("validation", [train[i] for i in ti[-nval:]])
    write("test", [test[i] for i in si[:5000]])
    write("test_full", test)
    write("unsup", load_unsup(raw))


def load_unsup(raw):
    d = os.path.join(raw, "aclImdb", "train", "unsup")
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name), encoding="utf-8", errors="replace") as f:
            yield {"id": f"unsup/{name[:-4]}", "text": BR.sub("\n", f.read())}


if __name__ == "__main__":
    main()
