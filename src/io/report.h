/* The machine-readable run report (--json): per layer its scalars, the plan it ran with and
 * phase timings (maximum over ranks), plus the peak memory of every rank. Built on rank 0 with
 * jansson, and rewritten after every layer (a temporary file renamed over the report, so a
 * reader never sees half a file): a run that is killed or interrupted leaves a report of the
 * layers it finished, with "complete": false and the run's wall time so far. */
#ifndef MQ_IO_REPORT_H
#define MQ_IO_REPORT_H

#include <mpi.h>

#include "parallel/layer_engine.h"
#include "mpiquant.h"

typedef struct mq_report mq_report;

/* Collective-free; every rank may call, only rank 0 keeps anything. NULL path: no report.
 * Nothing is written before the first layer. */
mq_report *mq_report_create(const char *path, int rank, int nranks, const mq_quant_options *o);
/* Adds a layer and rewrites the report (rank 0). A failed rewrite is a warning here and the
 * error of mq_report_finish. */
void mq_report_layer(mq_report *r, const char *name, const mq_layer_result *res, size_t rows,
                     const mq_layer_phases *ph);
/* A run-level value (root of the report): seconds of the whole run and its phases, sizes. */
void mq_report_set_number(mq_report *r, const char *key, double value);
void mq_report_set_string(mq_report *r, const char *key, const char *value);
/* Collective (gathers every rank's peak memory). Writes the file on rank 0, "complete": true. */
mq_status mq_report_finish(mq_report **r, MPI_Comm comm, mq_error *err);
/* Frees without writing (after a failure); accepts NULL; nulls the handle. */
void mq_report_discard(mq_report **r);

/* --resume keeps the report whole across attempts. Local; only rank 0 does anything.
 * mq_report_earlier_load: before the run, the layer records of the report an interrupted run
 * left at path (NULL: none, or not a report). mq_report_earlier_carry: after the run (whatever
 * its status), every earlier record of a layer the report now at path does not list goes back
 * in before this run's own, marked "earlier_run": true, and the file is rewritten atomically;
 * frees earlier. */
struct json_t;
struct json_t *mq_report_earlier_load(const char *path, int rank);
mq_status mq_report_earlier_carry(const char *path, int rank, struct json_t *earlier,
                                  mq_error *err);

#endif
