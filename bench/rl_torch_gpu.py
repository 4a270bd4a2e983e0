#!/usr/bin/python3
"""The PyTorch + transformers peer of `dfpo bench --what rl` (run by
bench/device_check.sh): one IMDB-shaped RL iteration of PPO or DfPO doing
the work rl_iterate does, written the way such a loop is written with
transformers, timed by parts between synchronisations.

    rl_torch_gpu.py --algo ppo|dfpo [--shape gpt2-124M] [--prompts 16]
                    [--prompt-len 64] [--new 48] [--tf32] [--device cuda]

The models, all random (transformers' own initialisation): a policy and a
frozen reference (GPT2LMHeadModel, the reference a copy of the policy), a
value model (a GPT2Model trunk with a linear head) and the sentiment-judge
stand-in (a GPT2Model with a 2-class linear head read at the last token,
reward = P(class 1)), as dfpo bench builds them. The parts:

  generation  PPO: transformers' generate (sampling, top-k 50, exactly --new
              tokens: min_new_tokens = max_new_tokens). DfPO: a KV-cache
              loop with the policy and the reference in lock step: top-k 50
              on the policy's logits, the end-of-text token banned (the
              minimum length is --new), then DfPO's mask over that support
              (rows 0 .. ceil(B/2)-1 draw from pi+ = {a: pi(a) <= pi_ref(a)},
              the others from pi- = {a: pi(a) >= pi_ref(a)}; the token with
              the extreme log-ratio kept should the set be empty), a draw
  passes      the policy's, the reference's and the value model's forward
              over the B x (prompt + new) rollouts: log-probabilities of the
              actions, values
  scoring     the judge's forward
  update      per-token KL rewards (beta 0.1 for PPO, 0 for DfPO) plus the
              judge's reward on the last token, GAE (gamma 0.99, lambda
              0.95); DfPO truncates the advantages by the row's sign (A+ =
              max(A, 0), A- = min(A, 0)); then 5 epochs of one minibatch of
              all B rows (dfpo's minibatch 64 holds them all): the policy's
              clipped surrogate (eps 0.2; PPO's advantages normalised),
              backward, gradient norm clipped to 0.5, AdamW (lr 1e-5); the
              value model's 0.5 * 0.5 * mean (V - R)^2, the same

Prints one JSON line with the keys of dfpo bench's (iteration_s,
generate_s, passes_s, scoring_s, update_s), the best of --steps iterations
after one warm-up. Without transformers (the project's build machine) the
models are bench/gpt2_torch.py's GPT2 (the same architecture written out in
PyTorch) and PPO's generation is the KV-cache loop above without the mask;
the JSON says which ("models").
"""
import argparse
import copy
import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt2_torch import GPT2, SHAPES  # noqa: E402

EOT = 50256
V = 50257


class Own:
    """bench/gpt2_torch.py's GPT2 behind the calls the loop makes."""

    def __init__(self, L, NH, C, dev):
        self.m = GPT2(L, NH, C).to(dev)

    def step(self, tok, past, start):
        logits, pres = self.m(tok, past=past, start=start, last_only=True)
        return logits[:, -1], pres

    def hidden(self, tok):
        m = self.m
        x = m.wte(tok) + m.wpe(torch.arange(tok.shape[1], device=tok.device))
        for blk in m.h:
            x, _ = blk(x)
        return m.ln_f(x)

    def logits(self, tok):
        return self.hidden(tok) @ self.m.wte.weight.t()

    def parameters(self):
        return self.m.parameters()


class HF:
    """transformers' GPT2LMHeadModel (or its GPT2Model trunk)."""

    def __init__(self, L, NH, C, dev):
        from transformers import GPT2Config, GPT2LMHeadModel
        cfg = GPT2Config(n_layer=L, n_head=NH, n_embd=C, vocab_size=V, n_positions=1024)
        self.m = GPT2LMHeadModel(cfg).to(dev)

    def step(self, tok, past, start):
        out = self.m(input_ids=tok, past_key_values=past, use_cache=True)
        return out.logits[:, -1], out.past_key_values

    def hidden(self, tok):
        return self.m.transformer(input_ids=tok).last_hidden_state

    def logits(self, tok):
        return self.m(input_ids=tok).logits

    def parameters(self):
        return self.m.parameters()


