#!/usr/bin/python3
"""Reference peer for the encoder-classifier tests (tests/trainer/test_bert.c).

Hugging Face's transformers is not installed here, so this script carries its
own PyTorch forward passes of DistilBertForSequenceClassification,
BertForSequenceClassification and RobertaForSequenceClassification, written
from the architecture as transformers defines it (modeling_distilbert.py,
modeling_bert.py, modeling_roberta.py: post-LN encoder, erf GELU, DistilBERT's
query scaled before the product, RoBERTa's positions from padding_idx + 1
counting non-pad tokens, the three heads), and its own tokenizer peers: BERT's
as the fast tokenizer (the tokenizers library's BertNormalizer,
BertPreTokenizer and WordPiece) runs it, and RoBERTa's byte-level BPE for ASCII
text (GPT-2's split pattern restricted to ASCII, merges by rank).

usage: bert_reference.py SPEC.json OUT.json

SPEC: {"folders": [{"dir", "family", "layers", "width", "heads", "ffn",
"max_pos", "labels", "seed", "act", "problem_type", "lower", "words", "emb_sd", "wp_json",
"ids": [[...]], "texts": [...], "weights": "bin", "half": [tensor names]}]}.
For each folder the script writes a Hugging Face folder (config.json,
tokenizer files, model.safetensors with random float32 weights, or with
"weights": "bin" a pytorch_model.bin by torch.save; the "half" tensors
rounded to float16, stored so in the .bin; with "wp_json" the WordPiece
vocabulary goes into tokenizer.json's model instead of vocab.txt), then the label probabilities of each id row (one row
alone, no padding) and of each text (tokenised here, truncated to the model's
length with [CLS]/[SEP] or <s>/</s>). OUT: {dir: {"ids_probs", "text_ids",
"text_probs"}}.
"""
import json
import math
import os
import re
import sys
import unicodedata

torch = None  # imported in main when a folder needs it (the tokenizer
F = None      # comparison runs without PyTorch)

SPECIALS_WP = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


# ------------------------------------------------------------------ folders

