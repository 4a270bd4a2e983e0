#!/usr/bin/python3
"""The PyTorch peer of `dfpo bench --what rl`: one RL iteration of PPO or DfPO
on an IMDB-shaped batch, the same work written with PyTorch (Debian's
python3-torch; the GPT-2 of bench/gpt2_torch.py).

    rl_torch.py [--algo ppo|dfpo] [--shape gpt2-124M] [--prompts 16]
                [--prompt-len 64] [--new 48] [--iterations 1] [--threads 2]

Prints one JSON line with the keys `dfpo bench --what rl` prints
(iteration_s, generate_s, passes_s, scoring_s, update_s: the best
iteration's).

What one iteration does, as dfpo's rl_iterate does it with its defaults
(5 epochs, minibatch 64 rollouts: the 16 rollouts are one minibatch):
  - four GPT-2 models of the shape, random weights: the policy (tied LM
    head), a frozen reference (a copy), a value model (its own trunk and a
    scalar head) and the sentiment-judge stand-in (its own trunk and a
    2-class head, read at the last token);
  - generation: --new tokens for each prompt with a KV cache, top-k 50,
    temperature 1, no end-of-text before --new (min_new = max_new). DfPO:
    the reference decodes in lock step, and the first half of the rows draw
    from pi+ (the policy over {a: pi(a) <= pi_ref(a)}), the rest from pi-
    ({a: pi(a) >= pi_ref(a)}), the sets taken over the top-k support;
  - passes: the policy, the reference and the value model over prompt +
    continuation (log pi_old, log pi_ref, V);
  - scoring: the judge over prompt + continuation;
  - update: per-token KL rewards (beta 0.1 for PPO, 0 for DfPO) and the
    task reward at the last token, GAE (gamma 0.99, lambda 0.95); DfPO
    truncates the advantages (A+ on pi+ rows, A- on pi- rows); 5 epochs of:
    the policy's clipped surrogate (PPO: advantages normalised; DfPO: not),
    backward, grad-norm clip 0.5, AdamW (lr 1e-5); the value loss 0.5 *
    0.5 (V - G)^2, backward, clip, AdamW.
"""
import argparse
import copy
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt2_torch import GPT2, SHAPES, peak_rss_mib  # noqa: E402


def trunk(model, tok, past=None, start=0):
    """The final hidden states (after ln_f) and the new KV cache."""
    T = tok.shape[1]
    x = model.wte(tok) + model.wpe(torch.arange(start, start + T))
    presents = []
    for i, blk in enumerate(model.h):
        x, pr = blk(x, None if past is None else past[i])
        presents.append(pr)
    return model.ln_f(x), presents


class Headed(torch.nn.Module):
    """A GPT-2 trunk with a linear head of `out` outputs (value: 1, judge: 2)."""

    def __init__(self, L, NH, C, out):
        super().__init__()
        self.body = GPT2(L, NH, C)
        self.head = torch.nn.Linear(C, out)

    def forward(self, tok):
        h, _ = trunk(self.body, tok)
        return self.head(h)


def token_logprobs(logits, tok):
    """log p(tok[t+1] | tok[..t]) for every position t."""
    lp = logits[:, :-1].log_softmax(-1)
    return lp.gather(2, tok[:, 1:].unsqueeze(-1)).squeeze(-1)


def generate(policy, ref, prompts, new, dfpo, g):
    B, Tp = prompts.shape
    plus_rows = math.ceil(0.5 * B)
    out = []
    with torch.no_grad():
        h, past = trunk(policy, prompts)
        logits = h[:, -1] @ policy.wte.weight.t()
        if dfpo:
            hr, rpast = trunk(ref, prompts)
            rlogits = hr[:, -1] @ ref.wte.weight.t()
        pos = Tp
        for i in range(new):
            v, ix = logits.topk(50, dim=-1)
            lp = v.log_softmax(-1)
            if dfpo:  # the masks over the top-k support
                rlp = rlogits.log_softmax(-1).gather(1, ix)
                plp = logits.log_softmax(-1).gather(1, ix)
                keep = torch.empty_like(lp, dtype=torch.bool)
                keep[:plus_rows] = plp[:plus_rows] <= rlp[:plus_rows]
                keep[plus_rows:] = plp[plus_rows:] >= rlp[plus_rows:]
                empty = ~keep.any(-1, keepdim=True)
                keep = keep | empty
                lp = lp.masked_fill(~keep, float("-inf")).log_softmax(-1)
            pick = ix.gather(1, torch.multinomial(lp.exp(), 1, generator=g))
            out.append(pick)
            if i == new - 1:
                break
            h, past = trunk(policy, pick, past, pos)
            logits = h[:, -1] @ policy.wte.weight.t()
            if dfpo:
                hr, rpast = trunk(ref, pick, rpast, pos)
                rlogits = hr[:, -1] @ ref.wte.weight.t()
            pos += 1
    return torch.cat(out, dim=1)


