"""``TrainConfig``: every setting of ALGORITHM.md and of the training pipeline, validated on
construction. A wrong value raises ``ValueError`` naming the field, the value and the allowed
range, so the CLI can print it as a one-line error.

Settings are grouped in sections (the TOML file's tables); names are the original guide's
camelCase settings in snake_case (``minWordFreq`` -> ``min_word_freq``).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Optional

# One entry per allowed-value rule: returns None when fine, else the allowed range in words.
Check = Callable[[Any], Optional[str]]


def _int_range(lo: int, hi: int | None = None) -> Check:
    def check(v: Any) -> str | None:
        ok = isinstance(v, int) and not isinstance(v, bool) and v >= lo and (hi is None or v <= hi)
        if ok:
            return None
        return f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]"

    return check


def _float_range(lo: float, hi: float | None = None, *, lo_open: bool = False) -> Check:
    def check(v: Any) -> str | None:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            above = v > lo if lo_open else v >= lo
            if above and (hi is None or v <= hi):
                return None
        low = f"> {lo}" if lo_open else f">= {lo}"
        return f"a finite number {low}" + ("" if hi is None else f" and <= {hi}")

    return check


def _choice(*options: str) -> Check:
    def check(v: Any) -> str | None:
        return None if v in options else "one of " + ", ".join(repr(o) for o in options)

    return check


def _optional(inner: Check) -> Check:
    def check(v: Any) -> str | None:
        if v is None:
            return None
        err = inner(v)
        return None if err is None else f"{err}, or unset"

    return check


def _is_bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else "true or false"


def _is_str(v: Any) -> str | None:
    return None if isinstance(v, str) else "a string"


def _setting(section: str, default: Any, check: Check, doc: str) -> Any:
    return field(default=default, metadata={"section": section, "check": check, "doc": doc})


SOURCES = ("synthetic", "hf", "hf-parquet", "text", "jsonl", "parquet")


@dataclass(frozen=True)
class TrainConfig:
    """All settings of a css-rs run. Construct with keywords; invalid values raise ValueError."""

    # --- dataset -------------------------------------------------------------------------
    source: str = _setting("dataset", "synthetic", _choice(*SOURCES), "where documents come from")
    dataset: str = _setting(
        "dataset", "karpathy/fineweb-edu-100b-shuffle", _is_str, "Hugging Face dataset name"
    )
    dataset_config: str = _setting("dataset", "default", _is_str, "Hugging Face dataset config")
    split: str = _setting("dataset", "train", _is_str, "dataset split")
    path: Optional[str] = _setting(
        "dataset", None, _optional(_is_str), "file, folder or glob (text, jsonl, parquet)"
    )
    text_field: str = _setting("dataset", "text", _is_str, "column or key holding the text")
    batch_size: int = _setting("dataset", 50, _int_range(1, 100), "documents per fetch")
    max_batches: Optional[int] = _setting(
        "dataset", 100, _optional(_int_range(1)), "stop after this many batches (unset: all)"
    )
    max_doc_length: int = _setting(
        "dataset", 5000, _int_range(0), "characters kept per document (0: no cut)"
    )
    datasets_server_endpoint: str = _setting(
        "dataset", "https://datasets-server.huggingface.co", _is_str, "dataset viewer API"
    )
    hf_endpoint: str = _setting("dataset", "https://huggingface.co", _is_str, "Hub endpoint")
    keep_shards: bool = _setting("dataset", False, _is_bool, "keep downloaded parquet shards")
    synthetic_documents: int = _setting(
        "dataset", 3000, _int_range(1), "documents of the built-in synthetic corpus"
    )

    # --- vocabulary ----------------------------------------------------------------------
    min_word_freq: int = _setting("vocabulary", 5, _int_range(1), "minimum count of a word")
    max_vocab_size: int = _setting("vocabulary", 50000, _int_range(1), "maximum vocabulary size")

    # --- model ---------------------------------------------------------------------------
    frequency_dim: int = _setting("model", 200, _int_range(1, 65535), "frequency space size D")
    max_frequencies: int = _setting(
        "model", 8, _int_range(1, 64), "active frequencies per word K (<= frequency_dim)"
    )
    min_init_frequencies: Optional[int] = _setting(
        "model", None, _optional(_int_range(1)), "random initial count in [this, K] (unset: K)"
    )
    init_amp_min: float = _setting("model", 0.001, _float_range(0.0, lo_open=True), "")
    init_amp_max: float = _setting("model", 0.01, _float_range(0.0, lo_open=True), "")
    use_phases: bool = _setting("model", True, _is_bool, "complex spectra (false: real)")
    window_size: int = _setting("model", 3, _int_range(1, 1000), "context window W")
    negative_count: int = _setting("model", 5, _int_range(0, 1000), "negatives per position")
    negative_distribution: str = _setting(
        "model", "unigram", _choice("unigram", "uniform"), "unigram^0.75 or uniform"
    )
    loss: str = _setting("model", "logistic", _choice("logistic", "hinge"), "objective")
    margin: float = _setting("model", 0.5, _float_range(0.0), "hinge margin")
    learning_rate: float = _setting(
        "model", 0.3, _float_range(0.0, 100.0, lo_open=True), "initial learning rate"
    )
    min_lr: float = _setting("model", 1e-4, _float_range(0.0), "final learning rate (linear)")
    lr_schedule: str = _setting("model", "linear", _choice("linear", "step"), "")
    negative_lr_scale: float = _setting("model", 0.1, _float_range(0.0), "negatives' lr factor")
    update_context: bool = _setting("model", True, _is_bool, "also update context words")
    sparsity_penalty: float = _setting("model", 0.0, _float_range(0.0), "L1 penalty lambda")
    normalize: str = _setting("model", "none", _choice("none", "l2"), "per-update normalisation")
    max_norm: Optional[float] = _setting(
        "model", None, _optional(_float_range(0.0, lo_open=True)), "cap on a spectrum's norm"
    )
    sample: float = _setting("model", 1e-3, _float_range(0.0, 1.0), "subsampling threshold")
    exploration_fraction: float = _setting(
        "model", 0.2, _float_range(0.0, 1.0), "share of training with free supports"
    )
    explore_prune_threshold: float = _setting("model", 0.001, _float_range(0.0), "")
    refine_prune_threshold: float = _setting("model", 1e-4, _float_range(0.0), "")
    refine_prune_every: int = _setting("model", 1000, _int_range(1), "updates between prunes")

    # --- training ------------------------------------------------------------------------
    epochs: int = _setting("training", 5, _int_range(1, 10000), "passes over the corpus")
    training_batch_size: int = _setting(
        "training", 100, _int_range(1), "documents per work unit handed to a worker"
    )
    threads: int = _setting("training", 0, _int_range(0, 1024), "worker threads (0: all cores)")
    seed: int = _setting("training", 1, _int_range(0, 2**63 - 1), "random seed")

    # --- checkpointing and output --------------------------------------------------------
    save_checkpoint_every: int = _setting(
        "checkpoint", 20, _int_range(1), "batches between checkpoints while streaming"
    )
    checkpoint_every_seconds: float = _setting(
        "checkpoint", 300.0, _float_range(0.0, lo_open=True), "seconds between training checkpoints"
    )
    resume_from_checkpoint: bool = _setting("checkpoint", True, _is_bool, "resume automatically")
    checkpoint_path: str = _setting(
        "checkpoint", "./checkpoints/training_checkpoint.json", _is_str, "checkpoint manifest"
    )
    cache_dir: Optional[str] = _setting(
        "checkpoint", None, _optional(_is_str), "run cache (unset: beside the checkpoint)"
    )
    model_path: str = _setting("checkpoint", "./models/css_model.json", _is_str, "model file")
    keep_backups: int = _setting("checkpoint", 5, _int_range(0), "model backups kept")

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            allowed = f.metadata["check"](value)
            if allowed is not None:
                raise ValueError(f"{f.name} = {value!r} is invalid: must be {allowed}")
        self._check_relations()

    def _check_relations(self) -> None:
        if self.max_frequencies > self.frequency_dim:
            raise ValueError(
                f"max_frequencies = {self.max_frequencies} is invalid: must be <= "
                f"frequency_dim ({self.frequency_dim})"
            )
        min_init = self.min_init_frequencies
        if min_init is not None and min_init > self.max_frequencies:
            raise ValueError(
                f"min_init_frequencies = {self.min_init_frequencies} is invalid: must be <= "
                f"max_frequencies ({self.max_frequencies})"
            )
        if self.init_amp_min > self.init_amp_max:
            raise ValueError(
                f"init_amp_min = {self.init_amp_min} is invalid: must be <= init_amp_max "
                f"({self.init_amp_max})"
            )
        if self.min_lr > self.learning_rate:
            raise ValueError(
                f"min_lr = {self.min_lr} is invalid: must be <= learning_rate "
                f"({self.learning_rate})"
            )
        if self.loss == "hinge" and self.normalize == "none" and self.max_norm is None:
            raise ValueError(
                "loss = 'hinge' is invalid without normalisation: its scores are unbounded and the "
                "amplitudes diverge; set normalize = 'l2' or max_norm"
            )

    # --- helpers ---------------------------------------------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def sections(cls) -> dict[str, list[str]]:
        """Setting names grouped by TOML section, in declaration order."""
        out: dict[str, list[str]] = {}
        for f in fields(cls):
            out.setdefault(f.metadata["section"], []).append(f.name)
        return out

    @classmethod
    def describe(cls, name: str) -> str:
        return {f.name: f.metadata["doc"] for f in fields(cls)}[name]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Builds a config from a flat mapping, rejecting unknown keys with a suggestion."""
        known = set(cls.field_names())
        for key in values:
            if key not in known:
                raise ValueError(unknown_key_message(key, known))
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def engine_settings(self) -> dict[str, Any]:
        """The settings the Rust trainer reads (sections model and training)."""
        sections = self.sections()
        names = sections["model"] + sections["training"]
        return {n: getattr(self, n) for n in names}


def unknown_key_message(key: str, known: set[str] | list[str]) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown setting {key!r}{hint}"
