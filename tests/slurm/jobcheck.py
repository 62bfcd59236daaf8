"""Plumbing of the tests/slurm drivers (not a test by itself): the result-file checks every
interruption test makes, and a handle on the private Slurm of tools/slurm-up.sh (skip when it
could not start, sbatch, job states, logs)."""
import os
import re
import subprocess
import sys
import time

import h5py

SKIP = 77  # CTest SKIP_RETURN_CODE of every test in tests/slurm


class Checks:
    """`ok`/`FAIL` lines and the closing `N passed, M failed`."""

    def __init__(self, name):
        self.name, self.npass, self.nfail = name, 0, 0

    def check(self, cond, what, detail=""):
        if cond:
            self.npass += 1
            print("ok   %s" % what, flush=True)
        else:
            self.nfail += 1
            print("FAIL %s%s" % (what, (": " + detail) if detail else ""), flush=True)
        return cond

    def finish(self):
        print("%s: %d passed, %d failed" % (self.name, self.npass, self.nfail), flush=True)
        return 1 if self.nfail else 0


def result_state(path):
    """(complete, {layer: layer_complete}) of a result file; (None, {}) when unreadable."""
    try:
        with h5py.File(path, "r") as f:
            layers = {n: int(g.attrs.get("layer_complete", 0)) for n, g in f["layers"].items()} \
                if "layers" in f else {}
            return int(f.attrs.get("complete", 0)), layers
    except (OSError, KeyError):
        return None, {}


def compare(root, a, b):
    """tools/compare_results.py A B: (identical, its last line)."""
    p = subprocess.run([sys.executable, os.path.join(root, "tools", "compare_results.py"), a, b],
                       capture_output=True, text=True)
    lines = (p.stdout + p.stderr).strip().splitlines()
    return p.returncode == 0, "; ".join(lines[-4:])


def live_pids_with(token):
    """Pids of live processes whose command line contains token (a test's unique path)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
            with open("/proc/%s/stat" % d) as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if token in cmd and state != "Z":
            out.append(int(d))
    return out


class Slurm:
    """The private Slurm of tools/slurm-up.sh DIR. Exits with SKIP (the reason printed) when
    DIR/status says it could not start."""

    def __init__(self, slurm_dir):
        status_file = os.path.join(slurm_dir, "status")
        status = open(status_file).read().strip() if os.path.exists(status_file) else \
            "skip: %s missing (the fixture test slurm_up did not run)" % status_file
        if status != "ok":
            print("SKIPPED: Slurm is not available here (%s)" % status.replace("skip: ", ""))
            sys.exit(SKIP)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_",
                                                                          "SRUN_", "SALLOC_"))}
        env["SLURM_CONF"] = os.path.join(slurm_dir, "slurm.conf")
        env["PATH"] = env.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
        self.env = env

    def run(self, args, **kw):
        return subprocess.run(args, env=kw.pop("env", self.env), capture_output=True, text=True,
                              **kw)

    def sbatch(self, args, cwd, extra_env=None):
        """Submits as a user would (sbatch --parsable ARGS from cwd); the job id."""
        env = dict(self.env, **(extra_env or {}))
        p = self.run(["sbatch", "--parsable"] + args, cwd=cwd, env=env)
        if p.returncode != 0:
            raise RuntimeError("sbatch %s: %s" % (" ".join(args), p.stderr.strip()))
        return p.stdout.strip().split(";")[0]

    def job(self, jobid):
        """scontrol's fields of the job ({} when Slurm has forgotten it)."""
        p = self.run(["scontrol", "-o", "show", "job", jobid])
        if p.returncode != 0:
            return {}
        fields = {}
        for m in re.finditer(r"(\w+)=(\S*)", p.stdout):
            fields.setdefault(m.group(1), m.group(2))
        return fields

    def wait(self, jobid, timeout, until=("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT",
                                          "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
                                          "DEADLINE", "PREEMPTED")):
        """Polls until the job's state is in until; its fields (JobState "WAIT-TIMEOUT" after
        timeout seconds: the job is then cancelled)."""
        t0 = time.time()
        while time.time() - t0 < timeout:
            j = self.job(jobid)
            if j.get("JobState") in until:
                return j
            time.sleep(0.3)
        j = self.job(jobid)
        self.run(["scancel", jobid])
        j["JobState"] = "WAIT-TIMEOUT (was %s, reason %s)" % (j.get("JobState"), j.get("Reason"))
        return j

    def log(self, job):
        path = job.get("StdOut", "")
        return open(path, errors="replace").read() if path and os.path.exists(path) else ""
