"""Corpus-level analysis of a trained model: senses and the most polysemous words, per-frequency
summaries, active-frequency histograms, export writers and plots.

Everything here works on a ``CSSModel`` and plain files, with no command-line concerns, so that
scripts and notebooks can call it; ``css_rs.cli.query`` only formats what these functions return.

Sense neighbours and the phase
------------------------------
A word's *peaks* are its entries with amplitude >= ``peak_ratio`` x its strongest
(ALGORITHM.md section 7). ALGORITHM.md ranks a peak's sense neighbours by amplitude product. In
trained models, however, a frequency is typically shared by several unrelated clusters that sit
at different phases (on the synthetic corpus a handful of frequencies is used by *every* word),
so the amplitude product ranks unrelated words as highly as related ones. The natural complex
generalisation is the *phase-aligned* product ``Re(z_w * conj(z_u))`` at that frequency
(= amplitude product x cos of the phase difference): it is exactly that frequency's
contribution to the inner product behind the complex cosine. ``rank="phase"`` (the default)
uses it, among the words whose cosine with ``w`` is positive (a single term can be large for a
word whose other terms cancel it); ``rank="amplitude"`` is the plain amplitude product, for
comparison.

Senses
------
Even phase-aligned, one frequency sees only two of a spectrum's dimensions, so a peak can point
at a cluster the word as a whole is unrelated to, and counting peaks says little: with a few
frequencies shared by all words, nearly every word has five or more peaks. A word's *senses* are
therefore found where its similarity is clean, in its nearest neighbours: groups of neighbours
that are close to each other (``SenseAnalyzer``); each peak is attached to the sense it carries.
A word is *polysemous* when it has two or more senses. ``CSSModel.polysemy(word)`` reports one
word (a ``Polysemy``: peaks and senses); ``most_polysemous`` ranks words by the similarity mass
of their second sense, which is high only for words close to two groups of words at once.
Everything is computed in Rust (``rust/senses.rs``, ``rust/queries.rs``).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, Optional

import numpy as np
import orjson

from css_rs import _core
from css_rs.errors import CssRsError, InputError
from css_rs.persistence import (
    EMPTY_FREQUENCY,
    atomic_writer,
    check_output_path,
    metadata_path,
    sha256_of,
)

if TYPE_CHECKING:
    from css_rs.model import CSSModel

Ranking = Literal["phase", "amplitude"]
RANKINGS: tuple[str, ...] = ("phase", "amplitude")
EXPORT_FORMATS: tuple[str, ...] = ("word2vec", "word2vec-binary", "npy", "npz")
PLOT_INSTALL_HINT = "pip install 'css-rs[plot]'"
PHASE_COLORMAP = "twilight"  # cyclic: phases -pi and pi get the same colour

# A peak is an entry with at least this fraction of the word's strongest amplitude.
DEFAULT_PEAK_RATIO = 0.25
# Senses are drawn from this many nearest neighbours of a word.
DEFAULT_NEIGHBOURHOOD = 20
# Neighbours are one sense when their mean mutual cosine is at least this fraction of the word's
# mean cosine with them: one sense's neighbours are about as close to each other as to the word
# (0.9 vs 0.6 for 'bank' on the synthetic corpus), two senses' are not (-0.1).
DEFAULT_MERGE_RATIO = 0.5
# Words seen fewer times are neither neighbours nor sense members: their few updates leave
# noisy spectra that land near anything. On gcide (38 K words, 3 models) a floor of 12 found
# both senses of 14.3 of 43 ambiguous words instead of 10.3, and split 3.7 of 16 unambiguous
# controls instead of 5.0 (docs/sparse-supports.md has the frontier).
DEFAULT_SENSE_MIN_COUNT = 12
# A group of neighbours lighter than this fraction of the heaviest is noise, not a sense...
DEFAULT_MIN_SHARE = 0.25
# ... unless two of its words came from one of the word's peaks and it reaches this fraction.
DEFAULT_MODE_SHARE = 0.2
# Words per call of the Rust scan when progress is shown: each call is parallel over its words,
# and 1,000 of them take a few tenths of a second.
SCAN_CHUNK = 1000

ProgressCallback = Callable[[int, int], None]  # (words done, words in all)


class MissingDependencyError(CssRsError):
    """An optional dependency (an extra) is not installed."""


# --- senses and polysemy -------------------------------------------------------------------
@dataclass(frozen=True)
class Peak:
    """One peak of a word's spectrum and the words that share it (its sense neighbours)."""

    frequency: int
    amplitude: float
    phase: float
    neighbours: list[tuple[str, float]] = field(default_factory=list)


