"""``creaturekit eval``: EMR, CoSim and image metrics of a run on seen and novel combinations."""

from __future__ import annotations

from typing import Annotated

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
from creaturekit.project import Project


def register(app: typer.Typer) -> None:
    app.command("eval")(handle_errors(evaluate))


def evaluate(
    compare: Annotated[
        list[str] | None,
        typer.Option(help="Show these evaluated runs side by side (give it twice or more)."),
    ] = None,
    run: Annotated[str | None, typer.Option(help="Run name (default: the latest).")] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Base model to load the run on (default: the one it was fitted on)."),
    ] = None,
    combinations: Annotated[
        int | None, typer.Option(help="Combinations per group (seen, novel).", min=1)
    ] = None,
    n: Annotated[int | None, typer.Option("--n", help="Images per combination.", min=1)] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the draws and generation.")] = None,
    steps: Annotated[int | None, typer.Option(help="Denoising steps.", min=1)] = None,
    guidance: Annotated[
        float | None, typer.Option(help="Classifier-free guidance (default: mix.guidance).")
    ] = None,
    negative: Annotated[
        str | None, typer.Option(help="Negative prompt (default: mix.negative).")
    ] = None,
    size: Annotated[int | None, typer.Option(help="Image side (default: the run's).")] = None,
    image_metrics: Annotated[
        bool | None,
        typer.Option(
            "--image-metrics/--no-image-metrics",
            help="Score similarity to real images, CLIP text score, FID/KID (eval.image_metrics).",
        ),
    ] = None,
    image_model: Annotated[
        str | None,
        typer.Option(help='Similarity backbone: hub id, folder or "discovery" (eval.image_model).'),
    ] = None,
    fid_model: Annotated[
        str | None,
        typer.Option(
            help='FID/KID backbone: "inception", an Inception .pth file, or as --image-model.'
        ),
    ] = None,
    clip_model: Annotated[
        str | None,
        typer.Option(help='CLIPModel hub id or folder for the text score; "" skips it.'),
    ] = None,
    project: ProjectOpt = None,
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Generate requested combinations, re-code them with the discovery centroids, score."""
    from creaturekit.evaluation.evaluate import evaluate as run_eval
    from creaturekit.evaluation.image_metrics import IMAGE_HEADLINES
    from creaturekit.evaluation.metrics import GROUPS

    proj = open_cli_project(project)
    if compare:
        _compare(proj, compare, quiet, json_output)
        return
    metrics = run_eval(
        proj,
        run,
        combinations=combinations,
        per_combination=n,
        seed=seed,
        steps=steps,
        guidance=guidance,
        negative=negative,
        size=size,
        image_metrics=image_metrics,
        image_model=image_model,
        fid_model=fid_model,
        clip_model=clip_model,
        model=model,
    )
    if json_output:
        print_json(metrics.to_dict(images=False))
        return
    if quiet:
        return
    image = metrics.image_metrics is not None
    columns = ["similarity", "CLIP", "FID", "KID"] if image else []
    table = Table("combinations", "EMR", "CoSim", *columns, title=f"Run {metrics.run}")
    for group in GROUPS:
        m = metrics.group(group)
        figures = [_figure(m.image.headline(k)) for k in IMAGE_HEADLINES] if m.image else []
        table.add_row(f"{group} ({m.combinations})", f"{m.emr:.3f}", f"{m.cosim:.3f}", *figures)
    console.print(table)
    if metrics.image_metrics is not None:
        for name, reason in metrics.image_metrics.skipped.items():
            console.print(f"{name} skipped: {reason}.")
    console.print(f"Report: {proj.eval_dir / metrics.run / 'report.html'}")


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _compare(project: Project, runs: list[str], quiet: bool, json_output: bool) -> None:
    from creaturekit.evaluation.evaluate import compare

    table_data = compare(project, runs)
    if json_output:
        print_json(table_data)
        return
    if quiet:
        return
    keys = sorted({k for figures in table_data.values() for k in figures})
    table = Table("run", *keys, title="Runs side by side")
    for run, figures in table_data.items():
        table.add_row(run, *(_figure(figures[k]) if k in figures else "" for k in keys))
    console.print(table)
