"""The toy oracle: shipped weights load from safetensors and read drawings at any size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from creaturekit.errors import ModelNotFoundError
from creaturekit.toy.draw import render
from creaturekit.toy.oracle import NOT_VISIBLE, accuracy, load_oracle
from creaturekit.toy.world import N_VARIANTS, PARTS, SCENES


def test_oracle_reads_larger_images() -> None:
    rng = np.random.default_rng(5)
    images, truth = [], []
    for _ in range(30):
        combo = tuple(int(v) for v in rng.integers(0, N_VARIANTS, len(PARTS)))
        scene = int(rng.integers(0, len(SCENES)))
        drawing = render(combo, scene, 128, rng)
        images.append(drawing.image)
        seen = zip(combo, drawing.visible, strict=True)
        truth.append([*(v if ok else NOT_VISIBLE for v, ok in seen), scene])
    scores = accuracy(load_oracle().predict(images), np.asarray(truth))
    assert min(scores.values()) >= 0.9, scores


def test_missing_oracle_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="train_oracle"):
        load_oracle(tmp_path)
