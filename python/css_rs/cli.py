"""The ``css-rs`` command line (typer)."""

from __future__ import annotations

from typing import Optional

import typer

from css_rs import __version__

app = typer.Typer(
    name="css-rs",
    help="Compressive Semantic Spectroscopy: train and explore sparse spectral word embeddings.",
    no_args_is_help=True,
    add_completion=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"css-rs {__version__}")
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
) -> None:
    """Compressive Semantic Spectroscopy."""


def main() -> None:
    app()
