#!/usr/bin/python3
"""The PyTorch peer of dfpo's T5 (Debian's python3-torch; no other packages).

The model is written out here from the architecture as Hugging Face's
transformers defines T5ForConditionalGeneration (modeling_t5.py; transformers
itself is not used): pre-norm blocks with T5LayerNorm (the mean of squares in
float32, no mean subtraction, no bias), attention without the 1/sqrt(d)
scale, a relative position bias computed by layer 0 of each stack and shared
by the others (bidirectional buckets in the encoder, causal in the decoder,
none in cross-attention), the encoder's padding mask on its keys, ReLU (v1.0)
or gelu_new-gated (v1.1) feed-forward, the tied head with the d_model^-0.5
scale (v1.0) or an untied lm_head (v1.1). The bucket is computed exactly with
integers (bucket(): the largest k with (rel / max_exact)^(n - max_exact) >=
(max_distance / max_exact)^k), so no rounding of a logarithm can move it.
The parameters are a dict of tensors under Hugging Face's names.
tests/trainer/t5_reference.py (the T5 tests' reference) imports it.

    t5_torch.py write DIR [--shape t5-base|t5-tiny] [--seed 0]
        Writes a T5 with random float32 weights (make_weights: Hugging Face's
        initialisation scales, norms near 1) as a Hugging Face folder:
        config.json and model.safetensors (shared.weight once, no
        embed_tokens aliases, as save_pretrained writes a tied T5), which
        `dfpo bench --model DIR` and every dfpo command read.

    t5_torch.py bench DIR --what train [--batch 16 --src-len 20 --tgt-len 20]
                          [--steps 2] [--threads 2] [--pairs FILE]
        Times a training step (forward, backward, AdamW) on random source and
        target ids of the folder's T5: the mean cross-entropy of every target
        token under teacher forcing (decoder start 0). The best of --steps
        steps after one warm-up step; "loss" is the first step's (before any
        update). --pairs FILE writes the batch as source TAB target id lines,
        which `dfpo perplexity --model DIR --tokens FILE` scores.

    t5_torch.py bench DIR --what generate [--prompts 64 --prompt-len 20]
                          [--new 20] [--threads 2] [--tokens FILE]
        Times greedy decoding of --new tokens (no end-of-text: every row makes
        them all) for --prompts random sources, the encoder once, then the
        decoder one token at a time with a cache of its self-attention keys
        and values and the cross-attention's computed once: the better of
        two runs (gen_s; gen_cpu_s the lesser CPU time). --tokens FILE writes each prompt and its greedy tokens
        ({"prompt": [...], "tokens": [...]} lines, as `dfpo generate
        --tokens` prints them).

Each bench prints one JSON line (the peer of `dfpo bench --model DIR`;
bench/t5_pair.sh runs both, docs/benchmarks.md).
"""
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt2_torch import peak_rss_mib, read_safetensors, write_safetensors  # noqa: E402

SHAPES = {
    # t5-base (v1.0): 12 + 12 layers, d_model 768, 12 heads of 64, d_ff 3072, ReLU, tied
    "t5-base": dict(d_model=768, d_kv=64, d_ff=3072, num_heads=12, num_layers=12,
                    num_decoder_layers=12, vocab_size=32128),
    # seconds: a check that both sides run
    "t5-tiny": dict(d_model=64, d_kv=16, d_ff=128, num_heads=4, num_layers=2,
                    num_decoder_layers=2, vocab_size=512),
}


def bucket(rel, bidirectional, num_buckets, max_distance):
    """Hugging Face's T5Attention._relative_position_bucket for one
    rel = key - query, exactly: bucket = max_exact + floor(log(rel/max_exact)
    / log(max_distance/max_exact) * (n - max_exact)) without a logarithm."""
    b, n = 0, num_buckets
    if bidirectional:
        n //= 2
        if rel > 0:
            b += n
        rel = abs(rel)
    else:
        rel = -min(rel, 0)
    me = n // 2
    if rel < me:
        return b + rel
    k = 0  # largest k: rel^(n-me) * me^k >= max_distance^k * me^(n-me)
    while k + 1 <= n - 1 - me and rel ** (n - me) * me ** (k + 1) >= max_distance ** (k + 1) * me ** (n - me):
        k += 1
    return b + me + k


