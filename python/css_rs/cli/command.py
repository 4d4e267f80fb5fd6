"""The commands' click class: how ``--help`` reads, and a MODEL argument that may be left out.

Help is plain text that fits 80 columns, as argparse and click print it. typer's own rendering
(0.29) writes required arguments as ``{MODEL}``, types as ``<int range>`` and a box per section
whose option column grows with the longest flag; ``Command`` keeps click's plain layout and
adds back what the boxes gave: arguments with their help, and ``train``'s settings grouped by
section.

``ModelCommand`` (the query commands) takes the model ``css-rs train`` writes when MODEL is
left out, so that ``css-rs train`` then ``css-rs similar bank`` just works.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

import typer.core

# What the tokenizer keeps as a word: letters, digits and "_" (no ".", "/" or "-").
_WORD_LIKE = re.compile(r"^\w+$")


def _argument_name(param: Any) -> str:
    name = param.metavar or param.name.upper()
    name = name if param.required else f"[{name}]"
    return f"{name}..." if param.nargs != 1 else name


class Command(typer.core.TyperCommand):
    """A command whose usage line reads ``MODEL [WORD]`` and whose options come in sections."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                pieces.append(_argument_name(param))
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        arguments = [
            (param.metavar or str(param.name).upper(), getattr(param, "help", None) or "")
            for param in self.get_params(ctx)
            if param.param_type_name == "argument" and not getattr(param, "hidden", False)
        ]
        sections: dict[str, list[tuple[str, str]]] = {"Options": []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx) if param.param_type_name == "option" else None
            if record is not None:
                panel = getattr(param, "rich_help_panel", None) or "Options"
                sections.setdefault(panel, []).append(record)
        if arguments:
            with formatter.section("Arguments"):
                formatter.write_dl(arguments)
        for title, records in sections.items():
            if records:
                with formatter.section(title):
                    formatter.write_dl(records)


def default_model_path() -> str:
    """The model ``css-rs train`` writes here: ``model_path`` from ``--config``'s sources
    (``$CSS_RS_CONFIG`` or ``./css-rs.toml``, ``CSS_RS_MODEL_PATH``), else the default."""
    from css_rs.cli.config_cmd import resolve_from_cli  # imports this module

    return resolve_from_cli(None, {}).config.model_path


class ModelCommand(Command):
    """A query command whose first argument is MODEL, which may be left out.

    MODEL is taken as left out when the command got fewer arguments than it requires, or when
    its first argument could be a word or a number (letters, digits and ``_`` only, as every
    vocabulary word) and no file of that name exists: ``similar bank``, ``polysemy bank``,
    ``modes 6`` and ``info`` read the model ``train`` writes; ``polysemy m.json`` reads m.json.
    """

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = super().collect_usage_pieces(ctx)
        return [f"[{p}]" if p == "MODEL" else p for p in pieces]

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        at = self._where_model_is_missing(ctx, args)
        if at is not None:
            args = [*args[:at], default_model_path(), *args[at:]]
        return super().parse_args(ctx, args)

    def _where_model_is_missing(self, ctx: Any, args: list[str]) -> Optional[int]:
        """The index at which to insert the default MODEL, or None when MODEL was given."""
        if "--help" in args:  # help needs no model, nor the settings that name it
            return None
        positions = self._positional_indices(ctx, args)
        required = sum(
            1 for p in self.get_params(ctx) if p.param_type_name == "argument" and p.required
        )
        insert_at = positions[0] if positions else len(args)
        if len(positions) < required:
            return insert_at
        first = args[positions[0]] if positions else None
        if first is not None and _WORD_LIKE.match(first) and not Path(first).exists():
            return insert_at
        return None

    def _positional_indices(self, ctx: Any, args: list[str]) -> list[int]:
        """Where the arguments are among ``args``: every token that is not an option or an
        option's value (``--`` ends the options)."""
        takes_value = {}
        for p in self.get_params(ctx):
            if p.param_type_name == "option":
                for name in [*p.opts, *p.secondary_opts]:
                    takes_value[name] = not (
                        getattr(p, "is_flag", False) or getattr(p, "count", False)
                    )
        found: list[int] = []
        i = 0
        while i < len(args):
            token = args[i]
            if token == "--":
                return found + list(range(i + 1, len(args)))
            if token.startswith("-") and len(token) > 1 and not _is_number(token):
                name = token.split("=", 1)[0] if token.startswith("--") else token[:2]
                bare = name == token  # the value is the next token, not glued on
                if takes_value.get(name, False) and bare:
                    i += 1
            else:
                found.append(i)
            i += 1
        return found


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True
