#!/usr/bin/python3
"""What transformers would make of a folder `dfpo export` wrote, without
transformers (not installed here): PyTorch 1.13 and the `regex` module only.

    hf_gpt2_reference.py score FOLDER IDS_FILE TEXT_FILE
        Reads FOLDER as GPT2LMHeadModel.from_pretrained and
        GPT2TokenizerFast.from_pretrained would: config.json for the sizes,
        model.safetensors (a small reader below) loaded with
        load_state_dict into a module tree with GPT2LMHeadModel's names, so
        that a missing or unexpected tensor fails as it would there
        (lm_head.weight may be absent: it is tied to transformer.wte.weight),
        and vocab.json + merges.txt read the way GPT2Tokenizer reads them
        (merges.txt: the first line skipped, the empty last one dropped).
        Prints one JSON object: "logprobs" (for each line of IDS_FILE, the
        log-probability of each token after the first given the ones before,
        in double precision), "ids" (each line of TEXT_FILE encoded),
        "config" (config.json), "special" (the token strings of
        special_tokens_map.json and their ids in vocab.json),
        "added_tokens_decoder" (tokenizer_config.json's ids -> contents) and
        "model_max_length".

    hf_gpt2_reference.py score FOLDER IDS_FILE TEXT_FILE ADAPTER_FOLDER
        The same over FOLDER with the LoRA adapters of ADAPTER_FOLDER applied
        as peft's PeftModel.from_pretrained(model, ADAPTER_FOLDER) applies
        them, unmerged: adapter_config.json's target_modules matched against
        the module names (a name equal to an entry or ending in "." + it),
        each matched Conv1D computing base(x) + (x A^T B^T) * lora_alpha / r
        (lora_alpha / sqrt(r) with use_rslora, as peft's LoraLayer) with A = base_model.model.<name>.lora_A.weight [r, in] and B =
        .lora_B.weight [out, r] from adapter_model.safetensors (a missing,
        unused or misshapen adapter tensor fails). The JSON gets "adapted":
        the names of the adapted modules, and "adapter_config".

    hf_gpt2_reference.py shard FOLDER N
        Splits FOLDER/model.safetensors into N shards
        model-0000i-of-0000N.safetensors with a model.safetensors.index.json,
        as save_pretrained does for big models, and removes the single file.

The modules follow transformers' modeling_gpt2.py (v4.x) semantics: Conv1D
(y = x W + b, W stored [in, out]), attention with a fused c_attn split into
q, k, v, scores scaled by 1/sqrt(head size), a causal mask, c_proj; an MLP
4 n_embd wide (n_inner when set) with gelu_new (the tanh approximation);
pre-LayerNorm blocks with layer_norm_epsilon; learned positions; ln_f; an LM
head tied to the token embedding. No dropout (eval mode). Written for this
test from the model's definition, not copied.
"""
import json
import math
import os
import struct
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
import gpt2_ref  # noqa: E402  (the project's reference BPE: bytes_to_unicode, the pattern, ranks)

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def read_safetensors(path):
    """name -> tensor, and the raw header, of one .safetensors file."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, en = e["data_offsets"]
        t = torch.frombuffer(bytearray(data[base + b:base + en]), dtype=DTYPES[e["dtype"]])
        out[name] = t.reshape(e["shape"]).float()
    return out, header


def write_safetensors(path, header, blobs):
    """header: name -> {dtype, shape}; blobs: name -> bytes, in order."""
    off = 0
    h = {}
    for name, e in header.items():
        h[name] = {"dtype": e["dtype"], "shape": e["shape"],
                   "data_offsets": [off, off + len(blobs[name])]}
        off += len(blobs[name])
    h["__metadata__"] = {"format": "pt"}
    js = json.dumps(h).encode()
    js += b" " * ((8 - len(js) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(js)))
        f.write(js)
        for name in header:
            f.write(blobs[name])


class Conv1D(nn.Module):
    def __init__(self, nf, nx):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.empty(nf))

    def forward(self, x):
        return torch.addmm(self.bias, x.reshape(-1, x.size(-1)), self.weight).reshape(
            *x.shape[:-1], self.weight.size(1))


class Attention(nn.Module):
    def __init__(self, cfg, layer):
        super().__init__()
        e = cfg["n_embd"]
        self.n_head = cfg["n_head"]
        self.head = e // self.n_head
        self.scale = cfg.get("scale_attn_weights", True)
        self.inv_layer = cfg.get("scale_attn_by_inverse_layer_idx", False)
        self.layer = layer
        self.c_attn = Conv1D(3 * e, e)
        self.c_proj = Conv1D(e, e)
        n = cfg["n_positions"]
        # not part of the state dict (persistent=False, as in transformers)
        self.register_buffer("bias", torch.tril(torch.ones(n, n, dtype=torch.bool)),
                             persistent=False)

    def forward(self, x):
        B, T, E = x.shape
        q, k, v = self.c_attn(x).split(E, dim=2)
        q, k, v = (t.reshape(B, T, self.n_head, self.head).transpose(1, 2) for t in (q, k, v))
        w = q @ k.transpose(-1, -2)
        if self.scale:
            w = w / math.sqrt(self.head)
        if self.inv_layer:
            w = w / float(self.layer + 1)
        w = torch.where(self.bias[:T, :T], w, torch.tensor(torch.finfo(w.dtype).min, dtype=w.dtype))
        a = torch.softmax(w, dim=-1) @ v
        return self.c_proj(a.transpose(1, 2).reshape(B, T, E))


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        e = cfg["n_embd"]
        inner = cfg.get("n_inner") or 4 * e
        assert cfg.get("activation_function", "gelu_new") == "gelu_new", cfg["activation_function"]
        self.c_fc = Conv1D(inner, e)
        self.c_proj = Conv1D(e, inner)

    def forward(self, x):
        return self.c_proj(gelu_new(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, cfg, layer):
        super().__init__()
        e, eps = cfg["n_embd"], cfg.get("layer_norm_epsilon", 1e-5)
        self.ln_1 = nn.LayerNorm(e, eps=eps)
        self.attn = Attention(cfg, layer)
        self.ln_2 = nn.LayerNorm(e, eps=eps)
        self.mlp = MLP(cfg)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT2Model(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        e = cfg["n_embd"]
        self.wte = nn.Embedding(cfg["vocab_size"], e)
        self.wpe = nn.Embedding(cfg["n_positions"], e)
        self.h = nn.ModuleList(Block(cfg, i) for i in range(cfg["n_layer"]))
        self.ln_f = nn.LayerNorm(e, eps=cfg.get("layer_norm_epsilon", 1e-5))

    def forward(self, ids):
        x = self.wte(ids) + self.wpe(torch.arange(ids.size(1)))
        for b in self.h:
            x = b(x)
        return self.ln_f(x)


class GPT2LMHeadModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.transformer = GPT2Model(cfg)
        self.lm_head = nn.Linear(cfg["n_embd"], cfg["vocab_size"], bias=False)

    def forward(self, ids):
        return self.lm_head(self.transformer(ids))


def load_model(folder, cfg):
    path = os.path.join(folder, "model.safetensors")
    if os.path.exists(path):
        state, _ = read_safetensors(path)
    else:
        with open(os.path.join(folder, "model.safetensors.index.json")) as f:
            index = json.load(f)
        state = {}
        for shard in sorted(set(index["weight_map"].values())):
            part, _ = read_safetensors(os.path.join(folder, shard))
            state.update(part)
    model = GPT2LMHeadModel(cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = cfg.get("tie_word_embeddings", True)
    if unexpected or missing not in ([], ["lm_head.weight"]) or (missing and not tied):
        sys.exit("state dict: missing %s, unexpected %s" % (missing, unexpected))
    if tied:
        model.lm_head.weight = model.transformer.wte.weight
    return model.double().eval()


class LoraConv1D(nn.Module):
    """peft's LoRA Linear over a Conv1D, unmerged, dropout 0."""

    def __init__(self, base, a, b, scale):
        super().__init__()
        self.base, self.a, self.b, self.scale = base, a, b, scale

    def forward(self, x):
        return self.base(x) + (x @ self.a.t() @ self.b.t()) * self.scale


