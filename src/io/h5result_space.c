/* Disk space for a result file, reserved before the collective steps that write it.
 *
 * A full disk must not fail inside HDF5: an H5Dwrite or H5Fflush that fails on one rank (rank
 * 0 writes the metadata) returns while the others wait in one of HDF5's own barriers, and the
 * run hangs; a close that fails leaves HDF5 crashing at MPI_Finalize. So before each step
 * (mq_h5_result_create's root, a layer, a /model tensor, finish) rank 0 reserves the blocks
 * the step can touch: [0, size + the step's data + MQ_H5_RESERVE_SLACK), size being the file's
 * size now. HDF5's end of allocated space (EOA) is not available through the MPI-IO driver
 * (H5Fget_eoa needs a SWMR driver, H5Fget_filesize fails once data was written), but the file
 * reaches the EOA at every flush and every dataset's data is written right after its creation,
 * so what lies beyond the size is metadata allocated since: the slack covers it, and the
 * metadata the step itself allocates.
 * The reservation is fallocate(FALLOC_FL_KEEP_SIZE), which allocates without changing the
 * file's size; where the file system lacks it, posix_fallocate (which extends the file with
 * zeros past HDF5's end, harmless to HDF5 and h5py); where neither works, nothing is reserved
 * (a debug line says so) and a full disk can still fail inside HDF5. A failed reservation is
 * MQ_EFAIL "<path>: cannot reserve <n> bytes of disk space: <errno>" on rank 0, agreed by every rank
 * before any of them enters the step; the blocks it may have taken beyond the end of the file
 * are given back (punched) so that closing the file still finds room for its metadata. */
#define _GNU_SOURCE /* fallocate, FALLOC_FL_* */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/status.h"
#include "io/h5result.h"
#include "io/h5result_internal.h"

/* Metadata a step allocates beyond its data: object headers, dense attribute and link
 * storage (fractal heaps, B-trees). */
#define MQ_H5_RESERVE_SLACK ((uint64_t)256 << 10)

mq_status mq__h5_result_space_open(mq_h5_result *rf, mq_error *err) {
  mq_status st = MQ_OK;
  rf->fd = -1;
  if (rf->rank != 0) return MQ_OK;
  rf->fd = open(rf->path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (rf->fd < 0)
    MQ_FAIL(err, MQ_EFAIL, "%s: cannot open for writing: %s", rf->path, strerror(errno));
cleanup:
  return st;
}

void mq__h5_result_space_close(mq_h5_result *rf) {
  if (rf->fd >= 0) close(rf->fd);
  rf->fd = -1;
}

/* Rank 0: [0, want) backed by disk blocks. */
static mq_status reserve_local(mq_h5_result *rf, uint64_t want, mq_error *err) {
  mq_status st = MQ_OK;
  struct stat sb;
  int rc = fallocate(rf->fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)want) == 0 ? 0 : errno;
  if (rc == EOPNOTSUPP || rc == ENOSYS || rc == EINVAL)
    rc = posix_fallocate(rf->fd, 0, (off_t)want);
  if (rc == EOPNOTSUPP || rc == ENOSYS || rc == EINVAL) {
    if (!rf->unreserved)
      MQ_DEBUG("%s: the file system cannot reserve space (%s)", rf->path, strerror(rc));
    rf->unreserved = 1;
    return MQ_OK;
  }
  if (rc != 0) {
    /* give back what a partial reservation took past the end of the file */
    if (fstat(rf->fd, &sb) == 0 && (uint64_t)sb.st_size < want)
      (void)fallocate(rf->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, sb.st_size,
                      (off_t)(want - (uint64_t)sb.st_size));
    MQ_FAIL(err, MQ_EFAIL, "%s: cannot reserve %llu bytes of disk space: %s", rf->path,
            (unsigned long long)want, strerror(rc));
  }
cleanup:
  return st;
}

mq_status mq__h5_result_reserve(mq_h5_result *rf, uint64_t extra, mq_error *err) {
  mq_status st = MQ_OK;
  struct stat sb;
  if (rf->rank == 0 && rf->fd >= 0) {
    if (fstat(rf->fd, &sb) != 0)
      st = mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "%s: cannot stat: %s", rf->path,
                    strerror(errno));
    else
      st = reserve_local(rf, (uint64_t)sb.st_size + extra + MQ_H5_RESERVE_SLACK, err);
  }
  MQ_AGREE(rf->comm, st);
cleanup:
  return st;
}
