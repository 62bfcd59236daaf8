#!/usr/bin/python3
"""`mpiquant export` end to end (called by CTest).

  run_export.py --mpiquant PATH --np N --workdir DIR [--mpirun "mpirun --oversubscribe"]
                [--test-bin test_result_tensors] [--timeout 120] [--seed S]

Result files are made by the real `mpiquant layer` on small problems whose layers carry Hugging
Face module names (model.layers.0.self_attn.q_proj, ...); a /model group (config.json text and a
few float tensors with their original dtypes) is then added with h5py, as `quantize` writes it.
Every exported model.safetensors is parsed (tests/lib/safetensors_np.py: header, alignment,
contiguous offsets) and checked against an independent numpy decoding of the result file
(tests/lib/export_check.py):
  dequant        W = scales·(code − zero) (float32, g = g_idx[c]); bit-exact as float32, equal to
                 numpy's float16 rounding, or to a bfloat16 round-to-nearest-even done here by
                 comparing the two neighbours; non-quantized tensors bit-exact in their dtype;
                 config.json = the stored config.
  gptq/gptq_v2   qweight/qzeros unpacked the way AutoGPTQ's QuantLinear.forward does (2/4/8 bits
                 by shifts, 3 bits with its 3-int32 scheme); codes, zeros (v1: stored + 1), fp16
                 scales and g_idx equal to the result file's, and the README formula
                 float32(scale_f16)·(q − z) equal to the result's Ŵ bit for bit (layers
                 quantized with --scale-dtype float16); quantization_config in config.json
                 (torch_dtype float16) and quantize_config.json; one warning line per layer
                 shape a consumer's kernels refuse (Marlin: out % 64, in % 128; vLLM: in %
                 group size) and per format some consumer refuses (asymmetric v1: GPTQModel;
                 gptq_v2: AutoGPTQ), nothing else.
  float32 scales gptq refused (exit 3, nothing written) before anything is written, and when a
                 later layer's scale is not a float16 value; --allow-requantize rounds them,
                 keeps the codes and prints the added error numpy computes.
  shards         --max-shard-size: model-0000k-of-0000n.safetensors and
                 model.safetensors.index.json consistent (every tensor once, in the shard the
                 index names, total_size = data bytes, each shard within the limit unless one
                 tensor alone exceeds it), decoded by the same checks as one file.
  files          --model DIR: tokenizer.json, tokenizer_config.json, tokenizer.model,
                 special_tokens_map.json, generation_config.json copied byte for byte, other
                 files of DIR not.
Also: --model DIR for results without /model, act-order g_idx, 2, 3, 4, 8 bits; errors
(incomplete file, hostile result file, unsupported gptq combinations, usage) exit 3/2 with one
`mpiquant: error:` line and leave no model.safetensors (nor temporary files) behind.
With --test-bin, the C test of io/result_tensors reads every tensor of a result file and
compares it bit for bit with the numpy decoding (and rejects the hostile files).
Prints `ok`/`FAIL` per case and `N passed, M failed`.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import drivers  # noqa: E402
from export_check import (Suite, check_dequant, check_gptq, check_model_tensors,  # noqa: E402
                          check_quant_config, expect_warnings, f16_scales, read_export,
                          result_layers, rounding_error)
from safetensors_np import write_checkpoint  # noqa: E402

Q = "model.layers.0.self_attn.q_proj"
DOWN = "model.layers.0.mlp.down_proj"
F16 = ["--scale-dtype", "float16"]
# the checkpoint files export copies from --model DIR (tokenizer.model: any bytes)
MODEL_FILES = {"tokenizer.json": b'{"version": "1.0", "model": {"type": "BPE"}}\n',
               "tokenizer_config.json": b'{"model_max_length": 64}\n',
               "special_tokens_map.json": b'{"bos_token": "<s>"}\n',
               "generation_config.json": b'{"do_sample": false}\n',
               "tokenizer.model": bytes(range(256)) * 3}


# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------
def write_problem(path, layers, seed):
    """layers: name -> (rows, cols[, 'positive']).  W small random, X with uneven column scales
    (so act-order permutes)."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        for name, spec in layers.items():
            rows, cols = spec[:2]
            W = rng.standard_normal((rows, cols)) * 0.05
            if len(spec) > 2 and spec[2] == "positive":
                W = np.abs(W) + 0.01  # every group >= 0: asymmetric zero point 0
            X = rng.standard_normal((256, cols)) * rng.uniform(0.2, 5.0, cols)[None, :]
            g = f.create_group("layers/" + name)
            g["W"] = W.astype(np.float32)
            g["X"] = X.astype(np.float32)


