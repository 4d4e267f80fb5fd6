"""Training from Python: a thin driver around the Rust trainer.

The Rust side trains in slices of about ``interval`` seconds with the GIL released; between
slices this module reports progress, writes checkpoints when asked, and lets Ctrl+C through
(``KeyboardInterrupt`` surfaces within one slice, and the trainer stays consistent, so its
``state()`` and ``model()`` can still be saved).
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Iterable
from typing import Any, Callable, Optional, Union

import numpy as np
import numpy.typing as npt

from css_rs import _core
from css_rs._core import Progress, TrainingState, Vocabulary
from css_rs.config import TrainConfig
from css_rs.model import CSSModel

# What ``train`` and ``Trainer`` take: encoded ids and document offsets, or texts to encode.
# (Not a corpus class: the engine's view of ids is Rust's ``trainer::Corpus``, and the
# pipeline's memory-mapped cache is ``pipeline.EncodedCorpus``.)
TrainingInput = Union[
    tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64]],
    Iterable[str],
]

# ALGORITHM.md: training must never collapse silently, neither to empty spectra nor onto a
# few frequencies shared by every word (a dense embedding in disguise).
EMPTY_WORDS_WARNING_SHARE = 0.10
CROWDED_EFFECTIVE_FRACTION = 0.10


def untrained_loss(config: TrainConfig) -> float:
    """The loss per position of a model that knows nothing (every spectrum product 0): what a
    reported loss is to be read against. Logistic: ``softplus(b) + negatives * softplus(-b)``
    with ``b = score_bias`` ((1 + negatives) ln 2 without a bias); hinge: negatives x margin."""
    if config.loss == "hinge":
        return config.negative_count * config.margin
    b = config.score_bias
    return _softplus(b) + config.negative_count * _softplus(-b)


def _softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def collapse_warnings(epoch_stats: list[dict[str, Any]], vocab_size: int, d: int) -> list[str]:
    """What went wrong with the spectra by the last epoch: words that lost every entry, or
    an effective number of frequencies below D/10. Empty when training went well."""
    if not epoch_stats or vocab_size == 0:
        return []
    last = epoch_stats[-1]
    out = []
    share = int(last.get("empty_words", 0)) / vocab_size
    if share > EMPTY_WORDS_WARNING_SHARE:
        out.append(
            f"{share:.0%} of the vocabulary lost every active frequency; lower "
            "sparsity_penalty or the prune thresholds, or raise learning_rate"
        )
    effective = float(last.get("effective_frequencies", 0.0))
    if 0.0 < effective < CROWDED_EFFECTIVE_FRACTION * d:
        out.append(
            f"the spectra collapsed onto few frequencies: effective number {effective:.1f} of "
            f"{d} (largest share {float(last.get('largest_share', 0.0)):.0%} of the "
            "vocabulary); modes and polysemy will mean little: raise balance_gamma"
        )
    return out


def as_corpus(corpus: TrainingInput, vocab: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, offsets)`` arrays (uint32, int64, contiguous; memory maps stay memory maps),
    or a list of texts encoded with ``vocab``."""
    if isinstance(corpus, tuple) and len(corpus) == 2 and not isinstance(corpus[0], str):
        ids = np.ascontiguousarray(corpus[0], dtype=np.uint32)
        offsets = np.ascontiguousarray(corpus[1], dtype=np.int64)
        if ids.ndim != 1 or offsets.ndim != 1:
            raise ValueError("corpus ids and offsets must be one-dimensional arrays")
        return ids, offsets
    if isinstance(corpus, str):
        raise TypeError("corpus must be (ids, offsets) or an iterable of texts, not a single str")
    return vocab.encode_batch(list(corpus))


class Trainer:
    """Trains a CSS model on a corpus; resumable from a ``TrainingState``."""

    def __init__(
        self,
        corpus: TrainingInput,
        vocab: Vocabulary,
        config: Optional[TrainConfig] = None,
        *,
        state: Optional[TrainingState] = None,
    ) -> None:
        self.config = config or TrainConfig()
        self.vocab = vocab
        ids, offsets = as_corpus(corpus, vocab)
        settings = json.dumps(self.config.engine_settings())
        self._core = _core.Trainer(ids, offsets, vocab, settings, state)
        self.corpus_tokens = int(ids.shape[0])
        self.corpus_documents = int(offsets.shape[0]) - 1

    def step(self, seconds: float = 0.5) -> Progress:
        """Trains for about ``seconds`` (GIL released) and reports."""
        return self._core.step(seconds)

    @property
    def progress(self) -> Progress:
        return self._core.progress()

    @property
    def done(self) -> bool:
        return bool(self._core.done)

    @property
    def epoch_stats(self) -> list[dict[str, Any]]:
        """Per finished epoch: epoch, loss, avg_active, empty_words, tokens, positions,
        negative_updates, seconds."""
        return list(self._core.epoch_stats())

    def state(self) -> TrainingState:
        return self._core.state()

    def model(self) -> CSSModel:
        """The current spectra as a model (consistent at any time between steps)."""
        stats = {"epochs": self.epoch_stats, "corpus_tokens": self.corpus_tokens}
        return CSSModel(self._core.snapshot(), self.vocab, self.config, stats=stats)

    def run(
        self,
        callback: Optional[Callable[[Progress], Any]] = None,
        *,
        interval: float = 0.5,
        checkpoint_every_seconds: Optional[float] = None,
        on_checkpoint: Optional[Callable[[TrainingState], Any]] = None,
    ) -> CSSModel:
        """Trains to the end, calling ``callback(progress)`` about every ``interval`` seconds
        and ``on_checkpoint(state)`` every ``checkpoint_every_seconds``."""
        last_checkpoint = time.monotonic()
        while not self.done:
            progress = self.step(interval)
            if callback is not None:
                callback(progress)
            due = checkpoint_every_seconds is not None and (
                time.monotonic() - last_checkpoint >= checkpoint_every_seconds
            )
            if on_checkpoint is not None and due and not self.done:
                on_checkpoint(self.state())
                last_checkpoint = time.monotonic()
        self._warn_if_collapsed()
        return self.model()

    def _warn_if_collapsed(self) -> None:
        d = self.config.frequency_dim
        for message in collapse_warnings(self.epoch_stats, len(self.vocab), d):
            warnings.warn(message, RuntimeWarning, stacklevel=3)


def train(
    corpus: TrainingInput,
    vocab: Vocabulary,
    config: Optional[TrainConfig] = None,
    *,
    callback: Optional[Callable[[Progress], Any]] = None,
    state: Optional[TrainingState] = None,
) -> CSSModel:
    """Trains a model on ``corpus`` ((ids, offsets) or texts) over ``vocab``.

    ``callback(progress)`` is called from this thread about every 0.5 s. Ctrl+C raises
    ``KeyboardInterrupt`` within a second; use ``Trainer`` directly to keep the partial run.
    """
    return Trainer(corpus, vocab, config, state=state).run(callback)
