"""Files on disk: atomic writes, model backups with retention, metadata.

Every file css-rs writes goes through ``atomic_write_bytes``: a temporary file in the same
folder, fsync, rename, fsync of the folder. A crash or a full disk at any instant leaves either
the old file or the new one, never half of either.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import io
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Optional

import orjson

from css_rs.errors import InputError
from css_rs.redaction import redact_object

BACKUP_INFIX = ".backup."


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
)


def check_output_path(path: str | os.PathLike[str]) -> Path:
    """Refuses an output path whose existing target is not a regular file.

    Saving renames a new file onto the target, which would replace a device, a FIFO or a
    folder (``/dev/null`` once became a regular file that way). A target that does not exist
    yet, a regular file, or a symbolic link to a regular file is fine. Raises InputError
    (exit code 2) naming the path and what is there; nothing is touched.
    """
    target = Path(path)
    try:
        st = os.stat(target)  # follows symbolic links: what is at the end is what matters
    except FileNotFoundError:
        return target  # nothing there yet (or a dangling link, which a rename replaces)
    except OSError:
        return target  # no such folder, no permission: the write reports it in its own words
    if stat.S_ISREG(st.st_mode):
        return target
    kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
    link = f" (a symbolic link to {os.path.realpath(target)})" if target.is_symlink() else ""
    raise InputError(
        f"{target}{link} is {kind}, not a regular file: css-rs only replaces regular files; "
        "choose another output path"
    )


# The one low-level write of every file css-rs saves atomically (tests replace it to make the
# disk "full" at a chosen moment).
_os_write = os.write


class _RawFile(io.RawIOBase):
    """An unbuffered writable, seekable file over a descriptor, writing with ``_os_write``."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def write(self, data: Any) -> int:
        return _os_write(self._fd, data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return os.lseek(self._fd, offset, whence)

    def tell(self) -> int:
        return os.lseek(self._fd, 0, os.SEEK_CUR)

    def close(self) -> None:
        if not self.closed:
            try:
                os.close(self._fd)
            finally:
                super().close()


def _umask() -> int:
    """The process's umask (read by setting it, so read once and kept)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return _UMASK


_UMASK: Optional[int] = None


def _naming(target: Path, error: OSError) -> OSError:
    """``error`` (a full disk, a quota) naming the file being saved, when it names none."""
    if error.filename is not None or not error.errno:
        return error
    return type(error)(error.errno, error.strerror or str(error), str(target))


@contextlib.contextmanager
def staged_file(path: str | os.PathLike[str]) -> Iterator[tuple[IO[bytes], Path]]:
    """A temporary file beside ``path`` (same folder, so that a rename publishes it) and its
    path. On leaving, its contents are flushed and synced; publishing it is the caller's (an
    ``os.replace``), and a temporary file still there after an error is removed. Errors of the
    disk (ENOSPC, EDQUOT, EIO) name ``path``."""
    target = check_output_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        # mkstemp makes the file private (0600); the file it becomes is an ordinary output,
        # with the mode any other tool would give it (0644 under the usual umask 022).
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o666 & ~_umask())
        with io.BufferedWriter(_RawFile(fd), buffer_size=1 << 20) as fh:
            yield fh, Path(tmp)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise _naming(target, e) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _publish(tmp: Path, target: Path) -> None:
    """Renames a staged file onto ``target`` (checked again: something may have been put
    there meanwhile); removes the staged file if that fails."""
    try:
        check_output_path(target)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """A binary file that appears at ``path`` only once fully written and synced (temporary
    file in the same folder, fsync, rename, fsync of the folder), so that readers see the old
    file or the new one, never a mix. Large outputs can be streamed into it.

    An existing ``path`` that is not a regular file (a device, a FIFO, a folder, a link to one
    of them) is refused before anything is written (``check_output_path``)."""
    target = Path(path)
    with staged_file(target) as (fh, tmp):
        yield fh
    _publish(tmp, target)
    _fsync_dir(target.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically (see ``atomic_writer``)."""
    with atomic_writer(path) as fh:
        fh.write(data)


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
    atomic_write_bytes(path, orjson.dumps(redact_object(obj), option=option))


