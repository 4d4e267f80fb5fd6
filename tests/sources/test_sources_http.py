"""The HTTP layer of the network sources against a real loopback server: every retry path,
the messages of every failure, and the token never leaking."""

from __future__ import annotations

import json
import logging
import time
import traceback
from pathlib import Path

import pytest

from css_rs.errors import CssRsError, InputError
from css_rs.sources import HfRowsSource, HttpClient, HttpSettings, SecretToken, find_hf_token
from css_rs.sources.http import NotFoundError
from hf_server import Fault, HubServer, text_rows, texts_of
from source_helpers import ALL_FAULTS, FAST_HTTP, SECRET, read_all, rows_source

ROWS = text_rows(30)


@pytest.fixture
def dataset(hub: HubServer) -> str:
    hub.add_dataset("org/data", {("default", "train"): ROWS})
    return "org/data"


def size_url(hub: HubServer) -> str:
    return f"{hub.url}/size"


@pytest.mark.parametrize(
    "fault",
    ALL_FAULTS,
    ids=lambda f: f"{f.kind}{f.status or ''}",
)
def test_each_transient_failure_is_retried(hub: HubServer, dataset: str, fault: Fault) -> None:
    hub.faults.schedule("/size", fault, fault)
    client = HttpClient(FAST_HTTP)
    answer = client.get_json(size_url(hub), {"dataset": dataset})
    assert answer["size"]["splits"][0]["num_rows"] == len(ROWS)
    assert len(hub.requests_to("/size")) == 3


def test_retry_after_is_respected(hub: HubServer, dataset: str) -> None:
    hub.faults.schedule("/size", Fault.status_code(429, retry_after="1"))
    client = HttpClient(FAST_HTTP)
    started = time.monotonic()
    client.get_json(size_url(hub), {"dataset": dataset})
    # The backoff alone would be ~1 ms: only Retry-After explains a wait of a second.
    assert time.monotonic() - started >= 0.9


def test_exhausted_retries_name_endpoint_offset_and_resume(hub: HubServer, dataset: str) -> None:
    hub.faults.schedule("/rows", *[Fault.status_code(503)] * 50)
    source = rows_source(hub, dataset, batch_size=10)
    with pytest.raises(CssRsError) as caught:
        read_all(source)
    message = str(caught.value)
    assert not isinstance(caught.value, InputError)
    assert f"{hub.url}/rows" in message
    assert "offset=0" in message
    assert "HTTP 503" in message
    assert "resume" not in message  # the pipeline says so, when it saved a checkpoint


def test_exhausted_on_malformed_json_after_progress(hub: HubServer, dataset: str) -> None:
    source = rows_source(hub, dataset, batch_size=10)
    iterator = source.iter_batches(prefetch=0)
    assert next(iterator).documents == texts_of(ROWS)[:10]
    hub.faults.schedule("/rows", *[Fault.truncated_json()] * 50)
    with pytest.raises(CssRsError, match=r"offset=10.*malformed JSON"):
        next(iterator)
    assert source.position["offset"] == 10  # the checkpointable position is intact


def test_exhausted_on_timeouts(hub: HubServer, dataset: str) -> None:
    hub.faults.schedule("/size", *[Fault.slow(1.0)] * 50)
    with pytest.raises(CssRsError, match=r"/size \(dataset=org/data\) kept failing"):
        HttpClient(FAST_HTTP).get_json(size_url(hub), {"dataset": "org/data"})


def test_connection_refused_is_exhausted_with_endpoint(tmp_path: Path) -> None:
    client = HttpClient(FAST_HTTP)
    # Port 9 (discard) on loopback: nothing listens in a test environment.
    with pytest.raises(CssRsError, match=r"http://127\.0\.0\.1:9/size .*kept failing"):
        client.get_json("http://127.0.0.1:9/size", {"dataset": "x"})


@pytest.mark.parametrize("endpoint", ["127.0.0.1:9", "ftp://127.0.0.1:9", "http://[bad"])
def test_malformed_endpoint_is_bad_input(endpoint: str, clean_token_env: Path) -> None:
    source = HfRowsSource("org/data", datasets_server_endpoint=endpoint, http=FAST_HTTP)
    with pytest.raises(InputError, match=r"invalid URL '.*/size' .*--datasets-server-endpoint"):
        read_all(source)


def test_other_client_errors_are_not_retried(hub: HubServer, dataset: str) -> None:
    hub.faults.schedule("/size", Fault.status_code(400))
    with pytest.raises(CssRsError, match="HTTP 400: injected failure") as caught:
        HttpClient(FAST_HTTP).get_json(size_url(hub), {"dataset": dataset})
    assert "resume" not in str(caught.value)
    assert len(hub.requests_to("/size")) == 1


def test_not_found_is_its_own_error(hub: HubServer) -> None:
    with pytest.raises(NotFoundError, match="404"):
        HttpClient(FAST_HTTP).get_json(size_url(hub), {"dataset": "nope"})


