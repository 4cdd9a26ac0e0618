"""Progress bars for long work, on stderr, switched off by ``--quiet`` or :func:`quiet`.

Library code wraps long loops in :func:`track`; a Python user who wants silence uses
``with creaturekit.progress.quiet(): ...`` (like diffusers' ``set_progress_bar_config``).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")

_enabled: contextvars.ContextVar[bool] = contextvars.ContextVar("progress_enabled", default=True)
stderr_console = Console(stderr=True)


@contextlib.contextmanager
def quiet(disable: bool = True) -> Iterator[None]:
    """Within the block, :func:`track` shows nothing (when ``disable`` is true)."""
    token = _enabled.set(not disable and _enabled.get())
    try:
        yield
    finally:
        _enabled.reset(token)


def progress_enabled() -> bool:
    """Whether progress bars are shown in the current context."""
    return _enabled.get()


def make_progress() -> Progress:
    """The project's progress bar layout, on stderr."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=stderr_console,
        transient=False,
    )


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate over ``items`` with a progress bar (unless progress is disabled or there is
    nothing to do: ``total`` 0, e.g. every feature already cached)."""
    if not progress_enabled() or total == 0:
        yield from items
        return
    with make_progress() as bar:
        task = bar.add_task(description, total=total, status="")
        for item in items:
            yield item
            bar.advance(task)


def warn(message: str) -> None:
    """A warning on stderr, shown even under ``quiet``."""
    stderr_console.print(f"Warning: {message}", highlight=False, markup=False, soft_wrap=True)
