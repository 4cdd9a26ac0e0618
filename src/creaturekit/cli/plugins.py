"""``creaturekit plugins``: the installed discovery backends."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from creaturekit.cli.common import JsonOpt, QuietOpt, console, fail, handle_errors, print_json
from creaturekit.discovery.registry import check_backends


def register(app: typer.Typer) -> None:
    app.command("plugins")(handle_errors(plugins))


def plugins(
    options: Annotated[
        str | None,
        typer.Option(
            "--options",
            metavar="NAME",
            help="List the options of backend NAME with their defaults (set them in "
            "[discover] / [discover.options] or with `discover --option KEY=VALUE`).",
        ),
    ] = None,
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """List discovery backends with their package, version and whether they load."""
    if options is not None:
        _options(options, quiet, json_output)
        return
    rows = check_backends()
    if json_output:
        print_json(
            [
                {
                    "name": b.name,
                    "distribution": b.distribution,
                    "version": b.version,
                    "builtin": b.builtin,
                    "target": b.target,
                    "error": error,
                }
                for b, error in rows
            ]
        )
        return
    if quiet:
        return
    table = Table("backend", "package", "version", "source", "status", title="Discovery backends")
    for b, error in rows:
        status = "[green]ok[/]" if error is None else f"[red]broken:[/] {error}"
        table.add_row(
            b.name, b.distribution, b.version, "built in" if b.builtin else "plugin", status
        )
    console.print(table if rows else "No discovery backends are installed.")


def _options(name: str, quiet: bool, json_output: bool) -> None:
    from creaturekit.discovery.base import Discoverer
    from creaturekit.discovery.registry import load_backend

    cls = load_backend(name)
    if not (isinstance(cls, type) and issubclass(cls, Discoverer)):
        raise fail(f"The backend {name!r} is not a creaturekit Discoverer.")
    defaults = cls.option_defaults()
    if json_output:
        print_json(defaults)
        return
    if quiet:
        return
    table = Table("option", "default", title=f"Options of {name}")
    for key, value in defaults.items():
        table.add_row(key, repr(value))
    console.print(table)
