#!/usr/bin/python3
"""The PyTorch peer of dfpo's GPT-2 engine (Debian's python3-torch; no other
packages).

    gpt2_torch.py ref MODEL.safetensors INPUT.json OUT.safetensors
        Builds GPT-2 from the safetensors file the C test wrote (Hugging Face
        names and Conv1D layouts, config from __metadata__), runs the batch of
        INPUT.json and writes the reference logits, loss, every gradient
        ("grad.<tensor name>", Hugging Face layout) and the losses of the
        AdamW steps INPUT.json asks for. Used by tests/trainer/test_gpt2_golden.c.

    gpt2_torch.py nll MODEL.safetensors IDS_FILE [--no-bos]
        Scores the documents of IDS_FILE (one per line, whitespace-separated
        token ids; empty lines skipped), each with <|endoftext|> (50256)
        prepended unless --no-bos, as `dfpo perplexity` does for documents
        within the context; prints {"documents", "tokens", "nll_sum"} as JSON.
        Used by tests/harness/test_engine_cmds.c.

    gpt2_torch.py bench --shape gpt2-124M --batch 4 --seq 64 [--threads 2]
                        [--lora-rank R [--lora-alpha A]]
                        [--gen-prompts 16 --gen-prompt-len 64 --gen-new 48]
        Times a training step (forward, backward, AdamW) and KV-cache
        generation on random weights and tokens; prints one JSON line. The peer
        of `dfpo bench`. With --lora-rank, the step trains LoRA adapters of
        rank R (scale A / R) on c_attn, attn.c_proj, c_fc and mlp.c_proj with
        the base frozen, as `dfpo bench --lora-rank` does (written out here as
        peft computes it: y = W x + b + (A / R) B A x, no dropout).

The model is written out here (no transformers): pre-LayerNorm blocks,
tanh-GELU, learned positions, tied LM head; left padding as dfpo does it (row
b's first kstart[b] tokens are neither attended to nor counted in positions).
"""
import json
import math
import struct
import sys
import time

import torch
import torch.nn.functional as F

SHAPES = {
    "gpt2-124M": (12, 12, 768), "gpt2": (12, 12, 768),
    "gpt2-350M": (24, 16, 1024), "gpt2-medium": (24, 16, 1024),
    "gpt2-774M": (36, 20, 1280), "gpt2-large": (36, 20, 1280),
    "gpt2-1558M": (48, 25, 1600), "gpt2-xl": (48, 25, 1600),
    "gpt2-tiny": (2, 2, 64), "tiny": (2, 2, 64),
}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    tensors = {}
    for name, e in header.items():
        assert e["dtype"] == "F32", name
        b, en = e["data_offsets"]
        t = torch.frombuffer(bytearray(data[base + b:base + en]), dtype=torch.float32)
        tensors[name[12:] if name.startswith("transformer.") else name] = t.reshape(e["shape"])
    return tensors, meta


