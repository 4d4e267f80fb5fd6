"""The training pipeline in-process: full disks, resume plans, progress output.

A full disk is simulated by making ``os.fsync`` fail with ENOSPC for chosen files (found by
their descriptor's path): that is where a real full disk surfaces for delayed allocation, and
every css-rs write goes through an fsync before its rename.
"""

from __future__ import annotations

import errno
import io
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from css_rs import pipeline
from css_rs.checkpoint import Checkpoint, CheckpointStore
from css_rs.config import TrainConfig
from css_rs.errors import CssRsError
from css_rs.pipeline import ResumePlan
from css_rs.reporter import Reporter, format_count, format_rate, format_seconds
from helpers import train_in_process

SETTINGS = {
    "threads": 1,
    "synthetic_documents": 400,
    "batch_size": 20,
    "max_batches": None,
    "save_checkpoint_every": 4,
    "min_word_freq": 2,
    "epochs": 2,
    # Checkpoints at every 4th batch: no time floor between streaming checkpoints.
    "checkpoint_every_seconds": 1e-6,
}

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")


def run_training(folder: Path, **changes: Any) -> str:
    return train_in_process(folder, SETTINGS, **changes)


def model_spectra(folder: Path) -> Any:
    return json.loads((folder / "models" / "css_model.json").read_text())["spectra"]


def fail_fsync_when(monkeypatch: pytest.MonkeyPatch, predicate: Callable[[str], bool]) -> None:
    """Makes ``os.fsync`` raise ENOSPC for files whose path satisfies ``predicate``."""
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if predicate(os.readlink(f"/proc/self/fd/{fd}")):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("reference")
    run_training(folder, seed=2)
    return model_spectra(folder)


def test_full_disk_while_saving_the_model_keeps_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reference: Any
) -> None:
    run_training(tmp_path, seed=1)
    model = tmp_path / "models" / "css_model.json"
    previous = model.read_bytes()
    fail_fsync_when(monkeypatch, lambda path: ".css_model.json." in path)
    with pytest.raises(OSError) as err:
        run_training(tmp_path, seed=2)
    assert err.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert model.read_bytes() == previous
    assert not [p for p in model.parent.iterdir() if p.name.endswith(".tmp")]
    # The checkpoint holds the finished training: the next run only saves.
    store = CheckpointStore(tmp_path / "checkpoints" / "training_checkpoint.json")
    assert store.load().phase == "training"
    out = run_training(tmp_path, seed=2)
    assert "Restored training state from checkpoint" in out
    assert model_spectra(tmp_path) == reference


def test_full_disk_while_checkpointing_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reference: Any
) -> None:
    manifests = {"written": 0}

    def third_manifest(path: str) -> bool:
        if ".training_checkpoint.json." not in path:
            return False
        manifests["written"] += 1
        return manifests["written"] == 3

    fail_fsync_when(monkeypatch, third_manifest)
    with pytest.raises(OSError) as err:
        run_training(tmp_path, seed=2)
    assert err.value.errno == errno.ENOSPC
    monkeypatch.undo()
    store = CheckpointStore(tmp_path / "checkpoints" / "training_checkpoint.json")
    checkpoint = store.load()  # the second one, intact
    assert checkpoint.stream["batches"] == 8
    run_training(tmp_path, seed=2)
    assert model_spectra(tmp_path) == reference


def test_progress_without_a_terminal_is_plain_lines(tmp_path: Path) -> None:
    out = run_training(tmp_path)
    assert "\x1b[" not in out
    streaming = [line for line in out.splitlines() if line.startswith("Streaming: ")]
    assert streaming and "100.0%" in streaming[-1] and "docs/s" in streaming[-1]
    training = [line for line in out.splitlines() if line.startswith("Training: ")]
    assert training and "epoch 2/2" in training[-1] and "tokens/s" in training[-1]
    assert "Epoch 1/2: loss" in out and "Epoch 2/2: loss" in out


