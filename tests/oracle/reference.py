#!/usr/bin/python3
"""Independent reference implementation of mpiquant's numerics (ALGORITHMS.md §2-§4).

Deliberately simple: float64 everywhere, one column at a time (no blocking), U computed the
GPTQ way (Cholesky, inverse, Cholesky of the inverse) so that it shares no code path with the
C program (which uses the reversal-permutation route).  Used as the test oracle by
check_layer.py; `reference.py selftest` checks the oracle against itself and against an inline
blocked GPTQ-style implementation.

API
  quantize_layer(W, H, *, method, bits, group_size, sym, act_order, static_groups, mse,
                 damp=None, lam=None) -> dict
  objective(W, X, Xq, What) -> (err, rel_err)            (X-based, SPEC "err"/"rel_err")
  objective_h(W, H, What)   -> (err, rel_err)            (H-only problems)
  loss_identity(W, H, lam, What) -> Σ_rows (w-ŵ)ᵀ(H+λI)(w-ŵ) with the §3.1 dead fix

Only numpy is used.  Qronos: add a `qronos_sweep` beside `optq_sweep` and dispatch on method
in quantize_layer (the preparation, grid and group handling are shared).
"""
import sys

import numpy as np

MSE_GRID = 100       # p = 1 - i/100
MSE_STEPS = 80       # i = 0..79  -> p = 1 .. 0.21
MSE_NORM = 2.4
LAMBDA_RAISES = 6    # ALGORITHMS §3.4: ×10, up to 6 times


# ----------------------------------------------------------------------------------------------
# §2 grid
# ----------------------------------------------------------------------------------------------
def _f32(a):
    """Round to float32 and return as float64 (the stored scale is float32)."""
    return np.asarray(a, dtype=np.float64).astype(np.float32).astype(np.float64)


def _range(x, sym):
    """xmin, xmax per row of x [rows, k] after the 0-inclusion, sym and all-zero rules."""
    xmin = np.minimum(x.min(axis=1), 0.0)
    xmax = np.maximum(x.max(axis=1), 0.0)
    if sym:
        xmax = np.maximum(np.abs(xmin), xmax)
        xmin = -xmax
    both0 = (xmin == 0.0) & (xmax == 0.0)
    xmin = np.where(both0, -1.0, xmin)
    xmax = np.where(both0, 1.0, xmax)
    return xmin, xmax


def _scale_zero(xmin, xmax, bits, sym):
    maxq = 2 ** bits - 1
    scale = _f32((xmax - xmin) / maxq)
    if sym:
        zero = np.full(scale.shape, 2.0 ** (bits - 1))
    else:
        zero = np.rint(-xmin / scale)
    return scale, zero


def quant_codes(x, scale, zero, bits):
    """Codes of x (any shape) with broadcastable scale/zero; also the 'clipped' mask."""
    maxq = 2 ** bits - 1
    raw = np.rint(x / scale) + zero
    clipped = (raw < 0) | (raw > maxq)
    return np.clip(raw, 0, maxq), clipped


def quant_codes_guided(x, scale, zero, bits, guide, tie_tol):
    """quant_codes, but where x/scale is within tie_tol·(|x/scale|+1) of a rounding tie and
    `guide` holds the other candidate code, take the guide's code (a rounding tie is
    ambiguous at floating-point noise level; see check_layer.py).  Returns (codes, clipped,
    number of codes taken from the guide)."""
    c, clipped = quant_codes(x, scale, zero, bits)
    if guide is None:
        return c, clipped, 0
    maxq = 2 ** bits - 1
    raw = x / scale
    fl = np.floor(raw)
    near = np.abs(raw - fl - 0.5) <= tie_tol * (np.abs(raw) + 1.0)
    lo = np.clip(fl + zero, 0, maxq)
    hi = np.clip(fl + 1.0 + zero, 0, maxq)
    take = near & ((guide == lo) | (guide == hi)) & (guide != c)
    return np.where(take, guide, c), clipped, int(np.sum(take))


def dequant(codes, scale, zero):
    return scale * (codes - zero)


