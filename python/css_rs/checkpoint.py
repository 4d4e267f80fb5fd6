"""Checkpoints: a JSON manifest naming sidecar files in the run's cache folder.

Layout (``checkpoint_path`` is the manifest; the cache folder is ``cache_dir`` or
``<checkpoint without .json>.cache`` beside it)::

    training_checkpoint.json          manifest: phase, config, counters, source position, files
    training_checkpoint.cache/
        ids-00000.u32 ...             streamed documents as first-seen word ids (u32, little
                                      endian), each document ended by END_OF_DOCUMENT;
                                      append-only
        words-00000.txt ...           the words of those ids, one a line, in id order;
                                      append-only (a checkpoint appends the new words only)
        vocabulary.<gen>.json         the built vocabulary (training phase)
        corpus.<gen>.ids.u32          token ids of the converted corpus (training phase)
        corpus.<gen>.offsets.i64      document offsets into the ids
        state.<gen>.bin               ``TrainingState.to_bytes`` (training phase)

Why it is built this way:

- Every file except the shards carries the manifest's *generation* in its name and is written
  before the manifest (atomically). A crash at any instant leaves the previous manifest naming
  files that still exist unchanged; files of other generations are removed only after the new
  manifest is durable.
- Shards (ids and words) are only ever appended to. The manifest records each shard's size and
  the sha256 of that prefix (kept incrementally while appending, so a checkpoint never re-reads
  the cache). Bytes appended after the last checkpoint, a torn tail included, are cut off on
  resume: a run killed between checkpoints, or in the middle of one, loses nothing but the
  work since the last one. A checkpoint therefore costs what arrived since the previous one:
  the new ids and new words appended and synced, and a manifest that names the shards.
- Word counts are not saved at all: a resumed run recounts them from the ids.
- The manifest carries a sha256 of its own body, so any damage is detected and reported with
  the file's name instead of being trained on.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Optional

import orjson

from css_rs.config import run_cache_folder
from css_rs.errors import InputError
from css_rs.files import atomic_write_bytes, check_output_path, utc_timestamp
from css_rs.redaction import redact_object

MANIFEST_FORMAT = "css-rs-checkpoint"
MANIFEST_VERSION = 2  # 1: documents cached as JSON text (css-rs before the id cache)
# A checkpoint's phase (the manifest's "phase"): what its files hold.
PHASE_STREAMING = "streaming"  # the id cache so far
PHASE_TRAINING = "training"  # the converted corpus, vocabulary and (once training runs) state
SHARD_MAX_BYTES = 64 * 1024 * 1024
_HASH_BLOCK = 1024 * 1024

# Files this module creates in the cache folder; nothing else there is ever deleted.
SHARD_KINDS = {"ids": "u32", "words": "txt"}
_SHARD_RE = re.compile(r"^(?:ids-\d{5}\.u32|words-\d{5}\.txt)$")
_LEGACY_SHARD_RE = re.compile(r"^docs-(\d{5})\.jsonl$")  # format 1, removed by --fresh
_GENERATION_RE = re.compile(r"^(?:vocabulary|corpus|state)\.(\d+)\.[a-z0-9.]+$")
_TEMP_RE = re.compile(r"^\..+\.tmp$")


class CheckpointError(InputError):
    """A checkpoint that cannot be used as it is (damaged, truncated, foreign): exit code 2."""


def sha256_file(path: Path, size: Optional[int] = None) -> str:
    """The sha256 of the first ``size`` bytes of ``path`` (all of it when None)."""
    digest = hashlib.sha256()
    remaining = size
    with open(path, "rb") as fh:
        while remaining is None or remaining > 0:
            want = _HASH_BLOCK if remaining is None else min(_HASH_BLOCK, remaining)
            block = fh.read(want)
            if not block:
                break
            digest.update(block)
            if remaining is not None:
                remaining -= len(block)
    return digest.hexdigest()


@dataclass
class FileRecord:
    """A sidecar file as the manifest names it: its size and checksum."""

    name: str
    size: int
    sha256: str
    entries: int = 0  # shards only: documents in an ids shard, words in a words shard

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "size": self.size, "sha256": self.sha256}
        if _SHARD_RE.match(self.name):
            out["entries"] = self.entries
        return out

    @classmethod
    def from_json(cls, obj: Any) -> FileRecord:
        """Raises ValueError unless ``obj`` names one of this module's files (never a path
        outside the cache folder) with a size, count and sha256 that can be true."""
        if not isinstance(obj, dict):
            raise ValueError(f"file record {obj!r} is not an object")
        name: Any = obj.get("name")
        size: Any = obj.get("size")
        sha: Any = obj.get("sha256")
        entries: Any = obj.get("entries", 0)
        if not isinstance(name, str) or not (_SHARD_RE.match(name) or _GENERATION_RE.match(name)):
            raise ValueError(f"file name {name!r} is not one of a checkpoint's files")
        for what, n in (("size", size), ("entries", entries)):
            if type(n) is not int or not 0 <= n < 2**63:
                raise ValueError(f"{what} {n!r} of {name} is not a count")
        if not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha)):
            raise ValueError(f"sha256 {sha!r} of {name} is not a sha256")
        return cls(name, size, sha, entries)


# --- shards ------------------------------------------------------------------------------


class HashingWriter:
    """A binary file written sequentially, fsynced on close, with its size and sha256: the
    converted corpus files, which a checkpoint records as ``ShardWriter`` records its shards."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fh: IO[bytes] = open(path, "wb")  # noqa: SIM115 - closed in __exit__
        self._hash = hashlib.sha256()
        self._size = 0

    def write(self, data: bytes) -> None:
        self._fh.write(data)
        self._hash.update(data)
        self._size += len(data)

    @property
    def record(self) -> FileRecord:
        return FileRecord(self.path.name, self._size, self._hash.hexdigest())

    def __enter__(self) -> HashingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
        finally:
            self._fh.close()


