#!/usr/bin/python3
"""dfpo against reference implementations on random-weight Hugging Face
folders, on the CPU backend and (with --gpu) the CUDA backend. Run by
bench/device_check.sh (its crosscheck step); docs/cuda.md.

    hf_crosscheck.py --dfpo BIN --work DIR --out OUT.json [--brief B.json]
                     [--gpu | --no-gpu-why REASON] [--small]

Parts, each recorded as ok, skip (with the reason) or fail. Every model part
runs `dfpo perplexity --tokens FILE --per-doc --json` once (each document's
nll_sum and scored tokens, and their sum) and `dfpo generate --tokens FILE
--temperature 0 --eos -1` once (prompts of different lengths batched, so
left-padded), against the reference one document / prompt at a time:

  gpt2_ref_{cpu,cuda}       a GPT-2 folder written here (config.json and
      model.safetensors in Hugging Face's names and Conv1D layouts, random
      weights) against the project's own PyTorch reference
      (bench/gpt2_torch.py's gpt2_forward), <|endoftext|> prepended as dfpo
      does
  classifiers_ref_{cpu,cuda}  DistilBERT, BERT and RoBERTa classifier
      folders written by tests/trainer/bert_reference.py (tokenizer files,
      config, random weights) against its forward: the label probabilities
      of `dfpo judge score --model DIR --input FILE --json`
  {gptj,neox_par,llama_gqa}_ref_{cpu,cuda}  GPT-J, GPT-NeoX (parallel
      residual, half of each head rotated, base 5000) and Llama (grouped-query
      attention, base 20000) folders from tests/trainer/rdec_reference.py's
      weights, against its float64 forward, with --no-bos
  {t5v10,t5v11}_ref_{cpu,cuda}  a v1.0 (ReLU, tied) and a v1.1 (gated GELU,
      untied) T5 from bench/t5_torch.py's weights against its forward:
      source/target pairs by teacher forcing, greedy decoding of sources
  gpt2_hf_{cpu,cuda}        the GPT-2 checks on a folder that transformers
      itself made (GPT2LMHeadModel(GPT2Config(...)) and save_pretrained,
      safetensors), against transformers' own forward (and its generate)
  classifiers_hf_{cpu,cuda} DistilBERT/BERT/RoBERTa ForSequenceClassification
      made by transformers from the configs above (from_config, its own
      random initialisation, save_pretrained), the tokenizer files from
      bert_reference.py; the ids from transformers' AutoTokenizer when it
      loads the folder (else the reference tokenizer's, said so), the
      probabilities from transformers' forward
  {gptj,neox,llama}_hf_{cpu,cuda}  GPTJForCausalLM, GPTNeoXForCausalLM and
      LlamaForCausalLM made by transformers (bases and rotated fractions
      other than the defaults, set where that version keeps them: transformers
      5's rope_parameters or 4's attributes; what was saved is recorded),
      against their forward, with --no-bos
  {t5v10,t5v11}_hf_{cpu,cuda}  T5ForConditionalGeneration made by
      transformers in the two T5 shapes, against its forward

The _hf parts skip when transformers is not installed (it is not on the
project's build machine); the _cuda parts skip without --gpu. References run
on the CPU in float32 (NLL and log-softmax in double; the rotary reference
in float64). Tolerances: NLL relative 2e-5 (CPU) / 1e-4 (GPU; cuBLAS against
OpenBLAS order), label probabilities 1e-5 / 1e-4 absolute. Greedy tokens must
be equal, except that a first difference where the reference's two best
logits are within 1e-4 (CPU) / 1e-3 (GPU) of each other counts as a near-tie
(reported).
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


def ref_greedy(logits_fn, prompt, new):
    ids, toks, gaps = list(prompt), [], []
    for _ in range(new):
        last = logits_fn(ids)[-1]
        top = torch.topk(last, 2)
        toks.append(int(top.indices[0]))
        gaps.append(float(top.values[0] - top.values[1]))
        ids.append(toks[-1])
    return toks, gaps


class Spec:
    """How one model's outputs are checked: line(doc) is the document's line
    for `--tokens`, nll(doc) the reference's (nll_sum, tokens scored),
    greedy(prompt, new) its greedy tokens and the gap between the two best
    logits at each step, ppl_args what `dfpo perplexity` is given besides."""

    def __init__(self, line, nll, greedy, ppl_args=()):
        self.line, self.nll, self.greedy, self.ppl_args = line, nll, greedy, list(ppl_args)


def ids_line(ids):
    return " ".join(map(str, ids))


def lm_spec(logits_fn, bos):
    """A decoder: logits_fn(ids) -> [T, V]. bos is prepended as dfpo does
    without --no-bos (GPT-2's <|endoftext|>); None: --no-bos, the first token
    context only."""
    def nll(doc):
        ids = ([bos] if bos is not None else []) + list(doc)
        lp = torch.log_softmax(logits_fn(ids)[:-1].double(), dim=-1)
        return -lp.gather(1, torch.tensor(ids[1:]).view(-1, 1)).sum().item(), len(ids) - 1
    return Spec(ids_line, nll, lambda q, n: ref_greedy(logits_fn, q, n),
                [] if bos is not None else ["--no-bos"])


def s2s_spec(logits_fn, start):
    """An encoder-decoder (T5): logits_fn(src, dec) -> [len(dec), V]; a
    document is a (source, target) pair scored by teacher forcing from
    decoder_start_token_id, a prompt a source decoded from it."""
    def nll(pair):
        src, tgt = pair
        lp = torch.log_softmax(logits_fn(src, [start] + tgt[:-1]).double(), dim=-1)
        return -sum(float(lp[j, t]) for j, t in enumerate(tgt)), len(tgt)

    def greedy(src, new):
        dec, toks, gaps = [start], [], []
        for _ in range(new):
            top = torch.topk(logits_fn(src, dec)[-1], 2)
            toks.append(int(top.indices[0]))
            gaps.append(float(top.values[0] - top.values[1]))
            dec.append(toks[-1])
        return toks, gaps
    return Spec(lambda p: ids_line(p[0]) + "\t" + ids_line(p[1]), nll, greedy)


def check_model(a, parts, name, folder, spec, device, docs, prompts, new=12, extra=None):
    """dfpo's perplexities (one `--per-doc --json` call: each document and
    the sum) and greedy tokens (one `generate` call, the prompts batched and
    left-padded) on device against the reference spec."""
    if device == "cuda" and not a.gpu:
        parts.add(name, "skip", a.no_gpu_why or "no --gpu")
        return
    rtol = 2e-5 if device == "cpu" else 1e-4
    tie = 1e-4 if device == "cpu" else 1e-3
    w = os.path.join(a.work, name)
    os.makedirs(w, exist_ok=True)
    try:
        errs, worst = [], 0.0
        fn = os.path.join(w, "docs.txt")
        open(fn, "w").write("".join(spec.line(d) + "\n" for d in docs))
        out = run_dfpo(a, ["perplexity", "--model", folder, "--tokens", fn, "--json", "--per-doc",
                           "--device", device] + spec.ppl_args)
        rows = [json.loads(l) for l in out.splitlines() if l.strip()]
        total, rows = rows[-1], rows[:-1]
        if len(rows) != len(docs):
            errs.append("perplexity: %d document rows for %d documents" % (len(rows), len(docs)))
        want_sum, want_tok = 0.0, 0
        for i, (doc, r) in enumerate(zip(docs, rows)):
            want, k = spec.nll(doc)
            want_sum, want_tok = want_sum + want, want_tok + k
            rel = abs(r["nll_sum"] - want) / max(1.0, abs(want))
            worst = max(worst, rel)
            if r["tokens"] != k or rel > rtol:
                errs.append("doc %d: dfpo nll %.6f over %d tokens, reference %.6f over %d" % (
                    i, r["nll_sum"], r["tokens"], want, k))
        if total.get("documents") != len(docs) or total.get("tokens") != want_tok or \
                abs(total["nll_sum"] - want_sum) > rtol * max(1.0, abs(want_sum)):
            errs.append("all documents: dfpo nll %.6f (%s docs, %s tokens), reference %.6f (%d tokens)" % (
                total["nll_sum"], total.get("documents"), total.get("tokens"), want_sum, want_tok))
        fn = os.path.join(w, "prompts.txt")
        open(fn, "w").write("".join(ids_line(q) + "\n" for q in prompts))
        out = run_dfpo(a, ["generate", "--model", folder, "--tokens", fn, "--temperature", "0",
                           "--max-new", str(new), "--eos", "-1", "--device", device])
        rows = [json.loads(l) for l in out.splitlines() if l.strip()]
        if len(rows) != len(prompts):
            errs.append("generate: %d rows for %d prompts" % (len(rows), len(prompts)))
            rows = rows[:len(prompts)]
        ties, equal = [], 0
        for i, (q, r) in enumerate(zip(prompts, rows)):
            want, gaps = spec.greedy(q, new)
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


# ------------------------------------------------------------ rotary decoders and T5

def rand_ids(rng, V, lens, lo=2):
    return [[rng.randrange(lo, V) for _ in range(n)] for n in lens]


def rotary_ref(a, parts, rng):
    """GPT-J, GPT-NeoX (parallel residual, half the head rotated, base 5000)
    and Llama (grouped-query attention, base 20000) folders written by
    tests/trainer/rdec_reference.py's params() and buffers() under Hugging
    Face's names, against its float64 forward; scored with --no-bos."""
    import rdec_reference as rref
    g = torch.Generator().manual_seed(31)
    docs = rand_ids(rng, rref.V, [2, 5, 17, 40, rref.NCTX])
    prompts = rand_ids(rng, rref.V, [3, 8, 1, 12])
    for name, fam, _, cfg in [m for m in rref.MODELS if m[0] in ("gptj", "neox_par", "llama_gqa")]:
        c = dict(cfg, model_type=fam, vocab_size=rref.V)
        c["n_positions" if fam == "gptj" else "max_position_embeddings"] = rref.NCTX
        P = rref.params(fam, c, g)
        d = os.path.join(a.work, "rotary_ref", name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(c, f, indent=1)
        st = dict(P)
        st.update({k: v[0] for k, v in rref.buffers(fam, c).items()})
        write_safetensors(os.path.join(d, "model.safetensors"), st)
        Pd = {k: v.double() for k, v in P.items()}

        def logits_fn(ids, fam=fam, c=c, Pd=Pd):
            with torch.no_grad():
                return rref.forward(fam, c, Pd, ids)
        for dev in ("cpu", "cuda"):
            check_model(a, parts, "%s_ref_%s" % (name, dev), d, lm_spec(logits_fn, None), dev, docs,
                        prompts, new=8)


T5_SHAPES = {  # a v1.0 T5 (ReLU, tied head) and a v1.1 (gated GELU, untied)
    "t5v10": dict(d_model=32, d_kv=8, d_ff=48, num_heads=4, num_layers=2, num_decoder_layers=3,
                  relative_attention_num_buckets=32, relative_attention_max_distance=128,
                  feed_forward_proj="relu", tie_word_embeddings=True),
    "t5v11": dict(d_model=24, d_kv=10, d_ff=40, num_heads=3, num_layers=3, num_decoder_layers=2,
                  relative_attention_num_buckets=16, relative_attention_max_distance=20,
                  feed_forward_proj="gated-gelu", tie_word_embeddings=False),
}
T5_V = 300


def t5_data(rng):
    """(source, target) pairs of several lengths (sources past the exact
    relative-position buckets) and sources to decode from."""
    srcs = rand_ids(rng, T5_V, [1, 5, 13, 24, 40])
    tgts = rand_ids(rng, T5_V, [1, 4, 7, 22, 9])
    return list(zip(srcs, tgts)), rand_ids(rng, T5_V, [3, 7, 1, 12])


def t5_ref(a, parts, rng):
    """T5 folders from bench/t5_torch.py's make_weights (Hugging Face's names
    and the embed_tokens aliases save_pretrained writes) against its
    forward (t5_logits)."""
    import t5_torch
    pairs, prompts = t5_data(rng)
    for seed, (name, shp) in enumerate(T5_SHAPES.items()):
        cfg = dict(model_type="t5", architectures=["T5ForConditionalGeneration"],
                   layer_norm_epsilon=1e-6, decoder_start_token_id=0, pad_token_id=0,
                   eos_token_id=1, n_positions=512, is_encoder_decoder=True, vocab_size=T5_V, **shp)
        d = os.path.join(a.work, "t5_ref", name)
        os.makedirs(d, exist_ok=True)
        P = t5_torch.make_weights(cfg, torch.Generator().manual_seed(40 + seed))
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f, indent=1)
        files = dict(P)
        files["encoder.embed_tokens.weight"] = files["decoder.embed_tokens.weight"] = P["shared.weight"]
        write_safetensors(os.path.join(d, "model.safetensors"), files)

        def logits_fn(src, dec, P=P, cfg=cfg):
            with torch.no_grad():
                return t5_torch.t5_logits(P, cfg, torch.tensor([src]), torch.tensor([0]),
                                          torch.tensor([dec]))[0]
        for dev in ("cpu", "cuda"):
            check_model(a, parts, "%s_ref_%s" % (name, dev), d, s2s_spec(logits_fn, 0), dev, pairs,
                        prompts, new=8)


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
        check_model(a, parts, "gpt2_hf_" + dev, d, lm_spec(logits_fn, EOT), dev, docs, prompts,
                    extra=extra)


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


