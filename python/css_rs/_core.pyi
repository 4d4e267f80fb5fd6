"""Type stubs for the Rust extension module ``css_rs._core``."""

from collections.abc import Callable, Iterable, Mapping
from typing import Any, final

import numpy as np
import numpy.typing as npt

__all__ = [
    "END_OF_DOCUMENT",
    "CssRsError",
    "InputError",
    "NotReadyError",
    "Progress",
    "RoundTrainer",
    "SenseSettings",
    "Spectra",
    "Tokenizer",
    "Trainer",
    "TrainingState",
    "Vocabulary",
    "WordTable",
    "__version__",
    "engine_defaults",
    "frequent_word_counts",
    "initial_spectra",
    "kernels",
    "merge_spectra",
    "remap_documents",
    "spectra_from_arrays",
    "vocabulary_buckets",
]

__version__: str

class CssRsError(Exception):
    """A failure css-rs can explain in one line (exit code 1 on the command line)."""

class InputError(CssRsError, ValueError):
    """Bad input or usage: names the file, field or value and what is allowed (exit code 2)."""

class NotReadyError(CssRsError, RuntimeError):
    """An operation that needs something not made yet, such as a built vocabulary."""

def kernels() -> str: ...
def engine_defaults() -> str: ...

@final
class Tokenizer:
    """Lowercases, then splits into maximal runs of letters, digits (any script) and ``_``."""

    def __new__(cls) -> Tokenizer: ...
    def tokenize(self, text: str) -> list[str]: ...
    def tokenize_batch(self, texts: Iterable[str]) -> list[list[str]]: ...

@final
class Vocabulary:
    """Word counts (fed batch by batch) and ids 0..V by descending count, ties by word."""

    def __new__(cls) -> Vocabulary: ...
    def update(self, texts: Iterable[str]) -> int: ...
    def merge(self, other: Vocabulary) -> None: ...
    def build(self, min_count: int = 5, max_size: int = 50000) -> None: ...
    @staticmethod
    def from_texts(
        texts: Iterable[str], min_count: int = 5, max_size: int = 50000
    ) -> Vocabulary: ...
    @staticmethod
    def from_counts(
        counts: Mapping[str, int], min_count: int = 5, max_size: int = 50000
    ) -> Vocabulary: ...
    def __len__(self) -> int: ...
    def __contains__(self, word: str, /) -> bool: ...
    def word_to_id(self, word: str) -> int | None: ...
    def id_to_word(self, id: int) -> str: ...
    @property
    def words(self) -> list[str]: ...
    @property
    def counts(self) -> dict[str, int]: ...
    @property
    def total_tokens(self) -> int: ...
    @property
    def distinct_words(self) -> int: ...
    @property
    def is_built(self) -> bool: ...
    def raw_counts(self) -> dict[str, int]: ...
    def __reduce__(self) -> tuple[Callable[[str], Vocabulary], tuple[str]]: ...
    def encode(self, text: str) -> npt.NDArray[np.uint32]: ...
    def encode_batch(
        self, texts: Iterable[str]
    ) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64]]: ...
    def to_json(self) -> str: ...
    @staticmethod
    def from_json(text: str) -> Vocabulary: ...
    @staticmethod
    def from_words(words: list[str], counts: list[int]) -> Vocabulary: ...

END_OF_DOCUMENT: int

@final
class WordTable:
    """Words numbered in the order first seen, with counts; documents encoded as id streams."""

    def __new__(cls) -> WordTable: ...
    @staticmethod
    def from_words_text(data: bytes) -> WordTable: ...
    def __len__(self) -> int: ...
    def encode(self, texts: Iterable[str]) -> tuple[npt.NDArray[np.uint32], int]: ...
    def recount(self, stream: npt.NDArray[np.uint32]) -> int: ...
    def words_text(self, start: int) -> bytes: ...
    def vocabulary(
        self, min_count: int, max_size: int
    ) -> tuple[Vocabulary, npt.NDArray[np.uint32]]: ...

def remap_documents(
    stream: npt.NDArray[np.uint32], remap: npt.NDArray[np.uint32]
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64], int]: ...

@final
class Trainer:
    """The Rust trainer; use ``css_rs.Trainer`` (python/css_rs/training.py) instead."""

    def __new__(
        cls,
        ids: npt.NDArray[np.uint32],
        offsets: npt.NDArray[np.int64],
        vocab: Vocabulary,
        settings_json: str,
        state: TrainingState | None = None,
    ) -> Trainer: ...
    def step(self, seconds: float = 0.5) -> Progress: ...
    def progress(self) -> Progress: ...
    @property
    def done(self) -> bool: ...
    def epoch_stats(self) -> list[dict[str, Any]]: ...
    def state(self) -> TrainingState: ...
    def snapshot(self) -> Spectra: ...

@final
class Progress:
    """Where a training run stands (reported about every 0.5 s)."""

    def __new__(
        cls,
        tokens_done: int,
        tokens_total: int,
        epoch: int,
        epochs: int,
        loss: float,
        avg_active: float,
        learning_rate: float,
        elapsed: float,
        tokens_per_second: float,
        done: bool,
    ) -> Progress: ...
    @property
    def tokens_done(self) -> int: ...
    @property
    def tokens_total(self) -> int: ...
    @property
    def epoch(self) -> int: ...
    @property
    def epochs(self) -> int: ...
    @property
    def loss(self) -> float: ...
    @property
    def avg_active(self) -> float: ...
    @property
    def learning_rate(self) -> float: ...
    @property
    def elapsed(self) -> float: ...
    @property
    def tokens_per_second(self) -> float: ...
    @property
    def done(self) -> bool: ...
    @property
    def fraction(self) -> float: ...

