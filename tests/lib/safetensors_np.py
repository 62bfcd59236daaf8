"""Safetensors files written and read with numpy only (8-byte little-endian header length,
JSON header with dtype/shape/data_offsets, data; no safetensors package), for the checkpoints
the model, quantize and export tests build, break and decode.  Not a test by itself.

Writing: to_bytes (float values -> F32/F16/BF16 bytes), st_blob (a whole file with
__metadata__), write_st (a given header and data, optionally a wrong header length),
write_checkpoint (a directory with model.safetensors and config.json).
Reading: read_st (header and raw data, no checks), read_safetensors (every tensor as numpy,
asserting the layout: sorted keys, alignment, contiguous offsets), without (a checkpoint minus
one tensor), bf16_to_f32 / bf16_round.
"""
import json
import os
import struct

import numpy as np

NP_DTYPE = {"F32": np.float32, "F16": np.float16}


def to_bytes(arr, dtype):
    a = np.ascontiguousarray(arr, dtype=np.float32)
    if dtype == "BF16":  # round to nearest even
        u = a.view(np.uint32).astype(np.uint64)
        r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
        return r.astype("<u2").tobytes()
    return a.astype(NP_DTYPE[dtype]).astype(np.dtype(NP_DTYPE[dtype]).newbyteorder("<")).tobytes()


def st_blob(tensors):
    """tensors: list of (name, dtype, shape, raw bytes) -> safetensors file bytes."""
    header, data, off = {}, b"", 0
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        data += raw
        off += len(raw)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


def read_st(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def write_st(path, header, data, header_len=None, pad=True):
    h = json.dumps(header).encode()
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    n = len(h) if header_len is None else header_len
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", n) + h + data)


def without(header, data, name):
    """The checkpoint rebuilt without tensor `name` (data repacked, no holes)."""
    out_h, out_d, off = {}, b"", 0
    for k, v in header.items():
        if k == "__metadata__" or k == name:
            continue
        a, b = v["data_offsets"]
        out_h[k] = dict(v, data_offsets=[off, off + b - a])
        out_d += data[a:b]
        off += b - a
    return out_h, out_d


ST_DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"),
             "I32": np.dtype("<i4")}


def read_safetensors(path):
    """name -> (dtype string, array); raises AssertionError on any layout problem."""
    with open(path, "rb") as fh:
        raw = fh.read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert (8 + n) % 8 == 0, "data buffer not 8-byte aligned (header length %d)" % n
    hdr = json.loads(raw[8:8 + n].decode("utf-8"))
    keys = [k for k in hdr if k != "__metadata__"]
    assert keys == sorted(keys), "header keys not sorted"
    assert hdr.get("__metadata__", {}).get("format") == "pt", "metadata format != pt"
    buf = raw[8 + n:]
    spans = sorted((hdr[k]["data_offsets"][0], hdr[k]["data_offsets"][1], k) for k in keys)
    pos = 0
    for b, e, k in spans:
        assert b == pos, "%s: begins at %d, previous ended at %d (hole/overlap)" % (k, b, pos)
        assert b % ST_DTYPES[hdr[k]["dtype"]].itemsize == 0, "%s misaligned" % k
        pos = e
    assert pos == len(buf), "buffer has %d bytes, tensors cover %d" % (len(buf), pos)
    out = {}
    for k in keys:
        dt, shape, (b, e) = hdr[k]["dtype"], hdr[k]["shape"], hdr[k]["data_offsets"]
        a = np.frombuffer(buf[b:e], dtype=ST_DTYPES[dt]).reshape(shape)
        out[k] = (dt, a)
    return out


def bf16_to_f32(u):
    return (u.astype(np.uint32) << 16).view(np.float32)


def bf16_round(x):
    """float32 -> bfloat16 bits, nearest with ties to even, by comparing both neighbours."""
    x = np.asarray(x, np.float32)
    bits = x.view(np.uint32)
    lo = bits & np.uint32(0xFFFF0000)  # truncation (toward zero in magnitude)
    hi = lo + np.uint32(0x10000)       # next bf16 away from zero
    lov = lo.view(np.float32).astype(np.float64)
    hiv = hi.view(np.float32).astype(np.float64)
    dlo = np.abs(x.astype(np.float64) - lov)
    dhi = np.abs(hiv - x.astype(np.float64))
    lo_even = ((lo >> 16) & 1) == 0
    pick_hi = (dhi < dlo) | ((dhi == dlo) & ~lo_even)
    return np.where(pick_hi, hi >> 16, lo >> 16).astype(np.uint16)


def write_checkpoint(d, tensors, config):
    """A tiny HF checkpoint written by numpy: name -> (values, dtype)."""
    os.makedirs(d, exist_ok=True)
    hdr, blobs, off = {}, [], 0
    for name in sorted(tensors):
        x, dt = tensors[name]
        if dt == "BF16":
            b = bf16_round(x).tobytes()
        else:
            b = np.asarray(x, ST_DTYPES[dt]).tobytes()
        hdr[name] = {"dtype": dt, "shape": list(np.shape(x)), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(hdr).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(os.path.join(d, "model.safetensors"), "wb") as fh:
        fh.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    with open(os.path.join(d, "config.json"), "w") as fh:
        json.dump(config, fh)
