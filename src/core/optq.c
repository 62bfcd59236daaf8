#include "core/optq.h"

#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/blas.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/progress.h"
#include "core/status.h"

/* Rows per tile of the in-block sweep: 64 rows × 128 columns of float stay in L2. */

static size_t group_len(const mq_sweep *s) {
  return s->group_size > 0 ? (size_t)s->group_size : s->cols;
}

/* Where the block starting at i1 ends: at most block_size columns, and never in the middle of a
 * group that starts inside the block (its parameters need the group's current weights, which
 * only the block holds). A group starting at i1 itself may extend past the block. */
static size_t block_end(const mq_sweep *s, size_t i1) {
  size_t i2 = i1 + (size_t)s->block_size;
  if (i2 > s->cols) i2 = s->cols;
  if (s->static_groups) return i2;
  size_t g = group_len(s);
  size_t last_start = (i2 - 1) / g * g;
  size_t last_end = last_start + g < s->cols ? last_start + g : s->cols;
  if (last_start > i1 && last_end > i2) i2 = last_start;
  return i2;
}

/* Leading dimension of the block buffer: padded so its columns are not a power-of-two stride
 * apart, which would map a row tile's 128 columns onto the same few L1 sets. */
static size_t padded_ld(size_t rows) { return (rows + 15) / 16 * 16 + 16; }

/* C[:, 0:width] = the corrections the sweep has applied to columns i1 … i1+width−1 by the time
 * it reaches column i1: current weight = w + C. C is column-major with leading dimension ldc.
 * Keeping the correction apart from w (instead of forming w + C in float) keeps the error
 * e = (w − q) + C accurate to float precision of the small C, not of the large w: the §5
 * identity then holds to ~1e-7 even at 8 bits, where w − q is 1/500 of w. */
static void corrections(mq_sweep *s, size_t i1, size_t width, float *C, size_t ldc,
                        const double *dpanel, float *panel) {
  size_t rows = s->rows;
  for (size_t j = 0; j < width; j++) { /* Qronos: the refit's share T (see optq.h), else 0 */
    if (s->T != NULL) memcpy(C + j * ldc, s->T + (i1 + j) * rows, rows * sizeof *C);
    else memset(C + j * ldc, 0, rows * sizeof *C);
  }
  if ((i1 == 0 && s->T == NULL) || rows == 0) return;
  double t0 = mq_wtime();
  /* float copy of the panel R[0 : i1+width, i1 : i1+width] (ld i1+width): the GEMM operand on
   * top, the triangle R_bb below it */
  size_t ld = i1 + width;
  for (size_t k = 0; k < ld * width; k++) panel[k] = (float)dpanel[k];
  for (size_t r0 = 0; r0 < rows; r0 += MQ_ROW_BLOCK) { /* see MQ_ROW_BLOCK: same calls anywhere */
    int m = (int)(rows - r0 < MQ_ROW_BLOCK ? rows - r0 : MQ_ROW_BLOCK);
    if (i1 > 0)
      cblas_sgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, m, (int)width, (int)i1, 1.0f,
                  s->W + r0, (int)rows, panel, (int)ld, 1.0f, C + r0, (int)ldc);
    cblas_strsm(CblasColMajor, CblasRight, CblasUpper, CblasNoTrans, CblasNonUnit, m, (int)width,
                1.0f, panel + i1, (int)ld, C + r0, (int)ldc);
  }
  s->gemm_seconds += mq_wtime() - t0;
  s->gemm_flops += 2.0 * (double)rows * (double)width * (double)i1 +
                   (double)rows * (double)width * (double)width;
}

/* U_bb = R_bb⁻¹ for the block [i1, i1+nb), column-major [nb, nb], as float, from the panel
 * (ld = its leading dimension); rdiag[j] = R[i1+j, i1+j]. */
static mq_status block_inverse(const double *dpanel, size_t i1, size_t ld, size_t nb,
                               double *tmp, float *U, double *rdiag, mq_error *err) {
  mq_status st = MQ_OK;
  for (size_t j = 0; j < nb; j++) {
    for (size_t i = 0; i < nb; i++) tmp[i + j * nb] = i <= j ? dpanel[(i1 + i) + j * ld] : 0.0;
    rdiag[j] = dpanel[(i1 + j) + j * ld];
  }
  int n = (int)nb, info = 0;
  dtrtri_("U", "N", &n, tmp, &n, &info, 1, 1);
  if (info != 0) MQ_FAIL(err, MQ_ENUMERIC, "triangular inverse failed (info %d)", info);
  for (size_t k = 0; k < nb * nb; k++) U[k] = (float)tmp[k];
cleanup:
  return st;
}

/* Parameters of the group starting at processing column p for rows [r0, r1), from the current
 * weights w + C; C's column 0 is processing column c0 (C = NULL: no corrections yet). */
