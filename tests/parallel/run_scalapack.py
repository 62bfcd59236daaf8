#!/usr/bin/python3
"""`mpiquant layer --factor scalapack` against `--factor local` (called by CTest).

  run_scalapack.py --mpiquant PATH/TO/mpiquant --workdir DIR [--nps 1,2,3,4]
                   [--mpirun "mpirun --oversubscribe"] [--quick] [--seed S] [--timeout 120]
                   [--min-same 0.999] [--loss-tol 1e-6]

The distributed factor (2-D block-cyclic pdpotrf, block 64, panels broadcast to the sweep just
in time) computes the same R as the local Cholesky up to rounding, so the codes may differ only
where a value sits on a rounding tie.  For each case the reference is `--factor local` at 1 rank;
then `--factor scalapack` runs at every rank count of --nps and, per layer, asserts:
  - exit 0, complete == 1, nranks == N, g_idx identical, shapes identical;
  - codes identical on >= --min-same (99.9%) of the entries;
  - lambda equal (1e-12 relative: H is bit-identical, λ does not depend on the factor);
  - loss within --loss-tol (1e-6) relative of the local run's.
Layers have 97, 130, 200 and 50 columns (not multiples of the block 64 nor of the process grid
at 2, 3, 4 ranks; 50 fits in one block, 200 takes four panels, the last one 8 wide), rows not
divisible by the rank counts, several 256-sample chunks, and one 3-row layer (empty row ranges
at 4 ranks).  OPTQ and Qronos (file with X̃), nearest and stochastic rounding.  With H given
(OPTQ) each rank reads only H's rows its blocks need; with --mem-per-rank 64K (below H's size)
H is summed from the samples in row panels and never whole on a rank (OPTQ and Qronos, whose
first targets and V then come from H and G panels too).
Prints one line per case and finally `N passed, M failed`; exit status 1 if any failed.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import drivers  # noqa: E402
import problems  # noqa: E402


def plain_layers(rng):
    return {
        "a_outlier_11x97": problems.layer_outlier(rng, rows=11, cols=97, n=600),
        "b_heavy_14x130": problems.layer_heavy(rng, rows=14, cols=130, n=520),
        "c_corr_10x200_f64": problems.layer_correlated(rng, rows=10, cols=200, n=700,
                                                       dtype=np.float64),
        "d_dead_3x50": problems.layer_dead(rng, rows=3, cols=50, n=300, dtype=np.float32),
    }


def xq_layers(rng):
    return {
        "a_mm_11x97": problems.layer_mismatch(rng, rows=11, cols=97, n=600),
        "b_mm_7x130_f64": problems.layer_mismatch(rng, rows=7, cols=130, n=520,
                                                  dtype=np.float64, noise=0.1, dead=2),
        "c_mm_10x200": problems.layer_mismatch(rng, rows=10, cols=200, n=700, noise=0.3),
    }


def hessian_layers(rng):
    """H given instead of samples: OPTQ on ScaLAPACK then never holds H whole (each rank reads
    the rows of H its blocks need, errors streamed from H's rows)."""
    return {
        "a_h_9x97_dead": problems.layer_hessian(rng, rows=9, cols=97, n=400, dead=3),
        "b_h_5x130_f32": problems.layer_hessian(rng, rows=5, cols=130, n=500,
                                                dtype=np.float32, dead=1),
    }


CASES = [
    ("plain", "--method optq"),
    ("plain", "--method optq --bits 3 --group-size 32 --asym --no-act-order"),
    ("plain", "--method optq --bits 4 --group-size -1 --asym --rounding stochastic --seed 9"),
    ("xq", "--method optq --bits 4 --group-size 48 --asym --block-size 32"),
    ("xq", "--method qronos --bits 3 --group-size 32 --asym"),
    ("xq", "--method qronos --bits 4 --group-size -1 --sym --lambda 0"),
    ("hessian", "--method optq --bits 3 --group-size 32"),
    # a budget below H's size: on samples H is then summed in panels, never whole on a rank
    ("plain", "--method optq --bits 3 --group-size 32 --mem-per-rank 64K"),
    ("xq", "--method qronos --bits 3 --group-size 32 --asym --mem-per-rank 64K"),
]
QUICK = [0, 2, 4, 6, 7, 8]


def _rel(a, b):
    a, b = float(a), float(b)
    if a == b:
        return 0.0
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def compare(ref, got, min_same, loss_tol):
    """Returns (problems, worst agreement, worst loss rel)."""
    probs = []
    worst_same, worst_loss = 1.0, 0.0
    if sorted(ref) != sorted(got):
        return ["layers %s vs %s" % (sorted(got), sorted(ref))], 0.0, float("inf")
    for name in sorted(ref):
        r, g = ref[name], got[name]
        if g["codes"].shape != r["codes"].shape or g["scales"].shape != r["scales"].shape:
            probs.append("%s: shapes %s/%s vs %s/%s" % (name, g["codes"].shape,
                                                        g["scales"].shape, r["codes"].shape,
                                                        r["scales"].shape))
            continue
        if not np.array_equal(g["g_idx"], r["g_idx"]):
            probs.append("%s: g_idx differs" % name)
        same = float(np.mean(g["codes"] == r["codes"])) if g["codes"].size else 1.0
        worst_same = min(worst_same, same)
        if same < min_same:
            probs.append("%s: codes identical on %.5f < %.4f (%d of %d differ)"
                         % (name, same, min_same, int(np.sum(g["codes"] != r["codes"])),
                            g["codes"].size))
        lr, lg = r["attrs"].get("lambda"), g["attrs"].get("lambda")
        if lr is None or lg is None or _rel(lr, lg) > 1e-12:
            probs.append("%s: lambda %r vs local %r" % (name, lg, lr))
        for key in ("loss", "err"):  # err: from samples, or streamed from H's rows
            a, b = r["attrs"].get(key), g["attrs"].get(key)
            rel = _rel(a, b) if a is not None and b is not None else float("inf")
            worst_loss = max(worst_loss, rel)
            if not rel <= loss_tol:
                probs.append("%s: %s %r vs local %r (rel %.2e > %.0e)" % (name, key, b, a, rel,
                                                                          loss_tol))
    return probs, worst_same, worst_loss


def main(argv=None):
    ap = drivers.base_parser(__doc__, seed=97130)
    ap.add_argument("--nps", default="1,2,3,4", help="comma-separated rank counts")
    ap.add_argument("--min-same", type=float, default=0.999)
    ap.add_argument("--loss-tol", type=float, default=1e-6)
    a = ap.parse_args(argv)
    S = drivers.Suite(a, "run_scalapack")
    if not S.exists():
        return S.finish()
    nps = [int(x) for x in a.nps.split(",") if x.strip()]
    rng = np.random.default_rng(a.seed)
    paths = {"plain": S.path("spk-problem-plain.h5"), "xq": S.path("spk-problem-xq.h5"),
             "hessian": S.path("spk-problem-hessian.h5")}
    problems.write_problem(paths["plain"], plain_layers(rng))
    problems.write_problem(paths["xq"], xq_layers(rng))
    problems.write_problem(paths["hessian"], hessian_layers(rng))
    cases = [CASES[i] for i in QUICK] if a.quick else list(CASES)

    for idx, (kind, opts) in enumerate(cases):
        bits = int(opts.split("--bits ")[1].split()[0]) if "--bits " in opts else 4
        ref_out = S.path("spk-local-%02d.h5" % idx)
        ok, cmd0, tail, dt = S.run(["layer", "--in", paths[kind], "--out", ref_out] +
                                   opts.split() + ["--factor", "local"], np_=1, out=ref_out)
        if not ok:
            S.case(False, "[%02d] %-5s %s --factor local at np 1" % (idx, kind, opts), tail,
                   [cmd0])
            continue
        ref = drivers.read_result(ref_out, bits)
        for np_ in nps:
            out = S.path("spk-scalapack-%02d-np%d.h5" % (idx, np_))
            label = "[%02d] %-5s %s --factor scalapack at np %d vs local np 1" % (idx, kind,
                                                                                 opts, np_)
            ok, cmd, tail, dt = S.run(["layer", "--in", paths[kind], "--out", out] +
                                      opts.split() + ["--factor", "scalapack"], np_=np_,
                                      out=out)
            if not ok:
                S.case(False, label, tail, [cmd0, cmd])
                continue
            probs = []
            try:
                at = drivers.check_layer._val
                import h5py
                with h5py.File(out, "r") as f:
                    root = {k: at(v) for k, v in f.attrs.items()}
                if root.get("complete") != 1:
                    probs.append("root complete=%r" % root.get("complete"))
                if root.get("nranks") != np_:
                    probs.append("root nranks=%r (want %d)" % (root.get("nranks"), np_))
                got = drivers.read_result(out, bits)
                p2, same, lrel = compare(ref, got, a.min_same, a.loss_tol)
                probs += p2
            except Exception as e:
                probs.append("cannot read %s: %s: %s" % (out, type(e).__name__, e))
                same, lrel = 0.0, float("inf")
            S.case(not probs, label + "  (%.1fs)" % dt,
                   "min same codes %.5f, max loss rel %.1e" % (same, lrel) if not probs
                   else "\n".join(probs), [cmd0, cmd])
    return S.finish()


if __name__ == "__main__":
    sys.exit(main())
