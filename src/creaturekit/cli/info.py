"""``creaturekit info``: what a project holds."""

from __future__ import annotations

import typer
from rich.table import Table

from creaturekit.cli.common import (
    JsonOpt,
    ProjectOpt,
    QuietOpt,
    console,
    handle_errors,
    open_cli_project,
    print_json,
)
from creaturekit.summary import project_summary


def register(app: typer.Typer) -> None:
    app.command("info")(handle_errors(info))


def info(project: ProjectOpt = None, quiet: QuietOpt = False, json_output: JsonOpt = False) -> None:
    """Show what the project holds: images, discovered parts, runs and last metrics."""
    summary = project_summary(open_cli_project(project))
    if json_output:
        print_json(summary)
        return
    if quiet:
        return
    console.print(f"[bold]{summary['name']}[/] ({summary['category']})  {summary['root']}")
    images = summary["images"]
    by_split = ", ".join(f"{k} {v}" for k, v in images["by_split"].items()) or "none"
    console.print(f"Images: {images['total']} ({by_split}); labels: {images['labelled']}")
    parts = summary["parts"]
    if parts is None:
        console.print("Parts: not discovered yet (run `creaturekit discover`).")
    else:
        table = Table("index", "name", "sub-concepts", title="Parts")
        for p in parts:
            table.add_row(str(p["index"]), p["name"], str(p.get("subconcepts", "?")))
        console.print(table)
    console.print("Runs: " + (", ".join(summary["runs"]) or "none yet"))
    if summary["metrics"]:
        m = summary["metrics"]
        console.print(
            f"Last metrics ({m['run']}): "
            + ", ".join(
                f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                for k, v in m["values"].items()
            )
        )
