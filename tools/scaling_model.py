#!/usr/bin/python3
"""A MODEL, not a measurement: seconds per phase of `quantize` (OPTQ) for one Llama-2-7B-shaped
block at P ranks, built from single-rank rates measured with `mpiquant bench` and the
communication each phase needs, under a stated network model.

    scaling_model.py [--ranks 1,16,64,256] [--bandwidth 10] [--latency 2] [rate options]
    scaling_model.py --markdown        # the README table

Every input is printed with the table. Rates are GFLOP/s of ONE rank (one core,
OPENBLAS_NUM_THREADS=1), each with the fraction of it the phase reaches (measured by `bench`
as "x% of DSYRK/DGEMM/SGEMM"); defaults are this project's 2-vCPU development machine at
its quietest in the session that wrote this (one rank: DGEMM 47.3, SGEMM 98.7, DSYRK 50.6
GFLOP/s; the per-entry costs from `bench --verbose`'s breakdown of the sums at 4096 columns).

Phases and their work, per block (n calibration tokens, L tokens per window, hidden h,
intermediate i; layer groups sharing H: q/k/v and gate/up):
  forward   both streams, 2·2·n·(4h² + 3hi) + attention 2·2·n·L·h flops; windows split over
            ranks (at most n/L ranks busy); each layer's Ŵ is then gathered on every rank
            (allgather, 4·rows·cols bytes).
  sums      H = X̃ᵀX̃ per group, n·c² flops in chunks of 1024 tokens split over ranks (at most
            n/1024 busy), plus per triangle entry: a 128-bit fixed-point add per chunk, the
            conversion to double (c(c+1)/2 / P per rank) and the symmetric copy (c²);
            communication: reduce-scatter of the 16-byte sums and allgather of the doubles,
            (16 + 8)·c(c+1)/2·(P−1)/P bytes per rank in 2(P−1) steps (--reduction allreduce:
            the previous scheme, 2·16·c(c+1)/2·(P−1)/P bytes and every rank converting all).
  factor    local: c³/3 on every rank (no speed-up); ScaLAPACK: c³/(3P) at the ScaLAPACK
            fraction of DGEMM, plus pdpotrf's panel broadcasts on a √P×√P grid (an estimate:
            8·c²/√P bytes per rank, (c/64)·3·log2 √P messages) and the sweep's panel
            allreduces (c²/2 doubles in c/128 allreduces, 2·(P−1)/P of the payload per rank).
  sweep     rows·c² flops in blocks of 128 rows split over ranks (at most rows/128 busy).
Network: time = messages·latency + bytes / bandwidth per rank, no overlap with compute.
"""
import argparse
import math

# Llama-2-7B block: (name, rows, cols) of each layer group's H and the rows quantized with it.
GROUPS = [("q,k,v", 3 * 4096, 4096), ("o", 4096, 4096), ("gate,up", 2 * 11008, 4096),
          ("down", 4096, 11008)]
HIDDEN, INTER, CHUNK, ROWBLOCK, NB, SWEEP_BLOCK = 4096, 11008, 1024, 128, 64, 128


def network(bytes_, messages, a):
    return messages * a.latency * 1e-6 + bytes_ / (a.bandwidth * 1e9)


