"""``CSSModel``: a trained model and its queries (spectra, similar words, polysemy, semantic
modes, dense export, word-pair evaluation), backed by the Rust query engine."""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from css_rs import _core
from css_rs._core import Vocabulary
from css_rs.analysis import (
    DEFAULT_NEIGHBOURHOOD,
    DEFAULT_PEAK_RATIO,
    DEFAULT_SENSE_MIN_COUNT,
    Polysemy,
    Ranking,
    SenseAnalyzer,
)
from css_rs.config import TrainConfig
from css_rs.errors import InputError
from css_rs.files import atomic_write_bytes
from css_rs.persistence import EMPTY_FREQUENCY, ModelParts, decode_model, encode_model


class UnknownWordError(InputError, KeyError):
    """A word that is not in the model's vocabulary; carries close spellings."""

    def __init__(self, word: str, suggestions: list[str]) -> None:
        self.word = word
        self.suggestions = suggestions
        hint = f"; close spellings: {', '.join(suggestions)}" if suggestions else ""
        super().__init__(f"word {word!r} is not in the vocabulary{hint}")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class UsageStats:
    """How a model's entries spread over its D frequencies."""

    #: frequencies that hold at least one entry
    in_use: int
    #: exp of the entropy of the frequencies' shares of all entries (D if even, ~K if every
    #: word sits on the same K frequencies)
    effective: float
    #: the largest fraction of the vocabulary with an entry on one frequency
    largest_share: float
    #: frequencies held by more than 15% of the vocabulary
    crowded: int


@dataclass(frozen=True)
class PairsEvaluation:
    """Word-pair evaluation, as gensim's ``evaluate_word_pairs`` (plus counts)."""

    path: str
    spearman: float
    pearson: float
    pairs_used: int
    oov_pairs: int

    @property
    def oov_ratio(self) -> float:
        total = self.pairs_used + self.oov_pairs
        return self.oov_pairs / total if total else 0.0


