#!/usr/bin/python3
"""Exported GGUF files in llama.cpp (node-llama-cpp's prebuilt CPU build) against mpiquant eval.

  run_gguf_llamacpp.py --mpiquant PATH --workdir DIR --results DIR --model DIR --calib TEXT
                       --tokens TEXT --llamacpp DIR [--windows N] [--seqlen L]

llama.cpp must have been installed by tools/install-llamacpp.sh into --llamacpp: a missing
install is a failure, never a skip. For each case the same windows of --tokens (raw bytes =
token ids of the byte-level demo model) are scored by `mpiquant eval --quantized R.h5` and by
llama.cpp on the exported file (tools/llamacpp_perplexity.mjs, one thread, float32 KV cache):
  - Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 with float16 scales (exact exports): perplexities within 1e-3
    relative (llama.cpp multiplies the blocks with 8-bit quantized activations);
  - the result with float32 scales exported with --allow-requantize: within 1e-3 of eval on the
    original result;
  - --dequantize --dtype float32: within 1e-5 (only float32 arithmetic differs);
  - negative control: the Q4_0 file with q/k rows put back in Hugging Face order must miss the
    1e-3 tolerance (the rotary pairing is what the permutation fixes);
  - llama.cpp tokenizes a text sample to exactly its bytes.
Prints `ok`/`FAIL` per case, the measured numbers, and `N passed, M failed`.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gguf_common as C  # noqa: E402
from gguf_reader import GGUFReader, from_llama_rows  # noqa: E402


def llamacpp(a, gguf, tokenize=None):
    cmd = ["node", os.path.join(HERE, "..", "..", "..", "tools", "llamacpp_perplexity.mjs"),
           "--llamacpp", a.llamacpp, "--model", gguf, "--tokens", a.tokens, "--seqlen",
           str(a.seqlen), "--nwindows", str(a.windows)]
    if tokenize is not None:
        cmd += ["--tokenize", tokenize]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        raise RuntimeError("llama.cpp on %s: exit %d\n%s%s" % (gguf, p.returncode, p.stdout,
                                                               p.stderr[-3000:]))
    return json.loads(lines[-1])


def mpiquant_ppl(s, a, result, model=None):
    rc, so, se = s.run(["eval", "--model", model or a.model, "--quantized", result, "--tokens", a.tokens,
                        "--seqlen", str(a.seqlen), "--nwindows", str(a.windows), "--quiet"])
    m = re.search(r"^perplexity (\S+)$", so, re.M)
    if rc != 0 or m is None:
        raise RuntimeError("eval %s: exit %d\n%s%s" % (result, rc, so, se))
    return float(m.group(1))


def unpermuted_copy(src, dst):
    """src with the q/k rows of every block back in Hugging Face order (bytes of whole rows)."""
    r = GGUFReader(src)
    buf = bytearray(r.buf)
    for name, t in r.tensors.items():
        m = re.match(r"blk\.\d+\.attn_([qk])\.weight$", name)
        if not m:
            continue
        rows = t["ne"][1]
        raw = np.frombuffer(r.raw(name), dtype=np.uint8).reshape(rows, -1)
        back = from_llama_rows(raw, 4 if m.group(1) == "q" else 2)
        b = r.data_start + t["offset"]
        buf[b:b + t["nbytes"]] = back.tobytes()
    with open(dst, "wb") as f:
        f.write(buf)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    for k in ("--mpiquant", "--workdir", "--results", "--model", "--calib", "--tokens",
              "--llamacpp"):
        ap.add_argument(k, required=True)
    ap.add_argument("--mpirun", default="mpirun --oversubscribe")
    ap.add_argument("--windows", type=int, default=4)
    ap.add_argument("--seqlen", type=int, default=256)
    a = ap.parse_args(argv)
    s = C.Suite(a.mpiquant, a.workdir, a.mpirun)
    pkg = os.path.join(a.llamacpp, "node_modules", "node-llama-cpp", "package.json")
    if not os.path.exists(pkg):
        s.case("llama.cpp installed in %s (bash tools/install-llamacpp.sh)" % a.llamacpp,
               ["%s missing: the npm install failed or was not run" % pkg])
        return s.finish()
    C.make_results(s, a.model, a.calib, a.results)
    rows = []

    def compare(label, gguf, result, tol, expect_fail=False, export_args=None, src=None,
                model=None):
        t0 = time.time()
        if export_args is not None:
            rc, so, se = s.run(["export", "--in", src, "--format", "gguf", "--out", gguf,
                                "--quiet"] + export_args)
            if rc != 0:
                s.case(label, ["export: exit %d" % rc], so + se)
                return None
        ref = mpiquant_ppl(s, a, result, model)
        got = llamacpp(a, gguf)
        rel = abs(got["perplexity"] - ref) / ref
        rows.append((label, ref, got["perplexity"], rel))
        ok = rel <= tol
        p = [] if ok != expect_fail else [
            "relative difference %.3g %s tolerance %g" % (rel, "within" if ok else "beyond", tol)]
        s.case("%s: llama.cpp %.6f vs mpiquant %.6f, relative %.2e (%s %g; %d tokens, %.1f s)"
               % (label, got["perplexity"], ref, rel, "must miss" if expect_fail else "tol", tol,
                  got["tokens"], time.time() - t0), p)
        return got

    for name, qtype in C.QTYPE.items():
        if name == "q4g64":
            continue
        sym = "--asym" not in C.RESULTS[name][0]
        bits = int(C.RESULTS[name][0][1])
        exact = s.path(name + "-f16.h5")
        C.f16_exact_copy(C.result_path(a.results, name), exact, 11 if sym else 11 - bits)
        compare("%s %s (float16 scales, exact)" % (name, qtype), s.path(name + ".gguf"), exact,
                1e-3, export_args=[], src=exact)
    raw = C.result_path(a.results, "q4s")
    compare("q4s Q4_0 --allow-requantize (float32 scales)", s.path("q4s-rq.gguf"), raw, 1e-3,
            export_args=["--allow-requantize"], src=raw)
    compare("q4s --dequantize --dtype float32", s.path("q4s-f32.gguf"), raw, 1e-5,
            export_args=["--dequantize", "--dtype", "float32"], src=raw)
    # scaled rotary embeddings: linear (metadata keys) and Llama 3 (rope_freqs.weight); a short
    # original context puts the demo's frequencies in all three Llama 3 bands
    for kind, rs in (("linear", {"type": "linear", "factor": 4.0}),
                     ("llama3", {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                 "high_freq_factor": 4.0, "original_max_position_embeddings": 64})):
        res, mdir = s.path("q4s-%s.h5" % kind), s.path("model-%s" % kind)
        C.with_config(raw, a.model, res, mdir, rope_scaling=rs)
        compare("rope_scaling %s, --dequantize --dtype float32" % kind, s.path("%s.gguf" % kind),
                res, 1e-5, export_args=["--dequantize", "--dtype", "float32"], src=res, model=mdir)
    unpermuted_copy(s.path("q4s.gguf"), s.path("q4s-unpermuted.gguf"))
    compare("negative control: q4s Q4_0 with q/k rows not permuted", s.path("q4s-unpermuted.gguf"),
            s.path("q4s-f16.h5"), 1e-3, expect_fail=True)

    with open(a.tokens, "rb") as f:
        sample = f.read(400).decode("utf-8", errors="ignore") + " café, naïve – ok\n"
    got = llamacpp(a, s.path("q4s.gguf"), tokenize=sample)
    want = list(sample.encode("utf-8"))
    s.case("llama.cpp tokenizes %d bytes of text to exactly its bytes" % len(want),
           [] if got.get("tokenized") == want else
           ["first difference at %d" % next((i for i, (x, y) in enumerate(
               zip(got.get("tokenized") or [], want)) if x != y), -1)])

    tokdir = s.path("tokenizer-model")
    C.make_tokenizer_dir(a.model, tokdir)
    rc, so, se = s.run(["export", "--in", s.path("q4s-f16.h5"), "--format", "gguf", "--out",
                        s.path("q4s-tok.gguf"), "--model", tokdir, "--quiet"])
    if rc != 0:
        s.case("export with tokenizer.json", ["exit %d" % rc], so + se)
    else:
        got = llamacpp(a, s.path("q4s-tok.gguf"), tokenize="the cat")["tokenized"]
        # "the" is a whole token; " cat" has no merges: the bytes Ġ c a t
        want = [129, 32, 99, 97, 116]
        s.case("tokenizer.json: llama.cpp tokenizes 'the cat' as %s" % got,
               [] if got == want else ["expected %s" % want])

    print("\nperplexity on %d windows of %d tokens of %s:" % (a.windows, a.seqlen, a.tokens))
    print("%-55s %12s %12s %10s" % ("case", "mpiquant", "llama.cpp", "relative"))
    for label, ref, got, rel in rows:
        print("%-55s %12.6f %12.6f %10.2e" % (label, ref, got, rel))
    return s.finish()


if __name__ == "__main__":
    sys.exit(main())
