#!/usr/bin/python3
"""Reference peer for the rotary decoders' backward ops (tests/trainer/test_rdec.c):
rope_fwd/rope_bwd and swiglu_fwd/swiglu_bwd against PyTorch autograd.

usage: rdec_ops_reference.py IN.json OUT.json

IN: {"rope": [{"x": [N*ld], "ld", "pos": [N], "nh", "hs", "rot",
"interleaved", "base", "dy": [N*ld]}, ...], "swiglu": {"gu": [N*2F], "F",
"dout": [N*F]}}. The rotary embedding is written from Hugging Face's
equations (GPT-J's rotate_every_two with sin/cos repeat_interleave'd for the
interleaved form, rotate_half with sin/cos concatenated for the half-split
form; inv_freq = 1 / base^(arange(0, rot, 2) / rot)), the angles in float64,
applied to the first rot channels of each head of each row (the row's
channels past nh * hs untouched). SwiGLU is silu(gate) * up. Everything in
float64; the gradients are those of sum(dy * y) by autograd.

OUT: {"rope": [{"y": [...], "dx": [...]}, ...], "swiglu": {"out": [...],
"dgu": [...]}}.
"""
import json
import sys

import torch
import torch.nn.functional as F


def rope(x, pos, nh, hs, rot, interleaved, base):
    """x [N, ld] float64; returns the rotated copy."""
    N = x.shape[0]
    heads = x[:, : nh * hs].view(N, nh, hs)
    inv = 1.0 / (base ** (torch.arange(0, rot, 2, dtype=torch.float64) / rot))
    ang = pos.double()[:, None] * inv[None, :]  # [N, rot/2]
    cos, sin = ang.cos()[:, None, :], ang.sin()[:, None, :]
    xr, xp = heads[..., :rot], heads[..., rot:]
    if interleaved:
        c2, s2 = cos.repeat_interleave(2, -1), sin.repeat_interleave(2, -1)
        rotated = torch.stack((-xr[..., 1::2], xr[..., ::2]), dim=-1).flatten(-2)
    else:
        c2, s2 = torch.cat((cos, cos), -1), torch.cat((sin, sin), -1)
        rotated = torch.cat((-xr[..., rot // 2 :], xr[..., : rot // 2]), -1)
    out = torch.cat((xr * c2 + rotated * s2, xp), -1).reshape(N, nh * hs)
    return torch.cat((out, x[:, nh * hs :]), -1)


def main():
    inp = json.load(open(sys.argv[1]))
    res = {"rope": [], "swiglu": {}}
    for c in inp["rope"]:
        ld = c["ld"]
        x = torch.tensor(c["x"], dtype=torch.float64).view(-1, ld).requires_grad_()
        dy = torch.tensor(c["dy"], dtype=torch.float64).view(-1, ld)
        y = rope(x, torch.tensor(c["pos"]), c["nh"], c["hs"], c["rot"], c["interleaved"], c["base"])
        (y * dy).sum().backward()
        res["rope"].append({"y": y.detach().flatten().tolist(), "dx": x.grad.flatten().tolist()})
    s = inp["swiglu"]
    Fw = s["F"]
    gu = torch.tensor(s["gu"], dtype=torch.float64).view(-1, 2 * Fw).requires_grad_()
    dout = torch.tensor(s["dout"], dtype=torch.float64).view(-1, Fw)
    out = F.silu(gu[:, :Fw]) * gu[:, Fw:]
    (out * dout).sum().backward()
    res["swiglu"] = {"out": out.detach().flatten().tolist(), "dgu": gu.grad.flatten().tolist()}
    json.dump(res, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