def byte_alphabet():
    # GPT-2's byte -> character table (bench/gpt2_ref.py has it too, but
    # imports the regex module, which this peer does without)
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def make_folder(s):
    d, fam = s["dir"], s["family"]
    os.makedirs(d, exist_ok=True)
    C, L, H, FF, P = s["width"], s["layers"], s["heads"], s["ffn"], s["max_pos"]
    labels = s["labels"]
    K = len(labels)
    g = torch.Generator().manual_seed(s["seed"])
    words = s.get("words", [])
    if fam == "roberta":
        enc = byte_alphabet()
        vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
        for b in range(256):
            vocab[enc[b]] = len(vocab)
        merges = []
        for w in words:  # merges that build each word left to right
            sym = [enc[b] for b in w.encode()]
            cur = sym[0]
            for x in sym[1:]:
                if (cur, x) not in merges:
                    merges.append((cur, x))
                    if cur + x not in vocab:
                        vocab[cur + x] = len(vocab)
                cur = cur + x
        vocab["<mask>"] = len(vocab)
        with open(os.path.join(d, "vocab.json"), "w") as f:
            json.dump(vocab, f)
        with open(os.path.join(d, "merges.txt"), "w") as f:
            f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
        V, pad = len(vocab), 1
        tok = {"vocab": vocab, "merges": merges}
    else:
        toks = SPECIALS_WP + words
        V, pad = len(toks), 0
        if s.get("wp_json"):
            # the fast tokenizer's file alone: its WordPiece model holds the
            # vocabulary (written in reverse order; a map token -> id)
            tj = {"normalizer": {"type": "BertNormalizer", "clean_text": True,
                                 "handle_chinese_chars": True, "strip_accents": None,
                                 "lowercase": s.get("lower", True)},
                  "model": {"type": "WordPiece", "unk_token": "[UNK]",
                            "continuing_subword_prefix": "##", "max_input_chars_per_word": 100,
                            "vocab": {t: i for i, t in reversed(list(enumerate(toks)))}}}
            with open(os.path.join(d, "tokenizer.json"), "w") as f:
                json.dump(tj, f)
        else:
            with open(os.path.join(d, "vocab.txt"), "w") as f:
                f.write("".join(t + "\n" for t in toks))
        with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
            json.dump({"do_lower_case": s.get("lower", True), "model_max_length": P}, f)
        tok = {"vocab": {t: i for i, t in enumerate(toks)}}
    act = s.get("act", "gelu")
    id2label = {str(i): n for i, n in enumerate(labels)}
    if fam == "distilbert":
        cfg = {"model_type": "distilbert", "dim": C, "n_layers": L, "n_heads": H, "hidden_dim": FF,
               "vocab_size": V, "max_position_embeddings": P, "activation": act,
               "pad_token_id": pad, "sinusoidal_pos_embds": False}
    else:
        cfg = {"model_type": fam, "hidden_size": C, "num_hidden_layers": L,
               "num_attention_heads": H, "intermediate_size": FF, "vocab_size": V,
               "max_position_embeddings": P, "hidden_act": act, "pad_token_id": pad,
               "type_vocab_size": 2 if fam == "bert" else 1,
               "layer_norm_eps": 1e-12 if fam == "bert" else 1e-5,
               "position_embedding_type": "absolute"}
    cfg["id2label"] = id2label
    cfg["label2id"] = {n: i for i, n in enumerate(labels)}
    if s.get("problem_type"):
        cfg["problem_type"] = s["problem_type"]
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)

    def rn(*shape, sd=0.05):
        return torch.randn(*shape, generator=g) * sd

    sd = {}
    if fam == "distilbert":
        b = "distilbert."
        names = ["attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin",
                 "sa_layer_norm", "ffn.lin1", "ffn.lin2", "output_layer_norm"]
        stack = b + "transformer.layer."
    else:
        b = fam + "."
        names = ["attention.self.query", "attention.self.key", "attention.self.value",
                 "attention.output.dense", "attention.output.LayerNorm", "intermediate.dense",
                 "output.dense", "output.LayerNorm"]
        stack = b + "encoder.layer."
    esd = s.get("emb_sd", 0.5)  # small: LayerNorm's epsilon matters
    sd[b + "embeddings.word_embeddings.weight"] = rn(V, C, sd=esd)
    sd[b + "embeddings.position_embeddings.weight"] = rn(P, C, sd=esd)
    if fam != "distilbert":
        sd[b + "embeddings.token_type_embeddings.weight"] = rn(cfg["type_vocab_size"], C, sd=esd)
        sd[b + "embeddings.position_ids"] = torch.arange(P)  # a buffer, not a parameter
    sd[b + "embeddings.LayerNorm.weight"] = 1 + rn(C, sd=0.1)
    sd[b + "embeddings.LayerNorm.bias"] = rn(C, sd=0.1)
    for l in range(L):
        p = f"{stack}{l}."
        for n in names[:4]:
            sd[p + n + ".weight"] = rn(C, C, sd=1 / math.sqrt(C))
            sd[p + n + ".bias"] = rn(C, sd=0.1)
        for n in (names[4], names[7]):
            sd[p + n + ".weight"] = 1 + rn(C, sd=0.1)
            sd[p + n + ".bias"] = rn(C, sd=0.1)
        sd[p + names[5] + ".weight"] = rn(FF, C, sd=1 / math.sqrt(C))
        sd[p + names[5] + ".bias"] = rn(FF, sd=0.1)
        sd[p + names[6] + ".weight"] = rn(C, FF, sd=1 / math.sqrt(FF))
        sd[p + names[6] + ".bias"] = rn(C, sd=0.1)
    dense = {"distilbert": "pre_classifier", "bert": "bert.pooler.dense", "roberta": "classifier.dense"}[fam]
    out = {"distilbert": "classifier", "bert": "classifier", "roberta": "classifier.out_proj"}[fam]
    sd[dense + ".weight"] = rn(C, C, sd=1 / math.sqrt(C))
    sd[dense + ".bias"] = rn(C, sd=0.1)
    sd[out + ".weight"] = rn(K, C, sd=1.5 / math.sqrt(C))
    sd[out + ".bias"] = rn(K, sd=0.1)
    # "half": tensors rounded to float16 (the forward uses the rounded
    # values; a .bin stores them as float16, a safetensors as their float32)
    half = set(s.get("half", []))
    for n in half:
        sd[n] = sd[n].half().float()
    if s.get("weights") == "bin":
        # torch.save's zip format, as save_pretrained wrote before
        # safetensors: an OrderedDict with a _metadata attribute; the
        # classifier's bias a view at offset 2 of a larger storage
        import collections
        od = collections.OrderedDict((k, v.half() if k in half else v) for k, v in sd.items())
        od._metadata = collections.OrderedDict([("", {"version": 1})])
        bias = od[out + ".bias"]
        od[out + ".bias"] = torch.cat([torch.zeros(2), bias, torch.ones(1)])[2:2 + bias.numel()]
        torch.save(od, os.path.join(d, "pytorch_model.bin"))
        return cfg, sd, tok
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
    from gpt2_torch import write_safetensors  # the engine's golden peer's writer
    write_safetensors(os.path.join(d, "model.safetensors"), sd)
    return cfg, sd, tok