def utc_timestamp() -> str:
    """ISO-8601 UTC time, as the original tool's ``timestamp`` field."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat().replace("+00:00", "Z")


def backup_path(model_path: str | os.PathLike[str], when: Optional[_dt.datetime] = None) -> Path:
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


def sha256_of(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _same_contents(a: Path, b: Path) -> bool:
    try:
        if os.path.samefile(a, b):
            return True
        return a.stat().st_size == b.stat().st_size and sha256_of(a) == sha256_of(b)
    except OSError:
        return False


def backup_existing(
    model_path: str | os.PathLike[str], keep: int, new_sha256: Optional[str] = None
) -> Optional[Path]:
    """Keeps the model about to be replaced as a timestamped backup (a hard link when
    possible: instant, no extra space; else a copy). Prunes nothing: see ``prune_backups``,
    which must only run once the new model is saved.

    Returns the new backup's path, or None when there is nothing to keep: ``keep`` is 0, no
    model yet, the model is the one about to be written (``new_sha256``), or the newest backup
    already holds it (a save that failed after its backup must not make the next save count
    the same model twice).
    """
    src = Path(model_path)
    if keep <= 0 or not src.is_file():
        return None
    if new_sha256 is not None and sha256_of(src) == new_sha256:
        return None
    existing = list_backups(src)
    if existing and _same_contents(existing[-1], src):
        return None
    dst = backup_path(src)
    try:
        os.link(src, dst)
    except OSError:
        atomic_write_bytes(dst, src.read_bytes())
    return dst


def prune_backups(model_path: str | os.PathLike[str], keep: int) -> list[Path]:
    """Removes all but the newest ``keep`` backups (nothing when ``keep`` is 0: backups are
    then not made, and those of earlier runs are left alone); returns those removed."""
    if keep <= 0:
        return []
    removed = []
    for old in list_backups(model_path)[:-keep]:
        with contextlib.suppress(OSError):
            old.unlink()
            removed.append(old)
    return removed


def publish_model(
    model_path: str | os.PathLike[str],
    model_bytes: bytes,
    metadata: Optional[tuple[Path, bytes]] = None,
    *,
    keep_backups: int = 0,
) -> Optional[Path]:
    """Saves a model file and its metadata as a consistent pair, with backups.

    Both files are written and synced as temporary files first; only then is the previous
    model backed up, the model renamed into place, then the metadata. A full disk or any other
    failure before that leaves the model, its metadata and every backup as they were (and the
    error names the file). Backups beyond ``keep_backups`` are pruned only after the save
    succeeded. A crash between the two renames leaves a new model beside the old metadata:
    the metadata records its model's sha256 (``model_sha256``), so ``info`` tells them apart.
    Returns the backup made, if any.
    """
    target = check_output_path(model_path)
    staged: list[Path] = []
    try:
        with staged_file(target) as (fh, tmp):
            staged.append(tmp)
            fh.write(model_bytes)
        if metadata is not None:
            with staged_file(metadata[0]) as (fh, tmp):
                staged.append(tmp)
                fh.write(metadata[1])
        new_sha = hashlib.sha256(model_bytes).hexdigest()
        backup = backup_existing(target, keep_backups, new_sha)
        _publish(staged[0], target)
        if metadata is not None:
            _publish(staged[1], metadata[0])
    except BaseException:
        for tmp in staged:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise
    _fsync_dir(target.parent)
    prune_backups(target, keep_backups)
    return backup


def metadata_path(model_path: str | os.PathLike[str]) -> Path:
    """``css_model.json`` -> ``css_model.metadata.json``."""
    p = Path(model_path)
    return p.with_name(f"{p.stem}.metadata{p.suffix}")
