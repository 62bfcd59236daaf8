#!/usr/bin/python3
"""Train the bundled demo model: a tiny byte-level Llama decoder.

Architecture (Hugging Face LlamaForCausalLM semantics): vocabulary = the 256
byte values, RMSNorm (eps 1e-5), rotary embeddings in the HF half-split
convention (rotate_half), rope_theta 10000, grouped-query attention (4 query
heads over 2 key/value heads, head_dim 32), SwiGLU MLP, no biases, untied
lm_head; hidden 128, intermediate 352, 4 layers, context 256.

Training: AdamW on random 256-byte windows of build/demo-train.txt (made by
tools/make_demo_corpus.py; it never contains the evaluation text), CPU, 2
threads, fixed seeds, a fixed number of steps.  Writes data/demo-model/
config.json and model.safetensors (bfloat16, HF tensor names, [out, in]),
written by hand (no safetensors package).

    apt-get install -y python3-torch bible-kjv bible-kjv-text
    /usr/bin/python3 tools/make_demo_corpus.py
    /usr/bin/python3 tools/train_demo_model.py            # train + save
    /usr/bin/python3 tools/train_demo_model.py --verify   # compare with tests/lib/llama_ref.py

--moe trains the mixture-of-experts demo instead (data/demo-moe/): the same
attention, every block's MLP replaced by Mixtral's block_sparse_moe (HF
MixtralForCausalLM): a router over 4 SwiGLU experts of width 192, each token
sent to its 2 most probable experts with their probabilities renormalised;
the Switch-Transformer load-balancing loss (coefficient 0.02, as Mixtral's
router_aux_loss_coef) keeps every expert in use. 600 steps by default:

    /usr/bin/python3 tools/train_demo_model.py --moe --threads 1
    /usr/bin/python3 tools/train_demo_model.py --moe --verify   # logits and routing

Record of the runs that produced the committed models: see TRAINING_RECORD below.
"""
# TRAINING_RECORD of the committed data/demo-model:
#   command: /usr/bin/python3 tools/train_demo_model.py   (defaults: 700 steps, batch 16 x 256,
#            AdamW lr 3e-3 (30 warmup steps, cosine to 3e-4), wd 0.1, seed 1234, 2 threads)
#   torch 1.13 (Debian python3-torch), 2 shared CPU cores: 583 s wall clock.
#   803,968 parameters; loss at step 25: 2.59, 250: 1.53, 500: 1.29, 700: 1.27 (running avg 1.235)
#   held-out data/demo-eval.txt (seqlen 256, bf16 weights): loss 1.3059 nats/byte, perplexity 3.691
#   tests/lib/llama_ref.py: perplexity 3.691160 (FP), 3.840285 (3-bit RTN, sym, groups of 64),
#   3.724411 (4-bit RTN g64), 3.898715 (3-bit RTN per row), 9.667675 (2-bit RTN g64).
# TRAINING_RECORD of the committed data/demo-moe:
#   command: /usr/bin/python3 tools/train_demo_model.py --moe --threads 1 --train T (T: the
#            build/demo-train.txt of tools/make_demo_corpus.py; defaults: 600 steps, the rest
#            as above; load-balancing coefficient 0.02)
#   torch 1.13, 1 thread: about 0.75 s a step on an idle core (7.5 min); this run took 1812 s
#   wall clock, the 2 cores shared with other work (load average ~11).
#   1,444,992 parameters; loss (running avg) at step 250: 1.58, 500: 1.30, 600: 1.258
#   held-out data/demo-eval.txt (seqlen 256, bf16 weights): loss 1.3296, perplexity 3.780;
#   experts' shares of the routed slots on it 0.232-0.265 in every block.
#   --verify: logits vs tests/lib/llama_ref.py 2.4e-6 relative, routing identical on 4091 of
#   4096 (token, block) pairs, 5 near-ties (gap <= 1e-4) left out; reference perplexity
#   3.779501 (FP), 3.875826 (3-bit RTN g64), 3.803439 (4-bit RTN g64).

import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 128,
    "intermediate_size": 352,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "vocab_size": 256,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "max_position_embeddings": 256,
    "tie_word_embeddings": False,
    "attention_bias": False,
    "mlp_bias": False,
    "hidden_act": "silu",
    "torch_dtype": "bfloat16",
}

