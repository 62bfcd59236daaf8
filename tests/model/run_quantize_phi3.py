#!/usr/bin/python3
"""`mpiquant quantize` on a Phi-3 checkpoint (make_models.py's phi3_bf16_fused: q/k/v stored as
one self_attn.qkv_proj, gate/up as one mlp.gate_up_proj), quantized as the fused layers they
are:

identity  result files identical bit for bit (every dataset and attribute but the run's own) at
          1, 2 and 3 ranks (21 windows of 128 tokens: 3 chunks of the sums, uneven over the
          ranks), for OPTQ with act-order and for Qronos; /layers holds exactly qkv_proj, o_proj,
          gate_up_proj and down_proj of each block (no q_proj, gate_proj, ...), with the fused
          shapes [(heads + 2·kv_heads)·head_dim, hidden] and [2·intermediate, hidden], and a
          finite rel_err (measured over all the fused rows' products); block 0's qkv_proj
          rel_err == numpy's on the redrawn calibration windows (there X = X̃).
rtn       --method rtn equals the numpy reference's per-layer RTN of each stored tensor, the
          fused ones whole.
resume    a file cut after block 1's qkv_proj (o_proj half written, the rest missing) continued
          at 3 ranks == the uninterrupted run at 2: the fused layers read back feed the
          quantized stream split into q, k, v exactly as when they were computed.
export    dequant and GPTQ exports write `<layer>.weight` / `.qweight` under the fused names
          (what Phi-3 loaders read), weights == the result's Ŵ; eval of the dequantized export
          == eval --quantized; GGUF (llama architecture only) refuses it with exit 3.
Final line: `N passed, M failed`."""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
sys.path.insert(0, HERE)
import drivers  # noqa: E402
import llama_ref  # noqa: E402
from result_files import (contents, differences, export_evaluates_alike, exported, gguf_refused,
                          identical_across_ranks, rtn_mismatches, splitmix64)  # noqa: E402

NAME = "phi3_bf16_fused"
NSAMPLES, SEQLEN = 21, 128
SMALL = ["--nsamples", str(NSAMPLES), "--seqlen", str(SEQLEN)]
CASES = [("optq", ["--method", "optq", "--bits", "3", "--group-size", "16", "--act-order"]),
         ("qronos", ["--method", "qronos", "--bits", "4", "--group-size", "-1"])]


def model_dir(s):
    return os.path.join(s.a.models, NAME)


def quantize(s, out, opts, np_, extra=()):
    d = model_dir(s)
    return s.run(["quantize", "--model", d, "--calib", os.path.join(d, "tokens.npy"),
                  "--out", out, "--quiet"] + SMALL + list(opts) + list(extra), np_=np_, out=out)


def expected_layers(cfg):
    """Module name -> (rows, cols) of every layer a Phi-3 result must hold."""
    H, I = cfg["hidden_size"], cfg["intermediate_size"]
    hd = cfg.get("head_dim") or H // cfg["num_attention_heads"]
    qkv = (cfg["num_attention_heads"] + 2 * cfg["num_key_value_heads"]) * hd
    out = {}
    for b in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % b
        out.update({p + "self_attn.qkv_proj": (qkv, H),
                    p + "self_attn.o_proj": (H, cfg["num_attention_heads"] * hd),
                    p + "mlp.gate_up_proj": (2 * I, H), p + "mlp.down_proj": (H, I)})
    return out


def check_layers(s, label, out):
    import h5py
    cfg = json.load(open(os.path.join(model_dir(s), "config.json")))
    want = expected_layers(cfg)
    with h5py.File(out, "r") as f:
        have = {n: (int(g.attrs["rows"]), int(g.attrs["cols"])) for n, g in f["layers"].items()}
        rel = [float(g.attrs["rel_err"]) for g in f["layers"].values()]
    s.case(have == want and all(np.isfinite(r) and r > 0 for r in rel),
           "%s: /layers is exactly qkv_proj, o_proj, gate_up_proj, down_proj per block, fused "
           "shapes" % label, "have %s; rel_err %s" % (sorted(have.items())[:6], rel[:4]))


