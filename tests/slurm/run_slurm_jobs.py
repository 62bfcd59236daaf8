#!/usr/bin/python3
"""The job scripts under a live one-node Slurm (tools/slurm-up.sh, CTest fixture `slurm`),
submitted with sbatch as a user would: from a folder outside the repository (the work folder),
the script named by a relative path, MQ_BIN pointing at the build under test.

  run_slurm_jobs.py --case CASE --mpiquant BIN --workdir DIR --slurm-dir S --root REPO
                    [--mpirun "mpirun --oversubscribe"]

Cases:
  demo      sbatch jobs/demo.sh (its own 2 tasks; MQ_DEMO_METHODS=optq, MQ_DEMO_BITS=4,
            MQ_DEMO_NSAMPLES=32): COMPLETED, the table with a perplexity for optq 4 bits, on 2
            ranks.
  quantize  sbatch --nodes=1 --ntasks=2 jobs/quantize.sbatch (a command line the script's
            defaults must not contradict): COMPLETED, the log names 2 ranks, OUT.h5 complete
            and identical (tools/compare_results.py) to `mpirun -np 2 mpiquant quantize`.
  layer     sbatch jobs/layer.sh P.h5 O.h5 without a task count: starts at once (no default
            that stays pending on a small node), COMPLETED, identical to a 1-rank mpirun run;
            then sbatch -n 2: the JSON report says 2 ranks.
  scaling   sbatch -n 2 jobs/scaling.sh (a small layer): rows at 1 and 2 ranks for both
            factors, the rank count as mpiquant bench itself reports it (one srun -n k step
            each).
  requeue   sbatch -n 2 jobs/quantize.sbatch; twice, once the attempt has written layers,
            `scancel --signal=USR1 --batch` (what --signal=B:USR1@300 sends before a walltime):
            each attempt stops at a layer boundary with status 5 and requeues itself, the next
            resumes; the job ends COMPLETED after 3 attempts (Restarts=2), one log appended by
            all of them, the result identical to an uninterrupted run.
  walltime  sbatch -n 2 --time=2 --signal=B:USR1@80 jobs/quantize.sbatch on a random
            checkpoint that needs ~65 s (longer than the warning allows): Slurm's own warning
            stops it, the job requeues itself and finishes resumed (2 or more attempts);
            identical to an uninterrupted run. Skipped (77) when the uninterrupted run shows
            the machine too busy for the timing (over 150 s).
Exit status 77 (skipped, the reason printed) when Slurm could not be started here.
"""
import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from jobcheck import Checks, Slurm, compare, result_state  # noqa: E402
from launch import subprocess_env  # noqa: E402

DEMO_ARGS = ["--group-size", "64", "--seqlen", "256"]


class Case:
    def __init__(self, a):
        self.a = a
        self.root = os.path.abspath(a.root)
        self.work = os.path.abspath(a.workdir)
        os.makedirs(self.work, exist_ok=True)
        self.bin = os.path.abspath(a.mpiquant)
        self.slurm = Slurm(a.slurm_dir)
        self.c = Checks("slurm_" + a.case)
        self.model = os.path.join(self.root, "data", "demo-model")
        self.calib = os.path.join(self.root, "data", "demo-calib.txt")
        self.env = {"MQ_BIN": self.bin}

    def script(self, name):
        """The job script by a path relative to the work folder (sbatch copies the script: it
        must find the repository from the submitted path)."""
        return os.path.relpath(os.path.join(self.root, "jobs", name), self.work)

    def path(self, name):
        return os.path.join(self.work, name)

    def mpirun(self, np_, args, timeout=300):
        cmd = shlex.split(self.a.mpirun) + ["-np", str(np_), self.bin] + args
        p = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True,
                           timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError("%s: exit %d: %s" % (" ".join(cmd), p.returncode, p.stderr[-2000:]))

    def reference(self, name, nsamples, np_=2, model=None, calib=None, args=DEMO_ARGS):
        ref = self.path(name)
        if os.path.exists(ref):
            os.remove(ref)
        self.mpirun(np_, ["quantize", "--model", model or self.model, "--calib",
                          calib or self.calib, "--out", ref, "--nsamples", str(nsamples),
                          "--quiet"] + args)
        return ref

    def submit(self, args, extra_env=None):
        jobid = self.slurm.sbatch(args, cwd=self.work, extra_env=dict(self.env, **(extra_env or {})))
        print("submitted job %s: sbatch %s" % (jobid, " ".join(args)), flush=True)
        return jobid

    def completed(self, job, what):
        ok = self.c.check(job.get("JobState") == "COMPLETED" and job.get("ExitCode") == "0:0",
                          "%s: job COMPLETED with exit 0" % what,
                          "state %s, exit %s" % (job.get("JobState"), job.get("ExitCode")))
        if not ok:
            print(self.slurm.log(job)[-4000:])
        return ok

    def complete_file(self, path, what):
        complete, layers = result_state(path)
        return self.c.check(complete == 1 and layers and all(v == 1 for v in layers.values()),
                            "%s: %s complete, every layer written" % (what, os.path.basename(path)),
                            "complete=%s, %d layers" % (complete, len(layers)))

    def identical(self, a, b, what):
        same, line = compare(self.root, a, b)
        self.c.check(same, "%s: identical to the uninterrupted mpirun run" % what, line)


