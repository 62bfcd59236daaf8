#!/usr/bin/python3
"""`mpiquant eval` vs the numpy reference (tests/lib/llama_ref.py, float64) at --np ranks.

For every case: the last stdout line is `perplexity X` with |X - ref| / ref <= --tol (1e-4),
the --json file holds {"perplexity": X, "nll": log X, "tokens": nwin*(L-1), "seqlen": L}, and
at --np > 1 the printed line is identical to the one of a 1-rank run (windows are computed
with the same shapes wherever they run and summed in window order). The reference gets the
same truncated tokens (first nwindows * L).

usage: run_eval.py --mpiquant BIN --np N --models DIR --demo-model DIR --demo-tokens FILE
                   --workdir DIR [--mpirun "mpirun --oversubscribe"]
"""
import json
import math
import os
import shlex
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import llama_ref  # noqa: E402
import model_drivers as common  # noqa: E402


def run(a, np_, args):
    cmd = shlex.split(a.mpirun) + ["-np", str(np_), a.mpiquant, "eval"] + args
    env = common.subprocess_env()
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"), \
        shlex.join(cmd)


def main(argv=None):
    a = common.parser(__doc__, "--demo-model", "--demo-tokens", tol=True).parse_args(argv)
    os.makedirs(a.workdir, exist_ok=True)
    M = lambda n: os.path.join(a.models, n)  # noqa: E731
    T = lambda n: os.path.join(a.models, n, "tokens.npy")  # noqa: E731
    # (label, model, tokens, seqlen expected, extra args, nwindows or None)
    cases = [(n, M(n), T(n), 16, ["--seqlen", "16"], None) for n in sorted(os.listdir(a.models))]
    cases += [
        # default seqlen 2048 capped by max_position_embeddings (512, 64): tail dropped
        ("llama_f32_gqa1 default seqlen", M("llama_f32_gqa1"), T("llama_f32_gqa1"), 512, [], None),
        ("llama_f16_gqa4 default seqlen", M("llama_f16_gqa4"), T("llama_f16_gqa4"), 64, [], None),
        ("qwen2_bf16_gqa2 T=200", M("qwen2_bf16_gqa2"), T("qwen2_bf16_gqa2"), 200,
         ["--seqlen", "200", "--nwindows", "3"], 3),
        ("demo T=128 x8", a.demo_model, a.demo_tokens, 128, ["--seqlen", "128", "--nwindows", "8"], 8),
        ("demo default x3", a.demo_model, a.demo_tokens, 256, ["--nwindows", "3"], 3),
    ]
    npass = nfail = 0
    worst = 0.0
    for label, d, tok, L, extra, nw in cases:
        jpath = os.path.join(a.workdir, "eval.json")
        if os.path.exists(jpath):
            os.remove(jpath)
        args = ["--model", d, "--tokens", tok, "--json", jpath, "--quiet"] + extra
        rc, out, err, cmd = run(a, a.np, args)
        problems = []
        lines = out.strip().splitlines()
        ppl = None
        if rc != 0 or not lines or not lines[-1].startswith("perplexity "):
            problems.append("exit %d, stdout %r, stderr %r" % (rc, out[-300:], err[-600:]))
        else:
            ppl = float(lines[-1].split()[1])
        m = llama_ref.Model(d)
        toks = llama_ref.read_tokens(tok, m.embed.shape[0])
        nwin = len(toks) // L if nw is None else nw
        total, count = m.nll(toks[: nwin * L], L)
        ref = math.exp(total / count)
        rel = abs(ppl - ref) / ref if ppl is not None else math.inf
        worst = max(worst, rel)
        if rel > a.tol:
            problems.append("perplexity %r vs reference %.8f (rel %.2e)" % (ppl, ref, rel))
        try:
            j = json.load(open(jpath))
            if not (abs(j["perplexity"] - ref) <= a.tol * ref
                    and abs(j["nll"] - total / count) <= a.tol * abs(total / count)
                    and j["tokens"] == count and j["seqlen"] == L):
                problems.append("json %r vs nll %.8f tokens %d seqlen %d"
                                % (j, total / count, count, L))
        except (OSError, ValueError, KeyError) as e:
            problems.append("json: %s" % e)
        if a.np > 1 and ppl is not None:
            rc1, out1, err1, _ = run(a, 1, args[:4] + extra)
            if rc1 != 0 or out1.strip().splitlines()[-1] != lines[-1]:
                problems.append("1 rank printed %r, %d ranks %r" % (out1.strip()[-80:], a.np,
                                                                   lines[-1]))
        if problems:
            nfail += 1
            print("FAIL %s: %s\n     %s" % (label, "; ".join(problems), cmd))
        else:
            npass += 1
            print("ok   %s: perplexity %.6f vs reference %.6f (rel %.1e, %d tokens)"
                  % (label, ppl, ref, rel, count))
    print("worst relative perplexity difference: %.2e (tolerance %.0e)" % (worst, a.tol))
    print("%d passed, %d failed" % (npass, nfail))
    return 0 if nfail == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
