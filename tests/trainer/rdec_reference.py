#!/usr/bin/python3
"""Reference peer for the rotary decoders' test (tests/trainer/test_rdec.c).

Hugging Face's transformers is not installed here, so this script carries its
own PyTorch forward passes of GPTJForCausalLM, GPTNeoXForCausalLM and
LlamaForCausalLM, written from the equations of the three architectures as
transformers defines them (modeling_gptj.py, modeling_gpt_neox.py,
modeling_llama.py):

- rotary embeddings with inv_freq = 1 / base^(arange(0, rot, 2) / rot) in
  float32 and angles position * inv_freq, applied to the first rot channels
  of each q and k head: GPT-J's rotate_every_two (pairs 2i, 2i+1, sin and cos
  repeat_interleave'd), GPT-NeoX's and Llama's rotate_half (pairs i, i+rot/2);
- GPT-J: x + attn(ln_1 x) + mlp(ln_1 x), q/k/v/out_proj without bias,
  fc_in/fc_out with gelu_new, ln_f, lm_head with a bias;
- GPT-NeoX: query_key_value viewed as [T, heads, 3 head_size] (q, k, v per
  head), rotary on int(head_size * rotary_pct) channels with rotary_emb_base,
  x + attn(ln1 x) + mlp(ln2 x) (use_parallel_residual) or the sequential
  form, exact GELU, embed_out without bias;
- Llama: RMSNorm (x * rsqrt(mean(x^2) + eps) * w), q/k/v/o without bias,
  grouped-query attention (repeat_kv: query head h reads key/value head
  h // (heads / kv_heads)), down(silu(gate x) * up x), lm_head or the tied
  embedding.

Attention is causal with the 1/sqrt(head_size) scale. The reference computes
in float64 from the weights as stored (float32, or rounded to bfloat16 /
float16 for the half-precision folders), one unpadded sequence at a time.

usage: rdec_reference.py ROOT OUT.json

Writes, under ROOT, one Hugging Face folder per model (config.json,
model.safetensors with random weights under Hugging Face's names, the
attention buffers transformers saves among them; llama_gqa's weights also
as two shards with model.safetensors.index.json in llama_gqa_shards/, and
neox_par's as torch.save's pytorch_model.bin in neox_par_bin/), docs.txt (one document of
token ids per line) and prompts.txt (one prompt per line). OUT: {name:
{"dir", "nll": [per document, the nll_sum of tokens 2..n scored as
model_score_tokens does, in windows of n_ctx tokens overlapping by half],
"tokens": [scored per document], "gen": [[greedy tokens per prompt]],
"margin": the smallest gap between the largest and second largest logit
over the greedy steps}}.

For the training checks (TRAIN below: GPT-J, GPT-NeoX parallel and
sequential, Llama with grouped-query attention, the tied Llama), a batch of
three left-padded rows (each row computed alone, unpadded, here) and
OUT[name]["train"]: tokens, kstart, targets (-1 off the rows and at one
column inside), the weights wl and we (0 on padding), writes ROOT/NAMEgrad/
(the config and, under each Hugging Face name, torch autograd's gradient of
sum wl logp(target) + we entropy in float64) and ROOT/NAMEvgrad/ (the
gradient of a value head's objective sum dv (hf . v_w + v_b), hf the final
norm's output; v_head's own gradient in the JSON), and the mean
cross-entropy before and after one torch.optim.AdamW step (lr 1e-2, betas
0.9/0.999, eps 1e-8, weight decay 0.01 on matrices only).
"""
import json
import math
import os
import shutil
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from gpt2_torch import write_safetensors  # noqa: E402  (the engine's golden peer's writer)

V, NCTX, NEW = 97, 64, 10
DOC_LENS = [2, 5, 17, 40, 90]  # 90 > n_ctx: scored in windows
PROMPT_LENS = [3, 7, 1, 12, 5]


