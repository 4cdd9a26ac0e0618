"""Commands whose stage is not implemented in this version: they say so and exit non-zero."""

from __future__ import annotations

from collections.abc import Callable

import typer

from creaturekit import __version__
from creaturekit.cli.common import handle_errors
from creaturekit.errors import NotImplementedYetError

PENDING = {
    "eval": "Evaluate a run: EMR, CoSim and image metrics.",
}


def _pending(name: str, summary: str) -> Callable[[], None]:
    def command() -> None:
        raise NotImplementedYetError(
            f"`creaturekit {name}` is not implemented in creaturekit {__version__} yet; "
            "nothing was done."
        )

    command.__doc__ = f"{summary} (not implemented yet)"
    return command


def register(app: typer.Typer) -> None:
    for name, summary in PENDING.items():
        app.command(
            name, context_settings={"ignore_unknown_options": True, "allow_extra_args": True}
        )(handle_errors(_pending(name, summary)))
