#!/usr/bin/python3
"""dfpo against reference implementations on random-weight Hugging Face
folders, on the CPU backend and (with --gpu) the CUDA backend. Run by
bench/device_check.sh (its crosscheck step); docs/cuda.md.

    hf_crosscheck.py --dfpo BIN --work DIR --out OUT.json [--brief B.json]
                     [--gpu | --no-gpu-why REASON] [--small]

Parts, each recorded as ok, skip (with the reason) or fail:

  gpt2_ref_{cpu,cuda}       a GPT-2 folder written here (config.json and
      model.safetensors in Hugging Face's names and Conv1D layouts, random
      weights) against the project's own PyTorch reference
      (bench/gpt2_torch.py's gpt2_forward): each document's summed NLL from
      `dfpo perplexity --tokens FILE --json` (one call per document, with
      <|endoftext|> prepended as dfpo does, and one call for all of them
      together), and the greedy tokens of `dfpo generate --tokens FILE
      --temperature 0 --eos -1` (prompts of different lengths batched, so
      left-padded, against the reference one prompt at a time)
  classifiers_ref_{cpu,cuda}  DistilBERT, BERT and RoBERTa classifier
      folders written by tests/trainer/bert_reference.py (tokenizer files,
      config, random weights) against its forward: the label probabilities
      of `dfpo judge score --model DIR --input FILE --json`
  gpt2_hf_{cpu,cuda}        the same GPT-2 checks on a folder that
      transformers itself made (GPT2LMHeadModel(GPT2Config(...)) and
      save_pretrained, safetensors), against transformers' own forward
      (and its generate)
  classifiers_hf_{cpu,cuda} DistilBERT/BERT/RoBERTa ForSequenceClassification
      made by transformers from the configs above (from_config, its own
      random initialisation, save_pretrained), the tokenizer files from
      bert_reference.py; the ids from transformers' AutoTokenizer when it
      loads the folder (else the reference tokenizer's, said so), the
      probabilities from transformers' forward

The _hf parts skip when transformers is not installed (it is not on the
project's build machine); the _cuda parts skip without --gpu. References run
on the CPU in float32 (NLL and log-softmax in double). Tolerances: NLL
relative 2e-5 (CPU) / 1e-4 (GPU; cuBLAS against OpenBLAS order), label
probabilities 1e-5 / 1e-4 absolute. Greedy tokens must be equal, except
that a first difference where the reference's two best logits are within
1e-4 (CPU) / 1e-3 (GPU) of each other counts as a near-tie (reported).
Other architectures (T5, GPT-J, GPT-NeoX, Llama) are not checked: dfpo does
not load them (yet).
"""
import argparse
import json
import os
import random
import subprocess
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "trainer"))
import bert_reference as bref  # noqa: E402  (classifier folders, forward, tokenizers)
from gpt2_torch import gpt2_forward, write_safetensors  # noqa: E402

bref.torch, bref.F = torch, F

EOT = 50256
V = 50257
SHAPE = {"L": 2, "NH": 2, "C": 64, "P": 128}
WORDS = ["the", "a", "movie", "film", "was", "is", "good", "bad", "great", "awful", "plot",
         "actor", "acting", "story", "and", "but", "not", "very", "really", "i", "it", "this",
         "loved", "hated", "boring", "fun", "scene", "end", "music", "slow", "funny", "sad",
         "##s", "##ing", "##ed", "watch", "again", "never", "best", "worst"]
TEXTS = ["the movie was great", "I hated this film, really boring!",
         "not very good but the music is fun", "acting: awful. plot: worse.",
         "Loved it again and again", "scenes ending slowly... never watch"]


class Parts:
    def __init__(self):
        self.parts = []

    def add(self, name, status, reason=None, **detail):
        p = {"name": name, "status": status}
        if reason:
            p["reason"] = reason
        p.update(detail)
        self.parts.append(p)
        print("%-24s %-4s %s" % (name, status, reason or json.dumps(detail)[:300]), flush=True)


