"""``css-rs train`` as a user runs it: a real subprocess, the real engine, threads = 1.

Interrupts are deterministic: ``CSS_RS_TEST_HOLD=EVENT:N`` makes the command announce
``[test-hold] EVENT N`` on stderr and wait; the test sends its signal only after reading that
line (no sleeping and hoping). With threads = 1 every resumed run must produce exactly the
spectra of an uninterrupted run.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import pytest

import css_rs
from css_rs.checkpoint import CheckpointStore
from helpers import clean_env, small_run_flags

# Small but not trivial: 40 batches (10 streaming checkpoints), ~150 K training tokens in many
# short steps.
SETTINGS = small_run_flags(800)
MODEL = Path("models/css_model.json")
CHECKPOINT = Path("checkpoints/training_checkpoint.json")
CACHE = Path("checkpoints/training_checkpoint.cache")


def train_as_given(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``css-rs train`` with these arguments alone (none of this suite's SETTINGS)."""
    return subprocess.run(
        [sys.executable, "-m", "css_rs", "train", *args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def train(
    cwd: Path, *args: str, env: Optional[dict[str, str]] = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "css_rs", "train", *SETTINGS, *args],
        cwd=cwd,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def train_until(cwd: Path, hold: str, sig: int, *args: str) -> subprocess.CompletedProcess[str]:
    """Runs ``train`` until it reaches ``hold`` (EVENT:N), then sends ``sig``.

    Returns the finished process; when the run ends before reaching the hold point (a resumed
    run has less left to do), it simply finishes and its exit code says so.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "css_rs", "train", *SETTINGS, *args],
        cwd=cwd,
        env=clean_env(CSS_RS_TEST_HOLD=hold),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    stderr_head = []
    for line in proc.stderr:
        stderr_head.append(line)
        if line.startswith("[test-hold]"):
            proc.send_signal(sig)
            break
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "".join(stderr_head) + err)


def spectra(path: Path) -> dict[str, Any]:
    """What must be identical between runs: words, ids and every frequency/amplitude/phase."""
    model = json.loads(path.read_text())
    return {"vocab": model["vocab"], "spectra": model["spectra"]}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The uninterrupted run every interrupted one is compared with."""
    cwd = tmp_path_factory.mktemp("reference")
    done = train(cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    return spectra(cwd / MODEL)


def assert_finished_like_reference(
    cwd: Path, done: subprocess.CompletedProcess[str], reference: dict[str, Any]
) -> None:
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    assert spectra(cwd / MODEL) == reference
    assert not (cwd / CHECKPOINT).exists(), "the checkpoint is deleted after success"
    assert not (cwd / CACHE).exists(), "the run's cache is deleted after success"


# --- a plain run --------------------------------------------------------------------------


def test_uninterrupted_run_reports_the_four_phases(
    tmp_path: Path, reference: dict[str, Any]
) -> None:
    done = train(tmp_path)
    out = done.stdout
    for banner in (
        "COMPRESSIVE SEMANTIC SPECTROSCOPY - LARGE SCALE TRAINING",
        "PHASE 1: STREAMING DATA & BUILDING VOCABULARY",
        "PHASE 2: CONVERTING TO CORPUS",
        "PHASE 3: TRAINING CSS MODEL",
        "PHASE 4: SAVING MODEL",
        "TRAINING COMPLETE!",
        "Total documents: 800",
        "Model saved to: models/css_model.json",
        "Nearest neighbours of planted words",
    ):
        assert banner in out
    assert "\x1b[" not in out, "no terminal codes when stdout is not a terminal"
    assert_finished_like_reference(tmp_path, done, reference)
    # Same settings, same seed: the run is reproducible, and the previous model is backed up.
    again = train(tmp_path)
    assert_finished_like_reference(tmp_path, again, reference)
    assert len(list((tmp_path / "models").glob("css_model.backup.*.json"))) == 1


def test_metadata_describes_the_run(tmp_path: Path, reference: dict[str, Any]) -> None:
    done = train(tmp_path)
    assert done.returncode == 0
    meta = json.loads((tmp_path / "models/css_model.metadata.json").read_text())
    assert meta["css_rs_version"] == css_rs.__version__
    assert meta["config"]["epochs"] == 3 and meta["config_origins"]["epochs"] == "flag --epochs"
    stats = meta["stats"]
    assert stats["documents"] == 800 and stats["batches"] == 40
    assert stats["tokens"] >= stats["corpus_tokens"] > 0
    assert [e["epoch"] for e in stats["epochs"]] == [1, 2, 3]
    assert all(e["loss"] > 0 and e["avg_active"] > 2 for e in stats["epochs"])
    for key in ("elapsed", "docs_per_second", "tokens_per_second", "train_seconds"):
        assert stats[key] > 0
    assert meta["dataset_progress"]["total_documents"] == 800
    assert meta["dataset_progress"]["percent"] == pytest.approx(100.0)


def test_text_file_source(tmp_path: Path) -> None:
    lines = [
        " ".join(random.Random(i).choices("red green blue cyan black white".split(), k=12))
        for i in range(300)
    ]
    (tmp_path / "corpus.txt").write_text("\n".join(lines) + "\n")
    done = train(tmp_path, "--source", "text", "--path", "corpus.txt", "--epochs", "1")
    assert done.returncode == 0, done.stderr
    assert "Total documents: 300" in done.stdout
    assert len(css_rs.load(tmp_path / MODEL)) == 6


# --- Ctrl+C -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hold", "phase"),
    [("batch:7", "streaming"), ("convert:1", "streaming"), ("step:4", "training")],
)
def test_ctrl_c_then_resume_gives_the_same_model(
    tmp_path: Path, reference: dict[str, Any], hold: str, phase: str
) -> None:
    stopped = train_until(tmp_path, hold, signal.SIGINT)
    assert stopped.returncode == 130, stopped.stdout[-2000:] + stopped.stderr
    assert "Resume with: css-rs train --threads 1" in stopped.stdout
    assert "Traceback" not in stopped.stderr
    checkpoint = CheckpointStore(tmp_path / CHECKPOINT).load()
    assert checkpoint.phase == phase
    if hold == "batch:7":  # everything up to the interrupted batch is kept
        assert checkpoint.stream["batches"] == 7 and checkpoint.stream["documents"] == 140
    if phase == "training":
        assert "state" in checkpoint.files
    resumed = train(tmp_path)
    assert "RESUMING FROM CHECKPOINT" in resumed.stdout
    assert_finished_like_reference(tmp_path, resumed, reference)


def test_resume_command_drops_fresh(tmp_path: Path) -> None:
    stopped = train_until(tmp_path, "batch:2", signal.SIGINT, "--fresh")
    assert stopped.returncode == 130
    resume = next(line for line in stopped.stdout.splitlines() if line.startswith("Resume with:"))
    assert "--fresh" not in resume


# --- SIGKILL ------------------------------------------------------------------------------


@pytest.mark.slow
def test_killed_at_ten_random_moments_still_gives_the_same_model(
    tmp_path: Path, reference: dict[str, Any]
) -> None:
    rng = random.Random(5)
    # "any:N": the N-th interesting moment of that process (a batch cached, a checkpoint's
    # sidecars written but not its manifest, a chunk converted, a training step, the model
    # saved but the checkpoint not yet deleted).
    kills = 0
    for _ in range(10):
        hold = f"any:{rng.randint(1, 20)}"
        killed = train_until(tmp_path, hold, signal.SIGKILL)
        # A resumed run with little left to do may finish before its hold point: that is fine,
        # the next run then starts over and must still end with the same model.
        assert killed.returncode in (-signal.SIGKILL, 0), killed.stderr
        kills += killed.returncode == -signal.SIGKILL
    assert kills >= 5, "most moments must fall inside a run"
    finished = train(tmp_path)
    assert_finished_like_reference(tmp_path, finished, reference)


@pytest.mark.parametrize("hold", ["checkpoint:3", "convert:1", "checkpoint:13", "saved:1"])
def test_killed_at_delicate_moments(tmp_path: Path, reference: dict[str, Any], hold: str) -> None:
    """Between a checkpoint's sidecars and its manifest; while converting; between the
    conversion and its checkpoint; after the model is saved but before the checkpoint is gone."""
    killed = train_until(tmp_path, hold, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    finished = train(tmp_path)
    assert_finished_like_reference(tmp_path, finished, reference)


# --- bad checkpoints, changed settings ----------------------------------------------------


def interrupted_run(cwd: Path, hold: str) -> CheckpointStore:
    stopped = train_until(cwd, hold, signal.SIGINT)
    assert stopped.returncode == 130, stopped.stderr
    return CheckpointStore(cwd / CHECKPOINT)


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x20
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("hold", "target", "damage"),
    [
        ("batch:9", "manifest", truncate),
        ("batch:9", "manifest", flip_byte),
        ("batch:9", "shard", flip_byte),
        ("batch:9", "shard", truncate),
        ("batch:9", "words", truncate),
        ("batch:9", "words", flip_byte),
        ("step:3", "vocabulary", truncate),
        ("step:3", "state", truncate),
        ("step:3", "ids", flip_byte),
    ],
)
def test_damaged_checkpoint_exits_2_naming_the_file(
    tmp_path: Path, hold: str, target: str, damage: Any
) -> None:
    store = interrupted_run(tmp_path, hold)
    checkpoint = store.load()
    if target == "manifest":
        path = store.manifest_path
    elif target == "shard":
        path = store.path_of(checkpoint.shards[0].name)
    elif target == "words":
        path = store.path_of(checkpoint.words[0].name)
    else:
        path = store.path_of(checkpoint.files[target].name)
    damage(path)
    damaged = path.read_bytes()
    done = train(tmp_path)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: checkpoint file ")
    assert str(path.relative_to(tmp_path)) in lines[0] and "--fresh" in lines[0]
    assert path.read_bytes() == damaged, "a damaged file is left in place"
    assert not (tmp_path / MODEL).exists()
    # --fresh is the way out, and works.
    fresh = train(tmp_path, "--fresh")
    assert fresh.returncode == 0, fresh.stderr
    assert "Removed previous checkpoint" in fresh.stdout


def test_damaged_model_file_is_reported_and_left_in_place(tmp_path: Path) -> None:
    done = train(tmp_path, "--epochs", "1")
    assert done.returncode == 0
    truncate(tmp_path / MODEL)
    damaged = (tmp_path / MODEL).read_bytes()
    with pytest.raises(css_rs.InputError, match=str(MODEL)):
        css_rs.load(tmp_path / MODEL)
    # Training again keeps the damaged model as a backup, byte for byte, and writes a new one.
    again = train(tmp_path, "--epochs", "1")
    assert again.returncode == 0, again.stderr
    backups = list((tmp_path / "models").glob("css_model.backup.*.json"))
    assert [b.read_bytes() for b in backups] == [damaged]
    assert len(css_rs.load(tmp_path / MODEL)) > 0


def test_kernels_variable_is_honoured_and_a_bad_value_refused(
    tmp_path: Path, reference: dict[str, Any]
) -> None:
    scalar = train(tmp_path, env=clean_env(CSS_RS_KERNELS="scalar"))
    assert scalar.returncode == 0, scalar.stderr
    assert spectra(tmp_path / MODEL) == reference  # same model whatever the kernels
    saved = (tmp_path / MODEL).read_bytes()
    bad = train(tmp_path, "--fresh", env=clean_env(CSS_RS_KERNELS="avx9"))
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        'error: CSS_RS_KERNELS = "avx9" is invalid: must be "auto" or "scalar"'
    ]
    assert (tmp_path / MODEL).read_bytes() == saved


def test_changed_settings_refuse_to_resume_unless_forced(tmp_path: Path) -> None:
    store = interrupted_run(tmp_path, "batch:5")
    before = store.manifest_path.read_bytes()
    refused = train(tmp_path, "--epochs", "2", "--min-word-freq", "3")
    assert refused.returncode == 2
    message = refused.stderr.strip()
    assert "min_word_freq: 2 -> 3" in message and "epochs: 3 -> 2" in message
    assert "--force" in message and "--fresh" in message and "\n" not in message
    assert store.manifest_path.read_bytes() == before
    forced = train(tmp_path, "--epochs", "2", "--min-word-freq", "3", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "Setting changed (--force): epochs: 3 -> 2" in forced.stdout
    meta = json.loads((tmp_path / "models/css_model.metadata.json").read_text())
    assert meta["stats"]["documents"] == 800 and len(meta["stats"]["epochs"]) == 2


def test_where_files_go_may_change_between_runs(tmp_path: Path, reference: dict[str, Any]) -> None:
    interrupted_run(tmp_path, "step:3")
    threads = train(tmp_path, "--threads", "2")
    assert threads.returncode == 2 and "threads: 1 -> 2" in threads.stderr
    moved = train(tmp_path, "--model-path", "elsewhere/model.json", "--keep-backups", "0")
    assert moved.returncode == 0, moved.stderr
    assert "Restored training state from checkpoint" in moved.stdout
    assert spectra(tmp_path / "elsewhere/model.json") == reference


def test_resume_from_checkpoint_false_starts_over(
    tmp_path: Path, reference: dict[str, Any]
) -> None:
    interrupted_run(tmp_path, "batch:5")
    done = train(tmp_path, env=clean_env(CSS_RS_RESUME_FROM_CHECKPOINT="false"))
    assert "RESUMING" not in done.stdout and "Removed previous checkpoint" in done.stdout
    assert_finished_like_reference(tmp_path, done, reference)


def test_a_second_run_on_the_same_checkpoint_is_refused(tmp_path: Path) -> None:
    """Two runs sharing one checkpoint would resume from each other's progress: refused."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "css_rs", "train", *SETTINGS],
        cwd=tmp_path,
        env=clean_env(CSS_RS_TEST_HOLD="batch:1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    try:
        for line in proc.stderr:
            if line.startswith("[test-hold]"):
                break
        second = train(tmp_path)
        assert second.returncode == 2
        assert f"pid {proc.pid}" in second.stderr
        assert "is using this checkpoint" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)
    # The first run's lock died with it: the next run resumes normally.
    done = train(tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr


def test_a_local_file_is_read_to_the_end_by_default(tmp_path: Path) -> None:
    """The guide's 100-batch default is for Hugging Face datasets: a local file is read whole
    (here 6,000 lines, more than 100 batches of the default 50)."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"the cat sat on mat number {i % 7}\n" for i in range(6000)))
    args = ["--source", "text", "--path", str(corpus), "--epochs", "1", "--min-word-freq", "1"]
    done = train_as_given(tmp_path, *args)  # no --max-batches, no --batch-size
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    assert "Total documents: 6,000" in done.stdout and "stopped at max_batches" not in done.stdout


def test_a_run_cut_short_by_max_batches_says_so(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"the cat sat on mat number {i % 7}\n" for i in range(300)))
    args = ["--source", "text", "--path", str(corpus), "--batch-size", "10", "--epochs", "1"]
    args += ["--min-word-freq", "1", "--threads", "1"]
    cut = train(tmp_path, *args, "--max-batches", "3")
    assert cut.returncode == 0, cut.stdout[-2000:] + cut.stderr
    assert "stopped at max_batches = 3 (30 documents)" in cut.stdout
    assert "--max-batches none" in cut.stdout
    whole = train(tmp_path, *args, "--max-batches", "none", "--fresh")
    assert whole.returncode == 0, whole.stdout[-2000:] + whole.stderr
    assert "stopped at max_batches" not in whole.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "text"], "error: --source text needs --path (a file, a folder or a glob)"),
        (["--source", "jsonl", "--path", "gone.jsonl"], "error: path not found: 'gone.jsonl'"),
    ],
)
def test_input_errors_come_before_the_banner(tmp_path: Path, args: list[str], message: str) -> None:
    done = train_as_given(tmp_path, *args)
    assert done.returncode == 2
    assert done.stdout == "" and done.stderr.strip().startswith(message), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "models").exists()


