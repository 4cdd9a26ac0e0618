"""The ``creaturekit`` command: one Typer app joined from one module per command."""

from __future__ import annotations

from typing import Annotated

import typer

from creaturekit import __version__
from creaturekit.cli import demo, discover, eval, export, fit, info, init, mix, parts, plugins
from creaturekit.cli.common import State

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
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    State.debug = State.debug or debug


for module in (init, discover, fit, mix, eval, export, parts, info, plugins, demo):
    module.register(app)


def main() -> None:
    """Console-script entry point."""
    app()