def phase_times(P, a):
    """Seconds and bytes per rank of each phase at P ranks (ScaLAPACK factor when P > 1)."""
    n, L = a.tokens, a.seqlen
    t = {"forward": 0.0, "sums": 0.0, "factor": 0.0, "sweep": 0.0, "comm": 0.0}
    vol = {"forward": 0.0, "sums": 0.0, "factor": 0.0, "sweep": 0.0}
    fwd = 2 * 2 * n * (4 * HIDDEN ** 2 + 3 * HIDDEN * INTER) + 2 * 2 * n * L * HIDDEN
    busy = min(P, max(1, n // L))
    t["forward"] = fwd / busy / (a.sgemm * a.fwd_eff * 1e9)
    for _, rows, c in GROUPS:
        tri = c * (c + 1) / 2
        chunks = math.ceil(n / CHUNK)
        busy = min(P, chunks)
        my_chunks = math.ceil(chunks / busy)
        t["sums"] += n * c * c / busy / (a.dsyrk * a.sums_eff * 1e9)
        scatter = a.reduction == "scatter"
        conv = tri / P if scatter else tri  # an allreduce leaves every value to every rank
        t["sums"] += (my_chunks * tri * a.add_ns + conv * a.convert_ns + c * c * a.sym_ns) * 1e-9
        if P > 1:
            b = ((16 + 8) if scatter else 2 * 16) * tri * (P - 1) / P
            msgs = 2 * (P - 1) * max(1, math.ceil(tri / P / (1 << 19)))
            vol["sums"] += b
            t["comm"] += network(b, msgs, a)
        # factor
        if P == 1:
            t["factor"] += c ** 3 / 3 / (a.dgemm * a.factor_eff * 1e9)
        else:
            t["factor"] += c ** 3 / 3 / P / (a.dgemm * a.scalapack_eff * 1e9)
            q = math.sqrt(P)
            b = 8 * c * c / q + 2 * (P - 1) / P * 8 * c * c / 2
            msgs = (c / NB) * 3 * max(1.0, math.log2(q)) + (c / SWEEP_BLOCK) * 2 * math.log2(P)
            vol["factor"] += b
            t["comm"] += network(b, msgs, a)
        # sweep and the gather of Ŵ
        busy = min(P, math.ceil(rows / ROWBLOCK))
        t["sweep"] += rows * c * c / busy / (a.sgemm * a.sweep_eff * 1e9)
        if P > 1:
            b = 4 * rows * c * (P - 1) / P
            vol["forward"] += b
            t["comm"] += network(b, math.log2(P), a)
    return t, vol


def main():
    ap = argparse.ArgumentParser(description="A model (not a measurement) of quantize at P ranks")
    ap.add_argument("--ranks", default="1,16,64,256")
    ap.add_argument("--tokens", type=int, default=128 * 2048, help="calibration tokens n")
    ap.add_argument("--seqlen", type=int, default=2048)
    ap.add_argument("--bandwidth", type=float, default=10.0, help="GB/s per rank")
    ap.add_argument("--latency", type=float, default=2.0, help="µs per message")
    ap.add_argument("--dgemm", type=float, default=47.3, help="GFLOP/s, one rank")
    ap.add_argument("--sgemm", type=float, default=98.7, help="GFLOP/s, one rank")
    ap.add_argument("--dsyrk", type=float, default=50.6, help="GFLOP/s, one rank")
    ap.add_argument("--fwd-eff", type=float, default=0.9, help="forward, fraction of SGEMM")
    ap.add_argument("--sums-eff", type=float, default=0.9,
                    help="the sums' DSYRK calls, fraction of the probe's DSYRK")
    ap.add_argument("--add-ns", type=float, default=4.3,
                    help="ns per triangle entry per chunk (fixed-point add)")
    ap.add_argument("--convert-ns", type=float, default=23.0,
                    help="ns per triangle entry (128-bit to double)")
    ap.add_argument("--sym-ns", type=float, default=5.8, help="ns per entry of H (unpack, mirror)")
    ap.add_argument("--factor-eff", type=float, default=0.6, help="local DPOTRF, of DGEMM")
    ap.add_argument("--scalapack-eff", type=float, default=0.5, help="pdpotrf, of DGEMM (assumed)")
    ap.add_argument("--sweep-eff", type=float, default=0.6, help="sweep, of SGEMM")
    ap.add_argument("--reduction", choices=("scatter", "allreduce"), default="scatter",
                    help="the exact sums' reduction: reduce-scatter + allgather of doubles "
                    "(this build) or the allreduce of the 16-byte sums (before)")
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args()
    ranks = [int(r) for r in a.ranks.split(",")]
    base = None
    rows = []
    for P in ranks:
        t, vol = phase_times(P, a)
        total = sum(t.values())
        base = base if base is not None else total * (ranks[0])
        eff = base / (P * total)
        rows.append((P, t, vol, total, eff))
    print("MODEL, NOT A MEASUREMENT: one Llama-2-7B block (hidden 4096, intermediate 11008), "
          f"OPTQ, {a.tokens} calibration tokens in windows of {a.seqlen}")
    print(f"network: {a.bandwidth} GB/s per rank, {a.latency} µs per message, no overlap; "
          f"one rank: DGEMM {a.dgemm}, SGEMM {a.sgemm}, DSYRK {a.dsyrk} GFLOP/s; fractions: "
          f"forward {a.fwd_eff}, sums {a.sums_eff}, factor {a.factor_eff}, ScaLAPACK "
          f"{a.scalapack_eff}, sweep {a.sweep_eff}; per entry: add {a.add_ns} ns/chunk, "
          f"convert {a.convert_ns} ns, symmetrize {a.sym_ns} ns; exact reduction: {a.reduction}")
    head = ["ranks", "forward s", "sums s", "factor s", "sweep s", "communication s",
            "total s", "efficiency", "bytes/rank: sums", "factor (est.)", "Ŵ gathers"]
    if a.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
    else:
        print("  ".join(f"{h:>14}" for h in head))
    for P, t, vol, total, eff in rows:
        cells = [str(P)] + [f"{t[k]:.1f}" for k in ("forward", "sums", "factor", "sweep", "comm")]
        cells += [f"{total:.1f}", f"{100 * eff:.0f}%"]
        cells += [f"{vol[k] / 2 ** 30:.2f} GiB" for k in ("sums", "factor", "forward")]
        if a.markdown:
            print("| " + " | ".join(cells) + " |")
        else:
            print("  ".join(f"{c:>14}" for c in cells))


if __name__ == "__main__":
    main()
