"""Fixtures of the data-source suites in this folder (a conftest.py of their own, so no other
suite sees them). Plain helpers live in ``source_helpers`` (a module imported by a test is not
assertion-rewritten, a conftest must not be imported directly)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hf_server import HubServer


@pytest.fixture
def clean_token_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No HF_TOKEN and an empty Hugging Face home: tests never see a real token."""
    home = tmp_path / "hf-home"
    home.mkdir()
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_TOKEN_PATH", raising=False)
    monkeypatch.setenv("HF_HOME", str(home))
    return home


@pytest.fixture
def hub(tmp_path: Path, clean_token_env: Path) -> Iterator[HubServer]:
    workdir = tmp_path / "hub"
    workdir.mkdir()
    with HubServer(workdir) as server:
        yield server
