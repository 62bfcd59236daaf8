#!/usr/bin/python3
"""Walltime-safe `quantize` without Slurm (docs/SLURM.md): SIGUSR1 and SIGTERM in the middle of
a run of the demo model, at --np ranks.

  run_signals.py --np N --mpiquant BIN --workdir DIR --root REPO [--mpirun "mpirun ..."]
                 [--nsamples 256]

Reference: the same quantize uninterrupted (mpirun -np N). Each case starts a run, waits until
it has written a few layers (its progress lines), sends the signal, and checks:
  - every process of the run is gone within 15 s of the signal;
  - the status: 5 with exactly one error line `mpiquant: error: interrupted by signal S; rerun
    with --resume to continue` (S = 10, SIGUSR1, when the job script passed it on) — except SIGTERM sent to mpirun itself, which Open MPI handles
    (it signals the ranks a second later and SIGKILLs them a second after that; its status is
    its own): nonzero;
  - the file is not marked complete and every layer in it is whole (layer_complete = 1);
  - rerunning with --resume completes, bit-identical to the reference (tools/compare_results.py).
Cases: SIGUSR1 to mpirun; SIGTERM to mpirun; SIGTERM and SIGUSR1 to jobs/quantize.sbatch (its
mpirun fallback, MQ_NP=N), resumed by running the same command again.
Prints `ok`/`FAIL` lines and `N passed, M failed`; exit status 1 if any failed.
"""
import argparse
import os
import re
import shlex
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from jobcheck import Checks, compare, live_pids_with, result_state  # noqa: E402
from launch import subprocess_env  # noqa: E402

ERROR_LINE = "mpiquant: error: interrupted by signal %d; rerun with --resume to continue"
PROGRESS = re.compile(r"layer (\d+)/(\d+)")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--np", type=int, required=True)
    ap.add_argument("--mpiquant", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("--mpirun", default="mpirun --oversubscribe")
    ap.add_argument("--nsamples", type=int, default=256)
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    root, work, binp = os.path.abspath(a.root), os.path.abspath(a.workdir), os.path.abspath(a.mpiquant)
    c = Checks("signals_np%d" % a.np)
    env = subprocess_env()
    for k in list(env):
        if k.startswith(("SLURM_", "SBATCH_", "SRUN_")):
            del env[k]  # the job script must take its mpirun fallback
    qargs = ["--model", os.path.join(root, "data", "demo-model"),
             "--calib", os.path.join(root, "data", "demo-calib.txt"),
             "--nsamples", str(a.nsamples), "--seqlen", "256", "--group-size", "64"]
    mpirun = shlex.split(a.mpirun) + ["-np", str(a.np), binp, "quantize"]

    def path(name):
        return os.path.join(work, name)

    def fresh(*names):
        for n in names:
            for f in (path(n), path(n).replace(".h5", ".json")):
                if os.path.exists(f):
                    os.remove(f)

    fresh("ref.h5")
    t0 = time.time()
    p = subprocess.run(mpirun + qargs + ["--out", path("ref.h5"), "--quiet"], env=env,
                       capture_output=True, text=True, timeout=300)
    if not c.check(p.returncode == 0, "reference run (%.1f s)" % (time.time() - t0), p.stderr[-2000:]):
        return c.finish()

    def interrupt(name, cmd, sig, target, expect_status):
        """Runs cmd, signals it (target 'launcher': the process we started) after a few
        layers, checks the stop; the stderr text."""
        out = path(name + ".h5")
        fresh(name + ".h5")
        proc = subprocess.Popen(cmd(out), env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        text, sent = "", None
        for line in proc.stdout:
            text += line
            m = PROGRESS.search(line)
            if m and sent is None and int(m.group(1)) >= 4:
                os.kill(proc.pid, sig)
                sent = time.time()
                break
        try:
            rest, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rest, _ = proc.communicate()
        text += rest
        took = time.time() - sent if sent else float("nan")
        what = "%s (%s)" % (name, signal.Signals(sig).name)
        if not c.check(sent is not None, "%s: signalled after 4 layers" % what, text[-2000:]):
            return out, text
        gone = time.time() + 15 - took
        while live_pids_with(out) and time.time() < gone:
            time.sleep(0.1)
        left = live_pids_with(out)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        c.check(took < 15 and not left, "%s: every process gone %.1f s after the signal" % (what, took),
                "left: %s" % left)
        errs = [l for l in text.splitlines() if l.startswith("mpiquant: error:")]
        if expect_status == 5:
            c.check(proc.returncode == 5, "%s: exit status 5" % what, "status %s" % proc.returncode)
            # the job script passes SIGTERM on as SIGUSR1 (jobs/launch.sh)
            seen = signal.SIGUSR1 if target == "script" else sig
            c.check(errs == [ERROR_LINE % seen], "%s: the one error line" % what, "%s" % errs)
        else:
            c.check(proc.returncode != 0, "%s: nonzero status (%s, Open MPI's own)" % (
                what, proc.returncode))
        complete, layers = result_state(out)
        whole = bool(layers) and all(v == 1 for v in layers.values())
        c.check(complete == 0 and whole and len(layers) < 28,
                "%s: %d whole layers, file not marked complete" % (what, len(layers)),
                "complete=%s layers=%s" % (complete, layers))
        return out, text

    def resumed(name, out, cmd):
        p = subprocess.run(cmd(out), env=env, capture_output=True, text=True, timeout=300)
        ok = c.check(p.returncode == 0 and "read back" in p.stderr,
                     "%s: the rerun resumed and completed" % name, p.stderr[-2000:])
        if ok:
            same, line = compare(root, out, path("ref.h5"))
            c.check(same, "%s: bit-identical to the uninterrupted run" % name, line)

    direct = lambda out: mpirun + qargs + ["--out", out]  # noqa: E731
    for sig, status in ((signal.SIGUSR1, 5), (signal.SIGTERM, None)):
        name = "mpirun_%s" % signal.Signals(sig).name
        out, _ = interrupt(name, direct, sig, "launcher", status)
        resumed(name, out, lambda o: direct(o) + ["--resume"])

    script_env_np = str(a.np)
    script = lambda out: ["bash", os.path.join(root, "jobs", "quantize.sbatch"),  # noqa: E731
                          qargs[1], qargs[3], out] + qargs[4:]
    env["MQ_NP"] = script_env_np
    env["MQ_BIN"] = binp
    for sig in (signal.SIGTERM, signal.SIGUSR1):
        name = "script_%s" % signal.Signals(sig).name
        out, text = interrupt(name, script, sig, "script", 5)
        c.check("run the same command again to resume" in text,
                "%s: the script says how to resume" % name, text[-1000:])
        resumed(name, out, script)  # the same command: --resume added because OUT exists
    return c.finish()


if __name__ == "__main__":
    sys.exit(main())
