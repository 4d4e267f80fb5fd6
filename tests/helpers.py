"""Plain helpers shared by several suites (a module, not a conftest: tests import it)."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from css_rs.config import resolve_config
from css_rs.pipeline import TrainingRun
from css_rs.reporter import Reporter


def train_in_process(folder: Path, settings: Mapping[str, Any], **changes: Any) -> str:
    """One ``css-rs train`` in-process with ``settings`` (then ``changes``), its files under
    ``folder``; returns what it printed."""
    flags = {
        **settings,
        "checkpoint_path": str(folder / "checkpoints" / "training_checkpoint.json"),
        "model_path": str(folder / "models" / "css_model.json"),
        **changes,
    }
    out = io.StringIO()
    TrainingRun(resolve_config(None, flags, {}), Reporter(out, live=False)).run()
    return out.getvalue()


def paths_of(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path into a JSON-like value (dicts and lists), for fuzzing one field at a time."""
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths_of(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += paths_of(v, (*prefix, i))
    return out
