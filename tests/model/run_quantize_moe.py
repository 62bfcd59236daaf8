#!/usr/bin/python3
"""`mpiquant quantize` on mixture-of-experts checkpoints (random tiny fixtures of make_models.py:
Mixtral, Qwen2-MoE with a shared expert and dense blocks, Qwen3-MoE with q/k norms):

identity  result files identical bit for bit (every dataset and attribute but `seconds`) at 1,
          2 and 3 ranks and with 1, 2 or 3 expert groups (21 windows of 128 tokens: 3 chunks of
          the sums, uneven over the ranks), also for experts of 160 rows (split over the ranks
          of a group: loss, bounds and errors are sums over ranks); every block's routed experts together received
          k tokens per calibration token (Σ_e routed = k·nsamples·seqlen); every expert layer
          is present, the router and shared-expert gate are stored in full precision.
rtn       --method rtn equals the numpy reference's per-layer RTN of every layer, experts too.
fallback  --expert-min-tokens beyond the token count: every routed expert is calibrated on
          every token (routed < samples = all tokens), --json counts them, and the codes equal
          those of --experts-all-tokens; an expert the router never picks (its router row
          pushed to -inf) is calibrated on every token, with routed = 0, at 1 and 3 ranks alike.
export    dequant and GPTQ exports of a quantized Mixtral: every expert under its Mixtral name
          (`...experts.<j>.w1.qweight`), routers as stored, weights equal to the result's Ŵ bit
          for bit (float16 scales); eval of the dequantized export == eval --quantized.
demo      the trained demo MoE (data/demo-moe) at 3 bits, group 64, 128 windows of 256 bytes
          on 2 ranks: perplexity on data/demo-eval.txt ordered FP < Qronos <= OPTQ < RTN.
Final line: `N passed, M failed`."""
import json
import os
import shutil
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import drivers  # noqa: E402
import export_check  # noqa: E402
import llama_ref  # noqa: E402
from result_files import contents, differences, export_evaluates_alike, rtn_mismatches  # noqa: E402
from safetensors_np import write_checkpoint  # noqa: E402

NSAMPLES, SEQLEN = 21, 128
SMALL = ["--nsamples", str(NSAMPLES), "--seqlen", str(SEQLEN)]
CASES = [("mixtral_f32_e4", ["--method", "optq", "--bits", "3", "--group-size", "16"]),
         ("qwen2moe_bf16_e4", ["--method", "qronos", "--bits", "3", "--group-size", "16"]),
         ("qwen3moe_f16_e8", ["--method", "optq", "--bits", "4", "--rounding", "stochastic",
                              "--seed", "3"])]


def quantize(s, model, out, opts, np_, extra=()):
    return s.run(["quantize", "--model", model, "--calib", os.path.join(model, "tokens.npy"),
                  "--out", out, "--quiet"] + SMALL + list(opts) + list(extra), np_=np_, out=out)


def expert_layers(cfg, blocks):
    """Module names of the experts' linears of the sparse blocks."""
    mixtral = cfg["architectures"][0] == "MixtralForCausalLM"
    E = cfg["num_local_experts"] if mixtral else cfg["num_experts"]
    names = []
    for b in blocks:
        for e in range(E):
            for n in (("w1", "w3", "w2") if mixtral else ("gate_proj", "up_proj", "down_proj")):
                names.append("model.layers.%d.%s.experts.%d.%s"
                             % (b, "block_sparse_moe" if mixtral else "mlp", e, n))
        if cfg.get("shared_expert_intermediate_size"):
            names += ["model.layers.%d.mlp.shared_expert.%s" % (b, n)
                      for n in ("gate_proj", "up_proj", "down_proj")]
    return names


def sparse_blocks(cfg):
    kind = llama_ref.FAMILIES[cfg["architectures"][0]][2]
    return [b for b in range(cfg["num_hidden_layers"]) if llama_ref.is_sparse(cfg, kind, b)]


