#!/usr/bin/python3
"""Hostile inputs and usage errors through `mpiquant eval` at --np ranks.

Every case must exit with the expected status (3 bad input, 2 usage) within --timeout seconds,
print exactly one stderr line starting `mpiquant: error:` that contains the expected text, and
print no perplexity. The broken checkpoints are copies of make_models.py's llama_f32_gqa1
(single f32 file), qwen2_bf16_gqa2 (biases) and llama_f16_gqa4 (sharded), rewritten here.

usage: run_eval_errors.py --mpiquant BIN --np N --models DIR --workdir DIR [--mpirun ...]
"""
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import model_drivers as common  # noqa: E402
from safetensors_np import read_st, without, write_st  # noqa: E402


class Cases:
    def __init__(self, a):
        self.a = a
        self.w = os.path.abspath(a.workdir)
        self.list = []  # (label, args, expected exit, expected text in the error line)

    def copy(self, src, name):
        d = os.path.join(self.w, name)
        if os.path.exists(d):
            shutil.rmtree(d)
        shutil.copytree(os.path.join(self.a.models, src), d)
        return d

    def add(self, label, args, rc, text):
        self.list.append((label, args, rc, text))

    def build(self):
        base = "llama_f32_gqa1"
        tok = os.path.join(self.a.models, base, "tokens.npy")
        ok_model = os.path.join(self.a.models, base)
        st = lambda d: os.path.join(d, "model.safetensors")  # noqa: E731
        H, D = read_st(os.path.join(ok_model, "model.safetensors"))
        names = sorted(k for k in H if k != "__metadata__")
        ev = lambda d, *extra: ["--model", d, "--tokens", tok, "--seqlen", "16"] + list(extra)  # noqa

        d = self.copy(base, "truncated")
        raw = open(st(d), "rb").read()
        open(st(d), "wb").write(raw[: len(raw) - len(D) // 2])
        self.add("truncated safetensors", ev(d), 3, "model.safetensors")

        d = self.copy(base, "header_len")
        write_st(st(d), H, D, header_len=10 ** 9)
        self.add("header length beyond file", ev(d), 3, "model.safetensors")

        d = self.copy(base, "overlap")
        h = json.loads(json.dumps(H))
        v = h[names[3]]
        a0, b0 = v["data_offsets"]
        v["data_offsets"] = [a0 - 4, b0 - 4] if a0 >= 4 else [a0 + 4, b0 + 4]
        write_st(st(d), h, D)
        self.add("overlapping offsets", ev(d), 3, "model.safetensors")

        d = self.copy(base, "out_of_range")
        h = json.loads(json.dumps(H))
        v = h[names[5]]
        a0, b0 = v["data_offsets"]
        v["data_offsets"] = [len(D) + 64, len(D) + 64 + b0 - a0]
        write_st(st(d), h, D)
        self.add("out-of-range offsets", ev(d), 3, "model.safetensors")

        d = self.copy(base, "shape_bytes")
        h = json.loads(json.dumps(H))
        v = h["model.layers.0.mlp.up_proj.weight"]
        v["shape"] = [v["shape"][0], v["shape"][1] + 1]
        write_st(st(d), h, D)
        self.add("shape x dtype != byte length", ev(d), 3, "model.safetensors")

        d = self.copy(base, "dtype")
        h = json.loads(json.dumps(H))
        h["model.norm.weight"]["dtype"] = "Q4X"
        write_st(st(d), h, D)
        self.add("unknown dtype", ev(d), 3, "model.safetensors")

        d = self.copy(base, "missing")
        write_st(st(d), *without(H, D, "model.layers.1.mlp.up_proj.weight"))
        self.add("missing tensor", ev(d), 3, "model.layers.1.mlp.up_proj.weight")

        d = self.copy(base, "heads")
        c = json.load(open(os.path.join(d, "config.json")))
        c["num_attention_heads"] = 5
        json.dump(c, open(os.path.join(d, "config.json"), "w"))
        self.add("hidden_size not divisible by heads", ev(d), 3, "config.json")

        d = self.copy(base, "inter")
        c = json.load(open(os.path.join(d, "config.json")))
        c["intermediate_size"] = 50
        json.dump(c, open(os.path.join(d, "config.json"), "w"))
        self.add("weight shape vs config", ev(d), 3, "config expects [50, 32]")

        d = self.copy(base, "vocab")
        c = json.load(open(os.path.join(d, "config.json")))
        c["vocab_size"] = 80
        json.dump(c, open(os.path.join(d, "config.json"), "w"))
        self.add("embedding shape vs vocab_size", ev(d), 3, "model.embed_tokens.weight")

        d = self.copy(base, "arch")
        c = json.load(open(os.path.join(d, "config.json")))
        c["architectures"] = ["GPT2LMHeadModel"]
        json.dump(c, open(os.path.join(d, "config.json"), "w"))
        self.add("unsupported architecture", ev(d), 3, "unsupported architecture")

        for label, key, value, text in (
                ("yarn rope_scaling", "rope_scaling",
                 {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 4096},
                 "rope_scaling"),
                ("hidden_act gelu", "hidden_act", "gelu", "hidden_act")):
            d = self.copy(base, key)
            c = json.load(open(os.path.join(d, "config.json")))
            c[key] = value
            json.dump(c, open(os.path.join(d, "config.json"), "w"))
            self.add("unsupported " + label, ev(d), 3, text)

        d = self.copy(base, "window")
        c = json.load(open(os.path.join(d, "config.json")))
        c["sliding_window"] = 8
        json.dump(c, open(os.path.join(d, "config.json"), "w"))
        self.add("--seqlen beyond sliding_window", ev(d), 2,
                 "sliding_window")

        d = self.copy("qwen2_bf16_gqa2", "qwen_nobias")
        Hq, Dq = read_st(st(d))
        write_st(st(d), *without(Hq, Dq, "model.layers.0.self_attn.k_proj.bias"))
        self.add("Qwen2 without k bias", ["--model", d, "--tokens",
                 os.path.join(d, "tokens.npy"), "--seqlen", "16"], 3,
                 "model.layers.0.self_attn.k_proj.bias")

        d = self.copy("llama_f16_gqa4", "shard_gone")
        os.remove(os.path.join(d, "model-00002-of-00002.safetensors"))
        self.add("missing shard", ["--model", d, "--tokens", os.path.join(d, "tokens.npy")], 3,
                 "model-00002-of-00002.safetensors")

        big = os.path.join(self.w, "big_ids.npy")
        t = np.load(tok)
        t[100] = 61  # vocab_size is 61
        np.save(big, t)
        self.add("token id >= vocab (.npy)", ["--model", ok_model, "--tokens", big], 3, big)

        raw_tok = os.path.join(self.w, "text.txt")
        open(raw_tok, "w").write("raw bytes need a 256-token vocabulary\n" * 20)
        self.add("raw bytes, vocab 61", ["--model", ok_model, "--tokens", raw_tok], 3, raw_tok)

        self.add("fewer tokens than one window", ["--model", ok_model, "--tokens", tok,
                 "--seqlen", "1000"], 3, tok)
        self.add("no such model", ["--model", os.path.join(self.w, "nope"), "--tokens", tok], 3,
                 "nope")
        self.add("no such token file", ["--model", ok_model, "--tokens",
                 os.path.join(self.w, "nope.npy")], 3, "nope.npy")

        # usage errors
        self.add("missing --model", ["--tokens", tok], 2, "--model")
        self.add("missing --tokens", ["--model", ok_model], 2, "--tokens")
        self.add("--seqlen abc", ["--model", ok_model, "--tokens", tok, "--seqlen", "abc"], 2,
                 "--seqlen")
        self.add("--seqlen 0", ["--model", ok_model, "--tokens", tok, "--seqlen", "0"], 2,
                 "--seqlen")
        self.add("--nwindows -1", ["--model", ok_model, "--tokens", tok, "--nwindows", "-1"], 2,
                 "--nwindows")
        self.add("--seqlen without value", ["--model", ok_model, "--tokens", tok, "--seqlen"], 2,
                 "--seqlen")
        self.add("unknown option", ["--model", ok_model, "--tokens", tok, "--frobnicate"], 2,
                 "--frobnicate")
        if self.a.quantized_supported:
            self.add("--quantized missing file", ["--model", ok_model, "--tokens", tok,
                     "--quantized", os.path.join(self.w, "nope.h5")], 3, "nope.h5")
            self.add("--quantized not a result file", ["--model", ok_model, "--tokens", tok,
                     "--quantized", tok], 3, tok)
        else:
            self.add("--quantized not yet supported", ["--model", ok_model, "--tokens", tok,
                     "--quantized", os.path.join(self.w, "nope.h5")], 2, "--quantized")


def main(argv=None):
    a = common.parser(__doc__, timeout=60.0).parse_args(argv)
    os.makedirs(a.workdir, exist_ok=True)
    env = common.subprocess_env()
    helptext = subprocess.run([a.mpiquant, "eval", "--help"], env=env, stdout=subprocess.PIPE,
                              timeout=60).stdout.decode()
    a.quantized_supported = "not yet supported" not in helptext
    c = Cases(a)
    c.build()
    npass = nfail = 0
    for label, args, want_rc, text in c.list:
        cmd = shlex.split(a.mpirun) + ["-np", str(a.np), a.mpiquant, "eval"] + args
        t0 = time.time()
        try:
            p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=a.timeout)
            rc, out, err = p.returncode, p.stdout.decode(errors="replace"), \
                p.stderr.decode(errors="replace")
        except subprocess.TimeoutExpired:
            rc, out, err = "timeout", "", ""
        dt = time.time() - t0
        errs = [l for l in err.splitlines() if l.startswith("mpiquant: error:")]
        problems = []
        if rc != want_rc:
            problems.append("exit %s, expected %d" % (rc, want_rc))
        if len(errs) != 1:
            problems.append("%d error lines" % len(errs))
        elif text not in errs[0]:
            problems.append("error line lacks %r" % text)
        if "perplexity" in out:
            problems.append("printed a perplexity")
        if problems:
            nfail += 1
            print("FAIL %s: %s\n     %s\n     stderr: %s" % (label, "; ".join(problems),
                                                             shlex.join(cmd), err.strip()[-800:]))
        else:
            npass += 1
            print("ok   %s (%.1fs): %s" % (label, dt, errs[0]))
    print("%d passed, %d failed" % (npass, nfail))
    return 0 if nfail == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
