#!/usr/bin/python3
"""A run that says where it is and keeps its report (issue 12): `quantize` of the demo model at
--np ranks (called by CTest).

  run_progress.py --mpiquant BIN --workdir DIR --root REPO [--mpirun "mpirun ..."] [--np 2]

Cases:
  progress   --progress-interval 0.05: progress lines `block B/N [layer]: PHASE P%; run R% of F
             flops, E elapsed, ETA T` appear, each at least the interval after the line before it
             (rate-limited), with phase percentages in [0, 100], run percentages that never go
             down, and from 25% of the run on an estimated end (line time + ETA) within a factor 3
             of the real one. Meanwhile the --json report, polled, is always absent or whole
             (written atomically) and grows layer by layer; at the end it is complete with every
             layer's plan (factor, h_home, errors) and the run's model, nsamples, seqlen, times.
  env        MQ_PROGRESS_INTERVAL=0.05 instead of the option: progress lines; with neither, the
             default interval (20 s) prints none in a run of seconds.
  interrupt  SIGUSR1 to mpirun after 6 layers: status 5, and the report parses, says
             "complete": false and lists exactly the layers the result file holds whole; the
             --resume run completes it, and its report lists every layer (those of the
             interrupted run carried over, marked "earlier_run").
  memory     --mem-per-rank between the plan's peak at 2·np and at np ranks (`mpiquant plan
             --json`, the same formulas): status 2 before anything is created, one error line with
             the plan's peak and the budget in GiB and the suggestion of 2·np ranks; a budget 5%
             above the peak runs.
Prints `ok`/`FAIL` lines and `N passed, M failed`; exit status 1 if any failed.
"""
import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from jobcheck import Checks, result_state  # noqa: E402
from launch import subprocess_env  # noqa: E402

LINE = re.compile(r"^\[mpiquant\]\s+([\d.]+)s (.*)$")
PROGRESS = re.compile(r"^(block \d+/\d+(?: [\w.]+)?): (forward passes|sums|factor|sweep) (\d+)%; "
                      r"run ([\d.]+)% of (\S+) flops, (\S+) elapsed, ETA (\S+)$")
LAYER = re.compile(r"layer (\d+)/(\d+)")
DONE = re.compile(r"^done: \d+ layers in ([\d.]+)s")


# Short enough for several lines in the demo's 2-3 s run on an idle machine (the log's
# timestamps have 0.01 s resolution).
INTERVAL = 0.05

def seconds(text):
    """'45s', '5m10s', '2h05m' -> seconds; None for 'unknown'."""
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    if not m or text == "":
        return None
    h, mi, s = (int(x) if x else 0 for x in m.groups())
    return 3600 * h + 60 * mi + s