def saved_rope(d):
    """The rotary settings as save_pretrained wrote them (recorded: transformers
    5 writes rope_parameters where 4 wrote top-level keys)."""
    c = json.load(open(os.path.join(d, "config.json")))
    return {k: c[k] for k in ("rotary_dim", "rotary_pct", "rotary_emb_base", "rope_theta",
                              "partial_rotary_factor", "rope_parameters", "rope_scaling") if k in c}


def set_rope(cfg, theta, pct=None):
    """A base (and a rotated fraction) other than the defaults, so that a
    loader that misses them fails: in rope_parameters (transformers 5) or as
    the older attributes (4)."""
    rp = getattr(cfg, "rope_parameters", None)
    if isinstance(rp, dict):
        rp["rope_theta"] = theta
        if pct is not None:
            rp["partial_rotary_factor"] = pct
    else:
        cfg.rope_theta = theta
        if pct is not None:
            cfg.rotary_pct, cfg.rotary_emb_base = pct, theta


HF_V = 512


def hf_rotary(a, parts, tf, rng):
    """GPT-J, GPT-NeoX and Llama made by transformers (its own random
    initialisation at std 0.1, save_pretrained) against its forward, scored
    with --no-bos."""
    import transformers as T
    docs = rand_ids(rng, HF_V, [2, 5, 17, 40, 100])
    prompts = rand_ids(rng, HF_V, [3, 8, 1, 12])
    makers = [
        ("gptj_hf", "GPTJConfig", "GPTJForCausalLM",
         dict(vocab_size=HF_V, n_positions=128, n_embd=64, n_layer=2, n_head=4, rotary_dim=8), None),
        ("neox_hf", "GPTNeoXConfig", "GPTNeoXForCausalLM",
         dict(vocab_size=HF_V, max_position_embeddings=128, hidden_size=64, num_hidden_layers=2,
              num_attention_heads=4, intermediate_size=128, use_parallel_residual=True), (5000.0, 0.5)),
        ("llama_hf", "LlamaConfig", "LlamaForCausalLM",
         dict(vocab_size=HF_V, max_position_embeddings=128, hidden_size=64, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, intermediate_size=96), (20000.0, None)),
    ]
    for name, cname, mname, kw, rope in makers:
        try:
            cfg = getattr(T, cname)(initializer_range=0.1, **kw)
            if rope:
                set_rope(cfg, *rope)
            torch.manual_seed(13)
            m = getattr(T, mname)(cfg).eval()
            d = os.path.join(a.work, name)
            save(m, d)
        except Exception as e:
            for dev in ("cpu", "cuda"):
                parts.add("%s_%s" % (name, dev), "fail", "transformers could not make the model: %s: %s"
                          % (type(e).__name__, e))
            continue

        def logits_fn(ids, m=m):
            with torch.no_grad():
                return m(torch.tensor([ids])).logits[0].float()
        extra = {"transformers": tf, "saved_rope": saved_rope(d)}
        for dev in ("cpu", "cuda"):
            check_model(a, parts, "%s_%s" % (name, dev), d, lm_spec(logits_fn, None), dev, docs,
                        prompts, new=8, extra=extra)


