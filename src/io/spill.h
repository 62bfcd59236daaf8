/* Memory that lives in a file on node-local scratch (`quantize --spill-dir`): one unlinked
 * temporary file mapped shared, so the kernel writes its pages to disk under memory pressure
 * instead of the rank being killed, and nothing is left behind however the run ends. For the
 * activation streams, which are read and written window by window. Not collective. */
#ifndef MQ_IO_SPILL_H
#define MQ_IO_SPILL_H

#include <stddef.h>

#include "mpiquant.h"

typedef struct mq_spill {
  void *base;   /* the mapping, 64-byte aligned (page aligned), or NULL */
  size_t bytes;
} mq_spill;

/* Maps `bytes` of a new file in dir, its blocks reserved up front (a full disk is an error
 * here, not a SIGBUS later): MQ_EUSAGE "--spill-dir: <dir>: <reason>" when the file cannot be
 * created or reserved, MQ_EFAIL when it cannot be mapped. */
mq_status mq_spill_map(const char *dir, size_t bytes, mq_spill *out, mq_error *err);
void mq_spill_unmap(mq_spill *s); /* accepts a zeroed struct */

#endif
