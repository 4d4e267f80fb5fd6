"""The four phases of ``css-rs train``, with checkpoints and resume in every phase.

1. **Stream & build vocabulary**: batches from the source are tokenized once into first-seen
   word ids, appended to the id cache and counted (``IdCache.append``); a checkpoint every
   ``save_checkpoint_every`` batches (at most one every STREAM_CHECKPOINT_SECONDS), costing
   what arrived since the previous one.
2. **Convert to corpus**: the vocabulary is built from the counts, the cached ids are remapped
   to it chunk by chunk into a token-id file and an offsets file, which are memory-mapped:
   memory does not grow with the corpus.
3. **Train** with the Rust engine in short steps; a checkpoint of the ``TrainingState`` every
   ``checkpoint_every_seconds``.
4. **Save**: backup of the previous model, the model (atomically), its metadata.

Ctrl+C in any phase saves a checkpoint of the work so far (exit 130); the next run resumes.
Resuming is exact: with ``threads = 1`` an interrupted-and-resumed run gives the same spectra
as an uninterrupted one, because documents, counts, source position and training state are all
restored exactly and everything derived from them is recomputed deterministically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import math
import mmap
import os
import signal
import sys
import threading
import time
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, TypeVar

import numpy as np
import orjson

import css_rs
from css_rs import run_report
from css_rs._core import Progress, TrainingState, Vocabulary
from css_rs.checkpoint import (
    PHASE_STREAMING,
    PHASE_TRAINING,
    Checkpoint,
    CheckpointError,
    CheckpointStore,
    FileRecord,
    HashingWriter,
    exclusive_lock,
    exclusive_run,
    remove_temporaries,
)
from css_rs.config import ResolvedConfig, TrainConfig, config_differences
from css_rs.errors import CssRsError, InputError
from css_rs.files import check_output_path, metadata_path, publish_model
from css_rs.id_cache import IdCache
from css_rs.model import CSSModel
from css_rs.redaction import redact_object
from css_rs.reporter import (
    Reporter,
    format_count,
    format_quantity,
    format_rate,
    silence_stdout,
)
from css_rs.test_hooks import TestHooks
from css_rs.training import Trainer, collapse_warnings, untrained_loss

if TYPE_CHECKING:  # the sources import their HTTP and parquet stacks: only when streaming
    from css_rs.sources import Batch, Source


# Streaming checkpoints are paced by time as well as by batches (see _stream_checkpoint_due),
# and announced in a log at most once a minute.
STREAM_CHECKPOINT_SECONDS = 10.0
STREAM_LOG_SECONDS = 60.0


class Phase(enum.Enum):
    """Where a run is, and so what Ctrl+C or a failing source must save."""

    STARTING = "starting"  # nothing new since the last checkpoint
    STREAMING = "streaming"  # the batches since the last streaming checkpoint
    CONVERTING = "converting"  # nothing: converting again from the streaming checkpoint
    TRAINING = "training"  # the trainer's state
    SAVING = "saving"  # nothing: the last training checkpoint holds the finished state


# --- interrupt safety ---------------------------------------------------------------------


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Holds back Ctrl+C while a unit of work must finish as a whole (a batch being cached and
    counted, a checkpoint being written); the KeyboardInterrupt is raised right after it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


# --- run state ----------------------------------------------------------------------------


_Record = TypeVar("_Record", bound="JsonRecord")


class JsonRecord:
    """A dataclass that round-trips through a JSON object; keys it does not know (from a
    checkpoint of another version) are ignored."""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_json(cls: type[_Record], obj: Mapping[str, Any]) -> _Record:
        """Raises ValueError naming the field whose value does not fit its type (a counter
        that is not a count, a duration that is not a finite number >= 0, ...)."""
        if not isinstance(obj, Mapping):
            raise ValueError(f"{obj!r} is not an object")
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        kept = {k: v for k, v in obj.items() if k in names}
        for name, value in kept.items():
            if not _fits(value, hints[name]):
                raise ValueError(f"field {name!r} = {_short(value)} is not a {hints[name]}")
        return cls(**kept)


_INT_LIMIT = 2**63


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a record field's type: ints are counts (0..2^63), floats
    finite and >= 0, ``Any`` any JSON value whose integers stay within 64 bits."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return _json_ints_fit(value)
    if origin is typing.Union:
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return type(value) is int and 0 <= value < _INT_LIMIT
    if hint is float:
        return type(value) in (int, float) and math.isfinite(value) and 0 <= value < _INT_LIMIT
    if origin is list:
        return isinstance(value, list) and all(_fits(v, args[0]) for v in value)
    if origin is tuple:
        return (
            isinstance(value, (list, tuple))
            and len(value) == len(args)
            and all(_fits(v, a) for v, a in zip(value, args))
        )
    if origin is dict:
        return isinstance(value, dict) and all(
            _fits(k, args[0]) and _fits(v, args[1]) for k, v in value.items()
        )
    return isinstance(value, hint)


def _json_ints_fit(value: Any) -> bool:
    if isinstance(value, bool) or value is None or isinstance(value, (str, float)):
        return True
    if isinstance(value, int):
        return -_INT_LIMIT <= value < 2 * _INT_LIMIT
    if isinstance(value, list):
        return all(_json_ints_fit(v) for v in value)
    if isinstance(value, dict):
        return all(_json_ints_fit(v) for v in value.values())
    return False


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass
class StreamStats(JsonRecord):
    """Phase 1 counters, carried across resumed runs in the checkpoint manifest."""

    batches: int = 0
    documents: int = 0
    tokens: int = 0
    skipped: int = 0
    seconds: float = 0.0
    position: Optional[dict[str, Any]] = None
    complete: bool = False
    total_documents: Optional[int] = None
    # Local sources: {path: [size, mtime_ns]} of the input files read so far, so that a
    # resumed run notices a file that changed (shrank, was rewritten) since the checkpoint.
    inputs: Optional[dict[str, tuple[int, int]]] = None


@dataclass
class TrainStats(JsonRecord):
    """Phases 2 and 3 figures, carried across resumed runs."""

    convert_seconds: float = 0.0
    seconds: float = 0.0
    corpus_documents: int = 0
    corpus_tokens: int = 0
    cache_bytes: int = 0  # the id cache phase 1 wrote (its words not included)
    distinct_words: int = 0  # words the id cache numbered, rare ones included
    epoch_stats: list[dict[str, Any]] = field(default_factory=list)
    tokens_per_second: float = 0.0

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> TrainStats:
        stats = super().from_json(obj)
        for entry in stats.epoch_stats:
            # The engine's figures: numbers (a loss with no sampled position is NaN: null).
            if not _fits(entry, dict[str, Optional[float]]) or not _fits(entry.get("epoch"), int):
                raise ValueError(f"field 'epoch_stats' holds {_short(entry)}")
        return stats


@dataclass
class EncodedCorpus:
    """The converted corpus: memory-mapped token ids and document offsets."""

    ids: np.ndarray
    offsets: np.ndarray
    files: dict[str, FileRecord]
    maps: list[mmap.mmap] = field(default_factory=list)

    @classmethod
    def open(
        cls, ids_path: Path, offsets_path: Path, files: dict[str, FileRecord]
    ) -> EncodedCorpus:
        maps = [_map_read_only(ids_path), _map_read_only(offsets_path)]
        ids = np.frombuffer(maps[0], dtype=np.uint32)
        offsets = np.frombuffer(maps[1], dtype=np.int64)
        return cls(ids, offsets, files, maps)

    def release_pages(self) -> None:
        """Drops the corpus pages from this process's resident set. They stay in the page
        cache and come back on the next read (a minor fault), but without this the RSS grows
        by 4 bytes per corpus token as training reads it, which looks like a leak to anyone
        watching memory."""
        if not hasattr(mmap, "MADV_DONTNEED"):
            return
        for mapped in self.maps:
            with contextlib.suppress(OSError, ValueError):
                mapped.madvise(mmap.MADV_DONTNEED)

    @property
    def documents(self) -> int:
        return len(self.offsets) - 1

    @property
    def tokens(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class ResumePlan:
    """Which stages of a checkpoint can be reused by this run."""

    stream: bool  # run phase 1 (from the checkpoint's position, if any)
    corpus: bool  # reuse the converted corpus
    state: bool  # reuse the training state

    @classmethod
    def fresh(cls) -> ResumePlan:
        return cls(stream=True, corpus=False, state=False)

    @classmethod
    def for_checkpoint(cls, checkpoint: Checkpoint, config: TrainConfig) -> ResumePlan:
        """Normally everything is reused. After ``--force`` with other settings: other dataset
        settings stream on from the position, other vocabulary settings re-convert, other
        model or training settings restart training (on the same documents)."""
        changed = {line.split(":", 1)[0] for line in config_differences(checkpoint.config, config)}
        sections = config.sections()

        def touches(*names: str) -> bool:
            return any(n in changed for s in names for n in sections[s])

        training = checkpoint.phase == PHASE_TRAINING
        stream = not checkpoint.stream.get("complete", False) or touches("dataset")
        corpus = training and not stream and not touches("vocabulary")
        state = corpus and "state" in checkpoint.files and not touches("model", "training")
        return cls(stream=stream, corpus=corpus, state=state)


@dataclass
class RunResult:
    model: CSSModel
    model_path: Path
    metadata_path: Path
    backup: Optional[Path]
    stream: StreamStats
    train: TrainStats
    vocabulary_size: int
    elapsed: float


# --- sources ------------------------------------------------------------------------------

LOCAL_SOURCES = ("text", "jsonl", "parquet")


def open_source(config: TrainConfig) -> Source:
    """The data source of ``config`` (``css_rs.sources``)."""
    from css_rs.sources import make_source

    return make_source(config)


# --- the run --------------------------------------------------------------------------------


class TrainingRun:
    """One ``css-rs train`` invocation: resumes or starts, runs the four phases, reports."""

    def __init__(
        self,
        resolved: ResolvedConfig,
        reporter: Reporter,
        *,
        fresh: bool = False,
        force: bool = False,
        resume_command: str = "css-rs train",
        hooks: Optional[TestHooks] = None,
    ) -> None:
        self.config = resolved.config
        self.resolved = resolved
        self.out = reporter
        self.fresh = fresh
        self.force = force
        self.resume_command = resume_command
        self.hooks = hooks or TestHooks()
        self.store = CheckpointStore(self.config.checkpoint_path, self.config.cache_dir)
        self.generation = 0
        self.stream = StreamStats()
        self.train_stats = TrainStats()
        self.vocab: Optional[Vocabulary] = None
        self.cache: Optional[IdCache] = None
        self.corpus: Optional[EncodedCorpus] = None
        self.trainer: Optional[Trainer] = None
        self.started = time.monotonic()
        self._input_files: list[Path] = []  # the local source's files, in reading order
        self.elapsed_before = 0.0  # wall time of earlier, interrupted runs
        self.phase = Phase.STARTING
        # The last streaming checkpoint: when (monotonic), what it held (shown in the progress
        # line), and when a log line last said so.
        self._stream_saved_at = time.monotonic()
        self._stream_saved: Optional[str] = None
        self._stream_saved_logged: Optional[str] = None
        self._stream_saved_logged_at: Optional[float] = None

    # -- entry point ----------------------------------------------------------------------

    def run(self) -> RunResult:
        self._check_output_paths()
        self._check_input()
        model_path = Path(self.config.model_path)
        model_busy = (
            "is writing this model; wait for it to finish, or give this run another --model-path"
        )
        with exclusive_run(self.store.manifest_path), exclusive_lock(model_path, model_busy):
            # No other run uses this checkpoint or model: temporaries there are a dead run's.
            self.store.remove_temporaries()
            remove_temporaries(model_path)
            remove_temporaries(metadata_path(model_path))
            return self._run()

    def _check_output_paths(self) -> None:
        """Refuses, before any work, outputs that saving would replace although they are not
        regular files (a device, a FIFO, a folder): the model, its metadata, the checkpoint
        manifest. Nothing is created beside them."""
        model_path = Path(self.config.model_path)
        for path in (model_path, metadata_path(model_path), self.store.manifest_path):
            check_output_path(path)

    def _check_input(self) -> None:
        """A local source's path is checked (and its files listed) before anything is printed,
        so that a missing --path or a path that does not exist is the only line of output. Not
        when a checkpoint will be resumed: it may hold everything the input had to give."""
        if self.config.source in LOCAL_SOURCES and (self.fresh or not self.store.exists()):
            open_source(self.config)

    def _run(self) -> RunResult:
        run_report.announce(self.out, self.resolved)
        checkpoint = self._open_checkpoint()
        plan = (
            ResumePlan.fresh()
            if checkpoint is None
            else ResumePlan.for_checkpoint(checkpoint, self.config)
        )
        try:
            state = self._restore(checkpoint, plan)
            if plan.stream:
                self._stream_phase()
            if self.corpus is None or not plan.corpus:
                self._convert_phase()
            model = self._train_phase(state if plan.state else None)
            self.phase = Phase.SAVING
            result = self._save_phase(model)
        except KeyboardInterrupt:
            self._interrupted()
            raise
        except BrokenPipeError:
            # The reader of our output went away (`css-rs train | head`): as Ctrl+C, keep the
            # work so far; stdout is gone, so the resume hint goes to stderr.
            silence_stdout()
            self._interrupted()
            if self.store.exists():
                print(
                    "css-rs: output closed (broken pipe); checkpoint saved, resume with: "
                    + self.resume_command,
                    file=sys.stderr,
                    flush=True,
                )
            raise
        except CssRsError:
            self._failed()
            raise
        finally:
            if self.cache is not None:
                self.cache.close()
        self.store.delete()
        run_report.summary(self.out, result, self.config.source)
        return result

    # -- checkpoint handling ----------------------------------------------------------------

    def _open_checkpoint(self) -> Optional[Checkpoint]:
        store = self.store
        if self.fresh or not self.config.resume_from_checkpoint:
            if store.exists():
                store.delete()
                self.out.ok(f"Removed previous checkpoint {store.manifest_path} (starting fresh)")
            store.clear_cache()
            return None
        if not store.exists():
            store.clear_cache()  # leftovers of a run killed before its first checkpoint
            return None
        checkpoint = store.load()
        self._check_records(checkpoint)
        differences = config_differences(checkpoint.config, self.config)
        if differences and not self.force:
            raise InputError(
                f"checkpoint {store.manifest_path} was made with other settings ("
                + "; ".join(differences)
                + "): run with --force to resume with the new settings, or --fresh to start over"
            )
        store.truncate_shards(checkpoint)
        self.generation = checkpoint.generation
        stream = StreamStats.from_json(checkpoint.stream)
        run_report.announce_resume(self.out, checkpoint, stream, differences)
        return checkpoint

    def _check_records(self, checkpoint: Checkpoint) -> None:
        """The manifest's counters, durations and positions must fit their types: its
        checksum catches damage, not a manifest written wrong (by hand, or by a bug)."""
        try:
            StreamStats.from_json(checkpoint.stream)
            TrainStats.from_json(checkpoint.training)
            elapsed = checkpoint.training.get("elapsed_before", 0.0)
            if not _fits(elapsed, float):
                raise ValueError(f"field 'elapsed_before' = {_short(elapsed)}")
        except ValueError as e:
            raise CheckpointError(
                f"checkpoint file {self.store.manifest_path} is damaged: {e}; it was left in "
                "place (start over with --fresh, which deletes the checkpoint)"
            ) from None

    def _restore(
        self, checkpoint: Optional[Checkpoint], plan: ResumePlan
    ) -> Optional[TrainingState]:
        """Restores documents, counts, position and (per ``plan``) corpus and training state;
        returns the TrainingState to resume from, or None."""
        if checkpoint is None:
            self.cache = IdCache.fresh(self.store)
            return None
        self.stream = StreamStats.from_json(checkpoint.stream)
        self.train_stats = TrainStats.from_json(checkpoint.training)
        self.elapsed_before = float(checkpoint.training.get("elapsed_before", 0.0))
        # The word table (a pass over the cache to recount) only when streaming goes on or the
        # vocabulary is built again; training on the converted corpus needs neither.
        self.cache = IdCache.restore(
            self.store, checkpoint.shards, checkpoint.words, with_table=not plan.corpus
        )
        self.out.ok(f"Restored {format_count(self.stream.documents)} documents from checkpoint")
        self.out.ok(f"Restored {format_count(self.cache.distinct_words)} distinct words")
        if plan.stream:
            self.stream.complete = False
        if plan.corpus:
            vocab_json = self.store.read_sidecar(checkpoint.files["vocabulary"]).decode("utf-8")
            self.vocab = _vocabulary_from_json(
                vocab_json, self.store.path_of(checkpoint.files["vocabulary"].name)
            )
            self.corpus = self._map_corpus(checkpoint.files)
        if plan.state:
            data = self.store.read_sidecar(checkpoint.files["state"])
            # Opaque bytes: the engine checks them when the trainer resumes from them.
            return css_rs.TrainingState.from_bytes(data)
        return None

    def _vocabulary(self) -> Vocabulary:
        """The run's vocabulary, which phase 2 builds or a checkpoint restores before any use."""
        if self.vocab is None:
            raise RuntimeError("the vocabulary is used before phase 2 built it")
        return self.vocab

    def _elapsed(self) -> float:
        return self.elapsed_before + (time.monotonic() - self.started)

    def _write_manifest(
        self,
        phase: str,
        files: dict[str, FileRecord],
        shards: tuple[list[FileRecord], list[FileRecord]],
    ) -> None:
        training = {**self.train_stats.to_json(), "elapsed_before": self._elapsed()}
        checkpoint = Checkpoint(
            phase=phase,
            config=self.config.to_dict(),
            stream=self.stream.to_json(),
            shards=shards[0],
            words=shards[1],
            files=files,
            training=training,
            generation=self.generation,
        )
        self.hooks.reached("checkpoint")
        self.store.save(checkpoint)

    def _read_inputs(self) -> Optional[dict[str, tuple[int, int]]]:
        """Size and modification time of the local input files read so far (up to the one
        the position is in), or None for a source without local files."""
        position = self.stream.position or {}
        index = position.get("file_index")
        if not self._input_files or not isinstance(index, int):
            return None
        out = {}
        for path in self._input_files[: index + 1]:
            with contextlib.suppress(OSError):
                st = path.stat()
                out[str(path)] = (st.st_size, st.st_mtime_ns)
        return out

    def _check_inputs_unchanged(self) -> None:
        """Refuses to resume streaming when an input file read before the checkpoint changed
        since (``--force`` resumes anyway, with a warning): the position inside it would point
        at other data, or past its end."""
        for name, (size, mtime_ns) in (self.stream.inputs or {}).items():
            try:
                st = os.stat(name)
                now: Optional[tuple[int, int]] = (st.st_size, st.st_mtime_ns)
            except OSError:
                now = None
            if now == (size, mtime_ns):
                continue
            if now is None:
                what = "is gone"
            elif now[0] != size:
                what = f"is now {format_quantity(now[0], 'byte')} (was {size})"
            else:
                what = "was modified (same size, new modification time)"
            message = f"input file {name} {what} since the checkpoint {self.store.manifest_path}"
            if not self.force:
                raise InputError(
                    f"{message}: restore it, run with --fresh to start over, or with --force to "
                    "resume reading it where the checkpoint stands"
                )
            self.out.line(f"warning: {message}; resuming anyway (--force)")

    def _checkpoint_streaming(self) -> None:
        """Documents so far and the words first seen since the last checkpoint (appended and
        synced), and the source position. Counts are not saved: resuming recounts the ids."""
        assert self.cache is not None
        self.stream.inputs = self._read_inputs() or self.stream.inputs
        with deferred_interrupts():
            shards = self.cache.sync()
            self.generation += 1
            self._write_manifest(PHASE_STREAMING, {}, shards)
        done = format_quantity(self.stream.batches, "batch", "batches")
        self._stream_saved_at = time.monotonic()
        self._stream_saved = done
        self._announce_stream_checkpoint(done)

    def _announce_stream_checkpoint(self, done: str) -> None:
        """On a terminal the progress line shows the last checkpoint; in a log, one line a
        minute at most; and the last one, once (a log of mostly "checkpoint saved" is
        unreadable)."""
        if self.stream.complete:
            if self._stream_saved_logged == done:
                return
        elif self.out.live:
            return
        else:
            last = self._stream_saved_logged_at
            if last is not None and time.monotonic() - last < STREAM_LOG_SECONDS:
                return
        self._stream_saved_logged_at = time.monotonic()
        self._stream_saved_logged = done
        documents = format_quantity(self.stream.documents, "document")
        self.out.saving(f"Checkpoint saved: {self.store.manifest_path} ({done}, {documents})")

    def _checkpoint_training(self, *, quiet: bool = False) -> None:
        """The converted corpus, the built vocabulary and (once training runs) its state."""
        assert self.cache is not None and self.corpus is not None
        with deferred_interrupts():
            files = dict(self.corpus.files)
            self.generation += 1
            if self.trainer is not None:
                state = self.trainer.state().to_bytes()
                files["state"] = self.store.write_sidecar("state", self.generation, "bin", state)
                self._record_epochs()
            self._write_manifest(PHASE_TRAINING, files, self.cache.records())
        if not quiet:
            self.out.saving(f"Checkpoint saved: {self.store.manifest_path}")

    def _failed(self) -> None:
        """A source gave up (network down, retries exhausted): keep what was streamed."""
        if self.phase is not Phase.STREAMING:
            return
        try:
            self._checkpoint_streaming()
        except (OSError, CssRsError) as e:  # the original error is the one to report
            self.out.line(f"Could not save a checkpoint: {e}")
            return
        self.out.line(f"Resume with: {self.resume_command}")

    def _interrupted(self) -> None:
        self.out.line()
        if self.phase is Phase.STREAMING:
            self.out.line("Interrupted: saving a checkpoint...")
            self._checkpoint_streaming()
        elif self.phase is Phase.TRAINING:
            self.out.line("Interrupted: saving a checkpoint...")
            self._checkpoint_training()
        else:
            self.out.line("Interrupted.")
        if self.store.exists():
            self.out.line(f"Resume with: {self.resume_command}")

    # -- phase 1 --------------------------------------------------------------------------

    def _stream_phase(self) -> bool:
        """Streams batches into the cache and the counts; returns whether any arrived."""
        self.out.phase(1, "STREAMING DATA & BUILDING VOCABULARY")
        source = open_source(self.config)
        with (
            contextlib.closing(source)
            if hasattr(source, "close")
            else contextlib.nullcontext(source)
        ):
            if self.stream.position is not None:
                source.resume(self.stream.position)
                self._check_inputs_unchanged()
            self._input_files = [Path(p) for p in getattr(source, "files", [])]
            self.stream.total_documents = source.total_documents
            if self.stream.total_documents:
                self.out.line(
                    f"Dataset has {format_quantity(self.stream.total_documents, 'row')}"
                    + (
                        f" in {self.config.split} split"
                        if self.config.source.startswith("hf")
                        else ""
                    )
                )
            self.out.line(f"Streaming from {run_report.describe_source(self.config)}...")
            self.out.line()
            self.phase = Phase.STREAMING
            arrived = self._stream_batches(source)
            self.stream.position = source.position
            self.stream.skipped = source.skipped
        self.stream.complete = True
        self._checkpoint_streaming()
        self.phase = Phase.CONVERTING
        if self.stream.skipped:
            self.out.line(f"Skipped {format_quantity(self.stream.skipped, 'row')} without text")
        self._note_batch_limit()
        return arrived

    def _note_batch_limit(self) -> None:
        """Says so when streaming stopped at ``max_batches`` rather than at the end of the
        data: the guide's default of 100 batches suits a quick look at a huge Hugging Face
        dataset, but would otherwise cut a local file short without a word."""
        limit = self.config.batch_limit()
        if limit is None or self.stream.batches < limit:
            return
        total = self.stream.total_documents
        if total is not None and self.stream.documents >= total:
            return
        self.out.line(
            f"Note: stopped at max_batches = {limit} ({format_count(self.stream.documents)} "
            "documents); the source may have more. Use --max-batches none to read all of it."
        )

    def _stream_batches(self, source: Source) -> bool:
        assert self.cache is not None
        stats, every = self.stream, self.config.save_checkpoint_every
        base_seconds, t0 = stats.seconds, time.monotonic()
        arrived = False
        with self.out.task("Streaming", total=self._expected_documents()) as bar:
            batches = source.iter_batches()
            with contextlib.closing(batches):  # stops the prefetch thread on ^C, too
                for batch in batches:
                    self._take_batch(batch, base_seconds, t0)
                    arrived = True
                    bar.update(stats.documents, self._stream_line())
                    self.hooks.reached("batch")
                    if stats.batches % every == 0 and self._stream_checkpoint_due():
                        self._checkpoint_streaming()
            stats.seconds = base_seconds + time.monotonic() - t0
            bar.update(stats.documents, self._stream_line())
        return arrived

    def _stream_checkpoint_due(self) -> bool:
        """Every ``save_checkpoint_every`` batches, but not more often than every
        STREAM_CHECKPOINT_SECONDS (or ``checkpoint_every_seconds``, if shorter): a local file
        delivers batches faster than a checkpoint is worth (gcide: ~600 checkpoints in 18 s of
        streaming, most of its time), while a Hugging Face stream is paced by the network."""
        floor = min(STREAM_CHECKPOINT_SECONDS, self.config.checkpoint_every_seconds)
        return time.monotonic() - self._stream_saved_at >= floor

    def _take_batch(self, batch: Batch, base_seconds: float, t0: float) -> None:
        """Caches and counts one batch: all of it or, on Ctrl+C, none of it."""
        assert self.cache is not None
        stats = self.stream
        with deferred_interrupts():
            stats.tokens += self.cache.append(batch.documents)
            stats.documents += len(batch.documents)
            stats.batches += 1
            stats.position = dict(batch.position)
            stats.skipped = int(batch.position.get("skipped", stats.skipped))
            stats.seconds = base_seconds + time.monotonic() - t0

    def _expected_documents(self) -> Optional[int]:
        limit = self.config.batch_limit()
        expected = None if limit is None else limit * self.config.batch_size
        total = self.stream.total_documents
        if total is not None:
            expected = total if expected is None else min(expected, total)
        return expected

    def _stream_line(self) -> str:
        s = self.stream
        rate = s.seconds if s.seconds > 0 else float("inf")
        parts = [
            f"{format_count(s.documents)} docs",
            f"{format_count(s.tokens)} tokens",
            f"{format_rate(s.documents / rate)} docs/s",
            f"{format_rate(s.tokens / rate)} tokens/s",
        ]
        if s.total_documents:
            parts.append(f"dataset {100.0 * s.documents / s.total_documents:.2f}%")
        if self._stream_saved is not None and self.out.live:
            parts.append(f"saved at {self._stream_saved}")
        return " · ".join(parts)

    # -- phase 2 --------------------------------------------------------------------------

    def _convert_phase(self) -> None:
        self.out.phase(2, "CONVERTING TO CORPUS")
        cfg = self.config
        t0 = time.monotonic()
        assert self.cache is not None
        self.vocab, remap = self.cache.vocabulary(cfg.min_word_freq, cfg.max_vocab_size)
        if len(self._vocabulary()) == 0:
            times = format_quantity(cfg.min_word_freq, "time")
            documents = format_quantity(self.stream.documents, "document")
            raise InputError(
                f"the vocabulary is empty: no word occurs {times} in {documents}; lower "
                "--min-word-freq or stream more documents"
            )
        self.out.ok(
            f"Vocabulary built: {format_count(len(self._vocabulary()))} words of "
            f"{format_count(self.cache.distinct_words)} distinct (min_word_freq "
            f"{cfg.min_word_freq}, max_vocab_size {format_count(cfg.max_vocab_size)})"
        )
        self.corpus = self._encode_corpus(remap)
        del remap
        self.train_stats.convert_seconds = time.monotonic() - t0
        self.train_stats.corpus_documents = self.corpus.documents
        self.train_stats.corpus_tokens = self.corpus.tokens
        dropped = self.stream.documents - self.corpus.documents
        self.out.ok(
            f"Corpus: {format_count(self.corpus.documents)} documents, "
            f"{format_count(self.corpus.tokens)} tokens in the vocabulary"
            + (f" ({format_count(dropped)} empty documents dropped)" if dropped else "")
        )
        self.train_stats.cache_bytes = self.cache.bytes
        self.train_stats.distinct_words = self.cache.distinct_words
        if self.stream.tokens:
            self.out.ok(
                f"Id cache: {self.cache.bytes / 1e6:.1f} MB, "
                f"{self.cache.bytes / self.stream.tokens:.2f} bytes a token"
            )
        self.cache.release_table()  # training needs only the corpus: free the words' memory
        self._checkpoint_training(quiet=True)

    def _encode_corpus(self, remap: np.ndarray) -> EncodedCorpus:
        """Remaps the cached ids chunk by chunk into ids/offsets files (empty documents
        dropped), hashing as it writes, and memory-maps the result."""
        assert self.cache is not None
        generation = self.generation + 1  # the generation of the checkpoint that will name them
        ids_name, offsets_name = f"corpus.{generation}.ids.u32", f"corpus.{generation}.offsets.i64"
        with (
            HashingWriter(self.store.path_of(ids_name)) as ids_out,
            HashingWriter(self.store.path_of(offsets_name)) as offsets_out,
            self.out.task("Converting", total=self.stream.documents) as bar,
        ):
            offsets_out.write(np.zeros(1, dtype=np.int64).tobytes())
            base, seen = 0, 0
            for ids, offsets, read in self.cache.iter_corpus_chunks(remap):
                ids_out.write(np.ascontiguousarray(ids, dtype=np.uint32).tobytes())
                offsets_out.write((base + offsets[1:]).astype(np.int64).tobytes())
                base += len(ids)
                seen += read
                bar.update(seen, f"{format_count(seen)} docs · {format_count(base)} tokens")
                self.hooks.reached("convert")
        if base == 0:
            raise InputError(
                "the corpus is empty: no cached document contains a vocabulary word; "
                "lower --min-word-freq or stream more documents"
            )
        files = {"ids": ids_out.record, "offsets": offsets_out.record}
        vocab = self.store.write_sidecar(
            "vocabulary", generation, "json", self._vocabulary().to_json().encode("utf-8")
        )
        files["vocabulary"] = vocab
        return self._map_corpus(files)

    def _map_corpus(self, files: dict[str, FileRecord]) -> EncodedCorpus:
        path_of = self.store.path_of
        return EncodedCorpus.open(path_of(files["ids"].name), path_of(files["offsets"].name), files)

    # -- phase 3 --------------------------------------------------------------------------

    def _train_phase(self, state: Optional[TrainingState]) -> CSSModel:
        assert self.corpus is not None
        cfg = self.config
        self.out.phase(3, "TRAINING CSS MODEL")
        self.out.settings(
            "Initialized CSS model",
            {
                "Vocabulary size": format_count(len(self._vocabulary())),
                "Corpus tokens": format_count(self.corpus.tokens),
                "Frequency dimension": str(cfg.frequency_dim),
                "Max frequencies per word": str(cfg.max_frequencies),
                "Negative samples per positive": str(cfg.negative_count),
                "Epochs": str(cfg.epochs),
                "Threads": "all cores" if cfg.threads == 0 else str(cfg.threads),
            },
        )
        if state is not None:
            self.out.ok("Restored training state from checkpoint")
        else:
            self.train_stats.seconds = 0.0
            self.train_stats.epoch_stats = []
        self.out.line()
        try:
            self.trainer = css_rs.Trainer(
                (self.corpus.ids, self.corpus.offsets), self._vocabulary(), cfg, state=state
            )
        except InputError as e:
            if state is None:
                raise
            raise InputError(
                f"the training state in checkpoint {self.store.manifest_path} does not match "
                f"this corpus and configuration ({e}); start over with --fresh"
            ) from None
        # From here on Ctrl+C saves the trainer's state; before, the last checkpoint has it all.
        self.phase = Phase.TRAINING
        self._train_steps()
        self._record_epochs()
        self._warn_if_collapsed()
        # A checkpoint of the finished state: a crash while saving then costs no training.
        self._checkpoint_training(quiet=True)
        return self.trainer.model()

    def _train_steps(self) -> None:
        assert self.corpus is not None and self.trainer is not None
        trainer, stats, corpus = self.trainer, self.train_stats, self.corpus
        base_seconds, t0 = stats.seconds, time.monotonic()
        last_checkpoint = t0
        printed = len(stats.epoch_stats)
        with self.out.task("Training", total=None) as bar:
            progress = trainer.progress
            while not trainer.done:
                progress = trainer.step(seconds=self.hooks.step_seconds)
                corpus.release_pages()
                stats.seconds = base_seconds + time.monotonic() - t0
                stats.tokens_per_second = float(progress.tokens_per_second)
                bar.update(progress.tokens_done, _train_line(progress), total=progress.tokens_total)
                printed = self._print_new_epochs(printed)
                self.hooks.reached("step")
                if (
                    time.monotonic() - last_checkpoint >= self.config.checkpoint_every_seconds
                    and not trainer.done
                ):
                    self._checkpoint_training()
                    last_checkpoint = time.monotonic()
            bar.update(progress.tokens_done, _train_line(progress), total=progress.tokens_total)
        self._print_new_epochs(printed)

    def _warn_if_collapsed(self) -> None:
        """ALGORITHM.md: training must never collapse silently."""
        epochs = self.train_stats.epoch_stats
        for message in collapse_warnings(
            epochs, len(self._vocabulary()), self.config.frequency_dim
        ):
            self.out.line(f"warning: {message}")

    def _record_epochs(self) -> None:
        """Merges the engine's per-epoch figures into ours (a resumed engine may only know the
        epochs it finished itself)."""
        if self.trainer is None:
            return
        by_epoch = {int(e["epoch"]): dict(e) for e in self.train_stats.epoch_stats}
        for e in self.trainer.epoch_stats:
            by_epoch[int(e["epoch"])] = dict(e)
        self.train_stats.epoch_stats = [by_epoch[k] for k in sorted(by_epoch)]

    def _print_new_epochs(self, printed: int) -> int:
        self._record_epochs()
        for e in self.train_stats.epoch_stats[printed:]:
            self.out.line(
                f"  Epoch {e['epoch']}/{self.config.epochs}: loss {float(e['loss']):.4f} "
                f"(untrained {untrained_loss(self.config):.4f}), "
                f"avg active {float(e['avg_active']):.2f} frequencies"
                + (
                    f", effective number {float(e['effective_frequencies']):.1f}"
                    f"/{self.config.frequency_dim}"
                    if e.get("effective_frequencies")
                    else ""
                )
                + (
                    f", {format_rate(e['tokens'] / e['seconds'])} tokens/s"
                    if e.get("seconds")
                    else ""
                )
            )
        return len(self.train_stats.epoch_stats)

    # -- phase 4 --------------------------------------------------------------------------

    def _save_phase(self, model: CSSModel) -> RunResult:
        cfg = self.config
        self.out.phase(4, "SAVING MODEL")
        model_path = Path(cfg.model_path)
        meta_path = metadata_path(model_path)
        self.out.line(f"Saving model to {model_path}...")
        data = model.to_bytes()
        result = RunResult(
            model,
            model_path,
            meta_path,
            None,
            self.stream,
            self.train_stats,
            len(self._vocabulary()),
            self._elapsed(),
        )
        metadata = run_report.metadata(self.resolved, self.stream, self.train_stats, result)
        metadata["model_sha256"] = hashlib.sha256(data).hexdigest()
        meta_bytes = orjson.dumps(
            redact_object(metadata), option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY
        )
        # Model and metadata are written in full before either replaces anything; the backup
        # is made then, and old backups are pruned only once both are in place.
        result.backup = publish_model(
            model_path, data, (meta_path, meta_bytes), keep_backups=cfg.keep_backups
        )
        if result.backup is not None:
            self.out.ok(f"Backup created: {result.backup}")
        self.out.ok(f"Model saved ({len(data) / 1e6:.2f} MB)")
        self.out.line(f"  Words: {format_count(len(model))}")
        if self.train_stats.epoch_stats:
            avg = float(self.train_stats.epoch_stats[-1]["avg_active"])
            self.out.line(f"  Avg sparsity: {avg:.2f} frequencies/word")
        self.hooks.reached("saved")
        self.out.line()
        self.out.ok(f"Metadata saved: {meta_path}")
        return result


# --- helpers ------------------------------------------------------------------------------


def _map_read_only(path: Path) -> mmap.mmap:
    with open(path, "rb") as fh:
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)


def _train_line(progress: Progress) -> str:
    return (
        f"epoch {progress.epoch}/{progress.epochs} · loss {float(progress.loss):.4f} · "
        f"active {float(progress.avg_active):.2f} · lr {float(progress.learning_rate):.4f} · "
        f"{format_rate(float(progress.tokens_per_second))} tokens/s"
    )


def _vocabulary_from_json(text: str, path: Path) -> Vocabulary:
    try:
        return css_rs.Vocabulary.from_json(text)
    except InputError as e:
        raise InputError(
            f"checkpoint file {path} is damaged: {e}; start over with --fresh"
        ) from None


__all__ = [
    "ResumePlan",
    "RunResult",
    "TrainingRun",
    "deferred_interrupts",
]
