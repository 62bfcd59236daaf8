"""An independent GGUF v3 reader in numpy (the test oracle of `mpiquant export --format gguf`).

Written from the GGUF specification (ggml docs/gguf.md) and ggml's block definitions, sharing
no code with src/io/gguf_*.c:

    header      "GGUF", uint32 version (3), uint64 n_tensors, uint64 n_kv
    kv          string key, uint32 type, value (string = uint64 length + bytes;
                array = uint32 element type + uint64 count + elements)
    tensor info string name, uint32 n_dims, uint64 ne[n_dims], uint32 ggml type, uint64 offset
    data        starts at the first multiple of general.alignment (default 32) after the infos

Block types are decoded the way ggml's reference dequantizers compute them, in float32:
    Q4_0 d·(q − 8)    Q4_1 d·q + m    Q5_0 d·(q − 16)    Q5_1 d·q + m    Q8_0 d·q
with d, m float16; a block holds 32 values; qs[j] has value j in the low nibble and value j+16
in the high one; the 5th bit of value j is bit j of the little-endian uint32 qh.

    r = GGUFReader(path)
    r.kv["llama.block_count"]          # python value (lists for arrays)
    r.tensors["blk.0.attn_q.weight"]   # dict(type, ne, offset, nbytes)
    r.array("blk.0.attn_q.weight")     # float32 numpy array, row-major shape = reversed ne
    r.raw("blk.0.attn_q.weight")       # the tensor's bytes
"""
import struct

import numpy as np

GGUF_TYPES = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
              10: "<Q", 11: "<q", 12: "<d"}  # 8 string, 9 array
GGML = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 30: "BF16"}
BLOCK = {"F32": (1, 4), "F16": (1, 2), "BF16": (1, 2), "Q4_0": (32, 18), "Q4_1": (32, 20),
         "Q5_0": (32, 22), "Q5_1": (32, 24), "Q8_0": (32, 34)}


class GGUFError(Exception):
    pass


class GGUFReader:
    def __init__(self, path):
        with open(path, "rb") as f:
            self.buf = f.read()
        self.pos = 0
        if self._take(4) != b"GGUF":
            raise GGUFError("%s: not a GGUF file (magic)" % path)
        self.version = self._unpack("<I")
        if self.version != 3:
            raise GGUFError("%s: version %d, expected 3" % (path, self.version))
        n_tensors, n_kv = self._unpack("<Q"), self._unpack("<Q")
        self.kv, self.kv_types = {}, {}
        for _ in range(n_kv):
            key = self._string()
            if key in self.kv:
                raise GGUFError("duplicate key %s" % key)
            t = self._unpack("<I")
            self.kv_types[key] = t
            self.kv[key] = self._value(t)
        self.tensors, self.order = {}, []
        for _ in range(n_tensors):
            name = self._string()
            nd = self._unpack("<I")
            ne = [self._unpack("<Q") for _ in range(nd)]
            t = self._unpack("<I")
            off = self._unpack("<Q")
            if t not in GGML:
                raise GGUFError("%s: unknown ggml type %d" % (name, t))
            tname = GGML[t]
            per, size = BLOCK[tname]
            if ne[0] % per:
                raise GGUFError("%s: ne[0]=%d not a multiple of %d" % (name, ne[0], per))
            nbytes = ne[0] // per * size * int(np.prod(ne[1:], dtype=np.int64))
            if name in self.tensors:
                raise GGUFError("duplicate tensor %s" % name)
            self.tensors[name] = dict(type=tname, ne=ne, offset=off, nbytes=nbytes)
            self.order.append(name)
        self.alignment = int(self.kv.get("general.alignment", 32))
        self.data_start = (self.pos + self.alignment - 1) // self.alignment * self.alignment
        self.header_end = self.pos
        spans = sorted((t["offset"], t["offset"] + t["nbytes"], n) for n, t in self.tensors.items())
        for (b0, e0, n0), (b1, e1, n1) in zip(spans, spans[1:]):
            if b1 < e0:
                raise GGUFError("tensors %s and %s overlap" % (n0, n1))
        for b, e, n in spans:
            if b % self.alignment:
                raise GGUFError("%s: offset %d not aligned" % (n, b))
            if self.data_start + e > len(self.buf):
                raise GGUFError("%s: data beyond the end of the file" % n)

    # ---- primitives ----
    def _take(self, n):
        if self.pos + n > len(self.buf):
            raise GGUFError("truncated file at byte %d" % self.pos)
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def _unpack(self, fmt):
        return struct.unpack(fmt, self._take(struct.calcsize(fmt)))[0]

    def _string(self):
        n = self._unpack("<Q")
        return self._take(n).decode("utf-8")

    def _value(self, t):
        if t == 8:
            return self._string()
        if t == 9:
            et, n = self._unpack("<I"), self._unpack("<Q")
            return [self._value(et) for _ in range(n)]
        if t not in GGUF_TYPES:
            raise GGUFError("unknown value type %d" % t)
        return self._unpack(GGUF_TYPES[t])

    # ---- tensors ----
    def raw(self, name):
        t = self.tensors[name]
        b = self.data_start + t["offset"]
        return self.buf[b:b + t["nbytes"]]

    def shape(self, name):
        return tuple(reversed(self.tensors[name]["ne"]))

    def array(self, name):
        """float32 values, row-major with shape = reversed ne."""
        t = self.tensors[name]
        raw = np.frombuffer(self.raw(name), dtype=np.uint8)
        kind = t["type"]
        if kind == "F32":
            v = raw.view("<f4").astype(np.float32)
        elif kind == "F16":
            v = raw.view("<f2").astype(np.float32)
        elif kind == "BF16":
            v = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            v = dequantize_blocks(kind, raw)
        return v.reshape(self.shape(name))


