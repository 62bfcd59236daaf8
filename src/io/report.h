/* The machine-readable run report (--json): per layer its scalars and phase timings (maximum
 * over ranks), plus the peak memory of every rank. Built on rank 0 with jansson. */
#ifndef MQ_IO_REPORT_H
#define MQ_IO_REPORT_H

#include <mpi.h>

#include "parallel/layer_engine.h"
#include "mpiquant.h"

typedef struct mq_report mq_report;

/* Collective-free; every rank may call, only rank 0 keeps anything. NULL path: no report. */
mq_report *mq_report_create(const char *path, int rank, int nranks, const mq_quant_options *o);
void mq_report_layer(mq_report *r, const char *name, const mq_layer_result *res, size_t rows,
                     const mq_layer_phases *ph);
/* A run-level value (root of the report): seconds of the whole run and its phases, sizes. */
void mq_report_set_number(mq_report *r, const char *key, double value);
void mq_report_set_string(mq_report *r, const char *key, const char *value);
/* Collective (gathers every rank's peak memory). Writes the file on rank 0. */
mq_status mq_report_finish(mq_report **r, MPI_Comm comm, mq_error *err);
/* Frees without writing (after a failure); accepts NULL; nulls the handle. */
void mq_report_discard(mq_report **r);

#endif
