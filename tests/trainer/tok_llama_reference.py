"""Reference for tests/trainer/test_tok_llama.c: Llama's SentencePiece
tokenizer.model as python3-sentencepiece encodes and decodes it.

Usage: tok_llama_reference.py ROOT OUT.json
       tok_llama_reference.py greedy ROOT SAMPLES.jsonl MAX_PROMPT NEW OUT.json
       tok_llama_reference.py sft ROOT TEXTS.txt OUT.json

Trains a tiny SentencePiece BPE with byte fallback and Llama's settings
(unk 0, <s> 1, </s> 2, no pad, the identity normaliser, whitespace kept,
digits split, as Llama's own tokenizer.model was trained) on a few English
and French lines, and writes ROOT/llama/: tokenizer.model,
tokenizer_config.json (add_bos_token true, add_eos_token false),
config.json and model.safetensors of a random tiny grouped-query Llama over
that vocabulary (rdec_reference.py's weights). ROOT/eos/ holds the same
tokenizer.model with add_bos_token false and add_eos_token true. OUT gets,
for each test string (characters the corpus lacks among them, so byte
fallback shows), the ids Hugging Face's LlamaTokenizer gives with its
special tokens (sp.encode with <s> prepended), the ids sp.encode gives, and
sp.decode of those ids; and the perplexity sums of the test strings under
the random Llama (rdec_reference.score: tokens 2..n of each document) as
transformers' tokenizer(text) encodes them with each folder's settings:
<s> + ids (ROOT/llama), ids + </s> (ROOT/eos).
"""
import io
import json
import math
import os
import sys

import sentencepiece as spm
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rdec_reference as R  # noqa: E402  (the random Llama weights)

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A tokenizer splits text into pieces that a model reads.",
    "Le renard brun saute par-dessus le chien paresseux.",
    "Il fait beau aujourd'hui, et nous allons au march\u00e9.",
    "Numbers like 12345 and 2024 are split into digits.",
    "Models learn from data; data comes from people.",
    "She sells sea shells by the sea shore.",
    "Peter Piper picked a peck of pickled peppers.",
] * 20

TESTS = [
    "Hello world",
    "The lazy dog reads pieces.",
    "na\u00efve caf\u00e9 \u2014 d\u00e9j\u00e0 vu",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
    "emoji \U0001f642 and \u20ac 42",
    "  two leading spaces",
]


def main():
    root, out = sys.argv[1], sys.argv[2]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS), model_writer=buf, model_type="bpe", vocab_size=400,
        byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        normalization_rule_name="identity", remove_extra_whitespaces=False, split_digits=True,
        character_coverage=1.0, num_threads=1, minloglevel=2)
    model = buf.getvalue()
    sp = spm.SentencePieceProcessor(model_proto=model)
    assert sp.id_to_piece(0) == "<unk>" and sp.id_to_piece(1) == "<s>" and sp.id_to_piece(2) == "</s>"
    n = sp.get_piece_size()
    d = os.path.join(root, "llama")
    os.makedirs(d)
    with open(os.path.join(d, "tokenizer.model"), "wb") as f:
        f.write(model)
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "LlamaTokenizer", "add_bos_token": True,
                   "add_eos_token": False}, f)
    c = dict(model_type="llama", vocab_size=n, hidden_size=16, num_attention_heads=4,
             num_key_value_heads=2, num_hidden_layers=1, intermediate_size=32,
             rms_norm_eps=1e-6, rope_theta=10000.0, hidden_act="silu", tie_word_embeddings=False,
             max_position_embeddings=64, bos_token_id=1, eos_token_id=2)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(c, f)
    R.V = n
    P = R.params("llama", c, torch.Generator().manual_seed(7))
    R.write_safetensors(os.path.join(d, "model.safetensors"), P, {k: "F32" for k in P})
    e = os.path.join(root, "eos")
    os.makedirs(e)
    with open(os.path.join(e, "tokenizer.model"), "wb") as f:
        f.write(model)
    with open(os.path.join(e, "tokenizer_config.json"), "w") as f:
        json.dump({"add_bos_token": False, "add_eos_token": True}, f)
    cases = []
    nll = {"llama": [0.0, 0], "eos": [0.0, 0]}
    Pd = {k: v.double() for k, v in P.items()}
    for s in TESTS:
        for k, doc in (("llama", [1] + sp.encode(s)), ("eos", sp.encode(s) + [2])):
            t, m = R.score("llama", c, Pd, doc)
            nll[k][0] += t
            nll[k][1] += m
        ids = sp.encode(s)
        cases.append({"text": s, "ids": ids, "with_bos": [1] + ids, "decoded": sp.decode(ids),
                      "pieces": sp.id_to_piece(ids)})
    with open(out, "w") as f:
        json.dump({"llama": d, "eos": e, "pieces": n, "cases": cases,
                   "nll_sum": {k: v[0] for k, v in nll.items()},
                   "nll_tokens": {k: v[1] for k, v in nll.items()}}, f, ensure_ascii=False,
                  indent=1)


