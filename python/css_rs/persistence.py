"""The model file: css-rs's JSON format (the original tool's keys, plus ``format`` and
``css_rs_version``), encoded from and decoded to flat arrays, with every field of a file read
checked and reported by name. Writing it to disk goes through ``css_rs.files``."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import orjson

from css_rs.errors import InputError
from css_rs.files import utc_timestamp
from css_rs.redaction import redact_object

# --- the model file ------------------------------------------------------------------------
# The original tool's keys are kept for interoperability (version, timestamp, config, vocabSize,
# vocab, wordFreq, spectra, stats); css-rs adds format and css_rs_version.

MODEL_FORMAT = "css-rs-model"
MODEL_FORMAT_VERSION = "1.0"


@dataclass
class ModelParts:
    """A model file's contents as flat arrays (V*K slots, frequency EMPTY for unused slots)."""

    words: list[str]
    counts: list[int]
    k: int
    frequency_dim: int
    freq: np.ndarray
    amp: np.ndarray
    phase: np.ndarray
    config: dict[str, Any]
    stats: dict[str, Any]
    is_css_rs: bool


EMPTY_FREQUENCY = 0xFFFF


def encode_model(
    parts: ModelParts, version: str, extra_stats: Optional[dict[str, Any]] = None
) -> bytes:
    """The model JSON. Amplitudes and phases are written as float32 (shortest repr), so that a
    save/load round trip is exact."""
    v, k = len(parts.words), parts.k
    freq = parts.freq.reshape(v, k)
    amp = parts.amp.reshape(v, k).astype(np.float32, copy=False)
    phase = parts.phase.reshape(v, k).astype(np.float32, copy=False)
    active = (freq != EMPTY_FREQUENCY).sum(axis=1)
    spectra = {
        str(w): {
            "frequencies": freq[w, : active[w]],
            "amplitudes": amp[w, : active[w]],
            "phases": phase[w, : active[w]],
        }
        for w in range(v)
    }
    doc = {
        "format": MODEL_FORMAT,
        "css_rs_version": version,
        "version": MODEL_FORMAT_VERSION,
        "timestamp": utc_timestamp(),
        "config": redact_object(parts.config),
        "vocabSize": v,
        "vocab": {word: i for i, word in enumerate(parts.words)},
        "wordFreq": dict(zip(parts.words, parts.counts)),
        "spectra": spectra,
        "stats": {
            "totalWords": v,
            "avgSparsity": float(active.mean()) if v else 0.0,
            "totalFrequencies": parts.frequency_dim,
            **redact_object(extra_stats or {}),
        },
    }
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


# Bounds of a loadable model: D as the query engine accepts (frequency 0xFFFF marks an empty
# slot), K as TrainConfig does, counts as the vocabulary stores them (u64).
MAX_LOAD_FREQUENCY_DIM = EMPTY_FREQUENCY
MAX_LOAD_K = 64
MAX_COUNT = 2**64 - 1


