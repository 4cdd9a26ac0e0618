"""Shared fixtures: every test runs offline, in a tmp folder, with a fresh CLI state."""

from __future__ import annotations

import os

# Tiny models gain nothing from threads, and oversubscribed OpenMP threads on a busy
# 2-core machine make each matmul orders of magnitude slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import Result
from PIL import Image
from typer.testing import CliRunner

from tests.tiny_sd import discovered_toy_project, save_tiny_pipeline


@pytest.fixture(scope="session", autouse=True)
def _user_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A private user config folder for the session, set before any fixture runs: a path
    trusted in one test (or module fixture) stays trusted in the next, as on a user's
    machine, and the real ~/.config is never written."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))
        yield


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No network, and a private (empty) Hugging Face cache for every test."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf_home")))
    monkeypatch.delenv("CREATUREKIT_DEBUG", raising=False)


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


@pytest.fixture
def runner(request: pytest.FixtureRequest) -> CliRunner:
    return GuardedRunner(allow_bugs=request.node.get_closest_marker("reports_bug") is not None)


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


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """A folder of 6 distinct small RGB images in two sub-folders."""
    root = tmp_path / "photos"
    for i in range(6):
        write_image(root / f"group{i % 2}" / f"img{i}.jpg", seed=i)
    return root


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_pipeline(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(scope="session")
def discovered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small toy project discovered with effnet-kmeans (real, offline ImageNet weights)."""
    root = tmp_path_factory.mktemp("fit") / "toy"
    discovered_toy_project(root)
    return root
