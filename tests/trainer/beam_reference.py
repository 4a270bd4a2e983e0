#!/usr/bin/python3
"""The reference for tests/trainer/test_beam.c: Hugging Face generate's beam
search and greedy search over a GPT-2, without transformers (not installed
here): PyTorch 1.13 and the GPT-2 modules of tests/harness/hf_gpt2_reference.py.

    beam_reference.py FOLDER SPEC.json

FOLDER holds model.safetensors (names without "transformer.", as
model_export_safetensors writes them) and config.json. SPEC is
{"prompts": [[ids]...], "T": the batch's padded width, "eos": id or -1,
 "cases": [{"num_beams", "num_return", "length_penalty", "early_stopping"
 ("true", "false" or "never"), "max_new", "min_new", "min_length"}]}.
Prints {"results": [case][prompt][hypothesis] = {"tokens": new tokens, the
end-of-text included when it ended one, "score": float}}.

The rules are transformers 4.30's (generation/utils.py beam_search and
greedy_search; generation/beam_search.py BeamSearchScorer.process and
finalize, BeamHypotheses.add and is_done), written out here from what they
do, not copied:
  - each step: log_softmax of the last position's logits; the minimum-length
    processors then set the end-of-text's entry to -inf while the new tokens
    are fewer than min_new or the sequence (prompt columns + new tokens) is
    shorter than min_length; add each beam's running score; the 2 k best of
    the k x V candidates, best first. Beam 0 starts at 0, the others at
    -1e9.
  - an end-of-text candidate among the first k finishes a hypothesis: the
    beam's tokens so far (not the end-of-text), scored sum / len ** lp with
    len the beam's input_ids length (prompt columns, left padding included,
    + new tokens before the end-of-text); it is kept when fewer than k are
    kept or it beats the worst kept (then the worst, lowest (score, order),
    leaves). Candidates that are not end-of-text fill the k next beams in
    rank order.
  - a prompt is done when k hypotheses are kept and: early_stopping True;
    False: worst >= best candidate / cur_len ** lp; "never": the same with
    max_length (prompt columns + max_new) for cur_len when lp > 0. cur_len is
    the input_ids length before the step's token.
  - at max_new (or when every prompt is done) the open beams of prompts not
    done join the hypotheses (len = prompt columns + max_new); the best
    num_return by score are returned (a stable sort, popped from the end).
  - num_beams 1 is greedy search: argmax of the logits with the end-of-text
    banned while too short, stopping at the end-of-text; its score (which
    transformers does not return) is the same formula over the greedy tokens.
The model runs each prompt alone, unpadded, in double precision, over the
whole sequence every step (no cache), and the beam arithmetic is in double.

A FOLDER whose config.json says model_type "t5" (what dfpo's T5 export
writes) is read as T5ForConditionalGeneration by tests/trainer/t5_reference.py
instead (in float32, as that module computes): each prompt is the encoder's source, the decoder starts from
decoder_start_token_id, and the lengths count the decoder's ids (the start
token and the new tokens), as transformers does for an encoder-decoder; "T"
is then 1.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
import hf_gpt2_reference as ref  # noqa: E402


class T5Source:
    """A T5 bound to one encoder source: next_logprobs runs its decoder."""

    def __init__(self, P, cfg, src):
        self.P, self.cfg, self.src = P, cfg, src


def load(folder):
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    if cfg.get("model_type") == "t5":
        import t5_reference as t5r
        P, _ = t5r.read_safetensors(os.path.join(folder, "model.safetensors"))
        return ("t5", P, cfg)  # float32: t5_reference computes as transformers does
    state, _ = ref.read_safetensors(os.path.join(folder, "model.safetensors"))
    state = {("transformer." + k if not k.startswith(("transformer.", "lm_head.")) else k): v
             for k, v in state.items()}
    model = ref.GPT2LMHeadModel(cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or missing not in ([], ["lm_head.weight"]):
        sys.exit("state dict: missing %s, unexpected %s" % (missing, unexpected))
    model.lm_head.weight = model.transformer.wte.weight
    return model.double().eval()


def next_logprobs(model, seqs):
    with torch.no_grad():
        if isinstance(model, T5Source):
            import t5_reference as t5r
            src = torch.tensor([model.src] * len(seqs))
            logits = t5r.t5_logits(model.P, model.cfg, src, torch.zeros(len(seqs), dtype=torch.long),
                                   torch.tensor(seqs))[:, -1, :]
        else:
            logits = model(torch.tensor(seqs))[:, -1, :]
    return logits, torch.log_softmax(logits, dim=-1)


class Hyps:
    def __init__(self, k, lp):
        self.k, self.lp, self.entries, self.worst = k, lp, [], 1e9

    def add(self, tokens, total, length):
        score = total / (length ** self.lp)
        if len(self.entries) < self.k or score > self.worst:
            self.entries.append((score, tokens))
            if len(self.entries) > self.k:
                order = sorted((s, i) for i, (s, _) in enumerate(self.entries))
                del self.entries[order[0][1]]
                self.worst = order[1][0]
            else:
                self.worst = min(score, self.worst)

    def done(self, best, cur_len, max_length, early):
        if len(self.entries) < self.k:
            return False
        if early == "true":
            return True
        at = max_length if early == "never" and self.lp > 0 else cur_len
        return self.worst >= best / (at ** self.lp)


def banned(c, step, T):
    return c["eos"] >= 0 and (step < c["min_new"] or T + step < c["min_length"])


def greedy(model, prompt, c, T):
    seq, total, new = list(prompt), 0.0, []
    for step in range(c["max_new"]):
        logits, lp = next_logprobs(model, [seq])
        z = logits[0].clone()
        if banned(c, step, T):
            z[c["eos"]] = float("-inf")
        tok = int(torch.argmax(z))
        total += float(lp[0, tok])
        new.append(tok)
        seq.append(tok)
        if tok == c["eos"]:
            break
    length = T + len(new) - (1 if new[-1] == c["eos"] else 0)
    return [{"tokens": new, "score": total / (length ** c["length_penalty"])}]


def beam(model, prompt, c, T):
    k, V = c["num_beams"], None
    eos, lpen = c["eos"], c["length_penalty"]
    max_length = T + c["max_new"]
    beams = [[] for _ in range(k)]  # new tokens of each beam
    scores = torch.tensor([0.0] + [-1e9] * (k - 1), dtype=torch.float64)
    hyps = Hyps(k, lpen)
    done = False
    for step in range(c["max_new"]):
        _, lp = next_logprobs(model, [list(prompt) + b for b in beams])
        V = lp.shape[1]
        if banned(c, step, T):
            lp[:, eos] = float("-inf")
        cand = (lp + scores[:, None]).reshape(-1)
        top_scores, top_ids = torch.topk(cand, 2 * k, largest=True, sorted=True)
        cur_len = T + step
        nxt, nxt_scores = [], []
        for rank in range(2 * k):
            j, tok, sc = int(top_ids[rank]) // V, int(top_ids[rank]) % V, float(top_scores[rank])
            if eos >= 0 and tok == eos:
                if rank < k:
                    hyps.add(beams[j] + [eos], sc, T + len(beams[j]))
            else:
                nxt.append(beams[j] + [tok])
                nxt_scores.append(sc)
            if len(nxt) == k:
                break
        assert len(nxt) == k
        done = hyps.done(float(top_scores[0]), cur_len, max_length, c["early_stopping"])
        beams, scores = nxt, torch.tensor(nxt_scores, dtype=torch.float64)
        if done:
            break
    if not done:
        for j in range(k):
            hyps.add(beams[j], float(scores[j]), T + len(beams[j]))
    ranked = sorted(hyps.entries, key=lambda e: e[0])
    return [{"tokens": ranked[-1 - r][1], "score": ranked[-1 - r][0]}
            for r in range(c["num_return"])]


def main(folder, spec_path):
    model = load(folder)
    with open(spec_path) as f:
        spec = json.load(f)
    results = []
    for c in spec["cases"]:
        c = dict(c, eos=spec["eos"])
        run = greedy if c["num_beams"] == 1 else beam
        if isinstance(model, tuple):  # T5: the prompt is the source, the decoder starts alone
            _, P, cfg = model
            results.append([run(T5Source(P, cfg, p), [cfg["decoder_start_token_id"]], c, 1)
                            for p in spec["prompts"]])
        else:
            results.append([run(model, p, c, spec["T"]) for p in spec["prompts"]])
    print(json.dumps({"results": results}))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
