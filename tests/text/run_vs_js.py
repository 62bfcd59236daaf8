#!/usr/bin/python3
"""`mpiquant tokenize` against Hugging Face's JavaScript tokenizer (@huggingface/tokenizers, the
version pinned in tests/text/package-lock.json, installed by tools/install-node-deps.sh).

For each fixture tokenizer (make_text_fixtures.py: Llama 2 in both layouts, Llama 3, Qwen 2, GPT-2)
and each corpus (corpus.jsonl: documents of English, code, CJK, emoji, combining marks, whitespace
runs, special tokens written in the text; corpus.txt: one document with ill-formed UTF-8), the
int32 .npy written by mpiquant must hold exactly the ids the JS tokenizer gives, also under
mpirun -np 2 and 3 (corpus.jsonl: its documents split across the ranks). Prints `ok`/`FAIL` lines and
`N passed, M failed`; exit 1 on any failure.

Where the JS library departs from the Rust crate that transformers uses, mpiquant follows the
Rust crate and the corpus stays out of the difference: GPT-2's built-in ByteLevel regex is
compiled with JavaScript's \s (no U+0085, plus U+FEFF) instead of Oniguruma's White_Space, so
U+0085 after spaces and U+FEFF do not occur; Metaspace(split=true) and Digits (JS: ASCII digits
only) are checked by hand-computed ids in test_tokens_text.c instead.
usage: run_vs_js.py --mpiquant BIN --mpirun "mpirun --oversubscribe" --fixtures DIR --workdir DIR"""
import argparse
import json
import os
import shlex
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENIZERS = ["llama2", "llama2_meta", "llama3", "qwen2", "gpt2"]
CORPORA = ["corpus.jsonl", "corpus.txt"]


def first_difference(a, b, vocab_r):
    m = min(len(a), len(b))
    d = np.nonzero(a[:m] != b[:m])[0]
    i = int(d[0]) if len(d) else m
    show = lambda x: [vocab_r.get(int(t), int(t)) for t in x[max(0, i - 3):i + 4]]
    return "lengths C %d JS %d; first difference at %d: C %s JS %s" % (len(a), len(b), i, show(a), show(b))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mpiquant", required=True)
    ap.add_argument("--mpirun", default="mpirun --oversubscribe")
    ap.add_argument("--fixtures", required=True)
    ap.add_argument("--workdir", required=True)
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    npass = nfail = 0
    nchars = 0
    for c in CORPORA:
        with open(os.path.join(a.fixtures, c), "rb") as f:
            nchars += len(f.read().decode("utf-8", errors="replace"))
    print("corpus: %d characters in %s" % (nchars, ", ".join(CORPORA)))
    for name in TOKENIZERS:
        model = os.path.join(a.fixtures, name)
        with open(os.path.join(model, "tokenizer.json"), encoding="utf-8") as f:
            tj = json.load(f)
        vocab_r = {v: k for k, v in tj["model"]["vocab"].items()}
        vocab_r.update({t["id"]: t["content"] for t in tj["added_tokens"]})
        for corpus in CORPORA:
            src = os.path.join(a.fixtures, corpus)
            ours = os.path.join(a.workdir, "%s_%s.npy" % (name, corpus))
            theirs = os.path.join(a.workdir, "%s_%s.i32" % (name, corpus))
            label = "%s on %s" % (name, corpus)
            r = subprocess.run([a.mpiquant, "tokenize", "--model", model, "--in", src, "--out", ours],
                               capture_output=True, text=True, timeout=120)
            if r.returncode != 0:
                print("FAIL %s: mpiquant exit %d: %s" % (label, r.returncode, r.stderr.strip()))
                nfail += 1
                continue
            j = subprocess.run(["node", os.path.join(HERE, "js_tokenize.mjs"), model, src, theirs],
                               capture_output=True, text=True, timeout=300)
            if j.returncode != 0:
                print("FAIL %s: the JS tokenizer failed (exit %d): %s" % (label, j.returncode,
                                                                          j.stderr.strip()[-3000:]))
                nfail += 1
                continue
            c_ids, js_ids = np.load(ours), np.fromfile(theirs, dtype="<i4")
            if c_ids.dtype != np.int32 or c_ids.ndim != 1:
                print("FAIL %s: .npy is %s %s, not 1-D int32" % (label, c_ids.dtype, c_ids.shape))
                nfail += 1
            elif np.array_equal(c_ids, js_ids):
                print("ok   %s: %d ids equal" % (label, len(c_ids)))
                npass += 1
            else:
                print("FAIL %s: %s" % (label, first_difference(c_ids, js_ids, vocab_r)))
                nfail += 1

    # under mpirun the documents are split across the ranks: the JS ids again, one summary line
    src = os.path.join(a.fixtures, "corpus.jsonl")
    for np_ in (2, 3):
        for name in TOKENIZERS:
            model = os.path.join(a.fixtures, name)
            out = os.path.join(a.workdir, "%s_np%d.npy" % (name, np_))
            theirs = os.path.join(a.workdir, "%s_corpus.jsonl.i32" % name)
            cmd = shlex.split(a.mpirun) + ["-np", str(np_), a.mpiquant, "tokenize", "--model", model,
                                           "--in", src, "--out", out]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            lines = [l for l in r.stdout.splitlines() if l.startswith("tokenized")]
            if r.returncode == 0 and len(lines) == 1 and os.path.exists(theirs) and \
                    np.array_equal(np.load(out), np.fromfile(theirs, dtype="<i4")):
                print("ok   %s on corpus.jsonl under mpirun -np %d: the JS ids, one summary line"
                      % (name, np_))
                npass += 1
            else:
                print("FAIL %s under mpirun -np %d: exit %d, %d summary lines: %s"
                      % (name, np_, r.returncode, len(lines), r.stderr.strip()[-2000:]))
                nfail += 1
    print("%d passed, %d failed" % (npass, nfail))
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main())
