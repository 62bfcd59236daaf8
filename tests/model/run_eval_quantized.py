#!/usr/bin/python3
"""`mpiquant eval --quantized O.h5` vs the numpy reference on the dequantized model.

Quantizes a model with `mpiquant quantize` (demo model, the Qwen2 random model with q/k/v
biases: biases and norms come from /model/tensors, and the Mixtral, Qwen2-MoE, Qwen3-MoE and
Qwen3 random models: routers, shared-expert gates and q/k norms too, and the Phi-3 one: its
fused qkv_proj / gate_up_proj layers, and the Gemma 2 one: its four norms per block),
dequantizes O.h5 here with numpy straight
from SPEC.md "Result file" (bit streams of qweight, scales, zeros, g_idx), writes the result as
a float32 checkpoint and runs tests/lib/llama_ref.py on it. Asserts, at --np ranks:
  - eval --quantized prints a perplexity within --tol (1e-4) of the reference's;
  - it differs from the original model's perplexity (the overlay is really used).

usage: run_eval_quantized.py --mpiquant BIN --np N --models DIR --demo-model DIR
                             --demo-calib FILE --demo-tokens FILE --workdir DIR
"""
import math
import os
import shlex
import shutil
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import llama_ref  # noqa: E402
import model_drivers as common  # noqa: E402
from safetensors_np import st_blob, to_bytes  # noqa: E402


def dequantize(g, bits):
    q = np.asarray(g["qweight"], dtype=np.uint32)
    scales = np.asarray(g["scales"], dtype=np.float32)
    zeros = np.asarray(g["zeros"], dtype=np.int64)
    gidx = np.asarray(g["g_idx"], dtype=np.int64)
    rows, cols = q.shape[0], gidx.shape[0]
    # row bit streams: bit k of a row is bit k%32 of word k/32
    bitsarr = ((q[:, :, None] >> np.arange(32, dtype=np.uint32)[None, None, :]) & 1)
    bitsarr = bitsarr.reshape(rows, -1)[:, : cols * bits].reshape(rows, cols, bits)
    codes = (bitsarr.astype(np.int64) << np.arange(bits)[None, None, :]).sum(-1)
    w = scales[:, gidx] * (codes - zeros[:, gidx]).astype(np.float32)
    return w.astype(np.float32)


def write_dequantized(h5path, model_dir, out_dir):
    import h5py
    os.makedirs(out_dir, exist_ok=True)
    shutil.copy(os.path.join(model_dir, "config.json"), os.path.join(out_dir, "config.json"))
    tensors = {}
    with h5py.File(h5path, "r") as f:
        bits = int(f.attrs["bits"])
        for name, g in f["layers"].items():
            tensors[name + ".weight"] = dequantize(g, bits)
        for name, d in f["model/tensors"].items():
            tensors[name] = np.asarray(d, dtype=np.float32)
    blob = st_blob([(n, "F32", tensors[n].shape, to_bytes(tensors[n], "F32"))
                    for n in sorted(tensors)])
    with open(os.path.join(out_dir, "model.safetensors"), "wb") as fo:
        fo.write(blob)


