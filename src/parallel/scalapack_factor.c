#include "parallel/scalapack_factor.h"
#include "parallel/ctx.h"
#include "core/factor.h"

#include <limits.h>
#include <string.h>

#include "core/log.h"
#include "core/mem.h"
#include "core/status.h"

/* Debian ships no ScaLAPACK/BLACS C header: the Fortran routines (hidden string lengths as
 * size_t) and the C interface of BLACS that we call, declared here. Int is int (LP64 build). */
void Cblacs_pinfo(int *mypnum, int *nprocs);
int Csys2blacs_handle(MPI_Comm comm);
void Cfree_blacs_system_handle(int handle);
void Cblacs_gridinit(int *context, const char *order, int nprow, int npcol);
void Cblacs_gridinfo(int context, int *nprow, int *npcol, int *myrow, int *mycol);
void Cblacs_gridexit(int context);
int numroc_(const int *n, const int *nb, const int *iproc, const int *isrcproc,
            const int *nprocs);
void descinit_(int *desc, const int *m, const int *n, const int *mb, const int *nb,
               const int *irsrc, const int *icsrc, const int *context, const int *lld,
               int *info);
void pdpotrf_(const char *uplo, const int *n, double *a, const int *ia, const int *ja,
              const int *desca, int *info, size_t uplo_len);

enum { DESC_LEN = 9 };

struct mq_dist_factor {
  MPI_Comm comm;           /* private duplicate of the caller's communicator */
  mq_ctx *ctx;             /* the caller's context: its traffic counters */
  int context;             /* BLACS grid context, valid when has_grid */
  int has_grid;
  int nprow, npcol, myrow, mycol;
  size_t n, nb;            /* global order, block size (nb ≤ n, ≥ 1) */
  size_t mloc, nloc, lld;  /* local rows, local columns, leading dimension (≥ 1) */
  int desc[DESC_LEN];      /* ScaLAPACK descriptor of B */
  double *a;               /* [lld, nloc] column-major: local blocks of B, then of L */
  int factored;            /* a holds L (lower triangle) after a successful cholesky() */
};

/* ---- block-cyclic index arithmetic (source process 0 in both dimensions) ---- */

/* How many of the global indices [0, g) process iproc owns (numroc for a prefix). */
static size_t owned_before(size_t g, size_t nb, int iproc, int nprocs) {
  size_t cycle = nb * (size_t)nprocs, rem = g % cycle, start = (size_t)iproc * nb;
  size_t extra = rem > start ? rem - start : 0;
  return g / cycle * nb + (extra < nb ? extra : nb);
}

static size_t global_index(size_t l, size_t nb, int iproc, int nprocs) {
  return (l / nb * (size_t)nprocs + (size_t)iproc) * nb + l % nb;
}

static int owner(size_t g, size_t nb, int nprocs) { return (int)(g / nb % (size_t)nprocs); }

static size_t row_of(const mq_dist_factor *f, size_t li) {
  return global_index(li, f->nb, f->myrow, f->nprow);
}

static size_t col_of(const mq_dist_factor *f, size_t lj) {
  return global_index(lj, f->nb, f->mycol, f->npcol);
}

/* First local row holding a global row ≥ g: with a ≥ b, the lower triangle of local column
 * lj (global b) is the contiguous tail of that column from first_row(b). */
static size_t first_row(const mq_dist_factor *f, size_t g) {
  return owned_before(g, f->nb, f->myrow, f->nprow);
}

/* Sum of a double buffer over comm, in place, in pieces whose count fits an int. */
static mq_status allreduce_sum(mq_dist_factor *f, double *buf, size_t len, mq_error *err) {
  for (size_t done = 0; done < len;) {
    size_t n = len - done < (size_t)INT_MAX ? len - done : (size_t)INT_MAX;
    mq__ctx_count(f->ctx, n * sizeof *buf);
    if (MPI_Allreduce(MPI_IN_PLACE, buf + done, (int)n, MPI_DOUBLE, MPI_SUM, f->comm) !=
        MPI_SUCCESS)
      return mq__fail(err, MQ_EFAIL, __FILE__, __LINE__,
                      "distributed factor: MPI_Allreduce of %zu doubles failed", n);
    done += n;
  }
  return MQ_OK;
}

