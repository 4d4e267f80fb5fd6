"""The source interface every data source implements (see ``css_rs.sources`` for the tour).

A concrete source only says how to read *raw values* from a *cursor*: ``_read(cursor)`` yields
``Chunk``s, each a run of consecutive rows (a page, a row group, a block of lines) plus a
function giving the cursor after any prefix of the run. ``Source`` does the rest, identically
for every source: it keeps strings, skips and counts the rest, cuts documents to
``max_doc_length``, cuts batches of ``batch_size``, stops after ``max_batches``, stamps each
batch with the position after it, and optionally runs the reading in a prefetch thread.

A position is ``{"source": kind, **cursor, "batches": n, "skipped": n}``: plain JSON. Batch
count and skipped count live in it so that ``max_batches`` and ``skipped`` continue across a
resume instead of restarting.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Optional

from css_rs.errors import InputError
from css_rs.sources.prefetch import Prefetcher

Position = dict[str, Any]
Cursor = dict[str, Any]


class _Ignored:
    """Marks a raw row that is not a document and not worth counting (a blank text line)."""

    def __repr__(self) -> str:
        return "IGNORED"


IGNORED: Any = _Ignored()
DEFAULT_PREFETCH = 2
_COMMON_KEYS = ("source", "batches", "skipped")


@dataclass(frozen=True)
class Batch:
    """Documents handed to the consumer, and the source's position right after them."""

    documents: list[str]
    position: Position

    def __len__(self) -> int:
        return len(self.documents)


@dataclass(frozen=True)
class Chunk:
    """Consecutive raw rows read in one go.

    ``values[i]`` is the row's text: a ``str`` is a document, ``IGNORED`` is silently passed
    over, anything else (``None``, a number, a missing-field marker) is skipped and counted.
    ``cursor_after(i)`` is where a reader stands once the first ``i`` values are consumed.
    """

    values: Sequence[Any]
    cursor_after: Callable[[int], Cursor]

    @classmethod
    def boundary(cls, cursor: Cursor) -> Chunk:
        """No rows, just a move of the cursor (e.g. from the end of a file to the next)."""

        def unchanged(_consumed: int) -> Cursor:
            return cursor

        return cls((), unchanged)


