#!/usr/bin/python3
"""`mpiquant quantize` on the bundled demo model (a 4-block byte-level Llama, GQA 4/2):

identity  OPTQ and Qronos (nearest and stochastic) result files are identical bit for bit
          (qweight, scales, zeros, g_idx and the scalars λ, loss, err, rel_err, bound_l2,
          err_floor of all 28 layers) at 1, 2 and 3 ranks; every layer's
          rel_err is finite and in (0, 1).
rtn       --method rtn equals the numpy reference's per-layer RTN of the checkpoint weights
          (codes, scales, zeros, g_idx), i.e. no dependence on calibration.
model     /model/config is config.json byte for byte; /model/tensors holds every tensor that
          is not a quantized weight, equal to the checkpoint's values; block 0's q, k, v
          rel_err (measured from the Gram matrices) equals numpy's ‖X(W−Ŵ)ᵀ‖/‖XWᵀ‖ on the
          calibration windows redrawn here (splitmix64) within 1e-6.
demo      the bundled demo at 3 bits, group 64, 128 windows of 256 tokens on 2 ranks:
          perplexity on data/demo-eval.txt ordered FP < Qronos <= OPTQ < RTN (eval --quantized).
resume    --resume continues a partial file (blocks 2-3 missing, block 1 cut inside its MLP,
          one layer without its layer_complete mark; and a run killed with SIGKILL after its
          second block started) at another rank count, and the result equals an uninterrupted
          run bit for bit; a complete file is left alone (exit 0); other settings are refused
          (exit 2, file untouched).
errors    hostile inputs end with exit 3 (2 for usage), one `mpiquant: error:` line and no
          result file: token ids beyond the vocabulary, a checkpoint without one tensor, a
          truncated shard, a config that contradicts the weights, a NaN weight, --seqlen beyond
          the model.
Final line: `N passed, M failed`."""
import json
import os
import shutil
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import drivers  # noqa: E402
import llama_ref  # noqa: E402
from result_files import rtn_mismatches, splitmix64  # noqa: E402
from safetensors_np import read_st, without, write_st  # noqa: E402

MODEL = os.path.join(ROOT, "data", "demo-model")
CALIB = os.path.join(ROOT, "data", "demo-calib.txt")
SMALL = ["--nsamples", "13", "--seqlen", "128"]  # 13 windows: uneven over 2 and 3 ranks;
# the layer engine's rows (128-row blocks) split unevenly too: 352 rows -> 3 blocks.
TENSORS = ("qweight", "scales", "zeros", "g_idx")
# every floating scalar of a layer: sums over ranks, added in the layer's row order (and the
# output errors in window order), so identical bits too
SCALARS = ("lambda", "loss", "err", "rel_err", "bound_l2", "err_floor")


def quantize(s, out, opts, np_, model=MODEL, calib=CALIB, extra=SMALL):
    return s.run(["quantize", "--model", model, "--calib", calib, "--out", out, "--quiet"] +
                 extra + opts, np_=np_, out=out)


def layers(path):
    import h5py
    with h5py.File(path, "r") as f:
        return {n: {k: f["layers"][n][k][()] for k in TENSORS} |
                {k: np.float64(f["layers"][n].attrs[k]) for k in SCALARS}
                for n in f["layers"]}, int(f.attrs["complete"])


def identity(s):
    cases = [("optq", ["--method", "optq", "--bits", "3", "--group-size", "64"]),
             ("qronos", ["--method", "qronos", "--bits", "3", "--group-size", "64"]),
             ("qronos-stochastic", ["--method", "qronos", "--rounding", "stochastic",
                                    "--bits", "4", "--seed", "5"]),
             ("optq-asym-mse", ["--method", "optq", "--bits", "2", "--asym", "--mse",
                                "--group-size", "32", "--no-act-order"])]
    for label, opts in cases:
        res = {}
        for np_ in (1, 2, 3):
            out = s.path("%s_np%d.h5" % (label, np_))
            ok, cmd, tail, dt = quantize(s, out, opts, np_)
            if not s.case(ok, "%s np%d runs" % (label, np_), "%.1fs" % dt if ok else tail, [cmd]):
                continue
            res[np_] = layers(out)
        if len(res) != 3:
            continue
        base, complete = res[1]
        s.case(complete == 1 and len(base) == 28, "%s: complete, 28 layers" % label,
               "complete=%d, %d layers" % (complete, len(base)))
        rels = [v["rel_err"] for v in base.values()]
        s.case(all(0 < r < 1 for r in rels), "%s: rel_err in (0, 1)" % label,
               "min %.4g max %.4g" % (min(rels), max(rels)))
        for np_ in (2, 3):
            diff = [(n, k) for n in base for k in TENSORS + SCALARS
                    if base[n][k].tobytes() != res[np_][0][n][k].tobytes()]
            s.case(not diff, "%s: np%d identical to np1" % (label, np_),
                   "%d datasets differ, e.g. %s" % (len(diff), diff[:3]) if diff else "")


