#!/usr/bin/python3
"""NLTK's METEOR, corpus BLEU and PorterStemmer on input from the C tests.

Usage: nltk_reference.py WORDNET_DIR meteor_bleu INPUT.jsonl
       nltk_reference.py WORDNET_DIR stem WORDS.txt
       nltk_reference.py WORDNET_DIR synonyms WORDS.txt

INPUT.jsonl: one {"hyp": [tokens], "refs": [[tokens], ...]} per line.
Prints one JSON object. Exit status 77 when NLTK is missing.

NLTK's WordNet reader wants a corpus folder with a `lexnames` file, which
Debian's wordnet-base does not ship; the folder is made here, in a temporary
directory, from links to the Debian files plus the 45 WordNet 3.0 lexicographer
file names (lexnames(5WN)). The names only label synsets; METEOR does not use
them.
"""
import json
import os
import sys
import tempfile

try:
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader
    from nltk.stem.porter import PorterStemmer
    from nltk.translate.bleu_score import corpus_bleu
    from nltk.translate.meteor_score import meteor_score
except ImportError as e:
    print("NLTK is not installed: %s" % e, file=sys.stderr)
    sys.exit(77)

LEXNAMES = """adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact
noun.attribute noun.body noun.cognition noun.communication noun.event noun.feeling
noun.food noun.group noun.location noun.motive noun.object noun.person noun.phenomenon
noun.plant noun.possession noun.process noun.quantity noun.relation noun.shape
noun.state noun.substance noun.time verb.body verb.change verb.cognition
verb.communication verb.competition verb.consumption verb.contact verb.creation
verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative
verb.weather adj.ppl""".split()
SYNTAX = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}


def wordnet(src, tmp):
    for pos in ("noun", "verb", "adj", "adv"):
        for name in ("index." + pos, "data." + pos, pos + ".exc"):
            os.symlink(os.path.join(src, name), os.path.join(tmp, name))
    with open(os.path.join(tmp, "lexnames"), "w") as f:
        for i, name in enumerate(LEXNAMES):
            f.write("%02d\t%s\t%d\n" % (i, name, SYNTAX[name.split(".")[0]]))
    return WordNetCorpusReader(tmp, None)


def main():
    src, mode, path = sys.argv[1:4]
    with tempfile.TemporaryDirectory() as tmp:
        wn = wordnet(src, tmp)
        out = {"nltk": nltk.__version__}
        if mode == "meteor_bleu":
            items = [json.loads(l) for l in open(path, encoding="utf-8")]
            out["meteor"] = [meteor_score(it["refs"], it["hyp"], wordnet=wn) for it in items]
            # BLEU over the items whose hypothesis has at least 4 tokens: for
            # shorter ones NLTK counts a denominator of 1 where pycocoevalcap
            # counts 0 (see docs/metrics.md).
            long_ = [it for it in items if len(it["hyp"]) >= 4]
            out["bleu_n"] = len(long_)
            out["bleu"] = [
                corpus_bleu([it["refs"] for it in long_], [it["hyp"] for it in long_],
                            weights=tuple([1.0 / n] * n))
                for n in (1, 2, 3, 4)
            ]
        elif mode == "stem":
            st = PorterStemmer()
            out["stems"] = [st.stem(w) for w in open(path, encoding="utf-8").read().split()]
        elif mode == "synonyms":
            res = []
            for w in open(path, encoding="utf-8").read().split():
                syns = set(l.name() for s in wn.synsets(w) for l in s.lemmas()
                           if l.name().find("_") < 0)
                syns.add(w)
                res.append(sorted(syns))
            out["synonyms"] = res
        json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