# ------------------------------------------------------------------ forward

def forward(cfg, sd, ids):
    fam = cfg["model_type"]
    x_ids = torch.tensor(ids, dtype=torch.long)
    T = len(ids)
    if fam == "distilbert":
        b, C, H = "distilbert.", cfg["dim"], cfg["n_heads"]
        L, act, eps = cfg["n_layers"], cfg["activation"], 1e-12
        names = ["attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin",
                 "sa_layer_norm", "ffn.lin1", "ffn.lin2", "output_layer_norm"]
        stack = b + "transformer.layer."
        pos = torch.arange(T)
    else:
        b, C, H = fam + ".", cfg["hidden_size"], cfg["num_attention_heads"]
        L, act, eps = cfg["num_hidden_layers"], cfg["hidden_act"], cfg["layer_norm_eps"]
        names = ["attention.self.query", "attention.self.key", "attention.self.value",
                 "attention.output.dense", "attention.output.LayerNorm", "intermediate.dense",
                 "output.dense", "output.LayerNorm"]
        stack = b + "encoder.layer."
        if fam == "roberta":  # create_position_ids_from_input_ids
            pad = cfg["pad_token_id"]
            mask = (x_ids != pad).long()
            pos = torch.cumsum(mask, 0) * mask + pad
        else:
            pos = torch.arange(T)
    d = C // H

    def lin(x, p):
        return x @ sd[p + ".weight"].T + sd[p + ".bias"]

    def ln(x, p):
        return F.layer_norm(x, (C,), sd[p + ".weight"], sd[p + ".bias"], eps)

    def f_act(x):
        if act == "gelu":
            return F.gelu(x)
        if act == "relu":
            return F.relu(x)
        return F.gelu(x, approximate="tanh")

    x = sd[b + "embeddings.word_embeddings.weight"][x_ids]
    if fam != "distilbert":
        x = x + sd[b + "embeddings.token_type_embeddings.weight"][torch.zeros(T, dtype=torch.long)]
    x = x + sd[b + "embeddings.position_embeddings.weight"][pos]
    x = ln(x, b + "embeddings.LayerNorm")
    for l in range(L):
        p = f"{stack}{l}."
        q = lin(x, p + names[0]).view(T, H, d).transpose(0, 1)
        k = lin(x, p + names[1]).view(T, H, d).transpose(0, 1)
        v = lin(x, p + names[2]).view(T, H, d).transpose(0, 1)
        if fam == "distilbert":
            s = (q / math.sqrt(d)) @ k.transpose(1, 2)
        else:
            s = (q @ k.transpose(1, 2)) / math.sqrt(d)
        ctx = (torch.softmax(s, -1) @ v).transpose(0, 1).reshape(T, C)
        x1 = ln(lin(ctx, p + names[3]) + x, p + names[4])
        x = ln(lin(f_act(lin(x1, p + names[5])), p + names[6]) + x1, p + names[7])
    cls = x[0]
    if fam == "distilbert":
        logits = lin(F.relu(lin(cls, "pre_classifier")), "classifier")
    elif fam == "bert":
        logits = lin(torch.tanh(lin(cls, "bert.pooler.dense")), "classifier")
    else:
        logits = lin(torch.tanh(lin(cls, "classifier.dense")), "classifier.out_proj")
    K = logits.shape[0]
    if cfg.get("problem_type") == "multi_label_classification" or K == 1:
        return torch.sigmoid(logits).tolist()
    return torch.softmax(logits, -1).tolist()


# ------------------------------------------------------------- tokenizers

def _control(c):
    return c not in "\t\n\r" and unicodedata.category(c).startswith("C")


