#!/usr/bin/python3
"""Tests of the oracle itself; needs neither mpiquant nor MPI.

  selftest_oracle.py [--workdir DIR]

The oracle lives in tests/lib:
1. reference.py selftest (§5 identity, RTN = direct rounding, unblocked = blocked GPTQ).
2. fake_mpiquant.py (reference + SPEC writer) results pass check_layer; deliberately damaged
   ones (codes, loss, g_idx, missing complete) fail it; qweight pack/unpack round trip.
3. error_path.judge (the error-path drivers' verdict) on synthetic outputs: a clean error
   passes; MPI_Abort / ORTE noise, two error lines, wrong exit status, a complete output file
   all fail.
4. Qronos, stochastic rounding and --lambda auto: fake results pass check_layer; damaged ones
   (err_floor, bound_linf, held-out errors, a generator that ignores the seed) fail it; the
   stochastic suite's unbiasedness test (stochastic_check.py) accepts true stochastic rounding
   and rejects nearest rounding and a biased round-up probability.
Prints `N passed, M failed`; exit 1 if any failed.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

LIB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib")
sys.path.insert(0, LIB)
import check_layer  # noqa: E402
import fake_mpiquant  # noqa: E402
import problems  # noqa: E402
import reference  # noqa: E402
import stochastic_check  # noqa: E402
from error_path import judge  # noqa: E402

results = []


def case(name, ok):
    results.append(ok)
    print("%s %s" % ("ok  " if ok else "FAIL", name))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default=None)
    a = ap.parse_args(argv)
    wd = a.workdir or tempfile.mkdtemp(prefix="mq-oracle-")
    os.makedirs(wd, exist_ok=True)

    case("reference selftest", reference.selftest(verbose=False) == 0)

    rng = np.random.default_rng(5)
    for bits in range(2, 9):
        for cols in (1, 31, 32, 33, 100):
            codes = rng.integers(0, 2 ** bits, size=(3, cols))
            qw = fake_mpiquant.pack_codes(codes, bits)
            back, pad0 = check_layer.unpack_qweight(qw, cols, bits)
            if not (np.array_equal(back, codes) and pad0 and
                    qw.shape == (3, (cols * bits + 31) // 32)):
                case("pack/unpack bits %d cols %d" % (bits, cols), False)
    # hand-made SPEC example: bits 3, codes 1..11 -> stream bits
    codes = np.array([[5, 3, 7, 0, 1, 2, 4, 6, 7, 7, 1]])
    word = sum(int(c) << (3 * i) for i, c in enumerate(codes[0]))
    qw = np.array([[word & 0xFFFFFFFF, word >> 32]], dtype=np.uint32)
    case("unpack matches a hand-packed stream",
         np.array_equal(check_layer.unpack_qweight(qw, 11, 3)[0], codes))
    case("pack/unpack round trips (bits 2..8)", all(results))

    fake = os.path.join(LIB, "fake_mpiquant.py")
    runs = [("optq-suite", []), ("optq-suite", ["--method", "rtn", "--bits", "3", "--asym"]),
            ("xq", ["--bits", "2", "--group-size", "32", "--static-groups", "--mse"]),
            ("hessian", ["--bits", "8", "--group-size", "-1", "--no-act-order", "--lambda",
                         "0.02"])]
    for kind, opts in runs:
        p = os.path.join(wd, "st-%s.h5" % kind)
        o = os.path.join(wd, "st-out.h5")
        problems.make(p, kind, 11)
        subprocess.run([sys.executable, fake, "layer", "--in", p, "--out", o] + opts,
                       check=True)
        nbad, lines = check_layer.check_result(p, o, check_layer.parse_quant_options(opts))
        case("fake result passes check_layer (%s %s)" % (kind, " ".join(opts)), nbad == 0)
        if nbad:
            print("\n".join(lines))
    p = os.path.join(wd, "st-optq-suite.h5")
    for corrupt in ("codes", "loss", "gidx", "complete"):
        o = os.path.join(wd, "st-bad-%s.h5" % corrupt)
        opts = ["--group-size", "32"]
        env = dict(os.environ, FAKE_MQ_CORRUPT=corrupt)
        subprocess.run([sys.executable, fake, "layer", "--in", p, "--out", o] + opts,
                       check=True, env=env)
        nbad, _ = check_layer.check_result(p, o, check_layer.parse_quant_options(opts))
        case("damaged result (%s) fails check_layer" % corrupt, nbad > 0)
    # options recorded differently than checked
    o = os.path.join(wd, "st-out.h5")
    subprocess.run([sys.executable, fake, "layer", "--in", p, "--out", o, "--bits", "3"],
                   check=True)
    nbad, _ = check_layer.check_result(p, o, check_layer.parse_quant_options(["--bits", "4"]))
    case("result for other options fails check_layer", nbad > 0)

    J = judge
    ok_err = "mpiquant: error: f.h5: no /layers group\n"
    banner = ("-" * 74 + "\nPrimary job  terminated normally, but 1 process returned\n"
              "a non-zero exit code. Per user-direction, the job has been aborted.\n" +
              "-" * 74 + "\n")
    abort = ("-" * 74 + "\nMPI_ABORT was invoked on rank 0 in communicator MPI_COMM_WORLD\n"
             "with errorcode 3.\n")
    orte = "[vm:1] [[1,0],0] ORTE_ERROR_LOG: Data unpack would read past end of buffer\n"
    nofile = os.path.join(wd, "does-not-exist.h5")
    case("judge: clean error passes", J(3, 3, "", ok_err + banner, nofile) == [])
    case("judge: MPI_Abort banner fails", J(3, 3, "", ok_err + abort, nofile) != [])
    case("judge: ORTE_ERROR_LOG fails", J(3, 3, "", ok_err + orte, nofile) != [])
    case("judge: two error lines fail", J(3, 3, "", ok_err + ok_err, nofile) != [])
    case("judge: no error line fails", J(3, 3, "", banner, nofile) != [])
    case("judge: wrong status fails", J(1, 3, "", ok_err, nofile) != [])
    case("judge: timeout fails", J(124, 3, "", ok_err, nofile) != [])
    case("judge: complete output fails",
         J(3, 3, "", ok_err, os.path.join(wd, "st-out.h5")) != [])

    # 4. Qronos / stochastic / --lambda auto
    new_runs = [("mismatch", ["--method", "qronos"]),
                ("mismatch", ["--method", "qronos", "--lambda", "0", "--asym", "--bits", "3"]),
                ("hg", ["--method", "qronos", "--group-size", "32"]),
                ("xq", ["--rounding", "stochastic", "--seed", "5", "--group-size", "32"]),
                ("xq", ["--method", "rtn", "--rounding", "stochastic", "--asym"]),
                ("mismatch", ["--method", "qronos", "--rounding", "stochastic", "--seed", "9"]),
                ("lambda", ["--lambda", "auto", "--bits", "3", "--asym"]),
                ("lambda", ["--method", "qronos", "--lambda", "auto", "--group-size", "32"])]
    for kind, opts in new_runs:
        p = os.path.join(wd, "st-%s.h5" % kind)
        o = os.path.join(wd, "st-out.h5")
        problems.make(p, kind, 11)
        subprocess.run([sys.executable, fake, "layer", "--in", p, "--out", o] + opts,
                       check=True)
        nbad, lines = check_layer.check_result(p, o, check_layer.parse_quant_options(opts))
        case("fake result passes check_layer (%s %s)" % (kind, " ".join(opts)), nbad == 0)
        if nbad:
            print("\n".join(lines))
    for corrupt, kind, opts in [
            ("floor", "mismatch", ["--method", "qronos"]),
            ("linf", "xq", ["--rounding", "stochastic", "--seed", "5"]),
            ("seed", "xq", ["--rounding", "stochastic", "--seed", "5"]),
            ("seed", "mismatch", ["--method", "qronos", "--rounding", "stochastic", "--seed",
                                  "5"]),
            ("auto", "lambda", ["--lambda", "auto"]),
            ("codes", "mismatch", ["--method", "qronos", "--lambda", "0"])]:
        p = os.path.join(wd, "st-%s.h5" % kind)
        o = os.path.join(wd, "st-bad-%s.h5" % corrupt)
        env = dict(os.environ, FAKE_MQ_CORRUPT=corrupt)
        subprocess.run([sys.executable, fake, "layer", "--in", p, "--out", o] + opts,
                       check=True, env=env)
        nbad, _ = check_layer.check_result(p, o, check_layer.parse_quant_options(opts))
        case("damaged result (%s, %s) fails check_layer" % (corrupt, " ".join(opts)), nbad > 0)

    # unbiasedness statistics on synthetic copies: true stochastic rounding passes, nearest
    # rounding and a round-up probability 0.8·frac fail
    srng = np.random.default_rng(3)
    W = srng.standard_normal((6, 40)) * 0.1
    bits = 3
    scale, zero = reference.grid_params(W, bits, False, False)
    t = W / scale[:, None]
    K = 200

    def copies(prob_up):
        res = {}
        for k in range(K):
            up = srng.random(W.shape) < prob_up(t - np.floor(t))
            c = np.clip(np.floor(t) + zero[:, None] + up, 0, 2 ** bits - 1).astype(np.int64)
            res["s%03d" % k] = dict(codes=c, scales=scale[:, None].astype(np.float32),
                                    zeros=zero[:, None].astype(np.int32),
                                    g_idx=np.zeros(40, dtype=np.int32),
                                    What=reference.dequant(c, scale[:, None], zero[:, None]))
        return res

    prob = {"s%03d" % k: {"W": W} for k in range(K)}
    good, summ = stochastic_check.unbiasedness(prob, copies(lambda f: f), bits)
    case("unbiasedness test accepts stochastic rounding (%s)" % summ, not good)
    bad1, _ = stochastic_check.unbiasedness(prob, copies(lambda f: f >= 0.5), bits)
    case("unbiasedness test rejects nearest rounding", bool(bad1))
    bad2, _ = stochastic_check.unbiasedness(prob, copies(lambda f: 0.8 * f), bits)
    case("unbiasedness test rejects P(up) = 0.8·frac", bool(bad2))

    npass = sum(results)
    print("%d passed, %d failed" % (npass, len(results) - npass))
    return 0 if npass == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
