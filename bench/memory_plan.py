#!/usr/bin/env python3
"""The byte counts of docs/memory.md: every figure there is printed by this
script from the formulas written in it (fp32 = 4 bytes, bf16/fp16 = 2).
Usage: bench/memory_plan.py [B] [T_prompt] [T_new] [rank]  (defaults: the
IMDB settings 16 64 48, LoRA rank 16 on all four GPT-2 linears)."""
import sys

B = int(sys.argv[1]) if len(sys.argv) > 1 else 16
TP = int(sys.argv[2]) if len(sys.argv) > 2 else 64
TN = int(sys.argv[3]) if len(sys.argv) > 3 else 48
R = int(sys.argv[4]) if len(sys.argv) > 4 else 16
T = TP + TN
GB = 1e9

# name, layers, width, heads, vocab, context, untied head (GPT-J), ffn width
MODELS = [("GPT-2 124M", 12, 768, 12, 50257, 1024, False, 4 * 768),
          ("GPT-2 1.5B", 48, 1600, 25, 50257, 1024, False, 4 * 1600),
          ("GPT-J 6B", 28, 4096, 16, 50400, 2048, True, 16384)]


def params(L, C, V, ctx, gptj, F):
    if gptj:  # wte, per layer: ln (2C), q,k,v,o (4C^2, no bias), fc (F C + F), proj (C F + C); ln_f, lm_head (V C + V)
        return V * C + L * (2 * C + 4 * C * C + F * C + F + C * F + C) + 2 * C + V * C + V
    # GPT-2: wte, wpe, per layer 12C^2 + 13C, ln_f
    return V * C + ctx * C + L * (12 * C * C + 13 * C) + 2 * C


def lora_params(L, C, F, r):
    # r (in + out) per adapted linear: c_attn (C -> 3C), attn.c_proj (C -> C), c_fc (C -> F), mlp.c_proj (F -> C)
    return L * r * ((C + 3 * C) + (C + C) + (C + F) + (F + C))


def acts(L, C, NH, V, b, t, F):
    # floats of trainer/gpt2.c's layout_acts at (b, t): per layer ln1, atty, res2, ln2, res3 (5 btC),
    # qkv (3 btC), fch and fch_gelu (2 btF), LN stats (4 bt), att (NH b t^2); encoded and ln_f (2 btC + 2bt);
    # logits (btV); backward scratch dres, dln, datty (3 btC), dqkv (3 btC), dfch (btF)
    per_layer = 8 * b * t * C + 2 * b * t * F + 4 * b * t + NH * b * t * t
    return 4 * (L * per_layer + 2 * b * t * C + 2 * b * t + b * t * V + 6 * b * t * C + b * t * F)


def acts_ckpt(L, C, NH, V, b, t, F):
    # activation checkpointing at block boundaries: the L block inputs (b t C each) kept, one block's
    # activations recomputed at a time during backward
    one = 8 * b * t * C + 2 * b * t * F + 4 * b * t + NH * b * t * t
    return 4 * (L * b * t * C + one + 2 * b * t * C + 2 * b * t + b * t * V + 6 * b * t * C + b * t * F)


def kv(L, C, b, t):
    return 4 * 2 * L * b * t * C


def gb(x):
    return "%.2f" % (x / GB)


print("B=%d T=%d (prompt %d + new %d), LoRA rank %d" % (B, T, TP, TN, R))
for name, L, C, NH, V, ctx, gptj, F in MODELS:
    P = params(L, C, V, ctx, gptj, F)
    Pa = lora_params(L, C, F, R)
    A = acts(L, C, NH, V, B, T, F)
    Ack = acts_ckpt(L, C, NH, V, B, T, F)
    K = kv(L, C, B, T)
    masks = B * TN * V  # one byte per (rollout, step, token)
    print("\n## %s: P = %d parameters, LoRA P_a = %d (%.3f%%)" % (name, P, Pa, 100.0 * Pa / P))
    print("weights fp32 4P = %s GB, bf16 2P = %s GB; train state fp32 (grad, m, v) 12P = %s GB" %
          (gb(4 * P), gb(2 * P), gb(12 * P)))
    print("activations of one model at (B, T): %s GB; with block checkpointing %s GB; KV cache %s GB; "
          "NLPO/DfPO mask buffer B*T_new*V bytes %s GB" % (gb(A), gb(Ack), gb(K), gb(masks)))
    print("NLPO's mask model with LoRA (the policy's base shared, its own adapters) 4P_a = %s GB" %
          gb(4 * Pa))
    # the reference only runs forward: rl_trainer_new gives it block
    # checkpointing (Ack), which costs it nothing; the trained models keep
    # the full layout (A) unless model.activation_checkpointing is set
    rows = [
        ("PPO/DfPO fp32 today: policy 16P + ref 4P + value 16P", 36 * P, 2 * A + Ack, 2 * K),
        ("NLPO fp32 today: + mask model 4P", 40 * P, 2 * A + Ack, 2 * K),
        ("PPO/DfPO, bf16 ref: 16P + 2P + 16P", 34 * P, 2 * A + Ack, 2 * K),
        ("LoRA policy (ref = base, adapters off) + separate fp32 value: 4P + 16P_a + 16P", 20 * P + 16 * Pa, 2 * A + Ack, 2 * K),
        ("LoRA policy + LoRA value on its own fp32 copy: 8P + 32P_a", 8 * P + 32 * Pa, 2 * A + Ack, 2 * K),
        ("LoRA policy + value head on the policy trunk, fp32 base: 4P + 16P_a", 4 * P + 16 * Pa, A + Ack, 2 * K),
        ("same, bf16 base: 2P + 16P_a", 2 * P + 16 * Pa, A + Ack, 2 * K),
        ("same, bf16 base + checkpointing", 2 * P + 16 * Pa, 2 * Ack, 2 * K),
    ]
    for label, w, a, k in rows:
        print("| %s | %s | %s | %s | %s |" % (label, gb(w), gb(a), gb(k), gb(w + a + k)))
