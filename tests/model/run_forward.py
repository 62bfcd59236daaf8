#!/usr/bin/python3
"""Forward pass of src/model vs the numpy reference tests/lib/llama_ref.py (float64).

Runs test_forward (C) on each random checkpoint of make_models.py and on the bundled demo model,
reads its float32 logits [nwin, seqlen, vocab] and compares with Model(dir).logits(windows):
  rel_fro = ||C - ref||_F / ||ref||_F        <= --tol (1e-4)
  rel_max = max|C - ref| / max|ref|          <= --tol
and the per-window NLL sums it prints with the reference's, relative to |ref| <= --tol.
Also checks that the reference logits are non-trivial (spread > 0.5 per position, mean top
probability < 0.95), so agreement means something.

Mixture-of-experts models: test_forward also writes each token's top-k experts and their weights
in every MoE block ([n_moe_blocks, nwin, seqlen, k]); the experts must be those of the reference
(Model.routes), in the same order, on every token, and the weights within --tol. make_models.py
builds the MoE fixtures' token files so that no token of a window of 16 or 64 is within 1e-3 of
a tie (checked here again); on the trained demo MoE (--demo-moe) tokens whose reference gap is
below --tie-gap (1e-4) are left out of the routing comparison and counted.

usage: run_forward.py --test-forward BIN --models DIR --demo-model DIR --demo-tokens FILE
                      --workdir DIR [--demo-moe DIR]
"""
import argparse
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import llama_ref  # noqa: E402


def check_routes(m, trace, out, nwin, T, tol, min_gap, tie_gap):
    """C's routing (out.routes, out.rweights) vs the reference's trace: (ok, text). Tokens
    whose reference gap between the k-th and (k+1)-th probability is below tie_gap are left
    out (counted); min_gap > 0 asserts that no token is that close (the fixtures' promise)."""
    k = m.k
    shape = (len(m.sparse), nwin, T, k)
    try:
        sel = np.fromfile(out + ".routes", dtype=np.int32).reshape(shape)
        wts = np.fromfile(out + ".rweights", dtype=np.float32).reshape(shape).astype(np.float64)
    except (OSError, ValueError) as e:
        return False, " | routes: %s" % e
    ref_sel = np.stack([trace[l][0] for l in m.sparse])
    probs = np.stack([trace[l][1] for l in m.sparse])   # sorted descending
    ref_w = probs[..., :k]
    if m.renorm:
        ref_w = ref_w / ref_w.sum(-1, keepdims=True)
    gap = probs[..., k - 1] - probs[..., k] if k < m.E else np.full(shape[:-1], np.inf)
    keep = gap >= tie_gap
    same = (sel == ref_sel).all(-1)
    differ = int((~same & keep).sum())
    werr = float(np.abs(wts - ref_w)[same].max()) if same.any() else np.inf
    used = np.unique(sel)
    ok = differ == 0 and werr <= tol and gap.min() > min_gap and len(used) > 1
    return ok, (" | routes: %d/%d tokens x blocks differ (%d near-ties left out), "
                "weights max err %.1e, min gap %.1e, %d experts used"
                % (differ, keep.sum(), (~keep).sum(), werr, gap.min(), len(used)))


