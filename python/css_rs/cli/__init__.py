"""The ``css-rs`` command line (typer). Commands live in one module per concern; this module
owns the app, the version flag and the mapping of errors to exit codes."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from typing import Any, NoReturn, Optional

import typer

from css_rs import __version__, _startup
from css_rs._core import kernels
from css_rs.errors import CssRsError, InputError
from css_rs.redaction import redact
from css_rs.reporter import silence_stdout

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
# As a Unix tool killed by SIGPIPE (128 + 13): the reader of our output went away.
EXIT_BROKEN_PIPE = 141

app = typer.Typer(
    name="css-rs",
    help="Compressive Semantic Spectroscopy: train and explore sparse spectral word embeddings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

_state = {"debug": False}


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"css-rs {__version__} (training kernels: {kernels()})")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(
        None,
        "--version",
        callback=_version_callback,
        is_eager=True,
        help="Print the version and exit.",
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
) -> None:
    """Compressive Semantic Spectroscopy."""
    _state["debug"] = debug


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Prints a one-line error to stderr (secrets cut out) and exits with ``code``."""
    typer.echo(f"error: {redact(message)}", err=True)
    raise typer.Exit(code)


def print_traceback(error: BaseException) -> None:
    """The traceback of ``error`` on stderr as Python prints it, with secrets cut out."""
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    sys.stderr.write(redact(text))
    sys.stderr.flush()


def _debug_exit(error: BaseException, code: int) -> NoReturn:
    """``--debug``: the redacted traceback, then the usual exit code."""
    print_traceback(error)
    raise typer.Exit(code)


@contextlib.contextmanager
def handle_errors() -> Iterator[None]:
    """Maps exceptions to one-line messages and exit codes (2 bad input, 1 failure, 130 ^C)."""
    try:
        yield
    except typer.Exit:
        raise
    except BrokenPipeError:
        _silence_stdout()
        raise typer.Exit(EXIT_BROKEN_PIPE) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except (InputError, ValueError, FileNotFoundError, IsADirectoryError, PermissionError) as e:
        if _state["debug"]:
            _debug_exit(e, EXIT_USAGE)
        fail(_one_line(e), EXIT_USAGE)
    except (CssRsError, OSError) as e:
        if _state["debug"]:
            _debug_exit(e, EXIT_FAILURE)
        fail(_one_line(e), EXIT_FAILURE)


def _silence_stdout() -> None:
    """Points stdout at /dev/null so that flushing it at exit cannot fail again."""
    silence_stdout()


def _one_line(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    if isinstance(e, OSError) and e.filename and str(e.filename) not in text:
        text = f"{e.filename}: {text}"
    return " ".join(text.split())


def _redacting_hooks() -> None:
    """Tracebacks Python prints by itself (an exception in a thread, one ignored during
    clean-up) go through ``redact`` too."""

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None and not isinstance(args.exc_value, SystemExit):
            sys.stderr.write(f"Exception in thread {getattr(args.thread, 'name', '?')}:\n")
            print_traceback(args.exc_value)

    def unraisable_hook(unraisable: Any) -> None:
        error = unraisable.exc_value
        sys.stderr.write(redact(f"{unraisable.err_msg or 'Exception ignored'}: "))
        sys.stderr.write(redact(f"{unraisable.object!r}\n"))
        if error is not None:
            print_traceback(error)

    threading.excepthook = thread_hook
    sys.unraisablehook = unraisable_hook


def main() -> None:
    _redacting_hooks()
    if threading.current_thread() is threading.main_thread():
        # From here on Ctrl+C is a KeyboardInterrupt that each command handles (checkpoint,
        # exit code 130); before, during start-up, it quit at once (css_rs._startup).
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _run_app()
    finally:
        # Shutting down (atexit callbacks, threads joining): Ctrl+C quits at once, quietly.
        _startup.quit_on_interrupt()
        _startup.hold("exit")


def _run_app() -> None:
    try:
        # Not standalone: a usage error comes back here, to be one line (not a 5-line box).
        code = app(standalone_mode=False)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(EXIT_BROKEN_PIPE)
    except CssRsError as e:
        # Raised while the arguments are parsed, before a command's handle_errors: a MODEL left
        # out is read from the settings, which may be wrong. The same line and exit code.
        typer.echo(f"error: {redact(_one_line(e))}", err=True)
        sys.exit(EXIT_USAGE if isinstance(e, InputError) else EXIT_FAILURE)
    except Exception as e:
        if type(e).__name__ == "Abort":  # click's Ctrl+C / end of input at a prompt
            typer.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        if hasattr(e, "format_message") and isinstance(getattr(e, "exit_code", None), int):
            _usage_error(e)
        print_traceback(e)  # a bug: its traceback, without secrets, and exit code 1
        sys.exit(EXIT_FAILURE)
    sys.exit(code if isinstance(code, int) else EXIT_OK)


def _usage_error(error: Any) -> NoReturn:
    """A click usage error (unknown option, missing argument, bad value) as one line, with
    where to find help; ``css-rs`` without a command has already printed its help."""
    if type(error).__name__ != "NoArgsIsHelpError":
        ctx = getattr(error, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        text = " ".join(str(error.format_message()).split())
        typer.echo(f"error: {redact(text)}{hint}", err=True)
    sys.exit(int(error.exit_code))


# Commands register themselves on the app when imported (train, config init|show).
from css_rs.cli import config_cmd, train  # noqa: E402, F401
from css_rs.cli import info as _info  # noqa: E402, F401
from css_rs.cli import query as _query  # noqa: E402, F401  (the query commands)
