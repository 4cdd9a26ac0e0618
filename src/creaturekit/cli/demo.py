"""``creaturekit demo``: the README's first command (``make demo``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from creaturekit.cli.common import QuietOpt, console, err_console, handle_errors


def register(app: typer.Typer) -> None:
    app.command("demo")(handle_errors(demo))


def demo(
    folder: Annotated[
        Path, typer.Argument(help="Folder of the demo project (created, or reused).")
    ] = Path("demo"),
    model: Annotated[
        str,
        typer.Option(help="Base model for fit, mix and eval: the bundled toy model or a folder."),
    ] = "toy",
    fit_steps: Annotated[
        int | None, typer.Option(help="Fit steps (default: the toy preset's).", min=1)
    ] = None,
    mixes: Annotated[int, typer.Option(help="Novel creatures to mix.", min=1)] = 8,
    combinations: Annotated[
        int, typer.Option(help="Seen and novel combinations to evaluate (each).", min=1)
    ] = 16,
    full: Annotated[
        bool,
        typer.Option("--full", help="Fail (exit 1) unless every stage can run."),
    ] = False,
    open_page: Annotated[bool, typer.Option("--open", help="Open the page in a browser.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Offline on the CPU: toy project, discover, fit, mix, eval, one HTML page.

    Finished stages are reused; an interrupted fit resumes.

    Without the toy base model it stops after discovery: exit 0 (1 with --full).
    """
    import webbrowser

    from creaturekit.demo import run_demo

    def notify(line: str) -> None:
        err_console.print(f"[bold cyan]>[/] {escape(line)}", highlight=False)

    result = run_demo(
        folder,
        model=model,
        fit_options={"steps": fit_steps} if fit_steps else None,
        mixes=mixes,
        combinations=combinations,
        full=full,
        notify=None if quiet else notify,
    )
    if result.missing_model and not quiet:
        err_console.print(f"[bold yellow]Note:[/] {escape(result.missing_model)}", soft_wrap=True)
    if not quiet:
        console.print(f"Demo page: {result.page}", highlight=False, soft_wrap=True)
    if open_page:
        webbrowser.open(result.page.resolve().as_uri())