def wide_mixtral(s):
    """A float32 Mixtral whose experts have 160 rows (gate/up): more than one 128-row block, so
    a layer's rows are split over the ranks of its group and its loss, bound and errors are
    sums over ranks."""
    d = s.path("mixtral_wide")
    if os.path.exists(os.path.join(d, "config.json")):
        return d
    rng = np.random.default_rng(77)
    hid, inter, E, vocab = 32, 160, 4, 41
    t = {"model.embed_tokens.weight": rng.normal(0, 1, (vocab, hid)),
         "model.norm.weight": 1 + rng.normal(0, 0.1, hid),
         "lm_head.weight": rng.normal(0, 0.35, (vocab, hid))}
    for b in range(2):
        p = "model.layers.%d." % b
        t[p + "input_layernorm.weight"] = 1 + rng.normal(0, 0.1, hid)
        t[p + "post_attention_layernorm.weight"] = 1 + rng.normal(0, 0.1, hid)
        for n, shape in (("q_proj", (hid, hid)), ("k_proj", (hid, hid)), ("v_proj", (hid, hid)),
                         ("o_proj", (hid, hid))):
            t[p + "self_attn." + n + ".weight"] = rng.normal(0, hid ** -0.5, shape)
        t[p + "block_sparse_moe.gate.weight"] = rng.normal(0, 1, (E, hid))
        for e in range(E):
            q = p + "block_sparse_moe.experts.%d." % e
            t[q + "w1.weight"] = rng.normal(0, hid ** -0.5, (inter, hid))
            t[q + "w3.weight"] = rng.normal(0, hid ** -0.5, (inter, hid))
            t[q + "w2.weight"] = rng.normal(0, inter ** -0.5, (hid, inter))
    cfg = {"architectures": ["MixtralForCausalLM"], "hidden_size": hid, "intermediate_size": inter,
           "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
           "vocab_size": vocab, "max_position_embeddings": 256, "rms_norm_eps": 1e-5,
           "rope_theta": 10000.0, "num_local_experts": E, "num_experts_per_tok": 2,
           "torch_dtype": "float32", "hidden_act": "silu"}
    write_checkpoint(d, {n: (v.astype(np.float32), "F32") for n, v in t.items()}, cfg)
    np.save(os.path.join(d, "tokens.npy"), rng.integers(0, vocab, 700).astype(np.int64))
    return d


def identity(s):
    cases = [(os.path.join(s.a.models, name), opts) for name, opts in CASES]
    cases.append((wide_mixtral(s), ["--method", "qronos", "--bits", "3", "--group-size", "16"]))
    for model, opts in cases:
        name = os.path.basename(model)
        cfg = json.load(open(os.path.join(model, "config.json")))
        base = None
        for np_, groups in ((1, 1), (2, 1), (3, 1), (2, 2), (3, 3)):
            out = s.path("%s_np%d_g%d.h5" % (name, np_, groups))
            ok, cmd, tail, dt = quantize(s, model, out, opts, np_, ["--expert-groups",
                                                                     str(groups)])
            if not s.case(ok, "%s np%d groups %d runs" % (name, np_, groups),
                          "%.1fs" % dt if ok else tail, [cmd]):
                continue
            got = contents(out)
            if base is None:
                base = got
                check_layers(s, name, cfg, out)
                continue
            diff = differences(base, got)
            s.case(not diff, "%s np%d groups %d identical to np1" % (name, np_, groups),
                   "%d of %d items differ, e.g. %s" % (len(diff), len(base), diff[:3]))


def check_layers(s, name, cfg, out):
    import h5py
    blocks = sparse_blocks(cfg)
    experts = expert_layers(cfg, blocks)
    k = cfg["num_experts_per_tok"]
    with h5py.File(out, "r") as f:
        have = set(f["layers"])
        missing = [n for n in experts if n not in have]
        s.case(blocks and not missing, "%s: %d sparse blocks, all %d expert layers written"
               % (name, len(blocks), len(experts)), "missing %s" % missing[:3])
        bad = []
        for b in blocks:
            routed = [int(f["layers"][n].attrs["routed"]) for n in experts
                      if n.startswith("model.layers.%d." % b) and ".experts." in n and
                      n.endswith(("w1", "gate_proj"))]
            if sum(routed) != k * NSAMPLES * SEQLEN or min(routed) <= 0:
                bad.append((b, routed))
        s.case(not bad, "%s: Σ routed tokens = k·tokens in every sparse block" % name,
               "%s" % bad[:2])
        tensors = set(f["model/tensors"])
        router = ["model.layers.%d.%s.weight" % (b, "block_sparse_moe.gate"
                                                 if "num_local_experts" in cfg else "mlp.gate")
                  for b in blocks]
        s.case(all(r in tensors for r in router), "%s: routers kept in full precision" % name)


