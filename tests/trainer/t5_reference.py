#!/usr/bin/python3
"""Reference peer for the T5 tests (tests/trainer/test_t5.c).

Hugging Face's transformers is not installed here, so the T5 is
bench/t5_torch.py's, a PyTorch T5ForConditionalGeneration forward pass written
there from the architecture as transformers defines it (modeling_t5.py; its
docstring says how), imported: t5_logits (the encoder over left-padded
sources, the decoder by teacher forcing, the LM head), make_weights (random
weights under Hugging Face's names) and bucket (the relative-position bucket,
exactly, with integers).

It also trains a small SentencePiece model with python3-sentencepiece
(SentencePieceTrainer.train on a text this script writes) with T5's ids
(pad 0, eos 1, unk 2, no bos), and encodes and decodes tricky texts with it.

usage: t5_reference.py ROOT OUT.json
       t5_reference.py --spm DIR
       t5_reference.py --nll FOLDER PAIRS.tsv OUT.json

Writes, under ROOT: spm/spiece.model; v10/ and v11/, Hugging Face T5 folders
(config.json, model.safetensors with random float32 weights under Hugging Face's
names, plus the aliases encoder.embed_tokens.weight and
decoder.embed_tokens.weight; v11 also spiece.model), each with pairs.tsv (source
ids TAB target ids per line); v11/texts.tsv (source text TAB target text);
v10bin/, v10's weights as torch.save's pytorch_model.bin with the aliases and
lm_head.weight sharing shared.weight's storage, and its pairs.tsv; v10scale/
and v11scale/, v10's and v11's weights with transformers 5.17's
scale_decoder_outputs set against the tie (v10 tied but unscaled, v11
untied but scaled), with pairs.tsv ("scale_nll" in OUT).
OUT: {"spm": {"texts": [...], "ids": [[...]], "decoded": [...], "pieces": n},
"folders": {"v10": {"pairs": [[src], [tgt]], "nll": [...]}, "v11": {...,
"text_nll": [...]}}}.

--spm DIR trains the same spiece.model into DIR alone and prints its piece
count (tests/trainer/test_t5_ckpt.c sizes its random T5s by it).

--nll FOLDER PAIRS.tsv OUT.json reads a T5 folder that `dfpo export` wrote
(config.json, model.safetensors): its tensor names and shapes must be exactly
those make_weights() gives for its config (shared.weight without the stacks'
embed_tokens aliases, lm_head.weight only when untied, as transformers'
save_pretrained writes them); OUT: {"nll": [...]}, each pair's negative
log-likelihood under teacher forcing (pair_nll).
"""
import collections
import json
import os
import random
import shutil
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from gpt2_torch import read_safetensors, write_safetensors  # noqa: E402  (the engine's golden peer's)
from t5_torch import bucket, make_weights, t5_logits  # noqa: E402,F401  (the T5 peer's model)

TEXTS = [
    "Héllo, wörld! Crème brûlée, naïve café.",
    "我爱北京天安门。東京タワー",
    "emoji \U0001F600 \u2764\ufe0f and \U0001F44D\U0001F3FD",
    "runs   of    spaces\tand\ttabs  \n newline",
    "   leading and trailing   ",
    "e\u0301 composed é and ﬁ ligature ＡＢＣ full width",
    "unknown: \u16a0\u16a2\u16a6 runes",
    "",
]



def pair_nll(P, cfg, src, tgt):
    s = torch.tensor([src])
    d = torch.tensor([[cfg["decoder_start_token_id"]] + tgt[:-1]])
    lp = F.log_softmax(t5_logits(P, cfg, s, torch.tensor([0]), d)[0], dim=-1)
    return -float(sum(lp[j, t].double() for j, t in enumerate(tgt)))


