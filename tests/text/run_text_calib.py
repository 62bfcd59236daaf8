#!/usr/bin/python3
"""Text calibration end to end: `quantize --calib TEXT.txt` must write the same layers as
`quantize --calib T.npy` where T.npy is `mpiquant tokenize` of that text, and `eval --tokens`
the same perplexity, for a model with a tokenizer.json.

The model is a copy of the bundled demo checkpoint (data/demo-model, 256-token vocabulary) with a
byte-level BPE tokenizer.json written here: the bytes the demo text uses, merges learned from it
up to 255 ids, BOS = 255 (so the ids fit the model; the model was trained on raw bytes, so the
perplexity is poor, which does not matter here). Also checks that the same model without
tokenizer.json still reads .txt as raw bytes (the old behaviour). rank_counts(): the same text as
.jsonl documents, split across ranks, gives identical ids (`tokenize`), layers (`quantize`) and
perplexity (`eval`) at 1, 2 and 3 ranks, equal to those from its .npy.
usage: run_text_calib.py --mpiquant BIN --mpirun "mpirun --oversubscribe" --workdir DIR"""
import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import text_bpe  # noqa: E402

QUANT = ["--method", "optq", "--bits", "4", "--group-size", "32", "--nsamples", "8", "--seqlen", "64",
         "--quiet"]


def demo_tokenizer(text):
    b2u, _ = text_bpe.bytes_to_unicode()
    used = sorted(set(text.encode("utf-8")))
    vocab = {b2u[b]: k for k, b in enumerate(used)}
    words = {}
    for w in text_bpe.ROUGH_SPLIT.findall(text):
        key = tuple(b2u[b] for b in w.encode("utf-8"))
        words[key] = words.get(key, 0) + 1
    merges = []
    for a, b in text_bpe.learn_merges(words, 400):
        if len(vocab) >= 255:
            break
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
        merges.append((a, b))
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [text_bpe.added(255, "<|bos|>")],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": True},
        "post_processor": text_bpe.template("<|bos|>", 255),
        "decoder": text_bpe.BYTE_DECODER,
        "model": text_bpe.bpe_model(vocab, merges, True)}


def layer_datasets(path):
    import h5py
    with h5py.File(path, "r") as f:
        out = {}
        f["layers"].visit(lambda n: out.__setitem__(n, f["layers"][n][()])
                          if isinstance(f["layers"][n], h5py.Dataset) else None)
    return out


def same_layers(x, y):
    return len(x) > 0 and x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)


