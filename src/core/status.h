/* Error handling shared by every module: one status threaded through a function with a single
 * cleanup path (SQLite style), the first failure recorded with its origin in an mq_error. */
#ifndef MQ_CORE_STATUS_H
#define MQ_CORE_STATUS_H

#include "mpiquant/numerics.h"

/* Records a failure in err (the first one wins) and returns its status. printf-style message:
 * "<file or option>: <what is wrong>". */
mq_status mq__fail(mq_error *err, mq_status st, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Messages of the model layer name a tensor ("<name>: shape ..."); an error line must name a
 * file: prefixes path unless the message already starts with it. */
void mq__error_blame(mq_error *err, const char *path);

/* Inside a function with `mq_status st` and a `cleanup:` label. */
#define MQ_FAIL(err, code, ...)                                      \
  do {                                                               \
    st = mq__fail((err), (code), __FILE__, __LINE__, __VA_ARGS__);   \
    goto cleanup;                                                    \
  } while (0)

#define MQ_CHECK(expr)          \
  do {                          \
    st = (expr);                \
    if (st != MQ_OK) goto cleanup; \
  } while (0)

/* Allocation check: `ok` is the pointer (or a && of pointers); false becomes MQ_EFAIL
 * "out of memory allocating <bytes> bytes" (bytes: the largest request, for the message). */
#define MQ_CHECK_ALLOC(err, ok, bytes)                                                    \
  do {                                                                                    \
    if (!(ok))                                                                            \
      MQ_FAIL((err), MQ_EFAIL, "out of memory allocating %zu bytes", (size_t)(bytes));    \
  } while (0)

#endif