@dataclass(frozen=True)
class Sense:
    """A group of the word's nearest neighbours that are close to each other, and the peaks
    that carry the word's similarity to them."""

    members: list[tuple[str, float]]  # (word, cosine with the sensed word), best first
    peaks: list[Peak]  # strongest first; may be empty when no single peak dominates

    @property
    def weight(self) -> float:
        """Similarity mass: the sum of the members' cosines with the word."""
        return float(sum(c for _, c in self.members))

    @property
    def frequencies(self) -> list[int]:
        return [p.frequency for p in self.peaks]

    def neighbours(self, k: int = 5) -> list[str]:
        return [w for w, _ in self.members[:k]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "weight": self.weight,
            "frequencies": self.frequencies,
            "members": [{"word": w, "cosine": c} for w, c in self.members],
        }


@dataclass(frozen=True)
class Polysemy:
    """A word's peaks (with their sense neighbours) and its senses: what
    ``CSSModel.polysemy`` and ``most_polysemous`` report."""

    word: str
    peaks: list[Peak]  # strongest first
    senses: list[Sense] = field(default_factory=list)  # heaviest first
    count: int = 0  # the word's corpus count
    neighbourhood: int = DEFAULT_NEIGHBOURHOOD  # nearest words the senses were drawn from

    @property
    def is_polysemous(self) -> bool:
        """Two or more senses. (Not two or more peaks, ALGORITHM.md's first reading: on trained
        models nearly every word has several peaks; ``len(peaks)`` counts them.)"""
        return len(self.senses) >= 2

    @property
    def balance(self) -> float:
        """Second-heaviest sense over the heaviest (1.0: two equal senses; 0: one sense)."""
        if len(self.senses) < 2:
            return 0.0
        return self.senses[1].weight / self.senses[0].weight

    @property
    def score(self) -> float:
        """The ranking key of ``most_polysemous``: the second sense's similarity mass per
        neighbour (0 with one sense). High only when the word is close to *two* groups of
        words, so weak, spread-out similarity (function words) scores low."""
        if len(self.senses) < 2:
            return 0.0
        return self.senses[1].weight / self.neighbourhood

    def sense_of(self, peak: Peak) -> Optional[int]:
        """Index of the sense ``peak`` carries, or None for a peak that carries none."""
        for i, sense in enumerate(self.senses):
            if peak in sense.peaks:
                return i
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "word": self.word,
            "count": self.count,
            "is_polysemous": self.is_polysemous,
            "balance": self.balance,
            "score": self.score,
            "peaks": [{**peak_to_dict(p), "sense": self.sense_of(p)} for p in self.peaks],
            "senses": [s.to_dict() for s in self.senses],
        }


def peak_to_dict(peak: Peak) -> dict[str, Any]:
    return {
        "frequency": peak.frequency,
        "amplitude": peak.amplitude,
        "phase": peak.phase,
        "neighbours": [{"word": w, "score": s} for w, s in peak.neighbours],
    }


