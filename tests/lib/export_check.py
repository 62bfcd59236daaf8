"""An independent numpy decoding of `mpiquant export`'s inputs and outputs, and the suite
plumbing of the export drivers (tests/io/run_export.py, run_export_e2e.py).  Not a test by
itself.

result_layers    a result file's layers decoded straight from SPEC "Result file" (bit streams of
                 qweight, scales, zeros, g_idx) -> codes and the float32 weights scales·(q − z).
gptq_unpack_*    qweight/qzeros unpacked the way AutoGPTQ's QuantLinear.forward does (2/4/8 bits
                 by shifts, 3 bits with its 3-int32 scheme).
read_export      every tensor of an export folder: model.safetensors, or the shards named by
                 model.safetensors.index.json, checked against the index (each tensor in the
                 shard the index names and nowhere else, total_size = bytes of data, shard
                 sizes within the limit unless one tensor alone exceeds it).
check_*          an exported model.safetensors against the decoding: dequant bit for bit in
                 float32, numpy's float16 or bfloat16 round-to-nearest-even; gptq codes, zero
                 points (v1: stored + 1), fp16 scales, g_idx, and the weights a consumer
                 computes (README: float32(scale_f16)·(q − z)) equal to the result file's Ŵ bit
                 for bit when its scales are float16 values; quantization_config.
Suite            runs `timeout T <mpirun> -np N mpiquant ...`, `export` that must succeed (then
                 a checker) or fail (error_path.judge), and tallies `ok`/`FAIL` lines.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from error_path import judge  # noqa: E402
from launch import launch_cmd, subprocess_env  # noqa: E402
from safetensors_np import bf16_round, bf16_to_f32, read_safetensors  # noqa: E402


# ---------------------------------------------------------------------------------------------
# independent decoders
# ---------------------------------------------------------------------------------------------
def result_layers(path):
    """name -> dict(codes int64 [rows, cols], scales f32, zeros i64, g_idx i64, W f32)."""
    out = {}
    with h5py.File(path, "r") as f:
        bits = int(f.attrs["bits"])
        for name in f["layers"]:
            g = f["layers"][name]
            qw = np.ascontiguousarray(g["qweight"][()].astype("<u4"))
            cols = g["g_idx"].shape[0]
            rows = qw.shape[0]
            stream = np.unpackbits(qw.view(np.uint8).reshape(rows, -1), axis=1, bitorder="little")
            b = stream[:, :cols * bits].reshape(rows, cols, bits).astype(np.int64)
            codes = (b << np.arange(bits, dtype=np.int64)).sum(axis=2)
            scales = g["scales"][()].astype(np.float32)
            zeros = g["zeros"][()].astype(np.int64)
            gi = g["g_idx"][()].astype(np.int64)
            W = scales[:, gi] * (codes - zeros[:, gi]).astype(np.float32)  # float32 product
            out[name] = dict(codes=codes, scales=scales, zeros=zeros, g_idx=gi, W=W, bits=bits)
    return out


WF3 = np.array([[0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 0],
                [0, 1, 4, 7, 10, 13, 16, 19, 22, 25, 28, 31],
                [0, 2, 5, 8, 11, 14, 17, 20, 23, 26, 29, 0]], dtype=np.int64)


def gptq_unpack_rows(packed, bits):
    """AutoGPTQ's unpacking of qweight (int32 [K·bits/32, N]) along axis 0 -> int64 [K, N]."""
    p = packed.astype(np.int64) & 0xFFFFFFFF
    mask = (1 << bits) - 1
    if bits in (2, 4, 8):
        wf = np.arange(0, 32, bits, dtype=np.int64)
        w = (p[:, None, :] >> wf[None, :, None]) & mask
        return w.reshape(-1, p.shape[1])
    assert bits == 3
    w = p.reshape(p.shape[0] // 3, 3, 1, p.shape[1])
    w = (w >> WF3[None, :, :, None]) & 0x7
    w[:, 0, 10] = (w[:, 0, 10] & 0x3) | ((w[:, 1, 0] << 2) & 0x4)
    w[:, 1, 11] = (w[:, 1, 11] & 0x1) | ((w[:, 2, 0] << 1) & 0x6)
    w = np.concatenate([w[:, 0, :11], w[:, 1, 1:12], w[:, 2, 1:11]], axis=1)
    return w.reshape(-1, p.shape[1])


def gptq_unpack_cols(packed, bits):
    """qzeros int32 [G, N·bits/32] unpacked along axis 1 -> int64 [G, N]."""
    return gptq_unpack_rows(packed.T, bits).T


# ---------------------------------------------------------------------------------------------
# checks
# ---------------------------------------------------------------------------------------------
def check_dequant(st, layers, dtype, model=None, model_dtype_src=None):
    """st: parsed safetensors; layers: result_layers(); model: name -> (values, dtype)."""
    probs = []
    for name, L in layers.items():
        key = name + ".weight"
        if key not in st:
            probs.append("missing " + key)
            continue
        dt, a = st[key]
        if dt != dtype or list(a.shape) != list(L["W"].shape):
            probs.append("%s: %s %s, want %s %s" % (key, dt, a.shape, dtype, L["W"].shape))
            continue
        if dtype == "F32":
            want = L["W"].view(np.uint32)
            got = a.view(np.uint32)
        elif dtype == "F16":
            want = L["W"].astype(np.float16).view(np.uint16)
            got = a.view(np.uint16)
        else:
            want, got = bf16_round(L["W"]), a
        nbad = int((want != got).sum())
        if nbad:
            probs.append("%s: %d of %d values differ from numpy's %s" % (key, nbad, want.size,
                                                                        dtype))
    probs += check_model_tensors(st, model)
    return probs


def check_model_tensors(st, model):
    probs = []
    for name, (x, dt) in (model or {}).items():
        if name not in st:
            probs.append("missing " + name)
            continue
        gdt, a = st[name]
        if gdt != dt or list(a.shape) != list(x.shape):
            probs.append("%s: %s %s, want %s %s" % (name, gdt, a.shape, dt, x.shape))
            continue
        v = bf16_to_f32(a) if dt == "BF16" else a.astype(np.float32)
        if not np.array_equal(v.view(np.uint32), x.astype(np.float32).view(np.uint32)):
            probs.append("%s: values differ" % name)
    return probs


def read_export(out, max_shard=None):
    """(name -> (dtype, array), problems, number of files) of an export folder."""
    index = os.path.join(out, "model.safetensors.index.json")
    single = os.path.join(out, "model.safetensors")
    if not os.path.exists(index):
        return read_safetensors(single), [], 1
    probs = []
    if os.path.exists(single):
        probs.append("both model.safetensors and an index")
    with open(index) as fh:
        idx = json.load(fh)
    wmap = idx.get("weight_map", {})
    files = sorted(set(wmap.values()))
    n = len(files)
    want = ["model-%05d-of-%05d.safetensors" % (k + 1, n) for k in range(n)]
    if files != want or n < 2:
        probs.append("shard files %s, want %s" % (files[:3], want[:3]))
    on_disk = sorted(f for f in os.listdir(out) if f.endswith(".safetensors"))
    if on_disk != files:
        probs.append("files on disk %s differ from the index's %s" % (on_disk[:4], files[:4]))
    tensors, total = {}, 0
    for f in files:
        st = read_safetensors(os.path.join(out, f))
        nbytes = sum(a.nbytes for _, a in st.values())
        total += nbytes
        if max_shard is not None and nbytes > max_shard and len(st) > 1:
            probs.append("%s: %d bytes of data in %d tensors > limit %d" % (f, nbytes, len(st),
                                                                           max_shard))
        for k, v in st.items():
            if k in tensors:
                probs.append("%s in two shards" % k)
            if wmap.get(k) != f:
                probs.append("%s is in %s, the index says %s" % (k, f, wmap.get(k)))
            tensors[k] = v
    missing = set(wmap) - set(tensors)
    if missing:
        probs.append("index names tensors in no shard: %s" % sorted(missing)[:4])
    if idx.get("metadata", {}).get("total_size") != total:
        probs.append("total_size %r, data bytes %d" % (idx.get("metadata"), total))
    return tensors, probs, n


def check_gptq(st, layers, v2, exact=False):
    """exact: the result's scales are float16 values, so the consumer's weights
    float32(scale_f16)·(q − z) must equal Ŵ bit for bit; else within the fp16 rounding."""
    probs = []
    for name, L in layers.items():
        bits = L["bits"]
        need = [name + s for s in (".qweight", ".qzeros", ".scales", ".g_idx")]
        if any(k not in st for k in need) or name + ".weight" in st:
            probs.append("%s: tensors %s" % (name, sorted(k for k in st if k.startswith(name))))
            continue
        (dq, qw), (dz, qz), (ds, sc), (dg, gi) = (st[k] for k in need)
        rows, cols = L["codes"].shape
        ng = L["scales"].shape[1]
        if (dq, dz, ds, dg) != ("I32", "I32", "F16", "I32") or \
                qw.shape != (cols * bits // 32, rows) or qz.shape != (ng, rows * bits // 32) or \
                sc.shape != (ng, rows) or gi.shape != (cols,):
            probs.append("%s: dtypes/shapes %s %s %s %s %s %s %s %s" % (
                name, dq, qw.shape, dz, qz.shape, ds, sc.shape, dg, gi.shape))
            continue
        q = gptq_unpack_rows(qw, bits)           # [cols, rows]
        z = gptq_unpack_cols(qz, bits) + (0 if v2 else 1)  # [ng, rows]
        if not np.array_equal(q.T, L["codes"]):
            probs.append("%s: codes differ (%d)" % (name, int((q.T != L["codes"]).sum())))
        if not np.array_equal(z.T, L["zeros"]):
            probs.append("%s: zero points differ (%d)" % (name, int((z.T != L["zeros"]).sum())))
        if not np.array_equal(sc.view(np.uint16), L["scales"].T.astype(np.float16).view(np.uint16)):
            probs.append("%s: scales are not the float16 rounding of the result's" % name)
        if not np.array_equal(gi, L["g_idx"]):
            probs.append("%s: g_idx differs" % name)
        g = gi.astype(np.int64)
        # the README formula, as a consumer computes it
        Wg = sc.astype(np.float32)[g, :] * (q - z[g, :]).astype(np.float32)  # [cols, rows]
        if exact:
            nbad = int((Wg.T.view(np.uint32) != L["W"].view(np.uint32)).sum())
            if nbad:
                probs.append("%s: %d of %d dequantized weights differ from the result's Ŵ" %
                             (name, nbad, Wg.size))
            continue
        tol = np.abs(L["codes"] - L["zeros"][:, L["g_idx"]]).T * \
            np.abs(L["scales"][:, L["g_idx"]]).T * 2.0 ** -11 + 1e-30
        err = np.abs(Wg - L["W"].T)
        if not (err <= tol).all():
            probs.append("%s: scales*(q-z) off the result's weights by %.3g (> fp16 rounding)" %
                         (name, float(err.max())))
    return probs


def rounding_error(layers):
    """(scales changed, Σ (ŵ_f16 − ŵ)², Σ ŵ² over rows with a change, largest relative scale
    change) of rounding every scale to float16 with the codes kept (export --allow-requantize)."""
    n, err, ref, mx = 0, 0.0, 0.0, 0.0
    for L in layers.values():
        s = L["scales"]
        s16 = s.astype(np.float16).astype(np.float32)
        ch = s16 != s
        n += int(ch.sum())
        if ch.any():
            mx = max(mx, float((np.abs(s16.astype(np.float64) - s) / np.abs(s))[ch].max()))
        d = (L["codes"] - L["zeros"][:, L["g_idx"]]).astype(np.float32)
        w16 = s16[:, L["g_idx"]] * d
        rows = ch.any(axis=1)
        err += float(((w16[rows].astype(np.float64) - L["W"][rows]) ** 2).sum())
        ref += float((L["W"][rows].astype(np.float64) ** 2).sum())
    return n, err, ref, mx


def f16_scales(layers):
    """True when every scale of every layer is a float16 value."""
    return all(np.array_equal(L["scales"].astype(np.float16).astype(np.float32), L["scales"])
               for L in layers.values())


def expect_warnings(*want):
    """A warn check for Suite.export: each string of want is in exactly one warning line, and
    every other line is one about missing inputs (no --model, no config.json)."""
    def check(lines):
        probs = []
        for w in want:
            n = sum(w in ln for ln in lines)
            if n != 1:
                probs.append("%d warning lines contain %r (want 1): %s" % (n, w, lines))
        for ln in lines:
            if not any(w in ln for w in want) and "no --model DIR" not in ln and \
                    "no config.json" not in ln:
                probs.append("unexpected warning: " + ln)
        return probs
    return check


WARN = re.compile(r"^\[mpiquant\]\s+\S+s warning: (.*)$")


def warnings(stderr):
    """The text of mpiquant's warning lines."""
    return [m.group(1) for m in map(WARN.match, stderr.splitlines()) if m]


def check_quant_config(qc, bits, group_size, sym, desc_act, v2):
    want = {"quant_method": "gptq", "bits": bits, "group_size": group_size, "sym": bool(sym),
            "desc_act": bool(desc_act), "checkpoint_format": "gptq_v2" if v2 else "gptq"}
    return ["quantization_config %s = %r, want %r" % (k, qc.get(k), v)
            for k, v in want.items() if qc.get(k) != v]


# ---------------------------------------------------------------------------------------------
# the suite
# ---------------------------------------------------------------------------------------------
class Suite:
    """a: the driver's arguments (drivers.base_parser: --mpiquant, --np, --mpirun, --workdir,
    --timeout)."""

    def __init__(self, a):
        self.a = a
        self.npass = self.nfail = 0
        self.env = subprocess_env()
        self.mpiquant = os.path.abspath(a.mpiquant)

    def path(self, *p):
        return os.path.join(self.a.workdir, *p)

    def run(self, args, timeout=None):
        """(exit status, stdout, stderr) of `timeout T <mpirun> -np N mpiquant <args>`; T is
        --timeout (120) unless given."""
        timeout = self.a.timeout if timeout is None else timeout
        cmd = ["timeout", "%g" % timeout] + launch_cmd(self.a.mpirun, self.a.np, self.mpiquant) + \
            list(args)
        p = subprocess.run(cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")

    def case(self, label, probs, detail=""):
        if probs:
            self.nfail += 1
            print("FAIL " + label)
            for p in probs:
                print("  " + p)
            if detail:
                print("  " + detail.strip().replace("\n", "\n  ")[-2000:])
        else:
            self.npass += 1
            print("ok   " + label)
        sys.stdout.flush()

    def layer(self, label, problem, out, opts):
        rc, so, se = self.run(["layer", "--in", problem, "--out", out, "--quiet"] + opts)
        if rc != 0:
            self.case("layer " + label, ["mpiquant layer exit %d" % rc], so + se)
            return False
        return True

    def export(self, label, args, check, warn=None):
        """Runs export (must succeed) then check(outdir) -> problems, and warn(the warning
        lines' texts) -> problems (default: there must be none). Returns (stdout, stderr)."""
        out = self.path("out-" + label)
        shutil.rmtree(out, ignore_errors=True)
        rc, so, se = self.run(["export", "--out", out, "--quiet"] + args)
        if rc != 0:
            self.case(label, ["export exit %d" % rc], so + se)
            return so, se
        try:
            probs = check(out)
            w = warnings(se)
            if warn is None:  # only the warnings about what the inputs lack
                warn = expect_warnings()
            probs += warn(w)
            leftovers = [f for f in os.listdir(out) if ".tmp." in f]
            if leftovers:
                probs.append("temporary files left: %s" % leftovers)
        except Exception as e:  # a malformed output must be reported, not crash the suite
            probs = ["checker exception %s: %s" % (type(e).__name__, e)]
        self.case(label, probs, se if probs else "")
        return so, se

    def export_fails(self, label, args, want_rc, must_contain=None):
        out = self.path("out-" + label)
        shutil.rmtree(out, ignore_errors=True)
        rc, so, se = self.run(["export", "--out", out, "--quiet"] + args)
        probs = judge(rc, want_rc, so, se, os.path.join(out, "model.safetensors"))
        if must_contain and must_contain not in se:
            probs.append("error line lacks %r" % must_contain)
        if os.path.isdir(out):
            left = os.listdir(out)
            if left:
                probs.append("left behind in %s: %s" % (out, left))
        self.case(label, probs, se)

    def finish(self, t0):
        print("suite time %.1fs" % (time.time() - t0))
        print("%d passed, %d failed" % (self.npass, self.nfail))
        return 1 if self.nfail else 0
