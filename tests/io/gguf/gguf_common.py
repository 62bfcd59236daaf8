"""Shared plumbing of the GGUF tests: running mpiquant, the result files they need, and the
numpy decoding of a result file (README "Results": Ŵ = scales·(code − zeros))."""
import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "lib"))
from launch import launch_cmd, subprocess_env  # noqa: E402

# name -> quantize options (demo model, calibration as the issue states). "fit": exported as
# blocks; the others must be refused.
RESULTS = {
    "q4s": (["--bits", "4", "--group-size", "32", "--no-act-order"], "fit"),
    "q4a": (["--bits", "4", "--group-size", "32", "--no-act-order", "--asym"], "fit"),
    "q5s": (["--bits", "5", "--group-size", "32", "--no-act-order"], "fit"),
    "q5a": (["--bits", "5", "--group-size", "32", "--no-act-order", "--asym"], "fit"),
    "q8s": (["--bits", "8", "--group-size", "32", "--no-act-order"], "fit"),
    "q4g64": (["--bits", "4", "--group-size", "64", "--no-act-order"], "fit"),
    # the sweep itself quantizes with float16 scales: exported as it is, no copy made exact
    "q4s16": (["--bits", "4", "--group-size", "32", "--no-act-order", "--scale-dtype",
               "float16"], "fit"),
    "q3": (["--bits", "3", "--group-size", "32", "--no-act-order"], "refuse"),
    "q4g16": (["--bits", "4", "--group-size", "16", "--no-act-order"], "refuse"),
    "q4act": (["--bits", "4", "--group-size", "32", "--act-order"], "refuse"),
}
QTYPE = {"q4s": "Q4_0", "q4a": "Q4_1", "q5s": "Q5_0", "q5a": "Q5_1", "q8s": "Q8_0",
         "q4g64": "Q4_0"}


class Suite:
    """Runs commands, records cases, prints `ok`/`FAIL` lines and the closing count."""

    def __init__(self, mpiquant, workdir, mpirun="mpirun --oversubscribe"):
        self.mpiquant, self.workdir, self.mpirun = mpiquant, workdir, mpirun
        self.passed = self.failed = 0
        os.makedirs(workdir, exist_ok=True)

    def path(self, *p):
        return os.path.join(self.workdir, *p)

    def run(self, args, np_=0, timeout=300):
        """mpiquant args, alone (np_ 0) or under mpirun -np np_ (tests/lib/launch.py)."""
        cmd = launch_cmd(self.mpirun, np_, self.mpiquant) if np_ else [self.mpiquant]
        p = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=timeout,
                           env=subprocess_env())
        return p.returncode, p.stdout, p.stderr

    def case(self, name, problems, detail=""):
        if problems:
            self.failed += 1
            print("FAIL %s" % name)
            for p in problems[:12]:
                print("     - %s" % p)
            if detail:
                print("     output: %s" % detail.strip()[-1500:])
        else:
            self.passed += 1
            print("ok   %s" % name)
        sys.stdout.flush()

    def finish(self):
        print("%d passed, %d failed" % (self.passed, self.failed))
        return 0 if self.failed == 0 and self.passed > 0 else 1


def result_path(results_dir, name):
    return os.path.join(results_dir, name + ".h5")


def make_results(suite, model, calib, results_dir):
    """Quantizes the demo model once per RESULTS entry (skipped when present)."""
    os.makedirs(results_dir, exist_ok=True)
    for name, (opts, kind) in RESULTS.items():
        out = result_path(results_dir, name)
        if os.path.exists(out):
            continue
        samples = ["--nsamples", "32", "--seqlen", "256"] if kind == "fit" else \
                  ["--nsamples", "4", "--seqlen", "64"]
        rc, so, se = suite.run(["quantize", "--model", model, "--calib", calib, "--out",
                                out + ".part", "--quiet"] + samples + opts)
        if rc != 0:
            raise RuntimeError("quantize %s: exit %d\n%s%s" % (name, rc, so, se))
        os.replace(out + ".part", out)