def train_checks(P, cfg, d, rnd):
    """One batch of 3 rows [source | continuation of 5] with sources of 4, 9
    and 2 tokens (the C side left-pads them into 9 columns; here each row
    runs alone, unpadded). Writes d + "grad/": the gradient of
    sum wl * logp(target) + we * entropy over the output columns as a T5
    folder (each tensor's gradient under its name); returns the weights on
    the [B, T] grid, the gradient of the value head's objective
    sum dv * (hn . v_w + v_b) (v_head's own gradient in the JSON, the rest
    as d + "vgrad/"), the mean cross-entropy before and after one
    torch.optim.AdamW step (lr 1e-2, weight decay 0.01 on matrices only)."""
    V, C = cfg["vocab_size"], cfg["d_model"]
    lens, Lc = [4, 9, 2], 5
    Ts = max(lens)
    T = Ts + Lc
    rows = [([rnd.randrange(V) for _ in range(n)], [rnd.randrange(V) for _ in range(Lc)]) for n in lens]
    tokens, kstart, targets, wl, we, dv = [], [], [], [], [], []
    for b, (src, cont) in enumerate(rows):
        tokens.append([0] * (Ts - len(src)) + src + cont)
        kstart.append(Ts - len(src))
        tg = [-1] * T
        for j in range(Lc):
            tg[Ts - 1 + j] = cont[j]
        if b == 1:
            tg[Ts + 1] = -1  # an output column without a target: its entropy still counts
        targets.append(tg)
        out = [Ts - 1 + j for j in range(Lc)]
        wl.append([round(rnd.uniform(-1, 1), 3) if c in out else 0.0 for c in range(T)])
        we.append([round(rnd.uniform(-1, 1), 3) if c in out else 0.0 for c in range(T)])
        dv.append([round(rnd.uniform(-1, 1), 3) if c in out else 0.0 for c in range(T)])
    vw = [round(rnd.uniform(-0.5, 0.5), 4) for _ in range(C)]
    vb = 0.125
    Q = {k: v.clone().requires_grad_(True) for k, v in P.items()}
    Vw = torch.tensor(vw, requires_grad=True)
    Vb = torch.tensor(vb, requires_grad=True)

    def row_out(Pd, b):
        src, cont = rows[b]
        dec = torch.tensor([[cfg["decoder_start_token_id"]] + cont[:-1]])
        z, hn = t5_logits(Pd, cfg, torch.tensor([src]), torch.tensor([0]), dec, hidden=True)
        return F.log_softmax(z[0], dim=-1), hn[0]

    obj, vobj = 0.0, 0.0
    for b in range(3):
        lp, hn = row_out(Q, b)
        ent = -(lp.exp() * lp).sum(-1)
        for j in range(Lc):
            c = Ts - 1 + j
            if targets[b][c] >= 0:
                obj = obj + wl[b][c] * lp[j, targets[b][c]]
            obj = obj + we[b][c] * ent[j]
            vobj = vobj + dv[b][c] * (hn[j] @ Vw + Vb)
    obj.backward(retain_graph=True)
    grads = {k: v.grad.clone() for k, v in Q.items()}
    write_safetensors(os.path.join(d + "grad", "model.safetensors"), grads)
    for q in Q.values():
        q.grad = None
    vobj.backward()
    vgrads = {k: (v.grad.clone() if v.grad is not None else torch.zeros_like(v)) for k, v in Q.items()}
    write_safetensors(os.path.join(d + "vgrad", "model.safetensors"), vgrads)

    def mean_ce(Pd):
        s, n = 0.0, 0
        for b in range(3):
            lp, _ = row_out(Pd, b)
            for j in range(Lc):
                t = targets[b][Ts - 1 + j]
                if t >= 0:
                    s, n = s - lp[j, t], n + 1
        return s / n

    R = {k: v.clone().requires_grad_(True) for k, v in P.items()}
    opt = torch.optim.AdamW([{"params": [v for v in R.values() if v.dim() == 2], "weight_decay": 0.01},
                             {"params": [v for v in R.values() if v.dim() != 2], "weight_decay": 0.0}],
                            lr=1e-2, betas=(0.9, 0.999), eps=1e-8)
    loss0 = mean_ce(R)
    loss0.backward()
    opt.step()
    with torch.no_grad():
        loss1 = mean_ce(R)
    return {"tokens": tokens, "kstart": kstart, "n_prompt": Ts, "targets": targets, "wl": wl,
            "we": we, "dv": dv, "v_w": vw, "v_b": vb, "v_w_grad": Vw.grad.tolist(),
            "v_b_grad": float(Vb.grad), "loss0": float(loss0), "loss1": float(loss1)}


