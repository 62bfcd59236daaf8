#!/usr/bin/env python3
"""Writes a synthetic layer-problem file (SPEC.md "Layer-problem input") that looks like the
linear layers of a small transformer block: correlated inputs with a few outlier channels (as
LLM activations have), weights with heavy tails. Used by jobs/demo.sh until the model pipeline
lands, and handy for trying options.

Each layer also gets Xq, the inputs as the partially quantized model would see them (X plus
noise of --mismatch times each channel's standard deviation), so Qronos has something to
correct.

usage: make_layer_problem.py OUT.h5 [--dim 256] [--ffn 512] [--tokens 2048] [--seed 0]
                             [--mismatch 0.1]
"""
import argparse

import h5py
import numpy as np


def activations(rng, n, dim):
    """Correlated inputs (a random mixing of independent sources) with 1% outlier channels."""
    z = rng.standard_normal((n, dim))
    mix = np.eye(dim) + 0.3 * rng.standard_normal((dim, dim)) / np.sqrt(dim)
    x = z @ mix
    outliers = rng.choice(dim, size=max(1, dim // 100), replace=False)
    x[:, outliers] *= 20.0
    return x.astype(np.float32)


def weights(rng, rows, cols):
    w = rng.standard_normal((rows, cols)) / np.sqrt(cols)
    heavy = rng.random((rows, cols)) < 0.002
    w[heavy] *= 8.0
    return w.astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--ffn", type=int, default=512)
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mismatch", type=float, default=0.1)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    x_attn = activations(rng, a.tokens, a.dim)
    h = np.maximum(activations(rng, a.tokens, a.ffn), 0) * 0.5  # post-activation: skewed
    layers = {
        "0.attn.q_proj": (weights(rng, a.dim, a.dim), x_attn),
        "1.mlp.up_proj": (weights(rng, a.ffn, a.dim), x_attn),
        "2.mlp.down_proj": (weights(rng, a.dim, a.ffn), h.astype(np.float32)),
    }
    with h5py.File(a.out, "w") as f:
        for name, (w, x) in layers.items():
            g = f.create_group(f"layers/{name}")
            g["W"] = w
            g["X"] = x
            if a.mismatch > 0:
                noise = rng.standard_normal(x.shape) * x.std(axis=0) * a.mismatch
                g["Xq"] = (x + noise).astype(np.float32)
    print(f"make_layer_problem: wrote {a.out}: {len(layers)} layers, {a.tokens} tokens")


if __name__ == "__main__":
    main()
