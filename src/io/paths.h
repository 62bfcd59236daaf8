/* The files of a run: inputs opened without blocking, outputs that never touch an input, and
 * one writer per output (docs/CONTRACT.md §3).
 *
 * Every command lists its inputs and outputs in an mq_run_paths and calls mq_run_paths_guard()
 * before it creates anything. Collective: rank 0 checks, in this order, and all ranks agree on
 * the verdict (the one error line comes from rank 0):
 *
 *   1. every input is opened with O_NONBLOCK and fstat'ed: a FIFO, device, socket or directory
 *      is MQ_EINPUT "<path>: not a regular file" (it is never read, so a FIFO cannot block the
 *      run); a checkpoint directory stands for its config.json, every *.safetensors, the
 *      model.safetensors.index.json and tokenizer.json that exist;
 *   2. every output is resolved: an existing one by its st_dev/st_ino (symbolic and hard links
 *      to an input are caught), a new one by realpath() of its nearest existing ancestor plus
 *      the rest of the name. An output that is an input, or a directory output that holds an
 *      input, is MQ_EUSAGE "<output>: refusing to write: it is <option> <input>"; so are two
 *      outputs that are the same file, a dangling symbolic link, an existing output of the
 *      wrong type (a directory for a file output, or a non-regular file: a FIFO would block
 *      the writer) and an existing non-empty directory output without --force;
 *   3. every output's directory is probed: `.<name>.probe.<pid>` is created there (O_EXCL),
 *      4 KiB are written and it is removed. Missing or unwritable directory: MQ_EUSAGE; no space
 *      (ENOSPC, EDQUOT) or an I/O error: MQ_EFAIL;
 *   4. every output is locked: rank 0 creates `<output>.lock` beside it (the option's value
 *      plus ".lock", O_NOFOLLOW) and takes a POSIX write lock on it (fcntl F_SETLK, which NFS
 *      supports too); held by another process: MQ_EUSAGE "<output>: another mpiquant run is
 *      writing it (<output>.lock is locked)". The lock is held until mq_run_paths_release(),
 *      which removes the sidecar; one left behind by a killed run holds no lock (the kernel
 *      releases it with the process) and is reused.
 *
 * Functions without "Collective" are local and serial. */
#ifndef MQ_IO_PATHS_H
#define MQ_IO_PATHS_H

#include <mpi.h>
#include <stddef.h>

#include "mpiquant.h"

enum { MQ_RUN_MAX_PATHS = 8 };

typedef enum mq_path_kind {
  MQ_PATH_FILE = 0,       /* a file (HDF5, tokens, JSON, CSV, GGUF) */
  MQ_PATH_CHECKPOINT = 1, /* input only: a checkpoint directory (or one .safetensors file) */
  MQ_PATH_DIR = 2         /* output only: a directory replaced whole (export) */
} mq_path_kind;

typedef struct mq_run_path {
  const char *path; /* as given on the command line; NULL entries are skipped */
  const char *opt;  /* the option that named it ("--calib"), for messages */
  mq_path_kind kind;
  int force;        /* MQ_PATH_DIR: an existing non-empty directory may be replaced */
} mq_run_path;

/* What a command reads and writes. Filled by the command, then guarded; lock_fd is rank 0's
 * lock of each output (-1 when none). */
typedef struct mq_run_paths {
  mq_run_path in[MQ_RUN_MAX_PATHS], out[MQ_RUN_MAX_PATHS];
  int nin, nout;
  int lock_fd[MQ_RUN_MAX_PATHS];
  int locked;
} mq_run_paths;

/* Appends an input or output (path NULL: nothing). Beyond MQ_RUN_MAX_PATHS, ignored (a
 * command never has that many). */
void mq_run_paths_input(mq_run_paths *rp, const char *opt, const char *path, mq_path_kind kind);
void mq_run_paths_output(mq_run_paths *rp, const char *opt, const char *path, mq_path_kind kind,
                         int force);

/* Collective over comm: the checks 1-4 above on rank 0, agreed. On failure no lock is held. */
mq_status mq_run_paths_guard(MPI_Comm comm, mq_run_paths *rp, mq_error *err);
/* Local (every rank may call it; only rank 0 holds locks): drops the locks and removes the
 * lock files. Accepts a zeroed or unguarded struct. */
void mq_run_paths_release(mq_run_paths *rp);

/* Opens path read-only without blocking (O_NONBLOCK, O_CLOEXEC), checks with fstat that it is
 * a regular file, then clears O_NONBLOCK. MQ_EINPUT "<path>: cannot open: <errno>" or
 * "<path>: not a regular file"; *fd is -1 on failure. */
mq_status mq_path_open_regular(const char *path, int *fd, mq_error *err);
/* stat() only (for HDF5 files, which HDF5 opens itself): MQ_EINPUT as above. */
mq_status mq_path_check_regular(const char *path, mq_error *err);
/* A whole small regular file, NUL-terminated, into *text (mq_alloc'd; *len bytes without the
 * NUL). Larger than max_bytes: MQ_EINPUT "<path>: larger than <max> bytes". */
mq_status mq_path_read_all(const char *path, size_t max_bytes, char **text, size_t *len,
                           mq_error *err);

#endif