def bf16_exact(rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    return (x.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)


MODEL_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
    "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 2,
    "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "vocab_size": 16,
    "torch_dtype": "bfloat16", "tie_word_embeddings": False,
}


def model_tensors(seed):
    """name -> (float32 values exactly representable in dtype, dtype)."""
    rng = np.random.default_rng(seed)
    return {
        "model.embed_tokens.weight": (bf16_exact(rng, (16, 64)), "BF16"),
        "lm_head.weight": (bf16_exact(rng, (16, 64)), "BF16"),
        "model.norm.weight": (rng.uniform(0.5, 1.5, 64).astype(np.float16).astype(np.float32),
                              "F16"),
        Q + ".bias": (rng.standard_normal(32).astype(np.float32), "F32"),
    }


def add_model_group(path, config, tensors):
    """The /model group as `quantize` writes it: config as a scalar fixed-length string
    dataset, tensors as float32 datasets with a string attribute dtype."""
    with h5py.File(path, "a") as f:
        g = f.require_group("model")
        g.create_dataset("config", data=np.bytes_(json.dumps(config, indent=2).encode()))
        for name, (x, dt) in tensors.items():
            d = g.create_dataset("tensors/" + name, data=x.astype(np.float32))
            d.attrs["dtype"] = dt


# ---------------------------------------------------------------------------------------------
# checkers of one export (decoders and checks: tests/lib/export_check.py)
# ---------------------------------------------------------------------------------------------
def dequant_checker(result, dtype, model=None, config=None, max_shard=None, files=None):
    layers = result_layers(result)

    def check(out):
        st, probs, n = read_export(out, max_shard)
        if max_shard is not None and n < 2:
            probs.append("--max-shard-size %d: %d file(s)" % (max_shard, n))
        probs += check_dequant(st, layers, dtype, model) + check_files(out, files)
        cpath = os.path.join(out, "config.json")
        if config is None:
            if os.path.exists(cpath):
                probs.append("config.json written without a config")
        else:
            with open(cpath) as fh:
                got = json.load(fh)
            if got != config:
                probs.append("config.json differs from the stored config")
        if os.path.exists(os.path.join(out, "quantize_config.json")):
            probs.append("quantize_config.json written for dequant")
        return probs
    return check


def check_files(out, files):
    """files: name -> bytes the export must hold, byte for byte (None: nothing is checked)."""
    if files is None:
        return []
    probs = []
    for name, data in files.items():
        p = os.path.join(out, name)
        if not os.path.exists(p) or open(p, "rb").read() != data:
            probs.append("%s: not copied byte for byte" % name)
    extra = set(os.listdir(out)) - set(files) - {"config.json", "quantize_config.json",
                                                  "model.safetensors.index.json"}
    extra = [f for f in extra if not f.endswith(".safetensors")]
    if extra:
        probs.append("unexpected files %s" % sorted(extra))
    return probs


def gptq_checker(result, v2, opts, model=None, config=None, max_shard=None, files=None):
    layers = result_layers(result)
    bits = next(iter(layers.values()))["bits"]
    gs = int(opts[opts.index("--group-size") + 1])
    sym = "--asym" not in opts
    desc = "--no-act-order" not in opts
    exact = f16_scales(layers)

    def check(out):
        st, probs, n = read_export(out, max_shard)
        if max_shard is not None and n < 2:
            probs.append("--max-shard-size %d: %d file(s)" % (max_shard, n))
        probs += check_gptq(st, layers, v2, exact) + check_model_tensors(st, model)
        probs += check_files(out, files)
        with open(os.path.join(out, "quantize_config.json")) as fh:
            probs += ["quantize_config.json: " + p for p in
                      check_quant_config(json.load(fh), bits, gs, sym, desc, v2)]
        cpath = os.path.join(out, "config.json")
        if config is not None:
            with open(cpath) as fh:
                got = json.load(fh)
            qc = got.pop("quantization_config", {})
            probs += check_quant_config(qc, bits, gs, sym, desc, v2)
            if got.get("torch_dtype") != "float16":
                probs.append("torch_dtype %r, want float16" % got.get("torch_dtype"))
            if got != dict(config, torch_dtype="float16"):
                probs.append("config.json (without quantization_config, torch_dtype) differs")
        elif os.path.exists(cpath):
            probs.append("config.json written without a config")
        return probs
    return check