def grid_params(x, bits, sym, mse):
    """Per-row (scale, zero) for x [rows, k]: GPTQ's quant.py find_params semantics."""
    x = np.asarray(x, dtype=np.float64)
    xmin, xmax = _range(x, sym)
    scale, zero = _scale_zero(xmin, xmax, bits, sym)
    if not mse:
        return scale, zero
    best = np.full(x.shape[0], np.inf)
    for i in range(MSE_STEPS):
        p = 1.0 - i / MSE_GRID
        xmin1 = p * xmin
        xmax1 = p * xmax
        s1 = _f32((xmax1 - xmin1) / (2 ** bits - 1))
        if sym:
            z1 = np.full(s1.shape, 2.0 ** (bits - 1))
        else:
            z1 = np.rint(-xmin1 / s1)
        c, _ = quant_codes(x, s1[:, None], z1[:, None], bits)
        err = np.sum(np.abs(dequant(c, s1[:, None], z1[:, None]) - x) ** MSE_NORM, axis=1)
        better = err < best
        best = np.where(better, err, best)
        scale = np.where(better, s1, scale)
        zero = np.where(better, z1, zero)
    return scale, zero


# ----------------------------------------------------------------------------------------------
# §3 preparing H
# ----------------------------------------------------------------------------------------------
def dead_fix(W, H):
    """Returns (W', H', dead) with H'_jj = 1 and W'[:, j] = 0 where diag(H)_j == 0."""
    W = np.array(W, dtype=np.float64)
    H = np.array(H, dtype=np.float64)
    dead = np.diag(H) == 0.0
    idx = np.nonzero(dead)[0]
    H[idx, idx] = 1.0
    W[:, idx] = 0.0
    return W, H, dead


def chol_inv_upper(A):
    """U upper triangular with UᵀU = A⁻¹, GPTQ route: L = chol(A); A⁻¹ = L⁻ᵀL⁻¹; U = chol(A⁻¹)ᵀ.
    Raises np.linalg.LinAlgError when A is not positive definite."""
    L = np.linalg.cholesky(A)
    Linv = np.linalg.inv(L)            # dense inverse of a triangular matrix: fine for tests
    Ainv = Linv.T @ Linv
    Ainv = 0.5 * (Ainv + Ainv.T)
    return np.linalg.cholesky(Ainv).T


def chol_inv_upper_reversal(A):
    """Alternative route of ALGORITHMS §3.4 (J A J = L Lᵀ ⇒ U = J L⁻¹ J); selftest only."""
    J = A[::-1, ::-1]
    L = np.linalg.cholesky(J)
    Linv = np.linalg.inv(L)
    return np.ascontiguousarray(Linv[::-1, ::-1])


def factor_with_retries(H, lam, chol=chol_inv_upper):
    """U for H + λI, raising λ ×10 (up to LAMBDA_RAISES times) when Cholesky fails."""
    n = H.shape[0]
    for attempt in range(LAMBDA_RAISES + 1):
        try:
            U = chol(H + lam * np.eye(n))
            if np.all(np.isfinite(U)) and np.all(np.diag(U) > 0):
                return U, lam, attempt
        except np.linalg.LinAlgError:
            pass
        if attempt == LAMBDA_RAISES:
            break
        lam *= 10.0
    raise np.linalg.LinAlgError("Cholesky failed after %d raises of lambda" % LAMBDA_RAISES)


def ngroups_of(cols, group_size):
    if group_size == -1:
        return 1
    return (cols + group_size - 1) // group_size


# ----------------------------------------------------------------------------------------------
# §4 sweeps
# ----------------------------------------------------------------------------------------------
def _group_setup(W0, perm, *, bits, group_size, sym, static_groups, mse):
    """Returns (scales, zeros, g_idx, col_group, dynamic) for the processing-order sweep.
    col_group[p] = group used by processing position p; scales/zeros [rows, ngroups] filled
    now for static cases, later (dynamic=True) by the sweep."""
    rows, cols = W0.shape
    ng = ngroups_of(cols, group_size)
    scales = np.zeros((rows, ng))
    zeros = np.zeros((rows, ng))
    g_idx = np.zeros(cols, dtype=np.int64)
    if group_size == -1:
        scales[:, 0], zeros[:, 0] = grid_params(W0, bits, sym, mse)
        col_group = np.zeros(cols, dtype=np.int64)
        return scales, zeros, g_idx, col_group, False
    if static_groups:
        for g in range(ng):
            sl = slice(g * group_size, min((g + 1) * group_size, cols))
            scales[:, g], zeros[:, g] = grid_params(W0[:, sl], bits, sym, mse)
        g_idx = np.arange(cols) // group_size
        col_group = g_idx[perm]
        return scales, zeros, g_idx, col_group, False
    col_group = np.arange(cols) // group_size          # processing position -> group
    g_idx[perm] = col_group
    return scales, zeros, g_idx, col_group, True


