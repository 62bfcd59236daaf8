#!/usr/bin/python3
"""Tokenizer speed: `mpiquant tokenize` vs Hugging Face's JavaScript tokenizer on the same text
(CTest label "bench": prints numbers, asserts only that both give the same ids).

The text is made from the fixtures' corpus (make_text_fixtures.py) with fresh words mixed in (random
letters, numbers), so the piece cache sees novel pieces as in real text, written as .jsonl
documents of about 4 KB. --ranks 1,2 also times `mpiquant tokenize` under mpirun at each rank count
(the documents split across the ranks; the ids must be the same at every count).
usage: bench_tokenize.py --mpiquant BIN --fixtures DIR --workdir DIR [--mb 16]
[--tokenizers llama3,llama2] [--no-js] [--ranks 1,2 --mpirun "mpirun --oversubscribe"]"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def make_text(fixtures, path, mb, seed=7):
    rng = np.random.RandomState(seed)
    docs = [json.loads(line)["text"] for line in open(os.path.join(fixtures, "corpus.jsonl"),
                                                      encoding="utf-8") if line.strip()]
    words = " ".join(docs).split(" ")
    letters = np.array(list("abcdefghijklmnopqrstuvwxyzéüçøñ日本語"))
    target = int(mb * 1e6)
    size = 0
    with open(path, "w", encoding="utf-8") as f:
        while size < target:
            a = int(rng.randint(0, len(words) - 700))
            chunk = words[a:a + int(rng.randint(300, 700))]
            for k in rng.randint(0, len(chunk), size=len(chunk) // 12):  # ~8% fresh words
                if rng.rand() < 0.5:
                    chunk[k] = "".join(rng.choice(letters, size=int(rng.randint(3, 11))))
                else:
                    chunk[k] = str(int(rng.randint(0, 10 ** 7)))
            line = json.dumps({"text": " ".join(chunk)}, ensure_ascii=False) + "\n"
            f.write(line)
            size += len(line.encode("utf-8"))
    return size


def by_ranks(a, name, model, text, ref):
    """`mpiquant tokenize` under mpirun at each count of a.ranks: wall seconds of the whole run and
    the encoding's MB/s as it prints them; 1 when a count fails or its ids differ from ref."""
    bad = 0
    for np_ in [int(x) for x in a.ranks.split(",")]:
        out = os.path.join(a.workdir, "%s_np%d.npy" % (name, np_))
        cmd = shlex.split(a.mpirun) + ["-np", str(np_), a.mpiquant, "tokenize", "--model", model,
                                       "--in", text, "--out", out]
        t0 = time.time()
        r = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.time() - t0
        if r.returncode != 0:
            print("FAIL %s at %d rank(s): exit %d: %s" % (name, np_, r.returncode, r.stderr.strip()[-2000:]))
            bad = 1
            continue
        same = np.array_equal(np.load(out), np.load(ref))
        print("bench %-12s %d rank(s): %.2f s wall (mpirun to exit); %s; ids %s" %
              (name, np_, wall, r.stdout.strip().splitlines()[-1],
               "equal to 1 process" if same else "DIFFER"))
        bad |= not same
    return bad


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mpiquant", required=True)
    ap.add_argument("--fixtures", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--mb", type=float, default=16)
    ap.add_argument("--tokenizers", default="llama3,llama2,qwen2")
    ap.add_argument("--no-js", action="store_true")
    ap.add_argument("--ranks", default="", help="e.g. 1,2: time tokenize under mpirun at these counts")
    ap.add_argument("--mpirun", default="mpirun --oversubscribe")
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    text = os.path.join(a.workdir, "bench.jsonl")
    t0 = time.time()
    size = make_text(a.fixtures, text, a.mb)
    print("bench: %.1f MB of .jsonl text written in %.1f s" % (size / 1e6, time.time() - t0))
    failed = 0
    for name in a.tokenizers.split(","):
        model = os.path.join(a.fixtures, name)
        out = os.path.join(a.workdir, name + ".npy")
        r = subprocess.run([a.mpiquant, "tokenize", "--model", model, "--in", text, "--out", out],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print("FAIL %s: mpiquant tokenize exit %d: %s" % (name, r.returncode, r.stderr.strip()))
            failed += 1
            continue
        line = r.stdout.strip().splitlines()[-1]
        print("bench %-12s C (mpiquant tokenize): %s" % (name, line))
        if a.ranks:
            failed += by_ranks(a, name, model, text, out)
        if a.no_js:
            continue
        js_out = os.path.join(a.workdir, name + ".i32")
        r = subprocess.run(["node", os.path.join(HERE, "js_tokenize.mjs"), model, text, js_out],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print("FAIL %s: node exit %d: %s" % (name, r.returncode, r.stderr.strip()[-2000:]))
            failed += 1
            continue
        js = json.loads(r.stdout.strip().splitlines()[-1])
        print("bench %-12s JS (@huggingface/tokenizers): %d tokens in %.3f s (%.2f MB/s)" %
              (name, js["tokens"], js["seconds"], js["mb_s"]))
        same = np.array_equal(np.load(out), np.fromfile(js_out, dtype="<i4"))
        print("%s %s: C and JS ids %s" % ("ok" if same else "FAIL", name, "equal" if same else "DIFFER"))
        failed += not same
    print("%d passed, %d failed" % (len(a.tokenizers.split(",")) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
