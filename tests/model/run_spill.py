#!/usr/bin/python3
"""`quantize --spill-dir` (issue 12: a run whose activations do not fit): the demo model, 128
windows of 256 tokens on 2 ranks, whose plan needs 0.11 GiB per rank, 0.10 GiB of it the
activation streams.

plain      --spill-dir without --mem-per-rank: the streams live in a file mapping there; the
           result file equals the in-memory run's bit for bit; nothing is left in the folder.
budget     --mem-per-rank 30M: refused (exit 2, one line) without --spill-dir; with it the run
           goes ahead, says so, counts a peak below the budget (--json) and gives the same
           result; --mem-per-rank 8M is refused even with --spill-dir (what is left does not
           fit either).
errors     --spill-dir that does not exist: exit 2, one line naming it, no result file.
Final line: `N passed, M failed`."""
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import drivers  # noqa: E402

MODEL = os.path.join(ROOT, "data", "demo-model")
CALIB = os.path.join(ROOT, "data", "demo-calib.txt")
SIZES = ["--nsamples", "128", "--seqlen", "256", "--bits", "3", "--group-size", "64"]


def quantize(s, out, extra):
    """(ok, command, the whole output with "exit N" first when it failed, seconds)."""
    import shlex
    import subprocess
    import time
    if os.path.exists(out):
        os.remove(out)
    cmd = drivers.launch_cmd(s.a.mpirun, 2, s.mpiquant) + [
        "quantize", "--model", MODEL, "--calib", CALIB, "--out", out] + SIZES + extra
    t0 = time.time()
    p = subprocess.run(cmd, env=s.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=s.a.timeout)
    log = p.stdout.decode(errors="replace")
    if p.returncode != 0:
        log = "exit %d: %s" % (p.returncode, log)
    return p.returncode == 0, shlex.join(cmd), log, time.time() - t0


def same(a, b):
    import h5py
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        names = sorted(fa["layers"])
        if names != sorted(fb["layers"]):
            return False
        return all(fa["layers"][n][k][()].tobytes() == fb["layers"][n][k][()].tobytes()
                   for n in names for k in ("qweight", "scales", "zeros", "g_idx"))


def error_lines(tail):
    return [ln for ln in tail.splitlines() if "mpiquant: error:" in ln]


def main():
    ap = drivers.base_parser(__doc__)
    a = ap.parse_args()
    s = drivers.Suite(a, "quantize_spill")
    if not s.exists():
        return s.finish()
    scratch = s.path("scratch")
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)
    base = s.path("memory.h5")
    ok, cmd, tail, _ = quantize(s, base, ["--quiet"])
    if not s.case(ok, "in-memory run", tail[-2000:], [cmd]):
        return s.finish()
    out = s.path("spilled.h5")
    ok, cmd, tail, _ = quantize(s, out, ["--spill-dir", scratch])
    s.case(ok and "in a file on" in tail and same(base, out) and not os.listdir(scratch),
           "plain: --spill-dir: streams in a file, same result, nothing left behind",
           tail[-2000:] if not ok else "%d files left" % len(os.listdir(scratch)), [cmd])
    out = s.path("refused.h5")
    ok, cmd, tail, _ = quantize(s, out, ["--mem-per-rank", "30M", "--quiet"])
    s.case(not ok and "exit 2" in tail and len(error_lines(tail)) == 1 and
           not os.path.exists(out), "budget: 30M without --spill-dir refused (exit 2)",
           "\n".join(error_lines(tail)) or tail[-2000:], [cmd])
    out, rep = s.path("budget.h5"), s.path("budget.json")
    ok, cmd, tail, _ = quantize(s, out, ["--mem-per-rank", "30M", "--spill-dir", scratch,
                                         "--json", rep])
    peak = max(json.load(open(rep))["peak_counted_bytes_per_rank"]) if ok else None
    s.case(ok and "they go to --spill-dir" in tail and peak is not None and
           peak <= 30 * 1048576 and same(base, out),
           "budget: 30M with --spill-dir runs, counted peak %s <= budget, same result" % peak,
           tail[-2000:], [cmd])
    out = s.path("too_small.h5")
    ok, cmd, tail, _ = quantize(s, out, ["--mem-per-rank", "8M", "--spill-dir", scratch,
                                         "--quiet"])
    s.case(not ok and "exit 2" in tail and len(error_lines(tail)) == 1,
           "budget: 8M refused even with --spill-dir",
           "\n".join(error_lines(tail)) or tail[-2000:], [cmd])
    out = s.path("nodir.h5")
    ok, cmd, tail, _ = quantize(s, out, ["--spill-dir", s.path("no/such/dir"), "--quiet"])
    lines = error_lines(tail)
    s.case(not ok and "exit 2" in tail and len(lines) == 1 and "--spill-dir" in lines[0] and
           not os.path.exists(out), "errors: a missing --spill-dir: exit 2, one line, no file",
           "\n".join(lines) or tail[-2000:], [cmd])
    return s.finish()


if __name__ == "__main__":
    sys.exit(main())