class SenseAnalyzer:
    """Peaks, sense neighbours and senses of words, with one set of settings.

    The senses of a word come from its ``neighbourhood`` nearest words (complex cosine > 0)
    and, with ``modes`` (the default), from its peaks' sense neighbours: the words that share a
    peak frequency with it at an aligned phase. They are grouped by average linkage: two groups
    join while their mean mutual cosine is at least ``merge_ratio`` x the word's mean cosine
    with its nearest words (a scale taken from the word itself, so it adapts to each model).
    Groups of one word are not senses, nor groups lighter than ``min_share`` x the heaviest
    unless two of their words came from one peak: the nearest words are filled by a word's
    frequent sense, and a rarer sense shows only through the frequency that carries it. Each
    peak is attached to the sense it contributes most similarity to (its term of the complex
    inner product, summed over the sense's members).
    """

    def __init__(
        self,
        model: CSSModel,
        *,
        peak_ratio: float = DEFAULT_PEAK_RATIO,
        k: int = 5,
        rank: Ranking = "phase",
        neighbourhood: int = DEFAULT_NEIGHBOURHOOD,
        merge_ratio: float = DEFAULT_MERGE_RATIO,
        min_share: float = DEFAULT_MIN_SHARE,
        modes: bool = True,
        mode_share: float = DEFAULT_MODE_SHARE,
        min_count: int = DEFAULT_SENSE_MIN_COUNT,
    ) -> None:
        if rank not in RANKINGS:
            raise ValueError(f"rank must be one of {', '.join(RANKINGS)}, got {rank!r}")
        if not 0.0 <= peak_ratio <= 1.0:
            raise ValueError(f"peak_ratio must be in 0..1, got {peak_ratio}")
        if min_count < 0:
            raise ValueError(f"min_count must be >= 0, got {min_count}")
        if k < 1 or neighbourhood < 2:
            raise ValueError(f"need k >= 1 and neighbourhood >= 2, got {k} and {neighbourhood}")
        self.model = model
        self.peak_ratio, self.k, self.rank = peak_ratio, k, rank
        self.neighbourhood, self.merge_ratio, self.min_share = neighbourhood, merge_ratio, min_share
        self.modes, self.mode_share = modes, mode_share
        self.min_count = min_count
        self._settings = _core.SenseSettings(
            peak_ratio=peak_ratio,
            k=k,
            rank=rank,
            neighbourhood=neighbourhood,
            merge_ratio=merge_ratio,
            min_share=min_share,
            modes=modes,
            mode_share=mode_share,
            vocabulary=_seen_at_least(model, min_count),
        )

    def senses(self, word_ids: Sequence[int]) -> list[Polysemy]:
        """Peaks, sense neighbours and senses for each word (computed in Rust, in parallel
        over the words, with the GIL released)."""
        words, counts = self.model.words, self.model.vocab.counts
        found = self.model._spectra.senses(list(word_ids), self._settings)
        reports = []
        for w, (raw_peaks, raw_senses) in zip(word_ids, found):
            peaks = [
                Peak(f, a, ph, [(words[u], s) for u, s in neighbours])
                for f, a, ph, neighbours in raw_peaks
            ]
            senses = [
                Sense([(words[u], c) for u, c in members], [peaks[i] for i in carried])
                for members, carried in raw_senses
            ]
            word = words[w]
            reports.append(Polysemy(word, peaks, senses, counts.get(word, 0), self.neighbourhood))
        return reports

    def sense_weights(
        self, word_ids: Sequence[int], progress: Optional[ProgressCallback] = None
    ) -> list[list[float]]:
        """The weights of each word's senses, heaviest first (``Sense.weight``, bit for bit):
        enough to rank thousands of words without building their reports. ``progress(done,
        total)`` is called after each chunk of words."""
        ids = list(word_ids)
        if progress is None:
            return self.model._spectra.sense_weights(ids, self._settings)
        out: list[list[float]] = []
        progress(0, len(ids))
        for start in range(0, len(ids), SCAN_CHUNK):
            out += self.model._spectra.sense_weights(
                ids[start : start + SCAN_CHUNK], self._settings
            )
            progress(len(out), len(ids))
        return out


def _seen_at_least(model: CSSModel, min_count: int) -> Optional[int]:
    """How many words, from id 0, were seen at least ``min_count`` times (ids run by
    descending count); None when every word was (or the model carries no counts), and never
    fewer than 2 (a sense needs two words)."""
    counts = model.vocab.counts
    seen = np.array([counts[w] for w in model.words], dtype=np.int64)
    if min_count <= 1 or not seen.any() or seen.min() >= min_count:
        return None
    return max(2, int(np.argmax(seen < min_count)))


