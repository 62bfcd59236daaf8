#!/usr/bin/python3
"""A random Llama-family checkpoint of any shape (Hugging Face layout, bf16 safetensors written
tensor by tensor, so a 7B-shaped block needs no more memory than its largest tensor), and random
calibration tokens: what the whole-model benchmark quantizes.

  make_random_checkpoint.py DIR [--hidden 4096] [--inter 11008] [--heads 32] [--kv-heads 32]
                            [--vocab 32000] [--blocks 1] [--tokens N --tokens-out T.npy]
                            [--seed 0] [--experts E --topk K]

With --experts E: a Mixtral checkpoint (E experts of width --inter, top-K routing; router
weights ~ N(0, 1/hidden) so that every expert gets tokens).

Weights ~ N(0, 0.02²) (embeddings N(0, 1)), norms 1: activations stay finite through any number
of blocks at these shapes. Rerunning with the same arguments writes the same files.
"""
import argparse
import json
import os
import struct

import numpy as np


def bf16_bytes(a):
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2").tobytes()


def tensors(a):
    """(name, shape, std) in file order."""
    h, i, hd = a.hidden, a.inter, a.hidden // a.heads
    out = [("model.embed_tokens.weight", (a.vocab, h), 1.0), ("model.norm.weight", (h,), None),
           ("lm_head.weight", (a.vocab, h), 0.02)]
    for b in range(a.blocks):
        p = "model.layers.%d." % b
        out += [(p + "input_layernorm.weight", (h,), None),
                (p + "post_attention_layernorm.weight", (h,), None),
                (p + "self_attn.q_proj.weight", (a.heads * hd, h), 0.02),
                (p + "self_attn.k_proj.weight", (a.kv_heads * hd, h), 0.02),
                (p + "self_attn.v_proj.weight", (a.kv_heads * hd, h), 0.02),
                (p + "self_attn.o_proj.weight", (h, a.heads * hd), 0.02)]
        if a.experts == 0:
            out += [(p + "mlp.gate_proj.weight", (i, h), 0.02),
                    (p + "mlp.up_proj.weight", (i, h), 0.02),
                    (p + "mlp.down_proj.weight", (h, i), 0.02)]
            continue
        m = p + "block_sparse_moe."
        out.append((m + "gate.weight", (a.experts, h), 1.0 / np.sqrt(h)))
        for e in range(a.experts):
            out += [(m + "experts.%d.w1.weight" % e, (i, h), 0.02),
                    (m + "experts.%d.w3.weight" % e, (i, h), 0.02),
                    (m + "experts.%d.w2.weight" % e, (h, i), 0.02)]
    return sorted(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir")
    for k, v in (("hidden", 4096), ("inter", 11008), ("heads", 32), ("kv-heads", 32),
                 ("vocab", 32000), ("blocks", 1), ("tokens", 0), ("seed", 0),
                 ("experts", 0), ("topk", 2)):
        ap.add_argument("--" + k, type=int, default=v)
    ap.add_argument("--tokens-out")
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    ts, header, off = tensors(a), {}, 0
    for name, shape, _ in ts:
        n = 2 * int(np.prod(shape))
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    header["__metadata__"] = {"format": "pt"}
    hb = json.dumps(header).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(os.path.join(a.dir, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb)
        for name, shape, std in ts:
            x = np.ones(shape, np.float32) if std is None else \
                rng.standard_normal(shape, dtype=np.float32) * np.float32(std)
            f.write(bf16_bytes(x))
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": a.hidden,
           "intermediate_size": a.inter, "num_attention_heads": a.heads,
           "num_key_value_heads": a.kv_heads, "num_hidden_layers": a.blocks,
           "vocab_size": a.vocab, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
           "rope_theta": 10000.0, "hidden_act": "silu", "tie_word_embeddings": False,
           "torch_dtype": "bfloat16"}
    if a.experts > 0:
        cfg.update(architectures=["MixtralForCausalLM"], model_type="mixtral",
                   num_local_experts=a.experts, num_experts_per_tok=a.topk)
    with open(os.path.join(a.dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    if a.tokens > 0:
        np.save(a.tokens_out, rng.integers(0, a.vocab, a.tokens, dtype=np.int32))
    print("wrote %s (%d blocks, hidden %d, intermediate %d, %.2f GB)" %
          (a.dir, a.blocks, a.hidden, a.inter, off / 1e9))


if __name__ == "__main__":
    main()