class ShardWriter:
    """Appends to ``<kind>-NNNNN.<suffix>`` shards (``SHARD_KINDS``), keeping each shard's
    running sha256 and how many entries (documents, words) it holds."""

    def __init__(
        self,
        folder: Path,
        records: Iterable[FileRecord] = (),
        max_bytes: int = SHARD_MAX_BYTES,
        kind: str = "ids",
    ):
        self.folder = folder
        self.max_bytes = max_bytes
        self.kind = kind
        self._closed: list[FileRecord] = list(records)
        self._active: Optional[FileRecord] = None
        self._hash: Any = None
        self._fh: Optional[IO[bytes]] = None
        if self._closed and self._closed[-1].size < max_bytes:
            # Continue the last shard: re-hash its verified prefix once, then keep appending.
            self._open(self._closed.pop(), rehash=True)

    @property
    def entries(self) -> int:
        active = self._active.entries if self._active else 0
        return sum(r.entries for r in self._closed) + active

    def append(self, data: bytes, entries: int) -> None:
        """Appends ``data``, which holds ``entries`` whole entries (never split across shards)."""
        if not data:
            return
        if self._active is None or self._active.size >= self.max_bytes:
            self._rotate()
        assert self._fh is not None and self._active is not None
        self._fh.write(data)
        self._hash.update(data)
        self._active.size += len(data)
        self._active.entries += entries

    def sync(self) -> list[FileRecord]:
        """Makes every appended byte durable; returns the records a manifest should name."""
        if self._fh is not None and self._active is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._active.sha256 = self._hash.hexdigest()
        return self.records()

    def records(self) -> list[FileRecord]:
        out = [FileRecord(r.name, r.size, r.sha256, r.entries) for r in self._closed]
        if self._active is not None:
            a = self._active
            out.append(FileRecord(a.name, a.size, self._hash.hexdigest(), a.entries))
        return out

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _rotate(self) -> None:
        if self._active is not None:
            self.sync()
            self._closed.append(self._active)
            self.close()
        name = f"{self.kind}-{len(self._closed):05d}.{SHARD_KINDS[self.kind]}"
        self._open(FileRecord(name, 0, hashlib.sha256().hexdigest()), rehash=False)

    def _open(self, record: FileRecord, *, rehash: bool) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / record.name
        self._hash = hashlib.sha256()
        if rehash:
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(_HASH_BLOCK), b""):
                    self._hash.update(block)
        self._fh = open(path, "ab" if rehash else "wb")  # noqa: SIM115 - closed by close()
        self._active = record


