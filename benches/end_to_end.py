"""``css-rs train`` end to end against gensim ``Word2Vec(corpus_file=...)``, in one run (issue 14).

    python benches/end_to_end.py [--epochs 5] [--threads 2] [--rare-per-line 8]
                                 [--also "--max-frequencies 8 --balance-gamma 0"]

1. css-rs, the whole command as a user types it, in a subprocess:
   ``css-rs train --source text --path gcide.txt --epochs 5 --threads 2`` (defaults otherwise):
   wall time and peak RSS of the process, and its phases from the metadata it writes.
2. gensim: ``Word2Vec(corpus_file=..., sg=1, vector_size=100, window=3, negative=5,
   min_count=5, epochs=5, workers=2)`` in a subprocess, its vocabulary scan included. Its corpus
   file (css-rs's tokens, space-separated) is written first: that time is reported apart and
   not counted, as gensim cannot read raw text with the same tokenizer.
3. Streaming on gcide with ``--rare-per-line`` random 9-letter words mixed into every line
   (~2 M distinct words; written to a temporary folder): its docs/s against gcide's, its peak
   RSS, and the id cache's bytes per token (1 epoch: only the streaming phase is compared);
   then again with a checkpoint every 20 batches (the guide's ``save_checkpoint_every``, no
   time floor), to show what checkpoints cost once 2 M words have been seen. Throughput is
   compared per token: the rare words add 46% more tokens to every document, so documents
   per second would fall by a third even at an equal cost per token (both are printed).
4. With ``--also FLAGS`` (repeatable), css-rs again with those flags added, as extra rows: to
   show what a setting costs end to end, never in place of the defaults.

Prints a markdown table. Needs the ``bench`` extra (gensim); skips (exit 0) when
``../shared/data/gcide.txt.gz`` is absent. Times on a shared machine drift: read the ratios.
The corpora are prepared in a subprocess: a child forked from a large parent would report the
parent's memory as its own peak RSS.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import string
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CORPUS = DATA / "gcide.txt.gz"
GENSIM = {"vector_size": 100, "sg": 1, "window": 3, "negative": 5, "min_count": 5}


@dataclass
class Measured:
    seconds: float
    peak_rss_mb: float
    stdout: str


def run_measured(cmd: list[str], cwd: Path) -> Measured:
    """Runs ``cmd`` to the end: wall time, and the peak RSS of that process alone."""
    out_path = cwd / f"stdout-{time.monotonic_ns()}.txt"
    with open(out_path, "w") as out, open(out_path.with_suffix(".err"), "w") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed: {out_path.with_suffix('.err').read_text()[-2000:]}")
    return Measured(seconds, usage.ru_maxrss / 1024, out_path.read_text())


def css_train(
    path: Path, cwd: Path, epochs: int, threads: int, *extra: str
) -> tuple[Measured, dict[str, Any]]:
    cwd.mkdir()
    cmd = [sys.executable, "-m", "css_rs", "train", "--source", "text", "--path", str(path)]
    cmd += ["--epochs", str(epochs), "--threads", str(threads), *extra]
    measured = run_measured(cmd, cwd)
    metadata = json.loads((cwd / "models" / "css_model.metadata.json").read_text())
    return measured, metadata["stats"]


def gensim_worker(corpus_file: str, epochs: int, threads: int) -> None:
    from gensim.models import Word2Vec

    start = time.perf_counter()
    model = Word2Vec(corpus_file=corpus_file, epochs=epochs, workers=threads, seed=1, **GENSIM)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "words": len(model.wv)}))


def prepare_worker(folder: Path, rare_per_line: int) -> None:
    """Writes gcide.txt, gcide-rare.txt and gensim's gcide.tokens.txt into ``folder``; prints
    the seconds the tokens file took."""
    with gzip.open(CORPUS, "rt", encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    (folder / "gcide.txt").write_text("\n".join(lines) + "\n")
    with_rare_words(lines, rare_per_line, folder / "gcide-rare.txt")
    print(json.dumps({"tokenize_seconds": write_gensim_corpus(lines, folder / "gcide.tokens.txt")}))


def write_gensim_corpus(lines: list[str], path: Path) -> float:
    """css-rs's tokens, one document a line; returns the seconds it took."""
    from css_rs import Tokenizer

    start = time.perf_counter()
    with open(path, "w") as out:
        for tokens in Tokenizer().tokenize_batch(lines):
            if tokens:
                out.write(" ".join(tokens) + "\n")
    return time.perf_counter() - start