def most_polysemous(
    model: CSSModel,
    top: int = 20,
    among: int = 5000,
    *,
    peak_ratio: float = DEFAULT_PEAK_RATIO,
    k: int = 5,
    rank: Ranking = "phase",
    neighbourhood: int = DEFAULT_NEIGHBOURHOOD,
    min_count: int = DEFAULT_SENSE_MIN_COUNT,
    progress: Optional[ProgressCallback] = None,
) -> list[Polysemy]:
    """The ``top`` most polysemous of the ``among`` most frequent words (rare words have noisy
    spectra): words with two or more senses, by ``Polysemy.score`` (the second sense's
    similarity mass: balance and strength together), then number of senses. ``progress(done,
    total)`` follows the scan of the ``among`` words."""
    if top < 0 or among < 0:
        raise ValueError("top and among must not be negative")
    candidates = list(range(min(among, len(model))))  # ids are in order of descending count
    analyzer = SenseAnalyzer(
        model,
        peak_ratio=peak_ratio,
        k=k,
        rank=rank,
        neighbourhood=neighbourhood,
        min_count=min_count,
    )
    # Ranked on the weights alone; reports are built for the winners only. (Candidates are
    # the ids 0..n-1, so weights[w] is word w's.)
    weights = analyzer.sense_weights(candidates, progress)
    ranked = [w for w in candidates if len(weights[w]) >= 2]
    # The score is Polysemy.score: the second sense's weight per neighbour.
    ranked.sort(key=lambda w: (-(weights[w][1] / neighbourhood), -len(weights[w])))
    return analyzer.senses(ranked[:top])


# --- frequencies ---------------------------------------------------------------------------
@dataclass(frozen=True)
class FrequencySummary:
    """One frequency: how many words use it and the words with the largest amplitude there."""

    frequency: int
    words: int
    top: list[tuple[str, float]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "frequency": self.frequency,
            "words": self.words,
            "top": [{"word": w, "amplitude": a} for w, a in self.top],
        }


def frequency_summaries(model: CSSModel, k: int = 5) -> list[FrequencySummary]:
    """A summary of every frequency 0..D-1 (unused ones have ``words == 0``): its users
    (``CSSModel.frequency_usage``) and its mode (``CSSModel.modes``)."""
    usage = model.frequency_usage()
    return [
        FrequencySummary(f, int(usage[f]), model.modes(f, k) if usage[f] else [])
        for f in range(model.frequency_dim)
    ]


def active_histogram(model: CSSModel) -> np.ndarray:
    """``h[n]`` = how many words have exactly ``n`` active frequencies, ``n`` in 0..K."""
    return np.bincount(model.active_counts(), minlength=model.max_frequencies + 1)


# --- model information ---------------------------------------------------------------------
@dataclass(frozen=True)
class ModelInfo:
    """What ``css-rs info`` shows: shape, sparsity, and the training summary if present."""

    path: str
    file_size: int
    vocab_size: int
    frequency_dim: int
    max_frequencies: int
    avg_active: float
    active_histogram: list[int]
    frequencies_used: int
    effective_frequencies: float
    largest_share: float
    crowded_frequencies: int
    metadata_path: Optional[str]
    training: Optional[dict[str, Any]]
    metadata_error: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def model_info(model: CSSModel, path: str | os.PathLike[str]) -> ModelInfo:
    """Describes ``model`` loaded from ``path``, with the summary of its metadata file (beside
    the model) when there is one; an unreadable metadata file is reported, not fatal."""
    meta = metadata_path(path)
    usage = model.usage_stats()
    training, error = None, None
    if meta.is_file():
        try:
            document = orjson.loads(meta.read_bytes())
            if not isinstance(document, dict):
                raise TypeError("not a JSON object")
            error = _metadata_mismatch(document, path, meta)
            if error is None:
                training = training_summary(document)
        except (orjson.JSONDecodeError, OSError, TypeError, AttributeError, ValueError) as e:
            error = f"{meta}: unreadable ({' '.join(str(e).split())})"
    return ModelInfo(
        path=str(path),
        file_size=Path(path).stat().st_size,
        vocab_size=len(model),
        frequency_dim=model.frequency_dim,
        max_frequencies=model.max_frequencies,
        avg_active=model.avg_active(),
        active_histogram=[int(n) for n in active_histogram(model)],
        frequencies_used=usage.in_use,
        effective_frequencies=usage.effective,
        largest_share=usage.largest_share,
        crowded_frequencies=usage.crowded,
        metadata_path=str(meta) if meta.is_file() else None,
        training=training,
        metadata_error=error,
    )


