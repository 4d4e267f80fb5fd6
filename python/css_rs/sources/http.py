"""The one HTTP client of the network sources: pooled, time-limited, retried, token-safe.

Two retry layers, because failures happen at two moments of a request:

1. **Before the answer's headers** (connection refused or reset, connect/read timeout while
   waiting for headers, 429 and 500/502/503/504): urllib3's ``Retry`` on the session's adapter,
   with exponential backoff plus jitter and ``Retry-After`` honoured for 429/503.
2. **While reading the body** (connection dropped mid-body, read timeout mid-body, a body that
   is not valid JSON, a download cut short): urllib3 has already handed the response over, so
   ``HttpClient`` runs its own bounded loop with the same backoff.

When either layer gives up, the error names the endpoint and its query (the ``offset``
included); ``css-rs train`` says how to resume when it saved a checkpoint. A connection that
cannot be made (no network, a name that does not resolve, a refused port) is retried twice,
not eight times: it fails in seconds rather than after two minutes of backoff.

The Hugging Face token (``HF_TOKEN``, else the token file of ``huggingface-cli``) is kept in a
``SecretToken`` whose ``repr``/``str`` hide it, and is only attached to requests for the
configured endpoints' origins, so a URL listed in an answer never receives it. No message built
here contains it: they quote URLs and query parameters, never headers.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import random
import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union
from urllib.parse import urlsplit

import orjson
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from css_rs.errors import CssRsError, InputError
from css_rs.redaction import REDACTED, redact_untrusted, register_secret

TRANSIENT_STATUSES = (429, 500, 502, 503, 504)
QueryValue = Union[str, int]
Query = Mapping[str, QueryValue]


@dataclass(frozen=True)
class HttpSettings:
    """Timeouts, retry budget and backoff of the network sources (tests shrink them)."""

    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    # urllib3 layer: connection errors, timeouts before headers, 429 and 5xx answers.
    retries: int = 8
    # A name that does not resolve or a refused connection: no network, a wrong endpoint, a
    # server that is down. Worth a quick second look, not two minutes of backoff.
    connect_retries: int = 2
    # Own layer: bodies cut short or not JSON, and downloads that stop making progress.
    body_retries: int = 5
    backoff_factor: float = 0.5
    backoff_max: float = 60.0
    backoff_jitter: float = 0.5
    # A server asking for more than this in Retry-After gets this (urllib3 >= 2.6 only).
    retry_after_max: int = 600
    pool_size: int = 4
    download_chunk_bytes: int = 1 << 20

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based) of the own layer."""
        delay = min(self.backoff_max, self.backoff_factor * (2**attempt))
        return delay + random.random() * self.backoff_jitter


