#!/usr/bin/python3
"""Side by side in one run: `mpiquant bench` and a PyTorch reimplementation of the reference
GPTQ's two phases, on the same synthetic layer.

The reference phases are written here from the published algorithm (Frantar et al., GPTQ, and
the behaviour of IST-DASLab's gptq.py), not copied:
  - Hessian: H accumulated in float32 over batches of --batch tokens as a running mean,
    H ← H·m/(m+b) + (2/(m+b))·XbᵀXb, the way the reference's add_batch keeps it;
  - quantization: dead inputs, act-order permutation, damp·mean(diag) on the diagonal, the
    upper Cholesky factor of H⁻¹, and the blocked column sweep (blocks of 128 columns, a
    min/max grid per group of --group-size columns found when the sweep reaches the group,
    symmetric as mpiquant's default), all in float32 as the reference runs on CPU.

The data are `mpiquant bench`'s own (io/synthetic_source.c): the same splitmix64 counter
hash, the same outlier channels, float32 activations, W = 0.02·U. Each reference phase is timed
at every thread count in --threads and the best is printed beside mpiquant's phase seconds.

    /usr/bin/python3 tools/bench_reference_gptq.py --mpiquant build/bin/mpiquant \
        --rows 4096 --cols 4096 --tokens 8192 --configs 1x1,1x2,2x1 --threads 1,2
"""
import argparse
import os
import re
import subprocess
import sys
import time

import numpy as np

try:
    import torch
except ImportError:  # pragma: no cover
    sys.exit("bench_reference_gptq: needs torch (Debian: apt-get install python3-torch)")

MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def synth(salt, k):
    """io/synthetic_source.c's synth(): splitmix64 of k + salt·φ, uniform with unit variance."""
    with np.errstate(over="ignore"):
        z = k + np.uint64(salt) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return ((z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53 - 0.5) * 3.4641016151377544


def bench_layer(rows, cols, tokens):
    """W [rows, cols] float32 and X [tokens, cols] float32, as `mpiquant bench` makes them."""
    X = np.empty((tokens, cols), dtype=np.float32)
    c = np.arange(cols, dtype=np.uint64)
    gain = np.where(c % np.uint64(97) == 0, 20.0, 1.0 + (c % np.uint64(7)).astype(np.float64) * 0.1)
    for t0 in range(0, tokens, 1024):  # in slices: the uint64 temporaries stay small
        t1 = min(tokens, t0 + 1024)
        k = np.arange(t0 * cols, t1 * cols, dtype=np.uint64).reshape(t1 - t0, cols)
        X[t0:t1] = (synth(1, k) * gain).astype(np.float32)
    k = np.arange(rows * cols, dtype=np.uint64).reshape(rows, cols)
    W = (0.02 * synth(3, k)).astype(np.float32)
    return W, X


def reference_hessian(X, batch):
    """The reference's running-mean float32 accumulation of 2/n·XᵀX over batches."""
    cols = X.shape[1]
    H = torch.zeros(cols, cols, dtype=torch.float32)
    seen = 0
    for t0 in range(0, X.shape[0], batch):
        xb = X[t0:t0 + batch]
        b = xb.shape[0]
        H *= seen / (seen + b)
        seen += b
        xs = xb * (2.0 / seen) ** 0.5
        H.addmm_(xs.t(), xs)  # H += xsᵀ xs, one GEMM per batch as the reference does
    return H


def group_grid(w, bits):
    """Symmetric min/max grid per row of w [rows, g]: scale and zero."""
    maxq = 2 ** bits - 1
    lo = torch.clamp(w.min(dim=1).values, max=0)
    hi = torch.clamp(w.max(dim=1).values, min=0)
    hi = torch.maximum(lo.abs(), hi)
    lo = -hi
    dead = (lo == 0) & (hi == 0)
    lo[dead], hi[dead] = -1, 1
    scale = (hi - lo) / maxq
    zero = torch.full_like(scale, (maxq + 1) / 2)
    return scale, zero, maxq


def reference_quantize(W, H, bits, group, block, damp):
    """The blocked OPTQ sweep with act order; returns Ŵ [rows, cols] and Σ (w−q)²/d²."""
    W = W.clone()
    H = H.clone()
    cols = W.shape[1]
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    perm = torch.argsort(torch.diag(H), descending=True)
    W, H = W[:, perm], H[perm][:, perm]
    H += damp * torch.mean(torch.diag(H)) * torch.eye(cols)
    L = torch.linalg.cholesky(H)
    U = torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)  # H⁻¹ = UᵀU
    Q = torch.zeros_like(W)
    loss = torch.zeros(W.shape[0])
    scale = zero = None
    for b0 in range(0, cols, block):
        b1 = min(cols, b0 + block)
        Wb = W[:, b0:b1].clone()
        Eb = torch.zeros_like(Wb)
        Ub = U[b0:b1, b0:b1]
        for j in range(b1 - b0):
            if (b0 + j) % group == 0:
                # the group's columns as the sweep has updated them so far
                scale, zero, maxq = group_grid(torch.cat([Wb[:, j:], W[:, b1:]], 1)[:, :group],
                                               bits)
            w, d = Wb[:, j], Ub[j, j]
            q = scale * (torch.clamp(torch.round(w / scale) + zero, 0, maxq) - zero)
            Q[:, b0 + j] = q
            e = (w - q) / d
            loss += e * e / 2
            Wb[:, j:] -= e.unsqueeze(1) * Ub[j, j:].unsqueeze(0)
            Eb[:, j] = e
        W[:, b1:] -= Eb @ U[b0:b1, b1:]
    return Q[:, torch.argsort(perm)], loss.sum().item()


