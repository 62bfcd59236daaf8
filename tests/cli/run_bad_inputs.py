#!/usr/bin/python3
"""Error-path suite for `mpiquant layer` (called by CTest).

  run_bad_inputs.py --mpiquant PATH --np N --workdir DIR [--mpirun "mpirun --oversubscribe"]
                    [--timeout 60] [--seed S]

For each bad input file (problems.BAD_KINDS) and each bad option, runs
  timeout 60 <mpirun> -np N <mpiquant> layer ...
and asserts (tests/lib/error_path.judge): exit status 3 (bad file) or 2 (bad option);
stderr+stdout hold exactly one line starting with "mpiquant: error: "; no MPI_Abort (its
banner, or any line that is not the error line, a "[mpiquant]" log line, or mpirun's plain
"process returned a non-zero exit code" notice, fails the case); no output file with root
attribute complete == 1.
Prints one line per case and finally `N passed, M failed`; exit status 1 if any failed.
"""
import os
import shlex
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import drivers  # noqa: E402
import problems  # noqa: E402
from error_path import ERR_PREFIX, judge  # noqa: E402
from launch import launch_cmd, subprocess_env  # noqa: E402

BAD_OPTIONS = [
    ("--bits 1", ["--bits", "1"]),
    ("--bits 9", ["--bits", "9"]),
    ("--group-size 0", ["--group-size", "0"]),
    ("--group-size -2", ["--group-size", "-2"]),
    ("--method foo", ["--method", "foo"]),
    ("unknown option", ["--no-such-option"]),
    ("missing --in", None),
]


def main(argv=None):
    ap = drivers.base_parser(__doc__, seed=7)  # --quick is accepted; the suite is small
    ap.set_defaults(timeout=60)
    a = ap.parse_args(argv)

    t_start = time.time()
    os.makedirs(a.workdir, exist_ok=True)
    mpiquant = os.path.abspath(a.mpiquant)
    if not os.path.exists(mpiquant):
        print("run_bad_inputs: %s does not exist" % mpiquant)
        print("0 passed, 1 failed")
        return 1
    env = subprocess_env()
    base = ["timeout", str(int(a.timeout))] + launch_cmd(a.mpirun, a.np, mpiquant)
    good = os.path.join(a.workdir, "good.h5")
    problems.make(good, "small", a.seed)

    cases = []
    for kind, (desc, _) in problems.BAD_KINDS.items():
        path = os.path.join(a.workdir, "bad-%s.h5" % kind)
        problems.make(path, kind, a.seed)
        out = os.path.join(a.workdir, "out-bad-%s.h5" % kind)
        cases.append(("file  " + desc, ["layer", "--in", path, "--out", out], out, 3))
    for desc, opt in BAD_OPTIONS:
        out = os.path.join(a.workdir, "out-opt-%d.h5" % len(cases))
        if opt is None:
            args = ["layer", "--out", out]
        else:
            args = ["layer", "--in", good, "--out", out] + opt
        cases.append(("option " + desc, args, out, 2))

    npass = nfail = 0
    for desc, args, out, want in cases:
        if os.path.exists(out):
            os.remove(out)
        cmd = base + args
        t0 = time.time()
        p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        so, se = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
        probs = judge(p.returncode, want, so, se, out)
        err = [ln for ln in se.splitlines() if ln.startswith(ERR_PREFIX)]
        shown = err[0] if err else "(no error line)"
        if probs:
            nfail += 1
            print("FAIL %-34s (exit %s, %.1fs) %s\n  $ %s\n  - %s\n  stderr: %s"
                  % (desc, p.returncode, time.time() - t0, shown, shlex.join(cmd),
                     "\n  - ".join(probs), se.strip().replace("\n", "\n          ")))
        else:
            npass += 1
            print("ok   %-34s (exit %d, %.1fs) %s" % (desc, p.returncode, time.time() - t0,
                                                     shown))
        sys.stdout.flush()
    print("suite time %.1fs" % (time.time() - t_start))
    print("%d passed, %d failed" % (npass, nfail))
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main())
