"""Secrets never shown: the Hugging Face token is cut out of every text css-rs prints or
writes, whatever a server sent back.

A server, proxy or mirror may echo the request's ``Authorization`` header in an error body,
which then ends up in an exception message, a ``--debug`` traceback or a file. Rather than
trusting each place that builds a message, the token is removed where text leaves the process:
the CLI's error lines and tracebacks (``css_rs.cli``), the progress output (``Reporter``) and
the JSON files css-rs writes (``persistence``). Text that came from a server is also cleaned of
anything that looks like a bearer credential or a Hugging Face token (``redact_untrusted``),
since a hostile server may echo a token this process does not know it has.
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any, Optional

REDACTED = "<redacted>"
# Shorter values are not treated as secrets: replacing "ab" everywhere would garble messages.
MIN_SECRET_LENGTH = 6
TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")

_registered: set[str] = set()
_lock = threading.Lock()
_BEARER = re.compile(r"(?i)\b(bearer|basic)(\s+)[^\s\"',;)}\]]+")
_HF_TOKEN = re.compile(r"\bhf_[A-Za-z0-9]{6,}")


def register_secret(value: Optional[str]) -> None:
    """Remembers ``value`` (e.g. a token read from a file) as a secret to redact from now on."""
    if value and len(value.strip()) >= MIN_SECRET_LENGTH:
        with _lock:
            _registered.add(value.strip())


def known_secrets() -> list[str]:
    """The secrets to redact: those registered and the token variables of the environment,
    longest first (so that a secret containing another is removed whole)."""
    found = set(_registered)
    for name in TOKEN_VARIABLES:
        value = os.environ.get(name, "").strip()
        if len(value) >= MIN_SECRET_LENGTH:
            found.add(value)
    return sorted(found, key=len, reverse=True)


def redact(text: str) -> str:
    """``text`` with every known secret replaced by ``<redacted>``."""
    for secret in known_secrets():
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact_untrusted(text: str) -> str:
    """``redact``, and also whatever looks like a credential (``Bearer ...``, ``hf_...``):
    for text that came from a server, which may echo a token this process never had."""
    text = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", redact(text))
    return _HF_TOKEN.sub(REDACTED, text)


def redact_object(value: Any) -> Any:
    """A JSON-like value with every string (keys included) redacted; other values unchanged."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_object(k): redact_object(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_object(v) for v in value]
    return value


def redact_bytes(data: bytes) -> bytes:
    """``data`` (UTF-8 text such as JSON) with every known secret replaced."""
    for secret in known_secrets():
        raw = secret.encode("utf-8", "surrogateescape")
        if raw in data:
            data = data.replace(raw, REDACTED.encode())
    return data