# ---- a byte-level BPE tokenizer.json for the demo model ----

LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def gpt2_byte_chars():
    """GPT-2's byte-to-unicode table, written from its definition: printable Latin-1 bytes
    stand for themselves, the other 68 for U+0100 upwards in byte order."""
    keep = set(range(33, 127)) | set(range(161, 173)) | set(range(174, 256))
    out, extra = [], 0
    for b in range(256):
        if b in keep:
            out.append(chr(b))
        else:
            out.append(chr(256 + extra))
            extra += 1
    return out


def make_tokenizer_dir(model, dst, variant="ok"):
    """A --model directory: the demo checkpoint (symlinked) plus a tokenizer.json whose ids 0..255
    are the byte tokens except 128..132 (continuation bytes no ASCII text has) = merged tokens,
    133 = a special added token, 134 = no token at all (padding). Returns the expected
    (tokens, types, merges). variant "fallback": SentencePiece-style byte_fallback BPE;
    "regex": an unknown split regex; "broken": truncated JSON (all must be refused)."""
    os.makedirs(dst, exist_ok=True)
    for f in ("config.json", "model.safetensors"):
        if not os.path.exists(os.path.join(dst, f)):
            os.symlink(os.path.abspath(os.path.join(model, f)), os.path.join(dst, f))
    chars = gpt2_byte_chars()
    vocab = {chars[b]: b for b in range(256) if not 128 <= b <= 134}
    merged = {128: "th", 129: "the", 130: "\u0120t", 131: "\u0120the", 132: "he"}
    vocab.update({t: i for i, t in merged.items()})
    merges = ["t h", "th e", "h e", "\u0120 t", "\u0120t he"]
    tok = {"version": "1.0",
           "added_tokens": [{"id": 133, "content": "<|end|>", "special": True}],
           "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
               {"type": "Split", "pattern": {"Regex": LLAMA3_SPLIT if variant != "regex"
                                             else r"\w+|\s+"},
                "behavior": "Isolated", "invert": False},
               {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                "use_regex": False}]},
           "model": {"type": "BPE", "vocab": vocab,
                     "merges": [m.split(" ") for m in merges] if variant == "ok" else merges,
                     "byte_fallback": variant == "fallback"}}
    with open(os.path.join(dst, "tokenizer.json"), "w", encoding="utf-8") as f:
        if variant == "broken":
            f.write('{"model": {"type": "BPE", "vocab": {')
        else:
            json.dump(tok, f, ensure_ascii=False)
    with open(os.path.join(dst, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<|end|>", "add_bos_token": False,
                   "chat_template": "{{ messages }}"}, f)
    tokens = [None] * 256
    for t, i in vocab.items():
        tokens[i] = t
    tokens[133], tokens[134] = "<|end|>", "[PAD134]"
    types = [1] * 256
    types[133], types[134] = 3, 5
    return tokens, types, merges


def with_config(result, model, dst_result, dst_model, **changes):
    """Copies of a result file and of the model directory whose config.json has `changes`
    (e.g. rope_scaling), for the forward passes of both programs."""
    shutil.copyfile(result, dst_result)
    with h5py.File(dst_result, "r+") as f:
        cfg = json.loads(f["model/config"][()].decode())
        cfg.update(changes)
        del f["model/config"]
        f.create_dataset("model/config", data=np.bytes_(json.dumps(cfg, indent=2)))
        # the copy no longer matches the checkpoint it was quantized from: drop the record
        # that `eval --quantized` would (rightly) refuse it by
        if "checkpoint_hash" in f.attrs:
            del f.attrs["checkpoint_hash"]
    os.makedirs(dst_model, exist_ok=True)
    if not os.path.exists(os.path.join(dst_model, "model.safetensors")):
        os.symlink(os.path.abspath(os.path.join(model, "model.safetensors")),
                   os.path.join(dst_model, "model.safetensors"))
    with open(os.path.join(dst_model, "config.json"), "w") as fh:
        json.dump(cfg, fh, indent=2)


