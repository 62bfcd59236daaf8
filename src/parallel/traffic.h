/* What this rank sent through MPI, per phase of a layer: the engine names the phase it is in
 * (mq_traffic_enter), and whatever is counted while it lasts — mpiquant's own calls and
 * ScaLAPACK's (BLACS) calls inside pdpotrf alike — is added to that phase.
 *
 * The library only keeps the counters. The counting itself is done by PMPI wrappers linked
 * into the mpiquant executable (src/cli/mpi_traffic.c), so programs that link the library, and
 * their own PMPI tools, are unaffected; there the counters stay zero and mq_traffic_measured()
 * is 0. One set of counters per process (MPI is used from one thread per rank: not
 * thread-safe).
 *
 * What counts, per call (the wrappers' convention): the bytes of this rank's own data that have
 * to leave it, counted once whatever the fan-out (MPI_Type_size, so derived datatypes count
 * their data, not their extent), and one message per call:
 *   point to point  Send, Ssend, Rsend, Bsend, Isend, Issend, Irsend, Ibsend, the send side of
 *                   Sendrecv and Sendrecv_replace: count·size; nothing to MPI_PROC_NULL or to
 *                   this rank itself;
 *   Bcast           the root: count·size; the other ranks 0 bytes (one message each);
 *   Allreduce       count·size (MPI_IN_PLACE alike); Reduce: the same except the root, 0;
 *   Scan, Exscan    count·size except the last rank (whose value no one needs), 0;
 *   Reduce_scatter  the blocks of the other ranks: (Σ recvcounts − recvcounts[me])·size;
 *                   _block: recvcount·(P−1)·size;
 *   Allgather(v)    this rank's block: sendcount·size (MPI_IN_PLACE: its recvcount(s)[me]);
 *   Gather(v)       sendcount·size except the root, 0;
 *   Scatter(v)      the root: the other ranks' blocks; the others 0;
 *   Alltoall(v)     the blocks for the other ranks (its own block excluded);
 *   Barrier         0 bytes, one message.
 * Nothing is counted on a communicator of one rank: nothing leaves it. Not counted: receives
 * (they are another rank's sends), one-sided and MPI-IO calls, nonblocking collectives and
 * persistent requests (neither mpiquant nor Debian's libscalapack-openmpi uses them). */
#ifndef MQ_PARALLEL_TRAFFIC_H
#define MQ_PARALLEL_TRAFFIC_H

#include <stddef.h>

/* The phases, one table (X(ENUM_SUFFIX, name)): their order is the enum's and the report's.
 *   sums    Hessian/Gram sums and their reduction, --lambda auto, the distributed H's panel
 *           sums (its fill, run from inside the factorizer)
 *   factor  the Cholesky: pdpotrf and its λ retries, ScaLAPACK's grid and the diagonal
 *   refit   Qronos: first targets and V from a distributed H's panels, the refit's panels of R
 *   sweep   the OPTQ/Qronos sweep: the panels of a distributed R it fetches, status agreements
 *   gather  every row's Ŵ gathered, the error pass and its reductions
 *   other   the plan, the phases' own reductions, anything outside a layer */
#define MQ_TRAFFIC_PHASE_LIST(X) \
  X(SUMS, sums)                  \
  X(FACTOR, factor)              \
  X(REFIT, refit)                \
  X(SWEEP, sweep)                \
  X(GATHER, gather)              \
  X(OTHER, other)

typedef enum mq_traffic_phase {
#define MQ_TRAFFIC_ENUM(e, name) MQ_TRAFFIC_##e,
  MQ_TRAFFIC_PHASE_LIST(MQ_TRAFFIC_ENUM)
#undef MQ_TRAFFIC_ENUM
  MQ_TRAFFIC_PHASES
} mq_traffic_phase;

/* "sums", "factor", … ("?" out of range). */
const char *mq_traffic_phase_name(mq_traffic_phase p);

/* This rank's counters, as doubles (exact below 2^53 bytes). */
typedef struct mq_traffic {
  double bytes[MQ_TRAFFIC_PHASES];
  double messages[MQ_TRAFFIC_PHASES];
} mq_traffic;

/* Makes p the current phase and returns the one it replaces, so nested code restores it:
 *   mq_traffic_phase prev = mq_traffic_enter(MQ_TRAFFIC_SUMS); … mq_traffic_enter(prev); */
mq_traffic_phase mq_traffic_enter(mq_traffic_phase p);
mq_traffic_phase mq_traffic_current(void);
/* Adds to the current phase (the wrappers call it). */
void mq_traffic_count(double bytes, double messages);
/* The counters since the start or the last reset; the difference of two snapshots. */
void mq_traffic_snapshot(mq_traffic *out);
void mq_traffic_since(const mq_traffic *before, mq_traffic *delta);
void mq_traffic_reset(void);
/* 1 when the wrappers are linked and MPI is initialised through them (they set it), so the
 * counters mean something; 0 in plain library users. */
int mq_traffic_measured(void);
void mq_traffic_set_measured(int on);

#endif
