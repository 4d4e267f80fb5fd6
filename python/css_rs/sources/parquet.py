"""Parquet: local files (``--source parquet``) and the viewer's shards (``--source hf-parquet``).

Only the ``text_field`` column is read, in record batches of ``READ_ROWS`` rows, starting at the
row group that holds the resume row; the column must exist and hold strings, else an
``InputError`` names the columns there are (null cells are skipped and counted).

``HfParquetSource`` asks ``/parquet`` for the split's shards (in shard order) and, one at a time,
downloads a shard into ``<cache_dir>/hf-parquet/<dataset>/<config>/<split>/`` (streamed, resumed
with ``Range`` after a broken transfer, see ``css_rs.sources.download``), reads it, and deletes
it once read unless ``keep_shards``. A shard left on disk by a stopped run is reused on resume.
Its position is ``{"shard": i, "filename": <shard i's file name>, "row": r}``; a batch that ends
a shard points at the next shard, so resuming never downloads a finished shard again. Relative
shard URLs are resolved against ``hf_endpoint``.

``ParquetFileSource`` reads local files (file, folder or glob, as ``css_rs.sources.local``);
position ``{"file_index": i, "file": <path>, "row": r}``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union
from urllib.parse import quote, urljoin

from css_rs.config import TrainConfig
from css_rs.errors import CssRsError, InputError
from css_rs.sources.base import Chunk, Cursor
from css_rs.sources.download import download
from css_rs.sources.hf import HubSource
from css_rs.sources.local import LocalFilesSource

PathLike = Union[str, Path]
READ_ROWS = 4096


def _parquet_module() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise CssRsError(
            "the parquet sources need pyarrow: pip install 'css-rs[parquet]'"
        ) from None
    return pq


def _is_text_type(arrow_type: Any) -> bool:
    import pyarrow as pa

    is_view = getattr(pa.types, "is_string_view", lambda _t: False)
    if pa.types.is_dictionary(arrow_type):
        return _is_text_type(arrow_type.value_type)
    return bool(
        pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
        or is_view(arrow_type)
    )


def open_parquet(path: Path) -> Any:
    """A ``pyarrow.parquet.ParquetFile``; InputError when ``path`` is not readable parquet."""
    pq = _parquet_module()
    try:
        return pq.ParquetFile(path)
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise InputError(f"cannot read {str(path)!r} as parquet: {e}") from None


def check_text_column(parquet_file: Any, text_field: str, path: Path) -> None:
    schema = parquet_file.schema_arrow
    if text_field not in schema.names:
        raise InputError(
            f"text_field {text_field!r} is not a column of {str(path)!r}; columns: "
            f"{', '.join(schema.names)} (set --text-field)"
        )
    arrow_type = schema.field(text_field).type
    if not _is_text_type(arrow_type):
        raise InputError(
            f"column {text_field!r} of {str(path)!r} holds {arrow_type}, not text "
            "(set --text-field to a string column)"
        )


def _shifted(cursor_at: Callable[[int], Cursor], first_row: int) -> Callable[[int], Cursor]:
    def cursor_after(consumed: int) -> Cursor:
        return cursor_at(first_row + consumed)

    return cursor_after


def text_chunks(
    parquet_file: Any,
    text_field: str,
    start_row: int,
    cursor_at: Callable[[int], Cursor],
    path: Optional[Path] = None,
) -> Iterator[Chunk]:
    """The text column from ``start_row`` on; ``cursor_at(row)`` is the cursor at a file row.
    A page that cannot be read or decoded (a corrupt file) raises InputError naming ``path``."""
    try:
        yield from _text_chunks(parquet_file, text_field, start_row, cursor_at)
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
        if isinstance(e, InputError):
            raise
        where = f"{str(path)!r}" if path is not None else "a parquet file"
        raise InputError(f"cannot read {where} as parquet: {' '.join(str(e).split())}") from None


def _text_chunks(
    parquet_file: Any, text_field: str, start_row: int, cursor_at: Callable[[int], Cursor]
) -> Iterator[Chunk]:
    metadata = parquet_file.metadata
    first_group, row = 0, 0
    while first_group < metadata.num_row_groups:
        group_rows = metadata.row_group(first_group).num_rows
        if row + group_rows > start_row:
            break
        row += group_rows
        first_group += 1
    groups = list(range(first_group, metadata.num_row_groups))
    if not groups:
        return
    batches = parquet_file.iter_batches(
        batch_size=READ_ROWS, row_groups=groups, columns=[text_field], use_threads=False
    )
    for record_batch in batches:
        values = record_batch.column(0).to_pylist()
        skip = min(len(values), max(0, start_row - row))
        if skip < len(values):
            yield Chunk(values[skip:], _shifted(cursor_at, row + skip))
        row += len(values)


class ParquetFileSource(LocalFilesSource):
    """Local parquet files (module doc). ``ParquetFileSource(path, text_field=..., ...)``."""

    kind = "parquet"
    suffixes = (".parquet",)
    offset_keys = ("row",)

    def _read_file(self, cursor: Cursor) -> Iterator[Chunk]:
        index, name = cursor["file_index"], cursor["file"]
        path = self.files[index]
        parquet_file = open_parquet(path)
        with parquet_file:
            check_text_column(parquet_file, self.text_field, path)

            def cursor_at(row: int) -> Cursor:
                return {"file_index": index, "file": name, "row": row}

            yield from text_chunks(parquet_file, self.text_field, cursor["row"], cursor_at, path)


@dataclass(frozen=True)
class Shard:
    """One parquet file listed by ``/parquet``."""

    url: str
    filename: str
    size: Optional[int]


class HfParquetSource(HubSource):
    """The split's parquet shards (module doc); keyword arguments as ``HubSource`` plus
    ``cache_dir`` (default: ``TrainConfig().cache_folder()``) and ``keep_shards``."""

    kind = "hf-parquet"

    def __init__(
        self,
        dataset: Optional[str] = None,
        *,
        cache_dir: Optional[PathLike] = None,
        keep_shards: bool = False,
        **options: Any,
    ) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir else TrainConfig().cache_folder()
        self.keep_shards = keep_shards
        self._shards: Optional[list[Shard]] = None
        self._shards_lock = threading.Lock()
        super().__init__(dataset, **options)

    # --- cursor --------------------------------------------------------------------------
    def _shard_start(self, index: int, shards: Optional[list[Shard]] = None) -> Cursor:
        name = shards[index].filename if shards is not None and index < len(shards) else None
        return {"shard": index, "filename": name, "row": 0}

    def _initial_cursor(self) -> Cursor:
        # The file name of shard 0 is only known after /parquet; _read fills it in.
        return self._shard_start(0)

    def _check_cursor(self, cursor: Mapping[str, Any]) -> Cursor:
        shard, row, name = cursor.get("shard"), cursor.get("row"), cursor.get("filename")
        numbers_ok = all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in (shard, row)
        )
        if set(cursor) != {"shard", "filename", "row"} or not numbers_ok:
            raise InputError(
                f"invalid hf-parquet position {dict(cursor)!r}: expected keys filename, row, shard"
            )
        if name is not None and not isinstance(name, str):
            raise InputError(f"invalid hf-parquet position {dict(cursor)!r}: bad filename")
        return dict(cursor)

    def _check_against_listing(self, cursor: Cursor, shards: list[Shard]) -> None:
        index, name = cursor["shard"], cursor["filename"]
        listed = shards[index].filename if index < len(shards) else None
        fresh_start = index == 0 and cursor["row"] == 0 and name is None
        if index > len(shards) or (listed != name and not fresh_start):
            raise InputError(
                f"the checkpoint was taken at shard #{index} ({name!r}) of {self.viewer.label}, "
                f"but /parquet now lists {len(shards)} shards with #{index} = {listed!r}; the "
                "dataset changed since the checkpoint (start a fresh run)"
            )

    # --- shards --------------------------------------------------------------------------
    def shards(self) -> list[Shard]:
        """The split's shards from ``/parquet``, asked once."""
        with self._shards_lock:
            if self._shards is None:
                self._shards = self._list_shards()
            return self._shards

    def _list_shards(self) -> list[Shard]:
        answer = self.viewer.parquet_files()
        entries = answer.get("parquet_files")
        if not isinstance(entries, list):
            raise CssRsError("unexpected answer from /parquet: 'parquet_files' is missing")
        shards = [
            self._shard_of(e)
            for e in entries
            if isinstance(e, dict)
            and e.get("config") == self.dataset_config
            and e.get("split") == self.split
        ]
        if shards:
            return shards
        if answer.get("pending"):
            raise CssRsError(
                f"the parquet conversion of {self.viewer.label} is still pending; try again "
                "later or use --source hf"
            )
        raise InputError(
            f"/parquet lists no parquet files for {self.viewer.label}; use --source hf"
        )

    def _shard_of(self, entry: Mapping[str, Any]) -> Shard:
        url = entry.get("url")
        if not isinstance(url, str) or not url:
            raise CssRsError("unexpected answer from /parquet: a shard has no 'url'")
        filename = entry.get("filename")
        if not isinstance(filename, str) or not filename:
            filename = url.rstrip("/").rsplit("/", 1)[-1]
        size = entry.get("size")
        return Shard(
            url=urljoin(self.hf_endpoint + "/", url),
            filename=filename,
            size=size if isinstance(size, int) and not isinstance(size, bool) else None,
        )

    def shard_path(self, index: int, shard: Shard) -> Path:
        """Where shard ``index`` is stored while it is read (names percent-encoded)."""
        folder = self.cache_dir / "hf-parquet"
        for part in (self.dataset, self.dataset_config, self.split):
            folder /= quote(part, safe="")
        return folder / f"{index:05d}-{quote(shard.filename, safe='')}"

    # --- reading -------------------------------------------------------------------------
    def _read(self, cursor: Cursor) -> Iterator[Chunk]:
        self.split_size()  # a wrong dataset/config/split fails here, with the valid ones listed
        shards = self.shards()
        self._check_against_listing(cursor, shards)
        index, start_row = cursor["shard"], cursor["row"]
        self._discard_finished_shards(shards[:index])
        while index < len(shards):
            path = download(
                self.client,
                shards[index].url,
                self.shard_path(index, shards[index]),
                shards[index].size,
            )
            yield from self._shard_chunks(index, shards, path, start_row)
            if not self.keep_shards:
                path.unlink(missing_ok=True)  # every row was consumed: it is not needed again
            following = self._shard_start(index + 1, shards)
            yield Chunk.boundary(following)
            index, start_row = index + 1, 0

    def _discard_finished_shards(self, finished: list[Shard]) -> None:
        # A run stopped right after a shard's last batch could not delete that shard (its
        # reader was closed first); the position says it is finished, so it goes now.
        if self.keep_shards:
            return
        for index, shard in enumerate(finished):
            self.shard_path(index, shard).unlink(missing_ok=True)

    def _shard_chunks(
        self, index: int, shards: list[Shard], path: Path, start_row: int
    ) -> Iterator[Chunk]:
        try:
            parquet_file = open_parquet(path)
        except InputError:
            path.unlink(missing_ok=True)
            raise CssRsError(
                f"shard #{index} ({shards[index].url}) downloaded but is not readable parquet; "
                "it was deleted (the next run downloads it again)"
            ) from None
        with parquet_file:
            check_text_column(parquet_file, self.text_field, path)
            num_rows = parquet_file.metadata.num_rows
            following = self._shard_start(index + 1, shards)
            name = shards[index].filename

            def cursor_at(row: int) -> Cursor:
                # The shard's last row leads straight to the next shard (no re-download).
                return (
                    following if row >= num_rows else {"shard": index, "filename": name, "row": row}
                )

            yield from text_chunks(parquet_file, self.text_field, start_row, cursor_at, path)
