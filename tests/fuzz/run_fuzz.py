#!/usr/bin/python3
"""Fuzzing of mpiquant's file readers with libFuzzer (CTest `fuzz_readers`, tools/fuzz.sh).

  run_fuzz.py --source REPO --workdir DIR [--mpiquant BIN] [--seconds 20] [--jobs 2]
              [--cc clang] [--harness NAME ...] [--raw] [--regressions DIR]

1. Toolchain: a one-line LLVMFuzzerTestOneInput must compile and link with
   `<cc> -fsanitize=fuzzer,address,undefined`; otherwise the reason is printed and the exit
   status is 77 (CTest SKIP_RETURN_CODE), never a silent pass.
2. Builds tests/fuzz/harness (its own CMake project, clang, ASan + UBSan) in DIR/build:
   fuzz_safetensors, fuzz_config, fuzz_tokens, fuzz_result, fuzz_problem.
3. Seed corpora, generated here into DIR/corpus/<harness>: safetensors files and config.json
   variants written with numpy/json (tests/lib/safetensors_np.py), token files (.npy, raw bytes)
   and recipes of HDF5 files (tests/fuzz/harness/fuzz_h5build.h: an all-zero recipe is the
   file as mpiquant writes it). With --raw the HDF5 harnesses read the input as the file itself
   (MQ_FUZZ_RAW=1) and their seeds are real files: problems of tests/lib/problems.py and result
   files of `mpiquant layer` (--mpiquant).
4. Every input under tests/fuzz/regressions/<harness>/ is replayed (it must not crash).
5. Each harness fuzzes for --seconds (--jobs at a time). A crash, leak or sanitizer report
   fails the run and its input is copied to tests/fuzz/regressions/<harness>/ (--regressions),
   to be replayed from then on. Leaks inside libhdf5 are suppressed (tests/fuzz/lsan.supp).
Prints one line per step and `N passed, M failed`.
"""
import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import problems  # noqa: E402
from launch import subprocess_env  # noqa: E402
from safetensors_np import st_blob, to_bytes  # noqa: E402

SKIP = 77
HARNESSES = ["fuzz_safetensors", "fuzz_config", "fuzz_tokens", "fuzz_result", "fuzz_problem"]
HDF5 = {"fuzz_result", "fuzz_problem"}


def toolchain(cc):
    """None when `cc` builds a libFuzzer program with ASan and UBSan, else why not."""
    if shutil.which(cc) is None:
        return "%s not found (Debian: apt-get install clang-14 libclang-rt-14-dev, or run " \
               "tools/fuzz.sh, which installs them)" % cc
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "t.c")
        with open(src, "w") as f:
            f.write("#include <stddef.h>\n#include <stdint.h>\n"
                    "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) "
                    "{ (void)d; (void)n; return 0; }\n")
        r = subprocess.run([cc, "-fsanitize=fuzzer,address,undefined", src, "-o",
                            os.path.join(d, "t")], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
        if r.returncode != 0:
            return "%s cannot link -fsanitize=fuzzer,address,undefined (libFuzzer runtime " \
                   "missing? Debian: libclang-rt-14-dev): %s" % (
                       cc, r.stdout.decode(errors="replace").strip().splitlines()[-1:])
    return None


def build(a):
    b = os.path.join(a.workdir, "build")
    cfg = ["cmake", "-S", os.path.join(a.source, "tests", "fuzz", "harness"), "-B", b,
           "-DCMAKE_C_COMPILER=" + a.cc, "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
           "-DMQ_SOURCE_DIR=" + a.source]
    for cmd in (cfg, ["cmake", "--build", b, "-j", str(a.jobs)]):
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            return None, r.stdout.decode(errors="replace")[-3000:]
    return b, ""


# ---- seeds ----

def npy_bytes(arr, fortran=False):
    buf = io.BytesIO()
    np.save(buf, np.asfortranarray(arr) if fortran else arr)
    return buf.getvalue()


def seeds(a, h, raw):
    """name -> bytes of the seed corpus of harness h."""
    rng = np.random.default_rng(13)
    out = {}
    if h == "fuzz_safetensors":
        x = rng.standard_normal((3, 4)).astype(np.float32)
        out["f32"] = st_blob([("w", "F32", (3, 4), to_bytes(x, "F32"))])
        out["mixed"] = st_blob([("a", "F16", (4,), to_bytes(x[0], "F16")),
                                ("b", "BF16", (2, 2), to_bytes(x[1, :4], "BF16")),
                                ("s", "F32", (), to_bytes(np.float32(2.0), "F32")),
                                ("e", "F32", (0, 3), b"")])
        out["nan"] = st_blob([("n", "F32", (2,), np.array([np.nan, np.inf], "<f4").tobytes())])
    elif h == "fuzz_config":
        demo = json.load(open(os.path.join(a.source, "data", "demo-model", "config.json")))
        out["demo"] = json.dumps(demo).encode()
        q = dict(demo, architectures=["Qwen2ForCausalLM"], attention_bias=True,
                 sliding_window=64, use_sliding_window=True)
        out["qwen2"] = json.dumps(q).encode()
        l3 = dict(demo, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                      "high_freq_factor": 4.0,
                                      "original_max_position_embeddings": 8192})
        out["llama3"] = json.dumps(l3).encode()
        d = dict(demo)
        d["dtype"] = d.pop("torch_dtype")
        out["dtype"] = json.dumps(d).encode()
    elif h == "fuzz_tokens":
        out["npy_i32"] = b"\0\0" + npy_bytes(np.arange(40, dtype=np.int32) % 200)
        out["npy_u8_2d"] = b"\0\1" + npy_bytes(np.arange(24, dtype=np.uint8).reshape(4, 6), True)
        out["npy_i64"] = b"\0\2" + npy_bytes(np.arange(10, dtype=np.int64))
        out["h5"] = b"\1\0" + bytes(64)
        out["raw"] = b"\2\0" + b"In the beginning God created the heaven and the earth.\n"
    elif not raw:  # HDF5 recipes: all zero = the file as mpiquant writes it
        out["zero64"] = bytes(64)
        out["zero512"] = bytes(512)
        for k in range(3):
            out["rand%d" % k] = rng.integers(0, 256, 400 + 300 * k, dtype=np.uint8).tobytes()
    elif h == "fuzz_problem":
        for kind in ("small", "hessian", "xq"):
            p = os.path.join(a.workdir, "seed-%s.h5" % kind)
            problems.make(p, kind, 1)
            out[kind] = open(p, "rb").read()
    elif h == "fuzz_result" and a.mpiquant:
        p, r = os.path.join(a.workdir, "seed-problem.h5"), os.path.join(a.workdir, "seed-result.h5")
        problems.make(p, "small", 1)
        if subprocess.run([a.mpiquant, "layer", "--in", p, "--out", r, "--quiet"],
                          env=subprocess_env()).returncode == 0:
            out["layer"] = open(r, "rb").read()
    return out


