"""Files on disk: atomic writes, model backups with retention, metadata.

Every file css-rs writes goes through ``atomic_write_bytes``: a temporary file in the same
folder, fsync, rename, fsync of the folder. A crash or a full disk at any instant leaves either
the old file or the new one, never half of either.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import tempfile
from pathlib import Path
from typing import Any

import orjson

BACKUP_INFIX = ".backup."


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Writes ``data`` to ``path`` so that readers see the old or the new file, never a mix."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not every filesystem supports it, hence best effort.
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, indent: bool = False) -> None:
    option = orjson.OPT_SERIALIZE_NUMPY | (orjson.OPT_INDENT_2 if indent else 0)
    atomic_write_bytes(path, orjson.dumps(obj, option=option))


def utc_timestamp() -> str:
    """ISO-8601 UTC time, as the original tool's ``timestamp`` field."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat().replace("+00:00", "Z")


def backup_path(model_path: str | os.PathLike[str], when: _dt.datetime | None = None) -> Path:
    """``css_model.json`` -> ``css_model.backup.2025-01-23T01-15-30.123456Z.json``."""
    p = Path(model_path)
    stamp = (when or _dt.datetime.now(_dt.timezone.utc)).strftime("%Y-%m-%dT%H-%M-%S.%fZ")
    return p.with_name(f"{p.stem}{BACKUP_INFIX}{stamp}{p.suffix}")


def list_backups(model_path: str | os.PathLike[str]) -> list[Path]:
    """Backups of ``model_path``, oldest first (the timestamp sorts as text)."""
    p = Path(model_path)
    if not p.parent.is_dir():
        return []
    prefix = f"{p.stem}{BACKUP_INFIX}"
    return sorted(
        q for q in p.parent.iterdir() if q.name.startswith(prefix) and q.name.endswith(p.suffix)
    )


def backup_existing(model_path: str | os.PathLike[str], keep: int) -> Path | None:
    """Copies the model about to be replaced to a timestamped backup; keeps the newest ``keep``.

    Returns the new backup's path, or None when there was nothing to back up (or ``keep`` is 0).
    The copy is made with a hard link when possible (instant, no extra space), else a copy.
    """
    src = Path(model_path)
    if keep <= 0 or not src.is_file():
        return None
    dst = backup_path(src)
    try:
        os.link(src, dst)
    except OSError:
        atomic_write_bytes(dst, src.read_bytes())
    for old in list_backups(src)[:-keep]:
        with contextlib.suppress(OSError):
            old.unlink()
    return dst


def metadata_path(model_path: str | os.PathLike[str]) -> Path:
    """``css_model.json`` -> ``css_model.metadata.json``."""
    p = Path(model_path)
    return p.with_name(f"{p.stem}.metadata{p.suffix}")
