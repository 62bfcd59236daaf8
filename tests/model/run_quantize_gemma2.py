#!/usr/bin/python3
"""`mpiquant quantize` on a Gemma 2 checkpoint (make_models.py's gemma2_bf16: four norms per
block stored as w and scaling by 1 + w, GeGLU, soft-capped scores and logits, tied head):

identity  result files identical bit for bit (every dataset and attribute but the run's own) at
          1, 2 and 3 ranks (21 windows of 128 tokens, the fixture's sliding_window: 3 chunks
          of the sums, uneven over the ranks), for OPTQ with act-order and for Qronos; /layers
          holds the seven linears of each block with finite rel_err > 0; block 0's q_proj
          rel_err == numpy's on the redrawn calibration windows (there X = X̃ =
          input_layernorm(embedding · sqrt(hidden)), the norm scaling by 1 + w); /model/tensors
          holds the four norms of every block as stored.
rtn       --method rtn equals the numpy reference's per-layer RTN of each stored weight.
export    dequant and GPTQ exports: weights == the result's Ŵ, the norms (all four per block,
          and model.norm) and the embedding copied bit for bit as the checkpoint stores them
          (w, not 1 + w); eval of the dequantized export == eval --quantized; GGUF (llama
          architecture only) refuses it with exit 3.
Final line: `N passed, M failed`."""
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
sys.path.insert(0, HERE)
import drivers  # noqa: E402
import export_check  # noqa: E402
import llama_ref  # noqa: E402
from result_files import (export_evaluates_alike, exported, gguf_refused, identical_across_ranks,
                          rtn_mismatches, splitmix64)  # noqa: E402

NAME = "gemma2_bf16"
NSAMPLES, SEQLEN = 21, 128
SMALL = ["--nsamples", str(NSAMPLES), "--seqlen", str(SEQLEN)]
CASES = [("optq", ["--method", "optq", "--bits", "3", "--group-size", "16", "--act-order"]),
         ("qronos", ["--method", "qronos", "--bits", "4", "--group-size", "-1"])]
LINEARS = llama_ref.Model.LINEARS
NORMS = ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
         "post_feedforward_layernorm")


def model_dir(s):
    return os.path.join(s.a.models, NAME)


def quantize(s, out, opts, np_):
    d = model_dir(s)
    return s.run(["quantize", "--model", d, "--calib", os.path.join(d, "tokens.npy"),
                  "--out", out, "--quiet"] + SMALL + list(opts), np_=np_, out=out)


def stored_tensors(s):
    """The checkpoint's tensors that are not quantized: name -> (float32 values, "BF16")."""
    w = llama_ref.load_weights(model_dir(s))
    return {n: (a, "BF16") for n, a in w.items()
            if not any(n.endswith(lin + ".weight") for lin in LINEARS)}


def check_layers(s, label, out):
    import h5py
    cfg = json.load(open(os.path.join(model_dir(s), "config.json")))
    want = {"model.layers.%d.%s" % (b, n) for b in range(cfg["num_hidden_layers"])
            for n in LINEARS}
    with h5py.File(out, "r") as f:
        have = set(f["layers"])
        rel = [float(g.attrs["rel_err"]) for g in f["layers"].values()]
        kept = set(f["model"]["tensors"]) if "tensors" in f["model"] else set()
    norms = {"model.layers.%d.%s.weight" % (b, n) for b in range(cfg["num_hidden_layers"])
             for n in NORMS}
    s.case(have == want and all(np.isfinite(r) and r > 0 for r in rel) and norms <= kept,
           "%s: /layers is the 7 linears per block, rel_err finite; /model/tensors has the 4 "
           "norms per block" % label,
           "layers %s; rel_err %s; norms missing %s" % (sorted(have ^ want)[:4], rel[:4],
                                                       sorted(norms - kept)[:4]))


