"""``creaturekit studio``: serve the project's web studio (needs the ``studio`` extra)."""

from __future__ import annotations

from typing import Annotated

import typer

from creaturekit.cli.common import ProjectOpt, console, handle_errors, open_cli_project


def register(app: typer.Typer) -> None:
    app.command("studio")(handle_errors(studio))


def studio(
    project: ProjectOpt = None,
    port: Annotated[
        int | None,
        typer.Option(help="Port (default: the first free one from 8765).", min=0, max=65535),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on; 0.0.0.0 lets other machines in.")
    ] = "127.0.0.1",
    no_open: Annotated[
        bool, typer.Option("--no-open", help="Print the URL but do not open a browser.")
    ] = False,
    run: Annotated[
        str | None, typer.Option(help="Run to compose with (default: the latest).")
    ] = None,
) -> None:
    """See every part and compose creatures in the browser (prints the URL with its token)."""
    from creaturekit.studio import require_studio

    require_studio()
    from creaturekit.paths import check_name
    from creaturekit.studio.server import serve

    if run is not None:
        check_name(run, "Run name")
    serve(
        open_cli_project(project),
        host=host,
        port=port,
        open_browser=not no_open,
        run=run,
        say=lambda text: console.print(text, highlight=False, soft_wrap=True, markup=False),
    )
