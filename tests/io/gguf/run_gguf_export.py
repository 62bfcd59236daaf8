#!/usr/bin/python3
"""`mpiquant export --format gguf` against the numpy GGUF reader (no llama.cpp needed).

  run_gguf_export.py --mpiquant PATH --workdir DIR --results DIR --model DIR --calib TEXT
                     [--mpirun "mpirun --oversubscribe"]

Result files (quantized demo model, gguf_common.RESULTS) are made once in --results. Cases:
  - every fitting grid (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, groups of 32 and 64) with float16 scales:
    exported without options, every quantized tensor decodes (gguf_reader, ggml's arithmetic)
    bit for bit to the result file's Ŵ after undoing the q/k row order; embeddings, norms and
    head equal the result file's tensors; the metadata describes the demo model; the vocabulary
    is the 256 bytes;
  - the result as quantize writes it (float32 scales): refused (exit 3, one error line naming
    layer, row, group and the relative change, no file left); with --allow-requantize it decodes
    bit for bit to the numpy re-quantization (float16 scale, nearest code) and the printed added
    error is that of numpy; at 2 ranks the summary is printed once;
  - --dequantize: float32 linears equal Ŵ; --dtype float16: embeddings are float16(values);
    --out DIR writes DIR/model.gguf;
  - grids that do not fit (3 bits, groups of 16, act-order g_idx): exit 3, one error line, no
    output file, no temporary file.
Prints `ok`/`FAIL` per case and `N passed, M failed`.
"""
import argparse
import glob
import os
import re
import shutil
import sys
import time

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gguf_common as C  # noqa: E402
from gguf_reader import GGUFReader, from_llama_rows  # noqa: E402

HEADS = {"q_proj": 4, "k_proj": 2}  # the demo model: 4 query heads, 2 key/value heads
GG = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
      "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
      "mlp.down_proj": "ffn_down"}
OTHER = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight":
         "output_norm.weight", "lm_head.weight": "output.weight"}


def gguf_name(hf):
    if hf in OTHER:
        return OTHER[hf]
    m = re.match(r"model\.layers\.(\d+)\.(.*)\.weight$", hf)
    rest = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}.get(
        m.group(2), GG.get(m.group(2)))
    return "blk.%s.%s.weight" % (m.group(1), rest)


def hf_rows(arr, module):
    """GGUF rows back in Hugging Face order for q/k."""
    for k, h in HEADS.items():
        if module.endswith(k):
            return from_llama_rows(arr, h)
    return arr


def bits_equal(a, b):
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def check_metadata(r, qtype, bits, group, sym, file_type):
    kv, p = r.kv, []
    want = {"general.architecture": "llama", "llama.block_count": 4, "llama.embedding_length": 128,
            "llama.feed_forward_length": 352, "llama.attention.head_count": 4,
            "llama.attention.head_count_kv": 2, "llama.context_length": 256,
            "llama.vocab_size": 256, "llama.rope.dimension_count": 32,
            "llama.rope.freq_base": 10000.0, "general.file_type": file_type,
            "llama.attention.layer_norm_rms_epsilon": float(np.float32(1e-5)),
            "mpiquant.bits": bits, "mpiquant.group_size": group, "mpiquant.sym": sym,
            "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.merges": [],
            "tokenizer.ggml.tokens": C.gpt2_byte_chars(), "tokenizer.ggml.token_type": [1] * 256}
    if qtype is not None:
        want["general.quantization_version"] = 2
    for k, v in want.items():
        if kv.get(k) != v:
            p.append("%s = %r, expected %r" % (k, str(kv.get(k))[:60], str(v)[:60]))
    return p