def rel_bias(table, Tq, Tk, bidirectional, nb, md):
    idx = torch.tensor([[bucket(j - i, bidirectional, nb, md) for j in range(Tk)] for i in range(Tq)])
    return table[idx].permute(2, 0, 1)  # [NH, Tq, Tk]


def rms(x, w, eps):
    var = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(var + eps))


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def attention(P, pre, xq, xkv, bias, mask, NH, dkv):
    B, Tq, _ = xq.shape
    Tk = xkv.shape[1]
    q = (xq @ P[pre + ".q.weight"].T).view(B, Tq, NH, dkv).transpose(1, 2)
    k = (xkv @ P[pre + ".k.weight"].T).view(B, Tk, NH, dkv).transpose(1, 2)
    v = (xkv @ P[pre + ".v.weight"].T).view(B, Tk, NH, dkv).transpose(1, 2)
    s = q @ k.transpose(-1, -2)  # no 1/sqrt(d)
    if bias is not None:
        s = s + bias[None]
    s = s + mask
    a = F.softmax(s.float(), dim=-1)
    o = (a @ v).transpose(1, 2).reshape(B, Tq, NH * dkv)
    return o @ P[pre + ".o.weight"].T


def ff(P, pre, x, gated):
    if gated:
        h = gelu_new(x @ P[pre + ".wi_0.weight"].T) * (x @ P[pre + ".wi_1.weight"].T)
    else:
        h = F.relu(x @ P[pre + ".wi.weight"].T)
    return h @ P[pre + ".wo.weight"].T


def t5_encode(P, cfg, src, ksrc):
    """The encoder over src [B, Ts] left-padded by ksrc: its output (after
    the final norm) and the additive mask of its padding [B, 1, 1, Ts]."""
    NH, dkv, eps = cfg["num_heads"], cfg["d_kv"], cfg["layer_norm_epsilon"]
    nb, md = cfg["relative_attention_num_buckets"], cfg["relative_attention_max_distance"]
    gated = cfg["feed_forward_proj"] == "gated-gelu"
    B, Ts = src.shape
    neg = torch.finfo(torch.float32).min
    keep = torch.arange(Ts)[None, :] >= ksrc[:, None]  # [B, Ts]
    emask = torch.where(keep, 0.0, neg)[:, None, None, :]
    h = P["shared.weight"][src]
    eb = rel_bias(P["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"], Ts, Ts, True, nb, md)
    for l in range(cfg["num_layers"]):
        p = "encoder.block.%d." % l
        h = h + attention(P, p + "layer.0.SelfAttention", rms(h, P[p + "layer.0.layer_norm.weight"], eps),
                          rms(h, P[p + "layer.0.layer_norm.weight"], eps), eb, emask, NH, dkv)
        h = h + ff(P, p + "layer.1.DenseReluDense", rms(h, P[p + "layer.1.layer_norm.weight"], eps), gated)
    eo = rms(h, P["encoder.final_layer_norm.weight"], eps)
    return eo, emask


def t5_head(P, cfg, out):
    """The LM head over the decoder's final hidden states: v1.0's tied head
    (shared.weight) with the d_model^-0.5 scale, or an untied lm_head. The
    scale is scale_decoder_outputs where the config has it (transformers
    5.17 saves it apart from the tie), else tie_word_embeddings."""
    tied = cfg["tie_word_embeddings"]
    if cfg.get("scale_decoder_outputs", tied):
        out = out * cfg["d_model"] ** -0.5
    return out @ P["shared.weight" if tied else "lm_head.weight"].T


