"""Phase 1's cache: the streamed documents as first-seen word ids, and those words.

Each document is tokenized once, by ``WordTable.encode`` (Rust): every word gets the next id
the first time it is seen, and the document is cached as its ids (4 bytes a token, little
endian) followed by ``END_OF_DOCUMENT``. The words go to their own append-only shards, one a
line, in id order; a checkpoint appends only the words first seen since the previous one
(``sync``), so its cost does not grow with the words seen so far. Counts live in the table and
are recounted from the ids on resume. Phase 2 builds the vocabulary from the counts and remaps
the ids through a table (``iter_corpus_chunks``): no text is tokenized twice, and other
vocabulary settings (``--force``) only need another remap.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Optional

import numpy as np
import numpy.typing as npt

from css_rs._core import END_OF_DOCUMENT, Vocabulary, WordTable, remap_documents
from css_rs.checkpoint import (
    CheckpointError,
    CheckpointStore,
    FileRecord,
    ShardWriter,
    iter_shard_chunks,
)

ID_BYTES = 4
CHUNK_BYTES = 8 * 1024 * 1024  # a multiple of ID_BYTES

__all__ = ["END_OF_DOCUMENT", "IdCache"]


class IdCache:
    """The ids shards, the words shards and the word table that numbers them."""

    def __init__(
        self,
        store: CheckpointStore,
        table: Optional[WordTable],
        ids: Sequence[FileRecord] = (),
        words: Sequence[FileRecord] = (),
    ) -> None:
        self.store = store
        self._table = table
        self.ids = ShardWriter(store.cache_dir, ids, kind="ids")
        self.words = ShardWriter(store.cache_dir, words, kind="words")

    @classmethod
    def fresh(cls, store: CheckpointStore) -> IdCache:
        return cls(store, WordTable())

    @classmethod
    def restore(
        cls,
        store: CheckpointStore,
        ids: Sequence[FileRecord],
        words: Sequence[FileRecord],
        *,
        with_table: bool,
    ) -> IdCache:
        """The cache a checkpoint names (its shards already verified and cut to size). With
        ``with_table`` the word table is rebuilt from the words and recounted from the ids
        (one pass over the cache): needed to stream on or to build a vocabulary."""
        table = cls._read_table(store, ids, words) if with_table else None
        return cls(store, table, ids, words)

    @staticmethod
    def _read_table(
        store: CheckpointStore, ids: Sequence[FileRecord], words: Sequence[FileRecord]
    ) -> WordTable:
        where = store.path_of(words[0].name if words else "words-00000.txt")
        try:
            table = WordTable.from_words_text(store.read_shards(words))
        except ValueError as e:
            raise _damaged(where, str(e)) from None
        for record in ids:
            path = store.path_of(record.name)
            if record.size % ID_BYTES:
                raise _damaged(path, "size is not a whole number of ids")
            for block in iter_shard_chunks(store.cache_dir, [record], CHUNK_BYTES):
                try:
                    table.recount(np.frombuffer(block, dtype="<u4"))
                except ValueError as e:
                    raise _damaged(path, str(e)) from None
        if sum(r.entries for r in words) != len(table):
            raise _damaged(where, "the manifest counts another number of words")
        return table

    @property
    def table(self) -> WordTable:
        assert self._table is not None, "restored without its word table"
        return self._table

    @property
    def distinct_words(self) -> int:
        return len(self._table) if self._table is not None else self.words.entries

    @property
    def bytes(self) -> int:
        """Bytes of ids cached (the words are O(distinct words) beside them)."""
        return sum(r.size for r in self.ids.records())

    def append(self, documents: list[str]) -> int:
        """Tokenizes and caches ``documents`` (not yet durable); returns their tokens."""
        stream, tokens = self.table.encode(documents)
        self.ids.append(stream.astype("<u4", copy=False).tobytes(), len(documents))
        return int(tokens)

    def sync(self) -> tuple[list[FileRecord], list[FileRecord]]:
        """Appends the words first seen since the last sync, makes everything durable, and
        returns the ids and words records a manifest should name."""
        if self._table is not None:
            saved = self.words.entries
            self.words.append(self.table.words_text(saved), len(self.table) - saved)
        return self.ids.sync(), self.words.sync()

    def records(self) -> tuple[list[FileRecord], list[FileRecord]]:
        return self.ids.records(), self.words.records()

    def vocabulary(
        self, min_count: int, max_size: int
    ) -> tuple[Vocabulary, npt.NDArray[np.uint32]]:
        """The vocabulary of the counts so far, and the first-seen id -> vocabulary id table."""
        return self.table.vocabulary(min_count, max_size)

    def iter_corpus_chunks(
        self, remap: npt.NDArray[np.uint32]
    ) -> Iterator[tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64], int]]:
        """The cached documents through ``remap``, chunk by chunk: ``(ids, offsets, read)``
        with offsets from 0 and empty documents dropped, ``read`` the documents read."""
        records = self.ids.sync()
        rest = np.zeros(0, dtype=np.uint32)
        for block in iter_shard_chunks(self.store.cache_dir, records, CHUNK_BYTES):
            stream = np.frombuffer(block, dtype="<u4").astype(np.uint32, copy=False)
            if len(rest):
                stream = np.concatenate([rest, stream])
            try:
                ids, offsets, used = remap_documents(stream, remap)
            except ValueError as e:
                raise _damaged(self.store.path_of(records[-1].name), str(e)) from None
            read = int(np.count_nonzero(stream[:used] == END_OF_DOCUMENT))
            rest = stream[used:].copy()
            yield ids, offsets, read
        if len(rest):
            name = records[-1].name if records else "ids-00000.u32"
            raise _damaged(self.store.path_of(name), "the last document is cut short")

    def release_table(self) -> None:
        """Frees the word table once the corpus is built (nothing is appended after that)."""
        self._table = None

    def close(self) -> None:
        self.ids.close()
        self.words.close()


def _damaged(path: Path, why: str) -> CheckpointError:
    return CheckpointError(
        f"checkpoint file {path} is damaged: {why}; it was left in place "
        "(start over with --fresh, which deletes the checkpoint)"
    )
