#!/usr/bin/python3
"""Oracle suite for `mpiquant layer --lambda auto` and `mpiquant study` (called by CTest).

  run_lambda_auto.py --mpiquant PATH/TO/mpiquant --np N --workdir DIR
                     [--mpirun "mpirun --oversubscribe"] [--quick] [--seed S] [--timeout 120]
                     [--auto-tol 1e-6]

1. `layer --lambda auto` (OPTQ, Qronos, stochastic OPTQ) on layers whose held-out optimum is a
   small, a middle and a large damp (problems.py kind "lambda"), checked with check_layer:
   lambda_candidates = d·mean(diag H_fit) and lambda_heldout_err equal the reference's
   (reference.lambda_auto: first floor(0.8 n) samples fit, the rest validate), lambda = the
   argmin of the reported held-out errors, the final quantization = the reference's at it.
   Per layer also: the chosen λ's held-out error <= that of the default damp 0.01.
2. `study --in P.h5 --csv OUT.csv --damps 1e-4,1e-3,1e-2,1e-1 --methods rtn,optq,qronos
   --roundings nearest,stochastic [options]`: header exactly
   layer,method,rounding,damp,lambda,err,rel_err,loss,bound_l2,err_floor,clipped,seconds,
   one row per layer × damp × method × rounding, λ = damp·mean(diag H); a few rows equal
   (1e-6 relative) the attributes of single `layer --damp d --method m --rounding r` runs.
Prints one line per case and finally `N passed, M failed`; exit status 1 if any failed.
"""
import csv
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import drivers  # noqa: E402
import problems  # noqa: E402
import reference as ref  # noqa: E402

AUTO = [("lambda", "--method optq --bits 3 --group-size 32 --asym"),
        ("lambda", "--method qronos --bits 3 --group-size 32 --asym"),
        ("mismatch", "--method qronos --bits 4 --group-size -1 --sym"),
        ("lambda", "--method optq --bits 4 --group-size 128 --sym --rounding stochastic "
                   "--seed 3"),
        ("xq", "--method optq --bits 2 --group-size -1 --asym --no-act-order")]
QUICK = [0, 1, 3]
DEFAULT_INDEX = list(ref.LAMBDA_AUTO_DAMPS).index(1e-2)

STUDY_HEADER = ["layer", "method", "rounding", "damp", "lambda", "err", "rel_err", "loss",
                "bound_l2", "err_floor", "clipped", "seconds"]
STUDY_DAMPS = [1e-4, 1e-3, 1e-2, 1e-1]
STUDY_METHODS = ["rtn", "optq", "qronos"]
STUDY_ROUNDINGS = ["nearest", "stochastic"]
STUDY_OPTS = "--bits 3 --group-size 32 --asym --seed 5"
# rows compared with single `layer` runs: (layer, method, rounding, damp)
STUDY_SPOT = [("b_lam_mid", "optq", "nearest", 1e-3),
              ("c_lam_large", "qronos", "stochastic", 1e-1),
              ("a_lam_small", "rtn", "stochastic", 1e-2),
              ("c_lam_large", "qronos", "nearest", 1e-4)]
SPOT_ATTRS = ["lambda", "err", "rel_err", "loss", "bound_l2", "err_floor", "clipped"]


def _float(s):
    s = s.strip()
    if s == "" or s.lower() in ("nan", "-nan"):
        return float("nan")
    return float(s)


def _close(a, b, tol):
    a, b = float(a), float(b)
    if np.isnan(a) or np.isnan(b):
        return np.isnan(a) and np.isnan(b)
    return abs(a - b) <= tol * max(abs(a), abs(b)) + 1e-300


