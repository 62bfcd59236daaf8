#!/usr/bin/python3
"""The GGUF tests' fixture (CTest gguf_results): the demo model quantized in every grid the
tests need, made once so the drivers never race on them.

  make_gguf_results.py --mpiquant PATH --results DIR --model DIR --calib TEXT
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_common as C  # noqa: E402


def main(argv=None):
    """`gguf_common.py --mpiquant PATH --results DIR --model DIR --calib TEXT`: makes the result
    files (the CTest fixture gguf_results, so the drivers never race on them)."""
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    for k in ("--mpiquant", "--results", "--model", "--calib"):
        ap.add_argument(k, required=True)
    a = ap.parse_args(argv)
    s = C.Suite(a.mpiquant, a.results)
    try:
        C.make_results(s, a.model, a.calib, a.results)
        s.case("quantized the demo model %d ways in %s" % (len(C.RESULTS), a.results), [])
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        s.case("quantize the demo model", [str(e)])
    return s.finish()


if __name__ == "__main__":
    sys.exit(main())
