#!/usr/bin/python3
"""Compares two mpiquant result files bit for bit, except what may differ between identical
runs (timings, the writer's version and rank count).

  compare_results.py A.h5 B.h5      exit 0 when identical, 1 with the differences listed
"""
import sys

import h5py
import numpy as np

IGNORED = {"seconds", "mpiquant_version", "nranks"}


def items(f):
    out = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            out["dataset " + name] = obj[()]
        for k, v in obj.attrs.items():
            if k not in IGNORED:
                out["attr %s@%s" % (name, k)] = v
    for k, v in f.attrs.items():
        if k not in IGNORED:
            out["attr /@" + k] = v
    f.visititems(visit)
    return out


def same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind == "f" and b.dtype.kind == "f":
        return a.shape == b.shape and a.tobytes() == b.tobytes()
    return a.shape == b.shape and np.array_equal(a, b)


def main():
    with h5py.File(sys.argv[1], "r") as fa, h5py.File(sys.argv[2], "r") as fb:
        a, b = items(fa), items(fb)
    diffs = sorted(set(a) ^ set(b)) + [k for k in sorted(set(a) & set(b)) if not same(a[k], b[k])]
    for k in diffs[:20]:
        print("differs: %s" % k)
    print("%s: %d items compared, %d differ" % ("identical" if not diffs else "DIFFERENT",
                                               len(set(a) | set(b)), len(diffs)))
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
