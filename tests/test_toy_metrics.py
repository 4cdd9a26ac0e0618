"""Toy-world discovery metrics on label arrays with known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from creaturekit.toy.dataset import create_toy_project, load_ground_truth
from creaturekit.toy.discovery_scores import (
    discovery_scores,
    majority,
    part_scores,
    pool_labels,
    subconcept_purity,
)
from creaturekit.toy.world import PARTS


def test_part_scores_ignore_label_names() -> None:
    truth = np.repeat(np.arange(5), 20)
    renamed = (truth + 3) % 5
    assert part_scores(renamed, truth) == pytest.approx({"nmi": 100.0, "ari": 100.0})
    constant = part_scores(np.zeros_like(truth), truth)
    assert constant["nmi"] == pytest.approx(0.0) and constant["ari"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="3 predicted labels for 100"):
        part_scores([0, 1, 2], truth)


def test_majority_and_purity() -> None:
    codes = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    truth = np.array([5, 5, 7, 7, 7, 5, 5, 5])
    assert majority(codes, truth) == {0: 5, 1: 7, 2: 5}
    assert subconcept_purity(codes, truth) == pytest.approx(7 / 8)
    assert subconcept_purity(truth, truth) == 1.0


def test_pool_labels_takes_the_majority_per_cell() -> None:
    mask = np.zeros((4, 4), dtype=np.uint8)
    mask[:2, :2] = 3
    mask[0, 2] = 1
    mask[2:, 2:] = [[2, 2], [2, 0]]
    assert pool_labels(mask, 2).tolist() == [[3, 0], [0, 2]]
    assert pool_labels(mask, 4).tolist() == mask.tolist()


def test_discovery_scores_of_a_perfect_discovery(tmp_path: Path) -> None:
    project = create_toy_project(tmp_path / "t", species=5, per_species=3, size=32)
    truth = load_ground_truth(project)
    ids = sorted(truth.rows)
    # Discovered part j is true label (j + 2) % 5; codes are shifted variant ids.
    masks = {i: (pool_labels(truth.mask(i), 8).astype(int) + 3) % 5 for i in ids}
    codes = {
        i: {
            (label + 3) % 5: (truth.rows[i]["variants"][p] + 1) % 8
            for label, p in enumerate(PARTS, start=1)
            if truth.rows[i]["visible"][p]
        }
        | {3: truth.rows[i]["scene"]}
        for i in ids
    }
    scores = discovery_scores(truth, masks, codes)
    assert scores["images"] == len(ids)
    assert scores["nmi"] == pytest.approx(100.0) and scores["fg_ari"] == pytest.approx(100.0)
    names = {p["index"]: p["ground_truth"] for p in scores["parts"]}
    assert names == {3: "bg", 4: "head", 0: "body", 1: "wings", 2: "tail"}
    assert all(p["purity"] == 1.0 for p in scores["parts"])
    head = next(p for p in scores["parts"] if p["ground_truth"] == "head")
    assert all(v == (k - 1) % 8 for k, v in head["majority"].items())
