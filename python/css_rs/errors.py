"""Exceptions with one-line messages meant for users.

The classes are made once, by the Rust extension (``rust/bindings/errors.rs``), so an error of
the engine reaches Python already typed; this module is their home. The CLI maps them to exit
codes in one place (``css_rs.cli.handle_errors``): ``InputError`` (bad file, field or value)
exits 2, any other ``CssRsError`` exits 1.

- ``CssRsError(Exception)``: a failure css-rs can explain in one line.
- ``InputError(CssRsError, ValueError)``: bad input or usage, naming the file, field or value
  and what is allowed.
- ``NotReadyError(CssRsError, RuntimeError)``: an operation that needs something not made yet
  (e.g. encoding with a vocabulary that is not built).
- ``MissingDependencyError(CssRsError)``: an optional dependency (an extra) is not installed;
  made here, as it is raised by Python code only.
"""

from __future__ import annotations

from css_rs._core import CssRsError, InputError, NotReadyError

__all__ = ["CssRsError", "InputError", "MissingDependencyError", "NotReadyError"]


class MissingDependencyError(CssRsError):
    """An optional dependency (an extra) is not installed."""
