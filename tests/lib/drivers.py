#!/usr/bin/python3
"""Shared plumbing of the drivers that run `mpiquant` under mpirun (tests/parallel, tests/cli,
tests/model, tests/io): the common command line (--mpiquant, --np, --workdir, --mpirun, --quick,
--seed, --timeout), a Suite that runs mpiquant and tallies `ok`/`FAIL` lines up to the final
`N passed, M failed`, the oracle check of a result file and its decoding.  Not a test by
itself."""
import argparse
import os
import shlex
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_layer  # noqa: E402
from launch import launch_cmd, subprocess_env  # noqa: E402,F401  (drivers.launch_cmd)


def base_parser(doc, seed=20240):
    ap = argparse.ArgumentParser(description=doc, allow_abbrev=False,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mpiquant", required=True)
    ap.add_argument("--np", type=int, default=2)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--mpirun", default="mpirun --oversubscribe")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=seed, help="problem generator seed")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per mpiquant run")
    return ap


class Suite:
    """Runs mpiquant, tallies cases, prints `ok`/`FAIL` lines and the closing line."""

    def __init__(self, a, name):
        self.a = a
        self.name = name
        self.t_start = time.time()
        self.npass = 0
        self.nfail = 0
        self.env = subprocess_env()
        os.makedirs(a.workdir, exist_ok=True)
        self.mpiquant = os.path.abspath(a.mpiquant)

    def exists(self):
        if os.path.exists(self.mpiquant):
            return True
        print("%s: %s does not exist" % (self.name, self.mpiquant))
        self.nfail += 1
        return False

    def path(self, name):
        return os.path.join(self.a.workdir, name)

    def run(self, args, np_=None, out=None):
        """Runs `<mpirun> -np N mpiquant <args>`; removes `out` first.  Returns (ok, cmd string,
        log tail, seconds); the whole log stays in self.last_log."""
        if out is not None and os.path.exists(out):
            os.remove(out)
        cmd = launch_cmd(self.a.mpirun, self.a.np if np_ is None else np_, self.mpiquant) + \
            list(args)
        t0 = time.time()
        try:
            p = subprocess.run(cmd, env=self.env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=self.a.timeout)
            rc, log = p.returncode, p.stdout.decode(errors="replace")
        except subprocess.TimeoutExpired as e:
            rc, log = "timeout", (e.stdout or b"").decode(errors="replace")
        dt = time.time() - t0
        self.last_log = log
        tail = "\n".join(log.strip().splitlines()[-8:])
        if rc != 0:
            tail = "exit %s: %s" % (rc, tail)
        return rc == 0, shlex.join(cmd), tail, dt

    def case(self, ok, label, detail="", cmds=()):
        if ok:
            self.npass += 1
            print("ok   %s%s" % (label, ("  (" + detail + ")") if detail else ""))
        else:
            self.nfail += 1
            print("FAIL %s" % label)
            for c in cmds:
                print("  $ " + c)
            if detail:
                print("  " + detail.replace("\n", "\n  "))
        sys.stdout.flush()
        return ok

    def finish(self):
        print("suite time %.1fs" % (time.time() - self.t_start))
        print("%d passed, %d failed" % (self.npass, self.nfail))
        return 1 if self.nfail else 0


def check(problem, result, opts, infos=None, **kw):
    """check_layer.check_result with mpiquant option strings; never raises."""
    try:
        o = check_layer.parse_quant_options(shlex.split(opts) if isinstance(opts, str)
                                            else opts)
        return check_layer.check_result(problem, result, o, infos=infos, **kw)
    except SystemExit:
        return 1, ["cannot parse options %r" % (opts,)]
    except Exception as e:  # the oracle must report, not crash
        return 1, ["checker exception %s: %s" % (type(e).__name__, e)]


def read_result(path, bits):
    """name -> dict(codes, scales, zeros, g_idx, attrs, raw datasets) of a result file."""
    import h5py
    out = {}
    with h5py.File(path, "r") as f:
        for name in sorted(f["layers"].keys()):
            g = f["layers"][name]
            cols = int(g["g_idx"].shape[0])
            d = {k: np.asarray(g[k][()]) for k in ("qweight", "scales", "zeros", "g_idx")}
            d["codes"] = check_layer.unpack_qweight(d["qweight"], cols, bits)[0]
            d["attrs"] = {k: check_layer._val(v) for k, v in g.attrs.items()}
            gi = d["g_idx"].astype(np.int64)
            d["What"] = d["scales"].astype(np.float64)[:, gi] * \
                (d["codes"] - d["zeros"].astype(np.int64)[:, gi])
            out[name] = d
    return out


def summarize(lines):
    """min agreement / max err ratio over check_layer's per-layer lines."""
    agrees = [float(ln.split("agree ")[1].split(",")[0]) for ln in lines if "agree " in ln]
    ratios = [float(ln.split("err/ref ")[1].split(",")[0]) for ln in lines if "err/ref " in ln]
    return "min agree %.4f, max err/ref %.4f" % (min(agrees) if agrees else float("nan"),
                                                 max(ratios) if ratios else float("nan"))
