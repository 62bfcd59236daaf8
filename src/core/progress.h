/* Progress of a long run (`quantize`) at default verbosity: a line at most every interval
 * seconds with where the run is (a label such as "block 3/32 model.layers.2.mlp.down_proj"),
 * the phase and how far it is, and an ETA of the whole run computed from work — flops done and
 * left in each phase at the rate each phase has shown so far — not from layer counts.
 *
 * Process-wide, like the logger (log.h): the long loops of every layer call mq_progress_tick
 * without a handle. Every rank counts (a tick costs one clock read); only a rank that logs at
 * info level (rank 0 by default) prints. Not thread-safe: call from the thread that logs. */
#ifndef MQ_CORE_PROGRESS_H
#define MQ_CORE_PROGRESS_H

typedef enum mq_progress_phase {
  MQ_PROGRESS_FORWARD = 0, /* forward passes of both streams over this rank's windows */
  MQ_PROGRESS_SUMS = 1,    /* the Gram sums X̃ᵀX̃ (and X̃ᵀX, XᵀX) of this rank's samples */
  MQ_PROGRESS_FACTOR = 2,  /* the factor of H + λI */
  MQ_PROGRESS_SWEEP = 3,   /* the OPTQ/Qronos sweep over this rank's rows */
  MQ_PROGRESS_PHASES = 4
} mq_progress_phase;

extern const char *const mq_progress_phase_names[MQ_PROGRESS_PHASES];

/* Seconds between lines (counted from the last line any logger call printed); <= 0 restores the
 * default, 20 s. The environment variable MQ_PROGRESS_INTERVAL, when set, wins over both (a job
 * script can tune a run without changing its command line). */
void mq_progress_set_interval(double seconds);
double mq_progress_interval(void);

/* Starts a run: work[p] is the flops this rank will do in phase p (0: none). The run's clock
 * starts now; every counter is cleared. */
void mq_progress_begin(const double work[MQ_PROGRESS_PHASES]);
/* Work the run will not do after all (layers an interrupted run already wrote). */
void mq_progress_forget(mq_progress_phase phase, double flops);
/* Where the run is, printf-style (copied; truncated at 160 bytes). */
void mq_progress_where(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* `flops` of `phase` just done; `fraction` (0..1) of the current step of that phase (the
 * layer's sums, the stage's windows) is now behind. Prints a line when the interval is up. */
void mq_progress_tick(mq_progress_phase phase, double fraction, double flops);
/* Ends the run (later ticks are ignored until the next begin). */
void mq_progress_end(void);

/* What the run has seen so far on this rank (all 0 before the first begin). */
typedef struct mq_progress_state {
  double done[MQ_PROGRESS_PHASES], work[MQ_PROGRESS_PHASES]; /* flops */
  double seconds[MQ_PROGRESS_PHASES]; /* wall time attributed to each phase (the time since the
                                         previous tick goes to the phase of the tick) */
  double elapsed, eta;  /* seconds since begin; estimated seconds left (negative: unknown) */
  double fraction;      /* Σ done / Σ work: the run's share of its flops behind it */
  int lines;            /* progress lines printed */
} mq_progress_state;
void mq_progress_get(mq_progress_state *s);

#endif
