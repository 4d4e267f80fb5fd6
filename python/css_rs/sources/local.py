"""Local files: ``--source text`` and ``--source jsonl`` (``parquet`` lives in ``.parquet``).

``path`` is a file, a folder (searched recursively for the source's suffixes, hidden entries
left out) or a glob (``data/*.txt.gz``, ``**`` allowed); files are read in sorted path order.
Files ending in ``.gz`` are decompressed on the fly.

- **text**: one document per line, decoded as UTF-8 (undecodable bytes become U+FFFD, so a
  stray byte cannot stop a long run), line ending removed, a leading byte-order mark dropped.
  Blank (whitespace-only) lines separate documents in many corpora, so they are passed over
  without being counted as skipped.
- **jsonl**: one JSON object per line, the document in ``text_field``. A line that is not a JSON
  object, or whose field is missing, null or not a string, is skipped and counted; blank lines
  are passed over. If no line of a file's first block has ``text_field`` at all, the field name
  is wrong (or the file is not JSON lines): an ``InputError`` names the keys that were seen.

Position: ``{"file_index": i, "file": <path of file i>, "line": n, "byte": b}``: the byte offset
makes resuming a seek (for ``.gz``, a forward decompression); ``file`` lets ``resume`` notice
that the input files changed since the checkpoint.
"""

from __future__ import annotations

import functools
import glob
import gzip
import itertools
import zlib
from abc import abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, ClassVar, Union, cast

import orjson

from css_rs.errors import InputError
from css_rs.sources.base import IGNORED, Chunk, Cursor, Source

PathLike = Union[str, Path]
BLOCK_LINES = 1024


def expand_paths(path: PathLike, suffixes: Sequence[str], what: str) -> list[Path]:
    """The files ``path`` names (file, folder or glob), sorted; InputError when none."""
    text = str(path)
    if any(c in text for c in "*?["):
        found = [Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file()]
        where = f"the pattern {text!r}"
    elif Path(text).is_dir():
        found = _files_in_folder(Path(text), suffixes)
        where = f"the folder {text!r} (looked for {', '.join(suffixes)})"
    elif Path(text).is_file():
        return [Path(text)]
    elif Path(text).exists():
        raise InputError(
            f"{text!r} is not a regular file (a FIFO, a device or a socket): --path takes "
            "files, which css-rs reads again from a saved position when a run resumes"
        )
    else:
        raise InputError(f"path not found: {text!r} (--path takes a file, a folder or a glob)")
    if not found:
        raise InputError(f"no {what} files in {where}")
    return sorted(found)


def _files_in_folder(folder: Path, suffixes: Sequence[str]) -> list[Path]:
    def wanted(p: Path) -> bool:
        hidden = any(part.startswith(".") for part in p.relative_to(folder).parts)
        return not hidden and p.is_file() and p.name.endswith(tuple(suffixes))

    return [p for p in folder.rglob("*") if wanted(p)]


class LocalFilesSource(Source):
    """Common part of the local sources: the file list and the file-index cursor."""

    suffixes: ClassVar[tuple[str, ...]]
    offset_keys: ClassVar[tuple[str, ...]]  # where a reader stands inside one file

    def __init__(self, path: PathLike, **common: Any) -> None:
        self.path = str(path)
        self.files = expand_paths(path, self.suffixes, self.kind)
        super().__init__(**common)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(path={self.path!r}, files={len(self.files)}, "
            f"text_field={self.text_field!r}, batch_size={self.batch_size}, "
            f"max_batches={self.max_batches})"
        )

    @abstractmethod
    def _read_file(self, cursor: Cursor) -> Iterator[Chunk]:
        """Raw rows of file ``cursor["file_index"]`` from the offsets in ``cursor`` on."""

    def _file_start(self, index: int) -> Cursor:
        name = str(self.files[index]) if index < len(self.files) else None
        return {"file_index": index, "file": name, **dict.fromkeys(self.offset_keys, 0)}

    def _initial_cursor(self) -> Cursor:
        return self._file_start(0)

    def _check_cursor(self, cursor: Mapping[str, Any]) -> Cursor:
        expected = {"file_index", "file", *self.offset_keys}
        numbers = [cursor.get(k) for k in ("file_index", *self.offset_keys)]
        if set(cursor) != expected or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers
        ):
            raise InputError(
                f"invalid {self.kind} position {dict(cursor)!r}: expected keys {sorted(expected)}"
            )
        index = cursor["file_index"]
        if index > len(self.files) or cursor["file"] != self._file_start(index)["file"]:
            raise InputError(
                f"the checkpoint was taken reading {cursor['file']!r} as file #{index}, but "
                f"{self.path!r} now lists other files; the input changed since the checkpoint "
                "(restore it, or start a fresh run)"
            )
        return dict(cursor)

    def _read(self, cursor: Cursor) -> Iterator[Chunk]:
        index = cursor["file_index"]
        start = cursor
        while index < len(self.files):
            yield from self._read_file(start)
            # Crossing to the next file is a position of its own (no row consumed).
            following = self._file_start(index + 1)
            yield Chunk.boundary(following)
            index += 1
            start = following


