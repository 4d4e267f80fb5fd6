"""The built-in demo corpus as a source (``--source synthetic``).

Wraps ``css_rs.synthetic.iter_documents``: document ``i`` depends only on ``(seed, i)``, so the
position is just the next document's index, ``{"document": i}``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any, Optional

from css_rs.config import TrainConfig
from css_rs.errors import InputError
from css_rs.sources.base import Chunk, Cursor, Source
from css_rs.synthetic import iter_documents

_DEFAULTS = TrainConfig()
GENERATE_AT_ONCE = 256


def _document_cursor(first: int, consumed: int) -> Cursor:
    return {"document": first + consumed}


class SyntheticSource(Source):
    """``num_documents`` seeded documents (defaults: TrainConfig's ``synthetic_documents``
    and ``seed``); other keyword arguments as ``Source``."""

    kind = "synthetic"

    def __init__(
        self, num_documents: Optional[int] = None, *, seed: Optional[int] = None, **common: Any
    ) -> None:
        self.num_documents = (
            _DEFAULTS.synthetic_documents if num_documents is None else num_documents
        )
        self.seed = _DEFAULTS.seed if seed is None else seed
        if not isinstance(self.num_documents, int) or self.num_documents < 1:
            raise InputError(
                f"synthetic_documents = {self.num_documents!r} is invalid: must be an integer >= 1"
            )
        super().__init__(**common)

    def __repr__(self) -> str:
        return (
            f"SyntheticSource(num_documents={self.num_documents}, seed={self.seed}, "
            f"batch_size={self.batch_size}, max_batches={self.max_batches})"
        )

    @property
    def total_documents(self) -> Optional[int]:
        return self.num_documents

    def _initial_cursor(self) -> Cursor:
        return {"document": 0}

    def _check_cursor(self, cursor: Mapping[str, Any]) -> Cursor:
        index = cursor.get("document")
        valid = isinstance(index, int) and not isinstance(index, bool) and index >= 0
        if not valid or len(cursor) != 1:
            raise InputError(
                f"invalid synthetic position {dict(cursor)!r}: expected {{'document': n >= 0}}"
            )
        return {"document": index}

    def _read(self, cursor: Cursor) -> Iterator[Chunk]:
        for first in range(cursor["document"], self.num_documents, GENERATE_AT_ONCE):
            last = min(first + GENERATE_AT_ONCE, self.num_documents)
            documents = list(iter_documents(last, self.seed, first))
            yield Chunk(documents, functools.partial(_document_cursor, first))