# ---- result files in numpy ----

def unpack_codes(q, cols, bits):
    bitpos = np.arange(cols)[:, None] * bits + np.arange(bits)
    stream = (q[:, bitpos // 32] >> (bitpos % 32).astype(np.uint32)) & 1
    return (stream << np.arange(bits, dtype=np.uint32)).sum(-1).astype(np.int64)


def pack_codes(codes, bits):
    rows, cols = codes.shape
    words = (cols * bits + 31) // 32
    q = np.zeros((rows, words), dtype=np.uint64)
    bitpos = np.arange(cols)[:, None] * bits + np.arange(bits)  # [cols, bits]
    bit = (codes[:, :, None] >> np.arange(bits)) & 1             # [rows, cols, bits]
    for c in range(cols):
        for k in range(bits):
            p = bitpos[c, k]
            q[:, p // 32] |= bit[:, c, k].astype(np.uint64) << np.uint64(p % 32)
    return q.astype(np.uint32)


def read_layers(path):
    """{module: dict(codes, scales, zeros, g_idx, bits, What)}; Ŵ as mpiquant computes it: the
    double product of the float32 scale and the integer code − zero, rounded to float32."""
    out = {}
    with h5py.File(path, "r") as f:
        bits = int(f.attrs["bits"])
        for m, g in f["layers"].items():
            cols = int(g.attrs["cols"])
            codes = unpack_codes(g["qweight"][:], cols, bits)
            s, z, gi = g["scales"][:], g["zeros"][:].astype(np.int64), g["g_idx"][:]
            what = (s.astype(np.float64)[:, gi] * (codes - z[:, gi])).astype(np.float32)
            out[m] = dict(codes=codes, scales=s, zeros=z, g_idx=gi, bits=bits, What=what)
    return out


def read_model_tensors(path):
    with h5py.File(path, "r") as f:
        return {k: (v[:].astype(np.float32), v.attrs["dtype"].decode() if isinstance(
                    v.attrs["dtype"], bytes) else str(v.attrs["dtype"]))
                for k, v in f["model/tensors"].items()}


def f16_exact_copy(src, dst, sig_bits):
    """A copy of result `src` whose scales are float16 numbers of at most sig_bits significant
    bits (11 = any float16; asymmetric grids need s·zero exact in float16 too) and whose codes are
    the nearest on that grid to the original Ŵ: what a sweep with float16 scales produces."""
    shutil.copyfile(src, dst)
    with h5py.File(dst, "r+") as f:
        bits = int(f.attrs["bits"])
        maxq = (1 << bits) - 1
        for m, g in f["layers"].items():
            cols = int(g.attrs["cols"])
            codes = unpack_codes(g["qweight"][:], cols, bits)
            s, z, gi = g["scales"][:], g["zeros"][:].astype(np.int64), g["g_idx"][:]
            what = (s.astype(np.float64)[:, gi] * (codes - z[:, gi])).astype(np.float32)
            mant, ex = np.frexp(s.astype(np.float64))
            s2 = np.ldexp(np.round(mant * 2.0 ** sig_bits) / 2.0 ** sig_bits, ex)
            s2 = s2.astype(np.float16).astype(np.float32)
            assert np.all(s2.astype(np.float16).astype(np.float32) == s2)
            assert np.all((s2.astype(np.float64) * z).astype(np.float16).astype(np.float64)
                          == s2.astype(np.float64) * z) or sig_bits == 11
            new = np.clip(np.rint(what.astype(np.float64) / s2.astype(np.float64)[:, gi])
                          + z[:, gi], 0, maxq).astype(np.int64)
            g["scales"][...] = s2
            g["qweight"][...] = pack_codes(new, bits)