def run_dfpo(a, args, timeout=120):
    r = subprocess.run([a.dfpo] + args, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError("dfpo %s: exit %d: %s" % (" ".join(args[:1]), r.returncode,
                                                     r.stderr.strip().splitlines()[-1:]))
    return r.stdout


# ------------------------------------------------------------ GPT-2

def gpt2_docs(rng, small):
    lens = [1, 5, 17, 40, 100] if small else [1, 5, 17, 40, 64, 100, 127]
    docs = [[rng.randrange(V) for _ in range(n)] for n in lens]
    prompts = [[rng.randrange(V) for _ in range(n)] for n in (3, 8, 1, 12)]
    return docs, prompts


def write_gpt2_folder(d, seed):
    """A GPT-2 folder as save_pretrained writes one (no transformers needed):
    config.json and model.safetensors, names under transformer., Conv1D
    weights [in, out], lm_head tied (absent). Returns the reference's params
    (names without the prefix) and config."""
    os.makedirs(d, exist_ok=True)
    L, NH, C, P = SHAPE["L"], SHAPE["NH"], SHAPE["C"], SHAPE["P"]
    g = torch.Generator().manual_seed(seed)

    def rn(*shape, sd):
        return torch.randn(*shape, generator=g) * sd

    # the token embedding wider than GPT-2's 0.02 so that greedy decoding
    # has clear winners (random logits at 0.02 are nearly flat)
    p = {"wte.weight": rn(V, C, sd=0.1), "wpe.weight": rn(P, C, sd=0.05)}
    for l in range(L):
        h = "h.%d." % l
        p[h + "ln_1.weight"] = 1 + rn(C, sd=0.1)
        p[h + "ln_1.bias"] = rn(C, sd=0.05)
        p[h + "attn.c_attn.weight"] = rn(C, 3 * C, sd=0.1)
        p[h + "attn.c_attn.bias"] = rn(3 * C, sd=0.02)
        p[h + "attn.c_proj.weight"] = rn(C, C, sd=0.1)
        p[h + "attn.c_proj.bias"] = rn(C, sd=0.02)
        p[h + "ln_2.weight"] = 1 + rn(C, sd=0.1)
        p[h + "ln_2.bias"] = rn(C, sd=0.05)
        p[h + "mlp.c_fc.weight"] = rn(C, 4 * C, sd=0.1)
        p[h + "mlp.c_fc.bias"] = rn(4 * C, sd=0.02)
        p[h + "mlp.c_proj.weight"] = rn(4 * C, C, sd=0.05)
        p[h + "mlp.c_proj.bias"] = rn(C, sd=0.02)
    p["ln_f.weight"] = 1 + rn(C, sd=0.1)
    p["ln_f.bias"] = rn(C, sd=0.05)
    write_safetensors(os.path.join(d, "model.safetensors"), {"transformer." + k: v for k, v in p.items()})
    cfg = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_layer": L, "n_head": NH,
           "n_embd": C, "vocab_size": V, "n_positions": P, "n_ctx": P, "layer_norm_epsilon": 1e-5,
           "activation_function": "gelu_new", "bos_token_id": EOT, "eos_token_id": EOT}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    return p, cfg


def ref_logits_own(p, cfg):
    def f(ids):
        with torch.no_grad():
            return gpt2_forward(p, cfg, torch.tensor([ids]), torch.zeros(1, dtype=torch.long))[0]
    return f


def ref_nll(logits_fn, doc):
    ids = [EOT] + doc
    lp = torch.log_softmax(logits_fn(ids)[:-1].double(), dim=-1)
    return -lp.gather(1, torch.tensor(ids[1:]).view(-1, 1)).sum().item()


