"""The toy oracle: shipped weights load from safetensors and judge fresh drawings well."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from creaturekit.errors import ModelNotFoundError
from creaturekit.toy.draw import render
from creaturekit.toy.oracle import (
    COLUMNS,
    NOT_VISIBLE,
    Oracle,
    accuracy,
    load_oracle,
    save_oracle,
)
from creaturekit.toy.train_oracle import OracleTrainConfig, render_examples, train
from creaturekit.toy.world import N_VARIANTS, PARTS, SCENES, make_world

CHECK_STREAM = 99  # neither the training nor the measuring stream of train_oracle


def test_shipped_oracle_is_accurate_on_fresh_drawings() -> None:
    oracle = load_oracle()
    novel = make_world(seed=11).novel
    fresh = render_examples(60, seed=123, stream=CHECK_STREAM)
    more = render_examples(60, seed=123, stream=CHECK_STREAM + 1, combos=novel)
    scores = accuracy(
        oracle.predict(np.concatenate([fresh.images, more.images])),
        np.concatenate([fresh.truth, more.truth]),
    )
    assert set(scores) == set(COLUMNS)
    assert min(scores.values()) >= 0.95, scores
    assert min(oracle.config["accuracy"]["novel"].values()) >= 0.98


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


def test_training_save_and_load_round_trip(tmp_path: Path) -> None:
    config = OracleTrainConfig(train_images=32, epochs=1, batch_size=16, workers=1)
    net = train(config, log=False)
    save_oracle(net, {"model": {"width": config.width}}, tmp_path)
    loaded = load_oracle(tmp_path)
    for name, tensor in net.state_dict().items():
        assert torch.equal(tensor, loaded.net.state_dict()[name]), name
    images = render_examples(8, seed=1, stream=CHECK_STREAM).images
    predicted = loaded.predict(images)
    assert np.array_equal(predicted, Oracle(net=net).predict(images))
    assert predicted.shape == (8, len(COLUMNS))


def test_missing_oracle_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="train_oracle"):
        load_oracle(tmp_path)