class SecretToken:
    """A token that never shows itself in ``str``, ``repr``, logs or pickles of messages."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "SecretToken(<hidden>)"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("a SecretToken is not serialisable")


def token_file_path() -> Path:
    """Where ``huggingface-cli login`` stores the token (``HF_TOKEN_PATH``, ``HF_HOME``)."""
    explicit = os.environ.get("HF_TOKEN_PATH")
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join("~", ".cache", "huggingface")
    return Path(home).expanduser() / "token"


def find_hf_token() -> Optional[SecretToken]:
    """The token from ``HF_TOKEN``, else from the token file, else None."""
    value = os.environ.get("HF_TOKEN", "").strip()
    if not value:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            value = token_file_path().read_text(encoding="utf-8").strip()
    register_secret(value)  # from now on cut out of every message and file (css_rs.redaction)
    return SecretToken(value) if value else None


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


class _BearerAuth(requests.auth.AuthBase):
    """Adds the token only for trusted origins; requests drops it on cross-host redirects."""

    def __init__(self, token: SecretToken, trusted_origins: Sequence[str]) -> None:
        self._token = token
        self._trusted = {origin_of(o) for o in trusted_origins}

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if request.url is not None and origin_of(request.url) in self._trusted:
            request.headers["Authorization"] = f"Bearer {self._token.reveal()}"
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(<hidden>)"


def _make_retry(settings: HttpSettings) -> Retry:
    options: dict[str, Any] = {
        "total": settings.retries,
        "connect": min(settings.connect_retries, settings.retries),
        "read": settings.retries,
        "status": settings.retries,
        "redirect": 10,
        "allowed_methods": frozenset({"GET", "HEAD"}),
        "status_forcelist": TRANSIENT_STATUSES,
        "backoff_factor": settings.backoff_factor,
        # The last answer comes back instead of an exception, so messages can quote it.
        "raise_on_status": False,
        "respect_retry_after_header": True,
    }
    # Older urllib3 (1.26) lacks these; the client still works there, without jitter or caps.
    accepted = inspect.signature(Retry.__init__).parameters
    optional = {
        "backoff_max": settings.backoff_max,
        "backoff_jitter": settings.backoff_jitter,
        "retry_after_max": settings.retry_after_max,
    }
    options.update({k: v for k, v in optional.items() if k in accepted})
    return Retry(**options)


def describe_request(url: str, params: Optional[Query] = None) -> str:
    """``url (key=value, ...)``: what messages quote. Never includes headers (the token)."""
    if not params:
        return url
    query = ", ".join(f"{k}={v}" for k, v in params.items())
    return f"{url} ({query})"


_BAD_URL = (
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidURL,
)


class NotFoundError(InputError):
    """A 404 answer; callers decide whether it means "exhausted" or "no such dataset"."""


class _BodyFailure(Exception):
    """The answer's body could not be read or decoded; worth another attempt."""