def gae(rewards, values, gamma=0.99, lam=0.95):
    B, T = rewards.shape
    adv = torch.zeros_like(rewards)
    last = torch.zeros(B)
    for t in reversed(range(T)):
        nv = values[:, t + 1] if t + 1 < T else torch.zeros(B)
        delta = rewards[:, t] + gamma * nv - values[:, t]
        last = delta + gamma * lam * last
        adv[:, t] = last
    return adv, adv + values


def iteration(models, opts, prompts, a, g):
    policy, ref, value, judge = models
    popt, vopt = opts
    dfpo = a.algo == "dfpo"
    B, Tp = prompts.shape
    t0 = time.perf_counter()
    cont = generate(policy, ref, prompts, a.new, dfpo, g)
    seq = torch.cat([prompts, cont], dim=1)
    t1 = time.perf_counter()
    n = a.new
    with torch.no_grad():
        h, _ = trunk(policy, seq)
        old = token_logprobs(h @ policy.wte.weight.t(), seq)[:, -n:]
        hr, _ = trunk(ref, seq)
        lref = token_logprobs(hr @ ref.wte.weight.t(), seq)[:, -n:]
        vals = value(seq).squeeze(-1)[:, Tp - 1:-1]
    t2 = time.perf_counter()
    with torch.no_grad():
        score = judge(seq)[:, -1].softmax(-1)[:, 1]
    t3 = time.perf_counter()
    beta = 0.0 if dfpo else 0.1
    rewards = -beta * (old - lref)
    rewards[:, -1] += score
    adv, ret = gae(rewards, vals)
    if dfpo:
        plus = math.ceil(0.5 * B)
        adv[:plus] = adv[:plus].clamp(min=0)
        adv[plus:] = adv[plus:].clamp(max=0)
    for _ in range(5):
        perm = torch.randperm(B, generator=g)
        s, A, lo, G = seq[perm], adv[perm], old[perm], ret[perm]
        if not dfpo:
            A = (A - A.mean()) / (A.std() + 1e-8)
        popt.zero_grad(set_to_none=True)
        h, _ = trunk(policy, s)
        lp = token_logprobs(h @ policy.wte.weight.t(), s)[:, -n:]
        rho = (lp - lo).exp()
        loss = -torch.min(rho * A, rho.clamp(0.8, 1.2) * A).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 0.5)
        popt.step()
        vopt.zero_grad(set_to_none=True)
        v = value(s).squeeze(-1)[:, Tp - 1:-1]
        vloss = 0.5 * (0.5 * (v - G) ** 2).mean()
        vloss.backward()
        torch.nn.utils.clip_grad_norm_(value.parameters(), 0.5)
        vopt.step()
    t4 = time.perf_counter()
    return {"iteration_s": t4 - t0, "generate_s": t1 - t0, "passes_s": t2 - t1,
            "scoring_s": t3 - t2, "update_s": t4 - t3}


def main(argv):
    ap = argparse.ArgumentParser(prog="rl_torch.py")
    ap.add_argument("--algo", choices=("ppo", "dfpo"), default="ppo")
    ap.add_argument("--shape", default="gpt2-124M")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--new", type=int, default=48)
    ap.add_argument("--iterations", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    L, NH, C = SHAPES[a.shape]
    policy = GPT2(L, NH, C)
    ref = copy.deepcopy(policy).requires_grad_(False)
    value = Headed(L, NH, C, 1)
    judge = Headed(L, NH, C, 2).requires_grad_(False)
    popt = torch.optim.AdamW(policy.parameters(), lr=1e-5)
    vopt = torch.optim.AdamW(value.parameters(), lr=1e-5)
    g = torch.Generator().manual_seed(0)
    prompts = torch.randint(0, 50257, (a.prompts, a.prompt_len), generator=g)
    best = None
    for i in range(a.iterations):
        r = iteration((policy, ref, value, judge), (popt, vopt), prompts, a, g)
        sys.stderr.write("rl_torch: iteration %d: %.2f s\n" % (i, r["iteration_s"]))
        if best is None or r["iteration_s"] < best["iteration_s"]:
            best = r
    res = {"peer": "pytorch", "torch": torch.__version__, "shape": a.shape,
           "threads": a.threads, "what": "rl", "algo": a.algo, "prompts": a.prompts,
           "prompt_len": a.prompt_len, "new": a.new, "epochs": 5, "iterations": a.iterations}
    res.update(best)
    res["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(res))


if __name__ == "__main__":
    main(sys.argv[1:])