def write_safetensors(path, tensors, dtypes=None):
    """tensors: name -> tensor, written as float32 unless dtypes (name ->
    "F32", "F16", "BF16" or "BOOL") names another type."""
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        dt = (dtypes or {}).get(name, "F32")
        t = t.detach().contiguous()
        if dt == "F16":
            b = t.to(torch.float16).numpy().tobytes()
        elif dt == "BF16":
            b = t.to(torch.bfloat16).view(torch.int16).numpy().tobytes()
        elif dt == "BOOL":
            b = t.to(torch.bool).numpy().tobytes()
        else:
            b = t.to(torch.float32).numpy().tobytes()
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def gpt2_forward(P, cfg, tok, kstart):
    """P: name -> tensor (Hugging Face layout). Returns the logits [B,T,V]."""
    L, NH = cfg["n_layer"], cfg["n_head"]
    B, T = tok.shape
    C = P["wte.weight"].shape[1]
    HS = C // NH
    ar = torch.arange(T)
    pos = (ar[None, :] - kstart[:, None]).clamp(min=0)
    x = P["wte.weight"][tok] + P["wpe.weight"][pos]
    t_idx, j_idx = ar[:, None], ar[None, :]
    vis = (j_idx <= t_idx)[None] & ((j_idx[None] >= kstart[:, None, None]) | (j_idx == t_idx)[None])
    vis = vis[:, None]  # [B,1,T,T]
    for l in range(L):
        p = lambda s: P["h.%d.%s" % (l, s)]
        h = F.layer_norm(x, (C,), p("ln_1.weight"), p("ln_1.bias"), 1e-5)
        qkv = h @ p("attn.c_attn.weight") + p("attn.c_attn.bias")
        q, k, v = qkv.split(C, dim=2)
        q, k, v = (z.view(B, T, NH, HS).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(HS)
        att = att.masked_fill(~vis, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + y @ p("attn.c_proj.weight") + p("attn.c_proj.bias")
        h = F.layer_norm(x, (C,), p("ln_2.weight"), p("ln_2.bias"), 1e-5)
        h = F.gelu(h @ p("mlp.c_fc.weight") + p("mlp.c_fc.bias"), approximate="tanh")
        x = x + h @ p("mlp.c_proj.weight") + p("mlp.c_proj.bias")
    x = F.layer_norm(x, (C,), P["ln_f.weight"], P["ln_f.bias"], 1e-5)
    return x @ P["wte.weight"].t()


def lr_at(s, step):
    if s["warmup"] > 0 and step < s["warmup"]:
        return s["lr"] * (step + 1) / s["warmup"]
    if s["kind"] == "constant" or s["total"] <= s["warmup"]:
        return s["lr"]
    frac = min(1.0, (step - s["warmup"]) / (s["total"] - s["warmup"]))
    if s["kind"] == "linear":
        return s["lr"] + (s["min_lr"] - s["lr"]) * frac
    return s["min_lr"] + 0.5 * (s["lr"] - s["min_lr"]) * (1 + math.cos(math.pi * frac))


def cmd_ref(model_path, input_path, out_path):
    torch.manual_seed(0)
    P, meta = read_safetensors(model_path)
    cfg = {k: int(v) for k, v in meta.items() if k != "format"}
    with open(input_path) as f:
        inp = json.load(f)
    B, T = inp["B"], inp["T"]
    tok = torch.tensor(inp["tokens"], dtype=torch.long).view(B, T)
    tgt = torch.tensor(inp["targets"], dtype=torch.long).view(B, T)
    ks = torch.tensor(inp["kstart"], dtype=torch.long)
    params = {n: t.clone().requires_grad_(True) for n, t in P.items()}
    logits = gpt2_forward(params, cfg, tok, ks)
    V = logits.shape[-1]
    loss = F.cross_entropy(logits.view(-1, V), tgt.view(-1), ignore_index=-1)
    loss.backward()
    out = {"logits": logits.detach().view(B * T, V), "loss": loss.detach().view(1)}
    for n, t in params.items():
        out["grad." + n] = t.grad.detach()
    # AdamW steps on the same batch, decay on matrices only, as dfpo does
    params = {n: t.clone().requires_grad_(True) for n, t in P.items()}
    decay = [t for t in params.values() if t.dim() >= 2]
    no_decay = [t for t in params.values() if t.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": inp["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=inp["schedule"]["lr"], betas=(0.9, 0.999), eps=1e-8)
    losses = []
    for step in range(inp["steps"]):
        for g in opt.param_groups:
            g["lr"] = lr_at(inp["schedule"], step)
        opt.zero_grad()
        lg = gpt2_forward(params, cfg, tok, ks)
        l = F.cross_entropy(lg.view(-1, V), tgt.view(-1), ignore_index=-1)
        l.backward()
        if inp["clip"] > 0:
            torch.nn.utils.clip_grad_norm_(list(params.values()), inp["clip"])
        opt.step()
        losses.append(l.item())
    out["losses"] = torch.tensor(losses, dtype=torch.float32)
    write_safetensors(out_path, out)


def cmd_nll(model_path, ids_path, bos=True):
    P, meta = read_safetensors(model_path)
    cfg = {k: int(v) for k, v in meta.items() if k != "format"}
    docs, total, nll = 0, 0, 0.0
    with open(ids_path) as f:
        for line in f:
            ids = [int(x) for x in line.split()]
            if not ids:
                continue
            if bos:
                ids = [50256] + ids
            if len(ids) < 2:
                continue
            tok = torch.tensor(ids, dtype=torch.long).view(1, -1)
            with torch.no_grad():
                logits = gpt2_forward(P, cfg, tok, torch.zeros(1, dtype=torch.long))
            lp = torch.log_softmax(logits[0, :-1].double(), dim=-1)
            nll -= lp.gather(1, tok[0, 1:].view(-1, 1)).sum().item()
            total += len(ids) - 1
            docs += 1
    print(json.dumps({"documents": docs, "tokens": total, "nll_sum": nll}))


class Block(torch.nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.NH = NH
        self.ln_1 = torch.nn.LayerNorm(C)
        self.c_attn = torch.nn.Linear(C, 3 * C)
        self.c_proj = torch.nn.Linear(C, C)
        self.ln_2 = torch.nn.LayerNorm(C)
        self.c_fc = torch.nn.Linear(C, 4 * C)
        self.mlp_proj = torch.nn.Linear(4 * C, C)

    def attn(self, x, past):
        B, T, C = x.shape
        HS = C // self.NH
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (z.view(B, T, self.NH, HS).transpose(1, 2) for z in (q, k, v))
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        S = k.shape[2]
        if past is None and hasattr(F, "scaled_dot_product_attention"):
            # torch >= 2.0 (the GPU peers): the fused causal attention
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # torch < 2.0, as Debian's 1.13, and decoding over a cache
            att = (q @ k.transpose(-2, -1)) / math.sqrt(HS)
            if T > 1:
                mask = torch.ones(T, S, dtype=torch.bool, device=x.device).tril(diagonal=S - T)
                att = att.masked_fill(~mask, float("-inf"))
            y = att.softmax(dim=-1) @ v
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.c_proj(y), (k, v)

    def forward(self, x, past=None):
        a, present = self.attn(self.ln_1(x), past)
        x = x + a
        x = x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))
        return x, present


class LoRALinear(torch.nn.Module):
    """A frozen nn.Linear plus a rank-r update: base(x) + scale * (x A^T) B^T,
    A [r, in] Kaiming-uniform, B [out, r] zero (peft's LoRA Linear)."""

    def __init__(self, base, r, alpha):
        super().__init__()
        self.base = base
        self.scale = alpha / r
        self.lora_A = torch.nn.Parameter(torch.empty(r, base.in_features))
        self.lora_B = torch.nn.Parameter(torch.zeros(base.out_features, r))
        torch.nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def forward(self, x):
        return self.base(x) + (x @ self.lora_A.t() @ self.lora_B.t()) * self.scale


def add_lora(model, r, alpha):
    """Freezes every weight and wraps the four adapted layers of each block;
    returns the adapters' parameters."""
    for p in model.parameters():
        p.requires_grad_(False)
    for blk in model.h:
        for name in ("c_attn", "c_proj", "c_fc", "mlp_proj"):
            setattr(blk, name, LoRALinear(getattr(blk, name), r, alpha))
    return [p for p in model.parameters() if p.requires_grad]


class GPT2(torch.nn.Module):
    def __init__(self, L, NH, C, V=50257, P=1024):
        super().__init__()
        self.wte = torch.nn.Embedding(V, C)
        self.wpe = torch.nn.Embedding(P, C)
        self.h = torch.nn.ModuleList([Block(C, NH) for _ in range(L)])
        self.ln_f = torch.nn.LayerNorm(C)
        for p in self.parameters():
            if p.dim() >= 2:
                torch.nn.init.normal_(p, std=0.02)

    def forward(self, tok, past=None, start=0, last_only=False):
        T = tok.shape[1]
        x = self.wte(tok) + self.wpe(torch.arange(start, start + T, device=tok.device))
        presents = []
        for i, blk in enumerate(self.h):
            x, pr = blk(x, None if past is None else past[i])
            presents.append(pr)
        if last_only:  # decoding needs only the last position's logits
            x = x[:, -1:]
        return self.ln_f(x) @ self.wte.weight.t(), presents


def peak_rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def cmd_bench(argv):
    import argparse
    ap = argparse.ArgumentParser(prog="gpt2_torch.py bench")
    ap.add_argument("--shape", default="gpt2-124M")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--gen-prompts", type=int, default=0)
    ap.add_argument("--gen-prompt-len", type=int, default=64)
    ap.add_argument("--gen-new", type=int, default=48)
    ap.add_argument("--lora-rank", type=int, default=0)
    ap.add_argument("--lora-alpha", type=float, default=16.0)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    L, NH, C = SHAPES[a.shape]
    model = GPT2(L, NH, C)
    res = {"peer": "pytorch", "torch": torch.__version__, "shape": a.shape, "threads": a.threads}
    if a.gen_prompts == 0:
        params = add_lora(model, a.lora_rank, a.lora_alpha) if a.lora_rank else model.parameters()
        opt = torch.optim.AdamW(params, lr=1e-4)
        tok = torch.randint(0, 50257, (a.batch, a.seq + 1))
        times = []
        for _ in range(a.steps + 1):  # the first step warms up
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            logits, _ = model(tok[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tok[:, 1:].reshape(-1))
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t0)
        res.update(batch=a.batch, seq=a.seq, step_s=min(times[1:]), steps=a.steps,
                   lora_rank=a.lora_rank)
    else:
        tok = torch.randint(0, 50257, (a.gen_prompts, a.gen_prompt_len))
        g = torch.Generator().manual_seed(0)
        times = []
        with torch.no_grad():
            for _ in range(2):
                t0 = time.perf_counter()
                logits, past = model(tok, last_only=True)
                nxt = logits[:, -1]
                pos = a.gen_prompt_len
                for i in range(a.gen_new):
                    probs = (nxt / 1.0).softmax(-1)
                    # top-k 50 as the IMDB task samples
                    v, ix = probs.topk(50, dim=-1)
                    pick = ix.gather(1, torch.multinomial(v, 1, generator=g))
                    if i == a.gen_new - 1:
                        break
                    logits, past = model(pick, past, pos, last_only=True)
                    nxt = logits[:, -1]
                    pos += 1
                times.append(time.perf_counter() - t0)
        res.update(prompts=a.gen_prompts, prompt_len=a.gen_prompt_len, new=a.gen_new,
                   gen_s=min(times))
    res["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(res))


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "ref" and len(sys.argv) == 5:
        cmd_ref(*sys.argv[2:])
    elif len(sys.argv) in (4, 5) and sys.argv[1] == "nll":
        cmd_nll(sys.argv[2], sys.argv[3], bos=sys.argv[4:] != ["--no-bos"])
    elif len(sys.argv) >= 2 and sys.argv[1] == "bench":
        cmd_bench(sys.argv[2:])
    else:
        sys.stderr.write(__doc__)
        sys.exit(1)