def check_study(S, a, path, csv_path, cmd, prob):
    """Shape and content of the study CSV; returns the parsed rows keyed by
    (layer, method, rounding, damp)."""
    probs = []
    with open(csv_path, newline="") as f:
        rd = list(csv.reader(f))
    if not rd or [h.strip() for h in rd[0]] != STUDY_HEADER:
        S.case(False, "study CSV header", "got %r\nwant %r" % (rd[0] if rd else None,
                                                               STUDY_HEADER), [cmd])
        return None
    S.case(True, "study CSV header")
    rows = {}
    for k, r in enumerate(rd[1:]):
        if len(r) != len(STUDY_HEADER):
            probs.append("row %d has %d fields" % (k + 1, len(r)))
            continue
        try:
            key = (r[0], r[1], r[2], float(r[3]))
            vals = {h: _float(v) for h, v in zip(STUDY_HEADER[3:], r[3:])}
        except ValueError as e:
            probs.append("row %d: %s" % (k + 1, e))
            continue
        if key in rows:
            probs.append("row %d repeats %s" % (k + 1, key))
        rows[key] = vals
    want = {(n, m, rr, d) for n in prob for m in STUDY_METHODS for rr in STUDY_ROUNDINGS
            for d in STUDY_DAMPS}
    missing = sorted(want - set(rows), key=str)
    extra = sorted(set(rows) - want, key=str)
    if missing:
        probs.append("%d rows missing, e.g. %s" % (len(missing), missing[:3]))
    if extra:
        probs.append("%d unexpected rows, e.g. %s" % (len(extra), extra[:3]))
    if len(rd) - 1 != len(want):
        probs.append("%d data rows (want %d = %d layers × %d damps × %d methods × %d "
                     "roundings)" % (len(rd) - 1, len(want), len(prob), len(STUDY_DAMPS),
                                     len(STUDY_METHODS), len(STUDY_ROUNDINGS)))
    S.case(not probs, "study CSV: one row per layer × damp × method × rounding (%d rows)"
           % (len(rd) - 1), "\n".join(probs), [cmd])
    probs = []
    for (n, m, rr, d), v in rows.items():
        if n not in prob:
            continue
        H = ref.problem_matrices(prob[n])[0]
        lam = d * float(np.mean(np.diag(ref.dead_fix(prob[n]["W"], H)[1])))
        if not _close(v["lambda"], lam, 1e-6):
            probs.append("%s: lambda %.10g, want damp·mean(diag H) = %.10g"
                         % ((n, m, rr, d), v["lambda"], lam))
        for k in ("err", "rel_err", "loss", "bound_l2", "clipped", "seconds"):
            if not (np.isfinite(v[k]) and v[k] >= 0):
                probs.append("%s: %s = %r" % ((n, m, rr, d), k, v[k]))
        if m == "qronos" and not np.isfinite(v["err_floor"]):
            probs.append("%s: err_floor %r (qronos, samples given)" % ((n, m, rr, d),
                                                                      v["err_floor"]))
    S.case(not probs, "study CSV values: lambda = damp·mean(diag H), finite non-negative "
           "errors", "\n".join(probs[:12]), [cmd])
    return rows


