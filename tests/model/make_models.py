#!/usr/bin/python3
"""Random tiny Llama-family checkpoints for the forward-pass and eval tests, written by hand
(8-byte little-endian header length, JSON header with dtype/shape/data_offsets, data; numpy
only, no safetensors package), each with a token file tokens.npy.

    make_models.py OUTDIR

Models (OUTDIR/<name>/):
  llama_f32_gqa1      LlamaForCausalLM, float32, untied head, 4 q / 4 kv heads
  qwen2_bf16_gqa2     Qwen2ForCausalLM, bfloat16, tied head, q/k/v biases, 4 q / 2 kv heads
  llama_f16_gqa4      LlamaForCausalLM, float16, untied, attention_bias (q/k/v/o biases),
                      8 q / 2 kv heads, sharded: model.safetensors.index.json + 2 shards
  mistral_bf16_gqa2   MistralForCausalLM, bfloat16, untied, 4 q / 2 kv heads, no
                      max_position_embeddings, 3 blocks
  llama3_bf16_rope    LlamaForCausalLM, bfloat16, tied, 4 q / 2 kv heads, rope_scaling
                      "llama3" (original context 256: kept, blended and scaled frequencies)
  qwen3_bf16_hd       Qwen3ForCausalLM, bfloat16, tied, 4 q / 2 kv heads of explicit
                      head_dim 16 (hidden 32: q_proj [64, 32], o_proj [32, 64]), per-head
                      q_norm / k_norm
  mixtral_f32_e4      MixtralForCausalLM, float32, untied, 4 experts top-2 (renormalised),
                      sharded (2 files), sliding_window null
  qwen3moe_f16_e8     Qwen3MoeForCausalLM, float16, untied, head_dim 12 (hidden 32, 4 q / 2 kv
                      heads), q/k norms, 8 experts top-2, norm_topk_prob true, 3 blocks with
                      mlp_only_layers [1] (block 1 a dense mlp of intermediate_size)
  qwen2moe_bf16_e4    Qwen2MoeForCausalLM, bfloat16, tied, q/k/v biases, 4 experts top-2,
                      norm_topk_prob false, a shared expert with its sigmoid gate, 4 blocks with
                      decoder_sparse_step 2 (blocks 1 and 3 sparse, 0 and 2 dense)
  phi3_bf16_fused     Phi3ForCausalLM, bfloat16, untied, 4 q / 2 kv heads, 2 blocks, fused
                      self_attn.qkv_proj [64, 32] and mlp.gate_up_proj [128, 32] (drawn as the
                      separate q, k, v and gate, up, then stacked), rope_scaling null,
                      sliding_window 255 (as Phi-3-mini's 2047 for 4096 positions); every
                      linear's sides multiples of 32 (the GPTQ export's layout)
  gemma2_bf16         Gemma2ForCausalLM, bfloat16, tied, 4 q / 2 kv heads of head_dim 16
                      (hidden 32), 2 blocks with Gemma 2's four norms (stored as w, scaling by
                      1 + w: drawn N(0, 0.1²)), GeGLU, query_pre_attn_scalar 24 (not
                      head_dim), attn_logit_softcapping 5 and final_logit_softcapping 3 with q/k
                      and head weights large enough that both caps change the logits by well
                      over 1% (run_forward.py checks), sliding_window 128

Weights: embeddings N(0, 1), linear layers N(0, 1/in) (q and k a little larger so attention is
not uniform), norms 1 + N(0, 0.1²), biases N(0, 0.1²), head N(0, 4/hidden): activations are
O(1) and the logits have a spread of a few units (checked by the drivers). Routers
N(0, ROUTER_GAIN²/hidden): router logits of spread ~1.5 on the normalised input, so routing
varies from token to token.

Routing without near-ties: a float32 forward pass and the float64 reference must pick the same
top-k experts for every token. On random tokens about 1% of the (token, MoE block) pairs of these
fixtures have a gap < 1e-3 between the k-th and (k+1)-th router probability, so no seed gives 700
tie-free tokens (2000 seeds tried per fixture). The weights keep their seed and the tokens are
chosen instead: tokens.npy of an MoE fixture is made of random windows of 64 tokens (drawn from
the same generator) kept only if, read as one window of 64 and as four of 16 (CHECK_SEQLENS),
every token of every MoE block has a gap > MIN_GAP (1e-3); a window's routing depends on its
own tokens only, so every window of 16 or 64 of the file is then tie-free. Checked again after
writing, with every expert receiving at least MIN_LOAD (5%) of each block's routed slots (the
script exits 1 otherwise). Tests that run MoE fixtures on other windows (another seqlen, or an
offset) have no such guarantee.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from safetensors_np import st_blob, to_bytes  # noqa: E402
import llama_ref  # noqa: E402

ROUTER_GAIN = 1.5
MIN_GAP = 1e-3
MIN_LOAD = 0.05
CHECK_SEQLENS = (16, 64)
NTOKENS = 700

MODELS = {
    "llama_f32_gqa1": dict(arch="LlamaForCausalLM", dtype="F32", hidden=32, inter=48, layers=2,
                           nh=4, nkv=4, vocab=61, tied=False, bias=False, shards=1,
                           max_pos=512, theta=10000.0, eps=1e-5),
    "qwen2_bf16_gqa2": dict(arch="Qwen2ForCausalLM", dtype="BF16", hidden=32, inter=64,
                            layers=2, nh=4, nkv=2, vocab=50, tied=True, bias=True, shards=1,
                            max_pos=128, theta=1000000.0, eps=1e-6),
    "llama_f16_gqa4": dict(arch="LlamaForCausalLM", dtype="F16", hidden=64, inter=80, layers=2,
                           nh=8, nkv=2, vocab=73, tied=False, bias=True, obias=True, shards=2,
                           max_pos=64, theta=500000.0, eps=1e-5),
    "mistral_bf16_gqa2": dict(arch="MistralForCausalLM", dtype="BF16", hidden=48, inter=96,
                              layers=3, nh=4, nkv=2, vocab=40, tied=False, bias=False, shards=1,
                              max_pos=None, theta=10000.0, eps=1e-5),
    # Llama 3.1-style rotary scaling with a small original context, so that with head_dim 16
    # the short wavelengths are kept, one falls in the blended band and the long ones scale
    "llama3_bf16_rope": dict(arch="LlamaForCausalLM", dtype="BF16", hidden=64, inter=96,
                             layers=2, nh=4, nkv=2, vocab=67, tied=True, bias=False, shards=1,
                             max_pos=1024, theta=500000.0, eps=1e-5,
                             rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                           "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                           "original_max_position_embeddings": 256}),
    "qwen3_bf16_hd": dict(arch="Qwen3ForCausalLM", dtype="BF16", hidden=32, inter=64, layers=2,
                          nh=4, nkv=2, hd=16, qk_norm=True, vocab=53, tied=True, bias=False,
                          shards=1, max_pos=256, theta=1000000.0, eps=1e-6, seed=2000),
    "mixtral_f32_e4": dict(arch="MixtralForCausalLM", dtype="F32", hidden=32, inter=40,
                           layers=2, nh=4, nkv=2, vocab=59, tied=False, bias=False, shards=2,
                           max_pos=256, theta=1000000.0, eps=1e-5, seed=3000,
                           moe=dict(kind="mixtral", E=4, k=2)),
    "qwen3moe_f16_e8": dict(arch="Qwen3MoeForCausalLM", dtype="F16", hidden=32, inter=48,
                            layers=3, nh=4, nkv=2, hd=12, qk_norm=True, vocab=47, tied=False,
                            bias=False, shards=1, max_pos=256, theta=1000000.0, eps=1e-6,
                            seed=4000, moe=dict(kind="qwen3_moe", E=8, k=2, inter=24, norm=True,
                                                mlp_only=[1], step=1)),
    "qwen2moe_bf16_e4": dict(arch="Qwen2MoeForCausalLM", dtype="BF16", hidden=32, inter=48,
                             layers=4, nh=4, nkv=2, vocab=51, tied=True, bias=True, shards=1,
                             max_pos=256, theta=1000000.0, eps=1e-6, seed=5000,
                             moe=dict(kind="qwen2_moe", E=4, k=2, inter=32, norm=False,
                                      mlp_only=[], step=2, shared=40)),
    "phi3_bf16_fused": dict(arch="Phi3ForCausalLM", dtype="BF16", hidden=32, inter=64, layers=2,
                            nh=4, nkv=2, vocab=57, tied=False, bias=False, shards=1,
                            max_pos=256, theta=10000.0, eps=1e-5, seed=6000, fused=True),
    "gemma2_bf16": dict(arch="Gemma2ForCausalLM", dtype="BF16", hidden=32, inter=64, layers=2,
                        nh=4, nkv=2, hd=16, vocab=55, tied=True, bias=False, shards=1,
                        max_pos=256, theta=10000.0, eps=1e-6, seed=7000,
                        gemma2=dict(qpas=24, attn_cap=5.0, final_cap=3.0, window=128,
                                    qk_gain=3.0)),
}

FUSED = {"self_attn.qkv_proj": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
         "mlp.gate_up_proj": ("mlp.gate_proj", "mlp.up_proj")}


def fuse(t, p):
    """Phi-3's layout: block p's q, k, v and gate, up stacked by rows into the fused tensors."""
    for fused, parts in FUSED.items():
        t[p + fused + ".weight"] = np.concatenate([t.pop(p + n + ".weight") for n in parts])

def sparse_blocks(spec):
    """Indices of the blocks with a sparse MoE mlp (transformers' rule, as llama_ref.is_sparse)."""
    m = spec.get("moe")
    if not m:
        return []
    return [i for i in range(spec["layers"]) if m["kind"] == "mixtral" or
            (i not in m["mlp_only"] and (i + 1) % m["step"] == 0)]


def moe_tensors(spec, p, lin):
    """Router and experts (and Qwen2-MoE's shared expert and its gate) of one sparse block."""
    m, H, t = spec["moe"], spec["hidden"], {}
    if m["kind"] == "mixtral":
        pre, names, inter = p + "block_sparse_moe.", ("w1", "w3", "w2"), spec["inter"]
    else:
        pre, names, inter = p + "mlp.", ("gate_proj", "up_proj", "down_proj"), m["inter"]
    t[pre + "gate.weight"] = lin(m["E"], H, ROUTER_GAIN)
    for j in range(m["E"]):
        e = "%sexperts.%d." % (pre, j)
        t[e + names[0] + ".weight"] = lin(inter, H)
        t[e + names[1] + ".weight"] = lin(inter, H)
        t[e + names[2] + ".weight"] = lin(H, inter)
    if m.get("shared"):
        S = m["shared"]
        t[pre + "shared_expert.gate_proj.weight"] = lin(S, H)
        t[pre + "shared_expert.up_proj.weight"] = lin(S, H)
        t[pre + "shared_expert.down_proj.weight"] = lin(H, S)
        t[pre + "shared_expert_gate.weight"] = lin(1, H)
    return t


def gemma2_tensors(spec, rng):
    """Gemma 2: four norms per block stored as w (the model scales by 1 + w), GeGLU MLP, tied
    head; q and k drawn with qk_gain so the attention soft-capping bites."""
    H, I, nh, nkv, hd, V = (spec["hidden"], spec["inter"], spec["nh"], spec["nkv"], spec["hd"],
                            spec["vocab"])
    g = spec["gemma2"]["qk_gain"]

    def lin(out, inp, gain=1.0):
        return rng.standard_normal((out, inp)) * gain / np.sqrt(inp)

    t = {"model.embed_tokens.weight": rng.standard_normal((V, H)) * 0.5}
    for i in range(spec["layers"]):
        p = "model.layers.%d." % i
        for n in ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                  "post_feedforward_layernorm"):
            t[p + n + ".weight"] = 0.1 * rng.standard_normal(H)
        t[p + "self_attn.q_proj.weight"] = lin(nh * hd, H, g)
        t[p + "self_attn.k_proj.weight"] = lin(nkv * hd, H, g)
        t[p + "self_attn.v_proj.weight"] = lin(nkv * hd, H)
        t[p + "self_attn.o_proj.weight"] = lin(H, nh * hd)
        t[p + "mlp.gate_proj.weight"] = lin(I, H)
        t[p + "mlp.up_proj.weight"] = lin(I, H)
        t[p + "mlp.down_proj.weight"] = lin(H, I)
    t["model.norm.weight"] = 0.1 * rng.standard_normal(H)
    return t


