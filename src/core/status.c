#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void mq_error_clear(mq_error *err) {
  err->status = MQ_OK;
  err->msg[0] = '\0';
  err->file = NULL;
  err->line = 0;
}

const char *mq_status_name(mq_status st) {
  switch (st) {
    case MQ_OK: return "ok";
    case MQ_EFAIL: return "failure";
    case MQ_EUSAGE: return "usage error";
    case MQ_EINPUT: return "bad input";
    case MQ_ENUMERIC: return "numerical failure";
    case MQ_EINTERRUPTED: return "interrupted";
  }
  return "unknown status";
}

mq_status mq__fail(mq_error *err, mq_status st, const char *file, int line, const char *fmt, ...) {
  if (err == NULL || err->status != MQ_OK) return st; /* keep the first, most specific failure */
  err->status = st;
  err->file = file;
  err->line = line;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->msg, sizeof err->msg, fmt, ap);
  va_end(ap);
  return st;
}

void mq__error_blame(mq_error *err, const char *path) {
  if (err->status == MQ_OK || !strncmp(err->msg, path, strlen(path))) return;
  char buf[2 * sizeof err->msg];
  snprintf(buf, sizeof buf, "%s: %s", path, err->msg);
  memcpy(err->msg, buf, sizeof err->msg - 1); /* truncated to the message size */
  err->msg[sizeof err->msg - 1] = '\0';
}
