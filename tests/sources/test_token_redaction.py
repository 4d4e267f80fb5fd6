"""The Hugging Face token is never printed or written (issue 13, severe 2), whatever a server
answers: the loopback hub echoes the request's ``Authorization`` header in the error body of
every error status, with the token taken from ``HF_TOKEN`` and from the token file
(``HF_TOKEN_PATH``). The token must appear in no message, no traceback (``--debug`` too), no
output line and no file css-rs leaves behind; the echo itself must have happened (the message
shows ``<redacted>`` where the server quoted the header), or the test proves nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from css_rs.errors import CssRsError
from css_rs.redaction import REDACTED, redact, redact_untrusted
from hf_server import Fault, HubServer, text_rows
from source_helpers import parquet_source, read_all, rows_source

TOKEN = "hf_EchoedSecret0123456789abcdef"
# 4xx: answered once; 429 and 5xx: retried (a few times with the fast test settings) first.
ERROR_STATUSES = [400, 401, 402, 403, 404, 405, 409, 410, 422, 429, 451, 500, 501, 502, 503, 504]


@pytest.fixture
def dataset(hub: HubServer) -> str:
    hub.add_dataset("org/data", {("default", "train"): text_rows(20)})
    return "org/data"


@pytest.fixture(params=["env", "file"])
def token_from(
    request: pytest.FixtureRequest, clean_token_env: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """The token in ``HF_TOKEN``, or only in a token file named by ``HF_TOKEN_PATH``."""
    if request.param == "env":
        monkeypatch.setenv("HF_TOKEN", TOKEN)
    else:
        token_file = clean_token_env / "elsewhere" / "my-token"
        token_file.parent.mkdir()
        token_file.write_text(TOKEN + "\n")
        monkeypatch.setenv("HF_TOKEN_PATH", str(token_file))
    return str(request.param)


def every_file_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]


def assert_no_token_in_files(folder: Path, *, except_: tuple[Path, ...] = ()) -> None:
    for path in every_file_under(folder):
        if path not in except_:
            assert TOKEN.encode() not in path.read_bytes(), f"token written to {path}"


def test_redact_and_redact_untrusted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert redact(f"x {TOKEN} y {TOKEN}") == f"x {REDACTED} y {REDACTED}"
    # A server may echo a token this process never had: anything credential-like goes.
    other = "hf_SomebodyElses987654321"
    assert other not in redact_untrusted(f"Authorization: Bearer {other}")
    assert other not in redact_untrusted(f"token {other} refused")
    assert redact_untrusted("no token was found") == "no token was found"


@pytest.mark.parametrize("status", ERROR_STATUSES)
def test_client_errors_never_quote_the_token(
    hub: HubServer, dataset: str, token_from: str, status: int
) -> None:
    hub.faults.schedule("/", *[Fault.echo_authorization(status)] * 50)
    with pytest.raises(CssRsError) as caught:
        read_all(rows_source(hub, dataset, batch_size=10))
    sent = [r.authorization for r in hub.requests]
    assert f"Bearer {TOKEN}" in sent  # the token went out, and the server echoed it back
    error = caught.value
    shown = [
        str(error),
        repr(error),
        "".join(traceback.format_exception(type(error), error, error.__traceback__)),
    ]
    assert all(TOKEN not in text and TOKEN[:12] not in text for text in shown), shown[0]
    assert REDACTED in str(error) or "bad credentials" not in str(error)


def css_rs_train(
    cwd: Path, hub: HubServer, *args: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "css_rs",
            *args,
            "train",
            "--source",
            "hf",
            "--dataset",
            "org/data",
            "--datasets-server-endpoint",
            hub.url,
            "--hf-endpoint",
            hub.url,
            "--batch-size",
            "10",
            "--threads",
            "1",
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("status", "debug", "code"),
    [(401, False, 2), (403, True, 2), (410, True, 1), (400, False, 1), (422, True, 1)],
)
def test_cli_never_prints_or_writes_the_token(
    hub: HubServer,
    dataset: str,
    token_from: str,
    tmp_path: Path,
    status: int,
    debug: bool,
    code: int,
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    hub.faults.schedule("/", *[Fault.echo_authorization(status)] * 50)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CSS_RS_")}
    done = css_rs_train(work, hub, *(["--debug"] if debug else []), env=env)
    output = done.stdout + done.stderr
    assert done.returncode == code, output
    assert f"Bearer {TOKEN}" in [r.authorization for r in hub.requests]
    assert TOKEN not in output and TOKEN[:12] not in output
    assert REDACTED in output  # the echo reached the message, and was cut out
    if debug:
        assert "Traceback (most recent call last)" in done.stderr
    else:
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in output
    token_file = Path(os.environ.get("HF_TOKEN_PATH", "/nonexistent"))
    assert_no_token_in_files(tmp_path, except_=(token_file,))


@pytest.mark.parametrize("source_kind", ["hf", "hf-parquet"])
def test_a_server_echoing_the_token_in_documents_gets_it_cut_out(
    hub: HubServer, token_from: str, tmp_path: Path, source_kind: str
) -> None:
    rows = [{"text": f"document {i} says Bearer {TOKEN}, really"} for i in range(30)]
    hub.add_dataset("org/echo", {("default", "train"): rows}, shards=2)
    if source_kind == "hf":
        # Cut at 40 characters: a cut before the redaction would leave a prefix of the token.
        source = rows_source(hub, "org/echo", batch_size=7, max_doc_length=40)
    else:
        source = parquet_source(hub, "org/echo", tmp_path / "cache", batch_size=7)
    documents = read_all(source)
    assert len(documents) == 30
    assert all(TOKEN[:12] not in d and REDACTED in d for d in documents), documents[0]