def t5_logits(P, cfg, src, ksrc, dec, hidden=False):
    """src [B, Ts] left-padded by ksrc; dec [B, Td] decoder input ids. With
    hidden, also the decoder's final hidden states (its final norm, before
    the tied head's scale)."""
    NH, dkv, eps = cfg["num_heads"], cfg["d_kv"], cfg["layer_norm_epsilon"]
    nb, md = cfg["relative_attention_num_buckets"], cfg["relative_attention_max_distance"]
    gated = cfg["feed_forward_proj"] == "gated-gelu"
    Td = dec.shape[1]
    neg = torch.finfo(torch.float32).min
    eo, emask = t5_encode(P, cfg, src, ksrc)
    causal = torch.where(torch.arange(Td)[None, :] <= torch.arange(Td)[:, None], 0.0, neg)[None, None]
    db = rel_bias(P["decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"], Td, Td, False, nb, md)
    h = P["shared.weight"][dec]
    for l in range(cfg["num_decoder_layers"]):
        p = "decoder.block.%d." % l
        n = rms(h, P[p + "layer.0.layer_norm.weight"], eps)
        h = h + attention(P, p + "layer.0.SelfAttention", n, n, db, causal, NH, dkv)
        n = rms(h, P[p + "layer.1.layer_norm.weight"], eps)
        h = h + attention(P, p + "layer.1.EncDecAttention", n, eo, None, emask, NH, dkv)
        h = h + ff(P, p + "layer.2.DenseReluDense", rms(h, P[p + "layer.2.layer_norm.weight"], eps), gated)
    out = rms(h, P["decoder.final_layer_norm.weight"], eps)
    z = t5_head(P, cfg, out)
    return (z, out) if hidden else z


def make_weights(cfg, gen):
    C, I, Fd, NH = cfg["d_model"], cfg["num_heads"] * cfg["d_kv"], cfg["d_ff"], cfg["num_heads"]
    V, nb = cfg["vocab_size"], cfg["relative_attention_num_buckets"]
    gated = cfg["feed_forward_proj"] == "gated-gelu"
    P = {}

    def rnd(*shape, sd):
        return torch.randn(*shape, generator=gen) * sd

    P["shared.weight"] = rnd(V, C, sd=1.0)
    for st, L in (("encoder", cfg["num_layers"]), ("decoder", cfg["num_decoder_layers"])):
        for l in range(L):
            p = "%s.block.%d.layer." % (st, l)
            atts = [("0.SelfAttention", "0")] + ([("1.EncDecAttention", "1")] if st == "decoder" else [])
            for a, ln in atts:
                P[p + a + ".q.weight"] = rnd(I, C, sd=(C * cfg["d_kv"]) ** -0.5)
                P[p + a + ".k.weight"] = rnd(I, C, sd=C ** -0.5)
                P[p + a + ".v.weight"] = rnd(I, C, sd=C ** -0.5)
                P[p + a + ".o.weight"] = rnd(C, I, sd=I ** -0.5)
                P[p + ln + ".layer_norm.weight"] = 1.0 + rnd(C, sd=0.2)
            if l == 0:
                P[p + "0.SelfAttention.relative_attention_bias.weight"] = rnd(nb, NH, sd=1.0)
            f = "2" if st == "decoder" else "1"
            if gated:
                P[p + f + ".DenseReluDense.wi_0.weight"] = rnd(Fd, C, sd=C ** -0.5)
                P[p + f + ".DenseReluDense.wi_1.weight"] = rnd(Fd, C, sd=C ** -0.5)
            else:
                P[p + f + ".DenseReluDense.wi.weight"] = rnd(Fd, C, sd=C ** -0.5)
            P[p + f + ".DenseReluDense.wo.weight"] = rnd(C, Fd, sd=Fd ** -0.5)
            P[p + f + ".layer_norm.weight"] = 1.0 + rnd(C, sd=0.2)
        P[st + ".final_layer_norm.weight"] = 1.0 + rnd(C, sd=0.2)
    if not cfg["tie_word_embeddings"]:
        P["lm_head.weight"] = rnd(V, C, sd=C ** -0.5)
    return P




