"""``creaturekit plugins``: the installed discovery backends."""

from __future__ import annotations

import typer
from rich.table import Table

from creaturekit.cli.common import JsonOpt, QuietOpt, console, handle_errors, print_json
from creaturekit.discovery.registry import check_backends


def register(app: typer.Typer) -> None:
    app.command("plugins")(handle_errors(plugins))


def plugins(quiet: QuietOpt = False, json_output: JsonOpt = False) -> None:
    """List discovery backends with their package, version and whether they load."""
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
