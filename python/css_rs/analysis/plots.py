"""Plots (matplotlib, an optional extra): word spectra with phase as colour, and an overview of
a whole model."""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from css_rs.analysis.export import atomic_output
from css_rs.analysis.frequencies import active_histogram
from css_rs.errors import InputError, MissingDependencyError

if TYPE_CHECKING:
    from css_rs.model import CSSModel

PLOT_INSTALL_HINT = "pip install 'css-rs[plot]'"
PHASE_COLORMAP = "twilight"  # cyclic: phases -pi and pi get the same colour


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
