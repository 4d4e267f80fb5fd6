"""How long ``most_polysemous`` takes on a gcide model (issue 14, item 6).

    python benches/bench_polysemy.py                 # among = V (every word), top 20
    python benches/bench_polysemy.py --among 5000    # the CLI's default scan
    python benches/bench_polysemy.py --repeat 3
    python benches/bench_polysemy.py --min-count 3   # a 57 K-word model (issue's 50 K target)
    python benches/bench_polysemy.py --every-word    # also rare words, as before they were
                                                     # left out of the ranking

Trains a model on ``../shared/data/gcide.txt.gz`` with ``css_rs.train`` at default settings
(two threads; the vocabulary keeps the words seen ``--min-count`` times, default 5: 38 K
words; cached under ``~/.cache/css-rs-bench/``, keyed by the corpus file, the css-rs version
and the vocabulary floor), then times ``analysis.most_polysemous(model, top=20, among=...)``
and prints the seconds (wall and CPU), words per second and the top words. A benchmark, not a
test: nothing is asserted. Skips (exit code 0) when the data file is absent (``--corpus``
names it when the checkout is not next to ``shared/``).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from css_rs import CSSModel

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "gcide.txt.gz"
CACHE_DIR = Path.home() / ".cache" / "css-rs-bench"
THREADS = 2
# The vocabulary's default floor; the cache key of a model trained with it has no floor in it,
# so that models cached before --min-count existed are still found.
DEFAULT_MIN_COUNT = 5
# No cap on the vocabulary's size: at --min-count 3 gcide has 57 K words.
MAX_WORDS = 1_000_000


def model_cache_path(
    corpus: Path, min_count: int = DEFAULT_MIN_COUNT, cache_dir: Path = CACHE_DIR
) -> Path:
    """Keyed by the corpus file (size, mtime), the css-rs version that trains the model and the
    vocabulary floor."""
    import css_rs

    st = corpus.stat()
    parts: list[object] = [corpus.name, st.st_size, st.st_mtime_ns, css_rs.__version__, THREADS]
    if min_count != DEFAULT_MIN_COUNT:
        parts += [min_count, MAX_WORDS]
    key = json.dumps(parts)
    return cache_dir / f"polysemy-model-{hashlib.sha1(key.encode()).hexdigest()[:16]}.json"


def gcide_model(corpus: Path = CORPUS, min_count: int = DEFAULT_MIN_COUNT) -> CSSModel:
    """The default-settings model of ``corpus`` over the words seen ``min_count`` times, from
    the cache when it is there."""
    import css_rs

    cache = model_cache_path(corpus, min_count)
    if cache.is_file():
        return css_rs.load(cache)
    with gzip.open(corpus, "rt", encoding="utf-8") as fh:
        texts = fh.read().splitlines()
    start = time.perf_counter()
    if min_count == DEFAULT_MIN_COUNT:
        vocab = css_rs.Vocabulary.from_texts(texts)
    else:
        vocab = css_rs.Vocabulary.from_texts(texts, min_count=min_count, max_size=MAX_WORDS)
    model = css_rs.train(texts, vocab, css_rs.TrainConfig(threads=THREADS))
    print(f"trained: {len(model):,} words in {time.perf_counter() - start:.1f} s")
    cache.parent.mkdir(parents=True, exist_ok=True)
    model.save(cache)  # atomic: a half-written cache is never read
    return model


def ranked_candidates(model: CSSModel, among: int) -> int:
    """How many words ``most_polysemous`` analyses: all ``among`` in a build from before rare
    words were left out (a baseline build run with PYTHONPATH)."""
    from css_rs import analysis

    count = getattr(analysis, "polysemy_candidates", None)
    return among if count is None else int(count(model, among))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--among", type=int, default=None, help="words scanned (default: V)")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=1, help="timed runs (the best is shown)")
    parser.add_argument(
        "--every-word",
        action="store_true",
        help="analyse all --among words, rare ones too (SenseAnalyzer.sense_weights), instead "
        "of most_polysemous's candidates",
    )
    parser.add_argument(
        "--corpus", type=Path, default=CORPUS, help=f"the training text (default: {CORPUS})"
    )
    parser.add_argument(
        "--min-count",
        type=int,
        default=DEFAULT_MIN_COUNT,
        help="the trained vocabulary's floor (default 5: 38 K words; 3: 57 K)",
    )
    args = parser.parse_args(argv)
    if not args.corpus.is_file():
        print(f"skipped: {args.corpus} is absent")
        return 0
    from css_rs import analysis

    model = gcide_model(args.corpus, args.min_count)
    among = min(len(model), len(model) if args.among is None else args.among)
    times, cpu_times, ranked = [], [], []
    for _ in range(args.repeat):
        start, cpu_start = time.perf_counter(), time.process_time()
        if args.every_word:
            analysis.SenseAnalyzer(model).sense_weights(range(among))
        else:
            ranked = analysis.most_polysemous(model, top=args.top, among=among)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    best = min(times)
    what = "every word's senses" if args.every_word else f"most_polysemous(top={args.top})"
    scanned = among if args.every_word else ranked_candidates(model, among)
    # CPU seconds (all threads) move less than wall seconds when other processes share the
    # cores.
    print(
        f"{what} among {among:,} of {len(model):,} words ({scanned:,} analysed), "
        f"{os.cpu_count()} cores: {best:.2f} s ({scanned / best:,.0f} words/s; "
        f"runs: {', '.join(f'{t:.2f}' for t in times)}; "
        f"CPU s: {', '.join(f'{t:.2f}' for t in cpu_times)})"
    )
    for i, r in enumerate(ranked, start=1):
        senses = " | ".join(", ".join(s.neighbours(4)) for s in r.senses)
        print(f"  {i:2d}. {r.word:<14} score {r.score:.4f}  {senses}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