def hf_t5(a, parts, tf, rng):
    """T5ForConditionalGeneration made by transformers (a v1.0 and a v1.1
    shape, initializer_factor 1, save_pretrained) against its forward."""
    from transformers import T5Config, T5ForConditionalGeneration
    pairs, prompts = t5_data(rng)
    for seed, (name, shp) in enumerate(T5_SHAPES.items()):
        cfg = T5Config(vocab_size=T5_V, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
                       dropout_rate=0.0, initializer_factor=1.0, **shp)
        torch.manual_seed(17 + seed)
        m = T5ForConditionalGeneration(cfg).eval()
        d = os.path.join(a.work, name + "_hf")
        save(m, d)

        def logits_fn(src, dec, m=m):
            with torch.no_grad():
                return m(input_ids=torch.tensor([src]), decoder_input_ids=torch.tensor([dec])).logits[0].float()
        # what was saved: transformers 5.17 keeps scale_decoder_outputs apart
        # from tie_word_embeddings (and may tie a head asked to be untied)
        c = json.load(open(os.path.join(d, "config.json")))
        with open(os.path.join(d, "model.safetensors"), "rb") as f:
            names = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        extra = {"transformers": tf, "lm_head_saved": "lm_head.weight" in names,
                 "saved": {k: c.get(k) for k in ("tie_word_embeddings", "scale_decoder_outputs")}}
        for dev in ("cpu", "cuda"):
            check_model(a, parts, "%s_hf_%s" % (name, dev), d, s2s_spec(logits_fn, 0), dev, pairs,
                        prompts, new=8, extra=extra)


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
            check_model(a, parts, "gpt2_ref_" + dev, os.path.join(a.work, "gpt2_ref"),
                        lm_spec(ref_logits_own(p, cfg), EOT), dev, docs, prompts)
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

    for n, f in (("rotary_ref", rotary_ref), ("t5_ref", t5_ref)):
        try:
            f(a, parts, random.Random(n))
        except Exception as e:
            parts.add(n, "fail", "%s: %s" % (type(e).__name__, e))

    hf = ("gpt2_hf", "classifiers_hf", "rotary_hf", "t5_hf")
    try:
        import transformers
        tf = transformers.__version__
    except ImportError as e:
        tf = None
        for n in hf:
            parts.add(n, "skip", "transformers is not installed (%s)" % e)
    if tf:
        for n, f in zip(hf, (lambda: hf_gpt2(a, parts, docs, prompts, tf),
                             lambda: hf_classifiers(a, parts, tf),
                             lambda: hf_rotary(a, parts, tf, random.Random(n)),
                             lambda: hf_t5(a, parts, tf, random.Random(n)))):
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
