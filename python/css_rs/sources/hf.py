"""Hugging Face datasets through the dataset viewer API (``--source hf``).

``HfRowsSource`` pages ``/rows`` with ``offset``/``length`` (``length = min(batch_size, 100)``,
the API's maximum) until a page comes back empty or answers 404 (both mean "exhausted"); a
page whose ``num_rows_total`` is exact and reached ends the reading without one more request.
Its position is ``{"source": "hf", "offset": <next row>, ...}``. Rows are taken as the viewer
sends them: a cell it lists in ``truncated_cells`` (very large rows) arrives cut, so prefer
``--source hf-parquet`` for datasets of very long documents.

``DatasetViewer`` wraps the endpoints for one dataset/config/split and turns their answers into
messages a user can act on: an unknown dataset, config or split is an ``InputError`` listing the
valid splits (from ``/splits``); 401/403 explain ``HF_TOKEN``. ``HubSource`` is the common base
of the two network sources (rows here, parquet shards in ``css_rs.sources.parquet``): it owns
the ``HttpClient`` and the ``/size`` lookup that gives ``total_documents``.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Optional

from css_rs.config import TrainConfig
from css_rs.errors import CssRsError, InputError
from css_rs.sources.base import Chunk, Cursor, Source
from css_rs.sources.http import HttpClient, HttpSettings, NotFoundError, QueryValue

MAX_PAGE_ROWS = 100  # the viewer refuses larger pages
_DEFAULTS = TrainConfig()


@dataclass(frozen=True)
class SplitSize:
    """``num_rows`` of a split; ``exact`` is False when the viewer only knows a lower bound."""

    num_rows: Optional[int]
    exact: bool


def _field(answer: Mapping[str, Any], key: str, kind: type, endpoint: str) -> Any:
    value = answer.get(key)
    if not isinstance(value, kind):
        raise CssRsError(f"unexpected answer from {endpoint}: {key!r} is missing or malformed")
    return value


class DatasetViewer:
    """The dataset viewer endpoints for one dataset, config and split."""

    def __init__(
        self, client: HttpClient, endpoint: str, dataset: str, config: str, split: str
    ) -> None:
        self.client = client
        self.endpoint = endpoint.rstrip("/")
        self.dataset = dataset
        self.config = config
        self.split = split

    def url(self, path: str) -> str:
        return f"{self.endpoint}{path}"

    @property
    def label(self) -> str:
        return f"dataset {self.dataset!r} config {self.config!r} split {self.split!r}"

    def split_size(self) -> SplitSize:
        """Rows of the split from ``/size``; InputError when it does not exist."""
        try:
            answer = self.client.get_json(self.url("/size"), {"dataset": self.dataset})
        except NotFoundError:
            raise InputError(self._unknown_split_message()) from None
        size = _field(answer, "size", dict, "/size")
        for entry in _field(size, "splits", list, "/size"):
            if entry.get("config") == self.config and entry.get("split") == self.split:
                rows = entry.get("num_rows")
                exact = not answer.get("partial", False)
                return SplitSize(rows if isinstance(rows, int) else None, exact)
        if answer.get("pending"):
            return SplitSize(None, False)  # still being computed: no total, no verdict
        raise InputError(self._unknown_split_message())

    def valid_splits(self) -> Optional[list[str]]:
        """``config/split`` names from ``/splits``; None when they cannot be listed."""
        try:
            answer = self.client.get_json(self.url("/splits"), {"dataset": self.dataset})
        except CssRsError:
            return None
        splits = answer.get("splits")
        if not isinstance(splits, list):
            return None
        return [f"{s.get('config')}/{s.get('split')}" for s in splits if isinstance(s, dict)]

    def _unknown_split_message(self) -> str:
        valid = self.valid_splits()
        if not valid:
            return (
                f"dataset {self.dataset!r} was not found at {self.endpoint} (check the name; "
                "private or gated datasets need HF_TOKEN)"
            )
        return (
            f"{self.label} does not exist; valid config/split pairs: {', '.join(valid)} "
            "(set --dataset-config and --split)"
        )

    def rows_page(self, offset: int, length: int) -> Optional[dict[str, Any]]:
        """One ``/rows`` answer, or None when ``offset`` is past the end (a 404)."""
        params: dict[str, QueryValue] = {
            "dataset": self.dataset,
            "config": self.config,
            "split": self.split,
            "offset": offset,
            "length": length,
        }
        try:
            return self.client.get_json(self.url("/rows"), params)
        except NotFoundError:
            return None

    def parquet_files(self) -> dict[str, Any]:
        """The ``/parquet`` answer for this config and split."""
        params = {"dataset": self.dataset, "config": self.config, "split": self.split}
        try:
            return self.client.get_json(self.url("/parquet"), params)
        except NotFoundError:
            raise InputError(self._unknown_split_message()) from None


# A Hub repository id as the Hub allows it: ``name`` or ``owner/name``, letters, digits, "-",
# "_" and ".", each part starting with a letter or digit, at most 96 characters, no "--"/"..".
_REPO_ID = re.compile(r"(?:[A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}", re.ASCII)
_NAME_MAX = 200


def check_dataset_names(dataset: str, config: str, split: str) -> None:
    """Refuses names that are not a Hub dataset, config or split before any request: they end
    up in URLs and in the shard cache's folder names (``..`` once put shards outside it)."""
    if not (_REPO_ID.fullmatch(dataset) and ".." not in dataset and "--" not in dataset):
        raise InputError(
            f"dataset = {dataset!r} is invalid: must be a Hugging Face dataset id such as "
            "'name' or 'owner/name' (letters, digits, '-', '_', '.')"
        )
    for name, value in (("dataset_config", config), ("split", split)):
        bad = (
            not value
            or value in (".", "..")
            or len(value) > _NAME_MAX
            or any(c in value for c in "/\\")
            or not value.isprintable()
        )
        if bad:
            raise InputError(
                f"{name} = {value!r} is invalid: must be a non-empty name without '/', '\\' or "
                "control characters, other than '.' and '..'"
            )