/* ---- creation ---- */

/* As square as possible: the largest divisor of size not above its square root. */
static void grid_shape(int size, int *nprow, int *npcol) {
  int r = 1;
  for (int d = 1; (long)d * d <= size; d++)
    if (size % d == 0) r = d;
  *nprow = r;
  *npcol = size / r;
}

/* The BLACS grid on f->comm. BLACS keys system handles by communicator value and
 * gridinit builds its own communicators from it, so the handle is freed at once: nothing
 * stale is left for a later communicator that reuses the same value. */
static void make_grid(mq_dist_factor *f) {
  int me, nprocs, size;
  Cblacs_pinfo(&me, &nprocs); /* initialises BLACS once; MPI is already up, so no MPI_Init */
  MPI_Comm_size(f->comm, &size);
  grid_shape(size, &f->nprow, &f->npcol);
  int handle = Csys2blacs_handle(f->comm);
  f->context = handle;
  Cblacs_gridinit(&f->context, "Row", f->nprow, f->npcol);
  Cfree_blacs_system_handle(handle);
  Cblacs_gridinfo(f->context, &f->nprow, &f->npcol, &f->myrow, &f->mycol);
  f->has_grid = 1;
}

static mq_status make_layout(mq_dist_factor *f, mq_error *err) {
  mq_status st = MQ_OK;
  int n = (int)f->n, nb = (int)f->nb, zero = 0, info = 0;
  f->mloc = (size_t)numroc_(&n, &nb, &f->myrow, &zero, &f->nprow);
  f->nloc = (size_t)numroc_(&n, &nb, &f->mycol, &zero, &f->npcol);
  f->lld = f->mloc > 0 ? f->mloc : 1; /* ScaLAPACK wants lld ≥ 1 even for an empty part */
  int lld = (int)f->lld;
  descinit_(f->desc, &n, &n, &nb, &nb, &zero, &zero, &f->context, &lld, &info);
  if (info != 0) MQ_FAIL(err, MQ_EFAIL, "distributed factor: descinit failed (info %d)", info);
  size_t len = f->mloc * f->nloc;
  f->a = mq_calloc(len > 0 ? len : 1, sizeof *f->a);
  MQ_CHECK_ALLOC(err, f->a, len * sizeof *f->a);
cleanup:
  return st;
}

mq_status mq_dist_factor_create(mq_ctx *ctx, size_t cols, int nb, mq_dist_factor **out,
                                mq_error *err) {
  mq_status st = MQ_OK;
  mq_dist_factor *f = NULL;
  *out = NULL;
  /* Same arguments on every rank, so these checks agree without communication. */
  if (cols > (size_t)INT_MAX)
    MQ_FAIL(err, MQ_EINPUT, "distributed factor: %zu columns is too many", cols);
  if (nb < 1) MQ_FAIL(err, MQ_EINPUT, "distributed factor: block size %d < 1", nb);
  f = mq_calloc(1, sizeof *f);
  if (f != NULL)
    f->comm = MPI_COMM_NULL; /* nothing for destroy() to free yet */
  else
    st = mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory");
  MQ_AGREE(ctx->comm, st);
  if (MPI_Comm_dup(ctx->comm, &f->comm) != MPI_SUCCESS) {
    f->comm = MPI_COMM_NULL;
    MQ_FAIL(err, MQ_EFAIL, "distributed factor: MPI_Comm_dup failed");
  }
  f->ctx = ctx;
  f->n = cols;
  f->nb = (size_t)nb < cols ? (size_t)nb : (cols > 0 ? cols : 1);
  make_grid(f);
  MQ_AGREE(f->comm, make_layout(f, err));
  *out = f;
  f = NULL;
cleanup:
  if (f != NULL) mq_dist_factor_destroy(&f);
  return st;
}

