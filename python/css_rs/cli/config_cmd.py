"""``css-rs config init|show``, and the command-line flags of every setting.

The flags are generated from ``TrainConfig``'s fields (``max_batches`` -> ``--max-batches``),
so a new setting gets its flag, help text and section without touching the CLI. Values are
taken as text and converted by ``css_rs.config.parse_text_value``, the same function as for
``CSS_RS_*`` variables, so a bad value gets ``TrainConfig``'s one-line message either way.
"""

from __future__ import annotations

import functools
import inspect
import os
import typing
from pathlib import Path
from typing import Any, Callable, Optional

import orjson
import typer

from css_rs.cli import app, fail, handle_errors
from css_rs.cli.command import Command
from css_rs.config import (
    AUTO,
    ResolvedConfig,
    TrainConfig,
    allowed_values,
    default_toml,
    flag_name,
    render_effective,
    resolve_config,
    setting_type,
)
from css_rs.files import atomic_write_bytes

DEFAULT_CONFIG_FILE = "css-rs.toml"
DEFAULTS = TrainConfig().to_dict()
_METAVARS = {int: "INTEGER", float: "NUMBER", str: "TEXT"}


def _shown(value: Any) -> str:
    """A default as typed on the command line."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _setting_parameter(name: str, section: str) -> inspect.Parameter:
    base, optional = setting_type(name)
    doc = TrainConfig.describe(name)
    help_text = (
        f"{doc[:1].upper()}{doc[1:]}. Allowed: {allowed_values(name)}. "
        f"Default: {_shown(DEFAULTS[name])}."
    )
    panel = f"{section.capitalize()} settings"
    if base is bool:
        flag = flag_name(name)
        option = typer.Option(
            None,
            f"{flag}/--no-{flag[2:]}",
            help=help_text,
            rich_help_panel=panel,
            show_default=False,
        )
        annotation: Any = Optional[bool]
    else:
        metavar = _METAVARS.get(base, "VALUE")
        metavar += ("|auto" if DEFAULTS.get(name) == AUTO else "") + ("|none" if optional else "")
        option = typer.Option(
            None,
            flag_name(name),
            metavar=metavar,
            help=help_text,
            rich_help_panel=panel,
            show_default=False,
        )
        annotation = Optional[str]
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation
    )


def setting_parameters() -> list[inspect.Parameter]:
    """One keyword-only parameter (a typer option) per ``TrainConfig`` field."""
    return [
        _setting_parameter(name, section)
        for section, names in TrainConfig.sections().items()
        for name in names
    ]


def with_setting_options(command: Callable[..., None]) -> Callable[..., None]:
    """Adds a flag per setting to a typer command.

    ``command`` takes its own parameters plus ``settings``: the ``{name: value}`` mapping of
    the setting flags (``None`` for a flag not given). typer reads the wrapper's signature.
    """
    # Annotations are strings here (``from __future__ import annotations``); typer needs types.
    hints = typing.get_type_hints(command)
    names = set(TrainConfig.field_names())
    own_params = [
        p.replace(annotation=hints.get(p.name, p.annotation))
        for p in inspect.signature(command).parameters.values()
        if p.name != "settings"
    ]
    clash = names & {p.name for p in own_params}
    if clash:
        raise RuntimeError(f"command parameters shadow settings: {sorted(clash)}")

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> None:
        settings = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
        command(settings=settings, **kwargs)

    params = own_params + setting_parameters()
    wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    del wrapper.__wrapped__  # typer must see the generated signature, not the original
    return wrapper


def resolve_from_cli(config_file: Optional[Path], settings: dict[str, Any]) -> ResolvedConfig:
    """The settings of a command: ``--config FILE``, else ``$CSS_RS_CONFIG``, else
    ``./css-rs.toml`` when there is one (what ``css-rs config init`` writes)."""
    if config_file is None and not os.environ.get("CSS_RS_CONFIG"):
        local = Path(DEFAULT_CONFIG_FILE)
        config_file = local if local.is_file() else None
    return resolve_config(None if config_file is None else str(config_file), settings)


CONFIG_FILE_OPTION = typer.Option(
    None,
    "--config",
    metavar="FILE",
    help=f"TOML settings file (default: $CSS_RS_CONFIG, else ./{DEFAULT_CONFIG_FILE} if present).",
    dir_okay=False,
)

config_app = typer.Typer(
    help="Write a commented settings file, or show the effective settings.",
    no_args_is_help=True,
)
app.add_typer(config_app, name="config")


@config_app.command("init", cls=Command)
def config_init(
    path: Path = typer.Argument(Path(DEFAULT_CONFIG_FILE), help="File to write."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write a commented default configuration file (every setting, its doc and allowed values)."""
    with handle_errors():
        if path.exists() and not force:
            fail(f"{path} already exists; use --force to overwrite it")
        if path.is_dir():
            fail(f"{path} is a folder")
        atomic_write_bytes(path, default_toml().encode("utf-8"))
        then = (
            "css-rs train" if path == Path(DEFAULT_CONFIG_FILE) else f"css-rs train --config {path}"
        )
        typer.echo(f"Wrote {path}: edit it, then run `{then}`")


@with_setting_options
def config_show(
    config_file: Optional[Path] = CONFIG_FILE_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    *,
    settings: dict[str, Any],
) -> None:
    """Print the effective settings and where each value came from (default, file, env, flag)."""
    with handle_errors():
        resolved = resolve_from_cli(config_file, settings)
        if as_json:
            doc = {
                name: {"value": getattr(resolved.config, name), "origin": origin}
                for name, origin in resolved.origins.items()
            }
            typer.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
        else:
            typer.echo(render_effective(resolved), nl=False)


config_app.command("show", cls=Command)(config_show)
