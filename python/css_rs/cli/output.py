"""What the query commands print: tables, bars, sizes, JSON, and the MODEL argument and
``--json`` option they share."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from typing import Any

import typer

MODEL_ARGUMENT = typer.Argument(
    ...,
    metavar="MODEL",
    help="Model file; left out: the one css-rs train writes (./models/css_model.json unless "
    "css-rs.toml or CSS_RS_MODEL_PATH say otherwise).",
    show_default=False,
)
JSON_OPTION = typer.Option(False, "--json", help="Print machine-readable JSON on stdout.")


def _jsonable(value: Any) -> Any:
    """Replaces NaN and infinities (not valid JSON) by null, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def emit_json(value: Any) -> None:
    typer.echo(json.dumps(_jsonable(value), ensure_ascii=False, allow_nan=False))


def _is_number(text: str) -> bool:
    try:
        float(text.rstrip("%").replace(",", ""))
    except ValueError:
        return False
    return True


def print_table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], *, indent: str = "  "
) -> None:
    """Plain aligned columns: numeric columns right-aligned, text left-aligned, the last
    column unpadded (it may be a long list of words)."""
    cells = [[str(c) for c in row] for row in rows]
    numeric = [bool(cells) and all(_is_number(r[i]) for r in cells) for i in range(len(headers))]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        out = []
        for i, v in enumerate(values):
            if numeric[i]:
                out.append(v.rjust(widths[i]))
            else:
                out.append(v if i == len(values) - 1 else v.ljust(widths[i]))
        return indent + "  ".join(out).rstrip()

    typer.echo(line(headers))
    for row in cells:
        typer.echo(line(row))


def _bar_char() -> str:
    try:
        "█".encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return "#"
    return "█"


def bar(fraction: float, width: int = 30) -> str:
    return _bar_char() * max(0, round(fraction * width))


def format_size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
