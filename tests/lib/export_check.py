"""An independent numpy decoding of `mpiquant export`'s inputs and outputs, and the suite
plumbing of the export drivers (tests/io/run_export.py, run_export_e2e.py).  Not a test by
itself.

result_layers    a result file's layers decoded straight from SPEC "Result file" (bit streams of
                 qweight, scales, zeros, g_idx) -> codes and the float32 weights scales·(q − z).
gptq_unpack_*    qweight/qzeros unpacked the way AutoGPTQ's QuantLinear.forward does (2/4/8 bits
                 by shifts, 3 bits with its 3-int32 scheme).
check_*          an exported model.safetensors against the decoding: dequant bit for bit in
                 float32, numpy's float16 or bfloat16 round-to-nearest-even; gptq codes, zero
                 points (v1: stored + 1), fp16 scales, g_idx; quantization_config.
Suite            runs `timeout T <mpirun> -np N mpiquant ...`, `export` that must succeed (then
                 a checker) or fail (error_path.judge), and tallies `ok`/`FAIL` lines.
"""
import os
import shutil
import subprocess
import sys
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from error_path import judge  # noqa: E402
from launch import launch_cmd, subprocess_env  # noqa: E402
from safetensors_np import bf16_round, bf16_to_f32  # noqa: E402


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


def check_gptq(st, layers, v2):
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
        Wg = sc.astype(np.float32)[g, :] * (q - z[g, :]).astype(np.float32)  # [cols, rows]
        tol = np.abs(L["codes"] - L["zeros"][:, L["g_idx"]]).T * \
            np.abs(L["scales"][:, L["g_idx"]]).T * 2.0 ** -11 + 1e-30
        err = np.abs(Wg - L["W"].T)
        if not (err <= tol).all():
            probs.append("%s: scales*(q-z) off the result's weights by %.3g (> fp16 rounding)" %
                         (name, float(err.max())))
    return probs


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

    def export(self, label, args, check):
        """Runs export (must succeed) then check(outdir) -> problems."""
        out = self.path("out-" + label)
        shutil.rmtree(out, ignore_errors=True)
        rc, so, se = self.run(["export", "--out", out, "--quiet"] + args)
        if rc != 0:
            self.case(label, ["export exit %d" % rc], so + se)
            return
        try:
            probs = check(out)
            leftovers = [f for f in os.listdir(out) if ".tmp." in f]
            if leftovers:
                probs.append("temporary files left: %s" % leftovers)
        except Exception as e:  # a malformed output must be reported, not crash the suite
            probs = ["checker exception %s: %s" % (type(e).__name__, e)]
        self.case(label, probs)

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
