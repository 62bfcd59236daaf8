#!/usr/bin/python3
"""Writes the tokenizer tests' fixtures into OUTDIR (deterministic: the same bytes every run):

  llama2/       SentencePiece-style BPE as Llama 2's tokenizer.json: normalizer Prepend("▁") +
                Replace(" " -> "▁"), no pre-tokenizer, byte_fallback, fuse_unk, <unk> <s> </s>,
                TemplateProcessing BOS; merges as "a b" strings; plus a normalized added token
  llama2_meta/  the same model in the newer layout: Metaspace(prepend_scheme "first", split false)
  llama3/       byte-level BPE as Llama 3's: Split(regex, Isolated) + ByteLevel(use_regex false),
                ignore_merges, merges as [a, b] pairs, <|begin_of_text|> BOS via Sequence[ByteLevel,
                TemplateProcessing], reserved special tokens, an lstrip/rstrip added token
  qwen2/        byte-level BPE as Qwen 2's: NFC normalizer, its regex (single digits), no BOS
  gpt2/         byte-level BPE as GPT-2's: ByteLevel(use_regex true) alone
  corpus.jsonl  documents: English, code, CJK, emoji, combining marks, whitespace runs, digits,
                special tokens written in the text ({"text": ...} per line)
  corpus.txt    one document with ill-formed UTF-8 bytes as well
  tokens2d_c.npy, tokens2d_f.npy, tokens1d.npy   2-D [samples, seqlen] (C and Fortran order)
                and the same ids 1-D, for the token reader

Merges are learned from part of the corpus (a few hundred per tokenizer), as a BPE trainer does.
Usage: make_text_fixtures.py OUTDIR [--repo ROOT]"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from text_bpe import (BYTE_DECODER, added, bpe_model, byte_level_model,  # noqa: E402
                      sentencepiece_model, template)

HERE = os.path.dirname(os.path.abspath(__file__))

# ---- corpus ----------------------------------------------------------------------------------

CODE = [
    '''static int add(int a, int b) {\n    return a + b;  // sum\n}\n''',
    '''def tokenize(text: str) -> list[int]:\n    """Split text."""\n    return [ord(c) for c in text if c != ' ']\n''',
    '''for (size_t i = 0; i < n; i++) {\n\tif (x[i] > 0.5f) y[i] = x[i] * 2.0f;\n\telse y[i] = -1;\n}\n''',
    '''{"name": "mpiquant", "version": "0.1.0", "deps": ["openmpi", "hdf5"], "ok": true}\n''',
    '''#!/bin/bash\nset -euo pipefail\nfor f in *.txt; do echo "$f: $(wc -l < "$f")"; done\n''',
    '''SELECT id, name FROM users WHERE age >= 18 AND name LIKE '%son' ORDER BY id DESC;\n''',
    '''x = np.linalg.solve(H + lam * np.eye(n), g)  # λ-damped\nassert x.shape == (n,), x.shape\n''',
    '''<div class="row"><a href="https://example.org/?q=1&amp;r=2">link</a></div>\n''',
]

UNICODE = [
    "我们的模型在量化之后仍然保持了很好的困惑度。北京是中国的首都。",
    "日本語のテキストも正しく分割されるべきです。カタカナとひらがな、漢字。",
    "한국어 문장도 포함합니다. 서울은 대한민국의 수도입니다.",
    "Decomposed Hangul: \u1100\u1161\u11a8 \u1112\u1161\u11ab and precomposed 각 한.",
    "Emoji: 😀 😂 🎉 👍🏽 👩‍💻 👨‍👩‍👧‍👦 🇩🇪 🇯🇵 ❤️ 1️⃣ 🏳️‍🌈 🤖🤖🤖",
    "Combining marks: cafe\u0301 vs café, nai\u0308ve, Ångström vs A\u030angstro\u0308m, "
    "Tie\u0302\u0301ng Vie\u0323\u0302t, e\u0301\u0301\u0323 stacked.",
    "Devanagari नमस्ते दुनिया, Arabic مرحبا بالعالم, Hebrew שָׁלוֹם עוֹלָם, Thai สวัสดีครับ.",
    "Greek Καλημέρα κόσμε, Cyrillic Привет, мир! Ελληνικά και русский.",
    "Full-width ＡＢＣ１２３, ligature ﬁne ﬂow, superscript x² y³, Roman Ⅻ, fraction ½ ¾.",
    "Digits ٣٤٥ १२३ ௧௨ and 1234567890 3.14159 2024-01-01 1e-9 0x7fff.",
    "Quotes “double” ‘single’ «guillemets» — dashes – and … ellipsis • bullet ™ © ®.",
    "Math ∑ x_i² ≤ ∞, ∀ε>0 ∃δ: |f(x)−f(y)|<ε, √2 ≈ 1.414, π ≠ 3.",
    "Fraktur 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 and the firmament of Genesis.",
]

WHITESPACE = [
    "   three spaces", "tab\there\t\tand two", "line\nbreak\n\n\nthree", "crlf\r\nline\r\n",
    "nbsp\u00a0here \u00a0 mixed", "ideographic\u3000space", "line\u2028separator",
    "next\u0085line", "zero\u200bwidth", "trailing spaces   ", "  \n  \n", " " * 40 + "x",
    "\t" * 7 + "tabs", "end of line \n", "\n", "a  b   c    d     e",
]

SPECIALS = ["<s>", "</s>", "<unk>", "<|endoftext|>", "<|begin_of_text|>", "<|im_start|>",
            "<|im_end|>", "<mask>", "<pad>", "<|reserved_special_token_3|>"]

CONTRACTIONS = ["don't", "I'LL", "we've", "THEY'RE", "it's", "he'd", "I'm", "Bob's", "o'clock",
                "'tis", "rock 'n' roll"]

INVALID = [b"\xff", b"\xc3\x28", b"\xe2\x82", b"\xf0\x9f\x98", b"\xed\xa0\x80", b"\xc0\xaf",
           b"\xf8\x88\x80\x80\x80", b"\x80\x80", b"\xf4\x90\x80\x80", b"ok\xe2\x82\xacok"]


def english(repo):
    with open(os.path.join(repo, "data", "demo-calib.txt"), encoding="utf-8") as f:
        text = f.read()
    return text


def make_docs(rng, eng, ndocs):
    """Documents mixing the kinds of text; each draw is from the seeded generator."""
    paras = [p for p in eng.split("\n") if p.strip()]
    docs = []
    for d in range(ndocs):
        parts = []
        for _ in range(int(rng.randint(3, 9))):
            kind = rng.randint(0, 7)
            if kind <= 2:
                a = int(rng.randint(0, len(paras)))
                parts.append(" ".join(paras[a:a + int(rng.randint(1, 4))]))
            elif kind == 3:
                parts.append(CODE[int(rng.randint(0, len(CODE)))])
            elif kind == 4:
                parts.append(UNICODE[int(rng.randint(0, len(UNICODE)))])
            elif kind == 5:
                parts.append(WHITESPACE[int(rng.randint(0, len(WHITESPACE)))])
            else:
                w = CONTRACTIONS[int(rng.randint(0, len(CONTRACTIONS)))]
                s = SPECIALS[int(rng.randint(0, len(SPECIALS)))]
                parts.append("%s said %s then %s%s again" % (w, s, s, w))
        seps = [" ", "\n", "\n\n", "  ", "\t", ""]
        doc = ""
        for p in parts:
            doc += p + seps[int(rng.randint(0, len(seps)))]
        if d % 17 == 0:
            doc = " " + doc  # leading space
        if d % 23 == 0:
            doc = SPECIALS[d % len(SPECIALS)] + doc  # a special token first
        docs.append(doc)
    return docs


LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
             r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
            r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def write_tok(outdir, name, tok):
    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False, indent=1)
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({}, f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--repo", default=os.path.normpath(os.path.join(HERE, "..", "..")))
    a = ap.parse_args()
    os.makedirs(a.outdir, exist_ok=True)
    rng = np.random.RandomState(20240614)
    eng = english(a.repo)
    docs = make_docs(rng, eng, 260)
    train = "\n".join(docs[:120]) + "\n" + eng[:40000]

    with open(os.path.join(a.outdir, "corpus.jsonl"), "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"text": d, "id": len(d)}, ensure_ascii=False) + "\n")
        f.write("\n")  # a blank line is skipped
    raw = bytearray()
    for k, d in enumerate(docs[:60]):
        raw += d.encode("utf-8")
        raw += INVALID[k % len(INVALID)]
    with open(os.path.join(a.outdir, "corpus.txt"), "wb") as f:
        f.write(bytes(raw))

    # Llama 3: byte-level, ignore_merges, pairs, BOS through Sequence[ByteLevel, Template]
    vocab, merges = byte_level_model(train, 700, [" Genesis", " firmament", " 𝔘𝔫𝔦𝔠𝔬𝔡𝔢"])
    n = len(vocab)
    specials = ["<|begin_of_text|>", "<|end_of_text|>"] + \
        ["<|reserved_special_token_%d|>" % k for k in range(6)] + ["<|eot_id|>"]
    at = [added(n + k, s) for k, s in enumerate(specials)]
    at.append(added(n + len(specials), "<mask>", lstrip=True, rstrip=True))
    write_tok(a.outdir, "llama3", {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": at,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_RE}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": {"type": "Sequence", "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
            template("<|begin_of_text|>", n)]},
        "decoder": BYTE_DECODER,
        "model": bpe_model(vocab, merges, True, ignore_merges=True)})

    # Qwen 2: NFC, single digits, merges as strings, no BOS
    vocab, merges = byte_level_model(train, 600, [])
    n = len(vocab)
    at = [added(n, "<|endoftext|>"), added(n + 1, "<|im_start|>"), added(n + 2, "<|im_end|>"),
          added(n + 3, "<tool_call>", special=False)]
    write_tok(a.outdir, "qwen2", {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": at,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_RE}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                           "use_regex": False},
        "decoder": BYTE_DECODER,
        "model": bpe_model(vocab, merges, False)})

    # GPT-2: ByteLevel with its own regex
    vocab, merges = byte_level_model(train, 400, [])
    n = len(vocab)
    write_tok(a.outdir, "gpt2", {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [added(n, "<|endoftext|>")], "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": True},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                           "use_regex": True},
        "decoder": BYTE_DECODER,
        "model": bpe_model(vocab, merges, False)})

    # Llama 2: SentencePiece BPE with byte fallback
    vocab, merges = sentencepiece_model(train, 800)
    n = len(vocab)
    at = [added(0, "<unk>"), added(1, "<s>"), added(2, "</s>"),
          added(n, "<pad>", special=False, normalized=True)]
    sp_decoder = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"},
        {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    model = bpe_model(vocab, merges, False, unk_token="<unk>", fuse_unk=True, byte_fallback=True)
    write_tok(a.outdir, "llama2", {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": at,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
        "pre_tokenizer": None,
        "post_processor": template("<s>", 1),
        "decoder": sp_decoder, "model": model})
    write_tok(a.outdir, "llama2_meta", {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": at[:3],
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first",
                          "split": False},
        "post_processor": template("<s>", 1),
        "decoder": sp_decoder, "model": dict(model, merges=[list(x) for x in merges])})

    # token arrays for the reader: [samples, seqlen] in C and Fortran order, and flat
    ids = rng.randint(0, 1000, size=(7, 13)).astype(np.int32)
    np.save(os.path.join(a.outdir, "tokens2d_c.npy"), ids)
    np.save(os.path.join(a.outdir, "tokens2d_f.npy"), np.asfortranarray(ids.astype(np.int64)))
    np.save(os.path.join(a.outdir, "tokens1d.npy"), ids.reshape(-1))
    nchar = sum(len(d) for d in docs)
    print("fixtures: %d documents, %d characters in corpus.jsonl, %d bytes in corpus.txt" %
          (len(docs), nchar, len(raw)))


if __name__ == "__main__":
    main()
