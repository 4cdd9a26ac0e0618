"""Shared fixtures: every test runs offline, in a tmp folder, with a fresh CLI state."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

# Tiny models gain nothing from threads, and oversubscribed OpenMP threads on a busy
# 2-core machine make each matmul orders of magnitude slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Offline for the whole session, set before any library is imported: huggingface_hub reads
# HF_HUB_OFFLINE and its cache folder once, when first imported, and that may happen in a
# session fixture, before `_offline` below runs. Read as online, every "missing" hub model
# was looked up on the network with retries (about 23 s each, 140 s for one eval test).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="creaturekit-tests-hf-")

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from creaturekit.project import open_project
from tests.helpers import TINY_MIX_FIT, GuardedRunner, write_image
from tests.tiny_sd import discovered_toy_project, save_tiny_pipeline, save_tiny_sdxl_pipeline

atexit.register(shutil.rmtree, os.environ["HF_HOME"], ignore_errors=True)


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


@pytest.fixture
def runner(request: pytest.FixtureRequest) -> CliRunner:
    return GuardedRunner(allow_bugs=request.node.get_closest_marker("reports_bug") is not None)


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


@pytest.fixture(scope="session")
def fitted_project(
    discovered: Path, tiny_sd: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The toy project with run ``r1`` fitted (TINY_MIX_FIT: 2 steps), fitted once for the
    session and never changed: tests use a copy (``fitted`` per module, ``fitted_copy``
    per test)."""
    from creaturekit.progress import quiet
    from creaturekit.training.fit import fit

    root = tmp_path_factory.mktemp("fitted") / "proj"
    shutil.copytree(discovered, root, ignore=shutil.ignore_patterns("runs"))
    with quiet():
        fit(open_project(root), preset="toy", run="r1", model=str(tiny_sd), **TINY_MIX_FIT)
    return root


@pytest.fixture
def fitted_copy(fitted_project: Path, tmp_path: Path) -> Path:
    """A fresh copy of ``fitted_project`` for one test."""
    return Path(shutil.copytree(fitted_project, tmp_path / "fitted"))


@pytest.fixture(scope="module")
def fitted(fitted_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of ``fitted_project`` shared by one test module."""
    return Path(shutil.copytree(fitted_project, tmp_path_factory.mktemp("mix") / "proj"))


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A StableDiffusionXLPipeline folder of tiny random components (two text encoders)."""
    return save_tiny_sdxl_pipeline(tmp_path_factory.mktemp("tiny-sdxl"))