void mq_dist_factor_destroy(mq_dist_factor **f) {
  if (f == NULL || *f == NULL) return;
  mq_dist_factor *g = *f;
  /* gridexit frees this grid's communicators only; Cblacs_exit is never called here (with 0 it
   * would finalize MPI, and BLACS stays usable for later grids). */
  if (g->has_grid) Cblacs_gridexit(g->context);
  if (g->comm != MPI_COMM_NULL) MPI_Comm_free(&g->comm);
  mq_free(g->a);
  mq_free(g);
  *f = NULL;
}

/* ---- local storage ---- */

size_t mq_dist_factor_local_len(const mq_dist_factor *f) { return f->mloc * f->nloc; }

double *mq_dist_factor_local(mq_dist_factor *f) { return f->a; }

void mq_dist_factor_local_entry(const mq_dist_factor *f, size_t k, size_t *a, size_t *b) {
  *a = row_of(f, k % f->lld);
  *b = col_of(f, k / f->lld);
}

void mq_dist_factor_set_from(mq_dist_factor *f, const double *H, const size_t *perm) {
  size_t n = f->n;
  for (size_t lj = 0; lj < f->nloc; lj++) {
    size_t hb = perm[n - 1 - col_of(f, lj)];
    double *col = f->a + lj * f->lld;
    for (size_t li = 0; li < f->mloc; li++) col[li] = H[perm[n - 1 - row_of(f, li)] * n + hb];
  }
  f->factored = 0;
}

size_t mq_dist_factor_local_cols(const mq_dist_factor *f) { return f->nloc; }

size_t mq_dist_factor_column_source(const mq_dist_factor *f, size_t lj, const size_t *perm) {
  return perm[f->n - 1 - col_of(f, lj)];
}

void mq_dist_factor_set_column(mq_dist_factor *f, size_t lj, const double *hrow,
                               const size_t *perm) {
  double *col = f->a + lj * f->lld;
  for (size_t li = 0; li < f->mloc; li++) col[li] = hrow[perm[f->n - 1 - row_of(f, li)]];
  f->factored = 0;
}

size_t mq_dist_factor_bytes(const mq_dist_factor *f) {
  return sizeof *f + f->lld * f->nloc * sizeof *f->a;
}

/* ---- Cholesky with λ escalation ---- */

/* Entries of the local lower triangle (global a ≥ b), diagonal included. */
static size_t lower_len(const mq_dist_factor *f) {
  size_t len = 0;
  for (size_t lj = 0; lj < f->nloc; lj++) len += f->mloc - first_row(f, col_of(f, lj));
  return len;
}

/* Copies the local lower triangle into (save = 1) or back from (save = 0) a packed buffer:
 * pdpotrf("L") reads and overwrites only that part, so it is all a retry needs. */
static void copy_lower(mq_dist_factor *f, double *packed, int save) {
  for (size_t lj = 0; lj < f->nloc; lj++) {
    size_t i0 = first_row(f, col_of(f, lj)), len = f->mloc - i0;
    double *col = f->a + lj * f->lld + i0;
    if (save)
      memcpy(packed, col, len * sizeof *col);
    else
      memcpy(col, packed, len * sizeof *col);
    packed += len;
  }
}

/* The global diagonal of B on every rank ([n], zero-filled, one owner per entry: the sum is
 * exact) and its mean summed in the same order as src/core/factor.c, so λ raised from 0
 * matches the local factor bit for bit. */
static mq_status global_diagonal(mq_dist_factor *f, double *diag, double *mean, mq_error *err) {
  mq_status st = MQ_OK;
  memset(diag, 0, f->n * sizeof *diag);
  for (size_t lj = 0; lj < f->nloc; lj++) {
    size_t b = col_of(f, lj);
    if (owner(b, f->nb, f->nprow) == f->myrow) diag[b] = f->a[first_row(f, b) + lj * f->lld];
  }
  MQ_CHECK(allreduce_sum(f, diag, f->n, err));
  *mean = 0.0;
  for (size_t a = 0; a < f->n; a++) *mean += diag[a] / (double)f->n;
cleanup:
  return st;
}

