#!/usr/bin/python3
"""PyTorch's own pytorch_model.bin files for tests/trainer/test_pt_bin.c.

usage: pt_bin_reference.py SRC OUT

SRC: a GPT-2 folder the test exported (config.json, model.safetensors, F32,
Hugging Face names and Conv1D layouts). Everything below is written by
PyTorch 1.13's torch.save (the default zip format) from those weights:

  OUT/bin/      pytorch_model.bin of every tensor as float32, as
                GPT2LMHeadModel.state_dict() holds them: an OrderedDict with
                a _metadata attribute (pickled through BUILD), the names
                with "transformer.", lm_head.weight sharing wte's storage,
                and h.0.attn.c_attn.bias a view at offset 5 of a larger
                storage
  OUT/f16/      the same with wpe.weight as float16 and ln_f.weight as
                bfloat16; OUT/f16ref/model.safetensors holds those rounded
                values as float32 (the same weights, through safetensors)
  OUT/shards/   two shards pytorch_model-0000i-of-00002.bin and
                pytorch_model.bin.index.json
  OUT/evil.bin  a zip whose data.pkl calls os.system("touch OUT/pwned")
                through GLOBAL + REDUCE: must be refused, OUT/pwned never made
  OUT/trunc.bin bin/'s file with one storage entry 4 bytes short
  OUT/dup.bin   bin/'s file with wpe.weight's key renamed to wte.weight's
  OUT/legacy/   f16's weights in the legacy format
                (_use_new_zipfile_serialization=False: pickles, then the
                storages), and OUT/legacy-trunc.bin that file 4 bytes short
  OUT/pickle.bin a pickle of {"hello": 1}: not torch.save's
  OUT/view.bin  wte.weight saved as a transposed (non-contiguous) view
  OUT/nested.bin {"model": state_dict}: not a flat state dict
  OUT/nan/      bin/'s weights (float32) with h.1.mlp.c_proj.weight[0, 3]
                NaN: refused, naming the tensor and element 3
  OUT/inf16/    bin/'s weights with wpe.weight as float16 and its [2, 1]
                +Inf: refused, naming the tensor and element 2 * 8 + 1 = 17
"""
import collections
import json
import os
import shutil
import sys
import zipfile

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from gpt2_torch import read_safetensors, write_safetensors  # noqa: E402


def state_dict(w):
    sd = collections.OrderedDict()
    for k, v in w.items():
        sd["transformer." + k] = v.clone()
    sd._metadata = collections.OrderedDict([("", {"version": 1})])
    return sd


def folder(src, d, sd):
    os.makedirs(d, exist_ok=True)
    shutil.copy(os.path.join(src, "config.json"), d)
    torch.save(sd, os.path.join(d, "pytorch_model.bin"))


def main():
    src, out = sys.argv[1], sys.argv[2]
    w, _ = read_safetensors(os.path.join(src, "model.safetensors"))

    sd = state_dict(w)
    sd["lm_head.weight"] = sd["transformer.wte.weight"]  # tied: one storage
    b = sd["transformer.h.0.attn.c_attn.bias"]
    big = torch.cat([torch.arange(5, dtype=torch.float32), b, torch.ones(3)])
    sd["transformer.h.0.attn.c_attn.bias"] = big[5:5 + b.numel()]  # storage offset 5
    folder(src, os.path.join(out, "bin"), sd)

    sd = state_dict(w)
    sd["transformer.wpe.weight"] = sd["transformer.wpe.weight"].half()
    sd["transformer.ln_f.weight"] = sd["transformer.ln_f.weight"].bfloat16()
    folder(src, os.path.join(out, "f16"), sd)
    os.makedirs(os.path.join(out, "f16ref"), exist_ok=True)
    shutil.copy(os.path.join(src, "config.json"), os.path.join(out, "f16ref"))
    write_safetensors(os.path.join(out, "f16ref", "model.safetensors"),
                      {k: v.float() for k, v in sd.items()})

    sd = state_dict(w)
    d = os.path.join(out, "shards")
    os.makedirs(d, exist_ok=True)
    shutil.copy(os.path.join(src, "config.json"), d)
    keys = list(sd)
    parts = [keys[:len(keys) // 2], keys[len(keys) // 2:]]
    wmap = {}
    for i, part in enumerate(parts):
        fn = "pytorch_model-%05d-of-00002.bin" % (i + 1)
        torch.save(collections.OrderedDict((k, sd[k]) for k in part), os.path.join(d, fn))
        wmap.update({k: fn for k in part})
    with open(os.path.join(d, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": wmap}, f)

    # os.system("touch OUT/pwned") as a pickle: GLOBAL, the argument, TUPLE1, REDUCE
    cmd = ("touch " + os.path.join(out, "pwned")).encode()
    pkl = (b"\x80\x02cos\nsystem\nq\x00X" + len(cmd).to_bytes(4, "little") + cmd +
           b"q\x01\x85q\x02Rq\x03.")
    with zipfile.ZipFile(os.path.join(out, "evil.bin"), "w", zipfile.ZIP_STORED) as z:
        z.writestr("evil/data.pkl", pkl)
        z.writestr("evil/version", "3\n")

    with zipfile.ZipFile(os.path.join(out, "bin", "pytorch_model.bin")) as zi, \
            zipfile.ZipFile(os.path.join(out, "trunc.bin"), "w", zipfile.ZIP_STORED) as zo, \
            zipfile.ZipFile(os.path.join(out, "dup.bin"), "w", zipfile.ZIP_STORED) as zd:
        for n in zi.namelist():
            data = zi.read(n)
            zo.writestr(n, data[:-4] if n.endswith("/data/1") else data)
            if n.endswith("/data.pkl"):  # one key renamed to another of its length
                assert b"transformer.wpe.weight" in data
                data = data.replace(b"transformer.wpe.weight", b"transformer.wte.weight")
            zd.writestr(n, data)

    d = os.path.join(out, "legacy")
    os.makedirs(d, exist_ok=True)
    shutil.copy(os.path.join(src, "config.json"), d)
    sd = state_dict(w)
    sd["transformer.wpe.weight"] = sd["transformer.wpe.weight"].half()  # the f16 folder's weights
    sd["transformer.ln_f.weight"] = sd["transformer.ln_f.weight"].bfloat16()
    torch.save(sd, os.path.join(d, "pytorch_model.bin"), _use_new_zipfile_serialization=False)
    with open(os.path.join(d, "pytorch_model.bin"), "rb") as f:
        data = f.read()
    with open(os.path.join(out, "legacy-trunc.bin"), "wb") as f:
        f.write(data[:-4])
    with open(os.path.join(out, "pickle.bin"), "wb") as f:  # a pickle, not torch.save's
        f.write(b"\x80\x02}q\x00X\x05\x00\x00\x00helloK\x01s.")
    sd = state_dict(w)
    sd["transformer.wte.weight"] = sd["transformer.wte.weight"].t().contiguous().t()
    torch.save(sd, os.path.join(out, "view.bin"))
    torch.save({"model": state_dict(w)}, os.path.join(out, "nested.bin"))
    sd = state_dict(w)
    sd["transformer.h.1.mlp.c_proj.weight"][0, 3] = float("nan")
    folder(src, os.path.join(out, "nan"), sd)
    sd = state_dict(w)
    sd["transformer.wpe.weight"] = sd["transformer.wpe.weight"].half()
    sd["transformer.wpe.weight"][2, 1] = float("inf")
    folder(src, os.path.join(out, "inf16"), sd)


if __name__ == "__main__":
    main()
