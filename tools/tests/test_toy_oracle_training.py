"""Training the toy oracle, and the shipped oracle measured on fresh drawings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from creaturekit.toy.oracle import COLUMNS, Oracle, accuracy, load_oracle
from creaturekit.toy.world import make_world
from tools.toy.train_oracle import OracleTrainConfig, render_examples, save_oracle, train

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
