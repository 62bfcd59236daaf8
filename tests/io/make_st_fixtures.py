#!/usr/bin/env python3
"""Writes the fixtures of tests/io/test_readers.c into OUTDIR: safetensors checkpoints written
by hand (struct + json, no safetensors package), good and hostile; config.json files; token
files (.npy v1/v2, .h5, raw bytes). Expected float32 values of the F16/BF16 tensors are computed
here with numpy and stored as a float32 safetensors file, so the C test checks its conversions
against an independent implementation.

usage: make_st_fixtures.py OUTDIR
"""
import json
import os
import struct
import sys

import numpy as np


def st_bytes(tensors, metadata=None, raw_header=None, header_len=None):
    """tensors: list of (name, dtype string, shape, raw bytes). Data laid out in order."""
    header, data, off = {}, b"", 0
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        data += raw
        off += len(raw)
    if metadata is not None:
        header["__metadata__"] = metadata
    h = raw_header if raw_header is not None else json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    n = len(h) if header_len is None else header_len
    return struct.pack("<Q", n) + h + data


def write(path, blob):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(blob)


def f16_specials():
    bits = [0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x3C00, 0xBC00, 0x7BFF, 0xFBFF,
            0x7C00, 0xFC00, 0x7E00, 0x7C01, 0x3555, 0x5640, 0x1234, 0x0200]
    return np.array(bits, dtype=np.uint16)


def bf16_values(rng):
    f = rng.standard_normal(10).astype(np.float32)
    b = (f.view(np.uint32) >> 16).astype(np.uint16)
    extra = np.array([0x0000, 0x8000, 0x0001, 0x7F80, 0xFF80, 0x7FC0, 0x3F80, 0x0080], np.uint16)
    return np.concatenate([b, extra])


def bf16_to_f32(b):
    return (b.astype(np.uint32) << 16).view(np.float32)


