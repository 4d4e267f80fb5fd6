"""Helpers of the ``test_sources_*`` modules: fast HTTP settings, source builders, readers
that stop and resume."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Callable

from css_rs.sources import HfParquetSource, HfRowsSource, HttpSettings, Source
from hf_server import Fault, HubServer

# Tiny timeouts and backoffs: every retry path runs in milliseconds.
FAST_HTTP = HttpSettings(
    connect_timeout=0.5,
    read_timeout=0.15,
    retries=4,
    body_retries=4,
    backoff_factor=0.001,
    backoff_max=0.01,
    backoff_jitter=0.001,
    download_chunk_bytes=256,
)
SECRET = "hf_SECRETtoken1234567890"


# Every kind of fault the loopback hub can inject, once each.
ALL_FAULTS = [
    Fault.status_code(503),
    Fault.status_code(500),
    Fault.status_code(502),
    Fault.status_code(504),
    Fault.status_code(429, retry_after="0"),
    Fault.reset(),
    Fault.drop(),
    Fault.truncated_json(),
    Fault.slow(1.0),
]


def rows_source(hub: HubServer, dataset: str, **options: Any) -> HfRowsSource:
    options.setdefault("http", FAST_HTTP)
    return HfRowsSource(dataset, datasets_server_endpoint=hub.url, hf_endpoint=hub.url, **options)


def parquet_source(hub: HubServer, dataset: str, cache: Path, **options: Any) -> HfParquetSource:
    options.setdefault("http", FAST_HTTP)
    return HfParquetSource(
        dataset, datasets_server_endpoint=hub.url, hf_endpoint=hub.url, cache_dir=cache, **options
    )


def read_all(source: Source, prefetch: int = 0) -> list[str]:
    with contextlib.closing(source):
        return [doc for batch in source.iter_batches(prefetch) for doc in batch.documents]


def read_one_batch_per_run(make: Callable[[], Source], prefetch: int = 0) -> list[list[str]]:
    """Reads every batch with a fresh source resumed from the previous run's saved position
    (JSON round trip), as a run stopped at every batch boundary would. Returns the batches."""
    saved = None
    batches: list[list[str]] = []
    while True:
        source = make()
        with contextlib.closing(source):
            if saved is not None:
                source.resume(json.loads(saved))
            iterator = source.iter_batches(prefetch)
            batch = next(iterator, None)
            # The position is exact the moment the batch is handed out, prefetch or not.
            assert batch is None or source.position == batch.position
            iterator.close()
            if batch is None:
                return batches
            assert source.position == batch.position  # read-ahead of the thread is invisible
            batches.append(batch.documents)
            saved = json.dumps(source.position)


def flatten(batches: list[list[str]]) -> list[str]:
    return [doc for batch in batches for doc in batch]
