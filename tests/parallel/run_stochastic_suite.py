#!/usr/bin/python3
"""Oracle suite for `mpiquant layer --rounding stochastic` (called by CTest).

  run_stochastic_suite.py --mpiquant PATH/TO/mpiquant --np N --workdir DIR
                          [--mpirun "mpirun --oversubscribe"] [--quick] [--seed S]
                          [--compare-np 1,2,3] [--timeout 120] [--min-agree 0.99]

1. RTN/OPTQ/Qronos with stochastic rounding against reference.py, which draws the same
   Philox4x32-10 stream (key = seed, counter = (column, row, layer index)): the codes must
   agree (>= 99%, in practice exactly), plus everything check_layer checks (bound_linf
   recomputed from the file's scales; NaN for Qronos).
2. Reproducibility: the same seed gives identical qweight/scales/zeros/g_idx at --np, and at
   every rank count of --compare-np; another seed gives other codes.
3. Statistics on one file holding COPIES = 200 copies s000..s199 of one small layer, quantized
   in ONE mpiquant run.  The layer index is part of Philox' counter (as the seed is part of its
   key), so the 200 copies draw 200 independent streams: this is equivalent to 200 runs with
   200 seeds, at the cost of one launch.
   a. RTN unbiasedness: mean over the copies of the dequantized weights -> W (tests below).
   b. OPTQ (group -1, so δ and bound_l2 do not depend on the draws): mean loss <= bound_l2
      (the §6 bound holds in expectation only, not per run).
   c. ℓ∞ bound (§6, p = 0.01): ‖X̂(w_r − q_r)‖_∞ <= the per-row bound (recomputed from the
      file's scales) for every row, in >= 99% of the 200 runs; RTN (U = I) and OPTQ.
Prints one line per case and finally `N passed, M failed`; exit status 1 if any failed.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import drivers  # noqa: E402
import problems  # noqa: E402
import reference as ref  # noqa: E402
from stochastic_check import unbiasedness  # noqa: E402

SEED = 17
# (problem kind, options) checked against the reference
COMBOS = [
    ("xq", "--method rtn --bits 3 --group-size 32 --asym"),
    ("optq-suite", "--method rtn --bits 4 --group-size -1 --sym"),
    ("xq", "--method optq --bits 4 --group-size 32 --asym"),
    ("optq-suite", "--method optq --bits 3 --group-size 128 --sym --no-act-order"),
    ("optq-suite", "--method optq --bits 2 --group-size -1 --asym --static-groups"),
    ("mismatch", "--method qronos --bits 3 --group-size 32 --asym"),
    ("mismatch", "--method qronos --bits 4 --group-size -1 --sym --no-act-order"),
]
QUICK = [0, 2, 4, 5]
# reproducibility runs: (kind, options)
REPRO = [("xq", "--method rtn --bits 3 --group-size 32 --asym"),
         ("optq-suite", "--method optq --bits 3 --group-size 32 --asym"),
         ("mismatch", "--method qronos --bits 3 --group-size 32 --asym")]
BIG_SEED = (5 << 32) | 7            # exercises the key's high word
LINF_MIN = 0.99


def stoch(opts, seed=SEED):
    return "%s --rounding stochastic --seed %d" % (opts, seed)


def linf_runs(prob, res, method, opts):
    """Fraction of the copies whose every row satisfies ‖X̂(w_r − q_r)‖_∞ <= bound_r, the
    per-row §6 bound recomputed from the file's scales; also the largest ratio."""
    o = drivers.check_layer.parse_quant_options(opts.split())
    held = 0
    worst = 0.0
    for index, name in enumerate(sorted(res)):
        d = prob[name]
        Xt = d["Xq"] if "Xq" in d else d["X"]
        r = ref.quantize_problem(d, method=method, bits=o.bits, group_size=o.group_size,
                                 sym=o.sym, act_order=o.act_order,
                                 static_groups=o.static_groups, mse=o.mse, damp=0.01,
                                 rounding="stochastic", seed=o.seed, layer_index=index)
        g = res[name]
        perm = r["perm"]
        delta = g["scales"].astype(np.float64)[:, g["g_idx"].astype(np.int64)[perm]]
        U = np.eye(len(perm)) if method == "rtn" else r["U"]
        bnd = ref.linf_bound_rows(Xt[:, perm], U, delta)
        lhs = np.abs((Xt / np.sqrt(Xt.shape[0])) @ (r["W0"] - g["What"]).T).max(axis=0)
        held += bool(np.all(lhs <= bnd))
        worst = max(worst, float(np.max(lhs / bnd)))
    return held / len(res), worst