def check_tensors(r, layers, model_tensors, linear_type, what_of, other_type=None):
    """Every tensor present once with its type; quantized ones decode to what_of(module)."""
    p = []
    expect = {gguf_name(m + ".weight"): m for m in layers}
    expect.update({gguf_name(k): k for k in model_tensors})
    if set(r.tensors) != set(expect):
        p.append("tensor names: extra %s missing %s" % (sorted(set(r.tensors) - set(expect))[:4],
                                                       sorted(set(expect) - set(r.tensors))[:4]))
        return p
    for name, src in expect.items():
        t = r.tensors[name]["type"]
        if src in layers:
            if t != linear_type:
                p.append("%s: type %s, expected %s" % (name, t, linear_type))
                continue
            got = hf_rows(r.array(name), src)
            if not bits_equal(got, what_of(src)):
                d = np.abs(got.astype(np.float64) - what_of(src))
                p.append("%s: decodes differently from the result (max |diff| %.3g, %d values)"
                         % (name, d.max(), int((d > 0).sum())))
        else:
            vals, stored = model_tensors[src]
            want_t = "F32" if vals.ndim == 1 else (other_type or stored)
            if t != want_t:
                p.append("%s: type %s, expected %s" % (name, t, want_t))
            ref = vals.astype(np.float16).astype(np.float32) if want_t == "F16" else vals
            if not bits_equal(r.array(name), ref):
                p.append("%s: values differ from /model/tensors/%s" % (name, src))
    return p