def optq_sweep(Wp, U, scales, zeros, col_group, dynamic, *, bits, group_size, sym, mse,
               guide=None, tie_tol=0.0):
    """Unblocked OPTQ on processing-order weights Wp [rows, cols] (modified in place).
    guide: optional codes [rows, cols] in processing order followed at rounding ties.
    Returns (codes_p, loss, clipped_count, per_row_e2, ties_taken)."""
    rows, cols = Wp.shape
    codes = np.zeros((rows, cols))
    e2 = np.zeros(rows)
    clipped = 0
    ties = 0
    for i in range(cols):
        g = col_group[i]
        if dynamic and i % group_size == 0:
            scales[:, g], zeros[:, g] = grid_params(Wp[:, i:i + group_size], bits, sym, mse)
        w = Wp[:, i]
        c, clip, t = quant_codes_guided(w, scales[:, g], zeros[:, g], bits,
                                        None if guide is None else guide[:, i], tie_tol)
        ties += t
        clipped += int(clip.sum())
        q = dequant(c, scales[:, g], zeros[:, g])
        codes[:, i] = c
        e = (w - q) / U[i, i]
        Wp[:, i + 1:] -= np.outer(e, U[i, i + 1:])
        e2 += e * e
    return codes, float(e2.sum()), clipped, e2, ties


def quantize_layer(W, H, *, method="optq", bits=4, group_size=128, sym=True, act_order=True,
                   static_groups=False, mse=False, damp=None, lam=None, guide=None,
                   tie_tol=1e-4):
    """Quantize one layer.  W [rows, cols], H [cols, cols] = X̃ᵀX̃/n (before the dead fix).
    Exactly one of damp / lam (absolute λ); damp defaults to 0.01.
    guide: optional codes [rows, cols] (original order) of another implementation; where this
    reference meets a rounding tie (x/δ within tie_tol·(|x/δ|+1) of k+1/2) and the guide chose
    the other neighbour, the guide's code is taken, so both follow the same trajectory.

    Returns dict: codes [rows, cols] (original column order, int64), scales [rows, ngroups]
    (float32 values as float64), zeros [rows, ngroups] (int64), g_idx [cols], lambda, loss,
    dead [cols] bool, What (dequantized, original order), perm, clipped, bound_l2,
    lambda_raises, U (processing order)."""
    if method not in ("rtn", "optq"):
        raise NotImplementedError("method %r not implemented in the reference" % method)
    if not (2 <= bits <= 8):
        raise ValueError("bits must be 2..8")
    if not (group_size == -1 or group_size > 0):
        raise ValueError("group_size must be -1 or > 0")
    W0, Hf, dead = dead_fix(W, H)
    rows, cols = W0.shape
    if lam is None:
        lam = (0.01 if damp is None else damp) * float(np.mean(np.diag(Hf)))
    lam = float(lam)

    if method == "rtn":
        perm = np.arange(cols)
    elif act_order:
        perm = np.argsort(-np.diag(Hf), kind="stable")
    else:
        perm = np.arange(cols)

    # RTN never reorders: its groups are over the original order, all from W0 (static).
    scales, zeros, g_idx, col_group, dynamic = _group_setup(
        W0, perm, bits=bits, group_size=group_size, sym=sym,
        static_groups=static_groups or method == "rtn", mse=mse)

    Hp = Hf[np.ix_(perm, perm)]
    U, lam_used, raises = factor_with_retries(Hp, lam)
    A = Hp + lam_used * np.eye(cols)

    Wp = W0[:, perm].copy()
    guide_p = None if guide is None else np.asarray(guide)[:, perm]
    if method == "rtn":
        codes_p, clip, ties = quant_codes_guided(Wp, scales[:, col_group], zeros[:, col_group],
                                                 bits, guide_p, tie_tol)
        clipped = int(clip.sum())
        D = Wp - dequant(codes_p, scales[:, col_group], zeros[:, col_group])
        loss = float(np.einsum("ri,ij,rj->", D, A, D))
    else:
        codes_p, loss, clipped, _, ties = optq_sweep(Wp, U, scales, zeros, col_group, dynamic,
                                                     bits=bits, group_size=group_size, sym=sym,
                                                     mse=mse, guide=guide_p, tie_tol=tie_tol)
    codes = np.zeros((rows, cols), dtype=np.int64)
    codes[:, perm] = codes_p.astype(np.int64)
    What = dequant(codes, scales[:, g_idx], zeros[:, g_idx])
    # §6 bound: Σ_rows Σ_i δ_i² / (4 U_ii²)  (processing order)
    delta = scales[:, col_group]
    bound_l2 = float(np.sum(delta ** 2 / (4.0 * np.diag(U) ** 2)[None, :]))
    return dict(codes=codes, scales=scales, zeros=zeros.astype(np.int64), g_idx=g_idx,
                perm=perm, dead=dead, What=What, W0=W0, loss=loss, clipped=clipped,
                bound_l2=bound_l2, U=U, ties_taken=ties,
                **{"lambda": lam_used, "lambda_raises": raises})