def with_rare_words(lines: list[str], per_line: int, path: Path) -> None:
    """Every line with ``per_line`` random 9-letter words inserted at random places."""
    rng = random.Random(14)
    letters = string.ascii_lowercase
    with open(path, "w") as out:
        for line in lines:
            words = line.split()
            for _ in range(per_line):
                rare = "".join(rng.choices(letters, k=9))
                words.insert(rng.randrange(len(words) + 1), rare)
            out.write(" ".join(words) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rare-per-line", type=int, default=8)
    parser.add_argument("--also", action="append", default=[], metavar="FLAGS")
    parser.add_argument("--gensim-worker", help=argparse.SUPPRESS)
    parser.add_argument("--prepare-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.gensim_worker:
        gensim_worker(args.gensim_worker, args.epochs, args.threads)
        return 0
    if args.prepare_worker:
        prepare_worker(Path(args.prepare_worker), args.rare_per_line)
        return 0
    if not CORPUS.exists():
        print(f"skipped: {CORPUS} is absent")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cmd = [sys.executable, __file__, "--prepare-worker", str(folder)]
        prepared = run_measured([*cmd, "--rare-per-line", str(args.rare_per_line)], folder)
        tokenize_seconds = json.loads(prepared.stdout)["tokenize_seconds"]
        gcide, rare = folder / "gcide.txt", folder / "gcide-rare.txt"
        css, stats = css_train(gcide, folder / "css", args.epochs, args.threads)
        cmd = [sys.executable, __file__, "--gensim-worker", str(folder / "gcide.tokens.txt")]
        cmd += ["--epochs", str(args.epochs), "--threads", str(args.threads)]
        gensim = run_measured(cmd, folder)
        gensim_call = json.loads(gensim.stdout.strip().splitlines()[-1])
        variants = [
            (
                flags,
                css_train(gcide, folder / f"also-{i}", args.epochs, args.threads, *flags.split()),
            )
            for i, flags in enumerate(args.also)
        ]
        rare_run = css_train(rare, folder / "rare", 1, args.threads)
        # A checkpoint every 20 batches: no time floor below 10 s (the floor is the smaller of
        # 10 s and checkpoint_every_seconds).
        often = ["--save-checkpoint-every", "20", "--checkpoint-every-seconds", "0.001"]
        rare_often = css_train(rare, folder / "rare-often", 1, args.threads, *often)
        print(report(args, css, stats, gensim, gensim_call, tokenize_seconds, rare_run, rare_often))
        print(variant_rows(variants, gensim_call["seconds"]))
    return 0


def report(
    args: argparse.Namespace,
    css: Measured,
    stats: dict[str, Any],
    gensim: Measured,
    gensim_call: dict[str, Any],
    tokenize_seconds: float,
    rare_run: tuple[Measured, dict[str, Any]],
    rare_often: tuple[Measured, dict[str, Any]],
) -> str:
    rare, rare_stats = rare_run
    often_stats = rare_often[1]
    prep = stats["stream_seconds"] + stats["convert_seconds"]
    rows = [
        "| | css-rs `train` (whole command) | gensim `Word2Vec(corpus_file=…)` |",
        "| --- | --- | --- |",
        f"| wall time | {css.seconds:.1f} s | {gensim_call['seconds']:.1f} s "
        f"(process {gensim.seconds:.1f} s; + {tokenize_seconds:.1f} s writing its corpus "
        "file, not counted) |",
        f"| end to end, gensim ÷ css-rs | **{gensim_call['seconds'] / css.seconds:.2f}×** | 1 |",
        f"| peak RSS | {css.peak_rss_mb:.0f} MB | {gensim.peak_rss_mb:.0f} MB |",
        f"| vocabulary | {stats['vocabulary_size']:,} words | {gensim_call['words']:,} words |",
        f"| streaming + converting | {stats['stream_seconds']:.2f} + "
        f"{stats['convert_seconds']:.2f} s = **{100 * prep / css.seconds:.0f}%** of the wall "
        f"time (training {stats['train_seconds']:.1f} s) | |",
    ]
    ratio = rare_stats["tokens_per_second"] / stats["tokens_per_second"]
    docs_ratio = rare_stats["docs_per_second"] / stats["docs_per_second"]
    ids_per_token = stats["cache_bytes"] / stats["tokens"]
    rare_per_token = rare_stats["cache_bytes"] / rare_stats["tokens"]
    streaming = [
        "",
        "| streaming | gcide | gcide + rare words |",
        "| --- | --- | --- |",
        f"| documents, tokens | {stats['documents']:,}, {stats['tokens']:,} | "
        f"{rare_stats['documents']:,}, {rare_stats['tokens']:,} |",
        f"| distinct words | {stats['distinct_words']:,} | {rare_stats['distinct_words']:,} |",
        f"| tokens/s | {stats['tokens_per_second']:,.0f} | "
        f"{rare_stats['tokens_per_second']:,.0f} (**{100 * ratio:.0f}%** of gcide's) |",
        f"| docs/s | {stats['docs_per_second']:,.0f} | {rare_stats['docs_per_second']:,.0f} "
        f"({100 * docs_ratio:.0f}%) |",
        f"| id cache | {ids_per_token:.2f} bytes/token | {rare_per_token:.2f} bytes/token |",
        f"| peak RSS of the run | {css.peak_rss_mb:.0f} MB ({args.epochs} epochs) | "
        f"{rare.peak_rss_mb:.0f} MB (1 epoch) |",
        f"| with a checkpoint every 20 batches | | {often_stats['docs_per_second']:,.0f} docs/s "
        f"({often_stats['batches'] // 20} checkpoints; peak RSS "
        f"{rare_often[0].peak_rss_mb:.0f} MB) |",
    ]
    return "\n".join(rows + streaming)


def variant_rows(variants: list[tuple[str, tuple[Measured, dict[str, Any]]]], gensim: float) -> str:
    """The ``--also`` runs: wall time and ratio to gensim, with the defaults' columns."""
    if not variants:
        return ""
    rows = [
        "",
        "| css-rs `train` with | wall time | gensim ÷ css-rs | training |",
        "| --- | --- | --- | --- |",
    ]
    for flags, (measured, stats) in variants:
        rows.append(
            f"| `{flags}` | {measured.seconds:.1f} s | {gensim / measured.seconds:.2f}× | "
            f"{stats['train_seconds']:.1f} s |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
