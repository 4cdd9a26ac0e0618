"""``creaturekit export``: a run's LoRA and part vocabulary for other Stable Diffusion tools."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from creaturekit.cli.common import (
    JsonOpt,
    ProjectOpt,
    QuietOpt,
    console,
    handle_errors,
    open_cli_project,
    print_json,
)


def register(app: typer.Typer) -> None:
    app.command("export")(handle_errors(export))


def export(
    fmt: Annotated[
        str, typer.Option("--format", help="diffusers or a1111 (kohya LoRA keys, A1111/ComfyUI).")
    ] = "diffusers",
    run: Annotated[str | None, typer.Option(help="Run name (default: the latest).")] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Output folder: new, empty or a previous export (default: "
            "runs/<run>/export-<format>)."
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Write into a non-empty folder that is not an export, beside its files "
            "(files with the export's names are replaced).",
        ),
    ] = False,
    project: ProjectOpt = None,
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Write the LoRA and one textual-inversion embedding per (part, code)."""
    from creaturekit.generation.export import export_run

    folder = export_run(open_cli_project(project), fmt, run, out, force=force)
    if json_output:
        print_json({"folder": str(folder), "format": fmt})
    elif not quiet:
        console.print(f"[bold green]Exported[/] ({fmt}) -> {folder}; see its README.md")
