#!/usr/bin/python3
"""The timings table of bench/device_check.sh: reads its summary.json and
prints (or, imported, returns) Markdown with dfpo against its peer, the
ratio, the model FLOPs and the model FLOP utilisation (MFU).

    device_results.py OUT/summary.json

Model FLOPs (counted from the shape, not measured; N = the parameters dfpo
reports, which count the tied token embedding once; L layers, C width):
  training step   (6 N + 12 L T C) per token, B T tokens (PaLM's appendix B)
  generation      2 N per token processed (prompt and new tokens) plus
                  4 L C per visible key (causal: prompt^2 / 2 for the
                  prefill, prompt + k at the k-th new token)
  RL iteration    approximate: the generation above (twice for DfPO and
                  NLPO, whose reference or mask model decodes in lock step),
                  four forward passes over the rollouts (policy, reference,
                  value, judge stand-in: 2 N + attention per token each),
                  and 5 epochs of a policy and a value training step over
                  them (the update's share of the training-step FLOPs)
  judge           2 N per token plus 4 L C T per token (bidirectional
                  attention, T the mean text length); N here is the
                  encoder's parameters without the token embedding, which is
                  a lookup, not a product
Peaks, per second, NVIDIA's H200 SXM datasheet, dense (no sparsity): FP32
67 TFLOP/s (cuBLAS sgemm runs on the CUDA cores), TF32 tensor cores 494.7,
BF16 tensor cores 989.4. The MFU of a row is its model FLOPs per second over
the peak of the precision of its matrix products. On the CPU stand-in of the
dry run no MFU is given (no peak stated for that machine).
"""
import json
import sys

SHAPES = {"gpt2-124M": (12, 768), "gpt2-350M": (24, 1024), "gpt2-774M": (36, 1280),
          "gpt2-1558M": (48, 1600), "gpt2-tiny": (2, 64)}
PEAK = {"fp32": 67e12, "tf32": 494.7e12, "bf16": 989.4e12}
TARGET = {"train": "1.5x", "generate": "5x", "rl": "5x"}


def prec(d):
    return "bf16" if d.get("bf16") else "tf32" if d.get("tf32") else "fp32"


def gen_flops(N, L, C, n, tp, new):
    attn = tp * tp / 2 + sum(tp + k for k in range(new))
    return n * (2 * N * (tp + new) + 4 * L * C * attn)


def flops(kind, d):
    L, C = SHAPES.get(d.get("shape"), (0, 0))
    N = d.get("params", 0)
    if kind == "train":
        T = d["seq"]
        return (6 * N + 12 * L * T * C) * d["batch"] * T
    if kind == "generate":
        return gen_flops(N, L, C, d["prompts"], d["prompt_len"], d["new"])
    if kind == "rl":
        n, tp, new = d["prompts"], d["prompt_len"], d["new"]
        T = tp + new
        g = gen_flops(N, L, C, n, tp, new) * (2 if d.get("algo") in ("dfpo", "nlpo") else 1)
        fwd = n * T * (2 * N + 2 * L * T * C)
        return g + 4 * fwd + d.get("epochs", 5) * 2 * 3 * fwd
    return 0.0


def fmt_s(x):
    return "%.4f s" % x if x < 10 else "%.1f s" % x


def markdown(s):
    rows = []
    gpu = s.get("env", {}).get("torch_gpu")
    for st in s["steps"]:
        name, r = st["name"], st.get("result") or {}
        kind = name.split("_")[0]
        if kind not in ("train", "generate", "rl", "judge"):
            continue
        if not r:
            rows.append("| %s | %s: %s | | | | | |" % (name, st["status"], st.get("reason", "")[:160]))
            continue
        if st["status"] != "ok":  # the dry run's CPU stand-in, or a failure with a result
            name += " (%s: CPU stand-in)" % st["status"] if r.get("device") == "cpu" else " (%s)" % st["status"]
        on_gpu = r.get("device") == "cuda"
        if kind == "judge":
            d, p = r["dfpo"], r["peer"]
            tok, texts = p.get("tokens", 0), max(p.get("texts", 1), 1)
            # dfpo's whole process (start, CUDA's, the folder's load, the
            # tokenizer, the scoring) against the peer's load, tokenizer and
            # forward (CUDA's start included, python's imports not; its whole
            # process in brackets)
            t, pt = d["wall_s"], p["wall_s"]
            f = judge_flops(p)
            hf = r.get("transformers")
            extra = " [process %s]" % fmt_s(p["process_s"]) if "process_s" in p else ""
            if hf:
                extra += "; transformers %s" % fmt_s(hf["wall_s"])
            mfu = "%.1f%% of fp32" % (100 * f / t / PEAK["fp32"]) if on_gpu else "-"
            rows.append("| %s: %d texts, %d tokens, fp32 | %s | %s%s | %.2fx | %s | %.2f | %s |" % (
                name, texts, tok, fmt_s(t), fmt_s(pt), extra, pt / t, "2x", f / t / 1e12, mfu))
            continue
        d = r["dfpo"]
        p = r.get("peer")
        key = {"train": "step_s", "generate": "gen_s", "rl": "iteration_s"}[kind]
        t = d[key]
        f = flops(kind, d)
        pr = prec(d)
        tf = f / t / 1e12
        mfu = "%.1f%% of %s" % (100 * f / t / PEAK[pr], pr) if on_gpu else "-"
        if p:
            pt = p[key if key in p else "step_s"]
            peer = fmt_s(pt)
            ratio = "%.2fx" % (pt / t)
        else:
            peer, ratio = r.get("peer_skipped", "-"), "-"
        what = {"train": "B=%s T=%s" % (d.get("batch"), d.get("seq")),
                "generate": "%s x (%s + %s)" % (d.get("prompts"), d.get("prompt_len"), d.get("new")),
                "rl": "%s, %s x (%s + %s)" % (d.get("algo"), d.get("prompts"), d.get("prompt_len"),
                                            d.get("new"))}[kind]
        rows.append("| %s: %s %s %s | %s | %s | %s | %s | %.2f | %s |" % (
            name, d.get("shape"), what, pr, fmt_s(t), peer, ratio, TARGET[kind], tf, mfu))
    head = ["# device_check timings", "",
            "GPU: %s; small (dry run) %s; the peer over dfpo is dfpo's speed-up." % (gpu, s.get("small")),
            "MFU against the H200 SXM dense peaks (FP32 67, TF32 494.7, BF16 989.4 TFLOP/s);",
            "model FLOPs as bench/device_results.py defines them.", "",
            "| step | dfpo | peer | peer / dfpo | target | dfpo TFLOP/s | MFU |",
            "|---|---|---|---|---|---|---|"]
    return "\n".join(head + rows) + "\n"


def judge_flops(p):
    """2 N per token (N: the matrices' parameters, without the embeddings'
    lookups) plus bidirectional attention at the mean text length."""
    tok, texts = p.get("tokens", 0), max(p.get("texts", 1), 1)
    return 2 * p.get("matmul_params", 0) * tok + 4 * p.get("layers", 0) * p.get("width", 0) * tok * tok / texts


if __name__ == "__main__":
    print(markdown(json.load(open(sys.argv[1]))), end="")
