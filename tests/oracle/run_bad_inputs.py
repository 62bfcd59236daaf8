#!/usr/bin/python3
"""Error-path suite for `mpiquant layer` (called by CTest).

  run_bad_inputs.py --mpiquant PATH --np N --workdir DIR [--mpirun "mpirun --oversubscribe"]

For each bad input file (problems.BAD_KINDS) and each bad option, runs
  timeout 60 <mpirun> -np N <mpiquant> layer ...
and asserts: exit status 3 (bad file) or 2 (bad option); stderr+stdout hold exactly one line
starting with "mpiquant: error: "; no MPI_Abort (its banner, or any line that is not the
error line, a "[mpiquant]" log line, or mpirun's plain "process returned a non-zero exit code"
notice, fails the case); no output file with root attribute complete == 1.
Prints one line per case and finally `N passed, M failed`; exit status 1 if any failed.
"""
import argparse
import os
import re
import shlex
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import problems  # noqa: E402
from run_layer_suite import launch_cmd, subprocess_env  # noqa: E402

ERR_PREFIX = "mpiquant: error: "

# mpirun's notice when a rank exits non-zero after a clean MPI_Finalize (unavoidable, allowed)
BENIGN = [
    re.compile(r"^-+$"),
    re.compile(r"^Primary job\s+terminated normally, but \d+ process(es)? returned$"),
    re.compile(r"^a non-zero exit code\.( Per user-direction, the job has been aborted\.)?$"),
    re.compile(r"^mpirun detected that one or more processes exited with non-zero status, "
               r"thus causing$"),
    re.compile(r"^the job to be terminated\. The first process to do so was:$"),
    re.compile(r"^Process name: \[\[\d+,\d+\],\d+\]$"),
    re.compile(r"^Exit code:\s+\d+$"),
]
# signs of MPI_Abort / crashes (always a failure, even if the rest looks right)
ABORT = re.compile(r"MPI_ABORT|MPI_Abort|MPI_COMM_WORLD.*errorcode|NOTE: invoking MPI_ABORT|"
                   r"Signal:|Segmentation fault|Aborted|core dumped|exited on signal|"
                   r"HDF5-DIAG|AddressSanitizer|runtime error:|ORTE_ERROR_LOG|PMIX_ERROR")

BAD_OPTIONS = [
    ("--bits 1", ["--bits", "1"]),
    ("--bits 9", ["--bits", "9"]),
    ("--group-size 0", ["--group-size", "0"]),
    ("--group-size -2", ["--group-size", "-2"]),
    ("--method foo", ["--method", "foo"]),
    ("unknown option", ["--no-such-option"]),
    ("missing --in", None),
]


def complete_output(path):
    """True if path is an HDF5 file whose root attribute complete == 1."""
    if not os.path.exists(path):
        return False
    try:
        import h5py
        with h5py.File(path, "r") as f:
            v = f.attrs.get("complete")
            return v is not None and int(v) == 1
    except Exception:
        return False


def judge(rc, want_rc, stdout, stderr, out):
    """Returns a list of problems (empty = pass)."""
    probs = []
    if rc == 124:
        probs.append("timed out (hang?)")
    elif rc != want_rc:
        probs.append("exit status %s (want %d)" % (rc, want_rc))
    err_lines = [ln for ln in stderr.splitlines() if ln.startswith(ERR_PREFIX)]
    out_errs = [ln for ln in stdout.splitlines() if ln.startswith(ERR_PREFIX)]
    if len(err_lines) != 1:
        probs.append("%d stderr lines start with %r (want exactly 1)" % (len(err_lines),
                                                                         ERR_PREFIX))
    if out_errs:
        probs.append("error line(s) on stdout")
    elif err_lines and len(err_lines[0]) <= len(ERR_PREFIX) + 3:
        probs.append("error message empty")
    text = stdout + "\n" + stderr
    m = ABORT.search(text)
    if m:
        probs.append("abnormal termination (%r in output: MPI_Abort/crash instead of a clean "
                     "exit)" % m.group(0))
    other = []
    for ln in stderr.splitlines():
        s = ln.strip()
        if not s or ln.startswith(ERR_PREFIX) or s.startswith("[mpiquant]"):
            continue
        if any(p.match(s) for p in BENIGN):
            continue
        other.append(s)
    if other:
        probs.append("unexpected stderr: %s" % " | ".join(other[:4]))
    if complete_output(out):
        probs.append("output %s exists with complete=1" % out)
    return probs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mpiquant", required=True)
    ap.add_argument("--np", type=int, default=2)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--mpirun", default="mpirun --oversubscribe")
    ap.add_argument("--timeout", type=int, default=60)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args(argv)

    t_start = time.time()
    os.makedirs(a.workdir, exist_ok=True)
    mpiquant = os.path.abspath(a.mpiquant)
    if not os.path.exists(mpiquant):
        print("run_bad_inputs: %s does not exist" % mpiquant)
        print("0 passed, 1 failed")
        return 1
    env = subprocess_env()
    base = ["timeout", str(a.timeout)] + launch_cmd(a.mpirun, a.np, mpiquant)
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
