"""``creaturekit discover``: stage 1, unsupervised parts and sub-concepts."""

from __future__ import annotations

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
    app.command("discover")(handle_errors(discover))


def discover(
    backend: Annotated[
        str | None, typer.Option(help="Discovery backend (see `creaturekit plugins`).")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Feature backbone: hub id or local folder.")
    ] = None,
    pretrained: Annotated[
        str | None,
        typer.Option(help="Weights tag or file, for backends that take one (clip-kmeans)."),
    ] = None,
    parts: Annotated[int | None, typer.Option(help="Foreground parts M.", min=1)] = None,
    subconcepts: Annotated[
        int | None, typer.Option(help="Sub-concepts K per part (capped for small sets).", min=1)
    ] = None,
    bg_subconcepts: Annotated[
        int | None, typer.Option(help="Sub-concepts of the background.", min=1)
    ] = None,
    image_size: Annotated[int | None, typer.Option(help="Backbone input size (px).", min=8)] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per batch.", min=1)] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the clusterings.")] = None,
    device: Annotated[
        str | None, typer.Option(help="auto, cpu, cuda or mps (default auto).")
    ] = None,
    report: Annotated[
        bool, typer.Option("--report/--no-report", help="Write discovery/report.html.")
    ] = True,
    project: ProjectOpt = None,
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Find parts and sub-concepts in ALL the project's images (defaults: [discover] settings)."""
    from creaturekit.discovery.discover import discover as run
    from creaturekit.discovery.naming import part_table

    proj = open_cli_project(project)
    options = {
        "model": model,
        "pretrained": pretrained,
        "parts": parts,
        "subconcepts": subconcepts,
        "bg_subconcepts": bg_subconcepts,
        "image_size": image_size,
        "batch_size": batch_size,
        "seed": seed,
        "device": device,
    }
    result = run(proj, backend, report=report, **options)
    table = part_table(proj, result)
    if json_output:
        print_json({**result.summary(), "parts": table})
        return
    if quiet:
        return
    console.print(
        f"[bold green]Discovered[/] {len(table) - 1} parts + background in {len(result.codes)} "
        f"images with {result.backend} ({result.timing['features_s']:.1f} s features, "
        f"{result.timing['clustering_s']:.1f} s clustering)."
    )
    for note in result.notes:
        console.print(f"  [yellow]note[/] {note}", highlight=False)
    if report:
        console.print(f"Report: {proj.discovery_dir / 'report.html'}")
    console.print("Name parts with [bold]creaturekit parts name INDEX NAME[/].")