# --moe: the same attention, the MLP replaced by Mixtral's block_sparse_moe (4 SwiGLU experts of
# width 192, the 2 most probable per token, their weights renormalised): 384 active MLP columns
# per token, about the dense demo's 352.
MOE_CONFIG = dict(CONFIG, architectures=["MixtralForCausalLM"], model_type="mixtral",
                  intermediate_size=192, num_local_experts=4, num_experts_per_tok=2,
                  router_aux_loss_coef=0.02, output_router_logits=False, sliding_window=None)
for _k in ("attention_bias", "mlp_bias"):
    del MOE_CONFIG[_k]


class RMSNorm(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        var = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        H, nh, nkv, hd = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        self.nh, self.nkv, self.hd = nh, nkv, hd
        self.q_proj = nn.Linear(H, nh * hd, bias=False)
        self.k_proj = nn.Linear(H, nkv * hd, bias=False)
        self.v_proj = nn.Linear(H, nkv * hd, bias=False)
        self.o_proj = nn.Linear(nh * hd, H, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.nh, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.nkv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.nkv, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.nh // self.nkv
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd) + mask
        att = torch.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, self.nh * self.hd)
        return self.o_proj(y)


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        H, I = c["hidden_size"], c["intermediate_size"]
        self.gate_proj = nn.Linear(H, I, bias=False)
        self.up_proj = nn.Linear(H, I, bias=False)
        self.down_proj = nn.Linear(I, H, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Expert(nn.Module):
    def __init__(self, c):
        super().__init__()
        H, I = c["hidden_size"], c["intermediate_size"]
        self.w1 = nn.Linear(H, I, bias=False)  # gate
        self.w3 = nn.Linear(H, I, bias=False)  # up
        self.w2 = nn.Linear(I, H, bias=False)  # down

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class SparseMoE(nn.Module):
    """Mixtral's block_sparse_moe: softmax over all experts of x·gateᵀ, the top k, weights
    renormalised to sum 1. Each expert runs on its own tokens only. aux: the Switch-Transformer
    load-balancing loss E · Σ_j (fraction of routed slots to j) · (mean probability of j), which
    keeps every expert in use."""

    def __init__(self, c):
        super().__init__()
        self.E, self.k = c["num_local_experts"], c["num_experts_per_tok"]
        self.gate = nn.Linear(c["hidden_size"], self.E, bias=False)
        self.experts = nn.ModuleList([Expert(c) for _ in range(self.E)])
        self.aux = None

    def forward(self, x):
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        probs = torch.softmax(self.gate(x), dim=-1)
        w, sel = torch.topk(probs, self.k, dim=-1)
        w = w / w.sum(-1, keepdim=True)
        out = torch.zeros_like(x)
        for j, ex in enumerate(self.experts):
            rows, slot = torch.nonzero(sel == j, as_tuple=True)
            if rows.numel():
                out.index_add_(0, rows, w[rows, slot, None] * ex(x[rows]))
        frac = F.one_hot(sel, self.E).float().mean(dim=(0, 1))
        self.aux = self.E * (frac * probs.mean(0)).sum()
        return out.reshape(shape)


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        if "num_local_experts" in c:
            self.block_sparse_moe = SparseMoE(c)  # the HF module name, so the tensor names
        else:
            self.mlp = MLP(c)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        ff = self.block_sparse_moe if hasattr(self, "block_sparse_moe") else self.mlp
        return x + ff(self.post_attention_layernorm(x))


class Inner(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList([Layer(c) for _ in range(c["num_hidden_layers"])])
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])