def main(argv=None):
    ap = drivers.base_parser(__doc__)
    ap.add_argument("--compare-np", default=None,
                    help="comma-separated rank counts whose results must be identical")
    ap.add_argument("--min-agree", type=float, default=0.99)
    a = ap.parse_args(argv)
    S = drivers.Suite(a, "run_stochastic_suite")
    if not S.exists():
        return S.finish()
    combos = [COMBOS[i] for i in QUICK] if a.quick else list(COMBOS)
    paths = {}
    for kind in sorted({k for k, _ in combos + REPRO} | {"copies"}):
        paths[kind] = S.path("stoch-problem-%s.h5" % kind)
        problems.make(paths[kind], kind, a.seed)

    # 1. against the reference (same Philox stream)
    base = {}
    for idx, (kind, opts) in enumerate(combos + [("xq", "--method optq --bits 3 --asym "
                                                  "--group-size 32 --seed-big")]):
        if opts.endswith("--seed-big"):
            opts = "%s --rounding stochastic --seed %d" % (opts[:-len(" --seed-big")], BIG_SEED)
        else:
            opts = stoch(opts)
        out = S.path("stoch-result-%02d.h5" % idx)
        ok, cmd, tail, dt = S.run(["layer", "--in", paths[kind], "--out", out] + opts.split(),
                                  out=out)
        label = "[%02d] %-10s %s" % (idx, kind, opts)
        if not ok:
            S.case(False, label + "  (%.1fs)" % dt, tail, [cmd])
            continue
        base[(kind, opts)] = out
        bad, lines = drivers.check(paths[kind], out, opts, min_agree=a.min_agree)
        S.case(not bad, label + "  (%.1fs)" % dt,
               drivers.summarize(lines) if not bad else "\n".join(lines), [cmd])

    # 2. reproducibility: same seed -> same bits (at --np and across --compare-np); other
    # seed -> other codes
    nps = [a.np] + ([int(x) for x in a.compare_np.split(",")] if a.compare_np else [])
    for k, (kind, opts0) in enumerate(REPRO):
        opts = stoch(opts0)
        bits = int(opts.split("--bits ")[1].split()[0])
        runs, cmds, fail = [], [], None
        for j, np_ in enumerate([a.np] + nps):
            out = S.path("stoch-repro-%d-%d.h5" % (k, j))
            ok, cmd, tail, dt = S.run(["layer", "--in", paths[kind], "--out", out] +
                                      opts.split(), np_=np_, out=out)
            cmds.append(cmd)
            if not ok:
                fail = tail
                break
            runs.append((np_, drivers.read_result(out, bits)))
        label = "same seed, same bits (np %s): %s" % (",".join(str(n) for n, _ in runs) or
                                                       "-", opts)
        if fail is not None:
            S.case(False, label, fail, cmds)
            continue
        diffs = []
        ref0 = runs[0][1]
        for np_, r in runs[1:]:
            for name in ref0:
                for ds in ("qweight", "scales", "zeros", "g_idx"):
                    if name not in r or not np.array_equal(r[name][ds], ref0[name][ds]):
                        diffs.append("np %d: %s/%s differs" % (np_, name, ds))
        S.case(not diffs, label, "\n".join(diffs[:10]), cmds)
        out = S.path("stoch-repro-%d-other.h5" % k)
        ok, cmd, tail, dt = S.run(["layer", "--in", paths[kind], "--out", out] +
                                  stoch(opts0, SEED + 1).split(), out=out)
        label = "other seed, other codes: %s" % stoch(opts0, SEED + 1)
        if not ok:
            S.case(False, label, tail, [cmd])
            continue
        other = drivers.read_result(out, bits)
        same = [n for n in ref0 if np.array_equal(other[n]["codes"], ref0[n]["codes"])]
        frac = np.mean([np.mean(other[n]["codes"] != ref0[n]["codes"]) for n in ref0])
        S.case(not same, label, "%.3f of the codes differ" % frac if not same else
               "identical codes for %s" % ", ".join(same), [cmd])

    # 3. statistics over 200 copies (= 200 independent streams, one launch each)
    prob = problems.read_problem(paths["copies"])
    stat_runs = [("rtn", "--method rtn --bits 3 --group-size -1 --asym"),
                 ("optq", "--method optq --bits 4 --group-size -1 --asym")]
    for method, opts0 in stat_runs:
        opts = stoch(opts0)
        bits = int(opts.split("--bits ")[1].split()[0])
        out = S.path("stoch-copies-%s.h5" % method)
        ok, cmd, tail, dt = S.run(["layer", "--in", paths["copies"], "--out", out] +
                                  opts.split(), out=out)
        label = "%d copies (= %d seeds), %s" % (problems.COPIES, problems.COPIES, opts)
        if not ok:
            S.case(False, label + "  (%.1fs)" % dt, tail, [cmd])
            continue
        bad, lines = drivers.check(paths["copies"], out, opts, min_agree=a.min_agree)
        S.case(not bad, label + ": all copies match the reference  (%.1fs)" % dt,
               drivers.summarize(lines) if not bad else
               "\n".join(ln for ln in lines if not ln.startswith("ok"))[:3000], [cmd])
        res = drivers.read_result(out, bits)
        if method == "rtn":
            probs_, summ = unbiasedness(prob, res, bits)
            S.case(not probs_, "RTN-stochastic unbiased: mean of %d draws -> W" % len(res),
                   summ if not probs_ else "\n".join(probs_ + [summ]), [cmd])
        else:
            loss = np.array([res[n]["attrs"]["loss"] for n in sorted(res)], dtype=float)
            bl2 = np.array([res[n]["attrs"]["bound_l2"] for n in sorted(res)], dtype=float)
            okb = bool(np.all(bl2 == bl2[0])) and float(loss.mean()) <= float(bl2[0])
            S.case(okb, "OPTQ-stochastic: mean loss over %d draws <= bound_l2" % len(res),
                   "mean loss %.6g (sd of mean %.2g), bound_l2 %.6g%s"
                   % (loss.mean(), loss.std() / np.sqrt(len(loss)), bl2[0],
                      "" if np.all(bl2 == bl2[0]) else " (bound_l2 differs between copies)"),
                   [cmd])
        frac, worst = linf_runs(prob, res, method, opts)
        S.case(frac >= LINF_MIN, "%s-stochastic: ℓ∞ bound holds in >= %.0f%% of %d draws"
               % (method.upper(), 100 * LINF_MIN, len(res)),
               "holds in %.1f%%, max ‖X̂(w−q)‖_∞ / bound %.3f" % (100 * frac, worst), [cmd])
    return S.finish()


if __name__ == "__main__":
    sys.exit(main())