def greedy(P, cfg, d, rnd, max_new=8):
    """Greedy decoding of 4 prompts of 3, 7, 1 and 12 tokens, each alone:
    the decoder from decoder_start_token_id, argmax of the last position,
    stopping after eos_token_id (1, never drawn here: asserted) or max_new
    tokens. Writes d + "gen/": the folder without a tokenizer (the ids may
    pass the tokenizer's) whose config.json names as eos_token_id the first
    row's third token E (so greedy decoding with that folder's eos is these
    tokens cut after their first E) and prompts.txt;
    returns the tokens, their log-probabilities and the smallest gap between the best and the second
    logit (how far from a tie an argmax was)."""
    V = cfg["vocab_size"]
    prompts = [[rnd.randrange(2, V) for _ in range(n)] for n in (3, 7, 1, 12)]
    os.makedirs(d + "gen", exist_ok=True)
    for fn in ("config.json", "model.safetensors"):
        shutil.copy(os.path.join(d, fn), d + "gen")
    with open(os.path.join(d + "gen", "prompts.txt"), "w") as f:
        for p in prompts:
            f.write(" ".join(map(str, p)) + "\n")
    out, lps, gap = [], [], float("inf")
    with torch.no_grad():
        for p in prompts:
            dec = [cfg["decoder_start_token_id"]]
            toks, lp = [], []
            while len(toks) < max_new:
                z = t5_logits(P, cfg, torch.tensor([p]), torch.tensor([0]), torch.tensor([dec]))[0, -1]
                top = torch.topk(z, 2).values
                gap = min(gap, float(top[0] - top[1]))
                t = int(torch.argmax(z))
                toks.append(t)
                lp.append(float(F.log_softmax(z, dim=-1)[t]))
                dec.append(t)
                if t == cfg["eos_token_id"]:
                    break
            out.append(toks)
            lps.append(lp)
    assert all(cfg["eos_token_id"] not in t for t in out)
    gc = dict(cfg, eos_token_id=out[0][2])
    with open(os.path.join(d + "gen", "config.json"), "w") as f:
        json.dump(gc, f, indent=1)
    return {"prompts": prompts, "tokens": out, "logprobs": lps, "max_new": max_new, "min_gap": gap,
            "eos": out[0][2]}


