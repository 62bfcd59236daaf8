#!/usr/bin/python3
"""Independent reference implementation of mpiquant's numerics (ALGORITHMS.md §2-§4).

Deliberately simple: float64 everywhere, one column at a time (no blocking), U computed the
GPTQ way (Cholesky, inverse, Cholesky of the inverse) so that it shares no code path with the
C program (which uses the reversal-permutation route).  Used as the test oracle by
check_layer.py; `reference.py selftest` checks the oracle against itself and against an inline
blocked GPTQ-style implementation.

API
  quantize_layer(W, H, *, method, bits, group_size, sym, act_order, static_groups, mse,
                 damp=None, lam=None, G=None, rounding="nearest", seed=0, layer_index=0,
                 samples=None) -> dict
  quantize_problem(prob, **opts)  -> the same from a problems.read_problem() layer dict
                                     (builds H, G and passes the samples)
  lambda_auto(prob, **opts)       -> §3.3 --lambda auto (candidates, held-out errors, choice)
  qronos_conceptual(W, H, G, ...) -> the slow least-squares form of Qronos (tiny problems)
  philox4x32_10(ctr, key), uniform53(seed, layer, rows, cols) -> Random123 Philox, mpiquant's
                                     stochastic-rounding uniforms
  linf_bound_rows(Xt, U, delta_p) -> §6 per-row ℓ∞ bound (p = 0.01)
  objective(W, X, Xq, What) -> (err, rel_err)            (X-based, SPEC "err"/"rel_err")
  objective_h(W, H, What)   -> (err, rel_err)            (H-only problems)
  loss_identity(W, H, lam, What) -> Σ_rows (w-ŵ)ᵀ(H+λI)(w-ŵ) with the §3.1 dead fix

Only numpy is used.
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


# ----------------------------------------------------------------------------------------------
# §2 stochastic rounding: Philox4x32-10 (Random123), written from the published algorithm
# ----------------------------------------------------------------------------------------------
_M32 = np.uint64(0xFFFFFFFF)
PHILOX_M0, PHILOX_M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
PHILOX_W0, PHILOX_W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)

# Random123's kat_vectors (counter[4], key[2] -> output[4]) for philox4x32 with 10 rounds
PHILOX_KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)),
    ((0xffffffff,) * 4, (0xffffffff,) * 2, (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)),
    ((0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), (0xa4093822, 0x299f31d0),
     (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1)),
    # computed with /usr/include/Random123/philox.h (librandom123-dev): a small counter
    ((7, 3, 1, 0), (42, 0), (0x9bafdfdf, 0x0e1b0f3c, 0xa0e29556, 0xf5d8e5b4)),
]


def philox4x32_10(ctr, key):
    """Philox4x32-10.  ctr: 4 broadcastable integer arrays (words 0..3), key: 2 integers or
    arrays.  Returns the 4 output words as uint64 arrays (values < 2^32)."""
    c = [np.asarray(x, dtype=np.uint64) & _M32 for x in ctr]
    k0 = np.asarray(key[0], dtype=np.uint64) & _M32
    k1 = np.asarray(key[1], dtype=np.uint64) & _M32
    with np.errstate(over="ignore"):
        for r in range(10):
            if r > 0:                                   # key schedule: bump before rounds 2..10
                k0 = (k0 + PHILOX_W0) & _M32
                k1 = (k1 + PHILOX_W1) & _M32
            p0 = PHILOX_M0 * c[0]                       # < 2^64: exact in uint64
            p1 = PHILOX_M1 * c[2]
            hi0, lo0 = p0 >> np.uint64(32), p0 & _M32
            hi1, lo1 = p1 >> np.uint64(32), p1 & _M32
            c = [hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0]
    return c


def uniform53(seed, layer, rows, cols):
    """mpiquant's stochastic-rounding uniforms u[rows, cols] (original row/column indices):
    key = (seed low 32, seed high 32), counter = (column, row, layer low 32, layer high 32),
    u = ((r0 << 21) ^ (r1 >> 11)) · 2^-53."""
    seed = int(seed) & 0xFFFFFFFFFFFFFFFF
    layer = int(layer) & 0xFFFFFFFFFFFFFFFF
    r = np.arange(rows, dtype=np.uint64)[:, None]
    c = np.arange(cols, dtype=np.uint64)[None, :]
    out = philox4x32_10((c, r, layer & 0xFFFFFFFF, layer >> 32),
                        (seed & 0xFFFFFFFF, seed >> 32))
    bits53 = (np.broadcast_to(out[0], (rows, cols)) << np.uint64(21)) ^ \
        (np.broadcast_to(out[1], (rows, cols)) >> np.uint64(11))
    return bits53.astype(np.float64) * 2.0 ** -53


def quant_codes_stochastic(x, scale, zero, bits, u):
    """code = floor(x/δ) + zero + [u < frac(x/δ)], clamped; also the 'clipped' mask."""
    maxq = 2 ** bits - 1
    t = x / scale
    f = np.floor(t)
    raw = f + zero + (u < t - f)
    clipped = (raw < 0) | (raw > maxq)
    return np.clip(raw, 0, maxq), clipped


def _round(x, scale, zero, bits, u, guide, tie_tol):
    """Nearest (guided at ties) when u is None, else stochastic.  (codes, clipped, ties)."""
    if u is None:
        return quant_codes_guided(x, scale, zero, bits, guide, tie_tol)
    c, clip = quant_codes_stochastic(x, scale, zero, bits, u)
    return c, clip, 0


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
               guide=None, tie_tol=0.0, u=None, start=0):
    """Unblocked OPTQ on processing-order weights Wp [rows, cols] (modified in place), columns
    start..cols-1 (Qronos' step 3 uses start = 1; U's rows/columns >= start are used).
    guide: optional codes [rows, cols] in processing order followed at rounding ties.
    u: stochastic-rounding uniforms [rows, cols] in processing order (None = nearest).
    Returns (codes_p, loss, clipped_count, per_row_e2, ties_taken, E [rows, cols])."""
    rows, cols = Wp.shape
    codes = np.zeros((rows, cols))
    E = np.zeros((rows, cols))
    e2 = np.zeros(rows)
    clipped = 0
    ties = 0
    for i in range(start, cols):
        g = col_group[i]
        if dynamic and i % group_size == 0:
            scales[:, g], zeros[:, g] = grid_params(Wp[:, i:i + group_size], bits, sym, mse)
        w = Wp[:, i]
        c, clip, t = _round(w, scales[:, g], zeros[:, g], bits,
                            None if u is None else u[:, i],
                            None if guide is None else guide[:, i], tie_tol)
        ties += t
        clipped += int(clip.sum())
        q = dequant(c, scales[:, g], zeros[:, g])
        codes[:, i] = c
        e = (w - q) / U[i, i]
        E[:, i] = e
        Wp[:, i + 1:] -= np.outer(e, U[i, i + 1:])
        e2 += e * e
    return codes, float(e2.sum()), clipped, e2, ties, E


def qronos_sweep(Wp, Hp, Gp, lam, U_tail, scales, zeros, col_group, dynamic, *, bits,
                 group_size, sym, mse, guide=None, tie_tol=0.0, u=None):
    """Qronos (ALGORITHMS §4) on processing-order weights Wp (dead-zeroed; modified in place).
    Hp: H after the dead fix, Gp: G, both permuted; U_tail: upper factor of
    ((H+λI)[1:,1:])⁻¹; u: stochastic uniforms (processing order) or None.
    Returns (codes_p, sweep_loss (Σ_{i>=1} e_i²), clipped, ties, s (step-1 targets [rows]),
    V (the weights after step 2: s in column 0, the refit in 1.. [rows, cols]))."""
    rows, cols = Wp.shape
    w = Wp.copy()                                      # original (dead-zeroed, permuted) w
    g0 = col_group[0]
    if dynamic:                                        # group of column 0: from the original w
        scales[:, g0], zeros[:, g0] = grid_params(w[:, 0:group_size], bits, sym, mse)
    # step 1: best scalar for column 0 with the other weights at w (plain H, no λ)
    s = (w @ Gp[0, :] - w[:, 1:] @ Hp[0, 1:]) / Hp[0, 0]
    c0, clip0, t0 = _round(s, scales[:, g0], zeros[:, g0], bits,
                           None if u is None else u[:, 0],
                           None if guide is None else guide[:, 0], tie_tol)
    q0 = dequant(c0, scales[:, g0], zeros[:, g0])
    # step 2: ridge least-squares refit of the remaining weights
    if cols > 1:
        A11 = Hp[1:, 1:] + lam * np.eye(cols - 1)
        rhs = w @ Gp[1:, :].T + lam * w[:, 1:] - np.outer(q0, Hp[1:, 0])
        Wp[:, 1:] = np.linalg.solve(A11, rhs.T).T
    Wp[:, 0] = s
    V = Wp.copy()
    # step 3: OPTQ on columns 1.. with U from ((H+λI)[1:,1:])⁻¹
    Ufull = np.zeros((cols, cols))
    Ufull[1:, 1:] = U_tail
    Ufull[0, 0] = 1.0
    codes, loss, clipped, _, ties, _ = optq_sweep(Wp, Ufull, scales, zeros, col_group, dynamic,
                                                  bits=bits, group_size=group_size, sym=sym,
                                                  mse=mse, guide=guide, tie_tol=tie_tol, u=u,
                                                  start=1)
    codes[:, 0] = c0
    return codes, loss, clipped + int(clip0.sum()), ties + t0, s, V


def linf_bound_rows(Xt, U, delta_p, p=0.01):
    """§6 per-row ℓ∞ bound: sqrt(2·ln(2n/p)·max_k Σ_i V_ki² δ_{r,i}² / U_ii²), V = X̂Uᵀ,
    X̂ = X̃/√n, all in processing order (Xt's columns permuted by the caller; U = I for RTN).
    delta_p [rows, cols]: the step of each entry's group.  Returns [rows]."""
    n = Xt.shape[0]
    V = (Xt / np.sqrt(n)) @ U.T
    Z = (delta_p / np.diag(U)[None, :]) ** 2          # [rows, cols]
    S = Z @ (V * V).T                                 # [rows, n]: Σ_i V_ki² δ_ri²/U_ii²
    return np.sqrt(2.0 * np.log(2.0 * n / p) * S.max(axis=1))


def quantize_layer(W, H, *, method="optq", bits=4, group_size=128, sym=True, act_order=True,
                   static_groups=False, mse=False, damp=None, lam=None, G=None,
                   rounding="nearest", seed=0, layer_index=0, samples=None, guide=None,
                   tie_tol=1e-4):
    """Quantize one layer.  W [rows, cols], H [cols, cols] = X̃ᵀX̃/n (before the dead fix).
    Exactly one of damp / lam (absolute λ); damp defaults to 0.01.
    G [cols, cols] = X̃ᵀX/n (Qronos only; default H).  rounding "nearest" | "stochastic"
    (Philox keyed by seed, counter (column, row, layer_index); layer_index = position of the
    layer in the sorted /layers list).  samples: optional (X, X̃) float64 [n, cols], needed
    for Qronos' err_floor and the ℓ∞ bound.
    guide: optional codes [rows, cols] (original order) of another implementation; where this
    reference meets a rounding tie (x/δ within tie_tol·(|x/δ|+1) of k+1/2) and the guide chose
    the other neighbour, the guide's code is taken, so both follow the same trajectory.

    Returns dict: codes [rows, cols] (original column order, int64), scales [rows, ngroups]
    (float32 values as float64), zeros [rows, ngroups] (int64), g_idx [cols], lambda, loss,
    dead [cols] bool, What (dequantized, original order), perm, clipped, bound_l2,
    lambda_raises, U (processing order), err_floor, e0_2 (Qronos: Σ_rows e_0²), bound_linf,
    bound_linf_rows (NaN unless stochastic with samples, not Qronos)."""
    if method not in ("rtn", "optq", "qronos"):
        raise NotImplementedError("method %r not implemented in the reference" % method)
    if rounding not in ("nearest", "stochastic"):
        raise ValueError("rounding must be nearest or stochastic")
    if not (2 <= bits <= 8):
        raise ValueError("bits must be 2..8")
    if not (group_size == -1 or group_size > 0):
        raise ValueError("group_size must be -1 or > 0")
    W0, Hf, dead = dead_fix(W, H)
    Gf = Hf if G is None else np.asarray(G, dtype=np.float64)   # G keeps its dead rows/columns
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
    Gp = Gf[np.ix_(perm, perm)]
    U, lam_used, raises = factor_with_retries(Hp, lam)
    A = Hp + lam_used * np.eye(cols)

    Wp = W0[:, perm].copy()
    guide_p = None if guide is None else np.asarray(guide)[:, perm]
    u_p = None
    if rounding == "stochastic":
        u_p = uniform53(seed, layer_index, rows, cols)[:, perm]
    e0_2 = float("nan")
    err_floor = float("nan")
    if method == "rtn":
        codes_p, clip, ties = _round(Wp, scales[:, col_group], zeros[:, col_group], bits, u_p,
                                     guide_p, tie_tol)
        clipped = int(clip.sum())
        D = Wp - dequant(codes_p, scales[:, col_group], zeros[:, col_group])
        loss = float(np.einsum("ri,ij,rj->", D, A, D))
    elif method == "optq":
        codes_p, loss, clipped, _, ties, _ = optq_sweep(
            Wp, U, scales, zeros, col_group, dynamic, bits=bits, group_size=group_size, sym=sym,
            mse=mse, guide=guide_p, tie_tol=tie_tol, u=u_p)
    else:
        U_tail = chol_inv_upper(A[1:, 1:]) if cols > 1 else np.zeros((0, 0))
        w = Wp.copy()
        codes_p, sweep_loss, clipped, ties, _, _ = qronos_sweep(
            Wp, Hp, Gp, lam_used, U_tail, scales, zeros, col_group, dynamic, bits=bits,
            group_size=group_size, sym=sym, mse=mse, guide=guide_p, tie_tol=tie_tol, u=u_p)
        # e_0 = (w*_0 − q_0)/U_00, w* = A⁻¹(G + λI)w the ridge fit of all weights
        wstar = np.linalg.solve(A, (w @ Gp.T + lam_used * w).T).T
        q0 = dequant(codes_p[:, 0], scales[:, col_group[0]], zeros[:, col_group[0]])
        e0 = (wstar[:, 0] - q0) / U[0, 0]
        e0_2 = float(np.sum(e0 * e0))
        loss = e0_2 + sweep_loss
        if samples is not None:
            X, Xt = (np.asarray(a, dtype=np.float64) for a in samples)
            n = X.shape[0]
            D = (X - Xt) @ W0.T                                      # (X − X̃)w, [n, rows]
            B = (w @ (Gp - Hp).T).T                                  # (G − H)w, [cols, rows]
            quad = np.sum(B * np.linalg.solve(A, B))                 # Σ_rows ‖L⁻¹(G − H)w‖²
            err_floor = e0_2 + float(np.sum(D * D)) / n - float(quad)
    codes = np.zeros((rows, cols), dtype=np.int64)
    codes[:, perm] = codes_p.astype(np.int64)
    What = dequant(codes, scales[:, g_idx], zeros[:, g_idx])
    # §6 bound: Σ_rows Σ_i δ_i² / (4 U_ii²)  (processing order); Qronos: err_floor + i >= 1
    delta = scales[:, col_group]
    terms = delta ** 2 / (4.0 * np.diag(U) ** 2)[None, :]
    if method == "qronos":
        bound_l2 = err_floor + float(np.sum(terms[:, 1:]))
    else:
        bound_l2 = float(np.sum(terms))
    bound_linf_rows = np.full(rows, np.nan)
    if rounding == "stochastic" and samples is not None and method != "qronos":
        Xt = np.asarray(samples[1], dtype=np.float64)[:, perm]
        Ub = np.eye(cols) if method == "rtn" else U
        bound_linf_rows = linf_bound_rows(Xt, Ub, delta)
    bound_linf = float(np.max(bound_linf_rows)) if rows else float("nan")
    return dict(codes=codes, scales=scales, zeros=zeros.astype(np.int64), g_idx=g_idx,
                perm=perm, dead=dead, What=What, W0=W0, loss=loss, clipped=clipped,
                bound_l2=bound_l2, U=U, ties_taken=ties, err_floor=err_floor, e0_2=e0_2,
                bound_linf=bound_linf, bound_linf_rows=bound_linf_rows,
                **{"lambda": lam_used, "lambda_raises": raises})


def problem_matrices(prob):
    """(H, G, samples) of a problems.read_problem() layer dict: H = X̃ᵀX̃/n, G = X̃ᵀX/n from
    the samples (X̃ = Xq or X), else the file's H and G (G = H when absent)."""
    if "X" in prob:
        X = prob["X"]
        Xt = prob["Xq"] if "Xq" in prob else X
        return hessian(Xt), Xt.T @ X / X.shape[0], (X, Xt)
    return prob["H"], prob.get("G", prob["H"]), None


def quantize_problem(prob, **opts):
    """quantize_layer on a layer dict (W, X[, Xq] | H[, G]) of problems.read_problem()."""
    H, G, samples = problem_matrices(prob)
    return quantize_layer(prob["W"], H, G=G, samples=samples, **opts)


LAMBDA_AUTO_DAMPS = (1e-4, 1e-3, 1e-2, 3e-2, 1e-1, 3e-1)


def lambda_auto(prob, **opts):
    """§3.3 --lambda auto on a layer dict with samples: the first floor(0.8·n) samples fit,
    the rest validate; per candidate damp d: λ_c = d·mean(diag H_fit) (after the dead fix),
    quantize with (H_fit, G_fit, λ_c), held-out error Σ_rows (w−q)ᵀH_val(w−q) (Qronos:
    ‖X_val w − X̃_val q‖²/n_val); keep the first minimum; quantize on all samples with it.
    opts: quantize_layer options without damp/lam.  Returns dict(candidates, heldout,
    chosen (index), lambda, result)."""
    W = prob["W"]
    X = prob["X"]
    Xt = prob["Xq"] if "Xq" in prob else X
    n = X.shape[0]
    nfit = int(np.floor(0.8 * n))
    Xf, Xtf, Xv, Xtv = X[:nfit], Xt[:nfit], X[nfit:], Xt[nfit:]
    Hfit = hessian(Xtf)
    Gfit = Xtf.T @ Xf / nfit
    Hval = hessian(Xtv) if n > nfit else np.zeros_like(Hfit)
    mdiag = float(np.mean(np.diag(dead_fix(W, Hfit)[1])))
    cands = np.array([d * mdiag for d in LAMBDA_AUTO_DAMPS])
    held = np.zeros(len(cands))
    for k, lam_c in enumerate(cands):
        r = quantize_layer(W, Hfit, G=Gfit, lam=lam_c, samples=(Xf, Xtf), **opts)
        if opts.get("method", "optq") == "qronos":
            R = Xv @ W.T - Xtv @ r["What"].T
            held[k] = float(np.sum(R * R)) / max(n - nfit, 1)
        else:
            D = W - r["What"]
            held[k] = float(np.einsum("ri,ij,rj->", D, Hval, D))
    best = int(np.argmin(held))                      # argmin: first on ties
    res = quantize_problem(prob, lam=float(cands[best]), **opts)
    return dict(candidates=cands, heldout=held, chosen=best, result=res,
                **{"lambda": float(cands[best])})


def qronos_conceptual(W, H, G=None, *, bits=4, group_size=128, sym=True, act_order=True,
                      static_groups=False, mse=False, damp=None, lam=None):
    """Qronos in its conceptual form (ALGORITHMS §4), explicit least squares at every step,
    no U, nearest rounding; for tiny problems (O(cols⁴) per row batch).  With w the original
    (dead-zeroed, permuted) weights and v the current ones, at processing position t:
      t = 0:  s = argmin_s ‖Xw − sX̃_0 − Σ_{j>0} w_j X̃_j‖²          (plain H, as step 1)
      t >= 1: s = argmin_s ‖Xw − Σ_{j<t} q_j X̃_j − sX̃_t − Σ_{j>t} v_j X̃_j‖²/n + λ(s − w_t)²
      q_t = Round(s);  v_{>t} = argmin ‖Xw − Σ_{j<=t} q_j X̃_j − Σ_{j>t} v_j X̃_j‖²/n
                                      + λ‖v_{>t} − w_{>t}‖²
    The ridge pulls toward the ORIGINAL w: that is what the OPTQ sweep of step 3 minimises
    ((z − v_ref)ᵀ(H+λI)_{1:,1:}(z − v_ref) expands to exactly this), so at λ > 0 the two forms
    agree too.  Group parameters at a group's first position from the current v (group 0 from
    w).  Returns dict(codes (original order), scales, zeros, g_idx)."""
    W0, Hf, _ = dead_fix(W, H)
    Gf = Hf if G is None else np.asarray(G, dtype=np.float64)
    rows, cols = W0.shape
    if lam is None:
        lam = (0.01 if damp is None else damp) * float(np.mean(np.diag(Hf)))
    perm = np.argsort(-np.diag(Hf), kind="stable") if act_order else np.arange(cols)
    scales, zeros, g_idx, col_group, dynamic = _group_setup(
        W0, perm, bits=bits, group_size=group_size, sym=sym, static_groups=static_groups,
        mse=mse)
    Hp = Hf[np.ix_(perm, perm)]
    Gp = Gf[np.ix_(perm, perm)]
    w = W0[:, perm]
    b = w @ Gp.T                                        # [rows, cols]: (X̃ᵀXw/n) per row
    v = w.copy()
    Q = np.zeros((rows, cols))
    codes = np.zeros((rows, cols))
    for t in range(cols):
        g = col_group[t]
        if dynamic and t % group_size == 0:
            scales[:, g], zeros[:, g] = grid_params(v[:, t:t + group_size], bits, sym, mse)
        fixed = Q[:, :t] @ Hp[t, :t] + v[:, t + 1:] @ Hp[t, t + 1:]
        if t == 0:
            s = (b[:, 0] - fixed) / Hp[0, 0]
        else:
            s = (b[:, t] - fixed + lam * w[:, t]) / (Hp[t, t] + lam)
        c, _ = quant_codes(s, scales[:, g], zeros[:, g], bits)
        codes[:, t] = c
        Q[:, t] = dequant(c, scales[:, g], zeros[:, g])
        if t + 1 < cols:
            T = slice(t + 1, cols)
            rhs = b[:, T] - Q[:, :t + 1] @ Hp[T, :t + 1].T + lam * w[:, T]
            v[:, T] = np.linalg.solve(Hp[T, T] + lam * np.eye(cols - t - 1), rhs.T).T
    out = np.zeros((rows, cols), dtype=np.int64)
    out[:, perm] = codes.astype(np.int64)
    return dict(codes=out, scales=scales, zeros=zeros.astype(np.int64), g_idx=g_idx)


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

    _selftest_philox(check)
    _selftest_qronos(rng, check, verbose)
    _selftest_stochastic(rng, check)
    _selftest_lambda_auto(rng, check)

    print("reference selftest: %d failure(s)" % len(fails))
    return 0 if not fails else 1


def _selftest_philox(check):
    ok = True
    for ctr, key, want in PHILOX_KAT:
        got = tuple(int(x) for x in philox4x32_10(ctr, key))
        ok = ok and got == want
    check(ok, "Philox4x32-10 known-answer vectors (Random123 kat_vectors)")
    # vectorised == scalar, and the 53-bit uniform built from r0, r1 as specified
    u = uniform53(0x123456789, 3, 5, 7)
    r = philox4x32_10((6, 4, 3, 0), (0x23456789, 0x1))
    u1 = ((int(r[0]) << 21) ^ (int(r[1]) >> 11)) * 2.0 ** -53
    check(u[4, 6] == u1 and np.all((u >= 0) & (u < 1)), "uniform53: counter (col, row, layer)")
    check(not np.array_equal(uniform53(1, 0, 4, 4), uniform53(1, 1, 4, 4)) and
          not np.array_equal(uniform53(1, 0, 4, 4), uniform53(2, 0, 4, 4)),
          "uniforms differ across layers and seeds")


def _mismatch_problem(rng, rows, cols, n, noise):
    """Well-conditioned X (n >> cols, a few strong channels) and X̃ = X + noise."""
    X = rng.standard_normal((n, cols))
    X[:, rng.choice(cols, 3, replace=False)] *= rng.uniform(3, 8, 3)
    W = rng.standard_normal((rows, cols)) * 0.1
    Xt = X + noise * rng.standard_normal(X.shape) * X.std(axis=0, keepdims=True)
    return W, X, Xt


def _selftest_qronos(rng, check, verbose):
    # fast form (steps 1-3) == conceptual form (explicit least squares), λ = 0 and λ > 0
    worst = 1.0
    for k, (bits, g, sym, act, st, lam) in enumerate([
            (3, -1, False, True, False, 0.0), (4, 8, True, True, False, 0.0),
            (2, 8, False, False, False, 0.0), (4, 8, False, True, True, 0.0),
            (3, -1, True, False, False, 0.05), (4, 8, False, True, False, 0.05),
            (2, 12, True, True, True, 0.2), (3, 5, False, False, False, 0.02)]):
        W, X, Xt = _mismatch_problem(rng, 6, 24, 120, 0.2)
        H, G = hessian(Xt), Xt.T @ X / X.shape[0]
        o = dict(bits=bits, group_size=g, sym=sym, act_order=act, static_groups=st, mse=False,
                 lam=lam)
        r = quantize_layer(W, H, G=G, method="qronos", **o)
        c = qronos_conceptual(W, H, G, **o)
        agree = float(np.mean(r["codes"] == c["codes"]))
        worst = min(worst, agree)
        check(agree >= 0.999 and np.allclose(r["scales"], c["scales"], rtol=1e-6),
              "qronos fast == conceptual (b%d g%d sym %d act %d static %d lam %g): agree %.4f"
              % (bits, g, sym, act, st, lam, agree))
    if verbose:
        print("worst qronos fast/conceptual agreement: %.5f" % worst)

    # §5 identity at λ = 0 (well-conditioned, one dead input in X and X̃), loss = Σ e_i² =
    # Σ_rows (w*−q)ᵀA(w*−q), and the trailing block of U == U of ((H+λI)[1:,1:])⁻¹
    for bits, g, act, st, mse in [(4, 16, True, False, False), (3, -1, False, False, True),
                                  (2, 16, True, True, False), (8, 32, True, False, False)]:
        W, X, Xt = _mismatch_problem(rng, 10, 64, 800, 0.15)
        X[:, 7] = 0.0
        Xt[:, 7] = 0.0
        H, G = hessian(Xt), Xt.T @ X / X.shape[0]
        r = quantize_layer(W, H, G=G, method="qronos", bits=bits, group_size=g, sym=False,
                           act_order=act, static_groups=st, mse=mse, lam=0.0,
                           samples=(X, Xt))
        err = objective(W, X, Xt, r["What"])[0]
        pred = r["err_floor"] + r["loss"] - r["e0_2"]
        check(abs(err - pred) <= 1e-9 * err,
              "qronos identity at lam 0 (b%d g%d): err %.12g = floor + Σ_{i>=1} e² %.12g"
              % (bits, g, err, pred))
        Hf = dead_fix(W, H)[1][np.ix_(r["perm"], r["perm"])]
        Gp = G[np.ix_(r["perm"], r["perm"])]
        w = r["W0"][:, r["perm"]]
        wstar = np.linalg.solve(Hf, (w @ Gp.T).T).T
        D = wstar - r["What"][:, r["perm"]]
        lq = float(np.einsum("ri,ij,rj->", D, Hf, D))
        check(abs(lq - r["loss"]) <= 1e-9 * lq, "qronos loss = Σ(w*−q)ᵀA(w*−q) (b%d g%d)"
              % (bits, g))
        Ut = chol_inv_upper(Hf[1:, 1:])
        check(np.allclose(Ut, r["U"][1:, 1:], rtol=1e-8, atol=1e-12 * np.abs(Ut).max()),
              "U of (A[1:,1:])⁻¹ == trailing block of U")
        # err_floor at λ = 0 is ‖Xw − X̃v‖²/n with v = (q_0, step-2 refit)
        q0 = r["What"][:, r["perm"][0]]
        v = np.linalg.solve(Hf[1:, 1:], (w @ Gp[1:, :].T - np.outer(q0, Hf[1:, 0])).T).T
        V = np.concatenate([q0[:, None], v], axis=1)
        R = X @ r["W0"].T - Xt[:, r["perm"]] @ V.T
        rr = float(np.sum(R * R)) / X.shape[0]
        check(abs(rr - r["err_floor"]) <= 1e-9 * rr, "err_floor = ‖r_1‖² at lam 0 (b%d g%d)"
              % (bits, g))
        if r["clipped"] == 0:
            check(r["err_floor"] + r["loss"] - r["e0_2"] <= r["bound_l2"] * (1 + 1e-12),
                  "qronos err <= bound_l2 (b%d g%d)" % (bits, g))

    # X̃ = X (G = H): Qronos == OPTQ exactly (step 1 rounds w_0, step 2 = OPTQ's update)
    for bits, g, act, lam in [(4, 16, True, 0.0), (3, -1, False, 0.1), (2, 16, True, 0.01)]:
        W, X, _ = _mismatch_problem(rng, 8, 48, 300, 0.0)
        H = hessian(X)
        o = dict(bits=bits, group_size=g, sym=True, act_order=act, static_groups=False,
                 mse=False, lam=lam)
        rq = quantize_layer(W, H, G=H, method="qronos", **o)
        ro = quantize_layer(W, H, method="optq", **o)
        check(np.array_equal(rq["codes"], ro["codes"]) and abs(rq["loss"] - ro["loss"]) <=
              1e-9 * ro["loss"], "qronos == optq when X̃ = X (b%d g%d lam %g)" % (bits, g, lam))

    # X̃ = X + noise: Qronos' err < OPTQ's at 2, 3, 4 bits
    for bits in (2, 3, 4):
        W, X, Xt = _mismatch_problem(rng, 16, 64, 512, 0.2)
        H, G = hessian(Xt), Xt.T @ X / X.shape[0]
        o = dict(bits=bits, group_size=32, sym=False, act_order=True, static_groups=False,
                 mse=False, damp=0.01)
        eq = objective(W, X, Xt, quantize_layer(W, H, G=G, method="qronos", **o)["What"])[0]
        eo = objective(W, X, Xt, quantize_layer(W, H, method="optq", **o)["What"])[0]
        check(eq < eo, "qronos err %.5g < optq err %.5g on X̃ = X + noise (b%d)"
              % (eq, eo, bits))


def _selftest_stochastic(rng, check):
    W, X = _rand_problem(rng, 12, 40, 200)
    H = hessian(X)
    o = dict(bits=3, group_size=-1, sym=False, act_order=True, static_groups=False, mse=False,
             damp=0.01)
    # RTN-stochastic: codes are floor or floor+1 of x/δ + zero; reproducible; seed-dependent
    r1 = quantize_layer(W, H, method="rtn", rounding="stochastic", seed=7, layer_index=2, **o)
    r2 = quantize_layer(W, H, method="rtn", rounding="stochastic", seed=7, layer_index=2, **o)
    r3 = quantize_layer(W, H, method="rtn", rounding="stochastic", seed=8, layer_index=2, **o)
    t = W / r1["scales"][:, :1] + r1["zeros"][:, :1]
    lo = np.clip(np.floor(t), 0, 7)
    hi = np.clip(np.floor(t) + 1, 0, 7)
    check(np.all((r1["codes"] == lo) | (r1["codes"] == hi)), "stochastic codes in {floor, +1}")
    check(np.array_equal(r1["codes"], r2["codes"]) and not np.array_equal(r1["codes"],
                                                                        r3["codes"]),
          "stochastic: same seed same codes, other seed other codes")
    u = uniform53(7, 2, *W.shape)
    want = np.clip(np.floor(t) + (u < t - np.floor(t)), 0, 7)
    check(np.array_equal(r1["codes"], want), "RTN-stochastic = floor + [u < frac]")
    # OPTQ-stochastic: §5 identity and X̂(w−q) = V·e
    ro = quantize_layer(W, H, method="optq", rounding="stochastic", seed=3, samples=(X, X),
                        **o)
    ident = loss_identity(W, H, ro["lambda"], ro["What"])
    check(abs(ident - ro["loss"]) <= 1e-9 * ident, "stochastic OPTQ §5 identity")
    check(np.all(np.isfinite(ro["bound_linf_rows"])), "stochastic OPTQ bound_linf finite")
    # ℓ∞ bound over 100 layer indices (independent streams): holds on >= 99% of rows
    hold = tot = 0
    mean_loss = 0.0
    for li in range(100):
        r = quantize_layer(W, H, method="optq", rounding="stochastic", seed=11, layer_index=li,
                           samples=(X, X), **o)
        Z = np.abs((X / np.sqrt(X.shape[0])) @ (r["W0"] - r["What"]).T).max(axis=0)
        hold += int(np.sum(Z <= r["bound_linf_rows"]))
        tot += Z.size
        mean_loss += r["loss"] / 100
    check(hold >= 0.99 * tot, "ℓ∞ bound holds on %d/%d rows" % (hold, tot))
    check(mean_loss <= ro["bound_l2"], "mean stochastic loss %.4g <= bound_l2 %.4g"
          % (mean_loss, ro["bound_l2"]))
    rq = quantize_layer(W, H, G=H, method="qronos", rounding="stochastic", seed=3,
                        samples=(X, X), **o)
    check(np.isnan(rq["bound_linf"]) and np.isfinite(rq["loss"]),
          "stochastic qronos runs, bound_linf NaN")


def _selftest_lambda_auto(rng, check):
    W, X, Xt = _mismatch_problem(rng, 8, 32, 200, 0.1)
    prob = dict(W=W, X=X, Xq=Xt)
    for method in ("optq", "qronos"):
        a = lambda_auto(prob, method=method, bits=3, group_size=16, sym=False, act_order=True,
                        static_groups=False, mse=False)
        Hfit = hessian(Xt[:160])
        check(np.allclose(a["candidates"], np.array(LAMBDA_AUTO_DAMPS) *
                          np.mean(np.diag(Hfit)), rtol=1e-12) and
              a["heldout"][a["chosen"]] == a["heldout"].min() and
              a["heldout"][a["chosen"]] <= a["heldout"][2] and
              a["result"]["lambda"] == a["lambda"],
              "lambda auto (%s): argmin of the held-out errors, never worse than damp 0.01"
              % method)


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
