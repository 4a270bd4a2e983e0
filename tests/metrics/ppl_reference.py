#!/usr/bin/python3
"""Reference perplexities for tests/metrics/test_ppl_engine.c, computed with
PyTorch (Debian's python3-torch) on the model the test exported, one sequence
at a time and without padding, straight from the definitions in
docs/metrics.md:

  ppl_ref: each text is [bos] + ids; target i (i >= 1) is scored once; a text
  longer than the context is scored in windows (first window: targets 1..ctx,
  then `stride` targets per window, each window's input being the ctx tokens
  before its last target).
  ppl_gen: [bos] + prompt (left-truncated to fit) + continuation, only the
  continuation's tokens scored.

    ppl_reference.py MODEL.safetensors INPUT.json  -> prints JSON
"""
import json
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from gpt2_torch import gpt2_forward, read_safetensors  # noqa: E402


def nll_of(P, cfg, seq, first):
    """Sum of -log p(seq[i] | seq[:i]) for i >= first; seq fits the context."""
    tok = torch.tensor(seq[:-1], dtype=torch.long)[None]
    logits = gpt2_forward(P, cfg, tok, torch.zeros(1, dtype=torch.long))[0]
    logp = F.log_softmax(logits.double(), dim=-1)
    return sum(-logp[i - 1, seq[i]].item() for i in range(first, len(seq))), len(seq) - first


def main():
    P, meta = read_safetensors(sys.argv[1])
    cfg = {k: int(v) for k, v in meta.items() if k != "format"}
    with open(sys.argv[2]) as f:
        inp = json.load(f)
    ctx, stride, bos = cfg["n_ctx"], inp["stride"], inp["bos"]
    out = {"ref": [], "gen": []}
    with torch.no_grad():
        for ids in inp["texts"]:
            seq = [bos] + ids
            N, total, count = len(seq), 0.0, 0
            scored = 0  # targets 1..scored are done
            while scored < N - 1:
                end = min(ctx, N - 1) if scored == 0 else min(scored + stride, N - 1)
                start = max(0, end - ctx)
                nll, c = nll_of(P, cfg, seq[start:end + 1], scored + 1 - start)
                total += nll
                count += c
                scored = end
            out["ref"].append([total, count])
        for p, c in zip(inp["prompts"], inp["conts"]):
            room = ctx + 1 - len(c)
            keep = p[len(p) - min(len(p), room):]
            seq = ([bos] if len(keep) < room else []) + keep + c
            out["gen"].append(list(nll_of(P, cfg, seq, len(seq) - len(c))))
    print(json.dumps(out))


main()