def caps_bite(m, toks, ref):
    """Gemma 2: (ok, text): removing either soft-cap from the reference changes its logits by
    more than 1% (relative Frobenius), so agreeing with it tests the capping."""
    if not getattr(m, "gemma2", False):
        return True, ""
    change = []
    for i in range(2):
        saved = m.caps
        m.caps = tuple(None if j == i else c for j, c in enumerate(saved))
        try:
            alt = m.logits(toks)
        finally:
            m.caps = saved
        change.append(np.linalg.norm(alt - ref) / np.linalg.norm(ref))
    return min(change) > 0.01, (" | without the attention / final cap the logits change by "
                                "%.1f%% / %.1f%%" % (100 * change[0], 100 * change[1]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--test-forward", required=True)
    ap.add_argument("--models", required=True)
    ap.add_argument("--demo-model", required=True)
    ap.add_argument("--demo-tokens", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--demo-moe", default=None)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--tie-gap", type=float, default=1e-4)
    a = ap.parse_args(argv)
    os.makedirs(a.workdir, exist_ok=True)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")

    # (label, model dir, token file, seqlen, nwin)
    cases = []
    for name in sorted(os.listdir(a.models)):
        d = os.path.join(a.models, name)
        cases.append((name, d, os.path.join(d, "tokens.npy"), 16, 3))
    # seqlen > 128 and > 64: several attention row tiles and head tiles, the last ones partial
    cases.append(("qwen2_bf16_gqa2 T=300", os.path.join(a.models, "qwen2_bf16_gqa2"),
                  os.path.join(a.models, "qwen2_bf16_gqa2", "tokens.npy"), 300, 2))
    cases.append(("llama_f16_gqa4 T=200", os.path.join(a.models, "llama_f16_gqa4"),
                  os.path.join(a.models, "llama_f16_gqa4", "tokens.npy"), 200, 2))
    # mixture of experts on windows of 64 (more tokens per expert; tie-free by construction)
    for name in ("mixtral_f32_e4", "qwen2moe_bf16_e4", "qwen3moe_f16_e8"):
        cases.append(("%s T=64" % name, os.path.join(a.models, name),
                      os.path.join(a.models, name, "tokens.npy"), 64, 2))
    # Gemma 2 on windows as long as its sliding_window (128, the longest mpiquant accepts)
    cases.append(("gemma2_bf16 T=128", os.path.join(a.models, "gemma2_bf16"),
                  os.path.join(a.models, "gemma2_bf16", "tokens.npy"), 128, 2))
    cases.append(("demo T=256", a.demo_model, a.demo_tokens, 256, 2))
    cases.append(("demo T=64", a.demo_model, a.demo_tokens, 64, 4))
    if a.demo_moe:
        cases.append(("demo-moe T=256", a.demo_moe, a.demo_tokens, 256, 2))

    npass = nfail = 0
    worst = (0.0, 0.0)
    refs = {}
    for label, d, tokpath, T, nwin in cases:
        out = os.path.join(a.workdir, label.replace(" ", "_").replace("=", "") + ".f32")
        p = subprocess.run([a.test_forward, d, tokpath, str(T), str(nwin), out], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        log = p.stdout.decode(errors="replace")
        if p.returncode != 0:
            nfail += 1
            print("FAIL %s: test_forward exit %d\n%s" % (label, p.returncode, log))
            continue
        if d not in refs:
            refs[d] = llama_ref.Model(d)
        m = refs[d]
        V = m.embed.shape[0]
        toks = llama_ref.read_tokens(tokpath, V)[: nwin * T].reshape(nwin, T)
        trace = {}
        ref = m.logits(toks, trace)
        got = np.fromfile(out, dtype=np.float32).reshape(nwin, T, V).astype(np.float64)
        rel_fro = np.linalg.norm(got - ref) / np.linalg.norm(ref)
        rel_max = np.abs(got - ref).max() / np.abs(ref).max()
        # reference NLL per window
        lg = ref[:, :-1]
        mx = lg.max(-1, keepdims=True)
        lse = mx[..., 0] + np.log(np.exp(lg - mx).sum(-1))
        tgt = np.take_along_axis(lg, toks[:, 1:, None], -1)[..., 0]
        ref_nll = (lse - tgt).sum(-1)
        got_nll = np.array([float(l.split()[2]) for l in log.splitlines() if l.startswith("nll ")])
        nll_err = np.abs(got_nll - ref_nll).max() / np.abs(ref_nll).max() \
            if got_nll.shape == ref_nll.shape else np.inf
        spread = ref.std(-1).mean()
        pr = np.exp(ref - ref.max(-1, keepdims=True))
        top = (pr.max(-1) / pr.sum(-1)).mean()
        worst = (max(worst[0], rel_fro), max(worst[1], rel_max))
        route_ok, route_detail = (check_routes(m, trace, out, nwin, T,
                                               a.tol, 0.0 if d == a.demo_moe else 1e-3,
                                               a.tie_gap if d == a.demo_moe else 0.0)
                                  if m.sparse else (True, ""))
        cap_ok, cap_detail = caps_bite(m, toks, ref)
        ok = (rel_fro <= a.tol and rel_max <= a.tol and nll_err <= a.tol and spread > 0.5
              and top < 0.95 and "0 failed" in log and route_ok and cap_ok)
        detail = ("rel_fro %.2e rel_max %.2e nll %.2e | logit spread %.2f, top prob %.2f%s%s"
                  % (rel_fro, rel_max, nll_err, spread, top, route_detail, cap_detail))
        if ok:
            npass += 1
            print("ok   %s (T=%d, %d windows): %s" % (label, T, nwin, detail))
        else:
            nfail += 1
            print("FAIL %s (T=%d, %d windows): %s\n%s" % (label, T, nwin, detail, log))
    print("worst: rel_fro %.2e, rel_max %.2e (tolerance %.0e)" % (worst[0], worst[1], a.tol))
    print("%d passed, %d failed" % (npass, nfail))
    return 0 if nfail == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
