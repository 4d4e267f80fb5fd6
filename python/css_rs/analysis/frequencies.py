"""Per-frequency summaries (how many words use each frequency, its strongest words) and the
histogram of active frequencies per word."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from css_rs.model import CSSModel


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
