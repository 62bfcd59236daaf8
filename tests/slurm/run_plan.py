#!/usr/bin/python3
"""`mpiquant plan` against measured runs of the demo model (called by CTest).

  run_plan.py --mpiquant BIN --workdir DIR --root REPO [--mpirun "mpirun ..."] [--nps 1,2,3]

For OPTQ and Qronos at each rank count P: `quantize --json` at P ranks, and `plan --ranks P
--ranks-per-node P --json` (one process; the run's ranks share this node): the plan's counted peak against the run's peak_counted_bytes_per_rank,
and its resident estimate against max_resident_bytes_per_rank (maxima over ranks), each within
15%. Also: plan takes seconds; `--factor auto` turns to ScaLAPACK when --mem-per-rank is below
the replicated H of the largest layer (k·8·c², layer_plan.c's rule) at P > 1, and stays local
at one rank.
Prints `ok`/`FAIL` lines and `N passed, M failed`; exit status 1 if any failed.
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from jobcheck import Checks  # noqa: E402
from launch import subprocess_env  # noqa: E402

TOLERANCE = 0.15


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mpiquant", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("--mpirun", default="mpirun --oversubscribe")
    ap.add_argument("--nps", default="1,2,3")
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    c = Checks("plan_memory")
    env = subprocess_env()
    binp = os.path.abspath(a.mpiquant)
    model = os.path.join(a.root, "data", "demo-model")
    common = ["--nsamples", "128", "--seqlen", "256", "--group-size", "64"]

    def run(np_, args):
        cmd = shlex.split(a.mpirun) + ["-np", str(np_), binp] + args
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)

    def plan(args):
        out = os.path.join(a.workdir, "plan.json")
        t0 = time.time()
        p = run(1, ["plan", "--model", model, "--json", out] + common + args)
        took = time.time() - t0
        if p.returncode != 0:
            raise RuntimeError("plan %s: %s" % (" ".join(args), p.stderr[-1500:]))
        return json.load(open(out)), took, p.stdout

    for method in ("optq", "qronos"):
        for np_ in [int(x) for x in a.nps.split(",")]:
            rep = os.path.join(a.workdir, "run.json")
            p = run(np_, ["quantize", "--model", model, "--calib",
                          os.path.join(a.root, "data", "demo-calib.txt"), "--out",
                          os.path.join(a.workdir, "out.h5"), "--json", rep, "--quiet",
                          "--method", method] + common)
            if not c.check(p.returncode == 0, "%s at %d ranks: quantize" % (method, np_),
                           p.stderr[-1500:]):
                continue
            r = json.load(open(rep))
            pl, took, text = plan(["--ranks", str(np_), "--ranks-per-node", str(np_),
                                   "--method", method])
            mem = pl["memory_bytes_per_rank"]
            for key, measured in (("peak", max(r["peak_counted_bytes_per_rank"])),
                                  ("resident", max(r["max_resident_bytes_per_rank"]))):
                rel = mem[key] / measured - 1.0
                c.check(abs(rel) <= TOLERANCE, "%s at %d ranks: plan's %s %.1f MiB vs measured "
                        "%.1f MiB (%+.1f%%)" % (method, np_, key, mem[key] / 2**20,
                                                measured / 2**20, 100 * rel))
            c.check(took < 20, "%s at %d ranks: plan took %.1f s" % (method, np_, took), text)

    pl, _, _ = plan(["--ranks", "4"])
    c.check(pl["factor"] == "local", "demo at 4 ranks: factor auto is local", pl["factor"])
    small = int(pl["replicated_bytes"] / 2)
    pl, _, _ = plan(["--ranks", "4", "--mem-per-rank", str(small)])
    c.check(pl["factor"] == "scalapack", "--mem-per-rank below the replicated H: scalapack",
            pl["factor"])
    pl, _, text = plan(["--ranks", "1", "--mem-per-rank", str(small)])
    c.check(pl["factor"] == "local", "one rank: local whatever the budget", pl["factor"])
    c.check(pl["suggested"]["nodes"] >= 1 and "sbatch --nodes=" in text,
            "a suggested allocation with its sbatch line", text[-600:])
    return c.finish()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as e:
        print("FAIL %s" % e)
        sys.exit(1)