def apply_adapters(model, folder):
    with open(os.path.join(folder, "adapter_config.json")) as f:
        acfg = json.load(f)
    assert acfg["peft_type"] == "LORA" and acfg["fan_in_fan_out"] is True, acfg
    state, _ = read_safetensors(os.path.join(folder, "adapter_model.safetensors"))
    if acfg.get("use_rslora"):
        scale = acfg["lora_alpha"] / math.sqrt(acfg["r"])
    else:
        scale = acfg["lora_alpha"] / acfg["r"]
    used, adapted = set(), []
    for name, mod in list(model.named_modules()):
        if not isinstance(mod, Conv1D):
            continue
        if not any(name == t or name.endswith("." + t) for t in acfg["target_modules"]):
            continue
        ka = "base_model.model." + name + ".lora_A.weight"
        kb = "base_model.model." + name + ".lora_B.weight"
        if ka not in state or kb not in state:
            sys.exit("adapter tensors of %s missing" % name)
        a, b = state[ka].double(), state[kb].double()
        nin, nout = mod.weight.shape
        if tuple(a.shape) != (acfg["r"], nin) or tuple(b.shape) != (nout, acfg["r"]):
            sys.exit("%s: lora_A %s, lora_B %s for a [%d, %d] Conv1D" % (name, tuple(a.shape),
                                                                       tuple(b.shape), nin, nout))
        used |= {ka, kb}
        parent = model.get_submodule(name.rsplit(".", 1)[0])
        setattr(parent, name.rsplit(".", 1)[1], LoraConv1D(mod, a, b, scale))
        adapted.append(name)
    if set(state) - used:
        sys.exit("adapter tensors not used: %s" % sorted(set(state) - used))
    return adapted, acfg