def train_spm(d):
    import sentencepiece as spm
    os.makedirs(d, exist_ok=True)
    rnd = random.Random(7)
    words = ["the", "movie", "was", "great", "bad", "café", "crème", "brûlée", "naïve", "wörld",
             "hello", "北京", "天安门", "我爱", "東京", "\U0001F600", "\u2764\ufe0f", "film", "plot",
             "actor", "sentence", "generate", "with", "dog", "cat", "run", "jump", "park", "ball"]
    lines = [" ".join(rnd.choice(words) for _ in range(rnd.randint(3, 12))) for _ in range(600)]
    corpus = os.path.join(d, "corpus.txt")
    with open(corpus, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    spm.SentencePieceTrainer.train(input=corpus, model_prefix=os.path.join(d, "spiece"),
                                   vocab_size=120, model_type="unigram", pad_id=0, eos_id=1,
                                   unk_id=2, bos_id=-1, character_coverage=1.0,
                                   hard_vocab_limit=False, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(d, "spiece.model"))
    return sp


def main():
    root, out = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    sp = train_spm(os.path.join(root, "spm"))
    res = {"spm": {"texts": TEXTS, "pieces": sp.get_piece_size(),
                   "ids": [sp.encode(t) for t in TEXTS]}, "folders": {}}
    res["spm"]["decoded"] = [sp.decode(i) for i in res["spm"]["ids"]]
    npieces = sp.get_piece_size()
    shapes = {
        "v10": dict(d_model=32, d_kv=8, d_ff=48, num_heads=4, num_layers=2, num_decoder_layers=3,
                    relative_attention_num_buckets=32, relative_attention_max_distance=128,
                    feed_forward_proj="relu", tie_word_embeddings=True, vocab_size=97),
        "v11": dict(d_model=24, d_kv=10, d_ff=40, num_heads=3, num_layers=3, num_decoder_layers=2,
                    relative_attention_num_buckets=16, relative_attention_max_distance=20,
                    feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                    vocab_size=npieces + 100 + 8),
    }
    for seed, (name, shp) in enumerate(shapes.items()):
        cfg = dict(model_type="t5", architectures=["T5ForConditionalGeneration"],
                   layer_norm_epsilon=1e-6, decoder_start_token_id=0, pad_token_id=0,
                   eos_token_id=1, n_positions=512, is_encoder_decoder=True, **shp)
        d = os.path.join(root, name)
        os.makedirs(d, exist_ok=True)
        gen = torch.Generator().manual_seed(100 + seed)
        P = make_weights(cfg, gen)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f, indent=1)
        files = dict(P)
        files["encoder.embed_tokens.weight"] = P["shared.weight"]
        files["decoder.embed_tokens.weight"] = P["shared.weight"]
        write_safetensors(os.path.join(d, "model.safetensors"), files)
        if name == "v10":
            # the same weights as torch.save writes a tied T5's
            # pytorch_model.bin: the aliases and lm_head.weight one storage
            # with shared.weight
            db = d + "bin"
            os.makedirs(db, exist_ok=True)
            shutil.copy(os.path.join(d, "config.json"), db)
            od = collections.OrderedDict((k, v.clone()) for k, v in P.items())
            for alias in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight"):
                od[alias] = od["shared.weight"]
            torch.save(od, os.path.join(db, "pytorch_model.bin"))
        rnd = random.Random(seed)
        V = cfg["vocab_size"]
        pairs = []
        # source lengths 1..24 (past max_exact and into the logarithmic
        # buckets), target lengths 1..22; several of length 4 and 7 for the
        # batched check
        for k in range(14):
            ns = [1, 2, 5, 9, 13, 24, 17, 3, 8, 11, 6, 20, 4, 15][k]
            nt = [1, 4, 7, 4, 7, 22, 4, 7, 2, 18, 4, 7, 9, 3][k]
            pairs.append([[rnd.randrange(V) for _ in range(ns)], [rnd.randrange(V) for _ in range(nt)]])
        with open(os.path.join(d, "pairs.tsv"), "w") as f:
            for s, t in pairs:
                f.write(" ".join(map(str, s)) + "\t" + " ".join(map(str, t)) + "\n")
        if name == "v10":
            shutil.copy(os.path.join(d, "pairs.tsv"), d + "bin")
        r = {"pairs": pairs, "nll": [pair_nll(P, cfg, s, t) for s, t in pairs]}
        # the same weights with transformers 5.17's scale_decoder_outputs
        # set against the tie: v10 tied but unscaled, v11 untied but scaled
        vc = dict(cfg, scale_decoder_outputs=not cfg["tie_word_embeddings"])
        vd = d + "scale"
        os.makedirs(vd, exist_ok=True)
        shutil.copy(os.path.join(d, "model.safetensors"), vd)
        with open(os.path.join(vd, "config.json"), "w") as f:
            json.dump(vc, f, indent=1)
        shutil.copy(os.path.join(d, "pairs.tsv"), vd)
        r["scale_nll"] = [pair_nll(P, vc, s, t) for s, t in pairs]
        for g in ("grad", "vgrad"):
            os.makedirs(d + g, exist_ok=True)
            shutil.copy(os.path.join(d, "config.json"), d + g)
        r["train"] = train_checks(P, cfg, d, rnd)
        r["greedy"] = greedy(P, cfg, d, rnd)
        if name == "v11":
            shutil.copy(os.path.join(root, "spm", "spiece.model"), os.path.join(d, "spiece.model"))
            tp = [("generate a sentence with: dog cat park", "the dog runs in the park"),
                  ("Crème brûlée, naïve café", "我爱北京 \U0001F600"),
                  ("  spaces   everywhere ", "hello wörld")]
            with open(os.path.join(d, "texts.tsv"), "w", encoding="utf-8") as f:
                for s, t in tp:
                    f.write(s + "\t" + t + "\n")
            r["text_nll"] = [pair_nll(P, cfg, sp.encode(s) + [1], sp.encode(t) + [1]) for s, t in tp]
        res["folders"][name] = r
    with open(out, "w") as f:
        json.dump(res, f)


def cmd_nll(folder, pairs_path, out):
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    assert cfg["model_type"] == "t5" and cfg["architectures"] == ["T5ForConditionalGeneration"], cfg
    P, _ = read_safetensors(os.path.join(folder, "model.safetensors"))
    want = make_weights(cfg, torch.Generator().manual_seed(0))
    assert set(P) == set(want), "names differ: extra %s, missing %s" % (
        sorted(set(P) - set(want)), sorted(set(want) - set(P)))
    for k, v in want.items():
        assert P[k].shape == v.shape, "%s: %s, want %s" % (k, tuple(P[k].shape), tuple(v.shape))
    nll = []
    with open(pairs_path) as f:
        for line in f:
            s, t = line.rstrip("\n").split("\t")
            nll.append(pair_nll(P, cfg, [int(x) for x in s.split()], [int(x) for x in t.split()]))
    with open(out, "w") as f:
        json.dump({"nll": nll}, f)


if __name__ == "__main__":
    if sys.argv[1] == "--spm":
        print(train_spm(sys.argv[2]).get_piece_size())
    elif sys.argv[1] == "--nll":
        cmd_nll(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        main()
