#!/usr/bin/python3
"""Oracle suite for `mpiquant layer --method qronos` (called by CTest).

  run_qronos_suite.py --mpiquant PATH/TO/mpiquant --np N --workdir DIR
                      [--mpirun "mpirun --oversubscribe"] [--quick] [--only SUBSTR]
                      [--min-agree 0.99] [--identity-tol 1e-6] [--tie-tol 1e-5]
                      [--timeout 120] [--seed S]

1. Qronos against reference.py (check_layer: codes, g_idx, λ, err, the identity around the
   ridge fit w*, err_floor, bound_l2, and at --lambda 0 the §5 identity err = err_floor +
   Σ_{i>=1} e_i²) across bits 2/3/4/8, groups -1/32/128, act-order on/off, static groups,
   --mse, λ options; on X̃ = X + noise layers (problems.py kind "mismatch", well conditioned
   so that --lambda 0 is safe), on X̃ = X, on H-only and H+G-only layers.
2. Mismatched layers (X̃ = X + noise): Qronos' err < OPTQ's err, every layer, at 2, 3 and 4
   bits (both methods run through mpiquant, err recomputed from the codes).
3. X̃ = X: Qronos' codes == OPTQ's on >= 99.9% of the entries of every layer (step 1 then
   rounds w_0 itself and step 2 is OPTQ's update).
Prints one line per case and finally `N passed, M failed`; exit status 1 if any failed.
--mpiquant may also be a .py file (e.g. tests/lib/fake_mpiquant.py), run with this interpreter.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import drivers  # noqa: E402
import problems  # noqa: E402
import reference as ref  # noqa: E402

COMBOS = [
    ("mismatch", "--method qronos"),                                  # 4 bits g128 sym act
    ("mismatch", "--method qronos --bits 2 --group-size -1 --asym"),
    ("mismatch", "--method qronos --bits 2 --group-size 32 --sym --no-act-order"),
    ("mismatch", "--method qronos --bits 3 --group-size 128 --asym --no-act-order"),
    ("mismatch", "--method qronos --bits 3 --group-size 32 --asym --static-groups"),
    ("mismatch", "--method qronos --bits 3 --group-size -1 --sym --mse"),
    ("mismatch", "--method qronos --bits 4 --group-size 32 --asym --static-groups"),
    ("mismatch", "--method qronos --bits 4 --group-size -1 --sym --no-act-order"),
    ("mismatch", "--method qronos --bits 8 --group-size 128 --asym"),
    ("mismatch", "--method qronos --bits 8 --group-size 32 --sym --no-act-order"),
    # λ: 0 (identity), absolute, damp; blocking and the distributed factor
    ("mismatch", "--method qronos --bits 4 --group-size 32 --asym --lambda 0"),
    ("mismatch", "--method qronos --bits 3 --group-size -1 --asym --no-act-order --lambda 0"),
    ("mismatch", "--method qronos --bits 2 --group-size 128 --sym --static-groups --lambda 0"),
    ("mismatch", "--method qronos --bits 8 --group-size -1 --asym --lambda 0"),
    ("mismatch", "--method qronos --bits 4 --group-size 128 --lambda 0.05"),
    ("mismatch", "--method qronos --bits 3 --group-size 32 --asym --damp 0.1"),
    ("mismatch", "--method qronos --bits 4 --group-size 48 --asym --block-size 32"),
    ("mismatch", "--method qronos --bits 4 --group-size 128 --factor scalapack"),
    # other inputs: X̃ given on outlier layers, X̃ = X, H only (G = H), H and G only
    ("xq", "--method qronos --bits 4 --group-size 128 --asym"),
    ("optq-suite", "--method qronos --bits 3 --group-size 32 --asym"),
    ("hessian", "--method qronos --bits 3 --group-size -1 --sym"),
    ("hg", "--method qronos --bits 4 --group-size 32 --asym"),
]
QUICK = [0, 2, 4, 8, 10, 11, 14, 17, 18, 19, 21]

# (2) Qronos beats OPTQ on mismatched layers; (3) Qronos == OPTQ when X̃ = X
BEATS = [(b, "--bits %d --group-size 32 --asym" % b) for b in (2, 3, 4)]
SAME = ["--bits 4 --group-size 128", "--bits 3 --group-size 32 --asym --no-act-order",
        "--bits 2 --group-size -1 --asym --lambda 0.01"]
SAME_MIN = 0.999


def main(argv=None):
    ap = drivers.base_parser(__doc__)
    ap.add_argument("--only", default=None, help="run cases whose options contain this")
    ap.add_argument("--min-agree", type=float, default=0.99)
    ap.add_argument("--identity-tol", type=float, default=1e-6)
    ap.add_argument("--tie-tol", type=float, default=1e-5)
    a = ap.parse_args(argv)
    S = drivers.Suite(a, "run_qronos_suite")
    if not S.exists():
        return S.finish()
    combos = [COMBOS[i] for i in QUICK] if a.quick else list(COMBOS)
    beats, same = (BEATS, SAME[:2]) if a.quick else (BEATS, SAME)
    if a.only:
        combos = [c for c in combos if a.only in c[1]]
        beats = [b for b in beats if a.only in b[1]]
        same = [s for s in same if a.only in s]
    kinds = {k for k, _ in combos} | ({"mismatch"} if beats else set()) | \
        ({"optq-suite"} if same else set())
    paths = {}
    for kind in sorted(kinds):
        paths[kind] = S.path("qronos-problem-%s.h5" % kind)
        problems.make(paths[kind], kind, a.seed)

    # (1) against the reference
    for idx, (kind, opts) in enumerate(combos):
        out = S.path("qronos-result-%02d.h5" % idx)
        ok, cmd, tail, dt = S.run(["layer", "--in", paths[kind], "--out", out] + opts.split(),
                                  out=out)
        label = "[%02d] %-10s %s" % (idx, kind, opts)
        if not ok:
            S.case(False, label + "  (%.1fs)" % dt, tail, [cmd])
            continue
        bad, lines = drivers.check(paths[kind], out, opts, min_agree=a.min_agree,
                                   identity_tol=a.identity_tol, tie_tol=a.tie_tol)
        S.case(not bad, label + "  (%.1fs)" % dt,
               drivers.summarize(lines) if not bad else "\n".join(lines), [cmd])

    # (2) Qronos' err < OPTQ's err on X̃ = X + noise
    if beats:
        prob = problems.read_problem(paths["mismatch"])
    for bits, opts in beats:
        res = {}
        cmds = []
        fail = None
        for method in ("optq", "qronos"):
            out = S.path("qronos-beats-%s-%d.h5" % (method, bits))
            ok, cmd, tail, dt = S.run(["layer", "--in", paths["mismatch"], "--out", out,
                                       "--method", method] + opts.split(), out=out)
            cmds.append(cmd)
            if not ok:
                fail = tail
                break
            res[method] = drivers.read_result(out, bits)
        label = "qronos err < optq err on X̃ = X + noise: %s" % opts
        if fail is not None:
            S.case(False, label, fail, cmds)
            continue
        worse, ratios = [], []
        for name, d in prob.items():
            e = {m: ref.objective(d["W"], d["X"], d.get("Xq"), res[m][name]["What"])[0]
                 for m in res}
            ratios.append(e["qronos"] / e["optq"])
            if not e["qronos"] < e["optq"]:
                worse.append("%s: qronos %.6g >= optq %.6g" % (name, e["qronos"], e["optq"]))
        S.case(not worse, label, "qronos/optq err %s" % ", ".join("%.3f" % r for r in ratios)
               if not worse else "\n".join(worse), cmds)

    # (3) X̃ = X: Qronos' codes == OPTQ's
    for k, opts in enumerate(same):
        res = {}
        cmds = []
        fail = None
        bits = int(opts.split("--bits ")[1].split()[0])
        for method in ("optq", "qronos"):
            out = S.path("qronos-same-%s-%d.h5" % (method, k))
            ok, cmd, tail, dt = S.run(["layer", "--in", paths["optq-suite"], "--out", out,
                                       "--method", method] + opts.split(), out=out)
            cmds.append(cmd)
            if not ok:
                fail = tail
                break
            res[method] = drivers.read_result(out, bits)
        label = "qronos codes == optq codes when X̃ = X: %s" % opts
        if fail is not None:
            S.case(False, label, fail, cmds)
            continue
        agree = {n: float(np.mean(res["qronos"][n]["codes"] == res["optq"][n]["codes"]))
                 for n in res["optq"]}
        low = {n: v for n, v in agree.items() if v < SAME_MIN}
        S.case(not low, label, "min agreement %.5f" % min(agree.values()) if not low else
               "agreement below %.3f: %s" % (SAME_MIN, ", ".join("%s %.5f" % kv
                                                                  for kv in low.items())),
               cmds)
    return S.finish()


if __name__ == "__main__":
    sys.exit(main())
