"""``creaturekit export`` / ``import-run``: a run for other Stable Diffusion tools, and back."""

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
    app.command("import-run")(handle_errors(import_run))


ModelOpt = Annotated[
    str | None,
    typer.Option(
        help="The run's base model (hub id or folder), where its own is not here; read "
        "only for an SDXL run's a1111 export (its UNet config names the LoRA's modules)."
    ),
]


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
    name_template: Annotated[
        str,
        typer.Option(
            help="Token names: {run}, {part} and {code} (e.g. {part}-{code:03d}); letters, "
            "digits, '_' and '-' only, as the UIs type them.",
        ),
    ] = "{run}_{part}_{code}",
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Write into a non-empty folder that is not an export, beside its files "
            "(files with the export's names are replaced).",
        ),
    ] = False,
    model: ModelOpt = None,
    project: ProjectOpt = None,
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Write the LoRA and one textual-inversion embedding per (part, code)."""
    from creaturekit.generation.export import export_run

    folder = export_run(
        open_cli_project(project),
        fmt,
        run,
        out,
        force=force,
        name_template=name_template,
        model=model,
    )
    if json_output:
        print_json({"folder": str(folder), "format": fmt})
    elif not quiet:
        console.print(f"[bold green]Exported[/] ({fmt}) -> {folder}; see its README.md")


def import_run(
    source: Annotated[Path, typer.Argument(help="The folder `creaturekit export` wrote.")],
    run: Annotated[
        str | None, typer.Option(help="Name of the new run (default: the exported run's).")
    ] = None,
    model: ModelOpt = None,
    project: ProjectOpt = None,
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Make an export (diffusers or a1111) a run of this project again, for mix and eval."""
    from creaturekit.generation.import_run import import_run as import_export

    folder = import_export(open_cli_project(project), source, run, model)
    if json_output:
        print_json({"run": folder.name, "folder": str(folder)})
    elif not quiet:
        console.print(f"[bold green]Imported[/] {source} -> {folder}; mix with --run {folder.name}")