class CSSModel:
    """A trained CSS model: a vocabulary and one sparse complex spectrum per word."""

    def __init__(
        self,
        spectra: _core.Spectra,
        vocab: Vocabulary,
        config: Optional[TrainConfig] = None,
        *,
        stats: Optional[dict[str, Any]] = None,
    ) -> None:
        if spectra.vocab_size != len(vocab):
            raise ValueError(
                f"spectra cover {spectra.vocab_size} words but the vocabulary has {len(vocab)}"
            )
        self._spectra = spectra
        self.vocab = vocab
        self.config = config or TrainConfig(
            max_frequencies=min(spectra.k, 64), frequency_dim=spectra.frequency_dim
        )
        self.stats: dict[str, Any] = dict(stats or {})
        self._words: Optional[list[str]] = None
        self._counts: Optional[np.ndarray] = None

    # --- basics ----------------------------------------------------------------------------
    @property
    def words(self) -> list[str]:
        """Words in id order."""
        if self._words is None:
            self._words = self.vocab.words
        return self._words

    @property
    def counts(self) -> np.ndarray:
        """Corpus counts in id order (descending; 0 where the model carries none), read-only.
        Built once: per-word queries that need counts (``polysemy``'s ``min_count``) would
        otherwise rebuild them from the vocabulary every call."""
        if self._counts is None:
            counts = self.vocab.counts
            self._counts = np.array([counts.get(w, 0) for w in self.words], dtype=np.int64)
            self._counts.flags.writeable = False
        return self._counts

    @property
    def frequency_dim(self) -> int:
        return int(self._spectra.frequency_dim)

    @property
    def max_frequencies(self) -> int:
        return int(self._spectra.k)

    def __len__(self) -> int:
        return len(self.vocab)

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and word in self.vocab

    def __iter__(self) -> Iterator[str]:
        return iter(self.words)

    def __repr__(self) -> str:
        return (
            f"CSSModel({len(self)} words, D={self.frequency_dim}, K={self.max_frequencies}, "
            f"{self.avg_active():.2f} active frequencies per word)"
        )

    def _count(self, k: int) -> int:
        """A number of results: at most the vocabulary (as gensim's ``topn``), never below 0,
        so that ``k = 2**64`` is "all of them" rather than an overflow in the engine."""
        return max(0, min(int(k), len(self)))

    def word_id(self, word: str) -> int:
        """The id of ``word``; raises UnknownWordError with close spellings."""
        i = self.vocab.word_to_id(word) if isinstance(word, str) else None
        if i is None:
            raise UnknownWordError(str(word), self.suggest(str(word)))
        return i

    def suggest(self, word: str, n: int = 5) -> list[str]:
        """Up to ``n`` vocabulary words spelled like ``word``."""
        return difflib.get_close_matches(word.lower(), self.words, n=n, cutoff=0.6)

    def active_counts(self) -> np.ndarray:
        """Active frequencies of each word (uint32, id order)."""
        return np.asarray(self._spectra.active_counts())

    def avg_active(self) -> float:
        counts = self.active_counts()
        return float(counts.mean()) if counts.size else 0.0

    def frequency_usage(self) -> np.ndarray:
        """How many words use each frequency (length D)."""
        return np.asarray(self._spectra.frequency_usage())

    def usage_stats(self) -> UsageStats:
        """How the entries spread over the frequencies: a sparse spectral model uses many
        frequencies evenly; one whose words all sit on the same few is a dense embedding in
        disguise."""
        return UsageStats(*self._spectra.usage_stats())

    def slot_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(freq, amplitude, phase)``, each shaped (V, K); unused slots have freq 0xFFFF."""
        shape = (len(self), self.max_frequencies)
        return (
            np.asarray(self._spectra.freq()).reshape(shape),
            np.asarray(self._spectra.amp()).reshape(shape),
            np.asarray(self._spectra.phase()).reshape(shape),
        )

    # --- queries ---------------------------------------------------------------------------
    def spectrum(self, word: str, top: Optional[int] = None) -> list[tuple[int, float, float]]:
        """``(frequency, amplitude, phase)`` entries of ``word``, strongest first."""
        entries = self._spectra.peaks(self.word_id(word), 0.0)
        return entries if top is None else entries[: max(top, 0)]

    def similarity(self, a: str, b: str) -> float:
        """Complex cosine ``Re<S_a, S_b> / (|S_a| |S_b|)``; 0 if either spectrum is empty."""
        return float(self._spectra.similarity(self.word_id(a), self.word_id(b)))

    def similar(self, word: str, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` most similar words (cosine), best first; parallel over the vocabulary."""
        words = self.words
        found = self._spectra.similar(self.word_id(word), self._count(k))
        return [(words[i], float(s)) for i, s in found]

    def most_similar(
        self,
        positive: Optional[str | list[str]] = None,
        negative: Optional[str | list[str]] = None,
        topn: int = 10,
    ) -> list[tuple[str, float]]:
        """gensim's ``most_similar``: the words closest to the sum of the unit-normalised
        spectra of ``positive`` minus those of ``negative`` (``king - man + woman``), query
        words excluded; in Rust, over the K slots of every word, never a V x D matrix."""
        pos = [positive] if isinstance(positive, str) else list(positive or [])
        neg = [negative] if isinstance(negative, str) else list(negative or [])
        if not pos and not neg:
            raise ValueError("most_similar needs at least one positive or negative word")
        if len(pos) == 1 and not neg:
            return self.similar(pos[0], topn)
        pos_ids = [self.word_id(w) for w in pos]
        neg_ids = [self.word_id(w) for w in neg]
        words = self.words
        found = self._spectra.most_similar(pos_ids, neg_ids, self._count(topn))
        return [(words[i], float(s)) for i, s in found]

    def polysemy(
        self,
        word: str,
        *,
        peak_ratio: float = DEFAULT_PEAK_RATIO,
        k: int = 5,
        rank: Ranking = "phase",
        neighbourhood: int = DEFAULT_NEIGHBOURHOOD,
        min_count: int = DEFAULT_SENSE_MIN_COUNT,
    ) -> Polysemy:
        """The peaks of ``word`` (entries >= ``peak_ratio`` x its strongest), each with its
        ``k`` sense neighbours, and its senses: groups of its ``neighbourhood`` nearest words
        and of its peaks' sense neighbours (``css_rs.analysis.SenseAnalyzer``, in Rust).
        Sense neighbours are ranked by the phase-aligned product ``Re(z_w conj z_u)`` among
        words with a positive cosine with ``word`` (clusters share frequencies and differ by
        phase), or with ``rank="amplitude"`` by the amplitude product. Words seen fewer than
        ``min_count`` times are neither neighbours nor sense members (their spectra are noisy).
        Unknown words raise UnknownWordError."""
        wid = self.word_id(word)
        analyzer = SenseAnalyzer(
            self,
            peak_ratio=peak_ratio,
            k=min(k, len(self)) if k > 0 else k,
            rank=rank,
            neighbourhood=neighbourhood,
            min_count=min_count,
        )
        return analyzer.senses([wid])[0]

    def modes(self, freq: int, k: int = 10) -> list[tuple[str, float]]:
        """Semantic mode ``freq``: the ``k`` words with the largest amplitude there."""
        words = self.words
        if not (isinstance(freq, int) and 0 <= freq < self.frequency_dim):
            raise InputError(
                f"frequency = {freq!r} is invalid: must be in [0, {self.frequency_dim})"
            )
        return [(words[i], float(a)) for i, a in self._spectra.modes(freq, self._count(k))]

    def to_dense(self, complex: bool = True) -> np.ndarray:
        """A dense ``V x D`` complex64 matrix, or ``V x 2D`` float32 ``[re..., im...]``."""
        freq, amp, phase = self.slot_arrays()
        v, d = len(self), self.frequency_dim
        rows, cols = np.nonzero(freq != EMPTY_FREQUENCY)
        values = (amp * np.exp(1j * phase.astype(np.float64))).astype(np.complex64)
        dense = np.zeros((v, d), dtype=np.complex64)
        dense[rows, freq[rows, cols]] = values[rows, cols]
        if complex:
            return dense
        return np.concatenate([dense.real, dense.imag], axis=1).astype(np.float32)

    def evaluate_pairs(self, path: str | os.PathLike[str]) -> PairsEvaluation:
        """Spearman (average ranks for ties) and Pearson between human scores and cosines over
        the pairs of a WordSim-353 / SimLex-style file (tab-separated ``word1 word2 score``;
        ``#`` comments; an optional header line)."""
        pairs = read_word_pairs(path)
        human, model = [], []
        oov = 0
        for a, b, score in pairs:
            if a in self and b in self:
                human.append(score)
                model.append(self.similarity(a, b))
            else:
                oov += 1
        return PairsEvaluation(
            str(path), spearman(human, model), pearson(human, model), len(human), oov
        )

    evaluate_word_pairs = evaluate_pairs

    # --- files -----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes the model JSON atomically (the old file or the new one, never half)."""
        atomic_write_bytes(path, self.to_bytes())

    def to_bytes(self) -> bytes:
        """The model file's contents (JSON), as ``save`` writes them."""
        from css_rs import __version__

        freq, amp, phase = self.slot_arrays()
        parts = ModelParts(
            words=self.words,
            counts=self.counts.tolist(),
            k=self.max_frequencies,
            frequency_dim=self.frequency_dim,
            freq=freq,
            amp=amp,
            phase=phase,
            config=self.config.to_dict(),
            stats=self.stats,
            is_css_rs=True,
        )
        extra = {k: v for k, v in self.stats.items() if k not in ("epochs",)}
        extra["epochs"] = self.stats.get("epochs", [])
        return encode_model(parts, __version__, extra)


