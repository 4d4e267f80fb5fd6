"""Throughput of the data sources against a loopback hub with 50 ms of latency per request.

    python benches/bench_sources.py                   # 100 pages of 50 documents
    python benches/bench_sources.py --pages 20 --latency-ms 20 --work-ms 30

Two comparisons, each on the same documents:

1. **Prefetch**: ``--source hf`` (one ``/rows`` request per batch) read with ``prefetch=0`` and
   ``prefetch=2``, by a consumer that does nothing, and by one that works ``--work-ms`` per batch
   (tokenizing with the Rust core, then a GIL-free pause standing for the rest of the pipeline).
   Prefetch overlaps the fetch of the next page with the consumer's work; with an idle consumer
   it cannot help, since pages are still fetched one at a time.
2. **Parquet shards vs rows API**: ``--source hf-parquet`` (``/size``, ``/parquet`` and one
   download per shard) against ``--source hf``, idle consumer, no prefetch.

The loopback hub is ``tests/sources/hf_server.py``, the one the test suite uses.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from css_rs import Tokenizer
from css_rs.sources import HfParquetSource, HfRowsSource, HttpSettings, Source

ROOT = Path(__file__).resolve().parents[1]
BATCH_SIZE = 50
SHARDS = 2


@dataclass(frozen=True)
class Figure:
    documents: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.documents / self.seconds


def consume(source: Source, prefetch: int, work: Callable[[list[str]], None]) -> Figure:
    started = time.perf_counter()
    documents = 0
    with source:
        for batch in source.iter_batches(prefetch):
            work(batch.documents)
            documents += len(batch.documents)
    return Figure(documents, time.perf_counter() - started)


def idle(_documents: list[str]) -> None:
    pass


def busy_consumer(work_ms: float) -> Callable[[list[str]], None]:
    tokenizer = Tokenizer()

    def work(documents: list[str]) -> None:
        started = time.perf_counter()
        tokenizer.tokenize_batch(documents)
        # The rest of the batch's work (Rust, GIL released): a pause, not a busy loop.
        time.sleep(max(0.0, work_ms / 1000 - (time.perf_counter() - started)))

    return work


def dataset_rows(count: int) -> list[dict[str, Any]]:
    words = "spectral sparse frequency amplitude phase word context window corpus".split()
    return [
        {"text": " ".join(words[(i + j) % len(words)] for j in range(80)) + f" #{i}", "id": i}
        for i in range(count)
    ]


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    for row in [header, ["-" * w for w in widths], *rows]:
        print(
            "  "
            + "  ".join(
                cell.rjust(w) if i else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(row, widths))
            )
        )


class Bench:
    """Builds sources against one loopback hub serving ``rows`` (rows API and shards)."""

    def __init__(self, hub: Any, rows: list[dict[str, Any]], cache: Path) -> None:
        self.hub = hub
        self.rows = rows
        self.cache = cache
        self.http = HttpSettings(connect_timeout=5, read_timeout=30)
        hub.add_dataset("bench/data", {("default", "train"): rows}, shards=SHARDS)

    def options(self) -> dict[str, Any]:
        return {
            "batch_size": BATCH_SIZE,
            "http": self.http,
            "datasets_server_endpoint": self.hub.url,
            "hf_endpoint": self.hub.url,
        }

    def rows_source(self) -> HfRowsSource:
        return HfRowsSource("bench/data", **self.options())

    def parquet_source(self) -> HfParquetSource:
        return HfParquetSource("bench/data", cache_dir=self.cache, **self.options())

    def prefetch_row(self, label: str, work: Callable[[list[str]], None]) -> list[str]:
        plain = consume(self.rows_source(), 0, work)
        ahead = consume(self.rows_source(), 2, work)
        assert plain.documents == ahead.documents == len(self.rows)
        ratio = ahead.rate / plain.rate
        return [label, f"{plain.rate:,.0f}", f"{ahead.rate:,.0f}", f"{ratio:.2f}x"]

    def parquet_rows(self) -> list[list[str]]:
        via_rows = consume(self.rows_source(), 0, idle)
        via_parquet = consume(self.parquet_source(), 0, idle)
        assert via_parquet.documents == via_rows.documents == len(self.rows)
        ratio = via_parquet.rate / via_rows.rate
        return [
            ["hf (rows API)", f"{via_rows.seconds:.2f}", f"{via_rows.rate:,.0f}", "1.00x"],
            [
                "hf-parquet",
                f"{via_parquet.seconds:.2f}",
                f"{via_parquet.rate:,.0f}",
                f"{ratio:.1f}x",
            ],
        ]


def measure(
    args: argparse.Namespace, rows: list[dict[str, Any]], workdir: Path
) -> tuple[list[list[str]], list[list[str]]]:
    """The two tables' rows, measured against a hub serving ``rows`` from ``workdir``."""
    sys.path.insert(0, str(ROOT / "tests" / "sources"))
    from hf_server import HubServer  # the test suite's loopback hub

    with HubServer(workdir, latency=args.latency_ms / 1000) as hub:
        bench = Bench(hub, rows, workdir / "cache")
        working = f"consumer working {args.work_ms:g} ms/batch"
        prefetch_table = [
            bench.prefetch_row("idle consumer", idle),
            bench.prefetch_row(working, busy_consumer(args.work_ms)),
        ]
        return prefetch_table, bench.parquet_rows()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=100, help="pages of 50 documents")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="added per request")
    parser.add_argument("--work-ms", type=float, default=50.0, help="consumer work per batch")
    args = parser.parse_args()

    rows = dataset_rows(args.pages * BATCH_SIZE)
    with tempfile.TemporaryDirectory() as tmp:
        prefetch_table, parquet_table = measure(args, rows, Path(tmp))

    setting = f"{args.pages} pages x {BATCH_SIZE} documents, {args.latency_ms:g} ms per request"
    print_table(
        f"--source hf, prefetch off vs on ({setting}, loopback hub)",
        ["scenario", "prefetch=0 docs/s", "prefetch=2 docs/s", "ratio"],
        prefetch_table,
    )
    print_table(
        f"Parquet shards vs rows API, same {len(rows):,} documents ({SHARDS} shards)",
        ["source", "seconds", "docs/s", "ratio"],
        parquet_table,
    )


if __name__ == "__main__":
    main()
