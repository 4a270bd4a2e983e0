#!/usr/bin/python3
"""The GPU peers of `dfpo bench --device cuda` (run by bench/device_check.sh).

    gpt2_torch_cuda.py train --shape gpt2-124M --batch 4 --seq 64 [--steps 3]
                             [--tf32 | --bf16] [--device cuda]
        PyTorch eager, the model of bench/gpt2_torch.py
        (scaled_dot_product_attention when the torch has it): a training step (forward, cross-entropy, backward,
        AdamW) on random weights and tokens, the best of --steps after one
        warm-up step, timed between torch.cuda.synchronize() calls.

    gpt2_torch_cuda.py generate --shape gpt2-124M --prompts 16 --prompt-len 64
                                --new 48 [--tf32 | --bf16] [--device cuda]
        Hugging Face transformers' GPT2LMHeadModel.generate (KV cache,
        top-k 50, temperature 1, exactly --new tokens), the better of two runs.

Prints one JSON line like dfpo bench. fp32 unless --tf32 (which sets
torch.backends.cuda.matmul.allow_tf32 and cudnn.allow_tf32) or --bf16
(torch.autocast to bfloat16 around the forward: fp32 weights and AdamW,
bf16 products, PyTorch's usual mixed precision; dfpo's --bf16 rounds only
the matrix products' inputs, so the peer does somewhat less fp32 work).
--device cpu runs the same code on the CPU (to check the script without a
GPU; --bf16 is then CPU autocast where the torch has it).
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt2_torch import GPT2, SHAPES  # noqa: E402  (the CPU peer's model, device-aware)

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
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--device", default="cuda")
    a = ap.parse_args()
    dev = torch.device(a.device)
    if a.bf16:
        amp = lambda: torch.autocast(device_type=dev.type, dtype=torch.bfloat16)  # noqa: E731
    else:
        import contextlib
        amp = contextlib.nullcontext
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = a.tf32
        torch.backends.cudnn.allow_tf32 = a.tf32
    torch.manual_seed(0)
    L, NH, C = SHAPES[a.shape]
    res = {"peer": "pytorch" if a.what == "train" else "transformers", "torch": torch.__version__,
           "shape": a.shape, "device": str(dev), "tf32": a.tf32, "bf16": a.bf16}
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
            with amp():
                logits, _ = model(tok[:, :-1])
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                       tok[:, 1:].reshape(-1))
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
        with torch.no_grad(), amp():
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
