#!/usr/bin/python3
"""Random layer problems with structure, in the SPEC.md layer-problem HDF5 format
(/layers/<name>/{W, X[, Xq] | H}), plus deliberately bad inputs for error tests.

CLI:
  problems.py OUT.h5 --kind KIND [--seed S]
  problems.py --list

Good kinds (several layers each unless noted):
  optq-suite   outliers, correlated, dead inputs, heavy-tailed W, float64, wide layer
  xq           layers with X and a perturbed Xq (X̃)
  hessian      layers given by H only (no X), float64 and float32
  small        one small well-conditioned layer
  mismatch     well-conditioned layers (n >> cols) with X̃ = X + noise (Qronos; λ = 0 works)
  hg           layers given by H = X̃ᵀX̃/n and G = X̃ᵀX/n only (no samples)
  lambda       layers whose --lambda auto choice is small, middle and large
  copies       COPIES (200) copies s000..s199 of one small layer (stochastic statistics: the
               layer index keys the random stream, so the copies are independent draws)
  outlier | correlated | dead | heavy | float64 | wide   one layer of that structure
Bad kinds (see BAD_KINDS): not-hdf5, missing-w, missing-xh, col-mismatch, nan-w, nan-x,
  empty-rows, empty-n, no-layers.
"""
import argparse
import sys

import numpy as np


# ----------------------------------------------------------------------------------------------
# layer generators: each returns dict(W=..., X=... [, Xq=...] | H=...)
# ----------------------------------------------------------------------------------------------
def _weights(rng, rows, cols, scale=0.05):
    return rng.standard_normal((rows, cols)) * scale


def layer_outlier(rng, rows=32, cols=96, n=256, dtype=np.float32):
    """A few input channels scaled ×10–50 (LLM activation outliers)."""
    X = rng.standard_normal((n, cols))
    idx = rng.choice(cols, 4, replace=False)
    X[:, idx] *= rng.uniform(10, 50, idx.size)
    return dict(W=_weights(rng, rows, cols).astype(dtype), X=X.astype(dtype))


def layer_correlated(rng, rows=24, cols=160, n=384, dtype=np.float32):
    """X = Z·Mᵀ with a random mixing whose column scales decay over 3 decades: H is
    ill-conditioned (but positive definite, n > cols)."""
    Z = rng.standard_normal((n, cols))
    M = rng.standard_normal((cols, cols)) / np.sqrt(cols)
    M = M * np.logspace(0, -3, cols)[None, :]
    M += 0.3 * np.eye(cols) * np.logspace(0, -1, cols)
    X = Z @ M.T
    return dict(W=_weights(rng, rows, cols).astype(dtype), X=X.astype(dtype))


def layer_lowrank(rng, rows=16, cols=96, n=64, dtype=np.float32):
    """n < cols: H singular, only the damping makes it positive definite."""
    X = rng.standard_normal((n, cols)) @ (np.eye(cols) + 0.5 * rng.standard_normal((cols, cols))
                                          / np.sqrt(cols))
    return dict(W=_weights(rng, rows, cols).astype(dtype), X=X.astype(dtype))


def layer_dead(rng, rows=16, cols=80, n=128, dtype=np.float64):
    """Some X columns exactly zero (incl. a consecutive run), W non-zero there."""
    X = rng.standard_normal((n, cols))
    dead = np.concatenate([rng.choice(cols - 8, 3, replace=False), [cols - 6, cols - 5,
                                                                     cols - 4]])
    X[:, dead] = 0.0
    return dict(W=_weights(rng, rows, cols).astype(dtype), X=X.astype(dtype))