def rope(x, rot, base, interleaved):
    """x [H, T, HS] at positions 0..T-1; the first rot channels rotated."""
    if rot == 0:
        return x
    T = x.shape[1]
    inv = 1.0 / (base ** (torch.arange(0, rot, 2, dtype=torch.int64).float() / rot))
    ang = torch.arange(T, dtype=torch.float32)[:, None] * inv[None, :]  # [T, rot/2], float32
    cos, sin = ang.cos().double(), ang.sin().double()
    xr, xp = x[..., :rot], x[..., rot:]
    if interleaved:
        cos2, sin2 = cos.repeat_interleave(2, -1), sin.repeat_interleave(2, -1)
        rotated = torch.stack((-xr[..., 1::2], xr[..., ::2]), dim=-1).flatten(-2)
    else:
        cos2, sin2 = torch.cat((cos, cos), -1), torch.cat((sin, sin), -1)
        rotated = torch.cat((-xr[..., rot // 2:], xr[..., : rot // 2]), -1)
    return torch.cat((xr * cos2 + rotated * sin2, xp), -1)


def attend(q, k, v):
    """q [H, T, HS], k, v [H, T, HS] (key/value heads already repeated)."""
    T, HS = q.shape[1], q.shape[2]
    s = q @ k.transpose(-1, -2) / math.sqrt(HS)
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    s = s.masked_fill(~mask, float("-inf"))
    return (s.softmax(-1) @ v).transpose(0, 1).reshape(T, -1)


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def rms(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def forward(fam, c, P, ids, hidden=False):
    """The logits [T, V] of one unpadded sequence, float64 (with hidden, also
    the final norm's output [T, C])."""
    T = len(ids)
    ids = torch.tensor(ids)
    if fam == "gptj":
        C, NH = c["n_embd"], c["n_head"]
        HS, rot, eps = C // NH, c["rotary_dim"], c["layer_norm_epsilon"]
        x = P["transformer.wte.weight"][ids]
        for l in range(c["n_layer"]):
            p = lambda s: P["transformer.h.%d.%s" % (l, s)]
            h = F.layer_norm(x, (C,), p("ln_1.weight"), p("ln_1.bias"), eps)
            q, k, v = (
                (h @ p("attn.%s_proj.weight" % n).T).view(T, NH, HS).transpose(0, 1) for n in "qkv"
            )
            q, k = rope(q, rot, 10000.0, True), rope(k, rot, 10000.0, True)
            a = attend(q, k, v) @ p("attn.out_proj.weight").T
            m = gelu_new(h @ p("mlp.fc_in.weight").T + p("mlp.fc_in.bias"))
            m = m @ p("mlp.fc_out.weight").T + p("mlp.fc_out.bias")
            x = a + m + x
        x = F.layer_norm(x, (C,), P["transformer.ln_f.weight"], P["transformer.ln_f.bias"], eps)
        z = x @ P["lm_head.weight"].T + P["lm_head.bias"]
        return (z, x) if hidden else z
    if fam == "gpt_neox":
        C, NH = c["hidden_size"], c["num_attention_heads"]
        HS, eps = C // NH, c["layer_norm_eps"]
        rot = int(HS * c["rotary_pct"])
        x = P["gpt_neox.embed_in.weight"][ids]
        for l in range(c["num_hidden_layers"]):
            p = lambda s: P["gpt_neox.layers.%d.%s" % (l, s)]
            h = F.layer_norm(x, (C,), p("input_layernorm.weight"), p("input_layernorm.bias"), eps)
            qkv = h @ p("attention.query_key_value.weight").T + p("attention.query_key_value.bias")
            qkv = qkv.view(T, NH, 3 * HS).transpose(0, 1)
            q, k, v = qkv[..., :HS], qkv[..., HS : 2 * HS], qkv[..., 2 * HS :]
            base = c["rotary_emb_base"]
            q, k = rope(q, rot, base, False), rope(k, rot, base, False)
            a = attend(q, k, v) @ p("attention.dense.weight").T + p("attention.dense.bias")

            def mlp(z):
                z = F.gelu(z @ p("mlp.dense_h_to_4h.weight").T + p("mlp.dense_h_to_4h.bias"))
                return z @ p("mlp.dense_4h_to_h.weight").T + p("mlp.dense_4h_to_h.bias")

            ln2 = lambda z: F.layer_norm(
                z, (C,), p("post_attention_layernorm.weight"), p("post_attention_layernorm.bias"), eps
            )
            if c["use_parallel_residual"]:
                x = mlp(ln2(x)) + a + x
            else:
                x = a + x
                x = mlp(ln2(x)) + x
        x = F.layer_norm(
            x, (C,), P["gpt_neox.final_layer_norm.weight"], P["gpt_neox.final_layer_norm.bias"], eps
        )
        z = x @ P["embed_out.weight"].T
        return (z, x) if hidden else z
    C, NH, NKV = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]
    HS, eps, base = C // NH, c["rms_norm_eps"], c["rope_theta"]
    x = P["model.embed_tokens.weight"][ids]
    for l in range(c["num_hidden_layers"]):
        p = lambda s: P["model.layers.%d.%s" % (l, s)]
        h = rms(x, p("input_layernorm.weight"), eps)
        q = (h @ p("self_attn.q_proj.weight").T).view(T, NH, HS).transpose(0, 1)
        k = (h @ p("self_attn.k_proj.weight").T).view(T, NKV, HS).transpose(0, 1)
        v = (h @ p("self_attn.v_proj.weight").T).view(T, NKV, HS).transpose(0, 1)
        q, k = rope(q, HS, base, False), rope(k, HS, base, False)
        R = NH // NKV  # repeat_kv
        k, v = k.repeat_interleave(R, dim=0), v.repeat_interleave(R, dim=0)
        x = attend(q, k, v) @ p("self_attn.o_proj.weight").T + x
        h = rms(x, p("post_attention_layernorm.weight"), eps)
        m = F.silu(h @ p("mlp.gate_proj.weight").T) * (h @ p("mlp.up_proj.weight").T)
        x = m @ p("mlp.down_proj.weight").T + x
    x = rms(x, P["model.norm.weight"], eps)
    head = P["model.embed_tokens.weight"] if c.get("tie_word_embeddings") else P["lm_head.weight"]
    z = x @ head.T
    return (z, x) if hidden else z


TRAIN = ["gptj", "neox_par", "neox_seq", "llama_gqa", "llama_tied_f16"]


def train_checks(fam, c, P, d, g):
    """The gradients and the AdamW step of the module docstring for the
    weights P (float64, as stored); returns the JSON's "train"."""
    lens, T = [7, 4, 9], 9
    C = c.get("n_embd") or c["hidden_size"]
    rnd = lambda n: [int(t) for t in torch.randint(0, V, (n,), generator=g)]
    unif = lambda: round(float(torch.rand(1, generator=g)) * 2 - 1, 3)
    rows = [rnd(n) for n in lens]
    tokens, kstart, targets, wl, we, dv = [], [], [], [], [], []
    for b, r in enumerate(rows):
        ks = T - len(r)
        tokens.append([0] * ks + r)
        kstart.append(ks)
        tg = [r[t - ks + 1] if ks <= t < T - 1 else -1 for t in range(T)]
        if b == 2:
            tg[4] = -1  # a real column without a target: its entropy still counts
        targets.append(tg)
        wl.append([unif() if t >= ks else 0.0 for t in range(T)])
        we.append([unif() if t >= ks else 0.0 for t in range(T)])
        dv.append([unif() if t >= ks else 0.0 for t in range(T)])
    vw = [round(float(x), 4) for x in torch.rand(C, generator=g) - 0.5]
    vb = 0.125
    Q = {k: v.clone().requires_grad_(True) for k, v in P.items()}
    Vw = torch.tensor(vw, dtype=torch.float64, requires_grad=True)
    Vb = torch.tensor(vb, dtype=torch.float64, requires_grad=True)
    obj, vobj = 0.0, 0.0
    for b in range(3):
        ks = kstart[b]
        z, hf = forward(fam, c, Q, rows[b], hidden=True)
        lp = F.log_softmax(z, -1)
        ent = -(lp.exp() * lp).sum(-1)
        for t in range(ks, T):
            j = t - ks
            if targets[b][t] >= 0:
                obj = obj + wl[b][t] * lp[j, targets[b][t]]
            obj = obj + we[b][t] * ent[j]
            vobj = vobj + dv[b][t] * (hf[j] @ Vw + Vb)
    obj.backward(retain_graph=True)
    write_safetensors(os.path.join(d + "grad", "model.safetensors"),
                      {k: v.grad.float() for k, v in Q.items()})
    for q in Q.values():
        q.grad = None
    vobj.backward()
    write_safetensors(os.path.join(d + "vgrad", "model.safetensors"),
                      {k: (v.grad if v.grad is not None else torch.zeros_like(v)).float()
                       for k, v in Q.items()})

    def mean_ce(Pd):
        s, n = 0.0, 0
        for b in range(3):
            lp = F.log_softmax(forward(fam, c, Pd, rows[b]), -1)
            for t in range(kstart[b], T):
                if targets[b][t] >= 0:
                    s, n = s - lp[t - kstart[b], targets[b][t]], n + 1
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
    return {"tokens": tokens, "kstart": kstart, "targets": targets, "wl": wl, "we": we, "dv": dv,
            "v_w": vw, "v_b": vb, "v_w_grad": Vw.grad.tolist(), "v_b_grad": float(Vb.grad),
            "loss0": float(loss0), "loss1": float(loss1)}


def score(fam, c, P, ids):
    """model_score_tokens' windows: nll_sum and the count of tokens 2..n."""
    n = len(ids)
    W = min(NCTX, n)
    half = max(W // 2, 1)
    done, s, tot, k = 1, 0, 0.0, 0
    while done < n:
        e = min(s + W, n)
        if e - s < 2:
            break
        lp = F.log_softmax(forward(fam, c, P, ids[s:e]), -1)
        for t in range(e - s):
            i = s + t + 1
            if done <= i < e:
                tot -= lp[t, ids[i]].item()
                k += 1
        done = e
        s = done - half if done > half else 0
    return tot, k


def greedy(fam, c, P, prompt):
    ids, margin = list(prompt), float("inf")
    for _ in range(NEW):
        z = forward(fam, c, P, ids)[-1]
        top = z.topk(2).values
        margin = min(margin, (top[0] - top[1]).item())
        ids.append(int(z.argmax()))
    return ids[len(prompt) :], margin


def params(fam, c, g):
    """Hugging Face names -> random float32 tensors (norm weights near 1)."""
    P = {}
    r = lambda *s: torch.randn(*s, generator=g) * 0.2
    nw = lambda n: 1.0 + torch.randn(n, generator=g) * 0.1
    if fam == "gptj":
        C, L = c["n_embd"], c["n_layer"]
        Fh = c["n_inner"] or 4 * C
        P["transformer.wte.weight"] = r(V, C) * 5
        for l in range(L):
            p = "transformer.h.%d." % l
            P[p + "ln_1.weight"], P[p + "ln_1.bias"] = nw(C), r(C)
            for n in "qkv":
                P[p + "attn.%s_proj.weight" % n] = r(C, C)
            P[p + "attn.out_proj.weight"] = r(C, C)
            P[p + "mlp.fc_in.weight"], P[p + "mlp.fc_in.bias"] = r(Fh, C), r(Fh)
            P[p + "mlp.fc_out.weight"], P[p + "mlp.fc_out.bias"] = r(C, Fh), r(C)
        P["transformer.ln_f.weight"], P["transformer.ln_f.bias"] = nw(C), r(C)
        P["lm_head.weight"], P["lm_head.bias"] = r(V, C) * 2, r(V)
    elif fam == "gpt_neox":
        C, L, Fh = c["hidden_size"], c["num_hidden_layers"], c["intermediate_size"]
        P["gpt_neox.embed_in.weight"] = r(V, C) * 5
        for l in range(L):
            p = "gpt_neox.layers.%d." % l
            for ln in ("input_layernorm", "post_attention_layernorm"):
                P[p + ln + ".weight"], P[p + ln + ".bias"] = nw(C), r(C)
            P[p + "attention.query_key_value.weight"] = r(3 * C, C)
            P[p + "attention.query_key_value.bias"] = r(3 * C)
            P[p + "attention.dense.weight"], P[p + "attention.dense.bias"] = r(C, C), r(C)
            P[p + "mlp.dense_h_to_4h.weight"], P[p + "mlp.dense_h_to_4h.bias"] = r(Fh, C), r(Fh)
            P[p + "mlp.dense_4h_to_h.weight"], P[p + "mlp.dense_4h_to_h.bias"] = r(C, Fh), r(C)
        P["gpt_neox.final_layer_norm.weight"] = nw(C)
        P["gpt_neox.final_layer_norm.bias"] = r(C)
        P["embed_out.weight"] = r(V, C) * 2
    else:
        C, L, Fh = c["hidden_size"], c["num_hidden_layers"], c["intermediate_size"]
        NH, NKV = c["num_attention_heads"], c["num_key_value_heads"]
        HS = C // NH
        P["model.embed_tokens.weight"] = r(V, C) * 5
        for l in range(L):
            p = "model.layers.%d." % l
            P[p + "input_layernorm.weight"] = nw(C)
            P[p + "self_attn.q_proj.weight"] = r(NH * HS, C)
            P[p + "self_attn.k_proj.weight"] = r(NKV * HS, C)
            P[p + "self_attn.v_proj.weight"] = r(NKV * HS, C)
            P[p + "self_attn.o_proj.weight"] = r(C, NH * HS)
            P[p + "post_attention_layernorm.weight"] = nw(C)
            P[p + "mlp.gate_proj.weight"], P[p + "mlp.up_proj.weight"] = r(Fh, C), r(Fh, C)
            P[p + "mlp.down_proj.weight"] = r(C, Fh)
        P["model.norm.weight"] = nw(C)
        if not c.get("tie_word_embeddings"):
            P["lm_head.weight"] = r(V, C) * 2
    return P


def buffers(fam, c):
    """The non-weight buffers transformers' save_pretrained may write: name ->
    (tensor, dtype)."""
    B = {}
    if fam == "gptj":
        for l in range(c["n_layer"]):
            p = "transformer.h.%d.attn." % l
            B[p + "bias"] = (torch.ones(1, 1, NCTX, NCTX).tril(), "BOOL")
            B[p + "masked_bias"] = (torch.tensor(-1e9), "F32")
    elif fam == "gpt_neox":
        HS = c["hidden_size"] // c["num_attention_heads"]
        rot = int(HS * c["rotary_pct"])
        for l in range(c["num_hidden_layers"]):
            p = "gpt_neox.layers.%d.attention." % l
            B[p + "bias"] = (torch.ones(1, 1, NCTX, NCTX).tril(), "BOOL")
            B[p + "masked_bias"] = (torch.tensor(-1e9), "F32")
            B[p + "rotary_emb.inv_freq"] = (torch.ones(rot // 2), "F32")
    return B


MODELS = [
    # name, family, dtype, config
    ("gptj", "gptj", "F32", dict(n_embd=48, n_head=4, n_layer=2, rotary_dim=8, n_inner=None,
                                 activation_function="gelu_new", layer_norm_epsilon=1e-5,
                                 tie_word_embeddings=False)),
    ("gptj_bf16", "gptj", "BF16", dict(n_embd=48, n_head=4, n_layer=2, rotary_dim=12, n_inner=64,
                                       activation_function="gelu_new", layer_norm_epsilon=1e-5,
                                       tie_word_embeddings=False)),
    ("neox_par", "gpt_neox", "F32", dict(hidden_size=48, num_attention_heads=4, num_hidden_layers=2,
                                         intermediate_size=96, rotary_pct=0.5, rotary_emb_base=5000,
                                         use_parallel_residual=True, hidden_act="gelu",
                                         layer_norm_eps=1e-5, tie_word_embeddings=False)),
    ("neox_seq", "gpt_neox", "F32", dict(hidden_size=64, num_attention_heads=4, num_hidden_layers=2,
                                         intermediate_size=128, rotary_pct=0.25, rotary_emb_base=10000,
                                         use_parallel_residual=False, hidden_act="gelu",
                                         layer_norm_eps=1e-5, tie_word_embeddings=False)),
    ("neox_bf16", "gpt_neox", "BF16", dict(hidden_size=48, num_attention_heads=4, num_hidden_layers=2,
                                           intermediate_size=96, rotary_pct=1.0, rotary_emb_base=10000,
                                           use_parallel_residual=True, hidden_act="gelu",
                                           layer_norm_eps=1e-5, tie_word_embeddings=False)),
    ("llama_gqa", "llama", "F32", dict(hidden_size=48, num_attention_heads=6, num_key_value_heads=2,
                                       num_hidden_layers=2, intermediate_size=80, rms_norm_eps=1e-5,
                                       rope_theta=20000.0, hidden_act="silu", tie_word_embeddings=False)),
    ("llama_gqa_bf16", "llama", "BF16", dict(hidden_size=48, num_attention_heads=6, num_key_value_heads=3,
                                             num_hidden_layers=2, intermediate_size=80, rms_norm_eps=1e-6,
                                             rope_theta=10000.0, hidden_act="silu",
                                             tie_word_embeddings=False)),
    ("llama_tied_f16", "llama", "F16", dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=4,
                                            num_hidden_layers=2, intermediate_size=64, rms_norm_eps=1e-6,
                                            rope_theta=10000.0, hidden_act="silu",
                                            tie_word_embeddings=True)),
]


def main():
    root, out = sys.argv[1], sys.argv[2]
    g = torch.Generator().manual_seed(20240721)
    docs = [[int(t) for t in torch.randint(0, V, (n,), generator=g)] for n in DOC_LENS]
    prompts = [[int(t) for t in torch.randint(0, V, (n,), generator=g)] for n in PROMPT_LENS]
    with open(os.path.join(root, "docs.txt"), "w") as f:
        f.write("".join(" ".join(map(str, d)) + "\n" for d in docs))
    with open(os.path.join(root, "prompts.txt"), "w") as f:
        f.write("".join(" ".join(map(str, p)) + "\n" for p in prompts))
    res = {}
    for name, fam, dt, cfg in MODELS:
        c = dict(cfg, model_type=fam, vocab_size=V)
        c["n_positions" if fam == "gptj" else "max_position_embeddings"] = NCTX
        P = params(fam, c, g)
        d = os.path.join(root, name)
        os.makedirs(d)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(c, f, indent=1)
        st = {k: (v, dt) for k, v in P.items()}
        st.update(buffers(fam, c))
        write_safetensors(os.path.join(d, "model.safetensors"), {k: v[0] for k, v in st.items()},
                          {k: v[1] for k, v in st.items()})
        # the reference reads the weights as stored
        rd = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}[dt]
        Pd = {k: v.to(rd).double() for k, v in P.items()}
        with torch.no_grad():
            sc = [score(fam, c, Pd, doc) for doc in docs]
            gen = [greedy(fam, c, Pd, p) for p in prompts]
        res[name] = {"dir": d, "nll": [s[0] for s in sc], "tokens": [s[1] for s in sc],
                     "gen": [x[0] for x in gen], "margin": min(x[1] for x in gen)}
        if name in TRAIN:
            for sfx in ("grad", "vgrad"):
                os.makedirs(d + sfx)
                shutil.copy(os.path.join(d, "config.json"), d + sfx)
            res[name]["train"] = train_checks(fam, c, Pd, d, g)
        if name == "llama_gqa":  # the same weights in two shards with an index
            sd = d + "_shards"
            os.makedirs(sd)
            shutil.copy(os.path.join(d, "config.json"), sd)
            names, wmap = sorted(P), {}
            for i, part in enumerate((names[: len(names) // 2], names[len(names) // 2 :])):
                fn = "model-%05d-of-00002.safetensors" % (i + 1)
                write_safetensors(os.path.join(sd, fn), {k: P[k] for k in part})
                wmap.update({k: fn for k in part})
            with open(os.path.join(sd, "model.safetensors.index.json"), "w") as f:
                json.dump({"metadata": {}, "weight_map": wmap}, f)
            res[name + "_shards"] = dict(res[name], dir=sd)
        if name == "neox_par":  # the same weights as torch.save's pytorch_model.bin
            bd = d + "_bin"
            os.makedirs(bd)
            shutil.copy(os.path.join(d, "config.json"), bd)
            sdict = dict(P)
            sdict.update({k: v[0].bool() if v[1] == "BOOL" else v[0] for k, v in buffers(fam, c).items()})
            torch.save(sdict, os.path.join(bd, "pytorch_model.bin"))
            res[name + "_bin"] = dict(res[name], dir=bd)
    with open(out, "w") as f:
        json.dump(res, f)


if __name__ == "__main__":
    main()