def load(path: str | os.PathLike[str]) -> CSSModel:
    """Loads a css-rs model file, or one written by the original JavaScript tool."""
    p = Path(path)
    if not p.is_file():
        if p.exists():  # a folder, a FIFO (reading it would wait forever), a device
            raise InputError(f"{p}: not a regular file, so not a model file")
        raise InputError(f"{p}: no such model file")
    parts = decode_model(p.read_bytes(), str(p))
    vocab = Vocabulary.from_words(parts.words, parts.counts)
    try:
        spectra = _core.Spectra.from_slots(
            parts.k,
            parts.frequency_dim,
            np.ascontiguousarray(parts.freq, dtype=np.uint16),
            np.ascontiguousarray(parts.amp, dtype=np.float32),
            np.ascontiguousarray(parts.phase, dtype=np.float32),
        )
    except InputError as e:
        raise InputError(f"{p}: {e}") from None
    return CSSModel(spectra, vocab, _config_from(parts.config), stats=parts.stats)


def _config_from(values: dict[str, Any]) -> TrainConfig:
    """The saved settings that TrainConfig knows and accepts; others (e.g. the original tool's
    or a newer version's) are left out rather than refusing the model."""
    known = set(TrainConfig.field_names())
    kept = {k: v for k, v in values.items() if k in known}
    try:
        return TrainConfig(**kept)
    except ValueError:
        return TrainConfig(
            max_frequencies=min(int(values["max_frequencies"]), 64),
            frequency_dim=int(values["frequency_dim"]),
        )


def read_word_pairs(path: str | os.PathLike[str]) -> list[tuple[str, str, float]]:
    """``(word1, word2, score)`` triples of a word-pair file, words lowercased."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(f"{p}: no such pairs file") from None
    except UnicodeDecodeError:
        raise InputError(f"{p}: not a UTF-8 text file") from None
    pairs: list[tuple[str, str, float]] = []
    seen_data = False
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cols = line.split("\t") if "\t" in line else line.split()
        score = _parse_score(cols)
        if score is None:
            if not seen_data:  # a header line such as "Word 1<TAB>Word 2<TAB>Human (mean)"
                seen_data = True
                continue
            raise InputError(f"{p}:{number}: expected 'word1<TAB>word2<TAB>score', got {line!r}")
        seen_data = True
        pairs.append((cols[0].strip().lower(), cols[1].strip().lower(), score))
    if not pairs:
        raise InputError(f"{p}: no word pairs found")
    return pairs


def _parse_score(cols: list[str]) -> Optional[float]:
    if len(cols) < 3:
        return None
    try:
        value = float(cols[2])
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def rank_average(values: list[float]) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (as scipy's rankdata)."""
    x = np.asarray(values, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def pearson(a: list[float], b: list[float]) -> float:
    if len(a) < 2:
        return float("nan")
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    x, y = x - x.mean(), y - y.mean()
    denom = math.sqrt(float((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / denom) if denom > 0 else float("nan")


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rho: Pearson correlation of average ranks."""
    if len(a) < 2:
        return float("nan")
    return pearson(list(rank_average(a)), list(rank_average(b)))