def block0_qkv_error(s, label, out):
    """In block 0 both streams enter qkv_proj as rmsnorm(embedding), X = X̃, so the fused layer's
    rel_err (summed from its q, k and v products) must be numpy's ‖X(W−Ŵ)ᵀ‖/‖XWᵀ‖ over all its
    rows, on the calibration windows redrawn here (calibrate.c: start = mix(seed ^ mix(i)) mod
    (ntok − L + 1), seed 0)."""
    d = model_dir(s)
    cfg = json.load(open(os.path.join(d, "config.json")))
    w = llama_ref.load_weights(d)
    tokens = np.load(os.path.join(d, "tokens.npy")).astype(np.int64)
    starts = [splitmix64(splitmix64(i)) % (len(tokens) - SEQLEN + 1) for i in range(NSAMPLES)]
    x = w["model.embed_tokens.weight"].astype(np.float64)[np.concatenate(
        [tokens[a:a + SEQLEN] for a in starts])]
    x = x / np.sqrt((x * x).mean(-1, keepdims=True) + cfg["rms_norm_eps"])
    x = x * w["model.layers.0.input_layernorm.weight"]
    name = "model.layers.0.self_attn.qkv_proj"
    W = w[name + ".weight"].astype(np.float64)
    got = drivers.read_result(out, 3 if label == "optq" else 4)[name]
    ref = np.linalg.norm(x @ (W - got["What"]).T) / np.linalg.norm(x @ W.T)
    rel = abs(got["attrs"]["rel_err"] - ref) / ref
    s.case(rel < 1e-4, "%s: block 0 qkv_proj rel_err == numpy over its %d rows" % (label, len(W)),
           "%.6g vs numpy %.6g (relative difference %.1e)" % (got["attrs"]["rel_err"], ref, rel))


def identity(s):
    for label, opts in CASES:
        def first(out, label=label):
            check_layers(s, label, out)
            block0_qkv_error(s, label, out)
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
    fused = sorted(n for n in got if n.endswith(("qkv_proj", "gate_up_proj")))
    s.case(len(fused) == 4 and not bad, "rtn == per-layer RTN of the %d stored tensors (fused: "
           "%s)" % (len(got), ", ".join(fused)), "mismatches %s" % bad[:4])


def resume(s):
    import h5py
    opts = CASES[0][1]
    full = s.path("resume_full.h5")
    ok, cmd, tail, _ = quantize(s, full, opts, 2)
    if not s.case(ok, "resume: uninterrupted run", tail if not ok else "", [cmd]):
        return
    part = s.path("resume_part.h5")
    shutil.copy(full, part)
    with h5py.File(part, "r+") as f:  # what an interruption in block 1 leaves
        f.attrs["complete"] = 0
        for n in ("model.layers.1.mlp.gate_up_proj", "model.layers.1.mlp.down_proj"):
            del f["layers"][n]
        del f["layers"]["model.layers.1.self_attn.o_proj"].attrs["layer_complete"]
    d = model_dir(s)
    c = drivers.launch_cmd(s.a.mpirun, 3, s.mpiquant) + [
        "quantize", "--model", d, "--calib", os.path.join(d, "tokens.npy"), "--out", part,
        "--resume"] + SMALL + opts
    p = subprocess.run(c, env=s.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=s.a.timeout)
    log = p.stdout.decode(errors="replace")
    read_back = [ln for ln in log.splitlines() if "read back" in ln]
    diff = differences(contents(full), contents(part)) if p.returncode == 0 else ["(exit)"]
    s.case(p.returncode == 0 and not diff and len(read_back) == 5,
           "resume: block 0 and block 1's qkv_proj read back (%d layers), continued at 3 ranks "
           "== uninterrupted at 2" % len(read_back),
           "exit %d, %d items differ %s\n%s" % (p.returncode, len(diff), diff[:3], log[-600:]),
           [" ".join(c)])


def export(s):
    out = s.path("export.h5")
    ok, cmd, tail, _ = quantize(s, out, ["--bits", "4", "--group-size", "16", "--scale-dtype",
                                         "float16"], 2)
    if not s.case(ok, "export: quantize runs", tail, [cmd]):
        return
    model = model_dir(s)
    for fmt, st, probs in exported(s, out, model):
        split = [n for n in st if re.search(r"\.(q|k|v|gate|up)_proj\.", n)]
        fused = [n for n in st if "qkv_proj" in n or "gate_up_proj" in n]
        s.case(not probs and not split and len(fused) >= 4,
               "export %s: %d tensors under the fused Phi-3 names, none split, weights == the "
               "result's Ŵ" % (fmt, len(fused)), "; ".join(probs[:4] + split[:3]))
    export_evaluates_alike(s, model, out, s.path("export_dequant"))
    gguf_refused(s, out, model, "Phi3ForCausalLM", "Phi-3")

def main():
    ap = drivers.base_parser(__doc__)
    ap.add_argument("--models", required=True, help="make_models.py's fixtures")
    ap.add_argument("--part", choices=("identity", "rtn", "resume", "export", "all"),
                    default="all")
    a = ap.parse_args()
    s = drivers.Suite(a, "quantize_phi3")
    if s.exists():
        for part, fn in (("identity", identity), ("rtn", rtn), ("resume", resume),
                         ("export", export)):
            if a.part in (part, "all"):
                fn(s)
    return s.finish()


if __name__ == "__main__":
    sys.exit(main())
