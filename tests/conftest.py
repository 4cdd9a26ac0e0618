"""Shared fixtures: every test runs offline, in a tmp folder, with a fresh CLI state."""

from __future__ import annotations

import os

# Tiny models gain nothing from threads, and oversubscribed OpenMP threads on a busy
# 2-core machine make each matmul orders of magnitude slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.tiny_sd import discovered_toy_project, save_tiny_pipeline


@pytest.fixture(scope="session")
def user_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's user config folder: a path trusted in one test stays trusted in the
    next, as on a user's machine."""
    return tmp_path_factory.mktemp("config")


@pytest.fixture(autouse=True)
def _offline(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory, user_config: Path
) -> None:
    """No network, a private (empty) Hugging Face cache and a private user config folder."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf_home")))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(user_config))
    monkeypatch.delenv("CREATUREKIT_DEBUG", raising=False)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


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
