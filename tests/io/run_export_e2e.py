#!/usr/bin/python3
"""`quantize` -> `export` -> `eval` on the bundled demo model (called by CTest).

  run_export_e2e.py --mpiquant PATH --np N --workdir DIR --model DIR --calib TEXT --tokens TEXT
                    [--mpirun "mpirun --oversubscribe"] [--timeout 120]

Quantizes the demo model (a few calibration samples, --scale-dtype float16), exports it as
dequant (float32 and the config's bfloat16) and gptq, and asserts:
  - every tensor of the original checkpoint is in the dequant export; the ones that were not
    quantized are byte-identical (same dtype, same bits); the quantized ones equal the numpy
    decoding of the result file (float32 bit-exact, bfloat16 rounded to nearest even);
  - the gptq export decodes (AutoGPTQ convention) to the result file's codes and zero points,
    and the README formula float32(scale_f16)·(q − z) gives the result's Ŵ bit for bit; its
    config says torch_dtype float16; the demo's shapes draw exactly the warnings they should
    (gate/up 352x128: Marlin; down 128x352: group 128 does not divide 352); with --model DIR
    the tokenizer and generation files are copied byte for byte;
  - `eval --model <float32 export>` prints exactly the perplexity of
    `eval --model <original> --quantized O.h5` (the export is the quantized model), also when
    the export is sharded (--max-shard-size 64K: shards and index checked).
Prints `ok`/`FAIL` per case and `N passed, M failed`.
"""
import json
import os
import re
import shutil
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import drivers  # noqa: E402
import export_check as E  # noqa: E402
from safetensors_np import read_safetensors  # noqa: E402


def main(argv=None):
    ap = drivers.base_parser(__doc__)  # --quick and --seed are accepted and unused
    ap.add_argument("--model", required=True)
    ap.add_argument("--calib", required=True)
    ap.add_argument("--tokens", required=True)
    a = ap.parse_args(argv)
    t0 = time.time()
    os.makedirs(a.workdir, exist_ok=True)
    s = E.Suite(a)
    res = s.path("demo-q.h5")
    rc, so, se = s.run(["quantize", "--model", a.model, "--calib", a.calib, "--out", res,
                        "--nsamples", "8", "--seqlen", "64", "--group-size", "128",
                        "--scale-dtype", "float16", "--quiet"], timeout=600)
    if rc != 0:
        s.case("quantize demo model", ["exit %d" % rc], so + se)
        return s.finish(t0)
    layers = E.result_layers(res)
    orig = read_safetensors(os.path.join(a.model, "model.safetensors"))
    with open(os.path.join(a.model, "config.json")) as fh:
        config = json.load(fh)

    def dequant_check(dtype, max_shard=None):
        def check(out):
            st, probs, n = E.read_export(out, max_shard)
            if max_shard is not None and n < 2:
                probs.append("--max-shard-size %d: %d file(s)" % (max_shard, n))
            probs += E.check_dequant(st, layers, dtype)
            quant = {k + ".weight" for k in layers}
            if set(st) != set(orig):
                probs.append("tensor names differ from the checkpoint's: %s" %
                             sorted(set(st) ^ set(orig))[:6])
            for k in sorted(set(orig) & set(st) - quant):
                if orig[k][0] != st[k][0] or orig[k][1].tobytes() != st[k][1].tobytes():
                    probs.append("%s: not byte-identical to the checkpoint" % k)
            with open(os.path.join(out, "config.json")) as fh:
                if json.load(fh) != config:
                    probs.append("config.json differs from the checkpoint's")
            return probs
        return check

    s.export("demo-dequant-f32", ["--in", res, "--format", "dequant", "--dtype", "float32"],
             dequant_check("F32"))
    s.export("demo-dequant-auto", ["--in", res, "--format", "dequant"], dequant_check("BF16"))
    s.export("demo-dequant-f32-shards", ["--in", res, "--format", "dequant", "--dtype", "float32",
                                         "--max-shard-size", "64K"],
             dequant_check("F32", 65536))
    # the demo's own tokenizer-less folder plus the files a real checkpoint carries
    mdir = s.path("demo-model-files")
    shutil.rmtree(mdir, ignore_errors=True)
    os.makedirs(mdir)
    for f in os.listdir(a.model):
        os.symlink(os.path.abspath(os.path.join(a.model, f)), os.path.join(mdir, f))
    extra = {"tokenizer_config.json": b'{"model_max_length": 256}\n',
             "generation_config.json": b'{"do_sample": false, "max_length": 256}\n',
             "special_tokens_map.json": b"{}\n"}
    for f, data in extra.items():
        with open(os.path.join(mdir, f), "wb") as fh:
            fh.write(data)

    def gptq_check(out):
        st = read_safetensors(os.path.join(out, "model.safetensors"))
        probs = E.check_gptq(st, layers, False, exact=True)
        with open(os.path.join(out, "config.json")) as fh:
            got = json.load(fh)
        if got.get("torch_dtype") != "float16":
            probs.append("torch_dtype %r" % got.get("torch_dtype"))
        for f, data in extra.items():
            if open(os.path.join(out, f), "rb").read() != data:
                probs.append("%s not copied byte for byte" % f)
        return probs
    s.export("demo-gptq (exact Ŵ, warnings, files)", ["--in", res, "--format", "gptq",
                                                      "--model", mdir], gptq_check,
             E.expect_warnings("mlp.down_proj (and any 128x352 layer): in_features 352 is not "
                               "a multiple of group size 128",
                               "mlp.gate_proj (and any 352x128 layer): out_features 352 is "
                               "not a multiple of 64"))

    tokens = s.path("eval-tokens.txt")  # the first 4 KiB: enough windows, quick
    with open(a.tokens, "rb") as src, open(tokens, "wb") as dst:
        dst.write(src.read(4096))
    ppl = []
    for args in (["--model", a.model, "--quantized", res],
                 ["--model", s.path("out-demo-dequant-f32")],
                 ["--model", s.path("out-demo-dequant-f32-shards")]):
        rc, so, se = s.run(["eval", "--tokens", tokens, "--seqlen", "128", "--quiet"] + args)
        m = re.search(r"^perplexity (\S+)$", so, re.M)
        ppl.append(m.group(1) if rc == 0 and m else None)
        if ppl[-1] is None:
            s.case("eval " + " ".join(args), ["exit %d, no perplexity line" % rc], so + se)
    if None not in ppl:
        s.case("eval of the float32 export, one file and sharded = eval --quantized (%s)" %
               ppl[0], [] if ppl[0] == ppl[1] == ppl[2] else ["perplexity %s vs %s vs %s" %
                                                              tuple(ppl)])
    shutil.rmtree(s.path("out-demo-dequant-auto"), ignore_errors=True)
    return s.finish(t0)


if __name__ == "__main__":
    sys.exit(main())
