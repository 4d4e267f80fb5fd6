"""Model files are validated fully on load (issue 13): every damaged or hostile file gets a
one-line error naming the file and the key (exit code 2 on the command line), never a
traceback, never a huge allocation, and the file is left as it was. A hypothesis fuzz test
replaces parts of a valid model with arbitrary JSON.
"""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import css_rs
from css_rs.cli import app
from css_rs.errors import InputError
from css_rs.files import metadata_path
from helpers import paths_of

runner = CliRunner()

VALID: dict[str, Any] = {
    "version": "1.0",
    "config": {"frequencyDim": 8, "maxFrequencies": 3},
    "vocabSize": 3,
    "vocab": {"cat": 0, "dog": 1, "car": 2},
    "wordFreq": {"cat": 9, "dog": 7, "car": 5},
    "spectra": {
        "0": {"frequencies": [4, 1], "amplitudes": [0.5, 0.25], "phases": [0.0, 1.0]},
        "1": {"frequencies": [4], "amplitudes": [-0.5]},
        "2": {"frequencies": [], "amplitudes": []},
    },
    "stats": {"totalWords": 3},
}
BIG = 2**70


def write(path: Path, doc: Any) -> Path:
    path.write_bytes(doc if isinstance(doc, bytes) else orjson.dumps(doc))
    return path


def changed(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(VALID)
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


def big_int_file(path: tuple[Any, ...]) -> bytes:
    """A valid model with 2^70 written as a JSON integer at ``path`` (orjson cannot write it)."""
    marker = 123456789
    return orjson.dumps(changed(path, marker)).replace(str(marker).encode(), str(BIG).encode())


CASES = [
    (changed(("wordFreq", "dog"), -1), "wordFreq['dog'] = -1"),
    (changed(("wordFreq", "dog"), 1e30), "wordFreq['dog'] = 1e+30"),
    (big_int_file(("wordFreq", "dog")), "wordFreq['dog']"),
    (changed(("wordFreq", "dog"), [7]), "wordFreq['dog'] = [7]"),
    (changed(("wordFreq", "dog"), True), "wordFreq['dog'] = True"),
    (changed(("wordFreq",), [1, 2]), "wordFreq is not an object"),
    (changed(("config", "frequencyDim"), 1e300), "config.frequency_dim = 1e+300"),
    (changed(("config", "frequencyDim"), [8]), "config.frequency_dim = [8]"),
    (changed(("config", "frequencyDim"), 70000), "config.frequency_dim = 70000"),
    (changed(("config", "maxFrequencies"), 1e9), "config.max_frequencies = 1000000000.0"),
    (changed(("config", "maxFrequencies"), 10**9), "config.max_frequencies = 1000000000"),
    (changed(("config", "maxFrequencies"), 1), "more than the file's config.max_frequencies"),
    (big_int_file(("spectra", "0", "frequencies", 0)), "spectra['0'].frequencies holds"),
    (changed(("spectra", "0", "frequencies", 0), 8), "frequency 8 is outside 0..7"),
    (changed(("spectra", "0", "frequencies", 0), 4.0), "frequencies holds 4.0"),
    (changed(("spectra", "0", "frequencies", 0), "4"), "frequencies holds '4'"),
    (changed(("spectra", "0", "frequencies", 0), True), "frequencies holds True"),
    (changed(("spectra", "0", "amplitudes", 0), "0.5"), "amplitudes holds '0.5'"),
    (changed(("spectra", "0", "amplitudes", 0), 1e300), "not a finite single-precision"),
    (changed(("spectra", "0", "phases", 1), -1e39), "not a finite single-precision"),
    (changed(("spectra", "0", "amplitudes", 0), False), "amplitudes holds False"),
    (changed(("spectra", "0", "phases", 0), None), "phases holds None"),
    (changed(("spectra", "0", "phases"), "x"), "phases is not a list"),
    (changed(("vocab", "dog"), True), "vocab['dog']: vocab id True"),
    (changed(("vocab", "dog"), 1.0), "vocab['dog']: vocab id 1.0"),
    (
        {**VALID, "spectra": {"1" * 23: {"frequencies": [], "amplitudes": []}}},
        "spectra['" + "1" * 23 + "']",
    ),
    ({**VALID, "spectra": {"-1": {"frequencies": [], "amplitudes": []}}}, "spectra['-1']"),
    ({**VALID, "spectra": {"0": [1, 2]}}, "spectra['0'] is not an object"),
]


def test_the_valid_model_loads(tmp_path: Path) -> None:
    model = css_rs.load(write(tmp_path / "m.json", VALID))
    assert (model.frequency_dim, model.max_frequencies, len(model)) == (8, 3, 3)


@pytest.mark.parametrize(("doc", "message"), CASES, ids=[m for _, m in CASES])
def test_bad_model_file_is_one_line_naming_file_and_key(
    tmp_path: Path, doc: Any, message: str
) -> None:
    path = write(tmp_path / "m.json", doc)
    content = path.read_bytes()
    started = time.monotonic()
    with pytest.raises(InputError) as caught:
        css_rs.load(path)
    assert time.monotonic() - started < 2.0  # no attempt to allocate K = 10^9 slots
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)
    result = runner.invoke(app, ["info", str(path)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [f"error: {caught.value}"]
    assert path.read_bytes() == content


def test_fifo_as_model_is_refused_without_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "m.json"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        css_rs.load(fifo)


@pytest.mark.parametrize(
    "meta",
    [
        {"stats": {"epochs": {"a": 1}}},
        {"stats": {"epochs": [1, "x", {"loss": "high"}]}},
        {"stats": [], "dataset_progress": 5},
        {"stats": {"documents": True, "elapsed": "long"}},
        [1, 2],
    ],
)
def test_info_with_malformed_metadata_still_works(tmp_path: Path, meta: Any) -> None:
    path = write(tmp_path / "m.json", VALID)
    write(metadata_path(path), meta)
    result = runner.invoke(app, ["info", str(path)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=8,
)


PATHS = paths_of(VALID)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    how=st.sampled_from(["replace", "truncate", "bytes"]),
    where=st.sampled_from(PATHS),
    value=JSON,
    cut=st.integers(0, 400),
    noise=st.binary(max_size=64),
)
def test_fuzzed_model_files_load_or_fail_in_one_line(
    tmp_path_factory: pytest.TempPathFactory,
    how: str,
    where: tuple[Any, ...],
    value: Any,
    cut: int,
    noise: bytes,
) -> None:
    if how == "replace":
        data = orjson.dumps(changed(where, value))
    elif how == "truncate":
        data = orjson.dumps(VALID)[:cut]
    else:
        data = orjson.dumps(VALID)[:cut] + noise
    path = tmp_path_factory.mktemp("fuzz") / "m.json"
    path.write_bytes(data)
    try:
        model = css_rs.load(path)
    except InputError as e:
        message = str(e)
        assert message.startswith(f"{path}: ") and "\n" not in message
    else:
        # What loads must work: every query over every word.
        for word in model.words:
            model.spectrum(word)
            model.similar(word, 2)
        model.to_dense()
    assert path.read_bytes() == data
