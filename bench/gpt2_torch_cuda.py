#!/usr/bin/python3
"""The GPU peers of `dfpo bench --device cuda` (run by bench/cuda_check.sh).

    gpt2_torch_cuda.py train --shape gpt2-124M --batch 4 --seq 64 [--steps 3]
                             [--tf32] [--device cuda]
        PyTorch eager, nanoGPT style (scaled_dot_product_attention when the
        torch has it): a training step (forward, cross-entropy, backward,
        AdamW) on random weights and tokens, the best of --steps after one
        warm-up step, timed between torch.cuda.synchronize() calls.

    gpt2_torch_cuda.py generate --shape gpt2-124M --prompts 16 --prompt-len 64
                                --new 48 [--tf32] [--device cuda]
        Hugging Face transformers' GPT2LMHeadModel.generate (KV cache,
        top-k 50, temperature 1, exactly --new tokens), the better of two runs.

Prints one JSON line like dfpo bench. fp32 unless --tf32 (which sets
torch.backends.cuda.matmul.allow_tf32 and cudnn.allow_tf32). --device cpu
runs the same code on the CPU (to check the script without a GPU).
"""
import argparse
import json
import math
import sys
import time

import torch
import torch.nn.functional as F

SHAPES = {"gpt2-124M": (12, 12, 768), "gpt2-350M": (24, 16, 1024),
          "gpt2-774M": (36, 20, 1280), "gpt2-1558M": (48, 25, 1600),
          "gpt2-tiny": (2, 2, 64)}


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

    def forward(self, x):
        B, T, C = x.shape
        HS = C // self.NH
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (z.view(B, T, self.NH, HS).transpose(1, 2) for z in (q, k, v))
        if hasattr(F, "scaled_dot_product_attention"):
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # torch < 2.0
            att = (q @ k.transpose(-2, -1)) / math.sqrt(HS)
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            y = att.masked_fill(~mask, float("-inf")).softmax(dim=-1) @ v
        x = x + self.c_proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


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

    def forward(self, tok):
        T = tok.shape[1]
        x = self.wte(tok) + self.wpe(torch.arange(T, device=tok.device))
        for blk in self.h:
            x = blk(x)
        return self.ln_f(x) @ self.wte.weight.t()


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def main():
    ap = argparse.ArgumentParser(prog="gpt2_torch_cuda.py")
    ap.add_argument("what", choices=["train", "generate"])
    ap.add_argument("--shape", default="gpt2-124M")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--new", type=int, default=48)
    ap.add_argument("--tf32", action="store_true")
    ap.add_argument("--device", default="cuda")
    a = ap.parse_args()
    dev = torch.device(a.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = a.tf32
        torch.backends.cudnn.allow_tf32 = a.tf32
    torch.manual_seed(0)
    L, NH, C = SHAPES[a.shape]
    res = {"peer": "pytorch" if a.what == "train" else "transformers", "torch": torch.__version__,
           "shape": a.shape, "device": str(dev), "tf32": a.tf32}
    if dev.type == "cuda":
        res["gpu"] = torch.cuda.get_device_name(0)
    if a.what == "train":
        model = GPT2(L, NH, C).to(dev)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        tok = torch.randint(0, 50257, (a.batch, a.seq + 1), device=dev)
        times = []
        for _ in range(a.steps + 1):  # the first step warms up
            sync(dev)
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            logits = model(tok[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tok[:, 1:].reshape(-1))
            loss.backward()
            opt.step()
            sync(dev)
            times.append(time.perf_counter() - t0)
        res.update(batch=a.batch, seq=a.seq, step_s=min(times[1:]), steps=a.steps,
                   params=sum(p.numel() for p in model.parameters()))
    else:
        try:
            from transformers import GPT2Config, GPT2LMHeadModel
        except ImportError as e:
            sys.stderr.write("gpt2_torch_cuda.py: transformers is not installed: %s\n" % e)
            sys.exit(2)
        cfg = GPT2Config(n_layer=L, n_head=NH, n_embd=C, vocab_size=50257, n_positions=1024)
        model = GPT2LMHeadModel(cfg).to(dev).eval()
        tok = torch.randint(0, 50257, (a.prompts, a.prompt_len), device=dev)
        times = []
        with torch.no_grad():
            for _ in range(2):
                sync(dev)
                t0 = time.perf_counter()
                model.generate(tok, attention_mask=torch.ones_like(tok), do_sample=True, top_k=50,
                               temperature=1.0, max_new_tokens=a.new, min_new_tokens=a.new,
                               use_cache=True, pad_token_id=50256)
                sync(dev)
                times.append(time.perf_counter() - t0)
        res.update(prompts=a.prompts, prompt_len=a.prompt_len, new=a.new, gen_s=min(times))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
