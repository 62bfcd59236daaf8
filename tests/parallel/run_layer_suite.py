#!/usr/bin/python3
"""End-to-end oracle suite for `mpiquant layer` (called by CTest).

  run_layer_suite.py --mpiquant PATH/TO/mpiquant --np N --workdir DIR
                     [--mpirun "mpirun --oversubscribe"] [--quick] [--only SUBSTR]
                     [--min-agree 0.99] [--identity-tol 1e-6] [--tie-tol 1e-5]
                     [--timeout 120] [--seed S] [--extra "MPIQUANT ARGS"]

Generates structured problems (tests/lib/problems.py), runs
  <mpirun> -np N <mpiquant> layer --in P.h5 --out O.h5 <opts>
for each option combination below and checks the result with check_layer.check_result.
--extra "ARGS" (or --extra=ARGS when ARGS is one word starting with -) is appended to every mpiquant command and given to the checker's option parsing
too (the checker ignores what does not change the result, e.g. --factor scalapack, --verbose);
e.g. `--np 4 --extra "--factor scalapack"` checks the 4-rank ScaLAPACK path against numpy.
Each result must also record root attribute nranks == --np.
Prints one line per combination and finally `N passed, M failed`; exit status 1 if any failed.
--mpiquant may also be a .py file (e.g. tests/lib/fake_mpiquant.py), run with this interpreter.
"""
import os
import shlex
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import check_layer  # noqa: E402
import drivers  # noqa: E402
import problems  # noqa: E402
from launch import launch_cmd, subprocess_env  # noqa: E402

# (problem kind, options).  Each bits value, group size, sym/asym, act-order on/off, static
# groups and mse appear in several combinations; not the cartesian product.
COMBOS = [
    # RTN
    ("optq-suite", "--method rtn --bits 4 --group-size 128 --sym"),
    ("optq-suite", "--method rtn --bits 4 --group-size -1 --asym"),
    ("optq-suite", "--method rtn --bits 2 --group-size 32 --asym --mse"),
    ("optq-suite", "--method rtn --bits 3 --group-size -1 --sym --mse"),
    ("optq-suite", "--method rtn --bits 8 --group-size 128 --asym"),
    ("optq-suite", "--method rtn --bits 8 --group-size 32 --sym"),
    ("optq-suite", "--method rtn --bits 3 --group-size 32 --asym"),
    ("optq-suite", "--method rtn --bits 2 --group-size -1 --sym"),
    # OPTQ, 4 bits
    ("optq-suite", ""),                                   # all defaults
    ("optq-suite", "--method optq --bits 4 --group-size 128 --sym --no-act-order"),
    ("optq-suite", "--method optq --bits 4 --group-size -1 --asym --act-order"),
    ("optq-suite", "--method optq --bits 4 --group-size -1 --sym --no-act-order"),
    ("optq-suite", "--method optq --bits 4 --group-size 32 --asym --act-order --static-groups"),
    ("optq-suite", "--method optq --bits 4 --group-size 32 --sym --act-order"),
    ("optq-suite", "--method optq --bits 4 --group-size 128 --asym --no-act-order --mse"),
    ("optq-suite", "--method optq --bits 4 --group-size 32 --asym --no-act-order --static-groups"),
    # OPTQ, 3 bits
    ("optq-suite", "--method optq --bits 3 --group-size 128 --asym --act-order"),
    ("optq-suite", "--method optq --bits 3 --group-size 32 --sym --no-act-order"),
    ("optq-suite", "--method optq --bits 3 --group-size -1 --asym --act-order --mse"),
    ("optq-suite", "--method optq --bits 3 --group-size 32 --asym --act-order --static-groups --mse"),
    # OPTQ, 2 bits
    ("optq-suite", "--method optq --bits 2 --group-size 128 --asym --act-order"),
    ("optq-suite", "--method optq --bits 2 --group-size -1 --sym --no-act-order"),
    ("optq-suite", "--method optq --bits 2 --group-size 32 --asym --act-order"),
    ("optq-suite", "--method optq --bits 2 --group-size 32 --sym --act-order --static-groups"),
    ("optq-suite", "--method optq --bits 2 --group-size 128 --sym --act-order --mse"),
    # OPTQ, 8 bits
    ("optq-suite", "--method optq --bits 8 --group-size 128 --sym --act-order"),
    ("optq-suite", "--method optq --bits 8 --group-size -1 --asym --no-act-order"),
    ("optq-suite", "--method optq --bits 8 --group-size 32 --asym --act-order --mse"),
    # damping / λ / blocking / factorization paths
    ("optq-suite", "--method optq --bits 4 --group-size 128 --lambda 0.05"),
    ("optq-suite", "--method optq --bits 4 --group-size 128 --damp 0.1"),
    ("optq-suite", "--method optq --bits 3 --group-size 128 --asym --damp 0.001"),
    ("optq-suite", "--method optq --bits 4 --group-size 48 --asym --block-size 32"),
    ("optq-suite", "--method optq --bits 3 --group-size 32 --sym --block-size 16 --no-act-order"),
    ("optq-suite", "--method optq --bits 4 --group-size 128 --factor scalapack"),
    # X̃ (Xq) given
    ("xq", "--method optq --bits 4 --group-size 128 --sym --act-order"),
    ("xq", "--method optq --bits 3 --group-size 32 --asym --no-act-order"),
    ("xq", "--method rtn --bits 4 --group-size 128 --asym"),
    # H only
    ("hessian", "--method optq --bits 4 --group-size 128 --sym --act-order"),
    ("hessian", "--method optq --bits 2 --group-size -1 --asym --no-act-order --mse"),
    ("hessian", "--method rtn --bits 3 --group-size 32 --sym"),
    ("hessian", "--method optq --bits 4 --group-size 32 --asym --act-order --static-groups"),
]