def load_tokenizer(folder):
    """GPT2Tokenizer's reading of vocab.json and merges.txt, on the project's
    reference BPE (bench/gpt2_ref.py)."""
    enc = gpt2_ref.Encoder.__new__(gpt2_ref.Encoder)
    with open(os.path.join(folder, "vocab.json"), encoding="utf-8") as f:
        enc.encoder = json.load(f)
    with open(os.path.join(folder, "merges.txt"), encoding="utf-8") as f:
        lines = f.read().split("\n")[1:-1]
    enc.ranks = {tuple(l.split()): i for i, l in enumerate(lines)}
    _, enc.byte_char = gpt2_ref.byte_alphabet()
    enc.pat = gpt2_ref.regex.compile(gpt2_ref.PATTERN)
    enc.cache = {}
    return enc


def score(folder, ids_file, text_file, adapter_folder=None):
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    assert cfg["model_type"] == "gpt2" and cfg["architectures"] == ["GPT2LMHeadModel"], cfg
    model = load_model(folder, cfg)
    adapted, acfg = apply_adapters(model, adapter_folder) if adapter_folder else ([], None)
    logprobs = []
    with open(ids_file) as f, torch.no_grad():
        for line in f:
            ids = [int(x) for x in line.split()]
            if len(ids) < 2:
                continue
            logits = model(torch.tensor([ids]))[0]
            lp = torch.log_softmax(logits[:-1], dim=-1).gather(1, torch.tensor(ids[1:])[:, None])
            logprobs.append(lp[:, 0].tolist())
    enc = load_tokenizer(folder)
    with open(text_file, "rb") as f:
        texts = f.read().split(b"\n")[:-1]
    with open(os.path.join(folder, "special_tokens_map.json")) as f:
        special = json.load(f)
    with open(os.path.join(folder, "tokenizer_config.json")) as f:
        tcfg = json.load(f)
    print(json.dumps({
        "logprobs": logprobs,
        "ids": [enc.encode(t) for t in texts],
        "config": cfg,
        "special": {k: [v, enc.encoder.get(v)] for k, v in special.items()},
        "added_tokens_decoder": {k: v["content"] for k, v in tcfg.get("added_tokens_decoder", {}).items()},
        "model_max_length": tcfg.get("model_max_length"),
        "vocab_entries": len(enc.encoder),
        "max_vocab_id": max(enc.encoder.values()),
        "adapted": adapted,
        "adapter_config": acfg,
    }))


def shard(folder, n):
    path = os.path.join(folder, "model.safetensors")
    with open(path, "rb") as f:
        data = f.read()
    (hl,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + hl])
    header.pop("__metadata__", None)
    names = list(header)
    per = -(-len(names) // n)
    weight_map = {}
    for i in range(n):
        part = names[i * per:(i + 1) * per]
        fname = "model-%05d-of-%05d.safetensors" % (i + 1, n)
        blobs = {}
        for name in part:
            b, e = header[name]["data_offsets"]
            blobs[name] = data[8 + hl + b:8 + hl + e]
            weight_map[name] = fname
        write_safetensors(os.path.join(folder, fname), {k: header[k] for k in part}, blobs)
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": len(data) - 8 - hl}, "weight_map": weight_map}, f,
                  indent=2)
    os.remove(path)


if __name__ == "__main__":
    if len(sys.argv) in (5, 6) and sys.argv[1] == "score":
        score(*sys.argv[2:])
    elif len(sys.argv) == 4 and sys.argv[1] == "shard":
        shard(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(__doc__)
