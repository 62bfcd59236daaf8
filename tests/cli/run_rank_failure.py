#!/usr/bin/python3
"""Failures that only one rank sees (called by CTest).

  run_rank_failure.py --mpiquant PATH --workdir DIR [--np 3] [--mpirun "mpirun --oversubscribe"]
                      [--timeout 60] [--max-seconds 30] [--seed S] [--quick]

In the distributed engine each rank reads only its own 256-sample chunks of X/X̃ and its own
rows of W (rows split contiguously, the first rows%P ranks one more: mq_partition).  A bad value
there is seen by one rank alone; every other rank must still leave its collectives and the run
must end cleanly.  Each case runs
  timeout 60 <mpirun> -np N <mpiquant> layer --in BAD.h5 --out O.h5 [--factor ...]
and asserts (tests/lib/error_path.judge): exit status 3; exactly one `mpiquant: error:` line on
stderr, in SPEC's format `mpiquant: error: <file>: <what is wrong>` with <file> the input file
(and, for NaNs, naming the global [row, col] of the bad entry); no MPI abort banner or crash;
no output file with complete == 1; and wall time < --max-seconds (a rank left behind in a
collective would hang until the timeout: fail).
Cases (a good layer first, so a result layer has been written before the failure):
  a. NaN in X inside the last rank's sample share only: n = N·1024, so with 256-sample chunks
     (4 per rank), or any chunk size dividing 1024, only the last rank reads samples
     n−1024 … n−1, and the NaN sits in the LAST 256-sample chunk; also Inf in X̃ there
     (Qronos), and with --factor scalapack;
  b. NaN in a W row owned by the last rank (rows = 10: at 3 ranks rows 7–9), also with
     --factor scalapack and with --method rtn;
  c. a truncated HDF5 file; a file whose last gzip-compressed chunk of X (read by the last
     rank only) is corrupt.
Prints one line per case and finally `N passed, M failed`; exit status 1 if any failed.
"""
import os
import shlex
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import drivers  # noqa: E402
import problems  # noqa: E402
from error_path import ERR_PREFIX, judge  # noqa: E402
from launch import launch_cmd, subprocess_env  # noqa: E402

CHUNK = 256   # the sample chunk (also the HDF5 chunk of the compressed case)
SPAN = 1024   # n = P·SPAN: for any sample chunk dividing SPAN the last rank reads the last SPAN


def partition(n, nparts, part):
    """src/parallel/partition.c: the first n%P parts one more.  Returns (first, count)."""
    base, extra = n // nparts, n % nparts
    count = base + (1 if part < extra else 0)
    return part * base + min(part, extra), count


def good_layer(rng):
    return problems.layer_small(rng, rows=10, cols=48, n=300)


def write(path, layers, compress=None):
    """problems.write_problem, optionally with X/Xq stored gzip-compressed in 256-row chunks."""
    import h5py
    with h5py.File(path, "w") as f:
        g = f.create_group("layers")
        for name, lay in layers.items():
            lg = g.create_group(name)
            for k in ("W", "X", "Xq", "H", "G"):
                if k not in lay:
                    continue
                if compress and k in ("X", "Xq") and name in compress:
                    lg.create_dataset(k, data=lay[k], chunks=(CHUNK, lay[k].shape[1]),
                                      compression="gzip", compression_opts=6)
                else:
                    lg.create_dataset(k, data=lay[k])