def ref_greedy(logits_fn, prompt, new):
    ids, toks, gaps = list(prompt), [], []
    for _ in range(new):
        last = logits_fn(ids)[-1]
        top = torch.topk(last, 2)
        toks.append(int(top.indices[0]))
        gaps.append(float(top.values[0] - top.values[1]))
        ids.append(toks[-1])
    return toks, gaps


def check_gpt2(a, parts, name, folder, logits_fn, device, docs, prompts, new=12, extra=None):
    if device == "cuda" and not a.gpu:
        parts.add(name, "skip", a.no_gpu_why or "no --gpu")
        return
    rtol = 2e-5 if device == "cpu" else 1e-4
    tie = 1e-4 if device == "cpu" else 1e-3
    w = os.path.join(a.work, name)
    os.makedirs(w, exist_ok=True)
    try:
        errs, worst = [], 0.0
        for i, doc in enumerate(docs):
            fn = os.path.join(w, "doc%d.txt" % i)
            open(fn, "w").write(" ".join(map(str, doc)) + "\n")
            got = json.loads(run_dfpo(a, ["perplexity", "--model", folder, "--tokens", fn, "--json",
                                          "--device", device]))
            want = ref_nll(logits_fn, doc)
            rel = abs(got["nll_sum"] - want) / max(1.0, abs(want))
            worst = max(worst, rel)
            if got["tokens"] != len(doc) or rel > rtol:
                errs.append("doc %d (%d tokens): dfpo nll %.6f over %d tokens, reference %.6f" % (
                    i, len(doc), got["nll_sum"], got["tokens"], want))
        fn = os.path.join(w, "docs.txt")
        open(fn, "w").write("".join(" ".join(map(str, d)) + "\n" for d in docs))
        got = json.loads(run_dfpo(a, ["perplexity", "--model", folder, "--tokens", fn, "--json",
                                      "--device", device]))
        want = sum(ref_nll(logits_fn, d) for d in docs)
        if got["documents"] != len(docs) or abs(got["nll_sum"] - want) > rtol * max(1.0, abs(want)):
            errs.append("all documents: dfpo nll %.6f (%d docs), reference %.6f" % (
                got["nll_sum"], got["documents"], want))
        fn = os.path.join(w, "prompts.txt")
        open(fn, "w").write("".join(" ".join(map(str, q)) + "\n" for q in prompts))
        out = run_dfpo(a, ["generate", "--model", folder, "--tokens", fn, "--temperature", "0",
                           "--max-new", str(new), "--eos", "-1", "--device", device])
        rows = [json.loads(l) for l in out.splitlines() if l.strip()]
        if len(rows) != len(prompts):
            errs.append("generate: %d rows for %d prompts" % (len(rows), len(prompts)))
            rows = rows[:len(prompts)]
        ties, equal = [], 0
        for i, (q, r) in enumerate(zip(prompts, rows)):
            want, gaps = ref_greedy(logits_fn, q, new)
            got = r["tokens"]
            if got == want:
                equal += 1
                continue
            k = next((j for j in range(min(len(got), len(want))) if got[j] != want[j]), None)
            if k is not None and gaps[k] <= tie:
                ties.append("prompt %d: first difference at token %d, reference gap %.2g" % (i, k, gaps[k]))
            else:
                errs.append("prompt %d: greedy tokens %s, reference %s" % (i, got, want))
        detail = {"documents": len(docs), "worst_nll_rel": worst, "greedy_equal": equal,
                  "prompts": len(prompts), "near_ties": ties}
        if extra:
            detail.update(extra)
        if errs:
            parts.add(name, "fail", "; ".join(errs)[:2000], **detail)
        else:
            parts.add(name, "ok", **detail)
    except Exception as e:  # a dfpo failure or timeout: recorded, the others go on
        parts.add(name, "fail", "%s: %s" % (type(e).__name__, e))


# ------------------------------------------------------------ classifiers

