"""Checkpoint manifests fuzzed (issue 13): any value in any field of a manifest whose checksum
is made to match (a forged or buggy checkpoint, which the checksum cannot catch) gives a run
that resumes or a one-line InputError naming the checkpoint, never a traceback.
"""

from __future__ import annotations

import copy
import hashlib
import io
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from css_rs.config import resolve_config
from css_rs.errors import InputError
from css_rs.pipeline import TrainingRun
from css_rs.reporter import Reporter
from css_rs.test_hooks import TestHooks
from helpers import paths_of

SETTINGS = {
    "threads": 1,
    "synthetic_documents": 120,
    "batch_size": 10,
    "max_batches": None,
    "save_checkpoint_every": 2,
    "min_word_freq": 2,
    "epochs": 1,
}


class InterruptAt(TestHooks):
    """Ctrl+C at the n-th occurrence of an event (in-process, no signal needed)."""

    def __init__(self, event: str, n: int) -> None:
        super().__init__(None, step_seconds=0.005)
        self.event, self.n, self.seen = event, n, 0

    def reached(self, event: str) -> None:
        if event == self.event:
            self.seen += 1
            if self.seen == self.n:
                raise KeyboardInterrupt


def run(folder: Path, hooks: TestHooks | None = None) -> None:
    flags = {
        **SETTINGS,
        "checkpoint_path": str(folder / "checkpoints" / "training_checkpoint.json"),
        "model_path": str(folder / "models" / "css_model.json"),
    }
    TrainingRun(
        resolve_config(None, flags, {}), Reporter(io.StringIO(), live=False), hooks=hooks
    ).run()


@pytest.fixture(scope="module", params=["batch", "step"])
def template(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of a run interrupted while streaming, or while training."""
    folder = tmp_path_factory.mktemp(f"template-{request.param}")
    with pytest.raises(KeyboardInterrupt):
        run(folder, InterruptAt(request.param, 5 if request.param == "batch" else 1))
    return folder


JSON = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),  # what JSON integers orjson reads as integers
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(-(2**63), 2**63), max_size=2),
)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), value=JSON)
def test_fuzzed_manifest_resumes_or_is_refused_in_one_line(
    template: Path, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject, value: Any
) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(template, folder, dirs_exist_ok=True)
    manifest = folder / "checkpoints" / "training_checkpoint.json"
    doc = orjson.loads(manifest.read_bytes())
    body = {k: v for k, v in doc.items() if k != "sha256"}
    paths = [p for p in paths_of(body) if p[0] not in ("format", "version")]
    where = data.draw(st.sampled_from(paths))
    forged = copy.deepcopy(body)
    target = forged
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = value
    checksum = hashlib.sha256(orjson.dumps(forged, option=orjson.OPT_SORT_KEYS)).hexdigest()
    manifest.write_bytes(orjson.dumps({"sha256": checksum, **forged}))
    try:
        run(folder)
    except InputError as e:
        message = str(e)
        assert "\n" not in message and message, where
    except OSError as e:  # a forged file name: reported with the path, as any missing file
        assert e.filename is not None, (where, value, e)
