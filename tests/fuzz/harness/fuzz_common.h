/* What every harness shares: the input written to a file of this process (the readers open
 * paths, as mpiquant does), HDF5's own error printing off, and a size budget for the buffers a
 * harness sizes from what a file declares (a real run would try to allocate them too: that is
 * an out-of-memory exit, not a bug of the reader). */
#ifndef MQ_FUZZ_COMMON_H
#define MQ_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "hdf5.h"

/* Elements a harness reads at most per tensor (16 Mi floats: 64 MiB). */
#define MQ_FUZZ_MAX_ELEMS ((size_t)1 << 24)

/* The input as the file <TMPDIR or /tmp>/mq_fuzz_<pid><suffix>; its path (static storage), or
 * NULL when it cannot be written. */
static inline const char *mq_fuzz_file(const uint8_t *data, size_t size, const char *suffix) {
  static char path[512];
  const char *dir = getenv("TMPDIR");
  snprintf(path, sizeof path, "%s/mq_fuzz_%ld%s", dir && *dir ? dir : "/tmp", (long)getpid(),
           suffix);
  FILE *f = fopen(path, "wb");
  if (f == NULL) return NULL;
  int ok = fwrite(data, 1, size, f) == size;
  ok = fclose(f) == 0 && ok;
  return ok ? path : NULL;
}

static inline void mq_fuzz_quiet(void) { (void)H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

#endif