def case_demo(k):
    out = k.path("demo")
    job = k.slurm.wait(k.submit([k.script("demo.sh")], {
        "MQ_DEMO_METHODS": "optq", "MQ_DEMO_BITS": "4", "MQ_DEMO_NSAMPLES": "32",
        "MQ_DEMO_DIR": out}), 240)
    k.completed(job, "demo.sh")
    log = k.slurm.log(job)
    k.c.check(re.search(r"^optq\s+4\s+\d+\.\d+", log, re.M) is not None,
              "demo.sh: the table has optq at 4 bits with a perplexity", log[-1500:])
    k.c.check(re.search(r"^full\s+-\s+\d+\.\d+", log, re.M) is not None,
              "demo.sh: and the full-precision perplexity")
    k.c.check(re.search(r"2 ranks", log) is not None, "demo.sh: on the allocation's 2 ranks")
    k.complete_file(os.path.join(out, "optq-4.h5"), "demo.sh")


def case_quantize(k):
    ref = k.reference("ref.h5", 64)
    out = k.path("out.h5")
    for f in (out, k.path("out.json")):  # a stale one would be resumed (or refused)
        if os.path.exists(f):
            os.remove(f)
    job = k.slurm.wait(k.submit(["--nodes=1", "--ntasks=2", k.script("quantize.sbatch"),
                                 k.model, k.calib, "out.h5", "--nsamples", "64"] + DEMO_ARGS),
                       180)
    if k.completed(job, "quantize.sbatch -N1 -n2"):
        log = k.slurm.log(job)
        k.c.check("2 ranks" in log, "quantize.sbatch: 2 ranks (the allocation's)", log[:500])
        k.c.check(os.path.exists(k.path("out.json")), "quantize.sbatch: out.json beside out.h5")
        k.c.check(job.get("StdOut", "").startswith(k.work),
                  "quantize.sbatch: the log in the submit folder", job.get("StdOut", ""))
    k.complete_file(out, "quantize.sbatch")
    k.identical(out, ref, "quantize.sbatch")


