"""The id cache of phase 1: documents tokenized once into first-seen word ids, checkpoints
that append only what arrived since the previous one."""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np

from css_rs._core import END_OF_DOCUMENT, Vocabulary, WordTable, remap_documents
from css_rs.config import resolve_config
from css_rs.pipeline import TrainingRun
from css_rs.reporter import Reporter
from css_rs.test_hooks import TestHooks


def random_texts(n: int, seed: int, vocabulary: int = 400) -> list[str]:
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(vocabulary)] + ["Word", "naïve", "a" * 40]
    return [" ".join(rng.choices(words, k=rng.randint(0, 30))) for _ in range(n)]


class CacheSnapshots(TestHooks):
    """At every checkpoint (shards synced, manifest not yet written): the cache's shards."""

    def __init__(self, cache: Path) -> None:
        super().__init__(None, step_seconds=0.005)
        self.cache = cache
        self.snapshots: list[dict[str, bytes]] = []

    def reached(self, event: str) -> None:
        if event == "checkpoint":
            files = sorted(self.cache.iterdir())
            self.snapshots.append({p.name: p.read_bytes() for p in files})


def test_streaming_checkpoints_only_append(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    texts = random_texts(400, seed=1, vocabulary=3000)
    corpus.write_text("\n".join(texts) + "\n")
    flags = {
        "source": "text",
        "path": str(corpus),
        "batch_size": 20,
        "save_checkpoint_every": 2,
        "checkpoint_every_seconds": 0.001,
        "epochs": 1,
        "threads": 1,
        "min_word_freq": 1,
        "checkpoint_path": str(tmp_path / "c" / "checkpoint.json"),
        "model_path": str(tmp_path / "m" / "model.json"),
    }
    hooks = CacheSnapshots(tmp_path / "c" / "checkpoint.cache")
    TrainingRun(
        resolve_config(None, flags, {}), Reporter(io.StringIO(), live=False), hooks=hooks
    ).run()
    streaming = [s for s in hooks.snapshots if not any(n.startswith("corpus.") for n in s)]
    # (Checkpoints are paced by time too: how many fall in this short run varies.)
    assert len(streaming) >= 3
    for before, after in zip(streaming, streaming[1:]):
        assert set(after) == {"ids-00000.u32", "words-00000.txt"}, "no counts are rewritten"
        for name, data in before.items():
            assert after[name].startswith(data), f"{name} was rewritten, not appended to"
    words = streaming[-1]["words-00000.txt"].decode().splitlines()
    assert len(words) == len(set(words)) and "naïve" in words and "word" in words
    ids = np.frombuffer(streaming[-1]["ids-00000.u32"], dtype="<u4")
    assert np.count_nonzero(ids == END_OF_DOCUMENT) == sum(1 for t in texts if t)  # (blank
    # lines are not documents)
    assert int(ids[ids != END_OF_DOCUMENT].max()) == len(words) - 1


def test_ids_do_not_depend_on_batching_or_threads() -> None:
    """Batches large enough to be encoded in parallel give the stream and words that one
    document at a time does."""
    texts = random_texts(12_000, seed=2, vocabulary=50_000)
    assert sum(map(len, texts)) > 1_000_000  # above the parallel threshold (256 KB)
    whole = WordTable()
    stream, tokens = whole.encode(texts)
    one_by_one = WordTable()
    parts = [one_by_one.encode([t])[0] for t in texts]
    assert np.array_equal(stream, np.concatenate(parts))
    assert whole.words_text(0) == one_by_one.words_text(0)
    assert tokens == int(np.count_nonzero(stream != END_OF_DOCUMENT))


def test_remapped_cache_equals_encoding_the_text_with_the_vocabulary() -> None:
    texts = random_texts(500, seed=3)
    table = WordTable()
    stream = np.concatenate([table.encode(texts[i : i + 37])[0] for i in range(0, 500, 37)])
    # As a resumed run sees it: the words as saved, the counts recounted from the ids.
    restored = WordTable.from_words_text(table.words_text(0))
    assert restored.recount(stream) == int(np.count_nonzero(stream != END_OF_DOCUMENT))
    vocab, remap = restored.vocabulary(3, 200)
    reference = Vocabulary.from_texts(texts, min_count=3, max_size=200)
    assert vocab.words == reference.words and vocab.counts == reference.counts
    ids, offsets, used = remap_documents(stream, remap)
    ref_ids, ref_offsets = reference.encode_batch(texts)
    lengths = np.diff(ref_offsets)
    assert used == len(stream)
    assert np.array_equal(ids, ref_ids)
    assert np.array_equal(np.diff(offsets), lengths[lengths > 0])
