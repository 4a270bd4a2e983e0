#!/usr/bin/python3
"""PyTorch peer for `dfpo judge score --model` (bench/bert_judge.sh).

Hugging Face's transformers is not installed here, so the forward pass is
the one tests/trainer/bert_reference.py writes from transformers' modeling
files (DistilBertForSequenceClassification), batched the way a
text-classification pipeline batches: rows padded on the right to the
longest row of the batch, the padding masked out of the attention with the
dtype's minimum (modeling_distilbert.py's masked_fill), under
torch.inference_mode(), with F.linear (addmm) for every projection and all
the machine's threads. The rows are sorted by length before batching, as
dfpo sorts them, so that both score the same number of padded tokens.

usage:
  bert_peer.py make DIR TEXTS [--seed S] [--layers L --width C --heads H --ffn F]
      a distilbert-base-shaped folder (6 layers, 768 wide, 12 heads, 3,072
      feed-forward, 512 positions, 30,522 WordPiece tokens: the specials, the
      printable ASCII characters alone and as ##continuations, then the most
      frequent words of TEXTS after BERT's basic tokenizer), random float32
      weights; the four options give another shape (the dry run's small one)
  bert_peer.py score DIR TEXTS OUT [--batch N] [--threads N] [--device D]
                     [--json] [--transformers]
      tokenizes TEXTS (one text per line; the tokenizer peer of
      bert_reference.py, timed apart), scores them, writes the label
      probabilities one line per text (tab-separated, as dfpo prints them)
      and prints the times on stderr (with --json also as one JSON line on
      stdout). --device cuda runs the forward on the GPU (timed between
      synchronisations; the weights moved there before the clock starts).
      --transformers runs Hugging Face's DistilBertForSequenceClassification
      (from_pretrained DIR, eval, fp32) on the same ids instead of the
      forward written here; exit 2 when transformers is not installed.
  bert_peer.py texts OUT --n N [--words W] [--seed S]
      N synthetic texts of W words (default 84, the length bench/bert_judge.sh
      cuts IMDB reviews to), drawn Zipf-like (rank r with weight 1/r) from
      5,000 made-up lower-case words of 2 to 9 letters: for machines without
      the IMDB data (bench/device_check.sh)
"""
import argparse
import collections
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "trainer"))
import bert_reference as ref  # noqa: E402  (the tests' tokenizer peer and folder writer)
from gpt2_torch import read_safetensors  # noqa: E402

VOCAB = 30522


def cmd_make(a):
    ref.torch, ref.F = torch, F
    counts = collections.Counter()
    with open(a.texts, encoding="utf-8") as f:
        for line in f:
            counts.update(basic_words(line.rstrip("\n")))
    chars = [chr(c) for c in range(33, 127)]
    base = [c.lower() for c in chars if not c.isupper()]
    toks = base + ["##" + c for c in base]
    seen = set(ref.SPECIALS_WP) | set(toks)
    for w, _ in counts.most_common():
        if len(ref.SPECIALS_WP) + len(toks) >= VOCAB:
            break
        if w not in seen:
            seen.add(w)
            toks.append(w)
    spec = {"dir": a.dir, "family": "distilbert", "layers": a.layers, "width": a.width,
            "heads": a.heads, "ffn": a.ffn, "max_pos": 512, "labels": ["NEGATIVE", "POSITIVE"], "seed": a.seed,
            "words": toks, "emb_sd": 0.02}
    ref.make_folder(spec)
    print(f"{a.dir}: {len(ref.SPECIALS_WP) + len(toks)} tokens", file=sys.stderr)


def basic_words(text):
    """BERT's basic tokenizer on lower-cased text: the words WordPiece sees."""
    return ref.wordpiece_tokens(_Everything(), text, True)


class _Everything(dict):
    """A vocabulary holding every string: wordpiece_tokens then returns the
    pre-tokenized words whole."""

    def __contains__(self, k):
        return not k.startswith("##")


