"""The library facade: ``import creaturekit as ck`` gives every stage, each taking the
project lock itself (so Python users, the CLI, the demo and the studio are equally safe)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import creaturekit as ck
from creaturekit.errors import ProjectLockedError


def test_the_stages_are_reached_lazily_from_the_package() -> None:
    from creaturekit.discovery.discover import discover
    from creaturekit.evaluation.evaluate import evaluate
    from creaturekit.generation.export import export_run
    from creaturekit.generation.mix import mix
    from creaturekit.training.fit import fit

    assert (ck.discover, ck.fit, ck.mix, ck.evaluate, ck.export_run) == (
        discover,
        fit,
        mix,
        evaluate,
        export_run,
    )
    assert set(ck.__all__) >= {
        "discover",
        "name_part",
        "fit",
        "mix",
        "evaluate",
        "export_run",
        "import_run",
    }
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ck.nope  # noqa: B018
    light = subprocess.run(
        [sys.executable, "-c", "import creaturekit, sys; print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert light.stdout.strip() == "False"  # `import creaturekit` stays light


def test_every_mutating_stage_takes_the_lock_itself(discovered: Path, tmp_path: Path) -> None:
    root = Path(
        shutil.copytree(discovered, tmp_path / "proj", ignore=shutil.ignore_patterns("runs"))
    )
    project = ck.open_project(root)
    holder = {"command": "fit", "pid": os.getppid(), "host": socket.gethostname()}
    (root / ".creaturekit.lock").write_text(json.dumps({**holder, "started": time.time()}))
    before = (root / "creaturekit.toml").read_text()
    with pytest.raises(ProjectLockedError, match="creaturekit fit"):
        ck.discover(project)
    with pytest.raises(ProjectLockedError):
        ck.name_part(project, 0, "head")
    with pytest.raises(ProjectLockedError):
        ck.fit(project, run="r", steps=1)
    with pytest.raises(ProjectLockedError):
        ck.export_run(project, "diffusers", "r")
    assert (root / "creaturekit.toml").read_text() == before
    assert not (root / "runs").exists()