def iter_shard_chunks(
    folder: Path, records: Iterable[FileRecord], chunk_bytes: int
) -> Iterator[bytes]:
    """The shards' recorded bytes in order, in blocks of at most ``chunk_bytes`` (a multiple
    of 4 keeps u32 ids whole)."""
    for record in records:
        with open(folder / record.name, "rb") as fh:
            remaining = record.size
            while remaining > 0:
                block = fh.read(min(chunk_bytes, remaining))
                if not block:
                    break
                remaining -= len(block)
                yield block


# --- the manifest -------------------------------------------------------------------------


@dataclass
class Checkpoint:
    """What a manifest says. ``files`` maps roles (vocabulary, ids, offsets, state) to records."""

    phase: str  # "streaming" (streaming or converting) | "training"
    config: dict[str, Any]
    stream: dict[str, Any]
    shards: list[FileRecord] = field(default_factory=list)  # the ids shards
    words: list[FileRecord] = field(default_factory=list)  # the words shards
    files: dict[str, FileRecord] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    generation: int = 0
    timestamp: str = ""
    css_rs_version: str = ""

    def body(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "generation": self.generation,
            "timestamp": self.timestamp,
            "css_rs_version": self.css_rs_version,
            "phase": self.phase,
            "config": self.config,
            "stream": self.stream,
            "shards": [r.to_json() for r in self.shards],
            "words": [r.to_json() for r in self.words],
            "files": {role: r.to_json() for role, r in self.files.items()},
            "training": self.training,
        }

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Checkpoint:
        if body.get("phase") not in ("streaming", "training"):
            raise ValueError(f"phase {body.get('phase')!r}")
        generation = body.get("generation")
        if type(generation) is not int or not 0 <= generation < 2**63:
            raise ValueError(f"generation {generation!r}")
        for key in ("config", "stream"):
            if not isinstance(body.get(key), dict):
                raise ValueError(f"{key} is not an object")
        for key in ("shards", "words"):
            if not isinstance(body.get(key), list):
                raise ValueError(f"{key} is not a list")
        if not isinstance(body.get("files"), dict):
            raise ValueError("files is not an object")
        shards = [FileRecord.from_json(r) for r in body["shards"]]
        words = [FileRecord.from_json(r) for r in body["words"]]
        for kind, records in (("ids", shards), ("words", words)):
            if any(not r.name.startswith(f"{kind}-") for r in records):
                raise ValueError(f"a shard listed with the {kind} shards is not one")
        return cls(
            phase=str(body["phase"]),
            config=dict(body["config"]),
            stream=dict(body["stream"]),
            shards=shards,
            words=words,
            files={role: FileRecord.from_json(r) for role, r in body["files"].items()},
            training=dict(body.get("training") or {}),
            generation=int(body["generation"]),
            timestamp=str(body.get("timestamp", "")),
            css_rs_version=str(body.get("css_rs_version", "")),
        )