def make_cases(a, rng):
    """(label, path, extra args, expected substrings of the error line)."""
    P = a.np
    n = P * SPAN
    wd = a.workdir
    cases = []

    # a. NaN/Inf in the last rank's sample chunk only
    bad_row = n - CHUNK + 100                        # inside the last 256-sample chunk
    lay = problems.layer_mismatch(rng, rows=10, cols=48, n=n)
    del lay["Xq"]
    lay["X"][bad_row, 5] = np.nan
    p = os.path.join(wd, "fail-nan-x-last-chunk.h5")
    write(p, {"a_good": good_layer(rng), "b_bad": lay})
    cases.append(("NaN in X, last chunk only (row %d of %d)" % (bad_row, n), p, [],
                  ["[%d, 5]" % bad_row]))
    cases.append(("NaN in X, last chunk only, --factor scalapack", p,
                  ["--factor", "scalapack"], ["[%d, 5]" % bad_row]))
    lay = problems.layer_mismatch(rng, rows=10, cols=48, n=n)
    lay["Xq"][bad_row + 7, 11] = np.inf            # and not in X
    p = os.path.join(wd, "fail-inf-xq-last-chunk.h5")
    write(p, {"a_good": good_layer(rng), "b_bad": lay})
    cases.append(("Inf in Xq, last chunk only, qronos", p, ["--method", "qronos"],
                  ["[%d, 11]" % (bad_row + 7)]))

    # b. NaN in a W row of the last rank
    rows = 10
    first, count = partition(rows, P, P - 1)
    wrow = first + count // 2 if count else rows - 1
    lay = problems.layer_small(rng, rows=rows, cols=48, n=300)
    lay["W"][wrow, 17] = np.nan
    p = os.path.join(wd, "fail-nan-w-last-rank.h5")
    write(p, {"a_good": good_layer(rng), "b_bad": lay})
    own = "rows %d-%d" % (first, first + count - 1) if count else "no rows"
    cases.append(("NaN in W row %d (last rank: %s)" % (wrow, own), p, [],
                  ["[%d, 17]" % wrow]))
    cases.append(("NaN in W row %d, --factor scalapack" % wrow, p, ["--factor", "scalapack"],
                  ["[%d, 17]" % wrow]))
    cases.append(("NaN in W row %d, --method rtn" % wrow, p, ["--method", "rtn"],
                  ["[%d, 17]" % wrow]))

    # c. corrupt files
    full = os.path.join(wd, "fail-full.h5")
    write(full, {"a_good": good_layer(rng),
                 "b_layer": problems.layer_small(rng, rows=10, cols=48, n=n)})
    data = open(full, "rb").read()
    p = os.path.join(wd, "fail-truncated.h5")
    with open(p, "wb") as f:
        f.write(data[:len(data) * 2 // 3])
    cases.append(("truncated HDF5 file (2/3 of it)", p, [], []))

    p = os.path.join(wd, "fail-corrupt-chunk.h5")
    lay = problems.layer_small(rng, rows=10, cols=48, n=n)
    write(p, {"a_good": good_layer(rng), "b_bad": lay}, compress={"b_bad"})
    if corrupt_last_chunk(p, "layers/b_bad/X"):
        cases.append(("corrupt gzip chunk of X, last chunk only", p, [], []))
    return cases


def corrupt_last_chunk(path, dsname):
    """Overwrites the middle of the stored (compressed) last chunk of dsname.  Returns False if
    this h5py cannot locate chunks."""
    import h5py
    with h5py.File(path, "r") as f:
        ds = f[dsname]
        try:
            nch = ds.id.get_num_chunks()
            info = ds.id.get_chunk_info(nch - 1)
        except Exception:
            return False
        off, size = int(info.byte_offset), int(info.size)
    with open(path, "r+b") as f:
        f.seek(off + size // 3)
        f.write(bytes((k * 37 + 11) % 256 for k in range(max(16, size // 3))))
    return True


def main(argv=None):
    ap = drivers.base_parser(__doc__, seed=31)  # --quick is accepted; the suite is small
    ap.set_defaults(np=3, timeout=60)
    ap.add_argument("--max-seconds", type=float, default=30.0)
    a = ap.parse_args(argv)

    t_start = time.time()
    os.makedirs(a.workdir, exist_ok=True)
    mpiquant = os.path.abspath(a.mpiquant)
    if not os.path.exists(mpiquant):
        print("run_rank_failure: %s does not exist" % mpiquant)
        print("0 passed, 1 failed")
        return 1
    env = subprocess_env()
    rng = np.random.default_rng(a.seed)
    cases = make_cases(a, rng)
    npass = nfail = 0
    for k, (desc, path, extra, want) in enumerate(cases):
        out = os.path.join(a.workdir, "fail-out-%02d.h5" % k)
        if os.path.exists(out):
            os.remove(out)
        cmd = ["timeout", str(int(a.timeout))] + launch_cmd(a.mpirun, a.np, mpiquant) + \
            ["layer", "--in", path, "--out", out] + extra
        t0 = time.time()
        p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        dt = time.time() - t0
        so, se = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
        probs = judge(p.returncode, 3, so, se, out)
        if dt >= a.max_seconds:
            probs.append("took %.1fs (>= %.0fs: a rank waited in a collective?)"
                         % (dt, a.max_seconds))
        err = [ln for ln in se.splitlines() if ln.startswith(ERR_PREFIX)]
        if len(err) == 1:
            if not err[0].startswith(ERR_PREFIX + path + ":"):
                probs.append("error line not in SPEC's format %r" % (ERR_PREFIX + path +
                                                                     ": <what is wrong>"))
            for s in want:
                if s not in err[0]:
                    probs.append("error line does not name %r" % s)
        shown = err[0] if err else "(no error line)"
        if probs:
            nfail += 1
            print("FAIL %-48s (exit %s, %.1fs) %s\n  $ %s\n  - %s\n  stderr: %s"
                  % (desc, p.returncode, dt, shown, shlex.join(cmd), "\n  - ".join(probs),
                     se.strip().replace("\n", "\n          ")))
        else:
            npass += 1
            print("ok   %-48s (exit %d, %.1fs) %s" % (desc, p.returncode, dt, shown))
        sys.stdout.flush()
    print("suite time %.1fs" % (time.time() - t_start))
    print("%d passed, %d failed" % (npass, nfail))
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main())
