"""Analysis of a trained model, for scripts and notebooks as much as for the CLI (which only
formats what these return): senses and the most polysemous words (``senses``), per-frequency
summaries (``frequencies``), writers for other tools (``export``) and plots (``plots``)."""

from __future__ import annotations

from css_rs.analysis.export import (
    EXPORT_FORMATS,
    amplitude_matrix,
    export,
    vocab_path_for,
    write_npy,
    write_npz,
    write_word2vec,
)
from css_rs.analysis.frequencies import FrequencySummary, active_histogram, frequency_summaries
from css_rs.analysis.plots import PLOT_INSTALL_HINT, plot_overview, plot_spectra
from css_rs.analysis.senses import (
    DEFAULT_MERGE_RATIO,
    DEFAULT_MIN_SHARE,
    DEFAULT_MODE_SHARE,
    DEFAULT_NEIGHBOURHOOD,
    DEFAULT_PEAK_RATIO,
    DEFAULT_SENSE_MIN_COUNT,
    RANKINGS,
    Peak,
    Polysemy,
    ProgressCallback,
    Ranking,
    Sense,
    SenseAnalyzer,
    most_polysemous,
    polysemy_candidates,
)
from css_rs.errors import MissingDependencyError

__all__ = [
    "DEFAULT_MERGE_RATIO",
    "DEFAULT_MIN_SHARE",
    "DEFAULT_MODE_SHARE",
    "DEFAULT_NEIGHBOURHOOD",
    "DEFAULT_PEAK_RATIO",
    "DEFAULT_SENSE_MIN_COUNT",
    "EXPORT_FORMATS",
    "PLOT_INSTALL_HINT",
    "RANKINGS",
    "FrequencySummary",
    "MissingDependencyError",
    "Peak",
    "Polysemy",
    "ProgressCallback",
    "Ranking",
    "Sense",
    "SenseAnalyzer",
    "active_histogram",
    "amplitude_matrix",
    "export",
    "frequency_summaries",
    "most_polysemous",
    "plot_overview",
    "plot_spectra",
    "polysemy_candidates",
    "vocab_path_for",
    "write_npy",
    "write_npz",
    "write_word2vec",
]