def _f16(b):
    return np.ascontiguousarray(b).view("<f2").astype(np.float32)[:, 0]


def dequantize_blocks(kind, raw):
    per, size = BLOCK[kind]
    blk = raw.reshape(-1, size)
    d = _f16(blk[:, 0:2])
    m = _f16(blk[:, 2:4]) if kind in ("Q4_1", "Q5_1") else None
    if kind == "Q8_0":
        q = blk[:, 2:].view(np.int8).astype(np.float32)
        return (q * d[:, None]).astype(np.float32).ravel()
    qs_at = {"Q4_0": 2, "Q4_1": 4, "Q5_0": 6, "Q5_1": 8}[kind]
    qs = blk[:, qs_at:qs_at + 16]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int32)  # values j, j+16
    if kind in ("Q5_0", "Q5_1"):
        qh_at = qs_at - 4
        qh = np.ascontiguousarray(blk[:, qh_at:qh_at + 4]).view("<u4")[:, 0].astype(np.uint64)
        bits = (qh[:, None] >> np.arange(32, dtype=np.uint64)) & 1
        q |= (bits.astype(np.int32) << 4)
    if kind == "Q4_0":
        v = (q - 8).astype(np.float32) * d[:, None]
    elif kind == "Q5_0":
        v = (q - 16).astype(np.float32) * d[:, None]
    else:  # float32 multiply then add, as ggml's reference
        v = (q.astype(np.float32) * d[:, None]).astype(np.float32) + m[:, None]
    return v.astype(np.float32).ravel()


def to_llama_rows(w, heads):
    """Hugging Face q/k rows (per head: first half of the rotary dims, then the second) in
    llama.cpp's order (per head: the dims' halves interleaved), the layout the GGUF spec calls
    `llama.cpp`: split each head into [2, head_dim/2], swap the two axes."""
    w = np.asarray(w)
    hd = w.shape[0] // heads
    return w.reshape(heads, 2, hd // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def from_llama_rows(w, heads):
    """The inverse of to_llama_rows."""
    w = np.asarray(w)
    hd = w.shape[0] // heads
    return w.reshape(heads, hd // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