def _space(c):
    return c in "\t\n\r" or c.isspace()


def _punct(c):
    o = ord(c)
    return 33 <= o <= 47 or 58 <= o <= 64 or 91 <= o <= 96 or 123 <= o <= 126 or \
        unicodedata.category(c).startswith("P")


def _cjk(o):
    return (0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0x20000 <= o <= 0x2A6DF or
            0x2A700 <= o <= 0x2B73F or 0x2B740 <= o <= 0x2B81F or 0x2B820 <= o <= 0x2CEAF or
            0xF900 <= o <= 0xFAFF or 0x2F800 <= o <= 0x2FA1F)


def wordpiece_tokens(vocab, text, lower=True, strip=None):
    """BertNormalizer (clean, CJK, strip accents, per-character lower case),
    BertPreTokenizer, WordPiece: the fast tokenizer's order."""
    if strip is None:
        strip = lower
    s = "".join(" " if _space(c) else c for c in text
                if not (ord(c) == 0 or ord(c) == 0xFFFD or _control(c)))
    s = "".join(f" {c} " if _cjk(ord(c)) else c for c in s)
    if strip:
        s = "".join(c for c in unicodedata.normalize("NFD", s) if unicodedata.category(c) != "Mn")
    if lower:
        s = "".join(c.lower() for c in s)
    words, cur = [], ""
    for c in s:
        if _space(c) or _punct(c):
            if cur:
                words.append(cur)
            cur = ""
            if _punct(c):
                words.append(c)
        else:
            cur += c
    if cur:
        words.append(cur)
    out = []
    for w in words:
        if len(w) > 100:
            out.append("[UNK]")
            continue
        pieces, start = [], 0
        while start < len(w):
            end, hit = len(w), None
            while end > start:
                sub = ("##" if start else "") + w[start:end]
                if sub in vocab:
                    hit = sub
                    break
                end -= 1
            if hit is None:
                pieces = ["[UNK]"]
                break
            pieces.append(hit)
            start = end
        out += pieces
    return out


ASCII_SPLIT = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+")


def bpe_ids(tok, text):
    """Byte-level BPE for ASCII text: GPT-2's pattern is these classes there."""
    enc, vocab = byte_alphabet(), tok["vocab"]
    ranks = {m: i for i, m in enumerate(tok["merges"])}
    ids = []
    for piece in ASCII_SPLIT.findall(text):
        sym = [enc[b] for b in piece.encode()]
        while len(sym) > 1:
            best = min(range(len(sym) - 1), key=lambda i: ranks.get((sym[i], sym[i + 1]), 1 << 30))
            if (sym[best], sym[best + 1]) not in ranks:
                break
            sym[best:best + 2] = [sym[best] + sym[best + 1]]
        ids += [vocab[x] for x in sym]
    return ids


def text_ids(cfg, tok, text, lower):
    P = cfg["max_position_embeddings"]
    if cfg["model_type"] == "roberta":
        body = bpe_ids(tok, text)[:P - 2 - 2]
        return [0] + body + [2]
    v = tok["vocab"]
    body = [v[t] for t in wordpiece_tokens(v, text, lower)][:P - 2]
    return [v["[CLS]"]] + body + [v["[SEP]"]]


def main():
    global torch, F
    spec = json.load(open(sys.argv[1]))
    out = {}
    if "wordpiece" in spec:  # {"vocab": [...], "texts": [...], "lower": bool}
        w = spec["wordpiece"]
        v = {t: i for i, t in enumerate(w["vocab"])}
        out["tokens"] = [wordpiece_tokens(v, t, w.get("lower", True)) for t in w["texts"]]
    if not spec.get("folders"):
        json.dump(out, open(sys.argv[2], "w"))
        return
    import torch as _torch
    import torch.nn.functional as _F
    torch, F = _torch, _F
    torch.set_num_threads(1)
    with torch.no_grad():
        for s in spec["folders"]:
            cfg, sd, tok = make_folder(s)
            r = {"ids_probs": [forward(cfg, sd, ids) for ids in s.get("ids", [])]}
            r["text_ids"] = [text_ids(cfg, tok, t, s.get("lower", True)) for t in s.get("texts", [])]
            r["text_probs"] = [forward(cfg, sd, ids) for ids in r["text_ids"]]
            out[s["dir"]] = r
    json.dump(out, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