def test_an_unreachable_hub_fails_at_once_without_a_resume_hint(tmp_path: Path) -> None:
    """A refused connection (here: nothing listens on loopback port 9) is retried twice, not
    through two minutes of backoff, and with nothing streamed there is nothing to resume."""
    args = ["--source", "hf", "--dataset", "org/data"]
    args += ["--datasets-server-endpoint", "http://127.0.0.1:9"]
    # (A bound, not a timing: eight connect retries with backoff took ~2 minutes.)
    done = train_as_given(tmp_path, *args, timeout=60)
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr
    assert "http://127.0.0.1:9/" in done.stderr and "kept failing" in done.stderr
    assert "resume" not in (done.stdout + done.stderr).lower()
    assert not (tmp_path / "checkpoints" / "training_checkpoint.json").exists()


# --- the id cache -------------------------------------------------------------------------


def test_a_torn_tail_of_a_checkpoint_killed_midway_is_ignored(
    tmp_path: Path, reference: dict[str, Any]
) -> None:
    """Killed after a checkpoint appended its ids and words but before its manifest, with a
    half-written id and word after them: resuming cuts all of that and ends as if never
    interrupted."""
    killed = train_until(tmp_path, "checkpoint:3", signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    store = CheckpointStore(tmp_path / CHECKPOINT)
    checkpoint = store.load()
    ids, words = store.path_of(checkpoint.shards[-1].name), store.path_of(checkpoint.words[-1].name)
    assert ids.stat().st_size > checkpoint.shards[-1].size, "checkpoint 3 appended ids"
    with open(ids, "ab") as fh:
        fh.write(b"\x07\x00")  # half an id
    with open(words, "ab") as fh:
        fh.write(b"half-a-wor")  # no newline
    resumed = train(tmp_path)
    assert "RESUMING FROM CHECKPOINT" in resumed.stdout
    assert_finished_like_reference(tmp_path, resumed, reference)


def test_force_with_a_new_min_word_freq_remaps_without_streaming_again(tmp_path: Path) -> None:
    interrupted_run(tmp_path, "step:3")
    forced = train(tmp_path, "--min-word-freq", "3", "--force")
    assert forced.returncode == 0, forced.stdout[-2000:] + forced.stderr
    assert "Setting changed (--force): min_word_freq: 2 -> 3" in forced.stdout
    assert "PHASE 1" not in forced.stdout and "PHASE 2: CONVERTING TO CORPUS" in forced.stdout
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert train(fresh, "--min-word-freq", "3").returncode == 0
    assert spectra(tmp_path / MODEL) == spectra(fresh / MODEL)


def test_a_checkpoint_of_the_previous_format_is_refused_in_one_line(tmp_path: Path) -> None:
    """Format 1 cached the documents as JSON text (docs-NNNNN.jsonl): not resumable; the
    error says so and --fresh removes it, old shards included."""
    store = interrupted_run(tmp_path, "batch:5")
    doc = json.loads(store.manifest_path.read_text())
    doc["version"] = 1
    store.manifest_path.write_text(json.dumps(doc))
    legacy = store.cache_dir / "docs-00000.jsonl"
    legacy.write_text('"an old cached document"\n')
    refused = train(tmp_path)
    assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "checkpoint format version 1 is not supported" in lines[0]
    assert str(CHECKPOINT) in lines[0] and "--fresh" in lines[0]
    fresh = train(tmp_path, "--fresh")
    assert fresh.returncode == 0, fresh.stdout[-2000:] + fresh.stderr
    assert not legacy.exists()


def test_the_id_cache_size_is_reported(tmp_path: Path) -> None:
    done = train(tmp_path, "--epochs", "1")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    stats = json.loads((tmp_path / "models/css_model.metadata.json").read_text())["stats"]
    # 4 bytes a token plus 4 a document (its end marker).
    assert stats["cache_bytes"] == 4 * (stats["tokens"] + stats["documents"])
    per_token = stats["cache_bytes"] / stats["tokens"]
    assert stats["distinct_words"] >= stats["vocabulary_size"] > 0
    assert f"words of {stats['distinct_words']:,} distinct" in done.stdout
    assert f"{per_token:.2f} bytes a token" in done.stdout