def forward_batch(cfg, sd, ids, mask):
    """ids, mask: [B,T] (mask 1 on real tokens). Returns probabilities [B,K]."""
    B, T = ids.shape
    C, H, L = cfg["dim"], cfg["n_heads"], cfg["n_layers"]
    d = C // H
    st = "distilbert.transformer.layer."

    def lin(x, p):
        return F.linear(x, sd[p + ".weight"], sd[p + ".bias"])

    def ln(x, p):
        return F.layer_norm(x, (C,), sd[p + ".weight"], sd[p + ".bias"], 1e-12)

    x = sd["distilbert.embeddings.word_embeddings.weight"][ids]
    x = x + sd["distilbert.embeddings.position_embeddings.weight"][:T].unsqueeze(0)
    x = ln(x, "distilbert.embeddings.LayerNorm")
    neg = (mask == 0).view(B, 1, 1, T)
    for l in range(L):
        p = f"{st}{l}."
        q = lin(x, p + "attention.q_lin").view(B, T, H, d).transpose(1, 2) / math.sqrt(d)
        k = lin(x, p + "attention.k_lin").view(B, T, H, d).transpose(1, 2)
        v = lin(x, p + "attention.v_lin").view(B, T, H, d).transpose(1, 2)
        s = (q @ k.transpose(2, 3)).masked_fill(neg, torch.finfo(q.dtype).min)
        ctx = (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(B, T, C)
        x1 = ln(lin(ctx, p + "attention.out_lin") + x, p + "sa_layer_norm")
        h = F.gelu(lin(x1, p + "ffn.lin1"))
        x = ln(lin(h, p + "ffn.lin2") + x1, p + "output_layer_norm")
    cls = x[:, 0]
    logits = lin(F.relu(lin(cls, "pre_classifier")), "classifier")
    return torch.softmax(logits, -1)


def cmd_texts(a):
    import random
    rng = random.Random(a.seed)
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    words = set()
    while len(words) < 5000:
        n = rng.randint(2, 9)
        words.add("".join(rng.choice(letters[:12] if i % 2 else letters) for i in range(n)))
    words = sorted(words)
    rng.shuffle(words)
    weights = [1.0 / (r + 1) for r in range(len(words))]
    with open(a.out, "w") as f:
        for _ in range(a.n):
            f.write(" ".join(rng.choices(words, weights, k=a.words)) + "\n")


def hf_model(a, dev):
    try:
        from transformers import AutoModelForSequenceClassification
    except ImportError as e:
        sys.stderr.write("bert_peer.py: transformers is not installed: %s\n" % e)
        sys.exit(2)
    return AutoModelForSequenceClassification.from_pretrained(a.dir).to(dev).eval()


def cmd_score(a):
    torch.set_num_threads(a.threads or os.cpu_count())
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    with open(os.path.join(a.dir, "config.json")) as f:
        cfg = json.load(f)
    vocab = {}
    with open(os.path.join(a.dir, "vocab.txt"), encoding="utf-8") as f:
        for i, line in enumerate(f):
            vocab[line.rstrip("\n")] = i
    sd, _ = read_safetensors(os.path.join(a.dir, "model.safetensors"))
    # read_safetensors strips a leading "transformer." (GPT-2's prefix):
    # DistilBERT's names keep theirs, "distilbert.transformer.layer..."
    sd = {k: v.to(dev) for k, v in sd.items()}
    model = hf_model(a, dev) if a.transformers else None
    sync()
    t1 = time.perf_counter()
    with open(a.texts, encoding="utf-8") as f:
        texts = [line.rstrip("\n") for line in f]
    rows = [ref.text_ids(cfg, {"vocab": vocab}, t, True) for t in texts]
    t2 = time.perf_counter()
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    probs = [None] * len(rows)
    ntok = 0
    with torch.inference_mode():
        for s in range(0, len(order), a.batch):
            idx = order[s:s + a.batch]
            T = max(len(rows[i]) for i in idx)
            ids = torch.zeros(len(idx), T, dtype=torch.long)
            mask = torch.zeros(len(idx), T, dtype=torch.long)
            for r, i in enumerate(idx):
                ids[r, :len(rows[i])] = torch.tensor(rows[i])
                mask[r, :len(rows[i])] = 1
                ntok += len(rows[i])
            ids, mask = ids.to(dev), mask.to(dev)
            if model is not None:
                p = torch.softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
            else:
                p = forward_batch(cfg, sd, ids, mask)
            p = p.cpu()
            for r, i in enumerate(idx):
                probs[i] = p[r].tolist()
    sync()
    t3 = time.perf_counter()
    with open(a.out, "w") as f:
        for p in probs:
            f.write("\t".join(f"{x:.6f}" for x in p) + "\n")
    print(f"peer: {len(rows)} texts, {ntok} tokens; load {t1 - t0:.2f} s, tokenize {t2 - t1:.2f} s, "
          f"forward {t3 - t2:.2f} s ({ntok / (t3 - t2):.0f} tokens/s), threads {torch.get_num_threads()}",
          file=sys.stderr)
    if a.json:
        n_params = sum(v.numel() for k, v in sd.items() if "position_ids" not in k)
        # the matrices of the products (the model FLOPs' N), not the lookups
        n_mat = sum(v.numel() for k, v in sd.items() if v.dim() == 2 and "embeddings" not in k)
        print(json.dumps({"peer": "transformers" if a.transformers else "pytorch",
                          "torch": torch.__version__, "device": str(dev), "texts": len(rows),
                          "tokens": ntok, "params": n_params, "matmul_params": n_mat,
                          "layers": cfg["n_layers"], "width": cfg["dim"], "batch": a.batch,
                          "load_s": t1 - t0, "tokenize_s": t2 - t1, "forward_s": t3 - t2,
                          "wall_s": t3 - t0}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("dir")
    m.add_argument("texts")
    m.add_argument("--seed", type=int, default=1)
    m.add_argument("--layers", type=int, default=6)
    m.add_argument("--width", type=int, default=768)
    m.add_argument("--heads", type=int, default=12)
    m.add_argument("--ffn", type=int, default=3072)
    s = sub.add_parser("score")
    s.add_argument("dir")
    s.add_argument("texts")
    s.add_argument("out")
    s.add_argument("--batch", type=int, default=32)
    s.add_argument("--threads", type=int, default=0)
    s.add_argument("--device", default="cpu")
    s.add_argument("--json", action="store_true")
    s.add_argument("--transformers", action="store_true")
    t = sub.add_parser("texts")
    t.add_argument("out")
    t.add_argument("--n", type=int, required=True)
    t.add_argument("--words", type=int, default=84)
    t.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    {"make": cmd_make, "score": cmd_score, "texts": cmd_texts}[a.cmd](a)


if __name__ == "__main__":
    main()