def good_checkpoints(out):
    rng = np.random.default_rng(7)
    a = rng.standard_normal((3, 4)).astype(np.float32)
    h = f16_specials()
    b = bf16_values(rng)
    s = np.array([2.5], np.float32)
    tensors = [
        ("model.a", "F32", (3, 4), a.tobytes()),
        ("model.half", "F16", (len(h),), h.tobytes()),
        ("model.bf", "BF16", (2, len(b) // 2), b.tobytes()),
        ("model.scalar", "F32", (), s.tobytes()),
        ("model.empty", "F32", (0, 3), b""),
    ]
    write(f"{out}/single/model.safetensors", st_bytes(tensors, metadata={"format": "pt"}))
    expected = [
        ("model.a", "F32", (3, 4), a.tobytes()),
        ("model.half", "F32", (len(h),), h.view(np.float16).astype(np.float32).tobytes()),
        ("model.bf", "F32", (2, len(b) // 2), bf16_to_f32(b).tobytes()),
    ]
    write(f"{out}/expected.safetensors", st_bytes(expected))

    # sharded: two shards, index maps each tensor to its shard
    w1 = np.arange(6, dtype=np.float32).reshape(2, 3)
    w2 = (np.arange(4, dtype=np.float32) - 1.5).astype(np.float16)
    w3 = bf16_to_f32((np.arange(5, dtype=np.float32) * 0.25).view(np.uint32) >> 16)
    w3b = (np.arange(5, dtype=np.float32) * 0.25).view(np.uint32) >> 16
    s1 = st_bytes([("layers.0.w", "F32", (2, 3), w1.tobytes()),
                   ("layers.0.h", "F16", (4,), w2.tobytes())])
    s2 = st_bytes([("layers.1.b", "BF16", (5,), w3b.astype(np.uint16).tobytes())])
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    write(f"{out}/sharded/{names[0]}", s1)
    write(f"{out}/sharded/{names[1]}", s2)
    index = {"metadata": {"total_size": 42},
             "weight_map": {"layers.0.w": names[0], "layers.0.h": names[0], "layers.1.b": names[1]}}
    write(f"{out}/sharded/model.safetensors.index.json", json.dumps(index).encode())
    assert np.all(w3 == np.arange(5, dtype=np.float32) * 0.25)

    # index naming a tensor its shard does not hold
    write(f"{out}/bad_index/{names[0]}", s1)
    bad = {"weight_map": {"layers.0.w": names[0], "layers.9.x": names[0]}}
    write(f"{out}/bad_index/model.safetensors.index.json", json.dumps(bad).encode())
    # index naming a shard file that does not exist
    write(f"{out}/bad_index_shard/{names[0]}", s1)
    bad = {"weight_map": {"layers.0.w": names[0], "layers.1.b": names[1]}}
    write(f"{out}/bad_index_shard/model.safetensors.index.json", json.dumps(bad).encode())


def hostile(out):
    """Each file must give MQ_EINPUT naming the file (list read by the C test)."""
    x = np.arange(4, dtype=np.float32).tobytes()
    good = st_bytes([("t", "F32", (4,), x), ("u", "F32", (4,), x)])
    cases = {}
    cases["truncated"] = good[: len(good) - 5]  # data cut: offsets run past the buffer
    cases["tiny"] = good[:5]                       # not even the 8-byte length
    cases["hdrlen_beyond"] = st_bytes([("t", "F32", (4,), x)], header_len=10 ** 6)
    cases["hdrlen_huge"] = struct.pack("<Q", 2 ** 63 + 5) + b"{}" * 8
    hdr = {"t": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
           "u": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}
    cases["overlap"] = st_bytes([("pad", "F32", (6,), x + x[:8])], raw_header=json.dumps(hdr).encode())
    hdr = {"t": {"dtype": "F32", "shape": [4], "data_offsets": [16, 32]}}
    cases["out_of_range"] = st_bytes([("pad", "F32", (4,), x)], raw_header=json.dumps(hdr).encode())
    hdr = {"t": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 16]}}
    cases["shape_mismatch"] = st_bytes([("pad", "F32", (4,), x)], raw_header=json.dumps(hdr).encode())
    hdr = {"t": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]}}
    cases["unknown_dtype"] = st_bytes([("pad", "F32", (4,), x)], raw_header=json.dumps(hdr).encode())
    hdr = {"t": {"dtype": "F32", "shape": [4], "data_offsets": [0.0, 16.0]}}
    cases["float_offsets"] = st_bytes([("pad", "F32", (4,), x)], raw_header=json.dumps(hdr).encode())
    hdr = {"t": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}}
    cases["negative_shape"] = st_bytes([("pad", "F32", (4,), x)], raw_header=json.dumps(hdr).encode())
    hdr = {"t": {"dtype": "F32", "shape": [4], "data_offsets": [16, 0]}}
    cases["reversed_offsets"] = st_bytes([("pad", "F32", (8,), x + x)], raw_header=json.dumps(hdr).encode())
    hdr = {"t": {"dtype": "F32", "shape": [2 ** 62, 2 ** 62], "data_offsets": [0, 16]}}
    cases["shape_overflow"] = st_bytes([("pad", "F32", (4,), x)], raw_header=json.dumps(hdr).encode())
    cases["bad_json"] = st_bytes([], raw_header=b'{"t": {"dtype": "F32", "shape": [4')
    cases["not_object"] = st_bytes([], raw_header=b"[1, 2, 3]")
    cases["dup_keys"] = st_bytes([("pad", "F32", (8,), x + x)], raw_header=(
        b'{"t": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},'
        b' "t": {"dtype": "F32", "shape": [4], "data_offsets": [16, 32]}}'))
    for name, blob in cases.items():
        write(f"{out}/hostile/{name}.safetensors", blob)
    with open(f"{out}/hostile/LIST", "w") as f:
        f.write("\n".join(sorted(cases)) + "\n")


