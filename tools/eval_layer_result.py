#!/usr/bin/env python3
"""Error of a result file's quantized weights on ANOTHER layer-problem file with the same W
(fresh calibration samples): sum over layers of ‖X Wᵀ − X̃ Ŵᵀ‖²_F / n, and the mean rel_err.
Used to measure on held-out data what --lambda auto buys (README).

usage: eval_layer_result.py RESULT.h5 PROBLEM.h5
"""
import sys

import h5py
import numpy as np


def dequantize(g, bits):
    q, s, z, gi = g["qweight"][:], g["scales"][:], g["zeros"][:], g["g_idx"][:]
    cols = int(g.attrs["cols"])
    bitpos = np.arange(cols)[:, None] * bits + np.arange(bits)
    stream = (q[:, bitpos // 32] >> (bitpos % 32).astype(np.uint32)) & 1
    codes = (stream << np.arange(bits, dtype=np.uint32)).sum(-1)
    return s[:, gi].astype(np.float64) * (codes.astype(np.int64) - z[:, gi])


def main():
    result, problem = sys.argv[1], sys.argv[2]
    total, rels = 0.0, []
    with h5py.File(result) as r, h5py.File(problem) as p:
        bits = int(r.attrs["bits"])
        for name in sorted(r["layers"]):
            What = dequantize(r["layers"][name], bits)
            pl = p["layers"][name]
            W, X = pl["W"][:].astype(np.float64), pl["X"][:].astype(np.float64)
            Xq = pl["Xq"][:].astype(np.float64) if "Xq" in pl else X
            ref = X @ W.T
            e = ((ref - Xq @ What.T) ** 2).sum() / X.shape[0]
            total += e
            rels.append(np.sqrt(e * X.shape[0] / (ref ** 2).sum()))
    print(f"heldout_err {total:.6g} mean_rel_err {np.mean(rels):.6g}")


if __name__ == "__main__":
    main()