def expect_dir(s, result, model, config, name):
    """Files for the C test: manifest, <tensor>.f32 (numpy decoding), config.json."""
    d = s.path(name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    tensors = {k + ".weight": v["W"] for k, v in result_layers(result).items()}
    tensors.update({k: x for k, (x, _) in (model or {}).items()})
    with open(os.path.join(d, "manifest.txt"), "w") as fh:
        for k in sorted(tensors):
            x = np.asarray(tensors[k], np.float32)
            fh.write("%s %d %s\n" % (k, x.ndim, " ".join(str(n) for n in x.shape)))
            x.tofile(os.path.join(d, k + ".f32"))
    if config is not None:
        with h5py.File(result, "r") as f:
            text = f["model/config"][()]
        with open(os.path.join(d, "config.json"), "wb") as fh:
            fh.write(text)
    return d


def hostile_copies(s, good):
    """(path, message substring) pairs of result files a reader must reject."""
    out = []

    def variant(tag, edit, want):
        p = s.path("bad-%s.h5" % tag)
        shutil.copy(good, p)
        with h5py.File(p, "a") as f:
            edit(f)
        out.append((p, want))

    def regroup(f, ds, data):
        g = f["layers"][Q]
        del g[ds]
        g[ds] = data

    variant("incomplete", lambda f: f.attrs.__setitem__("complete", np.int32(0)), "incomplete")
    variant("bits", lambda f: f.attrs.__setitem__("bits", np.int32(9)), "bits")
    variant("qweight", lambda f: regroup(f, "qweight", f["layers"][Q]["qweight"][:, :-1]),
            "qweight")
    variant("scales", lambda f: regroup(f, "scales", f["layers"][Q]["scales"][:-1]), "scales")
    variant("zeros", lambda f: regroup(f, "zeros", f["layers"][Q]["zeros"][:, :1]), "zeros")

    def bad_gidx(f):
        gi = f["layers"][Q]["g_idx"][()]
        gi[5] = f["layers"][Q]["scales"].shape[1]
        regroup(f, "g_idx", gi)
    variant("gidx", bad_gidx, "g_idx")

    def nan_scale(f):
        sc = f["layers"][Q]["scales"][()]
        sc[1, 0] = np.nan
        regroup(f, "scales", sc)
    variant("nanscale", nan_scale, "not finite")
    variant("dtype", lambda f: f["model/tensors"][Q + ".bias"].attrs.__setitem__("dtype", "Q8"),
            "dtype")

    def dup(f):
        f["model/tensors"][Q + ".weight"] = np.zeros((32, 64), np.float32)
    variant("duplicate", dup, "both")
    p = s.path("bad-nothdf5.h5")
    with open(p, "w") as fh:
        fh.write("not an hdf5 file\n")
    out.append((p, "not an HDF5"))
    return out


def main(argv=None):
    ap = drivers.base_parser(__doc__, seed=11)  # --quick is accepted; the suite is small
    ap.set_defaults(np=1)
    ap.add_argument("--test-bin", default=None)
    a = ap.parse_args(argv)
    t0 = time.time()
    os.makedirs(a.workdir, exist_ok=True)
    s = Suite(a)
    if not os.path.exists(s.mpiquant):
        print("%s does not exist\n0 passed, 1 failed" % s.mpiquant)
        return 1

    rc, so, _ = s.run(["export", "--help"])
    s.case("export --help", [] if rc == 0 and "usage: mpiquant export" in so else
           ["exit %d" % rc])

    layers = {DOWN: (64, 128), Q: (32, 64)}
    problem = s.path("problem.h5")
    write_problem(problem, layers, a.seed)
    model = model_tensors(a.seed + 1)

    # (label, layer options, exports to run, warnings of its gptq exports: a substring each)
    # Layers 64x128 and 32x64: Marlin refuses 32 rows; group 128 does not divide 64 columns.
    marlin, unaligned = Q + " (and any 32x64 layer): out_features 32", "not a multiple of group"
    v1_asym, v2 = "GPTQModel refuses", "AutoGPTQ refuses"
    configs = [
        ("b4-g32-sym-act", ["--bits", "4", "--group-size", "32", "--sym", "--act-order"] + F16,
         ["dequant", "dequant-f32", "dequant-f16", "gptq", "gptq_v2"], [marlin]),
        ("b3-g64-asym-act", ["--bits", "3", "--group-size", "64", "--asym", "--act-order"] + F16,
         ["gptq", "gptq_v2", "dequant-f32"], []),
        ("b2-gm1-asym", ["--bits", "2", "--group-size", "-1", "--asym", "--no-act-order"] + F16,
         ["gptq", "gptq_v2", "dequant"], []),
        ("b8-g128-sym-act", ["--bits", "8", "--group-size", "128", "--sym", "--act-order"] + F16,
         ["gptq", "dequant-f16"], [unaligned]),
    ]
    first_result = None
    for label, opts, exports, warns in configs:
        res = s.path("result-%s.h5" % label)
        if not s.layer(label, problem, res, opts + ["--method", "optq"]):
            continue
        add_model_group(res, MODEL_CONFIG, model)
        if first_result is None:
            first_result = res
        s.case("%s: every scale is a float16 value" % label,
               [] if f16_scales(result_layers(res)) else ["--scale-dtype float16 not honoured"])
        zeros0 = any((L["zeros"] == 0).any() for L in result_layers(res).values())
        for ex in exports:
            name = "%s-%s" % (label, ex)
            if ex.startswith("dequant"):
                dt = {"dequant": "BF16", "dequant-f32": "F32", "dequant-f16": "F16"}[ex]
                extra = {"dequant": [], "dequant-f32": ["--dtype", "float32"],
                         "dequant-f16": ["--dtype", "float16"]}[ex]
                s.export(name, ["--in", res, "--format", "dequant"] + extra,
                         dequant_checker(res, dt, model, MODEL_CONFIG))
            elif ex == "gptq" and zeros0:  # v1 cannot store zero point 0
                s.export_fails(name, ["--in", res, "--format", "gptq"], 3, "gptq_v2")
            else:
                asym = v1_asym if "--asym" in opts and ex == "gptq" else None
                want = warns + [w for w in (asym, v2 if ex == "gptq_v2" else None) if w]
                s.export(name, ["--in", res, "--format", ex],
                         gptq_checker(res, ex == "gptq_v2", opts, model, MODEL_CONFIG),
                         expect_warnings(*want))

    # shards: a tiny limit splits the exports of the first result
    if first_result is not None:
        s.export("shards-dequant-f32", ["--in", first_result, "--format", "dequant", "--dtype",
                                        "float32", "--max-shard-size", "4K"],
                 dequant_checker(first_result, "F32", model, MODEL_CONFIG, max_shard=4096))
        s.export("shards-gptq", ["--in", first_result, "--format", "gptq", "--max-shard-size",
                                 "1000"],
                 gptq_checker(first_result, False, configs[0][1], model, MODEL_CONFIG,
                              max_shard=1000), expect_warnings(marlin))

    # float32 scales (quantized without --scale-dtype float16): refused before anything is
    # written; --allow-requantize rounds them, keeps the codes and reports the added error
    f32 = s.path("result-b4-f32.h5")
    f32_opts = ["--bits", "4", "--group-size", "32", "--sym", "--no-act-order"]
    if s.layer("b4-f32", problem, f32, f32_opts + ["--method", "optq"]):
        add_model_group(f32, MODEL_CONFIG, model)
        s.export_fails("gptq-float32-scales", ["--in", f32, "--format", "gptq"], 3,
                       "--scale-dtype float16")
        so, se = s.export("gptq-float32-scales --allow-requantize",
                          ["--in", f32, "--format", "gptq_v2", "--allow-requantize"],
                          gptq_checker(f32, True, f32_opts, model, MODEL_CONFIG),
                          expect_warnings(marlin, v2, "rounded"))
        n, err, ref, mx = rounding_error(result_layers(f32))
        m = re.search(r"^requantized blocks (\d+) codes_changed 0 added_sq_err (\S+) rel_err "
                      r"(\S+) max_rel_scale_change (\S+)$", so, re.M)
        probs = ["no summary line: %r" % so] if m is None else []
        if m and (int(m.group(1)) != n or n == 0 or
                  not np.isclose(float(m.group(2)), err, rtol=1e-6, atol=0) or
                  not np.isclose(float(m.group(3)), np.sqrt(err / ref), rtol=1e-5) or
                  not np.isclose(float(m.group(4)), mx, rtol=1e-5)):
            probs.append("printed %s, numpy: %d scales, added %.9g, relative %.6g, max %.6g" %
                         (m.group(0), n, err, np.sqrt(err / ref), mx))
        s.case("--allow-requantize prints the added error numpy computes (%d scales)" % n, probs)
        # a later layer with one scale off the float16 grid: found while writing, nothing left
        late = s.path("result-late-f32.h5")
        if first_result is not None:
            shutil.copy(first_result, late)
            with h5py.File(late, "a") as f:
                sc = f["layers"][Q]["scales"]
                v = sc[()]
                v[3, 0] = np.nextafter(v[3, 0], np.float32(np.inf))
                sc[...] = v
            s.export_fails("gptq: one scale of the last layer off the float16 grid",
                           ["--in", late, "--format", "gptq"], 3, Q + ": scale")

    # zero point 0 (asymmetric, all weights >= 0): v1 refuses, v2 stores it
    pos_problem = s.path("problem-positive.h5")
    write_problem(pos_problem, {Q: (32, 64, "positive")}, a.seed + 2)
    pos = s.path("result-positive.h5")
    pos_opts = ["--bits", "4", "--group-size", "32", "--asym", "--no-act-order"] + F16
    if s.layer("positive", pos_problem, pos, pos_opts + ["--method", "rtn"]):
        z0 = (result_layers(pos)[Q]["zeros"] == 0).any()
        s.case("positive weights give zero point 0", [] if z0 else ["no zero point 0"])
        s.export_fails("zero0-gptq-v1", ["--in", pos, "--format", "gptq"], 3, "gptq_v2")
        s.export("zero0-gptq-v2", ["--in", pos, "--format", "gptq_v2"],
                 gptq_checker(pos, True, pos_opts), expect_warnings(v2))
        # a result of `layer` has no /model: weights only, no config.json
        s.export("no-model-dequant", ["--in", pos, "--format", "dequant"],
                 dequant_checker(pos, "F32"))

    # --model DIR supplies config.json and the non-quantized tensors (own dtypes)
    if first_result is not None:
        plain = s.path("result-plain.h5")
        shutil.copy(first_result, plain)
        with h5py.File(plain, "a") as f:
            del f["model"]
        rng = np.random.default_rng(a.seed + 3)
        ckpt_cfg = dict(MODEL_CONFIG, torch_dtype="float16")
        ck = {k: (rng.standard_normal(v).astype(np.float16).astype(np.float32), "F16")
              for k, v in ((DOWN + ".weight", (64, 128)), (Q + ".weight", (32, 64)))}
        ck_extra = {"model.embed_tokens.weight": (bf16_exact(rng, (16, 64)), "BF16"),
                    "model.norm.weight": (rng.standard_normal(64).astype(np.float32), "F32"),
                    "lm_head.weight": (rng.standard_normal((16, 64)).astype(np.float16)
                                       .astype(np.float32), "F16")}
        ckdir = s.path("checkpoint")
        write_checkpoint(ckdir, dict(ck, **ck_extra), ckpt_cfg)
        for name, data in dict(MODEL_FILES, **{"README.md": b"not copied\n"}).items():
            with open(os.path.join(ckdir, name), "wb") as fh:
                fh.write(data)
        s.export("model-dir-dequant", ["--in", plain, "--format", "dequant", "--model", ckdir],
                 dequant_checker(plain, "F16", ck_extra, ckpt_cfg, files=MODEL_FILES))
        s.export("model-dir-gptq", ["--in", plain, "--format", "gptq", "--model", ckdir],
                 gptq_checker(plain, False, configs[0][1], ck_extra, ckpt_cfg,
                              files=MODEL_FILES), expect_warnings(marlin))
        s.export("model-dir-gptq-shards", ["--in", plain, "--format", "gptq", "--model", ckdir,
                                           "--max-shard-size", "2K"],
                 gptq_checker(plain, False, configs[0][1], ck_extra, ckpt_cfg, max_shard=2048,
                              files=MODEL_FILES), expect_warnings(marlin))
        # the result's layers must be the checkpoint's modules
        ckbad = s.path("checkpoint-bad")
        write_checkpoint(ckbad, dict(ck_extra, **{Q + ".weight": ck[Q + ".weight"]}), ckpt_cfg)
        s.export_fails("model-dir-missing-module", ["--in", plain, "--format", "dequant",
                                                    "--model", ckbad], 3, DOWN + ".weight")

        # hostile result files: exit 3, nothing left behind (g_idx/scale problems are found
        # while writing, after the temporary file exists)
        bad = hostile_copies(s, first_result)
        for p, want in bad:
            s.export_fails("hostile-" + os.path.basename(p)[4:-3],
                           ["--in", p, "--format", "dequant"], 3, want)
        s.export_fails("hostile-gidx-gptq", ["--in", s.path("bad-gidx.h5"), "--format", "gptq"],
                       3, "g_idx")
        if a.test_bin:
            d = expect_dir(s, first_result, model, MODEL_CONFIG, "expect")
            args = [a.test_bin, "source", first_result, d]
            for p, want in bad:
                args += [p, want]
            p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            log = p.stdout.decode(errors="replace")
            s.case("C result_tensors source vs numpy", [] if p.returncode == 0 else
                   ["exit %d" % p.returncode], log)
            d2 = expect_dir(s, pos, None, None, "expect-nomodel")
            p = subprocess.run([a.test_bin, "source", pos, d2], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
            s.case("C result_tensors source, no /model", [] if p.returncode == 0 else
                   ["exit %d" % p.returncode], p.stdout.decode(errors="replace"))

    # unsupported gptq combinations (dequant still works)
    odd_problem = s.path("problem-odd.h5")
    write_problem(odd_problem, {Q: (32, 48)}, a.seed + 4)
    odd = s.path("result-odd.h5")
    if s.layer("odd", odd_problem, odd, ["--bits", "4", "--group-size", "16", "--method", "rtn"]
               + F16):
        s.export_fails("gptq-cols-48", ["--in", odd, "--format", "gptq"], 3, "multiples of 32")
        s.export("odd-dequant", ["--in", odd, "--format", "dequant"], dequant_checker(odd, "F32"))
    b5 = s.path("result-b5.h5")
    if s.layer("b5", problem, b5, ["--bits", "5", "--group-size", "32", "--method", "rtn"] + F16):
        s.export_fails("gptq-5-bit", ["--in", b5, "--format", "gptq_v2"], 3, "5-bit")
        s.export("b5-dequant", ["--in", b5, "--format", "dequant", "--dtype", "bfloat16"],
                 dequant_checker(b5, "BF16"))

    # usage errors
    res = first_result or problem
    s.export_fails("usage-missing-in", ["--format", "dequant"], 2, "--in")
    s.export_fails("usage-bad-format", ["--in", res, "--format", "onnx"], 2, "--format")
    s.export_fails("usage-missing-format", ["--in", res], 2, "--format")
    s.export_fails("usage-dtype-with-gptq", ["--in", res, "--format", "gptq", "--dtype",
                                             "float16"], 2, "--dtype")
    s.export_fails("missing-input-file", ["--in", s.path("nope.h5"), "--format", "dequant"], 3,
                   "nope.h5")
    s.export_fails("usage-shard-size-0", ["--in", res, "--format", "gptq", "--max-shard-size",
                                          "0"], 2, "--max-shard-size")
    s.export_fails("usage-shard-size-gguf", ["--in", res, "--format", "gguf",
                                             "--max-shard-size", "1G"], 2, "--max-shard-size")
    s.export_fails("usage-requantize-dequant", ["--in", res, "--format", "dequant",
                                                "--allow-requantize"], 2, "--allow-requantize")
    return s.finish(t0)


if __name__ == "__main__":
    sys.exit(main())
