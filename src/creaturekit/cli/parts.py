"""``creaturekit parts``: list the discovered parts and name them."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from creaturekit.cli.common import (
    JsonOpt,
    ProjectOpt,
    QuietOpt,
    State,
    console,
    handle_errors,
    open_cli_project,
    print_json,
)

parts_app = typer.Typer(help="List and name the discovered parts.", no_args_is_help=False)


def register(app: typer.Typer) -> None:
    app.add_typer(parts_app, name="parts")


@parts_app.callback(invoke_without_command=True)
@handle_errors
def list_parts(
    ctx: typer.Context,
    project: ProjectOpt = None,
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """List parts with their names, sizes and sub-concept counts."""
    if ctx.invoked_subcommand is not None:
        State.project = project  # `parts -C DIR name ...`: the sub-command works on DIR
        return
    from creaturekit.discovery.discover import load_result
    from creaturekit.discovery.naming import part_table

    proj = open_cli_project(project)
    table = part_table(proj, load_result(proj))
    if json_output:
        print_json(table)
        return
    if quiet:
        return
    out = Table("index", "name", "coverage", "present in", "sub-concepts", title="Parts")
    for p in table:
        out.add_row(
            str(p["index"]),
            p["name"],
            f"{p['coverage']:.1%}",
            f"{p['presence']:.0%}",
            str(p["subconcepts"]),
        )
    console.print(out)


@parts_app.command("name")
@handle_errors
def name_part(
    index: Annotated[int, typer.Argument(help="Part index (see `creaturekit parts`).")],
    name: Annotated[str, typer.Argument(help="New name: one word, e.g. head.")],
    project: ProjectOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Name a part (stored in creaturekit.toml; `mix --NAME CODE` uses it)."""
    from creaturekit.discovery import naming

    naming.name_part(open_cli_project(project), index, name)
    if not quiet:
        console.print(f"Part {index} is now [bold]{name}[/].")


@parts_app.command("auto-name")
@handle_errors
def auto_name(project: ProjectOpt = None, quiet: QuietOpt = False) -> None:
    """Name parts after their majority keypoint (CUB's annotations or the toy world's)."""
    from creaturekit.discovery.discover import load_result
    from creaturekit.discovery.naming import name_parts_by_keypoints

    proj = open_cli_project(project)
    names = name_parts_by_keypoints(proj, load_result(proj))
    if not names:
        console.print("No keypoints in this project (CUB or toy only); nothing was named.")
        return
    if not quiet:
        console.print(", ".join(f"{i} -> {n}" for i, n in names.items()))
