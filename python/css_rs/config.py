"""``TrainConfig``: every setting of ALGORITHM.md and of the training pipeline, validated on
construction. A wrong value raises ``ValueError`` naming the field, the value and the allowed
range, so the CLI can print it as a one-line error.

Settings are grouped in sections (the TOML file's tables); names are the original guide's
camelCase settings in snake_case (``minWordFreq`` -> ``min_word_freq``).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import os
import stat
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Optional, Union

from css_rs.errors import InputError

# One entry per allowed-value rule: returns None when fine, else the allowed range in words.
Check = Callable[[Any], Optional[str]]


# Every setting has a real upper bound, checked before any work: an integer the engine reads
# as i64/u64 or usize stays below 2^63, and a float it reads as f32 stays within single
# precision (1e-300 would become 0.0 there, 1e39 infinity: refused only in phase 3 before).
INT_SETTING_MAX = 2**63 - 1
F32_MIN_POSITIVE = 1.1754943508222875e-38  # smallest normal single-precision float
F32_MAX = 3.4028234663852886e38


def _bound(n: int) -> str:
    return "2^63-1" if n == INT_SETTING_MAX else "2^32-1" if n == 2**32 - 1 else str(n)


def _int_range(lo: int, hi: Optional[int] = None) -> Check:
    """Integers in [lo, hi]; without ``hi``, up to 2^63-1 (what the engine's integers hold)."""
    hi = INT_SETTING_MAX if hi is None else hi

    def check(v: Any) -> Optional[str]:
        ok = isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi
        if ok:
            return None
        return f"an integer in [{lo}, {_bound(hi)}]"

    return check


def _float_range(lo: float, hi: Optional[float] = None, *, lo_open: bool = False) -> Check:
    def check(v: Any) -> Optional[str]:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            try:
                finite = math.isfinite(v)
            except OverflowError:  # an integer too large for a float
                finite = False
            if finite:
                above = v > lo if lo_open else v >= lo
                if above and (hi is None or v <= hi):
                    # The engine computes in single precision: the value must survive it.
                    if v > F32_MAX or v < -F32_MAX:
                        return f"a finite number <= {F32_MAX:.3g} (single precision)"
                    if 0 < abs(v) < F32_MIN_POSITIVE:
                        zero = "" if lo_open else "0 or "
                        return f"{zero}a number >= {F32_MIN_POSITIVE:.3g} (single precision)"
                    return None
        low = f"> {lo}" if lo_open else f">= {lo}"
        return f"a finite number {low}" + ("" if hi is None else f" and <= {hi}")

    return check


def _auto_or(inner: Check) -> Check:
    def check(v: Any) -> Optional[str]:
        if v == AUTO:
            return None
        err = inner(v)
        return None if err is None else f"{err}, or {AUTO!r}"

    return check


def _choice(*options: str) -> Check:
    def check(v: Any) -> Optional[str]:
        return None if v in options else "one of " + ", ".join(repr(o) for o in options)

    return check


def _optional(inner: Check) -> Check:
    def check(v: Any) -> Optional[str]:
        if v is None:
            return None
        err = inner(v)
        return None if err is None else f"{err}, or unset"

    return check


def _is_bool(v: Any) -> Optional[str]:
    return None if isinstance(v, bool) else "true or false"


def _is_str(v: Any) -> Optional[str]:
    return None if isinstance(v, str) else "a string"


def _setting(section: str, default: Any, check: Check, doc: str) -> Any:
    return field(default=default, metadata={"section": section, "check": check, "doc": doc})


SOURCES = ("synthetic", "hf", "hf-parquet", "text", "jsonl", "parquet")
HF_SOURCES = ("hf", "hf-parquet")
AUTO = "auto"
# What ``max_batches = "auto"`` means for the Hugging Face sources: the guide's 100 batches, a
# quick look at a dataset of millions of rows. Local files, folders and the synthetic corpus
# are read to the end: a limit meant for a hub would cut a local corpus short without need.
HF_DEFAULT_MAX_BATCHES = 100
# The rows API returns at most this many rows per request; the other sources take any size.
HF_ROWS_PAGE = 100
MAX_BATCH_SIZE = 1_000_000


def run_cache_folder(
    checkpoint_path: str | os.PathLike[str], cache_dir: Optional[str | os.PathLike[str]] = None
) -> Path:
    """The one answer to "where is the run's cache": ``cache_dir`` when set, else
    ``<checkpoint stem>.cache`` beside the checkpoint (``checkpoints/training_checkpoint.cache``).
    The checkpoint's id cache and the ``hf-parquet`` source's downloads (under ``hf-parquet/``)
    both live there."""
    if cache_dir:
        return Path(cache_dir)
    p = Path(checkpoint_path)
    return p.with_name(f"{p.stem}.cache")


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
    batch_size: int = _setting(
        "dataset", 50, _int_range(1, MAX_BATCH_SIZE), "documents per batch (hf: at most 100)"
    )
    max_batches: Union[int, str, None] = _setting(
        "dataset",
        AUTO,
        _auto_or(_optional(_int_range(1))),
        "stop after this many batches (auto: 100 for hf and hf-parquet, all for local data)",
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
    frequency_dim: int = _setting("model", 200, _int_range(1, 65534), "frequency space size D")
    max_frequencies: int = _setting(
        "model", 16, _int_range(1, 64), "active frequencies per word K (<= frequency_dim)"
    )
    min_init_frequencies: Optional[int] = _setting(
        "model", None, _optional(_int_range(1)), "random initial count in [this, K] (unset: K)"
    )
    init_amp_min: float = _setting(
        "model", 0.001, _float_range(0.0, lo_open=True), "smallest initial amplitude"
    )
    init_amp_max: float = _setting(
        "model", 0.01, _float_range(0.0, lo_open=True), "largest initial amplitude"
    )
    use_phases: bool = _setting("model", True, _is_bool, "complex spectra (false: real)")
    window_size: int = _setting("model", 3, _int_range(1, 1000), "context window W")
    shrink_windows: bool = _setting(
        "model", False, _is_bool, "per position, a window drawn from 1..W (word2vec's)"
    )
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
    lr_schedule: str = _setting(
        "model", "linear", _choice("linear", "step"), "linear decay, or x0.9 every 5 epochs"
    )
    negative_lr_scale: float = _setting("model", 0.1, _float_range(0.0), "negatives' lr factor")
    update_context: bool = _setting("model", True, _is_bool, "also update context words")
    sparsity_penalty: float = _setting("model", 0.0, _float_range(0.0), "L1 penalty lambda")
    normalize: str = _setting("model", "none", _choice("none", "l2"), "per-update normalisation")
    max_norm: Optional[float] = _setting(
        "model", None, _optional(_float_range(0.0, lo_open=True)), "cap on a spectrum's norm"
    )
    sample: float = _setting("model", 1e-4, _float_range(0.0, 1.0), "subsampling threshold")
    exploration_fraction: float = _setting(
        "model", 0.3, _float_range(0.0, 1.0), "share of training with free supports"
    )
    balance_gamma: float = _setting(
        "model",
        8.0,
        _float_range(0.0, 32.0),
        "usage-balanced selection: weight min(1, share/usage)^gamma on crowded frequencies",
    )
    score_bias: float = _setting(
        "model", 2.0, _float_range(0.0), "subtracted from every score (disjoint = negative)"
    )
    explore_prune_threshold: float = _setting(
        "model", 0.001, _float_range(0.0), "amplitudes pruned while exploring"
    )
    refine_prune_threshold: float = _setting(
        "model", 1e-4, _float_range(0.0), "amplitudes pruned while refining"
    )
    refine_prune_ratio: float = _setting(
        "model",
        0.1,
        _float_range(0.0, 0.999),
        "while refining, also prune amplitudes below this fraction of the word's strongest",
    )
    refine_prune_every: int = _setting(
        "model", 100, _int_range(1, 2**32 - 1), "updates between prunes"
    )

    # --- training ------------------------------------------------------------------------
    epochs: int = _setting("training", 5, _int_range(1, 10000), "passes over the corpus")
    training_batch_size: int = _setting(
        "training", 100, _int_range(1), "documents per work unit handed to a worker"
    )
    threads: int = _setting("training", 0, _int_range(0, 1024), "worker threads (0: all cores)")
    seed: int = _setting("training", 1, _int_range(0, 2**63 - 1), "random seed")

    # --- distributed training (issue 16) -------------------------------------------------
    engine: str = _setting(
        "distributed", "local", _choice("local", "ray"), "where training runs (ray: a Ray cluster)"
    )
    ray_address: str = _setting(
        "distributed", "local", _is_str, "Ray cluster: local (start one), auto, or an address"
    )
    workers: int = _setting("distributed", 2, _int_range(1, 100000), "workers of a Ray run")
    threads_per_worker: int = _setting(
        "distributed", 1, _int_range(1, 1024), "training threads of each Ray worker"
    )
    round_tokens: int = _setting(
        "distributed", 2_000_000, _int_range(1), "tokens each worker trains per round"
    )
    round_timeout_seconds: float = _setting(
        "distributed",
        0.0,
        _float_range(0.0),
        "a worker's round taking longer is restarted and run again (0: no limit)",
    )

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
        "checkpoint",
        None,
        _optional(_is_str),
        "run cache: id cache and downloaded shards (unset: <checkpoint>.cache beside it)",
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
        if self.source == "hf" and self.batch_size > HF_ROWS_PAGE:
            raise ValueError(
                f"batch_size = {self.batch_size} is invalid for source 'hf': the rows API "
                f"returns at most {HF_ROWS_PAGE} rows a request (hf-parquet and local sources "
                "take larger batches)"
            )
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

    def cache_folder(self) -> Path:
        """Where the run keeps its id cache and downloaded shards (``run_cache_folder``)."""
        return run_cache_folder(self.checkpoint_path, self.cache_dir)

    def batch_limit(self) -> Optional[int]:
        """The batches to stream at most (None: all): ``max_batches``, with ``"auto"`` read as
        100 for the Hugging Face sources and no limit for local data."""
        if self.max_batches == AUTO:
            return HF_DEFAULT_MAX_BATCHES if self.source in HF_SOURCES else None
        assert not isinstance(self.max_batches, str)
        return self.max_batches

    def engine_settings(self) -> dict[str, Any]:
        """The settings the Rust trainer reads (sections model and training)."""
        sections = self.sections()
        names = sections["model"] + sections["training"]
        return {n: getattr(self, n) for n in names}


def unknown_key_message(key: str, known: set[str] | list[str]) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown setting {key!r}{hint}"


# --- layered settings: defaults < TOML file < CSS_RS_* environment < command-line flags ------

ENV_PREFIX = "CSS_RS_"
# CSS_RS_* variables that are not settings: the config file's path, the training kernels'
# override (read by the Rust core), and hooks of the test suite.
RESERVED_ENV = frozenset({"CSS_RS_CONFIG", "CSS_RS_DEBUG", "CSS_RS_KERNELS"})
RESERVED_ENV_PREFIXES = ("CSS_RS_TEST_",)

# Settings that may differ between a checkpoint and the run resuming it: they change where files
# go, where data is fetched from or how often checkpoints are written, never what is computed.
# (``threads`` is not one of them: the engine's TrainingState is tied to its thread count.)
DISTRIBUTED_SETTINGS = (
    "engine",
    "ray_address",
    "workers",
    "threads_per_worker",
    "round_tokens",
    "round_timeout_seconds",
)
RESUME_NEUTRAL = frozenset(
    {
        "datasets_server_endpoint",
        "hf_endpoint",
        "keep_shards",
        "save_checkpoint_every",
        "checkpoint_every_seconds",
        "resume_from_checkpoint",
        "checkpoint_path",
        "cache_dir",
        "model_path",
        "keep_backups",
        # The local pipeline never reads [distributed] (a distributed run has its own
        # checkpoint): a local checkpoint made before these settings existed still resumes.
        *DISTRIBUTED_SETTINGS,
    }
)

_UNSET_WORDS = frozenset({"", "none", "null", "unset"})
_TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
_FALSE_WORDS = frozenset({"false", "0", "no", "off"})


class _AlwaysInvalid:
    """A value every check rejects, so a check reveals its allowed range without a real value."""


def allowed_values(name: str) -> str:
    """The allowed values of a setting in words, e.g. ``an integer in [1, 100]``."""
    check = _field(name).metadata["check"]
    return str(check(_AlwaysInvalid()))


def setting_type(name: str) -> tuple[type, bool]:
    """(base type, optional) of a setting: ``Optional[int]`` -> ``(int, True)``."""
    hint = _type_hints()[name]
    args = [a for a in getattr(hint, "__args__", ()) if a is not type(None)]
    if args:
        return args[0], True
    return hint, False


def env_var_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def parse_text_value(name: str, text: str) -> Any:
    """Converts an environment or flag string to the setting's type.

    A string that does not parse is returned unchanged, so that ``TrainConfig`` rejects it with
    its usual message (``epochs = 'abc' is invalid: must be an integer ...``).
    """
    base, optional = setting_type(name)
    word = text.strip().lower()
    if optional and word in _UNSET_WORDS:
        return None
    if base is bool:
        if word in _TRUE_WORDS:
            return True
        return False if word in _FALSE_WORDS else text
    if base is int:
        try:
            return int(text.strip().replace("_", ""))
        except ValueError:
            return text
    if base is float:
        try:
            return float(text.strip().replace("_", ""))
        except ValueError:
            return text
    return text


def coerce_file_value(name: str, value: Any) -> Any:
    """Adapts a TOML value: TOML has no null (``"none"`` or ``""`` unset an optional setting),
    and writes whole floats as integers (``checkpoint_every_seconds = 60``)."""
    base, optional = setting_type(name)
    if optional and isinstance(value, str) and value.strip().lower() in _UNSET_WORDS:
        return None
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            return value  # TrainConfig refuses it with its usual message
    return value


def _field(name: str) -> dataclasses.Field[Any]:
    return {f.name: f for f in fields(TrainConfig)}[name]


@functools.cache
def _type_hints() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


@dataclass(frozen=True)
class ResolvedConfig:
    """The effective settings and, for each, where its value came from.

    Origins read ``default``, ``file <path>``, ``env CSS_RS_<NAME>`` or ``flag --<name>``.
    """

    config: TrainConfig
    origins: dict[str, str]
    config_file: Optional[str] = None


def read_toml_settings(path: str) -> dict[str, Any]:
    """Reads a css-rs TOML file into a flat ``{setting: value}`` mapping.

    Tables are the sections of ``TrainConfig.sections()``; a setting may also be written at the
    top level. Unknown sections or keys, and a key in the wrong section, are rejected.
    """
    raw = _load_toml(path)
    sections = TrainConfig.sections()
    section_of = {name: sec for sec, names in sections.items() for name in names}
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        # A table is a section (no setting takes a table; "dataset" names both a section and a
        # setting, so the value's type decides).
        if isinstance(value, dict):
            if key not in sections:
                raise InputError(f"{path}: {_unknown_section_message(key, list(sections))}")
            for name, inner in value.items():
                _check_file_key(path, name, section_of, expected_section=key)
                flat[name] = coerce_file_value(name, inner)
        else:
            _check_file_key(path, key, section_of, expected_section=None)
            flat[key] = coerce_file_value(key, value)
    return flat


def _unknown_section_message(name: str, sections: list[str]) -> str:
    close = difflib.get_close_matches(name, sections, n=1)
    hint = f"; did you mean [{close[0]}]?" if close else f"; sections: {', '.join(sections)}"
    return f"unknown section [{name}]{hint}"


def _check_file_key(
    path: str, name: str, section_of: dict[str, str], expected_section: Optional[str]
) -> None:
    if name not in section_of:
        raise InputError(f"{path}: {unknown_key_message(name, set(section_of))}")
    if expected_section is not None and section_of[name] != expected_section:
        raise InputError(
            f"{path}: setting {name!r} belongs in section [{section_of[name]}], "
            f"not [{expected_section}]"
        )


def _require_regular_file(path: str, what: str) -> None:
    """Refuses a FIFO, device or socket before opening it: reading one would wait forever
    (a FIFO without a writer) or never end. A missing path or a folder is left to the open,
    which reports it."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise InputError(f"{path}: not a regular file, so not a {what}")


def _load_toml(path: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.9/3.10 only
        import tomli as tomllib
    _require_regular_file(path, "configuration file")
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise InputError(f"{path}: configuration file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a configuration file") from None
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{path}: invalid TOML: {e}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: invalid TOML: not UTF-8 text") from None


def read_env_settings(environ: Mapping[str, str]) -> dict[str, tuple[str, Any]]:
    """``CSS_RS_<NAME>`` variables as ``{setting: (variable, value)}``; unknown names rejected."""
    by_env = {env_var_name(n): n for n in TrainConfig.field_names()}
    found: dict[str, tuple[str, Any]] = {}
    for var in sorted(environ):
        if not var.startswith(ENV_PREFIX) or _is_reserved_env(var):
            continue
        if var not in by_env:
            raise InputError(f"environment: {unknown_key_message(var, set(by_env))}")
        name = by_env[var]
        found[name] = (var, parse_text_value(name, environ[var]))
    return found


def _is_reserved_env(var: str) -> bool:
    return var in RESERVED_ENV or var.startswith(RESERVED_ENV_PREFIXES)


def resolve_config(
    config_file: Optional[str] = None,
    flags: Optional[Mapping[str, Any]] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> ResolvedConfig:
    """Merges defaults < TOML file < environment < flags into a validated ``TrainConfig``.

    ``flags`` maps setting names to values already typed (or strings to parse); ``None`` values
    mean "flag not given". ``config_file`` defaults to ``$CSS_RS_CONFIG`` when set. Raises
    ``InputError`` with a one-line message naming the file, variable or flag at fault.
    """
    env = os.environ if environ is None else environ
    if config_file is None and env.get("CSS_RS_CONFIG"):
        config_file = env["CSS_RS_CONFIG"]
    values: dict[str, Any] = {}
    origins = {name: "default" for name in TrainConfig.field_names()}
    if config_file is not None:
        for name, value in read_toml_settings(config_file).items():
            values[name], origins[name] = value, f"file {config_file}"
    for name, (var, value) in read_env_settings(env).items():
        values[name], origins[name] = value, f"env {var}"
    for name, value in (flags or {}).items():
        if name not in origins:
            raise InputError(unknown_key_message(name, set(origins)))
        if value is None:
            continue
        values[name] = parse_text_value(name, value) if isinstance(value, str) else value
        origins[name] = f"flag {flag_name(name)}"
    try:
        config = TrainConfig(**values)
    except ValueError as e:
        raise InputError(_with_origin(str(e), origins)) from None
    return ResolvedConfig(config, origins, config_file)


def _with_origin(message: str, origins: dict[str, str]) -> str:
    # TrainConfig's messages start with the field's name: say where its value was set.
    name = message.split(" ", 1)[0]
    origin = origins.get(name, "default")
    return message if origin == "default" else f"{message} (set by {origin})"


# --- TOML rendering ----------------------------------------------------------------------


def toml_value(value: Any) -> str:
    """A setting's value in TOML syntax (strings quoted and escaped, booleans lowercase)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else json.dumps(str(value))
    return str(value)


def default_toml() -> str:
    """The commented default configuration file of ``css-rs config init``."""
    lines = [
        "# css-rs configuration. Precedence: defaults < this file < CSS_RS_<NAME> environment",
        "# variables < command-line flags (--<name>). Use it with: css-rs train --config FILE",
        '# TOML has no null: write "none" to unset an optional setting.',
    ]
    defaults = TrainConfig()
    for section, names in TrainConfig.sections().items():
        lines += ["", f"[{section}]"]
        for name in names:
            lines += _commented_setting(name, getattr(defaults, name))
    return "\n".join(lines) + "\n"


def _commented_setting(name: str, value: Any) -> list[str]:
    doc = TrainConfig.describe(name)
    out = [f"# {doc[0].upper()}{doc[1:]}." if doc else f"# {name}."]
    out.append(f"# Allowed: {allowed_values(name)}.")
    if value is None:
        out.append(f'# {name} = "none"  (unset by default)')
    else:
        out.append(f"{name} = {toml_value(value)}")
    return out


def render_effective(resolved: ResolvedConfig) -> str:
    """The effective settings as TOML, each line commented with the origin of its value."""
    lines: list[str] = []
    for section, names in TrainConfig.sections().items():
        lines += ["", f"[{section}]"] if lines else [f"[{section}]"]
        for name in names:
            value = getattr(resolved.config, name)
            text = f"{name} = {toml_value(value)}" if value is not None else f'{name} = "none"'
            lines.append(f"{text:<58} # {resolved.origins[name]}")
    return "\n".join(lines) + "\n"


def config_differences(saved: Mapping[str, Any], current: TrainConfig) -> list[str]:
    """Settings that differ between a checkpoint's config and ``current``, as
    ``name: saved -> current`` lines; settings of ``RESUME_NEUTRAL`` are ignored."""
    out = []
    now = current.to_dict()
    for name in TrainConfig.field_names():
        if name in RESUME_NEUTRAL:
            continue
        before = saved.get(name, "<missing>")
        if before != now[name]:
            out.append(f"{name}: {before!r} -> {now[name]!r}")
    return out
