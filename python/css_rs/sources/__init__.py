"""Data sources: where ``css-rs train`` gets its documents.

One interface (``Source``), six implementations, one factory::

    from css_rs.sources import make_source
    source = make_source(config)              # config.source picks the class
    source.resume(saved_position)             # optional: continue a checkpointed run
    for batch in source.iter_batches():       # Batch(documents: list[str], position: dict)
        use(batch.documents)
        save_checkpoint(batch.position)       # == source.position at this moment

==============  ======================  ============================================
``source``      class                   reads
==============  ======================  ============================================
synthetic       ``SyntheticSource``     the seeded demo corpus (``css_rs.synthetic``)
hf              ``HfRowsSource``        dataset viewer ``/rows`` pages
hf-parquet      ``HfParquetSource``     the split's parquet shards, downloaded one by one
text            ``TextSource``          text files, one document per line
jsonl           ``JsonlSource``         JSON lines, the document in ``text_field``
parquet         ``ParquetFileSource``   local parquet files, the ``text_field`` column
==============  ======================  ============================================

The contract every source keeps:

- ``iter_batches(prefetch=2) -> Iterator[Batch]``: lists of ``batch_size`` documents (the last
  one may be shorter), each cut to ``max_doc_length`` characters (0: no cut), at most
  ``max_batches`` batches in total (counted across resumes). ``prefetch`` > 0 reads that many
  batches ahead in a background thread (``css_rs.sources.prefetch``); errors of the thread are
  re-raised in the consumer; closing the iterator (``break``, ``close()``, ``KeyboardInterrupt``)
  stops the thread. ``batches(prefetch=2)`` yields only the documents.
- ``position``: a flat JSON object, the position right after the last batch handed out (the
  reading thread's progress ahead of the consumer is never visible). It carries ``source`` (the
  kind), a cursor (``offset``; ``shard``/``filename``/``row``; ``file_index``/``file`` plus
  ``line``/``byte`` or ``row``; ``document``), ``batches`` and ``skipped``.
- ``resume(position)``: the next iteration starts with the first document not yet handed out:
  nothing skipped, nothing repeated. Positions of another kind, malformed ones, and ones naming
  files that are no longer where they were raise ``InputError``.
- ``skipped``: rows whose text was missing, null or not a string (skipped, never fatal).
- ``total_documents``: rows in the dataset when known (hf sources via ``/size`` unless partial,
  synthetic), else None; it never accounts for ``max_batches``.
- ``close()`` (or ``with source:``) releases connections.

Errors: ``InputError`` (exit code 2) for what the user can fix (bad path, unknown dataset, config,
split or text field, missing or refused token); ``CssRsError`` (exit code 1) for failures such as
retries exhausted, whose message names the endpoint and offset (``css-rs train`` adds how to
resume when it saved a checkpoint).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from css_rs.config import TrainConfig
from css_rs.errors import InputError
from css_rs.sources.base import Batch, Chunk, Position, Source
from css_rs.sources.hf import DatasetViewer, HfRowsSource, HubSource, SplitSize
from css_rs.sources.http import HttpClient, HttpSettings, SecretToken, find_hf_token
from css_rs.sources.local import JsonlSource, LocalFilesSource, TextSource, expand_paths
from css_rs.sources.parquet import HfParquetSource, ParquetFileSource
from css_rs.sources.prefetch import Prefetcher
from css_rs.sources.synthetic import SyntheticSource

__all__ = [
    "Batch",
    "Chunk",
    "DatasetViewer",
    "HfParquetSource",
    "HfRowsSource",
    "HttpClient",
    "HttpSettings",
    "HubSource",
    "JsonlSource",
    "LocalFilesSource",
    "ParquetFileSource",
    "Position",
    "Prefetcher",
    "SecretToken",
    "Source",
    "SplitSize",
    "SyntheticSource",
    "TextSource",
    "expand_paths",
    "find_hf_token",
    "make_source",
]


def make_source(config: TrainConfig, *, http: Optional[HttpSettings] = None) -> Source:
    """The source ``config.source`` names, set up from ``config`` (``http``: network tuning)."""
    common: dict[str, Any] = {
        "batch_size": config.batch_size,
        "max_batches": config.batch_limit(),
        "max_doc_length": config.max_doc_length,
        "text_field": config.text_field,
    }
    if config.source == "synthetic":
        return SyntheticSource(config.synthetic_documents, seed=config.seed, **common)
    if config.source in ("hf", "hf-parquet"):
        hub: dict[str, Any] = {
            "dataset_config": config.dataset_config,
            "split": config.split,
            "datasets_server_endpoint": config.datasets_server_endpoint,
            "hf_endpoint": config.hf_endpoint,
            "http": http,
        }
        if config.source == "hf":
            return HfRowsSource(config.dataset, **hub, **common)
        return HfParquetSource(
            config.dataset,
            cache_dir=config.cache_folder(),
            keep_shards=config.keep_shards,
            **hub,
            **common,
        )
    local: dict[str, Callable[..., Source]] = {
        "text": TextSource,
        "jsonl": JsonlSource,
        "parquet": ParquetFileSource,
    }
    if config.source not in local:
        raise InputError(f"source = {config.source!r} is invalid: no such source")
    if not config.path:
        raise InputError(f"--source {config.source} needs --path (a file, a folder or a glob)")
    return local[config.source](config.path, **common)