def refused(suite, name, args, out, must_say):
    if os.path.isfile(out):
        os.remove(out)  # from an earlier run: the export must not create it
    t0 = time.time()
    rc, so, se = suite.run(["export"] + args)
    lines = [ln for ln in se.splitlines() if ln.strip()]
    errs = [ln for ln in lines if ln.startswith("mpiquant: error: ")]
    p = []
    if rc not in (2, 3):
        p.append("exit %d, expected 3 (or 2)" % rc)
    if len(errs) != 1:
        p.append("%d 'mpiquant: error:' lines, expected 1" % len(errs))
    elif not re.search(must_say, errs[0]):
        p.append("message does not say /%s/: %s" % (must_say, errs[0]))
    d = os.path.dirname(out) or "."
    left = [f for f in os.listdir(d) if os.path.basename(out) in f] if os.path.isdir(d) else []
    if left:
        p.append("files left behind: %s" % left)
    suite.case("%s refused (%.1f s)%s" % (name, time.time() - t0,
                                           ": " + errs[0][17:120] if len(errs) == 1 else ""),
               p, so + se)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    for k in ("--mpiquant", "--workdir", "--results", "--model", "--calib"):
        ap.add_argument(k, required=True)
    ap.add_argument("--mpirun", default="mpirun --oversubscribe")
    a = ap.parse_args(argv)
    s = C.Suite(a.mpiquant, a.workdir, a.mpirun)
    C.make_results(s, a.model, a.calib, a.results)
    tensors = C.read_model_tensors(C.result_path(a.results, "q4s"))
    ftypes = {"Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9}

    # exact exports of float16-scale results
    for name, qtype in C.QTYPE.items():
        opts = C.RESULTS[name][0]
        sym = "--asym" not in opts
        bits, group = int(opts[opts.index("--bits") + 1]), int(opts[opts.index("--group-size") + 1])
        exact = s.path(name + "-f16.h5")
        C.f16_exact_copy(C.result_path(a.results, name), exact, 11 if sym else 11 - bits)
        out = s.path(name + ".gguf")
        t0 = time.time()
        rc, so, se = s.run(["export", "--in", exact, "--format", "gguf", "--out", out, "--quiet"])
        dt = time.time() - t0
        if rc != 0:
            s.case("%s exported exactly as %s" % (name, qtype), ["exit %d" % rc], so + se)
            continue
        layers = C.read_layers(exact)
        r = GGUFReader(out)
        p = check_metadata(r, qtype, bits, group, sym, ftypes[qtype])
        p += check_tensors(r, layers, tensors, qtype, lambda m: layers[m]["What"])
        s.case("%s: %s, %d tensors decode bit for bit to the result's weights, metadata "
               "(%.2f s, %d bytes)" % (name, qtype, len(r.tensors), dt, os.path.getsize(out)), p)

    # --scale-dtype float16: the result file itself exports exactly, no --allow-requantize
    raw16 = C.result_path(a.results, "q4s16")
    out = s.path("q4s16.gguf")
    rc, so, se = s.run(["export", "--in", raw16, "--format", "gguf", "--out", out, "--quiet"])
    p = ["exit %d" % rc] if rc else []
    if rc == 0:
        layers16 = C.read_layers(raw16)
        p += check_tensors(GGUFReader(out), layers16, tensors, "Q4_0",
                           lambda m: layers16[m]["What"])
    s.case("quantize --scale-dtype float16: its own result exports as Q4_0, bit for bit", p,
           so + se)

    # float32 scales as quantize writes them: refused, or re-quantized on request
    raw = C.result_path(a.results, "q4s")
    out = s.path("q4s-raw.gguf")
    refused(s, "q4s with float32 scales", ["--in", raw, "--format", "gguf", "--out", out], out,
            r"model\.layers\.0\.self_attn\.q_proj: scale .* \(row 0, group 0\) is not exactly "
            r"representable in float16 .*relative change")
    rc, so, se = s.run(["export", "--in", raw, "--format", "gguf", "--out", out,
                        "--allow-requantize", "--quiet"], np_=2)
    p = [] if rc == 0 else ["exit %d" % rc]
    if rc == 0:
        layers = C.read_layers(raw)
        sq_err, pred = 0.0, {}
        for m, L in layers.items():
            d = L["scales"].astype(np.float16).astype(np.float64)[:, L["g_idx"]]
            z = L["zeros"][:, L["g_idx"]]
            q = np.clip(np.rint(L["What"].astype(np.float64) / d + z), 0, 15)
            pred[m] = (d * (q - z)).astype(np.float32)
            sq_err += float(((pred[m].astype(np.float64) - L["What"]) ** 2).sum())
        p += check_tensors(GGUFReader(out), layers, tensors, "Q4_0", lambda m: pred[m])
        lines = [ln for ln in so.splitlines() if ln.startswith("requantized ")]
        if len(lines) != 1:
            p.append("%d 'requantized' summary lines at 2 ranks, expected 1" % len(lines))
        else:
            got = float(re.search(r"added_sq_err (\S+)", lines[0]).group(1))
            if abs(got - sq_err) > 1e-6 * sq_err:
                p.append("printed added error %g, numpy %g" % (got, sq_err))
    s.case("q4s --allow-requantize (2 ranks): decodes to the numpy re-quantization; %s"
           % (lines[0] if rc == 0 and len(lines) == 1 else ""), p, so + se)

    # --dequantize, --dtype float16, --out DIR
    exact = s.path("q4s-f16.h5")
    layers = C.read_layers(exact)
    rc, so, se = s.run(["export", "--in", exact, "--format", "gguf", "--out", s.path("q4s-f32.gguf"),
                        "--dequantize", "--dtype", "float32", "--quiet"])
    p = ["exit %d" % rc] if rc else check_tensors(GGUFReader(s.path("q4s-f32.gguf")), layers,
                                                  tensors, "F32", lambda m: layers[m]["What"],
                                                  "F32")
    s.case("--dequantize --dtype float32: F32 linears equal the result's weights", p, so + se)
    outdir = s.path("q4s-dir")
    rc, so, se = s.run(["export", "--in", exact, "--format", "gguf", "--out", outdir,
                        "--dtype", "float16", "--quiet"])
    path = os.path.join(outdir, "model.gguf")
    p = ["exit %d" % rc] if rc else ([] if os.path.exists(path) else ["no %s" % path])
    if not p:
        p = check_tensors(GGUFReader(path), layers, tensors, "Q4_0", lambda m: layers[m]["What"],
                          "F16")
    s.case("--out DIR -> DIR/model.gguf; --dtype float16 embeddings and head", p, so + se)

    # grids that do not fit
    for name, say in (("q3", r"3-bit grid has no GGUF block type"),
                      ("q4g16", r"share a 32-value GGUF block"),
                      ("q4act", r"share a 32-value GGUF block")):
        out = s.path(name + ".gguf")
        refused(s, name, ["--in", C.result_path(a.results, name), "--format", "gguf", "--out", out,
                          "--allow-requantize"], out, say)
    refused(s, "q4act into a new directory (removed again)",
            ["--in", C.result_path(a.results, "q4act"), "--format", "gguf", "--out",
             s.path("q4act-dir")], s.path("q4act-dir"), r"share a 32-value GGUF block")
    refused(s, "--allow-requantize with --format dequant",
            ["--in", raw, "--format", "dequant", "--out", s.path("nope"), "--allow-requantize"],
            s.path("nope"), r"--allow-requantize: only with --format gguf")
    # a result without /model (as `layer` writes them): config and tensors from --model
    bare = s.path("q4s-bare.h5")
    shutil.copyfile(exact, bare)
    with h5py.File(bare, "r+") as f:
        del f["model"]
    refused(s, "result without /model and no --model", ["--in", bare, "--format", "gguf",
            "--out", s.path("bare.gguf")], s.path("bare.gguf"), r"no /model/config and no --model")
    rc, so, se = s.run(["export", "--in", bare, "--format", "gguf", "--out", s.path("bare.gguf"),
                        "--model", a.model, "--quiet"])
    p = ["exit %d" % rc] if rc else check_tensors(GGUFReader(s.path("bare.gguf")), layers, tensors,
                                                  "Q4_0", lambda m: layers[m]["What"])
    s.case("result without /model + --model: embeddings, norms, head from the checkpoint", p,
           so + se)
    for arch, say in (("Qwen2ForCausalLM", r"writes the llama architecture"),
                      (None, r"/model/config: not valid JSON")):
        bad = s.path("q4s-%s.h5" % (arch or "badjson"))
        shutil.copyfile(exact, bad)
        with h5py.File(bad, "r+") as f:
            cfg = f["model/config"][()].decode()
            if arch:
                cfg = cfg.replace("LlamaForCausalLM", arch)
            else:
                cfg = cfg[:40]
            del f["model/config"]
            f.create_dataset("model/config", data=np.bytes_(cfg))
        out = s.path("q4s-%s.gguf" % (arch or "badjson"))
        refused(s, "config.json of %s" % (arch or "broken JSON"),
                ["--in", bad, "--format", "gguf", "--out", out], out, say)

    # the tokenizer of a checkpoint's tokenizer.json (byte-level BPE)
    tokdir = s.path("tokenizer-model")
    tokens, types, merges = C.make_tokenizer_dir(a.model, tokdir)
    out = s.path("q4s-tok.gguf")
    rc, so, se = s.run(["export", "--in", exact, "--format", "gguf", "--out", out, "--model",
                        tokdir, "--quiet"])
    p = ["exit %d" % rc] if rc else []
    if not p:
        kv = GGUFReader(out).kv
        want = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "llama-bpe",
                "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.token_type": types,
                "tokenizer.ggml.merges": merges, "tokenizer.ggml.bos_token_id": 133,
                "tokenizer.ggml.add_bos_token": False, "tokenizer.chat_template": "{{ messages }}"}
        p = ["%s = %s, expected %s" % (k, str(kv.get(k))[:80], str(v)[:80])
             for k, v in want.items() if kv.get(k) != v]
        if "tokenizer.ggml.eos_token_id" in kv:
            p.append("eos_token_id written though neither config names one")
    s.case("tokenizer.json (byte-level BPE, Llama 3 split) carried over: tokens, types, merges, "
           "pre, bos, chat template", p, so + se)
    for variant, say in (("fallback", r"byte_fallback is not carried over"),
                         ("regex", r"pre-tokenizer not recognised"),
                         ("broken", r"tokenizer\.json: not valid JSON")):
        d = s.path("tokenizer-" + variant)
        C.make_tokenizer_dir(a.model, d, variant)
        refused(s, "tokenizer.json with " + variant, ["--in", exact, "--format", "gguf", "--out",
                s.path(variant + ".gguf"), "--model", d], s.path(variant + ".gguf"), say)
    leftovers = glob.glob(s.path(".*tmp*")) + glob.glob(s.path("*", ".*tmp*"))
    s.case("no temporary files left in %s" % s.workdir, ["left: %s" % leftovers] if leftovers else [])
    return s.finish()


if __name__ == "__main__":
    sys.exit(main())
