"""Senses: a word's peaks, their sense neighbours, and groups of neighbours that are one sense.

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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Optional

import numpy as np

from css_rs import _core

if TYPE_CHECKING:
    from css_rs.model import CSSModel

Ranking = Literal["phase", "amplitude"]
RANKINGS: tuple[str, ...] = ("phase", "amplitude")

# A peak is an entry with at least this fraction of the word's strongest amplitude.
DEFAULT_PEAK_RATIO = 0.25
# Senses are drawn from this many nearest neighbours of a word.
DEFAULT_NEIGHBOURHOOD = 20
# Neighbours are one sense when their mean mutual cosine is at least this fraction of the word's
# mean cosine with them: one sense's neighbours are about as close to each other as to the word
# (0.9 vs 0.6 for 'bank' on the synthetic corpus), two senses' are not (-0.1). Spectra pruned
# in refinement (the defaults since the seventh session) need a little less: on 3 gcide models
# 0.45 split 4.7 of 16 unambiguous controls where 0.5 split 5.7, finding both senses of as many
# ambiguous words (11.3 of 43).
DEFAULT_MERGE_RATIO = 0.45
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
        words, counts = self.model.words, self.model.counts
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
            reports.append(Polysemy(word, peaks, senses, int(counts[w]), self.neighbourhood))
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
    seen = _frequent_words(model, min_count)
    return None if seen == len(model) else max(2, seen)


def _frequent_words(model: CSSModel, min_count: int) -> int:
    """How many words, from id 0, were seen at least ``min_count`` times (ids run by
    descending count): every word when the model carries no counts."""
    seen = model.counts
    if min_count <= 1 or not seen.any() or seen.min() >= min_count:
        return len(model)
    return int(np.argmax(seen < min_count))


def polysemy_candidates(
    model: CSSModel, among: int, min_count: int = DEFAULT_SENSE_MIN_COUNT
) -> int:
    """How many words ``most_polysemous`` analyses: the ``among`` most frequent, but none
    seen fewer than ``min_count`` times (ids ``0..n-1``)."""
    return min(among, _frequent_words(model, min_count))


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
    """The ``top`` most polysemous of the ``among`` most frequent words: words with two or more
    senses, by ``Polysemy.score`` (the second sense's similarity mass: balance and strength
    together), then number of senses. Words seen fewer than ``min_count`` times are not
    analysed at all, as they are never neighbours nor sense members: their noisy spectra land
    near anything and would fill the ranking with noise (``polysemy_candidates`` says how
    many words are left); ``CSSModel.polysemy`` still reports any word. ``progress(done,
    total)`` follows the scan of those words."""
    if top < 0 or among < 0:
        raise ValueError("top and among must not be negative")
    # Ids run by descending count: the candidates are the first ids.
    candidates = list(range(polysemy_candidates(model, among, min_count)))
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
