/* Each layer's output error in `quantize`, measured from the two streams' own products: the
 * full-precision stream computes Y = XWᵀ and the quantized stream Ŷ = X̃Ŵᵀ for every linear
 * layer right after its group is quantized (model/llama.h's tap shows them), so
 *   err = ‖XWᵀ − X̃Ŵᵀ‖²_F / n,  rel_err = ‖XWᵀ − X̃Ŵᵀ‖_F / ‖XWᵀ‖_F
 * cost no GEMM of their own (the Gram matrices XᵀX and X̃ᵀX they used to need cost three
 * Hessians' worth of flops per group). Each window's sums are computed alike wherever it runs
 * and added in window order, so the values do not depend on the rank count. */
#ifndef MQ_MODEL_OUTPUT_ERRORS_H
#define MQ_MODEL_OUTPUT_ERRORS_H

#include <stddef.h>

#include "model/llama.h"
#include "mpiquant.h"

typedef struct mq_output_errors mq_output_errors;

/* Local. For nw windows of the model's seqlen (the forward context's) on this rank. */
mq_status mq_output_errors_create(const mq_llama_config *cfg, size_t seqlen, size_t nw,
                                  mq_output_errors **out, mq_error *err);
void mq_output_errors_free(mq_output_errors **oe); /* accepts NULL; nulls the handle */

/* Local. Measure linear `which` in the next forward stage (clears its sums). */
mq_status mq_output_errors_arm(mq_output_errors *oe, mq_llama_linear which, mq_error *err);
/* Whether any linear is armed; the tap to set on the forward context while one is. */
int mq_output_errors_armed(const mq_output_errors *oe);
const mq_llama_tap *mq_output_errors_tap(mq_output_errors *oe);
/* Local. The products that follow belong to window w (this rank's index) of the full-precision
 * stream (quantized = 0, first) or the quantized stream (quantized = 1, second). */
void mq_output_errors_window(mq_output_errors *oe, size_t w, int quantized);

/* Collective over ctx. err and rel_err of armed linear `which` over all ranks' windows (n
 * samples in all), then disarms it. */
mq_status mq_output_errors_finish(mq_output_errors *oe, mq_ctx *ctx, mq_llama_linear which,
                                  size_t n, double *err, double *rel_err);
/* Collective over ctx. The same for the layer whose output is the armed linears first..last
 * together (a fused qkv_proj or gate_up_proj): each window's sums added over them, then the
 * windows in window order; disarms them all. */
mq_status mq_output_errors_finish_range(mq_output_errors *oe, mq_ctx *ctx, mq_llama_linear first,
                                        mq_llama_linear last, size_t n, double *err,
                                        double *rel_err);

#endif
