"""The driver of a distributed run: synchronous rounds over an engine's workers.

Every round, each worker that still has documents to train starts from the same global
spectra, trains the next ``round_tokens`` of its own documents at the round's place in the
global learning-rate schedule, and returns the words it changed; the driver merges them (in
Rust: per word the mean in complex space over the workers that changed it, then the K largest
magnitudes) and checkpoints. A worker's epoch ends with its documents; the run ends when every
worker has trained ``epochs`` epochs.

A round's result depends only on the global spectra, the workers' cursors, the round number
and the seed: with one thread per worker a retried round, or a run resumed from its last
checkpoint, gives the same model bit for bit.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np

from css_rs import _core
from css_rs._core import Vocabulary
from css_rs.config import TrainConfig
from css_rs.distributed.engines import Engine
from css_rs.distributed.shards import ShardSpec, assign_shards, describe_assignment
from css_rs.distributed.worker import RoundResult, RoundTask, WorkerInfo
from css_rs.errors import InputError
from css_rs.files import atomic_write_bytes
from css_rs.model import CSSModel

if TYPE_CHECKING:
    from css_rs._core import _SpectraArrays as SpectraArrays

CHECKPOINT_FORMAT = "css-rs-distributed-checkpoint-1"
SPECTRA_KEYS = ("freq", "re", "im", "counters")


def build_vocabulary(
    engine: Engine, shards: list[ShardSpec], config: TrainConfig
) -> tuple[Vocabulary, dict[str, int]]:
    """The exact vocabulary of all shards and what was counted (tokens, distinct words): one
    counting task per shard, its counts split by word into one bucket per worker, one reducer
    per bucket; built from the frequent words as one process builds it (ids by count, ties by
    the word), so with the same ids."""
    frequent: dict[str, int] = {}
    counted = {"tokens": 0, "distinct_words": 0}
    for bucket in engine.count_words(shards, config, max(1, config.workers)):
        frequent.update(bucket.frequent)
        counted["tokens"] += bucket.tokens
        counted["distinct_words"] += bucket.distinct_words
    vocab = Vocabulary.from_counts(frequent, config.min_word_freq, config.max_vocab_size)
    return vocab, counted


@dataclass
class Cursor:
    """Where a worker stands: its next document and its epoch (0-based)."""

    doc: int = 0
    epoch: int = 0


@dataclass
class RoundRecord:
    """Figures of one finished round."""

    round: int
    epoch: int  # the earliest epoch among the busy workers (1-based)
    tokens: int
    seconds: float  # wall time of the round, merge included
    workers: list[int]  # the busy workers, in order
    worker_tokens: list[int]  # per busy worker
    train_seconds: list[float]  # per busy worker, inside its trainer
    merge_seconds: float
    bytes_returned: int
    loss: float


@dataclass
class DriverState:
    """Everything a resumed run needs besides the vocabulary and the spectra."""

    round: int = 0
    cluster_tokens_done: int = 0
    cursors: list[Cursor] = field(default_factory=list)
    history: list[RoundRecord] = field(default_factory=list)
    elapsed: float = 0.0


@dataclass(frozen=True)
class RoundProgress:
    round: int
    tokens_done: int
    tokens_total: int
    tokens_per_second: float  # the cluster's, over the last round
    eta_seconds: float
    loss: float
    done: bool


def _identity(config: TrainConfig, shards: list[ShardSpec]) -> dict[str, Any]:
    """What must not change between a checkpoint and its resume."""
    return {
        "engine_settings": config.engine_settings() | {"threads": config.threads_per_worker},
        "workers": config.workers,
        "round_tokens": config.round_tokens,
        "vocabulary": [config.min_word_freq, config.max_vocab_size],
        "reading": [config.source, config.text_field, config.max_doc_length],
        "shards": [[s.name, s.size] for s in shards],
    }


class DistributedTrainer:
    """Drives one distributed run on ``engine``; checkpoints after each round to
    ``checkpoint_path`` (when given) and resumes from it."""

    def __init__(
        self,
        engine: Engine,
        config: TrainConfig,
        shards: list[ShardSpec],
        *,
        checkpoint_path: Optional[Path] = None,
    ) -> None:
        self.engine = engine
        self.config = config
        self.shards = shards
        self.assignment = assign_shards(shards, config.workers)
        self.checkpoint_path = checkpoint_path
        self.state = DriverState()
        self.vocab: Optional[Vocabulary] = None
        self.spectra: Optional[SpectraArrays] = None
        self.workers: list[WorkerInfo] = []
        self.resumed = False
        self.vocabulary_seconds = 0.0
        self.counted: dict[str, int] = {}

    # --- setup -------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Vocabulary and initial spectra (or both from the checkpoint), then the workers."""
        if not self._load_checkpoint():
            started = time.perf_counter()
            self.vocab, self.counted = build_vocabulary(self.engine, self.shards, self.config)
            self.vocabulary_seconds = time.perf_counter() - started
            if len(self.vocab) == 0:
                raise InputError(
                    "the vocabulary is empty: nothing to train (lower min_word_freq or add data)"
                )
            self.spectra = _core.initial_spectra(
                len(self.vocab), json.dumps(self.config.engine_settings())
            )
            self.state.cursors = [Cursor() for _ in self.assignment]
        assert self.vocab is not None
        self.workers = self.engine.start_workers(self.assignment, self.vocab, self.config)

    @property
    def tokens_total(self) -> int:
        return sum(w.tokens for w in self.workers) * self.config.epochs

    @property
    def done(self) -> bool:
        return not self._busy()

    def _busy(self) -> list[int]:
        return [
            w.worker
            for w in self.workers
            if w.documents > 0 and self.state.cursors[w.worker].epoch < self.config.epochs
        ]

    # --- rounds ------------------------------------------------------------------------------
    def rounds(self) -> Iterator[RoundProgress]:
        """Runs the rounds to the end, yielding after each (checkpointed) round."""
        while not self.done:
            yield self.run_round()

    def run(self, callback: Optional[Callable[[RoundProgress], Any]] = None) -> CSSModel:
        for progress in self.rounds():
            if callback is not None:
                callback(progress)
        return self.model()

    def tasks(self) -> list[RoundTask]:
        """The tasks of the next round."""
        s = self.state
        return [
            RoundTask(
                worker=w,
                workers=len(self.workers),
                round=s.round,
                first_doc=s.cursors[w].doc,
                epoch=s.cursors[w].epoch,
                token_budget=self.config.round_tokens,
                cluster_tokens_done=s.cluster_tokens_done,
                cluster_tokens_total=self.tokens_total,
            )
            for w in self._busy()
        ]

    def run_round(self) -> RoundProgress:
        assert self.spectra is not None
        started = time.perf_counter()
        tasks = self.tasks()
        results = self.engine.run_round(self.spectra, tasks)
        merge_started = time.perf_counter()
        self.spectra = _core.merge_spectra(
            self.spectra, [r.rows for r in results], self.config.frequency_dim
        )
        merge_seconds = time.perf_counter() - merge_started
        self._advance(results)
        seconds = time.perf_counter() - started
        record = RoundRecord(
            round=self.state.round - 1,
            epoch=min(t.epoch for t in tasks) + 1,
            tokens=sum(r.tokens for r in results),
            seconds=seconds,
            workers=[r.worker for r in results],
            worker_tokens=[r.tokens for r in results],
            train_seconds=[r.seconds for r in results],
            merge_seconds=merge_seconds,
            bytes_returned=sum(r.nbytes for r in results),
            loss=_mean_loss(results),
        )
        self.state.history.append(record)
        self.state.elapsed += seconds
        self.save_checkpoint()
        return self._progress(record)

    def _advance(self, results: list[RoundResult]) -> None:
        s = self.state
        for r in results:
            cursor = s.cursors[r.worker]
            cursor.doc = r.next_doc
            if cursor.doc >= self.workers[r.worker].documents:
                cursor.doc, cursor.epoch = 0, cursor.epoch + 1
            s.cluster_tokens_done += r.tokens
        s.round += 1

    def _progress(self, record: RoundRecord) -> RoundProgress:
        rate = record.tokens / record.seconds if record.seconds > 0 else 0.0
        left = self.tokens_total - self.state.cluster_tokens_done
        return RoundProgress(
            round=record.round + 1,
            tokens_done=self.state.cluster_tokens_done,
            tokens_total=self.tokens_total,
            tokens_per_second=rate,
            eta_seconds=left / rate if rate > 0 else float("inf"),
            loss=record.loss,
            done=self.done,
        )

    # --- results -----------------------------------------------------------------------------
    def model(self) -> CSSModel:
        assert self.spectra is not None and self.vocab is not None
        spectra = _core.spectra_from_arrays(self.spectra, self.config.frequency_dim)
        return CSSModel(spectra, self.vocab, self.config, stats=self.stats())

    def epoch_stats(self) -> list[dict[str, Any]]:
        """Per epoch (rounds grouped by their earliest busy worker's epoch): the mean loss of
        its rounds, its tokens and seconds."""
        out: dict[int, dict[str, Any]] = {}
        for r in self.state.history:
            e = out.setdefault(
                r.epoch, {"epoch": r.epoch, "losses": [], "tokens": 0, "seconds": 0.0}
            )
            e["losses"].append(r.loss)
            e["tokens"] += r.tokens
            e["seconds"] += r.seconds
        return [
            {
                "epoch": e["epoch"],
                "loss": sum(e["losses"]) / len(e["losses"]),
                "tokens": e["tokens"],
                "seconds": e["seconds"],
            }
            for e in out.values()
        ]

    def stats(self) -> dict[str, Any]:
        """Rounds, workers and their throughput, for the model's metadata."""
        h = self.state.history
        per_worker_tokens = [0] * len(self.workers)
        per_worker_seconds = [0.0] * len(self.workers)
        for record in h:
            for w, n, secs in zip(record.workers, record.worker_tokens, record.train_seconds):
                per_worker_tokens[w] += n
                per_worker_seconds[w] += secs
        return {
            "engine": self.config.engine,
            "rounds": len(h),
            "workers": [
                {
                    **describe_assignment(self.assignment)[w.worker],
                    "documents": w.documents,
                    "tokens": w.tokens,
                    "encode_seconds": w.seconds,
                    "tokens_per_second": per_worker_tokens[w.worker]
                    / max(per_worker_seconds[w.worker], 1e-9),
                }
                for w in self.workers
            ],
            "corpus_tokens": sum(w.tokens for w in self.workers),
            "tokens_trained": self.state.cluster_tokens_done,
            "train_seconds": self.state.elapsed,
            "cluster_tokens_per_second": self.state.cluster_tokens_done
            / max(self.state.elapsed, 1e-9),
            "merge_seconds": sum(r.merge_seconds for r in h),
            "bytes_returned": sum(r.bytes_returned for r in h),
            "vocabulary_seconds": self.vocabulary_seconds,
            "counted": self.counted,
        }

    # --- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        """Writes the run's state in one file, atomically (a crash leaves the previous one)."""
        if self.checkpoint_path is None:
            return
        assert self.spectra is not None and self.vocab is not None
        header = {
            "format": CHECKPOINT_FORMAT,
            "identity": _identity(self.config, self.shards),
            "state": asdict(self.state),
            "vocabulary_seconds": self.vocabulary_seconds,
            "counted": self.counted,
        }
        buf = io.BytesIO()
        arrays: dict[str, np.ndarray] = dict(zip(SPECTRA_KEYS, self.spectra))
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        arrays["vocabulary"] = np.frombuffer(self.vocab.to_json().encode(), dtype=np.uint8)
        np.savez(buf, allow_pickle=False, **arrays)
        self.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.checkpoint_path, buf.getvalue())

    def _load_checkpoint(self) -> bool:
        path = self.checkpoint_path
        if path is None or not path.exists():
            return False
        try:
            with np.load(path, allow_pickle=False) as npz:
                header = json.loads(npz["header"].tobytes().decode())
                vocab_json = npz["vocabulary"].tobytes().decode()
                spectra = tuple(npz[k] for k in SPECTRA_KEYS)
        except (OSError, ValueError, KeyError) as e:
            raise InputError(f"{path}: not a readable distributed checkpoint ({e})") from None
        if header.get("format") != CHECKPOINT_FORMAT:
            raise InputError(f"{path}: not a css-rs distributed checkpoint")
        if header.get("identity") != json.loads(json.dumps(_identity(self.config, self.shards))):
            raise InputError(
                f"{path} was made with other settings or data; run with --fresh to start over"
            )
        state = header["state"]
        self.state = DriverState(
            round=state["round"],
            cluster_tokens_done=state["cluster_tokens_done"],
            cursors=[Cursor(**c) for c in state["cursors"]],
            history=[RoundRecord(**r) for r in state["history"]],
            elapsed=state["elapsed"],
        )
        self.vocabulary_seconds = float(header.get("vocabulary_seconds", 0.0))
        self.counted = dict(header.get("counted", {}))
        self.vocab = Vocabulary.from_json(vocab_json)
        self.spectra = (spectra[0], spectra[1], spectra[2], spectra[3])
        self.resumed = True
        return True

    def delete_checkpoint(self) -> None:
        if self.checkpoint_path is not None:
            self.checkpoint_path.unlink(missing_ok=True)


def _mean_loss(results: list[RoundResult]) -> float:
    positions = sum(r.loss_positions for r in results)
    return sum(r.loss for r in results) / positions if positions else float("nan")
