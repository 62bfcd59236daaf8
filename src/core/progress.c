/* Rate-limited progress with an ETA from work (progress.h). */
#include "core/progress.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

#define DEFAULT_INTERVAL 20.0 /* seconds: a line at least every ~30 s with ticks a few s apart */

const char *const mq_progress_phase_names[MQ_PROGRESS_PHASES] = {"forward passes", "sums",
                                                                 "factor", "sweep"};

static double interval = DEFAULT_INTERVAL;

static struct {
  int active;
  double t0, last_tick;
  mq_progress_state s;
  char where[160];
} run;

void mq_progress_set_interval(double seconds) {
  interval = seconds > 0 ? seconds : DEFAULT_INTERVAL;
}

double mq_progress_interval(void) {
  const char *env = getenv("MQ_PROGRESS_INTERVAL");
  char *end = NULL;
  double v = env != NULL ? strtod(env, &end) : 0.0;
  if (env != NULL && end != env && *end == '\0' && v > 0 && isfinite(v)) return v;
  return interval;
}

void mq_progress_begin(const double work[MQ_PROGRESS_PHASES]) {
  memset(&run, 0, sizeof run);
  run.active = 1; /* counted on every rank (the report's seconds), printed where logged */
  run.t0 = run.last_tick = mq_wtime();
  for (int p = 0; p < MQ_PROGRESS_PHASES; p++) run.s.work[p] = work[p] > 0 ? work[p] : 0.0;
}

void mq_progress_forget(mq_progress_phase phase, double flops) {
  if (!run.active) return;
  run.s.work[phase] = fmax(run.s.work[phase] - flops, run.s.done[phase]);
}

void mq_progress_where(const char *fmt, ...) {
  if (!run.active) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(run.where, sizeof run.where, fmt, ap);
  va_end(ap);
}

/* Seconds left: each phase's remaining flops at the rate that phase has shown; a phase not yet
 * seen runs at the rate of all work so far (the first layer shows every phase). */
static double eta(const mq_progress_state *s) {
  double done = 0.0, secs = 0.0, left = 0.0;
  for (int p = 0; p < MQ_PROGRESS_PHASES; p++) done += s->done[p], secs += s->seconds[p];
  if (done <= 0 || secs <= 0) return -1.0;
  for (int p = 0; p < MQ_PROGRESS_PHASES; p++) {
    double rest = s->work[p] - s->done[p];
    if (rest <= 0) continue;
    double rate = s->done[p] > 0 && s->seconds[p] > 0 ? s->done[p] / s->seconds[p] : done / secs;
    left += rest / rate;
  }
  return left;
}

static void update(mq_progress_state *s) {
  double done = 0.0, work = 0.0;
  for (int p = 0; p < MQ_PROGRESS_PHASES; p++) done += s->done[p], work += s->work[p];
  s->fraction = work > 0 ? fmin(done / work, 1.0) : 0.0;
  s->elapsed = mq_wtime() - run.t0;
  s->eta = eta(s);
}

/* "45s", "5m10s", "2h05m" */
static void duration(double t, char *buf, size_t len) {
  long s = t < 0 ? 0 : (long)(t + 0.5);
  if (t < 0) snprintf(buf, len, "unknown");
  else if (s < 60) snprintf(buf, len, "%lds", s);
  else if (s < 3600) snprintf(buf, len, "%ldm%02lds", s / 60, s % 60);
  else snprintf(buf, len, "%ldh%02ldm", s / 3600, (s % 3600) / 60);
}

void mq_progress_tick(mq_progress_phase phase, double fraction, double flops) {
  if (!run.active) return;
  double now = mq_wtime();
  mq_progress_state *s = &run.s;
  s->seconds[phase] += now - run.last_tick;
  run.last_tick = now;
  /* counted work never passes the phase's total: the ETA stays meaningful if a formula is off */
  s->done[phase] = fmin(s->done[phase] + (flops > 0 ? flops : 0.0), s->work[phase]);
  if (!mq_log_enabled(MQ_LOG_INFO)) return;
  double last = mq_log_last_line();
  if (last >= 0 && now - last < mq_progress_interval()) return;
  update(s);
  char el[32], left[32];
  duration(s->elapsed, el, sizeof el);
  duration(s->eta, left, sizeof left);
  double work = 0.0;
  for (int p = 0; p < MQ_PROGRESS_PHASES; p++) work += s->work[p];
  fraction = fmin(fmax(fraction, 0.0), 1.0);
  mq_log(MQ_LOG_INFO, "%s: %s %.0f%%; run %.1f%% of %.3g flops, %s elapsed, ETA %s",
         run.where[0] ? run.where : "run", mq_progress_phase_names[phase], 100.0 * fraction,
         100.0 * s->fraction, work, el, left);
  s->lines++;
}

void mq_progress_end(void) { run.active = 0; }

void mq_progress_get(mq_progress_state *out) {
  if (run.active) update(&run.s);
  *out = run.s;
}