def _metadata_mismatch(
    document: dict[str, Any], path: str | os.PathLike[str], meta: Path
) -> Optional[str]:
    """Why the metadata beside a model does not describe it (its ``model_sha256`` is another
    file's: a save interrupted between the two renames, a model copied over by hand), or None.
    Metadata of versions that did not record the checksum is taken as it is."""
    recorded = document.get("model_sha256")
    if recorded is None:
        return None
    if not isinstance(recorded, str) or recorded != sha256_of(path):
        return (
            f"{meta} describes another model file (its model_sha256 does not match "
            f"{Path(path).name}); not shown"
        )
    return None


def _figure(value: Any) -> Any:
    """A number from a metadata file, or None (booleans and other types are not figures)."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def training_summary(metadata: dict[str, Any]) -> dict[str, Any]:
    """The figures of a metadata file worth a glance (missing or malformed ones are None)."""

    def section(value: Any) -> dict[str, Any]:
        return value if isinstance(value, dict) else {}

    stats = section(metadata.get("stats"))
    progress = section(metadata.get("dataset_progress"))
    epochs = stats.get("epochs")
    epochs = [e for e in epochs if isinstance(e, dict)] if isinstance(epochs, list) else []
    text = {k: metadata.get(k) for k in ("timestamp", "css_rs_version")}
    source = progress.get("description") or progress.get("source")
    return {
        **{k: v if isinstance(v, str) else None for k, v in text.items()},
        "source": source if isinstance(source, str) else None,
        "documents": _figure(stats.get("documents")),
        "tokens": _figure(stats.get("tokens")),
        "epochs": len(epochs),
        "final_loss": _figure(epochs[-1].get("loss")) if epochs else None,
        "elapsed_seconds": _figure(stats.get("elapsed")),
        "training_tokens_per_second": _figure(stats.get("training_tokens_per_second")),
    }


# --- export --------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """``persistence.atomic_writer`` for exports. A path where the file cannot be created at
    all (a directory, a missing permission, a file where a folder should be) raises
    InputError; other failures (a full disk) stay OSError."""
    target = Path(path)
    if target.is_dir():
        raise InputError(f"{target}: is a directory, not an output file")
    try:
        with atomic_writer(target) as fh:
            yield fh
    except (PermissionError, NotADirectoryError, FileExistsError) as e:
        raise InputError(f"{target}: cannot write there ({e.strerror or e})") from None


def amplitude_matrix(model: CSSModel) -> np.ndarray:
    """``V x D`` float32 amplitudes ``|z|`` (the phase-free, real view of the spectra)."""
    return np.abs(model.to_dense(complex=True)).astype(np.float32)


def check_words_for(fmt: str, words: Sequence[str]) -> None:
    """Raises InputError for a word the format cannot hold: word2vec lines are split on
    whitespace, vocabulary files on line breaks. The tokenizer never makes such words, but a
    model from elsewhere may hold them."""
    line_based = fmt in ("word2vec", "word2vec-binary")
    for i, word in enumerate(words):
        broken = not word or (word.split() != [word] if line_based else word.splitlines() != [word])
        if broken:
            what = "whitespace" if line_based else "a line break"
            raise InputError(
                f"word {word!r} (id {i}) is empty or contains {what}: the {fmt} format cannot "
                "hold it; use --format npz"
            )


def write_word2vec(
    model: CSSModel, out: str | os.PathLike[str], *, binary: bool = False, real: bool = False
) -> Path:
    """word2vec text or binary format (gensim ``KeyedVectors.load_word2vec_format``): vectors
    are ``[re..., im...]`` (2D floats), or amplitudes (D floats) with ``real``. For the
    ``[re, im]`` layout the real cosine equals the complex cosine."""
    fmt = "word2vec-binary" if binary else "word2vec"
    check_words_for(fmt, model.words)
    vectors = amplitude_matrix(model) if real else model.to_dense(complex=False)
    vectors = np.ascontiguousarray(vectors, dtype="<f4")
    with atomic_output(out) as fh:
        fh.write(f"{vectors.shape[0]} {vectors.shape[1]}\n".encode())
        if binary:
            for word, row in zip(model.words, vectors):
                fh.write(word.encode("utf-8") + b" " + row.tobytes() + b"\n")
        else:
            # %.9g round-trips float32 exactly, so neighbours are the same after reading back.
            line = " ".join(["%.9g"] * vectors.shape[1])
            for word, row in zip(model.words, vectors):
                fh.write(f"{word} {line % tuple(row.tolist())}\n".encode())
    return Path(out)


def vocab_path_for(out: str | os.PathLike[str]) -> Path:
    """``emb.npy`` -> ``emb.vocab.txt`` (one word per line, row order)."""
    return Path(out).with_suffix(".vocab.txt")


def write_npy(model: CSSModel, out: str | os.PathLike[str], *, real: bool = False) -> list[Path]:
    """The dense matrix (complex64 ``V x D``, or float32 amplitudes with ``real``) as ``.npy``
    plus the vocabulary file beside it; returns both paths."""
    check_words_for("npy", model.words)
    matrix = amplitude_matrix(model) if real else model.to_dense(complex=True)
    vocab = vocab_path_for(out)
    if vocab == Path(out):
        raise InputError(f"{out}: the matrix and its vocabulary file would share this name")
    with atomic_output(out) as fh:
        np.save(fh, matrix, allow_pickle=False)
    with atomic_output(vocab) as fh:
        fh.write("".join(f"{w}\n" for w in model.words).encode("utf-8"))
    return [Path(out), vocab]


def write_npz(model: CSSModel, out: str | os.PathLike[str]) -> Path:
    """The sparse spectra in CSR layout: ``indptr`` (V+1), ``frequencies`` (the column indices),
    ``amplitudes``, ``phases``, ``words``, ``counts``, ``frequency_dim``, ``max_frequencies``.
    ``scipy.sparse.csr_matrix((amplitudes * exp(1j * phases), frequencies, indptr))`` rebuilds
    the complex matrix; no pickles are needed to read it."""
    freq, amp, phase = model.slot_arrays()
    active = freq != EMPTY_FREQUENCY  # slots are sorted by frequency, empty ones last
    counts = model.vocab.counts
    arrays = {
        "indptr": np.concatenate([[0], np.cumsum(active.sum(axis=1))]).astype(np.int64),
        "frequencies": freq[active].astype(np.uint16),
        "amplitudes": amp[active].astype(np.float32),
        "phases": phase[active].astype(np.float32),
        "words": np.array(model.words, dtype=str),
        "counts": np.array([counts[w] for w in model.words], dtype=np.int64),
        "frequency_dim": np.int64(model.frequency_dim),
        "max_frequencies": np.int64(model.max_frequencies),
    }
    with atomic_output(out) as fh:
        np.savez_compressed(fh, **arrays)
    return Path(out)


def export(
    model: CSSModel, out: str | os.PathLike[str], fmt: str, *, real: bool = False
) -> list[Path]:
    """Writes ``model`` to ``out`` in ``fmt`` (one of EXPORT_FORMATS); returns the files written."""
    if fmt not in EXPORT_FORMATS:
        raise InputError(
            f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}"
        )
    if fmt == "npz" and real:
        raise InputError("--real does not apply to npz: it stores amplitudes and phases")
    outputs = [Path(out), vocab_path_for(out)] if fmt == "npy" else [Path(out)]
    for path in outputs:  # before writing either file of a pair
        check_output_path(path)
    if fmt == "npz":
        return [write_npz(model, out)]
    if fmt == "npy":
        return write_npy(model, out, real=real)
    return [write_word2vec(model, out, binary=fmt == "word2vec-binary", real=real)]


# --- plots ---------------------------------------------------------------------------------
def _new_figure(width: float, height: float) -> Any:
    """A matplotlib Figure on the Agg canvas (no GUI backend, no pyplot global state). The
    import is lazy: matplotlib is the ``plot`` extra."""
    try:
        # The package itself first: an absent or broken one fails here, whatever submodules
        # an earlier import left cached.
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingDependencyError(
            f"plotting needs matplotlib, which is not installed: {PLOT_INSTALL_HINT}"
        ) from None
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save_figure(fig: Any, out: str | os.PathLike[str]) -> Path:
    kind = Path(out).suffix.lstrip(".").lower()
    supported = fig.canvas.get_supported_filetypes()
    if kind not in supported:
        raise InputError(
            f"{out}: cannot tell the image format from the suffix; use one of "
            + ", ".join(f".{s}" for s in sorted(supported))
        )
    buffer = io.BytesIO()
    fig.savefig(buffer, format=kind)
    with atomic_output(out) as fh:
        fh.write(buffer.getvalue())
    return Path(out)


def plot_spectra(model: CSSModel, words: Sequence[str], out: str | os.PathLike[str]) -> Path:
    """One stem plot per word, amplitude against frequency, phase as colour (cyclic colormap,
    with a colorbar). Unknown words raise UnknownWordError before anything is drawn."""
    if not words:
        raise InputError("name at least one word to plot")
    spectra = {w: model.spectrum(w) for w in words}
    fig = _new_figure(10.0, 1.2 + 1.9 * len(words))
    axes = fig.subplots(len(words), 1, sharex=True, squeeze=False)[:, 0]
    scatter = None
    for ax, (word, entries) in zip(axes, spectra.items()):
        scatter = _stem(ax, entries, model.frequency_dim)
        ax.set_title(f"{word}  ({len(entries)} active)", loc="left", fontsize=10)
        ax.set_ylabel("amplitude")
    axes[-1].set_xlabel("frequency")
    ticks = [-math.pi, -math.pi / 2, 0.0, math.pi / 2, math.pi]
    bar = fig.colorbar(scatter, ax=list(axes), ticks=ticks, shrink=0.9)
    bar.ax.set_yticklabels(["-π", "-π/2", "0", "π/2", "π"])
    bar.set_label("phase (rad)")
    return _save_figure(fig, out)


def _stem(ax: Any, entries: list[tuple[int, float, float]], frequency_dim: int) -> Any:
    """Stems coloured by phase; returns the scatter (the colorbar's mappable)."""
    import matplotlib

    cmap = matplotlib.colormaps[PHASE_COLORMAP]
    norm = matplotlib.colors.Normalize(vmin=-math.pi, vmax=math.pi)
    freqs = [f for f, _, _ in entries]
    amps = [a for _, a, _ in entries]
    phases = [p for _, _, p in entries]
    ax.vlines(freqs, 0, amps, colors=cmap(norm(phases)), linewidth=2)
    scatter = ax.scatter(freqs, amps, c=phases, cmap=cmap, norm=norm, s=30, zorder=3)
    ax.axhline(0, color="0.6", linewidth=0.8)
    ax.set_xlim(-0.5, frequency_dim - 0.5)
    ax.set_ylim(0, max(amps, default=1.0) * 1.15)
    return scatter


def plot_overview(model: CSSModel, out: str | os.PathLike[str]) -> Path:
    """Two panels: how many words have n active frequencies, and how many words use each
    frequency."""
    fig = _new_figure(10.0, 6.5)
    top, bottom = fig.subplots(2, 1)
    hist = active_histogram(model)
    top.bar(np.arange(len(hist)), hist, color="tab:blue")
    if len(hist) <= 33:  # one tick per count while they fit
        top.set_xticks(np.arange(len(hist)))
    top.set_xlabel("active frequencies per word")
    top.set_ylabel("words")
    top.set_title(
        f"{len(model):,} words, D = {model.frequency_dim}, K = {model.max_frequencies}, "
        f"{model.avg_active():.2f} active on average",
        loc="left",
        fontsize=10,
    )
    usage = model.frequency_usage()
    spread = model.usage_stats()
    bottom.bar(np.arange(len(usage)), usage, width=1.0, color="tab:orange")
    # Log scale: a collapsed model has a few frequencies used by every word and the rest by a
    # handful, which a linear axis shows as a few bars and nothing else.
    bottom.set_yscale("log")
    bottom.axhline(
        0.15 * len(model), color="tab:red", linewidth=0.8, linestyle="--", label="15% of the words"
    )
    bottom.legend(loc="upper right", fontsize=8)
    bottom.set_xlim(-0.5, model.frequency_dim - 0.5)
    bottom.set_xlabel("frequency")
    bottom.set_ylabel("words using it (log)")
    bottom.set_title(
        f"{spread.in_use} frequencies in use, effective number {spread.effective:.1f}, "
        f"largest share {spread.largest_share:.0%}",
        loc="left",
        fontsize=10,
    )
    return _save_figure(fig, out)
