"""Exploring a trained model: ``spectrum``, ``similar``, ``polysemy``, ``modes``,
``eval``, ``export`` and ``plot``.

The figures come from ``CSSModel`` and ``css_rs.analysis``; this module only formats them.
Every command has ``--json``: then stdout carries one JSON document and nothing else (errors
still go to stderr, with the usual exit codes).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Any, Optional, TextIO

import typer

from css_rs import analysis
from css_rs.analysis import DEFAULT_PEAK_RATIO
from css_rs.cli import app, fail, handle_errors
from css_rs.cli.command import ModelCommand
from css_rs.cli.output import (
    JSON_OPTION,
    MODEL_ARGUMENT,
    bar,
    emit_json,
    format_size,
    print_table,
)
from css_rs.model import CSSModel, load
from css_rs.reporter import Reporter


class ExportFormat(str, Enum):
    word2vec = "word2vec"
    word2vec_binary = "word2vec-binary"
    npy = "npy"
    npz = "npz"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _words_with(scores: Sequence[tuple[str, float]], digits: int = 2) -> str:
    return ", ".join(f"{w} {s:.{digits}f}" for w, s in scores)


# --- spectrum and similar ------------------------------------------------------------------
def spectrum(
    model_path: Path = MODEL_ARGUMENT,
    word: str = typer.Argument(..., metavar="WORD", help="A vocabulary word.", show_default=False),
    top: Optional[int] = typer.Option(
        None, "--top", "-k", min=1, metavar="N", help="Show the N strongest only."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """A word's active frequencies: amplitude and phase, strongest first."""
    with handle_errors():
        model = load(model_path)
        every = model.spectrum(word)
        entries = every if top is None else every[:top]
        if as_json:
            emit_json(
                {
                    "word": word,
                    "active": len(every),
                    "entries": [
                        {"frequency": f, "amplitude": a, "phase": p} for f, a, p in entries
                    ],
                }
            )
            return
        typer.echo(
            f"Spectrum of {word!r}: {len(every)} active of D = {model.frequency_dim} "
            f"(K = {model.max_frequencies}), strongest first"
        )
        strongest = entries[0][1] if entries else 1.0
        rows = [(f, f"{a:.4f}", f"{p:+.3f}", bar(a / strongest, 24)) for f, a, p in entries]
        print_table(("freq", "amplitude", "phase", ""), rows)


def similar(
    model_path: Path = MODEL_ARGUMENT,
    word: str = typer.Argument(..., metavar="WORD", help="A vocabulary word.", show_default=False),
    top: int = typer.Option(10, "--top", "-k", min=1, metavar="N", help="How many words."),
    as_json: bool = JSON_OPTION,
) -> None:
    """The words most similar to WORD by complex cosine."""
    with handle_errors():
        model = load(model_path)
        found = model.similar(word, top)
        if as_json:
            emit_json({"word": word, "similar": [{"word": w, "cosine": c} for w, c in found]})
            return
        typer.echo(f"Most similar to {word!r} (complex cosine):")
        rows = [(i, w, f"{c:.4f}") for i, (w, c) in enumerate(found, start=1)]
        print_table(("#", "word", "cosine"), rows)


