#!/usr/bin/python3
"""A stand-in for `mpiquant layer`, built on reference.py, used only to test the oracle
scripts themselves (tests/parallel/selftest_oracle.py; also, by hand,
tests/parallel/run_layer_suite.py or tests/cli/run_bad_inputs.py --mpiquant fake_mpiquant.py).

  fake_mpiquant.py layer --in P.h5 --out O.h5 [quantization options]
  fake_mpiquant.py study --in P.h5 --csv OUT.csv [--damps L] [--methods L] [--roundings L]
                   [quantization options]

Under mpirun only rank 0 (OMPI_COMM_WORLD_RANK / PMI_RANK) works; the others exit with the
same status.  Env FAKE_MQ_CORRUPT=codes|loss|gidx|complete|floor|linf|auto|seed deliberately
damages the output so that the checker's failure paths can be exercised (seed: stochastic
rounding ignores the seed, as a broken generator would).
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as ref  # noqa: E402
import check_layer  # noqa: E402


def pack_codes(codes, bits):
    rows, cols = codes.shape
    words = (cols * bits + 31) // 32
    stream = np.zeros((rows, words * 32), dtype=np.uint8)
    for b in range(bits):
        stream[:, np.arange(cols) * bits + b] = (codes >> b) & 1
    return np.packbits(stream, axis=1, bitorder="little").view("<u4").reshape(rows, words)


class Fail(Exception):
    def __init__(self, status, msg):
        super().__init__(msg)
        self.status = status


def run(argv, rank):
    import argparse
    import h5py

    class P(argparse.ArgumentParser):
        def error(self, message):
            raise Fail(2, message)

    if not argv or argv[0] not in ("layer", "study"):
        raise Fail(2, "usage: fake_mpiquant.py layer|study --in P.h5 ...")
    ap = P(allow_abbrev=False, add_help=False)
    ap.add_argument("--in", dest="inp")
    ap.add_argument("--out")
    ap.add_argument("--csv")
    ap.add_argument("--damps", default="1e-4,1e-3,1e-2,1e-1")
    ap.add_argument("--methods", default="rtn,optq,qronos")
    ap.add_argument("--roundings", default="nearest,stochastic")
    check_layer.add_quant_options(ap)
    o = ap.parse_args(argv[1:])
    study = argv[0] == "study"
    if not o.inp:
        raise Fail(2, "--in: required")
    if not (o.csv if study else o.out):
        raise Fail(2, "--csv: required" if study else "--out: required")
    if not 2 <= o.bits <= 8:
        raise Fail(2, "--bits: must be 2..8")
    if not (o.group_size == -1 or o.group_size > 0):
        raise Fail(2, "--group-size: must be -1 or > 0")
    try:
        f = h5py.File(o.inp, "r")
    except OSError:
        raise Fail(3, "%s: not an HDF5 file" % o.inp)
    layers = {}
    with f:
        if "layers" not in f:
            raise Fail(3, "%s: no /layers group" % o.inp)
        for name in sorted(f["layers"]):
            g = f["layers"][name]
            d = {k: np.asarray(g[k][()], dtype=np.float64) for k in ("W", "X", "Xq", "H", "G")
                 if k in g}
            if "W" not in d:
                raise Fail(3, "%s: /layers/%s: no W" % (o.inp, name))
            if "X" not in d and "H" not in d:
                raise Fail(3, "%s: /layers/%s: neither X nor H" % (o.inp, name))
            W = d["W"]
            if W.ndim != 2 or W.size == 0:
                raise Fail(3, "%s: /layers/%s/W: empty" % (o.inp, name))
            for k in ("X", "Xq", "H", "G"):
                if k in d and (d[k].ndim != 2 or d[k].shape[1] != W.shape[1] or
                               d[k].shape[0] == 0):
                    raise Fail(3, "%s: /layers/%s/%s: bad shape" % (o.inp, name, k))
                if k in d and not np.all(np.isfinite(d[k])):
                    raise Fail(3, "%s: /layers/%s/%s: not finite" % (o.inp, name, k))
            if not np.all(np.isfinite(W)):
                raise Fail(3, "%s: /layers/%s/W: not finite" % (o.inp, name))
            layers[name] = d
    if rank != 0:
        return
    corrupt = os.environ.get("FAKE_MQ_CORRUPT", "")
    if study:
        return write_study(o, layers)
    with h5py.File(o.out, "w") as f:
        for index, (name, d) in enumerate(layers.items()):
            t0 = time.time()
            W = d["W"]
            r, extra = quantize(d, o, index, corrupt)
            codes = r["codes"].copy()
            if corrupt == "codes":
                codes[:, ::7] = (codes[:, ::7] + 1) % (2 ** o.bits)
            g = f.create_group("layers/" + name)
            g["qweight"] = pack_codes(codes, o.bits)
            g["scales"] = r["scales"].astype(np.float32)
            g["zeros"] = r["zeros"].astype(np.int32)
            gi = r["g_idx"].astype(np.int32)
            if corrupt == "gidx":
                gi = gi[::-1].copy()
            g["g_idx"] = gi
            a = g.attrs
            a["rows"], a["cols"] = W.shape
            for k, v in measure(d, r, corrupt).items():
                a[k] = v
            for k, v in extra.items():
                a[k] = v
            a["seconds"] = time.time() - t0
        a = f.attrs
        a["format"] = "mpiquant"
        a["format_version"] = 1
        a["mpiquant_version"] = "fake-0"
        a["method"] = o.method
        a["rounding"] = o.rounding
        a["bits"] = o.bits
        a["group_size"] = o.group_size
        a["sym"] = int(o.sym)
        a["act_order"] = int(o.act_order)
        a["static_groups"] = int(o.static_groups)
        a["damp"] = 0.01 if o.damp is None else o.damp
        a["seed"] = o.seed
        a["nranks"] = int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1"))
        if corrupt != "complete":
            a["complete"] = 1


def quantize(d, o, index, corrupt=""):
    """reference result for one layer dict and the extra (--lambda auto) attributes."""
    opts = dict(method=o.method, bits=o.bits, group_size=o.group_size, sym=o.sym,
                act_order=o.act_order, static_groups=o.static_groups, mse=o.mse,
                rounding=o.rounding, seed=0 if corrupt == "seed" else o.seed,
                layer_index=index)
    if o.lam == "auto":
        if "X" not in d:
            raise Fail(3, "--lambda auto needs samples (X)")
        au = ref.lambda_auto(d, **opts)
        held = au["heldout"].copy()
        if corrupt == "auto":
            held[0] *= 0.5
        return au["result"], {"lambda_candidates": au["candidates"],
                              "lambda_heldout_err": held}
    kw = dict(lam=float(o.lam)) if o.lam is not None else dict(damp=0.01 if o.damp is None
                                                               else o.damp)
    return ref.quantize_problem(d, **opts, **kw), {}


def measure(d, r, corrupt=""):
    """The per-layer numeric attributes of a reference result."""
    W = d["W"]
    if "X" in d:
        err, rel = ref.objective(W, d["X"], d.get("Xq"), r["What"])
    else:
        err, rel = ref.objective_h(W, d["H"], r["What"])
    return {"lambda": r["lambda"], "loss": r["loss"] * (1.001 if corrupt == "loss" else 1.0),
            "err": err, "rel_err": rel, "bound_l2": r["bound_l2"],
            "bound_linf": r["bound_linf"] * (1.01 if corrupt == "linf" else 1.0),
            "err_floor": r["err_floor"] * (1.001 if corrupt == "floor" else 1.0),
            "clipped": np.int64(r["clipped"])}


STUDY_HEADER = "layer,method,rounding,damp,lambda,err,rel_err,loss,bound_l2,err_floor," \
               "clipped,seconds"


def write_study(o, layers):
    rows = [STUDY_HEADER]
    for index, (name, d) in enumerate(layers.items()):
        for damp in [float(x) for x in o.damps.split(",")]:
            for method in o.methods.split(","):
                for rounding in o.roundings.split(","):
                    t0 = time.time()
                    o1 = check_layer.parse_quant_options([])
                    o1.__dict__.update({k: v for k, v in vars(o).items() if k in vars(o1)})
                    o1.method, o1.rounding, o1.damp, o1.lam = method, rounding, damp, None
                    r, _ = quantize(d, o1, index)
                    m = measure(d, r)
                    rows.append("%s,%s,%s,%.17g,%.17g,%.17g,%.17g,%.17g,%.17g,%.17g,%d,%.6f"
                                % (name, method, rounding, damp, m["lambda"], m["err"],
                                   m["rel_err"], m["loss"], m["bound_l2"], m["err_floor"],
                                   m["clipped"], time.time() - t0))
    with open(o.csv, "w") as f:
        f.write("\n".join(rows) + "\n")


def main():
    rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("PMI_RANK", "0")))
    try:
        run(sys.argv[1:], rank)
    except Fail as e:
        if rank == 0:
            print("mpiquant: error: %s" % e, file=sys.stderr)
        return e.status
    return 0


if __name__ == "__main__":
    sys.exit(main())