def configs(out):
    base = {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 176,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "vocab_size": 1000, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
            "max_position_embeddings": 128, "tie_word_embeddings": True, "torch_dtype": "bfloat16"}
    os.makedirs(f"{out}/config", exist_ok=True)

    def put(name, cfg):
        with open(f"{out}/config/{name}.json", "w") as f:
            json.dump(cfg, f, indent=2)

    put("llama", base)
    q = {k: v for k, v in base.items() if k not in ("num_key_value_heads", "rms_norm_eps",
                                                    "rope_theta", "tie_word_embeddings")}
    q["architectures"] = ["Qwen2ForCausalLM"]
    put("qwen2", q)
    # Gemma 2: Gemma2Config's defaults when the fields are absent; null soft-caps are none
    g = {k: v for k, v in base.items() if k != "tie_word_embeddings"}
    put("gemma2", dict(g, architectures=["Gemma2ForCausalLM"], head_dim=32,
                       sliding_window=4096))
    put("gemma2_nocap", dict(g, architectures=["Gemma2ForCausalLM"], query_pre_attn_scalar=144,
                             attn_logit_softcapping=None, final_logit_softcapping=None,
                             hidden_activation="gelu_pytorch_tanh", hidden_act="silu"))
    put("bad_zero_heads", dict(base, num_attention_heads=0))
    put("bad_not_divisible", dict(base, hidden_size=66))
    put("bad_kv", dict(base, num_key_value_heads=3))
    put("bad_arch", dict(base, architectures=["GPT2LMHeadModel"]))
    put("bad_missing", {k: v for k, v in base.items() if k != "vocab_size"})
    put("bad_type", dict(base, hidden_size="64"))
    put("bad_eps", dict(base, rms_norm_eps=-1.0))
    with open(f"{out}/config/bad_json.json", "w") as f:
        f.write('{"architectures": ["LlamaForCausalLM"], "hidden_size": ')


def tokens(out):
    import h5py
    d = f"{out}/tokens"
    os.makedirs(d, exist_ok=True)
    ids = (np.arange(500) * 7) % 1000  # the C test recomputes this
    np.save(f"{d}/i32.npy", ids.astype(np.int32))
    np.save(f"{d}/u16.npy", ids.astype(np.uint16))
    np.save(f"{d}/i16.npy", ids.astype(np.int16))
    np.save(f"{d}/u32.npy", ids.astype(np.uint32))
    with open(f"{d}/i64_v2.npy", "wb") as f:
        np.lib.format.write_array(f, ids.astype(np.int64), version=(2, 0))
    small = ids % 100
    np.save(f"{d}/i8.npy", small.astype(np.int8))
    np.save(f"{d}/u8.npy", small.astype(np.uint8))
    with h5py.File(f"{d}/tok.h5", "w") as f:
        f["tokens"] = ids.astype(np.int32)
    with h5py.File(f"{d}/tok_u16.h5", "w") as f:
        f["tokens"] = ids.astype(np.uint16)
    with open(f"{d}/raw.bin", "wb") as f:
        f.write(bytes(range(256)) + b"hello")
    # hostile token files (vocab 1000)
    bad = ids.astype(np.int32).copy()
    bad[123] = 1000
    np.save(f"{d}/bad_id.npy", bad)
    neg = ids.astype(np.int64).copy()
    neg[7] = -3
    np.save(f"{d}/bad_neg.npy", neg)
    with h5py.File(f"{d}/bad_id.h5", "w") as f:
        f["tokens"] = bad
    with h5py.File(f"{d}/bad_float.h5", "w") as f:
        f["tokens"] = ids.astype(np.float32)
    with h5py.File(f"{d}/bad_name.h5", "w") as f:
        f["ids"] = ids.astype(np.int32)
    np.save(f"{d}/bad_3d.npy", ids.reshape(4, 5, 25).astype(np.int32))
    np.save(f"{d}/bad_float.npy", ids.astype(np.float32))
    np.save(f"{d}/bad_be.npy", ids.astype(">i4"))
    np.save(f"{d}/bad_u64.npy", ids.astype(np.uint64))
    blob = open(f"{d}/i32.npy", "rb").read()
    with open(f"{d}/bad_trunc.npy", "wb") as f:
        f.write(blob[:-10])
    with open(f"{d}/bad_magic.npy", "wb") as f:
        f.write(b"not a numpy file at all")


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    good_checkpoints(out)
    hostile(out)
    configs(out)
    tokens(out)


if __name__ == "__main__":
    main()