class HubSource(Source):
    """Common part of the network sources: client, viewer, ``/size`` and shutdown."""

    def __init__(
        self,
        dataset: Optional[str] = None,
        *,
        dataset_config: Optional[str] = None,
        split: Optional[str] = None,
        datasets_server_endpoint: Optional[str] = None,
        hf_endpoint: Optional[str] = None,
        http: Optional[HttpSettings] = None,
        client: Optional[HttpClient] = None,
        **common: Any,
    ) -> None:
        # Unset arguments take TrainConfig's defaults: endpoints are configuration, not code.
        self.dataset = dataset if dataset is not None else _DEFAULTS.dataset
        self.dataset_config = (
            dataset_config if dataset_config is not None else _DEFAULTS.dataset_config
        )
        self.split = split if split is not None else _DEFAULTS.split
        check_dataset_names(self.dataset, self.dataset_config, self.split)
        self.datasets_server_endpoint = (
            datasets_server_endpoint or _DEFAULTS.datasets_server_endpoint
        ).rstrip("/")
        self.hf_endpoint = (hf_endpoint or _DEFAULTS.hf_endpoint).rstrip("/")
        self.client = client or HttpClient(
            http, trusted_origins=(self.datasets_server_endpoint, self.hf_endpoint)
        )
        self.viewer = DatasetViewer(
            self.client,
            self.datasets_server_endpoint,
            self.dataset,
            self.dataset_config,
            self.split,
        )
        self._size: Optional[SplitSize] = None
        self._size_lock = threading.Lock()
        super().__init__(**common)

    def _cut(self, text: str) -> str:
        # The token is cut out before the length cut, which could leave a prefix of it.
        return super()._cut(self.client.redact_token(text))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(dataset={self.dataset!r}, config={self.dataset_config!r}, "
            f"split={self.split!r}, endpoint={self.datasets_server_endpoint!r}, "
            f"batch_size={self.batch_size}, max_batches={self.max_batches}, "
            f"token={'set' if self.client.has_token else 'none'})"
        )

    def split_size(self) -> SplitSize:
        """The split's size, asked once (validates dataset, config and split on the way)."""
        with self._size_lock:
            if self._size is None:
                self._size = self.viewer.split_size()
            return self._size

    @property
    def total_documents(self) -> Optional[int]:
        size = self.split_size()
        return size.num_rows if size.exact else None

    def _stop_waiting(self) -> None:
        self.client.stop()

    def _allow_waiting(self) -> None:
        self.client.allow_waits()

    def close(self) -> None:
        self.client.close()


def _offset_cursor(page_offset: int, consumed: int) -> Cursor:
    return {"offset": page_offset + consumed}


def _text_of_row(item: Any, text_field: str) -> Any:
    """The row's text value, or None when the row or the field is missing."""
    row = item.get("row") if isinstance(item, dict) else None
    return row.get(text_field) if isinstance(row, dict) else None


class HfRowsSource(HubSource):
    """Pages of ``/rows``; see the module doc. Keyword arguments as ``HubSource``/``Source``."""

    kind = "hf"

    def _initial_cursor(self) -> Cursor:
        return {"offset": 0}

    def _check_cursor(self, cursor: Mapping[str, Any]) -> Cursor:
        offset = cursor.get("offset")
        if (
            not isinstance(offset, int)
            or isinstance(offset, bool)
            or offset < 0
            or len(cursor) != 1
        ):
            raise InputError(f"invalid hf position {dict(cursor)!r}: expected {{'offset': n >= 0}}")
        return {"offset": offset}

    def _read(self, cursor: Cursor) -> Iterator[Chunk]:
        self.split_size()  # a wrong dataset/config/split fails here, with the valid ones listed
        offset: int = cursor["offset"]
        length = min(self.batch_size, MAX_PAGE_ROWS)
        columns_checked = False
        while True:
            page = self.viewer.rows_page(offset, length)
            rows = _field(page, "rows", list, "/rows") if page is not None else []
            if page is None or not rows:
                return
            if not columns_checked:
                self._check_text_column(page)
                columns_checked = True
            values = [_text_of_row(item, self.text_field) for item in rows]
            yield Chunk(values, functools.partial(_offset_cursor, offset))
            offset += len(rows)
            if self._known_end(page, offset):
                return

    def _check_text_column(self, page: Mapping[str, Any]) -> None:
        features = page.get("features")
        if not isinstance(features, list) or not features:
            return  # nothing to check against; rows without the field are skipped and counted
        names = [f.get("name") for f in features if isinstance(f, dict)]
        if self.text_field not in names:
            raise InputError(
                f"text_field {self.text_field!r} is not a column of {self.viewer.label}; "
                f"columns: {', '.join(str(n) for n in names)} (set --text-field)"
            )

    @staticmethod
    def _known_end(page: Mapping[str, Any], offset: int) -> bool:
        # Saves the last, empty request when the page says how many rows there are for sure.
        total = page.get("num_rows_total")
        return isinstance(total, int) and not page.get("partial", False) and offset >= total