def ppl_windows(c, Pd, seq, ctx):
    """metrics/ppl.c's windows over one text (met_ppl_ref_ids, as its
    comment describes them): targets 1..N-1 in windows (a, b], the first
    b = min(N - 1, ctx), then stride ctx / 2 on; each window's inputs from
    max(0, b - ctx) to b - 1. Returns the summed negative log-likelihood
    and the count of targets."""
    N, stride = len(seq), max(ctx // 2, 1)
    a, tot, k = 0, 0.0, 0
    while a + 1 < N:
        b = min(N - 1, ctx) if a == 0 else min(a + stride, N - 1)
        start = max(0, b - ctx)
        lp = torch.log_softmax(R.forward("llama", c, Pd, seq[start:b]), -1)
        for p in range(a + 1, b + 1):
            tot -= lp[p - 1 - start, seq[p]].item()
            k += 1
        a = b
    return tot, k


def load_llama(root):
    """ROOT/llama as the first form wrote it: its tokenizer, config and the
    random weights (rdec_reference.py's, seed 7) in double."""
    d = os.path.join(root, "llama")
    sp = spm.SentencePieceProcessor(model_file=os.path.join(d, "tokenizer.model"))
    with open(os.path.join(d, "config.json")) as f:
        c = json.load(f)
    R.V = c["vocab_size"]
    P = R.params("llama", c, torch.Generator().manual_seed(7))
    return sp, c, {k: v.double() for k, v in P.items()}


def greedy():
    """The second form: for each line of a dfpo train samples.jsonl, the
    greedy continuation (NEW tokens, </s> barred as min_new_tokens = NEW
    bars it) of the random Llama in ROOT/llama given its prompt as
    transformers' tokenizer(prompt, truncation=True, max_length=MAX_PROMPT,
    truncation_side="left") encodes it: <s>, then the prompt's last
    MAX_PROMPT - 1 ids; its text (sp.decode) and the least gap between the
    two largest logits over the steps; and the same without the <s> (the
    prompt's last MAX_PROMPT ids), which a test tells apart. And ppl_ref
    over the lines' references: exp(the sum of the negative
    log-likelihoods over the count of tokens, ppl_windows), each
    reference after <s> (and after </s>, as GPT-2's <|endoftext|> would
    go, for comparison)."""
    root, samples, maxp, new, out = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
    sp, c, Pd = load_llama(root)
    res, nll = [], {1: [0.0, 0], 2: [0.0, 0]}
    for line in open(samples):
        prompt = json.loads(line)["prompt"]
        ref = sp.encode(json.loads(line)["reference"])
        for start in nll:
            t, m = ppl_windows(c, Pd, [start] + ref, c["max_position_embeddings"])
            nll[start][0] += t
            nll[start][1] += m
        ids = sp.encode(prompt)
        row = {}
        for key, start in (("with_bos", [1] + ids[len(ids) - (maxp - 1):]), ("without", ids[len(ids) - maxp:])):
            seq, margin = list(start), float("inf")
            for _ in range(new):
                z = R.forward("llama", c, Pd, seq)[-1].clone()
                z[2] = float("-inf")
                top = z.topk(2).values
                margin = min(margin, (top[0] - top[1]).item())
                seq.append(int(z.argmax()))
            row[key] = sp.decode(seq[len(start):])
            row[key + "_margin"] = margin
        res.append(row)
    with open(out, "w") as f:
        json.dump({"samples": res, "ppl_ref": math.exp(nll[1][0] / nll[1][1]),
                   "ppl_ref_after_eos": math.exp(nll[2][0] / nll[2][1])}, f, ensure_ascii=False,
                  indent=1)


def sft():
    """The third form: SFT's first loss over the lines of TEXTS.txt (one
    batch of them all) under the random Llama in ROOT/llama: each line
    encoded as transformers' tokenizer(text) does with add_bos_token, <s> +
    sp.encode's ids, cut to max_position_embeddings + 1 tokens (the inputs
    fill the context, the last token a target only), every token after the
    first a target; the mean next-token cross-entropy over all of them
    (labels at the padding ignored, as transformers' loss does), in double.
    And the same with </s> first (what dfpo train gave a Llama's SFT texts
    before they started with <s>), which a test tells apart."""
    root, texts, out = sys.argv[2], sys.argv[3], sys.argv[4]
    sp, c, Pd = load_llama(root)
    cap = c["max_position_embeddings"] + 1
    res = {}
    for key, start in (("loss", 1), ("loss_after_eos", 2)):
        tot, k = 0.0, 0
        for line in open(texts, encoding="utf-8"):
            seq = ([start] + sp.encode(line.rstrip("\n")))[:cap]
            lp = torch.log_softmax(R.forward("llama", c, Pd, seq[:-1]), -1)
            for p in range(1, len(seq)):
                tot -= lp[p - 1, seq[p]].item()
                k += 1
        res[key] = tot / k
        res["tokens"] = k
    with open(out, "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    {"greedy": greedy, "sft": sft}.get(sys.argv[1], main)()