def best_time(fn, threads):
    best = None
    for t in threads:
        torch.set_num_threads(t)
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        print(f"  reference at {t} thread(s): {dt:.3f} s", flush=True)
        if best is None or dt < best[0]:
            best = (dt, t, out)
    return best


def run_mpiquant(args, np_, threads, precision):
    """`mpiquant bench` on np_ ranks of `threads` BLAS threads each, Gram products in
    `precision` (double or float32)."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    env.pop("MQ_SUMS_PRECISION", None)
    cmd = [args.mpirun, "--oversubscribe", "--bind-to", "none", "-np", str(np_), args.mpiquant,
           "bench", "--rows", str(args.rows), "--cols", str(args.cols), "--tokens",
           str(args.tokens), "--bits", str(args.bits), "--group-size", str(args.group_size),
           "--gram-products", precision]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    phase = {}
    for name, key in (("hessian", r"hessian \([DS]SYRK[^)]*\)"), ("quant", r"quantization phase")):
        m = re.search(key + r"\s+([0-9.]+) s", out)
        phase[name] = float(m.group(1)) if m else float("nan")
    m = re.search(r"hessian \([DS]SYRK[^)]*\)\s+[0-9.]+ s\s+[0-9.]+ GFLOP/s\s+([0-9.]+)% of", out)
    phase["fraction"] = float(m.group(1)) if m else float("nan")
    return phase, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mpiquant", default="build/bin/mpiquant")
    ap.add_argument("--mpirun", default="mpirun")
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--cols", type=int, default=4096)
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--group-size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=2048, help="tokens per add_batch (one sequence)")
    ap.add_argument("--configs", default="1x1,1x2,2x1",
                    help="mpiquant runs as RANKSxTHREADS (BLAS threads per rank)")
    ap.add_argument("--threads", default="1,2", help="torch thread counts tried")
    ap.add_argument("--quant-threads", default=None,
                    help="thread counts tried for the quantization phase (default: --threads)")
    ap.add_argument("--precisions", default="double,float32",
                    help="mpiquant's --gram-products values to run")
    ap.add_argument("--damp", type=float, default=0.01)
    ap.add_argument("--skip-mpiquant", action="store_true")
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    print(f"layer: rows {args.rows}, cols {args.cols}, tokens {args.tokens}, {args.bits}-bit "
          f"g{args.group_size} act-order", flush=True)
    W, X = bench_layer(args.rows, args.cols, args.tokens)
    Xt, Wt = torch.from_numpy(X), torch.from_numpy(W)
    print("reference Hessian (float32 running mean over batches of "
          f"{args.batch} tokens):", flush=True)
    th, th_threads, H = best_time(lambda: reference_hessian(Xt, args.batch), threads)
    # the oracle: H's leading 512 columns in float64, to say what float32 accumulation costs
    S = min(512, args.cols)
    Xs = X[:, :S].astype(np.float64)
    Hd = Xs.T @ Xs * (2.0 / X.shape[0])
    rel = float(np.abs(H[:S, :S].numpy().astype(np.float64) - Hd).max() / np.abs(Hd).max())
    print("reference quantization (Cholesky inverse, blocked sweep):", flush=True)
    tq, tq_threads, (_, loss) = best_time(
        lambda: reference_quantize(Wt, H, args.bits, args.group_size, 128, args.damp),
        [int(t) for t in (args.quant_threads or args.threads).split(",")])
    print(f"reference best: Hessian {th:.3f} s ({th_threads} threads, max rel. error vs float64 "
          f"{rel:.2e}), quantization {tq:.3f} s ({tq_threads} threads), loss {loss:.6g}")
    if args.skip_mpiquant:
        return
    for precision in args.precisions.split(","):
        for config in args.configs.split(","):
            np_, threads = (int(v) for v in config.split("x"))
            report_mpiquant(args, np_, threads, precision, th, tq)


def report_mpiquant(args, np_, threads, precision, th, tq):
    ph, _ = run_mpiquant(args, np_, threads, precision)
    syrk = "SSYRK" if precision == "float32" else "DSYRK"
    print(f"mpiquant {np_} rank(s) x {threads} thread(s), {precision} Gram products: Hessian "
          f"{ph['hessian']:.3f} s ({ph['fraction']:.0f}% of the same-run {syrk}; "
          f"{th / ph['hessian']:.2f}x the reference's speed), quantization {ph['quant']:.3f} s "
          f"({tq / ph['quant']:.2f}x)", flush=True)


if __name__ == "__main__":
    main()
