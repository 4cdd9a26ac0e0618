"""``creaturekit eval``: EMR and CoSim of a run on seen and novel part combinations."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from creaturekit.cli.common import JsonOpt, ProjectOpt, QuietOpt, console, handle_errors, print_json
from creaturekit.project import Project, open_project


def register(app: typer.Typer) -> None:
    app.command("eval")(handle_errors(evaluate))


def evaluate(
    compare: Annotated[
        list[str] | None,
        typer.Option(help="Show these evaluated runs side by side (give it twice or more)."),
    ] = None,
    run: Annotated[str | None, typer.Option(help="Run name (default: the latest).")] = None,
    combinations: Annotated[
        int | None, typer.Option(help="Combinations per group (seen, novel).", min=1)
    ] = None,
    n: Annotated[int | None, typer.Option("--n", help="Images per combination.", min=1)] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the draws and generation.")] = None,
    steps: Annotated[int | None, typer.Option(help="Denoising steps.", min=1)] = None,
    size: Annotated[int | None, typer.Option(help="Image side (default: the run's).")] = None,
    project: ProjectOpt = None,
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Generate requested combinations, re-code them with the discovery centroids, score."""
    from creaturekit.evaluation.stage import evaluate as run_eval

    proj = open_project(project)
    if compare:
        _compare(proj, compare, quiet, json_output)
        return
    metrics = run_eval(
        proj, run, combinations=combinations, per_combination=n, seed=seed, steps=steps, size=size
    )
    if json_output:
        print_json(
            {k: v for k, v in metrics.items() if k not in ("seen", "novel")}
            | {g: {k: v for k, v in metrics[g].items() if k != "images"} for g in ("seen", "novel")}
        )
        return
    if quiet:
        return
    table = Table("combinations", "EMR", "CoSim", title=f"Run {metrics['run']}")
    for group in ("seen", "novel"):
        m = metrics[group]
        table.add_row(f"{group} ({m['combinations']})", f"{m['emr']:.3f}", f"{m['cosim']:.3f}")
    console.print(table)
    console.print(f"Report: {proj.eval_dir / metrics['run'] / 'report.html'}")


def _compare(project: Project, runs: list[str], quiet: bool, json_output: bool) -> None:
    from creaturekit.evaluation.stage import compare

    table_data = compare(project, runs)
    if json_output:
        print_json(table_data)
        return
    if quiet:
        return
    keys = sorted({k for figures in table_data.values() for k in figures})
    table = Table("run", *keys, title="Runs side by side")
    for run, figures in table_data.items():
        table.add_row(run, *(f"{figures[k]:.3f}" if k in figures else "" for k in keys))
    console.print(table)
