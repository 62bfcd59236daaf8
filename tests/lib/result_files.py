"""Result files compared whole, and the calibration-window mixer, for the quantize drivers
(tests/model/run_quantize_*.py).  Not a test by itself.

contents(path): every dataset and attribute of a result file except what differs between
identical runs (seconds, the rank count, the writer's version), by HDF5 path ("name@attr" for
attributes); differences(a, b): the keys whose bytes differ or that one side lacks;
splitmix64(x): the mixer quantize draws its window starts with (calibrate.c);
rtn_mismatches(path, weights, bits, group_size): where a result differs from numpy's per-layer
RTN of the checkpoint.
"""
import os

import numpy as np

M64 = (1 << 64) - 1


def contents(path):
    """Every dataset and attribute of a result file but the run's own (seconds, ranks)."""
    import h5py
    items = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            for k, v in obj.attrs.items():
                if k not in ("seconds", "nranks", "mpiquant_version"):
                    items[name + "@" + k] = np.asarray(v)
            if isinstance(obj, h5py.Dataset):
                items[name] = obj[()]
        f.visititems(visit)
        for k, v in f.attrs.items():
            if k not in ("nranks", "mpiquant_version"):
                items["@" + k] = np.asarray(v)
    return items


def differences(a, b):
    keys = set(a) | set(b)
    return sorted(k for k in keys if k not in a or k not in b or
                  a[k].shape != b[k].shape or a[k].tobytes() != b[k].tobytes())


def splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def rtn_mismatches(path, weights, bits, group_size):
    """(layer, dataset) pairs where result file `path` differs from numpy's per-layer RTN of the
    checkpoint weights (name -> array); and the layers' result entries (drivers.read_result)."""
    import drivers
    import reference
    got = drivers.read_result(path, bits)
    bad = []
    for layer, d in got.items():
        W = weights[layer + ".weight"].astype(np.float64)
        r = reference.quantize_layer(W, np.eye(W.shape[1]), method="rtn", bits=bits,
                                     group_size=group_size, act_order=False)
        for key in ("codes", "scales", "zeros", "g_idx"):
            if not np.array_equal(np.asarray(d[key], np.float64), np.asarray(r[key], np.float64)):
                bad.append((layer, key))
    return bad, got


def identical_across_ranks(s, label, run, on_first, ranks=(1, 2, 3)):
    """Runs run(out, np) (-> drivers.Suite.run's tuple) at each rank count and records a case
    per run and one per comparison: every dataset and attribute equal to the first run's.
    on_first(out) checks the first result further."""
    base = None
    for np_ in ranks:
        out = s.path("%s_np%d.h5" % (label, np_))
        ok, cmd, tail, dt = run(out, np_)
        if not s.case(ok, "%s np%d runs" % (label, np_), "%.1fs" % dt if ok else tail, [cmd]):
            continue
        got = contents(out)
        if base is None:
            base = got
            on_first(out)
            continue
        diff = differences(base, got)
        s.case(not diff, "%s np%d identical to np%d" % (label, np_, ranks[0]),
               "%d of %d items differ, e.g. %s" % (len(diff), len(base), diff[:3]))


def export_evaluates_alike(s, model, result, exported, seqlen=64):
    """A case: `eval` of the dequantized export folder prints the perplexity `eval --quantized`
    prints for the result file (the tokens: the fixture's tokens.npy)."""
    toks = os.path.join(model, "tokens.npy")
    ppl = {}
    for label, args in (("quantized", ["--model", model, "--quantized", result]),
                        ("exported", ["--model", exported])):
        ok, cmd, tail, _ = s.run(["eval", "--tokens", toks, "--seqlen", str(seqlen),
                                  "--quiet"] + args, np_=2)
        ppl[label] = tail.strip().splitlines()[-1] if ok else tail
    s.case(ppl["quantized"] == ppl["exported"] and ppl["quantized"].startswith("perplexity"),
           "eval of the dequantized export == eval --quantized", "%s" % ppl)


def gguf_refused(s, result, model, architecture, label):
    """A case: `export --format gguf` of the result refuses the architecture (exit 3, one line
    naming it, no file)."""
    import subprocess
    import drivers
    g = s.path("export.gguf")
    c = drivers.launch_cmd(s.a.mpirun, 1, s.mpiquant) + [
        "export", "--in", result, "--out", g, "--format", "gguf", "--model", model]
    p = subprocess.run(c, env=s.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=s.a.timeout)
    errs = [ln for ln in p.stdout.decode(errors="replace").splitlines()
            if ln.startswith("mpiquant: error:")]
    s.case(p.returncode == 3 and len(errs) == 1 and architecture in errs[0] and
           not os.path.exists(g), "export gguf refuses %s (exit 3, names the architecture)"
           % label, "exit %d: %s" % (p.returncode, errs), [" ".join(c)])


def exported(s, result, model):
    """Exports the result file as `dequant` (float32: Ŵ exactly) and `gptq` into the suite's
    folder, one case per run; yields (format, parsed tensors, problems of the export check
    against the result's layers: Ŵ bit for bit, float16 scales exact)."""
    import shutil
    import export_check
    layers = export_check.result_layers(result)
    for fmt in ("dequant", "gptq"):
        d = s.path("export_" + fmt)
        shutil.rmtree(d, ignore_errors=True)
        dtype = ["--dtype", "float32"] if fmt == "dequant" else []
        ok, cmd, tail, _ = s.run(["export", "--in", result, "--out", d, "--format", fmt,
                                  "--model", model] + dtype, np_=1)
        if not s.case(ok, "export %s runs" % fmt, tail, [cmd]):
            continue
        st, probs, _ = export_check.read_export(d)
        if fmt == "dequant":
            probs += export_check.check_dequant(st, layers, "F32")
        else:
            probs += export_check.check_gptq(st, layers, v2=False, exact=True)
        yield fmt, st, probs
