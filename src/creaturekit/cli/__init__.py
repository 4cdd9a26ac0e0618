"""The ``creaturekit`` command: one Typer app joined from one module per command."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from creaturekit.cli import (
    demo,
    discover,
    eval,
    export,
    fit,
    info,
    init,
    mix,
    parts,
    plugins,
    studio,
)
from creaturekit.cli.common import State
from creaturekit.version import __version__

app = typer.Typer(
    name="creaturekit",
    help="Invent new creatures from parts of real ones: discover parts, fit part tokens, mix.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"creaturekit {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    directory: Annotated[
        Path | None,
        typer.Option(
            "-C",
            help="Run as if creaturekit was started in this folder (as git -C does).",
            show_default=False,
        ),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    State.debug = State.debug or debug
    State.project = None
    if directory is not None:
        _change_directory(ctx, directory)


def _change_directory(ctx: typer.Context, directory: Path) -> None:
    """``creaturekit -C DIR CMD``: work in DIR for this command, then return."""
    if not directory.expanduser().is_dir():
        raise typer.BadParameter(f"{directory} is not a folder.", param_hint="-C")
    previous = Path.cwd()
    os.chdir(directory.expanduser())
    ctx.call_on_close(lambda: os.chdir(previous))


for module in (init, discover, fit, mix, eval, export, parts, info, plugins, demo, studio):
    module.register(app)


def main() -> None:
    """Console-script entry point."""
    app()
