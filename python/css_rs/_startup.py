"""Ctrl+C before the command line is up, or while it shuts down.

Importing css-rs (numpy, the Rust core, typer, rich) takes a few tenths of a second, and a
Ctrl+C then used to print a ``KeyboardInterrupt`` traceback from deep inside an import and end
the process by the signal (exit status -2 to a parent) instead of the CLI's ``interrupted`` and
exit code 130. The same burst of Ctrl+C while the interpreter shuts down printed ``Exception
ignored in atexit callback``. This module is imported first by the package (standard library
only, so it is quick): when the process is the ``css-rs`` command, Ctrl+C quits at once with
exit code 130 until ``css_rs.cli.main`` takes over, and again once it is done. Nothing is
written in either window, so nothing can be left half-done.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any

EXIT_INTERRUPTED = 130


def is_cli() -> bool:
    """True when this process is the ``css-rs`` command (the console script or
    ``python -m css_rs``), not a program that imports the package."""
    name = os.path.basename(sys.argv[0]) if sys.argv else ""
    if name in ("css-rs", "css-rs.exe"):
        return True
    orig = list(getattr(sys, "orig_argv", []))
    return "-m" in orig and orig[orig.index("-m") + 1 : orig.index("-m") + 2] == ["css_rs"]


def exit_now(signum: int = 0, frame: Any = None) -> None:
    """A SIGINT handler: ``interrupted`` on stderr, exit code 130, no clean-up to interrupt."""
    try:
        os.write(2, b"interrupted\n")
    finally:
        os._exit(EXIT_INTERRUPTED)


def quit_on_interrupt() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, exit_now)


def hold(event: str) -> None:
    """The test suite's hold point ``CSS_RS_TEST_HOLD=<event>:1`` (see css_rs.test_hooks),
    for the moments before the CLI's own hooks exist."""
    if os.environ.get("CSS_RS_TEST_HOLD") == f"{event}:1":
        print(f"[test-hold] {event} 1", file=sys.stderr, flush=True)
        while True:  # until the test's signal arrives
            time.sleep(3600)


if is_cli():
    quit_on_interrupt()
    hold("startup")