def rtn(s):
    weights = llama_ref.load_weights(MODEL)
    for bits, group in ((3, 64), (4, -1)):
        out = s.path("rtn%d.h5" % bits)
        opts = ["--method", "rtn", "--bits", str(bits), "--group-size", str(group)]
        ok, cmd, tail, _ = quantize(s, out, opts, 2)
        if not s.case(ok, "rtn %d bits runs" % bits, tail if not ok else "", [cmd]):
            continue
        bad, got = rtn_mismatches(out, weights, bits, group)
        s.case(len(got) == 28 and not bad, "rtn %d bits g%d == per-layer RTN" % (bits, group),
               "%d layers, mismatches %s" % (len(got), bad[:4]))


def model_part(s):
    import h5py
    out = s.path("optq_np1.h5")
    if not os.path.exists(out):
        ok, cmd, tail, _ = quantize(s, out, ["--bits", "3"], 1)
        if not s.case(ok, "model part: quantize runs", tail, [cmd]):
            return
    weights = llama_ref.load_weights(MODEL)
    with h5py.File(out, "r") as f:
        cfg = bytes(f["model/config"][()])
        stored = {n: f["model/tensors"][n][()] for n in f["model/tensors"]}
        qnames = set(f["layers"])
    with open(os.path.join(MODEL, "config.json"), "rb") as fh:
        s.case(cfg.rstrip(b"\0") == fh.read(), "model part: /model/config == config.json")
    block0_errors(s, out, weights)
    expect = {n for n in weights if n[: -len(".weight")] not in qnames}
    bad = [n for n in expect if n not in stored or
           not np.array_equal(stored[n], weights[n].astype(np.float32))]
    s.case(not bad and set(stored) == expect, "model part: non-quantized tensors == checkpoint",
           "%d expected, %d stored, bad %s" % (len(expect), len(stored), bad[:4]))


def perplexity(s, quantized=None):
    out = s.path("ppl.json")
    args = ["eval", "--model", MODEL, "--tokens", os.path.join(ROOT, "data", "demo-eval.txt"),
            "--seqlen", "256", "--json", out, "--quiet"]
    if quantized:
        args += ["--quantized", quantized]
    ok, cmd, tail, _ = s.run(args, np_=2, out=out)
    if not ok:
        s.case(False, "eval %s" % (quantized or "full precision"), tail, [cmd])
        return None
    return json.load(open(out))["perplexity"]


def demo(s):
    ppl = {"fp": perplexity(s)}
    for method in ("rtn", "optq", "qronos"):
        out = s.path("demo-%s-3.h5" % method)
        ok, cmd, tail, _ = quantize(s, out, ["--method", method, "--bits", "3", "--group-size",
                                             "64"], 2,
                                    extra=["--nsamples", "128", "--seqlen", "256"])
        if s.case(ok, "demo: quantize %s 3 bits" % method, tail if not ok else "", [cmd]):
            ppl[method] = perplexity(s, out)
    if None in ppl.values() or len(ppl) != 4:
        return
    text = ", ".join("%s %.4f" % kv for kv in ppl.items())
    s.case(ppl["fp"] < ppl["qronos"] <= ppl["optq"] < ppl["rtn"],
           "demo: perplexity FP < Qronos <= OPTQ < RTN", text)


def calibration_windows(nsamples, seqlen, seed=0):
    """The windows quantize draws (model_job.c): start = mix(seed ^ mix(i)) mod (ntok − L + 1)."""
    tokens = np.frombuffer(open(CALIB, "rb").read(), dtype=np.uint8).astype(np.int64)
    starts = [splitmix64(seed ^ splitmix64(i)) % (len(tokens) - seqlen + 1)
              for i in range(nsamples)]
    return np.stack([tokens[a:a + seqlen] for a in starts])


