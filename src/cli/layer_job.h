/* One layer of a problem file, end to end and collective over a communicator (ALGORITHMS §7):
 * the calibration samples are split across ranks in fixed chunks whose H (and G) contributions
 * are summed exactly (dist/exact_sum.h), so H has the same bits on any number of ranks; the
 * output rows are split across ranks, each sweeping its own; err, rel_err, err_floor and
 * bound_linf are measured on each rank's rows and reduced. --lambda auto picks λ on held-out
 * samples (ALGORITHMS §3.3). */
#ifndef MQ_CLI_LAYER_JOB_H
#define MQ_CLI_LAYER_JOB_H

#include <mpi.h>

#include "io/h5problem.h"
#include "mpiquant.h"

/* Collective over comm. res receives this rank's rows [*row0, *row0 + res->rows) (arrays owned
 * by res) and the layer's scalars, identical on every rank. On failure every rank returns the
 * same status; the message is on the rank(s) that failed. */
mq_status mq_layer_job_run(MPI_Comm comm, mq_h5_problem *pf, size_t index,
                           const mq_quant_options *opts, mq_layer_result *res, size_t *row0,
                           mq_error *err);

#endif
