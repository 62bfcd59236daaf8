#!/usr/bin/python3
"""Rank-count identity of `mpiquant layer --factor local` (called by CTest).

  run_rank_identity.py --mpiquant PATH/TO/mpiquant --workdir DIR [--nps 1,2,3,4]
                       [--mpirun "mpirun --oversubscribe"] [--quick] [--seed S] [--timeout 120]

The distributed engine splits the calibration samples across ranks in fixed 1024-sample chunks
whose H (and G) contributions are summed exactly, and the output rows in whole blocks of 128 rows
(MQ_ROW_BLOCK; the first blocks%P ranks one block more).  With `--factor local` every rank factors the same, bit-identical H, so
the result must not depend on the rank count at all.  For each case below the same command runs
at every rank count of --nps and asserts:
  - exit 0; root attributes complete == 1 and nranks == N;
  - qweight, scales, zeros, g_idx of every layer identical bit for bit (dtype, shape, bytes)
    to those of the first rank count;
  - the layer attribute lambda identical (it comes from the replicated H), and loss / err
    within 1e-9 relative (sums over ranks' rows, so only their summation order differs).
Problems: 300 and 400 rows (3 and 4 row blocks, the last one short: uneven row splits), n =
2600 / 700 / 520 / 300 (several 1024-sample chunks, a short last chunk, ranks without chunks),
and 2- and 7-row layers (one block: the other ranks own no rows); cols 130 > the block size 128 (block-to-block corrections); one file with X only, one with X and X̃ (Xq, Qronos).
Methods OPTQ and Qronos (Qronos on the Xq file), nearest and stochastic rounding (--seed), and
--lambda auto (its 80/20 split cuts a chunk), and --layer-groups 2 and 3 (layers computed by
groups of ranks at the same time, then written by all; capped at the rank count).
Prints one line per case and finally `N passed, M failed`; exit status 1 if any failed.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import drivers  # noqa: E402
import problems  # noqa: E402

DATASETS = ("qweight", "scales", "zeros", "g_idx")
SUM_TOL = 1e-9


def plain_layers(rng):
    """X only.  rows 300 / 400 / 2 / 7; n 2600 (1024-sample chunks: 2 full + 552), 520, 300,
    700 (one short chunk each)."""
    return {
        "a_outlier_300x96": problems.layer_outlier(rng, rows=300, cols=96, n=2600),
        "b_corr_400x130_f64": problems.layer_correlated(rng, rows=400, cols=130, n=520,
                                                       dtype=np.float64),
        "c_two_rows": problems.layer_small(rng, rows=2, cols=48, n=300),
        "d_dead_7x80": problems.layer_dead(rng, rows=7, cols=80, n=700, dtype=np.float32),
    }


def xq_layers(rng):
    """X and X̃ = X + noise (Qronos' case; OPTQ builds H from X̃)."""
    return {
        "a_mm_300x64": problems.layer_mismatch(rng, rows=300, cols=64, n=2600),
        "b_mm_400x100_f64": problems.layer_mismatch(rng, rows=400, cols=100, n=520,
                                                   dtype=np.float64, noise=0.1, dead=2),
        "c_mm_two_rows": problems.layer_mismatch(rng, rows=2, cols=40, n=300),
    }


# (problem file, options); every case adds --factor local
CASES = [
    ("plain", "--method optq"),
    ("plain", "--method optq --bits 3 --group-size 32 --asym --no-act-order"),
    ("plain", "--method optq --bits 4 --group-size 32 --asym --rounding stochastic --seed 11"),
    ("xq", "--method optq --bits 3 --group-size -1 --sym"),
    ("xq", "--method qronos --bits 3 --group-size 32 --asym"),
    ("xq", "--method qronos --bits 4 --group-size -1 --sym --rounding stochastic --seed 5"),
    ("xq", "--method qronos --bits 2 --group-size 32 --asym --static-groups --lambda 0"),
    ("plain", "--method rtn --bits 3 --group-size 32 --rounding stochastic --seed 3"),
    ("xq", "--method qronos --bits 4 --group-size 32 --asym --lambda auto"),
    ("plain", "--method optq --bits 4 --group-size 128 --lambda auto --rounding stochastic "
              "--seed 2"),
    ("plain", "--method optq --bits 3 --group-size 32 --layer-groups 2"),
    ("xq", "--method qronos --bits 3 --group-size 32 --rounding stochastic --seed 4 "
           "--layer-groups 3"),
]
QUICK = [0, 2, 4, 5, 10, 11]


def _rel(a, b):
    a, b = float(a), float(b)
    if a == b or (np.isnan(a) and np.isnan(b)):
        return 0.0
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def root_attrs(path):
    import h5py
    with h5py.File(path, "r") as f:
        return {k: drivers.check_layer._val(v) for k, v in f.attrs.items()}


def compare(base, other, np_):
    """Differences of `other` (at np_ ranks) from `base`: list of strings."""
    diffs = []
    if sorted(base) != sorted(other):
        return ["np %d: layers %s vs %s" % (np_, sorted(other), sorted(base))]
    for name in sorted(base):
        b, o = base[name], other[name]
        for ds in DATASETS:
            x, y = b[ds], o[ds]
            if x.dtype != y.dtype or x.shape != y.shape:
                diffs.append("np %d: %s/%s is %s%s, want %s%s" % (np_, name, ds, y.dtype,
                                                                y.shape, x.dtype, x.shape))
            elif x.tobytes() != y.tobytes():
                nd = int(np.sum(x != y))
                where = np.argwhere(x != y)
                diffs.append("np %d: %s/%s differs in %d entries (first at %s)"
                             % (np_, name, ds, nd, tuple(int(v) for v in where[0])
                                if len(where) else "?"))
        la, lb = b["attrs"].get("lambda"), o["attrs"].get("lambda")
        if la is None or lb is None or float(la) != float(lb):
            diffs.append("np %d: %s lambda %r, want %r (bit-identical H)" % (np_, name, lb, la))
        for k in ("loss", "err"):
            va, vb = b["attrs"].get(k), o["attrs"].get(k)
            if va is None or vb is None or _rel(va, vb) > SUM_TOL:
                diffs.append("np %d: %s %s %r vs %r (rel > %.0e)" % (np_, name, k, vb, va,
                                                                     SUM_TOL))
    return diffs


def main(argv=None):
    ap = drivers.base_parser(__doc__, seed=4242)
    ap.add_argument("--nps", default="1,2,3,4", help="comma-separated rank counts")
    a = ap.parse_args(argv)
    S = drivers.Suite(a, "run_rank_identity")
    if not S.exists():
        return S.finish()
    nps = [int(x) for x in a.nps.split(",") if x.strip()]
    rng = np.random.default_rng(a.seed)
    paths = {"plain": S.path("rid-problem-plain.h5"), "xq": S.path("rid-problem-xq.h5")}
    problems.write_problem(paths["plain"], plain_layers(rng))
    problems.write_problem(paths["xq"], xq_layers(rng))
    cases = [CASES[i] for i in QUICK] if a.quick else list(CASES)

    for idx, (kind, opts0) in enumerate(cases):
        opts = opts0 + " --factor local"
        bits = int(opts.split("--bits ")[1].split()[0]) if "--bits " in opts else 4
        label = "[%02d] %-5s %s at np %s" % (idx, kind, opts, ",".join(map(str, nps)))
        runs, cmds, probs = [], [], []
        for np_ in nps:
            out = S.path("rid-result-%02d-np%d.h5" % (idx, np_))
            ok, cmd, tail, dt = S.run(["layer", "--in", paths[kind], "--out", out] +
                                      opts.split(), np_=np_, out=out)
            cmds.append(cmd)
            if not ok:
                probs.append("np %d: %s" % (np_, tail))
                continue
            try:
                at = root_attrs(out)
                if at.get("complete") != 1:
                    probs.append("np %d: root complete=%r" % (np_, at.get("complete")))
                if at.get("nranks") != np_:
                    probs.append("np %d: root nranks=%r (want %d)" % (np_, at.get("nranks"),
                                                                      np_))
                runs.append((np_, drivers.read_result(out, bits)))
            except Exception as e:
                probs.append("np %d: cannot read %s: %s: %s" % (np_, out, type(e).__name__, e))
        if runs:
            base_np, base = runs[0]
            for np_, r in runs[1:]:
                probs += compare(base, r, np_)
            detail = "%d layers, vs np %d" % (len(base), base_np)
        else:
            detail = ""
        S.case(not probs, label, detail if not probs else "\n".join(probs[:12]), cmds)
    return S.finish()


if __name__ == "__main__":
    sys.exit(main())
