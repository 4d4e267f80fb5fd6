"""Distributed training on a real local Ray cluster (issue 16): Ray equals LocalEngine bit
for bit, a worker that dies mid-round changes nothing, a killed driver resumes to the same
model. Skipped when Ray is not installed. One cluster for the module: it takes seconds to start.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from css_rs.config import TrainConfig
from css_rs.distributed import DistributedTrainer, LocalEngine, RayEngine, list_shards
from css_rs.distributed.worker import EXIT_ONCE_ENV
from css_rs.model import load
from test_distributed import config_for, spectra_equal, write_shards

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # a real Ray cluster starts


def keep_ray_on_loopback(patch: pytest.MonkeyPatch) -> None:
    """Ray turns 127.0.0.1 into the machine's outward address (ray.init's ``address`` and
    ``_node_ip_address`` alike) unless its "no real cluster" switch is off: then every node,
    worker and driver stays on loopback. Ray reads it at import (the environment variable, for
    the processes Ray starts, and drivers started by a test) and at call time (the attribute,
    for this process, where Ray is already imported)."""
    patch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    patch.setattr(ray._private.ray_constants, "ENABLE_RAY_CLUSTER", False)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A 2-CPU cluster on loopback, usage stats off; its workers inherit the folder where a
    test can arm a one-time worker exit."""
    exit_dir = tmp_path_factory.mktemp("exit")
    patch = pytest.MonkeyPatch()
    patch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    patch.setenv(EXIT_ONCE_ENV, str(exit_dir))
    keep_ray_on_loopback(patch)
    ray.init(
        address="local",  # never another cluster this machine may be running
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
    )
    try:
        assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
        yield ray.get_runtime_context().gcs_address, exit_dir
    finally:
        ray.shutdown()
        patch.undo()


@pytest.fixture(scope="module")
def shard_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_shards(tmp_path_factory.mktemp("shards"), shards=6, docs=300)


def run_with(engine: object, config: TrainConfig) -> DistributedTrainer:
    trainer = DistributedTrainer(engine, config, list_shards(config))  # type: ignore[arg-type]
    trainer.prepare()
    try:
        for _ in trainer.rounds():
            pass
    finally:
        trainer.engine.close()
    return trainer


@pytest.fixture(scope="module")
def local_run(shard_folder: Path) -> DistributedTrainer:
    return run_with(LocalEngine(), config_for(shard_folder))


def test_ray_two_workers_equal_the_local_engine_bit_for_bit(
    cluster: tuple[str, Path], shard_folder: Path, local_run: DistributedTrainer
) -> None:
    on_ray = run_with(RayEngine(), config_for(shard_folder, engine="ray"))
    assert on_ray.vocab is not None and local_run.vocab is not None
    assert on_ray.vocab.words == local_run.vocab.words
    assert on_ray.state.round == local_run.state.round
    assert spectra_equal(on_ray.spectra or (), local_run.spectra or ())


def test_a_worker_that_dies_mid_round_changes_nothing(
    cluster: tuple[str, Path], shard_folder: Path, local_run: DistributedTrainer
) -> None:
    arm = cluster[1] / "exit-once"
    arm.touch()
    on_ray = run_with(RayEngine(), config_for(shard_folder, engine="ray"))
    assert not arm.exists()  # a worker took it and exited; Ray restarted it and retried
    assert spectra_equal(on_ray.spectra or (), local_run.spectra or ())


def test_a_straggler_is_restarted_and_changes_nothing(
    cluster: tuple[str, Path], shard_folder: Path, local_run: DistributedTrainer
) -> None:
    hang = cluster[1] / "hang-once"
    hang.touch()
    # Rounds here take milliseconds: 5 s is a straggler on any machine.
    on_ray = run_with(RayEngine(round_timeout=5.0), config_for(shard_folder, engine="ray"))
    assert not hang.exists()  # a worker took it and hung until it was restarted
    assert spectra_equal(on_ray.spectra or (), local_run.spectra or ())


def _cli(args: list[str], hold: str | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("CSS_RS_TEST_HOLD", None)
    if hold:
        env["CSS_RS_TEST_HOLD"] = hold
    return subprocess.Popen(
        [sys.executable, "-m", "css_rs", "train", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_hold(proc: subprocess.Popen[str]) -> None:
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("[test-hold]"):
            return
    raise AssertionError(
        f"exited {proc.wait()} before its hold: {proc.stdout and proc.stdout.read()}"
    )


def test_a_driver_interrupted_then_killed_resumes_to_the_same_model(
    cluster: tuple[str, Path],
    shard_folder: Path,
    local_run: DistributedTrainer,
    tmp_path: Path,
) -> None:
    model_path = tmp_path / "model.json"
    c = config_for(shard_folder)
    args = [
        *("--engine", "ray", "--ray-address", cluster[0]),
        *("--source", "text", "--path", str(shard_folder)),
        *("--min-word-freq", str(c.min_word_freq), "--frequency-dim", str(c.frequency_dim)),
        *("--max-frequencies", str(c.max_frequencies), "--epochs", str(c.epochs)),
        *("--round-tokens", str(c.round_tokens), "--seed", str(c.seed)),
        *("--workers", "2", "--threads-per-worker", "1"),
        *("--model-path", str(model_path)),
        *("--checkpoint-path", str(tmp_path / "ckpt" / "run.json")),
    ]
    first = _cli(args, hold="round:1")
    _wait_for_hold(first)
    first.send_signal(signal.SIGINT)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 130, err
    assert "Resume with" in out
    second = _cli(args, hold="round:2")
    _wait_for_hold(second)
    second.kill()
    second.wait(timeout=60)
    third = _cli(args)
    out, err = third.communicate(timeout=300)
    assert third.returncode == 0, err
    assert "Resuming from" in out and "at round 3" in out
    local_path = tmp_path / "local.json"
    local_run.model().save(local_path)
    for a, b in zip(load(model_path).slot_arrays(), load(local_path).slot_arrays()):
        assert np.array_equal(a, b)
    assert not (tmp_path / "ckpt" / "run.distributed.npz").exists()
    metadata = json.loads((tmp_path / "model.metadata.json").read_text())
    assert metadata["distributed"]["rounds"] == local_run.state.round
    assert [w["tokens"] for w in metadata["distributed"]["workers"]] == [
        w.tokens for w in local_run.workers
    ]
    assert [e["epoch"] for e in metadata["stats"]["epochs"]] == [1, 2]
    assert metadata["stats"]["corpus_tokens"] == sum(w.tokens for w in local_run.workers)
