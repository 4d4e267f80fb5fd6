"""``css-rs train``: the guide's four phases, configured by defaults < TOML < env < flags."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from css_rs.cli import app, handle_errors
from css_rs.cli.command import Command
from css_rs.cli.config_cmd import CONFIG_FILE_OPTION, resolve_from_cli, with_setting_options
from css_rs.pipeline import TrainingRun
from css_rs.reporter import Reporter
from css_rs.test_hooks import TestHooks


def resume_command(argv: list[str]) -> str:
    """The command that resumes this run: the same arguments, without ``--fresh``."""
    args = [a for a in argv if a != "--fresh"]
    return shlex.join(["css-rs", *args])


@with_setting_options
def train(
    config_file: Optional[Path] = CONFIG_FILE_OPTION,
    fresh: bool = typer.Option(
        False, "--fresh", help="Ignore and delete an existing checkpoint; start over."
    ),
    force: bool = typer.Option(
        False, "--force", help="Resume even when the checkpoint was made with other settings."
    ),
    *,
    settings: dict[str, Any],
) -> None:
    """Stream documents, build the vocabulary, train, save the model (with checkpoints).

    Settings: defaults < --config FILE < CSS_RS_<NAME> variables < flags.

    An interrupted run (Ctrl+C, crash, power cut) resumes from its last checkpoint.
    """
    with handle_errors():
        resolved = resolve_from_cli(config_file, settings)
        if resolved.config.engine != "local":
            # Only here is css_rs.distributed (and through it Ray) imported.
            from css_rs.distributed.run import DistributedRun

            DistributedRun(
                resolved,
                Reporter(),
                fresh=fresh,
                resume_command=resume_command(sys.argv[1:]),
                hooks=TestHooks.from_env(os.environ),
            ).run()
            return
        run = TrainingRun(
            resolved,
            Reporter(),
            fresh=fresh,
            force=force,
            resume_command=resume_command(sys.argv[1:]),
            hooks=TestHooks.from_env(os.environ),
        )
        run.run()


app.command("train", cls=Command)(train)
