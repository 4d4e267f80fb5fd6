"""What ``css-rs train`` shows: the guide's banners, and a progress bar per phase.

On a terminal each phase gets a rich progress bar; when stdout is a file or a pipe (CI, logs,
``nohup``) the same figures are printed as plain lines every few seconds instead, because a
redrawn bar turns into thousands of lines there.
"""

from __future__ import annotations

import errno
import os
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Optional, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column

from css_rs.redaction import redact

WIDTH = 70


def _encodable(stream: TextIO, text: str) -> bool:
    try:
        text.encode(getattr(stream, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def format_count(n: float) -> str:
    """``1234567`` -> ``1,234,567`` (the guide's style)."""
    return f"{round(n):,}"


def format_quantity(n: float, noun: str, plural: Optional[str] = None) -> str:
    """``1`` row -> ``1 row``, ``1234`` rows -> ``1,234 rows`` (plural: ``noun`` + s, unless
    given: ``format_quantity(3, "batch", "batches")``)."""
    word = noun if round(n) == 1 else (plural or noun + "s")
    return f"{format_count(n)} {word}"


def format_rate(per_second: float) -> str:
    """A rate with an SI suffix: ``12345.6`` -> ``12.3K``."""
    for threshold, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if per_second >= threshold:
            return f"{per_second / threshold:.1f}{suffix}"
    return f"{per_second:.1f}"


def format_seconds(seconds: float) -> str:
    """``75.3`` -> ``1m15s``; ``3.2`` -> ``3.2s``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class _Console(Console):
    """rich's Console, except that a reader going away (``css-rs train | head``) raises
    BrokenPipeError, which the run handles like Ctrl+C (it saves a checkpoint), instead of
    rich's silent ``SystemExit(1)``. Later output goes to the null device."""

    def on_broken_pipe(self) -> None:
        silence_stdout()
        raise BrokenPipeError(errno.EPIPE, "the reader of the output went away")


def silence_stdout() -> None:
    """Points stdout at the null device, so that writing or flushing it cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


class Reporter:
    """Prints banners and messages, and runs one progress display at a time."""

    def __init__(
        self,
        stream: Optional[TextIO] = None,
        *,
        live: Optional[bool] = None,
        log_every: float = 5.0,
    ) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self.log_every = log_every
        # soft_wrap: long lines (paths) must never be cut or wrapped in log files.
        self.console = _Console(file=self.stream, highlight=False, soft_wrap=True)
        fancy = _encodable(self.stream, "█▓▶✓💾")
        self.heavy, self.light, self.resume_char = ("█", "▓", "▶") if fancy else ("#", "=", ">")
        self.ok_mark = "✓" if fancy else "OK"
        self.save_mark = "💾" if fancy else "*"

    # -- plain output --------------------------------------------------------------------

    def line(self, text: str = "") -> None:
        self.console.print(redact(text), markup=False)

    def ok(self, text: str) -> None:
        self.line(f"{self.ok_mark} {text}")

    def saving(self, text: str) -> None:
        self.line(f"{self.save_mark} {text}")

    def banner(self, title: str, char: Optional[str] = None) -> None:
        rule = (char or self.heavy) * WIDTH
        self.line()
        self.line(rule)
        self.line(title)
        self.line(rule)

    def phase(self, number: int, title: str) -> None:
        self.banner(f"PHASE {number}: {title}", self.light)
        self.line()

    def settings(self, title: str, items: Mapping[str, str]) -> None:
        self.line(f"{title}:")
        for key, value in items.items():
            self.line(f"  {key}: {value}")

    # -- progress ------------------------------------------------------------------------

    @contextmanager
    def task(
        self, description: str, total: Optional[float] = None, *, transient: bool = False
    ) -> Iterator[TaskHandle]:
        """A progress display for one phase: a rich bar on a terminal, log lines otherwise.
        A ``transient`` bar is erased when the phase ends (a query's bar, whose result
        follows it)."""
        if not self.live:
            handle: TaskHandle = _LogTask(self, description, total)
            try:
                yield handle
            finally:
                handle.finish()
            return
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            # Last and wrapping: on a narrow terminal the figures fold instead of being cut.
            TextColumn("{task.fields[stats]}", table_column=Column(ratio=1, no_wrap=False)),
            console=self.console,
            transient=transient,
        )
        with progress:
            task_id = progress.add_task(description, total=total, stats="")
            handle = _BarTask(progress, task_id)
            try:
                yield handle
            finally:
                handle.finish()


class TaskHandle:
    """Updates one phase's display: ``update(done, stats)`` with ``done`` in the task's units."""

    def update(self, done: float, stats: str, total: Optional[float] = None) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        raise NotImplementedError


class _BarTask(TaskHandle):
    def __init__(self, progress: Progress, task_id: TaskID) -> None:
        self.progress = progress
        self.task_id = task_id

    def update(self, done: float, stats: str, total: Optional[float] = None) -> None:
        if total is not None:
            self.progress.update(self.task_id, total=total)
        self.progress.update(self.task_id, completed=done, stats=stats)

    def finish(self) -> None:
        self.progress.refresh()


class _LogTask(TaskHandle):
    """Plain lines every ``log_every`` seconds, with percentage and ETA when the total is known."""

    def __init__(self, reporter: Reporter, description: str, total: Optional[float]) -> None:
        self.reporter = reporter
        self.description = description
        self.total = total
        self.started = time.monotonic()
        self.first_done: Optional[float] = None
        self.last_print = 0.0
        self.last_line: Optional[str] = None
        self.done = 0.0
        self.stats = ""

    def update(self, done: float, stats: str, total: Optional[float] = None) -> None:
        if total is not None:
            self.total = total
        if self.first_done is None:
            self.first_done = done  # a resumed run starts part-way: rate from here on
        self.done, self.stats = done, stats
        now = time.monotonic()
        if now - self.last_print >= self.reporter.log_every:
            self.last_print = now
            self._print(now)

    def finish(self) -> None:
        if self.last_line != self._compose(time.monotonic()):
            self._print(time.monotonic())

    def _print(self, now: float) -> None:
        text = self._compose(now)
        self.last_line = text
        self.reporter.line(text)

    def _compose(self, now: float) -> str:
        elapsed = now - self.started
        parts = [f"{self.description}:"]
        if self.total:
            parts.append(f"{100.0 * min(self.done / self.total, 1.0):5.1f}%")
        if self.stats:
            parts.append(self.stats)
        parts.append(f"elapsed {format_seconds(elapsed)}")
        eta = self._eta(elapsed)
        if eta is not None:
            parts.append(f"ETA {format_seconds(eta)}")
        return " | ".join(parts)

    def _eta(self, elapsed: float) -> Optional[float]:
        base = self.first_done or 0.0
        if not self.total or elapsed <= 0 or self.done <= base or self.done >= self.total:
            return None
        rate = (self.done - base) / elapsed
        return (self.total - self.done) / rate
