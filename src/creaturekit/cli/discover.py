"""``creaturekit discover``: stage 1, unsupervised parts and sub-concepts."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Annotated, Any

import typer

from creaturekit.cli.common import (
    JsonOpt,
    ProjectOpt,
    QuietOpt,
    console,
    fail,
    handle_errors,
    open_cli_project,
    print_json,
)
from creaturekit.cli.fit import worker_command_line
from creaturekit.config import parse_assignments
from creaturekit.progress import stderr_console
from creaturekit.project import Project


def register(app: typer.Typer) -> None:
    app.command("discover")(handle_errors(discover))


def discover(
    backend: Annotated[
        str | None, typer.Option(help="Discovery backend (see `creaturekit plugins`).")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Feature backbone: hub id or local folder.")
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            "-o",
            metavar="KEY=VALUE",
            help="Any other option of the backend (repeatable; values in TOML syntax, e.g. "
            "-o position_weight=0.5 -o pretrained=openai); `creaturekit plugins --options "
            "NAME` lists them.",
        ),
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
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue an interrupted discovery: reuse the centroids it learnt (features "
            "already extracted are always reused).",
        ),
    ] = False,
    update: Annotated[
        bool,
        typer.Option(
            "--update",
            help="Code images added since discovery with the existing centroids (no refit); "
            "says when a refit is advised.",
        ),
    ] = False,
    num_processes: Annotated[
        int,
        typer.Option(
            "--num-processes",
            min=1,
            help="Extract features in N processes on this machine (one per GPU, or gloo on "
            "the CPU).",
        ),
    ] = 1,
    project: ProjectOpt = None,
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Find parts and sub-concepts in ALL the project's images (defaults: [discover] settings)."""
    from creaturekit.discovery.discover import discover as run
    from creaturekit.discovery.naming import part_table
    from creaturekit.training.fit import is_main_process, launch

    if update and (num_processes > 1 or "WORLD_SIZE" in os.environ):
        raise fail("--update runs in one process; drop --num-processes.")
    if num_processes > 1 and "WORLD_SIZE" not in os.environ:
        raise typer.Exit(launch(num_processes, worker_command_line(sys.argv[1:])))
    proj = open_cli_project(project)
    options = {
        **parse_assignments(option or [], "--option", "position_weight=0.5"),
        "model": model,
        "parts": parts,
        "subconcepts": subconcepts,
        "bg_subconcepts": bg_subconcepts,
        "image_size": image_size,
        "batch_size": batch_size,
        "seed": seed,
        "device": device,
    }
    if update:
        given = [f"--{k.replace('_', '-')}" for k, v in options.items() if v is not None]
        if backend is not None:
            given.insert(0, "--backend")
        if given or resume:
            raise fail(
                "--update codes new images with the stored result's backend and settings; "
                f"drop {', '.join(given or ['--resume'])}, or refit without --update."
            )
        with proj.lock("discover"):
            _report_update(proj, report, quiet, json_output)
        return
    # Under --num-processes or `accelerate launch` only the main process holds the lock.
    with proj.lock("discover") if is_main_process() else contextlib.nullcontext():
        if "WORLD_SIZE" in os.environ:  # every process extracts its share, then the main
            _extract_in_worker(proj, backend, options, quiet)  # one goes on alone
            if not is_main_process():
                return
        result = run(proj, backend, report=report, resume=resume, **options)
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
    if result.timing.get("resumed"):
        console.print("Resumed: the centroids learnt before the interruption were reused.")
    for note in result.notes:
        console.print(f"  [yellow]note[/] {note}", highlight=False)
    if report:
        console.print(f"Report: {proj.discovery_dir / 'report.html'}")
    console.print("Name parts with [bold]creaturekit parts name INDEX NAME[/].")


def _extract_in_worker(
    proj: Project, backend: str | None, options: dict[str, Any], quiet: bool
) -> None:
    """This process's share of feature extraction, on its own device; all processes wait
    until every share is cached (then the main process clusters)."""
    from accelerate import PartialState

    from creaturekit.discovery.discover import extract_share

    state = PartialState(cpu=options.get("device") == "cpu")
    if options.get("device") is None:
        options["device"] = str(state.device)
    done = extract_share(
        proj, backend, rank=state.process_index, processes=state.num_processes, **options
    )
    if not quiet:
        stderr_console.print(
            f"Process {state.process_index} of {state.num_processes}: extracted the features "
            f"of {done} image(s)."
        )
    state.wait_for_everyone()


def _report_update(proj: Project, report: bool, quiet: bool, json_output: bool) -> None:
    from creaturekit.discovery.update import update

    done = update(proj, report=report)
    if json_output:
        print_json({"added": done.added, "removed": done.removed, "refit_advised": done.advice})
        return
    if quiet:
        return
    if not done.added and not done.removed:
        console.print("No new or removed images: the discovery result is up to date.")
        return
    console.print(
        f"[bold green]Updated[/]: {done.added} new image(s) coded with the existing centroids, "
        f"{done.removed} removed ({len(done.result.codes)} in all)."
    )
    for reason in done.advice:
        console.print(f"  [yellow]refit advised[/] {reason}", highlight=False)
    if done.advice:
        console.print(
            "Refit with [bold]creaturekit discover[/] (runs trained so far then need a new fit)."
        )