def block0_errors(s, out, weights):
    """In block 0 both streams enter q, k, v as rmsnorm(embedding): X = X̃, err = ‖X(W−Ŵ)ᵀ‖²/n."""
    cfg = json.load(open(os.path.join(MODEL, "config.json")))
    nsamples, seqlen = int(SMALL[1]), int(SMALL[3])
    x = weights["model.embed_tokens.weight"].astype(np.float64)[calibration_windows(nsamples, seqlen)]
    x = x.reshape(-1, x.shape[-1])
    x = x / np.sqrt((x * x).mean(-1, keepdims=True) + cfg["rms_norm_eps"])
    x = x * weights["model.layers.0.input_layernorm.weight"]
    got = drivers.read_result(out, 3)
    worst = 0.0
    for m in ("q_proj", "k_proj", "v_proj"):
        name = "model.layers.0.self_attn." + m
        W = weights[name + ".weight"].astype(np.float64)
        ref = np.linalg.norm(x @ (W - got[name]["What"]).T) / np.linalg.norm(x @ W.T)
        worst = max(worst, abs(got[name]["attrs"]["rel_err"] - ref) / ref)
    s.case(worst < 1e-6, "model part: block 0 q/k/v rel_err == numpy on the redrawn windows",
           "worst relative difference %.2e" % worst)


def hostile_model(s, label, edit):
    d = s.path("model_" + label)
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(MODEL, d)
    edit(d)
    return d


def same_layers(a, b):
    la, lb = layers(a)[0], layers(b)[0]
    diff = [(n, k) for n in la for k in TENSORS
            if n not in lb or not np.array_equal(la[n][k], lb[n][k])]
    return not diff and len(la) == len(lb), "%d datasets differ %s" % (len(diff), diff[:3])


def damage(path):
    """What an interruption leaves: complete=0, later layers missing, one layer half written."""
    import h5py
    with h5py.File(path, "r+") as f:
        f.attrs["complete"] = 0
        for n in list(f["layers"]):
            if n.startswith(("model.layers.2.", "model.layers.3.")) or \
                    n in ("model.layers.1.mlp.down_proj", "model.layers.1.mlp.up_proj"):
                del f["layers"][n]
        del f["layers"]["model.layers.1.mlp.gate_proj"].attrs["layer_complete"]


def killed_run(s, out, opts):
    """Starts quantize on 2 ranks and kills it with SIGKILL once block 2 is under way."""
    import signal
    import subprocess
    import time
    if os.path.exists(out):
        os.remove(out)
    cmd = drivers.launch_cmd(s.a.mpirun, 2, s.mpiquant) + [
        "quantize", "--model", MODEL, "--calib", CALIB, "--out", out] + opts
    p = subprocess.Popen(cmd, env=s.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         start_new_session=True)
    seen, t0 = b"", time.time()
    while b"block 2/4" not in seen and time.time() - t0 < s.a.timeout:
        line = p.stderr.readline()
        if not line:
            break
        seen += line
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    return b"block 2/4" in seen


def resume(s):
    opts = ["--method", "qronos", "--bits", "3", "--group-size", "64"]
    full = s.path("resume-full.h5")
    ok, cmd, tail, _ = quantize(s, full, opts, 2)
    if not s.case(ok, "resume: uninterrupted run", tail if not ok else "", [cmd]):
        return
    part = s.path("resume-part.h5")
    shutil.copy(full, part)
    damage(part)
    rc, log, cmd = run_full(s, ["quantize", "--model", MODEL, "--calib", CALIB, "--out", part,
                                "--resume"] + SMALL + opts, 3)
    same, detail = same_layers(full, part) if rc == 0 else (False, log[-600:])
    read_back = log.count("read back")
    s.case(rc == 0 and same and read_back == 11,
           "resume: damaged file continued at 3 ranks == uninterrupted at 2",
           "%d layers read back; %s" % (read_back, detail), [cmd])
    before = open(full, "rb").read()
    rc, log, cmd = run_full(s, ["quantize", "--model", MODEL, "--calib", CALIB, "--out", full,
                                "--resume"] + SMALL + opts, 2)
    s.case(rc == 0 and open(full, "rb").read() == before and "complete already" in log,
           "resume: a complete file is left alone (exit 0)", "exit %s" % rc, [cmd])
    damage(part)
    before = open(part, "rb").read()
    rc, log, cmd = run_full(s, ["quantize", "--model", MODEL, "--calib", CALIB, "--out", part,
                                "--resume"] + SMALL + opts[:-2] + ["--group-size", "32"], 2)
    errs = [ln for ln in log.splitlines() if "mpiquant: error:" in ln]
    s.case(rc == 2 and len(errs) == 1 and "other settings" in errs[0] and
           open(part, "rb").read() == before,
           "resume: other settings refused, file untouched", errs[0] if errs else log[-400:], [cmd])
    killed = s.path("resume-killed.h5")
    started = killed_run(s, killed, SMALL + opts)
    rc, log, cmd = run_full(s, ["quantize", "--model", MODEL, "--calib", CALIB, "--out", killed,
                                "--resume"] + SMALL + opts, 3)
    same, detail = same_layers(full, killed) if rc == 0 else (False, log[-600:])
    s.case(started and rc == 0 and same and log.count("read back") >= 3,
           "resume: run killed in block 2, continued at 3 ranks == uninterrupted",
           "%d layers read back; %s" % (log.count("read back"), detail), [cmd])