def main(argv=None):
    ap = drivers.base_parser(__doc__)
    ap.add_argument("--auto-tol", type=float, default=1e-6)
    ap.add_argument("--min-agree", type=float, default=0.99)
    a = ap.parse_args(argv)
    S = drivers.Suite(a, "run_lambda_auto")
    if not S.exists():
        return S.finish()
    auto = [AUTO[i] for i in QUICK] if a.quick else list(AUTO)
    paths = {}
    for kind in sorted({k for k, _ in auto} | {"lambda"}):
        paths[kind] = S.path("lauto-problem-%s.h5" % kind)
        problems.make(paths[kind], kind, a.seed)

    # 1. --lambda auto
    for idx, (kind, opts0) in enumerate(auto):
        opts = opts0 + " --lambda auto"
        out = S.path("lauto-result-%02d.h5" % idx)
        ok, cmd, tail, dt = S.run(["layer", "--in", paths[kind], "--out", out] + opts.split(),
                                  out=out)
        label = "[%02d] %-8s %s" % (idx, kind, opts)
        if not ok:
            S.case(False, label + "  (%.1fs)" % dt, tail, [cmd])
            continue
        infos = {}
        bad, lines = drivers.check(paths[kind], out, opts, infos=infos, min_agree=a.min_agree,
                                   auto_tol=a.auto_tol)
        choices = ",".join("#%d" % i["auto"] for i in infos.values() if "auto" in i)
        S.case(not bad, label + "  (%.1fs)" % dt,
               drivers.summarize(lines) + "; reference choices " + choices if not bad
               else "\n".join(lines), [cmd])
        # the choice is never worse on held-out data than the default damp 0.01
        bits = int(opts.split("--bits ")[1].split()[0])
        res = drivers.read_result(out, bits)
        probs = []
        for name, d in res.items():
            at = d["attrs"]
            if "lambda_heldout_err" not in at or "lambda_candidates" not in at:
                probs.append("%s: lambda_candidates / lambda_heldout_err missing" % name)
                continue
            held = np.asarray(at["lambda_heldout_err"], dtype=float).ravel()
            cand = np.asarray(at["lambda_candidates"], dtype=float).ravel()
            if held.size != len(ref.LAMBDA_AUTO_DAMPS) or cand.size != held.size:
                probs.append("%s: %d candidates, %d held-out errors (want %d)"
                             % (name, cand.size, held.size, len(ref.LAMBDA_AUTO_DAMPS)))
                continue
            pick = int(np.argmin(np.abs(cand - float(at["lambda"]))))
            if not (cand[pick] == float(at["lambda"]) and held[pick] == held.min() and
                    held[pick] <= held[DEFAULT_INDEX]):
                probs.append("%s: lambda %.8g (held-out %.8g), default damp's held-out %.8g, "
                             "min %.8g" % (name, float(at["lambda"]), held[pick],
                                           held[DEFAULT_INDEX], held.min()))
            ratio = cand / cand[0]
            if not np.allclose(ratio, np.array(ref.LAMBDA_AUTO_DAMPS) / 1e-4, rtol=1e-9):
                probs.append("%s: candidates not in the ratios of the damps %s"
                             % (name, ref.LAMBDA_AUTO_DAMPS))
        S.case(not probs, "[%02d] chosen lambda = argmin, held-out error <= damp 0.01's" % idx,
               "\n".join(probs), [cmd])

    # 2. study
    csv_path = S.path("lauto-study.csv")
    if os.path.exists(csv_path):
        os.remove(csv_path)
    args = ["study", "--in", paths["lambda"], "--csv", csv_path,
            "--damps", ",".join("%g" % d for d in STUDY_DAMPS),
            "--methods", ",".join(STUDY_METHODS), "--roundings", ",".join(STUDY_ROUNDINGS)] + \
        STUDY_OPTS.split()
    ok, cmd, tail, dt = S.run(args)
    if not ok or not os.path.exists(csv_path):
        S.case(False, "study run  (%.1fs)" % dt, tail or "no CSV written", [cmd])
        return S.finish()
    S.case(True, "study run  (%.1fs)" % dt)
    prob = problems.read_problem(paths["lambda"])
    rows = check_study(S, a, paths["lambda"], csv_path, cmd, prob)
    if rows is None:
        return S.finish()
    spot = STUDY_SPOT[:2] if a.quick else STUDY_SPOT
    for k, (name, m, rr, d) in enumerate(spot):
        out = S.path("lauto-spot-%d.h5" % k)
        ok, cmd1, tail, dt = S.run(["layer", "--in", paths["lambda"], "--out", out, "--method",
                                    m, "--rounding", rr, "--damp", "%g" % d] +
                                   STUDY_OPTS.split(), out=out)
        label = "study row (%s, %s, %s, %g) == layer run" % (name, m, rr, d)
        if not ok:
            S.case(False, label, tail, [cmd, cmd1])
            continue
        at = drivers.read_result(out, 3)[name]["attrs"]
        row = rows.get((name, m, rr, d))
        if row is None:
            S.case(False, label, "row missing", [cmd])
            continue
        probs = []
        for k2 in SPOT_ATTRS:
            got = row[k2]
            want = at.get(k2, float("nan"))
            if k2 == "err_floor" and k2 not in at and np.isnan(got):
                continue
            if not _close(got, want, 1e-6):
                probs.append("%s: csv %r vs layer attribute %r" % (k2, got, want))
        S.case(not probs, label, "\n".join(probs), [cmd, cmd1])
    return S.finish()


if __name__ == "__main__":
    sys.exit(main())