def test_names_are_url_encoded(hub: HubServer) -> None:
    # A Hub dataset id is letters, digits, "-", "_" and "." (others are refused up front);
    # config and split names may hold anything a URL must encode.
    name = "org/we.ird_name-1"
    hub.add_dataset(name, {("a&b", "tr?ain"): ROWS})
    source = rows_source(hub, name, dataset_config="a&b", split="tr?ain", batch_size=7)
    assert read_all(source) == texts_of(ROWS)
    first = hub.requests_to("/rows")[0].params
    assert (first["dataset"], first["config"], first["split"]) == (name, "a&b", "tr?ain")


# --- the token ----------------------------------------------------------------------------


def test_401_without_token_explains_hf_token(hub: HubServer, dataset: str) -> None:
    hub.token = SECRET
    with pytest.raises(InputError, match=r"401.*no token was found; set HF_TOKEN"):
        read_all(rows_source(hub, dataset))


def test_401_with_wrong_token_says_it_was_refused(
    hub: HubServer, dataset: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.token = "hf_the_right_one"
    monkeypatch.setenv("HF_TOKEN", SECRET)
    with pytest.raises(InputError, match=r"401.*token .* was refused") as caught:
        read_all(rows_source(hub, dataset))
    assert SECRET not in str(caught.value)


def test_403_gated(hub: HubServer, dataset: str, monkeypatch: pytest.MonkeyPatch) -> None:
    hub.forbidden = True
    monkeypatch.setenv("HF_TOKEN", SECRET)
    with pytest.raises(InputError, match=r"403.*gated.*HF_TOKEN"):
        read_all(rows_source(hub, dataset))


def test_token_from_env_is_sent(
    hub: HubServer, dataset: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.token = SECRET
    monkeypatch.setenv("HF_TOKEN", SECRET)
    assert read_all(rows_source(hub, dataset)) == texts_of(ROWS)


def test_token_from_token_file(hub: HubServer, dataset: str, clean_token_env: Path) -> None:
    hub.token = SECRET
    (clean_token_env / "token").write_text(SECRET + "\n")
    assert read_all(rows_source(hub, dataset)) == texts_of(ROWS)


def test_env_token_wins_over_file(clean_token_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_token_env / "token").write_text("hf_from_file")
    monkeypatch.setenv("HF_TOKEN", "hf_from_env")
    token = find_hf_token()
    assert token is not None and token.reveal() == "hf_from_env"
    monkeypatch.delenv("HF_TOKEN")
    token = find_hf_token()
    assert token is not None and token.reveal() == "hf_from_file"


def test_token_only_goes_to_trusted_origins(hub: HubServer, dataset: str) -> None:
    client = HttpClient(FAST_HTTP, token=SecretToken(SECRET), trusted_origins=["http://other:1"])
    client.get_json(size_url(hub), {"dataset": dataset})
    assert hub.requests_to("/size")[-1].authorization is None
    trusted = HttpClient(FAST_HTTP, token=SecretToken(SECRET), trusted_origins=[hub.url])
    trusted.get_json(size_url(hub), {"dataset": dataset})
    assert hub.requests_to("/size")[-1].authorization == f"Bearer {SECRET}"


def test_token_never_appears_anywhere(
    hub: HubServer,
    dataset: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("HF_TOKEN", SECRET)
    hub.token = SECRET
    caplog.set_level(logging.DEBUG)
    source = rows_source(hub, dataset, batch_size=10)
    seen = [repr(source), repr(source.client), str(source.client.session.auth)]
    for batch in source.iter_batches(prefetch=0):
        seen.append(json.dumps(batch.position))
    seen.append(json.dumps(source.position))
    source.resume({"source": "hf", "offset": 0, "batches": 0, "skipped": 0})
    errors: list[BaseException] = []
    hub.token = "hf_changed"  # the token is refused: the 401 path
    with pytest.raises(InputError) as refused:
        read_all(source)
    errors.append(refused.value)
    hub.token = SECRET
    hub.faults.schedule("/rows", *[Fault.status_code(503)] * 50)  # the exhausted path
    with pytest.raises(CssRsError) as exhausted:
        read_all(source)
    errors.append(exhausted.value)
    for error in errors:
        seen += [
            str(error),
            repr(error),
            "".join(traceback.format_exception(type(error), error, error.__traceback__)),
        ]
    seen += [record.getMessage() for record in caplog.records]
    seen.append(repr(SecretToken(SECRET)))
    assert all(SECRET not in text for text in seen)
    with pytest.raises(TypeError):
        json.dumps(SecretToken(SECRET))


def test_settings_are_validated_by_backoff_formula() -> None:
    settings = HttpSettings(backoff_factor=1.0, backoff_max=5.0, backoff_jitter=0.0)
    assert [settings.backoff(a) for a in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
