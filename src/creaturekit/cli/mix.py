"""``creaturekit mix``: compose new creatures by part name (``--head 42 --wing 87``)."""

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
from creaturekit.conditioning import SCHEDULERS
from creaturekit.errors import CreatureKitError


def register(app: typer.Typer) -> None:
    settings = {
        "allow_extra_args": True,
        "ignore_unknown_options": True,
        "help_option_names": [],
    }  # our own --help also lists the project's parts
    app.command("mix", context_settings=settings)(handle_errors(mix))


def _help(ctx: typer.Context, project: Path | None) -> None:
    """Print the command's help, then the parts of the project (if inside one)."""
    from creaturekit.discovery.discover import load_result
    from creaturekit.discovery.naming import part_table

    console.print(ctx.get_help(), highlight=False)
    try:
        proj = open_cli_project(project)
        rows = part_table(proj, load_result(proj))
    except CreatureKitError:
        console.print("\nRun inside a discovered project to see its parts here.")
        return
    console.print("\nParts of this project (--NAME CODE):")
    for row in rows:
        console.print(f"  --{row['name']:<12} 0-{row['subconcepts'] - 1}", highlight=False)


def parse_part_options(args: list[str]) -> dict[str, list[list[int]]]:
    """``["--head", "42", "--wing", "10,20"]`` -> ``{"head": [[42]], "wing": [[10, 20]]}``."""
    from creaturekit.generation.requests import PartRequestError  # imports torch: not at start-up

    parts: dict[str, list[list[int]]] = {}
    it = iter(args)
    for flag in it:
        if not flag.startswith("--") or len(flag) < 3:
            raise PartRequestError(f"Unexpected argument {flag!r}; parts are given as --NAME CODE.")
        name, _, value = flag[2:].partition("=")
        value = value or next(it, "")
        try:
            codes = [int(v) for v in value.split(",")]
        except ValueError:
            raise PartRequestError(
                f"--{name} needs a code or a comma-separated list of codes, got {value!r}."
            ) from None
        parts.setdefault(name.replace("-", "_"), []).append(codes)
    return parts


def mix(
    ctx: typer.Context,
    prompt: Annotated[
        str | None,
        typer.Argument(
            help='Optional prompt with parts, e.g. "a <head:42> <wing:87> bird in snow".'
        ),
    ] = None,
    n: Annotated[int, typer.Option("--n", help="Images per combination.", min=1)] = 1,
    seed: Annotated[int, typer.Option(help="Seed of the first image (then +1, +2...).")] = 0,
    steps: Annotated[int | None, typer.Option(help="Denoising steps.", min=1)] = None,
    guidance: Annotated[float | None, typer.Option(help="Classifier-free guidance.")] = None,
    negative: Annotated[str | None, typer.Option(help="Negative prompt.")] = None,
    scheduler: Annotated[str, typer.Option(help=f"Sampler: {', '.join(SCHEDULERS)}.")] = "ddim",
    size: Annotated[int | None, typer.Option(help="Image side (default: the run's).")] = None,
    like: Annotated[
        int | None,
        typer.Option(help="Start from all codes of this training image id; parts given override."),
    ] = None,
    fill: Annotated[
        str | None, typer.Option(help="random: parts not given get a random code (seeded).")
    ] = None,
    run: Annotated[str | None, typer.Option(help="Run name (default: the latest).")] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Base model to load the run on (default: the one it was fitted on)."),
    ] = None,
    project: ProjectOpt = None,
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
    show_help: Annotated[
        bool, typer.Option("--help", help="Show this message and the project's parts, then exit.")
    ] = False,
) -> None:
    """Compose creatures: one --NAME CODE per named part (--head 42 --wing 87 --bg 3).

    A part given twice blends two sub-concepts; CODE may be a list (--wing 10,20,30) to
    sweep. Parts and their code ranges: `creaturekit parts`.
    """
    from creaturekit.generation.mix import mix as run_mix

    if show_help:
        _help(ctx, project)
        return
    args = list(ctx.args)
    if prompt is not None and prompt.startswith("--"):  # a part option taken as the prompt
        args, prompt = [prompt, *args], None
    if fill not in (None, "random"):
        raise typer.BadParameter("the only fill is 'random'", param_hint="--fill")
    parts = parse_part_options(args)
    result = run_mix(
        open_cli_project(project),
        parts,
        prompt,
        run=run,
        model=model,
        scheduler=scheduler,
        like=like,
        fill=fill == "random",
        n=n,
        seed=seed,
        steps=steps,
        guidance=guidance,
        negative=negative,
        size=size,
    )
    summary = {
        "folder": str(result.folder),
        "images": len(result.images),
        "blank": result.blank,
        "records": result.records,
    }
    if json_output:
        print_json(summary)
        return
    if result.blank:
        console.print(
            f"[yellow]Warning:[/] {len(result.blank)} image(s) came out blank (NaN "
            "output?); try fp32, fewer guidance or another seed."
        )
    if not quiet:
        console.print(f"[bold green]{len(result.images)} creature(s)[/] -> {result.folder}")
