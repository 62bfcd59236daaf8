/* One layer of a problem file, end to end: stream the samples into H (and G for Qronos),
 * choose λ (--lambda auto: held-out selection, ALGORITHMS §3.3), quantize, and measure err,
 * rel_err, err_floor and bound_linf against the samples. */
#ifndef MQ_CLI_LAYER_JOB_H
#define MQ_CLI_LAYER_JOB_H

#include "io/h5problem.h"
#include "mpiquant.h"

/* res is filled (arrays owned by res). timing_hessian: seconds spent accumulating H and G. */
mq_status mq_layer_job_run(mq_h5_problem *pf, size_t index, const mq_quant_options *opts,
                           mq_layer_result *res, double *timing_hessian, mq_error *err);

#endif
