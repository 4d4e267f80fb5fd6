"""Engines run the workers of a distributed run: ``LocalEngine`` in this process (threads;
tests and single machines), ``RayEngine`` on a Ray cluster (core tasks and actors).

The driver only ever asks an engine three things: count these shards, start these workers,
run this round. Ray is imported by ``RayEngine`` alone, when it is made.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Optional, Protocol

from css_rs._core import Vocabulary
from css_rs.config import TrainConfig
from css_rs.distributed.shards import ShardSpec
from css_rs.distributed.worker import (
    BucketCounts,
    RoundResult,
    RoundTask,
    ShardWorker,
    WorkerInfo,
    count_shard_buckets,
    reduce_bucket,
)
from css_rs.errors import InputError

if TYPE_CHECKING:
    from css_rs._core import _SpectraArrays as SpectraArrays

# A task that fails (its worker process died, its node was lost) is run again this many times.
TASK_RETRIES = 3


class Engine(Protocol):
    def count_words(
        self, shards: list[ShardSpec], config: TrainConfig, buckets: int
    ) -> list[BucketCounts]:
        """Counts every shard (one task each, its counts split into ``buckets`` by word) and
        merges each bucket over the shards (one reducer each): per bucket, the words counted
        ``min_word_freq`` times or more."""
        ...

    def start_workers(
        self, assignment: list[list[ShardSpec]], vocab: Vocabulary, config: TrainConfig
    ) -> list[WorkerInfo]:
        """Starts one worker per list of shards; each reads and encodes its own."""
        ...

    def run_round(self, spectra: SpectraArrays, tasks: list[RoundTask]) -> list[RoundResult]:
        """Runs the tasks of one round (one per busy worker) from ``spectra``, in task order."""
        ...

    def close(self) -> None: ...


class LocalEngine:
    """Workers in this process; a round's workers train concurrently in threads (the Rust
    trainer releases the GIL)."""

    def __init__(self) -> None:
        self._workers: list[ShardWorker] = []
        self._pool: Optional[ThreadPoolExecutor] = None

    def count_words(
        self, shards: list[ShardSpec], config: TrainConfig, buckets: int
    ) -> list[BucketCounts]:
        counted = [count_shard_buckets(s, config, buckets) for s in shards]
        return [
            reduce_bucket(config.min_word_freq, *(parts[b] for parts in counted))
            for b in range(buckets)
        ]

    def start_workers(
        self, assignment: list[list[ShardSpec]], vocab: Vocabulary, config: TrainConfig
    ) -> list[WorkerInfo]:
        self._workers = [ShardWorker(i, own, vocab, config) for i, own in enumerate(assignment)]
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self._workers)))
        return [w.info() for w in self._workers]

    def run_round(self, spectra: SpectraArrays, tasks: list[RoundTask]) -> list[RoundResult]:
        if self._pool is None:
            raise RuntimeError("start_workers() first")
        futures = [
            self._pool.submit(self._workers[t.worker].train_round, spectra, t) for t in tasks
        ]
        return [f.result() for f in futures]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        self._workers = []


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError(
            "--engine ray needs Ray: pip install 'css-rs[ray]' (Python >= 3.10)"
        ) from None
    return ray


class RayEngine:
    """Workers as Ray actors (one per worker, ``threads_per_worker`` CPUs each), counting as
    Ray tasks. A worker whose process dies is restarted (it reads its shards again) and its
    round is retried: a round's result depends only on its arguments, so nothing changes.

    ``address``: ``"local"`` starts a cluster on this machine, ``"auto"`` joins the one this
    machine belongs to, anything else is a Ray address. When Ray is already initialised it is
    used as it is (and left running at ``close()``). ``round_timeout`` (seconds): a worker
    whose round takes longer is restarted and its round run again (a straggler)."""

    def __init__(self, address: str = "local", *, round_timeout: Optional[float] = None) -> None:
        ray = _ray()
        self._ray = ray
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            if address == "local":
                # address="local": a new cluster even when this machine runs another one
                # (a bare ray.init() would join it).
                ray.init(address="local", include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=address, log_to_driver=False)
        self._round_timeout = round_timeout
        self._actors: list[Any] = []
        self._constructor_refs: tuple[Any, ...] = ()

    def count_words(
        self, shards: list[ShardSpec], config: TrainConfig, buckets: int
    ) -> list[BucketCounts]:
        # The buckets go from the counting tasks to the reducers through the object store:
        # the driver only ever receives the frequent words.
        count = self._ray.remote(count_shard_buckets).options(
            max_retries=TASK_RETRIES, num_cpus=1, num_returns=buckets
        )
        reduce = self._ray.remote(reduce_bucket).options(max_retries=TASK_RETRIES, num_cpus=1)
        config_ref = self._ray.put(config)
        counted = [count.remote(s, config_ref, buckets) for s in shards]
        if buckets == 1:
            counted = [[refs] for refs in counted]
        reducers = [
            reduce.remote(config.min_word_freq, *(refs[b] for refs in counted))
            for b in range(buckets)
        ]
        return list(self._ray.get(reducers))

    def start_workers(
        self, assignment: list[list[ShardSpec]], vocab: Vocabulary, config: TrainConfig
    ) -> list[WorkerInfo]:
        actor = self._ray.remote(ShardWorker).options(
            num_cpus=config.threads_per_worker,
            max_restarts=TASK_RETRIES,
            max_task_retries=TASK_RETRIES,
        )
        vocab_ref, config_ref = self._ray.put(vocab), self._ray.put(config)
        # Held for as long as the actors live: a restarted actor reads them again.
        self._constructor_refs = (vocab_ref, config_ref)
        self._actors = [
            actor.remote(i, own, vocab_ref, config_ref) for i, own in enumerate(assignment)
        ]
        return list(self._ray.get([a.info.remote() for a in self._actors]))

    def run_round(self, spectra: SpectraArrays, tasks: list[RoundTask]) -> list[RoundResult]:
        spectra_ref = self._ray.put(spectra)
        refs = [self._actors[t.worker].train_round.remote(spectra_ref, t) for t in tasks]
        if self._round_timeout is not None:
            self._restart_stragglers(tasks, refs)
        return list(self._ray.get(refs))

    def _restart_stragglers(self, tasks: list[RoundTask], refs: list[Any]) -> None:
        """Restarts the workers whose round is not done within the timeout: Ray then runs
        their round again (same arguments, same result), up to ``TASK_RETRIES`` times."""
        for _ in range(TASK_RETRIES):
            _, pending = self._ray.wait(refs, num_returns=len(refs), timeout=self._round_timeout)
            if not pending:
                return
            for task, ref in zip(tasks, refs):
                if ref in pending:
                    self._ray.kill(self._actors[task.worker], no_restart=False)

    def close(self) -> None:
        for a in self._actors:
            self._ray.kill(a)
        self._actors = []
        self._constructor_refs = ()
        if self._owns_ray:
            self._ray.shutdown()


def make_engine(config: TrainConfig) -> Engine:
    """The engine ``config.engine`` names (``ray`` imports Ray here, and only here)."""
    if config.engine == "ray":
        timeout = config.round_timeout_seconds or None
        return RayEngine(config.ray_address, round_timeout=timeout)
    return LocalEngine()
