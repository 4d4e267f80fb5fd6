"""Distributed runs over a Hugging Face split's parquet shards (``/parquet`` on a loopback
hub): each shard is listed with its size, downloaded by the worker that reads it, and the
vocabulary equals the single-process one (issue 16)."""

from __future__ import annotations

from pathlib import Path

from css_rs._core import Vocabulary
from css_rs.config import TrainConfig
from css_rs.distributed import DistributedTrainer, LocalEngine, build_vocabulary, list_shards
from css_rs.sources import make_source
from hf_server import HubServer, text_rows

SHARDS = 3


def hf_config(hub: HubServer, tmp_path: Path) -> TrainConfig:
    hub.add_dataset("org/data", {("default", "train"): text_rows(60)}, shards=SHARDS)
    return TrainConfig(
        source="hf-parquet",
        dataset="org/data",
        max_batches=None,
        datasets_server_endpoint=hub.url,
        hf_endpoint=hub.url,
        checkpoint_path=str(tmp_path / "run" / "training_checkpoint.json"),
        min_word_freq=1,
        frequency_dim=16,
        max_frequencies=2,
        epochs=1,
        round_tokens=100,
    )


def test_hf_parquet_shards_give_the_single_process_vocabulary(
    hub: HubServer, tmp_path: Path
) -> None:
    config = hf_config(hub, tmp_path)
    shards = list_shards(config)
    assert [s.index for s in shards] == list(range(SHARDS))
    assert all(s.kind == "hf-parquet" and s.size > 0 for s in shards)
    single = Vocabulary()
    with make_source(config) as source:
        for batch in source.batches():
            single.update(batch)
    single.build(config.min_word_freq, config.max_vocab_size)
    distributed, _ = build_vocabulary(LocalEngine(), shards, config)
    assert distributed.words == single.words
    assert distributed.counts == single.counts
    # Downloaded shards are deleted once read (keep_shards is off).
    assert not [p for p in (tmp_path / "run").rglob("*.parquet")]


def test_hf_parquet_shards_train_on_workers(hub: HubServer, tmp_path: Path) -> None:
    config = hf_config(hub, tmp_path)
    trainer = DistributedTrainer(LocalEngine(), config, list_shards(config))
    trainer.prepare()
    model = trainer.run()
    trainer.engine.close()
    assert sum(w.tokens for w in trainer.workers) == trainer.state.cluster_tokens_done > 0
    assert len(model) == len(trainer.vocab or [])