def open_binary(path: Path) -> IO[bytes]:
    if path.name.endswith(".gz"):
        return cast("IO[bytes]", gzip.open(path, "rb"))
    return path.open("rb")


def line_blocks(path: Path, start_byte: int) -> Iterator[tuple[list[bytes], list[int]]]:
    """Blocks of raw lines from ``start_byte`` on, each with the byte offsets around them
    (``offsets[i]`` is where line ``i`` of the block starts, ``offsets[-1]`` the block's end)."""
    try:
        with open_binary(path) as fh:
            fh.seek(start_byte)
            offset = start_byte
            while True:
                lines = list(itertools.islice(fh, BLOCK_LINES))
                if not lines:
                    return
                offsets = list(itertools.accumulate((len(x) for x in lines), initial=offset))
                yield lines, offsets
                offset = offsets[-1]
    except (OSError, EOFError, zlib.error) as e:  # unreadable, vanished, or a corrupt .gz
        raise InputError(f"cannot read {str(path)!r}: {e}") from None


class LineFilesSource(LocalFilesSource):
    """Files read line by line; subclasses turn a block of lines into raw values."""

    offset_keys = ("line", "byte")

    @abstractmethod
    def _values(self, lines: list[bytes], first_line: int, path: Path) -> list[Any]:
        """Raw values of a block of lines; ``first_line`` is the block's first line number."""

    def _read_file(self, cursor: Cursor) -> Iterator[Chunk]:
        index, name = cursor["file_index"], cursor["file"]
        path = self.files[index]
        line = cursor["line"]
        for lines, offsets in line_blocks(path, cursor["byte"]):
            values = self._values(lines, line, path)
            yield Chunk(values, functools.partial(_line_cursor, index, name, line, offsets))
            line += len(lines)


def _line_cursor(
    index: int, name: str, first_line: int, offsets: list[int], consumed: int
) -> Cursor:
    """The cursor once ``consumed`` lines of a block (starting at ``first_line``) are read."""
    return {
        "file_index": index,
        "file": name,
        "line": first_line + consumed,
        "byte": offsets[consumed],
    }


def _decode_line(raw: bytes, line_number: int) -> str:
    text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
    return text.lstrip("\ufeff") if line_number == 0 else text


class TextSource(LineFilesSource):
    """One document per line (module doc). ``TextSource(path, batch_size=..., ...)``."""

    kind = "text"
    suffixes = (".txt", ".text", ".txt.gz", ".text.gz")

    def _values(self, lines: list[bytes], first_line: int, path: Path) -> list[Any]:
        texts = (_decode_line(raw, first_line + i) for i, raw in enumerate(lines))
        return [text if text.strip() else IGNORED for text in texts]


_MISSING = object()


class JsonlSource(LineFilesSource):
    """One JSON object per line, text in ``text_field`` (module doc)."""

    kind = "jsonl"
    suffixes = (".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")

    def _values(self, lines: list[bytes], first_line: int, path: Path) -> list[Any]:
        objects = [self._parse(raw) for raw in lines]
        if first_line == 0:
            self._check_text_field(objects, path)
        return [IGNORED if obj is IGNORED else _text_in(obj, self.text_field) for obj in objects]

    @staticmethod
    def _parse(raw: bytes) -> Any:
        if not raw.strip():
            return IGNORED
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _MISSING

    def _check_text_field(self, objects: list[Any], path: Path) -> None:
        records = [obj for obj in objects if isinstance(obj, dict)]
        if any(self.text_field in obj for obj in records):
            return
        if records:
            keys = sorted({str(k) for obj in records for k in obj})
            raise InputError(
                f"text_field {self.text_field!r} is in none of the first {len(objects)} lines "
                f"of {str(path)!r}; keys seen: {', '.join(keys)} (set --text-field)"
            )
        if any(obj is not IGNORED for obj in objects):
            raise InputError(
                f"{str(path)!r} does not look like JSON lines: none of its first "
                f"{len(objects)} lines is a JSON object (for plain text use --source text)"
            )


def _text_in(obj: Any, text_field: str) -> Any:
    return obj.get(text_field) if isinstance(obj, dict) else None