def parse(stderr):
    """[(t, message)] of the log lines, and the progress lines among them as dicts."""
    lines, prog = [], []
    for raw in stderr.splitlines():
        m = LINE.match(raw)
        if not m:
            continue
        t, msg = float(m.group(1)), m.group(2)
        lines.append((t, msg))
        p = PROGRESS.match(msg)
        if p:
            prog.append(dict(t=t, index=len(lines) - 1, where=p.group(1), phase=p.group(2),
                             pct=int(p.group(3)), run=float(p.group(4)), eta=seconds(p.group(7))))
    return lines, prog


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mpiquant", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("--mpirun", default="mpirun --oversubscribe")
    ap.add_argument("--np", type=int, default=2)
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    c = Checks("progress_report")
    env = subprocess_env()
    env.pop("MQ_PROGRESS_INTERVAL", None)
    binp = os.path.abspath(a.mpiquant)
    model = os.path.join(a.root, "data", "demo-model")
    sizes = ["--nsamples", "128", "--seqlen", "256", "--group-size", "64"]
    qargs = ["quantize", "--model", model, "--calib",
             os.path.join(a.root, "data", "demo-calib.txt")] + sizes

    def path(name):
        p = os.path.join(a.workdir, name)
        for f in (p, p + ".lock"):
            if os.path.exists(f):
                os.remove(f)
        return p

    def cmd(np_, args):
        return shlex.split(a.mpirun) + ["-np", str(np_), binp] + args

    # ---- progress: lines, rate limit, monotone run %, ETA; the report polled while it runs
    out, rep = path("progress.h5"), path("progress.json")
    t0 = time.time()
    proc = subprocess.Popen(cmd(a.np, qargs + ["--out", out, "--json", rep,
                                               "--progress-interval", str(INTERVAL)]),
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen, torn, shrank = [], [], False
    err_text = []
    reader = threading.Thread(target=lambda: err_text.append(proc.stderr.read()))
    reader.start()
    while proc.poll() is None:
        try:
            with open(rep) as fh:
                text = fh.read()
            try:
                n = len(json.loads(text)["layers"])
                shrank = shrank or bool(seen and n < seen[-1])
                seen.append(n)
            except ValueError:
                torn.append(len(text))
        except FileNotFoundError:
            pass
        time.sleep(0.02)
    reader.join()
    stderr = err_text[0] if err_text else ""
    if not c.check(proc.returncode == 0, "progress: quantize at %d ranks (%.1f s)" % (
            a.np, time.time() - t0), stderr[-2000:]):
        return c.finish()
    lines, prog = parse(stderr)
    c.check(len(prog) >= 5, "progress: %d progress lines" % len(prog), stderr[-1500:])
    phases = {p["phase"] for p in prog}
    c.check({"forward passes", "sums"} <= phases, "progress: phases seen: %s" % sorted(phases))
    gaps = [p["t"] - lines[p["index"] - 1][0] for p in prog if p["index"] > 0]
    c.check(all(g >= INTERVAL - 0.011 for g in gaps), "progress: each line >= %g s after the one "
            "before it (smallest gap %.2f s)" % (INTERVAL, min(gaps or [0])))
    c.check(all(0 <= p["pct"] <= 100 for p in prog), "progress: phase percentages in [0, 100]")
    runs = [p["run"] for p in prog]
    c.check(all(x <= y for x, y in zip(runs, runs[1:])) and runs and runs[-1] > 50,
            "progress: run percentages never go down (%s … %s)" % (runs[:1], runs[-1:]), str(runs))
    done = [float(DONE.match(m).group(1)) for _, m in lines if DONE.match(m)]
    end = lines[-1][0] if lines else 0.0
    ratios = [(p["t"] + p["eta"]) / end for p in prog if p["run"] >= 25 and p["eta"] is not None]
    c.check(done and ratios and all(1 / 3 <= r <= 3 for r in ratios),
            "progress: estimated end / real end from 25%% of the run on: %.2f … %.2f (%d lines)"
            % (min(ratios or [0]), max(ratios or [0]), len(ratios)), str(ratios))
    c.check(not torn and not shrank and len(seen) > 0,
            "report while running: %d reads, always whole (torn: %d), never fewer layers"
            % (len(seen), len(torn)), "layer counts read: %s" % [
                n for i, n in enumerate(seen) if i == 0 or n != seen[i - 1]])
    r = json.load(open(rep))
    lay = r["layers"]
    plans_ok = all(set(l["plan"]) == {"factor", "h_home", "errors"} and
                   l["plan"]["factor"] == "local" and l["plan"]["errors"] == "caller" and
                   l["seconds"] >= 0 for l in lay)
    ends = [l["run_seconds_at_end"] for l in lay]
    c.check(r["complete"] is True and len(lay) == 28 and r["layers_written"] == 28 and plans_ok
            and ends == sorted(ends),
            "report: complete, 28 layers, each with its plan (local, errors by the caller), "
            "seconds and the run's time at its end")
    c.check(r["model"] == model and r["nsamples"] == 128 and r["seqlen"] == 256 and
            r["seconds_total"] > 0 and 0 < r["seconds_forward_max_over_ranks"] <= r["seconds_total"]
            and r["seconds_elapsed"] >= r["seconds_total"],
            "report: model, nsamples, seqlen, wall and forward-pass seconds",
            json.dumps({k: v for k, v in r.items() if k != "layers"})[:800])

    # ---- env: MQ_PROGRESS_INTERVAL; the default interval prints nothing in a short run
    def quiet_count(extra_env, args):
        e = dict(env, **extra_env)
        p = subprocess.run(cmd(a.np, qargs + args), env=e, capture_output=True, text=True,
                           timeout=300)
        return p.returncode, len(parse(p.stderr)[1]), p.stderr

    rc, n, text = quiet_count({"MQ_PROGRESS_INTERVAL": str(INTERVAL)}, ["--out", path("env.h5")])
    c.check(rc == 0 and n >= 5, "env: MQ_PROGRESS_INTERVAL=%g: %d progress lines" % (INTERVAL, n), text[-1000:])
    rc, n, text = quiet_count({}, ["--out", path("default.h5")])
    c.check(rc == 0 and n == 0, "env: the default interval (20 s): %d progress lines in a run of "
            "seconds" % n, text[-1000:])

    # ---- interrupt: the report of an interrupted run lists exactly its whole layers
    out, rep = path("int.h5"), path("int.json")
    proc = subprocess.Popen(cmd(a.np, qargs + ["--out", out, "--json", rep]), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    text = ""
    for line in proc.stdout:
        text += line
        m = LAYER.search(line)
        if m and int(m.group(1)) >= 6:
            os.kill(proc.pid, signal.SIGUSR1)
            break
    rest, _ = proc.communicate(timeout=120)
    text += rest
    c.check(proc.returncode == 5, "interrupt: status 5", "status %s: %s" % (proc.returncode, text[-1500:]))
    complete, layers = result_state(out)
    whole = sorted(k for k, v in layers.items() if v == 1)
    try:
        r = json.load(open(rep))
        names = sorted(l["name"] for l in r["layers"])
        ok = (r["complete"] is False and names == whole and r["layers_written"] == len(names)
              and 6 <= len(names) < 28 and r["nsamples"] == 128 and r["seconds_elapsed"] > 0
              and r["seconds_forward_rank0"] > 0)
        c.check(ok, "interrupt: the report parses, not complete, and lists the %d whole layers of "
                "the file" % len(whole), "report %s vs file %s" % (names, whole))
    except (OSError, ValueError, KeyError) as e:
        c.check(False, "interrupt: the report parses", repr(e))
    p = subprocess.run(cmd(a.np, qargs + ["--out", out, "--json", rep, "--resume"]), env=env,
                       capture_output=True, text=True, timeout=300)
    r = json.load(open(rep)) if p.returncode == 0 else {}
    lay = r.get("layers", [])
    earlier = sorted(l["name"] for l in lay if l.get("earlier_run"))
    c.check(p.returncode == 0 and r.get("complete") is True and len(lay) == 28 and
            r.get("layers_written") == 28 and earlier == whole and
            sorted(l["name"] for l in lay) == sorted(result_state(out)[1]),
            "interrupt: --resume completes the file; its report lists all 28 layers, the %d of "
            "the interrupted run marked earlier_run" % len(whole), p.stderr[-1500:])

    # ---- memory: refused up front with the plan's numbers, a suggestion; a fitting budget runs
    def planned(ranks):
        pj = path("plan%d.json" % ranks)
        p = subprocess.run(cmd(1, ["plan", "--model", model, "--json", pj, "--no-probe", "--ranks",
                                   str(ranks), "--ranks-per-node", str(ranks)] + sizes),
                           env=env, capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise RuntimeError(p.stderr)
        return json.load(open(pj))["memory_bytes_per_rank"]["peak"]

    peak, peak2 = planned(a.np), planned(2 * a.np)
    budget = int((peak + peak2) / 2) // 1024 * 1024
    out = path("mem.h5")
    p = subprocess.run(cmd(a.np, qargs + ["--out", out, "--mem-per-rank", "%dK" % (budget // 1024)]),
                       env=env, capture_output=True, text=True, timeout=120)
    errs = [l for l in p.stderr.splitlines() if l.startswith("mpiquant: error:")]
    want = ("needs %.3g GiB on rank 0" % (peak / 2**30), "more than the %.3g GiB given" % (budget / 2**30),
            "run on %d ranks (%.3g GiB per rank)" % (2 * a.np, peak2 / 2**30))
    c.check(p.returncode == 2 and len(errs) == 1 and errs[0].startswith(
        "mpiquant: error: --mem-per-rank: ") and all(w in errs[0] for w in want)
        and not os.path.exists(out),
        "memory: budget %.1f MiB between the plan's %.1f MiB at %d ranks and %.1f MiB at %d: "
        "status 2, one line with the numbers and the suggestion, nothing created"
        % (budget / 2**20, peak / 2**20, a.np, peak2 / 2**20, 2 * a.np),
        "status %d: %s (want %s)" % (p.returncode, errs, want))
    p = subprocess.run(cmd(a.np, qargs + ["--out", out, "--mem-per-rank", "%dK" % (peak * 1.05 // 1024)]),
                       env=env, capture_output=True, text=True, timeout=300)
    c.check(p.returncode == 0, "memory: a budget 5%% above the plan's peak (%.1f MiB) runs"
            % (peak * 1.05 / 2**20), p.stderr[-1500:])
    return c.finish()


if __name__ == "__main__":
    sys.exit(main())
