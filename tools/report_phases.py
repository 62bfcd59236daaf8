#!/usr/bin/python3
"""Where the seconds of a `quantize --json` run went, set against the flops of each phase and the
same run's machine rates (the `machine` line of `mpiquant bench`, all ranks together).

  report_phases.py REPORT.json CONFIG.json --dgemm G --sgemm G --dsyrk G [--ssyrk G]
                   [--method optq] [--gram-products double|float32]

Phases: forward passes (both streams, SGEMM), Gram sums (DSYRK, or SSYRK with float32 Gram
products; Qronos also X̃ᵀX and XᵀX), factor (DPOTRF), sweep (SGEMM); flops counted as the
algorithm needs them.
"""
import argparse
import json


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report")
    ap.add_argument("config")
    for k in ("dgemm", "sgemm", "dsyrk"):
        ap.add_argument("--" + k, type=float, required=True)
    ap.add_argument("--ssyrk", type=float, default=None)
    ap.add_argument("--gram-products", default="double", choices=("double", "float32"))
    ap.add_argument("--method", default="optq")
    ap.add_argument("--ranks", type=int, default=1,
                    help="ranks of the run: a local (replicated) factor runs at one rank's rate")
    a = ap.parse_args()
    rep, cfg = json.load(open(a.report)), json.load(open(a.config))
    n = rep["nsamples"] * rep["seqlen"]
    L = rep["seqlen"]
    h, i = cfg["hidden_size"], cfg["intermediate_size"]
    hd = cfg.get("head_dim", h // cfg["num_attention_heads"])
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    blocks = cfg["num_hidden_layers"]
    lin = 2.0 * (h * q + 2 * h * kv + q * h + 3 * h * i)  # per token
    attn = 2.0 * 2 * q * L / 2  # scores and values, causal half
    fwd_flops = 2 * blocks * n * (lin + attn)  # both streams
    grams = {"q": h, "o": q, "gate": h, "down": i}
    # Qronos: X̃ᵀX̃, X̃ᵀX (a GEMM: 2x), XᵀX (its err_floor); OPTQ and RTN: X̃ᵀX̃ only
    g = 4.0 if a.method == "qronos" else 1.0
    ph = {"hessian": 0.0, "factor": 0.0, "refit": 0.0, "sweep": 0.0, "pack": 0.0, "errors": 0.0}
    flops = {"hessian": 0.0, "factor": 0.0, "refit": 0.0, "sweep": 0.0, "errors": 0.0}
    qronos = a.method == "qronos"
    for layer in rep["layers"]:
        p = layer["phases_max_over_ranks"]
        for k in ph:
            ph[k] += p.get(k, 0.0) or 0.0
        rows, cols = layer["rows"], layer["cols"]
        flops["factor"] += cols ** 3 / 3.0
        flops["sweep"] += rows * cols * cols
        if qronos:  # the refit (qronos.h) and err_floor's ‖(X − X̃)Wᵀ‖² from the Grams (one
            flops["refit"] += 3.0 * rows * cols * cols  # rows×cols² DGEMM; err: the streams')
            flops["errors"] += 2.0 * rows * cols * cols
        short = layer["name"].split(".")[-1]
        if short in ("q_proj", "o_proj", "gate_proj", "down_proj"):
            flops["hessian"] += g * n * cols * cols
    f32 = a.gram_products == "float32" and a.ssyrk is not None
    syrk_rate, syrk_name = (a.ssyrk, "SSYRK") if f32 else (a.dsyrk, "DSYRK")
    rows = [("forward passes (2 streams)", rep["seconds_forward_max_over_ranks"], fwd_flops,
             a.sgemm, "SGEMM"),
            ("Gram sums", ph["hessian"], flops["hessian"], syrk_rate, syrk_name),
            ("factor (every rank its copy)", ph["factor"], flops["factor"], a.dgemm / a.ranks,
             "one rank's DGEMM"),
            ("sweep", ph["sweep"], flops["sweep"], a.sgemm, "SGEMM")]
    if qronos:
        rows += [("Qronos refit", ph["refit"], flops["refit"], a.sgemm, "SGEMM"),
                 ("err_floor (from the Grams)", ph["errors"], flops["errors"], a.dgemm, "DGEMM"),
                 ("pack", ph["pack"], 0.0, 0.0, "")]
    else:
        rows += [("pack + errors", ph["pack"] + ph["errors"], 0.0, 0.0, "")]
    total = rep["seconds_total"]
    ideal = 0.0
    print("%-28s %9s %10s %9s %s" % ("phase", "seconds", "GFLOP", "GFLOP/s", "of same-run rate"))
    for name, sec, fl, rate, rname in rows:
        if fl > 0:
            ideal += fl / 1e9 / rate
            print("%-28s %9.1f %10.0f %9.1f %5.1f%% of %s" % (name, sec, fl / 1e9,
                  fl / 1e9 / max(sec, 1e-9), 100 * fl / 1e9 / max(sec, 1e-9) / rate, rname))
        else:
            print("%-28s %9.1f" % (name, sec))
    rest = total - sum(r[1] for r in rows)
    print("%-28s %9.1f" % ("rest (I/O, gathers, setup)", rest))
    print("%-28s %9.1f   flop time at the same-run rates %.1f s: %.2fx" %
          ("total", total, ideal, total / ideal))
    traffic = {}  # per phase: bytes and messages per rank (each layer's max over ranks), summed
    for layer in rep["layers"]:
        for phase, t in (layer.get("traffic_per_rank") or {}).items():
            b, m = traffic.get(phase, (0.0, 0.0))
            traffic[phase] = (b + t["bytes"], m + t["messages"])
    if traffic:
        print("MPI traffic per rank (measured; each layer's maximum over ranks, summed): " +
              ", ".join("%s %.2f GiB in %d messages" % (p, b / 2 ** 30, m)
                        for p, (b, m) in traffic.items()))
    mem = max(rep.get("max_resident_bytes_per_rank", [0]))
    print("peak resident memory per rank %.2f GiB" % (mem / 2 ** 30))


if __name__ == "__main__":
    main()
