"""A node lost mid-round (issue 16): its worker is restarted on a surviving node and the round
run again, and the model equals an uninterrupted LocalEngine run bit for bit.

The nodes are separate raylets on this machine, as Ray's own tests make them
(``ray.cluster_utils.Cluster``), on loopback with usage stats off. A module of its own: the
cluster is started here and shut down before the next module. Skipped when Ray is absent.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from css_rs.distributed import DistributedTrainer, LocalEngine, RayEngine, list_shards
from css_rs.distributed.worker import EXIT_ONCE_ENV
from test_distributed import config_for, spectra_equal, write_shards
from test_distributed_ray import keep_ray_on_loopback

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # a real Ray cluster starts
cluster_utils = pytest.importorskip("ray.cluster_utils")

LOOPBACK = "127.0.0.1"
# Seconds a step may take before the test fails instead of hanging (a loaded 2-core machine).
PATIENCE = 120.0


def _node(cluster: Any, **args: Any) -> Any:
    return cluster.add_node(num_cpus=1, node_ip_address=LOOPBACK, **args)


@pytest.fixture
def doomed_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any]]:
    """A head node and one more node, one CPU each, so that a 2 x 1 run puts one worker on
    each; the extra node's workers see ``tmp_path`` as the folder where a test arms a one-time
    hang. Yields (cluster, extra node); every raylet is stopped at the end."""
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.delenv(EXIT_ONCE_ENV, raising=False)
    keep_ray_on_loopback(monkeypatch)
    cluster = cluster_utils.Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "node_ip_address": LOOPBACK, "include_dashboard": False},
    )
    try:
        doomed = _node(cluster, env_vars={EXIT_ONCE_ENV: str(tmp_path)})
        ray.init(address=cluster.address, log_to_driver=False)
        try:
            assert {n["NodeManagerAddress"] for n in ray.nodes()} == {LOOPBACK}
            yield cluster, doomed
        finally:
            ray.shutdown()
    finally:
        cluster.shutdown()


def _wait_until_taken(arm: Path, training: Any) -> None:
    """Returns once a worker has taken ``arm`` (it is then inside its round, hanging)."""
    deadline = time.monotonic() + PATIENCE
    while arm.exists():
        if training.done():
            training.result()  # raises what the run raised
            raise AssertionError("the run finished without any worker taking the hang")
        if time.monotonic() > deadline:
            raise AssertionError(f"no worker took {arm} within {PATIENCE:.0f} s")
        time.sleep(0.05)


def test_a_node_lost_mid_round_is_retried_elsewhere_and_changes_nothing(
    doomed_cluster: tuple[Any, Any], tmp_path: Path
) -> None:
    cluster, doomed = doomed_cluster
    shards = write_shards(tmp_path / "shards", shards=6, docs=300)
    local = DistributedTrainer(LocalEngine(), config_for(shards), list_shards(config_for(shards)))
    local.prepare()
    for _ in local.rounds():
        pass
    local.engine.close()

    config = config_for(shards, engine="ray")
    trainer = DistributedTrainer(RayEngine(), config, list_shards(config))
    try:
        trainer.prepare()  # one worker on each node: one CPU each, one CPU per worker
        _node(cluster)  # a surviving node with room for the worker that will be restarted
        arm = tmp_path / "hang-once"
        arm.touch()  # only the doomed node's worker looks here: it takes it in round 1
        with ThreadPoolExecutor(max_workers=1) as pool:
            training = pool.submit(lambda: [r for r in trainer.rounds()])
            _wait_until_taken(arm, training)
            cluster.remove_node(doomed, allow_graceful=False)  # as a crashed machine
            training.result(timeout=PATIENCE)
    finally:
        trainer.engine.close()

    dead = [n for n in ray.nodes() if n["NodeID"] == doomed.node_id]
    assert dead and not dead[0]["Alive"]
    assert trainer.state.round == local.state.round
    assert spectra_equal(trainer.spectra or (), local.spectra or ())