# ----------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------
def hessian(X):
    X = np.asarray(X, dtype=np.float64)
    return X.T @ X / X.shape[0]


def objective(W, X, Xq, What):
    """err = ‖XWᵀ − X̃Ŵᵀ‖²_F / n, rel_err = ‖XWᵀ − X̃Ŵᵀ‖_F / ‖XWᵀ‖_F (X̃ = Xq or X)."""
    X = np.asarray(X, dtype=np.float64)
    Xt = X if Xq is None else np.asarray(Xq, dtype=np.float64)
    Y = X @ np.asarray(W, dtype=np.float64).T
    R = Y - Xt @ np.asarray(What, dtype=np.float64).T
    num = float(np.sum(R * R))
    den = float(np.sum(Y * Y))
    return num / X.shape[0], (np.sqrt(num / den) if den > 0 else float("nan"))


def objective_h(W, H, What):
    """The same from H alone: Σ_rows (w−ŵ)ᵀH(w−ŵ), relative to Σ_rows wᵀHw."""
    W = np.asarray(W, dtype=np.float64)
    H = np.asarray(H, dtype=np.float64)
    D = W - np.asarray(What, dtype=np.float64)
    num = float(np.einsum("ri,ij,rj->", D, H, D))
    den = float(np.einsum("ri,ij,rj->", W, H, W))
    return num, (np.sqrt(max(num, 0.0) / den) if den > 0 else float("nan"))


def loss_identity(W, H, lam, What):
    """Σ_rows (w−ŵ)ᵀ(H+λI)(w−ŵ) with w = W dead-zeroed, H with dead diag set to 1 (§5)."""
    W0, Hf, _ = dead_fix(W, H)
    D = W0 - np.asarray(What, dtype=np.float64)
    A = Hf + lam * np.eye(Hf.shape[0])
    return float(np.einsum("ri,ij,rj->", D, A, D))


