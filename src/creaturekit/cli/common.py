"""What every command shares: options, the console, and turning errors into messages."""

from __future__ import annotations

import errno
import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from creaturekit.errors import CreatureKitError
from creaturekit.progress import quiet as quiet_progress
from creaturekit.project import Project, open_project

F = TypeVar("F", bound=Callable[..., Any])

console = Console()
err_console = Console(stderr=True)


class State:
    """Process-wide CLI flags set by the top-level callback."""

    debug: bool = os.environ.get("CREATUREKIT_DEBUG", "") not in ("", "0")
    #: ``-C DIR`` given to a command group (``parts -C DIR name ...``) for its sub-commands
    project: Path | None = None


def open_cli_project(project: Path | None) -> Project:
    """The project a command works on: its own ``-C``, else its group's, else the current one."""
    return open_project(project if project is not None else State.project)


ProjectOpt = Annotated[
    Path | None,
    typer.Option(
        "--project",
        "-C",
        help="Project folder (default: the current folder or its nearest parent with "
        "creaturekit.toml).",
        show_default=False,
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``message`` as an error and return the Exit to raise."""
    err_console.print(f"[bold red]Error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def handle_errors(func: F) -> F:
    """Run a command: library errors become a message and exit 1, Ctrl-C exits 130.

    Unexpected exceptions are bugs; they are shown as one line (traceback with --debug).
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with quiet_progress(bool(kwargs.get("quiet")) or bool(kwargs.get("json_output"))):
                return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # Typer/click's own exits and usage errors (exit 2, with usage)
        except CreatureKitError as err:
            if State.debug:
                raise
            raise fail(str(err), err.exit_code) from None
        except KeyboardInterrupt:
            if State.debug:
                raise
            raise fail("Interrupted. Files already in the project are intact.", 130) from None
        except OSError as err:
            if State.debug or (message := environment_error(err)) is None:
                raise
            raise fail(message) from None
        except Exception as err:
            if State.debug:
                raise
            raise fail(
                f"Unexpected {type(err).__name__}: {err}. This is a bug in creaturekit; "
                "re-run with --debug for the traceback and report it.",
                2,
            ) from None

    return wrapper  # type: ignore[return-value]


def environment_error(err: OSError) -> str | None:
    """The message for an OS refusal the user can fix (permissions, full or read-only disk)."""
    where = f" {err.filename}" if err.filename else ""
    if isinstance(err, PermissionError):
        return f"Permission denied:{where}. Fix its permissions or work on a writable copy."
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"No space left on the disk (writing{where}). Free some space and run again."
    if err.errno == errno.EROFS:
        return f"The file system is read-only (writing{where}). Work on a writable copy."
    return None


def print_json(data: Any) -> None:
    """Write ``data`` as JSON to stdout (no rich markup, so it can be piped)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
