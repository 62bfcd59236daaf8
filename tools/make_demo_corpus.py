#!/usr/bin/python3
"""Make the text corpora of the bundled demo model.

Source: the King James Bible (public domain) from the Debian packages
bible-kjv-text (compressed text) and bible-kjv (the `bible` reader):

    apt-get install -y bible-kjv bible-kjv-text
    /usr/bin/python3 tools/make_demo_corpus.py

The text is normalized to plain 7-bit ASCII: one verse per line (the verse
references are dropped), a blank line between chapters, two between books.

Outputs (disjoint by construction):
  data/demo-eval.txt   ~50 KB held-out evaluation text: the beginning of the
                       book of Acts.  Acts is excluded from everything else.
  data/demo-calib.txt  ~200 KB calibration text: the beginning of Genesis.
  build/demo-train.txt training text (not committed): every book except Acts
                       (overlaps the calibration text, never the evaluation).
"""
import argparse
import os
import re
import subprocess
import sys
import unicodedata

EVAL_BOOK = "Acts"
CALIB_BOOKS = ["Ge"]
EVAL_BYTES = 50_000
CALIB_BYTES = 200_000


def read_kjv(bible_cmd):
    try:
        out = subprocess.run([bible_cmd, "-f", "Genesis1:1-Revelation22:21"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit("make_demo_corpus: cannot run %r (apt-get install -y bible-kjv "
                 "bible-kjv-text): %s" % (bible_cmd, e))
    text = out.decode("latin-1")
    ref = re.compile(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$")
    books = []          # [(name, [(chapter, verse_text), ...])]
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        m = ref.match(line)
        if not m:
            sys.exit("make_demo_corpus: unexpected line: %r" % line[:80])
        book, chap, verse = m.group(1), int(m.group(2)), m.group(4)
        if not books or books[-1][0] != book:
            books.append((book, []))
        books[-1][1].append((chap, normalize(verse)))
    if len(books) != 66:
        sys.exit("make_demo_corpus: expected 66 books, got %d" % len(books))
    return books


def normalize(s):
    s = unicodedata.normalize("NFKD", s)
    s = s.encode("ascii", "ignore").decode("ascii")
    s = re.sub(r"[\x00-\x1f\x7f]", " ", s)
    return re.sub(r" +", " ", s).strip()


def book_text(verses):
    lines, prev = [], None
    for chap, v in verses:
        if prev is not None and chap != prev:
            lines.append("")
        lines.append(v)
        prev = chap
    return "\n".join(lines) + "\n"


def head_lines(text, nbytes):
    """The first whole lines of text totalling at most nbytes."""
    cut = text.rfind("\n", 0, nbytes)
    return text[:cut + 1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=os.path.join(os.path.dirname(__file__), ".."))
    ap.add_argument("--train-out", default=None,
                    help="training text [ROOT/build/demo-train.txt]")
    ap.add_argument("--bible", default="bible")
    a = ap.parse_args()
    root = os.path.abspath(a.root)
    train_out = a.train_out or os.path.join(root, "build", "demo-train.txt")

    books = read_kjv(a.bible)
    texts = {name: book_text(v) for name, v in books}
    assert EVAL_BOOK in texts and all(b in texts for b in CALIB_BOOKS)

    eval_txt = head_lines(texts[EVAL_BOOK], EVAL_BYTES)
    calib_txt = head_lines("\n".join(texts[b] for b in CALIB_BOOKS), CALIB_BYTES)
    train_txt = "\n\n".join(texts[n] for n, _ in books if n != EVAL_BOOK)
    assert eval_txt not in train_txt

    os.makedirs(os.path.join(root, "data"), exist_ok=True)
    os.makedirs(os.path.dirname(os.path.abspath(train_out)), exist_ok=True)
    for path, txt in ((os.path.join(root, "data", "demo-eval.txt"), eval_txt),
                      (os.path.join(root, "data", "demo-calib.txt"), calib_txt),
                      (train_out, train_txt)):
        data = txt.encode("ascii")
        with open(path, "wb") as f:
            f.write(data)
        print("wrote %s (%d bytes)" % (path, len(data)))


if __name__ == "__main__":
    main()