def _body_checksum(body: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


class CheckpointStore:
    """Reads, writes and removes the checkpoint of one run."""

    def __init__(
        self,
        manifest_path: str | os.PathLike[str],
        cache_dir: Optional[str | os.PathLike[str]] = None,
    ):
        self.manifest_path = Path(manifest_path)
        self.cache_dir = run_cache_folder(manifest_path, cache_dir)

    def exists(self) -> bool:
        return self.manifest_path.exists()

    def path_of(self, name: str) -> Path:
        return self.cache_dir / name

    # -- writing --------------------------------------------------------------------------

    def write_sidecar(self, role: str, generation: int, suffix: str, data: bytes) -> FileRecord:
        """Writes one generation-named sidecar atomically and returns its record."""
        name = f"{role}.{generation}.{suffix}"
        atomic_write_bytes(self.path_of(name), data)
        return FileRecord(name, len(data), hashlib.sha256(data).hexdigest())

    def save(self, checkpoint: Checkpoint) -> None:
        """Writes the manifest atomically (its sidecars must already be on disk), then removes
        sidecars of other generations, which no manifest names any more."""
        from css_rs import __version__

        checkpoint.timestamp = utc_timestamp()
        checkpoint.css_rs_version = __version__
        body = redact_object(checkpoint.body())  # positions and errors may quote a server
        doc = {"sha256": _body_checksum(body), **body}
        atomic_write_bytes(self.manifest_path, orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        self._remove_other_generations(checkpoint)

    def _remove_other_generations(self, checkpoint: Checkpoint) -> None:
        keep = {r.name for r in checkpoint.files.values()}
        for path in self._own_files():
            match = _GENERATION_RE.match(path.name)
            if match and path.name not in keep and int(match.group(1)) <= checkpoint.generation:
                with contextlib.suppress(OSError):
                    path.unlink()

    # -- reading --------------------------------------------------------------------------

    def load(self) -> Checkpoint:
        """Reads and verifies the manifest and every file it names (sizes and checksums).

        Raises ``CheckpointError`` naming the damaged file; nothing is modified.
        """
        checkpoint = self._read_manifest()
        for record in [*checkpoint.shards, *checkpoint.words]:
            self._verify(record, allow_longer=True)
        for record in checkpoint.files.values():
            self._verify(record, allow_longer=False)
        return checkpoint

    def _read_manifest(self) -> Checkpoint:
        path = self.manifest_path
        try:
            doc = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError as e:
            raise self._damaged(path, f"not valid JSON ({e})") from None
        if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
            raise self._damaged(path, "not a css-rs checkpoint manifest")
        if doc.get("version") != MANIFEST_VERSION:
            raise CheckpointError(
                f"{path}: checkpoint format version {doc.get('version')!r} is not supported "
                f"(this css-rs reads version {MANIFEST_VERSION}: documents are now cached as "
                "word ids); start over with --fresh, which deletes it"
            )
        stored = doc.pop("sha256", None)
        if stored != _body_checksum(doc):
            raise self._damaged(path, "checksum mismatch")
        try:
            return Checkpoint.from_body(doc)
        except (KeyError, TypeError, ValueError) as e:
            raise self._damaged(path, f"missing or malformed field {e}") from None

    def _verify(self, record: FileRecord, *, allow_longer: bool) -> None:
        path = self.path_of(record.name)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise self._damaged(path, "file is missing") from None
        if size < record.size or (size > record.size and not allow_longer):
            raise self._damaged(path, f"size is {size} bytes, the manifest says {record.size}")
        if sha256_file(path, record.size) != record.sha256:
            raise self._damaged(path, "checksum mismatch")

    def _damaged(self, path: Path, why: str) -> CheckpointError:
        return CheckpointError(
            f"checkpoint file {path} is damaged: {why}; it was left in place "
            f"(start over with --fresh, which deletes the checkpoint)"
        )

    def read_sidecar(self, record: FileRecord) -> bytes:
        data = self.path_of(record.name).read_bytes()
        if hashlib.sha256(data).hexdigest() != record.sha256:
            raise self._damaged(self.path_of(record.name), "checksum mismatch")
        return data

    def read_shards(self, records: Iterable[FileRecord]) -> bytes:
        """The recorded bytes of small shards (the words), joined."""
        return b"".join(iter_shard_chunks(self.cache_dir, records, SHARD_MAX_BYTES))

    def truncate_shards(self, checkpoint: Checkpoint) -> None:
        """Cuts every shard back to the size the manifest recorded (a torn tail of a checkpoint
        killed while appending goes with it) and removes shards started after it: the
        documents streamed since the checkpoint are streamed again."""
        named = {r.name: r for r in [*checkpoint.shards, *checkpoint.words]}
        for path in self._own_files():
            if not _SHARD_RE.match(path.name):
                continue
            record = named.get(path.name)
            if record is None:
                path.unlink()
            elif path.stat().st_size != record.size:
                os.truncate(path, record.size)

    # -- removing -------------------------------------------------------------------------

    def delete(self) -> None:
        """Removes the manifest first (so no manifest ever names missing files), then the files
        this module created in the cache folder, then the folder if it is empty."""
        with contextlib.suppress(FileNotFoundError):
            self.manifest_path.unlink()
        self.clear_cache()

    def remove_temporaries(self) -> None:
        """Removes what atomic writes of a killed run left behind: temporary manifests beside
        the manifest and temporary sidecars in the cache. Only while holding the run's lock."""
        remove_temporaries(self.manifest_path)
        for path in self._own_files():
            if _TEMP_RE.match(path.name):
                with contextlib.suppress(OSError):
                    path.unlink()

    def clear_cache(self) -> None:
        for path in self._own_files():
            with contextlib.suppress(OSError):
                path.unlink()
        with contextlib.suppress(OSError):
            self.cache_dir.rmdir()

    def _own_files(self) -> list[Path]:
        if not self.cache_dir.is_dir():
            return []
        patterns = (_SHARD_RE, _LEGACY_SHARD_RE, _GENERATION_RE, _TEMP_RE)
        return sorted(p for p in self.cache_dir.iterdir() if any(r.match(p.name) for r in patterns))


# --- one run per checkpoint ----------------------------------------------------------------


@contextlib.contextmanager
def exclusive_run(manifest_path: Path) -> Iterator[None]:
    """Holds an exclusive lock beside the checkpoint manifest for the whole run.

    Two runs sharing one checkpoint (a second terminal, a job started twice) would resume from
    each other's half-written progress and race on the model; the second one is refused, naming
    the process that holds the lock. See ``exclusive_lock``.
    """
    with exclusive_lock(
        manifest_path,
        "is using this checkpoint; wait for it to finish, or give this run its own "
        "--checkpoint-path",
    ):
        yield


@contextlib.contextmanager
def exclusive_lock(path: Path, busy: str) -> Iterator[None]:
    """Holds an exclusive lock on ``.<name>.lock`` beside ``path`` while the block runs; a
    second holder is refused with InputError ``<path>: another css-rs train (pid N) <busy>``.

    The lock is the kernel's (``flock``): it ends with the process, even a killed one, so a
    stale lock file never blocks anything. The lock file is removed when the block ends (while
    still locked; a process that opened the old file meanwhile sees it is no longer the one at
    the path and tries again). Where ``fcntl`` is missing (Windows) nothing is locked.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    lock_path = path.with_name(f".{path.name}.lock")
    check_output_path(lock_path)  # a FIFO there would make the open below wait forever
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fh = open(lock_path, "a+")  # noqa: SIM115 - closed below
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise InputError(f"{path}: another css-rs train ({holder}) {busy}") from None
        try:
            current = os.stat(lock_path).st_ino == os.fstat(fh.fileno()).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        fh.close()  # the previous holder removed it as we opened it: take the new one
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        yield
    finally:
        with contextlib.suppress(OSError):
            lock_path.unlink()
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        fh.close()


def remove_temporaries(path: Path) -> list[Path]:
    """Removes the temporary files that atomic writes of ``path`` leave when the process is
    killed (``.<name>.<random>.tmp`` beside it). Only call while holding ``path``'s lock: then
    no live process is writing them."""
    removed = []
    prefix = f".{path.name}."
    with contextlib.suppress(OSError):
        for p in path.parent.iterdir():
            if p.name.startswith(prefix) and p.name.endswith(".tmp") and p.is_file():
                with contextlib.suppress(OSError):
                    p.unlink()
                    removed.append(p)
    return removed
