"""Outputs that are not regular files (issue 13, severe 1): a FIFO, a symbolic link to a
character device, a folder. Every command that writes a file refuses them with a one-line error
(exit code 2) before doing any work, and leaves them as they were; nothing is created beside
them (no ``<target>.metadata.json`` next to a device).

``/dev/null`` is only ever reached through a symbolic link in a temporary folder, and the test
asserts it is still a character device afterwards: it is never written to.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from css_rs import CSSModel
from css_rs.cli import app
from css_rs.errors import InputError
from css_rs.files import atomic_write_bytes, check_output_path, metadata_path

runner = CliRunner()

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")


def run(*args: object) -> Result:
    return runner.invoke(app, [str(a) for a in args])


def make_fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def make_devnull_link(path: Path) -> Path:
    path.symlink_to(os.devnull)
    return path


def make_folder(path: Path) -> Path:
    path.mkdir()
    (path / "inside.txt").write_text("mine\n")
    return path


TARGETS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "fifo": (make_fifo, "is a FIFO (named pipe)"),
    "link-to-devnull": (make_devnull_link, "is a character device"),
    "folder": (make_folder, ""),
}


def snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    """Every entry of ``folder`` (recursively) with its file type and, for links, the target:
    equal snapshots before and after mean nothing was created, removed or replaced."""
    out = {}
    for p in sorted(folder.rglob("*")):
        mode = os.lstat(p).st_mode
        out[str(p.relative_to(folder))] = (
            stat.S_IFMT(mode),
            os.readlink(p) if p.is_symlink() else "",
        )
    return out


def assert_refused(result: Result, target: Path, why: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert str(target) in lines[0]
    if why:
        assert why in lines[0]
    assert "Traceback" not in result.output


@pytest.fixture
def devnull_stays_a_device() -> object:
    yield
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode), "/dev/null is no longer a device"


@pytest.fixture(params=sorted(TARGETS))
def target(
    request: pytest.FixtureRequest, tmp_path: Path, devnull_stays_a_device: object
) -> tuple[Path, str]:
    make, why = TARGETS[request.param]
    folder = tmp_path / "out"
    folder.mkdir()
    return make(folder / "target.json"), why


def test_check_output_path_accepts_files_and_links_to_files(tmp_path: Path) -> None:
    assert check_output_path(tmp_path / "new.json") == tmp_path / "new.json"
    (tmp_path / "file.json").write_text("{}")
    (tmp_path / "link.json").symlink_to(tmp_path / "file.json")
    (tmp_path / "dangling.json").symlink_to(tmp_path / "nowhere.json")
    for name in ("file.json", "link.json", "dangling.json"):
        check_output_path(tmp_path / name)


def test_atomic_write_refuses(target: tuple[Path, str]) -> None:
    path, _ = target
    before = snapshot(path.parent)
    with pytest.raises(InputError, match="not a regular file"):
        atomic_write_bytes(path, b"data")
    assert snapshot(path.parent) == before


def test_model_save_refuses(model: CSSModel, target: tuple[Path, str]) -> None:
    path, _ = target
    before = snapshot(path.parent)
    with pytest.raises(InputError, match="not a regular file"):
        model.save(path)
    assert snapshot(path.parent) == before


def test_train_refuses_before_any_work(
    target: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, why = target
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    result = run("train", "--threads", "1", "--synthetic-documents", "50", "--model-path", path)
    assert_refused(result, path, why)
    # Nothing created: no checkpoint folder, no metadata beside the target, no backup.
    assert snapshot(tmp_path) == before
    assert not metadata_path(path).exists()


def test_train_refuses_a_device_as_metadata_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, devnull_stays_a_device: object
) -> None:
    monkeypatch.chdir(tmp_path)
    model_path = tmp_path / "m.json"
    meta = make_devnull_link(metadata_path(model_path))
    result = run("train", "--threads", "1", "--model-path", model_path)
    assert_refused(result, meta, "is a character device")
    assert not model_path.exists() and not (tmp_path / "checkpoints").exists()


def test_train_refuses_a_fifo_as_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    fifo = make_fifo(tmp_path / "ckpt.json")
    result = run("train", "--threads", "1", "--checkpoint-path", fifo)
    assert_refused(result, fifo, "is a FIFO")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert not (tmp_path / "models").exists()


@pytest.mark.parametrize("fmt", ["word2vec", "word2vec-binary", "npz", "npy"])
def test_export_refuses(model_path: Path, target: tuple[Path, str], fmt: str) -> None:
    path, why = target
    before = snapshot(path.parent)
    result = run("export", model_path, path, "--format", fmt)
    assert_refused(result, path, why)
    assert snapshot(path.parent) == before


def test_export_npy_refuses_a_device_as_vocabulary_file(
    model_path: Path, tmp_path: Path, devnull_stays_a_device: object
) -> None:
    out = tmp_path / "emb.npy"
    vocab = make_devnull_link(tmp_path / "emb.vocab.txt")
    result = run("export", model_path, out, "--format", "npy")
    assert_refused(result, vocab, "is a character device")
    assert not out.exists()  # neither file of the pair was written


def test_plot_refuses(model_path: Path, tmp_path: Path, devnull_stays_a_device: object) -> None:
    for path in (make_fifo(tmp_path / "p.png"), make_devnull_link(tmp_path / "q.png")):
        before = snapshot(tmp_path)
        result = run("plot", model_path, "bank", "-o", path)
        assert_refused(result, path, "not a regular file")
        assert snapshot(tmp_path) == before


def test_config_init_force_refuses(tmp_path: Path, devnull_stays_a_device: object) -> None:
    for path in (make_fifo(tmp_path / "c.toml"), make_devnull_link(tmp_path / "d.toml")):
        before = snapshot(tmp_path)
        result = run("config", "init", path, "--force")
        assert_refused(result, path, "not a regular file")
        assert snapshot(tmp_path) == before