def _check_int(name: str, value: Any, low: int, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        unset = ", or None" if optional else ""
        raise InputError(f"{name} = {value!r} is invalid: must be an integer >= {low}{unset}")


def _cursor_of(position: Mapping[str, Any]) -> Cursor:
    """The source-specific part of a position."""
    return {k: v for k, v in position.items() if k not in _COMMON_KEYS}


def _count(name: str, value: Any) -> int:
    _check_int(name, value, 0)
    return int(value)


class Source(ABC):
    """Yields batches of documents and knows exactly where it stands (module doc)."""

    kind: ClassVar[str]

    def __init__(
        self,
        *,
        batch_size: int = 50,
        max_batches: Optional[int] = None,
        max_doc_length: int = 5000,
        text_field: str = "text",
    ) -> None:
        _check_int("batch_size", batch_size, 1)
        _check_int("max_batches", max_batches, 1, optional=True)
        _check_int("max_doc_length", max_doc_length, 0)
        if not isinstance(text_field, str) or not text_field:
            raise InputError(f"text_field = {text_field!r} is invalid: must be a non-empty string")
        self.batch_size = batch_size
        self.max_batches = max_batches
        self.max_doc_length = max_doc_length
        self.text_field = text_field
        self._position: Position = self._make_position(self._initial_cursor(), 0, 0)

    # --- what subclasses provide ------------------------------------------------------------
    @abstractmethod
    def _initial_cursor(self) -> Cursor:
        """The cursor of the first row."""

    @abstractmethod
    def _check_cursor(self, cursor: Mapping[str, Any]) -> Cursor:
        """The cursor part of a position given to ``resume``; InputError when it cannot be."""

    @abstractmethod
    def _read(self, cursor: Cursor) -> Iterator[Chunk]:
        """Raw rows from ``cursor`` on, in order, until the data is exhausted."""

    @property
    def total_documents(self) -> Optional[int]:
        """Rows in the whole dataset when known (for progress), else None."""
        return None

    def _stop_waiting(self) -> None:  # noqa: B027 - optional hook, deliberately empty
        """Called when a prefetching consumer stops: cut short any backoff wait."""

    def _allow_waiting(self) -> None:  # noqa: B027 - optional hook, deliberately empty
        """Called when an iteration starts: backoff waits are normal again."""

    def close(self) -> None:  # noqa: B027 - optional hook, deliberately empty
        """Releases connections (an iteration started later opens new ones)."""

    # --- the public interface ---------------------------------------------------------------
    @property
    def position(self) -> Position:
        """Position after the last batch handed out (a copy: JSON-serialisable)."""
        return dict(self._position)  # flat: a shallow copy is a full copy

    @property
    def skipped(self) -> int:
        """Rows skipped so far because their text was missing, null or not a string."""
        return int(self._position["skipped"])

    @property
    def batches_yielded(self) -> int:
        """Batches handed out so far, counted across resumes."""
        return int(self._position["batches"])

    def resume(self, position: Mapping[str, Any]) -> None:
        """Makes the next iteration continue right after the batch ``position`` came with."""
        if not isinstance(position, Mapping):
            raise InputError(f"a {self.kind} position must be a JSON object, not {position!r}")
        if position.get("source") != self.kind:
            raise InputError(
                f"cannot resume a {self.kind!r} source from a position of source "
                f"{position.get('source')!r}: the checkpoint was made with another --source"
            )
        batches = _count("position batches", position.get("batches"))
        skipped = _count("position skipped", position.get("skipped"))
        cursor = self._check_cursor(_cursor_of(position))
        self._position = self._make_position(cursor, batches, skipped)

    def iter_batches(self, prefetch: int = DEFAULT_PREFETCH) -> Generator[Batch, None, None]:
        """Batches from the current position on; ``prefetch`` > 0 reads that many ahead.

        ``source.position`` equals ``batch.position`` whenever the consumer holds ``batch``,
        with or without prefetch: the reading thread's own progress is never visible.
        """
        _check_int("prefetch", prefetch, 0)
        start = self.position
        self._allow_waiting()
        produced: Iterator[Batch]
        if prefetch:
            produced = Prefetcher(
                lambda: self._produce(start), prefetch, on_stop=self._stop_waiting
            )
        else:
            produced = self._produce(start)
        try:
            for batch in produced:
                self._position = dict(batch.position)
                if batch.documents:
                    yield batch
        finally:
            close = getattr(produced, "close", None)
            if close is not None:
                close()

    def batches(self, prefetch: int = DEFAULT_PREFETCH) -> Generator[list[str], None, None]:
        """Like ``iter_batches`` but yields only the documents (read ``position`` alongside)."""
        for batch in self.iter_batches(prefetch):
            yield batch.documents

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- batching, the same for every source --------------------------------------------------
    def _make_position(self, cursor: Mapping[str, Any], batches: int, skipped: int) -> Position:
        return {"source": self.kind, **cursor, "batches": batches, "skipped": skipped}

    def _limit_reached(self, batches: int) -> bool:
        return self.max_batches is not None and batches >= self.max_batches

    def _cut(self, text: str) -> str:
        return text[: self.max_doc_length] if self.max_doc_length else text

    def _produce(self, start: Position) -> Iterator[Batch]:
        """Batches from ``start``; ends with an empty batch carrying the final position."""
        batches, skipped = start["batches"], start["skipped"]
        cursor = _cursor_of(start)
        if self._limit_reached(batches):
            return
        pending: list[str] = []
        for chunk in self._read(cursor):
            for i, value in enumerate(chunk.values):
                if not isinstance(value, str):
                    if value is not IGNORED:
                        skipped += 1
                    continue
                pending.append(self._cut(value))
                if len(pending) == self.batch_size:
                    batches += 1
                    after = self._make_position(chunk.cursor_after(i + 1), batches, skipped)
                    yield Batch(pending, after)
                    pending = []
                    if self._limit_reached(batches):
                        return
            cursor = chunk.cursor_after(len(chunk.values))
        if pending:
            batches += 1
        yield Batch(pending, self._make_position(cursor, batches, skipped))
