/* The rows of a layer that the caller holds, end to end: prepare H (dead inputs, order, λ),
 * factor, sweep (RTN, OPTQ or Qronos), pack. The distributed engine (parallel/layer_engine.h)
 * calls it on every rank's rows; the errors against the samples are measured there
 * (measure.h), because the samples are split across ranks or stream from a file. */
#ifndef MQ_CORE_LAYER_H
#define MQ_CORE_LAYER_H

#include <stddef.h>
#include <stdint.h>

#include "core/factorizer.h"
#include "mpiquant/numerics.h"

typedef struct mq_rows_timing {
  double prepare, factor, refit, sweep, sweep_gemm, pack; /* seconds */
  double factor_flops, refit_flops, sweep_flops, sweep_gemm_flops;
} mq_rows_timing;

typedef struct mq_rows_input {
  const char *name;  /* for messages */
  uint64_t layer_id; /* stochastic-rounding key */
  size_t rows, cols;
  const float *W;    /* [rows, cols] row-major, not modified */
  double *H;         /* [cols, cols] symmetric = X̃ᵀX̃/n. CONSUMED: OPTQ/Qronos factor it in
                        place (info.factored), RTN only patches dead diagonal entries (§3.1) */
  double *G;         /* [cols, cols] = X̃ᵀX/n for Qronos, NULL when X̃ = X (G = H). CONSUMED */
  size_t row0;       /* global index of W's first row: rows may be any slice of the layer */
  const mq_factorizer *factorizer; /* NULL: replicated, factored in place in H (LAPACK) */
  /* Distributed H (OPTQ, Qronos): H is NULL, the factorizer fills its own blocks of H when
   * asked to factor (H never whole on one rank), and Hdiag [cols] is H's diagonal, which is all
   * the dead-input patch, the processing order and λ = damp·mean need. Qronos then also needs
   * qronos_panels: its first targets and, with mismatch, V (qronos.h), computed from panels
   * of H and G (collective when the factorizer is); V is NULL when X̃ = X. */
  const double *Hdiag;
  mq_status (*qronos_panels)(void *ctx, const size_t *perm, const float *Wcm, size_t rows,
                             double *target, float *V, mq_error *err);
  void *qronos_ctx;
  int qronos_mismatch; /* distributed H: X̃ ≠ X, so V is needed */
} mq_rows_input;

/* What the caller needs after the sweep to finish the error accounting. */
typedef struct mq_rows_info {
  mq_rows_timing timing;
  size_t *perm;   /* [cols] original column of processing position p (owned) */
  const double *R; /* the whole R when this rank holds it (column-major upper, processing
                      order, R Rᵀ = H+λI; for the replicated factorizer it is in.H), else NULL */
  double e0_sq;   /* Σ_rows e₀² (processing column 0's share of loss) */
  double bound0;  /* column 0's share of the OPTQ bound */
  double t_sq;    /* Qronos: Σ_rows ‖R⁻¹(G−H)w‖² (0 when G = H) */
  /* The sums of loss, bound_l2 (before Qronos' err_floor), e0_sq, bound0 and t_sq per tile of
   * MQ_ROW_TILE rows (optq.h), in row order: [ntiles, MQ_TILE_COUNT] (owned). The engine adds
   * every rank's tiles in the layer's row order, so they have the same bits on any number of
   * ranks. */
  size_t ntiles;
  double *tiles;
} mq_rows_info;

/* Fills res (arrays allocated here, released by mq_layer_result_free) except err, rel_err,
 * err_floor, bound_linf, which need the samples (set to NaN here; for Qronos bound_l2 holds
 * only the Σ_{i≥1} part until the engine adds err_floor, parallel/layer_errors.c). info may be
 * NULL; otherwise release it with mq_rows_info_free. Collective when in->factorizer is. */
mq_status mq_quantize_rows(const mq_rows_input *in, const mq_quant_options *opts,
                           mq_layer_result *res, mq_rows_info *info, mq_error *err);
void mq_rows_info_free(mq_rows_info *info);

#endif