def case_layer(k):
    prob = k.path("P.h5")
    subprocess.run([sys.executable, os.path.join(k.root, "tools", "make_layer_problem.py"), prob,
                    "--dim", "64", "--ffn", "128", "--tokens", "512"], check=True,
                   capture_output=True)
    ref = k.path("ref.h5")
    if os.path.exists(ref):
        os.remove(ref)
    k.mpirun(1, ["layer", "--in", prob, "--out", ref, "--quiet"])
    jobid = k.submit([k.script("layer.sh"), "P.h5", "O1.h5", "--quiet"])
    t0 = time.time()
    started = k.slurm.wait(jobid, 30, until=("RUNNING", "COMPLETED", "FAILED", "CANCELLED"))
    k.c.check(started.get("JobState") in ("RUNNING", "COMPLETED"),
              "layer.sh: the default allocation starts at once on this node",
              "%s (reason %s) after %.0fs, NumTasks %s" % (started.get("JobState"),
                                                          started.get("Reason"), time.time() - t0,
                                                          started.get("NumTasks")))
    job = k.slurm.wait(jobid, 120)
    k.completed(job, "layer.sh (default tasks)")
    k.complete_file(k.path("O1.h5"), "layer.sh")
    k.identical(k.path("O1.h5"), ref, "layer.sh")
    job = k.slurm.wait(k.submit(["-n", "2", k.script("layer.sh"), "P.h5", "O2.h5", "--quiet"]), 120)
    k.completed(job, "layer.sh -n 2")
    try:
        nranks = json.load(open(k.path("O2.json")))["nranks"]
    except (OSError, ValueError, KeyError) as e:
        nranks = repr(e)
    k.c.check(nranks == 2, "layer.sh -n 2: the report says 2 ranks", str(nranks))


def case_scaling(k):
    job = k.slurm.wait(k.submit(["-n", "2", k.script("scaling.sh")], {
        "MQ_ROWS": "256", "MQ_COLS": "512", "MQ_TOKENS": "1024"}), 180)
    k.completed(job, "scaling.sh -n 2")
    log = k.slurm.log(job)
    rows = re.findall(r"^(local|scalapack)\s+(\d+)\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+\d+%", log, re.M)
    k.c.check(sorted(rows) == [("local", "1"), ("local", "2"), ("scalapack", "1"),
                               ("scalapack", "2")],
              "scaling.sh: one row per factor at 1 and 2 ranks (ranks as mpiquant reports them)",
              "rows %s; log: %s" % (rows, log[-1500:]))


