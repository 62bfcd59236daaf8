/* Stopping at safe points on SIGTERM / SIGUSR1 (parallel/interrupt.h). */
#include "parallel/interrupt.h"

#include <signal.h>
#include <string.h>

/* Written by the handler only (and cleared by mq_interrupt_clear). */
static volatile sig_atomic_t pending_signal = 0;

/* The first signal is recorded; a second one (either kind) while it is pending takes the
 * signal's default action, so a run that cannot reach a safe point (hung in I/O or a
 * collective) still dies on `kill` twice or `timeout`. signal() and raise() are
 * async-signal-safe; the raised signal is delivered when this handler returns. */
static void record(int sig) {
  if (pending_signal != 0) {
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  pending_signal = sig;
}

void mq_interrupt_install(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = record;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART; /* MPI, HDF5 and file reads never see EINTR */
  (void)sigaction(SIGTERM, &sa, NULL);
  (void)sigaction(SIGUSR1, &sa, NULL);
}

int mq_interrupt_pending(void) { return (int)pending_signal; }

void mq_interrupt_clear(void) { pending_signal = 0; }

mq_status mq_interrupt_check(MPI_Comm comm, mq_error *err) {
  int sig = (int)pending_signal;
  MPI_Allreduce(MPI_IN_PLACE, &sig, 1, MPI_INT, MPI_MAX, comm);
  if (sig == 0) return MQ_OK;
  return mq__fail(err, MQ_EINTERRUPTED, __FILE__, __LINE__,
                  "interrupted by signal %d; rerun with --resume to continue", sig);
}
