"""Shards: the files a distributed run reads, and which worker reads which.

A shard is one file: a local text, jsonl or parquet file (on storage every worker sees), or
one parquet file of a Hugging Face split as the ``/parquet`` endpoint lists it (each worker
downloads its own). Shards go to workers by size, largest first, each to the worker with the
fewest bytes so far (ties: the lower worker, then the shard's name): the same assignment
wherever and whenever it is computed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from css_rs.config import TrainConfig
from css_rs.errors import InputError
from css_rs.sources.base import Source
from css_rs.sources.download import download
from css_rs.sources.local import JsonlSource, LocalFilesSource, TextSource
from css_rs.sources.parquet import HfParquetSource, ParquetFileSource

LOCAL_KINDS: dict[str, Callable[..., LocalFilesSource]] = {
    "text": TextSource,
    "jsonl": JsonlSource,
    "parquet": ParquetFileSource,
}
DISTRIBUTED_SOURCES = (*LOCAL_KINDS, "hf-parquet")


@dataclass(frozen=True)
class ShardSpec:
    """One file to read: ``kind`` is a local source's name or ``hf-parquet``; ``location`` a
    path or a URL; ``index`` its place in the listing."""

    index: int
    kind: str
    location: str
    name: str
    size: int


def list_shards(config: TrainConfig) -> list[ShardSpec]:
    """The shards of ``config``'s source, in listing order."""
    if config.source in LOCAL_KINDS:
        if not config.path:
            raise InputError(f"--source {config.source} needs --path (a file, a folder or a glob)")
        files = LOCAL_KINDS[config.source](config.path).files
        return [
            ShardSpec(i, config.source, str(f), str(f), f.stat().st_size)
            for i, f in enumerate(files)
        ]
    if config.source == "hf-parquet":
        with _hub_source(config) as source:
            assert isinstance(source, HfParquetSource)
            return [
                ShardSpec(i, "hf-parquet", s.url, s.filename, s.size or 0)
                for i, s in enumerate(source.shards())
            ]
    raise InputError(
        f"source = {config.source!r} cannot be sharded: a distributed run reads files "
        f"(one of {', '.join(DISTRIBUTED_SOURCES)})"
    )


def assign_shards(shards: list[ShardSpec], workers: int) -> list[list[ShardSpec]]:
    """Each worker's shards (in listing order): largest first to the least loaded worker."""
    if workers < 1:
        raise ValueError(f"workers = {workers} is invalid: must be >= 1")
    loads = [0] * workers
    out: list[list[ShardSpec]] = [[] for _ in range(workers)]
    for shard in sorted(shards, key=lambda s: (-s.size, s.name, s.index)):
        target = min(range(workers), key=lambda w: (loads[w], w))
        out[target].append(shard)
        loads[target] += shard.size
    return [sorted(own, key=lambda s: s.index) for own in out]


def _common(config: TrainConfig) -> dict[str, Any]:
    return {
        "batch_size": config.batch_size,
        "max_batches": None,
        "max_doc_length": config.max_doc_length,
        "text_field": config.text_field,
    }


def _hub_source(config: TrainConfig) -> Source:
    return HfParquetSource(
        config.dataset,
        cache_dir=config.cache_folder(),
        dataset_config=config.dataset_config,
        split=config.split,
        datasets_server_endpoint=config.datasets_server_endpoint,
        hf_endpoint=config.hf_endpoint,
        **_common(config),
    )


def shard_batches(shard: ShardSpec, config: TrainConfig) -> Iterator[list[str]]:
    """The documents of one shard in batches, read as the single-process source reads them
    (the same parsing, ``text_field`` and ``max_doc_length``)."""
    path, downloaded = Path(shard.location), False
    if shard.kind == "hf-parquet":
        with _hub_source(config) as hub:
            assert isinstance(hub, HfParquetSource)
            listed = hub.shards()[shard.index]
            path = download(hub.client, shard.location, hub.shard_path(shard.index, listed))
            downloaded = not config.keep_shards
    reader = LOCAL_KINDS["parquet" if shard.kind == "hf-parquet" else shard.kind]
    try:
        with reader(path, **_common(config)) as source:
            yield from source.batches(prefetch=0)
    finally:
        if downloaded:
            path.unlink(missing_ok=True)


def total_size(shards: list[ShardSpec]) -> int:
    return sum(s.size for s in shards)


def describe_assignment(assignment: list[list[ShardSpec]]) -> list[dict[str, Any]]:
    """Per worker: its shard names and bytes (for metadata and checkpoints)."""
    return [{"shards": [s.name for s in own], "bytes": total_size(own)} for own in assignment]
