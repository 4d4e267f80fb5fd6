"""A loopback Hugging Face hub for tests and benchmarks: the dataset viewer API and file hosting.

``HubServer`` answers exactly as ``HF_DATASETS_API.md`` describes (``/is-valid``, ``/splits``,
``/size``, ``/rows``, ``/parquet``) and serves the parquet shards it lists under ``/files/``
with ``Range`` support. It runs a stdlib ``ThreadingHTTPServer`` on ``127.0.0.1`` port 0 in a
daemon thread (HTTP/1.1 keep-alive, so clients pool connections as in production)::

    with HubServer(tmp_path) as hub:
        hub.add_dataset("org/name", {("default", "train"): rows}, shards=3)
        hub.faults.schedule("/rows", Fault.status(503), Fault.drop())
        ... point datasets_server_endpoint and hf_endpoint at hub.url ...

Faults are injected per request: a scheduled queue per path prefix (consumed in order), then an
optional seeded random mix (``FaultPlan.mix``) that never injects more than ``max_in_a_row``
faults in a row per path, so a client with a few retries always gets through. Kinds: an error
status (optionally with ``Retry-After``), a connection closed with no answer, a body cut
mid-way (announced length kept, so the client sees a broken transfer), a truncated JSON body
(consistent length, so the client sees malformed JSON), and a slow answer that waits longer than
the client's read timeout. Waiting is done on an event that ``stop()`` sets, so shutting down
never waits for a slow answer.
"""

from __future__ import annotations

import contextlib
import random
import re
import socket
import threading
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional
from urllib.parse import parse_qs, unquote, urlsplit

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

MAX_PAGE_ROWS = 100
Rows = list[dict[str, Any]]
SplitKey = tuple[str, str]  # (config, split)


@dataclass(frozen=True)
class Fault:
    """One misbehaviour of the server for one request (build with the class methods)."""

    kind: str
    status: int = 0
    retry_after: Optional[str] = None
    delay: float = 0.0

    @classmethod
    def status_code(cls, status: int, retry_after: Optional[str] = None) -> Fault:
        return cls("status", status=status, retry_after=retry_after)

    @classmethod
    def echo_authorization(cls, status: int) -> Fault:
        """Answer ``status`` with an error body that quotes the request's ``Authorization``
        header, as a careless proxy or a hostile mirror might (the token must never show)."""
        return cls("echo", status=status)

    @classmethod
    def reset(cls) -> Fault:
        """Close the connection without answering."""
        return cls("reset")

    @classmethod
    def drop(cls) -> Fault:
        """Send the headers and half the body, then close the connection."""
        return cls("drop")

    @classmethod
    def truncated_json(cls) -> Fault:
        """Answer 200 with half the JSON body and a matching Content-Length."""
        return cls("truncate")

    @classmethod
    def slow(cls, delay: float) -> Fault:
        """Wait ``delay`` seconds before answering (beyond the client's read timeout)."""
        return cls("slow", delay=delay)


