"""``creaturekit init``: create a portable project folder and import images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from creaturekit.cli.common import JsonOpt, QuietOpt, console, fail, handle_errors, print_json
from creaturekit.images import ImportReport
from creaturekit.project import init_project
from creaturekit.toy.dataset import DEFAULT_SIZE, create_toy_project

EXAMPLES = ("toy",)


def register(app: typer.Typer) -> None:
    app.command("init")(handle_errors(init))


def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the project in.")],
    images: Annotated[
        Path | None,
        typer.Option(
            "--images",
            "-i",
            help="Images to import: any folder (recursive), CUB-200-2011 or Stanford Dogs.",
        ),
    ] = None,
    link: Annotated[
        bool,
        typer.Option(
            "--link/--copy",
            help="Symlink images instead of copying them (saves disk; the project then "
            "depends on the source staying where it is).",
        ),
    ] = False,
    name: Annotated[str | None, typer.Option(help="Project name (default: folder name).")] = None,
    split: Annotated[
        str, typer.Option(help="Which split of a data set to import: all, train or test.")
    ] = "all",
    force: Annotated[
        bool, typer.Option("--force", help="Add images to an existing project (settings kept).")
    ] = False,
    example: Annotated[
        str | None,
        typer.Option(
            help="Create a ready example project instead of importing images: "
            "toy (drawn creatures with ground truth, offline; see docs/toy-world.md)."
        ),
    ] = None,
    species: Annotated[int, typer.Option(help="Toy species.", rich_help_panel="Toy example")] = 24,
    per_species: Annotated[
        int, typer.Option(help="Toy images per species.", rich_help_panel="Toy example")
    ] = 40,
    size: Annotated[
        int, typer.Option(help="Toy image side in pixels.", rich_help_panel="Toy example")
    ] = DEFAULT_SIZE,
    seed: Annotated[int, typer.Option(help="Toy world seed.", rich_help_panel="Toy example")] = 0,
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Create a project folder (creaturekit.toml + images/) and import images."""
    if split not in ("all", "train", "test"):
        raise typer.BadParameter("must be all, train or test", param_hint="--split")
    if example is not None:
        _check_example(example, images)
        project = create_toy_project(
            directory,
            species=species,
            per_species=per_species,
            size=size,
            seed=seed,
            name=name,
            force=force,
        )
    else:
        project = init_project(
            directory, images=images, link=link, name=name, force=force, split=split
        )
    report = project.last_import() if images is not None else None
    n = len(project.manifest())
    if json_output:
        print_json(
            {
                "project": str(project.root),
                "images": n,
                "import": report.to_dict() if report else None,
            }
        )
        return
    if quiet:
        return
    console.print(f"[bold green]Project[/] {project.root}  ({n} images)")
    if report is not None:
        _print_report(report)
    console.print("Next: [bold]creaturekit discover[/] inside the folder (or with -C).")


def _check_example(example: str, images: Path | None) -> None:
    if example not in EXAMPLES:
        raise fail(f"Unknown example {example!r}; valid examples: {', '.join(EXAMPLES)}.")
    if images is not None:
        raise fail("Use either --example or --images, not both.")


def _print_report(report: ImportReport) -> None:
    table = Table(title=f"Import from {report.source} ({report.kind})", show_header=False)
    table.add_row("added", str(report.added))
    table.add_row("already in the project", str(report.already_present))
    table.add_row("converted", str(len(report.converted)))
    table.add_row("skipped", str(len(report.skipped)))
    if report.keypoints:
        table.add_row("images with keypoints", str(report.keypoints))
    console.print(table)
    for file, reason in report.skipped[:10]:
        console.print(f"  [yellow]skipped[/] {file}: {reason}", highlight=False)
    if len(report.skipped) > 10:
        console.print(f"  ... and {len(report.skipped) - 10} more (images/import-report.json)")
