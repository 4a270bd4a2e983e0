#!/usr/bin/python3
"""Reference GPT-2 encoder: the algorithm of OpenAI's gpt-2/src/encoder.py
(bytes_to_unicode, the pre-tokenisation pattern evaluated by the `regex`
module, BPE by merge rank with a word cache), written out for dfpo's tests and
benchmark. Run with Debian's /usr/bin/python3 (python3-regex).

One extension over encoder.py, which takes a str: input is bytes, decoded
with errors="surrogateescape", so that bytes that are not valid UTF-8 become
lone surrogates (neither letter, number nor space to the pattern) and are
turned back into the same bytes before the byte-to-token mapping. For valid
UTF-8 this is exactly encoder.py.

Usage:
  gpt2_ref.py DIR [--lines] [--allow-special] [--split] [--time] < input
DIR holds encoder.json and vocab.bpe. Output: token ids separated by spaces
(one line per input line with --lines); --split prints the byte length of each
pre-tokenisation piece instead; --time prints "wall_seconds cpu_seconds bytes
tokens" of the encoding alone to stderr.
A second mode trains a BPE naively (the specification dfpo's trainer is
tested against):
  gpt2_ref.py --train VOCAB_SIZE FILE...   prints the merges, one "left right" a line
"""
import json
import sys
import time

import regex

PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
EOT = "<|endoftext|>"


def byte_alphabet():
    """Byte -> character: printable Latin-1 bytes map to themselves, the
    others to 256, 257, ... in byte order. The list order is GPT-2's id order
    for the 256 byte tokens."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    order = keep[:]
    chars = keep[:]
    extra = 0
    for b in range(256):
        if b not in keep:
            order.append(b)
            chars.append(256 + extra)
            extra += 1
    return order, {b: chr(c) for b, c in zip(order, chars)}


class Encoder:
    def __init__(self, folder):
        with open(folder + "/encoder.json", encoding="utf-8") as f:
            self.encoder = json.load(f)
        with open(folder + "/vocab.bpe", encoding="utf-8") as f:
            lines = f.read().split("\n")
        merges = [tuple(l.split()) for l in lines[1:] if l]
        self.ranks = {m: i for i, m in enumerate(merges)}
        _, self.byte_char = byte_alphabet()
        self.pat = regex.compile(PATTERN)
        self.cache = {}

    def bpe(self, word):
        if word in self.cache:
            return self.cache[word]
        parts = list(word)
        while len(parts) > 1:
            pairs = set(zip(parts, parts[1:]))
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            a, b = best
            out = []
            i = 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == a and parts[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(parts[i])
                    i += 1
            parts = out
        ids = [self.encoder[p] for p in parts]
        self.cache[word] = ids
        return ids

    def pieces(self, data):
        text = data.decode("utf-8", "surrogateescape")
        for piece in self.pat.findall(text):
            yield piece.encode("utf-8", "surrogateescape")

    def encode(self, data, allow_special=False):
        if allow_special and EOT.encode() in data:
            ids = []
            chunks = data.split(EOT.encode())
            for i, chunk in enumerate(chunks):
                if i:
                    ids.append(self.encoder[EOT])
                ids.extend(self.encode(chunk))
            return ids
        ids = []
        for piece in self.pieces(data):
            ids.extend(self.bpe("".join(self.byte_char[b] for b in piece)))
        return ids


def train(vocab_size, files):
    """Naive BPE training: count words, then repeatedly merge the most
    frequent adjacent pair (ties: smallest (left bytes, right bytes)) until
    the 256 bytes, the merged tokens and <|endoftext|> make vocab_size."""
    pat = regex.compile(PATTERN)
    counts = {}
    for name in files:
        with open(name, "rb") as f:
            text = f.read().decode("utf-8", "surrogateescape")
        for piece in pat.findall(text):
            w = tuple(bytes([b]) for b in piece.encode("utf-8", "surrogateescape"))
            counts[w] = counts.get(w, 0) + 1
    _, byte_char = byte_alphabet()
    merges = []
    words = list(counts.items())
    tokens = set()
    while 256 + len(tokens) + 1 < vocab_size:
        pairs = {}
        for w, c in words:
            for p in zip(w, w[1:]):
                pairs[p] = pairs.get(p, 0) + c
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p[0], p[1]))
        merges.append(best)
        a, b = best
        tokens.add(a + b)
        new = []
        for w, c in words:
            out = []
            i = 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new.append((tuple(out), c))
        words = new
    for a, b in merges:
        print("".join(byte_char[x] for x in a), "".join(byte_char[x] for x in b))


def main():
    args = sys.argv[1:]
    if args and args[0] == "--train":
        train(int(args[1]), args[2:])
        return
    folder = args[0]
    lines = "--lines" in args
    special = "--allow-special" in args
    split = "--split" in args
    timed = "--time" in args
    enc = Encoder(folder)
    data = sys.stdin.buffer.read()
    docs = data.split(b"\n") if lines else [data]
    if lines and data.endswith(b"\n"):
        docs.pop()
    t0, c0 = time.perf_counter(), time.process_time()
    if split:
        results = [[len(p) for p in enc.pieces(d)] for d in docs]
    else:
        results = [enc.encode(d, special) for d in docs]
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    out = sys.stdout
    for r in results:
        out.write(" ".join(map(str, r)) + "\n")
    if timed:
        print("%.6f %.6f %d %d" % (dt, dc, len(data), sum(len(r) for r in results)), file=sys.stderr)


if __name__ == "__main__":
    main()
