"""How ``--help`` reads: plain text that fits 80 columns, as argparse and click print it.

typer's own rendering (0.29) writes required arguments as ``{MODEL}``, types as ``<int
range>`` and a box per section whose option column grows with the longest flag; this class
keeps click's plain layout and adds back what the boxes gave: arguments with their help, and
the ``train`` settings grouped by section.
"""

from __future__ import annotations

from typing import Any

import typer.core


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