def sample_loop(pol, ref, prompts, new, plus_rows):
    """KV-cache sampling, top-k 50, end-of-text banned; with ref, DfPO's mask."""
    B = prompts.shape[0]
    tok, past, rpast, start, out = prompts, None, None, 0, []
    sign = torch.ones(B, 1, dtype=torch.bool, device=prompts.device)
    sign[plus_rows:] = False
    for _ in range(new):
        z, past = pol.step(tok, past, start)
        z = z.float()
        kth = torch.topk(z, 50, dim=-1).values[:, -1:]
        z = z.masked_fill(z < kth, float("-inf"))
        z[:, EOT] = float("-inf")
        if ref is not None:
            r, rpast = ref.step(tok, rpast, start)
            sup = torch.isfinite(z)
            lp = torch.log_softmax(z, -1)
            lr = torch.log_softmax(r.float().masked_fill(~sup, float("-inf")), -1)
            d = (lp - lr).masked_fill(~sup, float("nan"))
            keep = torch.where(sign, d <= 0, d >= 0) & sup
            # never empty: keep the token with the extreme log-ratio
            ext = torch.where(sign, d.nan_to_num(nan=float("inf")).argmin(-1, keepdim=True),
                              d.nan_to_num(nan=float("-inf")).argmax(-1, keepdim=True))
            keep.scatter_(1, ext, True)
            z = z.masked_fill(~keep, float("-inf"))
        a = torch.multinomial(torch.softmax(z, -1), 1)
        out.append(a)
        start += tok.shape[1]
        tok = a
    return torch.cat(out, 1)


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def iteration(a, dev, pol, ref, val, vhead, judge, jhead, opt_p, opt_v, prompts):
    B, Tp, N = a.prompts, a.prompt_len, a.new
    dfpo = a.algo == "dfpo"
    plus = math.ceil(B / 2)
    t = {}
    sync(dev)
    t0 = time.perf_counter()
    with torch.no_grad():
        if not dfpo and isinstance(pol, HF):
            seq = pol.m.generate(prompts, attention_mask=torch.ones_like(prompts), do_sample=True,
                                 top_k=50, temperature=1.0, max_new_tokens=N, min_new_tokens=N,
                                 pad_token_id=EOT)
            cont = seq[:, Tp:]
        else:
            cont = sample_loop(pol, ref if dfpo else None, prompts, N, plus)
        seq = torch.cat([prompts, cont], 1)
    sync(dev)
    t["generate_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    act = seq[:, Tp:]

    def act_logp(model):
        lg = model.logits(seq)[:, Tp - 1:-1].float()
        return torch.log_softmax(lg, -1).gather(2, act.unsqueeze(-1)).squeeze(-1)

    with torch.no_grad():
        logp_old = act_logp(pol)
        logp_ref = act_logp(ref)
        values = vhead(val.hidden(seq)[:, Tp - 1:-1]).squeeze(-1).float()
    sync(dev)
    t["passes_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with torch.no_grad():
        jl = jhead(judge.hidden(seq)[:, -1]).float()
        R = torch.softmax(jl, -1)[:, 1]
    sync(dev)
    t["scoring_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    beta = 0.0 if dfpo else 0.1
    rew = -beta * (logp_old - logp_ref)
    rew[:, -1] += R
    adv = torch.zeros_like(rew)
    last = torch.zeros(B, device=dev)
    for i in reversed(range(N)):
        nv = values[:, i + 1] if i + 1 < N else torch.zeros(B, device=dev)
        delta = rew[:, i] + 0.99 * nv - values[:, i]
        last = delta + 0.99 * 0.95 * last
        adv[:, i] = last
    ret = adv + values
    if dfpo:
        s = torch.zeros(B, 1, dtype=torch.bool, device=dev)
        s[:plus] = True
        adv = torch.where(s, adv.clamp(min=0), adv.clamp(max=0))
    else:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    vparams = list(val.parameters()) + list(vhead.parameters())
    for _ in range(5):
        opt_p.zero_grad(set_to_none=True)
        lp = act_logp(pol)
        rho = torch.exp(lp - logp_old)
        loss = -torch.min(rho * adv, rho.clamp(0.8, 1.2) * adv).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(pol.parameters()), 0.5)
        opt_p.step()
        opt_v.zero_grad(set_to_none=True)
        v = vhead(val.hidden(seq)[:, Tp - 1:-1]).squeeze(-1).float()
        vloss = 0.5 * 0.5 * ((v - ret) ** 2).mean()
        vloss.backward()
        torch.nn.utils.clip_grad_norm_(vparams, 0.5)
        opt_v.step()
    sync(dev)
    t["update_s"] = time.perf_counter() - t0
    t["iteration_s"] = sum(t.values())
    return t


def main():
    ap = argparse.ArgumentParser(prog="rl_torch_gpu.py")
    ap.add_argument("--algo", choices=["ppo", "dfpo"], default="ppo")
    ap.add_argument("--shape", default="gpt2-124M")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--new", type=int, default=48)
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--tf32", action="store_true")
    ap.add_argument("--device", default="cuda")
    a = ap.parse_args()
    dev = torch.device(a.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = a.tf32
        torch.backends.cudnn.allow_tf32 = a.tf32
    torch.manual_seed(0)
    L, NH, C = SHAPES[a.shape]
    try:
        import transformers  # noqa: F401
        Model, models = HF, "transformers %s" % transformers.__version__
    except ImportError:
        Model, models = Own, "bench/gpt2_torch.py (transformers is not installed)"
    pol = Model(L, NH, C, dev)
    ref = copy.deepcopy(pol)
    for p in ref.parameters():
        p.requires_grad_(False)
    val, judge = Model(L, NH, C, dev), Model(L, NH, C, dev)
    for p in judge.parameters():
        p.requires_grad_(False)
    vhead = torch.nn.Linear(C, 1).to(dev)
    jhead = torch.nn.Linear(C, 2).to(dev)
    opt_p = torch.optim.AdamW(pol.parameters(), lr=1e-5)
    opt_v = torch.optim.AdamW(list(val.parameters()) + list(vhead.parameters()), lr=1e-5)
    prompts = torch.randint(0, V, (a.prompts, a.prompt_len), device=dev)
    best = None
    for i in range(a.steps + 1):  # the first iteration warms up
        t = iteration(a, dev, pol, ref, val, vhead, judge, jhead, opt_p, opt_v, prompts)
        print("iteration %d: %s" % (i, json.dumps({k: round(v, 4) for k, v in t.items()})),
              file=sys.stderr)
        if i > 0 and (best is None or t["iteration_s"] < best["iteration_s"]):
            best = t
    res = {"peer": "pytorch+transformers", "models": models, "torch": torch.__version__,
           "device": str(dev), "tf32": a.tf32, "algo": a.algo, "shape": a.shape,
           "prompts": a.prompts, "prompt_len": a.prompt_len, "new": a.new, "epochs": 5,
           "iterations": a.steps, "params": sum(p.numel() for p in pol.parameters())}
    if dev.type == "cuda":
        res["gpu"] = torch.cuda.get_device_name(0)
    res.update(best)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