def classifier_specs(root):
    return [{"dir": os.path.join(root, fam), "family": fam, "layers": 2, "width": 32, "heads": 4,
             "ffn": 64, "max_pos": 40, "labels": ["NEGATIVE", "POSITIVE"] if fam != "bert" else
             ["a", "b", "c"], "seed": 7 + i, "words": WORDS}
            for i, fam in enumerate(("distilbert", "bert", "roberta"))]


def check_classifiers(a, parts, name, folders, device):
    """folders: [(dir, [probability rows of TEXTS])]"""
    if device == "cuda" and not a.gpu:
        parts.add(name, "skip", a.no_gpu_why or "no --gpu")
        return
    tol = 1e-5 if device == "cpu" else 1e-4
    fn = os.path.join(a.work, "texts.txt")
    open(fn, "w").write("".join(t + "\n" for t in TEXTS))
    errs, worst = [], {}
    for d, want in folders:
        fam = os.path.basename(d)
        try:
            out = run_dfpo(a, ["judge", "score", "--model", d, "--input", fn, "--json", "--device", device])
            got = [list(json.loads(l).values()) for l in out.splitlines() if l.strip()]
            if len(got) != len(want):
                errs.append("%s: %d rows for %d texts" % (fam, len(got), len(want)))
                continue
            err = max(abs(x - y) for g, w in zip(got, want) for x, y in zip(g, w))
            worst[fam] = err
            if err > tol:
                errs.append("%s: probabilities differ by %.3g > %g" % (fam, err, tol))
        except Exception as e:
            errs.append("%s: %s: %s" % (fam, type(e).__name__, e))
    if errs:
        parts.add(name, "fail", "; ".join(errs)[:2000], max_abs_diff=worst)
    else:
        parts.add(name, "ok", max_abs_diff=worst, texts=len(TEXTS))


# ------------------------------------------------------------ transformers

def hf_gpt2(a, parts, docs, prompts, tf):
    from transformers import GPT2Config, GPT2LMHeadModel
    d = os.path.join(a.work, "gpt2_hf")
    torch.manual_seed(11)
    cfg = GPT2Config(n_layer=SHAPE["L"], n_head=SHAPE["NH"], n_embd=SHAPE["C"], vocab_size=V,
                     n_positions=SHAPE["P"], initializer_range=0.1)
    m = GPT2LMHeadModel(cfg).eval()
    save(m, d)

    def logits_fn(ids):
        with torch.no_grad():
            return m(torch.tensor([ids])).logits[0]
    # transformers' generate against the greedy loop on its forward
    extra = {"transformers": tf}
    try:
        q = torch.tensor([prompts[1]])
        with torch.no_grad():
            g = m.generate(q, attention_mask=torch.ones_like(q), do_sample=False, max_new_tokens=12,
                           eos_token_id=None, pad_token_id=0)
        extra["generate_equals_loop"] = g[0, q.shape[1]:].tolist() == ref_greedy(logits_fn, prompts[1], 12)[0]
    except Exception as e:
        extra["generate_error"] = "%s: %s" % (type(e).__name__, e)
    for dev in ("cpu", "cuda"):
        check_gpt2(a, parts, "gpt2_hf_" + dev, d, logits_fn, dev, docs, prompts, extra=extra)


def save(m, d):
    try:
        m.save_pretrained(d, safe_serialization=True)
    except TypeError:  # transformers 5 always writes safetensors
        m.save_pretrained(d)
    if not os.path.exists(os.path.join(d, "model.safetensors")):
        raise RuntimeError("save_pretrained wrote no model.safetensors in %s: %s" % (d, os.listdir(d)))


