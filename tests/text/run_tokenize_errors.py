#!/usr/bin/python3
"""Hostile tokenizer.json files and bad `mpiquant tokenize` input: each run must end with the
documented exit status (2 usage, 3 bad input, 1 cannot write), exactly one `mpiquant: error:`
line naming the file and the problem, no output file left behind, and within 30 s (a huge merges
list must not take minutes). Some cases must instead succeed (circular-looking and duplicated
merges terminate). Also: a FIFO as --in is refused unread; an --out that is (a link to) an input
is refused (exit 2); a bad line in one rank's share of the text (2 and 3 ranks) fails every rank
with one line naming the line of the file and that rank. Prints `ok`/`FAIL` lines and
`N passed, M failed`.
usage: run_tokenize_errors.py --mpiquant BIN --mpirun "mpirun --oversubscribe" --fixtures DIR --workdir DIR"""
import argparse
import copy
import json
import os
import shlex
import shutil
import subprocess
import sys
import time


def load(fixtures, name):
    with open(os.path.join(fixtures, name, "tokenizer.json"), encoding="utf-8") as f:
        return json.load(f)


def edit(base, fn):
    t = copy.deepcopy(base)
    fn(t)
    return t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mpiquant", required=True)
    ap.add_argument("--mpirun", default="mpirun --oversubscribe")
    ap.add_argument("--fixtures", required=True)
    ap.add_argument("--workdir", required=True)
    a = ap.parse_args()
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    l3 = load(a.fixtures, "llama3")
    l2 = load(a.fixtures, "llama2")
    raw3 = open(os.path.join(a.fixtures, "llama3", "tokenizer.json"), "rb").read()
    corpus = os.path.join(a.fixtures, "corpus.jsonl")
    vocab = l3["model"]["vocab"]
    toks = list(vocab)
    not_joined = next((x, y) for x in toks[100:] for y in toks[100:] if x + y not in vocab)

    def setp(path, value):
        def f(t):
            d = t
            for k in path[:-1]:
                d = d[k]
            d[path[-1]] = value
        return f

    def circular(t):  # merges that reach the same tokens along several paths, and repeats
        v = t["model"]["vocab"]
        for w in ["qz", "zq", "qzq", "zqz", "qzqz"]:
            v.setdefault(w, len(v) + 10)
        t["model"]["merges"] += [["q", "z"], ["z", "q"], ["qz", "q"], ["q", "zq"], ["zq", "z"],
                                 ["z", "qz"], ["qz", "qz"], ["qzq", "z"], ["q", "z"]]

    bad = [  # (label, tokenizer.json bytes or object, expected exit, expected text)
        ("truncated file", raw3[:len(raw3) // 2], 3, "not valid JSON"),
        ("empty file", b"", 3, "not valid JSON"),
        ("not an object", b"[1, 2, 3]", 3, "not a JSON object"),
        ("model type Unigram", edit(l3, setp(["model", "type"], "Unigram")), 3,
         "model type 'Unigram' is not supported"),
        ("model type WordPiece", edit(l3, setp(["model", "type"], "WordPiece")), 3, "BPE only"),
        ("no model", edit(l3, lambda t: t.pop("model")), 3, "model: missing"),
        ("merge of an unknown token", edit(l3, lambda t: t["model"]["merges"].append(["Ġzzqq", "x"])),
         3, "'Ġzzqq' is not in the vocabulary"),
        ("merge result outside the vocabulary", edit(l3, lambda t: t["model"]["merges"].append(list(not_joined))),
         3, "merged token"),
        ("merge that is a number", edit(l3, lambda t: t["model"]["merges"].insert(5, 42)), 3,
         "merges[5]: neither"),
        ("merge string without a space", edit(l2, lambda t: t["model"]["merges"].insert(0, "abc")), 3,
         "merges[0]: not \"a b\""),
        ("huge merges list ending in an unknown token",
         edit(l3, lambda t: t["model"]["merges"].extend([t["model"]["merges"][0]] * 1000000 + [["@@@", "x"]])),
         3, "merges[1000"),
        ("vocab not an object", edit(l3, setp(["model", "vocab"], [1, 2])), 3, "model.vocab: not an object"),
        ("negative id", edit(l3, lambda t: t["model"]["vocab"].update({"Ġzz": -4})), 3, "not a token id"),
        ("huge id", edit(l3, lambda t: t["model"]["vocab"].update({"Ġzz": 1 << 30})), 3, "not a token id"),
        ("duplicate id", edit(l3, lambda t: t["model"]["vocab"].update({"Ġzz": 7})), 3, "id 7 is given to two"),
        ("unk_token outside the vocabulary", edit(l2, setp(["model", "unk_token"], "<nope>")), 3,
         "unk_token '<nope>'"),
        ("dropout", edit(l3, setp(["model", "dropout"], 0.1)), 3, "dropout is not supported"),
        ("end_of_word_suffix", edit(l3, setp(["model", "end_of_word_suffix"], "</w>")), 3,
         "end_of_word_suffix is not supported"),
        ("normalizer Lowercase", edit(l3, setp(["normalizer"], {"type": "Lowercase"})), 3,
         "normalizer 'Lowercase' is not supported"),
        ("normalizer Precompiled in a Sequence",
         edit(l2, lambda t: t["normalizer"]["normalizers"].append({"type": "Precompiled", "precompiled_charsmap": ""})),
         3, "normalizer.normalizers[2]: normalizer 'Precompiled' is not supported"),
        ("pre-tokenizer Whitespace", edit(l3, setp(["pre_tokenizer"], {"type": "Whitespace"})), 3,
         "pre-tokenizer 'Whitespace' is not supported"),
        ("10000 pre-tokenizer steps", edit(l3, lambda t: t["pre_tokenizer"].update(
            pretokenizers=t["pre_tokenizer"]["pretokenizers"][:1] * 10000 +
            t["pre_tokenizer"]["pretokenizers"][1:])), 3, "more than 64 steps"),
        ("ByteLevel not last", edit(l3, lambda t: t["pre_tokenizer"]["pretokenizers"].reverse()), 3,
         "must be the last pre-tokenizer"),
        ("regex with a nested class", edit(l3, setp(["pre_tokenizer", "pretokenizers", 0, "pattern"],
                                                    {"Regex": "[a[bc]]+"})), 3, "nested character classes"),
        ("regex that does not compile", edit(l3, setp(["pre_tokenizer", "pretokenizers", 0, "pattern"],
                                                      {"Regex": "(ab"})), 3, "does not compile"),
        ("unknown split behavior", edit(l3, setp(["pre_tokenizer", "pretokenizers", 0, "behavior"], "Sideways")),
         3, "unknown split behavior 'Sideways'"),
        ("single_word added token", edit(l3, lambda t: t["added_tokens"][0].update({"single_word": True})),
         3, "single_word added tokens are not supported"),
        ("added token without content", edit(l3, lambda t: t["added_tokens"][1].pop("content")), 3,
         "added_tokens[1]: no (or an empty) \"content\""),
        ("template naming an unknown special token",
         edit(l3, setp(["post_processor", "processors", 1, "special_tokens"], {})), 3,
         "is not in \"special_tokens\""),
        ("post-processor of an unknown type", edit(l3, setp(["post_processor"], {"type": "Magic"})), 3,
         "post-processor 'Magic' is not supported"),
    ]
    ok_cases = [
        ("circular and repeated merges", edit(l3, circular)),
        ("huge valid merges list (1M repeats)", edit(l3, lambda t: t["model"]["merges"].extend(
            [t["model"]["merges"][k % 50] for k in range(1000000)]))),
    ]

    npass = nfail = 0

    def check(label, args, want_rc, want_text, np_=0, out=None):
        """want_text: strings the error line must hold."""
        nonlocal npass, nfail
        cmd = ([] if np_ == 0 else shlex.split(a.mpirun) + ["-np", str(np_)]) + [a.mpiquant] + args
        t0 = time.time()
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            print("FAIL %s: still running after 60 s" % label)
            nfail += 1
            return
        dt = time.time() - t0
        lines = [l for l in r.stderr.splitlines() if l.startswith("mpiquant: error:")]
        problems = []
        if r.returncode != want_rc:
            problems.append("exit %d, expected %d" % (r.returncode, want_rc))
        if want_rc != 0:
            if len(lines) != 1:
                problems.append("%d error lines" % len(lines))
            elif not all(w in lines[0] for w in want_text):
                problems.append("error line lacks %r" % (want_text,))
            if out and os.path.exists(out):
                problems.append("left %s behind" % out)
        if dt > 30:
            problems.append("took %.0f s" % dt)
        if problems:
            print("FAIL %s: %s\n     stderr: %s" % (label, "; ".join(problems), r.stderr.strip()[-1500:]))
            nfail += 1
        else:
            print("ok   %s (exit %d, %.1f s)%s" % (label, r.returncode, dt,
                                                   (": " + lines[0]) if lines else ""))
            npass += 1

    for k, (label, content, rc, text) in enumerate(bad + [(l, c, 0, "") for l, c in ok_cases]):
        d = os.path.join(a.workdir, "tok%02d" % k)
        os.makedirs(d)
        with open(os.path.join(d, "tokenizer.json"), "wb") as f:
            f.write(content if isinstance(content, bytes) else
                    json.dumps(content, ensure_ascii=False).encode("utf-8"))
        out = os.path.join(d, "out.npy")
        check(label, ["tokenize", "--model", d, "--in", corpus, "--out", out], rc,
              ["mpiquant: error: " + d + "/tokenizer.json: ", text], out=out)

    empty_dir = os.path.join(a.workdir, "empty")
    os.makedirs(empty_dir)
    model = os.path.join(a.fixtures, "llama3")
    out = os.path.join(a.workdir, "out.npy")
    bad_jsonl = os.path.join(a.workdir, "bad.jsonl")
    with open(bad_jsonl, "w") as f:
        f.write('{"text": "fine"}\n{"text": broken\n')
    no_text = os.path.join(a.workdir, "notext.jsonl")
    with open(no_text, "w") as f:
        f.write('{"content": "x"}\n')
    empty_txt = os.path.join(a.workdir, "empty.txt")
    open(empty_txt, "w").close()
    fifo = os.path.join(a.workdir, "fifo.jsonl")
    os.mkfifo(fifo)
    text_copy = os.path.join(a.workdir, "copy.jsonl")
    shutil.copy(corpus, text_copy)
    link_in = os.path.join(a.workdir, "link_in.npy")
    os.symlink(text_copy, link_in)
    model_copy = os.path.join(a.workdir, "model_copy")
    shutil.copytree(model, model_copy)
    link_tok = os.path.join(a.workdir, "link_tok.npy")
    os.symlink(os.path.join(model_copy, "tokenizer.json"), link_tok)
    cli = [
        ("no tokenizer.json", ["--model", empty_dir, "--in", corpus, "--out", out], 3,
         empty_dir + "/tokenizer.json: cannot open"),
        ("--model missing", ["--in", corpus, "--out", out], 2, "--model: missing"),
        ("--out not .npy", ["--model", model, "--in", corpus, "--out", out + ".bin"], 2, "expected a .npy"),
        ("--in not text", ["--model", model, "--in", corpus + ".bin", "--out", out], 2,
         "expected a .txt or .jsonl"),
        ("unknown option", ["--model", model, "--in", corpus, "--out", out, "--fast"], 2,
         "--fast: unknown option"),
        ("--in does not exist", ["--model", model, "--in", corpus + ".nope.txt", "--out", out], 3,
         "cannot open"),
        ("jsonl line that is not JSON", ["--model", model, "--in", bad_jsonl, "--out", out], 3,
         bad_jsonl + ": line 2: not valid JSON"),
        ("jsonl object without text", ["--model", model, "--in", no_text, "--out", out], 3,
         no_text + ": line 1: not a JSON object with a string field \"text\""),
        ("empty text file", ["--model", model, "--in", empty_txt, "--out", out], 3, "holds no text"),
        ("unwritable output", ["--model", model, "--in", corpus, "--out", "/nonexistent/dir/x.npy"], 2,
         "cannot create files in /nonexistent/dir"),
        ("--in a FIFO (refused unread, no hang)", ["--model", model, "--in", fifo, "--out", out], 3,
         fifo + ": not a regular file"),
        ("--out a link to --in", ["--model", model, "--in", text_copy, "--out", link_in], 2,
         link_in + ": refusing to write: it is the input --in"),
        ("--out a link to the tokenizer.json", ["--model", model_copy, "--in", corpus, "--out", link_tok], 2,
         link_tok + ": refusing to write: it is the input --model"),
    ]
    for label, args, rc, text in cli:
        check(label, ["tokenize"] + args, rc, [text], out=out)
    truncated = os.path.join(a.workdir, "tok00")
    check("truncated file under mpirun -np 2",
          ["tokenize", "--model", truncated, "--in", corpus, "--out", out], 3, ["not valid JSON"], np_=2,
          out=out)
    check("usage error under mpirun -np 2", ["tokenize", "--model", model], 2, ["--in: missing"], np_=2)
    # hostile text in one rank's share: every rank fails, one line from the rank that read it,
    # with the line number counted in the whole file
    lines = ['{"text": "document %d %s"}' % (k, "word " * 20) for k in range(30)]
    for bad_line, np_, rank, what in ((27, 3, 2, "not valid JSON"), (14, 3, 1, "not valid JSON"),
                                      (17, 2, 1, "not a JSON object")):
        rows = list(lines)
        rows[bad_line - 1] = ('{"text": "bad \xff\xfe bytes %s"}' % ("word " * 20) if "valid" in what
                              else '["text", "an array %s"]' % ("word " * 20))
        hostile = os.path.join(a.workdir, "hostile_%d.jsonl" % bad_line)
        with open(hostile, "wb") as f:
            f.write("\n".join(rows).encode("latin-1") + b"\n")
        check("hostile line %d of 30 under mpirun -np %d (rank %d's share)" % (bad_line, np_, rank),
              ["tokenize", "--model", model, "--in", hostile, "--out", out], 3,
              [hostile + ": line %d: %s" % (bad_line, what), "(on rank %d)" % rank], np_=np_, out=out)
    print("%d passed, %d failed" % (npass, nfail))
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main())
