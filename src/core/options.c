/* Quantization options: the documented defaults (docs/CONTRACT.md) and range checks. */
#include "core/status.h"

const char *const mq_method_names[3] = {"rtn", "optq", "qronos"};
const char *const mq_rounding_names[2] = {"nearest", "stochastic"};

void mq_quant_options_init(mq_quant_options *opts) {
  opts->method = MQ_METHOD_OPTQ;
  opts->rounding = MQ_ROUND_NEAREST;
  opts->bits = 4;
  opts->group_size = 128;
  opts->sym = 1;
  opts->act_order = 1;
  opts->static_groups = 0;
  opts->mse = 0;
  opts->lambda_mode = MQ_LAMBDA_DAMP;
  opts->damp = 0.01;
  opts->lambda = 0.0;
  opts->block_size = 128;
  opts->seed = 0;
  opts->factor = MQ_FACTOR_AUTO;
  opts->mem_per_rank = 0; /* node memory over the ranks on the node */
  opts->scale_fp16 = 0;
  opts->gram_f32 = 0;
}

mq_status mq_quant_options_check(const mq_quant_options *opts, mq_error *err) {
  mq_status st = MQ_OK;
  if (opts->bits < 2 || opts->bits > 8)
    MQ_FAIL(err, MQ_EUSAGE, "--bits: %d is out of range (2..8)", opts->bits);
  if (opts->group_size == 0 || opts->group_size < -1)
    MQ_FAIL(err, MQ_EUSAGE, "--group-size: %d is neither positive nor -1", opts->group_size);
  if (opts->block_size < 1)
    MQ_FAIL(err, MQ_EUSAGE, "--block-size: %d is not positive", opts->block_size);
  if (opts->lambda_mode == MQ_LAMBDA_DAMP && !(opts->damp >= 0.0))
    MQ_FAIL(err, MQ_EUSAGE, "--damp: %g is not a non-negative number", opts->damp);
  if (opts->lambda_mode == MQ_LAMBDA_ABSOLUTE && !(opts->lambda >= 0.0))
    MQ_FAIL(err, MQ_EUSAGE, "--lambda: %g is not a non-negative number", opts->lambda);
cleanup:
  return st;
}

size_t mq_packed_words(size_t cols, int bits) { return (cols * (size_t)bits + 31) / 32; }

size_t mq_ngroups(size_t cols, int group_size) {
  if (group_size <= 0) return 1;
  return (cols + (size_t)group_size - 1) / (size_t)group_size;
}
