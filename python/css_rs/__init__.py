"""css-rs: Compressive Semantic Spectroscopy, sparse spectral word embeddings with a Rust core.

Every word is a sparse complex spectrum: a few active frequencies out of ``frequency_dim``,
each with an amplitude and a phase. The Rust core tokenizes, counts and trains; this package
streams data, configures, checkpoints and presents.
"""

from __future__ import annotations

# First, and standard library only: Ctrl+C while the rest loads (see _startup).
from css_rs import (
    _startup,  # noqa: F401
    synthetic,
)
from css_rs._core import Tokenizer, Vocabulary, __version__
from css_rs.analysis import Polysemy
from css_rs.config import TrainConfig
from css_rs.errors import CssRsError, InputError
from css_rs.model import CSSModel, PairsEvaluation, UnknownWordError, load
from css_rs.training import Progress, Trainer, TrainingState, train

__all__ = [
    "CSSModel",
    "CssRsError",
    "InputError",
    "PairsEvaluation",
    "Polysemy",
    "Progress",
    "Tokenizer",
    "TrainConfig",
    "Trainer",
    "TrainingState",
    "UnknownWordError",
    "Vocabulary",
    "__version__",
    "load",
    "synthetic",
    "train",
]