def t5_config(shape):
    """config.json of a v1.0 T5 (ReLU, tied head) of the given SHAPES entry."""
    return dict(model_type="t5", architectures=["T5ForConditionalGeneration"],
                relative_attention_num_buckets=32, relative_attention_max_distance=128,
                feed_forward_proj="relu", tie_word_embeddings=True, layer_norm_epsilon=1e-6,
                decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, n_positions=512,
                is_encoder_decoder=True, dropout_rate=0.0, **SHAPES[shape])


def cmd_write(d, shape, seed):
    cfg = t5_config(shape)
    os.makedirs(d, exist_ok=True)
    P = make_weights(cfg, torch.Generator().manual_seed(seed))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    write_safetensors(os.path.join(d, "model.safetensors"), P)


def load(d):
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    P, _ = read_safetensors(os.path.join(d, "model.safetensors"))
    for alias in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"):
        P.pop(alias, None)
    if cfg.get("tie_word_embeddings", True):
        P.pop("lm_head.weight", None)
    return P, cfg


def greedy_cached(P, cfg, src, new):
    """Greedy decoding of new tokens for the sources src [B, Ts] (no
    padding), the decoder one token at a time: the self-attention's keys
    and values cached per layer, the cross-attention's computed once, the
    position bias of the query at step i over keys 0..i. Returns [B, new]."""
    NH, dkv, eps = cfg["num_heads"], cfg["d_kv"], cfg["layer_norm_epsilon"]
    nb, md = cfg["relative_attention_num_buckets"], cfg["relative_attention_max_distance"]
    gated = cfg["feed_forward_proj"] == "gated-gelu"
    B = src.shape[0]
    I = NH * dkv
    eo, emask = t5_encode(P, cfg, src, torch.zeros(B, dtype=torch.long))

    def heads(x, w):  # [B, T, C] @ w.T as [B, NH, T, dkv]
        return (x @ w.T).view(B, x.shape[1], NH, dkv).transpose(1, 2)

    L = cfg["num_decoder_layers"]
    cross = []
    for l in range(L):
        p = "decoder.block.%d.layer.1.EncDecAttention" % l
        cross.append((heads(eo, P[p + ".k.weight"]), heads(eo, P[p + ".v.weight"])))
    db = rel_bias(P["decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"], new, new,
                  False, nb, md)  # [NH, new, new]; row i's keys 0..i are the causal ones
    ks, vs = [None] * L, [None] * L
    tok = torch.full((B, 1), cfg["decoder_start_token_id"], dtype=torch.long)
    out = []
    for i in range(new):
        h = P["shared.weight"][tok]
        for l in range(L):
            p = "decoder.block.%d." % l
            a = p + "layer.0.SelfAttention"
            n = rms(h, P[p + "layer.0.layer_norm.weight"], eps)
            k, v = heads(n, P[a + ".k.weight"]), heads(n, P[a + ".v.weight"])
            ks[l] = k if i == 0 else torch.cat([ks[l], k], dim=2)
            vs[l] = v if i == 0 else torch.cat([vs[l], v], dim=2)
            s = heads(n, P[a + ".q.weight"]) @ ks[l].transpose(-1, -2) + db[None, :, i:i + 1, :i + 1]
            o = (F.softmax(s.float(), dim=-1) @ vs[l]).transpose(1, 2).reshape(B, 1, I)
            h = h + o @ P[a + ".o.weight"].T
            a = p + "layer.1.EncDecAttention"
            n = rms(h, P[p + "layer.1.layer_norm.weight"], eps)
            s = heads(n, P[a + ".q.weight"]) @ cross[l][0].transpose(-1, -2) + emask
            o = (F.softmax(s.float(), dim=-1) @ cross[l][1]).transpose(1, 2).reshape(B, 1, I)
            h = h + o @ P[a + ".o.weight"].T
            h = h + ff(P, p + "layer.2.DenseReluDense", rms(h, P[p + "layer.2.layer_norm.weight"], eps),
                       gated)
        z = t5_head(P, cfg, rms(h, P["decoder.final_layer_norm.weight"], eps))[:, -1]
        tok = z.argmax(-1, keepdim=True)
        out.append(tok)
    return torch.cat(out, dim=1)