def rtn(s):
    name = "qwen2moe_bf16_e4"
    model = os.path.join(s.a.models, name)
    weights = llama_ref.load_weights(model)
    out = s.path("rtn.h5")
    ok, cmd, tail, _ = quantize(s, model, out, ["--method", "rtn", "--bits", "3",
                                                "--group-size", "16"], 2,
                                ["--expert-groups", "2"])
    if not s.case(ok, "rtn runs", tail if not ok else "", [cmd]):
        return
    bad, got = rtn_mismatches(out, weights, 3, 16)
    nexp = sum(".experts." in n or "shared_expert." in n for n in got)
    s.case(nexp > 0 and not bad, "rtn == per-layer RTN on %d layers (%d of them experts)"
           % (len(got), nexp), "mismatches %s" % bad[:4])


def fallback(s):
    import h5py
    name, opts = CASES[0]
    model = os.path.join(s.a.models, name)
    cfg = json.load(open(os.path.join(model, "config.json")))
    nexp = len(sparse_blocks(cfg)) * cfg["num_local_experts"]
    low = s.path("fallback.h5")
    rep = s.path("fallback.json")
    ok, cmd, tail, _ = quantize(s, model, low, opts, 2, ["--expert-min-tokens", "100000000",
                                                         "--json", rep])
    every = s.path("all_tokens.h5")
    ok2, cmd2, tail2, _ = quantize(s, model, every, opts, 3, ["--experts-all-tokens",
                                                              "--expert-groups", "2"])
    if not s.case(ok and ok2, "fallback and --experts-all-tokens run", tail + tail2,
                  [cmd, cmd2]):
        return
    with h5py.File(low, "r") as f:
        ex = [n for n in f["layers"] if ".experts." in n]
        att = [(int(f["layers"][n].attrs["routed"]), int(f["layers"][n].attrs["samples"]))
               for n in ex]
    s.case(ex and all(r < n and n == NSAMPLES * SEQLEN for r, n in att),
           "fallback: every expert calibrated on all %d tokens, routed < samples"
           % (NSAMPLES * SEQLEN), "%s" % att[:4])
    count = json.load(open(rep)).get("experts_calibrated_on_all_tokens")
    s.case(count == nexp, "fallback: --json counts %d experts" % nexp, "got %r" % count)
    a, b = drivers.read_result(low, 3), drivers.read_result(every, 3)
    diff = [n for n in a if any(not np.array_equal(a[n][k], b[n][k])
                                for k in ("qweight", "scales", "zeros", "g_idx"))]
    s.case(not diff, "fallback codes == --experts-all-tokens codes (np2 vs np3, 2 groups)",
           "%d layers differ, e.g. %s" % (len(diff), diff[:3]))
    d = starved_model(s, model)
    res = {}
    for np_ in (1, 3):
        out = s.path("starved_np%d.h5" % np_)
        ok, cmd, tail, _ = quantize(s, d, out, opts, np_)
        if s.case(ok, "expert no token reaches: np%d runs" % np_, tail if not ok else "", [cmd]):
            res[np_] = out
    if len(res) == 2:
        with h5py.File(res[1], "r") as f:
            g = f["layers"]["model.layers.0.block_sparse_moe.experts.0.w1"]
            routed, samples = int(g.attrs["routed"]), int(g.attrs["samples"])
        diff = differences(contents(res[1]), contents(res[3]))
        s.case(routed == 0 and samples == NSAMPLES * SEQLEN and not diff,
               "expert no token reaches: routed 0, calibrated on all tokens, np1 == np3",
               "routed %d samples %d, %d items differ" % (routed, samples, len(diff)))


def starved_model(s, src):
    """A float32 copy of src in which no token reaches expert 0 of block 0: every embedding gets
    +100 in coordinate 0, so every token's post-attention norm is large and positive there, and
    the block-0 router row of expert 0 gets -10^4 in that coordinate."""
    d = s.path("starved")
    shutil.rmtree(d, ignore_errors=True)
    cfg = json.load(open(os.path.join(src, "config.json")))
    cfg["torch_dtype"] = "float32"
    tensors = {n: np.array(v, np.float64) for n, v in llama_ref.load_weights(src).items()}
    tensors["model.embed_tokens.weight"][:, 0] += 100.0
    tensors["model.layers.0.block_sparse_moe.gate.weight"][0, 0] = -1e4
    write_checkpoint(d, {n: (v.astype(np.float32), "F32") for n, v in tensors.items()}, cfg)
    shutil.copy(os.path.join(src, "tokens.npy"), os.path.join(d, "tokens.npy"))
    return d


