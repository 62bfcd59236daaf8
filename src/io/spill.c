#include "io/spill.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/mem.h"
#include "core/status.h"

mq_status mq_spill_map(const char *dir, size_t bytes, mq_spill *out, mq_error *err) {
  mq_status st = MQ_OK;
  size_t len = strlen(dir) + sizeof "/mpiquant-spill-XXXXXX";
  char *path = mq_alloc(len, 1);
  int fd = -1;
  *out = (mq_spill){0};
  MQ_CHECK_ALLOC(err, path, len);
  snprintf(path, len, "%s/mpiquant-spill-XXXXXX", dir);
  fd = mkstemp(path);
  if (fd < 0) MQ_FAIL(err, MQ_EUSAGE, "--spill-dir: %s: cannot create a file: %s", dir,
                      strerror(errno));
  unlink(path); /* gone with the last mapping, however the run ends */
  int rc = posix_fallocate(fd, 0, (off_t)(bytes ? bytes : 1));
  if (rc != 0)
    MQ_FAIL(err, MQ_EUSAGE, "--spill-dir: %s: cannot reserve %.3g GiB: %s", dir,
            (double)bytes / 1073741824.0, strerror(rc));
  void *base = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED)
    MQ_FAIL(err, MQ_EFAIL, "--spill-dir: %s: cannot map %zu bytes: %s", dir, bytes,
            strerror(errno));
  *out = (mq_spill){.base = base, .bytes = bytes ? bytes : 1};
cleanup:
  if (fd >= 0) close(fd);
  mq_free(path);
  return st;
}

void mq_spill_unmap(mq_spill *s) {
  if (s == NULL || s->base == NULL) return;
  munmap(s->base, s->bytes);
  *s = (mq_spill){0};
}
