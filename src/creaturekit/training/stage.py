"""Stage 2 on a project: layer the settings, then train one run."""

from __future__ import annotations

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
    with project.lock("fit"):
        return Trainer(project, config, run, resume=resume, device=device).fit()
