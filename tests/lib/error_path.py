"""How an error path must end (SPEC "Exit status"): the expected exit status, exactly one
stderr line `mpiquant: error: ...`, no MPI_Abort banner or crash, nothing on stderr but that
line, "[mpiquant]" log lines and mpirun's plain non-zero-exit notice, and no output file marked
complete == 1.  judge() is shared by the error-path drivers (tests/cli) and the export tests
(tests/io).  Not a test by itself."""
import os
import re

ERR_PREFIX = "mpiquant: error: "

# mpirun's notice when a rank exits non-zero after a clean MPI_Finalize (unavoidable, allowed)
BENIGN = [
    re.compile(r"^-+$"),
    re.compile(r"^Primary job\s+terminated normally, but \d+ process(es)? returned$"),
    re.compile(r"^a non-zero exit code\.( Per user-direction, the job has been aborted\.)?$"),
    re.compile(r"^mpirun detected that one or more processes exited with non-zero status, "
               r"thus causing$"),
    re.compile(r"^the job to be terminated\. The first process to do so was:$"),
    re.compile(r"^Process name: \[\[\d+,\d+\],\d+\]$"),
    re.compile(r"^Exit code:\s+\d+$"),
]
# signs of MPI_Abort / crashes (always a failure, even if the rest looks right)
ABORT = re.compile(r"MPI_ABORT|MPI_Abort|MPI_COMM_WORLD.*errorcode|NOTE: invoking MPI_ABORT|"
                   r"Signal:|Segmentation fault|Aborted|core dumped|exited on signal|"
                   r"HDF5-DIAG|AddressSanitizer|runtime error:|ORTE_ERROR_LOG|PMIX_ERROR")


def complete_output(path):
    """True if path is an HDF5 file whose root attribute complete == 1."""
    if not os.path.exists(path):
        return False
    try:
        import h5py
        with h5py.File(path, "r") as f:
            v = f.attrs.get("complete")
            return v is not None and int(v) == 1
    except Exception:
        return False


def judge(rc, want_rc, stdout, stderr, out):
    """Returns a list of problems (empty = pass)."""
    probs = []
    if rc == 124:
        probs.append("timed out (hang?)")
    elif rc != want_rc:
        probs.append("exit status %s (want %d)" % (rc, want_rc))
    err_lines = [ln for ln in stderr.splitlines() if ln.startswith(ERR_PREFIX)]
    out_errs = [ln for ln in stdout.splitlines() if ln.startswith(ERR_PREFIX)]
    if len(err_lines) != 1:
        probs.append("%d stderr lines start with %r (want exactly 1)" % (len(err_lines),
                                                                         ERR_PREFIX))
    if out_errs:
        probs.append("error line(s) on stdout")
    elif err_lines and len(err_lines[0]) <= len(ERR_PREFIX) + 3:
        probs.append("error message empty")
    text = stdout + "\n" + stderr
    m = ABORT.search(text)
    if m:
        probs.append("abnormal termination (%r in output: MPI_Abort/crash instead of a clean "
                     "exit)" % m.group(0))
    other = []
    for ln in stderr.splitlines():
        s = ln.strip()
        if not s or ln.startswith(ERR_PREFIX) or s.startswith("[mpiquant]"):
            continue
        if any(p.match(s) for p in BENIGN):
            continue
        other.append(s)
    if other:
        probs.append("unexpected stderr: %s" % " | ".join(other[:4]))
    if complete_output(out):
        probs.append("output %s exists with complete=1" % out)
    return probs