def decode_model(data: bytes, source: str) -> ModelParts:
    """Parses a model file written by css-rs or by the original JavaScript tool (spectra without
    phases; signed real amplitudes become amplitude |a| and phase 0 or pi).

    Everything is validated before anything is allocated for it: types (integers are never
    booleans, floats or strings), ranges (counts, ids, D, K, frequencies < D, finite values)
    and sizes (no spectrum longer than the file's own K). Raises InputError naming ``source``
    and the key that is wrong.
    """
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise InputError(f"{source}: not a model file (invalid JSON: {e})") from None
    if not isinstance(doc, dict):
        raise InputError(f"{source}: not a model file (top level is not an object)")
    for key in ("vocab", "spectra"):
        if not isinstance(doc.get(key), dict):
            raise InputError(f"{source}: not a model file (missing or invalid '{key}')")
    is_css_rs = doc.get("format") == MODEL_FORMAT
    raw_config = _object(doc, "config")
    # The original tool's camelCase keys (frequencyDim, minWordFreq, ...) are ours in snake_case.
    config = {_snake(k): v for k, v in raw_config.items()}
    file_k = _config_int(config, "max_frequencies", MAX_LOAD_K, source)
    file_d = _config_int(config, "frequency_dim", MAX_LOAD_FREQUENCY_DIM, source)
    words, counts = _vocab_of(doc, source)
    rows, fr, am, ph = _flat_spectra(doc["spectra"], len(words), source)
    lengths = np.bincount(rows, minlength=len(words)) if rows.size else np.zeros(len(words), int)
    longest = int(lengths.max(initial=0))
    if file_k is not None and longest > file_k:
        word = words[int(np.argmax(lengths))]
        raise InputError(
            f"{source}: spectra: word {word!r} has {longest} entries, more than the file's "
            f"config.max_frequencies ({file_k})"
        )
    highest = int(fr.max(initial=-1))
    if file_d is not None and highest >= file_d:
        raise InputError(
            f"{source}: spectra: frequency {highest} is outside 0..{file_d - 1} "
            f"(config.frequency_dim is {file_d})"
        )
    k = file_k if file_k is not None else max(longest, 1)
    d = file_d if file_d is not None else max(highest + 1, 1)
    v = len(words)
    # Column of each entry within its word: entries of one word are consecutive.
    order = np.argsort(rows, kind="stable")
    rows, fr, am, ph = rows[order], fr[order], am[order], ph[order]
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if v else np.zeros(0, int)
    cols = np.arange(rows.size) - np.repeat(starts, lengths)
    freq = np.full((v, k), EMPTY_FREQUENCY, dtype=np.uint16)
    amp = np.zeros((v, k), dtype=np.float32)
    phase = np.zeros((v, k), dtype=np.float32)
    freq[rows, cols] = fr
    amp[rows, cols] = np.abs(am)
    # The original tool's real-valued model may carry signed amplitudes: sign -> phase pi.
    phase[rows, cols] = np.where(am < 0, np.float32(np.pi), ph)
    config["max_frequencies"], config["frequency_dim"] = k, d
    stats = _object(doc, "stats")
    return ModelParts(
        words, counts, k, d, freq.ravel(), amp.ravel(), phase.ravel(), config, stats, is_css_rs
    )


def _is_int(value: Any) -> bool:
    return type(value) is int  # not bool, not a float (orjson reads integers >= 2^64 as floats)


def _config_int(config: dict[str, Any], key: str, most: int, source: str) -> Optional[int]:
    """``config[key]`` when present: an integer in 1..most, else InputError naming it."""
    value = config.get(key)
    if value is None:
        return None
    if not _is_int(value) or not 1 <= value <= most:
        raise InputError(
            f"{source}: config.{key} = {_short(value)} is invalid: must be an integer in "
            f"[1, {most}]"
        )
    return int(value)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _vocab_of(doc: dict[str, Any], source: str) -> tuple[list[str], list[int]]:
    vocab = doc["vocab"]
    v = len(vocab)
    words: list[Optional[str]] = [None] * v
    for word, i in vocab.items():
        if not _is_int(i) or not 0 <= i < v or words[i] is not None:
            raise InputError(
                f"{source}: vocab[{_short(word)}]: vocab id {_short(i)} is not a unique id "
                f"in 0..{v - 1}"
            )
        words[i] = word
    freq = doc.get("wordFreq")
    if freq is None:
        freq = {}
    if not isinstance(freq, dict):
        raise InputError(f"{source}: wordFreq is not an object of word counts")
    present = [w for w in words if w is not None]
    raw = [freq.get(w) for w in present]
    counts: list[Any] = [0 if c is None else c for c in raw]  # a word without a count: 0
    valid = set(map(type, counts)) <= {int} and (
        not counts or (min(counts) >= 0 and max(counts) <= MAX_COUNT)
    )
    if not valid:
        w, c = next(
            (w, c) for w, c in zip(present, counts) if not _is_int(c) or not 0 <= c <= MAX_COUNT
        )
        raise InputError(
            f"{source}: wordFreq[{_short(w)}] = {_short(c)} is not a count (an integer in "
            "0..2^64-1)"
        )
    return present, counts


def _object(doc: dict[str, Any], key: str) -> dict[str, Any]:
    """``doc[key]`` when it is a JSON object, else an empty one (optional sections)."""
    value = doc.get(key)
    return value if isinstance(value, dict) else {}