def test_epochs_report_the_spread_and_a_collapse_is_warned(tmp_path: Path) -> None:
    """The effective number of frequencies is in every epoch line and in the metadata, and a
    run whose words pile onto a few frequencies says so."""
    out = run_training(tmp_path / "spread")
    meta = json.loads((tmp_path / "spread" / "models" / "css_model.metadata.json").read_text())
    last = meta["stats"]["epochs"][-1]
    assert f"effective number {last['effective_frequencies']:.1f}/200" in out
    assert last["effective_frequencies"] > 100 and "collapsed" not in out
    # The loss is shown against what a model that knows nothing scores (score_bias 2).
    assert "(untrained 2.7616)" in out and last["loss"] < 2.7616
    # Plain top-K selection on a corpus large enough to learn from: every word ends on the
    # same few of the 400 frequencies.
    plain = {"balance_gamma": 0.0, "score_bias": 0.0, "max_frequencies": 8, "learning_rate": 0.3}
    bigger = {"frequency_dim": 400, "synthetic_documents": 2000, "sample": 1e-3}
    collapsed = run_training(tmp_path / "plain", **plain, **bigger)
    assert "warning: the spectra collapsed onto few frequencies: effective number" in collapsed


def test_progress_on_a_terminal_draws_bars() -> None:
    out = io.StringIO()
    reporter = Reporter(out, live=True)
    with reporter.task("Streaming", total=10) as bar:
        for i in range(1, 11):
            bar.update(i, f"{i} docs")
    assert "Streaming" in out.getvalue() and "10 docs" in out.getvalue()


def test_formatting() -> None:
    assert format_count(1234567) == "1,234,567"
    assert format_rate(12345.6) == "12.3K" and format_rate(2.5e6) == "2.5M"
    assert format_seconds(3.21) == "3.2s" and format_seconds(75) == "1m15s"
    assert format_seconds(3 * 3600 + 120) == "3h02m"


def checkpoint_of(phase: str, config: TrainConfig, *, complete: bool, state: bool) -> Checkpoint:
    from css_rs.checkpoint import FileRecord

    files = {"vocabulary": FileRecord("vocabulary.1.json", 1, "x")}
    if state:
        files["state"] = FileRecord("state.1.bin", 1, "x")
    return Checkpoint(phase, config.to_dict(), {"complete": complete}, files=files)


@pytest.mark.parametrize(
    ("phase", "complete", "state", "changes", "expected"),
    [
        ("streaming", False, False, {}, (True, False, False)),
        ("streaming", True, False, {}, (False, False, False)),
        ("training", True, True, {}, (False, True, True)),
        ("training", True, False, {}, (False, True, False)),
        ("training", True, True, {"keep_backups": 1}, (False, True, True)),
        ("training", True, True, {"threads": 4}, (False, True, False)),
        ("training", True, True, {"epochs": 2}, (False, True, False)),
        ("training", True, True, {"min_word_freq": 2}, (False, False, False)),
        ("training", True, True, {"max_batches": 500}, (True, False, False)),
    ],
)
def test_resume_plan(
    phase: str, complete: bool, state: bool, changes: dict[str, Any], expected: tuple[bool, ...]
) -> None:
    saved = TrainConfig()
    checkpoint = checkpoint_of(phase, saved, complete=complete, state=state)
    plan = ResumePlan.for_checkpoint(checkpoint, saved.replace(**changes))
    assert (plan.stream, plan.corpus, plan.state) == expected


def test_source_failure_keeps_every_batch_received(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reference: Any
) -> None:
    """A source that gives up (network down) after 6 batches: all 6 are kept, not only the 4
    of the last periodic checkpoint, and the next run resumes after them."""
    real_open = pipeline.open_source

    class FailingSource:
        def __init__(self, config: TrainConfig) -> None:
            self.inner = real_open(config)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def iter_batches(self) -> Iterator[Any]:
            for i, batch in enumerate(self.inner.iter_batches()):
                if i == 6:
                    raise CssRsError("dataset server unreachable; run css-rs train again")
                yield batch

    monkeypatch.setattr(pipeline, "open_source", FailingSource)
    with pytest.raises(CssRsError, match="unreachable"):
        run_training(tmp_path, seed=2)
    monkeypatch.undo()
    store = CheckpointStore(tmp_path / "checkpoints" / "training_checkpoint.json")
    assert store.load().stream["batches"] == 6
    run_training(tmp_path, seed=2)
    assert model_spectra(tmp_path) == reference


def test_a_log_is_not_flooded_with_checkpoint_lines(tmp_path: Path) -> None:
    """A checkpoint every batch, of 100 batches: without a terminal the log says so once a
    minute at most and once at the end, not once per checkpoint."""
    out = run_training(tmp_path, save_checkpoint_every=1, batch_size=4)
    saved = [line for line in out.splitlines() if "Checkpoint saved" in line]
    assert 1 <= len(saved) <= 2, saved
    assert "(100 batches, 400 documents)" in saved[-1]
