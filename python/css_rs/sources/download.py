"""Download one file by streaming, resuming with ``Range`` after a broken transfer.

Bytes go to ``<target>.part`` and the file is renamed to ``target`` once complete, so a
``target`` on disk is always whole. A ``.part`` left by a killed run is resumed too. A transfer
that breaks (connection dropped, read timeout, body shorter than announced) is retried from the
bytes already on disk with ``Range: bytes=<have>-``; the retry budget (``body_retries``) only
shrinks while no byte arrives, so a slow but progressing download is never abandoned. A server
that ignores ``Range`` (answers 200) makes the download restart from zero.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import requests

from css_rs.sources.http import HttpClient

_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)")


class _TransferBroken(Exception):
    """The transfer stopped before the announced end; resume from what is on disk."""


def download(
    client: HttpClient, url: str, target: Path, expected_size: Optional[int] = None
) -> Path:
    """``target``, downloaded from ``url`` unless already complete on disk."""
    if target.exists() and (expected_size is None or target.stat().st_size == expected_size):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    part.touch()  # resumed if a killed run left it, else an empty start
    fruitless = 0  # consecutive attempts that brought no byte
    while True:
        have = _size_on_disk(part, expected_size)
        try:
            if have == expected_size or _transfer(client, url, part, have):
                break
            # The server announced nothing to check against but the body was cut: try again.
            raise _TransferBroken("body ended early")
        except (requests.RequestException, _TransferBroken) as e:
            fruitless = 0 if _size_on_disk(part, expected_size) > have else fruitless + 1
            if fruitless > client.settings.body_retries:
                reason = f"download broke: {e}"
                raise client.exhausted(url, {"bytes_received": have}, reason) from None
            client.wait_before_retry(fruitless - 1)
    part.replace(target)
    return target


def _size_on_disk(part: Path, expected_size: Optional[int]) -> int:
    size = part.stat().st_size
    if expected_size is not None and size > expected_size:
        part.write_bytes(b"")  # more than the file can hold: not a prefix of it, start over
        return 0
    return size


def _transfer(client: HttpClient, url: str, part: Path, have: int) -> bool:
    """Appends the rest of the file to ``part``; True when the file is complete."""
    # identity: offsets must count bytes of the file, not of a compressed stream.
    headers = {"Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    response = client.open(url, headers=headers, accept=(416,))
    with response:
        if response.status_code == 416:
            return _range_past_end(response, part, have)
        start = _start_offset(response, have)
        total = _announced_total(response, start)
        with part.open("r+b") as fh:
            fh.seek(start)
            fh.truncate()
            for block in response.iter_content(chunk_size=client.settings.download_chunk_bytes):
                fh.write(block)
    size = part.stat().st_size
    if total is not None and size < total:
        raise _TransferBroken(f"{size} of {total} bytes received")
    return True


def _start_offset(response: requests.Response, have: int) -> int:
    """Where this answer's body starts in the file: ``have`` for a 206, else 0."""
    if response.status_code != 206:
        return 0  # Range ignored: the whole file is coming
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    if match is None or match.group(1) is None or int(match.group(1)) != have:
        raise _TransferBroken("the server answered another range than the one asked for")
    return have


def _announced_total(response: requests.Response, start: int) -> Optional[int]:
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    if match is not None and match.group(2) != "*":
        return int(match.group(2))
    length = response.headers.get("Content-Length")
    return start + int(length) if length and length.isdigit() else None


def _range_past_end(response: requests.Response, part: Path, have: int) -> bool:
    """416: complete when the server's total equals what is on disk, else start over."""
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    if match is not None and match.group(2) != "*" and int(match.group(2)) == have:
        return True
    part.write_bytes(b"")
    raise _TransferBroken("the partial download does not match the file; starting over")