def model_tensors(spec, rng):
    if spec.get("gemma2"):
        return gemma2_tensors(spec, rng)
    H, I, nh, nkv = spec["hidden"], spec["inter"], spec["nh"], spec["nkv"]
    hd = spec.get("hd") or H // nh
    V = spec["vocab"]
    t = {}
    sparse = sparse_blocks(spec)

    def lin(out, inp, gain=1.0):
        return rng.standard_normal((out, inp)) * gain / np.sqrt(inp)

    t["model.embed_tokens.weight"] = rng.standard_normal((V, H)) * (0.5 if spec["tied"] else 1.0)
    for i in range(spec["layers"]):
        p = "model.layers.%d." % i
        t[p + "input_layernorm.weight"] = 1.0 + 0.1 * rng.standard_normal(H)
        t[p + "post_attention_layernorm.weight"] = 1.0 + 0.1 * rng.standard_normal(H)
        t[p + "self_attn.q_proj.weight"] = lin(nh * hd, H, 2.0)
        t[p + "self_attn.k_proj.weight"] = lin(nkv * hd, H, 2.0)
        t[p + "self_attn.v_proj.weight"] = lin(nkv * hd, H)
        t[p + "self_attn.o_proj.weight"] = lin(H, nh * hd)
        if spec.get("qk_norm"):
            t[p + "self_attn.q_norm.weight"] = 1.0 + 0.1 * rng.standard_normal(hd)
            t[p + "self_attn.k_norm.weight"] = 1.0 + 0.1 * rng.standard_normal(hd)
        if i in sparse:
            t.update(moe_tensors(spec, p, lin))
        else:
            t[p + "mlp.gate_proj.weight"] = lin(I, H)
            t[p + "mlp.up_proj.weight"] = lin(I, H)
            t[p + "mlp.down_proj.weight"] = lin(H, I)
        if spec["bias"]:
            for n, out in (("q", nh * hd), ("k", nkv * hd), ("v", nkv * hd)):
                t[p + "self_attn.%s_proj.bias" % n] = 0.1 * rng.standard_normal(out)
            if spec.get("obias"):
                t[p + "self_attn.o_proj.bias"] = 0.1 * rng.standard_normal(H)
        if spec.get("fused"):
            fuse(t, p)
    t["model.norm.weight"] = 1.0 + 0.1 * rng.standard_normal(H)
    if not spec["tied"]:
        t["lm_head.weight"] = rng.standard_normal((V, H)) * 2.0 / np.sqrt(H)
    return t