def corpus(a, h):
    d = os.path.join(a.workdir, "corpus-raw" if a.raw and h in HDF5 else "corpus", h)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds(a, h, a.raw).items():
        with open(os.path.join(d, "seed-" + name), "wb") as f:
            f.write(data)
    return d


def env(a, h):
    e = dict(os.environ)
    e["ASAN_OPTIONS"] = "allocator_may_return_null=1:detect_leaks=1"
    e["LSAN_OPTIONS"] = "suppressions=" + os.path.join(a.source, "tests", "fuzz", "lsan.supp")
    e["UBSAN_OPTIONS"] = "print_stacktrace=1"
    e["TMPDIR"] = os.path.join(a.workdir, "tmp")
    os.makedirs(e["TMPDIR"], exist_ok=True)
    if a.raw and h in HDF5:
        e["MQ_FUZZ_RAW"] = "1"
    return e


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--mpiquant")
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cc", default="clang")
    ap.add_argument("--harness", nargs="*", default=HARNESSES, choices=HARNESSES)
    ap.add_argument("--raw", action="store_true", help="HDF5 harnesses: the input is the file")
    ap.add_argument("--regressions")
    a = ap.parse_args(argv)
    a.source = os.path.abspath(a.source)
    a.workdir = os.path.abspath(a.workdir)
    regs = a.regressions or os.path.join(a.source, "tests", "fuzz", "regressions")
    t0 = time.time()
    why = toolchain(a.cc)
    if why:
        print("SKIP fuzzing: " + why)
        return SKIP
    os.makedirs(a.workdir, exist_ok=True)
    bdir, log = build(a)
    if bdir is None:
        print("FAIL building the harnesses:\n" + log)
        print("0 passed, 1 failed")
        return 1
    print("ok   built %d harnesses (%.0fs)" % (len(HARNESSES), time.time() - t0))
    npass = nfail = 0
    for h in a.harness:  # replay: every kept input must now pass
        d = os.path.join(regs, h)
        files = sorted(os.path.join(d, f) for f in os.listdir(d)) if os.path.isdir(d) else []
        if not files:
            continue
        r = subprocess.run([os.path.join(bdir, h)] + files, env=env(a, h),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        ok = r.returncode == 0
        npass, nfail = npass + ok, nfail + (not ok)
        print("%s replay %s: %d kept input(s)" % ("ok  " if ok else "FAIL", h, len(files)))
        if not ok:
            print("  " + r.stdout.decode(errors="replace")[-3000:].replace("\n", "\n  "))
    pending = list(a.harness)
    running = []
    while pending or running:
        while pending and len(running) < a.jobs:
            h = pending.pop(0)
            art = os.path.join(a.workdir, "artifacts", h)
            shutil.rmtree(art, ignore_errors=True)
            os.makedirs(art)
            logf = open(os.path.join(a.workdir, h + ".log"), "wb")
            cmd = [os.path.join(bdir, h), "-max_total_time=%d" % a.seconds, "-max_len=16384",
                   "-rss_limit_mb=2048", "-timeout=30", "-print_final_stats=1",
                   "-artifact_prefix=" + art + "/", corpus(a, h)]
            running.append((h, subprocess.Popen(cmd, env=env(a, h), stdout=logf,
                                                stderr=subprocess.STDOUT), logf, art, time.time()))
        time.sleep(0.5)
        for item in list(running):
            h, p, logf, art, ts = item
            if p.poll() is None:
                continue
            running.remove(item)
            logf.close()
            text = open(logf.name, errors="replace").read()
            runs = [ln for ln in text.splitlines()
                    if ln.startswith("stat::number_of_executed_units")]
            found = sorted(os.listdir(art))
            ok = p.returncode == 0 and not found
            if found:
                os.makedirs(os.path.join(regs, h), exist_ok=True)
                for f in found:
                    shutil.copyfile(os.path.join(art, f), os.path.join(regs, h, f))
            npass, nfail = npass + ok, nfail + (not ok)
            print("%s fuzz %s: %s in %.0fs%s" % (
                "ok  " if ok else "FAIL", h, runs[0].split(":")[-1].strip() + " runs" if runs
                else "exit %d" % p.returncode, time.time() - ts,
                "" if ok else "; kept in %s: %s" % (os.path.join(regs, h), found)))
            if not ok:
                print("  " + text[-4000:].replace("\n", "\n  "))
            sys.stdout.flush()
    print("fuzz time %.0fs" % (time.time() - t0))
    print("%d passed, %d failed" % (npass, nfail))
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main())
