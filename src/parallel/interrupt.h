/* Walltime-safe runs: SIGTERM and SIGUSR1 (what scancel, a walltime and Slurm's
 * `--signal=USR1@T` send) stop a long collective loop at its next safe point, on every rank
 * together, instead of killing it in the middle of a write.
 *
 * The handler only records the signal (an async-signal-safe flag; SA_RESTART, so no system call
 * of MPI or HDF5 sees EINTR). The loop calls mq_interrupt_check() where stopping leaves a
 * consistent state (quantize: after a group of layers is written and flushed, model/calibrate.c):
 * one MPI_Allreduce MAX of the flag, so a signal that reached any rank stops all of them at the
 * same check. The run then ends with MQ_EINTERRUPTED and the error line
 *   mpiquant: error: interrupted by signal N; rerun with --resume to continue
 * and whatever it has written stays usable by --resume (never marked complete). A second
 * SIGTERM/SIGUSR1 before that takes the signal's default action (the process ends at once). */
#ifndef MQ_PARALLEL_INTERRUPT_H
#define MQ_PARALLEL_INTERRUPT_H

#include <mpi.h>

#include "core/status.h"

/* MQ_EINTERRUPTED (5, mpiquant/numerics.h): the largest status, so agreement (MPI_MAX) keeps
 * it over any other rank's. */

/* Local. Installs the recording handler for SIGTERM and SIGUSR1 on this process. Only for code
 * that calls mq_interrupt_check(): elsewhere the signals would be recorded and ignored. */
void mq_interrupt_install(void);

/* Local, async-signal-safe to read: the last signal recorded on this rank, 0 when none. */
int mq_interrupt_pending(void);

/* Collective over comm. MQ_OK when no rank has recorded a signal; else MQ_EINTERRUPTED on
 * every rank, each with the message "interrupted by signal N; rerun with --resume to continue"
 * in err (N the largest signal number recorded on any rank). */
mq_status mq_interrupt_check(MPI_Comm comm, mq_error *err);

/* Local. Forgets a recorded signal (tests; a library caller that handled it). */
void mq_interrupt_clear(void);

#endif
