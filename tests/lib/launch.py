"""How every test driver starts mpiquant: the environment its mpirun children need and the
`<mpirun> -np N <mpiquant>` command line.  Not a test by itself."""
import os
import shlex
import sys


def subprocess_env():
    env = dict(os.environ)
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    return env


def launch_cmd(mpirun, np_, mpiquant):
    """mpiquant may also be a .py stand-in (fake_mpiquant.py), run with this interpreter."""
    prog = [sys.executable, mpiquant] if mpiquant.endswith(".py") else [mpiquant]
    return shlex.split(mpirun) + ["-np", str(np_)] + prog