def config(spec):
    c = {"architectures": [spec["arch"]], "model_type": spec["arch"][:-len("ForCausalLM")].lower(),
         "hidden_size": spec["hidden"], "intermediate_size": spec["inter"],
         "num_hidden_layers": spec["layers"], "num_attention_heads": spec["nh"],
         "num_key_value_heads": spec["nkv"], "vocab_size": spec["vocab"],
         "rms_norm_eps": spec["eps"], "rope_theta": spec["theta"],
         "tie_word_embeddings": spec["tied"], "hidden_act": "silu",
         "torch_dtype": {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[spec["dtype"]]}
    if spec["arch"] not in ("Qwen2ForCausalLM", "Qwen2MoeForCausalLM"):
        c["attention_bias"] = spec["bias"]
    if spec["max_pos"]:
        c["max_position_embeddings"] = spec["max_pos"]
    if spec.get("rope_scaling"):
        c["rope_scaling"] = spec["rope_scaling"]
    if spec.get("hd"):
        c["head_dim"] = spec["hd"]
    if spec["arch"] != "Qwen2ForCausalLM" and spec["arch"].startswith("Qwen"):
        # as the published configs have them
        c.update(use_sliding_window=False, sliding_window=None if spec["arch"].startswith(
            "Qwen3") else 32768, max_window_layers=spec["layers"])
    if spec.get("fused"):  # as Phi-3-mini-4k-instruct's config has them
        c.update(model_type="phi3", rope_scaling=None, sliding_window=spec["max_pos"] - 1,
                 original_max_position_embeddings=spec["max_pos"], resid_pdrop=0.0,
                 embd_pdrop=0.0, attention_dropout=0.0)
        del c["attention_bias"]
    gm = spec.get("gemma2")
    if gm:  # as gemma-2-2b's config has them
        c.update(model_type="gemma2", hidden_act="gelu_pytorch_tanh",
                 hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=gm["qpas"],
                 attn_logit_softcapping=gm["attn_cap"], final_logit_softcapping=gm["final_cap"],
                 sliding_window=gm["window"], cache_implementation="hybrid",
                 attention_dropout=0.0)
    m = spec.get("moe")
    if m and m["kind"] == "mixtral":
        c.update(model_type="mixtral", num_local_experts=m["E"], num_experts_per_tok=m["k"],
                 sliding_window=None, router_aux_loss_coef=0.02, output_router_logits=False)
    elif m:
        c.update(model_type=m["kind"], num_experts=m["E"], num_experts_per_tok=m["k"],
                 moe_intermediate_size=m["inter"], norm_topk_prob=m["norm"],
                 mlp_only_layers=m["mlp_only"], decoder_sparse_step=m["step"],
                 router_aux_loss_coef=0.001, output_router_logits=False)
        if m.get("shared"):
            c["shared_expert_intermediate_size"] = m["shared"]
    return c


def write_model(outdir, name, spec, seed):
    rng = np.random.default_rng(seed)
    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        os.remove(os.path.join(d, f))
    tensors = model_tensors(spec, rng)
    names = sorted(tensors)
    entries = [(n, spec["dtype"], tensors[n].shape, to_bytes(tensors[n], spec["dtype"]))
               for n in names]
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config(spec), f, indent=2)
    if spec["shards"] == 1:
        with open(os.path.join(d, "model.safetensors"), "wb") as f:
            f.write(st_blob(entries))
    else:
        k = spec["shards"]
        parts = [entries[i::k] for i in range(k)]  # interleaved: every shard has a bit of all
        wmap = {}
        for i, part in enumerate(parts):
            fn = "model-%05d-of-%05d.safetensors" % (i + 1, k)
            with open(os.path.join(d, fn), "wb") as f:
                f.write(st_blob(part))
            for e in part:
                wmap[e[0]] = fn
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": sum(len(e[3]) for e in entries)},
                       "weight_map": wmap}, f, indent=2)
    if spec.get("moe"):
        toks = tie_free_tokens(d, spec["vocab"], rng, NTOKENS)
    else:
        toks = rng.integers(0, spec["vocab"], size=NTOKENS).astype(np.int64)
    np.save(os.path.join(d, "tokens.npy"), toks)
    return d