static void group_params(mq_sweep *s, const float *C, size_t ldc, size_t c0, size_t p,
                         size_t r0, size_t r1, float *tmp) {
  size_t end = p + group_len(s) < s->cols ? p + group_len(s) : s->cols;
  size_t len = end - p, grp = (size_t)s->col_group[p];
  for (size_t r = r0; r < r1; r++) {
    for (size_t k = 0; k < len; k++)
      tmp[k] = s->W[(p + k) * s->rows + r] + (C != NULL ? C[(p - c0 + k) * ldc + r] : 0.0f);
    mq_grid_params(s->grid, tmp, len, 1, &s->scales[r * s->ngroups + grp],
                   &s->zeros[r * s->ngroups + grp]);
  }
}

/* Per row tile: the grid parameters of the group being quantized, widened to double once per
 * group so the per-entry loop below has no gathers and vectorizes. */
typedef struct tile_state {
  size_t r0, nr;
  const double *rdiag; /* R_ii of the block's columns */
  int32_t group; /* group whose parameters are loaded; -1 = reload */
  double scale[MQ_ROW_TILE], zero[MQ_ROW_TILE];
  double step_sq; /* Σ scale² over the tile's rows, for the bound */
  double u[MQ_ROW_TILE], ed[MQ_ROW_TILE], q[MQ_ROW_TILE];
  float e[MQ_ROW_TILE];
  double loss, bound; /* this tile's sums over the block */
  int64_t clipped;
  double e0_sq, bound0; /* the parts of loss and bound from processing column 0 */
} tile_state;

static void load_group(const mq_sweep *s, int32_t grp, tile_state *t) {
  t->group = grp;
  t->step_sq = 0.0;
  for (size_t r = 0; r < t->nr; r++) {
    size_t k = (t->r0 + r) * s->ngroups + (size_t)grp;
    t->scale[r] = s->scales[k];
    t->zero[r] = s->zeros[k];
    t->step_sq += t->scale[r] * t->scale[r];
  }
}

/* Quantizes column i for the tile's rows: codes, D, e (in t->e), loss, bound, clipped.
 * Same arithmetic as mq_grid_code: code = clamp(round(x/δ) + zero), value δ·(code − zero). */
static void quantize_column(mq_sweep *s, const float *C, size_t ldc, size_t i1, size_t i,
                            tile_state *t) {
  if (t->group != s->col_group[i]) load_group(s, s->col_group[i], t);
  size_t nr = t->nr;
  const float *restrict c = C + (i - i1) * ldc + t->r0;
  float *restrict w = s->W + i * s->rows + t->r0; /* original w in, w − q out (W becomes D) */
  uint8_t *codes = s->codes + i * s->rows + t->r0;
  double rii = t->rdiag[i - i1], maxq = s->grid->maxq;
  int stochastic = s->grid->stochastic;
  if (stochastic) {
    for (size_t r = 0; r < nr; r++) {
      uint64_t row = s->row0 + t->r0 + r; /* global row: the key is rank-count independent */
      t->u[r] = mq_grid_uniform(s->grid, row, s->orig_col[i]);
    }
  }
  /* Simple loops of one type each, so the compiler vectorizes every one of them. */
  double *restrict q = t->q, *restrict ed = t->ed;
  const double *restrict scale = t->scale, *restrict zero = t->zero;
  if (i == 0 && s->first_target != NULL) /* Qronos step 1: round the best scalar for column 0 */
    for (size_t r = 0; r < nr; r++) q[r] = s->first_target[t->r0 + r];
  else
    for (size_t r = 0; r < nr; r++) q[r] = (double)w[r] + (double)c[r];
  for (size_t r = 0; r < nr; r++) q[r] /= scale[r];
  if (stochastic)
    for (size_t r = 0; r < nr; r++) q[r] = floor(q[r]) + (t->u[r] < q[r] - floor(q[r]) ? 1.0 : 0.0);
  else
    for (size_t r = 0; r < nr; r++) q[r] = rint(q[r]);
  int clipped = 0;
  for (size_t r = 0; r < nr; r++) q[r] += zero[r];
  for (size_t r = 0; r < nr; r++) clipped += (q[r] < 0.0) | (q[r] > maxq);
  for (size_t r = 0; r < nr; r++) q[r] = q[r] < 0.0 ? 0.0 : q[r]; /* not fmin: a libm call */
  for (size_t r = 0; r < nr; r++) q[r] = q[r] > maxq ? maxq : q[r];
  for (size_t r = 0; r < nr; r++) {
    double d = (double)w[r] - scale[r] * (q[r] - zero[r]); /* w − q, original w */
    ed[r] = (d + (double)c[r]) * rii;
    w[r] = (float)d;
    t->e[r] = (float)ed[r];
  }
  double loss = 0.0;
  for (size_t r = 0; r < nr; r++) loss += ed[r] * ed[r];
  for (size_t r = 0; r < nr; r++) codes[r] = (uint8_t)q[r];
  t->loss += loss;
  t->bound += 0.25 * rii * rii * t->step_sq;
  t->clipped += clipped;
  if (i == 0) {
    t->e0_sq = loss;
    t->bound0 = 0.25 * rii * rii * t->step_sq;
  }
}