def main(argv=None):
    a = common.parser(__doc__, "--demo-model", "--demo-calib", "--demo-tokens",
                      tol=True).parse_args(argv)
    os.makedirs(a.workdir, exist_ok=True)
    env = common.subprocess_env()
    qwen = os.path.join(a.models, "qwen2_bf16_gqa2")
    qtok = os.path.join(qwen, "tokens.npy")
    # (label, model, calib, eval tokens, seqlen, nwindows, quantize options)
    cases = [
        ("demo optq 4-bit g32", a.demo_model, a.demo_calib, a.demo_tokens, 128, 6,
         ["--bits", "4", "--group-size", "32"]),
        ("qwen2 rtn 3-bit asym", qwen, qtok, qtok, 16, 20,
         ["--method", "rtn", "--bits", "3", "--asym", "--group-size", "16"]),
    ]
    # the families of issue 9: experts (routers and the shared-expert gate from /model/tensors),
    # q/k norms, an explicit head_dim; experts on 2 groups where there are ranks for them
    groups = ["--expert-groups", "2"] if a.np > 1 else []
    for name, label, opts in (
            ("mixtral_f32_e4", "mixtral optq 4-bit g16", ["--bits", "4", "--group-size", "16"]),
            ("qwen2moe_bf16_e4", "qwen2moe qronos 3-bit g16",
             ["--method", "qronos", "--bits", "3", "--group-size", "16"]),
            ("qwen3moe_f16_e8", "qwen3moe optq 4-bit", ["--bits", "4", "--group-size", "-1"]),
            ("qwen3_bf16_hd", "qwen3 optq 3-bit g16", ["--bits", "3", "--group-size", "16"]),
            # Phi-3: the result's fused qkv_proj / gate_up_proj are what the reference splits
            ("phi3_bf16_fused", "phi3 optq 4-bit g16", ["--bits", "4", "--group-size", "16"]),
            # Gemma 2: its four norms per block come from /model/tensors, stored as w (1 + w)
            ("gemma2_bf16", "gemma2 optq 4-bit g16", ["--bits", "4", "--group-size", "16"])):
        d = os.path.join(a.models, name)
        tok = os.path.join(d, "tokens.npy")
        cases.append((label, d, tok, tok, 64, 8, opts + groups))
    npass = nfail = 0
    for label, d, calib, tok, L, nw, qopts in cases:
        tag = label.split()[0]
        out = os.path.join(a.workdir, tag + ".h5")
        launch = shlex.split(a.mpirun) + ["-np", str(a.np), a.mpiquant]
        problems = []
        q = subprocess.run(launch + ["quantize", "--model", d, "--calib", calib, "--out", out,
                                     "--nsamples", "8", "--seqlen", str(L), "--quiet"] + qopts,
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=120)
        if q.returncode != 0:
            nfail += 1
            print("FAIL %s: quantize exit %d: %s" % (label, q.returncode,
                                                     q.stdout.decode()[-800:]))
            continue
        e = subprocess.run(launch + ["eval", "--model", d, "--quantized", out, "--tokens", tok,
                                     "--seqlen", str(L), "--nwindows", str(nw), "--quiet"],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        lines = e.stdout.decode().strip().splitlines()
        ppl = None
        if e.returncode != 0 or not lines or not lines[-1].startswith("perplexity "):
            problems.append("eval exit %d: %s" % (e.returncode, e.stderr.decode()[-800:]))
        else:
            ppl = float(lines[-1].split()[1])
        deq = os.path.join(a.workdir, tag + "_dequantized")
        write_dequantized(out, d, deq)
        m = llama_ref.Model(deq)
        toks = llama_ref.read_tokens(tok, m.embed.shape[0])[: nw * L]
        total, count = m.nll(toks, L)
        ref = math.exp(total / count)
        t0, c0 = llama_ref.Model(d).nll(toks, L)
        orig = math.exp(t0 / c0)
        rel = abs(ppl - ref) / ref if ppl is not None else math.inf
        if rel > a.tol:
            problems.append("perplexity %r vs dequantized reference %.8f (rel %.2e)"
                            % (ppl, ref, rel))
        if ppl is not None and abs(ppl - orig) <= a.tol * orig:
            problems.append("perplexity %r equals the original model's %.8f" % (ppl, orig))
        if problems:
            nfail += 1
            print("FAIL %s: %s" % (label, "; ".join(problems)))
        else:
            npass += 1
            print("ok   %s: quantized perplexity %.6f vs reference %.6f (rel %.1e); original "
                  "%.6f" % (label, ppl, ref, rel, orig))
    print("%d passed, %d failed" % (npass, nfail))
    return 0 if nfail == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
