#!/usr/bin/python3
"""Independent numpy reference forward pass for Llama-family models (HF layout).

Reads config.json and safetensors (F32, F16, BF16; one file or shards listed in
model.safetensors.index.json) with numpy only.  Supports RMSNorm, rotary
embeddings in the HF half-split convention (rotate_half) with rope_theta,
grouped-query attention with any ratio, SwiGLU MLP, optional q/k/v biases
(Qwen2: `attention_bias` or the presence of bias tensors), tied embeddings
(lm_head.weight absent or tie_word_embeddings).

Computation in float64 (weights as stored, converted exactly).

perplexity(model_dir, tokens, seqlen) follows SPEC.md: non-overlapping windows
of seqlen tokens, a short tail dropped, token i >= 1 of a window predicted from
tokens 0..i-1 of the same window, perplexity = exp(mean NLL).

CLI:
    llama_ref.py perplexity MODEL_DIR TOKENS_FILE --seqlen L [--rtn-bits B --rtn-group G]
prints `perplexity <value>`.  TOKENS_FILE: .npy (1-D integers), .h5 (dataset
/tokens, needs h5py) or raw bytes (vocabulary of 256).
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np

_DT = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64}


def read_safetensors(path):
    out = {}
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n).decode("utf-8"))
        base = 8 + n
        for name, v in header.items():
            if name == "__metadata__":
                continue
            dt = v["dtype"]
            if dt not in _DT:
                raise ValueError("%s: %s: unsupported dtype %s" % (path, name, dt))
            a, b = v["data_offsets"]
            f.seek(base + a)
            raw = np.frombuffer(f.read(b - a), dtype=np.dtype(_DT[dt]).newbyteorder("<"))
            if dt == "BF16":
                arr = (raw.astype(np.uint32) << 16).view(np.float32)
            else:
                arr = raw.astype(np.float32 if dt != "F64" else np.float64)
            out[name] = arr.reshape(v["shape"])
    return out


def load_weights(model_dir):
    idx = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(idx):
        wm = json.load(open(idx))["weight_map"]
        out = {}
        for shard in sorted(set(wm.values())):
            out.update(read_safetensors(os.path.join(model_dir, shard)))
        missing = set(wm) - set(out)
        if missing:
            raise ValueError("%s: tensors missing from shards: %s" % (idx, sorted(missing)[:5]))
        return out
    return read_safetensors(os.path.join(model_dir, "model.safetensors"))


def rtn_quantize(w, bits, group):
    """Symmetric round-to-nearest, per-row groups of `group` input columns
    (group -1: one group per row).  scale = max|w| / (2^(bits-1) - 1),
    q = clamp(round(w/scale), -2^(bits-1), 2^(bits-1) - 1)."""
    w = np.asarray(w, dtype=np.float64)
    rows, cols = w.shape
    g = cols if group in (-1, 0, None) else group
    out = np.empty_like(w)
    qmax = 2 ** (bits - 1) - 1
    for c0 in range(0, cols, g):
        blk = w[:, c0:c0 + g]
        s = np.abs(blk).max(axis=1, keepdims=True) / qmax
        s[s == 0] = 1.0
        q = np.clip(np.round(blk / s), -qmax - 1, qmax)
        out[:, c0:c0 + g] = q * s
    return out


def rope_scaled(inv, rs):
    """rope_scaling as transformers' modeling_rope_utils defines it: "linear" divides every
    inverse frequency by factor; "llama3" (_compute_llama3_parameters) divides those whose
    wavelength 2π/inv exceeds original_max_position_embeddings/low_freq_factor, keeps those
    below original/high_freq_factor, and in between uses
    (1 − s)·inv/factor + s·inv with s = (original/wavelength − low)/(high − low)."""
    if not rs or rs.get("rope_type", rs.get("type", "default")) == "default":
        return inv
    kind = rs.get("rope_type", rs.get("type"))
    if kind == "linear":
        return inv / rs["factor"]
    if kind != "llama3":
        raise ValueError("rope_scaling %r not supported by the reference" % kind)
    factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
    old = rs["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv
    out = np.where(wavelen > old / lo, inv / factor, inv)
    smooth = (old / wavelen - lo) / (hi - lo)
    medium = (wavelen >= old / hi) & (wavelen <= old / lo)
    return np.where(medium, (1 - smooth) * out / factor + smooth * out, out)


class Model:
    LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
               "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")

    def __init__(self, model_dir, rtn_bits=None, rtn_group=64):
        c = json.load(open(os.path.join(model_dir, "config.json")))
        self.c = c
        w = {k: v.astype(np.float64) for k, v in load_weights(model_dir).items()}
        self.H = c["hidden_size"]
        self.nh = c["num_attention_heads"]
        self.nkv = c.get("num_key_value_heads") or self.nh
        self.hd = c.get("head_dim") or self.H // self.nh
        self.L = c["num_hidden_layers"]
        self.eps = c.get("rms_norm_eps", 1e-6)
        self.theta = c.get("rope_theta", 10000.0)
        if self.nh % self.nkv:
            raise ValueError("num_attention_heads not a multiple of num_key_value_heads")
        self.embed = w["model.embed_tokens.weight"]
        if "lm_head.weight" in w and not c.get("tie_word_embeddings", False):
            self.lm_head = w["lm_head.weight"]
        else:
            self.lm_head = self.embed
        self.norm = w["model.norm.weight"]
        self.layers = []
        for i in range(self.L):
            p = "model.layers.%d." % i
            d = {"ln1": w[p + "input_layernorm.weight"],
                 "ln2": w[p + "post_attention_layernorm.weight"]}
            for n in self.LINEARS:
                W = w[p + n + ".weight"]
                if rtn_bits:
                    W = rtn_quantize(W, rtn_bits, rtn_group)
                d[n] = W
                b = w.get(p + n + ".bias")
                if b is None and c.get("attention_bias") and n.split(".")[1] in ("q_proj", "k_proj", "v_proj"):
                    raise ValueError("attention_bias set but %s missing" % (p + n + ".bias"))
                d[n + ".bias"] = b
            self.layers.append(d)

    def _rms(self, x, wt):
        return wt * (x / np.sqrt((x * x).mean(-1, keepdims=True) + self.eps))

    @staticmethod
    def _lin(x, d, n):
        y = x @ d[n].T
        if d[n + ".bias"] is not None:
            y = y + d[n + ".bias"]
        return y

    def logits(self, tokens):
        """tokens: int array [B, T] -> logits float64 [B, T, vocab]."""
        tokens = np.asarray(tokens, dtype=np.int64)
        if tokens.ndim == 1:
            tokens = tokens[None]
        B, T = tokens.shape
        hd, nh, nkv = self.hd, self.nh, self.nkv
        inv = rope_scaled(1.0 / (self.theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd)),
                          self.c.get("rope_scaling"))
        ang = np.arange(T, dtype=np.float64)[:, None] * inv[None, :]
        cos = np.cos(np.concatenate([ang, ang], -1))
        sin = np.sin(np.concatenate([ang, ang], -1))

        def rope(x):  # [B, h, T, hd]
            h = hd // 2
            rot = np.concatenate([-x[..., h:], x[..., :h]], -1)
            return x * cos + rot * sin

        mask = np.triu(np.full((T, T), -np.inf), 1)
        x = self.embed[tokens]
        for d in self.layers:
            h = self._rms(x, d["ln1"])
            q = self._lin(h, d, "self_attn.q_proj").reshape(B, T, nh, hd).transpose(0, 2, 1, 3)
            k = self._lin(h, d, "self_attn.k_proj").reshape(B, T, nkv, hd).transpose(0, 2, 1, 3)
            v = self._lin(h, d, "self_attn.v_proj").reshape(B, T, nkv, hd).transpose(0, 2, 1, 3)
            q, k = rope(q), rope(k)
            rep = nh // nkv
            k = np.repeat(k, rep, axis=1)   # query head j uses kv head j // rep
            v = np.repeat(v, rep, axis=1)
            s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            y = (s @ v).transpose(0, 2, 1, 3).reshape(B, T, nh * hd)
            x = x + self._lin(y, d, "self_attn.o_proj")
            h = self._rms(x, d["ln2"])
            g = self._lin(h, d, "mlp.gate_proj")
            u = self._lin(h, d, "mlp.up_proj")
            x = x + self._lin(g / (1.0 + np.exp(-g)) * u, d, "mlp.down_proj")
        return self._rms(x, self.norm) @ self.lm_head.T

    def nll(self, tokens, seqlen, batch=8):
        """(sum of NLL, number of predicted tokens) per SPEC."""
        tokens = np.asarray(tokens, dtype=np.int64).ravel()
        n = len(tokens) // seqlen
        if n == 0:
            raise ValueError("fewer tokens (%d) than seqlen (%d)" % (len(tokens), seqlen))
        wins = tokens[: n * seqlen].reshape(n, seqlen)
        total, count = 0.0, 0
        for b0 in range(0, n, batch):
            w = wins[b0:b0 + batch]
            lg = self.logits(w)[:, :-1]
            m = lg.max(-1, keepdims=True)
            lse = (m[..., 0] + np.log(np.exp(lg - m).sum(-1)))
            tgt = np.take_along_axis(lg, w[:, 1:, None], -1)[..., 0]
            total += float((lse - tgt).sum())
            count += tgt.size
        return total, count


def perplexity(model_dir, tokens, seqlen, rtn_bits=None, rtn_group=64):
    m = Model(model_dir, rtn_bits=rtn_bits, rtn_group=rtn_group)
    total, count = m.nll(tokens, seqlen)
    return math.exp(total / count)


def read_tokens(path, vocab=256):
    if path.endswith(".npy"):
        t = np.load(path)
        if t.ndim != 1:
            raise ValueError("%s: not a 1-D array" % path)
        return t.astype(np.int64)
    if path.endswith(".h5"):
        import h5py
        with h5py.File(path, "r") as f:
            return np.asarray(f["/tokens"]).astype(np.int64).ravel()
    if vocab != 256:
        raise ValueError("%s: raw byte tokens need a 256-token vocabulary" % path)
    return np.frombuffer(open(path, "rb").read(), dtype=np.uint8).astype(np.int64)


def main(argv=None):
    ap = argparse.ArgumentParser(description="numpy Llama reference")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("perplexity")
    p.add_argument("model_dir")
    p.add_argument("tokens")
    p.add_argument("--seqlen", type=int, required=True)
    p.add_argument("--rtn-bits", type=int, default=None)
    p.add_argument("--rtn-group", type=int, default=64)
    a = ap.parse_args(argv)
    c = json.load(open(os.path.join(a.model_dir, "config.json")))
    toks = read_tokens(a.tokens, c["vocab_size"])
    m = Model(a.model_dir, rtn_bits=a.rtn_bits, rtn_group=a.rtn_group)
    total, count = m.nll(toks, a.seqlen)
    print("perplexity %.6f" % math.exp(total / count))


if __name__ == "__main__":
    main()
