"""What runs on a worker: counting a shard's words, and a worker that trains rounds.

A worker reads, tokenises and encodes its own shards once and keeps the ids for every later
round and epoch: no text passes through the driver. Everything here is plain Python over
``css_rs._core`` and pickles, so an engine can run it in this process or on a Ray node.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from css_rs import _core
from css_rs._core import Vocabulary
from css_rs.config import TrainConfig
from css_rs.distributed.shards import ShardSpec, shard_batches

if TYPE_CHECKING:
    from css_rs._core import _RowArrays as RowArrays
    from css_rs._core import _SpectraArrays as SpectraArrays

# Tests only: a folder; a worker that finds a file "exit-once" there removes it and exits
# abruptly in the middle of its round (as a process killed there would), once; one that finds
# "hang-once" removes it and never finishes its round (a straggler), once.
EXIT_ONCE_ENV = "CSS_RS_TEST_WORKER_EXIT_DIR"


def count_shard(shard: ShardSpec, config: TrainConfig) -> Vocabulary:
    """The raw word counts of one shard (an unbuilt vocabulary)."""
    vocab = Vocabulary()
    for batch in shard_batches(shard, config):
        vocab.update(batch)
    return vocab


def count_shard_buckets(shard: ShardSpec, config: TrainConfig, buckets: int) -> list[Vocabulary]:
    """One shard's raw counts, split by a stable hash of the word into ``buckets`` parts."""
    return _core.vocabulary_buckets(count_shard(shard, config), buckets)


@dataclass(frozen=True)
class BucketCounts:
    """A reducer's answer: the words of its bucket counted ``min_count`` times or more over
    all shards, and the bucket's totals (every token and distinct word, kept or not)."""

    frequent: dict[str, int]
    tokens: int
    distinct_words: int


def reduce_bucket(min_count: int, *parts: Vocabulary) -> BucketCounts:
    """Merges one bucket of every shard's counts (``parts``: bucket b of each shard)."""
    merged = Vocabulary()
    for part in parts:
        merged.merge(part)
    return BucketCounts(
        _core.frequent_word_counts(merged, min_count), merged.total_tokens, merged.distinct_words
    )


@dataclass(frozen=True)
class RoundTask:
    """One worker's part of a round: everything its result depends on besides the global
    spectra and the worker's own documents."""

    worker: int
    workers: int
    round: int
    first_doc: int
    epoch: int
    token_budget: int
    cluster_tokens_done: int
    cluster_tokens_total: int


@dataclass(frozen=True)
class RoundResult:
    worker: int
    rows: RowArrays
    next_doc: int
    tokens: int
    positions: int
    loss: float
    loss_positions: int
    seconds: float

    @property
    def nbytes(self) -> int:
        return sum(int(a.nbytes) for a in self.rows)


@dataclass(frozen=True)
class WorkerInfo:
    worker: int
    documents: int
    tokens: int
    seconds: float  # reading, tokenising and encoding its shards


def round_settings(config: TrainConfig) -> str:
    """The engine settings of a worker: the run's, with ``threads_per_worker`` threads."""
    settings = config.engine_settings()
    settings["threads"] = config.threads_per_worker
    return json.dumps(settings)


def _encode_shards(
    shards: list[ShardSpec], vocab: Vocabulary, config: TrainConfig
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64]]:
    ids_parts: list[npt.NDArray[np.uint32]] = []
    offset_parts: list[npt.NDArray[np.int64]] = [np.zeros(1, dtype=np.int64)]
    base = 0
    for shard in shards:
        for batch in shard_batches(shard, config):
            ids, offsets = vocab.encode_batch(batch)
            ids_parts.append(ids)
            offset_parts.append(offsets[1:] + base)
            base += int(ids.shape[0])
    ids_all = np.concatenate(ids_parts) if ids_parts else np.zeros(0, dtype=np.uint32)
    return ids_all.astype(np.uint32, copy=False), np.concatenate(offset_parts)


class ShardWorker:
    """One worker: its shards' encoded ids and a ``RoundTrainer`` over them."""

    def __init__(
        self, worker: int, shards: list[ShardSpec], vocab: Vocabulary, config: TrainConfig
    ) -> None:
        started = time.perf_counter()
        self.worker = worker
        ids, offsets = _encode_shards(shards, vocab, config)
        self._trainer = _core.RoundTrainer(ids, offsets, vocab, round_settings(config))
        self._seconds = time.perf_counter() - started

    def info(self) -> WorkerInfo:
        return WorkerInfo(self.worker, self._trainer.documents, self._trainer.tokens, self._seconds)

    def train_round(self, spectra: SpectraArrays, task: RoundTask) -> RoundResult:
        if task.worker != self.worker:
            raise ValueError(f"round task for worker {task.worker} sent to worker {self.worker}")
        _fail_once_if_asked()
        rows, outcome = self._trainer.train_round(
            spectra,
            first_doc=task.first_doc,
            token_budget=task.token_budget,
            epoch=task.epoch,
            round=task.round,
            worker=task.worker,
            workers=task.workers,
            cluster_tokens_done=task.cluster_tokens_done,
            cluster_tokens_total=task.cluster_tokens_total,
        )
        return RoundResult(worker=self.worker, rows=rows, **_outcome(outcome))


def _outcome(outcome: dict[str, Any]) -> dict[str, Any]:
    return {
        "next_doc": int(outcome["next_doc"]),
        "tokens": int(outcome["tokens"]),
        "positions": int(outcome["positions"]),
        "loss": float(outcome["loss"]),
        "loss_positions": int(outcome["loss_positions"]),
        "seconds": float(outcome["seconds"]),
    }


def _took(folder: str, name: str) -> bool:
    """Whether this process removed ``folder/name`` (at most one process can)."""
    try:
        os.unlink(os.path.join(folder, name))
    except FileNotFoundError:
        return False
    return True


def _fail_once_if_asked() -> None:
    folder = os.environ.get(EXIT_ONCE_ENV)
    if not folder:
        return
    if _took(folder, "exit-once"):
        os._exit(17)
    if _took(folder, "hang-once"):
        threading.Event().wait()  # until the driver gives up on this worker and kills it