def hf_classifiers(a, parts, tf):
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
    folders, notes = [], {}
    for s in classifier_specs(os.path.join(a.work, "cls_hf")):
        _, _, tok = bref.make_folder(s)  # tokenizer files and the config
        os.remove(os.path.join(s["dir"], "model.safetensors"))
        cfg = AutoConfig.from_pretrained(s["dir"])
        cfg.initializer_range = 0.2  # sharper than 0.02, so the labels differ
        torch.manual_seed(s["seed"])
        m = AutoModelForSequenceClassification.from_config(cfg).eval()
        save(m, s["dir"])
        fam = s["family"]
        ref_cfg = json.load(open(os.path.join(s["dir"], "config.json")))
        ref_ids = [bref.text_ids(ref_cfg, tok, t, True) for t in TEXTS]
        try:
            hft = AutoTokenizer.from_pretrained(s["dir"])
            ids = [hft(t, truncation=True, max_length=s["max_pos"])["input_ids"] for t in TEXTS]
            notes[fam] = "ids from AutoTokenizer (%s)%s" % (
                type(hft).__name__, "" if ids == ref_ids else ", which differ from the reference tokenizer's")
        except Exception as e:
            ids = ref_ids
            notes[fam] = "AutoTokenizer failed (%s: %s); ids from the reference tokenizer" % (
                type(e).__name__, str(e)[:200])
        with torch.no_grad():
            probs = [torch.softmax(m(torch.tensor([i])).logits[0].float(), -1).tolist() for i in ids]
        folders.append((s["dir"], probs))
    print("transformers classifiers: %s" % json.dumps(notes))
    for dev in ("cpu", "cuda"):
        check_classifiers(a, parts, "classifiers_hf_" + dev, folders, dev)
        parts.parts[-1]["tokenizers"] = notes


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dfpo", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--brief")
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--no-gpu-why")
    ap.add_argument("--small", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    torch.set_num_threads(min(4, os.cpu_count() or 1))
    parts = Parts()
    rng = random.Random(5)
    docs, prompts = gpt2_docs(rng, a.small)

    try:
        p, cfg = write_gpt2_folder(os.path.join(a.work, "gpt2_ref"), 3)
        for dev in ("cpu", "cuda"):
            check_gpt2(a, parts, "gpt2_ref_" + dev, os.path.join(a.work, "gpt2_ref"),
                       ref_logits_own(p, cfg), dev, docs, prompts)
    except Exception as e:
        parts.add("gpt2_ref", "fail", "%s: %s" % (type(e).__name__, e))

    try:
        folders = []
        with torch.no_grad():
            for s in classifier_specs(os.path.join(a.work, "cls_ref")):
                c, sd, tok = bref.make_folder(s)
                folders.append((s["dir"], [bref.forward(c, sd, bref.text_ids(c, tok, t, True))
                                           for t in TEXTS]))
        for dev in ("cpu", "cuda"):
            check_classifiers(a, parts, "classifiers_ref_" + dev, folders, dev)
    except Exception as e:
        parts.add("classifiers_ref", "fail", "%s: %s" % (type(e).__name__, e))

    try:
        import transformers
        tf = transformers.__version__
    except ImportError as e:
        tf = None
        for n in ("gpt2_hf", "classifiers_hf"):
            parts.add(n, "skip", "transformers is not installed (%s)" % e)
    if tf:
        for n, f in (("gpt2_hf", lambda: hf_gpt2(a, parts, docs, prompts, tf)),
                     ("classifiers_hf", lambda: hf_classifiers(a, parts, tf))):
            try:
                f()
            except Exception as e:
                parts.add(n, "fail", "%s: %s" % (type(e).__name__, e))

    res = {"transformers": tf, "torch": torch.__version__, "gpu": a.gpu, "parts": parts.parts}
    json.dump(res, open(a.out, "w"), indent=1)
    if a.brief:
        json.dump({p["name"]: p["status"] + (": " + p["reason"][:200] if p.get("reason") else "")
                   for p in parts.parts}, open(a.brief, "w"))
    n = {k: sum(1 for p in parts.parts if p["status"] == k) for k in ("ok", "skip", "fail")}
    print("crosscheck: %s" % json.dumps(n))
    sys.exit(1 if n["fail"] else 0)


if __name__ == "__main__":
    main()