class HttpClient:
    """A pooled ``requests.Session`` with the two retry layers described in the module doc.

    ``stop()`` makes backoff waits of the own layer return at once (used when a prefetching
    consumer goes away), so a closing source is not held up by a long backoff.
    """

    def __init__(
        self,
        settings: Optional[HttpSettings] = None,
        *,
        trusted_origins: Sequence[str] = (),
        token: Optional[SecretToken] = None,
        find_token: bool = True,
    ) -> None:
        self.settings = settings or HttpSettings()
        self._token = token if token is not None else (find_hf_token() if find_token else None)
        self._stopping = threading.Event()
        self.session = requests.Session()
        adapter = HTTPAdapter(
            pool_connections=self.settings.pool_size,
            pool_maxsize=self.settings.pool_size,
            max_retries=_make_retry(self.settings),
        )
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["Accept-Encoding"] = "gzip, deflate"
        if self._token is not None:
            self.session.auth = _BearerAuth(self._token, trusted_origins)

    @property
    def has_token(self) -> bool:
        return self._token is not None

    def redact_token(self, text: str) -> str:
        """``text`` without this client's token: a hostile server may echo it in data too."""
        if self._token is not None:
            token = self._token.reveal()
            if token and token in text:
                return text.replace(token, REDACTED)
        return text

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.settings.connect_timeout, self.settings.read_timeout)

    def __repr__(self) -> str:
        token = "set" if self.has_token else "none"
        return f"HttpClient(token={token}, settings={self.settings!r})"

    def close(self) -> None:
        self._stopping.set()
        self.session.close()

    def stop(self) -> None:
        self._stopping.set()

    def allow_waits(self) -> None:
        self._stopping.clear()

    def wait_before_retry(self, attempt: int) -> None:
        """Backs off before another attempt; returns early once ``stop()`` was called."""
        self._stopping.wait(self.settings.backoff(attempt))

    # --- JSON ----------------------------------------------------------------------------
    def get_json(self, url: str, params: Optional[Query] = None) -> dict[str, Any]:
        """GET ``url`` and decode a JSON object, retrying transient failures (see module doc).

        Raises ``InputError`` for 401/403 (token), ``NotFoundError`` for 404, ``CssRsError``
        once retries are exhausted or for any other failure.
        """
        attempts = self.settings.body_retries + 1
        failure = ""
        for attempt in range(attempts):
            response = self.open(url, params)
            try:
                return _decode_object(_read_body(response))
            except _BodyFailure as e:
                failure = str(e)
            finally:
                response.close()
            if attempt + 1 < attempts:
                self.wait_before_retry(attempt)
        raise self.exhausted(url, params, failure)

    # --- raw ------------------------------------------------------------------------------
    def open(
        self,
        url: str,
        params: Optional[Query] = None,
        headers: Optional[Mapping[str, str]] = None,
        accept: Collection[int] = (),
    ) -> requests.Response:
        """GET with headers received and status checked (statuses in ``accept`` pass as they
        are); the body is left to the caller, who must close the response."""
        try:
            response = self.session.get(
                url,
                params=dict(params) if params else None,
                headers=dict(headers) if headers else None,
                timeout=self.timeout,
                stream=True,
            )
        except _BAD_URL as e:
            raise InputError(
                f"invalid URL {url!r} ({type(e).__name__}): check --datasets-server-endpoint "
                "and --hf-endpoint"
            ) from None
        except requests.RequestException as e:
            # urllib3's retries are spent (or the failure is not retryable at all).
            raise self.exhausted(url, params, _reason(e)) from None
        if response.status_code not in accept:
            self._check_status(response, url, params)
        return response

    def _check_status(self, response: requests.Response, url: str, params: Optional[Query]) -> None:
        status = response.status_code
        if status < 400:
            return
        detail = _error_detail(response)
        response.close()
        where = describe_request(url, params)
        if status in (401, 403):
            raise InputError(self._auth_message(status, where, detail))
        if status == 404:
            raise NotFoundError(f"{where} answered 404 Not Found{detail}")
        if status in TRANSIENT_STATUSES:
            raise self.exhausted(url, params, f"HTTP {status}{detail}")
        raise CssRsError(f"{where} answered HTTP {status}{detail}")

    def _auth_message(self, status: int, where: str, detail: str) -> str:
        if self.has_token:
            advice = (
                "the token found in HF_TOKEN or the Hugging Face token file was refused; "
                "set HF_TOKEN to a token with access to this dataset (and accept its terms on "
                "the Hub if it is gated)"
            )
        else:
            advice = (
                "the dataset is private or gated and no token was found; set HF_TOKEN "
                f"(or run `huggingface-cli login`, which writes {token_file_path()})"
            )
        return f"{where} answered HTTP {status}{detail}: {advice}"

    def exhausted(self, url: str, params: Optional[Query], reason: str) -> CssRsError:
        return CssRsError(f"{describe_request(url, params)} kept failing after retries: {reason}")


def _reason(error: requests.RequestException) -> str:
    # requests wraps urllib3's MaxRetryError; its innermost reason is the readable part.
    inner: Any = error.args[0] if error.args else error
    reason = getattr(inner, "reason", None)
    text = redact_untrusted(str(reason if reason is not None else inner))
    return f"{type(error).__name__}: {text}"[:300]


def _read_body(response: requests.Response) -> bytes:
    try:
        return response.content
    except requests.RequestException as e:
        raise _BodyFailure(f"body cut short ({_reason(e)})") from None


def _decode_object(body: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise _BodyFailure(f"malformed JSON body ({e})") from None
    if not isinstance(value, dict):
        raise _BodyFailure(f"JSON body is a {type(value).__name__}, not an object")
    return value


def _error_detail(response: requests.Response) -> str:
    """``: <message>`` from an ``{"error": ...}`` body, or nothing; never raises."""
    try:
        body = response.raw.read(4096, decode_content=True)
        message = orjson.loads(body).get("error")
    except Exception:
        return ""
    # Redacted before it is cut short: a cut could leave a prefix of the token behind.
    return f": {redact_untrusted(str(message))[:200]}" if message else ""