def layer_heavy(rng, rows=48, cols=130, n=200, dtype=np.float32):
    """Heavy-tailed weights (Student-t, 3 dof) plus a few very large entries; cols not a
    multiple of 32 so the last group is partial."""
    W = rng.standard_t(3, size=(rows, cols)) * 0.02
    k = max(3, rows * cols // 500)
    W.flat[rng.choice(rows * cols, k, replace=False)] = rng.choice([-1, 1], k) * \
        rng.uniform(0.5, 1.5, k)
    X = rng.standard_normal((n, cols)) * rng.uniform(0.5, 2.0, cols)[None, :]
    return dict(W=W.astype(dtype), X=X.astype(dtype))


def layer_wide(rng, rows=16, cols=300, n=512, dtype=np.float32):
    """Wider layer, mild correlation, positive-mean inputs (like post-activation features)."""
    X = np.abs(rng.standard_normal((n, cols))) + 0.1 * rng.standard_normal((n, 1))
    W = _weights(rng, rows, cols)
    W[:, :5] += 0.2   # a few columns with a common offset
    return dict(W=W.astype(dtype), X=X.astype(dtype))


def layer_small(rng, rows=8, cols=48, n=96, dtype=np.float32):
    return dict(W=_weights(rng, rows, cols, 0.1).astype(dtype),
                X=rng.standard_normal((n, cols)).astype(dtype))


def layer_xq(rng, rows=16, cols=64, n=160, dtype=np.float32, noise=0.05):
    """X plus X̃ = X + noise (inputs of a partially quantized model)."""
    base = layer_outlier(rng, rows, cols, n, dtype=np.float64)
    X = base["X"]
    Xq = X + noise * rng.standard_normal(X.shape) * np.std(X, axis=0, keepdims=True)
    return dict(W=base["W"].astype(dtype), X=X.astype(dtype), Xq=Xq.astype(dtype))


def layer_hessian(rng, rows=20, cols=72, n=200, dtype=np.float64, dead=2):
    """H = X̃ᵀX̃/n only (computed in float64 then stored as dtype), with dead inputs."""
    src = layer_correlated(rng, rows, cols, n, dtype=np.float64)
    X = src["X"]
    X[:, rng.choice(cols, dead, replace=False)] = 0.0
    X[:, :3] *= 20.0
    H = X.T @ X / n
    H = 0.5 * (H + H.T)
    return dict(W=src["W"].astype(dtype), H=H.astype(dtype))


def layer_mismatch(rng, rows=16, cols=64, n=512, dtype=np.float32, noise=0.2, dead=0,
                   outliers=3):
    """Well-conditioned X (n >> cols, a few strong channels) and X̃ = X + relative noise: the
    Qronos case; H is well conditioned, so --lambda 0 is safe."""
    X = rng.standard_normal((n, cols))
    idx = rng.choice(cols, outliers, replace=False)
    X[:, idx] *= rng.uniform(3, 8, outliers)
    Xq = X + noise * rng.standard_normal(X.shape) * X.std(axis=0, keepdims=True)
    if dead:
        d = rng.choice(np.setdiff1d(np.arange(cols), idx), dead, replace=False)
        X[:, d] = 0.0
        Xq[:, d] = 0.0
    W = _weights(rng, rows, cols, 0.1)
    return dict(W=W.astype(dtype), X=X.astype(dtype), Xq=Xq.astype(dtype))


def layer_hg(rng, rows=16, cols=64, n=400, dtype=np.float64, noise=0.2):
    """H and G only, from a mismatch layer."""
    src = layer_mismatch(rng, rows, cols, n, np.float64, noise)
    X, Xq = src["X"], src["Xq"]
    H = Xq.T @ Xq / n
    return dict(W=src["W"].astype(dtype), H=(0.5 * (H + H.T)).astype(dtype),
                G=(Xq.T @ X / n).astype(dtype))


def layer_lambda(rng, rows=16, cols=64, n=160, dtype=np.float32, noise=0.0, corr=True):
    """Inputs with a few ×10 channels, optionally correlated with decaying scales: the
    held-out optimum of λ moves with n/cols, correlation and noise."""
    X = rng.standard_normal((n, cols))
    if corr:
        M = rng.standard_normal((cols, cols)) / np.sqrt(cols) * \
            np.logspace(0, -2, cols)[None, :] + 0.2 * np.eye(cols)
        X = X @ M.T
    X[:, :3] *= 10.0
    W = _weights(rng, rows, cols)
    out = dict(W=W.astype(dtype), X=X.astype(dtype))
    if noise:
        out["Xq"] = (X + noise * rng.standard_normal(X.shape) *
                     X.std(axis=0, keepdims=True)).astype(dtype)
    return out


COPIES = 200


def copies_layers(rng, layer=None, k=COPIES):
    """k copies s000.. of one layer (default: 8×48, n 96)."""
    lay = layer_small(rng) if layer is None else layer
    return {"s%03d" % i: lay for i in range(k)}


SINGLE = {
    "outlier": layer_outlier, "correlated": layer_correlated, "dead": layer_dead,
    "heavy": layer_heavy, "float64": lambda rng: layer_outlier(rng, 24, 72, 128, np.float64),
    "wide": layer_wide, "small": layer_small, "lowrank": layer_lowrank,
}


def kind_layers(kind, rng):
    """Returns an ordered dict name -> layer for a good kind."""
    if kind == "optq-suite":
        return {
            "a_outlier": layer_outlier(rng),
            "b_correlated": layer_correlated(rng),
            "c_dead_f64": layer_dead(rng),
            "d_heavy": layer_heavy(rng),
            "e_lowrank": layer_lowrank(rng),
            "f_wide": layer_wide(rng),
        }
    if kind == "xq":
        return {"a_xq": layer_xq(rng),
                "b_xq_f64_dead": _with_dead(rng, layer_xq(rng, 12, 100, 128, np.float64, 0.1))}
    if kind == "hessian":
        return {"a_h_f64": layer_hessian(rng),
                "b_h_f32": layer_hessian(rng, 16, 140, 300, np.float32, dead=3)}
    if kind == "mismatch":
        return {"a_mm": layer_mismatch(rng),
                "b_mm_150": layer_mismatch(rng, 24, 150, 600, noise=0.1, outliers=4),
                "c_mm_f64_dead": layer_mismatch(rng, 12, 96, 400, np.float64, 0.3, dead=2)}
    if kind == "hg":
        return {"a_hg_f64": layer_hg(rng),
                "b_hg_f32": layer_hg(rng, 12, 80, 300, np.float32, 0.1)}
    if kind == "lambda":
        return {"a_lam_small": layer_lambda(rng),
                "b_lam_mid": layer_lambda(rng, 16, 96, 200),
                "c_lam_large": layer_lambda(rng, 16, 64, 120, noise=0.1, corr=False)}
    if kind == "copies":
        return copies_layers(rng)
    if kind in SINGLE:
        return {"layer0": SINGLE[kind](rng)}
    raise ValueError("unknown kind %r" % kind)


def _with_dead(rng, layer):
    cols = layer["W"].shape[1]
    idx = rng.choice(cols, 3, replace=False)
    layer["X"][:, idx] = 0
    layer["Xq"][:, idx] = 0
    return layer


def write_problem(path, layers):
    import h5py
    with h5py.File(path, "w") as f:
        g = f.create_group("layers")
        for name, lay in layers.items():
            lg = g.create_group(name)
            for k in ("W", "X", "Xq", "H", "G"):
                if k in lay and lay[k] is not None:
                    lg.create_dataset(k, data=lay[k])


def read_problem(path):
    """name -> dict of float64 arrays (W, X, Xq, H when present) and 'dtype' of W."""
    import h5py
    out = {}
    with h5py.File(path, "r") as f:
        for name in sorted(f["layers"].keys()):
            lg = f["layers"][name]
            d = {k: np.asarray(lg[k][()], dtype=np.float64) for k in ("W", "X", "Xq", "H", "G")
                 if k in lg}
            d["dtype"] = lg["W"].dtype
            out[name] = d
    return out


def make(path, kind, seed=0):
    rng = np.random.default_rng(seed)
    if kind in BAD_KINDS:
        BAD_KINDS[kind][1](path, rng)
    else:
        write_problem(path, kind_layers(kind, rng))


# ----------------------------------------------------------------------------------------------
# bad inputs
# ----------------------------------------------------------------------------------------------
def _bad_not_hdf5(path, rng):
    with open(path, "w") as f:
        f.write("this is not an HDF5 file\n" * 20)


def _bad_layers(mod):
    def gen(path, rng):
        layers = {"a_good": layer_small(rng), "b_bad": layer_small(rng)}
        mod(layers["b_bad"], rng)
        write_problem(path, layers)
    return gen


def _no_w(lay, rng):
    del lay["W"]


def _no_xh(lay, rng):
    del lay["X"]


def _col_mismatch(lay, rng):
    lay["X"] = lay["X"][:, :-3].copy()


def _nan_w(lay, rng):
    lay["W"][1, 7] = np.nan


def _nan_x(lay, rng):
    lay["X"][5, 3] = np.nan


def _empty_rows(lay, rng):
    lay["W"] = lay["W"][:0, :].copy()


def _empty_n(lay, rng):
    lay["X"] = lay["X"][:0, :].copy()


def _bad_no_layers(path, rng):
    import h5py
    lay = layer_small(rng)
    with h5py.File(path, "w") as f:
        g = f.create_group("model")           # wrong group name
        g.create_dataset("W", data=lay["W"])
        g.create_dataset("X", data=lay["X"])


BAD_KINDS = {
    "not-hdf5": ("non-HDF5 file", _bad_not_hdf5),
    "missing-w": ("layer without W", _bad_layers(_no_w)),
    "missing-xh": ("layer with neither X nor H", _bad_layers(_no_xh)),
    "col-mismatch": ("W/X column mismatch", _bad_layers(_col_mismatch)),
    "nan-w": ("NaN in W", _bad_layers(_nan_w)),
    "nan-x": ("NaN in X", _bad_layers(_nan_x)),
    "empty-rows": ("empty layer (rows = 0)", _bad_layers(_empty_rows)),
    "empty-n": ("empty layer (n = 0)", _bad_layers(_empty_n)),
    "no-layers": ("no /layers group", _bad_no_layers),
}

GOOD_KINDS = ["optq-suite", "xq", "hessian", "mismatch", "hg", "lambda", "copies"] + \
    sorted(SINGLE)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?")
    ap.add_argument("--kind", default="optq-suite")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--list", action="store_true", help="list the kinds")
    a = ap.parse_args(argv)
    if a.list:
        for k in GOOD_KINDS:
            print(k)
        for k, (desc, _) in BAD_KINDS.items():
            print("%-14s (bad) %s" % (k, desc))
        return 0
    if not a.out:
        ap.error("OUT.h5 is required")
    if a.kind not in GOOD_KINDS and a.kind not in BAD_KINDS:
        ap.error("unknown --kind %r (see --list)" % a.kind)
    make(a.out, a.kind, a.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
