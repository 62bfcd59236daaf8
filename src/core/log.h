/* Leveled logging with a "[mpiquant]" prefix. By default only rank 0 logs; the CLI sets the
 * rank and level. The level is tested before any formatting. */
#ifndef MQ_CORE_LOG_H
#define MQ_CORE_LOG_H

typedef enum mq_log_level {
  MQ_LOG_QUIET = 0,
  MQ_LOG_ERROR = 1,
  MQ_LOG_WARN = 2,
  MQ_LOG_INFO = 3,
  MQ_LOG_DEBUG = 4
} mq_log_level;

void mq_log_setup(mq_log_level level, int rank, int all_ranks);
int mq_log_enabled(mq_log_level level);
void mq_log(mq_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Seconds since mq_log_setup (monotonic clock); also used for timings. */
double mq_wtime(void);
/* mq_wtime() when this process last printed a line; negative before the first. The progress
 * reporter (progress.h) is quiet while other lines keep coming. */
double mq_log_last_line(void);

#define MQ_INFO(...) do { if (mq_log_enabled(MQ_LOG_INFO)) mq_log(MQ_LOG_INFO, __VA_ARGS__); } while (0)
#define MQ_WARN(...) do { if (mq_log_enabled(MQ_LOG_WARN)) mq_log(MQ_LOG_WARN, __VA_ARGS__); } while (0)
#define MQ_DEBUG(...) do { if (mq_log_enabled(MQ_LOG_DEBUG)) mq_log(MQ_LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
