#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static mq_log_level log_level = MQ_LOG_INFO;
static int log_rank = 0;
static int log_all_ranks = 0;

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double log_t0 = -1.0;
static double log_last = -1.0;

void mq_log_setup(mq_log_level level, int rank, int all_ranks) {
  log_level = level;
  log_rank = rank;
  log_all_ranks = all_ranks;
  if (log_t0 < 0) log_t0 = now_seconds();
}

int mq_log_enabled(mq_log_level level) {
  return level <= log_level && (log_rank == 0 || log_all_ranks);
}

double mq_wtime(void) {
  if (log_t0 < 0) log_t0 = now_seconds();
  return now_seconds() - log_t0;
}

double mq_log_last_line(void) { return log_last; }

void mq_log(mq_log_level level, const char *fmt, ...) {
  if (!mq_log_enabled(level)) return;
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  log_last = mq_wtime();
  const char *tag = level == MQ_LOG_WARN ? "warning: " : level == MQ_LOG_DEBUG ? "debug: " : "";
  if (log_all_ranks)
    fprintf(stderr, "[mpiquant %d] %8.2fs %s%s\n", log_rank, mq_wtime(), tag, line);
  else
    fprintf(stderr, "[mpiquant] %8.2fs %s%s\n", mq_wtime(), tag, line);
}
