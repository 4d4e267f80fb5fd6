"""Exceptions with one-line messages meant for users.

The CLI maps them to exit codes in one place (``css_rs.cli.handle_errors``): ``InputError``
(bad file, field or value) exits 2, any other ``CssRsError`` exits 1.
"""

from __future__ import annotations


class CssRsError(Exception):
    """A failure css-rs can explain in one line (exit code 1 on the command line)."""


class InputError(CssRsError, ValueError):
    """Bad input or usage: names the file, field or value and what is allowed (exit code 2)."""