def tie_free_tokens(d, vocab, rng, n, batch=64):
    """n tokens: random windows of max(CHECK_SEQLENS) tokens whose every token is routed with a
    gap > MIN_GAP in every MoE block when read at each of CHECK_SEQLENS (see the file comment)."""
    m = llama_ref.Model(d)
    W = max(CHECK_SEQLENS)
    kept = []
    while len(kept) * W < n:
        cand = rng.integers(0, vocab, size=(batch, W))
        ok = np.ones(batch, bool)
        for T in CHECK_SEQLENS:
            gap = m.routes(cand.reshape(-1, T))[2]              # [blocks, batch * W/T, T]
            ok &= (gap.reshape(len(gap), batch, -1) > MIN_GAP).all(axis=(0, 2))
        kept.extend(cand[ok])
    return np.concatenate(kept)[:n].astype(np.int64)


def routing_check(d):
    """None if the MoE checkpoint in d routes every token of every CHECK_SEQLENS window with a
    gap > MIN_GAP and gives each expert >= MIN_LOAD of every block's slots, else why not."""
    m = llama_ref.Model(d)
    toks = np.load(os.path.join(d, "tokens.npy"))
    for T in CHECK_SEQLENS:
        n = len(toks) // T
        blocks, sel, gap = m.routes(toks[: n * T].reshape(n, T))
        if gap.min() <= MIN_GAP:
            return "seqlen %d: router gap %.2e <= %.0e" % (T, gap.min(), MIN_GAP)
        for b, s in zip(blocks, sel):
            load = np.bincount(s.ravel(), minlength=m.E) / s.size
            if load.min() < MIN_LOAD:
                return "seqlen %d: block %d expert loads %s" % (T, b, np.round(load, 3))
    return None


def seeds(names):
    """Each fixture's seed: its spec's, else 1000 + its index among those without one."""
    plain = [n for n in sorted(names) if "seed" not in MODELS[n]]
    return {n: MODELS[n].get("seed", 1000 + plain.index(n) if n in plain else None)
            for n in names}


def main(argv):
    if len(argv) != 2:
        print(__doc__)
        return 2
    out = argv[1]
    os.makedirs(out, exist_ok=True)
    bad = 0
    for name, seed in sorted(seeds(MODELS).items()):
        d = write_model(out, name, MODELS[name], seed)
        why = routing_check(d) if MODELS[name].get("moe") else None
        if why:
            print("make_models: %s (seed %d): %s" % (name, seed, why))
            bad += 1
    print("make_models: wrote %d models into %s" % (len(MODELS), out))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