# --- polysemy ------------------------------------------------------------------------------
def polysemy(
    model_path: Path = MODEL_ARGUMENT,
    word: Optional[str] = typer.Argument(
        None,
        metavar="WORD",
        help="A word; without it, the most polysemous words.",
        show_default=False,
    ),
    top: int = typer.Option(
        20, "--top", "-k", min=1, metavar="N", help="How many words to rank (without WORD)."
    ),
    among: int = typer.Option(
        5000, "--among", min=1, metavar="N", help="Rank among this many most frequent words."
    ),
    neighbours: int = typer.Option(
        5, "--neighbours", min=1, metavar="N", help="Neighbours per peak."
    ),
    min_count: int = typer.Option(
        analysis.DEFAULT_SENSE_MIN_COUNT,
        "--min-count",
        min=0,
        metavar="N",
        help="Words seen fewer times are neither neighbours nor sense members, nor ranked.",
    ),
    peak_ratio: float = typer.Option(
        DEFAULT_PEAK_RATIO,
        "--peak-ratio",
        min=0.0,
        max=1.0,
        metavar="X",
        help="A peak is at least this fraction of the strongest entry.",
    ),
    rank: analysis.Ranking = typer.Option(
        "phase",
        "--rank",
        metavar="phase|amplitude",
        help="Sense neighbours by phase-aligned product Re(z_w conj z_u) (as "
        "CSSModel.polysemy), or by amplitude product.",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """A word's peaks, sense neighbours and senses; without WORD, the most polysemous words.

    Sense neighbours are ranked by the phase-aligned product by default, as CSSModel.polysemy
    (--rank amplitude: by amplitude product). Senses are groups of the word's nearest words
    and its peaks' sense neighbours; the ranking looks at the --among most frequent words,
    without those seen fewer than --min-count times (noise: a WORD is still reported).
    """
    with handle_errors():
        model = load(model_path)
        options: dict[str, Any] = {
            "peak_ratio": peak_ratio,
            "k": neighbours,
            "rank": rank,
            "min_count": min_count,
        }
        if word is None:
            with scan_progress("Senses", None if as_json else sys.stderr) as progress:
                ranked = analysis.most_polysemous(
                    model, top=top, among=among, progress=progress, **options
                )
            scanned = analysis.polysemy_candidates(model, among, min_count)
            if as_json:
                emit_json(
                    {
                        "among": min(among, len(model)),
                        "scanned": scanned,
                        "words": [r.to_dict() for r in ranked],
                    }
                )
            else:
                skipped = scanned < min(among, len(model))
                _print_ranking(ranked, scanned, min_count if skipped else None)
            return
        report = model.polysemy(word, **options)
        if as_json:
            emit_json(report.to_dict())
        else:
            _print_senses(report, rank, peak_ratio)


@contextmanager
def scan_progress(
    description: str, stream: Optional[TextIO]
) -> Iterator[Optional[analysis.ProgressCallback]]:
    """A progress bar for a scan of words, on ``stream`` when it is a terminal (stderr: the
    results go to stdout, which may be a file), erased when the scan ends; otherwise (no
    stream, a pipe, a log file) nothing at all, and the callback is None."""
    if stream is None or not stream.isatty():
        yield None
        return
    with Reporter(stream, live=True).task(description, transient=True) as bar:
        yield lambda done, total: bar.update(done, f"{done:,} / {total:,} words", total=total)


def _print_senses(report: analysis.Polysemy, rank: str, peak_ratio: float) -> None:
    peaks = report.peaks
    verdict = "polysemous" if report.is_polysemous else "one sense"
    typer.echo(
        f"{report.word!r}: {_count(len(peaks), 'peak')} (>= {peak_ratio:g} x the strongest), "
        f"{_count(len(report.senses), 'sense')}: {verdict}"
        + (f", balance {report.balance:.2f}" if report.is_polysemous else "")
    )
    typer.echo(f"Peaks and their sense neighbours ({rank} ranking):")
    rows = []
    for p in peaks:
        sense = report.sense_of(p)
        rows.append(
            (
                p.frequency,
                f"{p.amplitude:.3f}",
                f"{p.phase:+.2f}",
                "-" if sense is None else str(sense + 1),
                _words_with(p.neighbours),
            )
        )
    print_table(("freq", "amplitude", "phase", "sense", "neighbours"), rows)
    if report.senses:
        typer.echo(
            f"Senses (groups among the {report.neighbourhood} nearest words and the peaks' "
            "neighbours):"
        )
        for i, s in enumerate(report.senses, start=1):
            carried = ", ".join(map(str, s.frequencies)) or "no single peak"
            typer.echo(
                f"  {i}. weight {s.weight:.2f}, peaks {carried}: {', '.join(s.neighbours(8))}"
            )


def _print_ranking(ranked: list[analysis.Polysemy], scanned: int, min_count: Optional[int]) -> None:
    """``min_count``: the floor that left rare words out of the scan (None: it left none)."""
    words = f"the {scanned:,} most frequent words"
    if min_count is not None:
        words += f" (seen >= {min_count} times)"
    if not ranked:
        typer.echo(f"No word with two or more senses among {words}.")
        return
    typer.echo(f"Most polysemous of {words} (score: weight of the second sense per neighbour):")
    rows = [
        (
            i,
            r.word,
            r.count,
            len(r.senses),
            f"{r.balance:.2f}",
            f"{r.score:.3f}",
            " | ".join(", ".join(s.neighbours(4)) for s in r.senses),
        )
        for i, r in enumerate(ranked, start=1)
    ]
    print_table(("#", "word", "count", "senses", "balance", "score", "senses' words"), rows)


# --- modes ---------------------------------------------------------------------------------
def modes(
    model_path: Path = MODEL_ARGUMENT,
    freq: Optional[int] = typer.Argument(
        None,
        metavar="FREQ",
        help="A frequency 0..D-1; without it, a summary of every frequency.",
        show_default=False,
    ),
    top: int = typer.Option(10, "--top", "-k", min=1, metavar="N", help="How many words."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Words that carry frequency FREQ most strongly; without FREQ, a line per frequency.

    The summary line of a frequency gives how many words use it and its strongest words.
    """
    with handle_errors():
        model = load(model_path)
        if freq is None:
            _frequency_summary(model, top, as_json)
            return
        if not 0 <= freq < model.frequency_dim:
            fail(
                f"frequency {freq} is outside 0..{model.frequency_dim - 1} "
                f"(this model has D = {model.frequency_dim})"
            )
        found = model.modes(freq, top)
        users = int(model.frequency_usage()[freq])
        if as_json:
            emit_json(
                {
                    "frequency": freq,
                    "words_using": users,
                    "top": [{"word": w, "amplitude": a} for w, a in found],
                }
            )
            return
        typer.echo(f"Frequency {freq}: used by {users:,} words; strongest:")
        rows = [(i, w, f"{a:.4f}") for i, (w, a) in enumerate(found, start=1)]
        print_table(("#", "word", "amplitude"), rows)


def _frequency_summary(model: CSSModel, count: int, as_json: bool) -> None:
    summaries = analysis.frequency_summaries(model, k=count)
    if as_json:
        emit_json([s.to_dict() for s in summaries])
        return
    used = [s for s in summaries if s.words]
    typer.echo(f"{len(used)} of {model.frequency_dim} frequencies in use:")
    rows = [(s.frequency, s.words, _words_with(s.top)) for s in used]
    print_table(("freq", "words", "strongest words (amplitude)"), rows)


# --- eval ----------------------------------------------------------------------------------
def evaluate(
    model_path: Path = MODEL_ARGUMENT,
    pairs_files: list[Path] = typer.Argument(
        ...,
        metavar="PAIRS_FILE",
        help="Word-pair files (word1<TAB>word2<TAB>score).",
        show_default=False,
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Spearman correlation between human similarity scores and the model's cosines."""
    with handle_errors():
        model = load(model_path)
        results = [model.evaluate_pairs(p) for p in pairs_files]
        if as_json:
            emit_json(
                [
                    {
                        "path": r.path,
                        "spearman": r.spearman,
                        "pearson": r.pearson,
                        "pairs_used": r.pairs_used,
                        "oov_pairs": r.oov_pairs,
                        "oov_ratio": r.oov_ratio,
                    }
                    for r in results
                ]
            )
            return
        rows = [
            (
                r.path,
                f"{r.spearman:.4f}",
                f"{r.pearson:.4f}",
                r.pairs_used,
                r.oov_pairs,
                f"{100 * r.oov_ratio:.1f}%",
            )
            for r in results
        ]
        print_table(("pairs file", "spearman", "pearson", "used", "oov", "oov %"), rows)


# --- export --------------------------------------------------------------------------------
def export(
    model_path: Path = MODEL_ARGUMENT,
    out: Path = typer.Argument(..., metavar="OUT", help="Output file.", show_default=False),
    fmt: ExportFormat = typer.Option(
        ...,
        "--format",
        "-f",
        metavar="FORMAT",
        help="word2vec (text), word2vec-binary, npy (dense matrix + .vocab.txt), npz (sparse).",
        show_default=False,
    ),
    real: bool = typer.Option(
        False,
        "--real",
        help="Amplitudes |z| only (D floats per word) instead of real and imaginary parts "
        "(word2vec: 2D floats) or complex64 (npy).",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Write the model for other tools: word2vec, a numpy matrix, or the sparse spectra.

    word2vec files load with gensim's KeyedVectors.load_word2vec_format; npy writes the matrix
    and OUT with suffix .vocab.txt; npz holds the sparse spectra. Files are written atomically.
    """
    with handle_errors():
        model = load(model_path)
        written = analysis.export(model, out, fmt.value, real=real)
        if as_json:
            files = [str(p) for p in written]
            emit_json({"format": fmt.value, "real": real, "words": len(model), "files": files})
            return
        layout = _layout(fmt.value, real, model.frequency_dim)
        typer.echo(f"Exported {len(model):,} words ({layout}) to:")
        for p in written:
            typer.echo(f"  {p} ({format_size(p.stat().st_size)})")


def _layout(fmt: str, real: bool, d: int) -> str:
    if fmt == "npz":
        return "sparse spectra: indptr, frequencies, amplitudes, phases, words, counts"
    if real:
        return f"{d} amplitudes per word"
    if fmt == "npy":
        return f"complex64, {d} per word"
    return f"{2 * d} floats per word: [re..., im...]"


# --- plot ----------------------------------------------------------------------------------
# In help texts a backslash keeps rich from reading "[plot]" as markup.
def plot(
    model_path: Path = MODEL_ARGUMENT,
    words: Optional[list[str]] = typer.Argument(
        None, metavar="WORD", help="Words whose spectra to plot.", show_default=False
    ),
    out: Path = typer.Option(
        ...,
        "-o",
        "--output",
        metavar="FILE",
        help="Image file (.png, .svg, .pdf).",
        show_default=False,
    ),
    overview: bool = typer.Option(
        False,
        "--overview",
        help="Plot active frequencies per word and frequency usage instead of spectra.",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Plot word spectra (phase as colour), or an overview of the whole model.

    Each word gets a stem plot of amplitude against frequency, coloured by phase. --overview
    plots the active frequencies per word and how many words use each frequency. Needs
    matplotlib: pip install 'css-rs\\[plot]'.
    """
    with handle_errors():
        if overview and words:
            fail("give either words or --overview, not both")
        if not overview and not words:
            fail("name words to plot, or pass --overview")
        model = load(model_path)
        if overview:
            written = analysis.plot_overview(model, out)
        else:
            written = analysis.plot_spectra(model, words or [], out)
        if as_json:
            emit_json({"file": str(written), "words": words or [], "overview": overview})
            return
        typer.echo(f"Wrote {written} ({format_size(written.stat().st_size)})")


app.command("spectrum", cls=ModelCommand)(spectrum)
app.command("similar", cls=ModelCommand)(similar)
app.command("polysemy", cls=ModelCommand)(polysemy)
app.command("modes", cls=ModelCommand)(modes)
app.command("eval", cls=ModelCommand)(evaluate)
app.command("export", cls=ModelCommand)(export)
app.command("plot", cls=ModelCommand)(plot)