# ----------------------------------------------------------------------------------------------
# selftest
# ----------------------------------------------------------------------------------------------
def _blocked_gptq(W, H, *, bits, group_size, sym, mse, damp, block, chol):
    """GPTQ's fasterquant structure (lazy block updates, act_order off) with ALGORITHMS' group
    rule: a group's parameters come from the CURRENT weights, so pending updates from the
    current block are applied to the part of the group beyond the block before find_params."""
    W, H, dead = dead_fix(W, H)
    rows, cols = W.shape
    lam = damp * float(np.mean(np.diag(H)))
    U = chol(H + lam * np.eye(cols))
    ng = ngroups_of(cols, group_size)
    scales = np.zeros((rows, ng))
    zeros = np.zeros((rows, ng))
    if group_size == -1:
        scales[:, 0], zeros[:, 0] = grid_params(W, bits, sym, mse)
    Q = np.zeros((rows, cols))
    loss = 0.0
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        W1 = W[:, i1:i2].copy()
        E1 = np.zeros((rows, i2 - i1))
        for k in range(i2 - i1):
            i = i1 + k
            if group_size != -1 and i % group_size == 0:
                ge = min(i + group_size, cols)
                cur = W1[:, k:min(ge, i2) - i1]
                if ge > i2:   # current weights beyond the block = W − pending block updates
                    tail = W[:, i2:ge] - E1[:, :k] @ U[i1:i, i2:ge]
                    cur = np.concatenate([cur, tail], axis=1)
                scales[:, i // group_size], zeros[:, i // group_size] = \
                    grid_params(cur, bits, sym, mse)
            g = 0 if group_size == -1 else i // group_size
            w = W1[:, k]
            c, _ = quant_codes(w, scales[:, g], zeros[:, g], bits)
            Q[:, i] = c
            e = (w - dequant(c, scales[:, g], zeros[:, g])) / U[i, i]
            W1[:, k + 1:] -= np.outer(e, U[i, i + 1:i2])
            E1[:, k] = e
            loss += float(e @ e)
        W[:, i2:] -= E1 @ U[i1:i2, i2:]
    return Q.astype(np.int64), loss, scales


def _rand_problem(rng, rows, cols, n, corr=False):
    X = rng.standard_normal((n, cols))
    if corr:
        M = rng.standard_normal((cols, cols)) * np.logspace(0, -2.5, cols)[None, :]
        X = X @ M.T
    X[:, rng.choice(cols, 3, replace=False)] *= rng.uniform(10, 50, 3)
    W = rng.standard_normal((rows, cols)) * 0.1
    return W, X


def selftest(verbose=True):
    rng = np.random.default_rng(1234)
    fails = []

    def check(cond, msg):
        if verbose or not cond:
            print(("ok   " if cond else "FAIL ") + msg)
        if not cond:
            fails.append(msg)

    # (0) both U routes agree and satisfy U A Uᵀ = I
    W, X = _rand_problem(rng, 8, 40, 100, corr=True)
    H = hessian(X)
    A = H + 0.01 * np.mean(np.diag(H)) * np.eye(40)
    U1, U2 = chol_inv_upper(A), chol_inv_upper_reversal(A)
    check(np.allclose(U1, U2, rtol=1e-7, atol=1e-10 * np.abs(U1).max()),
          "GPTQ and reversal routes give the same U")
    check(np.allclose(U1 @ A @ U1.T, np.eye(40), atol=1e-8), "U (H+lam I) U^T = I")

    # (i) §5 identity for the reference's own loss, many option combinations
    combos = [dict(method="optq", bits=b, group_size=g, sym=s, act_order=a, static_groups=st,
                   mse=m)
              for b, g, s, a, st, m in [(4, 128, True, True, False, False),
                                        (3, 32, False, True, False, False),
                                        (2, -1, False, False, False, True),
                                        (8, 32, True, True, True, False),
                                        (4, 32, False, True, True, True),
                                        (3, 24, True, False, False, True)]]
    combos += [dict(method="rtn", bits=b, group_size=g, sym=s, act_order=False,
                    static_groups=False, mse=m)
               for b, g, s, m in [(4, 32, True, False), (2, -1, False, True), (8, 128, False,
                                                                               False)]]
    for k, opts in enumerate(combos):
        W, X = _rand_problem(rng, 12, 70, 150, corr=(k % 2 == 0))
        X[:, 5] = 0.0   # a dead input
        H = hessian(X)
        r = quantize_layer(W, H, damp=0.01, **opts)
        ident = loss_identity(W, H, r["lambda"], r["What"])
        rel = abs(ident - r["loss"]) / max(abs(ident), 1e-300)
        check(rel < 1e-9, "identity %s: loss %.12g vs (w-q)'A(w-q) %.12g (rel %.1e)"
              % (_fmt(opts), r["loss"], ident, rel))
        check(np.all(r["What"][:, 5] == 0.0) and bool(r["dead"][5]),
              "dead column dequantizes to 0 (%s)" % _fmt(opts))
        if opts["method"] == "optq" and r["clipped"] == 0:
            check(r["loss"] <= r["bound_l2"] * (1 + 1e-12), "loss <= bound_l2 (%s)" % _fmt(opts))

    # (ii) RTN codes equal direct rounding with per-group params
    W, X = _rand_problem(rng, 10, 100, 120)
    H = hessian(X)
    for bits, g, sym in [(4, 32, True), (3, -1, False), (2, 48, False), (8, 128, True)]:
        r = quantize_layer(W, H, method="rtn", bits=bits, group_size=g, sym=sym,
                           act_order=True, static_groups=False, mse=False, damp=0.01)
        maxq = 2 ** bits - 1
        direct = np.zeros_like(W)
        gs = W.shape[1] if g == -1 else g
        for c0 in range(0, W.shape[1], gs):
            blk = W[:, c0:c0 + gs]
            lo = np.minimum(blk.min(1), 0)
            hi = np.maximum(blk.max(1), 0)
            if sym:
                hi = np.maximum(-lo, hi)
                lo = -hi
            s = ((hi - lo) / maxq).astype(np.float32).astype(np.float64)
            z = np.full_like(s, 2 ** (bits - 1)) if sym else np.rint(-lo / s)
            direct[:, c0:c0 + gs] = np.clip(np.rint(blk / s[:, None]) + z[:, None], 0, maxq)
        check(np.array_equal(r["codes"], direct),
              "RTN codes equal direct rounding (bits %d, g %d, sym %d)" % (bits, g, sym))
        check(np.array_equal(r["g_idx"], np.arange(100) // gs if g != -1 else np.zeros(100)),
              "RTN g_idx (bits %d, g %d)" % (bits, g))

    # (iii) unblocked == blocked GPTQ-style (act_order off), groups -1 and the current-weights
    # group rule with groups straddling blocks; also the reversal route for U.
    worst_agree = 1.0
    for k, (bits, g, sym, mse, blk) in enumerate([(4, -1, True, False, 16),
                                                  (3, -1, False, True, 32),
                                                  (2, -1, False, False, 128),
                                                  (4, 24, False, False, 16),
                                                  (3, 40, True, True, 32)]):
        W, X = _rand_problem(rng, 16, 96, 200, corr=(k % 2 == 1))
        H = hessian(X)
        r = quantize_layer(W, H, method="optq", bits=bits, group_size=g, sym=sym,
                           act_order=False, static_groups=False, mse=mse, damp=0.01)
        for name, chol in (("gptq-route", chol_inv_upper), ("reversal-route",
                                                            chol_inv_upper_reversal)):
            Qb, lb, _ = _blocked_gptq(W, H, bits=bits, group_size=g, sym=sym, mse=mse,
                                      damp=0.01, block=blk, chol=chol)
            agree = float(np.mean(Qb == r["codes"]))
            worst_agree = min(worst_agree, agree)
            check(agree >= 0.999 and abs(lb - r["loss"]) <= 1e-6 * r["loss"] + 1e-12 or
                  agree == 1.0,
                  "blocked(B=%d, %s) == unblocked: bits %d g %d sym %d mse %d: codes agree "
                  "%.4f, loss %.10g vs %.10g" % (blk, name, bits, g, sym, mse, agree, lb,
                                                  r["loss"]))
    if verbose:
        print("worst blocked/unblocked code agreement: %.5f" % worst_agree)

    # act_order and static groups: g_idx semantics
    W, X = _rand_problem(rng, 6, 64, 100)
    H = hessian(X)
    r = quantize_layer(W, H, method="optq", bits=4, group_size=16, sym=True, act_order=True,
                       static_groups=False, mse=False, damp=0.01)
    perm = np.argsort(-np.diag(H), kind="stable")
    exp = np.zeros(64, dtype=np.int64)
    exp[perm] = np.arange(64) // 16
    check(np.array_equal(r["g_idx"], exp), "act-order g_idx = position // g in processing order")
    r = quantize_layer(W, H, method="optq", bits=4, group_size=16, sym=True, act_order=True,
                       static_groups=True, mse=False, damp=0.01)
    check(np.array_equal(r["g_idx"], np.arange(64) // 16), "static-groups g_idx = c // g")

    print("reference selftest: %d failure(s)" % len(fails))
    return 0 if not fails else 1


def _fmt(o):
    return "%s b%d g%d %s%s%s%s" % (o["method"], o["bits"], o["group_size"],
                                    "sym" if o["sym"] else "asym",
                                    " act" if o["act_order"] else "",
                                    " static" if o["static_groups"] else "",
                                    " mse" if o["mse"] else "")


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "selftest":
        sys.exit(selftest(verbose="-q" not in sys.argv))
    print("usage: reference.py selftest [-q]", file=sys.stderr)
    sys.exit(2)