/* Per-tile sums, added in tile order so the totals do not depend on the thread count. */
typedef struct tile_sums {
  double loss, bound, e0_sq, bound0;
  int64_t clipped;
} tile_sums;

/* Columns quantized before their errors are pushed to the rest of the block in one rank-8
 * update: 8 FMAs per load/store of the tile instead of 1. */
enum { MQ_SUB = 8 };

/* c[k] −= Σ_j E[j]·U[j, k] for the columns k of [k1, k2): the sub-block's errors E
 * ([m, MQ_ROW_TILE]) applied to the rest of the block. urows[j] points at U[j, ·] (stride nb). */
static void push_errors(float *C, size_t ldc, size_t r0, size_t nr, const float (*E)[MQ_ROW_TILE],
                        size_t m, const float *const *urows, size_t nb, size_t k1, size_t k2,
                        size_t i1) {
  for (size_t k = k1; k < k2; k++) {
    float u[MQ_SUB] = {0};
    for (size_t j = 0; j < m; j++) u[j] = urows[j][(k - i1) * nb];
    float *c = C + (k - i1) * ldc + r0;
    for (size_t r = 0; r < nr; r++) {
      float acc = c[r];
      for (size_t j = 0; j < MQ_SUB; j++) acc -= E[j][r] * u[j]; /* u[j] = 0 for j ≥ m */
      c[r] = acc;
    }
  }
}

/* The in-block sweep on rows [r0, r1): quantize each column, push its error to the rest of the
 * block (sub-blocks of MQ_SUB columns on a cache-resident tile). Every column of the block is
 * current at each sub-block boundary, and sub-blocks end where groups start, so group
 * parameters always see current weights. Tiles are independent: threads share them. */
static void sweep_tile(mq_sweep *s, float *C, size_t ldc, const float *U, size_t i1,
                       size_t i2, size_t r0, size_t r1, float *tmp, int params_at_i1,
                       const double *rdiag, tile_sums *sums) {
  size_t nb = i2 - i1, nr = r1 - r0;
  size_t g = group_len(s);
  tile_state t = {.r0 = r0, .nr = nr, .group = -1, .rdiag = rdiag};
  float E[MQ_SUB][MQ_ROW_TILE] = {{0}};
  const float *urows[MQ_SUB];
  for (size_t j1 = i1, j2; j1 < i2; j1 = j2) {
    j2 = j1 + MQ_SUB < i2 ? j1 + MQ_SUB : i2;
    if (!s->static_groups) {
      size_t next_start = (j1 / g + 1) * g;
      if (next_start < j2) j2 = next_start;
    }
    for (size_t i = j1; i < j2; i++) {
      if (!s->static_groups && i % g == 0 && !(i == i1 && params_at_i1)) {
        /* column 0: from the original weights (for Qronos, C already holds its refit) */
        group_params(s, i == 0 ? NULL : C, ldc, i1, i, r0, r1, tmp);
        t.group = -1;
      }
      quantize_column(s, C, ldc, i1, i, &t);
      const float *urow = U + (i - i1); /* U[i−i1, k] at urow[(k−i1)·nb] */
      urows[i - j1] = urow;
      memcpy(E[i - j1], t.e, nr * sizeof(float));
      for (size_t k = i + 1; k < j2; k++) { /* within the sub-block: rank 1 */
        float u = urow[(k - i1) * nb];
        float *c = C + (k - i1) * ldc + r0;
        for (size_t r = 0; r < nr; r++) c[r] -= t.e[r] * u;
      }
    }
    push_errors(C, ldc, r0, nr, (const float (*)[MQ_ROW_TILE])E, j2 - j1, urows, nb, j2, i2, i1);
  }
  sums->loss += t.loss;
  sums->bound += t.bound;
  sums->clipped += t.clipped;
  sums->e0_sq += t.e0_sq;
  sums->bound0 += t.bound0;
}

/* The tiles of one block, shared among as many threads as BLAS uses (OPENBLAS_NUM_THREADS),
 * so one knob sets the threads of a rank. */
