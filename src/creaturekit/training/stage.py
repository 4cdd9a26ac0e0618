"""Stage 2 on a project: layer the settings, then train one run."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

from creaturekit.config import FitSettings
from creaturekit.project import Project
from creaturekit.training.config import FitConfig, resolve_fit_config
from creaturekit.training.trainer import FitResult, Trainer


def fit_config(project: Project, preset: str | None = None, **flags: Any) -> FitConfig:
    """The run's config: preset, then ``[fit]`` of creaturekit.toml, then ``flags``.

    ``fit.model`` from creaturekit.toml applies unless it is the stock default, in which
    case the preset chooses (so ``preset = "toy"`` alone selects the toy base model).
    """
    settings = project.config.fit
    overrides = dict(settings.overrides)
    if settings.model != FitSettings().model:
        overrides.setdefault("model", settings.model)
    return resolve_fit_config(preset or settings.preset, overrides, flags)


def fit(
    project: Project,
    *,
    preset: str | None = None,
    run: str = "default",
    resume: bool = False,
    device: str = "auto",
    **flags: Any,
) -> FitResult:
    """Train (or with ``resume`` continue) the run ``run`` of ``project`` under its lock."""
    config = fit_config(project, preset, **flags)
    # Under `accelerate launch` only the main process (RANK 0) holds the project lock.
    lock = project.lock("fit") if is_main_process() else contextlib.nullcontext()
    with lock:
        return Trainer(project, config, run, resume=resume, device=device).fit()


def is_main_process() -> bool:
    """False in the non-main processes of a distributed launch."""
    return int(os.environ.get("RANK", "0")) == 0


def launch(num_processes: int, args: list[str]) -> int:
    """Run ``creaturekit ARGS`` in ``num_processes`` processes on this machine (torch elastic).

    Each process's ``Accelerator`` finds the distributed environment (one GPU each, or
    gloo on the CPU). Multi-node set-ups use ``accelerate launch -m creaturekit fit``.
    """
    import uuid

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=num_processes,
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        run_id=uuid.uuid4().hex,
        max_restarts=0,
    )
    try:
        elastic_launch(config, sys.executable)("-m", "creaturekit", *args)
    except ChildFailedError:
        return 1  # the failing process printed its own message
    return 0
