#!/usr/bin/python3
"""Writes a layer-problem file whose layer gives H instead of samples (SPEC "Layer-problem
input"), or with --samples N the samples X [N, C] themselves, for memory and scaling runs with
many columns:

    make_hessian_problem.py OUT.h5 --rows R --cols C [--rank K] [--samples N] [--seed S]

H = (U Uᵀ)/K + diag(d) with U [C, K] standard normal and d in [0.05, 1.05] (symmetric positive
definite, a spread diagonal so act-order has work to do), stored as float64 [C, C] and written in
row panels so this script never holds more than H itself; W [R, C] float32 standard normal.
With --samples: X float32 standard normal with column scales 1..7 (no H)."""
import argparse

import h5py
import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--cols", type=int, required=True)
    ap.add_argument("--rank", type=int, default=256)
    ap.add_argument("--samples", type=int, default=0, help="write X [N, C] instead of H")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    U = rng.standard_normal((a.cols, a.rank))
    d = 0.05 + rng.random(a.cols)
    with h5py.File(a.out, "w") as f:
        g = f.create_group("layers").create_group("big")
        g.create_dataset("W", data=rng.standard_normal((a.rows, a.cols)).astype(np.float32))
        if a.samples:
            X = g.create_dataset("X", shape=(a.samples, a.cols), dtype=np.float32)
            scale = 1.0 + np.arange(a.cols) % 7
            for i0 in range(0, a.samples, 256):
                i1 = min(i0 + 256, a.samples)
                X[i0:i1] = (rng.standard_normal((i1 - i0, a.cols)) * scale).astype(np.float32)
            return
        H = g.create_dataset("H", shape=(a.cols, a.cols), dtype=np.float64)
        for i0 in range(0, a.cols, 1024):
            i1 = min(i0 + 1024, a.cols)
            P = U[i0:i1] @ U.T / a.rank
            P[np.arange(i1 - i0), np.arange(i0, i1)] += d[i0:i1]
            H[i0:i1] = P


if __name__ == "__main__":
    main()
