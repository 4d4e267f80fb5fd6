"""Plain helpers shared by several suites (a module, not a conftest: tests import it)."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from css_rs.config import resolve_config
from css_rs.pipeline import TrainingRun
from css_rs.reporter import Reporter


def small_run_flags(documents: int) -> list[str]:
    """``css-rs train`` flags for a small synthetic run whose every phase has several moments to
    interrupt: batches of 20 documents, a streaming checkpoint every 4 (and no time floor
    between them), 3 epochs, and word2vec's subsampling of 1e-3 rather than the default 1e-4,
    which would keep ~10% of so small a corpus."""
    return [
        "--threads", "1",
        "--sample", "1e-3",
        "--synthetic-documents", str(documents),
        "--batch-size", "20",
        "--max-batches", "none",
        "--save-checkpoint-every", "4",
        "--min-word-freq", "2",
        "--epochs", "3",
        "--checkpoint-every-seconds", "0.001",
    ]  # fmt: skip


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without the caller's ``CSS_RS_*`` settings, training in short steps
    (so that a signal lands between them), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CSS_RS_")}
    return {**env, "CSS_RS_TEST_STEP_SECONDS": "0.005", **extra}


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
