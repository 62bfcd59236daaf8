#!/usr/bin/python3
"""Hostile inputs and usage errors through `mpiquant eval` at --np ranks.

Every case must exit with the expected status (3 bad input, 2 usage) within --timeout seconds,
print exactly one stderr line starting `mpiquant: error:` that contains the expected text, and
print no perplexity. The broken checkpoints are copies of make_models.py's llama_f32_gqa1
(single f32 file), qwen2_bf16_gqa2 (biases) and llama_f16_gqa4 (sharded), rewritten here; the
mixture-of-experts ones copies of mixtral_f32_e4 (sharded), qwen3moe_f16_e8, qwen2moe_bf16_e4
and qwen3_bf16_hd (q/k norms); the Phi-3 ones copies of phi3_bf16_fused (fused qkv_proj and
gate_up_proj); the Gemma 2 ones copies of gemma2_bf16. An expected text may be a tuple: the
line must hold every part (the broken copy's directory, so the line names the checkpoint, and
what is wrong).

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
from safetensors_np import read_st, st_blob, without, write_st  # noqa: E402


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
        self.list.append((label, args, rc, text if isinstance(text, tuple) else (text,)))

    def edit_config(self, d, **changes):
        path = os.path.join(d, "config.json")
        c = json.load(open(path))
        c.update(changes)
        json.dump(c, open(path, "w"))

    def drop_tensor(self, d, name):
        """Removes tensor `name` from its file (and from the shard index, if any)."""
        idx = os.path.join(d, "model.safetensors.index.json")
        fn = "model.safetensors"
        if os.path.exists(idx):
            j = json.load(open(idx))
            fn = j["weight_map"].pop(name)
            json.dump(j, open(idx, "w"))
        H, D = read_st(os.path.join(d, fn))
        assert name in H, name
        write_st(os.path.join(d, fn), *without(H, D, name))

    def resize_rows(self, d, name, rows):
        """Tensor `name` (F32 or BF16, 2-D) cut or extended (new rows: copies of row 0) to `rows`
        rows."""
        idx = os.path.join(d, "model.safetensors.index.json")
        fn = json.load(open(idx))["weight_map"][name] if os.path.exists(idx) \
            else "model.safetensors"
        H, D = read_st(os.path.join(d, fn))
        entries = []
        for k in sorted((k for k in H if k != "__metadata__"), key=lambda k: H[k]["data_offsets"]):
            v = H[k]
            a0, b0 = v["data_offsets"]
            raw, shape = D[a0:b0], v["shape"]
            if k == name:
                assert v["dtype"] in ("F32", "BF16") and len(shape) == 2
                row = shape[1] * (4 if v["dtype"] == "F32" else 2)
                raw = (raw + raw[:row] * max(0, rows - shape[0]))[: rows * row]
                shape = [rows, shape[1]]
            entries.append((k, v["dtype"], shape, raw))
        with open(os.path.join(d, fn), "wb") as f:
            f.write(st_blob(entries))

    def moe(self):
        """Hostile mixture-of-experts and Qwen3 checkpoints."""
        def ev(d):
            return ["--model", d, "--tokens", os.path.join(d, "tokens.npy"), "--seqlen", "16"]
        for label, src, name, changes, text in (
                ("Mixtral num_local_experts 3, router and 4 experts stored", "mixtral_f32_e4",
                 "mixtral_3_of_4", dict(num_local_experts=3), "block_sparse_moe.gate.weight"),
                ("Mixtral num_local_experts 5, router and 4 experts stored", "mixtral_f32_e4",
                 "mixtral_5_of_4", dict(num_local_experts=5), "block_sparse_moe.gate.weight"),
                ("Qwen3-MoE num_experts 6, router and 8 experts stored", "qwen3moe_f16_e8",
                 "qwen3moe_6_of_8", dict(num_experts=6), "mlp.gate.weight"),
                ("Mixtral num_experts_per_tok 5 > 4 experts", "mixtral_f32_e4", "mixtral_top5",
                 dict(num_experts_per_tok=5), "num_experts_per_tok"),
                ("Qwen2-MoE num_experts_per_tok 0", "qwen2moe_bf16_e4", "qwen2moe_top0",
                 dict(num_experts_per_tok=0), "num_experts_per_tok"),
                ("Qwen3-MoE mlp_only_layers [0], block 0 stores experts", "qwen3moe_f16_e8",
                 "qwen3moe_dense0", dict(mlp_only_layers=[0, 1]),
                 "model.layers.0.mlp.gate_proj.weight")):
            d = self.copy(src, name)
            self.edit_config(d, **changes)
            self.add(label, ev(d), 3, (name, text))
        for label, src, name, tensor in (
                ("Mixtral without a router", "mixtral_f32_e4", "mixtral_norouter",
                 "model.layers.1.block_sparse_moe.gate.weight"),
                ("Mixtral without an expert's w3", "mixtral_f32_e4", "mixtral_now3",
                 "model.layers.0.block_sparse_moe.experts.2.w3.weight"),
                ("Qwen3-MoE without a router", "qwen3moe_f16_e8", "qwen3moe_norouter",
                 "model.layers.2.mlp.gate.weight"),
                ("Qwen2-MoE without shared_expert_gate", "qwen2moe_bf16_e4", "qwen2moe_nogate",
                 "model.layers.3.mlp.shared_expert_gate.weight"),
                ("Qwen2-MoE without a q bias", "qwen2moe_bf16_e4", "qwen2moe_noqbias",
                 "model.layers.0.self_attn.q_proj.bias"),
                ("Qwen3 without q_norm", "qwen3_bf16_hd", "qwen3_noqnorm",
                 "model.layers.1.self_attn.q_norm.weight"),
                ("Qwen3-MoE without k_norm", "qwen3moe_f16_e8", "qwen3moe_noknorm",
                 "model.layers.0.self_attn.k_norm.weight")):
            d = self.copy(src, name)
            self.drop_tensor(d, tensor)
            self.add(label, ev(d), 3, (name, tensor))
        # config and routers agree, the expert tensors do not: one too many, one missing
        for name, E, text in (("mixtral_extra_expert", 3, "experts.3"),
                              ("mixtral_missing_expert", 5, "experts.4")):
            d = self.copy("mixtral_f32_e4", name)
            self.edit_config(d, num_local_experts=E)
            for layer in (0, 1):
                self.resize_rows(d, "model.layers.%d.block_sparse_moe.gate.weight" % layer, E)
            self.add("Mixtral %d experts configured and routed, 4 stored" % E, ev(d), 3,
                     (name, text))
        d = self.copy("qwen3_bf16_hd", "qwen3_headdim")
        self.edit_config(d, head_dim=8)  # hidden / heads: the stored q_proj is [64, 32]
        self.add("Qwen3 head_dim 8, q_proj and q_norm stored for 16", ev(d), 3,
                 ("qwen3_headdim", "config expects"))

    def phi3(self):
        """Hostile Phi-3 checkpoints: fused tensors that disagree with the config, configs asking
        for what the forward pass does not compute."""
        def ev(d):
            return ["--model", d, "--tokens", os.path.join(d, "tokens.npy"), "--seqlen", "16"]
        # qkv_proj is [(4 + 2·2)·8, 32] = [64, 32] and gate_up_proj [2·64, 32] = [128, 32]
        for label, name, tensor, rows, text in (
                ("Phi-3 qkv_proj with 72 rows (one kv head too many)", "phi3_qkv72",
                 "model.layers.1.self_attn.qkv_proj.weight", 72, "config expects [64, 32]"),
                ("Phi-3 gate_up_proj with 64 rows (gate only)", "phi3_gateup64",
                 "model.layers.0.mlp.gate_up_proj.weight", 64, "config expects [128, 32]")):
            d = self.copy("phi3_bf16_fused", name)
            self.resize_rows(d, tensor, rows)
            self.add(label, ev(d), 3, (name, tensor, text))
        d = self.copy("phi3_bf16_fused", "phi3_noqkv")
        self.drop_tensor(d, "model.layers.0.self_attn.qkv_proj.weight")
        self.add("Phi-3 without qkv_proj", ev(d), 3,
                 ("phi3_noqkv", "model.layers.0.self_attn.qkv_proj.weight: missing tensor"))
        for label, name, changes, text in (
                ("Phi-3 num_key_value_heads 4, qkv_proj stored for 2", "phi3_kv4",
                 dict(num_key_value_heads=4), "self_attn.qkv_proj.weight: shape [64, 32]"),
                ("Phi-3.5 longrope rope_scaling", "phi3_longrope",
                 dict(rope_scaling={"type": "longrope", "short_factor": [1.0] * 4,
                                    "long_factor": [1.0] * 4}), "longrope"),
                ("Phi-3 su rope_scaling", "phi3_su", dict(rope_scaling={"type": "su"}), "'su'"),
                ("Phi-4-mini partial_rotary_factor 0.75", "phi3_partial",
                 dict(partial_rotary_factor=0.75), "partial_rotary_factor")):
            d = self.copy("phi3_bf16_fused", name)
            self.edit_config(d, **changes)
            self.add(label, ev(d), 3, (name, text))

    def gemma(self):
        """Hostile Gemma 2 checkpoints (copies of gemma2_bf16) and the refused Gemma 3."""
        def ev(d):
            return ["--model", d, "--tokens", os.path.join(d, "tokens.npy"), "--seqlen", "16"]
        for label, name, changes, text in (
                ("Gemma 2 hidden_activation relu", "gemma2_relu",
                 dict(hidden_activation="relu"), ("hidden_activation", "'relu'")),
                ("Gemma 2 hidden_act relu (no hidden_activation)", "gemma2_act",
                 dict(hidden_activation=None, hidden_act="relu"), ("hidden_act", "'relu'")),
                ("Gemma 2 attn_logit_softcapping -1", "gemma2_cap",
                 dict(attn_logit_softcapping=-1.0), "attn_logit_softcapping"),
                ("Gemma 3 config", "gemma3_cfg", dict(architectures=["Gemma3ForCausalLM"]),
                 ("Gemma3ForCausalLM", "q_norm", "rope_local_base_freq", "multimodal")),
                ("Gemma 3 multimodal config", "gemma3_mm",
                 dict(architectures=["Gemma3ForConditionalGeneration"]),
                 ("Gemma3ForConditionalGeneration", "not implemented"))):
            d = self.copy("gemma2_bf16", name)
            self.edit_config(d, **changes)
            self.add(label, ev(d), 3, (name,) + (text if isinstance(text, tuple) else (text,)))
        d = self.copy("gemma2_bf16", "gemma2_noffn")
        self.drop_tensor(d, "model.layers.1.pre_feedforward_layernorm.weight")
        self.add("Gemma 2 without pre_feedforward_layernorm", ev(d), 3,
                 ("gemma2_noffn", "model.layers.1.pre_feedforward_layernorm.weight: missing "
                  "tensor"))
        d = self.copy("gemma2_bf16", "gemma2_seqlen")
        self.edit_config(d, sliding_window=8)
        self.add("Gemma 2 --seqlen 16 beyond sliding_window 8", ev(d), 2, "sliding_window")

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

        self.moe()
        self.phi3()
        self.gemma()

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
        elif any(t not in errs[0] for t in text):
            problems.append("error line lacks %r" % [t for t in text if t not in errs[0]])
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
