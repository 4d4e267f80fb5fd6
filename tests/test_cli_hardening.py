"""The command line under interruptions, pipes, concurrent runs and leftovers (issue 13):

- Ctrl+C while css-rs is still starting, or while it shuts down: ``interrupted``, exit code 130,
  no traceback, no "Exception ignored".
- ``css-rs train | head``: the run saves a checkpoint and exits 141, and resumes later.
- A usage error is one line, not a 5-line box.
- Two runs with one ``--model-path`` (and different checkpoints): the second is refused.
- Temporary files of a killed run are removed; no ``.lock`` file stays after a run.
- Files are created with the umask's mode, as by any other tool (not 0600).
- Messages count in the singular for one ("1 row", "1 time").

Interrupts are sent at known moments: ``CSS_RS_TEST_HOLD=EVENT:N`` makes the process print
``[test-hold] EVENT N`` on stderr and wait for the test's signal.
"""

from __future__ import annotations

import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest

from css_rs.checkpoint import CheckpointStore
from css_rs.reporter import format_quantity
from helpers import clean_env, small_run_flags

SETTINGS = small_run_flags(400)


def start(cwd: Path, *args: str, hold: Optional[str] = None) -> subprocess.Popen[str]:
    extra = {"CSS_RS_TEST_HOLD": hold} if hold else {}
    return subprocess.Popen(
        [sys.executable, "-m", "css_rs", *args],
        cwd=cwd,
        env=clean_env(**extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def wait_for_hold(proc: subprocess.Popen[str]) -> list[str]:
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith("[test-hold]"):
            return seen
    raise AssertionError("the process ended before its hold point: " + "".join(seen))


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "css_rs", *args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("moment", ["startup", "exit"])
def test_ctrl_c_while_starting_or_exiting_is_130_without_traceback(
    tmp_path: Path, moment: str
) -> None:
    proc = start(tmp_path, "--version", hold=f"{moment}:1")
    wait_for_hold(proc)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)  # a burst: the second one must not matter either
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip() == "interrupted"
    assert "Traceback" not in err and "Exception ignored" not in err


@pytest.mark.slow
def test_broken_pipe_saves_a_checkpoint_and_resumes(tmp_path: Path) -> None:
    proc = start(tmp_path, "train", *SETTINGS)
    assert proc.stdout is not None and proc.stderr is not None
    for line in proc.stdout:
        if line.strip().startswith("Epoch 1/3"):
            break
    proc.stdout.close()  # as `| head` does once it has its lines
    err = proc.stderr.read()
    proc.wait(timeout=120)
    assert proc.returncode == 141, err
    assert "checkpoint saved, resume with: css-rs train" in err
    assert "Traceback" not in err
    store = CheckpointStore(tmp_path / "checkpoints" / "training_checkpoint.json")
    assert store.load().phase == "training"
    again = run(tmp_path, "train", *SETTINGS)
    assert again.returncode == 0, again.stderr
    assert "Restored training state from checkpoint" in again.stdout


@pytest.mark.slow
def test_usage_errors_are_one_line(tmp_path: Path) -> None:
    done = run(tmp_path, "train", "--no-such-flag")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: No such option: --no-such-flag")
    assert "train --help" in lines[0] and "╭" not in done.stderr
    missing = run(tmp_path, "similar")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "Missing argument 'WORD'" in missing.stderr  # MODEL defaults to train's


@pytest.mark.slow
def test_two_runs_on_one_model_path_are_refused(tmp_path: Path) -> None:
    first = start(tmp_path, "train", *SETTINGS, "--checkpoint-path", "a/ckpt.json", hold="batch:1")
    try:
        wait_for_hold(first)
        second = run(tmp_path, "train", *SETTINGS, "--checkpoint-path", "b/ckpt.json")
        assert second.returncode == 2, second.stderr
        message = second.stderr.strip()
        assert message.startswith("error: models/css_model.json: another css-rs train")
        assert f"pid {first.pid}" in message and "is writing this model" in message
        assert not (tmp_path / "b").exists() or not any((tmp_path / "b").rglob("ids-*.u32"))
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=120)
    done = run(tmp_path, "train", *SETTINGS, "--checkpoint-path", "a/ckpt.json")
    assert done.returncode == 0, done.stderr