static void sweep_block(mq_sweep *s, float *C, size_t ldc, const float *U, size_t i1, size_t i2,
                        float *tmp, size_t tmp_len, int params_at_i1, const double *rdiag,
                        tile_sums *sums, int threads) {
  size_t ntiles = (s->rows + MQ_ROW_TILE - 1) / MQ_ROW_TILE;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (size_t tile = 0; tile < ntiles; tile++) {
    size_t r0 = tile * MQ_ROW_TILE;
    size_t r1 = r0 + MQ_ROW_TILE < s->rows ? r0 + MQ_ROW_TILE : s->rows;
#ifdef _OPENMP
    float *mine = tmp + (size_t)omp_get_thread_num() * tmp_len;
#else
    float *mine = tmp;
#endif
    sweep_tile(s, C, ldc, U, i1, i2, r0, r1, mine, params_at_i1, rdiag, &sums[tile]);
  }
}

mq_status mq_optq_sweep(mq_sweep *s, mq_error *err) {
  mq_status st = MQ_OK;
  size_t rows = s->rows, cols = s->cols, B = (size_t)s->block_size;
  size_t g = group_len(s);
  /* Only a positive group size wider than a block needs a wider window (see below). */
  size_t maxw = (!s->static_groups && s->group_size > 0 && g > B) ? g : B;
  if (maxw > cols) maxw = cols;
  size_t ldc = padded_ld(rows);
  float *C = mq_alloc(ldc * maxw, sizeof *C);
  float *U = mq_alloc(B * B, sizeof *U);
  float *panel = mq_alloc(cols * maxw, sizeof *panel);
  double *dpanel = mq_alloc(cols * maxw, sizeof *dpanel);
  double *Utmp = mq_alloc(B * B, sizeof *Utmp), *rdiag = mq_alloc(B, sizeof *rdiag);
  int threads = openblas_get_num_threads();
  if (threads < 1) threads = 1;
  float *tmp = mq_alloc((size_t)threads * g, sizeof *tmp); /* one group's values per thread */
  size_t ntiles = (rows + MQ_ROW_TILE - 1) / MQ_ROW_TILE;
  tile_sums *sums = mq_calloc(ntiles, sizeof *sums);
  if (!(C && U && Utmp && rdiag && tmp && panel && dpanel && sums))
    st = mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory allocating %zu bytes",
                  cols * maxw * sizeof *dpanel);
  MQ_CHECK(mq_factorizer_agree(s->factor, st)); /* the panel fetches below may be collective */
  s->loss = s->bound = s->e0_sq = s->bound0 = 0.0;
  s->clipped = 0;
  s->gemm_seconds = s->gemm_flops = 0.0;
  for (size_t i1 = 0, i2; i1 < cols; i1 = i2) {
    i2 = block_end(s, i1);
    /* A group starting here that outlives the block gets its parameters from its full span. */
    int wide_group = !s->static_groups && i1 % g == 0 && i1 + g > i2 && i2 < cols;
    size_t gend = i1 + g < cols ? i1 + g : cols;
    /* At column 0 there are no corrections yet: no wide window needed. */
    size_t width = wide_group && i1 > 0 ? gend - i1 : i2 - i1;
    /* every rank fetches every panel, also one without rows: the fetch may be collective */
    MQ_CHECK(s->factor->panel(s->factor->ctx, i1, width, dpanel, err));
    MQ_CHECK(block_inverse(dpanel, i1, i1 + width, i2 - i1, Utmp, U, rdiag, err));
    if (rows == 0) continue;
    corrections(s, i1, width, C, ldc, dpanel, panel);
    if (wide_group) group_params(s, i1 == 0 ? NULL : C, ldc, i1, i1, 0, rows, tmp);
    sweep_block(s, C, ldc, U, i1, i2, tmp, g, wide_group, rdiag, sums, threads);
    mq_progress_tick(MQ_PROGRESS_SWEEP, (double)i2 / (double)cols, /* progress.h: rows·cols² */
                     (double)rows * (double)(i2 - i1) * (double)cols);
  }
  for (size_t tile = 0; tile < ntiles; tile++) {
    s->loss += sums[tile].loss;
    s->bound += sums[tile].bound;
    s->clipped += sums[tile].clipped;
    s->e0_sq += sums[tile].e0_sq;
    s->bound0 += sums[tile].bound0;
    if (s->tiles == NULL) continue;
    double *t = s->tiles + tile * MQ_TILE_COUNT;
    t[MQ_TILE_LOSS] = sums[tile].loss;
    t[MQ_TILE_BOUND] = sums[tile].bound;
    t[MQ_TILE_E0] = sums[tile].e0_sq;
    t[MQ_TILE_BOUND0] = sums[tile].bound0;
  }
cleanup:
  mq_free(C);
  mq_free(U);
  mq_free(panel);
  mq_free(dpanel);
  mq_free(Utmp);
  mq_free(rdiag);
  mq_free(tmp);
  mq_free(sums);
  return st;
}
