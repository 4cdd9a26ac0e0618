"""The dino-hdbscan discoverer and its grouper."""

from __future__ import annotations

from typing import Any

import numpy as np

from creaturekit.discovery.dino import DinoKMeans
from creaturekit.discovery.grouping import UNASSIGNED, Grouper
from creaturekit.discovery.kmeans import assign, normalize


class HDBSCANGrouper:
    """HDBSCAN on unit vectors (euclidean on the sphere orders like cosine).

    ``k`` is ignored: the number of clusters follows the density. At most ``sample``
    vectors (seeded draw) are clustered; the rest go to the nearest centroid. When
    HDBSCAN finds no cluster at all (or the set is too small), everything is one cluster.
    """

    def __init__(self, min_cluster_size: int, sample: int) -> None:
        self.min_cluster_size = min_cluster_size
        self.sample = sample

    def fit(
        self, x: np.ndarray, k: int, seed: int, rows: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        import hdbscan

        rows = np.arange(len(x)) if rows is None else rows
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(len(rows), size=min(len(rows), self.sample), replace=False))
        unit = normalize(x[rows[pick]])
        size = max(2, min(self.min_cluster_size, len(unit) // 2))
        found = np.full(len(unit), UNASSIGNED)
        if len(unit) > size:
            found = hdbscan.HDBSCAN(min_cluster_size=size).fit_predict(unit.astype(np.float64))
        clusters = [c for c in np.unique(found) if c >= 0]
        if not clusters:
            return normalize(unit.mean(axis=0, keepdims=True)), np.zeros(len(rows), np.int64)
        centroids = normalize(np.stack([unit[found == c].mean(axis=0) for c in clusters]))
        labels = assign(x, centroids, rows)
        labels[pick[found < 0]] = UNASSIGNED
        return centroids, labels


class DinoHDBSCAN(DinoKMeans):
    """DINO / DINOv2 patch features; HDBSCAN at the part and sub-concept levels."""

    name = "dino-hdbscan"

    def __init__(
        self, model: str = "", *, min_cluster_size: int = 5, sample: int = 20_000, **options: Any
    ) -> None:
        super().__init__(model, **options)
        self.min_cluster_size = min_cluster_size
        self.sample = sample

    def _grouper(self) -> Grouper:
        return HDBSCANGrouper(self.min_cluster_size, self.sample)