def test_temporaries_of_a_killed_run_are_removed_and_no_lock_stays(tmp_path: Path) -> None:
    killed = start(tmp_path, "train", *SETTINGS, hold="checkpoint:3")
    wait_for_hold(killed)
    killed.kill()
    killed.communicate(timeout=60)
    checkpoints, models = tmp_path / "checkpoints", tmp_path / "models"
    models.mkdir(exist_ok=True)
    leftovers = [
        checkpoints / ".training_checkpoint.json.k1ll3d.tmp",
        checkpoints / "training_checkpoint.cache" / ".state.7.bin.k1ll3d.tmp",
        models / ".css_model.json.12345.tmp",
        models / ".css_model.metadata.json.abcdef.tmp",
    ]
    for path in leftovers:
        path.write_bytes(b"half written")
    unrelated = models / ".other.json.abc.tmp"
    unrelated.write_bytes(b"not ours")
    done = run(tmp_path, "train", *SETTINGS)
    assert done.returncode == 0, done.stderr
    assert not [p for p in leftovers if p.exists()]
    assert unrelated.exists()
    assert not list(tmp_path.rglob("*.lock")), list(tmp_path.rglob("*.lock"))


@pytest.mark.slow
@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_files_get_the_umask_mode(tmp_path: Path, umask: int, mode: int) -> None:
    model_dir = tmp_path / "models"
    code = (
        f"import os; os.umask({umask});"
        "import sys; sys.argv = ['css-rs'] + sys.argv[1:];"
        "from css_rs.cli import main; main()"
    )
    args = ["train", *SETTINGS, "--epochs", "1", "--keep-backups", "1"]
    for _ in range(2):  # the second run also makes a backup of the first model
        done = subprocess.run(
            [sys.executable, "-c", code, *args],
            cwd=tmp_path,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
    config = tmp_path / "c.toml"
    subprocess.run(
        [sys.executable, "-c", code, "config", "init", str(config)], env=clean_env(), check=True
    )
    files = [*model_dir.iterdir(), config]
    assert len(files) == 4  # model, metadata, backup, config
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == mode, path


def test_counts_of_one_are_singular(tmp_path: Path) -> None:
    assert format_quantity(1, "row") == "1 row"
    assert format_quantity(2, "row") == "2 rows"
    assert format_quantity(1234, "time") == "1,234 times"
    assert format_quantity(1, "batch", "batches") == "1 batch"
    assert format_quantity(3, "batch", "batches") == "3 batches"
    corpus = tmp_path / "one.jsonl"
    corpus.write_text('{"text": "alpha beta"}\n{"other": 1}\n')
    done = run(
        tmp_path, "train", "--source", "jsonl", "--path", str(corpus), "--min-word-freq", "1"
    )
    assert "Skipped 1 row without text" in done.stdout, done.stdout[-3000:] + done.stderr
    empty = run(tmp_path, "train", "--source", "jsonl", "--path", str(corpus), "--fresh")
    assert empty.returncode == 2
    assert "no word occurs 5 times in 1 document;" in empty.stderr


def test_help_keeps_brackets() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "css_rs", "train", "--help"],
        env={**clean_env(), "COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Random initial count in [this, K]" in done.stdout


def test_a_local_input_that_changed_since_the_checkpoint_is_noticed(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"the cat sat on the mat number {i % 9}\n" for i in range(400)))
    args = ["train", "--source", "text", "--path", str(corpus), "--batch-size", "10"]
    args += ["--save-checkpoint-every", "1", "--min-word-freq", "1", "--epochs", "1"]
    args += ["--threads", "1"]
    interrupted = start(tmp_path, *args, hold="batch:3")
    wait_for_hold(interrupted)
    interrupted.send_signal(signal.SIGINT)
    interrupted.communicate(timeout=120)
    assert interrupted.returncode == 130
    # The file shrinks (as a download cut short and retried would leave it).
    corpus.write_text("the cat sat\n")
    refused = run(tmp_path, *args)
    assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr
    message = refused.stderr.strip()
    assert message.startswith(f"error: input file {corpus} is now 12 bytes (was ")
    assert "--fresh" in message and "--force" in message
    forced = run(tmp_path, *args, "--force")
    assert forced.returncode == 0, forced.stderr
    assert f"warning: input file {corpus} is now 12 bytes" in forced.stdout
