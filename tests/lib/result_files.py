"""Result files compared whole, and the calibration-window mixer, for the quantize drivers
(tests/model/run_quantize_*.py).  Not a test by itself.

contents(path): every dataset and attribute of a result file except what differs between
identical runs (seconds, the rank count, the writer's version), by HDF5 path ("name@attr" for
attributes); differences(a, b): the keys whose bytes differ or that one side lacks;
splitmix64(x): the mixer quantize draws its window starts with (calibrate.c).
"""
import numpy as np

M64 = (1 << 64) - 1


def contents(path):
    """Every dataset and attribute of a result file but the run's own (seconds, ranks)."""
    import h5py
    items = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            for k, v in obj.attrs.items():
                if k not in ("seconds", "nranks", "mpiquant_version"):
                    items[name + "@" + k] = np.asarray(v)
            if isinstance(obj, h5py.Dataset):
                items[name] = obj[()]
        f.visititems(visit)
        for k, v in f.attrs.items():
            if k not in ("nranks", "mpiquant_version"):
                items["@" + k] = np.asarray(v)
    return items


def differences(a, b):
    keys = set(a) | set(b)
    return sorted(k for k in keys if k not in a or k not in b or
                  a[k].shape != b[k].shape or a[k].tobytes() != b[k].tobytes())


def splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)