def wait_log(k, jobid, pattern, timeout, count=1):
    """Waits until the job's log matches pattern count times; (matched, fields)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        j = k.slurm.job(jobid)
        if len(re.findall(pattern, k.slurm.log(j), re.M)) >= count:
            return True, j
        if j.get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"):
            return False, j
        time.sleep(0.2)
    return False, k.slurm.job(jobid)


def check_attempts(k, job, attempts, what, signal_no):
    log = k.slurm.log(job)
    k.c.check(job.get("Restarts") == str(attempts - 1), "%s: %d attempts (Restarts=%d)" % (
        what, attempts, attempts - 1), "Restarts=%s" % job.get("Restarts"))
    k.c.check(len(re.findall(r"^== mpiquant-quantize \d+ attempt \d+", log, re.M)) == attempts,
              "%s: every attempt appended to the one log" % what, log[-3000:])
    k.c.check(len(re.findall("interrupted by signal %d; rerun with --resume to continue" %
                             signal_no, log)) == attempts - 1,
              "%s: the error line 'interrupted by signal %d' once per interruption" % (
                  what, signal_no))
    k.c.check(len(re.findall(r"requeueing job", log)) == attempts - 1,
              "%s: the script requeued itself after each" % what)
    k.c.check(len(re.findall(r"exists \(\d+ layers\): resuming", log)) == attempts - 1,
              "%s: every later attempt resumed" % what)


def case_requeue(k):
    nsamples = 512
    ref = k.reference("ref.h5", nsamples)
    out = k.path("out.h5")
    for f in (out, k.path("out.json")):
        if os.path.exists(f):
            os.remove(f)
    jobid = k.submit(["-n", "2", "-J", "mpiquant-quantize", k.script("quantize.sbatch"),
                      k.model, k.calib, "out.h5", "--nsamples", str(nsamples)] + DEMO_ARGS)
    for attempt in (1, 2):
        # this attempt has written a few layers of its own: then the walltime warning
        ok, j = wait_log(k, jobid, r"^== mpiquant-quantize \d+ attempt %d" % attempt, 120)
        ok = ok and wait_log(k, jobid, r"layer \d+/28", 120,
                             count=len(re.findall(r"layer \d+/28", k.slurm.log(j))) + 3)[0]
        if not k.c.check(ok, "requeue: attempt %d running and writing layers" % attempt,
                         "%s: %s" % (j.get("JobState"), k.slurm.log(j)[-2000:])):
            k.slurm.run(["scancel", jobid])
            return
        p = k.slurm.run(["scancel", "--signal=USR1", "--batch", jobid])
        k.c.check(p.returncode == 0, "requeue: scancel --signal=USR1 --batch (attempt %d)" % attempt,
                  p.stderr)
        complete, layers = (None, {})
        ok, j = wait_log(k, jobid, r"requeueing job", 60, count=attempt)
        complete, layers = result_state(out)
        k.c.check(ok and complete == 0 and layers and all(v == 1 for v in layers.values()),
                  "requeue: attempt %d stopped at a layer boundary: %d whole layers, not complete"
                  % (attempt, len(layers)), "complete=%s layers=%s" % (complete, layers))
    job = k.slurm.wait(jobid, 180)
    k.completed(job, "requeue")
    check_attempts(k, job, 3, "requeue", 10)
    k.complete_file(out, "requeue")
    k.identical(out, ref, "requeue")


def case_walltime(k):
    # slurmctld checks limits every 30 s and sends the warning at the first check at or after
    # end - @ - 30 s: with --time=2 and @80 that is 10-40 s into an attempt, 80+ s before the
    # limit. The run must outlast that window while a later attempt reads the finished blocks
    # back well within its first 10 s: a few blocks whose layer engine dominates (hidden 3072,
    # 3 blocks, 256 calibration tokens; ~65 s on 2 idle cores).
    model = k.path("model")
    calib = os.path.join(model, "calib.npy")
    blocks = 3
    try:
        have = json.load(open(os.path.join(model, "config.json")))["num_hidden_layers"]
    except (OSError, ValueError, KeyError):
        have = None
    if have != blocks or not os.path.exists(calib):
        subprocess.run([sys.executable, os.path.join(k.root, "tools", "make_random_checkpoint.py"),
                        model, "--hidden", "3072", "--inter", "8192", "--heads", "24",
                        "--kv-heads", "24", "--vocab", "256", "--blocks", str(blocks),
                        "--tokens", "4096", "--tokens-out", calib], check=True, capture_output=True)
    args = ["--nsamples", "2", "--seqlen", "128"]
    t0 = time.time()
    ref = k.reference("ref.h5", 2, model=model, calib=calib, args=["--seqlen", "128"])
    took = time.time() - t0
    print("uninterrupted run: %.1f s" % took)
    if took > 150:  # the warning's 30 s window is then too early for reading blocks back
        print("SKIPPED: this machine is too busy for the walltime timing (the uninterrupted run "
              "took %.0f s; it needs under 150 s)" % took)
        sys.exit(77)
    out = k.path("out.h5")
    for f in (out, k.path("out.json"), k.path("out.stalled")):
        if os.path.exists(f):
            os.remove(f)
    jobid = k.submit(["-n", "2", "--time=2", "--signal=B:USR1@80", k.script("quantize.sbatch"),
                      model, calib, "out.h5"] + args)
    job = k.slurm.wait(jobid, 420)
    k.completed(job, "walltime")
    attempts = int(job.get("Restarts", "0")) + 1
    k.c.check(attempts >= 2, "walltime: Slurm's warning before the limit interrupted it (%d "
              "attempts)" % attempts, k.slurm.log(job)[-3000:])
    if attempts >= 2:
        check_attempts(k, job, attempts, "walltime", 10)
    k.complete_file(out, "walltime")
    k.identical(out, ref, "walltime")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", required=True, choices=["demo", "quantize", "layer", "scaling",
                                                      "requeue", "walltime"])
    ap.add_argument("--mpiquant", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--slurm-dir", required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("--mpirun", default="mpirun --oversubscribe")
    a = ap.parse_args()
    k = Case(a)
    t0 = time.time()
    try:
        globals()["case_" + a.case](k)
    except (RuntimeError, subprocess.SubprocessError) as e:
        k.c.check(False, "slurm_%s" % a.case, str(e))
    print("slurm_%s: %.1f s" % (a.case, time.time() - t0))
    return k.c.finish()


if __name__ == "__main__":
    sys.exit(main())