def run_full(s, args, np_):
    """(exit status, full output) of one run."""
    import subprocess
    cmd = drivers.launch_cmd(s.a.mpirun, np_, s.mpiquant) + args
    try:
        p = subprocess.run(cmd, env=s.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=s.a.timeout)
        return p.returncode, p.stdout.decode(errors="replace"), " ".join(cmd)
    except subprocess.TimeoutExpired:
        return "timeout", "", " ".join(cmd)


def errors(s):
    def drop_tensor(d):
        p = os.path.join(d, "model.safetensors")
        write_st(p, *without(*read_st(p), "model.layers.2.mlp.up_proj.weight"))

    def truncate(d):
        p = os.path.join(d, "model.safetensors")
        os.truncate(p, os.path.getsize(p) - 1000)

    def bad_config(d):
        p = os.path.join(d, "config.json")
        c = json.load(open(p))
        c["intermediate_size"] = 300
        json.dump(c, open(p, "w"))

    def nan_weight(d):
        p = os.path.join(d, "model.safetensors")
        h, data = read_st(p)
        a = h["model.layers.1.self_attn.k_proj.weight"]["data_offsets"][0]
        data = data[:a + 10] + np.array([0x7FC0], "<u2").tobytes() + data[a + 12:]  # bf16 NaN
        write_st(p, h, data)

    bad_tokens = s.path("bad_tokens.npy")
    np.save(bad_tokens, np.array([1, 2, 300] * 400, dtype=np.int32))
    cases = [("token ids beyond the vocabulary", MODEL, bad_tokens, [], 3),
             ("missing tensor", hostile_model(s, "missing", drop_tensor), CALIB, [], 3),
             ("truncated shard", hostile_model(s, "truncated", truncate), CALIB, [], 3),
             ("config contradicts weights", hostile_model(s, "config", bad_config), CALIB, [], 3),
             ("a NaN weight", hostile_model(s, "nan", nan_weight), CALIB, [], 3),
             ("--seqlen beyond max_position_embeddings", MODEL, CALIB, ["--seqlen", "100000"], 2),
             ("--nsamples 0", MODEL, CALIB, ["--nsamples", "0"], 2)]
    for np_ in (1, 3):
        for label, model, calib, extra, want in cases:
            out = s.path("err.h5")
            if os.path.exists(out):
                os.remove(out)
            rc, log, cmd = run_full(s, ["quantize", "--model", model, "--calib", calib, "--out",
                                        out, "--quiet"] + (extra or SMALL), np_)
            lines = [ln for ln in log.splitlines() if "mpiquant: error:" in ln]
            good = rc == want and len(lines) == 1 and not os.path.exists(out)
            s.case(good, "np%d %s -> exit %d, one line, no file" % (np_, label, want),
                   lines[0].split("mpiquant: ")[1] if good else "exit %s: %s" % (rc, log[-800:]),
                   [cmd])


def main():
    ap = drivers.base_parser(__doc__)
    ap.add_argument("--part", choices=("identity", "rtn", "model", "demo", "resume", "errors",
                                       "all"),
                    default="all")
    a = ap.parse_args()
    s = drivers.Suite(a, "quantize")
    if s.exists():
        for part, fn in (("identity", identity), ("rtn", rtn), ("model", model_part),
                         ("demo", demo), ("resume", resume), ("errors", errors)):
            if a.part in (part, "all"):
                fn(s)
    return s.finish()


if __name__ == "__main__":
    sys.exit(main())