@final
class TrainingState:
    """Everything needed to continue a run exactly: spectra, epoch, corpus position, RNG states,
    step counters. Opaque bytes; resuming with ``threads=1`` reproduces the uninterrupted run."""

    def __new__(cls, data: bytes | bytearray | memoryview) -> TrainingState: ...
    @staticmethod
    def from_bytes(data: bytes | bytearray | memoryview) -> TrainingState: ...
    def to_bytes(self) -> bytes: ...
    def __len__(self) -> int: ...

@final
class Spectra:
    """Trained spectra: K slots per word sorted by frequency, empty slots (0xFFFF) last."""

    @staticmethod
    def from_slots(
        k: int,
        frequency_dim: int,
        freq: npt.NDArray[np.uint16],
        amp: npt.NDArray[np.float32],
        phase: npt.NDArray[np.float32],
    ) -> Spectra: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def k(self) -> int: ...
    @property
    def frequency_dim(self) -> int: ...
    def freq(self) -> npt.NDArray[np.uint16]: ...
    def amp(self) -> npt.NDArray[np.float32]: ...
    def phase(self) -> npt.NDArray[np.float32]: ...
    def re(self) -> npt.NDArray[np.float32]: ...
    def im(self) -> npt.NDArray[np.float32]: ...
    def norms(self) -> npt.NDArray[np.float32]: ...
    def active_counts(self) -> npt.NDArray[np.uint32]: ...
    def frequency_usage(self) -> npt.NDArray[np.uint64]: ...
    def usage_stats(self) -> tuple[int, float, float, int]: ...
    def similarity(self, a: int, b: int) -> float: ...
    def similar(self, word: int, k: int) -> list[tuple[int, float]]: ...
    def peaks(self, word: int, ratio: float) -> list[tuple[int, float, float]]: ...
    def most_similar(
        self, positive: list[int], negative: list[int], k: int
    ) -> list[tuple[int, float]]: ...
    def modes(self, freq: int, k: int) -> list[tuple[int, float]]: ...
    def senses(
        self, word_ids: list[int], settings: SenseSettings
    ) -> list[
        tuple[
            list[tuple[int, float, float, list[tuple[int, float]]]],
            list[tuple[list[tuple[int, float]], list[int]]],
        ]
    ]: ...
    def sense_weights(self, word_ids: list[int], settings: SenseSettings) -> list[list[float]]: ...

@final
class SenseSettings:
    """The settings of a sense analysis (``css_rs.analysis.SenseAnalyzer``), checked once."""

    def __new__(
        cls,
        *,
        peak_ratio: float = 0.25,
        k: int = 5,
        rank: str = "phase",
        neighbourhood: int = 20,
        merge_ratio: float = 0.45,
        min_share: float = 0.25,
        modes: bool = True,
        mode_share: float = 0.2,
        vocabulary: int | None = None,
    ) -> SenseSettings: ...

# --- distributed rounds (issue 16) ---------------------------------------------------------
# Spectra as (freq, re, im, counters): V*K, V*K, V*K and V values; a round's changed words as
# (words, freq, re, im, counters) of n rows.
_SpectraArrays = tuple[
    npt.NDArray[np.uint16],
    npt.NDArray[np.float32],
    npt.NDArray[np.float32],
    npt.NDArray[np.uint32],
]
_RowArrays = tuple[
    npt.NDArray[np.uint32],
    npt.NDArray[np.uint16],
    npt.NDArray[np.float32],
    npt.NDArray[np.float32],
    npt.NDArray[np.uint32],
]

def initial_spectra(vocab_size: int, settings_json: str) -> _SpectraArrays: ...
def vocabulary_buckets(vocab: Vocabulary, buckets: int) -> list[Vocabulary]: ...
def frequent_word_counts(vocab: Vocabulary, min_count: int) -> dict[str, int]: ...
def merge_spectra(
    spectra: _SpectraArrays, updates: list[_RowArrays], frequency_dim: int
) -> _SpectraArrays: ...
def spectra_from_arrays(spectra: _SpectraArrays, frequency_dim: int) -> Spectra: ...

@final
class RoundTrainer:
    """A worker's trainer of distributed rounds over its own encoded documents."""

    def __new__(
        cls,
        ids: npt.NDArray[np.uint32],
        offsets: npt.NDArray[np.int64],
        vocab: Vocabulary,
        settings_json: str,
    ) -> RoundTrainer: ...
    @property
    def documents(self) -> int: ...
    @property
    def tokens(self) -> int: ...
    def train_round(
        self,
        spectra: _SpectraArrays,
        *,
        first_doc: int,
        token_budget: int,
        epoch: int,
        round: int,
        worker: int,
        workers: int,
        cluster_tokens_done: int,
        cluster_tokens_total: int,
    ) -> tuple[_RowArrays, dict[str, Any]]: ...
