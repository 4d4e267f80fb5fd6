"""A full disk while saving (issue 13, severe 3): failed saves make no backup and prune none,
model and metadata stay a consistent pair, and the error names the file.

The disk is "full" through a fault-injecting writer: ``files._os_write`` (the one
low-level write of every atomically saved file) raises ENOSPC for files in the model's folder.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from css_rs import files
from css_rs.checkpoint import CheckpointStore
from css_rs.cli import app
from css_rs.cli.info import model_info
from css_rs.files import backup_path, list_backups, metadata_path, publish_model
from css_rs.model import load
from helpers import train_in_process

SETTINGS = {
    "threads": 1,
    "synthetic_documents": 200,
    "batch_size": 20,
    "max_batches": None,
    "save_checkpoint_every": 4,
    "min_word_freq": 2,
    "epochs": 1,
    "keep_backups": 2,
}

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")


def run_training(folder: Path, **changes: Any) -> str:
    return train_in_process(folder, SETTINGS, **changes)


def disk_full_for(monkeypatch: pytest.MonkeyPatch, folder: Path, after_bytes: int = 0) -> None:
    """Writes to files in ``folder`` fail with ENOSPC once ``after_bytes`` were written to
    the file (0: the first write fails)."""
    real_write = files._os_write
    written: dict[int, int] = {}

    def write(fd: int, data: Any) -> int:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if Path(path).parent == folder:
            room = after_bytes - written.get(fd, 0)
            if room <= 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            data = memoryview(data)[:room]  # a short write, as a filling disk does
            written[fd] = written.get(fd, 0) + len(data)
        return real_write(fd, data)

    monkeypatch.setattr(files, "_os_write", write)


def folder_state(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_repeated_full_disk_saves_keep_model_metadata_and_backups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "models"
    for seed in (1, 2, 3):  # a model and two backups of earlier ones
        run_training(tmp_path, seed=seed)
    assert len(list_backups(models / "css_model.json")) == 2
    before = folder_state(models)
    for after_bytes in (0, 10_000, 0):
        # A full disk at the first byte, part-way through the model, again at the first byte.
        disk_full_for(monkeypatch, models, after_bytes)
        with pytest.raises(OSError) as caught:
            run_training(tmp_path, seed=4)
        monkeypatch.undo()
        assert caught.value.errno == errno.ENOSPC
        assert str(models / "css_model.json") in str(caught.value)  # the error names the file
        assert folder_state(models) == before  # no new backup, none pruned, no temporary file
    # The checkpoint of the finished training survives the failures: the next run only saves.
    store = CheckpointStore(tmp_path / "checkpoints" / "training_checkpoint.json")
    assert store.load().phase == "training"
    out = run_training(tmp_path, seed=4)
    assert "Restored training state from checkpoint" in out
    backups = list_backups(models / "css_model.json")
    # Pruned to 2 once the save succeeded: the previous model and the one before it.
    assert [b.read_bytes() for b in backups] == [
        before[backups[0].name],
        before["css_model.json"],
    ]


def test_full_disk_on_the_metadata_keeps_the_pair(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "models"
    run_training(tmp_path, seed=1)
    run_training(tmp_path, seed=2)
    before = folder_state(models)
    model_bytes = before["css_model.json"]
    meta = metadata_path(models / "css_model.json")
    # The model file's write goes through; the metadata's (written second) fails.
    real_write = files._os_write

    def write(fd: int, data: Any) -> int:
        if ".css_model.metadata.json." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(files, "_os_write", write)
    with pytest.raises(OSError, match=r"No space left on device.*css_model\.metadata\.json"):
        run_training(tmp_path, seed=3)
    monkeypatch.undo()
    assert folder_state(models) == before
    recorded = json.loads(meta.read_bytes())["model_sha256"]
    assert recorded == hashlib.sha256(model_bytes).hexdigest()


def test_cli_full_disk_is_one_line_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    models = tmp_path / "models"
    models.mkdir()
    disk_full_for(monkeypatch, models)
    result = CliRunner().invoke(
        app, ["train", "--threads", "1", "--synthetic-documents", "100", "--epochs", "1"]
    )
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0]
    assert "models/css_model.json" in lines[0]
    assert list(models.iterdir()) == []


def test_a_backup_identical_to_the_model_is_not_a_new_one(tmp_path: Path) -> None:
    model = tmp_path / "m.json"
    publish_model(model, b'{"v": 1}', keep_backups=2)
    publish_model(model, b'{"v": 2}', keep_backups=2)
    # A run of an earlier version left a backup of the current model (it failed after it).
    earlier = backup_path(model, dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=-1))
    os.link(model, earlier)
    assert len(list_backups(model)) == 2
    publish_model(model, b'{"v": 3}', keep_backups=2)
    contents = [b.read_bytes() for b in list_backups(model)]
    assert contents == [b'{"v": 1}', b'{"v": 2}']  # v1 was not pruned for a duplicate of v2
    # Saving the very same bytes again backs up nothing.
    publish_model(model, b'{"v": 3}', keep_backups=2)
    assert [b.read_bytes() for b in list_backups(model)] == contents


def test_info_ignores_metadata_of_another_model(tmp_path: Path) -> None:
    run_training(tmp_path, seed=1)
    model_path = tmp_path / "models" / "css_model.json"
    meta = metadata_path(model_path)
    facts = model_info(load(model_path), model_path)
    assert facts.metadata_error is None and facts.training is not None
    # As after a crash between the two renames: a new model beside the old metadata.
    document = orjson.loads(meta.read_bytes())
    document["model_sha256"] = hashlib.sha256(b"another model").hexdigest()
    meta.write_bytes(orjson.dumps(document))
    facts = model_info(load(model_path), model_path)
    assert facts.training is None
    assert "describes another model file" in (facts.metadata_error or "")
    result = CliRunner().invoke(app, ["info", str(model_path)])
    assert result.exit_code == 0 and "describes another model file" in result.stdout
