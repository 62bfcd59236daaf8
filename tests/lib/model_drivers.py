"""What the eval drivers of tests/model share: their command line and the environment their
mpirun children need (launch.subprocess_env). Not a test by itself."""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from launch import subprocess_env  # noqa: E402,F401


def parser(doc, *required, tol=False, timeout=None):
    """--mpiquant, --mpirun, --np, --models, --workdir, the required paths named in `required`
    (e.g. "--demo-model"), and optionally --tol (1e-4) and --timeout."""
    ap = argparse.ArgumentParser(description=doc,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mpiquant", required=True)
    ap.add_argument("--mpirun", default="mpirun --oversubscribe")
    ap.add_argument("--np", type=int, default=1)
    ap.add_argument("--models", required=True)
    for name in required:
        ap.add_argument(name, required=True)
    ap.add_argument("--workdir", required=True)
    if tol:
        ap.add_argument("--tol", type=float, default=1e-4)
    if timeout is not None:
        ap.add_argument("--timeout", type=float, default=timeout)
    return ap
