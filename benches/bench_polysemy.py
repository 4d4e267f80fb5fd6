"""How long ``most_polysemous`` takes on a gcide model (issue 14, item 6).

    python benches/bench_polysemy.py                 # among = V (every word), top 20
    python benches/bench_polysemy.py --among 5000    # the CLI's default scan
    python benches/bench_polysemy.py --repeat 3

Trains a model on ``../shared/data/gcide.txt.gz`` with ``css_rs.train`` at default settings
(two threads; cached under ``~/.cache/css-rs-bench/``, keyed by the corpus file and the css-rs
version), then times ``analysis.most_polysemous(model, top=20, among=...)`` and prints the
seconds, words per second and the top words. A benchmark, not a test: nothing is asserted.
Skips (exit code 0) when the data file is absent.
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


def model_cache_path(corpus: Path, cache_dir: Path = CACHE_DIR) -> Path:
    """Keyed by the corpus file (size, mtime) and the css-rs version that trains the model."""
    import css_rs

    st = corpus.stat()
    key = json.dumps([corpus.name, st.st_size, st.st_mtime_ns, css_rs.__version__, THREADS])
    return cache_dir / f"polysemy-model-{hashlib.sha1(key.encode()).hexdigest()[:16]}.json"


def gcide_model(corpus: Path = CORPUS) -> CSSModel:
    """The default-settings model of ``corpus``, from the cache when it is there."""
    import css_rs

    cache = model_cache_path(corpus)
    if cache.is_file():
        return css_rs.load(cache)
    with gzip.open(corpus, "rt", encoding="utf-8") as fh:
        texts = fh.read().splitlines()
    start = time.perf_counter()
    vocab = css_rs.Vocabulary.from_texts(texts)
    model = css_rs.train(texts, vocab, css_rs.TrainConfig(threads=THREADS))
    print(f"trained: {len(model):,} words in {time.perf_counter() - start:.1f} s")
    cache.parent.mkdir(parents=True, exist_ok=True)
    model.save(cache)  # atomic: a half-written cache is never read
    return model


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--among", type=int, default=None, help="words scanned (default: V)")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=1, help="timed runs (the best is shown)")
    args = parser.parse_args(argv)
    if not CORPUS.is_file():
        print(f"skipped: {CORPUS} is absent")
        return 0
    from css_rs import analysis

    model = gcide_model()
    among = len(model) if args.among is None else args.among
    times, ranked = [], []
    for _ in range(args.repeat):
        start = time.perf_counter()
        ranked = analysis.most_polysemous(model, top=args.top, among=among)
        times.append(time.perf_counter() - start)
    best = min(times)
    print(
        f"most_polysemous(top={args.top}, among={among:,}) on {len(model):,} words, "
        f"{os.cpu_count()} cores: {best:.2f} s ({among / best:,.0f} words/s; "
        f"runs: {', '.join(f'{t:.2f}' for t in times)})"
    )
    for i, r in enumerate(ranked, start=1):
        senses = " | ".join(", ".join(s.neighbours(4)) for s in r.senses)
        print(f"  {i:2d}. {r.word:<14} score {r.score:.4f}  {senses}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