def _spectrum_problem(key: Any, entry: Any, v: int) -> Optional[str]:
    """What is wrong with one spectra entry, or None (the slow path that names it)."""
    where = f"spectra[{_short(key)}]"
    if not (isinstance(key, str) and key.isdigit() and key.isascii()) or int(key) >= v:
        return f"{where}: the key must be a word id in 0..{v - 1}"
    if not isinstance(entry, dict):
        return f"{where} is not an object"
    for name, kinds in (("frequencies", (int,)), ("amplitudes", (int, float))):
        values = entry.get(name)
        if not isinstance(values, list):
            return f"{where}.{name} is missing or not a list"
        bad = next((x for x in values if type(x) not in kinds), _NOTHING)
        if bad is not _NOTHING:
            what = "integers" if name == "frequencies" else "numbers"
            return f"{where}.{name} holds {_short(bad)}: must be {what}"
    phases = entry.get("phases")
    if phases is not None:
        if not isinstance(phases, list):
            return f"{where}.phases is not a list"
        bad = next((x for x in phases if type(x) not in (int, float)), _NOTHING)
        if bad is not _NOTHING:
            return f"{where}.phases holds {_short(bad)}: must be numbers"
    return None


_NOTHING = object()


def _flat_spectra(
    spectra: dict[str, Any], v: int, source: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All entries as flat arrays (word row, frequency, amplitude, phase), validated. Built
    with numpy in a few passes: a 50,000-word model loads in a fraction of a second. Types are
    checked in bulk (the set of element types); only a failure walks the entries one by one,
    to name the one that is wrong."""
    try:
        keys = "".join(spectra)  # word ids: ASCII digits, at most 18 of them (int64)
        if not (keys.isdigit() and keys.isascii()) or max(map(len, spectra), default=0) > 18:
            raise TypeError
        ids = np.fromiter((int(key) for key in spectra), dtype=np.int64, count=len(spectra))
        entries = list(spectra.values())
        fr_lists = [e["frequencies"] for e in entries]
        am_lists = [e["amplitudes"] for e in entries]
        # Spectra without phases (the original tool's) have phase 0.
        ph_lists = [
            [0.0] * len(f) if e.get("phases") is None else e["phases"]
            for e, f in zip(entries, fr_lists)
        ]
        if not set(map(type, itertools.chain(fr_lists, am_lists, ph_lists))) <= {list}:
            raise TypeError
        chain = itertools.chain.from_iterable
        if not set(map(type, chain(fr_lists))) <= {int} or not set(
            map(type, chain(itertools.chain(am_lists, ph_lists)))
        ) <= {int, float}:
            raise TypeError
        n_fr = np.fromiter(map(len, fr_lists), dtype=np.int64, count=len(entries))
        n_am = np.fromiter(map(len, am_lists), dtype=np.int64, count=len(entries))
        n_ph = np.fromiter(map(len, ph_lists), dtype=np.int64, count=len(entries))
        total = int(n_fr.sum())
        fr = np.fromiter(chain(fr_lists), dtype=np.int64, count=total)
        am = np.fromiter(chain(am_lists), dtype=np.float64)
        ph = np.fromiter(chain(ph_lists), dtype=np.float64)
    except (TypeError, ValueError, AttributeError, KeyError, OverflowError):
        for key, entry in spectra.items():
            problem = _spectrum_problem(key, entry, v)
            if problem is not None:
                raise InputError(f"{source}: {problem}") from None
        raise InputError(
            f"{source}: a spectrum is malformed (frequencies, amplitudes, phases "
            "must be lists of numbers)"
        ) from None
    bad = np.flatnonzero((n_fr != n_am) | (n_fr != n_ph))
    if bad.size:
        i = bad[0]
        raise InputError(
            f"{source}: spectra['{ids[i]}'] has {n_fr[i]} frequencies, {n_am[i]} "
            f"amplitudes and {n_ph[i]} phases"
        )
    out_of_range = ids[(ids < 0) | (ids >= v)]
    if out_of_range.size:
        raise InputError(
            f"{source}: spectra['{out_of_range[0]}'] is for word id {out_of_range[0]} but the "
            f"vocabulary has {v} words"
        )
    if np.unique(ids).size != ids.size:
        raise InputError(f"{source}: spectra: a word id has two spectra")
    if fr.size and (fr.min() < 0 or fr.max() >= EMPTY_FREQUENCY):
        raise InputError(f"{source}: spectra: a frequency is outside 0..{EMPTY_FREQUENCY - 1}")
    limit = float(np.finfo(np.float32).max)  # stored as float32: larger would be infinite
    if not (np.abs(am) <= limit).all() or not (np.abs(ph) <= limit).all():
        raise InputError(
            f"{source}: spectra: an amplitude or phase is not a finite single-precision number"
        )
    rows = np.repeat(ids, n_fr)
    return rows, fr, am.astype(np.float32), ph.astype(np.float32)
