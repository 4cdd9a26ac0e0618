"""Helpers shared by test modules (fixtures live in conftest.py): a CLI runner that
fails on bug reports, image writing, tiny fit settings, trainer shortcuts and a
metrics.json as earlier versions wrote it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import Result
from PIL import Image
from typer.testing import CliRunner

from creaturekit.project import Project
from creaturekit.training.fit_config import resolve_fit_config
from creaturekit.training.trainer import Trainer

#: [fit] values of a tiny 4-step fit with checkpoints every 2 steps (test_fit).
TINY_FIT = {
    "resolution": 16,
    "steps": 4,
    "batch_size": 2,
    "grad_accum": 2,
    "lr": 1e-3,
    "attn_resolution": 8,
    "checkpoint_every": 2,
    "sample_every": 0,
    "log_every": 1,
    "projector_depth": 2,
}
#: [fit] values of the tiny 2-step fit behind the ``fitted`` fixture.
TINY_MIX_FIT = {
    "resolution": 16,
    "steps": 2,
    "batch_size": 2,
    "grad_accum": 1,
    "attn_resolution": 8,
    "checkpoint_every": 2,
    "sample_every": 0,
    "projector_depth": 2,
}


class GuardedRunner(CliRunner):
    """A CliRunner that fails the test when a command reports a bug: every condition a test
    causes on purpose is a user's, and must end in a clear message (issue 22)."""

    def __init__(self, allow_bugs: bool = False) -> None:
        super().__init__()
        self.allow_bugs = allow_bugs

    def invoke(self, *args: Any, **kwargs: Any) -> Result:
        result = super().invoke(*args, **kwargs)
        if not self.allow_bugs and "This is a bug in creaturekit" in result.output:
            pytest.fail(f"A command reported a bug:\n{result.output}")
        return result


def write_image(
    path: Path,
    size: tuple[int, int] = (96, 80),
    seed: int = 0,
    mode: str = "RGB",
    fmt: str | None = None,
) -> Path:
    """Write a random image of ``size`` (w, h) in ``mode`` to ``path``."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    im = Image.fromarray(arr, "RGB")
    if mode != "RGB":
        im = im.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, format=fmt)
    return path


def tiny_trainer(
    project: Project, tiny_sd: Path, run: str, resume: bool = False, **changes: object
) -> Trainer:
    config = resolve_fit_config("toy", flags={**TINY_FIT, "model": str(tiny_sd), **changes})
    return Trainer(project, config, run, resume=resume)


def failing_objective(
    monkeypatch: pytest.MonkeyPatch, at_call: int, failure: type[BaseException] | None
) -> None:
    """Make the objective's ``at_call``-th evaluation raise ``failure`` (or give NaN)."""
    from creaturekit.training.objective import Objective

    real = Objective.__call__
    calls = {"n": 0}

    def patched(self: Objective, *args: object, **kwargs: object) -> object:
        calls["n"] += 1
        loss, logs = real(self, *args, **kwargs)  # type: ignore[arg-type]
        if calls["n"] == at_call:
            if failure is not None:
                raise failure
            logs["loss"] = float("nan")
        return loss, logs

    monkeypatch.setattr(Objective, "__call__", patched)


def fit_runs(discovered: Path, root: Path, model: Path, runs: dict[str, dict[str, Any]]) -> Path:
    """A copy of the ``discovered`` project at ``root`` with ``runs`` (name -> fit settings
    over :data:`TINY_MIX_FIT`) fitted on ``model`` with the toy preset."""
    import shutil

    from creaturekit.progress import quiet
    from creaturekit.project import open_project
    from creaturekit.training.fit import fit

    shutil.copytree(discovered, root, ignore=shutil.ignore_patterns("runs"))
    with quiet():
        for name, settings in runs.items():
            fit(
                open_project(root),
                preset="toy",
                run=name,
                model=str(model),
                **(TINY_MIX_FIT | settings),
            )
    return root


def older_metrics(overall: dict[str, Any] | None = None) -> dict[str, Any]:
    """An ``eval/<run>/metrics.json`` in the layout creaturekit 0.1 wrote (dicts built key by
    key, before :class:`creaturekit.evaluation.metrics.Metrics`): a toy project's
    discovery and oracle figures, image metrics, NaN figures written as ``null``, and no
    ``guidance``/``negative``/``code_similarity`` (added later)."""
    row: dict[str, Any] = {"requested": {"head": 1, "bg": 0}, "recovered": {"head": 1, "bg": -1}}
    row |= {"cosim": {"head": 0.9, "bg": 0.0}, "emr": 0.5}
    per_part = {
        "head": {"emr": 1.0, "cosim": 0.9, "requests": 1},
        "bg": {"emr": 0.0, "cosim": 0.0, "requests": 1},
    }
    image = {"similarity": 0.5, "similarity_per_part": {"head": 0.5}, "fid": 3.0, "kid": 0.1}
    group = {
        "emr": 0.5,
        "cosim": 0.45,
        "per_part": per_part,
        "images": [row],
        "oracle": {"accuracy": 0.5, "per_part": {"head": 1.0, "bg": 0.0}},
        "image": image | {"kid_std": 0.01, "kid_subset": 2},
        "combinations": 1,
    }
    return {
        "run": "r1",
        "seed": 0,
        "images_per_combination": 1,
        "creaturekit_version": "0.1.0",
        "discovery": {
            "nmi": 80.0,
            "ari": 70.0,
            "fg_nmi": 60.0,
            "fg_ari": 50.0,
            "purity": {"0": 0.9},
            "keypoints": {"nmi": None, "ari": None, "keypoints": 0},
        },
        "seen": group,
        "novel": group | {"image": {}},  # no image scored: the scorer wrote {}
        "overall": overall or {"seen_emr": 0.5, "novel_emr": 0.5, "fid": 3.0, "kid": None},
        "image_metrics": {
            "image_model": "discovery",
            "fid_model": "discovery",
            "clip_model": None,
            "clip_text": "a photo of a creature",
            "reference_images": 8,
            "skipped": {"clip_score": "no CLIP model set"},
        },
        "seconds": 1.5,
    }