class Llama(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.model = Inner(c)
        self.lm_head = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)

    def forward(self, tokens):
        B, T = tokens.shape
        hd = self.c["head_dim"]
        inv = 1.0 / (self.c["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
        fr = torch.arange(T, dtype=torch.float32)[:, None] * inv[None, :]
        emb = torch.cat((fr, fr), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        mask = torch.full((T, T), float("-inf")).triu(1)
        x = self.model.embed_tokens(tokens)
        for layer in self.model.layers:
            x = layer(x, cos, sin, mask)
        return self.lm_head(self.model.norm(x))


def init_weights(m, c):
    std = 0.02
    for name, p in m.named_parameters():
        if p.dim() == 2:
            s = std
            if name.endswith(("o_proj.weight", "down_proj.weight", ".w2.weight")):
                s = std / math.sqrt(2 * c["num_hidden_layers"])
            nn.init.normal_(p, 0.0, s)


# ---------------------------------------------------------------- safetensors

def f32_to_bf16_bits(a):
    """float32 array -> uint16 bf16 bit patterns, round to nearest even."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = ((u >> 16) & 1) + 0x7FFF
    return ((u + r) >> 16).astype(np.uint16)


def bf16_bits_to_f32(b):
    return (b.astype(np.uint32) << 16).view(np.float32)


def write_safetensors_bf16(path, tensors):
    """tensors: dict name -> float32 numpy array; written as BF16."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        b = f32_to_bf16_bits(tensors[name]).tobytes()
        header[name] = {"dtype": "BF16", "shape": list(tensors[name].shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def read_safetensors_bf16(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        assert v["dtype"] == "BF16"
        a, b = v["data_offsets"]
        out[k] = bf16_bits_to_f32(np.frombuffer(data[a:b], dtype=np.uint16)).reshape(v["shape"])
    return out


# ---------------------------------------------------------------- train

def train(a):
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    rng = np.random.default_rng(a.seed)
    data = np.frombuffer(open(a.train, "rb").read(), dtype=np.uint8)
    evald = np.frombuffer(open(a.eval, "rb").read(), dtype=np.uint8)
    c = dict(MOE_CONFIG if a.moe else CONFIG)
    T = c["max_position_embeddings"]
    model = Llama(c)
    moes = [l.block_sparse_moe for l in model.model.layers] if a.moe else []
    init_weights(model, c)
    nparams = sum(p.numel() for p in model.parameters())
    print("params %d, train bytes %d, steps %d, batch %d x %d" % (
        nparams, len(data), a.steps, a.batch, T), flush=True)
    decay = [p for p in model.parameters() if p.dim() == 2]
    nodecay = [p for p in model.parameters() if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": nodecay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95))
    ev_tok = torch.from_numpy(evald[: (len(evald) // T) * T].astype(np.int64)).view(-1, T)

    def eval_loss():
        model.eval()
        with torch.no_grad():
            lg = model(ev_tok)
            l = F.cross_entropy(lg[:, :-1].reshape(-1, 256), ev_tok[:, 1:].reshape(-1))
        model.train()
        return l.item()

    t0 = time.time()
    run = None
    for step in range(1, a.steps + 1):
        lr = a.lr * min(1.0, step / a.warmup)
        prog = max(0.0, (step - a.warmup) / max(1, a.steps - a.warmup))
        lr *= 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * prog))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = rng.integers(0, len(data) - T - 1, size=a.batch)
        x = torch.from_numpy(np.stack([data[i:i + T] for i in idx]).astype(np.int64))
        logits = model(x)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, 256), x[:, 1:].reshape(-1))
        total = loss
        if moes:
            total = loss + c["router_aux_loss_coef"] * sum(m.aux for m in moes)
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        run = loss.item() if run is None else 0.95 * run + 0.05 * loss.item()
        if step % a.log_every == 0 or step == a.steps:
            msg = "step %5d  lr %.2e  loss %.4f  (avg %.4f)  %.0fs" % (
                step, lr, loss.item(), run, time.time() - t0)
            if step % (a.log_every * 10) == 0 or step == a.steps:
                msg += "  eval loss %.4f ppl %.3f" % ((el := eval_loss()), math.exp(el))
            print(msg, flush=True)
    print("train time %.0fs" % (time.time() - t0), flush=True)

    out = os.path.join(a.out)
    os.makedirs(out, exist_ok=True)
    tensors = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    write_safetensors_bf16(os.path.join(out, "model.safetensors"), tensors)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
        f.write("\n")
    # evaluation with the bf16-rounded weights
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in
                           read_safetensors_bf16(os.path.join(out, "model.safetensors")).items()})
    el = eval_loss()
    print("final: train loss (avg) %.4f, eval loss (bf16 weights) %.4f, eval ppl %.3f"
          % (run, el, math.exp(el)), flush=True)
    if moes:
        print_expert_load(model, moes, ev_tok)


def torch_routes(model, moes, tokens):
    """Each MoE block's top-k experts of every token, [B*T, k] per block (descending)."""
    loads = []
    hooks = [m.register_forward_hook(
        lambda mod, inp, out: loads.append(
            torch.topk(mod.gate(inp[0].reshape(-1, inp[0].shape[-1])), mod.k, -1)[1]))
        for m in moes]
    with torch.no_grad():
        model(tokens)
    for h in hooks:
        h.remove()
    return loads


def print_expert_load(model, moes, tokens):
    """Share of the routed (token, slot) pairs each expert receives on tokens, per block."""
    for i, sel in enumerate(torch_routes(model, moes, tokens)):
        share = torch.bincount(sel.reshape(-1), minlength=moes[i].E).double() / sel.numel()
        print("block %d expert load: %s" % (i, " ".join("%.3f" % v for v in share.tolist())))


# ---------------------------------------------------------------- verify

def verify(a):
    torch.set_num_threads(a.threads)
    sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
    import llama_ref
    c = json.load(open(os.path.join(a.out, "config.json")))
    model = Llama(c)
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in
                           read_safetensors_bf16(os.path.join(a.out, "model.safetensors")).items()})
    model.eval()
    evald = np.frombuffer(open(a.eval, "rb").read(), dtype=np.uint8)
    T = 256
    rng = np.random.default_rng(1)
    starts = rng.integers(0, len(evald) - T, size=4)
    win = np.stack([evald[s:s + T] for s in starts]).astype(np.int64)
    win[3, :100] = win[2, :100]   # plus a short window below
    with torch.no_grad():
        lt = model(torch.from_numpy(win)).double().numpy()
        lt_short = model(torch.from_numpy(win[:2, :37])).double().numpy()
    ref = llama_ref.Model(a.out)
    lr_ = ref.logits(win)
    lr_short = ref.logits(win[:2, :37])
    worst = 0.0
    for x, y in ((lt, lr_), (lt_short, lr_short)):
        rel = np.abs(x - y).max() / np.abs(y).max()
        worst = max(worst, rel)
        print("max |torch - ref| / max |ref| = %.3e" % rel)
    ok = worst < 1e-4
    print("logits agree to 1e-4 relative:", "yes" if ok else "NO")
    if "num_local_experts" in c:  # routing: identical wherever the reference is not at a tie
        moes = [l.block_sparse_moe for l in model.model.layers]
        got = torch_routes(model, moes, torch.from_numpy(win))
        _, sel, gap = ref.routes(win)
        keep = gap.reshape(len(moes), -1) > 1e-4
        differ = sum(int(((g.numpy() != s.reshape(-1, s.shape[-1])).any(-1) & k).sum())
                     for g, s, k in zip(got, sel, keep))
        print("routes: %d of %d (token, block) pairs differ, %d near-ties (gap <= 1e-4) left out"
              % (differ, keep.sum(), (~keep).sum()))
        ok = ok and differ == 0
    toks = evald.astype(np.int64)
    with torch.no_grad():
        n = len(toks) // T
        w = torch.from_numpy(toks[: n * T]).view(n, T)
        lg = model(w)
        nll = F.cross_entropy(lg[:, :-1].reshape(-1, 256).double(), w[:, 1:].reshape(-1)).item()
    print("torch perplexity %.6f" % math.exp(nll))
    print("ref   perplexity %.6f" % llama_ref.perplexity(a.out, toks, T))
    print("ref   perplexity 3-bit RTN g64 sym %.6f"
          % llama_ref.perplexity(a.out, toks, T, rtn_bits=3, rtn_group=64))
    print("ref   perplexity 4-bit RTN g64 sym %.6f"
          % llama_ref.perplexity(a.out, toks, T, rtn_bits=4, rtn_group=64))
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", default=os.path.join(ROOT, "build", "demo-train.txt"))
    ap.add_argument("--eval", default=os.path.join(ROOT, "data", "demo-eval.txt"))
    ap.add_argument("--out", default=None,
                    help="[data/demo-model, data/demo-moe with --moe]")
    ap.add_argument("--moe", action="store_true",
                    help="Mixtral architecture: 4 experts, top-2 (MOE_CONFIG)")
    ap.add_argument("--steps", type=int, default=None, help="[700, 600 with --moe]")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--verify", action="store_true")
    a = ap.parse_args()
    a.out = a.out or os.path.join(ROOT, "data", "demo-moe" if a.moe else "demo-model")
    a.steps = a.steps or (600 if a.moe else 700)
    if a.verify:
        sys.exit(verify(a))
    train(a)


if __name__ == "__main__":
    main()