class FaultPlan:
    """Which request gets which fault: scheduled ones first, then a seeded random mix."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scheduled: dict[str, deque[Fault]] = defaultdict(deque)
        self._mix: list[Fault] = []
        self._mix_paths: tuple[str, ...] = ()
        self._probability = 0.0
        self._max_in_a_row = 0
        self._in_a_row: dict[str, int] = defaultdict(int)
        self._rng = random.Random(0)
        self.injected: list[tuple[str, Fault]] = []

    def schedule(self, path_prefix: str, *faults: Fault) -> None:
        """The next requests whose path starts with ``path_prefix`` get these faults in order."""
        with self._lock:
            self._scheduled[path_prefix].extend(faults)

    def mix(
        self,
        faults: Sequence[Fault],
        *,
        paths: Sequence[str] = ("/",),
        probability: float = 0.3,
        max_in_a_row: int = 2,
        seed: int = 0,
    ) -> None:
        """Each request on ``paths`` gets a random fault of ``faults`` with ``probability``."""
        with self._lock:
            self._mix = list(faults)
            self._mix_paths = tuple(paths)
            self._probability = probability
            self._max_in_a_row = max_in_a_row
            self._rng = random.Random(seed)

    def clear(self) -> None:
        with self._lock:
            self._scheduled.clear()
            self._mix = []

    def next_fault(self, path: str) -> Optional[Fault]:
        with self._lock:
            fault = self._scheduled_fault(path) or self._random_fault(path)
            if fault is None:
                self._in_a_row[path] = 0
            else:
                self._in_a_row[path] += 1
                self.injected.append((path, fault))
            return fault

    def _scheduled_fault(self, path: str) -> Optional[Fault]:
        for prefix, queue in self._scheduled.items():
            if path.startswith(prefix) and queue:
                return queue.popleft()
        return None

    def _random_fault(self, path: str) -> Optional[Fault]:
        if not self._mix or not path.startswith(self._mix_paths):
            return None
        if self._in_a_row[path] >= self._max_in_a_row:
            return None
        if self._rng.random() >= self._probability:
            return None
        return self._rng.choice(self._mix)


@dataclass(frozen=True)
class RequestRecord:
    path: str
    params: dict[str, str]
    authorization: Optional[str]
    range: Optional[str]


@dataclass
class _Split:
    rows: Rows
    shard_files: list[str] = field(default_factory=list)


@dataclass
class _Dataset:
    splits: dict[SplitKey, _Split]
    partial: bool = False


class HubServer:
    """The loopback hub (module doc). Use as a context manager or call ``start``/``stop``."""

    def __init__(self, workdir: Path, *, latency: float = 0.0) -> None:
        self.workdir = Path(workdir)
        self.latency = latency
        self.token: Optional[str] = None  # when set, every request must carry it
        self.forbidden = False  # answer 403 to every request (a gated dataset)
        self.rows_404_past_end = False
        self.relative_shard_urls = False
        self.faults = FaultPlan()
        self.requests: list[RequestRecord] = []
        self.datasets: dict[str, _Dataset] = {}
        self.files: dict[str, bytes] = {}
        self.released = threading.Event()  # set on stop: slow answers return at once
        self._lock = threading.Lock()
        self._request_arrived = threading.Condition(self._lock)
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.hub = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> HubServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.released.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- content -------------------------------------------------------------------------
    def add_dataset(
        self,
        name: str,
        splits: Mapping[SplitKey, Rows],
        *,
        partial: bool = False,
        shards: int = 0,
        row_group_size: int = 4,
    ) -> None:
        """Registers ``name``; ``shards`` > 0 also writes each split as that many parquet
        shards (rows must then fit one arrow table: text a string or None)."""
        dataset = _Dataset({key: _Split(list(rows)) for key, rows in splits.items()}, partial)
        for (config, split), entry in dataset.splits.items():
            if shards:
                entry.shard_files = self._write_shards(
                    name, config, split, entry.rows, shards, row_group_size
                )
        self.datasets[name] = dataset

    def _write_shards(
        self, name: str, config: str, split: str, rows: Rows, shards: int, row_group_size: int
    ) -> list[str]:
        files = []
        per_shard = -(-len(rows) // shards) if rows else 0
        for index in range(shards):
            part = rows[index * per_shard : (index + 1) * per_shard]
            safe_name = re.sub(r"[^A-Za-z0-9._-]", "_", f"{name}--{config}--{split}")
            file_id = f"{safe_name}--{index:04d}.parquet"
            path = self.workdir / file_id
            table = (
                pa.Table.from_pylist(part)
                if part
                else pa.table({"text": pa.array([], pa.string())})
            )
            pq.write_table(table, path, row_group_size=row_group_size)
            self.files[file_id] = path.read_bytes()
            files.append(file_id)
        return files

    def record(self, record: RequestRecord) -> None:
        with self._request_arrived:
            self.requests.append(record)
            self._request_arrived.notify_all()

    def wait_for_requests(self, path: str, count: int, timeout: float = 5.0) -> bool:
        """Blocks until ``count`` requests to ``path`` arrived; False on timeout."""
        with self._request_arrived:
            return self._request_arrived.wait_for(
                lambda: sum(r.path.startswith(path) for r in self.requests) >= count, timeout
            )

    def requests_to(self, path: str) -> list[RequestRecord]:
        with self._lock:
            return [r for r in self.requests if r.path.startswith(path)]

    # --- answers (status, JSON body) ----------------------------------------------------------
    def answer(self, path: str, params: Mapping[str, str]) -> tuple[int, Any]:
        routes = {
            "/is-valid": self._is_valid,
            "/splits": self._splits,
            "/size": self._size,
            "/rows": self._rows,
            "/parquet": self._parquet,
        }
        route = routes.get(path)
        if route is None:
            return 404, {"error": f"no endpoint {path}"}
        dataset = self.datasets.get(params.get("dataset", ""))
        if dataset is None:
            return 404, {"error": "The dataset does not exist, or is not accessible."}
        return route(dataset, params)

    def _is_valid(self, dataset: _Dataset, params: Mapping[str, str]) -> tuple[int, Any]:
        has_shards = any(s.shard_files for s in dataset.splits.values())
        flags = dict.fromkeys(("viewer", "preview", "search", "filter", "statistics"), True)
        return 200, {**flags, "filter": has_shards}

    def _splits(self, dataset: _Dataset, params: Mapping[str, str]) -> tuple[int, Any]:
        name = params["dataset"]
        splits = [{"dataset": name, "config": c, "split": s} for c, s in dataset.splits]
        return 200, {"splits": splits, "pending": [], "failed": []}

    def _size(self, dataset: _Dataset, params: Mapping[str, str]) -> tuple[int, Any]:
        name = params["dataset"]
        splits: list[dict[str, Any]] = [
            {
                "dataset": name,
                "config": config,
                "split": split,
                "num_rows": len(entry.rows),
                "num_bytes_parquet_files": sum(len(self.files[f]) for f in entry.shard_files),
                "num_bytes_memory": sum(len(orjson.dumps(r)) for r in entry.rows),
                "num_columns": len(entry.rows[0]) if entry.rows else 0,
            }
            for (config, split), entry in dataset.splits.items()
        ]
        total = sum(s["num_rows"] for s in splits)
        size = {"dataset": {"dataset": name, "num_rows": total}, "configs": [], "splits": splits}
        return 200, {"size": size, "pending": [], "failed": [], "partial": dataset.partial}

    def _rows(self, dataset: _Dataset, params: Mapping[str, str]) -> tuple[int, Any]:
        entry = dataset.splits.get((params.get("config", ""), params.get("split", "")))
        if entry is None:
            return 404, {"error": "The config or the split does not exist in the dataset"}
        offset, length = int(params.get("offset", 0)), int(params.get("length", 100))
        if length > MAX_PAGE_ROWS:
            return 422, {"error": "Parameter 'length' must not be greater than 100"}
        if offset >= len(entry.rows) and self.rows_404_past_end:
            return 404, {"error": "Offset is beyond the end of the split"}
        page = entry.rows[offset : offset + length]
        columns = sorted({k for row in entry.rows for k in row})
        return 200, {
            "features": [
                {"feature_idx": i, "name": c, "type": {"dtype": "string", "_type": "Value"}}
                for i, c in enumerate(columns)
            ],
            "rows": [
                {"row_idx": offset + i, "row": row, "truncated_cells": []}
                for i, row in enumerate(page)
            ],
            "num_rows_total": len(entry.rows),
            "num_rows_per_page": MAX_PAGE_ROWS,
            "partial": dataset.partial,
        }

    def _parquet(self, dataset: _Dataset, params: Mapping[str, str]) -> tuple[int, Any]:
        name = params["dataset"]
        files = []
        for (config, split), entry in dataset.splits.items():
            if params.get("config", config) != config or params.get("split", split) != split:
                continue
            for file_id in entry.shard_files:
                url = (
                    f"/files/{file_id}"
                    if self.relative_shard_urls
                    else f"{self.url}/files/{file_id}"
                )
                files.append(
                    {
                        "dataset": name,
                        "config": config,
                        "split": split,
                        "url": url,
                        "filename": file_id.rsplit("--", 1)[-1],
                        "size": len(self.files[file_id]),
                    }
                )
        return 200, {"parquet_files": files, "pending": [], "failed": [], "partial": False}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    hub: HubServer


_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real endpoints
    # Headers and body go out in separate writes; with Nagle's algorithm the body would wait
    # for the client's delayed ACK (~40 ms per answer), which no real server makes you pay.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def do_GET(self) -> None:
        hub = self.server.hub
        parts = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        hub.record(
            RequestRecord(
                parts.path, params, self.headers.get("Authorization"), self.headers.get("Range")
            )
        )
        if hub.latency:
            hub.released.wait(hub.latency)
        fault = hub.faults.next_fault(parts.path)
        if fault is not None and fault.kind == "slow":
            hub.released.wait(fault.delay)
            fault = None
        try:
            self._respond(hub, parts.path, params, fault)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up on this answer (timeout)

    def _respond(
        self, hub: HubServer, path: str, params: Mapping[str, str], fault: Optional[Fault]
    ) -> None:
        if fault is not None and fault.kind == "reset":
            self._hang_up()
            return
        if fault is not None and fault.kind == "status":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            self._send_json(fault.status, {"error": "injected failure"}, headers)
            return
        if fault is not None and fault.kind == "echo":
            auth = self.headers.get("Authorization")
            body = {"error": f"bad credentials {auth}", "headers": {"Authorization": auth}}
            self._send_json(fault.status, body, {"X-Echo-Authorization": str(auth)})
            return
        denied = self._check_token(hub)
        if denied is not None:
            self._send_json(*denied)
            return
        if path.startswith("/files/"):
            self._send_file(hub, unquote(path[len("/files/") :]), fault)
            return
        status, body = hub.answer(path, params)
        self._send_json(status, body, fault=fault)

    def _check_token(self, hub: HubServer) -> Optional[tuple[int, Any]]:
        if hub.forbidden:
            return 403, {"error": "The dataset is gated: access must be requested"}
        if hub.token is not None and self.headers.get("Authorization") != f"Bearer {hub.token}":
            return 401, {"error": "Unauthorized: a valid token is required"}
        return None

    def _send_json(
        self,
        status: int,
        body: Any,
        headers: Optional[Mapping[str, str]] = None,
        fault: Optional[Fault] = None,
    ) -> None:
        data = orjson.dumps(body)
        if fault is not None and fault.kind == "truncate":
            data = data[: len(data) // 2]
        self._send(status, data, {"Content-Type": "application/json", **(headers or {})}, fault)

    def _send_file(self, hub: HubServer, file_id: str, fault: Optional[Fault]) -> None:
        data = hub.files.get(file_id)
        if data is None:
            self._send_json(404, {"error": "no such file"})
            return
        requested = _RANGE.match(self.headers.get("Range", ""))
        if requested is None:
            self._send(200, data, {"Accept-Ranges": "bytes"}, fault)
            return
        start = int(requested.group(1))
        end = int(requested.group(2)) if requested.group(2) else len(data) - 1
        if start >= len(data):
            self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
            return
        end = min(end, len(data) - 1)
        headers = {"Content-Range": f"bytes {start}-{end}/{len(data)}", "Accept-Ranges": "bytes"}
        self._send(206, data[start : end + 1], headers, fault)

    def _send(
        self, status: int, data: bytes, headers: Mapping[str, str], fault: Optional[Fault] = None
    ) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if fault is not None and fault.kind == "drop":
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self._hang_up()
            return
        self.wfile.write(data)

    def _hang_up(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):  # the client may have gone already
            self.connection.shutdown(socket.SHUT_RDWR)


def text_rows(count: int, *, prefix: str = "document") -> Rows:
    """``count`` rows whose text says which row they are (so order and gaps are visible)."""
    return [{"text": f"{prefix} {i} " + "word " * (i % 7), "id": i} for i in range(count)]


def texts_of(rows: Iterable[Mapping[str, Any]], field_name: str = "text") -> list[str]:
    """The documents a source must produce from ``rows``: string texts, in order."""
    return [r[field_name] for r in rows if isinstance(r.get(field_name), str)]
