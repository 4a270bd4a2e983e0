#!/usr/bin/python3
"""PyTorch references (Debian's python3-torch 1.13) for
tests/trainer/test_gpt2_half.c: 16-bit weights.

    gpt2_half_reference.py round VALUES.bin
        VALUES.bin: little-endian float32 values. Prints JSON: "bf16" and
        "f16", each value's bits after .to(torch.bfloat16) and .half()
        (PyTorch's round to nearest even), and "up_bf16" and "up_f16", the
        float32 bits of every one of the 65536 16-bit patterns widened by
        .float().

    gpt2_half_reference.py nll MODEL.safetensors DTYPE INPUT.json
        MODEL.safetensors: a GPT-2 the test exported in float32. DTYPE bf16
        or f16: the embedding (the tied LM head) and each block's four
        matrices are rounded to it and widened back to float32 (the model in
        16 bits run in float32), the rest stays float32, as dfpo's
        model_set_weight_dtype keeps them. INPUT.json: {"seq": [ids]}, within
        the context. Prints {"nll": sum over i >= 1 of -log p(seq[i] |
        seq[:i])} (float64 log-softmax).
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from gpt2_torch import gpt2_forward, read_safetensors  # noqa: E402

BIG = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def cmd_round(path):
    with open(path, "rb") as f:
        x = torch.frombuffer(bytearray(f.read()), dtype=torch.float32)
    u16 = lambda t: [v & 0xFFFF for v in t.view(torch.int16).tolist()]
    allbits = torch.arange(65536, dtype=torch.int32).to(torch.int16)
    u32 = lambda t: [v & 0xFFFFFFFF for v in t.view(torch.int32).tolist()]
    print(json.dumps({
        "bf16": u16(x.to(torch.bfloat16)),
        "f16": u16(x.half()),
        "up_bf16": u32(allbits.view(torch.bfloat16).float()),
        "up_f16": u32(allbits.view(torch.float16).float()),
    }))


def cmd_nll(model, dtype, inp):
    P, meta = read_safetensors(model)
    cfg = {k: int(v) for k, v in meta.items() if k != "format"}
    dt = {"bf16": torch.bfloat16, "f16": torch.float16}[dtype]
    for name in list(P):
        if name == "wte.weight" or name.endswith(BIG):
            P[name] = P[name].to(dt).float()
    with open(inp) as f:
        seq = json.load(f)["seq"]
    with torch.no_grad():
        tok = torch.tensor(seq[:-1], dtype=torch.long)[None]
        logits = gpt2_forward(P, cfg, tok, torch.zeros(1, dtype=torch.long))[0]
        logp = F.log_softmax(logits.double(), dim=-1)
        nll = sum(-logp[i - 1, seq[i]].item() for i in range(1, len(seq)))
    print(json.dumps({"nll": nll}))


if sys.argv[1] == "round":
    cmd_round(sys.argv[2])
else:
    cmd_nll(sys.argv[2], sys.argv[3], sys.argv[4])