def block0_q_error(s, label, out):
    """In block 0 both streams enter q_proj as input_layernorm(embedding · sqrt(hidden)) with
    Gemma's (1 + w), so X = X̃ and its rel_err must be numpy's ‖X(W−Ŵ)ᵀ‖/‖XWᵀ‖, on the
    calibration windows redrawn here (calibrate.c: start = mix(seed ^ mix(i)) mod
    (ntok − L + 1), seed 0)."""
    d = model_dir(s)
    cfg = json.load(open(os.path.join(d, "config.json")))
    w = llama_ref.load_weights(d)
    tokens = np.load(os.path.join(d, "tokens.npy")).astype(np.int64)
    starts = [splitmix64(splitmix64(i)) % (len(tokens) - SEQLEN + 1) for i in range(NSAMPLES)]
    x = w["model.embed_tokens.weight"].astype(np.float64)[np.concatenate(
        [tokens[a:a + SEQLEN] for a in starts])] * np.sqrt(cfg["hidden_size"])
    x = x / np.sqrt((x * x).mean(-1, keepdims=True) + cfg["rms_norm_eps"])
    x = x * (1.0 + w["model.layers.0.input_layernorm.weight"])
    name = "model.layers.0.self_attn.q_proj"
    W = w[name + ".weight"].astype(np.float64)
    got = drivers.read_result(out, 3 if label == "optq" else 4)[name]
    ref = np.linalg.norm(x @ (W - got["What"]).T) / np.linalg.norm(x @ W.T)
    rel = abs(got["attrs"]["rel_err"] - ref) / ref
    s.case(rel < 1e-4, "%s: block 0 q_proj rel_err == numpy (input norm by 1 + w)" % label,
           "%.6g vs numpy %.6g (relative difference %.1e)" % (got["attrs"]["rel_err"], ref, rel))


def identity(s):
    for label, opts in CASES:
        def first(out, label=label):
            check_layers(s, label, out)
            block0_q_error(s, label, out)
        identical_across_ranks(s, label, lambda out, np_, opts=opts: quantize(s, out, opts, np_),
                               first)


def rtn(s):
    weights = llama_ref.load_weights(model_dir(s))
    out = s.path("rtn.h5")
    ok, cmd, tail, _ = quantize(s, out, ["--method", "rtn", "--bits", "3", "--group-size", "16"],
                                2)
    if not s.case(ok, "rtn runs", tail if not ok else "", [cmd]):
        return
    bad, got = rtn_mismatches(out, weights, 3, 16)
    s.case(len(got) == 14 and not bad, "rtn == per-layer RTN of the %d stored weights" % len(got),
           "mismatches %s" % bad[:4])


def export(s):
    out = s.path("export.h5")
    ok, cmd, tail, _ = quantize(s, out, ["--bits", "4", "--group-size", "16", "--scale-dtype",
                                         "float16"], 2)
    if not s.case(ok, "export: quantize runs", tail, [cmd]):
        return
    model = model_dir(s)
    kept = stored_tensors(s)
    for fmt, st, probs in exported(s, out, model):
        probs += export_check.check_model_tensors(st, kept)
        s.case(not probs, "export %s: weights == the result's Ŵ, the %d norms and the embedding "
               "as stored" % (fmt, len(kept) - 1), "; ".join(probs[:4]))
    export_evaluates_alike(s, model, out, s.path("export_dequant"))
    gguf_refused(s, out, model, "Gemma2ForCausalLM", "Gemma 2")

def main():
    ap = drivers.base_parser(__doc__)
    ap.add_argument("--models", required=True, help="make_models.py's fixtures")
    ap.add_argument("--part", choices=("identity", "rtn", "export", "all"), default="all")
    a = ap.parse_args()
    s = drivers.Suite(a, "quantize_gemma2")
    if s.exists():
        for part, fn in (("identity", identity), ("rtn", rtn), ("export", export)):
            if a.part in (part, "all"):
                fn(s)
    return s.finish()


if __name__ == "__main__":
    sys.exit(main())