def rank_counts(a, model, run, case):
    """The text split across ranks (documents of a .jsonl cut by bytes, io/tokenizer_docs.c):
    `tokenize`, `quantize --calib` and `eval --tokens` at 1, 2 and 3 ranks give the same ids,
    layers and perplexity, and the same as from the tokenized .npy; a .txt (one document, so
    fewer documents than ranks) the same at 1, 2 and 3 ranks."""
    with open(os.path.join(REPO, "data", "demo-calib.txt"), encoding="utf-8") as f:
        lines = f.read().splitlines()
    with open(os.path.join(REPO, "data", "demo-eval.txt"), encoding="utf-8") as f:
        eval_lines = f.read().splitlines()
    sets = {}
    for name, src, per in (("calib", lines, 20), ("eval", eval_lines, 10)):
        path = os.path.join(a.workdir, "%s.jsonl" % name)
        with open(path, "w", encoding="utf-8") as f:  # ~20-line documents, a blank line here and there
            for k in range(0, len(src), per):
                f.write(json.dumps({"text": "\n".join(src[k:k + per]) + "\n"}, ensure_ascii=False) + "\n")
                if k % (7 * per) == 0:
                    f.write("\n")
        sets[name] = path
    ids = {}
    for np_ in (1, 2, 3):
        out = os.path.join(a.workdir, "calib_jsonl_np%d.npy" % np_)
        rc, _, err, cmd = run(["tokenize", "--model", model, "--in", sets["calib"], "--out", out], np_)
        if case(rc == 0, "tokenize .jsonl at %d rank(s)" % np_, err.strip() or cmd):
            ids[np_] = np.load(out)
    txt = os.path.join(REPO, "data", "demo-calib.txt")
    txt_ids = {}
    for np_ in (1, 3):  # a .txt is one document: rank 0 tokenizes it, the others get its ids
        out = os.path.join(a.workdir, "calib_txt_np%d.npy" % np_)
        rc, _, err, cmd = run(["tokenize", "--model", model, "--in", txt, "--out", out], np_)
        if case(rc == 0, "tokenize .txt at %d rank(s)" % np_, err.strip() or cmd):
            txt_ids[np_] = np.load(out)
    if len(txt_ids) == 2:
        case(np.array_equal(txt_ids[1], txt_ids[3]), "tokenize .txt: the same ids at 1 and 3 ranks")
    if len(ids) == 3:
        case(all(np.array_equal(ids[1], ids[k]) for k in (2, 3)) and (ids[1] == 255).sum() > 50,
             "tokenize .jsonl: the same %d ids (%d documents) at 1, 2, 3 ranks" % (len(ids[1]), (ids[1] == 255).sum()))
    calib_npy = os.path.join(a.workdir, "calib_jsonl_np1.npy")
    layers = {}
    for label, calib, np_ in (("jsonl", sets["calib"], 1), ("jsonl", sets["calib"], 2),
                              ("jsonl", sets["calib"], 3), ("npy", calib_npy, 3), ("txt", txt, 3)):
        out = os.path.join(a.workdir, "q_%s_np%d.h5" % (label, np_))
        rc, _, err, cmd = run(["quantize", "--model", model, "--calib", calib, "--out", out] + QUANT, np_)
        if case(rc == 0, "quantize --calib .%s at %d rank(s)" % (label, np_), err.strip()[-1500:] or cmd):
            layers[(label, np_)] = layer_datasets(out)
    if len(layers) == 5:
        ref = layers[("npy", 3)]
        for key in (("jsonl", 1), ("jsonl", 2), ("jsonl", 3)):
            case(same_layers(layers[key], ref),
                 "quantize --calib .jsonl at %d rank(s) == from its tokens (.npy, 3 ranks): %d datasets"
                 % (key[1], len(ref)))
        txt2 = os.path.join(a.workdir, "q_txt.h5")  # main(): .txt at 2 ranks
        if os.path.exists(txt2):
            case(same_layers(layers[("txt", 3)], layer_datasets(txt2)),
                 "quantize --calib .txt: 3 ranks == 2 ranks")
    ppl = {}
    eval_npy = os.path.join(a.workdir, "eval_jsonl.npy")
    rc, _, err, cmd = run(["tokenize", "--model", model, "--in", sets["eval"], "--out", eval_npy], 2)
    case(rc == 0, "tokenize eval .jsonl at 2 ranks", err.strip() or cmd)
    for label, tokens, np_ in (("jsonl", sets["eval"], 1), ("jsonl", sets["eval"], 2),
                               ("jsonl", sets["eval"], 3), ("npy", eval_npy, 1)):
        rc, out, err, cmd = run(["eval", "--model", model, "--tokens", tokens, "--seqlen", "64", "--quiet"], np_)
        got = [l for l in out.splitlines() if l.startswith("perplexity ")]
        if case(rc == 0 and bool(got), "eval --tokens .%s at %d rank(s)" % (label, np_), err.strip()[-1500:] or cmd):
            ppl[(label, np_)] = got[-1]
    if len(ppl) == 4:
        case(len(set(ppl.values())) == 1, "eval: .jsonl at 1, 2, 3 ranks and its .npy agree (%s)" % ppl[("npy", 1)],
             repr(ppl))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mpiquant", required=True)
    ap.add_argument("--mpirun", default="mpirun --oversubscribe")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--np", type=int, default=2)
    a = ap.parse_args()
    import h5py
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    model = os.path.join(a.workdir, "demo-tok")
    shutil.copytree(os.path.join(REPO, "data", "demo-model"), model)
    calib_txt = os.path.join(REPO, "data", "demo-calib.txt")
    eval_txt = os.path.join(REPO, "data", "demo-eval.txt")
    with open(calib_txt, encoding="utf-8") as f:
        text = f.read()
    with open(os.path.join(model, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(demo_tokenizer(text), f, ensure_ascii=False)
    npass = nfail = 0

    def run(args, np_=a.np):
        cmd = shlex.split(a.mpirun) + ["-np", str(np_), a.mpiquant] + args
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        return r.returncode, r.stdout, r.stderr, " ".join(cmd)

    def case(ok, label, detail=""):
        nonlocal npass, nfail
        print(("ok   %s" if ok else "FAIL %s") % label + ("" if ok or not detail else ": " + detail))
        npass += ok
        nfail += not ok
        return ok

    calib_npy, eval_npy = os.path.join(a.workdir, "calib.npy"), os.path.join(a.workdir, "eval.npy")
    for src, dst in ((calib_txt, calib_npy), (eval_txt, eval_npy)):
        rc, out, err, cmd = run(["tokenize", "--model", model, "--in", src, "--out", dst], 1)
        if not case(rc == 0, "tokenize %s" % os.path.basename(src), err.strip() or cmd):
            print("%d passed, %d failed" % (npass, nfail))
            return 1
    ids = np.load(calib_npy)
    case(ids.max() < 256 and ids[0] == 255 and len(ids) < len(text.encode()),
         "calibration ids: BOS first, < 256, fewer than bytes (%d ids, %d bytes)" % (len(ids), len(text.encode())))

    results = {}
    for label, calib in (("txt", calib_txt), ("npy", calib_npy)):
        out = os.path.join(a.workdir, "q_%s.h5" % label)
        rc, _, err, cmd = run(["quantize", "--model", model, "--calib", calib, "--out", out] + QUANT)
        if case(rc == 0, "quantize --calib .%s" % label, err.strip()[-1500:] or cmd):
            results[label] = out
    if len(results) == 2:
        with h5py.File(results["txt"], "r") as f, h5py.File(results["npy"], "r") as g:
            names = []
            f["layers"].visit(lambda n: names.append(n) if isinstance(f["layers"][n], h5py.Dataset) else None)
            diff = [n for n in names if n not in g["layers"] or
                    not np.array_equal(f["layers"][n][()], g["layers"][n][()])]
            case(len(names) > 0 and not diff,
                 "quantize: .txt and .npy calibration give the same %d layer datasets" % len(names),
                 "differing: %s (quantize read the .txt without the tokenizer: src/model must pass "
                 "the model directory, mq_tokens_read_model)" % diff[:5])

    ppl = {}
    for label, tokens in (("txt", eval_txt), ("npy", eval_npy)):
        rc, out, err, cmd = run(["eval", "--model", model, "--tokens", tokens, "--seqlen", "64", "--quiet"])
        lines = [l for l in out.splitlines() if l.startswith("perplexity ")]
        if case(rc == 0 and bool(lines), "eval --tokens .%s" % label, err.strip()[-1500:] or cmd):
            ppl[label] = lines[-1]
    if len(ppl) == 2:
        case(ppl["txt"] == ppl["npy"], "eval: .txt and .npy give the same perplexity (%s)" % ppl["npy"],
             "%s vs %s" % (ppl["txt"], ppl["npy"]))

    rank_counts(a, model, run, case)

    # without tokenizer.json the byte model reads text as bytes, as before
    os.remove(os.path.join(model, "tokenizer.json"))
    raw_npy = os.path.join(a.workdir, "raw.npy")
    np.save(raw_npy, np.frombuffer(open(eval_txt, "rb").read(), dtype=np.uint8).astype(np.int32))
    got = {}
    for label, tokens in (("txt", eval_txt), ("npy", raw_npy)):
        rc, out, err, cmd = run(["eval", "--model", model, "--tokens", tokens, "--seqlen", "64", "--quiet"])
        lines = [l for l in out.splitlines() if l.startswith("perplexity ")]
        got[label] = lines[-1] if rc == 0 and lines else "exit %d: %s" % (rc, err.strip()[-300:])
    case(got["txt"] == got["npy"] and got["txt"].startswith("perplexity"),
         "no tokenizer.json: .txt is raw bytes (%s)" % got["npy"], "%s vs %s" % (got["txt"], got["npy"]))
    print("%d passed, %d failed" % (npass, nfail))
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main())
