"""BPE training and tokenizer.json pieces shared by the tokenizer tests (make_text_fixtures.py,
run_text_calib.py): GPT-2's byte alphabet, a classic BPE trainer, vocabularies in the byte-level
and SentencePiece styles, added tokens, TemplateProcessing, the BPE model section."""
import collections
import re

def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs])), bs


def learn_merges(words, nmerges):
    """Classic BPE: words {tuple of symbols: count}; the most frequent pair merged each step
    (ties: the smallest pair). Incremental pair counts."""
    wl = [[list(w), c] for w, c in words.items()]
    pairs = collections.Counter()
    where = collections.defaultdict(set)
    for i, (w, c) in enumerate(wl):
        for a, b in zip(w, w[1:]):
            pairs[(a, b)] += c
            where[(a, b)].add(i)
    merges = []
    for _ in range(nmerges):
        if not pairs:
            break
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        (a, b), cnt = best
        if cnt < 2:
            break
        merges.append((a, b))
        for i in list(where[(a, b)]):
            w, c = wl[i]
            for x, y in zip(w, w[1:]):
                pairs[(x, y)] -= c
                if pairs[(x, y)] <= 0:
                    del pairs[(x, y)]
            j, out = 0, []
            while j < len(w):
                if j + 1 < len(w) and w[j] == a and w[j + 1] == b:
                    out.append(a + b)
                    j += 2
                else:
                    out.append(w[j])
                    j += 1
            wl[i][0] = out
            for x, y in zip(out, out[1:]):
                pairs[(x, y)] += c
                where[(x, y)].add(i)
        where.pop((a, b), None)
    return merges


ROUGH_SPLIT = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d{1,3}| ?[^\s\w]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")


def byte_level_model(text, nmerges, extra_words):
    b2u, order = bytes_to_unicode()
    counts = collections.Counter(ROUGH_SPLIT.findall(text))
    words = collections.Counter()
    for w, c in counts.items():
        words[tuple(b2u[b] for b in w.encode("utf-8"))] += c
    merges = learn_merges(words, nmerges)
    vocab = {}
    for b in order:
        vocab[b2u[b]] = len(vocab)
    for a, b in merges:
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
    for w in extra_words:  # in the vocabulary without merges: only ignore_merges finds them
        t = "".join(b2u[b] for b in w.encode("utf-8"))
        if t not in vocab:
            vocab[t] = len(vocab)
    return vocab, merges


def sentencepiece_model(text, nmerges):
    t = "▁" + text.replace(" ", "▁")
    chars = collections.Counter(t)
    keep = sorted(c for c, n in chars.items() if n >= 3 and c not in "\r\n\t")  # rare -> bytes
    words = collections.Counter()
    for w in re.findall(r"▁*[^▁]+|▁+", t):
        if all(c in keep for c in w):
            words[tuple(w)] += 1
    merges = learn_merges(words, nmerges)
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for a, b in merges:
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
    for c in keep:
        if c not in vocab:
            vocab[c] = len(vocab)
    # merges only of tokens in the vocabulary (all are: learned from kept characters)
    return vocab, merges


def added(i, content, special=True, normalized=False, lstrip=False, rstrip=False):
    return {"id": i, "content": content, "single_word": False, "lstrip": lstrip, "rstrip": rstrip,
            "normalized": normalized, "special": special}


def template(bos, bos_id):
    return {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}}}


BYTE_DECODER = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}


def bpe_model(vocab, merges, pairs, **kw):
    m = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
         "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
         "vocab": vocab, "merges": [list(x) for x in merges] if pairs else ["%s %s" % x for x in merges]}
    m.update(kw)
    return m
