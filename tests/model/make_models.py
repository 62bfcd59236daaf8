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

Weights: embeddings N(0, 1), linear layers N(0, 1/in) (q and k a little larger so attention is
not uniform), norms 1 + N(0, 0.1²), biases N(0, 0.1²), head N(0, 4/hidden): activations are
O(1) and the logits have a spread of a few units (checked by the drivers).
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from safetensors_np import st_blob, to_bytes  # noqa: E402

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
}

def model_tensors(spec, rng):
    H, I, nh, nkv = spec["hidden"], spec["inter"], spec["nh"], spec["nkv"]
    hd = H // nh
    V = spec["vocab"]
    t = {}

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
        t[p + "mlp.gate_proj.weight"] = lin(I, H)
        t[p + "mlp.up_proj.weight"] = lin(I, H)
        t[p + "mlp.down_proj.weight"] = lin(H, I)
        if spec["bias"]:
            for n, out in (("q", nh * hd), ("k", nkv * hd), ("v", nkv * hd)):
                t[p + "self_attn.%s_proj.bias" % n] = 0.1 * rng.standard_normal(out)
            if spec.get("obias"):
                t[p + "self_attn.o_proj.bias"] = 0.1 * rng.standard_normal(H)
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
    if spec["arch"] != "Qwen2ForCausalLM":
        c["attention_bias"] = spec["bias"]
    if spec["max_pos"]:
        c["max_position_embeddings"] = spec["max_pos"]
    if spec.get("rope_scaling"):
        c["rope_scaling"] = spec["rope_scaling"]
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
    toks = rng.integers(0, spec["vocab"], size=700).astype(np.int64)
    np.save(os.path.join(d, "tokens.npy"), toks)
    return d


def main(argv):
    if len(argv) != 2:
        print(__doc__)
        return 2
    out = argv[1]
    os.makedirs(out, exist_ok=True)
    for i, (name, spec) in enumerate(sorted(MODELS.items())):
        write_model(out, name, spec, 1000 + i)
    print("make_models: wrote %d models into %s" % (len(MODELS), out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