def export(s):
    """Exports of a quantized Mixtral under the names their consumers load."""
    model = wide_mixtral(s)
    out = s.path("export.h5")
    ok, cmd, tail, _ = quantize(s, model, out, ["--bits", "4", "--group-size", "16",
                                                "--scale-dtype", "float16"], 2,
                                ["--expert-groups", "2"])
    if not s.case(ok, "export: quantize runs", tail, [cmd]):
        return
    layers = export_check.result_layers(out)
    routers = {n: (v, "F32") for n, v in llama_ref.load_weights(model).items()
               if n.endswith("block_sparse_moe.gate.weight")}
    for fmt in ("dequant", "gptq"):
        d = s.path("export_" + fmt)
        shutil.rmtree(d, ignore_errors=True)
        ok, cmd, tail, _ = s.run(["export", "--in", out, "--out", d, "--format", fmt, "--model",
                                  model], np_=1)
        if not s.case(ok, "export %s runs" % fmt, tail, [cmd]):
            continue
        st, probs, _ = export_check.read_export(d)
        if fmt == "dequant":
            probs += export_check.check_dequant(st, layers, "F32", routers)
        else:
            probs += export_check.check_gptq(st, layers, v2=False, exact=True)
            probs += export_check.check_model_tensors(st, routers)
        names = [n for n in st if ".experts." in n]
        s.case(not probs and len(names) >= 24,
               "export %s: %d expert tensors under their Mixtral names, routers as stored, "
               "weights == the result's Ŵ" % (fmt, len(names)), "; ".join(probs[:4]))
    export_evaluates_alike(s, model, out, s.path("export_dequant"))


def demo(s):
    """The trained demo MoE at 3 bits (as jobs/demo_moe.sh): FP < Qronos <= OPTQ < RTN."""
    model = os.path.join(ROOT, "data", "demo-moe")
    calib = os.path.join(ROOT, "data", "demo-calib.txt")
    held = os.path.join(ROOT, "data", "demo-eval.txt")
    ppl = {}
    for method in ("fp", "rtn", "optq", "qronos"):
        args = ["--model", model]
        if method != "fp":
            out = s.path("demo_%s.h5" % method)
            ok, cmd, tail, dt = s.run(["quantize", "--model", model, "--calib", calib, "--out",
                                       out, "--method", method, "--bits", "3", "--group-size",
                                       "64", "--nsamples", "128", "--seqlen", "256", "--quiet"],
                                      np_=2, out=out)
            if not s.case(ok, "demo MoE %s 3-bit quantize runs" % method, "%.1fs" % dt, [cmd]):
                return
            args += ["--quantized", out]
        ok, cmd, tail, _ = s.run(["eval", "--tokens", held, "--seqlen", "256", "--quiet"] + args,
                                 np_=2)
        if not s.case(ok and tail.strip().splitlines()[-1].startswith("perplexity"),
                      "demo MoE %s eval runs" % method, tail, [cmd]):
            return
        ppl[method] = float(tail.strip().splitlines()[-1].split()[1])
    s.case(ppl["fp"] < ppl["qronos"] <= ppl["optq"] < ppl["rtn"],
           "demo MoE at 3 bits: FP < Qronos <= OPTQ < RTN",
           " ".join("%s %.4f" % kv for kv in ppl.items()))


def main():
    ap = drivers.base_parser(__doc__)
    ap.add_argument("--models", required=True, help="make_models.py's fixtures")
    ap.add_argument("--part", choices=("identity", "rtn", "fallback", "export", "demo", "all"),
                    default="all")
    a = ap.parse_args()
    s = drivers.Suite(a, "quantize_moe")
    if s.exists():
        for part, fn in (("identity", identity), ("rtn", rtn), ("fallback", fallback),
                         ("export", export), ("demo", demo)):
            if a.part in (part, "all"):
                fn(s)
    return s.finish()


if __name__ == "__main__":
    sys.exit(main())