def cmd_bench(argv):
    import argparse
    ap = argparse.ArgumentParser(prog="t5_torch.py bench")
    ap.add_argument("dir")
    ap.add_argument("--what", choices=("train", "generate"), default="train")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--src-len", type=int, default=20)
    ap.add_argument("--tgt-len", type=int, default=20)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--prompt-len", type=int, default=20)
    ap.add_argument("--new", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pairs")
    ap.add_argument("--tokens")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(a.seed)
    P, cfg = load(a.dir)
    V = cfg["vocab_size"]
    res = {"peer": "pytorch", "torch": torch.__version__, "model": a.dir, "threads": a.threads,
           "what": a.what}
    if a.what == "train":
        # ids from 2 up: neither pad nor </s>
        src = torch.randint(2, V, (a.batch, a.src_len), generator=g)
        tgt = torch.randint(2, V, (a.batch, a.tgt_len), generator=g)
        dec = torch.cat([torch.full((a.batch, 1), cfg["decoder_start_token_id"]), tgt[:, :-1]], 1)
        ks = torch.zeros(a.batch, dtype=torch.long)
        if a.pairs:
            with open(a.pairs, "w") as f:
                for s, t in zip(src.tolist(), tgt.tolist()):
                    f.write(" ".join(map(str, s)) + "\t" + " ".join(map(str, t)) + "\n")
        params = [p.requires_grad_() for p in P.values()]
        # AdamW as dfpo's default: lr 1e-4, betas (0.9, 0.999), eps 1e-8, decay 0.01
        opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
        times, cpu, loss0 = [], [], None
        for _ in range(a.steps + 1):  # the first step warms up
            t0, c0 = time.perf_counter(), time.process_time()
            opt.zero_grad(set_to_none=True)
            z = t5_logits(P, cfg, src, ks, dec)
            loss = F.cross_entropy(z.reshape(-1, V), tgt.reshape(-1))
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            if loss0 is None:
                loss0 = float(loss)
        res.update(batch=a.batch, src_len=a.src_len, tgt_len=a.tgt_len, step_s=min(times[1:]),
                   step_cpu_s=min(cpu[1:]), steps=a.steps, step_times=times, loss=loss0)
    else:
        src = torch.randint(2, V, (a.prompts, a.prompt_len), generator=g)
        times, cpu = [], []
        with torch.no_grad():
            for _ in range(2):
                t0, c0 = time.perf_counter(), time.process_time()
                out = greedy_cached(P, cfg, src, a.new)
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
        if a.tokens:
            with open(a.tokens, "w") as f:
                for s, t in zip(src.tolist(), out.tolist()):
                    f.write(json.dumps({"prompt": s, "tokens": t}) + "\n")
        res.update(prompts=a.prompts, prompt_len=a.prompt_len, new=a.new, gen_s=min(times),
                   gen_cpu_s=min(cpu), gen_times=times)
    res["params"] = sum(p.numel() for p in P.values())
    res["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(res))


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "write":
        import argparse
        ap = argparse.ArgumentParser(prog="t5_torch.py write")
        ap.add_argument("dir")
        ap.add_argument("--shape", choices=sorted(SHAPES), default="t5-base")
        ap.add_argument("--seed", type=int, default=0)
        w = ap.parse_args(sys.argv[2:])
        cmd_write(w.dir, w.shape, w.seed)
    elif len(sys.argv) >= 3 and sys.argv[1] == "bench":
        cmd_bench(sys.argv[2:])
    else:
        sys.stderr.write(__doc__)
        sys.exit(1)
