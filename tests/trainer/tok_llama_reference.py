"""Reference for tests/trainer/test_tok_llama.c: Llama's SentencePiece
tokenizer.model as python3-sentencepiece encodes and decodes it.

Usage: tok_llama_reference.py ROOT OUT.json

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


if __name__ == "__main__":
    main()
