"""css-rs: Compressive Semantic Spectroscopy, sparse spectral word embeddings with a Rust core.

Every word is a sparse complex spectrum: a few active frequencies out of ``frequency_dim``,
each with an amplitude and a phase. The Rust core tokenizes, counts and trains; this package
streams data, configures, checkpoints and presents.
"""

from __future__ import annotations

from css_rs._core import Tokenizer, Vocabulary, __version__

__all__ = ["Tokenizer", "Vocabulary", "__version__"]
