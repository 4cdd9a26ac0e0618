"""dino-hdbscan: the contract with a tiny random DINOv2, and the grouper on clear clusters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from creaturekit_hdbscan import DinoHDBSCAN, HDBSCANGrouper
from PIL import Image

from creaturekit.discovery.conformance import check_discoverer


@pytest.fixture(scope="module")
def tiny_dino(tmp_path_factory: pytest.TempPathFactory) -> str:
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        patch_size=8, image_size=32,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("tiny-dinov2")
    Dinov2Model(config).save_pretrained(folder)
    return str(folder)


def test_grouper_finds_clusters_by_density_and_marks_noise() -> None:
    rng = np.random.default_rng(0)
    blobs = [np.eye(8)[i] * 5 + 0.05 * rng.normal(size=(30, 8)) for i in range(3)]
    x = np.concatenate([*blobs, rng.normal(size=(3, 8)) * 5]).astype(np.float16)
    centroids, labels = HDBSCANGrouper(min_cluster_size=5, sample=1000).fit(x, k=99, seed=0)
    assert len(centroids) == 3
    assert len(set(labels[:90])) == 3 and -1 not in labels[:90]


def test_conforms(tiny_dino: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    paths = []
    for i in range(12):
        a = np.full((48, 48, 3), rng.integers(0, 256, 3), np.uint8)
        a[12:36, 12:36] = rng.integers(0, 256, 3)
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(a).save(paths[-1])
    check_discoverer(
        lambda seed: DinoHDBSCAN(tiny_dino, image_size=32, min_cluster_size=2, seed=seed),
        paths,
        tmp_path,
    )
