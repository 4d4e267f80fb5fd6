"""Tokenize-and-count throughput: css-rs against Python's ``re.findall`` +
``collections.Counter`` (the original tool's rule), in one run on
``../shared/data/gcide.txt.gz``.

    python benches/bench_tokenizer.py [--threads N] [--repeat R] [--min-count C]

Two jobs, each done the same way on both sides:
- *count*: every word's count (``Vocabulary.update`` against ``Counter.update``);
- *vocabulary*: count, keep words seen ``--min-count`` times, ids by descending count, ties
  by word (``Vocabulary.from_texts`` against ``Counter`` + filter + sort + id dict).
The counts are checked equal. Prints seconds, MB/s and the ratio (best of ``--repeat``).
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
    parser.add_argument("--min-count", type=int, default=5)
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
    min_count = args.min_count

    def python_counts() -> Counter[str]:
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(pattern.findall(text.lower()))
        return counts

    def python_vocabulary() -> dict[str, int]:
        counts = python_counts()
        kept = [w for w, c in counts.items() if c >= min_count]
        kept.sort(key=lambda w: (-counts[w], w))
        return {w: i for i, w in enumerate(kept)}

    def rust_counts() -> css_rs.Vocabulary:
        vocab = css_rs.Vocabulary()
        vocab.update(texts)
        return vocab

    def rust_vocabulary() -> css_rs.Vocabulary:
        return css_rs.Vocabulary.from_texts(texts, min_count=min_count, max_size=10**9)

    expected = python_counts()
    everything = rust_counts()
    everything.build(min_count=1, max_size=10**9)
    ascii_words = {w: c for w, c in everything.counts.items() if w.isascii()}
    assert ascii_words == {w: c for w, c in expected.items() if w in ascii_words}, "counts differ"
    assert rust_vocabulary().words == list(python_vocabulary()), "vocabularies differ"

    rows = [
        ("count", best_of(args.repeat, python_counts), best_of(args.repeat, rust_counts)),
        (
            f"vocabulary (min_count {min_count})",
            best_of(args.repeat, python_vocabulary),
            best_of(args.repeat, rust_vocabulary),
        ),
    ]
    print(f"corpus: {DATA.name}, {len(texts):,} lines, {megabytes:.1f} MB, threads={args.threads}")
    header = ["Python s", "css-rs s", "Python MB/s", "css-rs MB/s", "ratio"]
    print(f"{'job':<26}" + "".join(f"{h:>13}" for h in header))
    for job, t_py, t_rs in rows:
        print(
            f"{job:<26}{t_py:>13.3f}{t_rs:>13.3f}{megabytes / t_py:>13.1f}"
            f"{megabytes / t_rs:>13.1f}{t_py / t_rs:>12.1f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