QUICK = [0, 2, 8, 10, 12, 17, 18, 20, 25, 28, 31, 33, 34, 37, 38]


def root_nranks(path):
    """The root attribute nranks of a result file (None if absent or unreadable)."""
    import h5py
    try:
        with h5py.File(path, "r") as f:
            v = check_layer._val(f.attrs.get("nranks"))
            return None if v is None else int(v)
    except (OSError, IOError, TypeError, ValueError):
        return None


def main(argv=None):
    ap = drivers.base_parser(__doc__)
    ap.add_argument("--only", default=None, help="run combinations whose options contain this")
    ap.add_argument("--min-agree", type=float, default=0.99)
    ap.add_argument("--identity-tol", type=float, default=1e-6)
    ap.add_argument("--tie-tol", type=float, default=1e-5)
    ap.add_argument("--extra", default="", help="arguments appended to every mpiquant command "
                    "(and given to the checker)")
    a = ap.parse_args(argv)
    extra = shlex.split(a.extra)

    t_start = time.time()
    os.makedirs(a.workdir, exist_ok=True)
    mpiquant = os.path.abspath(a.mpiquant)
    if not os.path.exists(mpiquant):
        print("run_layer_suite: %s does not exist" % mpiquant)
        print("0 passed, 1 failed")
        return 1
    combos = [COMBOS[i] for i in QUICK] if a.quick else list(COMBOS)
    if a.only:
        combos = [c for c in combos if a.only in c[1]]
    paths = {}
    for kind in sorted({k for k, _ in combos}):
        paths[kind] = os.path.join(a.workdir, "problem-%s.h5" % kind)
        problems.make(paths[kind], kind, a.seed)

    env = subprocess_env()
    npass = nfail = 0
    for idx, (kind, opts) in enumerate(combos):
        out = os.path.join(a.workdir, "result-%02d.h5" % idx)
        if os.path.exists(out):
            os.remove(out)
        optlist = shlex.split(opts)
        cmd = launch_cmd(a.mpirun, a.np, mpiquant) + ["layer", "--in", paths[kind], "--out",
                                                      out] + optlist + extra
        label = "[%02d] %-10s %s" % (idx, kind, " ".join(optlist + extra) or "(defaults)")
        t0 = time.time()
        try:
            p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=a.timeout)
            rc, log = p.returncode, p.stdout.decode(errors="replace")
        except subprocess.TimeoutExpired as e:
            rc, log = "timeout", (e.stdout or b"").decode(errors="replace")
        dt = time.time() - t0
        if rc != 0:
            nfail += 1
            tail = "\n".join(log.strip().splitlines()[-8:])
            print("FAIL %s  (exit %s, %.1fs)\n  $ %s\n  %s" % (label, rc, dt, shlex.join(cmd),
                                                              tail.replace("\n", "\n  ")))
            sys.stdout.flush()
            continue
        try:
            o = check_layer.parse_quant_options(optlist, extra)
            bad, lines = check_layer.check_result(paths[kind], out, o, min_agree=a.min_agree,
                                                  identity_tol=a.identity_tol,
                                                  tie_tol=a.tie_tol)
            nr = root_nranks(out)
            if nr != a.np:
                bad += 1
                lines.append("FAIL root nranks=%r (ran on %d ranks)" % (nr, a.np))
        except SystemExit:
            bad, lines = 1, ["cannot parse options %r" % opts]
        except Exception as e:  # the oracle must report, not crash
            bad, lines = 1, ["checker exception %s: %s" % (type(e).__name__, e)]
        if bad:
            nfail += 1
            print("FAIL %s  (%.1fs)\n  $ %s" % (label, dt, shlex.join(cmd)))
            for ln in lines:
                print("  " + ln.replace("\n", "\n  "))
        else:
            npass += 1
            agrees = [float(ln.split("agree ")[1].split(",")[0]) for ln in lines
                      if "agree " in ln]
            ratios = [float(ln.split("err/ref ")[1].split(",")[0]) for ln in lines
                      if "err/ref " in ln]
            print("ok   %s  (%.1fs; min agree %.4f, max err/ref %.4f)"
                  % (label, dt, min(agrees) if agrees else float("nan"),
                     max(ratios) if ratios else float("nan")))
        sys.stdout.flush()
    print("suite time %.1fs" % (time.time() - t_start))
    print("%d passed, %d failed" % (npass, nfail))
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main())