static void set_diagonal(mq_dist_factor *f, const double *diag, double lambda) {
  for (size_t lj = 0; lj < f->nloc; lj++) {
    size_t b = col_of(f, lj);
    if (owner(b, f->nb, f->nprow) == f->myrow)
      f->a[first_row(f, b) + lj * f->lld] = diag[b] + lambda;
  }
}

/* pdpotrf on the current local array; *pivot = the first failing pivot (1-based, global in
 * B) or 0, the same on every rank even if ScaLAPACK's info were not. */
static mq_status potrf(mq_dist_factor *f, int *pivot, mq_error *err) {
  int n = (int)f->n, one = 1, info = 0;
  pdpotrf_("L", &n, f->a, &one, &one, f->desc, &info, 1);
  int mine[2] = {info > 0 ? info : 0, info < 0 ? -info : 0}, all[2] = {0, 0};
  if (MPI_Allreduce(mine, all, 2, MPI_INT, MPI_MAX, f->comm) != MPI_SUCCESS)
    return mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "distributed factor: MPI_Allreduce failed");
  if (all[1] != 0)
    return mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "pdpotrf: argument %d is invalid", all[1]);
  *pivot = all[0];
  return MQ_OK;
}

mq_status mq_dist_factor_cholesky(mq_dist_factor *f, double *lambda, int *raises,
                                  const char *layer, mq_error *err) {
  mq_status st = MQ_OK;
  size_t saved_len = lower_len(f);
  double *saved = mq_alloc(saved_len, sizeof *saved), *diag = mq_alloc(f->n, sizeof *diag);
  if (saved == NULL || diag == NULL)
    st = mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory allocating %zu bytes",
                  saved_len * sizeof *saved);
  MQ_AGREE(f->comm, st);
  f->factored = 0;
  copy_lower(f, saved, 1);
  double mean = 0.0;
  MQ_CHECK(global_diagonal(f, diag, &mean, err));
  *raises = 0;
  for (;;) {
    set_diagonal(f, diag, *lambda);
    int pivot = 0;
    MQ_CHECK(potrf(f, &pivot, err)); /* agreed on every rank: all leave the loop together */
    if (pivot == 0) break;
    MQ_CHECK(mq_factor_raise_lambda(lambda, raises, mean, pivot, layer, err));
    copy_lower(f, saved, 0);
  }
  f->factored = 1;
cleanup:
  mq_free(saved);
  mq_free(diag);
  return st;
}

/* ---- panels of R ---- */

mq_status mq_dist_factor_panel(mq_dist_factor *f, size_t i1, size_t width, double *panel,
                               mq_error *err) {
  mq_status st = MQ_OK;
  size_t n = f->n, ld = i1 + width;
  if (!f->factored) MQ_FAIL(err, MQ_EFAIL, "distributed factor: panel requested before Cholesky");
  if (i1 > n || width > n - i1)
    MQ_FAIL(err, MQ_EFAIL, "distributed factor: panel [%zu, %zu) outside %zu columns", i1,
            i1 + width, n);
  memset(panel, 0, ld * width * sizeof *panel);
  /* R[i, j] = L[n−1−i, n−1−j]: the panel's columns j ∈ [i1, i1+width) are L's columns
   * b ∈ [n−i1−width, n−i1), and i ≤ j is a ≥ b, the local tail of each such column. */
  size_t lj0 = owned_before(n - i1 - width, f->nb, f->mycol, f->npcol);
  size_t lj1 = owned_before(n - i1, f->nb, f->mycol, f->npcol);
  for (size_t lj = lj0; lj < lj1; lj++) {
    size_t b = col_of(f, lj);
    double *out = panel + (n - 1 - b - i1) * ld;
    const double *col = f->a + lj * f->lld;
    for (size_t li = first_row(f, b); li < f->mloc; li++) out[n - 1 - row_of(f, li)] = col[li];
  }
  /* Each entry has exactly one owner and every other rank adds +0: the sum is exact. */
  MQ_CHECK(allreduce_sum(f, panel, ld * width, err));
cleanup:
  return st;
}
