#!/usr/bin/python3
"""Independent numpy reference forward pass for Llama-family models (HF layout).

Reads config.json and safetensors (F32, F16, BF16; one file or shards listed in
model.safetensors.index.json) with numpy only.  Supports RMSNorm, rotary
embeddings in the HF half-split convention (rotate_half) with rope_theta,
grouped-query attention with any ratio, an explicit head_dim (may differ from
hidden/heads), SwiGLU MLP, optional q/k/v biases (required by Qwen2 and
Qwen2-MoE; used when present otherwise), tied embeddings (lm_head.weight absent
or tie_word_embeddings), and the families of transformers:
  Llama, Mistral, Qwen2   dense blocks
  Qwen3                   + per-head RMSNorm q_norm / k_norm [head_dim] on q and
                          k after the projection, before the rotation
  Mixtral                 block_sparse_moe: router gate [E, hidden], softmax over
                          all E experts, top-k, the k weights renormalised;
                          experts w1 (gate), w3 (up), w2 (down), SwiGLU
  Qwen3-MoE               Qwen3 attention; mlp.gate router, experts
                          mlp.experts.j.{gate,up,down}_proj; the k weights
                          renormalised only if norm_topk_prob (default false);
                          blocks in mlp_only_layers or with
                          (i+1) % decoder_sparse_step != 0 use a dense mlp
  Qwen2-MoE               Qwen2 attention, Qwen3-MoE routing, plus
                          sigmoid(x·shared_expert_gateᵀ) · shared_expert(x)
  Phi3                    Llama blocks stored fused: self_attn.qkv_proj [(nh + 2·nkv)·hd,
                          hidden] (rows q, then k, then v) and mlp.gate_up_proj
                          [2·intermediate, hidden] (rows gate, then up), split here; no
                          biases; rope_scaling and partial_rotary_factor != 1 refused
  Gemma2                  (transformers' modeling_gemma2) embeddings times sqrt(hidden);
                          RMSNorm by (1 + weight); four norms per block:
                          h += post_attention_layernorm(attn(input_layernorm(h))),
                          h += post_feedforward_layernorm(mlp(pre_feedforward_layernorm(h)));
                          GeGLU gelu_pytorch_tanh(gate)·up; scores scaled by
                          query_pre_attn_scalar^-0.5 (default 256), then
                          attn_logit_softcapping cap·tanh(s/cap) before the mask, logits
                          final_logit_softcapping (defaults 50 and 30, null: none); head
                          tied by default; full causal attention (sliding_window only
                          matters for windows longer than it, which mpiquant refuses)
Model.logits(tokens, trace) also returns the routing (each token's top-k
experts in descending probability, and its sorted router probabilities);
Model.routes(windows) stacks it for all MoE blocks with each token's gap
between the k-th and (k+1)-th probability (how close routing is to a tie).

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
import re
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


# architecture -> (q/k/v biases required, per-head q/k RMSNorm, MoE kind or None)
FAMILIES = {
    "LlamaForCausalLM": (False, False, None),
    "MistralForCausalLM": (False, False, None),
    "Qwen2ForCausalLM": (True, False, None),
    "Qwen3ForCausalLM": (False, True, None),
    "MixtralForCausalLM": (False, False, "mixtral"),
    "Qwen3MoeForCausalLM": (False, True, "qwen3_moe"),
    "Qwen2MoeForCausalLM": (True, False, "qwen2_moe"),
    "Phi3ForCausalLM": (False, False, None),
    "Gemma2ForCausalLM": (False, False, None),
}
# architectures whose checkpoints store q/k/v and gate/up fused (Model._load_fused_layer)
FUSED = {"Phi3ForCausalLM"}
EXPERT_NAMES = {"mixtral": ("w1", "w3", "w2"),
                "qwen3_moe": ("gate_proj", "up_proj", "down_proj"),
                "qwen2_moe": ("gate_proj", "up_proj", "down_proj")}


def moe_params(c, arch_kind):
    """(experts E, top-k, renormalise the k weights, prefix of the block's MoE tensors)."""
    if arch_kind == "mixtral":
        return c["num_local_experts"], c["num_experts_per_tok"], True, "block_sparse_moe."
    return c["num_experts"], c["num_experts_per_tok"], bool(c.get("norm_topk_prob", False)), "mlp."


def is_sparse(c, arch_kind, layer):
    """transformers' rule: Mixtral's blocks are all sparse; Qwen2/3-MoE's block i is dense when
    listed in mlp_only_layers or when (i + 1) % decoder_sparse_step != 0."""
    if arch_kind is None:
        return False
    if arch_kind == "mixtral":
        return True
    return (layer not in c.get("mlp_only_layers", []) and c["num_experts"] > 0
            and (layer + 1) % c.get("decoder_sparse_step", 1) == 0)


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def gelu_tanh(x):
    """transformers' gelu_pytorch_tanh."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def softcap(x, cap):
    """Gemma 2's soft-capping cap·tanh(x/cap); None: x."""
    return x if cap is None else cap * np.tanh(x / cap)


def gemma2_params(c):
    """(query_pre_attn_scalar, attn cap, final cap) with Gemma2Config's defaults; refuses an
    activation other than gelu_pytorch_tanh (hidden_activation, else hidden_act)."""
    act = c.get("hidden_activation") or c.get("hidden_act") or "gelu_pytorch_tanh"
    if act != "gelu_pytorch_tanh":
        raise ValueError("Gemma2: activation %r not supported" % act)
    return (c.get("query_pre_attn_scalar", 256), c.get("attn_logit_softcapping", 50.0),
            c.get("final_logit_softcapping", 30.0))


def _swiglu(x, gate, up, down):
    g = x @ gate.T
    return (g / (1.0 + np.exp(-g)) * (x @ up.T)) @ down.T


def route(x, router, k, renorm):
    """Top-k routing of the rows of x [N, hidden]: probabilities = softmax over all experts of
    x·routerᵀ; the k most probable, in descending probability (a stable sort: among equal
    probabilities the lower index first); their weights, renormalised to sum 1 when renorm.
    Returns (sel int [N, k], weights [N, k], sorted probabilities [N, E])."""
    p = _softmax(x @ router.T)
    order = np.argsort(-p, axis=-1, kind="stable")
    sel = order[:, :k]
    wts = np.take_along_axis(p, sel, -1)
    if renorm:
        wts = wts / wts.sum(-1, keepdims=True)
    return sel, wts, np.take_along_axis(p, order, -1)


class Model:
    ATTN = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj")
    MLP = ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
    LINEARS = ATTN + MLP

    def __init__(self, model_dir, rtn_bits=None, rtn_group=64):
        c = json.load(open(os.path.join(model_dir, "config.json")))
        self.c = c
        arch = (c.get("architectures") or ["LlamaForCausalLM"])[0]
        if arch not in FAMILIES:
            raise ValueError("architecture %s not supported by the reference" % arch)
        self.arch = arch
        need_bias, self.qk_norm, self.moe = FAMILIES[arch]
        w = {k: v.astype(np.float64) for k, v in load_weights(model_dir).items()}
        if arch in FUSED:
            rs, prf = c.get("rope_scaling"), c.get("partial_rotary_factor", 1.0)
            if rs or prf not in (None, 1.0):
                raise ValueError("Phi3: rope_scaling %r / partial_rotary_factor %r not supported"
                                 % (rs, prf))
        self.H = c["hidden_size"]
        self.nh = c["num_attention_heads"]
        self.nkv = c.get("num_key_value_heads") or self.nh
        self.hd = c.get("head_dim") or self.H // self.nh
        self.L = c["num_hidden_layers"]
        self.eps = c.get("rms_norm_eps", 1e-6)
        self.theta = c.get("rope_theta", 10000.0)
        self.gemma2 = arch == "Gemma2ForCausalLM"
        self.caps = (None, None)
        self.score_div = math.sqrt(self.hd)  # scores = q·kᵀ / score_div
        if self.gemma2:
            qpas, acap, fcap = gemma2_params(c)
            self.score_div, self.caps = math.sqrt(qpas), (acap, fcap)
        if self.nh % self.nkv:
            raise ValueError("num_attention_heads not a multiple of num_key_value_heads")
        self.embed = w["model.embed_tokens.weight"]
        if "lm_head.weight" in w and not c.get("tie_word_embeddings", self.gemma2):
            self.lm_head = w["lm_head.weight"]
        else:
            self.lm_head = self.embed
        self.norm = w["model.norm.weight"]
        self.rtn = (rtn_bits, rtn_group)
        if self.moe:
            self.E, self.k, self.renorm, _ = moe_params(c, self.moe)
            if not 1 <= self.k <= self.E:
                raise ValueError("num_experts_per_tok %d not in [1, %d]" % (self.k, self.E))
        self.layers = [self._load_layer(w, i, need_bias) for i in range(self.L)]
        self.sparse = [i for i in range(self.L) if "moe" in self.layers[i]]

    @staticmethod
    def _get(w, name):
        if name not in w:
            raise ValueError("%s: missing tensor" % name)
        return w[name]

    def _weight(self, w, name):
        """A linear layer's weight, RTN-quantized when asked (routers and the shared expert's
        gate are never quantized: they stay in full precision, as mpiquant keeps them)."""
        W = self._get(w, name)
        return rtn_quantize(W, *self.rtn) if self.rtn[0] else W

    def _load_layer(self, w, i, need_bias):
        p = "model.layers.%d." % i
        c = self.c
        d = {"ln1": self._get(w, p + "input_layernorm.weight"),
             "ln2": self._get(w, p + "post_attention_layernorm.weight")}
        if self.gemma2:  # the MLP's input norm, and the post norms of both outputs
            d = {"ln1": d["ln1"], "ln2": self._get(w, p + "pre_feedforward_layernorm.weight"),
                 "post_attn": d["ln2"],
                 "post_mlp": self._get(w, p + "post_feedforward_layernorm.weight")}
        if self.qk_norm:
            d["q_norm"] = self._get(w, p + "self_attn.q_norm.weight")
            d["k_norm"] = self._get(w, p + "self_attn.k_norm.weight")
        sparse = is_sparse(c, self.moe, i)
        if self.arch in FUSED:
            return self._load_fused_layer(w, p, d)
        for n in self.ATTN + (() if sparse else self.MLP):
            d[n] = self._weight(w, p + n + ".weight")
            b = w.get(p + n + ".bias")
            if b is None and n in self.ATTN[:3] and (need_bias or c.get("attention_bias")):
                raise ValueError("%s: missing tensor (q/k/v biases required)" % (p + n + ".bias"))
            d[n + ".bias"] = b
        if sparse:
            d["moe"] = self._load_moe(w, p)
        return d

    def _load_fused_layer(self, w, p, d):
        """Phi-3: the fused qkv_proj and gate_up_proj (each RTN-quantized whole when asked, as
        mpiquant quantizes the fused layer) split by rows into q, k, v and gate, up."""
        H, I = self.H, self.c["intermediate_size"]
        split = {"self_attn.qkv_proj": (("self_attn.q_proj", self.nh * self.hd),
                                        ("self_attn.k_proj", self.nkv * self.hd),
                                        ("self_attn.v_proj", self.nkv * self.hd)),
                 "mlp.gate_up_proj": (("mlp.gate_proj", I), ("mlp.up_proj", I))}
        for fused, parts in split.items():
            W = self._weight(w, p + fused + ".weight")
            rows = sum(r for _, r in parts)
            if W.shape != (rows, H):
                raise ValueError("%s.weight: shape %s, expected %s" % (p + fused, W.shape,
                                                                       (rows, H)))
            r0 = 0
            for n, r in parts:
                d[n], d[n + ".bias"] = W[r0:r0 + r], None
                r0 += r
        for n in ("self_attn.o_proj", "mlp.down_proj"):
            d[n], d[n + ".bias"] = self._weight(w, p + n + ".weight"), None
        return d

    def _load_moe(self, w, p):
        E, _, _, pre = moe_params(self.c, self.moe)
        pre = p + pre
        names = EXPERT_NAMES[self.moe]
        present = {int(m.group(1)) for m in
                   (re.match(re.escape(pre) + r"experts\.(\d+)\.", n) for n in w) if m}
        if present != set(range(E)):
            raise ValueError("%sexperts: tensors for experts %s, config says %d"
                             % (pre, sorted(present)[:8], E))
        m = {"router": self._get(w, pre + "gate.weight"),
             "experts": [tuple(self._weight(w, "%sexperts.%d.%s.weight" % (pre, j, n))
                               for n in names) for j in range(E)],
             "shared": None}
        if self.moe == "qwen2_moe":
            m["shared"] = tuple(self._weight(w, pre + "shared_expert.%s.weight" % n)
                                for n in EXPERT_NAMES["qwen2_moe"])
            m["shared_gate"] = self._get(w, pre + "shared_expert_gate.weight")
        if m["router"].shape != (E, self.H):
            raise ValueError("%sgate.weight: shape %s, expected %s"
                             % (pre, m["router"].shape, (E, self.H)))
        return m

    def _rms(self, x, wt):
        if self.gemma2:  # Gemma2RMSNorm: (1 + weight)
            wt = 1.0 + wt
        return wt * (x / np.sqrt((x * x).mean(-1, keepdims=True) + self.eps))

    @staticmethod
    def _lin(x, d, n):
        y = x @ d[n].T
        if d[n + ".bias"] is not None:
            y = y + d[n + ".bias"]
        return y

    def _moe_forward(self, h, m, layer, trace):
        """Routed experts (+ the sigmoid-gated shared expert) on h [B, T, hidden]."""
        B, T, H = h.shape
        x = h.reshape(B * T, H)
        sel, wts, probs = route(x, m["router"], self.k, self.renorm)
        out = np.zeros_like(x)
        for j, ex in enumerate(m["experts"]):
            rows, slot = np.nonzero(sel == j)
            if rows.size:
                out[rows] += wts[rows, slot][:, None] * _swiglu(x[rows], *ex)
        if m["shared"] is not None:
            gate = 1.0 / (1.0 + np.exp(-(x @ m["shared_gate"].T)))
            out += gate * _swiglu(x, *m["shared"])
        if trace is not None:
            trace[layer] = (sel.reshape(B, T, -1), probs.reshape(B, T, -1))
        return out.reshape(B, T, H)

    def logits(self, tokens, trace=None):
        """tokens: int array [B, T] -> logits float64 [B, T, vocab].  trace: None or a dict that
        receives, for every MoE block l, trace[l] = (sel int [B, T, k]: the top-k experts of each
        token in descending probability, probs [B, T, E]: its router probabilities sorted
        descending)."""
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
        if self.gemma2:
            x = x * math.sqrt(self.H)
        for li, d in enumerate(self.layers):
            h = self._rms(x, d["ln1"])
            q = self._lin(h, d, "self_attn.q_proj").reshape(B, T, nh, hd)
            k = self._lin(h, d, "self_attn.k_proj").reshape(B, T, nkv, hd)
            v = self._lin(h, d, "self_attn.v_proj").reshape(B, T, nkv, hd).transpose(0, 2, 1, 3)
            if self.qk_norm:  # Qwen3: RMSNorm over each head's vector, before the rotation
                q, k = self._rms(q, d["q_norm"]), self._rms(k, d["k_norm"])
            q, k = rope(q.transpose(0, 2, 1, 3)), rope(k.transpose(0, 2, 1, 3))
            rep = nh // nkv
            k = np.repeat(k, rep, axis=1)   # query head j uses kv head j // rep
            v = np.repeat(v, rep, axis=1)
            s = softcap(q @ k.transpose(0, 1, 3, 2) / self.score_div, self.caps[0]) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            y = (s @ v).transpose(0, 2, 1, 3).reshape(B, T, nh * hd)
            o = self._lin(y, d, "self_attn.o_proj")
            x = x + (self._rms(o, d["post_attn"]) if self.gemma2 else o)
            h = self._rms(x, d["ln2"])
            if "moe" in d:
                x = x + self._moe_forward(h, d["moe"], li, trace)
            else:
                g = self._lin(h, d, "mlp.gate_proj")
                u = self._lin(h, d, "mlp.up_proj")
                a = gelu_tanh(g) if self.gemma2 else g / (1.0 + np.exp(-g))
                o = self._lin(a * u, d, "mlp.down_proj")
                x = x + (self._rms(o, d["post_mlp"]) if self.gemma2 else o)
        return softcap(self._rms(x, self.norm) @ self.lm_head.T, self.caps[1])

    def routes(self, windows):
        """windows int [nwin, T] -> (MoE block indices, sel int32 [nblocks_moe, nwin, T, k]: each
        token's top-k experts in descending probability, gap [nblocks_moe, nwin, T]: the k-th
        minus the (k+1)-th router probability, how far the choice is from a tie; inf when
        k == E)."""
        windows = np.asarray(windows, dtype=np.int64)
        trace = {}
        self.logits(windows, trace)
        if not self.sparse:
            return [], np.zeros((0,) + windows.shape + (0,), np.int32), \
                np.zeros((0,) + windows.shape)
        sel = np.stack([trace[l][0] for l in self.sparse]).astype(np.int32)
        if self.k == self.E:
            return list(self.sparse), sel, np.full(sel.shape[:-1], math.inf)
        gap = np.stack([trace[l][1][..., self.k - 1] - trace[l][1][..., self.k]
                        for l in self.sparse])
        return list(self.sparse), sel, gap

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
